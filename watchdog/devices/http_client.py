"""HTTP for cameras and printer APIs, on urllib3 alone.

Why not requests: the daemon needs a GET whose body it reads under a byte limit and a
deadline, a JSON POST, timeouts and a few redirects, all of which urllib3 does. requests adds
about 4 MB to every daemon (charset_normalizer, idna and its own modules; benchmarks/memory.py)
for conveniences the daemon does not use. What requests did for us is done here: credentials
in the URL (``http://user:pass@host/``) are sent as basic auth, and kept across a redirect only
while it stays on the same host (http to https on the default ports included). Unlike requests,
proxy settings in the environment (``HTTP_PROXY``) are not used: cameras and printers are on
the local network.

Errors are urllib3's own (``urllib3.exceptions``), raised as they happen: connecting
(``NewConnectionError``, ``ConnectTimeoutError``, ``SSLError``, ``ProtocolError``) from
``open``, reading (``ReadTimeoutError``, ``ProtocolError``) from the response. Callers say
what they mean in the user's words, from ``timed_out`` and ``connection_cause`` here: one
reading of urllib3's nested errors for cameras and printers alike.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError
from urllib3.util.ssl_ import create_urllib3_context

from watchdog import __version__
from watchdog.redact import redact_url

REDIRECT_CODES = frozenset((301, 302, 303, 307, 308))
USER_AGENT = f"printer-watchdog/{__version__}"
STOP_POLL_S = 0.2  # how soon a request sees its stop event
_DEFAULT_PORTS = {"http": 80, "https": 443}


# words in urllib3's nested errors → the cause in a user's words ({peer}: who closed it)
UNTRUSTED_CERTIFICATE = (
    "its TLS certificate is not trusted here (self-signed, or from a private CA)"
)
_CERTIFICATE_CAUSES = (  # what trying again cannot mend
    (
        ("certificate has expired", "certificate is not yet valid"),
        "its TLS certificate is not valid now (expired, or this machine's clock is wrong)",
    ),
    (
        ("Hostname mismatch", "IP address mismatch"),
        "its TLS certificate names another host than the address does",
    ),
    (
        ("NO_CERTIFICATE_OR_CRL_FOUND", "FileNotFoundError", "PEM lib"),
        "the CA file set for it (ca_file) cannot be read or holds no certificate in PEM",
    ),
    (("CERTIFICATE_VERIFY_FAILED",), UNTRUSTED_CERTIFICATE),
)
_CONNECTION_CAUSES = (
    (
        (
            "NameResolutionError",
            "Name or service not known",
            "nodename nor servname",
            "getaddrinfo failed",
            "Temporary failure in name resolution",
            "No address associated",
        ),
        "host name not found (DNS)",
    ),
    *_CERTIFICATE_CAUSES,
    (("WRONG_VERSION_NUMBER",), "TLS failed: does it speak http, not https?"),
    (("refused",), "connection refused (nothing listens on that port)"),
    (("timed out", "Timeout"), "no answer (timed out)"),
    (("No route to host", "unreachable"), "host unreachable (network)"),
    (
        ("reset by peer", "RemoteDisconnected", "Connection aborted"),
        "connection closed by the {peer}",
    ),
)


def timed_out(exc: BaseException) -> bool:
    """A timeout, not a refused connection (urllib3's NewConnectionError is a timeout's subclass)."""
    return isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError) and not isinstance(
        exc, urllib3.exceptions.NewConnectionError
    )


def certificate_refused(exc: BaseException) -> bool:
    """A TLS error that trying again cannot mend (a certificate not trusted, expired or of
    another host; the CA file unreadable), not a handshake cut short (a proxy restarting)."""
    text = f"{exc!r} {exc}"
    return any(n in text for needles, _ in _CERTIFICATE_CAUSES for n in needles)


def connection_cause(exc: BaseException, peer: str) -> str | None:
    """Why a host could not be reached, in a user's words (DNS, refused, timeout, unreachable,
    closed by the ``peer``); None when urllib3's error says none of these."""
    text = f"{exc!r} {exc}"
    for needles, cause in _CONNECTION_CAUSES:
        if any(n in text for n in needles):
            return cause.format(peer=peer)
    return None


class TooManyRedirects(HTTPError):
    """More redirects than the client follows (a redirect loop?)."""


