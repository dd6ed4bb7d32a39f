"""`python -m watchdog collect`: save frames of good prints for retraining on this printer.

Frames land as ``OUT/<printer>/<session>_<n>.jpg``, the layout ``python -m trainer --normal``
reads: the session (one print) is the name before the final ``_<n>``, so the trainer splits
by print, not by frame.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

import cv2

from watchdog import frames
from watchdog.config import PrinterConfig, load_config
from watchdog.devices.capture import open_camera
from watchdog.devices.printers import make_printer

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="save frames of running prints for retraining (trainer --normal DIR)")
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("--out", required=True, help="folder to save frames into")
    p.add_argument("--printer", action="append", help="only this printer (repeatable; default: all)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames in all (0: until stopped)")
    p.set_defaults(func=main)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "print"


class Collector:
    """One printer: a new session folder name per print, a frame per interval while printing."""

    def __init__(self, pcfg: PrinterConfig, out: Path, stop: threading.Event) -> None:
        self.cfg = pcfg
        self.out = out / pcfg.name
        self.camera = open_camera(pcfg.camera, stop, name=pcfg.name)
        self.printer = make_printer(pcfg.api, stop)
        self.session: str | None = None
        self.job: str | None = None
        self.count = 0
        self.next_due = 0.0

    def tick(self, now: float) -> int:
        """Save one frame if due and printing; returns frames saved (0 or 1)."""
        if now < self.next_due:
            return 0
        self.next_due = now + self.cfg.camera.interval_s
        status = self.printer.status()
        if status.state != "printing":
            self.session = None
            return 0
        if self.session is None or status.job != self.job:
            self.job = status.job
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            self.session = f"{_slug(self.cfg.name)}-{stamp}-{_slug(status.job or 'print')}"
            self.count = 0
            logger.info("%s: collecting session %s", self.cfg.name, self.session)
        frame = self.camera.read()
        if frame is None:
            return 0
        self.out.mkdir(parents=True, exist_ok=True)
        path = frames.frame_path(self.out, self.session, self.count)
        if not cv2.imwrite(str(path), frame):
            raise OSError(f"cannot write {path}")
        self.count += 1
        return 1


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    printers = [p for p in config.printers if not args.printer or p.name in args.printer]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    out = Path(args.out)
    collectors = [Collector(p, out, stop) for p in printers]
    saved = 0
    try:
        while not stop.is_set() and not (args.max_frames and saved >= args.max_frames):
            for c in collectors:
                saved += c.tick(time.monotonic())
            stop.wait(0.2)
    finally:
        for c in collectors:
            c.camera.close()
    logger.info("saved %d frame(s) under %s", saved, out)
    return 0
