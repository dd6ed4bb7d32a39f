"""Secrets stay secret, loose file modes are called out, printer TLS is verified by default.

The secrets-grep test runs the real daemon (at --debug: the chattiest it gets) against a
password-protected mosquitto and the real Moonraker, through a failure that pauses the
print, then looks for the API key and the MQTT password everywhere a user or another
program can see output: the log, check-config, /status and /metrics, every MQTT message
(subscribed to ``#``) and every file in the storage folder.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.daemon_helpers import (
    DaemonProcess,
    free_port,
    run_cli,
    wait_until,
    watchdog_cmd,
    write_config,
)
from tests.plugins.printers import BadServer
from watchdog.config import load_config

PRINTER = "ender3"
READABLE = "readable by other users"


class DebugDaemon(DaemonProcess):
    """`python -m watchdog --debug run`: debug logging is where secrets tend to slip out."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            watchdog_cmd("--debug", "run", "--config", str(config)),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )


def _leaks(secrets: list[str], where: str, text: str | bytes) -> list[str]:
    data = text.encode(errors="replace") if isinstance(text, str) else text
    return [f"{where} contains secret #{i}" for i, s in enumerate(secrets) if s.encode() in data]


@pytest.mark.servers
def test_secrets_appear_nowhere_after_a_run_with_an_alert(
    tmp_path,
    tiny_bundle,
    mosquitto_factory,
    unique_prefix,
    camera_server,
    moonraker_server,
    normal_frames,
    anomalous_frames,
    monkeypatch,
) -> None:
    broker = mosquitto_factory(auth=True)
    api_key = moonraker_server.api_key
    assert api_key, "Moonraker gave no API key"
    monkeypatch.setenv("WATCHDOG_TEST_API_KEY", api_key)  # the key comes from ${ENV} ...
    pw_file = tmp_path / "mqtt.pass"
    pw_file.write_text(broker.password + "\n")  # ... and the MQTT password from a file
    pw_file.chmod(0o600)
    secrets = [api_key, broker.password]
    p, port, storage = unique_prefix, free_port(), tmp_path / "state"
    mqtt = broker.mqtt_settings(topic_prefix=p, homeassistant={"discovery_prefix": f"{p}_ha"})
    del mqtt["password"]
    config = write_config(
        tmp_path / "config.yaml",
        model=str(tiny_bundle),
        mqtt=mqtt | {"password_file": str(pw_file)},
        http={"listen": f"127.0.0.1:{port}"},
        storage={"dir": str(storage)},
        printers=[
            {
                "name": PRINTER,
                "camera": {
                    "source": camera_server.snapshot_url,
                    "interval_s": 0.25,
                    "timeout_s": 3,
                },
                "api": {
                    "kind": "moonraker",
                    "url": moonraker_server.url,
                    "api_key": "${WATCHDOG_TEST_API_KEY}",
                    "timeout_s": 3,
                    "retries": 1,
                },
                "detection": {"consecutive": 3, "cooldown_s": 600},
            }
        ],
    )
    leaks: list[str] = []
    for args in (["check-config"], ["--debug", "check-config"]):
        r = run_cli(*args, "--config", str(config))
        assert r.returncode == 0, r.stderr
        assert "**********" in r.stdout  # masked, not left out: the user sees a secret is set
        leaks += _leaks(secrets, f"{' '.join(args)} output", r.stdout + r.stderr)

    sub = broker.subscriber("#")
    camera_server.set_frames(normal_frames)
    moonraker_server.start_print()
    daemon = DebugDaemon(config, tmp_path / "daemon.log")
    try:
        sub.wait_count(f"{p}/{PRINTER}/score", 3, timeout=90)
        camera_server.set_frames(anomalous_frames)
        alert = sub.wait_for(f"{p}/{PRINTER}/alert", timeout=60).json()
        assert alert["action_result"]["outcome"] == "done", alert  # the key worked: it was used
        moonraker_server.wait_state("paused")
        for path in ("/status", "/metrics", "/healthz", f"/printers/{PRINTER}/latest.jpg"):
            answer = requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
            leaks += _leaks(secrets, path, answer.content)
        status = requests.get(f"http://127.0.0.1:{port}/status", timeout=5).json()
        assert status["printers"][PRINTER]["last_alert"]["incident"] == alert["incident"]
    finally:
        camera_server.set_frames(normal_frames)
        rc = daemon.stop()
        sub.close()
    assert rc == 0, daemon.log
    assert " DEBUG " in daemon.log  # it really ran at debug level
    leaks += _leaks(secrets, "the daemon's log", daemon.log)
    messages = sub.messages
    assert any(m.topic == f"{p}/{PRINTER}/alert" for m in messages)
    leaks += [
        f"MQTT {m.topic}: {leak}"
        for m in messages
        for leak in _leaks(secrets, "payload", m.payload)
    ]
    files = [f for f in storage.rglob("*") if f.is_file()]
    assert any(f.name == "alert.json" for f in files)
    leaks += [
        leak for f in files for leak in _leaks(secrets, str(f.relative_to(storage)), f.read_bytes())
    ]
    assert leaks == []


