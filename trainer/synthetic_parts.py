"""Clean printed parts of shapes and sizes the recordings never showed, drawn on training frames.

The idea: a model fitted on a few prints learns their parts, so a new print's part (another
shape, another height) is as unfamiliar to it as a failure, and its error says "new" for both.
Drawing solid parts of many shapes, sizes and colours on normal frames (the target the same
frame: a plain autoencoder on more varied normal pictures) should teach it that any solid part
is normal, while strings, tangles and loose blobs stay unfamiliar. Nothing comes from failure
frames. Measured, it helps one held-out print a little and neither the first minutes nor a
growing part (docs/decisions/scoring-experiments.md); no preset uses it, the quality benchmark
can (``--synthetic-parts``).
"""

from __future__ import annotations

import numpy as np


def _filament_colour(rng: np.random.Generator, frame: np.ndarray) -> np.ndarray:
    """An RGB colour in [0, 1]: a random filament (any hue, saturated) or, half the time,
    the frame's own most saturated pixel (the filament it prints)."""
    import cv2

    if rng.random() < 0.5:
        pixels = frame.reshape(-1, 3)
        chroma = pixels.max(axis=1) - pixels.min(axis=1)
        return np.asarray(pixels[int(np.argmax(chroma))], np.float32)
    hue = float(rng.uniform(0, 180))
    sat = float(rng.uniform(0.0, 1.0) if rng.random() < 0.2 else rng.uniform(0.5, 1.0))
    val = float(rng.uniform(0.35, 1.0))
    pixel = np.array([[[hue, sat * 255, val * 255]]], np.uint8)
    rgb = cv2.cvtColor(pixel, cv2.COLOR_HSV2RGB)[0, 0]
    return np.asarray(rgb, np.float32) / 255.0


def _part_masks(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The front and top faces (float32 masks, 0..1) of one part seen from a low camera: a
    box, a cylinder or a tapered block standing on a line across the lower part of the frame."""
    import cv2

    base = int(rng.uniform(0.45, 0.85) * h)
    width = int(rng.uniform(0.06, 0.5) * w)
    height = int(rng.uniform(0.04, 0.4) * h)
    cx = int(rng.uniform(0.1, 0.9) * w)
    cap = max(1, int(rng.uniform(0.02, 0.08) * h))  # the top face, thin from a low camera
    x0, x1 = cx - width // 2, cx + width // 2
    top = base - height
    front = np.zeros((h, w), np.float32)
    upper = np.zeros((h, w), np.float32)
    kind = rng.integers(3)
    if kind == 0:  # box
        cv2.rectangle(front, (x0, top), (x1, base), 1.0, -1)
        pts = np.array([[x0, top], [x1, top], [x1 - cap, top - cap], [x0 + cap, top - cap]])
        cv2.fillPoly(upper, [pts.astype(np.int32)], 1.0)
    elif kind == 1:  # cylinder
        cv2.rectangle(front, (x0, top), (x1, base), 1.0, -1)
        cv2.ellipse(front, (cx, base), (width // 2, cap), 0, 0, 180, 1.0, -1)
        cv2.ellipse(upper, (cx, top), (width // 2, cap), 0, 0, 360, 1.0, -1)
    else:  # tapered block (a pyramid's or a vase's side)
        taper = int(rng.uniform(0.0, 0.4) * width)
        pts = np.array([[x0, base], [x1, base], [x1 - taper, top], [x0 + taper, top]])
        cv2.fillPoly(front, [pts.astype(np.int32)], 1.0)
        cv2.ellipse(upper, (cx, top), (max(1, width // 2 - taper), cap), 0, 0, 360, 1.0, -1)
    upper *= 1.0 - front
    soft = 0.5
    return (
        np.asarray(cv2.GaussianBlur(front, (0, 0), soft), np.float32),
        np.asarray(cv2.GaussianBlur(upper, (0, 0), soft), np.float32),
    )


def draw_part(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``frame`` (float32 RGB in [0, 1], H x W x 3) with one solid part drawn on it: shaded
    faces, faint layer lines, light from one side."""
    h, w = frame.shape[:2]
    colour = _filament_colour(rng, frame)
    front, upper = _part_masks(rng, h, w)
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    layers = 1.0 + float(rng.uniform(0.0, 0.06)) * np.sin(rows * float(rng.uniform(1.5, 3.0)))
    side = 1.0 + float(rng.uniform(-0.25, 0.25)) * (cols / w - 0.5)
    shade_front = float(rng.uniform(0.55, 0.95)) * layers * side
    shade_top = float(rng.uniform(0.95, 1.25))
    paint = colour[None, None, :] * (
        front[..., None] * shade_front[..., None] + upper[..., None] * shade_top
    )
    cover = np.clip(front + upper, 0.0, 1.0)[..., None]
    return np.asarray(np.clip(frame * (1.0 - cover) + paint, 0.0, 1.0), np.float32)


def draw_parts(batch: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """``batch`` (float32 in [0, 1], N x H x W x 3) with one or two parts drawn on about
    ``share`` of its frames; the others unchanged."""
    out = np.array(batch, np.float32, copy=True)
    if out.shape[-1] != 3:
        raise ValueError("--synthetic-parts draws coloured parts: it needs colour frames")
    for i in range(out.shape[0]):
        if rng.random() >= share:
            continue
        for _ in range(1 + int(rng.random() < 0.3)):
            out[i] = draw_part(out[i], rng)
    return out
