"""The long-running daemon: wires config → watchers, signals, reload, systemd and HTTP.

Threads and what each owns: docs/architecture.md. All are stopped and joined on
SIGTERM/SIGINT. SIGHUP (and a settings save on the page) reloads config and model; a broken
new config is logged and the running one kept.
"""

from __future__ import annotations

import gc
import logging
import math
import signal
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from watchdog import overrides, systemd
from watchdog.comms.notifier import Notifier
from watchdog.comms.transport import check_tls
from watchdog.config import (
    Config,
    ConfigError,
    DetectionConfig,
    NotifyTarget,
    PrinterConfig,
    load_config,
)
from watchdog.control import (
    INCIDENT_VERBS,
    LATEST_INCIDENT,
    Applied,
    Command,
    CommandResult,
    Verb,
    settled,
)
from watchdog.detection.bundle import Bundle, BundleError, BundleMeta, default_bundle_path
from watchdog.detection.detector import start_cautions
from watchdog.detection.model import FrameScorer, ModelFailure
from watchdog.devices.capture import CameraSourceError
from watchdog.devices.printers import longest_action_s
from watchdog.errors import UsageError
from watchdog.frame_gate import FrameGate
from watchdog.history import History
from watchdog.incidents import (
    CopyNotTakenBack,
    FramesNotKept,
    IncidentError,
    incidents_root,
    list_incidents,
    mark_failure,
    mark_not_failure,
    raised_at,
)
from watchdog.last_commands import LastCommands
from watchdog.metrics import Metrics
from watchdog.overrides import mask_check
from watchdog.redact import secret_filter
from watchdog.signals import Signals, held_reloads
from watchdog.storage_lock import StorageLock, lock_storage
from watchdog.watcher import Watcher, build_watcher

logger = logging.getLogger(__name__)


# Owner's commands waiting on watchers at once (a watcher answers between frames, up to a
# minute when its camera or printer is slow). More are answered "busy" at once: waiting, they
# would hold every thread of the web server, and /healthz and the page with them. One
# printer holds fewer than all: a printer whose API hangs, pressed twice, left every other
# printer's page buttons and phone buttons "busy" for as long as it hung.
COMMANDS_WAITING = 3  # with the page's two waits (a frame, a save), fewer than WORKER_THREADS
COMMANDS_WAITING_PER_PRINTER = 2
# A stop's budget (the unit's TimeoutStopSec= is 20 s, and the exit itself takes some): the
# watchers are waited for this long, MQTT and the notification senders this long at the end
STOP_WITHIN_S = 17.0
WATCHERS_STOP_S = 10.0
NOTIFIER_STOP_S = 3.0
FAILED_STEPS_UNHEALTHY = (
    5  # a printer whose step failed this many times in a row makes /healthz fail
)


def _learnt_later(stored: CommandResult) -> CommandResult:
    """A saved "not a failure" its watcher has not taken yet: queued, it is learnt when the
    watcher comes back to its queue."""
    return replace(stored, detail=f"{stored.detail}; the print is learnt again shortly")


def _with_verdict(stored: CommandResult, learnt: CommandResult) -> CommandResult:
    """A "not a failure" its watcher took: the saved verdict (its frame kept, or not) and what
    the watcher learnt."""
    return replace(stored, ok=stored.ok and learnt.ok, detail=f"{stored.detail}; {learnt.detail}")


def load_bundle(
    config: Config, source: str | Path = "config", printers: list[PrinterConfig] | None = None
) -> Bundle:
    """The config's bundle, loaded and its model run once (start and reload refuse it
    otherwise); its cautions said, and those of ``printers`` (default: the config's) on it."""
    bundle = configured_bundle(config, source)
    try_model_once(bundle, model_key(config, source))
    for caution in bundle.meta.cautions():
        logger.warning("model %s: %s", bundle.path, caution)
    chosen = config.printers if printers is None else printers
    for caution in printer_start_cautions(bundle.meta, chosen):
        logger.warning("%s", caution)
    return bundle


def printer_start_cautions(meta: BundleMeta, printers: list[PrinterConfig]) -> list[str]:
    """``start_cautions`` of these configured printers, one after the other."""
    return [
        caution
        for p in printers
        for caution in start_cautions(meta, p.name, p.detection.region, p.detection.judge_start)
    ]


def configured_bundle(config: Config, source: str | Path = "config") -> Bundle:
    """The bundle ``model:`` names (the shipped one without it); a bundle that cannot be
    loaded is said as the config file's ``model:``, where the owner fixes it."""
    if config.model is None:
        return Bundle.load(default_bundle_path())
    try:
        return Bundle.load(config.model)
    except BundleError as exc:
        raise BundleError(f"{model_key(config, source)}{exc}") from None


def model_key(config: Config, source: str | Path) -> str:
    """Where a bundle's error is said: the config file's ``model:`` key ("": the shipped
    bundle, which no key names)."""
    return f"{source}: model: " if config.model is not None else ""


def try_model_once(bundle: Bundle, where: str = "") -> None:
    """Run the model on a blank frame and on a busy one (noise: a model that fails only on
    frames with something in them passed a blank one), so a model that loads but cannot
    score is refused at start, at reload and by check-config, rather than failing every frame
    afterwards. ``where``: the config's ``model:`` key, said first as for a bundle that does
    not load."""
    try:
        _score_twice(bundle)
    except BundleError as exc:
        raise BundleError(f"{where}{exc}") from None


