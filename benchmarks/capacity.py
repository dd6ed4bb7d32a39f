"""Capacity: how many printers one daemon watches, and what each costs (not in CI).

One real daemon (`python -m watchdog run`) watches N printers (default 1, 4, 16, 32). Each
printer has:

- its own real HTTP snapshot camera (a ThreadingHTTPServer on its own port, in a separate
  process so its CPU is not the daemon's) serving the bundled demo's normal frames re-encoded
  at the chosen size (640x480, 1280x720), as a webcam's snapshot URL does;
- a printer API: ONE real Moonraker 0.11 (tests/plugins/printers.py, with the stand-in Klippy
  of tests/fake_klippy.py) printing a long job, polled by every printer of the daemon as its own
  API (one Moonraker per printer would cost 50 MB each and measure Moonraker, not the daemon);
- MQTT to a real mosquitto, where the benchmark subscribes to every printer's score topic.

Measured per run, for the daemon's process only (pinned with taskset to 1 or 2 cores):

- CPU share: (utime + stime) / wall time / cores, from /proc/<pid>/stat after a warm-up;
- peak RSS: VmHWM from /proc/<pid>/status at the end;
- frame latency per printer, capture start -> verdict: from the camera server receiving the
  snapshot request to the benchmark receiving that frame's score on MQTT (same clock);
  p50 and p99 over all printers' frames;
- frames skipped: camera ticks that produced no score (expected ticks from the interval, minus
  scores), summed over printers, plus the ratio of scored frames to expected.

Run: PYTHONPATH=. .venv/bin/python benchmarks/capacity.py --json benchmarks/results/capacity.json
Defaults measure 3 ticks after a warm-up per configuration at a 10 s interval (about 16 min
for the full matrix); --interval and --ticks shorten it. The Pi estimate (docs/capacity.md) is
derived from these figures by `estimate()`: see its docstring for the basis.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from watchdog.image_files import read_bgr_file  # noqa: E402

if TYPE_CHECKING:
    from tests.plugins.printers import MoonrakerServer

DEMO_FRAMES = ROOT / "watchdog" / "demo" / "frames"
SIZES = {"640x480": (640, 480), "1280x720": (1280, 720)}


# --------------------------------------------------------------------------- camera farm


def serve_cameras(count: int, size: str, log_path: Path, hang: int) -> None:
    """The camera process: `count` snapshot servers; prints their ports; serves until stdin closes.

    Each request's arrival is logged as "<camera> <unix time>" (the latency's start). The last
    `hang` cameras accept connections and never answer (a hung camera)."""
    import cv2

    w, h = SIZES[size]
    jpegs = []
    for path in sorted(DEMO_FRAMES.glob("*_normal.jpg")):
        img = read_bgr_file(path)
        ok, buf = cv2.imencode(
            ".jpg",
            cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC),
            [cv2.IMWRITE_JPEG_QUALITY, 85],
        )
        jpegs.append(buf.tobytes())
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    lock = threading.Lock()
    servers = []
    for i in range(count):
        counter = [0]
        hangs = i >= count - hang

        class Handler(BaseHTTPRequestHandler):
            camera, seen, hung = i, counter, hangs

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                now = time.time()
                with lock:
                    log.write(f"{self.camera} {now:.6f}\n")
                if self.hung:
                    time.sleep(3600)
                    return
                body = jpegs[self.seen[0] % len(jpegs)]
                self.seen[0] += 1
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    print(json.dumps([s.server_address[1] for s in servers]), flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin


class CameraFarm:
    """The camera process seen from the benchmark."""

    def __init__(self, count: int, size: str, workdir: Path, hang: int = 0) -> None:
        self.log_path = workdir / f"cameras-{size}-{count}.log"
        self.log_path.write_text("")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve-cameras",
                str(count),
                "--size",
                size,
                "--camera-log",
                str(self.log_path),
                "--hang",
                str(hang),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.ports: list[int] = json.loads(self.proc.stdout.readline())

    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{p}/?action=snapshot" for p in self.ports]

    def requests(self) -> list[tuple[int, float]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            cam, t = line.split()
            out.append((int(cam), float(t)))
        return out

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.terminate()
        self.proc.wait(10)


# --------------------------------------------------------------------------- scores on MQTT


class ScoreListener:
    """Every printer's score messages with their arrival time (the latency's end)."""

    def __init__(self, port: int, prefix: str) -> None:
        import paho.mqtt.client as mqtt

        self.scores: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"capacity-{os.getpid()}"
        )
        self.client.on_connect = lambda c, *a: c.subscribe(f"{prefix}/+/score", qos=0)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise RuntimeError("no MQTT subscription within 10 s")

    def _on_message(self, client: object, userdata: object, msg: object) -> None:
        now = time.time()
        printer = msg.topic.split("/")[-2]  # type: ignore[attr-defined]
        with self._lock:
            self.scores.append((printer, now))

    def since(self, t0: float) -> list[tuple[str, float]]:
        with self._lock:
            return [s for s in self.scores if s[1] >= t0]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# --------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class RunResult:
    printers: int
    size: str
    cores: int
    interval_s: float
    measured_s: float
    cpu_share: float  # of the cores the daemon may use
    cpu_s_per_frame: float
    peak_rss_mb: float
    latency_p50_s: float | None
    latency_p99_s: float | None
    latency_max_s: float | None
    frames_captured: int
    frames_scored: int
    frames_expected: int
    frames_skipped: int
    scored_per_printer_min: int
    scored_per_printer_max: int


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def match_frames(
    requests: list[tuple[int, float]],
    scores: list[tuple[str, float]],
    names: list[str],
    t0: float,
    t1: float,
) -> dict[str, list[float]]:
    """Per printer, the latency of each frame captured in [t0, t1) that got a score: from the
    camera request to the first score after it (and before that camera's next request)."""
    by_cam: dict[int, list[float]] = {}
    for cam, t in sorted(requests, key=lambda r: r[1]):
        by_cam.setdefault(cam, []).append(t)
    by_printer: dict[str, list[float]] = {}
    for printer, t in sorted(scores, key=lambda s: s[1]):
        by_printer.setdefault(printer, []).append(t)
    out: dict[str, list[float]] = {}
    for i, name in enumerate(names):
        starts, ends = by_cam.get(i, []), by_printer.get(name, [])
        lat = []
        for k, start in enumerate(starts):
            if not t0 <= start < t1:
                continue
            nxt = starts[k + 1] if k + 1 < len(starts) else float("inf")
            end = next((e for e in ends if start <= e < nxt), None)
            if end is not None:
                lat.append(end - start)
        out[name] = lat
    return out


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def run_once(
    n: int,
    size: str,
    cores: int,
    interval: float,
    ticks: int,
    warmup_ticks: int,
    moonraker: MoonrakerServer,
    broker_port: int,
    workdir: Path,
) -> RunResult:
    """One daemon, n printers, `ticks` measured intervals after `warmup_ticks`."""
    farm = CameraFarm(n, size, workdir)
    names = [f"p{i:02d}" for i in range(n)]
    prefix = f"capacity{n}{size.replace('x', '_')}c{cores}"
    key_file = workdir / "moonraker.key"
    key_file.write_text(moonraker.api_key)
    key_file.chmod(0o600)
    cfg = workdir / f"config-{n}-{size}-{cores}.yaml"
    cfg.write_text(
        json.dumps(
            {
                "http": {"listen": ""},
                "storage": {"dir": str(workdir / "state")},
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": broker_port,
                    "topic_prefix": prefix,
                    "homeassistant": {"enabled": False},
                },
                "printers": [
                    {
                        "name": name,
                        "camera": {"source": url, "interval_s": interval},
                        "api": {
                            "kind": "moonraker",
                            "url": moonraker.url,
                            "api_key_file": str(key_file),
                        },
                    }
                    for name, url in zip(names, farm.urls(), strict=True)
                ],
            }
        )
    )
    cfg.chmod(0o600)
    listener = ScoreListener(broker_port, prefix)
    cpus = ",".join(str(c) for c in range(cores))
    log = open(workdir / f"daemon-{n}-{size}-{cores}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        ["taskset", "-c", cpus, sys.executable, "-m", "watchdog", "run", "--config", str(cfg)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        time.sleep(warmup_ticks * interval)
        if proc.poll() is not None:
            raise RuntimeError(
                f"daemon exited: {(workdir / f'daemon-{n}-{size}-{cores}.log').read_text()[-2000:]}"
            )
        t0, cpu0 = time.time(), proc_cpu_s(proc.pid)
        time.sleep(ticks * interval)
        t1, cpu1 = time.time(), proc_cpu_s(proc.pid)
        if proc.poll() is not None:
            raise RuntimeError(
                f"daemon exited: {(workdir / f'daemon-{n}-{size}-{cores}.log').read_text()[-2000:]}"
            )
        peak_kb = proc_status_kb(proc.pid, "VmHWM")
        time.sleep(min(interval, 5.0))  # let the last frames' scores arrive
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
        listener.close()
        farm.close()
    frames = match_frames(farm.requests(), listener.since(t0 - interval), names, t0, t1)
    lat = [x for v in frames.values() for x in v]
    per_printer = [len(frames[name]) for name in names]
    captured = sum(1 for _, t in farm.requests() if t0 <= t < t1)
    expected = n * ticks
    scored = sum(per_printer)
    return RunResult(
        printers=n,
        size=size,
        cores=cores,
        interval_s=interval,
        measured_s=round(t1 - t0, 2),
        cpu_share=round((cpu1 - cpu0) / (t1 - t0) / cores, 4),
        cpu_s_per_frame=round((cpu1 - cpu0) / max(1, captured), 4),
        peak_rss_mb=round(peak_kb / 1024, 1),
        latency_p50_s=_r(percentile(lat, 50)),
        latency_p99_s=_r(percentile(lat, 99)),
        latency_max_s=_r(max(lat) if lat else None),
        frames_captured=captured,
        frames_scored=scored,
        frames_expected=expected,
        frames_skipped=max(0, expected - scored),
        scored_per_printer_min=min(per_printer),
        scored_per_printer_max=max(per_printer),
    )


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


# --------------------------------------------------------------------------- the Pi estimate


# How much slower a Pi core runs this daemon than one core of the benchmark machine: an
# ASSUMPTION, from the model's operation count. The default model is MODEL_MACS multiply-
# accumulates per frame (model_macs() counts them); this machine's LiteRT runs one inference in
# HOST_INFERENCE_MS (uncontended minimum, one thread), ~16 GMAC/s. Published LiteRT/XNNPACK fp32
# timings of MobileNet-class models on one core put a Pi 4's Cortex-A72 at about 3.5 GMAC/s and a
# Pi Zero 2 W's Cortex-A53 (1 GHz) at about 1.2 GMAC/s: 4.5x and 13x slower. The same factor is
# applied to the whole frame (JPEG decode, resize, overlay, Python), which scalar code on an
# in-order A53 is unlikely to beat.
HOST_INFERENCE_MS = 1.93
PI_BOARDS = {
    "Raspberry Pi 4 (Cortex-A72, 2 GB or more)": {"cores": 4, "gmac_s": 3.5, "ram_mb_free": 1500},
    "Raspberry Pi Zero 2 W (Cortex-A53 1 GHz, 512 MB)": {
        "cores": 4,
        "gmac_s": 1.2,
        "ram_mb_free": 250,
    },
}
# The daemon may use half the board: OctoPrint/Klipper, the camera streamer and the OS share it.
# Printers start in step and stay so: each interval all frames arrive at once, and this budget
# also bounds that burst (N frames on all cores) to half an interval.
CPU_BUDGET = 0.5


def model_macs(model_path: Path) -> int:
    """Multiply-accumulates of one inference, from the conv/dense layers' tensor shapes."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_path))
    interp.allocate_tensors()
    details = {t["index"]: t for t in interp.get_tensor_details()}
    macs = 0
    for op in interp._get_ops_details():  # noqa: SLF001 - the public API lacks op shapes
        name = op["op_name"]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED"):
            continue
        ins = [details[i]["shape"] for i in op["inputs"] if i >= 0 and i in details]
        outs = [details[i]["shape"] for i in op["outputs"] if i in details]
        if not outs or len(ins) < 2:
            continue
        out, w = outs[0], ins[1]
        if name == "CONV_2D":  # weights [out_c, kh, kw, in_c]
            macs += int(out[1] * out[2] * out[3] * w[1] * w[2] * w[3])
        elif name == "DEPTHWISE_CONV_2D":  # weights [1, kh, kw, out_c]
            macs += int(out[1] * out[2] * out[3] * w[1] * w[2])
        elif name == "TRANSPOSE_CONV":  # inputs: output_shape, weights [out_c, kh, kw, in_c], input
            x = ins[2] if len(ins) > 2 else out
            macs += int(x[1] * x[2] * w[0] * w[1] * w[2] * w[3])
        else:  # FULLY_CONNECTED: weights [out, in]
            macs += int(w[0] * w[1])
    return macs


def estimate(
    results: list[dict], memory: dict[str, dict], macs: int, interval: float = 10.0
) -> dict:
    """Printers per board at `interval`, the smaller of two bounds (an estimate, not a
    measurement on a Pi):

    - CPU: this machine's CPU seconds per frame (all of the daemon's work, from the 1-core runs
      at the largest N) times the board's slowdown (see PI_BOARDS), within CPU_BUDGET of its
      cores, and within one core: the daemon decodes and judges one frame at a time
      (watchdog/frame_gate.py), and nearly all of a frame's CPU is spent there, so it uses one
      core at most: N <= min(cores * budget, 1) * interval / frame_s;
    - memory: peak RSS at 1 printer plus the per-printer growth, both from benchmarks/memory.py
      (every print baseline calibrated; the capacity runs end before that), within the RAM the
      board has free beside OctoPrint: N <= 1 + (ram_free - rss_1) / per_printer.
    """
    host_gmac_s = macs / (HOST_INFERENCE_MS / 1000) / 1e9
    out: dict = {
        "basis": {
            "interval_s": interval,
            "cpu_budget_of_board": CPU_BUDGET,
            "model_macs_per_frame": macs,
            "host_inference_ms": HOST_INFERENCE_MS,
            "host_gmac_s": round(host_gmac_s, 1),
            "boards_assumed": PI_BOARDS,
            "how": "printers = min(min(cores * budget, 1) * interval / (host_cpu_s_per_frame * host_gmac_s / board_gmac_s), "
            "1 + (ram_free - rss_1_printer) / rss_per_extra_printer)",
        },
        "boards": {},
    }
    for size in SIZES:
        one_core = [r for r in results if r["size"] == size and r["cores"] == 1]
        if not one_core or size not in memory:
            continue
        cpu_frame = max(one_core, key=lambda r: r["printers"])["cpu_s_per_frame"]
        rss1, per = memory[size]["peak_rss_mb_1_printer"], memory[size]["mb_per_extra_printer"]
        for board, spec in PI_BOARDS.items():
            slowdown = host_gmac_s / spec["gmac_s"]
            frame_s = cpu_frame * slowdown
            by_cpu = int(min(spec["cores"] * CPU_BUDGET, 1.0) * interval / frame_s)
            by_ram = 1 + int((spec["ram_mb_free"] - rss1) / per)
            out["boards"].setdefault(board, {})[size] = {
                "slowdown_vs_host_core": round(slowdown, 1),
                "cpu_s_per_frame_estimated": round(frame_s, 3),
                "printers_by_cpu": by_cpu,
                "printers_by_ram": by_ram,
                "printers": min(by_cpu, by_ram),
                "rss_mb_1_printer": rss1,
                "rss_mb_per_extra_printer": per,
            }
    return out


def load_memory(folder: Path) -> dict[str, dict]:
    """benchmarks/memory.py's results per frame size (the current code's figures)."""
    out = {}
    for size in SIZES:
        path = folder / f"memory-{size}.json"
        if path.exists():
            out[size] = json.loads(path.read_text())["current"]
    return out


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--printers", default="1,4,16,32")
    ap.add_argument("--sizes", default="640x480,1280x720")
    ap.add_argument("--cores", default="1,2")
    ap.add_argument(
        "--interval", type=float, default=10.0, help="camera.interval_s of every printer"
    )
    ap.add_argument("--ticks", type=int, default=3, help="measured intervals per run")
    ap.add_argument("--warmup", type=int, default=1, help="intervals before measuring")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--memory",
        type=Path,
        default=ROOT / "benchmarks" / "results",
        help="folder with benchmarks/memory.py's memory-<size>.json (for the estimate)",
    )
    ap.add_argument(
        "--estimate-only",
        action="store_true",
        help="recompute the estimate in --json from its runs and --memory; run nothing",
    )
    ap.add_argument("--serve-cameras", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--size", default="640x480", help=argparse.SUPPRESS)
    ap.add_argument("--camera-log", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--hang", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_cameras:
        serve_cameras(args.serve_cameras, args.size, args.camera_log, args.hang)
        return 0

    if args.estimate_only:
        report = json.loads(args.json.read_text())
        report["estimate"] = estimate(
            report["runs"], load_memory(args.memory), report["model_macs_per_frame"]
        )
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["estimate"], indent=2))
        return 0

    from tests.plugins.mosquitto import Broker, free_port
    from tests.plugins.printers import MOONRAKER_SPEC, MoonrakerServer, server_venv
    from watchdog.detection.bundle import default_bundle_path

    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        broker = Broker(work / "broker", free_port())
        broker.workdir.mkdir()
        broker.start()
        moonraker = MoonrakerServer(
            server_venv("moonraker-venv", MOONRAKER_SPEC), work / "moonraker" / "data"
        )
        moonraker.start()
        # A job long enough for the whole matrix: G4 P200 is 0.2 s of Klipper time per line.
        (moonraker.data_dir / "gcodes" / "long.gcode").write_text("G28\n" + "G4 P200\n" * 50000)
        r = moonraker.post("/printer/print/start", {"filename": "long.gcode"})
        assert r.status_code == 200, r.text
        moonraker.wait_state("printing")
        try:
            for cores in [int(c) for c in args.cores.split(",")]:
                for size in args.sizes.split(","):
                    for n in [int(x) for x in args.printers.split(",")]:
                        res = run_once(
                            n,
                            size,
                            cores,
                            args.interval,
                            args.ticks,
                            args.warmup,
                            moonraker,
                            broker.port,
                            work,
                        )
                        results.append(asdict(res))
                        print(json.dumps(results[-1]), flush=True)
        finally:
            moonraker.stop()
            moonraker.klippy.stop()
            broker.stop()
    macs = model_macs(default_bundle_path() / "model.tflite")
    report = {
        "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpu": _cpu_name(),
            "cores_online": os.cpu_count(),
            "python": platform.python_version(),
            "note": "shared 2-core VM; other work ran alongside",
        },
        "model_macs_per_frame": macs,
        "settings": {
            "interval_s": args.interval,
            "ticks": args.ticks,
            "warmup_ticks": args.warmup,
            "printer_api": "one real Moonraker 0.11 + stand-in Klippy, printing, shared by all printers",
            "camera": "one real HTTP snapshot server per printer (separate process), demo frames re-encoded at the size",
        },
        "runs": results,
        "estimate": estimate(results, load_memory(args.memory), macs),
    }
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    print(text)
    return 0


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    sys.exit(main())
