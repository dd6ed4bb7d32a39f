"""The incident store on disk.

An alert is written here before anything is sent: ``<storage.dir>/incidents/<printer>/<incident_id>/``
holds ``frame.jpg``, ``heatmap.jpg`` and ``alert.json``. Delivery (MQTT, phone notifications)
goes through the outbox (``watchdog.comms.outbox``); the ``pending`` marker written here by
earlier versions is moved to the outbox at start. A disk that is full or read-only must not
stop alerts: saving then fails softly (logged at most once a minute) and the caller keeps
the alert in memory until it is delivered.

User feedback lands here too: an incident marked "not a failure" has its frame copied to
``<storage.dir>/collected/<printer>/false_alarms/``, a folder the trainer reads with
``--normal``. A confirmed failure has its frame and the anomalous frames that led to it
copied to ``<storage.dir>/collected/<printer>/failures/``, which the trainer's ``--normal``
reads as failures (never fitted).

``lead_up/`` in an incident's folder holds the frames scored just before the trigger
(``NN-heatmap.jpg``, and ``NN-frame.jpg`` for the anomalous ones), oldest first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from watchdog import frames, moments
from watchdog.durable import fsync_dir, read_json, replace_file, write_durably
from watchdog.moments import BootMark

logger = logging.getLogger(__name__)

FRAME = "frame.jpg"
HEATMAP = "heatmap.jpg"
ALERT = "alert.json"
BOOT = "boot"  # an alert's key: its time's boot mark (watchdog.moments)
PENDING = "pending"
# An alert saved before its action finished, replaced when it does: kept out of the dashboard
# and of "the latest alert" meanwhile. One left by a watchdog that stopped during the action
# is settled at the next start (``settle_drafts``) and shown, the action's end unknown.
DRAFT = "draft"
LEAD_UP = "lead_up"
# A settled draft's phone notification is queued: a later start must not queue it again while
# the broker has still not taken its alert (the pending marker stays for MQTT)
PHONES_TOLD = "phones_told"
FAILURES = frames.FAILURES  # folder of frames of confirmed failures (the trainer's --anomalous)
VERDICTS = ("not_failure", "failure")

# Incident ids and printer names become folder names: nothing that could climb out of them.
SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class IncidentError(ValueError):
    """An incident that does not exist or cannot be used; the message says which and where.
    ``told``: the same without where on disk, for the owner's phone or page."""

    def __init__(self, message: str, told: str | None = None) -> None:
        super().__init__(message)
        self.told = told or message


class ThrottledLog:
    """Logs a recurring failure once, then reminds of it less and less often while it goes
    on (after ``interval_s``, then 5, 15 and 60 times that), counting what it holds back.

    A full disk fails on every alert and every frame, a broker down all night at every
    retry: a line a minute was 480 lines a night. A key quiet for twice its interval is
    over: its next failure is news, said at once. At most ``max_keys`` keys are remembered, the
    least recently seen forgotten first: a key made of what arrives (a topic, a printer's
    name in a message) cannot grow the daemon's memory; a forgotten key's next failure is
    logged at once.
    """

    STEPS = (1, 5, 15, 60)  # the reminders' intervals, in ``interval_s``

    def __init__(self, interval_s: float = 60.0, max_keys: int = 256) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._lock = threading.Lock()
        # per key: when it was last said, how many since, its step, when it was last seen
        self._last: dict[str, tuple[float, int, int, float]] = {}  # oldest seen first

    def __call__(self, log: logging.Logger, level: int, key: str, msg: str, *args: object) -> bool:
        """Log ``msg`` unless ``key`` was logged less than its interval ago; True if logged."""
        now = time.monotonic()
        with self._lock:
            said, suppressed, step, seen = self._last.pop(key, (None, 0, 0, now))
            interval = self.interval_s * self.STEPS[step]
            if said is not None and now - seen > 2 * interval:
                said, suppressed, step = None, 0, 0  # quiet that long: that one is over
            if said is not None and now - said < interval:
                self._last[key] = (said, suppressed + 1, step, now)
                return False
            if said is not None:
                step = min(step + 1, len(self.STEPS) - 1)
            self._last[key] = (now, 0, step, now)
            while len(self._last) > self.max_keys:
                del self._last[next(iter(self._last))]
        if suppressed:
            again = self.interval_s * self.STEPS[step]
            msg += (
                f" ({suppressed} more like this since the last report; said again in "
                f"{_duration(again)} if it goes on)"
            )
        log.log(level, msg, *args)
        return True

    def reset(self, key: str) -> None:
        """The failure is over: the next one is reported at once."""
        with self._lock:
            self._last.pop(key, None)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min"