def _score_twice(bundle: Bundle) -> None:
    pre = bundle.meta.preprocess
    shape = (pre.height, pre.width, 3)
    busy = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    scorer = None
    for what, frame in (("a blank frame", np.zeros(shape, np.uint8)), ("a busy frame", busy)):
        try:
            scorer = scorer or FrameScorer(bundle)
            score = scorer.score(frame)
        except ModelFailure as exc:
            raise BundleError(f"{exc}: tried on {what}") from None
        except BundleError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure here means the model cannot be used
            raise BundleError(
                f"{bundle.path}: the model fails on {what} ({type(exc).__name__}: {exc})"
            ) from exc
        if not math.isfinite(score):
            raise BundleError(
                f"{bundle.path}: the model scores {what} {score} (not a finite number)"
            )


def _verdict_not_stored(exc: Exception, verb: Verb) -> str:
    """Why a verdict was not stored, for the phone or the page (the log says where)."""
    if isinstance(exc, CopyNotTakenBack):
        # nor is the view learnt, which the owner of a "Not a failure" counts on
        unlearnt = (
            "; what the camera shows is not learnt either: the same view may alert again"
            if verb is Verb.NOT_A_FAILURE
            else ""
        )
        return f"the verdict is as it was: {exc.told}{unlearnt}"
    if isinstance(exc, IncidentError):
        return exc.told
    if isinstance(exc, OSError):
        return f"the answer could not be stored ({exc.strerror or 'a disk error'})"
    return str(exc)


def _say_unanswered(watcher: Watcher) -> None:
    """A printer taken out of the config (or renamed: to the watchdog another printer) whose
    failure alert stands unanswered: its sensor and buttons go with it, so the log says it."""
    alert = watcher.last_alert
    if watcher.state.failure and alert is not None:
        logger.warning(
            "%s is no longer in the config, and its alert %s stands unanswered (%s): look at "
            "the print at the printer itself; a printer renamed is a new printer to the watchdog",
            watcher.name,
            alert.incident,
            f"{alert.action.value} {alert.action_result.outcome.value}",
        )


def _without_api(config: Config) -> list[str]:
    """Printers with no printer API: Home Assistant offers them no printer buttons."""
    return [p.name for p in config.printers if p.api.kind == "none"]


class _WaitingSlots:
    """Slots in which the web server's threads wait for watchers to answer: ``total`` at
    most, ``each`` at most for one printer (a printer whose API hung, pressed twice, left
    every other printer's buttons "busy" for as long as it hung)."""

    def __init__(self, total: int, each: int, busy: str = "") -> None:
        self.total, self.each, self.busy = total, each, busy
        self._held: dict[str, int] = {}  # slots taken, by printer
        self._lock = threading.Lock()

    def take(self, printer: str) -> str | None:
        """A slot for a command of ``printer``; else why none, in the owner's words."""
        with self._lock:
            held = self._held.get(printer, 0)
            if held >= self.each:
                return self.busy or (
                    f"busy: {held} earlier commands to {printer} are still waiting for its "
                    "printer or camera to answer; try again in a moment"
                )
            if sum(self._held.values()) >= self.total:
                return self.busy or (
                    f"busy: {self.total} earlier commands are still waiting for a printer or "
                    "camera to answer; try again in a moment"
                )
            self._held[printer] = held + 1
            return None

    def give(self, printer: str) -> None:
        """The slot ``take`` gave for ``printer``, free again."""
        with self._lock:
            left = self._held.pop(printer) - 1
            if left:
                self._held[printer] = left


@dataclass(frozen=True)
class _Running:
    watcher: Watcher
    thread: threading.Thread
    stop: threading.Event
    after: _Running | None = None  # a predecessor still in its step, followed (``_follow``)

    def late(self) -> _Running | None:
        """The watcher of this printer still stepping after its stop: this one, or the
        predecessor it was still waiting for (None: none is)."""
        # the predecessor first: this thread may be a successor still waiting for it, which
        # a stop ends without running (the next watcher must then wait for the predecessor)
        if self.after is not None and self.after.thread.is_alive():
            return self.after
        if self.thread.is_alive():
            return self
        return None

    @property
    def shown(self) -> Watcher:
        """The watcher whose state is the printer's: a predecessor still in its step until
        its successor takes over (the successor, waiting, knows nothing of the print yet: the
        page showed a printing printer idle, mid-pause, for as long as the step hung)."""
        if self.after is not None and self.after.thread.is_alive():
            return self.after.shown
        return self.watcher


def _unheard_until_restart(config: Config, running: list[NotifyTarget]) -> list[str]:
    """The printers of ``config`` its notify targets tell of and the ``running`` ones (kept
    until the restart) do not: a printer renamed by a reload, a target's list changed."""
    return [
        p.name
        for p in config.printers
        if any(t.tells_of(p.name) for t in config.notify)
        and not any(t.tells_of(p.name) for t in running)
    ]


