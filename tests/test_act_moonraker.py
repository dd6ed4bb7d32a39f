"""The Moonraker client against the real Moonraker (PyPI 0.11.0) and the stand-in Klippy."""

from __future__ import annotations

import time

import pytest

from tests.plugins.printers import MoonrakerServer, api_config, wait_until
from watchdog.devices.printers import MoonrakerClient, make_printer

pytestmark = pytest.mark.servers


def client(server: MoonrakerServer, **kw) -> MoonrakerClient:
    printer = make_printer(
        api_config("moonraker", server.url, server.api_key, **kw), backoff_s=0.05
    )
    assert isinstance(printer, MoonrakerClient)
    return printer


def test_status_follows_a_print(moonraker_server: MoonrakerServer) -> None:
    printer = client(moonraker_server)
    assert printer.status().state == "idle"
    moonraker_server.start_print("benchy.gcode")
    st = printer.status()
    assert (st.state, st.job) == ("printing", "benchy.gcode")
    # how long the job has run, which tells a reprint of the same file (decide.JobClock)
    time.sleep(1.1)
    later = printer.status()
    assert st.elapsed_s is not None and later.elapsed_s is not None
    assert later.elapsed_s >= st.elapsed_s + 1 and later.printed_s is not None


def test_a_print_heating_its_hotend_is_heating_until_the_hotend_is_hot(
    moonraker_server: MoonrakerServer,
) -> None:
    """Klipper's print_stats say "printing" while a PRINT_START macro heats: its ``extruder``
    and ``heater_bed`` objects tell the watchdog to learn the print's start once the printer
    is hot. The stand-in Klippy heats 10 degrees a second: about 18 s to 200."""
    printer = client(moonraker_server)
    moonraker_server.start_print()
    assert not printer.status().heating  # printing, its heaters off
    moonraker_server.post("/printer/gcode/script", {"script": "M104 S200"})
    status = printer.status()
    assert status.state == "printing" and status.heating
    wait_until("the hotend hot", lambda: not printer.status().heating, 60)
    assert printer.status().state == "printing"


def test_pause_pauses_the_real_printer(moonraker_server: MoonrakerServer) -> None:
    moonraker_server.start_print()
    result = client(moonraker_server).pause()
    assert (result.action, result.outcome, result.attempts) == ("pause", "done", 1)
    moonraker_server.wait_state("paused")
    again = client(moonraker_server).pause()
    assert again.outcome == "done" and "already paused" in again.detail
    # The user resumes from Mainsail/Fluidd: the watchdog sees it printing again.
    assert moonraker_server.post("/printer/print/resume").status_code == 200
    moonraker_server.wait_state("printing")
    assert client(moonraker_server).status().state == "printing"


def test_cancel_ends_the_print(moonraker_server: MoonrakerServer) -> None:
    moonraker_server.start_print()
    assert client(moonraker_server).cancel().outcome == "done"
    moonraker_server.wait_state("cancelled")
    ended = client(moonraker_server).status()
    # Klipper says how the print ended: the owner's notice says "cancelled", not "ended"
    assert ended.state == "idle" and ended.ended == "cancelled", ended


def test_pause_when_not_printing_is_refused(moonraker_server: MoonrakerServer) -> None:
    result = client(moonraker_server).pause()
    assert result.outcome == "refused" and "not printing" in result.detail
    # Klipper's PAUSE would have "succeeded" and left pause_resume paused: nothing was sent.
    r = moonraker_server.get("/printer/objects/query?pause_resume")
    assert r.json()["result"]["status"]["pause_resume"]["is_paused"] is False


def test_klippy_shutdown_is_an_error_and_pause_refused(moonraker_server: MoonrakerServer) -> None:
    moonraker_server.start_print()
    moonraker_server.post("/printer/emergency_stop")
    printer = client(moonraker_server)
    st = printer.status()
    assert st.state == "error" and "shutdown" in st.detail
    assert printer.pause().outcome == "refused"
    moonraker_server.post("/printer/firmware_restart")


def test_klippy_gone_is_offline_then_back(moonraker_server: MoonrakerServer) -> None:
    printer = client(moonraker_server)
    moonraker_server.stop_klippy()
    st = printer.status()
    assert st.state == "offline" and "503" in st.detail and "Klippy" in st.detail
    result = printer.pause()
    assert (result.outcome, result.attempts) == ("failed", 3)
    # said in words an owner knows, Moonraker's own kept for the forums
    assert "Klipper is not running or not connected to Moonraker" in result.detail, result
    assert "Klipper is not running" in printer.cancel().detail
    moonraker_server.start_klippy()
    assert printer.status().state == "idle"


