"""Who may see the camera and press the buttons.

On loopback the page is open (CSRF tokens and a Host check still guard the buttons against
other web sites in the owner's browser). Beyond loopback a password is required: read from
``http.password_file`` (plain or already hashed) or generated on first start, printed once and
kept only as a hash in ``<storage.dir>/web/password``. Sessions live in memory (a restart logs
everyone out), expire, and carry their own CSRF token; failed logins are rate-limited per
client address.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from watchdog.config import HttpConfig
from watchdog.durable import replace_file
from watchdog.errors import UsageError

logger = logging.getLogger(__name__)

HASH_PREFIXES = ("scrypt:", "pbkdf2:")
GENERATED = Path("web") / "password"  # under storage.dir: the hash of a generated password
MAX_SESSIONS = 100


def password_hash(cfg: HttpConfig, storage_dir: Path, announce: bool = True) -> str | None:
    """The hash logins are checked against; None when no login is needed (loopback).

    A generated password is printed once, on the start that creates it, to stderr."""
    if cfg.password is not None:
        value = cfg.password.get_secret_value()
        return value if value.startswith(HASH_PREFIXES) else generate_password_hash(value)
    if not cfg.generate_password:
        return None
    path = Path(storage_dir) / GENERATED
    try:
        stored = path.read_text().strip()
        if stored.startswith(HASH_PREFIXES):
            return stored
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UsageError(
            f"http.generate_password: cannot read {path}: {exc.strerror or exc}"
        ) from exc
    password = secrets.token_urlsafe(12)
    hashed = generate_password_hash(password)
    try:
        replace_file(path, (hashed + "\n").encode())
    except OSError as exc:
        raise UsageError(
            f"http.generate_password: cannot write {path}: {exc.strerror or exc}"
        ) from exc
    if announce:
        # Once, on stderr, never through the logger: delete the file to get a new one.
        print(
            f"dashboard password (shown once; delete {path} for a new one): {password}",
            file=sys.stderr,
            flush=True,
        )
    return hashed


@dataclass
class Session:
    csrf: str
    expires: float


class Sessions:
    """Logged-in browsers: random token → session, bounded, expiring."""

    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self._by_token: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        session = Session(secrets.token_urlsafe(32), time.time() + self.lifetime_s)
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
            if session is None or session.expires < time.time():
                self._by_token.pop(token, None)
                return None
            return session

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)

    def _expire(self) -> None:
        now = time.time()
        for token in [t for t, s in self._by_token.items() if s.expires < now]:
            del self._by_token[token]


class LoginLimiter:
    """At most ``per_minute`` failed logins per client address in any 60 s."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, address: str) -> bool:
        with self._lock:
            recent = self._recent(address)
            return len(recent) >= self.per_minute

    def failed(self, address: str) -> None:
        with self._lock:
            self._recent(address).append(time.monotonic())
            if len(self._failures) > 10_000:  # bounded under a spray of addresses
                self._failures = {a: q for a, q in self._failures.items() if q}

    def _recent(self, address: str) -> deque[float]:
        q = self._failures.setdefault(address, deque(maxlen=self.per_minute))
        while q and time.monotonic() - q[0] > 60:
            q.popleft()
        return q


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
