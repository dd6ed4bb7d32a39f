"""The one validated configuration schema.

YAML in, a frozen tree of models (``watchdog.schema``) out. Unknown keys are rejected with their path,
``${ENV}`` references and ``*_file`` secrets are resolved here, and secrets stay
``SecretStr`` so that they print as ``**********`` everywhere (logs, check-config, status).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import ssl
import stat
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import SplitResult, unquote, urlsplit

import yaml

from watchdog.camera_sources import SourceKind, address_without_scheme, source_kind
from watchdog.comms.notify_send import service
from watchdog.frames import FAILURES, FALSE_ALARMS
from watchdog.ha_names import entity_slug
from watchdog.redact import (
    add_key_names,
    redact,
    redact_url,
    says_secret,
    secret_filter,
    url_secrets,
)
from watchdog.schema import (
    Field,
    Model,
    SchemaError,
    SecretStr,
    field_validator,
    model_validator,
)
from watchdog.storage_lock import user_name

logger = logging.getLogger(__name__)
# warnings about the config already said: every settings save on the page loads it again (a
# batch of saves repeated the same line dozens of times)
_said: set[str] = set()


def _warn_once(message: str) -> None:
    """Log ``message`` at warning level, once per process for each text."""
    if message not in _said:
        _said.add(message)
        logger.warning("%s", message)


MAX_CONFIG_BYTES = 1_000_000  # a config is a few KB; more is a mistake or an attack
MAX_CONFIG_NODES = (
    100_000  # YAML values after aliases are expanded (an alias bomb expands to billions)
)

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """A configuration that cannot be used; the message is one line naming the key path."""


class _Model(Model):
    """A config section: frozen, unknown keys refused (``watchdog.schema``)."""


def _default_state_dir() -> Path:
    # systemd's StateDirectory= sets $STATE_DIRECTORY; elsewhere follow the XDG convention.
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "printer-watchdog"


class TlsConfig(_Model):
    """TLS towards the MQTT broker; the certificate is verified unless ``insecure``."""

    ca_file: Path | None = Field(
        None,
        description="CA certificate (PEM) that signed the broker's certificate (a relative "
        "path is read from the config's folder, as cert_file and key_file are)",
    )
    cert_file: Path | None = Field(
        None, description="client certificate (PEM), for brokers that require one"
    )
    key_file: Path | None = Field(None, description="client private key (PEM)")
    insecure: bool = Field(
        False, description="skip certificate verification (self-signed test setups only)"
    )

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _plain_file(cls, v: Path | None) -> Path | None:
        """A FIFO or a device here hung the start without a word (reading it blocks until
        something writes); a missing file is said where the session would load it."""
        if v is not None and _not_a_file(v):
            raise ValueError(f"{v}: not a regular file (a PEM file)")
        return v


def _not_a_file(path: Path) -> bool:
    """``path`` is there and is neither a plain file nor a folder (a FIFO, a device)."""
    try:
        st = path.stat()
    except OSError:
        return False  # missing or unreadable: said by whoever opens it
    return not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode))


PRINTER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a topic level and a URL path segment


def plain_topic(v: str) -> str:
    """A topic prefix: levels without wildcards (a wildcard in a topic the daemon subscribes
    to or publishes on is refused by the MQTT client at connect)."""
    if not v or any(c in v for c in "#+\0") or v.startswith("/") or v.endswith("/"):
        raise ValueError(
            "must be a plain topic level path without wildcards or leading/trailing '/'"
        )
    return v


class HomeAssistantConfig(_Model):
    """Home Assistant MQTT discovery."""

    enabled: bool = Field(
        True, description="publish discovery configs so entities appear by themselves"
    )
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix")

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return plain_topic(v)


class MqttConfig(_Model):
    """MQTT broker for alerts, state, scores and heatmaps. An empty host disables MQTT."""

    host: str = Field("", description="broker host name or address; empty disables MQTT")
    port: int = Field(1883, ge=1, le=65535, description="broker port (8883 is usual with TLS)")
    username: str | None = Field(None, description="user name, if the broker needs one")
    password: SecretStr | None = Field(
        None, description="password (prefer password_file or ${ENV})"
    )
    password_file: Path | None = Field(None, description="file holding the password (mode 0600)")
    tls: TlsConfig | None = Field(
        None, description="enable TLS (an empty mapping uses the system CAs)"
    )
    topic_prefix: str = Field("printer_watchdog", description="first level of every topic")
    client_id: str | None = Field(
        None,
        description="MQTT client id; default printer-watchdog-<hostname>-<first 6 characters "
        "of /etc/machine-id>",
    )
    keepalive_s: int = Field(60, ge=5, le=3600, description="MQTT keepalive")
    alert_max_age_h: float = Field(
        24.0,
        gt=0,
        le=24 * 30,
        description="an alert the broker has not taken is dropped after this many hours (an "
        "automation would act on a print long over)",
    )
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)

    @field_validator("topic_prefix")
    @classmethod
    def _topic(cls, v: str) -> str:
        return plain_topic(v)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        # a URL (mqtt://broker:1883) or user:password@broker was tried as a host name for
        # ever, and a password in it shown in every "cannot connect" line
        if any(c in v for c in "/@") or v.count(":") == 1:
            raise ValueError(
                "must be a host name or address only (the port goes in mqtt.port, the user "
                "in mqtt.username)"
            )
        return v

    @property
    def enabled(self) -> bool:
        return bool(self.host)


def is_loopback(listen: str) -> bool:
    """True when ``host:port`` listens on this machine only (127.0.0.0/8, ::1, localhost)."""
    return is_loopback_host(listen.rpartition(":")[0])


# a DNS name as a browser sends it in Host: dot-separated labels of letters, digits and inner
# hyphens (no underscore: the HTTP server takes a Host with one for none at all)
HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


def host_name_form(name: str) -> str | None:
    """``name`` as a browser sends it in ``Host``: lower case, no trailing dot, a name in
    another script in its ASCII form (``drücker.lan`` → ``xn--drcker-4ya.lan``); None where
    no browser could send it."""
    name = name.strip().lower().rstrip(".")
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return name if len(name) <= 253 and HOST_NAME.fullmatch(name) else None


def is_loopback_host(host: str) -> bool:
    """A host (``[::1]`` bracketed or not) that is this machine: a loopback address or
    localhost; never another name, which may resolve to anything."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


