"""Run a bundle's TFLite model and score frames, without TensorFlow on the Pi.

The interpreter comes from ``ai_edge_litert`` (the maintained LiteRT wheel), else
``tflite_runtime``, else ``tensorflow.lite`` (a desktop with the ``train`` extra).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from watchdog.detection.bundle import Bundle, BundleError, heatmap_overlay, polygon_mask
from watchdog.detection.light import LightReference, match_light

logger = logging.getLogger(__name__)


def load_interpreter(model_path: str | Path, num_threads: int = 1) -> Any:
    """A ready TFLite interpreter from the first runtime that imports."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError:
            try:
                from tensorflow.lite import Interpreter  # type: ignore[no-redef]
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


_SHARED: weakref.WeakValueDictionary[tuple[str, int, int, int], SharedInterpreter] = weakref.WeakValueDictionary()
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


@dataclass
class FrameResult:
    """What scoring one frame produced; the error map is at model-input size."""

    score: float
    threshold: float
    anomalous: bool
    error_map: np.ndarray
    inference_s: float
    input: np.ndarray | None = None  # the model input as scored (light-matched when a reference was given)


class FrameScorer:
    """Preprocess → reconstruct → error map → score, the same path the trainer evaluates."""

    def __init__(
        self,
        bundle: Bundle,
        num_threads: int = 1,
        mask_polygons: list[list[tuple[float, float]]] | None = None,
    ) -> None:
        self.bundle = bundle
        meta = bundle.meta
        self.pre = meta.preprocess
        self.scoring = meta.scoring
        self.mask = polygon_mask(mask_polygons or [], self.pre)
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

    def analyze(
        self, frame: np.ndarray, sensitivity: float = 1.0, reference: LightReference | None = None
    ) -> FrameResult:
        """Score one camera frame (any size, BGR/grey/BGRA); with ``reference`` (the print's
        look, ``PrintBaseline.reference``) the input is light-matched to it first."""
        t0 = time.perf_counter()
        x = self.pre.apply(frame)
        if reference is not None:
            x = match_light(x, reference)
        emap = self.error_map(x)
        score = self.scoring.score(emap, self.mask)
        threshold = self.threshold / max(sensitivity, 1e-6)
        return FrameResult(
            score=score,
            threshold=threshold,
            anomalous=score > threshold,
            error_map=emap,
            inference_s=time.perf_counter() - t0,
            input=x,
        )

    def overlay(self, frame: np.ndarray, result: FrameResult, scale: float | None = None) -> np.ndarray:
        """The frame with this result's heatmap over the region the model watches.

        ``scale`` is the error shown as full red (default: the bundle's, for raw error maps).
        """
        scale = scale or self.bundle.meta.normal_stats.heatmap_scale or float(result.error_map.max() or 1.0)
        return heatmap_overlay(frame, result.error_map, self.pre, scale, self.mask)
