"""Benchmark scripts run as a user runs them: they skip cleanly without data, and their
figures come from the daemon's own replay (the benchmarks themselves are not run in CI)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
TIME_TO_PAUSE = ROOT / "benchmarks" / "time_to_pause.py"


def run_script(*args: str, script: Path = TIME_TO_PAUSE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_time_to_pause_skips_in_one_line_without_the_data(tmp_path) -> None:
    proc = run_script("--data", str(tmp_path / "absent"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [f"skipped: no Kaggle data at {tmp_path / 'absent'}"]


@pytest.mark.parametrize(
    "script",
    [
        "lasting_change.py",
        "frame_order.py",
        "feature_screen.py",
        "growing_prints.py",
        "persistence_screen.py",
        "recent_screen.py",
        "prototype_screen.py",
        "map_screen.py",
        "ensemble_screen.py",
        "decision_screen.py",
    ],
)
def test_benchmark_skips_in_one_line_without_the_data(tmp_path, script: str) -> None:
    proc = run_script("--data", str(tmp_path / "absent"), script=ROOT / "benchmarks" / script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [f"skipped: no Kaggle data at {tmp_path / 'absent'}"]


def test_time_to_pause_replays_a_normal_print_then_a_failure(
    tmp_path, synthetic_dataset, tiny_adaptive_bundle
) -> None:
    """print3 (held out of tiny_adaptive_bundle's fitting) then the spaghetti frames: the
    normal part is never paused and the failure is, within its frames."""
    out = tmp_path / "ttp.json"
    proc = run_script(
        "--data",
        str(synthetic_dataset),
        "--sessions",
        "print3",
        "--bundles",
        f"print3={tiny_adaptive_bundle}",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "| spaghetti |" in proc.stdout
    fold = json.loads(out.read_text())["folds"]["print3"]
    row = fold["sequences"]["spaghetti"]
    assert fold["calibration_frames"] == 4
    assert (row["normal_frames"], row["failure_frames"]) == (16, 10)
    assert row["normal_pauses"] == 0
    # paused within the failure's frames (fewer than `consecutive` when the last normal frames
    # were already above the threshold, without pausing the normal part)
    assert row["frames_to_pause"] is not None and 1 <= row["frames_to_pause"] <= 10


def test_a_print_failing_from_its_first_frame_is_judged_against_its_own_failure(
    monkeypatch,
) -> None:
    """quality.py's 'failing from the start' check: a failure already in the calibration frames
    is the baseline, so only what changes after calibration can pause the print."""
    import numpy as np

    from benchmarks import quality as q
    from watchdog.detection.bundle import Adaptation, Scoring
    from watchdog.detection.calibration import simulate

    monkeypatch.setattr(q, "DEFECT_PRINTS", [("unchanged", 40), ("grows", 40)])
    rng = np.random.default_rng(0)
    unchanged = 0.1 + 0.01 * rng.random((40, 8, 8))  # the failure looks the same throughout
    grows = 0.1 + 0.01 * rng.random((40, 8, 8))
    grows[30:, 2:6, 2:6] += 1.0  # something new from frame 30 on (the 21st after calibration)
    unit = Adaptation(frames=10, std_floor=0.5, threshold=1.0)
    scoring = Scoring("l2", "topk", topk=0.1)
    out = q.failing_from_start_stats(
        np.concatenate([unchanged, grows]), 10, 3.0, lambda m: simulate(unit, scoring, m)
    )["failing_from_start"]
    assert out["unchanged"] == {"above": 0.0, "frames_to_pause": None}
    assert out["grows"]["frames_to_pause"] == 23  # 3 in a row from the 21st scored frame
    assert out["grows"]["above"] == 10 / 30


def test_the_first_minutes_go_through_the_detectors_start_guard(monkeypatch) -> None:
    """quality.py's first minutes: each print replayed from its first frame through the
    ``Detector`` and ``decide``: a start above the guard pauses within its first frames, a
    normal start does not, and without the guard nothing in the calibration counts."""
    import numpy as np

    from benchmarks import quality as q
    from watchdog.detection.bundle import Adaptation, Scoring

    monkeypatch.setattr(q, "DEFECT_PRINTS", [("spaghetti", 20)])
    rng = np.random.default_rng(0)

    def packed(
        level: float, n: int
    ) -> np.ndarray:  # error map + a 3-channel input, as fold_maps packs them
        return np.concatenate(
            [level + 0.01 * rng.random((n, 8, 8, 1)), rng.random((n, 8, 8, 3))], axis=-1
        )

    maps = {
        "held": packed(0.1, 40),
        "start_held": packed(0.1, 10),
        "own_spaghetti": packed(0.9, 20),
        "start_spaghetti": packed(0.9, 10),
    }
    spec = Adaptation(frames=10, std_floor=0.5, threshold=1.0, nearest=3, guard=0.5)
    out = q.first_minutes_stats(maps, "held", spec, Scoring("l2", "topk", topk=0.1), 3.0)[
        "first_minutes"
    ]
    assert out["with_guard"]["normal_pauses"] == 0
    assert out["with_guard"]["failed_frames_to_pause"] == {"spaghetti": 3}
    assert out["without_guard"]["failed_frames_to_pause"] == {"spaghetti": None}


def test_a_failure_beginning_during_the_start_is_measured_through_the_detector(
    monkeypatch,
) -> None:
    """quality.py's failure during the start: material pasted from frame ``START_ONSET`` of a
    good start is paused when the start is judged against its first frames, and never when it
    is not; good stretches of the print replayed as starts count their flagged frames and
    pauses; the summary counts the failures paused within 10 frames."""
    import numpy as np

    from benchmarks import quality as q
    from watchdog.detection.bundle import Adaptation, Scoring

    monkeypatch.setattr(q, "DEFECT_PRINTS", [("nest", 20), ("nothing", 20)])
    rng = np.random.default_rng(0)

    def packed(maps: np.ndarray) -> np.ndarray:  # as fold_maps packs them: map, then input
        return np.concatenate([maps[..., None], rng.random((*maps.shape, 3))], axis=-1)

    raw = 0.1 + 0.01 * rng.random((60, 8, 8))
    nest = 0.1 + 0.01 * rng.random((20, 8, 8))
    nest[:, 2:5, 2:5] += 1.0
    lit = raw[:20].copy()
    lit[q.START_LIGHT_ONSET :] += 1.0  # a light change the start's matching did not undo
    maps = {
        "starts_held": packed(raw),  # three stretches of 20 frames, each replayed as a start
        "startfail_nest": packed(np.concatenate([raw[: q.START_ONSET], nest])[:20]),
        "startfail_nothing": packed(raw[20:40]),
        "startlight_+40": packed(raw[:20]),  # matched away
        "startlight_x1.4": packed(lit),
    }
    scoring = Scoring("l2", "topk", topk=0.1)
    spec = Adaptation(frames=20, threshold=1.0, early_frames=8, early_threshold=3.0)
    out = q.start_stats(maps, "held", spec, scoring, 3.0)["failure_in_start"]
    assert out["frames_to_pause"] == {"nest": 3, "nothing": None}
    assert out["above"]["nest"] == 1.0 and out["above"]["nothing"] == 0.0
    assert (out["normal_starts"], out["normal_starts_paused"]) == (3, 0)
    assert out["normal_judged_frames"] == 3 * (20 - 8)
    assert out["light_change_paused"] == {"+40": False, "x1.4": True}
    unjudged = q.start_stats(maps, "held", dataclasses.replace(spec, early_frames=0), scoring, 3.0)
    assert unjudged["failure_in_start"]["frames_to_pause"] == {"nest": None, "nothing": None}

    fold = {
        "held_out": "held",
        "threshold": 3.0,
        "false_alarm_rate": 0.0,
        "recall": 1.0,
        "pasted_recall": 1.0,
        "inscene_recall": 1.0,
        "inscene_recall_by_print": {"nest": 1.0},
        "inscene_frames_to_pause": {"nest": 3},
        "first_minutes": {
            "guard": 0.0,
            **{
                k: {"normal_pauses": 0, "normal_start_max": 0.1, "failed_frames_to_pause": {}}
                for k in ("with_guard", "without_guard")
            },
        },
        "failure_in_start": out,
    }
    summary = q.summarize({"0": [fold], "1": [fold]})
    assert summary["failure_in_start"]["paused_in_goal"] == 2
    assert summary["failure_in_start"]["failures"] == 4
    assert summary["failure_in_start"]["light_changes_paused"] == 2
    assert summary["failure_in_start"]["light_changes"] == 4
    paired = q.summarize_starts({"0": [q.start_only(fold)]})
    assert (paired["paused_in_goal"], paired["light_changes_paused"]) == (1, 1)
    assert "paused within 10 frames: 2 of 4" in q.summary_tables(summary)["failure_in_start"]


def test_in_scene_frames_are_counted_by_how_much_of_the_picture_the_failure_changed(
    monkeypatch,
) -> None:
    """quality.py's in-scene failures by size: each pasted frame is counted in the bin of the
    share of the input it changed (by more than 40 grey levels), and caught where its score is
    above the threshold; the summary adds the fold-runs and renders a table of them."""
    import numpy as np

    from benchmarks import quality as q

    monkeypatch.setattr(q, "DEFECT_PRINTS", [("blob", 4)])
    inputs = np.full((10, 10, 10, 3), 0.5, np.float32)
    normal = np.concatenate([np.zeros((10, 10, 10, 1), np.float32), inputs], axis=-1)
    seq = normal[6:].copy()
    for i, pixels in enumerate((0, 1, 2, 10)):  # 0%, 1%, 2% and 10% of the 100 pixels
        seq[i, ..., 1].flat[:pixels] = 0.5 + 41 / 255  # changed by more than 40 levels
        seq[i, ..., 2].flat[50:60] = 0.5 + 39 / 255  # by less: not counted
    maps = {"seq_blob": seq}
    scores = lambda m: np.array([0.0, 0.0, 2.0, 2.0])  # noqa: E731  the last two above 1.0
    out = q.inscene_stats(normal, maps, 6, 1.0, scores)
    assert out["inscene_by_size"]["frames"] == [1, 1, 1, 0, 1]  # <0.5%, <1.5%, <3%, <6%, more
    assert out["inscene_by_size"]["caught"] == [0, 0, 1, 0, 1]
    assert out["inscene_size_by_print"] == {"blob": 0.015}
    fold = {
        "inscene_by_size": out["inscene_by_size"],
        "inscene_size_by_print": out["inscene_size_by_print"],
    }
    size = q.by_size([fold, fold])
    assert (size["frames"], size["caught"]) == ([2, 2, 2, 0, 2], [0, 0, 2, 0, 2])
    table = q.size_table(size)
    assert "| 1.5% to 3.0% | 2 | 1.00 |" in table and "| 3.0% to 6.0% | 0 | - |" in table
    assert "`blob` 1.5%" in table


def test_the_start_guard_benchmark_scores_made_up_starts_against_the_bundles_guard(
    tmp_path, synthetic_dataset, tiny_guarded_bundle
) -> None:
    out = tmp_path / "start_guard.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "start_guard.py"),
            "--data",
            str(synthetic_dataset),
            "--bundle",
            str(tiny_guarded_bundle),
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    guard = json.loads((tiny_guarded_bundle / "model.json").read_text())["adaptation"]["guard"]
    assert result["guard"] == round(guard, 4) and result["prints"] == 4
    rows = {r["start"]: r for r in result["starts"]}
    assert "lens covered (black)" in rows and "spaghetti over the bed" in rows
    for r in rows.values():  # each count is what the scores say
        assert r["above_guard"] == sum(s > guard for s in r["scores"]) and len(r["scores"]) == 4
    assert rows["lens covered (black)"]["scores"] != rows["a good print's first frame"]["scores"]


def test_frame_order_tells_a_timeline_from_shuffled_frames(monkeypatch) -> None:
    """A print filmed in time order (a part growing a little each frame) has neighbouring
    frames far closer than random pairs; the same frames shuffled do not."""
    import numpy as np

    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks.frame_order import order_stats

    frames = np.zeros((60, 32, 48, 3), np.uint8)
    for i, f in enumerate(frames):
        f[32 - 1 - i // 2 :, 20:28] = 200  # the part grows half a row a frame
        f[:8, (i * 7) % 40 : (i * 7) % 40 + 8] = 30  # the toolhead moves along the top
    timeline = order_stats(frames)
    shuffled = order_stats(frames[np.random.default_rng(1).permutation(len(frames))])
    assert timeline["ratio"] < 0.6
    assert shuffled["ratio"] > 0.8


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("--batch-size", "0", "--batch-size must be at least 1, got 0"),
        ("--epochs", "-3", "--epochs must be at least 1, got -3"),
        ("--patience", "-1", "--patience must be 0 (never stop early) or more, got -1"),
        (
            "--region",
            "0,0.6,1",
            "--region: roi must be [x0, y0, x1, y1] between 0 and 1, got [0.0, 0.6, 1.0]",
        ),
        (
            "--region",
            "0,0.9,1,0.5",
            "--region: roi (0.0, 0.9, 1.0, 0.5) must satisfy 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1",
        ),
        ("--region", "bottom", "argument --region: invalid region value: 'bottom'"),
    ],
)
def test_the_quality_benchmark_refuses_a_training_it_cannot_run_in_one_line(
    tmp_path, flag: str, value: str, said: str
) -> None:
    proc = run_script(
        "--data", str(tmp_path), flag, value, script=ROOT / "benchmarks" / "quality.py"
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1].endswith(f"error: {said}")


def test_the_decoding_benchmark_scores_frames_with_the_shipped_model(tmp_path) -> None:
    """It runs the daemon's own scorer: an API change there must not leave it broken unseen."""
    import cv2

    from tests import synth

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"print_{i}.jpg"), synth.normal_frame(0, i, 3))
    out = tmp_path / "decoding.json"
    proc = run_script(
        "--data",
        str(tmp_path),
        "--frames",
        "2",
        "--cut-frames",
        "2",
        "--json",
        str(out),
        script=ROOT / "benchmarks" / "decoding.py",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())["reduced_decoding"]
    assert [r["size"] for r in rows][:2] == ["640x480", "1280x720"]
    assert rows[0]["max_abs_score_change_vs_threshold"] == 0.0  # nothing is reduced at 640x480
    assert all(r["frames"] == 2 for r in rows)