class HttpConfig(_Model):
    """The dashboard, health, status, metrics and the latest heatmap over HTTP.

    On loopback (the default) the page is open to whoever can reach this machine's own
    127.0.0.1; on any other address it needs a password, and the daemon refuses to start
    without one."""

    listen: str = Field(
        "127.0.0.1:8787", description='"host:port" to listen on; "" disables the server'
    )
    password: SecretStr | None = Field(
        None, description="dashboard password (prefer password_file); required beyond loopback"
    )
    password_file: Path | None = Field(
        None,
        description="file holding the dashboard password, or its hash (scrypt:/pbkdf2:, from werkzeug); mode 0600",
    )
    generate_password: bool = Field(
        False,
        description="no password file: generate one on first start, write it to storage.dir/web/first-password (mode 0600) for you to read and delete, keep its hash",
    )
    session_hours: float = Field(12.0, gt=0, le=24 * 30, description="a login lasts this long")
    scrape_token: SecretStr | None = Field(
        None,
        description="token for GET /status, /metrics and latest.jpg without a login (prefer scrape_token_file)",
    )
    scrape_token_file: Path | None = Field(
        None,
        description="file holding a token (16 characters or more, mode 0600) that opens GET /status, /metrics and /printers/<name>/latest.jpg, sent as 'Authorization: Bearer <token>' (Prometheus, Home Assistant's REST sensor) where a password guards the dashboard",
    )
    login_attempts_per_minute: int = Field(
        5,
        ge=1,
        le=100,
        description="login attempts allowed per client per minute (an IPv6 client: its /64); a successful login starts the count again; the clients of one trusted proxy get ten times this together",
    )
    max_connections: int = Field(
        32,
        ge=2,
        le=1000,
        description="connections served at once; more wait for one to close. One client (an IPv6 client: its /64; a trusted proxy aside) holds a quarter of them at most, 8 at least: more from it are closed at once",
    )
    request_timeout_s: float = Field(
        10.0, gt=0, le=300, description="a client must send its request within this time"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        max_length=32,
        description='reverse proxies in front of the dashboard, by address ("127.0.0.1") or a network only proxies are in: from them the client is read from X-Forwarded-For (its own login limit) and HTTPS from X-Forwarded-Proto (the login cookie then Secure); needs a password',
    )

    host_names: list[str] = Field(
        default_factory=list,
        max_length=32,
        description="where a password guards the dashboard: the names you reach it by beside its IP addresses, localhost, this machine's name, <name>.local and the phone buttons' actions_url host (a name of your own DNS, a reverse proxy's not in trusted_proxies, an mDNS name renamed as octopi-2.local); a page asked for under any other name is refused, so that a web site rebinding its name to this machine cannot spend your login attempts",
    )

    @model_validator(mode="after")
    def _auth_beyond_loopback(self) -> HttpConfig:
        if (
            self.listen
            and not is_loopback(self.listen)
            and not (self.password or self.generate_password)
        ):
            raise ValueError(
                f"http.listen {self.listen!r} is not a loopback address: the dashboard shows your camera and can "
                "stop prints, so set http.password_file (or http.generate_password: true), or listen on 127.0.0.1"
            )
        if self.scrape_token is not None and len(self.scrape_token.get_secret_value()) < 16:
            raise ValueError(
                "http.scrape_token (or the file scrape_token_file names) is shorter than 16 "
                "characters: anyone on the network could guess it (make one with: openssl rand "
                "-hex 16)"
            )
        if self.password is not None and not usable_password(self.password.get_secret_value()):
            raise ValueError(
                "http.password (or the file password_file names) starts like a password hash "
                "(scrypt:, pbkdf2:) but is not a whole one (method$salt$hash): a '$' read by a "
                "shell or an environment file cuts it; quote it, or give the password itself "
                "(the value is not shown: it is a secret)"
            )
        if self.host_names and not (self.password or self.generate_password):
            raise ValueError(
                "http.host_names names the dashboard's host names, but without a password it "
                "answers to a loopback address or localhost only (a web site could rebind any "
                "other name to it): set http.password_file (or http.generate_password: true)"
            )
        if self.trusted_proxies and not (self.password or self.generate_password):
            # through a proxy on this machine every request is this machine's, which needs
            # no login: the dashboard would be open to whoever reaches the proxy
            raise ValueError(
                "http.trusted_proxies names a proxy in front of the dashboard: set "
                "http.password_file (or http.generate_password: true), or whoever reaches the "
                "proxy reaches the dashboard without a login"
            )
        return self

    @field_validator("host_names")
    @classmethod
    def _host_names(cls, v: list[str]) -> list[str]:
        names = []
        for item in v:
            name = host_name_form(item)
            if name is None:
                raise ValueError(
                    f"{item!r} is not a host name (letters, digits, hyphens and dots; a browser "
                    "sends no other): give the name alone, as typed in the browser's address "
                    'bar without "http://" or a port (e.g. "printer.lan")'
                )
            names.append(name)
        return names

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f'{item!r} is not an IP address or network (e.g. "127.0.0.1", "172.18.0.0/16")'
                ) from None
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if v == "":
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError('must be "host:port", e.g. "127.0.0.1:8787", or "" to disable')
        return v


# werkzeug's password hashes: "scrypt:N:r:p$salt$hex" or "pbkdf2:sha256:iterations$salt$hex"
PASSWORD_HASH_PREFIXES = ("scrypt:", "pbkdf2:")
_WHOLE_HASH = re.compile(
    r"(?:scrypt:\d+:\d+:\d+|pbkdf2:[A-Za-z0-9_-]+(?::\d+)?)\$[^$]+\$[0-9a-f]{32,}"
)


