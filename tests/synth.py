"""Synthetic printer-like frames for tests: numpy + OpenCV only, seeded, fast.

A static scene (wall, gantry, bed, nozzle) with a yellow part that grows frame by frame within
a print session; each session shifts the framing a little, as a real camera does between
prints. Anomalous frames add spaghetti: random coloured curves and blobs near the bed.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 160, 120


def _session_offset(session: int, seed: int) -> tuple[int, int]:
    rng = np.random.default_rng(seed * 7919 + session)
    return int(rng.integers(-3, 4)), int(rng.integers(-3, 4))


def normal_frame(
    session: int = 0,
    index: int = 0,
    n_frames: int = 20,
    seed: int = 0,
    width: int = WIDTH,
    height: int = HEIGHT,
    carriage_step: int | None = None,
    hot_end: bool = False,
) -> np.ndarray:
    """One BGR uint8 frame of print `session` at step `index` of `n_frames` (the part grows,
    the carriage moves; ``carriage_step``: the carriage where it is at that step instead;
    ``hot_end``: the nozzle drawn down to the part, so that the bottom half moves too)."""
    rng = np.random.default_rng((seed, session, index))
    dx, dy = _session_offset(session, seed)
    sx, sy = width / WIDTH, height / HEIGHT
    img = np.empty((height, width, 3), np.uint8)
    # wall: a vertical gradient
    grad = np.linspace(60, 90, height, dtype=np.float32)[:, None]
    img[:] = np.repeat(grad, width, axis=1)[..., None].astype(np.uint8)

    def pt(x: float, y: float) -> tuple[int, int]:
        return int(round((x + dx) * sx)), int(round((y + dy) * sy))

    # gantry bar and nozzle carriage: the carriage moves along the bar as it prints (a start
    # in which nothing but the camera's noise moves is a printer heating, learnt again)
    cv2.rectangle(img, pt(0, 18), pt(160, 26), (40, 40, 40), -1)
    cx = carriage_x(index if carriage_step is None else carriage_step)
    cv2.rectangle(img, pt(68 + cx, 26), pt(92 + cx, 48), (30, 30, 30), -1)
    cv2.rectangle(img, pt(77 + cx, 48), pt(83 + cx, 56), (120, 120, 130), -1)
    # bed: a grey slab with a darker edge
    cv2.rectangle(img, pt(10, 88), pt(150, 100), (150, 150, 150), -1)
    cv2.rectangle(img, pt(10, 100), pt(150, 104), (90, 90, 90), -1)
    # the part: yellow (BGR), grows upwards from the bed with the print's progress
    progress = (index + 1) / max(n_frames, 1)
    top = 88 - 16 * progress
    cv2.rectangle(img, pt(72, top), pt(88, 88), (60, 170, 200), -1)
    if hot_end:  # reaching down to the part's top, where it lays the next layer
        cv2.rectangle(img, pt(78 + cx, 56), pt(82 + cx, top), (120, 120, 130), -1)
    noise = rng.normal(0.0, 2.0, img.shape)
    return np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def carriage_x(index: int) -> int:
    """Where the carriage is at step ``index``, in px from the middle: back and forth over the
    part, as a toolhead laying a layer."""
    return int(round(8 * np.sin(1.7 * index)))


def anomalous_frame(
    index: int = 0,
    seed: int = 0,
    session: int = 0,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> np.ndarray:
    """A frame with spaghetti: thick random curves and blobs of filament near the bed."""
    img = normal_frame(session, 10, 20, seed, width, height)
    rng = np.random.default_rng((seed, 1_000_003, index))
    sx, sy = width / WIDTH, height / HEIGHT
    colours = [(40, 200, 230), (255, 80, 255), (30, 30, 255), (255, 255, 60), (250, 250, 250)]
    for _ in range(int(rng.integers(6, 10))):
        n = int(rng.integers(4, 8))
        xs = rng.uniform(15, 145, n) * sx
        ys = rng.uniform(50, 102, n) * sy
        pts = np.stack([xs, ys], axis=1).astype(np.int32)
        colour = colours[int(rng.integers(len(colours)))]
        cv2.polylines(img, [pts], False, colour, max(2, int(3 * sx)), cv2.LINE_AA)
    for _ in range(int(rng.integers(3, 6))):
        c = (int(rng.uniform(20, 140) * sx), int(rng.uniform(60, 100) * sy))
        cv2.circle(img, c, max(3, int(rng.uniform(4, 9) * sx)), colours[int(rng.integers(5))], -1)
    return img


def write_kaggle_layout(
    root: Path,
    sessions: int = 3,
    frames_per_session: int = 20,
    anomalous: int = 12,
    seed: int = 0,
    width: int = WIDTH,
    height: int = HEIGHT,
    ext: str = ".jpg",
) -> Path:
    """Write `root/no_defected/print<S>_<i>` and `root/defected/spaghetti_<i>` frames."""
    normal_dir = root / "no_defected"
    normal_dir.mkdir(parents=True, exist_ok=True)
    for s in range(sessions):
        for i in range(frames_per_session):
            frame = normal_frame(s, i, frames_per_session, seed, width, height)
            cv2.imwrite(str(normal_dir / f"print{s}_{i}{ext}"), frame)
    if anomalous:
        bad_dir = root / "defected"
        bad_dir.mkdir(parents=True, exist_ok=True)
        for i in range(anomalous):
            frame = anomalous_frame(i, seed, i % max(sessions, 1), width, height)
            cv2.imwrite(str(bad_dir / f"spaghetti_{i}{ext}"), frame)
    return root