def test_moonraker_stopped_mid_print(moonraker_server: MoonrakerServer) -> None:
    moonraker_server.start_print()
    printer = client(moonraker_server, retries=2)
    moonraker_server.stop()
    st = printer.status()
    assert st.state == "offline" and "connection refused" in st.detail
    result = printer.pause()
    assert (result.outcome, result.attempts) == ("failed", 3)
    assert "connection refused" in result.detail and moonraker_server.url in result.detail
    moonraker_server.start()
    # Klipper kept printing while Moonraker was away; the watchdog sees it again.
    assert printer.status().state == "printing"
    assert printer.pause().outcome == "done"
    moonraker_server.wait_state("paused")


def test_moonraker_hanging_mid_print(moonraker_server: MoonrakerServer) -> None:
    moonraker_server.start_print()
    printer = client(moonraker_server, timeout_s=0.5, retries=1)
    moonraker_server.freeze()
    st = printer.status()
    assert st.state == "offline" and "timeout" in st.detail
    result = printer.pause()
    assert (result.outcome, result.attempts) == ("failed", 2) and "timeout" in result.detail
    moonraker_server.thaw()
    # once the requests it gave up on are served
    assert wait_until("printing", lambda: printer.status().state == "printing", 15)


def test_a_print_klipper_aborts_is_an_error_with_its_message(
    moonraker_server: MoonrakerServer,
) -> None:
    """Klipper aborts a print (a move out of range in the file) and stays ready: the print is
    over, with Klipper's reason, not "idle" nor "printing"; printing the file again works."""
    moonraker_server.start_print()
    moonraker_server.post("/printer/gcode/script", {"script": "G1 X9999"})
    st = client(moonraker_server).status()
    assert st.state == "error" and "Move out of range" in st.detail, st
    moonraker_server.start_print()
    assert client(moonraker_server).status().state == "printing"


def test_collect_keeps_a_paused_and_resumed_print_as_one_print_in_two_parts(
    moonraker_server: MoonrakerServer, camera_server, tmp_path
) -> None:
    """A print paused (by its owner, a filament change, the watchdog) and resumed is one print
    to the trainer's split (two would put near-copies of its frames on both sides of it), in
    two parts: the daemon learns the print's look again at the resume, so the trainer replays
    the part after it from its own first frames (a new colour judged against the first one's
    start raised the threshold it set)."""
    import threading

    from tests.daemon_helpers import write_config
    from watchdog import frames
    from watchdog.commands.collect import Collector
    from watchdog.config import load_config

    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {
                "name": "k1",
                "camera": {"source": camera_server.snapshot_url, "interval_s": 1},
                "api": {
                    "kind": "moonraker",
                    "url": moonraker_server.url,
                    "api_key": moonraker_server.api_key,
                },
            }
        ],
    )
    collector = Collector(load_config(config).printers[0], tmp_path / "out", threading.Event())
    moonraker_server.start_print("benchy.gcode")
    clock = iter(range(0, 1000, 2))
    saved = sum(collector.tick(next(clock)) for _ in range(3))
    moonraker_server.post("/printer/print/pause")
    moonraker_server.wait_state("paused")
    saved += collector.tick(next(clock))  # nothing while paused
    moonraker_server.post("/printer/print/resume")
    moonraker_server.wait_state("printing")
    saved += sum(collector.tick(next(clock)) for _ in range(3))
    names = [frames.parse(p) for p in (tmp_path / "out" / "k1").glob("*.jpg")]
    assert saved == len(names) == 6, collector.last_status
    parts = sorted({str(n.print) for n in names})
    assert len(parts) == 2 and parts[1] == frames.resumed_part(parts[0], 1)
    assert {frames.print_of(part) for part in parts} == {parts[0]}
    for part in parts:
        assert sorted(n.number for n in names if n.print == part) == list(range(3))
    moonraker_server.cancel()
    moonraker_server.wait_state("cancelled")
    collector.tick(next(clock))
    moonraker_server.start_print("benchy.gcode")
    collector.tick(next(clock))  # the same file printed again: another print

    def prints() -> set[str]:
        return {
            frames.print_of(str(frames.parse(p).print))
            for p in (tmp_path / "out" / "k1").glob("*.jpg")
        }

    assert len(prints()) == 2
    # and when collect never saw it end (the API did not answer across the end), its print
    # time going back says so
    time.sleep(1.5)  # Klipper counts print time in seconds
    collector.tick(next(clock))
    moonraker_server.cancel()
    moonraker_server.wait_state("cancelled")
    moonraker_server.start_print("benchy.gcode")
    collector.tick(next(clock))
    assert len(prints()) == 3
    # another file after it: one new print, though its print time starts below the last one's
    time.sleep(1.5)
    collector.tick(next(clock))
    moonraker_server.cancel()
    moonraker_server.wait_state("cancelled")
    moonraker_server.start_print("other.gcode")
    collector.tick(next(clock))
    time.sleep(1.2)
    collector.tick(next(clock))
    assert len(prints()) == 4
