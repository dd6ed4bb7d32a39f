"""The report's headline numbers: what the daemon would do on a replayed print (pure numpy)."""

from __future__ import annotations

import numpy as np

from trainer.heldout import Replay, judgement


def _replay(name: str, scores: list[float], failure: bool = False) -> Replay:
    return Replay(
        name, failure, calibration=4, scores=np.array(scores), threshold=1.0, consecutive=3
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


def test_judgement_without_any_replay_says_so() -> None:
    d = judgement([], "rule", "no held-out print")
    assert d["replays"] == [] and d["recall"] is None and d["false_alarm_rate"] is None
    assert d["threshold"] is None