def usable_password(value: str) -> bool:
    """Whether a dashboard password (or its hash, from werkzeug) can ever let anyone in: a
    value that begins as a hash is taken as one, and a cut one (its '$' parts lost to a
    shell) refused every login as "Wrong password"."""
    return not value.startswith(PASSWORD_HASH_PREFIXES) or bool(_WHOLE_HASH.fullmatch(value))


class StorageConfig(_Model):
    """The daemon's state folder: incidents (frame, heatmap, alert JSON), collected frames,
    queued alerts (outbox/), the page's saved settings (overrides.json), the Watching switches
    (switched-off.json), the printers last published to MQTT (mqtt-printers.json), their
    last heatmaps (mqtt-heatmaps/) and command answers (mqtt-answers.json, last-commands.json),
    the phone buttons' token hashes (action_tokens.json), a
    generated dashboard password (web/) and the one-daemon lock (daemon.lock)."""

    dir: Path = Field(
        default_factory=_default_state_dir,
        description="state folder ($STATE_DIRECTORY under systemd; a relative path is read "
        "from the config's folder)",
    )
    keep_incidents: int = Field(
        100, ge=1, description="newest incidents kept; older ones are deleted"
    )


def _existing_ca(path: Path | None) -> Path | None:
    """A CA file (or hashed folder) that is there and readable, a file holding a certificate
    in PEM: else every request failed as a TLS or connection error, far from the key."""
    if path is None:
        return None
    try:
        if path.is_dir():
            os.listdir(path)
            return path
        there = path.is_file()
    except OSError as exc:  # a folder on the way that this user cannot enter
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not there:
        what = "not a regular file" if _not_a_file(path) else "no such file or folder"
        raise ValueError(f"{path}: {what} (a CA certificate in PEM)")
    try:
        ssl.create_default_context(cafile=str(path))
    except ssl.SSLError:
        raise ValueError(
            f"{path}: holds no certificate in PEM (a DER certificate converts with "
            "'openssl x509 -inform der -in FILE -out FILE.pem')"
        ) from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return path


class CameraConfig(_Model):
    """Where frames come from."""

    source: int | str = Field(
        0,
        description="V4L2 index or /dev/videoN, http(s) snapshot URL, MJPEG/RTSP stream URL, video file or folder of frames (a relative path is read from the config's folder)",
    )
    interval_s: float = Field(
        10.0, ge=0.0, description="seconds between scored frames (0: a recording read at once)"
    )
    timeout_s: float = Field(10.0, gt=0, description="network timeout for one frame")
    max_bytes: int = Field(
        10_000_000, ge=10_000, description="largest snapshot accepted before decoding"
    )
    max_pixels: int = Field(
        16_000_000, ge=10_000, description="largest frame (width x height) accepted"
    )
    ca_file: Path | None = Field(
        None,
        description="CA certificate (PEM file, or a folder of them prepared with openssl rehash) "
        "for an https camera with a self-signed certificate; a relative path is read from the "
        "config's folder",
    )
    frozen_after_s: float = Field(
        60.0,
        ge=0.0,
        description="a camera serving the very same picture this long is offline (a frozen "
        "camera, a streamer's stand-in picture when its USB camera is gone, a pitch-dark room); "
        "0: never",
    )

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, v: Path | None) -> Path | None:
        return _existing_ca(v)

    @property
    def live(self) -> bool:
        """A camera read as it films (a device, a URL), not a recording (a folder, a video)."""
        return source_kind(self.source).live

    @model_validator(mode="after")
    def _live_interval(self) -> CameraConfig:
        if self.live and self.interval_s == 0:
            raise ValueError(
                "interval_s 0 reads a recording (a folder of frames, a video) as fast as it "
                "can be; a live camera would be read, and the printer's API asked, without a "
                "pause, thousands of times a second: give the seconds between frames (10 by "
                "default)"
            )
        return self

    @field_validator("source")
    @classmethod
    def _source(cls, v: int | str) -> int | str:
        if isinstance(v, str) and not v.strip():
            raise ValueError("must not be empty")
        if isinstance(v, int) and v < 0:
            raise ValueError("a device index must be >= 0")
        if isinstance(v, str) and "://" in v:
            _check_address(v)
        elif isinstance(v, str) and _SCHEME_TYPO.match(v):
            # http:/user:pass@host: a file name to everything else, its password shown in
            # every message naming the source (the value is not repeated here)
            raise ValueError("an address needs '//' after its scheme (http://, rtsp://)")
        elif isinstance(v, str) and (
            _SCHEME_NO_COLON.match(v) or _USERINFO_AFTER_SLASHES.search(v)
        ):
            # rtsp//user:pass@host: the same, its ':' missing
            raise ValueError("an address needs ':' after its scheme (http://, rtsp://)")
        elif isinstance(v, str) and _USERINFO_NO_SCHEME.match(v):
            # user:pass@host/snap.jpg: a file name to everything else, its password shown in
            # every message naming the source
            raise ValueError(
                "an address with a user name and password needs its scheme "
                "(http://user:password@host/..., rtsp://...)"
            )
        return v


