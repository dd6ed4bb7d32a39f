"""The watcher in-process with a real bundle: per-print adaptation as the daemon runs it."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from tests.daemon_helpers import run_cli, write_config
from watchdog.act import SimulatedPrinter
from watchdog.alert import Notifier
from watchdog.bundle import Bundle
from watchdog.capture import open_camera
from watchdog.config import CameraConfig, MqttConfig, PrinterConfig, StorageConfig
from watchdog.loop import Watcher
from watchdog.score import FrameScorer

CALIBRATION = 4  # tiny_adaptive_bundle's --adapt-frames


def _folder(path: Path, frames) -> Path:
    path.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(path / f"f_{i}.jpg"), f)
    return path


def test_bundle_carries_the_adaptation(tiny_adaptive_bundle) -> None:
    meta = Bundle.load(tiny_adaptive_bundle).meta
    assert meta.adaptation.frames == CALIBRATION and meta.adaptation.threshold > 0
    # the threshold comes from prints scored by models that never saw them (trainer.crossfit)
    assert meta.extra["adaptation_rule"].startswith("cross-fitted: 3 prints"), meta.extra


def test_replay_calibrates_on_the_first_frames_then_pauses_on_the_failure(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    frames = _folder(tmp_path / "rec", list(normal_frames[:7]) + list(anomalous_frames[:4]))
    config = write_config(tmp_path / "c.yaml", model=str(tiny_adaptive_bundle), printers=[{"name": "e3"}])
    r = run_cli("replay", "--config", str(config), "--frames", str(frames))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if '"frame"' in x and '"event"' not in x]
    assert len(lines) == 11
    assert not any(x["anomalous"] for x in lines[:CALIBRATION])  # calibration frames never count
    assert [x["frame"] for x in lines if x["action"]] == ["f_9.jpg"]


def test_a_new_print_gets_a_new_baseline(tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames) -> None:
    # The first print calibrates on normal frames; the second starts with the failure in view,
    # which becomes its baseline: the watcher must recalibrate, not judge against print one.
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + list(anomalous_frames[:6]))
    bundle = Bundle.load(tiny_adaptive_bundle)
    printer = SimulatedPrinter("first.gcode")
    notifier = Notifier(MqttConfig(), StorageConfig(dir=tmp_path / "state"), ["e3"])
    cfg = PrinterConfig(name="e3", camera=CameraConfig(source=str(frames), interval_s=0))
    clock = iter(range(1000))
    watcher = Watcher(cfg, FrameScorer(bundle), open_camera(cfg.camera), printer, notifier, clock=lambda: float(next(clock)))
    records = [watcher.step() for _ in range(6)]
    assert [r.anomalous for r in records[:CALIBRATION]] == [False] * CALIBRATION
    assert not watcher.status()["calibrating"]

    printer.cancel()
    watcher.step()  # sees the printer idle
    printer.start_print("second.gcode")
    records = [watcher.step() for _ in range(6)]
    assert watcher.status()["job"] == "second.gcode"
    assert [r.anomalous for r in records[:CALIBRATION]] == [False] * CALIBRATION
    assert not any(r.action for r in records)
