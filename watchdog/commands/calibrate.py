"""`python -m watchdog calibrate BUNDLE --normal DIR`: set a bundle's adaptation threshold
from one's own recorded good prints, scored through the daemon's TFLite path (no TensorFlow).

Each print is calibrated on its own first frames, exactly as the daemon does, and the
threshold leaves ``--target-fpr`` of the later frames above it. The bundle's model.json is
rewritten; its light matching, nearest-frames, spread and print-scale settings are kept.
With ``--config FILE --printer NAME`` the frames are scored as that printer's watcher scores
them: its ``detection.region`` and ``detection.mask`` (the dashboard's saved ones included).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from watchdog import frames, overrides
from watchdog.commands import number, pick_printer
from watchdog.detection.bundle import (
    META_FILE,
    Adaptation,
    Bundle,
    BundleMeta,
    Preprocess,
    baseline_memory_refusal,
    default_bundle_path,
)
from watchdog.detection.calibration import (
    GUARD_PRINTS,
    calibrate,
    few_frames,
    guarded_maps,
    recalibrated_guard,
    starts_by_print,
    still_starts,
)
from watchdog.detection.detector import (
    MaskError,
    calibration_start,
    checked_mask,
    effective_preprocess,
    same_region,
)
from watchdog.detection.light import light_matched, start_matched
from watchdog.detection.model import FrameScorer
from watchdog.devices.capture import frame_size_needed
from watchdog.errors import UsageError
from watchdog.frames import print_of
from watchdog.image_files import UnreadableFrame, read_frame_file

logger = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate", help="set a bundle's per-print adaptation threshold from your own good prints"
    )
    p.add_argument("bundle", type=Path, help="bundle folder (its model.json is rewritten)")
    p.add_argument(
        "--normal",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="frames of good prints, named <print>_<number>.jpg (repeatable)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        help="calibration frames per print (default: the bundle's, else 20)",
    )
    p.add_argument(
        "--std-floor",
        type=number(float, 0.0, 1.0),
        default=None,
        help="noise floor quantile (default: the bundle's)",
    )
    p.add_argument(
        "--target-fpr",
        type=number(float, 0.0, 0.5),
        default=0.01,
        help="per-frame false-alarm rate (default 0.01)",
    )
    p.add_argument(
        "--config",
        help="score the frames with a printer's own region and mask from this config (and the "
        "dashboard's saved settings)",
    )
    p.add_argument("--printer", help="with --config: which printer (needed when it names several)")
    p.set_defaults(func=main)


def watched_as(args: argparse.Namespace, meta: BundleMeta) -> tuple[Preprocess, np.ndarray | None]:
    """How the frames are cropped and which pixels count: the bundle's own, or ``--printer``'s
    (its region and mask, as its watcher applies them)."""
    if args.config is None:
        if args.printer is not None:
            raise UsageError("--printer needs --config (the file that names the printer)")
        return meta.preprocess, None
    config = overrides.load_effective_config(args.config, args.printer)
    if args.printer is None and len(config.printers) > 1:
        # one model for the whole daemon: its thresholds are set through one printer's view
        raise UsageError(
            f"--config {args.config} names {len(config.printers)} printers "
            f"({', '.join(p.name for p in config.printers)}): name the one these frames are "
            "from with --printer (the thresholds set apply to every printer of this model)"
        )
    pcfg = pick_printer(config, args.printer)
    logger.info(
        "scoring as %s's camera sees them: region %s, %d mask polygon(s)",
        pcfg.name,
        list(pcfg.detection.region or meta.preprocess.roi),
        len(pcfg.detection.mask),
    )
    pre = effective_preprocess(meta, pcfg.detection.region)
    try:
        return pre, checked_mask(pcfg.detection.mask, pre)
    except MaskError as exc:
        raise overrides.mask_refused(pcfg.name, exc) from None


def model_inputs(pre: Preprocess, paths: list[Path]) -> np.ndarray:
    """One print's frames as the model's uint8 inputs, in order (unreadable images skipped and
    said): read once, then matched as the daemon matches the whole print and its start."""
    inputs = []
    need = frame_size_needed(pre)  # a large frame read as the daemon's cameras decode it
    for path in paths:
        try:
            img = read_frame_file(path, need)
        except UnreadableFrame as exc:
            logger.warning("skipping %s", exc)
            continue
        inputs.append(pre.apply(img))
    if not inputs:
        return np.zeros((0, 1, 1, 1), np.uint8)
    # the inputs are on the 1/255 grid: as uint8 they take the trainer's path exactly
    return np.round(np.stack(inputs) * 255.0).astype(np.uint8)


def error_maps(scorer: FrameScorer, x: np.ndarray) -> np.ndarray:
    """The error maps of uint8 model inputs through the daemon's TFLite path."""
    return np.stack([scorer.error_map(xi.astype(np.float32) / 255.0) for xi in x])


