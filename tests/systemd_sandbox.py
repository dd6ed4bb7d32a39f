"""Run a command under the seccomp part of a systemd unit's sandbox, without systemd.

    python tests/systemd_sandbox.py systemd/printer-watchdog.service -- python -m watchdog run ...

Tests cannot boot the unit under a real systemd here. This helper does what systemd would do
with these settings of the unit, using the same kernel mechanism and libseccomp (through
pyseccomp), and then execs the command:

- ``SystemCallFilter=`` lines: the groups expanded by ``systemd-analyze syscall-filter`` (so
  they match this systemd version), as an allow list; ``~`` lines remove from it;
- ``SystemCallErrorNumber=``: a call outside the list fails with that errno;
- ``MemoryDenyWriteExecute=yes``: no writable+executable mmap, no mprotect to executable;
- ``RestrictAddressFamilies=``: socket() with another family fails with EAFNOSUPPORT;
- ``NoNewPrivileges=yes`` (libseccomp sets it when it loads a filter);
- ``UMask=`` and ``Environment=``.

What it does not emulate: the mount namespace (ProtectSystem, ProtectHome, PrivateTmp...), the
device cgroup, capabilities, the user switch and MemoryMax. tests/test_install.py adds the
mount namespace and the unprivileged user around it with bubblewrap and setpriv.
It needs pyseccomp; when that is only in another virtualenv, put a folder holding just
``pyseccomp.py`` on PYTHONPATH (the helper removes PYTHONPATH before it execs the command).
"""

from __future__ import annotations

import errno
import mmap
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

SHM_EXEC = 0o100000
AF_MAX = 46


def unit_settings(unit: Path) -> list[tuple[str, str]]:
    """The ``Key=value`` lines of the unit's [Service] section, in order."""
    out, section = [], ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith(("#", ";")):
            key, value = line.split("=", 1)
            out.append((key, value))
    return out


def syscall_groups() -> dict[str, list[str]]:
    """systemd's named groups (``@system-service`` ...) and their members, from systemd-analyze."""
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = line.split()[0]
            groups[current] = []
        elif current and line.strip() and not line.strip().startswith("#"):
            groups[current].append(line.split()[0])
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    for name in names:
        out |= expand(groups[name], groups) if name.startswith("@") else {name}
    return out


def allowed_syscalls(settings: list[tuple[str, str]]) -> set[str]:
    """The allow list that the unit's SystemCallFilter= lines add up to."""
    groups = syscall_groups()
    allowed: set[str] = set()
    lines = [v for k, v in settings if k == "SystemCallFilter"]
    if not lines or lines[0].startswith("~"):
        raise SystemExit("the unit must start with an allow-list SystemCallFilter=")
    for value in lines:
        if value.startswith("~"):
            allowed -= expand(value[1:].split(), groups)
        else:
            allowed |= expand(value.split(), groups)
    # Always permitted by systemd whatever the filter says (systemd.exec(5)).
    return allowed | {"execve", "exit", "exit_group", "getrlimit", "rt_sigreturn", "sigreturn"}


def load_filters(unit: Path) -> None:
    import pyseccomp as seccomp  # here, so that tests can import the helpers without it

    settings = unit_settings(unit)
    values = dict(settings)
    error = getattr(errno, values.get("SystemCallErrorNumber", "EPERM"))
    allowed = allowed_syscalls(settings)  # before any filter: it runs systemd-analyze

    # Two filters, as systemd installs them: the kernel applies the strictest answer. This one
    # first, since the allow list below forbids loading more filters.
    extra = seccomp.SyscallFilter(seccomp.ALLOW)
    if values.get("MemoryDenyWriteExecute") == "yes":
        wx = mmap.PROT_WRITE | mmap.PROT_EXEC
        extra.add_rule(
            seccomp.ERRNO(errno.EPERM), "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, wx, wx)
        )
        for name in ("mprotect", "pkey_mprotect"):
            extra.add_rule(
                seccomp.ERRNO(errno.EPERM),
                name,
                seccomp.Arg(2, seccomp.MASKED_EQ, mmap.PROT_EXEC, mmap.PROT_EXEC),
            )
        extra.add_rule(
            seccomp.ERRNO(errno.EPERM),
            "shmat",
            seccomp.Arg(2, seccomp.MASKED_EQ, SHM_EXEC, SHM_EXEC),
        )
    if "RestrictAddressFamilies" in values:
        families = {getattr(socket, f) for f in values["RestrictAddressFamilies"].split()}
        for family in range(AF_MAX):
            if family not in families:
                extra.add_rule(
                    seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, family)
                )
    extra.load()

    calls = seccomp.SyscallFilter(seccomp.ERRNO(error))
    for name in sorted(allowed):
        try:
            calls.add_rule(seccomp.ALLOW, name)
        except (ValueError, OSError):
            pass  # a name this architecture or libseccomp does not know
    calls.load()


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit(f"usage: {Path(__file__).name} UNIT -- COMMAND [ARGS...]")
    unit = Path(argv[0])
    for key, value in unit_settings(unit):
        if key == "UMask":
            os.umask(int(value, 8))
        elif key == "Environment":
            os.environ.update(item.split("=", 1) for item in value.split())
    os.environ.pop("PYTHONPATH", None)
    load_filters(unit)
    # how far a start got, in the output a failed test shows
    print(f"sandbox: the unit's filters are on; starting {argv[2]}", file=sys.stderr, flush=True)
    os.execvp(argv[2], argv[2:])


