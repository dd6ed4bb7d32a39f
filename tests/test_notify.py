"""Phone notifications: real Apprise (in its child process) to local ntfy, JSON-webhook and SMTP
receivers on 127.0.0.1; the outbox across receiver outages and daemon restarts; 401s;
coalescing; expiry; the buttons' capability tokens through the real status server."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from tests.daemon_helpers import stepped_wall_clock, without_apprise
from tests.plugins.receivers import NtfyReceiver, WebhookReceiver, wait_for
from watchdog.comms.actions import ActionHandler, ActionRefused, ActionTokens
from watchdog.comms.http import StatusServer, action_page
from watchdog.comms.notifier import Notifier
from watchdog.comms.notify_send import with_mail_priority
from watchdog.config import ConfigError, MqttConfig, NotifyTarget, StorageConfig, parse_config
from watchdog.control import Command, CommandResult, Verb, printer_answers
from watchdog.incidents import IncidentStore
from watchdog.printing import Action, Outcome

PRINTER = "ender3"
NTFY_PASSWORD = "hunter22-n0t-in-logs"
HOOK_PASSWORD = "w3bh00k-s3cret"


def jpeg(seed: int = 0, h: int = 48, w: int = 64) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def alert(outcome: str = "done", action: str = "pause", score: float = 0.91) -> dict:
    return {
        "printer": PRINTER,
        "job": "benchy.gcode",
        "score": np.float32(score),
        "threshold": 0.5,
        "consecutive": 3,
        "action": action,
        "action_result": {
            "action": action,
            "outcome": outcome,
            "detail": "HTTP 503 from the printer",
            "attempts": 3,
        },
    }


def decode(data: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return img


def outbox_entries(storage: Path, channel: str) -> list[Path]:
    return sorted((storage / "outbox" / channel).glob("*/entry.json"))


def target(url: str, **kw) -> NotifyTarget:
    return NotifyTarget(url=url, **kw)


def camera_target(url: str, after_s: float, **kw) -> NotifyTarget:
    """A target of camera news only, sent ``after_s`` after the camera went offline."""
    return NotifyTarget(url=url, events=["camera_offline"], camera_offline_after_s=after_s, **kw)


def alert_left_queued(phone, ntfy_receiver, url: str, **kw) -> None:
    """A run whose one target (at ``url``) the service refuses: its alert waits in the
    outbox for the next run; the service takes notifications again after it."""
    ntfy_receiver.refuse(500, "down")
    run = phone(notify=(target(url, **kw),))
    run.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    wait_for("the refusal", lambda: run.notify_status()[kw.get("name", "ntfy")]["failed"] >= 1)
    run.stop()
    ntfy_receiver.refuse(None)


class Recorder:
    """The daemon's dispatcher stand-in for the token tests (the daemon is tested end to end elsewhere)."""

    def __init__(self, ok: bool = True, under_way: bool = False) -> None:
        self.commands: list[Command] = []
        self.ok, self.under_way = ok, under_way
        self.later: Future[CommandResult] = Future()  # what an under-way command comes to

    def dispatch(self, command: Command) -> CommandResult:
        self.commands.append(command)
        if self.under_way:
            return CommandResult(
                False, "e3 is still carrying out resume", under_way=True, later=self.later
            )
        return CommandResult(
            self.ok, f"{command.verb.value} done" if self.ok else "printer is not paused"
        )


@pytest.fixture
def phone(notifier_factory, tmp_path):
    """``phone(notify=targets, **kw)``: a started notifier without MQTT, its storage in
    ``tmp_path``, sending to ``targets``."""

    def make(**kw):
        kw.setdefault("storage_dir", tmp_path)
        return notifier_factory(None, "p", **kw)

    return make


# --------------------------------------------------------------------------- delivery


