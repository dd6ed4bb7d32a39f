"""Secrets out of every line a user or a log can see.

Three kinds of secret reach text: the values the config holds (API keys, passwords), a
``user:password@`` in a URL, and tokens in a URL's query (``?token=…``, ``&api_key=…``).
``redact`` masks all three in any text; ``redact_url`` shows a URL without them;
``SecretFilter`` does it to every log record, so a library's own log line (urllib3 logs the
URLs it requests at DEBUG) cannot carry them either. Mask first, cut afterwards: a message
cut before masking can keep the first half of a key.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

from watchdog.camera_sources import address_without_scheme

MASK = "***"
_KEEP_QUERY = {"action"}  # mjpg-streamer's ?action=stream|snapshot says what the URL is

# scheme://user:password@host → the password (up to the last @ before the path: a password
# may hold an @ of its own)
# (one slash too: a URL given where a path is expected is shown as a path, "rtsp:/user:pw@")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,31}:/{1,2}[^/\s:@'\"<>]*):[^/\s'\"<>]*@")
# scheme://token@host: a name alone before the @ is a token as often as a user (a camera's
# or a service's key in place of a user name), so it is masked whole
_USER_ONLY = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{0,31}:/{1,2})[^/\s:@'\"<>*]+@")
# A name that says secret, the one rule for a URL's query keys and the config's ${NAME}s: one
# of its parts (split at _ . -) ends in a secret word, plural or numbered ("api_key",
# "loginpas": the password key of some IP cameras, "OCTOPRINT_KEY2", "HA_TOKENS"), or it holds
# a word that says secret wherever it stands ("HA_AUTHORIZATION", "TOKENFILE", "APIKEYVALUE");
# "inside", "signal" or "keyboard" do not.
_SECRET_WORDS = (
    r"token|key|secret|password|passwd|passphrase|pass|pas|pwd|psw|pw|auth|sig|signature"
    r"|session|sid|code|cred|creds|credential"
)
_SECRET_NAME = re.compile(rf"(?i)[a-z0-9_.-]*?(?:{_SECRET_WORDS})s?[0-9]*(?:[_.-][a-z0-9_.-]*)?")
_SECRET_ANYWHERE = re.compile(
    r"(?i)token|secret|passw|pwd|auth|cred|api_?key|access_?key|private_?key|sessionid"
)
# ?key=, &key= or ;key=, then its value; whether the key says secret is decided apart (a
# pattern holding the rule itself took quadratic time on a long run of key-like text)
_QUERY_KEY = re.compile(r"(?i)[?&;]([a-z0-9_.-]+)=")  # linear: a key holds no ?, & or ;
_QUERY_VALUE = re.compile(r"[^&#\s'\"<>]+")
_MIN_SECRET = 4  # shorter "secrets" would mask ordinary words
# The config's own key names (``add_key_names``: the config's schema gives them). A secret
# found inside one of them is that key's name, not the secret: the password "pass" made
# "set http.password_file" unreadable in the very line that names the key to fix. Anywhere
# else (inside "%253Apass", "\tpass" or any other word) it is masked.
_KEY_NAMES: set[str] = set()
_WORD = re.compile(r"[A-Za-z0-9_]+")


def add_key_names(names: Iterable[str]) -> None:
    _KEY_NAMES.update(n.lower() for n in names)


def _mask_words(text: str, secret: str) -> str:
    """``secret`` (letters, digits, _) masked in every word of ``text`` but a key's name."""

    def masked(word: re.Match[str]) -> str:
        w = word.group()
        if secret not in w or (w != secret and w.lower() in _KEY_NAMES):
            return w
        return w.replace(secret, MASK)

    return _WORD.sub(masked, text)


def says_secret(name: str) -> bool:
    """Whether a query key or a variable's name says its value is a secret."""
    return _SECRET_NAME.fullmatch(name) is not None or _SECRET_ANYWHERE.search(name) is not None


