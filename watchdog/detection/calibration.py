"""Offline calibration: the adaptation threshold from normal prints, as the daemon scores them.

``simulate`` replays one print's error maps through the daemon's ``Detector``, so the trainer,
``python -m watchdog calibrate`` and the benchmarks pick thresholds from exactly the scores
the daemon computes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from watchdog.detection.bundle import Adaptation, BundleMeta, NormalStats, Preprocess, Scoring
from watchdog.detection.detector import offline_detector


def simulate(
    spec: Adaptation,
    scoring: Scoring,
    error_maps: np.ndarray,
    mask: np.ndarray | None = None,
    inputs: np.ndarray | None = None,
) -> np.ndarray:
    """Unscaled adapted scores of one print's frames after its calibration frames (time order).

    Exactly what the daemon computes; the trainer and the benchmark choose
    ``Adaptation.threshold`` from these scores on normal prints the model did not fit. With
    ``spec.match_light`` the maps must be those of the ``light_matched`` frames; with
    ``spec.nearest``, ``inputs`` are those frames (the model inputs, uint8 or floats).
    """
    if not spec.enabled:
        raise ValueError("adaptation is off (frames = 0): nothing to simulate")
    if len(error_maps) <= spec.frames:
        raise ValueError(
            f"need more than {spec.frames} frames to simulate adaptation, got {len(error_maps)}"
        )
    if spec.nearest and (inputs is None or len(inputs) != len(error_maps)):
        raise ValueError("adaptation.nearest needs the model input of every error map")
    # unit thresholds: the verdicts' scores are the unscaled adapted scores
    detector = offline_detector(unit_meta(scoring, dataclasses.replace(spec, threshold=1.0)), mask)
    verdicts = detector.replay(
        list(error_maps), list(inputs) if spec.nearest and inputs is not None else None
    )
    return np.array([v.score for v in verdicts if not v.calibrating], dtype=np.float64)


def unit_meta(scoring: Scoring, spec: Adaptation) -> BundleMeta:
    """A bundle description for replaying error maps on the unit threshold scale."""
    return BundleMeta(
        preprocess=Preprocess(),
        scoring=scoring,
        threshold=1.0,
        normal_stats=NormalStats(),
        input_shape=(),
        output_shape=(),
        adaptation=spec,
    )


def threshold_for_fpr(scores: np.ndarray, target_fpr: float = 0.01) -> float:
    """The smallest threshold with at most ``target_fpr`` of these normal scores above it.

    A frame is anomalous when ``score > threshold`` (the daemon's rule). One rule for the
    trainer's absolute threshold and the adaptation threshold.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if s.size == 0:
        raise ValueError("no normal scores to calibrate on")
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target false-alarm rate must be in [0, 1), got {target_fpr}")
    allowed = int(np.floor(target_fpr * s.size))  # frames allowed above the threshold
    return max(float(s[s.size - 1 - allowed]), 1e-9)


GUARD_MARGIN = 1.2  # the guard sits this far above the highest start of a normal print seen


def start_guard(scores: list[np.ndarray], frames: int, margin: float = GUARD_MARGIN) -> float:
    """``Adaptation.guard``: ``margin`` times the highest absolute score of the first ``frames``
    frames of normal prints, each scored by a model that never saw it (as the camera gave
    them: a print's start is judged before its light is known).

    Conservative on purpose: a normal print the model has never seen must not be paused in its
    first minutes, so only a start further from every normal start seen than they are from each
    other counts (docs/quality.md measures the margin)."""
    starts = [np.asarray(s, dtype=np.float64)[:frames] for s in scores if len(s)]
    if not starts:
        raise ValueError("no normal print to set the start guard on")
    return float(np.max(np.concatenate(starts))) * margin


def calibrate(
    spec: Adaptation,
    scoring: Scoring,
    prints: list[np.ndarray],
    target_fpr: float = 0.01,
    mask: np.ndarray | None = None,
    held_out: list[np.ndarray] | None = None,
    inputs: list[np.ndarray] | None = None,
) -> Adaptation:
    """``spec`` with its threshold set from normal prints (error maps of each, in time order;
    of the ``light_matched`` frames when ``spec.match_light``).

    Every print is calibrated on its own first ``spec.frames`` frames, exactly as the daemon
    does, and the threshold leaves ``target_fpr`` of the later frames above it. ``held_out``
    (one boolean array per print) restricts the threshold to frames the model did not fit,
    the trainer's rule for every threshold; without any such frame, all later frames count.
    ``inputs``: each print's model inputs (needed with ``spec.nearest``).
    """
    unit = Adaptation(spec.frames, spec.std_floor, 1.0, nearest=spec.nearest)
    scores: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    for i, maps in enumerate(prints):
        if len(maps) <= spec.frames:
            continue
        s = simulate(unit, scoring, maps, mask, None if inputs is None else inputs[i])
        scores.append(s)
        if held_out is not None:
            kept.append(s[np.asarray(held_out[i], dtype=bool)[spec.frames :]])
    if not scores:
        raise ValueError(
            f"no normal print longer than {spec.frames} frames to calibrate adaptation on"
        )
    chosen = np.concatenate(kept) if kept and sum(len(k) for k in kept) else np.concatenate(scores)
    return dataclasses.replace(spec, threshold=threshold_for_fpr(chosen, target_fpr))
