"""Any camera's framing: the shipped model on the Kaggle prints seen through other framings.

    .venv/bin/python benchmarks/framing.py [--data DIR] [--bundle DIR] [--json FILE]

A user's camera may frame the bed at the top, in the centre, at a side, closer or further than
the Kaggle camera. Each framing here is the Kaggle frame moved, scaled or mirrored inside the
picture (the rest filled by the nearest edge, as a wall or a bed would continue, or by a dark
room for a camera further away). For every framing the shipped bundle judges every print
through the daemon's own ``Detector`` (TFLite model, light matching, per-print baseline, start
guard) and ``decide`` at the default detection settings, twice: with the bundle's own region
(the bottom half of the picture) and with ``detection.region`` set to where the bed now is
(the bundle's region carried through the same move).

Per framing and region it reports, over the three normal prints:
- the share of each normal print's frames after calibration above the threshold and the pauses
  of the normal print (replayed from its first frame);
- recall: each normal print's first frames (calibration), then each failed print's first
  ``FAILED_FRAMES`` frames, the share above the threshold; and frames to pause for each failed
  print after that calibration;
- each failed print replayed from its own first frame: frames to pause (the start guard).

The shipped bundle was trained on all three normal prints, so "as trained" is optimistic (the
prints are the model's own); the other framings show what moves when the view changes.
Skips (exit 0) when the data folder is absent. Needs only the daemon's dependencies.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.paths import shown  # noqa: E402
from watchdog.config import CameraConfig, DetectionConfig  # noqa: E402
from watchdog.detection import decide  # noqa: E402
from watchdog.detection.bundle import Bundle, default_bundle_path  # noqa: E402
from watchdog.detection.detector import Detector, Region  # noqa: E402
from watchdog.image_files import read_bgr_file  # noqa: E402

KAGGLE = ROOT.parent / "shared" / "data" / "kaggle-3d-printer"
SETTINGS = decide.Settings.from_config(DetectionConfig())
INTERVAL_S = CameraConfig().interval_s
SIZE = (320, 240)  # frames are judged at half the Kaggle resolution (the model input is 128x64)
FAILED_FRAMES = 40  # of each failed print, its first ones: pauses come within them or not at all


@dataclass(frozen=True)
class Framing:
    """Where the whole Kaggle picture lands in the new one (0..1, may reach outside), mirrored or not."""

    name: str
    dest: tuple[float, float, float, float]
    flip: bool = False
    fill: str = "edge"  # "edge": the picture's border continues; "dark": a dark room around it

    def apply(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        x0, y0, x1, y1 = self.dest
        src = cv2.flip(img, 1) if self.flip else img
        sx, sy = (x1 - x0), (y1 - y0)
        m = np.array([[sx, 0, x0 * w], [0, sy, y0 * h]], dtype=np.float64)
        border = cv2.BORDER_REPLICATE if self.fill == "edge" else cv2.BORDER_CONSTANT
        return cv2.warpAffine(
            src,
            m,
            (w, h),
            flags=cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR,
            borderMode=border,
            borderValue=(30, 30, 30),
        )

    def region(self, roi: Region) -> Region:
        """The bundle's region carried through this framing: where the bed now is."""
        x0, y0, x1, y1 = self.dest
        rx0, ry0, rx1, ry1 = roi
        if self.flip:
            rx0, rx1 = 1.0 - rx1, 1.0 - rx0
        box = (
            x0 + rx0 * (x1 - x0),
            y0 + ry0 * (y1 - y0),
            x0 + rx1 * (x1 - x0),
            y0 + ry1 * (y1 - y0),
        )
        return (
            round(max(box[0], 0.0), 3),
            round(max(box[1], 0.0), 3),
            round(min(box[2], 1.0), 3),
            round(min(box[3], 1.0), 3),
        )


FRAMINGS = [
    Framing("as trained", (0.0, 0.0, 1.0, 1.0)),
    Framing("mirrored", (0.0, 0.0, 1.0, 1.0), flip=True),
    Framing("closer (zoom 1.4x on the bed)", (-0.2, -0.4, 1.2, 1.0)),
    Framing("further (0.6x, centred)", (0.2, 0.2, 0.8, 0.8), fill="dark"),
    Framing("tilted down (bed in the top half)", (0.0, -0.4, 1.0, 0.6)),
    Framing("shifted sideways (25%)", (0.25, 0.0, 1.25, 1.0)),
    Framing("in a corner (0.6x, bottom right)", (0.4, 0.4, 1.0, 1.0), fill="dark"),
]


def load_prints(data: Path) -> tuple[dict[str, list[np.ndarray]], dict[str, list[np.ndarray]]]:
    """(normal, failed) prints: BGR frames at ``SIZE``, in frame-number (time) order."""
    from benchmarks.time_to_pause import sessions_in_time_order

    normal, failed = sessions_in_time_order(data)

    def load(paths: list[Path]) -> list[np.ndarray]:
        return [cv2.resize(read_bgr_file(p), SIZE, interpolation=cv2.INTER_AREA) for p in paths]

    return (
        {k: load(v) for k, v in normal.items()},
        {k: load(v[:FAILED_FRAMES]) for k, v in failed.items()},
    )