def test_failure_reaches_ntfy_webhook_and_email_once_with_the_heatmap(
    phone, ntfy_receiver, webhook_receiver, smtp_receiver, tmp_path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    heat, frame = jpeg(1, 120, 160), jpeg(2)
    notifier = phone(
        notify=(
            target(
                ntfy_receiver.url("printers", "bob", NTFY_PASSWORD),
                actions_url="http://pi.lan:8787",
            ),
            target(
                webhook_receiver.url("hook", "hook", HOOK_PASSWORD),
                actions_url="http://pi.lan:8787",
            ),
            target(smtp_receiver.url("owner@example.com")),
        ),
    )
    incident = notifier.raise_alert(PRINTER, alert(), frame, heat)
    assert notifier.notifications.flush(60), notifier.notify_status()

    [msg] = ntfy_receiver.messages
    assert msg.topic == "printers" and msg.title == "ender3: print failure, paused"
    assert "(1.82 times the alert level)" in msg.message and "benchy.gcode" in msg.message
    assert msg.priority == "high"
    assert msg.attachment == heat and decode(msg.attachment).shape == (120, 160, 3)
    assert msg.filename == "heatmap.jpg"
    assert msg.authorization is not None  # the URL's credentials reached the server
    assert [a["label"] for a in msg.actions] == ["Not a failure", "Resume", "Cancel"]
    for action in msg.actions:
        assert action["action"] == "http" and action["method"] == "POST"
        assert action["url"].startswith("http://pi.lan:8787/actions/") and len(action["url"]) > 50
    assert len({a["url"] for a in msg.actions}) == 3
    # buttons, not links as well; a fourth answer, past ntfy's three buttons, is a link
    [skip] = re.findall(
        r"^Stop watching this print: (http://pi\.lan:8787/actions/\S+)$", msg.message, re.M
    )
    assert msg.message.count("/actions/") == 1 and skip not in {a["url"] for a in msg.actions}

    [post] = webhook_receiver.posts
    assert post["title"] == msg.title and post["type"] == "failure"
    # a service without buttons gets the same three answers as links, each its own token
    links = re.findall(
        r"^(Not a failure|Resume|Cancel): (http://pi\.lan:8787/actions/\S+)$", post["message"], re.M
    )
    assert [label for label, _ in links] == ["Not a failure", "Resume", "Cancel"]
    assert not {url for _, url in links} & {a["url"] for a in msg.actions}
    granted = [ActionTokens(tmp_path).peek(url.rsplit("/", 1)[1]) for _, url in links]
    assert [g.verb for g in granted] == [Verb.NOT_A_FAILURE, Verb.RESUME, Verb.CANCEL]
    assert {g.incident for g in granted} == {incident} and not any(g.used for g in granted)
    assert WebhookReceiver.attachment(post) == heat

    [mail] = smtp_receiver.mails
    assert mail["Subject"] == msg.title and mail["To"] == "owner@example.com"
    assert "/actions/" not in mail.get_body(("plain",)).get_content()  # no actions_url: no links
    assert (mail["X-Priority"], mail["Importance"]) == ("2", "high")  # marked, as on ntfy
    [picture] = list(mail.iter_attachments())
    assert picture.get_content_type() == "image/jpeg" and picture.get_content() == heat

    status = notifier.notify_status()
    assert {name: (s["sent"], s["pending"], s["failed"]) for name, s in status.items()} == {
        "ntfy": (1, 0, 0),
        "json": (1, 0, 0),
        "mailto": (1, 0, 0),
    }
    assert outbox_entries(tmp_path, "notify-ntfy") == []
    notifier.stop()
    assert (
        len(ntfy_receiver.messages) == len(webhook_receiver.posts) == len(smtp_receiver.mails) == 1
    )
    # the incident itself is saved as before
    assert (tmp_path / "incidents" / PRINTER / incident / "heatmap.jpg").read_bytes() == heat
    # secrets: no log line, no status field, no file in the outbox or token store holds them
    everything = caplog.text + json.dumps(status)
    everything += "".join(
        p.read_text(errors="replace")
        for p in tmp_path.rglob("*")
        if p.is_file() and p.suffix != ".jpg"
    )
    for secret in (NTFY_PASSWORD, HOOK_PASSWORD):
        assert secret not in everything
    for action in msg.actions:
        assert action["url"].rsplit("/", 1)[1] not in everything, (
            "a button's token is stored or logged in clear"
        )


def test_action_failed_is_loud_and_events_go_only_where_asked(
    phone, ntfy_receiver, webhook_receiver, tmp_path
) -> None:
    notifier = phone(
        printers=(PRINTER, "voron"),
        notify=(
            target(
                ntfy_receiver.url("all"),
                events=["failure", "camera_offline"],
                attach="frame",
                camera_offline_after_s=0,
            ),
            target(webhook_receiver.url(), events=["action_failed"], printers=["voron"]),
        ),
    )
    frame = jpeg(3)
    notifier.raise_alert(PRINTER, alert(outcome="failed"), frame, jpeg(4))
    notifier.camera_changed("voron", online=False)
    notifier.print_done(PRINTER, "benchy.gcode")  # nobody asked for print_done
    assert notifier.notifications.flush(60)
    by_title = {m.title: m for m in ntfy_receiver.messages}
    assert set(by_title) == {
        "ender3: failure, and the pause did NOT happen",
        "voron: camera offline",
    }
    loud = by_title["ender3: failure, and the pause did NOT happen"]
    assert (
        loud.priority == "max"
        and "Check the printer now" in loud.message
        and "HTTP 503" in loud.message
    )
    assert loud.attachment == frame and loud.filename == "frame.jpg"
    assert by_title["voron: camera offline"].attachment is None
    assert webhook_receiver.posts == [], "the webhook wants action_failed of voron only"
    notifier.raise_alert("voron", {**alert(outcome="refused"), "printer": "voron"}, frame, frame)
    wait_for("the webhook's action_failed", lambda: webhook_receiver.posts)
    assert webhook_receiver.posts[0]["title"] == "voron: failure, and the pause did NOT happen"


def test_a_url_of_two_recipients_one_refusing_is_not_sent_again_to_the_other(
    phone, ntfy_receiver, caplog
) -> None:
    """``ntfy://host/printers/family`` where the family topic refuses: the whole send counted
    as failed and was retried for a day, the printers topic getting the same notice each time.
    It is sent once, and the refusal is said."""
    ntfy_receiver.refuse_containing(b'"topic": "family"', 403)
    notifier = phone(notify=(camera_target(ntfy_receiver.url("printers/family"), 0),))
    notifier.camera_changed(PRINTER, online=False)
    assert notifier.notifications.flush(60), notifier.notify_status()
    assert [m.topic for m in ntfy_receiver.messages] == ["printers"]
    assert notifier.notify_status()["ntfy"]["pending"] == 0
    [said] = [
        r.getMessage() for r in caplog.records if "some of the URL's recipients" in r.getMessage()
    ]
    assert "refused it" in said and "not sent again" in said


def test_one_recipients_text_refused_after_its_picture_was_taken_is_tried_again(
    monkeypatch, tmp_path
) -> None:
    """Telegram sends a long alert's picture first (``content=after``), then its text: the
    picture taken and the text refused (rate-limited) read as "some recipients took it", and
    the alert was marked sent with no text and no answer links. Telegram cannot be reached
    from here: its answers come from a stand-in for ``requests.post``, inside Apprise."""
    import requests

    from watchdog.comms.notify_send import send

    class Answer:
        def __init__(self, status: int) -> None:
            self.status_code, self.headers = status, {}
            self.content = json.dumps({"ok": status == 200}).encode()
            self.text = self.content.decode()

        def json(self) -> dict:
            return json.loads(self.content)

    asked: list[str] = []

    def telegram(url: str, *args: object, **kwargs: object) -> Answer:
        asked.append(url.rsplit("/", 1)[-1])
        return Answer(429 if url.endswith("sendMessage") else 200)

    monkeypatch.setattr(requests, "post", telegram)
    picture = tmp_path / "heatmap.jpg"
    picture.write_bytes(jpeg(1))
    result = send(
        {
            "url": "tgram://123456789:abcdefg_hijklmnop/12345/?content=after",
            "body": "x" * 1100,
            "title": "ender3: print failure, paused",
            "type": "failure",
            "attachment": str(picture),
        }
    )
    assert asked == ["sendPhoto", "sendMessage"]
    assert not result["ok"] and "error=429" in result["detail"], result


def test_a_print_a_printer_error_stopped_is_told_loud_not_as_a_quiet_success(
    phone, ntfy_receiver, webhook_receiver
) -> None:
    """A thermal runaway reached the phone at ntfy's low priority (no sound) and as Apprise's
    "success" (green); a print that simply ended stays quiet (low, success)."""
    notifier = phone(
        notify=(
            target(ntfy_receiver.url("done"), events=["print_done"]),
            target(webhook_receiver.url(), events=["print_done"]),
        ),
    )
    notifier.print_done(PRINTER, "benchy.gcode", "Heater extruder not heating at expected rate")
    assert notifier.notifications.flush(60)
    [stopped] = ntfy_receiver.messages
    assert stopped.title == "ender3: print stopped by a printer error"
    assert stopped.priority == "high" and "not heating" in stopped.message
    wait_for("the webhook's notice", lambda: webhook_receiver.posts)
    assert webhook_receiver.posts[0]["type"] == "warning"


@pytest.mark.parametrize(
    ("ended", "title", "text"),
    [
        ("finished", "ender3: print finished", "benchy.gcode on ender3 has finished."),
        (
            "cancelled",
            "ender3: print cancelled",
            "benchy.gcode on ender3 was cancelled at the printer.",
        ),
        ("", "ender3: print ended", "benchy.gcode on ender3 has ended (finished, or cancelled"),
    ],
)
def test_a_print_ended_says_how_where_the_printer_tells(ended: str, title: str, text: str) -> None:
    """Klipper says whether a print finished or was cancelled: "has ended (finished, or
    cancelled at the printer)" left the owner to guess; OctoPrint cannot tell."""
    from watchdog.comms.notify import print_done_event

    event = print_done_event(PRINTER, "benchy.gcode", ended=ended)
    assert event.title == title and event.message.startswith(text), event


def test_a_printer_error_names_the_printers_host_not_the_request() -> None:
    """OctoPrint losing its printer mid-print reached the phone as "... (GET
    http://octopi.local/api/printer?exclude=temperature,sd: HTTP 409: ...)": the host is
    what the owner needs, as in a failed pause's alert."""
    from watchdog.comms.notify import print_done_event

    error = (
        "OctoPrint lost its printer during the print: no printer connected (GET "
        "http://octopi.local/api/printer?exclude=temperature,sd: HTTP 409: Printer is not "
        "operational)"
    )
    event = print_done_event(PRINTER, "benchy.gcode", error)
    assert event.message == (
        "benchy.gcode on ender3 stopped: OctoPrint lost its printer during the print: no "
        "printer connected (octopi.local: HTTP 409: Printer is not operational)"
    ), event.message


def test_a_print_that_ended_while_its_printer_was_unreachable_is_told_loud(
    phone, ntfy_receiver
) -> None:
    """Seen printing, then idle once the API was back: a restart of OctoPrint or Klipper ends
    a print as quietly as one that finished."""
    notifier = phone(notify=(target(ntfy_receiver.url("done"), events=["print_done"]),))
    notifier.print_done(PRINTER, "benchy.gcode", unseen=True)
    assert notifier.notifications.flush(60)
    [unseen] = ntfy_receiver.messages
    assert unseen.title == "ender3: print ended while the printer could not be reached"
    assert unseen.priority == "high" and "it was lost" in unseen.message


def test_a_failure_left_printing_by_a_notify_only_printer_is_as_loud_as_a_pause_that_failed(
    phone, ntfy_receiver, webhook_receiver
) -> None:
    """With `action: notify` nothing stops the print: the owner is the only one who can, so
    the alert comes at the highest priority, not at a paused print's high one."""
    notifier = phone(notify=(target(ntfy_receiver.url("all")), target(webhook_receiver.url())))
    notifier.raise_alert(PRINTER, alert(action="notify"), jpeg(1), jpeg(2))
    assert notifier.notifications.flush(60)
    [going_on] = ntfy_receiver.messages
    assert going_on.title == "ender3: print failure, still printing"
    assert "it was left printing" in going_on.message
    assert going_on.priority == "max" and going_on.attachment is not None
    wait_for("the webhook's alert", lambda: webhook_receiver.posts)
    assert webhook_receiver.posts[0]["type"] == "failure"


@pytest.mark.parametrize(
    ("action", "outcome", "api", "labels"),
    [
        ("pause", "skipped", False, ["Not a failure"]),  # no printer API: nothing to resume
        ("notify", "done", True, ["Not a failure", "Cancel"]),  # still printing
        ("pause", "failed", True, ["Not a failure", "Cancel"]),  # the pause did not happen
        ("cancel", "done", True, ["Not a failure"]),  # already cancelled
    ],
)
def test_a_phone_alert_offers_only_the_printer_buttons_that_can_act(
    phone, ntfy_receiver, webhook_receiver, tmp_path, action, outcome, api, labels
) -> None:
    """Resume where our pause happened, Cancel while a printer API could stop the print: a
    button that could only answer "skipped" or "not paused" is not offered. Where the answers
    are links, Stop watching this print too, while the print runs and an API will tell its
    end; on ntfy (three buttons at most) it is the one link in the text."""
    notifier = phone(
        notify=(
            target(ntfy_receiver.url("all"), actions_url="http://pi.lan:8787"),
            target(webhook_receiver.url(), actions_url="http://pi.lan:8787"),
        ),
    )
    answers = [v.value for v in printer_answers(Action(action), Outcome(outcome), api)]
    notifier.raise_alert(PRINTER, {**alert(outcome, action), "answers": answers}, jpeg(1), jpeg(2))
    assert notifier.notifications.flush(60)
    [msg] = ntfy_receiver.messages
    assert [a["label"] for a in msg.actions] == labels
    # a button that ends the matter clears the notification; Not a failure leaves a paused
    # print paused, and its Resume at hand
    assert [a.get("clear") for a in msg.actions] == [
        None if label == "Not a failure" else "true" for label in labels
    ]
    skip = ["Stop watching this print"] if "Cancel" in labels else []
    assert re.findall(r"^([A-Z][a-z ]+): http://pi\.lan", msg.message, re.M) == skip
    [post] = webhook_receiver.posts
    links = labels + skip
    assert re.findall(r"^([A-Z][a-z ]+): http://pi\.lan", post["message"], re.M) == links


def test_ntfy_sh_pasted_as_its_web_address_gets_the_buttons_and_the_priority(phone) -> None:
    """``https://ntfy.sh/topic``, as ntfy's own docs show it, is sent through ntfy by Apprise,
    but was taken for another service ("https"): links in the text, no buttons, a failure
    left printing at the default priority. (ntfy.sh cannot be reached from the tests: the
    request the sending child gets is kept, and the URL it makes handed to Apprise.)"""
    import apprise

    from watchdog.comms.notify_send import with_ntfy_options

    notifier = phone(notify=(target("https://ntfy.sh/printers", actions_url="http://pi.lan:8787"),))
    [sender] = notifier.notifications.targets
    sent: list[dict[str, Any]] = []
    sender.sender = lambda request: sent.append(request) or {"ok": True}
    assert sender.name == "ntfys"
    notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    assert notifier.notifications.flush(60)
    [request] = sent
    assert "http, Resume, http://pi.lan:8787/actions/" in request["ntfy"]["actions"], request
    plugin = apprise.Apprise.instantiate(with_ntfy_options(request["url"], request["ntfy"]))
    assert type(plugin).__name__ == "NotifyNtfy" and plugin.priority == "high"
    assert plugin._NotifyNtfy__actions, "no buttons"


def test_a_failure_on_a_full_disk_still_reaches_the_phone_without_its_picture(
    notifier_factory, ntfy_receiver, full_storage, monkeypatch, caplog
) -> None:
    """The storage folder and the temporary folder on one full disk (the service's private
    /tmp is on the SD card): the outbox cannot keep the alert, nor a temporary file its
    picture. The alert goes out as text; before, every attempt failed and it was dropped
    after max_age_h."""
    monkeypatch.setattr(tempfile, "tempdir", str(full_storage))
    notifier = notifier_factory(
        None, "p", storage_dir=full_storage / "state", notify=(target(ntfy_receiver.url("t")),)
    )
    notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    assert notifier.notifications.flush(60), notifier.notify_status()
    [msg] = ntfy_receiver.messages
    assert msg.title == "ender3: print failure, paused" and msg.attachment is None
    assert "cannot write the picture" in caplog.text
    assert not list(full_storage.glob("watchdog-notify-*")), "temporary pictures left behind"


def test_a_ntfy_server_that_takes_no_pictures_still_gets_every_failure_alert(
    phone, ntfy_receiver, caplog
) -> None:
    """A ntfy server of one's own takes no attachments until its server.yml says where to keep
    them: every failure alert (with its heatmap) was refused, retried for a day and dropped,
    while the camera notices, without a picture, arrived. The alert goes as text, once, and
    the owner is told why its picture is missing and how to have it."""
    ntfy_receiver.takes_pictures = False
    run = phone(notify=(target(ntfy_receiver.url("own")),))
    run.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    assert run.notifications.flush(60), run.notify_status()
    [msg] = ntfy_receiver.messages
    assert msg.title == "ender3: print failure, paused" and msg.attachment is None
    assert run.notify_status()["ntfy"]["sent"] == 1
    [said] = [r.getMessage() for r in caplog.records if "refused the picture" in r.getMessage()]
    assert "attachments not allowed" in said and "attachment-cache-dir" in said


def test_receiver_down_for_a_while_and_across_a_restart_is_delivered_once(
    phone, ntfy_receiver, tmp_path, caplog
) -> None:
    caplog.set_level(logging.INFO, "watchdog")
    ntfy_receiver.stop()
    targets = (target(ntfy_receiver.url("t", "bob", NTFY_PASSWORD)),)
    first = phone(notify=targets)
    first.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    wait_for("two failed attempts", lambda: first.notify_status()["ntfy"]["failed"] >= 2)
    assert first.notify_status()["ntfy"]["pending"] == 1
    assert first.notify_status()["ntfy"]["failing"]  # for the page's banner
    warnings = [r.getMessage() for r in caplog.records if "cannot deliver" in r.getMessage()]
    assert len(warnings) == 1, "retries are logged once a minute, not at every attempt"
    first.stop()  # the daemon exits with the notification undelivered
    assert len(outbox_entries(tmp_path, "notify-ntfy")) == 1

    ntfy_receiver.start()
    second = phone(notify=targets)
    assert second.notifications.flush(60), second.notify_status()
    assert len(ntfy_receiver.messages) == 1 and ntfy_receiver.messages[0].attachment == jpeg(2)
    assert not second.notify_status()["ntfy"]["failing"]
    second.stop()
    third = phone(notify=targets)  # nothing left to send
    assert third.notify_status()["ntfy"]["pending"] == 0
    third.stop()
    assert len(ntfy_receiver.messages) == 1
    assert NTFY_PASSWORD not in caplog.text


def test_an_alert_left_unsent_by_a_stop_during_its_pause_reaches_the_phone_after_the_restart(
    phone, ntfy_receiver, tmp_path
) -> None:
    """The watcher saves its alert before it asks the printer to pause; if the watchdog stops
    while the printer's API hangs (a restart, a power cut), that saved alert is all there is.
    Without MQTT, the phone must still hear of it after the restart, once, as a pause whose
    end is unknown."""
    targets = (target(ntfy_receiver.url("t", "bob", NTFY_PASSWORD)),)
    first = phone(notify=targets)
    assert first.delivers
    draft = dict(
        alert(),
        action_result={"outcome": "unknown", "detail": "the watchdog stopped before the pause"},
    )
    first.store.save(PRINTER, draft, jpeg(1), jpeg(2), pending=first.delivers)  # as the watcher
    first.stop()  # ... and the pause never returned
    second = phone(notify=targets)
    assert second.notifications.flush(60), second.notify_status()
    [msg] = ntfy_receiver.messages
    assert msg.title == "ender3: failure; the pause may not have happened"
    assert "whether the pause happened is unknown: the watchdog stopped before the pause" in (
        msg.message
    )
    assert "Check the printer now." in msg.message, msg.message  # as loud as "did NOT"
    assert msg.attachment == jpeg(2)
    second.stop()
    third = phone(notify=targets)  # told once
    assert third.notifications.flush(10)
    third.stop()
    assert len(ntfy_receiver.messages) == 1


def test_an_alert_left_by_a_stop_is_told_to_the_phone_once_across_starts_that_fail(
    notifier_factory, ntfy_receiver, tmp_path
) -> None:
    """With MQTT on, a draft left by a stop stays pending until the broker's client is made;
    a start that failed there (a client certificate that cannot be loaded: exit 2, and
    systemd starts it again) had already queued the phone's "the pause may not have happened",
    and every start queued one more copy."""
    from tests.plugins.mosquitto import free_port
    from watchdog.config import ConfigError

    targets = (target(ntfy_receiver.url("t", "bob", NTFY_PASSWORD)),)
    mqtt = {"host": "127.0.0.1", "port": free_port()}
    first = notifier_factory(None, "p", storage_dir=tmp_path, notify=targets, **mqtt)
    draft = dict(
        alert(),
        action_result={"outcome": "unknown", "detail": "the watchdog stopped before the pause"},
    )
    first.store.save(PRINTER, draft, jpeg(1), jpeg(2), pending=first.delivers)
    first.stop()
    garbage = tmp_path / "client.pem"
    garbage.write_text("not a certificate")
    tls = {"tls": {"cert_file": str(garbage), "key_file": str(garbage)}}
    for _ in range(3):  # three starts refused at the certificate
        failing = notifier_factory(
            None, "p", storage_dir=tmp_path, notify=targets, start=False, **mqtt, **tls
        )
        with pytest.raises(ConfigError, match="mqtt.tls"):
            failing.start()
        failing.stop()
    fixed = notifier_factory(None, "p", storage_dir=tmp_path, notify=targets, **mqtt)
    assert fixed.notifications.flush(60), fixed.notify_status()
    titles = [m.title for m in ntfy_receiver.messages]
    assert titles == ["ender3: failure; the pause may not have happened"], titles


def test_a_damaged_saved_alert_left_by_a_stop_does_not_stop_the_next_start(
    phone, ntfy_receiver
) -> None:
    """The alert file a stopped watchdog left is read back at the next start: a value in it
    that is no number (a damaged disk, an edit) raised at every start, and systemd restarted
    the daemon into the same crash. The phone is told what can be read."""
    targets = (target(ntfy_receiver.url("t", "bob", NTFY_PASSWORD)),)
    first = phone(notify=targets)
    draft = dict(
        alert(),
        score="n/a",
        threshold=[1],
        incident=7,
        action_result={"outcome": "unknown", "detail": "the watchdog stopped before the pause"},
    )
    first.store.save(PRINTER, draft, jpeg(1), jpeg(2), pending=first.delivers)
    first.stop()
    second = phone(notify=targets)
    assert second.notifications.flush(60), second.notify_status()
    [msg] = ntfy_receiver.messages
    assert msg.title == "ender3: failure; the pause may not have happened"
    second.stop()


def test_a_service_slow_to_answer_gets_each_notification_once(phone, webhook_receiver) -> None:
    """A service that takes the notification and answers 6 s later (a busy self-hosted ntfy,
    a webhook doing its work first): Apprise gave up reading after 4 s, so each notification
    was sent again, with backoff, until one answer came in time (4 copies seen). The daemon
    asks Apprise to wait 30 s for an answer (a URL's own ``rto`` wins)."""
    webhook_receiver.answer_after_s = 6.0
    notifier = phone(notify=(target(webhook_receiver.url(), name="hook"),))
    notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    wait_for("the delivery", lambda: notifier.notify_status()["hook"]["sent"] >= 1, 60)
    assert len(webhook_receiver.posts) == 1
    assert notifier.notify_status()["hook"]["failed"] == 0


def test_a_service_that_never_answers_in_time_is_not_sent_each_notification_all_day(
    phone, webhook_receiver, caplog
) -> None:
    """A relay that takes each notification and answers after Apprise stopped reading: every
    retry (backing off up to 5 min, for a day) delivered the same alert again, and /status
    said it could not connect. Sent twice unanswered, it is taken as delivered, and said so."""
    webhook_receiver.answer_after_s = 2.5
    notifier = phone(notify=(target(webhook_receiver.url() + "?rto=1", name="hook"),))
    notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    wait_for("taken as delivered", lambda: notifier.notify_status()["hook"]["unconfirmed"] == 1, 60)
    status = notifier.notify_status()["hook"]
    assert status["sent"] == 0, status  # not said delivered: the service never said so
    assert status["pending"] == 0 and "gave no answer in time" in status["last_error"], status
    assert "taken as delivered" in caplog.text
    time.sleep(3)  # more than the test backoff's longest wait: no copy after that
    assert len(webhook_receiver.posts) == 2


def test_a_pause_that_failed_names_the_printer_not_the_request_the_log_names() -> None:
    """The phone read "the pause failed: GET http://127.0.0.1:43311/api/printer?exclude=
    temperature,sd: no whole answer within 3 s (timeout)": the request is the log's."""
    from watchdog.comms.notify import alert_event

    failed = alert(outcome="failed")
    failed["action_result"]["detail"] = (
        "GET http://127.0.0.1:43311/api/printer?exclude=temperature,sd: no whole answer "
        "within 3 s (timeout)"
    )
    event = alert_event(failed, jpeg(1), jpeg(2))
    assert "but the pause failed: 127.0.0.1:43311: no whole answer within 3 s (timeout). " in (
        event.message
    ), event.message
    assert "GET" not in event.message and "/api/" not in event.message


def test_an_alert_held_back_says_what_became_of_its_print_since_and_offers_no_resume(
    phone, ntfy_receiver, tmp_path
) -> None:
    """A second alert held back by ``coalesce_s`` (or by a service that was down), its print
    cancelled meanwhile: it arrived minutes later saying "paused", with Resume and Cancel
    buttons that only answered "answered already"."""
    from watchdog.incidents import record_answer

    notifier = phone(
        notify=(target(ntfy_receiver.url("t"), actions_url="http://pi.lan:8787", coalesce_s=3),)
    )
    answers = {"answers": ["resume", "cancel"]}
    notifier.raise_alert(PRINTER, {**alert(), **answers}, jpeg(1), jpeg(2))
    wait_for("the first alert", lambda: len(ntfy_receiver.messages) == 1)
    # a printer told only (``action: notify``): "still printing" was said of a cancelled print
    second = notifier.raise_alert(PRINTER, {**alert(action="notify"), **answers}, jpeg(3), jpeg(4))
    record_answer(tmp_path, PRINTER, second, "cancelled")  # at the printer, before it was sent
    wait_for("the second alert", lambda: len(ntfy_receiver.messages) == 2, 30)
    first, held = ntfy_receiver.messages
    assert [a["label"] for a in first.actions] == ["Not a failure", "Resume", "Cancel"]
    assert held.title == "ender3: print failure · since cancelled", held.title
    assert "still printing" not in held.message
    assert "Since then: cancelled." in held.message
    # news of the past: it woke the owner at the highest priority, "Check the printer now"
    assert (held.priority, first.priority) == ("default", "high"), (held.priority, first.priority)
    assert "Check the printer now" not in held.message, held.message
    assert [a["label"] for a in held.actions] == ["Not a failure"]


def test_an_alert_told_after_a_restart_says_when_it_happened(phone, ntfy_receiver) -> None:
    """An alert raised before a restart (a pause whose end the restart cut short, told by the
    next start): it arrived with no time in it, read as happening now."""
    then = datetime.now().astimezone() - timedelta(minutes=10)
    notifier = phone(notify=(target(ntfy_receiver.url("t")),))
    notifier.raise_alert(PRINTER, {**alert(), "time": then.isoformat()}, jpeg(1), jpeg(2))
    assert notifier.notifications.flush(30)
    [msg] = ntfy_receiver.messages
    assert msg.message.splitlines()[1] == f"(at {_clock_time(then)})", msg.message


def _alert_queued_ten_minutes_ago(phone, ntfy_receiver, storage: Path, url: str) -> dict:
    """An alert left in the outbox by a run whose service was down, dated ten minutes back:
    its outbox record."""
    alert_left_queued(phone, ntfy_receiver, url)
    [entry] = (storage / "outbox").glob("notify-*/*/entry.json")
    record = json.loads(entry.read_text())
    record["body"]["since"] -= 600
    entry.write_text(json.dumps(record))
    return record


def test_an_alert_delivered_long_after_it_says_when_it_happened(
    phone, ntfy_receiver, tmp_path
) -> None:
    """An alert kept while its service was down (here: queued ten minutes before this run)
    arrived with no time in it, read as happening now."""
    url = ntfy_receiver.url("t")
    record = _alert_queued_ten_minutes_ago(phone, ntfy_receiver, tmp_path, url)
    later = phone(notify=(target(url),))
    assert later.notifications.flush(30), later.notify_status()
    [msg] = ntfy_receiver.messages
    at = datetime.fromtimestamp(record["body"]["since"])
    assert msg.message.splitlines()[1] == f"(at {_clock_time(at)})", msg.message
    # and its title, which a lock screen shows alone: it read as happening now
    assert msg.title.endswith(f" (at {_clock_time(at)})"), msg.title


def test_an_alert_told_late_whose_print_ended_says_when_it_happened_before_what_became_of_it(
    phone, ntfy_receiver, tmp_path
) -> None:
    """Told ten minutes late, its print cancelled meanwhile: the time went after "· since
    cancelled", where a lock screen read it as the time of the cancel."""
    from watchdog.incidents import record_answer

    url = ntfy_receiver.url("t")
    record = _alert_queued_ten_minutes_ago(phone, ntfy_receiver, tmp_path, url)
    record_answer(tmp_path, PRINTER, record["body"]["incident"], "cancelled")
    later = phone(notify=(target(url),))
    assert later.notifications.flush(30), later.notify_status()
    [msg] = ntfy_receiver.messages
    at = datetime.fromtimestamp(record["body"]["since"])
    assert msg.title == f"ender3: print failure (at {_clock_time(at)}) · since cancelled"


def _clock_time(at: datetime) -> str:
    """The machine's clock time and its zone's name ("14:03 UTC"), the day too if not today."""
    at = at.astimezone()
    day = "" if at.date() == datetime.now().date() else at.strftime("%Y-%m-%d ")
    return f"{day}{at:%H:%M} {at.tzname()}"


def test_an_alert_saved_before_ntp_set_the_clock_says_the_time_it_happened(
    phone, ntfy_receiver
) -> None:
    """An alert saved on the clock a Pi booted with (3 days behind), told after NTP set it
    (a pause a restart cut short): its boot mark put its age right, but the phone read
    "(at <3 days ago>)" of an alert ten minutes old."""
    from watchdog import moments
    from watchdog.comms.notify import alert_event
    from watchdog.incidents import BOOT

    real = datetime.now().astimezone() - timedelta(minutes=10)
    saved = {
        **alert(),
        "time": (real - timedelta(days=3)).isoformat(),
        BOOT: moments.BootMark(moments.boot_id(), moments.uptime() - 600).to_json(),
    }
    notifier = phone(notify=(target(ntfy_receiver.url("t")),))
    # as a start tells the phones of an alert an earlier run saved (its draft settled)
    notifier.notifications.notify(alert_event(saved, jpeg(1), jpeg(2)))
    assert notifier.notifications.flush(30)
    [msg] = ntfy_receiver.messages
    assert msg.message.splitlines()[1] == f"(at {_clock_time(real)})", msg.message


def test_a_notification_queued_before_ntp_set_the_clock_says_when_it_happened(
    phone, ntfy_receiver, tmp_path, monkeypatch
) -> None:
    """Queued ten minutes before the restart on a clock 3 days behind, sent after NTP set
    it: the phone read "(at <3 days ago>)"."""
    skew = stepped_wall_clock(monkeypatch, -3 * 86400.0)
    url = ntfy_receiver.url("t")
    alert_left_queued(phone, ntfy_receiver, url)
    [entry] = (tmp_path / "outbox").glob("notify-*/*/entry.json")
    record = json.loads(entry.read_text())
    record["body"]["since"] = record["created"] - 600  # both on the clock of then
    entry.write_text(json.dumps(record))
    skew[0] = 0.0
    later = phone(notify=(target(url),))
    assert later.notifications.flush(30), later.notify_status()
    [msg] = ntfy_receiver.messages
    real = datetime.fromtimestamp(record["body"]["since"] + 3 * 86400.0)
    assert msg.message.splitlines()[1] == f"(at {_clock_time(real)})", msg.message


def test_a_401_is_reported_once_and_the_other_targets_are_served(
    phone, ntfy_receiver, webhook_receiver, tmp_path, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    ntfy_receiver.refuse(401)
    notifier = phone(
        notify=(
            target(ntfy_receiver.url("t", "bob", NTFY_PASSWORD), coalesce_s=0),
            target(webhook_receiver.url("hook", "hook", HOOK_PASSWORD), coalesce_s=0),
        ),
    )
    notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    wait_for("the webhook", lambda: len(webhook_receiver.posts) == 1)
    wait_for("the refusal", lambda: notifier.notify_status()["ntfy"]["rejected"])
    notifier.raise_alert(PRINTER, alert(score=0.95), jpeg(3), jpeg(4))
    wait_for("the second webhook post", lambda: notifier.notify_status()["json"]["sent"] == 2)
    assert len(webhook_receiver.posts) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors
    assert "notify ntfy (ntfy://)" in errors[0] and "unauthorized" in errors[0].lower()
    assert "credentials" in errors[0]
    status = notifier.notify_status()
    # the second alert replaced the waiting first one (coalesced): one notification waits
    assert (status["ntfy"]["pending"], status["ntfy"]["coalesced"]) == (1, 1)
    assert status["ntfy"]["sent"] == 0 and status["ntfy"]["failed"] == 1
    assert status["json"]["sent"] == 2 and not status["json"]["rejected"]
    assert NTFY_PASSWORD not in caplog.text + json.dumps(status)


def test_a_notification_the_service_keeps_refusing_does_not_hold_back_the_others(
    phone, webhook_receiver, tmp_path
) -> None:
    """One alert the service refuses (too large, say) is tried again later; the alerts after
    it go out meanwhile instead of waiting behind it until it expires."""
    webhook_receiver.refuse_containing(b"voron", 413)
    notifier = phone(
        printers=("voron", PRINTER),
        notify=(target(webhook_receiver.url("hook"), coalesce_s=0),),
    )
    notifier.raise_alert("voron", {**alert(), "printer": "voron"}, jpeg(1), jpeg(2))
    wait_for("a refusal", lambda: notifier.notify_status()["json"]["failed"] >= 1)
    notifier.raise_alert(PRINTER, alert(), jpeg(3), jpeg(4))
    wait_for("the second printer's alert", lambda: webhook_receiver.posts, 30)
    assert [PRINTER in post["title"] for post in webhook_receiver.posts] == [True]
    wait_for("the refused one kept", lambda: notifier.notify_status()["json"]["pending"] == 1)


@pytest.mark.parametrize("service", ["json", "ntfy"])
def test_a_refused_notification_backing_off_does_not_delay_another_printers_alert(
    phone, webhook_receiver, ntfy_receiver, service
) -> None:
    """With the backoff's real lengths: each refusal of one printer's alert doubled a wait
    that held every notification of the target, and another printer's failure alert sat
    behind it for minutes. News not yet tried goes at once; what failed waits its turn (ntfy
    words its refusals with codes of its own, 40001)."""
    receiver = webhook_receiver if service == "json" else ntfy_receiver
    receiver.refuse(None, "invalid request")
    receiver.refuse_containing(b"voron", 400)  # that one alone: a bad request
    url = webhook_receiver.url("hook") if service == "json" else ntfy_receiver.url("t")
    notifier = phone(
        printers=("voron", PRINTER),
        notify=(target(url, coalesce_s=0, attach="none"),),
        notify_backoff=(120.0, 300.0),
    )
    notifier.raise_alert("voron", {**alert(), "printer": "voron"}, jpeg(1), jpeg(2))
    wait_for("a refusal", lambda: notifier.notify_status()[service]["failed"] >= 1)
    notifier.raise_alert(PRINTER, alert(), jpeg(3), jpeg(4))
    titles = lambda: [  # noqa: E731
        m["title"] if service == "json" else m.title
        for m in (receiver.posts if service == "json" else receiver.messages)
    ]
    wait_for("the second printer's alert", titles, 30)
    assert [PRINTER in title for title in titles()] == [True]
    wait_for("it counted sent", lambda: notifier.notify_status()[service]["sent"] == 1)
    status = notifier.notify_status()[service]
    assert (status["failed"], status["pending"]) == (1, 1), status  # tried once, kept


def test_a_service_down_is_not_tried_for_each_new_event_and_its_sender_waits(
    phone, webhook_receiver
) -> None:
    """A service down: each new event was tried at once, whatever the backoff (an Apprise
    child each, a second of a Pi's CPU), and with a print's end queued behind its refused
    alert the sender thread spun at 100% of a core for the whole outage."""
    webhook_receiver.refuse_containing(b"", 503)  # every notification
    notifier = phone(
        printers=("voron", PRINTER),
        notify=(
            target(webhook_receiver.url("hook"), coalesce_s=0, events=["failure", "print_done"]),
        ),
        notify_backoff=(120.0, 300.0),
    )
    notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    wait_for("a refusal", lambda: notifier.notify_status()["json"]["failed"] >= 1)
    notifier.print_done(PRINTER, "benchy.gcode")
    notifier.raise_alert("voron", {**alert(), "printer": "voron"}, jpeg(3), jpeg(4))
    time.sleep(1.5)
    assert webhook_receiver.requests == 1, webhook_receiver.requests
    [sender] = notifier.notifications.targets
    with sender._cond:  # as its thread asks: what is due, and how long to wait
        assert sender._next_due()[1] > 1.0


def test_a_picture_too_large_for_the_service_goes_as_text(phone, webhook_receiver, caplog) -> None:
    """A proxy before the service (nginx takes 1 MB) or Pushover (5 MB) refuses an alert for
    the size of its picture, "413": it was retried with the picture until dropped a day
    later. It goes as text, and the log says why the picture is missing."""
    webhook_receiver.refuse_containing(b"/9j/", 413)  # a JPEG, as base64 begins it
    notifier = phone(notify=(target(webhook_receiver.url("hook")),))
    notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    assert notifier.notifications.flush(30), notifier.notify_status()
    [post] = webhook_receiver.posts
    assert post["title"] == "ender3: print failure, paused" and not post.get("attachments")
    [said] = [r.getMessage() for r in caplog.records if "refused the picture" in r.getMessage()]
    assert "413" in said and "ntfy" not in said.split("://")[-1], said


def test_the_phone_ends_on_the_cameras_latest_state_after_a_refused_offline(
    phone, webhook_receiver, tmp_path
) -> None:
    """A "camera offline" the service refuses for a while, then the camera comes back: the
    phone's last camera news is "back online" (fewest-failed-first never lets an older
    notification of a printer's kind of news go out after a newer one)."""
    webhook_receiver.refuse_containing(b"camera offline", 503)
    notifier = phone(
        notify=(camera_target(webhook_receiver.url("hook"), 0, coalesce_s=0),),
    )
    notifier.camera_changed(PRINTER, online=False)
    wait_for("a refusal", lambda: notifier.notify_status()["json"]["failed"] >= 1)
    notifier.camera_changed(PRINTER, online=True)
    webhook_receiver.refused_bodies = None  # the service takes notifications again
    assert notifier.notifications.flush(60), notifier.notify_status()
    titles = [post["title"] for post in webhook_receiver.posts]
    assert titles and titles[-1] == "ender3: camera back online", titles
    # the outage is not hidden: summed up in the last news, or sent before it (when the
    # "back online" came while the sender was retrying the "offline", as on a busy machine)
    told = "1 earlier" in webhook_receiver.posts[-1]["message"]
    assert told or "ender3: camera offline" in titles[:-1], titles


@pytest.mark.parametrize("offset", [0, 236, 243, 250])
def test_a_complaint_echoing_the_urls_password_is_masked_before_it_is_cut(
    phone, ntfy_receiver, tmp_path, caplog, offset: int
) -> None:
    """A service whose refusal quotes the URL's password (Apprise passes ntfy's error text on)
    where the log line is cut at 300 characters: no piece of it reaches the log or status."""
    caplog.set_level(logging.DEBUG)
    ntfy_receiver.refuse(500, "x" * offset + NTFY_PASSWORD + " is not valid")
    targets = (target(ntfy_receiver.url("t", "bob", NTFY_PASSWORD)),)
    notifier = phone(notify=targets)
    notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    wait_for("the refusal", lambda: notifier.notify_status()["ntfy"]["failed"] >= 1)
    shown = caplog.text + json.dumps(notifier.notify_status())
    pieces = {NTFY_PASSWORD[i : i + 6] for i in range(len(NTFY_PASSWORD) - 5)}
    assert "***" in shown  # the complaint is shown, the password masked in it
    assert not [p for p in pieces if p in shown], shown[-2000:]


def _alert_left_unsent(phone, webhook_receiver, tmp_path) -> tuple:
    """A run whose alert the webhook refused, stopped with it in the outbox: the webhook
    target, and the entry's file."""
    webhook_receiver.refuse(503)
    targets = (target(webhook_receiver.url("hook"), coalesce_s=0),)
    first = phone(notify=targets)
    first.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    wait_for("a failed attempt", lambda: first.notify_status()["json"]["failed"] >= 1)
    first.stop()
    [saved] = outbox_entries(tmp_path, "notify-json")
    return targets, saved


def test_a_damaged_outbox_entry_does_not_stop_the_notifications(
    phone, webhook_receiver, tmp_path
) -> None:
    """An outbox file damaged or edited on disk (its send-after time not a number, its JSON
    nested beyond reason) neither ends the sender nor keeps the next alert from going out."""
    targets, saved = _alert_left_unsent(phone, webhook_receiver, tmp_path)
    record = json.loads(saved.read_text())
    record["body"]["not_before"] = "soon"
    saved.write_text(json.dumps(record))
    nested = saved.parent.parent / "00000000T000000000Z-nested"
    nested.mkdir()
    (nested / "entry.json").write_text("[" * 100_000)
    # a power cut while an entry was being written, weeks ago, and one being written now
    cut, writing = (saved.parent.parent / f".{name}.partial" for name in ("cut", "writing"))
    for folder in (cut, writing):
        folder.mkdir()
        (folder / "attachment.jpg").write_bytes(jpeg(5))
    os.utime(cut, (time.time() - 30 * 86400,) * 2)

    webhook_receiver.refuse(None)
    second = phone(notify=targets)
    second.raise_alert(PRINTER, alert(score=0.95), jpeg(3), jpeg(4))
    assert second.notifications.flush(30), second.notify_status()
    assert len(webhook_receiver.posts) == 2  # the damaged entry went out too: nothing lost
    assert not cut.exists() and writing.exists()  # left-overs do not fill the card


def test_a_link_put_in_place_of_an_alerts_picture_is_not_sent(
    phone, webhook_receiver, tmp_path
) -> None:
    """A link put where an alert's picture waits in the outbox (by something else able to
    write in the storage folder) was followed: the file it named went to the notification
    service as the alert's picture. The alert goes out without it."""
    targets, saved = _alert_left_unsent(phone, webhook_receiver, tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"SECRET-TOKEN-" * 10)
    (saved.parent / "attachment.jpg").unlink()
    (saved.parent / "attachment.jpg").symlink_to(secret)
    webhook_receiver.refuse(None)
    second = phone(notify=targets)
    assert second.notifications.flush(30), second.notify_status()
    [post] = webhook_receiver.posts
    assert "SECRET" not in json.dumps(post) and "U0VDUkVU" not in json.dumps(post)  # base64 too


def _camera_offline_left_by_a_stop(phone, webhook_receiver, tmp_path, **body: object) -> tuple:
    """A run whose "camera offline" waits out camera_offline_after_s when it stops, its saved
    entry's body then given ``body``; the camera-news target, for the next run."""
    targets = (camera_target(webhook_receiver.url("hook"), 60),)
    first = phone(notify=targets)
    first.camera_changed(PRINTER, False)  # waits out camera_offline_after_s
    first.stop()
    [saved] = outbox_entries(tmp_path, "notify-json")
    record = json.loads(saved.read_text())
    record["body"].update(body)
    saved.write_text(json.dumps(record))
    return targets


def test_a_notification_queued_before_ntp_set_the_clock_is_sent_after_a_restart(
    phone, ntfy_receiver, monkeypatch
) -> None:
    """The alert waited in the outbox for the service (the Wi-Fi not up yet) on the clock the
    Pi booted with, 3 days behind; NTP set it and the daemon restarted: the alert, a minute
    old, was dropped as "not delivered within 24 h"."""
    skew = stepped_wall_clock(monkeypatch, -3 * 86400.0)
    alert_left_queued(phone, ntfy_receiver, ntfy_receiver.url())
    skew[0] = 0.0
    again = phone(notify=(target(ntfy_receiver.url()),))
    wait_for("the alert", lambda: len(ntfy_receiver.messages) == 1)
    assert again.notify_status()["ntfy"]["dropped"] == 0


def test_a_cameras_blip_across_an_ntp_step_tells_the_phone_nothing(
    phone, ntfy_receiver, monkeypatch
) -> None:
    """A camera away for seconds, far under camera_offline_after_s, and NTP set the clock 3 h
    forward meanwhile: the "offline" looked due, and the phone got "camera offline" and
    "camera back online" for a blip it is meant never to hear of."""
    skew = stepped_wall_clock(monkeypatch, 0.0)
    notifier = phone(notify=(camera_target(ntfy_receiver.url(), 120),))
    notifier.camera_changed(PRINTER, online=False)
    time.sleep(0.5)
    skew[0] = 3 * 3600.0
    time.sleep(0.5)
    notifier.camera_changed(PRINTER, online=True)
    notifier.notifications.flush(10)
    assert [m.title for m in ntfy_receiver.messages] == []


def test_a_camera_offline_still_waiting_at_a_restart_is_not_sent_by_the_next_run(
    phone, webhook_receiver, tmp_path
) -> None:
    """A "camera offline" waits out camera_offline_after_s in the outbox; the daemon restarts
    meanwhile (an upgrade, a crash). The next run sent it when due, though its camera may be
    fine, and no "back online" ever followed: the phone said the print was not watched while
    it was. The camera is judged afresh by the next run instead."""
    # due while the daemon was down: the same
    targets = _camera_offline_left_by_a_stop(phone, webhook_receiver, tmp_path, not_before=0.0)
    second = phone(notify=targets)
    assert outbox_entries(tmp_path, "notify-json") == []
    assert second.notifications.flush(10) and not webhook_receiver.posts
    second.camera_changed(PRINTER, False)  # still offline in this run: told in its time
    assert len(outbox_entries(tmp_path, "notify-json")) == 1


def test_a_damaged_camera_notification_on_disk_does_not_break_the_next_camera_news(
    phone, webhook_receiver, tmp_path
) -> None:
    """Camera news waiting in the outbox across a restart (an "offline" that sums up
    others: kept), its file damaged: the camera's next news is still taken (it was a
    ValueError inside the watcher's step)."""
    targets = _camera_offline_left_by_a_stop(
        phone, webhook_receiver, tmp_path, not_before="later", since=[], coalesced=2
    )

    second = phone(notify=targets)
    second.camera_changed(PRINTER, True)
    assert second.notifications.flush(30), second.notify_status()
    assert webhook_receiver.posts  # told, not stuck


def test_a_printers_repeated_events_are_coalesced_never_a_storm(
    phone, ntfy_receiver, tmp_path
) -> None:
    notifier = phone(
        notify=(
            target(
                ntfy_receiver.url(),
                events=["failure", "camera_offline"],
                coalesce_s=2,
                camera_offline_after_s=0,
            ),
        ),
    )
    for i in range(6):
        notifier.raise_alert(PRINTER, alert(score=0.9 + i / 100), jpeg(i), jpeg(i))
    for online in (False, True, False, True):  # a flapping camera
        notifier.camera_changed(PRINTER, online)
    assert notifier.notifications.flush(60)
    alerts = [m for m in ntfy_receiver.messages if "failure" in m.title]
    camera = [m for m in ntfy_receiver.messages if "camera" in m.title]
    assert 1 <= len(alerts) <= 2 and 1 <= len(camera) <= 2

    # every event is accounted for: each message says how many earlier ones it sums up
    def counted(messages) -> int:
        total = 0
        for m in messages:
            total += 1
            if "earlier" in m.message:
                total += int(m.message.split("\n(")[1].split(" earlier")[0])
        return total

    assert counted(alerts) == 6 and counted(camera) == 4
    # since when, in the machine's own clock time (it read as a UTC timestamp)
    summed = next(m.message for m in ntfy_receiver.messages if "earlier" in m.message)
    assert re.search(r" since \d\d:\d\d \S+, summed up here[;)]", summed), summed
    # in the owner's words, not the notifier's name for the group ("camera event(s)")
    assert re.search(
        r"\(\d earlier (alerts?|times? the camera went offline or came back) on ender3 since",
        summed,
    ), summed
    # a camera's changes say what they were (they read "camera changes")
    cameras = [m.message for m in ntfy_receiver.messages if "earlier time" in m.message]
    assert cameras and all("the camera went offline or came back" in t for t in cameras), cameras
    assert alerts[-1].attachment == jpeg(5), "the latest picture is the one sent"
    assert camera[-1].title == "ender3: camera back online", "the last state wins"
    # its "offline" summed up in it: that the print went unwatched is said
    assert "; the print was not watched while the camera was offline)" in camera[-1].message
    status = notifier.notify_status()["ntfy"]
    assert status["coalesced"] == 10 - len(ntfy_receiver.messages) and status["sent"] == len(
        ntfy_receiver.messages
    )


def test_a_pause_found_not_to_have_happened_is_told_at_once_unless_its_owner_answered(
    phone, ntfy_receiver, tmp_path
) -> None:
    """The correction of an alert ("the pause did NOT happen") waits for no coalescing window,
    also where an alert of the printer is waiting one out (it replaces it: the newest truth);
    an alert its owner has answered already (resumed, not a failure) is corrected on its card
    only: they decided what becomes of the print."""
    from watchdog.incidents import record_answer

    notifier = phone(notify=(target(ntfy_receiver.url(), coalesce_s=600),))

    def corrected(incident: str) -> dict:
        failed = {"action": "pause", "outcome": "failed", "detail": "still printing", "attempts": 1}
        return alert() | {
            "incident": incident,
            "action_result": failed,
            "answers": ["cancel"],
            "message": "pause failed",
        }

    notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(1))
    wait_for("the first alert", lambda: len(ntfy_receiver.messages) == 1, timeout=30)
    second = notifier.raise_alert(PRINTER, alert(), jpeg(2), jpeg(2))  # waits out the window
    notifier.correct_alert(PRINTER, corrected(second))
    wait_for("the correction", lambda: len(ntfy_receiver.messages) == 2, timeout=30)
    told = ntfy_receiver.messages[1]
    assert told.title == "ender3: failure, and the pause did NOT happen", told.title
    assert told.attachment == jpeg(2)
    # one alert, told once: not "1 earlier alert ... summed up here" of itself
    assert "earlier" not in told.message, told.message
    saved = json.loads((tmp_path / "incidents" / PRINTER / second / "alert.json").read_text())
    assert saved["action_result"]["outcome"] == "failed" and saved["answers"] == ["cancel"]

    third = notifier.raise_alert(PRINTER, alert(), jpeg(3), jpeg(3))
    record_answer(tmp_path, PRINTER, third, "resumed")
    notifier.correct_alert(PRINTER, corrected(third))
    saved = json.loads((tmp_path / "incidents" / PRINTER / third / "alert.json").read_text())
    assert saved["action_result"]["outcome"] == "failed" and saved["answer"] == "resumed"
    time.sleep(2)
    pending = notifier.notify_status()["ntfy"]["pending"]
    assert len(ntfy_receiver.messages) == 2 and pending == 1  # the third alert waits its window


def test_a_pause_that_shows_after_not_a_failure_was_pressed_is_told_to_the_phone(
    phone, ntfy_receiver, tmp_path
) -> None:
    """The watchdog's pause was sent and not answered in time (a Klipper PAUSE behind a
    heat-up); the owner saw the print going fine and pressed Not a failure; then the printer
    paused. The correction saying so was held back as that of an answered alert: the print
    stood paused all night (its heaters turned off by Klipper's idle timeout), the phone silent.
    One saying the pause did NOT happen is still held back: the owner decided already."""
    from watchdog.incidents import mark_not_failure, record_answer

    notifier = phone(notify=(target(ntfy_receiver.url(), coalesce_s=0),))

    def result(outcome: str) -> dict:
        return {"action": "pause", "outcome": outcome, "detail": "late", "attempts": 4}

    unknown = alert() | {"action_result": result("unknown"), "message": "pause unknown"}
    first = notifier.raise_alert(PRINTER, unknown, jpeg(1), jpeg(1))
    wait_for("the alert", lambda: len(ntfy_receiver.messages) == 1, timeout=30)
    mark_not_failure(tmp_path, PRINTER, first)
    notifier.correct_alert(
        PRINTER, unknown | {"incident": first, "action_result": result("failed"), "answers": []}
    )
    shown = {"incident": first, "action_result": result("done"), "answers": ["resume", "cancel"]}
    notifier.correct_alert(PRINTER, unknown | shown | {"message": "pause done"})
    wait_for("the pause told", lambda: len(ntfy_receiver.messages) == 2, timeout=30)
    assert "did NOT" not in ntfy_receiver.messages[1].title, ntfy_receiver.messages[1].title
    assert "paused" in ntfy_receiver.messages[1].title, ntfy_receiver.messages[1].title
    # a cancel found done after its owner cancelled the print: the same news, not told twice
    cancel = {"action": "cancel", "outcome": "unknown", "detail": "late", "attempts": 4}
    unsure = alert() | {"action": "cancel", "action_result": cancel, "message": "cancel unknown"}
    second = notifier.raise_alert(PRINTER, unsure, jpeg(2), jpeg(2))
    wait_for("the second alert", lambda: len(ntfy_receiver.messages) == 3, timeout=30)
    record_answer(tmp_path, PRINTER, second, "cancelled")
    notifier.correct_alert(
        PRINTER,
        unsure | {"incident": second, "action_result": cancel | {"outcome": "done"}, "answers": []},
    )
    time.sleep(2)
    assert len(ntfy_receiver.messages) == 3, [m.title for m in ntfy_receiver.messages]


def test_an_alert_after_the_last_one_was_answered_waits_for_no_window(
    phone, ntfy_receiver, tmp_path
) -> None:
    """The owner cancelled the print of an alert from the phone and started another, which
    failed and was paused a minute later: its alert waited out the last one's coalesce window,
    the printer paused with nobody told. An answered alert's window holds nothing back; an
    open one's still sums a storm up."""
    from watchdog.incidents import record_answer

    notifier = phone(notify=(target(ntfy_receiver.url(), coalesce_s=600),))
    first = notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(1))
    wait_for("the first alert", lambda: len(ntfy_receiver.messages) == 1, timeout=30)
    record_answer(tmp_path, PRINTER, first, "cancelled")  # from the phone
    notifier.raise_alert(PRINTER, alert(), jpeg(2), jpeg(2))  # the next print's
    wait_for("the next print's alert", lambda: len(ntfy_receiver.messages) == 2, timeout=30)
    assert ntfy_receiver.messages[1].attachment == jpeg(2)
    notifier.raise_alert(PRINTER, alert(), jpeg(3), jpeg(3))  # the same print's, unanswered
    time.sleep(2)
    assert len(ntfy_receiver.messages) == 2 and notifier.notify_status()["ntfy"]["pending"] == 1


