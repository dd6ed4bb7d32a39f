"""Prometheus metrics of one daemon, labelled by printer.

Each daemon owns a ``CollectorRegistry`` (never the process-global one), so tests and several
daemons in one process do not share counters. The daemon loop calls::

    metrics = Metrics()
    metrics.add_printer("ender3")                       # series exist at 0 from the start
    metrics.observe_camera("ender3", camera)            # after each read(): frames, bad frames, errors, online
    metrics.observe_score("ender3", score, threshold, anomalous, seconds)   # after inference
    metrics.observe_action("ender3", "pause", "done")   # outcome: done | refused | failed | skipped
    metrics.error("ender3", "api")                      # kind: camera | api | mqtt | storage | model ...
    metrics.keep_only(["ender3"])                       # at a reload: the others' series go

and the status server serves ``generate_latest(metrics.registry)`` on ``/metrics``. Names
(prefix ``printer_watchdog_``): ``frames_total``, ``bad_frames_total``, ``scored_frames_total``,
``anomalous_frames_total``, ``score``, ``threshold``, ``actions_total{action,outcome}``,
``errors_total{kind}``, ``inference_seconds`` (histogram), ``camera_online``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from watchdog.devices.capture import Camera

logger = logging.getLogger(__name__)

NAMESPACE = "printer_watchdog"
# The budget is 50 ms a frame on a Pi; the buckets resolve around it.
INFERENCE_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0, 2.5)


class Metrics:
    """The daemon's counters, gauges and histogram, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r, ns = self.registry, NAMESPACE
        self.frames = Counter(
            "frames", "Frames read from the camera", ["printer"], namespace=ns, registry=r
        )
        self.bad_frames = Counter(
            "bad_frames",
            "Camera answers that were no usable frame (empty, truncated, HTML, too large)",
            ["printer"],
            namespace=ns,
            registry=r,
        )
        self.scored = Counter(
            "scored_frames", "Frames scored by the model", ["printer"], namespace=ns, registry=r
        )
        self.anomalies = Counter(
            "anomalous_frames",
            "Scored frames above the threshold",
            ["printer"],
            namespace=ns,
            registry=r,
        )
        self.score = Gauge(
            "score", "Anomaly score of the last scored frame", ["printer"], namespace=ns, registry=r
        )
        self.threshold = Gauge(
            "threshold",
            "Threshold in use (after sensitivity)",
            ["printer"],
            namespace=ns,
            registry=r,
        )
        self.actions = Counter(
            "actions",
            "Actions taken on a failure, by outcome",
            ["printer", "action", "outcome"],
            namespace=ns,
            registry=r,
        )
        self.errors = Counter(
            "errors",
            "Errors by kind (camera, api, mqtt, storage, model)",
            ["printer", "kind"],
            namespace=ns,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "inference_seconds",
            "Seconds to preprocess and score one frame",
            ["printer"],
            namespace=ns,
            registry=r,
            buckets=INFERENCE_BUCKETS,
        )
        self.camera_online = Gauge(
            "camera_online",
            "1 while the camera gives frames, 0 while offline",
            ["printer"],
            namespace=ns,
            registry=r,
        )
        self._lock = threading.Lock()
        self._seen: dict[
            str, tuple[int, tuple[int, int, int]]
        ] = {}  # printer -> (id(camera), counters added)
        self._gone: frozenset[str] = frozenset()  # printers taken out of the config

    def keep_only(self, printers: Iterable[str]) -> None:
        """Remove the series of every printer not in ``printers`` (taken out or renamed at a
        reload: its last ``camera_online 1`` stayed on a dashboard for good); what its old
        watcher observes while it ends is not recorded."""
        keep = frozenset(printers)
        with self._lock:
            for metric in self._all():
                names = metric._labelnames
                series = {
                    tuple(sample.labels[n] for n in names)
                    for family in metric.collect()
                    for sample in family.samples
                }
                for values in series:
                    if values[0] not in keep:  # "printer" is every metric's first label
                        self._gone |= {values[0]}
                        metric.remove(*values)
            self._gone -= keep
            self._seen = {p: seen for p, seen in self._seen.items() if p in keep}

    def _all(self) -> tuple[Counter | Gauge | Histogram, ...]:
        return (
            self.frames,
            self.bad_frames,
            self.scored,
            self.anomalies,
            self.score,
            self.threshold,
            self.actions,
            self.errors,
            self.inference_seconds,
            self.camera_online,
        )

    def _taken_out(self, printer: str) -> bool:
        """Called with ``_lock`` held: a series removed is not made again by a late observation."""
        return printer in self._gone

    def add_printer(self, printer: str) -> None:
        """Create the printer's series at 0, so dashboards see them before the first event."""
        with self._lock:
            self._gone -= {printer}
            for metric in self._all():
                if metric not in (self.actions, self.errors):
                    metric.labels(printer)
            self.errors.labels(printer, "camera")

    def observe_camera(self, printer: str, camera: Camera) -> None:
        """Add the camera's new frames, bad frames and errors since the last call; set online."""
        stats = camera.stats
        now = (stats.frames, stats.bad_frames, stats.errors)
        with self._lock:
            if self._taken_out(printer):
                return
            cam_id, before = self._seen.get(printer, (id(camera), (0, 0, 0)))
            if cam_id != id(camera):
                before = (0, 0, 0)  # a reopened camera counts from 0 again
            self._seen[printer] = (id(camera), now)
            frames, bad, errors = (max(0, n - b) for n, b in zip(now, before, strict=True))
            if frames:
                self.frames.labels(printer).inc(frames)
            if bad:
                self.bad_frames.labels(printer).inc(bad)
            if errors:
                self.errors.labels(printer, "camera").inc(errors)
            self.camera_online.labels(printer).set(1 if camera.online else 0)

    def observe_score(
        self, printer: str, score: float, threshold: float, anomalous: bool, seconds: float
    ) -> None:
        """One scored frame: last score and threshold, counts, and the time inference took."""
        with self._lock:
            if self._taken_out(printer):
                return
            self.scored.labels(printer).inc()
            self.score.labels(printer).set(score)
            self.threshold.labels(printer).set(threshold)
            if anomalous:
                self.anomalies.labels(printer).inc()
            self.inference_seconds.labels(printer).observe(seconds)

    def observe_action(self, printer: str, action: str, outcome: str) -> None:
        """An action (pause, cancel, notify) and how it ended (done, refused, failed, skipped)."""
        with self._lock:
            if not self._taken_out(printer):
                self.actions.labels(printer, action, outcome).inc()

    def error(self, printer: str, kind: str) -> None:
        """One error of ``kind`` (api, mqtt, storage, model, ...); camera errors come from observe_camera."""
        with self._lock:
            if not self._taken_out(printer):
                self.errors.labels(printer, kind).inc()

    def text(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
