"""The MQTT connection: paho client, credentials, TLS, last will, reconnects and size limits.

It knows nothing of alerts or Home Assistant: the communicator (``watchdog.comms.mqtt``) gives
it the topics to subscribe, a handler for incoming messages and one for PUBACKs. The network
runs on paho's own thread (``loop_start``); nothing here blocks the daemon while the broker is
away.

Incoming messages are bounded before they are read into memory: the client connects with MQTT
5 and tells the broker its Maximum Packet Size (the broker then drops larger messages for this
client), and a packet announced larger than that anyway closes the connection before its
payload is read (a broker that ignores the property cannot make the daemon allocate it).
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from watchdog.config import ConfigError, MqttConfig, TlsConfig
from watchdog.devices.http_client import UNTRUSTED_CERTIFICATE, connection_cause
from watchdog.incidents import ThrottledLog

MACHINE_ID = Path("/etc/machine-id")


PUBLISH_OVERHEAD = 64  # a PUBLISH packet's header, packet id and properties, at most


# a connection the broker closes within this many seconds of opening it is short-lived; this
# many in a row are a churn (another client with our id, a broker that refuses us once in)
SHORT_LIVED_S = 10.0
CHURN_CONNECTIONS = 3


# paho's words for a lost connection, in the owner's ("Unspecified error" read as the
# watchdog's own fault when the broker was only restarted)
_LOST = {
    "Unspecified error": "the broker closed it or went away: restarted or stopped?",
    "Keep alive timeout": "the broker stopped answering within 1.5 x mqtt.keepalive_s",
    "Normal disconnection": "closed",
}


def lost_why(reason: Any) -> str:
    """Why the broker's connection was lost, in words."""
    text = str(reason)
    return _LOST.get(text, text)


def client_id(cfg: MqttConfig) -> str:
    """The MQTT client id: ``mqtt.client_id``, else printer-watchdog-<hostname>-<machine>.
    The host name alone collided: every Pi is ``raspberrypi`` or ``octopi`` until renamed, and
    two daemons with one id take the broker's session from each other in turn. The first 6
    characters of /etc/machine-id (set at an OS's first boot) tell them apart."""
    return cfg.client_id or f"printer-watchdog-{socket.gethostname()}{machine_suffix()}"


def machine_suffix() -> str:
    """``-`` and 6 characters of this machine's id, or "" where it has none to read."""
    try:
        machine = MACHINE_ID.read_text(errors="replace").strip()[:6]
    except OSError:
        return ""
    return f"-{machine}" if re.fullmatch(r"[0-9a-f]{6}", machine) else ""


def availability_topic(cfg: MqttConfig) -> str:
    """This daemon's ``online``/``offline`` topic (retained; its last will), one per client:
    where several daemons share a prefix (a farm, the demo beside the daemon), one stopping
    must not mark the others' entities unavailable."""
    return f"{cfg.topic_prefix}/available/{re.sub(r'[^A-Za-z0-9_.-]', '_', client_id(cfg))}"


logger = logging.getLogger(__name__)

# What the daemon receives is commands (≤ 1 KiB) and Home Assistant's status: 64 KiB is ample.
MAX_INCOMING_BYTES = 64 * 1024

MessageHandler = Callable[[mqtt.MQTTMessage], None]


class _BoundedClient(mqtt.Client):
    """A paho client that refuses to read a packet larger than ``max_incoming`` bytes.

    paho reads a packet's whole remaining length with one ``recv`` (and allocates it): the
    check sits exactly there.
    """

    max_incoming = MAX_INCOMING_BYTES
    oversize: int | None = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if bufsize > self.max_incoming:
            self.oversize = bufsize
            raise OSError(errno.EMSGSIZE, f"incoming packet of {bufsize} bytes")
        return super()._sock_recv(bufsize)


def _set_tls(client: mqtt.Client, tls: TlsConfig) -> None:
    """``client`` set to TLS with ``tls``'s files; ConfigError naming mqtt.tls when they cannot
    be loaded (a certificate that is no certificate, a key that is not its certificate's)."""
    try:
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_NONE if tls.insecure else ssl.CERT_REQUIRED,
        )
    except (OSError, ssl.SSLError, ValueError) as exc:
        files = ", ".join(str(f) for f in (tls.ca_file, tls.cert_file, tls.key_file) if f)
        if isinstance(exc, ssl.SSLError):  # OpenSSL's words ("[SSL] PEM lib"): the user's
            why = (
                "the key is not the certificate's"
                if exc.reason == "KEY_VALUES_MISMATCH"
                else "a file that is not a PEM certificate or key"
            )
        else:
            why = exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)
        raise ConfigError(f"mqtt.tls: cannot load the certificates ({files}): {why}") from exc


