"""Offline calibration: the adaptation threshold from normal prints, as the daemon scores them.

``simulate`` replays one print's error maps through the daemon's ``Detector``, so the trainer,
``python -m watchdog calibrate`` and the benchmarks pick thresholds from exactly the scores
the daemon computes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from watchdog.detection.bundle import (
    MAX_SCORE,
    Adaptation,
    BundleMeta,
    NormalStats,
    Preprocess,
    Scoring,
)
from watchdog.detection.detector import Verdict, offline_detector, still_start_spans
from watchdog.detection.light import start_matched
from watchdog.frames import print_of

logger = logging.getLogger(__name__)


def simulate(
    spec: Adaptation,
    scoring: Scoring,
    error_maps: np.ndarray,
    mask: np.ndarray | None = None,
    inputs: np.ndarray | None = None,
) -> np.ndarray:
    """Adapted scores of one print's frames after its calibration frames (time order), on the
    unit scale (``spec.threshold`` is ignored; ``print_scale`` applies).

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
    # unit thresholds: the verdicts' scores are the unscaled adapted scores (the start's own
    # judgement is simulate_start's)
    unit = dataclasses.replace(spec, threshold=1.0, early_frames=0)
    detector = offline_detector(unit_meta(scoring, unit), mask)
    verdicts = detector.replay(list(error_maps), None if inputs is None else list(inputs))
    return np.array([v.score for v in verdicts if not v.calibrating], dtype=np.float64)


def simulate_start(
    spec: Adaptation,
    scoring: Scoring,
    error_maps: np.ndarray,
    mask: np.ndarray | None = None,
    inputs: np.ndarray | None = None,
) -> np.ndarray:
    """Scores of one print's start frames after its first ``spec.early_frames``, each judged
    against those, on the unit scale (``spec.early_threshold`` is ignored): what the daemon
    computes while it learns the print. ``error_maps`` (and ``inputs``, needed when the start
    is compared with its nearest first frames): the start's frames as the daemon scores them
    (``light.start_matched``), not matched to the whole start's light. The start's judgement
    is an adaptation of its own (``start_spec``), replayed by ``simulate`` like any other."""
    if not spec.enabled or spec.early_frames <= 0:
        raise ValueError("the start is not judged (early_frames = 0): nothing to simulate")
    n = spec.frames
    return simulate(
        spec.start_spec(), scoring, error_maps[:n], mask, None if inputs is None else inputs[:n]
    )


def still_starts(
    x: np.ndarray, spec: Adaptation, start: int, mask: np.ndarray | None = None
) -> np.ndarray:
    """The frames of every start of a print before ``start`` (``detector.calibration_start``),
    each learnt again because it did not move (a printer heating:
    ``detector.still_start_spans``), as the daemon's start guard judges them (``x``: model
    inputs as the camera gave them; each start matched to its own first frames' light,
    ``light.start_matched``). The guard judges these and the start from ``start`` on: it is
    set and checked on both."""
    spans = still_start_spans(x, spec.frames, mask, spec.still_first_frames)
    kept = [start_matched(x[b:e], spec) for b, e in spans if e <= start]
    return np.concatenate(kept) if kept else x[:0]


def guarded_maps(
    error_maps: Callable[[np.ndarray], np.ndarray], stills: np.ndarray, start_maps: np.ndarray
) -> np.ndarray:
    """The error maps of every frame of a print the start guard judges: its still starts'
    (``still_starts``, scored here by ``error_maps``) and its judged start's (``start_maps``,
    already scored). The trainer and ``calibrate`` set and check the guard on these."""
    return np.concatenate([error_maps(stills), start_maps]) if len(stills) else start_maps


class NoMovingStart(ValueError):
    """No normal print's first frames moved (each began with its printer heating, say): the
    start's own threshold cannot be set on them."""


def early_threshold(
    spec: Adaptation,
    scoring: Scoring,
    starts: list[np.ndarray],
    target_fpr: float = 0.01,
    mask: np.ndarray | None = None,
    inputs: list[np.ndarray] | None = None,
) -> float:
    """``Adaptation.early_threshold``: the threshold that leaves ``target_fpr`` of normal
    prints' judged start frames above it (``simulate_start``; ``starts``: each print's first
    frames as the daemon scores them, ``light.start_matched``; ``inputs`` their model inputs)."""
    scores = [
        s
        for i, maps in enumerate(starts)
        if len(maps) > spec.early_frames
        for s in [simulate_start(spec, scoring, maps, mask, None if inputs is None else inputs[i])]
        # a start whose first frames did not move is learnt again, not judged (see calibrate)
        if len(s) == min(len(maps), spec.frames) - spec.early_frames
    ]
    if not scores:
        raise NoMovingStart(
            f"no normal print longer than {spec.early_frames} frames whose start moves, to "
            "judge a start on"
        )
    return threshold_for_fpr(np.concatenate(scores), target_fpr)


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