@dataclass
class Incident:
    """One alert with its frames; ``path`` is None when it could not be saved."""

    printer: str
    id: str
    alert: dict[str, Any]
    path: Path | None

    @property
    def payload(self) -> bytes:
        """The alert JSON as published on ``<prefix>/<printer>/alert``."""
        return to_json(self.alert)


def _jsonable(obj: Any) -> Any:
    # numpy scalars (scores) and paths appear in alerts built by the loop.
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def to_json(data: Any) -> bytes:
    """Compact JSON bytes; numpy scalars become plain numbers."""
    return json.dumps(data, default=_jsonable, separators=(",", ":")).encode()


_last_id_time = datetime.min.replace(tzinfo=UTC)
_id_lock = threading.Lock()


def new_incident_id(now: datetime | None = None, after: str | None = None) -> str:
    """A time-sortable, collision-resistant id that is safe as a folder name.

    Ids this process makes sort in the order it made them: two made in the same millisecond
    would otherwise order by their random suffix, so the later one takes the next millisecond.
    ``after``: the newest id already saved, which this one sorts after whatever the clock says
    (a Pi started with its clock behind, before its time is set, or a clock set back): its
    alert was refused as "an older alert", listed last and pruned first.
    """
    global _last_id_time
    stamp = now or datetime.now(UTC)
    stamp = stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)
    if after is not None and (newest := _id_time(after)) is not None:
        # (never past LAST_ID_YEAR: a folder named for the year 9999's last millisecond had
        # no next one, and every alert after it failed to be made, none saved, sent or shown)
        stamp = max(stamp, newest + timedelta(milliseconds=1))
    if now is None:
        with _id_lock:
            stamp = max(stamp, _last_id_time + timedelta(milliseconds=1))
            _last_id_time = stamp
    return f"{stamp:%Y%m%dT%H%M%S}{stamp.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def id_folders(folder: Path) -> list[Path]:
    """The folders of ``folder`` named as ids (a printer's incidents, an outbox channel's
    entries), oldest first; a folder of another name is none: it would sort after them."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and is_incident_id(p.name))
    except OSError:
        return []


def newest_id(folder: Path) -> str | None:
    """The newest id among ``id_folders(folder)`` (None: none), for ``new_incident_id(after=)``."""
    found = id_folders(folder)
    return found[-1].name if found else None


def is_incident_id(name: str) -> bool:
    """Whether a folder name is an incident id (a folder of another name sorts after them)."""
    return _id_time(name) is not None


def local_time(when: datetime) -> str:
    """A time for the owner to read: the machine's own clock time and its zone's name, the day
    too where it is not today. The zone, because the Pi's may not be the reader's (a phone
    abroad, a Pi left on UTC), and an hour that comes twice as clocks go back is told apart
    ("02:30 CEST", then "02:30 CET"); a naive ``when`` is taken as the machine's time. The
    zone is read again each time (a stat of /etc/localtime): one the owner set since the start
    (``timedatectl set-timezone``) was not seen until a restart."""
    time.tzset()
    local = when.astimezone()
    today = datetime.now().date()
    return local.strftime("%H:%M %Z" if local.date() == today else "%Y-%m-%d %H:%M %Z").strip()


def raised_at(incident_id: str) -> str:
    """When the alert of ``incident_id`` was raised, for the owner ("an unknown time" for an
    id of another form)."""
    stamp = _id_time(incident_id)
    try:
        return "an unknown time" if stamp is None else local_time(stamp)
    except OverflowError:  # year 9999 or 1 in an id sent over MQTT, a day off in local time
        return "an unknown time"


# An id dated from this year on is none of ours, whatever the clock said (a folder put there
# by something else): taken for the newest, it made every real alert "an older alert" whose
# phone buttons were refused, and it was never pruned.
LAST_ID_YEAR = 2999


def _id_time(incident_id: str) -> datetime | None:
    """The time an id sorts by; None for a name of another form."""
    try:
        stamp = datetime.strptime(incident_id[:15], "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        when = stamp + timedelta(milliseconds=int(incident_id[15:18]))
    except ValueError:
        return None
    return when if when.year <= LAST_ID_YEAR else None


def check_name(value: str, what: str) -> str:
    """``value`` if it is a safe folder name, else IncidentError naming ``what``."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value):
        raise IncidentError(f"{what} {value!r} is not valid (1-64 letters, digits, '_' or '-')")
    return value


