"""The daemon's HTTP server: health, status, metrics, the latest heatmap and the dashboard.

A Flask application served by waitress (pure Python, threads; no compiler, no Node):

    server = StatusServer(cfg.http.listen, status=lambda: {...}, registry=metrics.registry,
                          latest_jpeg=lambda printer: bytes_or_none, healthy=lambda: loop_alive,
                          dashboard=Dashboard(...))   # optional: watchdog.web.app
    server.start()          # binds now (UsageError naming http.listen if it cannot)
    ...
    server.stop()           # stops serving and joins its thread

Paths that stay what they were (scripts, Home Assistant and the README use them):

- ``GET /healthz``: 200 ``ok`` while ``healthy()``, else 503; never behind a login;
- ``GET /status``: ``status()`` as strict JSON (NaN as null). It must already be free of
  secrets: the server never sees the config, and serves only what the callables return;
- ``GET /metrics``: Prometheus text of ``registry``;
- ``GET /printers/<name>/latest.jpg``: ``latest_jpeg(name)`` as image/jpeg, 404 when None;
  ``name`` must match ``[A-Za-z0-9_-]{1,64}``; no file is ever served from a client's path.
- ``POST /actions/<token>``: ``actions(token)`` → (status, message), a notification's button
  (``watchdog.comms.actions``), outside the dashboard's login: the token is the capability.
  ``GET`` there (a link in an email or a chat) acts on nothing, so link previews never act:
  it is a page asking ``describe(token)``'s question with one button that POSTs. Waitress
  logs no request lines, so the token is never logged.

Everything else is the dashboard's (``/``, ``/login``, ``/api/...``, ``/static/...``).

Defences for a daemon that may listen beyond localhost: waitress reads requests in its own
event loop and hands only complete ones to its worker threads, so a few slow or idle clients
cannot starve ``/healthz``; the request head is limited to 8 KiB, bodies to 256 KiB; a client
that has not sent its whole request head within ``request_timeout_s`` (a slowloris dripping a
byte at a time) is disconnected, as is one idle that long; at most ``max_connections`` are
open at once, and one client (an IPv6 client: its /64; a trusted proxy aside) holds at most
a quarter of them (``per_client_limit``), so that it cannot take every one and keep them,
reopening each one cut, to make every other client wait; no version in ``Server:``, no
request text echoed in error bodies.
"""

from __future__ import annotations

import errno
import html
import json
import logging
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge, RequestHeaderFieldsTooLarge

from watchdog.errors import UsageError
from watchdog.web.auth import client_key

if TYPE_CHECKING:
    from watchdog.web.app import Dashboard

logger = logging.getLogger(__name__)
# A page load asks for the state, each printer's timeline and frame at once: a few requests
# waiting for a worker is normal, not the warning waitress logs for each of them.
logging.getLogger("waitress.queue").setLevel(logging.ERROR)

MAX_HEAD_BYTES = 8192
MAX_BODY_BYTES = 256 * 1024
# The most connections one client may hold, at least: a browser opens up to 6 to one host
BROWSER_CONNECTIONS = 8
# A client refused for holding its share is said in the log at most once in this many seconds
SHARE_LOG_EVERY_S = 60.0
# The daemon's own waits can hold up to five (three commands waiting on printers, the mask
# editor's frame, a settings save waiting for its reload): one more is left for /healthz,
# /status and the page's polls
WORKER_THREADS = 6
# at a stop, answers being made or sent are given this long to reach their clients
ANSWER_GRACE_S = 2.0
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{20,100}")  # a phone button's capability token


