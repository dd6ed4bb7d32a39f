"""The daemon's own judgement on held-out prints: what the report leads with.

A model is judged by what the daemon would do with it on prints it never fitted: each such
print is replayed frame by frame through the daemon's per-print baseline
(``watchdog.detection.calibration.simulate``, which drives ``PrintBaseline``) and the daemon's
decision rule (``watchdog.detection.decide``: ``consecutive`` anomalous frames in a row pause
the print). Each known failure is replayed the way it would reach the daemon: after the
held-out print's calibration frames, so it is judged against a good print's baseline.
Absolute single-frame scores (no baseline) come after, in the report, labelled as such.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.crossfit import HeldOut
from trainer.evaluate import error_maps
from watchdog.config import CameraConfig, DetectionConfig
from watchdog.detection import decide
from watchdog.detection.bundle import Adaptation, Scoring
from watchdog.detection.calibration import replayed_verdicts, simulate, simulate_start
from watchdog.detection.light import light_matched, print_reference, start_matched
from watchdog.frames import print_of

CONSECUTIVE = DetectionConfig().consecutive  # the daemon's default


@dataclass(frozen=True)
class Replay:
    """One print replayed as the daemon would see it."""

    name: str  # "print2", or "print2 then spaghetti" for a failure after print2's calibration
    failure: bool  # the frames after calibration are a known failure
    calibration: int  # frames at the start that calibrate (judged only as ``start_flags``)
    scores: np.ndarray  # the score each judged frame is compared with (after calibration)
    threshold: float
    consecutive: int
    # the calibration frames the daemon calls anomalous (its start guard, the start judged
    # against its first frames): a run of them goes on into the judged frames, as in
    # ``decide``; empty where the start is not this print's own (a failure after it)
    start_flags: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, bool))
    failed_print: str = ""  # the failure replayed (each is replayed after every held-out print)

    @property
    def flagged(self) -> np.ndarray:
        """Indices (into ``scores``) of frames above the threshold."""
        return np.flatnonzero(self.scores > self.threshold)

    @property
    def pauses(self) -> list[int]:
        """Judged frames (0-based; below 0: during the start) where the daemon's rule fires:
        ``decide.fires`` over the start's flags and the judged frames', the owner never resuming
        in between (re-armed ``cooldown_s`` later, at the default camera interval)."""
        settings = decide.Settings(
            consecutive=self.consecutive, cooldown_s=DetectionConfig().cooldown_s
        )
        flags = np.concatenate([self.start_flags, self.scores > self.threshold])
        fired = decide.fires(flags, settings, CameraConfig().interval_s)
        return [i - len(self.start_flags) for i in fired]

    @property
    def first_pause(self) -> int | None:
        """Judged frames until the daemon pauses (1-based; 0 or less: during the start), None
        when it never does."""
        pauses = self.pauses
        return pauses[0] + 1 if pauses else None

    def summary(self) -> dict[str, Any]:
        n = len(self.scores)
        return {
            "print": self.name,
            "failure": self.failure,
            "calibration_frames": self.calibration,
            "judged_frames": n,
            "flagged_frames": int(len(self.flagged)),
            "flagged_share": float(len(self.flagged) / n) if n else None,
            "frames_to_pause": self.first_pause,
            "pauses": len(self.pauses),
        }


def replay(
    name: str,
    spec: Adaptation,
    scoring: Scoring,
    maps: np.ndarray,
    inputs: np.ndarray,
    threshold: float,
    failure: bool = False,
    consecutive: int = CONSECUTIVE,
) -> Replay:
    """One print's frames (error maps and model inputs, time order, light-matched as the daemon
    would) through the per-print baseline; without adaptation, the absolute scores."""
    if spec.enabled:
        unit = dataclasses.replace(spec, threshold=1.0)
        scores = simulate(unit, scoring, maps, inputs=inputs if spec.nearest else None)
        return Replay(name, failure, spec.frames, scores, spec.threshold, consecutive)
    return Replay(name, failure, 0, scoring.scores(maps).astype(np.float64), threshold, consecutive)


def start_flags(h: HeldOut, spec: Adaptation, scoring: Scoring) -> np.ndarray:
    """Which of a print's calibration frames the daemon's ``Detector`` calls anomalous (the
    start guard, the start judged against its first frames), replayed from its first frame."""
    if not spec.enabled or not (spec.guard > 0 or spec.judges_start):
        return np.zeros(0, bool)
    k = min(spec.frames, len(h.maps))

    def floats(x: np.ndarray) -> list[np.ndarray] | None:
        return list(x[:k].astype(np.float32) / 255.0) if spec.nearest else None

    verdicts = replayed_verdicts(
        spec,
        scoring,
        list(h.maps[:k]),
        floats(h.inputs),
        list(h.start_maps[:k]),
        floats(h.start_inputs),
    )
    return np.array([v.anomalous for v in verdicts], bool)


def replays(
    held: Sequence[HeldOut],
    failures: dict[str, np.ndarray],
    spec: Adaptation,
    scoring: Scoring,
    threshold: float,
    consecutive: int = CONSECUTIVE,
) -> list[Replay]:
    """Every held-out print, then every failure after that print's calibration frames.

    ``failures``: uint8 model inputs per failure print, in time order. A held-out print too
    short to calibrate on is left out (the daemon would still be calibrating at its end).
    """
    out = []
    for h in held:
        if spec.enabled and len(h.maps) <= spec.frames:
            continue
        good = replay(h.name, spec, scoring, h.maps, h.inputs, threshold, consecutive=consecutive)
        out.append(dataclasses.replace(good, start_flags=start_flags(h, spec, scoring)))
        # each failure reaches the daemon after this print's first frames: matched to their light
        k = spec.frames if spec.enabled else 0
        ref = print_reference(h.frames, spec)
        for fname, x in failures.items():
            x_in = light_matched(x, spec, ref)
            maps = np.concatenate([h.maps[:k], error_maps(h.reconstruct, x_in, scoring)])
            seq = np.concatenate([h.inputs[:k], x_in])
            run = replay(
                f"{h.name} then {fname}",
                spec,
                scoring,
                maps,
                seq,
                threshold,
                failure=True,
                consecutive=consecutive,
            )
            out.append(dataclasses.replace(run, failed_print=fname))
    return out


def start_replays(
    held: Sequence[HeldOut],
    failures: dict[str, np.ndarray],
    spec: Adaptation,
    scoring: Scoring,
    consecutive: int = CONSECUTIVE,
) -> list[Replay]:
    """Each held-out print's start as the daemon judges it (its frames after the first
    ``spec.early_frames``, against those, ``start_matched``), then each known failure
    beginning right after those first frames. Empty when the start is not judged."""
    if not spec.judges_start:
        return []
    k, early = spec.frames, spec.early_frames
    out = []
    for h in held:
        if len(h.frames) < k:
            continue
        start, maps = h.start_inputs, h.start_maps
        scores = simulate_start(spec, scoring, maps, inputs=start)
        out.append(Replay(h.name, False, early, scores, spec.early_threshold, consecutive))
        for fname, x in failures.items():
            # the same first frames, then the failure: only the failure's frames are scored anew
            seq = start_matched(np.concatenate([h.frames[:early], x[: k - early]]), spec)
            failing = seq[early:]
            seq_maps = np.concatenate([maps[:early], error_maps(h.reconstruct, failing, scoring)])
            scores = simulate_start(spec, scoring, seq_maps, inputs=seq)
            name = f"{h.name} then {fname}"
            out.append(
                Replay(
                    name,
                    True,
                    early,
                    scores,
                    spec.early_threshold,
                    consecutive,
                    failed_print=fname,
                )
            )
    return out


def start_judgement(runs: Sequence[Replay]) -> dict[str, Any] | None:
    """The report's account of the start: good starts' frames flagged and starts paused, and
    failures that begin after the start's first frames paused (None: the start is not judged)."""
    if not runs:
        return None
    normal = [r for r in runs if not r.failure]
    failed = [r for r in runs if r.failure]
    flagged = np.concatenate([r.scores for r in normal]) if normal else np.zeros(0)
    return {
        "first_frames": runs[0].calibration,
        "threshold": runs[0].threshold,
        "good_frames_flagged": float(np.mean(flagged > runs[0].threshold))
        if flagged.size
        else None,
        "good_starts_paused": sum(r.first_pause is not None for r in normal),
        "good_starts": len(normal),
        **_failures_paused(failed),
        "replays": [r.summary() for r in runs],
    }


