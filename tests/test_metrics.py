"""Metrics follow what the camera and the loop did, per printer, in the daemon's own registry."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from watchdog.config import CameraConfig
from watchdog.devices.capture import open_camera
from watchdog.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.text().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def frames_folder(path: Path, good: int, bad: int) -> Path:
    path.mkdir()
    for i in range(good):
        cv2.imwrite(str(path / f"f{i:02d}.jpg"), np.full((16, 16, 3), i, np.uint8))
    for i in range(bad):
        (path / f"z{i}.jpg").write_bytes(b"\xff\xd8 not really")
    return path


def test_camera_counters_are_added_once_and_survive_a_reopen(tmp_path: Path) -> None:
    m = Metrics()
    m.add_printer("p1")
    assert samples(m)[("printer_watchdog_frames_total", (("printer", "p1"),))] == 0
    cam = open_camera(CameraConfig(source=str(frames_folder(tmp_path / "a", 3, 1))))
    while not cam.exhausted:
        cam.read()
        m.observe_camera("p1", cam)
    m.observe_camera("p1", cam)  # no new frames: nothing added twice
    s = samples(m)
    assert s[("printer_watchdog_frames_total", (("printer", "p1"),))] == 3
    assert s[("printer_watchdog_bad_frames_total", (("printer", "p1"),))] == 1
    assert s[("printer_watchdog_camera_online", (("printer", "p1"),))] == 1
    again = open_camera(
        CameraConfig(source=str(frames_folder(tmp_path / "b", 2, 0)))
    )  # reopened: counts from 0
    again.read()
    m.observe_camera("p1", again)
    assert samples(m)[("printer_watchdog_frames_total", (("printer", "p1"),))] == 4


def test_scores_actions_errors_by_printer_and_registries_are_separate() -> None:
    a, b = Metrics(), Metrics()
    a.observe_score("p1", 0.5, 0.2, True, 0.03)
    a.observe_score("p1", 0.1, 0.2, False, 0.02)
    a.observe_score("p2", 0.05, 0.2, False, 0.02)
    a.observe_action("p1", "pause", "failed")
    a.error("p1", "mqtt")
    s = samples(a)
    assert s[("printer_watchdog_score", (("printer", "p1"),))] == 0.1
    assert s[("printer_watchdog_anomalous_frames_total", (("printer", "p1"),))] == 1
    assert s[("printer_watchdog_scored_frames_total", (("printer", "p2"),))] == 1
    assert s[("printer_watchdog_inference_seconds_count", (("printer", "p1"),))] == 2
    assert (
        s[
            (
                "printer_watchdog_actions_total",
                (("action", "pause"), ("outcome", "failed"), ("printer", "p1")),
            )
        ]
        == 1
    )
    assert s[("printer_watchdog_errors_total", (("kind", "mqtt"), ("printer", "p1")))] == 1
    assert not any(name.startswith("printer_watchdog_score") for name, _ in samples(b))
