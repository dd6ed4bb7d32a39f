"""End to end, once per printer API: real OctoPrint / Moonraker, real mosquitto, a real HTTP
camera, a real TFLite bundle trained by our trainer, and `python -m watchdog run` as a process.

The camera first shows normal frames (no pause may happen), then failure frames: the real
server must report the print paused, and an MQTT subscriber must get the alert and a heatmap.
"""

from __future__ import annotations

import json
import re
import signal
import time
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
import requests

from tests.daemon_helpers import DaemonProcess, free_port, wait_until, write_config
from watchdog.incidents import raised_at

NORMAL_SCORES_BEFORE_FAILURE = 8


def _config(
    tmp_path: Path, bundle: Path, broker, prefix: str, camera_url: str, api: dict, http_port: int
) -> Path:
    return write_config(
        tmp_path / "config.yaml",
        model=str(bundle),
        mqtt=broker.mqtt_settings(
            topic_prefix=prefix, homeassistant={"discovery_prefix": f"ha_{prefix}"}
        ),
        http={"listen": f"127.0.0.1:{http_port}"},
        storage={"dir": str(tmp_path / "state")},
        printers=[
            {
                "name": "ender3",
                "camera": {"source": camera_url, "interval_s": 0.3, "timeout_s": 3},
                "api": api | {"timeout_s": 3, "retries": 2},
                "detection": {"consecutive": 3, "cooldown_s": 600},
                "action": "pause",
            }
        ],
    )


class _OctoPrint:
    def __init__(self, server) -> None:
        self.s = server

    def cancel(self) -> None:
        self.s.cancel()
        self.s.wait_flag("printing", False)

    def printed(self) -> float:
        return self.s.get("/api/job").json()["progress"]["printTime"] or 0.0

    def api(self) -> dict:
        return {"kind": "octoprint", "url": self.s.url, "api_key": self.s.api_key}

    def start_print(self) -> None:
        self.s.start_print()

    def state(self) -> str:
        flags = self.s.flags()
        return "paused" if flags.get("paused") else "printing" if flags.get("printing") else "other"


class _Moonraker:
    def __init__(self, server) -> None:
        self.s = server

    def cancel(self) -> None:
        self.s.cancel()
        self.s.wait_state("cancelled")

    def printed(self) -> float:
        stats = self.s.get("/printer/objects/query?print_stats").json()["result"]["status"]
        return stats["print_stats"]["print_duration"]

    def api(self) -> dict:
        return {"kind": "moonraker", "url": self.s.url, "api_key": self.s.api_key}

    def start_print(self) -> None:
        self.s.start_print()

    def state(self) -> str:
        return self.s.print_state()


@pytest.fixture
def moonraker_printing(
    tmp_path, tiny_bundle, mosquitto, unique_prefix, camera_server, moonraker_server, normal_frames
):
    """``start(macro, confirm_s)``: a real Moonraker printing behind ``TEST_PAUSE_MACRO
    <macro>`` (tests/fake_klippy.py), the camera on normal frames, and the daemon started on
    it (MQTT on ``unique_prefix``), its pauses checked ``confirm_s`` later: the daemon and its
    page's port."""

    def start(macro: str, confirm_s: float) -> tuple[DaemonProcess, int]:
        camera_server.set_frames(normal_frames)
        moonraker_server.post("/printer/gcode/script", {"script": f"TEST_PAUSE_MACRO {macro}"})
        moonraker_server.start_print()
        api = _Moonraker(moonraker_server).api() | {"confirm_s": confirm_s}
        port = free_port()
        config = _config(
            tmp_path, tiny_bundle, mosquitto, unique_prefix, camera_server.snapshot_url, api, port
        )
        return DaemonProcess(config, tmp_path / "daemon.log"), port

    return start


@pytest.fixture(params=["octoprint", "moonraker"])
def printer_server(request):
    if request.param == "octoprint":
        return _OctoPrint(request.getfixturevalue("octoprint_server"))
    return _Moonraker(request.getfixturevalue("moonraker_server"))


