"""Phone notifications through Apprise (ntfy, Telegram, Pushover, Discord, email, Gotify, ...).

Each ``notify:`` target has its own outbox channel (``notify-<name>``) and its own sender
thread, so a service that is down or refuses the credentials never delays the others. A
notification is written to the outbox first, sent by ``python -m watchdog.comms.notify_send``
in a child process, retried with backoff while the service is unreachable, delivered once
after a daemon restart, and dropped (logged, counted) only after ``max_age_h``.

A printer's repeated events never become a storm: an event of the same printer and group
(alerts, camera, print done) while an earlier one is still waiting replaces it, and one that
comes within ``coalesce_s`` of the last one sent waits until that window has passed; the
notification says how many events it stands for.

Targets with ``actions_url`` carry Not a failure, Resume and Cancel: on ntfy three buttons,
each a POST to ``<actions_url>/actions/<token>`` (``watchdog.comms.actions``); elsewhere
(email, Telegram, ...) the same URLs as links in the text, each opening a page that asks
before it POSTs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge

from watchdog.comms.actions import ActionTokens
from watchdog.comms.outbox import Entry, Outbox
from watchdog.config import NotifyEvent, NotifyTarget
from watchdog.control import Verb, saved_answers
from watchdog.durable import read_json, replace_file
from watchdog.incidents import ThrottledLog, alert_moment, local_time
from watchdog.redact import secret_filter

logger = logging.getLogger(__name__)

SEND_TIMEOUT_S = 90.0
# A service that takes a notification and never answers in time (a slow relay) most likely
# delivered it: sent this many times, it is taken as delivered, not sent at every retry for a
# day.
UNANSWERED_SENDS = 2
APPRISE_MISSING = (
    "Apprise is not installed: pip install 'printer-watchdog[notify]' (deploy/install.sh does)"
)
REJECTED_RETRY_S = 600.0  # a target that refused the credentials is tried again this often


class Kind(Enum):
    FAILURE = "failure"
    # an alert of a printer set to `action: notify`: nothing stops the print, the owner must
    FAILURE_GOING_ON = "failure_going_on"
    ACTION_FAILED = "action_failed"
    # a phone button's command said to be under way that failed in the end
    ANSWER_FAILED = "answer_failed"
    # one of those that the printer shows made, a while later (a cancel macro slow to run)
    ANSWER_LATE = "answer_late"
    CAMERA_OFFLINE = "camera_offline"
    CAMERA_ONLINE = "camera_online"
    PRINT_DONE = "print_done"
    PRINT_ERROR = "print_error"  # a watched print stopped by the printer's own error


# Which config event a kind belongs to, which kinds coalesce together, how loud it is.
_EVENT = {
    Kind.FAILURE: NotifyEvent.FAILURE,
    Kind.FAILURE_GOING_ON: NotifyEvent.FAILURE,
    Kind.ACTION_FAILED: NotifyEvent.ACTION_FAILED,
    Kind.ANSWER_FAILED: NotifyEvent.ACTION_FAILED,
    Kind.ANSWER_LATE: NotifyEvent.ACTION_FAILED,  # where its "was not done" went
    Kind.CAMERA_OFFLINE: NotifyEvent.CAMERA_OFFLINE,
    Kind.CAMERA_ONLINE: NotifyEvent.CAMERA_OFFLINE,
    Kind.PRINT_DONE: NotifyEvent.PRINT_DONE,
    Kind.PRINT_ERROR: NotifyEvent.PRINT_DONE,
}
_GROUP = {
    Kind.FAILURE: "alert",
    Kind.FAILURE_GOING_ON: "alert",
    Kind.ACTION_FAILED: "alert",
    # with the alert's buttons again (ntfy cleared the alert when one was pressed), but never
    # summed up with a failure alert still waiting for a target (its picture would be lost)
    Kind.ANSWER_FAILED: "answer",
    Kind.ANSWER_LATE: "answer",
    Kind.CAMERA_OFFLINE: "camera",
    Kind.CAMERA_ONLINE: "camera",
    Kind.PRINT_DONE: "print_done",
    Kind.PRINT_ERROR: "print_done",
}
_TYPE = {
    Kind.FAILURE: "failure",
    Kind.FAILURE_GOING_ON: "failure",
    Kind.ACTION_FAILED: "failure",
    Kind.ANSWER_FAILED: "failure",
    Kind.ANSWER_LATE: "info",
    Kind.CAMERA_OFFLINE: "warning",
    Kind.CAMERA_ONLINE: "info",
    Kind.PRINT_DONE: "success",
    # a thermal runaway or a lost printer was told as a quiet success (green, no sound)
    Kind.PRINT_ERROR: "warning",
}
_NTFY_PRIORITY = {
    Kind.FAILURE: "high",
    # as loud as a pause that did not happen: in both the print goes on failing
    Kind.FAILURE_GOING_ON: "max",
    Kind.ACTION_FAILED: "max",
    Kind.ANSWER_FAILED: "high",
    Kind.ANSWER_LATE: "default",
    Kind.CAMERA_OFFLINE: "default",
    Kind.CAMERA_ONLINE: "low",
    Kind.PRINT_DONE: "low",
    Kind.PRINT_ERROR: "high",
}
BUTTONS = ((Verb.NOT_A_FAILURE, "Not a failure"), (Verb.RESUME, "Resume"), (Verb.CANCEL, "Cancel"))
# a link besides them, in the text (ntfy shows three buttons at most), for an alert of a
# printer with an API (none tells the watchdog when the print ends)
SKIP_LINK = (Verb.SKIP_PRINT, "Stop watching this print")
# the verdict's button: it leaves a paused print paused, and stays once its print is answered
VERDICT_LABEL = dict(BUTTONS)[Verb.NOT_A_FAILURE]

Sender = Callable[[dict[str, Any]], dict[str, Any]]
# (printer, incident) -> what became of the alert's print since: "resumed", "cancelled",
# "ended", or "" while it stands (``watchdog.incidents.closing_answer``)
Closing = Callable[[str, str], str]
SINCE = {"resumed": "resumed", "cancelled": "cancelled", "ended": "its print ended"}
# what a notification summing up others calls them, by group ("2 earlier alerts")
_SUMMED = {
    "alert": ("alert", "alerts"),
    "answer": ("word on an answer", "words on answers"),
    "camera": (
        "time the camera went offline or came back",
        "times the camera went offline or came back",
    ),
    "print_done": ("print end", "print ends"),
}
# what a failure alert asks of the owner: dropped once its print was answered or ended
CHECK_NOW = " Check the printer now."
# an alert answered or ended before it was sent is news of the past: not loud any more
CLOSED_PRIORITY = "default"
# a printer API's request as the log names it ("GET http://host:port/api/printer?...: ")
_REQUEST = re.compile(r"\b(?:GET|POST|PUT|DELETE) https?://([^/\s]+)\S*: ")
# the groups whose notifications are about an alert: its buttons, what became of its print
ALERT_GROUPS = ("alert", "answer")
_PRINT_NEWS = (*ALERT_GROUPS, _GROUP[Kind.PRINT_DONE])
# news of a print's that, queued after earlier news of its kind, says a print lies between
_ANOTHER_PRINT = {
    **{group: (_GROUP[Kind.PRINT_DONE],) for group in ALERT_GROUPS},
    _GROUP[Kind.PRINT_DONE]: ALERT_GROUPS,
}
OFFLINE = Kind.CAMERA_OFFLINE.value  # as a sent notification's body says it
# per target: the printers whose camera it told offline and not back online (``load``)
CAMERAS_TOLD_OFFLINE = "cameras-told-offline.json"
# a notification sent this long after its event says when that was
LATE_S = 60.0
# A service's refusal of one notification, not of every one: a bad request, too large, as
# Apprise words it (ntfy's own codes add two digits: 40024, 41301); not the credentials'
# (PERMANENT), a rate limit's (429), an address that is wrong for all (404)
ONE_REFUSED = re.compile(r"\berror=(400|413|414|422)(\d\d)?\b")


@dataclass(frozen=True)
class Event:
    """Something the owner should hear about, in their words."""

    kind: Kind
    printer: str
    title: str
    message: str
    incident: str | None = None
    heatmap: bytes | None = field(default=None, repr=False)
    frame: bytes | None = field(default=None, repr=False)
    answers: tuple[Verb, ...] = ()  # the printer buttons an alert offers besides Not a failure
    corrects: bool = False  # an alert sent already, found wrong since: it waits for no window
    # when it happened (epoch seconds; None: now): an alert told after a restart is old
    at: float | None = None


def _number(value: object) -> float | None:
    """A score as a number (numpy's too), or None for what a damaged file may hold there."""
    if isinstance(value, bool | str | bytes) or not hasattr(value, "__float__"):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def alert_event(
    alert: dict[str, Any],
    frame_jpeg: bytes | None,
    heatmap_jpeg: bytes | None,
    corrects: bool = False,
) -> Event:
    """The event of one alert: ``action_failed`` when the pause/cancel did not happen.
    ``corrects``: the alert was sent, and is sent again corrected (``Event.corrects``)."""
    printer = str(alert.get("printer", "?"))
    action = str(alert.get("action", "notify"))
    # read back from disk after a restart: a damaged file must not stop the daemon's start
    result = alert.get("action_result")
    result = result if isinstance(result, dict) else {}
    outcome = str(result.get("outcome", "done"))
    score, threshold = _number(alert.get("score")), _number(alert.get("threshold"))
    if score is None:  # read back from a damaged file
        scored = ""
    elif threshold is not None and threshold > 0:  # bare scores mean nothing to an owner
        scored = f"{score / threshold:.2f} times the alert level"
    else:
        scored = f"score {score:.3g}"
    job = f" ({alert['job']})" if alert.get("job") else ""
    detail = _for_phone(str(result.get("detail", "")))  # why the pause or cancel failed
    if action in ("pause", "cancel") and outcome == "unknown":
        kind = Kind.ACTION_FAILED  # as loud: the owner must look
        title = f"{printer}: failure; the {action} may not have happened"
        text = (
            f"{printer}{job} looks like a failed print ({scored}); whether the {action} "
            f"happened is unknown: {detail}.{CHECK_NOW}"
        )
    elif action in ("pause", "cancel") and outcome != "done":
        kind = Kind.ACTION_FAILED
        title = f"{printer}: failure, and the {action} did NOT happen"
        text = (
            f"{printer}{job} looks like a failed print ({scored}) but the {action} {outcome}: "
            f"{detail}.{CHECK_NOW}"
        )
    elif action in ("pause", "cancel"):
        kind = Kind.FAILURE
        did = {"pause": "paused", "cancel": "cancelled"}[action]
        title = f"{printer}: print failure, {did}"
        text = f"{printer}{job} looks like a failed print ({scored}); the print was {did}."
    else:  # `action: notify`, or no printer API: only the owner can stop it
        kind = Kind.FAILURE_GOING_ON
        title = f"{printer}: print failure, still printing"
        text = (
            f"{printer}{job} looks like a failed print ({scored}); it was left printing: the "
            f"watchdog only tells you, as its settings say.{CHECK_NOW}"
        )
    return Event(
        kind,
        printer,
        title,
        text,
        incident if isinstance(incident := alert.get("incident"), str) else None,
        heatmap_jpeg,
        frame_jpeg,
        saved_answers(alert),
        corrects,
        alert_moment(alert),  # put right across a clock step since it was saved
    )


def answer_failed_event(
    printer: str,
    incident: str,
    button: str,
    detail: str,
    answers: tuple[Verb, ...],
    unknown: bool = False,
) -> Event:
    """The owner pressed ``button`` on an alert, was told it was still being carried out,
    and it failed in the end (``detail``: the printer's answer): said, with the alert's
    buttons again (``answers``: the printer buttons it offers). ``unknown``: sent to the
    printer and never answered: it may have happened (no buttons: it could happen twice)."""
    if unknown:
        title = f"{printer}: your {button} may not have happened"
        text = (
            f"The {button} you pressed for {printer} was sent to the printer, which did not "
            f"answer: {detail}. Check the printer."
        )
    else:
        title = f"{printer}: your {button} was not done"
        text = (
            f"The {button} you pressed for {printer} was still being carried out when the "
            f"phone was answered, and it ended without being done: {detail}. Check the "
            "printer; the alert's buttons work again."
        )
    return Event(
        Kind.ANSWER_FAILED,
        printer,
        title,
        text,
        incident,
        answers=answers,
        corrects=True,  # the answer to a press: now, not after the alert's coalesce window
    )


def answer_late_event(
    printer: str, incident: str, button: str, detail: str, answers: tuple[Verb, ...]
) -> Event:
    """The printer shows, a while later, what the owner's ``button`` told "was not done"
    asked for (``detail``: what it shows, in words that say what it may be: a cancel late, or
    a print that finished): said at once, with the alert's buttons that may still act."""
    return Event(
        Kind.ANSWER_LATE,
        printer,
        f"{printer}: news of your {button}",
        f"The {button} you pressed for {printer} was told not done; since then: {detail}.",
        incident,
        answers=answers,
        corrects=True,
    )


def camera_event(printer: str, online: bool, why: str = "") -> Event:
    """``why``: the camera's own error when it went offline (one line, no secrets)."""
    if online:
        return Event(
            Kind.CAMERA_ONLINE,
            printer,
            f"{printer}: camera back online",
            f"The camera of {printer} gives frames again; watching resumed.",
        )
    return Event(
        Kind.CAMERA_OFFLINE,
        printer,
        f"{printer}: camera offline",
        f"The camera of {printer} {'is offline' if why else 'gives no frames'}: the print is "
        f"not watched until it is back.{f' Why: {why}.' if why else ''}",
    )


def _for_phone(detail: str) -> str:
    """A printer API's failure as the phone shows it: its host, not the request the log names
    ("127.0.0.1:5000: no whole answer within 3 s", not "GET http://...?exclude=...: ...")."""
    return _REQUEST.sub(r"\1: ", detail)


def print_done_event(
    printer: str,
    job: str | None,
    error: str | None = None,
    unseen: bool = False,
    ended: str = "",
) -> Event:
    """A watched print stopped without our action; ``error``: the printer's own error, when
    it stopped because of one (a thermal runaway, a move out of range, a lost connection);
    ``unseen``: it ended while the printer's API could not be reached (finished, or lost when
    OctoPrint or Klipper restarted: told as loud as an error, the owner must look);
    ``ended``: "finished" or "cancelled" where the printer's API says which, "lost" where it
    restarted between two polls (told as loud as ``unseen``)."""
    if ended == "lost":
        return Event(
            Kind.PRINT_ERROR,
            printer,
            f"{printer}: print lost",
            f"{job or 'The print'} on {printer} has stopped: OctoPrint restarted, or lost its "
            "printer and connected again, which ends a print it sends. Check the printer.",
        )
    if unseen:
        return Event(
            Kind.PRINT_ERROR,
            printer,
            f"{printer}: print ended while the printer could not be reached",
            f"{job or 'The print'} on {printer} ended while its printer's API did not answer: "
            "it finished, or it was lost (a restart of OctoPrint or Klipper ends a print). "
            "Check the printer.",
        )
    if error:
        return Event(
            Kind.PRINT_ERROR,
            printer,
            f"{printer}: print stopped by a printer error",
            f"{job or 'The print'} on {printer} stopped: {_for_phone(error)}",
        )
    title, text = {
        "finished": ("print finished", "has finished."),
        "cancelled": ("print cancelled", "was cancelled at the printer."),
    }.get(ended, ("print ended", "has ended (finished, or cancelled at the printer)."))
    return Event(
        Kind.PRINT_DONE, printer, f"{printer}: {title}", f"{job or 'The print'} on {printer} {text}"
    )


def target_names(targets: Sequence[NotifyTarget]) -> list[str]:
    """Each target's name: its own, else its URL's scheme (ntfy, ntfy-2, ...)."""
    taken = {t.name for t in targets if t.name}
    names: list[str] = []
    for t in targets:
        if t.name:
            names.append(t.name)
            continue
        base = "".join(c if c.isalnum() or c in "_-" else "-" for c in t.scheme)[:30] or "target"
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name)
        names.append(name)
    return names