def incidents_root(storage_dir: Path) -> Path:
    return Path(storage_dir) / "incidents"


def incident_dir(storage_dir: Path, printer: str, incident_id: str) -> Path:
    """The folder of an existing incident; IncidentError if there is none."""
    check_name(printer, "printer")
    check_name(incident_id, "incident id")
    path = incidents_root(storage_dir) / printer / incident_id
    if not (path / ALERT).is_file():
        raise IncidentError(
            f"no incident {incident_id} for printer {printer} in {path.parent}",
            f"no alert {incident_id} of {printer} (the oldest alerts are removed)",
        )
    return path


def stored_job(storage_dir: Path, printer: str, incident_id: str) -> str | None:
    """The print job an incident's alert was about, as saved (None: unknown or unreadable)."""
    try:
        job = _read_alert(incident_dir(storage_dir, printer, incident_id)).get("job")
    except IncidentError:
        return None
    return job if isinstance(job, str) else None


def _read_alert(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path / ALERT)
    except (OSError, ValueError) as exc:
        raise IncidentError(
            f"{path / ALERT}: cannot read: {exc}", f"alert {path.name} cannot be read (see the log)"
        ) from exc
    if not isinstance(data, dict):
        raise IncidentError(
            f"{path / ALERT}: not a JSON object", f"alert {path.name} cannot be read (see the log)"
        )
    return data


def remove_stale_partials(folder: Path, age_s: float = 3600.0) -> None:
    """Half-written folders (``.<id>.partial``) a power cut or a full disk left behind; an
    hour old, nobody is still writing them."""
    try:
        for stale in folder.glob(".*.partial"):
            if time.time() - stale.stat().st_mtime > age_s:
                shutil.rmtree(stale, ignore_errors=True)
    except OSError:
        pass


