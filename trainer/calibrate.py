"""Threshold and normal-score statistics from held-out normal frames (pure numpy).

The threshold is chosen on normal frames the model did not fit, for a target per-frame
false-alarm rate; anomalous frames, when known, only report what another choice would do.
"""

from __future__ import annotations

import numpy as np

from watchdog.detection.bundle import NormalStats
from watchdog.detection.calibration import threshold_for_fpr

__all__ = ["threshold_for_fpr", "threshold_quantile", "f1_best_threshold", "normal_stats"]

STAT_QUANTILES = (0.5, 0.9, 0.95, 0.98, 0.99, 0.999)
_EPS = 1e-9


def threshold_quantile(scores: np.ndarray, q: float = 0.98) -> float:
    """The seed's rule: the ``q`` quantile of the scores (0.98 in the seed's review)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {q}")
    return max(float(np.quantile(np.asarray(scores, dtype=np.float64), q)), _EPS)


def f1_best_threshold(normal_scores: np.ndarray, anomalous_scores: np.ndarray) -> dict[str, float]:
    """The threshold (among observed scores) that maximises F1 of anomalous-vs-normal."""
    n = np.asarray(normal_scores, dtype=np.float64)
    a = np.asarray(anomalous_scores, dtype=np.float64)
    if n.size == 0 or a.size == 0:
        raise ValueError("F1 needs both normal and anomalous scores")
    best = {"threshold": float("nan"), "f1": -1.0, "precision": 0.0, "recall": 0.0}
    for t in np.unique(np.concatenate([n, a])):
        tp = float(np.sum(a > t))
        fp = float(np.sum(n > t))
        if tp == 0:
            continue
        precision, recall = tp / (tp + fp), tp / a.size
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best["f1"]:
            best = {"threshold": float(t), "f1": f1, "precision": precision, "recall": recall}
    if best["f1"] < 0:  # no threshold catches anything: everything at the lowest score
        best = {
            "threshold": float(min(n.min(), a.min())) - _EPS,
            "f1": 0.0,
            "precision": 0.0,
            "recall": 0.0,
        }
    return best


def normal_stats(
    normal_scores: np.ndarray,
    pixel_errors: np.ndarray | None = None,
    heatmap_quantile: float = 0.999,
) -> NormalStats:
    """Score statistics for the bundle; ``heatmap_scale`` = a high quantile of per-pixel errors."""
    s = np.asarray(normal_scores, dtype=np.float64)
    scale = 0.0
    if pixel_errors is not None and np.size(pixel_errors):
        scale = float(np.quantile(np.asarray(pixel_errors, dtype=np.float64), heatmap_quantile))
    return NormalStats(
        n=int(s.size),
        mean=float(s.mean()) if s.size else 0.0,
        std=float(s.std()) if s.size else 0.0,
        quantiles={str(q): float(np.quantile(s, q)) for q in STAT_QUANTILES} if s.size else {},
        heatmap_scale=scale,
    )
