"""The frames contract: how recorded frames are named, grouped into prints and ordered in time.

One module owns it, because ``collect``, the incident store, the trainer and
``python -m watchdog calibrate`` all write or read the same folders:

- A frame of a print is ``<print>_<n>.jpg`` (or .jpeg/.png): ``<print>`` names the print
  session, ``<n>`` is the frame's number in it (``collect`` writes ``<printer>-<time>_<n>.jpg``).
  Per-print adaptation calibrates on a print's first frames, so the order in time matters:
  frames sort by ``<n>`` as a number, never as text (1, 2, 10, not 1, 10, 2).
- A *loose* frame does not belong to a recorded print (a false alarm kept from an incident,
  ``false_alarms/<incident>.jpg``, or any file whose name does not match the pattern). Loose
  frames may teach the model what normal looks like, but they are never a print: they are not
  validated, tested or calibrated on as one.
- A confirmed failure's frames are copied to ``failures/`` as ``<incident>-<NN>.jpg`` (the
  anomalous lead-up, oldest first) and ``<incident>.jpg`` (the alert's frame, last): each
  incident is one failed print. Frames in a ``failures/`` folder are never normal.
- Another naming can be given as a regular expression with a ``session`` group (and
  optionally an ``n`` group); without ``n``, the digits at the end of the name order frames.
- A print paused and resumed goes on as a *part* of it, ``<print>+resumed<k>``: the daemon
  learns a print's look again at a resume, so a part is replayed from its own first frames
  (a baseline of its own), while a print's parts stay on one side of the trainer's split
  (``print_of``): they are near-duplicates of each other.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_PATTERN = r"^(?P<session>.+)_(?P<n>\d+)$"
FALSE_ALARMS = "false_alarms"  # folder of loose frames kept from false alarms
FAILURES = "failures"  # folder of frames of confirmed failures: never normal, wherever found
INCIDENTS = "incidents"  # the daemon's alerts (``incidents.incidents_root``): no recording
# the Kaggle layout's failed prints, ``defected/`` beside ``no_defected/``: never normal
KAGGLE_FAILED, KAGGLE_NORMAL = "defected", "no_defected"
_TRAILING_DIGITS = re.compile(r"(\d+)$")
# A confirmed failure's copies in ``failures/`` (``incidents.mark_failure``): ``<incident>.jpg``,
# the alert's frame, and ``<incident>-<NN>.jpg``, its anomalous lead-up, oldest first. One
# incident is one failed print; its alert frame comes after its lead-up.
_FAILURE_COPY = re.compile(r"^(?P<incident>\d{8}T\d{9}Z-[0-9a-f]+)(?:-(?P<n>\d+))?$")
_ALERT_FRAME = 1_000_000


_RESUMED_PART = re.compile(r"\+resumed\d+$")

logger = logging.getLogger(__name__)


def resumed_part(print_name: str, k: int) -> str:
    """The name of print ``print_name``'s ``k``-th part after a resume (``collect``)."""
    return f"{print_name}+resumed{k}"


def print_of(session: str) -> str:
    """The print a session belongs to: itself, or the print a resumed part goes on."""
    return _RESUMED_PART.sub("", session)


class FramesError(ValueError):
    """A naming pattern that cannot be used; the message names the pattern."""


@dataclass(frozen=True)
class FrameName:
    """Where one frame file belongs: its print (None for a loose frame) and number in it."""

    print: str | None
    number: int

    @property
    def loose(self) -> bool:
        return self.print is None


