"""Both HTTP printer clients against servers that misbehave: they fail clearly, never raise.

The misbehaving server is real HTTP on 127.0.0.1 (tests/plugins/printers.py: bad_server);
what a user notices is the alert's action result and one log line per failure.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.plugins.printers import BadServer, api_config
from watchdog.devices.printers import make_printer

KINDS = ["octoprint", "moonraker"]


@pytest.mark.servers
@pytest.mark.parametrize("kind", KINDS)
def test_wrong_api_key_fails_clearly_without_logging_a_key(
    kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    server = request.getfixturevalue(f"{kind}_server")  # the real one
    server.start_print()
    wrong = "0123456789ABCDEF0123456789abcdef"
    printer = make_printer(api_config(kind, server.url, wrong), backoff_s=0.05)
    with caplog.at_level(logging.DEBUG):
        st = printer.status()
        result = printer.pause()
    assert st.state == "offline" and "API key rejected" in st.detail
    assert result.outcome == "failed" and "API key rejected" in result.detail
    assert result.attempts == 1  # a rejected key is not retried
    assert server.printing()  # the print goes on
    for text in [caplog.text, st.detail, json.dumps(result.to_dict())]:
        assert wrong not in text and server.api_key not in text


def client(kind: str, server: BadServer, stop: threading.Event | None = None, **kw):
    return make_printer(api_config(kind, server.url, server.api_key, **kw), stop, backoff_s=0.05)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("status", "body", "expect", "attempts"),
    [
        (
            500,
            "<html><body><h1>Internal Server Error</h1></body></html>",
            "HTTP 500: Internal Server Error",
            3,
        ),
        (
            503,
            '{"error": {"code": 503, "message": "Klippy Host not connected"}}',
            "Klippy Host not connected",  # Moonraker's words, explained there
            3,
        ),
        (
            401,
            '{"error": {"code": 401, "message": "Unauthorized"}}',
            "HTTP 401: API key rejected",
            1,
        ),
        (403, '{"error": "Forbidden"}', "HTTP 403: API key rejected", 1),
        (404, "not here", "HTTP 404: not here", 1),
    ],
)
def test_error_answers_fail_clearly(
    kind: str,
    status: int,
    body: str,
    expect: str,
    attempts: int,
    bad_server: BadServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad_server.respond(status, body)
    printer = client(kind, bad_server, retries=2)
    st = printer.status()
    assert st.state == "offline" and expect in st.detail
    result = printer.pause()
    # 5xx may pass: retried with backoff; a rejected key or a missing page will not: not retried.
    assert (result.outcome, result.attempts) == ("failed", attempts)
    assert expect in result.detail and bad_server.url in result.detail
    assert bad_server.api_key not in caplog.text + json.dumps(result.to_dict())
    failures = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name == "watchdog.devices.printers"
    ]
    assert (
        len(failures) == attempts
    )  # one line per failed attempt (the watcher logs status changes)
    assert all(bad_server.url in r.getMessage() and expect in r.getMessage() for r in failures)


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_pause_names_the_printers_address_without_its_user_name(
    kind: str, bad_server: BadServer
) -> None:
    """The alert on the phone quoted the API's URL with its user name ("mruser:***@"): the
    address is enough to find it."""
    bad_server.respond(500, "down")
    url = bad_server.url.replace("http://", "http://printeradmin:hunter22@")
    printer = make_printer(api_config(kind, url, bad_server.api_key, retries=0), None)
    result = printer.pause()
    assert result.outcome == "failed" and bad_server.url in result.detail, result.detail
    assert "printeradmin" not in result.detail and "hunter22" not in result.detail


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_json_fails_clearly(kind: str, bad_server: BadServer) -> None:
    bad_server.garbage()
    printer = client(kind, bad_server, retries=1)
    assert "not valid JSON" in printer.status().detail
    result = printer.pause()
    assert result.outcome == "failed" and result.attempts == 2 and "not valid JSON" in result.detail


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("body", "expect"),
    [("[" * 200_000, "not valid JSON"), ('{"x": "' + "a" * 2_000_000 + '"}', "larger than")],
    ids=["deeply-nested", "2MB"],
)
def test_hostile_answers_fail_clearly(
    kind: str, body: str, expect: str, bad_server: BadServer
) -> None:
    bad_server.respond(200, body)
    result = client(kind, bad_server, retries=0).pause()
    assert result.outcome == "failed" and expect in result.detail
    bad_server.respond(500, body)  # the error message is looked for in the body too
    result = client(kind, bad_server, retries=0).pause()
    assert result.outcome == "failed" and "HTTP 500" in result.detail


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("body", ["a." * 400_000, "<" * 800_000], ids=["word-boundaries", "lt"])
def test_a_large_answer_of_odd_text_is_read_in_moments_not_for_an_hour(
    kind: str, body: str, bad_server: BadServer
) -> None:
    """Looking for the error message (and masking secrets in it), the whole body went through
    patterns that took quadratic time on such text: 800 KB of "a.a.a." held every thread of
    the daemon (the regex engine keeps the GIL) for about an hour, systemd's watchdog killed
    it, and the next poll did the same. A minute is far more than it takes now."""
    bad_server.respond(500, body)
    # in a process of its own: a regex holding the GIL would hold this test's clock too
    pause = (
        "import sys; from tests.plugins.printers import api_config;"
        "from watchdog.devices.printers import make_printer;"
        "print(make_printer(api_config(*sys.argv[1:4], retries=0)).pause().detail[:200])"
    )
    done = subprocess.run(
        [sys.executable, "-c", pause, kind, bad_server.url, bad_server.api_key],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert "HTTP 500" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("before", ["spaces", "tags"])
def test_a_key_where_a_large_answer_is_cut_never_reaches_the_message(
    kind: str, before: str, bad_server: BadServer
) -> None:
    """The error message is looked for in the answer's first 16 KB: a key or a URL's password
    cut in two there escapes the masking (neither its value nor a URL pattern matches half of
    it). Whatever stands before it collapses to nothing (blanks, HTML tags), none of it shows."""
    key = "SECRETKEY" * 4
    for cut in range(15_300, 16_400, 9):  # wherever the reading stops, around 16 KB
        for label in (" X-Api-Key: ", " https://viewer:"):
            size = cut - len(label) - 10  # the key's first 10 characters before the cut
            lead = " " * size if before == "spaces" else "<p></p>" * (size // 7) + " " * (size % 7)
            bad_server.respond(500, lead + label + key + "@host/x" + " more" * 2000)
            printer = make_printer(api_config(kind, bad_server.url, key, retries=0))
            detail = printer.pause().detail
            assert not any(key[i : i + 6] in detail for i in range(len(key) - 5)), (cut, detail)


@pytest.mark.parametrize("kind", KINDS)
def test_json_of_the_wrong_shape_fails_clearly(kind: str, bad_server: BadServer) -> None:
    bad_server.respond(200, '{"result": {"status": {}}, "state": "what"}')
    result = client(kind, bad_server, retries=0).pause()
    assert result.outcome == "failed" and "answer" in result.detail


@pytest.mark.parametrize(
    "body",
    [
        '{"result": {"status": {"webhooks": {"state": "ready"}, "print_stats": {"state": ["printing"]}}}}',
        '{"result": {"status": {"webhooks": {"state": ["ready"]}, "print_stats": {"state": "printing"}}}}',
        '{"result": {"status": {"webhooks": {"state": "ready"}, "print_stats": ["printing"]}}}',
    ],
    ids=["state-a-list", "klippy-a-list", "print-stats-a-list"],
)
def test_moonraker_answer_with_values_of_the_wrong_type_fails_clearly(
    body: str, bad_server: BadServer
) -> None:
    bad_server.respond(200, body)
    printer = client("moonraker", bad_server, retries=0)
    assert printer.status().state == "offline"
    result = printer.pause()
    assert result.outcome == "failed" and "answer lacks" in result.detail


def test_a_print_time_too_large_for_a_number_is_left_unknown_not_raised(
    bad_server: BadServer,
) -> None:
    """A print time of hundreds of digits (a broken or hostile API) must not raise into the
    watcher on every poll: the printer is read, its print time unknown."""
    huge = "9" * 400
    bad_server.respond(
        200,
        '{"result": {"status": {"webhooks": {"state": "ready"}, "print_stats": {"state": '
        f'"printing", "filename": "a.gcode", "print_duration": {huge}, "total_duration": {huge}}}}}}}}}',
    )
    st = client("moonraker", bad_server, retries=0).status()
    assert st.state == "printing" and st.job == "a.gcode" and st.printed_s is None, st


@pytest.mark.parametrize("kind", KINDS)
def test_hanging_server_times_out(kind: str, bad_server: BadServer) -> None:
    bad_server.hang()
    printer = client(kind, bad_server, timeout_s=0.3, retries=1)
    st = printer.status()
    assert st.state == "offline" and "timeout" in st.detail
    result = printer.pause()
    assert result.outcome == "failed" and result.attempts == 2 and "timeout" in result.detail
    assert bad_server.requests == 3


@pytest.mark.parametrize("kind", KINDS)
def test_an_answer_dripping_in_is_cut_at_the_timeout(kind: str, bad_server: BadServer) -> None:
    """An API or proxy sending its answer a byte every 0.2 s: no single wait times out, but
    the request must end within api.timeout_s (it held the watcher, and the pause queued
    behind it, for as long as the answer took)."""
    import time

    bad_server.respond(200, json.dumps({"pad": "x" * 400}))
    bad_server.drip_s = 0.2
    printer = client(kind, bad_server, timeout_s=1.0, retries=0)
    started = time.monotonic()
    st = printer.status()
    assert time.monotonic() - started < 5, "the answer was waited for past the timeout"
    assert st.state == "offline" and "within 1 s" in st.detail, st


@pytest.mark.parametrize("kind", KINDS)
def test_an_api_key_a_header_cannot_carry_is_a_clear_failure(
    kind: str, bad_server: BadServer
) -> None:
    """A curly quote pasted in with the key: one clear line, nothing raised into the loop."""
    api = api_config(kind, bad_server.url, "abc’def")  # noqa: RUF001
    printer = make_printer(api, backoff_s=0.05)
    st = printer.status()
    assert st.state == "offline" and "api.api_key" in st.detail, st
    result = printer.pause()
    assert result.outcome == "failed" and "api.api_key" in result.detail


@pytest.mark.parametrize("kind", KINDS)
def test_server_hanging_up_fails_clearly(kind: str, bad_server: BadServer) -> None:
    bad_server.drop()
    result = client(kind, bad_server, retries=1).pause()
    assert (
        result.outcome == "failed"
        and result.attempts == 2
        and "connection closed by the server" in result.detail
    )


@pytest.mark.parametrize("kind", KINDS)
def test_redirect_is_not_followed_with_the_key(kind: str, bad_server: BadServer) -> None:
    # Following it would send X-Api-Key to whatever host the answer names.
    bad_server.routes[None] = (302, b"", "text/plain")
    result = client(kind, bad_server).pause()
    assert result.outcome == "failed" and "redirect" in result.detail
    assert bad_server.requests == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_redirect_echoing_the_key_in_its_address_never_shows_it(
    kind: str, bad_server: BadServer
) -> None:
    """The redirect's address is said (set api.url to it); one holding the key (a server
    echoing what it was sent) reached the alert, the page and MQTT with it."""
    key = "abcdefghijklmnopqrstuvwxyzabcdef"  # no token look: masked for being the key
    bad_server.routes[None] = (302, b"", "text/plain")
    bad_server.headers["Location"] = f"http://other.example/login/{key}?next=/"
    result = make_printer(api_config(kind, bad_server.url, key, retries=0)).pause()
    assert result.outcome == "failed" and "redirect to http://other.example/login/" in result.detail
    assert key not in result.detail, result.detail


@pytest.mark.parametrize("kind", KINDS)
def test_a_command_sent_unanswered_is_unknown_not_failed_when_a_stop_cuts_its_retries(
    kind: str, bad_server: BadServer
) -> None:
    """A pause sent and not answered may still happen (a Klipper PAUSE behind a heat-up);
    a stop during the wait before its next try told it "failed", the pause never checked."""
    printing = {
        "state": {"text": "Printing", "flags": {"printing": True}},
        "job": {"file": {"name": "a.gcode"}},
        "result": {
            "status": {
                "print_stats": {"state": "printing", "filename": "a.gcode"},
                "webhooks": {"state": "ready"},
            }
        },
    }
    bad_server.respond(200, json.dumps(printing))
    bad_server.hang(5, {"octoprint": "/api/job", "moonraker": "/printer/print/pause"}[kind])
    stop = threading.Event()
    api = api_config(kind, bad_server.url, bad_server.api_key, timeout_s=0.3, retries=3)
    printer = make_printer(api, stop, backoff_s=5.0)
    threading.Timer(1.0, stop.set).start()  # in the wait after the first try
    result = printer.pause()
    assert result.outcome == "unknown" and "may still happen" in result.detail, result
    assert "shutting down" in result.detail and result.attempts == 1


@pytest.mark.parametrize("kind", KINDS)
def test_stop_event_cuts_retries_short(kind: str, bad_server: BadServer) -> None:
    bad_server.respond(503, "busy")
    stop = threading.Event()
    stop.set()
    printer = make_printer(api_config(kind, bad_server.url, "k", retries=10), stop, backoff_s=5.0)
    result = printer.pause()
    assert result.outcome == "failed" and result.attempts == 1 and "shutting down" in result.detail


IDLE_AFTER_CANCEL = {
    "octoprint": ("/api/printer", {"state": {"text": "Operational", "flags": {"ready": True}}}),
    "moonraker": (
        "/printer/objects/query",
        {
            "result": {
                "status": {"webhooks": {"state": "ready"}, "print_stats": {"state": "cancelled"}}
            }
        },
    ),
}
COMMAND_PATH = {"octoprint": "/api/job", "moonraker": "/printer/print/cancel"}


@pytest.mark.parametrize("kind", KINDS)
def test_a_cancel_whose_answer_was_lost_is_done_not_refused(
    kind: str, bad_server: BadServer
) -> None:
    """The printer took the cancel but its answer never came (Wi-Fi): the retry finds it idle.
    That was "refused: not printing", so the alert said the cancel did NOT happen and offered
    it again; the print has stopped."""
    path, printing = PRINTING[kind]
    bad_server.respond(200, json.dumps(printing), path=path)
    bad_server.hang(30, path=COMMAND_PATH[kind])

    def printer_cancels() -> None:
        deadline = time.monotonic() + 20
        while "/printer/print/cancel" not in bad_server.paths and time.monotonic() < deadline:
            if kind == "octoprint" and bad_server.paths.count("/api/job") >= 2:
                break  # the job's name, then the cancel itself
            time.sleep(0.01)
        idle_path, idle = IDLE_AFTER_CANCEL[kind]
        bad_server.respond(200, json.dumps(idle), path=idle_path)

    flip = threading.Thread(target=printer_cancels)
    flip.start()
    result = client(kind, bad_server, timeout_s=0.5, retries=2).cancel()
    flip.join()
    assert (result.outcome, result.attempts) == ("done", 2), result
    assert "stopped after the cancel" in result.detail


@pytest.mark.parametrize("text", ["Starting to send file to SD", "Sending file to SD"])
def test_an_upload_to_the_sd_card_is_no_print_to_watch_or_pause(
    bad_server: BadServer, text: str
) -> None:
    """OctoPrint copying a file onto the printer's SD card says "printing" in its flags: the
    camera was watched on an idle bed for the upload's minutes, and a pause was "accepted"
    (OctoPrint takes it and does nothing) and reported done."""
    answer = {"state": {"text": text, "flags": {"printing": True, "operational": True}}}
    bad_server.respond(200, json.dumps(answer), path="/api/printer")
    printer = client("octoprint", bad_server)
    status = printer.status()
    assert (status.state, status.detail) == ("idle", f"OctoPrint: {text}")
    result = printer.pause()
    assert result.outcome == "refused" and "/api/job" not in bad_server.paths, result


def test_a_pause_while_octoprint_finishes_the_print_is_said_not_to_have_happened(
    bad_server: BadServer,
) -> None:
    """Its last moves queued, OctoPrint takes a pause and does nothing: reported done, the
    owner was told the print was paused while it went on to its end."""
    answer = {"state": {"text": "Finishing", "flags": {"printing": True, "finishing": True}}}
    bad_server.respond(200, json.dumps(answer), path="/api/printer")
    bad_server.respond(200, json.dumps({"job": {"file": {"name": "a.gcode"}}}), path="/api/job")
    printer = client("octoprint", bad_server)
    assert printer.status().state == "printing"  # still watched to its end
    result = printer.pause()
    assert result.outcome == "refused", result
    assert "cannot be paused: OctoPrint: Finishing" in result.detail, result
    # the job's name read at each status, no command sent
    assert bad_server.paths.count("/api/job") == 2, bad_server.paths


def test_a_resume_while_octoprint_is_still_pausing_is_refused_not_told_done(
    bad_server: BadServer,
) -> None:
    """A Resume pressed as soon as the phone showed the pause, OctoPrint still "Pausing" (its
    queued moves): OctoPrint takes it and does nothing, the print then stays paused. It was
    told done and answered the alert, whose buttons went away with the print paused."""
    answer = {"state": {"text": "Pausing", "flags": {"printing": True, "pausing": True}}}
    bad_server.respond(200, json.dumps(answer), path="/api/printer")
    bad_server.respond(200, json.dumps({"job": {"file": {"name": "a.gcode"}}}), path="/api/job")
    printer = client("octoprint", bad_server)
    assert printer.status().state == "paused"
    result = printer.resume()
    assert result.outcome == "refused", result
    assert result.detail == (
        "job 'a.gcode' is still pausing (OctoPrint: Pausing): nothing resumed; resume it once "
        "it shows paused"
    ), result
    # the job's name read at each status, no command sent
    assert bad_server.paths.count("/api/job") == 2, bad_server.paths


@pytest.mark.parametrize(
    ("text", "then", "after"),
    [("Printing from SD", "offline", "offline"), ("Printing", "error", "idle")],
)
def test_octoprint_losing_its_printer_during_an_sd_print_is_not_the_prints_end(
    bad_server: BadServer, text: str, then: str, after: str
) -> None:
    """OctoPrint restarted (an update, a plugin) or lost its serial link: a print it streamed
    is lost (an end by an error, told once; then an idle printer), but a printer printing from
    its SD card goes on, and "idle" ended the print to the watcher: its alert's buttons
    refused, "print done" told."""
    printing = {"state": {"text": text, "flags": {"printing": True}}}
    bad_server.respond(200, json.dumps(printing), path="/api/printer")
    bad_server.respond(200, json.dumps({"job": {"file": {"name": "a.gcode"}}}), path="/api/job")
    printer = client("octoprint", bad_server)
    assert printer.status().state == "printing"
    bad_server.respond(
        409, json.dumps({"error": "Printer is not operational"}), path="/api/printer"
    )
    bad_server.respond(200, json.dumps({"state": "Offline", "job": {}}), path="/api/job")
    lost = printer.status()
    assert lost.state == then, lost
    if then == "offline":
        assert "printing from its SD card and may still be" in lost.detail, lost
    else:
        assert "OctoPrint lost its printer during the print" in lost.detail, lost
    # a settings save meanwhile builds a new client: it knows what the old one knew
    rebuilt = client("octoprint", bad_server)
    rebuilt.carry_on(printer)
    assert rebuilt.status().state == after


def test_a_print_that_ended_before_any_cancel_went_out_is_still_refused(
    bad_server: BadServer,
) -> None:
    """Only a cancel that went out counts as done when the printer is found idle."""
    path, idle = IDLE_AFTER_CANCEL["moonraker"]
    bad_server.respond(200, json.dumps(idle), path=path)
    result = client("moonraker", bad_server).cancel()
    assert result.outcome == "refused" and "/printer/print/cancel" not in bad_server.paths


def test_a_klipper_shutdown_message_of_several_lines_is_said_on_one(
    bad_server: BadServer,
) -> None:
    """Klipper's shutdown texts run over several lines; the status lands in a log line, an
    alert and a phone notification, each one line."""
    message = (
        "MCU 'mcu' shutdown: Timer too close\nThis often indicates a host error.\n\nOnce fixed"
    )
    shutdown = {
        "result": {
            "status": {
                "webhooks": {"state": "shutdown", "state_message": message},
                "print_stats": {"state": "error"},
            }
        }
    }
    bad_server.respond(200, json.dumps(shutdown), path="/printer/objects/query")
    st = client("moonraker", bad_server).status()
    assert st.state == "error" and "\n" not in st.detail
    assert "Timer too close This often indicates a host error. Once fixed" in st.detail
    stopped = {  # Klipper ready, the print stopped by an error of several lines
        "result": {
            "status": {
                "webhooks": {"state": "ready"},
                "print_stats": {
                    "state": "error",
                    "message": "Move exceeds maximum extrusion\n(1.2mm^2 vs 0.6)",
                },
            }
        }
    }
    bad_server.respond(200, json.dumps(stopped), path="/printer/objects/query")
    st = client("moonraker", bad_server).status()
    assert st.detail == "Klipper stopped the print: Move exceeds maximum extrusion (1.2mm^2 vs 0.6)"


def test_moonraker_command_failing_is_retried_then_reported(bad_server: BadServer) -> None:
    printing = {
        "result": {"status": {"webhooks": {"state": "ready"}, "print_stats": {"state": "printing"}}}
    }
    bad_server.respond(200, json.dumps(printing), path="/printer/objects/query")
    bad_server.respond(503, '{"error": {"code": 503, "message": "Klippy Disconnected"}}')
    result = client("moonraker", bad_server, retries=2).pause()
    assert (result.outcome, result.attempts) == ("failed", 3)
    assert "/printer/print/pause: HTTP 503: Klipper is not running" in result.detail
    assert "(Klippy Disconnected)" in result.detail


# --------------------------------------------------------------------------- TLS

PRINTING = {
    "octoprint": ("/api/printer", {"state": {"text": "Printing", "flags": {"printing": True}}}),
    "moonraker": (
        "/printer/objects/query",
        {
            "result": {
                "status": {"webhooks": {"state": "ready"}, "print_stats": {"state": "printing"}}
            }
        },
    ),
}


@pytest.mark.parametrize("kind", KINDS)
def test_self_signed_tls_needs_a_ca_file_or_insecure(
    kind: str,
    bad_tls_server: BadServer,
    self_signed_cert,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    path, body = PRINTING[kind]
    bad_tls_server.respond(200, json.dumps(body), path=path)
    verified = client(kind, bad_tls_server).status()
    assert verified.state == "offline" and "TLS certificate not accepted" in verified.detail
    with_ca = client(kind, bad_tls_server, ca_file=self_signed_cert[0]).status()
    assert with_ca.state == "printing"
    # a folder of CAs, hashed as /etc/ssl/certs is (openssl rehash)
    folder = tmp_path / "cas"
    folder.mkdir()
    shutil.copy(self_signed_cert[0], folder / "printer.pem")
    subprocess.run(["openssl", "rehash", str(folder)], check=True, capture_output=True)
    assert client(kind, bad_tls_server, ca_file=folder).status().state == "printing"
    insecure = client(kind, bad_tls_server, insecure=True).status()
    assert insecure.state == "printing"
    assert "TLS certificate verification is off" in caplog.text


@pytest.mark.parametrize("kind", KINDS)
def test_a_tls_handshake_cut_short_is_tried_again_not_taken_for_a_certificate(kind: str) -> None:
    """The https API (or the proxy before it) closes the connection mid-handshake, as one
    restarting does: that was "TLS certificate not accepted; set api.ca_file" and a pause
    was not tried again."""
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def hang_up() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.shutdown(socket.SHUT_WR)  # no handshake: the end of the stream

    threading.Thread(target=hang_up, daemon=True).start()
    url = f"https://127.0.0.1:{server.getsockname()[1]}"
    try:
        result = make_printer(api_config(kind, url, "k", retries=1), backoff_s=0.01).pause()
    finally:
        server.close()
        for conn in accepted:
            conn.close()
    assert result.outcome == "failed" and result.attempts == 2, result
    assert "certificate" not in result.detail and "ca_file" not in result.detail, result.detail


def test_https_clients_share_the_tls_context_that_holds_the_systems_cas() -> None:
    """A TLS context with the system's CAs is about 0.9 MB, and urllib3 makes one per connection
    by default: every printer and camera on https cost that much (benchmarks: 0.85 MB per
    client before, 0.03 after). Clients with their own CA file keep urllib3's own."""
    from watchdog.devices.http_client import HttpClient

    def context(client: HttpClient, url: str = "https://printer.lan/") -> object:
        client._tls_for(url)  # what each request does first
        return client._pool.connection_pool_kw.get("ssl_context")

    verified = [HttpClient(verify=True) for _ in range(3)]
    assert context(verified[0]) is not None
    assert all(context(c) is context(verified[0]) for c in verified)
    assert context(HttpClient(verify=False)) is not context(verified[0])
    assert context(HttpClient(verify="/etc/ssl/certs/ca-certificates.crt")) is None
    assert context(HttpClient(), "http://camera.lan/snapshot") is None  # made only for https


