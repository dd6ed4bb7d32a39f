"""The README's "Retrain on your printer" section, walked end to end as a user runs it.

collect from recordings of two good prints → the README's own trainer command (with the tiny
preset appended, so the test trains in seconds) → replay a third print and a failure through
the new bundle: the failure pauses, the good print does not, and report.md leads with the
daemon's judgement (adapted figures) before the absolute ones.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from tests import synth
from tests.daemon_helpers import run_cli, write_config

ROOT = Path(__file__).resolve().parents[1]
FRAMES = 24  # per recorded print
CALIBRATION = 6  # --adapt-frames: each print's first frames set its baseline
SHIPPED_CALIBRATION = 30  # the shipped model's
# Appended to the README's command only to keep the test fast (a 64x48 model, a few epochs);
# light matching and nearest-frame baselines as the shipped preset has them.
TINY = (
    "--preset",
    "tiny",
    "--epochs",
    "12",
    "--adapt-frames",
    str(CALIBRATION),
    "--match-light",
    "--adapt-nearest",
    "3",
    "--seed",
    "0",
)


def _print_frames(session: int, n: int) -> list[np.ndarray]:
    """A print as a fixed camera sees it over a few minutes: one part, the carriage and its hot
    end moving over it (the shipped model watches the bottom half), fresh sensor noise per frame. (synth's growing part grows in whole pixel rows, each a
    visible step; a real print's minutes show no such step.)"""
    rng = np.random.default_rng(session)
    return [
        np.clip(
            synth.normal_frame(session, 4, 20, carriage_step=i, hot_end=True).astype(np.float32)
            + rng.normal(0.0, 2.0, (synth.HEIGHT, synth.WIDTH, 3)),
            0,
            255,
        ).astype(np.uint8)
        for i in range(n)
    ]


def readme_command(prefix: str) -> list[str]:
    """The first indented command line of the README that starts with ``prefix``."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.strip().startswith(prefix):
            return line.split()
    raise AssertionError(f"README has no command starting with {prefix!r}")


def _recording(folder: Path, frames: list) -> Path:
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"frame_{i}.jpg"), frame)
    return folder


def _collect(tmp: Path, recording: Path, out: Path) -> subprocess.CompletedProcess[str]:
    config = write_config(
        tmp / f"collect-{recording.name}.yaml",
        printers=[
            {
                "name": "ender3",
                "camera": {"source": str(recording), "interval_s": 10},
                "action": "notify",
            }
        ],
    )
    return run_cli("collect", "--config", str(config), "--out", str(out), timeout=60)


def _replay(config: Path, frames: Path) -> list[dict]:
    r = run_cli("replay", "--config", str(config), "--frames", str(frames), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def _trace(lines: list[dict]) -> str:
    """score/threshold of each frame, for a failure message."""
    return " ".join(
        f"{line['score']:.3g}/{line['threshold']:.3g}"
        for line in lines
        if "score" in line and "event" not in line
    )


def _pauses(lines: list[dict]) -> int:
    return sum(line.get("event") == "alert" for line in lines)


def test_readme_retrain_loop_collect_train_replay(tmp_path: Path) -> None:
    if (
        importlib.util.find_spec("tensorflow") is None
    ):  # not imported here: only the trainer needs it
        pytest.skip("the trainer needs the [train] extra")
    good = [_recording(tmp_path / f"good{s}", _print_frames(s, FRAMES)) for s in (0, 1)]
    # long enough for the shipped model too, which learns each print's first 30 frames
    third = _recording(tmp_path / "third", _print_frames(2, SHIPPED_CALIBRATION + 10))
    # The failure starts as the third print (a good start the models have never seen).
    failure = _recording(
        tmp_path / "failure",
        _print_frames(2, SHIPPED_CALIBRATION + 2)
        + [synth.anomalous_frame(300 + i, 0, session=2) for i in range(8)],
    )
    known_failures = _recording(
        tmp_path / "known-failures", [synth.anomalous_frame(i, 0, session=i % 2) for i in range(8)]
    )

    # 1. collect: each recording is copied to its end, collect stops by itself
    work = tmp_path / "desktop"
    collected = work / "collected"
    for rec in good:
        r = _collect(tmp_path, rec, collected)
        assert r.returncode == 0, r.stderr
    files = sorted((collected / "ender3").glob("*.jpg"))
    assert len(files) == 2 * FRAMES
    prints = {re.sub(r"_\d+$", "", f.stem) for f in files}
    assert len(prints) == 2, prints  # one print per recording, named <print>_<n>

    # 2. the README's command, run where the README runs it
    command = readme_command("python -m trainer --normal collected/")
    assert command[:3] == ["python", "-m", "trainer"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, *command[1:], *TINY, "--anomalous", str(known_failures)],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    run = work / proc.stdout.strip().splitlines()[-1]
    assert run.parent == work / "runs"
    rep = json.loads((run / "report.json").read_text())
    assert rep["protocol"].startswith("all"), "the README's command makes the model to deploy"
    assert rep["n_train"] + rep["n_val"] == 2 * FRAMES, (
        "every frame of both prints fits or validates"
    )
    assert "cross-fitted: 2 prints each scored" in rep["daemon"]["threshold_rule"]
    # how many frames the 1% target rests on (two prints' frames after their starts)
    later = 2 * (FRAMES - rep["daemon"]["replays"][0]["calibration_frames"])
    assert f"({later} frames after the prints' starts)" in rep["daemon"]["threshold_rule"]
    # the absolute threshold's frames are the fitted prints' own last ones, and it says so
    assert "on the last frames of the fitted prints (optimistic)" in rep["threshold_rule"]
    # and a handful of them cannot give a 1% rate: said, as for the per-print threshold
    assert "frames, too few for that rate (it needs 100)" in rep["threshold_rule"]
    bundle = yaml.safe_load((run / "bundle" / "model.json").read_text())
    # two prints cannot tell how far a good start varies: no start guard, and the report says so
    assert bundle["adaptation"]["guard"] == 0
    assert "no start guard: 2 prints are too few" in rep["daemon"]["threshold_rule"]
    assert rep["daemon"]["threshold"] == pytest.approx(bundle["adaptation"]["threshold"])
    # TensorFlow's start-up lines and Keras' per-epoch lines are not in the output
    noise = [
        line
        for line in proc.stderr.splitlines()
        if re.search(r"cuda|oneDNN|XNNPACK|absl|Epoch \d+/|ms/step", line, re.I)
    ]
    assert not noise, noise

    # 3. the report leads with the daemon's judgement: the adapted figures, then the absolute ones
    md = (run / "report.md").read_text()
    daemon = md.index("What the daemon would do")
    assert daemon < md.index("Absolute scores") < md.index("image AUROC")
    # the model to deploy fitted every print: its absolute figures say where their normal
    # frames come from, never "held-out"
    assert rep["test_normal_from"] == "fitted prints' last frames, optimistic"
    assert "normal frames from fitted prints' last frames, optimistic" in md
    assert "fitted prints' last frames" in rep["seed_review"]["on"]
    d = rep["daemon"]
    assert d["held_out_prints"] == 2 and d["failures_replayed"] == 2  # the failure after each print
    assert f"Failure frames flagged (recall): {100 * d['recall']:.1f}%" in md
    assert d["recall"] > 0.5 and d["failures_paused"] == 2
    assert "**2 of 2** replays (1 failed print, each after each of 2 held-out prints)" in md
    assert d["normal_prints_paused"] == 0
    # those false alarms are counted on the frames that set the threshold: each print judged
    # with the threshold the other one set, as a print of tomorrow is, is said beside them
    unseen = d["unseen"]
    assert unseen["prints"] == 2 and 0.0 <= unseen["false_alarm_rate"] <= 1.0, unseen
    said = " ".join(md.split())
    assert f"{100 * unseen['false_alarm_rate']:.1f}% of its good frames flagged" in said
    assert "each print is judged with the thresholds and start guard the other prints set" in said
    assert (run / "replay.png").stat().st_size > 10_000

    # 4. replay a third print and a failure through the new bundle, as the README says: the same
    # decisions as the shipped model's on the same recordings
    onset = SHIPPED_CALIBRATION + 2  # the failure's first frame
    for model in (run / "bundle", None):
        config = write_config(
            tmp_path / "replay.yaml",
            model=str(model) if model else None,
            printers=[{"name": "ender3", "camera": {"interval_s": 10}, "action": "pause"}],
        )
        lines = _replay(config, third)
        assert _pauses(lines) == 0, (
            f"{model or 'shipped model'}: a good print it never saw was paused: {_trace(lines)}"
        )
        lines = _replay(config, failure)
        assert _pauses(lines) == 1, (
            f"{model or 'shipped model'}: the failure was not paused: {_trace(lines)}"
        )
        alert = next(i for i, line in enumerate(lines) if line.get("event") == "alert")
        judged = [line for line in lines[:alert] if "score" in line and "event" not in line]
        assert onset + 2 <= len(judged) < onset + 5, (
            f"{model or 'shipped model'}: paused {len(judged) - onset} "
            "frames after the failure began (3 in a row are needed)"
        )