def check_tls(cfg: MqttConfig, config_path: str | Path) -> None:
    """ConfigError naming the config file and mqtt.tls where the MQTT session would fail on
    its certificates: said by ``check-config`` and at the start before anything starts, and
    by a reload (it keeps the running session, and the next start would exit 2)."""
    if cfg.host and cfg.tls is not None:
        try:
            _set_tls(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2), cfg.tls)
        except ConfigError as exc:
            raise ConfigError(f"{config_path}: {exc}") from None


def _log_in_as_configured(client: mqtt.Client, cfg: MqttConfig) -> None:
    """``client`` set to connect as ``cfg`` says: its user name and password, its TLS
    (ConfigError naming mqtt.tls where the certificates cannot load)."""
    if cfg.username:
        client.username_pw_set(
            cfg.username, cfg.password.get_secret_value() if cfg.password else None
        )
    if cfg.tls is not None:
        _set_tls(client, cfg.tls)
        if cfg.tls.insecure:
            client.tls_insecure_set(True)


def refusal_hint(code: int) -> str:
    """What the owner can do about a broker refusing the connection with ``code``."""
    if code in (4, 5, 134, 135):  # bad user name or password / not authorised
        return " (check mqtt.username and mqtt.password)"
    if code in (1, 132):  # unacceptable / unsupported protocol version
        return " (the broker must speak MQTT 5, e.g. mosquitto 1.6 or later)"
    return ""


