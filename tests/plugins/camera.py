"""pytest plugin: a real HTTP camera on 127.0.0.1 serving test frames, and video-file writers.

The server speaks what users' cameras speak (mjpg-streamer / crowsnest / ustreamer style):

- ``/stream`` and ``/?action=stream``: ``multipart/x-mixed-replace`` JPEG parts (MJPEG);
- ``/snapshot`` and ``/?action=snapshot``: one image per request.

Tests switch what it shows while it runs: ``set_frames(list_of_arrays)`` (frames cycle; BGR
frames go out as JPEG, 1- and 4-channel frames as PNG) and ``set_fault(name)`` for the camera
faults a camera can have (see ``FAULTS``; image faults apply to snapshots and to every stream part
while set); ``set_fault(None)`` brings the camera back. ``one_stream = True`` makes it a camera
that serves one stream at a time (an ESP32-CAM): a second reader gets 503 while the first
reads, counted in ``streams_refused``.

Fixtures: ``camera_server`` (function scope: the session's server, reset to normal frames and
no fault), ``camera_server_session`` (the same server, for wider-scoped fixtures) and
``write_video`` (writes frames to ``.avi`` (MJPG) or ``.mp4`` (mp4v)).
"""

from __future__ import annotations

import base64
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import pytest

BOUNDARY = "testframe"

FAULTS = {
    "down": "the connection is closed before any response (camera unplugged / server crashed)",
    "http_500": "snapshot answers 500 Internal Server Error",
    "html": "an HTML page (a login or error page) instead of an image",
    "empty": "a 0-byte image",
    "truncated": "the first half of the JPEG (PNG)",
    "truncated_eoi": "the first half of the JPEG closed with an end-of-image marker (FFD9)",
    "no_scan": "a JPEG's headers and its end-of-image marker, without the scan data",
    "garbage": "bytes that are no image",
    "oversized": "snapshot: declares a 1 GB body and streams until the client hangs up; stream: 2 MB parts",
    "oversized_between": "stream: a 2 MB part between every two pictures",
    "oversized_stream": "snapshot: streams up to 1 GB without a Content-Length",
    "bomb_png": "a small PNG whose header declares 30000x30000 pixels",
    "bomb_jpeg": "a small JPEG whose SOF marker declares 30000x30000 pixels",
    "png16_rgba": "a 16-bit RGBA 4000x4000 PNG: 124 KB on the wire, 128 MB decoded",
    "huge_jpeg": "the frame enlarged to 4000x3000, an ordinary (baseline) JPEG",
    "jpeg_16mp": "the frame enlarged to 4608x3456 (a 16 MP camera), an ordinary (baseline) JPEG",
    "progressive_jpeg": "the frame enlarged to 4000x3000, a progressive JPEG",
    "big_png": "an 8-bit RGB 2000x1500 PNG (over what the daemon decodes whole)",
    "png_1080p": "the frame enlarged to 1920x1080, an 8-bit RGB PNG (the largest PNG the daemon decodes)",
    "multiscan_jpeg": "a 4000x3000 baseline JPEG whose first scan holds one colour of three (decoded whole by libjpeg)",
    "narrow_jpeg": "a 16000x200 JPEG: too narrow to be decoded at a fraction of its size",
    "long_jpeg": "an 8184x1023 JPEG: 8.4 MP, a pixel short of halving with the decoding margin",
    "slow": "snapshot drips its body a byte every 50 ms (a hung camera that never times out per read)",
    "slow_unsized": "snapshot drips its body a byte every 50 ms without a Content-Length (it ends when the connection does)",
    "slow_headers": "snapshot or stream drips its headers a byte every 50 ms, for up to a minute",
    "crumbs": "snapshot or stream: an endless chunked reply of 1-byte chunks, as fast as it goes",
    "stream_stop": "the MJPEG stream closes after `stop_after` frames",
    "stream_drip": "the MJPEG stream's next part drips in a byte every 50 ms (never whole in time)",
    "stamped": "each JPEG carries its time of sending in a comment: the same pixels, new bytes",
}