def uncalibrated(old: Adaptation, args: argparse.Namespace, pre: Preprocess) -> Adaptation:
    """The bundle's adaptation with the options given, its thresholds to be set again: every
    other setting is kept as it is; the start is judged against as many of its first frames as
    before while that leaves frames to judge."""
    n = args.frames if args.frames is not None else (old.frames or 20)
    if n < 2:
        raise UsageError(f"--frames {n}: a print's start needs at least 2 frames to learn from")
    # print_scale judges each calibration frame against its nearest others: fewer than all
    nearest = min(old.nearest, n - 1 if old.print_scale else n)
    if old.print_scale and nearest < 2:
        raise UsageError(f"--frames {n}: this bundle needs at least 3 frames per print's start")
    try:
        spec = dataclasses.replace(
            old,
            frames=n,
            std_floor=args.std_floor if args.std_floor is not None else old.std_floor,
            threshold=1.0,
            nearest=nearest,
            guard=0.0,
            early_frames=old.early_frames if old.early_frames < n else 0,
            early_threshold=0.0,
        )
    except ValueError as exc:
        raise UsageError(f"cannot calibrate with these options: {exc}") from exc
    too_much = baseline_memory_refusal(pre, spec)
    if too_much:  # said before the frames are scored, naming the flag
        raise UsageError(f"--frames {n}: {too_much}")
    return spec


def trained_on(provenance: dict[str, Any], prints: dict[str, list[Path]]) -> list[str]:
    """Those of ``prints`` (``frames.group_prints``) the bundle's model was fitted on: their
    first frame is one the trainer recorded (``data.fit_fingerprints``), whatever the print
    is called now. Bundles trained before that record are matched by the prints' names
    (``data.sessions.fit``)."""
    recorded = provenance.get("fit_fingerprints")
    sessions = provenance.get("sessions")
    if isinstance(recorded, list):
        digests = {str(d) for d in recorded}
        return [
            name for name, paths in prints.items() if frames.first_fingerprint(paths) in digests
        ]
    fit = sessions.get("fit") if isinstance(sessions, dict) else None
    fitted = [str(s) for s in fit] if isinstance(fit, list) else []
    # the trainer names a print by its folder too only where two folders share its name
    # (``trainer.data``): such a name is matched whole, others by the print's own name
    whole = {s for s in fitted if "/" in s}
    names = {s for s in fitted if "/" not in s}
    return [p for p in prints if p in whole or p.rsplit("/", 1)[-1] in names]


def guard_for_your_camera(
    guard: float, scores: list[np.ndarray], frames: int, partial: list[np.ndarray] | None = None
) -> float:
    """The start guard after your prints' starts (``scores``: the absolute scores of every
    frame of each print the daemon's guard judges, a heating start's too; ``partial``: those
    of recordings that end within their start or never move, which are not counted), and why
    it is off when it is."""
    new = recalibrated_guard(guard, scores, partial or [])
    if new == 0:
        logger.warning(
            "the start guard is off: your prints' first %d frames come close to it, and "
            "%d prints are too few to set one for your camera (give %d or more)",
            frames,
            len(scores),
            GUARD_PRINTS,
        )
    return new


