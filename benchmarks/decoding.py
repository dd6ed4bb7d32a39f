"""What the camera's decoding checks cost in scores and catch: reduced-size decoding, cut JPEGs.

    .venv/bin/python benchmarks/decoding.py [--data ../shared/data/kaggle-3d-printer] [--frames 60]

1. Reduced-size decoding.
Frames of the Kaggle dataset (640x480) are scored with the shipped default model as the
camera would send them at several sizes (enlarged, then JPEG-encoded at quality 90): once
decoded whole (what the daemon did before) and once as ``decode_image`` decodes them for
the model now. At 640x480 up to 1280x720 nothing is reduced (the frames are bit-identical);
larger frames are decoded at 1/2, 1/4 or 1/8. Reported per size: the reduction factor, the
largest change of a model-input pixel, and the score change relative to the threshold. Then
the same for a region a tenth of the picture each way on a 12 and a 16 MP camera (the
enlarged Kaggle frame holds little fine detail there, so a real camera's may move more).

2. JPEGs cut short and closed with FFD9 (a camera or proxy that ends a frame early): each
frame is cut at 3 random points (10 %-100 % of its bytes) and the refusals counted; the
whole frames must all be accepted (false refusals).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from watchdog.detection.bundle import Bundle, Preprocess, default_bundle_path  # noqa: E402
from watchdog.detection.model import FrameScorer  # noqa: E402
from watchdog.devices.capture import BadFrame, decode_image, frame_size_needed, reduction  # noqa: E402
from watchdog.image_files import read_bgr_file  # noqa: E402

SIZES = [(640, 480), (1280, 720), (1920, 1080), (2592, 1944), (4000, 3000)]
# a region a tenth of the picture each way (detection.region) on a 12 and a 16 MP camera: the
# margin would take the picture whole; it gives way past MARGIN_MAX_PIXELS
SMALL_REGION = (0.45, 0.45, 0.55, 0.55)
REGION_SIZES = [(4000, 3000), (4608, 3456)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--data", type=Path, default=ROOT.parent / "shared" / "data" / "kaggle-3d-printer"
    )
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--cut-frames", type=int, default=400, help="frames for the cut-JPEG check")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "decoding.json")
    args = ap.parse_args(argv)
    files = sorted(args.data.rglob("*.jpg"))
    files = files[:: max(1, len(files) // args.frames)][: args.frames]
    if not files:
        print(f"no frames under {args.data}", file=sys.stderr)
        return 2
    bundle = Bundle.load(default_bundle_path())
    scorer = FrameScorer(bundle)
    whole_region = bundle.meta.preprocess
    rows = []
    cases = [(w, h, None) for w, h in SIZES] + [(w, h, SMALL_REGION) for w, h in REGION_SIZES]
    for width, height, region in cases:
        pre = whole_region if region is None else dataclasses.replace(whole_region, roi=region)
        need = frame_size_needed(pre)

        def score(frame: np.ndarray, pre: Preprocess = pre) -> float:
            return scorer.scoring.score(scorer.error_map(pre.apply(frame)))

        d_input, d_score = [], []
        for f in files:
            src = read_bgr_file(f)
            big = (
                src
                if src.shape[1::-1] == (width, height)
                else cv2.resize(src, (width, height), interpolation=cv2.INTER_CUBIC)
            )
            jpeg = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            full = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
            assert full is not None  # a JPEG made here
            reduced = decode_image(jpeg, 64_000_000, need)
            d_input.append(float(np.abs(pre.apply(full) - pre.apply(reduced)).max()))
            d_score.append(abs(score(full) - score(reduced)))
        row = {
            "size": f"{width}x{height}",
            "region": list(region) if region else None,
            "need": list(need),
            "reduction": reduction(width, height, need),
            "frames": len(files),
            "max_input_change_grey_levels": round(max(d_input) * 255, 2),
            "mean_abs_score_change_vs_threshold": round(
                float(np.mean(d_score)) / bundle.meta.threshold, 5
            ),
            "max_abs_score_change_vs_threshold": round(max(d_score) / bundle.meta.threshold, 5),
        }
        rows.append(row)
        print(row, flush=True)
    need = frame_size_needed(whole_region)
    truncation = cut_jpegs(sorted(args.data.rglob("*.jpg")), args.cut_frames, need)
    print(truncation, flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "model": "default",
                "need": list(need),
                "reduced_decoding": rows,
                "cut_jpegs": truncation,
            },
            indent=1,
        )
        + "\n"
    )
    return 0


def cut_jpegs(files: list[Path], n: int, need: tuple[int, int]) -> dict[str, int | float]:
    rng = random.Random(0)
    files = rng.sample(files, min(n, len(files)))
    false_refusals = refused = cuts = 0
    for f in files:
        data = f.read_bytes()
        try:
            decode_image(data, 64_000_000, need)
        except BadFrame:
            false_refusals += 1
        for _ in range(3):
            cut = data[: rng.randint(len(data) // 10, len(data) - 10)] + b"\xff\xd9"
            cuts += 1
            try:
                decode_image(cut, 64_000_000, need)
            except BadFrame:
                refused += 1
    return {
        "frames": len(files),
        "false_refusals": false_refusals,
        "cuts": cuts,
        "cuts_refused": refused,
        "cuts_refused_share": round(refused / cuts, 3) if cuts else 0.0,
    }


if __name__ == "__main__":
    sys.exit(main())
