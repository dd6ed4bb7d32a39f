"""End to end: `python -m watchdog run` pauses a real Moonraker print on a failure, the phone gets
the ntfy notification with the heatmap and its buttons, and pressing Resume resumes the real
print. The ntfy URL's secret appears in no output: the daemon's log, /status, /metrics,
check-config."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.daemon_helpers import DaemonProcess, free_port, run_cli, wait_until, write_config

pytestmark = pytest.mark.servers

SECRET = "ntfy-pass-7f3a9c"


@pytest.mark.parametrize("kind", ["moonraker", "octoprint"])
def test_the_phones_resume_button_resumes_a_real_print(
    request,
    kind,
    tmp_path,
    tiny_bundle,
    camera_server,
    ntfy_receiver,
    normal_frames,
    anomalous_frames,
) -> None:
    server = request.getfixturevalue(f"{kind}_server")
    http_port = free_port()
    url_file = tmp_path / "ntfy.url"
    url_file.write_text(ntfy_receiver.url("printers", "bob", SECRET))
    url_file.chmod(0o600)
    notify = [{"url_file": str(url_file), "actions_url": f"http://127.0.0.1:{http_port}"}]
    config = _config(tmp_path, tiny_bundle, http_port, camera_server, kind, server, notify)
    checked = run_cli("check-config", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert SECRET not in checked.stdout + checked.stderr and "**********" in checked.stdout

    def paused() -> bool:
        return (
            server.print_state() == "paused"
            if kind == "moonraker"
            else bool(server.flags().get("paused"))
        )

    def printing() -> bool:
        return (
            server.print_state() == "printing"
            if kind == "moonraker"
            else bool(server.flags().get("printing"))
        )

    camera_server.set_frames(normal_frames)
    server.start_print()
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait_until(
            "the status server", lambda: _get(f"{base}/healthz") == 200, 60, lambda: daemon.log
        )
        camera_server.set_frames(anomalous_frames)
        wait_until("the real print paused", paused, 90, lambda: daemon.log)
        [message] = wait_until(
            "the phone notification", lambda: ntfy_receiver.messages, 60, lambda: daemon.log
        )
        assert message.title == "ender3: print failure, paused" and message.priority == "high"
        assert message.attachment and message.attachment[:2] == b"\xff\xd8"
        buttons = {a["label"]: a for a in message.actions}
        assert set(buttons) == {"Not a failure", "Resume", "Cancel"}
        camera_server.set_frames(normal_frames)

        answer = requests.post(buttons["Resume"]["url"], timeout=30)
        assert answer.status_code == 200, answer.text
        wait_until("the real print resumed", printing, 30, lambda: daemon.log)
        again = requests.post(buttons["Resume"]["url"], timeout=30)
        assert again.status_code == 409 and "already used" in again.text

        def sent() -> dict | None:
            status = requests.get(f"{base}/status", timeout=5).json()
            return status if status["notify"]["ntfy"]["sent"] == 1 else None

        status = wait_until("/status to count the notification sent", sent, 30, lambda: daemon.log)
        assert status["notify"]["ntfy"]["pending"] == 0 and len(ntfy_receiver.messages) == 1
        metrics = requests.get(f"{base}/metrics", timeout=5).text
        assert 'printer_watchdog_notifications_total{outcome="sent",target="ntfy"} 1.0' in metrics
        outputs = json.dumps(status) + metrics
    finally:
        daemon.stop()
    log = daemon.log
    assert "phone button resume" in log
    for secret in (SECRET, buttons["Resume"]["url"].rsplit("/", 1)[1]):
        assert secret not in log + outputs


def _config(
    tmp_path: Path,
    bundle: Path,
    http_port: int,
    camera_server: Any,
    kind: str,
    server: Any,
    notify: list[dict[str, Any]],
    mqtt: dict[str, Any] | None = None,
    **api: Any,
) -> Path:
    """One printer on a real camera and a real printer API, pausing on a failure; ``api``:
    more of its api settings."""
    return write_config(
        tmp_path / "config.yaml",
        **({"mqtt": mqtt} if mqtt else {}),
        model=str(bundle),
        http={"listen": f"127.0.0.1:{http_port}"},
        storage={"dir": str(tmp_path / "state")},
        printers=[
            {
                "name": "ender3",
                "camera": {"source": camera_server.snapshot_url, "interval_s": 0.3, "timeout_s": 3},
                "api": {
                    "kind": kind,
                    "url": server.url,
                    "api_key": server.api_key,
                    "timeout_s": 3,
                    "retries": 2,
                    **api,
                },
                "detection": {"consecutive": 3, "cooldown_s": 600},
                "action": "pause",
            }
        ],
        notify=notify,
    )


def _press(button: dict[str, Any], moonraker: Any, state: str, daemon: DaemonProcess) -> None:
    """A notification's button pressed, taken, and the real print then in ``state``."""
    answer = requests.post(button["url"], timeout=30)
    assert answer.status_code == 200, answer.text
    wait_until(
        f"the real print {state}", lambda: moonraker.print_state() == state, 30, lambda: daemon.log
    )


