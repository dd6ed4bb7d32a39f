"""One training run, top to bottom: load → split → build → fit → score → threshold → export.

``run(Options(...)) -> RunResult`` is the library entry point; ``python -m trainer`` is a thin
CLI over it. Benchmarks call the same steps (``trainer.data``, ``trainer.model``,
``trainer.train``, ``trainer.evaluate``, ``trainer.calibrate``, ``trainer.export``).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from trainer import calibrate, crossfit, evaluate, export, heldout, plots, report
from trainer.data import (
    NORMAL,
    DataError,
    Frame,
    Loaded,
    Split,
    find_frames,
    load_frames,
    mixed_sizes,
    split_frames,
    to_float,
    without_loose_of_held_out,
)
from trainer.model import Preset, build_autoencoder, compile_autoencoder, get_preset
from trainer.train import fit
from watchdog import __version__
from watchdog import frames as frames_contract
from watchdog.detection import calibration, light
from watchdog.detection.bundle import (
    Adaptation,
    Bundle,
    BundleMeta,
    Scoring,
    baseline_memory_refusal,
)
from watchdog.detection.detector import calibration_start
from watchdog.storage_lock import nearest_existing, why_unwritable

logger = logging.getLogger(__name__)


@dataclass
class Options:
    """Everything ``python -m trainer`` takes; ``preset`` may be a name or a Preset object."""

    out: Path = Path("runs")
    data: Path | None = None
    normal: list[Path] = field(default_factory=list)
    anomalous: list[Path] = field(default_factory=list)
    preset: str | Preset = "default"
    epochs: int | None = None
    batch_size: int | None = None
    patience: int | None = None  # epochs without progress before stopping; 0: never stop early
    augment: bool | None = None
    input_size: tuple[int, int] | None = None  # (width, height): override the preset's input size
    region: tuple[float, float, float, float] | None = (
        None  # x0, y0, x1, y1 (0..1): the watched region
    )
    adapt_frames: int | None = None  # override the preset's per-print calibration frames (0: off)
    # override the start's frames the rest of it is judged against (0: the start is learnt only)
    adapt_early_frames: int | None = None
    normalize: bool | None = (
        None  # override the preset's per-frame brightness/contrast normalisation
    )
    match_light: bool | None = None  # override the preset's light matching to each print's start
    adapt_nearest: int | None = (
        None  # override the preset's nearest calibration frames per baseline
    )
    adapt_calibration: str = (
        "cross"  # adapted threshold: "cross" (models that never saw the print) or "validation"
    )
    split: str = "all"  # "all": the model to deploy; "session" / "random": evaluation splits
    val_sessions: list[str] = field(default_factory=list)
    test_sessions: list[str] = field(default_factory=list)
    session_pattern: str = r"^(?P<session>.+)_\d+$"
    contamination: float = 0.0
    seed: int = 0
    target_fpr: float = 0.01
    threshold_quantile: float | None = None  # the seed's rule, e.g. 0.98 of held-out normal scores
    use_f1_threshold: bool = False
    quantize: str = (
        "float32"  # the bundle's model: float32, float16 or int8 (float32 always exported)
    )
    plots: bool = True
    verbose: int | None = None  # None: one progress line per fit on a terminal; 0: none


@dataclass
class RunResult:
    """Where the run wrote its outputs and what it measured."""

    run_dir: Path
    bundle_dir: Path
    report: dict[str, Any]


def resolve_preset(options: Options) -> Preset:
    """The preset with the command-line overrides applied."""
    try:
        preset = (
            options.preset if isinstance(options.preset, Preset) else get_preset(options.preset)
        )
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    preset = _adaptation_overrides(
        _preprocess_overrides(_train_overrides(preset, options), options), options
    )
    factor = preset.model.stride ** len(preset.model.filters)
    if preset.preprocess.width % factor or preset.preprocess.height % factor:
        raise DataError(
            f"input size {preset.preprocess.width}x{preset.preprocess.height} must be divisible by "
            f"{factor} (stride ** conv layers of preset {preset.name!r})"
        )
    return preset


def _train_overrides(preset: Preset, options: Options) -> Preset:
    """--epochs, --batch-size, --patience, --augment."""
    changes: dict[str, Any] = {}
    if options.epochs is not None:
        changes["epochs"] = options.epochs
    if options.batch_size is not None:
        changes["batch_size"] = options.batch_size
    if options.patience is not None:
        changes["patience"] = options.patience
    if options.augment is not None:
        changes["augment"] = options.augment
    if not changes:
        return preset
    try:  # TrainSpec checks the values, in the flags' words
        train = dataclasses.replace(preset.train, **changes)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    return dataclasses.replace(preset, train=train)


def _preprocess_overrides(preset: Preset, options: Options) -> Preset:
    """--input-size, --region, --normalize."""
    if options.input_size is not None:
        w, h = options.input_size
        try:
            pre = dataclasses.replace(preset.preprocess, width=w, height=h)
        except ValueError as exc:
            raise DataError(f"--input-size {w}x{h}: {exc}") from exc
        preset = dataclasses.replace(preset, preprocess=pre)
    if options.region is not None:
        try:
            x0, y0, x1, y1 = (float(v) for v in options.region)
            pre = dataclasses.replace(preset.preprocess, roi=(x0, y0, x1, y1))
        except ValueError as exc:
            raise DataError(
                f"--region {','.join(f'{v:g}' for v in options.region)}: {exc}"
            ) from exc
        preset = dataclasses.replace(preset, preprocess=pre)
    if options.normalize is not None:
        preset = dataclasses.replace(
            preset, preprocess=dataclasses.replace(preset.preprocess, normalize=options.normalize)
        )
    return preset


def _adaptation_overrides(preset: Preset, options: Options) -> Preset:
    """--match-light, --adapt-frames, --adapt-early-frames, --adapt-nearest."""
    if options.match_light is not None:
        # the start's later frames are matched to its first frames' light, and white pixels
        # the light explains are handled, whenever later frames are matched to the start's
        light = options.match_light
        preset = dataclasses.replace(
            preset,
            adaptation=dataclasses.replace(
                preset.adaptation, match_light=light, start_light=light, clipped_light=light
            ),
        )
    if options.adapt_frames is not None:
        if options.adapt_frames < 0 or options.adapt_frames == 1:
            raise DataError(
                f"--adapt-frames {options.adapt_frames}: must be 0 (each frame judged on its "
                "own) or at least 2 (a print's start needs 2 frames to learn from)"
            )
        old = preset.adaptation
        try:
            adaptation = dataclasses.replace(
                old,
                frames=options.adapt_frames,
                threshold=0.0,
                nearest=min(old.nearest, options.adapt_frames),
                early_frames=judged_start(old.early_frames, options.adapt_frames),
                early_threshold=0.0,
            )
        except ValueError as exc:
            raise DataError(f"--adapt-frames {options.adapt_frames}: {exc}") from None
        preset = dataclasses.replace(preset, adaptation=adaptation)
    if options.adapt_early_frames is not None:
        early, frames = options.adapt_early_frames, preset.adaptation.frames
        if early and not frames:
            raise DataError(
                f"--adapt-early-frames {early}: this preset judges each frame on its own (no "
                "print's start is learnt): give --adapt-frames too"
            )
        if early and not 2 <= early < frames:
            raise DataError(
                f"--adapt-early-frames {early}: must be 0 (learn a print's start without judging "
                f"it) or from 2 to {frames - 1}, fewer than the start's {frames} frames "
                "(--adapt-frames)"
            )
        preset = dataclasses.replace(
            preset, adaptation=dataclasses.replace(preset.adaptation, early_frames=early)
        )
    if options.adapt_nearest is not None:
        try:
            adaptation = dataclasses.replace(preset.adaptation, nearest=options.adapt_nearest)
        except ValueError as exc:
            raise DataError(f"--adapt-nearest {options.adapt_nearest}: {exc}") from exc
        preset = dataclasses.replace(preset, adaptation=adaptation)
    too_much = baseline_memory_refusal(preset.preprocess, preset.adaptation)
    if too_much:  # said now, not after the training when the bundle would be refused
        raise DataError(f"--adapt-frames: {too_much}")
    return preset


def _normal_test_frames(has_test_prints: bool, split: str) -> str:
    """What the absolute figures' normal frames are, in the report's words: held-out prints;
    a random split's frames held out of prints whose neighbouring frames were fitted; or (a
    model fitted on every print) the last frames of fitted prints. The last two flatter it."""
    if has_test_prints:
        return "held-out prints"
    if split == "random":
        return "frames held out at random from fitted prints, optimistic"
    return "fitted prints' last frames, optimistic"


def judged_start(early_frames: int, frames: int) -> int:
    """How many of a start of ``frames`` frames the rest is judged against: the same
    ``early_frames`` while they leave frames to judge, else none (fewer frames were measured
    to flag good starts, docs/decisions/start-judgement.md)."""
    return early_frames if early_frames < frames else 0


F1_NEEDS = "--use-f1-threshold needs anomalous test frames (--anomalous or defected/)"


def _say_split(options: Options, split: Split) -> None:
    """The split's notes, and what it cannot give: said before an hour of training."""
    if options.use_f1_threshold and not split.test_anomalous:
        raise DataError(F1_NEEDS)
    for note in split.notes:  # the model to deploy is meant to fit everything: no warning for that
        logger.log(logging.INFO if options.split == "all" else logging.WARNING, "%s", note)


