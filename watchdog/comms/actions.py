"""Buttons on a phone notification: capability tokens and the handler that turns one into a Command.

A notification's button (ntfy's "http" action) is ``POST <actions_url>/actions/<token>``;
services without buttons (email, Telegram, ...) carry the same URL as a link, which opens a
page (``GET``, never acting: link previews fetch it too) whose one button POSTs it. The
token is the whole authorisation, so it is random (192 bits), bound to one printer, one
incident and one verb, usable once, and expires (``notify[].actions_expire_h``, default 24 h).
Only its SHA-256 is stored, in ``<storage.dir>/action_tokens.json`` (mode 0600), so the
buttons keep working across a restart and a copy of the file does not grant anything.

Resume, Cancel and Pause act only while their incident is the printer's latest alert: a
button from an older alert never resumes a print that has failed again since. An alert is
answered once: after its print was resumed or cancelled, its Resume and Cancel refuse.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from http import HTTPStatus
from pathlib import Path

from watchdog import moments
from watchdog.control import Command, CommandResult, Dispatcher, Verb, outcome_of
from watchdog.durable import read_json, replace_file, set_aside_said, why_unreadable
from watchdog.incidents import (
    SAFE_NAME,
    ThrottledLog,
    already_answered,
    id_folders,
    incidents_root,
    print_gone,
    stored_job,
)
from watchdog.moments import BootMark

logger = logging.getLogger(__name__)

TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")
# verbs that act on the print an alert was about: refused once a newer alert came
PRINTER_VERBS = frozenset({Verb.PAUSE, Verb.RESUME, Verb.CANCEL, Verb.SKIP_PRINT})
FILE_NAME = "action_tokens.json"


class ActionRefused(Exception):
    """A button press that does nothing; ``status`` is the HTTP answer, the message the reason."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Grant:
    """What one token allows, once, until ``expires`` (Unix time)."""

    printer: str
    incident: str
    verb: Verb
    expires: float
    used: bool = False


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ActionTokens:
    """Issues and redeems tokens; the hashed store on disk is shared with later runs."""

    def __init__(
        self,
        storage_dir: Path,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = moments.uptime,
        boot: Callable[[], str | None] = moments.boot_id,
    ) -> None:
        self.path = Path(storage_dir) / FILE_NAME
        self.clock = clock
        self.monotonic = monotonic
        self.boot = boot
        # the buttons of this boot: they expire by the clock since boot, which NTP does not
        # move and later runs share (saved as a BootMark). A Pi without a clock chip whose
        # clock NTP set a day forward after the alert (fake-hwclock restores the time it was
        # switched off) answered "expired" to the Cancel pressed a minute later, also after a
        # restart of the daemon in between; the wall clock serves buttons of an earlier boot
        self._deadlines: dict[str, float] = {}
        self._lock = threading.Lock()
        # pressed while the file could not be written (a full or read-only SD card): used for
        # this run; every button failed then, Cancel too, when it was needed most
        self._pressed_unsaved: set[str] = set()

    def _load(self) -> dict[str, Grant]:
        """The stored grants; a damaged file or entry is left out (its buttons are refused).
        OSError when the file is there but cannot be read now: writing over it would end
        every button still out."""
        try:
            raw = read_json(self.path)
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            # kept aside, said once: read again at every press and every alert, it was an
            # error line each time, then written over by the next alert's buttons
            logger.error(
                "cannot read %s (%s): notification buttons issued before are refused; %s",
                self.path,
                why_unreadable(exc),
                set_aside_said(self.path),
            )
            return {}
        grants = {}
        for digest, g in raw.items() if isinstance(raw, dict) else ():
            try:
                grant = Grant(
                    str(g["printer"]),
                    str(g["incident"]),
                    Verb(g["verb"]),
                    float(g["expires"]),
                    bool(g.get("used", False)),
                )
            except (KeyError, ValueError, TypeError, OverflowError):
                continue
            if not math.isfinite(grant.expires):
                continue
            grants[digest] = grant
            mark = BootMark.from_json(g.get("boot"))
            # (a deadline past any button's life is no mark of ours: the wall clock decides)
            if mark is not None and mark.boot == self.boot():
                if mark.uptime_s <= self.monotonic() + moments.LONGEST_S:
                    self._deadlines.setdefault(digest, mark.uptime_s)
        return grants

    def _save(self, grants: dict[str, Grant]) -> None:
        """Write the grants not expired; this boot's with their expiry on the wall clock of
        now and as a BootMark (a later run of this boot reads the mark; one after a reboot
        the wall clock)."""
        now, mono, boot = self.clock(), self.monotonic(), self.boot()
        keep = {}
        for d, g in grants.items():
            if self._expired(d, g):
                continue
            deadline = self._deadlines.get(d)
            expires = g.expires if deadline is None else now + (deadline - mono)
            keep[d] = {**asdict(g), "expires": expires, "verb": g.verb.value}
            if deadline is not None and boot is not None:
                keep[d]["boot"] = BootMark(boot, deadline).to_json()
        self._deadlines = {d: t for d, t in self._deadlines.items() if d in keep}
        replace_file(self.path, json.dumps(keep).encode())

    def _expired(self, digest: str, grant: Grant) -> bool:
        deadline = self._deadlines.get(digest)
        if deadline is not None:
            return self.monotonic() >= deadline
        return grant.expires <= self.clock()

    def issue(self, printer: str, incident: str, verb: Verb, ttl_s: float) -> str:
        """A new token for ``verb`` on ``incident`` of ``printer``; OSError if it cannot be stored."""
        token = secrets.token_urlsafe(24)
        with self._lock:
            grants = self._load()
            digest = _digest(token)
            grants[digest] = Grant(printer, incident, verb, self.clock() + ttl_s)
            self._deadlines[digest] = self.monotonic() + ttl_s
            try:
                self._save(grants)
            except OSError:
                self._deadlines.pop(digest, None)
                raise
        return token

    def peek(self, token: str) -> Grant:
        """The token's grant, left unused; ActionRefused if it is unknown, used or expired."""
        if not TOKEN.fullmatch(token):
            raise ActionRefused(HTTPStatus.NOT_FOUND, "no such action")
        with self._lock:
            digest = _digest(token)
            return self._valid(digest, self._grants_or_refuse().get(digest))

    def _grants_or_refuse(self) -> dict[str, Grant]:
        try:
            grants = self._load()
        except OSError as exc:
            raise ActionRefused(
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"cannot read the buttons: {exc.strerror or exc}; try again in a moment",
            ) from exc
        for digest in self._pressed_unsaved & set(grants):
            grants[digest] = dataclasses.replace(grants[digest], used=True)
        return grants

    def _valid(self, digest: str, grant: Grant | None) -> Grant:
        """The grant if it may still be used; ActionRefused saying why not otherwise."""
        if grant is None:
            raise ActionRefused(
                HTTPStatus.NOT_FOUND, "no such action (unknown or expired long ago)"
            )
        if self._expired(digest, grant):
            raise ActionRefused(HTTPStatus.GONE, "this button has expired")
        if grant.used:
            raise ActionRefused(HTTPStatus.CONFLICT, "this button was already used")
        return grant

    def redeem(self, token: str) -> Grant:
        """Mark the token used and return its grant; ActionRefused if it is unknown, used or expired."""
        if not TOKEN.fullmatch(token):
            raise ActionRefused(HTTPStatus.NOT_FOUND, "no such action")
        digest = _digest(token)
        with self._lock:
            grants = self._grants_or_refuse()
            grant = self._valid(digest, grants.get(digest))
            grants[digest] = Grant(grant.printer, grant.incident, grant.verb, grant.expires, True)
            try:
                self._save(grants)
                self._pressed_unsaved.discard(digest)
            except OSError as exc:
                # carried out all the same: a second press is refused by this run, and the
                # watcher refuses what was done already after a restart
                self._pressed_unsaved.add(digest)
                logger.warning(
                    "cannot record a notification button's press in %s (%s): carried out; "
                    "it may be pressed again after a restart",
                    self.path,
                    exc.strerror or exc,
                )
        return grant

    def give_back(self, token: str) -> None:
        """The command it carried did not happen: the button may be pressed again."""
        digest = _digest(token)
        with self._lock:
            self._pressed_unsaved.discard(digest)
            try:
                grants = self._load()
                grant = grants.get(digest)
                if grant is not None and grant.used:
                    grants[digest] = Grant(
                        grant.printer, grant.incident, grant.verb, grant.expires, False
                    )
                    self._save(grants)
            except OSError:
                pass  # it stays used: the owner acts on the page or the printer instead