def per_client_limit(max_connections: int) -> int:
    """The most connections one client may hold: a quarter of ``max_connections``, at least
    ``BROWSER_CONNECTIONS`` (a browser's own); all of them where that is as many."""
    return min(max_connections, max(BROWSER_CONNECTIONS, max_connections // 4))


def parse_listen(listen: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` → (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UsageError(f'http.listen {listen!r}: must be "host:port", e.g. "127.0.0.1:8787"')
    return host.strip("[]"), int(port)


def not_here(listen: str) -> bool:
    """Whether ``http.listen`` names an address no network of this machine has now (the
    daemon listens there all the same: ``StatusServer._bind``)."""
    try:
        host, _ = parse_listen(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
    except OSError as exc:
        return exc.errno == errno.EADDRNOTAVAIL
    except UsageError:
        return False
    return False


def finite(value: Any) -> Any:
    """NaN and infinities as null, so /status is strict JSON (a score may be NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def json_response(data: Any, status: int = 200) -> Response:
    body = json.dumps(finite(data), default=str, sort_keys=True, allow_nan=False) + "\n"
    return Response(body, status, mimetype="application/json")


def text(body: str, status: int) -> Response:
    return Response(body + "\n", status, mimetype="text/plain")


def action_page(status: int, message: str) -> Response:
    """A link's page: the question and one button that POSTs to this same URL (200), or why
    the link does nothing any more. No script; nothing loaded from elsewhere."""
    body = html.escape(message)
    button = (
        '<form method="post"><button type="submit">Yes</button></form>' if status == 200 else ""
    )
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Printer watchdog</title><style>body{font:1.2rem sans-serif;margin:2rem}"
        "button{font-size:1.3rem;padding:.6rem 2.5rem}</style></head>"
        f"<body><p>{body}</p>{button}</body></html>\n"
    )
    response = Response(page, status, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )
    return response


def _refusal_line(error: Any) -> str:
    """What waitress refuses before the application sees a request, in one line of the
    watchdog's own (waitress's own text is three lines, one naming itself)."""
    if isinstance(error, RequestEntityTooLarge):
        return f"413 the request's body is over the {MAX_BODY_BYTES // 1024} KiB allowed"
    if isinstance(error, RequestHeaderFieldsTooLarge):
        return f"431 the request's head is over the {MAX_HEAD_BYTES // 1024} KiB allowed"
    return f"{error.code} {error.reason}"


class _OneLineError(ErrorTask):
    """Waitress's refusals (a body or head too large, a malformed request) as one line."""

    def execute(self) -> None:
        body = (_refusal_line(self.request.error) + "\n").encode()
        self.status = f"{self.request.error.code} {self.request.error.reason}"
        self.response_headers.append(("Content-Type", "text/plain; charset=utf-8"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class _Channel(HTTPChannel):
    """Remembers when the current request head started arriving (for the slowloris cut-off);
    closed at once, unread, where its client already holds its share of the connections."""

    error_task_class = _OneLineError

    head_started: float | None = None

    def __init__(self, server: _Server, sock: socket.socket, addr: Any, adj: Any, map: Any = None):
        super().__init__(server, sock, addr, adj, map)
        if server.over_its_share(addr):
            self.will_close = True  # closed at the server loop's next turn

    def received(self, data: bytes) -> bool:
        if data and self.request is None and self.head_started is None:
            self.head_started = time.monotonic()
        result = super().received(data)
        if self.request is None or self.request.completed:
            self.head_started = None
        return result


class _Server(TcpWSGIServer):
    channel_class = _Channel

    def __init__(
        self, *args: Any, per_client: int, exempt: Callable[[str], bool], **kwargs: Any
    ) -> None:
        """``per_client``: the most connections one client may hold (0: no limit);
        ``exempt``: the addresses it does not hold for (trusted proxies, whose connections
        are many clients')."""
        self.per_client, self.exempt = per_client, exempt
        self._share_told: dict[str, float] = {}  # client: when its refusal was last logged
        super().__init__(*args, **kwargs)

    def over_its_share(self, addr: Any) -> bool:
        """Whether the client at ``addr`` holds more than ``per_client`` connections with the
        one just accepted (runs in the server's loop thread, as every accept)."""
        if not self.per_client or not isinstance(addr, tuple) or self.exempt(str(addr[0])):
            return False
        key = client_key(str(addr[0]))
        held = sum(
            1
            for channel in self.active_channels.values()
            if isinstance(channel.addr, tuple) and client_key(str(channel.addr[0])) == key
        )
        if held <= self.per_client:
            return False
        told = self._share_told
        now = time.monotonic()
        if now - told.get(key, -SHARE_LOG_EVERY_S) >= SHARE_LOG_EVERY_S:
            if len(told) > 1000:
                told.clear()
            told[key] = now
            logger.warning(
                "http: %s holds %d connections, its share of http.max_connections: more from "
                "it are closed at once",
                key,
                self.per_client,
            )
        return True

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle connections (channel_timeout)
        deadline = time.monotonic() - self.adj.channel_timeout
        for channel in list(self.active_channels.values()):
            started = getattr(channel, "head_started", None)
            if started is not None and started < deadline and not channel.requests:
                channel.will_close = True  # still sending its request after the whole timeout


IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Linux's value; Python names it from 3.12


class StatusServer:
    """The daemon's HTTP endpoints (and the dashboard when given) on ``listen``."""

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
        dashboard: Dashboard | None = None,
        actions: Callable[[str], tuple[int, str]] | None = None,
        describe_action: Callable[[str], tuple[int, str]] | None = None,
    ) -> None:
        self.listen = listen
        self.host, self.port = parse_listen(listen)
        self.status = status
        self.registry = registry
        self.latest_jpeg = latest_jpeg
        self.healthy = healthy
        self.request_timeout_s = request_timeout_s
        self.max_connections = max_connections
        self.dashboard = dashboard
        self.actions = actions  # POST /actions/<token>: a phone button (watchdog.comms.actions)
        self.describe_action = describe_action  # GET /actions/<token>: what it would do
        self.app = self._build_app()
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
            logger.exception("http: %s() failed", what)
            return None

    def _build_app(self) -> Flask:
        app = Flask("watchdog.web", static_folder=None, template_folder=None)
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

        @app.before_request
        def only_get_and_post() -> Response | None:
            # Nothing here needs HEAD or OPTIONS (no CORS): one less surface.
            if request.method not in ("GET", "POST"):
                response = text("405 Method Not Allowed", 405)
                response.headers["Allow"] = "GET"
                return response
            return None

        @app.get("/healthz")
        def healthz() -> Response:
            if self.call("healthy", self.healthy):
                return text("ok", 200)
            return text("unhealthy", 503)

        @app.get("/status")
        def status() -> Response:
            data = self.call("status", self.status)
            if data is None:
                return text("500 status unavailable", 500)
            return json_response(data)

        @app.get("/metrics")
        def metrics() -> Response:
            return Response(generate_latest(self.registry), 200, content_type=CONTENT_TYPE_LATEST)

        @app.get("/printers/<name>/latest.jpg")
        def latest(name: str) -> Response:
            if not _NAME.fullmatch(name):
                return text("404 Not Found", 404)
            jpeg = self.call("latest_jpeg", self.latest_jpeg, name)
            if not jpeg:
                return text("404 no image yet for this printer", 404)
            return Response(bytes(jpeg), 200, mimetype="image/jpeg")

        @app.route("/actions/<token>", methods=["GET", "POST"])
        def action(token: str) -> Response:
            if self.actions is None or not _TOKEN.fullmatch(token):
                return text("404 Not Found", 404)
            if request.method != "POST":  # link previews and prefetchers GET: they must not act
                if self.describe_action is None:
                    response = text("405 press the button (POST)", 405)
                    response.headers["Allow"] = "POST"
                    return response
                asked = self.call("describe", self.describe_action, token)
                return action_page(*(asked or (500, "the action cannot be shown")))
            answer = self.call("actions", self.actions, token) or (500, "the action failed")
            return text(answer[1], answer[0])

        @app.errorhandler(404)
        def not_found(_: Exception) -> Response:
            return text("404 Not Found", 404)

        @app.errorhandler(405)
        def not_allowed(exc: Any) -> Response:
            response = text("405 Method Not Allowed", 405)
            allowed = exc.valid_methods if getattr(exc, "valid_methods", None) else ["GET"]
            response.headers["Allow"] = ", ".join(
                m for m in allowed if m not in ("HEAD", "OPTIONS")
            )
            return response

        @app.errorhandler(413)
        def too_large(_: Exception) -> Response:
            return text(_refusal_line(RequestEntityTooLarge("")), 413)

        @app.errorhandler(500)
        def server_error(_: Exception) -> Response:
            return text("500 Internal Server Error", 500)

        @app.after_request
        def headers(response: Response) -> Response:
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["X-Frame-Options"] = "DENY"
            # nothing to other sites; not "no-referrer": under it a browser sends its form
            # posts with "Origin: null", and the login form was refused as cross-site
            response.headers["Referrer-Policy"] = "same-origin"
            return response

        if self.dashboard is not None:
            self.dashboard.install(app)
        return app

    def _bind(self, sock: socket.socket) -> None:
        """Bind to ``http.listen``; an address of the Pi's own network not assigned yet is
        bound all the same (Linux's IP_FREEBIND). After a power cut the Pi starts before the
        router answers: the daemon exited, systemd's restarts ran out, and the printer was
        unwatched all night."""
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            if exc.errno != errno.EADDRNOTAVAIL or not hasattr(socket, "SO_BINDTODEVICE"):
                raise  # not Linux: no such option
            sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
            sock.bind((self.host, self.port))
            logger.warning(
                "http.listen %s: no network of this machine has the address %s yet (a network "
                "still coming up, or a mistyped address); the page answers once one has it",
                self.listen,
                self.host,
            )

    def start(self) -> None:
        """Bind and serve in a thread; UsageError naming http.listen if the address is unusable."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._bind(sock)
        except OSError as exc:
            sock.close()
            raise UsageError(
                f"http.listen {self.listen}: cannot listen: {exc.strerror or exc}"
            ) from exc
        self.port = sock.getsockname()[1]
        adj = Adjustments(
            threads=WORKER_THREADS,
            connection_limit=self.max_connections,
            max_request_header_size=MAX_HEAD_BYTES,
            max_request_body_size=MAX_BODY_BYTES,
            ident="printer-watchdog",
            expose_tracebacks=False,
            # X-Forwarded-*: kept for the dashboard's own check of http.trusted_proxies
            clear_untrusted_proxy_headers=not (self.dashboard and self.dashboard.proxies.networks),
            asyncore_use_poll=True,
        )
        # Adjustments casts these to whole seconds; the server only compares them with clocks.
        adj.channel_timeout = self.request_timeout_s
        adj.cleanup_interval = max(0.1, min(1.0, self.request_timeout_s / 4))
        adj.asyncore_loop_timeout = 0.2
        info = (family, socket.SOCK_STREAM, 0, (self.host, self.port))
        self._server = _Server(
            self.app,
            per_client=per_client_limit(self.max_connections),
            exempt=(lambda host: False)
            if self.dashboard is None
            else self.dashboard.proxies.trusted,
            adj=adj,
            _sock=sock,
            sockinfo=info,
            bind_socket=False,
        )
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)
        self._thread.start()
        what = "dashboard, " if self.dashboard is not None else ""
        logger.info("http server on %s (%s/healthz /status /metrics)", self.url, what)

    def stop(self, timeout: float | None = None) -> None:
        """Stop serving, close every connection, join the threads (within ``timeout`` in all;
        by default what a request may take, and some)."""
        wait = self.request_timeout_s + 5 if timeout is None else timeout
        deadline = time.monotonic() + wait
        server, self._server = self._server, None
        if server is None:
            return
        # answers made as the daemon stops (the commands it refused) reach their clients first:
        # closed at once, the page and a phone's press got a dropped connection
        grace = time.monotonic() + min(ANSWER_GRACE_S, wait)
        while _answering(server) and time.monotonic() < grace:
            time.sleep(0.05)

        def close_all() -> None:  # runs in the server's own loop thread
            for channel in list(server._map.values()):
                if channel is not server.trigger:
                    channel.close()
            server.close()

        try:
            server.trigger.pull_trigger(close_all)
        except OSError as exc:  # the loop's wake-up pipe is gone: close from here instead
            logger.warning("http server: closing without its loop (%s)", exc)
            close_all()
        if self._thread is not None:
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        server.task_dispatcher.shutdown(timeout=max(0.0, deadline - time.monotonic()))
        self._thread = None


def _answering(server: Any) -> bool:
    """A request of ``server`` is being answered: its thread at work, or its answer not all
    sent yet (waitress's loop thread sends what the request's thread wrote)."""
    if server.task_dispatcher.active_count > 0:
        return True
    try:
        channels = list(server._map.values())
    except RuntimeError:  # changed while read (a connection opened or closed): ask again
        return True
    return any(getattr(channel, "total_outbufs_len", 0) for channel in channels)
