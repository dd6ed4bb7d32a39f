"""`python -m watchdog replay`: the live decision pipeline over recorded frames.

Frames are read in name order (or from a video) and stepped on the recording's clock
(frame index x camera.interval_s), so cooldowns behave as they would live. Without a printer
API the print is simulated: a pause is accepted and the "user" resumes at once, so every
pause over the whole recording is counted (false pauses and time-to-pause both show).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from watchdog.comms.notifier import Notifier
from watchdog.config import CameraConfig, Config, MqttConfig, StorageConfig, load_config
from watchdog.daemon import load_bundle
from watchdog.detection.model import FrameScorer
from watchdog.devices.capture import open_camera
from watchdog.devices.printers import SimulatedPrinter, make_printer
from watchdog.errors import UsageError
from watchdog.incidents import incidents_root
from watchdog.watcher import Watcher


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="run the decision pipeline over recorded frames (a folder or a video)")
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("--frames", required=True, help="folder of frames (name order) or a video file")
    p.add_argument("--printer", help="which printer's settings to use (default: the first)")
    p.add_argument("--no-api", action="store_true", help="simulate the printer even if the config names an API")
    p.add_argument("--out", help="folder for incidents (default: a temporary folder)")
    p.set_defaults(func=main)


class VirtualClock:
    """Seconds on the recording's timeline: one camera interval per frame."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.frame = 0

    def __call__(self) -> float:
        return self.frame * self.interval_s


class ResumingPrinter(SimulatedPrinter):
    """A simulated print whose user resumes right after each pause (replay counts every pause)."""

    def status(self) -> Any:
        status = super().status()
        if status.state == "paused":
            self.resume()
        return status


def pick_printer(config: Config, name: str | None) -> Any:
    if name is None:
        return config.printers[0]
    for p in config.printers:
        if p.name == name:
            return p
    raise UsageError(f"--printer {name}: no such printer in the config ({', '.join(p.name for p in config.printers)})")


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    pcfg = pick_printer(config, args.printer)
    frames = Path(args.frames)
    if not frames.exists():
        raise UsageError(f"--frames {frames}: no such folder or video file")
    bundle = load_bundle(config)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="watchdog-replay-"))
    camera_cfg = CameraConfig(source=str(frames), interval_s=pcfg.camera.interval_s)
    camera = open_camera(camera_cfg)
    simulated = args.no_api or pcfg.api.kind == "none"
    printer = ResumingPrinter() if simulated else make_printer(pcfg.api)
    alerts = Notifier(MqttConfig(), StorageConfig(dir=out, keep_incidents=config.storage.keep_incidents), [pcfg.name])
    clock = VirtualClock(pcfg.camera.interval_s)
    watcher = Watcher(pcfg, FrameScorer(bundle, mask_polygons=pcfg.detection.mask), camera, printer, alerts, clock=clock)
    alerts.start()
    pauses = 0
    try:
        while not camera.exhausted:
            record = watcher.step()
            for event in record.events:
                emit(event)
                pauses += event.get("event") == "alert"
            if record.score is not None or record.state in ("camera_offline", "frame_skipped"):
                emit(record.line())
                clock.frame += 1
            elif not simulated:
                time.sleep(min(pcfg.camera.interval_s, 5.0))  # a real printer that is not printing
    except KeyboardInterrupt:
        pass
    finally:
        camera.close()
        alerts.stop()
    where = incidents_root(out) / pcfg.name
    emit({"event": "summary", "frames": clock.frame, "alerts": pauses, "incidents": str(where)})
    print(f"replayed {clock.frame} frames: {pauses} alert(s); incidents in {where}", file=sys.stderr)
    return 0
