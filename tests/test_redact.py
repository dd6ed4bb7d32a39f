"""Secrets masked wherever they reach text: config errors (also with --debug), check-config,
camera URLs with ``user:pass@`` or ``?token=``, urllib3's request lines, printer error bodies.

Each test uses a real secret value and greps everything the user or the journal would see.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

import cv2
import numpy as np
import pytest

from tests.daemon_helpers import (
    DaemonProcess,
    free_port,
    run_cli,
    wait_until,
    watchdog_cmd,
    write_config,
)
from tests.plugins.camera import CameraServer
from tests.plugins.printers import BadServer, api_config
from watchdog.devices.printers import make_printer
from watchdog.redact import SecretFilter, address_of, redact, redact_url, url_secrets

API_KEY = "K3yFromAFile0123456789abcdef"
TOKEN = "T0kenInTheUrl9876543210"
PASSWORD = "Passw0rdInTheUrl42"


def leaks(text: str, *secrets: str) -> list[str]:
    """The secrets, or any 6-character piece of one, found in ``text``."""
    found = []
    for s in secrets:
        pieces = {s[i : i + 6] for i in range(len(s) - 5)}
        if any(p in text for p in pieces):
            found.append(s)
    return found


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        (
            "GET http://u:pw123456@cam.local/snap?token=abcdef&action=stream",
            (),
            "GET http://u:***@cam.local/snap?token=***&action=stream",
        ),
        ("rtsp://admin:hunter22@10.0.0.5:554/live", (), "rtsp://admin:***@10.0.0.5:554/live"),
        (
            "url=/a?api_key=XYZ123&x=1 and ?access_token=q1w2e3",
            (),
            "url=/a?api_key=***&x=1 and ?access_token=***",
        ),
        ("the key SECRETSECRET was refused", ("SECRETSECRET",), "the key *** was refused"),
        (  # a password with an @ of its own
            "rtsp://admin:S3cr@tPass@192.168.1.20:554/stream1 then http://h/x@y",
            (),
            "rtsp://admin:***@192.168.1.20:554/stream1 then http://h/x@y",
        ),
        (  # an IP camera's own password key
            "http://cam/snap.cgi?loginuse=admin&loginpas=Hunter22",
            (),
            "http://cam/snap.cgi?loginuse=admin&loginpas=***",
        ),
        (  # ?usr=...&psw=..., and a camera's address inside a proxy's
            "http://proxy/snap?usr=admin&psw=Hunter22x&src=rtsp%3A%2F%2Fadmin%3ANested99x%40cam",
            ("Nested99x",),
            "http://proxy/snap?usr=admin&psw=***&src=rtsp%3A%2F%2Fadmin%3A***%40cam",
        ),
        (  # Blue Iris's ?user=...&pw=...
            "http://nvr/image/cam1?user=admin&pw=BLUEIRISPW",
            (),
            "http://nvr/image/cam1?user=admin&pw=***",
        ),
        (  # a password inside a key's name is that name: the key to fix stays legible
            "set http.password_file or generate_password; pass: x:pass@h %3Apass%40cam",
            ("pass",),
            "set http.password_file or generate_password; ***: x:***@h %3A***%40cam",
        ),
        (  # inside any other word it is the secret: quoted twice, escaped by repr or JSON
            "src=admin%253Apa55%2540cam 'user\\tpa55' \"\\u00e9pa55\" passpa55",
            ("pa55",),
            "src=admin%253A***%2540cam 'user\\t***' \"\\u00e9***\" pass***",
        ),
        (  # a long one is masked wherever it stands (a bot token after "bot" in an API URL)
            "POST https://api.telegram.org/bot123456:ABCdef-gh/sendPhoto",
            ("123456:ABCdef-gh",),
            "POST https://api.telegram.org/bot***/sendPhoto",
        ),
    ],
)
def test_redact_masks_every_kind_of_secret(
    text: str, secrets: tuple[str, ...], expected: str
) -> None:
    assert redact(text, secrets) == expected


def test_redact_url_keeps_what_says_which_camera() -> None:
    assert redact_url(f"http://me:{PASSWORD}@cam:8080/?action=stream&token={TOKEN}") == (
        "http://me:***@cam:8080/?action=stream&token=***"
    )


def test_the_log_filter_masks_messages_arguments_and_tracebacks() -> None:
    filt = SecretFilter()
    filt.add([API_KEY])
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "key %s at %s", (API_KEY, f"http://a/?token={TOKEN}"), None
    )
    try:
        raise ValueError(f"bad {API_KEY}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    filt.filter(record)
    shown = logging.Formatter().format(record)
    assert leaks(shown, API_KEY, TOKEN) == [] and "ValueError: bad ***" in shown


def test_a_log_line_whose_arguments_do_not_fit_its_format_shows_none_of_them() -> None:
    """logging prints a broken record's arguments as they are; the filter gives it the format
    alone, masked."""
    record = logging.LogRecord(
        "x", logging.ERROR, __file__, 1, "camera %s at %d", (f"rtsp://a:{PASSWORD}@h",), None
    )
    SecretFilter().filter(record)
    shown = logging.Formatter().format(record)
    assert "camera %s at %d" in shown and leaks(shown, PASSWORD) == []


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (f"mqtt:\n  host: b\n  password: !{PASSWORD}\n", "line 3 column 13"),
        (f"mqtt:\n  host: b\n  password: !!float {PASSWORD}\n", "line 3 column 13"),
        (f"mqtt: {{host: b, username: me, password:{PASSWORD}}}\n", "mqtt.password:***"),
        (f"mqtt: {{host: b, username: me, password={PASSWORD}}}\n", "mqtt.password=***"),
        (f"mqtt: {{host: b, username: me, password {PASSWORD}}}\n", "mqtt.password ***"),
        (
            "printers:\n  - name: p1\n    camera: {source: 0}\n"
            f"    api: {{kind: octoprint, url: 'admin:{PASSWORD}@octopi.local'}}\n",
            "printers.0.api: url must start with http://",  # not quoted
        ),
        (  # the secret itself where the path of a file holding it goes
            f"mqtt: {{host: b, username: me, password_file: {PASSWORD}}}\n",
            "mqtt.password_file: no such file",
        ),
        (
            "printers:\n  - name: p1\n    camera: {source: 0}\n"
            f"    api: {{kind: octoprint, url: 'http://o', api_key_file: 'k/{PASSWORD}'}}\n",
            "printers.0.api.api_key_file: no such file",
        ),
    ],
    ids=[
        "yaml-tag",
        "not-a-float",
        "no-space-after-colon",
        "equals-sign",
        "space-without-colon",
        "api-url-without-scheme",
        "secret-as-password-file",
        "secret-as-api-key-file",
    ],
)
def test_a_config_mistake_on_a_secret_names_where_without_the_secret(
    tmp_path, text: str, said: str
) -> None:
    """A secret written as a YAML tag, a key:value without its space (or with '=', or a space
    alone), an address without its scheme, the secret itself given as a secret file's path:
    each was quoted, secret and all, by the message that refused it."""
    config = tmp_path / "config.yaml"
    config.write_text(text)
    proc = run_cli("--debug", "check-config", "--config", str(config), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert said in proc.stderr
    assert leaks(proc.stdout + proc.stderr, PASSWORD) == [], proc.stderr


def test_a_camera_url_given_where_a_folder_is_expected_is_refused_without_its_password(
    tmp_path,
) -> None:
    """A camera's URL given to --frames, to score, or to the trainer's --normal: shown back as
    a path ("rtsp:/admin:<password>@..."), the password with it."""
    config = write_config(
        tmp_path / "config.yaml", printers=[{"name": "p1", "camera": {"source": str(tmp_path)}}]
    )
    url = f"rtsp://admin:{PASSWORD}@192.168.1.5:554/stream1"
    for args in (
        ("replay", "--config", str(config), "--frames", url),
        ("score", f"http://admin:{PASSWORD}@192.168.1.5/snap.jpg"),
        (url,),  # typed where the command goes: quoted back by the argument parser
    ):
        proc = run_cli(*args, timeout=120)
        assert proc.returncode != 0 and "error" in proc.stderr, proc.stderr
        assert leaks(proc.stdout + proc.stderr, PASSWORD) == [], proc.stderr
    trainer = subprocess.run(
        [sys.executable, "-m", "trainer", "--normal", url, "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert trainer.returncode != 0 and "error" in trainer.stderr, trainer.stderr
    assert leaks(trainer.stdout + trainer.stderr, PASSWORD) == [], trainer.stderr


def test_a_value_that_reads_as_a_bad_date_is_text_not_a_crash(tmp_path) -> None:
    """YAML reads 2024-13-01 as a date it cannot build: the daemon died with a traceback at
    start (and systemd restarted it until it gave up). No key is a date: it is text."""
    config = write_config(
        tmp_path / "config.yaml",
        mqtt={"host": "127.0.0.1", "username": "me", "password": "x"},
        printers=[{"name": "p1", "camera": {"source": str(tmp_path)}}],
    )
    config.write_text(config.read_text().replace("password: x", "password: 2024-13-01"))
    cv2.imwrite(str(tmp_path / "frame_0.jpg"), np.zeros((24, 32, 3), np.uint8))  # a recording
    proc = run_cli("check-config", "--config", str(config), "--no-model-run", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "2024-13-01" not in proc.stdout and "password: '**********'" in proc.stdout


def test_check_config_shows_a_camera_url_as_every_other_line_shows_it(tmp_path) -> None:
    """Query values under names no rule calls secret (``psw``, a URL inside a URL) and a token
    in place of a user name were printed by check-config's YAML, masked in its probe lines."""
    url = (
        f"http://{TOKEN}@127.0.0.1:1/snap?usr=admin&psw={PASSWORD}"
        f"&src=rtsp%3A%2F%2Fadmin%3A{API_KEY}%40cam%2Flive"
    )
    config = write_config(
        tmp_path / "config.yaml", printers=[{"name": "p1", "camera": {"source": url}}]
    )
    proc = run_cli("check-config", "--config", str(config), "--no-model-run", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "http://***@127.0.0.1:1/snap?usr=***" in proc.stdout, proc.stdout
    assert leaks(proc.stdout + proc.stderr, TOKEN, PASSWORD, API_KEY) == []


def test_a_config_error_never_shows_the_api_key_read_from_its_file_even_with_debug(
    tmp_path,
) -> None:
    key_file = tmp_path / "api.key"
    key_file.write_text(API_KEY + "\n")
    key_file.chmod(0o600)
    # An api mapping that fails validation as a whole (no url): the error must not quote the mapping.
    config = write_config(
        tmp_path / "config.yaml",
        printers=[{"name": "p1", "api": {"kind": "octoprint", "api_key_file": str(key_file)}}],
    )
    for args in (["check-config"], ["--debug", "check-config"], ["--debug", "run"]):
        proc = run_cli(*args, "--config", str(config), timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "printers.0.api" in proc.stderr
        assert leaks(proc.stdout + proc.stderr, API_KEY) == [], (args, proc.stderr)


def test_a_yaml_syntax_error_on_a_secret_line_does_not_quote_it_with_debug(tmp_path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f'printers:\n  - name: p1\n    api: {{kind: octoprint, api_key: "{API_KEY}\n')
    proc = run_cli("--debug", "check-config", "--config", str(config), timeout=60)
    assert proc.returncode == 2 and "invalid YAML" in proc.stderr
    assert leaks(proc.stdout + proc.stderr, API_KEY) == [], proc.stderr


def test_check_config_masks_a_camera_url_with_a_password_and_a_token(tmp_path) -> None:
    url = f"http://viewer:{PASSWORD}@127.0.0.1:1/snapshot?token={TOKEN}"
    config = write_config(
        tmp_path / "config.yaml", printers=[{"name": "p1", "camera": {"source": url}}]
    )
    proc = run_cli("--debug", "check-config", "--config", str(config), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "http://viewer:***@127.0.0.1:1/snapshot?token=***" in proc.stdout
    assert leaks(proc.stdout + proc.stderr, PASSWORD, TOKEN) == []


@pytest.mark.parametrize("command", ["check-config", "collect", "run"])
@pytest.mark.parametrize(
    ("source", "said"),
    [
        (f"http:/viewer:{PASSWORD}@192.168.1.20/snapshot.jpg", "'//'"),
        (f"viewer:{PASSWORD}@192.168.1.20/snapshot.jpg", "needs its scheme"),
        (f"rtsp//viewer:{PASSWORD}@192.168.1.20:554/stream1", "':' after its scheme"),
        (f"htp//viewer:{PASSWORD}@192.168.1.20/snapshot.jpg", "':' after its scheme"),
    ],
    ids=["one-slash", "no-scheme", "no-colon", "no-colon-typo"],
)
def test_a_camera_address_missing_a_slash_is_refused_without_its_password(
    tmp_path, command: str, source: str, said: str
) -> None:
    """``http:/user:pass@host`` (one slash), ``user:pass@host/...`` (no scheme) or
    ``rtsp//user:pass@host`` (no colon): read as a file name, it was echoed whole, password and
    all, by run and collect, and shown unmasked by check-config and the dashboard's refused
    reload."""
    config = write_config(
        tmp_path / "config.yaml", printers=[{"name": "p1", "camera": {"source": source}}]
    )
    extra = ["--out", str(tmp_path / "out")] if command == "collect" else []
    proc = run_cli("--debug", command, "--config", str(config), *extra, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "printers.0.camera.source" in proc.stderr and said in proc.stderr
    assert leaks(proc.stdout + proc.stderr, PASSWORD) == []


@pytest.mark.parametrize(
    "url",
    [
        "rtsp://admin:S3cr@tPass99@192.168.1.20:554/stream1",
        "rtsp://admin:Pa'ss99Quote@cam.lan/live",
        "http://cam/snap.cgi?loginuse=admin&loginpas=Hunter22x",
    ],
    ids=["at-sign", "quote", "camera-key"],
)
def test_check_config_masks_camera_passwords_no_pattern_finds(tmp_path, url: str) -> None:
    """A password with an @ or a quote in it, a camera's own password key: check-config (and
    the log filter, given the same secrets) shows none of it."""
    import yaml

    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"printers": [{"name": "p1", "camera": {"source": url}}]}))
    proc = run_cli("--debug", "check-config", "--config", str(config), timeout=60)
    assert proc.returncode == 0, proc.stderr
    password = url_secrets(url)[0]  # as written (then as sent: decoded, Basic auth's form)
    assert leaks(proc.stdout + proc.stderr, password) == [], proc.stdout


def test_the_daemon_at_debug_never_logs_the_camera_urls_secrets(
    tmp_path, camera_server: CameraServer
) -> None:
    """urllib3 logs every request line (with its query) at DEBUG; the camera's own lines name the URL."""
    url = (
        camera_server.snapshot_url.replace("http://", f"http://viewer:{PASSWORD}@")
        + f"?token={TOKEN}"
    )
    config = write_config(
        tmp_path / "config.yaml",
        mqtt={"host": ""},
        http={"listen": ""},
        storage={"dir": str(tmp_path / "state")},
        printers=[{"name": "p1", "camera": {"source": url, "interval_s": 0.1}}],
    )
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            watchdog_cmd("--debug", "run", "--config", str(config)),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        try:
            wait_until("frames fetched", lambda: camera_server.requests >= 5, 60, log.read_text)
            camera_server.set_fault("http_500")  # the error path too
            n = camera_server.requests
            wait_until("errors fetched", lambda: camera_server.requests >= n + 2, 60, log.read_text)
        finally:
            proc.terminate()
            proc.wait(20)
    text = log.read_text()
    assert "camera p1" in text
    assert leaks(text, PASSWORD, TOKEN) == [], text[-3000:]


@pytest.mark.parametrize("offset", [0, 150, 180, 185, 190])
def test_an_error_body_is_masked_before_it_is_cut(bad_server: BadServer, offset: int) -> None:
    """A server that echoes the key near the 200-character cut: no piece of it survives."""
    bad_server.respond(500, "x" * offset + f"echo {API_KEY} " + "y" * 300, "text/plain")
    client = make_printer(api_config("moonraker", bad_server.url, api_key=API_KEY, retries=0))
    status = client.status()
    assert status.state == "offline" and "HTTP 500" in status.detail
    assert leaks(status.detail, API_KEY) == [], status.detail
    result = client.pause()
    assert leaks(str(result.to_dict()), API_KEY) == []


def test_an_error_message_escaped_in_json_is_masked_once_read(bad_server: BadServer) -> None:
    """An API answering 403 with its key in a JSON message, written as \\u escapes (as some
    servers write every character past ASCII, or ``\\/`` for a slash): the body was masked
    before its JSON was read, the message read from it was not, and /status and the page
    showed the key."""
    escaped = "".join(f"\\u{ord(c):04x}" for c in API_KEY)
    bad_server.respond(403, f'{{"error": "Invalid key {escaped}"}}', "application/json")
    client = make_printer(api_config("octoprint", bad_server.url, api_key=API_KEY, retries=0))
    status = client.status()
    assert "HTTP 403" in status.detail and "Invalid key ***" in status.detail, status.detail
    assert leaks(status.detail, API_KEY) == [], status.detail


def test_a_url_password_is_masked_as_written_as_sent_and_as_its_basic_auth_header() -> None:
    """``url_secrets`` gave the password as written (%-encoded) only: a server echoing what it
    was sent (decoded, or the Basic auth header) was shown in clear."""
    url = f"http://viewer:{quote(ODD_PASSWORD, safe='')}@cam.local/snap.jpg"
    basic = base64.b64encode(f"viewer:{ODD_PASSWORD}".encode()).decode()
    text = f"HTTP 401 user viewer:{ODD_PASSWORD} header Basic {basic}"
    shown = redact(text, url_secrets(url))
    assert shown == "HTTP 401 user viewer:*** header Basic ***", shown


def test_the_daemon_survives_config_reload_with_secret_and_masks_it(
    tmp_path: Path, camera_server: CameraServer
) -> None:
    """A reload refused for a bad api mapping logs one line without the key."""
    key_file = tmp_path / "api.key"
    key_file.write_text(API_KEY)
    key_file.chmod(0o600)
    printers = [{"name": "p1", "camera": {"source": camera_server.snapshot_url, "interval_s": 0.2}}]
    config = write_config(
        tmp_path / "config.yaml",
        mqtt={"host": ""},
        http={"listen": f"127.0.0.1:{free_port()}"},
        storage={"dir": str(tmp_path / "state")},
        printers=printers,
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_until("watching", lambda: "watching 1 printer" in daemon.log, 60, lambda: daemon.log)
        printers[0]["api"] = {"kind": "octoprint", "api_key_file": str(key_file)}  # no url
        write_config(
            config,
            mqtt={"host": ""},
            http={"listen": ""},
            storage={"dir": str(tmp_path / "state")},
            printers=printers,
        )
        daemon.signal(1)  # SIGHUP
        wait_until("reload refused", lambda: "reload refused" in daemon.log, 30, lambda: daemon.log)
        assert daemon.alive()
    finally:
        rc = daemon.stop()
    assert rc == 0
    assert leaks(daemon.log, API_KEY) == [], daemon.log


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        *[
            (n, True)
            for n in (
                "OCTOPRINT_KEY",
                "apikey",
                "loginpas",
                "MQTT_PASSWORD",
                "HA_TOKENS",
                "CAMERA_PW2",
                "access_token",
                "X-Auth",
                "session_id",
                "MY_CREDENTIAL",
                "HA_AUTHORIZATION",
                "TOKENFILE",
                "APIKEYVALUE",
                "PASSWORT",
                "MQTTPASSWORDHASH",
                "jsessionid",
            )
        ],
        *[(n, False) for n in ("CAMERA_HOST", "inside", "signal", "KEYBOARD", "action")],
    ],
)
def test_one_rule_says_which_names_are_secret(name: str, secret: bool) -> None:
    """The same names are secret as a camera URL's query key and as a config's ``${NAME}``;
    a word that only begins or holds one ("keyboard", "inside") is not, so its value (a host)
    stays readable in check-config and the logs."""
    from watchdog.redact import redact, says_secret

    assert says_secret(name) is secret
    masked = redact(f"http://cam/snap?{name}=Hunter22") == "http://cam/snap?" + name + "=***"
    assert masked is secret