KEY_FILE = ".target-key"


def identity_texts(targets: Sequence[NotifyTarget]) -> list[str]:
    """What each target's identity is made of: its name, else its URL; two with one URL (one
    topic for two printers) also by what they take, whatever their order in the list, and
    two alike in everything by their order among themselves."""
    texts = [t.name or (t.url.get_secret_value().strip() if t.url else "") for t in targets]
    texts = [
        text
        if texts.count(text) == 1
        else f"{text}\0{json.dumps([sorted(t.printers or []), sorted(t.events)])}"
        for text, t in zip(texts, targets, strict=True)
    ]
    return [
        text if texts.count(text) == 1 else f"{text}\0{texts[:i].count(text)}"
        for i, text in enumerate(texts)
    ]


def target_key(outbox_root: Path) -> tuple[bytes | None, bool]:
    """The random key the targets' identities are hashed with, kept beside the outbox (a URL,
    a token in it, cannot be guessed back from its hash), and whether it was made now (a first
    run, or the key deleted: the marks left cannot be checked). None when it cannot be read,
    is damaged, or cannot be kept."""
    key_file = outbox_root / KEY_FILE
    try:
        key = key_file.read_bytes()
    except FileNotFoundError:
        key = os.urandom(32)
        try:
            outbox_root.mkdir(parents=True, exist_ok=True)
            replace_file(key_file, key)
        except OSError:
            return None, True
        return key, True
    except OSError:
        return None, False
    # damaged: what it marked cannot be told apart (sent by folder)
    return (key if len(key) == 32 else None), False


