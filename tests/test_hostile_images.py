"""Images a hostile or broken camera sends, through the real HTTP test camera.

Each one is small on the wire and would cost the daemon memory or a wrong score: a 16-bit
RGBA PNG, a 4000x4000 JPEG, a PNG too large to decode whole, a JPEG cut short but closed
with FFD9, a JPEG without scan data, a redirect loop. The memory each costs a running daemon
is measured by benchmarks/hostile_inputs.py (docs/reliability.md); here, what the camera
gives back.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.plugins.camera import CameraServer
from watchdog.config import CameraConfig
from watchdog.detection.bundle import Bundle, Preprocess, default_bundle_path
from watchdog.devices import capture
from watchdog.devices.capture import BadFrame, decode_image, frame_size_needed, open_camera

DEFAULT_INPUT = Bundle.load(default_bundle_path()).meta.preprocess  # 128x64 of the lower half


def textured(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A camera-like frame: smooth random texture, no flat areas."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return cv2.GaussianBlur(
        cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), (0, 0), 1.0
    )


@pytest.fixture
def daemon_camera(camera_server: CameraServer):
    """open_camera as the daemon calls it: with the model's input, so it may decode reduced."""
    cams = []

    def _open(url: str, model_input: Preprocess = DEFAULT_INPUT, **kw: object):
        cam = open_camera(
            CameraConfig(source=url, timeout_s=5.0, **kw),
            backoff=(0.05, 0.2),
            model_input=model_input,
        )
        cams.append(cam)
        return cam

    yield _open
    for cam in cams:
        cam.close()


@pytest.mark.parametrize("path", ["snapshot_url", "stream_url"])
def test_a_16_bit_rgba_png_is_refused_before_decoding(
    camera_server: CameraServer, daemon_camera, path: str
) -> None:
    camera_server.set_frames(
        [np.zeros((4000, 4000, 4), np.uint16)]
    )  # 124 KB on the wire, 128 MB decoded
    cam = daemon_camera(getattr(camera_server, path))
    frame = None
    for _ in range(20):
        frame = cam.read()
        if cam.stats.bad_frames:
            break
    assert frame is None and cam.stats.frames == 0
    assert "16-bit PNG: only 8-bit images are decoded" in cam.last_error


def test_a_16_bit_png_is_refused_even_without_a_model(tmp_path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "f_0.png"), np.full((48, 64, 3), 30000, np.uint16))
    cam = open_camera(CameraConfig(source=str(folder)))
    assert cam.read() is None and "16-bit" in cam.last_error


def test_a_png_too_large_to_decode_whole_is_refused_by_the_daemon_only(
    camera_server: CameraServer, daemon_camera
) -> None:
    big = np.zeros((1500, 2000, 3), np.uint8)  # 3 MP: over FULL_DECODE_MAX_PIXELS, under max_pixels
    png = cv2.imencode(".png", big)[1].tobytes()
    with pytest.raises(capture.BadFrame, match="2000x1500 PNG is decoded whole"):
        decode_image(png, 16_000_000, frame_size_needed(DEFAULT_INPUT))
    assert decode_image(png, 16_000_000).shape == (
        1500,
        2000,
        3,
    )  # replay/collect: no model, no limit
    camera_server.set_frames([np.dstack([big, big[..., :1]])])  # 4 channels: served as PNG
    cam = daemon_camera(camera_server.snapshot_url)
    assert cam.read() is None and "decoded whole" in cam.last_error


def test_a_4000x4000_jpeg_is_decoded_at_a_quarter_of_its_size(
    camera_server: CameraServer, daemon_camera
) -> None:
    camera_server.set_frames([textured(4000, 4000)])
    cam = daemon_camera(camera_server.snapshot_url)
    frame = cam.read()
    assert frame is not None and frame.shape == (
        1000,
        1000,
        3,
    )  # 3 MB instead of 48 MB (+46 MB of decoder)


