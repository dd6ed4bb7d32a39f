"""Screen: does asking a pixel to stay changed over consecutive frames tell a small failure
from a good print's changes better than one frame does?

A failure stays where it is; a toolhead passes and a part's edge moves. Each frame after a
print's start is reduced to its adapted map (the daemon's ``Detector``, the map its heatmap
draws); a persistent map keeps, per pixel, the lowest of the last ``n`` frames' maps (each
earlier map first widened by a ``grow`` x ``grow`` maximum, so material that shifts a pixel or
two still counts as staying), and is reduced to one score by the bundle's own rule (or its
top ``topk``). Each held-out good print, one training run per seed, leave one print out,
replayed in file order and as its part grows (``inscene.growth_order``: neighbouring frames
alike, the harder case for persistence), alone and with each failed print's material pasted
frame by frame from frame 50 (``inscene.pasted_sequence``, as the quality benchmark's in-scene
check). Each variant's threshold is the held-out print's own 99th percentile in the same
order (1% of its good frames above it: an oracle, the same rule for every variant, which
ranks ideas and sets nothing).

    .venv/bin/python benchmarks/persistence_screen.py [--seeds 0] [--json FILE]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.quality import (  # noqa: E402
    DEFECT_PRINTS,
    INSCENE_ONSET,
    changed_share,
    finish_screen,
    screen_error,
    screen_fold_runs,
    screen_inputs,
    screen_oracle,
    screen_start,
)
from watchdog.detection.bundle import Adaptation, Scoring  # noqa: E402
from watchdog.detection.calibration import unit_meta  # noqa: E402
from watchdog.detection.detector import offline_detector  # noqa: E402

VARIANTS: dict[str, tuple[int, int, float | None]] = {  # (frames, grow, topk; None: shipped)
    "one frame (shipped)": (1, 1, None),
    "one frame, top 2%": (1, 1, 0.02),
    "lowest of 2 frames": (2, 3, None),
    "lowest of 3 frames": (3, 3, None),
    "lowest of 3 frames, top 2%": (3, 3, 0.02),
    "lowest of 3 frames, exact pixel": (3, 1, None),
    "lowest of 5 frames": (5, 3, None),
}


def adapted_maps(maps: np.ndarray, spec: Adaptation, scoring: Scoring) -> np.ndarray:
    """The adapted map of every frame after the print's start (packed maps in time order),
    as the daemon's detector computes it, on the unit scale."""
    unit = dataclasses.replace(spec, threshold=1.0, early_frames=0)
    detector = offline_detector(unit_meta(scoring, unit))
    verdicts = detector.replay(list(maps[..., 0]), list(maps[..., 1:]))
    return np.stack([np.array(v.error_map) for v in verdicts if not v.calibrating])


def persistent_scores(
    adapted: np.ndarray, scoring: Scoring, frames: int, grow: int, topk: float | None
) -> np.ndarray:
    """One score per frame: the lowest, per pixel, of its map and the ``frames - 1`` before it
    (each widened by a ``grow`` x ``grow`` maximum), reduced by the bundle's rule."""
    rule = scoring if topk is None else dataclasses.replace(scoring, topk=topk)
    kernel = np.ones((grow, grow), np.uint8)
    widened = np.stack([cv2.dilate(m, kernel) for m in adapted]) if grow > 1 else adapted
    out = []
    for t in range(len(adapted)):
        low = adapted[t]
        for j in range(max(0, t - frames + 1), t):
            low = np.minimum(low, widened[j])
        out.append(rule.score(low, None))
    return np.array(out)


def main(argv: list[str] | None = None) -> int:
    setup = screen_start(__doc__, argv)
    if setup is None:
        return 0
    args, preset, data = setup
    spec, scoring = preset.adaptation, preset.scoring
    onset = spec.frames + INSCENE_ONSET
    started, rows = time.perf_counter(), []
    for seed, held, model in screen_fold_runs(data, preset, args.seeds):
        error = screen_error(model, scoring)
        row: dict[str, Any] = {"seed": seed, "held_out": held}
        for order, inputs in screen_inputs(data, held, spec, seed):
            maps = {k: error(x) for k, x in inputs.items()}
            # the frames before each failure included
            sets = {k: adapted_maps(m, spec, scoring) for k, m in maps.items()}
            sizes = {
                k: float(np.median(changed_share(maps["good"][onset : len(m)], m[onset:])))
                for k, m in maps.items()
                if k != "good"
            }
            row[order] = {"failure_share_of_input": sizes}
            for variant, params in VARIANTS.items():
                # every frame's window reaches back before the onset, as on a real print
                scores = {k: persistent_scores(v, scoring, *params) for k, v in sets.items()}
                row[order][variant] = screen_oracle(scores)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return finish_screen(args.json, started, rows, _summary(rows))


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per order and variant, over the fold-runs: mean good frames flagged, good pauses, mean
    in-scene recall, and failed prints paused within 10 frames of their onset."""
    out: dict[str, Any] = {}
    for order in ("file", "growth"):
        for variant in VARIANTS:
            figures = [r[order][variant] for r in rows]
            recalls = [np.mean(list(f["recall"].values())) for f in figures]
            paused = [
                sum(v is not None and v <= 10 for v in f["frames_to_pause"].values())
                for f in figures
            ]
            out[f"{order}: {variant}"] = {
                "flagged": round(float(np.mean([f["flagged"] for f in figures])), 4),
                "good_pauses": sum(f["pauses"] for f in figures),
                "inscene_recall": round(float(np.mean(recalls)), 3),
                "paused_within_10": f"{sum(paused)} of {len(DEFECT_PRINTS) * len(figures)}",
            }
    return out


if __name__ == "__main__":
    sys.exit(main())
