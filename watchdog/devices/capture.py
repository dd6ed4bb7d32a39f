"""Camera sources behind one small interface: ``read()`` gives a BGR frame or None.

The daemon loop calls::

    cam = open_camera(printer.camera, stop=stop_event, name=printer.name)
    frame = cam.read()      # np.ndarray (H, W, 3) BGR uint8, or None: no frame now
    cam.online, cam.last_error, cam.stats.frames / bad_frames / errors
    cam.close()

``read()`` never raises and never sleeps through a backoff: a camera that fails goes
offline, and is retried after 1 s, 2 s, 4 s ... up to 60 s; until then ``read()`` returns None
at once. Offline/online changes are logged once each, bad frames once per run, never per frame.

Sources, chosen from ``CameraConfig.source``:

- ``0`` / ``"/dev/video0"``: a V4L2 device (``cv2.VideoCapture``, grab thread);
- ``rtsp://...``: an RTSP stream (``cv2.VideoCapture`` with FFmpeg over TCP, grab thread);
- ``http://...?action=stream``, ``*.mjpg`` or any http(s) URL answering
  ``multipart/x-mixed-replace``: an MJPEG stream (mjpg-streamer, crowsnest, ustreamer). A
  thread reads the parts and keeps only the newest one's bytes; read() decodes it, so a
  30 fps stream read every 10 s costs almost nothing and is never seconds stale;
- any other ``http(s)://`` URL: a snapshot, fetched per ``read()``;
- a folder: its .jpg/.jpeg/.png frames print by print, each in frame order (the frames
  contract: `scratch_2.jpg` is frame 2 of print `scratch`), others in natural name order;
- any other file: a video (``cv2.VideoCapture``).

Everything from the network is size-limited before decoding: at most ``max_bytes`` per
snapshot or MJPEG part are read, HTML is refused, and the JPEG/PNG header's dimensions are
checked against ``max_pixels`` before anything is decoded (decompression bombs are refused).
A network or USB camera that serves the very same picture for ``frozen_after_s`` is
offline (``frozen.py``): a frozen camera, or a streamer's stand-in picture once its USB camera
is gone. An http camera's bytes are compared, an RTSP or USB camera's decoded pixels.

Folders and videos are finite (``replay``, ``demo``): they do not loop, and ``exhausted``
becomes True after the last frame. Every frame is validated: grey and BGRA become BGR
(``watchdog.detection.bundle.to_bgr``); empty, truncated, undecodable or too large frames give None and
count in ``stats.bad_frames``. RTSP and V4L2 frames are decoded by OpenCV itself, so for them
``max_pixels`` is checked after decoding.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl, urlsplit

import cv2
import numpy as np
import urllib3

from watchdog import frames as frames_contract
from watchdog.camera_sources import SourceKind, address_without_scheme, source_kind
from watchdog.config import CameraConfig
from watchdog.detection.bundle import Preprocess, to_bgr
from watchdog.devices.frozen import FrozenPicture, frozen_message
from watchdog.devices.http_client import (
    UNTRUSTED_CERTIFICATE,
    Answer,
    BadUrl,
    Deadline,
    HttpClient,
    TooManyRedirects,
    Unreached,
    connection_cause,
    timed_out,
)
from watchdog.errors import UsageError
from watchdog.frame_gate import FrameGate
from watchdog.redact import one_line, redact_source, redact_url, secret_filter

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
BAD_RUN_OFFLINE = 5  # this many bad frames in a row from a network camera count as offline
BAD_LOG_INTERVAL_S = 60.0  # a bad frame is logged at most once a minute
# A camera that drops this often (a stream a proxy cuts, an ESP32-CAM) is said to keep
# dropping, once per FLAP_LOG_S, not "offline" and "back online" at each reconnection (a
# stream ending every second wrote 145 lines in 90 s); steady again once online this long.
FLAP_DROPS, FLAP_WINDOW_S, FLAP_LOG_S, FLAP_STEADY_S = 3, 600.0, 600.0, 300.0
FLAP_OUTAGE_S = 60.0  # one that keeps dropping, offline this long: an outage, said as one
# FFmpeg may hand over flat grey frames before an RTSP stream's first whole picture, and a
# USB camera black ones while it wakes: flat frames this long after connecting are read past
STAND_IN_S = 2.0
# A stream reader's first connection may be refused this long, tried again every
# START_RETRY_S, before the camera counts as offline: a camera that serves one reader at a
# time (a USB device, an ESP32-CAM) sees that the previous reader (a reload's old watcher, the
# daemon before a restart, the request that found the stream) has gone only when its next
# frame fails to send.
START_GRACE_S = 2.0
START_RETRY_S = 0.2
_CHUNK = 64 * 1024
# A body arriving in pieces of under _CRUMB_BYTES on average, _CRUMBS at a time, is refused:
# each piece costs a turn of Python, and an endless reply of 1-byte chunks kept a core busy
# for each attempt's whole camera.timeout_s. A camera's pieces are a network packet or more.
_CRUMBS = 4096
_CRUMB_BYTES = 64


class CameraSourceError(UsageError):
    """A camera source that can never work (missing file, unreadable video): one line.
    ``problem`` is the line without the source, for a command that names it its own way
    (``replay --frames``)."""

    def __init__(self, source: object, problem: str, where: str = "camera source") -> None:
        super().__init__(f"{where} {redact_source(source)}: {problem}")
        self.source, self.problem = source, problem

    def at(self, where: str) -> CameraSourceError:
        """The same error named after the config key it came from (``config.yaml:
        printers.0.camera.source:``), for the owner to find what to fix."""
        return CameraSourceError(self.source, self.problem, f"{where}:")


class BadFrame(Exception):
    """The camera answered, but with something that is not a usable frame."""


class SourceDown(Exception):
    """The camera cannot be reached or stopped sending; ``busy``: it said it serves another
    reader (HTTP 503, a device held open), which a first contact tries again (START_GRACE_S)."""

    def __init__(self, message: str, busy: bool = False) -> None:
        super().__init__(message)
        self.busy = busy


def _http_refusal(answer: Answer, configured: str) -> SourceDown:
    """The camera's refusal, naming the host that refused (after a redirect, not the one
    configured; never a password) and what a refused login means."""
    status, resp = answer.response.status, answer.response
    said = f"HTTP {status} {resp.reason or ''}".strip()
    host = url_host(answer.url)
    if status in (401, 403) and answer.authenticated:
        said += ": the camera refused its user name or password"
    elif status == 401 and host != url_host(configured):
        said += (
            ": it asks for a user name and password, which never follow a redirect to "
            "another host: give its own address, with them, as the camera's URL"
        )
    elif status == 401:
        said += (
            ": the camera asks for a user name and password; give them in its URL, before the host"
        )
    return SourceDown(f"{host}: {said}", busy=status == 503)


@dataclass
class CameraStats:
    """Counters since the camera was opened (the daemon turns them into metrics)."""

    frames: int = 0
    bad_frames: int = 0
    errors: int = 0


@runtime_checkable
class Camera(Protocol):
    """What the daemon needs from a camera."""

    @property
    def online(self) -> bool: ...  # False while the source is unreachable (in backoff)

    @property
    def last_error(self) -> str: ...  # the last error or bad frame, one line, no secrets

    @property
    def stats(self) -> CameraStats: ...

    @property
    def frozen(self) -> FrozenPicture: ...  # how long it has served one picture

    @property
    def exhausted(
        self,
    ) -> bool: ...  # folders and video files: True after the last frame (others: always False)

    def read(self) -> np.ndarray | None:
        """A BGR uint8 frame, or None (no frame now); never raises."""
        ...

    def close(self) -> None:
        """Release the device or connection and stop any thread."""
        ...


# --------------------------------------------------------------------------- decoding


PNG_MAX_CHUNKS = 20_000  # a 6 MB picture in libpng's 8 KB chunks is 750
FULL_DECODE_MAX_PIXELS = (
    2_100_000  # PNG and progressive JPEG are decoded whole: about 1920x1080 at most
)
DECODE_MARGIN = (
    4  # reduced JPEG decoding keeps at least 4 frame pixels per model-input pixel, each way
)
# where the margin would leave a frame larger than this (a small region on a 16 MP camera
# takes it whole: 48 MB a copy), it gives way, down to one frame pixel per model pixel
MARGIN_MAX_PIXELS = 2 * FULL_DECODE_MAX_PIXELS
# longer than 4 times its other side (32:9 is 3.6) is no camera's picture: past the decoding
# budget it loses the margin, or is refused
ODD_ASPECT = 4
MAX_REDIRECTS = 5
_REDIRECT_LOOP = (
    f"more than {MAX_REDIRECTS} redirects (a redirect loop?); give the camera's final URL"
)
_FLAT_TOLERANCE = 2  # colour steps within a "flat" block (YCbCr → BGR rounding, chroma upsampling)
DECODE_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def url_host(url: str) -> str:
    """host[:port] of a URL (never its user, password or query), to name a camera in errors."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # out of range or not a number: the host alone names it
        port = None
    return f"{parts.hostname or '?'}:{port}" if port else (parts.hostname or "?")


def connection_problem(url: str, exc: BaseException) -> str:
    """Why an http(s) camera could not be reached, naming its host: DNS, refused, timeout, dropped."""
    cause = connection_cause(exc, "camera") or "connection failed or dropped"
    if cause == UNTRUSTED_CERTIFICATE:
        cause += "; set camera.ca_file to the CA that signed it"
    return f"cannot connect to {url_host(url)}: {cause}"


