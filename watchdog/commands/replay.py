"""`python -m watchdog replay`: the live decision pipeline over recorded frames.

Frames are read in the order of their number (``print_2.jpg`` before ``print_10.jpg``; or from
a video) and stepped on the recording's clock
(frame index x camera.interval_s), so cooldowns behave as they would live. The print is
simulated, whatever printer the config names: a pause is accepted and the "user" resumes at
once, so every pause over the whole recording is counted (false pauses and time-to-pause both
show). ``--api`` acts on the config's real printer instead (its print is paused). A
folder holding several prints (``collect`` keeps a printer's together) replays each as a new
print, judged against its own start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Any

from watchdog import frames as frames_contract
from watchdog import overrides
from watchdog.commands import pick_printer
from watchdog.comms.notifier import Notifier
from watchdog.config import (
    CameraConfig,
    ConfigError,
    MqttConfig,
    PrinterConfig,
    StorageConfig,
)
from watchdog.daemon import load_bundle
from watchdog.detection.bundle import Bundle
from watchdog.detection.decide import Label
from watchdog.devices.capture import BadFrame, CameraSourceError, image_size
from watchdog.devices.printers import SimulatedPrinter
from watchdog.errors import UsageError
from watchdog.incidents import incidents_root
from watchdog.storage_lock import LOCK_FILE
from watchdog.watcher import Watcher, build_watcher


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="run the decision pipeline over recorded frames (a folder or a video)"
    )
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument(
        "--frames", required=True, help="folder of frames (in frame-number order) or a video file"
    )
    p.add_argument("--printer", help="which printer's settings to use (default: the first)")
    p.add_argument(
        "--api",
        action="store_true",
        help="act on the printer the config names: its running print is paused (default: a "
        "simulated printer)",
    )
    p.add_argument("--no-api", action="store_true", help=argparse.SUPPRESS)  # the default now
    p.add_argument("--out", help="folder to keep the incidents in (default: not kept)")
    p.set_defaults(func=main)


WAIT_FOR_PRINT_S = 300  # --api: how long a printer that does not print is waited for
OFFLINE_STEPS = 10  # a recording offline this many steps in a row is not read further


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


def emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def main(args: argparse.Namespace) -> int:
    # as the daemon watches: the config file with the settings saved on the dashboard (a mask
    # drawn there, then tried here, was left out without a word)
    config, refused = overrides.load_starting_config(args.config, overrides.config_mask_check)
    pcfg = pick_printer(config, args.printer)
    for why in refused:
        print(f"warning: {why}", file=sys.stderr)
    left_out = any(f"printer {pcfg.name} watches" in why for why in refused)
    try:
        saved = [o for o in overrides.origins(config) if o.key.startswith(f"printers.{pcfg.name}.")]
    except ConfigError:  # the file cannot be read: said above, nothing of it is used
        saved = []
    if saved and not left_out:
        print(
            f"with the settings saved on the dashboard ({saved[0].file}): "
            + ", ".join(o.key.rsplit(".", 1)[1] for o in saved),
            file=sys.stderr,
        )
    frames = Path(args.frames)
    if not frames.exists():
        raise UsageError(f"--frames {frames}: no such folder or video file")
    bundle = load_bundle(config, args.config, [pcfg])  # the cautions of the printer replayed
    if args.out:
        _check_out(Path(args.out))
    with contextlib.ExitStack() as stack:
        out = (
            Path(args.out)
            if args.out
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="watchdog-replay-")))
        )
        try:
            return replay(
                pcfg,
                bundle,
                frames,
                out,
                simulated=not args.api or pcfg.api.kind == "none",
                keep_incidents=config.storage.keep_incidents,
                kept=bool(args.out),
            )
        except CameraSourceError as exc:  # the recording is the flag's, not a camera's
            raise UsageError(f"--frames {frames}: {exc.problem}") from None


# what a daemon leaves in its storage folder, and replay never makes (a copy has them too)
DAEMON_FILES = (LOCK_FILE, "outbox", "collected", "overrides.json")


def _check_out(out: Path) -> None:
    """``--out`` is a folder replay may write and prune (it keeps storage.keep_incidents):
    never a daemon's storage folder, whose real alerts it would delete; said now, not as
    each incident fails to be kept."""
    if any((out / name).exists() for name in DAEMON_FILES):
        raise UsageError(
            f"--out {out}: a watchdog's storage folder (its real alerts would be pruned to "
            "make room for the replay's): give an empty folder, or one replay made"
        )
    try:  # made and tried now: an unusable folder said before the replay, not at its alerts
        out.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=out, prefix=".replay-").close()
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None


def _waited(pcfg: PrinterConfig, since: float | None) -> float | None:
    """One wait for a real printer to print (``--api``): when the waiting began, or None once
    it has waited ``WAIT_FOR_PRINT_S`` (said)."""
    if since is None:
        print(f"waiting for {pcfg.name} to print ...", file=sys.stderr, flush=True)
        since = time.monotonic()
    elif time.monotonic() - since > WAIT_FOR_PRINT_S:
        print(
            f"{pcfg.name} did not print for {WAIT_FOR_PRINT_S // 60} minutes: replay "
            "stopped (without --api the printer is simulated)",
            file=sys.stderr,
        )
        return None
    # a second at least: at interval 0 (a recording read as fast as it can) the printer's API
    # was asked thousands of times a second
    time.sleep(min(max(pcfg.camera.interval_s, 1.0), 5.0))
    return since


class Ended(Enum):
    """How a replay ended."""

    READ = "read to its end"
    STOPPED = "stopped"  # said why on stderr
    INTERRUPTED = "interrupted"  # Ctrl-C: what was replayed is summed up, exit 130


def _step_through(
    watcher: Watcher,
    printer: ResumingPrinter | None,
    prints: list[str | None],
    clock: VirtualClock,
    pcfg: PrinterConfig,
    frames: Path,
) -> tuple[int, Ended, int]:
    """The watcher stepped until the recording ends: alerts raised, how it ended (read to
    its end; stopped: a recording that could not be read for a while, a real printer that
    never printed; interrupted: Ctrl-C), and how many frames were judged."""
    pauses = offline = judged = 0
    waiting_since: float | None = None
    try:
        while not watcher.camera.exhausted:
            if printer is not None and 0 < clock.frame < len(prints):
                job, before = prints[clock.frame], prints[clock.frame - 1]
                if job is not None and before is not None and job != before:
                    printer.start_print(job)
            record = watcher.step()
            judged += record.verdict is not None
            for event in record.events:
                emit(event.to_dict())
                pauses += event.alert is not None
            if watcher.camera.exhausted and record.verdict is None and not record.skipped:
                break  # the read after the last frame: the end, not a printer to wait for
            if record.verdict is not None or record.skipped or record.state is Label.CAMERA_OFFLINE:
                emit(record.line())
                clock.frame += 1
                waiting_since = None
                offline = offline + 1 if record.state is Label.CAMERA_OFFLINE else 0
                if offline > OFFLINE_STEPS:  # a recording does not come back: stop, say so
                    print(
                        f"{frames}: the recording could not be read for {offline} steps in a "
                        "row: replay stopped",
                        file=sys.stderr,
                    )
                    return pauses, Ended.STOPPED, judged
            elif printer is None:  # a real printer that is not printing (or paused by us)
                waiting_since = _waited(pcfg, waiting_since)
                if waiting_since is None:
                    return pauses, Ended.STOPPED, judged
    except KeyboardInterrupt:
        return pauses, Ended.INTERRUPTED, judged
    return pauses, Ended.READ, judged


# enough of a frame file for its JPEG frame header or PNG IHDR, past most EXIF blocks
HEADER_BYTES = 65536


def mixed_sizes(paths: list[Path], prints: list[str | None]) -> list[str]:
    """One line per print of the recording whose frames are not all of one size, as the
    trainer says it: a print is judged against its own start, so another camera or setting
    within it looks like a change (an alert that says nothing of the model). Read from the
    files' headers, nothing decoded; a file without one is left to the replay to skip."""
    by_print: dict[str, Counter[tuple[int, int]]] = {}
    for path, name in zip(paths, prints, strict=True):
        try:
            with open(path, "rb") as f:
                size = image_size(f.read(HEADER_BYTES))
        except (OSError, BadFrame):
            continue
        by_print.setdefault(name or "", Counter())[size] += 1
    return frames_contract.mixed_sizes_said(by_print)