def test_a_long_run_of_key_like_text_is_masked_without_hanging() -> None:
    """Every printer answer is masked before it is read: a 1 MB answer of ``?key_key_key...``
    (a hostile device, or a proxy's page) took the masking pattern quadratic time, about 45
    minutes, with no watching meanwhile. It ends at once (bounded here by a thread join, far
    above the milliseconds it takes), and a secret after it is still masked."""
    import threading

    from watchdog.devices.printers import _server_message

    text = "?" + "key_" * 250_000 + "&pwd=Hunter22 &action=stream;sid=abcdef"
    done: list[str] = []
    worker = threading.Thread(target=lambda: done.append(redact(text)), daemon=True)
    worker.start()
    worker.join(60)
    assert done, "masking a 1 MB answer did not end within a minute"
    assert done[0].endswith("&pwd=*** &action=stream;sid=***")
    long_key = "?" + "x" * 300 + "_token=SEKRET12"  # a key of any length
    assert redact(long_key).endswith("_token=***")
    assert _server_message(text.encode()).startswith("?key_key")


def test_check_config_masks_env_values_whose_name_says_secret_in_any_key(
    tmp_path, monkeypatch
) -> None:
    """A token given as the MQTT user name, a camera's key under a query name no pattern knows,
    a stream token in a URL's path: all came from ``${NAME}`` named secret, so check-config,
    its --probe lines and a config error beside them mask them; a variable named for a host is
    shown as it is."""
    monkeypatch.setenv("BROKER_TOKEN", TOKEN)
    monkeypatch.setenv("CAMERA_PW2", PASSWORD)  # named as a camera's query key would be
    monkeypatch.setenv("CAMERA_HOST", "camera-in-the-garage.lan")
    port = free_port()  # nothing listens: the probe fails and names the camera
    printers = [
        {"name": "p1", "camera": {"source": "http://${CAMERA_HOST}/snap?x=${CAMERA_PW2}"}},
        {
            "name": "p2",
            "camera": {"source": f"http://127.0.0.1:{port}/${{BROKER_TOKEN}}", "timeout_s": 1},
        },
    ]
    config = write_config(
        tmp_path / "config.yaml",
        mqtt={"host": "127.0.0.1", "username": "${BROKER_TOKEN}"},
        printers=printers,
    )
    proc = run_cli("--debug", "check-config", "--config", str(config), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "http://camera-in-the-garage.lan/snap?x=***" in proc.stdout
    assert leaks(proc.stdout + proc.stderr, TOKEN, PASSWORD) == [], proc.stdout
    proc = run_cli("check-config", "--config", str(config), "--probe", timeout=60)
    assert proc.returncode == 1 and f"camera http://127.0.0.1:{port}/***: FAILED" in proc.stderr
    assert leaks(proc.stdout + proc.stderr, TOKEN, PASSWORD) == [], proc.stderr

    api = {"kind": "octoprint", "url": "ftp://printer.lan/${BROKER_TOKEN}"}  # refused, quoted
    config = write_config(
        tmp_path / "bad.yaml",
        mqtt={"host": "127.0.0.1", "username": "${BROKER_TOKEN}"},
        printers=[{**printers[0], "api": api}],
    )
    proc = run_cli("--debug", "check-config", "--config", str(config), timeout=60)
    assert proc.returncode == 2 and "printers.0.api: url 'ftp://printer.lan/***'" in proc.stderr
    assert leaks(proc.stdout + proc.stderr, TOKEN, PASSWORD) == [], proc.stderr


def test_a_config_object_shown_in_a_debug_line_masks_its_secrets() -> None:
    """A config object quoted in a debug line or a traceback (its repr) showed a camera URL's
    password and token whole."""
    from watchdog.config import CameraConfig

    shown = repr(CameraConfig(source=f"http://admin:{PASSWORD}@cam.lan/snap?token={TOKEN}"))
    assert leaks(shown, PASSWORD, TOKEN) == [] and "cam.lan/snap" in shown


def test_a_password_of_a_camera_address_inside_another_is_a_known_secret() -> None:
    """A proxy's ``?src=`` holding the camera's own address, password and all, percent-encoded:
    the password is masked wherever it lands, encoded or not (a log line, an error)."""

    url = f"http://proxy/snap?src=rtsp%3A%2F%2Fadmin%3A{PASSWORD}%40cam%2Flive"
    secrets = url_secrets(url)
    assert PASSWORD in secrets
    assert leaks(redact(f"GET {url} and rtsp://cam/{PASSWORD}", secrets), PASSWORD) == []


@pytest.mark.parametrize("run", ["a.", "a-", "x+"])
def test_a_long_run_of_scheme_like_text_is_masked_without_hanging(run: str) -> None:
    """Every log line and printer answer is masked: 800 KB of ``a.a.a.`` made the URL
    patterns try a scheme from every letter to the end of the run, about an hour with every
    thread held (the regex engine keeps the GIL, so this runs in a process of its own, which
    the test stops after a minute), and a password after it is still masked."""
    import subprocess
    import sys

    text = run * 400_000 + " rtsp://viewer:Hunter22@cam/s"
    code = "import sys; from watchdog.redact import redact; print(redact(sys.stdin.read())[-40:])"
    done = subprocess.run(
        [sys.executable, "-c", code], input=text, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip().endswith("rtsp://viewer:***@cam/s"), done.stderr[-2000:]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://mruser:hunter22@127.0.0.1:7125", "http://127.0.0.1:7125"),
        ("http://127.0.0.1:7125?api_key=hunter22", "http://127.0.0.1:7125"),
        (
            "https://tok3n@octopi.local/octoprint/?apikey=hunter22",
            "https://octopi.local/octoprint/",
        ),
        ("http://[::1]:5000/api", "http://[::1]:5000/api"),
    ],
)
def test_a_printers_address_is_said_without_its_user_name_password_or_query(
    url: str, shown: str
) -> None:
    """What an alert on the phone says of the printer's API: where it is, nothing more."""
    assert address_of(url) == shown