def probe_broker(cfg: MqttConfig, timeout: float = 10.0) -> tuple[bool, str]:
    """One connection to the broker as the daemon makes it (its user, password and TLS),
    closed at once: whether alerts can reach it, and why not. Under a client id of its own
    (the daemon's would take a running daemon's session from it for a moment), unless
    ``mqtt.client_id`` is set: a broker may allow the user under that id alone (mosquitto's
    dynamic security, AWS IoT policies)."""
    own = f"{client_id(cfg)}-check" if not cfg.client_id else cfg.client_id
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=own, protocol=mqtt.MQTTv5)
    _log_in_as_configured(client, cfg)
    answered = threading.Event()
    outcome: list[tuple[bool, str]] = []

    def connected(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            outcome.append((False, f"refused the connection: {reason}{refusal_hint(reason.value)}"))
        else:
            outcome.append((True, "connected"))
        answered.set()

    def closed(c: mqtt.Client, userdata: Any, *args: Any) -> None:
        if not answered.is_set():  # (paho would connect again, and again, unsaid)
            tls = (
                ""
                if cfg.tls is not None
                else " (a port that wants TLS, such as 8883? set mqtt.tls)"
            )
            outcome.append((False, f"the broker closed the connection without answering{tls}"))
            answered.set()

    client.on_connect = connected
    client.on_disconnect = closed
    try:
        client.connect(cfg.host, cfg.port, keepalive=max(5, int(timeout)))
    except ssl.SSLCertVerificationError as exc:
        why = exc.verify_message or str(exc)
        hint = (
            "the broker's certificate is for another name: connect by the name it was made for"
            if "mismatch" in why
            else "set mqtt.tls.ca_file to the CA that signed the broker's certificate"
        )
        return False, f"cannot connect: {why} ({hint})"
    except (OSError, ValueError) as exc:  # in the words the cameras' and APIs' probes use
        return False, f"cannot connect: {connection_cause(exc, 'broker') or exc}"
    client.loop_start()
    try:
        if not answered.wait(timeout):
            return False, f"no answer to the connection within {timeout:g} s"
        return outcome[0]
    finally:
        client.disconnect()
        client.loop_stop()


class MqttTransport:
    """One MQTT session to the configured broker, reconnecting by itself."""

    def __init__(
        self,
        cfg: MqttConfig,
        on_message: MessageHandler,
        on_ack: Callable[[int, str], None],
        on_connected: Callable[[], None],
        subscriptions: Callable[[], list[str]],
        *,
        reconnect_delay: tuple[float, float] = (1, 30),
        throttle: ThrottledLog | None = None,
        max_incoming: int = MAX_INCOMING_BYTES,
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.cfg = cfg
        self._on_lost_cb = on_lost
        self.prefix = cfg.topic_prefix
        self._on_message_cb = on_message
        self._on_ack_cb = on_ack
        self._on_connected_cb = on_connected
        self._subscriptions = subscriptions
        self.reconnect_delay = reconnect_delay
        self.max_incoming = max_incoming
        self._throttle = throttle or ThrottledLog(60.0)
        self.client: _BoundedClient | None = None
        self._was_connected = False
        self._connected_at = 0.0
        # connections in a row the broker closed within SHORT_LIVED_S of opening them
        self._short_lived = 0
        # the largest packet the broker takes (CONNACK's Maximum Packet Size; None: no limit
        # said): a bigger one ends the connection, and paho sends it again at every connect
        self.max_outgoing: int | None = None

    @property
    def availability_topic(self) -> str:
        return availability_topic(self.cfg)

    @property
    def address(self) -> str:
        return f"{self.cfg.host}:{self.cfg.port}"

    @property
    def connected(self) -> bool:
        client = self.client
        return client is not None and client.is_connected()

    def make_client(self) -> _BoundedClient:
        """The configured client (ConfigError naming mqtt.tls if the certificates cannot load)."""
        cfg = self.cfg
        client = _BoundedClient(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id(cfg), protocol=mqtt.MQTTv5
        )
        client.max_incoming = self.max_incoming
        _log_in_as_configured(client, cfg)
        if not cfg.username and cfg.password is not None:
            logger.warning(
                "mqtt.password is set without mqtt.username: it is not sent (MQTT sends a "
                "password with a user name only)"
            )
        if cfg.tls is not None and cfg.tls.insecure:
            logger.warning("mqtt.tls.insecure: the broker's certificate is not verified")
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(*self.reconnect_delay)  # type: ignore[arg-type]  # floats work too
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def start(self, client: _BoundedClient) -> None:
        """Connect in the background with ``client`` (made by ``make_client``)."""
        self.client = client
        props = Properties(PacketTypes.CONNECT)
        props.MaximumPacketSize = self.max_incoming
        # Session expiry 0 (the default): a clean session each time, as before MQTT 5.
        client.connect_async(
            self.cfg.host,
            self.cfg.port,
            keepalive=self.cfg.keepalive_s,
            clean_start=True,
            properties=props,
        )
        client.loop_start()

    def publish(
        self, topic: str, payload: bytes | str, retain: bool = False, qos: int = 1
    ) -> mqtt.MQTTMessageInfo | None:
        """Queue one message (paho sends it now or after the reconnect); None when stopped."""
        client = self.client
        if client is None:
            return None
        limit = self.max_outgoing
        size = (
            0 if limit is None else len(payload.encode() if isinstance(payload, str) else payload)
        )
        if limit is not None and size + len(topic.encode()) + PUBLISH_OVERHEAD > limit:
            self._throttle(
                logger,
                logging.WARNING,
                f"too-large:{topic}",
                "MQTT broker %s takes messages up to %d bytes: %s (%d bytes) not published "
                "(raise the broker's max_packet_size, or lower the camera's resolution)",
                self.address,
                limit,
                topic[:200],
                size,
            )
            return None
        return client.publish(topic, payload, qos=qos, retain=retain)

    def forget(self, mids: Collection[int]) -> set[int]:
        """Take the messages ``mids``, not acknowledged, out of the client's queue, so that it
        does not send them again at this connection; the ones found. Called from the
        connection's callback, before paho sends its queue again (paho 2 has no public way:
        its queue is read under its own lock, as paho does)."""
        client = self.client
        if client is None or not mids:
            return set()
        with client._out_message_mutex:
            found = {mid for mid in mids if client._out_messages.pop(mid, None) is not None}
        return found

    def stop(self, timeout: float = 3.0, for_good: bool = False) -> None:
        """Publish ``offline`` (``for_good``: empty the availability topic, a client that will
        not come back), disconnect, join paho's thread."""
        client = self.client
        if client is None:
            return
        if client.is_connected():
            word = "" if for_good else "offline"
            info = client.publish(self.availability_topic, word, qos=1, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                logger.debug("offline not confirmed: %s", exc)
        self._was_connected = False  # a clean stop is not a lost connection
        client.disconnect()
        client.loop_stop()
        self.client = None

    # ----------------------------------------------------------------- callbacks (paho's thread)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:
            hint = refusal_hint(reason.value)
            self._throttle(
                logger,
                logging.ERROR,
                "connect",
                "MQTT broker %s refused the connection: %s%s; retrying",
                self.address,
                reason,
                hint,
            )
            return
        self._throttle.reset("connect")
        self._was_connected = True
        self._connected_at = time.monotonic()
        limit = getattr(props, "MaximumPacketSize", None)
        self.max_outgoing = limit if isinstance(limit, int) and limit > 0 else None
        try:
            # noLocal: what the daemon publishes itself (clearing a retained command) is not
            # echoed. retainAsPublished: a command published retained while the daemon is
            # connected keeps its flag (the broker takes it off live messages otherwise), so
            # it is refused and cleared, as one found at the connection is.
            options = SubscribeOptions(qos=1, noLocal=True, retainAsPublished=True)
            topics = [(t, options) for t in self._subscriptions()]
            if topics:
                client.subscribe(topics)
            # after the subscription (the broker takes a client's packets in order): a button
            # pressed in Home Assistant once it shows the watchdog available is received
            client.publish(self.availability_topic, "online", qos=1, retain=True)
            self._on_connected_cb()
        except Exception:  # noqa: BLE001 - raised here, it would end paho's thread for good
            logger.exception("MQTT: setting up the session on %s failed", self.address)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        exc = sys.exception()  # paho calls this from inside its `except OSError:`
        # in the owner's words ("host name not found (DNS)"), not "[Errno -2] Name or
        # service not known"; the library's text where none of the known causes fits
        why = (connection_cause(exc, "broker") if exc is not None else None) or exc or "failed"
        hint = ""
        if why == UNTRUSTED_CERTIFICATE:  # not for one expired or of another host's name
            hint = " (set mqtt.tls.ca_file to the CA that signed the broker's certificate)"
        elif (
            self.cfg.tls is not None
            and isinstance(exc, ssl.SSLError | ConnectionResetError)
            and not isinstance(exc, ssl.SSLCertVerificationError)
        ):
            # a plain port answers TLS by closing (mosquitto) or in clear text: the cameras'
            # "does it speak http, not https?" is no broker's question
            why = "the TLS handshake failed"
            hint = " (mqtt.tls is set: does the broker take TLS on this port? 8883 usually, 1883 is plain)"
        self._throttle(
            logger,
            logging.WARNING,
            "connect",
            "cannot connect to MQTT broker %s: %s%s; retrying",
            self.address,
            why,
            hint,
        )

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self._on_lost_cb()
        oversize = getattr(client, "oversize", None)
        if oversize is not None:
            client.oversize = None  # type: ignore[attr-defined]
            self._throttle(
                logger,
                logging.WARNING,
                "oversize",
                "MQTT broker %s sent a packet of %d bytes (limit %d): not read, reconnecting",
                self.address,
                oversize,
                self.max_incoming,
            )
        if self._was_connected:
            self._was_connected = False
            short = time.monotonic() - self._connected_at < SHORT_LIVED_S
            self._short_lived = self._short_lived + 1 if short else 0
            self._throttle(
                logger,
                logging.WARNING,
                "lost",
                "MQTT connection to %s lost (%s); retrying, alerts are kept until delivered",
                self.address,
                lost_why(reason),
            )
            if self.churning:
                self._throttle(
                    logger,
                    logging.WARNING,
                    "churn",
                    "MQTT broker %s closed this connection right after it was made, %d times in "
                    "a row: is another client using the client id %r (mqtt.client_id)? Two "
                    "clients with one id knock each other off, over and over (or the broker "
                    "keeps restarting)",
                    self.address,
                    self._short_lived,
                    client_id(self.cfg),
                )

    @property
    def churning(self) -> bool:
        """The broker closed the last connections right after it opened them (another client
        with this client id, most often): each new one is not news, nor a reason to send Home
        Assistant everything again."""
        return self._short_lived >= CHURN_CONNECTIONS

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        # an MQTT 5 PUBACK at or above 0x80 is the broker refusing the message (its ACL, a
        # quota): not delivered; "" for a message it took
        refused = str(reason) if getattr(reason, "is_failure", False) else ""
        self._on_ack_cb(mid, refused)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self._on_message_cb(msg)
        except Exception:  # a handler bug must never kill paho's network thread
            logger.exception("handling the MQTT message on %s failed", topic_text(msg)[:200])


def topic_text(msg: mqtt.MQTTMessage) -> str:
    """A message's topic as text, whatever a broker sent: ``msg.topic`` raises on a topic that
    is not UTF-8 (a broker other than mosquitto may pass one on), which must not escape into
    paho's network thread and end it."""
    try:
        return str(msg.topic)
    except UnicodeDecodeError:
        return bytes(msg._topic).decode("utf-8", "backslashreplace")
