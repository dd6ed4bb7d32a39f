"""pytest plugin: a real mosquitto broker on 127.0.0.1, plus an MQTT subscriber that records.

Fixtures:
- ``mosquitto``: one anonymous broker for the whole session (use a unique topic prefix per
  test: ``unique_prefix``). Do not stop it; use ``mosquitto_factory`` for that.
- ``mosquitto_factory``: ``factory(auth=False, tls=False, require_certificate=False)`` starts a
  private broker for one test (stopped at teardown); it can be stopped, started again on the
  same port and restarted on a new port.
- ``mqtt_tls_files``: a session-scoped self-signed CA (made with openssl) with a server
  certificate for 127.0.0.1/localhost, a client certificate, and a second CA that signed
  nothing the broker uses (for "does not verify" tests).

The broker keeps sessions across its own restarts (persistence on, saved at SIGTERM), so a
subscriber made with ``broker.subscriber(...)`` receives QoS 1 messages published while it
was reconnecting: a test can count deliveries exactly.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

HOST = "127.0.0.1"
USERNAME = "watchdog"
PASSWORD = "s3cret-mqtt-pass"


def _mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )


# Ports handed out below the kernel's ephemeral range (32768 and up on Linux), a block per
# pytest-xdist worker: a test that restarts a daemon or a broker on the same port must not
# find it taken meanwhile by another worker's server or by any client's source port, which is
# what a port from bind(("", 0)) risks.
_PORT_BLOCK = 3000
_PORT_BASE = 20000
_ports_given: set[int] = set()
_port_lock = threading.Lock()


def _worker_index() -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 a moment ago that no other test here will be handed."""
    index = _worker_index()
    with _port_lock:
        if (index + 1) * _PORT_BLOCK + _PORT_BASE <= 32768:
            first = _PORT_BASE + index * _PORT_BLOCK
            for port in random.sample(range(first, first + _PORT_BLOCK), _PORT_BLOCK):
                if port not in _ports_given and _bindable(port):
                    _ports_given.add(port)
                    return port
        with socket.socket() as s:  # many workers, or a crowded block: any free port
            s.bind((HOST, 0))
            return int(s.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class TlsFiles:
    """PEM files made by openssl for one test session."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca_file: Path  # a CA that signed nothing here: verification against it must fail


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_tls_files(folder: Path) -> TlsFiles:
    """A CA, a server certificate for 127.0.0.1/localhost, a client certificate, another CA."""
    folder.mkdir(parents=True, exist_ok=True)
    days = "2"
    for ca in ("ca", "other_ca"):
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            days,
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.pem",
            "-subj",
            f"/CN=watchdog test {ca}",
            cwd=folder,
        )
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    (folder / "client.ext").write_text("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for name, cn in (("server", "localhost"), ("client", "watchdog-client")):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={cn}",
            cwd=folder,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            days,
            "-out",
            f"{name}.pem",
            "-extfile",
            f"{name}.ext",
            cwd=folder,
        )
    return TlsFiles(
        ca_file=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        other_ca_file=folder / "other_ca.pem",
    )


# --------------------------------------------------------------------------- subscriber


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    # the broker sent it again (QoS 1, its acknowledgement lost: a restart of the broker with
    # this session's messages in flight); not a publisher's second send
    dup: bool = False

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho client that records every message on its topics; reconnects by itself.

    Its session is persistent (clean_session False, fixed client id), so QoS 1 messages
    published while it reconnects after a broker restart are queued for it by the broker.
    """

    def __init__(
        self, broker: Broker, topics: tuple[str, ...], client_id: str | None = None
    ) -> None:
        self.broker = broker
        self.topics = topics
        self.client_id = client_id or f"test-sub-{uuid.uuid4().hex[:10]}"
        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._unsubscribed = threading.Event()
        self._client: mqtt.Client | None = None
        self._connect()

    def _connect(self) -> None:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False
        )
        self.broker.configure_client(client)
        client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]  # paho takes floats
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_unsubscribe = lambda *a: self._unsubscribed.set()
        self._subscribed.clear()
        client.connect_async(HOST, self.broker.port, keepalive=10)
        client.loop_start()
        self._client = client
        if not self._subscribed.wait(10):
            raise TimeoutError(f"test subscriber could not subscribe on {self.broker}")

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any
    ) -> None:
        if not rc.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any
    ) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(
                Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos, bool(msg.dup))
            )
            self._cond.notify_all()

    def follow(self) -> None:
        """Reconnect to the broker's current port (after ``restart(new_port=True)``)."""
        self._drop_client()
        self._connect()

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def close(self) -> None:
        """Unsubscribe (so the broker stops queueing for this session) and disconnect."""
        if self._client is not None and self._client.is_connected():
            rc, _ = self._client.unsubscribe(list(self.topics))
            if rc == mqtt.MQTT_ERR_SUCCESS:
                self._unsubscribed.wait(5)
        self._drop_client()
        if self in self.broker.subscribers:
            self.broker.subscribers.remove(self)

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def received(
        self, topic: str, predicate: Callable[[Message], bool] | None = None
    ) -> list[Message]:
        """Messages so far on ``topic`` (wildcards allowed) that satisfy ``predicate``."""
        with self._cond:
            return [
                m
                for m in self.messages
                if mqtt.topic_matches_sub(topic, m.topic) and (predicate is None or predicate(m))
            ]

    def wait_for(
        self, topic: str, predicate: Callable[[Message], bool] | None = None, timeout: float = 10.0
    ) -> Message:
        """The first message on ``topic`` that satisfies ``predicate``, waiting up to ``timeout``."""
        return self.wait_count(topic, 1, predicate, timeout)[0]

    def wait_count(
        self,
        topic: str,
        count: int,
        predicate: Callable[[Message], bool] | None = None,
        timeout: float = 10.0,
    ) -> list[Message]:
        """Wait until at least ``count`` matching messages arrived; returns all of them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self.received(topic, predicate)
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = sorted({m.topic for m in self.messages})
                    raise AssertionError(
                        f"{len(found)}/{count} messages on {topic!r} within {timeout}s; "
                        f"topics seen: {seen}"
                    )
                self._cond.wait(min(left, 0.5))


# --------------------------------------------------------------------------- broker


@dataclass
class Broker:
    """A mosquitto child process with its config, log and persistence in ``workdir``."""

    workdir: Path
    port: int
    auth: bool = False
    tls: TlsFiles | None = None
    require_certificate: bool = False
    acl: str | None = None  # mosquitto ACL lines (``topic deny x/+/alert``), None: no ACL
    max_packet_size: int | None = None  # the largest packet it takes (and says in CONNACK)
    process: subprocess.Popen[bytes] | None = None
    subscribers: list[Subscriber] = field(default_factory=list)

    host = HOST
    username = USERNAME
    password = PASSWORD

    def __str__(self) -> str:
        return f"mosquitto {HOST}:{self.port}{' tls' if self.tls else ''}{' auth' if self.auth else ''}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "mosquitto.log"

    def log(self) -> str:
        """What the broker wrote so far (connections, refusals)."""
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} {HOST}",
            f"allow_anonymous {'false' if self.auth else 'true'}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # As root mosquitto drops to user `mosquitto`, which cannot read pytest's tmp dirs.
            lines.append("user root")
        if self.auth:
            pwfile = self.workdir / "passwd"
            if not pwfile.exists():
                pwfile.touch(mode=0o600)
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(pwfile), USERNAME, PASSWORD],
                    check=True,
                    capture_output=True,
                    timeout=30,
                )
            lines.append(f"password_file {pwfile}")
        if self.max_packet_size is not None:
            lines.append(f"max_packet_size {self.max_packet_size}")
        if self.acl is not None:
            acl = self.workdir / "acl"
            acl.write_text(self.acl + "\n")
            lines.append(f"acl_file {acl}")
        if self.tls:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if self.require_certificate else 'false'}",
            ]
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        """Start (again) on ``self.port``; returns once the port accepts connections."""
        if self.process is not None and self.process.poll() is None:
            return
        binary = _mosquitto_binary()
        assert binary, "mosquitto is not installed (tests/install-servers.sh)"
        conf = self._write_config()
        with open(self.log_file, "ab") as log:
            self.process = subprocess.Popen(
                [binary, "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10
        while not _port_open(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"{self} exited at start:\n{self.log()[-2000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self} did not listen within 10 s:\n{self.log()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (the broker saves its sessions), then wait; SIGKILL if it hangs."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        self.process = None

    def restart(self, new_port: bool = False) -> None:
        """Stop and start; on a new free port if asked (subscribers follow)."""
        self.stop()
        if new_port:
            self.port = free_port()
        self.start()
        if new_port:
            for sub in list(self.subscribers):
                sub.follow()

    def reload(self) -> None:
        """Its config (the ACL) written again and re-read (SIGHUP): its clients stay connected."""
        assert self.process is not None and self.process.poll() is None
        self._write_config()
        self.process.send_signal(signal.SIGHUP)
        time.sleep(0.5)  # the broker re-reads between two of its loops

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def configure_client(self, client: mqtt.Client) -> None:
        """Credentials and TLS (the session CA; client certificate if required) for a paho client."""
        if self.auth:
            client.username_pw_set(USERNAME, PASSWORD)
        if self.tls:
            if self.require_certificate:
                client.tls_set(
                    ca_certs=str(self.tls.ca_file),
                    certfile=str(self.tls.client_cert),
                    keyfile=str(self.tls.client_key),
                )
            else:
                client.tls_set(ca_certs=str(self.tls.ca_file))

    def subscriber(self, *topics: str, client_id: str | None = None) -> Subscriber:
        """A recording subscriber on ``topics`` (default ``#``), subscribed when this returns."""
        sub = Subscriber(self, topics or ("#",), client_id)
        self.subscribers.append(sub)
        return sub

    def publish(self, topic: str, payload: bytes | str, retain: bool = False, qos: int = 1) -> None:
        """Publish one message as a separate client and wait for the broker's ack."""
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-pub-{uuid.uuid4().hex[:8]}"
        )
        self.configure_client(client)
        client.connect(HOST, self.port, keepalive=10)
        client.loop_start()
        try:
            info = client.publish(topic, payload, qos=qos, retain=retain)
            info.wait_for_publish(timeout=10)
            assert info.is_published(), f"publish to {topic} on {self} was not acknowledged"
        finally:
            client.disconnect()
            client.loop_stop()

    def mqtt_settings(self, **overrides: Any) -> dict[str, Any]:
        """An ``mqtt:`` config mapping (for ``MqttConfig(**...)``) that reaches this broker."""
        settings: dict[str, Any] = {"host": HOST, "port": self.port, "keepalive_s": 5}
        if self.auth:
            settings |= {"username": USERNAME, "password": PASSWORD}
        if self.tls:
            tls: dict[str, Any] = {"ca_file": str(self.tls.ca_file)}
            if self.require_certificate:
                tls |= {
                    "cert_file": str(self.tls.client_cert),
                    "key_file": str(self.tls.client_key),
                }
            settings["tls"] = tls
        settings.update(overrides)
        return settings

    def close(self) -> None:
        for sub in list(self.subscribers):
            sub.close()
        self.stop()


