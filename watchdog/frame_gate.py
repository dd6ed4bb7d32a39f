"""One frame in process at a time, however many printers a daemon watches.

Why: decoding a frame, scoring it and drawing its heatmap take several frame-sized buffers
for a moment (about 3 MB at 640x480). When every printer's frame is in flight at once, the
peak, and the heap glibc keeps afterwards, grew by that much per printer (benchmarks/memory.py).
The work itself is short (milliseconds; the model already runs one frame at a time), so
letting one thread at a time do it costs printers nothing at camera intervals of seconds.

A watcher's thread enters the gate when its camera starts decoding (after the bytes arrived:
a slow or hung camera never holds it) and leaves once the frame is reduced to its JPEGs and
verdict, before it talks to the printer or the network.
"""

from __future__ import annotations

import threading


class FrameGate:
    """A semaphore whose holder is the thread: ``enter`` is a no-op for a thread already in,
    ``leave`` a no-op for one that is not, so a camera may enter and its watcher leave."""

    def __init__(self, slots: int = 1) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._inside = threading.local()

    def enter(self) -> None:
        if not getattr(self._inside, "held", False):
            self._slots.acquire()
            self._inside.held = True

    def leave(self) -> None:
        if getattr(self._inside, "held", False):
            self._inside.held = False
            self._slots.release()
