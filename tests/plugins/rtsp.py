"""pytest plugin: a real RTSP camera on 127.0.0.1 (GStreamer's RTSP server, ``tests/servers/rtsp_camera.py``).

Fixture ``rtsp_camera``: a factory ``rtsp_camera(image, codec="h264", still=False)`` →
``RtspCamera`` (a live picture; ``still``: the very same picture every frame) with
``url``, ``stop()`` and ``start()`` (the same URL again: a camera that reboots). Every server
is stopped at the end of the test. Skips when the system's GStreamer RTSP server bindings are
missing (``tests/install-servers.sh`` installs them).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.plugins.mosquitto import HOST, free_port

SYSTEM_PYTHON = "/usr/bin/python3"  # the GObject bindings are Debian packages, not wheels
SERVER = Path(__file__).resolve().parents[1] / "servers" / "rtsp_camera.py"
_PROBE = (
    "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
)


def rtsp_server_available() -> bool:
    try:
        return (
            subprocess.run(
                [SYSTEM_PYTHON, "-c", _PROBE], capture_output=True, timeout=30
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


class RtspCamera:
    """One RTSP server process serving an image as a live stream (or frozen: ``still``)."""

    def __init__(self, image_path: Path, codec: str, still: bool = False) -> None:
        image = cv2.imread(str(image_path))
        assert image is not None, f"{image_path}: not a picture"
        self.size = f"{image.shape[1]}x{image.shape[0]}"  # a live picture's noise is its size
        self.image_path = image_path
        self.codec = codec
        self.still = still
        self.port = free_port()
        self.url = f"rtsp://{HOST}:{self.port}/cam"
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        assert self._proc is None, "already running"
        proc = subprocess.Popen(
            [
                SYSTEM_PYTHON,
                str(SERVER),
                "--port",
                str(self.port),
                "--image",
                str(self.image_path),
                "--codec",
                self.codec,
                "--size",
                self.size,
                *(["--still"] if self.still else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready" once it listens, "" if it died
        if line.strip() != "ready":
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise RuntimeError(
                f"RTSP server on port {self.port} did not start: {err.strip()[-500:]}"
            )
        self._proc = proc

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._proc = None


@pytest.fixture
def rtsp_camera(tmp_path: Path) -> Iterator[Callable[..., RtspCamera]]:
    if not rtsp_server_available():
        pytest.skip("GStreamer's RTSP server is not installed (run tests/install-servers.sh)")
    started: list[RtspCamera] = []

    def make(image: np.ndarray, codec: str = "h264", still: bool = False) -> RtspCamera:
        path = tmp_path / f"rtsp-{len(started)}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cam = RtspCamera(path, codec, still)
        started.append(cam)
        cam.start()
        return cam

    yield make
    for cam in started:
        cam.stop()
