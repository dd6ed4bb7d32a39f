"""One watcher per printer: capture → detect → decide → act → alert.

The watcher holds no scoring logic: the ``Detector`` turns a frame into a ``Verdict``,
``decide`` turns verdicts and printer states into events, and the watcher routes those events
to the printer, the alert channels and back to the detector (a new print, or a resume after
our pause, means "learn the print's look again"). The same ``Watcher.step`` serves the live
daemon (``run``), ``replay`` (recorded frames on the recording's clock) and ``demo``, all
built by ``build_watcher``, so what users tune with replay is what runs at night.

Threads: the watcher's own thread calls ``step``. Other threads (MQTT, the web page, phone
actions) never touch its state: they ``submit`` commands to its queue, which ``step`` drains,
and read ``snapshot``, an immutable ``WatcherStatus`` replaced after every step.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from watchdog import overrides, switches
from watchdog.comms.notifier import Notifier
from watchdog.config import PrinterConfig
from watchdog.control import Command, CommandResult, Verb, printer_answers, saved_answers
from watchdog.detection import decide
from watchdog.detection.bundle import Bundle, encode_jpeg
from watchdog.detection.decide import Event, Label
from watchdog.detection.detector import Detector, MaskError, Verdict
from watchdog.detection.model import ModelFailure
from watchdog.devices.capture import Camera, carry_position, open_camera
from watchdog.devices.printers import (
    KEY_REJECTED,
    NoPrinter,
    OctoPrintClient,
    PrinterClient,
    make_printer,
)
from watchdog.frame_gate import FrameGate
from watchdog.history import History
from watchdog.incidents import (
    ALERT,
    PRINT_OVER,
    VERDICTS,
    IncidentError,
    IncidentView,
    alert_moment,
    already_answered,
    answered,
    incident_dir,
    incidents_root,
    list_incidents,
    raised_at,
    record_answer,
    saved_alert,
)
from watchdog.metrics import Metrics
from watchdog.printing import (
    Action,
    ActionResult,
    Outcome,
    PrinterState,
    PrinterStatus,
    seconds,
)
from watchdog.shown_checks import OwnerStop, ShownChecks

logger = logging.getLogger(__name__)

# what a print became when its alert was answered (incidents.record_answer): resumed or
# cancelled, the alert's Resume and Cancel refuse; paused again through it, they act again
ANSWERS = {Verb.RESUME: "resumed", Verb.CANCEL: "cancelled", Verb.PAUSE: "paused"}
# an idle printer's frame the page asked for is taken again once older than this: the mask
# editor's picture is of the camera now, a few seconds' worth of requests share one read
LOOK_FRESH_S = 5.0
# A print whose job has printed longer than its start (and at least the default start's
# five minutes) when its look is learnt was not seen from its start: not judged by the guard
START_AT_LEAST_S = 300.0
# A printer heating this long is no more taken to be heating for a print's start
# (``Watcher._tell_heating``); a bed takes a few minutes, a large one up to about fifteen
HEATING_AT_MOST_S = 1800.0
# The least time between two steps that read no camera (``Watcher.run``)
IDLE_STEP_S = 0.5


@dataclass(frozen=True)
class Alert:
    """One alert: what the owner is told, what incidents store and MQTT publish."""

    time: str
    printer: str
    job: str | None
    score: float
    threshold: float
    consecutive: int
    action: Action
    action_result: ActionResult
    message: str
    incident: str = ""
    answers: tuple[Verb, ...] = ()  # the printer buttons it offers (``printer_answers``)
    printed_s: float | None = None  # how long its job had printed (``PrinterStatus.printed_s``)

    @classmethod
    def from_saved(cls, d: dict[str, Any]) -> Alert | None:
        """An alert as saved in its incident (None: not one this version can read)."""
        try:
            r = d["action_result"]
            result = ActionResult(
                Action(r["action"]), Outcome(r["outcome"]), str(r["detail"]), int(r["attempts"])
            )
            return cls(
                str(d["time"]),
                str(d["printer"]),
                d["job"] if isinstance(d.get("job"), str) else None,
                float(d["score"]),
                float(d["threshold"]),
                int(d["consecutive"]),
                Action(d["action"]),
                result,
                str(d["message"]),
                str(d["incident"]),
                tuple(Verb(v) for v in d.get("answers", ["resume", "cancel"])),
                seconds(d.get("printed_s")),
            )
        except (KeyError, TypeError, ValueError, OverflowError):
            return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["action"] = str(self.action)
        d["action_result"] = self.action_result.to_dict()
        d["answers"] = [v.value for v in self.answers]
        if not self.incident:
            del d["incident"]
        return d


@dataclass(frozen=True)
class WatchEvent:
    """Something that happened in a step, for replay's JSON lines and the logs."""

    event: str  # alert | camera_online | camera_offline | printer
    printer: str
    detail: dict[str, Any] = field(default_factory=dict)
    alert: Alert | None = None

    def to_dict(self) -> dict[str, Any]:
        body = self.alert.to_dict() if self.alert is not None else self.detail
        return {"event": self.event, "printer": self.printer, **body}


@dataclass(frozen=True)
class StepRecord:
    """What one step did; replay and demo print it as a JSON line."""

    frame: str | None
    state: Label
    consecutive: int
    verdict: Verdict | None = None
    action: Action | None = None
    events: tuple[WatchEvent, ...] = ()
    skipped: bool = False  # the camera gave a bad frame (counted, never an anomaly)

    @property
    def score(self) -> float | None:
        return None if self.verdict is None else self.verdict.score

    @property
    def anomalous(self) -> bool | None:
        return None if self.verdict is None else self.verdict.anomalous

    @property
    def alert(self) -> Alert | None:
        return next((e.alert for e in self.events if e.alert is not None), None)

    def line(self) -> dict[str, Any]:
        v = self.verdict
        out: dict[str, Any] = {
            "frame": self.frame,
            "score": None if v is None else round(v.score, 6),
            "threshold": None if v is None else round(v.threshold, 6),
            "anomalous": None if v is None else v.anomalous,
            "consecutive": self.consecutive,
            "state": "frame_skipped" if self.skipped else str(self.state.value),
            "action": None if self.action is None else str(self.action),
        }
        if v is not None and v.calibrating:
            out["calibration"] = v.progress
        return out


@dataclass(frozen=True)
class WatcherStatus:
    """An immutable snapshot of one watcher, for /status, MQTT, the page and systemd."""

    state: Label
    printer_state: str
    printer_detail: str
    cannot_act: str  # why the printer's API will not take a pause or cancel ("": nothing says)
    job: str | None
    frames_this_print: int
    consecutive: int
    score: float | None
    threshold: float
    camera_online: bool | None
    camera_problem: str  # why the camera is offline, in its words ("" while online)
    calibrating: bool
    calibration: str  # "12/30" while learning the print's look, else ""
    enabled: bool  # the Watching switch (kept across restarts)
    skipping_print: bool  # the print under way is not watched: its owner said so (Verb.SKIP_PRINT)
    failure: bool  # acted on a failure of this print, not answered yet (``WatchState.failure``)
    last_alert: Alert | None
    heartbeat: float  # time.monotonic() of the last step
    failing_steps: int = 0  # steps in a row that raised
    recording_ended: bool = False  # a folder or video camera read to its end: nothing is live
    watched: bool = False  # frames are read and judged now (its state may say why not fully)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        d["last_alert"] = None if self.last_alert is None else self.last_alert.to_dict()
        del d["heartbeat"], d["failing_steps"]
        return d


# a camera giving the same picture again is said at most this often (seconds)
SAID_AGAIN_S = 600.0