def _failures_paused(failed: Sequence[Replay]) -> dict[str, int]:
    """Failure replays paused, of how many, and of how many failed prints: each failed print is
    replayed after every held-out print, so replays are not failures (3 of 3 may be one)."""
    return {
        "failures_paused": sum(r.first_pause is not None for r in failed),
        "failures_replayed": len(failed),
        "failed_prints": len({r.failed_print for r in failed}),
    }


def judgement(runs: Sequence[Replay], threshold_rule: str, note: str) -> dict[str, Any]:
    """The report's headline: adapted recall and false alarms, prints paused, per replay. A
    print's parts after a resume (``frames.print_of``) are replayed each, counted one print:
    paused when any of them is."""
    normal = [r for r in runs if not r.failure]
    failed = [r for r in runs if r.failure]
    prints = {print_of(r.name) for r in normal}
    paused = {print_of(r.name) for r in normal if r.first_pause is not None}
    n_scores = np.concatenate([r.scores for r in normal]) if normal else np.zeros(0)
    f_scores = np.concatenate([r.scores for r in failed]) if failed else np.zeros(0)
    threshold = runs[0].threshold if runs else float("nan")
    return {
        "threshold": threshold if runs else None,
        "threshold_rule": threshold_rule,
        "consecutive": runs[0].consecutive if runs else CONSECUTIVE,
        "note": note,
        "held_out_prints": len(prints),
        "good_replays": len(normal),  # each failure is replayed after each
        "recall": float(np.mean(f_scores > threshold)) if f_scores.size else None,
        "false_alarm_rate": float(np.mean(n_scores > threshold)) if n_scores.size else None,
        "normal_prints_paused": len(paused),
        **_failures_paused(failed),
        "replays": [r.summary() for r in runs],
    }