def _pause(anomalous: list[bool]) -> int | None:
    fired = decide.fires(anomalous, SETTINGS, INTERVAL_S)
    return fired[0] + 1 if fired else None


def measure(
    bundle: Bundle,
    framing: Framing,
    region: Region | None,
    normal: dict[str, list[np.ndarray]],
    failed: dict[str, list[np.ndarray]],
) -> dict[str, Any]:
    """One framing, one region setting: every print through one printer's ``Detector``."""
    detector = Detector.for_bundle(bundle, region=region)
    k = detector.calibration_frames
    moved_failed = {f: [framing.apply(x) for x in frames] for f, frames in failed.items()}
    out: dict[str, Any] = {
        "framing": framing.name,
        "region": list(region) if region else None,
        "prints": {},
    }
    for h, frames in normal.items():
        moved = [framing.apply(x) for x in frames]
        detector.relearn()
        verdicts = [detector.observe(x) for x in moved]
        later = [v.anomalous for v in verdicts[k:]]
        fired = decide.fires([v.anomalous for v in verdicts], SETTINGS, INTERVAL_S)
        row: dict[str, Any] = {
            "false_alarm_rate": float(np.mean(later)),
            "pauses": len(fired),
            "pauses_in_start": sum(i < k for i in fired),
            "start_above_guard": sum(v.absolute_score > v.guard > 0 for v in verdicts[:k]),
            "after_calibration": {},
        }
        above = []
        for f, frames_f in moved_failed.items():
            detector.relearn()
            for x in moved[:k]:
                detector.observe(x)
            anomalous = [detector.observe(x).anomalous for x in frames_f]
            above += anomalous
            row["after_calibration"][f] = _pause(anomalous)
        row["recall"] = float(np.mean(above))
        out["prints"][h] = row
    own = {}
    for f, frames_f in moved_failed.items():
        detector.relearn()
        own[f] = _pause([detector.observe(x).anomalous for x in frames_f])
    out["failed_from_first_frame"] = own
    rows = out["prints"].values()
    out["false_alarm_rate"] = float(np.mean([r["false_alarm_rate"] for r in rows]))
    out["recall"] = float(np.mean([r["recall"] for r in rows]))
    out["normal_pauses"] = int(sum(r["pauses"] for r in rows))
    out["normal_pauses_in_start"] = int(sum(r["pauses_in_start"] for r in rows))
    pauses = [v for r in rows for v in r["after_calibration"].values()]
    out["failed_paused_after_calibration"] = f"{sum(v is not None for v in pauses)}/{len(pauses)}"
    out["median_frames_to_pause"] = (
        float(np.median([v for v in pauses if v is not None]))
        if any(v is not None for v in pauses)
        else None
    )
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| framing | region | FPR@thr (mean of 3 prints) | pauses of normal prints (in the start) | recall@thr (mean, first 40 frames of the failed prints) "
        "| failed prints paused after a normal start (median frames) | failed from their first frame: frames to pause |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        region = "bundle's (bottom half)" if r["region"] is None else f"set: {r['region']}"
        own = ", ".join(
            "never" if v is None else str(v) for v in r["failed_from_first_frame"].values()
        )
        med = "-" if r["median_frames_to_pause"] is None else f"{r['median_frames_to_pause']:g}"
        lines.append(
            f"| {r['framing']} | {region} | {r['false_alarm_rate']:.3f} | {r['normal_pauses']} ({r['normal_pauses_in_start']}) | "
            f"{r['recall']:.3f} | {r['failed_paused_after_calibration']} ({med}) | {own} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, default=KAGGLE, help="Kaggle-layout folder (default: %(default)s)"
    )
    p.add_argument(
        "--bundle",
        type=Path,
        default=default_bundle_path(),
        help="bundle (default: the shipped one)",
    )
    p.add_argument("--framings", help="comma-separated indices into the framings (default: all)")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if not (args.data / "no_defected").is_dir() or not (args.data / "defected").is_dir():
        print(f"skipped: no Kaggle data at {args.data} (needs no_defected/ and defected/)")
        return 0
    started = time.perf_counter()
    bundle = Bundle.load(args.bundle)
    normal, failed = load_prints(args.data)
    framings = [FRAMINGS[int(i)] for i in args.framings.split(",")] if args.framings else FRAMINGS
    roi = bundle.meta.preprocess.roi
    results: list[dict[str, Any]] = []
    for framing in framings:
        regions: list[Region | None] = [None]
        if framing.region(roi) != tuple(roi):
            regions.append(framing.region(roi))
        for region in regions:
            r = measure(bundle, framing, region, normal, failed)
            results.append(r)
            print(table([r]).splitlines()[-1], flush=True)
            if args.json:  # after every row: a long run stopped early keeps what it measured
                meta = bundle.meta
                args.json.write_text(
                    json.dumps(
                        {
                            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                            "bundle": shown(args.bundle),
                            "bundle_created": meta.created,
                            "adaptation": {
                                "threshold": meta.adaptation.threshold,
                                "guard": meta.adaptation.guard,
                            },
                            "frame_size": list(SIZE),
                            "seconds": round(time.perf_counter() - started),
                            "results": results,
                        },
                        indent=2,
                    )
                    + "\n"
                )
    print("\n" + table(results))
    print(f"\n{round(time.perf_counter() - started)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
