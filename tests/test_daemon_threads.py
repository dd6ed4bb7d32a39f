"""The daemon's threads: commands reach a running watcher through its queue, a reload swaps
whole generations of watchers, and the config's log_level is honoured."""

from __future__ import annotations

import gc
import json
import signal
import threading
import time
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from tests.daemon_helpers import (
    DaemonProcess,
    free_port,
    no_threads_named,
    wait_until,
    write_config,
)
from watchdog.comms import http
from watchdog.comms.notifier import Notifier
from watchdog.config import CameraConfig, MqttConfig, PrinterConfig, StorageConfig
from watchdog.control import Command, CommandResult, Verb
from watchdog.daemon import Daemon
from watchdog.detection.bundle import Bundle
from watchdog.printing import Action, ActionResult, Outcome
from watchdog.watcher import Alert, build_watcher


def _alert(incident: str) -> Alert:
    """An alert as a watcher keeps it, named ``incident``."""
    done = ActionResult(Action.NOTIFY, Outcome.DONE, "notify only", 0)
    return Alert(
        "2026-12-06T00:00:00.000+00:00", "e3", None, 1.0, 0.5, 3, Action.NOTIFY, done, "", incident
    )


def _frames(folder: Path, frames) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"f_{i}.jpg"), f)
    return folder


def _served(tmp_path: Path, bundle: Path, frames: Path, interval_s: float) -> Path:
    """A config of one printer on a folder camera, with the status server and page on."""
    return write_config(
        tmp_path / "c.yaml",
        model=str(bundle),
        storage={"dir": str(tmp_path / "state")},
        http={"listen": f"127.0.0.1:{free_port()}"},
        printers=[{"name": "e3", "camera": {"source": str(frames), "interval_s": interval_s}}],
    )


@pytest.fixture
def daemon(tmp_path, tiny_adaptive_bundle, normal_frames):
    """The daemon in-process with one watcher thread on a looping HTTP-less folder camera."""
    frames = _frames(tmp_path / "rec", list(normal_frames[:8]) * 5)
    d = _in_process(tmp_path, tiny_adaptive_bundle, frames, 0.5)
    yield d
    d._stop(d.running)


def _in_process(tmp_path: Path, bundle: Path, frames: Path, interval_s: float) -> Daemon:
    """A daemon in this process with one printer, e3, on a folder camera, its watcher's thread
    running (no status server, no MQTT); its config is ``tmp_path / "c.yaml"``."""
    config = write_config(
        tmp_path / "c.yaml",
        model=str(bundle),
        storage={"dir": str(tmp_path / "state")},
        printers=[{"name": "e3", "camera": {"source": str(frames), "interval_s": interval_s}}],
    )
    d = Daemon(config)
    d.notifier = Notifier(d.config.mqtt, d.config.storage, [p.name for p in d.config.printers])
    d.running = d._start(d._make_watchers(d.config, d.bundle))
    return d


def test_a_command_from_another_thread_is_carried_out_by_the_watcher_between_frames(daemon) -> None:
    """MQTT or the web page ask from their own threads; the watcher's thread carries it out,
    without waiting for the next camera interval, and says what it did."""
    wait_until("first frame", lambda: daemon.running["e3"].watcher.snapshot.score is not None, 30)
    results = {}

    def ask() -> None:
        results["off"] = daemon.dispatch(Command("e3", Verb.DISABLE, source="web"))

    asker = threading.Thread(target=ask)
    asker.start()
    asker.join(10)
    assert results["off"].ok and "off" in results["off"].detail
    snap = daemon.running["e3"].watcher.snapshot
    assert not snap.enabled and snap.state.value == "disabled"
    assert daemon.status()["printers"]["e3"]["state"] == "disabled"
    assert daemon.dispatch(Command("e3", Verb.ENABLE)).ok
    assert daemon.dispatch(Command("nope", Verb.ENABLE)).detail == "no printer named 'nope'"


def test_a_command_that_arrives_while_a_reload_stops_the_watcher_is_carried_out_after_it(
    daemon,
) -> None:
    """Saving a setting on the page reloads the watchers; a switch pressed in Home Assistant at
    that moment waits in the old watcher's queue. The new watcher carries it out and its sender
    gets the answer (not "did not answer" a minute later, the switch silently undone)."""
    daemon._stop(daemon.running)
    daemon.running = daemon._prepare(daemon._make_watchers(daemon.config, daemon.bundle))
    results = {}

    def ask() -> None:  # queued to a watcher whose thread is not running
        results["off"] = daemon.dispatch(Command("e3", Verb.DISABLE, source="mqtt"))

    asker = threading.Thread(target=ask)
    asker.start()
    queued = daemon.running["e3"].watcher._commands
    wait_until("the command queued", lambda: not queued.empty(), 5)
    daemon.reload()
    asker.join(20)
    assert results["off"].ok and "off" in results["off"].detail, results
    assert not daemon.running["e3"].watcher.snapshot.enabled


def test_a_switch_pressed_in_home_assistant_shows_there_when_done_not_at_the_next_frame(
    daemon, monkeypatch
) -> None:
    """The watcher switched off at once, but its state reached MQTT only at its next step (a
    camera interval later): Home Assistant's Watching switch flipped back, then over again."""
    daemon._stop(daemon.running)
    daemon.running = daemon._prepare(daemon._make_watchers(daemon.config, daemon.bundle))
    watcher = daemon.running["e3"].watcher  # its thread not started: no step publishes
    published: list[dict] = []
    monkeypatch.setattr(watcher.alerts, "publish_state", lambda _p, state: published.append(state))
    results = {}

    def ask() -> None:
        results["off"] = daemon.dispatch(Command("e3", Verb.DISABLE, source="mqtt"))

    asker = threading.Thread(target=ask)
    asker.start()
    wait_until("the command queued", lambda: not watcher._commands.empty(), 5)
    watcher._drain_commands()
    asker.join(10)
    assert results["off"].ok, results
    assert published and published[-1]["enabled"] is False, published
    assert published[-1]["state"] == "disabled"
    # a frame taken for the page's editor changes nothing: not told to the broker each time
    published.clear()
    looked = threading.Thread(target=lambda: daemon.dispatch(Command("e3", Verb.LOOK)))
    looked.start()
    wait_until("the look queued", lambda: not watcher._commands.empty(), 5)
    watcher._drain_commands()
    looked.join(10)
    assert published == []


