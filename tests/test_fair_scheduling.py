"""One daemon, several printers: a camera that hangs must not starve the others.

A user with a print farm points one daemon at all the printers. When one webcam hangs (the
connection is accepted and no answer ever comes, as a frozen mjpg-streamer does), the other
printers must still be watched at their own interval. Real parts: `python -m watchdog run` as
a process, two real HTTP snapshot cameras, and a real HTTP server that reads the request and
never answers; the counts come from the daemon's own /metrics.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

from tests.daemon_helpers import DaemonProcess, free_port, wait_until, write_config
from tests.plugins.camera import CameraServer

HUNG_TIMEOUT_S = 60.0  # the hung camera's camera.timeout_s: far longer than the test needs
FRAMES = 8  # scored frames each working printer must reach while the hung request is pending


class HungCamera:
    """Accepts the connection, reads the request, never answers (until closed)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                outer.requests += 1
                outer.release.wait()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/?action=snapshot"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _scored(metrics: str, printer: str) -> float:
    m = re.search(
        rf'^printer_watchdog_scored_frames_total{{printer="{printer}"}} (\S+)$', metrics, re.M
    )
    return float(m.group(1)) if m else 0.0


def _config(tmp_path: Path, port: int, printers: list[dict[str, object]]) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        http={"listen": f"127.0.0.1:{port}"},
        storage={"dir": str(tmp_path / "state")},
        printers=printers,
    )


def test_a_hung_camera_does_not_starve_the_other_printers(tmp_path: Path) -> None:
    cams = [CameraServer(), CameraServer()]
    hung = HungCamera()
    port = free_port()
    cfg = _config(
        tmp_path,
        port,
        [
            {
                "name": "stuck",
                "camera": {"source": hung.url, "interval_s": 0.3, "timeout_s": HUNG_TIMEOUT_S},
            },
            {"name": "mk4", "camera": {"source": cams[0].snapshot_url, "interval_s": 0.3}},
            {"name": "voron", "camera": {"source": cams[1].snapshot_url, "interval_s": 0.3}},
        ],
    )
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:

        def counts() -> dict[str, float] | None:
            assert daemon.alive(), daemon.log[-3000:]
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.RequestException:
                return None
            got = {name: _scored(text, name) for name in ("stuck", "mk4", "voron")}
            return got if min(got["mk4"], got["voron"]) >= FRAMES else None

        got = wait_until(
            f"both working printers to score {FRAMES} frames",
            counts,
            HUNG_TIMEOUT_S - 15,
            on_fail=lambda: daemon.log,
        )
        # The hung camera's one request is still pending: it neither got a frame nor blocked
        # the others, which were scored all along at their own interval.
        assert hung.requests == 1, hung.requests
        assert got["stuck"] == 0, got
        assert cams[0].requests >= FRAMES and cams[1].requests >= FRAMES
    finally:
        # The stuck watcher's request is still pending: the daemon waits up to 15 s for its
        # thread on shutdown, then exits anyway (a longer wait here than DaemonProcess's default).
        code = daemon.stop(timeout=40)
        hung.close()
        for cam in cams:
            cam.close()
    assert code == 0, daemon.log[-3000:]


def test_a_camera_sending_broken_frames_does_not_hold_up_the_other_printers(
    tmp_path: Path,
) -> None:
    """Frames are decoded one at a time for all printers (watchdog/frame_gate.py). A frame
    that fails to decode is refused after the gate was entered: the others must go on."""
    broken, good = CameraServer(), CameraServer()
    broken.set_fault("truncated")
    port = free_port()
    cfg = _config(
        tmp_path,
        port,
        [
            {"name": "broken", "camera": {"source": broken.snapshot_url, "interval_s": 0.2}},
            {"name": "mk4", "camera": {"source": good.snapshot_url, "interval_s": 0.2}},
        ],
    )
    daemon = DaemonProcess(cfg, tmp_path / "daemon.log")
    try:

        def scored() -> float | None:
            assert daemon.alive(), daemon.log[-3000:]
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.RequestException:
                return None
            return _scored(text, "mk4") if broken.requests >= FRAMES else None

        first = wait_until("the broken camera to be asked for frames", scored, 60)
        got = wait_until(
            f"the working printer to score {FRAMES} more frames",
            lambda: n if (n := scored()) is not None and n >= first + FRAMES else None,
            60,
            on_fail=lambda: daemon.log,
        )
        assert got >= first + FRAMES
        assert "truncated JPEG" in daemon.log
    finally:
        code = daemon.stop()
        broken.close()
        good.close()
    assert code == 0, daemon.log[-3000:]
