"""Files that survive a power cut whole or not at all: the Pi's SD card loses power with the
printer, and a half-written settings file, token store or password is worse than none."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def read_small(path: Path, limit: int) -> str:
    """The text of one of the daemon's own small state files, read only if it is a plain file
    of at most ``limit`` bytes: one grown by something else (gigabytes of JSON to parse at
    every look of the page) or a FIFO (a read that never ends) is a ValueError naming why.
    FileNotFoundError and other OSErrors as ``open`` raises them."""
    with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NONBLOCK)) as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError("not a regular file")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than the watchdog ever writes it ({limit / 2**20:g} MB at most)")
    return data.decode("utf-8", "replace")


def read_json(path: Path, limit: int = 8 * 2**20) -> Any:
    """One of the daemon's own small JSON files (``read_small``'s checks: a FIFO put there
    no longer hangs its reader); one nested too deeply to parse ("[[[[…", which Python's
    parser refuses with a RecursionError) is a ValueError too."""
    text = read_small(path, limit)
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to be read") from None


def why_unreadable(exc: Exception) -> str:
    """Why one of these files could not be read, in words: a disk's reason without Python's
    "[Errno 20] ... '<path>'" around it (the path is said beside it already)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, json.JSONDecodeError):  # "Expecting value: line 1 column 1 (char 0)"
        return "empty" if not exc.doc.strip() else "not whole JSON (cut short, or damaged)"
    if isinstance(exc, KeyError):  # "'printer'"
        return f"no {exc.args[0]!r} in it" if exc.args else "a part missing"
    if isinstance(exc, TypeError):  # "float() argument must be ..."
        return "a part of the wrong kind"
    return str(exc)


def set_aside_said(path: Path) -> str:
    """``set_aside`` for a log line that says what became of a damaged file: "kept as
    <name>", or why it could not be moved (it then stays where it is)."""
    try:
        return f"kept as {set_aside(path).name}"
    except OSError as exc:
        return f"not set aside: {why_unreadable(exc)}"


def set_aside(path: Path) -> Path:
    """Rename a file that cannot be read out of the way (``<name>.unreadable-<time>``, with a
    number after it when that name is taken), so a new one can be written without losing what
    it held, or what an earlier one held; returns the new name."""
    base = f"{path.name}.unreadable-{int(time.time())}"
    aside, n = path.with_name(base), 1
    while aside.exists() or aside.is_symlink():
        n += 1
        aside = path.with_name(f"{base}-{n}")
    os.replace(path, aside)
    fsync_dir(path.parent)
    return aside
