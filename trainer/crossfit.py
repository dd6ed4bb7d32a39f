"""Cross-fitted threshold for per-print adaptation: every normal print is scored by a model
that never saw it.

Why: the daemon judges prints the model has never fitted, so the adapted threshold has to come
from such prints. Set on the last 15% of the fitted prints alone (about 70 frames, so the 1%
tail is their maximum), a new print's false alarms ranged from 0% to 6.7% over the fold-runs
of the shorter training's benchmark (docs/decisions/cross-fitted-threshold.md). Here each
print (or group of prints) is left out in turn, a model of the same preset is fitted on the
others, and the left-out print is replayed through ``watchdog.detection`` from its first frames,
exactly as the daemon will; the threshold is set on all those frames together. The cost is one
extra fit per group (at most ``groups``). The cross-fitted models are smaller than the one
shipped, so neither estimate holds alone: ``shipped_threshold`` takes the higher.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.data import NORMAL, Loaded, last_frames
from trainer.evaluate import Reconstruct, error_maps, keras_reconstructor
from trainer.model import Preset, build_autoencoder, compile_autoencoder
from trainer.train import fit
from watchdog.detection.bundle import Adaptation
from watchdog.detection.calibration import (
    calibrate,
    guarded_maps,
    start_guard,
    starts_by_print,
    still_starts,
)
from watchdog.detection.detector import calibration_start
from watchdog.detection.light import light_matched, start_matched
from watchdog.frames import print_of

logger = logging.getLogger(__name__)


def print_frames(sets: Iterable[Loaded]) -> dict[str, np.ndarray]:
    """The normal frames of every print in these sets, per print, in frame-number (time) order."""
    return {name: x for name, (x, _) in prints_by_set(sets).items()}


def prints_by_set(sets: Iterable[Loaded]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per print: its normal frames in frame-number (time) order, and for each frame the index
    of the set it came from (the validation rule keeps only the frames of ``sets[1]``)."""
    prints: dict[str, list[tuple[int, int, np.ndarray]]] = {}
    for index, loaded in enumerate(sets):
        for fr, x in zip(loaded.frames, loaded.x, strict=True):
            if fr.label == NORMAL and not fr.loose:
                prints.setdefault(fr.session, []).append((fr.number, index, x))
    out = {}
    for name, frames in sorted(prints.items()):
        frames.sort(key=lambda t: t[0])
        out[name] = (np.stack([t[2] for t in frames]), np.array([t[1] for t in frames]))
    return out


def leave_out_groups(names: list[str], groups: int) -> list[list[str]]:
    """The prints each cross-fitted model leaves out: at most ``groups`` groups, a print's
    parts after a resume (``frames.print_of``) in one group: they are near-copies of it.
    ValueError for fewer than two prints."""
    whole = sorted({print_of(n) for n in names})
    if len(whole) < 2:
        raise ValueError("cross-fitted calibration needs at least two normal prints")
    k = min(groups, len(whole))
    return [[n for n in sorted(names) if print_of(n) in whole[i::k]] for i in range(k)]


def crossfit_models(
    preset: Preset,
    prints: dict[str, np.ndarray],
    seed: int = 0,
    groups: int = 4,
    verbose: int | None = 0,
) -> list[tuple[list[str], Reconstruct]]:
    """Models of ``preset`` that each left a group of prints out: (left-out prints, reconstructor).

    ``prints``: uint8 frames per normal print, in time order. Needs two prints or more
    (ValueError otherwise); with more than ``groups`` prints they are left out in groups.
    """
    names = sorted(prints)
    buckets = leave_out_groups(names, groups)
    out = []
    for i, left_out in enumerate(buckets, 1):
        fitting = [n for n in names if n not in left_out]
        x_fit, x_val = split_fit_val(prints, fitting)
        model = build_autoencoder(preset.model, preset.preprocess.shape, seed)
        compile_autoencoder(model, preset.train)
        label = f"cross-fit {i}/{len(buckets)} (without {', '.join(left_out)})"
        with tempfile.TemporaryDirectory() as tmp:
            fit(
                model,
                x_fit,
                x_val,
                preset.train,
                Path(tmp) / "cross.weights.h5",
                seed,
                verbose,
                label=label,
            )
        out.append((left_out, keras_reconstructor(model)))
        logger.info("cross-fit: left out %s, fitted on %s", ", ".join(left_out), ", ".join(fitting))
    return out


@dataclass(frozen=True)
class HeldOut:
    """One print as a model that never saw it scores it: the daemon's view of a new print."""

    name: str
    reconstruct: Reconstruct  # a model that did not fit this print
    frames: np.ndarray  # the print's frames as preprocessed (uint8, time order)
    inputs: np.ndarray  # the print's model inputs (uint8), light-matched as the daemon would
    maps: np.ndarray  # their error maps
    # the print's start as the daemon judges it (``start_matched``: its first frames as the
    # camera gave them, the rest matched to their light) and its error maps
    start_inputs: np.ndarray
    start_maps: np.ndarray
    # the error maps of every frame the start guard judges: ``start_maps``' frames, and before
    # them those of the starts learnt again because they did not move (``still_starts``)
    guarded_maps: np.ndarray


