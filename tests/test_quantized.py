"""A quantized bundle (``python -m trainer --quantize int8``) as the daemon meets it: its own
model decides, with per-print thresholds its own frames were judged by."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from tests import synth
from tests.daemon_helpers import replayed, write_config
from tests.plugins.models import TINY_FRAMES, TINY_SEED, train_tiny
from watchdog.detection.bundle import Bundle


def _replay(tmp_path: Path, bundle: Path, name: str, frames: list) -> list[dict]:
    folder = tmp_path / name
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"frame_{i}.jpg"), frame)
    config = write_config(tmp_path / f"{name}.yaml", model=str(bundle), printers=[{"name": "e3"}])
    return replayed(config, folder)


def test_an_int8_bundle_pauses_a_failure_and_not_a_print_it_never_saw(
    tmp_path: Path, synthetic_dataset: Path
) -> None:
    pytest.importorskip("tensorflow")
    run = train_tiny(
        synthetic_dataset,
        tmp_path / "runs",
        "--adapt-frames",
        "8",
        "--match-light",
        "--quantize",
        "int8",
    )
    bundle = run / "bundle"
    meta = Bundle.load(bundle).meta
    assert meta.quantization == "int8"
    assert meta.adaptation.enabled and meta.adaptation.threshold > 0
    # a good print of a session it never saw: never paused
    good = [synth.normal_frame(9, i, TINY_FRAMES, TINY_SEED) for i in range(TINY_FRAMES)]
    lines = _replay(tmp_path, bundle, "good", good)
    assert not any(x["action"] for x in lines), [(x["frame"], x["score"]) for x in lines]
    # the same print with spaghetti from after its start: paused
    start = meta.adaptation.frames
    failing = good[: start + 2] + [synth.anomalous_frame(200 + i, TINY_SEED) for i in range(6)]
    lines = _replay(tmp_path, bundle, "failing", failing)
    paused = [i for i, x in enumerate(lines) if x["action"]]
    assert paused and paused[0] < start + 2 + 6, [(x["frame"], x["score"]) for x in lines]
