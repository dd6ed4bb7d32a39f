"""Is the Kaggle data's file-number order a timeline? (not run in CI)

    .venv/bin/python benchmarks/frame_order.py [--data DIR] [--json FILE]

The benchmarks replay each print in file-number order as if it were time: a print's first 30
frames become its baseline, failures are pasted "from frame 50 on", a failed print is replayed
"from its first frame". On a real timeline (a frame every few seconds) consecutive frames are
near-copies and differ far less than two frames picked at random from the same print. This
measures both, per print, on the default preset's model input (bottom half, 128x64): the
median mean absolute difference (0-255) between consecutive frames, between random pairs,
and their ratio (1.0: the order says nothing about time).

Skips (exit 0) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.data import find_frames, load_frames  # noqa: E402
from trainer.model import get_preset  # noqa: E402

KAGGLE = ROOT.parent / "shared" / "data" / "kaggle-3d-printer"
PAIRS = 2000


def order_stats(x: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Median frame-to-frame difference in file order and between random pairs of one print
    (of at least two frames)."""
    if len(x) < 2:
        raise ValueError("a print of fewer than two frames has no order")
    flat = x.reshape(len(x), -1).astype(np.float32)
    consecutive = np.abs(flat[1:] - flat[:-1]).mean(axis=1)
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, len(x), PAIRS), rng.integers(0, len(x), PAIRS)
    keep = i != j
    random = np.abs(flat[i[keep]] - flat[j[keep]]).mean(axis=1)
    c, r = float(np.median(consecutive)), float(np.median(random))
    # all frames alike: the order cannot tell anything
    return {"frames": len(x), "consecutive": c, "random": r, "ratio": c / r if r > 0 else 1.0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=KAGGLE)
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if not (args.data / "no_defected").is_dir():
        print(f"skipped: no Kaggle data at {args.data}")
        return 0
    pre = get_preset("default").preprocess
    frames = find_frames(args.data)
    prints: dict[str, dict[str, float | str]] = {}
    for session in sorted({f.session for f in frames}):
        group = sorted((f for f in frames if f.session == session), key=lambda f: f.number)
        if len(group) < 2:
            continue
        stats = order_stats(load_frames(group, pre).x)
        prints[session] = {"label": str(group[0].label), **stats}
        print(
            f"{session:14s} {stats['frames']:4.0f} frames: consecutive {stats['consecutive']:.1f}, "
            f"random pairs {stats['random']:.1f}, ratio {stats['ratio']:.2f}"
        )
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "input": f"{pre.width}x{pre.height}, roi {list(pre.roi)}",
        "prints": prints,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
