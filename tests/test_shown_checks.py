"""The owner's Pause and Cancel followed until the printer shows them (``ShownChecks``): the
rules alone, on the clock passed in; the watcher's use of them is in tests/test_loop.py."""

from __future__ import annotations

import pytest

from watchdog.printing import Action, PrinterState
from watchdog.shown_checks import OwnerStop, ShownChecks


def _nothing(stop: OwnerStop) -> None:
    pass


def test_a_pause_sent_without_an_answer_and_not_shown_by_its_time_may_still_happen() -> None:
    """Moonraker answers a PAUSE queued behind a heat-up only once it has run: past
    ``confirm_s`` the owner was told "the printer took the pause ... it did NOT pause", which
    it never took, and the phone's button handed back as failed."""
    checks = ShownChecks("e3", 90)
    unanswered = checks.follow(Action.PAUSE, None, 0.0, sure=False)
    taken = checks.follow(Action.PAUSE, None, 0.0, sure=True)
    checks.on_status(PrinterState.PRINTING, 91.0, _nothing, _nothing)
    maybe, refused = unanswered.result(0), taken.result(0)
    assert not maybe.ok and maybe.unknown and "took" not in maybe.detail, maybe
    assert "sent without an answer" in maybe.detail and "may still" in maybe.detail
    assert not refused.ok and not refused.unknown and "did NOT pause" in refused.detail


def test_a_failing_record_of_one_stop_leaves_the_others_and_later_polls_working() -> None:
    """The watcher's part of a shown stop (its alert's answer written to disk) can fail: the
    next stop stayed undecided and every later poll raised, so no frame was judged again."""
    checks = ShownChecks("e3", 90)
    first = checks.follow(Action.PAUSE, None, 0.0, sure=True)
    second = checks.follow(Action.PAUSE, None, 1.0, sure=True)

    def failing(stop: OwnerStop) -> None:
        raise OSError("no space left on device")

    checks.on_status(PrinterState.PAUSED, 2.0, failing, _nothing)
    assert first.result(0).ok and second.result(0).ok
    checks.on_status(PrinterState.PAUSED, 3.0, _nothing, _nothing)  # nothing left, no error


@pytest.mark.parametrize("state", [PrinterState.OFFLINE, PrinterState.PRINTING])
def test_a_stop_is_not_decided_before_its_time_nor_by_an_api_that_does_not_answer(
    state: PrinterState,
) -> None:
    checks = ShownChecks("e3", 90)
    stop = checks.follow(Action.CANCEL, None, 0.0, sure=True)
    checks.on_status(state, 50.0, _nothing, _nothing)
    checks.on_status(PrinterState.OFFLINE, 500.0, _nothing, _nothing)
    assert not stop.done()
    checks.on_status(PrinterState.IDLE, 501.0, _nothing, _nothing)
    assert stop.result(0).ok


def test_a_stop_pressed_again_is_the_first_only_for_the_same_alert() -> None:
    """A Cancel of another alert than the pending one was answered with the first's end and
    never sent: its alert was never marked answered. Pressed for the same alert, or for none
    (the print's latest), it is the first; one the API never answered is sent again."""
    checks = ShownChecks("e3", 90)
    checks.follow(Action.CANCEL, "A", 0.0, sure=True)
    assert checks.waiting_for(Action.CANCEL, "A") is not None
    assert checks.waiting_for(Action.CANCEL, None) is not None
    assert checks.waiting_for(Action.CANCEL, "B") is None
    assert checks.waiting_for(Action.PAUSE, "A") is None
    latest = ShownChecks("e3", 90)
    latest.follow(Action.PAUSE, None, 0.0, sure=True)  # answers the print's latest alert
    assert latest.waiting_for(Action.PAUSE, "B") is not None
    unsure = ShownChecks("e3", 90)
    unsure.follow(Action.PAUSE, None, 0.0, sure=False)
    assert unsure.waiting_for(Action.PAUSE, None) is None


def test_closing_from_another_thread_never_waits_for_the_watchers_part() -> None:
    """The daemon stopping closes a hung watcher's checks from its main thread: it waited for
    as long as the watcher's part of a shown stop took (its answer written to a dying SD
    card), past systemd's stop timeout. A stop followed after the close is answered at once."""
    import threading

    checks = ShownChecks("e3", 90)
    shown = checks.follow(Action.PAUSE, None, 0.0, sure=True)
    pending = checks.follow(Action.CANCEL, None, 0.0, sure=True)
    inside, release = threading.Event(), threading.Event()

    def slow(stop: OwnerStop) -> None:
        inside.set()
        release.wait(10)

    watcher = threading.Thread(
        target=checks.on_status, args=(PrinterState.PAUSED, 1.0, slow, _nothing)
    )
    watcher.start()
    assert inside.wait(5)
    closer = threading.Thread(target=checks.close, args=("the watchdog stopped",))
    closer.start()
    closer.join(2)
    try:
        assert not closer.is_alive(), "close waited for the watcher's part"
        end = pending.result(0)
        assert end.unknown and end.detail.startswith("the watchdog stopped before"), end
        late = checks.follow(Action.PAUSE, None, 2.0, sure=True)
        assert late.result(0).unknown
    finally:
        release.set()
        watcher.join(5)
    assert shown.result(0).ok  # the paused printer's pause, decided by the watcher