def _verify(cfg: CameraConfig) -> bool | str:
    """TLS verification of an https camera: the system's CAs, or camera.ca_file."""
    return str(cfg.ca_file) if cfg.ca_file is not None else True


@dataclass(frozen=True)
class ImageHeader:
    """What the first bytes of a JPEG or PNG say, read without decoding anything."""

    kind: str  # "jpeg" or "png"
    width: int
    height: int
    bit_depth: int = 8
    # JPEG: decoded through a whole-image coefficient buffer (progressive, or scans of fewer
    # components than the frame)
    progressive: bool = False
    components: int = 3  # JPEG: colour components of the frame
    mcu: int = 8  # JPEG: pixels per side of a minimum coded unit (8 or 16)
    blocks: int = 0  # JPEG: 8x8 blocks of all components (each costs at least one bit of scan data)
    scan_start: int = 0  # JPEG: offset of the first byte after the first start-of-scan header


def _start_of_frame(data: bytes, i: int, marker: int) -> ImageHeader:
    """The JPEG frame header (SOFn) at ``i``: size, precision, sampling, block count."""
    height, width = struct.unpack(">HH", data[i + 5 : i + 9])
    count = data[i + 9]
    comps = [
        (data[j + 1] >> 4, data[j + 1] & 0x0F)
        for j in range(i + 10, min(i + 10 + 3 * count, len(data)), 3)
    ]
    hmax = max((h for h, _ in comps), default=1) or 1
    vmax = max((v for _, v in comps), default=1) or 1
    blocks = sum(
        math.ceil(width * h / hmax / 8) * math.ceil(height * v / vmax / 8) for h, v in comps
    )
    return ImageHeader(
        "jpeg",
        width,
        height,
        bit_depth=data[i + 4],
        progressive=marker in (0xC2, 0xC6, 0xCA, 0xCE),
        mcu=8 * max(hmax, vmax),
        blocks=blocks,
        components=count,
    )


# A camera's JPEG header holds a few dozen markers (tables, EXIF, an ICC profile in pieces);
# a body of thousands of empty ones is read in Python a marker at a time, holding the frame
# gate every printer shares.
MAX_HEADER_MARKERS = 1000
_NOT_FILL = re.compile(rb"[^\xff]")


# A progressive JPEG has about ten scans; each one is decoded over the whole picture, so a
# body of many tiny ones keeps the decoder busy for minutes under the shared frame gate.
MAX_JPEG_SCANS = 100


def check_scans(data: bytes, header: ImageHeader) -> None:
    """BadFrame for a JPEG of more scans than a camera makes (its header alone is checked by
    ``read_header``: the scans follow it)."""
    if header.kind == "jpeg":
        # 0xFF in a scan's data is always followed by 0x00 or a restart marker: FF DA is a scan
        scans = data.count(b"\xff\xda")
        if scans > MAX_JPEG_SCANS:
            raise BadFrame(f"JPEG of {scans} scans (a camera's has at most a dozen)")


def read_header(data: bytes) -> ImageHeader:
    """The JPEG SOF/SOS markers or the PNG IHDR, without decoding; BadFrame if neither."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 26 or data[12:16] != b"IHDR":
            raise BadFrame("PNG without IHDR header")
        width, height = struct.unpack(">II", data[16:24])
        return ImageHeader("png", width, height, bit_depth=data[24])
    if data[:2] != b"\xff\xd8":
        raise BadFrame("not a JPEG or PNG image")
    return _jpeg_header(data)


def png_pixels_only(data: bytes) -> bytes:
    """A PNG without its ancillary chunks (colour profile, text, time...) save transparency:
    libpng writes a line to stderr for each odd one (a camera's bad colour profile was a line
    in the journal every frame), and OpenCV makes no pixel of them."""
    kept, i, dropped = [data[:8]], 8, False
    for _ in range(PNG_MAX_CHUNKS + 1):
        if i + 12 > len(data):
            break
        end = i + 12 + struct.unpack(">I", data[i : i + 4])[0]
        kind = data[i + 4 : i + 8]
        if end > len(data):
            break
        if kind[:1].isupper() or kind == b"tRNS":
            kept.append(data[i:end])
        else:
            dropped = True
        i = end
    else:  # each chunk a turn of Python (and of libpng)
        raise BadFrame(f"PNG in more than {PNG_MAX_CHUNKS} chunks")
    return b"".join([*kept, data[i:]]) if dropped else data


def _past_empty_marker(data: bytes, i: int) -> int | None:
    """Where the next marker starts when the one at ``i`` has no content: fill bytes (skipped
    in one search: a body of them cost seconds) and markers without a length; None otherwise."""
    marker = data[i + 1]
    if marker == 0xFF:
        more = _NOT_FILL.search(data, i + 1)
        return more.start() - 1 if more else len(data)
    if marker == 0x01 or 0xD0 <= marker <= 0xD8:
        return i + 2
    return None


def _jpeg_header(data: bytes) -> ImageHeader:
    frame: ImageHeader | None = None
    i = 2
    for _ in range(MAX_HEADER_MARKERS):
        if i + 4 > len(data):
            break
        if data[i] != 0xFF:
            raise BadFrame("corrupt JPEG header")
        if (after := _past_empty_marker(data, i)) is not None:
            i = after
            continue
        marker = data[i + 1]
        if marker == 0xD9:
            break  # end of image before any scan
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker == 0xDA:
            if frame is None:
                break  # start of scan before any frame header
            # a first scan of fewer components than the frame: libjpeg buffers the whole
            # image's coefficients (as for a progressive JPEG), whatever the reduced size
            partial = i + 4 < len(data) and data[i + 4] < frame.components
            return replace(
                frame, scan_start=i + 2 + length, progressive=frame.progressive or partial
            )
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 10 > len(data):
                break
            frame = _start_of_frame(data, i, marker)
        i += 2 + length
    else:
        raise BadFrame(f"JPEG header of more than {MAX_HEADER_MARKERS} markers")
    if frame is None:
        raise BadFrame("JPEG without frame header (truncated)")
    raise BadFrame("JPEG without scan data (truncated)")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG SOF marker or a PNG IHDR, without decoding; BadFrame if neither."""
    header = read_header(data)
    return header.width, header.height


def frame_size_needed(pre: Preprocess) -> tuple[int, int]:
    """The smallest frame (width, height) whose region of interest still covers the model input pixel for pixel."""
    x0, y0, x1, y1 = pre.roi
    return math.ceil(pre.width / (x1 - x0)), math.ceil(pre.height / (y1 - y0))


def margin_reduction(width: int, height: int, need: tuple[int, int]) -> int:
    """How much smaller (1, 2, 4 or 8) a picture may be while staying DECODE_MARGIN times ``need``."""
    return next(
        (
            f
            for f in (8, 4, 2)
            if width // f >= DECODE_MARGIN * need[0] and height // f >= DECODE_MARGIN * need[1]
        ),
        1,
    )


