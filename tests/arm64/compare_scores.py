"""Compare `printer-watchdog score` output of two machines (x86 host, emulated arm64 Pi).

Usage: compare_scores.py X86.jsonl ARM64.jsonl

Same model, same frames: the scores must agree within RELATIVE_TOLERANCE (of the x86 score)
and every frame's verdict (above/below the threshold) must be the same. Bitwise equality is
not expected: the TFLite kernels (XNNPACK) and OpenCV's resize use different SIMD code on
x86 (SSE/AVX) and aarch64 (NEON), which may sum floats in another order; JPEG decoding (libjpeg-
turbo's exact integer IDCT) gives the same pixels on both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# float32 rounding in a different summation order moves a mean of squared errors by ~1e-6
# relative; 1e-4 leaves room for that and still catches a wrong model, colour order or resize.
RELATIVE_TOLERANCE = 1e-4


def load(path: Path) -> dict[str, dict]:
    """file name -> score line (the folders differ between the two machines)."""
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return {Path(x["file"]).name: x for x in lines}


def main(argv: list[str]) -> int:
    x86, arm = load(Path(argv[1])), load(Path(argv[2]))
    if not x86 or sorted(x86) != sorted(arm):
        print(
            f"compare_scores: the two runs scored different frames: {sorted(x86)} vs {sorted(arm)}"
        )
        return 1
    worst, bad = 0.0, []
    for name in sorted(x86):
        a, b = x86[name], arm[name]
        rel = abs(a["score"] - b["score"]) / max(abs(a["score"]), 1e-12)
        worst = max(worst, rel)
        if rel > RELATIVE_TOLERANCE or a["anomalous"] != b["anomalous"]:
            bad.append(
                f"{name}: x86 {a['score']:.8g} ({a['anomalous']}) vs arm64 {b['score']:.8g} ({b['anomalous']})"
            )
    print(
        f"compare_scores: {len(x86)} frames, largest relative difference {worst:.2e} "
        f"(tolerance {RELATIVE_TOLERANCE:.0e}), verdicts {'identical' if not bad else 'differ'}"
    )
    for line in bad:
        print(f"  {line}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
