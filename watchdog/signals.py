"""Signals taken by the main thread's loop, not acted on inside their handler.

A Python signal handler runs in the main thread between two of its bytecodes, possibly while
that thread holds a lock: ``Event.wait`` holds its event's lock for a moment each time it
wakes. A handler that calls ``Event.set`` takes that same lock and waits for itself, for
good: the daemon then neither stops on SIGTERM nor reloads (seen in the sandbox tests, now
and then, under load). So a handler only records the signal; the loop, which wakes every
quarter of a second anyway, acts on it.

A stop must not wait for the loop, though: the main thread may be busy for many seconds (a
reload stopping the old watchers, a collector waiting for its camera). So the stop signals
also set a ``stop`` event at once, from a thread of their own: Python's C-level handler
writes each signal's number to a pipe (``signal.set_wakeup_fd``), and that thread, reading
it, holds no lock of the main thread's.
"""

from __future__ import annotations

import collections
import os
import signal
import threading

STOPPING = (signal.SIGTERM, signal.SIGINT)


class Signals:
    """The signals received since the last ``take``, in order; ``stop`` (when given) is set
    as soon as one of ``STOPPING`` arrives. Made and closed in the main thread."""

    def __init__(self, *signums: int, stop: threading.Event | None = None) -> None:
        self._received: collections.deque[int] = collections.deque()
        self._previous_fd = -1
        self._write_fd = -1
        # given back at close: a process whose exit is held up (a thread that does not end)
        # must still stop on SIGTERM and Ctrl-C, not have them recorded for a loop that is gone
        self._handlers = {signum: signal.signal(signum, self.record) for signum in signums}
        if stop is not None:
            read_fd, self._write_fd = os.pipe()
            os.set_blocking(self._write_fd, False)  # the C handler must never block
            self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
            threading.Thread(
                target=_set_on_stop, args=(read_fd, stop), name="signals", daemon=True
            ).start()

    def record(self, signum: int, frame: object = None) -> None:
        """The handler: a deque's append takes no lock the main thread could be holding."""
        self._received.append(signum)

    def take(self) -> list[int]:
        taken = []
        while self._received:
            taken.append(self._received.popleft())
        return taken

    def close(self) -> None:
        """Give the wake-up pipe back (its thread ends) and the handlers that were before."""
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers = {}
        if self._write_fd >= 0:
            signal.set_wakeup_fd(self._previous_fd)
            os.close(self._write_fd)
            self._write_fd = -1


_held: collections.deque[int] = collections.deque()


def hold_reloads() -> None:
    """Until the daemon's own handlers are in place (``Signals``), a SIGHUP is kept, not
    obeyed: its default action ends the process, and ``systemctl reload`` or a hand's
    ``kill -HUP`` can come while the daemon is still loading its config and model."""
    signal.signal(signal.SIGHUP, lambda signum, frame: _held.append(signum))


def held_reloads() -> bool:
    """Whether a SIGHUP came while held (taken: asked once)."""
    came = bool(_held)
    _held.clear()
    return came


def _set_on_stop(read_fd: int, stop: threading.Event) -> None:
    """Read signal numbers from the wake-up pipe until it is closed; set ``stop`` on a stop."""
    try:
        while chunk := os.read(read_fd, 64):
            if any(signum in STOPPING for signum in chunk):
                stop.set()
    finally:
        os.close(read_fd)