USER_TOKEN = "UserOnlyT0ken5550123"


class _EchoingCamera:
    """A camera that refuses its login in a reason phrase echoing the login and the URL's
    token back (some cameras' firmware does): the daemon's words about it carry them. Its
    phrase also paints the terminal red and runs on for kilobytes."""

    def __init__(self, login: str) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                sent = self.headers.get("Authorization", "")  # what it was sent, echoed
                self.send_response(
                    401,
                    f"Unauthorized token={TOKEN} user {unquote(login)} with {sent} "
                    "\x1b[31mred\x08" + "x" * 4000,
                )
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


ODD_PASSWORD = f"p@ss/{PASSWORD}"  # written %-encoded in the URL, sent decoded


@pytest.mark.parametrize("login", ["token", "password", "encoded-password"])
def test_a_camera_echoing_its_login_reaches_no_phone_or_log_with_it(
    tmp_path, ntfy_receiver, login: str
) -> None:
    """A camera whose 401 reason phrase echoed its password and token: the log masked them,
    the phone's "camera offline" said them in clear ("Why: ... HTTP 401 Unauthorized
    token=..."). A name alone before the @ (a token) was masked in neither. A password
    written %-encoded was masked as written only: echoed as sent (decoded, or the Basic auth
    header's base64 of it) it reached the log, the page and the phone."""
    auth, secret = {
        "token": (USER_TOKEN, USER_TOKEN),
        "password": (f"viewer:{PASSWORD}", PASSWORD),
        "encoded-password": (f"viewer:{quote(ODD_PASSWORD, safe='')}", PASSWORD),
    }[login]
    basic = base64.b64encode(f"viewer:{unquote(auth.partition(':')[2])}".encode()).decode()
    camera = _EchoingCamera(auth)
    url = f"http://{auth}@127.0.0.1:{camera.port}/snap?token={TOKEN}"
    config = write_config(
        tmp_path / "config.yaml",
        mqtt={"host": ""},
        http={"listen": ""},
        storage={"dir": str(tmp_path / "state")},
        printers=[{"name": "p1", "camera": {"source": url, "interval_s": 0.2}, "action": "notify"}],
        notify=[
            {
                "url": ntfy_receiver.url("cam"),
                "events": ["camera_offline"],
                "camera_offline_after_s": 0,
            }
        ],
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_until("the phone told", lambda: ntfy_receiver.messages, 60, lambda: daemon.log)
    finally:
        assert daemon.stop(timeout=30) == 0, daemon.log
        camera.close()
    [told] = ntfy_receiver.messages
    assert "HTTP 401 Unauthorized" in told.message, told.message
    assert leaks(told.message + told.title, TOKEN, secret) == [], told.message
    assert login == "token" or basic[:-4] not in told.message, told.message
    # the camera's own words reach the phone written out, and cut (they arrived raw)
    assert "\x1b" not in told.message and "\\x1b[31mred" in told.message, told.message
    assert len(told.message) < 600, len(told.message)
    assert leaks(daemon.log, TOKEN, secret) == [], daemon.log[-3000:]
    assert login == "token" or basic[:-4] not in daemon.log, daemon.log[-3000:]


def test_a_user_name_alone_is_masked_in_urls_and_a_token_everywhere() -> None:
    """A name alone before the @ registered as a secret cut ordinary words everywhere:
    "admin" of ``rtsp://admin:@cam`` (an empty password) made "administrator" "***istrator",
    "camera" made "camera offline" "*** offline". A token there is masked wherever it lands."""

    assert url_secrets("rtsp://admin:@192.168.1.64/stream1") == []
    assert url_secrets("http://camera@cam.local/snap.jpg") == []
    assert url_secrets(f"http://{USER_TOKEN}@cam.local/snap.jpg") == [USER_TOKEN]
    text = "camera offline: http://camera@cam.local/snap.jpg, administrator"
    shown = redact(text, url_secrets("http://camera@cam.local/snap.jpg"))
    assert shown == "camera offline: http://***@cam.local/snap.jpg, administrator", shown


PATH_TOKEN = "Xk9fUniFiStreamTok3n"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (  # UniFi Protect: the stream's only credential is its path
            f"rtsps://192.168.1.1:7441/{PATH_TOKEN}?enableSrtp",
            "rtsps://192.168.1.1:7441/***?enableSrtp=***",
        ),
        (  # Home Assistant's ingress
            f"http://127.0.0.1:9/api/hassio_ingress/{PATH_TOKEN}/",
            "http://127.0.0.1:9/api/hassio_ingress/***/",
        ),
        (f"http://cam/live;jsessionid={PATH_TOKEN}/s.jpg", "http://cam/live;jsessionid=***/s.jpg"),
        (f"rtmps://cam.lan/live/{PATH_TOKEN}", "rtmps://cam.lan/live/***"),
        (  # a token that happens to hold no digit
            "rtsps://192.168.1.1:7441/KxMDFlWfCZEcqtiA?enableSrtp",
            "rtsps://192.168.1.1:7441/***?enableSrtp=***",
        ),
        # names, not tokens: kept, they say which camera
        ("rtsp://cam/Streaming/Channels/101", "rtsp://cam/Streaming/Channels/101"),
        ("rtsp://go2rtc:8554/prusamk4garage01", "rtsp://go2rtc:8554/prusamk4garage01"),
        ("http://cam/x/SnapshotJpegStream", "http://cam/x/SnapshotJpegStream"),
        ("http://cam:8080/snapshot_1920x1080.jpg", "http://cam:8080/snapshot_1920x1080.jpg"),
        (
            "http://octopi.local/webcam/?action=snapshot",
            "http://octopi.local/webcam/?action=snapshot",
        ),
    ],
)
def test_a_token_in_a_urls_path_is_masked_as_one_in_its_query(url: str, shown: str) -> None:
    """A token standing as a path segment was shown whole by check-config, by every error
    naming the camera and in the printer's status on the page, MQTT and the phone."""
    assert redact_url(url) == shown
    assert (PATH_TOKEN in url_secrets(url)) == (PATH_TOKEN in url)
    assert PATH_TOKEN not in address_of(url)
    # a stream's settings are masked where the URL is shown, not in every line ("1280x720")
    assert url_secrets("http://cam/video.mjpg;resolution=1280x720;codec=mjpeg") == []
    # a recording's path is the owner's folders: none of it is a secret to mask in every line
    assert url_secrets(f"/home/pi/recordings/{PATH_TOKEN}/benchy_first_layer_20261206") == []