class ApiConfig(_Model):
    """The printer's API, used to know when it prints and to pause it."""

    kind: Literal["octoprint", "moonraker", "none"] = Field(
        "none", description="printer API; none: watch all the time, notify only"
    )
    url: str = Field("", description="base URL, e.g. http://octopi.local or http://127.0.0.1:7125")
    api_key: SecretStr | None = Field(None, description="API key (prefer api_key_file or ${ENV})")
    api_key_file: Path | None = Field(None, description="file holding the API key (mode 0600)")
    timeout_s: float = Field(10.0, gt=0, description="timeout of one API request")
    retries: int = Field(
        3, ge=0, le=10, description="retries of a failed pause/cancel, with backoff"
    )
    confirm_s: float = Field(
        90.0,
        ge=5,
        le=3600,
        description="how long the printer may take to show a pause or cancel its API took; "
        "still printing then, the alert is corrected: it did not happen",
    )
    ca_file: Path | None = Field(
        None,
        description="CA certificate for a self-signed https URL (relative: from the config's folder)",
    )
    insecure: bool = Field(False, description="skip TLS verification of the API (not recommended)")

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, v: Path | None) -> Path | None:
        return _existing_ca(v)

    @field_validator("api_key")
    @classmethod
    def _api_key(cls, v: SecretStr | None) -> SecretStr | None:
        """Spaces and a line end around the key are dropped (a YAML block keeps its last line
        break); a control character inside it is refused: no HTTP header can carry it."""
        if v is None:
            return None
        key = v.get_secret_value().strip()
        if any(ord(c) < 32 or ord(c) == 127 for c in key):
            raise ValueError(
                "holds a line break or another control character, which an HTTP request "
                "cannot carry (the value is not shown: it is a secret)"
            )
        return SecretStr(key)

    @model_validator(mode="after")
    def _url_needed(self) -> ApiConfig:
        if self.kind != "none":
            if not self.url:
                raise ValueError(f"url is required when kind is {self.kind}")
            if not re.match(r"^https?://[^/\s]+", self.url):
                # quoted only with a scheme: without one nothing can tell a password in it
                # apart (octopi:secret@host reads as a path to every URL parser)
                shown = f" {redact_url(self.url)!r}" if "://" in self.url else ""
                raise ValueError(
                    f"url{shown} must start with http:// or https:// (http://octopi.local, "
                    "http://192.168.1.20:7125)"
                )
            _check_address(self.url)
        return self


_SCHEME_TYPO = re.compile(r"(?i)^(?:https?|rtsps?|rtmps?|rtp|udp|tcp):(?!//)")
_USERINFO_NO_SCHEME = re.compile(r"^[^/@]*:[^/]*@")  # name:password@ before any '/'
_SCHEME_NO_COLON = re.compile(r"(?i)^(?:https?|rtsps?|rtmps?|rtp|udp|tcp)//")
_USERINFO_AFTER_SLASHES = re.compile(r"//[^/@\s]*:[^/\s]*@")  # //name:password@ in no URL


def _check_address(url: str) -> None:
    """A URL whose port or host cannot be parsed is refused here, not at the first request.
    The key names it; the URL itself is not repeated (unparsable, its secrets cannot be masked)."""
    hint = (
        "a user name or password holding '/', '?', '#', '@', '[', ']' or '%' must be "
        "percent-encoded (%2F, %3F, %23, %40, %5B, %5D, %25)"
    )
    try:
        parts = urlsplit(url)
        _ = parts.port  # reading the port parses it
    except ValueError:  # its text may quote a piece of the password
        port = _port_text(url)
        if port.isdigit():  # parsed, but out of range: no password is to blame
            why = f"its port {int(port)} is beyond 65535"
            raise ValueError(f"not a valid address: {why}") from None
        why = hint if "@" in url else "check the port after its host (a number up to 65535)"
        raise ValueError(f"not a valid address: its host or port cannot be read; {why}") from None
    if "@" not in parts.netloc and _cut_at_userinfo(parts):
        raise ValueError(f"not a valid address: an '@' after its host; {hint}")
    try:  # "ab%cd9": '%cd' reads as an encoded byte, and the camera got a password it never had
        unquote(parts.netloc.rpartition("@")[0], errors="strict")
    except UnicodeDecodeError:
        raise ValueError(
            "not a valid address: its user name or password holds a '%' and two letters or "
            "digits, read as an encoded character that is none; a '%' itself is written %25"
        ) from None


def _port_text(url: str) -> str:
    """What stands after the host's last ':' ("" where none can be told: a host without a
    port, an IPv6 address alone)."""
    try:
        host = urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:  # a '[' or ']' in its password reads as a broken IPv6 address
        return ""
    return "" if host.endswith("]") or ":" not in host else host.rpartition(":")[2]


def _cut_at_userinfo(parts: SplitResult) -> bool:
    """A URL whose password held an unencoded '/', '?' or '#': the parser ends the host there,
    so the real host turns up after an '@' in the first path segment or the query, before any
    '=', or in the fragment. An '@' in a value (``?user=a&pwd=x@y``, or a DVR's
    ``/user=admin&password=x@y``) is fine."""
    first_segment = parts.path.lstrip("/").partition("/")[0]
    return any("@" in text.partition("=")[0] for text in (first_segment, parts.query)) or (
        "@" in parts.fragment
    )


# a mask is drawn by hand; its size is bounded so a saved one cannot make every poll of the
# dashboard (which reads and shows it) or every reload slow
MASK_POLYGONS = 32
MASK_POINTS = 100
Point = tuple[Annotated[float, Field(ge=0.0, le=1.0)], Annotated[float, Field(ge=0.0, le=1.0)]]


class DetectionConfig(_Model):
    """When a run of anomalous frames becomes an action."""

    consecutive: int = Field(
        3, ge=1, le=100, description="anomalous frames in a row that trigger the action"
    )
    warmup_frames: int = Field(
        0,
        ge=0,
        le=10_000,
        description="frames at the start of a print that never trigger, for models without a per-print baseline "
        "(models with one learn the print's first frames themselves, judging only what "
        "changes after the first of them)",
    )
    cooldown_s: float = Field(
        90.0, ge=0.0, description="after a resume, seconds before the watchdog re-arms"
    )
    sensitivity: float = Field(
        1.0,
        ge=0.1,
        le=10.0,
        description="threshold divisor: 1.2 is more sensitive, 0.8 less (0.1 to 10: below, no "
        "frame would ever pass the threshold)",
    )
    judge_start: bool = Field(
        True,
        description="judge the rest of each print's start against its first frames, when the "
        "model has that judgement (the shipped one: frames 11-30 against the first 10); false: "
        "learn the whole start without judging it",
    )
    mask: list[Annotated[list[Point], Field(min_length=3, max_length=MASK_POINTS)]] = Field(
        default_factory=list,
        max_length=MASK_POLYGONS,
        description="polygons to ignore, in 0..1 image coordinates [[x, y], ...]",
    )
    region: tuple[float, float, float, float] | None = Field(
        None,
        description="the part of the picture the model watches, [x0, y0, x1, y1] in 0..1 of the frame; "
        "default: the model's own (where the bed was in its training frames). Another leaves a "
        "print's start without the model's start guard (check-config and the log say so): "
        "retrain with --region to keep it",
    )

    @field_validator("region")
    @classmethod
    def _region(
        cls, v: tuple[float, float, float, float] | None
    ) -> tuple[float, float, float, float] | None:
        if v is None:
            return v
        x0, y0, x1, y1 = v
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise ValueError(
                "must be [x0, y0, x1, y1] with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1"
            )
        if (x1 - x0) * (y1 - y0) < 0.01:
            raise ValueError("is smaller than 1% of the picture: the model would see a few pixels")
        return v


