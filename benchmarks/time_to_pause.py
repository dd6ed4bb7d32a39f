"""Time-to-pause on sequences, through the daemon's own loop, not run in CI.

    .venv/bin/python benchmarks/time_to_pause.py [--data DIR] [--bundles H=BUNDLE ...] [--json FILE]

Leave-one-session-out on the Kaggle frames (``../shared/data/kaggle-3d-printer``). For each
normal print session H: train a bundle without H exactly as a user would
(``python -m trainer --data DATA --preset default --test-sessions H``; ``--bundles H=PATH``
reuses one instead), then for each failed print F replay H's frames followed by F's frames
(each in file-number order, i.e. time) with ``python -m watchdog replay`` at the default
detection settings (consecutive 3, cooldown 90 s at interval 10 s) and a simulated printer.

The simulated printer (``replay.ResumingPrinter``) resumes right after each pause, so every
pause over the whole sequence is counted; a resume is the user accepting what the camera
shows, so the watcher waits out the cooldown and learns the print's look again from the frames
after it (``watchdog.watcher``): after the first pause, the failure's own frames are the
baseline, and what is counted there is what a user who resumed a failing print would get.
Measured per sequence, from replay's JSON lines (one per scored frame and event):

- pauses during the normal part (H's frames), and H's anomalous frames after calibration
  (the bundle's ``adaptation.frames`` first frames of the print never count) with their
  longest run in a row (``consecutive`` in a row would pause);
- frames from failure onset to the first pause: failure frames scored up to and including
  the one that paused (3 is the fastest possible unless the last normal frames were already
  above the threshold); "never" if no pause came;
- pauses during the failure and F's anomalous frames.

Caveat: each failed print is another print (the Kaggle failures fail from their first frame),
so the onset is also a change of scene; a failure inside the calibrated print itself may take
longer to pause than these figures say.

Skips (exit 0) when the data folder is absent, or when a fold needs training and the
``train`` extra (tensorflow) is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.paths import shown  # noqa: E402
from trainer.data import NORMAL, find_frames  # noqa: E402
from watchdog.detection.bundle import Bundle  # noqa: E402
from watchdog.frames import parse as parse_frame_name  # noqa: E402

KAGGLE = ROOT.parent / "shared" / "data" / "kaggle-3d-printer"


def sessions_in_time_order(data: Path) -> tuple[dict[str, list[Path]], dict[str, list[Path]]]:
    """(normal, failed) prints: session name -> frame files in file-number (time) order."""
    normal: dict[str, list[Path]] = {}
    failed: dict[str, list[Path]] = {}
    for f in find_frames(data):
        (normal if f.label == NORMAL else failed).setdefault(f.session, []).append(f.path)
    for group in (normal, failed):
        for paths in group.values():
            paths.sort(key=lambda p: parse_frame_name(p).number)
    return normal, failed


def train_bundle(data: Path, held_out: str, runs: Path) -> Path:
    """A default-preset bundle trained without ``held_out``, as a user's run makes it."""
    cmd = [
        sys.executable,
        "-m",
        "trainer",
        "--data",
        str(data),
        "--preset",
        "default",
        "--test-sessions",
        held_out,
        "--out",
        str(runs),
        "--no-plots",
    ]
    print(f"training without {held_out}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    out = subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True).stdout
    run_dir = Path(out.strip().splitlines()[-1])  # the trainer prints its run folder last
    return run_dir / "bundle"


def replay(bundle: Path, frames: list[Path], work: Path) -> list[dict[str, Any]]:
    """Replay ``frames`` in this order; the JSON lines of scored frames, in order."""
    folder = work / "frames"
    folder.mkdir(parents=True)
    for i, path in enumerate(frames):
        (folder / f"{i:04d}{path.suffix.lower()}").symlink_to(path.resolve())
    config = work / "config.yaml"
    config.write_text(f"model: {json.dumps(str(bundle))}\nprinters:\n  - name: e3\n")
    cmd = [
        sys.executable,
        "-m",
        "watchdog",
        "replay",
        "--config",
        str(config),
        "--frames",
        str(folder),
        "--out",
        str(work / "incidents"),
    ]
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    lines = []
    for text in out.stdout.splitlines():
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError:
            continue  # not one of replay's JSON lines
    scored = [r for r in lines if r.get("frame") is not None and r.get("score") is not None]
    pauses = sum(r.get("action") == "pause" for r in scored)
    summary: dict[str, Any] = next((r for r in lines if r.get("event") == "summary"), {})
    incidents = len(
        list((work / "incidents").rglob("alert.json"))
    )  # <out>/incidents/<printer>/<id>/
    if not (pauses == summary.get("alerts") == incidents):
        raise RuntimeError(
            f"replay in {work}: {pauses} pause lines, summary {summary}, {incidents} incident files"
        )
    return scored


def paused_at(scored: list[dict[str, Any]]) -> list[int]:
    """The frames (counted from 0) of a replay where the print was paused."""
    return [i for i, r in enumerate(scored) if r.get("action") == "pause"]


def bundle_replay_options(description: str) -> argparse.ArgumentParser:
    """The options of every replay of one bundle over the Kaggle prints: ``--data``,
    ``--bundle`` (default: the shipped one) and ``--json``."""
    from watchdog.detection.bundle import default_bundle_path

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", type=Path, default=KAGGLE, help="Kaggle-layout folder")
    p.add_argument("--bundle", type=Path, default=default_bundle_path())
    p.add_argument("--json", type=Path, help="write the results here")
    return p


def no_kaggle_data(data: Path) -> bool:
    """True, and said, when the Kaggle data is not at ``data``: the benchmark skips (exit 0)."""
    if (data / "no_defected").is_dir():
        return False
    print(f"skipped: no Kaggle data at {data}")
    return True


def write_frames(frames: list[Any], folder: Path) -> list[Path]:
    """Frames (BGR images) as the JPEG files a replay reads, in order."""
    import cv2

    folder.mkdir(parents=True)
    out = []
    for i, img in enumerate(frames):
        target = folder / f"{i:04d}.jpg"
        cv2.imwrite(str(target), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        out.append(target)
    return out


def write_bundle_rows(
    path: Path, bundle: Path, rows: list[dict[str, Any]], **more: list[dict[str, Any]]
) -> None:
    """A replay benchmark's rows (and ``more`` tables of them) as JSON, with which training of
    the bundle made them (a retrained bundle keeps its path)."""
    created = Bundle.load(bundle).meta.created
    document = {"bundle": shown(bundle), "bundle_created": created, "rows": rows, **more}
    path.write_text(json.dumps(document, indent=2) + "\n")


def measure(scored: list[dict[str, Any]], onset: int, calibration: int) -> dict[str, Any]:
    """Pauses and anomalous frames on each side of the failure onset (frame index ``onset``)."""
    normal = [r for r in scored if int(Path(r["frame"]).stem) < onset]
    failure = [r for r in scored if int(Path(r["frame"]).stem) >= onset]
    paused = [i for i, r in enumerate(failure) if r["action"] == "pause"]
    run = longest = 0
    for r in normal[calibration:]:  # how close the normal part came to a pause
        run = run + 1 if r["anomalous"] else 0
        longest = max(longest, run)
    return {
        "normal_frames": len(normal),
        "normal_pauses": sum(r["action"] == "pause" for r in normal),
        "normal_scored_after_calibration": max(0, len(normal) - calibration),
        "normal_anomalous": sum(bool(r["anomalous"]) for r in normal[calibration:]),
        "normal_longest_anomalous_run": longest,
        "failure_frames": len(failure),
        "frames_to_pause": paused[0] + 1 if paused else None,
        "failure_pauses": len(paused),
        "failure_anomalous": sum(bool(r["anomalous"]) for r in failure),
    }


def table(held_out: str, rows: dict[str, dict[str, Any]], calibration: int) -> str:
    head = (
        f"### held out: {held_out} (calibration: first {calibration} frames)\n\n"
        "| failed print | pauses in normal part | anomalous normal frames after calibration "
        "| frames onset → first pause | pauses in failure | anomalous failure frames |\n"
        "|---|---:|---:|---:|---:|---:|"
    )
    body = [
        f"| {f} | {r['normal_pauses']} / {r['normal_frames']} frames "
        f"| {r['normal_anomalous']} / {r['normal_scored_after_calibration']} "
        f"(longest run {r['normal_longest_anomalous_run']}) "
        f"| {r['frames_to_pause'] if r['frames_to_pause'] is not None else 'never'} "
        f"| {r['failure_pauses']} | {r['failure_anomalous']} / {r['failure_frames']} |"
        for f, r in rows.items()
    ]
    return "\n".join([head, *body])


def summary(folds: dict[str, dict[str, Any]]) -> str:
    lines = [
        "### summary",
        "",
        "| held out | pauses in normal part (any sequence) | median / max frames to pause "
        "| failures never paused | train s |",
        "|---|---:|---:|---|---:|",
    ]
    for h, fold in folds.items():
        rows = fold["sequences"].values()
        ttp = [r["frames_to_pause"] for r in rows if r["frames_to_pause"] is not None]
        never = [f for f, r in fold["sequences"].items() if r["frames_to_pause"] is None]
        ttp_text = f"{statistics.median(ttp):g} / {max(ttp)}" if ttp else "-"
        lines.append(
            f"| {h} | {max(r['normal_pauses'] for r in rows)} | {ttp_text} "
            f"| {', '.join(never) or 'none'} | {fold['train_s'] or 'reused'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=KAGGLE, help="Kaggle-layout folder")
    ap.add_argument(
        "--bundles",
        action="append",
        default=[],
        metavar="H=BUNDLE",
        help="reuse this bundle for held-out session H instead of training (repeatable)",
    )
    ap.add_argument(
        "--sessions",
        help="held-out sessions to run, comma-separated (default: all normal sessions)",
    )
    ap.add_argument(
        "--runs", type=Path, help="where trained runs go (default: a new temporary folder, kept)"
    )
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)

    if no_kaggle_data(args.data):
        return 0
    normal, failed = sessions_in_time_order(args.data)
    reuse = dict(b.split("=", 1) for b in args.bundles if "=" in b)
    held_outs = args.sessions.split(",") if args.sessions else sorted(normal)
    if any(h not in normal for h in [*held_outs, *reuse]):
        ap.error(f"--sessions/--bundles: sessions must be among {sorted(normal)}")
    if any(h not in reuse for h in held_outs) and importlib.util.find_spec("tensorflow") is None:
        print(
            "skipped: training needs the trainer extra (tensorflow); install it or pass --bundles H=BUNDLE"
        )
        return 0
    runs = args.runs or Path(tempfile.mkdtemp(prefix="time-to-pause-runs-"))
    results: dict[str, dict[str, Any]] = {}
    for h in held_outs:
        started = time.monotonic()
        bundle = Path(reuse[h]) if h in reuse else train_bundle(args.data, h, runs)
        train_s = None if h in reuse else round(time.monotonic() - started)
        print(
            f"{h}: bundle {bundle} (reuse with --bundles {h}={bundle})", file=sys.stderr, flush=True
        )
        calibration = Bundle.load(bundle).meta.adaptation.frames
        rows = {}
        for f, frames in sorted(failed.items()):
            with tempfile.TemporaryDirectory(prefix="time-to-pause-") as work:
                scored = replay(bundle, normal[h] + frames, Path(work))
            rows[f] = measure(scored, len(normal[h]), calibration)
        results[h] = {
            "bundle": shown(bundle),
            "train_s": train_s,
            "calibration_frames": calibration,
            "sequences": rows,
        }
        print(table(h, rows, calibration) + "\n", flush=True)
    print(summary(results))
    if args.json:
        args.json.write_text(
            json.dumps({"data": shown(args.data), "folds": results}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
