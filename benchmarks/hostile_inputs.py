"""Peak memory of the real daemon while a camera sends hostile images, against a normal camera.

    .venv/bin/python benchmarks/hostile_inputs.py [--seconds 20] [--json benchmarks/results/hostile_inputs.json]

Each case starts ``python -m watchdog run`` (the shipped default model, ``interval_s: 0.01``:
as many frames as the step allows) on the HTTP test camera from tests/plugins/camera.py,
which sends the case's image for every snapshot or stream part, or on an H.264 RTSP camera
(GStreamer's RTSP server, tests/plugins/rtsp.py) of the case's size. The baseline case, in the
same run, sends ordinary 640x480 JPEGs. Recorded per case: the daemon's peak RSS (VmHWM
from /proc, start-up included), its RSS at the end, frames scored and refused (from
/metrics), and the peak as a ratio of the baseline's. The budget is 150 MB (MemoryMax=300M
in the systemd unit leaves room for the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.daemon_helpers import DaemonProcess, free_port, write_config  # noqa: E402

PRINTER = "p1"
BUDGET_MB = 150.0
# (case, camera fault served, snapshot, stream or rtsp, what the daemon should do with it)
CASES = [
    ("baseline 640x480 JPEG", None, "snapshot", "score"),
    ("4000x3000 JPEG", "huge_jpeg", "snapshot", "score (decoded at 1/4)"),
    ("4000x3000 JPEG, MJPEG stream", "huge_jpeg", "stream", "score (decoded at 1/4)"),
    ("16-bit RGBA 4000x4000 PNG", "png16_rgba", "snapshot", "refuse"),
    ("16-bit RGBA 4000x4000 PNG, MJPEG stream", "png16_rgba", "stream", "refuse"),
    ("progressive 4000x3000 JPEG", "progressive_jpeg", "snapshot", "refuse"),
    ("8-bit 2000x1500 PNG", "big_png", "snapshot", "refuse"),
    ("8-bit 1920x1080 PNG", "png_1080p", "snapshot", "score (decoded whole)"),
    ("PNG header declaring 30000x30000", "bomb_png", "snapshot", "refuse"),
    ("JPEG header declaring 30000x30000", "bomb_jpeg", "snapshot", "refuse"),
    ("JPEG cut in half, closed with FFD9", "truncated_eoi", "snapshot", "refuse"),
    ("4000x3000 JPEG, first scan of one colour", "multiscan_jpeg", "snapshot", "refuse"),
    ("16000x200 JPEG", "narrow_jpeg", "snapshot", "refuse"),
    ("8184x1023 JPEG", "long_jpeg", "snapshot", "score (decoded at 1/4)"),
    # a 16 MP camera watched through a region a tenth of the picture each way
    # (detection.region): four frame pixels per model pixel would take the whole picture
    ("4608x3456 JPEG, a region a tenth wide", "jpeg_16mp", "snapshot", "score (decoded at 1/2)"),
    # an IP camera's main stream, H.264 over RTSP (GStreamer's server, tests/plugins/rtsp.py):
    # FFmpeg decodes every frame in the camera's grab thread, whatever the interval
    ("1920x1080 H.264 RTSP stream", "rtsp_1080p", "rtsp", "score (shrunk to 1/2)"),
    ("3840x2160 H.264 RTSP stream", "rtsp_2160p", "rtsp", "score (shrunk to 1/4)"),
]
RTSP_SIZES = {"rtsp_1080p": (1920, 1080), "rtsp_2160p": (3840, 2160)}
REGIONS = {"jpeg_16mp": [0.45, 0.45, 0.55, 0.55]}  # detection.region of a case's printers
_METRIC = r'^printer_watchdog_{}_total\{{printer="{}"\}} ([0-9.e+]+)$'


def textured(width: int, height: int, seed: int) -> np.ndarray:
    """A camera-like frame: smooth random texture."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
    return cv2.GaussianBlur(
        cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), (0, 0), 1.0
    )


def proc_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def metric(port: int, name: str) -> int:
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return 0
    m = re.search(_METRIC.format(name, PRINTER), text, re.M)
    return int(float(m.group(1))) if m else 0


