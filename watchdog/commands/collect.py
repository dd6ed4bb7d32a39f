"""`python -m watchdog collect`: save frames of good prints for retraining on this printer.

Frames land as ``OUT/<printer>/<session>_<n>.jpg``, the layout ``python -m trainer --normal``
reads: the session (one print) is the name before the final ``_<n>``, so the trainer splits
by print, not by frame.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from watchdog import frames
from watchdog.commands import number, shown_source
from watchdog.config import PrinterConfig, load_config
from watchdog.devices.capture import MAX_BACKOFF_S, open_camera
from watchdog.devices.printers import make_printer
from watchdog.errors import UsageError
from watchdog.printing import PrinterState, PrinterStatus
from watchdog.signals import Signals
from watchdog.storage_lock import nearest_existing, refuse_as_root_in_a_users_folder

logger = logging.getLogger(__name__)


RECORDINGS = (
    "folder",
    "video file",
)  # camera kinds that end: copied frame by frame, then collect stops


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collect",
        help="save frames of running prints for retraining (trainer --normal DIR)",
        description="Save a frame every camera.interval_s while a printer prints, as OUT/<printer>/<print>_<n>.jpg. "
        "A camera that is a folder or video (a recording) is copied frame by frame (a folder's "
        "prints kept apart by their frames' names) and collect stops at its end. Exits 1 with the reason when nothing was saved.",
    )
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("--out", required=True, help="folder to save frames into")
    p.add_argument(
        "--printer", action="append", help="only this printer (repeatable; default: all)"
    )
    p.add_argument(
        "--max-frames",
        type=number(int, 0),
        default=0,
        help="stop after this many frames in all (0: until stopped)",
    )
    p.add_argument(
        "--min-free-mb",
        type=number(float, 0.0),
        default=500.0,
        help="stop when the disk of --out has less than this many MB free, so that a collect "
        "left running never fills the SD card the watchdog saves its alerts on (default 500)",
    )
    p.add_argument(
        "--wait-s",
        type=number(float, 1.0),
        default=60.0,
        help="give up when a printing printer's camera has given no frame for this many seconds "
        "and at least two tries, at the start or later (a camera that died in the night; "
        "default 60)",
    )
    p.set_defaults(func=main)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40] or "print"


class Collector:
    """One printer: a new session name per print (after a pause, a part of it: frames'
    contract), a frame per interval while printing."""

    def __init__(
        self, pcfg: PrinterConfig, out: Path, stop: threading.Event, wait_s: float = 0.0
    ) -> None:
        self.cfg = pcfg
        self.out = out / pcfg.name
        # a camera is retried no less often than collect waits for it (``--wait-s``), so
        # that its "retrying with backoff up to" line names a wait collect will make
        largest = min(MAX_BACKOFF_S, wait_s) if wait_s else MAX_BACKOFF_S
        self.camera = open_camera(pcfg.camera, stop, name=pcfg.name, backoff=(1.0, largest))
        self.printer = make_printer(pcfg.api, stop)
        self.recording = getattr(self.camera, "kind", "") in RECORDINGS
        self.session: str | None = None
        self.print_name: str | None = None  # the print the session is, or is a part of
        self.parts = 0  # parts after a resume so far
        self.paused = False  # paused since the last frame: a resume starts a part
        self.job: str | None = None
        # the print the recording's last frame belonged to (a folder may hold several, as
        # ``collect`` itself keeps them and ``replay`` splits them): the next one starts a print
        self.recorded: str | None = None
        self._unsaid = False  # a new session, said once its name is known (a recording's)
        self.printed_s: float | None = None  # the job's print time at the last frame
        self.count = 0
        self.saved = 0
        self.next_due = 0.0
        self.printing_since: float | None = None  # when the printer was first seen printing
        self.waiting_since: float | None = None  # printing since then, and no frame yet
        self.answered = False  # the camera gave at least one frame
        self.last_status = ""

    @property
    def finished(self) -> bool:
        """A recording read to its end."""
        return bool(self.camera.exhausted)

    def tick(self, now: float) -> int:
        """Save one frame if due and printing; returns frames saved (0 or 1)."""
        if now < self.next_due:
            return 0
        self.next_due = now + self.cfg.camera.interval_s
        status = self.printer.status()
        self.last_status = f"{status.state}{': ' + status.detail if status.detail else ''}"
        if status.state == PrinterState.PRINTING and self.recording:
            self.next_due = now  # a recording is read at once while the printer prints
        if status.state != PrinterState.PRINTING:
            if status.state not in (PrinterState.PAUSED, PrinterState.OFFLINE):
                self.session = None  # the print ended: the next one is another print
            # paused (by its owner, a filament change, the watchdog): the same print goes on
            # after the resume as a part of it (frames.resumed_part), which the daemon judges
            # against a look learnt again; an API that did not answer once: the same part
            self.paused = self.paused or status.state == PrinterState.PAUSED
            self.waiting_since = None  # a camera is not waited for while nothing prints
            return 0
        if self.printing_since is None:
            self.printing_since = now
        if self.waiting_since is None:
            self.waiting_since = now
        if self.session is None or status.job != self.job or self._printed_again(status):
            self.job = status.job
            self.printed_s = None  # the new print's own time from here
            self.session = self.print_name = self._new_session(status.job)
            self.count, self.parts, self.paused = 0, 0, False
            self._unsaid = True
        elif self.paused and self.print_name is not None:
            self.parts += 1
            self.session = frames.resumed_part(self.print_name, self.parts)
            self.count, self.paused, self._unsaid = 0, False, False
            logger.info("%s: resumed: collecting its part %s", self.cfg.name, self.session)
        if status.printed_s is not None:  # not said (a job just started): the last one said stays
            self.printed_s = status.printed_s
        frame = self.camera.read()
        if frame is None:
            return 0
        self._follow_the_recording()
        if self._unsaid:  # after a recording named it: the name said is the one its files have
            logger.info("%s: collecting session %s", self.cfg.name, self.session)
            self._unsaid = False
        self.answered, self.waiting_since = True, None
        self.out.mkdir(parents=True, exist_ok=True)
        while not self._saved_as(frames.frame_path(self.out, self.session, self.count), frame):
            # another collect took this print's name between the check and the first frame
            self.session, self.count = self._new_session(status.job), 0
            logger.info("%s: collecting session %s", self.cfg.name, self.session)
        self.count += 1
        self.saved += 1
        return 1

    def _follow_the_recording(self) -> None:
        """A folder's next print (the frames contract's name) is a new session, a resumed part
        of its print a part of this one: one recording of several prints was saved as one
        print, which the trainer then fitted and judged as one."""
        current = getattr(self.camera, "current", None)
        if current is None:
            return
        recorded = frames.parse(current).print or ""
        before, self.recorded = self.recorded, recorded
        if before is None and self.job is None and self.count == 0 and self._several_prints():
            # the first of a folder of several prints: named after it, as the others are
            self.session = self.print_name = self._new_session(frames.print_of(recorded) or None)
            return
        if before is None or recorded == before or self.print_name is None:
            return
        if frames.print_of(recorded) == frames.print_of(before):
            self.parts += 1
            self.session = frames.resumed_part(self.print_name, self.parts)
        else:
            self.session = self.print_name = self._new_session(frames.print_of(recorded) or None)
            self.parts = 0
        self.count, self._unsaid = 0, False
        logger.info("%s: the recording's next print: collecting %s", self.cfg.name, self.session)

    def _several_prints(self) -> bool:
        """Whether the recording is a folder holding frames of more than one print."""
        paths = getattr(self.camera, "paths", None) or []
        return len({frames.print_of(frames.parse(p).print or "") for p in paths}) > 1

    def _saved_as(self, path: Path, frame: np.ndarray) -> bool:
        """Write ``frame`` at ``path``, never over a file there (False then: another collect
        took the name). A frame cut by a power cut has no JPEG end, and the trainer skips it."""
        ok, jpeg = cv2.imencode(".jpg", frame)
        created = False
        try:
            if not ok:
                raise OSError("not encoded")
            with open(path, "xb") as f:
                created = True
                f.write(jpeg.tobytes())
        except FileExistsError:
            return False
        except OSError as exc:
            if created:  # what was written of it (a full disk) is no frame
                path.unlink(missing_ok=True)
            free = _free_mb(self.out)
            why = "the disk is full" if free is not None and free < 1 else "is --out writable?"
            raise UsageError(f"cannot write {path} ({why})") from exc
        return True

    def _printed_again(self, status: PrinterStatus) -> bool:
        """The same job started again while this collect did not see it end (the API did not
        answer across the end): its print time went back."""
        before, now = self.printed_s, status.printed_s
        return before is not None and now is not None and now < before

    def _new_session(self, job: str | None) -> str:
        """A print name no earlier collect used in this folder: printer, time, job (or recording)."""
        source = self.cfg.camera.source
        what = job or (Path(str(source)).stem if self.recording else "print")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = name = f"{_slug(self.cfg.name)}-{stamp}-{_slug(what)}"
        n = 1
        while frames.frame_path(self.out, name, 0).exists():
            n += 1
            name = f"{base}-{n}"
        return name

    def unanswered_for(self, now: float) -> float:
        """Seconds this printer has been printing without its camera giving a frame, counted
        once a second try also failed (a camera read every few minutes is not given up after
        one missed frame); 0 for a recording read to its end."""
        if self.waiting_since is None or self.finished:
            return 0.0
        waited = now - self.waiting_since
        return waited if waited > self.cfg.camera.interval_s else 0.0

    def why_nothing(self, stopped: bool = False) -> str:
        """Why this printer saved no frame, in one phrase; ``stopped``: collect was stopped
        (Ctrl-C), which may have cut the camera's first answer short."""
        name, source = self.cfg.name, shown_source(self.cfg)
        if self.printing_since is None:
            said = "had not reported" if stopped else "never reported"
            return f"printer {name} {said} printing (last status: {self.last_status or 'none'})"
        if stopped and not self.answered:
            return f"camera of {name} ({source}) had not given a frame yet"
        if not self.answered:
            return f"camera of {name} ({source}) never answered: {self.camera.last_error or 'no frame'}"
        return f"camera of {name} ({source}) gave no usable frame"

    def gave_up(self, wait_s: float) -> str:
        after = f" after {self.saved} frame(s)" if self.answered else ""
        return (
            f"camera of {self.cfg.name} ({shown_source(self.cfg)}) gave no frame in {wait_s:g} s"
            f"{after} (--wait-s): {self.camera.last_error or 'no frame'}"
        )