def test_a_print_that_ends_while_an_alert_waits_its_window_is_told_after_the_alert(
    phone, ntfy_receiver
) -> None:
    """A second alert held back by ``coalesce_s``, then the print ended: "print done" went at
    once and the alert minutes after it, read as a failure of the next print. The end is
    told after the alert, and the alert no longer waits: its print is over."""
    notifier = phone(
        notify=(target(ntfy_receiver.url(), coalesce_s=600, events=["failure", "print_done"]),)
    )
    notifier.raise_alert(PRINTER, alert(action="notify"), jpeg(1), jpeg(1))
    wait_for("the first alert", lambda: len(ntfy_receiver.messages) == 1, timeout=30)
    notifier.raise_alert(PRINTER, alert(action="notify", score=0.95), jpeg(2), jpeg(2))
    time.sleep(1)
    assert len(ntfy_receiver.messages) == 1  # the second waits out the first's window
    notifier.print_done(PRINTER, "benchy.gcode")
    wait_for("the alert and the end", lambda: len(ntfy_receiver.messages) == 3, timeout=30)
    held, done = ntfy_receiver.messages[1:]
    assert held.attachment == jpeg(2) and "print failure" in held.title, held.title
    assert done.title.startswith(f"{PRINTER}: print"), done.title
    assert "failure" not in done.title