def replay(
    pcfg: PrinterConfig,
    bundle: Bundle,
    frames: Path,
    out: Path,
    *,
    simulated: bool,
    keep_incidents: int,
    kept: bool,
) -> int:
    """Step the printer's watcher over the recording; one JSON line per frame and event."""
    # the printer's own camera settings (its limits on frame size and bytes), the recording
    # as its source: frames the daemon would skip are skipped here too
    # the whole path: a folder named "0" is not the first USB camera
    camera = CameraConfig.model_validate(
        {**pcfg.camera.model_dump(), "source": str(frames.resolve())}
    )
    recording = pcfg.model_copy(update={"camera": camera})
    # The simulated print is named after the recording, so the lines say what was replayed.
    printer = ResumingPrinter(job=frames.name) if simulated else None
    alerts = Notifier(
        MqttConfig(), StorageConfig(dir=out, keep_incidents=keep_incidents), [pcfg.name]
    )
    clock = VirtualClock(pcfg.camera.interval_s)
    watcher = build_watcher(recording, bundle, alerts, printer=printer, clock=clock)
    # A folder may hold several prints (``collect`` keeps a printer's prints together): each
    # starts as a new job of the simulated printer, so it is judged against its own start.
    paths: list[Path] = list(getattr(watcher.camera, "paths", []))
    prints = [frames_contract.parse(p).print for p in paths]
    for line in mixed_sizes(paths, prints):
        print(f"{frames}: {line}", file=sys.stderr)
    alerts.start()
    try:
        pauses, ended, judged = _step_through(watcher, printer, prints, clock, pcfg, frames)
    finally:
        watcher.close()
        alerts.stop()
    if ended is Ended.READ and not judged:
        # not a quiet print: no recording at all, or none of it the model could judge
        if watcher.model_failure:
            raise UsageError(
                f"--frames {frames}: no frame could be judged: {watcher.model_failure}"
            )
        why = (
            getattr(watcher.camera, "last_error", "") or "a damaged file, or not an image or video"
        )
        raise UsageError(f"--frames {frames}: no frame could be read from it ({why})")
    where = incidents_root(out) / pcfg.name
    summary: dict[str, Any] = {"event": "summary", "frames": clock.frame, "alerts": pauses}
    if ended is Ended.INTERRUPTED:
        summary["interrupted"] = True
    unsaved = alerts.store.unsaved if kept else 0
    if kept:
        summary["incidents"] = str(where)
        summary["not_saved"] = unsaved
    emit(summary)
    said = (
        f"; incidents in {where}" if kept else " (incidents not kept: give --out DIR to keep them)"
    )
    if unsaved:  # a full or read-only disk: said, not claimed as kept
        said = f"; {unsaved} of them could not be saved in {where} (see the log above)"
    done = "replay interrupted after" if ended is Ended.INTERRUPTED else "replayed"
    bad = watcher.camera.stats.bad_frames
    skipped = f" ({bad} unreadable, skipped)" if bad else ""
    print(f"{done} {clock.frame} frames{skipped}: {pauses} alert(s){said}", file=sys.stderr)
    if ended is Ended.INTERRUPTED:
        return 130
    return 1 if unsaved else 0