class IncidentStore:
    """Incidents of all printers under one storage folder; safe to share between threads."""

    def __init__(
        self, storage_dir: Path, keep: int = 100, throttle: ThrottledLog | None = None
    ) -> None:
        self.storage_dir = Path(storage_dir)
        self.root = incidents_root(self.storage_dir)
        self.keep = keep
        self._throttle = throttle or ThrottledLog()
        self._lock = threading.Lock()
        # alerts not kept on disk at all: neither saved nor settled into their draft (``settle``,
        # the watcher's last resort); replay says how many
        self.unsaved = 0

    def _not_kept(self) -> None:
        with self._lock:
            self.unsaved += 1

    def save(
        self,
        printer: str,
        alert: dict[str, Any],
        frame_jpeg: bytes,
        heatmap_jpeg: bytes,
        pending: bool = True,
        draft: bool = False,
    ) -> Incident:
        """Write a new incident (``pending`` delivery unless told otherwise; ``draft``: see
        DRAFT); on a disk error it comes back unsaved (``path`` None) and the caller keeps it in
        memory.

        ``alert`` is copied and given its ``incident`` id (and ``time``/``printer`` if missing).
        """
        check_name(printer, "printer")
        incident_id = new_incident_id(after=newest_id(self.root / printer))
        alert = dict(alert)
        alert.setdefault("time", datetime.now(UTC).isoformat(timespec="seconds"))
        alert.setdefault("printer", printer)
        alert["incident"] = incident_id
        _mark_time(alert)
        incident = Incident(printer, incident_id, alert, None)
        folder = self.root / printer
        partial = folder / f".{incident_id}.partial"
        final = folder / incident_id
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial.mkdir()
            write_durably(partial / FRAME, frame_jpeg)
            write_durably(partial / HEATMAP, heatmap_jpeg)
            write_durably(partial / ALERT, json.dumps(alert, default=_jsonable, indent=2).encode())
            if pending:
                write_durably(partial / PENDING, b"")
            if draft:
                write_durably(partial / DRAFT, b"")
            os.replace(partial, final)
        except OSError as exc:
            self._throttle(
                logger,
                logging.ERROR,
                "save",
                "cannot save incident %s in %s: %s; it is not kept (not on the page after a "
                "restart; the alert is still sent where it goes)",
                incident_id,
                folder,
                exc.strerror or exc,
            )
            shutil.rmtree(partial, ignore_errors=True)
            return incident
        incident.path = final  # in place: a folder that cannot be synced does not undo that
        with contextlib.suppress(OSError):
            fsync_dir(folder)
        self.prune(printer, saved=incident_id)
        return incident

    def settle(self, draft: Incident, alert: dict[str, Any]) -> Incident:
        """The final ``alert`` written into its ``draft``, where it could not be saved as an
        incident of its own (a full disk): the draft was thrown away all the same, and the
        alert was on no page, its answers refused as an older alert's. The draft's frames
        stay, and its pending marker until the alert is handed on (``delivered``). On an
        error the draft goes, as before: kept, it was sent again after the next start, its
        action's end unknown, beside the alert sent from memory."""
        if draft.path is None:
            self._not_kept()
            return Incident(draft.printer, draft.id, dict(alert, incident=draft.id), None)
        alert = _mark_time(dict(alert, incident=draft.id))
        try:
            replace_file(
                draft.path / ALERT, json.dumps(alert, default=_jsonable, indent=2).encode(), 0o644
            )
            (draft.path / DRAFT).unlink()
        except OSError as exc:
            logger.error(
                "%s: cannot save alert %s either (%s): it is sent, and kept in memory only",
                draft.printer,
                draft.id,
                exc.strerror or exc,
            )
            self.discard(draft)
            self._not_kept()
            return Incident(draft.printer, draft.id, alert, None)
        with contextlib.suppress(OSError):  # in place: a folder not synced does not undo that
            fsync_dir(draft.path)
        return Incident(draft.printer, draft.id, alert, draft.path)

    def discard(self, incident: Incident) -> None:
        """Delete a saved incident (a draft replaced by the final alert).

        Renamed out of the listing first, in one step: a dashboard or a reader of the folder
        never sees a half-deleted incident (left over if the delete fails, ``prune`` clears it at
        the printer's next incident once it is an hour old).
        """
        if incident.path is None:
            return
        doomed = incident.path.with_name(f".{incident.id}.partial")
        try:
            os.replace(incident.path, doomed)
        except OSError:
            doomed = incident.path
        else:
            with contextlib.suppress(OSError):
                # durable at once: after a power cut the draft must not come back as pending
                fsync_dir(incident.path.parent)
        shutil.rmtree(doomed, ignore_errors=True)

    def correct(self, printer: str, alert: dict[str, Any]) -> Incident:
        """A saved alert found wrong since (its pause did not happen): its action's result,
        message and buttons written over, its verdict and answer kept. ``path`` None where it
        cannot be (gone, a full disk): the correction is sent all the same."""
        incident_id = str(alert["incident"])
        path = incident_dir(self.storage_dir, printer, incident_id)
        changed = {k: alert[k] for k in ("action_result", "message", "answers")}
        try:
            with _verdict_lock(path):
                _update(path, changed)
                return Incident(printer, incident_id, _read_alert(path), path)
        except (OSError, IncidentError) as exc:
            logger.error(
                "%s: cannot correct alert %s on disk (%s): it is sent corrected all the same",
                printer,
                incident_id,
                getattr(exc, "strerror", None) or exc,
            )
            return Incident(printer, incident_id, alert, None)

    def add_lead_up(self, printer: str, incident_id: str, lead_up: Sequence[Any]) -> None:
        """Save the frames before the trigger (``history.LeadUpFrame``s) in ``lead_up/``.

        Written after the alert went out, so a slow disk never delays it; a failure only
        costs the picture strip, never the incident. The owner may confirm the failure while
        these are written: ``mark_failure`` records the verdict before it copies, and the
        frames are copied here when the verdict is already there, so either way they reach
        the failures folder."""
        folder = self.root / printer / incident_id / LEAD_UP
        partial = folder.with_name(f".{LEAD_UP}.partial")  # a power cut leaves no cut pictures
        try:
            if not folder.parent.is_dir():
                return
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            for n, item in enumerate(lead_up):
                write_durably(partial / f"{n:02d}-heatmap.jpg", item.heatmap_jpeg)
                if item.frame_jpeg is not None:
                    write_durably(partial / f"{n:02d}-frame.jpg", item.frame_jpeg)
            os.replace(partial, folder)
            with _verdict_lock(folder.parent):  # its copies follow the last verdict
                if _read_alert(folder.parent).get("verdict") == "failure":
                    _copy_failure_frames(folder.parent, self.storage_dir, printer, incident_id)
        except (OSError, IncidentError) as exc:
            self._throttle(
                logger,
                logging.WARNING,
                "lead_up",
                "cannot save the frames before incident %s: %s",
                incident_id,
                getattr(exc, "strerror", None) or exc,
            )

    def delivered(self, incident: Incident) -> None:
        """The broker acknowledged the alert: drop the pending marker."""
        if incident.path is None:
            return
        try:
            (incident.path / PENDING).unlink(missing_ok=True)
        except OSError as exc:
            self._throttle(
                logger,
                logging.ERROR,
                "delivered",
                "cannot clear the pending marker of incident %s (%s): it may be sent again after a restart",
                incident.id,
                exc.strerror or exc,
            )

    def phones_told(self, incident: Incident) -> bool:
        """The phones were told of this settled draft by an earlier start."""
        return incident.path is not None and (incident.path / PHONES_TOLD).exists()

    def mark_phones_told(self, incident: Incident) -> None:
        """Its phone notification is queued (in the outbox, on disk): not again at the next
        start (a broker away for days, a start failing at its TLS files and restarted by
        systemd, each queued one more copy)."""
        if incident.path is None:
            return
        try:
            write_durably(incident.path / PHONES_TOLD, b"")
        except OSError as exc:
            self._throttle(
                logger,
                logging.ERROR,
                "phones_told",
                "cannot mark incident %s as told to the phones (%s): it may be told again "
                "after a restart",
                incident.id,
                exc.strerror or exc,
            )

    def settle_drafts(self) -> None:
        """Drafts left by a watchdog that stopped during their action (at start, before any
        watcher acts; every printer's, one the config lacks now included): incidents from now
        on, listed and delivered with the action's end unknown."""
        try:
            folders = [p for p in self.root.iterdir() if p.is_dir() and SAFE_NAME.fullmatch(p.name)]
        except OSError:
            return
        for folder in folders:
            printer = folder.name
            for path in id_folders(folder):
                if (path / DRAFT).exists():
                    try:
                        (path / DRAFT).unlink()
                    except OSError as exc:
                        logger.error("cannot settle incident %s: %s", path, exc.strerror or exc)
                        continue
                    logger.warning(
                        "%s: incident %s was saved before its action finished and the watchdog "
                        "stopped meanwhile: listed and sent as is; check the printer",
                        printer,
                        path.name,
                    )

    def pending(self, printers: list[str] | None = None) -> list[Incident]:
        """Saved incidents the broker never acknowledged, oldest first (a draft being acted on
        is not one yet)."""
        found: list[Incident] = []
        try:
            folders = sorted(
                p for p in self.root.iterdir() if p.is_dir() and SAFE_NAME.fullmatch(p.name)
            )
        except OSError:
            return found
        for folder in folders:
            if printers is not None and folder.name not in printers:
                continue
            for path in id_folders(folder):
                if not (path / PENDING).exists() or (path / DRAFT).exists():
                    continue
                try:
                    alert = _read_alert(path)
                except IncidentError as exc:
                    self._throttle(
                        logger,
                        logging.ERROR,
                        f"corrupt:{path}",
                        "pending incident skipped: %s",
                        exc,
                    )
                    continue
                alert["incident"] = path.name
                found.append(Incident(folder.name, path.name, alert, path))
        found.sort(key=lambda i: i.id)
        return found

    def prune(self, printer: str, saved: str | None = None) -> int:
        """Delete the oldest delivered incidents beyond ``keep``; pending ones always stay, so
        does the one just ``saved``. A draft is not counted (its final alert replaces it): with
        ``keep: 1`` the draft made the final alert one too many, and it was deleted at once."""
        folder = self.root / printer
        removed = 0
        with self._lock:
            remove_stale_partials(folder)
            dirs = [d for d in id_folders(folder) if not (d / DRAFT).exists()]
            excess = len(dirs) - self.keep
            for path in dirs:  # oldest first
                if excess <= 0:
                    break
                if (path / PENDING).exists() or path.name == saved:
                    continue
                try:
                    shutil.rmtree(path)
                except OSError as exc:
                    self._throttle(
                        logger,
                        logging.WARNING,
                        "prune",
                        "cannot delete old incident %s: %s",
                        path,
                        exc.strerror or exc,
                    )
                    break
                excess -= 1
                removed += 1
        if removed:
            logger.debug("%s: pruned %d old incident(s)", printer, removed)
        return removed