def _refusing_print_news(phone, ntfy_receiver, on_its_way: bool):
    """A notifier of failures and print ends whose service refuses them for now (``on_its_way``:
    answering each 1.5 s late), with no window between them."""
    ntfy_receiver.refuse(503, "busy")
    if on_its_way:
        ntfy_receiver.answer_after_s = 1.5
    return phone(
        notify=(target(ntfy_receiver.url(), coalesce_s=0, events=["failure", "print_done"]),)
    )


def _refused_or_on_its_way(notifier, ntfy_receiver, on_its_way: bool) -> None:
    """Until the refusing service refused the first notification, or (``on_its_way``, a slow
    service) took it and has not answered yet."""
    if on_its_way:
        wait_for("the first on its way", lambda: ntfy_receiver.requests >= 1, timeout=30)
    else:
        wait_for("a refusal", lambda: notifier.notify_status()["ntfy"]["failed"] >= 1, timeout=30)


def _taken_after_the_refusal(notifier, ntfy_receiver, on_its_way: bool) -> None:
    """The first notification refused (the news since came while it was on its way), then
    the service takes them all."""
    if on_its_way:
        assert notifier.notify_status()["ntfy"]["failed"] == 0  # still on its way
        wait_for("the refusal", lambda: notifier.notify_status()["ntfy"]["failed"] >= 1, timeout=30)
    ntfy_receiver.answer_after_s = 0.0
    ntfy_receiver.refuse(None)
    assert notifier.notifications.flush(60), notifier.notify_status()


@pytest.mark.parametrize("on_its_way", [False, True])
def test_a_refused_alert_is_never_summed_up_with_the_next_prints_after_the_end(
    phone, ntfy_receiver, on_its_way
) -> None:
    """A print's alert the service refused (waiting for its retry, or on its way to a slow
    service), the print's end, then the next print's alert: that alert summed up the first,
    after the end, and the phone was told "print ended" then the earlier print's failure as the
    next print's, its picture lost."""
    notifier = _refusing_print_news(phone, ntfy_receiver, on_its_way)
    notifier.raise_alert(PRINTER, alert(action="notify"), jpeg(1), jpeg(1))
    _refused_or_on_its_way(notifier, ntfy_receiver, on_its_way)
    notifier.print_done(PRINTER, "benchy.gcode")
    notifier.raise_alert(PRINTER, alert(action="notify", score=0.95), jpeg(2), jpeg(2))
    _taken_after_the_refusal(notifier, ntfy_receiver, on_its_way)
    first, done, second = ntfy_receiver.messages
    assert first.attachment == jpeg(1) and "failure" in first.title, first.title
    assert done.title.startswith(f"{PRINTER}: print") and "failure" not in done.title
    assert second.attachment == jpeg(2) and "earlier" not in second.message, second.message


