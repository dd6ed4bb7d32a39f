"""Wall-clock times saved for a later run, placed right on that run's clock.

A Pi has no clock chip: it boots on the time it last shut down (fake-hwclock) and NTP steps
the clock forward, by hours or days, whenever the network comes; an owner may set it back. A
time saved on one side of such a step and compared with the clock on the other was off by the
whole step: a notification queued a minute before was dropped as a day old, the print an alert
paused taken for another print, a phone's button "expired" minutes after it was sent.

So a saved time carries a :class:`BootMark`: this boot's id and the seconds since it booted
(``CLOCK_BOOTTIME``, which NTP never steps and a suspend does not stop). Read back during the
same boot (a restart of the daemon, the usual case), the moment is put on today's wall clock
exactly; from an earlier boot it keeps its wall time, the best there is.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
# the furthest ahead a saved moment may lie (a year): past it, a damaged file's
LONGEST_S = 366 * 86_400.0


@dataclass(frozen=True)
class BootMark:
    """A moment as this boot counts it: ``uptime_s`` seconds after boot ``boot`` began."""

    boot: str
    uptime_s: float

    def to_json(self) -> dict[str, Any]:
        return {"boot": self.boot, "uptime_s": round(self.uptime_s, 3)}

    @classmethod
    def from_json(cls, value: object) -> BootMark | None:
        """The mark saved as ``to_json`` wrote it; None for anything else (a file of an older
        version, a damaged one)."""
        if not isinstance(value, dict):
            return None
        boot, uptime = value.get("boot"), value.get("uptime_s")
        if not isinstance(boot, str) or isinstance(uptime, bool):
            return None
        if not isinstance(uptime, int | float) or not math.isfinite(uptime) or uptime < 0:
            return None
        return cls(boot, float(uptime))


@functools.cache
def boot_id() -> str | None:
    """This boot's id (None where the system does not tell it)."""
    try:
        return BOOT_ID.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def uptime() -> float:
    """Seconds since this boot began (a monotonic clock that later runs share)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def mark(wall: float) -> BootMark | None:
    """The mark of ``wall``, a time on the wall clock of now (past or future); None where the
    boot is not known, or for a moment before this boot began."""
    boot = boot_id()
    if boot is None or not math.isfinite(wall):
        return None
    since_boot = uptime() - (time.time() - wall)
    return BootMark(boot, since_boot) if since_boot >= 0 else None


def rebase(wall: float, saved: BootMark | None) -> float:
    """``wall``, saved with ``saved``, on the wall clock of now: exact when saved during this
    boot, ``wall`` itself otherwise."""
    if saved is None or saved.boot != boot_id():
        return wall
    now = uptime()
    if saved.uptime_s > now + LONGEST_S:  # not a moment of this boot's: a damaged file
        return wall
    return time.time() - (now - saved.uptime_s)
