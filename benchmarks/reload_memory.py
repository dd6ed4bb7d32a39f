"""What reloads cost the daemon's memory: RSS as `python -m watchdog run` is reloaded again
and again (every settings save on the page is a reload, as SIGHUP is).

    .venv/bin/python benchmarks/reload_memory.py [--reloads 200] [--every 50] [--json FILE]

One daemon, the shipped model, two printers on folders of 640x480 JPEGs (the demo's frames)
without a printer API (watched all the time), the web server on. After its first frames, RSS
is read (the baseline), then the daemon is sent SIGHUP ``--reloads`` times, each waited for
(its "reloaded" log line), and RSS is read every ``--every`` reloads, as MB and as a ratio to
the baseline; the live threads and open descriptors with it. Flat is the goal: a daemon whose
owner saves settings now and then for months must not grow with them. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.plugins.mosquitto import free_port  # noqa: E402

DEMO_FRAMES = ROOT / "watchdog" / "demo" / "frames"
MODEL = ROOT / "watchdog" / "models" / "default"


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def threads_and_files(pid: int) -> tuple[int, int]:
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


def wait_for(
    what: str, done: Callable[[], bool], proc: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the daemon: {what} did not happen")
        time.sleep(0.05)


def scored(port: int) -> bool:
    """Both printers have scored a frame (the model is loaded, the loops run)."""
    try:
        printers = requests.get(f"http://127.0.0.1:{port}/status", timeout=2).json()["printers"]
    except (requests.RequestException, ValueError, KeyError):
        return False
    return all(p.get("score") is not None for p in printers.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reloads", type=int, default=200)
    ap.add_argument("--every", type=int, default=50)
    ap.add_argument(
        "--json", type=Path, default=ROOT / "benchmarks" / "results" / "reload_memory.json"
    )
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="reload-memory-"))
    try:
        frames = tmp / "frames"
        shutil.copytree(DEMO_FRAMES, frames)
        config = tmp / "c.yaml"
        port = free_port()
        config.write_text(
            yaml.safe_dump(
                {
                    "model": str(MODEL),
                    "http": {"listen": f"127.0.0.1:{port}"},
                    "storage": {"dir": str(tmp / "state")},
                    "printers": [
                        {
                            "name": name,
                            "camera": {"source": str(frames), "interval_s": 0.5},
                            "api": {"kind": "none"},
                            "action": "notify",
                        }
                        for name in ("ender3", "voron")
                    ],
                }
            )
        )
        config.chmod(0o600)
        log_path = tmp / "daemon.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "watchdog", "run", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        try:

            def reloaded() -> int:
                return log_path.read_text(errors="replace").count("reloaded ")

            wait_for("its first frames", lambda: scored(port), proc)
            time.sleep(5)  # the model's first runs and the page's buffers settle
            base = rss_mb(proc.pid)
            rows = [{"reloads": 0, "rss_mb": round(base, 1), "ratio": 1.0}]
            threads, files = threads_and_files(proc.pid)
            rows[0].update(threads=threads, open_files=files)
            for n in range(1, args.reloads + 1):
                before = reloaded()
                proc.send_signal(signal.SIGHUP)
                wait_for(f"reload {n}", lambda: reloaded() > before, proc)  # noqa: B023
                if n % args.every == 0:
                    time.sleep(1.0)
                    rss = rss_mb(proc.pid)
                    threads, files = threads_and_files(proc.pid)
                    rows.append(
                        {
                            "reloads": n,
                            "rss_mb": round(rss, 1),
                            "ratio": round(rss / base, 3),
                            "threads": threads,
                            "open_files": files,
                        }
                    )
                    print(rows[-1], flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "run": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "printers": 2,
        "camera": "folder of the demo's 640x480 JPEGs, interval 0.5 s",
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