@pytest.mark.parametrize("on_its_way", [False, True])
def test_a_refused_print_end_is_never_summed_up_with_the_next_prints_end(
    phone, ntfy_receiver, on_its_way
) -> None:
    """A print's end the service refused, the next print's failure, then that print's end:
    the second end summed up the first, and the phone was told the failure first, then both
    ends after it."""
    notifier = _refusing_print_news(phone, ntfy_receiver, on_its_way)
    notifier.print_done(PRINTER, "first.gcode")
    _refused_or_on_its_way(notifier, ntfy_receiver, on_its_way)
    notifier.raise_alert(PRINTER, alert(action="notify", score=0.95), jpeg(2), jpeg(2))
    notifier.print_done(PRINTER, "second.gcode")
    _taken_after_the_refusal(notifier, ntfy_receiver, on_its_way)
    told = [(m.title, m.message) for m in ntfy_receiver.messages]
    assert len(told) == 3 and not any("earlier" in text for _, text in told), told
    ends = [text for title, text in told if "failure" not in title]
    assert "first.gcode" in ends[0] and "second.gcode" in ends[1], told
    assert "failure" not in told[-1][0], told  # the second end waits behind its print's alert


@pytest.mark.parametrize("refused", [True, False])
def test_a_printers_error_is_never_summed_up_with_the_next_prints_end(
    phone, ntfy_receiver, refused
) -> None:
    """A print stopped by the printer's error (refused by the service, or waiting out the
    window of an end told just before), then the next print's end: the error was summed up
    into "print cancelled", at its low priority, and the phone never heard of it."""
    if refused:
        ntfy_receiver.refuse(503, "busy")
    kw = {"coalesce_s": 0 if refused else 2, "events": ["print_done"]}
    notifier = phone(notify=(target(ntfy_receiver.url(), **kw),))
    if not refused:
        notifier.print_done(PRINTER, "zero.gcode")
        wait_for("the first end", lambda: notifier.notify_status()["ntfy"]["sent"] == 1, 30)
    notifier.print_done(PRINTER, "bracket.gcode", "Heater extruder not heating at expected rate")
    if refused:
        wait_for("a refusal", lambda: notifier.notify_status()["ntfy"]["failed"] >= 1, 30)
    notifier.print_done(PRINTER, "benchy.gcode")
    ntfy_receiver.refuse(None)
    assert notifier.notifications.flush(60), notifier.notify_status()
    told = [(m.title, m.message, m.priority) for m in ntfy_receiver.messages][-2:]
    assert len(told) == 2 and not any("earlier" in text for _, text, _ in told), told
    (_, error, loud), (_, end, _) = told
    assert "bracket.gcode" in error and "not heating" in error and loud == "high", told
    assert "benchy.gcode" in end, told


def test_a_print_end_left_queued_at_a_restart_is_never_summed_up_with_the_next_prints(
    phone, ntfy_receiver
) -> None:
    """A print's end the service kept refusing, the next print's failure told, a restart, then
    that print's end: it summed up the first (what was sent before the restart is not known)."""
    ntfy_receiver.refuse_containing(b"has ended", 503)
    ntfy_receiver.error = "busy"  # not a refusal of the credentials: the others go through
    kw = {"coalesce_s": 0, "events": ["failure", "print_done"]}
    first = phone(notify=(target(ntfy_receiver.url(), **kw),))
    first.print_done(PRINTER, "one.gcode")
    wait_for("a refusal", lambda: first.notify_status()["ntfy"]["failed"] >= 1, timeout=30)
    first.raise_alert(PRINTER, alert(action="notify", score=0.95), jpeg(2), jpeg(2))
    wait_for("the failure", lambda: first.notify_status()["ntfy"]["sent"] == 1, timeout=30)
    first.stop()
    second = phone(notify=(target(ntfy_receiver.url(), **kw),))
    second.print_done(PRINTER, "two.gcode")  # the first still refused, queued beside it
    wait_for("a refusal", lambda: second.notify_status()["ntfy"]["failed"] >= 1, timeout=30)
    ntfy_receiver.refused_bodies = None
    assert second.notifications.flush(60), second.notify_status()
    told = [(m.title, m.message) for m in ntfy_receiver.messages]
    assert len(told) == 3 and not any("earlier" in text for _, text in told), told
    assert "one.gcode" in told[1][1] and "two.gcode" in told[2][1], told


def test_a_print_end_waiting_its_window_is_never_summed_up_across_the_next_prints_alert(
    phone, ntfy_receiver
) -> None:
    """Two prints ending within ``coalesce_s``, the second's end waiting out the window, then
    a third print's failure sent and its end: that end summed up the second's across the
    failure, and the phone read both ends as after it."""
    notifier = phone(
        notify=(target(ntfy_receiver.url(), coalesce_s=3, events=["failure", "print_done"]),)
    )
    notifier.print_done(PRINTER, "one.gcode")
    wait_for("the first end", lambda: len(ntfy_receiver.messages) == 1, timeout=30)
    notifier.print_done(PRINTER, "two.gcode")  # within the window: it waits
    notifier.raise_alert(PRINTER, alert(action="notify", score=0.95), jpeg(2), jpeg(2))
    wait_for("the failure", lambda: len(ntfy_receiver.messages) == 2, timeout=30)
    notifier.print_done(PRINTER, "three.gcode")
    assert notifier.notifications.flush(60), notifier.notify_status()
    told = [(m.title, m.message) for m in ntfy_receiver.messages]
    assert len(told) == 4 and not any("earlier" in text for _, text in told), told
    assert "two.gcode" in told[2][1] and "three.gcode" in told[3][1], told


def test_a_camera_is_reported_offline_only_after_a_while_and_then_back(
    phone, ntfy_receiver, tmp_path
) -> None:
    notifier = phone(
        notify=(camera_target(ntfy_receiver.url(), 1.5),),
    )
    notifier.camera_changed(PRINTER, online=False)  # a hiccup: back within the grace time
    notifier.camera_changed(PRINTER, online=True)
    assert notifier.notify_status()["ntfy"]["pending"] == 0
    assert outbox_entries(tmp_path, "notify-ntfy") == []
    notifier.camera_changed(PRINTER, online=False)  # a real outage
    wait_for("the offline notification", lambda: ntfy_receiver.messages, timeout=30)
    notifier.camera_changed(PRINTER, online=True)
    wait_for("the back-online notification", lambda: len(ntfy_receiver.messages) == 2, timeout=30)
    assert [m.title for m in ntfy_receiver.messages] == [
        "ender3: camera offline",
        "ender3: camera back online",
    ]


def test_a_camera_told_offline_is_told_back_online_after_a_restart(
    phone, ntfy_receiver, tmp_path
) -> None:
    """The phone was told the camera is offline, the watchdog restarted, the camera came
    back: the phone's last word stayed "the print is not watched" (what was sent was kept in
    memory only). A camera the phone was never told offline is not told back."""
    first = phone(notify=(camera_target(ntfy_receiver.url(), 0),))
    first.camera_changed(PRINTER, online=False, why="cannot connect")
    wait_for("the offline sent", lambda: first.notify_status()["ntfy"]["sent"] == 1, timeout=30)
    first.stop()
    again = phone(notify=(camera_target(ntfy_receiver.url(), 0),))
    again.camera_changed("prusa", online=True)  # its first frame after the start: no news
    again.camera_changed(PRINTER, online=True)
    assert again.notifications.flush(60), again.notify_status()
    assert [m.title for m in ntfy_receiver.messages] == [
        "ender3: camera offline",
        "ender3: camera back online",
    ]
    assert "not watched" not in ntfy_receiver.messages[-1].message
    again.stop()
    # told back online: after the next restart, a first frame is no news again
    third = phone(notify=(camera_target(ntfy_receiver.url(), 0),))
    third.camera_changed(PRINTER, online=True)
    assert third.notifications.flush(60) and len(ntfy_receiver.messages) == 2
    third.camera_changed(PRINTER, online=False, why="cannot connect")
    wait_for("offline again", lambda: third.notify_status()["ntfy"]["sent"] == 1, timeout=30)
    third.stop()
    # a restart while the camera still comes up: its first read fails, then it is back
    # within camera_offline_after_s, a hiccup to a phone that was told it was online
    fourth = phone(notify=(camera_target(ntfy_receiver.url(), 60),))
    fourth.camera_changed(PRINTER, online=False, why="cannot connect")
    fourth.camera_changed(PRINTER, online=True)
    assert fourth.notifications.flush(60), fourth.notify_status()
    assert [m.title for m in ntfy_receiver.messages][-2:] == [
        "ender3: camera offline",
        "ender3: camera back online",
    ], [m.title for m in ntfy_receiver.messages]


def test_a_hiccup_while_back_online_is_on_its_way_is_not_told_back_online_twice(
    phone, ntfy_receiver
) -> None:
    """The camera is back and its "back online" is on its way to a slow service when the camera
    drops and returns within camera_offline_after_s: the phone was told "back online" twice,
    the second two minutes later, with nothing between."""
    notifier = phone(notify=(camera_target(ntfy_receiver.url(), 0.5),))
    notifier.camera_changed(PRINTER, online=False, why="cannot connect")
    wait_for("offline sent", lambda: notifier.notify_status()["ntfy"]["sent"] == 1, timeout=30)
    ntfy_receiver.answer_after_s = 2.0  # the "back online" stays on its way a while
    notifier.camera_changed(PRINTER, online=True)
    wait_for("back online on its way", lambda: ntfy_receiver.requests >= 2, timeout=30)
    notifier.camera_changed(PRINTER, online=False, why="cannot connect")  # a hiccup meanwhile
    notifier.camera_changed(PRINTER, online=True)
    ntfy_receiver.answer_after_s = 0.0
    wait_for("back online sent", lambda: notifier.notify_status()["ntfy"]["sent"] == 2, timeout=30)
    assert notifier.notifications.targets[0].queued() == []
    assert [m.title for m in ntfy_receiver.messages] == [
        "ender3: camera offline",
        "ender3: camera back online",
    ]


def test_a_camera_offline_just_before_its_print_ended_is_not_sent(
    phone, ntfy_receiver, tmp_path
) -> None:
    """The camera drops 20 s before the print ends (end G-code cutting a USB hub's power):
    its "offline" waited out camera_offline_after_s and was sent after the print had ended,
    saying the print was not watched, and a "back online" came at the next print."""
    notifier = phone(
        notify=(camera_target(ntfy_receiver.url(), 1.5),),
    )
    notifier.camera_changed(PRINTER, online=False)
    assert notifier.camera_unwatched(PRINTER)  # the print ended while it waited
    notifier.camera_changed(PRINTER, online=True)  # the next print: the camera is back
    time.sleep(2.0)
    assert notifier.notifications.flush(10) and ntfy_receiver.messages == []
    assert outbox_entries(tmp_path, "notify-ntfy") == []


def test_an_offline_one_target_sent_is_answered_there_when_another_target_withdrew_it(
    phone, ntfy_receiver, webhook_receiver
) -> None:
    """Each target waits its own camera_offline_after_s: when the print ends, one may have
    sent "offline" while another still waits. Withdrawn at the second, the camera was judged
    afresh, and the first target's owner never got "back online"."""
    notifier = phone(
        notify=(
            camera_target(ntfy_receiver.url(), 0),
            camera_target(webhook_receiver.url("hook"), 300),
        ),
    )
    notifier.camera_changed(PRINTER, online=False)
    wait_for("ntfy's offline", lambda: len(ntfy_receiver.messages) == 1, timeout=30)
    assert not notifier.camera_unwatched(PRINTER)  # ntfy told it: the outage is not forgotten
    notifier.camera_changed(PRINTER, online=True)
    wait_for("ntfy's back online", lambda: len(ntfy_receiver.messages) == 2, timeout=30)
    assert notifier.notifications.flush(10)
    assert [m.title for m in ntfy_receiver.messages] == [
        "ender3: camera offline",
        "ender3: camera back online",
    ]
    assert webhook_receiver.posts == []  # withdrawn there, and nothing to answer


def test_a_notice_that_sums_up_others_is_not_withdrawn(phone, webhook_receiver) -> None:
    """The service refused the "offline" (retried with backoff), the camera came back and
    dropped again: one notification sums the three up. Withdrawn at the print's end, the
    owner's last news would have stayed the first "offline"."""
    webhook_receiver.refuse_containing(b"camera", 503)
    notifier = phone(
        notify=(camera_target(webhook_receiver.url("hook"), 1.0, coalesce_s=0),),
    )
    notifier.camera_changed(PRINTER, online=False)
    wait_for("a refusal", lambda: notifier.notify_status()["json"]["failed"] >= 1, timeout=30)
    notifier.camera_changed(PRINTER, online=True)
    notifier.camera_changed(PRINTER, online=False)
    assert not notifier.camera_unwatched(PRINTER)
    webhook_receiver.refused_bodies = None
    assert notifier.notifications.flush(60), notifier.notify_status()
    [post] = webhook_receiver.posts
    assert post["title"] == "ender3: camera offline" and "2 earlier" in post["message"], post


@pytest.mark.parametrize("back_online_only", [True, False])
def test_news_that_came_while_a_refused_notification_was_on_its_way_sums_it_up(
    phone, webhook_receiver, back_online_only
) -> None:
    """The camera came back (and dropped again) while its refused "offline" was still on its
    way to a slow service: the refused one went back to the queue beside the newer news. The
    phone then got two notifications, or one that counted one earlier event where it summed up
    two."""
    webhook_receiver.refuse_containing(b"camera", 503)
    webhook_receiver.answer_after_s = 1.5
    notifier = phone(
        notify=(camera_target(webhook_receiver.url("hook"), 0.2, coalesce_s=0),),
    )
    notifier.camera_changed(PRINTER, online=False)
    wait_for("the offline on its way", lambda: webhook_receiver.requests >= 1, timeout=30)
    notifier.camera_changed(PRINTER, online=True)
    if not back_online_only:
        notifier.camera_changed(PRINTER, online=False)
    assert notifier.notify_status()["json"]["failed"] == 0  # still on its way
    wait_for("the refusal", lambda: notifier.notify_status()["json"]["failed"] >= 1, timeout=30)
    if back_online_only:
        notifier.camera_changed(PRINTER, online=False)
    webhook_receiver.answer_after_s = 0.0
    webhook_receiver.refused_bodies = None
    assert notifier.notifications.flush(60), notifier.notify_status()
    [post] = webhook_receiver.posts
    assert post["title"] == "ender3: camera offline" and "2 earlier" in post["message"], post
    assert notifier.notify_status()["json"]["coalesced"] == 2


def test_undeliverable_notifications_are_dropped_after_max_age(
    ntfy_receiver, tmp_path, caplog
) -> None:
    caplog.set_level(logging.WARNING, "watchdog")
    ntfy_receiver.stop()
    registry = CollectorRegistry()
    notifier = Notifier(
        MqttConfig(),
        StorageConfig(dir=tmp_path),
        [PRINTER],
        registry=registry,
        notify=[target(ntfy_receiver.url(), max_age_h=0.0005)],
        notify_backoff=(0.2, 0.5),
    )
    notifier.start()
    try:
        notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
        wait_for("the drop", lambda: notifier.notify_status()["ntfy"]["dropped"] == 1, timeout=30)
    finally:
        notifier.stop()
    [line] = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert (
        "notify ntfy: dropped the failure notification about ender3" in line and "0.0005 h" in line
    )
    metrics = generate_latest(registry).decode()
    assert 'printer_watchdog_notifications_total{outcome="dropped",target="ntfy"} 1.0' in metrics
    assert 'printer_watchdog_notifications_pending{target="ntfy"} 0.0' in metrics
    assert outbox_entries(tmp_path, "notify-ntfy") == []


