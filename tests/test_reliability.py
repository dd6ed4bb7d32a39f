"""Daemon-level faults: `python -m watchdog run` as a real process against the real servers.

The component tests (test_mqtt_faults, test_act_faults, test_capture, test_http) cover each
part alone; here the whole daemon meets the fault, the way a user's night goes:
- the broker is away when the failure comes, and the daemon may even restart meanwhile:
  every alert raised is delivered once the broker is back, exactly once;
- the printer's API goes away mid-print, or its key changes: the daemon keeps watching,
  says so in one log line, and the alert tells the user the pause failed so they act;
- the storage folder is read-only: alerts still go out, the failure is logged once;
- a short run of benchmarks/soak.py with every fault kind (the 20,000-frame soak is not CI);
- a pause that fails slowly does not re-alert on the next frames (found by the soak).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.daemon_helpers import DaemonProcess, free_port, wait_until, write_config

pytestmark = pytest.mark.servers

PRINTER = "ender3"
WATCHER_API_LINE = f"WARNING watchdog.watcher: {PRINTER}: printer API"  # the watcher's line when it stops answering


def daemon_config(
    tmp_path: Path,
    bundle: Path,
    broker,
    prefix: str,
    camera_url: str,
    *,
    api: dict[str, Any] | None = None,
    action: str = "pause",
    cooldown_s: float = 600,
    storage: Path | None = None,
    http_port: int | None = None,
) -> Path:
    """A one-printer config with short intervals, timeouts and retries (tests stay bounded)."""
    return write_config(
        tmp_path / "config.yaml",
        model=str(bundle),
        mqtt=broker.mqtt_settings(topic_prefix=prefix, homeassistant={"enabled": False}),
        http={"listen": f"127.0.0.1:{http_port or free_port()}"},
        storage={"dir": str(storage or tmp_path / "state")},
        printers=[
            {
                "name": PRINTER,
                "camera": {"source": camera_url, "interval_s": 0.25, "timeout_s": 3},
                "api": (api or {"kind": "none"}) | ({"timeout_s": 2, "retries": 1} if api else {}),
                "detection": {"consecutive": 3, "cooldown_s": cooldown_s},
                "action": action,
            }
        ],
    )


def incidents(storage: Path) -> list[str]:
    folder = storage / "incidents" / PRINTER
    return (
        sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        if folder.is_dir()
        else []
    )


def pending(storage: Path) -> list[str]:
    """Alerts in the MQTT outbox (written before publishing, removed on the broker's PUBACK)."""
    return sorted(p.parent.name for p in (storage / "outbox" / "mqtt").glob("*/entry.json"))


def api_lines(log: str) -> list[str]:
    """The watcher's printer-API lines, without their time stamps."""
    return [ln.split(WATCHER_API_LINE, 1)[1] for ln in log.splitlines() if WATCHER_API_LINE in ln]


def assert_logged_once(log: str) -> None:
    """One warning for the outage, however many polls met it."""
    assert len(api_lines(log)) == 1, log


def status(port: int) -> dict[str, Any]:
    return requests.get(f"http://127.0.0.1:{port}/status", timeout=5).json()["printers"][PRINTER]


def wait_watching_normal(port: int, daemon: DaemonProcess, timeout: float = 60) -> None:
    """Normal frames are being scored again and the watcher is armed: no alert can follow."""
    wait_until(
        "the watcher back to 'watching'",
        lambda: status(port)["state"] == "watching",
        timeout,
        lambda: daemon.log,
    )


def alert_ids(sub, prefix: str) -> list[str]:
    return [m.json()["incident"] for m in sub.received(f"{prefix}/{PRINTER}/alert")]


def settle(sub, prefix: str, scores: int = 3) -> None:
    """Wait for a few more score messages: MQTT keeps one client's order, so an alert sent
    twice before them would already be here."""
    n = len(sub.received(f"{prefix}/{PRINTER}/score"))
    sub.wait_count(f"{prefix}/{PRINTER}/score", n + scores, timeout=60)


def reload_times(daemon: DaemonProcess, sub, prefix: str, times: int) -> None:
    """SIGHUP ``times`` times, each applied and followed by a few scores of its watcher."""
    for n in range(1, times + 1):
        daemon.signal(signal.SIGHUP)
        wait_until(
            f"reload {n} applied",
            lambda n=n: daemon.log.count("INFO watchdog.daemon: reloaded ") >= n,
            30,
            lambda: daemon.log,
        )
        settle(sub, prefix)


def start_daemon(
    tmp_path: Path,
    bundle: Path,
    broker,
    prefix: str,
    camera,
    normal_frames,
    printer=None,
    **kw: Any,
):
    """Subscriber, normal frames, a print (when a printer is given), the daemon scoring:
    (subscriber, daemon, http port, config path)."""
    sub = broker.subscriber(f"{prefix}/#")
    camera.set_frames(normal_frames)
    if printer is not None:
        printer.start_print()
        kw["api"] = printer.api()
    port = free_port()
    config = daemon_config(
        tmp_path, bundle, broker, prefix, camera.snapshot_url, http_port=port, **kw
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        sub.wait_count(f"{prefix}/{PRINTER}/score", 3, timeout=90)
    except BaseException:
        daemon.stop()
        sub.close()
        raise
    return sub, daemon, port, config


# --------------------------------------------------------------------------- (a) broker away


def page_delivered(port: int) -> dict[str, bool]:
    """Each incident's "MQTT: delivered" as the dashboard's Incidents page gets it."""
    found = requests.get(f"http://127.0.0.1:{port}/api/incidents", timeout=10).json()
    return {i["incident"]: i["delivered"] for i in found}


def test_alerts_raised_while_the_broker_is_away_are_delivered_exactly_once_even_across_a_restart(
    tmp_path,
    tiny_bundle,
    mosquitto_factory,
    unique_prefix,
    camera_server,
    normal_frames,
    anomalous_frames,
) -> None:
    broker = mosquitto_factory()
    p, storage = unique_prefix, tmp_path / "state"
    # notify re-arms cooldown_s after each alert: a failure shown long enough raises several.
    sub, daemon, port, config = start_daemon(
        tmp_path,
        tiny_bundle,
        broker,
        p,
        camera_server,
        normal_frames,
        action="notify",
        cooldown_s=1.0,
        storage=storage,
    )
    try:
        # 1. The broker goes away, the print fails, the broker comes back: same daemon.
        broker.stop()
        camera_server.set_frames(anomalous_frames)
        wait_until(  # the outbox holds raised alerts only (an incident folder may be a draft)
            "two alerts raised", lambda: len(pending(storage)) >= 2, 60, lambda: daemon.log
        )
        camera_server.set_frames(normal_frames)
        wait_watching_normal(port, daemon)
        first = incidents(storage)
        assert pending(storage) == first and alert_ids(sub, p) == []
        # the Incidents page said "MQTT: delivered" for these (it read a marker no longer kept)
        assert page_delivered(port) == dict.fromkeys(first, False)
        broker.start()
        sub.wait_count(f"{p}/{PRINTER}/alert", len(first), timeout=60)
        wait_until(
            "pending markers cleared", lambda: pending(storage) == [], 30, lambda: daemon.log
        )
        settle(sub, p)
        assert sorted(alert_ids(sub, p)) == first
        assert page_delivered(port) == dict.fromkeys(first, True)

        # 2. Away again; this time the daemon is stopped before the broker returns.
        broker.stop()
        camera_server.set_frames(anomalous_frames)
        wait_until(
            "another alert raised",
            lambda: len(incidents(storage)) > len(first),
            60,
            lambda: daemon.log,
        )
        camera_server.set_frames(normal_frames)
        wait_watching_normal(port, daemon)
    finally:
        rc = daemon.stop()
    assert rc == 0, daemon.log
    raised = incidents(storage)
    assert pending(storage) == sorted(set(raised) - set(first))

    broker.start()
    daemon = DaemonProcess(config, tmp_path / "daemon2.log")  # same config and storage folder
    try:
        sub.wait_count(f"{p}/{PRINTER}/alert", len(raised), timeout=60)
        wait_until(
            "pending markers cleared", lambda: pending(storage) == [], 30, lambda: daemon.log
        )
        settle(sub, p)
        delivered = alert_ids(sub, p)
        assert sorted(delivered) == raised, f"delivered {delivered}, raised {raised}"
        assert len(delivered) == len(set(delivered))  # nothing twice
        assert "not yet delivered will be sent" in daemon.log
    finally:
        assert daemon.stop() == 0, daemon.log
    sub.close()


# --------------------------------------------------------------------------- (b, c) printer API


class _Octo:
    """What the tests need of the real OctoPrint: its API config, a print, its state."""

    kind = "octoprint"

    def __init__(self, server) -> None:
        self.s = server

    def api(self) -> dict[str, Any]:
        return {"kind": "octoprint", "url": self.s.url, "api_key": self.s.api_key}

    def start_print(self) -> None:
        self.s.start_print()

    def paused(self) -> bool:
        return bool(self.s.flags().get("paused"))

    def printing(self) -> bool:
        return self.s.printing()

    def stop(self) -> None:
        self.s.stop()

    def come_back(self) -> None:
        """OctoPrint restarted loses its printer connection and its print: a new print starts."""
        self.s.reset()
        self.s.start_print()

    def change_key(self) -> None:
        r = self.s.post("/api/access/users/admin/apikey", {})
        assert r.status_code == 200, f"new OctoPrint key: HTTP {r.status_code} {r.text}"
        self._use_key(r.json()["apikey"])

    def _use_key(self, key: str) -> None:
        self.s.api_key = key  # the session fixture follows, so later tests use the new key
        self.s.http.headers["X-Api-Key"] = key


class _Moon(_Octo):
    kind = "moonraker"

    def api(self) -> dict[str, Any]:
        return {"kind": "moonraker", "url": self.s.url, "api_key": self.s.api_key}

    def paused(self) -> bool:
        return self.s.print_state() == "paused"

    def come_back(self) -> None:
        """Moonraker restarted finds Klippy still printing the same job."""
        self.s.start()

    def change_key(self) -> None:
        r = self.s.post("/access/api_key")
        assert r.status_code == 200, f"new Moonraker key: HTTP {r.status_code} {r.text}"
        self._use_key(r.json()["result"])


@pytest.fixture(params=["octoprint", "moonraker"])
def printer(request) -> _Octo:
    if request.param == "octoprint":
        return _Octo(request.getfixturevalue("octoprint_server"))
    return _Moon(request.getfixturevalue("moonraker_server"))


def _failed_alert(sub, prefix: str, daemon: DaemonProcess) -> dict[str, Any]:
    alert = sub.wait_for(f"{prefix}/{PRINTER}/alert", timeout=60).json()
    assert alert["action"] == "pause", alert
    assert alert["action_result"]["outcome"] == "failed", alert
    assert "pause failed" in alert["message"], alert  # the user reads that they must act
    assert daemon.alive(), daemon.log
    return alert


def test_printer_api_stopped_mid_print_is_reported_and_watching_resumes(
    tmp_path,
    tiny_bundle,
    mosquitto,
    unique_prefix,
    camera_server,
    printer,
    normal_frames,
    anomalous_frames,
) -> None:
    p = unique_prefix
    sub, daemon, port, _ = start_daemon(
        tmp_path, tiny_bundle, mosquitto, p, camera_server, normal_frames, printer, cooldown_s=3.0
    )
    try:
        printer.stop()
        wait_until(
            "the API failure in the log",
            lambda: WATCHER_API_LINE in daemon.log,
            30,
            lambda: daemon.log,
        )
        settle(sub, p, scores=5)  # still watching: the print was running when the API went away
        st = status(port)
        # said as the state (an automation on printer_offline), its frames still judged
        assert st["state"] in ("printer_offline", "anomaly") and st["watched"], st
        assert st["printer_state"] == "offline", st
        assert "connection refused" in st["printer_detail"], st  # what the page shows

        camera_server.set_frames(anomalous_frames)
        alert = _failed_alert(sub, p, daemon)
        camera_server.set_frames(normal_frames)
        assert "connection refused" in alert["action_result"]["detail"], alert
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert_logged_once(daemon.log)  # not one line per poll

        printer.come_back()
        wait_watching_normal(port, daemon)
        # the watcher's next poll says so (watching resumed already when the cooldown ended)
        wait_until(
            "the API's return logged",
            lambda: "printer API answers again" in daemon.log,
            30,
            lambda: daemon.log,
        )
        camera_server.set_frames(anomalous_frames)
        wait_until(
            "the real server to report the print paused", printer.paused, 60, lambda: daemon.log
        )
        alerts = sub.wait_count(f"{p}/{PRINTER}/alert", 2, timeout=30)
        assert alerts[-1].json()["action_result"]["outcome"] == "done", alerts[-1].json()
        assert len(alerts) == 2
        assert "step failed" not in daemon.log, daemon.log  # no traceback: handled, not survived
    finally:
        camera_server.set_frames(normal_frames)
        rc = daemon.stop()
        sub.close()
    assert rc == 0, daemon.log


def test_reloads_and_an_api_restart_leave_no_connection_to_the_printer_behind(
    tmp_path, tiny_bundle, mosquitto, unique_prefix, camera_server, printer, normal_frames
) -> None:
    """Found by the soak: each reload's old watchers kept their printer client's kept-alive
    connection open, half-closed once the API restarted (six after six reloads): a daemon
    reloaded now and then for months would run out of descriptors."""
    from benchmarks.soak import open_files

    p = unique_prefix
    sub, daemon, _, _ = start_daemon(
        tmp_path, tiny_bundle, mosquitto, p, camera_server, normal_frames, printer
    )
    api_port = urlsplit(printer.api()["url"]).port or 0
    try:
        reload_times(daemon, sub, p, 5)  # each new watcher asks the printer
        printer.stop()  # the API restarts: it closes its end of every connection
        printer.come_back()
        settle(sub, p, scores=5)
        held = {
            kind: count
            for kind, count in open_files(daemon.proc.pid, {api_port: "printer API"}).items()
            if "printer API" in kind
        }
        assert sum(held.values()) <= 1, held
    finally:
        rc = daemon.stop()
        sub.close()
    assert rc == 0, daemon.log


def test_reloads_never_open_a_camera_that_serves_one_stream_twice(
    tmp_path, tiny_bundle, mosquitto, unique_prefix, camera_server, normal_frames
) -> None:
    """A camera that serves one stream at a time (an ESP32-CAM; a USB device is the same): a
    reload's new watcher connected while the old one still read it, was refused, and the
    camera went "offline" for a backoff at every settings save (and once at the start, when
    the stream was found by a request the camera had not yet seen go)."""
    p = unique_prefix
    sub = mosquitto.subscriber(f"{p}/#")
    camera_server.set_frames(normal_frames)
    wait_until("earlier readers gone", lambda: camera_server.streaming == 0, 10)
    camera_server.one_stream = True
    config = daemon_config(tmp_path, tiny_bundle, mosquitto, p, camera_server.stream_url)
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        sub.wait_count(f"{p}/{PRINTER}/score", 3, timeout=90)
        reload_times(daemon, sub, p, 3)  # each new watcher reads the camera
        # refused for a moment while the camera has not yet seen the old reader go, never
        # "offline"
        assert "offline" not in daemon.log, daemon.log
    finally:
        rc = daemon.stop()
        sub.close()
    assert rc == 0, daemon.log


def test_api_key_changed_mid_print_is_a_failed_pause_in_the_alert(
    tmp_path,
    tiny_bundle,
    mosquitto,
    unique_prefix,
    camera_server,
    printer,
    normal_frames,
    anomalous_frames,
) -> None:
    p = unique_prefix
    sub, daemon, port, _ = start_daemon(
        tmp_path, tiny_bundle, mosquitto, p, camera_server, normal_frames, printer
    )
    old_key = printer.s.api_key
    try:
        printer.change_key()
        wait_until(
            "the rejected key in the log",
            lambda: WATCHER_API_LINE in daemon.log,
            30,
            lambda: daemon.log,
        )
        settle(sub, p, scores=3)
        camera_server.set_frames(anomalous_frames)
        alert = _failed_alert(sub, p, daemon)
        assert "API key rejected" in alert["action_result"]["detail"], alert
        assert alert["action_result"]["attempts"] == 1  # a rejected key is not retried
        assert printer.printing()  # nothing paused it: the user has to
        [line] = api_lines(daemon.log)  # one line, not one per poll
        assert "API key rejected" in line and "api.api_key" in line
    finally:
        camera_server.set_frames(normal_frames)
        rc = daemon.stop()
        sub.close()
    assert rc == 0, daemon.log
    for text in (daemon.log, json.dumps(alert)):
        assert old_key not in text and printer.s.api_key not in text


# --------------------------------------------------------------------------- (d) read-only storage


def test_read_only_storage_alerts_still_go_out_and_the_failure_is_logged_once(
    tmp_path,
    tiny_bundle,
    mosquitto,
    unique_prefix,
    camera_server,
    readonly_storage,
    normal_frames,
    anomalous_frames,
) -> None:
    p = unique_prefix
    sub, daemon, port, _ = start_daemon(
        tmp_path,
        tiny_bundle,
        mosquitto,
        p,
        camera_server,
        normal_frames,
        action="notify",
        cooldown_s=0.5,
        storage=readonly_storage,
    )
    try:
        camera_server.set_frames(anomalous_frames)
        sub.wait_count(f"{p}/{PRINTER}/alert", 3, timeout=60)
        camera_server.set_frames(normal_frames)
        wait_watching_normal(port, daemon)
        settle(sub, p)
        raised = [ln for ln in daemon.log.splitlines() if f"Alert {PRINTER}:" in ln]
        delivered = alert_ids(sub, p)
        assert len(delivered) == len(raised) >= 3 and len(set(delivered)) == len(delivered)
        assert daemon.log.count("cannot save incident") == 1, daemon.log
        assert f"storage folder {readonly_storage} is not writable" in daemon.log  # at start
        assert daemon.alive()
    finally:
        rc = daemon.stop()
        sub.close()
    assert rc == 0, daemon.log


# --------------------------------------------------------------------------- short soak


def test_short_soak_with_random_faults_loses_nothing_and_never_pauses_a_good_print(
    tmp_path,
    tiny_bundle,
    mosquitto_factory,
    moonraker_server,
    camera_server,
    normal_frames,
    anomalous_frames,
) -> None:
    """benchmarks/soak.py, 300 frames at interval_s 0: one of each fault and anomaly kind.

    Only counts are asserted here; RSS, file descriptors and threads over 20,000 frames are
    the benchmark's (docs/reliability.md)."""
    from benchmarks.soak import EVENTS, Soak

    soak = Soak(
        mosquitto_factory(),
        moonraker_server,
        camera_server,
        tiny_bundle,
        tmp_path,
        frames=300,
        seed=7,
        normal=normal_frames,
        anomalous=anomalous_frames,
        log=lambda m: None,
    )
    res = soak.run()
    s = res.summary
    assert set(e.kind for e in res.episodes) == set(EVENTS), res.episodes
    assert res.frames >= 300 and res.daemon_exit == 0 and res.step_failures == 0, s
    assert res.raised == res.delivered >= 3 and res.duplicates == 0 and res.undelivered == [], s
    assert s["anomaly_episodes_handled"] == s["anomaly_episodes"], res.episodes
    assert res.pauses_outside_anomalies == 0 and res.incidents_on_normal_frames == [], s
    assert s["second_daemons_refused"] == s["second_daemons"] >= 1, res.episodes
    assert s["reloads_refused"] == s["reloads_applied"] == s["bad_reloads"] >= 1, res.episodes


# --------------------------------------------------------------------------- cooldown after a failed pause


def test_a_slow_failed_pause_does_not_re_alert_on_the_next_frames(
    tmp_path, tiny_bundle, anomalous_frames, bad_server
) -> None:
    """Found by the soak: the cooldown after a failed pause counted from the trigger frame, so
    a pause that spent longer than cooldown_s on retries re-armed the watcher at once and the
    next three frames raised a second alert. The cooldown now starts when the action is over.

    In-process, with real parts: the tiny bundle, a folder camera and the real Moonraker client
    against a server that says printing but answers 503 to the pause (3 tries over 3 s, cooldown 2 s)."""
    import cv2

    from tests.plugins.printers import api_config
    from watchdog.comms.notifier import Notifier
    from watchdog.config import (
        CameraConfig,
        DetectionConfig,
        MqttConfig,
        PrinterConfig,
        StorageConfig,
    )
    from watchdog.detection.bundle import Bundle
    from watchdog.devices.printers import make_printer
    from watchdog.watcher import build_watcher

    frames = tmp_path / "failure"
    frames.mkdir()
    for i in range(12):
        cv2.imwrite(str(frames / f"f_{i:02d}.jpg"), anomalous_frames[i % len(anomalous_frames)])
    bad_server.respond(
        200,
        json.dumps(
            {
                "result": {
                    "status": {"webhooks": {"state": "ready"}, "print_stats": {"state": "printing"}}
                }
            }
        ),
    )
    bad_server.respond(503, '{"error": {"message": "Klippy busy"}}', path="/printer/print/pause")
    cfg = PrinterConfig(
        name=PRINTER,
        camera=CameraConfig(source=str(frames), interval_s=0),
        detection=DetectionConfig(consecutive=3, cooldown_s=2.0),
        action="pause",
    )
    printer = make_printer(
        api_config("moonraker", bad_server.url, retries=2), backoff_s=1.0
    )  # 1 + 2 s of retries
    watcher = build_watcher(
        cfg,
        Bundle.load(tiny_bundle),
        Notifier(MqttConfig(), StorageConfig(dir=tmp_path / "state"), [PRINTER]),
        printer=printer,
    )
    records = [watcher.step() for _ in range(9)]  # the 3 s of retries are spent in step 3
    alerts = [r.alert.to_dict() for r in records if r.alert is not None]
    assert [r.action for r in records].count("pause") == 1, [r.line() for r in records]
    assert (
        alerts[0]["action_result"]["outcome"] == "failed"
        and alerts[0]["action_result"]["attempts"] == 3
    )
