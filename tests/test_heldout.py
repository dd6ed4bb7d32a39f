"""The report's headline numbers: what the daemon would do on a replayed print (pure numpy)."""

from __future__ import annotations

import numpy as np

from trainer.heldout import Replay, judgement


def _replay(name: str, scores: list[float], failure: bool = False) -> Replay:
    return Replay(
        name,
        failure,
        calibration=4,
        scores=np.array(scores),
        threshold=1.0,
        consecutive=3,
        failed_print=name.split(" then ")[-1] if failure else "",
    )


def test_a_pause_needs_consecutive_flagged_frames_as_in_the_daemon() -> None:
    r = _replay("p", [0.5, 2, 2, 0.5, 2, 2, 2, 2])
    assert r.flagged.tolist() == [1, 2, 4, 5, 6, 7]
    assert r.first_pause == 7  # two flagged frames, a normal one, then three in a row
    assert _replay("q", [2, 2, 0.5, 2, 2, 0.5]).first_pause is None
    assert _replay("t", [1.0, 1.0, 1.0]).first_pause is None  # at the threshold is not above it


def test_judgement_counts_frames_and_prints_separately_for_good_prints_and_failures() -> None:
    runs = [
        _replay("a", [0.1] * 9 + [2.0]),
        _replay("a then f", [0.5, 2, 2, 2], failure=True),
        _replay("b", [0.1] * 10),
        _replay("b then f", [0.5, 0.5, 2, 0.5], failure=True),
    ]
    d = judgement(runs, "rule", "note")
    assert d["held_out_prints"] == 2 and d["failures_replayed"] == 2
    assert d["false_alarm_rate"] == 1 / 20 and d["normal_prints_paused"] == 0
    assert d["recall"] == 4 / 8 and d["failures_paused"] == 1
    assert [r["frames_to_pause"] for r in d["replays"]] == [None, 4, None, None]
    assert d["threshold"] == 1.0 and d["consecutive"] == 3


def test_a_print_resumed_is_one_held_out_print_paused_when_any_part_is() -> None:
    """A print with a filament change is replayed part by part: "good prints paused by
    mistake: 0 of 4" was said of three prints, and one paused in both parts counted two."""
    from trainer.report import _daemon_section

    runs = [
        _replay("a", [0.1] * 10),
        _replay("b", [2.0] * 4),
        _replay("b+resumed1", [2.0] * 4),
        _replay("c", [0.1] * 10),
        _replay("c then f", [2.0] * 4, failure=True),
    ]
    d = judgement(runs, "rule", "note")
    assert d["held_out_prints"] == 3 and d["normal_prints_paused"] == 1, d
    text = "\n".join(_daemon_section(d, set()))
    assert "good prints paused by mistake: **1 of 3**" in text
    assert "(1 failed print, each after each of 4 parts of 3 held-out prints)" in text


def test_the_report_says_failure_replays_are_not_failed_prints() -> None:
    """One failed print replayed after two held-out prints read "failures paused 2 of 2", as if
    two failures had been caught."""
    from trainer.report import _daemon_section

    runs = [
        _replay("a", [0.1] * 10),
        _replay("a then f", [2.0] * 4, failure=True),
        _replay("b", [0.1] * 10),
        _replay("b then f", [2.0] * 4, failure=True),
    ]
    d = judgement(runs, "rule", "note")
    assert d["failures_paused"] == 2 and d["failed_prints"] == 1
    text = "\n".join(_daemon_section(d, set()))
    assert (
        "failures paused: **2 of 2** replays (1 failed print, each after each of 2 held-out prints)"
        in text
    )


def test_the_report_says_how_a_start_is_judged_from_the_bundle_even_with_no_print_replayed() -> (
    None
):
    """One print fitted, none held out: the report said a print's first frames were "never
    flagged: no start guard" where the bundle judged its start against its first frames and
    flagged them; with no adaptation at all, that they calibrated a baseline there was not."""
    from trainer.report import _daemon_section

    d = judgement([], "rule", "no held-out print")
    shown = {"threshold": 1.0, "adapted": 2.0, "guard": 0.0, "frames": 30}
    judged = "\n".join(_daemon_section({**d, "shown": {**shown, "early_threshold": 1.8}}, set()))
    assert "baseline (flagged only by the start's own judgement)" in judged, judged
    blind = "\n".join(_daemon_section({**d, "shown": {**shown, "early_threshold": 0.0}}, set()))
    assert "baseline (never flagged: no start guard)" in blind, blind
    off = "\n".join(_daemon_section(d, set()))
    assert "baseline" not in off and "every frame, its first ones included, is flagged" in off


def test_judgement_without_any_replay_says_so() -> None:
    d = judgement([], "rule", "no held-out print")
    assert d["replays"] == [] and d["recall"] is None and d["false_alarm_rate"] is None
    assert d["threshold"] is None