def _held_out_false_alarms_left_out(
    fit_set: Loaded, val_set: Loaded, test_n: Loaded, split: Split
) -> Loaded:
    """The fit without the kept false alarms of held-out prints (``without_loose_of_held_out``),
    said in the split's notes."""
    fit_set, went = without_loose_of_held_out(fit_set, test_n, val_set)
    if went:
        per_print = ", ".join(f"{n} nearest to {name}" for name, n in sorted(went.items()))
        split.notes.append(
            f"of those loose frames, {sum(went.values())} kept false alarm(s) look most like a "
            f"held-out print's frames ({per_print}): left out of the fit, so that no held-out "
            "print is judged by a model that fitted its hardest moment"
        )
        logger.warning("%s", split.notes[-1])
    return fit_set


# what a run may write: checkpoints, the Keras model, the bundle, the report and its plots
# (7 MB measured for the default preset), with room to spare
RUN_BYTES = 64 * 2**20


def _check_out(out: Path) -> None:
    """``--out`` is, or can be made, a folder this user writes in, on a disk with room for a
    run: said before the frames are loaded and the model fitted, not after (and nothing is
    made before the run's checks). A disk that filled during the fit ended in the HDF5
    library's tracebacks and a crash, the run folder left with cut files."""
    if (why := why_unwritable(Path(out))) is not None:
        raise DataError(f"--out {out}: {why}")
    free = shutil.disk_usage(nearest_existing(Path(out))).free
    if free < RUN_BYTES:
        raise DataError(
            f"--out {out}: {free / 2**20:.1f} MB free on its disk; a training run writes up "
            f"to about {RUN_BYTES // 2**20} MB (model, checkpoints, bundle, plots): free some "
            "space or give another folder"
        )


