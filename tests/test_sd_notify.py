"""watchdog.systemd speaks sd_notify: a real AF_UNIX datagram socket stands in for systemd."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from watchdog import systemd


def _fields(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_ready_watchdog_stopping_reach_systemd(notify_socket: socket.socket) -> None:
    assert systemd.ready()
    assert _fields(notify_socket) == {"READY": "1"}
    assert systemd.watchdog_ping()
    assert _fields(notify_socket) == {"WATCHDOG": "1"}
    assert systemd.stopping()
    assert _fields(notify_socket) == {"STOPPING": "1"}


def test_reloading_carries_the_monotonic_clock(notify_socket: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert systemd.reloading()
    fields = _fields(notify_socket)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= after


def test_status_is_one_line(notify_socket: socket.socket) -> None:
    assert systemd.status("watching ender3\nscore 0.4")
    assert _fields(notify_socket) == {"STATUS": "watching ender3 score 0.4"}
    assert systemd.ready("started")
    assert _fields(notify_socket) == {"READY": "1", "STATUS": "started"}


def test_abstract_socket_name(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"printer-watchdog-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.ready()
        assert _fields(sock) == {"READY": "1"}


def test_no_op_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not systemd.ready()
    assert not systemd.watchdog_ping()
    assert systemd.watchdog_interval_s() is None


def test_socket_gone_is_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    assert not systemd.watchdog_ping()


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("60000000", None, 60.0),
        ("30000000", "self", 30.0),
        ("30000000", "other", None),  # meant for another process (e.g. a parent shell)
        ("0", None, None),
        ("sixty", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(
    monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None, expected: float | None
) -> None:
    for key, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(
                key, {"self": str(os.getpid()), "other": str(os.getpid() + 1)}.get(value, value)
            )
    assert systemd.watchdog_interval_s() == expected