def _free_mb(folder: Path) -> float | None:
    """Free space where ``folder`` is (or would be created); None when it cannot be told."""
    try:
        return shutil.disk_usage(nearest_existing(folder)).free / 1e6
    except OSError:
        return None


def collect(
    collectors: list[Collector],
    stop: threading.Event,
    max_frames: int,
    wait_s: float,
    out: Path | None = None,
    min_free_mb: float = 0.0,
    signals: Signals | None = None,
) -> tuple[int, str]:
    """Frames saved, and why collect gave up early ("" when it did not): until stopped, the
    frame budget is spent, every recording is read to its end, a camera never answers, or
    the disk of ``out`` has less than ``min_free_mb`` left. ``signals``: SIGTERM or Ctrl-C,
    taken here (``watchdog.signals``)."""
    saved = 0
    while not stop.is_set() and not (max_frames and saved >= max_frames):
        if signals is not None and signals.take():
            stop.set()
            break
        free = None if out is None or not min_free_mb else _free_mb(out)
        if free is not None and free < min_free_mb:
            return saved, (
                f"the disk of {out} has {free:.0f} MB free, less than --min-free-mb "
                f"{min_free_mb:.10g}: stopped before it fills; free some space or pick another --out"
            )
        now = time.monotonic()
        for c in collectors:
            saved += 0 if c.finished else c.tick(now)
            if wait_s and c.unanswered_for(now) > wait_s:
                return saved, c.gave_up(wait_s)
        if all(c.finished for c in collectors):
            break
        if not any(c.recording and not c.finished and c.next_due <= now for c in collectors):
            stop.wait(0.2)  # no recording being read at once (its printer prints)
    return saved, ""