# Verdicts arrive on the callers' threads (the page's workers, MQTT, a phone's button): two at
# once on one incident must not interleave their read-write of alert.json and their copies.
_verdicts = threading.RLock()
VERDICT_LOCK = ".verdict.lock"


@contextlib.contextmanager
def _verdict_lock(incident: Path) -> Iterator[None]:
    """One verdict at a time on an incident: across this process's threads (the page, the
    phone, Home Assistant) and across processes (``feedback`` beside the daemon), so that its
    alert.json and its copies follow the last verdict. Not re-entrant across processes: taken
    once, by the outermost caller."""
    with _verdicts:
        fd = os.open(incident / VERDICT_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # lets the lock go


def record_verdict(storage_dir: Path, printer: str, incident_id: str, verdict: str) -> Path:
    """Store the user's verdict in the incident's alert.json; returns that file."""
    if verdict not in VERDICTS:
        raise IncidentError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    path = incident_dir(storage_dir, printer, incident_id)
    with _verdict_lock(path):
        return _record(path, verdict)


def _record(path: Path, value: str, key: str = "verdict", source: str = "") -> Path:
    """``record_verdict`` (or ``record_answer``: ``key`` "answer") under its lock. ``source``:
    who gave it (``Command.source``), kept beside it: a running watchdog carries out the
    command line's verdicts from this file (the page's and the phone's reach it as commands)."""
    changes = {key: value, f"{key}_time": datetime.now(UTC).isoformat(timespec="seconds")}
    if key == "verdict":  # always its own source, never the verdict before's
        changes["verdict_source"] = source
    return _update(path, changes)


def _update(path: Path, changes: dict[str, Any]) -> Path:
    """Some keys of a saved alert.json changed, the others as they are (under its lock)."""
    alert = _read_alert(path) | changes
    tmp = path / f".{ALERT}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        write_durably(tmp, json.dumps(alert, default=_jsonable, indent=2).encode())
        os.replace(tmp, path / ALERT)
    except OSError:  # a full disk: the alert as it was, no half file beside it
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # the verdict survives a power cut, as its copies do
        fsync_dir(path)
    return path / ALERT


def record_answer(storage_dir: Path, printer: str, incident_id: str, answer: str) -> None:
    """What the print became after its alert ("resumed", "cancelled", "paused", "ended"), in its
    alert.json: resumed or cancelled, the alert is answered, and its other Resume and Cancel
    buttons refuse (``already_answered``); paused again through it, they act again."""
    path = incident_dir(storage_dir, printer, incident_id)
    with _verdict_lock(path):
        # the same answer seen twice (the phone's Resume, then the poll that sees the print
        # running) is left as it is: its time stays the first answer's
        if _read_alert(path).get("answer") != answer:
            _record(path, answer, "answer")


def saved_alert(storage_dir: Path, printer: str, incident_id: str) -> dict[str, Any]:
    """An incident's alert.json as saved ({}: none that can be read)."""
    try:
        return _read_alert(incident_dir(storage_dir, printer, incident_id))
    except IncidentError:
        return {}


def already_answered(storage_dir: Path, printer: str, incident_id: str) -> str:
    """Why the alert's Resume and Cancel buttons no longer act ("": they may): the answer
    ``record_answer`` stored."""
    try:
        return answered(_read_alert(incident_dir(storage_dir, printer, incident_id)))
    except IncidentError:
        return ""


# the answer of an alert whose print ended without one (finished, cancelled at the printer,
# stopped by an error, another print started)
PRINT_OVER = "ended"


def alert_epoch(iso: object) -> float | None:
    """An alert's saved time (ISO 8601) as seconds since the epoch; None for what is not one
    (missing, or what a damaged file holds there)."""
    if not isinstance(iso, str) or not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def alert_moment(alert: dict[str, Any]) -> float | None:
    """A saved alert's time on the wall clock of now (``alert_epoch`` put right across a
    clock step since, see watchdog.moments); None where it has none."""
    wall = alert_epoch(alert.get("time"))
    return None if wall is None else moments.rebase(wall, BootMark.from_json(alert.get(BOOT)))


def shown(alert: dict[str, Any]) -> dict[str, Any]:
    """A saved alert as the owner's tools get it (Home Assistant, the page): without what
    only the file needs (its time's boot mark)."""
    return {k: v for k, v in alert.items() if k != BOOT}


def _mark_time(alert: dict[str, Any]) -> dict[str, Any]:
    """``alert`` (changed in place) with the boot mark of its time, for ``alert_moment``."""
    wall = alert_epoch(alert.get("time"))
    mark = None if wall is None else moments.mark(wall)
    if mark is None:
        alert.pop(BOOT, None)
    else:
        alert[BOOT] = mark.to_json()
    return alert


def answered(alert: dict[str, Any]) -> str:
    """``already_answered`` for an alert.json already read."""
    answer = closing_answer(alert)
    if answer == PRINT_OVER:
        return "this alert's print has ended"
    return f"this alert was answered already: the print was {answer}" if answer else ""


def closing_answer(alert: dict[str, Any]) -> str:
    """What became of the print that closes its alert ("resumed", "cancelled", "ended";
    "": open)."""
    answer = alert.get("answer")
    # "paused" again through it: it acts again
    return answer if answer in ("resumed", "cancelled", PRINT_OVER) else ""


def print_gone(storage_dir: Path, printer: str, incident_id: str) -> str:
    """Why the alert's print can no longer be paused or left unwatched ("": it may): it was
    cancelled or has ended. A resumed print runs on, so its Pause still acts."""
    alert = saved_alert(storage_dir, printer, incident_id)
    return answered(alert) if closing_answer(alert) in ("cancelled", PRINT_OVER) else ""


def collected_dir(storage_dir: Path) -> Path:
    """Where the owner's verdicts keep frames for the trainer, a folder per printer (and
    where ``collect`` is told to record): the README's ``--normal <storage>/collected``."""
    return Path(storage_dir) / "collected"


def false_alarms_dir(storage_dir: Path, printer: str) -> Path:
    """Where frames of false alarms go: part of the collected normal set for retraining."""
    return collected_dir(storage_dir) / check_name(printer, "printer") / frames.FALSE_ALARMS


class FramesNotKept(Exception):
    """The verdict is recorded, but its frames could not be copied for retraining (a full
    disk): the answer stands, the retraining set lacks them. ``told``: the same without the
    folder, for the owner's phone or page."""

    def __init__(self, folder: Path, why: str, told: str) -> None:
        self.told = f"its frame could not be kept for retraining: {told}"
        super().__init__(f"its frame could not be kept for retraining in {folder}: {why}")


class CopyNotTakenBack(Exception):
    """A changed verdict whose earlier verdict's copy could not be removed from the other
    training folder (a folder made read-only): the verdict is left as it was, or the trainer
    would fit a confirmed failure as a normal frame. ``told``: without the path, for the
    owner's phone or page."""

    def __init__(self, copy: Path, why: str) -> None:
        self.told = f"the frame kept by the verdict before could not be removed ({why})"
        super().__init__(f"cannot remove {copy}, kept by the verdict before: {why}")


def mark_not_failure(storage_dir: Path, printer: str, incident_id: str, source: str = "") -> Path:
    """Record the verdict and copy the incident's frame into the normal set; returns the copy
    (FramesNotKept: recorded, not copied)."""
    with _verdict_lock(incident_dir(storage_dir, printer, incident_id)):
        path = _judged(storage_dir, printer, incident_id, "not_failure", source)
        folder = false_alarms_dir(storage_dir, printer)
        try:
            return _copy_into(path / FRAME, folder, f"{incident_id}.jpg")
        except OSError as exc:
            raise _not_kept(folder, exc) from None


def _not_kept(folder: Path, exc: OSError) -> FramesNotKept:
    # strerror names no file; the whole error may (told on the phone: no path there)
    return FramesNotKept(folder, str(exc.strerror or exc), exc.strerror or "a disk error")


def failures_dir(storage_dir: Path, printer: str) -> Path:
    """Where frames of confirmed failures go: the trainer's ``--anomalous`` folder."""
    return collected_dir(storage_dir) / check_name(printer, "printer") / FAILURES


def mark_failure(storage_dir: Path, printer: str, incident_id: str, source: str = "") -> list[Path]:
    """Record the verdict and copy the incident's frame and its anomalous lead-up frames into
    the failures folder; returns the copies. Lead-up frames still being written when the
    verdict lands are copied by ``IncidentStore.add_lead_up`` once it sees the verdict."""
    with _verdict_lock(incident_dir(storage_dir, printer, incident_id)):
        path = _judged(storage_dir, printer, incident_id, "failure", source)
        try:
            return _copy_failure_frames(path, storage_dir, printer, incident_id)
        except OSError as exc:
            raise _not_kept(failures_dir(storage_dir, printer), exc) from None


def _judged(storage_dir: Path, printer: str, incident_id: str, verdict: str, source: str) -> Path:
    """Record ``verdict`` on an incident that has its frame, before any frame is copied (an
    alert.json that cannot be read refuses it with nothing kept), and take back the copies a
    verdict given before (a misclick) left in the other folder, before the new verdict is
    recorded: a frame is never both a failure and a normal frame to the trainer, and a copy
    that cannot be removed leaves the verdict as it was (``CopyNotTakenBack``). Returns the
    incident's folder."""
    path = incident_dir(storage_dir, printer, incident_id)
    if not (path / FRAME).is_file():
        raise IncidentError(
            f"incident {incident_id} of {printer} has no {FRAME} in {path}",
            f"alert {incident_id} of {printer} has no frame left to keep",
        )
    _read_alert(path)  # an alert.json that cannot be read: refused before anything changes
    other = failures_dir if verdict == "not_failure" else false_alarms_dir
    folder = other(storage_dir, printer)
    # the frame itself last: one that cannot be removed leaves the verdict before its frame
    for copy in (*folder.glob(f"{incident_id}-*.jpg"), *folder.glob(f"{incident_id}.jpg")):
        try:
            copy.unlink(missing_ok=True)
        except OSError as exc:
            raise CopyNotTakenBack(copy, exc.strerror or str(exc)) from None
    _record(path, verdict, source=source)
    return path


def _copy_failure_frames(
    path: Path, storage_dir: Path, printer: str, incident_id: str
) -> list[Path]:
    """Copy an incident's frame and lead-up frames into the failures folder (again: the same
    names, so a second copy replaces the first)."""
    sources = sorted((path / LEAD_UP).glob("*-frame.jpg")) + [path / FRAME]
    dest_dir = failures_dir(storage_dir, printer)
    return [
        _copy_into(
            src,
            dest_dir,
            f"{incident_id}.jpg"
            if src.name == FRAME
            else f"{incident_id}-{src.name.split('-')[0]}.jpg",
        )
        for src in sources
        if src.is_file()
    ]


# a picture the watchdog saved is a camera frame's JPEG (camera.max_bytes is at most 64 MB)
MAX_PICTURE_BYTES = 64 * 2**20


def read_picture(src: Path) -> bytes:
    """The bytes of a picture the watchdog saved in an incident: a plain, non-empty file of
    the incident's own, never a link (something else able to write in the storage folder
    would have a file of its choosing copied into the training set, readable by all)."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.EINVAL, f"{src.name} is a link, not a picture it saved") from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or not 0 < st.st_size <= MAX_PICTURE_BYTES:
            raise OSError(errno.EINVAL, f"{src.name} is not a picture it saved")
        return f.read(MAX_PICTURE_BYTES)


def _write_copy(path: Path, data: bytes) -> None:
    """A frame's copy for retraining, on the card (not back as an empty file after a power
    cut); where a full disk refuses it (the tests make it fail here)."""
    write_durably(path, data)


def _copy_into(src: Path, dest_dir: Path, name: str) -> Path:
    """``src`` as ``dest_dir/name``, whole or not at all (copied beside it, then renamed; the
    temporary name is the thread's own, as the lead-up and a verdict may copy at once)."""
    data = read_picture(src)
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        _write_copy(tmp, data)
        os.replace(tmp, dest_dir / name)
    except OSError:  # a full disk: no half copy left behind
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):
        fsync_dir(dest_dir)
    return dest_dir / name


