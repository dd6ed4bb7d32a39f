"""The decision state machine: pure, so every rule is checked without any I/O."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from watchdog.detection import decide
from watchdog.detection.decide import Event, Label, Settings, WatchState, on_frame, stop_sent
from watchdog.detection.decide import on_printer as fold_printer
from watchdog.printing import PrinterState

S = Settings(consecutive=3, cooldown_s=90.0)


def on_printer(
    state: WatchState, printer: str, job: str | None, now: float, s: Settings
) -> WatchState:
    """The state after a printer status (the events are checked where they matter)."""
    return fold_printer(state, PrinterState(printer), job, now, s)[0]


def printing(job: str = "benchy.gcode", now: float = 0.0, s: Settings = S) -> WatchState:
    return on_printer(WatchState(), "printing", job, now, s)


def feed(state: WatchState, pattern: str, t0: float = 0.0, dt: float = 10.0, s: Settings = S):
    """Feed frames ('x' anomalous, '.' normal); return the state and the frame indexes that fired."""
    fired = []
    for i, c in enumerate(pattern):
        state, events = on_frame(state, c == "x", t0 + i * dt, s)
        if Event.FIRED in events:
            fired.append(i)
    return state, fired


def test_three_in_a_row_triggers_once() -> None:
    state, fired = feed(printing(), "..xx.xxx")
    assert fired == [7]
    assert state.label is Label.ANOMALY and not state.armed


def test_broken_runs_never_trigger() -> None:
    _, fired = feed(printing(), "xx.xx.xx.xx.x.x")
    assert fired == []


def test_idle_printer_scores_nothing_and_never_fires() -> None:
    state = on_printer(WatchState(), "idle", None, 0, S)
    assert not state.watching
    _, fired = feed(state, "xxxxxx")
    assert fired == []


def test_no_second_pause_on_the_frames_that_caused_the_first() -> None:
    state, fired = feed(printing(), "xxx")
    assert fired == [2]
    state = on_printer(state, "paused", "benchy.gcode", 40, S)
    assert state.label is Label.PAUSED
    # The camera keeps seeing the same failure while paused: nothing is scored or fired.
    state, fired = feed(state, "xxxxx", t0=50)
    assert fired == []


def test_rearms_only_after_resume_and_cooldown() -> None:
    state, _ = feed(printing(), "xxx")
    state = on_printer(state, "paused", "benchy.gcode", 30, S)
    state = on_printer(state, "printing", "benchy.gcode", 100, S)  # the user resumes
    assert state.label is Label.COOLDOWN
    # Within the cooldown the anomaly persists: no new pause.
    state, fired = feed(state, "xxxxxxxx", t0=100, dt=10)  # t = 100..170 < 190
    assert fired == []
    # After the cooldown a fresh run of three is needed.
    state, fired = feed(state, "xxx", t0=200, dt=10)
    assert fired == [2]
    assert state.triggers == 2


def test_new_print_starts_clean() -> None:
    state, _ = feed(printing(), "xxx")
    state = on_printer(state, "paused", "benchy.gcode", 30, S)
    state = on_printer(state, "idle", None, 40, S)  # the user cancels
    state = on_printer(state, "printing", "vase.gcode", 50, S)
    assert state.armed and state.triggers == 0 and state.label is Label.WATCHING
    _, fired = feed(state, "xxx", t0=60)
    assert fired == [2]


def test_a_print_that_ends_by_itself_is_told_once_and_ours_is_not() -> None:
    state, _ = feed(printing(), "..x..")
    ended, events = fold_printer(state, PrinterState.IDLE, None, 100, S)
    assert events == (Event.PRINT_ENDED,) and ended.job == "benchy.gcode"
    assert fold_printer(ended, PrinterState.IDLE, None, 110, S)[1] == ()  # once
    # we cancelled it: the alert already said so
    from watchdog.detection.decide import cancelled_by_us

    state, _ = feed(printing(), "xxx")
    assert fold_printer(cancelled_by_us(state), PrinterState.IDLE, None, 40, S)[1] == ()
    # an alert that only told the owner (or a pause resumed), the print then finishing within
    # the cooldown: it ended by itself, and is told (it was not, while disarmed)
    assert fold_printer(state, PrinterState.IDLE, None, 40, S)[1] == (Event.PRINT_ENDED,)
    # an API blip is not an end
    assert fold_printer(printing(), PrinterState.OFFLINE, None, 10, S)[1] == ()


def test_job_change_without_idle_in_between_is_a_new_print() -> None:
    state, _ = feed(printing("a.gcode"), "xxx")
    state = on_printer(state, "printing", "b.gcode", 60, S)
    assert state.armed and state.triggers == 0


def test_api_blip_neither_rearms_nor_resets() -> None:
    state, _ = feed(printing(), "xxx")
    state = on_printer(state, "offline", None, 35, S)
    state = on_printer(state, "printing", "benchy.gcode", 40, S)
    assert not state.armed and state.triggers == 1
    _, fired = feed(state, "xxx", t0=45)
    assert fired == []


def test_notify_only_rearms_after_cooldown_while_still_printing() -> None:
    # action notify (or a pause that failed): the printer never reports paused.
    state, fired = feed(printing(), "xxx")
    assert fired == [2]
    state, fired = feed(state, "xxxxxxxx", t0=30, dt=10)  # t = 30..100 < 110
    assert fired == []
    state, fired = feed(state, "xxx", t0=120)
    assert fired == [2]


def test_user_pause_and_resume_without_trigger_keeps_watching() -> None:
    state, _ = feed(printing(), "xx")
    state = on_printer(state, "paused", "benchy.gcode", 30, S)
    state = on_printer(state, "printing", "benchy.gcode", 60, S)
    assert state.armed and state.consecutive == 0
    _, fired = feed(state, "xxx", t0=70)
    assert fired == [2]


@settings(deadline=None)  # a busy machine's pause is not a failure of the rule
@given(st.lists(st.booleans(), max_size=200), st.integers(1, 6))
def test_never_fires_without_a_full_run(frames, consecutive) -> None:
    s = Settings(consecutive=consecutive, cooldown_s=1e9)
    state = printing(s=s)
    fired = []
    for i, a in enumerate(frames):
        state, events = on_frame(state, a, float(i), s)
        if Event.FIRED in events:
            fired.append(i)
    # With an endless cooldown there is at most one action per print...
    assert len(fired) <= 1
    # ...and it comes exactly at the end of the first full run of anomalous frames.
    expected = None
    run = 0
    for i, a in enumerate(frames):
        run = run + 1 if a else 0
        if run >= consecutive:
            expected = i
            break
    assert fired == ([] if expected is None else [expected])


def test_events_say_what_the_watcher_must_route() -> None:
    state, events = fold_printer(WatchState(), PrinterState.PRINTING, "a.gcode", 0, S)
    assert events == (Event.NEW_PRINT,)
    state, _ = feed(state, "xxx")
    state, events = fold_printer(state, PrinterState.PAUSED, "a.gcode", 30, S)
    assert events == ()
    state, events = fold_printer(state, PrinterState.PRINTING, "a.gcode", 40, S)
    assert events == (Event.RESUMED_AFTER_ACTION,)
    # Another job after a pause is a new print, whatever came before.
    state, _ = fold_printer(state, PrinterState.PAUSED, "a.gcode", 50, S)
    state, _ = feed(state, ".", t0=200)
    _, events = fold_printer(state, PrinterState.PRINTING, "b.gcode", 60, S)
    assert events == (Event.NEW_PRINT,)
    # A paused print that goes idle was cancelled (a paused print cannot finish), whoever
    # paused it; a print that ends while printing is not.
    for paused_by_us in (True, False):
        state, _ = feed(printing(), "xxx" if paused_by_us else "")
        state, _ = fold_printer(state, PrinterState.PAUSED, "benchy.gcode", 50, S)
        ended, events = fold_printer(state, PrinterState.IDLE, None, 60, S)
        assert events == (Event.CANCELLED_WHILE_PAUSED,) and ended.job == "benchy.gcode"
        assert fold_printer(ended, PrinterState.IDLE, None, 70, S)[1] == ()  # once
    assert (
        Event.CANCELLED_WHILE_PAUSED
        not in fold_printer(printing(), PrinterState.IDLE, None, 9, S)[1]
    )


def test_home_assistants_problem_sensor_is_on_from_our_action_until_the_owner_answers() -> None:
    """The discovery config's own template, rendered as Home Assistant renders it against the
    published state: one anomalous frame (a hand in view) or a pause the owner makes (a
    filament change) is not a print failure; our pause is, until the owner resumes, marks it
    not a failure, or starts another print."""
    import jinja2

    from watchdog.comms.discovery import discovery_configs
    from watchdog.config import MqttConfig
    from watchdog.detection.decide import answered, cancelled_by_us

    [template] = [
        c["value_template"]
        for topic, c in discovery_configs(MqttConfig(host="broker"), "ender3").items()
        if "/binary_sensor/" in topic
    ]

    def sensor(state: WatchState) -> str:
        published = {"state": state.label.value, "failure": state.failure}
        return jinja2.Environment().from_string(template).render(value_json=published)

    state, _ = feed(printing(), "x")
    assert state.label is Label.ANOMALY and sensor(state) == "OFF"
    state = on_printer(state, "paused", "benchy.gcode", 20.0, S)  # the owner's own pause
    assert sensor(state) == "OFF"
    state = on_printer(state, "printing", "benchy.gcode", 30.0, S)
    state, fired = feed(state, "xxx", t0=40.0)
    assert fired and sensor(state) == "ON"
    paused = on_printer(state, "paused", "benchy.gcode", 70.0, S)  # our pause took
    assert sensor(paused) == "ON"
    assert sensor(on_printer(paused, "printing", "benchy.gcode", 80.0, S)) == "OFF"  # resumed
    assert sensor(answered(paused)) == "OFF"
    assert sensor(on_printer(paused, "printing", "next.gcode", 80.0, S)) == "OFF"  # a new print
    # cancelled at the printer while our pause held it: answered (it stayed on until the
    # next restart); cancelled by our own alert, it stays on until the owner answers
    assert sensor(on_printer(paused, "idle", None, 80.0, S)) == "OFF"
    assert sensor(on_printer(cancelled_by_us(paused), "idle", None, 80.0, S)) == "ON"
    # not answered, it stays on: an alert only (the watcher re-arms)
    rearmed, _ = feed(state, "." * 20, t0=60.0)  # notify: the printer never paused
    assert rearmed.armed and sensor(rearmed) == "ON"
    # a state published before the field existed (retained on the broker) reads as no failure
    old = jinja2.Environment().from_string(template).render(value_json={"state": "paused"})
    assert old == "OFF"


def test_home_assistants_failure_sensor_keeps_its_attributes_from_frame_to_frame() -> None:
    """Its attributes were the whole state, a new score at every frame: Home Assistant's
    recorder wrote the sensor again every ten seconds of every print."""
    import json

    import jinja2

    from watchdog.comms.discovery import discovery_configs
    from watchdog.config import MqttConfig

    [template] = [
        c["json_attributes_template"]
        for topic, c in discovery_configs(MqttConfig(host="broker"), "ender3").items()
        if "/binary_sensor/" in topic
    ]
    frame = {
        "state": "calibrating",
        "printer_state": "printing",
        "job": "benchy.gcode",
        "camera_online": True,
        "enabled": True,
        "skipping_print": False,
        "failure": False,
        "calibration": "3/30",
        "consecutive": 0,
        "score": 0.02,
        "threshold": 0.05,
    }
    nxt = {**frame, "state": "watching", "calibration": "", "consecutive": 1, "score": 0.07}

    def attributes(published: dict) -> dict:
        return json.loads(jinja2.Environment().from_string(template).render(value_json=published))

    assert attributes(frame) == attributes(nxt)
    assert attributes(frame)["job"] == "benchy.gcode"
    assert attributes({**frame, "printer_state": "paused"})["printer_state"] == "paused"


def test_a_pause_of_the_owners_own_ends_with_the_view_accepted() -> None:
    """A filament change (the owner's pause, or the printer's own M600): the print resumes
    looking different (another colour, a purge blob) and the owner has seen it, so its look is
    learnt again; a resume after our pause is the other event (it also starts the cooldown)."""
    paused = on_printer(printing(), "paused", "benchy.gcode", 10.0, S)
    state, events = fold_printer(paused, PrinterState.PRINTING, "benchy.gcode", 20.0, S)
    assert events == (Event.RESUMED,) and state.armed and state.watching


def test_a_printer_error_ends_the_print_and_printing_again_is_a_new_print() -> None:
    """OctoPrint's error state, Klipper's shutdown or a print Klipper aborted: the print is
    over (its notice says why), it is not watched on, and starting the same file again is a
    new print learnt afresh, not a resume judged against the old one's look."""
    state, events = fold_printer(printing(), PrinterState.ERROR, None, 10.0, S)
    assert events == (Event.PRINT_ERROR,) and not state.watching and state.label is Label.IDLE
    again, events = fold_printer(state, PrinterState.PRINTING, "benchy.gcode", 20.0, S)
    assert events == (Event.NEW_PRINT,) and again.watching
    # an error while nothing printed is no print's end; an API that does not answer is no error
    assert fold_printer(WatchState(), PrinterState.ERROR, None, 0.0, S)[1] == ()
    assert fold_printer(printing(), PrinterState.OFFLINE, None, 0.0, S) == (printing(), ())


