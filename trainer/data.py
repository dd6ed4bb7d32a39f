"""Find frames, group them into print sessions, split by session, load them preprocessed.

Frames of one print are near-duplicates, so a random split puts copies of every test frame
into training and makes every method look perfect. The honest unit is the print session:
the file-name prefix before the final ``_<number>`` (the Kaggle names work this way).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from watchdog import frames as frames_contract
from watchdog.detection.bundle import Preprocess
from watchdog.devices.capture import frame_size_needed
from watchdog.errors import UsageError
from watchdog.image_files import UnreadableFrame, read_frame_file, read_sized_frame_file

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frames_contract.IMAGE_SUFFIXES
DEFAULT_SESSION_PATTERN = frames_contract.DEFAULT_PATTERN
NORMAL, ANOMALOUS = "normal", "anomalous"
SPLITS = ("session", "random", "all")
# of the normal frames (of each print, its last ones) that validate rather than fit
VAL_FRACTION = 0.15


class DataError(UsageError):
    """Unusable training data (missing or empty folder, bad pattern); one line, exit 2."""


@dataclass(frozen=True)
class Frame:
    """One image file: where it is, whether it is a good print, and which print it belongs to."""

    path: Path
    label: str  # NORMAL or ANOMALOUS
    session: str  # the print; a loose frame's own file stem (watchdog.frames)
    number: int = 0  # the frame's number in its print: time order
    loose: bool = False  # not part of a recorded print (a kept false alarm): fit only


@dataclass
class Split:
    """Which frames fit the model, which stop training and set the threshold, which test it."""

    protocol: str  # "session" or "random (optimistic)"
    fit: list[Frame]
    val: list[Frame]
    test_normal: list[Frame]
    test_anomalous: list[Frame]
    contamination: list[Frame] = field(default_factory=list)  # anomalous frames put into fit
    sessions: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Loaded:
    """Preprocessed frames as uint8 (N, H, W, C) (exactly ``Preprocess.apply`` * 255)."""

    frames: list[Frame]
    x: np.ndarray
    skipped: list[str]
    sizes: list[tuple[int, int]] = field(default_factory=list)  # each frame's file, width x height


# --------------------------------------------------------------------------- finding frames


def compile_session_pattern(pattern: str) -> re.Pattern[str]:
    try:
        return frames_contract.compile_pattern(pattern)
    except frames_contract.FramesError as exc:
        raise DataError(f"--session-pattern: {exc}") from exc


def _frame(path: Path, label: str, pattern: re.Pattern[str]) -> Frame:
    name = frames_contract.parse(path, pattern)
    if name.print is None:
        return Frame(path, label, path.stem, 0, loose=True)
    return Frame(path, label, name.print, name.number)


def _images_under(folder: Path, what: str) -> list[Path]:
    if not folder.exists():
        raise DataError(f"{what} folder not found: {folder}")
    if not folder.is_dir():
        raise DataError(f"{what} is not a folder: {folder}")
    if why := frames_contract.not_recordings(folder):
        raise DataError(f"{what} {folder}: {why}, not recordings of prints")
    try:
        files = frames_contract.images_under(folder)
    except frames_contract.UnreadableFolder as exc:
        raise DataError(f"{what} folder {folder}: {exc}") from None
    if not files:
        raise DataError(f"{what} folder has no JPEG or PNG frames: {folder}")
    return files


def _folders(
    data: Path | None, normal: Sequence[Path], anomalous: Sequence[Path]
) -> tuple[list[tuple[Path, str]], list[tuple[Path, str]]]:
    """(normal, anomalous) folders, each with the flag that named it, for the messages."""
    normal_dirs: list[tuple[Path, str]] = []
    anomalous_dirs: list[tuple[Path, str]] = []
    if data is not None:
        data = Path(data)
        if not data.is_dir():
            raise DataError(f"--data folder not found: {data}")
        if not (data / "no_defected").is_dir():
            raise DataError(f"--data {data}: no 'no_defected/' folder (expected the Kaggle layout)")
        normal_dirs.append((data / "no_defected", f"--data {data}: no_defected"))
        if (data / "defected").is_dir():
            anomalous_dirs.append((data / "defected", f"--data {data}: defected"))
    normal_dirs += [(Path(d), "--normal") for d in normal]
    anomalous_dirs += [(Path(d), "--anomalous") for d in anomalous]
    if not normal_dirs:
        raise DataError("no normal frames given: use --data DIR or --normal DIR")
    return normal_dirs, anomalous_dirs


def find_frames(
    data: Path | None = None,
    normal: Sequence[Path] = (),
    anomalous: Sequence[Path] = (),
    session_pattern: str = DEFAULT_SESSION_PATTERN,
) -> list[Frame]:
    """All frames from a Kaggle-layout ``data`` folder and/or explicit normal/anomalous folders.

    Sub-folders are searched. A missing or empty folder raises DataError (exit 2).
    """
    pattern = compile_session_pattern(session_pattern)
    normal_dirs, anomalous_dirs = _folders(data, normal, anomalous)
    listed = {
        label: [(folder, p) for folder, what in dirs for p in _images_under(folder, what)]
        for dirs, label in ((normal_dirs, NORMAL), (anomalous_dirs, ANOMALOUS))
    }
    # What the owner marked a failure is never fitted as normal: a file given as both is a
    # failure, and so is every frame in a ``failures/`` folder (``<storage>/collected/<printer>``
    # holds one beside the recordings and the kept false alarms).
    failed = {p.resolve() for _, p in listed[ANOMALOUS]}
    frames: list[Frame] = []
    seen: set[Path] = set()
    moved = 0
    for label, files in listed.items():
        for folder, p in files:
            key = p.resolve()
            if key in seen:
                continue
            seen.add(key)
            is_failure = key in failed or frames_contract.in_failures(p, folder)
            if label == NORMAL and is_failure:
                moved += 1
            frames.append(_frame(p, ANOMALOUS if is_failure else label, pattern))
    if moved:
        logger.warning(
            "%d frame(s) under the normal folders are failures (in a %s/ folder, in the "
            "Kaggle layout's %s/ beside its %s/, or given with --anomalous too): used as "
            "failures, never fitted",
            moved,
            frames_contract.FAILURES,
            frames_contract.KAGGLE_FAILED,
            frames_contract.KAGGLE_NORMAL,
        )
    only = not any(f.label == NORMAL and not f.loose for f in frames)  # no good print named
    # failures are never fitted: "they only teach the model" was said of them too
    loose = [f.path for f in frames if f.loose and f.label == NORMAL]
    if only:
        _refuse_false_alarms_alone(loose)
    warning = frames_contract.loose_warning(loose, pattern, only)
    if warning:
        logger.warning("%s (--session-pattern)", warning)
    return _apart_by_folder(_copies_left_out(_failures_not_fitted(frames)))


def _refuse_false_alarms_alone(loose: list[Path]) -> None:
    """DataError where the normal frames, no print among them, are all kept false alarms: an
    owner who answered alerts but never recorded a print got a bundle fitted on those few
    frames, its threshold set on one, that flagged most frames of a good print."""
    if loose and all(p.parent.name == frames_contract.FALSE_ALARMS for p in loose):
        raise DataError(
            f"--normal: no recorded print, only {len(loose)} kept false alarm(s) (such as "
            f"{loose[0]}): they teach the model what is not a failure, not what a print looks "
            "like; record good prints with `python -m watchdog collect` and train on those "
            "folders with them"
        )


def _failures_not_fitted(frames: list[Frame]) -> list[Frame]:
    """A kept false alarm whose very frame is a confirmed failure elsewhere in what was given
    (the owner's verdict changed between two copies of the collected folder: May's
    ``false_alarms/<incident>.jpg``, June's ``failures/<incident>.jpg``) is not fitted as a
    good frame: the model would learn the failure it is asked to catch. Kept as the failure."""
    alarms = [f for f in frames if f.loose and f.label == NORMAL]
    if not alarms or not any(f.label == ANOMALOUS for f in frames):
        return frames
    failed: set[str] = set()
    for f in frames:
        if f.label == ANOMALOUS:
            with contextlib.suppress(OSError):  # unreadable: said where the frame is read
                failed.add(frames_contract.fingerprint(f.path))
    dropped: set[Path] = set()
    for f in alarms:
        with contextlib.suppress(OSError):
            if frames_contract.fingerprint(f.path) in failed:
                dropped.add(f.path)
                logger.warning(
                    "%s is also a confirmed failure in what was given: used as the failure, "
                    "not fitted as a good frame",
                    f.path,
                )
    return [f for f in frames if f.path not in dropped] if dropped else frames


def _copies_left_out(frames: list[Frame]) -> list[Frame]:
    """A print found twice is used once (``frames.copies``): the copy kept is one the owner
    marked a failure (in a ``failures/`` folder: never fitted), else the longest."""
    per_copy: dict[frames_contract.PrintKey, list[Frame]] = {}
    for f in frames:
        if not f.loose:
            per_copy.setdefault((f.path.parent, f.session), []).append(f)
    found = frames_contract.copies(
        {
            key: [f.path for f in sorted(its, key=lambda f: f.number)]
            for key, its in per_copy.items()
        },
        lambda key: (per_copy[key][0].label == ANOMALOUS, len(per_copy[key])),
    )
    for copy, kept in found.items():
        logger.warning("%s", frames_contract.copy_said(copy, kept))
    if not found:
        return frames
    return [f for f in frames if f.loose or (f.path.parent, f.session) not in found]


def _apart_by_folder(frames: list[Frame]) -> list[Frame]:
    """Prints of the same name in different folders (two recordings both ``frame_<n>.jpg``)
    are different prints, as ``frames.group_prints`` keeps them: their frames interleaved
    into one print would make a start of two prints and one print fewer to cross-fit."""
    folders: dict[str, set[Path]] = {}
    for f in frames:
        if not f.loose:  # a print's parts after a resume with it: they go on its print
            folders.setdefault(frames_contract.print_of(f.session), set()).add(f.path.parent)
    shared = {name for name, where in folders.items() if len(where) > 1}
    if not shared:
        return frames
    logger.info(
        "%d print name(s) found in more than one folder, kept apart by folder: %s",
        len(shared),
        ", ".join(sorted(shared)[:5]),
    )
    return [
        dataclasses.replace(f, session=f"{f.path.parent}/{f.session}")
        if frames_contract.print_of(f.session) in shared and not f.loose
        else f
        for f in frames
    ]


# --------------------------------------------------------------------------- reading frames


def read_frame(path: Path) -> np.ndarray | None:
    """The image as OpenCV gives it (any channels/depth), or None when it cannot be used
    (``watchdog.image_files``: unreadable, truncated, absurdly large)."""
    try:
        return read_frame_file(path)
    except UnreadableFrame as exc:
        logger.debug("%s", exc)
        return None


def load_frames(frames: Iterable[Frame], pre: Preprocess) -> Loaded:
    """Read and preprocess frames with the daemon's own ``Preprocess``; skip unreadable ones.

    Each skipped file gets one warning line saying why, and is listed in ``Loaded.skipped``.
    """
    kept: list[Frame] = []
    arrays: list[np.ndarray] = []
    skipped: list[str] = []
    sizes: list[tuple[int, int]] = []
    need = frame_size_needed(pre)  # a large frame read as the daemon's cameras decode it
    for fr in frames:
        try:
            img, size = read_sized_frame_file(fr.path, need)
            x = pre.apply(img)
        except (UnreadableFrame, ValueError) as exc:
            # UnreadableFrame names the file; the preprocessing's refusal does not
            why = str(exc) if isinstance(exc, UnreadableFrame) else f"{fr.path}: {exc}"
            logger.warning("skipping a frame: %s", why)
            skipped.append(str(fr.path))
            continue
        kept.append(fr)
        arrays.append(np.round(x * 255.0).astype(np.uint8))
        sizes.append(size)
    x_all = np.stack(arrays) if arrays else np.zeros((0, *pre.shape), np.uint8)
    return Loaded(kept, x_all, skipped, sizes)


def mixed_sizes(sets: Iterable[Loaded]) -> list[str]:
    """One line per recorded print whose frames are not all of one size: another camera or
    setting within a print. A print is judged against its own start, so such frames look
    changed to it; they are used as they are, and said (the owner knows which recording)."""
    by_print: dict[str, Counter[tuple[int, int]]] = {}
    for loaded in sets:
        for fr, size in zip(loaded.frames, loaded.sizes, strict=True):
            if not fr.loose:
                by_print.setdefault(fr.session, Counter())[size] += 1
    return frames_contract.mixed_sizes_said(by_print)


def to_float(x: np.ndarray) -> np.ndarray:
    """uint8 model inputs → float32 in [0, 1], identical to ``Preprocess.apply``."""
    return x.astype(np.float32) / 255.0


# --------------------------------------------------------------------------- splitting


def _sessions(frames: Iterable[Frame]) -> list[str]:
    return sorted({f.session for f in frames})


def last_frames(n: int, fraction: float = VAL_FRACTION) -> np.ndarray:
    """Which of a print's n frames (time order) validate rather than fit: its last ``fraction``
    (at least one; none of a one-frame print). The model to ship, the cross-fit and the
    benchmark's models all stop and set thresholds on the same frames this way."""
    mask = np.zeros(n, dtype=bool)
    if n > 1:
        mask[n - max(1, int(round(fraction * n))) :] = True
    return mask


def _random_fraction(
    frames: list[Frame], fraction: float, rng: np.random.Generator
) -> tuple[list[Frame], list[Frame]]:
    """A random ``fraction`` of ``frames`` (at least one), and the rest."""
    order = rng.permutation(len(frames))
    n = max(1, int(round(fraction * len(frames))))
    return [frames[i] for i in order[:n]], [frames[i] for i in order[n:]]


_Sides = tuple[str, list[Frame], list[Frame], list[Frame], dict[str, list[str]]]
"""A split's protocol, its fit, validation and test frames, and their sessions."""


def _split_all(
    normal: list[Frame], sessions: list[str], val_fraction: float, rng: np.random.Generator
) -> _Sides:
    """Every session fits; each print's last frames validate; nothing is tested."""
    protocol = (
        "all (final model: every session fits; validation is the last frames of each print, "
        "optimistic)"
    )
    fit: list[Frame] = []
    val: list[Frame] = []
    for name in sessions:
        frames_of = sorted((f for f in normal if f.session == name), key=lambda f: f.number)
        last = last_frames(len(frames_of), val_fraction)
        fit += [f for f, v in zip(frames_of, last, strict=True) if not v]
        val += [f for f, v in zip(frames_of, last, strict=True) if v]
    if not val:  # prints of one frame each (unnumbered frames): a random fraction validates
        val, fit = _random_fraction(fit, val_fraction, rng)
    return protocol, fit, val, [], {"fit": _sessions(fit), "val": _sessions(val), "test": []}


def _split_random(
    normal: list[Frame], val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> _Sides:
    """Frames at random: near-duplicates of one print land on both sides (optimistic)."""
    protocol = "random (optimistic: near-duplicate frames of one print on both sides)"
    order = rng.permutation(len(normal))
    n_test = int(round(test_fraction * len(normal)))
    n_val = max(1, int(round(val_fraction * len(normal))))
    test = [normal[i] for i in order[:n_test]]
    val = [normal[i] for i in order[n_test : n_test + n_val]]
    fit = [normal[i] for i in order[n_test + n_val :]]
    return (
        protocol,
        fit,
        val,
        test,
        {
            "fit": _sessions(fit),
            "val": _sessions(val),
            "test": _sessions(test),
        },
    )


def _sides_of_prints(
    sessions: list[str],
    val_sessions: Sequence[str],
    test_sessions: Sequence[str],
    rng: np.random.Generator,
) -> tuple[list[str], list[str], list[str]]:
    """The sessions that fit, validate and test: named, or one print tests and (with 3+) one
    validates. A print's parts after a resume (``frames.print_of``) go with it: they are
    near-copies of it."""
    of = frames_contract.print_of
    named_val = {of(s) for s in val_sessions}
    named_test = {of(s) for s in test_sessions}
    printed = sorted({of(s) for s in sessions})
    rest = [p for p in printed if p not in named_val and p not in named_test]
    rest = [rest[i] for i in rng.permutation(len(rest))]
    test_p, val_p = sorted(named_test), sorted(named_val)
    if not test_p and not val_p:
        if len(rest) >= 3:
            test_p, val_p = [rest.pop()], [rest.pop()]
        else:  # two prints: test one, validate on frames of the other
            test_p = [rest.pop()]

    def of_prints(chosen: list[str]) -> list[str]:
        return [s for s in sessions if of(s) in chosen]

    return of_prints(rest), of_prints(val_p), of_prints(test_p)


def _split_by_session(
    normal: list[Frame],
    sessions: list[str],
    val_sessions: Sequence[str],
    test_sessions: Sequence[str],
    val_fraction: float,
    rng: np.random.Generator,
    notes: list[str],
) -> _Sides:
    """Whole prints to one side: named, or one tests and (with 3+) one validates."""
    fit_s, val_s, test_s = _sides_of_prints(sessions, val_sessions, test_sessions, rng)
    if not fit_s:
        raise DataError(
            "no normal session left to fit the model on; name fewer --val/--test sessions"
        )
    fit = [f for f in normal if f.session in fit_s]
    test = [f for f in normal if f.session in test_s]
    if val_s:
        val = [f for f in normal if f.session in val_s]
    else:
        val, fit = _random_fraction(fit, val_fraction, rng)
        notes.append(
            "validation frames are a random fraction of the fitting sessions (too few sessions "
            "for a held-out one): the threshold may be optimistic for a new print"
        )
    sess = {"fit": sorted(fit_s), "val": sorted(val_s) or sorted(fit_s), "test": sorted(test_s)}
    return "session", fit, val, test, sess


def _check_split(
    split: str, val_sessions: Sequence[str], test_sessions: Sequence[str], sessions: list[str]
) -> None:
    """DataError, in the flags' words, for a split that cannot be made."""
    if split not in SPLITS:
        raise DataError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split != "session" and (val_sessions or test_sessions):
        raise DataError("--val-sessions/--test-sessions name sessions: they need --split session")
    for name in (*val_sessions, *test_sessions):
        if name not in sessions:
            raise DataError(f"session {name!r} not found among normal sessions {sessions}")
    of = frames_contract.print_of
    both = sorted({of(s) for s in val_sessions} & {of(s) for s in test_sessions})
    if both:  # a print and its parts after a resume go to one side
        raise DataError(
            f"--val-sessions and --test-sessions both name print {both[0]!r} (or a part of it)"
        )


def _contaminate(
    anomalous: list[Frame],
    n_fit: int,
    contamination: float,
    rng: np.random.Generator,
    notes: list[str],
) -> tuple[list[Frame], list[Frame]]:
    """(anomalous frames left, those that fit the model as if normal): a seeded
    ``contamination`` fraction of the fitting frames' count, for the robustness experiment;
    where it comes to none, ``notes`` says why (the experiment looked run)."""
    n = min(len(anomalous), int(n_fit * contamination))
    if contamination > 0 and n == 0:
        notes.append(_no_contamination(contamination, n_fit, bool(anomalous)))
    if not (contamination > 0 and anomalous):
        return anomalous, []
    pick = set(rng.permutation(len(anomalous))[:n].tolist())
    return (
        [a for i, a in enumerate(anomalous) if i not in pick],
        [a for i, a in enumerate(anomalous) if i in pick],
    )


def _no_prints_to_split(named: bool, sessions: Sequence[str]) -> str:
    """Why a split by print cannot hold a print out ("": it can)."""
    if not named:  # each loose frame would be a "print" of its own: one frame held out
        return "no frame is named as a print's (<print>_<n>.jpg, or --session-pattern)"
    if len({frames_contract.print_of(s) for s in sessions}) < 2:
        return f"only one normal session ({sessions[0]})"
    return ""


def _no_contamination(contamination: float, n_fit: int, failures: bool) -> str:
    """Why ``--contamination`` put no failure frame in the fit (the experiment looked run)."""
    why = (
        f"{contamination:g} of its {n_fit} frames is less than one"
        if failures
        else "there are none: --anomalous, or the data's defected/ folder"
    )
    return (
        f"--contamination {contamination:g} puts no failure frame in the fit ({why}): the "
        "model fits good frames only"
    )


def split_frames(
    frames: Sequence[Frame],
    split: str = "session",
    val_sessions: Sequence[str] = (),
    test_sessions: Sequence[str] = (),
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = 0.2,
    contamination: float = 0.0,
    seed: int = 0,
) -> Split:
    """Split normal frames into fit / val / test and pick the contamination frames.

    ``split="session"``: whole print sessions go to one side. Unless named, one
    normal session is the test set and one the validation set (with 3+ sessions); with two,
    validation is a frame fraction of the fitting session (said in ``notes``); with one, the
    split falls back to random and is labelled optimistic. ``split="random"`` splits frames
    at random and is labelled optimistic. ``split="all"`` (the CLI's default) fits every
    session (the model to deploy), validates on each print's last frames (a random fraction
    when frames carry no print or number) and tests on nothing. Anomalous frames never fit
    the model, except for a seeded ``contamination`` fraction (the seed's rule: fraction of
    the normal count).
    """
    rng = np.random.default_rng(seed)
    # Loose frames (kept false alarms) are not prints: they may only teach the model.
    loose = [f for f in frames if f.label == NORMAL and f.loose]
    normal = [f for f in frames if f.label == NORMAL and not f.loose]
    named = bool(normal)
    if not named:  # nothing but loose frames: there are no prints to split by
        normal, loose = loose, []
    if not normal:
        raise DataError(
            "no normal frames: every frame given is a failure (--anomalous, or a failures/ folder)"
        )
    anomalous = [f for f in frames if f.label == ANOMALOUS]
    normal_sessions = _sessions(normal)
    notes: list[str] = []
    _check_split(split, val_sessions, test_sessions, normal_sessions)

    why = _no_prints_to_split(named, normal_sessions) if split == "session" else ""
    if why and not (named and (val_sessions or test_sessions)):  # a print named: split as asked
        notes.append(f"{why}: fell back to a random split")
        split = "random"

    if split == "all":  # a final model for shipping: every session fits, nothing held out
        protocol, fit, val, test, sess = _split_all(normal, normal_sessions, val_fraction, rng)
        notes.append(
            "every print fits the model to deploy: the absolute threshold and figures come from "
            "the last frames of fitted prints (optimistic); held-out figures, where there are "
            "any, come from the cross-fit (two prints or more, with per-print adaptation)"
        )
    elif split == "random":
        protocol, fit, val, test, sess = _split_random(normal, val_fraction, test_fraction, rng)
    else:
        protocol, fit, val, test, sess = _split_by_session(
            normal, normal_sessions, val_sessions, test_sessions, val_fraction, rng, notes
        )

    anomalous, contaminated = _contaminate(anomalous, len(fit), contamination, rng, notes)
    sess["anomalous"] = _sessions(anomalous)
    if loose:
        fit = fit + loose
        notes.append(
            f"{len(loose)} loose frame(s) (not part of a recorded print, e.g. kept false alarms) fit only"
        )
    if not fit:
        raise DataError(
            f"no normal frames left to fit the model on: of the {len(normal)} normal frame(s) "
            f"found, {len(val)} validate and {len(test)} test; give more frames (a few hundred "
            "of good prints)"
        )
    return Split(protocol, fit, val, test, anomalous, contaminated, sess, notes)


# --------------------------------------------------------------------------- kept false alarms

THUMB_BLOCKS = 16  # a frame's thumbnail: its mean colour in up to 16x16 blocks
THUMB_CHUNK = 256  # frames made thumbnails at once: the fit set is never copied whole


def _thumbnails(x: np.ndarray, rows: Sequence[int]) -> np.ndarray:
    """Preprocessed frames ``x[rows]`` (uint8 N, H, W, C) as flat block means: what tells one
    print's picture from another's (the object, its height, the light), a chunk at a time."""
    _, h, w, c = x.shape
    bh, bw = max(1, h // THUMB_BLOCKS), max(1, w // THUMB_BLOCKS)
    out = np.empty((len(rows), (h // bh) * (w // bw) * c), np.float32)
    for at in range(0, len(rows), THUMB_CHUNK):
        chunk = x[list(rows[at : at + THUMB_CHUNK]), : h // bh * bh, : w // bw * bw]
        blocks = chunk.reshape(len(chunk), h // bh, bh, w // bw, bw, c)
        out[at : at + len(chunk)] = blocks.mean(axis=(2, 4), dtype=np.float32).reshape(
            len(chunk), -1
        )
    return out


def _nearest(queries: np.ndarray, among: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the index of its nearest row of ``among`` and the squared distance
    (inf where ``among`` is empty)."""
    index = np.zeros(len(queries), np.int64)
    dist = np.full(len(queries), np.inf)
    if not len(among):
        return index, dist
    for i, q in enumerate(queries):
        d = ((among - q) ** 2).sum(axis=1)
        index[i] = int(np.argmin(d))
        dist[i] = float(d[index[i]])
    return index, dist


def _all_rows(loaded: Loaded) -> list[int]:
    return list(range(len(loaded.x)))


def without_loose_of_held_out(
    fit: Loaded, held_out: Loaded, validation: Loaded | None = None
) -> tuple[Loaded, Counter[str]]:
    """``fit`` without its loose frames (kept false alarms) that look more like a held-out
    print's frames than any fitted or validation frame, and how many went per held-out print.

    A false alarm is kept from a print the owner recorded, and a file name cannot say which:
    fitted while its print is held out (``--split session``), it flatters that print's
    figures (the model has seen its hardest moment). Its nearest frame tells: the same print,
    seconds apart, or one so alike that holding it out holds the false alarm out too."""
    loose = [i for i, f in enumerate(fit.frames) if f.loose and f.label == NORMAL]
    recorded = [i for i, f in enumerate(fit.frames) if not f.loose and f.label == NORMAL]
    if not loose or not len(held_out.x):
        return fit, Counter()
    queries = _thumbnails(fit.x, loose)
    near_held, to_held = _nearest(queries, _thumbnails(held_out.x, _all_rows(held_out)))
    to_kept = _nearest(queries, _thumbnails(fit.x, recorded))[1]
    if validation is not None:
        to_kept = np.minimum(
            to_kept, _nearest(queries, _thumbnails(validation.x, _all_rows(validation)))[1]
        )
    nearer = np.flatnonzero(to_held < to_kept)
    if not len(nearer):
        return fit, Counter()
    drop = {loose[i] for i in nearer}
    went = Counter(held_out.frames[near_held[i]].session for i in nearer)
    keep = [i for i in range(len(fit.frames)) if i not in drop]
    kept = Loaded(
        [fit.frames[i] for i in keep],
        fit.x[keep],
        fit.skipped,
        [fit.sizes[i] for i in keep] if fit.sizes else [],
    )
    return kept, went
