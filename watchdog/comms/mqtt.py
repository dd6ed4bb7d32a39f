"""MQTT: alerts, state, scores, heatmaps, Home Assistant discovery and command topics.

Topics (``<prefix>`` is ``mqtt.topic_prefix``), after Frigate's conventions:

- ``<prefix>/available``: ``online``/``offline``, retained; ``offline`` is the last will.
- ``<prefix>/<printer>/state``: JSON, retained. ``<prefix>/<printer>/enabled``: ON/OFF, retained.
- ``<prefix>/<printer>/score``: the score of each frame.
- ``<prefix>/<printer>/alert``: JSON with the ``incident`` id.
- ``<prefix>/<printer>/heatmap``: raw JPEG bytes, retained.
- Commands in: ``<prefix>/<printer>/enabled/set`` (ON/OFF) and ``<prefix>/<printer>/feedback``
  (``{"incident": id, "verdict": "not_failure"|"failure"}``). Anything else is logged and
  ignored, never executed.

No alert is lost: an alert is saved in the incident store first and published at QoS 1 from
there; its ``pending`` marker goes when the broker's PUBACK arrives (``on_publish``). paho
resends unacknowledged messages after a reconnect, and incidents still pending on disk are
published again by the next ``start()`` (after a daemon restart). The network runs on
paho's own thread (``loop_start``); nothing here blocks the daemon while the broker is away.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import ssl
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt

from watchdog import __version__
from watchdog.config import ConfigError, MqttConfig, StorageConfig
from watchdog.incidents import SAFE_NAME, VERDICTS, Incident, IncidentStore, ThrottledLog, to_json

logger = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 1024
from watchdog.control import LATEST_INCIDENT  # noqa: E402  (the Home Assistant button)

CommandHandler = Callable[[str, str, dict], None]


class CommandError(ValueError):
    """A command message that is refused; ``kind`` groups reasons for rate-limited logging."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def parse_command(prefix: str, printers: Iterable[str], topic: str, payload: bytes) -> tuple[str, str, dict]:
    """Validate one command message: ``(printer, "enabled"|"feedback", data)`` or CommandError.

    Pure, so it is fuzzed directly. Only the two documented shapes pass: ``ON``/``OFF`` on
    ``enabled/set`` and a JSON object with exactly ``incident`` and ``verdict`` on ``feedback``.
    """
    if not topic.startswith(prefix + "/"):
        raise CommandError("topic", f"topic {topic!r} is not under {prefix!r}")
    parts = topic[len(prefix) + 1:].split("/")
    if len(parts) == 3 and parts[1:] == ["enabled", "set"]:
        command = "enabled"
    elif len(parts) == 2 and parts[1] == "feedback":
        command = "feedback"
    else:
        raise CommandError("topic", f"topic {topic!r} is not a command topic")
    printer = parts[0]
    if printer not in set(printers):
        raise CommandError("printer", f"unknown printer {printer[:64]!r}")
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError(command, f"payload of {len(payload)} bytes is over the {MAX_COMMAND_BYTES}-byte limit")
    if command == "enabled":
        value = payload.strip()
        if value not in (b"ON", b"OFF"):
            raise CommandError(command, "payload must be ON or OFF")
        return printer, command, {"enabled": value == b"ON"}
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CommandError(command, f"payload is not JSON: {str(exc)[:80]}") from None
    if not isinstance(data, dict):
        raise CommandError(command, "payload must be a JSON object")
    if set(data) != {"incident", "verdict"}:
        raise CommandError(command, 'payload must have exactly the keys "incident" and "verdict"')
    incident, verdict = data["incident"], data["verdict"]
    if not isinstance(incident, str) or not SAFE_NAME.fullmatch(incident):
        raise CommandError(command, "incident must be an incident id (letters, digits, '_' or '-')")
    if verdict not in VERDICTS:
        raise CommandError(command, f"verdict must be one of {', '.join(VERDICTS)}")
    return printer, command, {"incident": incident, "verdict": verdict}