def test_a_printer_error_ends_its_prints_failure_as_an_idle_printer_does() -> None:
    """A Klippy shutdown (an emergency stop) after an alert: the print was over, and its
    failure stayed on (Home Assistant's problem sensor, the page) until the next print."""
    alerted, fired = feed(printing("a.gcode"), "xxx")
    assert fired and alerted.failure
    for stopped in (alerted, on_printer(alerted, "paused", "a.gcode", 50, S)):
        ended, events = fold_printer(stopped, PrinterState.ERROR, None, 100.0, S)
        assert events == (Event.PRINT_ERROR,) and not ended.failure
        idle, _ = fold_printer(ended, PrinterState.IDLE, None, 110.0, S)
        assert not idle.failure


def test_another_job_first_seen_paused_is_a_new_print_not_a_resume() -> None:
    """A runout sensor or a PAUSE in its start G-code pauses print B before the first poll:
    it passed for a resume of print A (A's failure left on, its alert's Cancel acting on B)."""
    alerted, fired = feed(printing("a.gcode"), "xxx")
    assert fired and alerted.failure
    ended = on_printer(alerted, "idle", None, 100, S)
    paused, events = fold_printer(ended, PrinterState.PAUSED, "b.gcode", 110, S)
    assert events == (Event.NEW_PRINT,) and not paused.failure and paused.armed
    resumed, events = fold_printer(paused, PrinterState.PRINTING, "b.gcode", 120, S)
    assert Event.NEW_PRINT not in events and resumed.triggers == 0 and not resumed.failure
    # from another job's own pause, through an API outage too
    away = on_printer(printing("a.gcode"), "offline", None, 10, S)
    assert fold_printer(away, PrinterState.PAUSED, "b.gcode", 20, S)[1] == (Event.NEW_PRINT,)


