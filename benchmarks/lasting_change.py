"""A lasting change in the middle of a good print, through the daemon's own loop (not run in CI).

    .venv/bin/python benchmarks/lasting_change.py [--data DIR] [--bundle DIR] [--onset 100] [--json FILE]

The camera is nudged (the picture moves 12 px right and 8 px down), a light is switched on
(every pixel +40), daylight brightens the room (x1.4), a light is switched off (x0.6) or
sunlight falls on the printer (x2.5: about half the picture pure white), or a light is
switched off leaving the room dim (x0.35, with the noise a camera adds in dim light) at
frame ``--onset`` of each Kaggle normal print, and stays so. The
adapted score flags that, as it should: "this looks different from how the print started".
What matters to a user is what happens next. ``python -m watchdog replay`` with its
simulated user, who resumes right after each pause (accepting the new view), counts the
pauses: one, then the watcher learns the print's look again from the frames after the resume
(``watchdog.watcher``); before that, it paused again after every cooldown.

Default bundle: the shipped one (it saw these prints; this measures the decision over time,
not detection quality). Skips (exit 0) when the data folder is absent.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.time_to_pause import (  # noqa: E402
    bundle_replay_options,
    no_kaggle_data,
    paused_at,
    replay,
    sessions_in_time_order,
    write_bundle_rows,
    write_frames,
)
from watchdog.image_files import read_bgr_file  # noqa: E402

CHANGES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "camera nudged": lambda im: cv2.warpAffine(
        im,
        np.array([[1, 0, 12], [0, 1, 8]], np.float32),
        (im.shape[1], im.shape[0]),
        borderMode=cv2.BORDER_REPLICATE,
    ),
    "light switched on": lambda im: cv2.convertScaleAbs(im, alpha=1.0, beta=40),
    "daylight (x1.4)": lambda im: cv2.convertScaleAbs(im, alpha=1.4, beta=0),
    "light switched off (x0.6)": lambda im: cv2.convertScaleAbs(im, alpha=0.6, beta=0),
    "glare (x2.5, much of it white)": lambda im: cv2.convertScaleAbs(im, alpha=2.5, beta=0),
    "light switched off, dim and noisy (x0.35, noise 5)": lambda im: _dim_and_noisy(im),
}


def _dim_and_noisy(im: np.ndarray) -> np.ndarray:
    """A room left in dim light: x0.35, and the noise a camera adds there (each frame's own,
    seeded by its pixels: the same run gives the same frames)."""
    rng = np.random.default_rng(int(im[::16, ::16].sum()))
    dim = im.astype(np.float32) * 0.35 + rng.normal(0.0, 5.0, im.shape)
    return np.clip(np.round(dim), 0, 255).astype(np.uint8)


def changed_print(
    frames: list[Path], onset: int, change: Callable[[np.ndarray], np.ndarray], folder: Path
) -> list[Path]:
    """The print's frames as JPEG files, ``change`` applied from frame ``onset`` on."""
    images = [read_bgr_file(path) for path in frames]
    return write_frames([change(im) if i >= onset else im for i, im in enumerate(images)], folder)


def main(argv: list[str] | None = None) -> int:
    p = bundle_replay_options(__doc__.splitlines()[0])
    p.add_argument(
        "--onset", type=int, default=100, help="frame of each print where the change happens"
    )
    args = p.parse_args(argv)
    if no_kaggle_data(args.data):
        return 0
    normal, _ = sessions_in_time_order(args.data)
    rows = []
    print("| print | change at frame | change | pauses before it | pauses after it (at frame) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for session, frames in sorted(normal.items()):
            for name, change in CHANGES.items():
                work = Path(tmp) / f"{session}-{name.replace(' ', '_')}"
                files = changed_print(frames, args.onset, change, work / "src")
                scored = replay(args.bundle, files, work)
                paused = paused_at(scored)
                before = [i for i in paused if i < args.onset]
                after = [i for i in paused if i >= args.onset]
                rows.append(
                    {
                        "print": session,
                        "frames": len(frames),
                        "onset": args.onset,
                        "change": name,
                        "pauses_before": len(before),
                        "pauses_after_at": after,
                    }
                )
                print(
                    f"| {session} ({len(frames)} frames) | {args.onset} | {name} | {len(before)} "
                    f"| {len(after)} ({', '.join(map(str, after)) or '-'}) |",
                    flush=True,
                )
    if args.json:
        write_bundle_rows(args.json, args.bundle, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
