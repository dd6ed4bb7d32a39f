"""`python -m watchdog demo`: the real daemon loop on embedded defaults, no hardware needed.

The bundled model watches a built-in frame sequence (a normal print, then spaghetti), a
simulated printer that prints and accepts pause, and writes the alert to a local folder (and
to MQTT if a broker is given). It ends after the pause and says where the alert is.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import socket
import sys
import time
from datetime import datetime
from pathlib import Path

from watchdog.commands import number
from watchdog.comms.notifier import Notifier
from watchdog.comms.transport import machine_suffix
from watchdog.config import CameraConfig, MqttConfig, PrinterConfig, StorageConfig
from watchdog.detection.bundle import Bundle, default_bundle_path
from watchdog.devices.printers import SimulatedPrinter
from watchdog.errors import UsageError
from watchdog.schema import SchemaError
from watchdog.watcher import build_watcher

DEMO_FRAMES = Path(__file__).resolve().parent.parent / "demo" / "frames"
DEMO_PREFIX = "printer_watchdog_demo"  # the demo's MQTT topics: apart from a running watchdog's


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the watchdog on built-in frames and a simulated printer")
    p.add_argument(
        "--out", default="watchdog-demo", help="folder for the incident (default: ./watchdog-demo)"
    )
    p.add_argument(
        "--interval",
        type=number(float, 0.0, 3600.0),
        default=0.2,
        help="seconds between frames (default 0.2)",
    )
    p.add_argument(
        "--mqtt-host",
        default="",
        help=f"also publish to this MQTT broker, under {DEMO_PREFIX}/ (its Home Assistant "
        "entities are removed when the demo ends)",
    )
    p.add_argument("--mqtt-port", type=number(int, 1, 65535), default=1883)
    p.add_argument("--model", help="bundle folder (default: the bundled model)")
    p.add_argument("--frames", default=str(DEMO_FRAMES), help=argparse.SUPPRESS)
    p.set_defaults(func=main)


# a frame the demo wrote: its number in the sequence (1000 and more for a long start), the
# built-in frame's name
DEMO_FRAME = re.compile(r"\d{3,}_\d{3}_(normal|failure)\.jpg")


def demo_sequence(frames: Path, calibration_frames: int, into: Path) -> Path:
    """The built-in camera: the normal stills, shown again and again until the model's per-print
    baseline is set (as long as a real print's first minutes would take), then the failure."""
    normal = sorted(frames.glob("*_normal.jpg"))
    failure = sorted(frames.glob("*_failure.jpg"))
    if not normal or not failure:
        raise UsageError(f"{frames}: demo frames (*_normal.jpg, *_failure.jpg) missing")
    rounds = max(1, math.ceil((calibration_frames + len(normal)) / len(normal)))
    try:
        into.mkdir(parents=True, exist_ok=True)
        # an earlier demo's frames (a longer sequence, another model's) would be shown
        # among these: the demo's own, and only those, go first
        for old in into.iterdir():
            if DEMO_FRAME.fullmatch(old.name):
                old.unlink()
        for i, path in enumerate(normal * rounds + failure):
            shutil.copyfile(path, into / f"{i:03d}_{path.name}")
    except OSError as exc:  # named after --out, not the package's own frame being copied
        raise UsageError(
            f"--out: cannot write the demo's camera frames in {into} ({exc.strerror or exc})"
        ) from None
    return into


def main(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    bundle = Bundle.load(args.model or default_bundle_path())
    frames = demo_sequence(Path(args.frames), bundle.meta.adaptation.frames, out / "camera")
    pcfg = PrinterConfig(
        name="demo",
        camera=CameraConfig(source=str(frames), interval_s=args.interval),
        action="pause",
    )
    # its own prefix and client: beside a running watchdog on the same broker (and host), the
    # demo neither takes its connection nor marks its entities unavailable when it ends
    try:
        mqtt = MqttConfig(
            host=args.mqtt_host,
            port=args.mqtt_port,
            topic_prefix=DEMO_PREFIX,
            client_id=f"printer-watchdog-demo-{socket.gethostname()}{machine_suffix()}",
        )
    except SchemaError:
        raise UsageError(
            "--mqtt-host: give a host name or address only, without a scheme, a user or a "
            "port (the port goes in --mqtt-port)"
        ) from None
    notifier = Notifier(mqtt, StorageConfig(dir=out), [pcfg.name])
    # each run is a print of its own: the same job name, its alert kept in ``--out`` from the
    # last run, made a paused print "resumed while the watchdog was stopped", and the
    # cooldown after a resume covered the whole demo
    printer = SimulatedPrinter(f"demo-{datetime.now():%Y%m%d-%H%M%S-%f}.gcode")
    watcher = build_watcher(pcfg, bundle, notifier, printer=printer)
    print(
        f"demo: model {bundle.path} (threshold {bundle.meta.threshold:.4g}), camera {frames}",
        file=sys.stderr,
    )
    notifier.start()
    alert = None
    flagged = 0  # frames the model judged anomalous
    try:
        while not watcher.camera.exhausted and alert is None:
            record = watcher.step()
            if record.verdict is not None:
                print(json.dumps(record.line()), flush=True)
                flagged += bool(record.verdict.anomalous)
            alert = record.alert
            if not watcher.camera.exhausted:
                time.sleep(args.interval)
        if alert is not None:
            watcher.step()  # let the simulated printer report "paused"
    finally:
        watcher.close()
        # its Home Assistant entities go with it (a demo device left behind, unavailable), and
        # its availability (a retained "offline" for each host that ran it)
        notifier.set_printers([])
        notifier.stop(for_good=True)
    if alert is None:
        why = (
            f"{flagged} frame(s) were flagged, not enough in a row, or not while watching "
            "(see each line's state)"
            if flagged
            else "the model did not flag the failure frames"
        )
        print(f"demo: the print was never paused: {why}", file=sys.stderr)
        return 1
    incident = out / "incidents" / "demo" / alert.incident
    print(f"demo: {alert.message}", file=sys.stderr)
    print(f"demo: printer state now: {printer.status().state}", file=sys.stderr)
    if notifier.store.unsaved:  # a full or read-only disk (said above), as replay tells it
        print(f"demo: the alert could not be saved in {out} (see the log above)", file=sys.stderr)
        return 1
    print(f"demo: alert   {incident / 'alert.json'}", file=sys.stderr)
    print(f"demo: heatmap {incident / 'heatmap.jpg'}", file=sys.stderr)
    return 0
