"""Files that survive a power cut whole or not at all: the Pi's SD card loses power with the
printer, and a half-written settings file, token store or password is worse than none."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path


def write_durably(path: Path, data: bytes) -> None:
    """Write and flush to the disk (not atomic: for files inside a folder renamed after)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(
    path: Path, data: bytes, mode: int = 0o600, check: Callable[[Path], object] | None = None
) -> None:
    """Put ``data`` in place of ``path`` at once: written beside it (``check``ed there, if
    given), flushed, then renamed over it. On an error (OSError, or whatever ``check``
    raises) the old file is untouched and no temporary file is left."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):
        fsync_dir(path.parent)


def set_aside(path: Path) -> Path:
    """Rename a file that cannot be read out of the way (``<name>.unreadable-<time>``), so a
    new one can be written without losing what it held; returns the new name."""
    aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
    os.replace(path, aside)
    fsync_dir(path.parent)
    return aside
