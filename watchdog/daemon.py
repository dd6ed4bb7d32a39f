"""The long-running daemon: wires config → watchers, signals, reload, systemd and HTTP.

Threads: one per printer watcher, paho's network thread, the status server's thread; all are
stopped and joined on SIGTERM/SIGINT. SIGHUP reloads config and model; a broken new config
is logged and the running one kept.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watchdog import overrides, systemd
from watchdog.comms.mqtt import LATEST_INCIDENT, Notifier
from watchdog.config import Config, ConfigError, load_config
from watchdog.control import INCIDENT_VERBS, Command, CommandResult, Verb
from watchdog.detection.bundle import Bundle, BundleError, default_bundle_path
from watchdog.detection.model import FrameScorer
from watchdog.devices.capture import open_camera
from watchdog.devices.printers import make_printer
from watchdog.history import History
from watchdog.incidents import mark_failure, mark_not_failure, record_verdict
from watchdog.metrics import Metrics
from watchdog.watcher import Watcher

logger = logging.getLogger(__name__)


def load_bundle(config: Config) -> Bundle:
    return Bundle.load(config.model or default_bundle_path())


@dataclass
class _Running:
    watcher: Watcher
    thread: threading.Thread
    stop: threading.Event


class Daemon:
    """Owns the running watchers and everything shared between them."""

    def __init__(self, config_path: str | Path) -> None:
        self.config_path = Path(config_path)
        self.config = load_config(self.config_path)  # ConfigError → exit 2 before anything starts
        self.bundle = load_bundle(self.config)
        self.metrics = Metrics()
        self.notifier: Notifier | None = None
        self.http: Any = None
        self.watchers: dict[str, _Running] = {}
        self.histories: dict[str, History] = {}  # per printer, kept across reloads
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.started = time.monotonic()

    # ----------------------------------------------------------------- building

    def _make_watchers(self, config: Config, bundle: Bundle) -> dict[str, Watcher]:
        """Everything that can fail on bad input happens here, before the old watchers stop."""
        assert self.notifier is not None
        watchers = {}
        for p in config.printers:
            scorer = FrameScorer(bundle, num_threads=1, mask_polygons=p.detection.mask, region=p.detection.region)
            camera = open_camera(p.camera, self.stop_event, name=p.name)
            printer = make_printer(p.api, self.stop_event)
            watchers[p.name] = Watcher(p, scorer, camera, printer, self.notifier, self.metrics)
            watchers[p.name].history = self.histories.setdefault(p.name, History())
        return watchers

    def _start_watchers(self, watchers: dict[str, Watcher]) -> None:
        for name, w in watchers.items():
            stop = threading.Event()
            t = threading.Thread(target=w.run, args=(stop,), name=f"watch-{name}", daemon=True)
            self.watchers[name] = _Running(w, t, stop)
            t.start()

    def _stop_watchers(self, timeout: float = 15.0) -> None:
        for r in self.watchers.values():
            r.stop.set()
        for r in self.watchers.values():
            r.thread.join(timeout)
            if r.thread.is_alive():
                logger.error("watcher %s did not stop within %.0f s", r.watcher.name, timeout)
        self.watchers = {}

    # ----------------------------------------------------------------- callbacks

    def on_command(self, printer: str, command: str, payload: dict) -> None:
        """MQTT commands (already validated by the notifier)."""
        running = self.watchers.get(printer)
        if running is None:
            logger.warning("command %s for unknown printer %s ignored", command, printer)
            return
        if command == "enabled":
            running.watcher.enabled = bool(payload.get("enabled"))
            logger.info("%s: watching %s by MQTT command", printer, "enabled" if running.watcher.enabled else "disabled")
        elif command == "feedback":
            incident, verdict = str(payload["incident"]), str(payload["verdict"])
            if incident == LATEST_INCIDENT:
                last = running.watcher.last_alert
                if last is None:
                    logger.warning("%s: feedback on the latest alert ignored: no alert since the daemon started", printer)
                    return
                incident = str(last["incident"])
            try:
                if verdict == "not_failure":
                    path = mark_not_failure(self.config.storage.dir, printer, incident)
                    logger.info("%s: incident %s marked not a failure; frame kept for retraining in %s",
                                printer, incident, path)
                    running.watcher.accept_view(incident)
                else:
                    record_verdict(self.config.storage.dir, printer, incident, verdict)
                    logger.info("%s: incident %s confirmed as %s", printer, incident, verdict)
            except (OSError, ValueError) as exc:  # IncidentError is a ValueError
                logger.warning("%s: feedback on incident %s failed: %s", printer, incident, exc)

    def dispatch(self, command: Command) -> CommandResult:
        """Carry out an owner's request from any channel (here: the dashboard); never raises.

        A minimal router over the running watchers and their printer clients."""
        running = self.watchers.get(command.printer)
        if running is None:
            return CommandResult(False, f"no printer named {command.printer!r}")
        watcher, verb = running.watcher, command.verb
        logger.info("%s: %s requested (%s)", command.printer, verb.value, command.source)
        if verb in (Verb.ENABLE, Verb.DISABLE):
            watcher.enabled = verb is Verb.ENABLE
            if self.notifier is not None:
                self.notifier.publish_enabled(command.printer, watcher.enabled)
            return CommandResult(True, f"watching {'enabled' if watcher.enabled else 'disabled'}")
        if verb in INCIDENT_VERBS:
            incident = command.incident
            if not incident:
                return CommandResult(False, "which incident? none given")
            storage = self.config.storage.dir
            try:
                if verb is Verb.NOT_A_FAILURE:
                    kept = mark_not_failure(storage, command.printer, incident)
                    relearn = watcher.accept_view(incident)
                    return CommandResult(True, f"kept {kept} for retraining (--normal)"
                                         + ("; learning this print's look again" if relearn else ""))
                copies = mark_failure(storage, command.printer, incident)
                return CommandResult(True, f"kept {len(copies)} frame(s) in {copies[0].parent} (--anomalous)")
            except (OSError, ValueError) as exc:  # IncidentError is a ValueError
                return CommandResult(False, str(exc))
        action = {Verb.PAUSE: watcher.printer.pause, Verb.RESUME: watcher.printer.resume,
                  Verb.CANCEL: watcher.printer.cancel}[verb]
        result = action()
        return CommandResult(result.outcome == "done", f"{verb.value} {result.outcome}: {result.detail}")

    def save_settings(self, printer: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Store the dashboard's settings for ``printer`` and rebuild the watchers through the
        reload path; ConfigError (nothing saved) when the schema refuses them."""
        base = load_config(self.config_path, overrides=False)
        p = next((p for p in base.printers if p.name == printer), None)
        if p is None:
            raise ConfigError(f"no printer named {printer!r} in {self.config_path}")
        saved = overrides.save(self.config.storage.dir, p.detection, printer, changes)
        self.reload_event.set()
        return saved

    def reset_settings(self, printer: str) -> None:
        overrides.reset(self.config.storage.dir, printer)
        self.reload_event.set()

    def status(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.monotonic() - self.started, 1),
            "model": str(self.bundle.path),
            "threshold": self.bundle.meta.threshold,
            "mqtt_connected": bool(self.notifier and self.notifier.connected),
            "printers": {name: r.watcher.status() for name, r in self.watchers.items()},
        }

    def summary(self) -> str:
        """One line for `systemctl status`: each printer's state and last score."""
        parts = []
        for name, r in self.watchers.items():
            st = r.watcher.status()
            score = "" if st["score"] is None else f" {st['score']:.3g}/{st['threshold']:.3g}"
            parts.append(f"{name}: {st['state']}{score}")
        return "; ".join(parts)

    def latest_jpeg(self, printer: str) -> bytes | None:
        r = self.watchers.get(printer)
        return r.watcher.latest_jpeg if r else None

    def healthy(self) -> bool:
        """Every watcher thread alive and stepping (a hung loop stops the systemd watchdog pings)."""
        if not self.watchers:
            return False
        now = time.monotonic()
        for r in self.watchers.values():
            cam = r.watcher.cfg.camera
            budget = cam.interval_s + cam.timeout_s + r.watcher.cfg.api.timeout_s * 2 + 30
            if not r.thread.is_alive() or now - r.watcher.heartbeat > budget:
                return False
        return True

    # ----------------------------------------------------------------- reload

    def reload(self) -> None:
        systemd.reloading()
        try:
            config = load_config(self.config_path)
            bundle = load_bundle(config)
            if config.mqtt != self.config.mqtt or config.storage != self.config.storage:
                logger.warning("mqtt/storage changes need a restart; keeping the running MQTT session")
            watchers = self._make_watchers(config, bundle)
        except (ConfigError, BundleError) as exc:
            logger.error("reload refused, keeping the running config: %s", exc)
            systemd.ready()
            return
        enabled = {n: r.watcher.enabled for n, r in self.watchers.items()}
        self._stop_watchers()
        for name, w in watchers.items():
            w.enabled = enabled.get(name, True)
        self.config, self.bundle = config, bundle
        self._start_watchers(watchers)
        logger.info("reloaded %s (model %s)", self.config_path, bundle.path)
        systemd.ready()

    # ----------------------------------------------------------------- main

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.stop_event.set())
        signal.signal(signal.SIGINT, lambda *_: self.stop_event.set())
        signal.signal(signal.SIGHUP, lambda *_: self.reload_event.set())
        cfg = self.config
        self.notifier = Notifier(cfg.mqtt, cfg.storage, [p.name for p in cfg.printers], self.on_command)
        watchers = self._make_watchers(cfg, self.bundle)
        self.notifier.start()
        if cfg.http.listen:
            from watchdog.comms.http import StatusServer
            from watchdog.web.app import Dashboard

            self.http = StatusServer(cfg.http.listen, self.status, self.metrics.registry, self.latest_jpeg, self.healthy,
                                     request_timeout_s=cfg.http.request_timeout_s,
                                     max_connections=cfg.http.max_connections,
                                     dashboard=Dashboard(self, cfg.http, cfg.storage.dir))
            self.http.start()
        self._start_watchers(watchers)
        logger.info("watching %d printer(s) with model %s (threshold %.4g)",
                    len(watchers), self.bundle.path, self.bundle.meta.threshold)
        systemd.ready()
        ping_every = min(systemd.watchdog_interval_s() or 10.0, 10.0) / 2
        try:
            while not self.stop_event.wait(ping_every):
                if self.reload_event.is_set():
                    self.reload_event.clear()
                    self.reload()
                if self.healthy():
                    systemd.watchdog_ping()
                systemd.status(self.summary())
        finally:
            logger.info("stopping")
            systemd.stopping()
            self._stop_watchers()
            if self.http is not None:
                self.http.stop()
            self.notifier.stop()
            logger.info("stopped")
        return 0