def target_identity(what: str, key: bytes | None) -> str | None:
    """A short keyed hash of a target's name or URL (or where it sends), so a queued
    notification is sent only to the target it was queued for; None without a key."""
    if key is None:
        return None
    return hashlib.blake2b(what.encode(), key=key, digest_size=8).hexdigest()


class TargetOwners:
    """Which target each notify channel belonged to at the last run (``.target-owners.json``
    beside the outbox: keyed hashes of its identity and of where it sends), and the targets
    there are now.

    An unnamed target's channel is its place in the list: after one is removed the next
    takes its channel, and must not send what was queued for the other (another person). A
    target that is gone leaves its queue to the new targets that send to the same place (the
    URL but for its password and secret query values): its URL edited (a token fixed after
    the service refused it), or its name changed. Where two do (one topic for two printers),
    each entry goes to the first that takes it."""

    FILE = ".target-owners.json"

    def __init__(self, outbox_root: Path, targets: Sequence[TargetSender]) -> None:
        self.path = outbox_root / self.FILE
        self.before = self._read()
        self.current = frozenset(t.identity for t in targets if t.identity is not None)
        self._now = {
            t.channel: {"identity": t.identity, "place": t.place}
            for t in targets
            if t.identity is not None
        }
        known = {identity for identity, _ in self.before.values()}
        newcomers = [t for t in targets if t.identity is not None and t.identity not in known]
        # a gone identity → the new targets sending where it sent, in the list's order
        self._heirs: dict[str, list[TargetSender]] = {}
        for identity, place in self.before.values():
            takers = [t for t in newcomers if place and t.place == place]
            if identity not in self.current and takers:
                self._heirs[identity] = takers
        self.taken = frozenset(self._heirs)

    def _read(self) -> dict[str, tuple[str, str | None]]:
        """Channel → (identity, place) at the last run."""
        try:
            data = read_json(self.path)
        except (OSError, ValueError):
            return {}  # none yet (a first run), or damaged: no queue is handed over
        if not isinstance(data, dict):
            return {}
        owners = {}
        for channel, owner in data.items():
            if isinstance(owner, dict) and isinstance(owner.get("identity"), str):
                place = owner.get("place")
                owners[str(channel)] = (
                    owner["identity"],
                    place if isinstance(place, str) else None,
                )
        return owners

    def heir(self, marked: str | None, entry: Entry) -> TargetSender | None:
        """The target that takes over ``entry``, left for a gone target: the first new one
        sending to its place that takes it (else the first, which drops it as not taken)."""
        takers = self._heirs.get(marked or "", [])
        wanting = [t for t in takers if t.takes(entry, None)]
        chosen = wanting or takers
        return chosen[0] if chosen else None

    def save(self) -> None:
        if not self._now:  # no identity to record (the key unreadable): the last run's stays
            return
        try:
            replace_file(self.path, json.dumps(self._now).encode())
        except OSError as exc:
            logger.warning("notify: cannot record the targets' outbox channels: %s", exc)


# query keys whose values are credentials (a fixed one is the same target); others (to=,
# priority=) say where or how a notification goes
_SECRET_QUERY = re.compile(r"(?i)token|key|pass|pwd|secret|auth|sig")


def target_place(url: str) -> str:
    """Where a URL sends, without what a fixed password or token changes: all of it but its
    password and the values of its credential query keys (the user stays: for mail it is
    the recipient, for Pushover the person)."""
    try:
        split = urlsplit(url)
        user = split.netloc.rsplit("@", 1)[0].split(":", 1)[0] if "@" in split.netloc else ""
        host = split.netloc.rsplit("@", 1)[-1]
        query = sorted(
            (k, "" if _SECRET_QUERY.search(k) else v)
            for k, v in parse_qsl(split.query, keep_blank_values=True)
        )
        return f"{split.scheme.lower()}://{user}@{host}{split.path}?{query}"
    except ValueError:
        return url


def _mark(entry: Entry) -> str | None:
    """The target an entry was queued for; None when unmarked (or the mark is damaged: sent
    as it is, as an unmarked one)."""
    marked = entry.body.get("target")
    return marked if isinstance(marked, str) else None


def secret_fragments(url: str) -> list[str]:
    """Every part of an Apprise URL that may be a secret (user, password, host, path, query
    values), longest first, for masking anything a service or Apprise says back."""
    parts = {url, url.split("://", 1)[-1]}
    try:
        split = urlsplit(url)
        parts |= {split.netloc, split.username or "", split.password or "", split.hostname or ""}
        # the host as written: hostname is lowercased (a token in the host part, pover://u@TOKEN)
        parts.add(split.netloc.rsplit("@", 1)[-1].rsplit(":", 1)[0])
        parts |= set(split.path.split("/"))
        parts |= {kv.split("=", 1)[-1] for kv in split.query.split("&")}
    except ValueError:
        pass
    parts |= {unquote(p) for p in parts}
    return sorted((p for p in parts if len(p) >= 4), key=len, reverse=True)


def mask(text: str, fragments: Sequence[str]) -> str:
    for fragment in fragments:
        text = text.replace(fragment, "***")
    return text


def apprise_installed() -> bool:
    """Whether Apprise can be imported here (the sender's child runs this interpreter); an
    import hook may refuse it outright."""
    try:
        return importlib.util.find_spec("apprise") is not None
    except (ImportError, ValueError):
        return False


def subprocess_sender(stop: threading.Event) -> Sender:
    """Run ``watchdog.comms.notify_send`` in a child process, killed on timeout or stop."""
    package_root = str(Path(__file__).resolve().parents[2])

    def send(request: dict[str, Any]) -> dict[str, Any]:
        env = dict(os.environ)
        env["PYTHONPATH"] = package_root + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "watchdog.comms.notify_send"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        try:
            proc.stdin.write(json.dumps(request).encode())
            proc.stdin.close()
        except OSError:
            pass
        deadline = time.monotonic() + SEND_TIMEOUT_S
        while proc.poll() is None:
            if stop.is_set() or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                return {
                    "ok": False,
                    "permanent": False,
                    "detail": "stopped"
                    if stop.is_set()
                    else f"no answer within {SEND_TIMEOUT_S:.0f} s",
                }
            time.sleep(0.05)
        out, err = proc.stdout.read(), proc.stderr.read()
        proc.stdout.close()
        proc.stderr.close()
        try:
            result = json.loads(out.decode().strip().splitlines()[-1])
            return (
                result
                if isinstance(result, dict)
                else {"ok": False, "permanent": False, "detail": "no answer"}
            )
        except (ValueError, IndexError):
            last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no answer"]
            if "No module named 'apprise'" in last[0]:
                return {
                    "ok": False,
                    "permanent": True,
                    "detail": APPRISE_MISSING,
                    "here": True,  # nothing of the service's: not its refusal, not the URL's
                }
            return {
                "ok": False,
                "permanent": False,
                "detail": f"the sender failed: {last[0]}",  # masked, then cut, by _settle
            }

    return send


class _Meters:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outcomes = Counter(
            "notifications",
            "Phone notifications by target and outcome "
            "(sent, failed attempt, dropped after max_age_h, coalesced)",
            ["target", "outcome"],
            namespace="printer_watchdog",
            registry=registry,
        )
        self.pending = Gauge(
            "notifications_pending",
            "Notifications waiting in the outbox, by target",
            ["target"],
            namespace="printer_watchdog",
            registry=registry,
        )


def _told_time(entry: Entry, saved: object) -> str:
    """A time saved in ``entry``'s body, as the owner's clock reads it now: a clock set by
    NTP since the entry was written (a Pi boots on the time it shut down) moves it too."""
    wall = _number(saved)
    return _local(None if wall is None else entry.on_clock_now(wall))


def _local(ts: object) -> str:
    """A time kept in an outbox entry, for the owner to read: the machine's own clock time, the
    day too where it is not today ("an unknown time" for what a damaged file holds)."""
    try:
        when = datetime.fromtimestamp(float(ts), UTC)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return "an unknown time"
    return local_time(when)


def _iso(ts: object) -> str | None:
    """A time kept in an outbox entry, as text (None for what a damaged file holds)."""
    try:
        return datetime.fromtimestamp(float(ts), UTC).isoformat(timespec="seconds")  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return None


