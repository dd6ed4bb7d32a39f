"""The OctoPrint client against a real OctoPrint with its virtual printer, and its faults."""

from __future__ import annotations

import json
import os
from urllib.parse import urlsplit

import pytest

from tests.plugins.printers import BadServer, OctoPrintServer, api_config, wait_until
from watchdog.devices.printers import OctoPrintClient, make_printer

pytestmark = pytest.mark.servers


def client(server: OctoPrintServer | BadServer, **kw) -> OctoPrintClient:
    printer = make_printer(
        api_config("octoprint", server.url, server.api_key, **kw), backoff_s=0.05
    )
    assert isinstance(printer, OctoPrintClient)
    return printer


def test_a_closed_client_closes_its_connection_even_while_its_pool_is_held(
    octoprint_server: OctoPrintServer,
) -> None:
    """A watcher closes its printer client when a reload replaces it. A failed request's
    traceback can hold the client's connection pool until Python's next full collection: the
    kept-alive connection must close all the same, not when the pool is collected."""
    from benchmarks.soak import open_files

    port = urlsplit(octoprint_server.url).port or 0

    def connections() -> int:  # this process's, the test server's own session's included
        found = open_files(os.getpid(), {port: "OctoPrint"})
        return sum(n for kind, n in found.items() if kind.startswith("tcp OctoPrint"))

    before = connections()
    printer = client(octoprint_server)
    assert printer.status().state == "idle"
    pools = printer._http._pool.pools
    held = [pools[key] for key in list(pools.keys())]  # what such a traceback holds
    assert connections() == before + 1 and held
    printer.close()
    assert connections() == before
    assert printer.status().state == "idle"  # asked again, it connects again


def test_status_follows_a_print(octoprint_server: OctoPrintServer) -> None:
    printer = client(octoprint_server)
    assert printer.status().state == "idle"
    octoprint_server.start_print(name="benchy.gcode")
    st = printer.status()
    assert st.state == "printing"
    assert st.job == "benchy.gcode"


def test_a_print_that_begins_by_heating_its_bed_is_heating_until_the_bed_is_hot(
    octoprint_server: OctoPrintServer,
) -> None:
    """OctoPrint says "printing" while the printer waits for its bed (M190), and the camera
    shows a still bed meanwhile: its heaters tell the watchdog to learn the print's start once
    the printer is hot. The virtual printer heats 10 degrees a second: about 13 s to 150."""
    printer = client(octoprint_server)
    assert not printer.status().heating  # idle, its heaters off
    octoprint_server.start_print(first="M190 S150\n")
    wait_until("OctoPrint reports the bed heating", lambda: printer.status().heating, 20)
    assert printer.status().state == "printing"
    wait_until("the bed hot", lambda: not printer.status().heating, 60)
    assert printer.status().state == "printing"
    octoprint_server.post("/api/printer/bed", {"command": "target", "target": 0})


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


def test_a_pause_asked_for_as_the_watchdog_stops_is_still_sent(
    octoprint_server: OctoPrintServer,
) -> None:
    """The failure's pause comes in the step a shutdown (an upgrade's restart) interrupts:
    the stop cuts a status poll short, and the status read before the pause was cut too, so
    the pause was never sent ("not retried: shutting down"). A command, and the read before
    it, are never cut."""
    import threading

    octoprint_server.start_print()
    stop = threading.Event()
    stop.set()
    printer = make_printer(
        api_config("octoprint", octoprint_server.url, octoprint_server.api_key), stop
    )
    result = printer.pause()
    assert result.outcome == "done", result
    # OctoPrint took it: pausing (it waits for the moves queued before it, seconds on a
    # loaded machine), then paused
    wait_until(
        "OctoPrint pausing or paused",
        lambda: (f := octoprint_server.flags()) and (f.get("pausing") or f.get("paused")),
        60,
        octoprint_server.log_path,
    )


def test_cancel_ends_the_print(octoprint_server: OctoPrintServer) -> None:
    octoprint_server.start_print()
    printer = client(octoprint_server)
    assert printer.status().state == "printing"
    result = printer.cancel()
    assert result.outcome == "done"
    octoprint_server.wait_flag("printing", False)
    octoprint_server.wait_flag("cancelling", False)
    ended = printer.status()
    # its job short of 100%: the owner's notice says "cancelled", not "ended"
    assert ended.state == "idle" and ended.ended == "cancelled", ended


