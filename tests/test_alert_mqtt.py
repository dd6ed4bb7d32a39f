"""MQTT topics, payloads, Home Assistant discovery and command topics against a real mosquitto."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

import cv2
import jinja2.sandbox
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.plugins.mosquitto import free_port
from tests.plugins.receivers import wait_for
from watchdog.comms.command_queue import PrinterCommands
from watchdog.comms.commands import MAX_COMMAND_BYTES, CommandError, parse_command
from watchdog.control import Command, CommandResult, Verb
from watchdog.incidents import VERDICTS

pytestmark = pytest.mark.servers

PRINTER = "ender3"
ENTITIES = 12  # per printer: problem, state, score, last command, heatmap, switch, 6 buttons


def jpeg(h: int = 60, w: int = 80) -> bytes:
    img = np.zeros((h, w, 3), np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 3, (0, 0, 255), -1)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def decode(payload: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "payload does not decode as a JPEG"
    return img


class Recorder:
    """A dispatcher that records the commands it is given (the daemon's side is not under test)."""

    def __init__(self, fail: bool = False) -> None:
        self.commands: list[Command] = []
        self.history: list[Command] = []  # never cleared
        self.fail = fail

    def dispatch(self, command: Command) -> CommandResult:
        self.commands.append(command)
        self.history.append(command)
        if self.fail:
            raise RuntimeError("handler bug")
        return CommandResult(True, f"did {command.verb.value}")


class Stuck(Recorder):
    """A dispatcher whose printers' APIs hang until ``release`` is set."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release
        self.under_way = threading.Event()  # a command is being carried out

    def dispatch(self, command: Command) -> CommandResult:
        self.under_way.set()
        self.release.wait(60)
        return super().dispatch(command)


ALERT = {
    "time": "2026-01-01T00:00:00+00:00",
    "printer": PRINTER,
    "score": np.float32(0.91),
    "threshold": 0.5,
    "consecutive": 3,
    "action": "pause",
    "action_result": {"action": "pause", "outcome": "done", "detail": "paused", "attempts": 1},
}


def test_state_score_heatmap_and_alert_topics(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    p = unique_prefix
    with mosquitto.subscriber(f"{p}/#") as sub:
        notifier = notifier_factory(mosquitto, p, storage_dir=tmp_path)
        assert sub.wait_for(f"{p}/available/+", lambda m: m.text == "online").text == "online"
        assert notifier.connected

        notifier.publish_state(
            PRINTER, {"state": "watching", "score": 0.1, "threshold": 0.5, "consecutive": 0}
        )
        state = sub.wait_for(f"{p}/{PRINTER}/state").json()
        assert state == {
            "state": "watching",
            "score": 0.1,
            "threshold": 0.5,
            "consecutive": 0,
            "printer": PRINTER,
        }
        assert sub.wait_for(f"{p}/{PRINTER}/enabled").text == "ON"

        notifier.publish_score(PRINTER, np.float32(0.25))
        assert float(sub.wait_for(f"{p}/{PRINTER}/score").text) == pytest.approx(0.25)

        notifier.publish_heatmap(PRINTER, jpeg())
        assert decode(sub.wait_for(f"{p}/{PRINTER}/heatmap").payload).shape == (60, 80, 3)

        now = datetime.now(UTC).isoformat(timespec="seconds")
        incident = notifier.raise_alert(PRINTER, dict(ALERT, time=now), jpeg(), jpeg(120, 160))
        msg = sub.wait_for(f"{p}/{PRINTER}/alert")
        body = msg.json()
        assert set(body) >= {
            "time",
            "printer",
            "score",
            "threshold",
            "consecutive",
            "action",
            "action_result",
            "incident",
        }
        assert body["incident"] == incident and body["printer"] == PRINTER
        assert "boot" not in body  # the file's own (its time's boot mark): not Home Assistant's
        assert body["score"] == pytest.approx(0.91) and body["action_result"]["outcome"] == "done"
        assert msg.qos == 1 and not msg.retain
        # the alert's heatmap replaces the retained one
        sub.wait_for(f"{p}/{PRINTER}/heatmap", lambda m: decode(m.payload).shape == (120, 160, 3))
        assert notifier.flush(10)
        folder = tmp_path / "incidents" / PRINTER / incident
        assert json.loads((folder / "alert.json").read_text())["incident"] == incident
        assert not (folder / "pending").exists(), (
            "PUBACK received but the incident is still pending"
        )

    # retained: a subscriber arriving later (Home Assistant restarted) gets the last state,
    # score and heatmap at once (the score was unknown until the next frame judged)
    topics = (f"{p}/{PRINTER}/state", f"{p}/{PRINTER}/heatmap", f"{p}/{PRINTER}/score")
    with mosquitto.subscriber(*topics) as late:
        assert late.wait_for(f"{p}/{PRINTER}/state").retain
        score = late.wait_for(f"{p}/{PRINTER}/score")
        assert score.retain and float(score.text) == pytest.approx(0.25)
        assert decode(late.wait_for(f"{p}/{PRINTER}/heatmap").payload).shape == (120, 160, 3)

    notifier.stop()
    with mosquitto.subscriber(f"{p}/available/+") as after:
        assert after.wait_for(f"{p}/available/+").text == "offline"


def test_disabled_state_turns_the_switch_off(mosquitto, unique_prefix, notifier_factory) -> None:
    p = unique_prefix
    with mosquitto.subscriber(f"{p}/{PRINTER}/enabled") as sub:
        notifier = notifier_factory(mosquitto, p)
        notifier.publish_state(PRINTER, {"state": "disabled"})
        assert sub.wait_for(f"{p}/{PRINTER}/enabled").text == "OFF"
        notifier.publish_state(PRINTER, {"state": "idle", "enabled": True})
        assert sub.wait_for(f"{p}/{PRINTER}/enabled", lambda m: m.text == "ON")
        # a print skipped: off, so that switching it on in Home Assistant watches it again
        notifier.publish_state(
            PRINTER, {"state": "skipping_print", "enabled": True, "skipping_print": True}
        )
        assert sub.wait_for(f"{p}/{PRINTER}/enabled", lambda m: m.text == "OFF")


def test_home_assistant_discovery_and_republish_on_ha_online(
    mosquitto, unique_prefix, notifier_factory
) -> None:
    p = unique_prefix
    dp = f"{p}_ha"
    with mosquitto.subscriber(f"{dp}/#") as sub:
        notifier = notifier_factory(mosquitto, p, printers=("ender3", "voron"))
        configs = sub.wait_count(f"{dp}/+/+/+/config", 2 * ENTITIES)
        by_topic = {m.topic: m.json() for m in configs}
        assert len(by_topic) == 2 * ENTITIES
        unique_ids = [c["unique_id"] for c in by_topic.values()]
        assert len(set(unique_ids)) == 2 * ENTITIES
        for topic, c in by_topic.items():
            component, node, object_id = topic.split("/")[1:4]
            assert c["availability_topic"] == notifier.mqtt.transport.availability_topic
            assert c["device"]["identifiers"] == [node] and c["device"]["name"]
            assert c["unique_id"] == f"{node}_{object_id}"

        def entity(component: str, printer: str, object_id: str | None = None) -> dict:
            [c] = [
                c
                for t, c in by_topic.items()
                if t.split("/")[1] == component
                and t.split("/")[2].endswith(printer)
                and (object_id is None or t.split("/")[3] == object_id)
            ]
            return c

        binary = entity("binary_sensor", "ender3")
        assert binary["device_class"] == "problem" and binary["state_topic"] == f"{p}/ender3/state"
        sensor = entity("sensor", "ender3", "score")
        assert (
            sensor["state_class"] == "measurement" and sensor["state_topic"] == f"{p}/ender3/score"
        )
        # Home Assistant drops a "state" key from JSON attributes: the watcher's state is a
        # sensor of its own, every state it can take among its options
        state = entity("sensor", "ender3", "state")
        assert state["state_topic"] == f"{p}/ender3/state" and state["device_class"] == "enum"
        assert {"watching", "calibrating", "camera_offline", "disabled"} <= set(state["options"])
        # what became of the last command: its words as the state, rendered as Home
        # Assistant renders it (Jinja), cut to the 255 characters a state may hold
        answer = entity("sensor", "ender3", "answer")
        assert answer["state_topic"] == answer["json_attributes_topic"] == f"{p}/ender3/answer"
        said = {
            "command": "resume",
            "incident": None,
            "ok": False,
            "under_way": False,
            "unknown": False,
            "time": "t",
            "text": "R" * 300,
        }
        env = jinja2.sandbox.SandboxedEnvironment()
        assert env.from_string(answer["value_template"]).render(value_json=said) == "R" * 255
        attributes = env.from_string(answer["json_attributes_template"]).render(value_json=said)
        assert json.loads(attributes) == {k: v for k, v in said.items() if k != "text"}
        image = entity("image", "voron")
        assert (
            image["image_topic"] == f"{p}/voron/heatmap" and image["content_type"] == "image/jpeg"
        )
        switch = entity("switch", "ender3")
        assert switch["command_topic"] == f"{p}/ender3/enabled/set"
        assert switch["state_topic"] == f"{p}/ender3/enabled"
        assert (switch["payload_on"], switch["payload_off"]) == ("ON", "OFF")
        # every button's press is a command the daemon accepts, with the verb its name promises
        expected = {
            "not_failure": Command("voron", Verb.NOT_A_FAILURE, "latest"),
            "confirm_failure": Command("voron", Verb.CONFIRM_FAILURE, "latest"),
            "pause": Command("voron", Verb.PAUSE),
            "resume": Command("voron", Verb.RESUME),
            "cancel": Command("voron", Verb.CANCEL),
            "skip_print": Command("voron", Verb.SKIP_PRINT),
        }
        for object_id, command in expected.items():
            button = entity("button", "voron", object_id)
            assert button["command_topic"].startswith(f"{p}/voron/")
            assert (
                parse_command(
                    p, ["voron"], button["command_topic"], button["payload_press"].encode()
                )
                == command
            )

        with mosquitto.subscriber(f"{dp}/#") as late:  # retained: HA finds them when it starts
            assert {
                m.topic for m in late.wait_count(f"{dp}/+/+/+/config", 2 * ENTITIES) if m.retain
            } == set(by_topic)


def test_printers_added_or_removed_follow_in_home_assistant(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """A printer added by a reload (a saved setting, SIGHUP) gets its entities and its
    commands are taken; one removed, by a reload or while the daemon was stopped, is taken off
    the broker (its device stayed in Home Assistant, shown available, its failure sensor on)."""
    p, dp = unique_prefix, f"{unique_prefix}_ha"
    storage = tmp_path / "state"

    def retained(pattern: str) -> dict[str, bytes]:
        """The retained messages the broker holds now (a new subscriber is sent them)."""
        with mosquitto.subscriber(pattern, f"{p}/unrelated") as late:
            mosquitto.publish(f"{p}/unrelated", "tick")  # a round trip: retained ones came first
            late.wait_for(f"{p}/unrelated")
            return {m.topic: m.payload for m in late.received(pattern) if m.retain and m.payload}

    first = notifier_factory(mosquitto, p, storage_dir=storage, printers=("ender3", "voron"))
    first.publish_state("voron", {"state": "paused", "failure": True})
    with mosquitto.subscriber(f"{dp}/#") as sub:
        sub.wait_count(f"{dp}/+/+/+/config", 2 * ENTITIES)
    wait_for("voron's state", lambda: f"{p}/voron/state" in retained(f"{p}/+/state"))
    first.stop()

    recorder = Recorder()
    second = notifier_factory(
        mosquitto, p, storage_dir=storage, printers=("ender3",), dispatcher=recorder
    )
    wait_for_commands(mosquitto, p, recorder)
    assert not any("voron" in t for t in retained(f"{dp}/#") | retained(f"{p}/#"))
    assert len(retained(f"{dp}/+/+/+/config")) == ENTITIES  # ender3's stay

    second.set_printers(["ender3", "v2"])  # a reload added v2
    wait_for("v2's entities", lambda: len(retained(f"{dp}/+/+/+/config")) == 2 * ENTITIES)
    mosquitto.publish(f"{p}/v2/enabled/set", "OFF")
    wait_for("v2's command", lambda: Command("v2", Verb.DISABLE) in recorder.commands)
    second.publish_state("v2", {"state": "watching"})
    with mosquitto.subscriber(f"{dp}/#", f"{p}/v2/#") as removal:
        second.set_printers(["ender3"])  # and removed it
        removal.wait_for(f"{p}/v2/state", lambda m: m.payload == b"")
        # its entities go before their state is emptied: an entity left reads an empty state
        # as its value (Home Assistant logged a template error for each)
        emptied = [m.topic for m in removal.received("#") if m.payload == b"" and "v2" in m.topic]
        configs = [i for i, t in enumerate(emptied) if t.endswith("/config")]
        assert len(configs) == ENTITIES and configs == list(range(ENTITIES)), emptied
    second.publish_state("v2", {"state": "watching"})  # its watcher's last step, after that
    second.publish_state("ender3", {"state": "marker"})  # sent after it, on the same session
    wait_for(
        "the marker", lambda: b"marker" in retained(f"{p}/+/state").get(f"{p}/ender3/state", b"")
    )
    assert not any("v2" in t for t in retained(f"{p}/#"))
    assert len(retained(f"{dp}/+/+/+/config")) == ENTITIES


def _retained_now(mosquitto, pattern: str, marker: str) -> dict[str, bytes]:
    """The retained messages the broker holds now on ``pattern`` (a new subscriber's view)."""
    with mosquitto.subscriber(pattern, marker) as late:
        mosquitto.publish(marker, "tick")  # a round trip: retained ones came first
        late.wait_for(marker)
        return {m.topic: m.payload for m in late.received(pattern) if m.retain and m.payload}


def test_old_entities_leave_before_new_ones_come_for_a_new_prefix_or_a_name_in_new_case(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """Home Assistant names an entity after its device ("Print watchdog ender3"): entities
    announced under a new topic prefix, or for a printer renamed by case, while the old ones
    were still there found those entity ids taken and got '_2' ones for good (the owner's
    automations and dashboards on the old ids broken). The old ones now go first, at a
    restart and at a reload alike."""
    p, dp = unique_prefix, f"{unique_prefix}_ha"
    storage = tmp_path / "storage"
    ha = {"enabled": True, "discovery_prefix": dp}

    def live_configs(sub) -> list[tuple[str, bool]]:
        """(topic, announced or removed) as sent since the subscription, in order."""
        return [(m.topic, bool(m.payload)) for m in sub.received(f"{dp}/#") if not m.retain]

    def assert_removed_first(sent: list[tuple[str, bool]]) -> None:
        removed = [i for i, (_, announced) in enumerate(sent) if not announced]
        announced = [i for i, (_, announced) in enumerate(sent) if announced]
        assert len(removed) == ENTITIES and len(announced) == ENTITIES, sent
        assert max(removed) < min(announced), sent

    first = notifier_factory(mosquitto, p, storage_dir=storage, homeassistant=ha)
    with mosquitto.subscriber(f"{dp}/#") as sub:
        sub.wait_count(f"{dp}/+/+/+/config", ENTITIES)
    first.stop()
    with mosquitto.subscriber(f"{dp}/#") as sub:  # restarted with a new topic prefix
        second = notifier_factory(mosquitto, f"{p}new", storage_dir=storage, homeassistant=ha)
        wait_for("old removed, new announced", lambda: len(live_configs(sub)) >= 2 * ENTITIES)
        assert_removed_first(live_configs(sub))
    with mosquitto.subscriber(f"{dp}/#") as sub:
        second.set_printers(["Ender3"])  # a reload: the same printer, its name in new case
        wait_for("old removed, new announced", lambda: len(live_configs(sub)) >= 2 * ENTITIES)
        assert_removed_first(live_configs(sub))
    configs = _retained_now(mosquitto, f"{dp}/#", f"{p}/unrelated")
    assert len(configs) == ENTITIES and all("_Ender3/" in t for t in configs), configs


def test_a_printer_renamed_and_renamed_back_at_once_leaves_no_entities_behind(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """Renamed (a reload), then renamed back moments later, while the first rename's old
    entities were still being taken off: the first rename's new entities came after, for a
    printer no longer configured, and stayed in Home Assistant for good (shown available)."""
    p, dp = unique_prefix, f"{unique_prefix}_ha"
    notifier = notifier_factory(mosquitto, p, storage_dir=tmp_path / "storage")
    wait_for("the entities", lambda: len(_retained_now(mosquitto, f"{dp}/#", f"{p}/u")) == ENTITIES)
    for topic in _retained_now(mosquitto, f"{dp}/#", f"{p}/u"):  # its device deleted in Home
        mosquitto.publish(topic, b"", retain=True)  # Assistant: its configs emptied
    notifier.set_printers(["Ender3"])  # nothing on the broker to tell whose: a wait
    time.sleep(0.3)
    notifier.set_printers([PRINTER])  # the typo fixed
    wait_for(
        "ender3's entities again",
        lambda: len(_retained_now(mosquitto, f"{dp}/#", f"{p}/u")) >= ENTITIES,
        timeout=15,
    )
    time.sleep(5)  # past both waits for removed printers' configs
    configs = _retained_now(mosquitto, f"{dp}/#", f"{p}/u")
    assert len(configs) == ENTITIES and not any("_Ender3/" in t for t in configs), configs


def test_a_new_discovery_prefix_keeps_the_printers_live_values_on_the_broker(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """Moving the entities to a new discovery prefix took the old ones off, and with them the
    printer's Watching switch value, heatmap and last answer, still in use: nothing sent them
    again, so a restarted Home Assistant showed Watching unknown until it was switched."""
    p = unique_prefix
    storage = tmp_path / "storage"
    first = notifier_factory(mosquitto, p, storage_dir=storage)
    first.publish_state(PRINTER, {"state": "watching"})
    first.publish_heatmap(PRINTER, jpeg())
    wait_for(
        "the values",
        lambda: len(_retained_now(mosquitto, f"{p}/{PRINTER}/#", f"{p}/unrelated")) == 3,
    )
    first.stop()
    moved = {"enabled": True, "discovery_prefix": f"{p}_ha2"}
    notifier_factory(mosquitto, p, storage_dir=storage, homeassistant=moved)
    wait_for(
        "the old entities removed",
        lambda: not _retained_now(mosquitto, f"{p}_ha/#", f"{p}/unrelated"),
    )
    kept = _retained_now(mosquitto, f"{p}/{PRINTER}/#", f"{p}/unrelated")
    assert kept.get(f"{p}/{PRINTER}/enabled") == b"ON", kept
    assert f"{p}/{PRINTER}/heatmap" in kept and f"{p}/{PRINTER}/state" in kept, kept


def test_a_printer_without_an_api_gets_no_printer_buttons_in_home_assistant(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """Pause, Resume and Cancel on a printer with no printer API could only answer
    "skipped": its device has none; a reload that gives it an API adds them, one that takes
    it away removes them again (an empty retained config removes the entity)."""
    p, dp = unique_prefix, f"{unique_prefix}_ha"

    def buttons(printer: str) -> set[str]:
        with mosquitto.subscriber(f"{dp}/button/#", f"{p}/unrelated") as late:
            mosquitto.publish(f"{p}/unrelated", "tick")  # a round trip: retained ones came first
            late.wait_for(f"{p}/unrelated")
            return {
                m.topic.split("/")[-2]
                for m in late.received(f"{dp}/button/#")
                if m.retain and m.payload and f"_{printer}/" in m.topic
            }

    notifier = notifier_factory(mosquitto, p, printers=("ender3", "mk3"), without_api=("mk3",))
    wait_for("the entities", lambda: buttons("ender3") and buttons("mk3"))
    everything = {"not_failure", "confirm_failure", "pause", "resume", "cancel", "skip_print"}
    assert buttons("ender3") == everything
    assert buttons("mk3") == {"not_failure", "confirm_failure"}

    notifier.set_printers(["ender3", "mk3"], without_api=())  # a reload gave mk3 its API
    wait_for("mk3's printer buttons", lambda: buttons("mk3") == everything)
    notifier.set_printers(["ender3", "mk3"], without_api=("mk3",))  # and took it away
    wait_for(
        "mk3's printer buttons gone",
        lambda: buttons("mk3") == everything - {"pause", "resume", "cancel", "skip_print"},
    )
    assert buttons("ender3") == everything


def test_a_printer_added_by_a_reload_stays_out_of_home_assistant_when_discovery_is_off(
    mosquitto, unique_prefix, notifier_factory
) -> None:
    p, dp = unique_prefix, f"{unique_prefix}_ha"
    recorder = Recorder()
    notifier = notifier_factory(
        mosquitto,
        p,
        dispatcher=recorder,
        homeassistant={"enabled": False, "discovery_prefix": dp},
    )
    wait_for_commands(mosquitto, p, recorder)
    with mosquitto.subscriber(f"{dp}/#", f"{p}/v2/state") as sub:
        notifier.set_printers([PRINTER, "v2"])
        notifier.publish_state("v2", {"state": "idle"})  # after anything set_printers sent
        sub.wait_for(f"{p}/v2/state")
        assert sub.received(f"{dp}/#") == []


def test_discovery_is_republished_on_ha_online_but_not_flooded(
    mosquitto, unique_prefix, notifier_factory
) -> None:
    p = unique_prefix
    dp = f"{p}_ha"
    with mosquitto.subscriber(f"{dp}/#") as sub:
        recorder = Recorder()
        notifier = notifier_factory(mosquitto, p, dispatcher=recorder)
        sub.wait_count(f"{dp}/+/+/+/config", ENTITIES)
        wait_for_commands(mosquitto, p, recorder)
        notifier.mqtt.discovery._last -= 3600  # the connect's publication was long ago
        mosquitto.publish(f"{dp}/status", "offline")
        for _ in range(30):  # Home Assistant restarting in a loop, or a hostile publisher
            mosquitto.publish(f"{dp}/status", "online")
        sub.wait_count(f"{dp}/+/+/+/config", 2 * ENTITIES)
        wait_for_commands(mosquitto, p, recorder)  # the daemon has read everything sent before
        configs = [m for m in sub.received(f"{dp}/+/+/+/config") if m.topic.startswith(f"{dp}/")]
        assert len(configs) == 2 * ENTITIES, (
            "30 'online' messages within a minute re-publish discovery once"
        )
        # Home Assistant's birth topic stays homeassistant/status when only its discovery
        # prefix is changed: that "online" was never heard
        notifier.mqtt.discovery._last -= 3600
        mosquitto.publish("homeassistant/status", "online")
        sub.wait_count(f"{dp}/+/+/+/config", 3 * ENTITIES)


def test_last_will_says_offline_when_the_daemon_dies(mosquitto, unique_prefix, tmp_path) -> None:
    p = unique_prefix
    script = textwrap.dedent(f"""
        import time
        from watchdog.comms.notifier import Notifier
        from watchdog.config import MqttConfig, StorageConfig
        n = Notifier(MqttConfig(host="127.0.0.1", port={mosquitto.port}, topic_prefix="{p}", keepalive_s=5),
                     StorageConfig(dir="{tmp_path}"), ["ender3"])
        n.start()
        time.sleep(60)
    """)
    with mosquitto.subscriber(f"{p}/available/+") as sub:
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parent.parent)
        try:
            sub.wait_for(f"{p}/available/+", lambda m: m.text == "online", timeout=30)
        finally:
            proc.kill()
            proc.wait(10)
        sub.wait_for(f"{p}/available/+", lambda m: m.text == "offline")


def test_mqtt_disabled_still_saves_incidents(notifier_factory, tmp_path) -> None:
    notifier = notifier_factory(None, "unused", storage_dir=tmp_path)
    notifier.publish_state(PRINTER, {"state": "watching"})
    notifier.publish_score(PRINTER, 0.3)
    notifier.publish_heatmap(PRINTER, jpeg())
    incident = notifier.raise_alert(PRINTER, dict(ALERT), jpeg(), jpeg())
    folder = tmp_path / "incidents" / PRINTER / incident
    assert decode((folder / "heatmap.jpg").read_bytes()).shape == (60, 80, 3)
    assert json.loads((folder / "alert.json").read_text())["incident"] == incident
    assert not (folder / "pending").exists(), "nothing to deliver without a broker"
    assert not notifier.connected and notifier.undelivered() == 0


# --------------------------------------------------------------------------- command topics


def wait_for_commands(broker, prefix: str, recorder: Recorder) -> None:
    """The notifier subscribes right after connecting: repeat a harmless command until seen,
    then wait for a last marker (``pause``: one subscriber gets messages in the order the broker
    took them), so nothing sent before is still on its way; the record starts empty after this.
    Each try waits a moment for the command to be carried out: sent as fast as the broker
    takes them, they filled the printer's queue of waiting commands on a loaded machine, and
    the marker was dropped."""
    for _ in range(100):
        broker.publish(f"{prefix}/{PRINTER}/enabled/set", "ON")
        deadline = time.monotonic() + 0.2
        while not recorder.commands and time.monotonic() < deadline:
            time.sleep(0.01)
        if recorder.commands:
            break
    else:
        raise AssertionError("the notifier never received a command")
    broker.publish(f"{prefix}/{PRINTER}/command", "pause")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if recorder.commands and recorder.commands[-1].verb is Verb.PAUSE:
            recorder.commands.clear()
            return
        broker.publish(f"{prefix}/unrelated", "tick")
        time.sleep(0.01)
    raise AssertionError(f"the marker command never arrived: {recorder.commands}")


def test_commands_valid_ones_reach_the_daemon_junk_is_ignored(
    mosquitto, unique_prefix, notifier_factory, tmp_path, caplog
) -> None:
    p = unique_prefix
    recorder = Recorder()
    caplog.set_level(logging.WARNING, "watchdog.comms.mqtt")
    notifier = notifier_factory(mosquitto, p, dispatcher=recorder)
    wait_for_commands(mosquitto, p, recorder)
    assert notifier.connected

    junk = [
        (f"{p}/{PRINTER}/enabled/set", b"on; rm -rf /"),
        (f"{p}/{PRINTER}/enabled/set", b"1"),
        (f"{p}/nosuchprinter/enabled/set", b"OFF"),
        (f"{p}/{PRINTER}/feedback", b"not json"),
        (f"{p}/{PRINTER}/feedback", b'{"incident": "x", "verdict": "not_failure", "exec": "id"}'),
        (f"{p}/{PRINTER}/feedback", b'{"incident": "../../etc/passwd", "verdict": "not_failure"}'),
        (f"{p}/{PRINTER}/feedback", b'{"incident": "x", "verdict": "maybe"}'),
        (f"{p}/{PRINTER}/feedback", b'["incident", "verdict"]'),
        (
            f"{p}/{PRINTER}/feedback",
            b'{"incident": "x", "verdict": "failure", "pad": "' + b"A" * 5000 + b'"}',
        ),
        (f"{p}/{PRINTER}/feedback", bytes(range(256))),
        (f"{p}/{PRINTER}/command", b"PAUSE"),
        (f"{p}/{PRINTER}/command", b"shutdown"),
    ]
    for topic, payload in junk:
        mosquitto.publish(topic, payload)
    mosquitto.publish(
        f"{p}/{PRINTER}/feedback",
        json.dumps({"incident": "20260101T000000000Z-abc123", "verdict": "not_failure"}),
    )
    mosquitto.publish(f"{p}/{PRINTER}/command", "resume")
    mosquitto.publish(f"{p}/{PRINTER}/enabled/set", "OFF")
    mosquitto.publish(
        f"{p}/{PRINTER}/command",
        json.dumps({"command": "cancel", "incident": "20260101T000000000Z-abc123"}),
    )
    for _ in range(100):
        if len(recorder.commands) >= 4:
            break
        mosquitto.publish(f"{p}/unrelated", "tick")  # a round trip, not a sleep
    assert recorder.commands == [
        Command(PRINTER, Verb.NOT_A_FAILURE, "20260101T000000000Z-abc123"),
        Command(PRINTER, Verb.RESUME),
        Command(PRINTER, Verb.DISABLE),
        Command(PRINTER, Verb.CANCEL, "20260101T000000000Z-abc123"),  # bound to its alert
    ]
    ignored = [r.getMessage() for r in caplog.records if "ignored MQTT message" in r.getMessage()]
    assert ignored, "junk commands must be logged"
    assert len(ignored) <= 4, "junk is logged at most once a minute per kind"
    assert notifier.connected


def test_each_command_is_answered_on_the_answer_topic_in_the_owners_words(
    mosquitto, unique_prefix, notifier_factory
) -> None:
    """A Home Assistant button's press gets no reply of its own: the answer topic (the *Last
    command* sensor) says what became of it, a command still under way again when it ends."""
    p = unique_prefix
    ended: Future[CommandResult] = Future()

    class Printer(Recorder):
        def dispatch(self, command: Command) -> CommandResult:
            super().dispatch(command)
            if command.verb is Verb.RESUME:
                return CommandResult(False, "refused: the print is not paused")
            if command.verb is Verb.CANCEL:
                ended.set_running_or_notify_cancel()
                return CommandResult(
                    False, "still carrying out cancel", under_way=True, later=ended
                )
            return CommandResult(True, f"did {command.verb.value}")

    recorder = Printer()
    notifier_factory(mosquitto, p, dispatcher=recorder)
    wait_for_commands(mosquitto, p, recorder)
    with mosquitto.subscriber(f"{p}/{PRINTER}/answer") as sub:
        mosquitto.publish(f"{p}/{PRINTER}/command", "resume")
        refused = sub.wait_for(f"{p}/{PRINTER}/answer", lambda m: m.json()["command"] == "resume")
        body = refused.json()
        assert (
            body["ok"] is False and body["text"] == "Resume print: refused: the print is not paused"
        )
        assert datetime.fromisoformat(body["time"]).tzinfo is not None

        mosquitto.publish(f"{p}/{PRINTER}/command", "cancel")
        first = sub.wait_for(f"{p}/{PRINTER}/answer", lambda m: m.json()["command"] == "cancel")
        assert first.json()["under_way"] is True
        ended.set_result(CommandResult(False, "the printer refused the cancel"))
        last = sub.wait_for(
            f"{p}/{PRINTER}/answer", lambda m: m.json()["text"].endswith("refused the cancel")
        ).json()
        assert last["command"] == "cancel" and last["ok"] is False and not last["under_way"]
    # retained: Home Assistant started later still shows the last answer
    with mosquitto.subscriber(f"{p}/{PRINTER}/answer") as late:
        assert late.wait_for(f"{p}/{PRINTER}/answer").json()["text"] == (
            "Cancel print: the printer refused the cancel"
        )


def test_a_command_that_ends_as_the_watchdog_stops_is_told_before_it_disconnects(
    mosquitto, unique_prefix, notifier_factory
) -> None:
    """A pause under way whose end came as the watchdog stopped (its watcher gone: "it may
    have happened"), while the command's own thread was still telling its first answer (the
    page's record, slow on the disk): that thread told the end after the broker connection had
    closed, and Home Assistant's Last command stayed "under way" for good."""
    p = unique_prefix
    ended: Future[CommandResult] = Future()

    class PauseUnderWay(Recorder):
        under_way = False  # not for the commands that wait for the subscription

        def dispatch(self, command: Command) -> CommandResult:
            # read before the command is recorded: the test sets it once it sees the marker
            # recorded, and the marker must not be taken for the pause under way
            under_way = self.under_way
            done = super().dispatch(command)
            if not under_way:
                return done
            return CommandResult(False, "not shown by the printer yet", under_way=True, later=ended)

    recorder = PauseUnderWay()
    notifier = notifier_factory(mosquitto, p, dispatcher=recorder)
    wait_for_commands(mosquitto, p, recorder)
    recorder.under_way = True
    on_disk, release = threading.Event(), threading.Event()

    def slow_disk(command: Command, result: CommandResult) -> None:
        if not result.under_way:  # the marker's answer, told after the recorder saw it
            return
        on_disk.set()
        release.wait(10)

    notifier.mqtt._answered = slow_disk  # the page's record of each answer
    mosquitto.publish(f"{p}/{PRINTER}/command", "pause")
    assert on_disk.wait(20)
    ended.set_result(
        CommandResult(False, "the watchdog stopped before the printer showed it", unknown=True)
    )
    stopping = threading.Thread(target=notifier.stop)
    stopping.start()
    stopping.join(1.0)  # the stop goes on meanwhile (to its end, before)
    release.set()
    stopping.join(15)
    assert not stopping.is_alive()
    with mosquitto.subscriber(f"{p}/{PRINTER}/answer") as late:
        kept = late.wait_for(f"{p}/{PRINTER}/answer").json()
    assert not kept["under_way"] and kept["unknown"], kept
    assert kept["text"] == "Pause print: the watchdog stopped before the printer showed it", kept


def test_a_command_that_comes_while_the_watchdog_disconnects_is_answered(
    mosquitto, unique_prefix, notifier_factory
) -> None:
    """A command that came while the stop waited for an alert's acknowledgement (the broker
    still connected) was logged as taken, never carried out, never answered: Home
    Assistant's Last command kept the one before."""
    p = unique_prefix
    recorder = Recorder()
    notifier = notifier_factory(mosquitto, p, dispatcher=recorder)
    wait_for_commands(mosquitto, p, recorder)
    mqtt = notifier.mqtt
    acknowledged = mqtt.flush

    answers = mosquitto.subscriber(f"{p}/{PRINTER}/answer")

    def an_alert_still_unacknowledged(timeout: float) -> bool:
        mosquitto.publish(f"{p}/{PRINTER}/command", "cancel")
        try:  # the stop waits meanwhile (a second's sleep here was not always enough)
            answers.wait_for(f"{p}/{PRINTER}/answer", lambda m: m.json()["command"] == "cancel")
        except AssertionError:
            pass  # never answered: told below
        return acknowledged(timeout)

    mqtt.flush = an_alert_still_unacknowledged  # type: ignore[method-assign]
    notifier.stop()
    answers.close()
    with mosquitto.subscriber(f"{p}/{PRINTER}/answer") as late:
        kept = late.wait_for(f"{p}/{PRINTER}/answer").json()
    assert kept["command"] == "cancel" and not kept["ok"], kept
    assert "the watchdog is stopping" in kept["text"], kept
    assert not [c for c in recorder.commands if c.verb is Verb.CANCEL]


def test_a_failure_to_tell_an_answer_does_not_stop_the_printers_next_commands() -> None:
    """Publishing can fail (paho's socket closed by a reconnect at that moment): the printer's
    command thread must go on, or every later button of that printer waits for ever."""
    done: list[Verb] = []

    def dispatch(command: Command) -> CommandResult:
        done.append(command.verb)
        return CommandResult(True, "ok")

    def answered(command: Command, result: CommandResult) -> None:
        if command.verb is Verb.PAUSE:
            raise OSError("Bad file descriptor")

    commands = PrinterCommands(dispatch, answered)
    assert commands.put(Command(PRINTER, Verb.PAUSE))
    wait_for("the pause", lambda: done == [Verb.PAUSE])
    assert commands.put(Command(PRINTER, Verb.RESUME))
    wait_for("the resume after it", lambda: done == [Verb.PAUSE, Verb.RESUME])
    commands.close(5)


def test_a_restart_shows_the_latest_alerts_heatmap_again_on_a_broker_that_lost_it(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """mosquitto without persistence forgets retained messages when it restarts: Home
    Assistant's Heatmap stayed empty until the next anomalous frame, days away when idle."""
    p = unique_prefix
    first = notifier_factory(mosquitto, p, storage_dir=tmp_path)
    first.raise_alert(PRINTER, dict(ALERT), jpeg(), jpeg(120, 160))
    assert first.flush(10)
    first.stop()
    mosquitto.publish(f"{p}/{PRINTER}/heatmap", b"", retain=True)  # the broker lost it
    with mosquitto.subscriber(f"{p}/{PRINTER}/heatmap") as sub:
        notifier_factory(mosquitto, p, storage_dir=tmp_path)
        shown = sub.wait_for(f"{p}/{PRINTER}/heatmap", lambda m: bool(m.payload))
        assert decode(shown.payload).shape == (120, 160, 3)


def test_a_restart_leaves_a_newer_heatmap_than_the_alerts_on_a_broker_that_kept_it(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """An anomalous frame after the alert published a newer heatmap, which a broker with
    persistence keeps: a restart must not hand it the older alert's picture instead."""
    p = unique_prefix
    first = notifier_factory(mosquitto, p, storage_dir=tmp_path)
    first.raise_alert(PRINTER, dict(ALERT), jpeg(), jpeg(120, 160))
    assert first.flush(10)
    with mosquitto.subscriber(f"{p}/{PRINTER}/heatmap") as sub:
        first.publish_heatmap(PRINTER, jpeg(240, 320))  # a later anomalous frame's
        sub.wait_for(f"{p}/{PRINTER}/heatmap", lambda m: decode(m.payload).shape == (240, 320, 3))
    first.stop()
    with mosquitto.subscriber(f"{p}/{PRINTER}/heatmap") as sub:
        sub.wait_for(f"{p}/{PRINTER}/heatmap", lambda m: m.retain)  # what the broker keeps
        second = notifier_factory(mosquitto, p, storage_dir=tmp_path)
        sent = sub.wait_for(f"{p}/{PRINTER}/heatmap", lambda m: not m.retain, timeout=10)
        assert decode(sent.payload).shape == (240, 320, 3)  # not the alert's 120x160
    second.stop()
    with mosquitto.subscriber(f"{p}/{PRINTER}/heatmap") as late:
        kept = late.wait_for(f"{p}/{PRINTER}/heatmap", lambda m: bool(m.payload))
        assert decode(kept.payload).shape == (240, 320, 3)


def _under_way_answer() -> dict:
    """An answer as the broker keeps it while the command is under way."""
    return {
        "command": "pause",
        "incident": None,
        "ok": False,
        "under_way": True,
        "unknown": False,
        "text": "Pause print: accepted; not shown by the printer yet",
        "time": "2026-12-06T01:00:00+00:00",
    }


def test_an_answer_given_while_the_broker_was_away_reaches_home_assistant_at_the_next_start(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """An owner's Pause answered "under way", then the broker unreachable when its end came
    (the daemon stopping, or the printer not pausing): the broker kept "under way", and Home
    Assistant's Last command said so for good. The end is sent at the next start."""
    p = unique_prefix
    topic = f"{p}/{PRINTER}/answer"
    mosquitto.publish(topic, json.dumps(_under_way_answer()), retain=True)  # what it kept
    away = notifier_factory(mosquitto, p, storage_dir=tmp_path, port=free_port())
    pause = Command(PRINTER, Verb.PAUSE, None, source="mqtt")
    away.mqtt.publish_answer(pause, CommandResult(False, "the printer did NOT pause"))
    away.stop()
    with mosquitto.subscriber(topic) as sub:
        assert sub.wait_for(topic).json()["under_way"]  # still, on the broker
        notifier_factory(mosquitto, p, storage_dir=tmp_path)
        end = sub.wait_for(topic, lambda m: not m.json()["under_way"], timeout=10).json()
    assert end["text"] == "Pause print: the printer did NOT pause" and not end["ok"], end


def test_an_answer_cut_off_under_way_is_told_of_unknown_end_at_the_next_start(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """The daemon killed (a power cut) while an owner's Pause was under way: nothing ended
    it, and Home Assistant's Last command said "under way" for good."""
    p = unique_prefix
    topic = f"{p}/{PRINTER}/answer"
    first = notifier_factory(mosquitto, p, storage_dir=tmp_path)
    pause = Command(PRINTER, Verb.PAUSE, None, source="mqtt")
    still = Future[CommandResult]()
    with mosquitto.subscriber(topic) as sub:
        first.mqtt.publish_answer(
            pause, CommandResult(False, "accepted", under_way=True, later=still)
        )
        assert sub.wait_for(topic).json()["under_way"]
    first.stop()  # its end never told, as after a kill
    with mosquitto.subscriber(topic) as sub:
        notifier_factory(mosquitto, p, storage_dir=tmp_path)
        end = sub.wait_for(topic, lambda m: not m.json()["under_way"], timeout=10).json()
    assert end["unknown"] and not end["ok"], end
    assert end["text"] == (
        "Pause print: accepted; the watchdog stopped before its end was known: it may have happened"
    ), end


def test_a_damaged_answers_file_is_said_and_replaced(
    mosquitto, unique_prefix, notifier_factory, tmp_path, caplog
) -> None:
    """The kept answers damaged (a power cut on an old SD card, another program): the daemon
    says so, naming the file, and goes on; the next answer replaces it."""
    p = unique_prefix
    kept = tmp_path / "mqtt-answers.json"
    kept.write_text('{"ender3": {"text": ')
    with caplog.at_level(logging.WARNING):
        notifier = notifier_factory(mosquitto, p, storage_dir=tmp_path)
    assert f"last command answers in {kept} not read" in caplog.text
    topic = f"{p}/{PRINTER}/answer"
    with mosquitto.subscriber(topic) as sub:
        resume = Command(PRINTER, Verb.RESUME, None, source="mqtt")
        notifier.mqtt.publish_answer(resume, CommandResult(True, "resumed"))
        assert sub.wait_for(topic).json()["text"] == "Resume print: resumed"
    assert json.loads(kept.read_text())[PRINTER]["text"] == "Resume print: resumed"


def test_an_alert_saved_while_stopping_is_the_heatmap_shown_after_the_restart(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """A pause that outlasts the stop: its alert is saved (a draft, sent after the restart)
    while the heatmap last shown is an earlier frame's. The earlier one, kept at the stop,
    must not pass for the newer (its file's time is when it was shown, not the stop's)."""
    p = unique_prefix
    first = notifier_factory(mosquitto, p, storage_dir=tmp_path)
    first.publish_heatmap(PRINTER, jpeg(240, 320))  # an anomalous frame before the alert
    time.sleep(0.05)
    first.save_alert(PRINTER, dict(ALERT), jpeg(), jpeg(120, 160))  # not sent yet
    first.stop()
    with mosquitto.subscriber(f"{p}/{PRINTER}/heatmap") as sub:
        notifier_factory(mosquitto, p, storage_dir=tmp_path)
        sent = sub.wait_for(f"{p}/{PRINTER}/heatmap", lambda m: not m.retain, timeout=10)
        assert decode(sent.payload).shape == (120, 160, 3)


def _readme_automations(prefix: str) -> list[dict]:
    """The README's Home Assistant automations, on this test's topic prefix."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("Two automations send each alert to your phone", 1)[1]
    block = block.split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block.replace("printer_watchdog/", f"{prefix}/"))["automation"]


def _render(template: str, **context: object) -> str:
    """A template as Home Assistant renders it: Jinja, sandboxed, ``tojson`` plain JSON."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment()
    env.filters["tojson"] = json.dumps
    return env.from_string(template).render(**context)


def test_the_readmes_phone_automation_answers_the_alert_it_was_sent_for(
    mosquitto, unique_prefix, notifier_factory
) -> None:
    """The README's two automations, rendered as Home Assistant renders them: the alert's
    message and buttons, then each button's press published to the real broker. Each press
    must reach the daemon bound to its alert (a generic button pressed late cancelled the
    print running then, whatever it was)."""
    p = unique_prefix
    to_phone, answer = _readme_automations(p)
    recorder = Recorder()
    notifier = notifier_factory(mosquitto, p, dispatcher=recorder)
    wait_for_commands(mosquitto, p, recorder)
    [trigger] = to_phone["trigger"]
    assert trigger["platform"] == "mqtt"
    with mosquitto.subscriber(trigger["topic"]) as sub:
        incident = notifier.raise_alert(
            PRINTER, {**ALERT, "message": "Paused ender3"}, jpeg(), jpeg()
        )
        alert = sub.wait_for(trigger["topic"]).json()
    assert alert["incident"] == incident
    [notify] = to_phone["action"]
    data = notify["data"]
    seen = {"payload_json": alert}
    assert _render(data["title"], trigger=seen) == f"Print failure on {PRINTER}"
    assert _render(data["message"], trigger=seen) == "Paused ender3"
    assert _render(data["data"]["tag"], trigger=seen) == f"watchdog-{incident}"
    pressed = [_render(a["action"], trigger=seen) for a in data["data"]["actions"]]

    [publish] = answer["action"]
    assert publish["service"] == "mqtt.publish"
    for action in pressed:
        event = {"event": {"data": {"action": action}}}
        assert _render(answer["condition"], trigger=event) == "True"
        topic = _render(publish["data"]["topic"], trigger=event)
        mosquitto.publish(topic, _render(publish["data"]["payload"], trigger=event))
    wait_for("the three answers", lambda: len(recorder.commands) >= 3)
    assert recorder.commands == [
        Command(PRINTER, Verb.NOT_A_FAILURE, incident),
        Command(PRINTER, Verb.RESUME, incident),
        Command(PRINTER, Verb.CANCEL, incident),
    ]
    # another automation's action is left alone
    other = {"event": {"data": {"action": "OPEN_GARAGE"}}}
    assert _render(answer["condition"], trigger=other) == "False"


def test_retained_commands_are_never_run_and_are_cleared(
    mosquitto, unique_prefix, notifier_factory, caplog
) -> None:
    p = unique_prefix
    caplog.set_level(logging.WARNING, "watchdog.comms.mqtt")
    # Someone (a misconfigured switch) left a retained OFF and a retained cancel on the broker.
    mosquitto.publish(f"{p}/{PRINTER}/enabled/set", "OFF", retain=True)
    mosquitto.publish(f"{p}/{PRINTER}/command", "cancel", retain=True)
    recorder = Recorder()
    notifier_factory(mosquitto, p, dispatcher=recorder)
    wait_for_commands(mosquitto, p, recorder)  # live commands still work
    assert not {Verb.DISABLE, Verb.CANCEL} & {c.verb for c in recorder.history}, (
        "a retained command was run"
    )
    assert "ignored a retained MQTT command" in caplog.text
    # cleared on the broker: a new subscriber (or the next reconnect) gets nothing retained
    with mosquitto.subscriber(
        f"{p}/{PRINTER}/enabled/set", f"{p}/{PRINTER}/command", f"{p}/tick"
    ) as late:
        mosquitto.publish(f"{p}/tick", "x")
        late.wait_for(f"{p}/tick")
        assert [m for m in late.received(f"{p}/{PRINTER}/#") if m.retain] == []
    # and a second daemon start does not run them either
    second = Recorder()
    notifier_factory(mosquitto, p, dispatcher=second)
    wait_for_commands(mosquitto, p, second)
    assert not {Verb.DISABLE, Verb.CANCEL} & {c.verb for c in second.history}
    # nor one published retained while the daemon is connected: the broker took the retain
    # flag off on the way, so the cancel was carried out and stayed on the broker
    mosquitto.publish(f"{p}/{PRINTER}/command", "cancel", retain=True)
    mosquitto.publish(f"{p}/{PRINTER}/enabled/set", "OFF", retain=True)
    wait_for_commands(mosquitto, p, second)
    assert not {Verb.DISABLE, Verb.CANCEL} & {c.verb for c in second.history}, (
        "a command published retained was run"
    )
    with mosquitto.subscriber(f"{p}/{PRINTER}/command", f"{p}/{PRINTER}/enabled/set") as late:
        mosquitto.publish(f"{p}/{PRINTER}/command", "tick")  # not retained: a round trip
        late.wait_for(f"{p}/{PRINTER}/command", lambda m: m.text == "tick")
        assert [m for m in late.received(f"{p}/{PRINTER}/#") if m.retain and m.payload] == []


def test_a_failing_command_handler_does_not_kill_mqtt(
    mosquitto, unique_prefix, notifier_factory, caplog
) -> None:
    p = unique_prefix
    recorder = Recorder(fail=True)
    notifier = notifier_factory(mosquitto, p, dispatcher=recorder)
    with mosquitto.subscriber(f"{p}/#") as sub:
        sub.wait_for(f"{p}/available/+", lambda m: m.text == "online")
        wait_for_commands(mosquitto, p, recorder)
        notifier.publish_score(PRINTER, 0.5)
        sub.wait_for(f"{p}/{PRINTER}/score")
    assert "handling MQTT command enable failed" in caplog.text


def test_a_command_the_printer_is_slow_to_carry_out_does_not_drop_the_mqtt_session(
    mosquitto, unique_prefix, notifier_factory
) -> None:
    """The daemon answers a pause once the printer has (up to a minute against a slow API).
    Meanwhile the MQTT session stays up (no "offline" from the last will: the broker's keepalive
    of 5 s is kept) and the switch pressed next in Home Assistant is carried out after it."""
    p = unique_prefix
    release = threading.Event()

    class SlowPrinter(Recorder):
        def dispatch(self, command: Command) -> CommandResult:
            if command.verb is Verb.PAUSE:
                release.wait(20)  # three times the keepalive
            return super().dispatch(command)

    recorder = SlowPrinter()
    notifier_factory(mosquitto, p, dispatcher=recorder)
    with mosquitto.subscriber(f"{p}/available/+") as sub:
        sub.wait_for(f"{p}/available/+", lambda m: m.text == "online")
        mosquitto.publish(f"{p}/{PRINTER}/command", "pause", qos=1)
        mosquitto.publish(f"{p}/{PRINTER}/enabled/set", "OFF", qos=1)
        time.sleep(16)
        offline = sub.received(f"{p}/available/+", lambda m: m.text == "offline")
        release.set()
        wait_for("both commands", lambda: len(recorder.history) == 2)
    assert offline == [], "the broker dropped the session while the command waited"
    assert [c.verb for c in recorder.history] == [Verb.PAUSE, Verb.DISABLE]


def test_stopping_with_commands_piled_up_behind_a_stuck_printer_does_not_hang(
    mosquitto, unique_prefix, notifier_factory, caplog
) -> None:
    """At shutdown the watchers have stopped and nobody will carry out the commands still
    queued: they are dropped (and counted in the log), and the stop returns within systemd's
    stop timeout instead of waiting on them."""
    p = unique_prefix
    release = threading.Event()
    notifier = notifier_factory(mosquitto, p, dispatcher=Stuck(release))
    with mosquitto.subscriber(f"{p}/available/+") as sub:
        sub.wait_for(f"{p}/available/+", lambda m: m.text == "online")
        for _ in range(20):
            mosquitto.publish(f"{p}/{PRINTER}/command", "pause", qos=1)
        wait_for("a full queue", lambda: notifier.mqtt._commands.full(PRINTER))
    stopping = threading.Thread(target=notifier.stop)
    stopping.start()
    stopping.join(15)
    release.set()
    assert not stopping.is_alive(), "the stop waited on commands nobody would carry out"
    assert "not carried out: the watchdog stopped" in caplog.text
    # each dropped one answered so (they were logged as taken, never answered)
    with mosquitto.subscriber(f"{p}/{PRINTER}/answer") as late:
        kept = late.wait_for(f"{p}/{PRINTER}/answer").json()
    assert kept["text"] == "Pause print: not carried out: the watchdog stopped", kept


def test_the_command_dropped_at_shutdown_stays_the_last_answer(
    mosquitto, unique_prefix, notifier_factory, caplog
) -> None:
    """A Cancel waiting behind a Pause the printer was slow to carry out when the watchdog
    stopped: the Cancel's "not carried out" was told first, then the Pause's end, and Home
    Assistant's Last command said the pause, the Cancel's fate lost."""
    caplog.set_level(logging.INFO, "watchdog")
    p = unique_prefix
    release = threading.Event()
    stuck = Stuck(release)
    with mosquitto.subscriber(f"{p}/available/+") as up:
        notifier = notifier_factory(mosquitto, p, dispatcher=stuck)
        up.wait_for(f"{p}/available/+", lambda m: m.text == "online")
    mosquitto.publish(f"{p}/{PRINTER}/command", "pause", qos=1)
    assert stuck.under_way.wait(20)
    mosquitto.publish(f"{p}/{PRINTER}/command", "cancel", qos=1)
    wait_for("the cancel taken", lambda: "MQTT command cancel" in caplog.text)
    threading.Timer(1.0, release.set).start()  # the pause ends within the stop's wait
    notifier.stop(timeout=10.0)  # (3 s by default: a loaded machine's timer may be late)
    with mosquitto.subscriber(f"{p}/{PRINTER}/answer") as late:
        kept = late.wait_for(f"{p}/{PRINTER}/answer").json()
    assert kept["text"] == "Cancel print: not carried out: the watchdog stopped", kept


def test_a_printers_refused_command_is_answered_whatever_another_printer_was_refused(
    mosquitto, unique_prefix, notifier_factory
) -> None:
    """Refusals are answered once a minute, not one each in a flood: that minute was every
    printer's, so after one printer's refusal another's refused command was never answered."""
    p = unique_prefix
    release = threading.Event()
    with mosquitto.subscriber(f"{p}/available/+") as up:
        notifier_factory(mosquitto, p, printers=(PRINTER, "voron"), dispatcher=Stuck(release))
        up.wait_for(f"{p}/available/+", lambda m: m.text == "online")
    try:
        with mosquitto.subscriber(f"{p}/+/answer") as sub:
            for printer in (PRINTER, "voron"):
                for _ in range(24):  # one under way, 16 waiting, the rest refused
                    mosquitto.publish(f"{p}/{printer}/command", "pause", qos=1)
                refused = sub.wait_for(f"{p}/{printer}/answer", timeout=20).json()
                assert "16 earlier commands are still waiting" in refused["text"], refused
    finally:
        release.set()


def test_commands_piled_up_behind_one_stuck_printer_do_not_refuse_another_printers(
    mosquitto, unique_prefix, notifier_factory
) -> None:
    """Sixteen commands waiting behind a printer whose API hangs: the pause pressed for
    another printer was ignored too ("16 commands are already waiting"), for minutes. The
    limit is each printer's own."""
    p = unique_prefix
    release = threading.Event()

    class StuckEnder(Recorder):
        def dispatch(self, command: Command) -> CommandResult:
            if command.printer == PRINTER:
                release.wait(60)
            return super().dispatch(command)

    recorder = StuckEnder()
    notifier = notifier_factory(mosquitto, p, printers=(PRINTER, "voron"), dispatcher=recorder)
    try:
        with mosquitto.subscriber(f"{p}/available/+") as sub:
            sub.wait_for(f"{p}/available/+", lambda m: m.text == "online")
            for _ in range(20):
                mosquitto.publish(f"{p}/{PRINTER}/command", "pause", qos=1)
            wait_for("a full queue", lambda: notifier.mqtt._commands.full(PRINTER))
            mosquitto.publish(f"{p}/voron/command", "pause", qos=1)
            wait_for("the other printer's pause", lambda: len(recorder.history) == 1)
        assert recorder.history == [Command("voron", Verb.PAUSE)]
    finally:
        release.set()


# --------------------------------------------------------------------------- parse_command (pure)

PREFIX = "printer_watchdog"
PRINTERS = ["ender3", "voron-2"]


def test_parse_command_accepts_exactly_the_documented_shapes() -> None:
    assert parse_command(PREFIX, PRINTERS, f"{PREFIX}/ender3/enabled/set", b"ON") == Command(
        "ender3", Verb.ENABLE
    )
    assert (
        parse_command(PREFIX, PRINTERS, f"{PREFIX}/voron-2/enabled/set", b"OFF\n").verb
        is Verb.DISABLE
    )
    payload = json.dumps({"verdict": "failure", "incident": "20260101T000000000Z-abc123"}).encode()
    assert parse_command(PREFIX, PRINTERS, f"{PREFIX}/ender3/feedback", payload) == Command(
        "ender3", Verb.CONFIRM_FAILURE, "20260101T000000000Z-abc123"
    )
    for word, verb in (("pause", Verb.PAUSE), ("resume", Verb.RESUME), ("cancel", Verb.CANCEL)):
        assert parse_command(
            PREFIX, PRINTERS, f"{PREFIX}/voron-2/command", word.encode()
        ) == Command("voron-2", verb)
    # naming its alert: a phone's answer acts on that alert's print only, as a button's does
    bound = json.dumps({"command": "cancel", "incident": "20260101T000000000Z-abc123"}).encode()
    assert parse_command(PREFIX, PRINTERS, f"{PREFIX}/ender3/command", bound) == Command(
        "ender3", Verb.CANCEL, "20260101T000000000Z-abc123"
    )
    for topic, payload in [
        (f"{PREFIX}/ender3/enabled/set", b"on"),
        (f"{PREFIX}/ender3/enabled", b"ON"),
        (f"{PREFIX}/ender3/state/set", b"ON"),
        ("other/ender3/enabled/set", b"ON"),
        (f"{PREFIX}/ender3/feedback", b'{"incident": 5, "verdict": "failure"}'),
        (f"{PREFIX}/ender3/feedback", b'{"incident": "a"}'),
        (f"{PREFIX}/ender3/feedback", b" " * (MAX_COMMAND_BYTES + 1)),
        (f"{PREFIX}/ender3/command", b"enable"),
        (f"{PREFIX}/ender3/command", b'{"command": "cancel"}'),
        (f"{PREFIX}/ender3/command", b'{"command": "enable", "incident": "a"}'),
        (f"{PREFIX}/ender3/command", b'{"command": "cancel", "incident": "../x"}'),
        (f"{PREFIX}/ender3/command", b'{"verdict": "failure", "incident": "a"}'),
        (f"{PREFIX}/ender3/command/set", b"pause"),
    ]:
        with pytest.raises(CommandError):
            parse_command(PREFIX, PRINTERS, topic, payload)
    # feedback's "latest" in a command was taken for an alert's id, and refused as "a newer
    # alert since this one" when there was none: it is the bare command
    latest = b'{"command": "resume", "incident": "latest"}'
    assert parse_command(PREFIX, PRINTERS, f"{PREFIX}/ender3/command", latest) == Command(
        "ender3", Verb.RESUME
    )


command_topics = st.sampled_from(
    [
        f"{PREFIX}/ender3/enabled/set",
        f"{PREFIX}/ender3/feedback",
        f"{PREFIX}/voron-2/feedback",
        f"{PREFIX}/ghost/feedback",
        f"{PREFIX}/ender3/command",
    ]
) | st.text(max_size=40).map(lambda s: f"{PREFIX}/{s}")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
feedbackish = st.fixed_dictionaries(
    {},
    optional={
        "incident": json_values | st.text(max_size=70),
        "verdict": st.sampled_from(VERDICTS) | json_values,
        "extra": json_values,
    },
).map(lambda d: json.dumps(d).encode())


def check_result(topic: str, payload: bytes) -> None:
    try:
        command = parse_command(PREFIX, PRINTERS, topic, payload)
    except CommandError:
        return
    assert (
        command.printer in PRINTERS
        and len(payload) <= MAX_COMMAND_BYTES
        and command.source == "mqtt"
    )
    if command.verb in (Verb.ENABLE, Verb.DISABLE):
        assert topic.endswith("/enabled/set") and payload.strip() in (b"ON", b"OFF")
        assert (command.verb is Verb.ENABLE) == (
            payload.strip() == b"ON"
        ) and command.incident is None
    elif command.verb in (Verb.PAUSE, Verb.RESUME, Verb.CANCEL, Verb.SKIP_PRINT):
        assert topic.endswith("/command")
        if command.incident is None:
            assert payload.strip().decode() == command.verb.value
        else:
            data = json.loads(payload)
            assert data == {"command": command.verb.value, "incident": command.incident}
    else:
        assert topic.endswith("/feedback") and command.verb.value in VERDICTS
        incident = command.incident or ""
        assert incident.replace("_", "").replace("-", "").isalnum() and "/" not in incident


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(topic=command_topics, payload=st.binary(max_size=2048) | feedbackish)
def test_fuzz_parse_command_never_accepts_junk(topic: str, payload: bytes) -> None:
    check_result(topic, payload)


def test_missing_tls_file_is_a_config_error_at_start(notifier_factory, tmp_path) -> None:
    from watchdog.config import ConfigError

    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError, match=r"mqtt\.tls: cannot load the certificates"):
        notifier_factory(None, "p", host="127.0.0.1", port=1, tls={"ca_file": str(missing)})
    with pytest.raises(ConfigError, match="nope.pem"):
        notifier_factory(None, "p", host="127.0.0.1", port=1, tls={"ca_file": str(missing)})


def test_one_daemon_of_a_farm_stopping_leaves_the_others_entities_available(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """Two daemons on one broker and prefix (one per host, as the README's farm): each marks
    its own entities available. One stopping (a restart, the demo ending) used to publish
    offline on the one topic all entities shared, greying out the other's buttons in Home
    Assistant until it happened to reconnect."""
    p = unique_prefix
    with mosquitto.subscriber(f"{p}/available/#", f"{p}_ha/#") as sub:
        a = notifier_factory(mosquitto, p, printers=("ender3",), storage_dir=tmp_path / "a")
        b = notifier_factory(mosquitto, p, printers=("voron",), storage_dir=tmp_path / "b")
        mine, theirs = a.mqtt.transport.availability_topic, b.mqtt.transport.availability_topic
        assert mine != theirs
        for topic in (mine, theirs):
            sub.wait_for(topic, lambda m: m.text == "online")
        configs = sub.wait_count(f"{p}_ha/+/+/+/config", 2 * ENTITIES)
        for m in configs:
            printer = "ender3" if "ender3" in m.topic else "voron"
            assert m.json()["availability_topic"] == (mine if printer == "ender3" else theirs)
        a.stop()
        sub.wait_for(mine, lambda m: m.text == "offline")
        assert not sub.received(theirs, lambda m: m.text == "offline")


def test_turning_discovery_off_removes_the_entities_it_made(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """An owner turns discovery off to set the entities up by hand: the discovered ones were
    left in Home Assistant beside theirs, shown available. They are removed at the next start."""
    p, dp = unique_prefix, f"{unique_prefix}_ha"
    storage = tmp_path / "state"
    with mosquitto.subscriber(f"{dp}/#") as sub:
        first = notifier_factory(mosquitto, p, storage_dir=storage)
        sub.wait_count(f"{dp}/+/+/+/config", ENTITIES, lambda m: bool(m.payload))
        first.stop()
        notifier_factory(
            mosquitto,
            p,
            storage_dir=storage,
            homeassistant={"enabled": False, "discovery_prefix": dp},
        )
        sub.wait_count(f"{dp}/+/+/+/config", ENTITIES, lambda m: not m.payload, timeout=20)
    with mosquitto.subscriber(f"{dp}/#") as after:  # retained: what a new Home Assistant reads
        time.sleep(1.0)
        assert not after.received(f"{dp}/+/+/+/config", lambda m: bool(m.payload))


def test_two_pis_of_one_name_get_client_ids_of_their_own(tmp_path, monkeypatch) -> None:
    """Every Pi is called raspberrypi (or octopi) until renamed: two daemons with the default
    id took the broker's session from each other in turn, their entities flapping."""
    from watchdog.comms import transport
    from watchdog.config import MqttConfig

    ids = []
    for machine in ("3f2a9c0d11e24b8f9a7c", "b81e44c2a0f94d1e8b3a"):
        (tmp_path / "machine-id").write_text(machine + "\n")
        monkeypatch.setattr(transport, "MACHINE_ID", tmp_path / "machine-id")
        monkeypatch.setattr(transport.socket, "gethostname", lambda: "raspberrypi")
        ids.append(transport.client_id(MqttConfig()))
    assert ids == ["printer-watchdog-raspberrypi-3f2a9c", "printer-watchdog-raspberrypi-b81e44"]
    assert transport.client_id(MqttConfig(client_id="farm-1")) == "farm-1"


def test_the_demo_beside_a_running_watchdog_leaves_it_available_and_tidies_up(
    mosquitto, tmp_path
) -> None:
    """``python -m watchdog demo --mqtt-host`` on the broker a watchdog uses: it publishes
    under its own prefix and client id, so the watchdog's entities stay available and its
    connection is not taken, and the demo's own Home Assistant device goes when it ends."""
    from tests.daemon_helpers import run_cli
    from watchdog.comms.transport import availability_topic
    from watchdog.config import MqttConfig

    running = availability_topic(MqttConfig())  # a watchdog on this host, its default id
    mosquitto.publish(running, "online", retain=True)  # a watchdog on this host, running
    try:
        with mosquitto.subscriber(
            "printer_watchdog/#", "printer_watchdog_demo/#", "homeassistant/#"
        ) as sub:
            r = run_cli(
                "demo",
                "--out",
                str(tmp_path / "demo"),
                "--interval",
                "0",
                "--mqtt-host",
                "127.0.0.1",
                "--mqtt-port",
                str(mosquitto.port),
            )
            assert r.returncode == 0, r.stderr[-2000:]
            assert sub.wait_for("printer_watchdog_demo/demo/alert").json()["printer"] == "demo"
            configs = sub.received("homeassistant/+/+/+/config")
            demo = [m for m in configs if "printer_watchdog_demo" in m.topic]
            assert demo and all(
                m.json()["availability_topic"].startswith("printer_watchdog_demo/available/")
                for m in demo
                if m.payload
            )
            assert not sub.received(running, lambda m: m.text == "offline")
        with mosquitto.subscriber(
            "printer_watchdog/#", "printer_watchdog_demo/#", "homeassistant/#"
        ) as after:
            after.wait_for(running, lambda m: m.text == "online")  # retained, untouched
            time.sleep(1.0)
            left = after.received("homeassistant/+/+/+/config", lambda m: bool(m.payload))
            assert not [m.topic for m in left if "printer_watchdog_demo" in m.topic]
            # nor its "offline", retained for ever, one more for each host that ran it
            kept = after.received("printer_watchdog_demo/#", lambda m: m.retain and bool(m.payload))
            assert not [m.topic for m in kept if "/available/" in m.topic], kept
    finally:
        mosquitto.publish(running, "", retain=True)


def test_a_button_of_the_demos_device_says_the_demo_carries_out_nothing(
    mosquitto, tmp_path
) -> None:
    """The demo's Home Assistant device has Pause, Resume and Cancel: pressed, they were
    logged as taken, and nothing happened or answered."""
    import subprocess

    from tests.daemon_helpers import watchdog_cmd

    with mosquitto.subscriber("printer_watchdog_demo/#") as sub:
        demo = subprocess.Popen(
            watchdog_cmd(
                "demo", "--out", str(tmp_path / "demo"), "--interval", "0.5",
                "--mqtt-host", "127.0.0.1", "--mqtt-port", str(mosquitto.port),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            sub.wait_for("printer_watchdog_demo/demo/state", timeout=60)
            mosquitto.publish("printer_watchdog_demo/demo/command", "pause")
            answer = sub.wait_for("printer_watchdog_demo/demo/answer", timeout=30).json()
            assert answer["ok"] is False, answer
            assert "carries out no command (the demo)" in answer["text"], answer
        finally:
            demo.terminate()
            demo.wait(timeout=30)


def test_the_demo_refuses_a_broker_written_as_a_url_in_one_line(tmp_path) -> None:
    from tests.daemon_helpers import run_cli

    r = run_cli("demo", "--out", str(tmp_path), "--mqtt-host", "user:s3cret@broker:1883")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(
        "error: --mqtt-host: give a host name or address only"
    ), r.stderr
    assert "s3cret" not in r.stderr + r.stdout


def test_the_first_start_after_an_upgrade_clears_the_old_availability_topic(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """Versions before the availability topic per daemon kept one per prefix: its last
    retained word (offline after a clean stop) would stay for good. The first start that finds
    the older record clears it."""
    p = unique_prefix
    storage = tmp_path / "state"
    (storage / "mqtt-printers.json").parent.mkdir(parents=True)
    old = {"topic_prefix": p, "discovery_prefix": f"{p}_ha", "printers": ["ender3"]}
    (storage / "mqtt-printers.json").write_text(json.dumps(old))
    mosquitto.publish(f"{p}/available", "offline", retain=True)
    notifier_factory(mosquitto, p, storage_dir=storage)
    with mosquitto.subscriber(f"{p}/available/#") as sub:
        sub.wait_for(f"{p}/available/+", lambda m: m.text == "online", timeout=20)
    with mosquitto.subscriber(f"{p}/available") as after:
        time.sleep(1.0)
        assert not after.received(f"{p}/available", lambda m: bool(m.payload))


def test_a_new_client_id_clears_the_availability_topic_of_the_old_one(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """A daemon given another client id: the availability topic of the one before (offline
    after its clean stop) would stay for good beside the new one. One recorded before the
    record kept it is left alone: it may be a daemon's of the same host name still running."""
    p = unique_prefix
    storage = tmp_path / "state"
    storage.mkdir()
    before, unknown = f"{p}/available/farm-1", f"{p}/available/printer-watchdog-raspberrypi"
    record = {"topic_prefix": p, "discovery_prefix": f"{p}_ha", "discovery": True}
    record |= {"printers": ["ender3"], "available": before}
    (storage / "mqtt-printers.json").write_text(json.dumps(record))
    mosquitto.publish(before, "offline", retain=True)
    mosquitto.publish(unknown, "online", retain=True)
    notifier = notifier_factory(mosquitto, p, storage_dir=storage, client_id="farm-2")
    now = notifier.mqtt.transport.availability_topic
    with mosquitto.subscriber(f"{p}/available/#") as sub:
        sub.wait_for(now, lambda m: m.text == "online", timeout=20)
    time.sleep(1.0)
    with mosquitto.subscriber(f"{p}/available/#") as after:
        time.sleep(1.0)
        left = {m.topic for m in after.received(f"{p}/available/#", lambda m: bool(m.payload))}
    assert left == {now, unknown}


def test_a_printer_moved_to_another_watchdog_keeps_its_entities_when_the_first_lets_it_go(
    mosquitto, unique_prefix, notifier_factory, tmp_path, caplog
) -> None:
    """A farm sharing one prefix: voron moved from host A to host B (added on B, then taken
    out of A's config). A's reload emptied voron's retained entity configs, which were B's
    by then: Home Assistant deleted B's entities, their names and areas with them. A takes off
    only what it announced itself; a printer nobody else announces still goes."""
    p, dp = unique_prefix, f"{unique_prefix}_ha"

    def retained(pattern: str) -> dict[str, bytes]:
        with mosquitto.subscriber(pattern, f"{p}/unrelated") as late:
            mosquitto.publish(f"{p}/unrelated", "tick")  # a round trip: retained ones came first
            late.wait_for(f"{p}/unrelated")
            return {m.topic: m.payload for m in late.received(pattern) if m.retain and m.payload}

    def voron_owner() -> str:
        configs = retained(f"{dp}/+/+/+/config")
        owners = {json.loads(v)["availability_topic"] for k, v in configs.items() if "voron" in k}
        return owners.pop() if len(owners) == 1 else ""

    a = notifier_factory(
        mosquitto, p, storage_dir=tmp_path / "a", printers=("ender3", "voron", "mk4"),
        client_id="host-a",
    )  # fmt: skip
    wait_for("A's voron", lambda: voron_owner().endswith("/host-a"))
    b = notifier_factory(
        mosquitto, p, storage_dir=tmp_path / "b", printers=("voron",), client_id="host-b"
    )
    wait_for("B's voron", lambda: voron_owner().endswith("/host-b"))
    with caplog.at_level(logging.INFO, "watchdog.comms.mqtt"):
        a.set_printers(["ender3"])  # voron moved to B, mk4 retired
        wait_for("mk4 gone", lambda: not any("mk4" in t for t in retained(f"{dp}/#")))
    assert voron_owner().endswith("/host-b"), retained(f"{dp}/#")
    assert "another watchdog" in caplog.text and "voron" in caplog.text
    assert b.connected