def replayed_verdicts(
    spec: Adaptation,
    scoring: Scoring,
    maps: Sequence[np.ndarray],
    inputs: Sequence[np.ndarray] | None = None,
    start_maps: Sequence[np.ndarray] | None = None,
    start_inputs: Sequence[np.ndarray] | None = None,
) -> list[Verdict]:
    """The daemon's ``Detector``'s verdicts on one print replayed from its first frame, from
    error maps computed elsewhere (``Detector.replay``: light-matched ``maps``, the start's
    own ``start_maps``), judged at ``spec.threshold``: what the benchmark and the trainer's
    report replay a print through."""
    meta = unit_meta(scoring, spec)
    detector = offline_detector(dataclasses.replace(meta, threshold=spec.threshold))
    return detector.replay(maps, inputs, start_maps, start_inputs)


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


def few_frames(frames: int, target_fpr: float) -> str:
    """A caution where too few frames set a threshold for its false-alarm rate to mean
    anything ("": enough): with fewer than 1/rate of them, it is the highest score seen, and
    how often a new print's good frames pass it is not known."""
    if target_fpr <= 0 or frames * target_fpr >= 1:
        return ""
    return (
        f"; only {frames} frames, too few for that rate (it needs {math.ceil(1 / target_fpr)}): "
        "the threshold is the highest score among them, and how often a good frame of a new "
        "print passes it is unknown: record longer prints, or more of them"
    )


# the guard sits at least this far above the highest start of a normal print seen
GUARD_MARGIN = 1.2
# the least spread (standard deviation of the log) assumed of good prints' highest starts: the
# Kaggle data's three prints spread 0.09-0.12 when each is scored by a model that never saw it
GUARD_SPREAD = 0.1
GUARD_PRINTS = 3  # fewer normal prints than this set no start guard

# One-sided 99% quantiles of Student's t by degrees of freedom.
_T99 = {
    1: 31.82,
    2: 6.965,
    3: 4.541,
    4: 3.747,
    5: 3.365,
    6: 3.143,
    7: 2.998,
    8: 2.896,
    9: 2.821,
    10: 2.764,
    12: 2.681,
    15: 2.602,
    20: 2.528,
    25: 2.485,
    30: 2.457,
}


def _t99(df: int) -> float:
    """The one-sided 99% t quantile for ``df`` degrees of freedom, rounded towards safety (the
    nearest tabled value at or below ``df``: never smaller than the true quantile)."""
    return _T99[max(d for d in _T99 if d <= max(df, 1))]


def start_guard(
    scores: list[np.ndarray], margin: float = GUARD_MARGIN, partial: Sequence[np.ndarray] = ()
) -> float:
    """``Adaptation.guard``: the absolute score a good print's start should not reach (0: none).

    ``scores``: the absolute scores of normal prints' frames, each print scored by a model that
    never saw it (``light.start_matched``: a print's start is judged before its light is known).
    Each print's highest score (of the frames the guard judges: ``still_starts`` and the
    start) counts once. The guard is the upper
    99% prediction bound of the next print's highest start (log-normal, Student's t: a wide
    bound from few prints, narrowing as prints are added), never below ``margin`` times the
    highest start seen. The spread of highest starts is taken as at least ``GUARD_SPREAD``: a
    few prints that happen to start alike say little of how far a new part, filament or bed
    position moves the start. Fewer than ``GUARD_PRINTS`` prints set no guard.

    ``partial``: the starts of prints that ended within their start. Their highest frame is
    lower than a whole start's would be, so they are not among the prints counted or the bound
    is set on; but they are good starts, and the guard stays ``margin`` above them too.

    Conservative on purpose: a normal print the model has never seen must not be paused in its
    first minutes (docs/decisions/start-guard.md).
    """
    highs = _highest_starts(scores)
    if not highs.size and not len(partial):
        raise ValueError("no normal print to set the start guard on")
    if highs.size < GUARD_PRINTS or np.any(highs <= 0):
        return 0.0
    logs = np.log(highs)
    spread = max(float(np.std(logs, ddof=1)), GUARD_SPREAD) * np.sqrt(1.0 + 1.0 / highs.size)
    bound = float(np.exp(np.mean(logs) + _t99(highs.size - 1) * spread))
    seen = float(np.max(np.concatenate([highs, _highest_starts(list(partial))])))
    return reachable_guard(max(bound, seen * margin))


def reachable_guard(guard: float) -> float:
    """``guard``, or 0 (none) where no frame's score can reach it: the bound from a few prints
    whose starts differ a lot can pass ``MAX_SCORE``, and a guard there guards nothing (a
    bundle that says it has one is refused as edited by hand)."""
    return guard if guard < MAX_SCORE else 0.0


