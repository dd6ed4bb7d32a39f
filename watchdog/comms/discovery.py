"""Home Assistant MQTT discovery: the configs that make a printer's entities appear by themselves.

Per printer, one device with: a problem binary sensor, the watcher's state, the score, the
answer to the last command, the heatmap image, the Watching switch, and buttons: Not a failure and Confirm failure (feedback on the latest
alert), Pause, Resume and Cancel (through the printer's API) and Stop watching this print
(the printer's API tells when it ends); the last four taken away from a printer without an API. Every button's press is a command the daemon accepts
(``watchdog.comms.commands``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from watchdog import __version__
from watchdog.comms.transport import availability_topic
from watchdog.config import MqttConfig
from watchdog.control import COMMAND_NAMES, LATEST_INCIDENT, Verb
from watchdog.detection.decide import Label
from watchdog.ha_names import device_name

# Home Assistant's default birth topic, whatever its discovery prefix
HA_BIRTH_TOPIC = "homeassistant/status"

# Each Home Assistant "online" asks for the configs again; a flapping or hostile publisher
# must not turn that into a flood of retained messages.
REPUBLISH_MIN_INTERVAL_S = 60.0


def node_id(prefix: str, printer: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", prefix) + "_" + printer


def _feedback(verdict: str) -> str:
    return json.dumps({"incident": LATEST_INCIDENT, "verdict": verdict})


# The failure sensor's attributes: a score, threshold or count that changes at every frame
# would make Home Assistant record the sensor again every ten seconds of every print.
_STABLE_ATTRIBUTES = (
    "{{ {"
    + ", ".join(
        f"'{key}': value_json.get('{key}')"
        for key in ("printer_state", "job", "camera_online", "enabled", "skipping_print")
    )
    + "} | tojson }}"
)

# buttons of a printer API (a print's end, for skip_print): taken away from a printer without one
PRINTER_BUTTONS = ("pause", "resume", "cancel", "skip_print")


def discovery_configs(
    mqtt_cfg: MqttConfig, printer: str, api: bool = True
) -> dict[str, dict[str, Any] | None]:
    """Home Assistant discovery topic → config for one printer's entities; None (an empty
    config, which removes the entity) for the printer buttons of a printer without an API."""
    prefix = mqtt_cfg.topic_prefix
    base = f"{prefix}/{printer}"
    node = node_id(prefix, printer)
    common = {
        "availability_topic": availability_topic(mqtt_cfg),
        "payload_available": "online",
        "payload_not_available": "offline",
        "has_entity_name": True,
        "device": {
            "identifiers": [node],
            "name": device_name(printer),
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
            # on from our action until the owner answers it (a resume, a new print): not for
            # one anomalous frame, nor for a pause the owner made (a filament change)
            "value_template": "{{ 'ON' if value_json.failure | default(false) else 'OFF' }}",
            "json_attributes_topic": f"{base}/state",
            # the state's fields that change with the print, not with every frame: Home
            # Assistant's recorder writes a row for each change of an entity's attributes
            "json_attributes_template": _STABLE_ATTRIBUTES,
        },
        # the watcher's own state (watching, calibrating, camera_offline, ...): Home Assistant
        # drops a "state" key from an entity's JSON attributes, so it is an entity of its own
        ("sensor", "state"): {
            "name": "Watchdog state",
            "state_topic": f"{base}/state",
            "value_template": "{{ value_json.state }}",
            "device_class": "enum",
            "options": [label.value for label in Label],
            "icon": "mdi:eye-check-outline",
        },
        ("sensor", "score"): {
            "name": "Failure score",
            "state_topic": f"{base}/score",
            "state_class": "measurement",
            "suggested_display_precision": 3,
            "icon": "mdi:printer-3d-nozzle-alert",
        },
        # what became of the latest button pressed or command sent (a refused Resume, which
        # alert "Not a failure" marked): a sensor's state holds 255 characters at most
        ("sensor", "answer"): {
            "name": "Last command",
            "state_topic": f"{base}/answer",
            "value_template": "{{ value_json.text[:255] }}",
            "json_attributes_topic": f"{base}/answer",
            "json_attributes_template": (
                "{{ {'command': value_json.command, 'incident': value_json.incident, "
                "'ok': value_json.ok, 'under_way': value_json.under_way, "
                "'unknown': value_json.unknown, 'time': value_json.time} | tojson }}"
            ),
            "icon": "mdi:message-reply-text-outline",
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
        # The latest alert was a false alarm: its frame is kept for retraining and the watcher
        # re-learns the print's look, as after a resume.
        ("button", "not_failure"): {
            "name": COMMAND_NAMES[Verb.NOT_A_FAILURE],
            "command_topic": f"{base}/feedback",
            "payload_press": _feedback("not_failure"),
            "icon": "mdi:check-circle-outline",
        },
        ("button", "confirm_failure"): {
            "name": COMMAND_NAMES[Verb.CONFIRM_FAILURE],
            "command_topic": f"{base}/feedback",
            "payload_press": _feedback("failure"),
            "icon": "mdi:alert-octagon-outline",
        },
        ("button", "pause"): {
            "name": COMMAND_NAMES[Verb.PAUSE],
            "command_topic": f"{base}/command",
            "payload_press": "pause",
            "icon": "mdi:pause",
        },
        ("button", "resume"): {
            "name": COMMAND_NAMES[Verb.RESUME],
            "command_topic": f"{base}/command",
            "payload_press": "resume",
            "icon": "mdi:play",
        },
        ("button", "cancel"): {
            "name": COMMAND_NAMES[Verb.CANCEL],
            "command_topic": f"{base}/command",
            "payload_press": "cancel",
            "icon": "mdi:stop",
        },
        # the print under way is not watched; the next one is (Watching on watches it again)
        ("button", "skip_print"): {
            "name": COMMAND_NAMES[Verb.SKIP_PRINT],
            "command_topic": f"{base}/command",
            "payload_press": "skip_print",
            "icon": "mdi:eye-off-outline",
        },
    }
    dp = mqtt_cfg.homeassistant.discovery_prefix
    return {
        f"{dp}/{component}/{node}/{object_id}/config": (
            {**body, **common, "unique_id": f"{node}_{object_id}"}
            if api or object_id not in PRINTER_BUTTONS
            else None
        )
        for (component, object_id), body in entities.items()
    }


class Discovery:
    """Publishes the discovery configs on connect, and again when Home Assistant comes online,
    at most once per ``min_interval_s``."""

    def __init__(
        self,
        mqtt_cfg: MqttConfig,
        printers: list[str],
        publish: Callable[[str, bytes], None],
        min_interval_s: float = REPUBLISH_MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        without_api: Collection[str] = (),
    ) -> None:
        self.cfg = mqtt_cfg
        self.printers = list(printers)
        self.without_api = frozenset(without_api)
        self._publish = publish
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None

    @property
    def enabled(self) -> bool:
        return self.cfg.homeassistant.enabled

    @property
    def status_topics(self) -> tuple[str, ...]:
        """Where Home Assistant says it came online: its birth topic stays
        ``homeassistant/status`` when the discovery prefix is changed, unless set too."""
        own = f"{self.cfg.homeassistant.discovery_prefix}/status"
        return (own,) if own == HA_BIRTH_TOPIC else (own, HA_BIRTH_TOPIC)

    def set_printers(self, printers: list[str], without_api: Collection[str] = ()) -> list[str]:
        """A reload changed the printers: the added ones, and those that gained or lost their
        API, whose configs are to be published (``publish_printers``); every connect
        publishes all of them anyway."""
        without = frozenset(without_api)
        changed = [
            p
            for p in printers
            if p not in self.printers or (p in without) != (p in self.without_api)
        ]
        self.printers, self.without_api = list(printers), without
        return changed

    def publish_printers(self, printers: list[str]) -> None:
        """These printers' configs, retained, when discovery is on: those still configured
        (announced later, a reload may have removed one since, its entities cleared)."""
        if self.enabled:
            for printer in printers:
                if printer in self.printers:
                    self._publish_printer(printer)

    def publish_all(self) -> None:
        """Every printer's configs, retained (on each connect: the broker may have lost them)."""
        with self._lock:
            self._last = self._clock()
        for printer in self.printers:
            self._publish_printer(printer)

    def _publish_printer(self, printer: str) -> None:
        api = printer not in self.without_api
        for topic, config in discovery_configs(self.cfg, printer, api).items():
            body = b"" if config is None else json.dumps(config, separators=(",", ":")).encode()
            self._publish(topic, body)

    def on_status(self, payload: bytes) -> bool:
        """Home Assistant's birth message: re-publish unless that was done moments ago."""
        if payload != b"online":
            return False
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last < self.min_interval_s:
                return False
        self.publish_all()
        return True
