"""Detection quality on prints the model has never seen, not run in CI.

    .venv/bin/python benchmarks/quality.py [--data DIR] [--seed-epochs 3] [--skip-seed] [--json FILE]

Leave-one-session-out on the Kaggle frames (``../shared/data/kaggle-3d-printer``): for each
of the three normal print sessions, fit on the other two and test this session's normal
frames against all defect frames. In one run, with the trainer's own library:

- ``--preset default`` (with its per-print adaptation when the preset has one), and on the
  same fitted models the mean baseline (``nearest: 0``) with and without light matching,
- ``--preset seed`` (the seed post's model; fewer epochs, said in the output),
- a 50-component PCA on the default preset's preprocessed pixels, scored the seed's way
  (whole-image MSE) and the default preset's way (same scoring and adaptation).

Per fold it prints image AUROC (absolute scores: all held-out normal frames vs defects; and,
with adaptation, later frames vs defects after calibrating on the held-out print's first
frames in file-number order), the per-frame false-alarm rate on the held-out print and the
recall on defects at the exported threshold, and training seconds.

The exported threshold is chosen the way a user's run would choose it, never from the test
fold: absolute scores use the trainer's rule on validation frames (the last 15% of each
fitting session, held out of fitting); adapted scores use the trainer's rule
(``trainer.crossfit.shipped_threshold``): each fitting session is scored by an extra model
fitted on the other one, replayed from its own first frames
(``watchdog.detection.calibration.calibrate``), a threshold is set on all those frames at
``--target-fpr`` (the "train s" column includes these fits), and the higher of it and the
fitted model's own validation frames' threshold is used. The PCA rows keep the
validation-frame rule.

Per fold also the decision over time through the daemon's own rule (``decide``, default
detection settings: 3 in a row, 90 s cooldown at 10 s a frame): firings during the held-out
print's scored normal frames, and frames from the start of each failed
print (scored after the held-out print's calibration) to the pause.

Also per fold, an in-scene check the Kaggle layout cannot give (its failures are other
prints, so adaptation could simply be flagging "another scene"): thin yellow strings drawn
near the nozzle on the held-out print's own later frames, scored the same way; and real
failure material (yellow spaghetti and blobs cut out of the defect frames, see
``benchmarks/inscene.py``) pasted into the same frames. And failures that start inside the
print: each failed print's material, frame by frame in time order, pasted into the held-out
print from its frame 30 + ``INSCENE_ONSET`` on; frames from that onset to the pause, and the
share of its frames above the threshold by how much of the picture the failure changed. And a
print that fails from its first frame: each Kaggle failed print calibrated on its own first
frames (the daemon's baseline is then the failure), frames above the threshold and to the pause.
And a lasting change of the room's light (``LIGHTING``) from frame ``LIGHT_ONSET`` of the
held-out print: frames above the threshold and to the pause.

Skips (exit 0) when the data folder is absent. Needs the ``train`` extra.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.inscene import growth_order, pasted_failures, pasted_sequence  # noqa: E402
from benchmarks.paths import shown  # noqa: E402
from trainer.crossfit import shipped_threshold, split_fit_val  # noqa: E402
from trainer.data import last_frames  # noqa: E402
from trainer.evaluate import error_maps, keras_reconstructor  # noqa: E402
from watchdog.config import CameraConfig, DetectionConfig  # noqa: E402
from watchdog.detection import decide  # noqa: E402
from watchdog.detection.bundle import Adaptation, Preprocess, Scoring  # noqa: E402
from watchdog.detection.calibration import (  # noqa: E402
    calibrate,
    replayed_verdicts,
    simulate,
)
from watchdog.detection.detector import Verdict  # noqa: E402
from watchdog.detection.light import light_matched, print_reference, start_matched  # noqa: E402

KAGGLE = ROOT.parent / "shared" / "data" / "kaggle-3d-printer"

logger = logging.getLogger("benchmarks.quality")


# --------------------------------------------------------------------------- data


DEFECT_PRINTS: list[tuple[str, int]] = []  # (failed print, frames) in the order of data["defects"]
SETTINGS = decide.Settings.from_config(DetectionConfig())  # the daemon's default detection settings
INTERVAL_S = CameraConfig().interval_s
THRESHOLD_RULE = "higher of cross-fitted and last frames"  # trainer.crossfit.shipped_threshold
INSCENE_ONSET = 20  # scored normal frames of the held-out print before a pasted failure starts
START_ONSET = 12  # frames of a good start (2 minutes at 10 s) before a pasted failure begins
# The failure material pasted into good prints and the synthetic strings: one draw for every
# run, whatever its seeds, so a seed run alone (``--seeds 1``) repeats that seed's figures
MATERIAL_SEED = 0
# How large a pasted failure is: the share of the model input's pixels it changed by more than
# VISIBLE_LEVEL (0-1) in some colour channel; in-scene frames are counted by these shares.
VISIBLE_LEVEL = 40 / 255
SIZE_EDGES = (0.005, 0.015, 0.03, 0.06)


def load_dataset(data: Path, pre: Preprocess) -> dict[str, np.ndarray]:
    """uint8 frames per normal session (in file-number order, i.e. time) and 'defects'."""
    from trainer.data import NORMAL, find_frames, load_frames

    frames = find_frames(data)
    out: dict[str, np.ndarray] = {}
    for session in sorted({f.session for f in frames if f.label == NORMAL}):
        group = sorted(
            (f for f in frames if f.label == NORMAL and f.session == session),
            key=lambda f: f.number,
        )
        out[session] = load_frames(group, pre).x
    defects = sorted((f for f in frames if f.label != NORMAL), key=lambda f: (f.session, f.number))
    loaded = load_frames(defects, pre)
    out["defects"] = loaded.x
    DEFECT_PRINTS[:] = [
        (name, sum(f.session == name for f in loaded.frames))
        for name in sorted({f.session for f in loaded.frames})
    ]
    return out


def screen_options(description: str) -> argparse.ArgumentParser:
    """The options of a one-off screen: ``--data``, ``--seeds`` and ``--json``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", type=Path, default=KAGGLE)
    p.add_argument("--seeds", type=lambda v: [int(x) for x in v.split(",") if x], default=[0])
    p.add_argument("--json", type=Path)
    return p


def screen_start(doc: str, argv: list[str] | None) -> tuple[argparse.Namespace, Any, Any] | None:
    """A one-off screen's start: its options (``screen_options``, described by the first
    paragraph of ``doc``), the shipped preset and the Kaggle data; None, after saying so in
    one line, when the data is not there."""
    args = screen_options(doc.split("\n\n")[0]).parse_args(argv)
    if not (args.data / "defected").is_dir():
        print(f"skipped: no Kaggle data at {args.data}")
        return None
    from trainer.model import get_preset

    preset = get_preset("default")
    return args, preset, load_dataset(args.data, preset.preprocess)


def screen_error(model: Any, scoring: Scoring) -> Any:
    """A fitted model's packed error maps (``packed``): uint8 frames → maps with their inputs."""
    recon = keras_reconstructor(model)
    return packed(lambda x: error_maps(recon, x, scoring))


def screen_fold_runs(data: dict[str, np.ndarray], preset: Any, seeds: list[int]) -> Iterator[Any]:
    """A screen's fold-runs, one training run per seed, leave one print out: (seed, held-out
    print, the preset's model fitted on the other prints)."""
    from trainer.model import build_autoencoder, compile_autoencoder
    from trainer.train import fit

    sessions = [k for k in data if k != "defects"]
    for seed in seeds:
        for held in sessions:
            x_fit, x_val = split_fit_val(data, [s for s in sessions if s != held])
            # first weights from the seed too: one seed screens one model (as the trainer fits)
            model = build_autoencoder(preset.model, preset.preprocess.shape, seed)
            compile_autoencoder(model, preset.train)
            with tempfile.TemporaryDirectory() as tmp:
                fit(model, x_fit, x_val, preset.train, Path(tmp) / "w.weights.h5", seed, 0)
            yield seed, held, model


def screen_inputs(
    data: dict[str, np.ndarray], held: str, spec: Adaptation, seed: int
) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """A screen's model inputs of the held-out good print, in file order and as its part grows
    (``inscene.growth_order``), each matched to its print's light as the daemon matches them:
    (order, {"good": the print alone, each failed print's name: the same print with its
    material pasted frame by frame from ``INSCENE_ONSET`` frames after its start on}).
    Every failure's sequence keeps the frames before its onset, as on a real print."""
    frames = data[held]
    onset = spec.frames + INSCENE_ONSET
    for order, idx in (("file", np.arange(len(frames))), ("growth", growth_order(frames))):
        good = frames[idx]
        ref = print_reference(good, spec)
        inputs = {"good": light_matched(good, spec, ref)}
        for name, failure in failed_prints(data["defects"]).items():
            bad = np.concatenate([good[:onset], pasted_sequence(good[onset:], failure, seed)])
            inputs[name] = light_matched(bad, spec, ref)
        yield order, inputs


