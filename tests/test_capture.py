"""Camera sources against a real HTTP camera on 127.0.0.1 and real files.

Every camera fault a user or a hostile camera can cause gives ``None`` and a counted bad frame or error, never an
exception, and the camera gives frames again once the fault is gone. Only the V4L2 device is
mocked (there is no /dev/video* and no v4l2loopback on the test machines).
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np
import pytest

from tests.daemon_helpers import wait_until
from tests.plugins.camera import (
    PRIVATE_PASSWORD,
    PRIVATE_USER,
    CameraServer,
    bomb_jpeg,
    bomb_png,
    synthetic_frame,
)
from watchdog.config import CameraConfig
from watchdog.devices import capture
from watchdog.devices.capture import (
    Camera,
    CameraSourceError,
    MjpegCamera,
    StreamCamera,
    image_size,
    mjpeg_parts,
    natural_key,
    open_camera,
)

FAST = (0.05, 0.2)  # backoff for tests: the same doubling, in tenths of a second


def cam_cfg(source: int | str, **kw: object) -> CameraConfig:
    kw.setdefault("timeout_s", 5.0)
    return CameraConfig(source=source, **kw)


def read_until(
    cam: Camera, pred: Callable[[np.ndarray | None], bool], timeout: float = 30.0
) -> np.ndarray | None:
    """Read until pred(frame) holds, for at most ``timeout`` seconds (an offline camera answers
    at once, so a count of reads would be a few seconds of a stream's start on a busy box)."""
    frame = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = cam.read()
        if pred(frame):
            return frame
        time.sleep(0.05)
    raise AssertionError(
        f"condition not reached; online={cam.online} last_error={cam.last_error!r}"
    )


@pytest.fixture
def opened() -> object:
    cams: list[Camera] = []

    def _open(source: int | str, **kw: object) -> Camera:
        cam = open_camera(cam_cfg(source, **kw), backoff=FAST)
        cams.append(cam)
        return cam

    yield _open
    for cam in cams:
        cam.close()


# --------------------------------------------------------------------------- snapshots


@pytest.mark.parametrize("path", ["/snapshot", "/?action=snapshot"])
def test_snapshot_gives_the_served_frame(camera_server: CameraServer, opened, path: str) -> None:
    frame = synthetic_frame(3)
    camera_server.set_frames([frame])
    cam = opened(camera_server.url + path)
    got = cam.read()
    assert got is not None and got.shape == frame.shape and got.dtype == np.uint8
    assert np.abs(got.astype(int) - frame).mean() < 4  # JPEG round trip
    assert cam.online and cam.stats.frames == 1 and cam.stats.bad_frames == 0


@pytest.mark.parametrize(
    "fault",
    [
        "html",
        "empty",
        "truncated",
        "garbage",
        "bomb_png",
        "bomb_jpeg",
        "oversized",
        "oversized_stream",
    ],
)
def test_snapshot_fault_is_a_counted_bad_frame_then_frames_again(
    camera_server: CameraServer, opened, fault: str
) -> None:
    cam = opened(camera_server.snapshot_url, max_bytes=200_000)
    assert cam.read() is not None
    camera_server.set_fault(fault)
    assert cam.read() is None
    assert cam.stats.bad_frames == 1 and cam.stats.frames == 1
    assert cam.last_error
    camera_server.set_fault(None)
    assert cam.read() is not None
    assert cam.stats.frames == 2 and cam.online


def test_oversized_body_is_not_read_to_the_end(camera_server: CameraServer, opened) -> None:
    cam = opened(camera_server.snapshot_url, max_bytes=200_000)
    camera_server.set_fault("oversized_stream")
    assert cam.read() is None
    assert "max_bytes" in cam.last_error
    assert camera_server.oversized_sent < 64 * 1024 * 1024  # of the 1 GB the server offered


def test_decompression_bomb_is_refused_from_its_header(
    camera_server: CameraServer, opened, monkeypatch
) -> None:
    decoded: list[int] = []
    real = cv2.imdecode
    monkeypatch.setattr(capture.cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    cam = opened(camera_server.snapshot_url)
    for fault in ("bomb_png", "bomb_jpeg"):
        camera_server.set_fault(fault)
        assert cam.read() is None
        assert "30000x30000" in cam.last_error
    assert decoded == []  # refused before any decoding


def test_image_size_reads_headers() -> None:
    png = cv2.imencode(".png", synthetic_frame(1, 33, 21))[1].tobytes()
    jpg = cv2.imencode(".jpg", synthetic_frame(1, 33, 21))[1].tobytes()
    assert image_size(png) == (33, 21) and image_size(jpg) == (33, 21)
    with pytest.raises(capture.BadFrame):
        image_size(b"GIF89a....")


@pytest.mark.parametrize("channels", [1, 4])
def test_grey_and_alpha_frames_become_bgr(
    camera_server: CameraServer, opened, channels: int
) -> None:
    camera_server.set_frames([synthetic_frame(2, channels=channels)])
    cam = opened(camera_server.snapshot_url)
    got = cam.read()
    assert got is not None and got.shape == (120, 160, 3)


def test_a_frame_of_another_size_is_still_a_frame(camera_server: CameraServer, opened) -> None:
    cam = opened(camera_server.snapshot_url)
    camera_server.set_frames([synthetic_frame(1, 160, 120)])
    assert cam.read().shape == (120, 160, 3)
    camera_server.set_frames([synthetic_frame(1, 320, 200)])
    assert cam.read().shape == (200, 320, 3)
    assert cam.stats.bad_frames == 0


def test_frame_above_max_pixels_is_refused(camera_server: CameraServer, opened) -> None:
    camera_server.set_frames([synthetic_frame(1, 160, 120)])  # 19200 pixels
    cam = opened(camera_server.snapshot_url, max_pixels=10_000)
    assert cam.read() is None
    assert cam.stats.bad_frames == 1 and "max_pixels" in cam.last_error


def test_camera_down_backs_off_without_blocking_and_comes_back(
    camera_server: CameraServer, opened, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="watchdog.devices.capture")
    cam = opened(camera_server.snapshot_url)
    assert cam.read() is not None
    camera_server.set_fault("down")
    assert cam.read() is None
    assert not cam.online and cam.stats.errors == 1 and cam.last_error
    asked = camera_server.requests
    assert cam.read() is None  # in backoff: answered at once, the camera is not asked
    assert camera_server.requests == asked
    read_until(cam, lambda f: cam.stats.errors >= 3)  # retried, still down
    camera_server.set_fault(None)
    read_until(cam, lambda f: f is not None)
    assert cam.online
    offline_lines = [r for r in caplog.records if "offline" in r.getMessage()]
    assert len(offline_lines) == 1  # logged once, not per retry
    assert any("back online" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fault", ["slow", "slow_unsized"])
def test_camera_dripping_bytes_is_given_up_after_the_timeout(
    camera_server: CameraServer, opened, fault: str
) -> None:
    """Without a Content-Length the socket shut at the deadline read as the body's end: the
    camera was said to send corrupt frames (five reads to go offline), not to be too slow."""
    cam = opened(camera_server.snapshot_url, timeout_s=0.5)
    camera_server.set_fault(fault)
    assert cam.read() is None
    assert not cam.online and "timeout_s" in cam.last_error, cam.last_error
    host = camera_server.url.split("://", 1)[1]  # which camera, among a farm's
    assert cam.last_error.startswith(f"{host}: the snapshot took longer"), cam.last_error
    camera_server.set_fault(None)
    read_until(cam, lambda f: f is not None)


@pytest.mark.parametrize("path", ["/snapshot", "/?action=stream"])
def test_a_camera_answering_in_one_byte_chunks_is_offline_for_that_not_read_to_its_timeout(
    camera_server: CameraServer, opened, path: str
) -> None:
    """An endless chunked reply of 1-byte chunks: each chunk a turn of Python, it kept a core
    busy for each attempt's whole camera.timeout_s, and was then said to be slow. It is given
    up after a few thousand such pieces, offline with backoff, for what it does."""
    camera_server.set_fault("crumbs")
    cam = opened(camera_server.url + path, timeout_s=5.0)
    assert cam.read() is None
    wait_until("offline", lambda: not cam.online and cam.last_error, 10)
    host = camera_server.url.split("://", 1)[1]
    assert f"{host} sends its data a few bytes at a time" in cam.last_error, cam.last_error
    camera_server.set_fault(None)
    read_until(cam, lambda f: f is not None)


def test_camera_dripping_its_headers_is_given_up_after_the_timeout(
    camera_server: CameraServer, opened
) -> None:
    """Each byte arrives within the timeout, so no single wait times out: the whole answer,
    headers included, must come within camera.timeout_s (it held the watcher, then systemd
    restarted the daemon for a missed watchdog ping)."""
    cam = opened(camera_server.snapshot_url, timeout_s=0.5)
    camera_server.set_fault("slow_headers")
    started = time.monotonic()
    assert cam.read() is None
    assert time.monotonic() - started < 5, "the read was not cut at the timeout"
    assert not cam.online and "timeout_s=0.5" in cam.last_error, cam.last_error
    camera_server.set_fault(None)
    read_until(cam, lambda f: f is not None)


def test_a_stream_dripping_its_headers_lets_go_of_its_thread_and_socket_on_close(
    camera_server: CameraServer,
) -> None:
    """An MJPEG stream whose headers come a byte at a time, each within the timeout: its reader
    gives up at camera.timeout_s, so closing the camera (every reload does) ends its thread
    and its connection instead of leaving them behind."""
    camera_server.set_fault("slow_headers")
    url = camera_server.url + "/?action=stream"
    cam = open_camera(cam_cfg(url, timeout_s=0.5), backoff=FAST)
    assert cam.read() is None
    wait_until("the first try given up", lambda: "0.5" in (cam.last_error or ""), 10)
    assert not cam.online
    cam.close()
    assert not cam._thread.is_alive(), "the stream's reader outlived close()"
    camera_server.set_fault(None)


def test_a_slow_stream_lets_go_of_its_thread_and_socket_at_once_on_close(
    camera_server: CameraServer,
) -> None:
    """A stream sending a part every 5 s: close() waited for the next part (3 s, past a
    reload's 2 s) and left its reader connected, where a camera serving one client at a time
    then refused the new reader."""
    camera_server.fps = 0.2
    cam = open_camera(cam_cfg(camera_server.url + "/?action=stream", timeout_s=10), backoff=FAST)
    try:
        read_until(cam, lambda f: f is not None, timeout=20)
        began = time.monotonic()
        cam.close()
        took = time.monotonic() - began
        assert not cam._thread.is_alive(), "the stream's reader outlived close()"
        assert took < 1.0, f"close() took {took:.1f} s"
    finally:
        cam.close()
        camera_server.fps = 25.0


def test_http_error_is_offline(camera_server: CameraServer, opened) -> None:
    camera_server.set_fault("http_500")
    cam = opened(camera_server.snapshot_url)
    assert cam.read() is None
    assert not cam.online and "500" in cam.last_error


def test_a_run_of_bad_frames_counts_as_offline(camera_server: CameraServer, opened) -> None:
    camera_server.set_fault("html")
    cam = opened(camera_server.snapshot_url)
    for _ in range(capture.BAD_RUN_OFFLINE):
        assert cam.read() is None
    assert cam.stats.bad_frames == capture.BAD_RUN_OFFLINE
    assert not cam.online and "bad frames in a row" in cam.last_error


def test_url_secrets_stay_out_of_errors_and_logs(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    cam = open_camera(
        cam_cfg("http://admin:hunter2@127.0.0.1:9/snap?token=s3cr3t", timeout_s=1), backoff=FAST
    )
    try:
        assert cam.read() is None
        assert not cam.online
        text = cam.last_error + "\n".join(r.getMessage() for r in caplog.records)
        assert "hunter2" not in text and "s3cr3t" not in text
    finally:
        cam.close()


def test_credentials_in_the_url_are_sent_and_kept_across_a_redirect_on_the_same_host(
    camera_server: CameraServer, opened
) -> None:
    """Webcams behind a password are configured as http://user:password@host/...; the
    password may hold URL-escaped characters, and letters outside Latin-1 (sent as UTF-8)."""
    host = camera_server.url.split("://", 1)[1]
    user, password = quote(PRIVATE_USER, safe=""), quote(PRIVATE_PASSWORD, safe="")
    for path in ("/private", "/moved"):
        cam = opened(f"http://{user}:{password}@{host}{path}")
        assert cam.read() is not None, cam.last_error
    wrong = opened(f"http://{user}:nope@{host}/private")
    assert wrong.read() is None
    # which camera, and what to fix (the offline notice says it): "HTTP 401" alone said neither
    assert wrong.last_error == (
        f"{host}: HTTP 401 Unauthorized: the camera refused its user name or password"
    ), wrong.last_error
    # none given: it was said to refuse a user name and password that were never set
    refused = opened(camera_server.url + "/private")
    assert refused.read() is None
    assert refused.last_error == (
        f"{host}: HTTP 401 Unauthorized: the camera asks for a user name and password; "
        "give them in its URL, before the host"
    ), refused.last_error


def test_credentials_in_the_url_never_follow_a_redirect_to_another_server(
    camera_server: CameraServer, opened
) -> None:
    other = CameraServer()  # another port: another server, which must not get the password
    try:
        host = camera_server.url.split("://", 1)[1]
        user, password = quote(PRIVATE_USER, safe=""), quote(PRIVATE_PASSWORD, safe="")
        to = quote(other.url + "/private", safe="")
        cam = opened(f"http://{user}:{password}@{host}/away?to={to}")
        assert cam.read() is None
        assert "HTTP 401" in cam.last_error and other.requests == 1
        # the server that refused is named, not the one configured (which answered), and
        # the user is not told to add the password the URL already has
        other_host = other.url.split("://", 1)[1]
        assert cam.last_error.startswith(f"{other_host}: HTTP 401"), cam.last_error
        assert "never follow a redirect to another host" in cam.last_error, cam.last_error
        # sent away and back: the camera's own host gets its password again
        back = quote(camera_server.url + "/private", safe="")
        there_and_back = quote(f"{other.url}/away?to={back}", safe="")
        cam = opened(f"http://{user}:{password}@{host}/away?to={there_and_back}")
        assert cam.read() is not None, cam.last_error
    finally:
        other.close()


@pytest.mark.parametrize("stream", [False, True])
def test_a_redirect_to_an_invalid_address_is_a_camera_error_that_is_retried(
    camera_server: CameraServer, opened, stream: bool
) -> None:
    to = quote("http://127.0.0.1:70000/snap", safe="")
    cam = opened(camera_server.url + f"/away?to={to}" + ("&action=stream" if stream else ""))
    # tried, failed, tried again after the backoff (a stream's reader thread goes on trying)
    wait_until("two failed attempts", lambda: cam.read() is None and cam.stats.errors >= 2, 10)
    assert "not a valid address" in cam.last_error and not cam.online


@pytest.mark.parametrize("stream", [False, True])
def test_a_redirect_to_a_host_that_cannot_be_reached_names_that_host(
    camera_server: CameraServer, opened, stream: bool
) -> None:
    """The camera answers with a redirect to a port where nothing listens, or to a host that
    takes the connection and never answers: the owner was sent to the camera that answered
    ("cannot connect to <camera>: connection refused", "no answer from <camera>")."""
    to = quote("http://127.0.0.1:9/snap", safe="")
    cam = opened(camera_server.url + f"/away?to={to}" + ("&action=stream" if stream else ""))
    wait_until("a failed attempt", lambda: cam.read() is None and cam.stats.errors >= 1, 10)
    assert cam.last_error.startswith("cannot connect to 127.0.0.1:9: connection refused"), (
        cam.last_error
    )
    with socket.socket() as silent:  # its connections wait, never accepted, never answered
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        host = f"127.0.0.1:{silent.getsockname()[1]}"
        to = quote(f"http://{host}/snap", safe="")
        url = camera_server.url + f"/away?to={to}" + ("&action=stream" if stream else "")
        cam = opened(url, timeout_s=1.0)
        wait_until("a failed attempt", lambda: cam.read() is None and cam.stats.errors >= 1, 10)
        assert cam.last_error == f"no answer from {host} within 1 s (timed out)", cam.last_error


# --------------------------------------------------------------------------- MJPEG streams


def test_mjpeg_stream_by_action(camera_server: CameraServer, opened) -> None:
    cam = opened(camera_server.url + "/?action=stream")
    assert isinstance(cam, MjpegCamera)
    got = read_until(cam, lambda f: f is not None)
    assert got.shape == (120, 160, 3) and cam.online


def test_stream_url_is_recognised_by_its_content_type(camera_server: CameraServer, opened) -> None:
    cam = opened(camera_server.stream_url)  # "/stream": no hint in the URL
    got = read_until(cam, lambda f: f is not None)
    assert got.shape == (120, 160, 3)
    assert cam.kind == "mjpeg stream"


def test_stream_switches_frames_at_run_time(camera_server: CameraServer, opened) -> None:
    cam = opened(camera_server.url + "/?action=stream")
    camera_server.set_frames([np.zeros((120, 160, 3), np.uint8)])
    read_until(cam, lambda f: f is not None and f.mean() < 10)
    camera_server.set_frames([np.full((120, 160, 3), 255, np.uint8)])
    read_until(cam, lambda f: f is not None and f.mean() > 240)


def test_a_stream_whose_reader_could_not_start_starts_it_at_a_later_read(
    camera_server: CameraServer, opened, monkeypatch
) -> None:
    """No thread left once (the unit's task limit): the camera stayed offline for good, every
    read waiting out its timeout, until a reload."""
    cam = opened(camera_server.url + "/?action=stream")
    real_start = threading.Thread.start
    refusals = []

    def start_once_refused(self: threading.Thread) -> None:
        if not refusals:
            refusals.append(self)
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start_once_refused)
    assert cam.read() is None and not cam.online
    assert "cannot start its reader" in (cam.last_error or "")
    got = read_until(cam, lambda f: f is not None)
    assert got.shape == (120, 160, 3) and cam.online and refusals


def test_stream_that_stops_goes_offline_and_comes_back(camera_server: CameraServer, opened) -> None:
    cam = opened(camera_server.url + "/?action=stream")
    read_until(cam, lambda f: f is not None)
    camera_server.stop_after = 0
    camera_server.set_fault("stream_stop")
    read_until(cam, lambda f: not cam.online)
    assert cam.read() is None and cam.stats.errors >= 1
    camera_server.set_fault(None)
    read_until(cam, lambda f: f is not None)
    assert cam.online


def test_a_stream_that_keeps_ending_is_said_once_not_at_every_reconnection(
    camera_server: CameraServer, opened, caplog, monkeypatch
) -> None:
    """A stream that ends every second or so (a proxy's timeout, an ESP32-CAM): each
    reconnection wrote "offline: stream ended" and "back online", 145 lines in 90 s. It is
    said to keep dropping (once in ten minutes), still retried at once (watched), said
    steady again once it stays; an outage after it is said as one, and its end too."""
    monkeypatch.setattr(capture, "FLAP_STEADY_S", 2.0)
    monkeypatch.setattr(capture, "FLAP_OUTAGE_S", 1.0)
    cam = opened(camera_server.url + "/?action=stream")
    read_until(cam, lambda f: f is not None)
    camera_server.stop_after = 2
    with caplog.at_level(logging.INFO, logger="watchdog.devices.capture"):
        camera_server.set_fault("stream_stop")
        read_until(cam, lambda f: cam.stats.errors >= 8, timeout=60)
        said = [r.getMessage() for r in caplog.records]
        assert len([ln for ln in said if "offline" in ln]) == 3, said  # 2 drops, then a summary
        assert len([ln for ln in said if "back online" in ln]) == 2, said
        assert "keeps going offline soon after it comes back" in said[-1], said
        assert "last: stream ended" in said[-1], said
        assert re.search(r"\(3 times in the last \d+ s;", said[-1]), said[-1]  # not "0 min"
        camera_server.set_fault(None)
        read_until(cam, lambda f: "steady again" in caplog.text, timeout=60)
        assert cam.online
        for _ in range(3):  # dropping again, then gone for a while: an outage
            camera_server.set_fault("stream_stop")
            read_until(cam, lambda f: not cam.online, timeout=30)
            camera_server.set_fault(None)
            read_until(cam, lambda f: cam.online, timeout=30)
        caplog.clear()
        camera_server.set_fault("down")
        read_until(cam, lambda f: "offline:" in caplog.text, timeout=60)
        camera_server.set_fault(None)
        read_until(cam, lambda f: "back online" in caplog.text, timeout=60)


def test_a_stream_that_sends_bytes_but_no_whole_frame_goes_offline_and_comes_back(
    camera_server: CameraServer, opened
) -> None:
    """A stalled encoder or a proxy dripping its bytes: the connection is alive, but no whole
    frame comes. It looked online for good, the printer unwatched and nobody told."""
    cam = opened(camera_server.url + "/?action=stream", timeout_s=1.0)
    read_until(cam, lambda f: f is not None)
    camera_server.set_fault("stream_drip")
    read_until(cam, lambda f: not cam.online)
    assert "no whole frame within camera.timeout_s=1" in cam.last_error
    camera_server.set_fault(None)
    read_until(cam, lambda f: f is not None)
    assert cam.online


@pytest.mark.parametrize(
    "fault", ["html", "empty", "truncated", "garbage", "bomb_png", "bomb_jpeg", "oversized"]
)
def test_stream_fault_parts_are_counted_bad_frames_then_frames_again(
    camera_server: CameraServer, opened, monkeypatch, fault: str
) -> None:
    decoded: list[int] = []
    real = cv2.imdecode
    monkeypatch.setattr(
        capture.cv2, "imdecode", lambda *a: decoded.append(a[0].tobytes()) or real(*a)
    )
    cam = opened(camera_server.url + "/?action=stream", max_bytes=200_000)
    read_until(cam, lambda f: f is not None)
    camera_server.set_fault(fault)
    read_until(cam, lambda f: cam.stats.bad_frames >= 2)
    assert cam.online  # the stream is up; its parts are junk
    if fault.startswith("bomb") or fault == "oversized":
        assert max(map(len, decoded)) < 200_000  # the 2 MB parts never reached the decoder
        assert bomb_png() not in decoded and bomb_jpeg() not in decoded
        assert ("30000x30000" if fault.startswith("bomb") else "max_bytes") in cam.last_error
    camera_server.set_fault(None)
    read_until(cam, lambda f: f is not None)


def test_a_stream_with_a_part_too_large_between_pictures_gives_the_pictures_and_stays_online(
    camera_server: CameraServer, opened
) -> None:
    """A part over camera.max_bytes between every two pictures (an encoder's burst): each one
    took the place of the picture before it, so reads found mostly refusals and the stream
    went offline and online again every few seconds. The pictures are read; the parts too
    large are counted when no picture comes instead."""
    cam = opened(camera_server.url + "/?action=stream", max_bytes=200_000)
    read_until(cam, lambda f: f is not None)
    camera_server.set_fault("oversized_between")
    frames = [cam.read() for _ in range(30)]
    assert sum(f is not None for f in frames) == 30, cam.last_error
    assert cam.online and cam.stats.errors == 0
    camera_server.set_fault("oversized")  # and nothing but parts too large: each is refused
    read_until(cam, lambda f: cam.stats.bad_frames >= 2)
    assert "max_bytes" in cam.last_error


def test_a_stream_of_parts_that_are_no_pictures_is_offline_not_online_for_good(
    camera_server: CameraServer, opened
) -> None:
    """An MJPEG URL answering an error page in every part: nothing is watched, so the owner
    must see the camera offline (it looked online for good). Once the pictures come back it
    is online again without a restart."""
    camera_server.set_fault("html")
    cam = opened(camera_server.url + "/?action=stream")
    wait_until("offline", lambda: cam.read() is None and "in a row refused" in cam.last_error, 20)
    assert not cam.online and cam.stats.errors >= 1
    camera_server.set_fault(None)
    read_until(cam, lambda f: f is not None)
    assert cam.online
    camera_server.set_fault("garbage")  # and junk again, mid-stream
    wait_until("offline again", lambda: cam.read() is None and not cam.online, 30)
    camera_server.set_fault(None)
    read_until(cam, lambda f: f is not None)


@pytest.mark.parametrize("channels", [1, 4])
def test_stream_png_parts_with_1_or_4_channels_become_bgr(
    camera_server: CameraServer, opened, channels: int
) -> None:
    camera_server.set_frames([synthetic_frame(5, channels=channels)])
    cam = opened(camera_server.stream_url)
    assert read_until(cam, lambda f: f is not None).shape == (120, 160, 3)


def test_mjpeg_parts_split_with_and_without_content_length() -> None:
    a, b = b"\xff\xd8AAAA\xff\xd9", b"\xff\xd8BB\r\nBB\xff\xd9"
    body = (
        b"--xx\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(a), a)
        + b"--xx\r\nContent-Type: image/jpeg\r\n\r\n"
        + b
        + b"\r\n"
        + b"--xx\r\nContent-Length: 150000\r\n\r\n"
        + b"\x00" * 150_000
        + b"\r\n"
        + b"--xx\r\nContent-Length: %d\r\n\r\n%s\r\n--xx" % (len(a), a)
    )
    for size in (1, 7, 4096, len(body)):  # however the bytes arrive
        chunks = (body[i : i + size] for i in range(0, len(body), size))
        parts = list(mjpeg_parts(chunks, b"--xx", 100_000))
        assert parts[:2] == [a, b] and isinstance(parts[2], capture.BadFrame) and parts[3] == a


def test_rtsp_style_ffmpeg_capture_reads_a_real_stream(camera_server: CameraServer) -> None:
    """The cv2/FFmpeg path used for RTSP, exercised on the real MJPEG stream (no RTSP server here)."""
    url = camera_server.url + "/?action=stream"
    cam = StreamCamera(cam_cfg(url), url, "ffmpeg", None, FAST)
    try:
        assert read_until(cam, lambda f: f is not None).shape == (120, 160, 3)
        camera_server.stop_after = 0
        camera_server.set_fault("stream_stop")
        read_until(cam, lambda f: not cam.online)
        camera_server.set_fault(None)
        read_until(cam, lambda f: f is not None)
    finally:
        cam.close()
    assert not cam._thread.is_alive()


def test_an_ffmpeg_stream_whose_frames_are_all_refused_goes_offline_and_comes_back(
    camera_server: CameraServer,
) -> None:
    """The RTSP/USB path: frames too large for camera.max_pixels, every one refused. The camera
    must go offline (it stayed online for good, its bad frames only counted) and be online again
    once its frames are accepted, without a restart."""
    url = camera_server.url + "/?action=stream"
    cam = StreamCamera(cam_cfg(url), url, "ffmpeg", None, FAST)
    try:
        read_until(cam, lambda f: f is not None)
        cam.cfg = cam_cfg(url, max_pixels=10_000)  # the stream's 160x120 frames are now too large
        wait_until("offline", lambda: cam.read() is None and not cam.online, 30)
        assert "max_pixels" in cam.last_error, cam.last_error
        cam.cfg = cam_cfg(url)
        read_until(cam, lambda f: f is not None)
        assert cam.online
    finally:
        cam.close()


def test_an_unexpected_error_reducing_a_streams_frame_does_not_end_its_grab_thread(
    camera_server: CameraServer, monkeypatch
) -> None:
    """A stream's frame is reduced in the camera's grab thread: an error there (injected:
    no stream here makes OpenCV's resize fail) ended the thread for good, the camera online
    and every read waiting on it. It is a bad frame, and the next ones are read."""
    from watchdog.devices import capture

    url = camera_server.url + "/?action=stream"
    cam = StreamCamera(cam_cfg(url), url, "ffmpeg", None, FAST)
    reduce = capture.fit_to_need
    failures = [RuntimeError("resize failed")]

    def failing_once(frame, need):
        if failures:
            raise failures.pop()
        return reduce(frame, need)

    try:
        read_until(cam, lambda f: f is not None)
        monkeypatch.setattr(capture, "fit_to_need", failing_once)
        read_until(cam, lambda f: not failures and f is not None)
        assert cam.stats.bad_frames >= 1 and cam._thread.is_alive()
    finally:
        cam.close()


def test_stream_thread_stops_on_close_and_on_stop_event(camera_server: CameraServer) -> None:
    stop = threading.Event()
    a = open_camera(cam_cfg(camera_server.url + "/?action=stream"), stop, backoff=FAST)
    b = open_camera(cam_cfg(camera_server.url + "/?action=stream"), stop, backoff=FAST)
    assert not a._thread.is_alive(), "a camera is read from its first read, not when built"
    read_until(a, lambda f: f is not None)
    read_until(b, lambda f: f is not None)
    a.close()
    assert not a._thread.is_alive()
    stop.set()
    b._thread.join(timeout=10)
    assert not b._thread.is_alive() and b.read() is None
    b.close()


# --------------------------------------------------------------------------- files


def test_folder_in_natural_order_once(tmp_path: Path) -> None:
    for i in range(1, 12):
        cv2.imwrite(str(tmp_path / f"frame_{i}.png"), np.full((24, 32), i * 20, np.uint8))
    (tmp_path / "frame_5.png").write_bytes(
        b"\x89PNG\r\n\x1a\n broken"
    )  # replaced by a corrupt file
    (tmp_path / "notes.txt").write_text("not a frame")
    cam = open_camera(cam_cfg(str(tmp_path)))
    seen = []
    while not cam.exhausted:
        frame = cam.read()
        seen.append(None if frame is None else int(frame[0, 0, 0]) // 20)
    # the end is the read after the last file (a last file that cannot be read is a bad
    # frame like the others, not the end)
    assert seen == [1, 2, 3, 4, None, 6, 7, 8, 9, 10, 11, None]
    assert cam.stats.frames == 10 and cam.stats.bad_frames == 1
    assert cam.read() is None and cam.online  # local files never go "offline"
    assert natural_key("frame_9.jpg") < natural_key("frame_10.jpg")


def test_a_folder_of_several_prints_is_read_print_by_print(tmp_path: Path) -> None:
    """The Kaggle set's names: print ``scratch`` is ``scratch_<n>.jpg`` and print
    ``scratch_2`` is ``scratch_2_<n>.jpg``. In name order ``scratch_2.jpg`` and
    ``scratch_3.jpg`` fell among the other print's frames, and ``replay`` judged one print in
    three pieces, each learnt afresh, where the trainer grouped it whole."""
    names = [f"scratch_{i}" for i in range(5)] + [f"scratch_2_{i}" for i in range(3)]
    for name in names:
        cv2.imwrite(str(tmp_path / f"{name}.jpg"), np.full((24, 32), 128, np.uint8))
    cam = open_camera(cam_cfg(str(tmp_path)))
    order = [p.stem for p in cam.paths]
    assert order == names, order
    cam.close()


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_video_file_plays_once(tmp_path: Path, write_video, suffix: str) -> None:
    frames = [synthetic_frame(i) for i in range(6)]
    path = write_video(tmp_path / f"clip{suffix}", frames)
    cam = open_camera(cam_cfg(str(path)))
    got = []
    while not cam.exhausted:
        frame = cam.read()
        if frame is not None:
            got.append(frame)
    cam.close()
    assert len(got) == len(frames) and got[0].shape == (120, 160, 3)
    assert cam.read() is None


def test_a_video_rebuilt_by_a_reload_goes_on_where_it_was(tmp_path: Path, write_video) -> None:
    """A reload rebuilds every camera: a video read by the old one played again from its
    first frame; one read to its end played again."""
    frames = [synthetic_frame(i) for i in range(6)]
    path = write_video(tmp_path / "clip.avi", frames)
    old = open_camera(cam_cfg(str(path)))
    for _ in range(3):
        assert old.read() is not None
    new = open_camera(cam_cfg(str(path)))
    capture.carry_position(new, old)
    assert new.read() is not None and new.current == Path("clip.avi#3")
    while not old.exhausted:
        old.read()
    ended = open_camera(cam_cfg(str(path)))
    capture.carry_position(ended, old)
    assert ended.read() is None and ended.exhausted
    for cam in (old, new, ended):
        cam.close()


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CameraSourceError, match="no such file"):
        open_camera(cam_cfg(str(tmp_path / "nope.mp4")))
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(CameraSourceError, match="bad.mp4") as err:
        open_camera(cam_cfg(str(tmp_path / "bad.mp4")))
    assert "not a video this watchdog can read" in str(err.value)
    assert "OpenCV" not in str(err.value)  # a library's name means nothing to the owner
    with pytest.raises(CameraSourceError, match="no .jpg"):
        open_camera(cam_cfg(str(tmp_path)))


# --------------------------------------------------------------------------- V4L2 (mocked)


class FakeV4L2:
    """Stands in for cv2.VideoCapture on a USB camera: the test machines have no /dev/video*."""

    present = True
    opened: list[tuple] = []

    def __init__(self, *args: object) -> None:
        FakeV4L2.opened.append(args)
        self._open = FakeV4L2.present
        self._n = 0

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self._open

    def grab(self) -> bool:
        time.sleep(0.01)  # a real device blocks until its next frame
        self._n += 1
        return self._open and FakeV4L2.present

    def retrieve(self) -> tuple[bool, np.ndarray]:
        # a grey (YUYV Y-plane) picture, a new one each frame
        row = (self._n + np.arange(64)) % 256
        return True, np.tile(row.astype(np.uint8), (48, 1))

    def release(self) -> None:
        self._open = False


@pytest.mark.parametrize("source", [0, "0", "/dev/video0"])
def test_v4l2_device_mocked(monkeypatch, source: int | str) -> None:
    monkeypatch.setattr(capture.cv2, "VideoCapture", FakeV4L2)
    monkeypatch.setattr(capture, "device_problem", lambda path: "")  # the mock is the device
    FakeV4L2.present, FakeV4L2.opened = True, []
    cam = open_camera(cam_cfg(source), backoff=FAST)
    try:
        got = read_until(cam, lambda f: f is not None)
        assert got.shape == (48, 64, 3)
        assert FakeV4L2.opened[0][1] == cv2.CAP_V4L2
        FakeV4L2.present = False  # unplugged
        read_until(cam, lambda f: not cam.online)
        assert cam.read() is None and cam.stats.errors >= 1
        FakeV4L2.present = True  # plugged back in
        read_until(cam, lambda f: f is not None)
    finally:
        cam.close()
    assert not cam._thread.is_alive()


class BlackV4L2(FakeV4L2):
    """A USB camera (mocked: no /dev/video* here) sending black, the same pixels every frame:
    a lens cap, a pitch-dark room, a sensor hung on one frame."""

    def retrieve(self) -> tuple[bool, np.ndarray]:
        return True, np.zeros((48, 64), np.uint8)


def test_a_usb_camera_sending_the_same_picture_goes_offline(monkeypatch) -> None:
    monkeypatch.setattr(capture.cv2, "VideoCapture", BlackV4L2)
    monkeypatch.setattr(capture, "device_problem", lambda path: "")  # the mock is the device
    BlackV4L2.present, BlackV4L2.opened = True, []
    cam = open_camera(cam_cfg(0, frozen_after_s=0.5), backoff=FAST)
    try:
        read_until(cam, lambda f: f is not None)
        read_until(cam, lambda f: f is None and not cam.online)
        assert "the very same picture for" in cam.last_error
        for _ in range(20):  # reconnected through its backoff: still offline
            assert cam.read() is None and not cam.online
            time.sleep(0.02)
    finally:
        cam.close()


class SilentV4L2(FakeV4L2):
    """A USB camera (mocked: no /dev/video* here) that opens, then gives no frame: a webcam
    wedged in its driver."""

    def grab(self) -> bool:
        time.sleep(0.01)
        return False


def test_a_camera_that_opens_but_gives_no_frame_is_never_told_back_online(
    monkeypatch, caplog
) -> None:
    """Opened, it was told back online, offline at its first grab, and opened again at once,
    for good: two log lines and a reconnection every cycle, its backoff never grown."""
    monkeypatch.setattr(capture.cv2, "VideoCapture", SilentV4L2)
    monkeypatch.setattr(capture, "device_problem", lambda path: "")  # the mock is the device
    SilentV4L2.present, SilentV4L2.opened = True, []
    cam = open_camera(cam_cfg(0, timeout_s=0.5), backoff=FAST)
    try:
        with caplog.at_level(logging.INFO, "watchdog"):
            for _ in range(15):
                assert cam.read() is None
                time.sleep(0.1)
        assert not cam.online and "no frame after connecting" in cam.last_error
        assert "back online" not in caplog.text
        # its backoff grew to its longest (0.2 s here): not one opening after each failure
        assert len(SilentV4L2.opened) <= 12, len(SilentV4L2.opened)
    finally:
        cam.close()


class WakingFrozenV4L2(FakeV4L2):
    """A USB camera (mocked: no /dev/video* here) hung on one picture, whose every opening
    starts with black frames while it wakes (FFmpeg's grey at an RTSP stream's start alike)."""

    def retrieve(self) -> tuple[bool, np.ndarray]:
        if self._n <= 3:
            return True, np.zeros((48, 64), np.uint8)
        return True, np.tile(np.arange(64, dtype=np.uint8), (48, 1))


def test_a_frozen_camera_whose_openings_start_black_stays_offline(monkeypatch, caplog) -> None:
    """Each reconnection's black first frame was a new picture to the frozen check: the camera
    was told back online at every reconnection and its frozen picture judged as a print."""
    monkeypatch.setattr(capture.cv2, "VideoCapture", WakingFrozenV4L2)
    monkeypatch.setattr(capture, "device_problem", lambda path: "")  # the mock is the device
    FakeV4L2.present, FakeV4L2.opened = True, []  # every mock's openings are counted there
    caplog.set_level(logging.INFO, logger="watchdog.devices.capture")
    cam = open_camera(cam_cfg(0, frozen_after_s=0.5), backoff=FAST)
    try:
        first = read_until(cam, lambda f: f is not None)
        assert int(np.ptp(first)) > 0, "a black wake-up frame was delivered"
        read_until(cam, lambda f: f is None and not cam.online)
        assert "the very same picture for" in cam.last_error
        opened = len(FakeV4L2.opened)
        delivered = 0
        end = time.monotonic() + 3
        while time.monotonic() < end:  # reconnected through its backoff, time and again
            delivered += cam.read() is not None
            time.sleep(0.02)
        assert len(FakeV4L2.opened) > opened + 2, "it was not opened again"
        assert delivered == 0 and not cam.online, delivered
    finally:
        cam.close()
    assert not [r for r in caplog.records if "back online" in r.getMessage()]


def test_a_usb_camera_that_is_not_there_says_so() -> None:
    """No mock: a device that does not exist. OpenCV said "cannot open" (and a warning line of
    its own) for a missing device, a permission problem and a busy one alike."""
    cam = open_camera(cam_cfg("/dev/video99"), backoff=FAST)
    try:
        read_until(cam, lambda f: cam.last_error is not None)
        assert "/dev/video99 does not exist: unplugged, or another number" in str(cam.last_error)
    finally:
        cam.close()


def open_fds() -> int:
    import os

    return len(os.listdir("/proc/self/fd"))


def test_cameras_do_not_leak_file_descriptors(camera_server: CameraServer, opened) -> None:
    snap = opened(camera_server.snapshot_url)
    stream = opened(camera_server.url + "/?action=stream")
    read_until(stream, lambda f: f is not None)
    snap.read()
    before = open_fds()
    for i in range(30):  # snapshots, faults and stream reconnects
        camera_server.set_fault(("html", "down", None)[i % 3])
        snap.read()
        if i % 10 == 0:
            camera_server.set_fault("down")
            read_until(stream, lambda f: not stream.online)
            camera_server.set_fault(None)
            read_until(stream, lambda f: f is not None)
    camera_server.set_fault(None)
    # the test server's handler threads close their last sockets on their own time
    wait_until("descriptors back", lambda: open_fds() <= before + 2, 5)


def test_bad_frames_are_not_logged_per_frame(camera_server: CameraServer, opened, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="watchdog.devices.capture")
    cam = opened(camera_server.snapshot_url)
    for _ in range(6):  # junk and good frames in turn
        camera_server.set_fault("truncated")
        assert cam.read() is None
        camera_server.set_fault(None)
        assert cam.read() is not None
    assert cam.stats.bad_frames == 6
    assert sum("bad frame" in r.getMessage() for r in caplog.records) == 1


def test_a_camera_serving_another_reader_is_waited_for_at_first_then_offline(
    camera_server: CameraServer,
) -> None:
    """A camera that serves one stream at a time answers 503 while another reader has it:
    a first contact tries again for START_GRACE_S (the reader before it, a reload's old
    watcher, may just have let go), and only then says offline, naming the refusal."""
    import http.client

    wait_until("earlier readers gone", lambda: camera_server.streaming == 0, 10)
    camera_server.one_stream = True
    other = http.client.HTTPConnection("127.0.0.1", camera_server.port, timeout=10)
    other.request("GET", "/stream")
    held = other.getresponse()  # another program reads the stream
    cam = open_camera(cam_cfg(camera_server.url + "/?action=stream"), backoff=FAST)
    try:
        started = time.monotonic()
        assert cam.read() is None
        assert time.monotonic() - started >= capture.START_GRACE_S - capture.START_RETRY_S
        assert not cam.online and "503" in cam.last_error
        assert camera_server.streams_refused > 1  # tried again, not once
        held.close()
        other.close()
        frame = read_until(cam, lambda f: f is not None)  # the other reader let go
        assert frame is not None
    finally:
        cam.close()
        other.close()


def test_an_https_camera_whose_certificate_is_not_trusted_says_so_and_takes_a_ca_file(
    bad_tls_server, self_signed_cert, opened
) -> None:
    """A camera behind https with a self-signed certificate was "connection failed or
    dropped": the owner looked for a network fault, and could not tell the daemon to trust
    it (only the printer's API took a CA file)."""
    frame = synthetic_frame(2)
    bad_tls_server.respond(200, cv2.imencode(".jpg", frame)[1].tobytes(), "image/jpeg")
    url = bad_tls_server.url + "/snapshot"
    cam = open_camera(cam_cfg(url, timeout_s=2), backoff=FAST)
    trusted = open_camera(cam_cfg(url, timeout_s=2, ca_file=self_signed_cert[0]), backoff=FAST)
    try:
        assert cam.read() is None
        assert "TLS certificate is not trusted" in cam.last_error, cam.last_error
        assert "set camera.ca_file" in cam.last_error
        got = trusted.read()
        assert got is not None and got.shape == frame.shape, trusted.last_error
        # trusted, but for another name: no advice to set a CA file
        other_name = url.replace("127.0.0.1", "localhost")
        named = opened(other_name, timeout_s=2, ca_file=self_signed_cert[0])
        assert named.read() is None
        assert "certificate names another host" in named.last_error, named.last_error
        assert "ca_file" not in named.last_error
    finally:
        cam.close()
        trusted.close()


def test_a_missing_ca_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    from watchdog.config import ConfigError, parse_config

    missing = tmp_path / "ca.pem"
    for where in ("camera", "api"):
        section = {"source": "https://cam.lan/snap.jpg"} if where == "camera" else {}
        printer: dict[str, object] = {"name": "p", "camera": section}
        if where == "api":
            printer["api"] = {"kind": "moonraker", "url": "https://pi.lan"}
        printer[where] = {**printer[where], "ca_file": str(missing)}  # type: ignore[dict-item]
        with pytest.raises(ConfigError) as err:
            parse_config({"printers": [printer]})
        assert f"printers.0.{where}.ca_file" in str(err.value) and "no such file" in str(
            err.value
        ), err.value


@pytest.mark.parametrize("kind", ["snapshot", "stream"])
def test_a_camera_serving_the_same_picture_goes_offline_until_it_changes(
    camera_server: CameraServer, opened, kind: str
) -> None:
    """ustreamer serves a stand-in picture when its USB camera goes (a frozen camera serves
    its last frame): the stream stays up and every frame decodes, so the print was watched on
    a picture that never changed, and nobody was told. The very same bytes for
    camera.frozen_after_s are offline; a changing picture is online again."""
    url = camera_server.snapshot_url if kind == "snapshot" else camera_server.stream_url
    camera_server.set_frames([synthetic_frame(i) for i in range(1, 5)])
    cam = opened(url, frozen_after_s=1.0)
    started = time.monotonic()
    while time.monotonic() - started < 2.0:  # a live picture stays online
        cam.read()
        assert cam.online, cam.last_error
        time.sleep(0.1)
    camera_server.set_frames([synthetic_frame(3)])  # frozen
    wait_until("frozen: offline", lambda: cam.read() is None and not cam.online, 20)
    assert "the very same picture for" in cam.last_error
    assert "camera.frozen_after_s" in cam.last_error
    assert cam.read() is None  # offline while it stays frozen
    camera_server.set_frames([synthetic_frame(4), synthetic_frame(5)])
    read_until(cam, lambda f: f is not None)
    assert cam.online


@pytest.mark.parametrize("kind", ["snapshot", "stream"])
def test_a_frozen_camera_that_stamps_each_picture_anew_goes_offline(
    camera_server: CameraServer, opened, kind: str
) -> None:
    """A camera that writes its time of sending into each JPEG sends new bytes of one frozen
    picture: compared by its bytes it stayed online for good, while the watcher skipped every
    frame as the same picture again, and the owner was never told the print went unwatched."""
    url = camera_server.snapshot_url if kind == "snapshot" else camera_server.stream_url
    camera_server.set_frames([synthetic_frame(3)])
    camera_server.set_fault("stamped")
    cam = opened(url, frozen_after_s=1.0)
    wait_until("frozen: offline", lambda: cam.read() is None and not cam.online, 20)
    assert "the very same picture for" in cam.last_error
    camera_server.set_frames([synthetic_frame(4), synthetic_frame(5)])
    read_until(cam, lambda f: f is not None)
    assert cam.online


def test_a_still_picture_is_online_when_frozen_pictures_are_not_looked_for(
    camera_server: CameraServer, opened
) -> None:
    camera_server.set_frames([synthetic_frame(3)])
    cam = opened(camera_server.snapshot_url, frozen_after_s=0)
    for _ in range(5):
        assert cam.read() is not None
        time.sleep(0.05)
    assert cam.online


def test_a_camera_found_frozen_stays_offline_across_the_idle_time_and_a_reload() -> None:
    """ustreamer's stand-in picture found frozen at the end of a print is still the stand-in
    picture at the next print, an hour later, and after a settings save rebuilds the camera:
    counted afresh, the next print's first read was "back online" (a push to the owner) and
    the stand-in picture was learnt as the print's look. Only a new picture ends it."""
    from watchdog.devices.frozen import FrozenPicture

    stand_in = b"ustreamer's NO SIGNAL picture"
    frozen = FrozenPicture(after_s=60)
    assert [frozen.frozen_for(stand_in, t) for t in range(0, 70, 10)][-1] == 60
    assert frozen.frozen_for(stand_in, 3600) == 3600  # the next print: still offline
    rebuilt = FrozenPicture(after_s=60)
    rebuilt.carry_on(frozen)
    assert rebuilt.frozen_for(stand_in, 3610) == 3610
    assert rebuilt.frozen_for(b"a live picture", 3620) is None


def test_a_still_scene_across_the_idle_time_between_prints_is_no_freeze() -> None:
    """The camera is read only while a print is watched: the last frame of one print and
    the first of the next may well be the same picture, hours apart. Counted as one
    picture served all along, the next print's camera went "offline" at its third read."""
    from watchdog.devices.frozen import FrozenPicture

    still = b"the same JPEG bytes"
    frozen = FrozenPicture(after_s=60)
    assert [frozen.frozen_for(still, t) for t in (0, 10, 20, 30, 40, 50)] == [None] * 6
    assert frozen.frozen_for(still, 60) == 60  # served a minute, read 7 times: frozen
    frozen = FrozenPicture(after_s=60)
    for t in (0, 10, 20):  # the end of a print
        frozen.frozen_for(still, t)
    later = [frozen.frozen_for(still, 3600 + t) for t in range(0, 60, 10)]  # the next print
    assert later == [None] * 6
    assert frozen.frozen_for(still, 3660) == 60
    # a camera read every 10 minutes: its reads are no idle gaps
    slow = FrozenPicture(after_s=60, interval_s=600)
    assert [slow.frozen_for(still, t) for t in (0, 600, 1200)] == [None, None, 1200]


def test_an_ffmpeg_stream_starting_on_flat_frames_is_read_from_its_first_picture(
    camera_server: CameraServer,
) -> None:
    """The RTSP/USB path: FFmpeg may hand over flat grey frames before an RTSP stream's first
    whole picture (seen with RTP/JPEG), a USB camera black ones while it wakes. Delivered, such
    a frame was one of those the print's start is learnt from. Here a real MJPEG stream read
    through FFmpeg starts on 1.2 s of them (FFmpeg's opening reads the first three at once)."""
    url = camera_server.url + "/?action=stream"
    grey = np.full((120, 160, 3), 128, np.uint8)
    picture = np.zeros((120, 160, 3), np.uint8)
    picture[:, 80:] = (40, 200, 90)
    camera_server.fps = 5.0
    cam = StreamCamera(cam_cfg(url), url, "ffmpeg", None, FAST)
    try:
        camera_server.set_frames([grey] * 6 + [picture] * 40)
        first = read_until(cam, lambda f: f is not None)
        assert int(np.ptp(first)) > 100, "a flat frame was delivered"
        camera_server.set_frames([grey] * 40)  # later flat frames are the camera's picture
        read_until(cam, lambda f: f is not None and int(np.ptp(f)) <= 2)
    finally:
        cam.close()
