"""Per-frame cost and memory of the daemon, not run in CI.

    .venv/bin/python benchmarks/frame_cost.py [--model BUNDLE] [--frames N] [--seconds S]

Measures, in one run on this machine:
1. the whole per-frame step: JPEG decode + preprocess + inference + error map + score +
   heatmap overlay + JPEG encode, with one interpreter thread and with all cores, for the
   bundle and, as the baseline in the same run, the seed post's 400x400 architecture
   (random weights: cost does not depend on them; needs the `train` extra to build it);
2. the daemon's peak RSS (VmHWM) while watching a real HTTP camera at full speed;
3. time from the first anomalous frame to the pause request, replaying the built-in demo
   sequence at the default detection settings.
Budgets: <= 150 MB RSS, <= 50 ms per frame on one thread.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.paths import shown  # noqa: E402
from watchdog.detection.bundle import Bundle, default_bundle_path, encode_jpeg  # noqa: E402
from watchdog.detection.detector import Detector  # noqa: E402
from watchdog.image_files import read_bgr_file  # noqa: E402

KAGGLE = ROOT.parent / "shared" / "data" / "kaggle-3d-printer"
DEMO_FRAMES = ROOT / "watchdog" / "demo" / "frames"


def camera_jpegs(n: int) -> list[bytes]:
    """Real 640x480 camera JPEGs where the data is here, else the demo frames scaled up."""
    paths = sorted((KAGGLE / "no_defected").glob("*.jpg"))[:n] if KAGGLE.is_dir() else []
    if not paths:
        paths = sorted(DEMO_FRAMES.glob("*.jpg"))
    out = []
    for p in paths:
        img = read_bgr_file(p)
        img = cv2.resize(img, (640, 480)) if img.shape[:2] != (480, 640) else img
        out.append(encode_jpeg(img, 90))
    return (out * (n // len(out) + 1))[:n]


def decoded(data: bytes) -> np.ndarray:
    """A JPEG made here, decoded as the daemon decodes a camera's."""
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert frame is not None
    return frame


def step_cost(bundle: Bundle, jpegs: list[bytes], threads: int) -> dict[str, float]:
    """The daemon's per-frame work (Watcher.step's): decode, the detector's verdict, the frame's
    JPEG, the heatmap drawn on the frame and its JPEG."""
    detector = Detector.for_bundle(bundle, num_threads=threads)
    times = []
    for i, data in enumerate(jpegs):
        t0 = time.perf_counter()
        frame = decoded(data)
        verdict = detector.observe(frame)
        encode_jpeg(frame)
        encode_jpeg(detector.heatmap(frame, verdict, in_place=True))
        if i >= 5:  # warm-up
            times.append(time.perf_counter() - t0)
    return {
        "median_ms": 1000 * statistics.median(times),
        "p95_ms": 1000 * float(np.percentile(times, 95)),
    }


def start_cost(bundle: Bundle, jpegs: list[bytes], judged: bool, prints: int = 5) -> float:
    """Median ms of the daemon's per-frame work on the frames of a print's start that its start
    judgement scores (after ``adaptation.early_frames``, before the start is learnt), one
    thread; ``judged=False``: the same bundle with that judgement off, the baseline."""
    a = bundle.meta.adaptation
    meta = bundle.meta if judged else replace(bundle.meta, adaptation=replace(a, early_frames=0))
    detector = Detector.for_bundle(Bundle(bundle.path, meta), num_threads=1)
    times = []
    for _ in range(prints):
        detector.relearn()
        for i, data in enumerate(jpegs[: a.frames]):
            t0 = time.perf_counter()
            frame = decoded(data)
            verdict = detector.observe(frame)
            encode_jpeg(frame)
            encode_jpeg(detector.heatmap(frame, verdict, in_place=True))
            if a.early_frames <= i < a.frames - 1:  # the last start frame also learns the start
                times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def seed_bundle(folder: Path) -> Bundle | None:
    """The seed architecture (400x400x3) as a bundle with random weights, or None without TF."""
    try:
        from trainer.export import convert
        from trainer.model import build_autoencoder, get_preset
    except ImportError:
        return None
    preset = get_preset("seed")
    model = build_autoencoder(preset.model, preset.preprocess.shape)
    folder.mkdir(parents=True, exist_ok=True)
    tflite = convert(model)
    (folder / "model.tflite").write_bytes(tflite)
    base = Bundle.load(default_bundle_path()).meta
    meta = replace(
        base,
        model_sha256=hashlib.sha256(tflite).hexdigest(),
        adaptation=type(base.adaptation)(),
        preprocess=preset.preprocess,
        scoring=preset.scoring,
        input_shape=(1, *preset.preprocess.shape),
        output_shape=(1, *preset.preprocess.shape),
    )
    bundle = Bundle(folder, meta)
    bundle.save_meta()
    return bundle


