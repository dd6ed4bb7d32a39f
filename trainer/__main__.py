"""`python -m trainer`: fit the autoencoder on frames of good prints and export the bundle to deploy.

By default every print fits the model (the one to deploy); with two prints or more each is
also scored by an extra model fitted without it, which sets the per-print threshold and gives
report.md its held-out figures. `--split session` holds a whole print out instead: an
evaluation, whose bundle has not seen that print.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from trainer.data import DEFAULT_SESSION_PATTERN, SPLITS
from trainer.export import QUANTIZATIONS, ParityError
from trainer.model import PRESETS
from watchdog.detection.bundle import BundleError
from watchdog.detection.model import drop_runtime_banner
from watchdog.errors import UsageError
from watchdog.redact import redact

logger = logging.getLogger("trainer")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line and exit code 2 (argparse prints the whole usage otherwise)."""
        print(redact(f"error: {message} (see python -m trainer --help)"), file=sys.stderr)
        sys.exit(2)


def _sessions(value: str) -> list[str]:
    return [s for s in value.split(",") if s]


def _size(value: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT such as 128x96, got {value!r}"
        ) from None
    return w, h


def _region(value: str) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected x0,y0,x1,y1 in 0..1 such as 0,0.5,1,1, got {value!r}"
        ) from None
    return x0, y0, x1, y1


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m trainer", description=__doc__)
    d = p.add_argument_group("data")
    d.add_argument(
        "--data", type=Path, help="folder in the Kaggle layout: no_defected/ and optional defected/"
    )
    d.add_argument(
        "--normal",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="folder of frames of good prints (repeatable; sub-folders searched)",
    )
    d.add_argument(
        "--anomalous",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="folder of known failures (repeatable): never fitted; the report replays each after "
        "a held-out print's first frames, as the daemon would meet it",
    )
    d.add_argument(
        "--session-pattern",
        default=DEFAULT_SESSION_PATTERN,
        help="regex on the file stem; group 'session' (or 1) is the print session "
        "(default: prefix before the final _<number>)",
    )
    d.add_argument(
        "--split",
        choices=SPLITS,
        default=None,
        help="'all' (default): every print fits, the model to deploy; the report's held-out "
        "figures come from the cross-fit (2+ prints). Evaluation only: 'session' holds "
        "whole prints out for testing (default with --val-sessions/--test-sessions), "
        "'random' splits frames at random (optimistic)",
    )
    d.add_argument(
        "--val-sessions",
        type=_sessions,
        default=[],
        metavar="A,B",
        help="with --split session: normal prints to validate on (default: one chosen by --seed)",
    )
    d.add_argument(
        "--test-sessions",
        type=_sessions,
        default=[],
        metavar="A,B",
        help="with --split session: normal prints to test on (default: one chosen by --seed)",
    )
    d.add_argument(
        "--contamination",
        type=float,
        default=0.0,
        help="fraction (of the fit count) of anomalous frames mixed into fitting, as the "
        "original blog post does (it used 0.01; default 0)",
    )
    d.add_argument(
        "--seed", type=int, default=0, help="random seed for splits, contamination, weights"
    )
    m = p.add_argument_group("model")
    m.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="; ".join(f"{k}: {v.description}".replace("%", "%%") for k, v in PRESETS.items()),
    )
    m.add_argument("--epochs", type=int, help="override the preset's epochs")
    m.add_argument("--batch-size", type=int, help="override the preset's batch size")
    m.add_argument(
        "--patience",
        type=int,
        help="stop after this many epochs without progress (0: never stop early; default: the "
        "preset's)",
    )
    m.add_argument(
        "--input-size", type=_size, metavar="WxH", help="override the preset's model input size"
    )
    m.add_argument(
        "--region",
        type=_region,
        metavar="X0,Y0,X1,Y1",
        help="the part of the frame the model watches, in 0..1 of the frame (default: the "
        "preset's, the bottom half 0,0.5,1,1); stored in the bundle, and a printer's "
        "detection.region overrides it",
    )
    m.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="light augmentation (small shifts, zoom, brightness); default: the preset's",
    )
    m.add_argument(
        "--normalize",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="standardise each frame's brightness and contrast before the model, so a light "
        "switched on or daylight is not a new scene (measured trade-offs: "
        "docs/decisions/light-matching.md); default: the preset's (off)",
    )
    m.add_argument(
        "--match-light",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="per-print adaptation: match each frame's brightness and contrast to the print's "
        "first frames before the model sees it, and the frames of its start judged against "
        "its first ones to those; pixels gone pure white where the print's look is white too "
        "are shown as that look (docs/decisions/light-matching.md); default: the preset's",
    )
    m.add_argument(
        "--adapt-nearest",
        type=int,
        metavar="N",
        help="per-print adaptation: compare each frame with the N calibration frames that look "
        "most like it (0: with all of them); default: the preset's",
    )
    m.add_argument(
        "--adapt-frames",
        type=int,
        metavar="N",
        help="per-print adaptation: score against each print's first N frames (0: off); "
        "default: the preset's",
    )
    m.add_argument(
        "--adapt-early-frames",
        type=int,
        metavar="N",
        help="per-print adaptation: judge the rest of each print's start against its first N "
        "frames, so a failure that begins then is caught (0: the start is learnt, not judged); "
        "default: the preset's",
    )
    m.add_argument(
        "--adapt-calibration",
        choices=("cross", "validation"),
        default="cross",
        help="how the adapted threshold is set: 'cross' (default) also scores each normal "
        "print with an extra model fitted without it (one more fit per print, at most 4) and "
        "takes the higher of that and the validation frames' threshold; 'validation' uses the "
        "fitted prints' validation frames alone (faster, less stable)",
    )
    t = p.add_argument_group("threshold and export")
    t.add_argument(
        "--target-fpr",
        type=float,
        default=0.01,
        help="per-frame false-alarm rate on held-out normal frames (default 0.01)",
    )
    t.add_argument(
        "--threshold-quantile",
        type=float,
        help="use this quantile of held-out normal scores instead (0.98: the blog post's rule)",
    )
    t.add_argument(
        "--use-f1-threshold",
        action="store_true",
        help="use the F1-best threshold on test frames (optimistic; reported anyway)",
    )
    t.add_argument(
        "--quantize",
        choices=QUANTIZATIONS,
        default="float32",
        help="the bundle's model; float32 is always exported and compared. The quantized "
        "model's thresholds are the float32 model's, raised where its own validation frames "
        "need more; the report replays held-out test prints (--split session) through it, "
        "and otherwise the cross-fit's float32 models (it says so): replay a recording of "
        "yours through a float16 or int8 bundle before you trust it",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("runs"),
        help="runs folder: OUT/<timestamp>/ (default runs/)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the figures")
    p.add_argument("--debug", action="store_true", help="debug logging and tracebacks")
    return p


