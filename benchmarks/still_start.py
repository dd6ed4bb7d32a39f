"""A camera that shows no movement during a print's start, through the daemon's own loop
(not run in CI).

    .venv/bin/python benchmarks/still_start.py [--data DIR] [--bundle DIR] [--json FILE]

Each Kaggle normal print replayed through ``python -m watchdog replay`` (its simulated owner
resumes right after each pause) as recorded, and with its first 30 frames replaced: a
snapshot URL stuck on the print's first picture, a black picture (lights off, lens covered),
a dim one (x0.3: the room's light switched on after the start); and a feed stuck on one
picture for 30 frames in the middle of the print (from frame 60). Every pause is a good print
stopped. Default bundle: the shipped one (it saw these prints: this measures what the daemon
does with such a start, not detection quality). Skips (exit 0) when the data folder is absent.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.time_to_pause import (  # noqa: E402
    KAGGLE,
    paused_at,
    replay,
    sessions_in_time_order,
    write_bundle_rows,
)
from watchdog.detection.bundle import default_bundle_path  # noqa: E402

START = 30  # frames: the start the default bundle learns
STUCK_AT = 60  # the mid-print freeze begins here

Edit = Callable[[list[np.ndarray]], list[np.ndarray]]


def _start(change: Callable[[np.ndarray], np.ndarray]) -> Edit:
    return lambda frames: [change(f) for f in frames[:START]] + frames[START:]


CASES: dict[str, Edit] = {
    "as recorded": lambda frames: frames,
    "stuck on its first picture for its start": lambda frames: [frames[0]] * START + frames[START:],
    "black for its start": _start(np.zeros_like),
    "dim (x0.3) for its start": _start(lambda f: cv2.convertScaleAbs(f, alpha=0.3, beta=0)),
    "stuck on one picture mid-print (30 frames)": lambda frames: (
        frames[:STUCK_AT] + [frames[STUCK_AT]] * START + frames[STUCK_AT + START :]
    ),
}


def written(frames: list[np.ndarray], folder: Path) -> list[Path]:
    """The frames as JPEG files (a stuck feed repeats the same bytes)."""
    folder.mkdir(parents=True)
    out = []
    for i, img in enumerate(frames):
        target = folder / f"{i:04d}.jpg"
        cv2.imwrite(str(target), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        out.append(target)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=KAGGLE)
    p.add_argument("--bundle", type=Path, default=default_bundle_path())
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if not (args.data / "no_defected").is_dir():
        print(f"skipped: no Kaggle data at {args.data}")
        return 0
    normal, _ = sessions_in_time_order(args.data)
    rows = []
    print("| print | start | pauses (at frame) |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for session, paths in sorted(normal.items()):
            frames = [cv2.imread(str(path)) for path in paths]
            for name, edit in CASES.items():
                work = Path(tmp) / f"{session}-{len(rows)}"
                paused = paused_at(replay(args.bundle, written(edit(frames), work / "src"), work))
                rows.append(
                    {"print": session, "frames": len(frames), "case": name, "paused_at": paused}
                )
                at = ", ".join(map(str, paused)) or "-"
                print(
                    f"| {session} ({len(frames)} frames) | {name} | {len(paused)} ({at}) |",
                    flush=True,
                )
    if args.json:
        write_bundle_rows(args.json, args.bundle, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