def _check_out(out: Path, printers: list[str]) -> list[Path]:
    """Each printer's folder under ``--out`` is made, and writable, before waiting for a print:
    found at its first frame, hours later, the print was lost. Returns the folders it made,
    deepest last, for ``_tidy`` to take away again where nothing was saved in them."""
    made: list[Path] = []
    for name in printers:
        folder = out / name
        missing = [d for d in (folder, *folder.parents) if not d.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            made += reversed(missing)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
                pass
        except OSError as exc:
            _tidy(made)
            raise UsageError(
                f"--out {out}: cannot save frames in {folder}: {exc.strerror or exc}"
            ) from exc
    return made


def _tidy(made: list[Path]) -> None:
    """Remove the folders ``_check_out`` made that stayed empty (nothing collected: no
    folders left behind to puzzle over)."""
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            pass  # frames in it, or not ours to remove any more


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    names = {p.name for p in config.printers}
    unknown = [n for n in args.printer or [] if n not in names]
    if unknown:
        raise UsageError(f"--printer {', '.join(unknown)}: no such printer in {args.config}")
    printers = [p for p in config.printers if not args.printer or p.name in args.printer]
    stop = threading.Event()
    out = Path(args.out)
    refuse_as_root_in_a_users_folder(out)  # frames root saved there, the service cannot use
    made = _check_out(out, [p.name for p in printers])
    collectors = [Collector(p, out, stop, args.wait_s) for p in printers]
    signals = Signals(signal.SIGTERM, signal.SIGINT, stop=stop)  # the waits end at once
    try:
        saved, gave_up = collect(
            collectors, stop, args.max_frames, args.wait_s, out, args.min_free_mb, signals
        )
    finally:
        signals.close()
        for c in collectors:
            c.camera.close()
        _tidy(made)
    bad = sum(c.camera.stats.bad_frames for c in collectors)
    skipped = f" ({bad} unreadable frame(s) skipped)" if bad else ""
    if gave_up:
        print(f"error: {gave_up}; saved {saved} frame(s){skipped}", file=sys.stderr)
        return 1
    if saved == 0:
        stopped = stop.is_set()
        print(
            f"error: nothing saved{': stopped' if stopped else ''}: "
            f"{'; '.join(c.why_nothing(stopped) for c in collectors)}",
            file=sys.stderr,
        )
        return 1
    logger.info("saved %d frame(s) under %s%s", saved, out, skipped)
    return 0
