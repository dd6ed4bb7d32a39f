"""The OctoPrint client against a real OctoPrint with its virtual printer, and its faults."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from tests.plugins.printers import BadServer, OctoPrintServer, api_config
from watchdog.act import OctoPrintClient, make_printer

pytestmark = pytest.mark.servers


def client(server: OctoPrintServer | BadServer, **kw) -> OctoPrintClient:
    printer = make_printer(api_config("octoprint", server.url, server.api_key, **kw), backoff_s=0.05)
    assert isinstance(printer, OctoPrintClient)
    return printer


def test_status_follows_a_print(octoprint_server: OctoPrintServer) -> None:
    printer = client(octoprint_server)
    assert printer.status().state == "idle"
    octoprint_server.start_print(name="benchy.gcode")
    st = printer.status()
    assert st.state == "printing"
    assert st.job == "benchy.gcode"


def test_pause_pauses_the_real_printer(octoprint_server: OctoPrintServer) -> None:
    octoprint_server.start_print()
    result = client(octoprint_server).pause()
    assert (result.action, result.outcome, result.attempts) == ("pause", "done", 1)
    flags = octoprint_server.wait_flag("paused")
    assert not flags["printing"]
    # Pausing a paused job keeps it paused (OctoPrint's bare "pause" would toggle it back).
    again = client(octoprint_server).pause()
    assert again.outcome == "done" and "already paused" in again.detail
    assert octoprint_server.wait_flag("paused")["paused"]


def test_cancel_ends_the_print(octoprint_server: OctoPrintServer) -> None:
    octoprint_server.start_print()
    result = client(octoprint_server).cancel()
    assert result.outcome == "done"
    octoprint_server.wait_flag("printing", False)
    octoprint_server.wait_flag("cancelling", False)
    assert client(octoprint_server).status().state == "idle"


def test_pause_when_not_printing_is_refused(octoprint_server: OctoPrintServer) -> None:
    result = client(octoprint_server).pause()
    assert result.outcome == "refused"
    assert "not printing" in result.detail
    assert octoprint_server.flags()["ready"]  # nothing happened to the printer


def test_printer_disconnected_is_idle_and_pause_refused(octoprint_server: OctoPrintServer) -> None:
    octoprint_server.post("/api/connection", {"command": "disconnect"})
    printer = client(octoprint_server)
    st = printer.status()
    assert st.state == "idle" and "409" in st.detail
    assert printer.pause().outcome == "refused"


def test_wrong_api_key_fails_clearly_without_logging_a_key(
    octoprint_server: OctoPrintServer, caplog: pytest.LogCaptureFixture
) -> None:
    octoprint_server.start_print()
    wrong = "WRONGKEY0123456789"
    printer = make_printer(api_config("octoprint", octoprint_server.url, wrong), backoff_s=0.05)
    with caplog.at_level(logging.DEBUG):
        st = printer.status()
        result = printer.pause()
    assert st.state == "offline" and "API key rejected" in st.detail
    assert result.outcome == "failed" and "API key rejected" in result.detail
    assert result.attempts == 1  # a rejected key is not retried
    assert octoprint_server.flags()["printing"]  # the print goes on
    for text in [caplog.text, result.detail, st.detail, str(result.to_dict())]:
        assert wrong not in text and octoprint_server.api_key not in text


def test_server_stopped_mid_print(octoprint_server: OctoPrintServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="watchdog.act")
    octoprint_server.start_print()
    printer = client(octoprint_server, retries=2)
    octoprint_server.stop()
    st = printer.status()
    assert st.state == "offline" and "connection refused" in st.detail
    result = printer.pause()
    assert result.outcome == "failed" and result.attempts == 3
    assert "connection refused" in result.detail and octoprint_server.url in result.detail
    octoprint_server.start()
    assert printer.status().state == "idle"  # back, with the printer to connect again
    assert "answers again" in caplog.text


# --------------------------------------------------------------------------- misbehaving server


@pytest.mark.parametrize(
    ("status", "body", "expect", "attempts"),
    [
        (500, "<html><body><h1>Internal Server Error</h1></body></html>", "HTTP 500: Internal Server Error", 3),
        (503, '{"error": "Service Unavailable"}', "HTTP 503: Service Unavailable", 3),
        (401, '{"error": "Unauthorized"}', "HTTP 401: API key rejected", 1),
        (403, '{"error": "Forbidden"}', "HTTP 403: API key rejected", 1),
        (404, "not here", "HTTP 404: not here", 1),
    ],
)
def test_bad_answers_fail_clearly(bad_server: BadServer, status, body, expect, attempts) -> None:
    bad_server.respond(status, body)
    printer = client(bad_server, retries=2)
    st = printer.status()
    assert st.state == "offline" and expect in st.detail
    result = printer.pause()
    assert (result.outcome, result.attempts) == ("failed", attempts)
    assert expect in result.detail and bad_server.url in result.detail


def test_garbage_json_fails_clearly(bad_server: BadServer) -> None:
    bad_server.garbage()
    printer = client(bad_server, retries=1)
    assert "not valid JSON" in printer.status().detail
    result = printer.pause()
    assert result.outcome == "failed" and result.attempts == 2 and "not valid JSON" in result.detail


def test_hanging_server_times_out(bad_server: BadServer) -> None:
    bad_server.hang()
    printer = client(bad_server, timeout_s=0.3, retries=1)
    assert "timeout" in printer.status().detail
    result = printer.pause()
    assert result.outcome == "failed" and result.attempts == 2 and "timeout" in result.detail
    assert bad_server.requests == 3


def test_conflict_on_the_command_is_refused_with_octoprints_message(bad_server: BadServer) -> None:
    """A print that ends between the state check and the command: OctoPrint answers 409."""
    printing = {"state": {"text": "Printing", "flags": {"printing": True, "ready": False}}}
    bad_server.respond(200, json.dumps(printing), path="/api/printer")
    bad_server.respond(409, '{"error": "Printer is neither printing nor paused, \'pause\' command cannot be performed"}')
    result = client(bad_server).pause()
    assert result.outcome == "refused" and "neither printing nor paused" in result.detail


def test_stop_event_cuts_retries_short(bad_server: BadServer) -> None:
    bad_server.respond(503, "busy")
    stop = threading.Event()
    stop.set()
    printer = make_printer(api_config("octoprint", bad_server.url, "k", retries=10), stop, backoff_s=5.0)
    result = printer.pause()
    assert result.outcome == "failed" and result.attempts == 1 and "shutting down" in result.detail