def _now_iso() -> str:
    """An alert's time, to the millisecond: compared with when the printer's job started."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _ago(seconds: float) -> str:
    """A time past as the owner reads it: seconds, then minutes, then hours."""
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _paused_the_print(alert: Alert) -> bool:
    """The alert paused its print (not only told the owner, nor a pause that failed)."""
    return (alert.action, alert.action_result.outcome) == (Action.PAUSE, Outcome.DONE)


class Watcher:
    """Watches one printer. One thread calls ``step`` (or ``run``); others ``submit``."""

    def __init__(
        self,
        cfg: PrinterConfig,
        detector: Detector,
        camera: Camera,
        printer: PrinterClient,
        alerts: Notifier,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        gate: FrameGate | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        # the daemon's stop: a camera read it cuts short is no camera going offline
        self.stopping = stopping
        self.detector = detector
        self.camera = camera
        self.printer = printer
        self.alerts = alerts
        self.metrics = metrics or Metrics()
        self.metrics.add_printer(self.name)
        self.clock = clock
        # the daemon's, shared by its watchers (frame_gate.py); the one the camera enters, if any
        self.gate = gate or getattr(camera, "gate", None) or FrameGate()
        # went online (True) or offline, not told yet, and why it went offline
        self._camera_change: bool | None = None
        self._camera_why = ""
        self.settings = decide.Settings.from_config(cfg.detection)
        self.action = Action(cfg.action)
        self.state = decide.WatchState()
        self.enabled = self.name not in switches.switched_off(alerts.store.storage_dir)
        if not self.enabled:  # (at every reload too: info, the page shows it)
            logger.info("%s: not watched: switched off by its owner (Watching)", self.name)
        self.camera_online: bool | None = None
        self.printer_detail = ""
        self.cannot_act = ""
        self.api_state = ""
        # the owner's pauses and cancels the API took, until the printer shows them
        self.owner_stops = ShownChecks(self.name, cfg.api.confirm_s)
        self._key_refused = False  # the API's last answer refused the key (``_note_api_health``)
        self.last_verdict: Verdict | None = None
        self.last_alert: Alert | None = None
        self._prints = 0  # prints started since this watcher began (NEW_PRINT events)
        self._alert_print = -1  # which of them ``last_alert`` was about
        # the alerts raised during that print (one each cooldown where nothing pauses it) and
        # their jobs, since the printer's API last failed to answer (the file may have been
        # printed again unseen meanwhile): an earlier one's Cancel still answers that print
        # (``_for_its_print``)
        self._print_alerts: dict[str, str | None] = {}
        self._accepted: str | None = None  # the alert marked not a failure, its look learnt
        # the alert confirmed as a failure: while it is its print's latest, that print's start
        # stays unlearnt (a resume or "not a failure" lets it be learnt)
        self._confirmed: str | None = None
        # the latest alert's alert.json as last looked at for the command line's verdict
        # (``_verdict_from_the_command_line``): its incident, modification time and inode (a
        # verdict replaces the file); and the command line's verdict last carried out or
        # found done (restored at a start): its incident, verdict and time
        self._verdict_file: tuple[str, int, int] = ("", 0, 0)
        self._cli_verdict: tuple[str, str, str] = ("", "", "")
        # ``last_alert``'s incident once answered by a resume, a cancel or its print's end,
        # and that answer ("": opened again by a pause through it)
        self._closed: tuple[str, str] = ("", "")
        self.failing_steps = 0
        self.model_failure = ""  # why the model could not judge the last frame ("": it could)
        self.model_failures = 0  # frames it could not judge (each step's is a failing step)
        self._recording_ended = False  # a folder or video camera read to its end (said once)
        self._commands: queue.SimpleQueue[tuple[Command, Future[CommandResult]]] = (
            queue.SimpleQueue()
        )
        self._handover = threading.Lock()  # submit against retire
        self._successor: Watcher | None = None  # after a reload: who carries out commands
        self._refusing = ""  # why commands are answered "not done" at once (the daemon stops)
        self.retired = False  # handed over to a successor (``retire``): it knows the print now
        # what the printer's API said of its job at the last poll (``PrinterStatus``)
        self._printed_s: float | None = None
        self._job_started: float | None = None
        # (monotonic) since when the printer's API says it heats (``PrinterStatus.heating``)
        self._heating_since: float | None = None
        self._restore_checked = False  # an unanswered pause of ours looked for after a start
        self._first_frame_seen = False  # of the print now running (``_judge_where_first_seen``)
        # which of ``_prints`` its owner asked not to watch (Verb.SKIP_PRINT); None: none
        self._skipped_print: int | None = None
        # the last frame read, as its size and CRC (_same_picture_again)
        self._last_picture: tuple[tuple[int, ...], int] | None = None
        self._said_again: float | None = None  # when that was last said (monotonic)
        self.latest_jpeg: bytes | None = None  # the last heatmap overlay (bytes: immutable)
        self.history = (
            History()
        )  # the dashboard's timeline; the daemon hands rebuilt watchers the printer's
        self.snapshot = self._status(time.monotonic())

    # ----------------------------------------------------------------- one step

    def step(self) -> StepRecord:
        """Poll the printer, and if it prints, judge one frame and act on the verdict."""
        now, since = self.clock(), time.monotonic()
        self._drain_commands()
        self._verdict_from_the_command_line()
        events = self._poll_printer(now, since)
        if not self._watching_now:  # told again at the next frame watched
            self.detector.heating = False
        try:
            record = self._watch(now, events) if self._watching_now else None
        finally:
            self.gate.leave()  # entered by the camera to decode; left early on the usual path
            self._tell_camera_change()  # outside the gate: it writes to the outbox
        record = record or StepRecord(
            None, self._label(), self.state.consecutive, events=tuple(events)
        )
        self._publish_state(record.state)
        return record

    def _watch(self, now: float, events: list[WatchEvent]) -> StepRecord | None:
        frame = self._read_frame(events)
        if frame is not None and self._same_picture_again(frame):
            frame = None  # no news: not judged again, as a bad frame is not
        if frame is None:
            self.gate.leave()
            if self.camera.exhausted:  # a recording (replay, demo) that has ended
                return StepRecord(None, Label.IDLE, self.state.consecutive, events=tuple(events))
            skipped = bool(self.camera_online)  # a bad frame, not the camera going offline
            name = self._frame_name() if skipped else None
            return StepRecord(
                name, self._label(), self.state.consecutive, events=tuple(events), skipped=skipped
            )
        self.gate.enter()  # device and RTSP streams decode in their own thread
        if not self._first_frame_seen:
            self._judge_where_first_seen()
        still = self.detector.still_start
        # a start whose alert stands, or was confirmed a failure, is not the print's look
        self.detector.start_held = self.state.failure or self._is_latest(self._confirmed)
        self._tell_heating()
        try:
            verdict = self.detector.observe(frame)
            frame_jpeg = encode_jpeg(frame)
            heat_jpeg = encode_jpeg(self.detector.heatmap(frame, verdict, in_place=True))
        except ValueError as exc:  # a frame the preprocessing refuses: skipped and counted
            logger.warning("%s: frame skipped: %s", self.name, exc)
            self.metrics.error(self.name, "frame")
            return None
        except ModelFailure as exc:  # the bundle's model itself: said once, not every frame
            self.metrics.error(self.name, "model")
            self.model_failures += 1
            if not self.model_failure:
                logger.error("%s: frames not judged: %s", self.name, exc)
            self.model_failure = str(exc)
            return None
        finally:
            del frame  # from here on the frame is its JPEG: nothing frame-sized outlives the gate
            self.gate.leave()
        if self.model_failure:
            logger.info("%s: the model judges frames again", self.name)
            self.model_failure = ""
        if self.detector.still_start and not still:
            # most prints begin so (their heaters), so this is no warning
            logger.info(
                "%s: the camera's picture did not move during the print's start (the printer "
                "heating, or a frozen or too dark camera?): the print's start is learnt from "
                "its first frames that move (meanwhile judged by the start guard alone, if any)",
                self.name,
            )
        self.last_verdict = verdict
        self.metrics.observe_score(
            self.name, verdict.score, verdict.threshold, verdict.anomalous, verdict.inference_s
        )
        self.state, fired = decide.on_frame(self.state, verdict.anomalous, now, self.settings)
        self.latest_jpeg = heat_jpeg
        self.alerts.publish_score(self.name, verdict.score)
        action = None
        if Event.FIRED in fired:
            action = self.action
            events.append(self._act(frame_jpeg, verdict, heat_jpeg))
        elif verdict.anomalous or self.state.consecutive:
            self.alerts.publish_heatmap(self.name, heat_jpeg)
        self.history.record(
            frame_jpeg,
            verdict.score,
            verdict.threshold,
            verdict.anomalous,
            verdict.calibrating,
            self.state.frames == 1,
            heat_jpeg,
            acted=action is not None,
        )
        return StepRecord(
            self._frame_name(),
            self._label(),
            self.state.consecutive,
            verdict,
            action,
            tuple(events),
        )

    def _tell_heating(self) -> None:
        """The detector learns a print's start from when the printer is hot (``Detector.heating``);
        said when the heating begins or ends while the start is learnt, not at each frame. A
        heating that lasts ``HEATING_AT_MOST_S`` is no more heeded: a heater that cannot reach
        its target (a bed in a cold garage, printed on meanwhile) would leave the print's start
        never learnt, judged by the start guard alone to its end."""
        since = self._heating_since
        heating = since is not None and time.monotonic() - since < HEATING_AT_MOST_S
        if (
            since is not None
            and not heating
            and self.detector.heating
            and self.detector.heeds_heating
        ):
            logger.warning(
                "%s: the printer has been heating for %.0f minutes (a heater that does not "
                "reach its target?): the print's start is learnt from here",
                self.name,
                HEATING_AT_MOST_S / 60,
            )
        elif heating != self.detector.heating and self.detector.heeds_heating:
            if heating:
                logger.info(
                    "%s: the printer is heating: the print's start is learnt once it is hot "
                    "(meanwhile judged by the start guard alone, if any)",
                    self.name,
                )
            else:
                logger.info(
                    "%s: the printer is hot: the print's start is learnt from here", self.name
                )
        self.detector.heating = heating

    def _same_picture_again(self, frame: np.ndarray) -> bool:
        """Whether ``frame`` is, pixel for pixel, the one before it. No camera's sensor gives
        one picture twice: a streamer's stand-in ("NO SIGNAL", its USB camera unplugged), a
        camera polled faster than it refreshes. Each was scored again and counted toward
        ``consecutive``: one glitch paused a good print in 20 s, before the camera was found
        frozen (``frozen_after_s``)."""
        # a CRC of every pixel: 2 ms a 1080p frame here (a cryptographic digest took 8 ms);
        # two frames told alike by chance would cost one frame unjudged
        digest = (frame.shape, zlib.crc32(np.ascontiguousarray(frame).data))
        again, self._last_picture = digest == self._last_picture, digest
        now = time.monotonic()
        if again and (self._said_again is None or now - self._said_again >= SAID_AGAIN_S):
            # once in a while: a camera refreshing at half the reads repeats every other one
            self._said_again = now
            logger.info(
                "%s: the camera gave the same picture again (a stand-in picture, or a camera "
                "read faster than it refreshes): not judged again",
                self.name,
            )
        return again

    def _read_frame(self, events: list[WatchEvent]) -> np.ndarray | None:
        """The next frame, or None; a camera going offline or back is an event, once."""
        frame = self.camera.read()
        self.metrics.observe_camera(self.name, self.camera)
        if frame is None and (
            self.camera.exhausted or (self.stopping is not None and self.stopping.is_set())
        ):
            return None
        # A bad frame (skipped and counted by the camera) is not the camera going offline.
        online = frame is not None or self.camera.online
        if online != self.camera_online:
            if self.camera_online is not None or not online:
                events.append(
                    WatchEvent("camera_online" if online else "camera_offline", self.name)
                )
                why = "" if online else self.camera.last_error
                # the camera's own line says it, with why (and a camera that keeps dropping
                # once every ten minutes): this one only for --debug
                logger.debug("%s: camera %s", self.name, "back online" if online else "offline")
                self._camera_change, self._camera_why = online, why
            else:
                # its first frame since the start (or since a new camera): no news here, but a
                # target that told it offline before a restart tells it back (the others drop it)
                self._camera_change, self._camera_why = True, ""
            if online and self.camera_online is False:
                self.state = decide.after_a_gap(self.state)
            self.camera_online = online
        return frame

    def _tell_camera_change(self) -> None:
        if self._camera_change is not None:
            online, self._camera_change = self._camera_change, None
            self.alerts.camera_changed(self.name, online, self._camera_why)

    def _frame_name(self) -> str | None:
        """The file the last frame came from (folder cameras: replay, demo), else None."""
        current = getattr(self.camera, "current", None)
        return current.name if current is not None else None

    def _label(self) -> Label:
        """The one state shown everywhere (MQTT, /status, the page, replay)."""
        if not self.enabled:
            return Label.DISABLED
        label = self.state.label
        if self.skipping_print:  # our pause still holding the print says more
            return label if label is Label.PAUSED else Label.SKIPPING_PRINT
        if self.state.watching and self.camera_online is False:
            return Label.CAMERA_OFFLINE
        if label in (Label.IDLE, Label.WATCHING) and self.api_state == PrinterState.OFFLINE:
            # during a print too: a pause could not reach it (frames are still judged: the
            # page reads ``watched``)
            return Label.PRINTER_OFFLINE
        if label is Label.WATCHING and self.detector.calibrating:
            return Label.CALIBRATING
        return label

    @property
    def skipping_print(self) -> bool:
        """The print under way is not watched, at its owner's word: until it ends."""
        return self._skipped_print is not None and self._skipped_print == self._prints

    @property
    def _watching_now(self) -> bool:
        """Frames are read and judged now: switched on, a print runs, not one its owner skips."""
        return self.enabled and not self.skipping_print and self.state.watching

    # ----------------------------------------------------------------- printer and decisions

    def _poll_printer(self, now: float, since: float) -> list[WatchEvent]:
        """``since``: the monotonic clock at ``now`` (the step's commands may have taken a
        while: a job's elapsed time is counted back to ``now``)."""
        if self.stopping is not None and self.stopping.is_set():
            return []  # a poll cut short by the stop: no "printer API offline" to say
        status = self.printer.status()
        if self.stopping is not None and self.stopping.is_set():
            return []
        lag = time.monotonic() - since
        before, told_before = self.state, self.api_state
        if status.state is PrinterState.OFFLINE:  # unseen meanwhile: the file printed again?
            self._print_alerts = {}
        self._note_api_health(status)
        self.owner_stops.on_status(
            status.state, now, self._owner_stop_shown, self._owner_stop_missed, status.job
        )
        self.state, happened = decide.on_printer(
            self.state,
            PrinterState(status.state),
            status.job,
            now,
            self.settings,
            decide.JobClock(
                status.printed_s,
                None if status.elapsed_s is None else max(0.0, status.elapsed_s - lag),
            ),
        )
        if Event.NEW_PRINT in happened:
            self._alert_print_over(nothing_runs=False)
            self.owner_stops.new_print()  # a pause from now on is none of the last print's
            self._prints += 1
            self._first_frame_seen = False
            self.detector.relearn()
            if before.printer == self.state.printer:  # no change of state to say it below
                logger.info(
                    "%s: another print of %s started, not seen between two polls: its look "
                    "is learnt afresh",
                    self.name,
                    self.state.job or "a job without a name",
                )
        if not self._restore_checked and self._printer_known(status):
            self._restore_checked = True  # on the first poll that tells what the printer does
            self._after_start(now)
        self._after_events(happened, before.job, told_before, status)
        running = (PrinterState.PRINTING, PrinterState.PAUSED)
        if before.printer in running and self.state.printer not in running:
            # the print ended (a pause is no end: its outage is told), also by a cancel of
            # ours whose answer was lost (its alert was left open)
            self._alert_print_over(nothing_runs=True)
            self._camera_unwatched()
            if self.skipping_print:
                logger.info("%s: the print not watched has ended: the next one is", self.name)
            self._skipped_print = None
        if before.printer == self.state.printer:
            return []
        # the first answer since the start: nothing changed, it is so
        change = (
            f"{self.state.printer} at the watchdog's start"
            if told_before == ""
            else f"{before.printer} → {self.state.printer}"
        )
        if isinstance(self.printer, NoPrinter):  # no API asked: its "printing" is assumed
            logger.info("%s: no printer API (api.kind none): watched all the time", self.name)
        else:
            logger.info("%s: printer %s (%s)", self.name, change, self.state.job or "no job")
        return [
            WatchEvent(
                "printer",
                self.name,
                {"from": str(before.printer), "to": str(self.state.printer), "job": self.state.job},
            )
        ]

    def _after_events(
        self,
        happened: tuple[Event, ...],
        job_before: str | None,
        told_before: str,
        status: PrinterStatus,
    ) -> None:
        """What each printer event asks of the watcher (``decide.on_printer``'s); ``job_before``
        and ``told_before``: the job and API state of the poll before."""
        if Event.RESUMED_AFTER_ACTION in happened:
            # What the camera shows now is accepted: learn the print's look again, or a lasting
            # change (a light, a tool on the bed) would pause again after the cooldown.
            self._relearn(f"resumed after our {self.action}")
            # Resumed at the printer itself (its screen, Mainsail, OctoPrint) answers the alert
            # as the phone's Resume does: its Cancel, pressed later, must not stop the print.
            self._record_answer(Verb.RESUME, None)
        if Event.RESUMED in happened:
            # The owner paused and resumed (a filament change, a look at the print): the
            # print may look different now (another colour, a purge blob) and the owner saw it.
            self._relearn("resumed after a pause")
            # an alert re-opened by a pause through the watchdog is answered again, wherever
            # the print was resumed
            self._record_answer(Verb.RESUME, None)
        if Event.CANCELLED_WHILE_PAUSED in happened and told_before == PrinterState.PAUSED:
            self._cancelled_while_paused()
        if Event.STOP_SHOWN in happened:
            self._stop_shown(status.state)
        if Event.NOT_STOPPED in happened:
            self._not_carried_out()
        if Event.PAUSED_LATE in happened:
            self._paused_late()
        if Event.PRINT_ENDED in happened and told_before == PrinterState.OFFLINE:
            # seen printing, then idle once the API was back: a restart of OctoPrint or
            # Klipper (an update, a crash) ends a print as "finished" would
            logger.warning(
                "%s: the print ended while its printer could not be reached: finished, or lost",
                self.name,
            )
            self.alerts.print_done(self.name, job_before, unseen=True)
        elif Event.PRINT_ENDED in happened:
            self.alerts.print_done(self.name, job_before, ended=status.ended)
        if Event.PRINT_ERROR in happened:
            logger.warning("%s: the print stopped by a printer error: %s", self.name, status.detail)
            self.alerts.print_done(self.name, job_before, status.detail or "printer error")

    def _camera_unwatched(self) -> None:
        """The print ended or watching was switched off: a camera outage not told yet is not
        told, and the camera is judged afresh at the next watched print (offline then: told
        then; online: no "back online" for an outage never told)."""
        if self.camera_online is False and self.alerts.camera_unwatched(self.name):
            self.camera_online = None

    def _note_api_health(self, status: PrinterStatus) -> None:
        """What the printer's API said, kept for the page and the buttons; one log line per
        change of its health, not per change of its error text."""
        trouble = status.state in (PrinterState.OFFLINE, PrinterState.ERROR)
        # a key rejected is a trouble of its own: the owner must act, and the README sends them
        # to the log for it (an API down, then refusing the key, was one line: the first)
        refused = KEY_REJECTED in status.detail
        if trouble and (status.state != self.api_state or refused != self._key_refused):
            logger.warning("%s: printer API %s: %s", self.name, status.state, status.detail)
        elif not trouble and self.api_state in (PrinterState.OFFLINE, PrinterState.ERROR):
            logger.info("%s: printer API answers again (%s)", self.name, status.state)
        self.api_state = status.state
        self._key_refused = refused
        self.printer_detail = status.detail
        self._printed_s, self._job_started = status.printed_s, status.started_at
        if status.state is PrinterState.OFFLINE:
            return  # a poll that failed tells nothing of the heaters, nor of the key's rights
        self.cannot_act = status.cannot_act
        if not status.heating:
            self._heating_since = None
        elif self._heating_since is None:
            self._heating_since = time.monotonic()

    def _alert_print_over(self, nothing_runs: bool) -> None:
        """The print of this watcher's latest alert ended (finished, cancelled at the printer,
        a printer error, another print started): its alert is answered so, on disk, so that
        its Resume and Cancel never act on a later print, after a restart too, when nothing
        but the saved alert is known of it (OctoPrint tells no job start time). An alert
        this watcher does not know (after a restart only a pause that took is restored) only
        when ``nothing_runs`` (the printer left printing and paused): the newest saved one
        may otherwise be of the print that runs now."""
        if self.last_alert is not None:
            alert = self._latest_of_this_print()
            incident = alert.incident if alert is not None else ""
        elif nothing_runs:
            newest = self._newest_incident()
            incident = newest.id if newest else ""
        else:
            return
        if incident:
            self._answer_print_over(incident)

    def _answer_print_over(self, incident: str) -> None:
        """The alert's print is over, on disk: its buttons refuse, after a restart too."""
        storage = self.alerts.store.storage_dir
        try:
            if not already_answered(storage, self.name, incident):
                record_answer(storage, self.name, incident, PRINT_OVER)
                self._closed = (incident, PRINT_OVER)  # shown in /status when it is last_alert
        except (OSError, IncidentError) as exc:
            logger.warning(
                "%s: cannot record that alert %s's print ended: %s", self.name, incident, exc
            )

    def _not_carried_out(self) -> None:
        """The printer's API took our pause or cancel (or did not say), and the printer still
        prints ``api.confirm_s`` later (a PAUSE macro that does not pause, a firmware that
        ignores it): the alert said the print was stopped. It is corrected where the owner
        reads it (its card, Home Assistant, the phones: as loud as a pause that failed), its
        Resume gone; the watcher re-arms then, as after a failed pause. Not after a reload
        took the printer's API away: without one the printer always "prints"."""
        alert = self._alert_to_correct()
        if alert is None:
            return
        sent = (
            f"the printer's API took the {alert.action}"
            if alert.action_result.outcome is Outcome.DONE
            else f"the {alert.action} was sent (no answer in time)"
        )
        detail = f"{sent}, but the printer was still printing {self.cfg.api.confirm_s:.0f} s later"
        logger.error("%s", self._correct(alert, Outcome.FAILED, detail).message)
        self.metrics.observe_action(self.name, str(alert.action), "not_carried_out")

    def _stop_shown(self, now: PrinterState) -> None:
        """Our pause or cancel, sent but not answered in time (its end unknown: the alert said
        it may not have happened), shows on the printer: the alert says it happened, with its
        Resume (a Klipper PAUSE is answered only once run, after a heat-up it waits behind)."""
        alert = self._alert_to_correct()
        if alert is None or alert.action_result.outcome is not Outcome.UNKNOWN:
            return
        if (alert.action, now) not in (
            (Action.PAUSE, PrinterState.PAUSED),
            (Action.CANCEL, PrinterState.IDLE),
        ):
            return
        shown = "paused" if alert.action is Action.PAUSE else "no longer printing"
        detail = f"the printer shows it {shown} (its API's answer came too late)"
        logger.warning("%s", self._correct(alert, Outcome.DONE, detail).message)

    def _paused_late(self) -> None:
        """Told not to have paused, the print shows paused now: a PAUSE queued behind a long
        command (a heat-up, a bed mesh), or its owner paused it at the printer. The alert says
        paused again, with its Resume; the phones hear it at once."""
        alert = self._alert_to_correct()
        if alert is None or alert.action is not Action.PAUSE:
            return
        detail = (
            f"the printer is paused after all: later than the {self.cfg.api.confirm_s:.0f} s "
            "it was given (a PAUSE waiting behind a long command?), or paused at the printer"
        )
        logger.warning("%s", self._correct(alert, Outcome.DONE, detail).message)

    def _alert_to_correct(self) -> Alert | None:
        """This print's latest alert, where its printer API can tell what became of it."""
        alert = self.last_alert
        if alert is None or not alert.incident or self._alert_print != self._prints:
            return None
        return None if isinstance(self.printer, NoPrinter) else alert

    def _correct(self, alert: Alert, outcome: Outcome, detail: str) -> Alert:
        """``alert`` with its action's result put right, saved and sent again."""
        action = alert.action
        result = ActionResult(action, outcome, detail, alert.action_result.attempts)
        corrected = replace(
            alert,
            action_result=result,
            message=f"{alert.message.partition(f'; {action} ')[0]}; {action} {outcome}: {detail}",
            answers=printer_answers(action, outcome, api=True),
        )
        self.last_alert = corrected
        self.alerts.correct_alert(self.name, corrected.to_dict())
        return corrected

    def _cancelled_while_paused(self) -> None:
        """The print went from paused to idle between two polls (not across a poll the API did
        not answer: resumed and finished meanwhile, it would pass for cancelled): cancelled at
        the printer, or through the watchdog (answered already). An open alert of this print is
        answered, so its Resume and Cancel no longer act and its card says what became of the
        print; an alert answered already keeps its answer. Only an alert this watcher knows:
        the printer idle tells no print time, so a saved alert of an earlier print of the same
        file would pass for this print's."""
        alert = self._latest_of_this_print() if self.last_alert is not None else None
        if alert is None or not alert.incident:
            return
        if not already_answered(self.alerts.store.storage_dir, self.name, alert.incident):
            self._record_answer(Verb.CANCEL, alert.incident)

    def _judge_where_first_seen(self) -> None:
        """At a print's first frame, once: a print first seen past its start is learnt
        without the start guard. Once, not at every frame of the start: a start watched from
        its beginning keeps its guard however long it takes (a bed heating for minutes,
        frames skipped, a settings save or a model error learning it again)."""
        self._first_frame_seen = True
        if self.detector.guarding_start and self._past_its_start():
            self.detector.past_the_start()
            logger.info(
                "%s: first seen %.0f min into its print: its look is learnt without the start "
                "guard, set on prints' first minutes",
                self.name,
                (self.state.printed_s or 0.0) / 60,
            )

    def _past_its_start(self) -> bool:
        """The job's own clock says the print is past its start: the daemon restarted
        mid-print, or the printer's API, the camera or watching were away through its start.
        A half-printed part scores above the guard set on prints' starts (a good print paused
        as "abnormal from its start" after every restart). An API that does not say: False."""
        printed = self.state.printed_s
        start = self.detector.calibration_frames * self.cfg.camera.interval_s
        return printed is not None and printed > max(start, START_AT_LEAST_S)

    def _relearn(self, why: str, accepted: bool = True) -> None:
        """``accepted``: the owner let the print go on as it looks (a resume, "not a failure"):
        a failure confirmed before no longer holds its start."""
        if accepted:
            self._confirmed = None
        self.detector.relearn(accepted=accepted)
        logger.info(
            "%s: %s: learning the print's look again (%d frames)",
            self.name,
            why,
            self.detector.calibration_frames,
        )

    def _act(self, frame_jpeg: bytes, verdict: Verdict, heat_jpeg: bytes) -> WatchEvent:
        store = self.alerts.store
        # Saved before acting: a pause that hangs past the shutdown wait must not take the alert
        # with it. Left on disk (pending) it is delivered after the restart; replaced when done.
        unknown = ActionResult(
            self.action,
            Outcome.UNKNOWN,
            f"the watchdog stopped before the {self.action} finished; check the printer",
            0,
        )
        draft = store.save(
            self.name,
            self._alert(verdict, unknown).to_dict(),
            frame_jpeg,
            heat_jpeg,
            pending=self.alerts.delivers,
            draft=True,
        )
        outcome = self._ask_printer(self.action)
        if self.action in (Action.PAUSE, Action.CANCEL) and outcome.outcome in (
            Outcome.DONE,
            Outcome.UNKNOWN,
        ):
            if self.action is Action.CANCEL and outcome.outcome is Outcome.UNKNOWN:
                # may be done (one done is marked by ``_ask_printer``): its end is the alert's
                # to tell; one the check below finds not done ends as any print again
                self.state = decide.cancelled_by_us(self.state)
            self.state = decide.stop_sent(self.state, self.clock() + self.cfg.api.confirm_s)
        if self.state.rearm_at is not None:
            # The cooldown runs from the end of the action: retries against a dead API must not
            # use it up, or the next frames raise a second alert at once.
            self.state = replace(self.state, rearm_at=self.clock() + self.settings.cooldown_s)
        self.metrics.observe_action(self.name, str(self.action), str(outcome.outcome))
        alert = self._alert(verdict, outcome)
        (logger.warning if outcome.outcome == Outcome.DONE else logger.error)("%s", alert.message)
        incident = self.alerts.save_alert(self.name, alert.to_dict(), frame_jpeg, heat_jpeg)
        settled = incident.path is None  # not saved (a full disk): the draft becomes it
        if settled:
            incident = store.settle(draft, alert.to_dict())
        alert = replace(alert, incident=incident.id)
        # Recorded before it is sent: an answer to "the latest alert" (Home Assistant's button,
        # an automation) that comes back at once must land on this alert, not the one before.
        earlier = self._print_alerts if self._alert_print == self._prints else {}
        self._print_alerts = {**earlier, alert.incident: alert.job}
        self.last_alert, self._alert_print = alert, self._prints
        self.snapshot = self._status(self.snapshot.heartbeat)
        self.alerts.send_alert(incident, frame_jpeg, heat_jpeg)
        if settled:  # handed on now, as a final alert is (one saved is never pending)
            store.delivered(incident)
        else:
            store.discard(draft)  # the final alert replaces it
        # the frames that led to it, for the dashboard's picture strip
        store.add_lead_up(self.name, incident.id, self.history.lead_up())
        return WatchEvent("alert", self.name, alert=alert)

    def _alert(self, verdict: Verdict, outcome: ActionResult) -> Alert:
        verb = {Action.PAUSE: "Pause", Action.CANCEL: "Cancel"}.get(self.action, "Alert")
        # the score and the level it crossed: a start judged by its guard crossed the guard,
        # on the absolute scale (its ``score`` and ``threshold`` are of another)
        score, level = verdict.score, verdict.threshold
        if verdict.abnormal_start:
            score, level = verdict.absolute_score, verdict.guard
            why = (
                f"this print looks abnormal from its start (score {verdict.absolute_score:.4g} "
                f"> start guard {verdict.guard:.4g})"
            )
        elif verdict.changed_in_start and verdict.early_score is not None:
            why = (
                f"this print changed during its start (score {verdict.early_score:.4g} > "
                f"threshold {verdict.threshold:.4g} against its first frames)"
            )
        else:
            why = f"score {verdict.score:.4g} > threshold {verdict.threshold:.4g}"
        message = (
            f"{verb} {self.name}: {self.state.consecutive} anomalous frames in a row "
            f"({why}); {self.action} {outcome.outcome}: {outcome.detail}"
        )
        return Alert(
            _now_iso(),
            self.name,
            self.state.job,
            score,
            level,
            self.state.consecutive,
            self.action,
            outcome,
            message,
            answers=printer_answers(
                self.action, outcome.outcome, api=not isinstance(self.printer, NoPrinter)
            ),
            printed_s=self._printed_s,
        )

    def _ask_printer(self, action: Action) -> ActionResult:
        if action is Action.PAUSE:
            return self.printer.pause()
        if action is Action.CANCEL:
            result = self.printer.cancel()
            if result.outcome is Outcome.DONE:
                # its end is told by the alert or the owner's answer, not as "print ended"
                self.state = decide.cancelled_by_us(self.state)
            return result
        if action is Action.RESUME:
            return self.printer.resume()
        return ActionResult(Action.NOTIFY, Outcome.DONE, "notify only", 0)

    # ----------------------------------------------------------------- commands from other threads

    def submit(self, command: Command) -> Future[CommandResult]:
        """Queue an owner's command; the watcher's thread carries it out at its next step
        (``run`` wakes for it at once). Thread-safe; a retired watcher hands it on."""
        done: Future[CommandResult] = Future()
        self._hand(command, done)
        return done

    def _hand(self, command: Command, done: Future[CommandResult]) -> None:
        with self._handover:
            if self._refusing:
                _answer(done, _not_done(command, self._refusing))
                return
            if self._successor is None:
                self._commands.put((command, done))
                return
            successor = self._successor
        successor._hand(command, done)

    def refuse_commands(self, why: str) -> None:
        """The daemon is stopping: the commands still queued, and any sent from now, are
        answered at once as not done. Left unanswered, the page's request, a phone's press
        (its button then used up for good) and Home Assistant's command waited past the
        daemon's end, and the web server's stop waited for them beyond systemd's."""
        with self._handover:
            self._refusing = why
            leftovers = self._taken_commands()
        for command, done in leftovers:
            _answer(done, _not_done(command, why))

    def _taken_commands(self) -> list[tuple[Command, Future[CommandResult]]]:
        """Every command queued here, in order, the queue left empty (under ``_handover``)."""
        taken = []
        while True:
            try:
                taken.append(self._commands.get_nowait())
            except queue.Empty:
                return taken

    def _hand_first(self, older: list[tuple[Command, Future[CommandResult]]]) -> None:
        """Commands sent to a watcher this one replaced, ahead of any sent to this one since:
        a predecessor still in its step at the reload retires late, after the owner's next
        command reached this one (its Resume must not run before the Pause sent earlier)."""
        with self._handover:
            if self._successor is None:
                for item in (*older, *self._taken_commands()):
                    self._commands.put(item)
                return
            successor = self._successor
        successor._hand_first(older)

    def retire(self, successor: Watcher | None) -> None:
        """This watcher's thread has stopped (a reload): ``successor`` replaces it, knowing
        what it knew of the print (its alert, so the alert's buttons still act), and carries
        out the commands still queued and any that come to this one later. None: the printer
        is gone from the config; their senders are told so."""
        if successor is not None:
            successor._carry_on_from(self)
        else:
            # the printer is gone: nobody will see them shown
            self.owner_stops.close(f"{self.name} was taken out of the settings")
        with self._handover:
            self._successor = successor
            self.retired = True
            leftovers = self._taken_commands()
            if successor is not None:
                # handed on before a command sent meanwhile can pass them (a Resume after a
                # Pause must not run first); locks are taken old then new, never the other way
                successor._hand_first(leftovers)
                return
        for _, done in leftovers:
            _answer(done, CommandResult(False, f"no printer named {self.name!r} any more"))

    def _carry_on_from(self, old: Watcher) -> None:
        """Before this watcher's thread starts: the print as ``old`` left it."""
        self.enabled = old.snapshot.enabled
        self.state = old.state
        self.last_alert, self._prints, self._alert_print, self._print_alerts = (
            old.last_alert,
            old._prints,
            old._alert_print,
            old._print_alerts,
        )
        self._accepted = old._accepted
        self._confirmed = old._confirmed
        self._verdict_file, self._cli_verdict = old._verdict_file, old._cli_verdict
        self._closed = old._closed
        self._printed_s, self._job_started = old._printed_s, old._job_started
        self._heating_since = old._heating_since
        # what the camera and the API were last: a camera down before the reload is not told
        # again, one fixed by it is told back; a cancel seen at the next poll is one
        self.camera_online, self.api_state = old.camera_online, old.api_state
        self._key_refused = old._key_refused
        self.printer_detail = old.printer_detail
        self.cannot_act = old.cannot_act
        if (self.cfg.api.kind, self.cfg.api.url) == (old.cfg.api.kind, old.cfg.api.url):
            self.owner_stops.take_over(old.owner_stops)  # a Pause pressed before a settings save
        else:  # what the old printer's API took tells nothing of the new one's
            old.owner_stops.close(f"{self.name}'s printer API changed in the settings")
        if (
            isinstance(self.printer, OctoPrintClient)
            and isinstance(old.printer, OctoPrintClient)
            and self.cfg.api.url == old.cfg.api.url
        ):
            self.printer.carry_on(old.printer)
        self._restore_checked = old._restore_checked
        self._first_frame_seen = old._first_frame_seen
        if not isinstance(self.printer, NoPrinter):  # without an API no print would end it
            self._skipped_print = old._skipped_print  # counted in ``_prints``, carried above
        same_camera = self.cfg.camera.source == old.cfg.camera.source
        if not same_camera and self.camera_online:
            # another camera, not tried yet (an idle printer's is not read): not known to be
            # online; one offline before stays so until it gives a frame, then is told back
            self.camera_online = None
        if same_camera:  # a picture found frozen stays so: not told "back online" by a reload
            self.camera.frozen.carry_on(old.camera.frozen)
            carry_position(self.camera, old.camera)  # a recording goes on where it was
        if same_camera and self.detector.same_setup(old.detector):
            # A reload (every settings save) that changed nothing of this printer's camera or
            # detection keeps what was learnt of the print: learning it again mid-print would
            # take what the camera shows now, a failure included, as the print's look. The
            # camera's pace and limits (interval, timeouts, sizes) change nothing of its view.
            self.detector = self.detector.carry_on(old.detector)
            # and the page's heatmap and score of an idle printer; after a change of region,
            # mask or model they were of what is no longer watched
            self.latest_jpeg, self.last_verdict = old.latest_jpeg, old.last_verdict
        elif self.state.printer in (PrinterState.PRINTING, PrinterState.PAUSED):
            # a settings save is no owner's acceptance of the view: a start still judged by
            # the guard stays so
            self._relearn(
                "its camera or detection settings changed",
                accepted=not old.detector.guarding_start,
            )
        self.snapshot = self._status(time.monotonic())

    def _drain_commands(self) -> None:
        while True:
            if self.stopping is not None and self.stopping.is_set():
                return  # the daemon stops: none begun now (``refuse_commands`` answers them)
            try:
                command, done = self._commands.get_nowait()
            except queue.Empty:
                return
            if not done.set_running_or_notify_cancel():
                continue  # its sender gave up waiting and took it back: it must not happen now
            try:
                result = self._carry_out(command)
                # readers see it at once; a command done is a sign of life: commands queued
                # one after another (a Pause, then a Cancel, each retried) are not a hang
                self.snapshot = self._status(time.monotonic())
                done.set_result(result)
            except Exception as exc:  # a command must never end the loop
                logger.exception("%s: command %s failed", self.name, command.verb.value)
                done.set_result(CommandResult(False, f"{command.verb.value} failed: {exc}"))
                continue
            if command.verb is Verb.LOOK:  # a frame for the page: nothing changed to say
                continue
            try:  # and MQTT (Home Assistant's switch flipped back until the next step said it)
                self._publish_state(self._label())
            except Exception:  # done all the same: the next step publishes again
                logger.exception("%s: state after %s not published", self.name, command.verb.value)

    def _verdict_from_the_command_line(self) -> None:
        """``python -m watchdog feedback`` beside the running daemon records its verdict in
        the alert's file only: while the latest alert is of the print under way, the file is
        looked at each step (a stat; read when it changed), and each new verdict the command
        line gives is carried out as the page's is (the alert answered; "not a failure"
        learns the print's look again, a confirmed failure keeps its start unlearnt) and shown
        as the printer's last command. The page's, the phone's and MQTT's verdicts come as
        commands and are left to them."""
        alert = self.last_alert
        if alert is None or self._alert_print != self._prints:
            return
        storage = self.alerts.store.storage_dir
        try:
            changed = (incidents_root(storage) / self.name / alert.incident / ALERT).stat()
        except OSError:  # not saved (a full disk when it came), or pruned
            return
        seen = (alert.incident, changed.st_mtime_ns, changed.st_ino)
        if self._verdict_file == seen:
            return
        self._verdict_file = seen
        saved = saved_alert(storage, self.name, alert.incident)
        verdict = saved.get("verdict")
        if saved.get("verdict_source") != "cli" or verdict not in VERDICTS:
            return
        given = (alert.incident, str(verdict), str(saved.get("verdict_time")))
        if given == self._cli_verdict:
            return  # carried out already (the file changed for another reason: an answer)
        self._cli_verdict = given
        verb = Verb.NOT_A_FAILURE if verdict == "not_failure" else Verb.CONFIRM_FAILURE
        command = Command(self.name, verb, alert.incident, source="cli")
        result = self._carry_out(command)
        self.alerts.told(command, result)
        logger.info(
            "%s: incident %s %s on the command line: %s",
            self.name,
            alert.incident,
            "marked not a failure" if verb is Verb.NOT_A_FAILURE else "confirmed as a failure",
            result.detail,
        )

    def _carry_out(self, command: Command) -> CommandResult:
        verb = command.verb
        if verb is Verb.SKIP_PRINT:
            # an alert's link acts only while its print runs; the page's button on what runs
            command = self._for_its_print(command)
            refused = self._refused_for_its_alert(command) if command.incident else None
            return refused or self._skip_print(command.source)
        if verb in (Verb.ENABLE, Verb.DISABLE):
            return self._switch(command)
        if verb is Verb.NOT_A_FAILURE:
            return self._accept_view(command.incident)
        if verb is Verb.LOOK:
            return self._look()
        if verb is Verb.CONFIRM_FAILURE:
            if self._is_latest(command.incident):
                self.state = decide.answered(self.state)
                # its start stays unlearnt; a "not a failure" after it is the owner's last word
                self._confirmed, self._accepted = command.incident, None
            return CommandResult(True, "answered")
        if verb in (Verb.PAUSE, Verb.RESUME, Verb.CANCEL):
            return self._printer_command(command)
        return CommandResult(False, f"{verb.value} is not something a watcher does")

    def _for_its_print(self, command: Command) -> Command:
        """An earlier alert's Cancel, Pause or Stop watching, where it and the latest alert are
        of one print (a printer set to notify alerts again each cooldown, and the phone shows
        the one it got): the latest alert's, so that every check (answered already, another
        print since, pressed twice) and the answer are the latest's. One print: no new print
        counted since, the same job, and the printer's API answering all along (``_poll_printer``
        forgets the earlier alerts when it does not). Never a Resume: it would resume a pause
        the owner has not seen."""
        latest, incident = self.last_alert, command.incident
        if (
            latest is None
            or incident is None
            or incident == latest.incident
            or command.verb is Verb.RESUME
            or incident not in self._print_alerts
            or self._alert_print != self._prints
        ):
            return command
        if self._print_alerts[incident] != latest.job:
            return command
        return replace(command, incident=latest.incident)

    def _printer_command(self, command: Command) -> CommandResult:
        """A Pause, Resume or Cancel, judged against what the printer does now, not at the
        last poll (up to camera.interval_s ago): an alert's Cancel must not stop the print the
        owner has started at the printer since; and our pause seen before a Resume, or the
        next poll saw printing, then printing: no resume, the view the owner accepted not
        learnt again, and the print paused again by it after the cooldown."""
        verb = command.verb
        command = self._for_its_print(command)
        if refused := self._refused_for_its_alert(command):
            return refused
        if verb is Verb.RESUME and (refused := self._no_resume()):
            return refused
        if verb in (Verb.PAUSE, Verb.CANCEL) and (first := self._sent_already(command)):
            return first
        if verb is Verb.CANCEL and (ended := self._nothing_to_cancel()):
            return ended
        result = self._ask_printer(Action(verb.value))
        sent = result.outcome in (Outcome.DONE, Outcome.UNKNOWN)  # it may have happened
        if sent and verb in (Verb.PAUSE, Verb.CANCEL):
            return self._until_shown(verb, command.incident, result)
        if result.outcome == Outcome.DONE and verb is Verb.RESUME:
            return self._resume_shown(command.incident, result)
        if result.outcome == Outcome.DONE and verb in ANSWERS:
            self._record_answer(verb, command.incident)
        return CommandResult(
            result.outcome == Outcome.DONE,
            result.detail,
            unknown=result.outcome == Outcome.UNKNOWN,
        )

    def _sent_already(self, command: Command) -> CommandResult | None:
        """A Pause or Cancel pressed again, for the same alert, while the one the API took is
        not shown yet: not sent twice; this sender is told the first one's end with it (None:
        send it)."""
        verb = command.verb
        first = self.owner_stops.waiting_for(Action(verb.value), command.incident)
        if first is None:
            return None
        ago = max(0.0, self.clock() - (first.due - self.owner_stops.confirm_s))
        return CommandResult(
            False,
            f"the {verb.value} sent {ago:.0f} s ago is not shown by the printer yet: not sent "
            "again",
            under_way=True,
            later=first.done,
        )

    def _nothing_to_cancel(self) -> CommandResult | None:
        """A Cancel pressed again once the owner's first showed (the printer, polled just now,
        no longer printing, no print started since): OctoPrint answers 409 "not printing", and
        that refusal, read as the cancel failing, replaced the first press's answer, pressed
        a second or an hour later. None: send it (an idle printer for another reason,
        OctoPrint without its printer, is the client's to say)."""
        now = self.clock()
        if self.state.printer != PrinterState.IDLE or self.api_state in (
            PrinterState.OFFLINE,
            PrinterState.ERROR,
        ):  # an API away tells nothing: the idle is its last word, a print may run since
            return None
        ago = self.owner_stops.shown_since(Action.CANCEL, now)
        if ago is None:
            return None
        return CommandResult(
            True, f"{self.name} is not printing: the cancel before this one was done {_ago(ago)}"
        )

    def _no_resume(self) -> CommandResult | None:
        """Why a Resume is refused before the printer is asked (None: ask it), from the poll
        just made: the printer's "already printing" is no resume (taken for an answer, it hid
        a pause that did not happen); an API that does not answer would hold the watcher
        through its retries for a resume that cannot reach the printer."""
        why = f" ({self.printer_detail})" if self.printer_detail else ""
        if isinstance(self.printer, NoPrinter):  # as its Pause and Cancel say
            return CommandResult(False, f"{self.name}: no printer API configured: nothing resumed")
        if self.api_state == PrinterState.OFFLINE:
            return CommandResult(
                False, f"{self.name}'s printer API does not answer{why}: nothing resumed"
            )
        if self.api_state == PrinterState.ERROR:
            return CommandResult(False, f"{self.name} reports an error{why}: nothing resumed")
        if self.state.printer is PrinterState.PRINTING:
            return CommandResult(False, f"{self.name} is printing, not paused: nothing resumed")
        return None

    def _until_shown(self, verb: Verb, incident: str | None, sent: ActionResult) -> CommandResult:
        """An owner's pause or cancel the API took, or may have (no answer): done once the
        printer shows it (polled at once: Moonraker answers when the macro has run), else
        under way until it does or ``api.confirm_s`` passes without it (``ShownChecks``). Its
        alert is answered only then: a cancel that did not happen leaves its Cancel working."""
        action = Action(verb.value)
        self.state = decide.owner_stop_sent(self.state)
        later = self.owner_stops.follow(
            action, incident, self.clock(), sure=sent.outcome == Outcome.DONE, job=self.state.job
        )
        try:
            self._poll_printer(self.clock(), time.monotonic())
        except Exception:  # noqa: BLE001 - it was sent: the next step's poll decides
            logger.exception("%s: polling the printer after the %s failed", self.name, action)
        if later.done():
            end = later.result()
            return replace(end, detail=f"{sent.detail}; {end.detail}")
        return CommandResult(
            False,
            f"{sent.detail}; not shown by the printer yet",
            under_way=True,
            unknown=sent.outcome == Outcome.UNKNOWN,
            later=later,
        )

    def _resume_shown(self, incident: str | None, sent: ActionResult) -> CommandResult:
        """A Resume the API took answers its alert once the printer shows the print going on
        (polled at once: Moonraker answers when the macro has run). Moonraker answers a RESUME
        macro that refuses (the nozzle not hot, no filament) as done, and the print stays
        paused: recorded as resumed, the alert lost its buttons and its Cancel was refused.
        Resumed later, the poll that sees it answers the alert (``_after_events``)."""
        try:
            self._poll_printer(self.clock(), time.monotonic())
        except Exception:  # noqa: BLE001 - it was sent: the next step's poll decides
            logger.exception("%s: polling the printer after the resume failed", self.name)
        if self.state.printer is PrinterState.PRINTING:
            self._record_answer(Verb.RESUME, incident)
            return CommandResult(True, sent.detail)
        if self.api_state == PrinterState.OFFLINE:
            return CommandResult(
                False,
                f"{sent.detail}; then the printer's API did not answer: whether it resumed is "
                "not known yet",
                unknown=True,
            )
        if self.api_state == PrinterState.ERROR:
            why = f": {self.printer_detail}" if self.printer_detail else ""
            return CommandResult(False, f"{sent.detail}; then the printer reported an error{why}")
        shown = self.state.printer.value
        logger.warning("%s: resume taken by the printer's API, but it shows %s", self.name, shown)
        alert = incident is not None or self._latest_of_this_print() is not None
        return CommandResult(
            False,
            f"{sent.detail}, but the printer still shows {shown} (a RESUME macro that "
            f"refused? see the printer's console){': the alert keeps its buttons' if alert else ''}",
        )

    def _owner_stop_shown(self, stop: OwnerStop) -> None:
        verb = Verb(stop.action.value)
        self._record_answer(verb, stop.incident)
        if verb is Verb.CANCEL:
            # the owner's cancel answers the failure (Home Assistant's sensor stayed on with
            # the printer idle); the watchdog's own cancel waits for an answer. One the API
            # never answered may not be what ended the print: its end is still told
            self.state = decide.answered(self.state)
            if stop.sure:  # its end is this answer, not a "print ended" (a "did NOT pause"
                # of the watchdog's own, meanwhile, took it for not done)
                self.state = decide.cancelled_by_us(self.state)

    def _owner_stop_missed(self, stop: OwnerStop) -> None:
        if stop.action is Action.CANCEL and stop.sure:
            # taken for done when the API said so (``_ask_printer``); not cancelled after all:
            # its end is told again
            self.state = replace(self.state, cancelled=False)

    def _refused_for_its_alert(self, command: Command) -> CommandResult | None:
        """The printer polled now, then why this command of an alert (a button of its card,
        its notification) must not act on what the printer does now: another print, or the
        alert answered already (None: it may act, or it names no alert)."""
        self._poll_printer(self.clock(), time.monotonic())
        incident = command.incident
        if incident is None:
            return None
        why = self._other_print(incident) or self._answered(command.verb, incident)
        if not why:
            return None
        logger.warning(
            "%s: %s of alert %s refused (%s): %s",
            self.name,
            command.verb.value,
            incident,
            command.source,
            why,
        )
        return CommandResult(False, f"{why}: nothing done")

    def _answered(self, verb: Verb, incident: str) -> str:
        """Why a Resume or Cancel of this alert must not act: the alert was answered already
        ("": it was not). A print resumed from the phone must not be cancelled by the same
        alert's email link pressed later, nor a cancelled one resumed. A Pause or Stop watching
        acts whatever the answer."""
        if verb in (Verb.PAUSE, Verb.SKIP_PRINT):
            return ""
        storage = self.alerts.store.storage_dir
        alert = saved_alert(storage, self.name, incident) if verb is Verb.RESUME else {}
        if verb is Verb.RESUME and Verb.RESUME not in saved_answers(alert):
            # its pause did not happen (corrected since its notification offered Resume), or
            # it only told: a Resume of a print that kept printing would answer the alert, its
            # Cancel refused
            action, result = alert.get("action"), alert.get("action_result")
            if action == Action.PAUSE.value:
                return "this alert's pause did not happen: it paused nothing to resume"
            if action == Action.CANCEL.value:
                done = isinstance(result, dict) and result.get("outcome") == Outcome.DONE.value
                if done:
                    return "this alert cancelled the print: nothing to resume"
                # its cancel failed or is of unknown end: the print may still run
                return "this alert's action was a cancel, not a pause: nothing to resume"
            return "this alert only told you of the failure: it paused nothing to resume"
        return already_answered(storage, self.name, incident)

    def _alert_as_it_stands(self) -> Alert | None:
        """The latest alert for ``/status`` and MQTT: once answered (its print resumed,
        cancelled or ended), it offers no printer buttons any more, as its incident says."""
        alert = self.last_alert
        incident, answer = self._closed
        if alert is None or alert.incident != incident or not answer:
            return alert
        return replace(alert, answers=())

    def _record_answer(self, verb: Verb, incident: str | None) -> None:
        """A Resume, Cancel or Pause carried out answers the alert it was about: the
        command's, or (from the page, Home Assistant, the printer itself) the latest alert
        while its print runs (after a restart: the newest saved, if the printer still runs its
        job). A resume answers only an alert whose action was a pause: after an alert that only
        told the owner, a pause and resume of their own leaves its Cancel working."""
        if incident is None:
            latest = self._latest_of_this_print()
            # (a pause whose answer was lost, a timeout after it took, counts as a pause)
            if latest is not None and (verb is not Verb.RESUME or latest.action is Action.PAUSE):
                incident = latest.incident or None
        if incident is None:
            return
        try:
            record_answer(self.alerts.store.storage_dir, self.name, incident, ANSWERS[verb])
        except (OSError, IncidentError) as exc:
            logger.warning("%s: cannot record the answer to alert %s: %s", self.name, incident, exc)
            return
        if self.last_alert is not None and self.last_alert.incident == incident:
            # shown in /status; "paused" again through it, it acts again (``closing_answer``)
            self._closed = (incident, "" if verb is Verb.PAUSE else ANSWERS[verb])

    def _latest_of_this_print(self) -> Alert | None:
        """This watcher's latest alert while its print still runs (after a restart: the
        newest saved, if the printer still runs its job); None where there is none."""
        if self.last_alert is not None:
            return self.last_alert if self._alert_print == self._prints else None
        saved = self._newest_saved()
        return None if saved is None else saved[0]

    def _close_an_ended_prints_alert(self) -> None:
        """Just started: the newest alert on disk, open, was about a print that has ended
        since: the printer idle or in an error (cancelled, finished, stopped by an error while
        the watchdog was stopped), or another job or the same file printed again. It is
        answered so: it stood open, its buttons refusing ("another print") with nothing
        printing or another print running, its page not saying why."""
        newest = self._newest_incident()
        if newest is None or answered(newest.alert):
            return
        if self.state.printer in (PrinterState.IDLE, PrinterState.ERROR):
            other = f"the printer is {self.state.printer.value}"
        elif self.state.job is None or not isinstance(newest.alert.get("job"), str):
            return
        elif not (other := self._another_print(newest.alert)):
            return
        logger.info("%s: alert %s: its print has ended (%s)", self.name, newest.id, other)
        self._answer_print_over(newest.id)

    def _standing_until_known(self) -> Alert | None:
        """Just started, the printer not known yet (its API unreachable, its key refused): the
        newest alert on disk that nobody answered, shown as standing until the printer tells
        what became of its print (``_after_start``). A restart while the printer could not be
        reached turned Home Assistant's problem sensor and the page's alert off, the print
        paused or failing on. Shown only: nothing is decided on it."""
        if self._restore_checked or self.last_alert is not None:
            return None
        newest = self._newest_incident()
        if newest is None or answered(newest.alert) or "verdict" in newest.alert:
            return None  # answered, or judged by the owner (a verdict ends the failure)
        return Alert.from_saved(newest.alert)

    def _newest_incident(self) -> IncidentView | None:
        """This printer's newest alert on disk, None before any."""
        newest = list_incidents(self.alerts.store.storage_dir, [self.name], limit=1)
        return newest[0] if newest else None

    def _newest_saved(self) -> tuple[Alert, dict[str, Any]] | None:
        """The newest alert on disk (and its saved JSON: verdict, answer) if the printer still
        runs the print it was about; None where there is none."""
        newest = self._newest_incident()
        if newest is None or self._another_print(newest.alert):
            return None
        alert = Alert.from_saved(newest.alert)
        return None if alert is None else (alert, newest.alert)

    def _after_start(self, now: float) -> None:
        """Just started, the printer's state known: the newest alert on disk paused this very
        print and nobody answered it. Still paused, the alert stands (its failure shown, its
        buttons and Home Assistant's "latest" answer working) and a resume re-learns the
        print; printing within ``api.confirm_s`` of the alert, the pause has not shown yet and
        is still checked (``stop_due_after_restart``); printing after it, it was resumed while
        the watchdog was stopped, which answers it (its Cancel, pressed later, must not stop
        the print). Idle, the print of an alert still open ended while it was stopped."""
        self._close_an_ended_prints_alert()
        if self.state.printer not in (PrinterState.PAUSED, PrinterState.PRINTING):
            return
        saved = self._newest_saved()
        if saved is None or answered(saved[1]):
            return
        alert, raw = saved
        if not _paused_the_print(alert):
            # it only told the owner (notify, or a pause that failed) and this print runs on:
            # the failure stands until answered (Home Assistant's sensor went off at a restart)
            if self.state.printer is not PrinterState.PRINTING:
                return
            if "verdict" not in raw:
                self.state = decide.still_failing(self.state)
            elif raw.get("verdict") == "failure":
                # confirmed a failure: answered, and its start still not the print's look
                self._verdict_restored(alert.incident, raw)
            else:
                return
            self.last_alert, self._alert_print = alert, self._prints
            return
        raised = alert_moment(raw)
        if raised is None:  # cannot tell whether its job was started again since
            return
        # (a clock set back across a reboot: not younger than now)
        age = max(0.0, time.time() - raised)
        left = self.cfg.api.confirm_s - age
        if self.state.printer is PrinterState.PRINTING and left > 0:
            self.state = decide.stop_due_after_restart(self.state, now + left, now, self.settings)
            self.last_alert, self._alert_print = alert, self._prints
            if "verdict" in raw:  # answered already: the pause is still checked
                self.state = decide.answered(self.state)
                self._verdict_restored(alert.incident, raw)
            logger.info(
                "%s: alert %s paused the print %.0f s ago and the printer still prints: it has "
                "%.0f s more to show the pause",
                self.name,
                alert.incident,
                age,
                left,
            )
            return
        if self.state.printer is PrinterState.PRINTING or self._ran_on(alert):
            # paused now though it printed on since the alert paused it: resumed and paused
            # again (a filament change), or the same file printed again; its Cancel pressed
            # later would stop that print
            logger.info(
                "%s: alert %s: the print was resumed meanwhile%s",
                self.name,
                alert.incident,
                ""
                if self.state.printer is PrinterState.PRINTING
                else " (or printed again), and is paused now for another reason",
            )
            self._record_answer(Verb.RESUME, alert.incident)
            # as a resume seen live: the cooldown, and what the camera shows now accepted
            self.state = decide.resumed_after_action(self.state, now, self.settings)
            self._relearn("resumed while the watchdog was stopped")
            return
        if "verdict" in raw:
            return
        self.state = decide.paused_by_us(self.state)
        self.last_alert, self._alert_print = alert, self._prints
        logger.info(
            "%s: still paused by the alert %s of %s: it stands until answered",
            self.name,
            alert.incident,
            alert.time,
        )

    def _verdict_restored(self, incident: str, raw: dict[str, Any]) -> None:
        """An alert restored at a start with its verdict given before: carried out already
        (by the watchdog that stopped) or given while none ran; never again by
        ``_verdict_from_the_command_line``. A confirmed failure still holds its start."""
        self._cli_verdict = (incident, str(raw.get("verdict")), str(raw.get("verdict_time")))
        if raw.get("verdict") == "failure":
            self._confirmed = incident

    def _ran_on(self, alert: Alert) -> bool:
        """The printer's job printed on after ``alert`` paused it: a print the alert paused
        stops counting print time by ``api.confirm_s`` after it at the latest (a second of
        slack: OctoPrint's whole seconds)."""
        then, now = alert.printed_s, self._printed_s
        return then is not None and now is not None and now > then + self.cfg.api.confirm_s + 1

    def _other_print(self, incident: str) -> str:
        """Why a button of this alert must not act on what the printer does now ("": it may).

        A button (a phone notification's, an incident card's) belongs to one print: pressed a
        day later it must not cancel the print running then. In memory: the alert is this
        watcher's latest, no print started since, and its job was not printed again since
        (``_printed_again``: a print begun while the API was away). After a restart (none in memory): the
        alert is the newest saved, its job is the job the printer reports now, and that job
        was not printed again since (``_printed_again``). The printer was polled just before
        (``_carry_out``)."""
        alert = self.last_alert
        if alert is None or alert.incident != incident:
            try:  # a mistyped id, or one removed with the oldest alerts: not "a newer alert"
                incident_dir(self.alerts.store.storage_dir, self.name, incident)
            except IncidentError as exc:
                return exc.told
        if alert is not None:
            if alert.incident != incident:
                return f"{self.name} has had a newer alert since this one"
            if self._alert_print != self._prints:
                return f"the print this alert was about has ended on {self.name}"
            if self.state.printer not in (PrinterState.PRINTING, PrinterState.PAUSED):
                # nothing runs: the job name kept from its print is no other print (its print
                # time back at 0 after a firmware restart); what became of it is the answer's
                return ""
            if alert.job is None or self.state.job is None:
                return ""
            if alert.job != self.state.job:
                return (
                    f"this alert was about job {alert.job}, and {self.name} reports job "
                    f"{self.state.job}"
                )
            # the same file started again while the API was away or between two polls: no
            # print was counted, but its print time tells. Its start time is not compared with
            # the alert's: the decision already has, on the monotonic clock (a Pi without a
            # clock chip set forward by NTP after the alert refused the alert's Cancel)
            return self._printed_again(alert.job, None, alert.printed_s)
        newest = self._newest_incident()
        if newest is not None and newest.id != incident:
            return f"{self.name} has had a newer alert since this one"
        if self.api_state == PrinterState.OFFLINE:  # it tells no job: not "no job"
            why = f" ({self.printer_detail})" if self.printer_detail else ""
            return f"the printer's API does not answer{why}: try again when it does"
        return self._another_print(newest.alert if newest is not None else {})

    def _another_print(self, saved: dict[str, Any]) -> str:
        """Why what the printer runs now is not the print of this saved alert ("": nothing
        says so): another job, or the same file printed again since."""
        job = saved.get("job") if isinstance(saved.get("job"), str) else None
        if job is None or job != self.state.job:
            now = f"job {self.state.job}" if self.state.job else "no job"
            was = f"job {job}" if job else "a job without a name"
            return f"this alert was about {was}, and {self.name} reports {now}"
        return self._printed_again(job, alert_moment(saved), seconds(saved.get("printed_s")))

    @staticmethod
    def _printer_known(status: PrinterStatus) -> bool:
        """The API told what the printer does (and which job, when paused). OctoPrint without
        its printer does not: an open alert of a print from the SD card, still running after a
        restart of the host, was closed as ended."""
        if not status.sees_printer:
            return False
        if status.state is PrinterState.PAUSED:
            return status.job is not None
        return status.state in (PrinterState.PRINTING, PrinterState.IDLE, PrinterState.ERROR)

    def _printed_again(self, job: str, raised: float | None, printed_then: float | None) -> str:
        """Why the job the printer runs now is not the one of an alert raised at ``raised``
        (epoch) when its job had printed ``printed_then`` s, though the file is the same ("":
        nothing says so). A print time that went back, or a job started after the alert."""
        now = self._printed_s
        # (print times are in whole seconds on OctoPrint: a second of slack either way)
        if printed_then is not None and now is not None and now + 1 < printed_then:
            return (
                f"{job} on {self.name} has printed {now:.0f} s, less than the {printed_then:.0f} s "
                "it had at this alert: it is another print"
            )
        if self._job_started is not None and raised is not None and self._job_started > raised + 1:
            return f"{self.name} started {job} again after this alert: it is another print"
        return ""

    def _switch(self, command: Command) -> CommandResult:
        """The Watching switch: on (this print too, if it was skipped) or off (every print)."""
        verb = command.verb
        switched_on = verb is Verb.ENABLE and (not self.enabled or self.skipping_print)
        self._skipped_print = None  # switched on: this print too; off: every print
        self.enabled = verb is Verb.ENABLE
        if switched_on:
            self.state = decide.after_a_gap(self.state)
            if self.state.printer in (PrinterState.PRINTING, PrinterState.PAUSED):
                # What the camera shows now, the owner has let print unwatched: judged
                # against the look of its start, a print that grew since (why it was
                # switched off, often) would be paused again within a few frames. A start
                # not learnt yet stays judged by the guard (as at a settings save).
                self._relearn(
                    f"watching switched on mid-print ({command.source})",
                    accepted=not self.detector.guarding_start,
                )
        if not self.enabled:
            self._camera_unwatched()
        unkept = switches.remember(self.alerts.store.storage_dir, self.name, self.enabled)
        logger.info(
            "%s: watching %s (%s)",
            self.name,
            "enabled" if self.enabled else "disabled",
            command.source,
        )
        done = f"watching {self.name} {'on' if self.enabled else 'off'}"
        return CommandResult(True, f"{done}; {unkept}" if unkept else done)

    def _skip_print(self, source: str) -> CommandResult:
        """Stop watching the print under way only (a print the owner watches themselves, or
        one paused again and again for a look it keeps changing): the next print is watched,
        whatever the owner remembers. Known from the last poll: a print that ended or was
        replaced since ends the skip at the next poll (watched: the safe side)."""
        if isinstance(self.printer, NoPrinter):
            return CommandResult(
                False,
                f"{self.name} has no printer API, so the watchdog cannot tell when a print "
                "ends: switch Watching off instead",
            )
        if not self.enabled:
            return CommandResult(False, f"watching {self.name} is switched off already")
        if self.state.printer not in (PrinterState.PRINTING, PrinterState.PAUSED):
            if self.api_state in (PrinterState.OFFLINE, PrinterState.ERROR):
                # its last word, not what it does now (a key rejected: it may well print)
                why = f" ({self.printer_detail})" if self.printer_detail else ""
                return CommandResult(
                    False,
                    f"{self.name}'s printer API does not say what it prints{why}: nothing "
                    "changed; switch Watching off instead",
                )
            return CommandResult(False, f"{self.name} is not printing")
        if self.skipping_print:
            return CommandResult(True, f"this print of {self.name} is not watched already")
        self._skipped_print = self._prints
        # the owner's answer to an open alert of this print (Home Assistant's problem sensor)
        self.state = decide.answered(decide.after_a_gap(self.state))
        self._camera_unwatched()
        logger.info(
            "%s: not watching this print (%s), %s: watched again from the next print",
            self.name,
            self.state.job or "a job without a name",
            source,
        )
        return CommandResult(
            True, f"not watching this print of {self.name}: watched again from the next one"
        )

    def _look(self) -> CommandResult:
        """A camera frame of now for the page (where to look, masks): the camera is read only
        while a print is watched, so an idle printer's latest frame is of its last print (the
        bed as it was then, a camera moved since) or there is none to draw on."""
        if self._watching_now:  # its next step reads one (a recording too)
            if self.camera_online is False:  # the latest is of before the outage
                why = self.camera.last_error or "no frame"
                return CommandResult(False, f"the camera of {self.name} is offline: {why}")
            if self.history.latest_frame_jpeg() is not None:
                return CommandResult(True, "watching: the latest frame is the camera's")
            return CommandResult(False, "watching: the next frame is on its way")
        if self.history.frame_age_s() < LOOK_FRESH_S:
            return CommandResult(True, "the latest frame is fresh")
        try:
            frame = self.camera.read()
        finally:
            self.gate.leave()  # entered by a camera that decodes
        if frame is None:
            why = self.camera.last_error or "no frame yet"
            return CommandResult(False, f"the camera of {self.name} gave no frame: {why}")
        self.history.saw(encode_jpeg(frame))
        return CommandResult(True, "a frame taken")

    def _is_latest(self, incident: str | None) -> bool:
        """``incident`` is the latest alert of the print under way."""
        alert = self.last_alert
        return (
            alert is not None and alert.incident == incident and self._alert_print == self._prints
        )

    def _accept_view(self, incident: str | None) -> CommandResult:
        """The owner says the latest alert of this print was not a failure: learn the print's
        look again, so the same view does not alert again after the cooldown."""
        if not self._is_latest(incident):
            latest = self.last_alert
            if (
                latest is not None
                and self._for_its_print(Command(self.name, Verb.NOT_A_FAILURE, incident)).incident
                != incident
            ):
                # an alert told again each cooldown: the phone shows the one it got. Its look
                # is not learnt from here: the owner has not seen what the later one saw
                return CommandResult(
                    True,
                    f"nothing learnt yet: a later alert of this print came at "
                    f"{raised_at(latest.incident)}; answer that one and the print's look is "
                    "learnt again",
                )
            return CommandResult(True, "not the current print's latest alert: nothing re-learnt")
        if incident == self._accepted:
            # pressed again (a second device, a late tap): learnt again now, the print's look
            # would take in whatever went wrong since the first
            return CommandResult(
                True,
                "already marked not a failure: the print's look was learnt again then, not now",
            )
        self.state = decide.answered(self.state)
        self._confirmed = None  # a misclick mended: the print's look may be learnt
        if self.state.printer not in (PrinterState.PRINTING, PrinterState.PAUSED):
            # its print ended (cancelled from the phone, finished): nothing to learn again
            return CommandResult(
                True, "answered; its print has ended: the next print learns its own look"
            )
        # the answer does not resume: said, or the owner waits for a print that stays paused
        paused = (
            "; the print stays paused: Resume it when ready"
            if self.state.printer is PrinterState.PAUSED
            else ""
        )
        if not self.detector.baseline.enabled:  # said as it is: the same view alerts again
            return CommandResult(
                True,
                "answered; this model judges every frame on its own (no per-print look to "
                f"learn again): the same view alerts again after the cooldown{paused}",
            )
        self._relearn("the last alert was marked not a failure")
        self._accepted = incident
        return CommandResult(True, f"learning the print's look again{paused}")

    # ----------------------------------------------------------------- status

    def _status(self, heartbeat: float) -> WatcherStatus:
        v = self.last_verdict
        calibrating = self.state.watching and self.detector.calibrating
        standing = self._standing_until_known()
        return WatcherStatus(
            state=self._label(),
            # the API unreachable (or its key refused) is said as such, not as the last state
            # it told: "idle" hid a printer printing unwatched behind a wrong key
            printer_state=str(
                PrinterState.OFFLINE
                if self.api_state == PrinterState.OFFLINE
                else self.state.printer
            ),
            printer_detail=self.printer_detail,
            cannot_act=self.cannot_act,
            job=self.state.job,
            frames_this_print=self.state.frames,
            consecutive=self.state.consecutive,
            score=None if v is None else v.score,
            # the one in force: a sensitivity saved while idle moves it before the next frame
            threshold=self.detector.threshold,
            camera_online=self.camera_online,
            camera_problem=(self.camera.last_error or "no frame")
            if self.camera_online is False
            else "",
            calibrating=calibrating,
            calibration=self.detector.progress if calibrating else "",
            enabled=self.enabled,
            skipping_print=self.skipping_print,
            failure=self.state.failure or standing is not None,
            last_alert=self._alert_as_it_stands() or standing,
            heartbeat=heartbeat,
            failing_steps=self.failing_steps,
            recording_ended=self._recording_ended,
            watched=self._watching_now,
        )

    def _publish_state(self, label: Label) -> None:
        self.snapshot = self._status(time.monotonic())
        state = self.snapshot.to_dict()
        state.pop("last_alert")
        state.pop("printer_detail")
        state.pop("frames_this_print")
        self.alerts.publish_state(self.name, {**state, "state": label.value})

    def status(self) -> dict[str, Any]:
        """The latest snapshot as JSON-ready data (/status)."""
        return self.snapshot.to_dict()

    # ----------------------------------------------------------------- the live loop

    def run(self, stop: threading.Event) -> None:
        """Step at the camera interval until ``stop`` is set; errors never end the loop.
        Commands submitted between steps are carried out at once."""
        interval = self.cfg.camera.interval_s
        idle_pace = max(interval, IDLE_STEP_S)
        while not stop.is_set():
            started = time.monotonic()
            pace = idle_pace  # a step that failed: as one without a frame
            try:
                failed_before = self.model_failures
                self.step()
                # a step that reads no camera (the printer idle, watching off, a recording
                # read to its end) only polls the printer: at interval 0 (a recording read as
                # fast as it can be) an idle printer's API was asked thousands of times a second
                reads = self._watching_now and not self.camera.exhausted
                pace = interval if reads else idle_pace
                if self.model_failures > failed_before:  # its frame not judged: a failing step
                    self.failing_steps += 1
                    self.snapshot = replace(self.snapshot, failing_steps=self.failing_steps)
                elif self.failing_steps:  # healthy again: said at once, not a step later
                    self.failing_steps = 0
                    self.snapshot = replace(self.snapshot, failing_steps=0)
                self._say_recording_ended()
            except Exception:  # the loop must outlive any one bad step; counted and logged
                logger.exception("%s: step failed", self.name)
                self.metrics.error(self.name, "step")
                self.failing_steps += 1
                self.snapshot = replace(
                    self.snapshot, heartbeat=time.monotonic(), failing_steps=self.failing_steps
                )
            while not stop.is_set():
                left = pace - (time.monotonic() - started)
                if left <= 0:
                    break
                if stop.wait(min(left, 0.2)):
                    break
                self._drain_commands()
        self.close()

    def _say_recording_ended(self) -> None:
        """``run`` on a recording (a folder or video camera, to try a config) goes on after its
        last frame: said once, as replay and the demo say it in their summary."""
        if self.camera.exhausted and not self._recording_ended:
            self._recording_ended = True
            self.snapshot = replace(self.snapshot, recording_ended=True)  # the page says so
            logger.info("%s: its recording was read to its end: no frame comes", self.name)

    def close(self) -> None:
        """Let go of the camera (its reader thread, connection or device) and of the printer
        client's connections: when its loop ends, or for a watcher that never ran. Never
        raises: it is called where a failure would stop a reload or the daemon half-way (a
        part that fails to close is logged, and the other is still closed)."""
        for part in (self.camera, self.printer):
            try:
                part.close()
            except Exception:  # noqa: BLE001 - logged; nothing else can be done about it
                logger.exception("%s: closing %s failed", self.name, type(part).__name__)


