"""Where the daemon's memory goes, and what it costs per printer (not in CI).

Three measurements, each in fresh processes:

1. imports: RSS of a bare interpreter, then after each import the daemon does, in the
   daemon's order (numpy, OpenCV, the HTTP stack, yaml, paho, prometheus, the TFLite
   runtime, the daemon's own modules); then the model's own cost per printer: RSS after making
   and running 1..8 FrameScorers of the default bundle (the daemon makes one per printer),
   free of the frame timing that makes the daemon's peak noisy;
2. daemon: peak RSS (VmHWM) of `python -m watchdog run` watching N printers (default 1, 2, 4,
   8), each with its own real HTTP snapshot camera (benchmarks/capacity.py's camera process,
   frames at 640x480 or, with --size, 1280x720), at a short interval so that every printer's baseline is calibrated and
   the peak reached; printer API none (the API client holds no frame);
   the per-printer cost is the least-squares slope of peak RSS over N;
3. the same daemon run from a baseline checkout (``--baseline REF``, a git ref extracted to a
   temporary folder) in the same run, so that the result is a ratio against it on the same
   machine at the same time, not against a number measured on another day.

Run: PYTHONPATH=. .venv/bin/python benchmarks/memory.py --baseline <ref> --json benchmarks/results/memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.capacity import CameraFarm  # noqa: E402

IMPORTS = [
    "numpy",
    "cv2",
    "ssl",
    "urllib3",
    "yaml",
    "paho.mqtt.client",
    "prometheus_client",
    "ai_edge_litert.interpreter",
    "watchdog.config",
    "watchdog.detection.bundle",
    "watchdog.detection.model",
    "watchdog.devices.capture",
    "watchdog.devices.printers",
    "watchdog.comms.mqtt",
    "watchdog.metrics",
    "watchdog.watcher",
    "watchdog.daemon",
    "watchdog.__main__",
]

_LADDER = """
import importlib, json, sys
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
out = [("interpreter", rss())]
for name in sys.argv[1:]:
    importlib.import_module(name)
    out.append((name, rss()))
print(json.dumps(out))
"""


def import_ladder(code_root: Path) -> list[dict]:
    """RSS (MB) after each import, in a fresh interpreter importing `code_root`'s watchdog."""
    env = dict(os.environ, PYTHONPATH=str(code_root))
    out = subprocess.run(
        [sys.executable, "-c", _LADDER, *IMPORTS],
        capture_output=True,
        text=True,
        env=env,
        cwd=code_root,
        check=True,
    )
    steps = json.loads(out.stdout)
    return [
        {
            "module": name,
            "rss_mb": round(rss, 1),
            "added_mb": round(rss - (steps[i - 1][1] if i else 0.0), 1),
        }
        for i, (name, rss) in enumerate(steps)
    ]


_SCORERS = """
import json, sys
import cv2
from watchdog.detection.bundle import Bundle, default_bundle_path
from watchdog.detection.model import FrameScorer
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
bundle = Bundle.load(default_bundle_path())
x = bundle.meta.preprocess.apply(cv2.imread(sys.argv[1]))
out, keep = [(0, rss())], []
for k in range(1, int(sys.argv[2]) + 1):
    scorer = FrameScorer(bundle)
    scorer.error_map(x)
    keep.append(scorer)
    out.append((k, rss()))
print(json.dumps(out))
"""


def scorer_ladder(code_root: Path, count: int = 8) -> list[dict]:
    """RSS after making and running 1..count FrameScorers of the default bundle (one per printer
    in the daemon): the model's own per-printer cost, free of frame timing."""
    frame = ROOT / "watchdog" / "demo" / "frames" / "000_normal.jpg"
    env = dict(os.environ, PYTHONPATH=str(code_root))
    out = subprocess.run(
        [sys.executable, "-c", _SCORERS, str(frame), str(count)],
        capture_output=True,
        text=True,
        env=env,
        cwd=code_root,
        check=True,
    )
    return [{"scorers": k, "rss_mb": round(r, 1)} for k, r in json.loads(out.stdout)]


def status_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


