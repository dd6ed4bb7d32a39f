"""A camera that serves the very same picture over and over watches nothing.

ustreamer serves its "no signal" picture (or the last frame, ``--last-as-blank``) when its
USB camera goes, an IP camera's firmware can hang on one frame and an RTSP server repeat the
last one it had: the stream stays up and every frame decodes, so nothing else notices, and
the print is watched on a picture that never changes. A live sensor's noise makes two JPEGs
of one still scene differ in their bytes, and two decoded frames in their pixels (an H.264
stream of a still scene still codes a new picture at each key frame, seconds apart), so the
same bytes or pixels read again and again are a picture that is not live (or a room so dark
that the camera sends black, where nothing is watched either). Every camera's decoded pixels
are compared, an http camera's too: one that writes its time of sending into each JPEG sends
new bytes of the same frozen picture.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np

MIN_REPEATS = 3  # reads of the same picture, at least, before it counts as frozen
# reads further apart than this (the printer idle between prints: the camera is read only
# while a print is watched) start the count again: a still scene across them is no freeze
MIN_GAP_S = 300.0


class FrozenPicture:
    """How long a camera has served one picture, pixel for pixel (thread-safe: a stream's
    reader thread and the watcher's reads both ask)."""

    def __init__(self, after_s: float, interval_s: float = 0.0) -> None:
        self.after_s = after_s  # 0: never frozen
        # reads further apart than the camera's pace allows: the printer was idle between
        self._gap_s = max(2 * after_s, MIN_GAP_S, 3 * interval_s)
        self._lock = threading.Lock()
        self._digest = b""
        self._since = 0.0
        self._repeats = 0
        self._last = 0.0
        self._told = False  # frozen_for said frozen: only a new picture ends it, not a gap

    def frozen_for(self, data: bytes | np.ndarray, now: float) -> float | None:
        """Seconds ``data`` (bytes, or a decoded frame) has been the picture served, once that
        is ``after_s`` or more (and it was read at least MIN_REPEATS times); None while the
        picture is live.
        ``now``: the monotonic clock. A picture found frozen stays frozen across the idle
        time between prints: the next print must not start on it as a live camera."""
        if self.after_s <= 0:
            return None
        picture = np.ascontiguousarray(data).data if isinstance(data, np.ndarray) else data
        digest = hashlib.blake2b(picture, digest_size=16).digest()
        with self._lock:
            gap = now - self._last > self._gap_s
            self._last = now
            if digest != self._digest or (gap and not self._told):
                self._digest, self._since, self._repeats, self._told = digest, now, 1, False
                return None
            self._repeats += 1
            same_for = now - self._since
            self._told = self._repeats >= MIN_REPEATS and same_for >= self.after_s
            return same_for if self._told else None

    def carry_on(self, old: FrozenPicture) -> None:
        """Count on from ``old``, the count of the same source before a reload rebuilt its
        camera (a camera found frozen would otherwise be told back online at once)."""
        with old._lock:
            state = (old._digest, old._since, old._repeats, old._last, old._told)
        with self._lock:
            self._digest, self._since, self._repeats, self._last, self._told = state


def frozen_message(seconds: float) -> str:
    """The camera's error while its picture is frozen (one line, the config key named)."""
    return (
        f"the very same picture for {seconds:.0f} s: a frozen camera, a streamer's stand-in "
        "picture after its USB camera was unplugged, or a room too dark to see "
        "(camera.frozen_after_s)"
    )
