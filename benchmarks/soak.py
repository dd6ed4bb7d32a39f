"""Soak: the daemon at full frame rate for a long run, with faults injected at random times.

    .venv/bin/python benchmarks/soak.py [--frames 20000] [--seed 1] [--out soak.json] [--bundle DIR]

Not run in CI (tests/test_reliability.py runs a 300-frame version with the same code).
Everything is real and on 127.0.0.1: mosquitto, Moonraker with the stand-in Klippy (its
print never ends, so one print lasts the whole soak), the HTTP test camera, and
`python -m watchdog run` as a process with ``interval_s: 0.01`` (as fast as the step allows;
the printer's status is polled on every step, so Moonraker answers one request per frame).

Events, drawn with a seeded RNG (the first ones are one of each kind, in random order):
  anomaly               the camera shows spaghetti until the daemon alerts; the print must be
                        paused, then the harness shows normal frames and resumes it
  anomaly_broker_down   the same with mosquitto stopped: the pause must still happen and the
                        alert must arrive once the broker is back
  anomaly_api_down      the same with Moonraker stopped: the alert must say the pause failed
  broker_restart        mosquitto stopped for 1-3 s
  api_restart           Moonraker stopped for 1-3 s
  camera_fault          the camera answers html/empty/truncated/garbage/500/down/bomb for 1-4 s,
                        or a hostile image: a 16-bit RGBA 4000x4000 PNG, a 4000x3000 JPEG (scored,
                        decoded at reduced size), a progressive one, a 2000x1500 PNG, a JPEG cut
                        short but closed with FFD9 or without scan data
  second_daemon         a second `python -m watchdog run` on the same config and storage folder:
                        it must exit 2 at once, the first one keeps running
  bad_reload            SIGHUP with a config that cannot be applied (missing camera folder, ftp://
                        camera, deeply nested model.json), then SIGHUP with the good one again:
                        the first is refused, the second applied, the daemon never stops
  normal                nothing for 1-5 s

Recorded: RSS, open file descriptors and threads of the daemon (from /proc/<pid>) over
time, and what each descriptor is after the first frames and before the daemon stops; every alert raised (incident folders) vs delivered (MQTT, by incident id); every
pause, checked against what the camera showed (the incident's frame is compared with the
frames the harness served, and the print is watched for pauses outside anomaly episodes).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.daemon_helpers import DaemonProcess, free_port, watchdog_cmd, write_config  # noqa: E402
from watchdog.image_files import read_bgr_file  # noqa: E402

PRINTER = "ender3"
EVENTS = {  # kind → weight
    "anomaly": 3,
    "anomaly_broker_down": 1,
    "anomaly_api_down": 1,
    "broker_restart": 1,
    "api_restart": 1,
    "camera_fault": 4,
    "second_daemon": 1,
    "bad_reload": 1,
    "normal": 2,
}
CAMERA_FAULTS = [
    "html",
    "empty",
    "truncated",
    "garbage",
    "http_500",
    "down",
    "bomb_jpeg",
    "bomb_png",
    "png16_rgba",
    "huge_jpeg",
    "progressive_jpeg",
    "big_png",
    "truncated_eoi",
    "no_scan",
]
ALERT_TIMEOUT_S = 30.0
COOLDOWN_S = 1.0
RSS_BUDGET_MB = 10.0


@dataclass
class Sample:
    t: float
    frames: int
    rss_mb: float
    fds: int
    threads: int


@dataclass
class Episode:
    kind: str
    t: float
    frames: int
    detail: str = ""
    alerted: bool | None = None  # anomaly kinds: an incident appeared
    paused: bool | None = None  # anomaly kinds with the API up: the print was seen paused
    outcome: str | None = None  # the alert's action_result.outcome
    ok: bool = True
    t_end: float = 0.0
    rss_mb_max: float | None = None  # the daemon's largest RSS sample during the episode


@dataclass
class Result:
    seed: int
    target_frames: int
    frames: int = 0
    seconds: float = 0.0
    episodes: list[Episode] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    raised: int = 0
    delivered: int = 0
    duplicates: int = 0
    undelivered: list[str] = field(default_factory=list)
    incidents_on_normal_frames: list[str] = field(default_factory=list)
    pauses_outside_anomalies: int = 0
    left_paused: int = 0  # an anomaly episode ended with the print still paused (resumed later)
    missed_anomalies: int = 0
    daemon_exit: int | None = None
    step_failures: int = 0
    second_daemons_refused: int = 0
    reloads_refused: int = 0  # bad configs refused, the daemon still running
    reloads_applied: int = 0  # good configs applied after them
    # what the daemon's descriptors are, after its first frames and before it stops (a
    # descriptor count that grows says something leaks; these say what)
    open_files_start: dict[str, int] = field(default_factory=dict)
    open_files_end: dict[str, int] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- /proc


def proc_sample(pid: int) -> tuple[float, int, int]:
    """(RSS in MB, open file descriptors, threads) of a live process."""
    rss_kb, threads = 0, 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd")), threads


def _sockets(pid: int, ports: dict[int, str]) -> dict[str, str]:
    """Socket inode → "tcp to <peer> (<state>)" for the process's TCP sockets, ``ports`` naming
    the local servers by port."""
    states = {"01": "established", "06": "time-wait", "08": "close-wait", "0A": "listening"}
    found: dict[str, str] = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, remote, state, inode = f[1], f[2], f[3], f[9]
            port = int(remote.rsplit(":", 1)[1], 16) or int(local.rsplit(":", 1)[1], 16)
            peer = ports.get(port, "another port")
            found[inode] = f"tcp {peer} ({states.get(state, state)})"
    return found


def open_files(pid: int, ports: dict[int, str]) -> dict[str, int]:
    """How many of each kind of descriptor the process holds: files by path, TCP sockets by the
    server they talk to and their state, pipes, other sockets and kernel objects by kind."""
    sockets = _sockets(pid, ports)
    kinds: collections.Counter[str] = collections.Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            target = sockets.get(target[8:-1], "unix or other socket")
        elif target.startswith("pipe:["):
            target = "pipe"
        kinds[target] += 1
    return dict(sorted(kinds.items()))


_SCORED = re.compile(
    r'^printer_watchdog_scored_frames_total\{printer="' + PRINTER + r'"\} ([0-9.e+]+)$', re.M
)


def scored_frames(port: int) -> int | None:
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return None
    m = _SCORED.search(text)
    return int(float(m.group(1))) if m else 0


# --------------------------------------------------------------------------- the harness


class Soak:
    """One soak run against servers that are already started (the CLI and the test make them).

    ``broker``: tests.plugins.mosquitto.Broker; ``moonraker``: tests.plugins.printers.MoonrakerServer;
    ``camera``: tests.plugins.camera.CameraServer.
    """

    def __init__(
        self,
        broker: Any,
        moonraker: Any,
        camera: Any,
        bundle: Path,
        workdir: Path,
        *,
        frames: int,
        seed: int,
        normal: list[np.ndarray],
        anomalous: list[np.ndarray],
        prefix: str = "soak",
        warmup_frames: int | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.broker, self.moonraker, self.camera = broker, moonraker, camera
        self.bundle, self.workdir = bundle, workdir
        self.normal, self.anomalous = normal, anomalous
        self.rng = random.Random(seed)
        self.prefix = prefix
        self.log = log
        self.result = Result(seed=seed, target_frames=frames)
        self.warmup_frames = warmup_frames if warmup_frames is not None else max(frames // 10, 100)
        self.storage = workdir / "state"
        self.config = workdir / "config.yaml"
        self.port = free_port()
        self.daemon: DaemonProcess | None = None
        self._stop = threading.Event()
        self._in_anomaly = threading.Event()  # a pause is legitimate only while this is set
        self._faults_left: list[str] = []
        self._lock = threading.Lock()

    # ---- setup

    def _config(self, camera: str | None = None, model: Path | None = None) -> Path:
        """Write the config (a bad_reload event writes a broken variant, then this again)."""
        return write_config(
            self.config,
            model=str(model or self.bundle),
            mqtt=self.broker.mqtt_settings(
                topic_prefix=self.prefix, homeassistant={"enabled": False}
            ),
            http={"listen": f"127.0.0.1:{self.port}"},
            storage={"dir": str(self.storage), "keep_incidents": 100_000},
            printers=[
                {
                    "name": PRINTER,
                    "camera": {
                        "source": camera or self.camera.snapshot_url,
                        "interval_s": 0.01,  # as fast as the step allows (0: a recording's)
                        "timeout_s": 3,
                    },
                    "api": {
                        "kind": "moonraker",
                        "url": self.moonraker.url,
                        "api_key": self.moonraker.api_key,
                        "timeout_s": 2,
                        "retries": 1,
                    },
                    "detection": {"consecutive": 3, "cooldown_s": COOLDOWN_S},
                    "action": "pause",
                }
            ],
        )

    # ---- observation

    def _open_files(self) -> dict[str, int]:
        assert self.daemon is not None
        ports = {
            self.broker.port: "mosquitto",
            urlsplit(self.moonraker.url).port or 0: "moonraker",
            urlsplit(self.camera.snapshot_url).port or 0: "camera",
            self.port: "its own http server",
        }
        try:
            return open_files(self.daemon.proc.pid, ports)
        except OSError:
            return {}

    def _incidents(self) -> list[Path]:
        folder = self.storage / "incidents" / PRINTER
        return (
            sorted(p for p in folder.iterdir() if not p.name.startswith("."))
            if folder.is_dir()
            else []
        )

    def _frames(self) -> int:
        n = scored_frames(self.port)
        if n is not None:
            self.result.frames = max(self.result.frames, n)
        return self.result.frames

    def _print_state(self) -> str:
        """Klipper's print_stats.state; a request of its own (the monitor thread asks too)."""
        try:
            r = requests.get(
                f"{self.moonraker.url}/printer/objects/query?print_stats",
                timeout=5,
                headers={"X-Api-Key": self.moonraker.api_key},
            )
            return str(r.json()["result"]["status"]["print_stats"]["state"])
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return "unknown"  # Moonraker is down on purpose, or Klippy not ready yet

    def _monitor(self) -> None:
        """Samples /proc and the frame count; watches for pauses outside anomaly episodes."""
        assert self.daemon is not None
        start, paused_seen = time.monotonic(), False
        while not self._stop.wait(0.5):
            try:
                rss, fds, threads = proc_sample(self.daemon.proc.pid)
            except (FileNotFoundError, ProcessLookupError):
                return  # the daemon is gone; the run fails on its exit code
            self.result.samples.append(
                Sample(
                    round(time.monotonic() - start, 2), self._frames(), round(rss, 2), fds, threads
                )
            )
            if self.moonraker.running:
                paused = self._print_state() == "paused"
                if paused and not paused_seen and not self._in_anomaly.is_set():
                    self.result.pauses_outside_anomalies += 1
                    self.log("!! the print was paused outside an anomaly episode")
                paused_seen = paused

    @staticmethod
    def _final(incidents: list[Path]) -> list[Path]:
        """Incidents with the action's outcome: the one saved before acting says "unknown"
        until the action is over (then it is replaced; it stays only if the daemon dies)."""
        final = []
        for path in incidents:
            try:
                alert = json.loads((path / "alert.json").read_text())
            except (OSError, ValueError):
                continue  # replaced while reading
            if alert.get("action_result", {}).get("outcome") != "unknown":
                final.append(path)
        return final

    def _is_anomalous(self, jpeg_path: Path) -> bool:
        """Is this incident frame one of the anomalous frames served (nearest served frame)?"""
        img = read_bgr_file(jpeg_path)
        if img is None:
            return False

        def dist(frames: list[np.ndarray]) -> float:
            return min(
                float(np.mean(np.abs(cv2.resize(f, img.shape[1::-1]).astype(np.float32) - img)))
                for f in frames
            )

        return dist(self.anomalous) < dist(self.normal)

    # ---- events

    def _wait(self, what: str, check: Callable[[], Any], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.1)
        self.log(f"   gave up waiting {timeout:g} s for {what}")
        return False

    def _resume(self) -> None:
        requests.post(
            f"{self.moonraker.url}/printer/print/resume",
            timeout=10,
            headers={"X-Api-Key": self.moonraker.api_key},
        )
        self._wait("the print to resume", lambda: self._print_state() == "printing", 15)

    def _anomaly(self, ep: Episode, broker_down: bool = False, api_down: bool = False) -> None:
        if broker_down:
            self.broker.stop()
        if api_down:
            self.moonraker.stop()
        before = len(self._incidents())
        self._in_anomaly.set()
        try:
            self.camera.set_frames(self.anomalous)
            ep.alerted = self._wait(
                "an alert", lambda: self._final(self._incidents()[before:]), ALERT_TIMEOUT_S
            )
            if not api_down:
                ep.paused = self._wait(
                    "the print paused", lambda: self._print_state() == "paused", 15
                )
            self.camera.set_frames(self.normal)
            new = self._final(self._incidents()[before:])
            if new:
                alert = json.loads(
                    (new[0] / "alert.json").read_text()
                )  # the one this episode waited for
                ep.outcome = alert["action_result"]["outcome"]
                ep.detail = alert["action_result"]["detail"][:120]
            if api_down:
                self.moonraker.start()
            if broker_down:
                self.broker.start()
            # A second trigger may still land (a failed pause re-arms the watcher at once when it
            # took longer than cooldown_s, and anomalous frames were on camera): settle, resume.
            for _ in range(2):
                time.sleep(COOLDOWN_S + 0.5)  # normal frames while the watcher re-arms
                if self._print_state() == "paused":
                    self._resume()
        finally:
            self._in_anomaly.clear()
        expected = "failed" if api_down else "done"
        ep.ok = bool(ep.alerted) and ep.outcome == expected and (api_down or bool(ep.paused))
        if not ep.ok:
            self.result.missed_anomalies += 1

    def _event(self, kind: str) -> Episode:
        if self._print_state() == "paused":  # never left paused by an earlier episode
            self._in_anomaly.set()
            self._resume()
            self._in_anomaly.clear()
            self.result.left_paused += 1
            self.log("   the print was still paused from the last episode: resumed")
        ep = Episode(kind, round(time.monotonic() - self.t0, 1), self._frames())
        r = self.rng
        if kind == "anomaly":
            self._anomaly(ep)
        elif kind == "anomaly_broker_down":
            self._anomaly(ep, broker_down=True)
        elif kind == "anomaly_api_down":
            self._anomaly(ep, api_down=True)
        elif kind == "broker_restart":
            self.broker.stop()
            time.sleep(r.uniform(1, 3))
            self.broker.start()
        elif kind == "api_restart":
            self.moonraker.stop()
            time.sleep(r.uniform(1, 3))
            self.moonraker.start()
        elif kind == "camera_fault":
            if not self._faults_left:  # every fault once, in random order, then again
                self._faults_left = r.sample(CAMERA_FAULTS, len(CAMERA_FAULTS))
            fault = self._faults_left.pop()
            ep.detail = fault
            self.camera.set_fault(fault)
            time.sleep(r.uniform(1, 4))
            self.camera.set_fault(None)
        elif kind == "second_daemon":
            self._second_daemon(ep)
        elif kind == "bad_reload":
            self._bad_reload(
                ep, r.choice(["missing camera folder", "ftp camera", "nested model.json"])
            )
        else:
            time.sleep(r.uniform(1, 5))
        return ep

    def _second_daemon(self, ep: Episode) -> None:
        assert self.daemon is not None
        proc = subprocess.run(
            watchdog_cmd("run", "--config", str(self.config)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        refused = proc.returncode == 2 and "in use by another watchdog daemon" in proc.stderr
        ep.detail = (proc.stderr.strip().splitlines() or [""])[-1][:120]
        ep.ok = refused and self.daemon.alive()
        self.result.second_daemons_refused += ep.ok

    def _count(self, text: str) -> int:
        assert self.daemon is not None
        return self.daemon.log.count(text)

    def _bad_reload(self, ep: Episode, how: str) -> None:
        assert self.daemon is not None
        ep.detail = how
        refused, applied = (
            self._count("reload refused"),
            self._count("INFO watchdog.daemon: reloaded "),
        )
        if how == "nested model.json":
            nested = self.workdir / "nested-bundle"
            if not nested.exists():
                shutil.copytree(self.bundle, nested)
                (nested / "model.json").write_text("[" * 100_000 + "]" * 100_000)
            self._config(model=nested)
        else:
            self._config(
                camera=str(self.workdir / "no-such-folder")
                if how == "missing camera folder"
                else "ftp://127.0.0.1/cam.jpg"
            )
        self.daemon.signal(signal.SIGHUP)
        ok_refused = self._wait(
            "the reload refused", lambda: self._count("reload refused") > refused, 30
        )
        self._config()
        self.daemon.signal(signal.SIGHUP)
        ok_applied = self._wait(
            "the good config applied",
            lambda: self._count("INFO watchdog.daemon: reloaded ") > applied,
            30,
        )
        ep.ok = ok_refused and ok_applied and self.daemon.alive()
        self.result.reloads_refused += ok_refused
        self.result.reloads_applied += ok_applied

    # ---- the run

    def run(self) -> Result:
        from tests.plugins.mosquitto import Subscriber

        res = self.result
        self.camera.set_frames(self.normal)
        state = self._print_state()
        if state == "paused":
            self._resume()
        elif state != "printing":
            self.moonraker.start_print()
        sub = Subscriber(
            self.broker, (f"{self.prefix}/{PRINTER}/alert",), client_id=f"soak-sub-{os.getpid()}"
        )
        self.broker.subscribers.append(sub)
        self.daemon = DaemonProcess(self._config(), self.workdir / "daemon.log")
        self.t0 = time.monotonic()
        monitor = threading.Thread(target=self._monitor, name="soak-monitor")
        monitor.start()
        try:
            if not self._wait("the first scored frames", lambda: self._frames() >= 3, 120):
                raise RuntimeError(f"the daemon never scored a frame; log: {self.daemon.log_path}")
            res.open_files_start = self._open_files()
            kinds = list(EVENTS)
            self.rng.shuffle(kinds)  # one of each first, so even a short run sees every fault
            while self._frames() < res.target_frames or kinds:
                if not self.daemon.alive():
                    break
                kind = (
                    kinds.pop()
                    if kinds
                    else self.rng.choices(list(EVENTS), weights=list(EVENTS.values()))[0]
                )
                ep = self._event(kind)
                ep.t_end = round(time.monotonic() - self.t0, 1)
                res.episodes.append(ep)
                self.log(
                    f"{ep.t:8.1f} s {self._frames():7d} frames  {kind:20s} {ep.detail[:60]}"
                    f"{'' if ep.ok else '  << FAILED'}"
                )
            # Everything raised must be delivered before the daemon goes.
            self._wait(
                "every alert delivered",
                lambda: not list(self.storage.glob("outbox/mqtt/*/entry.json")),
                60,
            )
            n = self._frames()
            self._wait("a few more frames", lambda: self._frames() >= n + 20, 30)
            res.open_files_end = self._open_files()
        finally:
            self._stop.set()
            monitor.join(10)
            res.seconds = round(time.monotonic() - self.t0, 1)
            res.daemon_exit = self.daemon.stop(timeout=20)
            time.sleep(1)  # the last PUBLISH on its way to the subscriber
            sub.close()
        self._account(sub)
        return res

    def _account(self, sub: Any) -> None:
        res = self.result
        incidents = self._incidents()
        raised = {p.name for p in incidents}
        delivered = [m.json()["incident"] for m in sub.received(f"{self.prefix}/{PRINTER}/alert")]
        res.raised, res.delivered = len(raised), len(set(delivered))
        res.duplicates = len(delivered) - len(set(delivered))
        res.undelivered = sorted(raised - set(delivered))
        res.incidents_on_normal_frames = [
            p.name for p in incidents if not self._is_anomalous(p / "frame.jpg")
        ]
        log = self.daemon.log if self.daemon else ""
        res.step_failures = log.count("step failed")
        for ep in res.episodes:
            during = [s.rss_mb for s in res.samples if ep.t <= s.t <= ep.t_end + 0.5]
            ep.rss_mb_max = max(during) if during else None
        res.summary = summarize(res, self.warmup_frames)


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def summarize(res: Result, warmup_frames: int) -> dict[str, Any]:
    """The figures docs/reliability.md reports, and whether each one holds."""
    after = [s for s in res.samples if s.frames >= warmup_frames] or res.samples
    head, tail = after[: max(len(after) // 10, 3)], after[-max(len(after) // 10, 3) :]
    rss_growth = _median([s.rss_mb for s in tail]) - _median([s.rss_mb for s in head])
    anomaly_eps = [e for e in res.episodes if e.kind.startswith("anomaly")]
    kinds = {k: sum(e.kind == k for e in res.episodes) for k in EVENTS}
    s: dict[str, Any] = {
        "frames": res.frames,
        "seconds": res.seconds,
        "frames_per_s": round(res.frames / res.seconds, 1) if res.seconds else None,
        "events": kinds,
        "camera_faults": sorted({e.detail for e in res.episodes if e.kind == "camera_fault"}),
        "rss_mb_after_warmup": [min(s.rss_mb for s in after), max(s.rss_mb for s in after)]
        if after
        else None,
        "rss_growth_mb": round(rss_growth, 2),
        "fds": [min(s.fds for s in after), max(s.fds for s in after)] if after else None,
        "fds_growth": _median([s.fds for s in tail]) - _median([s.fds for s in head]),
        "threads": [min(s.threads for s in after), max(s.threads for s in after)]
        if after
        else None,
        "threads_growth": _median([s.threads for s in tail]) - _median([s.threads for s in head]),
        "alerts_raised": res.raised,
        "alerts_delivered": res.delivered,
        "duplicates": res.duplicates,
        "anomaly_episodes": len(anomaly_eps),
        "anomaly_episodes_handled": sum(e.ok for e in anomaly_eps),
        "pauses_outside_anomalies": res.pauses_outside_anomalies,
        "left_paused": res.left_paused,
        "incidents_on_normal_frames": len(res.incidents_on_normal_frames),
        "daemon_exit": res.daemon_exit,
        "step_failures": res.step_failures,
        "rss_mb_max": max((s.rss_mb for s in res.samples), default=None),
        "rss_mb_max_by_camera_fault": {
            f: max(
                (
                    e.rss_mb_max
                    for e in res.episodes
                    if e.kind == "camera_fault" and e.detail == f and e.rss_mb_max is not None
                ),
                default=None,
            )
            for f in sorted({e.detail for e in res.episodes if e.kind == "camera_fault"})
        },
        "second_daemons": kinds.get("second_daemon", 0),
        "second_daemons_refused": res.second_daemons_refused,
        "bad_reloads": kinds.get("bad_reload", 0),
        "reloads_refused": res.reloads_refused,
        "reloads_applied": res.reloads_applied,
    }
    s["checks"] = {
        "rss_flat": rss_growth <= RSS_BUDGET_MB,
        "fds_flat": s["fds_growth"] <= 2,
        "threads_flat": s["threads_growth"] <= 1,
        "raised_equals_delivered": res.raised == res.delivered
        and not res.undelivered
        and res.duplicates == 0,
        "no_pause_on_normal_frames": res.pauses_outside_anomalies == 0
        and not res.incidents_on_normal_frames,
        "every_anomaly_handled": res.missed_anomalies == 0,
        "clean_exit": res.daemon_exit == 0 and res.step_failures == 0,
        "rss_within_150_mb": (s["rss_mb_max"] or 0) <= 150.0,
        "second_daemons_refused": res.second_daemons_refused == s["second_daemons"],
        "reloads_survived": res.reloads_refused == res.reloads_applied == s["bad_reloads"],
    }
    s["ok"] = all(s["checks"].values())
    return s


def print_table(s: dict[str, Any]) -> None:
    rows = [
        ("frames scored", f"{s['frames']} in {s['seconds']} s ({s['frames_per_s']}/s)"),
        ("events", ", ".join(f"{k} {v}" for k, v in s["events"].items())),
        ("camera faults", ", ".join(s["camera_faults"])),
        ("RSS after warm-up (MB)", f"{s['rss_mb_after_warmup']}, growth {s['rss_growth_mb']:+.2f}"),
        ("open fds", f"{s['fds']}, growth {s['fds_growth']:+g}"),
        ("threads", f"{s['threads']}, growth {s['threads_growth']:+g}"),
        (
            "alerts raised / delivered",
            f"{s['alerts_raised']} / {s['alerts_delivered']} (duplicates {s['duplicates']})",
        ),
        ("anomaly episodes handled", f"{s['anomaly_episodes_handled']} / {s['anomaly_episodes']}"),
        (
            "pauses on normal frames",
            f"{s['pauses_outside_anomalies']} seen, {s['incidents_on_normal_frames']} incidents",
        ),
        ("daemon exit / step failures", f"{s['daemon_exit']} / {s['step_failures']}"),
        (
            "largest RSS (MB)",
            f"{s['rss_mb_max']}; by camera fault: "
            + ", ".join(f"{k} {v}" for k, v in s["rss_mb_max_by_camera_fault"].items()),
        ),
        ("second daemons refused", f"{s['second_daemons_refused']} / {s['second_daemons']}"),
        (
            "bad reloads refused / good applied",
            f"{s['reloads_refused']} / {s['reloads_applied']} of {s['bad_reloads']}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for name, ok in s["checks"].items():
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    print("OK" if s["ok"] else "FAILED")


# --------------------------------------------------------------------------- CLI


def _tiny_bundle(workdir: Path) -> Path:
    from tests import synth
    from tests.plugins.models import (
        TINY_ANOMALOUS,
        TINY_FRAMES,
        TINY_SEED,
        TINY_SESSIONS,
        train_tiny,
    )

    data = synth.write_kaggle_layout(
        workdir / "data", TINY_SESSIONS, TINY_FRAMES, TINY_ANOMALOUS, seed=TINY_SEED
    )
    return train_tiny(data, workdir / "runs") / "bundle"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20_000, help="frames to score (default 20000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("soak.json"), help="JSON result")
    ap.add_argument(
        "--bundle", type=Path, help="model bundle (default: train the tests' tiny bundle)"
    )
    ap.add_argument(
        "--workdir", type=Path, help="keep logs and state here (default: a temporary folder)"
    )
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on the way out

    from tests import synth
    from tests.plugins.camera import CameraServer
    from tests.plugins.models import TINY_FRAMES, TINY_SEED
    from tests.plugins.mosquitto import Broker
    from tests.plugins.printers import MOONRAKER_SPEC, MoonrakerServer, server_venv

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"soak: {args.frames} frames, seed {args.seed}, work folder {workdir}", flush=True)
    bundle = args.bundle or _tiny_bundle(workdir)
    normal = [
        synth.normal_frame(s, i, TINY_FRAMES, TINY_SEED) for s in (0, 1) for i in range(0, 10, 2)
    ]
    anomalous = [synth.anomalous_frame(100 + i, TINY_SEED) for i in range(6)]
    (workdir / "mosquitto").mkdir(exist_ok=True)
    broker = Broker(workdir / "mosquitto", free_port())
    moonraker = MoonrakerServer(
        server_venv("moonraker-venv", MOONRAKER_SPEC), workdir / "moonraker" / "data"
    )
    camera = CameraServer()
    try:
        broker.start()
        moonraker.start()
        soak = Soak(
            broker,
            moonraker,
            camera,
            bundle,
            workdir,
            frames=args.frames,
            seed=args.seed,
            normal=normal,
            anomalous=anomalous,
            log=lambda m: print(m, flush=True),
        )
        result = soak.run()
    finally:
        camera.close()
        moonraker.stop()
        moonraker.klippy.stop()
        broker.close()
    args.out.write_text(json.dumps(result.to_json(), indent=1))
    print_table(result.summary)
    kinds = sorted(set(result.open_files_start) | set(result.open_files_end))
    for kind in kinds:
        before, after = result.open_files_start.get(kind, 0), result.open_files_end.get(kind, 0)
        print(f"open at start / end  {before:3d} / {after:3d}  {kind}")
    print(f"result: {args.out}; daemon log: {workdir / 'daemon.log'}")
    return 0 if result.summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