TRAIN_MODULES = ("tensorflow", "keras", "matplotlib", "sklearn")


def missing_train_extra() -> list[str]:
    """The training libraries that are not installed (the [train] extra brings them)."""
    return [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]


def quiet_tensorflow() -> None:
    """Silence TensorFlow's start-up lines (CUDA probing, oneDNN, XLA): set before it is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    drop_runtime_banner()  # the TFLite runtime's own start-up line, at each parity check
    missing = missing_train_extra()
    if missing:
        print(
            f"error: the trainer needs the 'train' extra ({', '.join(missing)} not installed): "
            'pip install -e ".[train]" in this virtualenv',
            file=sys.stderr,
        )
        return 2
    if args.data is None and not args.normal:
        print(
            "error: no frames given: use --data DIR (Kaggle layout) or --normal DIR",
            file=sys.stderr,
        )
        return 2
    split = args.split or ("session" if args.val_sessions or args.test_sessions else "all")
    quiet_tensorflow()
    from trainer.pipeline import Options, run

    options = Options(
        out=args.out,
        data=args.data,
        normal=args.normal,
        anomalous=args.anomalous,
        preset=args.preset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        patience=args.patience,
        augment=args.augment,
        input_size=args.input_size,
        region=args.region,
        adapt_frames=args.adapt_frames,
        adapt_early_frames=args.adapt_early_frames,
        normalize=args.normalize,
        match_light=args.match_light,
        adapt_nearest=args.adapt_nearest,
        adapt_calibration=args.adapt_calibration,
        split=split,
        val_sessions=args.val_sessions,
        test_sessions=args.test_sessions,
        session_pattern=args.session_pattern,
        contamination=args.contamination,
        seed=args.seed,
        target_fpr=args.target_fpr,
        threshold_quantile=args.threshold_quantile,
        use_f1_threshold=args.use_f1_threshold,
        quantize=args.quantize,
        plots=not args.no_plots,
    )
    try:
        result = run(options)
    except (UsageError, BundleError) as exc:
        if args.debug:
            logger.exception("fatal")
        print(redact(f"error: {exc}"), file=sys.stderr)
        return 2
    except ParityError as exc:
        print(f"error: export failed the parity check: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "interrupted: the run did not finish (a run folder named above may lack its "
            "bundle or its report: train again)",
            file=sys.stderr,
        )
        return 130
    except OSError as exc:  # a full disk, a folder that went away under the run
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            redact(
                f"error: {where}{exc.strerror or exc}; the run did not finish (a run folder "
                "named above may lack its bundle or its report: train again)"
            ),
            file=sys.stderr,
        )
        return 1
    print(result.run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