def test_a_clock_set_forward_or_back_neither_drops_nor_holds_back_a_notification(
    phone, ntfy_receiver
) -> None:
    """A Pi without a clock battery boots on a stale clock, and NTP then sets it days ahead: a
    notification queued meanwhile was dropped as "not delivered within 24 h" at once. A clock
    set back held the printer's next alert until the clock caught up with the last send. The
    target's wall clock is stepped here; the monotonic clock runs as it does."""
    ntfy_receiver.stop()
    notifier = phone(notify=(target(ntfy_receiver.url(), coalesce_s=5, max_age_h=1),))
    [sender] = notifier.notifications.targets
    notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    wait_for("a failed attempt", lambda: notifier.notify_status()["ntfy"]["failed"] >= 1)
    sender.wall = lambda: time.time() + 3 * 86400  # NTP: three days ahead
    failed = notifier.notify_status()["ntfy"]["failed"]
    wait_for("another attempt", lambda: notifier.notify_status()["ntfy"]["failed"] > failed)
    status = notifier.notify_status()["ntfy"]
    assert status["dropped"] == 0 and status["pending"] == 1, status
    ntfy_receiver.start()
    assert notifier.notifications.flush(60)
    sender.wall = lambda: time.time() - 2 * 86400  # set back two days after that send
    notifier.raise_alert(PRINTER, alert(score=0.95), jpeg(3), jpeg(4))
    wait_for("the next alert", lambda: len(ntfy_receiver.messages) == 2, timeout=30)
    assert [m.attachment for m in ntfy_receiver.messages] == [jpeg(2), jpeg(4)]


def test_a_late_notification_summing_up_others_says_when_its_latest_happened(
    phone, ntfy_receiver
) -> None:
    """A failure summed up with an earlier one and sent minutes late (its service down) said
    "since 15:50, summed up here" but not when the latest happened, as one sent alone late
    does ("(at 15:52)")."""
    ntfy_receiver.stop()
    notifier = phone(notify=(target(ntfy_receiver.url(), coalesce_s=60),))
    [sender] = notifier.notifications.targets
    notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    wait_for("a failed attempt", lambda: notifier.notify_status()["ntfy"]["failed"] >= 1)
    notifier.raise_alert(PRINTER, alert(score=0.95), jpeg(3), jpeg(4))
    sender.wall = lambda: time.time() + 300  # five minutes on, the service back
    ntfy_receiver.start()
    assert notifier.notifications.flush(60)
    [msg] = ntfy_receiver.messages
    assert re.search(r"summed up here; the latest at \d\d:\d\d \S+\)", msg.message), msg.message


# --------------------------------------------------------------------------- buttons


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def post(url: str, method: str = "POST") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def action_server(tmp_path):
    clock = FakeClock()
    tokens = ActionTokens(tmp_path, clock=clock, monotonic=clock)
    recorder = Recorder()
    handler = ActionHandler(tokens, recorder, tmp_path)
    server = StatusServer(
        "127.0.0.1:0",
        dict,
        CollectorRegistry(),
        lambda name: None,
        lambda: True,
        actions=handler.handle_action,
        describe_action=handler.describe,
    )
    server.start()
    yield server, tokens, recorder, clock
    server.stop()


def test_a_button_is_not_expired_by_the_clock_set_forward_after_it_was_issued(tmp_path) -> None:
    """A Pi without a clock chip starts on the time it was switched off (fake-hwclock) until
    NTP sets it: a notification sent before that, its clock set two days forward a minute
    later, answered "this button has expired" to the Cancel pressed then. Expiry is counted
    on the clock NTP does not move; a later run reads it on its own wall clock."""
    wall, mono = FakeClock(), FakeClock()
    tokens = ActionTokens(tmp_path, clock=wall, monotonic=mono)
    cancel = tokens.issue(PRINTER, "20261207T170000000Z-ab12", Verb.CANCEL, 24 * 3600)
    resume = tokens.issue(PRINTER, "20261207T170000000Z-ab12", Verb.RESUME, 24 * 3600)
    wall.now += 2 * 24 * 3600 + 60  # NTP
    mono.now += 60
    assert tokens.redeem(cancel).verb is Verb.CANCEL
    # saved then, on the wall clock of now: a run after a reboot a minute later takes the other
    later = ActionTokens(tmp_path, clock=wall, monotonic=FakeClock(), boot=lambda: "rebooted")
    wall.now += 60
    assert later.peek(resume).verb is Verb.RESUME
    mono.now += 24 * 3600  # and each still expires when it should
    with pytest.raises(ActionRefused, match="expired"):
        tokens.peek(resume)


def test_a_button_sent_before_ntp_set_the_clock_works_after_a_restart(
    tmp_path, monkeypatch
) -> None:
    """A phone's Cancel sent on the clock the Pi booted with, 3 days behind; NTP set it and
    the daemon restarted a minute later: the button answered "this button has expired"."""
    skew = stepped_wall_clock(monkeypatch, -3 * 86400.0)
    cancel = ActionTokens(tmp_path, clock=time.time).issue(
        PRINTER, "20261207T170000000Z-ab12", Verb.CANCEL, 24 * 3600
    )
    skew[0] = 0.0
    assert ActionTokens(tmp_path, clock=time.time).peek(cancel).verb is Verb.CANCEL
    short = ActionTokens(tmp_path).issue(PRINTER, "20261207T170000000Z-ab12", Verb.RESUME, 0.2)
    time.sleep(0.3)  # and one still expires when it should, also read by a later run
    with pytest.raises(ActionRefused, match="expired"):
        ActionTokens(tmp_path).peek(short)
    # a mark put centuries ahead in the file keeps no expired button alive
    saved = json.loads((tmp_path / "action_tokens.json").read_text())
    for grant in saved.values():
        grant["expires"] = time.time() - 60
        grant["boot"]["uptime_s"] = 1e12
    (tmp_path / "action_tokens.json").write_text(json.dumps(saved))
    with pytest.raises(ActionRefused, match="expired"):
        ActionTokens(tmp_path).peek(cancel)


def test_a_button_works_once_for_its_own_incident_until_it_expires(action_server, tmp_path) -> None:
    server, tokens, recorder, clock = action_server
    store = IncidentStore(tmp_path)
    old = store.save(PRINTER, alert(), jpeg(1), jpeg(1)).id
    resume_old = tokens.issue(PRINTER, old, Verb.RESUME, 3600)
    cancel_old = tokens.issue(PRINTER, old, Verb.CANCEL, 3600)
    not_failure_old = tokens.issue(PRINTER, old, Verb.NOT_A_FAILURE, 3600)
    new = store.save(PRINTER, alert(), jpeg(2), jpeg(2)).id
    resume = tokens.issue(PRINTER, new, Verb.RESUME, 3600)
    cancel = tokens.issue(PRINTER, new, Verb.CANCEL, 3600)

    # a link opened (or fetched by a link preview) asks first and does nothing
    status, page = post(f"{server.url}/actions/{resume}", "GET")
    assert (
        status == 200
        and f"{PRINTER}, job benchy.gcode: Resume the print?" in page
        and 'method="post"' in page
    )
    assert post(f"{server.url}/actions/{cancel}", "GET")[1].count("It cannot be resumed") == 1
    assert post(f"{server.url}/actions/{resume_old}", "GET")[0] == 409  # an older alert's
    assert recorder.commands == []
    assert post(f"{server.url}/actions/{resume}") == (200, "resume done\n")
    assert recorder.commands == [Command(PRINTER, Verb.RESUME, new, source="phone")]
    status, text = post(f"{server.url}/actions/{resume}")
    assert status == 409 and "already used" in text
    status, page = post(f"{server.url}/actions/{resume}", "GET")
    assert status == 409 and "already used" in page and "<form" not in page
    # an older alert's Resume never acts on the print that failed again since
    status, text = post(f"{server.url}/actions/{resume_old}")
    assert status == 409 and "older alert" in text
    # its "Not a failure" still applies to its own incident
    assert post(f"{server.url}/actions/{not_failure_old}")[0] == 200
    assert recorder.commands[-1] == Command(PRINTER, Verb.NOT_A_FAILURE, old, source="phone")
    # its Cancel is the watcher's to judge (an earlier alert of the same print still cancels
    # it; one of another print is refused there)
    assert post(f"{server.url}/actions/{cancel_old}")[0] == 200
    assert recorder.commands[-1] == Command(PRINTER, Verb.CANCEL, old, source="phone")
    # unknown and malformed tokens
    assert post(f"{server.url}/actions/{'x' * 32}")[0] == 404
    assert post(f"{server.url}/actions/../../etc/passwd")[0] in (
        404,
        405,
    )  # never reaches the handler
    # expiry, also for a token loaded by a new store (a restarted daemon)
    clock.now += 3601
    status, page = post(f"{server.url}/actions/{cancel}", "GET")
    assert status == 410 and "expired" in page and "<form" not in page
    status, text = post(f"{server.url}/actions/{cancel}")
    assert status == 410 and "expired" in text
    assert [c.verb for c in recorder.commands] == [Verb.RESUME, Verb.NOT_A_FAILURE, Verb.CANCEL]
    stored = (tmp_path / "action_tokens.json").read_text()
    for token in (resume, resume_old, not_failure_old, cancel):
        assert token not in stored
    assert oct((tmp_path / "action_tokens.json").stat().st_mode & 0o777) == "0o600"


def test_a_link_opened_after_its_print_ended_offers_no_pause_or_stop_watching(
    action_server, tmp_path
) -> None:
    """An email's "Stop watching this print" opened once the print is over asked Yes anyway;
    pressed, it was refused. Its page says why at once. A resumed print runs on: Pause asks."""
    from watchdog.incidents import record_answer

    server, tokens, recorder, _ = action_server
    incident = IncidentStore(tmp_path).save(PRINTER, alert(), jpeg(1), jpeg(1)).id
    skip = tokens.issue(PRINTER, incident, Verb.SKIP_PRINT, 3600)
    pause = tokens.issue(PRINTER, incident, Verb.PAUSE, 3600)
    record_answer(tmp_path, PRINTER, incident, "resumed")
    status, page = post(f"{server.url}/actions/{pause}", "GET")
    assert status == 200 and "Pause the print?" in page and "<form" in page
    for answer, said in (("cancelled", "the print was cancelled"), ("ended", "print has ended")):
        record_answer(tmp_path, PRINTER, incident, answer)
        for token in (skip, pause):
            status, page = post(f"{server.url}/actions/{token}", "GET")
            assert status == 409 and said in page and "<form" not in page
    assert recorder.commands == []


def test_buttons_survive_a_restart_and_a_refused_command_can_be_pressed_again(tmp_path) -> None:
    store = IncidentStore(tmp_path)
    incident = store.save(PRINTER, alert(), jpeg(1), jpeg(1)).id
    token = ActionTokens(tmp_path).issue(PRINTER, incident, Verb.RESUME, 3600)
    refusing = ActionHandler(ActionTokens(tmp_path), Recorder(ok=False), tmp_path)  # a new process
    assert refusing.handle_action(token) == (409, "printer is not paused")
    accepting = ActionHandler(ActionTokens(tmp_path), Recorder(ok=True), tmp_path)
    assert accepting.handle_action(token) == (200, "resume done")
    assert accepting.handle_action(token)[0] == 409


def test_a_button_pressed_with_the_disk_full_still_acts_once(full_storage) -> None:
    """A Pi's SD card full: every press was refused, "cannot record the press", Cancel too,
    while the page still asked "Cancel the print?". It acts, and once in this run."""
    filler = full_storage / "filler"
    size = filler.stat().st_size
    os.truncate(filler, size - 64 * 1024)  # room for the alert and its button, then full again
    store = IncidentStore(full_storage)
    incident = store.save(PRINTER, alert(), jpeg(1), jpeg(1)).id
    token = ActionTokens(full_storage).issue(PRINTER, incident, Verb.CANCEL, 3600)
    with pytest.raises(OSError), open(filler, "ab") as f:
        while True:
            f.write(b"\0" * 4096)
            f.flush()
    recorder = Recorder(ok=True)
    handler = ActionHandler(ActionTokens(full_storage), recorder, full_storage)
    assert handler.handle_action(token) == (200, "cancel done")
    assert handler.handle_action(token)[0] == 409 and len(recorder.commands) == 1


def test_a_damaged_entry_or_a_moment_unable_to_read_never_ends_the_other_buttons(
    tmp_path, monkeypatch
) -> None:
    """One entry of the button store damaged (a number too large for a float), or the store
    unreadable for a moment (too many open files): the other buttons still work."""
    tokens = ActionTokens(tmp_path)
    token = tokens.issue(PRINTER, "i1", Verb.RESUME, 3600)
    stored = json.loads(tokens.path.read_text())
    stored["ab" * 32] = {"printer": PRINTER, "incident": "i0", "verb": "cancel", "expires": 10**400}
    tokens.path.write_text(json.dumps(stored))
    assert tokens.peek(token).incident == "i1"
    assert tokens.issue(PRINTER, "i2", Verb.CANCEL, 3600)
    from watchdog.comms import actions

    real = actions.read_json

    def busy(path, *a, **k):
        if path == tokens.path:
            raise OSError(24, "Too many open files")
        return real(path, *a, **k)

    monkeypatch.setattr(actions, "read_json", busy)
    with pytest.raises(OSError):
        tokens.issue(PRINTER, "i3", Verb.CANCEL, 3600)  # that alert goes out without buttons
    monkeypatch.setattr(actions, "read_json", real)
    assert tokens.redeem(token).incident == "i1"


def test_a_damaged_button_store_is_said_once_and_kept_aside(tmp_path, caplog) -> None:
    """The button store cut short by a power cut: each press and each alert said the same
    error again, in the JSON parser's words, and the next alert wrote over it. Said once, in
    words, the file kept aside; new buttons work."""
    tokens = ActionTokens(tmp_path)
    tokens.issue(PRINTER, "i1", Verb.RESUME, 3600)
    tokens.path.write_text(tokens.path.read_text()[:20])
    with caplog.at_level(logging.ERROR, logger="watchdog.comms.actions"):
        with pytest.raises(ActionRefused, match="no such action"):
            tokens.peek("x" * 32)
        fresh = tokens.issue(PRINTER, "i2", Verb.CANCEL, 3600)
        assert tokens.peek(fresh).incident == "i2"
    [said] = [r.getMessage() for r in caplog.records]
    assert "(not whole JSON (cut short, or damaged)): notification buttons issued before" in said
    assert "kept as action_tokens.json.unreadable-" in said
    [kept] = tmp_path.glob("action_tokens.json.unreadable-*")
    assert len(kept.read_text()) == 20


def test_a_press_still_under_way_when_its_answer_is_due_cannot_be_pressed_again(tmp_path) -> None:
    """A printer slow to answer: the press will still happen, so its button stays used (given
    back, a second press would resume or cancel twice)."""
    store = IncidentStore(tmp_path)
    incident = store.save(PRINTER, alert(), jpeg(1), jpeg(1)).id
    token = ActionTokens(tmp_path).issue(PRINTER, incident, Verb.RESUME, 3600)
    slow = Recorder(under_way=True)
    assert ActionHandler(ActionTokens(tmp_path), slow, tmp_path).handle_action(token) == (
        202,
        "e3 is still carrying out resume",
    )
    again = ActionHandler(ActionTokens(tmp_path), Recorder(ok=True), tmp_path)
    assert again.handle_action(token)[0] == 409 and len(slow.commands) == 1


def test_a_press_under_way_that_fails_in_the_end_can_be_pressed_again(tmp_path, caplog) -> None:
    """The printer's API hung through every try: the phone heard "still carrying out", the
    resume failed, nothing said so, and the button stayed used ("already used")."""
    store = IncidentStore(tmp_path)
    incident = store.save(PRINTER, alert(), jpeg(1), jpeg(1)).id
    token = ActionTokens(tmp_path).issue(PRINTER, incident, Verb.RESUME, 3600)
    slow = Recorder(under_way=True)
    assert ActionHandler(ActionTokens(tmp_path), slow, tmp_path).handle_action(token)[0] == 202
    slow.later.set_result(CommandResult(False, "OctoPrint resume failed: no answer within 10 s"))
    assert "failed after it was said under way: OctoPrint resume failed" in caplog.text
    again = ActionHandler(ActionTokens(tmp_path), Recorder(ok=True), tmp_path)
    assert again.handle_action(token) == (200, "resume done")