class PrinterConfig(_Model):
    """One printer: its camera, its API and how to act."""

    name: str = Field(
        ...,
        description="short name used in topics and URLs ([A-Za-z0-9_-]; not failures or "
        "false_alarms, the folders kept beside its recordings; with Home Assistant discovery, "
        "not one that differs from another only in case or in - and _)",
    )
    camera: CameraConfig = Field(default_factory=CameraConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    action: Literal["pause", "cancel", "notify"] = Field(
        "pause", description="what to do on a failure"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not PRINTER_NAME.fullmatch(v):
            raise ValueError("must be 1-64 characters of letters, digits, '_' or '-'")
        if v in (FAILURES, FALSE_ALARMS):
            # collected/<printer>/ holds folders of these names: the printer's recordings
            # would be read as confirmed failures or kept false alarms
            raise ValueError(
                f"'{v}' is the name of a folder the watchdog keeps beside each printer's "
                "recordings: choose another name"
            )
        return v


class NotifyEvent(StrEnum):
    """What a notification target can be told about."""

    FAILURE = "failure"  # the alert: printer, score, action and its result, heatmap attached
    # the pause or cancel did not happen; a phone button said under way failed in the end
    ACTION_FAILED = "action_failed"
    CAMERA_OFFLINE = "camera_offline"  # once when it goes, once more when it is back
    PRINT_DONE = "print_done"


_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,30}://\S")


def _has_host(url: str) -> bool:
    """Whether ``url`` names a host (and a port, if any) the page and the phone can use:
    ``http://[pi.lan]:8787`` passed a pattern, then stopped the daemon at its start."""
    try:
        parts = urlsplit(url)
        return bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:
        return False


class NotifyTarget(_Model):
    """One phone notification service as an Apprise URL (ntfy://, tgram://, pover://,
    discord://, gotify://, mailto://, json:// ...); the URL is a secret, masked everywhere."""

    name: str | None = Field(
        None,
        description="name in logs, /status and metrics; default: the URL's scheme (ntfy, ntfy-2, ...)",
    )
    url: SecretStr | None = Field(
        None, description="Apprise URL (prefer url_file or ${ENV}: it usually holds a token)"
    )
    url_file: Path | None = Field(None, description="file holding the Apprise URL (mode 0600)")
    events: list[NotifyEvent] = Field(
        # camera_offline by default: a camera that dies during a print leaves it unwatched
        default_factory=lambda: [
            NotifyEvent.FAILURE,
            NotifyEvent.ACTION_FAILED,
            NotifyEvent.CAMERA_OFFLINE,
        ],
        description="any of failure, action_failed, camera_offline, print_done (default: "
        "failure, action_failed, camera_offline)",
    )
    printers: list[str] | None = Field(
        None, description="printer names to notify about; default: all"
    )
    attach: Literal["heatmap", "frame", "none"] = Field(
        "heatmap", description="picture sent with a failure"
    )
    actions_url: str = Field(
        "",
        description="base URL at which the phone reaches this daemon (e.g. http://pi.lan:8787) for "
        "Not a failure, Resume (where the pause took) and Cancel (while a printer API could stop "
        "the print): buttons on ntfy, links that open a page asking first elsewhere (email, "
        "Telegram, ...); empty: none",
    )
    actions_expire_h: float = Field(
        24.0, gt=0, le=24 * 30, description="hours a notification's buttons (or links) keep working"
    )
    coalesce_s: float = Field(
        120.0,
        ge=0,
        le=86400,
        description="a printer's repeated events within this many seconds become one notification",
    )
    camera_offline_after_s: float = Field(
        60.0,
        ge=0,
        le=86400,
        description="a camera must stay offline this long before camera_offline is sent",
    )
    max_age_h: float = Field(
        24.0,
        gt=0,
        le=24 * 30,
        description="an undeliverable notification is dropped after this many hours",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not _URL_SCHEME.match(v.get_secret_value().strip()):
            raise ValueError(
                "must be an Apprise URL such as ntfy://host/topic (the value is not shown: it may hold a secret)"
            )
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", v):
            raise ValueError("must be 1-40 characters of letters, digits, '_' or '-'")
        return v

    @field_validator("actions_url")
    @classmethod
    def _actions_url(cls, v: str) -> str:
        if v and not (re.match(r"^https?://[^/\s]+", v) and _has_host(v)):
            # not quoted: an Apprise URL pasted here by mistake carries its token in its host
            raise ValueError(
                "must be this watchdog's own address as a phone reaches it, starting with "
                "http:// or https:// (http://printerpi.lan:8787; the value is not shown: it may "
                "hold a secret)"
            )
        return v.rstrip("/")

    @model_validator(mode="after")
    def _has_url(self) -> NotifyTarget:
        if self.url is None:
            raise ValueError("url or url_file is required")
        return self

    @property
    def scheme(self) -> str:
        """The kind of service it sends to (``ntfys`` for ``https://ntfy.sh/...``)."""
        assert self.url is not None
        return service(self.url.get_secret_value())

    def tells_of(self, printer: str) -> bool:
        """This target is sent ``printer``'s news (``printers`` unset: every printer's)."""
        return self.printers is None or printer in self.printers


class Config(_Model):
    """The whole configuration file."""

    model: Path | None = Field(
        None,
        description="model bundle folder (a relative path is read from the config's folder); "
        "default: the bundled default model",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="logging level"
    )
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    printers: list[PrinterConfig] = Field(..., min_length=1, description="the printers to watch")
    notify: list[NotifyTarget] = Field(
        default_factory=list, description="phone notifications through Apprise URLs"
    )

    @field_validator("printers")
    @classmethod
    def _unique(cls, v: list[PrinterConfig]) -> list[PrinterConfig]:
        names = [p.name for p in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"printer names must be unique, repeated: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _apart_in_home_assistant(self) -> Config:
        """Home Assistant names entities after the device's name made lower case, every run of
        other characters one ``_``: two printers alike there got ``_2`` entity ids, which an
        automation written for one never names."""
        if not (self.mqtt.enabled and self.mqtt.homeassistant.enabled):
            return self
        seen: dict[str, str] = {}
        for p in self.printers:
            slug = entity_slug(p.name)
            if slug in seen:
                raise ValueError(
                    f"printers: {seen[slug]!r} and {p.name!r} would be one name in Home "
                    f"Assistant ({slug}_...): rename one"
                )
            seen[slug] = p.name
        return self

    @model_validator(mode="after")
    def _notify_printers(self) -> Config:
        names = {p.name for p in self.printers}
        for i, target in enumerate(self.notify):
            unknown = sorted(set(target.printers or ()) - names)
            if unknown:
                raise ValueError(f"notify.{i}.printers: unknown printer(s) {', '.join(unknown)}")
        given = [t.name for t in self.notify if t.name]
        if len(given) != len(set(given)):
            raise ValueError("notify: target names must be unique")
        if any(t.actions_url for t in self.notify):
            if not self.http.listen:
                _warn_once(
                    "notify: actions_url is set but http.listen is empty: the buttons have no server to call"
                )
            elif is_loopback(self.http.listen):
                phone = [
                    t.actions_url
                    for t in self.notify
                    if t.actions_url
                    and not is_loopback_host(urlsplit(t.actions_url).hostname or "")
                ]
                if phone and not (self.http.password or self.http.generate_password):
                    # the proxy's requests come from this machine: to the daemon, the owner
                    raise ValueError(
                        f"notify: actions_url {redact_url(phone[0])!r} needs the daemon reachable from "
                        f"the phone, but http.listen is {self.http.listen} without a password: a "
                        "proxy on this machine would open the dashboard (camera, Cancel) to everyone "
                        "it serves; set http.password_file or http.generate_password: true"
                    )
                _warn_once(
                    f"notify: actions_url is set but http.listen is {self.http.listen}: a phone "
                    "reaches the buttons only through a proxy on this machine"
                )
        return self

    def secrets(self) -> list[str]:
        """Every secret value in this config, so tests and log filters can look for them."""
        out = []
        if self.mqtt.password:
            out.append(self.mqtt.password.get_secret_value())
        if self.http.password:
            out.append(self.http.password.get_secret_value())
        if self.http.scrape_token:
            out.append(self.http.scrape_token.get_secret_value())
        out += [p.api.api_key.get_secret_value() for p in self.printers if p.api.api_key]
        out += [t.url.get_secret_value() for t in self.notify if t.url]
        for p in self.printers:  # a camera's or the printer API's own user:password@, ?pwd=
            for url in (p.camera.source, p.api.url):
                out += url_secrets(url) if isinstance(url, str) else []
        return [s for s in out if s]

    def masked(self) -> dict[str, Any]:
        """The resolved config as plain data with secrets masked, for check-config and status."""
        data = self.model_dump()
        for printer in data.get("printers", []):  # shown as every line naming them shows them
            for section, key in (("camera", "source"), ("api", "url")):
                value = printer.get(section, {}).get(key)
                if isinstance(value, str) and "://" in value:
                    printer[section][key] = redact_url(value)
        return _redact_tree(data, [*self.secrets(), *secret_filter.known()])


# every key of the schema (each of its sections is a _Model: none can be left out), so that a
# short password found inside one's name ("pass" in "password_file") leaves the name legible
add_key_names(
    name
    for model in _Model.__subclasses__()
    for field in model.model_fields
    for name in (field, *field.split("_"))
)


def _redact_tree(node: Any, secrets: list[str]) -> Any:
    """Every string in plain data with secret values, URL passwords and URL tokens masked."""
    if isinstance(node, dict):
        return {k: _redact_tree(v, secrets) for k, v in node.items()}
    if isinstance(node, list):
        return [_redact_tree(v, secrets) for v in node]
    return redact(node, secrets) if isinstance(node, str) else node


# --------------------------------------------------------------------------- loading


def _secret_part(path: str, value: str, at: int) -> bool:
    """Whether the text at ``at`` of the config's ``value`` under ``path`` may be a secret: a
    key that says so, a notification URL (a secret whole), or a URL's ``user:password@``."""
    if says_secret(path.rpartition(".")[2]) or re.fullmatch(r"notify\.\d+\.url", path):
        return True
    scheme = value.find("://")
    host_start = value.find("@", at)
    return 0 <= scheme < at and host_start >= 0 and "/" not in value[scheme + 3 : host_start]


def _expand_env(node: Any, path: str) -> Any:
    if isinstance(node, dict):
        return {k: _expand_env(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, f"{path}.{i}") for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ and m[0] != node and _secret_part(path, node, m.start()):
                # a password of its own holding "${...}": its name is part of the password
                raise ConfigError(
                    f"{path}: names an environment variable that is not set (the value is not "
                    "shown: it may be a secret)"
                )
            if name not in os.environ:
                raise ConfigError(f"{path}: environment variable ${{{name}}} is not set")
            if says_secret(name):  # masked wherever it lands (an MQTT user name, a URL's path)
                secret_filter.add([os.environ[name]])  # logs, check-config, errors
            return os.environ[name]

        return _ENV_REF.sub(sub, node)
    return node


# each file found readable, as it was then: said once, not at every reload (every settings
# save on the page is one), and again once it changes
_said_readable: set[tuple[str, int, int, int]] = set()


def _warn_if_readable(path: Path, what: str) -> None:
    """Say how to close it; owned by another user (a file made with sudo), chmod 600 alone
    would leave this process unable to read it at the next start."""
    try:
        st = path.stat()
    except OSError:
        return
    seen = (str(path), st.st_ino, st.st_mode, st.st_uid)
    if st.st_mode & (stat.S_IRGRP | stat.S_IROTH) and seen not in _said_readable:
        _said_readable.add(seen)
        me = user_name(os.geteuid())
        fix = f"chmod 600 {path}"
        if os.geteuid() == 0 and st.st_uid == 0:  # root reads it; the service may not
            fix += ", owned by the user the service runs as (sudo chown printer-watchdog)"
        elif st.st_uid != os.geteuid() and os.geteuid() != 0:
            fix = f"sudo chown {me} {path} && sudo chmod 600 {path} (this process runs as {me})"
        logger.warning(
            "%s %s is readable by other users (mode %o); %s", what, path, st.st_mode & 0o777, fix
        )


def _in_config_folder(value: str, base: Path) -> Path:
    """A file the config names: ``~`` and ``~user`` expanded (left as written where there is
    no such home, an unknown user or no HOME: then the file is not found, said in one line
    naming the key), a relative path taken from ``base``, the config's folder."""
    path = Path(value)
    try:
        path = path.expanduser()
    except RuntimeError:
        pass
    return path if path.is_absolute() else base / path


def _paths_from(
    data: dict[str, Any], keys: tuple[str, ...], base: Path, where: str = ""
) -> dict[str, Any]:
    """``data`` (copied) with its relative file paths at ``keys`` taken from ``base``, the
    config's folder, as the secrets' ``*_file`` are: under systemd the daemon's working
    folder is /, where check-config, run from the config's folder, had found them. An empty
    path is refused: it would be the working folder (the config's folder here, / under
    systemd), not "none" or "the default" as its writer meant."""
    data = dict(data)
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and not value.strip():
            raise ConfigError(
                f"{where}{key}: empty: leave the key out for its default, or give a path"
            )
        if isinstance(value, str):
            data[key] = str(_in_config_folder(value, base))
    return data


def _printer_files(printer: dict[str, Any], path: str, base: Path) -> None:
    """A printer's files from the config's folder: its CA files' paths, its API key."""
    for section in ("camera", "api"):
        if isinstance(printer.get(section), dict):
            printer[section] = _paths_from(
                printer[section], ("ca_file",), base, f"{path}.{section}."
            )
    if isinstance(printer.get("api"), dict):
        _read_secret(printer["api"], "api_key", "api_key_file", f"{path}.api", base)


def _read_secret(data: dict[str, Any], key: str, file_key: str, path: str, base: Path) -> None:
    """Move the content of ``file_key`` into ``key`` (both set is an error)."""
    file_value = data.get(file_key)
    if file_value is None:
        return
    if data.get(key):
        raise ConfigError(f"{path}.{file_key}: set either {key} or {file_key}, not both")
    secret_path = _in_config_folder(str(file_value), base)
    if not os.path.lexists(secret_path):
        # not shown: a secret written where its file's path goes would be (no test of the
        # text tells a path from a password such as "Sup3rS3cret.2024")
        raise ConfigError(
            f"{path}.{file_key}: no such file (the value is not shown: it may be the secret "
            "itself, where the path of a file holding it belongs)"
        )
    try:
        value = read_small_file(secret_path, 65536, "secret file", ValueError).strip()
    except ValueError as exc:
        raise ConfigError(f"{path}.{file_key}: {exc}") from None
    if not value:
        raise ConfigError(f"{path}.{file_key}: {secret_path} is empty")
    _warn_if_readable(secret_path, "secret file")
    secret_filter.add([value])  # masked in every log line from now on, tracebacks included
    data[key] = value


_YAML_PROBLEMS = (  # PyYAML's parser words → what to fix in the file
    ("'<block mapping start>'", "this line is indented differently from the lines before it"),
    (
        "expected <block end>, but found '?'",
        "this line is indented differently from the lines before it",
    ),
    (
        "expected <block end>, but found '-'",
        "a '- ' list item is indented differently from the one before",
    ),
    (
        "'<stream end>'",
        "a bracket or brace opened earlier is not closed before the end of the file",
    ),
    ("found character '\\t'", "a tab character: indent with spaces only"),
    (
        "mapping values are not allowed here",
        "a ': ' where a value was expected (quote text that contains ': ')",
    ),
    ("could not find expected ':'", "a line that is not 'key: value' (missing ':')"),
    ("found undefined alias", "'*' starts a YAML alias: quote the value"),
    (  # password: !secret: PyYAML's words would quote the value
        "could not determine a constructor for the tag",
        "'!' starts a YAML tag: quote a value that begins with one",
    ),
    ("found unexpected end of stream", "a quote opened and never closed"),
    (  # api: {kind: octoprint, api_key: ${KEY}}: inside braces, ${ starts another mapping
        "expected ',' or '}', but got '{'",
        "a '{' inside a {...} mapping: quote a value that holds one, as \"${NAME}\"",
    ),
)


def _yaml_problem(problem: str) -> str:
    """PyYAML's problem text as what to fix (its own words when no rule matches)."""
    for needle, words in _YAML_PROBLEMS:
        if needle in problem:
            return words
    return problem


def _secret_values(data: Any) -> list[str]:
    """The secret-looking values of raw config data (before validation made them SecretStr)."""
    out: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if key in ("password", "api_key") and isinstance(value, str):
                out.append(value)
            elif isinstance(value, str) and "://" in value:
                out += url_secrets(value)
            else:
                out += _secret_values(value)
    elif isinstance(data, list):
        for value in data:
            out += _secret_values(value)
    return out


def _expanded_size(node: yaml.Node, memo: dict[int, int], active: set[int]) -> int:
    """How many values ``node`` becomes once its aliases are expanded; refuses past MAX_CONFIG_NODES."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in active:
        raise ConfigError("an alias refers to itself (recursive YAML)")
    active.add(key)
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    size = 1
    for child in children:
        size += _expanded_size(child, memo, active)
        if size > MAX_CONFIG_NODES:
            raise ConfigError(
                f"more than {MAX_CONFIG_NODES} values once aliases are expanded (an alias bomb?)"
            )
    active.discard(key)
    memo[key] = size
    return size


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, whose values cannot fail outside its own error: no key of the
    config is a date, so what reads as one (``password: 2024-13-01``) stays text, and a
    number that cannot be one (``!!float abc``) is a YAML error with its line."""


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


def _checked(tag: str, build: Any) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        try:
            return build(loader, node)
        except (ValueError, TypeError, KeyError, OverflowError):  # not repeated: a secret?
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"a value marked !!{tag} that is not one: quote it, or drop the !!{tag}",
                node.start_mark,
            ) from None

    return construct


_ConfigLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)
for _tag in ("int", "float", "bool", "binary"):
    _ConfigLoader.add_constructor(
        f"tag:yaml.org,2002:{_tag}",
        _checked(_tag, getattr(yaml.SafeLoader, f"construct_yaml_{_tag}")),
    )


def _no_key_twice(node: yaml.Node, seen: set[int]) -> None:
    """ConfigError for a mapping that gives a key twice: YAML keeps the last one without a
    word, so a second ``printers:`` (a printer's block repeated with its heading) left the
    first printers unwatched while the config checked "ok"."""
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                line = key.start_mark.line + 1
                if key.value in first:
                    raise ConfigError(
                        f"line {line}: {key.value!r} is given twice (first on line "
                        f"{first[key.value]}): the second would replace the first; merge them"
                    )
                first[key.value] = line
            _no_key_twice(value, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _no_key_twice(item, seen)


def _safe_load(text: str) -> Any:
    """yaml.safe_load, with the expanded size checked on the node graph before anything is
    built, and no key given twice in a mapping."""
    loader = _ConfigLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set())
        _no_key_twice(node, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


def parse_config(raw: Any, source: str = "config", base: Path | None = None) -> Config:
    """Validate already-parsed YAML; secrets files are resolved relative to ``base``."""
    base = base or Path.cwd()
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}"
        )
    data: Any = raw
    try:
        data = _expand_env(raw, "")
        # the model and the storage folder from the config's folder too (the daemon's
        # working folder under systemd is /): check-config, run from the config's folder,
        # found a relative model the service then could not
        data = _paths_from(data, ("model",), base)
        if isinstance(data.get("storage"), dict):
            data["storage"] = _paths_from(data["storage"], ("dir",), base, "storage.")
        mqtt = data.get("mqtt")
        if isinstance(mqtt, dict):
            mqtt = data["mqtt"] = dict(mqtt)
            _read_secret(mqtt, "password", "password_file", "mqtt", base)
        http = data.get("http")
        if isinstance(http, dict):
            http = data["http"] = dict(http)
            _read_secret(http, "password", "password_file", "http", base)
            _read_secret(http, "scrape_token", "scrape_token_file", "http", base)
        if isinstance(mqtt, dict) and isinstance(mqtt.get("tls"), dict):
            mqtt["tls"] = _paths_from(
                mqtt["tls"], ("ca_file", "cert_file", "key_file"), base, "mqtt.tls."
            )
        printers = data.get("printers")
        for i, printer in enumerate(printers if isinstance(printers, list) else []):
            if isinstance(printer, dict):
                _printer_files(printer, f"printers.{i}", base)
        if isinstance(data.get("notify"), list):
            data["notify"] = [dict(t) if isinstance(t, dict) else t for t in data["notify"]]
            for i, target in enumerate(data["notify"]):
                if isinstance(target, dict):
                    _read_secret(target, "url", "url_file", f"notify.{i}", base)
        return _recordings_from(Config.model_validate(data), base)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except SchemaError as exc:
        # from None: the chained error would repeat the problems in --debug tracebacks
        message = redact(f"{source}: {exc.describe()}", _secret_values(data))
        raise ConfigError(secret_filter.mask(message)) from None


def _recordings_from(config: Config, base: Path) -> Config:
    """Each camera's recording (a folder of frames, a video) from the config's folder, as every
    other file it names: under systemd the working folder is /, where a folder check-config
    found beside the config is not. Once validated: an address mistyped as a path
    (``http:/user:pass@host``) is refused as one, its password in no path."""
    printers = []
    for p in config.printers:
        source = p.camera.source
        if (
            isinstance(source, str)
            and source_kind(source) is SourceKind.RECORDING
            and not address_without_scheme(source)
        ):
            camera = p.camera.model_copy(update={"source": str(_in_config_folder(source, base))})
            p = p.model_copy(update={"camera": camera})
        printers.append(p)
    return config.model_copy(update={"printers": printers})


def read_small_file(path: Path, limit: int, what: str, error: type[Exception]) -> str:
    """The text of a regular file of at most ``limit`` bytes; a FIFO, a device or a folder is
    refused before it is opened (reading a FIFO would block until someone writes to it)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: cannot read {what}: not a regular file")
    if st.st_size > limit:
        raise error(f"{path}: {what} of {st.st_size} bytes, more than the {limit} bytes allowed")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{path}: {what} larger than the {limit} bytes allowed")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file; raises ConfigError with a one-line message.

    The file only: ``watchdog.overrides.load_effective_config`` adds the dashboard's settings."""
    path = Path(path)
    text = read_small_file(path, MAX_CONFIG_BYTES, "config", ConfigError)
    try:
        raw = _safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        # from None: the YAML error's own text quotes the line, which may hold a secret
        raise ConfigError(
            redact(f"{path}:{where}: invalid YAML: {_yaml_problem(problem)}")
        ) from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    config = parse_config(raw, str(path), path.parent)
    secret_filter.add(config.secrets())
    if any(
        secret in text for secret in config.secrets()
    ):  # not when they come from ${ENV} or *_file
        _warn_if_readable(path, "config file with secrets")
    return config
