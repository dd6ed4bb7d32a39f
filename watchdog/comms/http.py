"""The status HTTP server: health, status, metrics and the latest heatmap, GET only.

The daemon creates and owns it::

    server = StatusServer(cfg.http.listen, status=lambda: {...}, registry=metrics.registry,
                          latest_jpeg=lambda printer: bytes_or_none, healthy=lambda: loop_alive)
    server.start()          # binds now (UsageError naming http.listen if it cannot)
    ...
    server.stop()           # stops serving and joins every thread

Paths (anything else is 404, any other method 405):

- ``GET /healthz``: 200 ``ok`` while ``healthy()``, else 503;
- ``GET /status``: ``status()`` as JSON. It must already be free of secrets: the server never
  sees the config, and serves only what the callables return;
- ``GET /metrics``: Prometheus text of ``registry``;
- ``GET /printers/<name>/latest.jpg``: ``latest_jpeg(name)`` as image/jpeg, 404 when None.
  ``name`` must match ``[A-Za-z0-9_-]{1,64}`` in the raw path (no decoding, so ``..``,
  ``%2e%2e`` or ``/`` can never reach the callable); no file is ever served from disk.

Defences for a daemon that may listen beyond localhost: bind to 127.0.0.1 by default (the
config's default), one request per connection, the request head (request line + headers)
limited to 8 KiB (414/431) and to ``request_timeout_s`` in total (a slowloris is cut off, 408),
at most ``max_connections`` handled at once (more are dropped), no version in ``Server:``, no
request text echoed in error bodies.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from watchdog.errors import UsageError

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 8192
_LATEST = re.compile(r"/printers/([A-Za-z0-9_-]{1,64})/latest\.jpg")


def parse_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` → (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UsageError(f'http.listen {listen!r}: must be "host:port", e.g. "127.0.0.1:8787"')
    return host.strip("[]"), int(port)


def _finite(value: Any) -> Any:
    """NaN and infinities as null, so /status is strict JSON (a score may be NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # request threads are joined by server_close()
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type, app: StatusServer) -> None:
        self.app = app
        self._slots = threading.BoundedSemaphore(app.max_connections)
        super().__init__(address, handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # HTTPServer's version does a reverse DNS lookup
        host, self.server_port = self.server_address[:2]
        self.server_name = str(host)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            logger.debug("status server busy: dropping a connection from %s", client_address[0])
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread could be started
            self._slots.release()
            self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"
    default_request_version = "HTTP/1.0"  # errors get a status line even for garbage requests
    server_version = "printer-watchdog"
    sys_version = ""

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("status server %s: " + format, self.client_address[0], *args)

    def handle(self) -> None:
        self.close_connection = True  # one request per connection: nothing to keep alive
        self.handle_one_request()

    def handle_one_request(self) -> None:
        app = self.server.app
        head = self._read_head(app.request_timeout_s)
        self.connection.settimeout(app.request_timeout_s)  # bounds writing to a slow reader too
        if head is None:
            return
        self._socket_rfile, self.rfile = self.rfile, io.BytesIO(head)
        self.raw_requestline = self.rfile.readline(MAX_HEAD_BYTES + 1)
        self.requestline, self.request_version, self.command = "", self.default_request_version, ""
        if not self.parse_request():
            return
        if self.headers.defects:  # e.g. a header line without a colon
            self.send_error(HTTPStatus.BAD_REQUEST)
            return
        if self.command != "GET":
            self._reply(HTTPStatus.METHOD_NOT_ALLOWED, b"405 only GET is served\n", extra={"Allow": "GET"})
            return
        try:
            self._route(app)
        except OSError:
            pass  # the client went away while we answered

    def finish(self) -> None:
        super().finish()
        sock_rfile = getattr(self, "_socket_rfile", None)
        if sock_rfile is not None:
            sock_rfile.close()  # else the socket's file descriptor outlives the connection

    def _read_head(self, timeout: float) -> bytes | None:
        """Request line and headers, at most MAX_HEAD_BYTES and ``timeout`` seconds in total."""
        deadline = time.monotonic() + timeout
        buf = bytearray()
        while True:
            for sep in (b"\r\n\r\n", b"\n\n"):
                end = buf.find(sep)
                if 0 <= end <= MAX_HEAD_BYTES:
                    return bytes(buf[: end + len(sep)])
            if len(buf) > MAX_HEAD_BYTES:
                status = HTTPStatus.REQUEST_URI_TOO_LONG if b"\n" not in buf else HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
                self._early_error(status)
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                self._early_error(HTTPStatus.REQUEST_TIMEOUT)
                return None
            try:
                self.connection.settimeout(left)
                chunk = self.connection.recv(4096)
            except TimeoutError:
                continue  # the deadline check above answers 408
            except OSError:
                return None
            if not chunk:
                return bytes(buf) + b"\r\n\r\n" if buf.strip() else None  # client half-closed
            buf += chunk

    def _early_error(self, status: HTTPStatus) -> None:
        self.request_version = "HTTP/1.0"
        self.requestline, self.command = "", ""
        try:
            self.connection.settimeout(1.0)
            self.send_error(status)
        except OSError:
            pass

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Plain-text errors that echo nothing of the request."""
        status = HTTPStatus(code)
        if message:
            logger.debug("status server: %d %s", code, message)
        self._reply(status, f"{status.value} {status.phrase}\n".encode())

    def _reply(self, status: HTTPStatus, body: bytes, ctype: str = "text/plain; charset=utf-8", extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Connection", "close")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _route(self, app: StatusServer) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            ok = app.call("healthy", app.healthy)
            if ok:
                self._reply(HTTPStatus.OK, b"ok\n")
            else:
                self._reply(HTTPStatus.SERVICE_UNAVAILABLE, b"unhealthy\n")
        elif path == "/status":
            status = app.call("status", app.status)
            if status is None:
                self._reply(HTTPStatus.INTERNAL_SERVER_ERROR, b"500 status unavailable\n")
            else:
                body = json.dumps(_finite(status), default=str, sort_keys=True, allow_nan=False).encode() + b"\n"
                self._reply(HTTPStatus.OK, body, "application/json")
        elif path == "/metrics":
            self._reply(HTTPStatus.OK, generate_latest(app.registry), CONTENT_TYPE_LATEST)
        elif m := _LATEST.fullmatch(path):
            jpeg = app.call("latest_jpeg", app.latest_jpeg, m.group(1))
            if jpeg:
                self._reply(HTTPStatus.OK, bytes(jpeg), "image/jpeg")
            else:
                self._reply(HTTPStatus.NOT_FOUND, b"404 no image yet for this printer\n")
        else:
            self._reply(HTTPStatus.NOT_FOUND, b"404 Not Found\n")


class StatusServer:
    """GET /healthz, /status, /metrics and /printers/<name>/latest.jpg on ``listen``."""

    def __init__(
        self,
        listen: str,
        status: Callable[[], dict],
        registry: CollectorRegistry,
        latest_jpeg: Callable[[str], bytes | None],
        healthy: Callable[[], bool],
        *,
        request_timeout_s: float = 5.0,
        max_connections: int = 32,
    ) -> None:
        self.listen = listen
        self.host, self.port = parse_listen(listen)
        self.status = status
        self.registry = registry
        self.latest_jpeg = latest_jpeg
        self.healthy = healthy
        self.request_timeout_s = request_timeout_s
        self.max_connections = max_connections
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server (with the real port when listen asked for port 0)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def call(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a daemon callback; a failure gives None (a 500/503/404), logged, never a crash."""
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001 - a bug in a callback must not take the server down
            logger.exception("status server: %s() failed", what)
            return None

    def start(self) -> None:
        """Bind and serve in a thread; UsageError naming http.listen if the address is unusable."""
        cls = _Server6 if ":" in self.host else _Server
        try:
            self._server = cls((self.host, self.port), _Handler, self)
        except OSError as exc:
            raise UsageError(f"http.listen {self.listen}: cannot listen: {exc.strerror or exc}") from exc
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="status-http")
        self._thread.start()
        logger.info("status server on %s (/healthz /status /metrics)", self.url)

    def stop(self) -> None:
        """Stop serving, wait for requests in flight (bounded by the request timeout), join."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=self.request_timeout_s + 5)
        self._server = None
        self._thread = None