# --------------------------------------------------------------------------- file modes


def _config_with(tmp_path: Path, api: dict, mode: int = 0o600, mqtt: dict | None = None) -> Path:
    path = write_config(
        tmp_path / "c.yaml",
        mqtt=mqtt or {},
        printers=[
            {"name": PRINTER, "api": {"kind": "octoprint", "url": "http://127.0.0.1:1"} | api}
        ],
    )
    path.chmod(mode)
    return path


def _warnings(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, "watchdog.config"):
        load_config(path)
    return [r.getMessage() for r in caplog.records if READABLE in r.getMessage()]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_config_holding_a_secret_readable_by_others_is_warned_about(
    tmp_path, caplog, mode: int
) -> None:
    path = _config_with(tmp_path, {"api_key": "in-the-file-itself"}, mode)
    [line] = _warnings(caplog, path)
    assert str(path) in line and "chmod 600" in line and "in-the-file-itself" not in line


def test_a_private_config_or_one_without_secrets_is_not_warned_about(tmp_path, caplog) -> None:
    assert _warnings(caplog, _config_with(tmp_path, {"api_key": "in-the-file-itself"}, 0o600)) == []
    assert _warnings(caplog, _config_with(tmp_path, {}, 0o644)) == []


def test_config_pointing_at_secrets_elsewhere_is_not_warned_about(
    tmp_path, caplog, monkeypatch
) -> None:
    """Only a file that holds a secret is worth a warning: ${ENV} and *_file keep it out."""
    monkeypatch.setenv("WATCHDOG_TEST_KEY", "from-the-environment")
    assert (
        _warnings(caplog, _config_with(tmp_path, {"api_key": "${WATCHDOG_TEST_KEY}"}, 0o644)) == []
    )
    key = tmp_path / "api.key"
    key.write_text("from-a-file\n")
    key.chmod(0o600)
    assert _warnings(caplog, _config_with(tmp_path, {"api_key_file": str(key)}, 0o644)) == []


