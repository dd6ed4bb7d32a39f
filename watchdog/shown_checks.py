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
from watchdog.detection.decide import shows_stop
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


Decided = Callable[[OwnerStop], None]


class ShownChecks:
    """The owner's stops waiting to be shown by the printer's status. A reload hands them
    to the new watcher (``take_over``); a watcher that goes for good answers them unknown.
    The watcher's thread follows them; ``close`` may come from the daemon's main thread while
    a hung watcher's thread is still in its step, hence the lock."""

    def __init__(self, printer: str, confirm_s: float) -> None:
        self.printer = printer
        self.confirm_s = confirm_s
        self._lock = threading.RLock()  # re-entered by a sender's callback on this thread
        self._waiting: list[OwnerStop] = []

    def follow(
        self, action: Action, incident: str | None, now: float, sure: bool
    ) -> Future[CommandResult]:
        """A pause or cancel the API took (``sure``), or may have, at ``now``: its end, once
        the printer tells it."""
        done: Future[CommandResult] = Future()
        done.set_running_or_notify_cancel()
        with self._lock:
            self._waiting.append(OwnerStop(action, incident, now + self.confirm_s, done, sure))
        return done

    def waiting_for(self, action: Action) -> OwnerStop | None:
        """The stop of ``action`` the API took that the printer has not shown yet, if any:
        pressed again, it would only be sent again (OctoPrint answers a cancel 409 once its
        job is neither printing nor paused, and the refusal read as the cancel failing)."""
        with self._lock:
            return next((s for s in self._waiting if s.action is action and s.sure), None)

    def take_over(self, old: ShownChecks) -> None:
        """A reload: the stops the old watcher followed are this one's now."""
        with old._lock, self._lock:
            self._waiting, old._waiting = old._waiting + self._waiting, []

    def on_status(self, state: PrinterState, now: float, shown: Decided, missed: Decided) -> None:
        """A status the printer answered: stops it shows are done, those it still does not
        show past their time are not (``shown`` or ``missed`` is the watcher's part, done
        before the sender is told). An API that does not answer tells nothing."""
        with self._lock:
            self._on_status(state, now, shown, missed)

    def _on_status(self, state: PrinterState, now: float, shown: Decided, missed: Decided) -> None:
        waiting, self._waiting = self._waiting, []
        for stop in waiting:
            if shows_stop(state, cancel=stop.action is Action.CANCEL):
                said = "paused" if state is PrinterState.PAUSED else f"no longer printing ({state})"
                logger.info("%s: the owner's %s is shown: %s", self.printer, stop.action, said)
                self._decide(stop, shown, CommandResult(True, f"{self.printer} is {said}"))
            elif state in (PrinterState.PRINTING, PrinterState.PAUSED) and now >= stop.due:
                doing = "printing" if state is PrinterState.PRINTING else "paused"
                later = f"was still {doing} {self.confirm_s:.0f} s later"
                if stop.sure:
                    why = (
                        f"the printer took the {stop.action} but {later}: it did NOT "
                        f"{stop.action} (does its {stop.action.upper()} macro stop the print?)"
                    )
                else:  # Moonraker answers a PAUSE queued behind a heat-up only once it ran
                    why = (
                        f"the {stop.action}, sent without an answer, had not happened: the "
                        f"printer {later} (it may still, if it waits behind a heat-up)"
                    )
                logger.warning("%s: %s", self.printer, why)
                self._decide(stop, missed, CommandResult(False, why, unknown=not stop.sure))
            else:
                self._waiting.append(stop)

    def _decide(self, stop: OwnerStop, part: Decided, end: CommandResult) -> None:
        """The watcher's part, then the sender told: a part that fails is logged, and the
        stop is decided all the same (never decided twice, nor left for the next poll)."""
        try:
            part(stop)
        except Exception:  # noqa: BLE001 - the sender is told what the printer showed
            logger.exception("%s: recording the owner's %s failed", self.printer, stop.action)
        stop.done.set_result(end)

    def close(self, why: str) -> None:
        """The watcher goes for good (``why``: its printer removed, the daemon stopping): what
        was not seen yet may still happen, and its sender (Home Assistant's Last command, the
        page, a phone) is told so rather than left "under way" for ever."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
            for stop in waiting:
                stop.done.set_result(
                    CommandResult(
                        False,
                        f"{why} before the printer showed the {stop.action}: it may have happened",
                        unknown=True,
                    )
                )
