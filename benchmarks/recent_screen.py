"""Screen: does judging a frame against the print's recent past, besides its start, stop a
growing part from pausing a good print without hiding failures?

The daemon judges every frame after a print's first 30 against those 30 (``simulate``, its
own code). Here the same frames are also judged against a recent block: the mean and spread of
the error maps of the last ``--block`` frames that were not flagged, at least ``--lag`` frames
old (at first, the start's last frames); a frame counts as changed only when it changed against
both. A part that grows is close to its recent past; a failure is new against both, and its
flagged frames never join the block. Each held-out good print, one training run per seed, leave
one print out, replayed in file order and as its part grows (``inscene.growth_order``), alone
and with real failure material pasted in from frame 50 (``inscene.pasted_failures``). The
threshold is the held-out print's own 99th percentile in file order, judged against the start
alone (optimistic, the same for every variant: this ranks ideas, it sets nothing).

    .venv/bin/python benchmarks/recent_screen.py [--seeds 0] [--json FILE]
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.inscene import growth_order, pasted_failures  # noqa: E402
from benchmarks.quality import (  # noqa: E402
    INTERVAL_S,
    SETTINGS,
    adapted,
    first_pause,
    screen_error,
    screen_fold_runs,
    screen_start,
    write_screen,
)
from watchdog.detection import decide  # noqa: E402
from watchdog.detection.baseline import change_unit  # noqa: E402
from watchdog.detection.bundle import Adaptation, Scoring  # noqa: E402
from watchdog.detection.light import light_matched  # noqa: E402

ONSET = 50  # frame of the replayed print from which failure material is pasted


def recent_scores(
    maps: np.ndarray,
    start: np.ndarray,
    spec: Adaptation,
    scoring: Scoring,
    thr: float,
    block: int,
    lag: int,
    admit: float,
    gate: float | None = None,
) -> np.ndarray:
    """Per frame after the start: the lower of its ``start`` score and its score against the
    recent block (frames whose combined score stayed below ``admit * thr`` and, with ``gate``,
    whose absolute score stayed below ``gate`` times the start's highest)."""
    n0 = spec.frames
    admitted = list(range(n0 - block, n0))  # the start's last frames open the block
    absolute = scoring.scores(maps)
    ceiling = np.inf if gate is None else gate * float(absolute[:n0].max())
    out = []
    for i, s in enumerate(start):
        t = n0 + i
        rows = [j for j in admitted if j <= t - lag][-block:]
        recent = maps[rows]
        mean = recent.mean(axis=0)
        z = np.maximum((maps[t] - mean) / change_unit(recent.std(axis=0), spec), 0.0)
        z = z.astype(np.float32)
        score = min(float(s), scoring.score(z, None))
        out.append(score)
        if score < admit * thr and absolute[t] < ceiling:
            admitted.append(t)
    return np.array(out)


def pauses(scores: np.ndarray, thr: float) -> int:
    return len(decide.fires(scores > thr, SETTINGS, INTERVAL_S))


VARIANTS: dict[str, tuple[int, int, float, float | None]] = {  # (block, lag, admit, gate)
    "recent 10, lag 5": (10, 5, 1.0, None),
    "recent 10, lag 5, admit below half": (10, 5, 0.5, None),
    "recent 10, lag 15": (10, 15, 1.0, None),
    "recent 10, lag 5, absolute below the start's highest": (10, 5, 1.0, 1.0),
    "recent 10, lag 5, absolute below 1.2x the start's highest": (10, 5, 1.0, 1.2),
}


def main(argv: list[str] | None = None) -> int:
    setup = screen_start(__doc__, argv)
    if setup is None:
        return 0
    args, preset, data = setup
    spec, scoring = preset.adaptation, preset.scoring
    unit = dataclasses.replace(spec, threshold=1.0)
    started, rows = time.perf_counter(), []
    for seed, held, model in screen_fold_runs(data, preset, args.seeds):
        error = screen_error(model, scoring)
        frames = data[held]
        orders = {"file": np.arange(len(frames)), "growth": growth_order(frames)}
        thr = 0.0
        row: dict[str, Any] = {"seed": seed, "held_out": held}
        for order, idx in orders.items():
            good = frames[idx]
            bad = good.copy()
            bad[ONSET:] = pasted_failures(good[ONSET:], data["defects"], seed)
            # both matched to the good start's light, as the daemon would
            sets = {}
            for name, x in (("good", good), ("pasted", bad)):
                m = error(_matched_like(good, x, spec))
                sets[name] = (m[..., 0], adapted(unit, scoring, m))
            if order == "file":
                thr = float(np.quantile(sets["good"][1], 0.99))
            row[order] = {
                name: _judged(sets, spec, scoring, thr, params)
                for name, params in {"start only": None, **VARIANTS}.items()
            }
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_screen(args.json, started, rows)
    return 0


def _judged(
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
    spec: Adaptation,
    scoring: Scoring,
    thr: float,
    params: tuple[int, int, float, float | None] | None,
) -> dict[str, Any]:
    """One variant's figures: the good print's frames flagged and pauses, the pasted
    failure's recall and frames to its first pause."""
    scores = {
        name: start if params is None else recent_scores(maps, start, spec, scoring, thr, *params)
        for name, (maps, start) in sets.items()
    }
    later = scores["pasted"][ONSET - spec.frames :]
    return {
        "flagged": float(np.mean(scores["good"] > thr)),
        "pauses": pauses(scores["good"], thr),
        "pasted_recall": float(np.mean(later > thr)),
        "pasted_frames_to_pause": first_pause(later, thr),
    }


def _matched_like(good: np.ndarray, bad: np.ndarray, spec: Adaptation) -> np.ndarray:
    """``bad`` matched to the light of ``good``'s start (its first frames are ``good``'s)."""
    from watchdog.detection.light import print_reference

    return light_matched(bad, spec, print_reference(good, spec))


if __name__ == "__main__":
    sys.exit(main())
