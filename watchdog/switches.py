"""Which printers the owner switched off (the page's or Home Assistant's Watching switch),
kept in the storage folder: a restart must not start watching, and pausing, a printer its
owner switched off (a print they watch themselves, a camera being moved)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from watchdog.durable import replace_file

logger = logging.getLogger(__name__)

FILE = "switched-off.json"
_lock = threading.Lock()  # watchers of one daemon switch from their own threads


def switched_off(storage_dir: Path) -> frozenset[str]:
    """The printers switched off; none when the file is missing or unreadable (said once
    per reading: watching is the safe side)."""
    path = Path(storage_dir) / FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return frozenset()
    except (OSError, ValueError, RecursionError) as exc:
        logger.warning("%s: unreadable, every printer is watched (%s)", path, exc)
        return frozenset()
    if not isinstance(data, list):
        logger.warning("%s: not a list of printers, every printer is watched", path)
        return frozenset()
    return frozenset(p for p in data if isinstance(p, str))


def remember(storage_dir: Path, printer: str, watching: bool) -> None:
    """Keep the switch of ``printer``; a disk error is said, the switch still holds until the
    next restart."""
    with _lock:
        off = set(switched_off(storage_dir))
        (off.discard if watching else off.add)(printer)
        try:
            replace_file(Path(storage_dir) / FILE, json.dumps(sorted(off)).encode(), mode=0o644)
        except OSError as exc:
            logger.error(
                "cannot keep the Watching switch of %s in %s (%s): after a restart it is on",
                printer,
                storage_dir,
                exc.strerror or exc,
            )