def starts_by_print(
    scores: Sequence[tuple[str, np.ndarray]], counted: Iterable[str]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The start guard's scores one array per print, a print's parts after a resume joined
    (``frames.print_of``; ``scores``: (recording, scores) pairs), split into the prints of the
    ``counted`` recordings (the threshold's: ``calibrate``'s ``used``) and the rest, which
    ``start_guard`` takes as ``partial``."""
    parts: dict[str, list[np.ndarray]] = {}
    for name, s in scores:
        parts.setdefault(print_of(name), []).append(np.asarray(s))
    whole = {print_of(name) for name in counted}
    joined = {p: np.concatenate(s) for p, s in parts.items()}
    return [s for p, s in joined.items() if p in whole], [
        s for p, s in joined.items() if p not in whole
    ]


def recalibrated_guard(
    guard: float, starts: list[np.ndarray], partial: Sequence[np.ndarray] = ()
) -> float:
    """The start guard after calibrating on the owner's own normal prints (``starts``: their
    absolute scores, first frames first; ``partial``: recordings that end within their start,
    not counted, as ``start_guard`` takes them). From ``GUARD_PRINTS`` prints or more it rises
    to their own bound when that is higher, and never falls. From fewer, it stays, unless one
    of their starts comes within ``GUARD_MARGIN`` of it: then it is off (0), since a guard the
    owner's good starts reach would pause their good prints, and too few prints are known to
    set another."""
    if guard <= 0 or not (starts or len(partial)):
        return guard
    own = start_guard(starts, partial=partial)
    if own:
        return max(guard, own)  # each below any score a frame can reach already
    highest = float(np.max(_highest_starts([*starts, *partial]), initial=0.0))
    return 0.0 if highest * GUARD_MARGIN > guard else guard


def _highest_starts(scores: list[np.ndarray]) -> np.ndarray:
    """Each print's highest score (prints without frames left out)."""
    return np.array([float(np.max(s)) for s in map(np.asarray, scores) if len(s)])


def calibrate(
    spec: Adaptation,
    scoring: Scoring,
    prints: list[np.ndarray],
    target_fpr: float = 0.01,
    mask: np.ndarray | None = None,
    held_out: list[np.ndarray] | None = None,
    inputs: list[np.ndarray] | None = None,
    starts: list[np.ndarray] | None = None,
    start_inputs: list[np.ndarray] | None = None,
    used: list[int] | None = None,
) -> Adaptation:
    """``spec`` with its threshold set from normal prints (error maps of each, in time order;
    of the ``light_matched`` frames when ``spec.match_light``).

    Every print is calibrated on its own first ``spec.frames`` frames, exactly as the daemon
    does, and the threshold leaves ``target_fpr`` of the later frames above it. ``held_out``
    (one boolean array per print) restricts the threshold to frames the model did not fit,
    the trainer's rule for every threshold; without any such frame, all later frames count.
    ``inputs``: each print's model inputs (needed with ``spec.nearest``).

    With ``spec.early_frames``, ``starts`` (each print's first frames, ``light.start_matched``,
    ``start_inputs`` their model inputs) set ``early_threshold`` the same way
    (``early_threshold``); without them it is left as it is.

    ``used``, when given, is filled with the index of each print the threshold was set on (the
    others were no longer than their start, or never moved): what the threshold rests on.
    """
    unit = dataclasses.replace(spec.without_light_matching(), threshold=1.0, guard=0.0)
    scores: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    for i, maps in enumerate(prints):
        if len(maps) <= spec.frames:
            continue
        s = simulate(unit, scoring, maps, mask, None if inputs is None else inputs[i])
        if len(s) < len(maps) - spec.frames:
            # callers start each print where the daemon's judged start begins (``learnt_from``):
            # this one has no start that moves before its end
            logger.warning(
                "normal print %d of %d left out: its picture did not move (a frozen or dark "
                "recording, or one that ends while the printer heats), so the daemon would "
                "learn it again instead of judging it",
                i + 1,
                len(prints),
            )
            continue
        scores.append(s)
        if used is not None:
            used.append(i)
        if held_out is not None:
            kept.append(s[np.asarray(held_out[i], dtype=bool)[spec.frames :]])
    if not scores:
        raise ValueError(
            f"no normal print longer than {spec.frames} frames whose start moves, to calibrate "
            "adaptation on"
        )
    chosen = np.concatenate(kept) if kept and sum(len(k) for k in kept) else np.concatenate(scores)
    result = dataclasses.replace(spec, threshold=threshold_for_fpr(chosen, target_fpr))
    if spec.early_frames and starts is not None:
        try:
            early = early_threshold(spec, scoring, starts, target_fpr, mask, start_inputs)
        except NoMovingStart:
            # every start began without moving (the printer heating): nothing to set the
            # start's own threshold on, and it is left as it is (none: the start is learnt)
            logger.warning(
                "the start's first %d frames did not move in any of these prints (the printer "
                "heating?): the rest of a print's start is judged with the threshold it had "
                "(%s)",
                spec.early_frames,
                f"{spec.early_threshold:.4g}" if spec.early_threshold > 0 else "none: not judged",
            )
        else:
            result = dataclasses.replace(result, early_threshold=early)
    return result
