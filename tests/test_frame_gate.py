"""The frame gate (watchdog/frame_gate.py): one frame decoded and judged at a time for all the
printers of a daemon, entered by a camera and left by its watcher."""

from __future__ import annotations

import threading

from tests.plugins.camera import CameraServer
from watchdog.config import CameraConfig
from watchdog.devices.capture import AutoHttpCamera, MjpegCamera, open_camera
from watchdog.frame_gate import FrameGate


def _entered_elsewhere(gate: FrameGate, timeout: float = 0.5) -> bool:
    """Whether another thread gets into the gate within ``timeout`` (and leaves it again)."""
    got = threading.Event()

    def other() -> None:
        gate.enter()
        got.set()
        gate.leave()

    threading.Thread(target=other, daemon=True).start()
    return got.wait(timeout)


def test_a_second_thread_waits_until_the_first_leaves() -> None:
    gate = FrameGate()
    gate.enter()
    gate.enter()  # the camera entered; the watcher's own enter is a no-op
    assert not _entered_elsewhere(gate)
    gate.leave()
    gate.leave()  # leaving twice (early, then at the end of the step) is harmless
    assert _entered_elsewhere(gate)


def test_leaving_a_gate_never_entered_frees_nothing() -> None:
    gate = FrameGate()
    gate.leave()
    gate.enter()
    assert not _entered_elsewhere(gate)  # still one slot: the stray leave did not add one
    gate.leave()


def test_a_snapshot_url_that_turns_out_to_be_a_stream_keeps_the_gate(
    camera_server: CameraServer,
) -> None:
    gate = FrameGate()
    cam = open_camera(CameraConfig(source=camera_server.url + "/stream"), gate=gate)
    try:
        assert isinstance(cam, AutoHttpCamera)
        frame = None
        for _ in range(5):
            frame = cam.read()
            if frame is not None:
                break
        assert frame is not None, cam.last_error
        assert isinstance(cam.inner, MjpegCamera) and cam.inner.gate is gate
        assert not _entered_elsewhere(gate)  # decoding entered it; the watcher leaves it
        gate.leave()
        assert _entered_elsewhere(gate)
    finally:
        cam.close()