class Unreached(HTTPError):
    """The address a redirect led to could not be reached: ``url`` is that address (the
    first host answered, with the redirect), ``cause`` urllib3's error for it."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.url = url
        self.cause = cause


class BadUrl(HTTPError):
    """An address that is not a valid URL (a port out of range, a broken IPv6 address), as
    given or as a redirect's Location; the message names it with its secrets masked."""


class Deadline:
    """One request's whole time, from connecting to its last byte (``HttpClient.deadline``).

    urllib3's timeouts bound each wait for data: a server that sends its headers or its body a
    byte at a time, each within the timeout, holds the caller for as long as it likes. When the
    deadline passes, the connection in use is shut down, so whatever read is waiting on it
    ends at once (with a urllib3 error the caller maps to its own timeout message: ``expired``
    says it was this)."""

    def __init__(self) -> None:
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def use(self, conn: Any) -> None:
        """The connection the request goes over (its socket, once connected: http.client lets
        go of it while the response still reads from it)."""
        sock = getattr(conn, "sock", None)
        if sock is None:
            return
        with self._lock:
            self._sock = sock
            if self.expired:
                self._shut()

    @property
    def connected(self) -> bool:
        """Whether the request got a connection (before it, nothing was sent)."""
        with self._lock:
            return self._sock is not None

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            self._shut()

    def _shut(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()  # the Deadline of the request this thread is making, if any


def _in_use(conn: Any) -> None:
    if (deadline := getattr(_current, "deadline", None)) is not None:
        deadline.use(conn)


class _ConnectsUnderDeadline:
    """Mixed into a connection class: a new connection is handed to the request's Deadline."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _in_use(self)


class _PoolUnderDeadline:
    """Mixed into a pool class: so is a kept-alive connection, connected already."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        _in_use(conn)
        return conn


class _DeadlineConnection(_ConnectsUnderDeadline, HTTPConnection):
    pass


class _DeadlineTlsConnection(_ConnectsUnderDeadline, HTTPSConnection):
    pass


class _DeadlinePool(_PoolUnderDeadline, HTTPConnectionPool):
    ConnectionCls = _DeadlineConnection


class _DeadlineTlsPool(_PoolUnderDeadline, HTTPSConnectionPool):
    ConnectionCls = _DeadlineTlsConnection


@dataclass(frozen=True)
class Answer:
    """An answer whose body is not read yet, and the address that gave it (after redirects)."""

    response: urllib3.BaseHTTPResponse
    url: str
    authenticated: bool  # a user name and password were sent to that address


class HttpClient:
    """One camera's or printer's connections: its headers, TLS settings and redirect limit."""

    def __init__(
        self,
        headers: Mapping[str, str] | None = None,
        *,
        verify: bool | str = True,
        max_redirects: int = 0,
    ) -> None:
        """``verify``: check TLS certificates against the system's CAs (True), a CA file (its
        path), or not at all (False). ``max_redirects``: 0 returns a redirect as the answer."""
        ca = verify if isinstance(verify, str) else None
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=1,
            retries=False,
            cert_reqs="CERT_NONE" if verify is False else "CERT_REQUIRED",
            ca_certs=ca if ca and not os.path.isdir(ca) else None,
            ca_cert_dir=ca if ca and os.path.isdir(ca) else None,  # a hashed folder of CAs
        )
        self._pool.pool_classes_by_scheme = {"http": _DeadlinePool, "https": _DeadlineTlsPool}
        self._shared_tls = None if ca else verify is not False  # see _tls_for
        self._headers = {"User-Agent": USER_AGENT, **(headers or {})}
        self._max_redirects = max_redirects

    def open(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """The answer with its body not read yet: read it (``read``, ``read1``), then
        ``close`` it; with the address that gave it after redirects and whether a user name
        and password went there (a refusal names the host that refused). ``timeout`` bounds
        connecting and each wait for data. BadUrl for an address that is not a valid URL."""
        origin = _origin(url)
        auth = first_auth = _basic_auth(url)
        for hop in range(self._max_redirects + 1):
            self._tls_for(url)
            try:
                resp = self._pool.request(
                    method,
                    _without_userinfo(url),
                    body=body,
                    headers={**self._headers, **(headers or {}), **auth},
                    timeout=urllib3.Timeout(connect=timeout, read=timeout),
                    preload_content=False,
                    redirect=False,
                    retries=False,
                )
            except (HTTPError, OSError) as exc:
                if hop:  # the host that failed is the redirect's, not the one configured
                    raise Unreached(url, exc) from exc
                raise
            location = resp.headers.get("Location")
            if self._max_redirects == 0 or resp.status not in REDIRECT_CODES or not location:
                return Answer(resp, url, bool(auth))
            resp.close()
            try:
                url = urljoin(url, location)
            except ValueError:
                raise BadUrl(f"redirect to an invalid address {redact_url(location)}") from None
            # never the first host's credentials to another host, and back with them to it
            auth = first_auth if _same_host(origin, _origin(url)) else _basic_auth(url)
        raise TooManyRedirects(f"more than {self._max_redirects} redirects")

    @contextlib.contextmanager
    def deadline(self, seconds: float, stop: threading.Event | None = None) -> Iterator[Deadline]:
        """Requests made in this block by this thread, their bodies read included, end within
        ``seconds`` (see ``Deadline``), or as soon as ``stop`` is set: a Ctrl-C or a shutdown
        does not wait out a camera that does not answer."""
        deadline = Deadline()
        done = threading.Event()
        watcher = threading.Thread(
            target=_expire_when, args=(deadline, done, seconds, stop), daemon=True
        )
        before = getattr(_current, "deadline", None)
        _current.deadline = deadline
        watcher.start()
        try:
            yield deadline
        finally:
            done.set()
            _current.deadline = before

    def close(self) -> None:
        """Close its connections now. urllib3's ``PoolManager.clear`` only forgets its pools:
        a pool still referenced elsewhere (a failed request's traceback holds one until a
        full garbage collection) kept its kept-alive connection open. A request after this
        opens a new one; a connection handed back to a closed pool is closed."""
        pools = self._pool.pools
        for key in list(pools.keys()):
            with contextlib.suppress(KeyError):
                pools[key].close()
        self._pool.clear()

    def _tls_for(self, url: str) -> None:
        """Before this client's first https request, the daemon's shared TLS context (made
        then: an http-only daemon never loads the CAs)."""
        kw = self._pool.connection_pool_kw
        if self._shared_tls is not None and "ssl_context" not in kw and url[:6].lower() == "https:":
            kw["ssl_context"] = _shared_tls_context(self._shared_tls)


def _expire_when(
    deadline: Deadline, done: threading.Event, seconds: float, stop: threading.Event | None
) -> None:
    """``deadline`` expires after ``seconds``, or once ``stop`` is set (looked at five times a
    second), unless ``done`` comes first."""
    ends = time.monotonic() + seconds
    while not (stop is not None and stop.is_set()):
        left = ends - time.monotonic()
        if left <= 0:
            break
        if done.wait(left if stop is None else min(left, STOP_POLL_S)):
            return
    if not done.is_set():  # a connection handed back to its pool is not shut
        deadline.expire()


@functools.cache
def _shared_tls_context(verify: bool) -> ssl.SSLContext:
    """One TLS context with the system's CAs (or none, unverified) for every client.

    Why: a context loads the system's CA certificates, about 0.9 MB, and urllib3 makes one per
    connection otherwise, so every printer or camera on https cost that much. A client with its
    own CA file (one certificate) keeps urllib3's context per connection. The system's CAs are
    read once per daemon: a CA update (the ca-certificates package) applies after a restart."""
    if not verify:
        return create_urllib3_context(cert_reqs=ssl.CERT_NONE)
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_default_certs()
    return context


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port with the scheme's default filled in)."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port out of range or not a number, a broken IPv6 address
        # (not the parser's text: it may quote a piece of a password cut at a '/' or '#')
        raise BadUrl("not a valid address (its host or port cannot be read)") from None


def _same_host(a: tuple[str, str, int | None], b: tuple[str, str, int | None]) -> bool:
    """Same scheme, host and port, or the same host moving from http to https on the default
    ports (what requests allowed too)."""
    return a == b or (
        a[1] == b[1] and a[0] == "http" and b[0] == "https" and (a[2], b[2]) == (80, 443)
    )


def _basic_auth(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    if parts.username is None:
        return {}
    user, password = unquote(parts.username), unquote(parts.password or "")
    # UTF-8, as browsers and curl send it (urllib3's own helper takes Latin-1 only, and a
    # password with a euro sign or Cyrillic letters raised on every request)
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"authorization": f"Basic {token}"}


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