def _failing_print_behind_a_pause_macro(
    tmp_path: Path,
    bundle: Path,
    camera_server: Any,
    moonraker: Any,
    frames: list,
    ntfy_url: str,
    macro: str,
    mqtt: dict[str, Any] | None = None,
) -> Path:
    """A real Moonraker print whose PAUSE macro is ``TEST_PAUSE_MACRO <macro>`` (tests/
    fake_klippy.py), failing in view from its start; the config of a daemon that pauses it,
    checking the pause 5 s later (``api.confirm_s``), its phone buttons on its own port."""
    http_port = free_port()
    notify = [{"url": ntfy_url, "actions_url": f"http://127.0.0.1:{http_port}"}]
    config = _config(
        tmp_path,
        bundle,
        http_port,
        camera_server,
        "moonraker",
        moonraker,
        notify,
        mqtt,
        confirm_s=5,
    )
    moonraker.post("/printer/gcode/script", {"script": f"TEST_PAUSE_MACRO {macro}"})
    camera_server.set_frames(frames)
    moonraker.start_print()
    return config


def test_a_pause_the_printer_took_but_never_made_is_told_to_the_phone_at_once(
    tmp_path,
    tiny_bundle,
    camera_server,
    ntfy_receiver,
    moonraker_server,
    mosquitto,
    unique_prefix,
    anomalous_frames,
) -> None:
    """Klipper's API says "ok" to a pause whose PAUSE macro does not pause (it forgets
    PAUSE_BASE): the print goes on. The alert said "paused"; once the printer is seen still
    printing ``api.confirm_s`` later, the phone hears at once (no coalescing window) that the
    pause did NOT happen, with Cancel (no Resume), Home Assistant gets the alert corrected,
    the saved alert says so, and its Cancel stops the real print."""
    topic = f"{unique_prefix}/ender3/alert"
    sub = mosquitto.subscriber(topic)
    config = _failing_print_behind_a_pause_macro(
        tmp_path,
        tiny_bundle,
        camera_server,
        moonraker_server,
        anomalous_frames,
        ntfy_receiver.url("printers"),
        "PAUSES=0",
        mosquitto.mqtt_settings(topic_prefix=unique_prefix),
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        first, corrected = wait_until(
            "the alert and its correction",
            lambda: ntfy_receiver.messages if len(ntfy_receiver.messages) >= 2 else None,
            120,
            lambda: daemon.log,
        )
        assert first.title == "ender3: print failure, paused"
        assert moonraker_server.print_state() == "printing"
        assert corrected.title == "ender3: failure, and the pause did NOT happen"
        assert corrected.priority == "max" and "still printing 5 s later" in corrected.message
        assert corrected.attachment and corrected.attachment[:2] == b"\xff\xd8"
        buttons = {a["label"]: a for a in corrected.actions}
        assert set(buttons) == {"Not a failure", "Cancel"}
        [saved] = (tmp_path / "state" / "incidents" / "ender3").glob("*/alert.json")
        alert = json.loads(saved.read_text())
        assert alert["action_result"]["outcome"] == "failed" and alert["answers"] == ["cancel"]
        assert "pause failed: the printer's API took the pause" in alert["message"]
        said = wait_until(
            "the corrected alert over MQTT", lambda: sub.received(topic)[1:], 30, lambda: daemon.log
        )
        assert [m.json()["action_result"]["outcome"] for m in sub.received(topic)] == [
            "done",
            "failed",
        ]
        assert said[0].json()["incident"] == alert["incident"]
        # the first notification's Resume, pressed now, would answer the alert (the print
        # "resumed") and refuse the Cancel that can still stop it
        stale = {a["label"]: a for a in first.actions}["Resume"]
        refused = requests.post(stale["url"], timeout=30)
        assert refused.status_code == 409 and "paused nothing" in refused.text, refused.text
        _press(buttons["Cancel"], moonraker_server, "cancelled", daemon)
    finally:
        daemon.stop()
    assert "the printer was still printing 5 s later" in daemon.log


def test_a_pause_that_comes_late_is_told_as_paused_after_all(
    tmp_path, tiny_bundle, camera_server, ntfy_receiver, moonraker_server, anomalous_frames
) -> None:
    """Klipper's PAUSE waits behind a long command (a heat-up, a bed mesh) longer than
    ``api.confirm_s``: the phone is told the pause did NOT happen, then, when the printer shows
    it paused, that it is paused after all, with its Resume back (on the card too), which
    resumes the real print."""
    config = _failing_print_behind_a_pause_macro(
        tmp_path,
        tiny_bundle,
        camera_server,
        moonraker_server,
        anomalous_frames,
        ntfy_receiver.url("late"),
        "DELAY=12",
    )
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        first, missed, late = wait_until(
            "the alert, its correction and the late pause",
            lambda: ntfy_receiver.messages if len(ntfy_receiver.messages) >= 3 else None,
            120,
            lambda: daemon.log,
        )
        assert moonraker_server.print_state() == "paused"
        assert missed.title == "ender3: failure, and the pause did NOT happen", missed.title
        assert late.title == "ender3: print failure, paused", late.title
        buttons = {a["label"]: a for a in late.actions}
        assert set(buttons) == {"Not a failure", "Resume", "Cancel"}
        [saved] = (tmp_path / "state" / "incidents" / "ender3").glob("*/alert.json")
        alert = json.loads(saved.read_text())
        assert alert["action_result"]["outcome"] == "done" and "resume" in alert["answers"]
        assert "paused after all" in alert["message"]
        _press(buttons["Resume"], moonraker_server, "printing", daemon)
    finally:
        daemon.stop()


def test_an_email_link_stops_watching_the_print_it_was_about(
    tmp_path, tiny_bundle, camera_server, smtp_receiver, moonraker_server, anomalous_frames
) -> None:
    """Email (links, not three buttons) offers "Stop watching this print" besides the answers:
    opened, it only asks; posted, the print under way goes unwatched (the next one is
    watched), as the page's button does; used twice, it is refused."""
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    notify = [{"url": smtp_receiver.url("owner@example.com"), "actions_url": base}]
    config = _config(
        tmp_path, tiny_bundle, http_port, camera_server, "moonraker", moonraker_server, notify
    )
    camera_server.set_frames(anomalous_frames)
    moonraker_server.start_print()
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        [mail] = wait_until("the email", lambda: smtp_receiver.mails, 120, lambda: daemon.log)
        text = mail.get_body(("plain",)).get_content()
        [link] = re.findall(r"^Stop watching this print: (\S+)\r?$", text, re.M)
        asked = requests.get(link, timeout=30)
        assert "ender3, job watchdog-test.gcode: Stop watching this print?" in asked.text
        assert not _status(base)["skipping_print"]
        done = requests.post(link, timeout=30)
        assert done.status_code == 200, done.text
        assert "watched again from the next one" in done.text
        assert _status(base)["skipping_print"]
        again = requests.post(link, timeout=30)
        assert again.status_code == 409 and "already used" in again.text
    finally:
        daemon.stop()


def _status(base: str) -> dict[str, Any]:
    return requests.get(f"{base}/status", timeout=10).json()["printers"]["ender3"]


def _get(url: str) -> int:
    try:
        return requests.get(url, timeout=2).status_code
    except requests.RequestException:
        return 0


def test_a_print_that_ends_is_told_to_the_phone_when_asked(
    tmp_path, tiny_bundle, camera_server, ntfy_receiver, octoprint_server, normal_frames
) -> None:
    http_port = free_port()
    notify = [{"url": ntfy_receiver.url("done"), "events": ["failure", "print_done"]}]
    config = _config(
        tmp_path, tiny_bundle, http_port, camera_server, "octoprint", octoprint_server, notify
    )
    camera_server.set_frames(normal_frames)
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait_until(
            "the status server", lambda: _get(f"{base}/healthz") == 200, 60, lambda: daemon.log
        )
        octoprint_server.start_print(lines=60, name="benchy.gcode")  # about 12 s
        [message] = wait_until(
            "the print-ended notification", lambda: ntfy_receiver.messages, 90, lambda: daemon.log
        )
    finally:
        daemon.stop()
    # OctoPrint's job at 100%: finished, not "ended (finished, or cancelled at the printer)"
    assert message.title == "ender3: print finished", message.title
    assert message.message == "benchy.gcode on ender3 has finished.", message.message
    assert message.priority == "low" and not message.actions


def test_an_email_link_opens_a_page_that_asks_then_resumes_a_real_print(
    tmp_path,
    tiny_bundle,
    camera_server,
    smtp_receiver,
    moonraker_server,
    normal_frames,
    anomalous_frames,
) -> None:
    """Email has no buttons: the alert carries links. Opening one (a link preview does the
    same) only asks; pressing Yes in the browser resumes the real print, and the alert is
    answered: its Cancel no longer acts."""
    from selenium.webdriver.common.by import By

    from tests.browser import chromium, chromium_missing

    if why := chromium_missing():
        pytest.skip(why)
    http_port = free_port()
    base = f"http://127.0.0.1:{http_port}"
    notify = [{"url": smtp_receiver.url("owner@example.com"), "actions_url": base}]
    config = _config(
        tmp_path, tiny_bundle, http_port, camera_server, "moonraker", moonraker_server, notify
    )
    browser = chromium()
    camera_server.set_frames(normal_frames)
    moonraker_server.start_print()
    daemon = DaemonProcess(config, tmp_path / "daemon.log")
    try:
        wait_until(
            "the status server", lambda: _get(f"{base}/healthz") == 200, 60, lambda: daemon.log
        )
        camera_server.set_frames(anomalous_frames)
        wait_until(
            "the real print paused",
            lambda: moonraker_server.print_state() == "paused",
            90,
            lambda: daemon.log,
        )
        [mail] = wait_until("the email", lambda: smtp_receiver.mails, 60, lambda: daemon.log)
        text = mail.get_body(("plain",)).get_content()
        # plain text, one answer a line (mail clients turn the URLs into links)
        assert mail.get_body(("html",)) is None
        links = dict(re.findall(r"^(Not a failure|Resume|Cancel): (\S+)\r?$", text, re.M))
        assert set(links) == {"Not a failure", "Resume", "Cancel"} and all(
            url.startswith(f"{base}/actions/") for url in links.values()
        )
        camera_server.set_frames(normal_frames)

        browser.get(links["Cancel"])  # opened, not pressed: nothing happens to the print
        # the printer and the job the alert was about come first, then the question
        question = "ender3, job watchdog-test.gcode: Cancel the print?"
        assert question in browser.find_element(By.TAG_NAME, "body").text
        browser.get(links["Resume"])
        question = "ender3, job watchdog-test.gcode: Resume the print?"
        assert question in browser.find_element(By.TAG_NAME, "body").text
        assert moonraker_server.print_state() == "paused"
        browser.find_element(By.CSS_SELECTOR, "form button").click()
        wait_until(
            "the answer page", lambda: "<form" not in browser.page_source, 30, lambda: daemon.log
        )
        assert "resume" in browser.find_element(By.TAG_NAME, "body").text.lower()
        wait_until(
            "the real print resumed",
            lambda: moonraker_server.print_state() == "printing",
            30,
            lambda: daemon.log,
        )
        browser.get(links["Resume"])  # a second time: used
        assert "already used" in browser.find_element(By.TAG_NAME, "body").text
        assert browser.find_elements(By.CSS_SELECTOR, "form") == []
        # the alert is answered: its Cancel, pressed later (another reader of the mail), does
        # not cancel the print it resumed
        browser.get(links["Cancel"])
        answered = "this alert was answered already: the print was resumed"
        assert answered in browser.find_element(By.TAG_NAME, "body").text
        assert browser.find_elements(By.CSS_SELECTOR, "form") == []
        pressed = requests.post(links["Cancel"], timeout=30)
        assert pressed.status_code == 409 and answered in pressed.text
        assert moonraker_server.print_state() == "printing"
    finally:
        daemon.stop()
        browser.quit()
        shutil.rmtree(browser._profile, ignore_errors=True)
    assert "phone button resume" in daemon.log
    for url in links.values():
        assert url.rsplit("/", 1)[1] not in daemon.log
