"""Which abnormal starts the shipped bundle's start guard catches (not run in CI).

    .venv/bin/python benchmarks/start_guard.py [--data DIR] [--bundle DIR] [--json FILE]

Each Kaggle good print's first frame is turned into a start that is plainly not a good print
(the lens covered, the camera overexposed or out of focus, noise, a blob over the bed,
spaghetti drawn over the bed) and scored as the daemon scores a print's start: the absolute
score of the frame as the camera gave it (``Adaptation.guard`` is compared with it). The good
first frames are scored too. Skips (exit 0) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.time_to_pause import KAGGLE  # noqa: E402
from watchdog.detection.bundle import Bundle, default_bundle_path  # noqa: E402
from watchdog.detection.model import FrameScorer  # noqa: E402
from watchdog.frames import group_prints  # noqa: E402
from watchdog.image_files import read_bgr_file  # noqa: E402


def _spaghetti(im: np.ndarray) -> np.ndarray:
    """Sixty pale strands of filament over the bottom half (where the bed is)."""
    out, (h, w) = im.copy(), im.shape[:2]
    rng = np.random.default_rng(0)
    for _ in range(60):
        pts = rng.integers(0, [w, h], (6, 2)).astype(np.int32)
        pts[:, 1] = np.clip(pts[:, 1], h // 2, h - 1)
        cv2.polylines(out, [pts], False, (230, 230, 230), 3)
    return out


def _blob(im: np.ndarray) -> np.ndarray:
    """A hand-coloured blob over the middle of the bed."""
    out, (h, w) = im.copy(), im.shape[:2]
    out[h // 3 :, w // 4 : 3 * w // 4] = (140, 160, 200)
    return out


STARTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "a good print's first frame": lambda im: im,
    "lens covered (black)": np.zeros_like,
    "overexposed (white)": lambda im: np.full_like(im, 255),
    "out of focus": lambda im: cv2.GaussianBlur(im, (51, 51), 0),
    "sensor noise only": lambda im: np.random.default_rng(0).integers(0, 256, im.shape, np.uint8),
    "a blob over the bed": _blob,
    "spaghetti over the bed": _spaghetti,
}


def measure(data: Path, bundle_dir: Path) -> dict:
    bundle = Bundle.load(bundle_dir)
    meta = bundle.meta
    scorer = FrameScorer(bundle)
    prints, _ = group_prints([data / "no_defected"])
    firsts = [read_bgr_file(paths[0]) for paths in prints.values()]
    rows = []
    for name, make in STARTS.items():
        scores = [scorer.score(make(f)) for f in firsts]
        rows.append(
            {
                "start": name,
                "scores": [round(s, 4) for s in scores],
                "highest": round(max(scores), 4),
                "above_guard": sum(s > meta.adaptation.guard for s in scores),
            }
        )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "bundle": str(bundle_dir.relative_to(ROOT))
        if bundle_dir.is_relative_to(ROOT)
        else str(bundle_dir),
        "guard": round(meta.adaptation.guard, 4),
        "prints": len(firsts),
        "starts": rows,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=KAGGLE)
    ap.add_argument("--bundle", type=Path, default=default_bundle_path())
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not (args.data / "no_defected").is_dir():
        print(f"skipped: no Kaggle data at {args.data}")
        return 0
    result = measure(args.data, args.bundle.resolve())
    for r in result["starts"]:
        print(
            f"{r['start']:30s} highest {r['highest']:.3f}  above the guard {result['guard']:.3f}: {r['above_guard']} of {result['prints']}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
