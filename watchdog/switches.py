"""Which printers the owner switched off (the page's or Home Assistant's Watching switch),
kept in the storage folder: a restart must not start watching, and pausing, a printer its
owner switched off (a print they watch themselves, a camera being moved)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from watchdog.durable import replace_file, set_aside

logger = logging.getLogger(__name__)

FILE = "switched-off.json"
_lock = threading.Lock()  # watchers of one daemon switch from their own threads


def switched_off(storage_dir: Path) -> frozenset[str]:
    """The printers switched off; none when the file is missing or unreadable (said once
    per reading: watching is the safe side)."""
    off = _read(Path(storage_dir) / FILE)
    return frozenset() if off is None else off


def _read(path: Path) -> frozenset[str] | None:
    """The switched-off printers in ``path`` (none when it is missing); None, said in the
    log, when it cannot be read."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return frozenset()
    except (OSError, ValueError, RecursionError) as exc:
        logger.warning("%s: unreadable, every printer is watched (%s)", path, exc)
        return None
    if not isinstance(data, list):
        logger.warning("%s: not a list of printers, every printer is watched", path)
        return None
    return frozenset(p for p in data if isinstance(p, str))


def remember(storage_dir: Path, printer: str, watching: bool) -> None:
    """Keep the switch of ``printer``; a disk error is said, the switch still holds until the
    next restart. An unreadable file is set aside first, not written over: the other
    printers' switches in it are not lost for good."""
    path = Path(storage_dir) / FILE
    with _lock:
        read = _read(path)
        try:
            if read is None:
                aside = set_aside(path)
                logger.warning("%s set aside as %s: its switches are not read", path, aside)
            off = set(read or ())
            (off.discard if watching else off.add)(printer)
            replace_file(path, json.dumps(sorted(off)).encode(), mode=0o644)
        except OSError as exc:
            logger.error(
                "cannot keep the Watching switch of %s in %s (%s): after a restart it is on",
                printer,
                storage_dir,
                exc.strerror or exc,
            )