def _need_mosquitto() -> None:
    if _mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (run tests/install-servers.sh)")


@pytest.fixture(scope="session")
def mqtt_tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    return make_tls_files(tmp_path_factory.mktemp("mqtt-tls"))


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One anonymous broker shared by the session. Never stop it in a test."""
    _need_mosquitto()
    broker = Broker(tmp_path_factory.mktemp("mosquitto"), free_port())
    broker.start()
    yield broker
    broker.close()


@pytest.fixture
def mosquitto_factory(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Broker]]:
    """Private brokers for one test: ``factory(auth=False, tls=False, require_certificate=False)``."""
    _need_mosquitto()
    brokers: list[Broker] = []

    def factory(auth: bool = False, tls: bool = False, require_certificate: bool = False) -> Broker:
        files = request.getfixturevalue("mqtt_tls_files") if tls else None
        broker = Broker(
            tmp_path_factory.mktemp("mosquitto"),
            free_port(),
            auth=auth,
            tls=files,
            require_certificate=require_certificate,
        )
        brokers.append(broker)
        broker.start()
        return broker

    yield factory
    for broker in brokers:
        broker.close()


@pytest.fixture
def unique_prefix() -> str:
    """A topic prefix no other test uses (the session broker keeps retained messages)."""
    return f"pwtest_{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- notifier + storage faults


@pytest.fixture
def notifier_factory(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``factory(broker, prefix, storage_dir=None, printers=("ender3",), dispatcher=None, start=True,
    keep_incidents=100, notify=(), without_api=(), notify_backoff=(0.3, 2.0), **mqtt_overrides)`` → a started ``watchdog.comms.notifier.Notifier``
    (stopped at teardown) with short keepalive, reconnect and notification backoff delays.
    ``broker=None`` disables MQTT; ``dispatcher`` receives the ``Command`` of each command message."""
    from watchdog.comms.notifier import Notifier
    from watchdog.config import MqttConfig, StorageConfig

    made: list[Notifier] = []

    def factory(
        broker: Broker | None,
        prefix: str,
        storage_dir: Path | None = None,
        printers: tuple[str, ...] = ("ender3",),
        dispatcher: Any = None,
        start: bool = True,
        keep_incidents: int = 100,
        notify: tuple[Any, ...] = (),
        without_api: tuple[str, ...] = (),
        notify_backoff: tuple[float, float] = (0.3, 2.0),
        **overrides: Any,
    ) -> Notifier:
        settings: dict[str, Any] = {}
        if broker is not None:
            settings = broker.mqtt_settings(
                topic_prefix=prefix,
                client_id=f"watchdog-{uuid.uuid4().hex[:8]}",
                homeassistant={"discovery_prefix": f"{prefix}_ha"},
            )
        settings.update(overrides)
        notifier = Notifier(
            MqttConfig(**settings),
            StorageConfig(dir=storage_dir or tmp_path / "storage", keep_incidents=keep_incidents),
            list(printers),
            dispatcher,
            notify=notify,
            reconnect_delay=(1, 5),
            notify_backoff=notify_backoff,
            without_api=without_api,
        )
        made.append(notifier)
        if start:
            notifier.start()
        return notifier

    yield factory
    for notifier in made:
        notifier.stop()


def _mount_tmpfs(path: Path, options: str) -> bool:
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, timeout=30
    )
    return result.returncode == 0


@pytest.fixture
def readonly_storage(tmp_path: Path) -> Iterator[Path]:
    """A storage folder on a read-only file system (a real ro tmpfs as root, else chmod 500)."""
    path = tmp_path / "readonly"
    path.mkdir()
    if os.geteuid() == 0:
        if not _mount_tmpfs(path, "ro,size=1m"):
            pytest.skip("cannot mount a read-only tmpfs here")
        yield path
        subprocess.run(["umount", str(path)], capture_output=True, timeout=30)
    else:
        path.chmod(0o500)
        yield path
        path.chmod(0o700)


@pytest.fixture
def full_storage(tmp_path: Path) -> Iterator[Path]:
    """A storage folder on a file system with no space left (a small tmpfs, filled up)."""
    if os.geteuid() != 0:
        pytest.skip("filling a file system needs a tmpfs mount (root)")
    path = tmp_path / "full"
    path.mkdir()
    if not _mount_tmpfs(path, "size=256k"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        with open(path / "filler", "wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    yield path
    subprocess.run(["umount", str(path)], capture_output=True, timeout=30)
