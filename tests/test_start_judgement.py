"""The rest of a print's start judged against its first frames (``Adaptation.early_frames``),
without a model: the Detector over error maps, the calibration of its threshold and the
bundle's schema (``tests/test_first_minutes.py`` runs it with a bundle made by the trainer
through ``python -m watchdog replay``)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from watchdog.detection.bundle import Adaptation, BundleMeta, Scoring
from watchdog.detection.calibration import (
    calibrate,
    early_threshold,
    simulate_start,
    unit_meta,
)
from watchdog.detection.detector import Detector, offline_detector

FRAMES, EARLY = 12, 4
SCORING = Scoring("l1", "topk", topk=0.05, blur_sigma=0.0)


def _meta(early_threshold: float = 3.0, early_frames: int = EARLY) -> BundleMeta:
    spec = Adaptation(
        frames=FRAMES,
        std_floor=0.5,
        threshold=2.0,
        early_frames=early_frames,
        early_threshold=early_threshold,
    )
    return dataclasses.replace(unit_meta(SCORING, spec), threshold=2.0)


def _maps(n: int, seed: int = 0, blob_from: int | None = None) -> list[np.ndarray]:
    """Error maps of a steady start (small noise); from ``blob_from`` on, a failure: a patch of
    high error in one corner that stays."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        m = np.full((16, 32), 0.2, np.float32) + rng.normal(0, 0.01, (16, 32)).astype(np.float32)
        if blob_from is not None and i >= blob_from:
            m[10:14, 20:26] += 0.3
        out.append(m)
    return out


def test_a_failure_beginning_during_the_start_is_flagged_once_the_first_frames_are_in() -> None:
    verdicts = offline_detector(_meta()).replay(_maps(FRAMES + 2, blob_from=6))
    start = verdicts[:FRAMES]
    # the first frames are learnt, not judged; the start's judgement begins after them
    assert all(v.early_score is None and not v.anomalous for v in start[:EARLY])
    assert all(v.early_score is not None for v in start[EARLY:])
    assert not any(v.anomalous for v in start[EARLY:6])
    assert all(v.anomalous and v.changed_in_start and not v.abnormal_start for v in start[6:])
    # the heatmap shows where it changed: the failure's corner, not the whole picture
    hot = np.unravel_index(np.argmax(start[7].error_map), start[7].error_map.shape)
    assert 10 <= hot[0] < 14 and 20 <= hot[1] < 26


def test_a_steady_start_is_judged_and_not_flagged() -> None:
    verdicts = offline_detector(_meta()).replay(_maps(FRAMES))
    assert sum(v.early_score is not None for v in verdicts) == FRAMES - EARLY
    assert not any(v.anomalous for v in verdicts)


def test_a_bundle_without_a_start_threshold_learns_its_start_without_judging_it() -> None:
    for meta in (_meta(early_threshold=0.0), _meta(early_frames=0)):
        verdicts = offline_detector(meta).replay(_maps(FRAMES, blob_from=6))
        assert not any(v.anomalous for v in verdicts)
        assert all(v.early_score is None for v in verdicts)


def test_the_owner_can_leave_the_start_unjudged() -> None:
    """``detection.judge_start: false``: the bundle's judgement of the start is not used."""
    model = lambda x: np.zeros((16, 32), np.float32)  # noqa: E731
    failing = _maps(FRAMES, blob_from=6)
    detector = Detector(_meta(), model, judge_start=False)
    verdicts = [detector.judge(None, m) for m in failing]
    assert not any(v.anomalous for v in verdicts) and all(v.early_score is None for v in verdicts)


def test_a_new_print_is_judged_from_its_own_first_frames() -> None:
    detector = Detector(_meta(), lambda x: np.zeros((16, 32), np.float32))
    failing = _maps(FRAMES, blob_from=6)
    assert [detector.judge(None, m).anomalous for m in failing][6:] == [True] * (FRAMES - 6)
    detector.relearn()  # the next print starts with the failure in view: it is its first frames
    again = [detector.judge(None, m) for m in failing[6:] + failing[6:]][:FRAMES]
    assert not any(v.anomalous for v in again)
    assert again[EARLY].early_score is not None


def test_sensitivity_moves_the_start_threshold_too() -> None:
    model = lambda x: np.zeros((16, 32), np.float32)  # noqa: E731
    maps = _maps(FRAMES, blob_from=6)
    scores = [v.early_score for v in offline_detector(_meta()).replay(maps)[6:]]
    # a start threshold just above the failure's score: missed, until the owner raises sensitivity
    meta = _meta(early_threshold=1.05 * 3.0 * max(s for s in scores if s is not None) / 2.0)
    assert not any(Detector(meta, model).judge(None, m).anomalous for m in maps)
    sensitive = Detector(meta, model, sensitivity=1.2)
    assert any(sensitive.judge(None, m).anomalous for m in maps)


