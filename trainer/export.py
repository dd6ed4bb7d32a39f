"""Keras → TFLite, write the bundle, and prove the daemon's path gives the same scores.

The parity check runs the exported file through ``watchdog.detection.model.FrameScorer`` (the code the
daemon runs) on real frames and compares with the Keras model: train/serve skew fails here,
loudly, instead of at night on the printer.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import shutil
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data import read_frame
from trainer.evaluate import Reconstruct
from watchdog.detection.bundle import MODEL_FILE, Bundle, BundleMeta
from watchdog.detection.model import FrameScorer, native_lines_dropped
from watchdog.durable import replace_file

logger = logging.getLogger(__name__)

QUANTIZATIONS = ("float32", "float16", "int8")


class ParityError(RuntimeError):
    """The TFLite model does not reproduce the Keras model: the bundle must not ship."""


def convert(
    model: Any, quantization: str = "float32", representative: np.ndarray | None = None
) -> bytes:
    """The Keras model as a TFLite flatbuffer; int8 needs representative uint8 frames.

    int8 keeps float32 input/output (the converter adds the (de)quantise ops), so the daemon
    feeds every variant the same way.
    """
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}, got {quantization!r}")
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if representative is None or len(representative) == 0:
            raise ValueError("int8 export needs representative frames")
        frames = representative

        def gen() -> Any:
            for x in frames:
                yield [x[None].astype(np.float32) / 255.0]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # the converter prints a SavedModel summary, and for int8 its settings (natively) and a
    # warning on statistics that only a model with integer inputs would need: not the owner's
    with (
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
        native_lines_dropped(b"fully_quantize:"),
    ):
        warnings.filterwarnings("ignore", "Statistics for quantized inputs", UserWarning)
        return conv.convert()


def check_runs_in_the_daemon(model: Any) -> None:
    """BundleError, before any training, for a model the daemon would refuse to load (more
    memory to run than a Pi's watchdog gives it): said after hours of training, the bundle was
    left in the run folder, refused by every daemon."""
    from watchdog.detection.model import load_interpreter

    load_interpreter("the model of this preset and --input-size", content=convert(model))


def write_bundle(tflite: bytes, folder: Path, meta: BundleMeta) -> Bundle:
    """Write model.tflite + model.json into ``folder`` (replacing what is there)."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    replace_file(folder / MODEL_FILE, tflite, mode=0o644)  # whole or not at all (a full disk)
    meta.model_sha256 = hashlib.sha256(tflite).hexdigest()
    if not meta.created:
        meta.created = datetime.now(UTC).isoformat(timespec="seconds")
    bundle = Bundle(path=folder, meta=meta)
    bundle.save_meta()
    return Bundle.load(folder)  # what the daemon will read, validated


def frame_scorer(bundle: Bundle, num_threads: int = 2) -> FrameScorer:
    """The daemon's FrameScorer on this bundle (the runtime's start-up line dropped there)."""
    return FrameScorer(bundle, num_threads=num_threads)


def tflite_reconstructor(bundle: Bundle, num_threads: int = 2) -> Reconstruct:
    """The bundle's TFLite model (through FrameScorer) as a batch reconstructor."""
    scorer = frame_scorer(bundle, num_threads)
    return lambda batch: np.stack([scorer.reconstruct(x) for x in batch])


def parity_check(
    bundle: Bundle,
    model: Any,
    frame_paths: Sequence[Path],
    score_rtol: float = 1e-3,
    recon_atol: float = 2e-3,
) -> dict[str, float]:
    """Score real frames through FrameScorer (TFLite) and Keras; raise ParityError on a mismatch."""
    scorer = frame_scorer(bundle)
    pre, scoring = bundle.meta.preprocess, bundle.meta.scoring
    worst_score, worst_recon, n = 0.0, 0.0, 0
    for path in frame_paths:
        frame = read_frame(Path(path))
        if frame is None:
            continue
        lite_score = scorer.score(frame)
        x = pre.apply(frame)
        recon_keras = np.asarray(model.predict_on_batch(x[None]), dtype=np.float32)[0]
        recon_lite = scorer.reconstruct(x)
        keras_score = scoring.score(scoring.error_map(x, recon_keras))
        rel = abs(lite_score - keras_score) / max(abs(keras_score), 1e-9)
        worst_score = max(worst_score, rel)
        worst_recon = max(worst_recon, float(np.max(np.abs(recon_lite - recon_keras))))
        n += 1
        if rel > score_rtol or worst_recon > recon_atol:
            raise ParityError(
                f"{bundle.model_path}: TFLite differs from Keras on {path}: score {lite_score:.6g} "
                f"vs {keras_score:.6g} (relative {rel:.2g} > {score_rtol}), max pixel difference "
                f"{worst_recon:.2g} (limit {recon_atol})"
            )
    if n == 0:
        raise ParityError("parity check: no readable frame to compare on")
    logger.info("parity OK on %d frames: max relative score difference %.2g", n, worst_score)
    return {
        "frames": n,
        "max_relative_score_difference": worst_score,
        "max_pixel_difference": worst_recon,
    }