def write_screen(path: Path | None, started: float, rows: list[dict[str, Any]]) -> None:
    """A screen's fold-runs as JSON, with its date and duration (nothing without ``path``)."""
    if path:
        report = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "seconds": round(time.perf_counter() - started),
            "folds": rows,
        }
        path.write_text(json.dumps(report, indent=2) + "\n")


def finish_screen(
    path: Path | None, started: float, rows: list[dict[str, Any]], summary: Any
) -> int:
    """A screen's end: its summary printed and, with ``path``, written after its fold-runs."""
    print(json.dumps(summary, indent=1))
    write_screen(path, started, rows + [{"summary": summary}])
    return 0


def region(text: str) -> tuple[float, ...]:
    """``--region``'s numbers: x0,y0,x1,y1 (checked by the preprocessing)."""
    return tuple(float(x) for x in text.split(","))


def first_pause(scores: np.ndarray, thr: float) -> int | None:
    """Frames (1-based) until the daemon's rule (``decide``, default detection settings) fires
    on these scores; None: never."""
    fired = decide.fires(np.asarray(scores) > thr, SETTINGS, INTERVAL_S)
    return fired[0] + 1 if fired else None


def failed_prints(defects: np.ndarray) -> dict[str, np.ndarray]:
    """The Kaggle failed prints' frames (``data["defects"]``, in ``DEFECT_PRINTS`` order), by name."""
    out, at = {}, 0
    for name, n in DEFECT_PRINTS:
        out[name] = defects[at : at + n]
        at += n
    return out


def screen_judged(scores: dict[str, np.ndarray], thr: float) -> dict[str, Any]:
    """A screen's figures for one variant (``scores["good"]``: the held-out good print, the
    rest its pasted failures): the good print's frames flagged and pauses; per failed print,
    its frames above the threshold and frames to its first pause."""
    good = scores["good"]
    failed = {k: s for k, s in scores.items() if k != "good"}
    return {
        "flagged": float(np.mean(good > thr)),
        "pauses": len(decide.fires(good > thr, SETTINGS, INTERVAL_S)),
        "recall": {k: float(np.mean(s > thr)) for k, s in failed.items()},
        "frames_to_pause": {k: first_pause(s, thr) for k, s in failed.items()},
    }


def screen_oracle(scores: dict[str, np.ndarray]) -> dict[str, Any]:
    """``screen_judged`` of one variant's scores (the good print's whole, each failure's from
    frame ``INSCENE_ONSET`` of the judged frames on) at the good print's own 99th percentile:
    an oracle, the same rule for every variant, which ranks ideas and sets nothing."""
    scores = {k: v if k == "good" else v[INSCENE_ONSET:] for k, v in scores.items()}
    return screen_judged(scores, float(np.quantile(scores["good"], 0.99)))


def screen_summary(figures: list[dict[str, Any]]) -> dict[str, Any]:
    """One variant's ``screen_judged`` figures over fold-runs: good pauses, mean in-scene
    recall (and per failed print), failed prints paused within 10 frames of their onset."""
    paused = [
        sum(v is not None and v <= 10 for v in f["frames_to_pause"].values()) for f in figures
    ]
    return {
        "good_pauses": sum(f["pauses"] for f in figures),
        "inscene_recall": round(
            float(np.mean([np.mean(list(f["recall"].values())) for f in figures])), 3
        ),
        "recall_per_failure": {
            name: round(float(np.mean([f["recall"][name] for f in figures])), 3)
            for name, _ in DEFECT_PRINTS
        },
        "paused_within_10": f"{sum(paused)} of {len(DEFECT_PRINTS) * len(figures)}",
    }


def sequence_stats(normal: np.ndarray, defects: np.ndarray, thr: float) -> dict[str, Any]:
    """The decision over time at the default detection settings (``decide``, cooldown and
    re-arm included): firings during the held-out print's scored normal frames, and frames from
    the start of each failed print to its pause."""
    false_pauses = len(decide.fires(np.asarray(normal) > thr, SETTINGS, INTERVAL_S))
    to_pause, start = {}, 0
    for name, count in DEFECT_PRINTS:
        to_pause[name] = first_pause(defects[start : start + count], thr)
        start += count
    return {"false_pauses": int(false_pauses), "frames_to_pause": to_pause}


def replay_verdicts(
    spec: Adaptation,
    scoring: Scoring,
    maps: np.ndarray,
    thr: float,
    start: np.ndarray | None = None,
) -> list[Verdict]:
    """The daemon's ``Detector``'s verdicts on one print, replayed from its first frame: packed
    ``maps`` (light-matched as the daemon matches them), ``thr`` the adapted threshold,
    ``start`` the packed maps of the print's first frames as ``start_matched`` gives them
    (what the start guard and the start's own judgement see)."""
    return replayed_verdicts(
        dataclasses.replace(spec, threshold=thr),
        scoring,
        list(maps[..., 0]),
        list(maps[..., 1:]) if spec.nearest else None,
        None if start is None else list(start[..., 0]),
        list(start[..., 1:]) if start is not None and spec.nearest else None,
    )


def replay_print(
    spec: Adaptation,
    scoring: Scoring,
    maps: np.ndarray,
    thr: float,
    start: np.ndarray | None = None,
) -> np.ndarray:
    """Whether the daemon calls each frame of one print anomalous (``replay_verdicts``)."""
    return np.array([v.anomalous for v in replay_verdicts(spec, scoring, maps, thr, start)])


def first_minutes_stats(
    maps: dict[str, np.ndarray], held: str, spec: Adaptation, scoring: Scoring, thr: float
) -> dict[str, Any]:
    """A print's first minutes through the ``Detector`` and ``decide``: the held-out normal
    print and each Kaggle failed print (failing from its first frame) replayed from their own
    first frame, with the bundle's start guard (``spec.guard``) and without it (the start's own
    judgement, ``spec.early_threshold``, in both). Pauses on the normal print; frames from the
    first frame to the first pause of each failed print."""
    out: dict[str, Any] = {"guard": spec.guard, "early_threshold": spec.early_threshold}
    start = {
        k: scoring.scores(maps["start_" + k][..., 0])
        for k in [held, *(f for f, _ in DEFECT_PRINTS)]
    }
    for name, guard in (("with_guard", spec.guard), ("without_guard", 0.0)):
        s = dataclasses.replace(spec, guard=guard)
        normal = replay_print(s, scoring, maps[held], thr, maps["start_" + held])
        fired = decide.fires(normal, SETTINGS, INTERVAL_S)
        failed = {}
        for f, _ in DEFECT_PRINTS:
            anomalous = replay_print(s, scoring, maps["own_" + f], thr, maps["start_" + f])
            fires = decide.fires(anomalous, SETTINGS, INTERVAL_S)
            failed[f] = fires[0] + 1 if fires else None
        out[name] = {
            "normal_pauses": len(fired),
            "normal_pauses_in_start": sum(i < spec.frames for i in fired),
            "normal_start_above_guard": int(np.sum(start[held] > guard)) if guard else 0,
            "normal_start_max": float(np.max(start[held])),
            "failed_frames_to_pause": failed,
        }
    # how far the failed starts are from the guard: the median absolute score of their first 10 frames
    out["failed_start_median"] = {f: float(np.median(start[f][:10])) for f, _ in DEFECT_PRINTS}
    return {"first_minutes": out}


def start_stats(
    maps: dict[str, np.ndarray], held: str, spec: Adaptation, scoring: Scoring, thr: float
) -> dict[str, Any]:
    """A failure that begins while a print's start is learnt, through the ``Detector`` and
    ``decide``: the held-out print's first ``START_ONSET`` frames, then each failed print's
    material pasted frame by frame into the rest of its start; frames from that onset to the
    pause, within the start (None: not paused by its end). And what the start's judgement
    costs a good print: every stretch of ``spec.frames`` frames of the held-out print replayed
    as a print's start; the share of its judged frames flagged, and the stretches paused; and
    whether a lasting light change from frame ``START_LIGHT_ONSET`` of its start pauses it."""
    starts, k = maps.get("starts_" + held, np.zeros(0)), max(spec.frames, START_ONSET + 1)
    to_pause, above = {}, {}
    for name, _ in DEFECT_PRINTS:
        if "startfail_" + name not in maps:
            continue
        start = maps["startfail_" + name]
        verdicts = replay_verdicts(spec, scoring, start, thr, start)
        flagged = np.array([v.anomalous for v in verdicts])[START_ONSET:]
        fired = decide.fires(flagged, SETTINGS, INTERVAL_S)
        to_pause[name] = fired[0] + 1 if fired else None
        above[name] = float(np.mean(flagged))
    judged, flagged_n, paused, stretches = 0, 0, 0, 0
    for first in range(0, len(starts) - k + 1, k):
        stretch = starts[first : first + k]
        verdicts = replay_verdicts(spec, scoring, stretch, thr, stretch)
        scored = [v for v in verdicts if v.early_score is not None]
        judged += len(scored)
        flagged_n += sum(v.anomalous for v in scored)
        paused += bool(decide.fires([v.anomalous for v in verdicts], SETTINGS, INTERVAL_S))
        stretches += 1
    light_paused = {}
    for name in LIGHTING:  # a lasting light change from START_LIGHT_ONSET: paused or not
        if "startlight_" + name in maps:
            lit = maps["startlight_" + name]
            verdicts = replay_verdicts(spec, scoring, lit, thr, lit)
            light_paused[name] = bool(
                decide.fires([v.anomalous for v in verdicts], SETTINGS, INTERVAL_S)
            )
    return {
        "failure_in_start": {
            "onset_frame": START_ONSET,
            "early_frames": spec.early_frames,
            "early_threshold": spec.early_threshold,
            "frames_to_pause": to_pause,
            "above": above,
            "normal_starts": stretches,
            "normal_starts_paused": paused,
            "normal_judged_frames": judged,
            "normal_false_alarm_rate": flagged_n / judged if judged else 0.0,
            "light_onset_frame": START_LIGHT_ONSET,
            "light_change_paused": light_paused,
        }
    }


