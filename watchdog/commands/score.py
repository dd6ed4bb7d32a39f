"""`python -m watchdog score --model BUNDLE IMAGE...`: one JSON line per image (no TensorFlow).

Scores still images through the daemon's own FrameScorer, so a user can check a bundle, or
what the daemon would have said about a saved frame, before trusting it with a print. An
unreadable file gets one error line and the others are still scored; the exit code is 1 then.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np

from watchdog.commands import number
from watchdog.detection.bundle import Adaptation, Bundle, default_bundle_path, encode_jpeg
from watchdog.detection.detector import Detector
from watchdog.detection.model import FrameScorer
from watchdog.devices.capture import frame_size_needed
from watchdog.durable import replace_file
from watchdog.errors import UsageError
from watchdog.image_files import UnreadableFrame, read_frame_file

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="score image files with a model bundle (one JSON line each)")
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="BUNDLE_DIR",
        help="bundle folder with model.tflite and model.json (default: the bundled model)",
    )
    p.add_argument(
        "--heatmap",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write a heatmap overlay JPEG per image into DIR (<name>.heatmap.jpg)",
    )
    p.add_argument(
        "--threads",
        type=number(int, 1, 16),
        default=1,
        help="TFLite interpreter threads, 1 to 16 (default 1)",
    )
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="JPEG or PNG files")
    p.set_defaults(func=main)


def read_image(path: Path, need: tuple[int, int] | None = None) -> np.ndarray:
    """An image file as OpenCV gives it (grey, BGR or BGRA), at the size the daemon decodes it
    at (``need``: ``read_frame_file``); UsageError naming the file otherwise."""
    try:
        return read_frame_file(path, need)
    except UnreadableFrame as exc:
        raise UsageError(str(exc)) from None


def _heatmap_path(folder: Path, image: Path, used: set[Path]) -> Path:
    """``<stem>.heatmap.jpg``: named as no camera names a frame, so that a file already there
    is an earlier heatmap, not a photo of the owner's (``<stem>.jpg`` replaced any)."""
    out = folder / f"{image.stem}.heatmap.jpg"
    n = 1
    while out in used:
        n += 1
        out = folder / f"{image.stem}-{n}.heatmap.jpg"
    used.add(out)
    return out


def _refuse_overwriting_inputs(folder: Path, images: list[Path]) -> None:
    """UsageError when a heatmap would be written over one of the images scored (``--heatmap``
    the folder the frames are in): the owner's frames are never replaced."""
    inputs = {p.resolve() for p in images}
    tried: set[Path] = set()
    for image in images:
        out = _heatmap_path(folder, image, tried)
        if out.resolve() in inputs:
            raise UsageError(
                f"--heatmap {folder}: its heatmap would be written over the image {out}; "
                "give another folder"
            )


def _write_whole(path: Path, data: bytes) -> None:
    """``data`` at ``path``, whole or not at all (a full disk leaves no cut heatmap that looks
    finished); UsageError naming the file."""
    try:
        replace_file(path, data, mode=0o666)  # the owner's umask decides, as for any file
    except OSError as exc:
        raise UsageError(f"--heatmap {path}: cannot write ({exc.strerror or exc})") from None


def main(args: argparse.Namespace) -> int:
    bundle = Bundle.load(args.model if args.model is not None else default_bundle_path())
    # Still images, each on its own: the absolute score (no print to learn a baseline from).
    absolute = dataclasses.replace(bundle.meta, adaptation=Adaptation())
    detector = Detector(absolute, FrameScorer(bundle, num_threads=max(1, args.threads)).error_map)
    if args.heatmap is not None:
        try:
            args.heatmap.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(
                f"--heatmap {args.heatmap}: cannot create folder ({exc.strerror or exc})"
            ) from exc
    used: set[Path] = set()
    if args.heatmap is not None:
        _refuse_overwriting_inputs(args.heatmap, args.images)
    bad: list[Path] = []
    for path in args.images:
        try:
            frame = read_image(path, frame_size_needed(bundle.meta.preprocess))
        except UsageError as exc:  # one bad file is reported; the others are still scored
            print(f"error: {exc}", file=sys.stderr)
            bad.append(path)
            continue
        result = detector.observe(frame)
        line = {
            "file": str(path),
            "score": round(result.score, 8),
            "threshold": round(result.threshold, 8),
            "anomalous": bool(result.anomalous),
        }
        if args.heatmap is not None:
            out = _heatmap_path(args.heatmap, path, used)
            _write_whole(out, encode_jpeg(detector.heatmap(frame, result)))
            line["heatmap"] = str(out)
        print(json.dumps(line), flush=True)
    if bad:
        print(
            f"error: {len(bad)} of {len(args.images)} image(s) could not be read: "
            f"{', '.join(str(p) for p in bad)}",
            file=sys.stderr,
        )
        return 1
    return 0
