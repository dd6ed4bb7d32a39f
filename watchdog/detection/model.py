"""Run a bundle's TFLite model, without TensorFlow on the Pi.

The interpreter comes from ``ai_edge_litert`` (the maintained LiteRT wheel), else
``tflite_runtime``, else ``tensorflow.lite`` (a desktop with the ``train`` extra).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import sys
import tempfile
import threading
import typing
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from watchdog.detection.bundle import MAX_MODEL_BYTES, MAX_MODEL_MEMORY_BYTES, Bundle, BundleError

logger = logging.getLogger(__name__)

T = TypeVar("T")


RUNTIME_BANNER = b"Created TensorFlow Lite XNNPACK delegate for CPU."
_banner = {"dropped": False}  # set by the commands (drop_runtime_banner), never by the daemon
_redirect_lock = threading.Lock()


def drop_runtime_banner() -> None:
    """From now on the runtime's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
    is kept out of this process's output. For commands (calibrate, score, replay, the
    trainer), whose output began with it; the daemon keeps its stderr as it is (other threads
    write there, and a crash while it pointed elsewhere would lose its last words)."""
    _banner["dropped"] = True


@contextlib.contextmanager
def _runtime_banner_dropped() -> Iterator[None]:
    """The runtime writes its banner to the process's stderr itself, past Python's logging,
    and no setting turns it off (``native_lines_dropped``)."""
    if not _banner["dropped"]:
        yield
        return
    with native_lines_dropped(RUNTIME_BANNER):
        yield


@contextlib.contextmanager
def native_lines_dropped(*needles: bytes) -> Iterator[None]:
    """Lines holding one of ``needles`` that native code writes to the process's stderr
    meanwhile are dropped: stderr goes to a file, and all else written there (the runtime's
    own error on a bad model) is passed on, whatever happens. Not for the daemon, whose other
    threads write there."""
    with _redirect_lock:
        saved = None
        try:
            _flush_stderr()
            saved = os.dup(2)
            sink = tempfile.TemporaryFile()
        except (OSError, ValueError):  # no descriptor or file to spare: the line is shown
            if saved is not None:
                os.close(saved)
            yield
            return
        try:
            os.dup2(sink.fileno(), 2)
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            with sink:
                sink.seek(0)
                kept = b"".join(
                    line
                    for line in sink.read().splitlines(keepends=True)
                    if not any(needle in line for needle in needles)
                )
            if kept:
                os.write(2, kept)


def _flush_stderr() -> None:
    if sys.stderr is not None:  # None: the command was started with stderr closed (2>&-)
        sys.stderr.flush()


def load_interpreter(
    model_path: str | Path, num_threads: int = 1, content: bytes | None = None
) -> Any:
    """A ready TFLite interpreter from the first runtime that imports (``content``: the
    model file's bytes, read already by ``read_model``)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            try:
                from tensorflow.lite import Interpreter
            except ImportError as exc:
                raise BundleError(
                    "no TFLite runtime: pip install 'printer-watchdog[pi]' (ai-edge-litert)"
                ) from exc
    if content is None:
        content = read_model(model_path)
    try:
        with _runtime_banner_dropped():
            interp = Interpreter(model_content=content, num_threads=num_threads)
            needed = tensor_bytes(interp)  # before they are allocated
            if needed <= MAX_MODEL_MEMORY_BYTES:
                interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        # the runtime's own words after ours ("not a valid Flatbuffer buffer"): for a bug report
        raise BundleError(
            f"{model_path}: not a TFLite model this watchdog can load (damaged, cut short, or "
            f"another kind of file; the runtime said: {exc})"
        ) from exc
    if needed > MAX_MODEL_MEMORY_BYTES:
        raise BundleError(
            f"{model_path}: the model needs {needed / 2**20:.0f} MB of memory to run, more than "
            f"the {MAX_MODEL_MEMORY_BYTES // 2**20} MB a watchdog on a Pi gives it (train it "
            "with a smaller --input-size)"
        )
    return interp


def tensor_bytes(interp: Any) -> int:
    """The bytes of every tensor the model declares: what running it may take at most."""
    total = 0
    for tensor in interp.get_tensor_details():
        count = 1
        for side in tensor["shape"]:
            count *= max(1, int(side))
        total += count * np.dtype(tensor["dtype"]).itemsize
    return total


def read_model(model_path: str | Path) -> bytes:
    """A model file's bytes. Read whole, not mapped: a model file copied over in place while
    the daemon runs (scp into the bundle's folder) must not change the model under it (a bus
    error)."""
    try:
        with open(model_path, "rb") as f:
            content = f.read(MAX_MODEL_BYTES + 1)  # a larger file is refused, not held whole
    except OSError as exc:
        raise BundleError(f"{model_path}: cannot read the model ({exc.strerror or exc})") from None
    if len(content) > MAX_MODEL_BYTES:
        raise BundleError(
            f"{model_path}: more than {MAX_MODEL_BYTES // 2**20} MB, far more than a model "
            "for a Pi needs (the shipped one is under 1 MB)"
        )
    return content


JOB_END_WAIT_S = 10.0  # a frame's judging takes milliseconds; never a hang at Ctrl-C


class SharedInterpreter:
    """One interpreter for all of a daemon's printers, run by one thread of its own.

    Printers score with the same model, and each interpreter's tensors cost ~4.5 MB, so they
    share one (benchmarks/memory.py). The model, and the scoring around it (``Detector``),
    runs in this object's thread, not the watchers': each thread that ran them kept about
    0.3 MB of the runtime's and OpenCV's per-thread memory, per printer. Frames come one at a
    time anyway (``FrameGate``), so the hand-over costs no waiting."""

    def __init__(self, interp: Any) -> None:
        self.interp = interp
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=_run_jobs, args=(self._jobs,), name="model", daemon=True
        )
        self._thread.start()
        weakref.finalize(self, self._jobs.put, None)  # the thread ends with its last user

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` run in the model's thread (at once when already there)."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        job = _Job(fn, args)
        self._jobs.put(job)
        try:
            job.done.wait()
        except KeyboardInterrupt:
            # Ctrl-C (replay, score): the process ends next, and the runtime torn down while
            # its thread is still in the model aborts it ("terminate called", exit 134)
            # instead of the command's own summary and exit code; its one frame ends first
            job.done.wait(JOB_END_WAIT_S)
            raise
        result, error = job.result, job.error
        del job  # with the error raised below, it would keep the frame alive in a cycle
        if error is not None:
            try:
                raise error
            finally:
                del error
        return typing.cast(T, result)

    def run(self, input_index: int, output_index: int, batch: np.ndarray) -> np.ndarray:
        """The model's output for ``batch``, computed in the model's thread."""
        return self.call(_invoke, self.interp, input_index, output_index, batch)


def _invoke(interp: Any, input_index: int, output_index: int, batch: np.ndarray) -> np.ndarray:
    interp.set_tensor(input_index, batch)
    interp.invoke()
    # get_tensor copies: the result stays the caller's after the next run
    return typing.cast(np.ndarray, interp.get_tensor(output_index))


class _Job:
    """One call handed to the model's thread, and what came of it."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn: Callable[..., Any] | None = fn
        self.args: tuple[Any, ...] | None = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()


def _run_jobs(jobs: queue.SimpleQueue[_Job | None]) -> None:
    """The model's thread: runs jobs until told to stop (``None``)."""
    while (job := jobs.get()) is not None:
        try:
            assert job.fn is not None and job.args is not None
            job.result = job.fn(*job.args)
        except BaseException as exc:  # handed to the caller, which reports it
            job.error = exc
        finally:
            job.fn = job.args = None  # the frame is the caller's alone once it is done
            job.done.set()
            del job


_SHARED: weakref.WeakValueDictionary[tuple[str, str, int], SharedInterpreter] = (
    weakref.WeakValueDictionary()
)
_SHARED_LOCK = threading.Lock()


def shared_interpreter(
    model_path: str | Path, num_threads: int = 1, written_for: str = ""
) -> SharedInterpreter:
    """The interpreter of this model file (its path and content) and thread count, made once
    and kept while a FrameScorer uses it; a reload with a new model gets a new one. By its
    content, not its time stamp: the same model copied over again (or touched) is the same
    model, and a reload then keeps what each printer has learnt of its print."""
    path = Path(model_path)
    content = read_model(path)  # the key and the interpreter of the very same bytes
    digest = hashlib.sha256(content).hexdigest()
    if written_for and digest != written_for:
        load_interpreter(path, num_threads, content)  # a damaged copy is said as such
        raise BundleError(
            f"{path}: not the model its {path.parent / 'model.json'} was written for (copy a "
            "bundle's two files together, or the whole folder)"
        )
    key = (str(path.resolve()), digest, num_threads)
    with _SHARED_LOCK:
        holder = _SHARED.get(key)
        if holder is None:
            holder = SharedInterpreter(load_interpreter(path, num_threads, content))
            _SHARED[key] = holder
        return holder


def _quantised(tensor: dict[str, Any]) -> bool:
    """An 8-bit tensor with its scale (the trainer's int8 export): values mean something."""
    scale, _ = tensor.get("quantization", (0.0, 0))
    return tensor["dtype"] in (np.int8, np.uint8) and float(scale) > 0


class ModelFailure(BundleError):
    """The model ran into an error on a frame, or gave back no number (NaN, infinity): a
    damaged or hand-made model that passed its check at start. The frame is not judged."""


class FrameScorer:
    """The bundle's TFLite model: model input → reconstruction → error map.

    What a frame's error *means* for this print (baseline, region, masks, threshold) is the
    ``Detector``'s business; this class only runs the model the trainer exported.
    """

    def __init__(self, bundle: Bundle, num_threads: int = 1) -> None:
        self.bundle = bundle
        meta = bundle.meta
        self.pre = meta.preprocess
        self.scoring = meta.scoring
        self._shared = shared_interpreter(bundle.model_path, num_threads, meta.model_sha256)
        self.interp = self._shared.interp
        inputs, outputs = self.interp.get_input_details(), self.interp.get_output_details()
        where = bundle.model_path
        if len(inputs) != 1 or len(outputs) != 1:
            raise BundleError(
                f"{where}: the model takes {len(inputs)} input(s) and gives {len(outputs)} "
                "output(s); a bundle's model takes one frame and gives its reconstruction"
            )
        inp, out = inputs[0], outputs[0]
        for name, tensor in (("input", inp), ("output", out)):
            shape = [int(v) for v in tensor["shape"]]
            if shape and shape[0] != 1:
                raise BundleError(
                    f"{where}: the model's {name} holds {shape[0]} frames at a time; a bundle's model "
                    "takes one frame and gives its reconstruction"
                )
            if tuple(shape[1:]) != self.pre.shape:
                raise BundleError(
                    f"{where}: model {name} {shape} does not match the frame size model.json's "
                    f"preprocess gives {list(self.pre.shape)}"
                )
            if tensor["dtype"] != np.float32 and not _quantised(tensor):
                raise BundleError(
                    f"{where}: model {name} of {np.dtype(tensor['dtype']).name} values without "
                    "a scale: neither a float model nor a quantised one the trainer exports"
                )
        self._in, self._out = inp, out

    @property
    def threshold(self) -> float:
        return self.bundle.meta.threshold

    @property
    def model_key(self) -> object:
        """The same object for every scorer of the same model file (its path and content's
        SHA-256) and threads."""
        return self._shared

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """Model input (H, W, C) float32 in [0, 1] → reconstruction of the same shape."""
        inp = self._in
        batch = x[None, ...].astype(np.float32)
        if inp["dtype"] != np.float32:  # int8 model with quantised I/O
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            batch = np.clip(np.round(batch / scale + zero), info.min, info.max).astype(inp["dtype"])
        try:
            out = self._shared.run(inp["index"], self._out["index"], batch)[0]
        except RuntimeError as exc:  # the runtime's own words, on one line, cut (its error
            # text grows by the same words at every failed run)
            why = " ".join(str(exc).split())[:160]
            raise ModelFailure(
                f"{self.bundle.model_path}: the model failed on a frame ({why})"
            ) from None
        if self._out["dtype"] != np.float32:
            scale, zero = self._out["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out.astype(np.float32)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` run in the model's thread: a printer's scoring (``Detector``)."""
        return self._shared.call(fn, *args)

    def error_map(self, x: np.ndarray) -> np.ndarray:
        """The error map of one model input (H, W, C) in [0, 1]; ModelFailure where the model
        gave back no number (NaN, or values so large their error is infinite): such a frame
        scored NaN (never anomalous: a blind watchdog) or infinite (a good print paused)."""
        with np.errstate(over="ignore", invalid="ignore"):
            emap = self.scoring.error_map(x, self.reconstruct(x))
        if not np.isfinite(emap).all():
            raise ModelFailure(
                f"{self.bundle.model_path}: the model gave back no usable number (NaN or "
                "infinity) for a frame"
            )
        return emap

    def score(self, frame: np.ndarray) -> float:
        """The absolute score of one camera frame with the bundle's own region (no baseline)."""
        return self.scoring.score(self.error_map(self.pre.apply(frame)))