def _node_id(prefix: str, printer: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", prefix) + "_" + printer


def discovery_configs(mqtt_cfg: MqttConfig, printer: str) -> dict[str, dict[str, Any]]:
    """Home Assistant discovery topic → config for one printer's five entities."""
    prefix = mqtt_cfg.topic_prefix
    base = f"{prefix}/{printer}"
    node = _node_id(prefix, printer)
    common = {
        "availability_topic": f"{prefix}/available",
        "payload_available": "online",
        "payload_not_available": "offline",
        "has_entity_name": True,
        "device": {
            "identifiers": [node],
            "name": f"Print watchdog {printer}",
            "manufacturer": "printer-watchdog",
            "model": "autoencoder failure detector",
            "sw_version": __version__,
        },
        "origin": {"name": "printer-watchdog", "sw_version": __version__},
    }
    entities: dict[tuple[str, str], dict[str, Any]] = {
        ("binary_sensor", "problem"): {
            "name": "Print failure",
            "device_class": "problem",
            "state_topic": f"{base}/state",
            "value_template": "{{ 'ON' if value_json.state in ['anomaly', 'paused'] else 'OFF' }}",
            "json_attributes_topic": f"{base}/state",
        },
        ("sensor", "score"): {
            "name": "Failure score",
            "state_topic": f"{base}/score",
            "state_class": "measurement",
            "suggested_display_precision": 3,
            "icon": "mdi:printer-3d-nozzle-alert",
        },
        ("image", "heatmap"): {
            "name": "Heatmap",
            "image_topic": f"{base}/heatmap",
            "content_type": "image/jpeg",
        },
        ("switch", "enabled"): {
            "name": "Watching",
            "command_topic": f"{base}/enabled/set",
            "state_topic": f"{base}/enabled",
            "payload_on": "ON",
            "payload_off": "OFF",
            "icon": "mdi:eye",
        },
        # One press from the phone: the latest alert was a false alarm (its frame is kept for
        # retraining, and the watcher re-learns the print's look, as after a resume).
        ("button", "not_failure"): {
            "name": "Not a failure",
            "command_topic": f"{base}/feedback",
            "payload_press": json.dumps({"incident": LATEST_INCIDENT, "verdict": "not_failure"}),
            "icon": "mdi:check-circle-outline",
        },
    }
    dp = mqtt_cfg.homeassistant.discovery_prefix
    return {
        f"{dp}/{component}/{node}/{object_id}/config": {**body, **common, "unique_id": f"{node}_{object_id}"}
        for (component, object_id), body in entities.items()
    }


class Notifier:
    """Publishes what the watchers see and keeps every alert until the broker has it.

    With MQTT disabled (empty host) incidents are still written to disk and the publish_*
    calls do nothing.
    """

    def __init__(
        self,
        mqtt: MqttConfig,
        storage: StorageConfig,
        printers: list[str],
        on_command: CommandHandler | None = None,
        *,
        reconnect_delay: tuple[float, float] = (1, 30),
    ) -> None:
        self.cfg = mqtt
        self.printers = list(printers)
        self.on_command = on_command
        self.reconnect_delay = reconnect_delay
        self.prefix = mqtt.topic_prefix
        self._throttle = ThrottledLog(60.0)
        self.store = IncidentStore(storage.dir, storage.keep_incidents, self._throttle)
        self._client: Any = None  # paho's mqtt.Client once started
        self._lock = threading.Condition()
        self._inflight: dict[int, Incident] = {}  # mid → alert waiting for its PUBACK
        self._unsent: dict[str, Incident] = {}  # alerts with no client yet (not started / stopped)
        self._early_acks: OrderedDict[int, None] = OrderedDict()  # PUBACKs that beat publish()
        self._clearing = 0  # acknowledged alerts whose pending marker is not removed yet
        self._retained: dict[str, bytes] = {}  # latest state/heatmap/enabled, re-sent on connect
        self._was_connected = False

    # ----------------------------------------------------------------- lifecycle

    @property
    def enabled(self) -> bool:
        return self.cfg.enabled

    @property
    def connected(self) -> bool:
        client = self._client
        return client is not None and client.is_connected()

    @property
    def address(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    def start(self) -> None:
        """Connect in the background (the broker may be down) and queue alerts left pending."""
        if not self.enabled:
            logger.info("MQTT disabled (no mqtt.host); alerts are saved in %s", self.store.root)
            return
        if self._client is not None:
            return
        client = self._make_client()
        with self._lock:  # from here on raise_alert publishes on this client itself
            self._client = client
            unsent = list(self._unsent.values())
            self._unsent.clear()
        queued = {i.id for i in unsent}
        backlog = unsent + [i for i in self.store.pending(self.printers) if i.id not in queued]
        if backlog:
            logger.info("%d alert(s) not yet delivered will be sent when the broker answers", len(backlog))
        for incident in sorted(backlog, key=lambda i: i.id):
            self._publish_alert(client, incident)
        client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        client.loop_start()

    def _make_client(self) -> mqtt.Client:
        cfg = self.cfg
        client_id = cfg.client_id or f"printer-watchdog-{socket.gethostname()}"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password.get_secret_value() if cfg.password else None)
        if cfg.tls is not None:
            tls = cfg.tls
            try:
                client.tls_set(
                    ca_certs=str(tls.ca_file) if tls.ca_file else None,
                    certfile=str(tls.cert_file) if tls.cert_file else None,
                    keyfile=str(tls.key_file) if tls.key_file else None,
                    cert_reqs=ssl.CERT_NONE if tls.insecure else ssl.CERT_REQUIRED,
                )
            except (OSError, ssl.SSLError, ValueError) as exc:
                files = ", ".join(str(f) for f in (tls.ca_file, tls.cert_file, tls.key_file) if f)
                raise ConfigError(f"mqtt.tls: cannot load the certificates ({files}): {exc}") from exc
            if tls.insecure:
                client.tls_insecure_set(True)
                logger.warning("mqtt.tls.insecure: the broker's certificate is not verified")
        client.will_set(f"{self.prefix}/available", "offline", qos=1, retain=True)
        client.reconnect_delay_set(*self.reconnect_delay)  # type: ignore[arg-type]  # paho accepts floats
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def stop(self, timeout: float = 3.0) -> None:
        """Let in-flight alerts finish briefly, publish offline, disconnect, join the thread."""
        client = self._client
        if client is None:
            return
        if client.is_connected():
            self.flush(timeout)
            info = client.publish(f"{self.prefix}/available", "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                logger.debug("offline not confirmed: %s", exc)
        self._was_connected = False  # a clean stop is not a lost connection
        client.disconnect()
        client.loop_stop()
        with self._lock:
            self._client = None
            left = list(self._inflight.values())
            self._inflight.clear()
            self._early_acks.clear()
            lost = [i for i in left if i.path is None]
            for incident in lost:  # a later start() on this object still sends them
                self._unsent[incident.id] = incident
        if left:
            logger.log(
                logging.ERROR if lost else logging.WARNING,
                "MQTT stopped with %d alert(s) undelivered: %d saved in %s (sent at the next start), "
                "%d only in memory (lost if the daemon exits)",
                len(left), len(left) - len(lost), self.store.root, len(lost),
            )

    def undelivered(self) -> int:
        """Alerts raised or found pending that the broker has not acknowledged yet."""
        with self._lock:
            return len(self._inflight) + len(self._unsent)

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until every alert is acknowledged; True if so."""
        with self._lock:
            return self._lock.wait_for(lambda: not self._inflight and not self._unsent and not self._clearing,
                                       timeout)

    # ----------------------------------------------------------------- callbacks (paho's thread)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            hint = ""
            if reason.value in (4, 5, 134, 135):  # bad user name or password / not authorised
                hint = " (check mqtt.username and mqtt.password)"
            self._throttle(logger, logging.ERROR, "connect",
                           "MQTT broker %s refused the connection: %s%s; retrying", self.address, reason, hint)
            return
        self._throttle.reset("connect")
        with self._lock:
            waiting = len(self._inflight)
        logger.info("MQTT connected to %s%s", self.address,
                    f"; sending {waiting} undelivered alert(s)" if waiting else "")
        self._was_connected = True
        client.publish(f"{self.prefix}/available", "online", qos=1, retain=True)
        topics = [(f"{self.prefix}/+/enabled/set", 1), (f"{self.prefix}/+/feedback", 1)]
        if self.cfg.homeassistant.enabled:
            topics.append((f"{self.cfg.homeassistant.discovery_prefix}/status", 1))
            self._publish_discovery(client)
        client.subscribe(topics)
        with self._lock:
            retained = list(self._retained.items())
        for topic, payload in retained:
            client.publish(topic, payload, qos=1, retain=True)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        exc = sys.exception()  # paho calls this from inside its `except OSError:`
        hint = ""
        if isinstance(exc, ssl.SSLCertVerificationError):
            hint = " (set mqtt.tls.ca_file to the CA that signed the broker's certificate)"
        self._throttle(logger, logging.WARNING, "connect",
                       "cannot connect to MQTT broker %s: %s%s; retrying", self.address, exc or "failed", hint)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if self._was_connected:
            self._was_connected = False
            self._throttle(logger, logging.WARNING, "lost",
                           "MQTT connection to %s lost (%s); retrying, alerts are kept until delivered",
                           self.address, reason)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._lock:
            incident = self._inflight.pop(mid, None)
            if incident is not None:
                self._clearing += 1  # flush() waits until _delivered has removed the marker
            else:
                self._early_acks[mid] = None
                while len(self._early_acks) > 256:
                    self._early_acks.popitem(last=False)
        if incident is not None:
            self._delivered(incident)

    def _delivered(self, incident: Incident) -> None:
        """Called once per acknowledged alert, after ``_clearing`` was counted up for it."""
        self.store.delivered(incident)
        logger.info("%s: alert %s delivered", incident.printer, incident.id)
        with self._lock:
            self._clearing -= 1
            self._lock.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        if topic == f"{self.cfg.homeassistant.discovery_prefix}/status":
            if msg.payload == b"online":
                logger.info("Home Assistant is online: re-publishing discovery")
                self._publish_discovery(client)
            return
        try:
            printer, command, data = parse_command(self.prefix, self.printers, topic, bytes(msg.payload))
        except CommandError as exc:
            self._throttle(logger, logging.WARNING, f"command:{exc.kind}",
                           "ignored MQTT message on %s: %s", topic[:200], exc)
            return
        logger.info("%s: MQTT command %s %s", printer, command, data)
        if self.on_command is None:
            return
        try:
            self.on_command(printer, command, data)
        except Exception:  # the daemon's handler must never kill paho's network thread
            logger.exception("%s: handling MQTT command %s failed", printer, command)

    # ----------------------------------------------------------------- publishing

    def _publish_discovery(self, client: mqtt.Client) -> None:
        for printer in self.printers:
            for topic, config in discovery_configs(self.cfg, printer).items():
                client.publish(topic, to_json(config), qos=1, retain=True)

    def _publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        client = self._client
        if client is None:
            return
        info = client.publish(topic, payload, qos=1, retain=retain)
        with self._lock:
            self._early_acks.pop(info.mid, None)

    def _retain(self, topic: str, payload: bytes, only_changes: bool = False) -> None:
        """Publish a retained value now if connected; the latest one is re-sent on reconnect."""
        if not self.enabled:
            return
        with self._lock:
            if only_changes and self._retained.get(topic) == payload:
                return
            self._retained[topic] = payload
        if self.connected:
            self._publish(topic, payload, retain=True)

    def publish_state(self, printer: str, state: dict) -> None:
        """Retained JSON state; also the ``enabled`` switch state (from ``enabled`` or ``disabled``)."""
        if not self.enabled:
            return
        self._retain(f"{self.prefix}/{printer}/state", to_json({**state, "printer": printer}))
        enabled = state.get("enabled")
        if enabled is None:
            enabled = state.get("state") != "disabled"
        self.publish_enabled(printer, bool(enabled))

    def publish_enabled(self, printer: str, enabled: bool) -> None:
        """Retained ON/OFF of the Home Assistant switch."""
        self._retain(f"{self.prefix}/{printer}/enabled", b"ON" if enabled else b"OFF", only_changes=True)

    def publish_score(self, printer: str, score: float) -> None:
        """The score of one frame; dropped while disconnected (only the latest state matters)."""
        if not self.connected or not math.isfinite(score):
            return
        self._publish(f"{self.prefix}/{printer}/score", f"{float(score):.6g}")

    def publish_heatmap(self, printer: str, jpeg: bytes) -> None:
        """The frame with its heatmap overlay as raw JPEG bytes, retained."""
        self._retain(f"{self.prefix}/{printer}/heatmap", bytes(jpeg))

    def raise_alert(self, printer: str, alert: dict, frame_jpeg: bytes, heatmap_jpeg: bytes) -> str:
        """Save the incident (frame, heatmap, alert JSON), then publish it; returns its id."""
        incident = self.store.save(printer, alert, frame_jpeg, heatmap_jpeg, pending=self.enabled)
        if not self.enabled:
            return incident.id
        self.publish_heatmap(printer, heatmap_jpeg)
        with self._lock:
            client = self._client
            if client is None:
                self._unsent[incident.id] = incident
        if client is not None:
            self._publish_alert(client, incident)
        return incident.id

    def _publish_alert(self, client: mqtt.Client, incident: Incident) -> None:
        # Never hold self._lock around publish(): paho calls on_publish under its own lock.
        info = client.publish(f"{self.prefix}/{incident.printer}/alert", incident.payload, qos=1)
        with self._lock:
            acked = self._early_acks.pop(info.mid, "no") is None
            if acked:
                self._clearing += 1
            else:
                self._inflight[info.mid] = incident
        if acked:
            self._delivered(incident)
