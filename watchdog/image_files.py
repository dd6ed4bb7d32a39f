"""Reading recorded frames from disk: one reader for the trainer, ``calibrate`` and ``score``.

A folder of frames is the user's, and may hold anything: an empty or cut-off file, a PNG
whose header declares 50000x50000 pixels (OpenCV raises for it, or would allocate gigabytes),
a name that is not UTF-8 (``cv2.imread`` of such a name crashes the process). The bytes are
read by Python and the header checked before OpenCV decodes anything, so each bad file is one
``UnreadableFrame`` naming it, never a traceback.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np

from watchdog.devices.capture import (
    DECODE_FLAGS,
    BadFrame,
    check_decodable,
    check_scans,
    ends_jpeg,
    fit_to_need,
    jpeg_reduction,
    read_header,
    stops_mid_scan,
)

MAX_FILE_PIXELS = 50_000_000  # larger than any camera's frame (an 8K one is 33 MP)
MAX_FILE_BYTES = 100 * 2**20  # an 8K PNG is under half of it


class UnreadableFrame(ValueError):
    """An image file that cannot be used as a frame; the message names the file and why."""


def read_frame_file(path: Path, need: tuple[int, int] | None = None) -> np.ndarray:
    """The image as OpenCV gives it (grey, BGR or BGRA, any depth). ``need`` (the model's
    ``frame_size_needed``): a frame much larger than it is read at the size the daemon's
    cameras decode it at (``decode_image``), so that a model is fitted, calibrated and judged
    on the pixels the daemon will score, whatever the recording's size."""
    return read_sized_frame_file(path, need)[0]


def read_sized_frame_file(
    path: Path, need: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """``read_frame_file``'s image, and the file's own size (width, height): a frame read
    smaller still tells which camera setting recorded it."""
    shown = str(path).encode("utf-8", "backslashreplace").decode()
    data = _file_bytes(path, shown)
    try:
        header = read_header(data)
    except BadFrame as exc:
        raise UnreadableFrame(f"{shown}: {exc}") from None
    if header.width * header.height > MAX_FILE_PIXELS:
        raise UnreadableFrame(
            f"{shown}: declares {header.width}x{header.height} pixels, more than a frame "
            f"({MAX_FILE_PIXELS} at most)"
        )
    if header.kind == "jpeg" and not ends_jpeg(data):
        # OpenCV decodes a cut-off JPEG silently, its missing rows grey
        raise UnreadableFrame(f"{shown}: truncated JPEG (no end-of-image marker)")
    factor = 1
    try:
        if need is not None:  # read for a model: refused where the daemon's cameras refuse it
            check_decodable(header, need)
        check_scans(data, header)
        if header.kind == "jpeg" and need is not None:
            factor = jpeg_reduction(data, header, need)
        # whole, as it always was; smaller, as the daemon's camera decodes it
        flags = (
            cv2.IMREAD_UNCHANGED
            if factor == 1
            else DECODE_FLAGS[factor] | cv2.IMREAD_IGNORE_ORIENTATION
        )
        img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except BadFrame as exc:
        raise UnreadableFrame(f"{shown}: {exc}") from None
    except cv2.error:
        img = None
    if img is None or img.size == 0:
        raise UnreadableFrame(f"{shown}: not a readable JPEG or PNG image")
    if header.kind != "jpeg":
        img = fit_to_need(img, need)  # decoded whole: brought to a JPEG's decoded size
    if header.kind == "jpeg" and stops_mid_scan(img, max(1, header.mcu // factor)):
        # refused by the cameras' reader too: one frames contract for the daemon, the trainer,
        # calibrate and score (a trainer fitted on such grey-filled frames learnt them normal)
        raise UnreadableFrame(
            f"{shown}: truncated JPEG (its data stops in the middle of the picture)"
        )
    return img, (header.width, header.height)


def _file_bytes(path: Path, shown: str) -> bytes:
    """The file's bytes, read no further than a frame could be; UnreadableFrame otherwise."""
    try:
        # a FIFO or a device would block or never end; a video given by mistake is read no
        # further than a frame could be
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise UnreadableFrame(f"{shown}: not a regular file")
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UnreadableFrame(f"{shown}: cannot read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise UnreadableFrame(
            f"{shown}: more than {MAX_FILE_BYTES // 2**20} MB, more than a frame (a video?)"
        )
    if not data:
        raise UnreadableFrame(f"{shown}: empty file")
    return data


def read_bgr_file(path: Path, need: tuple[int, int] | None = None) -> np.ndarray:
    """The image as 3-channel BGR, as the model's preprocessing takes it (the benchmarks'
    reader: the same checks as the trainer's; ``need`` as ``read_frame_file``'s)."""
    from watchdog.detection.bundle import to_bgr

    return to_bgr(read_frame_file(path, need))
