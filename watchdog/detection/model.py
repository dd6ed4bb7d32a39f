"""Run a bundle's TFLite model, without TensorFlow on the Pi.

The interpreter comes from ``ai_edge_litert`` (the maintained LiteRT wheel), else
``tflite_runtime``, else ``tensorflow.lite`` (a desktop with the ``train`` extra).
"""

from __future__ import annotations

import logging
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from watchdog.detection.bundle import Bundle, BundleError

logger = logging.getLogger(__name__)


def load_interpreter(model_path: str | Path, num_threads: int = 1) -> Any:
    """A ready TFLite interpreter from the first runtime that imports."""
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
    try:
        interp = Interpreter(model_path=str(model_path), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise BundleError(f"{model_path}: not a loadable TFLite model ({exc})") from exc
    return interp


class SharedInterpreter:
    """One interpreter and the lock around its set_tensor/invoke/get_tensor. A daemon's printers
    score with the same model, and each interpreter's tensors cost ~4.5 MB, so they share one
    (benchmarks/memory.py); a frame takes milliseconds, the printers seconds apart."""

    def __init__(self, interp: Any) -> None:
        self.interp = interp
        self.lock = threading.Lock()


_SHARED: weakref.WeakValueDictionary[tuple[str, int, int, int], SharedInterpreter] = (
    weakref.WeakValueDictionary()
)
_SHARED_LOCK = threading.Lock()


def shared_interpreter(model_path: str | Path, num_threads: int = 1) -> SharedInterpreter:
    """The interpreter of this model file (same content stamp) and thread count, made once and
    kept while a FrameScorer uses it; a reload with a new model gets a new one."""
    path = Path(model_path)
    try:
        st = path.stat()
    except OSError:
        return SharedInterpreter(load_interpreter(path, num_threads))  # raises the clear error
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, num_threads)
    with _SHARED_LOCK:
        holder = _SHARED.get(key)
        if holder is None:
            holder = SharedInterpreter(load_interpreter(path, num_threads))
            _SHARED[key] = holder
        return holder


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
        self._shared = shared_interpreter(bundle.model_path, num_threads)
        self.interp = self._shared.interp
        inp = self.interp.get_input_details()[0]
        out = self.interp.get_output_details()[0]
        if tuple(inp["shape"][1:]) != self.pre.shape:
            raise BundleError(
                f"{bundle.model_path}: model input {list(inp['shape'])} does not match "
                f"model.json preprocess {list(self.pre.shape)}"
            )
        if tuple(out["shape"][1:]) != self.pre.shape:
            raise BundleError(
                f"{bundle.model_path}: model output {list(out['shape'])} is not a reconstruction "
                f"of the input {list(self.pre.shape)}"
            )
        self._in, self._out = inp, out

    @property
    def threshold(self) -> float:
        return self.bundle.meta.threshold

    def reconstruct(self, x: np.ndarray) -> np.ndarray:
        """Model input (H, W, C) float32 in [0, 1] → reconstruction of the same shape."""
        inp = self._in
        batch = x[None, ...].astype(np.float32)
        if inp["dtype"] != np.float32:  # int8 model with quantised I/O
            scale, zero = inp["quantization"]
            batch = np.clip(np.round(batch / scale + zero), -128, 127).astype(inp["dtype"])
        with self._shared.lock:  # get_tensor copies: the result is ours after the lock
            self.interp.set_tensor(inp["index"], batch)
            self.interp.invoke()
            out = self.interp.get_tensor(self._out["index"])[0]
        if self._out["dtype"] != np.float32:
            scale, zero = self._out["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out.astype(np.float32)

    def error_map(self, x: np.ndarray) -> np.ndarray:
        """The error map of one model input (H, W, C) in [0, 1]."""
        return self.scoring.error_map(x, self.reconstruct(x))

    def score(self, frame: np.ndarray) -> float:
        """The absolute score of one camera frame with the bundle's own region (no baseline)."""
        return self.scoring.score(self.error_map(self.pre.apply(frame)))