@pytest.mark.parametrize("kind", KINDS)
def test_a_tls_handshake_dripping_in_is_cut_at_the_timeout(kind: str) -> None:
    """An https API (or a proxy) that sends its handshake a byte at a time, each within the
    timeout: the request's deadline knows the connection only once its handshake is done, and
    what ends it here is Python's ssl, which bounds a whole handshake by the socket's timeout.
    Were that ever lost, the step (and every pause behind it) would wait until systemd's
    watchdog killed the daemon."""
    import socket
    import time

    stop = threading.Event()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def drip() -> None:
        conn, _ = server.accept()
        with conn:
            # a TLS handshake record announcing 16 KB, then its bytes one every 0.2 s
            conn.sendall(b"\x16\x03\x03\x40\x00")
            while not stop.wait(0.2):
                try:
                    conn.sendall(b"\x00")
                except OSError:
                    return

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    try:
        printer = make_printer(
            api_config(kind, f"https://127.0.0.1:{port}", "KEY", timeout_s=1.0, retries=0)
        )
        started = time.monotonic()
        st = printer.status()
        waited = time.monotonic() - started
    finally:
        stop.set()
        server.close()
    assert waited < 10, "the handshake was waited for past the timeout"
    assert st.state == "offline" and "within 1 s" in st.detail, st


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("hung", ["every request", "the command"])
def test_the_daemons_health_allows_for_a_pause_retried_against_a_hung_api(
    kind: str, hung: str, bad_server: BadServer
) -> None:
    """The daemon's health check allows a watcher's step ``longest_action_s`` for its pause
    or cancel: less had systemd's watchdog kill a daemon retrying a pause (api.retries: 10)
    part-way through. That allowance counts three requests an attempt (two for OctoPrint's
    status, the command), each cut at the API's timeout (the tests above), and the waits
    between attempts: the real client, against an API that hangs, makes no more."""
    from watchdog.devices.printers import longest_action_s

    printing = {
        "state": {"text": "Printing", "flags": {"printing": True}},
        "job": {"file": {"name": "a.gcode"}},
        "progress": {"printTime": 5},
        "result": {
            "status": {
                "print_stats": {"state": "printing", "filename": "a.gcode"},
                "webhooks": {"state": "ready"},
            }
        },
    }
    bad_server.respond(200, json.dumps(printing))
    command = {"octoprint": "/api/job", "moonraker": "/printer/print/pause"}[kind]
    bad_server.hang(5, None if hung == "every request" else command)
    api = api_config(kind, bad_server.url, bad_server.api_key, timeout_s=0.3, retries=2)
    result = make_printer(api, backoff_s=0.05).pause()
    # a command that hung after it was sent may still be carried out; one never sent was not
    sent = hung == "the command"
    assert result.outcome == ("unknown" if sent else "failed") and result.attempts == 3, result
    assert 3 <= bad_server.requests <= 3 * 3, bad_server.paths
    # the allowance for the defaults' pause: 4 attempts of 20 s, 7 s of waits
    assert longest_action_s(api_config(kind, bad_server.url, timeout_s=10, retries=3)) == 87