def synthetic_frame(
    seed: int, width: int = 160, height: int = 120, channels: int = 3
) -> np.ndarray:
    """A deterministic test frame: a gradient plus a bright square whose place depends on seed."""
    y, x = np.mgrid[0:height, 0:width]
    base = ((x * 255 // max(width - 1, 1) + seed * 17) % 256).astype(np.uint8)
    img = np.dstack(
        [base, (y * 255 // max(height - 1, 1)).astype(np.uint8), np.full_like(base, 80)]
    )
    s = max(4, min(width, height) // 5)
    ox, oy = (seed * 13) % (width - s), (seed * 7) % (height - s)
    img[oy : oy + s, ox : ox + s] = 255
    if channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    if channels == 4:
        return np.dstack([img, np.full_like(base, 200)])
    return img


def encode(frame: np.ndarray) -> tuple[bytes, str]:
    """JPEG for 3-channel frames, PNG for 1 and 4 channels (JPEG cannot carry alpha)."""
    if frame.ndim == 3 and frame.shape[2] == 3:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
        return buf.tobytes(), "image/jpeg"
    ok, buf = cv2.imencode(".png", frame)
    return buf.tobytes(), "image/png"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A few hundred bytes whose IHDR declares ``width x height`` RGB pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)  # far too little data: a decoder would allocate first
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def bomb_jpeg(width: int = 30000, height: int = 30000) -> bytes:
    """A valid small JPEG with its SOF dimensions rewritten to ``width x height``."""
    data = bytearray(encode(synthetic_frame(0, 64, 48))[0])
    i = 2
    while i + 4 <= len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        i += 2 + length
    raise AssertionError("no SOF marker in the test JPEG")


PRIVATE_USER, PRIVATE_PASSWORD = "viewer", "pa ss:w@rd€"  # /private, /moved need them (UTF-8)
PRIVATE_AUTH = "Basic " + base64.b64encode(f"{PRIVATE_USER}:{PRIVATE_PASSWORD}".encode()).decode()


class CameraServer:
    """The running test camera; ``url``, ``snapshot_url``, ``stream_url`` point at it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.streaming = 0  # streams being served now (earlier tests' readers included)
        self.reset()
        handler = type("Handler", (_Handler,), {"camera": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = False
        self._server.block_on_close = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.snapshot_url = f"{self.url}/snapshot"
        self.stream_url = f"{self.url}/stream"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="camera-server"
        )
        self._thread.start()

    def reset(self) -> None:
        """Back to normal: default frames, no fault, 25 fps."""
        with self._lock:
            self._frames: list[np.ndarray] = [synthetic_frame(i) for i in range(4)]
            self._index = 0
            self.fault: str | None = None
            self.fps = 25.0
            self.stop_after = 5
            self.requests = 0
            self.one_stream = False
            self.streams_refused = 0
            self.oversized_sent = 0  # bytes of an oversized body written before the client hung up

    def set_frames(self, frames: Sequence[np.ndarray]) -> None:
        """Show these frames from now on, in a loop (a list of one shows a still picture)."""
        if not frames:
            raise ValueError("set_frames needs at least one frame")
        with self._lock:
            self._frames = [np.ascontiguousarray(f) for f in frames]
            self._index = 0

    def set_fault(self, fault: str | None) -> None:
        """Switch to one of ``FAULTS`` (None: the camera works again)."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {sorted(FAULTS)}")
        with self._lock:
            self.fault = fault

    def next_frame(self) -> np.ndarray:
        with self._lock:
            frame = self._frames[self._index % len(self._frames)]
            self._index += 1
            return frame

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


class _Handler(BaseHTTPRequestHandler):
    camera: CameraServer
    protocol_version = "HTTP/1.0"
    timeout = 10

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        cam = self.camera
        cam.requests += 1
        parts = urlsplit(self.path)
        action = parse_qs(parts.query).get("action", [""])[0]
        fault = cam.fault
        if fault == "down":
            self.close_connection = True
            return  # nothing written: the client sees the connection drop
        if parts.path in ("/private", "/moved"):  # behind basic auth, as webcams often are
            if self.headers.get("Authorization") != PRIVATE_AUTH:
                self.send_error(401)
            elif parts.path == "/moved":  # moved on the same host: the credentials still apply
                self.send_response(302)
                self.send_header("Location", f"http://{self.headers['Host']}/private")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self._snapshot(fault)
            return
        if parts.path == "/away":  # a redirect to another server (?to=its URL)
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if parts.path == "/loop":  # a redirect loop (a misconfigured proxy in front of the camera)
            self.send_response(302)
            self.send_header("Location", f"/loop?n={cam.requests}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if parts.path == "/stream" or (parts.path == "/" and action == "stream"):
            if fault == "slow_headers":
                self._send_headers_slowly()
                return
            if fault == "crumbs":
                self._send_crumbs(f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                return
            with cam._lock:
                busy = cam.one_stream and cam.streaming > 0
                cam.streams_refused += busy
                cam.streaming += not busy
            if busy:
                self.send_error(503, "one stream at a time")
                return
            try:
                self._stream(fault)
            finally:
                with cam._lock:
                    cam.streaming -= 1
        elif parts.path == "/snapshot" or (parts.path == "/" and action == "snapshot"):
            self._snapshot(fault)
        else:
            self.send_error(404)

    def _send(self, body: bytes, ctype: str, status: int = 200, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def _snapshot(self, fault: str | None) -> None:
        if fault == "http_500":
            self._send(b"camera error", "text/plain", 500)
        elif fault in ("oversized", "oversized_stream"):
            self._send_oversized(declare=fault == "oversized")
        elif fault in ("slow", "slow_unsized"):
            self._send_slowly(encode(self.camera.next_frame())[0], sized=fault == "slow")
        elif fault == "slow_headers":
            self._send_headers_slowly()
        elif fault == "crumbs":
            self._send_crumbs("image/jpeg")
        else:
            self._send(*_image_or_fault(self.camera.next_frame(), fault))

    def _send_slowly(self, body: bytes, sized: bool = True) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if sized:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for i in range(len(body)):  # bounded by the body; ends early when the client hangs up
                if self.camera._closing.wait(0.05):
                    break
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
        except OSError:
            pass

    def _send_crumbs(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for _ in range(10_000):  # bounded: 10 million chunks at most
                if self.camera._closing.is_set():
                    break
                self.wfile.write(b"1\r\nx\r\n" * 1000)
        except OSError:
            pass  # the client hung up
        self.close_connection = True

    def _send_headers_slowly(self) -> None:
        head = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 1200  # a minute at 50 ms a byte
        try:
            for i in range(len(head)):
                if self.camera._closing.wait(0.05):
                    break
                self.wfile.write(head[i : i + 1])
                self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    def _send_oversized(self, declare: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if declare:
            self.send_header("Content-Length", str(1 << 30))
        self.end_headers()
        chunk = b"\xff\xd8" + b"\x00" * (1 << 16)
        try:
            for _ in range((1 << 30) // len(chunk)):  # bounded: 1 GB at most
                if self.camera._closing.is_set():
                    break
                self.wfile.write(chunk)
                self.camera.oversized_sent += len(chunk)
        except OSError:
            pass  # the client gave up, as it should

    def _stream(self, fault: str | None) -> None:
        """MJPEG parts; image faults (truncated, bomb, html...) apply to each part while set."""
        cam = self.camera
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        sent = 0
        try:
            while not cam._closing.is_set():
                fault = cam.fault
                if fault == "down" or (fault == "stream_stop" and sent >= cam.stop_after):
                    break
                if fault == "stream_drip":
                    body = encode(cam.next_frame())[0]
                    head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
                    self.wfile.write(head.encode())
                    for i in range(len(body)):
                        if cam._closing.wait(0.05) or cam.fault != "stream_drip":
                            break
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                    break
                if fault == "oversized" or (fault == "oversized_between" and sent % 2):
                    body, ctype = b"\xff\xd8" + b"\x00" * (2 << 20), "image/jpeg"  # a 2 MB part
                else:
                    body, ctype = _image_or_fault(cam.next_frame(), fault)
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                    + body
                    + b"\r\n"
                )
                self.wfile.flush()
                sent += 1
                cam._closing.wait(1.0 / cam.fps)
        except OSError:
            pass  # the client went away
        self.close_connection = True


_ENCODED: dict[
    tuple[str, int], bytes
] = {}  # (fault, id of the frame) → bytes: large images are encoded once


def _large(fault: str, frame: np.ndarray) -> tuple[bytes, str]:
    """The large images of FAULTS, encoded once per frame (encoding 4000x3000 takes a while)."""
    key = (
        fault,
        id(frame) if fault in ("huge_jpeg", "jpeg_16mp", "progressive_jpeg", "png_1080p") else 0,
    )
    if key not in _ENCODED:
        if len(_ENCODED) > 64:
            _ENCODED.clear()
        if fault == "png16_rgba":
            data = cv2.imencode(
                ".png", np.zeros((4000, 4000, 4), np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, 9]
            )[1]
        elif fault == "big_png":
            data = cv2.imencode(".png", np.zeros((1500, 2000, 3), np.uint8))[1]
        elif fault == "png_1080p":
            data = cv2.imencode(".png", cv2.resize(to_bgr3(frame), (1920, 1080)))[1]
        else:
            flags = [cv2.IMWRITE_JPEG_QUALITY, 90] + (
                [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if fault == "progressive_jpeg" else []
            )
            size = (4608, 3456) if fault == "jpeg_16mp" else (4000, 3000)
            data = cv2.imencode(
                ".jpg", cv2.resize(to_bgr3(frame), size, interpolation=cv2.INTER_CUBIC), flags
            )[1]
        _ENCODED[key] = data.tobytes()
    return _ENCODED[key], "image/png" if "png" in fault else "image/jpeg"


def to_bgr3(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    return frame[..., :3] if frame.dtype == np.uint8 else (frame[..., :3] // 257).astype(np.uint8)


def _segment(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def multiscan_jpeg() -> bytes:
    """A 4000x3000 baseline JPEG whose first scan covers one colour component of three, its
    scan data random entropy-coded bits (libjpeg decodes them, with warnings): small on the
    wire, and libjpeg keeps every coefficient of the whole picture while it decodes."""
    dqt = _segment(0xDB, b"\x00" + bytes([1] * 64))
    sof = _segment(
        0xC0, b"\x08" + struct.pack(">HH", 3000, 4000) + b"\x03\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    )
    dc_bits, dc_values = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], bytes(range(12))
    ac_bits = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7D]
    ac_values = bytes.fromhex(  # the standard luminance AC table (JPEG annex K)
        "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718"
        "191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a737475"
        "767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3"
        "c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa"
    )
    dht = _segment(
        0xC4, b"\x00" + bytes(dc_bits) + dc_values + b"\x10" + bytes(ac_bits) + ac_values
    )
    scan = _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    bits = np.random.default_rng(0).integers(0, 255, 4000 * 3000 // 16, dtype=np.uint8)
    return b"\xff\xd8" + dqt + sof + dht + scan + bits.tobytes() + b"\xff\xd9"


def long_jpeg(width: int, height: int) -> bytes:
    """A JPEG of a smooth texture, long and thin (16000x200 is about 10 MB of pixels whole)."""
    if (width, height) not in _LONG:
        rng = np.random.default_rng(3)
        small = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
        big = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        _LONG[width, height] = cv2.imencode(".jpg", big)[1].tobytes()
    return _LONG[width, height]


_LONG: dict[tuple[int, int], bytes] = {}


def _jpeg_headers(jpeg: bytes) -> bytes:
    """A JPEG up to and including its start-of-scan header."""
    sos = jpeg.find(b"\xff\xda")
    return jpeg[: sos + 2 + struct.unpack(">H", jpeg[sos + 2 : sos + 4])[0]]


def _stamped(jpeg: bytes) -> bytes:
    """``jpeg`` with its time of sending in a comment (COM) segment after its start marker,
    as cameras that stamp their frames send them: the bytes differ at every send."""
    note = f"sent {time.time_ns()}".encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(note) + 2) + note + jpeg[2:]


def _image_or_fault(frame: np.ndarray, fault: str | None) -> tuple[bytes, str]:
    """The frame encoded, or what a faulty camera sends instead (see FAULTS)."""
    if fault in (
        "png16_rgba",
        "huge_jpeg",
        "jpeg_16mp",
        "progressive_jpeg",
        "big_png",
        "png_1080p",
    ):
        return _large(fault, frame)
    body, ctype = encode(frame)
    faulty = {
        "html": (
            b"<!DOCTYPE html><html><body>Please log in</body></html>",
            "text/html; charset=utf-8",
        ),
        "empty": (b"", "image/jpeg"),
        "truncated": (body[: len(body) // 2], ctype),
        "truncated_eoi": (body[: len(body) // 2] + b"\xff\xd9", ctype),
        "no_scan": (_jpeg_headers(body) + b"\xff\xd9", ctype),
        "garbage": (b"\x00\x01 this is not an image " * 50, "image/jpeg"),
        "bomb_png": (bomb_png(), "image/png"),
        "bomb_jpeg": (bomb_jpeg(), "image/jpeg"),
        "multiscan_jpeg": (multiscan_jpeg(), "image/jpeg"),
        "narrow_jpeg": (long_jpeg(16000, 200), "image/jpeg"),
        "long_jpeg": (long_jpeg(8184, 1023), "image/jpeg"),
        "stamped": (_stamped(body), ctype),
    }
    return faulty.get(fault or "", (body, ctype))


@pytest.fixture(scope="session")
def camera_server_session() -> Iterator[CameraServer]:
    """The one test camera of the session, for module- or session-scoped fixtures (reset it yourself)."""
    server = CameraServer()
    yield server
    server.close()


@pytest.fixture
def camera_server(camera_server_session: CameraServer) -> Iterator[CameraServer]:
    """The test camera on 127.0.0.1, reset to normal frames and no fault for each test."""
    camera_server_session.reset()
    yield camera_server_session
    camera_server_session.reset()


def write_video_file(path: Path, frames: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """Write BGR frames to ``.avi`` (MJPG) or ``.mp4`` (mp4v), the codecs OpenCV can write here."""
    path = Path(path)
    fourcc = {".avi": "MJPG", ".mp4": "mp4v"}.get(path.suffix.lower())
    if fourcc is None:
        raise ValueError(f"{path}: use .avi (MJPG) or .mp4 (mp4v)")
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*fourcc), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write {fourcc} here")
    try:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame))
    finally:
        writer.release()
    return path


@pytest.fixture
def write_video() -> object:
    """``write_video(path, frames, fps=10.0) -> path`` (see ``write_video_file``)."""
    return write_video_file
