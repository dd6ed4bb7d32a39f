"""An owner's Pause or Cancel that the printer's API took, followed until the printer shows it.

An API that says "ok" is not a printer that stopped: Moonraker answers a ``PAUSE`` macro that
never calls ``PAUSE_BASE`` as done, and the print goes on. The watchdog's own pause is checked
so (``decide.stop_sent``); an owner's, from Home Assistant, the page or a phone, was answered
"accepted" and never put right, so an automation acting on it trusted a pause that did not
happen. Each such command's sender is answered "under way" and told how it ended: shown by
the printer, or not shown ``api.confirm_s`` later. Owned by the watcher's thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from watchdog.control import CommandResult
from watchdog.detection.decide import PAUSED_LATE_WITHIN_S, shows_stop
from watchdog.printing import Action, PrinterState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OwnerStop:
    """One stop being followed: ``incident`` is the alert it answers, if it names one."""

    action: Action
    incident: str | None
    due: float  # the watcher's clock
    done: Future[CommandResult]
    sure: bool  # the API answered it done (else sent without an answer: it may still come)
    job: str | None = None  # the print it was sent to stop, where the printer names it


@dataclass(frozen=True)
class LateStop:
    """A pause or cancel told not to have happened, still looked for until ``until``: one the
    printer shows by then (paused; no longer printing) is put right (``correction``), as the
    watchdog's own pause is. A cancel macro that waits for the moves queued before it, or a
    pause queued behind a heat-up, ends after its sender was told it did not."""

    stop: OwnerStop
    until: float  # the watcher's clock
    correction: Future[CommandResult]


Decided = Callable[[OwnerStop], None]


class ShownChecks:
    """The owner's stops waiting to be shown by the printer's status. A reload hands them
    to the new watcher (``take_over``); a watcher that goes for good answers them unknown.
    The watcher's thread follows them; ``close`` may come from the daemon's main thread while
    a hung watcher's thread is still in its step: the lock guards the list only, never the
    watcher's part or a sender's callbacks (disk, MQTT), so a stop is never held by them."""

    def __init__(self, printer: str, confirm_s: float) -> None:
        self.printer = printer
        self.confirm_s = confirm_s
        self._lock = threading.Lock()
        self._waiting: list[OwnerStop] = []
        self._late: list[LateStop] = []
        self._shown_at: dict[Action, float] = {}  # when an owner's stop of each kind last showed
        self._closed = ""  # why it was closed: a stop followed after it is answered so at once

    def follow(
        self, action: Action, incident: str | None, now: float, sure: bool, job: str | None = None
    ) -> Future[CommandResult]:
        """A pause or cancel of the print ``job`` the API took (``sure``), or may have, at
        ``now``: its end, once the printer tells it."""
        done: Future[CommandResult] = Future()
        done.set_running_or_notify_cancel()
        stop = OwnerStop(action, incident, now + self.confirm_s, done, sure, job)
        with self._lock:
            closed = self._closed
            if not closed:
                self._waiting.append(stop)
        if closed:
            self._answer_unknown([stop], closed)
        return done

    def waiting_for(self, action: Action, incident: str | None) -> OwnerStop | None:
        """The stop of ``action`` the API took that the printer has not shown yet, for the
        same alert (None: the print's latest), if any: pressed again, it would only be sent
        again (OctoPrint answers a cancel 409 once its job is neither printing nor paused, and
        the refusal read as the cancel failing)."""
        with self._lock:
            return next(
                (
                    s
                    for s in self._waiting
                    if s.action is action
                    and s.sure
                    and (s.incident is None or incident in (None, s.incident))
                ),
                None,
            )

    def shown_since(self, action: Action, now: float) -> float | None:
        """Seconds since an owner's stop of ``action`` was last shown by the printer in this
        print (None: none was)."""
        with self._lock:
            at = self._shown_at.get(action)
        return None if at is None else now - at

    def new_print(self) -> None:
        """Another print started (the same file printed again included, which its name does
        not tell): a pause from now on is not one told "did NOT pause" before, and a stop
        shown before was the last print's."""
        with self._lock:
            self._late = []
            self._shown_at = {}

    def take_over(self, old: ShownChecks) -> None:
        """A reload: the stops the old watcher followed are this one's now."""
        with old._lock:
            taken, old._waiting = old._waiting, []
            late, old._late = old._late, []
            shown_at = dict(old._shown_at)
        with self._lock:
            self._shown_at = shown_at | self._shown_at
            closed = self._closed
            if not closed:
                self._waiting = taken + self._waiting
                self._late = late + self._late
        if closed:  # the daemon stopping meanwhile
            self._answer_unknown(taken, closed)

    def on_status(
        self,
        state: PrinterState,
        now: float,
        shown: Decided,
        missed: Decided,
        job: str | None = None,
    ) -> None:
        """A status the printer answered (``job``: the print it names): stops it shows are
        done, those it still does not show past their time are not (``shown`` or ``missed``
        is the watcher's part, done before the sender is told). An API that does not answer
        tells nothing."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
            late, self._late = self._late, []
        decided: list[tuple[OwnerStop, Decided, CommandResult]] = []
        kept: list[OwnerStop] = []
        still_late, corrected = _sort_late(late, state, now, job)
        for stop in waiting:
            if shows_stop(state, cancel=stop.action is Action.CANCEL):
                said = "paused" if state is PrinterState.PAUSED else f"no longer printing ({state})"
                logger.info("%s: the owner's %s is shown: %s", self.printer, stop.action, said)
                decided.append((stop, shown, CommandResult(True, f"{self.printer} is {said}")))
            elif state in (PrinterState.PRINTING, PrinterState.PAUSED) and now >= stop.due:
                why = self._not_shown(stop, state)
                logger.warning("%s: %s", self.printer, why)
                correction = Future[CommandResult]()
                correction.set_running_or_notify_cancel()
                still_late.append(LateStop(stop, now + PAUSED_LATE_WITHIN_S, correction))
                end = CommandResult(False, why, unknown=not stop.sure, correction=correction)
                decided.append((stop, missed, end))
            else:
                kept.append(stop)
        with self._lock:
            for stop, part, _ in decided:
                if part is shown:
                    self._shown_at[stop.action] = now
            closed = self._closed
            if not closed:
                self._waiting = kept + self._waiting
                self._late = still_late + self._late
        if closed:  # closed meanwhile from another thread: what was not decided is unknown
            self._answer_unknown(kept, closed)
        for stop, part, end in decided:
            self._decide(stop, part, end)
        for later in corrected:  # after its "did NOT pause/cancel", when both come in one poll
            self._put_right(later, state, now, shown)

    def _put_right(self, later: LateStop, state: PrinterState, now: float, shown: Decided) -> None:
        """A stop told not to have happened that the printer shows now: its senders are told."""
        sent = later.stop.due - self.confirm_s
        logger.info("%s: the owner's %s is shown after all", self.printer, later.stop.action)
        if later.stop.action is Action.PAUSE:
            said = f"{self.printer} is paused after all, {now - sent:.0f} s after it was sent"
            self._decide(later.stop, shown, CommandResult(True, said), later.correction)
            return
        # a print that finished looks the same: its end is told as the print's, and its alert
        # answered "ended", not "cancelled"; a Cancel pressed again is answered done, not sent
        # (OctoPrint's 409 on an idle printer read as the cancel failing)
        with self._lock:
            self._shown_at[Action.CANCEL] = now
        said = (
            f"{self.printer} is no longer printing ({state}), {now - sent:.0f} s after "
            "the cancel was sent: cancelled late, or its print finished"
        )
        self._decide(later.stop, _no_part, CommandResult(True, said), later.correction)

    def _not_shown(self, stop: OwnerStop, state: PrinterState) -> str:
        doing = "printing" if state is PrinterState.PRINTING else "paused"
        later = f"was still {doing} {self.confirm_s:.0f} s later"
        if stop.sure:
            return (
                f"the printer took the {stop.action} but {later}: it did NOT "
                f"{stop.action} (does its {stop.action.upper()} macro stop the print?)"
            )
        # Moonraker answers a PAUSE queued behind a heat-up only once it ran
        return (
            f"the {stop.action}, sent without an answer, had not happened: the "
            f"printer {later} (it may still, if it waits behind a heat-up)"
        )

    def _decide(
        self,
        stop: OwnerStop,
        part: Decided,
        end: CommandResult,
        told: Future[CommandResult] | None = None,
    ) -> None:
        """The watcher's part, then the sender told (``told``: its correction, else its end):
        a part that fails is logged, and the stop is decided all the same (never decided
        twice, nor left for the next poll)."""
        try:
            part(stop)
        except Exception:  # noqa: BLE001 - the sender is told what the printer showed
            logger.exception("%s: recording the owner's %s failed", self.printer, stop.action)
        (stop.done if told is None else told).set_result(end)

    def close(self, why: str) -> None:
        """The watcher goes for good (``why``: its printer removed, the daemon stopping): what
        was not seen yet may still happen, and its sender (Home Assistant's Last command, the
        page, a phone) is told so rather than left "under way" for ever."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
            self._late = []  # told already; nobody will see them shown now
            self._closed = why
        self._answer_unknown(waiting, why)

    @staticmethod
    def _answer_unknown(stops: list[OwnerStop], why: str) -> None:
        for stop in stops:
            stop.done.set_result(
                CommandResult(
                    False,
                    f"{why} before the printer showed the {stop.action}: it may have happened",
                    unknown=True,
                )
            )


def _sort_late(
    late: list[LateStop], state: PrinterState, now: float, job: str | None
) -> tuple[list[LateStop], list[LateStop]]:
    """The stops told not to have happened, as a status (``job``: the print it names) leaves
    them: (still looked for, shown now). Those past their time, or of another print, go."""
    still_late: list[LateStop] = []
    corrected: list[LateStop] = []
    for later in late:
        stop = later.stop
        if now > later.until or (stop.job and job and job != stop.job):
            continue  # a stop now is another one (a filament change), or another print's
        if _shown_late(stop.action, state):
            corrected.append(later)
        elif state in (PrinterState.PRINTING, PrinterState.OFFLINE) or (
            stop.action is Action.CANCEL and state is PrinterState.PAUSED
        ):  # offline: tells nothing
            still_late.append(later)
    return still_late, corrected


def _no_part(stop: OwnerStop) -> None:
    """A stop whose showing is not the watcher's to record."""


def _shown_late(action: Action, state: PrinterState) -> bool:
    """A stop told not to have happened, shown now: a pause by a paused print (one that ended
    since is none), a cancel by an idle printer (a printer's error is its own end, told as
    such, no cancel)."""
    if action is Action.PAUSE:
        return state is PrinterState.PAUSED
    return state is PrinterState.IDLE
