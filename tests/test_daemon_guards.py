"""The running daemon refuses what would stop it or lose an alert, as a real process.

- a reload whose camera cannot be opened, whose model.json nests too deeply or whose model
  disagrees with its model.json is refused in one log line; the old config keeps running;
- a changed ``http.listen`` or ``storage.dir`` is said to need a restart, and the running
  daemon keeps all of its storage on the folder it started with;
- a second daemon on the same storage folder exits 2 naming the folder and the first's pid;
- SIGTERM while a pause hangs longer than the shutdown wait: the alert is on disk before the
  pause starts, and delivered after the restart;
- a printer whose step fails every time makes the daemon unhealthy;
- commands piling up behind a hung camera never hold every thread of the web server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.daemon_helpers import DaemonProcess, free_port, run_cli, wait_until, write_config
from tests.plugins.camera import CameraServer
from tests.plugins.printers import BadServer
from watchdog.detection.bundle import default_bundle_path

PRINTER = "p1"


def write(
    config: Path,
    camera: Any,
    model: Path | None = None,
    listen: str = "",
    storage: Path | None = None,
    mqtt: dict[str, Any] | None = None,
    **printer: Any,
) -> Path:
    return write_config(
        config,
        model=str(model or default_bundle_path()),
        mqtt=mqtt or {"host": ""},
        http={"listen": listen},
        storage={"dir": str(storage or config.parent / "state")},
        printers=[
            {"name": PRINTER, "camera": {"source": camera, "interval_s": 0.2, "timeout_s": 3}}
            | printer
        ],
    )


def refused_lines(log: str) -> list[str]:
    return [ln for ln in log.splitlines() if "reload refused, keeping the running config" in ln]


def reload_and_wait(daemon: DaemonProcess, what: str) -> None:
    before = len(refused_lines(daemon.log)) + daemon.log.count("reloaded ")
    daemon.signal(signal.SIGHUP)
    wait_until(
        f"the reload of {what} handled",
        lambda: len(refused_lines(daemon.log)) + daemon.log.count("reloaded ") > before,
        30,
        lambda: daemon.log,
    )


def scored(listen: str) -> bool:
    try:
        status = requests.get(f"http://{listen}/status", timeout=5).json()
    except requests.RequestException:
        return False  # not listening yet
    return status["printers"][PRINTER]["score"] is not None


def mismatched_bundle(folder: Path) -> Path:
    """The default model with a model.json that says 64x32 input: consistent on paper, not with the model."""
    shutil.copytree(default_bundle_path(), folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["preprocess"]["width"], meta["preprocess"]["height"] = 64, 32
    meta["input_shape"] = meta["output_shape"] = [1, 32, 64, 3]
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def _catches_sighup(pid: int) -> bool:
    """Whether the process has a handler of its own for SIGHUP (``SigCgt`` in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) & (1 << (signal.SIGHUP - 1)))


def test_a_reload_asked_for_while_the_daemon_starts_is_carried_out_once_it_runs(
    tmp_path: Path, camera_server: CameraServer
) -> None:
    """SIGHUP ended the daemon when it came before its handler was in place, after its
    config and model had loaded (``kill -HUP`` by hand, a script reloading after an edit):
    it is held from the first lines of ``run`` and carried out once the daemon runs."""
    listen = f"127.0.0.1:{free_port()}"
    config = write(tmp_path / "config.yaml", camera_server.snapshot_url, listen=listen)
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_until("SIGHUP caught", lambda: _catches_sighup(daemon.proc.pid), 30, lambda: "")
        daemon.signal(signal.SIGHUP)  # the config and the model are still loading by now
        daemon.wait_up(f"http://{listen}")
        wait_until("the reload", lambda: "reloaded " in daemon.log, 30, lambda: daemon.log)
        assert daemon.alive()
    finally:
        assert daemon.stop() == 0, daemon.log
    # only the daemon holds a reload: another command still ends on a hangup
    code = (
        "import signal, sys; sys.argv = ['watchdog', '{}', '--config', 'c.yaml']; "
        "import watchdog.__main__; print(signal.getsignal(signal.SIGHUP) is signal.SIG_DFL)"
    )
    for command, default in (("run", "False"), ("collect", "True")):
        shown = run_cli_python(code.format(command))
        assert shown == default, (command, shown)