@pytest.mark.parametrize("which", ["api_key_file", "password_file"])
def test_secret_file_readable_by_others_is_warned_about_only_then(
    tmp_path, caplog, which: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2-secret\n")
    api, mqtt = (
        ({"api_key_file": str(secret)}, None)
        if which == "api_key_file"
        else ({}, {"host": "127.0.0.1", "username": "u", "password_file": str(secret)})
    )
    secret.chmod(0o600)
    assert _warnings(caplog, _config_with(tmp_path, api, mqtt=mqtt)) == []
    secret.chmod(0o644)
    [line] = _warnings(caplog, _config_with(tmp_path, api, mqtt=mqtt))
    assert str(secret) in line and "secret file" in line and "hunter2" not in line


def test_check_config_shows_the_warning_to_the_user(tmp_path, tiny_bundle) -> None:
    path = write_config(
        tmp_path / "c.yaml",
        model=str(tiny_bundle),
        printers=[
            {
                "name": PRINTER,
                "api": {"kind": "octoprint", "url": "http://127.0.0.1:1", "api_key": "in-the-file"},
            }
        ],
    )
    path.chmod(0o644)
    r = run_cli("check-config", "--config", str(path))
    assert r.returncode == 0, r.stderr
    assert READABLE in r.stderr and "in-the-file" not in r.stdout + r.stderr
    path.chmod(0o600)
    r = run_cli("check-config", "--config", str(path))
    assert r.returncode == 0 and READABLE not in r.stderr, r.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_following_the_warning_about_a_secret_file_made_with_sudo_keeps_it_readable(
    tiny_bundle,
) -> None:
    """A key file the owner made with sudo (root's, mode 644) read by the service's user: the
    warning's advice, followed word for word, leaves the daemon able to read it. "chmod 600"
    alone (the advice before) made the next start fail: the file was root's."""
    folder = Path(tempfile.mkdtemp(prefix="watchdog-secret-"))
    try:
        folder.chmod(0o755)  # the unprivileged user reaches the config and the bundle
        bundle = Path(shutil.copytree(tiny_bundle, folder / "bundle"))
        key = folder / "octoprint.key"
        key.write_text("hunter2-secret\n")
        key.chmod(0o644)
        api = {"kind": "octoprint", "url": "http://127.0.0.1:1", "api_key_file": str(key)}
        state = folder / "state"
        state.mkdir()
        config = write_config(
            folder / "c.yaml",
            model=str(bundle),
            storage={"dir": str(state)},
            printers=[{"name": PRINTER, "api": api}],
        )
        for path in (config, state):  # the service's; the key is root's
            os.chown(path, 65534, 65534)
        as_service = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]

        def check() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*as_service, *watchdog_cmd("check-config", "--config", str(config))],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=folder,
                env=dict(os.environ, HOME=str(state)),
            )

        r = check()
        assert r.returncode == 0 and READABLE in r.stderr, r.stderr
        [advice] = re.findall(r"sudo chown .*? && sudo chmod 600 \S+", r.stderr)
        subprocess.run(advice.replace("sudo ", ""), shell=True, check=True)
        r = check()
        assert r.returncode == 0 and READABLE not in r.stderr, r.stderr
        assert "hunter2" not in r.stdout + r.stderr
    finally:
        shutil.rmtree(folder)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.parametrize("command", ["run", "feedback", "collect"])
def test_root_is_refused_in_the_service_users_storage_folder(
    tmp_path, tiny_bundle, command
) -> None:
    """`sudo printer-watchdog run` (without -u) made root's files in the service's folder:
    the service could no longer save an incident, its outbox or its lock (and after `sudo
    ... collect --out` there, no verdict's frames). Refused, naming the user to run it as,
    and nothing is written there. Root by design (a container: no sudo) is not refused."""
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)
    config = write_config(
        tmp_path / "c.yaml",
        model=str(tiny_bundle),
        storage={"dir": str(state)},
        printers=[{"name": PRINTER, "camera": {"source": str(tmp_path / "none")}}],
    )
    args = {
        "run": (),
        "feedback": ("--printer", PRINTER, "--incident", "x", "--verdict", "failure"),
        "collect": ("--out", str(state / "collected"), "--max-frames", "1"),
    }

    def as_root(sudo: bool) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "SUDO_UID"}
        return subprocess.run(
            watchdog_cmd(command, "--config", str(config), *args[command]),
            capture_output=True,
            text=True,
            timeout=120,
            env=env | {"SUDO_UID": "1000"} if sudo else env,
        )

    r = as_root(sudo=True)
    assert r.returncode == 2, r.stdout + r.stderr
    line = r.stderr.strip().splitlines()[-1]  # after the TFLite runtime's own INFO line
    assert "Traceback" not in r.stderr and line.startswith("error: ")
    assert "belongs to the user nobody" in line and "sudo -u nobody" in line, line
    assert list(state.iterdir()) == []
    if command == "feedback":  # root without sudo: the folder is not why it fails
        r = as_root(sudo=False)
        assert "belongs to the user" not in r.stderr and "--incident" in r.stderr, r.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_without_sudo_is_refused_in_the_installed_services_folder(
    tmp_path, monkeypatch
) -> None:
    """``sudo su -`` clears SUDO_UID: a command then run as root wrote root's files into
    /var/lib/printer-watchdog unrefused. The service user's folder is refused however root
    came to be; another user's folder still is only under sudo (root by design elsewhere).
    The machine has no printer-watchdog user: the owner's name stands in for it."""
    from watchdog import storage_lock
    from watchdog.errors import UsageError

    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)
    monkeypatch.delenv("SUDO_UID", raising=False)
    storage_lock.refuse_as_root_in_a_users_folder(state)  # nobody's: root by design may
    monkeypatch.setattr(storage_lock, "user_name", lambda uid: "printer-watchdog")
    with pytest.raises(UsageError, match="belongs to the user printer-watchdog"):
        storage_lock.refuse_as_root_in_a_users_folder(state / "collected")