def test_the_start_threshold_is_set_on_normal_starts_at_the_target_rate() -> None:
    spec = _meta().adaptation
    starts = [np.stack(_maps(FRAMES, seed=s)) for s in range(20)]
    scores = np.concatenate([simulate_start(spec, SCORING, m) for m in starts])
    assert len(scores) == 20 * (FRAMES - EARLY)
    thr = early_threshold(spec, SCORING, starts, target_fpr=0.05)
    assert np.mean(scores > thr) <= 0.05 < np.mean(scores >= thr)  # the lowest such threshold
    # calibrate sets it with the after-start threshold, from the same prints' starts
    prints = [np.stack(_maps(3 * FRAMES, seed=s)) for s in range(4)]
    plain = calibrate(spec, SCORING, prints, 0.05)
    judged = calibrate(spec, SCORING, prints, 0.05, starts=[p[:FRAMES] for p in prints])
    assert plain.early_threshold == spec.early_threshold  # no starts given: left as it is
    assert judged.early_threshold == early_threshold(
        spec, SCORING, [p[:FRAMES] for p in prints], 0.05
    )
    assert judged.threshold == plain.threshold


@pytest.mark.parametrize(
    ("frames", "early_frames", "why"),
    [
        (FRAMES, 1, "early_frames must be 0 or in [2, frames=12), got 1"),
        (FRAMES, 12, "early_frames must be 0 or in [2, frames=12), got 12"),
        (0, 10, "early_frames must be 0 or in [2, frames=0), got 10"),
    ],
)
def test_a_start_judged_against_too_few_or_too_many_frames_is_refused(
    frames: int, early_frames: int, why: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        Adaptation(frames=frames, threshold=2.0, early_frames=early_frames, early_threshold=1.0)


def test_a_judged_start_frame_shows_its_judgement_and_where_it_changed() -> None:
    """The score a judged start frame shows (the page's chart, MQTT) is the judgement the
    decision used, on the threshold's scale; a masked corner is not judged."""
    verdicts = offline_detector(_meta()).replay(_maps(FRAMES, blob_from=6))
    assert all(v.score == v.early_score for v in verdicts[EARLY:FRAMES])
    assert all(v.score > v.threshold for v in verdicts[6:FRAMES])
    mask = np.ones((16, 32), bool)
    mask[8:, 16:] = False  # the corner where the failure is
    masked = offline_detector(_meta(), mask).replay(_maps(FRAMES, blob_from=6))
    assert not any(v.anomalous for v in masked)


def test_an_accepted_look_is_judged_against_its_own_first_frames() -> None:
    """After the owner resumed (an accepted look), the start guard is off but the start is
    still judged, against the frames after the resume: what was accepted is the yardstick,
    what changes after it is flagged."""
    detector = Detector(_meta(), lambda x: np.zeros((16, 32), np.float32))
    detector.relearn(accepted=True)
    accepted = _maps(FRAMES, seed=1, blob_from=0)  # the failure was in view when accepted
    assert not any(detector.judge(None, m).anomalous for m in accepted)
    detector.relearn(accepted=True)
    grows = _maps(FRAMES, seed=2, blob_from=0)
    for m in grows[6:]:
        m[2:6, 2:8] += 0.3  # something new after the resume
    assert [detector.judge(None, m).anomalous for m in grows][6:] == [True] * (FRAMES - 6)


def test_the_start_is_compared_with_its_nearest_first_frames_when_fewer_than_all() -> None:
    """With ``nearest`` below ``early_frames`` each judged start frame is compared with the
    first frames that look most like it: the frames as the camera gave them must come with
    their model inputs, and a frame identical to one of the first frames shows no change."""
    meta = _meta()
    meta = dataclasses.replace(meta, adaptation=dataclasses.replace(meta.adaptation, nearest=1))
    assert meta.adaptation.start_spec().nearest == 1
    maps = _maps(FRAMES, seed=4)
    inputs = [np.full((16, 32, 3), i / FRAMES, np.float32) for i in range(FRAMES)]
    maps[EARLY], inputs[EARLY] = maps[1].copy(), inputs[1].copy()  # a copy of the 2nd frame
    verdicts = offline_detector(meta).replay(maps, inputs, maps, inputs)
    others = [v.early_score for v in verdicts[EARLY + 1 : FRAMES]]
    # its nearest first frame is itself (kept as float16: a rounding's worth of change)
    assert verdicts[EARLY].early_score is not None and verdicts[EARLY].early_score < 0.01
    assert all(s is not None and s > 0.1 for s in others), others
    with pytest.raises(ValueError, match="model input"):
        offline_detector(meta).replay(maps, inputs, maps)  # the start's inputs left out
    # as many nearest frames as first frames is the mean of all of them: nothing kept per frame
    assert _meta().adaptation.start_spec().nearest == 0