def guard_after(
    bundle: Bundle,
    pre: Preprocess,
    mask: np.ndarray | None,
    scorer: FrameScorer,
    starts: dict[str, tuple[Any, np.ndarray]],
    frames: int,
    printer: str | None,
    counted: set[str],
) -> float:
    """The start guard once calibrated: set again after the owner's starts (``starts``: each
    recording's still starts and start maps, by its name) where they were scored in the
    bundle's own region, kept as it was otherwise. ``counted``: the recordings the threshold
    was set on; a print's parts after a resume are one print, and a recording that is not
    counted only keeps the guard above its own frames (``calibration.start_guard``)."""
    old = bundle.meta.adaptation.guard
    if old > 0 and same_region(pre.roi, bundle.meta.preprocess.roi):
        # your camera's normal starts must stay below the start guard (the daemon judges a
        # start by it only in the bundle's own region: its absolute scores are of that view)
        judged = {
            name: guarded_maps(lambda x: error_maps(scorer, x), still, start)
            for name, (still, start) in starts.items()
        }
        scores, partial = starts_by_print(
            [(name, bundle.meta.scoring.scores(m, mask)) for name, m in judged.items()], counted
        )
        return guard_for_your_camera(old, scores, frames, partial)
    if old > 0:
        # these frames were watched in another region, where the daemon never judges a start
        # by the guard; printers watching the bundle's own region still are: it stays as it was
        logger.info(
            "the start guard (%.4g) is kept: it judges starts only in the bundle's own region, "
            "and these frames were scored in %s's",
            old,
            printer or "the printer",
        )
    return old


def calibrated_rule(new: Adaptation, prints: int, target_fpr: float, frames: int) -> str:
    """The bundle's note on how its per-print thresholds were set, after ``calibrate``: the
    trainer's note names figures that are no longer the bundle's."""
    start = (
        f"the rest of a start judged against its first {new.early_frames} frames above "
        f"{new.early_threshold:.6g}"
        if new.judges_start
        else "the start not judged against its first frames"
    )
    guard = f"start guard {new.guard:.6g}" if new.guard > 0 else "no start guard"
    return (
        f"set by `watchdog calibrate` on {prints} of the owner's good prints: each learns its "
        f"first {new.frames} frames; threshold {new.threshold:.6g} leaves {target_fpr:g} of their "
        f"{frames} later frames above it{few_frames(frames, target_fpr)}; {start}; {guard}"
    )