def _run_dir(out: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = Path(out) / stamp
    n = 1
    while path.exists():
        n += 1
        path = Path(out) / f"{stamp}-{n}"
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise DataError(f"--out {out}: cannot make {path.name} ({exc.strerror or exc})") from None
    return path


def _check_options(o: Options) -> None:
    if not 0.0 <= o.contamination < 1.0:
        raise DataError(f"--contamination must be in [0, 1), got {o.contamination}")
    if not 0.0 <= o.target_fpr < 1.0:
        raise DataError(f"--target-fpr must be in [0, 1), got {o.target_fpr}")
    if o.threshold_quantile is not None and not 0.0 < o.threshold_quantile < 1.0:
        raise DataError(f"--threshold-quantile must be in (0, 1), got {o.threshold_quantile}")
    if o.quantize not in export.QUANTIZATIONS:
        raise DataError(
            f"--quantize must be one of {', '.join(export.QUANTIZATIONS)}, got {o.quantize!r}"
        )


def run(options: Options) -> RunResult:
    """Train, evaluate and export one model; see the module docstring for the steps."""
    _check_options(options)
    _check_out(options.out)
    preset = resolve_preset(options)
    pre, scoring = preset.preprocess, preset.scoring

    # 1. load and split (by print session)
    frames = find_frames(options.data, options.normal, options.anomalous, options.session_pattern)
    split = split_frames(
        frames,
        options.split,
        options.val_sessions,
        options.test_sessions,
        contamination=options.contamination,
        seed=options.seed,
    )
    _say_split(options, split)
    logger.info("loading %d frames at %dx%d", len(frames), pre.width, pre.height)
    fit_set = load_frames(split.fit + split.contamination, pre)
    val_set = load_frames(split.val, pre)
    test_n = load_frames(split.test_normal, pre)
    has_test_prints = (
        split.protocol == "session" and len(test_n.x) > 0
    )  # whole prints no model fitted
    if has_test_prints:
        fit_set = _held_out_false_alarms_left_out(fit_set, val_set, test_n, split)
    test_a = load_frames(split.test_anomalous, pre)
    skipped = fit_set.skipped + val_set.skipped + test_n.skipped + test_a.skipped
    for line in mixed_sizes((fit_set, val_set, test_n)):
        split.notes.append(line)
        logger.warning("%s", line)
    if len(fit_set.x) == 0 or len(val_set.x) == 0:
        raise DataError("no readable frames left to fit or validate on (all skipped)")
    if len(test_n.x) == 0:  # all sessions fit or validate (a final model): measure on validation
        test_n = val_set
        if options.split != "all":  # "all" said so already
            split.notes.append(
                "no normal test session: normal test metrics are on the validation session, which also "
                "chose the threshold and the early stop (slightly optimistic)"
            )
            logger.warning("%s", split.notes[-1])
        split.sessions["test"] = [f"{s} (validation)" for s in split.sessions["val"]]
    # 2. build (refused before a run folder is made if no daemon could load it) and fit
    model = build_autoencoder(preset.model, pre.shape, options.seed)
    export.check_runs_in_the_daemon(model)
    run_dir = _run_dir(options.out)
    logger.info("run folder %s", run_dir)
    compile_autoencoder(model, preset.train)
    label = "the model to deploy" if options.split == "all" else "the model"
    fitted = fit(
        model,
        fit_set.x,
        val_set.x,
        preset.train,
        run_dir / "best.weights.h5",
        options.seed,
        options.verbose,
        label=label,
    )
    model.save(run_dir / "model.keras")

    # 3. score with the shared scoring code and choose the threshold on held-out normal frames
    recon = evaluate.keras_reconstructor(model)
    bs = preset.train.batch_size
    val_scored = evaluate.score_frames(recon, val_set.x, scoring, bs, seed=options.seed)
    tn_scores = evaluate.score_frames(recon, test_n.x, scoring, bs).scores
    ta_scores = evaluate.score_frames(recon, test_a.x, scoring, bs).scores
    f1 = (
        calibrate.f1_best_threshold(tn_scores, ta_scores)
        if len(tn_scores) and len(ta_scores)
        else None
    )
    threshold, rule = _choose_threshold(
        options, val_scored.scores, f1, _threshold_frames(options, split)
    )
    stats = calibrate.normal_stats(val_scored.scores, val_scored.pixel_sample)
    metrics = evaluate.image_metrics(tn_scores, ta_scores, threshold)
    # what the absolute figures' normal frames are: held-out prints, or (a model fitted on
    # every print) the last frames of fitted prints, which flatter it
    test_normal_from = _normal_test_frames(has_test_prints, options.split)
    review = _seed_review(
        model, scoring, fit_set, split.contamination, tn_scores, ta_scores, bs, test_normal_from
    )

    adaptation, adaptation_rule, crossfitted = _adaptation(
        preset, recon, [fit_set, val_set], options, bs
    )
    judgement, replays = _daemon_judgement(
        preset,
        adaptation,
        adaptation_rule,
        threshold,
        recon,
        test_n,
        test_a,
        crossfitted,
        has_test_prints,
        options,
    )
    judgement["unseen"] = _unseen(preset, adaptation, crossfitted, options, has_test_prints)
    judgement["model"] = "float32"  # which model the replays went through

    # 4. export float32, check parity through the daemon's FrameScorer, then the chosen variant
    meta = BundleMeta(
        preprocess=pre,
        scoring=scoring,
        threshold=threshold,
        normal_stats=stats,
        input_shape=(1, *pre.shape),
        output_shape=(1, *pre.shape),
        trainer_version=__version__,
        data=_data_summary(options, split, fit_set, val_set, test_n, test_a, skipped),
        extra={
            "preset": preset.name,
            "threshold_rule": rule,
            "model": dataclasses.asdict(preset.model),
            **({"adaptation_rule": adaptation_rule} if adaptation.enabled else {}),
        },
        adaptation=adaptation,
    )
    f32_dir = run_dir / ("bundle" if options.quantize == "float32" else "bundle-float32")
    bundle = export.write_bundle(export.convert(model), f32_dir, meta)
    parity_paths = [f.path for f in (val_set.frames[:3] + test_a.frames[:2])]
    try:
        parity = export.parity_check(bundle, model, parity_paths)
    except export.ParityError as exc:
        # a bundle whose TFLite model does not score as the fitted one is no bundle to deploy:
        # renamed so that no folder called bundle/ is left looking ready
        failed = f32_dir.rename(f32_dir.with_name(f"{f32_dir.name}-failed-parity"))
        raise export.ParityError(f"{exc} (the export is kept as {failed})") from exc
    quant: dict[str, dict[str, Any]] = {
        "float32": {"size_bytes": bundle.model_path.stat().st_size, **metrics}
    }
    plotted = (threshold, stats.heatmap_scale)  # the figures show the float32 model's scores
    val_false_alarms = float(np.mean(val_scored.scores > threshold))
    if options.quantize != "float32":
        bundle, quant[options.quantize] = _export_quantized(
            model, options, meta, fit_set, val_set, test_n, test_a, run_dir / "bundle", bs
        )
        # the report's headline numbers describe the shipped model, with its own thresholds
        quant["float32"]["threshold"] = threshold
        threshold, stats = bundle.meta.threshold, bundle.meta.normal_stats
        val_false_alarms = quant[options.quantize].pop("val_false_alarm_rate")
        metrics = {k: quant[options.quantize][k] for k in metrics}
        judgement, replays = _quantized_judgement(
            bundle,
            preset,
            # the rule that names the thresholds the quantized model ships, not the float32 ones
            bundle.meta.extra.get("adaptation_rule", adaptation_rule),
            test_n,
            test_a,
            has_test_prints,
            options,
            (judgement, replays),
        )

    # 5. figures and report
    if options.plots:
        _plots(
            run_dir,
            model,
            scoring,
            fitted.history,
            val_set,
            test_n,
            test_a,
            tn_scores,
            ta_scores,
            *plotted,
        )
        plots.replay_plot(replays, run_dir / "replay.png")
    rep = report.build(
        protocol=split.protocol,
        sessions=split.sessions,
        notes=split.notes,
        preset=preset,
        n_train=len(fit_set.x),
        n_val=len(val_set.x),
        n_test_normal=len(test_n.x),
        n_test_anomalous=len(test_a.x),
        n_contamination=len(split.contamination),
        metrics=metrics,
        threshold=threshold,
        threshold_rule=rule,
        target_fpr=options.target_fpr,
        val_false_alarm_rate=val_false_alarms,
        f1_best=f1,
        seed_review=review,
        fitted=fitted,
        skipped=skipped,
        parity=parity,
        quantization=quant,
        bundle_quantization=options.quantize,
        normal_stats=stats,
        daemon=judgement,
        test_normal_from=test_normal_from,
    )
    report.write(rep, run_dir)
    d = judgement
    unseen = d.get("unseen")
    logger.info(
        "done: %s; on %d held-out print(s) the daemon would flag %s of failure frames and %s of normal "
        "frames, pausing %d of %d failures and %d of %d good prints%s (report.md)",
        run_dir,
        d["held_out_prints"],
        _pct(d["recall"]),
        _pct(d["false_alarm_rate"]),
        d["failures_paused"],
        d["failures_replayed"],
        d["normal_prints_paused"],
        d["held_out_prints"],
        ""
        if not unseen
        else f"; a new print's good frames, each print judged with the threshold the others "
        f"set: {_pct(unseen['false_alarm_rate'])} flagged, {unseen['normal_prints_paused']} of "
        f"{unseen['prints']} paused",
    )
    return RunResult(run_dir, bundle.path, rep)


def _adaptation(
    preset: Preset, recon: Any, sets: list[Loaded], options: Options, bs: int
) -> tuple[Adaptation, str, list[crossfit.HeldOut]]:
    """The preset's per-print adaptation with its threshold set on the normal prints seen, and
    those prints as models that never fitted them score them (empty without a cross-fit).

    Each print is replayed in frame-number order through ``watchdog.detection`` exactly as the
    daemon will (the quality benchmark calibrates the same way). With two prints or more the
    threshold is the higher of the cross-fitted one (``trainer.crossfit``) and the one the
    validation frames of the fitted model give (``crossfit.shipped_threshold``); otherwise, or
    with ``adapt_calibration="validation"``, it is the validation frames' alone. An adaptation
    that cannot be calibrated is off, and its rule says why (for the report's headline).
    """
    if not preset.adaptation.enabled:
        return preset.adaptation, "", []
    prints = crossfit.print_frames(sets)
    # a print's parts after a resume are near-copies of it: they count as one print
    whole = len({frames_contract.print_of(name) for name in prints})
    fpr = f"{options.target_fpr:g} of frames above"
    try:
        own, judged = _validation_adaptation(
            preset.adaptation, preset.scoring, recon, sets, options.target_fpr, bs
        )
    except ValueError as exc:  # no normal print longer than the calibration frames
        why = (
            f"it could not be calibrated ({exc}): record good prints longer than its "
            f"{preset.adaptation.frames} calibration frames (--adapt-frames), or this bundle "
            "judges every frame by the absolute score alone, which misses most failures on a "
            "print it never saw"
        )
        logger.warning("per-print adaptation off: %s", why)
        return Adaptation(), why, []
    fitted: tuple[Adaptation, str, list[crossfit.HeldOut]] = (
        own,
        f"validation frames of the fitted prints ({judged} frames after their starts); {fpr}"
        + calibration.few_frames(judged, options.target_fpr)
        + _start_rule(own, fitted=True),
        [],
    )
    if options.adapt_calibration != "cross" or whole < 2:
        return fitted
    try:
        models = crossfit.crossfit_models(preset, prints, options.seed, verbose=options.verbose)
        held = crossfit.held_out(preset, prints, models)
        cross = crossfit.calibrate_on(preset, held, options.target_fpr)
    except ValueError as exc:  # no held-out print longer than the calibration frames
        logger.warning("threshold from the validation frames only (no cross-fit: %s)", exc)
        return fitted
    crossed = cross.adaptation
    result = dataclasses.replace(
        crossed,
        threshold=crossfit.shipped_threshold(crossed.threshold, own.threshold),
        early_threshold=crossfit.shipped_threshold(crossed.early_threshold, own.early_threshold),
    )
    logger.info(
        "per-print adaptation shipped: threshold %.4g%s",
        result.threshold,
        f", the start's {result.early_threshold:.4g}" if result.judges_start else "",
    )
    left_out = (
        f" ({whole - cross.prints} more left out: no frame after their first "
        f"{preset.adaptation.frames}, or a picture that never moved)"
        if whole > cross.prints
        else ""
    )
    rule = (
        f"cross-fitted: {cross.prints} prints{left_out} each scored by a model fitted without "
        f"it ({crossed.threshold:.6g}), or the fitted model's validation frames "
        f"({own.threshold:.6g}) when higher; {fpr} ({cross.frames} frames after the prints' "
        "starts)"
        + calibration.few_frames(cross.frames, options.target_fpr)
        + _guard_rule(result, cross.prints)
        + _start_rule(result)
    )
    return result, rule, held


def _unseen(
    preset: Preset,
    adaptation: Adaptation,
    held: list[crossfit.HeldOut],
    options: Options,
    has_test_prints: bool,
) -> dict[str, Any] | None:
    """What the report's false alarms cannot say after a cross-fit: the threshold was set on
    the very frames they are counted on (0% by construction where they are fewer than the
    target asks for). Each print is judged here with the thresholds and start guard the other
    prints alone set (cross-fitted; the shipped rule also takes the fitted model's validation
    frames' when higher, but those include this print), as a print no threshold was set on: how often a
    new print's good frames would be flagged, if anything too often. None with fewer than
    two prints, no adaptation, or test prints (which chose no threshold: their false alarms
    are a new print's already)."""
    names = sorted({frames_contract.print_of(h.name) for h in held})
    if len(names) < 2 or not adaptation.enabled or has_test_prints:
        return None
    flagged: list[np.ndarray] = []
    paused = judged = unguarded = 0
    for name in names:
        parts = [h for h in held if frames_contract.print_of(h.name) == name]
        others = [h for h in held if frames_contract.print_of(h.name) != name]
        try:
            cross = crossfit.calibrate_on(preset, others, options.target_fpr).adaptation
        except ValueError:  # the others are too short to set one: this print is not judged
            continue
        # the start's guard and threshold the other prints set too: the shipped ones were set
        # with this print's start among them (never paused by its own guard, by construction)
        spec = dataclasses.replace(
            adaptation,
            threshold=cross.threshold,
            guard=cross.guard,
            early_threshold=cross.early_threshold,
        )
        runs = heldout.replays(parts, {}, spec, preset.scoring, spec.threshold)
        if not runs:
            continue
        judged += 1
        # the others too few to set a guard (3 prints): the shipped one, set with this print's
        # start among them, would never pause it; its start is judged without one, and said
        unguarded += bool(adaptation.guard) and not cross.guard
        flagged += [r.scores > r.threshold for r in runs]
        paused += any(r.first_pause is not None for r in runs)
    if not judged:
        return None
    return {
        "false_alarm_rate": float(np.mean(np.concatenate(flagged))),
        "normal_prints_paused": paused,
        "prints": judged,
        "unguarded": unguarded,
    }


def _start_rule(result: Adaptation, fitted: bool = False) -> str:
    """How the rest of a print's start is judged, for the report (``fitted``: its threshold
    was set on the starts of prints the model fitted, which it reproduces better than a new
    print's, so it is likely low: a good start may be flagged more often than the target)."""
    if not result.judges_start:
        return ""
    where = (
        "on the fitted prints' own starts (frames the model fitted: likely low, a new print's "
        "start may be flagged more often)"
        if fitted
        else "the same way on the normal prints' starts"
    )
    return (
        f"; from frame {result.early_frames + 1} to {result.frames} a print's start is judged "
        f"against its first {result.early_frames} frames"
        + (" (matched to their light)" if result.matches_start_light else "")
        + f", threshold {result.early_threshold:.4g} set {where}"
    )


def _guard_rule(result: Adaptation, prints: int) -> str:
    """How the start guard was set, for the report."""
    if result.guard <= 0:
        why = (
            f"{prints} prints are too few to know how far a good start varies (needs "
            f"{calibration.GUARD_PRINTS})"
            if prints < calibration.GUARD_PRINTS
            else f"the bound the {prints} prints' starts give is beyond any score a frame "
            "reaches (their first frames score high for this model, or differ a lot: more "
            "good prints, or a longer training, bring it within reach)"
        )
        return (
            f"; no start guard: {why}; a print's first {result.frames} frames "
            "are not judged against other prints' starts, so a print that fails from its first "
            "frame is learnt as its normal"
        )
    return (
        f"; start guard {result.guard:.4g}: the 99% prediction bound of a good print's highest "
        f"absolute score in its first {result.frames} frames, from {prints} prints"
    )


def _daemon_judgement(
    preset: Preset,
    adaptation: Adaptation,
    rule: str,
    threshold: float,
    recon: Any,
    test_n: Loaded,
    test_a: Loaded,
    crossfitted: list[crossfit.HeldOut],
    has_test_prints: bool,
    options: Options,
) -> tuple[dict[str, Any], list[heldout.Replay]]:
    """What the daemon would do on prints the exported model (or, after a cross-fit, the model
    that left each print out) never fitted, with the exported thresholds."""
    spec = adaptation
    failures = _failure_prints(test_a)
    held: list[crossfit.HeldOut] = []
    if has_test_prints:
        for name, x in crossfit.print_frames([test_n]).items():
            held.append(
                crossfit.scored(dataclasses.replace(preset, adaptation=spec), name, x, recon)
            )
        note = (
            "the test print(s) were fitted by no model and chose no threshold: an honest estimate "
            "for a new print"
        )
    elif crossfitted:
        held = crossfitted
        note = (
            "each print is scored by a model fitted without it (the cross-fit); the adaptation "
            "threshold is at least the one set on these same frames, so their false-alarm rate is "
            "at most the target by construction, while the failures chose nothing"
        )
    elif options.split == "random":
        note = "random split: no whole print is held out, so nothing can be replayed as the daemon sees it"
    elif options.adapt_calibration != "cross" or not spec.enabled:
        note = (
            "no print was held out of any fit (the per-print thresholds were set without a "
            "cross-fit, or the adaptation is off), so nothing can be replayed as the daemon "
            "sees a new print"
        )
    else:
        note = (
            "no held-out print: record two good prints or more, so that each can be scored by a "
            "model that never saw it"
        )
    runs = heldout.replays(held, failures, spec, preset.scoring, threshold)
    if not runs and held:
        note += f"; every held-out print is shorter than the {spec.frames} calibration frames"
    if not runs:
        logger.warning("report: %s", note)
    summary = heldout.judgement(
        runs, rule if spec.enabled else "absolute threshold (no per-print adaptation)", note
    )
    if not spec.enabled and rule:  # the preset's adaptation could not be calibrated: why
        summary["adaptation_off"] = rule
    summary["start"] = heldout.start_judgement(
        heldout.start_replays(held, failures, spec, preset.scoring)
    )
    if spec.enabled:  # what the daemon shows for these thresholds (``PrintBaseline.gain``)
        summary["shown"] = _shown(threshold, spec)
    return summary, runs


def _shown(threshold: float, spec: Adaptation) -> dict[str, float]:
    """A bundle's thresholds as the report explains the daemon's scale with them."""
    return {
        "threshold": threshold,
        "adapted": spec.threshold,
        "guard": spec.guard,
        "frames": spec.frames,
        "early_threshold": spec.early_threshold if spec.judges_start else 0.0,
    }


def _failure_prints(test_a: Loaded) -> dict[str, np.ndarray]:
    """Known failures per print (frame-number order); loose failure frames together, by name."""
    groups: dict[str, list[tuple[int, str, np.ndarray]]] = {}
    for fr, x in zip(test_a.frames, test_a.x, strict=True):
        key = "failure frames" if fr.loose else fr.session
        groups.setdefault(key, []).append((fr.number, str(fr.path), x))
    return {
        k: np.stack([t[2] for t in sorted(v, key=lambda t: (t[0], t[1]))])
        for k, v in sorted(groups.items())
    }


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _validation_adaptation(
    spec: Adaptation, scoring: Scoring, recon: Any, sets: list[Loaded], target_fpr: float, bs: int
) -> tuple[Adaptation, int]:
    """The threshold on the validation frames (``sets[1]``) of every print, each replayed from
    its start by ``recon`` (the Keras model, or a quantized bundle's), and how many frames
    after the prints' starts set it."""
    maps, masks, inputs, starts, start_inputs = [], [], [], [], []
    k = spec.frames
    for x, from_set in crossfit.prints_by_set(sets).values():  # sets = [fit, val]
        # where the daemon's judged start begins (after a start that heated)
        start = calibration_start(x, k, early=spec.still_first_frames)
        x, from_set = x[start:], from_set[start:]
        inputs.append(light.light_matched(x, spec))
        maps.append(evaluate.error_maps(recon, inputs[-1], scoring, bs))
        masks.append(from_set == 1)  # the threshold uses the validation frames only
        # the start as the daemon judges it (its later frames matched to its first ones' light)
        start_inputs.append(light.start_matched(x[:k], spec))
        starts.append(evaluate.error_maps(recon, start_inputs[-1], scoring, bs))
    result = calibration.calibrate(
        spec,
        scoring,
        maps,
        target_fpr,
        held_out=masks,
        inputs=inputs,
        starts=starts,
        start_inputs=start_inputs,
    )
    judged = sum(int(m[result.frames :].sum()) for m in masks)
    logger.info(
        "per-print adaptation: %d calibration frames, threshold %.4g on %d prints' validation "
        "frames (%d after their starts)",
        result.frames,
        result.threshold,
        len(maps),
        judged,
    )
    return result, judged


def _threshold_frames(options: Options, split: Split) -> str:
    """The normal frames the absolute threshold is set on, as its rule names them: held out
    only where no frame of their prints was fitted. The final model's (``--split all``) are
    the last frames of prints it fitted; a split of too few prints, or a random one, takes a
    random share of the fitted prints' frames, whose neighbouring frames were fitted: both
    flatter it."""
    if options.split == "all":
        return "the last frames of the fitted prints (optimistic)"
    fitted = {f.session for f in split.fit}
    # frames that name no print are each a "session" of their own: split at random
    random = split.protocol.startswith("random") or any(f.loose for f in split.val)
    if random or any(f.session in fitted for f in split.val):
        return "frames left out of the fitted prints (optimistic: their neighbours were fitted)"
    return "held-out normal frames"


def _choose_threshold(
    options: Options, val_scores: np.ndarray, f1: dict | None, normal: str
) -> tuple[float, str]:
    """The absolute threshold and its rule, naming the ``normal`` frames it was set on
    (``_threshold_frames``)."""
    if options.use_f1_threshold:
        if f1 is None:
            raise DataError(F1_NEEDS)
        return max(
            float(f1["threshold"]), 1e-9
        ), "f1-best on test frames (optimistic: chosen on the test set)"
    if options.threshold_quantile is not None:
        q = options.threshold_quantile
        return calibrate.threshold_quantile(
            val_scores, q
        ), f"quantile {q} of the scores of {normal} (seed rule)"
    t = calibrate.threshold_for_fpr(val_scores, options.target_fpr)
    few = calibration.few_frames(len(val_scores), options.target_fpr)
    if few and normal:
        logger.warning("absolute threshold: %s", few.removeprefix("; "))
    return t, f"target false-alarm rate {options.target_fpr} on {normal}{few}"


def _seed_review(
    model: Any,
    scoring: Any,
    fit_set: Loaded,
    contamination: list,
    tn: np.ndarray,
    ta: np.ndarray,
    bs: int,
    test_normal_from: str,
) -> dict[str, Any]:
    """The original blog post's check (the top 2% of scores flagged; how many failures among
    them): with contamination on the training images, as the post did; otherwise on the
    evaluation frames (normal frames from ``test_normal_from``, and the anomalous ones)."""
    if contamination:
        scores = evaluate.score_frames(
            evaluate.keras_reconstructor(model), fit_set.x, scoring, bs
        ).scores
        names = {f.path for f in contamination}
        labels = np.array([f.path in names for f in fit_set.frames])
        out = evaluate.seed_review(scores, labels)
        out["on"] = "training frames incl. contamination (as the blog post reviewed them)"
        return out
    out = evaluate.seed_review(
        np.r_[tn, ta], np.r_[np.zeros(len(tn), bool), np.ones(len(ta), bool)]
    )
    out["on"] = f"test frames (normal from {test_normal_from}, and anomalous)"
    return out


def _first_frame_fingerprints(fitted: list[Frame], split: Split) -> list[str]:
    """The digest of the first frame of each print the model fitted frames of
    (``watchdog.frames.first_fingerprint``), from every frame of it the split holds: that frame
    may have gone to another set (a random split), or not decode (skipped, but ``calibrate``
    names the print by it all the same)."""
    sessions = {f.session for f in fitted if f.label == NORMAL and not f.loose}
    paths: dict[str, list[Frame]] = {}
    for f in split.fit + split.val + split.test_normal:
        if f.session in sessions and f.label == NORMAL and not f.loose:
            paths.setdefault(f.session, []).append(f)
    digests = (
        frames_contract.first_fingerprint(
            f.path for f in sorted(frames, key=lambda f: (f.number, str(f.path)))
        )
        for frames in paths.values()
    )
    return sorted(d for d in digests if d is not None)


def _data_summary(options: Options, split: Split, *sets: Any) -> dict[str, Any]:
    fit_set, val_set, test_n, test_a, skipped = sets
    return {
        "sources": {
            "data": str(options.data) if options.data else None,
            "normal": [str(p) for p in options.normal],
            "anomalous": [str(p) for p in options.anomalous],
        },
        "protocol": split.protocol,
        "sessions": split.sessions,
        "fit_fingerprints": _first_frame_fingerprints(fit_set.frames, split),
        "n_fit": len(fit_set.x),
        "n_val": len(val_set.x),
        "n_test_normal": len(test_n.x),
        "n_test_anomalous": len(test_a.x),
        "n_contamination": len(split.contamination),
        "skipped_files": len(skipped),
    }


def _quantized_adaptation(
    meta: BundleMeta,
    recon: Any,
    float_recon: Any,
    sets: list[Loaded],
    options: Options,
    bs: int,
) -> Adaptation:
    """The per-print thresholds a quantized model ships: the float32 model's, or those its
    own validation frames need when higher (its errors are not the float model's); its start
    guard on its own scale."""
    spec = meta.adaptation
    if not spec.enabled:
        return spec
    try:
        own, _ = _validation_adaptation(spec, meta.scoring, recon, sets, options.target_fpr, bs)
    except ValueError:  # no print longer than the calibration frames: as the float model
        return spec
    # the higher of two estimates, as the float model's own thresholds were chosen (a start
    # not judged keeps its early threshold: calibrate leaves it as it was)
    shipped = dataclasses.replace(
        spec,
        threshold=crossfit.shipped_threshold(spec.threshold, own.threshold),
        early_threshold=crossfit.shipped_threshold(spec.early_threshold, own.early_threshold),
        guard=_quantized_guard(spec, meta.scoring, recon, float_recon, sets, bs),
    )
    logger.info(
        "per-print threshold of the %s model: %.4g (its own validation frames %.4g, the float32 "
        "model's %.4g); start guard %.4g (the float32 model's %.4g)",
        meta.quantization,
        shipped.threshold,
        own.threshold,
        spec.threshold,
        shipped.guard,
        spec.guard,
    )
    return shipped


def _quantized_guard(
    spec: Adaptation, scoring: Scoring, recon: Any, float_recon: Any, sets: list[Loaded], bs: int
) -> float:
    """The start guard on the quantized model's scale. The guard was set on the absolute scores
    of float32 models; where the quantized model scores the same prints' starts higher, the
    guard rises by as much (the highest ratio over the prints), so that its rounding does not
    pause a good start. The ratio is taken on prints the model fitted, where the float32 error
    is smallest: if anything it raises the guard too much, which pauses fewer starts. It never
    falls: a lower one would be sensitivity nobody measured."""
    if spec.guard <= 0:
        return spec.guard
    ratio = 1.0
    for x, _ in crossfit.prints_by_set(sets).values():
        x = x[calibration_start(x, spec.frames, early=spec.still_first_frames) :]
        start = light.start_matched(x[: spec.frames], spec)
        own = scoring.scores(evaluate.error_maps(recon, start, scoring, bs)).max()
        floats = scoring.scores(evaluate.error_maps(float_recon, start, scoring, bs)).max()
        if floats > 0:
            ratio = max(ratio, float(own / floats))
    return calibration.reachable_guard(spec.guard * ratio)


def _export_quantized(
    model: Any,
    options: Options,
    meta: BundleMeta,
    fit_set: Loaded,
    val_set: Loaded,
    test_n: Loaded,
    test_a: Loaded,
    folder: Path,
    bs: int,
) -> tuple[Any, dict[str, Any]]:
    """Export the chosen quantized model, recalibrate its threshold with its own scores."""
    rng = np.random.default_rng(options.seed)
    rep_frames = fit_set.x[rng.permutation(len(fit_set.x))[:100]]
    q_meta = dataclasses.replace(meta, quantization=options.quantize, created="")
    # written aside and renamed when its thresholds are its own: an interrupted or failed
    # recalibration leaves no bundle/ holding the float32 model's thresholds over this model
    partial = folder.with_name(f"{folder.name}.partial")
    bundle = export.write_bundle(
        export.convert(model, options.quantize, rep_frames), partial, q_meta
    )
    recon = export.tflite_reconstructor(bundle)
    val = evaluate.score_frames(recon, val_set.x, meta.scoring, bs, seed=options.seed)
    tn = evaluate.score_frames(recon, test_n.x, meta.scoring, bs).scores
    ta = evaluate.score_frames(recon, test_a.x, meta.scoring, bs).scores
    f1 = calibrate.f1_best_threshold(tn, ta) if len(tn) and len(ta) else None
    threshold, _ = _choose_threshold(options, val.scores, f1, "")  # its rule: the float32's
    bundle.meta.threshold = threshold
    bundle.meta.normal_stats = calibrate.normal_stats(val.scores, val.pixel_sample)
    bundle.meta.adaptation = _quantized_adaptation(
        bundle.meta, recon, evaluate.keras_reconstructor(model), [fit_set, val_set], options, bs
    )
    if "adaptation_rule" in meta.extra:
        shipped = bundle.meta.adaptation
        bundle.meta.extra = {
            **meta.extra,
            "adaptation_rule": f"{meta.extra['adaptation_rule']}; the {options.quantize} model "
            f"ships threshold {shipped.threshold:.4g}, start threshold "
            f"{shipped.early_threshold:.4g} (the float32 model's, or its own validation "
            f"frames' where higher) and start guard {shipped.guard:.4g} (the float32 model's "
            "raised as much as it scores the prints' starts higher)",
        }
    bundle.save_meta()
    partial.rename(folder)
    bundle = Bundle.load(folder)
    metrics = evaluate.image_metrics(tn, ta, threshold)
    return bundle, {
        "size_bytes": bundle.model_path.stat().st_size,
        "threshold": threshold,
        "val_false_alarm_rate": float(np.mean(val.scores > threshold)),
        **metrics,
    }


def _quantized_judgement(
    bundle: Any,
    preset: Preset,
    rule: str,
    test_n: Loaded,
    test_a: Loaded,
    has_test_prints: bool,
    options: Options,
    float32: tuple[dict[str, Any], list[heldout.Replay]],
) -> tuple[dict[str, Any], list[heldout.Replay]]:
    """What the daemon would do with the quantized bundle: its held-out prints replayed
    through its own model and thresholds. Without held-out prints the cross-fit's models are
    float32 ones: the judgement stays theirs (``float32``) and its note says so."""
    if not has_test_prints:
        judgement = float32[0]
        if judgement.get("held_out_prints"):  # the cross-fit's models replayed them
            judgement["note"] = (
                f"{judgement.get('note', '')}; scored by the float32 models of the cross-fit "
                f"with their thresholds: the {options.quantize} bundle's own are in its "
                "model.json"
            ).lstrip("; ")
        if "shown" in judgement:  # what the daemon shows is the bundle's own thresholds
            judgement["shown"] = _shown(bundle.meta.threshold, bundle.meta.adaptation)
        return float32
    quantized = _daemon_judgement(
        preset,
        bundle.meta.adaptation,
        rule,
        bundle.meta.threshold,
        export.tflite_reconstructor(bundle),
        test_n,
        test_a,
        [],
        True,
        options,
    )
    quantized[0]["model"] = options.quantize  # the replays are the shipped model's own
    return quantized


def _plots(
    run_dir: Path,
    model: Any,
    scoring: Any,
    history: dict,
    val_set: Loaded,
    test_n: Loaded,
    test_a: Loaded,
    tn: np.ndarray,
    ta: np.ndarray,
    threshold: float,
    scale: float,
    top: int = 12,
) -> None:
    plots.loss_plot(history, run_dir / "loss.png")
    sample = val_set.x[:8]
    plots.reconstructions(
        sample, model.predict_on_batch(to_float(sample)), run_dir / "reconstructions.png"
    )
    x_eval = np.concatenate([test_n.x, test_a.x]) if len(test_n.x) + len(test_a.x) else val_set.x
    labels = ["normal"] * len(test_n.x) + ["anomalous"] * len(test_a.x) or ["normal"] * len(
        val_set.x
    )
    scores = np.r_[tn, ta] if len(x_eval) == len(tn) + len(ta) else np.zeros(len(x_eval))
    pick = np.argsort(-scores)[:top]
    xs = to_float(x_eval[pick])
    recons = np.asarray(model.predict_on_batch(xs), np.float32)
    emaps = scoring.error_map(xs, recons)
    plots.anomaly_sheet(
        xs,
        recons,
        emaps,
        scores[pick].tolist(),
        [labels[i] for i in pick],
        threshold,
        scale or float(emaps.max() or 1.0),
        run_dir / "anomalies.png",
    )
    plots.score_histogram(tn, ta, threshold, run_dir / "scores.png")