def scored(preset: Preset, name: str, frames: np.ndarray, recon: Reconstruct) -> HeldOut:
    """One print as ``recon`` scores it, the way the daemon feeds it to the model, from the
    start the daemon would judge it against (``detector.calibration_start``)."""
    spec = preset.adaptation
    first = calibration_start(frames, spec.frames, early=spec.still_first_frames)
    stills = still_starts(frames, spec, first)
    frames = frames[first:]
    inputs = light_matched(frames, spec)
    start = start_matched(frames[: spec.frames], spec)
    start_maps = error_maps(recon, start, preset.scoring)
    return HeldOut(
        name,
        recon,
        frames,
        inputs,
        error_maps(recon, inputs, preset.scoring),
        start,
        start_maps,
        guarded_maps(lambda x: error_maps(recon, x, preset.scoring), stills, start_maps),
    )


def held_out(
    preset: Preset, prints: dict[str, np.ndarray], models: list[tuple[list[str], Reconstruct]]
) -> list[HeldOut]:
    """Every left-out print of ``models``, scored by the model that left it out."""
    return [
        scored(preset, name, prints[name], recon) for left_out, recon in models for name in left_out
    ]


@dataclass(frozen=True)
class CrossFitted:
    """The adaptation set on held-out prints, and what it rests on (for the report)."""

    adaptation: Adaptation
    prints: int  # prints the threshold and the start guard were set on
    frames: int  # their frames after the start, which the threshold's target share is of


def calibrate_on(preset: Preset, held: list[HeldOut], target_fpr: float) -> CrossFitted:
    """``preset.adaptation`` with its threshold set on held-out prints replayed as the daemon
    would, and its start guard above their starts (``calibration.start_guard``).

    The prints the threshold is set on (longer than their start, a start that moves) are the
    prints the guard counts; a recording that ends within its start, or never moves, has seen
    less of a start's variation (its highest frame would pull the bound down), so it only keeps
    the guard above its own frames."""
    spec = preset.adaptation
    used: list[int] = []
    result = calibrate(
        spec,
        preset.scoring,
        [h.maps for h in held],
        target_fpr,
        inputs=[h.inputs for h in held],
        starts=[h.start_maps for h in held],
        start_inputs=[h.start_inputs for h in held],
        used=used,
    )
    judged = [held[i] for i in used]
    # every frame the guard judges counts: a start learnt again is judged by it too; a print's
    # parts after a resume are one print (its count decides whether a guard is set at all)
    counted = {print_of(h.name) for h in judged}
    starts, stubs = starts_by_print(
        [(h.name, preset.scoring.scores(h.guarded_maps)) for h in held], [h.name for h in judged]
    )
    result = dataclasses.replace(result, guard=start_guard(starts, partial=stubs))
    logger.info(
        "cross-fit: %d calibration frames, threshold %.4g cross-fitted on %d prints; start "
        "guard %.4g; "
        "start judged after %d frames, threshold %.4g (the bundle takes the fitted model's "
        "own when higher)",
        result.frames,
        result.threshold,
        len(counted),
        result.guard,
        result.early_frames,
        result.early_threshold,
    )
    later = sum(len(h.maps) - spec.frames for h in judged)
    return CrossFitted(result, len(counted), later)


def shipped_threshold(cross_fitted: float, validation: float) -> float:
    """The adaptation threshold a training run ships: the higher of two estimates of where a
    good print's later frames end.

    Neither holds alone. The cross-fitted one (prints scored by models fitted without them)
    comes from smaller models than the one shipped: with the closer fit of longer training it
    fell to half of what a new print's frames needed. The validation one (the shipped model on
    the last frames of the prints it fitted) let through 0% to 6.7% of a new print's frames,
    depending on the run and the print, with the shorter training. Taking the higher one costs some
    recall on the easy prints and keeps every new print's false alarms near the target
    (docs/decisions/cross-fitted-threshold.md)."""
    return max(cross_fitted, validation)


def crossfit_adaptation(
    preset: Preset,
    prints: dict[str, np.ndarray],
    target_fpr: float,
    seed: int = 0,
    groups: int = 4,
    models: list[tuple[list[str], Reconstruct]] | None = None,
) -> Adaptation:
    """``preset.adaptation`` with its threshold set on prints scored by models that did not fit them.

    ``models``: the ``crossfit_models`` of these prints, when already fitted (the benchmark
    compares adaptation variants on the same models).
    """
    models = crossfit_models(preset, prints, seed, groups) if models is None else models
    return calibrate_on(preset, held_out(preset, prints, models), target_fpr).adaptation


def split_fit_val(prints: dict[str, np.ndarray], names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Fit on the first 85% of each named print's frames, validate on the last 15% (``last_frames``)."""
    fit_parts, val_parts = [], []
    for n in names:
        x, m = prints[n], last_frames(len(prints[n]))
        fit_parts.append(x[~m])
        val_parts.append(x[m] if m.any() else x)
    return np.concatenate(fit_parts), np.concatenate(val_parts)
