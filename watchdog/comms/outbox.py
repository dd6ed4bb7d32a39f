"""The disk outbox: what must reach someone is written here first and removed once delivered.

MQTT alerts and phone notifications go through the same outbox, so both keep the same promise:
a broker or a push service that is away, a daemon that restarts or a power cut loses nothing,
and nothing is delivered twice. One entry is a folder::

    <storage.dir>/outbox/<channel>/<entry id>/entry.json      what to send (JSON)
    <storage.dir>/outbox/<channel>/<entry id>/attachment.jpg  optional picture

written to a hidden ``.partial`` folder, fsynced and renamed, so a half-written entry is never
read back. A channel is ``mqtt`` or ``notify-<target name>``. A disk that is full or
read-only must not stop alerts: ``put`` then returns the entry unsaved (``path`` None, logged
at most once a minute) and the caller keeps it in memory until it is delivered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from watchdog import moments
from watchdog.durable import (
    fsync_dir,
    read_json,
    replace_file,
    set_aside,
    why_unreadable,
    write_durably,
)
from watchdog.incidents import (
    SAFE_NAME,
    ThrottledLog,
    new_incident_id,
    newest_id,
    remove_stale_partials,
    to_json,
)
from watchdog.moments import BootMark

logger = logging.getLogger(__name__)

ENTRY = "entry.json"
ATTACHMENT = "attachment.jpg"
CHANNEL = re.compile(r"[A-Za-z0-9_-]{1,80}")
MQTT = "mqtt"  # the channel of MQTT alerts, kept under their incident's id


@dataclass(frozen=True)
class Entry:
    """One message waiting for delivery on one channel.

    ``body`` is the channel's own JSON (the alert for MQTT, the notification for a phone);
    ``created`` (Unix time, on the clock of the run that made it, with its boot ``mark``)
    bounds how long it is retried: read it through ``born``; ``path`` is None when it could not
    be saved, and then ``attachment`` holds the picture in memory.
    """

    channel: str
    id: str
    printer: str
    created: float
    body: dict[str, Any]
    path: Path | None = None
    attachment: bytes | None = field(default=None, repr=False)
    mark: BootMark | None = None

    @property
    def born(self) -> float:
        """``created`` on the wall clock of now: a queued notification was dropped as a day
        old at the restart after NTP set a Pi's clock forward."""
        return moments.rebase(self.created, self.mark)

    def on_clock_now(self, wall: float) -> float:
        """A time ``wall`` saved in this entry's body (by its clock) on the wall clock of now."""
        return wall + (self.born - self.created)

    def on_own_clock(self, wall: float) -> float:
        """A time ``wall`` on the wall clock of now as this entry's body keeps it (the inverse
        of ``on_clock_now``)."""
        return wall - (self.born - self.created)

    def picture(self) -> bytes | None:
        """The attached JPEG, from memory or from the entry's folder; None if there is none."""
        if self.attachment is not None:
            return self.attachment
        if self.path is None:
            return None
        try:
            return (self.path / ATTACHMENT).read_bytes()
        except OSError:
            return None