def test_a_pause_told_not_done_that_the_printer_shows_later_is_put_right() -> None:
    """A PAUSE queued behind a heat-up longer than ``api.confirm_s``: Home Assistant's Last
    command and the page kept "did NOT pause (does its PAUSE macro stop the print?)" with the
    printer paused, and an automation acting on it could cancel a print that had paused. The
    watchdog's own pause was put right so; the owner's is now (within the same 15 minutes),
    its alert answered then."""
    checks = ShownChecks("e3", 90)
    pause = checks.follow(Action.PAUSE, None, 0.0, sure=True)
    checks.on_status(PrinterState.PRINTING, 91.0, _nothing, _nothing)
    told = pause.result(0)
    assert not told.ok and "did NOT pause" in told.detail and told.correction is not None
    shown: list[OwnerStop] = []
    checks.on_status(PrinterState.PRINTING, 100.0, shown.append, _nothing)
    assert not told.correction.done()
    checks.on_status(PrinterState.PAUSED, 130.0, shown.append, _nothing)
    right = told.correction.result(0)
    assert right.ok and right.detail == "e3 is paused after all, 130 s after it was sent", right
    assert [s.action for s in shown] == [Action.PAUSE]

    too_late = ShownChecks("e3", 90)
    told = too_late.follow(Action.PAUSE, None, 0.0, sure=True)
    too_late.on_status(PrinterState.PRINTING, 91.0, _nothing, _nothing)
    too_late.on_status(PrinterState.PRINTING, 91.0 + 901, _nothing, _nothing)
    too_late.on_status(PrinterState.PAUSED, 91.0 + 902, _nothing, _nothing)  # another pause
    correction = told.result(0).correction
    assert correction is not None and not correction.done()


def test_a_cancel_told_not_done_that_the_printer_shows_later_is_put_right() -> None:
    """A cancel macro that waits for the moves queued before it: the owner was told "did NOT
    cancel" and never heard that the print stopped after all. A finished print looks the
    same, so the correction says both and leaves the alert's answer to the print's end; a
    pause of the print meanwhile (a cancel macro that pauses first) is no cancel yet."""
    checks = ShownChecks("e3", 90)
    cancel = checks.follow(Action.CANCEL, None, 0.0, sure=True, job="benchy.gcode")
    checks.on_status(PrinterState.PRINTING, 91.0, _nothing, _nothing, "benchy.gcode")
    told = cancel.result(0)
    assert not told.ok and "did NOT cancel" in told.detail and told.correction is not None
    recorded: list[OwnerStop] = []
    checks.on_status(PrinterState.PAUSED, 100.0, recorded.append, _nothing, "benchy.gcode")
    assert not told.correction.done()
    checks.on_status(PrinterState.IDLE, 150.0, recorded.append, _nothing, "benchy.gcode")
    right = told.correction.result(0)
    assert right.ok and right.detail == (
        "e3 is no longer printing (idle), 150 s after the cancel was sent: cancelled late, "
        "or its print finished"
    ), right
    assert recorded == []  # the print's end answers its alert
    # pressed again, it is answered done (OctoPrint's 409 on an idle printer read as failing)
    assert checks.shown_since(Action.CANCEL, 160.0) == 10.0

    for state, job in ((PrinterState.IDLE, "cube.gcode"), (PrinterState.ERROR, "benchy.gcode")):
        other = ShownChecks("e3", 90)  # another print's end; a printer's error, its own end
        cancel = other.follow(Action.CANCEL, None, 0.0, sure=True, job="benchy.gcode")
        other.on_status(PrinterState.PRINTING, 91.0, _nothing, _nothing, "benchy.gcode")
        other.on_status(state, 120.0, _nothing, _nothing, job)
        correction = cancel.result(0).correction
        assert correction is not None and not correction.done(), state


def test_a_late_pause_is_only_the_owners_within_its_window_and_its_print() -> None:
    """A status poll that times out dropped the pause looked for (a slow printer behind a
    heat-up is when polls time out); a pause hours later, or of the next print, was taken for
    the owner's, its alert marked paused."""

    def told_not_done(job: str | None = "benchy.gcode") -> tuple[ShownChecks, OwnerStop]:
        checks = ShownChecks("e3", 90)
        checks.follow(Action.PAUSE, None, 0.0, sure=True, job=job)
        missed: list[OwnerStop] = []
        checks.on_status(PrinterState.PRINTING, 91.0, _nothing, missed.append, job)
        return checks, missed[0]

    def corrected(checks: ShownChecks, stop: OwnerStop) -> bool:
        correction = stop.done.result(0).correction
        assert correction is not None
        return correction.done()

    checks, stop = told_not_done()
    checks.on_status(PrinterState.OFFLINE, 100.0, _nothing, _nothing)
    checks.on_status(PrinterState.PAUSED, 130.0, _nothing, _nothing, "benchy.gcode")
    assert corrected(checks, stop)
    checks, stop = told_not_done()
    checks.on_status(PrinterState.PAUSED, 91.0 + 5000, _nothing, _nothing, "benchy.gcode")
    assert not corrected(checks, stop)
    checks, stop = told_not_done()
    checks.on_status(PrinterState.PAUSED, 130.0, _nothing, _nothing, "next.gcode")
    checks.on_status(PrinterState.PAUSED, 140.0, _nothing, _nothing, "benchy.gcode")
    assert not corrected(checks, stop)


def test_a_late_pause_is_not_looked_for_in_the_next_print_of_the_same_file() -> None:
    """The same file printed again (cancelled at the printer and restarted between polls
    that timed out): its name does not tell the prints apart, the watcher's new print does."""
    checks = ShownChecks("e3", 90)
    pause = checks.follow(Action.PAUSE, None, 0.0, sure=True, job="benchy.gcode")
    checks.on_status(PrinterState.PRINTING, 91.0, _nothing, _nothing, "benchy.gcode")
    checks.new_print()
    checks.on_status(PrinterState.PAUSED, 130.0, _nothing, _nothing, "benchy.gcode")
    correction = pause.result(0).correction
    assert correction is not None and not correction.done()
