"""When a run of anomalous frames becomes an action: a pure state machine, no I/O.

Time is passed in (``now``, seconds), so the live daemon and ``replay`` (which runs on the
recording's clock) make exactly the same decisions, and tests need no sleeping.

Rules (the users' top complaints in anchors.md drive them):
- only frames of a running print count; a new print starts from a clean slate;
- the first ``warmup_frames`` frames of a print never count;
- ``consecutive`` anomalous frames in a row trigger the action once;
- after a trigger the watcher is disarmed: it never acts again on the frames that caused it;
  it re-arms ``cooldown_s`` after the user resumes (or, where the printer never paused
  (notify, or a failed pause), ``cooldown_s`` after the action ended: the watcher restarts
  the clock then, so retries against a dead API do not use it up), counting fresh frames only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Printer states as reported by watchdog.devices.printers: printing | paused | idle | offline | error.
PRINTING = "printing"
PAUSED = "paused"


@dataclass(frozen=True)
class Settings:
    consecutive: int = 3
    warmup_frames: int = 0
    cooldown_s: float = 90.0

    @classmethod
    def from_config(cls, detection: object) -> Settings:
        return cls(
            consecutive=int(detection.consecutive),  # type: ignore[attr-defined]
            warmup_frames=int(detection.warmup_frames),  # type: ignore[attr-defined]
            cooldown_s=float(detection.cooldown_s),  # type: ignore[attr-defined]
        )


@dataclass(frozen=True)
class WatchState:
    """Where one printer's watcher stands."""

    printer: str = "idle"  # last printer state seen
    job: str | None = None
    frames: int = 0  # frames scored in this print
    consecutive: int = 0  # anomalous frames in a row (counting ones only)
    armed: bool = True  # False after a trigger, until re-armed
    rearm_at: float | None = None  # when a disarmed watcher re-arms (None: waiting for resume)
    triggers: int = 0  # actions taken in this print
    cooling: bool = False  # resumed after our action, waiting out the cooldown

    @property
    def watching(self) -> bool:
        """Frames are worth scoring (printing); idle printers cost no inference."""
        return self.printer == PRINTING

    @property
    def label(self) -> str:
        """The state published to users: watching | anomaly | paused | idle | cooldown."""
        if self.printer == PAUSED:
            return "paused"
        if self.printer != PRINTING:
            return "idle"
        if not self.armed:
            return "cooldown" if self.cooling else "anomaly"
        return "anomaly" if self.consecutive > 0 else "watching"


def on_printer(state: WatchState, printer: str, job: str | None, now: float, s: Settings) -> WatchState:
    """Fold a printer status into the state: new prints reset, resumes start the cooldown.

    An unknown status (API offline or in error) changes nothing: a blip must neither re-arm
    a disarmed watcher nor pass for a new print.
    """
    if printer not in (PRINTING, PAUSED, "idle"):
        return state
    was = state.printer
    if printer == PRINTING and was != PRINTING:
        resumed = was == PAUSED and (job is None or state.job is None or job == state.job)
        if not resumed:
            return WatchState(printer=PRINTING, job=job)  # a new print: clean slate
        if not state.armed:
            return replace(state, printer=PRINTING, consecutive=0, rearm_at=now + s.cooldown_s, cooling=True)
        return replace(state, printer=PRINTING, consecutive=0)
    if printer == PRINTING and job is not None and state.job is not None and job != state.job:
        return WatchState(printer=PRINTING, job=job)  # the job changed under us
    if printer == PAUSED and was == PRINTING and not state.armed:
        return replace(state, printer=PAUSED, rearm_at=None)  # our pause took: wait for resume
    return replace(state, printer=printer, job=job if job is not None else state.job)


def on_frame(state: WatchState, anomalous: bool, now: float, s: Settings) -> tuple[WatchState, bool]:
    """Fold one scored frame into the state; returns (state, act_now)."""
    if not state.watching:
        return state, False
    frames = state.frames + 1
    if not state.armed:
        if state.rearm_at is not None and now >= state.rearm_at:
            state = replace(state, armed=True, rearm_at=None, consecutive=0, cooling=False)
        else:
            return replace(state, frames=frames, consecutive=0), False
    if frames <= s.warmup_frames or not anomalous:
        return replace(state, frames=frames, consecutive=0), False
    consecutive = state.consecutive + 1
    if consecutive < s.consecutive:
        return replace(state, frames=frames, consecutive=consecutive), False
    fired = replace(
        state,
        frames=frames,
        consecutive=consecutive,
        armed=False,
        # Re-arm by time only if the printer never reports paused (notify, failed pause);
        # on_printer clears this when the pause is seen, and sets it again on resume.
        rearm_at=now + s.cooldown_s,
        triggers=state.triggers + 1,
    )
    return fired, True