def test_a_run_of_flagged_frames_that_begins_in_the_start_pauses_as_in_the_daemon() -> None:
    """The start's flags (its guard, its own judgement) and the judged frames are one run to
    ``decide``: two flagged at the start's end and one after it paused the daemon, never the
    report's replay, which counted only the judged frames."""
    crossing = Replay(
        "p", False, 4, np.array([2.0, 0.5, 0.5]), 1.0, 3, np.array([False, False, True, True])
    )
    assert crossing.first_pause == 1
    in_start = Replay("q", False, 4, np.array([0.5] * 5), 1.0, 3, np.array([True] * 4))
    assert in_start.first_pause is not None and in_start.first_pause <= 0
    d = judgement([crossing, in_start], "rule", "note")
    assert d["normal_prints_paused"] == 2


def test_a_start_above_the_guard_is_flagged_by_the_daemons_detector() -> None:
    """``start_flags`` replays the print's start through the daemon's ``Detector``: with the
    guard below every start frame's absolute score, each is flagged; without guard or start
    judgement, none is judged."""
    from trainer.crossfit import HeldOut
    from trainer.heldout import start_flags
    from watchdog.detection.bundle import Adaptation, Scoring

    rng = np.random.default_rng(0)
    maps = rng.uniform(0.1, 0.3, (12, 8, 16)).astype(np.float32)
    inputs = rng.integers(0, 255, (12, 8, 16, 3), dtype=np.uint8)
    held = HeldOut("p", lambda x: x, inputs, inputs, maps, inputs[:10], maps[:10], maps[:10])
    scoring = Scoring(topk=0.1)
    guarded = Adaptation(frames=10, threshold=1.0, guard=0.01)
    assert start_flags(held, guarded, scoring).tolist() == [True] * 10
    assert start_flags(held, Adaptation(frames=10, threshold=1.0), scoring).size == 0


def test_a_new_print_is_judged_by_the_start_guard_the_other_prints_set() -> None:
    """The report's "a new print" line judged each print with the threshold the other prints
    set, but with the shipped start guard, set with that print's own start among them: a
    start far above the others' was never paused there, by construction."""
    import dataclasses

    from trainer.crossfit import HeldOut, calibrate_on
    from trainer.model import PRESETS
    from trainer.pipeline import Options, _unseen
    from watchdog.detection.bundle import Adaptation

    rng = np.random.default_rng(0)
    preset = dataclasses.replace(PRESETS["default"], adaptation=Adaptation(frames=10))

    def held(name: str, start_gain: float) -> HeldOut:
        maps = rng.uniform(0.05, 0.15, (60, 8, 16)).astype(np.float32)
        maps[:10] *= start_gain
        inputs = rng.integers(0, 255, (60, 8, 16, 3), dtype=np.uint8)
        return HeldOut(name, lambda x: x, inputs, inputs, maps, inputs[:10], maps[:10], maps[:10])

    prints = [held("a", 1.0), held("b", 1.0), held("c", 1.0), held("d", 2.5)]
    # set on all four, d's start among them: no guard that d's start reaches
    shipped = calibrate_on(preset, prints, 0.01).adaptation
    unseen = _unseen(preset, shipped, prints, Options(), has_test_prints=False)
    assert unseen is not None and unseen["prints"] == 4
    assert unseen["normal_prints_paused"] == 1, unseen  # d, by the guard a, b and c set


def test_a_new_print_judged_without_a_guard_is_said_so() -> None:
    """Three prints: each one's two others set no start guard, while the bundle ships one set
    on all three. The line said each was judged with "the start guard the other prints set"."""
    import dataclasses

    from trainer.crossfit import HeldOut, calibrate_on
    from trainer.model import PRESETS
    from trainer.pipeline import Options, _unseen
    from trainer.report import _unseen_line
    from watchdog.detection.bundle import Adaptation

    rng = np.random.default_rng(1)
    preset = dataclasses.replace(PRESETS["default"], adaptation=Adaptation(frames=10))

    def held(name: str) -> HeldOut:
        maps = rng.uniform(0.05, 0.15, (60, 8, 16)).astype(np.float32)
        inputs = rng.integers(0, 255, (60, 8, 16, 3), dtype=np.uint8)
        return HeldOut(name, lambda x: x, inputs, inputs, maps, inputs[:10], maps[:10], maps[:10])

    prints = [held("a"), held("b"), held("c")]
    shipped = calibrate_on(preset, prints, 0.01).adaptation
    assert shipped.guard > 0
    unseen = _unseen(preset, shipped, prints, Options(), has_test_prints=False)
    assert unseen is not None and unseen["unguarded"] == 3, unseen
    said = " ".join(_unseen_line(unseen))
    assert "The start guard judged none of these 3 starts: fewer than 3 other prints" in said
