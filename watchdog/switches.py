"""Which printers the owner switched off (the page's or Home Assistant's Watching switch),
kept in the storage folder: a restart must not start watching, and pausing, a printer its
owner switched off (a print they watch themselves, a camera being moved)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from watchdog.durable import read_json, replace_file, set_aside, why_unreadable

logger = logging.getLogger(__name__)

FILE = "switched-off.json"
MAX_FILE_BYTES = 1 * 2**20  # a list of printer names: thousands of them
_lock = threading.Lock()  # watchers of one daemon switch from their own threads
# the switches last read or written in each file: a file damaged while the daemon runs
# (another program, a full disk) does not turn printers switched off back on, nor lose them
# when the next switch is written
_known: dict[Path, frozenset[str]] = {}


def switched_off(storage_dir: Path) -> frozenset[str]:
    """The printers switched off; when the file is unreadable (said once per reading), those
    known from before, else none (watching is the safe side)."""
    path = Path(storage_dir) / FILE
    with _lock:
        off = _read(path)
        return _known.get(path, frozenset()) if off is None else off


def _read(path: Path) -> frozenset[str] | None:
    """The switched-off printers in ``path`` (none when it is missing); None, said in the
    log, when it cannot be read."""
    before = _known.get(path)
    kept = (
        "every printer is watched"
        if before is None
        else f"the switches read before are kept ({', '.join(sorted(before)) or 'none off'})"
    )
    try:
        data = read_json(path, MAX_FILE_BYTES)
    except FileNotFoundError:
        # none switched off; or, while the daemon runs, one set aside whose replacement could
        # not be written (a full disk): the switches known from before still hold
        return _known.setdefault(path, frozenset())
    except (OSError, ValueError) as exc:
        logger.warning("%s: unreadable, %s (%s)", path, kept, why_unreadable(exc))
        return None
    if not isinstance(data, list):
        logger.warning("%s: not a list of printers, %s", path, kept)
        return None
    _known[path] = frozenset(p for p in data if isinstance(p, str))
    return _known[path]


def remember(storage_dir: Path, printer: str, watching: bool) -> str | None:
    """Keep the switch of ``printer``; a disk error is said (and returned, in the owner's
    words), the switch still holds until the next restart. An unreadable file is set aside
    first, not written over, and the switches known from before are written with this one:
    the other printers' switches are not lost."""
    path = Path(storage_dir) / FILE
    with _lock:
        read = _read(path)
        try:
            if read is None:
                aside = set_aside(path)
                logger.warning("%s set aside as %s: its switches are not read", path, aside)
            off = set(_known.get(path, frozenset()) if read is None else read)
            (off.discard if watching else off.add)(printer)
            replace_file(path, json.dumps(sorted(off)).encode(), mode=0o644)
            _known[path] = frozenset(off)
        except OSError as exc:
            logger.error(
                "cannot keep the Watching switch of %s in %s (%s): a restart will not know it",
                printer,
                storage_dir,
                exc.strerror or exc,
            )
            return f"not kept for after a restart: cannot write {path} ({exc.strerror or exc})"
    return None