def test_a_print_lost_to_an_octoprint_restart_between_two_polls_is_not_told_cancelled(
    octoprint_server: OctoPrintServer,
) -> None:
    """OctoPrint restarted (an update, a plugin) and connected to its printer again between
    two polls: the print it sent is gone, which the owner was told as their own cancel ("was
    cancelled at the printer", quietly). A cancel leaves its job selected; a restart does not."""
    from watchdog.comms.notify import Kind, print_done_event

    printer = client(octoprint_server)
    octoprint_server.start_print(name="benchy.gcode")
    assert printer.status().state == "printing"
    octoprint_server.stop()
    octoprint_server.start()
    octoprint_server.connect()
    ended = printer.status()
    assert ended.state == "idle" and ended.ended == "lost", ended
    event = print_done_event("ender3", "benchy.gcode", ended=ended.ended)
    assert event.kind is Kind.PRINT_ERROR and event.title == "ender3: print lost"
    assert "OctoPrint restarted" in event.message


def test_a_print_from_the_sd_card_is_not_told_lost_at_a_restart(bad_server: BadServer) -> None:
    """OctoPrint restarted while the printer printed from its own SD card: the print may go
    on, so it is not told lost (OctoPrint's answers as it gives them, from a test server: the
    virtual printer's SD prints end with the restart, a real printer's do not)."""
    import json as _json

    def answer(body: dict) -> tuple[int, bytes, str]:
        return (200, _json.dumps(body).encode(), "application/json")

    printing = {"state": {"text": "Printing from SD", "flags": {"printing": True}}}
    bad_server.routes["/api/printer"] = answer(printing)
    bad_server.routes["/api/job"] = answer({"job": {"file": {"name": "benchy.gcode"}}})
    printer = client(bad_server)
    assert printer.status().state == "printing"
    idle = {"state": {"text": "Operational", "flags": {"operational": True, "ready": True}}}
    bad_server.routes["/api/printer"] = answer(idle)
    restarted = {"job": {"file": {"name": None}}, "progress": {"completion": None}}
    bad_server.routes["/api/job"] = answer(restarted)
    ended = printer.status()
    assert ended.state == "idle" and ended.ended == "", ended


def test_a_finished_print_is_told_finished(octoprint_server: OctoPrintServer) -> None:
    """OctoPrint's job at 100% once the print is done: "print finished", not "ended
    (finished, or cancelled at the printer)"."""
    import time

    octoprint_server.start_print(lines=10)  # two seconds of waiting
    printer = client(octoprint_server)
    seen = [printer.status()]
    deadline = time.monotonic() + 60
    while seen[-1].state != "idle" and time.monotonic() < deadline:
        time.sleep(0.3)
        seen.append(printer.status())
    assert seen[-1].state == "idle" and seen[-1].ended == "finished", seen[-3:]
    assert printer.status().ended == ""  # told once, at the end


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


def test_server_stopped_mid_print(octoprint_server: OctoPrintServer) -> None:
    octoprint_server.start_print()
    printer = client(octoprint_server, retries=2)
    assert printer.status().state == "printing"
    octoprint_server.stop()
    st = printer.status()
    assert st.state == "offline" and "connection refused" in st.detail
    result = printer.pause()
    assert result.outcome == "failed" and result.attempts == 3
    assert "connection refused" in result.detail and octoprint_server.url in result.detail
    octoprint_server.start()
    # back, without its printer: the print it streamed is lost, an end by an error; then idle
    lost = printer.status()
    assert lost.state == "error" and "OctoPrint lost its printer during the print" in lost.detail
    assert printer.status().state == "idle"


def test_a_printer_disconnected_mid_print_has_lost_the_print(
    octoprint_server: OctoPrintServer,
) -> None:
    """OctoPrint disconnected from its printer while the alert held the print paused: taken
    for an idle printer, the paused print's end was recorded as the owner's cancel (the
    alert's buttons refused "the print was cancelled"), a printing one's as "finished, or
    cancelled". OctoPrint streams the print: it is lost, an end by an error."""
    octoprint_server.start_print()
    printer = client(octoprint_server)
    assert printer.pause().outcome == "done"
    octoprint_server.wait_flag("paused", True)
    assert printer.status().state == "paused"
    octoprint_server.post("/api/connection", {"command": "disconnect"})
    # the owner's Resume pressed at once, before the watcher's poll: its check read the
    # printer too, and took the news the poll is told once
    assert printer.resume().outcome != "done"
    lost = printer.status()
    assert lost.state == "error" and "lost its printer during the print" in lost.detail, lost
    assert printer.status().state == "idle"  # told once; then a printer not connected


