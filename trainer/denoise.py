"""Foreign material pasted on training frames: the model learns to remove what a normal print
never shows.

The idea: an autoencoder fitted on normal frames alone also reconstructs much of what it has
never seen (a blob of filament is just more yellow), so a failure's error stays small; fitted
to map a frame with a pasted blob back to the clean frame, it should paint the blob away and
leave a larger error where a failure lies. The blobs are irregular shapes filled either with
another training frame's content (moved) or with a colour of the frame itself; nothing comes
from failure frames. Measured, it does not help (more false alarms, no better separation:
docs/decisions/scoring-experiments.md); no preset uses it, the quality benchmark can
(``--denoise``).
"""

from __future__ import annotations

import numpy as np


def blob_mask(rng: np.random.Generator, h: int, w: int, area: float) -> np.ndarray:
    """An irregular mask (float32, 0..1, soft edges) covering about ``area`` of an h x w frame."""
    import cv2

    coarse = rng.standard_normal((max(2, h // 8), max(2, w // 8))).astype(np.float32)
    field = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    cut = float(np.quantile(field, 1.0 - area))
    hard = (field > cut).astype(np.float32)
    return np.asarray(cv2.GaussianBlur(hard, (0, 0), 0.7), np.float32)


def paste_foreign(
    batch: np.ndarray,
    rng: np.random.Generator,
    share: float,
    area: tuple[float, float] = (0.01, 0.10),
) -> np.ndarray:
    """``batch`` (float32 in [0, 1], N x H x W x C) with a blob pasted on about ``share`` of
    its frames; the others unchanged."""
    out = np.array(batch, np.float32, copy=True)
    n, h, w = out.shape[:3]
    for i in range(n):
        if rng.random() >= share:
            continue
        mask = blob_mask(rng, h, w, float(rng.uniform(*area)))[..., None]
        if rng.random() < 0.5 and n > 1:  # another frame's content, moved
            j = int(rng.integers(n))
            fill = np.roll(
                batch[j],
                (int(rng.integers(-h // 2, h // 2)), int(rng.integers(-w // 2, w // 2))),
                (0, 1),
            )
        else:  # a colour of this frame, lightly textured
            ys, xs = int(rng.integers(h)), int(rng.integers(w))
            colour = batch[i, ys, xs] * rng.uniform(0.8, 1.3)
            fill = colour + rng.normal(0.0, 0.04, size=out.shape[1:]).astype(np.float32)
        opacity = float(rng.uniform(0.6, 1.0))
        out[i] = out[i] * (1.0 - opacity * mask) + np.clip(fill, 0.0, 1.0) * opacity * mask
    return np.clip(out, 0.0, 1.0)