def _mask_query_values(text: str) -> str:
    """The value after every query key that says secret, masked (up to the next & or #)."""
    out, done = [], 0
    for key in _QUERY_KEY.finditer(text):
        if key.start() < done or not says_secret(key[1]):
            continue  # inside a value masked already (``pwd=a;sid=b``), or not secret
        value = _QUERY_VALUE.match(text, key.end())
        if value:
            out += [text[done : key.end()], MASK]
            done = value.end()
    return "".join([*out, text[done:]])


def url_secrets(url: str) -> list[str]:
    """The password (or a name alone) and secret query values of one URL, to be masked
    wherever they appear (also where no pattern would find them: a password with a quote in
    it, a log line that cut the URL)."""
    try:
        parts = urlsplit(url.strip())
        password = parts.password
    except ValueError:
        return []
    out = [password] if password else []
    if password and parts.username is not None:
        # the forms sent, which a server may echo back: decoded, and HTTP Basic auth's
        # base64 of user:password (http_client._basic_auth)
        user, plain = unquote(parts.username), unquote(password)
        token = base64.b64encode(f"{user}:{plain}".encode()).decode("ascii")
        out += [plain, token, token.rstrip("=")]
    if parts.password is None and parts.username and _looks_like_token(parts.username):
        out.append(parts.username)  # a name alone: masked in URLs always (``_USER_ONLY``)
    if parts.netloc:  # a URL's path; a recording's path is the owner's folders
        out += _path_secrets(parts.path)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if value and says_secret(key):
            out.append(value)
        elif "://" in value:  # a camera proxied by another: ?src=rtsp%3A%2F%2Fuser%3Apw%40cam
            nested = url_secrets(value)
            out += nested + [quote(n, safe="") for n in nested]
    return out


def _looks_like_token(name: str) -> bool:
    """A name alone before a URL's @ that is a token, to be masked wherever it lands (a
    camera's refusal echoing it): long, letters and digits mixed. A user name ("admin",
    "camera", "octoprint") is masked inside URLs only: masked everywhere, it cut ordinary
    words ("***istrator", "*** offline")."""
    return len(name) >= 12 and any(c.isdigit() for c in name) and any(c.isalpha() for c in name)


def _path_token(segment: str) -> bool:
    """A URL's path segment that is a token, not a name: random letters of both cases (a
    UniFi camera's ``rtsps://nvr:7441/<token>``, Home Assistant's
    ``/api/hassio_ingress/<token>/``), or 24 characters or more of letters and digits (a hex
    key, an RTMP stream key). A name is not: ``snapshot.jpg``, ``SnapshotJpegStream`` (a word's
    capitals), a go2rtc stream named ``prusamk4garage01`` (masked, it hid the printer's name
    in every line)."""
    plain = segment.replace("-", "").replace("_", "")
    if len(segment) < 16 or not plain.isascii() or not plain.isalnum():
        return False
    letters = [c for c in plain if c.isalpha()]
    upper = sum(c.isupper() for c in letters) / max(1, len(letters))
    mixed_case = len(segment) == len(plain) and 0.2 <= upper <= 0.8
    long_key = len(segment) >= 24 and any(c.isdigit() for c in plain) and bool(letters)
    return mixed_case or long_key


def _masked_path(path: str) -> str:
    """A URL's path with its token segments and its ``;name=value`` values masked."""
    out = []
    for segment in path.split("/"):
        name, semi, params = segment.partition(";")
        if _path_token(unquote(name)):
            name = MASK
        if semi:
            params = ";".join(
                f"{p.partition('=')[0]}={MASK}" if "=" in p else p for p in params.split(";")
            )
        out.append(name + semi + params)
    return "/".join(out)


def _path_secrets(path: str) -> list[str]:
    """A URL path's tokens and the ``;name=value`` values whose name says secret, to be masked
    wherever they appear (the others only where the URL is shown: ``;resolution=1280x720``
    masked everywhere hid every "1280x720")."""
    out = []
    for segment in path.split("/"):
        name, _, params = segment.partition(";")
        if _path_token(unquote(name)):
            out += list(dict.fromkeys([name, unquote(name)]))
        for key, eq, value in (p.partition("=") for p in params.split(";")):
            if eq and value and says_secret(key):
                out.append(value)
    return out


