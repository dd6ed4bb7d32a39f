"""A hostile message on a command topic never gets read into the daemon's memory.

With a real mosquitto: the daemon's MQTT side tells the broker its Maximum Packet Size, so a
20 MB command (live or retained) never reaches it; peak RSS is measured by the benchmark's
own code (benchmarks/mqtt_payload.py runs the 100 MB version and a plain paho client as the
baseline). With a broker that ignores the limit (a raw socket speaking just enough MQTT 5),
the client closes the connection as soon as the packet's announced length is over the limit,
before reading its payload, and says so. A topic that is not text is dropped without ending
the client's network thread.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable

import pytest

from benchmarks.mqtt_payload import measure
from tests.daemon_helpers import no_threads_named
from watchdog.comms.command_queue import PrinterCommands
from watchdog.comms.transport import MAX_INCOMING_BYTES, MqttTransport
from watchdog.config import MqttConfig
from watchdog.control import Command, CommandResult, Verb

pytestmark = pytest.mark.servers


def test_a_20_mb_command_does_not_grow_the_daemons_memory(mosquitto) -> None:
    results = measure(20, kinds=("daemon",))["clients"]["daemon"]
    for scenario in ("live", "retained"):
        row = results[scenario]
        assert row["alive"], f"{scenario}: the daemon stopped handling commands"
        assert row["growth_mb"] < 5, (
            f"{scenario}: peak RSS grew by {row['growth_mb']} MB for a 20 MB message"
        )


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _read_packet(conn: socket.socket) -> int:
    header = conn.recv(1)
    if not header:
        raise ConnectionError
    length, mult = 0, 1
    while True:
        byte = conn.recv(1)[0]
        length += (byte & 127) * mult
        mult *= 128
        if not byte & 128:
            break
    while length:
        length -= len(conn.recv(min(length, 65536)))
    return header[0] >> 4


class HostileBroker:
    """Accepts MQTT 5 connections and announces a 100 MB PUBLISH to every one of them (or
    sends them ``packets``)."""

    def __init__(self, packets: tuple[bytes, ...] = ()) -> None:
        self.packets = packets or (
            bytes([0x30]) + _varint(100 * 1024 * 1024) + b"\x00\x05a/b/c" + b"X" * 4096,
        )
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.closed_by_client = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()

    def _client(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                assert _read_packet(conn) == 1  # CONNECT
                self.connections += 1
                conn.sendall(
                    bytes([0x20, 0x03, 0x00, 0x00, 0x00])
                )  # CONNACK, success, no properties
                for packet in self.packets:
                    conn.sendall(packet)
            except (OSError, AssertionError, IndexError):
                return
            try:
                while conn.recv(
                    65536
                ):  # whatever it sends (PUBLISH online, SUBSCRIBE) until it hangs up
                    pass
            except TimeoutError:
                return  # it kept listening: not refused
            except OSError:
                pass  # a reset: it closed with our bytes unread
            self.closed_by_client += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_a_broker_ignoring_the_limit_cannot_make_the_client_read_a_huge_packet(caplog) -> None:
    caplog.set_level(logging.WARNING, "watchdog.comms.transport")
    broker = HostileBroker()
    transport = MqttTransport(
        MqttConfig(host="127.0.0.1", port=broker.port, client_id="limit-test"),
        on_message=lambda m: pytest.fail("a 100 MB message was handed over"),
        on_ack=lambda mid, refused: None,
        on_connected=lambda: None,
        subscriptions=lambda: ["p/+/enabled/set"],
        reconnect_delay=(0.2, 0.5),
    )
    try:
        transport.start(transport.make_client())
        deadline = time.monotonic() + 20
        while broker.closed_by_client < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert broker.closed_by_client >= 2, "the client neither refused the packet nor reconnected"
    finally:
        transport.stop(timeout=1)
        broker.close()
    lines = [r.getMessage() for r in caplog.records if "sent a packet of" in r.getMessage()]
    assert lines, [r.getMessage() for r in caplog.records]
    assert (
        "a packet of 104857600 bytes" in lines[0]
        and f"(limit {MAX_INCOMING_BYTES})" in lines[0]
        and "not read" in lines[0]
    )
    assert len(lines) == 1, "a broker doing it again and again is reported once a minute"


def _publish(topic: bytes, payload: bytes) -> bytes:
    """An MQTT 5 PUBLISH at QoS 0, no properties."""
    body = len(topic).to_bytes(2, "big") + topic + b"\x00" + payload
    return bytes([0x30]) + _varint(len(body)) + body


def test_a_topic_that_is_not_text_is_refused_and_later_commands_still_work(
    tmp_path, caplog
) -> None:
    """A broker other than mosquitto may pass on a topic that is not UTF-8: it is logged and
    dropped, and the command after it (Home Assistant's switch) is still carried out."""
    from watchdog.comms.mqtt import MqttCommunicator
    from watchdog.comms.outbox import Outbox

    caplog.set_level(logging.INFO, "watchdog.comms")
    broker = HostileBroker(
        (
            _publish(b"p/\xff\xfe/enabled/set", b"OFF"),
            _publish(b"p/e3/enabled/set", b"OFF"),
        )
    )
    seen: list[Command] = []

    class Recorder:
        def dispatch(self, command: Command) -> CommandResult:
            seen.append(command)
            return CommandResult(True, "ok")

    cfg = MqttConfig(
        host="127.0.0.1", port=broker.port, topic_prefix="p", homeassistant={"enabled": False}
    )
    mqtt = MqttCommunicator(cfg, ["e3"], Outbox(tmp_path / "outbox"), Recorder())
    try:
        mqtt.start()
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        mqtt.stop()
        broker.close()
    assert [(c.printer, c.verb.value) for c in seen] == [("e3", "disable")]
    assert "Traceback" not in caplog.text


def _commands_through(tmp_path, publishes: tuple[bytes, ...], dispatch, answered=None) -> None:
    """Run an MQTT side with ``dispatch`` as its dispatcher until ``dispatch`` returns True
    from its ``done`` method (10 s at most); ``answered`` is told each answer it publishes."""
    from watchdog.comms.mqtt import MqttCommunicator
    from watchdog.comms.outbox import Outbox

    broker = HostileBroker(publishes)
    cfg = MqttConfig(
        host="127.0.0.1", port=broker.port, topic_prefix="p", homeassistant={"enabled": False}
    )
    mqtt = MqttCommunicator(
        cfg, ["dead", "e3"], Outbox(tmp_path / "outbox"), dispatch, answered=answered
    )
    try:
        mqtt.start()
        deadline = time.monotonic() + 10
        while not dispatch.done() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        mqtt.stop()
        broker.close()


def test_a_printer_whose_api_does_not_answer_does_not_hold_another_printers_commands(
    tmp_path,
) -> None:
    """Commands waited one behind the other for every printer: a pause of a printer whose API
    did not answer (up to a minute with the default timeouts) held another printer's pause
    as long. Each printer's commands go in order, printers side by side."""

    release, dead_answered = threading.Event(), threading.Event()

    class DeadFirst:
        def __init__(self) -> None:
            self.seen: list[tuple[str, str, bool]] = []

        def dispatch(self, command: Command) -> CommandResult:
            self.seen.append((command.printer, command.verb.value, dead_answered.is_set()))
            if command.printer == "dead":
                release.wait(8)  # its API timing out
                dead_answered.set()
            return CommandResult(True, "ok")

        def done(self) -> bool:
            if any(p == "e3" for p, _, _ in self.seen):
                release.set()
                return True
            return False

    dispatcher = DeadFirst()
    _commands_through(
        tmp_path,
        (_publish(b"p/dead/command", b"pause"), _publish(b"p/e3/command", b"pause")),
        dispatcher,
    )
    # e3's pause was carried out while the dead printer's was still waiting for its API
    assert ("e3", "pause", False) in dispatcher.seen, dispatcher.seen


def test_a_command_that_waited_too_long_behind_its_printers_earlier_one_is_not_carried_out(
    tmp_path, caplog, monkeypatch
) -> None:
    """A printer's commands go one at a time: a cancel queued behind a pause its API took
    minutes over would stop whatever prints by then. It is dropped and said, to Home Assistant
    and to the page (which learns MQTT's answers where they are published)."""
    from watchdog.comms import command_queue

    monkeypatch.setattr(command_queue, "COMMAND_FRESH_S", 0.5)
    caplog.set_level(logging.INFO, "watchdog.comms")

    class Slow:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def dispatch(self, command: Command) -> CommandResult:
            self.seen.append(command.verb.value)
            time.sleep(1.5)  # its API timing out
            return CommandResult(True, "ok")

        def done(self) -> bool:
            return "not carried out" in caplog.text

    dispatcher = Slow()
    told: list[tuple[str, str]] = []
    _commands_through(
        tmp_path,
        (_publish(b"p/dead/command", b"pause"), _publish(b"p/dead/command", b"cancel")),
        dispatcher,
        answered=lambda command, result: told.append((command.verb.value, result.detail)),
    )
    assert dispatcher.seen == ["pause"]
    assert "dead: MQTT command cancel not carried out: it waited" in caplog.text, caplog.text
    assert [verb for verb, _ in told] == ["pause", "cancel"], told
    assert told[1][1].startswith("not carried out: it waited"), told


def test_a_flood_of_watching_switches_ends_as_its_last_word_says(caplog) -> None:
    """ON and OFF sent faster than a printer takes them (a flapping automation): the queue
    filled, its newest were refused, and the printer was left off though the last word was
    on. A switch waiting is replaced by the newer one; other commands keep their turn. The
    log, which said each one taken, says which were dropped."""
    caplog.set_level(logging.INFO, "watchdog.comms.command_queue")
    from watchdog.comms.command_queue import COMMANDS_WAITING, PrinterCommands

    release = threading.Event()
    seen: list[Verb] = []

    def dispatch(command: Command) -> CommandResult:
        seen.append(command.verb)
        if len(seen) == 1:
            release.wait(10)  # the first one holds the printer while the flood comes
        return CommandResult(True, "ok")

    commands = PrinterCommands(dispatch)
    assert commands.put(Command("e3", Verb.PAUSE))
    flood = [Verb.DISABLE, Verb.ENABLE] * (2 * COMMANDS_WAITING)
    taken = [commands.put(Command("e3", verb)) for verb in flood]
    assert commands.put(Command("e3", Verb.RESUME))
    release.set()
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    commands.close(5)
    assert all(taken), "a switch was refused"
    assert seen == [Verb.PAUSE, Verb.ENABLE, Verb.RESUME]
    # said, once: a line per message let a flood fill the journal
    dropped = re.findall(r"e3: MQTT command (\w+) dropped before it was carried out", caplog.text)
    assert dropped == ["disable"], dropped


class _Seen:
    """A dispatcher for ``_commands_through``: carries out every command at once, keeping
    them; done when ``over`` says so of those seen."""

    def __init__(self, over: Callable[[list[Command]], bool]) -> None:
        self.seen: list[Command] = []
        self._over = over

    def dispatch(self, command: Command) -> CommandResult:
        self.seen.append(command)
        return CommandResult(True, f"{command.verb.value} done")

    def done(self) -> bool:
        return self._over(self.seen)


def test_a_flood_of_commands_taken_is_a_few_log_lines_not_one_each(tmp_path, caplog) -> None:
    """A hundred ON and OFF pairs published as fast as a client can (a flapping automation,
    anyone allowed to publish): each one taken was a log line and each one replaced another,
    some 400 lines, where a flood refused or malformed is one a minute. What is carried out
    still logs its end."""

    caplog.set_level(logging.INFO, "watchdog.comms")
    flood = tuple(
        _publish(b"p/e3/enabled/set", word) for _ in range(100) for word in (b"OFF", b"ON")
    )
    # a command that is not a switch queues behind the flood's last word: the flood is over
    # when it is carried out (a switch seen last may be one from the flood's middle)
    end = (_publish(b"p/e3/command", b"resume"),)

    last = _Seen(lambda seen: bool(seen) and seen[-1].verb.value == "resume")
    _commands_through(tmp_path, flood + end, last)
    switches = [c.verb.value for c in last.seen if c.verb.value != "resume"]
    assert last.done() and switches[-1] == "enable", switches[-3:]
    lines = [r for r in caplog.records if "MQTT command" in r.getMessage()]
    assert len(lines) <= 5, [r.getMessage() for r in lines]


def test_a_flood_of_one_command_is_carried_out_a_minutes_worth_at_most(tmp_path, caplog) -> None:
    """400 verdicts published as fast as a client can (a looping automation, anyone allowed
    to publish): each was carried out, a log line or two and a synced write of the kept
    answers each, hundreds a second, until the journal dropped the daemon's own lines. A
    printer's commands of one kind are taken COMMANDS_PER_MINUTE a minute; the rest are
    refused, said once; another printer's still pass."""
    from watchdog.comms.command_queue import COMMANDS_PER_MINUTE

    caplog.set_level(logging.INFO, "watchdog.comms")
    verdict = b'{"incident": "20260101T000000000Z-abcdef", "verdict": "not_failure"}'
    flood = tuple(_publish(b"p/e3/feedback", verdict) for _ in range(400))
    end = (_publish(b"p/dead/command", b"resume"),)

    told: list[str] = []
    counted = _Seen(lambda seen: any(c.printer == "dead" for c in seen))
    _commands_through(
        tmp_path, flood + end, counted, answered=lambda command, result: told.append(result.detail)
    )
    verdicts = [c for c in counted.seen if c.verb is Verb.NOT_A_FAILURE]
    assert counted.done() and len(verdicts) <= COMMANDS_PER_MINUTE, len(verdicts)
    # refused as too many, or while the queue was full: one answer, one line, a minute
    refused = [t for t in told if t.startswith("ignored:")]
    assert len(refused) == 1, refused
    said = [r.getMessage() for r in caplog.records if "e3: MQTT command" in r.getMessage()]
    assert len(said) <= 3, said


def _counting_commands() -> tuple[PrinterCommands, threading.Semaphore]:
    """Per-printer queues whose commands are carried out at once, each released on ``done``."""
    done = threading.Semaphore(0)

    def dispatch(command: Command) -> CommandResult:
        done.release()
        return CommandResult(True, "ok")

    return PrinterCommands(dispatch), done


def test_a_printers_commands_of_one_kind_are_taken_a_minutes_worth_at_most() -> None:
    """Each carried out before the next comes (no queue filling): the 61st of one kind in a
    minute is refused, another kind still taken (a flood of verdicts must not hold back the
    owner's Pause), and another printer's."""
    from watchdog.comms.command_queue import COMMANDS_PER_MINUTE, Put

    commands, done = _counting_commands()

    def taken(command: Command) -> Put:
        put = commands.put(command)
        if put:
            assert done.acquire(timeout=10), "not carried out"
        return put

    verdict = Command("e3", Verb.NOT_A_FAILURE, "20260101T000000000Z-abcdef")
    assert all(taken(verdict) for _ in range(COMMANDS_PER_MINUTE))
    assert taken(verdict) is Put.TOO_MANY
    assert taken(Command("e3", Verb.PAUSE))
    assert taken(Command("dead", Verb.NOT_A_FAILURE, "20260101T000000000Z-abcdef"))
    commands.close(5)


def test_a_command_no_thread_could_carry_out_is_not_counted_against_its_kind() -> None:
    """No thread to be had for a moment (the unit's task limit, forced here: it cannot be
    reached on purpose): each command refused then still counted towards its kind's minute,
    so the owner's Pause sent once threads were free again was refused as too many."""
    from watchdog.comms.command_queue import COMMANDS_PER_MINUTE, Put

    commands, done = _counting_commands()
    pause = Command("e3", Verb.PAUSE)
    with no_threads_named("mqtt-commands"):
        refused = {commands.put(pause) for _ in range(COMMANDS_PER_MINUTE)}
    assert refused == {Put.NOT_NOW}, refused
    assert commands.put(pause) and done.acquire(timeout=10)
    commands.close(5)


def test_a_topic_cannot_forge_a_log_line(tmp_path) -> None:
    """Anyone who may publish under the prefix chose a topic level holding a newline and a
    made-up log line: the journal showed a second, fake ERROR line. Each record is one line."""
    import io

    from watchdog import redact
    from watchdog.comms.mqtt import MqttCommunicator
    from watchdog.comms.outbox import Outbox

    fake = "2030-01-01 00:00:00,000 ERROR watchdog.daemon: e3: printer API offline: FAKE"
    broker = HostileBroker((_publish(f"p/x\n{fake}/enabled/set".encode(), b"OFF"),))
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    redact.install([handler])
    log = logging.getLogger("watchdog")
    log.addHandler(handler)
    level, log.level = log.level, logging.INFO
    cfg = MqttConfig(
        host="127.0.0.1", port=broker.port, topic_prefix="p", homeassistant={"enabled": False}
    )
    mqtt = MqttCommunicator(cfg, ["e3"], Outbox(tmp_path / "outbox"), None)
    try:
        mqtt.start()
        deadline = time.monotonic() + 10
        while "ignored MQTT message" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        mqtt.stop()
        broker.close()
        log.removeHandler(handler)
        log.level = level
    lines = out.getvalue().splitlines()
    [ignored] = [x for x in lines if "ignored MQTT message" in x]
    assert "\\n2030-01-01" in ignored, ignored
    assert not any(x.startswith("2030-01-01") for x in lines), lines


def test_a_session_set_up_that_fails_does_not_end_the_mqtt_thread(mosquitto, caplog) -> None:
    """Raised in paho's connect callback (a subscription paho refuses, a bug in what the
    daemon sends on connect), an error ended paho's network thread for good: the log said
    "retrying" and nothing ever did, every alert queued until a restart. Now it is logged, and
    the connection lives on: messages still go out and the client reconnects."""
    caplog.set_level(logging.ERROR, "watchdog.comms.transport")
    connects: list[int] = []

    def on_connected() -> None:
        connects.append(1)
        raise ValueError("Invalid subscription filter.")

    transport = MqttTransport(
        MqttConfig(host="127.0.0.1", port=mosquitto.port, client_id="setup-fails"),
        on_message=lambda m: None,
        on_ack=lambda mid, refused: None,
        on_connected=on_connected,
        subscriptions=lambda: [],
        reconnect_delay=(0.2, 0.5),
    )
    with mosquitto.subscriber("setup-fails-test/#") as sub:
        try:
            transport.start(transport.make_client())
            deadline = time.monotonic() + 20
            while not connects and time.monotonic() < deadline:
                time.sleep(0.05)
            assert connects, "never connected"
            time.sleep(0.5)
            assert transport.connected and transport.client._thread.is_alive()
            transport.publish("setup-fails-test/x", "still here", qos=1)
            sub.wait_for("setup-fails-test/x", timeout=10)
        finally:
            transport.stop(timeout=1)
    assert any("setting up the session" in r.getMessage() for r in caplog.records)


def test_a_password_without_a_user_is_said_not_sent(caplog) -> None:
    """MQTT sends a password only with a user name: one set alone was dropped without a word
    (a broker that needs it then refused every connection). It is said, without the password."""
    caplog.set_level(logging.WARNING, "watchdog.comms.transport")
    transport = MqttTransport(
        MqttConfig(host="127.0.0.1", password="s3cret-pw"),
        on_message=lambda m: None,
        on_ack=lambda mid, refused: None,
        on_connected=lambda: None,
        subscriptions=lambda: [],
    )
    transport.make_client()
    said = [r.getMessage() for r in caplog.records]
    assert any("mqtt.password is set without mqtt.username" in m for m in said), said
    assert not any("s3cret-pw" in m for m in said)


@pytest.mark.parametrize("acks", [(2, 1), (1, 2)], ids=["stale-lands-last", "in-order"])
def test_a_retained_value_resent_after_a_reconnect_behind_a_newer_one_is_corrected(
    tmp_path, acks: tuple[int, int]
) -> None:
    """A lost connection left "OFF" in flight; the owner switched watching on again meanwhile;
    the connect sent "ON", and paho then sent "OFF" again, which the broker keeps: the switch
    showed OFF for good (the daemon sends only changes). The order of the PUBACKs tells it:
    the latest value is sent again. Driven on the bookkeeping with a recording transport (a
    half-open link cannot be made on demand)."""
    from types import SimpleNamespace

    from watchdog.comms.mqtt import MqttCommunicator
    from watchdog.comms.outbox import Outbox

    comm = MqttCommunicator(MqttConfig(host="127.0.0.1"), ["ender3"], Outbox(tmp_path))
    sent: list[tuple[str, bytes]] = []

    def publish(topic: str, payload: bytes, retain: bool = False, qos: int = 1):
        sent.append((topic, payload))
        return SimpleNamespace(mid=len(sent))

    comm.transport.publish = publish  # type: ignore[method-assign]
    topic = f"{comm.prefix}/ender3/enabled"
    for value in (b"OFF", b"ON"):  # mid 1 ("OFF", in flight when the link died), then 2
        comm._retained[topic] = value
        comm._publish(topic, value, retain=True)
    for mid in acks:
        comm._on_ack(mid)
    if acks == (2, 1):
        assert sent[2:] == [(topic, b"ON")]
        comm._on_ack(3)
    assert len(sent) == (3 if acks == (2, 1) else 2) and not comm._unacked_retained


def test_a_flood_of_retained_commands_queues_a_bounded_number_of_clears(
    mosquitto, unique_prefix, notifier_factory, monkeypatch
) -> None:
    """Thousands of retained commands (found at the connection, or published faster than the
    broker acknowledges): a clear each was queued in the MQTT client, its memory grown by
    120 MB for good and every alert behind them by seconds. At most MAX_CLEARS_IN_FLIGHT are
    on their way at once (8 here, for 80 commands); the others wait, their topics only, and
    are cleared as those land: all of them at the first connection."""
    import paho.mqtt.client as mqtt

    from watchdog.comms import mqtt as watchdog_mqtt

    limit, n = 8, 80
    monkeypatch.setattr(watchdog_mqtt, "MAX_CLEARS_IN_FLIGHT", limit)
    p = unique_prefix
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    mosquitto.configure_client(publisher)
    publisher.connect("127.0.0.1", mosquitto.port)
    publisher.loop_start()
    try:
        sent = [
            publisher.publish(f"{p}/x{k}/command", "pause", qos=1, retain=True) for k in range(n)
        ]
        sent[-1].wait_for_publish(30)
    finally:
        publisher.disconnect()
        publisher.loop_stop()

    def retained_left() -> int:
        with mosquitto.subscriber(f"{p}/+/command", f"{p}/tick") as late:
            mosquitto.publish(f"{p}/tick", "x")
            late.wait_for(f"{p}/tick", timeout=30)
            return len([m for m in late.received(f"{p}/+/command") if m.retain and m.payload])

    notifier = notifier_factory(mosquitto, p, start=False)
    peak = 0

    def connected_and_settled() -> None:
        nonlocal peak
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not notifier.connected:
            time.sleep(0.001)
        client = notifier.mqtt.transport.client
        quiet_since = time.monotonic()
        while client is not None and time.monotonic() - quiet_since < 0.5:
            queued = len(client._out_messages)
            peak = max(peak, queued)
            quiet_since = time.monotonic() if queued else quiet_since
            time.sleep(0.0005)

    notifier.start()
    connected_and_settled()
    assert retained_left() == 0
    assert peak <= limit + 30, peak  # the clears, and Home Assistant's entities beside them
