"""pytest plugin: models. A tiny bundle trained by the real trainer on synthetic frames.

``tiny_bundle`` runs ``python -m trainer`` in a subprocess (so TensorFlow never enters the
test process) once per test run: the ``tiny`` preset (64x48, 25 epochs), about 20-40 s on 2 cores.
Sessions print0 and print1 fit the model, print2 validates (sets the threshold), print3 tests.
The test run's processes (pytest-xdist workers) share the data and each training: whichever
asks first makes it, the others wait for it (``_made_once``).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests import synth

TINY_SESSIONS = 4
TINY_FRAMES = 16
TINY_ANOMALOUS = 10
TINY_SEED = 0


def _made_once(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], Path]
) -> Path:
    """``make(folder)``'s result, made once for the whole test run: the worker processes of a
    parallel run (pytest-xdist) share one temporary root, and the first to ask makes it while
    the others wait on a file lock. A training is repeatable (one seed), so this only saves
    time: each worker training its own would give the same bundle."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's root, above each worker's own folder
    folder = base / f"shared-{name}"
    with open(base / f"shared-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        made = base / f"shared-{name}.made"
        if made.is_file():
            return Path(made.read_text())
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        result = make(folder)
        made.write_text(str(result))
        return result


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Kaggle-layout folder of synthetic frames: no_defected/print<S>_<i>.jpg, defected/."""
    return _made_once(
        tmp_path_factory,
        "synthetic-data",
        lambda root: synth.write_kaggle_layout(
            root, TINY_SESSIONS, TINY_FRAMES, TINY_ANOMALOUS, seed=TINY_SEED
        ),
    )


@pytest.fixture(scope="session")
def normal_frames() -> list[np.ndarray]:
    """BGR frames of the fitted sessions (print0, print1), early in the print: below the threshold."""
    return [
        synth.normal_frame(s, i, TINY_FRAMES, TINY_SEED) for s in (0, 1) for i in range(0, 10, 2)
    ]


@pytest.fixture(scope="session")
def anomalous_frames() -> list[np.ndarray]:
    """BGR frames with spaghetti on the bed: they score above tiny_bundle's threshold."""
    return [synth.anomalous_frame(100 + i, TINY_SEED) for i in range(6)]


def train_tiny(data: Path, out: Path, *extra: str) -> Path:
    """Run the real trainer CLI on ``data``; return the run folder (its last stdout line)."""
    cmd = [
        sys.executable,
        "-m",
        "trainer",
        "--data",
        str(data),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--val-sessions",
        "print2",
        "--test-sessions",
        "print3",
        "--seed",
        str(TINY_SEED),
        *extra,
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    if proc.returncode != 0:
        raise RuntimeError(f"trainer failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def tiny_run(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run folder of one tiny training (report.json, plots, model.keras, bundle/)."""
    pytest.importorskip("tensorflow")
    return _made_once(tmp_path_factory, "runs", lambda out: train_tiny(synthetic_dataset, out))


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run: Path) -> Path:
    """A real bundle folder (model.tflite + model.json) trained on synthetic frames."""
    return tiny_run / "bundle"


@pytest.fixture(scope="session")
def tiny_guarded_bundle(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like tiny_bundle, with per-print adaptation on the first 4 frames of each print and the
    start guard the trainer sets (what the trainer exports, unchanged)."""
    pytest.importorskip("tensorflow")
    return (
        _made_once(
            tmp_path_factory,
            "runs-adaptive",
            lambda out: train_tiny(synthetic_dataset, out, "--adapt-frames", "4"),
        )
        / "bundle"
    )


@pytest.fixture(scope="session")
def tiny_start_judged_run(
    synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A tiny training with a longer start (8 frames) whose frames after the first 3 are judged
    against them (``--adapt-early-frames``), matching light as the shipped preset does: its
    run folder."""
    pytest.importorskip("tensorflow")
    return _made_once(
        tmp_path_factory,
        "runs-start-judged",
        lambda out: train_tiny(
            synthetic_dataset,
            out,
            "--adapt-frames",
            "8",
            "--adapt-early-frames",
            "3",
            "--match-light",
        ),
    )


@pytest.fixture(scope="session")
def tiny_start_judged_bundle(
    tiny_start_judged_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``tiny_start_judged_run``'s bundle as the trainer exports it, but without its start
    guard: what is caught during the start is the start's own judgement."""
    return without_start_guard(
        tiny_start_judged_run / "bundle", tmp_path_factory.mktemp("start-judged") / "bundle"
    )


def without_start_guard(bundle: Path, into: Path) -> Path:
    """A copy of ``bundle`` whose start guard is off. A model this tiny puts its guard close to
    the synthetic prints' own starts, so which calibration frame crosses it varies from one
    seed (or machine) to the next; tests of the per-print baseline use this copy, and the guard has its
    own tests (test_first_minutes.py, test_start_guard.py)."""
    shutil.copytree(bundle, into)
    meta = json.loads((into / "model.json").read_text())
    meta["adaptation"]["guard"] = 0.0
    (into / "model.json").write_text(json.dumps(meta, indent=2))
    return into


@pytest.fixture(scope="session")
def tiny_adaptive_bundle(
    tiny_guarded_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``tiny_guarded_bundle`` without its start guard: calibration frames never count."""
    return without_start_guard(tiny_guarded_bundle, tmp_path_factory.mktemp("unguarded") / "bundle")


@pytest.fixture(scope="session")
def tiny_light_bundle(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like tiny_guarded_bundle, trained with ``--match-light`` (each print's frames are
    matched in brightness and contrast to its first frames before scoring) and
    ``--adapt-nearest 2`` (each frame compared with the 2 calibration frames most like it)."""
    pytest.importorskip("tensorflow")
    return (
        _made_once(
            tmp_path_factory,
            "runs-light",
            lambda out: train_tiny(
                synthetic_dataset,
                out,
                "--adapt-frames",
                "4",
                "--match-light",
                "--adapt-nearest",
                "2",
            ),
        )
        / "bundle"
    )


@pytest.fixture(scope="session")
def tiny_int8_run(synthetic_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny training quantized to int8 (``--quantize int8``), with an 8-frame start and its
    light matched: its run folder (report, ``bundle/`` int8, ``bundle-float32/``). One
    training serves every test of a quantized bundle: it is the slowest the suite makes."""
    pytest.importorskip("tensorflow")
    return _made_once(
        tmp_path_factory,
        "runs-int8",
        lambda out: train_tiny(
            synthetic_dataset,
            out,
            "--adapt-frames",
            "8",
            "--match-light",
            "--quantize",
            "int8",
        ),
    )