class Outbox:
    """Entries of every channel under ``<storage.dir>/outbox``; safe to share between threads
    (each entry is its own folder; ``put`` and ``done`` touch only that one)."""

    def __init__(self, storage_dir: Path, throttle: ThrottledLog | None = None) -> None:
        self.root = Path(storage_dir) / "outbox"
        self._throttle = throttle or ThrottledLog()

    def put(
        self,
        channel: str,
        printer: str,
        body: dict[str, Any],
        attachment: bytes | None = None,
        entry_id: str | None = None,
        created: float | None = None,
    ) -> Entry:
        """Write a new entry (fsynced) and return it; unsaved (``path`` None) on a disk error.
        ``created``: when its news happened, on the wall clock of now, where that was before
        it is queued (an alert an earlier run saved): it ages from then."""
        if not CHANNEL.fullmatch(channel):
            raise ValueError(f"outbox channel {channel!r} is not a safe folder name")
        # after the channel's newest entry whatever the clock says (a Pi whose clock was set
        # back): entries are delivered in the order of their ids
        entry_id = entry_id or new_incident_id(after=newest_id(self.root / channel))
        if not SAFE_NAME.fullmatch(entry_id):
            raise ValueError(f"outbox entry id {entry_id!r} is not a safe folder name")
        body = json.loads(
            to_json(body)
        )  # plain JSON types (numpy scores), as read back after a restart
        now = time.time() if created is None else min(created, time.time())
        entry = Entry(channel, entry_id, printer, now, body, None, attachment, moments.mark(now))
        folder = self.root / channel
        partial = folder / f".{entry_id}.partial"
        final = folder / entry_id
        record = _record(entry)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial.mkdir()
            if attachment is not None:
                write_durably(partial / ATTACHMENT, attachment)
            write_durably(partial / ENTRY, to_json(record))
            os.replace(partial, final)
        except OSError as exc:
            self._throttle(
                logger,
                logging.ERROR,
                "save",
                "cannot save to the outbox in %s: %s; kept in memory until delivered",
                folder,
                exc.strerror or exc,
            )
            shutil.rmtree(partial, ignore_errors=True)
            return entry
        # in place from here: a folder that cannot be synced (a failing card) must not make a
        # saved entry look unsaved, sent from memory, never marked done, sent at every start
        with contextlib.suppress(OSError):
            fsync_dir(folder)
        return replace(entry, path=final, attachment=None)

    def done(self, entry: Entry) -> None:
        """Delivered (or given up): remove the entry so it is never sent again. Renamed out of
        the listing first, in one step: a power cut part-way through the delete left its
        entry.json without its picture (sent again, picture-less) or its picture alone (a
        "damaged entry" at every start); a left-over is cleared as a stale partial write."""
        if entry.path is None:
            return
        doomed = entry.path.with_name(f".{entry.path.name}.partial")
        try:
            os.replace(entry.path, doomed)
            fsync_dir(entry.path.parent)
            shutil.rmtree(doomed)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._throttle(
                logger,
                logging.ERROR,
                f"done:{entry.channel}",
                "cannot remove delivered outbox entry %s (%s): it may be sent again after a restart",
                entry.path,
                exc.strerror or exc,
            )

    def remark(self, entry: Entry, body: dict[str, Any]) -> Entry:
        """The entry with ``body`` in place of its own, on disk too (at once: a restart reads
        either); kept in memory alone on a disk error."""
        entry = replace(entry, body=json.loads(to_json(body)))
        if entry.path is None:
            return entry
        try:
            replace_file(entry.path / ENTRY, to_json(_record(entry)))
        except OSError as exc:
            self._throttle(
                logger,
                logging.ERROR,
                f"remark:{entry.channel}",
                "cannot rewrite outbox entry %s: %s",
                entry.path,
                exc.strerror or exc,
            )
        return entry

    def pending(self, channel: str) -> list[Entry]:
        """Saved entries of ``channel``, oldest first (left by an earlier run or not yet done)."""
        folder = self.root / channel
        remove_stale_partials(folder)
        try:
            dirs = sorted(p for p in folder.iterdir() if p.is_dir() and SAFE_NAME.fullmatch(p.name))
        except OSError:
            return []
        found = []
        for path in dirs:
            try:
                record = read_json(path / ENTRY)
                entry = Entry(
                    channel,
                    path.name,
                    str(record["printer"]),
                    float(record["created"]),
                    dict(record["body"]),
                    path,
                    mark=BootMark.from_json(record.get("boot")),
                )
            except FileNotFoundError:
                if path.is_dir():  # no record in it: a leftover, never sendable, not a delivery
                    self._set_aside(path, ValueError(f"no {ENTRY} in it"))
                continue  # else delivered and removed since the folder was listed
            except OSError as exc:  # the disk's (it may read again later): kept, said once a minute
                self._throttle(
                    logger,
                    logging.ERROR,
                    f"corrupt:{path}",
                    "outbox entry %s skipped: %s",
                    path,
                    why_unreadable(exc),
                )
                continue
            except (ValueError, KeyError, TypeError) as exc:
                self._set_aside(path, exc)
                continue
            found.append(entry)
        return found

    def _set_aside(self, path: Path, exc: Exception) -> None:
        """An entry whose record is damaged (a power cut, a disk's bad block) is renamed out of
        the way, said once: read again on every look of the page and every pass of its
        sender, it was an error line each time, and it can never be sent."""
        try:
            aside = set_aside(path)
        except FileNotFoundError:
            return  # another reader set it aside first
        except OSError as err:
            self._throttle(
                logger,
                logging.ERROR,
                f"corrupt:{path}",
                "outbox entry %s cannot be read (%s), nor set aside: %s",
                path,
                why_unreadable(exc),
                why_unreadable(err),
            )
            return
        logger.error(
            "outbox entry %s cannot be read (%s): not sent; kept as %s",
            path,
            why_unreadable(exc),
            aside.name,
        )

    def channels(self, prefix: str = "") -> list[str]:
        """Channels with a folder on disk (entries may be left for targets no longer configured)."""
        try:
            return sorted(
                p.name
                for p in self.root.iterdir()
                if p.is_dir() and CHANNEL.fullmatch(p.name) and p.name.startswith(prefix)
            )
        except OSError:
            return []


def _record(entry: Entry) -> dict[str, Any]:
    """What ``entry.json`` holds."""
    record = {"printer": entry.printer, "created": entry.created, "body": entry.body}
    if entry.mark is not None:
        record["boot"] = entry.mark.to_json()
    return record
