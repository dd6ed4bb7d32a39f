"""Screen: does pausing on k anomalous frames among the last n, instead of k in a row, pause
failures inside a print sooner without pausing good prints?

A small failure is flagged on some of its frames and not on others (a toolhead in front of
it, a frame whose light or part hides it); three flagged frames in a row, the daemon's rule,
then come late or never. Each held-out good print, one training run per seed, leave one print
out, is scored by the daemon's ``Detector`` (its adapted maps, reduced by the bundle's rule),
replayed in file order and as its part grows (``inscene.growth_order``: neighbouring frames
alike, as on a real print, where a good print's flagged frames come together), alone and with
each failed print's material pasted frame by frame from frame 50 (``inscene.pasted_sequence``,
as the quality benchmark's in-scene check). One threshold per fold-run and order, the held-out
print's own 99th percentile (an oracle, the same for every rule, which ranks rules and sets
nothing); each rule then judges the same flags, its cooldown and re-arm as the daemon's
(``decide``: after a firing, the window starts empty once ``cooldown_s`` has passed).

    .venv/bin/python benchmarks/decision_screen.py [--seeds 0] [--json FILE]
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.persistence_screen import adapted_maps  # noqa: E402
from benchmarks.quality import (  # noqa: E402
    DEFECT_PRINTS,
    INSCENE_ONSET,
    INTERVAL_S,
    SETTINGS,
    finish_screen,
    screen_error,
    screen_fold_runs,
    screen_inputs,
    screen_start,
)
from watchdog.detection import decide  # noqa: E402

RULES: dict[str, tuple[int, int]] = {  # (k flagged frames, among the last n)
    "3 in a row (shipped)": (3, 3),
    "3 of the last 4": (3, 4),
    "3 of the last 5": (3, 5),
    "3 of the last 6": (3, 6),
    "4 of the last 6": (4, 6),
    "2 in a row": (2, 2),
}


def window_fires(flags: Iterable[bool], k: int, n: int) -> list[int]:
    """The frames (0-based) where ``k`` of the last ``n`` flags fire, the printer never pausing:
    after each firing nothing counts until ``cooldown_s`` has passed, then the window starts
    empty (``decide.fires``'s re-arm)."""
    rearm = SETTINGS.cooldown_s / INTERVAL_S
    out: list[int] = []
    window: deque[bool] = deque(maxlen=n)
    for i, flagged in enumerate(flags):
        if out and i - out[-1] < rearm:
            continue
        window.append(bool(flagged))
        if sum(window) >= k:
            out.append(i)
            window.clear()
    return out


def judged(scores: dict[str, np.ndarray], thr: float, k: int, n: int) -> dict[str, Any]:
    """One rule's figures at ``thr``: its pauses of the good print; per failed print, frames
    from its onset to its first pause (the frames before it in the window)."""
    out: dict[str, Any] = {"pauses": len(window_fires(scores["good"] > thr, k, n))}
    to_pause = {}
    for name, s in scores.items():
        if name == "good":
            continue
        # the rule sees the frames before the onset too, as on a real print
        fired = [i - INSCENE_ONSET for i in window_fires(s > thr, k, n) if i >= INSCENE_ONSET]
        to_pause[name] = fired[0] + 1 if fired else None
    out["frames_to_pause"] = to_pause
    return out


def main(argv: list[str] | None = None) -> int:
    setup = screen_start(__doc__, argv)
    if setup is None:
        return 0
    args, preset, data = setup
    spec, scoring = preset.adaptation, preset.scoring
    started, rows = time.perf_counter(), []
    for seed, held, model in screen_fold_runs(data, preset, args.seeds):
        error = screen_error(model, scoring)
        row: dict[str, Any] = {"seed": seed, "held_out": held}
        for order, inputs in screen_inputs(data, held, spec, seed):
            scores = {k: _scores(error(x), spec, scoring) for k, x in inputs.items()}
            thr = float(np.quantile(scores["good"], 0.99))  # the oracle, the same for every rule
            # the shipped rule here is the daemon's: the screen's own rule must agree with it
            assert window_fires(scores["good"] > thr, 3, 3) == decide.fires(
                scores["good"] > thr, SETTINGS, INTERVAL_S
            )
            row[order] = {rule: judged(scores, thr, *kn) for rule, kn in RULES.items()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return finish_screen(args.json, started, rows, _summary(rows))


def _scores(maps: np.ndarray, spec: Any, scoring: Any) -> np.ndarray:
    """The daemon's score of every frame after the print's start."""
    return np.array([scoring.score(m, None) for m in adapted_maps(maps, spec, scoring)])


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per order and rule, over the fold-runs: good pauses, failed prints paused at all (and
    the median frames to their pause), and paused within 10 frames of their onset (and per
    failed print)."""
    out: dict[str, Any] = {}
    for order in ("file", "growth"):
        for rule in RULES:
            figures = [r[order][rule] for r in rows]
            within = {
                name: sum(
                    (v := f["frames_to_pause"][name]) is not None and v <= 10 for f in figures
                )
                for name, _ in DEFECT_PRINTS
            }
            paused = [v for f in figures for v in f["frames_to_pause"].values() if v is not None]
            out[f"{order}: {rule}"] = {
                "good_pauses": sum(f["pauses"] for f in figures),
                "failed_prints_paused": f"{len(paused)} of {len(DEFECT_PRINTS) * len(figures)}",
                "median_frames_to_pause": float(np.median(paused)) if paused else None,
                "paused_within_10": f"{sum(within.values())} of {len(DEFECT_PRINTS) * len(figures)}",
                "paused_within_10_per_failure": within,
            }
    return out


if __name__ == "__main__":
    sys.exit(main())
