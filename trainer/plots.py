"""The run's figures: loss curve, reconstructions, the anomaly sheet and score histograms."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_plot(history: dict[str, list[float]], path: Path) -> None:
    """Train and validation loss per epoch (as the seed's loss curve)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("loss", "train_loss"), ("val_loss", "val_loss")):
        if history.get(key):
            ax.plot(np.arange(1, len(history[key]) + 1), history[key], label=label)
    ax.set(title="Training loss", xlabel="Epoch", ylabel="Loss")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _to_bgr8(img: np.ndarray) -> np.ndarray:
    """A model-space image (RGB or grey, uint8 or float in [0, 1]) as BGR uint8."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    return (
        cv2.cvtColor(a, cv2.COLOR_GRAY2BGR) if a.ndim == 2 else cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    )


def _heat(emap: np.ndarray, scale: float) -> np.ndarray:
    norm = np.clip(emap / max(scale, 1e-12), 0.0, 1.0)
    return cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    size = max(0.3, img.shape[0] / 300)
    cv2.putText(
        out,
        text,
        (3, int(14 * size / 0.4)),
        cv2.FONT_HERSHEY_SIMPLEX,
        size,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return out


def reconstructions(
    originals: np.ndarray, recons: np.ndarray, path: Path, samples: int = 8
) -> None:
    """Originals beside their reconstructions, one row per frame (as the seed's sheet)."""
    rows = [
        np.hstack([_to_bgr8(o), _to_bgr8(r)])
        for o, r in zip(originals[:samples], recons[:samples], strict=True)
    ]
    if rows:
        cv2.imwrite(str(path), np.vstack(rows))


def anomaly_sheet(
    originals: np.ndarray,
    recons: np.ndarray,
    emaps: np.ndarray,
    scores: Sequence[float],
    labels: Sequence[str],
    threshold: float,
    scale: float,
    path: Path,
) -> None:
    """original | reconstruction | heatmap rows, most anomalous first (the seed's review sheet)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64))
    rows = []
    for i in order:
        flag = "ALARM" if scores[i] > threshold else "ok"
        rows.append(
            np.hstack(
                [
                    _label(_to_bgr8(originals[i]), f"{labels[i]} {scores[i]:.4g} {flag}"),
                    _to_bgr8(recons[i]),
                    _heat(emaps[i], scale),
                ]
            )
        )
    if rows:
        cv2.imwrite(str(path), np.vstack(rows))


def score_histogram(
    normal: np.ndarray, anomalous: np.ndarray, threshold: float, path: Path, title: str = ""
) -> None:
    """Score distributions of normal vs anomalous test frames with the chosen threshold."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    allv = np.r_[np.asarray(normal, float), np.asarray(anomalous, float), [threshold]]
    bins = np.linspace(allv.min(), allv.max(), 40) if allv.size > 1 else 10
    if len(normal):
        ax.hist(normal, bins=bins, alpha=0.6, label=f"normal (n={len(normal)})", color="tab:blue")
    if len(anomalous):
        ax.hist(
            anomalous,
            bins=bins,
            alpha=0.6,
            label=f"anomalous (n={len(anomalous)})",
            color="tab:red",
        )
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set(
        title=title or "Absolute scores of test frames (no per-print baseline)",
        xlabel="absolute score",
        ylabel="frames",
    )
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def replay_plot(replays: Sequence[Any], path: Path) -> None:
    """Each held-out print as the daemon replays it: the score of every judged frame against
    the threshold, the calibration frames shaded, flagged frames in red and the pause marked.
    One row per held-out print (left) and the failures replayed after its calibration (right)."""
    plt = _plt()
    rows: list[tuple[Any, list[Any]]] = []
    for r in replays:
        if not r.failure:
            rows.append((r, []))
        elif rows:
            rows[-1][1].append(r)
    if not rows:
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.text(0.5, 0.5, "no held-out print to replay (see report.md)", ha="center", va="center")
        ax.set_axis_off()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return
    has_failures = any(f for _, f in rows)
    fig, axes = plt.subplots(
        len(rows),
        2 if has_failures else 1,
        figsize=(12 if has_failures else 7, 2.6 * len(rows)),
        squeeze=False,
        layout="constrained",  # long titles: tight_layout warned on every run, and overlapped
    )
    for (normal, failures), row in zip(rows, axes, strict=True):
        _replay_axis(row[0], [normal], f"{normal.name}: a good print")
        if has_failures:
            title = (
                f"failures after {normal.name}'s calibration"
                if failures
                else "no failure to replay"
            )
            _replay_axis(row[1], failures, title)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _replay_axis(ax: Any, runs: Sequence[Any], title: str) -> None:
    """Replays side by side on one axis: frames on x (calibration shaded), scores on y."""
    start = 0
    for r in runs:
        k, n = r.calibration, len(r.scores)
        if k:
            ax.axvspan(start, start + k, color="0.85", lw=0)
        x = np.arange(start + k, start + k + n)
        ax.plot(x, r.scores, color="tab:blue", lw=1)
        flagged = r.flagged
        ax.scatter(x[flagged], r.scores[flagged], color="tab:red", s=10, zorder=3)
        pause = r.first_pause
        if pause is not None:
            ax.axvline(start + k + pause - 1, color="tab:red", ls="--", lw=1)
        if len(runs) > 1:
            ax.text(start + k, 0, r.name.split(" then ")[-1], fontsize=7, va="bottom")
        start += k + n + 2
    if runs:
        ax.axhline(runs[0].threshold, color="k", ls=":", lw=1, label="threshold")
        ax.legend(loc="upper left", fontsize=7)
    ax.set(title=title, xlabel="frame (grey: calibration)", ylabel="score")
