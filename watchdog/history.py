"""What a printer's watcher saw lately, kept in memory for the dashboard.

Two bounded rings per printer, so memory stays flat however long the daemon runs:

- ``Timeline``: one point per scored frame (time, score, threshold, flags) in preallocated
  numpy arrays: 24 h at one frame every 10 s is 8,640 points, about 150 KB.
- the lead-up: the last few frames before now (heatmap JPEG, already encoded for MQTT; the
  camera frame as JPEG only when the frame was anomalous, the frames the trainer wants as
  labelled failures), saved with an incident so "why did it pause?" is answered by a strip
  of pictures.

Frames are kept as the JPEGs the watcher made of them, never as pixels: a 640x480 frame is
0.9 MB decoded and about 50 KB encoded, per printer.

The history belongs to the printer, not to one watcher object: a reload builds new watchers
and hands them the same history, so the timeline survives a change of masks or sensitivity.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import IntFlag

import numpy as np

DEFAULT_POINTS = 8640  # 24 h at 10 s
LEAD_UP_FRAMES = 5


_F32_MAX = float(np.finfo(np.float32).max)


class Mark(IntFlag):
    """What happened at one point of the timeline."""

    NONE = 0
    ANOMALOUS = 1
    CALIBRATING = 2
    ACTION = 4  # the watcher paused, cancelled or alerted on this frame
    NEW_PRINT = 8  # first frame of a print


@dataclass(frozen=True)
class LeadUpFrame:
    """One frame before an incident: when, its score, the heatmap and (if anomalous) the frame."""

    time: float
    score: float
    heatmap_jpeg: bytes
    frame_jpeg: bytes | None


class Timeline:
    """A fixed-size ring of (time, score, threshold, marks); thread-safe.

    Each point has a sequence number, and the page asks for the points after the last one it
    has: asked by time, a wall clock set back (a Pi correcting its time) hid every new point,
    and the picture with them. A clock set back shifts the points already kept by the same
    step, so the timeline stays in order on the new clock; ``clock`` counts such shifts, and a
    page holding points of another count is sent them all again."""

    def __init__(self, points: int = DEFAULT_POINTS) -> None:
        self.capacity = points
        self._t = np.zeros(points, np.float64)
        self._s = np.zeros(points, np.float32)
        self._th = np.zeros(points, np.float32)
        self._f = np.zeros(points, np.uint8)
        self._next = 0
        self._count = 0
        self._added = 0  # points ever added: the newest point's sequence number
        self._clock = 0  # times the clock was seen set back
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._count

    def add(self, t: float, score: float, threshold: float, marks: Mark) -> None:
        with self._lock:
            if self._count:
                last = self._t[(self._next - 1) % self.capacity]
                if t < last:
                    self._t += t - last  # unused slots shift too: they are never read
                    self._clock += 1
            i = self._next
            # kept as float32: a value beyond its range is its largest, not an overflow warning
            score, threshold = (min(max(v, -_F32_MAX), _F32_MAX) for v in (score, threshold))
            self._t[i], self._s[i], self._th[i], self._f[i] = t, score, threshold, int(marks)
            self._next = (i + 1) % self.capacity
            self._count = min(self._count + 1, self.capacity)
            self._added += 1

    def since(self, after: int = 0, clock: int = 0) -> dict[str, object]:
        """Points after sequence number ``after``, oldest first, as plain JSON lists; all of
        them (``reset`` true) when ``clock`` is not the timeline's (the page's are shifted)."""
        with self._lock:
            reset = clock != self._clock or after > self._added  # another daemon's numbers
            order = (np.arange(self._count) + self._next - self._count) % self.capacity
            first = self._added - self._count + 1  # the sequence number of order[0]
            new = self._added - max(0 if reset else after, first - 1)
            keep = order[max(0, self._count - new) :] if new > 0 else order[:0]
            return {
                "seq": self._added,
                "clock": self._clock,
                "reset": reset,
                "t": [float(v) for v in self._t[keep]],
                "score": [float(v) for v in self._s[keep]],
                "threshold": [float(v) for v in self._th[keep]],
                "marks": [int(v) for v in self._f[keep]],
            }


class History:
    """A printer's timeline, lead-up frames and latest camera frame."""

    def __init__(self, points: int = DEFAULT_POINTS, lead_up: int = LEAD_UP_FRAMES) -> None:
        self.timeline = Timeline(points)
        self._recent: deque[LeadUpFrame] = deque(maxlen=lead_up)
        self._lock = threading.Lock()
        self._frame_jpeg: bytes | None = None  # the latest camera frame
        self._frame_at = -math.inf  # when it was taken (monotonic clock)

    def record(
        self,
        frame_jpeg: bytes,
        score: float,
        threshold: float,
        anomalous: bool,
        calibrating: bool,
        new_print: bool,
        heatmap_jpeg: bytes,
        acted: bool = False,
    ) -> None:
        """One scored frame (called by the watcher's thread after the frame was decided);
        ``acted``: the watcher paused, cancelled or alerted on it (marked with the point, so a
        page never reads it without its mark)."""
        now = time.time()
        marks = Mark.ACTION if acted else Mark.NONE
        if anomalous:
            marks |= Mark.ANOMALOUS
        if calibrating:
            marks |= Mark.CALIBRATING
        if new_print:
            marks |= Mark.NEW_PRINT
        self.timeline.add(now, score, threshold, marks)
        with self._lock:
            self._recent.append(
                LeadUpFrame(now, score, heatmap_jpeg, frame_jpeg if anomalous else None)
            )
            self._frame_jpeg, self._frame_at = frame_jpeg, time.monotonic()

    def saw(self, frame_jpeg: bytes) -> None:
        """A camera frame taken while nothing is scored (the page asked for a look)."""
        with self._lock:
            self._frame_jpeg, self._frame_at = frame_jpeg, time.monotonic()

    def lead_up(self) -> list[LeadUpFrame]:
        """The frames recorded before now, oldest first."""
        with self._lock:
            return list(self._recent)

    def latest_frame_jpeg(self) -> bytes | None:
        """The latest camera frame without the heatmap."""
        with self._lock:
            return self._frame_jpeg

    def frame_age_s(self) -> float:
        """Seconds since the latest camera frame was taken (infinite: none yet)."""
        with self._lock:
            return time.monotonic() - self._frame_at
