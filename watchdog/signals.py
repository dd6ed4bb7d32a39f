"""Signals taken by the main thread's loop, not acted on inside their handler.

A Python signal handler runs in the main thread between two of its bytecodes, possibly while
that thread holds a lock: ``Event.wait`` holds its event's lock for a moment each time it
wakes. A handler that calls ``Event.set`` takes that same lock and waits for itself, for
good: the daemon then neither stops on SIGTERM nor reloads (seen in the sandbox tests, now
and then, under load). So a handler only records the signal; the loop, which wakes every
quarter of a second anyway, acts on it.
"""

from __future__ import annotations

import collections
import signal


class Signals:
    """The signals received since the last ``take``, in order."""

    def __init__(self, *signums: int) -> None:
        self._received: collections.deque[int] = collections.deque()
        for signum in signums:
            signal.signal(signum, self.record)

    def record(self, signum: int, frame: object = None) -> None:
        """The handler: a deque's append takes no lock the main thread could be holding."""
        self._received.append(signum)

    def take(self) -> list[int]:
        taken = []
        while self._received:
            taken.append(self._received.popleft())
        return taken