def test_a_run_of_anomalous_frames_does_not_span_a_gap() -> None:
    """Two anomalous frames, the camera offline for an hour (or watching switched off), then
    one: it fired on a single fresh frame where three are needed."""
    from watchdog.detection.decide import after_a_gap

    state, _ = feed(printing(), "xx")
    state, fired = feed(after_a_gap(state), "x", t0=3600)
    assert not fired and state.consecutive == 1


def test_a_print_resumed_while_the_watchdog_was_stopped_waits_out_the_cooldown() -> None:
    from watchdog.detection.decide import resumed_after_action

    state = resumed_after_action(printing(), 1000.0, S)
    assert state.label is Label.COOLDOWN and not state.failure
    state, fired = feed(state, "xxxxxxxx", t0=1000.0)  # 80 s: inside the 90 s cooldown
    assert not fired


def test_a_print_time_still_counting_the_pause_at_the_resume_is_no_new_print() -> None:
    """OctoPrint's progress is cached until an SD print's next status report: the first poll
    after a resume may carry the print time of the pause, and the right one after it looked
    like the print time going back: a new print mid-print, its alert closed, its look learnt
    again with the failure in view."""
    from watchdog.detection.decide import JobClock

    def status(state, printer, now, printed):
        return fold_printer(state, PrinterState(printer), "a.gcode", now, S, JobClock(printed))

    state, _ = status(WatchState(), "printing", 1000.0, 1000.0)
    state, _ = status(state, "paused", 1010.0, 1000.0)
    state, _ = status(state, "paused", 1300.0, 1290.0)  # the card's reports during the pause
    state, events = status(state, "printing", 1310.0, 1300.0)  # cached: the pause still in it
    assert events == (Event.RESUMED,)
    state, events = status(state, "printing", 1320.0, 1005.0)  # the card's next report
    assert events == (), events
    assert status(state, "printing", 1330.0, 20.0)[1] == (Event.NEW_PRINT,)  # a real restart