def test_persistence_keeps_a_change_that_stays_and_drops_one_that_moves() -> None:
    """The persistence screen's score: material that stays in place (or shifts a pixel)
    keeps its score over three frames; a change that jumps elsewhere each frame scores 0."""
    from benchmarks.persistence_screen import persistent_scores
    from watchdog.detection.bundle import Scoring

    rule = Scoring(error="ssim", reduce="topk", topk=0.02)
    staying, moving = np.zeros((4, 32, 32), np.float32), np.zeros((4, 32, 32), np.float32)
    for t in range(4):
        staying[t, 10:14, 10 + t % 2 : 14 + t % 2] = 5.0  # shifts by a pixel and back
        moving[t, 4 + 6 * t : 8 + 6 * t, 4:8] = 5.0
    assert persistent_scores(moving, rule, 1, 1, None).min() > 0  # each frame alone changed
    assert persistent_scores(moving, rule, 3, 3, None)[2:].max() == 0
    alone = persistent_scores(staying, rule, 1, 1, None)
    assert persistent_scores(staying, rule, 3, 3, None) == pytest.approx(alone)
    # without widening, the pixel-wide shift costs the material its edge
    assert (persistent_scores(staying, rule, 3, 1, None)[2:] < alone[2:]).all()
    # a window of n frames: a change that lasts two frames stays in a window of 2, not of 3
    brief = np.zeros((3, 32, 32), np.float32)
    brief[1:, 10:14, 10:14] = 5.0
    assert persistent_scores(brief, rule, 2, 1, None)[2] == pytest.approx(alone[2])
    assert persistent_scores(brief, rule, 3, 1, None)[2] == 0
    # a window holds only the frames there are: the second frame with the first, the first alone
    assert persistent_scores(brief, rule, 3, 1, None)[1] == 0
    assert persistent_scores(staying, rule, 3, 3, None)[0] == pytest.approx(alone[0])
    # a top share of its own replaces the bundle's
    assert persistent_scores(staying, rule, 3, 3, 0.1)[3] < alone[3]


def test_the_decision_screens_rule_fires_on_k_flagged_frames_among_the_last_n() -> None:
    """The decision screen's rule: "3 in a row" is the daemon's own (``decide.fires``, its
    cooldown included); "3 of the last 5" fires on a failure flagged on every other frame,
    which three in a row never pauses, and starts afresh after its cooldown."""
    from benchmarks.decision_screen import window_fires
    from benchmarks.quality import INTERVAL_S, SETTINGS
    from watchdog.detection import decide

    rng = np.random.default_rng(0)
    for share in (0.1, 0.4, 0.8):
        for _ in range(50):
            flags = list(rng.random(60) < share)
            assert window_fires(flags, 3, 3) == decide.fires(flags, SETTINGS, INTERVAL_S)
    every_other = [True, False] * 20
    assert window_fires(every_other, 3, 3) == []
    assert window_fires(every_other, 3, 5) == [4, 18, 32]  # 9 frames of cooldown, then afresh