def _follow(old: _Running, successor: Watcher, stop: threading.Event) -> None:
    """A successor's thread whose predecessor did not stop in time (a camera or printer that
    hangs past the stop deadline): two watchers of one printer never step side by side (two
    pauses, two alerts), so it waits for the old thread, takes over what it left, then runs.
    Stopped while still waiting (another reload, the daemon stopping), it takes over nothing
    and lets go of its camera and clients: the next watcher follows the old one in its place."""
    logger.warning("%s: waiting for the previous watcher to finish its step", successor.name)
    while old.thread.is_alive() and not stop.is_set():
        old.thread.join(0.5)
    if old.thread.is_alive():
        successor.close()  # it never watches; only its own thread knows when it is done
        return
    old.watcher.retire(successor)
    if not stop.is_set():
        logger.info("%s: the previous watcher has stopped; watching", successor.name)
    successor.run(stop)


class Daemon:
    """Owns the running watchers and everything shared between them.

    ``self.running`` is never changed in place: a reload builds the new watchers first and
    then swaps the whole mapping, so the HTTP and MQTT threads, which read it without a lock,
    always see one complete generation of watchers.
    """

    # A reload waits this long for the old watchers to finish their step (a frame, a poll:
    # milliseconds); one still in a step then (a printer's API or a camera hanging) is
    # followed by its successor once it ends (``_follow``), and the others watch again at
    # once. Fifteen seconds for all of them left every printer unwatched behind one hung API.
    RELOAD_STOP_S = 2.0

    def __init__(self, config_path: str | Path, debug: bool = False) -> None:
        self.config_path = Path(config_path)
        # ConfigError → exit 2 before anything starts; saved page settings it cannot apply
        # are left out, said below, and kept in their file
        # (the model itself is run once below, by ``load_bundle``)
        # the saves and resets of the page's settings before the file was read (``save``)
        self._settings_read = overrides.saves_so_far()
        self.config, refused = overrides.load_starting_config(
            self.config_path, overrides.config_mask_check
        )
        self.debug = debug  # --debug wins over the config's log_level
        self._apply_log_level(self.config)
        for why in refused:
            logger.error("%s", why)
        check_tls(self.config.mqtt, self.config_path)
        self.bundle = load_bundle(self.config, self.config_path)
        self.metrics = Metrics()
        self.notifier: Notifier | None = None
        self.http: Any = None
        self.running: Mapping[str, _Running] = {}
        self.histories: dict[str, History] = {}  # per printer, kept across reloads
        # per printer, for the page; kept across reloads (MQTT's settings wait for a restart)
        self.last_commands = LastCommands(
            "Home Assistant" if self.config.mqtt.homeassistant.enabled else "MQTT"
        )
        self._waiting = _WaitingSlots(COMMANDS_WAITING, COMMANDS_WAITING_PER_PRINTER)
        # the page's own waits (a frame of an idle printer, a settings save applied) have their
        # own slots: they never take one a pause or a phone's answer needs, and a save is told
        # whether it applied while a frame is awaited from a slow camera
        self._waiting_page = _WaitingSlots(
            1, 1, busy="busy: the page's last request is still waiting; try again in a moment"
        )
        self._waiting_save = threading.BoundedSemaphore(1)
        self.frame_gate = FrameGate()  # one frame in process at a time, for all printers
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        # Reloads started and the last one's outcome (its number, why it was refused or None),
        # so that a save on the page can say whether it was applied.
        self._reloads = threading.Condition()
        # printers taken out of the config while their watcher was still in its step: said
        # and retired once it ends, or followed by a watcher of the same name put back meanwhile
        self._removed: dict[str, _Running] = {}
        self._removed_lock = threading.Lock()
        self._reloads_started = 0
        self._reload_outcome: tuple[int, str | None] = (0, None)
        self.started = time.monotonic()
        self.started_http = self.config.http  # the status server's address is fixed until a restart
        # settings of the config file that wait for a restart (MQTT, storage, notify, http),
        # as the last reload found them: on /status and the page, not only in the journal
        self.waiting_for_restart: tuple[str, ...] = ()
        self.storage_lock: StorageLock | None = None

    def _apply_log_level(self, config: Config) -> None:
        if not self.debug:
            logging.getLogger().setLevel(config.log_level)

    # ----------------------------------------------------------------- building

    def _make_watchers(self, config: Config, bundle: Bundle) -> dict[str, Watcher]:
        """Everything that can fail on bad input happens here, before the old watchers stop."""
        assert self.notifier is not None
        watchers: dict[str, Watcher] = {}
        try:
            for i, p in enumerate(config.printers):
                try:
                    watchers[p.name] = build_watcher(
                        p,
                        bundle,
                        self.notifier,
                        stop=self.stop_event,
                        metrics=self.metrics,
                        gate=self.frame_gate,
                    )
                except CameraSourceError as exc:  # named after the key to fix
                    raise exc.at(f"{self.config_path}: printers.{i}.camera.source") from None
        except BaseException:
            for w in watchers.values():  # cameras already opened have threads and sockets
                w.close()
            raise
        for name, w in watchers.items():  # the dashboard's timeline outlives a reload
            w.history = self.histories.setdefault(name, History())
        return watchers

    @staticmethod
    def _prepare(
        watchers: Mapping[str, Watcher], late: Mapping[str, _Running] | None = None
    ) -> dict[str, _Running]:
        """Each watcher with its thread, not started yet. A printer in ``late`` (its old
        watcher's thread did not stop in time) starts watching only once that thread ends."""
        running = {}
        for name, w in watchers.items():
            stop = threading.Event()
            before = (late or {}).get(name)
            target = w.run if before is None else partial(_follow, before, w)
            t = threading.Thread(target=target, args=(stop,), name=f"watch-{name}", daemon=True)
            running[name] = _Running(w, t, stop, before)
        return running

    @staticmethod
    def _launch(running: Mapping[str, _Running]) -> None:
        for r in running.values():
            try:
                r.thread.start()
            except RuntimeError as exc:  # no thread left (the unit's TasksMax)
                # the others still start; this one fails ``healthy``: systemd's watchdog
                # restarts the daemon
                logger.error("%s: not watched: its thread cannot start (%s)", r.watcher.name, exc)

    @classmethod
    def _start(cls, watchers: Mapping[str, Watcher]) -> dict[str, _Running]:
        running = cls._prepare(watchers)
        cls._launch(running)
        return running

    @staticmethod
    def _stop(running: Mapping[str, _Running], timeout: float = 15.0) -> None:
        """Stop every watcher within ``timeout`` in all (one deadline, not one each: several
        hung cameras must not outlast systemd's stop timeout)."""
        for r in running.values():
            r.stop.set()
        deadline = time.monotonic() + timeout
        for r in running.values():
            if r.thread.ident is None:  # never started: it lets go of its camera here
                r.watcher.close()
                continue
            r.thread.join(max(0.0, deadline - time.monotonic()))
            if r.thread.is_alive():  # a printer or camera answering slowly: it ends later
                logger.warning(
                    "watcher %s did not stop within %.0f s: it goes on until its printer or "
                    "camera answers",
                    r.watcher.name,
                    timeout,
                )

    # ----------------------------------------------------------------- commands

    def dispatch(self, command: Command) -> CommandResult:
        """Route an owner's command (MQTT, the web page, a phone button) and say what became of
        it, kept as the printer's last command for the page (its end too, when under way)."""
        result = self._dispatch(command)
        # MQTT's answers are kept where they are published, with those it gives itself
        if command.printer in self.running and command.source != "mqtt":
            self.last_commands.record(command, result)
        return result

    def _dispatch(self, command: Command) -> CommandResult:
        """Verdicts on an incident are stored here; everything a watcher does is queued to its
        own thread, and this waits (bounded by the printer API's timeout) for the answer."""
        running = self.running.get(command.printer)
        if running is None:
            logger.warning(
                "%s from %s for unknown printer %s ignored",
                command.verb.value,
                command.source,
                command.printer,
            )
            return CommandResult(False, f"no printer named {command.printer!r}")
        watcher = running.watcher
        stored: CommandResult | None = None
        if command.verb in INCIDENT_VERBS:
            # which alert is said where the sender may not show it: "the latest" (pressed
            # during a later print, it is the last's), and Home Assistant's Last command
            say_which = command.source == "mqtt" or command.incident in (None, LATEST_INCIDENT)
            command = self._resolve_incident(command, watcher)
            if command.incident is None:
                return CommandResult(False, "no alert to answer")
            latest = watcher.last_alert
            held = latest is not None and latest.incident == command.incident
            try:
                stored = self._store_verdict(command, say_which=say_which, held=held)
            except (OSError, ValueError, CopyNotTakenBack) as exc:  # IncidentError: ValueError
                # nothing stored: the watcher is not told either (it would answer the alert,
                # or learn the print's look, for a verdict that did not change)
                logger.warning(
                    "%s: verdict on incident %s failed: %s", command.printer, command.incident, exc
                )
                return CommandResult(
                    False, _verdict_not_stored(exc, command.verb), incident=command.incident
                )
            if command.verb is not Verb.NOT_A_FAILURE:
                watcher.submit(command)  # answered: the failure it stood on is shown off
                return stored
        wait_s = self.answer_within(watcher)
        # The slots keep the web server's threads from all waiting on printers; MQTT's
        # commands wait in threads of their own, one per printer (comms/command_queue.py)
        slots = (
            None
            if command.source == "mqtt"
            else self._waiting_page
            if command.verb is Verb.LOOK
            else self._waiting
        )
        busy = None if slots is None else slots.take(command.printer)
        if busy is not None:
            if stored is not None:  # the verdict is saved: the watcher must still learn it
                watcher.submit(command)
                return _learnt_later(stored)
            return CommandResult(False, busy)
        try:
            done = watcher.submit(command)
            try:
                learnt = done.result(timeout=wait_s)
                if stored is not None and not learnt.ok and self.stop_event.is_set():
                    # refused by the stop: the verdict is saved all the same ("send it again"
                    # would have the owner press for what is done)
                    return replace(
                        stored, detail=f"{stored.detail}; the print is learnt again at the start"
                    )
                # what became of the frame is the saved verdict's to say (a full disk)
                return learnt if stored is None else _with_verdict(stored, learnt)
            except FutureTimeout:
                if stored is not None:  # the verdict is saved: the watcher learns it when it can
                    return _learnt_later(stored)
                return self._late(watcher.name, command, done, wait_s)
        finally:
            if slots is not None:
                slots.give(command.printer)

    @staticmethod
    def answer_within(watcher: Watcher) -> float:
        """How long a command's sender waits for its watcher: a printer call with its retries
        and a camera interval (the watcher answers between frames)."""
        api = watcher.cfg.api
        return api.timeout_s * (1 + api.retries) + watcher.cfg.camera.interval_s + 5

    @staticmethod
    def _late(
        name: str, command: Command, done: Future[CommandResult], wait_s: float
    ) -> CommandResult:
        """A command its watcher did not answer in time: taken back while still queued (it must
        not run minutes later, nor twice once its sender tries again), else still under way."""
        if done.cancel():
            return CommandResult(
                False, f"{name} did not answer within {wait_s:.0f} s: nothing was done"
            )
        if done.done():
            return done.result()
        return CommandResult(
            False,
            f"{name} is still carrying out {command.verb.value} (more than {wait_s:.0f} s)",
            under_way=True,
            later=settled(done),
        )

    @staticmethod
    def _resolve_incident(command: Command, watcher: Watcher) -> Command:
        """ "latest": the watcher's latest alert, or after a restart the newest one saved."""
        if command.incident not in (None, LATEST_INCIDENT):
            return command
        last = watcher.snapshot.last_alert
        if last is not None:
            return replace(command, incident=last.incident)
        newest = list_incidents(watcher.alerts.store.storage_dir, [command.printer], limit=1)
        if not newest:
            logger.warning("%s: verdict on the latest alert ignored: no alert", command.printer)
            return replace(command, incident=None)
        return replace(command, incident=newest[0].id)

    def _store_verdict(
        self, command: Command, say_which: bool = False, held: bool = False
    ) -> CommandResult:
        """``say_which``: the answer names the alert by its time. ``held``: the alert is the
        watcher's latest, which it holds in memory: one that could not be saved (the storage
        folder unwritable when it came) is still answered, without frames to keep."""
        assert command.incident is not None
        storage, printer, incident = self.config.storage.dir, command.printer, command.incident
        said = (
            "marked not a failure"
            if command.verb is Verb.NOT_A_FAILURE
            else "confirmed as a failure"
        )
        which = f"the alert of {raised_at(incident)} " if say_which else ""
        # the answer goes to a phone or the page: where the frames went is the log's
        try:
            if command.verb is Verb.NOT_A_FAILURE:
                where = mark_not_failure(storage, printer, incident, source=command.source)
                told = "its frame is kept for retraining"
                kept = f"frame kept for retraining in {where}"
            else:
                copies = mark_failure(storage, printer, incident, source=command.source)
                told = (  # none: the incident was pruned as the verdict landed
                    f"{len(copies)} frame(s) kept for retraining"
                    if copies
                    else "its frames were removed meanwhile (the oldest alerts are pruned)"
                )
                kept = f"{told} in {copies[0].parent}" if copies else told
        except FramesNotKept as exc:  # the answer stands: the watcher still learns it
            logger.warning("%s: incident %s %s, but %s", printer, incident, said, exc)
            return CommandResult(True, f"{which}{said}, but {exc.told}", incident=incident)
        except IncidentError:
            if not held or (incidents_root(storage) / printer / incident).exists():
                raise  # not the watcher's, or saved but damaged: refused, as it was
            unsaved = "its frames could not be kept for retraining: the alert was never saved"
            logger.warning(
                "%s: incident %s %s (%s), but %s (the storage folder %s could not be written "
                "when it came)",
                printer,
                incident,
                said,
                command.source,
                unsaved,
                storage,
            )
            return CommandResult(True, f"{which}{said}, but {unsaved}", incident=incident)
        logger.info("%s: incident %s %s (%s); %s", printer, incident, said, command.source, kept)
        return CommandResult(True, f"{which}{said}; {told}", incident=incident)

    # ----------------------------------------------------------------- dashboard settings

    def save_settings(
        self, printer: str, changes: dict[str, Any], drawn_on: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], Applied]:
        """Store the dashboard's settings for ``printer`` and rebuild the watchers through the
        reload path: the saved settings, and what became of them; ConfigError (nothing
        saved) when the schema refuses them, ``overrides.ChangedElsewhere`` when what the page
        drew on (``drawn_on``) was changed since."""
        base = load_config(self.config_path)  # the file alone: what the saved settings change
        p = next((p for p in base.printers if p.name == printer), None)
        if p is None:
            raise ConfigError(f"no printer named {printer!r} in {self.config_path}")
        # the running model's, and the one the config names now (a bundle replaced without a
        # reload): the reload below leaves out a printer's saved settings that one refuses
        checks = [mask_check(self.bundle.meta, saving=True)]
        try:
            checks.append(overrides.config_mask_check(base, saving=True))
        except BundleError:
            pass  # the reload refuses that model, says why, and keeps the running one

        def check(merged: DetectionConfig) -> None:
            for each in checks:
                each(printer, merged)

        running = next((r for r in self.config.printers if r.name == printer), p)
        saved = overrides.save(
            self.config.storage.dir,
            p.detection,
            printer,
            changes,
            check,
            drawn_on,
            (running.detection, self._settings_read),  # what the page shows
        )
        applied = self._apply()
        if applied.done:
            # the model changed again between the check and the reload
            _, why = overrides.saved_and_refusal(
                self.config.storage.dir, printer, p.detection, mask_check(self.bundle.meta)
            )
            if why:
                applied = Applied(
                    False, f"{why}; printer {printer} watches with the config file's settings", True
                )
        return saved, applied

    def reset_settings(self, printer: str) -> tuple[str, Applied]:
        load_config(self.config_path)  # ConfigError: the config file alone would not load
        return overrides.reset(self.config.storage.dir, printer), self._apply()

    def _apply(self, timeout: float = 30.0) -> Applied:
        """Reload and wait for it, at most ``timeout`` and one waiter at a time (the status
        server's other requests, /healthz and a pause too, keep their threads)."""
        with self._reloads:
            asked = self._reloads_started
        self.reload_event.set()
        if not self._waiting_save.acquire(blocking=False):
            return Applied(None, "it applies in a few seconds")
        try:
            with self._reloads:
                self._reloads.wait_for(
                    lambda: self._reload_outcome[0] > asked or self.stop_event.is_set(), timeout
                )
                number, refusal = self._reload_outcome
        finally:
            self._waiting_save.release()
        if number <= asked:
            if self.stop_event.is_set():
                return Applied(None, "it applies when the watchdog starts again")
            return Applied(
                None, "still being applied (a camera or printer slow to stop?): see the log"
            )
        return Applied(True) if refusal is None else Applied(False, refusal)

    # ----------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.monotonic() - self.started, 1),
            "model": str(self.bundle.path),
            "threshold": self.bundle.meta.threshold,
            "mqtt_connected": bool(self.notifier and self.notifier.connected),
            "notify": self.notifier.notify_status() if self.notifier else {},
            "printers": {
                name: r.shown.status() | {"last_command": self.last_commands.of(name)}
                for name, r in self.running.items()
            },
            # the last reload's refusal (None: applied): the settings before it still run
            "reload_refused": self._reload_outcome[1],
            # config file settings a reload could not apply: they wait for a restart
            "waiting_for_restart": list(self.waiting_for_restart),
        }

    def summary(self) -> str:
        """One line for `systemctl status`: each printer's state and last score."""
        parts = []
        for name, r in self.running.items():
            st = r.shown.snapshot
            score = (
                ""
                if st.score is None or st.threshold is None
                else f" {st.score:.3g}/{st.threshold:.3g}"
            )
            parts.append(f"{name}: {st.state.value}{score}")
        return "; ".join(parts)

    def latest_jpeg(self, printer: str) -> bytes | None:
        r = self.running.get(printer)
        return r.shown.latest_jpeg if r else None

    def healthy(self) -> bool:
        """Every watcher thread alive and stepping (a hung loop stops the systemd watchdog pings)."""
        running = self.running
        if not running:
            return False
        now = time.monotonic()
        for r in running.values():
            stepping = r.shown  # a predecessor still in its step, past a reload
            snap = stepping.snapshot  # the watcher's thread owns the rest of its state
            if snap.failing_steps >= FAILED_STEPS_UNHEALTHY:
                return False  # alive, but every step raises: nothing is watched
            # the step is timed by the settings it runs under, not the reload's new ones
            cam, api = stepping.cfg.camera, stepping.cfg.api
            # a step: a frame, a status poll, and a pause or cancel retried against a hung API
            budget = cam.interval_s + cam.timeout_s + api.timeout_s * 2 + 30
            budget += longest_action_s(api)
            # a thread stopped on purpose (a reload replacing it) is not a dead one: /healthz
            # answered 503 through every reload
            if (not r.thread.is_alive() and not r.stop.is_set()) or now - snap.heartbeat > budget:
                return False
        return True

    # ----------------------------------------------------------------- reload

    def reload(self) -> None:
        """Apply the config file and the saved settings again; what is refused is said and the
        running config kept. Its outcome is told to whoever waits on it (``_apply``)."""
        with self._reloads:
            self._reloads_started += 1
            number = self._reloads_started
        refusal: str | None = "the reload stopped unexpectedly"
        try:
            refusal = self._reload()
        except Exception as exc:  # noqa: BLE001 - past the point where the reload could refuse
            # (the old watchers stopped): logged whole; a watcher left without its thread fails
            # ``healthy``, so systemd's watchdog restarts the daemon, which starts them all
            logger.exception("the reload stopped unexpectedly")
            refusal = secret_filter.mask(
                f"the reload stopped unexpectedly: {type(exc).__name__}: {exc}"
            )
        finally:
            with self._reloads:
                self._reload_outcome = (number, refusal)
                self._reloads.notify_all()
        # The old watchers (or those a refused reload built) are garbage now, but a failed
        # request's traceback ties their frames into reference cycles that only a full
        # collection frees, and Python runs one rarely on a long-running daemon: their
        # detectors and buffers would wait until then (their connections are closed when
        # they stop: ``HttpClient.close``).
        gc.collect()

    def _restart_only_kept(self, config: Config) -> Config:
        """``config`` with what only a restart changes (MQTT, storage, notifications) kept as
        it runs, each change said (and kept in ``waiting_for_restart``); the page's own
        settings wait for the restart too."""
        changed = [
            key
            for key in ("mqtt", "storage", "notify")
            if getattr(config, key) != getattr(self.config, key)
        ]
        if changed:
            logger.warning(
                "%s changed in the config file: applied at the next restart (systemctl restart "
                "printer-watchdog); until then the running MQTT session, storage folder and "
                "notifications are kept",
                ", ".join(changed),
            )
            if unheard := _unheard_until_restart(config, self.config.notify):
                logger.warning(
                    "until the restart, no notification reaches the phones for %s (the "
                    "notify targets running until then do not include it)",
                    ", ".join(unheard),
                )
            # Kept whole until the restart: half of the daemon on the new storage folder
            # (verdicts, saved settings) and half on the old (incidents, outbox) loses answers.
            config = config.model_copy(
                update={
                    "mqtt": self.config.mqtt,
                    "storage": self.config.storage,
                    "notify": self.config.notify,
                }
            )
        listen = ["http.listen"] if config.http.listen != self.started_http.listen else []
        if listen:
            logger.warning(
                "http.listen changed to %r: it takes effect at the next restart; the status server stays on %r",
                config.http.listen,
                self.started_http.listen,
            )
        others = [
            f"http.{key}"
            for key in type(config.http).model_fields
            if key != "listen" and getattr(config.http, key) != getattr(self.started_http, key)
        ]
        if others:
            logger.warning(
                "%s changed: the page keeps its settings until the next restart", ", ".join(others)
            )
        self.waiting_for_restart = (*changed, *listen, *others)
        return config

    def _reload(self) -> str | None:
        systemd.reloading()
        try:
            # the saved page settings of the folder in use: a new storage.dir waits for the
            # restart, and its settings with it
            read = overrides.saves_so_far()
            config, left_out = overrides.load_starting_config(
                self.config_path, overrides.config_mask_check, self.config.storage.dir
            )
            check_tls(config.mqtt, self.config_path)  # kept until the restart, which needs it
            bundle = load_bundle(config, self.config_path)
            watchers = self._make_watchers(config, bundle)
        except (ConfigError, BundleError, UsageError) as exc:
            logger.error("reload refused, keeping the running config: %s", exc)
            systemd.ready()
            return secret_filter.mask(str(exc))  # shown on /status and the page
        except Exception as exc:  # noqa: BLE001 - a reload must never stop a running daemon
            logger.error(
                "reload refused, keeping the running config: %s: %s", type(exc).__name__, exc
            )
            systemd.ready()
            return secret_filter.mask(f"{type(exc).__name__}: {exc}")
        config = self._restart_only_kept(config)
        old = self.running
        self._stop(old, self.RELOAD_STOP_S)
        if self.notifier is not None:
            # after the old watchers' last step: a removed printer's last state is not
            # published again once it is taken off the broker
            self.notifier.set_printers(list(watchers), _without_api(config))
        late = self._put_back(watchers)
        for name, r in old.items():
            stepping = r.late()
            if stepping is not None:
                if stepping is not r:
                    # it never watched (its own thread closes it): only its commands
                    r.watcher.retire(watchers.get(name))
                if name in watchers:
                    late[name] = stepping  # handed over by its successor's thread once it ends
                else:
                    self._retire_when_done(name, stepping)
                continue
            if name not in watchers:
                _say_unanswered(r.watcher)
            # read once the old threads are done: nothing they did is lost. Commands still
            # queued, or sent to the old watcher from here on, are carried out by the new one.
            r.watcher.retire(watchers.get(name))
            if r.after is not None and not r.after.watcher.retired:
                # a predecessor whose step ended after its successor stopped waiting for it
                # (one that took over has retired it): what it knew of the print and its
                # commands go to the new watcher (last, so that its alert wins over the fresh
                # state of a successor that never watched)
                r.after.watcher.retire(watchers.get(name))
        self.config, self.bundle, self._settings_read = config, bundle, read
        # a printer taken out or renamed: its timeline and frames are not kept for good
        self.histories = {n: h for n, h in self.histories.items() if n in watchers}
        self.metrics.keep_only(watchers)
        self._apply_log_level(config)
        self.running = self._prepare(watchers, late)
        if self.stop_event.is_set():  # stopped meanwhile: the new watchers never watch
            # (``_stop`` closes them); a page's save waiting is answered applied, and the
            # daemon stops: no READY=1 for systemd, which is stopping it
            logger.info("reload of %s cut short: the watchdog is stopping", self.config_path)
            return None
        self._launch(self.running)
        logger.info("reloaded %s (model %s)", self.config_path, bundle.path)
        for why in left_out:  # as at the start: kept in their file, shown on the page
            logger.error("%s", why)
        systemd.ready()
        return None

    def _put_back(self, watchers: Mapping[str, Watcher]) -> dict[str, _Running]:
        """Printers taken out of the config and put back while their old watcher is still in
        its step: the new one follows it (two watchers of one printer side by side would
        pause and alert twice)."""
        late: dict[str, _Running] = {}
        ended: dict[str, _Running] = {}
        with self._removed_lock:
            for name in watchers:
                gone = self._removed.pop(name, None)
                if gone is not None:
                    (late if gone.thread.is_alive() else ended)[name] = gone
        for name, gone in ended.items():  # its step ended just now: carried on from, as any
            gone.watcher.retire(watchers[name])
        return late

    def _retire_when_done(self, name: str, stepping: _Running) -> None:
        """A printer taken out of the config while its watcher is in its step (a pause the
        printer's API takes its time over): what that step ends with (its alert) is said and
        its commands answered once it ends, not read before it is there."""
        with self._removed_lock:
            self._removed[name] = stepping

        def when_done() -> None:
            stepping.thread.join()
            with self._removed_lock:
                if self._removed.get(name) is not stepping:
                    return  # put back in the config meanwhile: its successor took over
                del self._removed[name]
            _say_unanswered(stepping.watcher)
            stepping.watcher.retire(None)

        threading.Thread(target=when_done, name=f"retire-{name}", daemon=True).start()

    # ----------------------------------------------------------------- main

    def run(self) -> int:
        # SIGTERM and Ctrl-C set the stop event at once, also while a reload runs
        signals = Signals(signal.SIGTERM, signal.SIGINT, signal.SIGHUP, stop=self.stop_event)
        if held_reloads():  # asked for while the config and the model were loading
            signals.record(signal.SIGHUP)
        try:
            return self._serve(signals)
        finally:
            signals.close()

    def _serve(self, signals: Signals) -> int:
        cfg = self.config
        self.storage_lock = lock_storage(cfg.storage.dir)  # StorageInUse → one line, exit 2
        self.last_commands.keep_in(cfg.storage.dir / "last-commands.json")
        self.notifier = Notifier(
            cfg.mqtt,
            cfg.storage,
            [p.name for p in cfg.printers],
            self,
            notify=cfg.notify,
            registry=self.metrics.registry,
            without_api=_without_api(cfg),
            answered=self.last_commands.keep,
        )
        watchers = self._make_watchers(cfg, self.bundle)
        # from here a failure (http.listen in use) stops what was started: the notifier's
        # threads would keep the process from exiting, and MQTT telling Home Assistant "online"
        try:
            self.notifier.start()
            # Listed before the status server answers (its first /status names every printer),
            # started after it is up (an address in use stops the daemon before any watching).
            self.running = self._prepare(watchers)
            # From here the running watchers are ``self.running``'s. Kept in this frame, the
            # first ones would hold every watcher a reload retires, each its successor's
            # (``Watcher.retire``): a settings save leaked one generation, for good.
            del watchers
            if cfg.http.listen:
                from watchdog.comms.http import StatusServer
                from watchdog.web.app import Dashboard

                self.http = StatusServer(
                    cfg.http.listen,
                    self.status,
                    self.metrics.registry,
                    self.latest_jpeg,
                    self.healthy,
                    request_timeout_s=cfg.http.request_timeout_s,
                    max_connections=cfg.http.max_connections,
                    dashboard=Dashboard(self, cfg.http, cfg.storage.dir),
                    actions=self.notifier.handle_action,
                    describe_action=self.notifier.describe_action,
                )
                self.http.start()
            self._launch(self.running)
            logger.info(
                "watching %d printer(s) with model %s (threshold %.4g)",
                len(self.running),
                self.bundle.path,
                self.bundle.meta.threshold,
            )
            systemd.ready()
            ping_every = min(systemd.watchdog_interval_s() or 10.0, 10.0) / 2
            next_ping = 0.0
            # a quarter of a second: a save on the page waits for its reload
            while not self.stop_event.wait(0.25):
                for signum in signals.take():  # taken here, never in the handler
                    (self.reload_event if signum == signal.SIGHUP else self.stop_event).set()
                if self.stop_event.is_set():
                    break
                if self.reload_event.is_set():
                    self.reload_event.clear()
                    self.reload()
                now = time.monotonic()
                if now >= next_ping:
                    next_ping = now + ping_every
                    if self.healthy():
                        systemd.watchdog_ping()
                    systemd.status(self.summary())
        finally:
            logger.info("stopping")
            systemd.stopping()
            # one budget for the whole stop, within systemd's TimeoutStopSec=20: the watchers'
            # wait and the web server's added up to 30 s with a printer's API hanging, and
            # systemd killed the daemon mid-way
            deadline = time.monotonic() + STOP_WITHIN_S
            self._stop(self.running, WATCHERS_STOP_S)
            for r in self.running.values():
                # a hung watcher's too (its thread still in its step), and a predecessor's
                # that a successor never took over
                for left in (r.after, r):  # the predecessor first: a successor takes over
                    if left is not None:
                        left.watcher.owner_stops.close("the watchdog stopped")
                        left.watcher.refuse_commands(
                            "the watchdog stopped before carrying it out; send it again once "
                            "it is back"
                        )
            # a settings save waiting for its reload (``_apply``) is told now, not after its
            # 30 s: the web server's stop waits for it, and systemd would kill the daemon
            self.stop_event.set()
            with self._reloads:
                self._reloads.notify_all()
            if self.http is not None:
                self.http.stop(max(1.0, deadline - time.monotonic() - NOTIFIER_STOP_S))
            self.notifier.stop(max(0.5, min(NOTIFIER_STOP_S, deadline - time.monotonic())))
            if self.storage_lock is not None:
                self.storage_lock.release()
            logger.info("stopped")
        return 0
