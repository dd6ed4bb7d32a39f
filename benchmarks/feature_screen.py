"""Screen: is a print's change clearer in the autoencoder's encoder features than in its
reconstruction error?

The daemon judges a frame by how its reconstruction error differs from the error of the
print's first frames (per pixel). Here the same held-out prints are judged, by the same
fitted models, by how the encoder's features of a frame differ from those of the nearest of
the print's first 30 frames (per feature cell, divided by each cell's spread over those
frames). Both are compared on the same frames: the held-out good print after its first 30
frames against the same frames with real failure material pasted in (``benchmarks/inscene.py``),
as frame AUROC and recall at 1% of the good frames. One training run per seed, leave one
print out; the features are not in any bundle.

    .venv/bin/python benchmarks/feature_screen.py [--seeds 0] [--json FILE]
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

from benchmarks.inscene import pasted_failures  # noqa: E402
from benchmarks.quality import (  # noqa: E402
    adapted,
    auroc,
    screen_error,
    screen_fold_runs,
    screen_start,
    write_screen,
)
from watchdog.detection.light import light_matched, light_reference  # noqa: E402

CALIBRATION = 30
NEAREST = 10
LAYERS = ("enc1_act", "enc2_act")  # 32x16 and 16x8 cells of the default preset's 128x64


def feature_scores(feats: np.ndarray, inputs: np.ndarray, topk: float = 0.1) -> np.ndarray:
    """Per frame after the first ``CALIBRATION``: the top-k mean over cells of the distance of
    its features to the mean of its ``NEAREST`` calibration frames' (nearest by input), each
    cell divided by its spread over the calibration frames."""
    cal, cal_in = feats[:CALIBRATION], inputs[:CALIBRATION].reshape(CALIBRATION, -1)
    centre = cal.mean(axis=0)
    spread = np.linalg.norm(cal - centre, axis=-1).mean(axis=0)
    spread = np.maximum(spread, np.quantile(spread, 0.5))
    out = []
    for f, x in zip(feats[CALIBRATION:], inputs[CALIBRATION:], strict=True):
        near = np.argsort(((cal_in - x.reshape(1, -1)) ** 2).mean(axis=1))[:NEAREST]
        z = (np.linalg.norm(f - cal[near].mean(axis=0), axis=-1) / spread).ravel()
        k = max(1, int(np.ceil(topk * z.size)))
        out.append(float(np.partition(z, z.size - k)[-k:].mean()))
    return np.array(out)


def recall_at(normal: np.ndarray, bad: np.ndarray, fpr: float = 0.01) -> float:
    return float(np.mean(bad > np.quantile(normal, 1.0 - fpr)))


def main(argv: list[str] | None = None) -> int:
    setup = screen_start(__doc__, argv)
    if setup is None:
        return 0
    import keras

    args, preset, data = setup
    spec, scoring = preset.adaptation, preset.scoring
    started, rows = time.perf_counter(), []
    for seed, held, model in screen_fold_runs(data, preset, args.seeds):
        frames = data[held]
        pasted = pasted_failures(frames[CALIBRATION:], data["defects"], seed)
        ref = light_reference(frames[:CALIBRATION], spec.clipped_light)
        good = light_matched(frames, spec)
        bad = np.concatenate([good[:CALIBRATION], light_matched(pasted, spec, ref)])
        # the daemon's score: reconstruction error against the print's first frames
        error = screen_error(model, scoring)
        unit = dataclasses.replace(spec, threshold=1.0)
        pix_good = adapted(unit, scoring, error(good))  # the frames after the first 30
        pix_bad = adapted(unit, scoring, error(bad))
        assert len(pix_good) == len(pix_bad) == len(frames) - CALIBRATION
        row: dict[str, Any] = {
            "seed": seed,
            "held_out": held,
            "pixels": {
                "auroc": auroc(pix_good, pix_bad),
                "recall": recall_at(pix_good, pix_bad),
            },
        }
        for layer in LAYERS:
            encoder = keras.Model(model.input, model.get_layer(layer).output)
            feats = lambda x, e=encoder: e.predict(x.astype(np.float32) / 255.0, verbose=0)  # noqa: E731
            f_good = feature_scores(feats(good), good)
            f_bad = feature_scores(feats(bad), bad)
            row[layer] = {"auroc": auroc(f_good, f_bad), "recall": recall_at(f_good, f_bad)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_screen(args.json, started, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