def test_a_command_not_answered_in_time_is_taken_back_and_never_carried_out_later(
    daemon, monkeypatch
) -> None:
    """A watcher slow to answer (its camera or printer hanging): the sender is told nothing was
    done, and the command does not happen later, when the owner has pressed again (twice) or a
    pause from Home Assistant would land minutes late on whatever prints then."""
    monkeypatch.setattr(daemon, "answer_within", lambda watcher: 1.0)
    daemon._stop(daemon.running)
    daemon.running = daemon._prepare(daemon._make_watchers(daemon.config, daemon.bundle))
    watcher = daemon.running["e3"].watcher  # its thread not started: nothing drains its queue
    late = daemon.dispatch(Command("e3", Verb.DISABLE, source="mqtt"))
    assert not late.ok and not late.under_way and "nothing was done" in late.detail, late
    watcher._drain_commands()
    assert watcher.enabled and watcher._commands.empty()


def _an_alert_with_a_waiting_watcher(daemon, monkeypatch):  # noqa: ANN202 - test helper
    """A saved alert of e3, whose watcher's thread is not running: it answers within 1 s,
    so a command waits in its queue until the test drains it."""
    monkeypatch.setattr(daemon, "answer_within", lambda watcher: 1.0)
    daemon._stop(daemon.running)
    daemon.running = daemon._prepare(daemon._make_watchers(daemon.config, daemon.bundle))
    watcher = daemon.running["e3"].watcher
    jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    return watcher, watcher.alerts.store.save("e3", {"printer": "e3"}, jpeg, jpeg, pending=False)


def test_a_not_a_failure_answer_its_watcher_is_slow_to_take_is_still_learnt(
    daemon, monkeypatch
) -> None:
    """The verdict is saved (its frame kept for retraining) before the watcher is asked to
    learn the print's look again: a watcher slow to answer must still learn it, and the owner
    is told the answer was kept, not that nothing was done."""
    watcher, incident = _an_alert_with_a_waiting_watcher(daemon, monkeypatch)
    answer = daemon.dispatch(Command("e3", Verb.NOT_A_FAILURE, incident.id, source="phone"))
    assert answer.ok and "learnt again shortly" in answer.detail, answer
    carried: list[Verb] = []
    monkeypatch.setattr(watcher, "_carry_out", lambda command: carried.append(command.verb))
    watcher._drain_commands()
    assert carried == [Verb.NOT_A_FAILURE]


@pytest.mark.parametrize("verb", [Verb.NOT_A_FAILURE, Verb.CONFIRM_FAILURE])
def test_a_changed_verdict_that_cannot_take_its_frame_back_changes_nothing(
    daemon, monkeypatch, verb: Verb
) -> None:
    """The frame the verdict before kept cannot be removed from its training folder (a folder
    stands at its name: root, whom the tests run as, is stopped by no permission): the
    verdict stays as it was, the owner is told so, and the watcher is not told either (it
    answered the alert, or learnt the print's look, for a verdict that never changed)."""
    from watchdog import incidents

    watcher, incident = _an_alert_with_a_waiting_watcher(daemon, monkeypatch)
    storage = daemon.config.storage.dir
    before = Verb.CONFIRM_FAILURE if verb is Verb.NOT_A_FAILURE else Verb.NOT_A_FAILURE
    mark = incidents.mark_failure if before is Verb.CONFIRM_FAILURE else incidents.mark_not_failure
    mark(storage, "e3", incident.id)
    folder = (
        incidents.failures_dir if before is Verb.CONFIRM_FAILURE else incidents.false_alarms_dir
    )(storage, "e3")
    (folder / f"{incident.id}.jpg").unlink()
    (folder / f"{incident.id}.jpg" / "stuck").mkdir(parents=True)
    answer = daemon.dispatch(Command("e3", verb, incident.id, source="phone"))
    assert not answer.ok, answer
    assert answer.detail.startswith(
        "the verdict is as it was: the frame kept by the verdict before could not be removed"
    ), answer
    # its owner counted on the view being learnt: it is not, and they are told so
    unlearnt = "what the camera shows is not learnt either: the same view may alert again"
    assert (unlearnt in answer.detail) is (verb is Verb.NOT_A_FAILURE), answer
    saved = incidents.incident_dir(storage, "e3", incident.id) / "alert.json"
    expected = "failure" if before is Verb.CONFIRM_FAILURE else "not_failure"
    assert json.loads(saved.read_text())["verdict"] == expected
    carried: list[Verb] = []
    monkeypatch.setattr(watcher, "_carry_out", lambda command: carried.append(command.verb))
    watcher._drain_commands()
    assert carried == []