def test_a_path_token_or_a_query_password_is_not_echoed_by_check_config_or_its_errors(
    tmp_path,
) -> None:
    """check-config printed a UniFi camera's stream token; a camera's address missing its
    ``http://`` (read as a file) was refused with its ``?u=admin&p=<password>`` echoed; a
    password holding ``${...}`` was refused naming the "variable", a piece of the password."""
    unifi = f"rtsps://192.168.1.1:7441/{PATH_TOKEN}?enableSrtp"
    config = write_config(
        tmp_path / "a.yaml", printers=[{"name": "p1", "camera": {"source": unifi}}]
    )
    proc = run_cli("--debug", "check-config", "--config", str(config), "--no-model-run")
    assert proc.returncode == 0, proc.stderr
    assert "rtsps://192.168.1.1:7441/***" in proc.stdout, proc.stdout
    assert leaks(proc.stdout + proc.stderr, PATH_TOKEN) == []

    bare = f"192.168.1.5/cgi-bin/snapshot.cgi?chn=1&u=admin&p={PASSWORD}"
    for source in (bare, f"192.168.1.1:7441/{PATH_TOKEN}?enableSrtp"):
        config = write_config(
            tmp_path / "b.yaml", printers=[{"name": "p1", "camera": {"source": source}}]
        )
        proc = run_cli("--debug", "check-config", "--config", str(config), "--no-model-run")
        assert proc.returncode == 2 and "printers.0.camera.source" in proc.stderr, proc.stderr
        assert leaks(proc.stdout + proc.stderr, PASSWORD, PATH_TOKEN) == [], proc.stderr

    for key, extra in (
        ("mqtt.password", 'mqtt:\n  host: 127.0.0.1\n  password: "Ab${Hunter22Secret}x"\n'),
        ("notify.0.url", 'notify:\n  - url: "ntfys://me:Ab${Hunter22Secret}x@ntfy.lan/t"\n'),
    ):
        config = write_config(tmp_path / "c.yaml", printers=[{"name": "p1"}])
        config.write_text(config.read_text() + extra)
        proc = run_cli("check-config", "--config", str(config), "--no-model-run")
        assert proc.returncode == 2, proc.stderr
        assert f"{key}: names an environment variable" in proc.stderr, proc.stderr
        assert "Hunter22Secret" not in proc.stdout + proc.stderr, proc.stderr
    source = "rtsp://admin:Ab${Hunter22Secret}x@cam.lan/live"
    config = write_config(
        tmp_path / "d.yaml", printers=[{"name": "p1", "camera": {"source": source}}]
    )
    proc = run_cli("check-config", "--config", str(config), "--no-model-run")
    assert proc.returncode == 2 and "Hunter22Secret" not in proc.stdout + proc.stderr, proc.stderr