def _resume_left_under_way(
    phone: Callable[..., Notifier],
    ntfy_receiver: NtfyReceiver,
    button: str = "Resume",
    **kw: Any,
) -> tuple[Notifier, Recorder, str]:
    """An alert on ntfy whose Resume (``button``) was pressed and answered "still carrying
    out": the notifier, its printer's stand-in (``later`` ends the press) and the pressed
    token."""
    slow = Recorder(under_way=True)
    notifier = phone(
        notify=(target(ntfy_receiver.url("t"), actions_url="http://pi.lan:8787", **kw),),
        dispatcher=slow,
    )
    notifier.raise_alert(PRINTER, {**alert(), "answers": ["resume", "cancel"]}, jpeg(1), jpeg(2))
    assert notifier.notifications.flush(60)
    [first] = ntfy_receiver.messages
    token = {a["label"]: a["url"] for a in first.actions}[button].rsplit("/", 1)[1]
    assert notifier.handle_action(token)[0] == 202
    return notifier, slow, token


def test_a_press_under_way_that_fails_in_the_end_is_told_to_the_phone_with_its_buttons(
    phone, ntfy_receiver
) -> None:
    """The phone's Resume heard "still carrying out" and ntfy cleared the alert; the resume
    failed in the end, and only the daemon's log said so: the owner went to bed thinking the
    print resumed, with no button left to try again. The phone is told at once, with the
    alert's buttons."""
    notifier, slow, _ = _resume_left_under_way(phone, ntfy_receiver)
    slow.later.set_result(CommandResult(False, "OctoPrint resume failed: no answer within 10 s"))
    wait_for("the phone told", lambda: len(ntfy_receiver.messages) == 2)
    told = ntfy_receiver.messages[1]
    assert told.title == "ender3: your Resume was not done", told.title
    assert "OctoPrint resume failed: no answer within 10 s" in told.message
    assert [a["label"] for a in told.actions] == ["Not a failure", "Resume", "Cancel"]
    slow.under_way = False  # the printer answers again: the new Resume resumes
    again = {a["label"]: a["url"] for a in told.actions}["Resume"]
    assert notifier.handle_action(again.rsplit("/", 1)[1]) == (200, "resume done")


def test_a_press_told_not_done_that_the_printer_makes_later_is_told_to_the_phone(
    phone, ntfy_receiver
) -> None:
    """A cancel macro slower than ``api.confirm_s``: the phone heard "your Cancel was not
    done" and the page and Home Assistant were put right when the printer stopped; the phone
    never was, and its owner went to the printer for nothing."""
    # a target of failures only: it was sent the "not done", so it hears the news too
    notifier, slow, _ = _resume_left_under_way(phone, ntfy_receiver, "Cancel", events=["failure"])
    correction: Future[CommandResult] = Future()
    slow.later.set_result(CommandResult(False, "it did NOT cancel", correction=correction))
    wait_for("the phone told", lambda: len(ntfy_receiver.messages) == 2)
    late = (
        "ender3 is no longer printing (idle), 150 s after the cancel was sent: cancelled "
        "late, or its print finished"
    )
    correction.set_result(CommandResult(True, late))
    wait_for("the phone told again", lambda: len(ntfy_receiver.messages) == 3)
    told = ntfy_receiver.messages[2]
    assert told.title == "ender3: news of your Cancel", told.title
    assert told.message.startswith(
        f"The Cancel you pressed for ender3 was told not done; since then: {late}."
    ), told.message
    assert [a["label"] for a in told.actions] == ["Not a failure"]  # no print left to act on


def test_a_failed_press_told_never_replaces_an_alert_still_waiting_for_another_target(
    phone, ntfy_receiver, webhook_receiver
) -> None:
    """ntfy had the alert, the webhook was down; the Resume pressed on ntfy failed late: its
    "not done" was summed up with the alert still waiting for the webhook, whose owner never
    got the alert itself, nor its picture."""
    slow = Recorder(under_way=True)
    webhook_receiver.refuse(500, "down")
    notifier = phone(
        notify=(
            target(ntfy_receiver.url("t"), actions_url="http://pi.lan:8787"),
            target(webhook_receiver.url(), name="hook", actions_url="http://pi.lan:8787"),
        ),
        dispatcher=slow,
    )
    notifier.raise_alert(PRINTER, {**alert(), "answers": ["resume", "cancel"]}, jpeg(1), jpeg(2))
    wait_for("the ntfy alert", lambda: ntfy_receiver.messages)
    wait_for("the webhook refused", lambda: notifier.notify_status()["hook"]["failed"] >= 1)
    resume = {a["label"]: a["url"] for a in ntfy_receiver.messages[0].actions}["Resume"]
    assert notifier.handle_action(resume.rsplit("/", 1)[1])[0] == 202
    slow.later.set_result(CommandResult(False, "OctoPrint resume failed: HTTP 409"))
    wait_for("the phone told", lambda: len(ntfy_receiver.messages) == 2)
    webhook_receiver.refuse(None)
    wait_for("both on the webhook", lambda: len(webhook_receiver.posts) == 2, 30)
    titles = [p["title"] for p in webhook_receiver.posts]
    assert titles == ["ender3: print failure, paused", "ender3: your Resume was not done"], titles
    assert webhook_receiver.posts[0].get("attachments"), "the alert's picture"


def test_a_press_under_way_never_answered_by_the_printer_is_told_as_maybe_done(
    phone, ntfy_receiver
) -> None:
    """The printer took the resume and never answered (a Klipper macro reheating): "your
    Resume was not done" with a Resume to press again was untrue, and a second press could
    resume twice. Told as maybe done, without the printer's buttons; its button stays used."""
    notifier, slow, token = _resume_left_under_way(phone, ntfy_receiver)
    slow.later.set_result(
        CommandResult(
            False, "resume sent, no answer within 10 s: it may still happen", unknown=True
        )
    )
    wait_for("the phone told", lambda: len(ntfy_receiver.messages) == 2)
    told = ntfy_receiver.messages[1]
    assert told.title == "ender3: your Resume may not have happened", told.title
    assert [a["label"] for a in told.actions] == ["Not a failure"]
    slow.under_way = False
    assert notifier.handle_action(token)[0] == 409  # used: it may have resumed


# --------------------------------------------------------------------------- config


def test_notify_config_reads_secrets_and_masks_them(tmp_path, monkeypatch) -> None:
    url_file = tmp_path / "ntfy.url"
    url_file.write_text(f"ntfy://bob:{NTFY_PASSWORD}@ntfy.example/printers\n")
    url_file.chmod(0o600)
    monkeypatch.setenv("HOOK_URL", f"json://hook:{HOOK_PASSWORD}@127.0.0.1:9/hook")
    config = parse_config(
        {
            "printers": [{"name": PRINTER}, {"name": "voron"}],
            "notify": [
                {
                    "url_file": str(url_file),
                    "events": ["failure", "camera_offline"],
                    "printers": ["voron"],
                    "attach": "frame",
                    "actions_url": "http://pi.lan:8787/",
                },
                {"url": "${HOOK_URL}"},
            ],
            "http": {"generate_password": True},
        }
    )
    ntfy, hook = config.notify
    assert (
        ntfy.url.get_secret_value().startswith("ntfy://bob:")
        and ntfy.actions_url == "http://pi.lan:8787"
    )
    assert [e.value for e in hook.events] == [
        "failure",
        "action_failed",
        "camera_offline",  # a camera dead in the night is told by default
    ] and hook.attach == "heatmap"
    shown = json.dumps(config.masked())
    assert NTFY_PASSWORD not in shown and HOOK_PASSWORD not in shown and "bob" not in shown
    assert any(NTFY_PASSWORD in s for s in config.secrets()) and any(
        HOOK_PASSWORD in s for s in config.secrets()
    )


def test_buttons_for_a_phone_behind_a_proxy_on_this_machine_need_the_dashboards_password() -> None:
    """With http.listen on loopback the page needs no login: a proxy on the Pi, the way a
    phone reaches the buttons then, made every request this machine's, and opened the
    dashboard (the camera, Cancel) to everyone it served."""
    notify = [{"url": "ntfy://h/t", "actions_url": "http://pi.lan:8787"}]
    with pytest.raises(ConfigError, match="http.generate_password"):
        parse_config({"printers": [{"name": PRINTER}], "notify": notify})
    assert (
        parse_config(
            {"printers": [{"name": PRINTER}], "notify": notify, "http": {"generate_password": True}}
        )
        .notify[0]
        .actions_url
    )
    local = [{"url": "ntfy://h/t", "actions_url": "http://127.0.0.1:8787"}]  # no phone: no proxy
    assert parse_config({"printers": [{"name": PRINTER}], "notify": local}).notify


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"url": "not a url with hunter22-n0t-in-logs"},
            "notify.0.url: must be an Apprise URL such as ntfy://host/topic",
        ),
        ({"url": "ntfy://h/t", "events": ["failure", "fire"]}, "notify.0.events.1"),
        (
            {"url": "ntfy://h/t", "printers": ["ghost"]},
            "notify.0.printers: unknown printer(s) ghost",
        ),
        ({"url": "ntfy://h/t", "attach": "video"}, "notify.0.attach"),
        ({"url": "ntfy://h/t", "actions_url": "pi.lan:8787"}, "notify.0.actions_url"),
        (  # the target's own URL pasted where the watchdog's address goes: its token not shown
            {"url": "ntfy://h/t", "actions_url": f"tgram://987654321:{NTFY_PASSWORD}/55555"},
            "notify.0.actions_url: must be this watchdog's own address",
        ),
        ({"events": ["failure"]}, "url or url_file is required"),
        (
            {"url_file": "/nonexistent/ntfy.url"},
            "notify.0.url_file: no such file (the value is not shown",
        ),
    ],
)
def test_bad_notify_entries_are_one_clear_line_without_the_secret(
    entry: dict, message: str
) -> None:
    from watchdog.config import ConfigError

    with pytest.raises(ConfigError) as info:
        parse_config({"printers": [{"name": PRINTER}], "notify": [entry]}, "config.yaml")
    text = str(info.value)
    assert message in text and "\n" not in text
    assert NTFY_PASSWORD not in text


def test_a_links_page_shows_text_not_markup_and_can_only_post_to_itself() -> None:
    response = action_page(200, 'ender3: <img src=x onerror="alert(1)"> Resume the print?')
    page = response.get_data(as_text=True)
    assert "<img" not in page and "&lt;img src=x" in page
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "form-action 'self'" in policy
    assert "frame-ancestors 'none'" in policy and "<script" not in page


@pytest.mark.parametrize(
    ("url", "plain"),
    [
        ("mailto://user:pass@mail.example.com", True),  # HTML email: our text escaped, lines kept
        ("ntfy://ntfy.example/printer", True),
        ("wxteams://" + "a" * 80, False),  # Markdown only: escaping would break the links' URLs
        ("gchat://workspace/key/token", False),
    ],
)
def test_text_is_declared_plain_only_where_the_service_shows_plain_text_or_html(
    url: str, plain: bool
) -> None:
    import apprise

    from watchdog.comms.notify_send import _body_format

    service = apprise.Apprise()
    assert service.add(url)
    assert (_body_format(service[0], apprise) is apprise.NotifyFormat.TEXT) is plain


def test_a_notification_delivered_after_long_retries_carries_links_that_still_work(
    phone, webhook_receiver, tmp_path
) -> None:
    clock = FakeClock()
    webhook_receiver.stop()  # the service is down
    targets = (target(webhook_receiver.url("hook"), actions_url="http://pi.lan:8787"),)
    notifier = phone(notify=targets)
    notifier.tokens.clock = clock
    notifier.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    wait_for("a failed attempt", lambda: notifier.notify_status()["json"]["failed"] >= 1)
    clock.now += 13 * 3600  # more than half of the links' 24 hours pass before it is delivered
    webhook_receiver.start()
    assert notifier.notifications.flush(60), notifier.notify_status()
    [post_] = webhook_receiver.posts
    tokens = re.findall(r"/actions/(\S+)$", post_["message"], re.M)
    assert len(tokens) == 4  # Not a failure, Resume, Cancel, Stop watching this print
    grants = [ActionTokens(tmp_path, clock=clock).peek(t) for t in tokens]
    assert all(g.expires - clock.now > 23 * 3600 for g in grants)


def test_a_token_in_a_urls_host_part_is_masked_as_written() -> None:
    """Python lowercases a URL's host name: a token written there in capitals (Pushover's
    ``pover://user@TOKEN``) was masked only together with its user."""
    from watchdog.comms.notify import mask, secret_fragments

    url = "pover://uKey1234@AbCdEfGhIj123"
    said = "Pushover refused token AbCdEfGhIj123 for this app"
    assert "AbCdEfGhIj123" not in mask(said, secret_fragments(url))


def test_made_up_button_tokens_posted_in_a_loop_do_not_flood_the_log(tmp_path, caplog) -> None:
    """The buttons' route needs no login (each token is its own key): anyone who reaches it
    could write a journal line per request. Refusals are said once a minute, counted."""
    handler = ActionHandler(ActionTokens(tmp_path), None, tmp_path)
    with caplog.at_level(logging.WARNING, logger="watchdog.comms.actions"):
        answers = [handler.handle_action(f"made-up-token-{i:06d}-AAAA") for i in range(50)]
    assert all(status >= 400 for status, _ in answers)
    assert len([r for r in caplog.records if "button refused" in r.getMessage()]) == 1


def test_a_removed_targets_waiting_notifications_never_go_to_the_next_one(
    phone, ntfy_receiver, tmp_path, caplog
) -> None:
    """Two unnamed ntfy targets, Alice's (down for the day) and Bob's (failures only). The
    owner removes Alice's: Bob's takes its place in the list, and so its queue folder, and
    Alice's waiting notifications (her camera news too) went to Bob."""
    from tests.plugins.mosquitto import free_port

    alice = target(f"ntfy://127.0.0.1:{free_port()}/alice", camera_offline_after_s=0)
    bob = target(ntfy_receiver.url("bob"), events=["failure"])
    first = phone(notify=(alice, bob))
    first.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    first.camera_changed(PRINTER, online=False)
    wait_for("Bob's alert", lambda: first.notify_status()["ntfy-2"]["sent"] == 1)
    assert first.notify_status()["ntfy"]["pending"] >= 1  # Alice's, waiting
    first.stop()
    second = phone(notify=(bob,))
    assert second.notifications.flush(10), second.notify_status()
    second.stop()
    assert [m.topic for m in ntfy_receiver.messages] == ["bob"]
    assert "left for a target removed since" in caplog.text


def test_a_notification_apprise_is_missing_for_blames_neither_the_service_nor_its_url(
    phone, ntfy_receiver, tmp_path, monkeypatch, caplog
) -> None:
    """Installed without the notify extra: the log said "the service refused the
    notification" and to check the URL's credentials, sending the owner after a password that
    was right. It says the notification cannot be sent here, and why."""
    monkeypatch.setenv("PYTHONPATH", without_apprise(tmp_path / "site"))
    caplog.set_level(logging.ERROR, logger="watchdog.comms.notify")
    sender = phone(notify=(target(ntfy_receiver.url("alerts")),))
    sender.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    wait_for("the failure", lambda: sender.notify_status()["ntfy"]["failed"] >= 1)
    sender.stop()
    said = [r.getMessage() for r in caplog.records if "Apprise" in r.getMessage()]
    assert any("cannot send here: Apprise is not installed" in line for line in said), said
    assert not any("refused" in line or "credentials" in line for line in said), said
    assert ntfy_receiver.messages == []


