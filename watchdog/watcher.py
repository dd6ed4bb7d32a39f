"""One watcher per printer: capture → score → decide → act → alert.

The same ``Watcher.step`` serves the live daemon (``run``), ``replay`` (recorded frames on
the recording's clock) and ``demo``, so what users tune with replay is what runs at night.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from watchdog.comms.mqtt import Notifier
from watchdog.config import PrinterConfig
from watchdog.detection import decide
from watchdog.detection.baseline import PrintBaseline
from watchdog.detection.bundle import encode_jpeg
from watchdog.detection.model import FrameResult, FrameScorer
from watchdog.devices.capture import Camera
from watchdog.devices.printers import PrinterClient
from watchdog.history import History
from watchdog.metrics import Metrics

logger = logging.getLogger(__name__)

Event = dict[str, Any]


@dataclass
class StepRecord:
    """What one step did; replay prints it as a JSON line."""

    frame: str | None
    score: float | None
    threshold: float | None
    anomalous: bool | None
    consecutive: int
    state: str
    action: str | None = None
    events: list[Event] = field(default_factory=list)

    def line(self) -> dict[str, Any]:
        return {
            "frame": self.frame,
            "score": None if self.score is None else round(self.score, 6),
            "threshold": None if self.threshold is None else round(self.threshold, 6),
            "anomalous": self.anomalous,
            "consecutive": self.consecutive,
            "state": self.state,
            "action": self.action,
        }


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Watcher:
    """Watches one printer. Not thread-safe by itself: one thread calls ``step``."""

    def __init__(
        self,
        cfg: PrinterConfig,
        scorer: FrameScorer,
        camera: Camera,
        printer: PrinterClient,
        alerts: Notifier,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.scorer = scorer
        self.camera = camera
        self.printer = printer
        self.alerts = alerts
        self.metrics = metrics or Metrics()
        self.metrics.add_printer(self.name)
        self.clock = clock
        self.settings = decide.Settings.from_config(cfg.detection)
        # Per-print baseline (when the bundle asks for one): the same class the benchmark uses.
        self.adapter = PrintBaseline.for_bundle(scorer.bundle.meta, scorer.mask, scorer.error_map)
        self.state = decide.WatchState()
        self.enabled = True
        self.camera_online: bool | None = None
        self.printer_detail = ""
        self.api_state = ""
        self.last_result: FrameResult | None = None
        self.latest_jpeg: bytes | None = None
        self.last_alert: dict[str, Any] | None = None
        self.history = History()  # the daemon hands a reloaded watcher the printer's history
        self.heartbeat = clock()
        self._lock = threading.Lock()  # guards what status() and the HTTP thread read
        self._relearn = False  # set from the MQTT thread (accept_view); honoured by step()

    # ----------------------------------------------------------------- one step

    def step(self) -> StepRecord:
        """Poll the printer, and if it prints, score one frame and act on the verdict."""
        now = self.clock()
        self.heartbeat = time.monotonic()
        events: list[Event] = []
        self._poll_printer(now, events)
        if not self.enabled or not self.state.watching:
            label = "disabled" if not self.enabled else self.state.label
            self._publish_state(label)
            return StepRecord(None, None, None, None, self.state.consecutive, label, events=events)

        frame = self.camera.read()
        self.metrics.observe_camera(self.name, self.camera)
        if frame is None and self.camera.exhausted:
            # A recording (replay, demo) that has ended is not a camera going offline.
            return StepRecord(None, None, None, None, self.state.consecutive, "ended", events=events)
        # A bad frame (skipped and counted by the camera) is not the camera going offline.
        online = frame is not None or self.camera.online
        if online != self.camera_online:
            if self.camera_online is not None or not online:
                events.append({"event": "camera_online" if online else "camera_offline", "printer": self.name})
                log = logger.info if online else logger.warning
                log("%s: camera %s", self.name, "back online" if online else "offline: no frame")
            self.camera_online = online
        if frame is None:
            # No frame means no score, never an anomaly.
            self._publish_state(self.state.label if online else "camera_offline")
            return StepRecord(self._frame_name() if online else None, None, None, None,
                              self.state.consecutive, "frame_skipped" if online else "camera_offline", events=events)

        self._new_baseline_if_due()
        try:
            result = self.scorer.analyze(frame, self.cfg.detection.sensitivity, self.adapter.reference)
        except ValueError as exc:  # a frame the preprocessing refuses: skipped and counted
            logger.warning("%s: frame skipped: %s", self.name, exc)
            self.metrics.error(self.name, "frame")
            return StepRecord(None, None, None, None, self.state.consecutive, self.state.label, events=events)
        result = self._adapt(result)
        self.metrics.observe_score(self.name, result.score, result.threshold, result.anomalous, result.inference_s)
        self.state, act = decide.on_frame(self.state, result.anomalous, now, self.settings)
        adapted = self.adapter.enabled and not self.adapter.calibrating
        # Adapted maps are in baseline standard deviations: full red at twice the calibrated level.
        overlay = self.scorer.overlay(frame, result, 2 * self.adapter.spec.threshold if adapted else None)
        heat_jpeg = encode_jpeg(overlay)
        with self._lock:
            self.last_result = result
            self.latest_jpeg = heat_jpeg
        self.alerts.publish_score(self.name, result.score)
        action = None
        if act:
            action = self.cfg.action
            events.append(self._act(frame, result, heat_jpeg))
        elif result.anomalous or self.state.consecutive:
            self.alerts.publish_heatmap(self.name, heat_jpeg)
        self.history.record(frame, result.score, result.threshold, result.anomalous,
                            self.adapter.calibrating, self.state.frames == 1, heat_jpeg)
        if act:
            self.history.acted()
        self._publish_state(self.state.label, result)
        return StepRecord(self._frame_name(), result.score, result.threshold, result.anomalous,
                          self.state.consecutive, self.state.label, action, events)

    def _frame_name(self) -> str | None:
        """The file the last frame came from (folder cameras: replay, demo), else None."""
        current = getattr(self.camera, "current", None)
        return current.name if current is not None else None

    def accept_view(self, incident: str) -> bool:
        """The user says the latest alert of this print was not a failure: learn the print's
        look again from the next frames, so the same view does not alert again after the
        cooldown. Thread-safe (called from MQTT); False when ``incident`` is not that alert."""
        with self._lock:
            alert = self.last_alert
            if alert is None or alert.get("incident") != incident or alert.get("job") != self.state.job:
                return False
            self._relearn = self.adapter.enabled
            return True

    def _relearn_baseline(self, why: str) -> None:
        self.adapter.reset()
        logger.info("%s: %s: learning the print's look again (%d frames)", self.name, why, self.adapter.spec.frames)

    def _new_baseline_if_due(self) -> None:
        """Before scoring: a new print, or the user's "not a failure", starts a new baseline."""
        if not self.adapter.enabled:
            return
        with self._lock:
            relearn, self._relearn = self._relearn, False
        if relearn:
            self._relearn_baseline("the last alert was marked not a failure")
        elif self.adapter.seen > self.state.frames:  # decide started a new print: new baseline
            self.adapter.reset()

    def _adapt(self, result: FrameResult) -> FrameResult:
        """Score against this print's own first frames; calibration frames never count."""
        if not self.adapter.enabled:
            return result
        score, calibrating = self.adapter.observe(result.score, result.error_map, result.input)
        if calibrating:
            return replace(result, score=score, anomalous=False)
        # The heatmap shows what changed against this print's baseline: what the decision used.
        return replace(result, score=score, anomalous=score > result.threshold, error_map=self.adapter.last_map)

    def _poll_printer(self, now: float, events: list[Event]) -> None:
        status = self.printer.status()
        before = self.state
        # One line per change of the API's health, not per change of its error text.
        trouble = status.state in ("offline", "error")
        if trouble and status.state != self.api_state:
            logger.warning("%s: printer API %s: %s", self.name, status.state, status.detail)
        elif not trouble and self.api_state in ("offline", "error"):
            logger.info("%s: printer API answers again (%s)", self.name, status.state)
        self.api_state = status.state
        self.printer_detail = status.detail
        self.state = decide.on_printer(self.state, status.state, status.job, now, self.settings)
        if self.state.cooling and not before.cooling and self.adapter.enabled:
            # The user resumed after our action: what the camera shows now is accepted, so the
            # print's baseline is learnt again from the frames after the resume; otherwise a
            # lasting change (a light, a tool on the bed) would pause again after the cooldown.
            self._relearn_baseline(f"resumed after our {self.cfg.action}")
        if before.printer != self.state.printer:
            events.append({"event": "printer", "printer": self.name, "from": before.printer,
                           "to": self.state.printer, "job": self.state.job})
            logger.info("%s: printer %s → %s (%s)", self.name, before.printer, self.state.printer,
                        self.state.job or "no job")

    def _act(self, frame: np.ndarray, result: FrameResult, heat_jpeg: bytes) -> Event:
        action = self.cfg.action
        if action == "pause":
            outcome = self.printer.pause()
        elif action == "cancel":
            outcome = self.printer.cancel()
        else:
            outcome = None
        if self.state.rearm_at is not None:
            # The cooldown runs from the end of the action: retries against a dead API must not
            # use it up, or the next frames raise a second alert at once.
            self.state = replace(self.state, rearm_at=self.clock() + self.settings.cooldown_s)
        outcome_dict = outcome.to_dict() if outcome is not None else {
            "action": "notify", "outcome": "done", "detail": "notify only", "attempts": 0}
        self.metrics.observe_action(self.name, action, outcome_dict["outcome"])
        verb = {"pause": "Pause", "cancel": "Cancel", "notify": "Alert"}[action]
        message = (
            f"{verb} {self.name}: {self.state.consecutive} anomalous frames in a row "
            f"(score {result.score:.4g} > threshold {result.threshold:.4g}); "
            f"{action} {outcome_dict['outcome']}: {outcome_dict['detail']}"
        )
        alert = {
            "time": _now_iso(),
            "printer": self.name,
            "job": self.state.job,
            "score": result.score,
            "threshold": result.threshold,
            "consecutive": self.state.consecutive,
            "action": action,
            "action_result": outcome_dict,
            "message": message,
        }
        log = logger.warning if outcome_dict["outcome"] == "done" else logger.error
        log("%s", message)
        incident = self.alerts.raise_alert(self.name, alert, encode_jpeg(frame), heat_jpeg)
        alert["incident"] = incident
        store = getattr(self.alerts, "store", None)
        if store is not None:  # the frames that led to it, for the dashboard's picture strip
            store.add_lead_up(self.name, incident, self.history.lead_up())
        with self._lock:
            self.last_alert = alert
        return {"event": "alert", **alert}

    def _publish_state(self, label: str, result: FrameResult | None = None) -> None:
        result = result or self.last_result
        self.alerts.publish_state(self.name, {
            "state": label,
            "printer_state": self.state.printer,
            "job": self.state.job,
            "score": None if result is None else result.score,
            "threshold": None if result is None else result.threshold,
            "consecutive": self.state.consecutive,
            "enabled": self.enabled,
            "camera_online": self.camera_online,
            "calibrating": self.adapter.calibrating,
        })

    # ----------------------------------------------------------------- the live loop

    def run(self, stop: threading.Event) -> None:
        """Step at the camera interval until ``stop`` is set; errors never end the loop."""
        interval = self.cfg.camera.interval_s
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.step()
            except Exception:  # the loop must outlive any one bad step; counted and logged
                logger.exception("%s: step failed", self.name)
                self.metrics.error(self.name, "step")
            stop.wait(max(0.0, interval - (time.monotonic() - started)))
        self.camera.close()

    def status(self) -> dict[str, Any]:
        with self._lock:
            r = self.last_result
            return {
                "state": "disabled" if not self.enabled else self.state.label,
                "printer_state": self.state.printer,
                "printer_detail": self.printer_detail,
                "job": self.state.job,
                "frames_this_print": self.state.frames,
                "consecutive": self.state.consecutive,
                "score": None if r is None else r.score,
                "threshold": None if r is None else r.threshold,
                "camera_online": self.camera_online,
                "calibrating": self.adapter.calibrating,
                "calibration": {"seen": min(self.adapter.seen, self.adapter.spec.frames), "frames": self.adapter.spec.frames},
                "enabled": self.enabled,
                "api_state": self.api_state,
                "last_alert": self.last_alert,
            }
