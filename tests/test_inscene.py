"""benchmarks/inscene.py: real failure material pasted into a good print's frames.

The benchmark's in-scene check is only honest if a paste adds the failure and nothing else:
no background patch of the other print, no wall or bed-edge colour, not the whole frame.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.inscene import failure_mask, growth_order, pasted_failures, pasted_sequence

ROOT = Path(__file__).resolve().parents[1]
KAGGLE = ROOT.parent / "shared" / "data" / "kaggle-3d-printer"
H, W = 64, 128


def _scene(seed: int, wall: tuple[int, int, int], bed: tuple[int, int, int]) -> np.ndarray:
    """A grey wall over a dark bed (RGB uint8) with a little noise, like the Kaggle frames."""
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W, 3), np.uint8)
    img[: H // 3] = wall
    img[H // 3 :] = bed
    return np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)


def _defect_frame() -> tuple[np.ndarray, np.ndarray]:
    """Another print's frame: a yellow spaghetti blob, plus a tan wall strip and the bed's
    yellow-green edge line that must not be pasted. Returns the frame and the blob's mask."""
    img = _scene(1, wall=(200, 205, 215), bed=(40, 42, 48))
    blob = np.zeros((H, W), np.uint8)
    cv2.ellipse(blob, (60, 32), (9, 6), 20, 0, 360, 1, -1)
    cv2.polylines(blob, [np.array([(52, 30), (44, 38), (50, 44), (40, 48)], np.int32)], False, 1, 2)
    img[blob > 0] = (230, 200, 30)
    img[18:20, 80:120] = (128, 115, 94)  # tan strip on the wall
    img[60:62, :] = (120, 130, 70)  # bed edge line
    return img, blob > 0


def test_a_paste_changes_the_frame_only_where_the_yellow_blob_was() -> None:
    defect, blob = _defect_frame()
    normal = np.stack([_scene(s, wall=(180, 180, 185), bed=(25, 25, 30)) for s in range(4)])
    out = pasted_failures(normal, defect[None], seed=0, max_shift=0)
    near_blob = (
        cv2.dilate(blob.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    )  # the feathered edge
    for before, after in zip(normal, out, strict=True):
        changed = np.any(after != before, axis=-1)
        assert not (changed & ~near_blob).any(), "pixels away from the blob changed"
        assert changed[blob].mean() > 0.95, "the blob was not pasted"
        assert np.abs(after[blob].astype(int) - (230, 200, 30)).max() <= 12, (
            "pasted blob is not the filament's colour"
        )


def test_a_shifted_paste_moves_the_blob_sideways_only() -> None:
    defect, blob = _defect_frame()
    normal = np.stack([_scene(s, wall=(180, 180, 185), bed=(25, 25, 30)) for s in range(8)])
    out = pasted_failures(normal, defect[None], seed=3, max_shift=6)
    reach = cv2.dilate(blob.astype(np.uint8), np.ones((5, 5 + 2 * 6), np.uint8)) > 0
    for before, after in zip(normal, out, strict=True):
        changed = np.any(after != before, axis=-1)
        assert not (changed & ~reach).any()
        assert changed.sum() >= 0.9 * blob.sum()


def test_a_failure_sequence_pastes_each_failure_frame_into_the_matching_print_frame() -> None:
    defect, blob = _defect_frame()
    grey = _scene(9, wall=(200, 205, 215), bed=(40, 42, 48))
    failure = np.stack([grey, defect, defect])  # the failure shows from its second frame on
    normal = np.stack([_scene(s, wall=(180, 180, 185), bed=(25, 25, 30)) for s in range(5)])
    out = pasted_sequence(normal, failure, seed=0, max_shift=0)
    assert len(out) == 3, "the sequence is as long as the shorter of the two"
    changed = [np.any(a != b, axis=-1) for a, b in zip(normal, out, strict=False)]
    assert not changed[0].any(), "a failure frame without material pastes nothing"
    assert changed[1][blob].mean() > 0.95 and changed[2][blob].mean() > 0.95


def test_no_yellow_to_paste_is_a_clear_error() -> None:
    grey = _scene(0, wall=(180, 180, 185), bed=(25, 25, 30))
    assert not failure_mask(grey).any()
    with pytest.raises(ValueError, match="yellow filament"):
        pasted_failures(grey[None], grey[None], seed=0)


@pytest.mark.skipif(not (KAGGLE / "defected").is_dir(), reason=f"no Kaggle data at {KAGGLE}")
def test_pastes_on_real_frames_change_a_failure_sized_part_of_the_frame() -> None:
    from trainer.data import NORMAL, find_frames, load_frames
    from trainer.model import get_preset

    pre = get_preset("default").preprocess
    frames = find_frames(KAGGLE)
    normal = load_frames([f for f in frames if f.label == NORMAL][::25], pre).x
    defects = load_frames([f for f in frames if f.label != NORMAL][::10], pre).x
    out = pasted_failures(normal, defects, seed=0)
    fraction = np.any(out != normal, axis=-1).mean(axis=(1, 2))
    assert fraction.min() >= 0.002 and fraction.max() <= 0.20, fraction


def test_growth_order_replays_a_print_from_its_bare_bed_to_its_tallest_part() -> None:
    """A print whose frames are shuffled in file order is replayed as its part grows: bare bed
    first, then the part taller and taller; frames showing as much filament keep their order."""
    bed = _scene(3, wall=(200, 205, 215), bed=(40, 42, 48))
    heights = [12, 0, 30, 6, 0, 20]  # part height in px per file number
    frames = []
    for h in heights:
        img = bed.copy()
        img[H - 8 - h : H - 8, 50:70] = (230, 200, 30)
        frames.append(img)
    order = growth_order(np.stack(frames))
    assert [heights[i] for i in order] == [0, 0, 6, 12, 20, 30]
    assert list(order[:2]) == [1, 4]  # equals in file order
