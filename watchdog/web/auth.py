"""Who may see the camera and press the buttons.

On loopback the page is open (CSRF tokens and a Host check still guard the buttons against
other web sites in the owner's browser). Beyond loopback a password is required: read from
``http.password_file`` (plain or already hashed) or generated on first start, written for the
owner to read once (never printed) and kept as a hash in ``<storage.dir>/web/password``.
Sessions live in memory (a restart logs everyone out), expire, and carry their own CSRF token; failed logins are rate-limited per
client (an IPv6 client by its /64; behind a trusted reverse proxy, the client it names), and one
password is checked at a time.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import sys
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from watchdog.config import PASSWORD_HASH_PREFIXES as HASH_PREFIXES
from watchdog.config import HttpConfig, usable_password
from watchdog.durable import read_small, replace_file
from watchdog.errors import UsageError

logger = logging.getLogger(__name__)

GENERATED = Path("web") / "password"  # under storage.dir: the hash of a generated password
FIRST_PASSWORD = Path("web") / "first-password"  # the generated password, for its owner to read
MAX_SESSIONS = 100


def password_hash(cfg: HttpConfig, storage_dir: Path, announce: bool = True) -> str | None:
    """The hash logins are checked against; None when no login is needed (loopback).

    A generated password is written once, on the start that creates it, to a file only the
    service's user can read (``<storage.dir>/web/first-password``): never to the output,
    which systemd keeps in its journal; the output says where to read it."""
    if cfg.password is not None:
        value = cfg.password.get_secret_value()
        return value if value.startswith(HASH_PREFIXES) else generate_password_hash(value)
    if not cfg.generate_password:
        return None
    path = Path(storage_dir) / GENERATED
    try:
        # its own reader's checks: a FIFO there hung the start, a damaged byte (an SD card's)
        # ended it in a traceback
        stored = read_small(path, 4096).strip()
        # a hash is ASCII: a damaged byte in its salt would pass for one, every login "Wrong
        # password" and nothing pointing at this file
        if not stored.isascii() or not usable_password(stored):
            raise UsageError(
                f"http.generate_password: {path} is damaged (a password hash cut short): "
                "delete it for a new password"
            )
        if stored.startswith(HASH_PREFIXES):
            return stored
    except FileNotFoundError:
        pass
    except ValueError as exc:
        raise UsageError(
            f"http.generate_password: {path} is damaged ({exc}): delete it for a new password"
        ) from None
    except OSError as exc:
        raise UsageError(
            f"http.generate_password: cannot read {path}: {exc.strerror or exc}"
        ) from exc
    password = secrets.token_urlsafe(12)
    hashed = generate_password_hash(password)
    shown = Path(storage_dir) / FIRST_PASSWORD
    try:
        replace_file(shown, (password + "\n").encode())  # mode 0600
        replace_file(path, (hashed + "\n").encode())
    except OSError as exc:
        raise UsageError(
            f"http.generate_password: cannot write {path}: {exc.strerror or exc}"
        ) from exc
    if announce:
        print(
            f"dashboard password generated: read it in {shown} (as the service's user or "
            f"root), then delete that file; delete {path} for a new password",
            file=sys.stderr,
            flush=True,
        )
    return hashed


@dataclass
class Session:
    csrf: str
    expires: float  # time.monotonic()


class Sessions:
    """Logged-in browsers: random token → session, bounded, expiring."""

    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self._by_token: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        # monotonic: sessions live in memory only, and a clock set (NTP at a Pi's boot) must
        # neither end them at once nor stretch them
        session = Session(secrets.token_urlsafe(32), time.monotonic() + self.lifetime_s)
        with self._lock:
            self._expire()
            while len(self._by_token) >= MAX_SESSIONS:  # the oldest goes
                self._by_token.pop(min(self._by_token, key=lambda t: self._by_token[t].expires))
            self._by_token[token] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._by_token.get(token)
            if session is None or session.expires < time.monotonic():
                self._by_token.pop(token, None)
                return None
            return session

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, s in self._by_token.items() if s.expires < now]:
            del self._by_token[token]


MAX_CLIENTS = 10_000  # addresses remembered by the limiter at once
PROXY_LIMIT_FACTOR = 10  # a trusted proxy's login attempts, all its clients together


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Proxies:
    """The reverse proxies (``http.trusted_proxies``) whose word on the client is taken:
    behind one, every request comes from the proxy, so its login limit would be everyone's
    (a stranger's wrong guesses keep the owner out) and its cookie never ``Secure``. From
    anyone else the headers are ignored: a client cannot name itself another client."""

    def __init__(self, entries: list[str]) -> None:
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in entries]

    def trusted(self, address: str | None) -> bool:
        ip = _ip(address or "")
        return ip is not None and any(ip in network for network in self.networks)

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The address the nearest untrusted hop connected from: X-Forwarded-For read from
        its right end (each proxy appends the address it saw; a client writes the left)."""
        if not forwarded_for or not self.trusted(peer):
            return peer
        hops = forwarded_for.split(",")
        for hop in reversed(hops):
            if not self.trusted(hop):
                return str(ip) if (ip := _ip(hop)) is not None else peer
        return str(ip) if (ip := _ip(hops[0])) is not None else peer

    def https(self, peer: str, forwarded_proto: str | None) -> bool:
        """The browser reached the nearest trusted proxy over HTTPS."""
        if not forwarded_proto or not self.trusted(peer):
            return False
        return forwarded_proto.split(",")[-1].strip().lower() == "https"


def client_key(address: str) -> str:
    """Who the limiter counts: the address, or for IPv6 its /64 (one home network has a whole
    /64, so counting single addresses would give each attempt its own allowance)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class LoginLimiter:
    """At most ``per_minute`` login attempts per client in any 60 s.

    An attempt is counted before its password is checked, so tries sent in parallel count
    too; a successful login forgets its client. The table is bounded: when it is full the
    client that tried least recently is forgotten, so a spray of addresses cannot grow memory,
    nor lock the owner out (it buys the sprayer no speed either: one password is checked at a
    time)."""

    def __init__(self, per_minute: int, max_clients: int = MAX_CLIENTS) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._attempts: OrderedDict[str, deque[float]] = OrderedDict()  # least recent first
        self._lock = threading.Lock()

    def attempt(self, address: str) -> bool:
        """Count one attempt; False when this client must wait."""
        key, now = client_key(address), time.monotonic()
        with self._lock:
            recent = self._attempts.get(key)
            if recent is None:
                while len(self._attempts) >= self.max_clients:
                    self._attempts.popitem(last=False)
                recent = self._attempts[key] = deque(maxlen=self.per_minute)
            self._attempts.move_to_end(key)
            while recent and now - recent[0] > 60:
                recent.popleft()
            if len(recent) >= self.per_minute:
                return False
            recent.append(now)
            return True

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._attempts.pop(client_key(address), None)


def same(a: str | None, b: str | None) -> bool:
    # as bytes: compare_digest refuses str with non-ASCII characters (a hostile header)
    return (
        bool(a)
        and bool(b)
        and hmac.compare_digest(str(a).encode("utf-8", "surrogatepass"), str(b).encode())
    )


def check_password(hashed: str, password: str) -> bool:
    try:
        return check_password_hash(hashed, password)
    except ValueError:
        return False