@dataclass(frozen=True)
class IncidentView:
    """An incident as the dashboard lists it."""

    printer: str
    id: str
    alert: dict[str, Any]
    delivered: bool
    lead_up: tuple[str, ...]  # file names under lead_up/, oldest first


def printers_on_disk(storage_dir: Path) -> list[str]:
    """The printers with an incidents folder, whatever the config names now: a printer
    renamed or removed keeps its alerts (and the page shows them)."""
    try:
        found = incidents_root(storage_dir).iterdir()
        return sorted(p.name for p in found if p.is_dir() and SAFE_NAME.fullmatch(p.name))
    except OSError:
        return []


def list_incidents(
    storage_dir: Path, printers: Sequence[str], limit: int = 50
) -> list[IncidentView]:
    """Saved incidents of these printers, newest first (a corrupt one and drafts skipped)."""
    root = incidents_root(storage_dir)
    found: list[IncidentView] = []
    for printer in printers:
        if not SAFE_NAME.fullmatch(printer):
            continue
        # a draft's action is under way: the final alert replaces it
        saved = [d for d in id_folders(root / printer) if not (d / DRAFT).exists()]
        for path in saved[-limit:]:
            try:
                alert = _read_alert(path)
            except IncidentError:
                continue
            try:
                lead = tuple(
                    sorted(p.name for p in (path / LEAD_UP).iterdir() if p.name.endswith(".jpg"))
                )
            except OSError:
                lead = ()
            found.append(
                IncidentView(printer, path.name, alert, not (path / PENDING).exists(), lead)
            )
    found.sort(key=lambda i: i.id, reverse=True)
    return found[:limit]