def redact_source(source: object) -> str:
    """A camera source as a line shows it: a URL without its secrets (``redact_url``), an
    address missing its scheme likewise, a path cut at a ``?`` (its query may hold the
    camera's password: ``192.168.1.5/snapshot.cgi?u=admin&p=...`` read as a file)."""
    if not isinstance(source, str):
        return str(source)
    if "://" in source:
        return redact_url(source)
    if address_without_scheme(source):
        return redact_url("http://" + source).removeprefix("http://")
    path, query, _ = source.partition("?")
    return path + (f"?{MASK}" if query else "")


def address_of(url: str) -> str:
    """Where a URL points, for the owner to read: its scheme, host, port and path, without
    its user name, password or query (a printer's API in an alert)."""
    shown = redact_url(url)
    scheme, sep, rest = shown.partition("://")
    if not sep:
        return shown
    netloc, slash, path = rest.partition("?")[0].partition("/")
    return f"{scheme}://{netloc.rpartition('@')[2]}{slash}{path}"


def redact_url(url: str) -> str:
    """The URL without password or query values (tokens), for logs and errors."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparsable url>"
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    if port:
        netloc = f"{netloc}:{port}"
    if parts.password is not None:
        netloc = f"{parts.username}:{MASK}@{netloc}"
    elif parts.username:  # a name alone may be a token
        netloc = f"{MASK}@{netloc}"
    query = "&".join(
        f"{k}={v if k in _KEEP_QUERY else MASK}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, netloc, _masked_path(parts.path), query, ""))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the given secret values, URL passwords and URL tokens masked."""
    for secret in sorted(
        {s for s in secrets if s and len(s) >= _MIN_SECRET}, key=len, reverse=True
    ):
        if secret not in text:
            continue
        if _WORD.fullmatch(secret):
            text = _mask_words(text, secret)
        else:  # a secret of other characters too is part of no key's name
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(rf"\1:{MASK}@", text)
    text = _USER_ONLY.sub(rf"\1{MASK}@", text)
    return _mask_query_values(text)


class SecretFilter(logging.Filter):
    """Masks secrets in every record that passes a handler (message, arguments and traceback).

    Known secret values are added as the config is read (``add``); URL passwords and tokens
    are masked whatever their source.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            self._secrets.update(s for s in secrets if s)

    def known(self) -> tuple[str, ...]:
        """Every secret value added so far (the config's, and ``${ENV}`` values named secret)."""
        with self._lock:
            return tuple(self._secrets)

    def mask(self, text: str) -> str:
        """``redact`` with every secret known so far."""
        with self._lock:
            secrets = tuple(self._secrets)
        return redact(text, secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            secrets = tuple(self._secrets)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a format string its arguments do not fit
            # logging would print the arguments as they are on stderr: the format alone, masked
            message = f"{record.msg} (a log line whose arguments did not fit it)"
        record.msg, record.args = one_line(redact(message, secrets)), None
        if record.exc_info and record.exc_info[0] is not None:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, redact(formatted, secrets)
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
        return True


def one_line(text: str) -> str:
    """Control characters written out (``\\n``, ``\\x1b``): a value from outside (an MQTT
    topic, a printer's message) cannot forge a log line of its own or colour the terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1, line separators
secret_filter = SecretFilter()


def install(handlers: Iterable[logging.Handler] | None = None) -> None:
    """Put ``secret_filter`` on the root logger's handlers (or the given ones), and keep
    urllib3's per-request lines (URL with its query) out of the log even with --debug."""
    for handler in handlers if handlers is not None else logging.getLogger().handlers:
        if secret_filter not in handler.filters:
            handler.addFilter(secret_filter)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger(__name__).debug(
        "secrets are masked in this log; urllib3's request lines are left out"
    )