@pytest.mark.servers
def test_pauses_real_printer_on_failure_and_alerts_over_mqtt(
    tmp_path,
    tiny_bundle,
    mosquitto,
    unique_prefix,
    camera_server,
    printer_server,
    normal_frames,
    anomalous_frames,
) -> None:
    prefix = unique_prefix
    sub = mosquitto.subscriber(f"{prefix}/#", f"ha_{prefix}/#")
    camera_server.set_frames(normal_frames)
    printer_server.start_print()
    http_port = free_port()
    config = _config(
        tmp_path,
        tiny_bundle,
        mosquitto,
        prefix,
        camera_server.snapshot_url,
        printer_server.api(),
        http_port,
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        # Normal printing: frames are scored, nothing is paused or alerted.
        sub.wait_count(f"{prefix}/ender3/score", NORMAL_SCORES_BEFORE_FAILURE, timeout=90)
        assert sub.received(f"{prefix}/ender3/alert") == []
        assert printer_server.state() == "printing", daemon.log
        state = sub.received(f"{prefix}/ender3/state")[-1].json()
        assert state["state"] in ("watching", "anomaly") and state["printer_state"] == "printing"
        assert sub.wait_for(f"{prefix}/available/+").text == "online"

        health = requests.get(f"http://127.0.0.1:{http_port}/healthz", timeout=5)
        assert health.status_code == 200
        status = requests.get(f"http://127.0.0.1:{http_port}/status", timeout=5).json()
        assert status["printers"]["ender3"]["printer_state"] == "printing"

        # The print fails: spaghetti on the bed.
        camera_server.set_frames(anomalous_frames)
        alert = sub.wait_for(f"{prefix}/ender3/alert", timeout=60).json()
        wait_until(
            "the real server to report the print paused",
            lambda: printer_server.state() == "paused",
            30,
            lambda: daemon.log,
        )
        assert alert["printer"] == "ender3" and alert["action"] == "pause"
        assert alert["action_result"]["outcome"] == "done", alert
        assert alert["answers"] == ["resume", "cancel"]  # the buttons its owner is offered
        assert alert["consecutive"] == 3 and alert["score"] > alert["threshold"]
        assert alert["incident"]

        heatmap = sub.wait_for(f"{prefix}/ender3/heatmap").payload
        img = cv2.imdecode(np.frombuffer(heatmap, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[0] > 0

        components = {m.topic.split("/")[1] for m in sub.received(f"ha_{prefix}/+/+/+/config")}
        assert {"binary_sensor", "sensor", "image", "switch"} <= components
        for m in sub.received(f"ha_{prefix}/+/+/+/config"):
            cfg = m.json()
            assert cfg["unique_id"] and cfg["device"]

        # The incident is on disk (frame, heatmap, alert) for the user and for retraining.
        incident = tmp_path / "state" / "incidents" / "ender3" / alert["incident"]
        assert {"frame.jpg", "heatmap.jpg", "alert.json"} <= {p.name for p in incident.iterdir()}
        # frame.jpg is the camera's frame as it came, without the heatmap drawn over it
        saved = cv2.imread(str(incident / "frame.jpg")).astype(np.float32)
        drawn = cv2.imread(str(incident / "heatmap.jpg")).astype(np.float32)

        def nearest(img: np.ndarray) -> float:
            return min(float(np.abs(img - f[..., :3]).mean()) for f in anomalous_frames)

        assert nearest(saved) < 0.5 * nearest(drawn), (nearest(saved), nearest(drawn))

        # Only one pause for this failure, however long the camera keeps showing it.
        wait_until(
            "the watcher to see the pause",
            lambda: (
                requests.get(f"http://127.0.0.1:{http_port}/status", timeout=5).json()["printers"][
                    "ender3"
                ]["state"]
                == "paused"
            ),
            20,
        )
        assert len(sub.received(f"{prefix}/ender3/alert")) == 1
    finally:
        rc = daemon.stop()
    assert rc == 0, daemon.log
    assert sub.wait_for(f"{prefix}/available/+", lambda m: m.text == "offline", timeout=10)


@pytest.mark.servers
def test_sigterm_stops_cleanly_and_sighup_reload_keeps_running_on_bad_config(
    tmp_path, tiny_bundle, mosquitto, unique_prefix, camera_server, normal_frames
) -> None:
    camera_server.set_frames(normal_frames)
    sub = mosquitto.subscriber(f"{unique_prefix}/#")
    port = free_port()
    api = {"kind": "none"}
    config = _config(
        tmp_path, tiny_bundle, mosquitto, unique_prefix, camera_server.snapshot_url, api, port
    )
    good = config.read_text()
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        sub.wait_count(f"{unique_prefix}/ender3/score", 3, timeout=60)
        # A broken config on reload is refused; the daemon keeps watching with the old one.
        config.write_text(good.replace("consecutive: 3", "consecutive: many"))
        daemon.signal(signal.SIGHUP)
        wait_until(
            "the refused reload in the log",
            lambda: "reload refused" in daemon.log,
            20,
            lambda: daemon.log,
        )
        assert "printers.0.detection.consecutive" in daemon.log
        n = len(sub.received(f"{unique_prefix}/ender3/score"))
        sub.wait_count(f"{unique_prefix}/ender3/score", n + 3, timeout=30)
        assert daemon.alive()
        # A good config reloads.
        config.write_text(good.replace("consecutive: 3", "consecutive: 4"))
        daemon.signal(signal.SIGHUP)
        wait_until(
            "the reload in the log", lambda: "reloaded" in daemon.log, 30, lambda: daemon.log
        )
        n = len(sub.received(f"{unique_prefix}/ender3/score"))
        sub.wait_count(f"{unique_prefix}/ender3/score", n + 2, timeout=30)
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        rc = daemon.stop(timeout=30)  # a camera request and the MQTT goodbye may be in flight
    assert rc == 0, daemon.log
    assert "stopped" in daemon.log
    assert sub.wait_for(f"{unique_prefix}/available/+", lambda m: m.text == "offline", timeout=10)


@pytest.mark.servers
def test_camera_offline_is_published_and_never_an_anomaly(
    tmp_path, tiny_bundle, mosquitto, unique_prefix, camera_server, normal_frames
) -> None:
    camera_server.set_frames(normal_frames)
    sub = mosquitto.subscriber(f"{unique_prefix}/#")
    config = _config(
        tmp_path,
        tiny_bundle,
        mosquitto,
        unique_prefix,
        camera_server.snapshot_url,
        {"kind": "none"},
        free_port(),
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        sub.wait_count(f"{unique_prefix}/ender3/score", 2, timeout=60)
        camera_server.set_fault("html")
        sub.wait_for(
            f"{unique_prefix}/ender3/state",
            lambda m: m.json()["state"] == "camera_offline",
            timeout=30,
        )
        back = lambda m: m.json()["state"] == "watching" and m.json()["camera_online"]  # noqa: E731
        before = len(sub.received(f"{unique_prefix}/ender3/state", back))
        camera_server.set_fault(None)
        # a new message, not the one from before the fault
        sub.wait_count(f"{unique_prefix}/ender3/state", before + 1, back, timeout=60)
        assert sub.received(f"{unique_prefix}/ender3/alert") == []
    finally:
        assert daemon.stop() == 0, daemon.log


def test_alert_json_written_even_without_mqtt(tmp_path, tiny_bundle, anomalous_frames) -> None:
    """MQTT disabled: the replayed failure still leaves a complete incident on disk."""
    from tests.daemon_helpers import run_cli

    frames = tmp_path / "frames"
    frames.mkdir()
    for i, f in enumerate(anomalous_frames[:4]):
        cv2.imwrite(str(frames / f"f_{i}.jpg"), f)
    config = write_config(tmp_path / "c.yaml", model=str(tiny_bundle), printers=[{"name": "p1"}])
    out = tmp_path / "out"
    r = run_cli("replay", "--config", str(config), "--frames", str(frames), "--out", str(out))
    assert r.returncode == 0, r.stderr
    alert_files = list(out.glob("incidents/p1/*/alert.json"))
    assert len(alert_files) == 1
    alert = json.loads(alert_files[0].read_text())
    assert alert["printer"] == "p1"
    # replay's simulated printer paused: Resume and Cancel are offered, as the demo shows them
    assert alert["answers"] == ["resume", "cancel"]


def _printer_status(port: int) -> dict:
    return requests.get(f"http://127.0.0.1:{port}/status", timeout=5).json()["printers"]["ender3"]


@pytest.mark.servers
def test_a_restart_keeps_an_unanswered_pause_and_an_old_alert_never_cancels_a_reprint(
    tmp_path,
    tiny_bundle,
    mosquitto,
    unique_prefix,
    camera_server,
    printer_server,
    normal_frames,
    anomalous_frames,
) -> None:
    """Restarted while the print it paused waits: the failure still shows (Home Assistant's
    problem sensor), and Home Assistant's "latest" answer reaches that alert (before: the
    failure was forgotten, the answer ignored). Restarted after the same file was printed
    again: the old alert's Cancel must not cancel the new print (before: it did)."""
    prefix = unique_prefix
    sub = mosquitto.subscriber(f"{prefix}/#")
    camera_server.set_frames(normal_frames)
    printer_server.start_print()
    port = free_port()
    api = printer_server.api()
    config = _config(
        tmp_path, tiny_bundle, mosquitto, prefix, camera_server.snapshot_url, api, port
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        sub.wait_count(f"{prefix}/ender3/score", 3, timeout=90)
        # a print some way in when it fails: its reprint, below, has printed less by far
        wait_until("12 s of printing", lambda: printer_server.printed() >= 12, 60)
        camera_server.set_frames(anomalous_frames)
        incident = sub.wait_for(f"{prefix}/ender3/alert", timeout=60).json()["incident"]
        wait_until("the pause", lambda: printer_server.state() == "paused", 30, lambda: daemon.log)
    finally:
        assert daemon.stop(timeout=30) == 0, daemon.log
    camera_server.set_frames(normal_frames)
    online = len(sub.received(f"{prefix}/available/+", lambda m: m.text == "online"))

    daemon = DaemonProcess(config, tmp_path / "daemon2.log")
    try:
        daemon.wait_up(f"http://127.0.0.1:{port}")
        # the new daemon's "online": from then on it takes commands (the first one's words,
        # all received already, tell nothing of it)
        sub.wait_count(f"{prefix}/available/+", online + 1, lambda m: m.text == "online", 30)
        st = wait_until(
            "the alert restored",
            lambda: (s := _printer_status(port))["last_alert"] and s,
            30,
            lambda: daemon.log,
        )
        assert st["failure"] is True and st["last_alert"]["incident"] == incident, st
        feedback = {"incident": "latest", "verdict": "failure"}
        mosquitto.publish(f"{prefix}/ender3/feedback", json.dumps(feedback))
        saved = tmp_path / "state" / "incidents" / "ender3" / incident / "alert.json"
        wait_until(
            "the verdict on the alert before the restart",
            lambda: json.loads(saved.read_text()).get("verdict") == "failure",
            30,
            lambda: daemon.log,
        )
        # Home Assistant's Last command sensor says which alert "the latest" was
        answer = sub.wait_for(f"{prefix}/ender3/answer", timeout=30).json()
        assert answer["ok"] and answer["incident"] == incident, answer
        assert answer["text"].startswith(
            f"Confirm failure: the alert of {raised_at(incident)} confirmed as a failure"
        ), answer
    finally:
        assert daemon.stop(timeout=30) == 0, daemon.log

    raised = datetime.fromisoformat(json.loads(saved.read_text())["time"]).timestamp()
    wait_until("a second after the alert", lambda: time.time() > raised + 1.5, 5)
    printer_server.cancel()  # the owner ends it at the printer, and prints the file again
    printer_server.start_print()
    daemon = DaemonProcess(config, tmp_path / "daemon3.log")
    try:
        daemon.wait_up(f"http://127.0.0.1:{port}")
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=10).text
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)
        body = {"printer": "ender3", "verb": "cancel", "incident": incident}
        answer = requests.post(
            f"http://127.0.0.1:{port}/api/command",
            json=body,
            headers={"X-CSRF-Token": token},
            timeout=60,
        ).json()
        assert answer["ok"] is False and "it is another print" in answer["detail"], answer
        assert printer_server.state() == "printing", daemon.log
        assert _printer_status(port)["failure"] is False
    finally:
        assert daemon.stop(timeout=30) == 0, daemon.log


@pytest.mark.servers
def test_an_owners_pause_still_followed_when_the_daemon_stops_is_not_left_under_way(
    moonraker_printing, mosquitto, unique_prefix, moonraker_server, tmp_path
) -> None:
    """Home Assistant's Pause print, a real Moonraker whose PAUSE macro does not pause, and
    the daemon stopped before ``api.confirm_s`` decided it: the Last command sensor stayed
    "under way" for good (retained). It says now that nobody follows it any more, and that
    the pause may have happened; the page, which forgot it at the restart, shows it too."""
    prefix = unique_prefix
    sub = mosquitto.subscriber(f"{prefix}/#")
    daemon, port = moonraker_printing("PAUSES=0", confirm_s=600)
    try:
        sub.wait_count(f"{prefix}/ender3/score", 2, timeout=90)
        mosquitto.publish(f"{prefix}/ender3/command", "pause")
        first = sub.wait_for(f"{prefix}/ender3/answer", timeout=30).json()
        assert first["under_way"] and not first["ok"], first
        assert moonraker_server.print_state() == "printing"
        # the page shows it too, as Home Assistant's (recorded just after the broker is told)
        shown = wait_until(
            "the page's last command",
            lambda: (
                (c := _printer_status(port)["last_command"]) and c["text"] == first["text"] and c
            ),
            10,
            lambda: str(_printer_status(port)["last_command"]),
        )
        assert shown["source"] == "Home Assistant", shown
    finally:
        assert daemon.stop(timeout=30) == 0, daemon.log
    kept = mosquitto.subscriber(f"{prefix}/ender3/answer")  # what Home Assistant reads now
    answer = kept.wait_for(f"{prefix}/ender3/answer", timeout=10).json()
    assert not answer["under_way"] and not answer["ok"] and answer["unknown"], (answer, daemon.log)
    assert answer["text"].startswith("Pause print: "), answer
    assert answer["text"].endswith(
        "the watchdog stopped before the printer showed the pause: it may have happened"
    ), answer
    # started again, the page shows that end, as Home Assistant does (it forgot it)
    again = DaemonProcess(daemon.config, tmp_path / "daemon-again.log")
    try:
        again.wait_up(f"http://127.0.0.1:{port}")
        shown = _printer_status(port)["last_command"]
        assert shown["source"] == "Home Assistant" and shown["text"] == answer["text"], shown
        assert not shown["under_way"] and shown["unknown"], shown
    finally:
        assert again.stop(timeout=30) == 0, again.log


@pytest.mark.servers
def test_the_page_keeps_what_became_of_a_pause_that_was_under_way(
    moonraker_printing, moonraker_server
) -> None:
    """The page's Pause, a real Moonraker whose PAUSE macro does not pause: its toast said
    "not shown by the printer yet", and the page never learnt that the pause did NOT happen
    (Home Assistant and a phone were told). The printer's last command, in the page's state,
    goes from under way to that end."""
    daemon, port = moonraker_printing("PAUSES=0", confirm_s=5)
    url = f"http://127.0.0.1:{port}"
    try:
        daemon.wait_up(url)
        session = requests.Session()
        page = session.get(f"{url}/", timeout=10).text
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)

        def last_command() -> dict:
            state = session.get(f"{url}/api/state", timeout=10).json()
            [printer] = state["printers"]
            return printer["last_command"]

        answer = session.post(
            f"{url}/api/command",
            json={"printer": "ender3", "verb": "pause"},
            headers={"X-CSRF-Token": token},
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
        first = last_command()
        assert first["under_way"] and first["source"] == "the page", first
        assert first["text"].startswith("Pause print: ") and "not shown" in first["text"]
        end = wait_until(
            "the pause's end",
            lambda: (c := last_command())["under_way"] is False and c,
            60,
            lambda: daemon.log,
        )
        assert not end["ok"] and "did NOT pause" in end["text"], end
        assert moonraker_server.print_state() == "printing"
    finally:
        assert daemon.stop(timeout=30) == 0, daemon.log


@pytest.mark.servers
def test_an_owners_pause_told_not_done_is_put_right_when_the_printer_pauses_late(
    moonraker_printing, mosquitto, unique_prefix, moonraker_server
) -> None:
    """Home Assistant's Pause, a real Moonraker whose PAUSE waits behind a long command (a
    heat-up) past ``api.confirm_s``: the answer said "did NOT pause" and stayed so, on the
    broker and on the page, with the printer paused. It is put right when the printer pauses."""
    prefix = unique_prefix
    sub = mosquitto.subscriber(f"{prefix}/ender3/answer")
    available = mosquitto.subscriber(f"{prefix}/available/+")
    daemon, port = moonraker_printing("DELAY=10", confirm_s=5)
    try:
        # "online" comes once the daemon takes commands (the HTTP server may answer first)
        available.wait_for(f"{prefix}/available/+", lambda m: m.text == "online", timeout=60)
        mosquitto.publish(f"{prefix}/ender3/command", "pause")
        right = sub.wait_for(f"{prefix}/ender3/answer", lambda m: m.json()["ok"], timeout=60).json()
        said = [m.json()["text"] for m in sub.received(f"{prefix}/ender3/answer")]
        assert any("did NOT pause" in text for text in said), said
        assert right["text"].startswith("Pause print: ender3 is paused after all, "), right
        assert moonraker_server.print_state() == "paused"
        wait_until(
            "the page's last command put right",
            lambda: (
                (c := _printer_status(port)["last_command"])
                and c["ok"]
                and c["text"] == right["text"]
            ),
            10,
            lambda: str(_printer_status(port)["last_command"]),
        )
    finally:
        assert daemon.stop(timeout=30) == 0, daemon.log


@pytest.mark.servers
def test_a_resume_the_printer_takes_but_does_not_carry_out_leaves_the_alert_open(
    moonraker_printing, moonraker_server, camera_server, anomalous_frames
) -> None:
    """The page's Resume of a paused alert, a real Moonraker whose RESUME macro refuses
    without an error (mainsail-config's, the nozzle not hot): recorded as resumed, the alert
    lost its buttons and its Cancel was refused ("answered already"), the print still paused.
    The answer says the printer still shows paused, and the alert's Cancel still cancels."""
    daemon, port = moonraker_printing("PAUSES=1", confirm_s=5)
    moonraker_server.post("/printer/gcode/script", {"script": "TEST_RESUME_MACRO RESUMES=0"})
    url = f"http://127.0.0.1:{port}"
    try:
        daemon.wait_up(url)
        camera_server.set_frames(anomalous_frames)
        incident = wait_until(
            "the alert", lambda: _printer_status(port)["last_alert"], 90, lambda: daemon.log
        )["incident"]
        wait_until("the pause", lambda: moonraker_server.print_state() == "paused", 30)
        session = requests.Session()
        page = session.get(f"{url}/", timeout=10).text
        token = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)

        def press(verb: str) -> dict:
            return session.post(
                f"{url}/api/command",
                json={"printer": "ender3", "verb": verb, "incident": incident},
                headers={"X-CSRF-Token": token},
                timeout=60,
            ).json()

        resumed = press("resume")
        assert not resumed["ok"] and "the printer still shows paused" in resumed["detail"], resumed
        assert resumed["detail"].endswith("the alert keeps its buttons"), resumed
        assert moonraker_server.print_state() == "paused"
        cancelled = press("cancel")
        assert "answered already" not in cancelled["detail"], cancelled
        wait_until("the cancel", lambda: moonraker_server.print_state() == "cancelled", 30)
    finally:
        assert daemon.stop(timeout=30) == 0, daemon.log