def daemon_peak_rss(model: Path, seconds: float) -> dict[str, float]:
    """Run `python -m watchdog run` against a real HTTP camera at full speed; read VmHWM."""
    from tests.plugins.camera import CameraServer

    camera = CameraServer()
    frames = [decoded(j) for j in camera_jpegs(8)]
    camera.set_frames(frames)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "config.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "model": shown(model),
                    "http": {"listen": ""},
                    "storage": {"dir": tmp},
                    "printers": [
                        {
                            "name": "bench",
                            "camera": {"source": camera.snapshot_url, "interval_s": 0.01},
                        }
                    ],
                }
            )
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "watchdog", "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
        )
        rss = []
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and proc.poll() is None:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                rss.append((int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])))
                time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(15)
            camera.close()
    return {
        "peak_rss_mb": rss[-1][1] / 1024,
        "final_rss_mb": rss[-1][0] / 1024,
        "samples": len(rss),
    }


def replay_time_to_pause(model: Path) -> dict[str, object]:
    """Replay the demo's camera sequence (normal stills until the baseline is set, then the failure)."""
    from watchdog.commands.demo import demo_sequence

    with tempfile.TemporaryDirectory() as tmp:
        camera = demo_sequence(
            DEMO_FRAMES, Bundle.load(model).meta.adaptation.frames, Path(tmp) / "camera"
        )
        cfg = Path(tmp) / "config.yaml"
        cfg.write_text(json.dumps({"model": str(model), "printers": [{"name": "bench"}]}))
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "watchdog",
                "replay",
                "--config",
                str(cfg),
                "--frames",
                str(camera),
                "--out",
                tmp,
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    frames = [x for x in lines if "frame" in x and "event" not in x]
    onset = next(i for i, x in enumerate(frames) if "failure" in x["frame"])
    acted = [i for i, x in enumerate(frames) if x["action"]]
    first = next((i for i in acted if i >= onset), None)
    interval = 10.0  # the default camera.interval_s
    return {
        "pauses_during_normal": sum(1 for i in acted if i < onset),
        "frames_from_onset_to_pause": None if first is None else first - onset + 1,
        "seconds_at_default_interval": None if first is None else (first - onset + 1) * interval,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default=str(default_bundle_path()))
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument(
        "--seconds", type=float, default=30.0, help="how long to watch for the RSS figure"
    )
    ap.add_argument("--json", type=Path, help="also write the results to this file")
    args = ap.parse_args()
    bundle = Bundle.load(args.model)
    jpegs = camera_jpegs(args.frames)
    cores = os.cpu_count() or 1
    results: dict[str, object] = {
        "model": shown(args.model),
        "model_bytes": bundle.model_path.stat().st_size,
        "input": list(bundle.meta.preprocess.shape),
        "frames": len(jpegs),
    }
    results["default_1_thread"] = default_1 = step_cost(bundle, jpegs, 1)
    results[f"default_{cores}_threads"] = step_cost(bundle, jpegs, cores)
    with tempfile.TemporaryDirectory() as tmp:
        seed = seed_bundle(Path(tmp) / "seed")
        if seed is not None:
            results["seed_1_thread"] = seed_1 = step_cost(seed, jpegs[:60], 1)
            results[f"seed_{cores}_threads"] = step_cost(seed, jpegs[:60], cores)
            results["ratio_default_to_seed_1_thread"] = default_1["median_ms"] / seed_1["median_ms"]
    if bundle.meta.adaptation.judges_start:
        judged, unjudged = start_cost(bundle, jpegs, True), start_cost(bundle, jpegs, False)
        results["start_judged_1_thread_median_ms"] = judged
        results["start_unjudged_1_thread_median_ms"] = unjudged
        results["ratio_start_judged_to_unjudged"] = judged / unjudged
    results["daemon"] = daemon_peak_rss(Path(args.model), args.seconds)
    results["load_average"] = os.getloadavg()[0]  # what else ran: milliseconds depend on it
    results["replay_demo"] = replay_time_to_pause(Path(args.model))
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
