"""An owner's Pause or Cancel that the printer's API took, followed until the printer shows it.

An API that says "ok" is not a printer that stopped: Moonraker answers a ``PAUSE`` macro that
never calls ``PAUSE_BASE`` as done, and the print goes on. The watchdog's own pause is checked
so (``decide.stop_sent``); an owner's, from Home Assistant, the page or a phone, was answered
"accepted" and never put right, so an automation acting on it trusted a pause that did not
happen. Each such command's sender is answered "under way" and told how it ended: shown by
the printer, or still printing ``api.confirm_s`` later. Owned by the watcher's thread.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass

from watchdog.control import CommandResult
from watchdog.printing import Action, PrinterState

STOPPED = (PrinterState.PAUSED, PrinterState.IDLE, PrinterState.ERROR)


@dataclass(frozen=True)
class _Waiting:
    action: Action
    due: float  # the watcher's clock
    done: Future[CommandResult]


class ShownChecks:
    """The owner's stops waiting to be shown by the printer's status."""

    def __init__(self, printer: str, confirm_s: float) -> None:
        self.printer = printer
        self.confirm_s = confirm_s
        self._waiting: list[_Waiting] = []

    def follow(self, action: Action, now: float) -> Future[CommandResult]:
        """A pause or cancel the API took at ``now``: its end, once the printer tells it."""
        done: Future[CommandResult] = Future()
        done.set_running_or_notify_cancel()
        self._waiting.append(_Waiting(action, now + self.confirm_s, done))
        return done

    def on_status(self, printer: PrinterState, now: float) -> None:
        """A status the printer answered: stops it shows are done, those it still prints
        past their time are not. An API that does not answer tells nothing."""
        still = []
        for w in self._waiting:
            if printer in STOPPED:
                shown = (
                    "paused"
                    if printer is PrinterState.PAUSED
                    else f"no longer printing ({printer})"
                )
                w.done.set_result(CommandResult(True, f"{self.printer} is {shown}"))
            elif printer is PrinterState.PRINTING and now >= w.due:
                w.done.set_result(
                    CommandResult(
                        False,
                        f"the printer took the {w.action} but was still printing "
                        f"{self.confirm_s:.0f} s later: it did NOT {w.action} (does its "
                        f"{w.action.upper()} macro stop the print?)",
                    )
                )
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