@pytest.mark.parametrize("verb", [Verb.NOT_A_FAILURE, Verb.CONFIRM_FAILURE])
def test_an_answer_on_a_full_disk_stands_though_its_frames_are_not_kept(
    daemon, monkeypatch, verb: Verb
) -> None:
    """The frame's copy for retraining fails (a full disk; its write made to fail, as a full
    disk under the daemon's own storage folder is not made here): the answer was recorded, but the owner was told it
    failed, the watcher never learnt it, and a half copy stayed in the retraining folder."""
    import errno

    from watchdog import incidents

    watcher, incident = _an_alert_with_a_waiting_watcher(daemon, monkeypatch)

    def full(dst: Path, data: bytes) -> None:
        Path(dst).write_bytes(data[:10])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(incidents, "_write_copy", full)
    answer = daemon.dispatch(Command("e3", verb, incident.id, source="phone"))
    assert answer.ok and "could not be kept" in answer.detail, answer
    assert "No space left on device" in answer.detail
    storage = daemon.config.storage.dir
    saved = incidents.incident_dir(storage, "e3", incident.id) / "alert.json"
    expected = "not_failure" if verb is Verb.NOT_A_FAILURE else "failure"
    assert json.loads(saved.read_text())["verdict"] == expected
    assert not list((Path(storage) / "collected").rglob("*.tmp"))
    carried: list[Verb] = []
    monkeypatch.setattr(watcher, "_carry_out", lambda command: carried.append(command.verb))
    watcher._drain_commands()
    assert carried == [verb]


@pytest.mark.parametrize("verb", [Verb.NOT_A_FAILURE, Verb.CONFIRM_FAILURE])
def test_an_answer_to_the_alert_the_storage_could_not_save_is_still_learnt(
    daemon, monkeypatch, verb: Verb
) -> None:
    """The storage folder could not be written when the alert came (a full SD card): the
    alert went out, but its answer was refused as "no alert (the oldest alerts are
    removed)", the watcher never learnt it, and the failure stood until a restart."""
    import shutil
    from types import SimpleNamespace

    from watchdog import incidents

    watcher, incident = _an_alert_with_a_waiting_watcher(daemon, monkeypatch)
    storage = daemon.config.storage.dir
    shutil.rmtree(incidents.incident_dir(storage, "e3", incident.id))  # as never saved
    other = daemon.dispatch(Command("e3", verb, incident.id, source="phone"))
    assert not other.ok and "oldest alerts are removed" in other.detail, other
    watcher.last_alert = SimpleNamespace(incident=incident.id)  # held by the watcher
    answer = daemon.dispatch(Command("e3", verb, incident.id, source="phone"))
    assert answer.ok and "the alert was never saved" in answer.detail, answer
    assert "oldest" not in answer.detail
    carried: list[Verb] = []
    monkeypatch.setattr(watcher, "_carry_out", lambda command: carried.append(command.verb))
    watcher._drain_commands()
    assert carried == [verb]
    # one saved but damaged is refused as before, not taken for one never saved
    watcher, damaged = _an_alert_with_a_waiting_watcher(daemon, monkeypatch)
    (incidents.incident_dir(storage, "e3", damaged.id) / "alert.json").write_text("{damaged")
    watcher.last_alert = SimpleNamespace(incident=damaged.id)
    refused = daemon.dispatch(Command("e3", verb, damaged.id, source="phone"))
    assert not refused.ok and "never saved" not in refused.detail, refused


