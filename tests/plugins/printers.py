"""pytest plugin: real OctoPrint and Moonraker servers on 127.0.0.1, and a misbehaving one.

Fixtures (import nothing; conftest.py loads this plugin):

``octoprint_server`` (function scope, one server per session underneath)
    A real OctoPrint 1.11 with its virtual printer, reset before each test: running,
    printer connected, nothing printing. Attributes and helpers:
    ``.url``, ``.api_key``, ``.log_path``;
    ``.start_print(lines=300, name=...)`` uploads a G-code file padded with ``G4 P200``
    lines (300 ≈ 60 s) and starts it, returns once OctoPrint says printing;
    ``.printing()`` → bool (both servers have it);
    ``.flags()`` → ``state.flags`` dict of ``GET /api/printer`` ({} when not operational);
    ``.wait_flag(name, value=True, timeout=30)``; ``.connect()``; ``.cancel()``;
    ``.stop()`` / ``.start()`` (same port and data, the printer must be connected again:
    ``.connect()``; ``.reset()`` does all of it); ``.freeze()`` / ``.thaw()`` (SIGSTOP:
    the port accepts connections and nothing answers, a real hang).

``moonraker_server`` (function scope, one server per session underneath)
    The real Moonraker 0.11 from PyPI, talking to ``tests/fake_klippy.py`` (a stand-in
    Klippy on the Unix socket), reset before each test: running, Klippy ready, nothing
    printing. ``.url``, ``.api_key`` (fetched from the trusted client 127.0.0.2; use it
    as ``X-Api-Key`` from 127.0.0.1), ``.log_path``, ``.klippy_log_path``;
    ``.start_print(name=...)`` (returns once print_stats.state is printing);
    ``.print_state()`` → ``print_stats.state``; ``.printing()`` → bool; ``.wait_state(state, timeout=30)``;
    ``.cancel()``; ``.stop()`` / ``.start()`` (Moonraker process); ``.freeze()`` /
    ``.thaw()`` (Moonraker hangs: SIGSTOP);
    ``.stop_klippy()`` / ``.start_klippy()`` (the stand-in Klippy: Moonraker then
    answers 503 "Klippy Host not connected" until it is back).

``bad_server`` (function scope)
    A tiny HTTP server on 127.0.0.1 that answers every request the way a test sets:
    ``.respond(status, body=b"...", content_type=..., path=None)`` (``path``: only
    that path, e.g. "/api/job"; None: every other path), ``.hang(seconds)`` (answers
    nothing until then or until the test ends), ``.garbage()`` (200 with broken JSON),
    ``.drop()`` (hangs up without answering).
    ``.url``, ``.requests`` (how many it received), ``.api_key`` (a dummy).
    ``bad_tls_server``: the same over https with ``self_signed_cert`` (cert, key) files.

``api_config(kind, url, api_key, **kw)`` builds a ``watchdog.config.ApiConfig``.

Server venvs are built once per machine under ``.cache/octoprint-venv`` and
``.cache/moonraker-venv`` (about 30 s and 15 s); a fixture skips only when PyPI cannot be
reached to build one. Server output goes to ``<tmp>/…/octoprint.log`` / ``moonraker.log``
(the path is in every failure message).
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.plugins.mosquitto import free_port

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache"
HOST = "127.0.0.1"
TRUSTED_HOST = "127.0.0.2"  # Moonraker trusts it, so the fixture can fetch the API key
OCTOPRINT_SPEC = "octoprint>=1.11,<1.12"
MOONRAKER_SPEC = "moonraker==0.11.0"
STAMP = ".printer-watchdog-ok"


# --------------------------------------------------------------------------- helpers


def api_config(kind: str, url: str, api_key: str | None = None, **kw: Any) -> Any:
    """An ApiConfig for a test (short timeout, retries and backoff unless given)."""
    from watchdog.config import ApiConfig

    kw.setdefault("timeout_s", 2.0)
    kw.setdefault("retries", 2)
    return ApiConfig(kind=kind, url=url, api_key=api_key, **kw)


def _pypi_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


def server_venv(name: str, spec: str) -> Path:
    """``.cache/<name>`` with ``spec`` installed, built once per machine (file-locked)."""
    venv = CACHE / name
    CACHE.mkdir(exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest may be building it right now
        stamp = venv / STAMP
        if stamp.exists() and stamp.read_text() == spec:
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        out = subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=120
        )
        if out.returncode == 0:
            out = subprocess.run(
                [str(venv / "bin/pip"), "install", "-q", spec],
                capture_output=True,
                text=True,
                timeout=600,
            )
        if out.returncode != 0:
            tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
            if not _pypi_reachable():
                pytest.skip(f"cannot build {venv} ({spec}): PyPI is not reachable")
            pytest.fail(f"building {venv} ({spec}) failed:\n{tail}")
        stamp.write_text(spec)
        return venv


def wait_until(
    what: str, check: Callable[[], Any], timeout: float, log: Path | None = None, step: float = 0.1
) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` and the log."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (requests.RequestException, OSError, ValueError, KeyError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(step)
    where = f" (server log: {log})" if log else ""
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}; last: {last!r}{where}")


class ServerProcess:
    """A child process with its output appended to a log file; stop() ends its group."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv, self.log_path, self.env = argv, log_path, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== start {' '.join(self.argv)}\n".encode())
            self.proc = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )

    def freeze(self) -> None:
        """SIGSTOP: the port stays open and the kernel accepts connections, but nothing answers."""
        if self.running:
            os.killpg(self.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
            self.frozen = True

    def thaw(self) -> None:
        if self.running and self.frozen:
            os.killpg(self.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        self.frozen = False

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        self.thaw()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        self.proc = None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"{self.argv[0]} exited with {self.proc.returncode}; see {self.log_path}")


# --------------------------------------------------------------------------- OctoPrint

_OCTOPRINT_CONFIG = """\
server: {firstRun: false, onlineCheck: {enabled: false}, pluginBlacklist: {enabled: false}}
plugins:
  _disabled: [announcements, tracking, softwareupdate, pluginmanager, errortracking, discovery, health_check]
  virtual_printer: {enabled: true}
"""


class _ServerControl:
    """Process control shared by the real servers: stop, hang (SIGSTOP) and thaw."""

    process: ServerProcess

    @property
    def running(self) -> bool:
        return self.process.running

    def stop(self) -> None:
        self.process.stop()

    def freeze(self) -> None:
        """Hang: connections are accepted and never answered (SIGSTOP) until ``thaw()``."""
        self.process.freeze()

    def thaw(self) -> None:
        self.process.thaw()


class OctoPrintServer(_ServerControl):
    """A real OctoPrint with its virtual printer on 127.0.0.1 (see the module docstring)."""

    def __init__(self, venv: Path, basedir: Path) -> None:
        self.venv, self.basedir = venv, basedir
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.api_key = os.urandom(16).hex().upper()
        self.log_path = basedir.parent / "octoprint.log"
        self.http = requests.Session()
        self.http.headers["X-Api-Key"] = self.api_key
        self._prepare()
        bin_ = str(venv / "bin/octoprint")
        self.process = ServerProcess(
            [
                bin_,
                "serve",
                "--iknowwhatimdoing",
                "--basedir",
                str(basedir),
                "--host",
                HOST,
                "--port",
                str(self.port),
            ],
            self.log_path,
        )

    def _prepare(self) -> None:
        import yaml

        self.basedir.mkdir(parents=True, exist_ok=True)
        (self.basedir / "config.yaml").write_text(_OCTOPRINT_CONFIG)
        with open(self.log_path, "ab") as log:
            subprocess.run(
                [
                    str(self.venv / "bin/octoprint"),
                    "--basedir",
                    str(self.basedir),
                    "user",
                    "add",
                    "admin",
                    "--password",
                    os.urandom(8).hex(),
                    "--admin",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=120,
            )
        users_file = self.basedir / "users.yaml"
        users = yaml.safe_load(users_file.read_text())
        users["admin"]["apikey"] = self.api_key
        users_file.write_text(yaml.safe_dump(users))

    # ---- process

    def start(self, timeout: float = 60.0) -> None:
        """Start (or restart) the server; returns when /api/version answers 200."""
        self.process.start()

        def ready() -> bool:
            self.process.check_alive()
            return self.http.get(f"{self.url}/api/version", timeout=2).status_code == 200

        wait_until("OctoPrint /api/version", ready, timeout, self.log_path, step=0.2)

    # ---- API helpers

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.url + path, timeout=10)

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.http.post(self.url + path, json=body, timeout=10)

    def flags(self) -> dict[str, bool]:
        """``state.flags`` of GET /api/printer; {} when no printer is connected (409)."""
        r = self.get("/api/printer?exclude=temperature,sd")
        if r.status_code == 409:
            return {}
        r.raise_for_status()
        return r.json()["state"]["flags"]

    def printing(self) -> bool:
        """OctoPrint says a job is printing (not paused)."""
        return bool(self.flags().get("printing"))

    def wait_flag(self, name: str, value: bool = True, timeout: float = 30.0) -> dict[str, bool]:
        return wait_until(
            f"OctoPrint flag {name}={value}",
            lambda: (f := self.flags()) and f.get(name) == value and f,
            timeout,
            self.log_path,
        )

    def connect(self) -> None:
        r = self.post(
            "/api/connection", {"command": "connect", "port": "VIRTUAL", "baudrate": 115200}
        )
        assert r.status_code == 204, f"connect: HTTP {r.status_code} {r.text}"
        self.wait_flag("ready")

    def start_print(
        self, lines: int = 2000, name: str = "watchdog-test.gcode", first: str = ""
    ) -> None:
        """Upload a padded G-code file (``lines`` × G4 P200 ≈ lines/5 s) and print it
        (``first``: G-code it begins with, a heat-up).

        The virtual printer really waits: the default lasts about 7 minutes, longer than any
        test on a loaded machine (300 lines, a minute, ended during a slow daemon start)."""
        gcode = first + "G28\nG1 Z5 F3000\n" + "G4 P200\n" * lines + "M84\n"
        r = self.http.post(
            f"{self.url}/api/files/local",
            files={"file": (name, gcode.encode())},
            data={"select": "true", "print": "true"},
            timeout=30,
        )
        assert r.status_code == 201, f"upload: HTTP {r.status_code} {r.text}"
        self.wait_flag("printing")

    def cancel(self) -> None:
        self.post("/api/job", {"command": "cancel"})

    def reset(self) -> None:
        """Running, printer connected, nothing printing: the state every test starts from."""
        self.thaw()
        if not self.running:
            self.start()
        flags = self.flags()
        if not flags:
            self.connect()
            flags = self.flags()
        if flags.get("printing") or flags.get("paused") or flags.get("pausing"):
            self.cancel()
        wait_until(
            "OctoPrint idle and ready",
            lambda: (
                (f := self.flags()).get("ready")
                and not (f.get("printing") or f.get("paused") or f.get("cancelling"))
            ),
            60,
            self.log_path,
            step=0.2,
        )


@pytest.fixture(scope="session")
def _octoprint_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OctoPrintServer]:
    venv = server_venv("octoprint-venv", OCTOPRINT_SPEC)
    server = OctoPrintServer(venv, tmp_path_factory.mktemp("octoprint") / "basedir")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def octoprint_server(_octoprint_session: OctoPrintServer) -> OctoPrintServer:
    """A real OctoPrint, connected to its virtual printer, nothing printing."""
    _octoprint_session.reset()
    return _octoprint_session


