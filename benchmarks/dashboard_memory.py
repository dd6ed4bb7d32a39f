"""The dashboard's cost to the daemon: peak RSS and CPU per frame, page open against closed.

    .venv/bin/python benchmarks/dashboard_memory.py [--seconds 90] [--interval 0.5] [--json FILE]

Three runs of `python -m watchdog run` in the same session, same shipped model, same real
HTTP camera (640x480 JPEGs of the demo frames, the size of a typical printer webcam), no
printer API (watching all the time):

1. ``no_http``: ``http.listen: ""``: no web server at all (the baseline);
2. ``page_closed``: the server (Flask + waitress) up, nobody looking;
3. ``page_open``: Debian's headless Chromium on the dashboard for the whole run, live-updating
   (it polls the state, the timeline and the latest heatmap every 2 s).

Reported per run: the daemon's peak RSS (VmHWM), its CPU time (user + system) per scored
frame, and both as ratios to ``no_http``. Not run in CI (it takes minutes); the budget is
<= 150 MB peak RSS with the page open.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser import chromium  # noqa: E402
from tests.plugins.camera import CameraServer  # noqa: E402
from tests.plugins.mosquitto import free_port  # noqa: E402
from watchdog.image_files import read_bgr_file  # noqa: E402

DEMO_FRAMES = ROOT / "watchdog" / "demo" / "frames"
MODEL = ROOT / "watchdog" / "models" / "default"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_stats(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return {
        "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
        "hwm_mb": int(fields["VmHWM"].split()[0]) / 1024,
        "cpu_s": (int(stat[11]) + int(stat[12])) / CLK_TCK,  # utime + stime
    }


def browser(url: str) -> tuple[Any, Path]:
    """A headless Chromium on ``url``, and its profile folder (removed after)."""
    driver = chromium()
    driver.get(url)
    return driver, driver._profile


@dataclass
class Run:
    """One variant's daemon, as measured; the ratios against the first (no HTTP) are set after."""

    variant: str
    frames: int
    peak_rss_mb: float
    cpu_ms_per_frame: float
    timeline_points_on_page: int | None
    rss_ratio: float = 1.0
    cpu_ratio: float = 1.0


def run(variant: str, camera: CameraServer, seconds: float, interval: float, tmp: Path) -> Run:
    port = free_port()
    listen = "" if variant == "no_http" else f"127.0.0.1:{port}"
    config = tmp / f"{variant}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model": str(MODEL),
                "http": {"listen": listen},
                "storage": {"dir": str(tmp / f"state-{variant}")},
                "printers": [
                    {
                        "name": "ender3",
                        "camera": {
                            "source": camera.snapshot_url,
                            "interval_s": interval,
                            "timeout_s": 5,
                        },
                        "api": {"kind": "none"},
                    }
                ],
            }
        )
    )
    log = open(tmp / f"{variant}.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "watchdog", "run", "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    driver: Any = None
    profile: Path | None = None
    try:
        deadline = time.monotonic() + 60
        while camera.requests == 0:  # the first frame: the model is loaded, the loop runs
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{variant}: the daemon did not start; see {log.name}")
            time.sleep(0.1)
        if variant == "page_open":
            driver, profile = browser(f"http://127.0.0.1:{port}/")
        start_frames, start = camera.requests, proc_stats(proc.pid)
        peak_rss = 0.0
        end_at = time.monotonic() + seconds
        while time.monotonic() < end_at:
            peak_rss = max(peak_rss, proc_stats(proc.pid)["rss_mb"])
            time.sleep(0.5)
        end = proc_stats(proc.pid)
        frames = camera.requests - start_frames
        points = None
        if driver is not None:
            points = int(
                driver.execute_script(
                    "const c = document.querySelector('canvas[data-role=timeline]'); return c ? Number(c.dataset.points) : 0"
                )
            )
            if points < frames // 2:
                raise RuntimeError(
                    f"page_open: the page shows {points} points for {frames} frames: not live-updating"
                )
        if listen:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).raise_for_status()
    finally:
        if driver is not None:
            driver.quit()
        if profile is not None:
            shutil.rmtree(profile, ignore_errors=True)
        proc.terminate()
        proc.wait(30)
        log.close()
    return Run(
        variant,
        frames,
        round(max(end["hwm_mb"], peak_rss), 1),
        round(1000 * (end["cpu_s"] - start["cpu_s"]) / max(frames, 1), 2),
        points,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=90.0, help="measured time per run")
    ap.add_argument("--interval", type=float, default=0.5, help="camera.interval_s of the daemon")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    frames = [
        cv2.resize(read_bgr_file(p), (640, 480)) for p in sorted(DEMO_FRAMES.glob("*normal*.jpg"))
    ]
    camera = CameraServer()
    camera.set_frames(frames)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="dashboard-bench-") as tmp:
            for variant in ("no_http", "page_closed", "page_open"):
                camera.requests = 0
                results.append(run(variant, camera, args.seconds, args.interval, Path(tmp)))
                print(json.dumps(asdict(results[-1])), flush=True)
    finally:
        camera.close()
    base = results[0]
    for r in results:
        r.rss_ratio = round(r.peak_rss_mb / base.peak_rss_mb, 3)
        r.cpu_ratio = round(r.cpu_ms_per_frame / base.cpu_ms_per_frame, 3)
    out = {
        "benchmark": "dashboard_memory",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "seconds_per_run": args.seconds,
        "interval_s": args.interval,
        "budget_peak_rss_mb": 150,
        "runs": [asdict(r) for r in results],
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if all(r.peak_rss_mb <= 150 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
