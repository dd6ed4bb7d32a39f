"""Running `python -m watchdog ...` as a real process in tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.plugins.mosquitto import free_port  # noqa: F401 - re-exported for the tests


def write_config(path: Path, **sections: Any) -> Path:
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    path.chmod(0o600)
    return path


def watchdog_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "watchdog", *args]


def run_cli(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        watchdog_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env
    )


# An install without the notify extra, as ``make demo`` makes (Apprise is in this venv, so an
# import hook stands in for its absence: the one thing here not as a user has it).
_NO_APPRISE = """import importlib.abc, sys
class _NoApprise(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "apprise" or name.startswith("apprise."):
            raise ModuleNotFoundError("No module named 'apprise'", name="apprise")
        return None
sys.meta_path.insert(0, _NoApprise())
"""


def without_apprise(folder: Path) -> str:
    """A PYTHONPATH under which Python cannot import Apprise (a sitecustomize in ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_NO_APPRISE)
    return os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)


def replayed(config: Path, frames: Path) -> list[dict[str, Any]]:
    """``python -m watchdog replay`` of a folder of frames: its JSON line per scored frame."""
    r = run_cli("replay", "--config", str(config), "--frames", str(frames))
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines() if '"frame"' in x and '"event"' not in x]


class DaemonProcess:
    """`python -m watchdog run` in the background, its log in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            watchdog_cmd("run", "--config", str(config)),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_up(self, url: str, timeout: float = 60.0) -> None:
        """Until ``url``/healthz answers 200; fails at once, with the log, if the daemon dies."""

        def up() -> bool:
            assert self.alive(), self.log
            try:
                return requests.get(f"{url}/healthz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until("the daemon's /healthz", up, timeout, lambda: self.log)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)


def stepped_wall_clock(monkeypatch: Any, skew: float) -> list[float]:
    """The system's wall clock (``time.time``) ``skew[0]`` seconds off, as on a Pi booted on
    fake-hwclock before NTP sets it; the clock since boot untouched, as NTP leaves it. Set
    ``skew[0]`` to step it."""
    step, real = [skew], time.time
    monkeypatch.setattr(time, "time", lambda: real() + step[0])
    return step


def wait_until(
    what: str, check: Callable[[], Any], timeout: float, on_fail: Callable[[], str] | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    detail = on_fail() if on_fail else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{detail[-4000:]}")


@contextlib.contextmanager
def no_threads_named(prefix: str) -> Iterator[None]:
    """Threads whose name starts with ``prefix`` cannot start (the unit's task limit, which a
    test cannot reach on purpose: ``Thread.start`` raises as Python does then)."""
    real_start = threading.Thread.start

    def refused(self: threading.Thread) -> None:
        if self.name.startswith(prefix):
            raise RuntimeError("can't start new thread")
        real_start(self)

    threading.Thread.start = refused  # type: ignore[method-assign]
    try:
        yield
    finally:
        threading.Thread.start = real_start  # type: ignore[method-assign]