class TargetSender:
    """One target: its queue (mirror of its outbox channel), its thread, its counters."""

    def __init__(
        self,
        cfg: NotifyTarget,
        name: str,
        outbox: Outbox,
        tokens: ActionTokens | None,
        meters: _Meters,
        sender: Sender,
        backoff: tuple[float, float],
        throttle: ThrottledLog,
        known_as: str | None = None,
        key: bytes | None = None,
        closing: Closing | None = None,
    ) -> None:
        """``known_as``: what its identity is made of (``identity_texts``; its name or URL);
        ``key``: the outbox's (``target_key``), which its identity is hashed with;
        ``closing``: what became of an alert's print since (``Closing``)."""
        assert cfg.url is not None
        self.closing = closing
        self.cfg = cfg
        self.name = name
        self.channel = f"notify-{name}"
        self.outbox = outbox
        self.tokens = tokens
        self.meters = meters
        self.sender = sender
        self.backoff = backoff
        self._throttle = throttle
        self._url = cfg.url.get_secret_value().strip()
        self.fragments = secret_fragments(self._url)
        # what its queued entries are marked with: an unnamed target's channel is its place in
        # the list, so after a target is removed the next one takes its channel (and its queue)
        self.identity = target_identity(known_as or cfg.name or self._url, key)
        self.place = target_identity(target_place(self._url), key)
        self._cond = threading.Condition()
        self._queue: list[Entry] = []
        self._failures: dict[str, int] = {}  # failed attempts of each queued entry
        self._sending: Entry | None = None
        self._next_try = 0.0  # monotonic
        self._delay = 0.0
        self._one_refused = False  # the last failure was a refusal of that notification alone
        # (printer, group) → when its last notification was sent, and that notification's body
        self._last_sent: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}
        # the id of the latest notification sent of each printer's kind of news: news of an
        # earlier print is never summed up across another print's that went meanwhile
        self._print_news_sent: dict[tuple[str, str], str] = {}
        # entry id → when its buttons were issued, and their (label, URL), reused on retries
        self._buttons: dict[str, tuple[float, list[tuple[str, str]]]] = {}
        # The wall clock (epoch seconds, as the outbox saves times), and per queued entry
        # (monotonic, its age) when first seen: its age counts on the monotonic clock from
        # then, so a clock set forward (a Pi without a clock battery meeting NTP) does not drop
        # what waits
        self.wall: Callable[[], float] = time.time
        self._seen: dict[str, tuple[float, float]] = {}
        self._unanswered: dict[str, int] = {}  # by entry: sends the service never answered
        self.sent = self.failed = self.dropped = self.coalesced = 0
        self.unconfirmed = 0  # taken as delivered: the service never answered (UNANSWERED_SENDS)
        self.rejected = False
        self.last_error: str | None = None
        self.last_sent_at: float | None = None
        self.thread: threading.Thread | None = None
        for metric in ("sent", "unconfirmed", "failed", "dropped", "coalesced"):
            meters.outcomes.labels(name, metric)

    # ----------------------------------------------------------------- queueing

    def wants(self, event: Event) -> bool:
        if not self.cfg.tells_of(event.printer):
            return False
        wanted = set(self.cfg.events)
        if event.kind in (Kind.ACTION_FAILED, Kind.ANSWER_FAILED, Kind.ANSWER_LATE):
            # a failure whose action failed is still a failure; a button's answer (and its
            # news, later) goes to whoever was sent the buttons
            return bool(wanted & {NotifyEvent.ACTION_FAILED, NotifyEvent.FAILURE})
        return _EVENT[event.kind] in wanted

    def load(self, left: Sequence[Entry] | None = None, owners: TargetOwners | None = None) -> None:
        """Take what earlier runs left for this target. ``left``: the entries of every notify
        channel; None: this one's own, whatever their marks (the key that made them is gone).
        ``owners``: who the channels belonged to, to tell a target whose URL or name changed
        (its queue kept) from one removed (its queue not sent to the next)."""
        trust_marks = left is not None
        if left is None:
            left = self.outbox.pending(self.channel)
        entries: list[Entry] = []
        theirs: list[Entry] = []
        inherited = 0
        for entry in sorted(left, key=lambda e: e.id):
            marked = _mark(entry) if trust_marks else None
            if owners is not None and marked in owners.taken and owners.heir(marked, entry) is self:
                marked, inherited = self.identity, inherited + 1
            if not self._for_me(entry, marked, owners):
                continue
            if not self.takes(entry, marked):
                theirs.append(entry)
                continue
            if self.identity is not None and _mark(entry) != self.identity:
                # taken over, unmarked, or its mark unknowable (a new key): this target's now
                entry = self.outbox.remark(entry, {**entry.body, "target": self.identity})
            entries.append(entry)
        entries, stale = self._camera_news_judged_afresh(entries)
        for entry in theirs + stale:
            self.outbox.done(entry)
        if theirs:
            logger.warning(
                "notify %s: %d notification(s) left for a target removed since, or for events "
                "or printers this one no longer takes, are not sent",
                self.name,
                len(theirs),
            )
        if inherited:
            logger.info(
                "notify %s: %d notification(s) queued before its URL or name changed (the same "
                "service and address) are sent with it",
                self.name,
                inherited,
            )
        with self._cond:
            # queued before the load and never saved (a full disk): kept, after what was left
            unsaved = [e for e in self._queue if e.path is None]
            self._queue = entries + unsaved
            # what was sent before the restart is not known: news of a print left queued is
            # summed up with no later news of a print (it may be another's, told meanwhile),
            # as if news had been sent just after it ("~" sorts after an id's characters)
            for e in entries:
                for group in _PRINT_NEWS:
                    told = (e.printer, group)
                    self._print_news_sent[told] = max(
                        self._print_news_sent.get(told, ""), f"{e.id}~"
                    )
            for printer in self._recall_cameras_told_offline():
                # told "offline" before the restart: its "back online" is news still
                self._last_sent.setdefault(
                    (printer, _GROUP[Kind.CAMERA_OFFLINE]), (0.0, {"kind": OFFLINE})
                )
            self._gauge()
        if self._queue:
            logger.info(
                "notify %s: %d notification(s) not yet delivered will be sent",
                self.name,
                len(self._queue),
            )

    def _cameras_file(self) -> Path:
        return self.outbox.root / self.channel / CAMERAS_TOLD_OFFLINE

    def _recall_cameras_told_offline(self) -> list[str]:
        """The printers whose camera this target told offline, and not back online, before a
        restart (``_remember_camera``): a file of its own, for this target's identity only."""
        try:
            saved = read_json(self._cameras_file(), 64 * 1024)
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            logger.warning(
                "notify %s: which cameras it told offline is not known: %s", self.name, exc
            )
            return []
        if not isinstance(saved, dict) or saved.get("target") != self.identity:
            return []  # another target's, whose channel this one took
        printers = saved.get("offline")
        return [p for p in printers if isinstance(p, str)] if isinstance(printers, list) else []

    def _remember_camera(self, entry: Entry) -> None:
        """A camera's "offline" or "back online" sent: which cameras the phone last heard were
        offline is kept, so that one back after a restart is still told back online."""
        kind = entry.body.get("kind")
        if kind not in (OFFLINE, Kind.CAMERA_ONLINE.value):
            return
        with self._cond:
            offline = sorted(
                printer
                for (printer, group), (_, body) in self._last_sent.items()
                if group == _GROUP[Kind.CAMERA_OFFLINE] and body.get("kind") == OFFLINE
            )
        data = {"target": self.identity, "offline": offline}
        try:
            replace_file(self._cameras_file(), json.dumps(data).encode())
        except OSError as exc:
            self._throttle(
                logger,
                logging.WARNING,
                f"cameras:{self.name}",
                "notify %s: cannot keep which cameras it told offline (%s): one back after a "
                "restart is not told back online",
                self.name,
                exc.strerror or exc,
            )

    def _camera_news_judged_afresh(self, entries: list[Entry]) -> tuple[list[Entry], list[Entry]]:
        """The entries to send, and the "camera offline" notifications an earlier run left
        unsent (waiting out ``camera_offline_after_s``, due while the daemon was down, or
        failing): they said what that run's camera did, and this run's watchers judge the
        camera afresh, telling it again if it is still offline (no "back online" would ever
        follow one sent now). One that sums up others (a "back online" in it) is the owner's
        news: kept."""
        stale = [
            e
            for e in entries
            if e.body.get("kind") == Kind.CAMERA_OFFLINE.value
            and not _count(e.body.get("coalesced"))
        ]
        if stale:
            logger.info(
                'notify %s: %d "camera offline" left unsent by the last run dropped: the '
                "camera is judged afresh, and told again if it is still offline",
                self.name,
                len(stale),
            )
        return [e for e in entries if e not in stale], stale

    def queued(self) -> list[Entry]:
        with self._cond:
            return list(self._queue)

    def _for_me(self, entry: Entry, marked: str | None, owners: TargetOwners | None) -> bool:
        """A saved entry queued for this target: marked with it, wherever it lies; in this
        target's channel, unmarked (saved before entries were marked, or the key could not be
        kept) or marked for a target that is gone (dropped then, as ``_takes`` refuses it)."""
        if self.identity is None or marked == self.identity:
            return entry.channel == self.channel or self.identity is not None
        if entry.channel != self.channel:
            return False
        # one left for a target that is gone, unless another target takes its queue over
        return marked is None or owners is None or marked not in owners.current | owners.taken

    def takes(self, entry: Entry, marked: str | None) -> bool:
        """A saved entry this target would send today: queued for it (or unmarked), of an
        event and a printer it takes."""
        if marked is not None and self.identity is not None and marked != self.identity:
            return False
        try:
            kind = Kind(entry.body.get("kind"))
        except ValueError:
            return True  # a damaged entry: sent as it is, as before
        return self.wants(Event(kind, entry.printer, "", ""))

    def enqueue(self, event: Event) -> None:
        """Write the notification to the outbox (coalesced with an earlier one) and wake the sender."""
        picture = {"heatmap": event.heatmap, "frame": event.frame or event.heatmap, "none": None}[
            self.cfg.attach
        ]
        group = _GROUP[event.kind]
        now = self.wall()
        at = event.at if event.at is not None else now
        with self._cond:
            waiting = self._same_news(event.printer, group)
            if self._is_hiccup(event, waiting, now):
                # back before camera_offline_after_s: not worth a notification either way
                for old in waiting:
                    self._queue.remove(old)
                    self.outbox.done(old)
                self._gauge()
                if self._latest_word(event.printer, group).get("kind") != OFFLINE:
                    return
                waiting = []  # the phone's last word was an earlier "offline": told back
            if self._answers_nothing(event, waiting, group):
                return  # its "offline" was withdrawn (the print ended first) or never sent
            body: dict[str, Any] = {
                "kind": event.kind.value,
                "group": group,
                "title": event.title,
                "message": event.message,
                "incident": event.incident,
                "coalesced": 0,
                "since": at,
                "latest": at,  # this event's own time: the one a message summing up others is about
                "not_before": 0.0,
                "attachment_name": f"{self.cfg.attach}.jpg",
                "answers": [v.value for v in event.answers],
                "target": self.identity,
            }
            if waiting:
                # a correction replacing its own alert's notification is that alert, not a
                # second one ("1 earlier alert ... summed up here" was said of one alert)
                body.update(_summing_up(waiting, event.incident if event.corrects else None))
                if event.corrects:
                    body["not_before"] = 0.0
            else:
                body["not_before"] = self._window_end(event, group, now)
            if event.kind is Kind.CAMERA_OFFLINE:
                body["not_before"] = max(
                    float(body["not_before"]), now + self.cfg.camera_offline_after_s
                )
            entry = self.outbox.put(self.channel, event.printer, body, picture)
            if failed := max((self._failures.get(old.id, 0) for old in waiting), default=0):
                self._failures[entry.id] = failed  # it carries refused news: it backs off too
            for old in waiting:
                self._summed_up(old)
            self._queue.append(entry)
            self._gauge()
            self._cond.notify_all()

    def _summed_up(self, old: Entry) -> None:
        """``old`` is told by a later notification that sums it up: it is not sent."""
        if old in self._queue:
            self._queue.remove(old)
        self.outbox.done(old)
        self._buttons.pop(old.id, None)
        self.coalesced += 1
        self.meters.outcomes.labels(self.name, "coalesced").inc()

    def _same_news(self, printer: str, group: str, after: str = "") -> list[Entry]:
        """``printer``'s notifications of ``group`` waiting (those queued after the id
        ``after``), oldest first, that a new one of that group may sum up: never one of an
        earlier print, nor a print's end (each is its own print's). An alert is not summed up
        across its print's end queued since (the phone
        was told the end, then the earlier print's failure as the next print's), nor a print's
        end across the next print's alert (told that failure, then both ends)."""
        if group == _GROUP[Kind.PRINT_DONE]:
            # each is the end of a print of its own: summed up with the next, a printer's error
            # was told as the next print's quiet "finished", or not told at all
            return []
        mine = [e for e in self._queue if e.printer == printer]
        waiting = [e for e in mine if e.body.get("group") == group and e.id > after]
        between = _ANOTHER_PRINT.get(group)
        if between is None:
            return waiting
        sending = self._sending
        on_its_way = [sending] if sending is not None and sending.printer == printer else []
        told = (e.id for e in (*mine, *on_its_way) if e.body.get("group") in between)
        sent = (self._print_news_sent.get((printer, g), "") for g in between)
        last = max((*told, *sent), default="")
        if after and last > after:
            return []
        return [e for e in waiting if e.id > last]

    def _put_back(self, entry: Entry) -> None:
        """A notification the service did not take goes back first in line, to be tried again;
        where news of the same kind came while it was on its way, that one sums it up instead:
        the phone gets one notification, counting it."""
        later = self._same_news(entry.printer, str(entry.body.get("group")), after=entry.id)
        if not later:
            self._queue.insert(0, entry)
            self._failures[entry.id] = self._failures.get(entry.id, 0) + 1
            return
        *between, newest = later
        told = _summing_up([entry, *between])
        told["coalesced"] += _count(newest.body.get("coalesced"))
        told["not_before"] = min(told["not_before"], _not_before(newest))
        if newest.body.get("kind") == Kind.CAMERA_OFFLINE.value:
            told["not_before"] = _not_before(newest)  # it waits out camera_offline_after_s
        if told["not_before"]:  # kept on newest's clock, as ``_not_before`` reads it
            told["not_before"] = newest.on_own_clock(told["not_before"])
        # the summing one written first: a restart in between finds it, or both
        self._queue[self._queue.index(newest)] = self.outbox.remark(newest, {**newest.body, **told})
        # it carries the refused news: it waits out the backoff as that one would have
        self._failures[newest.id] = max(
            self._failures.get(newest.id, 0), self._failures.get(entry.id, 0) + 1
        )
        for old in (entry, *between):
            self._summed_up(old)

    def withdraw(self, printer: str, kind: Kind) -> tuple[int, bool]:
        """Drop the notifications of ``kind`` that still wait to be due: a camera that went
        offline just before its print ended is not worth "the print is not watched". How many
        were dropped, and whether this target told the owner of it all the same (sent, on its
        way, or due and waiting for a retry). One that sums up others (a "back online" in it)
        is kept: the owner's last news must stay true."""
        now = self.wall()
        group = _GROUP[kind]
        with self._cond:
            matching = [
                e for e in self._queue if e.printer == printer and e.body.get("kind") == kind.value
            ]
            waiting = [
                e for e in matching if _not_before(e) > now and not _count(e.body.get("coalesced"))
            ]
            for entry in waiting:
                self._queue.remove(entry)
                self.outbox.done(entry)
            self._gauge()
            sending = self._sending
            told = (
                len(matching) > len(waiting)
                or (
                    sending is not None
                    and sending.printer == printer
                    and sending.body.get("kind") == kind.value
                )
                or self._last_body(printer, group).get("kind") == kind.value
            )
        return len(waiting), told

    def _answers_nothing(self, event: Event, waiting: list[Entry], group: str) -> bool:
        """A camera back online when no "offline" of it was sent or waits."""
        if event.kind is not Kind.CAMERA_ONLINE or waiting:
            return False
        if self._on_its_way(event.printer, group) is not None:
            return False
        return self._last_body(event.printer, group).get("kind") != OFFLINE

    def _on_its_way(self, printer: str, group: str) -> Entry | None:
        """``printer``'s ``group`` notification on its way to the service now, if it is."""
        sending = self._sending
        if (
            sending is not None
            and sending.printer == printer
            and sending.body.get("group") == group
        ):
            return sending
        return None

    def _latest_word(self, printer: str, group: str) -> dict[str, Any]:
        """The body of ``printer``'s ``group`` notification on its way to the service, or else of
        the last one sent ({}: none): what the phone hears last."""
        on_its_way = self._on_its_way(printer, group)
        return on_its_way.body if on_its_way is not None else self._last_body(printer, group)

    def _last_body(self, printer: str, group: str) -> dict[str, Any]:
        """The body of the last notification of ``printer``'s ``group`` sent ({}: none)."""
        sent = self._last_sent.get((printer, group))
        return {} if sent is None else sent[1]

    @staticmethod
    def _is_hiccup(event: Event, waiting: list[Entry], now: float) -> bool:
        """Back online while the "offline" still waits out camera_offline_after_s."""
        if event.kind is not Kind.CAMERA_ONLINE or not waiting:
            return False
        last = waiting[-1].body
        return (
            last.get("kind") == Kind.CAMERA_OFFLINE.value
            and not _count(last.get("coalesced"))
            and _not_before(waiting[-1]) > now
        )

    def _window_end(self, event: Event, group: str, now: float) -> float:
        """When a new event may be sent: after coalesce_s since the last one of its group."""
        sent = self._last_sent.get((event.printer, group))
        last, body = (None, {}) if sent is None else sent
        on_its_way = self._on_its_way(event.printer, group)
        if on_its_way is not None:
            last, body = now, on_its_way.body  # on its way right now
        previous, incident = str(body.get("kind")), str(body.get("incident") or "")
        if event.kind is Kind.CAMERA_ONLINE and previous == OFFLINE:
            return 0.0  # "back online" answers the "offline" that was sent: no waiting
        if event.corrects:
            return 0.0  # "the pause did NOT happen" of an alert sent: the owner must act now
        if self._answered_since(event.printer, group, incident):
            # the owner answered the last alert (cancelled its print, resumed it): this one
            # is news, no storm (a new print paused waited out the last alert's window)
            return 0.0
        if last is not None and 0 <= now - last < self.cfg.coalesce_s:  # < 0: clock set back
            return last + self.cfg.coalesce_s
        return 0.0

    def _answered_since(self, printer: str, group: str, incident: str) -> bool:
        """The alert this target sent last for ``printer`` (``incident``) was answered since,
        or its print ended."""
        if not incident or self.closing is None or group not in ALERT_GROUPS:
            return False
        try:
            return bool(self.closing(printer, incident))
        except Exception:  # noqa: BLE001 - an unreadable incident: the window holds
            return False

    def _gauge(self) -> None:
        self.meters.pending.labels(self.name).set(len(self._queue) + (1 if self._sending else 0))

    # ----------------------------------------------------------------- sending

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._cond:
                try:
                    entry, wait = self._next_due()
                except Exception:  # noqa: BLE001 - a bug here must not end the sender silently
                    logger.exception("notify %s: choosing the next notification failed", self.name)
                    entry, wait = None, 5.0
                if entry is None:
                    self._cond.wait(min(wait, 5.0))
                    continue
                self._queue.remove(entry)
                self._sending = entry
            try:
                ok = self._attempt(entry, stop)
            except Exception as exc:  # noqa: BLE001 - one bad entry must not end the sender
                logger.exception("notify %s: sending failed", self.name)
                ok = self._settle(
                    entry, {"ok": False, "permanent": False, "detail": f"internal error: {exc}"}
                )
            with self._cond:
                self._sending = None
                if not ok:
                    self._put_back(entry)
                self._gauge()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _next_due(self) -> tuple[Entry | None, float]:
        now = self.wall()
        for entry in list(self._queue):
            if self._age(entry, now) > self.cfg.max_age_h * 3600:
                self._drop(entry)
        ids = {e.id for e in self._queue}
        self._failures = {k: n for k, n in self._failures.items() if k in ids}
        self._seen = {k: seen for k, seen in self._seen.items() if k in ids}
        self._unanswered = {k: n for k, n in self._unanswered.items() if k in ids}
        heads, due = self._heads_due(now)
        wait = self._next_try - time.monotonic()
        if wait > 0 and not self._one_refused:
            # down, or refusing the credentials: nothing goes meanwhile (each try is a child
            # process, a second of a Pi's CPU)
            return None, wait
        if wait > 0:
            # the service took others and refused that one (too large, a bad request): what
            # was never tried goes at once (one printer's refused alert held every other
            # printer's alerts for up to the backoff's five minutes, for a day)
            due = [e for e in due if not self._failures.get(e.id)]
        if due:
            return min(due, key=lambda e: (self._failures.get(e.id, 0), e.id)), 0.0
        return None, self._wait_for(heads.values(), now, wait)

    def _wait_for(self, heads: Iterable[Entry], now: float, backoff: float) -> float:
        """How long nothing is due: until the first window ends, or the backoff does (a
        print's end held behind its alert is not due: it waits with it, not a wait of 0 that
        spun the sender)."""
        later = [
            t for e in heads if not self._failures.get(e.id) and (t := _not_before(e) - now) > 0
        ]
        if backoff > 0:
            later.append(backoff)
        return max(0.05, min(later)) if later else 60.0

    def _heads_due(self, now: float) -> tuple[dict[tuple[str, str], Entry], list[Entry]]:
        """Each printer's oldest notification of each kind of news, and those due now."""
        # Oldest first within a printer's kind of news (the phone must end on the latest);
        # between them, the fewest failed attempts first: one notification the service keeps
        # refusing (too large, say) does not hold back every other printer's alerts.
        # (an answer to an alert's button waits behind the alert, as it came after it)
        heads: dict[tuple[str, str], Entry] = {}
        for e in sorted(self._queue, key=lambda e: e.id):
            group = str(e.body.get("group"))
            heads.setdefault((e.printer, "alert" if group in ALERT_GROUPS else group), e)
        # further ahead than any window can put it: the clock was set back since: due now
        longest = max(self.cfg.coalesce_s, self.cfg.camera_offline_after_s) + 1.0
        due = [
            e
            for e in heads.values()
            if not 0 < _not_before(e) - now <= longest or self._ended_after(e, heads)
        ]
        # a print's end waits behind the alerts queued before it
        due = [
            e
            for e in due
            if e.body.get("group") != _GROUP[Kind.PRINT_DONE]
            or not self._ended_after(heads.get((e.printer, "alert")), heads)
        ]
        return heads, due

    @staticmethod
    def _ended_after(entry: Entry | None, heads: dict[tuple[str, str], Entry]) -> bool:
        """``entry`` is an alert whose print's end is queued after it: its window is over
        (the print is), and the end must not go first. The phone was told "print done" and
        then, minutes later, of a failure before it, read as the next print's."""
        if entry is None or entry.body.get("group") not in ALERT_GROUPS:
            return False
        done = heads.get((entry.printer, _GROUP[Kind.PRINT_DONE]))
        return done is not None and done.id > entry.id

    def _age(self, entry: Entry, now: float) -> float:
        """Seconds since ``entry`` was created: by the wall clock when first seen (what an
        earlier run left), by the monotonic clock since."""
        seen = self._seen.get(entry.id)
        if seen is None:
            seen = self._seen[entry.id] = (time.monotonic(), max(0.0, now - entry.born))
        return seen[1] + time.monotonic() - seen[0]

    def _drop(self, entry: Entry) -> None:
        self._queue.remove(entry)
        self.outbox.done(entry)
        self._buttons.pop(entry.id, None)
        self.dropped += 1
        self.meters.outcomes.labels(self.name, "dropped").inc()
        self._gauge()
        logger.warning(
            "notify %s: dropped the %s notification about %s from %s: not delivered within %g h",
            self.name,
            entry.body.get("kind"),
            entry.printer,
            _iso(entry.created),
            self.cfg.max_age_h,
        )

    def _action_links(self, entry: Entry) -> list[tuple[str, str]]:
        """(label, URL) of the alert's Not a failure, Resume and Cancel (and Stop watching this
        print, where they are links in the text); none without
        ``actions_url`` or for other events. Issued once per notification: its retries reuse
        them until half their lifetime is gone (a notification delivered after hours of
        retries gets links that still work for hours)."""
        if (
            not self.cfg.actions_url
            or self.tokens is None
            or not entry.body.get("incident")
            or entry.body.get("group") not in ALERT_GROUPS
        ):
            return []
        ttl = self.cfg.actions_expire_h * 3600
        issued = self._buttons.get(entry.id)
        if issued is None or self.tokens.clock() - issued[0] > ttl / 2:
            incident = str(entry.body["incident"])
            now = self.tokens.clock()
            links = []
            offered = saved_answers(entry.body)
            for verb, label in (*BUTTONS, SKIP_LINK) if offered else BUTTONS:
                if verb not in (Verb.NOT_A_FAILURE, Verb.SKIP_PRINT) and verb not in offered:
                    continue
                try:
                    token = self.tokens.issue(entry.printer, incident, verb, ttl)
                except OSError as exc:
                    logger.error(
                        "notify %s: cannot store the buttons' tokens (%s): sent without buttons",
                        self.name,
                        exc.strerror or exc,
                    )
                    return []
                links.append((label, f"{self.cfg.actions_url}/actions/{token}"))
            self._buttons[entry.id] = (now, links)
        return self._buttons[entry.id][1]

    def _has_buttons(self) -> bool:
        """ntfy shows buttons that call a URL; other services get the links in the text."""
        return self.cfg.scheme in ("ntfy", "ntfys")

    def _closed(self, entry: Entry) -> str:
        """What became of an alert's print since it was queued ("": it stands, or not an
        alert): one held back by ``coalesce_s`` or a service that was down must not arrive
        saying "paused", with a Resume, about a print cancelled since."""
        incident = entry.body.get("incident")
        if self.closing is None or entry.body.get("group") not in ALERT_GROUPS or not incident:
            return ""
        try:
            return self.closing(entry.printer, str(incident))
        except Exception:  # noqa: BLE001 - an unreadable incident: sent as it was queued
            return ""

    def _late(self, entry: Entry) -> str:
        """What the title of one event told late (held back, or retried) adds: when it
        happened. A lock screen shows the title alone, and it read as happening now."""
        since = _number(entry.body.get("since"))
        if _count(entry.body.get("coalesced")) or since is None:
            return ""  # summed up: its text says since when, and when the latest was
        if self.wall() - entry.on_clock_now(since) <= LATE_S:
            return ""
        return f" (at {_told_time(entry, since)})"

    @staticmethod
    def _closed_title(entry: Entry, kind: Kind, title: str, closed: str, late: str = "") -> str:
        """The title, once the alert's print was answered or ended: what it said of the print
        then ("paused", "still printing") is not true now. ``late`` (``_late``) goes with what
        happened, before what became of it: after it, it read as the time of the resume."""
        if not closed:
            return title + late
        now = SINCE.get(closed, closed)
        if kind in (Kind.FAILURE, Kind.FAILURE_GOING_ON, Kind.ACTION_FAILED):
            return f"{entry.printer}: print failure{late} · since {now}"
        return f"{title}{late} · since {now}"

    def _links(self, entry: Entry, closed: str) -> list[tuple[str, str]]:
        """The alert's answers; once its print was answered or ended, its verdict only."""
        links = self._action_links(entry)
        return [(label, url) for label, url in links if not closed or label == VERDICT_LABEL]

    def _actions_header(self, entry: Entry, closed: str = "") -> str:
        """ntfy's buttons; a button that ends the matter clears the notification once pressed.
        Not a failure does not: a print our pause holds stays paused, and its Resume must stay
        at hand (it was gone with the notification)."""
        if not self._has_buttons():
            return ""
        return "; ".join(
            f"http, {label}, {url}, method=POST"
            + ("" if label == VERDICT_LABEL else ", clear=true")
            for label, url in self._links(entry, closed)
            if label != SKIP_LINK[1]  # a fourth: a link in the text (three buttons at most)
        )

    def _message(self, entry: Entry, closed: str = "") -> str:
        text = str(entry.body.get("message", ""))
        n = _count(entry.body.get("coalesced"))
        if n:
            one, many = _SUMMED.get(str(entry.body.get("group")), ("event", "events"))
            text += f"\n({n} earlier {one if n == 1 else many} on {entry.printer} since {_told_time(entry, entry.body.get('since'))}, summed up here"
            latest = _number(entry.body.get("latest"))
            if latest is not None and self.wall() - entry.on_clock_now(latest) > LATE_S:
                # sent late (held back, or retried): when the latest happened, as one alone
                text += f"; the latest at {_told_time(entry, latest)}"
            if entry.body.get("kind") == Kind.CAMERA_ONLINE.value:
                # its "offline" was never sent alone (held back, or the service down)
                text += "; the print was not watched while the camera was offline"
            text += ")"
        elif (since := _number(entry.body.get("since"))) is not None and (
            self.wall() - entry.on_clock_now(since) > LATE_S
        ):
            text += f"\n(at {_told_time(entry, since)})"  # held back, or retried
        if closed:  # nothing left to check: its print was answered or ended
            text = text.replace(CHECK_NOW, "") + f"\nSince then: {SINCE.get(closed, closed)}."
        links = self._links(entry, closed)
        if self._has_buttons():  # the rest are buttons
            links = [(label, url) for label, url in links if label == SKIP_LINK[1]]
        if links:  # each opens a page on the daemon that asks before it acts
            text += "\n\nAnswer (the link opens a page on the watchdog; it asks first):\n"
            text += "\n".join(f"{label}: {url}" for label, url in links)
        return text

    def _attempt(self, entry: Entry, stop: threading.Event) -> bool:
        try:
            kind = Kind(entry.body.get("kind", "failure"))
        except ValueError:  # a damaged outbox file: send it as what it most likely is
            kind = Kind.FAILURE
        picture_path: str | None = None
        temp: str | None = None
        attached = entry.path / "attachment.jpg" if entry.path is not None else None
        # a link put there (by something else able to write in the storage folder) is not
        # followed: the file it named went to the notification service as the picture
        if attached is not None and not attached.is_symlink() and attached.is_file():
            picture_path = str(attached)
        elif entry.attachment is not None:
            temp = picture_path = self._picture_file(entry.attachment)
        closed = self._closed(entry)
        title = str(entry.body.get("title", ""))
        request = {
            "url": self._url,
            "title": self._closed_title(entry, kind, title, closed, self._late(entry)),
            "body": self._message(entry, closed),
            "type": _TYPE[kind],
            "attachment": picture_path,
            "attachment_name": entry.body.get("attachment_name", "picture.jpg"),
            "ntfy": {
                "priority": CLOSED_PRIORITY if closed else _NTFY_PRIORITY[kind],
                "actions": self._actions_header(entry, closed),
            },
        }
        try:
            result = self.sender(request)
        finally:
            if temp:
                os.unlink(temp)
        if stop.is_set() and not result.get("ok"):
            return False
        return self._settle(entry, result)

    def _shown(self, said: object) -> str:
        """A service's words as the log and ``/status`` show them: the URL's secrets masked
        first, then cut (a cut first could leave half a secret that no mask recognises)."""
        return mask(str(said), self.fragments).strip().rstrip(".")[:300]

    def _say_picture_refused(self, complaint: str) -> None:
        """The service took the notification only without its picture (said once a minute at
        most, like every recurring trouble)."""
        self._throttle(
            logger,
            logging.WARNING,
            f"notify-picture-refused:{self.name}",
            "notify %s (%s://): the service refused the picture (%s), so notifications go "
            "without it%s",
            self.name,
            self.cfg.scheme,
            self._shown(complaint),
            "; a ntfy server of your own takes pictures once its server.yml sets "
            "attachment-cache-dir and base-url"
            if self._has_buttons()  # ntfy
            else "",
        )

    def _picture_file(self, picture: bytes) -> str | None:
        """The picture of an alert the outbox could not keep, in a temporary file for the
        sender; None (sent without it) when that cannot be written either: a full disk must
        not hold back the alert itself."""
        temp = None
        try:
            fd, temp = tempfile.mkstemp(suffix=".jpg", prefix="watchdog-notify-")
            with os.fdopen(fd, "wb") as f:
                f.write(picture)
        except OSError as exc:
            if temp is not None:
                os.unlink(temp)
            self._throttle(
                logger,
                logging.ERROR,
                f"notify-picture:{self.name}",
                "notify %s: cannot write the picture (%s): sent without it",
                self.name,
                exc.strerror or exc,
            )
            return None
        return temp

    def _settle(self, entry: Entry, result: dict[str, Any]) -> bool:
        if result.get("unanswered"):
            sends = self._unanswered[entry.id] = self._unanswered.get(entry.id, 0) + 1
            if sends >= UNANSWERED_SENDS:
                logger.warning(
                    "notify %s (%s://): the service took the %s notification about %s and gave "
                    "no answer in time, %d times: taken as delivered (sent again, it would "
                    "arrive at every retry)",
                    self.name,
                    self.cfg.scheme,
                    entry.body.get("kind"),
                    entry.printer,
                    sends,
                )
                result = {"ok": True, "unconfirmed": True}
        if result.get("ok"):
            self._unanswered.pop(entry.id, None)
            if result.get("picture_refused"):
                self._say_picture_refused(str(result["picture_refused"]))
            if result.get("partly_refused"):
                self._throttle(
                    logger,
                    logging.ERROR,
                    f"notify-partly:{self.name}",
                    "notify %s (%s://): some of the URL's recipients took the %s notification "
                    "and some refused it (%s); not sent again, or those that took it would get "
                    "it at every retry: check the URL's recipients",
                    self.name,
                    self.cfg.scheme,
                    entry.body.get("kind"),
                    self._shown(result["partly_refused"]),
                )
            self.outbox.done(entry)
            unconfirmed = bool(result.get("unconfirmed"))
            self.meters.outcomes.labels(self.name, "unconfirmed" if unconfirmed else "sent").inc()
            now = self.wall()
            with self._cond:  # status() reads these from other threads
                self._buttons.pop(entry.id, None)
                if unconfirmed:
                    self.unconfirmed += 1
                else:
                    self.sent += 1
                self.last_sent_at = now
                news = (entry.printer, str(entry.body.get("group")))
                self._last_sent[news] = (now, entry.body)
                self._print_news_sent[news] = max(entry.id, self._print_news_sent.get(news, ""))
            self._remember_camera(entry)
            if self.rejected or self._delay:
                logger.info("notify %s: delivering again", self.name)
            self._throttle.reset(f"notify:{self.name}")
            self.rejected, self._delay, self._next_try = False, 0.0, 0.0
            logger.info(
                "notify %s: %s notification about %s sent",
                self.name,
                entry.body.get("kind"),
                entry.printer,
            )
            return True
        detail = self._shown(result.get("detail", ""))
        with self._cond:
            self.last_error = detail
            self.failed += 1
        self.meters.outcomes.labels(self.name, "failed").inc()
        # a refusal of that notification alone (HTTP 4xx: too large, a bad request) lets
        # news never tried go during the backoff; a service down holds everything
        self._one_refused = not result.get("permanent") and bool(ONE_REFUSED.search(detail))
        if result.get("permanent"):
            if not self.rejected:
                logger.error(
                    "notify %s (%s://): %s; its notifications are kept for %g h and tried again "
                    "every %.0f min",
                    self.name,
                    self.cfg.scheme,
                    f"cannot send here: {detail}"
                    if result.get("here")
                    else f"the service refused the notification: {detail}. Check the URL's "
                    "credentials",
                    self.cfg.max_age_h,
                    REJECTED_RETRY_S / 60,
                )
            self.rejected = True
            self._next_try = time.monotonic() + REJECTED_RETRY_S
            return False
        first, cap = self.backoff
        if not (self._next_try > time.monotonic() and entry.id not in self._failures):
            # (news tried during the backoff and refused does not lengthen it)
            self._delay = min(cap, self._delay * 2 if self._delay else first)
            self._next_try = time.monotonic() + self._delay
        self._throttle(
            logger,
            logging.WARNING,
            f"notify:{self.name}",
            "notify %s (%s://): cannot deliver: %s; retrying with backoff, %d waiting",
            self.name,
            self.cfg.scheme,
            detail,
            len(self._queue) + 1,
        )
        return False

    def status(self) -> dict[str, Any]:
        """A consistent view of the counters the sender thread keeps."""
        with self._cond:
            return {
                "service": self.cfg.scheme,
                "events": [e.value for e in self.cfg.events],
                "sent": self.sent,
                "unconfirmed": self.unconfirmed,
                "failed": self.failed,
                "pending": len(self._queue) + (1 if self._sending else 0),
                "dropped": self.dropped,
                "coalesced": self.coalesced,
                "rejected": self.rejected,
                "last_error": self.last_error,
                # its last try failed: it waits to try again (the page says so)
                "failing": bool(self.rejected or self._delay),
                "last_sent": _iso(self.last_sent_at),
            }