# --------------------------------------------------------------------------- misbehaving server


class BadServer:
    """An HTTP server on 127.0.0.1 that answers as badly as the test asks."""

    def __init__(self, cert: tuple[Path, Path] | None = None) -> None:
        # path (without query) or None for any path → (status, body, content type)
        self.routes: dict[str | None, tuple[int, bytes, str]] = {
            None: (200, b"{}", "application/json")
        }
        self.hang_s = 0.0
        self.hang_path: str | None = None  # hang only on this path (None: every path)
        self.drip_s = 0.0  # send each answer's body a byte at a time, this far apart
        self.dropping = False
        self.requests = 0
        self.paths: list[str] = []  # the path of every request, in order
        self.sent: list[str] = []  # "METHOD path" of every request, in order
        self.api_key = "BADSERVERKEY42"  # clients may send it; it looks at no key
        self.headers: dict[str, str] = {}  # sent with every answer (a redirect's Location)
        self._release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                owner.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                owner.paths.append(path)
                owner.sent.append(f"{self.command} {path}")
                if owner.hang_s and owner.hang_path in (None, path):
                    owner._release.wait(owner.hang_s)
                    return  # say nothing at all: the client must time out
                if owner.dropping:
                    self.close_connection = True
                    return  # hang up without a word
                status, body, content_type = owner.routes.get(path) or owner.routes[None]
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in owner.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if owner.drip_s:
                    for i in range(len(body)):  # each byte well within any read timeout
                        if owner._release.wait(owner.drip_s):
                            return
                        try:
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                        except OSError:
                            return  # the client gave up
                    return
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*cert)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://{HOST}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.05,), name="bad-server", daemon=True
        )
        self._thread.start()

    def respond(
        self,
        status: int,
        body: bytes | str = b"",
        content_type: str = "application/json",
        path: str | None = None,
    ) -> None:
        """Answer requests to ``path`` (any path when None) with this status and body."""
        self.hang_s = 0.0
        self.routes[path] = (status, body.encode() if isinstance(body, str) else body, content_type)

    def hang(self, seconds: float = 30.0, path: str | None = None) -> None:
        self.hang_s, self.hang_path = seconds, path

    def drop(self) -> None:
        """Close every connection without answering."""
        self.dropping = True

    def garbage(self) -> None:
        self.respond(200, b'{"state": {"flags": {"printing": tru', "application/json")

    def close(self) -> None:
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)