def test_the_same_file_started_again_unseen_is_a_new_print() -> None:
    """The API away across a print's end (Wi-Fi, Moonraker's host rebooting) or a reprint
    between two polls: the same file printing again was judged against the last print's
    learnt look (a new print's start looks changed on nearly every frame: a good print
    paused), and a paused one resumed was an answer to the last print's alert. Its print
    time going back (OctoPrint, Klipper) or its start moving later (Klipper) tells."""
    from watchdog.detection.decide import JobClock

    def status(state, printer, now, printed=None, elapsed=None):
        clock = JobClock(printed, elapsed)
        return fold_printer(state, PrinterState(printer), "a.gcode", now, S, clock)

    state, _ = status(WatchState(), "printing", 1000.0, printed=900.0, elapsed=1000.0)
    state, events = status(state, "printing", 1010.0, printed=910.0, elapsed=1010.0)
    assert events == ()  # the same print, its own time grows
    # paused by its owner for an hour, resumed: the same print (its start did not move);
    # OctoPrint's print time of an SD print grows during the pause and drops at the resume
    state, events = status(state, "paused", 2000.0, printed=1200.0, elapsed=2000.0)
    state, events = status(state, "paused", 5000.0, printed=4200.0, elapsed=5000.0)
    state, events = status(state, "printing", 5600.0, printed=1210.0, elapsed=5600.0)
    assert events == (Event.RESUMED,)
    # OctoPrint: the print time alone, gone back
    again, events = status(state, "printing", 9000.0, printed=30.0)
    assert events == (Event.NEW_PRINT,) and again.printed_s == 30.0
    # Klipper: started 20 minutes ago, after the last status: the print time is no help
    later, events = status(state, "printing", 9000.0, printed=1300.0, elapsed=1200.0)
    assert events == (Event.NEW_PRINT,)
    # our pause, then cancelled and started again at the printer, first seen paused
    alerted, fired = feed(state, "xxx", t0=5610.0)
    paused = status(alerted, "paused", 5700.0, printed=1300.0, elapsed=5700.0)[0]
    new, events = status(paused, "paused", 9000.0, printed=5.0, elapsed=60.0)
    assert fired and events == (Event.NEW_PRINT,) and not new.failure and new.armed
    # and first seen printing: no resume answering the last print's alert
    assert status(paused, "printing", 9000.0, printed=5.0)[1] == (Event.NEW_PRINT,)
    assert status(paused, "printing", 9000.0, printed=1300.0)[1] == (Event.RESUMED_AFTER_ACTION,)
    # a status without the times (an answer that lacks them) is no evidence either way
    assert status(state, "printing", 9000.0)[1] == ()


