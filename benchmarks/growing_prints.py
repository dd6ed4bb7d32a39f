"""Good prints replayed as their part grows, through the daemon's own loop (not run in CI).

    .venv/bin/python benchmarks/growing_prints.py [--data DIR] [--bundle DIR] [--json FILE]

Every figure of the quality benchmark replays a print in file-number order, where a print's
first 30 frames already show its part at every height (docs/quality.md, "Is file order
time?"). Here each Kaggle good print is replayed twice through ``python -m watchdog replay``
(its simulated user resumes right after each pause, which learns the print's look again):
in file order, and as its part grows (``benchmarks.inscene.growth_order``: fewest yellow
filament pixels first, a bare bed or a first layer at the start, the tallest part at the
end). Pauses and the frames they came at: every one is a good print stopped.

Default bundle: the shipped one (it saw these prints: this measures what the baseline does
as a print moves away from its start, not detection quality). Skips (exit 0) when the data
folder is absent.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.inscene import growth_order  # noqa: E402
from benchmarks.time_to_pause import (  # noqa: E402
    bundle_replay_options,
    no_kaggle_data,
    paused_at,
    replay,
    sessions_in_time_order,
    write_bundle_rows,
)
from trainer.data import NORMAL, Frame, load_frames  # noqa: E402
from watchdog.detection.bundle import Bundle, Preprocess  # noqa: E402


def grown(paths: list[Path], pre: Preprocess) -> list[Path]:
    """The print's frames as its part grows, judged on the model input ``pre`` makes."""
    frames = [Frame(p, NORMAL, "print", i) for i, p in enumerate(paths)]
    loaded = load_frames(frames, pre)
    if len(loaded.frames) != len(frames):
        raise RuntimeError(f"unreadable frames: {loaded.skipped}")
    return [paths[i] for i in growth_order(loaded.x)]


def main(argv: list[str] | None = None) -> int:
    args = bundle_replay_options(__doc__.splitlines()[0]).parse_args(argv)
    if no_kaggle_data(args.data):
        return 0
    normal, _ = sessions_in_time_order(args.data)
    pre = Bundle.load(args.bundle).meta.preprocess  # the bundle's own view of the bed
    rows = []
    print("| print | order | pauses (at frame) |")
    print("|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for session, paths in sorted(normal.items()):
            for order, files in (("file", paths), ("growth", grown(paths, pre))):
                scored = replay(args.bundle, files, Path(tmp) / f"{session}-{order}")
                paused = paused_at(scored)
                rows.append(
                    {"print": session, "frames": len(paths), "order": order, "paused_at": paused}
                )
                print(
                    f"| {session} ({len(paths)} frames) | {order} | {len(paused)} "
                    f"({', '.join(map(str, paused)) or '-'}) |",
                    flush=True,
                )
    if args.json:
        write_bundle_rows(args.json, args.bundle, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
