"""What a printer does and what may be asked of it: the words every layer shares.

Pure data with no dependencies, so the decision core (``watchdog.detection.decide``), the
printer clients (``watchdog.devices.printers``) and the simulated printer of the demo and
replay follow one set of rules.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class PrinterState(StrEnum):
    """What a printer API reports (see ``watchdog.devices.printers``)."""

    PRINTING = "printing"
    PAUSED = "paused"
    IDLE = "idle"
    ERROR = "error"
    OFFLINE = "offline"


class Action(StrEnum):
    """What the watchdog (or the owner, through it) asks of a printer."""

    PAUSE = "pause"
    CANCEL = "cancel"
    RESUME = "resume"
    NOTIFY = "notify"  # nothing asked of the printer: the alert only


class Outcome(StrEnum):
    DONE = "done"  # the API accepted it
    REFUSED = "refused"  # the printer's state did not allow it
    FAILED = "failed"  # the API could not be reached or answered badly
    SKIPPED = "skipped"  # no printer API configured
    # sent, and not answered: the watchdog stopped first, or the API's timeout and retries ran
    # out (it may still happen: Moonraker answers a PAUSE once Klipper has run it)
    UNKNOWN = "unknown"


# Asked for the state the printer is already in: done, nothing is sent.
ALREADY: dict[Action, PrinterState] = {
    Action.PAUSE: PrinterState.PAUSED,
    Action.RESUME: PrinterState.PRINTING,
}
# The states in which the printer is asked at all; in any other it is refused.
ALLOWED: dict[Action, frozenset[PrinterState]] = {
    Action.PAUSE: frozenset({PrinterState.PRINTING}),
    Action.CANCEL: frozenset({PrinterState.PRINTING, PrinterState.PAUSED}),
    Action.RESUME: frozenset({PrinterState.PAUSED}),
}
# Where an accepted action leaves the printer (the simulated printer moves there at once).
AFTER: dict[Action, PrinterState] = {
    Action.PAUSE: PrinterState.PAUSED,
    Action.CANCEL: PrinterState.IDLE,
    Action.RESUME: PrinterState.PRINTING,
}


JOB_NAME_CHARS = 255  # a file name's most on the filesystems printers use
API_TEXT_CHARS = 300  # a printer's state or error text, as shown


def job_name(value: object) -> str | None:
    """A job's file name as an API gave it, fit to be shown: control characters (a newline
    that would start a made-up line, a link, in a notification; a terminal's escape codes)
    as ``?``, cut to a file name's length (a name of a megabyte went whole into every log
    line, the page's every look and the notifications). None when it is no name."""
    if not isinstance(value, str) or not value:
        return None
    return _shown(value, JOB_NAME_CHARS)


def api_text(value: str, limit: int = API_TEXT_CHARS) -> str:
    """A printer's own words (OctoPrint's state text, Klipper's error) on one line: runs of
    white space (Klipper's shutdown texts span lines) one space, other control characters
    ``?``, cut to ``limit`` (OctoPrint's state text of 600 KB went whole into the page's
    every look, Home Assistant's Last command and the print-done notification)."""
    return _shown(" ".join(value[: limit * 8].split()), limit)


def _shown(value: str, limit: int) -> str:
    shown = "".join(
        "?" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c
        for c in value[: limit + 1]
    )
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def number(value: object) -> float | None:
    """A number an API answered (or a file saved), if it is one a float holds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer with hundreds of digits
        return None


def seconds(value: object) -> float | None:
    """A duration (an API's answer, or one saved with an alert), if it is one."""
    duration = number(value)
    return duration if duration is not None and math.isfinite(duration) and duration >= 0 else None


@dataclass(frozen=True)
class PrinterStatus:
    """What the printer does now, as far as its API says."""

    state: PrinterState
    job: str | None = None  # file name of the current job, if known
    detail: str = ""  # human-readable, e.g. "HTTP 503 from http://…: Klippy Host not connected"
    # Tell a print started again from the same file from the one watched (its look is learnt
    # again) and from the one an old alert was about (None: the API does not say). ``printed_s``: seconds the job has printed, its pauses
    # left out (OctoPrint's print time, Klipper's print duration): it only grows within one
    # print. ``started_at``: when the job started (wall clock), where the API counts its
    # pauses too (Klipper's total duration; OctoPrint's print time would put it later), and
    # ``elapsed_s`` the same as a duration, which no wall clock's step moves.
    printed_s: float | None = None
    started_at: float | None = None
    elapsed_s: float | None = None
    # False where the API would take a pause and do nothing (OctoPrint finishing a print:
    # its last moves queued), so that a pause there is said not to have happened
    pausable: bool = True
    # False where the API would take a resume and do nothing (OctoPrint still pausing: its
    # queued moves), so that a resume there is refused, not told done with the print paused
    resumable: bool = True
    # how the print just ended ended, where the API says: "finished" or "cancelled" (Klipper's
    # print_stats; OctoPrint's job progress), "lost" (OctoPrint restarted between two polls:
    # no job selected any more); "" where it cannot tell
    ended: str = ""
    # False where the API answers but does not see the printer (OctoPrint connected to none:
    # a printer printing from its SD card may still print): what it does is not known
    sees_printer: bool = True
    # True where the API says a heater is short of its target (``heating``): a print's start
    # heats for minutes under a "printing" state, and the camera shows a still bed meanwhile
    heating: bool = False
    # why the API will not let the watchdog pause or cancel, in the owner's words ("" where
    # nothing says so): an OctoPrint key whose user lacks the Print permission answered every
    # status poll all night and refused the one pause that mattered
    cannot_act: str = ""

    def __post_init__(self) -> None:
        # what the printer's API says (Klipper's shutdown and error texts run over several
        # lines) goes into log lines, alerts and phone notifications: one line each
        object.__setattr__(self, "detail", " ".join(self.detail.split()))


@dataclass(frozen=True)
class ActionResult:
    """The outcome of one pause/cancel/resume/notify, as it goes into the alert."""

    action: Action
    outcome: Outcome
    detail: str
    attempts: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", " ".join(self.detail.split()))  # see PrinterStatus

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "outcome": self.outcome.value,
            "detail": self.detail,
            "attempts": self.attempts,
        }


# A heater this far or more below its target is heating (bed and hotend regulators swing by
# a degree or two around it once hot; a print's start heats them by tens of degrees)
HEATING_MARGIN_C = 4.0


def heating(heaters: dict[str, tuple[float, float]]) -> bool:
    """Whether any of ``heaters`` (name: (actual, target) in degrees C) is heating: a target
    set, and the heater ``HEATING_MARGIN_C`` or more below it. A heater switched off (target
    0) is not heating, however cold."""
    return any(
        target > 0 and actual <= target - HEATING_MARGIN_C for actual, target in heaters.values()
    )
