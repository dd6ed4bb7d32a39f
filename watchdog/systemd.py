"""systemd's notify protocol (sd_notify) over ``$NOTIFY_SOCKET``, in a few lines of stdlib.

The unit is ``Type=notify`` with ``WatchdogSec=``: systemd waits for :func:`ready` before it
calls the service started, and kills and restarts the daemon when :func:`watchdog_ping` stops
arriving (a hung loop). Outside systemd ``NOTIFY_SOCKET`` is unset and every call is a no-op
that returns ``False``, so the daemon calls these unconditionally.

How the daemon loop uses them::

    systemd.ready()                              # after config, model and first connections
    interval = systemd.watchdog_interval_s()     # None when WatchdogSec= is not set
    while not stop.wait(min(interval / 2, 5) if interval else 5):
        if all_watchers_alive():                 # ping only when the loop really progresses
            systemd.watchdog_ping()
    # on SIGHUP:   systemd.reloading(); reload config and model; systemd.ready()
    # on SIGTERM:  systemd.stopping(); release the camera; publish offline
    systemd.status("watching ender3 (score 0.41 / 0.80)")   # shown by `systemctl status`

Protocol: sd_notify(3); a datagram of ``KEY=VALUE`` lines to the socket; a name starting
with ``@`` is an abstract socket.
"""

from __future__ import annotations

import logging
import os
import socket
import time

logger = logging.getLogger(__name__)

__all__ = [
    "notify",
    "ready",
    "reloading",
    "stopping",
    "watchdog_ping",
    "status",
    "watchdog_interval_s",
]


def _address(value: str) -> str | None:
    if value.startswith("@"):
        # Abstract namespace: a leading NUL byte instead of '@'.
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # systemd >= 254 may also hand out "vsock:CID:PORT" (VMs); not a case on a Pi.
    logger.debug("NOTIFY_SOCKET %r is not a unix socket path; not notifying", value)
    return None


def notify(*fields: str) -> bool:
    """Send ``KEY=VALUE`` fields to systemd; False when not under systemd or the send failed."""
    value = os.environ.get("NOTIFY_SOCKET")
    if not value:
        return False
    address = _address(value)
    if address is None:
        return False
    message = "\n".join(fields).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(1.0)
            sock.sendto(message, address)
    except OSError as exc:
        # A missed notification must never take the daemon down; systemd notices by itself.
        logger.warning("sd_notify to %s failed: %s", value, exc)
        return False
    return True


def ready(status_text: str | None = None) -> bool:
    """Tell systemd start-up (or a reload) is complete: ``READY=1``."""
    return notify("READY=1", *([f"STATUS={status_text}"] if status_text else []))


def reloading() -> bool:
    """Tell systemd a reload (SIGHUP) started; send :func:`ready` when it is done."""
    monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")


def stopping() -> bool:
    """Tell systemd the daemon is shutting down cleanly: ``STOPPING=1``."""
    return notify("STOPPING=1")


def watchdog_ping() -> bool:
    """Keep-alive for ``WatchdogSec=``: ``WATCHDOG=1``; send it at half the interval or more often."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """A one-line status shown by ``systemctl status`` (newlines are replaced)."""
    return notify("STATUS=" + " ".join(text.splitlines()))


def watchdog_interval_s() -> float | None:
    """The ``WatchdogSec=`` interval in seconds meant for this process, or None when there is none.

    From ``$WATCHDOG_USEC``, and only if ``$WATCHDOG_PID`` is unset or this process's pid
    (sd_watchdog_enabled(3)); a malformed value counts as no watchdog.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    try:
        if pid and int(pid) != os.getpid():
            return None
        value = int(usec)
    except ValueError:
        logger.warning("ignoring malformed WATCHDOG_USEC=%r / WATCHDOG_PID=%r", usec, pid)
        return None
    return value / 1_000_000 if value > 0 else None
