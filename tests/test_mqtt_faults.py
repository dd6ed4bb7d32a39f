"""Broker faults: down when alerts fire, daemon restarts, new port, wrong password, TLS that
does not verify, unwritable storage. Every alert raised is delivered, and exactly once."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.servers

PRINTER = "ender3"


def jpeg(seed: int = 0) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def raise_alerts(notifier, n: int) -> list[str]:
    return [
        notifier.raise_alert(
            PRINTER,
            {
                "score": 0.9 + i / 100,
                "threshold": 0.5,
                "consecutive": 3,
                "action": "pause",
                "action_result": {"outcome": "done"},
            },
            jpeg(i),
            jpeg(i),
        )
        for i in range(n)
    ]


def pending_markers(storage: Path) -> list[str]:
    """Alerts in the MQTT outbox (written before publishing, removed on the broker's PUBACK)."""
    return sorted(p.parent.name for p in (storage / "outbox" / "mqtt").glob("*/entry.json"))


def assert_delivered_exactly(sub, notifier, prefix: str, ids: list[str]) -> None:
    """All ``ids`` arrived once: wait for them, then for a later marker message from the same
    client (MQTT keeps one client's order), so a duplicate would already be there."""
    alerts = sub.wait_count(f"{prefix}/{PRINTER}/alert", len(ids), timeout=20)
    assert notifier.flush(10), "the broker never acknowledged every alert"
    notifier.publish_score(PRINTER, 123.0)
    sub.wait_for(f"{prefix}/{PRINTER}/score", lambda m: m.text == "123", timeout=10)
    got = [m.json()["incident"] for m in sub.received(f"{prefix}/{PRINTER}/alert")]
    assert sorted(got) == sorted(ids), f"delivered {got}, raised {ids}"
    assert len(alerts) == len(ids)


def wait_connected(notifier, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not notifier.connected:
        assert time.monotonic() < deadline, "the notifier did not connect"
        time.sleep(0.05)


def wait_log(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in caplog.records:
            if text in record.getMessage():
                return record.getMessage()
        time.sleep(0.05)
    raise AssertionError(
        f"no log line with {text!r}; got {[r.getMessage() for r in caplog.records]}"
    )


def test_broker_down_when_alerts_fire_then_back(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path
) -> None:
    broker = mosquitto_factory()
    p = unique_prefix
    with broker.subscriber(f"{p}/#") as sub:
        notifier = notifier_factory(broker, p, storage_dir=tmp_path)
        sub.wait_for(f"{p}/available/+", lambda m: m.text == "online")
        broker.stop()
        ids = raise_alerts(notifier, 3)  # never blocks while the broker is away
        assert pending_markers(tmp_path) == sorted(ids)
        assert notifier.undelivered() == 3
        broker.start()
        assert_delivered_exactly(sub, notifier, p, ids)
        assert pending_markers(tmp_path) == []

        broker.restart()  # and down again after delivery: nothing is sent twice
        wait_connected(notifier)
        notifier.publish_score(PRINTER, 9.0)
        sub.wait_for(f"{p}/{PRINTER}/score", lambda m: m.text == "9")
        # the watchdog's own sends: the broker may send this subscriber again what it had
        # not seen acknowledged when it restarted (a busy machine), flagged as such
        sent = [m for m in sub.received(f"{p}/{PRINTER}/alert") if not m.dup]
        assert len(sent) == 3, sub.received(f"{p}/{PRINTER}/alert")


def test_broker_dies_with_the_alert_in_flight(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path
) -> None:
    broker = mosquitto_factory()
    p = unique_prefix
    with broker.subscriber(f"{p}/#") as sub:
        broker.restart()  # the broker's saved state now holds the subscriber's session
        notifier = notifier_factory(broker, p, storage_dir=tmp_path)
        wait_connected(notifier)
        broker.process.send_signal(signal.SIGSTOP)  # frozen: the alert is sent, no PUBACK comes
        try:
            ids = raise_alerts(notifier, 1)
            assert notifier.undelivered() == 1
        finally:
            broker.process.send_signal(signal.SIGKILL)
            broker.process.wait(10)
        assert pending_markers(tmp_path) == ids
        broker.start()
        assert_delivered_exactly(sub, notifier, p, ids)
        assert pending_markers(tmp_path) == []


def test_an_alert_in_flight_when_the_broker_went_is_not_sent_past_its_age(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path, caplog
) -> None:
    """An alert sent as the broker froze waits, unacknowledged, in the MQTT client, which
    sends it again at the reconnection: after a broker away for a weekend, a Home Assistant
    automation acted on it as news, days after the print. Past ``mqtt.alert_max_age_h`` it is
    dropped and said, as an alert that waited unsent is; the next one still goes out."""
    broker = mosquitto_factory()
    p = unique_prefix
    with broker.subscriber(f"{p}/#") as sub:
        broker.restart()  # the broker's saved state now holds the subscriber's session
        notifier = notifier_factory(broker, p, storage_dir=tmp_path, alert_max_age_h=2 / 3600)
        wait_connected(notifier)
        broker.process.send_signal(signal.SIGSTOP)  # frozen: the alert is sent, no PUBACK comes
        try:
            [late] = raise_alerts(notifier, 1)
            assert notifier.undelivered() == 1
        finally:
            broker.process.send_signal(signal.SIGKILL)
            broker.process.wait(10)
        time.sleep(2.5)
        with caplog.at_level(logging.WARNING):
            broker.start()
            wait_connected(notifier)
            wait_log(caplog, f"dropped alert {late}")
        assert pending_markers(tmp_path) == [] and notifier.undelivered() == 0
        [fresh] = raise_alerts(notifier, 1)
        assert notifier.flush(10)
        sub.wait_for(f"{p}/{PRINTER}/alert", lambda m: m.json()["incident"] == fresh)
        got = [m.json()["incident"] for m in sub.received(f"{p}/{PRINTER}/alert")]
        assert late not in got, got


@pytest.mark.parametrize(
    "record",
    [
        "[" * 200_000,  # nested beyond what Python's parser takes
        '{"topic_prefix": "printer_watchdog", "discovery_prefix": "homeassistant", '
        '"printers": ["a#b"], "discovery": false}',  # a wildcard in a printer's name
    ],
    ids=["nested", "wildcard"],
)
def test_a_damaged_record_of_the_printers_announced_holds_back_no_alert(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path, record: str, caplog
) -> None:
    """The record of the printers announced at the last connection, damaged: every
    connection's setup failed on it, the alerts waiting for the broker were never sent (until
    too old), and Home Assistant was sent no entities. A record that cannot be read is kept
    aside, and the owner told what it may leave behind in Home Assistant."""
    broker = mosquitto_factory()
    p = unique_prefix
    with broker.subscriber(f"{p}/#", f"{p}_ha/#") as sub:
        broker.stop()
        notifier = notifier_factory(broker, p, storage_dir=tmp_path)
        ids = raise_alerts(notifier, 1)
        (tmp_path / "mqtt-printers.json").write_text(record)
        broker.start()
        assert_delivered_exactly(sub, notifier, p, ids)
        sub.wait_for(f"{p}_ha/binary_sensor/+/problem/config", lambda m: bool(m.payload))
    if record.startswith("["):
        [kept] = tmp_path.glob("mqtt-printers.json.unreadable-*")
        assert kept.read_text() == record
        said = [r.getMessage() for r in caplog.records if "mqtt-printers.json" in r.getMessage()]
        assert any("delete its device there by hand" in line for line in said), said


def test_broker_down_at_start_does_not_block(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path
) -> None:
    broker = mosquitto_factory()
    p = unique_prefix
    with broker.subscriber(f"{p}/#") as sub:
        broker.stop()
        notifier = notifier_factory(broker, p, storage_dir=tmp_path)
        assert not notifier.connected
        ids = raise_alerts(notifier, 2)
        broker.start()
        assert_delivered_exactly(sub, notifier, p, ids)


def test_alerts_survive_a_daemon_restart_and_a_new_broker_port(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path
) -> None:
    broker = mosquitto_factory()
    p = unique_prefix
    with broker.subscriber(f"{p}/#") as sub:
        first = notifier_factory(broker, p, storage_dir=tmp_path)
        sub.wait_for(f"{p}/available/+", lambda m: m.text == "online")
        broker.stop()
        ids = raise_alerts(first, 4)
        first.stop()  # the daemon exits with the alerts undelivered
        assert pending_markers(tmp_path) == sorted(ids)

        broker.restart(new_port=True)  # the user moved the broker; the new config has the port
        second = notifier_factory(broker, p, storage_dir=tmp_path)
        assert_delivered_exactly(sub, second, p, ids)
        assert pending_markers(tmp_path) == []
        second.stop()

        third = notifier_factory(broker, p, storage_dir=tmp_path)  # nothing left to resend
        assert third.undelivered() == 0
        wait_connected(third)
        third.publish_score(PRINTER, 7.0)
        sub.wait_for(f"{p}/{PRINTER}/score", lambda m: m.text == "7")
        assert len(sub.received(f"{p}/{PRINTER}/alert")) == 4


def test_wrong_password_is_logged_clearly_and_nothing_crashes(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path, caplog
) -> None:
    broker = mosquitto_factory(auth=True)
    caplog.set_level(logging.INFO, "watchdog")
    notifier = notifier_factory(
        broker, unique_prefix, storage_dir=tmp_path, password="not-the-password"
    )
    line = wait_log(caplog, "refused the connection")
    assert "check mqtt.username and mqtt.password" in line and f"127.0.0.1:{broker.port}" in line
    [incident] = raise_alerts(notifier, 1)
    assert not notifier.connected
    assert pending_markers(tmp_path) == [incident]
    notifier.stop()
    assert "not-the-password" not in caplog.text
    assert len([r for r in caplog.records if "refused the connection" in r.getMessage()]) == 1


def test_right_password_delivers(mosquitto_factory, unique_prefix, notifier_factory) -> None:
    broker = mosquitto_factory(auth=True)
    p = unique_prefix
    with broker.subscriber(f"{p}/#") as sub:
        notifier = notifier_factory(broker, p)
        assert_delivered_exactly(sub, notifier, p, raise_alerts(notifier, 1))


@pytest.mark.parametrize("client_cert", [False, True], ids=["server-cert", "client-cert-required"])
def test_tls_with_the_ca_works(
    mosquitto_factory, unique_prefix, notifier_factory, client_cert: bool
) -> None:
    broker = mosquitto_factory(tls=True, require_certificate=client_cert)
    p = unique_prefix
    with broker.subscriber(f"{p}/#") as sub:
        notifier = notifier_factory(broker, p)
        notifier.publish_heatmap(PRINTER, jpeg(5))
        assert_delivered_exactly(sub, notifier, p, raise_alerts(notifier, 2))
        assert notifier.connected


def test_a_broker_not_found_or_not_listening_is_said_in_plain_words(
    mosquitto_factory, unique_prefix, notifier_factory, caplog
) -> None:
    """ "[Errno -2] Name or service not known" and "[Errno 111] Connection refused" were the
    library's words for a mistyped host name and a broker not running."""
    from tests.daemon_helpers import free_port

    caplog.set_level(logging.WARNING, "watchdog")
    for host, port, said in (
        ("no-such-broker.invalid", 1883, "host name not found (DNS)"),
        ("127.0.0.1", free_port(), "connection refused (nothing listens on that port)"),
    ):
        caplog.clear()
        cfg = {"host": host, "port": port, "topic_prefix": unique_prefix}
        tried = notifier_factory(None, unique_prefix, **cfg)
        line = wait_log(caplog, "cannot connect to MQTT broker")
        assert said in line and "Errno" not in line, line
        tried.stop()
    # TLS set for a broker's plain port: the broker's question, not the cameras' http/https
    broker = mosquitto_factory()
    caplog.clear()
    tls = notifier_factory(broker, unique_prefix, tls={})
    line = wait_log(caplog, "cannot connect to MQTT broker")
    assert "does the broker take TLS on this port?" in line and "https" not in line, line
    assert "mqtt.tls.ca_file" not in line, line
    tls.stop()


def test_tls_certificate_that_does_not_verify_is_refused_unless_insecure(
    mosquitto_factory, mqtt_tls_files, unique_prefix, notifier_factory, caplog
) -> None:
    broker = mosquitto_factory(tls=True)
    p = unique_prefix
    caplog.set_level(logging.INFO, "watchdog")
    wrong_ca = {"ca_file": str(mqtt_tls_files.other_ca_file)}
    refused = notifier_factory(broker, p, tls=wrong_ca)
    line = wait_log(caplog, "cannot connect to MQTT broker")
    assert "certificate is not trusted here" in line and "mqtt.tls.ca_file" in line, line
    assert not refused.connected
    refused.stop()

    with broker.subscriber(f"{p}/#") as sub:
        insecure = notifier_factory(broker, p, tls={**wrong_ca, "insecure": True})
        assert_delivered_exactly(sub, insecure, p, raise_alerts(insecure, 1))
    assert "not verified" in caplog.text  # the user is told what insecure means


@pytest.mark.parametrize("fixture", ["readonly_storage", "full_storage"])
def test_unwritable_storage_alerts_still_go_out(
    request, mosquitto, unique_prefix, notifier_factory, caplog, fixture: str
) -> None:
    storage = request.getfixturevalue(fixture)
    caplog.set_level(logging.ERROR, "watchdog")
    p = unique_prefix
    with mosquitto.subscriber(f"{p}/#") as sub:
        notifier = notifier_factory(mosquitto, p, storage_dir=storage)
        ids = raise_alerts(notifier, 5)
        assert_delivered_exactly(sub, notifier, p, ids)
        body = sub.received(f"{p}/{PRINTER}/alert")[0].json()
        assert body["incident"] in ids and body["printer"] == PRINTER
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot save incident" in errors[0], errors


def test_unwritable_storage_with_broker_down_keeps_alerts_in_memory(
    mosquitto_factory, readonly_storage, unique_prefix, notifier_factory
) -> None:
    broker = mosquitto_factory()
    p = unique_prefix
    with broker.subscriber(f"{p}/#") as sub:
        broker.stop()
        notifier = notifier_factory(broker, p, storage_dir=readonly_storage)
        ids = raise_alerts(notifier, 3)
        assert notifier.undelivered() == 3
        broker.start()
        assert_delivered_exactly(sub, notifier, p, ids)
        assert notifier.undelivered() == 0


def test_stopping_with_alerts_neither_saved_nor_delivered_says_so(
    mosquitto_factory, readonly_storage, unique_prefix, notifier_factory, caplog
) -> None:
    broker = mosquitto_factory()
    broker.stop()
    caplog.set_level(logging.WARNING, "watchdog")
    notifier = notifier_factory(broker, unique_prefix, storage_dir=readonly_storage)
    raise_alerts(notifier, 2)
    notifier.stop()
    [line] = [r for r in caplog.records if "MQTT stopped with" in r.getMessage()]
    assert line.levelno == logging.ERROR and "2 only in memory" in line.getMessage()


def test_alerts_left_pending_by_an_earlier_version_are_delivered_once(
    mosquitto, unique_prefix, notifier_factory, tmp_path
) -> None:
    """Earlier versions marked undelivered alerts with a `pending` file in the incident folder:
    after an upgrade they move to the outbox and are sent, once."""
    from watchdog.incidents import IncidentStore

    store = IncidentStore(tmp_path)
    old = [
        store.save(PRINTER, {"score": 0.9, "action": "pause"}, jpeg(i), jpeg(i), pending=True).id
        for i in range(2)
    ]
    assert sorted(p.parent.name for p in (tmp_path / "incidents").glob("*/*/pending")) == sorted(
        old
    )
    p = unique_prefix
    with mosquitto.subscriber(f"{p}/#") as sub:
        notifier = notifier_factory(mosquitto, p, storage_dir=tmp_path)
        assert_delivered_exactly(sub, notifier, p, old)
    assert (
        list((tmp_path / "incidents").glob("*/*/pending")) == [] and pending_markers(tmp_path) == []
    )


@pytest.mark.parametrize("fixed_by", ["restart", "reload"])
def test_an_alert_the_broker_refuses_is_kept_said_and_sent_once_it_is_allowed(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path, caplog, fixed_by
) -> None:
    """A broker whose ACL does not let the watchdog write its alert topic answers the PUBACK
    with "Not authorized": the alert was logged as delivered and taken out of the outbox, and
    Home Assistant never heard of it. Reloaded (SIGHUP), the broker keeps its clients
    connected: the refused alert waited for the next reconnect (weeks) while newer alerts
    went through."""
    caplog.set_level(logging.INFO, "watchdog")
    p = unique_prefix
    broker = mosquitto_factory()
    broker.acl = f"topic deny {p}/+/alert\ntopic readwrite #"
    broker.restart()
    with broker.subscriber(f"{p}/#") as sub:
        notifier = notifier_factory(broker, p, storage_dir=tmp_path)
        wait_connected(notifier)
        ids = raise_alerts(notifier, 1)
        line = wait_log(caplog, "refused alert")
        assert "Not authorized" in line and p in line
        assert notifier.undelivered() == 1 and pending_markers(tmp_path) == ids
        assert not [r for r in caplog.records if "delivered" in r.getMessage()]
        broker.acl = "topic readwrite #"  # the owner fixes the ACL
        if fixed_by == "restart":
            broker.restart()
        else:
            broker.reload()
            assert notifier.connected
            ids += raise_alerts(notifier, 1)
        assert_delivered_exactly(sub, notifier, p, ids)
        assert pending_markers(tmp_path) == []


def test_a_refused_alert_is_said_whatever_else_the_broker_refuses_and_a_lost_broker_in_words(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path, caplog
) -> None:
    """A broker refusing the watchdog's scores (each frame's) and its alerts: the alert's
    refusal was one of "47 more like this" under the scores' line, so the log never named it.
    And a broker stopped read "connection lost (Unspecified error)", paho's words."""
    p = unique_prefix
    broker = mosquitto_factory()
    broker.acl = f"topic deny {p}/+/score\ntopic deny {p}/+/alert\ntopic readwrite #"
    broker.restart()
    caplog.set_level(logging.INFO, "watchdog")
    notifier = notifier_factory(broker, p, storage_dir=tmp_path)
    wait_connected(notifier)
    notifier.publish_score(PRINTER, 0.5)
    wait_log(caplog, "refused a state, picture or Home Assistant discovery message")
    for score in (0.6, 0.7):
        notifier.publish_score(PRINTER, score)
    [alert_id] = raise_alerts(notifier, 1)
    line = wait_log(caplog, f"refused alert {alert_id} of {PRINTER}")
    assert "Not authorized" in line
    broker.stop()
    lost = wait_log(caplog, "MQTT connection to")
    assert "restarted or stopped?" in lost and "Unspecified" not in lost, lost


def test_a_heatmap_larger_than_the_broker_takes_is_left_out_and_alerts_still_arrive(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path, caplog
) -> None:
    """A broker with ``max_packet_size`` (its CONNACK says it) ends the connection of a client
    that sends more: a large camera's heatmap did so at every connect, before the queued alert
    went out, and no alert ever arrived."""
    caplog.set_level(logging.INFO, "watchdog")
    p = unique_prefix
    broker = mosquitto_factory()
    broker.max_packet_size = 64 * 1024
    broker.restart()
    big = np.random.default_rng(0).integers(0, 255, (600, 800, 3), dtype=np.uint8)
    huge = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    assert len(huge) > 64 * 1024
    with broker.subscriber(f"{p}/#") as sub:
        notifier = notifier_factory(broker, p, storage_dir=tmp_path)
        wait_connected(notifier)
        notifier.publish_heatmap(PRINTER, huge)
        ids = raise_alerts(notifier, 1)
        assert_delivered_exactly(sub, notifier, p, ids)
        line = wait_log(caplog, "takes messages up to")
        assert f"{p}/{PRINTER}/heatmap" in line and "max_packet_size" in line
        assert not [
            r
            for r in caplog.records
            if "connection to" in r.getMessage() and "lost" in r.getMessage()
        ]


def test_another_client_with_the_same_client_id_is_named_not_a_storm_of_reconnects(
    mosquitto, unique_prefix, notifier_factory, caplog, tmp_path
) -> None:
    """A second watchdog (or a copied ``mqtt.client_id``) knocks this one off the broker at
    each of its connections: the log said "connected" every two seconds with no word of why,
    and Home Assistant was sent every entity again at each connection."""
    caplog.set_level(logging.DEBUG, logger="watchdog.comms")
    twin = f"twin-{unique_prefix}"
    with mosquitto.subscriber(f"{unique_prefix}_ha/#") as ha:
        first = notifier_factory(mosquitto, unique_prefix, client_id=twin)
        wait_connected(first)
        time.sleep(1.0)
        entities = len(ha.received(f"{unique_prefix}_ha/#"))
        assert entities > 0
        # another machine's watchdog, its config copied
        notifier_factory(mosquitto, f"{unique_prefix}x", tmp_path / "other", client_id=twin)
        line = wait_log(caplog, "another client using the client id", timeout=60)
        assert repr(twin) in line and "mqtt.client_id" in line, line
        since, sent = len(caplog.records), len(ha.received(f"{unique_prefix}_ha/#"))
        time.sleep(10)
        connected = [
            r
            for r in caplog.records[since:]
            if r.levelno >= logging.INFO and "MQTT connected" in r.getMessage()
        ]
        assert len(connected) <= 1, [r.getMessage() for r in connected]
        # at most once more within the minute
        assert len(ha.received(f"{unique_prefix}_ha/#")) - sent <= entities


def test_a_broker_restarted_again_and_again_without_its_data_gets_the_entities_once_up(
    mosquitto_factory, unique_prefix, notifier_factory
) -> None:
    """A broker that keeps nothing restarted three times in quick succession (a host's boot,
    an add-on restarting): the connections it dropped at once looked like a second client
    with our id, whose connections send Home Assistant nothing, and the entities were never
    sent again once the broker stayed up."""
    broker = mosquitto_factory()
    notifier = notifier_factory(broker, unique_prefix)
    wait_connected(notifier)
    for _ in range(3):
        broker.stop()
        (broker.workdir / "mosquitto.db").unlink(missing_ok=True)  # it keeps nothing
        broker.start()
        wait_connected(notifier, 30)
    with broker.subscriber(f"{unique_prefix}_ha/#") as ha:
        ha.wait_for(f"{unique_prefix}_ha/#", timeout=40)


def test_an_alert_the_broker_took_no_earlier_than_its_age_limit_is_dropped_not_sent_as_news(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path, caplog
) -> None:
    """A broker away for a weekend: the alerts raised meanwhile were published when it came
    back, days late, and a Home Assistant automation acting on them flashed the garage lights
    for a print long over. Past ``mqtt.alert_max_age_h`` each is dropped and said, whether an
    earlier run left it or this one raised it; a fresh alert still goes out."""
    import json

    broker = mosquitto_factory()
    p = unique_prefix
    with broker.subscriber(f"{p}/#") as sub:
        first = notifier_factory(broker, p, storage_dir=tmp_path)
        sub.wait_for(f"{p}/available/+", lambda m: m.text == "online")
        broker.stop()
        [old] = raise_alerts(first, 1)
        first.stop()  # the daemon stopped with it undelivered, 25 hours ago
        entry = tmp_path / "outbox" / "mqtt" / old / "entry.json"
        record = json.loads(entry.read_text())
        record["created"] -= 25 * 3600
        del record["boot"]  # of an earlier boot: its wall time tells its age
        entry.write_text(json.dumps(record))

        second = notifier_factory(broker, p, storage_dir=tmp_path, alert_max_age_h=24)
        [raised_now] = raise_alerts(second, 1)
        with caplog.at_level(logging.WARNING):
            broker.start()
            assert_delivered_exactly(sub, second, p, [raised_now])
            said = wait_log(caplog, f"dropped alert {old}")
        assert f"of {PRINTER}" in said and "mqtt.alert_max_age_h" in said
        assert pending_markers(tmp_path) == []
        second.stop()

        # raised by this run while the broker is away, and older than the limit when it returns
        caplog.clear()
        third = notifier_factory(broker, p, storage_dir=tmp_path, alert_max_age_h=2 / 3600)
        wait_connected(third)
        broker.stop()
        [late] = raise_alerts(third, 1)
        time.sleep(2.5)
        with caplog.at_level(logging.WARNING):
            broker.start()
            wait_connected(third)
            wait_log(caplog, f"dropped alert {late}")
        [fresh] = raise_alerts(third, 1)
        assert third.flush(10)
        sub.wait_for(f"{p}/{PRINTER}/alert", lambda m: m.json()["incident"] == fresh)
        got = [m.json()["incident"] for m in sub.received(f"{p}/{PRINTER}/alert")]
        assert late not in got and old not in got
        assert pending_markers(tmp_path) == []


def test_an_alert_an_earlier_run_left_unsent_days_ago_is_dropped_not_sent_as_news(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path, caplog
) -> None:
    """An alert saved three days ago and never queued for the broker (a power cut between
    saving it and queuing it): the next start queued it as new, and Home Assistant got it as
    news despite mqtt.alert_max_age_h. It ages from its own time."""
    import json
    from datetime import UTC, datetime, timedelta

    from watchdog.incidents import IncidentStore

    then = datetime.now(UTC) - timedelta(days=3)
    alert = {"printer": PRINTER, "action": "pause", "time": then.isoformat(timespec="seconds")}
    incident = IncidentStore(tmp_path).save(PRINTER, alert, jpeg(1), jpeg(2), pending=True)
    saved = json.loads((incident.path / "alert.json").read_text())
    saved.pop("boot", None)  # saved in an earlier boot: its wall time tells its age
    (incident.path / "alert.json").write_text(json.dumps(saved))
    broker = mosquitto_factory()
    p = unique_prefix
    with broker.subscriber(f"{p}/#") as sub, caplog.at_level(logging.WARNING):
        notifier = notifier_factory(broker, p, storage_dir=tmp_path, alert_max_age_h=24)
        said = wait_log(caplog, f"dropped alert {incident.id}")
        [fresh] = raise_alerts(notifier, 1)
        sub.wait_for(f"{p}/{PRINTER}/alert", lambda m: m.json()["incident"] == fresh)
    got = [m.json()["incident"] for m in sub.received(f"{p}/{PRINTER}/alert")]
    assert got == [fresh], got
    assert "left by an earlier run" in said, said


def test_a_renamed_printers_unsent_alert_is_said_not_blamed_on_the_broker(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path, caplog
) -> None:
    """A printer renamed while its alert waited for the broker: the next start kept it
    without a word, and dropped it a day later "not taken by the broker", which was up."""
    import json

    broker = mosquitto_factory()
    p = unique_prefix
    first = notifier_factory(broker, p, storage_dir=tmp_path)
    wait_connected(first)
    broker.stop()
    [old] = raise_alerts(first, 1)
    first.stop()
    with caplog.at_level(logging.WARNING):
        broker.start()
        renamed = notifier_factory(broker, p, storage_dir=tmp_path, printers=("ender3-v2",))
        said = wait_log(caplog, "no longer in the config")
    assert f"alert(s) of {PRINTER}, no longer in the config, are not sent" in said, said
    entry = tmp_path / "outbox" / "mqtt" / old / "entry.json"
    record = json.loads(entry.read_text())
    record["created"] -= 25 * 3600
    del record["boot"]
    entry.write_text(json.dumps(record))
    renamed.stop()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        notifier_factory(broker, p, storage_dir=tmp_path, printers=("ender3-v2",))
        dropped = wait_log(caplog, f"dropped alert {old}")
    assert "its printer is no longer in the config" in dropped and "broker" not in dropped


def test_a_removed_printers_state_in_flight_when_the_broker_went_is_not_kept_again(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path
) -> None:
    """A printer's state sent as the broker died is sent again by the reconnection, after the
    connection took the removed printer off the broker: the broker kept its last state for
    good (a printer removed by a reload meanwhile, its failure sensor on)."""
    broker = mosquitto_factory()
    p = unique_prefix

    def retained(pattern: str) -> dict[str, bytes]:
        with broker.subscriber(pattern, f"{p}/unrelated") as late:
            broker.publish(f"{p}/unrelated", "tick")  # a round trip: retained ones came first
            late.wait_for(f"{p}/unrelated")
            return {m.topic: m.payload for m in late.received(pattern) if m.retain and m.payload}

    notifier = notifier_factory(broker, p, storage_dir=tmp_path, printers=(PRINTER, "voron"))
    wait_connected(notifier)
    broker.process.send_signal(signal.SIGSTOP)  # frozen: the state is sent, no PUBACK comes
    try:
        notifier.publish_state("voron", {"state": "printing", "failure": True})
    finally:
        broker.process.send_signal(signal.SIGKILL)
        broker.process.wait(10)
    notifier.set_printers([PRINTER])  # a reload removed voron while the broker was away
    broker.start()
    wait_connected(notifier)
    notifier.publish_state(PRINTER, {"state": "marker"})  # after the resent one, same session
    assert notifier.flush(10)
    deadline = time.monotonic() + 15
    while b"marker" not in retained(f"{p}/+/state").get(f"{p}/{PRINTER}/state", b""):
        assert time.monotonic() < deadline, "the marker never arrived"
        time.sleep(0.2)
    # the removal waits for voron's entity config to tell whose it is (none is left on a
    # broker that lost its data: a few seconds), and the resent state is emptied again
    deadline = time.monotonic() + 10
    while f"{p}/voron/state" in retained(f"{p}/#"):
        assert time.monotonic() < deadline, retained(f"{p}/#")
        time.sleep(0.2)
    time.sleep(1.0)  # nothing lands after it
    assert f"{p}/voron/state" not in retained(f"{p}/#"), retained(f"{p}/#")


def test_alerts_waiting_for_a_broker_gone_for_good_are_not_kept_for_ever(
    mosquitto_factory, unique_prefix, notifier_factory, tmp_path, caplog
) -> None:
    """``mqtt.host`` left set after the broker was retired: each alert was kept in memory and in
    the outbox for good (the age limit was only looked at when the broker came back), and the
    alerts of a printer taken out of the config were never sent nor let go."""
    broker = mosquitto_factory()
    broker.stop()
    caplog.set_level(logging.WARNING, "watchdog.comms.mqtt")
    notifier = notifier_factory(
        broker, unique_prefix, storage_dir=tmp_path, alert_max_age_h=1 / 3600
    )
    [first] = raise_alerts(notifier, 1)
    time.sleep(1.5)
    [second] = raise_alerts(notifier, 1)  # the next alert lets the old one go
    assert pending_markers(tmp_path) == [second]
    assert notifier.undelivered() == 1
    assert f"dropped alert {first}" in caplog.text
    notifier.stop()
    time.sleep(1.5)
    # the printer taken out of the config: its alert, too old, goes at the next start
    other = notifier_factory(
        broker, unique_prefix, storage_dir=tmp_path, printers=("voron",), alert_max_age_h=1 / 3600
    )
    assert pending_markers(tmp_path) == [] and other.undelivered() == 0
    assert f"dropped alert {second}" in caplog.text


def test_a_stop_with_the_broker_gone_silent_keeps_to_its_time(
    mosquitto_factory, unique_prefix, notifier_factory
) -> None:
    """The broker stopped answering (its Wi-Fi gone, the connection still open), an MQTT
    command under way and an alert on its way: each of the stop's waits (the command, the
    alert's delivery, the "offline") took the whole of its time, 9 s for a 3 s stop, and
    the daemon's stop went past systemd's 20 s (killed, no clean end)."""
    import os
    import threading

    from watchdog.control import CommandResult

    release = threading.Event()

    class Hung:  # a Pause under way in a watcher whose printer's API hangs
        def dispatch(self, command):
            release.wait(60)
            return CommandResult(True, "done")

    broker = mosquitto_factory()
    p = unique_prefix
    notifier = notifier_factory(broker, p, dispatcher=Hung())
    wait_connected(notifier)
    broker.publish(f"{p}/{PRINTER}/command", "pause", qos=1)
    time.sleep(1.0)
    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        raise_alerts(notifier, 1)
        started = time.monotonic()
        notifier.stop(3.0)
        took = time.monotonic() - started
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
        release.set()
    assert took < 4.5, took
