"""docs/quality.md is generated from the committed benchmark results, never typed by hand."""

from __future__ import annotations

import pytest

from benchmarks import qualitydoc


def test_quality_page_is_current_with_the_committed_results() -> None:
    assert qualitydoc.OUTPUT.read_text() == qualitydoc.render(), (
        "docs/quality.md is stale: run .venv/bin/python benchmarks/qualitydoc.py"
    )


def test_an_experiment_is_named_by_what_it_changed_training_included() -> None:
    """A run that recorded no training or threshold rule was made the way every run was then;
    beside a shipped preset that does otherwise, its row must say so, not pass for the same."""
    shipped = {
        **qualitydoc.UNRECORDED_VARIANT,
        "epochs": 60,
        "batch_size": 8,
        "patience": 15,
        "threshold_rule": "higher of cross-fitted and last frames",
    }
    base = {**shipped, "target_fpr": 0.01}
    before = {"variant": {"topk": 0.03, "nearest": 10}, "target_fpr": 0.01, "_name": "x"}
    same_training = {"variant": {**shipped, "topk": 0.03}, "target_fpr": 0.005, "_name": "y"}
    first_runs = {"target_fpr": 0.01, "_name": "quality-topk-0.02"}  # named by their file only
    shipped_before = {"target_fpr": 0.01, "_name": "quality-variant-z"}  # recorded nothing

    old = "epochs 30, batch_size 32, patience 5, threshold_rule cross-fitted"
    assert qualitydoc._variant_label(before, base) == f"topk 0.03, {old}"
    assert qualitydoc._variant_label(same_training, base) == (
        "topk 0.03, threshold aimed at 0.5% of frames"
    )
    assert qualitydoc._variant_label(first_runs, base) == f"topk 0.02, {old}"
    assert qualitydoc._variant_label(shipped_before, base) == old


def test_runs_of_settings_shipped_earlier_are_told_apart_by_their_date() -> None:
    """Several runs of the preset shipped at one time or another differ from today's by the
    same setting; without their dates their rows read as one run listed twice."""
    base = {**qualitydoc.UNRECORDED_VARIANT, "clipped_light": True, "target_fpr": 0.01}
    earlier = {
        "variant": {**qualitydoc.UNRECORDED_VARIANT, "clipped_light": False},
        "target_fpr": 0.01,
        "date": "2026-12-01 13:04 UTC",
        "_name": "quality-variant-shipped-before-clipped-light",
    }
    again = {**earlier, "variant": {**earlier["variant"], "clipped_light": True}}
    assert qualitydoc._variant_label(earlier, base) == (
        "clipped_light false (shipped then, run 2026-12-01 13:04 UTC)"
    )
    assert (
        qualitydoc._variant_label(again, base)
        == "as shipped, run again with the same seeds (2026-12-01 13:04 UTC)"
    )


def test_the_scoring_experiments_name_the_runs_that_paused_good_prints() -> None:
    """The page said "pauses of good prints stay 0" under a table whose region row paused
    four: the sentence is the runs' own now."""
    calm = {"runs": {"0": [{"false_pauses": 0}], "1": [{"false_pauses": 0}]}}
    pausing = {"runs": {"0": [{"false_pauses": 3}], "1": [{"false_pauses": 1}]}}
    note = qualitydoc._pauses_note([("shipped", calm), ("region [0.0, 0.65, 1.0, 1.0]", pausing)])
    assert "Runs that paused good prints: region [0.0, 0.65, 1.0, 1.0] (4)." in note
    assert "No run paused a good print." in qualitydoc._pauses_note([("shipped", calm)])


def test_the_growth_order_table_compares_the_shipped_settings_only() -> None:
    """The growing-prints table puts a growth-order run beside the shipped run in file order:
    a run of other settings, or one not replayed in growth order, is refused, not shown."""
    shipped = {"variant": {**qualitydoc.UNRECORDED_VARIANT, "epochs": 60}}
    same = {"variant": {**shipped["variant"], "order": "growth"}}
    other = {"variant": {**same["variant"], "topk": 0.03}}
    file_order = {"variant": {**shipped["variant"], "order": "file"}}
    with pytest.raises(ValueError, match="not the shipped preset's settings"):
        qualitydoc.growing_prints(shipped, other, None)
    with pytest.raises(ValueError, match="not the shipped preset's settings"):
        qualitydoc.growing_prints(shipped, file_order, None)
    assert qualitydoc._replayed_in_growth_order(same)
    assert not qualitydoc._replayed_in_growth_order(shipped)