def detector_for(cfg: PrinterConfig, bundle: Bundle) -> Detector:
    """The printer's detector as its watcher runs it (region, mask, sensitivity, start);
    ConfigError naming the key for a mask that hides the watched region."""
    d = cfg.detection
    try:
        return Detector.for_bundle(
            bundle,
            region=d.region,
            mask=d.mask,
            sensitivity=d.sensitivity,
            warmup_frames=d.warmup_frames,
            judge_start=d.judge_start,
        )
    except MaskError as exc:
        raise overrides.mask_refused(cfg.name, exc) from None


def _answer(done: Future[CommandResult], result: CommandResult) -> None:
    """A queued command answered without being carried out (unless its sender took it back)."""
    if done.set_running_or_notify_cancel():
        done.set_result(result)


def _not_done(command: Command, why: str) -> CommandResult:
    return CommandResult(False, f"{command.verb.value} not done: {why}")


def build_watcher(
    cfg: PrinterConfig,
    bundle: Bundle,
    alerts: Notifier,
    *,
    stop: threading.Event | None = None,
    camera: Camera | None = None,
    printer: PrinterClient | None = None,
    metrics: Metrics | None = None,
    clock: Callable[[], float] = time.monotonic,
    gate: FrameGate | None = None,
) -> Watcher:
    """A printer's watcher from its config: the one wiring for ``run``, ``replay`` and ``demo``.

    ``camera`` and ``printer`` replace what the config names (replay's recording, the demo's
    simulated printer); ``gate``: the daemon's frame gate, shared by all its watchers.
    Everything that can fail on bad input happens here, before a reload stops the running
    watchers."""
    detector = detector_for(cfg, bundle)
    camera = (
        camera
        if camera is not None
        else open_camera(
            # the printer's own region: a small one needs more of the camera's pixels
            cfg.camera,
            stop,
            name=cfg.name,
            model_input=detector.pre,
            gate=gate,
        )
    )
    printer = printer if printer is not None else make_printer(cfg.api, stop)
    return Watcher(cfg, detector, camera, printer, alerts, metrics, clock, gate, stop)