class Notifications:
    """All ``notify:`` targets; ``notify(event)`` queues to every target that wants it."""

    def __init__(
        self,
        targets: Sequence[NotifyTarget],
        outbox: Outbox,
        tokens: ActionTokens | None = None,
        *,
        registry: CollectorRegistry | None = None,
        sender: Sender | None = None,
        backoff: tuple[float, float] = (5.0, 300.0),
        throttle: ThrottledLog | None = None,
        closing: Closing | None = None,
    ) -> None:
        self._stop = threading.Event()
        self.outbox = outbox
        meters = _Meters(
            registry if registry is not None else CollectorRegistry(auto_describe=True)
        )
        send = sender or subprocess_sender(self._stop)
        throttle = throttle or ThrottledLog(60.0)
        # a key made now (deleted, or a first run): the marks left cannot be checked
        key, self._new_key = target_key(outbox.root) if targets else (None, False)
        self.targets = [
            TargetSender(
                t,
                n,
                outbox,
                tokens,
                meters,
                send,
                backoff,
                throttle,
                known_as=k,
                key=key,
                closing=closing,
            )
            for t, n, k in zip(targets, target_names(targets), identity_texts(targets), strict=True)
        ]
        self._started = False

    def __bool__(self) -> bool:
        return bool(self.targets)

    def start(self) -> None:
        """Load what earlier runs left in the outbox and start one sender thread per target."""
        if self._started or not self.targets:
            return
        self._started = True
        self._stop.clear()
        if not apprise_installed():
            logger.error(
                "notify: %s; notifications are kept in the outbox until it is", APPRISE_MISSING
            )
        left = {ch: self.outbox.pending(ch) for ch in self.outbox.channels("notify-")}
        everything = [e for entries in left.values() for e in entries]
        owners = TargetOwners(self.outbox.root, self.targets)
        for target in self.targets:  # every load before any sender runs: they share channels
            try:
                target.load(None if self._new_key else everything, owners)
            except Exception:  # noqa: BLE001 - a damaged outbox must not stop the daemon
                logger.exception("notify %s: loading its waiting notifications failed", target.name)
        owners.save()
        known = {t.channel for t in self.targets}
        claimed = {e.path for t in self.targets for e in t.queued()}
        for channel, entries in left.items():
            unclaimed = [e for e in entries if e.path not in claimed]
            if channel not in known and unclaimed:
                logger.warning(
                    "%d notification(s) in %s are for a notify target no longer configured; "
                    "they are kept but not sent",
                    len(unclaimed),
                    self.outbox.root / channel,
                )
        for target in self.targets:
            target.thread = threading.Thread(
                # a daemon thread: its queue is on disk, and an exit must never wait on a send
                target=target.run,
                args=(self._stop,),
                name=f"notify-{target.name}",
                daemon=True,
            )
            target.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the sender threads (a send in progress is killed; it stays in the outbox)."""
        self._stop.set()
        for target in self.targets:
            target.wake()
        for target in self.targets:
            if target.thread is not None:
                target.thread.join(timeout)
                if target.thread.is_alive():
                    logger.error(
                        "notify %s: sender did not stop within %.0f s", target.name, timeout
                    )
        self._started = False

    def notify(self, event: Event) -> None:
        """``event`` to every target that wants it, masked of every known secret first: its
        words may carry a camera's or a printer's own (a reason phrase echoing a login)."""
        title, message = secret_filter.mask(event.title), secret_filter.mask(event.message)
        event = replace(event, title=title, message=message)
        for target in self.targets:
            if target.wants(event):
                target.enqueue(event)

    def withdraw(self, printer: str, kind: Kind) -> bool:
        """True when a waiting notification of ``kind`` was withdrawn and no target told the
        owner of it: each target has its own delay (``camera_offline_after_s``), and one may
        have sent it already (its "back online" must follow then)."""
        results = [target.withdraw(printer, kind) for target in self.targets]
        return any(n for n, _ in results) and not any(told for _, told in results)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per target: sent, failed, pending, dropped, rejected, last error (masked)."""
        return {t.name: t.status() for t in self.targets}

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is pending or every target waits on a failure; True if all sent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(t.status()["pending"] == 0 for t in self.targets):
                return True
            time.sleep(0.05)
        return False


def _not_before(entry: Entry) -> float:
    """When an entry may be sent (epoch seconds; 0: now). An outbox file edited or damaged on
    disk may hold anything there: what is not a finite number means now."""
    try:
        value = float(entry.body.get("not_before", 0))
    except (TypeError, ValueError):
        return 0.0
    if not math.isfinite(value) or value == 0:
        return 0.0
    # on the clock of now: an NTP step during a camera's blip sent "offline" and "back online"
    return entry.on_clock_now(value)


def _summing_up(waiting: list[Entry], itself: str | None = None) -> dict[str, Any]:
    """What a notification replacing ``waiting`` (of one printer's kind of news) keeps of
    them: how many it stands for, since when, and when it may go (the soonest of theirs).
    ``itself``: the incident the new one corrects, whose own waiting notification it is."""
    oldest = min(waiting, key=lambda e: e.id)
    return {
        "coalesced": sum(
            _count(e.body.get("coalesced")) + (itself is None or e.body.get("incident") != itself)
            for e in waiting
        ),
        "since": oldest.body.get("since", oldest.created),
        "not_before": min(_not_before(e) for e in waiting),
    }


def _count(value: object) -> int:
    """A count kept in an outbox entry (0 for what a damaged file holds instead)."""
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0
