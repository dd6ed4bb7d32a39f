"""When a run of anomalous frames becomes an action: a pure state machine, no I/O.

Time is passed in (``now``, seconds), so the live daemon and ``replay`` (which runs on the
recording's clock) make exactly the same decisions, and tests need no sleeping. Each fold
returns the new state and the events the watcher routes (a new print: learn its look; a resume
after our action: accept what the camera shows; fired: act and alert).

Rules (each answers what owners of such tools complain of most: pauses of good prints, and
pauses again right after they resume):
- only frames of a running print count; a new print starts from a clean slate;
- while the detector learns the print's start, a frame counts only when the detector judges
  the start itself (``Verdict.anomalous``: the start guard's absolute score, or the start's
  later frames against its first ones); the rest of the start never counts;
- ``consecutive`` anomalous frames in a row trigger the action once;
- after a trigger the watcher is disarmed: it never acts again on the frames that caused it;
  it re-arms ``cooldown_s`` after the user resumes (or, where the printer never paused
  (notify, or a failed pause), ``cooldown_s`` after the action ended: the watcher restarts
  the clock then, so retries against a dead API do not use it up), counting fresh frames only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

from watchdog.printing import PrinterState


class Event(Enum):
    NEW_PRINT = "new_print"  # a print started (or the job changed): learn its look afresh
    RESUMED_AFTER_ACTION = "resumed_after_action"  # the owner resumed after our pause
    RESUMED = "resumed"  # a pause of the owner's own ended (a filament change): accept the view
    FIRED = "fired"  # enough anomalous frames in a row: act now
    PRINT_ENDED = "print_ended"  # a print we were watching stopped printing, not by our cancel
    PRINT_ERROR = "print_error"  # the printer reports an error: the print it was running is over
    CANCELLED_WHILE_PAUSED = "cancelled_while_paused"  # a paused print ended: it was cancelled
    # our pause or cancel, taken by the printer's API, did not happen: the printer prints on
    NOT_STOPPED = "not_stopped"
    # the printer shows a pause after all, after it was said not to have happened (a PAUSE
    # queued behind a long command, or paused at the printer since)
    PAUSED_LATE = "paused_late"
    # the printer shows our pause or cancel within the time it had (whatever its API said)
    STOP_SHOWN = "stop_shown"


class Label(Enum):
    """The state shown to people (MQTT, /status, the page, replay's JSON lines)."""

    IDLE = "idle"
    CALIBRATING = "calibrating"
    WATCHING = "watching"
    ANOMALY = "anomaly"
    PAUSED = "paused"
    COOLDOWN = "cooldown"
    CAMERA_OFFLINE = "camera_offline"
    DISABLED = "disabled"
    SKIPPING_PRINT = "skipping_print"  # the owner stopped watching the print under way
    # the printer's API cannot be reached (or refuses the key) and no print is being watched:
    # "idle" would hide a print going on unwatched
    PRINTER_OFFLINE = "printer_offline"


@dataclass(frozen=True)
class Settings:
    consecutive: int
    cooldown_s: float

    @classmethod
    def from_config(cls, detection: DetectionSettings) -> Settings:
        return cls(consecutive=int(detection.consecutive), cooldown_s=float(detection.cooldown_s))


class DetectionSettings(Protocol):
    """What ``Settings.from_config`` reads (``config.DetectionConfig`` has it)."""

    @property
    def consecutive(self) -> int: ...

    @property
    def cooldown_s(self) -> float: ...


@dataclass(frozen=True)
class WatchState:
    """Where one printer's watcher stands."""

    printer: PrinterState = PrinterState.IDLE  # last printer state seen
    job: str | None = None
    frames: int = 0  # frames scored in this print
    consecutive: int = 0  # anomalous frames in a row (counting ones only)
    armed: bool = True  # False after a trigger, until re-armed
    rearm_at: float | None = None  # when a disarmed watcher re-arms (None: waiting for resume)
    triggers: int = 0  # actions taken in this print
    cooling: bool = False  # resumed after our action, waiting out the cooldown
    # We acted on a failure of this print and nobody has answered it yet (a resume, "not a
    # failure", another print): what Home Assistant's problem sensor shows. Neither one
    # anomalous frame nor a pause the owner made is a failure; a cancel or a notify-only alert
    # stays one until it is answered or another print starts.
    failure: bool = False
    # The watchdog cancelled this print (its alert's action, or the owner's Cancel through it):
    # its end was told by the alert or asked for, so it is no "print ended" notice.
    cancelled: bool = False
    # How long this job had run at the last status that said so: a print of the same file
    # started again between two polls (the API away across its end) runs for less.
    printed_s: float | None = None  # ``JobClock.printed_s``
    began: float | None = None  # on the clock of ``now``: ``now - JobClock.elapsed_s``
    # Our pause or cancel was taken by the printer's API: by then (on the clock of ``now``)
    # the printer shows it (paused, or no longer printing), or it did not happen.
    stop_due: float | None = None
    # it did not show by then (``Event.NOT_STOPPED`` was told): a pause seen before this time
    # is ours, late (``Event.PAUSED_LATE``); a later one is another (a filament change)
    late_until: float | None = None

    @property
    def watching(self) -> bool:
        """Frames are worth scoring (printing); idle printers cost no inference."""
        return self.printer is PrinterState.PRINTING

    @property
    def label(self) -> Label:
        if self.printer is PrinterState.PAUSED:
            return Label.PAUSED
        if self.printer is not PrinterState.PRINTING:
            return Label.IDLE
        if not self.armed:
            return Label.COOLDOWN if self.cooling else Label.ANOMALY
        return Label.ANOMALY if self.consecutive > 0 else Label.WATCHING


Fold = tuple[WatchState, tuple[Event, ...]]

# A pause seen this long after ours was told not to have happened is ours, late (a PAUSE queued
# behind a heat-up or a bed mesh); one later is another pause (a filament change, a runout)
PAUSED_LATE_WITHIN_S = 900.0

# A job's start read from its elapsed time moves by the poll's own delay; a print of the same
# file started this much later is another print.
STARTED_AGAIN_S = 60.0


@dataclass(frozen=True)
class JobClock:
    """How long the printer's job has run, as its API says (None: it does not say)."""

    printed_s: float | None = None  # its pauses left out: only grows while it prints
    elapsed_s: float | None = None  # since it started, its pauses included


def on_printer(
    state: WatchState,
    printer: PrinterState,
    job: str | None,
    now: float,
    s: Settings,
    clock: JobClock = JobClock(),
) -> Fold:
    """Fold a printer status into the state: new prints reset, resumes start the cooldown.

    An unknown status (the API offline) changes nothing: a blip must neither re-arm a disarmed
    watcher nor pass for a new print. An error the printer itself reports (OctoPrint's error
    state, Klipper's shutdown or a print it aborted) ends the print it was running: it is not
    watched on, and printing again is a new print, even of the same file. So is the same file
    whose job ran for less than it had (``clock``): it was started again while the API was
    away, or between two polls.
    """
    state, events = _on_status(state, printer, job, now, s, clock)
    state, events = _stop_followed(state, printer, now, events)
    if printer not in (PrinterState.PRINTING, PrinterState.PAUSED) or state.job != job:
        return state, events
    # OctoPrint's print time can grow during a pause (an SD print's status reports) and take
    # the pause back at the resume: only a printing job's own time is kept, and not the first
    # one after a resume (OctoPrint's progress is cached until the card's next report: with
    # the pause still in it, the right time after it had gone back, "a new print")
    resumed = Event.RESUMED in events or Event.RESUMED_AFTER_ACTION in events
    printed = clock.printed_s if printer is PrinterState.PRINTING and not resumed else None
    return replace(
        state,
        printed_s=printed if printed is not None else state.printed_s,
        began=now - clock.elapsed_s if clock.elapsed_s is not None else state.began,
    ), events


def shows_stop(printer: PrinterState, cancel: bool) -> bool:
    """The printer shows a pause or cancel carried out (the watchdog's or the owner's). A
    paused print is no cancelled one (a cancel macro that pauses, then a resume: the print
    ran on, marked cancelled, its end never told)."""
    if printer in (PrinterState.IDLE, PrinterState.ERROR):
        return True
    return printer is PrinterState.PAUSED and not cancel


def _stop_followed(
    state: WatchState, printer: PrinterState, now: float, events: tuple[Event, ...]
) -> Fold:
    """Our pause or cancel seen carried out, or still printing when it was due: an API that
    says "ok" is not a printer that stopped (a PAUSE macro that does not pause). An API that
    does not answer tells nothing: the next answer decides. Paused after it was told not to
    have happened, the print is paused after all (``Event.PAUSED_LATE``)."""
    if state.stop_due is None:
        if state.late_until is not None and printer is PrinterState.PAUSED:
            if now > state.late_until:  # another pause (a filament change)
                return replace(state, late_until=None), events
            # ours after all: waited on as one that showed in time (the owner's resume is an
            # answer to the alert, its failure over and the cooldown started; taken for the
            # owner's own pause, the failure stood until the print's end)
            ours = replace(state, late_until=None, armed=False, rearm_at=None, consecutive=0)
            return ours, (*events, Event.PAUSED_LATE)
        return state, events
    if shows_stop(printer, cancel=state.cancelled):
        return replace(state, stop_due=None, late_until=None), (*events, Event.STOP_SHOWN)
    if printer is PrinterState.PRINTING and now >= state.stop_due:
        # not cancelled after all: its end is a "print ended" again
        until = now + PAUSED_LATE_WITHIN_S
        missed = replace(state, stop_due=None, late_until=until, cancelled=False)
        return missed, (*events, Event.NOT_STOPPED)
    return state, events


def started_again(state: WatchState, job: str | None, now: float, clock: JobClock) -> bool:
    """The printer runs the file it ran, but a job of it started since the last status: its
    print time went back, or its start moved later."""
    if job is None or job != state.job:
        return False
    went_back = (
        clock.printed_s is not None
        and state.printed_s is not None
        and clock.printed_s + 1 < state.printed_s  # whole seconds on OctoPrint
    )
    later = (
        clock.elapsed_s is not None
        and state.began is not None
        and now - clock.elapsed_s > state.began + STARTED_AGAIN_S
    )
    return went_back or later


def _on_status(
    state: WatchState,
    printer: PrinterState,
    job: str | None,
    now: float,
    s: Settings,
    clock: JobClock,
) -> Fold:
    if printer is PrinterState.ERROR:
        running = state.printer in (PrinterState.PRINTING, PrinterState.PAUSED)
        if not running:
            return replace(state, printer=printer), ()
        # its print is over, as at an idle printer: its failure answered (Home Assistant's
        # problem sensor stayed on through a Klippy shutdown until the next print)
        over = replace(state, printer=printer, failure=state.failure and state.cancelled)
        return over, (Event.PRINT_ERROR,)
    if printer not in (PrinterState.PRINTING, PrinterState.PAUSED, PrinterState.IDLE):
        return state, ()
    again = started_again(state, job, now, clock)
    if printer is PrinterState.PRINTING:
        return _on_printing(state, job, now, s, again)
    if (
        printer is PrinterState.PAUSED
        and job is not None
        and (again or state.job not in (None, job))
    ):
        # another job, first seen paused (a runout sensor or a PAUSE in its start G-code, the
        # API away at its start): a new print, not a resume of the last one when it prints
        return WatchState(printer=printer, job=job), (Event.NEW_PRINT,)
    was = state.printer
    moved = replace(state, printer=printer, job=job if job is not None else state.job)
    if printer is PrinterState.IDLE and was in (PrinterState.PRINTING, PrinterState.PAUSED):
        return _print_over(state, moved)
    if printer is PrinterState.PAUSED and was is PrinterState.PRINTING and not state.armed:
        return replace(state, printer=printer, rearm_at=None), ()  # our pause took: wait for resume
    return moved, ()


def _print_over(state: WatchState, moved: WatchState) -> Fold:
    """The printer idle after printing or paused: its print is over. Its failure is answered
    (Home Assistant's sensor went off only at the next restart), unless our own cancel ended
    it: that alert waits for the owner."""
    moved = replace(moved, failure=moved.failure and state.cancelled)
    if state.printer is PrinterState.PAUSED:
        # a paused print cannot finish: it was cancelled (at the printer, or through the watchdog)
        return moved, (Event.CANCELLED_WHILE_PAUSED,)
    # finished (or cancelled at the printer); not after our own cancel: the alert said that
    return moved, () if state.cancelled else (Event.PRINT_ENDED,)


def _on_printing(state: WatchState, job: str | None, now: float, s: Settings, again: bool) -> Fold:
    """The printer reports printing: a new print, a resume, or more of the same print."""
    printing = PrinterState.PRINTING
    if state.printer is not printing:
        resumed = (
            state.printer is PrinterState.PAUSED
            and not again
            and (job is None or state.job is None or job == state.job)
        )
        if not resumed:
            return WatchState(printer=printing, job=job), (Event.NEW_PRINT,)
        if not state.armed:
            cooling = resumed_after_action(replace(state, printer=printing), now, s)
            return cooling, (Event.RESUMED_AFTER_ACTION,)
        return replace(state, printer=printing, consecutive=0), (Event.RESUMED,)
    if again or (job is not None and state.job is not None and job != state.job):
        return WatchState(printer=printing, job=job), (Event.NEW_PRINT,)  # the job changed under us
    return replace(state, job=job if job is not None else state.job), ()


def on_frame(state: WatchState, anomalous: bool, now: float, s: Settings) -> Fold:
    """Fold one scored frame into the state; ``Event.FIRED`` means act now."""
    if not state.watching:
        return state, ()
    frames = state.frames + 1
    if not state.armed:
        # not while our pause or cancel may still show: a second alert must not come before
        # the first one is known to have stopped the print, or corrected
        unsettled = state.stop_due is not None and now < state.stop_due
        if state.rearm_at is not None and now >= state.rearm_at and not unsettled:
            state = replace(state, armed=True, rearm_at=None, consecutive=0, cooling=False)
        else:
            return replace(state, frames=frames, consecutive=0), ()
    if not anomalous:
        return replace(state, frames=frames, consecutive=0), ()
    consecutive = state.consecutive + 1
    if consecutive < s.consecutive:
        return replace(state, frames=frames, consecutive=consecutive), ()
    fired = replace(
        state,
        frames=frames,
        consecutive=consecutive,
        armed=False,
        # Re-arm by time only if the printer never reports paused (notify, failed pause);
        # on_printer clears this when the pause is seen, and sets it again on resume.
        rearm_at=now + s.cooldown_s,
        triggers=state.triggers + 1,
        failure=True,
    )
    return fired, (Event.FIRED,)


def paused_by_us(state: WatchState) -> WatchState:
    """After a restart, the printer is still paused by our alert (nobody answered it): as it
    was left, so a resume re-learns the print and Home Assistant still shows the failure."""
    return replace(state, armed=False, rearm_at=None, failure=True, triggers=max(1, state.triggers))


def still_failing(state: WatchState) -> WatchState:
    """After a restart, the print our alert only told of (``action: notify``, or a pause that
    failed) still runs and nobody answered it: its failure stands."""
    return replace(state, failure=True)


def stop_due_after_restart(state: WatchState, due: float, now: float, s: Settings) -> WatchState:
    """After a restart inside the time our pause had to show (``stop_sent``), the printer still
    printing: the alert stands, and the printer must still show the pause by ``due`` (taken
    for a resume, a PAUSE macro that does not pause went on unsaid)."""
    return replace(paused_by_us(state), rearm_at=now + s.cooldown_s, stop_due=due)


def after_a_gap(state: WatchState) -> WatchState:
    """Frames stopped coming for a while (the camera offline, watching switched off): a run
    of anomalous frames does not span the gap; three in a row are three fresh ones."""
    return replace(state, consecutive=0)


def resumed_after_action(state: WatchState, now: float, s: Settings) -> WatchState:
    """Resumed after our action (seen live, or after a restart: resumed while the watchdog
    was stopped): the cooldown is waited out (what paused it is still in view) and the
    failure is answered."""
    return replace(
        state,
        armed=False,
        consecutive=0,
        rearm_at=now + s.cooldown_s,
        cooling=True,
        failure=False,
    )


def stop_sent(state: WatchState, due: float) -> WatchState:
    """The printer's API took (or may have taken) our pause or cancel: the printer must show
    it by ``due`` (``Event.NOT_STOPPED`` otherwise); an earlier one still due stands, one
    missed is the older alert's (this one is followed now)."""
    due = due if state.stop_due is None else min(due, state.stop_due)
    return replace(state, stop_due=due, late_until=None)


def owner_stop_sent(state: WatchState) -> WatchState:
    """The owner's own pause or cancel went to the printer through the watchdog: a pause
    seen from now is theirs, not ours shown late (``Event.PAUSED_LATE``: its alert was told
    "paused after all", the phones "print failure, paused", of a print the owner had passed)."""
    return replace(state, late_until=None)


def cancelled_by_us(state: WatchState) -> WatchState:
    """The printer took (or may have taken: no answer in time) a cancel the watchdog sent."""
    return replace(state, cancelled=True)


def answered(state: WatchState) -> WatchState:
    """The owner marked the latest alert not a failure, or confirmed it: either way it is
    answered (``WatchState.failure``, Home Assistant's problem sensor, goes off)."""
    return replace(state, failure=False)


def fires(anomalous: Iterable[bool], s: Settings, interval_s: float) -> list[int]:
    """The frames (0-based) of one print where the rule fires, frames ``interval_s`` apart.

    The printer never pauses (``action: notify``, or a pause that failed), so after each
    firing the watcher re-arms ``cooldown_s`` later: the benchmarks' "pauses" on a print
    recorded without a printer. The same ``on_frame`` the daemon runs, cooldown and re-arm
    included."""
    state, _ = on_printer(WatchState(), PrinterState.PRINTING, None, 0.0, s)
    out = []
    for i, a in enumerate(anomalous):
        state, events = on_frame(state, bool(a), i * interval_s, s)
        if Event.FIRED in events:
            out.append(i)
    return out