def test_a_pause_taken_but_never_seen_is_said_once_when_due_and_an_api_away_delays_it() -> None:
    state, fired = feed(printing(), "xxx")
    state = stop_sent(state, due=60.0)

    def poll(state: WatchState, printer: str, now: float) -> tuple[WatchState, tuple[Event, ...]]:
        return fold_printer(state, PrinterState(printer), "benchy.gcode", now, S)

    state, events = poll(state, "printing", 30.0)  # not due yet: the printer may be slow
    assert Event.NOT_STOPPED not in events
    state, events = poll(state, "offline", 70.0)  # the API away tells nothing
    assert Event.NOT_STOPPED not in events
    state, events = poll(state, "printing", 80.0)
    assert Event.NOT_STOPPED in events and state.label is Label.ANOMALY
    state, events = poll(state, "printing", 90.0)  # said once
    assert Event.NOT_STOPPED not in events


def test_a_pause_or_cancel_seen_carried_out_is_never_said_not_to_have_happened() -> None:
    for seen in ("paused", "idle", "error"):
        state, _ = feed(printing(), "xxx")
        state = stop_sent(state, due=60.0)
        state = on_printer(state, seen, "benchy.gcode", 20.0, S)
        # resumed by its owner, then printing past the time the pause was due: no complaint
        state, events = fold_printer(state, PrinterState.PRINTING, "benchy.gcode", 90.0, S)
        assert Event.NOT_STOPPED not in events, seen