class NotifySocket:
    """A datagram socket in systemd's place (``$NOTIFY_SOCKET``); collects the daemon's messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o777)  # as systemd's: a service that dropped root must be able to send
        self.messages: list[dict[str, str]] = []

    def wait_for(
        self, key: str, timeout: float, process: subprocess.Popen | None = None
    ) -> dict[str, str]:
        """The next message carrying ``key`` (earlier ones are kept in ``messages``); fails early
        when ``process`` has exited."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if process is not None and process.poll() is not None:
                raise AssertionError(
                    f"the process exited ({process.returncode}) before {key}; got {self.messages}"
                )
            self.sock.settimeout(min(left, 0.5))
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.splitlines())
            self.messages.append(fields)
            if key in fields:
                return fields
        raise AssertionError(f"no {key} within {timeout}s; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


def daemon_config(model: Path, frames: Path, state: Path, mqtt: dict, http_port: int) -> dict:
    """A one-printer config: a folder camera (normal frames, then failures), no printer API."""
    return {
        "model": str(model),
        "mqtt": mqtt,
        "http": {"listen": f"127.0.0.1:{http_port}"},
        "storage": {"dir": str(state)},
        "printers": [
            {
                "name": "p1",
                "camera": {"source": str(frames), "interval_s": 0.2},
                "api": {"kind": "none"},
                "detection": {"consecutive": 2},
                "action": "notify",
            }
        ],
    }


def write_frames(folder: Path, normal: list, anomalous: list) -> Path:
    """The camera folder for :func:`daemon_config`, in name order."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(normal + anomalous * 2):
        cv2.imwrite(str(folder / f"frame_{i:03d}.jpg"), frame)
    return folder


def drive_daemon(
    process: subprocess.Popen,
    daemon_pid: int | None,
    notify: NotifySocket,
    sub: Any,
    prefix: str,
    http_port: int,
    on_ready: Callable[[int], None] | None = None,
) -> tuple[dict, str]:
    """What systemd and a user see of a started daemon, asserted step by step: READY, an alert
    with a heatmap, /healthz, WATCHDOG pings, reload on SIGHUP, a clean stop on SIGTERM within
    the unit's TimeoutStopSec. ``daemon_pid`` is the daemon when ``process`` only wraps it;
    ``on_ready(pid)`` runs once it is ready. Returns the alert and everything the process printed."""
    import cv2
    import numpy as np

    failure: Exception | None = None
    try:
        notify.wait_for("READY", timeout=90, process=process)
        pid = daemon_pid or process.pid
        if on_ready:
            on_ready(pid)
        alert = sub.wait_for(f"{prefix}/p1/alert", timeout=60).json()
        assert alert["printer"] == "p1" and alert["incident"]
        heatmap = sub.wait_for(f"{prefix}/p1/heatmap", timeout=30).payload
        assert cv2.imdecode(np.frombuffer(heatmap, np.uint8), cv2.IMREAD_COLOR) is not None
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=10) as resp:
            assert resp.status == 200
        notify.wait_for("WATCHDOG", timeout=10, process=process)

        os.kill(pid, signal.SIGHUP)  # systemctl reload
        assert int(notify.wait_for("RELOADING", timeout=30, process=process)["MONOTONIC_USEC"]) > 0
        notify.wait_for("READY", timeout=30, process=process)
        notify.wait_for("WATCHDOG", timeout=10, process=process)

        os.kill(pid, signal.SIGTERM)  # systemctl stop
        notify.wait_for("STOPPING", timeout=20)
        assert process.wait(timeout=20) == 0  # the unit's TimeoutStopSec=
    except Exception as exc:
        failure = exc
    finally:
        if process.poll() is None:
            os.kill(daemon_pid or process.pid, signal.SIGABRT)  # a hung daemon: its stacks
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        output = process.communicate(timeout=30)[0]
    if failure is not None:
        # The daemon's last words (and its threads' stacks after the SIGABRT above) in the
        # failure itself: a CI log keeps the start of a failure, not the captured output after it.
        tail = "\n".join(output.splitlines()[-60:])
        raise AssertionError(
            f"{failure}\n--- what the daemon printed last ---\n{tail}"
        ) from failure
    for bad in (
        "Read-only file system",
        "Permission denied",
        "Operation not permitted",
        "Traceback",
    ):
        assert bad not in output, output
    return alert, output


if __name__ == "__main__":
    main(sys.argv[1:])
