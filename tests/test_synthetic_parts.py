"""Clean parts of other shapes drawn on training frames: the model sees more varied normal prints."""

from __future__ import annotations

import numpy as np
import pytest

from tests import synth
from trainer.model import TrainSpec
from trainer.synthetic_parts import draw_parts


def _frames(n: int) -> np.ndarray:
    return np.stack([synth.normal_frame(0, i, 16, 0) for i in range(n)])


def test_a_share_of_frames_gets_a_solid_part_and_the_rest_stay_as_they_were() -> None:
    clean = _frames(60).astype(np.float32) / 255.0
    drawn = draw_parts(clean, np.random.default_rng(0), 0.5)
    touched = (np.abs(drawn - clean) > 0).any(axis=(1, 2, 3))
    assert 0.3 < touched.mean() < 0.7
    changed = np.abs(drawn - clean).max(axis=-1) > 0.02
    # a part standing in the picture, not a new picture: never the whole frame
    assert 0.0 < changed[touched].mean(axis=(1, 2)).max() < 0.6
    assert drawn.min() >= 0.0 and drawn.max() <= 1.0


def test_a_part_is_solid_where_it_is_drawn() -> None:
    """One colour, shaded: inside the part the picture varies far less than a tangle would."""
    frame = np.full((64, 128, 3), 0.2, np.float32)  # a plain dark bed
    drawn = draw_parts(frame[None], np.random.default_rng(3), 1.0)[0]
    inside = np.abs(drawn - frame).max(axis=-1) > 0.05
    assert inside.sum() > 20
    # within the part, neighbouring pixels differ little (edges and layer lines only)
    rows = np.abs(np.diff(drawn, axis=1)).max(axis=-1)[inside[:, 1:] & inside[:, :-1]]
    assert np.median(rows) < 0.05


def test_a_training_run_draws_the_same_parts_again_and_another_seed_other_ones() -> None:
    clean = _frames(12).astype(np.float32) / 255.0
    runs = {seed: draw_parts(clean, np.random.default_rng(seed), 1.0) for seed in (7, 8)}
    again = draw_parts(clean, np.random.default_rng(7), 1.0)
    np.testing.assert_array_equal(runs[7], again)
    assert not np.array_equal(runs[7], runs[8])


def test_the_model_is_fitted_to_give_the_frame_with_its_part_back() -> None:
    pytest.importorskip("tensorflow")
    from trainer.train import make_dataset

    x = _frames(8)
    inputs, targets = next(iter(make_dataset(x, 8, False, None, 0, synthetic_parts=1.0)))
    np.testing.assert_array_equal(inputs.numpy(), targets.numpy())
    differs = np.abs(inputs.numpy() - x.astype(np.float32) / 255.0).max(axis=(1, 2, 3)) > 0.01
    assert differs.sum() >= 7


def test_a_share_outside_zero_to_one_is_refused_in_the_flags_words() -> None:
    with pytest.raises(ValueError, match="--synthetic-parts must be a share from 0 to 1, got -0.1"):
        TrainSpec(synthetic_parts=-0.1)


def test_grey_frames_are_refused_rather_than_left_as_they_are() -> None:
    grey = np.zeros((4, 64, 128, 1), np.float32)
    with pytest.raises(ValueError, match="colour frames"):
        draw_parts(grey, np.random.default_rng(0), 0.5)