@pytest.mark.parametrize("kind", KINDS)
def test_a_job_name_made_to_fake_lines_or_flood_is_shown_cleaned_and_cut(
    kind: str, bad_server: BadServer
) -> None:
    """A file named with a newline and a link (a made-up line in an email notification), a
    terminal's escape codes, a right-to-left override, or of half a megabyte (logged whole at every
    change, sent whole at every look of the page): shown with those characters as ``?`` and
    cut to a file name's length."""
    from watchdog.printing import JOB_NAME_CHARS

    name = "benchy.gcode\nResume: http://evil.example/x\x1b[2J\u202egcode." + "a" * 500_000
    if kind == "octoprint":
        flags = {"printing": True, "paused": False, "ready": False}
        bad_server.respond(
            200, json.dumps({"state": {"text": "Printing", "flags": flags}}), path="/api/printer"
        )
        job = {"job": {"file": {"name": name}}, "progress": {"printTime": 60}}
        bad_server.respond(200, json.dumps(job), path="/api/job")
    else:
        status = {
            "webhooks": {"state": "ready", "state_message": ""},
            "print_stats": {"state": "printing", "filename": name, "print_duration": 60},
        }
        bad_server.respond(
            200, json.dumps({"result": {"status": status}}), path="/printer/objects/query"
        )
    shown = client(kind, bad_server, retries=0).status().job
    assert shown is not None and shown.startswith(
        "benchy.gcode?Resume: http://evil.example/x?[2J?gcode.aaa"
    )
    assert len(shown) == JOB_NAME_CHARS and shown.endswith("…")
    assert not any(c in shown for c in "\n\r\x1b\u202e")