def test_server_hanging_mid_print(octoprint_server: OctoPrintServer) -> None:
    octoprint_server.start_print()
    printer = client(octoprint_server, timeout_s=0.5, retries=1)
    octoprint_server.freeze()
    st = printer.status()
    assert st.state == "offline" and "timeout" in st.detail
    result = printer.pause()
    assert (result.outcome, result.attempts) == ("failed", 2) and "timeout" in result.detail
    octoprint_server.thaw()
    # it answers again, the print went on (once the requests it gave up on are served)
    assert wait_until("printing", lambda: printer.status().state == "printing", 15)


# --------------------------------------------------------------------------- misbehaving server
# (answers that every HTTP client must survive are in test_act_faults.py)


def test_conflict_on_the_command_is_refused_with_octoprints_message(bad_server: BadServer) -> None:
    """A print that ends between the state check and the command: OctoPrint answers 409."""
    printing = {"state": {"text": "Printing", "flags": {"printing": True, "ready": False}}}
    bad_server.respond(200, json.dumps(printing), path="/api/printer")
    bad_server.respond(
        409,
        '{"error": "Printer is neither printing nor paused, \'pause\' command cannot be performed"}',
    )
    result = client(bad_server).pause()
    assert result.outcome == "refused" and "neither printing nor paused" in result.detail


def test_a_printer_error_mid_print_is_an_error_with_octoprints_message(
    octoprint_server: OctoPrintServer,
) -> None:
    """The printer's firmware reports a fatal error (a thermal runaway): OctoPrint goes to
    "Offline after error" and answers 409 for the printer. That is the print stopped by an
    error, with OctoPrint's reason, not a printer that is simply not connected."""
    import time

    octoprint_server.start_print()
    octoprint_server.post(
        "/api/printer/command", {"commands": ["!!DEBUG:trigger_fatal_error_marlin"]}
    )
    printer = client(octoprint_server)
    deadline = time.monotonic() + 30
    while (st := printer.status()).state != "error" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert st.state == "error" and "error" in st.detail.lower(), st
    assert printer.pause().outcome == "refused"


def test_a_key_that_may_watch_but_not_pause_is_said_before_the_pause_it_fails(
    octoprint_server: OctoPrintServer,
) -> None:
    """A key of an OctoPrint user without the Print permission (its read-only group) answers
    every status poll: the page said "printing, watching" all night, and the first failure's
    pause was refused as "API key rejected, check api.api_key", the print going on. It is
    said at the first poll (the page, the log, check-config), and the refusal says why."""
    import uuid

    name = f"reader-{uuid.uuid4().hex[:8]}"
    made = octoprint_server.post(
        "/api/access/users",
        {"name": name, "password": "pw-123456", "active": True, "groups": ["readonly"]},
    )
    assert made.ok, made.text
    key = octoprint_server.post(f"/api/access/users/{name}/apikey", {}).json()["apikey"]
    octoprint_server.start_print(name="benchy.gcode")
    reader = make_printer(api_config("octoprint", octoprint_server.url, key), backoff_s=0.05)
    status = reader.status()
    assert status.state == "printing", status
    assert "lacks the Print permission" in status.cannot_act, status
    result = reader.pause()
    assert result.outcome == "failed" and "lacks the Print permission" in result.detail, result
    assert "check api.api_key" not in result.detail
    assert octoprint_server.printing()
    from watchdog.commands.check_config import probe_printer
    from watchdog.config import CameraConfig, PrinterConfig

    api = api_config("octoprint", octoprint_server.url, key)
    camera = CameraConfig(source="/dev/video0")
    ok, said = probe_printer(PrinterConfig(name="e3", camera=camera, api=api, action="pause"))
    assert not ok and "says printing" in said and "lacks the Print permission" in said, said
    # the key of a user who may print: nothing said against it
    assert client(octoprint_server).status().cannot_act == ""