@pytest.mark.parametrize("kind", ["link", "folder"])
def test_a_link_or_folder_at_the_lock_files_name_is_moved_aside_and_the_folder_locked(
    tmp_path, kind: str, caplog
) -> None:
    """A link at ``daemon.lock`` was followed: the owner's file it named was cut to the
    daemon's pid. A folder there ran the daemon unlocked, saying the storage was not
    writable (it was), and a second daemon on the folder was not refused."""
    import logging

    from watchdog import storage_lock

    state = tmp_path / "state"
    state.mkdir()
    victim = tmp_path / "notes.txt"
    victim.write_text("owner's notes")
    if kind == "link":
        (state / "daemon.lock").symlink_to(victim)
    else:
        (state / "daemon.lock").mkdir()
    with caplog.at_level(logging.WARNING):
        lock = storage_lock.lock_storage(state)
    assert victim.read_text() == "owner's notes"
    assert f"was a {kind}, not the watchdog's lock file: moved aside" in caplog.text
    assert (state / "daemon.lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(storage_lock.StorageInUse):
        storage_lock.lock_storage(state)
    lock.release()


# --------------------------------------------------------------------------- TLS of the printer API

MOONRAKER_PRINTING = {
    "result": {"status": {"webhooks": {"state": "ready"}, "print_stats": {"state": "printing"}}}
}


@pytest.mark.servers
def test_daemon_verifies_the_printer_apis_certificate_unless_given_its_ca(
    tmp_path, tiny_bundle, camera_server, bad_tls_server: BadServer, self_signed_cert, normal_frames
) -> None:
    """The client-level cases are in test_act_faults; this checks the daemon wires api.ca_file
    through and that a self-signed printer is not trusted without it (no watching, one line)."""
    bad_tls_server.respond(200, json.dumps(MOONRAKER_PRINTING), path="/printer/objects/query")
    camera_server.set_frames(normal_frames)

    def run(
        name: str, done: Callable[[dict], bool], linger_s: float = 0.0, **api: object
    ) -> tuple[dict, str]:
        port = free_port()
        config = write_config(
            tmp_path / f"{name}.yaml",
            model=str(tiny_bundle),
            http={"listen": f"127.0.0.1:{port}"},
            storage={"dir": str(tmp_path / name)},
            printers=[
                {
                    "name": PRINTER,
                    "camera": {
                        "source": camera_server.snapshot_url,
                        "interval_s": 0.2,
                        "timeout_s": 3,
                    },
                    "api": {"kind": "moonraker", "url": bad_tls_server.url, "timeout_s": 2, **api},
                }
            ],
        )
        daemon = DaemonProcess(config, tmp_path / f"{name}.log")
        try:

            def settled() -> dict | None:
                try:
                    st = requests.get(f"http://127.0.0.1:{port}/status", timeout=2).json()[
                        "printers"
                    ][PRINTER]
                except (requests.RequestException, ValueError, KeyError):
                    return None
                return st if done(st) else None

            st = wait_until(f"{name}: the daemon to settle", settled, 60, lambda: daemon.log)
            time.sleep(linger_s)  # a few more polls at 0.2 s: still one line
        finally:
            assert daemon.stop() == 0, daemon.log
        return st, daemon.log

    refused, log = run("default", lambda st: "TLS" in st["printer_detail"], linger_s=1.5)
    assert refused["printer_state"] == "offline" and refused["frames_this_print"] == 0, refused
    # shown as such, where "idle" hid a print that may go on unwatched
    assert refused["state"] == "printer_offline", refused
    assert "TLS certificate not accepted" in refused["printer_detail"]
    assert log.count("TLS certificate not accepted") == 1, log
    trusted, log = run(
        "with_ca", lambda st: st["frames_this_print"] >= 3, ca_file=str(self_signed_cert[0])
    )
    assert trusted["printer_state"] == "printing" and trusted["frames_this_print"] >= 3, trusted
    assert "TLS certificate" not in log, log
