"""Screen: can a print that fails from its first frame be told from a good start by its
nearest examples of failure and of normal printing, as prototype classifiers do?

The daemon learns a print's start as its normal, so a print failing from its first frame is
judged by the absolute score alone, which does not tell these starts apart
(docs/decisions/start-guard.md). A classifier that also knows failures (a nearest-prototype
judgement, as some peers use) could. Here each held-out good print's first 30 frames are
judged against each failed print's first 10, by a judgement that never saw either: the
normal examples are the two other good prints' frames, the failure examples the three other
failed prints' frames (a failure of a kind it has not seen, as a user's next failure may be).
A frame's score is its mean distance to its 5 nearest failure examples subtracted from that to
its 5 nearest normal ones, on features standardised on the normal examples: the model input
pooled 4x4 (``pixels``), a 16-bin histogram of each colour channel (``colour``), edge strength
pooled 8x8 (``edges``), the preset's fitted encoder (``encoder``, its second layer pooled to
4x2 cells) and its reconstruction error pooled 8x8 (``error``). Per pair: the AUROC, and the
failed start's frames above the held-out good start's highest (a bound set on the held-out
print itself: optimistic, it ranks ideas and sets nothing). One training run per seed.

    .venv/bin/python benchmarks/prototype_screen.py [--seeds 0] [--json FILE]
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.quality import (  # noqa: E402
    auroc,
    failed_prints,
    screen_fold_runs,
    screen_start,
    write_screen,
)
from trainer.evaluate import error_maps, keras_reconstructor  # noqa: E402

START = 30  # a good print's frames judged as its start
FAILED_START = 10  # a failed print's frames that must pause it (the goal: within 10)
NEAREST = 5


def pooled(x: np.ndarray, cell: int) -> np.ndarray:
    """Each frame's mean over cells of ``cell`` x ``cell`` pixels, flattened."""
    x = x if x.ndim == 4 else x[..., None]
    n, h, w, c = x.shape
    h, w = h // cell, w // cell
    cells = x[:, : h * cell, : w * cell].reshape(n, h, cell, w, cell, c)
    return cells.mean(axis=(2, 4)).reshape(n, -1)


def colour(x: np.ndarray) -> np.ndarray:
    """Each frame's 16-bin histogram of each colour channel (where nothing but how much)."""
    return np.stack(
        [
            np.concatenate([np.histogram(f[..., c], 16, (0, 256))[0] for c in range(f.shape[-1])])
            for f in x
        ]
    ).astype(np.float32)


def edges(x: np.ndarray) -> np.ndarray:
    """Each frame's edge strength (grey level steps across and down), pooled 8x8."""
    g = x.astype(np.float32).mean(axis=-1)
    step = np.abs(np.diff(g, axis=2))[:, :-1] + np.abs(np.diff(g, axis=1))[:, :, :-1]
    return pooled(step, 8)


def nearest_distance(x: np.ndarray, examples: np.ndarray) -> np.ndarray:
    """Each row's mean distance to its ``NEAREST`` nearest examples."""
    d2 = (x**2).sum(1)[:, None] + (examples**2).sum(1)[None, :] - 2.0 * x @ examples.T
    near = np.sort(np.maximum(d2, 0.0), axis=1)[:, :NEAREST]
    return np.sqrt(near).mean(axis=1)


def prototype_scores(normal: np.ndarray, failed: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """Higher: closer to the failure examples than to the normal ones."""
    mu, sd = normal.mean(axis=0), normal.std(axis=0) + 1e-6

    def z(v: np.ndarray) -> np.ndarray:
        return ((v - mu) / sd).astype(np.float64)

    zn, zf, zj = z(normal), z(failed), z(judged)
    return nearest_distance(zj, zn) - nearest_distance(zj, zf)


def judge(
    features: Callable[[np.ndarray], np.ndarray],
    goods: dict[str, np.ndarray],
    fails: dict[str, np.ndarray],
    held: str,
) -> dict[str, Any]:
    """Each failed print's start against the held-out good print's start, by one feature."""
    feats = {k: features(v) for k, v in {**goods, **fails}.items()}
    normal = np.concatenate([feats[g] for g in goods if g != held])
    out: dict[str, Any] = {}
    for name in fails:
        failed = np.concatenate([feats[f] for f in fails if f != name])
        good_start = prototype_scores(normal, failed, feats[held][:START])
        failed_start = prototype_scores(normal, failed, feats[name][:FAILED_START])
        out[name] = {
            "auroc": round(auroc(good_start, failed_start), 3),
            "above_good_start": int(np.sum(failed_start > good_start.max())),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    setup = screen_start(__doc__, argv)
    if setup is None:
        return 0
    import keras

    args, preset, data = setup
    fails = failed_prints(data["defects"])
    started, rows = time.perf_counter(), []
    for seed, held, model in screen_fold_runs(data, preset, args.seeds):
        goods = {k: v for k, v in data.items() if k != "defects"}
        encoder = keras.Model(model.input, model.get_layer("enc2_act").output)

        def encoded(x: np.ndarray, e: Any = encoder) -> np.ndarray:
            return pooled(e.predict(x.astype(np.float32) / 255.0, verbose=0), 4)

        recon = keras_reconstructor(model)

        def error(x: np.ndarray, r: Any = recon) -> np.ndarray:
            return pooled(error_maps(r, x, preset.scoring).astype(np.float32), 8)

        features: dict[str, Callable[[np.ndarray], np.ndarray]] = {
            "pixels": lambda x: pooled(x.astype(np.float32), 4),
            "colour": colour,
            "edges": edges,
            "encoder": encoded,
            "error": error,
        }
        row: dict[str, Any] = {"seed": seed, "held_out": held}
        for name, f in features.items():
            row[name] = judge(f, goods, fails, held)
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_screen(args.json, started, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
