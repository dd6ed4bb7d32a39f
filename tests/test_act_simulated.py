"""The printers without a network: the demo's simulated printer and ``kind: none``."""

from __future__ import annotations

from watchdog.config import ApiConfig
from watchdog.devices.printers import NoPrinter, SimulatedPrinter, make_printer


def test_simulated_printer_prints_pauses_resumes_and_cancels() -> None:
    printer = SimulatedPrinter("demo.gcode")
    assert (printer.status().state, printer.status().job) == ("printing", "demo.gcode")
    assert printer.pause().outcome == "done"
    assert printer.status().state == "paused"
    assert printer.pause().outcome == "done"  # already paused stays paused
    assert printer.resume().outcome == "done"
    assert printer.status().state == "printing"
    assert printer.cancel().outcome == "done"
    assert printer.status().state == "idle" and printer.status().job is None
    refused = printer.pause()
    assert refused.outcome == "refused" and "idle" in refused.detail
    printer.start_print("second.gcode")
    assert printer.status().job == "second.gcode"
    assert printer.actions == ["pause", "pause", "resume", "cancel", "pause"]


def test_no_printer_watches_always_and_skips_actions() -> None:
    printer = make_printer(ApiConfig(kind="none"))
    assert isinstance(printer, NoPrinter)
    assert printer.status().state == "printing"
    for result in (printer.pause(), printer.cancel()):
        assert result.outcome == "skipped" and result.detail == "no printer API configured"
        assert result.to_dict() == {
            "action": result.action,
            "outcome": "skipped",
            "detail": result.detail,
            "attempts": 0,
        }
