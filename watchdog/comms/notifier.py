"""Everything the watchers tell the world, behind one object the watcher calls.

An alert is saved in the incident store first (frame, heatmap, alert JSON), then handed to
each communicator: MQTT (``watchdog.comms.mqtt``) and the phone notifications
(``watchdog.comms.notify``), which both deliver through the disk outbox. Commands coming
back (MQTT topics, phone buttons) become ``watchdog.control.Command`` objects for the
dispatcher (the daemon).

With MQTT disabled and no ``notify:`` targets, incidents are still written to disk and the
publish calls do nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from watchdog.comms.actions import ActionHandler, ActionTokens, Grant
from watchdog.comms.mqtt import MqttCommunicator
from watchdog.comms.notify import (
    BUTTONS,
    SKIP_LINK,
    Kind,
    Notifications,
    alert_event,
    answer_failed_event,
    answer_late_event,
    camera_event,
    print_done_event,
)
from watchdog.comms.outbox import Outbox
from watchdog.config import MqttConfig, NotifyTarget, StorageConfig
from watchdog.control import Answered, Command, CommandResult, Dispatcher, Verb, saved_answers
from watchdog.durable import replace_file
from watchdog.incidents import (
    FRAME,
    HEATMAP,
    PRINT_OVER,
    Incident,
    IncidentStore,
    ThrottledLog,
    answered,
    closing_answer,
    incident_dir,
    list_incidents,
    read_picture,
    saved_alert,
)
from watchdog.printing import Action, Outcome

logger = logging.getLogger(__name__)

HEATMAPS = "mqtt-heatmaps"  # under storage.dir: each printer's last heatmap at a clean stop


class Notifier:
    """Incidents, MQTT and phone notifications for a set of printers."""

    def __init__(
        self,
        mqtt: MqttConfig,
        storage: StorageConfig,
        printers: list[str],
        dispatcher: Dispatcher | None = None,
        *,
        notify: Sequence[NotifyTarget] = (),
        registry: CollectorRegistry | None = None,
        reconnect_delay: tuple[float, float] = (1, 30),
        notify_backoff: tuple[float, float] = (5.0, 300.0),
        without_api: Collection[str] = (),
        answered: Answered | None = None,
    ) -> None:
        """``without_api``: printers with no printer API (Home Assistant shows them no printer
        buttons); ``answered``: told each answer to an MQTT command (the page shows them)."""
        self.cfg = mqtt
        self.printers = list(printers)
        self._throttle = ThrottledLog(60.0)
        self.store = IncidentStore(storage.dir, storage.keep_incidents, self._throttle)
        self.outbox = Outbox(storage.dir, self._throttle)
        self._answered = answered
        self.mqtt = MqttCommunicator(
            mqtt,
            self.printers,
            self.outbox,
            dispatcher,
            reconnect_delay=reconnect_delay,
            throttle=self._throttle,
            published=storage.dir / "mqtt-printers.json",
            answers=storage.dir / "mqtt-answers.json",
            without_api=without_api,
            answered=answered,
        )
        self.tokens = ActionTokens(storage.dir)
        self.actions = ActionHandler(
            self.tokens,
            dispatcher,
            storage.dir,
            failed_late=self._answer_failed,
            done_late=self._answer_late,
        )
        self.notifications = Notifications(
            notify,
            self.outbox,
            self.tokens,
            registry=registry,
            backoff=notify_backoff,
            throttle=self._throttle,
            closing=lambda printer, incident: closing_answer(
                saved_alert(storage.dir, printer, incident)
            ),
        )

    def told(self, command: Command, result: CommandResult) -> None:
        """A command carried out without the dispatcher (the command line's verdict, found in
        its alert's file by the watcher): the printer's last command on the page and on Home
        Assistant's *Last command* sensor, as MQTT's answers are."""
        if self.enabled:
            self.mqtt.publish_answer(command, result)  # the page is told from there too
        elif self._answered is not None:
            self._answered(command, result)

    # ----------------------------------------------------------------- lifecycle

    @property
    def enabled(self) -> bool:
        """MQTT is configured."""
        return self.mqtt.enabled

    @property
    def connected(self) -> bool:
        return self.mqtt.connected

    @property
    def address(self) -> str:
        return self.mqtt.address

    def set_printers(self, printers: list[str], without_api: Collection[str] = ()) -> None:
        """A reload added or removed printers, or a printer's API: MQTT and Home Assistant
        follow."""
        self.printers = list(printers)
        self.mqtt.set_printers(self.printers, without_api)

    @property
    def delivers(self) -> bool:
        """Someone is told of alerts: MQTT, or a phone notification target."""
        return self.enabled or bool(self.notifications)

    def start(self) -> None:
        """Connect to the broker in the background and start the notification senders."""
        if not self.enabled:
            logger.info("MQTT disabled (no mqtt.host); alerts are saved in %s", self.store.root)
        self._tell_phones_of_drafts()
        self._republish_last_heatmaps()
        self.mqtt.start(legacy=self.store)
        self.notifications.start()

    def _tell_phones_of_drafts(self) -> None:
        """Alerts saved before their pause finished and left pending by a watchdog that stopped
        meanwhile (a restart while the printer's API hung, a power cut): the phones are told
        now, as an action whose end is unknown. MQTT delivers them from the same marker; with
        MQTT off the marker is cleared here."""
        self.store.settle_drafts()
        for incident in self.store.pending(self.printers):
            result = incident.alert.get("action_result")
            if not isinstance(result, dict) or result.get("outcome") != Outcome.UNKNOWN.value:
                continue  # an alert the phones were told of, left for the broker
            if self.notifications and not self.store.phones_told(incident):
                frame, heatmap = (_read(incident, name) for name in (FRAME, HEATMAP))
                self.notifications.notify(alert_event(incident.alert, frame, heatmap))
                self.store.mark_phones_told(incident)
            if not self.enabled:
                self.store.delivered(incident)

    def _republish_last_heatmaps(self) -> None:
        """Each printer's last heatmap, sent at the connection: a broker that kept no retained
        messages across a restart (mosquitto without persistence) left Home Assistant's
        Heatmap empty until the next anomalous frame, maybe days away."""
        if not self.enabled:
            return
        for printer in self.printers:
            shown = self._last_heatmap(printer)
            if shown is not None:
                self.mqtt.publish_heatmap(printer, *shown)

    def _last_heatmap(self, printer: str) -> tuple[bytes, float] | None:
        """The newer of the heatmap published last before a clean stop and the latest alert's
        (an anomalous frame after that alert published a newer one; a broker that kept it
        must not be handed the older alert's at every restart), and when it was made (the
        saved one's file time is set to it, not to the stop's)."""
        found: list[tuple[float, Path]] = []
        places = [self._saved_heatmap(printer)]
        newest = list_incidents(self.store.storage_dir, [printer], limit=1)
        if newest:
            places.append(incident_dir(self.store.storage_dir, printer, newest[0].id) / HEATMAP)
        for path in places:
            try:
                found.append((path.stat().st_mtime, path))
            except OSError:
                continue  # none saved, or pruned meanwhile
        for when, path in sorted(found, reverse=True):
            try:
                return read_picture(path), when  # a plain file of its own, never a link
            except OSError:
                continue
        return None

    def _saved_heatmap(self, printer: str) -> Path:
        return self.store.storage_dir / HEATMAPS / f"{printer}.jpg"

    def _save_heatmaps(self) -> None:
        """The heatmap each printer showed last, for the next start (see ``_last_heatmap``):
        written once, at a clean stop, not at every anomalous frame (an SD card)."""
        for printer, (jpeg, shown_at) in self.mqtt.heatmaps().items():
            path = self._saved_heatmap(printer)
            try:
                replace_file(path, jpeg)
                os.utime(path, (shown_at, shown_at))  # an alert saved later is newer
            except OSError as exc:
                logger.warning(
                    "%s: cannot keep its last heatmap for the next start: %s", printer, exc
                )

    def stop(self, timeout: float = 3.0, for_good: bool = False) -> None:
        """``for_good``: nothing of this client stays on the broker (the demo), not even its
        "offline", which would be retained there for ever."""
        deadline = time.monotonic() + timeout  # for both: the stop keeps within systemd's
        self.mqtt.stop(timeout, for_good)
        if self.enabled and not for_good:
            self._save_heatmaps()
        self.notifications.stop(max(0.5, deadline - time.monotonic()))

    def undelivered(self) -> int:
        """MQTT alerts raised or found pending that the broker has not acknowledged yet."""
        return self.mqtt.undelivered()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every MQTT alert is acknowledged; True if so."""
        return self.mqtt.flush(timeout)

    # ----------------------------------------------------------------- what the watchers say

    def publish_state(self, printer: str, state: dict[str, Any]) -> None:
        self.mqtt.publish_state(printer, state)

    def publish_enabled(self, printer: str, enabled: bool) -> None:
        self.mqtt.publish_enabled(printer, enabled)

    def publish_score(self, printer: str, score: float) -> None:
        self.mqtt.publish_score(printer, score)

    def publish_heatmap(self, printer: str, jpeg: bytes) -> None:
        self.mqtt.publish_heatmap(printer, jpeg)

    def raise_alert(
        self, printer: str, alert: dict[str, Any], frame_jpeg: bytes, heatmap_jpeg: bytes
    ) -> str:
        """Save the incident (frame, heatmap, alert JSON), then publish and notify; returns its id."""
        incident = self.save_alert(printer, alert, frame_jpeg, heatmap_jpeg)
        self.send_alert(incident, frame_jpeg, heatmap_jpeg)
        return incident.id

    def save_alert(
        self, printer: str, alert: dict[str, Any], frame_jpeg: bytes, heatmap_jpeg: bytes
    ) -> Incident:
        """The incident on disk, not yet told to anyone: the watcher records it as its latest
        alert before ``send_alert``, so an answer to "the latest alert" that comes back at once
        finds this one."""
        return self.store.save(printer, alert, frame_jpeg, heatmap_jpeg, pending=False)

    def send_alert(self, incident: Incident, frame_jpeg: bytes, heatmap_jpeg: bytes) -> None:
        """Publish a saved incident over MQTT and to the phone notifications."""
        if self.enabled:
            self.mqtt.publish_heatmap(incident.printer, heatmap_jpeg)
            self.mqtt.send_alert(incident)
        if self.notifications:
            self.notifications.notify(alert_event(incident.alert, frame_jpeg, heatmap_jpeg))

    def correct_alert(self, printer: str, alert: dict[str, Any]) -> None:
        """An alert sent already turned out wrong (its pause did not happen, or happened
        after all): saved over, and sent again where the first went (Home Assistant, the
        phones). A "did NOT happen" goes not to the phones where its owner has answered the
        alert already (resumed, cancelled, not a failure): they decided what becomes of the
        print; its card and the log say it. A pause that shows after all is told whatever
        was answered: the print stands paused (after a Not a failure, all night, silent)."""
        incident = self.store.correct(printer, alert)
        if self.enabled:
            self.mqtt.send_alert(incident, again=True)
        result = incident.alert.get("action_result")
        # a pause that shows after all, the print not cancelled or ended meanwhile (a cancel
        # "done" after the owner's own cancel was the same news twice)
        paused = (
            isinstance(result, dict)
            and result.get("action") == Action.PAUSE.value
            and result.get("outcome") == Outcome.DONE.value
            and closing_answer(incident.alert) not in ("cancelled", PRINT_OVER)
        )
        decided = answered(incident.alert) or incident.alert.get("verdict") == "not_failure"
        if self.notifications and (paused or not decided):
            frame, heatmap = _read(incident, FRAME), _read(incident, HEATMAP)
            self.notifications.notify(alert_event(incident.alert, frame, heatmap, corrects=True))

    def _answer_failed(self, grant: Grant, why: str, unknown: bool) -> None:
        """A phone button the owner was told is under way failed in the end: the phones are
        told, with the alert's buttons again (ntfy cleared the alert when it was pressed);
        ``unknown``: it may have happened, so without them (pressed again, twice)."""
        if not self.notifications:
            return
        alert = saved_alert(self.store.storage_dir, grant.printer, grant.incident)
        button = _button_label(grant.verb)
        answers = saved_answers(alert) if alert and not unknown else ()
        self.notifications.notify(
            answer_failed_event(grant.printer, grant.incident, button, why, answers, unknown)
        )

    def _answer_late(self, grant: Grant, what: str) -> None:
        """A phone button told "was not done" whose stop the printer shows a while later (a
        cancel macro slow to run): the phones are told; a print no longer running has no
        printer button left to offer."""
        if not self.notifications:
            return
        alert = saved_alert(self.store.storage_dir, grant.printer, grant.incident)
        button = _button_label(grant.verb)
        answers = saved_answers(alert) if alert and grant.verb is not Verb.CANCEL else ()
        self.notifications.notify(
            answer_late_event(grant.printer, grant.incident, button, what, answers)
        )

    def camera_changed(self, printer: str, online: bool, why: str = "") -> None:
        """The camera went offline (``why``: its error), or came back: one notification
        each (``camera_offline``)."""
        if self.notifications:
            self.notifications.notify(camera_event(printer, online, why))

    def camera_unwatched(self, printer: str) -> bool:
        """The print ended, or watching was switched off, with the camera offline: an
        "offline" still waiting is no longer worth sending. True when one was withdrawn and
        no target told the owner of this outage (its "back online" is then worth nothing)."""
        return bool(self.notifications) and self.notifications.withdraw(
            printer, Kind.CAMERA_OFFLINE
        )

    def print_done(
        self,
        printer: str,
        job: str | None,
        error: str | None = None,
        unseen: bool = False,
        ended: str = "",
    ) -> None:
        """A watched print stopped printing without our action (``print_done``); ``error``:
        the printer's error that stopped it; ``unseen``: it ended while the API was away;
        ``ended``: how, where the API says (``PrinterStatus.ended``)."""
        if self.notifications:
            self.notifications.notify(print_done_event(printer, job, error, unseen, ended))

    # ----------------------------------------------------------------- status and commands

    def notify_status(self) -> dict[str, dict[str, Any]]:
        """Per notification target: sent, failed, pending, ... (no URL: it holds secrets)."""
        return self.notifications.status()

    def handle_action(self, token: str) -> tuple[int, str]:
        """A phone button was pressed: ``POST /actions/<token>``."""
        return self.actions.handle_action(token)

    def describe_action(self, token: str) -> tuple[int, str]:
        """A notification's link was opened: ``GET /actions/<token>`` asks before it acts."""
        return self.actions.describe(token)


def _read(incident: Incident, name: str) -> bytes | None:
    """One of a saved incident's pictures, None when it is not there (or is a link put in
    its place: the file it named would go to the phones as the alert's picture)."""
    try:
        return read_picture(incident.path / name) if incident.path is not None else None
    except OSError:
        return None


def _button_label(verb: Verb) -> str:
    """What a notification's button (or link) for ``verb`` reads, as the owner pressed it."""
    return dict((*BUTTONS, SKIP_LINK)).get(verb, verb.value)
