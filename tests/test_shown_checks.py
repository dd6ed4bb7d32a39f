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
