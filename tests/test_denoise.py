"""Foreign material pasted on training frames: the model is asked for the clean frame back."""

from __future__ import annotations

import numpy as np
import pytest

from tests import synth
from trainer.denoise import paste_foreign
from trainer.model import TrainSpec


def _frames(n: int) -> np.ndarray:
    return np.stack([synth.normal_frame(0, i, 16, 0) for i in range(n)])


def test_a_share_of_frames_gets_a_small_blob_and_the_rest_stay_as_they_were() -> None:
    clean = _frames(60).astype(np.float32) / 255.0
    pasted = paste_foreign(clean, np.random.default_rng(0), 0.5)
    changed = np.abs(pasted - clean).max(axis=-1) > 0.02  # visibly
    touched = (np.abs(pasted - clean) > 0).any(axis=(1, 2, 3))
    assert 0.3 < touched.mean() < 0.7
    np.testing.assert_array_equal(pasted[~touched], clean[~touched])
    # a blob, not a new picture: at most about a tenth of the frame (soft edges included)
    assert changed[touched].mean(axis=(1, 2)).max() < 0.2
    assert pasted.min() >= 0.0 and pasted.max() <= 1.0


def test_the_same_seed_pastes_the_same_blobs() -> None:
    clean = _frames(12).astype(np.float32) / 255.0
    a = paste_foreign(clean, np.random.default_rng(7), 1.0)
    b = paste_foreign(clean, np.random.default_rng(7), 1.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, clean)


def test_the_model_is_fitted_to_give_the_clean_frame_back() -> None:
    pytest.importorskip("tensorflow")
    from trainer.train import make_dataset

    x = _frames(8)
    inputs, targets = next(iter(make_dataset(x, 8, False, None, 0, denoise=1.0)))
    np.testing.assert_allclose(targets.numpy(), x.astype(np.float32) / 255.0, atol=1e-6)
    differs = np.abs(inputs.numpy() - targets.numpy()).max(axis=(1, 2, 3)) > 0.01
    assert differs.sum() >= 6  # nearly every frame carries a blob (a colour may match the bed)


def test_a_share_outside_zero_to_one_is_refused_in_the_flags_words() -> None:
    with pytest.raises(ValueError, match="--denoise must be a share from 0 to 1, got 1.5"):
        TrainSpec(denoise=1.5)