def run_cli_python(code: str) -> str:
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


def test_a_reload_that_cannot_be_applied_is_refused_and_the_daemon_keeps_watching(
    tmp_path: Path, camera_server: CameraServer
) -> None:
    port = free_port()
    listen = f"127.0.0.1:{port}"
    config = write(tmp_path / "config.yaml", camera_server.snapshot_url, listen=listen)
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    nested = tmp_path / "nested"
    shutil.copytree(default_bundle_path(), nested)
    (nested / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    cases = {
        "a missing camera folder": dict(camera=str(tmp_path / "no-such-folder")),
        "an ftp:// camera": dict(camera="ftp://127.0.0.1/cam.jpg"),
        "a deeply nested model.json": dict(camera=camera_server.snapshot_url, model=nested),
        "a model whose input disagrees with model.json": dict(
            camera=camera_server.snapshot_url, model=mismatched_bundle(tmp_path / "mismatch")
        ),
    }
    try:
        wait_until("scoring", lambda: scored(listen), 90, lambda: daemon.log)
        for what, kw in cases.items():
            write(config, listen=listen, **kw)
            reload_and_wait(daemon, what)
            assert daemon.alive(), f"{what}: the daemon died\n{daemon.log[-3000:]}"
        lines = refused_lines(daemon.log)
        assert len(lines) == len(cases), daemon.log
        assert "no-such-folder" in lines[0] and "'ftp'" in lines[1]
        assert "nested too deeply" in lines[2] and "does not match" in lines[3], lines
        assert "Traceback" not in daemon.log
        # the old config is still watching
        n = camera_server.requests
        wait_until(
            "frames still fetched", lambda: camera_server.requests > n + 3, 30, lambda: daemon.log
        )
        assert requests.get(f"http://{listen}/healthz", timeout=5).status_code == 200

        # http.listen cannot change without a restart: say so, and keep serving on the old address
        write(config, camera_server.snapshot_url, listen=f"127.0.0.1:{free_port()}")
        reload_and_wait(daemon, "a new http.listen")
        assert (
            "http.listen changed to" in daemon.log
            and "takes effect at the next restart" in daemon.log
        )
        assert requests.get(f"http://{listen}/healthz", timeout=5).status_code == 200

        # nor can storage.dir: the running daemon keeps all of it on the folder it started
        # with (settings saved on the page land beside its incidents), until the restart
        moved = tmp_path / "moved-state"
        write(config, camera_server.snapshot_url, listen=listen, storage=moved)
        reload_and_wait(daemon, "a new storage.dir")
        assert "storage changed in the config file: applied at the next restart" in daemon.log
        # said where the owner looks too, not only in the journal
        status = requests.get(f"http://{listen}/status", timeout=5).json()
        assert status["waiting_for_restart"] == ["storage"], status
        page = requests.get(f"http://{listen}/", timeout=5).text
        token = page.split('name="csrf-token" content="')[1].split('"')[0]
        saved = requests.post(
            f"http://{listen}/api/printers/{PRINTER}/settings",
            json={"consecutive": 4},
            headers={"X-CSRF-Token": token},
            timeout=10,
        )
        assert saved.status_code == 200, saved.text
        assert (tmp_path / "state" / "overrides.json").is_file() and not moved.exists()
        # and applied: the reload reads the page's settings from the folder in use (it read
        # the new folder's, which has none, and dropped them while answering "applied")
        assert saved.json()["ok"] and "applied" in saved.json()["detail"], saved.text
        state = requests.get(f"http://{listen}/api/state", timeout=5).json()["printers"][0]
        assert state["settings"]["consecutive"] == 4, state["settings"]
        reload_and_wait(daemon, "the same config again")
        state = requests.get(f"http://{listen}/api/state", timeout=5).json()["printers"][0]
        assert state["settings"]["consecutive"] == 4, state["settings"]

        # MQTT's certificates wait for the restart, which would exit 2 on these: refused
        # now, as check-config refuses them (a FIFO hung the start without a word)
        garbage, fifo = tmp_path / "ca.pem", tmp_path / "ca.fifo"
        garbage.write_text("not a certificate")
        os.mkfifo(fifo)
        for ca, said in ((garbage, "cannot load the certificates"), (fifo, "not a regular")):
            tls = {"host": "127.0.0.1", "port": free_port(), "tls": {"ca_file": str(ca)}}
            write(config, camera_server.snapshot_url, listen=listen, mqtt=tls)
            reload_and_wait(daemon, f"an MQTT CA file {ca.name}")
            assert said in refused_lines(daemon.log)[-1] and "mqtt.tls" in daemon.log
        assert daemon.alive()
    finally:
        rc = daemon.stop()
    assert rc == 0, daemon.log


def test_damaged_files_in_the_storage_folder_stop_no_start_and_hang_no_page(
    tmp_path: Path, camera_server: CameraServer
) -> None:
    """The daemon's own small files, damaged by something else: last answers nested beyond
    what Python's parser takes stopped every start with a traceback (systemd restarting it
    for good, no printer watched), and a FIFO in place of an alert's file hung the page's
    list of alerts. Each is said in the log and left out; the daemon watches."""
    listen = f"127.0.0.1:{free_port()}"
    config = write(tmp_path / "c.yaml", camera_server.snapshot_url, listen=listen)
    state = tmp_path / "state"
    alert = state / "incidents" / PRINTER / "20261207T000000000Z-abcdef"
    alert.mkdir(parents=True)
    os.mkfifo(alert / "alert.json")
    (state / "last-commands.json").write_text("[" * 200_000)
    daemon = DaemonProcess(config, tmp_path / "d.log")
    try:
        wait_until("watching", lambda: "watching 1 printer" in daemon.log, 90, lambda: daemon.log)
        assert "last-commands.json not read (nested too deeply" in daemon.log, daemon.log
        listed = requests.get(f"http://{listen}/api/incidents", timeout=10)
        assert listed.status_code == 200 and listed.json() == [], listed.text
        assert daemon.alive() and "Traceback" not in daemon.log
    finally:
        rc = daemon.stop()
    assert rc == 0, daemon.log


def test_a_hung_daemon_killed_by_the_systemd_watchdog_shows_where_each_thread_was(
    tmp_path: Path, camera_server: CameraServer
) -> None:
    """systemd kills a daemon that stopped pinging with SIGABRT (``WatchdogSec=``): the
    journal must say where it hung, not only that it was killed."""
    daemon = DaemonProcess(
        write(tmp_path / "c.yaml", camera_server.snapshot_url), tmp_path / "d.log"
    )
    try:
        wait_until("watching", lambda: "watching 1 printer" in daemon.log, 90, lambda: daemon.log)
        daemon.signal(signal.SIGABRT)
        assert daemon.proc.wait(30) == -signal.SIGABRT
    finally:
        daemon.stop()
    log = daemon.log
    assert "Fatal Python error: Aborted" in log, log
    # The abort may land on a thread just starting (no Python frame yet), which faulthandler
    # heads "Thread", not "Current thread": count both, the main and the watcher at least.
    assert len(re.findall(r"^(?:Current thread|Thread) 0x", log, re.MULTILINE)) >= 2, log
    assert "watchdog/daemon.py" in log and "watchdog/watcher.py" in log, log


def test_a_second_daemon_on_the_same_storage_folder_exits_2_naming_it_and_the_first(
    tmp_path: Path, camera_server: CameraServer
) -> None:
    storage = tmp_path / "state"
    first = DaemonProcess(
        write(tmp_path / "a.yaml", camera_server.snapshot_url, storage=storage), tmp_path / "a.log"
    )
    try:
        wait_until(
            "the first daemon watching",
            lambda: "watching 1 printer" in first.log,
            90,
            lambda: first.log,
        )
        second = run_cli(
            "run",
            "--config",
            str(write(tmp_path / "b.yaml", camera_server.snapshot_url, storage=storage)),
            timeout=60,
        )
        assert second.returncode == 2
        assert second.stderr.strip().splitlines()[-1] == (
            f"error: storage folder {storage} is in use by another watchdog daemon (pid {first.proc.pid}); "
            "stop it, or give this one its own storage.dir"
        )
        assert first.alive()
    finally:
        assert first.stop() == 0, first.log
    # the lock goes with the process: a new daemon starts
    third = DaemonProcess(
        write(tmp_path / "c.yaml", camera_server.snapshot_url, storage=storage), tmp_path / "c.log"
    )
    try:
        wait_until(
            "a new daemon watching",
            lambda: "watching 1 printer" in third.log,
            90,
            lambda: third.log,
        )
    finally:
        assert third.stop() == 0, third.log


@pytest.mark.servers
def test_a_daemon_whose_dashboard_address_is_taken_exits_2_with_notifications_configured(
    tmp_path: Path, camera_server: CameraServer
) -> None:
    """The notification senders were started before the dashboard's address was bound: once
    it was found in use, the error was printed and the process never ended (their threads
    held its exit, SIGTERM only recorded), MQTT telling Home Assistant it watched."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = write(tmp_path / "c.yaml", camera_server.snapshot_url, listen=f"127.0.0.1:{port}")
    data = yaml.safe_load(config.read_text())
    data["notify"] = [{"url": "json://127.0.0.1:9/hook", "name": "phone"}]
    config.write_text(yaml.safe_dump(data))
    try:
        r = run_cli("run", "--config", str(config), timeout=60)
    finally:
        taken.close()
    assert r.returncode == 2, r.stderr
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: http.listen 127.0.0.1:{port}: cannot listen")
    ), r.stderr


def test_an_alert_whose_pause_hangs_through_sigterm_is_delivered_after_the_restart(
    tmp_path: Path,
    tiny_bundle: Path,
    mosquitto,
    unique_prefix: str,
    camera_server: CameraServer,
    bad_server,
    anomalous_frames,
) -> None:
    """api.timeout_s 60 > the 15 s shutdown wait: the pause is still hanging when the daemon exits."""
    p, storage = unique_prefix, tmp_path / "state"
    printing = json.dumps(
        {
            "result": {
                "status": {"webhooks": {"state": "ready"}, "print_stats": {"state": "printing"}}
            }
        }
    )
    bad_server.respond(200, printing)
    bad_server.hang(120, path="/printer/print/pause")
    camera_server.set_frames(anomalous_frames)
    config = write_config(
        tmp_path / "config.yaml",
        model=str(tiny_bundle),
        mqtt=mosquitto.mqtt_settings(topic_prefix=p, homeassistant={"enabled": False}),
        http={"listen": ""},
        storage={"dir": str(storage)},
        printers=[
            {
                "name": PRINTER,
                "camera": {"source": camera_server.snapshot_url, "interval_s": 0.2, "timeout_s": 3},
                "api": {"kind": "moonraker", "url": bad_server.url, "timeout_s": 60, "retries": 0},
                "detection": {"consecutive": 3, "cooldown_s": 600},
                "action": "pause",
            }
        ],
    )
    sub = mosquitto.subscriber(f"{p}/#")
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_until(
            "the pause sent (and hanging)",
            lambda: "/printer/print/pause" in bad_server.paths,
            90,
            lambda: daemon.log,
        )
        time.sleep(0.5)
        # while the pause is under way its draft is no incident yet: the dashboard said the
        # watchdog had stopped before the pause finished, and offered to cancel
        from watchdog.incidents import list_incidents

        assert list_incidents(storage, [PRINTER]) == []
        started = time.monotonic()
        rc = daemon.stop(timeout=40)
        assert rc == 0 and time.monotonic() - started < 30, daemon.log
        saved = [
            d for d in (storage / "incidents" / PRINTER).iterdir() if not d.name.startswith(".")
        ]
        assert len(saved) == 1 and (saved[0] / "pending").exists(), daemon.log
        alert = json.loads((saved[0] / "alert.json").read_text())
        assert (
            alert["action_result"]["outcome"] == "unknown"
            and "stopped before the pause finished" in alert["message"]
        )
        assert sub.received(f"{p}/{PRINTER}/alert") == []

        bad_server.respond(
            200,
            json.dumps(
                {
                    "result": {
                        "status": {
                            "webhooks": {"state": "ready"},
                            "print_stats": {"state": "standby"},
                        }
                    }
                }
            ),
        )
        again = DaemonProcess(config, tmp_path / "daemon2.log")
        try:
            got = sub.wait_for(f"{p}/{PRINTER}/alert", timeout=60).json()
            assert got["incident"] == saved[0].name and got["action_result"]["outcome"] == "unknown"
            wait_until(
                "delivered", lambda: not (saved[0] / "pending").exists(), 30, lambda: again.log
            )
            # an incident from this start on: listed, the pause's end unknown
            [listed] = list_incidents(storage, [PRINTER])
            assert listed.id == saved[0].name, again.log
        finally:
            assert again.stop() == 0, again.log
    finally:
        daemon.stop()
        sub.close()


def test_a_printer_whose_step_fails_every_time_makes_the_daemon_unhealthy(
    tmp_path: Path, camera_server: CameraServer
) -> None:
    """In-process (Daemon.healthy() is what /healthz and the systemd watchdog ask). The fault is
    injected: a detector that raises on every frame stands for any bug that fails each step."""
    from watchdog.comms.notifier import Notifier
    from watchdog.daemon import FAILED_STEPS_UNHEALTHY, Daemon

    daemon = Daemon(write(tmp_path / "config.yaml", camera_server.snapshot_url))
    daemon.notifier = Notifier(daemon.config.mqtt, daemon.config.storage, [PRINTER])
    watchers = daemon._make_watchers(daemon.config, daemon.bundle)
    watcher = watchers[PRINTER]
    real = watcher.detector.observe
    broken = threading.Event()

    def observe(*args: Any, **kw: Any) -> Any:
        if broken.is_set():
            raise RuntimeError("injected: every step fails")
        return real(*args, **kw)

    watcher.detector.observe = observe  # type: ignore[method-assign]
    daemon.running = daemon._start(watchers)
    try:
        wait_until("a healthy daemon", daemon.healthy, 30)
        broken.set()
        wait_until(  # both read at once: a step that never reaches the detector resets the count
            "unhealthy after failing steps",
            lambda: not daemon.healthy() and watcher.failing_steps >= FAILED_STEPS_UNHEALTHY,
            30,
        )
        broken.clear()
        wait_until("healthy again once a step succeeds", daemon.healthy, 30)
    finally:
        daemon._stop(daemon.running)


def _with_page(tmp_path: Path, printer: dict[str, Any]) -> tuple[Path, str]:
    """A config of one ``printer`` with the default model, the page on a free port and no
    MQTT; and the page's address."""
    port = free_port()
    config = write_config(
        tmp_path / "config.yaml",
        model=str(default_bundle_path()),
        mqtt={"host": ""},
        http={"listen": f"127.0.0.1:{port}"},
        storage={"dir": str(tmp_path / "state")},
        printers=[printer],
    )
    return config, f"http://127.0.0.1:{port}"


def _page_headers(base: str) -> dict[str, str]:
    """What the page's own requests carry: its CSRF token, read from the page."""
    token = requests.get(f"{base}/", timeout=5).text.split('name="csrf-token" content="')[1]
    return {"X-CSRF-Token": token.split('"')[0]}


def _press(base: str, headers: dict[str, str], printer: str, verb: str) -> tuple[int, str] | str:
    """A page button pressed: the answer's status and text, or what ended the request."""
    body = {"printer": printer, "verb": verb}
    try:
        r = requests.post(f"{base}/api/command", json=body, headers=headers, timeout=90)
    except requests.RequestException as exc:
        return type(exc).__name__
    return r.status_code, r.text


def _hung_octoprint(bad_server: BadServer) -> dict[str, Any]:
    """An OctoPrint printing, whose API hangs on the job's name and every command; its
    ``api`` settings."""
    printing = {
        "state": {"text": "Printing", "flags": {"printing": True}},
        "job": {"file": {"name": "a.gcode"}},
    }
    bad_server.respond(200, json.dumps(printing), path="/api/printer")
    bad_server.hang(60, "/api/job")
    return {"kind": "octoprint", "url": bad_server.url, "api_key": "k" * 32, "timeout_s": 6}


def test_commands_waiting_on_a_hung_camera_never_take_the_whole_web_server(
    tmp_path: Path, camera_server: CameraServer
) -> None:
    """A watcher answers commands between frames; with its camera hanging that can take the
    camera's whole timeout. Clicks piling up meanwhile are answered "busy" at once beyond the
    first two, so the page and /healthz still answer."""
    camera = {"source": camera_server.snapshot_url, "interval_s": 0.2, "timeout_s": 15}
    config, base = _with_page(tmp_path, {"name": PRINTER, "camera": camera})
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    answers: list[int] = []
    try:
        wait_until("scoring", lambda: scored(base.removeprefix("http://")), 90, lambda: daemon.log)
        headers = _page_headers(base)
        camera_server.set_fault("slow")  # the next frame drips in until the camera's timeout
        asked = camera_server.requests
        wait_until("the slow frame asked for", lambda: camera_server.requests > asked, 10)
        time.sleep(0.5)

        def click(verb: str) -> None:
            body = {"printer": PRINTER, "verb": verb}
            r = requests.post(f"{base}/api/command", json=body, headers=headers, timeout=60)
            answers.append(r.status_code)

        clicks = [threading.Thread(target=click, args=(v,)) for v in ("disable", "enable") * 2]
        for c in clicks:
            c.start()
        wait_until("two clicks answered busy", lambda: len(answers) >= 2, 10, lambda: daemon.log)
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        assert requests.get(f"{base}/", timeout=5).status_code == 200
        camera_server.set_fault(None)
        for c in clicks:
            c.join(60)
    finally:
        rc = daemon.stop()
    assert rc == 0, daemon.log
    assert sorted(answers) == [200, 200, 409, 409], answers


def test_a_stop_while_the_printers_api_hangs_answers_the_queued_command_and_ends_in_time(
    tmp_path: Path, camera_server: CameraServer, bad_server: BadServer
) -> None:
    """The owner pressed Pause, then Cancel, on the page while the printer's API hung; then
    the daemon was stopped. The Cancel was still sent to the printer after the stop, its
    request was never answered, and the stop took 30 s: systemd kills the daemon at 20."""
    api = _hung_octoprint(bad_server)
    camera = {"source": camera_server.snapshot_url, "interval_s": 0.5}
    config, base = _with_page(tmp_path, {"name": PRINTER, "camera": camera, "api": api})
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    answers: dict[str, tuple[int, str] | str] = {}
    try:
        daemon.wait_up(base, 90)
        headers = _page_headers(base)

        def click(verb: str) -> None:
            answers[verb] = _press(base, headers, PRINTER, verb)

        clicks = [threading.Thread(target=click, args=(v,)) for v in ("pause", "cancel")]
        clicks[0].start()
        wait_until("the pause sent", lambda: "POST /api/job" in bad_server.sent, 60)
        clicks[1].start()  # queued behind the pause, which hangs
        time.sleep(1.0)
        daemon.signal(signal.SIGTERM)
        stopped = time.monotonic()
        rc = daemon.proc.wait(20)  # the unit's TimeoutStopSec=
        took = time.monotonic() - stopped
        for c in clicks:
            c.join(10)
    finally:
        daemon.stop()
    assert rc == 0, daemon.log
    assert took < 20, took
    cancel = answers.get("cancel")
    assert isinstance(cancel, tuple) and "not done: the watchdog stopped" in cancel[1], answers
    assert "cancel attempt" not in daemon.log and "cancel failed" not in daemon.log, daemon.log


def test_a_printer_whose_api_hangs_never_makes_another_printers_buttons_busy(
    tmp_path: Path, camera_server: CameraServer, bad_server: BadServer
) -> None:
    """The owner pressed Pause, then Cancel, for a printer whose API hung: for as long as it
    hung, every other printer's page buttons (and phone buttons) were answered "busy". The
    other printer's command is carried out; the hung printer's third is the one refused."""
    api = _hung_octoprint(bad_server)
    camera = {"source": camera_server.snapshot_url, "interval_s": 0.5}
    config, base = _with_page(tmp_path, {"name": "hung", "camera": camera, "api": api})
    data = yaml.safe_load(config.read_text())
    data["printers"].append({"name": "fine", "camera": camera})
    config.write_text(yaml.safe_dump(data))
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    answers: dict[str, tuple[int, str] | str] = {}
    try:
        daemon.wait_up(base, 90)
        headers = _page_headers(base)

        def click(printer: str, verb: str) -> None:
            answers[f"{printer} {verb}"] = _press(base, headers, printer, verb)

        clicks = [threading.Thread(target=click, args=("hung", v)) for v in ("pause", "cancel")]
        clicks[0].start()
        wait_until("the pause sent", lambda: "POST /api/job" in bad_server.sent, 60)
        clicks[1].start()  # queued behind the pause, which hangs
        time.sleep(1.0)
        click("fine", "disable")
        click("hung", "disable")
        assert answers["fine disable"][0] == 200, answers
        status, text = answers["hung disable"]
        assert (status, json.loads(text)["detail"]) == (
            409,
            "busy: 2 earlier commands to hung are still waiting for its printer or camera to "
            "answer; try again in a moment",
        ), answers
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
    finally:
        daemon.stop()
        for c in clicks:
            c.join(30)


def test_an_mqtt_command_is_not_refused_while_the_pages_waits_hold_their_slots(
    tmp_path: Path, camera_server: CameraServer
) -> None:
    """In-process. The two slots keep the web server's threads from all waiting on printers;
    MQTT's commands wait in threads of their own. With both slots held (two hung printers'
    clicks), a Home Assistant switch was answered "busy" and dropped."""
    from watchdog.comms.notifier import Notifier
    from watchdog.control import Command, Verb
    from watchdog.daemon import COMMANDS_WAITING, Daemon

    daemon = Daemon(write(tmp_path / "config.yaml", camera_server.snapshot_url))
    daemon.notifier = Notifier(daemon.config.mqtt, daemon.config.storage, [PRINTER])
    daemon.running = daemon._start(daemon._make_watchers(daemon.config, daemon.bundle))
    try:
        for i in range(COMMANDS_WAITING):  # each its own printer's: none refused for its share
            assert daemon._waiting.take(f"hung{i}") is None
        from_page = daemon.dispatch(Command(PRINTER, Verb.DISABLE, source="web"))
        from_mqtt = daemon.dispatch(Command(PRINTER, Verb.DISABLE, source="mqtt"))
    finally:
        daemon._stop(daemon.running)
    assert not from_page.ok and from_page.detail.startswith("busy"), from_page
    assert from_mqtt.ok, from_mqtt
