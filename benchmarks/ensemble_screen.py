"""Screen: several autoencoders fitted with different seeds (first weights, frame order),
their reconstructions averaged, against each of them alone.

Part of a good frame's error is the model's own (where its fit happens to be loose), and it
changes from frame to frame as the part grows and the toolhead moves; a failure's error is
what no model fitted on normal frames reconstructs. Models fitted from different first
weights share the second and differ in the first, so their mean reconstruction should leave
less of a good frame's error and as much of a failure's. The mean of several models is one
Keras model, exported to one TFLite file like today's: the daemon would run it unchanged, at
a cost per frame in proportion. Variants: each member alone (one training run per seed, as
the quality benchmark fits), the members' reconstructions averaged, and their error maps
averaged (which the daemon could not run as one model: shown for comparison). Each held-out
good print, leave one print out, replayed in file order, alone and with each failed print's
material pasted frame by frame (``inscene.pasted_sequence``, as the quality benchmark's
in-scene check). Each variant's threshold is the held-out print's own 99th percentile (an
oracle, the same rule for every variant, which ranks ideas and sets nothing).

    .venv/bin/python benchmarks/ensemble_screen.py [--seeds 0,1,2] [--json FILE]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.inscene import pasted_sequence  # noqa: E402
from benchmarks.map_screen import Variant, variant_scores  # noqa: E402
from benchmarks.quality import (  # noqa: E402
    INSCENE_ONSET,
    failed_prints,
    finish_screen,
    packed,
    screen_fold_runs,
    screen_oracle,
    screen_start,
    screen_summary,
)
from trainer.evaluate import error_maps, keras_reconstructor  # noqa: E402
from watchdog.detection.light import light_matched, print_reference  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    setup = screen_start(__doc__, argv)
    if setup is None:
        return 0
    args, preset, data = setup
    if len(args.seeds) < 2:
        print("an ensemble needs two members or more: give --seeds 0,1,2", file=sys.stderr)
        return 2
    spec, scoring = preset.adaptation, preset.scoring
    onset = spec.frames + INSCENE_ONSET
    started, rows = time.perf_counter(), []
    members: dict[str, list[Any]] = {}
    for seed, held, model in screen_fold_runs(data, preset, args.seeds):
        members.setdefault(held, []).append((seed, model))
    for held, fitted in members.items():
        frames = data[held]
        ref = print_reference(frames, spec)
        inputs = {"good": light_matched(frames, spec, ref)}
        for name, failure in failed_prints(data["defects"]).items():
            bad = np.concatenate([frames[:onset], pasted_sequence(frames[onset:], failure, 0)])
            inputs[name] = light_matched(bad, spec, ref)
        recons = [keras_reconstructor(m) for _, m in fitted]

        def mean_recon(b: np.ndarray, recons: list[Any] = recons) -> np.ndarray:
            return np.mean([r(b) for r in recons], axis=0)

        variants: dict[str, dict[str, np.ndarray]] = {}
        for (seed, _), r in zip(fitted, recons, strict=True):
            variants[f"member {seed}"] = {
                k: packed(lambda x, r=r: error_maps(r, x, scoring))(x) for k, x in inputs.items()
            }
        variants["reconstructions averaged"] = {
            k: packed(lambda x: error_maps(mean_recon, x, scoring))(x) for k, x in inputs.items()
        }
        variants["error maps averaged"] = {
            k: np.concatenate(
                [
                    np.mean([variants[f"member {s}"][k][..., :1] for s, _ in fitted], axis=0),
                    variants[f"member {fitted[0][0]}"][k][..., 1:],
                ],
                axis=-1,
            )
            for k in inputs
        }
        row: dict[str, Any] = {"held_out": held, "members": [s for s, _ in fitted]}
        for name, maps in variants.items():
            scores = {k: variant_scores(m, spec, scoring, Variant()) for k, m in maps.items()}
            row[name] = screen_oracle(scores)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return finish_screen(args.json, started, rows, _summary(rows))


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant (the members pooled as "one member"), over the held-out prints
    (``screen_summary``)."""
    return {
        "one member": screen_summary([r[k] for r in rows for k in r if k.startswith("member ")]),
        "reconstructions averaged": screen_summary([r["reconstructions averaged"] for r in rows]),
        "error maps averaged": screen_summary([r["error maps averaged"] for r in rows]),
    }


if __name__ == "__main__":
    sys.exit(main())