def daemon_peak(
    code_root: Path, n: int, seconds: float, interval: float, workdir: Path, size: str
) -> dict:
    """Peak RSS of one daemon (code from `code_root`) watching n printers for `seconds`."""
    farm = CameraFarm(n, size, workdir)
    cfg = workdir / f"memory-{n}.yaml"
    cfg.write_text(
        json.dumps(
            {
                "http": {"listen": ""},
                "storage": {"dir": str(workdir / "state")},
                "printers": [
                    {"name": f"p{i:02d}", "camera": {"source": url, "interval_s": interval}}
                    for i, url in enumerate(farm.urls())
                ],
            }
        )
    )
    cfg.chmod(0o600)
    log = workdir / f"memory-{n}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "watchdog", "run", "--config", str(cfg)],
            cwd=code_root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONPATH=str(code_root)),
        )
        try:
            deadline = time.monotonic() + seconds
            last: dict[str, int] = {}
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"daemon exited: {log.read_text()[-2000:]}")
                last = status_kb(proc.pid)
                time.sleep(0.5)
        finally:
            proc.terminate()
            proc.wait(30)
            farm.close()
    frames = len(farm.requests())
    return {
        "printers": n,
        "peak_rss_mb": round(last["VmHWM"] / 1024, 1),
        "final_rss_mb": round(last["VmRSS"] / 1024, 1),
        "anon_mb": round(last["RssAnon"] / 1024, 1),
        "file_mb": round(last["RssFile"] / 1024, 1),
        "frames_served": frames,
    }


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def measure(
    code_root: Path, counts: list[int], seconds: float, interval: float, workdir: Path, size: str
) -> dict:
    runs = [daemon_peak(code_root, n, seconds, interval, workdir, size) for n in counts]
    for r in runs:
        print(f"  {code_root.name}: {r}", file=sys.stderr, flush=True)
    scorers = scorer_ladder(code_root)
    return {
        "imports": import_ladder(code_root),
        "scorers": scorers,
        "mb_per_extra_scorer": round(slope([(r["scorers"], r["rss_mb"]) for r in scorers[1:]]), 2),
        "daemon": runs,
        "peak_rss_mb_1_printer": next((r["peak_rss_mb"] for r in runs if r["printers"] == 1), None),
        "mb_per_extra_printer": round(slope([(r["printers"], r["peak_rss_mb"]) for r in runs]), 2),
    }


def extract(ref: str, into: Path) -> Path:
    """`git archive` of ref into a folder: the baseline's code, run side by side with ours."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--printers", default="1,2,4,8")
    ap.add_argument("--seconds", type=float, default=25.0, help="how long each daemon runs")
    ap.add_argument(
        "--interval", type=float, default=0.5, help="camera.interval_s (short: calibrate fast)"
    )
    ap.add_argument(
        "--size", default="640x480", choices=["640x480", "1280x720"], help="camera frame size"
    )
    ap.add_argument(
        "--baseline", help="git ref to compare with (e.g. main); omitted: this checkout only"
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    counts = [int(x) for x in args.printers.split(",")]
    report: dict = {
        "machine": {"python": platform.python_version(), "cores": os.cpu_count()},
        "settings": {
            "printers": counts,
            "seconds": args.seconds,
            "interval_s": args.interval,
            "camera": f"one real HTTP snapshot server per printer, {args.size} JPEG",
            "printer_api": "none",
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report["current"] = measure(ROOT, counts, args.seconds, args.interval, work, args.size)
        if args.baseline:
            rev = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "--short", args.baseline],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            base = extract(args.baseline, work / f"baseline-{rev}")
            report["baseline"] = {
                "ref": args.baseline,
                "commit": rev,
                **measure(base, counts, args.seconds, args.interval, work, args.size),
            }
            b, c = report["baseline"], report["current"]
            report["ratio"] = {
                "peak_rss_1_printer": round(
                    c["peak_rss_mb_1_printer"] / b["peak_rss_mb_1_printer"], 3
                ),
                "mb_per_extra_printer": round(
                    c["mb_per_extra_printer"] / b["mb_per_extra_printer"], 3
                )
                if b["mb_per_extra_printer"]
                else None,
            }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