@pytest.mark.parametrize("kind", KINDS)
def test_a_printers_state_text_made_to_fake_lines_or_flood_is_shown_cleaned_and_cut(
    kind: str, bad_server: BadServer
) -> None:
    """OctoPrint's state text, or Klipper's error, of 600 KB with a terminal's escape codes, a
    made-up line and the API key echoed: copied whole into the page's every look, Home
    Assistant's Last command, the kept answers and the notifications. Shown on one line, cut,
    the key masked; and a heater's reading of hundreds of digits (no float holds it) made the
    whole answer unreadable: the printer was shown offline."""
    from watchdog.printing import API_TEXT_CHARS

    said = f"Error\x1b[31m\nResume: http://evil.example/x key {bad_server.api_key} " + "A" * 600_000
    huge = int("9" * 400)
    if kind == "octoprint":
        flags = {"printing": True, "paused": False, "ready": False}
        answer = {
            "state": {"text": said, "flags": flags},
            "temperature": {"tool0": {"actual": huge, "target": 210}},
        }
        bad_server.respond(200, json.dumps(answer), path="/api/printer")
        job = {"job": {"file": {"name": "a.gcode"}}, "progress": {"printTime": 60}}
        bad_server.respond(200, json.dumps(job), path="/api/job")
    else:
        status = {
            "webhooks": {"state": "ready", "state_message": ""},
            "print_stats": {"state": "error", "filename": "a.gcode", "message": said},
            "extruder": {"temperature": huge, "target": 210},
        }
        bad_server.respond(
            200, json.dumps({"result": {"status": status}}), path="/printer/objects/query"
        )
    status = client(kind, bad_server, retries=0).status()
    assert status.state == ("printing" if kind == "octoprint" else "error"), status.detail[:200]
    detail = status.detail
    assert "Resume: http://evil.example/x key" in detail, detail[:200]
    assert bad_server.api_key not in detail and "\n" not in detail and "\x1b" not in detail
    assert len(detail) <= API_TEXT_CHARS + 40 and detail.endswith("…"), len(detail)