def failing_from_start_stats(
    defects: np.ndarray, k: int, thr: float, scores: Any
) -> dict[str, Any]:
    """A print that fails from its first frame (each Kaggle failed print on its own): the daemon
    calibrates on its first ``k`` frames, already failing. Share of its later frames above the
    threshold and frames (after calibration) to the pause. ``scores``: error maps → adapted
    scores after the calibration frames."""
    out, start = {}, 0
    for name, count in DEFECT_PRINTS:
        part = defects[start : start + count]
        start += count
        if len(part) <= k:
            continue
        s = scores(part)
        out[name] = {"above": float(np.mean(s > thr)), "frames_to_pause": first_pause(s, thr)}
    return {"failing_from_start": out}


def synthetic_strings(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Thin yellow filament strings drawn near the nozzle (centre-bottom) on uint8 frames."""
    import cv2

    rng = np.random.default_rng(seed)
    out = x.copy()
    h, w = x.shape[1:3]
    for img in out:
        canvas = np.ascontiguousarray(img)
        for _ in range(int(rng.integers(2, 5))):
            px, py = rng.uniform(0.25, 0.75) * w, rng.uniform(0.35, 0.8) * h
            pts = []
            for _ in range(int(rng.integers(4, 9))):
                px = float(np.clip(px + rng.normal(0, 0.05 * w), 0, w - 1))
                py = float(np.clip(py + rng.normal(0, 0.06 * h), 0, h - 1))
                pts.append((px, py))
            rgb = (rng.uniform(0.8, 0.95), rng.uniform(0.7, 0.85), rng.uniform(0.05, 0.2))
            colour = (
                tuple(float(255 * c) for c in rgb)
                if canvas.shape[-1] == 3
                else (float(255 * rgb[1]),)
            )
            cv2.polylines(canvas, [np.array(pts, np.int32)], False, colour, 1, cv2.LINE_AA)
        img[...] = canvas
    return out


# --------------------------------------------------------------------------- metrics


def auroc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.zeros(len(normal)), np.ones(len(anomalous))]
    return float(roc_auc_score(y, np.r_[normal, anomalous]))


def evaluate_fold(
    maps: dict[str, np.ndarray],
    held: str,
    fit_sessions: list[str],
    val_maps: np.ndarray,
    scoring: Scoring,
    adaptation: Adaptation,
    target_fpr: float,
    adapted_threshold: float | None = None,
    guard: float = 0.0,
    early_threshold: float | None = None,
) -> dict[str, Any]:
    """Scores → AUROC, threshold, false alarms and recall for one held-out session.

    ``adapted_threshold``: the cross-fitted threshold (``trainer.crossfit``); the adapted
    threshold is then the trainer's (``shipped_threshold``: the higher of it and the one the
    fitting prints' validation frames give), else the validation frames' alone. The same for
    ``early_threshold``, the cross-fitted threshold of a print's start judged against its
    first frames (``Adaptation.early_frames``), against the fitting prints' own starts."""
    from trainer.calibrate import threshold_for_fpr

    normal, defects, strings = maps[held], maps["defects"], maps["strings"]
    raw_n, raw_d = scoring.scores(normal[..., 0]), scoring.scores(defects[..., 0])
    res: dict[str, Any] = {
        "held_out": held,
        "n_normal": len(normal),
        "n_defects": len(defects),
        "auroc": auroc(raw_n, raw_d),
    }
    if adaptation.enabled:
        k = adaptation.frames
        cal = normal[:k]
        unit = dataclasses.replace(adaptation, threshold=1.0)
        n = adapted(unit, scoring, normal)
        d = adapted(unit, scoring, np.concatenate([cal, defects]))
        y = adapted(unit, scoring, np.concatenate([cal, strings]))
        pasted = adapted(unit, scoring, np.concatenate([cal, maps["pasted"]]))
        val = calibrate(
            adaptation,
            scoring,
            [maps[s][..., 0] for s in fit_sessions],
            target_fpr,
            held_out=[last_frames(len(maps[s])) for s in fit_sessions],
            inputs=[maps[s][..., 1:] for s in fit_sessions],
            starts=[maps["start_" + s][..., 0] for s in fit_sessions],
            start_inputs=[maps["start_" + s][..., 1:] for s in fit_sessions],
        )
        val_thr, early = val.threshold, val.early_threshold
        if early_threshold is not None and adaptation.early_frames:
            early = shipped_threshold(early_threshold, early)
        start_spec = dataclasses.replace(adaptation, guard=guard, early_threshold=early)
        thr = val_thr
        if adapted_threshold is not None:  # the trainer's rule; each half alone for comparison
            thr = shipped_threshold(adapted_threshold, val_thr)
            for key, alone in (
                ("validation_rule", val_thr),
                ("cross_fitted_rule", adapted_threshold),
            ):
                res[key] = {
                    "threshold": alone,
                    "false_alarm_rate": float(np.mean(n > alone)),
                    "recall": float(np.mean(d > alone)),
                }
        res.update(sequence_stats(n, d, thr))
        res.update(
            inscene_stats(
                normal,
                maps,
                k + INSCENE_ONSET,
                thr,
                lambda m: adapted(unit, scoring, m)[INSCENE_ONSET:],
            )
        )
        res.update(
            failing_from_start_stats(
                maps.get("defects_own", defects), k, thr, lambda m: adapted(unit, scoring, m)
            )
        )
        res.update(first_minutes_stats(maps, held, start_spec, scoring, thr))
        res.update(start_stats(maps, held, start_spec, scoring, thr))
        res.update(
            lighting_stats(
                normal, maps, thr, lambda m: np.r_[np.zeros(k), adapted(unit, scoring, m)]
            )
        )
        res.update(
            auroc_adapted=auroc(n, d),
            threshold=thr,
            calibration_frames=k,
            n_normal_scored=len(n),
            false_alarm_rate=float(np.mean(n > thr)),
            recall=float(np.mean(d > thr)),
            strings_auroc=auroc(n, y),
            strings_recall=float(np.mean(y > thr)),
            pasted_auroc=auroc(n, pasted),
            pasted_recall=float(np.mean(pasted > thr)),
        )
    else:
        thr = threshold_for_fpr(scoring.scores(val_maps), target_fpr)
        raw_y, raw_p = scoring.scores(strings[..., 0]), scoring.scores(maps["pasted"][..., 0])
        res.update(sequence_stats(raw_n, raw_d, thr))
        start = max(adaptation.frames, 30) + INSCENE_ONSET
        res.update(
            inscene_stats(normal, maps, start, thr, lambda m: scoring.scores(m[..., 0])[start:])
        )
        res.update(lighting_stats(normal, maps, thr, lambda m: scoring.scores(m[..., 0])))
        res.update(
            threshold=thr,
            n_normal_scored=len(raw_n),
            false_alarm_rate=float(np.mean(raw_n > thr)),
            recall=float(np.mean(raw_d > thr)),
            strings_auroc=auroc(raw_n[len(raw_n) - len(raw_y) :], raw_y),
            strings_recall=float(np.mean(raw_y > thr)),
            pasted_auroc=auroc(raw_n[len(raw_n) - len(raw_p) :], raw_p),
            pasted_recall=float(np.mean(raw_p > thr)),
        )
    return res


def inscene_stats(
    normal: np.ndarray, maps: dict[str, np.ndarray], start: int, thr: float, scores: Any
) -> dict[str, Any]:
    """A failure developing inside the held-out print (real material of each failed print,
    frame by frame, pasted from frame ``start`` on): frames from its onset to the pause, and
    the share of its frames above the threshold. ``scores`` maps the whole sequence's error
    maps to the scores of the failure part."""
    to_pause, above, sizes = {}, [], []
    for name, _ in DEFECT_PRINTS:
        failing = maps["seq_" + name]
        s = scores(np.concatenate([normal[:start], failing]))
        to_pause[name] = first_pause(s, thr)
        above.append(s > thr)
        sizes.append(changed_share(normal[start : start + len(failing)], failing))
    bins = np.digitize(np.concatenate(sizes), SIZE_EDGES)
    caught = np.concatenate(above)
    return {
        "inscene_onset_frame": start,
        "inscene_frames_to_pause": to_pause,
        "inscene_recall": float(np.mean(caught)),
        "inscene_recall_by_print": {
            name: float(np.mean(a)) for (name, _), a in zip(DEFECT_PRINTS, above, strict=True)
        },
        "inscene_by_size": {
            "edges": list(SIZE_EDGES),
            "frames": np.bincount(bins, minlength=len(SIZE_EDGES) + 1).tolist(),
            "caught": np.bincount(bins, caught, minlength=len(SIZE_EDGES) + 1).astype(int).tolist(),
        },
        "inscene_size_by_print": {
            name: float(np.median(z)) for (name, _), z in zip(DEFECT_PRINTS, sizes, strict=True)
        },
    }


def changed_share(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Per frame, the share of the model input's pixels that ``after`` changed from ``before``
    by more than ``VISIBLE_LEVEL`` in some channel (both packed maps, ``packed``: the inputs
    follow the error map): how large a pasted failure is, as the model sees it."""
    diff = np.abs(after[..., 1:] - before[..., 1:]).max(axis=-1)
    return np.asarray((diff > VISIBLE_LEVEL).mean(axis=(1, 2)))


def inscene_sequences(data: dict[str, np.ndarray], session: str, start: int, seed: int) -> None:
    """Add ``seq_<session>_<failed print>`` to ``data``: the session's frames from ``start`` on
    with that failed print's material pasted frame by frame (``benchmarks/inscene.py``)."""
    first = 0
    for name, count in DEFECT_PRINTS:
        failure = data["defects"][first : first + count]
        data[f"seq_{session}_{name}"] = pasted_sequence(data[session][start:], failure, seed)
        first += count


def start_sequences(data: dict[str, np.ndarray], session: str, frames: int, seed: int) -> None:
    """Add ``startfail_<session>_<failed print>`` to ``data``: the session's start frames from
    ``START_ONSET`` to ``frames`` with that failed print's material pasted frame by frame: a
    failure that begins while the print's start is learnt."""
    first = 0
    for name, count in DEFECT_PRINTS:
        failure = data["defects"][first : first + count]
        part = data[session][START_ONSET:frames]
        data[f"startfail_{session}_{name}"] = pasted_sequence(part, failure, seed)
        first += count


def packed(error: Any) -> Any:
    """``error`` returning (N, H, W, 1 + C): channel 0 the error map, then the model input in
    [0, 1] (what ``adaptation.nearest`` compares), so that every concatenation of maps below
    keeps each map with its input."""
    return lambda x: np.concatenate([error(x)[..., None], x.astype(np.float32) / 255.0], axis=-1)


def adapted(
    unit: Adaptation, scoring: Scoring, maps: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """``watchdog.detection.calibration.simulate`` on packed maps."""
    return simulate(unit, scoring, maps[..., 0], mask, inputs=maps[..., 1:])


LIGHTING = {
    "+40": (1.0, 40.0),
    "x0.6": (0.6, 0.0),
    "x1.4": (1.4, 0.0),
    "-40": (1.0, -40.0),
}  # gain, offset
LIGHT_ONSET = 100  # frame of the held-out print from which the room's light is changed
START_LIGHT_ONSET = 15  # the same during the start, while it is judged against its first frames


def relit(x: np.ndarray, gain: float, offset: float) -> np.ndarray:
    """uint8 frames under another light: a lamp, daylight, the light switched off (a global change)."""
    return np.clip(x.astype(np.float32) * gain + offset, 0, 255).round().astype(np.uint8)


def fold_maps(
    error: Any,
    data: dict[str, np.ndarray],
    sessions: list[str],
    held: str,
    spec: Adaptation | None = None,
) -> dict[str, np.ndarray]:
    """Error maps of every set one fold scores (``error``: uint8 frames → maps), each packed
    with its model input (``packed``): ``later_maps`` and ``start_maps``."""
    spec = spec or Adaptation()
    return {
        **later_maps(error, data, sessions, held, spec),
        **start_maps(error, data, sessions, held, spec),
    }


def later_maps(
    error: Any, data: dict[str, np.ndarray], sessions: list[str], held: str, spec: Adaptation
) -> dict[str, np.ndarray]:
    """The maps of everything judged after a print's start.

    Light-matched as the daemon would when ``spec.match_light``: every print to its own first
    frames; whatever the held-out print shows after its calibration (defects, strings, pasted
    failures, the changed light) to the held-out print's; ``defects_own``: each failed print
    to its own first frames (a print that fails from its start)."""
    matching = spec.enabled and spec.match_light
    ref = print_reference(data[held], spec)
    error = packed(error)
    after = lambda x: error(light_matched(x, spec, ref))  # noqa: E731
    maps = {k: error(light_matched(data[k], spec)) for k in sessions}
    maps["defects"] = after(data["defects"])
    for k in ("strings", "pasted"):
        maps[k] = after(data[f"{k}_{held}"])
    for name, _ in DEFECT_PRINTS:
        maps["seq_" + name] = after(data[f"seq_{held}_{name}"])
    for name, (gain, offset) in LIGHTING.items():
        maps["light_" + name] = after(relit(data[held][LIGHT_ONSET:], gain, offset))
    parts, start = [], 0
    for name, count in DEFECT_PRINTS:
        own = data["defects"][start : start + count]
        parts.append(error(light_matched(own, spec)))
        maps["own_" + name] = parts[-1]
        start += count
    if matching:
        maps["defects_own"] = np.concatenate(parts)
    return maps


def start_maps(
    error: Any, data: dict[str, np.ndarray], sessions: list[str], held: str, spec: Adaptation
) -> dict[str, np.ndarray]:
    """The maps of prints' starts as the daemon judges them (``start_matched``: the later
    frames of a start matched to its first ones' light when ``spec.start_light``)."""
    error = packed(error)
    maps, start = {}, 0
    for name, count in DEFECT_PRINTS:  # each failed print's own start
        own = data["defects"][start : start + count]
        maps["start_" + name] = error(start_matched(own[: max(spec.frames, 1)], spec))
        start += count
    for k in sessions:  # every print's start as the daemon judges it (the trainer judges starts so)
        maps["start_" + k] = error(start_matched(data[k][: max(spec.frames, 1)], spec))
    # every stretch of the held-out print as long as a start, each judged as a print's start
    n, frames = max(spec.frames, START_ONSET + 1), data[held]
    stretches = [start_matched(frames[i : i + n], spec) for i in range(0, len(frames) - n + 1, n)]
    if stretches:
        maps["starts_" + held] = error(np.concatenate(stretches))
    for name, (gain, offset) in LIGHTING.items() if n > START_LIGHT_ONSET else ():
        # the room's light changes during the start
        lit = np.concatenate(
            [frames[:START_LIGHT_ONSET], relit(frames[START_LIGHT_ONSET:n], gain, offset)]
        )
        maps["startlight_" + name] = error(start_matched(lit, spec))
    for name, _ in DEFECT_PRINTS:  # the held-out print's first frames, then a failure
        key = f"startfail_{held}_{name}"
        if key in data:
            failing = np.concatenate([frames[:START_ONSET], data[key]])[:n]
            maps["startfail_" + name] = error(start_matched(failing, spec))
    return maps


def lighting_stats(
    normal: np.ndarray, maps: dict[str, np.ndarray], thr: float, scores: Any
) -> dict[str, Any]:
    """A lasting global light change from ``LIGHT_ONSET`` on the held-out print: share of the
    changed frames above the threshold, and frames from the change to the first pause."""
    out = {}
    for name in LIGHTING:
        s = scores(np.concatenate([normal[:LIGHT_ONSET], maps["light_" + name]]))[LIGHT_ONSET:]
        out[name] = {"above": float(np.mean(s > thr)), "frames_to_pause": first_pause(s, thr)}
    return {"lighting": out}


# --------------------------------------------------------------------------- methods


def fit_model(
    preset: Any, data: dict[str, np.ndarray], fitting: list[str], seed: int
) -> tuple[Any, Any]:
    """A model of ``preset`` fitted on these prints (the first 85% of each), as a
    reconstructor, and the fit's record (epochs run, seconds)."""
    from trainer.evaluate import keras_reconstructor
    from trainer.model import build_autoencoder, compile_autoencoder
    from trainer.train import fit

    x_fit, x_val = split_fit_val(data, fitting)
    model = build_autoencoder(preset.model, preset.preprocess.shape)
    compile_autoencoder(model, preset.train)
    with tempfile.TemporaryDirectory() as tmp:
        fitted = fit(
            model, x_fit, x_val, preset.train, Path(tmp) / "best.weights.h5", seed, verbose=0
        )
    return keras_reconstructor(model), fitted


def crossfit_shared(
    preset: Any,
    data: dict[str, np.ndarray],
    fit_sessions: list[str],
    seed: int,
    cache: dict[tuple[str, ...], Any],
) -> list[tuple[list[str], Any]]:
    """``trainer.crossfit.crossfit_models`` of the fold's fitting prints (one left out at a time),
    each model fitted once per training run: the model fitted on print A alone is the same in
    every fold that cross-fits with A (three fits per run instead of six)."""
    out = []
    for left in sorted(fit_sessions):
        fitting = tuple(s for s in sorted(fit_sessions) if s != left)
        if fitting not in cache:
            cache[fitting] = fit_model(preset, data, list(fitting), seed)[0]
        out.append(([left], cache[fitting]))
    return out


def run_autoencoder(
    preset: Any,
    data: dict[str, np.ndarray],
    sessions: list[str],
    args: argparse.Namespace,
    variants: list[Adaptation] | None = None,
) -> list[list[dict[str, Any]]]:
    """Folds of each adaptation variant (default: the preset's own), all on the same fitted models."""
    from trainer.crossfit import crossfit_adaptation

    variants = variants or [getattr(preset, "adaptation", Adaptation())]
    results: list[list[dict[str, Any]]] = [[] for _ in variants]
    cache: dict[tuple[str, ...], Any] = {}
    for held in sessions:
        fit_sessions = [s for s in sessions if s != held]
        _, x_val = split_fit_val(data, fit_sessions)
        recon, fitted = fit_model(preset, data, fit_sessions, args.seed)
        models = None
        # the trainer's rule: each fitting print scored by a model without it
        if variants[0].enabled:
            t0 = time.perf_counter()
            models = crossfit_shared(preset, data, fit_sessions, args.seed, cache)
            fitted.seconds += time.perf_counter() - t0
        # the maps depend on light matching (of later frames, and of the start's) and on
        # the frames it is fitted on: variants that differ in the start alone share the rest
        later: dict[tuple[bool, bool, int], dict[str, np.ndarray]] = {}
        starts: dict[tuple[bool, bool, int, bool, int], dict[str, np.ndarray]] = {}
        error = lambda x, r=recon: error_maps(r, x, preset.scoring)  # noqa: E731
        for spec, out in zip(variants, results, strict=True):
            key = (spec.match_light, spec.clipped_light, spec.frames)
            if key not in later:
                later[key] = later_maps(error, data, sessions, held, spec)
            start_key = (*key, spec.start_light, spec.early_frames)
            if start_key not in starts:
                starts[start_key] = start_maps(error, data, sessions, held, spec)
            maps = {**later[key], **starts[start_key]}
            cross, guard, early = None, 0.0, None
            if spec.enabled and models is not None:
                crossed = crossfit_adaptation(
                    dataclasses.replace(preset, adaptation=spec),
                    {s: data[s] for s in fit_sessions},
                    args.target_fpr,
                    models=models,
                )
                cross, guard, early = crossed.threshold, crossed.guard, crossed.early_threshold
            res = evaluate_fold(
                maps,
                held,
                fit_sessions,
                error_maps(recon, x_val, preset.scoring),
                preset.scoring,
                spec,
                args.target_fpr,
                cross,
                guard,
                early,
            )
            res.update(
                train_seconds=round(fitted.seconds, 1),
                epochs_run=fitted.epochs_run,
                match_light=spec.match_light,
                nearest=spec.nearest,
            )
            logger.info(
                "%s (match_light %s, nearest %d) held out %s: %s",
                preset.name,
                spec.match_light,
                spec.nearest,
                held,
                _short(res),
            )
            out.append(res)
    return results


def run_pca(
    data: dict[str, np.ndarray],
    sessions: list[str],
    scoring: Scoring,
    adaptation: Adaptation,
    args: argparse.Namespace,
    components: int = 50,
) -> list[dict[str, Any]]:
    from sklearn.decomposition import PCA

    from trainer.data import to_float

    results = []
    for held in sessions:
        fit_sessions = [s for s in sessions if s != held]
        x_fit, x_val = split_fit_val(data, fit_sessions)
        t0 = time.perf_counter()
        pca = PCA(components, random_state=args.seed).fit(to_float(x_fit).reshape(len(x_fit), -1))
        seconds = time.perf_counter() - t0

        def recon(xb: np.ndarray, pca: Any = pca) -> np.ndarray:
            flat = pca.inverse_transform(pca.transform(xb.reshape(len(xb), -1)))
            return np.clip(flat.reshape(xb.shape), 0.0, 1.0).astype(np.float32)

        maps = fold_maps(
            lambda x, r=recon: error_maps(r, x, scoring), data, sessions, held, adaptation
        )
        res = evaluate_fold(
            maps,
            held,
            fit_sessions,
            error_maps(recon, x_val, scoring),
            scoring,
            adaptation,
            args.target_fpr,
        )
        res.update(train_seconds=round(seconds, 1))
        results.append(res)
    return results


def run_control(
    preset: Any, data: dict[str, np.ndarray], sessions: list[str], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Does adaptation flag failures, or any other scene? Fit on ONE session A; calibrate on
    print B's first frames; score B's later frames, the whole of normal print C (unseen, as if
    the camera now showed another print) and the defects, at the threshold calibrated on A."""
    adaptation, scoring = preset.adaptation, preset.scoring
    unit = dataclasses.replace(adaptation, threshold=1.0)
    rows = []
    for a in sessions:
        recon = fit_model(preset, data, [a], args.seed)[0]
        error = packed(lambda x, m=recon: error_maps(m, x, scoring))
        own = {k: error(light_matched(data[k], adaptation)) for k in sessions}
        thr = calibrate(
            adaptation,
            scoring,
            [own[a][..., 0]],
            args.target_fpr,
            held_out=[last_frames(len(own[a]))],
            inputs=[own[a][..., 1:]],
        ).threshold
        for b in sessions:
            if b == a:
                continue
            c = next(s for s in sessions if s not in (a, b))
            ref = print_reference(data[b], adaptation)
            after = lambda x, r=ref, e=error: e(light_matched(x, adaptation, r))  # noqa: E731
            cal = own[b][: adaptation.frames]
            n = adapted(unit, scoring, own[b])
            other = adapted(unit, scoring, np.concatenate([cal, after(data[c])]))
            d = adapted(unit, scoring, np.concatenate([cal, after(data["defects"])]))
            rows.append(
                {
                    "fit": a,
                    "print": b,
                    "other": c,
                    "alarm_rate_print": float(np.mean(n > thr)),
                    "alarm_rate_other_print": float(np.mean(other > thr)),
                    "recall_defects": float(np.mean(d > thr)),
                    "auroc_print_vs_other": auroc(n, other),
                    "auroc_other_vs_defects": auroc(other, d),
                }
            )
    return rows


def print_control(rows: list[dict[str, Any]]) -> None:
    print("\n## control: fit on one print, calibrate on another, show a third normal print")
    print(
        "fit        calibrated on  other      alarms(print) alarms(other print) recall  AUROC(other vs defects)"
    )
    for r in rows:
        print(
            f"{r['fit']:<10} {r['print']:<14} {r['other']:<10} {r['alarm_rate_print']:.3f}         "
            f"{r['alarm_rate_other_print']:.3f}               {r['recall_defects']:.3f}   "
            f"{r['auroc_other_vs_defects']:.3f}"
        )


# --------------------------------------------------------------------------- output


FIRST_MINUTES_GOAL = 10  # frames: a print failing from its first frame is paused within this many


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The headline figures of several training runs (seeds) of the shipped preset: per fold-run,
    and their spread (min, mean, max over fold-runs)."""
    rows = []
    for seed, folds in runs.items():
        for r in folds:
            fm = r["first_minutes"]
            rows.append(
                {
                    "seed": int(seed),
                    "held_out": r["held_out"],
                    "threshold": r["threshold"],
                    "guard": fm["guard"],
                    "false_alarm_rate": r["false_alarm_rate"],
                    "recall": r["recall"],
                    "pasted_recall": r["pasted_recall"],
                    "inscene_recall": r["inscene_recall"],
                    "inscene_recall_by_print": r["inscene_recall_by_print"],
                    "inscene_frames_to_pause": r["inscene_frames_to_pause"],
                    "inscene_by_size": r.get("inscene_by_size"),
                    "inscene_size_by_print": r.get("inscene_size_by_print"),
                    "normal_pauses": fm["with_guard"]["normal_pauses"],
                    "normal_pauses_without_guard": fm["without_guard"]["normal_pauses"],
                    "normal_start_max": fm["with_guard"]["normal_start_max"],
                    "failed_frames_to_pause": fm["with_guard"]["failed_frames_to_pause"],
                    "failed_frames_to_pause_without_guard": fm["without_guard"][
                        "failed_frames_to_pause"
                    ],
                }
            )
            if "failure_in_start" in r:  # runs made before the start was judged have none
                fs = r["failure_in_start"]
                rows[-1]["failure_in_start"] = {
                    "early_threshold": fs["early_threshold"],
                    "frames_to_pause": fs["frames_to_pause"],
                    "above": fs["above"],
                    "normal_false_alarm_rate": fs["normal_false_alarm_rate"],
                    "normal_starts_paused": fs["normal_starts_paused"],
                    "normal_starts": fs["normal_starts"],
                    "light_change_paused": fs.get("light_change_paused", {}),
                }

    def spread(key: str) -> dict[str, float]:
        v = np.array([r[key] for r in rows], dtype=np.float64)
        return {"min": float(v.min()), "mean": float(v.mean()), "max": float(v.max())}

    def caught(r: dict[str, Any], key: str = "failed_frames_to_pause") -> int:
        return sum(v is not None and v <= FIRST_MINUTES_GOAL for v in r[key].values())

    n_failed = len(rows[0]["failed_frames_to_pause"]) if rows else 0
    by_print = {
        name: spread_of([r["inscene_recall_by_print"][name] for r in rows])
        for name in (rows[0]["inscene_recall_by_print"] if rows else {})
    }
    out: dict[str, Any] = {
        "fold_runs": rows,
        "false_alarm_rate": spread("false_alarm_rate"),
        "recall": spread("recall"),
        "pasted_recall": spread("pasted_recall"),
        "inscene_recall": spread("inscene_recall"),
        "inscene_recall_by_print": by_print,
        "first_minutes": {
            "goal_frames": FIRST_MINUTES_GOAL,
            "failed_prints_paused_in_goal": sum(caught(r) for r in rows),
            "failed_prints_paused_in_goal_without_guard": sum(
                caught(r, "failed_frames_to_pause_without_guard") for r in rows
            ),
            "failed_prints": n_failed * len(rows),
            "normal_prints_paused": sum(r["normal_pauses"] > 0 for r in rows),
            "normal_prints": len(rows),
            "goal_met_in_every_run": all(
                caught(r) == n_failed and r["normal_pauses"] == 0 for r in rows
            ),
        },
    }
    if rows and all("failure_in_start" in r for r in rows):
        out["failure_in_start"] = starts_summary([r["failure_in_start"] for r in rows])
    if rows and all(r["inscene_by_size"] for r in rows):
        out["inscene_by_size"] = by_size(rows)
    return out


def by_size(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """In-scene frames over every fold-run, by how much of the picture the failure changed:
    frames, frames above the threshold, and each failed print's median size (mean over the
    fold-runs)."""
    frames = np.sum([r["inscene_by_size"]["frames"] for r in rows], axis=0)
    caught = np.sum([r["inscene_by_size"]["caught"] for r in rows], axis=0)
    names = rows[0]["inscene_size_by_print"]
    return {
        "edges": rows[0]["inscene_by_size"]["edges"],
        "frames": frames.tolist(),
        "caught": caught.tolist(),
        "median_size_by_print": {
            name: float(np.mean([r["inscene_size_by_print"][name] for r in rows])) for name in names
        },
    }


def start_only(fold: dict[str, Any]) -> dict[str, Any]:
    """A fold-run's figures of a failure beginning during the start (nothing else differs
    between the runs compared on the same models)."""
    return {"failure_in_start": fold["failure_in_start"]}


def summarize_starts(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """``summarize``'s account of failures beginning during the start, for ``start_only`` runs."""
    return starts_summary([f["failure_in_start"] for folds in runs.values() for f in folds])


def starts_summary(starts: list[dict[str, Any]]) -> dict[str, Any]:
    """Failures beginning during the start paused in the goal, and good starts flagged and paused,
    over fold-runs."""
    return {
        "onset_frame": START_ONSET,
        "goal_frames": FIRST_MINUTES_GOAL,
        "paused_in_goal": sum(
            v is not None and v <= FIRST_MINUTES_GOAL
            for f in starts
            for v in f["frames_to_pause"].values()
        ),
        "failures": sum(len(f["frames_to_pause"]) for f in starts),
        "normal_false_alarm_rate": spread_of([f["normal_false_alarm_rate"] for f in starts]),
        "normal_starts_paused": sum(f["normal_starts_paused"] for f in starts),
        "normal_starts": sum(f["normal_starts"] for f in starts),
        "light_changes_paused": sum(sum(f.get("light_change_paused", {}).values()) for f in starts),
        "light_changes": sum(len(f.get("light_change_paused", {})) for f in starts),
    }


def spread_of(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"min": float(v.min()), "mean": float(v.mean()), "max": float(v.max())}


def _pause(v: int | None) -> str:
    return "never" if v is None else str(v)


def summary_tables(summary: dict[str, Any]) -> dict[str, str]:
    """Markdown tables of ``summarize`` (docs/quality.md): first minutes, in-scene per
    fold-run, spread over fold-runs."""
    rows = summary["fold_runs"]
    names = list(rows[0]["failed_frames_to_pause"]) if rows else []
    first = [
        "| seed | held out | guard (absolute) | highest start of the held-out print | pauses of the normal print "
        "| failed prints, frames to pause (" + ", ".join(names) + ") | without the guard |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        first.append(
            f"| {r['seed']} | {r['held_out']} | {f'{g:.3f}' if (g := r['guard']) else 'none'} | "
            f"{r['normal_start_max']:.3f} | "
            f"{r['normal_pauses']} | {', '.join(_pause(v) for v in r['failed_frames_to_pause'].values())} "
            f"| {', '.join(_pause(v) for v in r['failed_frames_to_pause_without_guard'].values())} |"
        )
    fm = summary["first_minutes"]
    first.append(
        f"\nFailed prints paused within {fm['goal_frames']} frames: {fm['failed_prints_paused_in_goal']} of "
        f"{fm['failed_prints']} ({fm['failed_prints_paused_in_goal_without_guard']} without the guard); "
        f"normal prints paused: {fm['normal_prints_paused']} of {fm['normal_prints']}; goal met in every "
        f"run: {'yes' if fm['goal_met_in_every_run'] else 'no'}."
    )
    inscene = [
        "| seed | held out | FPR@thr | recall@thr | pasted recall | in-scene recall, frames "
        "pooled | in-scene recall by category (" + ", ".join(names) + "), their mean "
        "| in-scene frames to pause (same order) |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        cats = list(r["inscene_recall_by_print"].values())
        inscene.append(
            f"| {r['seed']} | {r['held_out']} | {r['false_alarm_rate']:.3f} | {r['recall']:.3f} | "
            f"{r['pasted_recall']:.3f} | {r['inscene_recall']:.2f} | "
            f"{', '.join(f'{v:.2f}' for v in cats)}; {float(np.mean(cats)):.2f} | "
            f"{', '.join(_pause(v) for v in r['inscene_frames_to_pause'].values())} |"
        )
    spread = ["| figure | min | mean | max |", "|---|---:|---:|---:|"]
    labels = {"inscene_recall": "in-scene recall, frames pooled"}
    for key in ("false_alarm_rate", "recall", "pasted_recall", "inscene_recall"):
        v = summary[key]
        spread.append(
            f"| {labels.get(key, key.replace('_', ' '))} | {v['min']:.3f} | {v['mean']:.3f} | "
            f"{v['max']:.3f} |"
        )
    if rows:  # each failure weighs the same, however many frames it lasts
        v = spread_of([float(np.mean(list(r["inscene_recall_by_print"].values()))) for r in rows])
        spread.append(
            f"| in-scene recall, mean of the categories | {v['min']:.3f} | {v['mean']:.3f} | "
            f"{v['max']:.3f} |"
        )
    for name, v in summary["inscene_recall_by_print"].items():
        spread.append(
            f"| in-scene recall, {name} | {v['min']:.3f} | {v['mean']:.3f} | {v['max']:.3f} |"
        )
    tables = {
        "first_minutes": "\n".join(first),
        "inscene": "\n".join(inscene),
        "spread": "\n".join(spread),
    }
    if "failure_in_start" in summary:
        tables["failure_in_start"] = failure_in_start_table(summary)
    if "inscene_by_size" in summary:
        tables["by_size"] = size_table(summary["inscene_by_size"])
    return tables


def size_table(size: dict[str, Any]) -> str:
    """In-scene frames caught by how much of the picture the failure changed (``by_size``)."""
    edges = [0.0, *size["edges"], 1.0]
    lines = [
        "| pixels of the picture the failure changed | frames | above the threshold |",
        "|---|---:|---:|",
    ]
    for lo, hi, n, k in zip(edges, edges[1:], size["frames"], size["caught"], strict=False):
        span = f"{lo:.1%} to {hi:.1%}" if hi < 1.0 else f"{lo:.1%} or more"
        lines.append(f"| {span} | {n} | {k / n:.2f} |" if n else f"| {span} | 0 | - |")
    typical = ", ".join(
        f"`{name}` {share:.1%}" for name, share in size["median_size_by_print"].items()
    )
    return "\n".join(lines) + f"\n\nMedian share each failed print's material changed: {typical}."


def failure_in_start_table(summary: dict[str, Any]) -> str:
    """Markdown: a failure that begins during the start, per fold-run, and the start's cost."""
    rows = summary["fold_runs"]
    names = list(rows[0]["failure_in_start"]["frames_to_pause"])
    lines = [
        "| seed | held out | start threshold | frames to pause (" + ", ".join(names) + ") "
        "| its frames flagged (same order) | good starts: frames flagged | good starts paused "
        "| light changes paused |",
        "|---|---|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        f = r["failure_in_start"]
        lines.append(
            f"| {r['seed']} | {r['held_out']} | {f['early_threshold']:.3f} | "
            f"{', '.join(_pause(v) for v in f['frames_to_pause'].values())} | "
            f"{', '.join(f'{v:.2f}' for v in f['above'].values())} | "
            f"{100 * f['normal_false_alarm_rate']:.1f}% | "
            f"{f['normal_starts_paused']} of {f['normal_starts']} | {_light(f)} |"
        )
    lines.append("\n" + starts_sentence(summary["failure_in_start"]))
    return "\n".join(lines)


def _light(f: dict[str, Any]) -> str:
    paused = f.get("light_change_paused")
    return f"{sum(paused.values())} of {len(paused)}" if paused else "-"


def starts_sentence(t: dict[str, Any]) -> str:
    """``starts_summary`` in one sentence."""
    fa = t["normal_false_alarm_rate"]
    light = (
        f"; lasting light changes during the start paused: {t['light_changes_paused']} of "
        f"{t['light_changes']}"
        if t.get("light_changes")
        else ""
    )
    return (
        f"Failures beginning after {t['onset_frame']} frames paused within {t['goal_frames']} "
        f"frames: {t['paused_in_goal']} of {t['failures']}; good starts paused: "
        f"{t['normal_starts_paused']} of {t['normal_starts']}; judged frames of good starts "
        f"flagged: {100 * fa['mean']:.1f}% on average ({100 * fa['max']:.1f}% in the worst "
        f"fold-run){light}."
    )


def print_summary(summary: dict[str, Any]) -> None:
    tables = summary_tables(summary)
    for title, key in (
        ("First minutes: each print replayed from its own first frame", "first_minutes"),
        ("Per fold-run", "inscene"),
        ("Spread over fold-runs (min / mean / max)", "spread"),
        ("A failure that begins during the start", "failure_in_start"),
    ):
        if key in tables:
            print(f"\n### {title}\n\n{tables[key]}")


def _short(r: dict[str, Any]) -> str:
    parts = [f"AUROC {r['auroc']:.3f}"]
    if "auroc_adapted" in r:
        parts.append(f"adapted {r['auroc_adapted']:.3f}")
    parts += [
        f"FPR {r['false_alarm_rate']:.3f}",
        f"recall {r['recall']:.3f}",
        f"strings {r['strings_recall']:.2f}",
        f"pasted {r['pasted_recall']:.2f}",
    ]
    return ", ".join(parts)


def print_table(name: str, note: str, folds: list[dict[str, Any]]) -> None:
    print(f"\n## {name}  ({note})")
    adapted = "auroc_adapted" in folds[0]
    head = (
        "held-out     AUROC  "
        + ("adapted " if adapted else "")
        + " FPR@thr  recall@thr  strings(AUROC/recall)  pasted(AUROC/recall)  train s"
    )
    print(head)
    for r in folds:
        print(
            f"{r['held_out']:<12} {r['auroc']:.3f}  "
            + (f"{r['auroc_adapted']:.3f}   " if adapted else "")
            + f" {r['false_alarm_rate']:.3f}    {r['recall']:.3f}       "
            f"{r['strings_auroc']:.3f}/{r['strings_recall']:.3f}          "
            f"{r['pasted_auroc']:.3f}/{r['pasted_recall']:.3f}         {r['train_seconds']:.0f}"
        )
    mean = {
        k: float(np.mean([r[k] for r in folds]))
        for k in (
            "auroc",
            "auroc_adapted",
            "false_alarm_rate",
            "recall",
            "strings_auroc",
            "strings_recall",
            "pasted_auroc",
            "pasted_recall",
        )
        if k in folds[0]
    }
    print(
        f"{'mean':<12} {mean['auroc']:.3f}  "
        + (f"{mean['auroc_adapted']:.3f}   " if adapted else "")
        + f" {mean['false_alarm_rate']:.3f}    {mean['recall']:.3f}       "
        f"{mean['strings_auroc']:.3f}/{mean['strings_recall']:.3f}          "
        f"{mean['pasted_auroc']:.3f}/{mean['pasted_recall']:.3f}"
    )
    for r in folds:
        if "cross_fitted_rule" in r:
            alone = ", ".join(
                f"{name} {v['threshold']:.3f} (FPR {v['false_alarm_rate']:.3f}, recall {v['recall']:.3f})"
                for name, v in (
                    ("cross-fitted", r["cross_fitted_rule"]),
                    ("validation frames", r["validation_rule"]),
                )
            )
            print(f"  {r['held_out']}: threshold {r['threshold']:.3f}, the higher of {alone}")
    for r in folds:
        pauses = ", ".join(
            f"{k} {'never' if v is None else v}" for k, v in r["frames_to_pause"].items()
        )
        print(
            f"  {r['held_out']}: pauses during the normal print {r['false_pauses']} "
            f"(consecutive={SETTINGS.consecutive}); frames from failure start to pause: {pauses}"
        )
        inscene = ", ".join(
            f"{k} {'never' if v is None else v}" for k, v in r["inscene_frames_to_pause"].items()
        )
        print(
            f"    in-scene (failure material pasted into this print from its frame "
            f"{r['inscene_onset_frame']} on): frames to pause: {inscene}; "
            f"frames above threshold {r['inscene_recall']:.2f}"
        )
        light = ", ".join(
            f"{k} {v['above']:.2f} above, pause {'never' if v['frames_to_pause'] is None else v['frames_to_pause']}"
            for k, v in r["lighting"].items()
        )
        print(f"    the room's light changed from frame {LIGHT_ONSET} on: {light}")
        if r.get("first_minutes"):
            fm = r["first_minutes"]
            for which in ("with_guard", "without_guard"):
                w = fm[which]
                print(
                    f"    first minutes {which.replace('_', ' ')} (guard {fm['guard']:.3f}): normal print paused "
                    f"{w['normal_pauses']} times; failed prints from their first frame, frames to pause: "
                    + ", ".join(f"{k} {_pause(v)}" for k, v in w["failed_frames_to_pause"].items())
                )
        if r.get("failing_from_start"):
            own = ", ".join(
                f"{k} {v['above']:.2f} above, pause {'never' if v['frames_to_pause'] is None else v['frames_to_pause']}"
                for k, v in r["failing_from_start"].items()
            )
            print(
                f"    failed prints calibrated on their own (already failing) first frames: {own}"
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, default=KAGGLE, help="Kaggle-layout folder (default: %(default)s)"
    )
    p.add_argument(
        "--seed-epochs", type=int, default=3, help="epochs for the seed preset (its own: 125)"
    )
    p.add_argument("--skip-seed", action="store_true", help="leave the slow seed preset out")
    p.add_argument(
        "--target-fpr",
        type=float,
        default=0.01,
        help="per-frame false-alarm rate the threshold aims at",
    )
    p.add_argument(
        "--control",
        action="store_true",
        help="also run the scene-change control for adaptation (3 more fits on one print each)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--seeds",
        type=lambda v: [int(x) for x in v.split(",") if x],
        help="training runs, one per seed (e.g. 0,1,2): the shipped preset's figures per run and "
        "their spread; implies --default-only",
    )
    p.add_argument(
        "--default-only",
        action="store_true",
        help="only the shipped preset: no baseline variants, PCA or seed preset",
    )
    p.add_argument(
        "--scoring-topk",
        type=float,
        help="score the shipped preset with this top-k fraction instead of its own (an experiment)",
    )
    p.add_argument(
        "--scoring-window",
        type=int,
        help="score the mean of each pixel's square of this many pixels (an experiment)",
    )
    p.add_argument(
        "--std-floor",
        type=float,
        help="adapt with this std_floor quantile instead of the preset's own (an experiment)",
    )
    p.add_argument(
        "--nearest",
        type=int,
        help="adapt against this many nearest calibration frames instead of the preset's (an experiment)",
    )
    p.add_argument(
        "--pixel-spread",
        choices=["on", "off"],
        help="divide the change by each pixel's spread, or not (an experiment)",
    )
    p.add_argument(
        "--print-scale",
        choices=["on", "off"],
        help="scale adapted scores by the print's own typical one, or not (an experiment)",
    )
    p.add_argument(
        "--clipped-light",
        choices=["on", "off"],
        help="leave pixels at white out of the light fit and show still ones as the print's "
        "look, or not (an experiment)",
    )
    p.add_argument(
        "--order",
        choices=["file", "growth"],
        default="file",
        help="replay each good print in file-number order, or as its part grows (fewest "
        "filament pixels first): its first frames a bare bed or a first layer (an experiment)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        help="train the shipped preset at most this many epochs (an experiment; the seed "
        "preset's are --seed-epochs)",
    )
    p.add_argument("--batch-size", type=int, help="train with this batch size (an experiment)")
    p.add_argument(
        "--region",
        type=region,
        help="watch x0,y0,x1,y1 (0..1 of the frame) instead of the preset's region: every "
        "model of the run is fitted, calibrated and judged on it (an experiment)",
    )
    p.add_argument(
        "--patience",
        type=int,
        help="stop after this many epochs without progress, 0: never early (an experiment)",
    )
    p.add_argument(
        "--denoise",
        type=float,
        help="paste foreign material on this share of training frames, the target the clean "
        "frame (an experiment)",
    )
    p.add_argument(
        "--synthetic-parts",
        type=float,
        help="draw clean parts of other shapes and colours on this share of training frames "
        "(an experiment)",
    )
    p.add_argument("--json", type=Path, help="also write all figures to this JSON file")
    args = p.parse_args(argv)
    training = {
        k: v
        for k, v in (
            ("epochs", args.epochs),
            ("batch_size", args.batch_size),
            ("patience", args.patience),
            ("denoise", args.denoise),
            ("synthetic_parts", args.synthetic_parts),
        )
        if v is not None
    }
    from trainer.model import get_preset  # no TensorFlow: checks the training values at once

    try:
        train = dataclasses.replace(get_preset("default").train, **training)
    except ValueError as exc:
        p.error(str(exc))
    try:
        watched = dataclasses.replace(
            get_preset("default").preprocess, roi=args.region or (0, 0, 1, 1)
        )
    except ValueError as exc:
        p.error(f"--region: {exc}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    if not (args.data / "no_defected").is_dir() or not (args.data / "defected").is_dir():
        print(f"skipped: no Kaggle data at {args.data} (needs no_defected/ and defected/)")
        return 0
    try:
        import keras
        import tensorflow as tf
    except ImportError as exc:  # tensorflow missing
        print(f"skipped: the trainer needs the 'train' extra ({exc})")
        return 0

    tf.config.threading.set_inter_op_parallelism_threads(1)
    started = time.perf_counter()
    seeds = args.seeds or [args.seed]
    only_default = args.default_only or args.seeds is not None
    args.seed = seeds[0]
    keras.utils.set_random_seed(args.seed)

    default = get_preset("default")
    scored = {k: v for k, v in (("topk", args.scoring_topk), ("window", args.scoring_window)) if v}
    if scored:  # a scoring variant: every figure, threshold included
        try:
            default = dataclasses.replace(
                default, scoring=dataclasses.replace(default.scoring, **scored)
            )
        except ValueError as exc:
            p.error(str(exc))
    # the flags' training (or the preset's own): every model of the run is fitted this way
    default = dataclasses.replace(default, train=train)
    if args.region is not None:  # another watched region: every frame is cut to it
        default = dataclasses.replace(default, preprocess=watched)
    switches = {"on": True, "off": False, None: None}
    changes = {
        k: v
        for k, v in (
            ("std_floor", args.std_floor),
            ("nearest", args.nearest),
            ("pixel_spread", switches[args.pixel_spread]),
            ("print_scale", switches[args.print_scale]),
            ("clipped_light", switches[args.clipped_light]),
        )
        if v is not None
    }
    if changes:  # an adaptation variant: calibrated and judged like the shipped one
        try:
            default = dataclasses.replace(
                default, adaptation=dataclasses.replace(default.adaptation, **changes)
            )
        except ValueError as exc:
            p.error(str(exc))
    adaptation = getattr(default, "adaptation", Adaptation())
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "data": shown(args.data),
        "target_fpr": args.target_fpr,
        # what was scored: the experiments' tables name their rows by it
        "variant": {
            "topk": default.scoring.topk,
            "window": default.scoring.window,
            "std_floor": adaptation.std_floor,
            "nearest": adaptation.nearest,
            "pixel_spread": adaptation.pixel_spread,
            "print_scale": adaptation.print_scale,
            "start_light": adaptation.start_light,
            "clipped_light": adaptation.clipped_light,
            "epochs": default.train.epochs,
            "batch_size": default.train.batch_size,
            "patience": default.train.patience,
            "denoise": default.train.denoise,
            "synthetic_parts": default.train.synthetic_parts,
            "threshold_rule": THRESHOLD_RULE,
            "order": args.order,
            "region": list(default.preprocess.roi),
        },
        "methods": {},
    }

    def add(name: str, note: str, folds: list[dict[str, Any]]) -> None:
        report["methods"][name] = {"note": note, "folds": folds}
        print_table(name, note, folds)
        if args.json:  # after every method: a long run cut short keeps what it measured
            args.json.write_text(json.dumps(report, indent=2, default=float) + "\n")

    def dataset(pre: Preprocess) -> tuple[dict[str, np.ndarray], list[str]]:
        data = load_dataset(args.data, pre)
        sessions = [k for k in data if k != "defects"]
        if args.order == "growth":  # fitted, calibrated and judged in that order
            for s in sessions:
                data[s] = data[s][growth_order(data[s])]
        for s in sessions:  # the in-scene checks: strings, pasted failures on the later frames
            data["strings_" + s] = synthetic_strings(
                data[s][max(adaptation.frames, 30) :], MATERIAL_SEED
            )
            data["pasted_" + s] = pasted_failures(
                data[s][max(adaptation.frames, 30) :], data["defects"], MATERIAL_SEED
            )
            inscene_sequences(data, s, max(adaptation.frames, 30) + INSCENE_ONSET, MATERIAL_SEED)
            start_sequences(data, s, max(adaptation.frames, START_ONSET + 1), MATERIAL_SEED)
        return data, sessions

    data, sessions = dataset(default.preprocess)
    print(
        f"data: {args.data}; normal sessions {', '.join(f'{s} ({len(data[s])})' for s in sessions)}; "
        f"defects {len(data['defects'])}; input {default.preprocess.width}x{default.preprocess.height} "
        f"roi {list(default.preprocess.roi)}"
    )
    note = (
        f"preset default, {default.train.epochs} epochs max, scoring {default.scoring}, "
        f"adaptation {adaptation}"
    )
    if args.seeds is not None:  # training-run variance: the shipped preset, once per seed
        report["runs"] = {}
        # on the same models, the start judged on its frames as the camera gave them: what
        # matching the start's light to its first frames changes
        unmatched = dataclasses.replace(adaptation, start_light=False)
        paired = [adaptation, unmatched] if adaptation.start_light else [adaptation]
        if args.clipped_light is not None:  # or, asked for, the other way of handling white
            other = dataclasses.replace(adaptation, clipped_light=not adaptation.clipped_light)
            paired = [adaptation, other]
        for seed in seeds:
            args.seed = seed
            keras.utils.set_random_seed(seed)
            folds, *others = run_autoencoder(default, data, sessions, args, paired)
            report["runs"][str(seed)] = folds
            if others and args.clipped_light is not None:
                report.setdefault("clipped_light_other", {})[str(seed)] = others[0]
                report["summary_clipped_light_other"] = summarize(report["clipped_light_other"])
            elif others:
                report.setdefault("start_light_off", {})[str(seed)] = [
                    {"held_out": f["held_out"], **start_only(f)} for f in others[0]
                ]
            print_table(f"default, seed {seed}", note, folds)
            report["summary"] = summarize(report["runs"])
            if "start_light_off" in report:
                report["summary_start_light_off"] = summarize_starts(report["start_light_off"])
            report["seconds"] = round(time.perf_counter() - started)
            if args.json:  # after every run: a long benchmark stopped early keeps what it measured
                args.json.write_text(json.dumps(report, indent=2) + "\n")
        print_summary(report["summary"])
        return 0

    # on the same models: the shipped adaptation, then without its nearest-frames baseline, then
    # also without light matching (the default before 2026-11-24 07:00)
    variants = {"default": adaptation}
    if adaptation.enabled and not only_default:
        # the mean of all calibration frames: no nearest frames, so no print scale either
        variants["default-mean-baseline"] = dataclasses.replace(
            adaptation, nearest=0, print_scale=False
        )
        variants["default-mean-baseline-no-match-light"] = dataclasses.replace(
            adaptation.without_light_matching(), nearest=0, print_scale=False
        )
    specs = list(variants.values())
    for (name, spec), folds in zip(
        variants.items(), run_autoencoder(default, data, sessions, args, specs), strict=True
    ):
        add(
            name,
            f"preset default, {default.train.epochs} epochs max, scoring {default.scoring}, "
            f"adaptation {spec}",
            folds,
        )
    if only_default:
        report["seconds"] = round(time.perf_counter() - started)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
        return 0

    add(
        "pca-seed-scoring",
        "PCA 50 components on the default preprocessing, whole-image MSE, no adaptation",
        run_pca(data, sessions, Scoring("l2", "mean"), Adaptation(), args),
    )
    if adaptation.enabled:
        add(
            "pca-default-scoring",
            "PCA 50 components, the default preset's scoring and adaptation",
            run_pca(data, sessions, default.scoring, adaptation, args),
        )

    if args.control and adaptation.enabled:
        rows = run_control(default, data, sessions, args)
        report["control"] = rows
        print_control(rows)

    if not args.skip_seed:
        seed = get_preset("seed")
        seed = dataclasses.replace(
            seed, train=dataclasses.replace(seed.train, epochs=args.seed_epochs)
        )
        del data
        seed_data, _ = dataset(seed.preprocess)
        add(
            "seed",
            f"preset seed, {args.seed_epochs} epochs (its own: 125), scoring {seed.scoring}, no adaptation",
            run_autoencoder(seed, seed_data, sessions, args)[0],
        )

    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