def test_a_target_whose_url_was_fixed_in_its_place_keeps_its_queue(
    phone, ntfy_receiver, tmp_path, caplog
) -> None:
    """The service refused the token; the log said the notifications are kept while the
    owner checks the URL. The owner fixed it and restarted: the queue (the alert too) was
    dropped as another target's."""
    caplog.set_level(logging.INFO, logger="watchdog.comms.notify")
    ntfy_receiver.refuse(403, "forbidden: bad token")
    first = phone(notify=(target(ntfy_receiver.url("alerts", "bob", "wrong-password")),))
    first.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    wait_for("the refusal", lambda: first.notify_status()["ntfy"]["failed"] >= 1)
    first.stop()
    ntfy_receiver.refuse(None)
    second = phone(notify=(target(ntfy_receiver.url("alerts", "bob", NTFY_PASSWORD)),))
    assert second.notifications.flush(30), second.notify_status()
    second.stop()
    assert [m.title for m in ntfy_receiver.messages] == [f"{PRINTER}: print failure, paused"]
    assert "queued before its URL or name changed" in caplog.text


def test_a_target_renamed_or_named_for_the_first_time_keeps_its_queue(phone, ntfy_receiver) -> None:
    """A name moves a target to another outbox channel: what waited under the old name (or
    under none) was kept on disk and never sent."""
    url = ntfy_receiver.url("alerts")
    alert_left_queued(phone, ntfy_receiver, url)
    ntfy_receiver.refuse(500, "down")
    named = phone(notify=(target(url, name="phone"),))  # still refused: kept
    wait_for("refused again", lambda: named.notify_status()["phone"]["failed"] >= 1)
    named.stop()
    ntfy_receiver.refuse(None)
    renamed = phone(notify=(target(url, name="alice-phone"),))
    assert renamed.notifications.flush(30), renamed.notify_status()
    renamed.stop()
    assert [(m.title, m.attachment) for m in ntfy_receiver.messages] == [
        (f"{PRINTER}: print failure, paused", jpeg(2))
    ]


def test_a_queue_left_in_another_targets_channel_goes_to_the_target_that_took_it_over(
    phone, ntfy_receiver
) -> None:
    """Alice's unnamed target given a name, and Bob's unnamed one added first in the list:
    Bob's takes Alice's old channel, Alice's queue waits there for her named target."""
    alice = ntfy_receiver.url("alice")
    alert_left_queued(phone, ntfy_receiver, alice)
    second = phone(notify=(target(ntfy_receiver.url("bob")), target(alice, name="alice")))
    assert second.notifications.flush(30), second.notify_status()
    second.stop()
    assert [(m.topic, m.attachment) for m in ntfy_receiver.messages] == [("alice", jpeg(2))]


def test_a_second_target_on_the_same_topic_takes_its_printers_queued_alert(
    phone, ntfy_receiver
) -> None:
    """One topic, then a second target on it for another printer: the first's identity
    changed (two with one URL are told apart by what they take) and its alert was dropped."""
    url = ntfy_receiver.url("shop")
    alert_left_queued(phone, ntfy_receiver, url)
    twins = (target(url, printers=["voron"]), target(url, printers=[PRINTER]))
    second = phone(notify=twins, printers=(PRINTER, "voron"))
    assert second.notifications.flush(30), second.notify_status()
    second.stop()
    assert [(m.title, m.attachment) for m in ntfy_receiver.messages] == [
        (f"{PRINTER}: print failure, paused", jpeg(2))
    ]


def test_where_a_target_sends_is_its_url_but_for_its_password_and_tokens() -> None:
    """A queue is taken over by a new target sending to the same place: a fixed password or
    token is the same place; another recipient (mail's user or to=, Pushover's user key)
    is another person."""
    from watchdog.comms.notify import target_place

    assert target_place("ntfys://bob:old@ntfy.sh/shop") == target_place(
        "ntfys://bob:new@ntfy.sh/shop"
    )
    assert target_place("ntfy://ntfy.sh/shop?token=tk_1") == target_place(
        "ntfy://ntfy.sh/shop?token=tk_2"
    )
    assert target_place("json://h.lan/hook?auth=a&x=1") == target_place(
        "json://h.lan/hook?x=1&auth=b"
    )
    for one, other in [
        ("mailto://alice:pw@smtp.example.com", "mailto://bob:pw@smtp.example.com"),
        (
            "mailto://me:pw@smtp.example.com?to=alice@x.org",
            "mailto://me:pw@smtp.example.com?to=bob@x.org",
        ),
        ("pover://ALICEKEY@apptoken", "pover://BOBKEY@apptoken"),
        ("ntfy://ntfy.sh/alice", "ntfy://ntfy.sh/bob"),
    ]:
        assert target_place(one) != target_place(other), one


def test_another_persons_target_put_in_a_removed_ones_place_does_not_take_its_queue(
    phone, ntfy_receiver, caplog
) -> None:
    """Alice's target removed and Bob's added in its place at one restart: Bob's is new to
    the outbox, as an edited URL would be, but it sends to another topic."""
    alert_left_queued(phone, ntfy_receiver, ntfy_receiver.url("alice"))
    second = phone(notify=(target(ntfy_receiver.url("bob")),))
    assert second.notifications.flush(10), second.notify_status()
    second.stop()
    assert ntfy_receiver.messages == []
    assert "left for a target removed since" in caplog.text


def test_two_targets_with_one_url_each_send_their_own_queue_once(phone, ntfy_receiver) -> None:
    """One topic twice, for two printers: both targets had one identity, so after a restart
    each took (and sent, or deleted as not its printer's) the other's notifications."""
    ntfy_receiver.refuse(500, "down")
    url = ntfy_receiver.url("shared")
    targets = (target(url, printers=[PRINTER]), target(url, printers=["voron"]))
    first = phone(notify=targets, printers=(PRINTER, "voron"))
    first.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    first.raise_alert("voron", {**alert(), "printer": "voron"}, jpeg(3), jpeg(4))
    wait_for("both refused", lambda: all(s["failed"] for s in first.notify_status().values()))
    first.stop()
    ntfy_receiver.refuse(None)
    swapped = targets[::-1]  # whatever their order in the list
    second = phone(notify=swapped, printers=(PRINTER, "voron"))
    assert second.notifications.flush(30), second.notify_status()
    second.stop()
    sent = sorted((m.title, m.attachment) for m in ntfy_receiver.messages)
    assert sent == [  # each with its heatmap (one deleted from disk lost its picture)
        (f"{PRINTER}: print failure, paused", jpeg(2)),
        ("voron: print failure, paused", jpeg(4)),
    ], [title for title, _ in sent]


def test_a_queued_notification_with_a_damaged_mark_is_sent_not_a_crash(
    phone, ntfy_receiver, tmp_path
) -> None:
    """An entry.json edited by hand or damaged ("target": a list) raised at start: systemd
    restarted the daemon into the same crash, no printer watched."""
    alert_left_queued(phone, ntfy_receiver, ntfy_receiver.url("alerts"))
    [entry] = outbox_entries(tmp_path, "notify-ntfy")
    record = json.loads(entry.read_text())
    record["body"]["target"] = ["not", "a", "mark"]
    entry.write_text(json.dumps(record))
    second = phone(notify=(target(ntfy_receiver.url("alerts")),))
    assert second.notifications.flush(30), second.notify_status()
    second.stop()
    assert [m.title for m in ntfy_receiver.messages] == [f"{PRINTER}: print failure, paused"]


def test_queued_notifications_are_sent_when_the_targets_key_cannot_be_read(
    phone, ntfy_receiver, tmp_path
) -> None:
    """Without its key a target cannot tell its entries from another's: it sends those of
    its own queue rather than drop them all (an alert among them)."""
    alert_left_queued(phone, ntfy_receiver, ntfy_receiver.url("alerts"))
    key = tmp_path / "outbox" / ".target-key"
    key.unlink()
    key.mkdir()  # unreadable as a file, whoever runs the test
    second = phone(notify=(target(ntfy_receiver.url("alerts")),))
    assert second.notifications.flush(30), second.notify_status()
    second.stop()
    assert [m.title for m in ntfy_receiver.messages] == [f"{PRINTER}: print failure, paused"]
    # deleted, or emptied: a new key cannot check the old marks either, at its first run or
    # at the next (the service still down at the first)
    for damage in ("deleted", "emptied"):
        key.rmdir() if key.is_dir() else key.unlink()
        alert_left_queued(phone, ntfy_receiver, ntfy_receiver.url("alerts"))
        key.unlink()
        if damage == "emptied":
            key.write_bytes(b"")
        else:  # a run with the new key, the service still down
            ntfy_receiver.refuse(500, "down")
            down = phone(notify=(target(ntfy_receiver.url("alerts")),))
            wait_for("refused", lambda d=down: d.notify_status()["ntfy"]["failed"] >= 1)
            down.stop()
            ntfy_receiver.refuse(None)
        fourth = phone(notify=(target(ntfy_receiver.url("alerts")),))
        assert fourth.notifications.flush(30), fourth.notify_status()
        fourth.stop()
        told = [m.title for m in ntfy_receiver.messages]
        assert len(told) == (2 if damage == "deleted" else 3), (damage, told)


def test_two_unnamed_targets_swapped_in_the_list_each_keep_their_own_queue(
    phone, ntfy_receiver
) -> None:
    """Channels follow the place in the list; the queues follow the targets."""
    ntfy_receiver.refuse(500, "down")
    alice = target(ntfy_receiver.url("alice"), events=["failure"])
    bob = target(ntfy_receiver.url("bob"), events=["print_done"])
    first = phone(notify=(alice, bob))
    first.raise_alert(PRINTER, alert(), jpeg(1), jpeg(2))
    first.print_done(PRINTER, "benchy.gcode")
    wait_for("both refused", lambda: all(s["failed"] for s in first.notify_status().values()))
    first.stop()
    ntfy_receiver.refuse(None)
    second = phone(notify=(bob, alice))
    assert second.notifications.flush(30), second.notify_status()
    second.stop()
    got = sorted((m.topic, m.title) for m in ntfy_receiver.messages)
    assert got == [
        ("alice", f"{PRINTER}: print failure, paused"),
        ("bob", f"{PRINTER}: print ended"),
    ], got


def test_an_alert_told_at_start_on_a_full_disk_is_not_lost_by_the_outbox_load(
    phone, ntfy_receiver, monkeypatch
) -> None:
    """At start the phones are told of an alert a stopped watchdog left (its pause's end
    unknown) before the outbox's waiting notifications are loaded; on a full disk that one is
    in memory only, and the load replaced it. The full disk is made by the outbox's own
    answer to one (an entry not saved): a disk cannot be filled here without root mounts."""
    from watchdog.comms.outbox import Outbox

    targets = (target(ntfy_receiver.url("t", "bob", NTFY_PASSWORD)),)
    first = phone(notify=targets)
    draft = dict(alert(), action_result={"outcome": "unknown", "detail": "stopped"})
    first.store.save(PRINTER, draft, jpeg(1), jpeg(2), pending=first.delivers)
    first.stop()
    real_put = Outbox.put

    def full(self, channel, printer, body, attachment=None, entry_id=None):
        entry = real_put(self, channel, printer, body, attachment, entry_id)
        if entry.path is not None:  # as put answers a full disk: unsaved, in memory
            self.done(entry)
            entry = dataclasses.replace(entry, path=None, attachment=attachment)
        return entry

    monkeypatch.setattr(Outbox, "put", full)
    second = phone(notify=targets)
    assert second.notifications.flush(30), second.notify_status()
    assert [m.title for m in ntfy_receiver.messages] == [
        "ender3: failure; the pause may not have happened"
    ]
    second.stop()


def test_a_frozen_camera_mid_print_is_told_offline_with_why_and_back_when_it_moves(
    phone, webhook_receiver, camera_server, tiny_adaptive_bundle
) -> None:
    """A USB camera gone from behind ustreamer leaves its stand-in picture: every frame
    decoded, so the print was watched on a picture that never changed and the owner was told
    nothing. A real snapshot camera, the real watcher, Apprise to a local webhook."""
    from tests.plugins.camera import synthetic_frame
    from watchdog.config import CameraConfig, PrinterConfig
    from watchdog.detection.bundle import Bundle
    from watchdog.detection.decide import Label
    from watchdog.devices.printers import SimulatedPrinter
    from watchdog.watcher import Watcher, build_watcher

    notifier = phone(
        notify=(camera_target(webhook_receiver.url("hook"), 0, coalesce_s=0),),
    )
    camera_server.set_frames([synthetic_frame(i) for i in range(4)])
    camera = CameraConfig(
        source=camera_server.snapshot_url, interval_s=0.01, timeout_s=5, frozen_after_s=1.0
    )
    printer = SimulatedPrinter("J.gcode")

    def built() -> Watcher:
        cfg = PrinterConfig(name=PRINTER, camera=camera)
        bundle = Bundle.load(tiny_adaptive_bundle)
        return build_watcher(cfg, bundle, notifier, printer=printer, clock=time.monotonic)

    watcher = built()
    try:
        for _ in range(3):
            assert watcher.step().verdict is not None  # a live picture is scored
        camera_server.set_frames([synthetic_frame(7)])  # the stand-in picture
        wait_for("offline", lambda: watcher.step().state is Label.CAMERA_OFFLINE, 30)
        assert notifier.notifications.flush(60), notifier.notify_status()
        [offline] = webhook_receiver.posts
        assert offline["title"] == f"{PRINTER}: camera offline"
        assert "the very same picture" in offline["message"], offline["message"]
        # a settings save rebuilds the camera: the stand-in picture is no camera back online
        old, watcher = watcher, built()
        old.retire(watcher)
        old.camera.close()
        assert all(watcher.step().state is Label.CAMERA_OFFLINE for _ in range(3))
        assert notifier.notifications.flush(60), notifier.notify_status()
        assert len(webhook_receiver.posts) == 1, webhook_receiver.posts
        camera_server.set_frames([synthetic_frame(i) for i in range(4)])
        wait_for("back", lambda: watcher.step().verdict is not None, 30)
        assert notifier.notifications.flush(60), notifier.notify_status()
        assert webhook_receiver.posts[-1]["title"] == f"{PRINTER}: camera back online"
    finally:
        watcher.camera.close()


def test_an_emails_priority_is_its_own_where_its_url_sets_it() -> None:
    """An owner who wants alerts as plain mail sets the header in the URL: it is kept."""
    own = with_mail_priority("mailtos://u:p@mail.example.com?to=a@b.c&+X-Priority=3", "max")
    assert own.count("X-Priority") == 1 and "+X-Priority=3" in own and "+Importance=high" in own
    lower = with_mail_priority("mailto://u:p@example.com?+x-priority=3", "max")
    assert lower.lower().count("x-priority") == 1, lower
    assert with_mail_priority("ntfys://ntfy.sh/printers", "max") == "ntfys://ntfy.sh/printers"
    assert with_mail_priority("mailto://u:p@example.com", "default") == "mailto://u:p@example.com"


def test_a_notification_put_back_after_an_ntp_step_is_not_held_back_by_the_step(
    tmp_path, monkeypatch
) -> None:
    """An alert due and on its way failed, and the alert queued behind it (in its window) sums
    it up: it must go when the first was due. After NTP stepped the clock, the time kept in
    the summing one was shifted by the step twice, and it waited the step out again."""
    from prometheus_client import CollectorRegistry

    from watchdog.comms import notify
    from watchdog.comms.outbox import Outbox
    from watchdog.incidents import ThrottledLog

    skew = stepped_wall_clock(monkeypatch, 0.0)
    outbox = Outbox(tmp_path)
    sender = notify.TargetSender(
        NotifyTarget(url="ntfy://x/t"),
        "ntfy",
        outbox,
        None,
        notify._Meters(CollectorRegistry()),
        lambda request: {"ok": False},
        (1, 2),
        ThrottledLog(),
    )
    start = time.time()

    def body(not_before: float) -> dict:
        return {"kind": "failure", "group": "alert", "title": "t", "message": "m",
                "coalesced": 0, "since": start, "latest": start, "not_before": not_before}  # fmt: skip

    due = outbox.put(sender.channel, PRINTER, body(start - 5))  # on its way
    waiting = outbox.put(sender.channel, PRINTER, body(start + 60))  # in its window
    sender._queue = [waiting]
    skew[0] = 90.0
    sender._put_back(due)  # the service refused it: the one behind sums it up
    [summing] = sender._queue
    assert notify._not_before(summing) <= time.time(), notify._not_before(summing) - time.time()
