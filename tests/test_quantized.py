"""A quantized bundle (``python -m trainer --quantize int8``) as the daemon meets it: its own
model decides, with per-print thresholds its own frames were judged by."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from tests import synth
from tests.daemon_helpers import replayed, write_config
from tests.plugins.models import TINY_FRAMES, TINY_SEED
from trainer.data import NORMAL, Frame, Loaded
from trainer.model import get_preset
from trainer.pipeline import _quantized_guard
from watchdog.detection.bundle import Bundle


def _replay(tmp_path: Path, bundle: Path, name: str, frames: list) -> list[dict]:
    folder = tmp_path / name
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"frame_{i}.jpg"), frame)
    config = write_config(tmp_path / f"{name}.yaml", model=str(bundle), printers=[{"name": "e3"}])
    return replayed(config, folder)


def test_an_int8_bundle_pauses_a_failure_and_not_a_print_it_never_saw(
    tmp_path: Path, tiny_int8_run: Path
) -> None:
    run = tiny_int8_run
    bundle = run / "bundle"
    meta = Bundle.load(bundle).meta
    assert meta.quantization == "int8"
    assert meta.adaptation.enabled and meta.adaptation.threshold > 0
    # the report's replays of the held-out print are the int8 model's: their rule names its
    # thresholds, not the float32 model's
    daemon = json.loads((run / "report.json").read_text())["daemon"]
    assert daemon["model"] == "int8"
    assert (
        f"the int8 model ships threshold {meta.adaptation.threshold:.4g}"
        in (daemon["threshold_rule"])
    ), daemon["threshold_rule"]
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


def _prints(n: int, frames: int, shape: tuple[int, int, int]) -> list[Loaded]:
    """``n`` good prints of ``frames`` frames each, as the trainer loads them (one set)."""
    rng = np.random.default_rng(0)
    found = [
        Frame(Path(f"p{p}_{i}.jpg"), NORMAL, f"p{p}", i) for p in range(n) for i in range(frames)
    ]
    x = rng.integers(40, 200, size=(len(found), *shape), dtype=np.uint8)
    return [Loaded(found, x, []), Loaded([], np.zeros((0, *shape), np.uint8), [])]


def _blurring(amount: float) -> Callable[[np.ndarray], np.ndarray]:
    """A stand-in reconstruction that loses ``amount`` of each frame's detail."""
    return lambda x: (1.0 - amount) * x + amount * x.mean(axis=(1, 2, 3), keepdims=True)


def test_a_quantized_models_start_guard_is_on_its_own_scale() -> None:
    """Its start guard rises by as much as the quantized model scores the prints' starts higher
    than the float32 model did (its rounding must not pause a good start); it never falls."""
    preset = get_preset("tiny")
    spec = dataclasses.replace(preset.adaptation, frames=8, nearest=0, early_frames=0, guard=0.1)
    sets = _prints(3, 10, preset.preprocess.shape)
    scoring = preset.scoring
    rougher = _quantized_guard(spec, scoring, _blurring(0.4), _blurring(0.2), sets, 8)
    assert spec.guard * 1.2 < rougher < 1.0
    # risen past any score a frame can have, it guards nothing: none
    high = dataclasses.replace(spec, guard=0.9)
    assert _quantized_guard(high, scoring, _blurring(0.4), _blurring(0.2), sets, 8) == 0.0
    closer = _quantized_guard(spec, scoring, _blurring(0.1), _blurring(0.2), sets, 8)
    assert closer == spec.guard
    none = dataclasses.replace(spec, guard=0.0)
    assert _quantized_guard(none, scoring, _blurring(0.4), _blurring(0.2), sets, 8) == 0.0


def test_an_int8_export_says_nothing_of_the_converters_own(capfd) -> None:
    """``--quantize int8`` showed the owner TensorFlow's converter settings ("fully_quantize:
    0, inference_type: 6, ...", printed natively) and a warning about statistics only a model
    with integer inputs needs; float16 said nothing. Both are the converter's, not the run's."""
    import warnings

    import tensorflow as tf

    from trainer.export import convert

    inputs = tf.keras.Input((8, 8, 1))
    model = tf.keras.Model(inputs, tf.keras.layers.Conv2D(1, 3, padding="same")(inputs))
    frames = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype(np.uint8)
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        assert convert(model, "int8", frames)
    out, err = capfd.readouterr()
    assert "fully_quantize" not in err + out, err
    assert not [w for w in warned if "Statistics" in str(w.message)], [str(w) for w in warned]