def latest_incident(storage_dir: Path, printer: str) -> str | None:
    """The printer's most recent incident id on disk (ids sort by time), or None."""
    folders = id_folders(incidents_root(storage_dir) / printer)
    ids = [p.name for p in folders if SAFE_NAME.fullmatch(p.name)]
    return ids[-1] if ids else None


# what a link's page asks before its button is pressed
QUESTIONS = {
    Verb.NOT_A_FAILURE: "Not a failure: learn this print's look again and keep its frame for "
    "retraining?",
    Verb.CONFIRM_FAILURE: "Keep this alert's frames as a failure?",
    Verb.PAUSE: "Pause the print?",
    Verb.RESUME: "Resume the print?",
    Verb.CANCEL: "Cancel the print? It cannot be resumed after that.",
    Verb.SKIP_PRINT: "Stop watching this print? Until it ends the watchdog judges nothing of it "
    "and never pauses it (a pause holding it now stays); the next print is watched.",
}


class ActionHandler:
    """``handle_action(token) -> (http status, message)``: the route behind the phone's buttons;
    ``describe(token)``: what a link's page asks, acting on nothing."""

    def __init__(
        self,
        tokens: ActionTokens,
        dispatcher: Dispatcher | None,
        storage_dir: Path,
        failed_late: Callable[[Grant, str, bool], None] | None = None,
        done_late: Callable[[Grant, str], None] | None = None,
    ) -> None:
        """``failed_late(grant, why, unknown)``: told when a press answered "still carrying
        out" fails in the end (the owner heard it would happen); ``unknown``: sent to the
        printer and never answered, it may have happened. ``done_late(grant, what)``: told
        when the printer makes such a failed press after all (``what`` it shows now)."""
        self.tokens = tokens
        self.dispatcher = dispatcher
        self.storage_dir = Path(storage_dir)
        self.failed_late = failed_late
        self.done_late = done_late
        # the route needs no login: anyone who reaches it may post made-up tokens in a loop
        self._refusals = ThrottledLog(60.0)

    def describe(self, token: str) -> tuple[int, str]:
        """(200, the question for this token's printer and verb), or the refusal it would get."""
        try:
            grant = self.tokens.peek(token)
        except ActionRefused as exc:
            return int(exc.status), str(exc)
        if self._older_alert(grant):
            return int(
                HTTPStatus.CONFLICT
            ), f"this button belongs to an older alert of {grant.printer}"
        if grant.verb in (Verb.RESUME, Verb.CANCEL) and (
            why := already_answered(self.storage_dir, grant.printer, grant.incident)
        ):
            return int(HTTPStatus.CONFLICT), why
        if grant.verb in (Verb.PAUSE, Verb.SKIP_PRINT) and (
            why := print_gone(self.storage_dir, grant.printer, grant.incident)
        ):
            return int(HTTPStatus.CONFLICT), why
        question = QUESTIONS.get(grant.verb, f"{grant.verb.value}?")
        job = stored_job(self.storage_dir, grant.printer, grant.incident)
        about = f", job {job}" if job and grant.verb in PRINTER_VERBS else ""
        return int(HTTPStatus.OK), f"{grant.printer}{about}: {question}"

    def _older_alert(self, grant: Grant) -> bool:
        """A Resume of an alert that is no longer the printer's latest: it must not act (it
        would resume a pause the owner has not seen). Its other printer buttons are the
        watcher's to judge: an earlier alert of the same print may still cancel it."""
        return (
            grant.verb is Verb.RESUME
            and latest_incident(self.storage_dir, grant.printer) != grant.incident
        )

    def handle_action(self, token: str) -> tuple[int, str]:
        try:
            grant = self.tokens.redeem(token)
        except ActionRefused as exc:
            self._refusals(
                logger, logging.WARNING, str(exc.status), "notification button refused: %s", exc
            )
            return int(exc.status), str(exc)
        if self._older_alert(grant):
            logger.warning(
                "%s: %s button of alert %s refused: the latest alert is %s",
                grant.printer,
                grant.verb.value,
                grant.incident,
                latest_incident(self.storage_dir, grant.printer),
            )
            return int(
                HTTPStatus.CONFLICT
            ), f"this button belongs to an older alert of {grant.printer}"
        if self.dispatcher is None:
            self.tokens.give_back(token)
            return int(HTTPStatus.SERVICE_UNAVAILABLE), "the daemon is not ready for commands"
        command = Command(grant.printer, grant.verb, incident=grant.incident, source="phone")
        try:
            result = self.dispatcher.dispatch(command)
        except Exception:  # noqa: BLE001 - a dispatcher bug must not take the server down
            logger.exception("%s: phone command %s failed", grant.printer, grant.verb.value)
            self.tokens.give_back(token)
            return int(HTTPStatus.INTERNAL_SERVER_ERROR), "the command failed; see the daemon's log"
        logger.info(
            "%s: phone button %s on alert %s: %s",
            grant.printer,
            grant.verb.value,
            grant.incident,
            result.detail,
        )
        if result.under_way:  # not ended yet: the button stays used, unless it fails
            if result.later is not None:
                result.later.add_done_callback(lambda done: self._settled(token, grant, done))
            return int(HTTPStatus.ACCEPTED), result.detail
        if not result.ok:
            self.tokens.give_back(token)
            return int(HTTPStatus.CONFLICT), result.detail
        return int(HTTPStatus.OK), result.detail

    def _settled(self, token: str, grant: Grant, done: Future[CommandResult]) -> None:
        """A button's command answered "still carrying out" has ended: failed, its button
        works again (it said it would still happen), the log says what became of it, and the
        phone is told (``failed_late``)."""
        result = None if done.cancelled() or done.exception() else done.result()
        if result is not None and result.ok:
            logger.info(
                "%s: phone button %s on alert %s, done late: %s",
                grant.printer,
                grant.verb.value,
                grant.incident,
                result.detail,
            )
            return
        unknown = result is not None and result.unknown
        if not unknown:  # it may have happened: pressed again, it could happen twice
            self.tokens.give_back(token)
        why = result.detail if result is not None else "it was not carried out"
        logger.error(
            "%s: phone button %s on alert %s failed after it was said under way: %s; %s",
            grant.printer,
            grant.verb.value,
            grant.incident,
            why,
            "it may have happened" if unknown else "the button works again",
        )
        if self.failed_late is not None:
            try:
                self.failed_late(grant, why, unknown)
            except Exception:  # noqa: BLE001 - the command's thread must not die of the telling
                logger.exception("%s: cannot tell the phone of its failed button", grant.printer)
        if result is not None and result.correction is not None:
            result.correction.add_done_callback(lambda late: self._came_late(grant, late))

    def _came_late(self, grant: Grant, late: Future[CommandResult]) -> None:
        """A press told "was not done" whose stop the printer shows later: the phone is told."""
        result = outcome_of(late)
        if not result.ok:
            return
        logger.info(
            "%s: phone button %s on alert %s came through after all: %s",
            grant.printer,
            grant.verb.value,
            grant.incident,
            result.detail,
        )
        if self.done_late is not None:
            try:
                self.done_late(grant, result.detail)
            except Exception:  # noqa: BLE001 - the watcher's thread must not die of the telling
                logger.exception("%s: cannot tell the phone its button came through", grant.printer)