@pytest.fixture
def bad_server() -> Iterator[BadServer]:
    server = BadServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def self_signed_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(certificate, key) PEM files for 127.0.0.1, self-signed with openssl."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.fixture
def bad_tls_server(self_signed_cert: tuple[Path, Path]) -> Iterator[BadServer]:
    """Like bad_server, over https with the self-signed certificate ``self_signed_cert``."""
    server = BadServer(self_signed_cert)
    try:
        yield server
    finally:
        server.close()


# --------------------------------------------------------------------------- Moonraker

_MOONRAKER_CONFIG = """\
[server]
host: {host}
port: {port}
klippy_uds_address: {sock}

[machine]
provider: none

[authorization]
trusted_clients:
  {trusted}/32

[announcements]
enable_moonlight: False
"""


class MoonrakerServer(_ServerControl):
    """The real Moonraker with the stand-in Klippy on 127.0.0.1 (see the module docstring)."""

    def __init__(self, venv: Path, data_dir: Path) -> None:
        self.venv, self.data_dir = venv, data_dir
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.api_key = ""
        self.log_path = data_dir.parent / "moonraker.log"
        self.klippy_log_path = data_dir.parent / "fake_klippy.log"
        self.sock = data_dir / "comms" / "klippy.sock"
        self.http = requests.Session()
        for sub in ("config", "logs", "gcodes", "comms", "misc"):
            (data_dir / sub).mkdir(parents=True, exist_ok=True)
        (data_dir / "misc" / "usb.ids").touch()  # or it downloads usb.ids at start
        (data_dir / "config" / "moonraker.conf").write_text(
            _MOONRAKER_CONFIG.format(
                host=HOST, port=self.port, sock=self.sock, trusted=TRUSTED_HOST
            )
        )
        self.process = ServerProcess(
            [str(venv / "bin/python"), "-m", "moonraker", "-d", str(data_dir)], self.log_path
        )
        self.klippy = ServerProcess(
            [
                sys.executable,
                str(ROOT / "tests" / "fake_klippy.py"),
                str(self.sock),
                "--data",
                str(data_dir),
            ],
            self.klippy_log_path,
        )

    # ---- trusted client (127.0.0.2): the key and readiness, without needing the key

    def _trusted_get(self, path: str) -> dict[str, Any]:
        conn = http.client.HTTPConnection(
            HOST, self.port, timeout=5, source_address=(TRUSTED_HOST, 0)
        )
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise ValueError(f"GET {path} from {TRUSTED_HOST}: HTTP {resp.status} {body[:200]!r}")
        return json.loads(body)["result"]

    def klippy_state(self) -> str:
        return self._trusted_get("/server/info")["klippy_state"]

    # ---- processes

    def start(self, timeout: float = 60.0) -> None:
        """Start (or restart) Moonraker (and the stand-in Klippy); returns when Klippy is ready."""
        self.start_klippy(wait=False)
        self.process.start()

        def ready() -> bool:
            self.process.check_alive()
            self.klippy.check_alive()
            return self.klippy_state() == "ready"

        wait_until("Moonraker with Klippy ready", ready, timeout, self.log_path, step=0.2)
        if not self.api_key:
            self.api_key = str(self._trusted_get("/access/api_key"))
            self.http.headers["X-Api-Key"] = self.api_key

    def start_klippy(self, wait: bool = True) -> None:
        self.klippy.start()
        if wait:
            wait_until(
                "Klippy ready in Moonraker",
                lambda: self.klippy_state() == "ready",
                30,
                self.log_path,
                step=0.2,
            )

    def stop_klippy(self) -> None:
        self.klippy.stop()
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()
        wait_until(
            "Moonraker to notice Klippy is gone",
            lambda: self.klippy_state() != "ready",
            30,
            self.log_path,
        )

    # ---- API helpers

    def get(self, path: str) -> requests.Response:
        return self.http.get(self.url + path, timeout=10)

    def post(self, path: str, params: dict[str, str] | None = None) -> requests.Response:
        return self.http.post(self.url + path, params=params, timeout=10)

    def print_state(self) -> str:
        """``print_stats.state``: standby | printing | paused | error | complete | cancelled."""
        r = self.get("/printer/objects/query?print_stats")
        r.raise_for_status()
        return r.json()["result"]["status"]["print_stats"]["state"]

    def printing(self) -> bool:
        """Klipper's print_stats says a job is printing (not paused)."""
        return self.print_state() == "printing"

    def wait_state(self, state: str, timeout: float = 30.0) -> str:
        return wait_until(
            f"Moonraker print_stats.state == {state}",
            lambda: self.print_state() == state and state,
            timeout,
            self.log_path,
        )

    def start_print(self, name: str = "watchdog-test.gcode") -> None:
        (self.data_dir / "gcodes" / name).write_text("G28\n" + "G4 P200\n" * 300)
        r = self.post("/printer/print/start", {"filename": name})
        assert r.status_code == 200, f"print start: HTTP {r.status_code} {r.text}"
        self.wait_state("printing")

    def cancel(self) -> None:
        self.post("/printer/print/cancel")

    def reset(self) -> None:
        """Running, Klippy ready, nothing printing: the state every test starts from."""
        self.thaw()
        if not self.running or not self.klippy.running:
            self.start()
        if self.klippy_state() != "ready":  # e.g. left in shutdown by an emergency stop
            self.post("/printer/firmware_restart")
            wait_until(
                "Klippy ready after restart",
                lambda: self.klippy_state() == "ready",
                30,
                self.log_path,
            )
        for mend in (
            "TEST_PAUSE_MACRO PAUSES=1",
            "TEST_PAUSE_MACRO DELAY=0",
            "TEST_RESUME_MACRO RESUMES=1",
            "M104 S0",  # heaters off: a test that heated leaves none heating
            "M140 S0",
        ):
            self.post("/printer/gcode/script", {"script": mend})
        if self.print_state() in ("printing", "paused"):
            self.cancel()
            wait_until(
                "print to end",
                lambda: self.print_state() not in ("printing", "paused"),
                30,
                self.log_path,
            )


@pytest.fixture(scope="session")
def _moonraker_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MoonrakerServer]:
    venv = server_venv("moonraker-venv", MOONRAKER_SPEC)
    server = MoonrakerServer(venv, tmp_path_factory.mktemp("moonraker") / "data")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.klippy.stop()


@pytest.fixture
def moonraker_server(_moonraker_session: MoonrakerServer) -> MoonrakerServer:
    """The real Moonraker with the stand-in Klippy ready, nothing printing."""
    _moonraker_session.reset()
    return _moonraker_session
