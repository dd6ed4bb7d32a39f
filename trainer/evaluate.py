"""Score frames with the shared ``watchdog.detection.bundle.Scoring`` and measure detection quality."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.data import to_float
from watchdog.detection.bundle import Scoring

Reconstruct = Callable[[np.ndarray], np.ndarray]  # float32 (N, H, W, C) → same shape


@dataclass
class Scored:
    """Per-frame scores and a sample of per-pixel errors (for the heatmap scale)."""

    scores: np.ndarray
    pixel_sample: np.ndarray


def score_frames(
    reconstruct: Reconstruct,
    x: np.ndarray,
    scoring: Scoring,
    batch_size: int = 32,
    mask: np.ndarray | None = None,
    pixels_per_frame: int = 2000,
    seed: int = 0,
) -> Scored:
    """Score uint8 frames (N, H, W, C) batch by batch, keeping memory flat at any input size."""
    rng = np.random.default_rng(seed)
    scores: list[float] = []
    sample: list[np.ndarray] = []
    for start in range(0, len(x), batch_size):
        batch = to_float(x[start : start + batch_size])
        emaps = scoring.error_map(batch, reconstruct(batch))
        scores.extend(scoring.scores(emaps, mask).tolist())
        flat = emaps.reshape(len(emaps), -1)
        k = min(pixels_per_frame, flat.shape[1])
        idx = rng.choice(flat.shape[1], size=k, replace=False)
        sample.append(flat[:, idx].ravel())
    return Scored(
        np.asarray(scores, dtype=np.float64),
        np.concatenate(sample) if sample else np.zeros(0, np.float32),
    )


def error_maps(
    reconstruct: Reconstruct, x: np.ndarray, scoring: Scoring, batch_size: int = 64
) -> np.ndarray:
    """Per-pixel error maps (N, H, W) of uint8 frames, batch by batch (memory stays flat)."""
    out = [
        scoring.error_map(b, reconstruct(b))
        for b in (to_float(x[i : i + batch_size]) for i in range(0, len(x), batch_size))
    ]
    return np.concatenate(out) if out else np.zeros((0, *x.shape[1:3]), np.float32)


def keras_reconstructor(model: Any) -> Reconstruct:
    """A Keras model as a batch reconstructor."""
    return lambda batch: np.asarray(model.predict_on_batch(batch), dtype=np.float32)


def image_metrics(
    normal_scores: np.ndarray, anomalous_scores: np.ndarray, threshold: float
) -> dict[str, float | None]:
    """Image AUROC, average precision (anomalous = positive), recall and false alarms at threshold."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    n = np.asarray(normal_scores, dtype=np.float64)
    a = np.asarray(anomalous_scores, dtype=np.float64)
    out: dict[str, float | None] = {
        "image_auroc": None,
        "average_precision": None,
        "recall_at_threshold": float(np.mean(a > threshold)) if a.size else None,
        "false_alarm_rate_at_threshold": float(np.mean(n > threshold)) if n.size else None,
    }
    if n.size and a.size:
        y = np.r_[np.zeros(n.size), np.ones(a.size)]
        s = np.r_[n, a]
        out["image_auroc"] = float(roc_auc_score(y, s))
        out["average_precision"] = float(average_precision_score(y, s))
    return out


def seed_review(
    scores: np.ndarray, is_anomalous: np.ndarray, quantile: float = 0.98
) -> dict[str, Any]:
    """The seed's review: flag frames at or above the 98th percentile; found k of n anomalies."""
    s = np.asarray(scores, dtype=np.float64)
    lab = np.asarray(is_anomalous, dtype=bool)
    if s.size == 0:
        return {"quantile": quantile, "threshold": None, "flagged": 0, "found": 0, "of": 0}
    t = float(np.quantile(s, quantile))
    flagged = s >= t
    return {
        "quantile": quantile,
        "threshold": t,
        "flagged": int(flagged.sum()),
        "found": int((flagged & lab).sum()),
        "of": int(lab.sum()),
        "n_frames": int(s.size),
    }