def main(args: argparse.Namespace) -> int:
    # its model.json too: a folder of links to the shipped files is written through
    if default_bundle_path() in (
        Path(args.bundle).resolve(),
        (Path(args.bundle) / META_FILE).resolve().parent,
    ):
        # rewritten in place, it is lost at the next update (or a checkout's file is changed)
        raise UsageError(
            f"{args.bundle}: the model shipped with the watchdog, which an update replaces: "
            f"calibrate a copy (cp -r {args.bundle} /var/lib/printer-watchdog/models/mine), "
            "and name the copy in the config's model:"
        )
    bundle = Bundle.load(args.bundle)
    pre, mask = watched_as(args, bundle.meta)
    old = bundle.meta.adaptation
    spec = uncalibrated(old, args, pre)
    n = spec.frames
    prints = _owners_prints(args, bundle)
    scorer = FrameScorer(bundle)  # the model only: the baseline is what is being calibrated
    # a print without a readable frame has nothing to calibrate on (calibrate would skip it)
    inputs_of = {name: model_inputs(pre, paths) for name, paths in prints.items()}
    names = [name for name, x in inputs_of.items() if len(x)]
    raw = [inputs_of[name] for name in names]
    # each from the start the daemon would judge it against (a start showing a printer heat,
    # or a frozen or dark picture, is learnt again: its light and its look are not the print's);
    # the start guard judges the frames of such starts too
    firsts = [calibration_start(x, n, mask, spec.still_first_frames) for x in raw]
    stills = [still_starts(x, spec, first, mask) for x, first in zip(raw, firsts, strict=True)]
    raw = [x[first:] for x, first in zip(raw, firsts, strict=True)]
    # each print light-matched as the daemon matches it, and its start as the daemon judges it
    inputs = [light_matched(x, spec) for x in raw]
    start_inputs = [start_matched(x[:n], spec) for x in raw]
    maps = [error_maps(scorer, x) for x in inputs]
    start_maps = [error_maps(scorer, x) for x in start_inputs]
    used: list[int] = []  # the prints the threshold was set on, which the start guard counts
    try:
        new = calibrate(
            spec,
            bundle.meta.scoring,
            maps,
            args.target_fpr,
            mask=mask,
            inputs=inputs,
            starts=start_maps,
            start_inputs=start_inputs,
            used=used,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    new = dataclasses.replace(
        new,
        guard=guard_after(
            bundle,
            pre,
            mask,
            scorer,
            dict(zip(names, zip(stills, start_maps, strict=True), strict=True)),
            n,
            args.printer,
            {names[i] for i in used},
        ),
    )
    was = bundle.meta.adaptation
    bundle.meta.adaptation = new
    # a recording that ended within its start or never moved sets none; parts are one print
    counted = len({print_of(names[i]) for i in used})
    judged = sum(max(0, len(inputs[i]) - new.frames) for i in used)
    bundle.meta.extra["adaptation_rule"] = calibrated_rule(new, counted, args.target_fpr, judged)
    bundle.save_meta()
    _say_calibrated(args, bundle, counted, judged, was)
    return 0


# a threshold moved by more than this factor either way is said: a failed print among the
# "good" ones raises it, a handful of still frames lowers it, and nothing else showed it
MOVED_FACTOR = 2.0


def _say_calibrated(
    args: argparse.Namespace, bundle: Bundle, counted: int, judged: int, was: Adaptation
) -> None:
    """What was set (beside what it was), on which scale the owner will see it, and when it
    takes effect."""
    new = bundle.meta.adaptation
    print(
        f"{args.bundle}: adaptation frames={new.frames} std_floor={new.std_floor} match_light={new.match_light} "
        f"nearest={new.nearest} pixel_spread={new.pixel_spread} print_scale={new.print_scale} "
        f"threshold={new.threshold:.6g} (was {was.threshold:.6g}) guard={new.guard:.6g} (was "
        f"{was.guard:.6g}) early_frames={new.early_frames} "
        f"early_threshold={new.early_threshold:.6g} (was {was.early_threshold:.6g}) "
        f"start_light={new.start_light} from {counted} prints ({judged} frames after their "
        "starts)"
    )
    if caution := few_frames(judged, args.target_fpr):
        print(f"warning: {caution.lstrip('; ')}", file=sys.stderr)
    if counted == 1:
        print(
            "warning: one print set these thresholds: how often another print's good frames "
            "cross them is unknown; calibrate on two good prints or more",
            file=sys.stderr,
        )
    same_scale = (was.frames, was.std_floor) == (new.frames, new.std_floor)  # the options'
    if (
        same_scale
        and was.threshold > 0
        and not 1 / MOVED_FACTOR <= new.threshold / was.threshold <= MOVED_FACTOR
    ):
        print(
            f"warning: the threshold moved from {was.threshold:.4g} to {new.threshold:.4g} "
            f"({new.threshold / was.threshold:.2g} times): check that every print given was a "
            "good one (a failed print raises it: failures then pass unseen) and long enough "
            "(a few frames lower it: good prints then alert)",
            file=sys.stderr,
        )
    # the threshold above is on the adapted score's own scale; what the owner sees is not
    print(
        f"scores in replay, score and the dashboard stay on the bundle's scale (at sensitivity "
        f"1, a frame above "
        f"{bundle.meta.threshold:.6g} there is above this threshold)"
    )
    # a running daemon keeps the bundle it loaded: the owner must know the new threshold waits
    print(
        "a running watchdog keeps its old threshold until it reloads "
        "(sudo systemctl reload printer-watchdog)"
    )


def _owners_prints(args: argparse.Namespace, bundle: Bundle) -> dict[str, list[Path]]:
    """The good prints of ``--normal`` by name, refused when there is none; frames that are
    no print's and prints that trained this model are said."""
    try:
        prints, loose = frames.group_prints(args.normal)
    except (FileNotFoundError, frames.UnreadableFolder) as exc:
        raise UsageError(f"--normal {exc}") from exc
    if not prints:
        found = f"{len(loose)} frame(s), none named" if loose else "no frame named"
        raise UsageError(
            f"--normal {', '.join(map(str, args.normal))}: {found} <print>_<number>.jpg "
            "(a print's frames, as collect records them)"
        )
    if loose:
        logger.warning(
            "%d frame(s) not named <print>_<number>.jpg are not part of a print and are left out "
            "(e.g. %s)",
            len(loose),
            loose[0],
        )
    keys = {(paths[0].parent, key.rsplit("/", 1)[1]): key for key, paths in prints.items()}
    twins = frames.copies({key: prints[name] for key, name in keys.items()})
    for copy, kept in twins.items():  # counted twice, as the trainer would not
        logger.warning("%s", frames.copy_said(copy, kept))
        del prints[keys[copy]]
    trained = trained_on(bundle.meta.data, prints)
    if trained:
        logger.warning(
            "%d of these %d prints trained this model (e.g. %s): judged on the prints it was "
            "fitted on, a model sets its thresholds too low; calibrate on prints recorded since",
            len(trained),
            len(prints),
            trained[0],
        )
    return prints
