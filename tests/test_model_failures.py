"""Models that load but cannot judge frames: damaged, or hand-made. Each is refused in one
line by every command alike (start, reload and check-config try it on the same frames), and
one that fails only later, on the camera's frames, leaves the daemon running, saying so once.

The models are real TFLite files, converted by TensorFlow in a child process (TensorFlow never
enters the test process), each the trainer's tiny bundle with its model swapped."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_helpers import run_cli, write_config
from tests.test_loop import _folder, _watcher
from watchdog.devices.printers import SimulatedPrinter

# name: a TensorFlow function of the input x (of y too: a second input); the first two fail
# on a frame with something in it and pass a blank one, as the check at start did alone
HOSTILE = {
    # infinity where the frame is not black
    "infinite": "lambda x: tf.where(tf.reduce_max(x) > 0.0, x / 0.0, x)",
    # an index out of range where the frame is not black: the runtime's own error at invoke
    "failing": "lambda x: x * tf.gather(tf.constant([1.0, 2.0]), "
    "tf.cast(tf.reduce_sum(x) * 1e6, tf.int32))",
    # not a model of a frame: two inputs; whole numbers out, without a scale
    "two_inputs": "lambda x, y: x * 1.0 + y",
    "integer_output": "lambda x: tf.cast(x * 255.0, tf.int32)",
    # a small file whose running takes far more memory than a Pi gives (a copy of each frame
    # by the hundred; {copies} is worked out for the tiny model's input)
    "memory_hungry": "lambda x: tf.reduce_max(tf.tile(x, [{copies}, 1, 1, 1]), 0, keepdims=True)",
    # two frames at a time (score and calibrate gave it one: a traceback)
    "two_frames": "lambda x: x * 1.0",
}
BATCH = {"two_frames": 2}


@pytest.fixture(scope="module")
def hostile(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("tensorflow")
    root = tmp_path_factory.mktemp("hostile-models")
    shape = json.loads((tiny_bundle / "model.json").read_text())["input_shape"]
    made = {name: root / name for name in HOSTILE}
    lines = [
        "import os",
        'os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"',
        "import tensorflow as tf",
    ]
    copies = 1 + 160 * 2**20 // (4 * math.prod(shape))  # the tiles alone: 160 MB
    for name, expression in HOSTILE.items():  # one TensorFlow start for them all (seconds each)
        shutil.copytree(tiny_bundle, made[name])
        batch = [BATCH.get(name, 1), *shape[1:]]
        lines += [
            f"fn = tf.function({expression.replace('{copies}', str(copies))})",
            f"specs = [tf.TensorSpec({batch}, tf.float32)] * fn.python_function.__code__.co_argcount",
            "conv = tf.lite.TFLiteConverter.from_concrete_functions("
            "[fn.get_concrete_function(*specs)], fn)",
            f"open({str(made[name] / 'model.tflite')!r}, 'wb').write(conv.convert())",
        ]
    proc = subprocess.run(
        [sys.executable, "-c", "\n".join(lines)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for folder in made.values():  # each bundle's model.json says which model it was written for
        meta = json.loads((folder / "model.json").read_text())
        meta["model_sha256"] = hashlib.sha256((folder / "model.tflite").read_bytes()).hexdigest()
        (folder / "model.json").write_text(json.dumps(meta))
    return made


@pytest.mark.parametrize("name", ["infinite", "failing"])
def test_a_model_that_cannot_judge_a_busy_frame_is_refused_alike_by_run_and_check_config(
    tmp_path, hostile, name
) -> None:
    """check-config said "ok, model loaded and run once" of a model that scores every frame
    with something in it infinite, and ``run`` started with it: blind, each score null."""
    config = write_config(tmp_path / "c.yaml", model=str(hostile[name]), printers=[{"name": "e3"}])
    said = []
    for command in ("check-config", "run"):
        r = run_cli(command, "--config", str(config), timeout=120)
        assert r.returncode == 2, (command, r.returncode, r.stdout, r.stderr)
        lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        assert "a busy frame" in lines[0] and str(hostile[name]) in lines[0], lines[0]
        # named as the config's key, as a bundle that does not load is
        assert lines[0].startswith(f"error: {config}: model: "), lines[0]
        said.append(lines[0])
    assert said[0] == said[1]


def test_score_of_a_model_failing_on_a_frame_is_one_line(tmp_path, hostile, normal_frames) -> None:
    import cv2

    image = tmp_path / "frame.jpg"
    cv2.imwrite(str(image), normal_frames[0])
    r = run_cli("score", "--model", str(hostile["failing"]), str(image), timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    [line] = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert "the model failed on a frame" in line and "\n" not in line, line


@pytest.mark.parametrize("name", ["infinite", "failing"])
def test_a_running_watcher_whose_model_fails_on_the_cameras_frames_says_so_once(
    tmp_path, hostile, normal_frames, caplog, name
) -> None:
    """A model that passed its check at start and fails on the camera's frames: the loop logged
    a 30-line traceback at every frame (or scored them NaN and judged nothing, silently).
    Now each frame is skipped, the reason said once, and counted."""
    caplog.set_level(logging.INFO)
    frames = _folder(tmp_path / "rec", list(normal_frames[:5]))
    watcher = _watcher(tmp_path, hostile[name], frames, SimulatedPrinter())
    records = [watcher.step() for _ in range(5)]
    assert all(r.verdict is None for r in records)
    said = [r for r in caplog.records if "frames not judged" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.ERROR, caplog.text
    assert str(hostile[name]) in said[0].getMessage() and "\n" not in said[0].getMessage()
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)
    assert 'printer_watchdog_errors_total{kind="model",printer="e3"} 5.0' in (
        watcher.metrics.text().decode()
    )


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("two_inputs", "the model takes 2 input(s) and gives 1 output(s)"),
        ("integer_output", "model output of int32 values without a scale"),
        ("two_frames", "the model's input holds 2 frames at a time"),
        ("memory_hungry", "MB of memory to run, more than the 128 MB"),
    ],
)
def test_a_model_that_is_not_a_frames_reconstruction_is_refused_in_one_line(
    tmp_path, hostile, name, said
) -> None:
    """Accepted before: a second input left unset, or whole numbers read as a reconstruction,
    gave scores of nothing (an 8-bit input without a scale paused a normal print in replay)."""
    config = write_config(tmp_path / "c.yaml", model=str(hostile[name]), printers=[{"name": "e3"}])
    r = run_cli("check-config", "--config", str(config), timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    [line] = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert said in line and str(hostile[name]) in line, line
    if name == "two_frames":  # score gave its one frame: a traceback
        import cv2
        import numpy as np

        frame = tmp_path / "frame.png"
        cv2.imwrite(str(frame), np.zeros((48, 64, 3), np.uint8))
        r = run_cli("score", "--model", str(hostile[name]), str(frame), timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert said in r.stderr, r.stderr


def test_a_watcher_whose_model_cannot_judge_its_frames_is_unhealthy(
    tmp_path, hostile, normal_frames, caplog
) -> None:
    """Frames skipped by a model that fails on them counted as steps that went well: the
    daemon's /healthz stayed 200 while it watched nothing (it went 503 when such a model
    raised out of the step, before the failure was said once)."""
    import threading
    import time

    frames = _folder(tmp_path / "rec", list(normal_frames[:3]) * 100)
    watcher = _watcher(tmp_path, hostile["failing"], frames, SimulatedPrinter())
    watcher.clock = time.monotonic  # the helper's counted clock runs out in a loop this fast
    stop = threading.Event()
    loop = threading.Thread(target=watcher.run, args=(stop,))
    loop.start()
    most = 0
    try:
        deadline = time.monotonic() + 60
        while not watcher.camera.exhausted and time.monotonic() < deadline:
            most = max(most, watcher.snapshot.failing_steps)
            time.sleep(0.01)
        time.sleep(0.5)
    finally:
        stop.set()
        loop.join(30)
    assert most >= 5, most
    # the recording over, steps judge nothing and fail nothing: healthy again
    assert watcher.snapshot.failing_steps == 0
    assert not [r for r in caplog.records if r.exc_info], "no step failed otherwise"