def test_a_not_a_failure_on_a_full_disk_says_its_frame_was_not_kept_when_the_watcher_answers(
    daemon, monkeypatch
) -> None:
    """The watcher takes the answer at once (its thread runs): the page's toast was the
    watcher's own "kept for retraining; learning the print's look again", though the frame's
    copy had failed (a full disk, made so through its write)."""
    import errno

    from watchdog import incidents

    watcher = daemon.running["e3"].watcher
    jpeg = cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    incident = watcher.alerts.store.save("e3", {"printer": "e3"}, jpeg, jpeg, pending=False)

    def full(dst: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(incidents, "_write_copy", full)
    answer = daemon.dispatch(Command("e3", Verb.NOT_A_FAILURE, incident.id, source="web"))
    assert "could not be kept" in answer.detail and "No space left" in answer.detail, answer
    assert "shortly" not in answer.detail, "the watcher answered, not queued for later"
    monkeypatch.undo()
    again = watcher.alerts.store.save("e3", {"printer": "e3"}, jpeg, jpeg, pending=False)
    kept = daemon.dispatch(Command("e3", Verb.NOT_A_FAILURE, again.id, source="web"))
    assert kept.ok and "its frame is kept for retraining" in kept.detail, kept
    # said on a phone or the page: where on the Pi is the log's (a full path was shown)
    assert str(daemon.config.storage.dir) not in kept.detail + answer.detail
    gone = daemon.dispatch(Command("e3", Verb.NOT_A_FAILURE, "20200101T000000000Z-abcdef"))
    assert not gone.ok and "no alert 20200101T000000000Z-abcdef of e3" in gone.detail, gone
    assert str(daemon.config.storage.dir) not in gone.detail


def test_a_reload_whose_watcher_thread_cannot_start_leaves_the_daemon_running_and_unhealthy(
    daemon, monkeypatch
) -> None:
    """No thread left (the unit's task limit) once the old watchers stopped: the reload ended
    the daemon with a traceback, unwatched until systemd restarted it. It runs on, says what
    happened, and fails ``healthy`` so that systemd's watchdog restarts it whole."""
    wait_until("first frame", lambda: daemon.running["e3"].watcher.snapshot.score is not None, 30)
    with no_threads_named("watch"):
        daemon.reload()
    assert not daemon.running["e3"].thread.is_alive()
    assert not daemon.healthy()
    monkeypatch.setattr(daemon, "_launch", lambda running: (_ for _ in ()).throw(OSError("x")))
    daemon.reload()  # whatever fails after the point of no return is said, not raised
    assert daemon.status()["reload_refused"].startswith("the reload stopped unexpectedly: OSError")


def test_a_command_started_but_not_finished_in_time_is_reported_under_way(
    daemon, monkeypatch
) -> None:
    """Begun by the watcher but slow (a printer API taking its time): it will still happen, and
    its sender is told so, not that it failed."""
    monkeypatch.setattr(daemon, "answer_within", lambda watcher: 1.0)
    daemon._stop(daemon.running)
    daemon.running = daemon._prepare(daemon._make_watchers(daemon.config, daemon.bundle))
    watcher = daemon.running["e3"].watcher
    release = threading.Event()
    carry_out = watcher._carry_out

    def slow(command: Command):
        release.wait(30)
        return carry_out(command)

    watcher._carry_out = slow
    drain = threading.Thread(
        target=lambda: (
            wait_until("queued", lambda: not watcher._commands.empty(), 10),
            watcher._drain_commands(),
        )
    )
    drain.start()
    answer = daemon.dispatch(Command("e3", Verb.DISABLE, source="mqtt"))
    release.set()
    drain.join(10)
    assert not answer.ok and answer.under_way and "still carrying out disable" in answer.detail
    assert not watcher.enabled  # it happened


def test_a_watcher_stuck_past_a_reload_is_not_doubled_by_its_successor(daemon, monkeypatch) -> None:
    """A camera or printer hanging past the reload's stop deadline: the new watcher of that
    printer waits for the old one's step to end (two watchers side by side could pause and
    alert twice), also across a second reload meanwhile, and then carries on with what that
    step left (its alert)."""
    old = daemon.running["e3"].watcher
    wait_until("first frame", lambda: old.snapshot.score is not None, 30)
    inside, release = threading.Event(), threading.Event()
    steps: list[str] = []

    def hung_step() -> None:
        inside.set()
        release.wait(30)
        old.last_alert = _alert("stuck-step-alert")  # what the step got to do
        steps.append("old step ended")

    monkeypatch.setattr(old, "step", hung_step)
    wait_until("the old step hung", inside.is_set, 10)
    daemon.RELOAD_STOP_S = 0.5
    daemon.reload()
    waiting = daemon.running["e3"].watcher
    daemon.reload()  # a second save while the first successor still waits: it must wait too
    new = daemon.running["e3"].watcher
    assert new is not old and new is not waiting
    # the successor that never watched lets go of its camera
    wait_until("the waiting successor closed", waiting.camera._closed.is_set, 5)
    new_step = new.step

    def counted_step() -> None:
        steps.append("new step")
        new_step()

    monkeypatch.setattr(new, "step", counted_step)
    threading.Event().wait(2.0)
    assert steps == [], "the new watcher stepped while the old one was still in its step"
    release.set()
    wait_until("the new watcher watching", lambda: "new step" in steps, 20)
    assert steps[0] == "old step ended"
    assert new.last_alert == _alert("stuck-step-alert")


class TwoPrinters:
    """A daemon in this process watching e3 and mk4, each on a looping folder camera, e3
    past its first frame; ``hang`` makes e3's next step hang."""

    def __init__(self, tmp_path: Path, bundle: Path, normal_frames, monkeypatch) -> None:
        frames = _frames(tmp_path / "rec", list(normal_frames[:8]) * 5)
        self.config = write_config(
            tmp_path / "c.yaml",
            model=str(bundle),
            storage={"dir": str(tmp_path / "state")},
            printers=[
                {"name": name, "camera": {"source": str(frames), "interval_s": 0.5}}
                for name in ("e3", "mk4")
            ],
        )
        self.both = self.config.read_text()
        self.d = d = Daemon(self.config)
        d.notifier = Notifier(d.config.mqtt, d.config.storage, [p.name for p in d.config.printers])
        d.running = d._start(d._make_watchers(d.config, d.bundle))
        self.old = d.running["e3"].watcher
        self.released = threading.Event()
        self.monkeypatch = monkeypatch
        wait_until("first frames", lambda: self.old.snapshot.score is not None, 30)

    def hang(self, then=None) -> None:
        """e3's next step hangs until ``released`` is set, then does ``then``."""
        inside = threading.Event()

        def hung_step() -> None:
            inside.set()
            self.released.wait(60)
            if then is not None:
                then()

        self.monkeypatch.setattr(self.old, "step", hung_step)
        wait_until("the step hung", inside.is_set, 10)

    def without_e3(self) -> None:
        config = yaml.safe_load(self.both)
        config["printers"] = [p for p in config["printers"] if p["name"] == "mk4"]
        self.config.write_text(yaml.safe_dump(config))


@pytest.fixture
def two(tmp_path, tiny_adaptive_bundle, normal_frames, monkeypatch):
    printers = TwoPrinters(tmp_path, tiny_adaptive_bundle, normal_frames, monkeypatch)
    yield printers
    printers.released.set()
    printers.d._stop(printers.d.running)


def test_a_reload_with_one_printer_hung_leaves_the_others_watched(two) -> None:
    """A reload waited for every old watcher's step, one deadline for all: one printer's API
    hanging left every printer unwatched for the whole 15 s. The hung one's successor waits
    for it; the others watch again at once."""
    d = two.d
    two.hang()
    reload = threading.Thread(target=d.reload)
    reload.start()
    threading.Event().wait(1.0)  # within the reload's wait for the hung step
    assert reload.is_alive() and d.healthy()  # /healthz answered 503 through each reload
    wait_until("the reload done", lambda: not reload.is_alive(), 10)
    other = d.running["mk4"].watcher
    wait_until("the other printer watched", lambda: other.snapshot.score is not None, 10)
    assert not two.released.is_set() and d.running["e3"].watcher is not two.old


def test_a_step_hung_past_a_reload_is_allowed_the_time_its_own_settings_give(two) -> None:
    """A pause retried against a hung OctoPrint (its timeout and retries allow minutes), then
    a reload that shortened them (or switched the API off): the step still hanging was timed
    against the new settings, /healthz failed and systemd killed the daemon mid-pause."""
    import dataclasses

    from watchdog.devices.printers import longest_action_s

    d, old = two.d, two.old
    patient = old.cfg.api.model_copy(
        update={"kind": "octoprint", "url": "http://127.0.0.1:9", "timeout_s": 60, "retries": 3}
    )
    old.cfg = old.cfg.model_copy(update={"api": patient})
    two.hang()
    reload = threading.Thread(target=d.reload)
    reload.start()
    wait_until("the successor waiting", lambda: d.running["e3"].watcher is not old, 10)
    new_api = d.running["e3"].watcher.cfg.api
    hung_for = 200.0
    assert longest_action_s(new_api) + 100 < hung_for < longest_action_s(patient)
    old.snapshot = dataclasses.replace(old.snapshot, heartbeat=time.monotonic() - hung_for)
    assert d.healthy()
    two.released.set()
    wait_until("the reload done", lambda: not reload.is_alive(), 20)


def test_a_printer_whose_successor_waits_is_shown_as_its_old_watcher_left_it(two) -> None:
    """A reload while a printer's step hangs (its API slow to take a pause): the page showed
    the printer idle, no job, no score, for as long as the step hung, from the successor that
    knows nothing yet. Shown as the old watcher left it until the successor takes over."""
    d, old = two.d, two.old
    two.hang()
    before = old.status()
    d.reload()
    assert d.running["e3"].watcher is not old
    shown = d.status()["printers"]["e3"]
    assert shown["score"] == before["score"] is not None
    assert shown["frames_this_print"] == before["frames_this_print"] > 0
    assert d.latest_jpeg("e3") == old.latest_jpeg is not None


def test_a_printer_taken_out_mid_step_says_its_unanswered_alert_once_the_step_ends(
    two, caplog
) -> None:
    """A printer taken out of the config while its pause was under way: its alert, raised when
    the step ended, was never said to stand unanswered (read before it was there), and a
    command queued to it was never answered."""
    from dataclasses import replace

    d, old = two.d, two.old

    def alerted() -> None:
        old.last_alert = _alert("mid-step-alert")
        old.state = replace(old.state, failure=True)

    two.hang(alerted)
    queued = old.submit(Command("e3", Verb.DISABLE, source="mqtt"))
    two.without_e3()
    d.reload()
    assert list(d.running) == ["mk4"]
    two.released.set()
    wait_until(
        "the alert said unanswered",
        lambda: "its alert mid-step-alert stands unanswered" in caplog.text,
        10,
    )
    answer = queued.result(10)
    assert not answer.ok and "no printer named 'e3'" in answer.detail


def test_a_printer_put_back_while_its_old_step_hangs_is_not_watched_twice(two, monkeypatch) -> None:
    """Taken out of the config and put back while its old watcher was still in its step:
    the new watcher stepped beside the old one (two pauses, two alerts could follow), and
    knew nothing of the alert that step ended with."""
    d, old = two.d, two.old
    steps: list[str] = []

    def alerted() -> None:
        old.last_alert = _alert("old-step-alert")
        steps.append("old step ended")

    two.hang(alerted)
    two.without_e3()
    d.reload()
    two.config.write_text(two.both)
    d.reload()
    new = d.running["e3"].watcher
    new_step = new.step
    monkeypatch.setattr(new, "step", lambda: (steps.append("new step"), new_step())[1])
    threading.Event().wait(2.0)
    assert steps == [], "the put-back watcher stepped while the old one was in its step"
    two.released.set()
    wait_until("the new watcher watching", lambda: "new step" in steps, 20)
    assert steps[0] == "old step ended"
    assert new.last_alert == _alert("old-step-alert")


def _stuck_in_its_step(daemon, alert: str):
    """The daemon's watchers stopped, and a watcher of e3 stuck in its step (a thread that
    ends when the returned event is set) that got to raise ``alert``: (it, its _Running,
    the event)."""
    from watchdog.daemon import _Running

    daemon._stop(daemon.running)
    stuck = daemon._make_watchers(daemon.config, daemon.bundle)["e3"]
    stuck.last_alert = _alert(alert)
    in_step = threading.Event()
    running = _Running(stuck, threading.Thread(target=in_step.wait, args=(30,)), threading.Event())
    running.thread.start()
    return stuck, running, in_step


def test_a_predecessor_ending_after_its_successor_stopped_waiting_hands_over_at_the_reload(
    daemon,
) -> None:
    """A watcher stuck in its step past a reload, its successor waiting for it; a second
    reload stops the successor while the stuck step still runs, and then the step ends before
    the reload looks again. The successor that never watched lets go of its camera, and the
    new watcher carries on from the stuck one: its alert, and the command queued to it."""
    from watchdog.daemon import _follow, _Running

    stuck, stuck_run, in_step = _stuck_in_its_step(daemon, "stuck-step-alert")
    queued = stuck.submit(Command("e3", Verb.DISABLE, source="mqtt"))
    waiting = daemon._make_watchers(daemon.config, daemon.bundle)["e3"]
    stopped = threading.Event()
    stopped.set()  # the second reload stops it while the stuck step still runs
    follower = threading.Thread(target=_follow, args=(stuck_run, waiting, stopped))
    follower.start()
    follower.join(5)
    assert waiting.camera._closed.is_set()  # it never watches: its camera is let go of
    in_step.set()  # then the stuck step ends, before the reload looks at the old watchers
    stuck_run.thread.join(5)
    daemon.running = {"e3": _Running(waiting, follower, stopped, stuck_run)}
    daemon.reload()
    new = daemon.running["e3"].watcher
    assert new.last_alert == _alert("stuck-step-alert")
    result = queued.result(20)
    assert result.ok and "off" in result.detail
    assert not new.snapshot.enabled


def test_a_reload_after_a_slow_handover_keeps_what_the_successor_knows(daemon) -> None:
    """A successor that waited for a stuck watcher, took over and watched: at the next reload
    the new watcher carries on from it, not from the stuck one it once waited for (whose
    alert and state are old by then)."""
    from watchdog.daemon import _follow, _Running

    _, stuck_run, in_step = _stuck_in_its_step(daemon, "old-alert")
    successor = daemon._make_watchers(daemon.config, daemon.bundle)["e3"]
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(stuck_run, successor, stop))
    follower.start()
    in_step.set()  # the stuck step ends: the successor takes over and watches
    wait_until("the successor watching", lambda: successor.snapshot.score is not None, 30)
    successor.last_alert = _alert("newer-alert")  # what it got to know since
    daemon.running = {"e3": _Running(successor, follower, stop, stuck_run)}
    daemon.reload()
    assert daemon.running["e3"].watcher.last_alert == _alert("newer-alert")


