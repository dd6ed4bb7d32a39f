"""The start guard and the watched region, without a model: the Detector over error maps, the
bundle's schema, and the trainer's ``--region`` (``tests/test_first_minutes.py`` runs them with a
bundle made by the trainer through ``python -m watchdog replay``)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from watchdog.detection.bundle import Adaptation, BundleError, BundleMeta, Scoring
from watchdog.detection.calibration import recalibrated_guard, start_guard, unit_meta
from watchdog.detection.detector import Detector, offline_detector

FRAMES = 5


def _meta(guard: float) -> BundleMeta:
    spec = Adaptation(frames=FRAMES, std_floor=0.5, threshold=2.0, guard=guard)
    return dataclasses.replace(unit_meta(Scoring("l1", "mean"), spec), threshold=2.0)


def _maps(levels: list[float], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        np.full((8, 16), level, np.float32) + rng.normal(0, 0.01, (8, 16)).astype(np.float32)
        for level in levels
    ]


def test_a_start_above_the_guard_is_anomalous_while_calibrating() -> None:
    detector = offline_detector(_meta(guard=0.5))
    verdicts = detector.replay(_maps([0.9] * FRAMES + [0.9] * 3))
    assert [v.anomalous for v in verdicts[:FRAMES]] == [True] * FRAMES
    assert all(v.calibrating and v.abnormal_start and v.guard == 0.5 for v in verdicts[:FRAMES])
    # once learnt, the failing start is the print's baseline: only the guard could catch it
    assert not any(v.anomalous for v in verdicts[FRAMES:])


def test_a_start_held_while_its_alert_stands_is_judged_but_not_learnt() -> None:
    """The watcher holds the start while an alert of the print stands unanswered (its pause
    failed, or the printer only notifies): the failing frames are judged by the guard however
    many come, and learnt only once the hold ends."""
    detector = offline_detector(_meta(guard=0.5))
    first = [detector.judge(None, m) for m in _maps([0.9] * 2)]
    detector.start_held = True
    held = [detector.judge(None, m) for m in _maps([0.9] * (3 * FRAMES), seed=1)]
    assert all(v.anomalous and v.calibrating for v in first + held)
    assert {v.calibrated for v in held} == {2} and detector.calibrating
    detector.start_held = False
    rest = [detector.judge(None, m) for m in _maps([0.9] * (FRAMES + 1), seed=2)]
    assert [v.calibrating for v in rest] == [True] * (FRAMES - 2) + [False] * 3
    # without a guard (a look the owner accepted, a print known past its start) nothing
    # would judge the frames held: the print went unwatched to its end. Learnt, as before.
    detector.relearn(accepted=True)
    detector.start_held = True
    accepted = [detector.judge(None, m) for m in _maps([0.9] * (FRAMES + 1), seed=3)]
    assert [v.calibrating for v in accepted] == [True] * FRAMES + [False]


def test_a_normal_start_and_a_bundle_without_a_guard_are_not_judged() -> None:
    normal = offline_detector(_meta(guard=0.5)).replay(_maps([0.2] * FRAMES))
    assert not any(v.anomalous for v in normal)
    unguarded = offline_detector(_meta(guard=0.0)).replay(_maps([0.9] * FRAMES))
    assert not any(v.anomalous for v in unguarded) and all(v.guard == 0.0 for v in unguarded)


def test_the_guard_scales_with_sensitivity_and_is_off_for_an_accepted_look() -> None:
    meta = _meta(guard=0.5)
    detector = Detector(meta, lambda x: np.zeros((8, 16), np.float32), sensitivity=2.0)
    assert detector.judge(None, _maps([0.3])[0]).anomalous  # 0.3 > 0.5 / 2
    detector.relearn(accepted=True)  # the owner resumed after our pause: what is seen is accepted
    assert not any(detector.judge(None, m).anomalous for m in _maps([0.9] * FRAMES))
    detector.relearn()  # a new print: judged again
    assert detector.judge(None, _maps([0.9])[0]).anomalous


def test_another_region_than_the_bundles_turns_the_guard_off() -> None:
    meta = _meta(guard=0.5)
    model = lambda x: np.zeros((8, 16), np.float32)  # noqa: E731
    assert Detector(meta, model, region=meta.preprocess.roi).start_guard == 0.5
    assert Detector(meta, model, region=(0.0, 0.0, 1.0, 0.5)).start_guard == 0.0
    # the model's region as a hand draws it on the page (rounded, a pixel off) is its own: it
    # turned the guard off without a word
    x0, y0, x1, y1 = meta.preprocess.roi
    drawn = (x0, y0 + 0.004, x1, y1 - 0.001)
    assert Detector(meta, model, region=drawn).start_guard == 0.5


def test_start_guard_is_a_prediction_bound_that_narrows_as_prints_are_added() -> None:
    highs = [0.18, 0.22, 0.2]
    three = start_guard([np.array([0.0, h]) for h in highs])
    thirty = start_guard([np.array([h]) for h in highs * 10])
    assert three > 2 * 0.22  # three prints leave a wide bound
    assert 1.2 * 0.22 <= thirty < 1.5 * 0.22  # thirty alike prints, a narrow one
    # prints that start alike still leave room: another part or filament moves the start
    alike = start_guard([np.array([0.2])] * 3)
    assert alike > 1.5 * 0.2
    # two prints say nothing of how starts vary: no guard
    assert start_guard([np.array([0.2, 0.3]), np.array([0.25])]) == 0.0
    with pytest.raises(ValueError):
        start_guard([])


def test_a_recording_that_ends_within_its_start_is_no_print_for_the_guard_but_stays_below_it() -> (
    None
):
    whole = [np.array([h]) for h in (0.18, 0.22)]
    # two whole prints and a stub: too few prints to know how far a good start varies
    assert start_guard(whole, partial=[np.array([0.2])]) == 0.0
    three = [*whole, np.array([0.2])]
    high_stub = start_guard(three, partial=[np.array([0.1, 0.6])])
    assert high_stub == pytest.approx(1.2 * 0.6)  # a good start seen stays below the guard
    assert start_guard(three, partial=[np.array([0.05])]) == start_guard(three)


def test_calibrating_on_own_prints_never_leaves_a_guard_their_starts_reach() -> None:
    low = [np.array([0.1, 0.12]), np.array([0.11])]
    assert recalibrated_guard(0.5, low) == 0.5  # two prints far below: kept
    near = [np.array([0.1, 0.45]), np.array([0.11])]
    assert recalibrated_guard(0.5, near) == 0.0  # reached, too few prints: off
    many = [np.array([h]) for h in (0.4, 0.45, 0.42, 0.44)]
    assert recalibrated_guard(0.5, many) > 0.5  # enough prints: raised above them
    assert recalibrated_guard(0.0, many) == 0.0  # a bundle without a guard stays so
    # a recording that ended within its start is no print: two prints and it are too few to
    # set a guard, and its start reaching the guard turns it off (counted, it raised it)
    whole, stub = [np.array([0.1]), np.array([0.12])], [np.array([0.45])]
    # (counted with two prints near it, it raises the guard; with two far below, the bound
    # from three prints so far apart passes any score a frame can have: none, tested above)
    assert 0.5 < recalibrated_guard(0.5, [np.array([0.4]), np.array([0.42]), *stub]) < 1.0
    assert recalibrated_guard(0.5, whole, partial=stub) == 0.0
    assert recalibrated_guard(0.5, whole, partial=[np.array([0.2])]) == 0.5


def test_older_bundles_load_with_the_guard_off_and_a_bad_guard_is_refused() -> None:
    d = _meta(guard=0.5).to_dict()
    d["input_shape"], d["output_shape"] = [1, 96, 128, 3], [1, 96, 128, 3]
    del d["adaptation"]["guard"]
    assert BundleMeta.from_dict(json.loads(json.dumps(d))).adaptation.guard == 0.0
    for bad in (-1, "high", float("nan")):
        d["adaptation"]["guard"] = bad
        with pytest.raises(BundleError, match="adaptation"):
            BundleMeta.from_dict(d)


def test_trainer_region_becomes_the_bundles_region() -> None:
    pytest.importorskip("tensorflow")
    from trainer.data import DataError
    from trainer.pipeline import Options, resolve_preset

    assert resolve_preset(Options(region=(0.1, 0.2, 0.9, 1.0))).preprocess.roi == (
        0.1,
        0.2,
        0.9,
        1.0,
    )
    with pytest.raises(DataError, match="--region"):
        resolve_preset(Options(region=(0.5, 0.2, 0.4, 1.0)))


def test_trainer_cli_refuses_a_bad_region_in_one_line(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "trainer", "--data", str(tmp_path), "--region", "0,0.5,1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "x0,y0,x1,y1" in r.stderr


def test_a_guard_no_score_can_reach_is_none_and_training_goes_on() -> None:
    """Three good prints whose starts differ a lot set a bound above the highest score a
    frame can have: a bundle with it is refused as edited by hand, and the trainer and
    calibrate stopped with that refusal. Such a guard guards nothing: none is set."""
    starts = [np.array([0.01, 0.02]), np.array([0.03]), np.array([0.05])]
    assert start_guard(starts) == 0.0
    assert recalibrated_guard(0.5, starts) == 0.5  # the owner's prints set none: it stays
    wide = [np.array([0.2]), np.array([0.6]), np.array([0.9])]
    assert recalibrated_guard(0.95, wide) == 0.0
    Adaptation(frames=FRAMES, threshold=2.0, guard=start_guard(starts))  # loads
