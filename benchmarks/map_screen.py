"""Screen: ways of forming a frame's adapted map that might tell a small failure from a good
print's own changes: against the highest of similar start frames instead of their mean, with
thin structures opened away, and from finer or coarser error maps.

The per-print baseline compares each later frame with the mean error map of its 10 nearest
calibration frames. A toolhead or a part's edge seen at a pixel in 2 of those 10 frames raises
their mean there by a fifth of its error only, so the same edge in a later frame still counts
as changed, as much as a failure does. Taking the highest of the neighbours (per pixel, as
nearest-neighbour anomaly detectors judge patches) explains away whatever any similar start
frame showed there; a failure where none of them had error stays. Variants: the neighbours'
mean (shipped), their highest, their highest with each map first widened by a 3 x 3 maximum
(an edge that moved a pixel), and the highest of the nearest 3. A second idea: a part's edge
that moved leaves a line one or two pixels thin in the map, a failure a patch; a grey opening
(a minimum then a maximum over a 3 x 3 or 5 x 5 square) of the shipped map removes what is
thinner than the square before the top 10% are averaged. A third: the error map itself
made finer (a smaller SSIM window, less blur: a small failure's peak is spread less over its
surroundings) or coarser. Each held-out good print, one
training run per seed, leave one print out, replayed in file order and as its part grows
(``inscene.growth_order``), alone and with each failed print's material pasted frame by frame
(``inscene.pasted_sequence``, as the quality benchmark's in-scene check). Each variant's
threshold is the held-out print's own 99th percentile in the same order (an oracle, the same
rule for every variant, which ranks ideas and sets nothing). The shipped variant is checked
against the daemon's own ``Detector`` on every good print.

    .venv/bin/python benchmarks/map_screen.py [--seeds 0] [--json FILE]
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

from benchmarks.persistence_screen import adapted_maps  # noqa: E402
from benchmarks.quality import (  # noqa: E402
    finish_screen,
    screen_error,
    screen_fold_runs,
    screen_inputs,
    screen_oracle,
    screen_start,
    screen_summary,
)
from watchdog.detection.baseline import change_unit, on_grid  # noqa: E402
from watchdog.detection.bundle import Adaptation, Scoring  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way of forming the adapted map: the neighbours' ``how`` (mean or max) of the
    ``neighbours`` nearest, their maps widened by ``grow``, the change opened by ``opening``
    (1: neither), from error maps of the preset's scoring with these SSIM and blur sigmas."""

    how: str = "mean"
    neighbours: int = 10
    grow: int = 1
    opening: int = 1
    ssim_sigma: float = 1.5
    blur_sigma: float = 2.0


VARIANTS = {
    "mean of nearest 10 (shipped)": Variant(),
    "highest of nearest 10": Variant("max"),
    "highest of nearest 10, widened 3x3": Variant("max", grow=3),
    "highest of nearest 3": Variant("max", 3),
    "highest of nearest 3, widened 3x3": Variant("max", 3, grow=3),
    "mean of nearest 10, opened 3x3": Variant(opening=3),
    "mean of nearest 10, opened 5x5": Variant(opening=5),
    "SSIM window 1.0": Variant(ssim_sigma=1.0),
    "error blurred 1.0": Variant(blur_sigma=1.0),
    "SSIM window 1.0, error blurred 1.0": Variant(ssim_sigma=1.0, blur_sigma=1.0),
    "error blurred 3.0": Variant(blur_sigma=3.0),
}


def variant_scores(maps: np.ndarray, spec: Adaptation, scoring: Scoring, v: Variant) -> np.ndarray:
    """One score per frame after the start (packed maps in time order): each frame's error map
    against its nearest start frames' maps (their mean or, per pixel, their highest), divided
    by the start's per-pixel spread as the baseline divides it, then opened."""
    how, n, grow, opening = v.how, v.neighbours, v.grow, v.opening
    start = spec.frames
    cal = maps[:start, ..., 0].astype(np.float64)
    cal_x = np.stack([on_grid(m[..., 1:]) for m in maps[:start]])
    std = cal.std(axis=0)
    denom = change_unit(std, spec)
    if grow > 1:
        kernel = np.ones((grow, grow), np.uint8)
        cal = np.stack([cv2.dilate(c.astype(np.float32), kernel) for c in cal]).astype(np.float64)
    out = []
    for m in maps[start:]:
        xq = on_grid(m[..., 1:])
        distance = np.array([cv2.norm(c, xq, cv2.NORM_L2SQR) for c in cal_x])
        near = cal[np.argsort(distance, kind="stable")[:n]]
        ref = near.mean(axis=0) if how == "mean" else near.max(axis=0)
        z = np.maximum((m[..., 0].astype(np.float64) - ref) / denom, 0.0).astype(np.float32)
        if opening > 1:
            z = cv2.morphologyEx(z, cv2.MORPH_OPEN, np.ones((opening, opening), np.uint8))
        out.append(scoring.score(z, None))
    return np.array(out)


def main(argv: list[str] | None = None) -> int:
    setup = screen_start(__doc__, argv)
    if setup is None:
        return 0
    args, preset, data = setup
    spec, scoring = preset.adaptation, preset.scoring
    assert Variant().ssim_sigma == scoring.ssim_sigma and Variant().blur_sigma == scoring.blur_sigma
    started, rows = time.perf_counter(), []
    scorings = {
        (v.ssim_sigma, v.blur_sigma): dataclasses.replace(
            scoring, ssim_sigma=v.ssim_sigma, blur_sigma=v.blur_sigma
        )
        for v in VARIANTS.values()
    }
    for seed, held, model in screen_fold_runs(data, preset, args.seeds):
        errors = {k: screen_error(model, sc) for k, sc in scorings.items()}
        row: dict[str, Any] = {"seed": seed, "held_out": held}
        for order, inputs in screen_inputs(data, held, spec, seed):
            maps = {k: {n: e(x) for n, x in inputs.items()} for k, e in errors.items()}
            shipped = (scoring.ssim_sigma, scoring.blur_sigma)
            daemon = adapted_maps(maps[shipped]["good"], spec, scoring)
            row[order] = {}
            for variant, v in VARIANTS.items():
                sc, sets = scorings[v.ssim_sigma, v.blur_sigma], maps[v.ssim_sigma, v.blur_sigma]
                scores = {k: variant_scores(m, spec, sc, v) for k, m in sets.items()}
                if v == Variant():  # the reimplementation is the daemon's
                    theirs = np.array([scoring.score(m, None) for m in daemon])
                    row[order]["shipped_matches_detector"] = bool(
                        np.allclose(scores["good"], theirs, rtol=1e-3, atol=1e-4)
                    )
                row[order][variant] = screen_oracle(scores)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return finish_screen(args.json, started, rows, _summary(rows))


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per order and variant, over the fold-runs: mean in-scene recall (and per failed print),
    failed prints paused within 10 frames of their onset, good pauses."""
    out: dict[str, Any] = {}
    for order in ("file", "growth"):
        for variant in VARIANTS:
            out[f"{order}: {variant}"] = screen_summary([r[order][variant] for r in rows])
        out[f"{order}: shipped variant matches the Detector"] = all(
            r[order]["shipped_matches_detector"] for r in rows
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