def test_a_reload_frees_the_old_watchers_at_once(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """A printer API that does not answer leaves each failed request's traceback tied to the
    watcher's frames in a reference cycle: without a full collection at the reload, every
    old watcher (its detector and buffers) stayed until Python ran one, rarely on a
    long-running daemon."""
    frames = _frames(tmp_path / "rec", list(normal_frames[:8]))
    config = write_config(
        tmp_path / "c.yaml",
        model=str(tiny_adaptive_bundle),
        storage={"dir": str(tmp_path / "state")},
        printers=[
            {
                "name": "e3",
                "camera": {"source": str(frames), "interval_s": 0.2},
                "api": {"kind": "moonraker", "url": f"http://127.0.0.1:{free_port()}"},
            }
        ],
    )
    d = Daemon(config)
    d.notifier = Notifier(d.config.mqtt, d.config.storage, ["e3"])
    d.running = d._start(d._make_watchers(d.config, d.bundle))
    gc.disable()  # as when Python's own full collection does not come for a long time
    try:
        olds = []
        for _ in range(3):
            watcher = d.running["e3"].watcher
            wait_until("the printer asked", lambda w=watcher: w.snapshot.printer_detail, 30)
            olds.append(weakref.ref(watcher))
            del watcher
            d.reload()
        assert [ref() is None for ref in olds] == [True, True, True]
    finally:
        gc.enable()
        d._stop(d.running)


def test_reloads_of_the_running_daemon_leave_no_old_watcher_behind(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """Every settings save on the page reloads the watchers. The daemon's main loop kept the
    first ones, and each retired watcher points at its successor: every watcher a reload
    retired stayed, with its camera (measured: 97 MB, then 143 MB after 50 reloads, rising in
    a straight line)."""
    frames = _frames(tmp_path / "rec", list(normal_frames[:8]))
    config = _served(tmp_path, tiny_adaptive_bundle, frames, interval_s=0.2)
    d = Daemon(config)
    olds: list[weakref.ref] = []
    failed: list[BaseException] = []

    def drive() -> None:  # the main thread runs the daemon: its signal handlers need it
        try:
            for _ in range(3):
                wait_until("watching", lambda: "e3" in d.running, 30)
                watcher = d.running["e3"].watcher
                olds.append(weakref.ref(watcher))
                d.reload_event.set()  # as SIGHUP and a settings save do
                wait_until("reloaded", lambda w=watcher: d.running["e3"].watcher is not w, 30)
                del watcher
            gc.collect()
            gone.extend(ref() is None for ref in olds)  # while the daemon still runs
        except BaseException as exc:  # noqa: BLE001 - said after the daemon stopped
            failed.append(exc)
        finally:
            d.stop_event.set()

    gone: list[bool] = []
    driver = threading.Thread(target=drive)
    driver.start()
    assert d.run() == 0
    driver.join(30)
    assert not failed, failed
    assert gone == [True, True, True]


def test_a_reload_swaps_whole_generations_while_readers_read(daemon) -> None:
    """Readers (HTTP, MQTT) never see a half-built set of watchers during a reload."""
    seen: list[set[str]] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(set(daemon.status()["printers"]))

    reader = threading.Thread(target=read)
    reader.start()
    before = daemon.running["e3"].watcher
    daemon.reload()
    stop.set()
    reader.join(5)
    assert daemon.running["e3"].watcher is not before
    assert all(s == {"e3"} for s in seen) and len(seen) > 10


def test_log_level_in_the_config_is_honoured(tmp_path, tiny_bundle) -> None:
    """A camera nobody answers at makes the daemon log a WARNING; with ``log_level: WARNING``
    that is all it says, with INFO it also says what it is doing."""
    from tests.daemon_helpers import free_port

    def run(level: str, until: str) -> str:
        config = write_config(
            tmp_path / f"{level}.yaml",
            model=str(tiny_bundle),
            log_level=level,
            storage={"dir": str(tmp_path / level)},
            printers=[
                {
                    "name": "e3",
                    "camera": {
                        "source": f"http://127.0.0.1:{free_port()}/snap.jpg",
                        "interval_s": 0.2,
                        "timeout_s": 1,
                    },
                }
            ],
        )
        daemon = DaemonProcess(config, tmp_path / f"{level}.log")
        try:
            wait_until(until, lambda: until in daemon.log, 120, lambda: daemon.log)
        finally:
            daemon.stop()
        return daemon.log

    # the camera's warning, not the first WARNING: the model's come before any INFO line
    assert " INFO watchdog" in run("INFO", "camera e3 offline")
    quiet = run("WARNING", "camera e3 offline")
    assert " INFO watchdog" not in quiet and "watching 1 printer" not in quiet


def test_the_status_server_names_every_printer_from_its_first_answer(
    tmp_path, tiny_adaptive_bundle, normal_frames, monkeypatch
) -> None:
    """A dashboard or a check polling /status while the daemon starts sees every configured
    printer (not yet healthy), never an empty list; and no watcher runs before the server
    could bind its address."""
    frames = _frames(tmp_path / "rec", list(normal_frames[:4]))
    config = _served(tmp_path, tiny_adaptive_bundle, frames, interval_s=0.5)
    d = Daemon(config)
    seen: dict[str, object] = {}
    real_start = http.StatusServer.start

    def start(server: http.StatusServer) -> None:
        seen["printers"] = set(d.status()["printers"])
        seen["healthy"] = d.healthy()
        seen["watching"] = [r.thread.is_alive() for r in d.running.values()]
        real_start(server)
        d.stop_event.set()

    monkeypatch.setattr(http.StatusServer, "start", start)
    # run() off the main thread, where signals cannot be handled
    monkeypatch.setattr(signal, "signal", lambda *_: None)
    monkeypatch.setattr(signal, "set_wakeup_fd", lambda *_, **__: -1)
    runner = threading.Thread(target=d.run)
    runner.start()
    runner.join(60)
    assert not runner.is_alive()
    assert seen == {"printers": {"e3"}, "healthy": False, "watching": [False]}


def test_hung_watchers_are_given_one_stop_deadline_in_all(monkeypatch, caplog) -> None:
    """systemd kills the daemon 20 s after asking it to stop; three hung cameras waited for
    15 s each (45 s) were cut off mid-shutdown, before the MQTT goodbye and the final log.
    Threads that never stop are stood in for by ones whose join only lets time pass."""
    import types

    from watchdog import daemon as daemon_module

    clock = [100.0]
    waited: list[float] = []

    class Hung:
        ident = 1

        def join(self, timeout: float) -> None:
            waited.append(timeout)
            clock[0] += timeout

        def is_alive(self) -> bool:
            return True

    monkeypatch.setattr(daemon_module.time, "monotonic", lambda: clock[0])
    running = {
        name: daemon_module._Running(
            types.SimpleNamespace(name=name),  # type: ignore[arg-type]
            Hung(),  # type: ignore[arg-type]
            threading.Event(),
        )
        for name in ("a", "b", "c")
    }
    Daemon._stop(running, timeout=15.0)
    assert sum(waited) == pytest.approx(15.0) and clock[0] == pytest.approx(115.0)
    assert all(r.stop.is_set() for r in running.values())
    assert caplog.text.count("did not stop within 15 s") == 3


def test_a_settings_save_is_told_it_applied_while_the_page_waits_for_a_frame(daemon) -> None:
    """The editor asked a slow camera for a frame (its one waiting slot taken): a save shared
    that slot, answered "it applies in a few seconds" at once, and a reload that then refused
    it was shown only in the page's header."""
    assert daemon._waiting_page.take("e3") is None  # the frame asked of a slow camera, under way

    def main_loop() -> None:  # the daemon's loop: a save's reload runs there
        if daemon.reload_event.wait(30):
            daemon.reload_event.clear()
            daemon.reload()

    loop = threading.Thread(target=main_loop)
    loop.start()
    try:
        saved, applied = daemon.save_settings("e3", {"consecutive": 4})
    finally:
        daemon._waiting_page.give("e3")
        loop.join(60)
    assert saved == {"consecutive": 4} and applied.done is True, applied
    assert daemon.running["e3"].watcher.cfg.detection.consecutive == 4


def test_the_daemons_waits_always_leave_the_web_server_a_thread() -> None:
    """Commands waiting on printers, the editor's frame and a save each hold a web server
    thread while they wait: at least one is left for /healthz and the page's polls."""
    from watchdog.comms.http import WORKER_THREADS
    from watchdog.daemon import COMMANDS_WAITING

    assert COMMANDS_WAITING + 2 < WORKER_THREADS


def test_a_stop_during_a_reload_starts_no_new_watcher_and_tells_no_camera_offline(
    tmp_path, tiny_adaptive_bundle, daemon
) -> None:
    """SIGTERM a moment after SIGHUP: the new watchers were started after the stop, their
    first camera read was cut short by it, and each printer's last state on the broker and
    in the log became "camera offline" for cameras that were fine."""
    daemon.stop_event.set()  # SIGTERM while the reload prepares the new watchers
    assert daemon._reload() is None
    [new] = daemon.running.values()
    assert new.thread.ident is None  # never started
    daemon._stop(daemon.running)

    # a watcher stepping as the stop comes: its cut-short read is no camera outage
    stop = threading.Event()
    cfg = PrinterConfig(
        name="e3", camera=CameraConfig(source=f"http://127.0.0.1:{free_port()}/snapshot.jpg")
    )
    alerts = Notifier(MqttConfig(), StorageConfig(dir=tmp_path / "other"), ["e3"])
    watcher = build_watcher(cfg, Bundle.load(tiny_adaptive_bundle), alerts, stop=stop)
    stop.set()
    record = watcher.step()
    watcher.close()
    assert "camera_offline" not in [e.event for e in record.events], record
    assert watcher.camera_online is None and record.state.value != "camera_offline"


def test_a_printer_renamed_with_its_alert_unanswered_is_said_in_the_log(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, caplog
) -> None:
    """A printer renamed in the config while its failure alert stood: its Home Assistant
    sensor and buttons went with the old name, the new one came up watching, and nothing
    said the failure was never answered."""
    frames = _frames(tmp_path / "rec", list(normal_frames[:8]) + list(anomalous_frames) * 8)
    d = _in_process(tmp_path, tiny_adaptive_bundle, frames, 0.2)
    config = d.config_path
    try:
        wait_until("an alert", lambda: d.running["e3"].watcher.snapshot.last_alert is not None, 60)
        incident = d.running["e3"].watcher.snapshot.last_alert.incident
        renamed = yaml.safe_load(config.read_text())
        renamed["printers"][0]["name"] = "voron"
        write_config(config, **renamed)
        assert d._reload() is None
        said = [
            r.getMessage() for r in caplog.records if "no longer in the config" in r.getMessage()
        ]
        assert said == [
            f"e3 is no longer in the config, and its alert {incident} stands unanswered (pause "
            "skipped): look at the print at the printer itself; a printer renamed is a "
            "new printer to the watchdog"
        ], said
    finally:
        d._stop(d.running)


def test_a_reload_that_leaves_a_printer_without_notifications_until_the_restart_says_which(
    tmp_path, daemon, caplog
) -> None:
    """A printer renamed by a reload, its new name written in the notify target's list: the
    running targets (kept until the restart) name the old one, so its alerts reached no
    phone, and the log said only that notify changes need a restart."""
    config = yaml.safe_load(daemon.config_path.read_text())
    config["printers"][0]["name"] = "voron"
    config["notify"] = [{"url": "json://127.0.0.1:9/hook", "printers": ["voron"]}]
    write_config(daemon.config_path, **config)
    assert set(daemon.histories) == {"e3"}
    assert daemon._reload() is None
    assert "no notification reaches the phones for voron" in caplog.text, caplog.text
    # the old name's timeline and frames are not kept for good (one set per rename)
    assert set(daemon.histories) == {"voron"}


@pytest.mark.parametrize(("discovery", "named"), [(True, "Home Assistant"), (False, "MQTT")])
def test_the_page_names_who_sent_a_command_over_mqtt(
    tmp_path, tiny_adaptive_bundle, discovery, named
) -> None:
    """A command over MQTT was shown on the page as Home Assistant's even where discovery is
    off and the owner's own script sent it: the page names MQTT then."""
    config = write_config(
        tmp_path / "c.yaml",
        model=str(tiny_adaptive_bundle),
        storage={"dir": str(tmp_path / "state")},
        mqtt={"host": "127.0.0.1", "homeassistant": {"enabled": discovery}},
        printers=[{"name": "e3", "camera": {"source": str(tmp_path)}}],
    )
    d = Daemon(config)
    d.last_commands.record(Command("e3", Verb.PAUSE, source="mqtt"), CommandResult(True, "paused"))
    d.last_commands.record(Command("e4", Verb.PAUSE, source="web"), CommandResult(True, "paused"))
    assert d.last_commands.of("e3")["source"] == named
    assert d.last_commands.of("e4")["source"] == "the page"


@pytest.mark.parametrize(
    ("zone", "incident"),
    [
        ("Europe/Berlin", "99991231T235959999Z-abcdef"),
        ("America/New_York", "00010101T000000000Z-abcdef"),
    ],
)
def test_a_verdict_on_an_alert_dated_past_the_calendars_end_is_answered_no_alert(
    daemon, monkeypatch, zone: str, incident: str
) -> None:
    """An MQTT verdict names its alert by its time: an id of the year 9999 (or 1) is a day
    off the calendar in local time, and the answer was "failed: see the watchdog's log", a
    traceback there, not that there is no such alert."""
    import time as clock

    monkeypatch.setenv("TZ", zone)
    clock.tzset()
    try:
        answer = daemon.dispatch(Command("e3", Verb.CONFIRM_FAILURE, incident, source="mqtt"))
    finally:
        monkeypatch.undo()
        clock.tzset()
    assert not answer.ok and f"no alert {incident} of e3" in answer.detail, answer


def test_a_printer_taken_out_at_a_reload_leaves_no_series_behind(two) -> None:
    """A printer removed from the config kept its last values on /metrics for good (its
    ``camera_online 1`` said a camera was live that nobody watched); its old watcher's
    observations while it ends do not bring them back. The other printer's stay."""
    d = two.d
    d.metrics.observe_action("e3", "pause", "done")
    d.metrics.error("e3", "api")
    assert 'printer="e3"' in d.metrics.text().decode()
    two.without_e3()
    d.reload()
    two.old.metrics.observe_score("e3", 0.5, 0.2, True, 0.01)  # its last step, ending late
    text = d.metrics.text().decode()
    assert 'printer="e3"' not in text
    assert 'printer_watchdog_camera_online{printer="mk4"} 1.0' in text
    two.config.write_text(two.both)  # put back: its series start again
    d.reload()
    assert 'printer_watchdog_scored_frames_total{printer="e3"}' in d.metrics.text().decode()


def test_a_not_a_failure_pressed_as_the_daemon_stops_is_said_saved(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """A "Not a failure" that reached a stopping daemon: its verdict is saved, its frame kept
    for retraining, only the print's look is not learnt yet. It was answered "not done ...
    send it again": the owner pressed again for what was done, and got the same answer."""
    from watchdog.incidents import IncidentStore, list_incidents

    frames = _frames(tmp_path / "rec", list(normal_frames[:8]) * 5)
    d = _in_process(tmp_path, tiny_adaptive_bundle, frames, 0.5)
    watcher = d.running["e3"].watcher
    jpeg = cv2.imencode(".jpg", normal_frames[0])[1].tobytes()
    alert = {"printer": "e3", "message": "m", "action": "notify"}
    incident = IncidentStore(tmp_path / "state").save("e3", alert, jpeg, jpeg, pending=False)
    d.stop_event.set()  # as the daemon's stop does, in this order
    d._stop(d.running)
    watcher.refuse_commands("the watchdog stopped before carrying it out")
    said = d.dispatch(Command("e3", Verb.NOT_A_FAILURE, incident.id, source="phone"))
    [saved] = list_incidents(tmp_path / "state", ["e3"], limit=1)
    assert saved.alert.get("verdict") == "not_failure"
    assert said.ok and "not done" not in said.detail and "at the start" in said.detail, said