def run_case(
    camera: Any,
    workdir: Path,
    name: str,
    fault: str | None,
    kind: str,
    seconds: float,
    printers: int = 1,
) -> dict[str, Any]:
    port = free_port()
    rtsp = None
    if kind == "rtsp":
        assert fault is not None
        from tests.plugins.rtsp import RtspCamera

        picture = workdir / f"{fault}.jpg"
        cv2.imwrite(str(picture), textured(*RTSP_SIZES[fault], seed=1))
        rtsp = RtspCamera(picture, "h264")
        rtsp.start()
        url = rtsp.url
    else:
        url = camera.stream_url if kind == "stream" else camera.snapshot_url
    case_dir = workdir / re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    case_dir.mkdir(parents=True, exist_ok=True)
    config = write_config(
        case_dir / "config.yaml",
        mqtt={"host": ""},
        http={"listen": f"127.0.0.1:{port}"},
        storage={"dir": str(case_dir / "state")},
        printers=[  # ``printers`` cameras sending the same pictures at once
            {
                "name": PRINTER if i == 0 else f"{PRINTER}-{i + 1}",
                "camera": {"source": url, "interval_s": 0.01, "timeout_s": 10},
                "action": "notify",
                **({"detection": {"region": REGIONS[fault]}} if fault in REGIONS else {}),
            }
            for i in range(printers)
        ],
    )
    camera.set_fault(None if rtsp else fault)
    camera.fps = 5.0  # stream parts of several MB: what a struggling camera would send
    daemon = DaemonProcess(config, case_dir / "daemon.log")
    rss_max = 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and daemon.alive():
            rss_max = max(rss_max, proc_kb(daemon.proc.pid, "VmRSS"))
            time.sleep(0.1)
        if not daemon.alive():
            raise SystemExit(f"{name}: the daemon stopped:\n{daemon.log}")
        hwm = proc_kb(daemon.proc.pid, "VmHWM")
        rss_end = proc_kb(daemon.proc.pid, "VmRSS")
        scored, frames, bad = (
            metric(port, "scored_frames"),
            metric(port, "frames"),
            metric(port, "bad_frames"),
        )
    finally:
        rc = daemon.stop()
        camera.set_fault(None)
        if rtsp is not None:
            rtsp.stop()
    lines = daemon.log.splitlines()
    refusals = [ln for ln in lines if "bad frame:" in ln] or [
        ln for ln in lines if "offline:" in ln
    ]
    last_error = refusals[0].split("bad frame: ", 1)[-1][:160] if refusals else ""
    return {
        "case": name,
        "fault": fault,
        "source": kind,
        "expected": "",
        "peak_rss_mb": round(hwm / 1024, 1),
        "max_sampled_rss_mb": round(rss_max / 1024, 1),
        "rss_at_end_mb": round(rss_end / 1024, 1),
        "frames_scored": scored,
        "frames_read": frames,
        "bad_frames": bad,
        "first_refusal": last_error,
        "daemon_exit": rc,
        "printers": printers,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="seconds per case (default 20)")
    ap.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results" / "hostile_inputs.json"
    )
    ap.add_argument(
        "--only",
        default="",
        metavar="FAULT,...",
        help="only these camera faults (and the baseline), e.g. multiscan_jpeg,narrow_jpeg",
    )
    ap.add_argument(
        "--printers",
        type=int,
        default=1,
        help="printers in the daemon, each with a camera sending the case's pictures at once "
        "(default 1; their figures are the first printer's)",
    )
    args = ap.parse_args(argv)
    only = {f for f in args.only.split(",") if f}
    cases = [c for c in CASES if not only or c[1] is None or c[1] in only]

    from tests.plugins.camera import CameraServer

    camera = CameraServer()
    camera.set_frames([textured(640, 480, seed) for seed in range(4)])
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
            for name, fault, kind, expected in cases:
                row = run_case(camera, Path(tmp), name, fault, kind, args.seconds, args.printers)
                row["expected"] = expected
                rows.append(row)
                print(
                    f"{name:42s} peak {row['peak_rss_mb']:6.1f} MB  scored {row['frames_scored']:5d}  "
                    f"refused {row['bad_frames']:5d}  {row['first_refusal'][:70]}",
                    flush=True,
                )
    finally:
        camera.close()
    base = rows[0]["peak_rss_mb"]
    for row in rows:
        row["peak_vs_baseline"] = round(row["peak_rss_mb"] / base, 3)
        row["within_budget"] = row["peak_rss_mb"] <= BUDGET_MB
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, OpenCV {cv2.__version__}",
        "seconds_per_case": args.seconds,
        "printers": args.printers,
        "budget_mb": BUDGET_MB,
        "cases": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print("\n| case | peak RSS (MB) | vs. baseline | frames scored | frames refused |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['case']} | {row['peak_rss_mb']} | {row['peak_vs_baseline']:.2f}x | {row['frames_scored']} | {row['bad_frames']} |"
        )
    ok = all(r["within_budget"] and r["daemon_exit"] == 0 for r in rows)
    print("OK" if ok else "OVER BUDGET OR FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
