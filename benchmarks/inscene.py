"""Real failure material pasted into a good print's own frames: an in-scene check.

Every Kaggle defect frame comes from another print, so a score adapted to the print's own
first frames might flag failures only because they are "another scene". Here the yellow
spaghetti and blobs of the defect frames are cut out (HSV threshold on the yellow PLA,
connected components near the largest blob) and alpha-composited with a feathered mask into
the held-out print's later frames: the scene stays the print's own, only the failure is new.

    .venv/bin/python benchmarks/inscene.py [--data DIR] [--out /tmp/inscene_examples.png]

writes a contact sheet (original | pasted) to look at.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

# Yellow PLA at the default preset's 128x64 bottom half (OpenCV hue 0-180). The filament is
# hue ~24-30 with saturation ~150-255; the bed's edge strip is hue 35-40 with saturation
# ~100-130, the tan strip on the wall and the brass heater block hue 17-23 with saturation
# 55-150: a strict core keeps them out, and a looser mask connected to a core pixel brings
# back the shadowed strands of the spaghetti.
CORE_LO, CORE_HI = (23, 140, 70), (33, 255, 255)
LOOSE_LO, LOOSE_HI = (23, 115, 50), (34, 255, 255)
MIN_COMPONENT = 6  # px: smaller bits are JPEG noise or a glint
MIN_AREA = 40  # px a defect frame must give to be used (0.5% of 128x64)
WINDOW = (48, 32)  # px of a 128x64 frame (scaled to size): components centred here are kept
MAX_AREA = 1400  # px (17% of 128x64): larger material (a whole part, spaghetti filling the
# frame) is not pasted: cut to a window it would make a rectangle, not a failure


def failure_mask(frame: np.ndarray) -> np.ndarray:
    """Boolean (H, W) mask of the failure material in an RGB uint8 frame: the yellow filament
    components centred near the largest one, not the bed edge, the wall or the heater block."""
    hsv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2HSV)
    core = cv2.inRange(hsv, CORE_LO, CORE_HI) > 0
    loose = cv2.inRange(hsv, LOOSE_LO, LOOSE_HI)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(loose, connectivity=8)
    seeded = np.zeros(n, dtype=bool)
    seeded[np.unique(labels[core])] = True
    seeded[0] = False
    keep = seeded & (stats[:, cv2.CC_STAT_AREA] >= MIN_COMPONENT)
    if not keep.any():
        return np.zeros(frame.shape[:2], dtype=bool)
    biggest = int(np.argmax(np.where(keep, stats[:, cv2.CC_STAT_AREA], 0)))
    h, w = frame.shape[:2]
    ww, wh = WINDOW[0] * w // 128, WINDOW[1] * h // 64
    cx, cy = centroids[biggest]
    keep &= (np.abs(centroids[:, 0] - cx) <= ww / 2) & (np.abs(centroids[:, 1] - cy) <= wh / 2)
    return keep[labels]


def filament_pixels(frame: np.ndarray) -> int:
    """Pixels of yellow filament (the strict core) in an RGB uint8 frame: how much of the part
    the camera sees."""
    hsv = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2HSV)
    return int(np.count_nonzero(cv2.inRange(hsv, CORE_LO, CORE_HI)))


def growth_order(frames: np.ndarray) -> np.ndarray:
    """Indices that replay a print as its part grows: fewest filament pixels first, file order
    between equals. The file numbers are a weak timeline (``benchmarks/frame_order.py``);
    this one starts a print where a real one starts, on a bare bed or a first layer. It is no
    timeline either: frames where the camera (beside the nozzle) shows little of the part
    sort early, together."""
    counts = np.array([filament_pixels(f) for f in frames])
    return np.argsort(counts, kind="stable")


def _shift(a: np.ndarray, dx: int) -> np.ndarray:
    """Shift an image horizontally by dx pixels, filling with zeros (nothing pasted there)."""
    out = np.zeros_like(a)
    if dx > 0:
        out[:, dx:] = a[:, :-dx]
    elif dx < 0:
        out[:, :dx] = a[:, -dx:]
    else:
        out[:] = a
    return out


def pasted_failures(
    normal: np.ndarray, defects: np.ndarray, seed: int, max_shift: int = 6
) -> np.ndarray:
    """Each normal frame (uint8 (N, H, W, 3) RGB) with the failure material of a random
    defect frame alpha-composited at its own place, shifted by up to ``max_shift`` px."""
    rng = np.random.default_rng(seed)
    masks = [failure_mask(d) for d in defects]
    scale = normal.shape[1] * normal.shape[2] / (128 * 64)
    usable = [i for i, m in enumerate(masks) if MIN_AREA * scale <= m.sum() <= MAX_AREA * scale]
    if not usable:
        raise ValueError(
            f"no defect frame has {MIN_AREA}-{MAX_AREA} px (at 128x64) of yellow filament to paste"
        )
    out = normal.copy()
    for img in out:
        i = usable[int(rng.integers(len(usable)))]
        dx = int(rng.integers(-max_shift, max_shift + 1)) if max_shift else 0
        _composite(img, defects[i], masks[i], dx)
    return out


def pasted_sequence(
    normal: np.ndarray, failure: np.ndarray, seed: int, max_shift: int = 6
) -> np.ndarray:
    """A failure developing inside this print: the material of a failed print's i-th frame
    (time order) pasted into the i-th normal frame, at one shift for the whole sequence.
    Every frame's material is pasted whatever its size (a failure that grows stays in);
    the length is that of the shorter of the two."""
    rng = np.random.default_rng(seed)
    dx = int(rng.integers(-max_shift, max_shift + 1)) if max_shift else 0
    out = normal[: min(len(normal), len(failure))].copy()
    for img, src in zip(out, failure, strict=False):
        _composite(img, src, failure_mask(src), dx)
    return out


def _composite(img: np.ndarray, src: np.ndarray, mask: np.ndarray, dx: int) -> None:
    """Alpha-composite ``src`` where ``mask`` is, shifted by dx, into ``img`` in place."""
    # close small gaps between strands, then feather the edge by about a pixel
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    alpha = cv2.GaussianBlur(m.astype(np.float32), (3, 3), 0.8)
    alpha = _shift(np.maximum(alpha, mask), dx)[..., None]
    shifted = _shift(src, dx).astype(np.float32)
    img[...] = np.round(alpha * shifted + (1.0 - alpha) * img).astype(np.uint8)


def contact_sheet(
    normal: np.ndarray, pasted: np.ndarray, path: Path, count: int = 12, scale: int = 4
) -> None:
    """PNG of ``count`` rows evenly spread over the frames: original | pasted, enlarged."""
    idx = np.linspace(0, len(normal) - 1, min(count, len(normal))).astype(int)
    pairs = [
        np.concatenate([normal[i], np.full((normal.shape[1], 2, 3), 255, np.uint8), pasted[i]], 1)
        for i in idx
    ]
    half = (len(pairs) + 1) // 2
    pairs += [np.zeros_like(pairs[0])] * (2 * half - len(pairs))
    cols = [np.concatenate(pairs[:half], 0), np.concatenate(pairs[half:], 0)]
    sheet = np.concatenate([cols[0], np.full((cols[0].shape[0], 6, 3), 255, np.uint8), cols[1]], 1)
    sheet = cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    from benchmarks.quality import KAGGLE, load_dataset
    from trainer.model import get_preset

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=KAGGLE)
    p.add_argument("--out", type=Path, default=Path("/tmp/inscene_examples.png"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if not (args.data / "defected").is_dir():
        print(f"skipped: no Kaggle data at {args.data}")
        return 0
    data = load_dataset(args.data, get_preset("default").preprocess)
    sessions = [k for k in data if k != "defects"]
    normal = np.concatenate([data[s][30:] for s in sessions])
    pasted = pasted_failures(normal, data["defects"], args.seed)
    changed = np.any(pasted != normal, axis=-1).sum(axis=(1, 2))
    areas = np.array([failure_mask(d).sum() for d in data["defects"]])
    print(
        f"defect frames usable: {np.sum((areas >= MIN_AREA) & (areas <= MAX_AREA))}/{len(areas)}; pasted px per frame: "
        f"median {np.median(changed):.0f}, 5-95% {np.percentile(changed, 5):.0f}-{np.percentile(changed, 95):.0f} "
        f"of {normal.shape[1] * normal.shape[2]}"
    )
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(normal), 12, replace=False))
    contact_sheet(normal[pick], pasted[pick], args.out)
    print(f"contact sheet: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
