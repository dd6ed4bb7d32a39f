"""Printers of one daemon share the model's TFLite interpreter (4.5 MB each otherwise,
benchmarks/memory.py), so scoring from several watcher threads at once must give every thread
its own frame's result, exactly as scoring alone does."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import cv2
import numpy as np

from watchdog.detection.bundle import Bundle, default_bundle_path
from watchdog.detection.model import FrameScorer

FRAMES = Path(__file__).resolve().parent.parent / "watchdog" / "demo" / "frames"


def _inputs(bundle: Bundle) -> list[np.ndarray]:
    return [bundle.meta.preprocess.apply(cv2.imread(str(p))) for p in sorted(FRAMES.glob("*.jpg"))]


def test_scorers_of_one_model_share_an_interpreter_and_score_correctly_from_threads() -> None:
    bundle = Bundle.load(default_bundle_path())
    scorers = [FrameScorer(bundle) for _ in range(4)]
    assert len({id(s.interp) for s in scorers}) == 1
    inputs = _inputs(bundle)
    alone = [scorers[0].reconstruct(x) for x in inputs]

    results: dict[tuple[int, int], np.ndarray] = {}
    start = threading.Barrier(len(scorers))

    def work(k: int) -> None:
        start.wait()
        for _ in range(5):
            for i, x in enumerate(inputs):
                results[(k, i)] = scorers[k].reconstruct(x)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(scorers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for (_, i), out in results.items():
        np.testing.assert_array_equal(out, alone[i])
    assert len(results) == len(scorers) * len(inputs)


def test_another_model_file_gets_its_own_interpreter(tmp_path: Path) -> None:
    """A reload with a new bundle must not keep scoring with the old model."""
    shutil.copytree(default_bundle_path(), tmp_path / "copy")
    first = FrameScorer(Bundle.load(default_bundle_path()))
    second = FrameScorer(Bundle.load(tmp_path / "copy"))
    assert first.interp is not second.interp


def test_the_model_runs_in_one_thread_that_ends_with_its_last_scorer(tmp_path: Path) -> None:
    """Every thread that runs the model keeps ~0.25 MB of the runtime's memory, so printers hand
    their frames to the model's own thread; a reload that drops a model must not leave it."""
    import gc

    shutil.copytree(default_bundle_path(), tmp_path / "copy")
    bundle = Bundle.load(tmp_path / "copy")
    scorers = [FrameScorer(bundle) for _ in range(3)]
    x = _inputs(bundle)[0]
    threads = [threading.Thread(target=s.reconstruct, args=(x,)) for s in scorers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert len({s._shared._thread for s in scorers}) == 1
    model_thread = scorers[0]._shared._thread
    assert model_thread.is_alive() and model_thread.name == "model"
    del scorers, threads
    gc.collect()
    model_thread.join(10)
    assert not model_thread.is_alive()


def test_a_refused_frame_is_not_kept_alive_by_the_model_thread() -> None:
    """The watcher drops a frame the preprocessing refuses at once; the hand-over to the model's
    thread must not keep it (a 48 MB frame at camera.max_pixels) until the cycle collector runs."""
    import gc
    import weakref

    from watchdog.detection.detector import Detector

    detector = Detector.for_bundle(Bundle.load(default_bundle_path()))
    frame = np.zeros((480, 640, 3), np.float64)  # refused: not an 8-bit image
    kept = weakref.ref(frame)
    gc.disable()
    try:
        try:
            detector.observe(frame)
        except ValueError as exc:
            assert "dtype" in str(exc)
        else:
            raise AssertionError("a float64 frame must be refused")
        del frame
        assert kept() is None
    finally:
        gc.enable()


def test_the_runtimes_banner_is_dropped_and_all_else_on_stderr_passed_on(
    capfd, monkeypatch
) -> None:
    """Commands drop the runtime's own "Created TensorFlow Lite XNNPACK delegate" line (it
    began calibrate's output); what else reaches the process's stderr meanwhile (the
    runtime's error on a bad model, another thread's log line) is passed on, a failed load
    too. The daemon never redirects its stderr."""
    import os

    import pytest

    from watchdog.detection import model

    def loads(fail: bool) -> None:
        with model._runtime_banner_dropped():
            os.write(2, b"INFO: " + model.RUNTIME_BANNER + b"\nERROR: Didn't find op X\n")
            if fail:
                raise RuntimeError("no op X")

    monkeypatch.setitem(model._banner, "dropped", False)  # the daemon's way
    loads(fail=False)
    assert model.RUNTIME_BANNER.decode() in capfd.readouterr().err
    model.drop_runtime_banner()  # the commands' way
    loads(fail=False)
    assert capfd.readouterr().err == "ERROR: Didn't find op X\n"
    with pytest.raises(RuntimeError):
        loads(fail=True)
    assert capfd.readouterr().err == "ERROR: Didn't find op X\n"
    os.write(2, b"stderr is its own again\n")
    assert capfd.readouterr().err == "stderr is its own again\n"


def test_a_command_started_with_stderr_closed_still_scores() -> None:
    """``2>&-`` (a cron line, a script): Python's sys.stderr is None, and the banner's
    redirection raised where it flushed it, before the model was loaded."""
    import subprocess
    import sys
    from pathlib import Path

    frame = Path(__file__).resolve().parents[1] / "watchdog/demo/frames/000_normal.jpg"
    cmd = [sys.executable, "-m", "watchdog", "score", str(frame)]
    r = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=None,
        text=True,
        timeout=120,
        preexec_fn=lambda: __import__("os").close(2),
    )
    assert r.returncode == 0, r.stdout
    assert "000_normal.jpg" in r.stdout, r.stdout


def test_ctrl_c_while_the_model_judges_a_frame_waits_for_that_frame() -> None:
    """Ctrl-C during `replay` came while the model's thread was still in the model: the
    process ended under it and the runtime aborted it ("terminate called without an active
    exception", exit 134, in about one run of ten) instead of its summary and exit 130. The
    interrupted caller lets the frame end first (here a job of half a second, and Ctrl-C
    made by a timer signal a tenth of a second in)."""
    import signal
    import time

    scorer = FrameScorer(Bundle.load(default_bundle_path()))
    finished: list[float] = []

    def judging() -> None:
        time.sleep(0.5)
        finished.append(time.monotonic())

    def ctrl_c(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGALRM, ctrl_c)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        scorer._shared.call(judging)
    except KeyboardInterrupt:
        interrupted = time.monotonic()
    else:
        raise AssertionError("the timer's Ctrl-C did not reach the caller")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)
    assert finished and finished[0] <= interrupted
