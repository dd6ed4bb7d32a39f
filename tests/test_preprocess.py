"""Preprocessing's brightness/contrast normalisation (the default preset's ``normalize``): a
light switched on must not change what the model sees; a failure on the bed must."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np

from tests.plugins.camera import synthetic_frame
from trainer.data import find_frames, load_frames
from watchdog.detection.bundle import META_FILE, Bundle, Preprocess

PRE = Preprocess(width=64, height=48, channels=3, normalize=True)


def _scene() -> np.ndarray:
    return cv2.resize(synthetic_frame(3), (320, 240), interpolation=cv2.INTER_LINEAR)


def _lit(frame: np.ndarray, gain: float, offset: float) -> np.ndarray:
    return np.clip(frame.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)


def test_a_light_switched_on_or_off_leaves_the_model_input_unchanged() -> None:
    frame = (_scene() * 0.5 + 30).astype(np.uint8)  # room to brighten and darken without clipping
    plain = dataclasses.replace(PRE, normalize=False)
    for gain, offset in ((1.3, 20), (0.6, 0), (1.0, -30)):
        changed = _lit(frame, gain, offset)
        moved = np.abs(PRE.apply(changed) - PRE.apply(frame)).mean()
        plain_moved = np.abs(plain.apply(changed) - plain.apply(frame)).mean()
        assert plain_moved > 10 / 255 and moved < plain_moved / 5, (
            gain,
            offset,
            moved,
            plain_moved,
        )


def test_a_local_failure_still_shows_after_normalisation() -> None:
    frame = _scene()
    failed = frame.copy()
    cv2.circle(failed, (160, 170), 30, (30, 220, 240), -1)  # a yellow blob on the bed (BGR)
    diff = np.abs(PRE.apply(failed) - PRE.apply(frame)).max(axis=-1)
    blob = np.zeros((48, 64), bool)
    cv2.circle(blob.view(np.uint8), (32, 34), 4, 1, -1)
    assert diff[blob].mean() > 0.2  # the blob's pixels change a lot
    assert np.median(diff[~blob]) < 0.05  # the rest of the picture barely moves


def test_normalised_inputs_are_what_the_trainer_stores(tmp_path: Path) -> None:
    """On the 1/255 grid: the trainer's uint8 copy of a frame is exactly the daemon's input."""
    folder = tmp_path / "n"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"p_{i}.png"), cv2.resize(synthetic_frame(i), (320, 240)))
    loaded = load_frames(find_frames(normal=[folder]), PRE)
    for fr, x in zip(loaded.frames, loaded.x, strict=True):
        assert np.array_equal(x.astype(np.float32) / 255.0, PRE.apply(cv2.imread(str(fr.path))))


def test_a_flat_black_frame_stays_usable() -> None:
    x = PRE.apply(np.zeros((240, 320, 3), np.uint8))
    assert np.isfinite(x).all() and np.allclose(x, 0.5, atol=1 / 255)


def test_bundles_without_the_key_do_not_normalise(tiny_bundle: Path, tmp_path: Path) -> None:
    meta = json.loads((tiny_bundle / META_FILE).read_text())
    assert "normalize" in meta["preprocess"]  # written by this trainer
    old = tmp_path / "old"
    old.mkdir()
    for f in tiny_bundle.iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    del meta["preprocess"]["normalize"]  # a bundle from before the option
    (old / META_FILE).write_text(json.dumps(meta))
    assert Bundle.load(old).meta.preprocess.normalize is False


def test_the_trainer_turns_normalisation_on_only_when_asked() -> None:
    from trainer.pipeline import Options, resolve_preset

    assert resolve_preset(Options()).preprocess.normalize is False  # the shipped default: off
    assert resolve_preset(Options(normalize=True)).preprocess.normalize is True
    assert resolve_preset(Options(preset="tiny", normalize=True)).preprocess.normalize is True


def test_a_frame_of_a_pixel_or_two_still_gives_a_model_input_whatever_the_region() -> None:
    """A camera sending a 1x1 or 2x1 picture with the watched region near its bottom or right
    edge: the region's pixels were empty and every step of the watcher failed on resizing."""
    for roi in [(0.0, 0.8, 1.0, 1.0), (0.85, 0.85, 1.0, 1.0), (0.0, 0.5, 1.0, 1.0)]:
        pre = Preprocess(width=16, height=8, channels=3, roi=roi)
        for h, w in [(1, 1), (1, 2), (2, 1), (3, 3)]:
            x = pre.apply(np.full((h, w, 3), 90, np.uint8))
            assert x.shape == (8, 16, 3) and np.allclose(x, 90 / 255)