def test_our_cancel_is_not_shown_by_a_printer_that_shows_paused() -> None:
    """A cancel the API took and the printer only paused (a cancel macro that pauses): taken
    as done, the print resumed later ran on marked cancelled, and its end was never told."""
    state, _ = feed(printing(), "xxx")
    state = stop_sent(decide.cancelled_by_us(state), due=60.0)
    state, events = fold_printer(state, PrinterState.PAUSED, "benchy.gcode", 20.0, S)
    assert Event.STOP_SHOWN not in events and state.stop_due == 60.0
    state, events = fold_printer(state, PrinterState.PRINTING, "benchy.gcode", 90.0, S)
    assert Event.NOT_STOPPED in events and not state.cancelled


def test_no_second_alert_before_the_first_pause_is_seen_or_corrected() -> None:
    """A cooldown shorter than ``api.confirm_s``: the failure still in view must not fire
    again before the printer has shown the first pause or it was found not to have happened
    (each new alert moved the deadline: the correction never came, a "paused" every minute)."""
    state, fired = feed(printing(), "xxx")  # fired at t=20, re-arms by the cooldown at 110
    state = stop_sent(state, due=320.0)
    state = stop_sent(state, due=400.0)  # a later one does not move the first one's deadline
    assert state.stop_due == 320.0
    state, fired = feed(state, "x" * 19, t0=120.0)  # until t=300
    assert fired == []
    state, events = fold_printer(state, PrinterState.PRINTING, "benchy.gcode", 320.0, S)
    assert Event.NOT_STOPPED in events
    state, fired = feed(state, "xxx", t0=330.0)
    assert fired == [2]  # corrected: the failure in view fires (pauses) again


def test_the_owners_resume_of_a_late_pause_of_ours_answers_the_failure() -> None:
    """Our pause queued behind a heat-up shows after it was said not to have happened: the
    owner's resume, hours later, was taken for the resume of a pause of their own. The failure
    stood (Home Assistant's problem sensor on until the print's end) and no cooldown began."""
    state, _ = feed(printing(), "xxx")
    assert state.failure
    state = stop_sent(state, due=60.0)
    state, events = fold_printer(state, PrinterState.PRINTING, "benchy.gcode", 70.0, S)
    assert Event.NOT_STOPPED in events
    state, _ = feed(state, "." * 5, t0=80.0)  # judged on meanwhile: re-armed by the cooldown
    assert state.armed
    state, events = fold_printer(state, PrinterState.PAUSED, "benchy.gcode", 200.0, S)
    assert Event.PAUSED_LATE in events
    state, events = fold_printer(state, PrinterState.PRINTING, "benchy.gcode", 3800.0, S)
    assert Event.RESUMED_AFTER_ACTION in events, events
    assert not state.failure and state.cooling and state.label is Label.COOLDOWN


def test_a_pause_seen_after_it_was_said_not_to_have_happened_is_a_late_pause_once() -> None:
    state, _ = feed(printing(), "xxx")
    state = stop_sent(state, due=60.0)
    state, events = fold_printer(state, PrinterState.PRINTING, "benchy.gcode", 70.0, S)
    assert Event.NOT_STOPPED in events
    state, events = fold_printer(state, PrinterState.PAUSED, "benchy.gcode", 80.0, S)
    assert Event.PAUSED_LATE in events and state.label is Label.PAUSED
    state, events = fold_printer(state, PrinterState.PRINTING, "benchy.gcode", 90.0, S)
    state, events = fold_printer(state, PrinterState.PAUSED, "benchy.gcode", 100.0, S)
    assert Event.PAUSED_LATE not in events  # the owner's own pause, later: nothing of ours
    # told not to have happened, and no pause for an hour: a pause then is a filament change
    state, _ = feed(
        fold_printer(state, PrinterState.PRINTING, "benchy.gcode", 110.0, S)[0], "xxx", t0=500.0
    )
    state = stop_sent(state, due=600.0)
    state, events = fold_printer(state, PrinterState.PRINTING, "benchy.gcode", 610.0, S)
    assert Event.NOT_STOPPED in events
    state, events = fold_printer(state, PrinterState.PAUSED, "benchy.gcode", 610.0 + 3600, S)
    assert Event.PAUSED_LATE not in events
