"""RTSP cameras for real: GStreamer's RTSP server on 127.0.0.1 streams H.264 (what IP cameras
send) or RTP/JPEG, and the watchdog reads it through OpenCV's FFmpeg, as on a user's Pi."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.daemon_helpers import DaemonProcess, free_port, wait_until, write_config
from tests.test_capture import FAST, cam_cfg, read_until
from watchdog.detection.bundle import Preprocess
from watchdog.devices.capture import open_camera, url_host

# (row, column) centre of each quadrant → its BGR colour
QUADRANTS = {
    (60, 80): (0, 0, 255),
    (60, 240): (0, 255, 0),
    (180, 80): (255, 0, 0),
    (180, 240): (255, 255, 255),
}


def quadrant_image() -> np.ndarray:
    img = np.zeros((240, 320, 3), np.uint8)
    for (y, x), colour in QUADRANTS.items():
        img[y - 60 : y + 60, x - 80 : x + 80] = colour
    return img


def off_colours(frame: np.ndarray) -> list[tuple[tuple[int, int], list[float]]]:
    """Each quadrant whose middle is not its colour, with the colour found there, at whatever
    size the frame came (BGR order kept, nothing cropped)."""
    scale = frame.shape[0] / 240
    wrong = []
    for (y, x), colour in QUADRANTS.items():
        cy, cx, hy, hx = (round(v * scale) for v in (y, x, 30, 40))
        patch = frame[cy - hy : cy + hy, cx - hx : cx + hx].reshape(-1, 3).mean(0)
        if np.abs(patch - colour).max() >= 25:
            wrong.append(((y, x), patch.round().tolist()))
    return wrong


def whole_picture(frame: np.ndarray | None) -> bool:
    """FFmpeg may hand over a flat grey frame before the stream's first whole picture (seen
    once with RTP/JPEG), and, joining or rejoining an H.264 stream between its key frames on a
    loaded machine, a frame partly grey: the picture's colours are judged on the first whole
    one (a frame whose colours are wrong for good is never whole: the read times out)."""
    return frame is not None and float(frame.std()) > 20 and not off_colours(frame)


@pytest.mark.parametrize("codec", ["h264", "mjpeg"])
def test_rtsp_camera_delivers_the_picture_with_its_colours(rtsp_camera, codec: str) -> None:
    server = rtsp_camera(quadrant_image(), codec)
    cam = open_camera(cam_cfg(server.url), backoff=FAST)
    try:
        frame = read_until(cam, whole_picture)
        assert cam.online and cam.kind == "stream"
    finally:
        cam.close()
    assert frame is not None and frame.shape == (240, 320, 3)  # nothing scaled


def test_an_rtsp_frame_larger_than_the_model_needs_is_brought_to_a_snapshots_size(
    rtsp_camera,
) -> None:
    """A stream's frames are decoded whole; carried through the watcher at that size a
    1080p stream's heatmap, incident frame and page copies cost what a snapshot camera's
    never do (its JPEGs are decoded smaller). A stream's frame four times what the model needs
    each way is brought to the size a JPEG of its size is decoded at, its picture kept."""
    model_input = Preprocess(width=16, height=8, roi=(0.0, 0.5, 1.0, 1.0))  # needs 16x16
    cam = open_camera(
        cam_cfg(rtsp_camera(quadrant_image()).url), backoff=FAST, model_input=model_input
    )
    try:
        frame = read_until(cam, whole_picture)
    finally:
        cam.close()
    assert frame is not None and frame.shape == (120, 160, 3)  # 320x240 at half


def test_an_rtsp_stream_too_large_to_decode_on_a_pi_is_refused_naming_its_size(rtsp_camera) -> None:
    """FFmpeg decodes every frame of a stream whole: a 3840x2160 camera took the daemon to
    254 MB, over its 150 MB budget, for pictures a 128x64 model needs none of. A stream over
    about 1920x1080 is refused, the camera offline with its size and what to do."""
    cam = open_camera(
        cam_cfg(rtsp_camera(np.full((1440, 2560, 3), 90, np.uint8)).url), backoff=FAST
    )
    try:
        read_until(cam, lambda f: f is None and "its video is" in cam.last_error, 60)
        assert not cam.online
        assert cam.last_error == (
            "its video is 2560x1440, more than the watchdog decodes (about 1920x1080, "
            "2100000 pixels): give the camera's sub-stream, or set it to a smaller size"
        )
    finally:
        cam.close()


def test_rtsp_camera_goes_offline_and_comes_back_when_the_camera_restarts(rtsp_camera) -> None:
    server = rtsp_camera(quadrant_image())
    cam = open_camera(cam_cfg(server.url, timeout_s=3), backoff=FAST)
    try:
        read_until(cam, lambda f: f is not None)
        server.stop()
        read_until(cam, lambda f: f is None and not cam.online)
        # which camera (host and port, never a password): OpenCV says "cannot open" only
        wait_until(
            "a reopen refused",
            lambda: cam.read() is None and cam.last_error.startswith("cannot open"),
            30,
            lambda: cam.last_error,
        )
        assert cam.last_error == f"cannot open {url_host(server.url)}", cam.last_error
        server.start()
        frame = read_until(cam, lambda f: f is not None)
        assert cam.online and frame.shape == (240, 320, 3)
    finally:
        cam.close()


def test_an_rtsp_camera_frozen_on_one_picture_goes_offline_and_stays_so(rtsp_camera) -> None:
    """An IP camera whose firmware hangs, or an RTSP server repeating its last frame, keeps the
    stream up and every frame decodes: the print was watched on a picture that never changed,
    and nobody was told. The very same decoded picture for camera.frozen_after_s is offline,
    and stays offline (not "back online" at each reconnection); a live camera stays online."""
    live = open_camera(cam_cfg(rtsp_camera(quadrant_image()).url, frozen_after_s=1.0), backoff=FAST)
    frozen = open_camera(
        cam_cfg(rtsp_camera(quadrant_image(), still=True).url, frozen_after_s=1.0), backoff=FAST
    )
    try:
        read_until(live, lambda f: f is not None)
        read_until(frozen, lambda f: f is not None)
        started = time.monotonic()
        while time.monotonic() - started < 3.0:  # a live picture stays online
            live.read()
            assert live.online, live.last_error
            time.sleep(0.1)
        read_until(frozen, lambda f: f is None and not frozen.online)
        assert "the very same picture for" in frozen.last_error
        assert "camera.frozen_after_s" in frozen.last_error
        was_online = []
        started = time.monotonic()
        while time.monotonic() - started < 12.0:  # reconnections (~5 s each) through the backoff
            was_online.append(frozen.read() is not None or frozen.online)
            time.sleep(0.05)
        assert not any(was_online), "a frozen camera was back online at a reconnection"
    finally:
        live.close()
        frozen.close()


@pytest.mark.servers
def test_daemon_watches_an_rtsp_camera_and_pauses_a_real_print(
    tmp_path, rtsp_camera, tiny_bundle, moonraker_server, normal_frames, anomalous_frames
) -> None:
    """`python -m watchdog run` on an H.264 RTSP camera: scores a good print without pausing it;
    the camera restarts showing spaghetti, and the real Moonraker print gets paused."""
    server = rtsp_camera(normal_frames[0])
    http_port = free_port()
    config = write_config(
        tmp_path / "config.yaml",
        model=str(tiny_bundle),
        http={"listen": f"127.0.0.1:{http_port}"},
        storage={"dir": str(tmp_path / "state")},
        printers=[
            {
                "name": "ender3",
                "camera": {"source": server.url, "interval_s": 0.3, "timeout_s": 5},
                "api": {
                    "kind": "moonraker",
                    "url": moonraker_server.url,
                    "api_key": moonraker_server.api_key,
                    "timeout_s": 3,
                    "retries": 2,
                },
                "detection": {"consecutive": 3, "cooldown_s": 600},
            }
        ],
    )
    moonraker_server.start_print()
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    status_url = f"http://127.0.0.1:{http_port}/status"

    def printer_status() -> dict:
        import requests

        try:
            return requests.get(status_url, timeout=2).json()["printers"]["ender3"]
        except (requests.RequestException, ValueError, KeyError):
            return {}

    try:
        first = wait_until(
            "frames scored from the RTSP camera",
            lambda: printer_status().get("frames_this_print", 0) >= 5,
            timeout=90,
            on_fail=lambda: daemon.log,
        )
        assert first and moonraker_server.print_state() == "printing", daemon.log
        server.stop()
        server.image_path.write_bytes(_jpeg(anomalous_frames[0]))
        server.start()
        wait_until(
            "the print paused",
            lambda: moonraker_server.print_state() == "paused",
            timeout=90,
            on_fail=lambda: daemon.log,
        )
    finally:
        assert daemon.stop() == 0, daemon.log


def _jpeg(img: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return buf.tobytes()
