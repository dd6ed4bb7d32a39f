"""Peak RSS of the MQTT side when the broker delivers a huge message on a command topic.

    .venv/bin/python benchmarks/mqtt_payload.py [--mb 100] [--json benchmarks/results/mqtt_payload.json]

A real mosquitto on 127.0.0.1. For each client, a fresh child process connects, proves it
receives commands (a live ``ON`` on ``<prefix>/ender3/enabled/set`` reaches its handler), and
its peak RSS (``VmHWM`` from /proc) is read; then one scenario runs and the peak is read again
after a second live command got through (the client survived and read everything before it):

  none       nothing else (the baseline of that client)
  live       one ``--mb`` MB message on the command topic
  retained   the same message retained on the broker before the client connects

Clients: ``plain`` is a paho client as the daemon used it before (MQTT 3.1.1, the payload
copied to bytes in the handler: the behaviour being fixed); ``daemon`` is the daemon's own
MQTT side (``watchdog.comms.notifier.Notifier``, MQTT 5 with a Maximum Packet Size and the
read guard). Growth = peak after the scenario - peak of the ``none`` run of the same client.
Figures go to docs/reliability.md; not run in CI (tests/test_mqtt_limits.py runs a 20 MB
version of the ``daemon`` client).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PRINTER = "ender3"

PLAIN_CHILD = """
import sys, paho.mqtt.client as mqtt
port, prefix = int(sys.argv[1]), sys.argv[2]
def on_connect(c, u, f, rc, p):
    c.subscribe([(prefix + "/+/enabled/set", 1), (prefix + "/+/feedback", 1)])
def on_message(c, u, msg):
    payload = bytes(msg.payload)
    if payload.strip() in (b"ON", b"OFF"):
        print("command", payload.decode().strip(), flush=True)
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-" + prefix, clean_session=True)
c.on_connect, c.on_message = on_connect, on_message
c.connect("127.0.0.1", port, 30)
c.loop_forever()
"""

DAEMON_CHILD = """
import sys, tempfile, time
from watchdog.comms.notifier import Notifier
from watchdog.config import MqttConfig, StorageConfig
from watchdog.control import CommandResult
port, prefix = int(sys.argv[1]), sys.argv[2]
class Printing:
    def dispatch(self, command):
        print("command", command.verb.value, flush=True)
        return CommandResult(True, "ok")
n = Notifier(MqttConfig(host="127.0.0.1", port=port, topic_prefix=prefix, client_id="bench-" + prefix),
             StorageConfig(dir=tempfile.mkdtemp()), ["ender3"], Printing())
n.start()
while True:
    time.sleep(1)
"""


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


class Child:
    def __init__(self, kind: str, port: int, prefix: str) -> None:
        code = PLAIN_CHILD if kind == "plain" else DAEMON_CHILD
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, str(port), prefix],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def commands(self) -> int:
        return sum(1 for line in self.lines if line.startswith("command"))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def prove_alive(broker: Any, prefix: str, child: Child, timeout: float = 60) -> None:
    """A live command reaches the child's handler (repeated until its subscription is active)."""
    seen = child.commands()
    deadline = time.monotonic() + timeout
    while child.commands() == seen:
        if child.proc.poll() is not None:
            raise RuntimeError("the client process died")
        if time.monotonic() > deadline:
            raise RuntimeError("the client never handled a live command")
        broker.publish(f"{prefix}/{PRINTER}/enabled/set", "ON")
        time.sleep(0.1)


def run_scenario(broker: Any, kind: str, scenario: str, mb: int) -> dict[str, Any]:
    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}/{PRINTER}/enabled/set"
    big = b"X" * (mb * 1024 * 1024) if scenario != "none" else b""
    if scenario == "retained":
        broker.publish(topic, big, retain=True)
    child = Child(kind, broker.port, prefix)
    try:
        prove_alive(broker, prefix, child)
        started = peak_mb(child.proc.pid)
        if scenario == "live":
            broker.publish(topic, big)
        del big
        prove_alive(broker, prefix, child)
        peak = peak_mb(child.proc.pid)
        return {
            "peak_after_start_mb": round(started, 1),
            "peak_mb": round(peak, 1),
            "alive": child.proc.poll() is None,
        }
    finally:
        child.close()
        if scenario == "retained":
            broker.publish(topic, b"", retain=True)


def measure(mb: int, kinds: tuple[str, ...] = ("plain", "daemon")) -> dict[str, Any]:
    import tempfile

    from tests.plugins.mosquitto import Broker, free_port

    with tempfile.TemporaryDirectory() as work:
        broker = Broker(Path(work), free_port())
        broker.start()
        try:
            results: dict[str, Any] = {"payload_mb": mb, "clients": {}}
            for kind in kinds:
                rows = {s: run_scenario(broker, kind, s, mb) for s in ("none", "live", "retained")}
                base = rows["none"]["peak_mb"]
                for row in rows.values():
                    row["growth_mb"] = round(row["peak_mb"] - base, 1)
                results["clients"][kind] = rows
            return results
        finally:
            broker.close()


def table(results: dict[str, Any]) -> str:
    lines = [
        f"| client | scenario ({results['payload_mb']} MB) | peak RSS MB | growth MB | still handles commands |",
        "|---|---|---|---|---|",
    ]
    for kind, rows in results["clients"].items():
        for scenario, row in rows.items():
            lines.append(
                f"| {kind} | {scenario} | {row['peak_mb']} | {row['growth_mb']} | {'yes' if row['alive'] else 'no'} |"
            )
    if {"plain", "daemon"} <= set(results["clients"]):
        for scenario in ("live", "retained"):
            plain = results["clients"]["plain"][scenario]["growth_mb"]
            ours = results["clients"]["daemon"][scenario]["growth_mb"]
            if plain > 0:
                lines.append(
                    f"\n{scenario}: the daemon's growth is {max(ours, 0) / plain:.3f} of the plain client's"
                )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the hostile message in MB")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results = measure(args.mb)
    print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
