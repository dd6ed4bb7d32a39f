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
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from watchdog.control import CommandResult
from watchdog.printing import Action, PrinterState

logger = logging.getLogger(__name__)

# what the printer shows once it has done it: a paused print is no cancelled one
SHOWN = {
    Action.PAUSE: (PrinterState.PAUSED, PrinterState.IDLE, PrinterState.ERROR),
    Action.CANCEL: (PrinterState.IDLE, PrinterState.ERROR),
}


@dataclass(frozen=True)
class _Waiting:
    action: Action
    due: float  # the watcher's clock
    done: Future[CommandResult]
    shown: Callable[[], None]  # the watcher's own part, before its sender is told
    missed: Callable[[], None]


class ShownChecks:
    """The owner's stops waiting to be shown by the printer's status."""

    def __init__(self, printer: str, confirm_s: float) -> None:
        self.printer = printer
        self.confirm_s = confirm_s
        self._waiting: list[_Waiting] = []

    def follow(
        self,
        action: Action,
        now: float,
        shown: Callable[[], None],
        missed: Callable[[], None],
    ) -> Future[CommandResult]:
        """A pause or cancel the API took at ``now``: its end, once the printer tells it.
        ``shown`` or ``missed`` is called on the watcher's thread as it is decided."""
        done: Future[CommandResult] = Future()
        done.set_running_or_notify_cancel()
        self._waiting.append(_Waiting(action, now + self.confirm_s, done, shown, missed))
        return done

    def on_status(self, printer: PrinterState, now: float) -> None:
        """A status the printer answered: stops it shows are done, those it still does not
        show past their time are not. An API that does not answer tells nothing."""
        still = []
        for w in self._waiting:
            if printer in SHOWN[w.action]:
                w.shown()
                said = (
                    "paused"
                    if printer is PrinterState.PAUSED
                    else f"no longer printing ({printer})"
                )
                logger.info("%s: the owner's %s is shown: %s", self.printer, w.action, said)
                w.done.set_result(CommandResult(True, f"{self.printer} is {said}"))
            elif printer in (PrinterState.PRINTING, PrinterState.PAUSED) and now >= w.due:
                w.missed()
                still_doing = "printing" if printer is PrinterState.PRINTING else "paused"
                why = (
                    f"the printer took the {w.action} but was still {still_doing} "
                    f"{self.confirm_s:.0f} s later: it did NOT {w.action} (does its "
                    f"{w.action.upper()} macro stop the print?)"
                )
                logger.warning("%s: %s", self.printer, why)
                w.done.set_result(CommandResult(False, why))
            else:
                still.append(w)
        self._waiting = still

    def close(self) -> None:
        """The watcher stops: what was not seen yet may still happen."""
        for w in self._waiting:
            w.done.set_result(
                CommandResult(
                    False,
                    f"the watchdog stopped following the {w.action} (a reload or a stop) "
                    "before the printer showed it: it may have happened",
                    unknown=True,
                )
            )
        self._waiting = []
