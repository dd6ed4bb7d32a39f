"""One daemon per storage folder: an ``flock`` on ``<storage.dir>/daemon.lock``.

Two daemons on one folder would send every pending alert twice and, with the default MQTT
client id, knock each other off the broker. The lock is released by the kernel when the
process ends, however it ends (kill -9 included), so a stale lock file never blocks a start.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import pwd
from pathlib import Path

from watchdog.durable import set_aside
from watchdog.errors import UsageError

logger = logging.getLogger(__name__)

LOCK_FILE = "daemon.lock"


class StorageInUse(UsageError):
    """Another daemon holds this storage folder."""


class StorageLock:
    """The held lock; ``release()`` (or process exit) frees it."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def _other_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


SERVICE_USER = "printer-watchdog"  # the user deploy/install.sh runs the service as


def refuse_as_root_in_a_users_folder(folder: Path) -> None:
    """Root writing into the service user's storage folder leaves files that user cannot
    write (incidents, the outbox, the lock): every later save fails, quietly, and systemd
    does not hand them back. So a command run with plain ``sudo`` is refused, naming the
    user to run it as; so is root in the installed service's own folder however it became
    root (``sudo su -`` clears ``SUDO_UID``). Root by design, as in a container, is not
    refused elsewhere. A folder not made yet is judged by the nearest one above it."""
    if os.geteuid() != 0:
        return
    path = nearest_existing(folder)
    try:
        owner = path.stat().st_uid
    except OSError:
        return
    if owner == 0:
        return
    user = user_name(owner)
    if "SUDO_UID" in os.environ or user == SERVICE_USER:
        where = f"{folder}" if path == Path(folder).absolute() else f"{folder} (in {path})"
        raise UsageError(
            f"{where} belongs to the user {user}: run this as that user (sudo -u {user} ...), "
            "not as root (files root makes there, that user cannot write)"
        )


def why_unwritable(folder: Path) -> str | None:
    """Why this user could not keep files in ``folder`` (made where missing), or None.
    Judged without making or writing anything, so a check run before a long job leaves no
    trace; the wording follows "<folder>: "."""
    path = Path(folder)
    if path.exists():
        if not path.is_dir():
            return "a file, not a folder"
        return None if os.access(path, os.W_OK | os.X_OK) else "this user cannot write in it"
    parent = nearest_existing(path)
    if not parent.is_dir():
        return f"cannot be made: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be made: this user cannot write in {parent}"
    return None


def nearest_existing(folder: Path) -> Path:
    """``folder``, or the nearest folder above it that exists (where it would be made)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def user_name(uid: int) -> str:
    """The user's name as the owner would type it; the number where there is none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _open_lock_file(path: Path) -> int:
    """The lock file, opened without following a link: a link or a folder put at its name is
    moved aside first (a link was followed, and the file it named cut to the daemon's pid; a
    folder ran the daemon unlocked, saying its storage was not writable)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EISDIR):
            raise
    aside = set_aside(path)
    logger.warning(
        "%s was a %s, not the watchdog's lock file: moved aside as %s",
        path,
        "link" if aside.is_symlink() else "folder",
        aside.name,
    )
    return os.open(path, flags, 0o644)


def lock_storage(storage_dir: Path) -> StorageLock:
    """Take the folder's lock or raise StorageInUse naming the folder and the holder's pid
    (or UsageError as root in a user's folder).

    A folder where no lock file can be written (read-only storage) is not a reason to stop:
    alerts still go out over MQTT, so it is logged and the daemon runs unlocked.
    """
    refuse_as_root_in_a_users_folder(storage_dir)
    path = Path(storage_dir) / LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = _open_lock_file(path)
    except OSError as exc:
        logger.error(
            "storage folder %s is not writable (%s): incidents, queued alerts and saved "
            "settings are not kept, and a second daemon on it would not be refused; under "
            "systemd a folder outside /var/lib/printer-watchdog needs ReadWritePaths= "
            "(sudo systemctl edit printer-watchdog)",
            storage_dir,
            exc.strerror or exc,
        )
        return StorageLock(path, None)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        other = _other_pid(fd)
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StorageInUse(
                f"storage folder {storage_dir} is in use by another watchdog daemon (pid {other}); "
                "stop it, or give this one its own storage.dir"
            ) from None
        logger.warning("cannot lock storage folder %s (%s)", storage_dir, exc.strerror or exc)
        return StorageLock(path, None)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the lock holds even if the pid cannot be written
    return StorageLock(path, fd)