def compile_pattern(pattern: str = DEFAULT_PATTERN) -> re.Pattern[str]:
    """The naming pattern as a regular expression, checked for its ``session`` group."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise FramesError(
            f"session pattern {pattern!r} is not a valid regular expression ({exc})"
        ) from exc
    if "session" not in compiled.groupindex and compiled.groups < 1:
        raise FramesError(f"session pattern {pattern!r} needs a (?P<session>...) group")
    return compiled


_DEFAULT = compile_pattern()


def parse(path: Path | str, pattern: re.Pattern[str] = _DEFAULT) -> FrameName:
    """The print and frame number a file name stands for; a confirmed failure's copies in
    ``failures/`` name their incident as their print."""
    p = Path(path)
    if p.parent.name == FALSE_ALARMS:
        return FrameName(None, 0)
    copy = _FAILURE_COPY.match(p.stem) if p.parent.name == FAILURES else None
    if copy:
        n = copy.group("n")
        return FrameName(copy.group("incident"), _ALERT_FRAME if n is None else int(n))
    m = pattern.match(p.stem)
    if not m:
        return FrameName(None, 0)
    groups = m.groupdict()
    session = groups.get("session") or m.group(1)
    if groups.get("n") is not None:
        number = int(groups["n"])
    else:
        digits = _TRAILING_DIGITS.search(p.stem)
        number = int(digits.group(1)) if digits else 0
    return FrameName(session, number)


def frame_path(folder: Path, print_name: str, number: int, suffix: str = ".jpg") -> Path:
    """Where frame ``number`` of ``print_name`` is written (``collect``)."""
    return Path(folder) / f"{print_name}_{number}{suffix}"


class UnreadableFolder(OSError):
    """A folder of frames that cannot be listed; the message names it and why."""


def _unreadable(exc: OSError) -> None:
    raise UnreadableFolder(f"cannot read {exc.filename}: {exc.strerror or exc}")


def _dangling(path: Path) -> bool:
    """A link to what is not there (False for a file gone since it was listed)."""
    try:
        return path.is_symlink() and not path.exists()
    except OSError:
        return False


def not_recordings(folder: Path) -> str:
    """Why the images under ``folder`` are no recording of a print ("": they may be): the
    daemon's alerts (their frames, heatmaps and lead-up, failures or not), or a training
    run's folder (its plots). A state folder or a run's ``--out`` given as frames had them
    fitted as good prints."""
    if folder.name == INCIDENTS:
        return (
            "the watchdog's alerts (their frames and heatmaps, failures or not); those "
            "answered Not a failure or Confirm failure are kept under collected/<printer>/"
        )
    try:
        if (folder / "report.md").is_file() and (folder / "bundle").is_dir():
            return "a training run's report, plots and model"
    except OSError:  # a folder this user cannot read: the walk names it (``UnreadableFolder``)
        pass
    return ""


def images_under(folder: Path) -> list[Path]:
    """Image files below ``folder`` (sub-folders too), in a stable order, but those of
    sub-folders that hold no recording (``not_recordings``: said in the log).

    A folder linked in is followed: an owner who links a recording into a data folder means
    it to count. Each real folder is read once, by its own path where it lies under
    ``folder`` (its path says what it is: a print's name, a ``failures/`` folder), else by
    the first link to it in name order; a link back up the tree ends there. A folder that
    cannot be read raises ``UnreadableFolder``: its prints left out without a word were a
    training or a calibration on less than the owner gave."""
    found: list[Path] = []
    read: set[str] = set()
    if why := not_recordings(Path(folder)):  # given itself: its images are none either
        logger.warning("left out %s: %s", folder, why)
        return found
    tops = [Path(folder)]  # then each folder linked in, as the walks find them
    while tops:
        for root, subfolders, files in os.walk(tops.pop(0), onerror=_unreadable):
            real = os.path.realpath(root)
            if real in read:
                subfolders.clear()
                continue
            read.add(real)
            for name in list(subfolders):
                if why := not_recordings(Path(root) / name):
                    logger.warning("left out %s: %s", Path(root) / name, why)
                    subfolders.remove(name)
            subfolders.sort()
            tops += sorted(Path(root) / d for d in subfolders if (Path(root) / d).is_symlink())
            for gone in (Path(root) / n for n in files):
                # a link to a recording or a frame that is not there (a disk not mounted now);
                # a file gone since the listing is not one (a writer's temporary file renamed)
                if gone.suffix.lower() in ("", *IMAGE_SUFFIXES) and _dangling(gone):
                    raise UnreadableFolder(
                        f"cannot read {gone}: it links to {os.readlink(gone)}, which is not there"
                    )
            found += (
                path
                for path in (Path(root) / name for name in files)
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
            )
    return sorted(found)


def in_time_order(paths: Iterable[Path], pattern: re.Pattern[str] = _DEFAULT) -> list[Path]:
    """Frames sorted by their number in the print (then by name, for ties)."""
    return sorted(paths, key=lambda p: (parse(p, pattern).number, str(p)))


def fingerprint(path: Path) -> str:
    """A short digest of an image file's bytes. A print's first frame, so digested, names the
    print whatever its files or folder are called since: ``calibrate`` recognises the prints a
    model was fitted on by it (the trainer records theirs in the bundle)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def first_fingerprint(paths: Iterable[Path]) -> str | None:
    """The ``fingerprint`` of a print's first frame whose file can be read (``paths`` in time
    order), None when none can. Whether it decodes does not matter: the trainer, which fits
    only the frames it decodes, and ``calibrate`` must name a print by the same file."""
    for path in paths:
        try:
            return fingerprint(path)
        except OSError:
            continue
    return None


PrintKey = tuple[Path, str]  # a print's folder and name


def copies(
    prints: Mapping[PrintKey, Sequence[Path]], rank: Callable[[PrintKey], Any] | None = None
) -> dict[PrintKey, PrintKey]:
    """Each print of ``prints`` (frames in time order) that is a copy of another, and the one
    of its copies that is kept: ``rank``'s highest (default: the longest, as another copy
    was made mid-print), of equals the first given.

    A print found twice (``--normal may --normal june`` where june still holds May's prints;
    one recording collected twice into one folder, under two names) must be used once: two
    copies are two prints, each scored "held out" by a model that fitted its twin, and a
    threshold or a start guard is set from more prints than there are. A copy under its name in
    another folder has every frame it has among the other's (copied mid-print, or its first
    frames deleted since); under another name in its folder, every frame the same. Frames are
    told by their bytes (``fingerprint``): no two frames of a live camera are the same, but
    prints that start on a black bed before the light comes on share their first frames."""
    digests: dict[PrintKey, list[str]] = {}
    for key, paths in prints.items():
        its = []
        for path in paths:
            with contextlib.suppress(OSError):  # unreadable: said where the frame is read
                its.append(fingerprint(path))
        if its:
            digests[key] = its
    # copies of copies are one print: A in may/ and june/ by its name, june's A also saved
    # under another name there; each set of copies joined whole (union-find), one kept
    root: dict[PrintKey, PrintKey] = {}

    def find(key: PrintKey) -> PrintKey:
        while root.setdefault(key, key) != key:
            root[key] = root[root[key]]  # halved on the way: chains stay short
            key = root[key]
        return key

    for a, b in _alike(digests):
        root[find(b)] = find(a)
    joined: dict[PrintKey, list[PrintKey]] = {}
    for key in prints:  # in the order given: of equals, the first given is kept
        if key in root:
            joined.setdefault(find(key), []).append(key)
    ranked = rank or (lambda key: len(prints[key]))
    out: dict[PrintKey, PrintKey] = {}
    for group in joined.values():
        kept = max(group, key=ranked)
        out.update({key: kept for key in group if key != kept})
    return out


def _alike(digests: Mapping[PrintKey, list[str]]) -> list[tuple[PrintKey, PrintKey]]:
    """Pairs of prints that are copies of each other, by their frames' ``fingerprint``s."""
    by_name: dict[str, list[PrintKey]] = {}
    same_frames: dict[tuple[Path, tuple[str, ...]], list[PrintKey]] = {}
    for key, its in digests.items():
        by_name.setdefault(key[1], []).append(key)
        same_frames.setdefault((key[0], tuple(its)), []).append(key)
    pairs = [(group[0], key) for group in same_frames.values() for key in group[1:]]
    for group in by_name.values():
        sets = {key: set(digests[key]) for key in group}
        pairs += [
            (a, b)
            for i, a in enumerate(group)
            for b in group[i + 1 :]
            if a[0] != b[0] and (_within(digests[a], sets[b]) or _within(digests[b], sets[a]))
        ]
    return pairs


def _within(frames: list[str], other: set[str]) -> bool:
    """Every frame of a print (``fingerprint``s, in time order) is one of ``other``'s; its
    last may differ where at least two before it match: copied while ``collect`` wrote it."""
    before = set(frames[:-1])
    return set(frames) <= other or (len(before) >= 2 and before <= other)


def copy_said(copy: PrintKey, kept: PrintKey) -> str:
    """A copy left out (``copies``), in one line."""
    return (
        f"print {copy[1]} in {copy[0]} is a copy of print {kept[1]} in {kept[0]} "
        "(the same frames): used once"
    )


def in_failures(path: Path, folder: Path) -> bool:
    """Whether ``path``, found under ``folder``, lies in a ``failures/`` folder at any depth
    (``failures/spaghetti/x.jpg`` too), ``folder`` itself included, or in the Kaggle layout's
    ``defected/`` beside its ``no_defected/``."""
    base = Path(folder).parent
    try:
        parts = Path(path).relative_to(base).parts[:-1]
    except ValueError:
        base, parts = Path(path).parent.parent, (Path(path).parent.name,)
    for i, part in enumerate(parts):
        if part == FAILURES:
            return True
        beside = base.joinpath(*parts[:i], KAGGLE_NORMAL)
        if part == KAGGLE_FAILED and beside.is_dir():
            return True
    return False


def group_prints(
    folders: Iterable[Path], pattern: re.Pattern[str] = _DEFAULT
) -> tuple[dict[str, list[Path]], list[Path]]:
    """Image files under ``folders`` grouped by print in time order, and the loose frames.

    A print is keyed by its folder and name, so two folders' ``print_1.jpg`` stay apart.
    Frames of confirmed failures (a ``failures/`` folder) are never a normal print: left out.
    """
    prints: dict[str, list[Path]] = {}
    loose: list[Path] = []
    for folder in folders:
        if not Path(folder).is_dir():
            what = "not a folder of frames" if Path(folder).exists() else "frames folder not found"
            raise FileNotFoundError(f"{folder}: {what}")
        for path in images_under(folder):
            if in_failures(path, folder):
                continue
            name = parse(path, pattern)
            if name.print is None:
                loose.append(path)
            else:
                prints.setdefault(f"{path.parent}/{name.print}", []).append(path)
    return {k: in_time_order(v, pattern) for k, v in prints.items()}, loose


def loose_warning(
    loose: list[Path], pattern: re.Pattern[str] = _DEFAULT, only: bool = False
) -> str | None:
    """One line for frames that do not name a print (outside ``false_alarms/``): what the
    naming is, an example of each, and what happens to them (``only``: no good frame names
    a print, so they are all there is); None when there are none."""
    stray = [p for p in loose if Path(p).parent.name != FALSE_ALARMS]
    if not stray:
        return None
    example = Path(stray[0])
    happens = (
        "no print can be told, so a random part of them sets the threshold, no print is "
        "replayed as the daemon would see it, and no per-print adaptation can be calibrated"
        if only
        else "they are not grouped into prints (they only teach the model, and no "
        "print-by-print figure uses them)"
    )
    return (
        f"{len(stray)} frame(s) such as {example} are not named <print>_<n>{example.suffix} like "
        f"{frame_path(example.parent, 'print1', 7, example.suffix).name} (pattern {pattern.pattern}): "
        f"{happens}; rename them or give the naming as a pattern"
    )


def mixed_sizes_said(by_print: Mapping[str, Counter[tuple[int, int]]]) -> list[str]:
    """One line per print (its name: "" for frames that name none) whose frames, counted by
    (width, height), are not all of one size: a print is judged against its own start, so
    another camera or setting within it looks like a change. Said so by the trainer and by
    ``replay``, in the same words."""
    lines = []
    for name, counts in sorted(by_print.items()):
        if len(counts) > 1:
            (common, n), *others = counts.most_common()
            odd = ", ".join(f"{c} of {w}x{h}" for (w, h), c in others)
            which = f"print {name}" if name else "frames that name no print"
            lines.append(
                f"{which}: frames of more than one size ({n} of {common[0]}x{common[1]}, "
                f"{odd}): another camera or setting within one print looks like a change to it"
            )
    return lines