def reduction(width: int, height: int, need: tuple[int, int] | None) -> int:
    """How much smaller (1, 2, 4 or 8) a JPEG may be decoded while staying DECODE_MARGIN times
    ``need``; past MARGIN_MAX_PIXELS, the least further reduction that brings it within while
    still covering ``need`` pixel for pixel."""
    if need is None:
        return 1
    factor = margin_reduction(width, height, need)
    for larger in (2, 4, 8):
        if (width // factor) * (height // factor) <= MARGIN_MAX_PIXELS:
            break
        if larger > factor and width // larger >= need[0] and height // larger >= need[1]:
            factor = larger
    return factor


def fit_to_need(frame: np.ndarray, need: tuple[int, int] | None) -> np.ndarray:
    """A frame much larger than the model needs, brought to the size a JPEG of its size is
    decoded at (``picture_reduction``): every source's frames are then alike, and the
    heatmap, the incident frame and the page's copies made from a 4K stream's frame cost a
    sixteenth. BadFrame for a shape no reduction brings within reach, as for a JPEG."""
    height, width = frame.shape[:2]
    factor = picture_reduction(width, height, need, "frame")
    if factor == 1:
        return frame
    size = (-(-width // factor), -(-height // factor))  # rounded up, as libjpeg scales
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def ends_jpeg(data: bytes) -> bool:
    """Whether a JPEG's bytes end with its end-of-image marker: after it only padding (line
    ends, zeros, spaces, as some cameras and file copies add) or a few bytes of trailer."""
    return b"\xff\xd9" in data.rstrip(b"\r\n\x00 ")[-64:]


def stops_mid_scan(frame: np.ndarray, mcu: int) -> bool:
    """True when the decoded JPEG ends in the flat run libjpeg fills in after its data ran out.

    A JPEG cut short and closed with FFD9 decodes without an error: every block after the cut
    repeats the last DC value, so the picture ends in one flat colour starting in the middle of
    a row of coded units. A frame that is one colour all over (lights off) or whose flat part
    starts at the left edge (a black bar) is not refused, nor one whose flat end is black or
    white: a camera's picture is only that flat where it is clipped (a dark floor, light fading
    out, an overexposed corner), while the colour a cut leaves is whatever its last block had.
    A cut whose last block was black or white passes as a picture with a dark or bright end.
    Two whole rows of units or more at the bottom in one unclipped colour are a cut too,
    wherever the flat run seems to start (measured: 0 of 1,247 Kaggle printer frames, decoded
    as sent and re-encoded at quality 50, refused; 60 of 60 cut demo frames refused).
    """
    h, w = frame.shape[:2]
    rows, cols = h // mcu, w // mcu
    if rows < 2 or cols < 2 or frame.ndim != 3:
        return False
    last = frame[(rows - 1) * mcu : rows * mcu, : cols * mcu]
    color = last[0, 0].astype(np.int16)
    if int(color.max()) <= _FLAT_TOLERANCE or int(color.min()) >= 255 - _FLAT_TOLERANCE:
        return False  # clipped black or white: what a camera's own flat areas are
    if int(np.abs(last.astype(np.int16) - color).max()) > _FLAT_TOLERANCE:
        return False  # cheap exit for almost every frame: its last row of units is not flat
    # per unit on the frame's own bytes (a whole-frame int16 copy was twice the frame again)
    grid = frame[: rows * mcu, : cols * mcu].reshape(rows, mcu, cols, mcu, frame.shape[2])
    lo = grid.min(axis=(1, 3)).astype(np.int16)
    hi = grid.max(axis=(1, 3)).astype(np.int16)
    flat = ((hi - lo).max(axis=-1) <= _FLAT_TOLERANCE) & (
        np.abs(lo - color).max(axis=-1) <= _FLAT_TOLERANCE
    )
    not_flat = np.flatnonzero(~flat.ravel())
    if not_flat.size == 0:
        return False
    if (not_flat[-1] + 1) % cols:
        return True
    # The flat run starts at a row's start: a block or two of the garbage libjpeg decodes
    # just after the cut can land at the end of a row. Two whole rows of units or more in
    # the cut's one unclipped colour, across the full width, are no camera's picture.
    whole = flat.all(axis=1)[::-1]
    return bool(whole[:2].all())


def _check_size(header: ImageHeader, max_pixels: int, need: tuple[int, int] | None) -> None:
    """BadFrame for a picture whose declared size, depth or kind would cost too much decoded."""
    width, height = header.width, header.height
    if width <= 0 or height <= 0:
        raise BadFrame(f"image declares {width}x{height} pixels")
    if width * height > max_pixels:
        raise BadFrame(
            f"image declares {width}x{height} pixels, more than camera.max_pixels={max_pixels}"
        )
    check_decodable(header, need)


def check_decodable(header: ImageHeader, need: tuple[int, int] | None) -> None:
    """BadFrame for a picture no camera of the daemon decodes: deeper than 8 bits, or, for a
    model (``need``), one decoded whole (PNG, progressive JPEG) over FULL_DECODE_MAX_PIXELS.
    The files the trainer, ``calibrate`` and ``score`` read go through it too: one frames
    contract, so a recording trained on is one ``replay`` and the daemon can score."""
    width, height = header.width, header.height
    if header.bit_depth > 8:
        raise BadFrame(
            f"{header.bit_depth}-bit {header.kind.upper()}: only 8-bit images are decoded"
        )
    whole = header.kind == "png" or header.progressive
    if need is not None and whole and width * height > FULL_DECODE_MAX_PIXELS:
        kind = "PNG" if header.kind == "png" else "progressive or multi-scan JPEG"
        raise BadFrame(
            f"{width}x{height} {kind} is decoded whole: at most {FULL_DECODE_MAX_PIXELS} "
            "pixels; a baseline JPEG is decoded smaller"
        )


def jpeg_reduction(data: bytes, header: ImageHeader, need: tuple[int, int] | None) -> int:
    """How much smaller a whole, baseline JPEG is decoded (``reduction``, or more where that
    would still be over FULL_DECODE_MAX_PIXELS); BadFrame for one cut short, or one no
    reduction brings within that and the model's need."""
    width, height = header.width, header.height
    if not ends_jpeg(data):
        raise BadFrame("truncated JPEG (no end-of-image marker)")
    if (len(data) - header.scan_start) * 8 < header.blocks:
        raise BadFrame("truncated JPEG (scan data missing)")
    return picture_reduction(width, height, need, "JPEG")


def picture_reduction(width: int, height: int, need: tuple[int, int] | None, kind: str) -> int:
    """How much smaller a picture of this size is made for the model, whatever brought it (a
    JPEG decoded smaller, a video's frame shrunk): ``reduction``, or for a shape no camera
    has, as small as still covers ``need``; BadFrame where nothing brings it within
    FULL_DECODE_MAX_PIXELS."""
    if need is None or max(width, height) <= ODD_ASPECT * min(width, height):
        return reduction(width, height, need)  # a camera's shape: the margin, within reason
    factor = margin_reduction(width, height, need)
    if (width // factor) * (height // factor) <= FULL_DECODE_MAX_PIXELS:
        return factor
    # Too long and thin to keep the margin at a fraction of its size (8184x1023 decoded whole
    # cost 66 MB more than a normal frame, at half its size 2.1 MP to carry through the
    # watcher): decoded as small as still covers the model's input pixel for pixel, else
    # refused; no camera's picture is that shape.
    for larger in (8, 4, 2):  # the smallest picture that does: its heatmap and copies too
        w, h = width // larger, height // larger
        if larger > factor and w >= need[0] and h >= need[1] and w * h <= FULL_DECODE_MAX_PIXELS:
            return larger
    raise BadFrame(
        f"{width}x{height} {kind}: a picture of that shape cannot be made small enough for "
        f"the model (over {FULL_DECODE_MAX_PIXELS} pixels); set the camera to a usual size"
    )


def decode_image(data: bytes, max_pixels: int, need: tuple[int, int] | None = None) -> np.ndarray:
    """JPEG/PNG bytes → 8-bit BGR frame; everything that costs memory is checked before decoding.

    ``need`` (the daemon: ``frame_size_needed``): the frame size the model needs; a JPEG
    DECODE_MARGIN times larger is decoded at 1/2, 1/4 or 1/8 of its size (libjpeg's scaled
    IDCT: a 4000x4000 JPEG costs 8 MB instead of 94 MB), and images that can only be decoded
    whole (PNG, progressive JPEG) are limited to FULL_DECODE_MAX_PIXELS.
    """
    if not data:
        raise BadFrame("empty body")
    header = read_header(data)
    _check_size(header, max_pixels, need)
    check_scans(data, header)
    factor = jpeg_reduction(data, header, need) if header.kind == "jpeg" else 1
    if header.kind == "png":
        data = png_pixels_only(data)
    frame = cv2.imdecode(
        np.frombuffer(data, np.uint8), DECODE_FLAGS[factor] | cv2.IMREAD_IGNORE_ORIENTATION
    )
    if frame is None:
        raise BadFrame("undecodable image")
    if header.kind == "png":
        frame = fit_to_need(frame, need)  # decoded whole: brought to a JPEG's decoded size
    if header.kind == "jpeg" and stops_mid_scan(frame, max(1, header.mcu // factor)):
        raise BadFrame("truncated JPEG (its data stops in the middle of the picture)")
    return frame


def validate(frame: Any, max_pixels: int) -> np.ndarray:
    """Any decoded frame → BGR uint8 within the size limit, or BadFrame."""
    if frame is None or not isinstance(frame, np.ndarray) or frame.size == 0:
        raise BadFrame("empty frame")
    h, w = frame.shape[:2]
    if h * w > max_pixels:
        raise BadFrame(f"frame of {w}x{h} pixels, more than camera.max_pixels={max_pixels}")
    try:
        return to_bgr(frame)
    except ValueError as exc:
        raise BadFrame(str(exc)) from exc


def _declared_length(value: str) -> int | None:
    """A Content-Length header as a number, None when it is not a plain one (digits other
    than ASCII, or more than a byte count could ever need)."""
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 15 else None


def natural_key(name: str) -> list[Any]:
    """Sort key so that frame_9 comes before frame_10."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


# --------------------------------------------------------------------------- common behaviour


# the most of a camera's own words kept in its error (a header or reason phrase of any length)
SAID_CHARS = 300


def _said(message: str) -> str:
    """A camera's error as the owner reads it (log, page, phone): its login masked (its own
    words may echo it), its control characters written out (a reason phrase with escape codes
    reached phones raw), and cut to SAID_CHARS."""
    message = one_line(secret_filter.mask(message))
    return message if len(message) <= SAID_CHARS else message[: SAID_CHARS - 1] + "…"


class _BaseCamera:
    """Counters, online state, backoff and once-only logging shared by every source."""

    kind = "camera"
    bad_run_goes_offline = True  # a snapshot URL answering only junk is as good as offline

    def __init__(
        self,
        cfg: CameraConfig,
        label: str,
        stop: threading.Event | None,
        backoff: tuple[float, float],
    ) -> None:
        self.cfg = cfg
        self.label = label
        self.stats = CameraStats()
        self.online = False
        self.last_error = ""
        self.exhausted = False
        self.need: tuple[int, int] | None = None  # frame size the model needs (decode_image)
        self.gate: FrameGate | None = None  # entered before decoding (the daemon's watchers)
        self._stop = stop
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._min_backoff, self._max_backoff = backoff
        self._delay = self._min_backoff
        self._retry_at = 0.0
        self._bad_run = 0
        self._was_offline_logged = False
        self._bad_logged_at = -BAD_LOG_INTERVAL_S
        self._drops: deque[float] = deque(maxlen=FLAP_DROPS)  # when it last went offline
        self._flapping = False
        self._flap_logged_at = -FLAP_LOG_S
        self._flap_drops = 0  # since the last line said so
        self._up_since = 0.0
        self._offline_why = ""  # the cause the last "offline" line gave
        self._contacted = False  # it has answered once, or been found offline
        self.frozen = FrozenPicture(cfg.frozen_after_s, cfg.interval_s)

    def _halted(self) -> bool:
        return self._closed.is_set() or (self._stop is not None and self._stop.is_set())

    def _in_start_grace(self, since: float, busy: bool) -> bool:
        """A first contact refused as busy within START_GRACE_S of ``since``: tried again,
        not offline."""
        return (
            busy
            and not self._contacted
            # the last try starts in time to end (camera.timeout_s) before the first read's wait
            and time.monotonic() - since + START_RETRY_S < START_GRACE_S
            and not self._halted()
        )

    def _halt_wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking at once on close() or the stop event."""
        end = time.monotonic() + seconds
        while not self._halted():
            left = end - time.monotonic()
            if left <= 0:
                return
            self._closed.wait(min(left, 0.2))

    def _up(self, reset_backoff: bool = True) -> None:
        now = time.monotonic()
        with self._lock:
            self._bad_run = 0
            self._contacted = True
            if reset_backoff:  # one that keeps dropping is retried as soon as ever: watched
                self._delay = self._min_backoff
            came_back = not self.online
            if came_back:
                self.online, self._up_since = True, now
            steady = self._flapping and not came_back and now - self._up_since >= FLAP_STEADY_S
            if steady:
                self._flapping = False
                self._drops.clear()
        if steady:
            logger.info(
                "camera %s steady again: online for %.0f min", self.label, FLAP_STEADY_S / 60
            )
            self._was_offline_logged = False
        elif came_back and not self._flapping:  # a camera that keeps dropping: said together
            if self._was_offline_logged:
                logger.info("camera %s back online", self.label)
                self._was_offline_logged = False
            else:
                logger.info("camera %s online (%s)", self.label, self.kind)

    def _down(self, message: str) -> None:
        message = _said(message)
        with self._lock:
            self.stats.errors += 1
            self.last_error = message
            delay = self._delay
            self._retry_at = time.monotonic() + delay
            self._delay = min(self._delay * 2, self._max_backoff)
            was_online, self.online = self.online, False
            self._bad_run = 0
            self._contacted = True
            now = time.monotonic()
            if was_online:
                self._drops.append(now)
                self._flapping = (
                    len(self._drops) == FLAP_DROPS and now - self._drops[0] <= FLAP_WINDOW_S
                )
            # offline a while now, not back at once: an outage, said as one (and its end)
            outage = self._flapping and not was_online and now - self._drops[-1] >= FLAP_OUTAGE_S
            if outage:
                self._flapping = False
        if self._flapping:
            self._flap_drops += was_online
            if was_online and now - self._flap_logged_at >= FLAP_LOG_S:
                span = now - self._drops[0]  # seconds for a stream cut every second ("0 min")
                logger.warning(
                    "camera %s keeps going offline soon after it comes back (%d times in the "
                    "last %s; last: %s); said again every %.0f min while it goes on",
                    self.label,
                    max(self._flap_drops, FLAP_DROPS),
                    f"{span:.0f} s" if span < 90 else f"{span / 60:.0f} min",
                    message,
                    FLAP_LOG_S / 60,
                )
                self._flap_logged_at, self._flap_drops = now, 0
            self._was_offline_logged = True
        elif outage or was_online or not self._was_offline_logged:
            logger.warning(
                "camera %s offline: %s; retrying with backoff up to %.0f s",
                self.label,
                message,
                self._max_backoff,
            )
            self._was_offline_logged, self._offline_why = True, message

    def _bad(self, message: str) -> None:
        message = _said(message)
        with self._lock:
            self.stats.bad_frames += 1
            self.last_error = message
            self._bad_run += 1
            run = self._bad_run
        now = time.monotonic()
        # said offline already for it (in that line): each retry's bad frames are not said
        # again, a line every minute or two for as long as it sends junk; another cause is
        offline_said = not self.online and self._was_offline_logged and message in self._offline_why
        if run == 1 and now - self._bad_logged_at >= BAD_LOG_INTERVAL_S and not offline_said:
            self._bad_logged_at = now
            logger.warning(
                "camera %s: bad frame: %s (more are counted, not logged)", self.label, message
            )
        if self.bad_run_goes_offline and run >= BAD_RUN_OFFLINE:
            self._down(f"{run} bad frames in a row, last: {message}")
        elif run == BAD_RUN_OFFLINE:
            self._bad_run_seen()

    def _bad_run_seen(self) -> None:
        """BAD_RUN_OFFLINE bad frames in a row from a source that stays connected."""

    def _accept(self, frame: Any) -> np.ndarray | None:
        try:
            bgr = fit_to_need(validate(frame, self.cfg.max_pixels), self.need)
        except BadFrame as exc:
            self._bad(str(exc))
            return None
        return self._counted(bgr)

    def _counted(self, frame: np.ndarray) -> np.ndarray:
        """A frame accepted: counted, and the camera online."""
        with self._lock:
            self.stats.frames += 1
        self._up()
        return frame

    def read(self) -> np.ndarray | None:
        """A BGR frame or None; None at once while closed, stopped, exhausted or in backoff."""
        if self._halted() or self.exhausted or time.monotonic() < self._retry_at:
            return None
        try:
            raw = self._read_patiently()
        except (BadFrame, SourceDown) as exc:
            if self._halted():  # cut short by close() or the stop event: no camera's fault
                return None
            if isinstance(exc, BadFrame):
                self._bad(str(exc))
            else:
                self._down(str(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - the contract is "never raises": a bug must not stop the daemon
            logger.exception("camera %s: unexpected error", self.label)
            self._down(f"unexpected error: {type(exc).__name__}")
            return None
        if raw is None:
            return None
        return self._accept(raw)

    def _read_patiently(self) -> Any:
        """``_read_raw``; a first contact refused is tried again within START_GRACE_S."""
        started = time.monotonic()
        while True:
            try:
                return self._read_raw()
            except SourceDown as exc:
                if not self._in_start_grace(started, exc.busy):
                    raise
                self._halt_wait(START_RETRY_S)

    def _read_raw(self) -> Any:
        raise NotImplementedError

    def _enter_gate(self) -> None:
        if self.gate is not None:
            self.gate.enter()

    def _frozen_problem(self, frame: np.ndarray) -> str | None:
        """Why a camera's picture is not live (the same decoded pixels for
        camera.frozen_after_s), or None."""
        seconds = self.frozen.frozen_for(frame, time.monotonic())
        return None if seconds is None else frozen_message(seconds)

    def _decode(self, data: bytes) -> np.ndarray:
        """``decode_image`` for this camera, inside the frame gate (frame_gate.py)."""
        self._enter_gate()
        return decode_image(data, self.cfg.max_pixels, self.need)

    def close(self) -> None:
        self._closed.set()


# --------------------------------------------------------------------------- files


def recording_order(path: Path) -> tuple[list[Any], int, list[Any]]:
    """Sort key of a recording's frames: by print, then by frame number, as the trainer
    groups them (the frames contract); frames that name no print by their natural name. In
    plain name order the Kaggle set's ``scratch_2.jpg`` (print ``scratch``, frame 2) fell
    among ``scratch_2_<n>.jpg`` (print ``scratch_2``), and one print was replayed in pieces."""
    name = frames_contract.parse(path)
    if name.print is None:
        return natural_key(path.name), 0, []
    return natural_key(name.print), name.number, natural_key(path.name)


def _frames_in(folder: Path) -> Iterator[Path]:
    """The image files directly in ``folder``."""
    return (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _no_frames_in(path: Path) -> str:
    """Why a folder gives no frame, naming the subfolders that hold some: ``collect --out
    DIR`` saves each printer's frames in ``DIR/<printer>/``, and the owner gives ``DIR``."""
    said = f"no {'/'.join(IMAGE_SUFFIXES)} frames in this folder"
    holding = []
    for sub in sorted(path.iterdir()):
        try:
            if sub.is_dir() and any(_frames_in(sub)):
                holding.append(f"{sub.name}/")
        except OSError:
            continue  # a subfolder it cannot read holds none it could replay
    if not holding:
        return said
    shown = ", ".join(holding[:5]) + (", ..." if len(holding) > 5 else "")
    return f"{said}; frames are in {shown} inside it (collect keeps each printer's apart): give that folder"


class FolderCamera(_BaseCamera):
    """Frames from a folder, print by print in frame order (``recording_order``), once."""

    kind = "folder"
    bad_run_goes_offline = False  # local files: a bad file is skipped, never "offline"

    def __init__(
        self,
        cfg: CameraConfig,
        path: Path,
        label: str,
        stop: threading.Event | None,
        backoff: tuple[float, float],
    ) -> None:
        super().__init__(cfg, label, stop, backoff)
        self.paths = sorted(_frames_in(path), key=recording_order)
        if not self.paths:
            raise CameraSourceError(path, _no_frames_in(path))
        self._next = 0
        self.online = True
        self.current: Path | None = None  # the file the last read() came from

    def _read_raw(self) -> np.ndarray | None:
        if self._next >= len(self.paths):
            self.exhausted = True
            return None
        # ended at the next read, not with the last file: a last file that cannot be read is
        # a bad frame, skipped and said, as any other (as the end, it went unsaid)
        path = self.current = self.paths[self._next]
        self._next += 1
        limit = self.cfg.max_bytes
        try:
            with open(path, "rb") as f:  # the folder's files were regular ones when listed
                data = f.read(limit + 1)
        except OSError as exc:
            raise BadFrame(f"{path}: {exc.strerror or exc}") from exc
        if len(data) > limit:  # a video or a disk image among the frames: not held whole
            raise BadFrame(f"{path.name}: larger than camera.max_bytes={limit}")
        if not data:  # (what decode_image calls an "empty body": a camera's answer)
            raise BadFrame(f"{path.name}: empty file")
        try:
            return self._decode(data)
        except BadFrame as exc:
            raise BadFrame(f"{path.name}: {exc}") from exc


def carry_position(new: Camera, old: Camera) -> None:
    """A recording rebuilt by a reload (every settings save) goes on from where ``old`` was:
    it played again from its first frame mid-print, a print learnt as it goes carried over
    and judged against frames of its start, a recording read to its end played and alerted
    again. Live cameras have no position: nothing to carry."""
    if isinstance(new, FolderCamera) and isinstance(old, FolderCamera) and new.paths == old.paths:
        new._next, new.current, new.exhausted = old._next, old.current, old.exhausted
    elif isinstance(new, VideoFileCamera) and isinstance(old, VideoFileCamera):
        if old.exhausted:
            new.exhausted = True
            new._cap.release()
            return
        for _ in range(old._frames_read):  # grabbed, not decoded: a seek may land elsewhere
            if not new._cap.grab():
                break
        new._frames_read, new.current = old._frames_read, old.current


class VideoFileCamera(_BaseCamera):
    """Frames of a video file, once."""

    kind = "video file"
    bad_run_goes_offline = False  # local files: a bad file is skipped, never "offline"

    def __init__(
        self,
        cfg: CameraConfig,
        path: Path,
        label: str,
        stop: threading.Event | None,
        backoff: tuple[float, float],
    ) -> None:
        super().__init__(cfg, label, stop, backoff)
        self._cap = cv2.VideoCapture(str(path))
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraSourceError(
                path,
                "not a video this watchdog can read (damaged, or a format it lacks), nor a folder of frames",
            )
        w, h = (
            int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        if w * h > cfg.max_pixels:
            self._cap.release()
            raise CameraSourceError(
                path, f"{w}x{h} frames exceed camera.max_pixels={cfg.max_pixels}"
            )
        self.online = True
        self.frame_count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self._name, self._frames_read = path.name, 0
        # the last frame read, named as a folder's file would be: replay's lines say which
        # frame of the video each one is ("print.mp4#12", counted from 0)
        self.current: Path | None = None

    def _read_raw(self) -> np.ndarray | None:
        self._enter_gate()
        ok, frame = self._cap.read()
        if not ok:
            self.exhausted = True
            self._cap.release()
            return None
        self.current = Path(f"{self._name}#{self._frames_read}")
        self._frames_read += 1
        return frame

    def close(self) -> None:
        super().close()
        self._cap.release()


# --------------------------------------------------------------------------- HTTP snapshot


def _arriving(resp: urllib3.BaseHTTPResponse, url: str) -> Iterator[bytes]:
    """The body as it arrives, so limits and deadlines are checked per arrival.

    A read of a fixed size would wait for all of it: seconds of MJPEG frames, or forever from a
    server that drips bytes.
    """
    read1 = getattr(resp, "read1", None)  # urllib3 >= 2.3
    pieces = received = 0
    while True:
        data = (
            read1(_CHUNK, decode_content=True)
            if read1 is not None
            else resp.read(4096, decode_content=True)
        )
        if not data:
            return
        pieces += 1
        received += len(data)
        if pieces == _CRUMBS:
            if received < _CRUMBS * _CRUMB_BYTES:
                raise SourceDown(
                    f"{url_host(url)} sends its data a few bytes at a time ({received} bytes "
                    f"in {pieces} pieces)"
                )
            pieces = received = 0
        yield data


def _no_answer(url: str, timeout: float) -> SourceDown:
    return SourceDown(f"no answer from {url_host(url)} within {timeout:g} s (timed out)")


def _redirected_to(exc: BaseException) -> str | None:
    """The address a redirect led to, where reaching it failed (None: the camera's own)."""
    cause = exc.__cause__
    return cause.url if isinstance(cause, Unreached) else None


def _open_camera_url(http: HttpClient, url: str, timeout: float) -> Answer:
    """GET a camera URL: its answer, body unread; SourceDown in the user's words when the
    camera cannot be reached."""
    try:
        return http.open("GET", url, timeout=timeout)
    except TooManyRedirects as exc:
        raise SourceDown(_REDIRECT_LOOP) from exc
    except BadUrl as exc:
        raise SourceDown(f"{url_host(url)}: {exc}") from exc
    except Unreached as exc:  # named by the host a redirect led to: the camera's answered
        if timed_out(exc.cause):
            raise _no_answer(exc.url, timeout) from exc
        raise SourceDown(connection_problem(exc.url, exc.cause)) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        if timed_out(exc):
            raise _no_answer(url, timeout) from exc
        raise SourceDown(connection_problem(url, exc)) from exc


class _StreamDetected(Exception):
    """The 'snapshot' URL answered multipart/x-mixed-replace: it is an MJPEG stream."""


class SnapshotCamera(_BaseCamera):
    """One HTTP GET per read(), size-limited before decoding."""

    kind = "http snapshot"

    def __init__(
        self,
        cfg: CameraConfig,
        url: str,
        label: str,
        stop: threading.Event | None,
        backoff: tuple[float, float],
    ) -> None:
        super().__init__(cfg, label, stop, backoff)
        self.url = url
        self.stream_detected = False
        self._http = HttpClient(
            {"Accept": "image/jpeg, image/png;q=0.9, */*;q=0.1"},
            verify=_verify(cfg),
            max_redirects=MAX_REDIRECTS,
        )

    def _read_raw(self) -> np.ndarray | None:
        try:
            frame = self._decode(self._fetch())
            if (frozen := self._frozen_problem(frame)) is not None:
                raise SourceDown(frozen)
            return frame
        except _StreamDetected:
            self.stream_detected = True  # AutoHttpCamera switches to a StreamCamera
            return None

    def _fetch(self) -> bytes:
        """The snapshot's bytes, within camera.timeout_s from connecting to the last byte (a
        camera dripping its headers or body a byte at a time held the watcher for good)."""
        late = SourceDown(
            f"{url_host(self.url)}: the snapshot took longer than camera.timeout_s="
            f"{self.cfg.timeout_s:g}"
        )
        with self._http.deadline(self.cfg.timeout_s, self._stop) as deadline:
            try:
                body = self._fetch_within()
            except (SourceDown, BadFrame) as exc:
                if deadline.expired and (hop := _redirected_to(exc)):
                    raise _no_answer(hop, self.cfg.timeout_s) from None
                if deadline.expired:
                    raise late from None
                raise
            if deadline.expired:  # the socket shut at the deadline reads as the body's end
                raise late
            return body

    def _fetch_within(self) -> bytes:
        cfg = self.cfg
        answer = _open_camera_url(self._http, self.url, cfg.timeout_s)
        resp = answer.response
        try:
            if resp.status >= 400:
                raise _http_refusal(answer, self.url)
            said = resp.headers.get("Content-Type", "").split(";")[0].strip()[:80]
            ctype = said.lower()
            if ctype.startswith("multipart/x-mixed-replace"):
                raise _StreamDetected
            if ctype.startswith("text/") or "html" in ctype or "json" in ctype:
                hint = (
                    " (an mjpg-streamer page? use ?action=snapshot or ?action=stream)"
                    if "html" in ctype
                    else ""
                )
                raise BadFrame(f"answered {said}, not an image{hint}")
            length = _declared_length(resp.headers.get("Content-Length", ""))
            if length is not None and length > cfg.max_bytes:
                raise BadFrame(
                    f"body of {length} bytes, more than camera.max_bytes={cfg.max_bytes}"
                )
            body = bytearray()
            for chunk in _arriving(resp, self.url):
                body += chunk
                if len(body) > cfg.max_bytes:
                    raise BadFrame(f"body larger than camera.max_bytes={cfg.max_bytes}")
            return bytes(body)
        except urllib3.exceptions.ProtocolError as exc:
            raise BadFrame("body ended early (truncated)") from exc
        except (urllib3.exceptions.TimeoutError, TimeoutError) as exc:
            raise _no_answer(self.url, cfg.timeout_s) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SourceDown(connection_problem(self.url, exc)) from exc
        finally:
            resp.close()

    def close(self) -> None:
        super().close()
        self._http.close()


# --------------------------------------------------------------------------- streams and devices


class _ThreadedCamera(_BaseCamera):
    """A reader thread keeps up with the source so read() gets the newest frame, not a stale one.

    The thread connects, reads, and on failure goes offline and reconnects after the backoff;
    read() never waits through a backoff. close() or the stop event ends the thread. It starts
    on the first read, not when the camera is built: a reload builds the new watchers while the
    old ones still hold the camera, and a USB device or a camera that serves one stream at a
    time refuses a second reader (a "camera offline" at every settings save).
    """

    bad_run_goes_offline = False  # the thread knows best whether the source is connected

    def __init__(
        self,
        cfg: CameraConfig,
        label: str,
        stop: threading.Event | None,
        backoff: tuple[float, float],
        stats: CameraStats | None,
    ) -> None:
        super().__init__(cfg, label, stop, backoff)
        if stats is not None:
            self.stats = stats
        self._cond = threading.Condition()
        self._first_attempt = threading.Event()
        self._reconnect = threading.Event()  # set by read(): the reader connects again
        self._thread = threading.Thread(
            target=self._guarded_run, name=f"camera-{label}", daemon=True
        )
        self._started = False
        self._started_at = 0.0

    def _guarded_run(self) -> None:
        try:
            self._run()
        finally:
            self._attempted()

    def _run(self) -> None:
        raise NotImplementedError

    def _attempted(self) -> None:
        """The reader's first connection was tried (up, or failed): the first read goes on."""
        self._first_attempt.set()
        with self._cond:
            self._cond.notify_all()

    def _until(self, done: Callable[[], bool], seconds: float) -> None:
        """Wait up to ``seconds`` for ``done()`` (the reader notifies ``_cond``), waking on
        close() or the stop event too: Ctrl-C or a shutdown does not wait out a camera that
        does not answer (nothing notifies when the stop event is set, so it is looked at five
        times a second). Called with ``_cond`` held or not."""
        ends = time.monotonic() + seconds
        with self._cond:
            while not done() and not self._halted():
                left = ends - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(min(left, 0.2))

    def _in_backoff(self) -> bool:
        """Sleep through the backoff (waking on close/stop); True if the caller should re-check."""
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            self._halt_wait(wait)
            return True
        return False

    def _connected(self, reset_backoff: bool = True) -> None:
        self._up(reset_backoff)
        self._attempted()

    def _bad_run_seen(self) -> None:
        # the source stays connected while every frame it sends is refused (junk parts, frames
        # too large, a broken encoder): its reader connects again, and a source that keeps
        # sending them goes offline with its backoff instead of looking online for good
        self._reconnect.set()

    def _reconnect_frozen(self, frozen: str) -> None:
        """read() found the picture frozen: the reader connects again, and is offline with its
        backoff until the picture changes (it looks at a new connection's first picture); a
        reader that went down meanwhile keeps its own reason."""
        with self._lock:
            if self.online:
                self.last_error = frozen
        self._reconnect.set()

    def _fail(self, message: str, busy: bool = False) -> None:
        if self._in_start_grace(self._started_at, busy):
            self._halt_wait(START_RETRY_S)
            return
        self._down(message)
        self._attempted()  # and a read() waiting for a frame sees it offline

    def _ready(self) -> bool:
        """False while closed or offline; only the first read starts the reader and waits for
        its first connection."""
        if self._halted():
            return False
        refused = None
        with self._lock:
            if not self._started:
                # set before the thread runs: a first refusal (503, the old reader not yet
                # gone) read against 0 had no start grace and went offline at once
                self._started_at = time.monotonic()
                try:
                    self._thread.start()
                    self._started = True
                except RuntimeError as exc:  # no thread left (the unit's TasksMax): next read
                    refused = exc
        if refused is not None:
            self._down(f"cannot start its reader ({refused}); tried again at its next read")
            return False
        self._until(self._first_attempt.is_set, self.cfg.timeout_s + START_GRACE_S)
        return self.online and not self._halted()

    def close(self) -> None:
        """Stop the thread; it is joined for a few seconds (a stalled source ends within timeout_s)."""
        super().close()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=min(self.cfg.timeout_s + 1, 3.0))
            if self._thread.is_alive():
                logger.debug(
                    "camera %s: reader thread ends after its %.0f s timeout",
                    self.label,
                    self.cfg.timeout_s,
                )


def device_problem(path: str) -> str:
    """Why a USB camera's device cannot be opened, where that can be told before OpenCV tries
    (it says "cannot open" for every reason); "" when nothing is known to be wrong."""
    if not os.path.exists(path):
        return f"{path} does not exist: unplugged, or another number (ls /dev/video*)"
    if not os.access(path, os.R_OK | os.W_OK):
        return f"permission denied on {path}: is this user in the 'video' group?"
    return ""


# FFmpeg decodes a video stream with this many threads, each holding frames of its own:
# OpenCV's default is one per core (a Pi 4's four cost 11 MB more at 1080p than two, and two
# 6.7 MB more a 1080p printer than one: benchmarks/hostile_inputs.py)
FFMPEG_THREADS = 1

# A stream's frame is converted to BGR whole (6.2 MB at 1920x1080) before it is shrunk: one
# such frame in the process at a time, however many printers
_FULL_FRAME = threading.Lock()


def _stream_too_large(cap: Any) -> str:
    """Why a video stream just opened is refused for its size, or "". FFmpeg decodes every
    frame whole, whatever the interval: a 3840x2160 H.264 stream cost the daemon 2.5 times a
    normal camera's memory, 254 MB, its decoder most of it (benchmarks/hostile_inputs.py)."""
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    if width * height <= FULL_DECODE_MAX_PIXELS:
        return ""
    return (
        f"its video is {width}x{height}, more than the watchdog decodes (about 1920x1080, "
        f"{FULL_DECODE_MAX_PIXELS} pixels): give the camera's sub-stream, or set it to a "
        "smaller size"
    )


class StreamCamera(_ThreadedCamera):
    """cv2.VideoCapture (V4L2 device, RTSP) with a grab thread; frames are decoded only when read."""

    kind = "stream"

    def __init__(
        self,
        cfg: CameraConfig,
        target: int | str,
        label: str,
        stop: threading.Event | None,
        backoff: tuple[float, float],
        stats: CameraStats | None = None,
    ) -> None:
        super().__init__(cfg, label, stop, backoff, stats)
        self.target = target
        self.kind = "v4l2 device" if source_kind(target) is SourceKind.DEVICE else "stream"
        self._want = False
        self._frame: np.ndarray | None = None
        self._delivered = False
        self._refused_run = False  # the last connection ended in a run of refused frames
        self._stand_ins_until = 0.0  # flat frames are read past until then (monotonic)

    def _open_capture(self) -> Any:
        if self.kind == "v4l2 device":
            path = f"/dev/video{self.target}" if isinstance(self.target, int) else str(self.target)
            problem = device_problem(path)
            if problem:
                raise SourceDown(problem)
            cap = cv2.VideoCapture(self.target, cv2.CAP_V4L2)
            why = "cannot open: held by another program, or not a camera"
        else:
            if str(self.target).lower().startswith("rtsp"):
                os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
            ms = int(self.cfg.timeout_s * 1000)
            cap = cv2.VideoCapture(
                str(self.target),
                cv2.CAP_FFMPEG,
                [
                    cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                    ms,
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                    ms,
                    cv2.CAP_PROP_N_THREADS,
                    FFMPEG_THREADS,
                ],
            )
            # OpenCV says no more than that: the address at least (its host, never its password)
            why = (
                f"cannot open {url_host(str(self.target))}"
                if "://" in str(self.target)
                else "cannot open"
            )
        if not cap.isOpened():
            cap.release()
            raise SourceDown(why, busy=self.kind == "v4l2 device")
        if self.kind == "stream" and (too_large := _stream_too_large(cap)):
            cap.release()
            raise SourceDown(too_large)
        return cap

    def _run(self) -> None:
        cap = None
        try:
            while not self._halted():
                if cap is None:
                    if self._in_backoff():
                        continue
                    try:
                        cap = self._open_capture()
                    except SourceDown as exc:
                        self._fail(str(exc), exc.busy)
                        continue
                    except cv2.error:
                        self._fail("OpenCV error while opening")
                        continue
                    self._reconnect.clear()
                    with self._cond:
                        self._stand_ins_until = time.monotonic() + STAND_IN_S
                    if (frozen := self._first_frame_frozen(cap)) is not None:
                        # the same picture again: not online for it (else it would be told
                        # "back online" at every reconnection, and offline at the next read)
                        cap.release()
                        cap = None
                        self._fail(frozen)
                        continue
                    self._connected(reset_backoff=not self._refused_run)  # see _accept
                try:
                    grabbed = cap.grab()
                except cv2.error:
                    grabbed = False
                if not grabbed or self._reconnect.is_set():
                    cap.release()
                    cap = None
                    self._refused_run = grabbed
                    self._fail(self.last_error if grabbed else "stream ended or stalled")
                    continue
                with self._cond:
                    want = self._want
                if want:
                    ok, frame = self._retrieve(cap)
                    with self._cond:
                        self._frame = frame if ok else None
                        self._delivered = True
                        self._want = False
                        self._cond.notify_all()
        finally:
            if cap is not None:
                cap.release()

    def _retrieve(self, cap: Any) -> tuple[bool, Any]:
        """The frame just grabbed, validated and brought to the model's need here, under
        _FULL_FRAME (a BadFrame is handed to read() as it is)."""
        with _FULL_FRAME:
            try:
                ok, frame = cap.retrieve()
            except cv2.error:
                return False, None
            if not ok or not isinstance(frame, np.ndarray):
                return ok, frame
            try:
                return True, fit_to_need(validate(frame, self.cfg.max_pixels), self.need)
            except BadFrame as exc:
                return True, exc
            except Exception as exc:  # noqa: BLE001 - the grab thread must not end: every read would wait on it
                logger.exception("camera %s: unexpected error reducing a frame", self.label)
                return True, BadFrame(f"unexpected error: {type(exc).__name__}")

    def _accept(self, frame: Any) -> np.ndarray | None:
        """A frame _retrieve already validated and shrank."""
        return self._counted(frame)

    def _stand_in(self, frame: np.ndarray | None) -> bool:
        """A flat frame within STAND_IN_S of connecting, before any picture: a decoder's or a
        waking camera's stand-in, no picture of the print (judged, it would be one of the
        frames the print's start is learnt from). Later flat frames are delivered: a covered
        lens or a dark room is told by the frozen-picture check. Called with ``_cond`` held."""
        if (
            time.monotonic() >= self._stand_ins_until
            or not isinstance(frame, np.ndarray)
            or not frame.size
        ):
            return False
        if int(np.ptp(frame)) <= _FLAT_TOLERANCE:
            return True
        self._stand_ins_until = 0.0  # the stream's pictures have begun
        return False

    def _first_frame_frozen(self, cap: Any) -> str | None:
        """Why a source just opened is not live (no first frame, or its first picture the
        one found frozen), or None. A source that opens and gives nothing (a wedged webcam, a
        stream that stops at once) was told back online at each reconnection, offline at the
        next grab, and retried at once for good. Its stand-ins are read past first: FFmpeg's
        grey at each reconnection would otherwise be a new picture, and a camera frozen on one
        told back online every time."""
        while True:
            try:
                ok, frame = self._retrieve(cap) if cap.grab() else (False, None)
            except cv2.error:
                ok, frame = False, None
            if not ok:
                return "no frame after connecting"
            if not isinstance(frame, np.ndarray):  # a frame refused: said where it is read
                return None
            with self._cond:
                stand_in = self._stand_in(frame)
            if not stand_in:
                return self._frozen_problem(frame)

    def read(self) -> np.ndarray | None:
        """The next frame the thread grabs (waits at most timeout_s while online)."""
        if not self._ready():
            return None
        while True:
            with self._cond:
                self._want, self._delivered, self._frame = True, False, None
                self._until(lambda: self._delivered or not self.online, self.cfg.timeout_s)
                delivered, frame = self._delivered, self._frame
                self._want, self._frame = False, None
                stand_in = delivered and self._stand_in(frame)
            if not stand_in:
                break
            logger.debug("camera %s: a flat frame at the connection's start read past", self.label)
        if not delivered:
            return None
        if frame is None:
            self._bad("stream gave an undecodable frame")
            return None
        if isinstance(frame, BadFrame):
            self._bad(str(frame))
            return None
        if (frozen := self._frozen_problem(frame)) is not None:
            self._reconnect_frozen(frozen)
            return None
        accepted = self._accept(frame)
        if accepted is not None:
            self._refused_run = False  # its next reconnection starts from the least backoff
        return accepted


def _boundary(content_type: str) -> bytes | None:
    """The multipart delimiter to look for ("--" + boundary, tolerating a boundary given with its dashes)."""
    if not content_type.lower().startswith("multipart/x-mixed-replace"):
        return None
    m = re.search(r'boundary="?([^";,\s]+)"?', content_type, re.IGNORECASE)
    return b"--" + m.group(1).lstrip("-").encode("latin-1") if m else None


def mjpeg_parts(
    chunks: Iterator[bytes], delimiter: bytes, max_bytes: int
) -> Iterator[bytes | BadFrame]:
    """Split a multipart/x-mixed-replace body into part bodies without decoding them.

    Uses each part's Content-Length when given, else the next delimiter; a part larger than
    ``max_bytes`` (or a header block over 8 KiB) yields BadFrame and is skipped, not buffered.
    """
    buf = bytearray()
    skip = 0
    searched = 0  # where the search for the end of a part without a length goes on from
    for chunk in chunks:
        buf += chunk
        while True:
            if skip:
                dropped = min(skip, len(buf))
                del buf[:dropped]
                skip -= dropped
                if skip:
                    break
            start = buf.find(delimiter)
            if start < 0:
                del buf[: max(0, len(buf) - len(delimiter))]  # keep a possible partial delimiter
                break
            head_end = buf.find(b"\r\n\r\n", start)
            if head_end < 0:
                if len(buf) - start > 8192:
                    yield BadFrame("multipart part headers over 8 KiB")
                    del buf[: start + len(delimiter)]
                    continue
                break
            body_start = head_end + 4
            length = re.search(
                rb"(?im)^content-length:\s*(\d{1,15})\s*$", bytes(buf[start:head_end])
            )
            if length:
                size = int(length.group(1))
                if size > max_bytes:
                    yield BadFrame(
                        f"stream part of {size} bytes, more than camera.max_bytes={max_bytes}"
                    )
                    del buf[:body_start]
                    skip = size
                    continue
                if len(buf) < body_start + size:
                    break
                body = bytes(buf[body_start : body_start + size])
                del buf[: body_start + size]
                yield body
                continue
            # a part arriving in many chunks is searched once, not again from its start
            end = buf.find(delimiter, max(body_start, searched))
            if end < 0:
                searched = max(body_start, len(buf) - len(delimiter) + 1)
                if len(buf) - body_start > max_bytes:
                    yield BadFrame(f"stream part larger than camera.max_bytes={max_bytes}")
                    del buf[:body_start]
                    searched = 0
                break
            searched = 0
            body = bytes(buf[body_start:end])
            del buf[:end]
            yield body[:-2] if body.endswith(b"\r\n") else body


class MjpegCamera(_ThreadedCamera):
    """An HTTP MJPEG stream read by a thread that keeps only the newest part's bytes.

    Parts are not decoded until read() asks, so a 30 fps stream read every 10 s costs almost
    nothing, and each part goes through the same size checks as a snapshot before decoding.
    """

    kind = "mjpeg stream"

    def __init__(
        self,
        cfg: CameraConfig,
        url: str,
        label: str,
        stop: threading.Event | None,
        backoff: tuple[float, float],
        stats: CameraStats | None = None,
    ) -> None:
        super().__init__(cfg, label, stop, backoff, stats)
        self.url = url
        self._http = HttpClient(verify=_verify(cfg), max_redirects=MAX_REDIRECTS)
        # the newest part and the newest part refused unread (too large): a refused part does
        # not take the place of the picture before it (one between every two pictures left
        # reads finding mostly refusals, the stream going offline and online every second)
        self._latest: bytes | None = None
        self._seq = 0
        self._taken = 0
        self._refused: BadFrame | None = None
        self._refused_seq = 0
        self._refused_taken = 0
        self._body: Deadline | None = None  # the stream's request while its body is read

    def close(self) -> None:
        """The read waiting for the stream's next part ends at once (its connection shut), not
        at that part or the timeout: a reload waited for it past its 2 s, and the new reader
        connected while this one still held a camera that serves one client at a time."""
        self._closed.set()
        with self._cond:
            body = self._body
        if body is not None:
            body.expire()
        super().close()

    def _decoded(self, part: bytes | BadFrame) -> np.ndarray | str:
        """A part decoded as read() decodes it, or why it would be refused as a frame."""
        try:
            if isinstance(part, BadFrame):
                raise part
            return validate(decode_image(part, self.cfg.max_pixels, self.need), self.cfg.max_pixels)
        except BadFrame as exc:
            return str(exc)

    def _run(self) -> None:
        try:
            while not self._halted():
                if self._in_backoff():
                    continue
                busy = False
                try:
                    self._stream_once()
                    message = "stream ended"
                except SourceDown as exc:
                    message, busy = str(exc), exc.busy
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    timeout = timed_out(exc)
                    message = (
                        f"no data from {url_host(self.url)} for camera.timeout_s={self.cfg.timeout_s:g} s"
                        if timeout
                        else connection_problem(self.url, exc)
                    )
                except Exception as exc:  # noqa: BLE001 - a bug must not end the reader thread silently
                    logger.exception("camera %s: unexpected error", self.label)
                    message = f"unexpected error: {type(exc).__name__}"
                if not self._halted():
                    self._fail(message, busy)
        finally:
            self._http.close()

    def _stream_once(self) -> None:
        t = self.cfg.timeout_s
        # connecting and the headers within the timeout (a server sending them a byte at a
        # time held this thread, and its socket, past close and every reload); the stream's
        # body has no end and is bounded per frame below
        self._reconnect.clear()  # a run of bad frames of an earlier connection is not this one's
        with self._http.deadline(t, self._stop) as deadline:
            try:
                answer = _open_camera_url(self._http, self.url, t)
            except SourceDown as exc:
                if deadline.expired:
                    raise _no_answer(_redirected_to(exc) or self.url, t) from None
                raise
        with self._cond:
            self._body = deadline
        if self._halted():  # closed as it connected
            deadline.expire()
        try:
            self._read_stream(answer)
        finally:
            with self._cond:
                self._body = None

    def _read_stream(self, answer: Answer) -> None:
        """The stream's parts, as they come, until it ends, stalls or the camera is closed."""
        t = self.cfg.timeout_s
        with answer.response as resp:
            if resp.status >= 400:
                raise _http_refusal(answer, self.url)
            ctype = resp.headers.get("Content-Type", "")
            delimiter = _boundary(ctype)
            if delimiter is None:
                raise SourceDown(
                    f"answered {ctype.split(';')[0].strip()[:80] or 'no Content-Type'}, not an "
                    "MJPEG stream"
                )
            connected = False
            # A stream that keeps sending bytes but no whole frame (a stalled encoder, a
            # proxy dripping keep-alives) is down: without this it looked online for good.
            last_part = time.monotonic()

            def timed(chunks: Iterator[bytes]) -> Iterator[bytes]:
                for chunk in chunks:
                    if self._halted():  # closed while a part drips in: let go now
                        return
                    if time.monotonic() - last_part > t:
                        raise SourceDown(f"no whole frame within camera.timeout_s={t:g}")
                    yield chunk

            junk = 0
            for part in mjpeg_parts(
                timed(_arriving(resp, self.url)), delimiter, self.cfg.max_bytes
            ):
                last_part = time.monotonic()
                if self._halted():
                    return
                if not connected:
                    # online once a part decodes (once per connection, here): a stream of junk
                    # parts (an error page in each) looked online for good while nothing was
                    # watched, and one of pictures refused would go on and off at its fastest
                    if isinstance(decoded := self._decoded(part), str):
                        junk += 1
                        if junk >= BAD_RUN_OFFLINE:
                            raise SourceDown(f"{junk} frames in a row refused: {decoded}")
                        continue
                    if frozen := self._frozen_problem(decoded):
                        raise SourceDown(frozen)  # the same picture again: not online for it
                    self._connected()
                    connected = True
                if self._reconnect.is_set():  # read() found a run of bad parts: start over
                    self._reconnect.clear()
                    raise SourceDown(self.last_error or "bad frames")
                with self._cond:
                    if isinstance(part, BadFrame):
                        self._refused, self._refused_seq = part, self._refused_seq + 1
                    else:
                        self._latest, self._seq = part, self._seq + 1
                    self._cond.notify_all()

    def _arrived(self) -> bytes | BadFrame | None:
        """The newest picture not read before, else the refusal of a part that came instead,
        else None; called with ``_cond`` held."""
        part: bytes | BadFrame | None = self._latest if self._seq > self._taken else None
        if part is None and self._refused_seq > self._refused_taken:
            part = self._refused
        self._taken, self._refused_taken = self._seq, self._refused_seq
        return part

    def read(self) -> np.ndarray | None:
        """The newest part not read before, decoded now (waits at most timeout_s for one; a
        part refused unread is told only when a second one, or nothing else, follows it)."""
        if not self._ready():
            return None
        with self._cond:
            self._until(
                lambda: (
                    self._seq > self._taken
                    or self._refused_seq > self._refused_taken + 1
                    or not self.online
                ),
                self.cfg.timeout_s,
            )
            if not self.online or self._halted():
                return None
            part = self._arrived()
        if part is None:
            return None
        try:
            if isinstance(part, BadFrame):
                raise part
            frame = self._decode(part)
        except BadFrame as exc:
            self._bad(str(exc))
            return None
        if (frozen := self._frozen_problem(frame)) is not None:
            self._reconnect_frozen(frozen)
            return None
        return self._accept(frame)


class AutoHttpCamera:
    """An http(s) URL of unknown kind: a snapshot until it answers multipart/x-mixed-replace."""

    def __init__(
        self,
        cfg: CameraConfig,
        url: str,
        label: str,
        stop: threading.Event | None,
        backoff: tuple[float, float],
    ) -> None:
        self._args = (cfg, url, label, stop, backoff)
        self.inner: SnapshotCamera | MjpegCamera = SnapshotCamera(cfg, url, label, stop, backoff)

    @property
    def kind(self) -> str:
        return self.inner.kind

    @property
    def online(self) -> bool:
        return self.inner.online

    @property
    def last_error(self) -> str:
        return self.inner.last_error

    @property
    def stats(self) -> CameraStats:
        return self.inner.stats

    @property
    def frozen(self) -> FrozenPicture:
        return self.inner.frozen

    @property
    def exhausted(self) -> bool:
        return False

    def read(self) -> np.ndarray | None:
        """Read as a snapshot; once the URL turns out to be a stream, read it as one."""
        inner = self.inner
        frame = inner.read()
        if isinstance(inner, SnapshotCamera) and inner.stream_detected:
            cfg, url, label, stop, backoff = self._args
            logger.info(
                "camera %s: %s is an MJPEG stream; reading it as one", label, redact_url(url)
            )
            inner.close()
            self.inner = MjpegCamera(cfg, url, label, stop, backoff, stats=inner.stats)
            self.inner.need, self.inner.gate = inner.need, inner.gate
            self.inner.frozen = inner.frozen
            return self.inner.read()
        return frame

    @property
    def need(self) -> tuple[int, int] | None:
        return self.inner.need

    @need.setter
    def need(self, value: tuple[int, int] | None) -> None:
        self.inner.need = value

    @property
    def gate(self) -> FrameGate | None:
        return self.inner.gate

    @gate.setter
    def gate(self, value: FrameGate | None) -> None:
        self.inner.gate = value

    def close(self) -> None:
        self.inner.close()


# --------------------------------------------------------------------------- choosing


def _is_stream_url(url: str) -> bool:
    """True when an http(s) URL itself says stream; otherwise the Content-Type decides (AutoHttpCamera)."""
    parts = urlsplit(url)
    if dict(parse_qsl(parts.query)).get("action", "").lower() == "stream":
        return True
    return parts.path.lower().endswith((".mjpg", ".mjpeg"))


MAX_BACKOFF_S = 60.0  # a camera that fails is retried after 1 s, 2 s, 4 s ... up to this


def open_camera(
    cfg: CameraConfig,
    stop: threading.Event | None = None,
    *,
    name: str = "",
    backoff: tuple[float, float] = (1.0, MAX_BACKOFF_S),
    model_input: Preprocess | None = None,
    gate: FrameGate | None = None,
) -> Camera:
    """The camera for ``cfg.source``; raises CameraSourceError only for a source that cannot work.

    ``stop`` ends retries and capture threads (as close() does); ``name`` labels log lines;
    ``backoff`` is the (first, largest) retry delay in seconds; ``model_input`` (the daemon)
    lets JPEGs much larger than the model needs be decoded at reduced size (``decode_image``);
    ``gate`` (the daemon's) is entered before a frame is decoded in the reading thread (device
    and RTSP streams decode in their own grab thread, outside it).
    """
    camera = _open(cfg, stop, name, backoff)
    if isinstance(camera, _BaseCamera | AutoHttpCamera):
        if model_input is not None:
            camera.need = frame_size_needed(model_input)
        camera.gate = gate
    return camera


def _open(
    cfg: CameraConfig, stop: threading.Event | None, name: str, backoff: tuple[float, float]
) -> Camera:
    source = cfg.source
    label = name or (redact_url(source) if isinstance(source, str) else f"#{source}")
    kind = source_kind(source)
    if isinstance(source, str) and source.strip().isdigit():
        source = int(source.strip())
    if kind is SourceKind.DEVICE:  # a path may appear later: retried with backoff
        return StreamCamera(cfg, source, label, stop, backoff)
    assert isinstance(source, str)
    if kind is SourceKind.URL:
        scheme = urlsplit(source).scheme.lower()
        if scheme not in ("http", "https", "rtsp", "rtsps", "rtmp"):
            raise CameraSourceError(redact_url(source), f"unsupported scheme {scheme!r}")
        if scheme in ("rtsp", "rtsps", "rtmp"):
            return StreamCamera(cfg, source, label, stop, backoff)
        if _is_stream_url(source):
            return MjpegCamera(cfg, source, label, stop, backoff)
        return AutoHttpCamera(cfg, source, label, stop, backoff)
    if problem := _path_problem(source):
        raise CameraSourceError(source, problem)
    path = Path(source).expanduser()
    if path.is_dir():
        return FolderCamera(cfg, path, label, stop, backoff)
    return VideoFileCamera(cfg, path, label, stop, backoff)


# an address without its scheme: "192.168.1.50:8080/?action=snapshot", "octopi.local:8080"
def source_problem(cfg: CameraConfig) -> str | None:
    """Why a camera source can never work, as the daemon would refuse it at start (None: it
    may; a URL or a device is tried, and retried, when watching): what ``check-config`` says
    before a restart the daemon would not survive. The camera is built as the daemon builds
    it, and closed: nothing is read (a reader thread starts at the first read), a recording
    (a folder of frames, a video) is opened."""
    try:
        _open(cfg, threading.Event(), "", (1.0, 1.0)).close()
    except CameraSourceError as exc:  # a missing or empty folder, a scheme it cannot read
        return exc.problem
    return None


def _path_problem(source: str) -> str | None:
    """Why a file or folder source is none the daemon can open (None: it is there)."""
    path = Path(source).expanduser()
    try:
        if path.is_dir() or path.is_file():
            return None
    except PermissionError:  # Python 3.11's is_dir: not False, an error
        return (
            "not readable by this user (under /home the service needs ProtectHome=read-only: "
            "docs/deploy.md)"
        )
    if address_without_scheme(source):
        return "no such file or folder; a camera's address starts with http://, https:// or rtsp://"
    if path.is_symlink() and not path.exists():  # a drive not mounted, a folder moved
        return f"a link to {os.readlink(path)}, which is not there"
    if os.path.lexists(path):  # a FIFO, a socket
        return "not a folder of frames or a video file"
    return "no such file, folder, device or URL"
