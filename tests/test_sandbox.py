"""The daemon works inside the unit's seccomp sandbox and speaks sd_notify as systemd expects.

No test here can boot the unit under a real systemd (the test machine has none as PID 1), so
tests/systemd_sandbox.py loads the unit's SystemCallFilter=, SystemCallErrorNumber=,
MemoryDenyWriteExecute= and RestrictAddressFamilies= with libseccomp, as systemd would,
and then execs the real daemon. The daemon runs against a real mosquitto, watches a folder
camera (normal frames, then failures) and has a notify socket standing in for systemd.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.plugins.mosquitto import Broker, free_port
from tests.systemd_sandbox import NotifySocket, daemon_config, drive_daemon, write_frames

pytest.importorskip(
    "pyseccomp", reason="pyseccomp (the test extra) is needed to load the unit's filters"
)
pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze missing"
)

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "printer-watchdog.service"
SANDBOX = ROOT / "tests" / "systemd_sandbox.py"


def sandboxed(*cmd: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SANDBOX), str(UNIT), "--", *cmd], text=True, **kwargs
    )  # type: ignore[call-overload]


def test_sandbox_bites() -> None:
    # Control: what the unit forbids really fails in the sandbox (so the test below means something).
    code = (
        "import mmap, os, socket\n"
        "def refused(f):\n"
        "    try:\n"
        "        f()\n"
        "    except OSError:\n"
        "        return True\n"
        "    return False\n"
        "print(refused(lambda: os.setuid(12345)),\n"
        "      refused(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW)),\n"
        "      refused(lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)),\n"
        "      refused(lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()))\n"
    )
    proc = sandboxed(sys.executable, "-c", code, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split() == ["True", "True", "True", "False"]


def test_daemon_runs_inside_the_units_sandbox(
    tmp_path: Path,
    tiny_bundle: Path,
    normal_frames: list[np.ndarray],
    anomalous_frames: list[np.ndarray],
    mosquitto: Broker,
) -> None:
    prefix = f"pw_sandbox_{uuid.uuid4().hex[:8]}"
    http_port = free_port()
    frames = write_frames(tmp_path / "frames", normal_frames, anomalous_frames)
    config = daemon_config(
        tiny_bundle,
        frames,
        tmp_path / "state",
        mosquitto.mqtt_settings(topic_prefix=prefix),
        http_port,
    )
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    notify = NotifySocket(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "2000000"}
    with mosquitto.subscriber(f"{prefix}/#") as sub:
        daemon = sandboxed(
            sys.executable,
            "-m",
            "watchdog",
            "run",
            "--config",
            str(config_path),
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            drive_daemon(daemon, None, notify, sub, prefix, http_port)
        finally:
            notify.close()