def test_a_progressive_4000x4000_jpeg_is_refused(
    daemon_camera, camera_server: CameraServer
) -> None:
    jpeg = cv2.imencode(".jpg", textured(4000, 4000), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[
        1
    ].tobytes()
    with pytest.raises(capture.BadFrame, match="progressive or multi-scan JPEG is decoded whole"):
        decode_image(jpeg, 16_000_000, frame_size_needed(DEFAULT_INPUT))


def _segment(marker: int, payload: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(payload) + 2) + payload


def test_a_baseline_jpeg_scanning_one_colour_at_a_time_is_limited_like_a_progressive_one() -> None:
    """A first scan of fewer colour components than the frame makes libjpeg keep the whole
    image's coefficients, even for a reduced decode: 4000x4000 cost about 105 MB."""
    size = struct.pack(">HH", 4000, 4000)
    sof = _segment(0xC0, b"\x08" + size + b"\x03" + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00")
    one_colour = _segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    jpeg = b"\xff\xd8" + sof + one_colour + bytes(1_000_000) + b"\xff\xd9"
    with pytest.raises(capture.BadFrame, match="progressive or multi-scan JPEG is decoded whole"):
        decode_image(jpeg, 16_000_000, frame_size_needed(DEFAULT_INPUT))
    all_colours = _segment(0xDA, b"\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00")
    assert not capture.read_header(b"\xff\xd8" + sof + all_colours + b"\x00" * 64).progressive


def test_a_picture_too_narrow_to_decode_reduced_is_refused_by_the_daemon() -> None:
    """16000x200: no side long enough to decode it at a fraction of its size, so whole it would
    be 10 MB of pixels (and more for the checks on them) from a small file."""
    jpeg = cv2.imencode(".jpg", textured(16000, 200))[1].tobytes()
    with pytest.raises(capture.BadFrame, match="16000x200 JPEG: a picture of that shape"):
        decode_image(jpeg, 16_000_000, frame_size_needed(DEFAULT_INPUT))
    assert decode_image(jpeg, 16_000_000).shape == (200, 16000, 3)  # replay, collect: no model


def test_a_long_picture_just_short_of_reducing_with_margin_is_decoded_smaller_not_whole() -> None:
    """8184x1023 (1023 a pixel short of being halved with the margin): whole it is 8.4 MP,
    66 MB more than a normal frame in the daemon, and at half its size (2.1 MP) two such
    cameras and the page took the daemon past its budget. It is decoded at a quarter of its
    size, the smallest that still covers the model's input (128x128 needed) pixel for pixel."""
    jpeg = cv2.imencode(".jpg", textured(8184, 1023))[1].tobytes()
    frame = decode_image(jpeg, 16_000_000, frame_size_needed(DEFAULT_INPUT))
    assert frame.shape == (256, 2046, 3)


def _png_chunk(kind: bytes, data: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + data) if crc is None else crc
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@pytest.mark.parametrize("channels", [3, 4])
def test_a_png_with_odd_extra_chunks_decodes_the_same_without_a_word_to_stderr(
    capfd: pytest.CaptureFixture[str], channels: int
) -> None:
    """A camera whose PNGs carry a broken colour profile, or a text chunk with a bad
    checksum: libpng wrote a warning to stderr for each frame, a line in the journal every
    few seconds for good. Those chunks make no pixel; the picture is the same without them."""
    picture = textured(64, 48)
    if channels == 4:
        picture = np.dstack([picture, np.full(picture.shape[:2], 200, np.uint8)])
    png = cv2.imencode(".png", picture)[1].tobytes()
    odd = (
        _png_chunk(b"iCCP", b"cam\x00\x00" + zlib.compress(b"not a profile"))
        + _png_chunk(b"tEXt", b"Comment\x00hello", crc=1)
        + _png_chunk(b"tIME", b"\x07\xea\x0c\x06\x00\x00\x00")
    )
    odd_png = png[:33] + odd + png[33:]  # after the signature and IHDR
    got = decode_image(odd_png, 16_000_000, frame_size_needed(DEFAULT_INPUT))
    assert np.array_equal(got, decode_image(png, 16_000_000, frame_size_needed(DEFAULT_INPUT)))
    assert "libpng" not in capfd.readouterr().err


def test_a_png_in_tens_of_thousands_of_chunks_is_refused_before_decoding() -> None:
    """Each chunk is a turn of Python and of libpng: 330,000 empty ones doubled a frame's
    decoding cost. No camera's picture comes in more than a few thousand."""
    png = cv2.imencode(".png", textured(64, 48))[1].tobytes()
    many = png[:33] + _png_chunk(b"tEXt", b"a\x00b") * 25_000 + png[33:]
    with pytest.raises(capture.BadFrame, match="PNG in more than 20000 chunks"):
        decode_image(many, 16_000_000, frame_size_needed(DEFAULT_INPUT))


def test_a_camera_shaped_picture_keeps_the_decoding_margin_however_large() -> None:
    """4608x2592 (a Pi camera's full size) for a model needing 256x256: decoded at half its
    size, four frame pixels per model pixel, as always; only a shape no camera has (longer
    than 4 times its other side) gives up the margin to stay within 2.1 MP."""
    jpeg = cv2.imencode(".jpg", textured(4608, 2592))[1].tobytes()
    assert decode_image(jpeg, 16_000_000, (256, 256)).shape == (1296, 2304, 3)


@pytest.mark.parametrize("size", [(640, 480), (800, 600), (1280, 720)])
def test_normal_size_frames_are_decoded_exactly_as_before(size: tuple[int, int]) -> None:
    """Reduced decoding starts at 4x the model's need: the default model's input from a 640x480
    to 1280x720 camera is bit for bit what full decoding gives."""
    jpeg = cv2.imencode(".jpg", textured(*size))[1].tobytes()
    full = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    got = decode_image(jpeg, 16_000_000, frame_size_needed(DEFAULT_INPUT))
    assert got.shape == full.shape and np.array_equal(
        DEFAULT_INPUT.apply(got), DEFAULT_INPUT.apply(full)
    )


def test_reduced_decoding_barely_moves_the_model_input() -> None:
    """A 1920x1080 frame decoded at half size: the model input differs by at most a few
    grey levels (libjpeg's scaled IDCT vs. OpenCV's area resize of the full frame)."""
    jpeg = cv2.imencode(".jpg", textured(1920, 1080))[1].tobytes()
    full = DEFAULT_INPUT.apply(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    reduced_frame = decode_image(jpeg, 16_000_000, frame_size_needed(DEFAULT_INPUT))
    assert reduced_frame.shape == (540, 960, 3)
    diff = np.abs(DEFAULT_INPUT.apply(reduced_frame) - full)
    assert diff.mean() < 1 / 255 and diff.max() < 8 / 255


@pytest.mark.parametrize("fault", ["truncated_eoi", "no_scan"])
@pytest.mark.parametrize("path", ["snapshot_url", "stream_url"])
def test_a_jpeg_cut_short_but_closed_with_ffd9_is_refused(
    camera_server: CameraServer, daemon_camera, fault: str, path: str
) -> None:
    camera_server.set_frames([textured(640, 480, seed) for seed in range(3)])
    cam = daemon_camera(getattr(camera_server, path))
    assert cam.read() is not None
    camera_server.set_fault(fault)
    for _ in range(10):
        if cam.read() is None and cam.stats.bad_frames:
            break
    assert cam.stats.bad_frames >= 1 and "truncated JPEG" in cam.last_error, cam.last_error


def test_printer_frames_cut_anywhere_and_closed_with_ffd9_are_refused() -> None:
    """A camera that sends its frame cut short and closed (a flaky Wi-Fi camera, an
    ESP32-CAM): the rest decodes as one flat colour, and such frames paused good prints. Where a
    block of the garbage libjpeg decodes after the cut landed at the end of a row of blocks,
    the flat run seemed to start at a row's start, as a bar in the picture does, and the frame
    passed (20 of these 60 did). The demo's printer frames, cut at five places each."""
    from watchdog.commands.demo import DEMO_FRAMES

    need = frame_size_needed(DEFAULT_INPUT)
    passed = []
    for path in sorted(DEMO_FRAMES.glob("*.jpg")):
        frame = cv2.resize(cv2.imread(str(path)), (640, 480))
        jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
        for cut in (0.3, 0.45, 0.6, 0.75, 0.9):
            try:
                decode_image(jpeg[: int(len(jpeg) * cut)] + b"\xff\xd9", 16_000_000, need)
                passed.append((path.name, cut))
            except BadFrame:
                pass
    assert passed == []


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((480, 640, 3), np.uint8),  # lights off: one colour all over
        np.vstack(
            [textured(640, 400), np.zeros((80, 640, 3), np.uint8)]
        ),  # a black bar at the bottom
        # light fading out towards the floor (it ends black part-way along a row of blocks)
        np.clip(
            textured(640, 480).astype(np.int16)
            - np.clip((np.arange(480)[:, None] - 300) * 3 + np.arange(640)[None, :] // 8, 0, 255)[
                ..., None
            ],
            0,
            255,
        ).astype(np.uint8),
        np.full((480, 640, 3), 255, np.uint8),  # overexposed all over
    ],
    ids=["black", "black-bar", "fading-to-black", "white"],
)
def test_frames_with_flat_areas_are_not_mistaken_for_truncated_ones(frame: np.ndarray) -> None:
    jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
    assert decode_image(jpeg, 16_000_000).shape == frame.shape


@pytest.mark.parametrize("kind", ["snapshot", "stream"])
def test_a_redirect_loop_is_reported_as_one(
    camera_server: CameraServer, daemon_camera, kind: str
) -> None:
    url = camera_server.url + ("/loop" if kind == "snapshot" else "/loop?action=stream")
    cam = daemon_camera(url)
    for _ in range(50):
        if cam.read() is None and cam.last_error:
            break
    assert "redirect loop" in cam.last_error and "connect" not in cam.last_error


def test_a_large_png_that_is_accepted_is_brought_to_the_size_a_jpeg_would_be_decoded_at(
    camera_server: CameraServer, daemon_camera
) -> None:
    """Decoded whole (PNG has no reduced decoding), then shrunk at once: the heatmap, the
    incident frame and the dashboard's copies are made from the small one."""
    camera_server.set_frames(
        [np.dstack([textured(1920, 1080), np.full((1080, 1920), 255, np.uint8)])]
    )  # PNG
    frame = daemon_camera(camera_server.snapshot_url).read()
    assert frame is not None and frame.shape == (540, 960, 3)


def test_a_stream_of_pictures_the_daemon_refuses_stays_offline_not_flapping(
    camera_server: CameraServer, daemon_camera
) -> None:
    """Progressive 4000x3000 JPEGs on an MJPEG stream: each part's header reads as a picture,
    but every one is refused. The camera must be offline (and back off), not online again at
    each reconnection and offline five frames later, at its fastest."""
    import time

    camera_server.set_fault("progressive_jpeg")
    cam = daemon_camera(camera_server.stream_url)
    seen_online = []
    end = time.monotonic() + 4
    while time.monotonic() < end:
        cam.read()
        seen_online.append(cam.online)
    assert not any(seen_online) and "decoded whole" in cam.last_error, cam.last_error


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"\xff\xd8" + b"\xff" * 10_000_000, "JPEG without frame header"),
        (b"\xff\xd8" + b"\xff\x01" * 5_000_000, "JPEG header of more than 1000 markers"),
    ],
    ids=["fill-bytes", "empty-markers"],
)
def test_a_header_of_endless_markers_is_refused_as_a_bad_frame(
    body: bytes, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """10 MB of fill bytes or empty markers after a JPEG's start were read a marker at a time
    in Python, seconds per frame while holding the frame gate every printer shares: refused
    as a bad frame with the reason, after a bounded number of steps (counted, not timed)."""
    steps = []
    real = capture._past_empty_marker
    monkeypatch.setattr(
        capture, "_past_empty_marker", lambda data, i: steps.append(i) or real(data, i)
    )
    with pytest.raises(capture.BadFrame, match=said):
        decode_image(body, 4_000_000, frame_size_needed(DEFAULT_INPUT))
    assert len(steps) <= capture.MAX_HEADER_MARKERS


def test_a_jpeg_with_many_metadata_markers_is_still_decoded() -> None:
    """A camera's header of a few hundred segments (EXIF, an ICC profile in pieces, padding)
    is within the limit."""
    ok, jpeg = cv2.imencode(".jpg", textured(640, 480))
    assert ok
    data = jpeg.tobytes()
    app = b"\xff\xe2" + struct.pack(">H", 2 + 16) + b"ICC_PROFILE\x00\x01\x01" + b"\x00" * 2
    padded = data[:2] + app * 300 + b"\xff" * 1000 + data[2:]
    frame = decode_image(padded, 4_000_000, frame_size_needed(DEFAULT_INPUT))
    assert frame is not None and frame.shape[1] >= 128


def test_a_printers_own_small_region_is_decoded_at_the_size_it_needs(
    camera_server: CameraServer, tmp_path
) -> None:
    """The camera decodes a JPEG at the smallest size that still covers the model input: it
    was sized for the bundle's region, so a printer watching a fifth of the frame
    (``detection.region``) was scored from a half-size decode (1.5 camera pixels per model
    pixel, where the trainer's frames had all of theirs)."""
    import time

    from watchdog.comms.notifier import Notifier
    from watchdog.config import DetectionConfig, MqttConfig, PrinterConfig, StorageConfig
    from watchdog.watcher import build_watcher

    camera_server.set_frames([textured(1920, 1080)])
    shapes = {}
    for region in (None, (0.4, 0.7, 0.6, 0.9)):
        cfg = PrinterConfig(
            name="p1",
            camera=CameraConfig(source=camera_server.snapshot_url, timeout_s=5.0),
            detection=DetectionConfig(region=region),
        )
        notifier = Notifier(MqttConfig(), StorageConfig(dir=tmp_path / "state"), ["p1"])
        watcher = build_watcher(cfg, Bundle.load(default_bundle_path()), notifier)
        try:
            frame, deadline = None, time.monotonic() + 30
            while frame is None and time.monotonic() < deadline:
                frame = watcher.camera.read()
                watcher.gate.leave()
        finally:
            watcher.camera.close()
        assert frame is not None
        shapes[region] = frame.shape
    assert shapes == {None: (540, 960, 3), (0.4, 0.7, 0.6, 0.9): (1080, 1920, 3)}


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding() -> None:
    """Each scan of a progressive JPEG is decoded over the whole picture: thousands of tiny
    ones held the frame gate every printer shares for minutes. A camera's has about ten."""
    frame = np.random.default_rng(2).integers(0, 255, (240, 320, 3), np.uint8)
    progressive = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert decode_image(progressive, 16_000_000).shape == (240, 320, 3)
    scan = _segment(0xDA, b"\x01\x01\x00\x01\x3f\x00") + b"\x00"
    many = progressive[:-2] + scan * 500 + b"\xff\xd9"
    with pytest.raises(capture.BadFrame, match="JPEG of 5.. scans"):
        decode_image(many, 16_000_000)


def test_recorded_frames_cut_and_closed_with_ffd9_are_refused_as_the_cameras_are(
    tmp_path: Path,
) -> None:
    """The trainer, ``calibrate`` and ``score`` read recorded frames through their own reader,
    which passed these frames: a trainer fitted on the grey-filled rest of a cut frame learnt
    it as normal, and ``score`` scored it. One frames contract: refused as the camera refuses
    them, in one line naming the file; the whole frame still read."""
    from watchdog.commands.demo import DEMO_FRAMES
    from watchdog.image_files import UnreadableFrame, read_frame_file

    passed = []
    for path in sorted(DEMO_FRAMES.glob("*.jpg")):
        frame = cv2.resize(cv2.imread(str(path)), (640, 480))
        jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
        whole = tmp_path / f"{path.stem}.jpg"
        whole.write_bytes(jpeg)
        assert read_frame_file(whole).shape == (480, 640, 3)
        for cut in (0.3, 0.45, 0.6, 0.75, 0.9):
            cut_file = tmp_path / f"{path.stem}-{cut}.jpg"
            cut_file.write_bytes(jpeg[: int(len(jpeg) * cut)] + b"\xff\xd9")
            try:
                read_frame_file(cut_file)
                passed.append(cut_file.name)
            except UnreadableFrame as exc:
                assert str(cut_file) in str(exc) and "truncated JPEG" in str(exc), exc
    assert passed == []


def test_a_16_mp_camera_watched_through_a_small_region_is_decoded_at_half_not_whole(
    tmp_path: Path,
) -> None:
    """A region a tenth of a 4608x3456 picture each way needs 1280x640 of frame: the margin
    (four times that) took the picture whole, 48 MB a copy, and the daemon to 236 MB. Past
    4.2 MP the margin gives way: half its size still covers the region pixel for pixel. The
    trainer and ``score`` read a recorded frame of that camera the same way."""
    from watchdog.image_files import read_frame_file

    jpeg = cv2.imencode(".jpg", textured(4608, 3456))[1].tobytes()
    small_region = dataclasses.replace(DEFAULT_INPUT, roi=(0.45, 0.45, 0.55, 0.55))
    need = frame_size_needed(small_region)
    assert need == (1280, 640)
    assert decode_image(jpeg, 16_000_000, need).shape == (1728, 2304, 3)
    recorded = tmp_path / "frame.jpg"
    recorded.write_bytes(jpeg)
    assert read_frame_file(recorded, need).shape == (1728, 2304, 3)
    # a region too small for any reduction to cover it is still decoded whole
    assert decode_image(jpeg, 16_000_000, (2400, 1200)).shape == (3456, 4608, 3)


def test_a_long_video_frame_is_brought_to_the_size_its_jpeg_is_decoded_at() -> None:
    """One frames contract: a video file's 8184x1023 frame stayed whole (4092x511 for a
    3840x900 one) where the same picture as a JPEG is decoded at a quarter; and a 16000x200
    frame, refused as a JPEG, was scored whole."""
    need = frame_size_needed(DEFAULT_INPUT)
    for width, height in ((8184, 1023), (3840, 900)):
        picture = textured(width, height)
        jpeg = cv2.imencode(".jpg", picture)[1].tobytes()
        decoded = decode_image(jpeg, 16_000_000, need)
        assert capture.fit_to_need(picture, need).shape == decoded.shape
    with pytest.raises(BadFrame, match="16000x200 frame: a picture of that shape"):
        capture.fit_to_need(textured(16000, 200), need)
