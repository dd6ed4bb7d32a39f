"""trainer.crossfit: the adapted threshold comes from prints the scoring model never fitted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from tests import synth

pytest.importorskip("tensorflow")

from trainer.crossfit import crossfit_adaptation, print_frames  # noqa: E402
from trainer.data import ANOMALOUS, NORMAL, Frame, Loaded  # noqa: E402
from trainer.model import get_preset  # noqa: E402
from watchdog.detection.bundle import Adaptation  # noqa: E402


def _preset(frames: int = 3):
    tiny = get_preset("tiny")
    return dataclasses.replace(
        tiny,
        adaptation=Adaptation(frames=frames, std_floor=0.5),
        train=dataclasses.replace(tiny.train, epochs=2, patience=0),
    )


def _print(session: int, n: int = 8) -> np.ndarray:
    pre = _preset().preprocess
    return np.stack(
        [
            np.round(pre.apply(synth.normal_frame(session, i, n)) * 255).astype(np.uint8)
            for i in range(n)
        ]
    )


def test_print_frames_groups_normal_frames_per_print_in_time_order() -> None:
    x = np.arange(5, dtype=np.uint8).reshape(5, 1, 1, 1)
    names = ["a_10.jpg", "a_2.jpg", "b_1.jpg", "a_1.jpg", "bad_1.jpg"]
    sessions = ["a", "a", "b", "a", "bad"]
    labels = [NORMAL, NORMAL, NORMAL, NORMAL, ANOMALOUS]
    numbers = [int(n.split("_")[-1].split(".")[0]) for n in names]
    loaded = Loaded(
        [
            Frame(Path(n), lab, s, k)
            for n, lab, s, k in zip(names, labels, sessions, numbers, strict=True)
        ],
        x,
        [],
    )
    prints = print_frames([loaded])
    assert sorted(prints) == ["a", "b"], "failed prints are not normal prints"
    assert prints["a"].ravel().tolist() == [3, 1, 0], "frames of a print in frame-number order"


def test_every_print_is_scored_by_a_model_that_never_fitted_it(caplog) -> None:
    prints = {f"p{i}": _print(i) for i in range(5)}
    with caplog.at_level("INFO", logger="trainer.crossfit"):
        result = crossfit_adaptation(_preset(), prints, target_fpr=0.0, seed=0, groups=3)
    assert result.enabled and result.frames == 3 and result.threshold > 0
    assert result.guard > 0, "the start guard comes from the same left-out prints"
    runs = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("cross-fit: left out")
    ]
    assert len(runs) == 3, "one extra fit per group"
    left_out: list[str] = []
    for msg in runs:
        out, fitted = msg.removeprefix("cross-fit: left out ").split(", fitted on ")
        out_names, fitted_names = set(out.split(", ")), set(fitted.split(", "))
        assert not out_names & fitted_names, msg
        assert out_names | fitted_names == set(prints), msg
        left_out += out_names
    assert sorted(left_out) == sorted(prints), "each print is left out exactly once"


def test_one_print_is_not_enough_to_cross_fit() -> None:
    with pytest.raises(ValueError, match="at least two normal prints"):
        crossfit_adaptation(_preset(), {"only": _print(0)}, target_fpr=0.01)


def test_a_print_and_its_parts_after_a_resume_count_as_one_print_for_the_start_guard() -> None:
    """Two prints, each paused and resumed once, are two prints, not four: too few to know how
    far a good start varies, so no start guard is set (three whole prints set one)."""
    parts = {name: _print(i) for i, name in enumerate(("a", "a+resumed1", "b", "b+resumed1"))}
    assert crossfit_adaptation(_preset(), parts, target_fpr=0.0, seed=0).guard == 0
    whole = {name: _print(i) for i, name in enumerate(("a", "b", "c"))}
    assert crossfit_adaptation(_preset(), whole, target_fpr=0.0, seed=0).guard > 0


def test_a_recording_that_ends_within_its_start_sets_neither_threshold_nor_guard(caplog) -> None:
    """A print shorter than its start counted among the "3 prints" a start guard was set from,
    its highest start taken from fewer frames than a start has: two whole prints and a stub set
    a guard no two prints can set."""
    prints = {"a": _print(0), "b": _print(1), "stub": _print(2, n=2)}
    with caplog.at_level("INFO", logger="trainer.crossfit"):
        result = crossfit_adaptation(_preset(frames=3), prints, target_fpr=0.0, seed=0)
    assert result.guard == 0
    assert "cross-fitted on 2 prints" in caplog.text
    # nor one whose picture never moved (a frozen recording): the threshold leaves it out
    frozen = {"a": _print(0), "b": _print(1), "frozen": np.repeat(_print(2)[:1], 8, axis=0)}
    caplog.clear()
    with caplog.at_level("INFO", logger="trainer.crossfit"):
        result = crossfit_adaptation(_preset(frames=3), frozen, target_fpr=0.0, seed=0)
    assert result.guard == 0
    assert "cross-fitted on 2 prints" in caplog.text


def test_the_report_says_why_three_prints_set_no_start_guard() -> None:
    """Three good prints whose starts give a bound no frame can reach set no guard: the report
    said "3 prints are too few (needs 3)", telling the owner to do what they had done."""
    from trainer.pipeline import _guard_rule

    none = Adaptation(frames=30, threshold=1.0)
    assert "2 prints are too few" in _guard_rule(none, 2)
    three = _guard_rule(none, 3)
    assert "too few" not in three and "beyond any score a frame reaches" in three, three
