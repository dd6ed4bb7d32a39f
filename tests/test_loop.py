"""The watcher in-process with a real bundle: per-print adaptation as the daemon runs it."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests import synth
from tests.daemon_helpers import run_cli, stepped_wall_clock, write_config
from tests.plugins.models import TINY_FRAMES, TINY_SEED
from tests.plugins.printers import api_config, wait_until
from watchdog import watcher as watcher_module
from watchdog.comms.actions import latest_incident
from watchdog.comms.notifier import Notifier
from watchdog.config import (
    ApiConfig,
    CameraConfig,
    MqttConfig,
    PrinterConfig,
    StorageConfig,
)
from watchdog.control import Command, CommandResult, Verb
from watchdog.detection.bundle import Bundle
from watchdog.detection.decide import Label
from watchdog.devices.printers import NoPrinter, PrinterClient, SimulatedPrinter, make_printer
from watchdog.incidents import (
    Incident,
    already_answered,
    closing_answer,
    list_incidents,
    new_incident_id,
    raised_at,
    record_answer,
    record_verdict,
    saved_alert,
)
from watchdog.last_commands import LastCommands
from watchdog.printing import Action, ActionResult, Outcome, PrinterState, PrinterStatus
from watchdog.watcher import LOOK_FRESH_S, Watcher, build_watcher

CALIBRATION = 4  # tiny_adaptive_bundle's --adapt-frames


def held(frame: np.ndarray, n: int) -> list[np.ndarray]:
    """One view held for ``n`` frames as a live camera shows a print going on: never twice the
    same picture (its sensor noise), and its nozzle moving back and forth over the part, which
    makes the view a print, not a still start (a printer heating) learnt again until it moves."""
    rng = np.random.default_rng(n)
    out = []
    for i in range(n):
        x = 76 + synth.carriage_x(i)
        view = frame.copy()
        cv2.rectangle(view, (x, 48), (x + 8, 76), (120, 120, 130), -1)
        out.append(np.clip(view + rng.normal(0.0, 2.0, frame.shape), 0, 255).astype(np.uint8))
    return out


def _folder(path: Path, frames) -> Path:
    path.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(path / f"f_{i}.jpg"), f)
    return path


def test_bundle_carries_the_adaptation(tiny_adaptive_bundle) -> None:
    meta = Bundle.load(tiny_adaptive_bundle).meta
    assert meta.adaptation.frames == CALIBRATION and meta.adaptation.threshold > 0
    # the threshold comes from prints scored by models that never saw them (trainer.crossfit)
    rule = meta.extra["adaptation_rule"]
    assert rule.startswith("cross-fitted: 3 prints"), meta.extra
    # ... or the fitted model's own last frames, when they need a higher one
    crossed, own = (float(v) for v in re.findall(r"\(([0-9.e+-]+)\)", rule)[:2])
    assert meta.adaptation.threshold == pytest.approx(max(crossed, own), rel=1e-5)


def test_replay_calibrates_on_the_first_frames_then_pauses_on_the_failure(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    frames = _folder(tmp_path / "rec", list(normal_frames[:7]) + list(anomalous_frames[:4]))
    config = write_config(
        tmp_path / "c.yaml", model=str(tiny_adaptive_bundle), printers=[{"name": "e3"}]
    )
    r = run_cli("replay", "--config", str(config), "--frames", str(frames))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if '"frame"' in x and '"event"' not in x]
    assert len(lines) == 11
    assert not any(x["anomalous"] for x in lines[:CALIBRATION])  # calibration frames never count
    assert [x["frame"] for x in lines if x["action"]] == ["f_9.jpg"]


def test_replaying_a_folder_of_several_prints_judges_each_against_its_own_start(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """``collect`` keeps a printer's prints in one folder; replayed, each is a new print that
    learns its own start (the second was judged against the first's, and paused)."""
    folder = tmp_path / "collected"
    folder.mkdir()
    second = [synth.normal_frame(3, i, TINY_FRAMES, TINY_SEED) for i in range(8)]
    for name, frames in (("e3-first", normal_frames[:8]), ("e3-second", second)):
        for i, f in enumerate(frames):
            cv2.imwrite(str(folder / f"{name}_{i}.jpg"), f)
    config = write_config(
        tmp_path / "c.yaml", model=str(tiny_adaptive_bundle), printers=[{"name": "e3"}]
    )
    r = run_cli("replay", "--config", str(config), "--frames", str(folder))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if '"frame"' in x and '"event"' not in x]
    learning = [x["frame"] for x in lines if "calibration" in x]
    starts = [f"e3-{p}_{i}.jpg" for p in ("first", "second") for i in range(CALIBRATION)]
    assert learning == starts, learning
    assert not any(x["action"] for x in lines)


def test_a_new_print_gets_a_new_baseline(tmp_path, tiny_adaptive_bundle, normal_frames) -> None:
    # The first print calibrates on normal frames; the second is another part, framed a little
    # differently: the watcher must learn its look afresh, not judge it against print one.
    # (A second print that starts with a failure in view is the start guard's case:
    # tests/test_first_minutes.py.)
    second = [synth.normal_frame(3, i, TINY_FRAMES, TINY_SEED) for i in range(6)]
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + second)
    bundle = Bundle.load(tiny_adaptive_bundle)
    printer = SimulatedPrinter("first.gcode")
    notifier = Notifier(MqttConfig(), StorageConfig(dir=tmp_path / "state"), ["e3"])
    cfg = PrinterConfig(name="e3", camera=CameraConfig(source=str(frames), interval_s=0))
    clock = iter(range(1000))
    watcher = build_watcher(
        cfg, bundle, notifier, printer=printer, clock=lambda: float(next(clock))
    )
    records = [watcher.step() for _ in range(6)]
    assert [r.anomalous for r in records[:CALIBRATION]] == [False] * CALIBRATION
    assert not watcher.status()["calibrating"]

    printer.cancel()
    watcher.step()  # sees the printer idle
    printer.start_print("second.gcode")
    records = [watcher.step() for _ in range(6)]
    assert watcher.status()["job"] == "second.gcode"
    assert [r.anomalous for r in records[:CALIBRATION]] == [False] * CALIBRATION
    assert not any(r.action for r in records)


def _watcher(
    tmp_path: Path,
    bundle_dir: Path,
    frames: Path,
    printer: PrinterClient,
    action: str = "pause",
    notifier_class: type[Notifier] = Notifier,
    mqtt: MqttConfig | None = None,
    keep_incidents: int = 100,
    confirm_s: float = 90.0,
) -> Watcher:
    """A watcher on a folder camera (or a camera's URL) whose clock advances 10 s per step
    (the default interval); stepped by the test, at once."""
    storage = StorageConfig(dir=tmp_path / "state", keep_incidents=keep_incidents)
    notifier = notifier_class(mqtt or MqttConfig(), storage, ["e3"])
    live = "://" in str(frames)  # a live camera is never read without a pause
    cfg = PrinterConfig(
        name="e3",
        camera=CameraConfig(source=str(frames), interval_s=0.01 if live else 0),
        action=action,
        api=ApiConfig(confirm_s=confirm_s),
    )
    clock = iter(range(0, 100_000, 10))
    return build_watcher(
        cfg, Bundle.load(bundle_dir), notifier, printer=printer, clock=lambda: float(next(clock))
    )


def _alerted(
    tmp_path: Path, bundle_dir: Path, normal_frames, anomalous_frames, printer: PrinterClient
) -> tuple[Watcher, Path]:
    """A watcher stepped until a lasting failure raised its alert: it, and its frames."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 10))
    watcher = _watcher(tmp_path, bundle_dir, frames, printer)
    while watcher.status()["last_alert"] is None:
        watcher.step()
    return watcher, frames


def _paused(
    tmp_path: Path, bundle_dir: Path, normal_frames, anomalous_frames, printer: PrinterClient
) -> tuple[Watcher, Path, str]:
    """A watcher stepped until a lasting failure paused ``printer``: it, its frames, the alert."""
    watcher, frames = _alerted(tmp_path, bundle_dir, normal_frames, anomalous_frames, printer)
    while printer.status().state != "paused":
        watcher.step()
    return watcher, frames, watcher.status()["last_alert"]["incident"]


def _told(
    tmp_path: Path, bundle_dir: Path, normal_frames, anomalous_frames, printer: PrinterClient
) -> tuple[Watcher, Path, str]:
    """A notify-only watcher stepped until a lasting failure was told: it, its frames, the
    alert."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 10))
    watcher = _watcher(tmp_path, bundle_dir, frames, printer, "notify")
    while watcher.status()["last_alert"] is None:
        watcher.step()
    return watcher, frames, watcher.status()["last_alert"]["incident"]


def test_resuming_after_a_pause_relearns_the_print_so_an_accepted_change_does_not_pause_it_again(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Something changes for good (a tool left on the bed, a light switched on): the watcher
    pauses; the user looks, resumes, and so accepts it. The frames after the resume become the
    print's baseline, so the same view does not pause the print again after the cooldown
    (what owners of such tools complain of: "it pauses again right after I resume")."""
    lasting = held(anomalous_frames[0], 30)
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + lasting)
    printer = SimulatedPrinter("benchy.gcode")
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    records = [watcher.step() for _ in range(10)]
    assert [r.action for r in records].count("pause") == 1 and printer.status().state == "paused"

    printer.resume()  # the user accepts what changed
    records = [watcher.step() for _ in range(25)]  # 250 s: well past the 90 s cooldown
    assert not any(r.action for r in records), [(r.score, r.state) for r in records]
    assert printer.actions == ["pause", "resume"]
    assert watcher.status()["state"] == "watching" and not watcher.status()["calibrating"]


def _tool_on_bed(frame: np.ndarray) -> np.ndarray:
    """A lasting change the owner accepts: something white left on the bed."""
    out = frame.copy()
    cv2.rectangle(out, (20, 66), (60, 88), (250, 250, 250), -1)
    return out


def _spaghetti_over(view: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """``view`` with the spaghetti of an anomalous synthetic frame drawn over it."""
    scene = synth.normal_frame(0, 10, 20, TINY_SEED)  # what synth.anomalous_frame draws on
    strands = np.abs(failed.astype(np.int16) - scene).max(axis=2) > 40
    return np.where(strands[..., None], failed, view).astype(np.uint8)


def test_after_the_relearning_a_new_failure_still_pauses(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The re-learnt baseline is the accepted view; what changes after it is judged again:
    a tool left on the bed pauses, the owner resumes (accepting it), and spaghetti that
    appears after that pauses again."""
    tool = _tool_on_bed(normal_frames[4])
    failing = [_spaghetti_over(tool, a) for a in anomalous_frames[1:6]]
    # the print goes on with the tool on its bed: its carriage moves, its part stays
    printing = [
        _tool_on_bed(synth.normal_frame(0, 8, TINY_FRAMES, TINY_SEED, carriage_step=i))
        for i in range(16)
    ]
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + printing + failing * 2)
    printer = SimulatedPrinter("benchy.gcode")
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    records = [watcher.step() for _ in range(10)]
    assert printer.status().state == "paused"
    printer.resume()
    records = [watcher.step() for _ in range(22)]
    assert printer.actions.count("pause") == 2, [
        (r.frame, r.score, r.anomalous, r.state) for r in records
    ]
    assert [r.frame for r in records if r.action][0] in {f"f_{i}.jpg" for i in range(22, 32)}


def test_marking_the_alert_not_a_failure_relearns_the_print_in_notify_mode(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """With `action: notify` the printer never pauses, so nobody resumes: the feedback
    "not_failure" on the alert is how the user accepts a lasting change."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 30))
    printer = SimulatedPrinter("benchy.gcode")
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer, "notify")
    records = [watcher.step() for _ in range(10)]
    assert [r.action for r in records].count("notify") == 1
    incident = watcher.status()["last_alert"]["incident"]
    other = watcher.submit(
        Command("e3", Verb.NOT_A_FAILURE, "20260101T000000000Z-other")
    )  # not this print's alert
    accepted = watcher.submit(Command("e3", Verb.NOT_A_FAILURE, incident))
    records = [watcher.step() for _ in range(25)]
    assert "nothing re-learnt" in other.result(0).detail
    assert "learning the print's look again" in accepted.result(0).detail
    assert not any(r.action for r in records), [(r.score, r.state) for r in records]
    assert printer.actions == []
    # pressed again later (a second phone, a late tap): the look learnt then is kept, not
    # learnt afresh mid-print, where whatever went wrong since would be taken in as normal
    assert not watcher.detector.calibrating
    again = watcher.submit(Command("e3", Verb.NOT_A_FAILURE, incident))
    watcher.step()
    assert "already marked not a failure" in again.result(0).detail
    assert not watcher.detector.calibrating


def _feedback_on_the_command_line(tmp_path: Path, incident: str, verdict: str) -> str:
    """``python -m watchdog feedback`` run beside the watcher, on its storage folder."""
    config = write_config(
        tmp_path / "feedback.yaml",
        storage={"dir": str(tmp_path / "state")},
        printers=[{"name": "e3"}],
    )
    r = run_cli(
        "feedback", "--config", str(config), "--printer", "e3", "--incident", incident,
        "--verdict", verdict,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_not_a_failure_said_on_the_command_line_relearns_the_print_in_notify_mode(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, caplog
) -> None:
    """The feedback command beside the running watchdog records its verdict in the alert's
    file only: the print kept being judged against the look that raised the alert, and was
    told again after each cooldown, as if nobody had answered."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 30))
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, frames, SimulatedPrinter("benchy.gcode"), "notify"
    )
    records = [watcher.step() for _ in range(10)]
    assert [r.action for r in records].count("notify") == 1
    incident = watcher.status()["last_alert"]["incident"]
    assert watcher.status()["failure"]
    _feedback_on_the_command_line(tmp_path, incident, "not_failure")
    with caplog.at_level(logging.INFO, logger="watchdog.watcher"):
        records = [watcher.step() for _ in range(25)]
    assert not watcher.status()["failure"]
    assert not any(r.action for r in records), [(r.score, r.state) for r in records]
    said = [r.getMessage() for r in caplog.records if "on the command line" in r.getMessage()]
    assert said == [
        f"e3: incident {incident} marked not a failure on the command line: "
        "learning the print's look again"
    ], said
    watcher.camera.close()


def test_a_failure_confirmed_on_the_command_line_answers_its_alert(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, mosquitto, unique_prefix
) -> None:
    """Confirmed beside the running watchdog, the alert is answered as from the page: Home
    Assistant's problem sensor goes off (the start it held stays unlearnt: a failure), and
    the page's and Home Assistant's Last command say so."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 12))
    last = LastCommands()

    class _Shown(Notifier):  # as the daemon makes it: answers kept for the page
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, answered=last.keep, **kwargs)

    watcher = _watcher(
        tmp_path,
        tiny_adaptive_bundle,
        frames,
        SimulatedPrinter("benchy.gcode"),
        "notify",
        notifier_class=_Shown,
        mqtt=MqttConfig(**mosquitto.mqtt_settings(topic_prefix=unique_prefix)),
    )
    while watcher.status()["last_alert"] is None:
        watcher.step()
    incident = watcher.status()["last_alert"]["incident"]
    watcher.step()
    assert watcher.status()["failure"] and watcher.detector.start_held
    _feedback_on_the_command_line(tmp_path, incident, "failure")
    watcher.step()
    assert not watcher.status()["failure"] and watcher.detector.start_held
    shown = last.of("e3")
    assert shown is not None and shown["source"] == "the command line", shown
    assert shown["command"] == "failure" and shown["ok"], shown
    with mosquitto.subscriber(f"{unique_prefix}/e3/answer") as sub:
        watcher.alerts.start()  # connected: its retained values go to the broker
        try:
            answer = sub.wait_for(f"{unique_prefix}/e3/answer", timeout=30).json()
        finally:
            watcher.alerts.stop()
    assert answer["command"] == "failure" and answer["incident"] == incident, answer
    # a misclick mended on the command line: the print's look is learnt, as from the page
    _feedback_on_the_command_line(tmp_path, incident, "not_failure")
    watcher.step()
    assert not watcher.detector.start_held
    watcher.camera.close()


def _told_at_its_start(
    tmp_path: Path, bundle: Path, anomalous_frames
) -> tuple[Watcher, Path, SimulatedPrinter, str]:
    """A print failing from its first frame, seen from its start, told (``action: notify``)
    by the start guard: the watcher, its frames, its printer and the alert."""
    frames = _folder(tmp_path / "rec", held(anomalous_frames[0], 60))
    printer = _PrintingFor(20.0, step_s=10.0)
    watcher = _watcher(tmp_path, bundle, frames, printer, "notify")
    while watcher.status()["last_alert"] is None:
        watcher.step()
    return watcher, frames, printer, watcher.status()["last_alert"]["incident"]


def test_a_failure_confirmed_during_its_start_stays_unlearnt_after_a_restart(
    tmp_path, tiny_guarded_bundle, anomalous_frames
) -> None:
    """Restarted during a start confirmed a failure (an update, a crash), the watchdog
    learnt that start as the print's look: the failure the owner confirmed became normal.
    A verdict the command line gave before the restart is not carried out again."""
    watcher, frames, printer, incident = _told_at_its_start(
        tmp_path, tiny_guarded_bundle, anomalous_frames
    )
    _feedback_on_the_command_line(tmp_path, incident, "failure")
    watcher.step()
    watcher.close()
    restarted = _watcher(tmp_path, tiny_guarded_bundle, frames, printer, "notify")
    restarted.step()
    status = restarted.status()
    assert not status["failure"] and status["last_alert"]["incident"] == incident, status
    assert restarted.detector.start_held
    records = [restarted.step() for _ in range(40)]
    assert restarted.detector.calibrating  # nothing of the failure learnt
    assert any(r.action == "notify" for r in records), [(r.score, r.state) for r in records]
    restarted.close()


def test_without_feedback_a_lasting_change_alerts_again_after_the_cooldown_in_notify_mode(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The counterpart: unanswered, a lasting change is still reported after each cooldown."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 30))
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, frames, SimulatedPrinter("benchy.gcode"), "notify"
    )
    records = [watcher.step() for _ in range(35)]
    assert [r.action for r in records].count("notify") >= 2


def _daemon_of_one_watcher(tmp_path: Path, bundle: Path, frames: Path, action: str):
    """The daemon in-process with one watcher, stepped by hand (its thread does nothing)."""
    import threading

    from tests.daemon_helpers import write_config
    from watchdog.daemon import Daemon, _Running

    config = write_config(
        tmp_path / "c.yaml",
        model=str(bundle),
        storage={"dir": str(tmp_path / "state")},
        printers=[
            {"name": "e3", "camera": {"source": str(frames), "interval_s": 0}, "action": action}
        ],
    )
    daemon = Daemon(config)
    daemon.notifier = Notifier(daemon.config.mqtt, daemon.config.storage, ["e3"])
    watcher = daemon._make_watchers(daemon.config, daemon.bundle)["e3"]
    daemon.running = {
        "e3": _Running(watcher, threading.Thread(target=lambda: None), threading.Event())
    }
    return daemon, watcher


def _answer(daemon, watcher, verb: Verb) -> str:
    """Home Assistant's button: feedback on the incident "latest"; the daemon waits for the
    watcher's thread, stepped here by hand. Returns the answer's words."""
    import threading

    from watchdog.control import LATEST_INCIDENT

    said: list[str] = []
    answer = threading.Thread(
        target=lambda: said.append(
            daemon.dispatch(Command("e3", verb, LATEST_INCIDENT, "mqtt")).detail
        )
    )
    answer.start()
    while answer.is_alive():
        watcher.step()
        answer.join(0.05)
    watcher.step()  # a command sent without waiting is carried out by the next step
    return said[0]


def test_the_not_a_failure_button_marks_the_latest_alert_and_relearns(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Home Assistant's "Not a failure" button sends feedback on the incident "latest": the
    daemon resolves it to the printer's last alert, keeps its frame for retraining and the
    watcher re-learns the print."""
    from watchdog.control import LATEST_INCIDENT

    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 10))
    daemon, watcher = _daemon_of_one_watcher(tmp_path, tiny_adaptive_bundle, frames, "notify")
    early = daemon.dispatch(Command("e3", Verb.NOT_A_FAILURE, LATEST_INCIDENT))
    assert not early.ok and early.detail == "no alert to answer"
    records = [watcher.step() for _ in range(10)]
    assert [r.action for r in records].count("notify") == 1
    incident = watcher.status()["last_alert"]["incident"]
    assert watcher.status()["failure"]
    said = _answer(daemon, watcher, Verb.NOT_A_FAILURE)
    # pressed during a later print, "the latest" is the last print's alert: it is said which
    assert said.startswith(f"the alert of {raised_at(incident)} marked not a failure"), said
    assert (tmp_path / "state" / "collected" / "e3" / "false_alarms" / f"{incident}.jpg").is_file()
    assert watcher.status()["calibrating"]  # learning the accepted view
    assert not watcher.status()["failure"]
    watcher.camera.close()


def test_confirming_the_failure_answers_it(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """A confirmed failure is answered too: Home Assistant's problem sensor goes off (it
    stayed on until the next print, unless the owner marked the failure not a failure)."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 10))
    daemon, watcher = _daemon_of_one_watcher(tmp_path, tiny_adaptive_bundle, frames, "cancel")
    records = [watcher.step() for _ in range(10)]
    assert [r.action for r in records].count("cancel") == 1
    assert watcher.status()["failure"]
    _answer(daemon, watcher, Verb.CONFIRM_FAILURE)
    assert not watcher.status()["failure"]
    incident = watcher.status()["last_alert"]["incident"]
    assert (tmp_path / "state" / "collected" / "e3" / "failures" / f"{incident}.jpg").is_file()
    watcher.camera.close()


def test_a_verdict_sent_over_mqtt_names_its_alert_by_its_time(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The README's phone automation names the alert; its answer reaches Home Assistant's
    Last command sensor, away from the notification, so it says which alert it marked. The
    page and the phone show the answer on the alert itself: there it is not repeated."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 10))
    daemon, watcher = _daemon_of_one_watcher(tmp_path, tiny_adaptive_bundle, frames, "notify")
    [watcher.step() for _ in range(10)]
    incident = watcher.status()["last_alert"]["incident"]
    on_page = daemon.dispatch(Command("e3", Verb.CONFIRM_FAILURE, incident, "web"))
    assert on_page.ok and on_page.detail.startswith("confirmed as a failure"), on_page
    over_mqtt = daemon.dispatch(Command("e3", Verb.CONFIRM_FAILURE, incident, "mqtt"))
    assert over_mqtt.ok and over_mqtt.incident == incident, over_mqtt
    assert over_mqtt.detail.startswith(f"the alert of {raised_at(incident)} confirmed"), over_mqtt
    watcher.camera.close()


def test_an_answer_to_the_latest_alert_sent_back_at_once_lands_on_that_alert(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """A Home Assistant automation (or a quick thumb) answers "the latest alert" the moment the
    alert reaches the broker. At that moment the daemon must already name this alert as the
    latest; before, it was recorded only after sending, so the answer landed on the alert
    before it. The notifier here is the real one, watched as it sends."""
    from watchdog.control import LATEST_INCIDENT
    from watchdog.daemon import Daemon

    seen: list[tuple[str, str | None]] = []

    class Watched(Notifier):
        def send_alert(self, incident, frame_jpeg, heatmap_jpeg) -> None:
            latest = Command("e3", Verb.NOT_A_FAILURE, LATEST_INCIDENT)
            seen.append((incident.id, Daemon._resolve_incident(latest, watcher).incident))
            super().send_alert(incident, frame_jpeg, heatmap_jpeg)

    lasting = held(anomalous_frames[0], 30)
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + lasting)
    printer = SimulatedPrinter("benchy.gcode")
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer, "notify", Watched)
    [watcher.step() for _ in range(30)]  # 300 s: two alerts, the cooldown (90 s) between them
    assert len(seen) >= 2, seen
    assert all(sent == latest for sent, latest in seen), seen
    watcher.camera.close()


def test_a_button_of_an_old_alert_never_acts_on_the_print_running_now(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """A phone notification's Cancel (or an incident card's) belongs to the print it was about:
    pressed once the owner has started another print, it must not cancel that one. On the
    print it was about it acts, also for a watcher that has restarted since (the job saved
    with the alert is the job the printer reports)."""
    from watchdog.control import Command, Verb

    printer = SimulatedPrinter("benchy_A.gcode")
    watcher, frames, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )

    def press(verb: Verb, on: Watcher) -> tuple[bool, str]:
        done = on.submit(Command("e3", verb, incident, source="phone"))
        on.step()
        result = done.result(timeout=5)
        return result.ok, result.detail

    assert press(Verb.RESUME, watcher)[0] and printer.status().state == "printing"
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    # pressed before its first step: it asks the printer what it prints before it judges
    assert press(Verb.PAUSE, restarted)[0] and printer.status().state == "paused"
    # a newer alert of the same print since: the old one's buttons no longer act, also after
    # a restart (it acted: only the job was compared)
    newer = watcher.alerts.store.save("e3", {"job": "benchy_A.gcode"}, b"", b"", pending=False)
    again = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    ok, detail = press(Verb.RESUME, again)
    assert not ok and "newer alert" in detail and printer.status().state == "paused", detail
    again.camera.close()
    watcher.alerts.store.discard(newer)

    printer.cancel()  # the owner cancels at the printer and starts the next print
    watcher.step()
    printer.start_print("vase_B.gcode")
    watcher.step()
    restarted.step()
    actions = list(printer.actions)
    for on in (watcher, restarted):
        for verb in (Verb.CANCEL, Verb.PAUSE):
            ok, detail = press(verb, on)
            assert not ok and "nothing done" in detail, detail
    assert printer.actions == actions and printer.status().state == "printing"
    assert printer.status().job == "vase_B.gcode"
    watcher.camera.close()
    restarted.camera.close()


class _Reprinting(SimulatedPrinter):
    """A printer whose API can be away, and whose job's print time a test sets."""

    printed, away = 3000.0, False

    def status(self) -> PrinterStatus:
        if self.away:
            return PrinterStatus(PrinterState.OFFLINE, None, "no answer")
        return dataclasses.replace(super().status(), printed_s=self.printed)


def test_an_old_alerts_button_never_acts_on_the_same_file_printed_again_while_the_api_was_away(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The printer's API unreachable for a while (Wi-Fi, Moonraker's host rebooting), and the
    owner meanwhile cancels at the printer and prints the same file again: the watcher never
    saw the printer idle, so no new print was counted. The old alert's Cancel must not cancel
    the new print: its print time, far below the alert's, says it is another one."""

    printer = _Reprinting("J.gcode")
    watcher, _, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    printer.away = True
    watcher.step()
    printer.start_print("J.gcode")  # cancelled and started again at the printer
    printer.printed, printer.away = 20.0, False
    watcher.step()
    # the reprint was seen as a new print: the alert's print has ended
    assert "has ended" in _cancel_refused(watcher, printer, incident)
    watcher.camera.close()


def test_an_old_alerts_cancel_pressed_before_the_next_poll_never_cancels_the_next_print(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The owner cancels the paused print at the printer and starts the next one; the old
    alert's Cancel, pressed on the phone seconds later, is carried out before the watcher's
    next poll. Judged against the printer of the last poll (the paused print), it cancelled
    the new print."""
    printer = SimulatedPrinter("benchy_A.gcode")
    watcher, _, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    printer.cancel()
    printer.start_print("vase_B.gcode")  # between two of the watcher's polls
    assert "has ended" in _cancel_refused(watcher, printer, incident)
    watcher.camera.close()


def test_a_resume_carried_out_before_the_next_poll_is_a_resume(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Our pause, then the owner's Resume from Home Assistant or the page, carried out before
    the watcher's next poll: that poll saw the printer printing, as before the pause, so no
    resume happened to it. The view the owner accepted was not learnt again, the failure
    stayed on, and the same view paused the print again after the cooldown."""
    printer = SimulatedPrinter("benchy_A.gcode")
    watcher, _, _ = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    assert watcher.status()["failure"] and not watcher.status()["calibrating"]
    done = watcher.submit(Command("e3", Verb.RESUME, None, source="mqtt"))
    watcher.step()
    assert done.result(timeout=5).ok and printer.status().state == "printing"
    assert watcher.status()["calibrating"]  # the view the owner accepted is learnt again
    assert not watcher.status()["failure"]
    watcher.camera.close()


def _cancel_refused(on: Watcher, printer: SimulatedPrinter, incident: str) -> str:
    """The alert's Cancel pressed on the phone, carried out by ``on``: refused, nothing sent
    to the printer, which still prints; the reason it gave."""
    actions = list(printer.actions)
    done = on.submit(Command("e3", Verb.CANCEL, incident, source="phone"))
    on.step()
    result = done.result(timeout=5)
    assert not result.ok, result
    assert printer.actions == actions and printer.status().state == "printing"
    return result.detail


@pytest.mark.parametrize("restarted_mid_print", [False, True])
def test_an_alert_whose_print_ended_never_acts_on_a_reprint_after_a_restart(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, restarted_mid_print: bool
) -> None:
    """An alert that only told the owner (or a pause that failed): the owner cancels at
    OctoPrint, the Pi is switched off for the night, and the same file is printed again the
    next day. The notification is still on the phone; its Cancel, pressed once the reprint
    has printed longer than the old print had at the alert, cancelled the reprint: after the
    restart nothing but the saved alert was known, and OctoPrint tells no start time. Also
    when the daemon restarted during that print."""
    printer = _Reprinting("J.gcode")
    watcher, frames, incident = _told(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    if restarted_mid_print:
        watcher.camera.close()
        watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer, "notify")
        watcher.step()
    printer.cancel()  # at the printer: the watcher sees the print end
    watcher.step()
    watcher.camera.close()

    printer.start_print("J.gcode")
    printer.printed = 4000.0  # past the alert's print time (3000 s)
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer, "notify")
    restarted.step()
    assert "print has ended" in _cancel_refused(restarted, printer, incident)
    restarted.camera.close()


def _reprinted_while_stopped(
    tmp_path: Path,
    bundle: Path,
    normal_frames: list[np.ndarray],
    anomalous_frames: list[np.ndarray],
    printed_s: float,
    pause: bool = False,
) -> tuple[Watcher, _Reprinting, str]:
    """An alert paused J.gcode at 3000 s; the daemon stopped; at the printer the owner
    cancelled it and printed J.gcode again (``printed_s`` so far; paused at the printer with
    ``pause``). The restarted watcher after its first step, the printer, the alert's id."""
    printer = _Reprinting("J.gcode")
    watcher, frames, incident = _paused(tmp_path, bundle, normal_frames, anomalous_frames, printer)
    watcher.camera.close()  # the daemon stopped
    printer.cancel()
    printer.start_print("J.gcode")
    printer.printed = printed_s
    if pause:
        printer.pause()
    restarted = _watcher(tmp_path, bundle, frames, printer)
    restarted.step()
    return restarted, printer, incident


class _Failed(_Reprinting):
    """A printer in an error (a thermal runaway, OctoPrint's "Offline after error")."""

    def status(self) -> PrinterStatus:
        return PrinterStatus(PrinterState.ERROR, None, "OctoPrint: Offline after error")


@pytest.mark.parametrize("then", ["cancelled", "failed"])
def test_a_paused_print_that_ended_during_a_restart_has_its_alert_ended(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, then: str
) -> None:
    """The alert paused the print; the daemon stopped; the owner cancelled it at the printer,
    or the printer went into an error. Restarted on an idle printer, the watcher left the
    alert open: its Resume and Cancel answered "it is another print" with nothing printing;
    on a printer in an error it waited for a state it knew, until the owner reconnected it."""
    printer = _Reprinting("J.gcode")
    watcher, frames, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    watcher.camera.close()  # the daemon stopped
    printer.cancel()
    after = printer if then == "cancelled" else _Failed("J.gcode")
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, after)
    restarted.step()
    storage = restarted.alerts.store.storage_dir
    assert already_answered(storage, "e3", incident) == "this alert's print has ended"
    assert not restarted.status()["failure"]
    restarted.camera.close()


def test_an_alert_stands_after_a_restart_while_octoprint_sees_no_printer(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The host restarted mid-print (a print from the printer's SD card goes on) and
    OctoPrint has not connected to the printer again: it answers, idle, seeing no printer.
    Taken for an idle printer, the alert of the print still running was closed as ended."""

    class Unseen(_Reprinting):
        def status(self) -> PrinterStatus:
            return PrinterStatus(
                PrinterState.IDLE, None, "no printer connected to OctoPrint", sees_printer=False
            )

    watcher, frames, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, _Reprinting("J.gcode")
    )
    watcher.camera.close()  # the daemon stopped
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, Unseen("J.gcode"))
    restarted.step()
    assert already_answered(restarted.alerts.store.storage_dir, "e3", incident) == ""
    restarted.camera.close()


def test_an_old_alerts_cancel_never_acts_on_another_pause_after_a_restart(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The alert paused the print; the daemon stopped; at the printer the owner cancelled it,
    printed the same file again, and paused that one (a filament change) once it had printed
    longer than the first had at the alert. Restarted, the watcher took the pause for the
    alert's, still standing: the old notification's Cancel cancelled the new print."""
    restarted, printer, incident = _reprinted_while_stopped(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, 3000.0 + 600, pause=True
    )  # printed on, well past the alert's print time, then paused at the printer
    assert not restarted.status()["failure"], "the old alert stood for another pause"
    done = restarted.submit(Command("e3", Verb.CANCEL, incident, source="phone"))
    restarted.step()
    result = done.result(timeout=5)
    assert not result.ok and printer.status().state == "paused", result
    restarted.camera.close()


def test_a_paused_print_cancelled_and_printed_again_during_a_restart_has_its_alert_ended(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The alert paused the print; the daemon stopped; at the printer the owner cancelled it
    and printed the same file again. Restarted, the watcher left the old alert open: its
    page offered buttons that refused, without saying why. The reprint's print time, below
    the alert's, says it is another print: the alert's print has ended, on disk, and the new
    print is watched from its start, with no failure standing and no cooldown."""
    restarted, _, incident = _reprinted_while_stopped(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, 120.0
    )  # the alert's print had 3000 s
    storage = restarted.alerts.store.storage_dir
    assert already_answered(storage, "e3", incident) == "this alert's print has ended"
    assert restarted.status()["state"] != "cooldown", restarted.status()
    assert not restarted.status()["failure"]
    restarted.camera.close()


def test_an_answered_alert_offers_no_buttons_in_the_status(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Resumed from the phone, the alert's incident offered no buttons, but ``/status`` (Home
    Assistant's REST sensors, scripts) still listed Resume and Cancel; a Pause through it
    opens it again."""
    printer = SimulatedPrinter("J.gcode")
    watcher, _, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    assert watcher.status()["last_alert"]["answers"] == ["resume", "cancel"]
    assert _press(watcher, Verb.RESUME, incident)[0]
    assert watcher.status()["last_alert"]["answers"] == []
    assert _press(watcher, Verb.PAUSE, incident)[0]
    assert watcher.status()["last_alert"]["answers"] == ["resume", "cancel"]
    # cancelled, then marked not a failure: no print to learn again, and none is said
    assert _press(watcher, Verb.CANCEL, incident)[0]
    ok, said = _press(watcher, Verb.NOT_A_FAILURE, incident)
    assert ok and said == "answered; its print has ended: the next print learns its own look"
    watcher.camera.close()


def test_an_alerts_pause_still_holding_after_a_restart_stands(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The counterpart: still paused by the alert (its print time where it stopped), the
    alert stands after a restart and its Cancel acts."""
    printer = _Reprinting("J.gcode")
    watcher, frames, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    watcher.camera.close()
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    restarted.step()
    assert restarted.status()["failure"]
    done = restarted.submit(Command("e3", Verb.CANCEL, incident, source="phone"))
    restarted.step()
    assert done.result(timeout=5).ok and printer.status().state == "idle"
    restarted.camera.close()


class _LosingAnswers(_Reprinting):
    """A printer that cancels but whose answer to the cancel is lost (Wi-Fi)."""

    def cancel(self) -> ActionResult:
        super().cancel()
        return ActionResult(Action.CANCEL, Outcome.UNKNOWN, "no answer (timed out)", 4)


def test_an_alert_whose_cancel_was_lost_on_the_way_back_is_answered_when_the_print_ends(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The phone's Cancel reached the printer but its answer did not: the alert stayed open,
    and after a restart its Cancel acted on the same file printed again."""
    printer = _LosingAnswers("J.gcode")
    watcher, frames, incident = _told(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    done = watcher.submit(Command("e3", Verb.CANCEL, incident, source="phone"))
    watcher.step()
    # no answer, but the printer shows it idle at once: done
    result = done.result(timeout=5)
    assert result.ok and result.detail.startswith("no answer (timed out); e3 is no longer"), result
    watcher.step()
    watcher.camera.close()

    printer.start_print("J.gcode")
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer, "notify")
    restarted.step()
    said = _cancel_refused(restarted, printer, incident)
    assert "print has ended" in said or "cancelled" in said, said
    restarted.camera.close()


def test_after_a_reload_the_alerts_buttons_still_act_and_late_commands_reach_the_new_watcher(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Every settings save on the dashboard reloads the watchers. The watcher that replaces
    one knows its print and its alert: the phone's Resume still resumes the print it paused,
    also when it was sent to the old watcher after it stopped."""
    from watchdog.control import Command, Verb

    printer = SimulatedPrinter("benchy.gcode")
    old, frames, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    new = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    old.retire(new)  # the reload: the old thread has stopped, the new one not started yet
    late = old.submit(Command("e3", Verb.RESUME, incident, source="phone"))
    new.step()
    assert late.result(timeout=5).ok and printer.status().state == "printing"
    assert new.status()["last_alert"]["incident"] == incident
    old.camera.close()
    new.camera.close()


def test_commands_queued_at_a_reload_keep_their_order_before_one_sent_meanwhile(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """A Pause queued before a settings save, a Resume sent while the reload hands the queue
    over: the Resume went straight to the new watcher, ran first, and the print stayed
    paused. The new watcher runs them as they were sent."""
    from watchdog.control import Command, Verb

    printer = SimulatedPrinter("benchy.gcode")
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]))
    old = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    new = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    old.submit(Command("e3", Verb.PAUSE, None, source="page"))
    hand = new._hand_first
    late: list[threading.Thread] = []

    def handing(older: list[tuple[Command, Future]]) -> None:
        # the reload is handing the queue over: the owner sends a Resume now
        resume = Command("e3", Verb.RESUME, None, source="page")
        late.append(threading.Thread(target=old.submit, args=(resume,)))
        late[0].start()
        late[0].join(0.5)
        hand(older)

    new._hand_first = handing  # type: ignore[method-assign]
    old.retire(new)
    late[0].join(5)
    assert _queued(new) == [Verb.PAUSE, Verb.RESUME]

    # an old watcher still in its step (a pause retried against a hung API) retires late,
    # after the owner's next command went to the new watcher already
    late_one = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    late_one.submit(Command("e3", Verb.PAUSE, None, source="page"))
    newest = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    newest.submit(Command("e3", Verb.RESUME, None, source="page"))
    late_one.retire(newest)
    assert _queued(newest) == [Verb.PAUSE, Verb.RESUME]
    for w in (old, new, late_one, newest):
        w.camera.close()


def _queued(watcher: Watcher) -> list[Verb]:
    """The commands waiting for ``watcher``'s thread, in the order it will carry them out."""
    queued = []
    while not watcher._commands.empty():
        queued.append(watcher._commands.get_nowait()[0].verb)
    return queued


def test_a_reload_after_a_recalibration_keeps_what_was_learnt_judged_by_the_new_thresholds(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """``python -m watchdog calibrate`` moves a bundle's thresholds and adds a note, and says
    to reload; the model file may be copied over again too. Each of these made every
    printing printer learn its print again mid-print (a failure under way learnt as its look,
    and no guard on it). The same model learns alike: the learnt print is kept, judged by the
    new thresholds; a model of other weights is learnt again."""
    import hashlib
    import os
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_adaptive_bundle, bundle)
    printer = SimulatedPrinter("benchy.gcode")
    camera = _folder(tmp_path / "camera", normal_frames[:6] * 3)
    old = _watcher(tmp_path, bundle, camera, printer)
    for _ in range(6):
        old.step()
    assert not old.status()["calibrating"]
    meta_path, model_path = bundle / "model.json", bundle / "model.tflite"
    meta = json.loads(meta_path.read_text())
    meta["threshold"] *= 2.0
    meta["adaptation"]["threshold"] *= 1.5
    meta["extra"]["adaptation_rule"] = "recalibrated on the owner's prints"
    meta_path.write_text(json.dumps(meta))
    model_path.write_bytes(model_path.read_bytes())  # copied over again: a new time stamp
    os.utime(model_path, ns=(1, 1))
    new = _watcher(tmp_path, bundle, camera, printer)
    old.retire(new)
    assert not new.status()["calibrating"]
    assert new.detector.threshold == pytest.approx(meta["threshold"])
    gain = meta["threshold"] / meta["adaptation"]["threshold"]
    assert new.detector.baseline.gain == pytest.approx(gain)
    new.step()
    assert new.last_verdict is not None and new.last_verdict.threshold == new.detector.threshold
    other_weights = bytearray(model_path.read_bytes())
    other_weights[-1] ^= 0x01  # the flatbuffer's last byte: still a model, not this one
    model_path.write_bytes(bytes(other_weights))
    meta["model_sha256"] = hashlib.sha256(other_weights).hexdigest()  # its own model.json
    meta_path.write_text(json.dumps(meta))
    retrained = _watcher(tmp_path, bundle, camera, printer)
    new.retire(retrained)
    assert retrained.status()["calibrating"]
    for watcher in (old, new, retrained):
        watcher.camera.close()


def test_a_recording_goes_on_where_it_was_across_a_reload(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """Trying a config on a recording, each settings save on the page (a reload) played it
    again from its first frame, mid-print: the print learnt so far carried over and judged
    against frames of its own start; a recording read to its end played again."""
    printer = SimulatedPrinter("benchy.gcode")
    camera = _folder(tmp_path / "camera", normal_frames[:12])
    old = _watcher(tmp_path, tiny_adaptive_bundle, camera, printer)
    assert [old.step().frame for _ in range(5)][-1] == "f_4.jpg"
    new = _watcher(tmp_path, tiny_adaptive_bundle, camera, printer)
    old.retire(new)
    assert new.step().frame == "f_5.jpg"
    for w in (old, new):
        w.camera.close()


def test_a_reload_mid_print_keeps_what_was_learnt_of_the_print_unless_its_detection_changed(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Every settings save reloads the watchers. One that changed nothing of this printer's
    camera or of how its frames are learnt keeps the print's learnt start: learning it again
    would take a failure under way as the print's look, and it would never be paused. A new
    sensitivity keeps it too, judging with its own threshold. A changed region or another
    camera learns the print again and says so on the page."""
    import shutil

    printer = SimulatedPrinter("benchy.gcode")
    camera = _folder(tmp_path / "camera", normal_frames[:6])
    old = _watcher(tmp_path, tiny_adaptive_bundle, camera, printer)
    for _ in range(6):
        old.step()
    assert not old.status()["calibrating"]
    shutil.rmtree(camera)  # what the same camera shows from now on: a failure under way
    failing = _folder(camera, held(anomalous_frames[0], 10))
    new = _watcher(tmp_path, tiny_adaptive_bundle, failing, printer)
    old.retire(new)  # the reload, its new watcher on the same camera, bundle and detection
    assert not new.status()["calibrating"]
    records = [new.step() for _ in range(6)]
    assert [r.action for r in records].count("pause") == 1, [(r.score, r.state) for r in records]
    assert printer.status().state == "paused"

    printer.resume()
    new.step()  # learns the accepted view from here
    for _ in range(CALIBRATION):
        new.step()

    def rebuilt(camera: dict[str, object] | None = None, **detection: object) -> Watcher:
        pcfg = PrinterConfig(
            name="e3",
            camera=CameraConfig(source=str(failing), **(camera or {"interval_s": 0})),
            detection=detection,
        )
        return build_watcher(pcfg, Bundle.load(tiny_adaptive_bundle), new.alerts, printer=printer)

    keener, before = rebuilt(sensitivity=2.0), new.detector.threshold
    new.retire(keener)  # only the sensitivity saved: the learnt print stays, judged keener
    assert not keener.status()["calibrating"]
    assert keener.detector.threshold == pytest.approx(before / 2)
    # the same camera read at another pace, with other limits: the same view
    timing = {"interval_s": 5, "timeout_s": 3, "frozen_after_s": 0, "max_bytes": 20_000}
    paced = rebuilt(timing, sensitivity=2.0)
    keener.retire(paced)
    assert not paced.status()["calibrating"]
    changed = rebuilt(region=[0.0, 0.3, 1.0, 1.0])
    paced.retire(changed)
    assert changed.status()["calibrating"] and changed.status()["calibration"] == f"0/{CALIBRATION}"
    for _ in range(6):
        changed.step()
    other = _watcher(
        tmp_path, tiny_adaptive_bundle, _folder(tmp_path / "other", normal_frames), printer
    )
    changed.retire(other)  # the same detection, another camera
    assert other.status()["calibrating"]
    for w in (old, new, keener, paced, changed, other):
        w.camera.close()


def test_a_pause_the_owner_makes_ends_with_the_print_learnt_again(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """A filament change: the owner pauses, swaps the colour, resumes. The print looks
    different from its start now, and the owner has seen it: its look is learnt again."""
    printer = SimulatedPrinter("benchy.gcode")
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, _folder(tmp_path / "rec", normal_frames), printer
    )
    for _ in range(6):
        watcher.step()
    assert not watcher.status()["calibrating"]
    printer.pause()  # the owner's, at the printer
    watcher.step()
    printer.resume()
    watcher.step()
    assert watcher.status()["calibrating"], "judged against the look before the pause"
    watcher.camera.close()


def _live(picture: np.ndarray, i: int) -> np.ndarray:
    """``picture`` as a live camera shows a still scene: its sensor noise differs each frame."""
    noise = np.random.default_rng(i).normal(0.0, 3.0, picture.shape)
    return np.clip(picture.astype(np.float32) + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("still", ["frozen", "black", "heating"])
def test_a_start_the_camera_shows_without_movement_is_not_the_prints_look(
    tmp_path, tiny_adaptive_bundle, normal_frames, still: str, caplog
) -> None:
    """A snapshot URL stuck on one picture, a black picture (lights off), or a live camera
    on a printer that is still heating (nothing but the camera's noise moves) through a
    print's start: nothing of the print moved, so nothing of it was learnt (one picture given
    again is not even judged again). Learnt as its
    look, the first live picture of the print after it paused the print. It is learnt again
    instead, the page and the log say why, and the print, once the camera shows it moving, is
    watched as usual."""
    caplog.set_level(logging.INFO, "watchdog.watcher")
    if still == "frozen":
        start = [normal_frames[0]] * 10
    elif still == "black":
        start = [np.zeros_like(normal_frames[0])] * 10
    else:
        start = [_live(normal_frames[0], i) for i in range(10)]
    frames = _folder(tmp_path / "rec", start + list(normal_frames[:8]))
    printer = SimulatedPrinter("benchy.gcode")
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    starts = [watcher.step() for _ in range(10)]
    assert watcher.status()["calibrating"]
    if still == "heating":
        assert "the picture did not move" in watcher.status()["calibration"]
        assert "did not move during the print's start" in caplog.text
    else:  # one picture again and again: judged once, then not again (no camera's sensor does)
        assert [r.skipped for r in starts] == [False] + [True] * 9
        assert "the camera gave the same picture again" in caplog.text
    records = [watcher.step() for _ in range(8)]
    assert not any(r.action for r in records), [(r.frame, r.score) for r in records]
    assert printer.actions == []
    assert not watcher.status()["calibrating"], "the live print's start is learnt"
    watcher.camera.close()


def test_an_alerts_cancel_after_the_clock_was_set_forward_cancels_its_print(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, monkeypatch
) -> None:
    """A Pi without a clock chip runs behind until NTP sets it. The alert was raised on the old
    time, the print's start (Klipper's total duration back from now) read on the new one: the
    alert's Cancel was refused as "started part.gcode again after this alert", the failing
    print left running."""
    skew = [-3 * 3600.0]

    class Klipper(SimulatedPrinter):  # started_at as Moonraker's client works it out
        def status(self) -> PrinterStatus:
            s = super().status()
            if s.state is not PrinterState.PRINTING:
                return s
            return replace(s, printed_s=100.0, started_at=time.time() + skew[0] - 100.0)

    def skewed_now() -> str:
        return (datetime.now(UTC) + timedelta(seconds=skew[0])).isoformat(timespec="milliseconds")

    monkeypatch.setattr(watcher_module, "_now_iso", skewed_now)
    printer = Klipper("part.gcode")
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 10))
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer, action="notify")
    while watcher.status()["last_alert"] is None:
        watcher.step()
    incident = watcher.status()["last_alert"]["incident"]
    skew[0] = 0.0  # NTP sets the clock mid-print
    watcher.step()
    answer = watcher.submit(Command("e3", Verb.CANCEL, incident, source="phone"))
    while not answer.done():
        watcher.step()
    assert answer.result().ok, answer.result().detail
    assert printer.actions == [Action.CANCEL]


def _stepped_clock(monkeypatch: pytest.MonkeyPatch, skew: float) -> list[float]:
    """``stepped_wall_clock``, the alerts' times on it too."""
    step = stepped_wall_clock(monkeypatch, skew)
    monkeypatch.setattr(
        watcher_module,
        "_now_iso",
        lambda: datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="milliseconds"),
    )
    return step


class _Klipper(SimulatedPrinter):
    """A print's start as Moonraker's client works it out: its total duration back from now."""

    def status(self) -> PrinterStatus:
        s = super().status()
        if s.state not in (PrinterState.PRINTING, PrinterState.PAUSED):
            return s
        return replace(s, printed_s=100.0, started_at=time.time() - 100.0)


def test_a_restart_after_ntp_set_the_clock_forward_keeps_the_paused_prints_alert(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, monkeypatch
) -> None:
    """The alert paused the print on the clock the Pi booted with; NTP set it 3 h forward and
    the daemon restarted. The print's start, read on the new clock, came after the alert's
    time: the alert was closed as "its print has ended", its Cancel refused as another
    print's, the failed print left paused with no alert standing."""
    skew = _stepped_clock(monkeypatch, -3 * 3600.0)
    printer = _Klipper("part.gcode")
    watcher, frames, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    watcher.close()
    skew[0] = 0.0  # NTP; then a restart
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    restarted.step()
    assert not already_answered(tmp_path / "state", "e3", incident)
    assert restarted.status()["failure"]
    answer = restarted.submit(Command("e3", Verb.CANCEL, incident, source="phone"))
    while not answer.done():
        restarted.step()
    assert answer.result().ok, answer.result().detail
    assert printer.actions == [Action.PAUSE, Action.CANCEL]
    restarted.close()


def test_a_restart_within_the_pause_check_after_ntp_still_checks_the_pause(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, monkeypatch
) -> None:
    """The pause taken by the API had not shown yet when NTP set the clock 3 h forward and the
    daemon restarted: the alert looked 3 h old, long past ``api.confirm_s``, the printer
    printing was taken for a resume, the alert answered "resumed" and the failure unsaid."""
    skew = _stepped_clock(monkeypatch, -3 * 3600.0)
    printer = _PausedOnlySaid("benchy_A.gcode", Outcome.DONE)
    watcher, frames = _alerted(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    watcher.close()
    skew[0] = 0.0
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    restarted.step()
    [saved] = list_incidents(tmp_path / "state", ["e3"])
    assert not closing_answer(saved.alert), "taken for a resume"
    assert restarted.status()["failure"]
    restarted.close()


def test_a_status_poll_cut_short_by_the_daemons_stop_says_no_printer_api_offline(
    tmp_path, tiny_adaptive_bundle, normal_frames, caplog
) -> None:
    """At a stop, a status poll is cut at once (``PrinterClient.status`` under the stop):
    taken for the API's answer, it logged "printer API offline: no whole answer within 5 s"
    of an API answering at once, and forgot which prints had alerts."""
    stopping = threading.Event()

    class CutAtTheStop(SimulatedPrinter):
        def status(self) -> PrinterStatus:
            if stopping.is_set():
                return PrinterStatus(PrinterState.OFFLINE, None, "no whole answer within 5 s")
            return super().status()

    frames = _folder(tmp_path / "rec", list(normal_frames[:4]))
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, CutAtTheStop("part.gcode"))
    watcher.stopping = stopping
    watcher.step()
    stopping.set()
    with caplog.at_level(logging.WARNING, "watchdog.watcher"):
        watcher.step()
    assert watcher.api_state is PrinterState.PRINTING
    assert "offline" not in caplog.text, caplog.text
    watcher.close()


def test_a_streamers_stand_in_picture_given_again_and_again_pauses_no_print(
    tmp_path, tiny_adaptive_bundle, normal_frames, caplog
) -> None:
    """A USB camera unplugged behind its streamer: the streamer serves its "NO SIGNAL"
    picture at every request. Scored at each frame, it made 3 anomalous frames in a row and
    paused a good print 20 s after the glitch, long before the camera was found frozen
    (``frozen_after_s``, a minute). It is judged once; the same picture again is no news."""
    caplog.set_level(logging.INFO, "watchdog.watcher")
    stand_in = np.zeros_like(normal_frames[0])
    cv2.putText(stand_in, "< NO SIGNAL >", (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255,) * 3, 2)
    live = list(normal_frames[:15])
    # then a camera read twice as often as it refreshes: said once, not at every other frame
    twice = [f for f in live[:4] for _ in range(2)]
    frames = _folder(tmp_path / "rec", live + [stand_in] * 8 + twice)
    printer = SimulatedPrinter("benchy.gcode")
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    records = [watcher.step() for _ in range(len(live) + 8)]
    judged = [r for r in records if r.verdict is not None]
    assert len(judged) == len(live) + 1 and judged[-1].verdict.anomalous, [
        (r.frame, r.score) for r in judged
    ]
    assert sum(r.skipped for r in records) == 7
    assert printer.actions == [] and not watcher.status()["failure"]
    more = [watcher.step() for _ in range(8)]
    assert [r.skipped for r in more] == [False, True] * 4
    assert caplog.text.count("the camera gave the same picture again") == 1, caplog.text
    watcher.camera.close()


def test_a_print_stopped_by_a_printer_error_is_told_with_its_reason_and_a_reprint_is_new(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """The printer stops the print with an error of its own (a thermal runaway, a move out of
    range): the owner's "print ended" notice says so and why, and printing the same file again
    learns its look afresh."""

    class Failing(SimulatedPrinter):  # the real OctoPrint and Moonraker: tests/test_act_*.py
        error = ""

        def status(self):
            if self.error:
                return PrinterStatus(PrinterState.ERROR, None, self.error)
            return super().status()

    printer = Failing("benchy.gcode")
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, _folder(tmp_path / "rec", normal_frames), printer
    )
    told = []
    watcher.alerts.print_done = lambda name, job, error=None, **_: told.append((name, job, error))
    for _ in range(6):
        watcher.step()
    assert not watcher.status()["calibrating"]
    printer.error = "Klipper stopped the print: Move out of range"
    watcher.step()
    assert told == [("e3", "benchy.gcode", "Klipper stopped the print: Move out of range")]
    assert watcher.status()["state"] == "idle"
    printer.error = ""
    printer.start_print("benchy.gcode")
    watcher.step()
    assert watcher.status()["calibrating"], "the reprint is judged against the old print's look"
    watcher.camera.close()


@pytest.mark.servers
def test_replay_with_the_deployed_config_never_touches_its_real_printer(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, octoprint_server
) -> None:
    """The README's "replay your recording first" with the config the daemon runs on, which
    names a real OctoPrint that is printing: the recording's failure pauses the simulated
    print, never the real one, and the replay ends (it waited forever on a real printer)."""
    octoprint_server.start_print()
    frames = _folder(tmp_path / "rec", list(normal_frames[:7]) + list(anomalous_frames[:4]))
    api = {"kind": "octoprint", "url": octoprint_server.url, "api_key": octoprint_server.api_key}
    config = write_config(
        tmp_path / "c.yaml", model=str(tiny_adaptive_bundle), printers=[{"name": "e3", "api": api}]
    )
    r = run_cli("replay", "--config", str(config), "--frames", str(frames), timeout=60)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if '"frame"' in x and '"event"' not in x]
    assert len(lines) == 11 and [x["frame"] for x in lines if x["action"]] == ["f_9.jpg"]
    assert octoprint_server.flags()["printing"], "the real print was paused"


def test_a_printer_switched_off_stays_off_after_a_restart(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The Watching switch (the page's, Home Assistant's) was forgotten by a restart: the
    watchdog watched, and could pause, a print its owner had switched it off for."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 40))
    printer = SimulatedPrinter("benchy.gcode")
    before = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    done = before.submit(Command("e3", Verb.DISABLE, source="web"))
    before.step()
    assert done.result(5).ok and not before.status()["enabled"]
    before.camera.close()

    after = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)  # the daemon restarted
    assert not after.status()["enabled"]
    records = [after.step() for _ in range(40)]
    assert not any(r.action for r in records) and printer.status().state == "printing"
    done = after.submit(Command("e3", Verb.ENABLE, source="mqtt"))
    after.step()
    assert done.result(5).ok
    after.camera.close()
    again = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    assert again.status()["enabled"]
    again.camera.close()


def test_a_print_its_owner_stops_watching_is_left_alone_and_the_next_print_is_watched(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """ "Stop watching this print" (a print the owner watches themselves, or one that keeps
    being paused for a look it keeps changing): nothing of it is judged or paused, and the
    next print is watched without the owner having to remember to switch anything on."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 40))
    printer = SimulatedPrinter("benchy.gcode")
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    for _ in range(6):
        watcher.step()
    done = watcher.submit(Command("e3", Verb.SKIP_PRINT, source="web"))
    watcher.step()
    assert done.result(5).ok, done.result(5).detail
    status = watcher.status()
    assert status["state"] == "skipping_print" and status["skipping_print"]
    assert status["enabled"], "skipping one print switched watching off for good"
    records = [watcher.step() for _ in range(5)]
    new = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    watcher.retire(new)  # a settings save reloads the watchers: the print stays skipped
    watcher.camera.close()
    watcher = new
    records += [watcher.step() for _ in range(5)]
    assert watcher.status()["skipping_print"]
    assert not any(r.action for r in records) and printer.status().state == "printing"
    assert not any(r.frame for r in records), "frames of the skipped print were judged"

    printer.cancel()  # the print ends; the next one starts
    watcher.step()
    assert watcher.status()["state"] == "idle" and not watcher.status()["skipping_print"]
    printer.start_print("next.gcode")
    record = watcher.step()
    assert record.frame and watcher.status()["state"] == "calibrating"
    assert not (tmp_path / "state" / "switched-off.json").exists()
    watcher.camera.close()


def test_watching_switched_on_during_a_skipped_print_watches_it_again(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The owner changed their mind (Watching on, from the page or Home Assistant, whose
    switch shows off while a print is skipped): that very print is watched, its look learnt
    from what the camera shows then (the print grew while unwatched: judged against its start,
    it was paused again at once), and a failure after it paused."""
    # what the print looks like when switched on: changed from its start (filament strewn on
    # the bed's left), and a failure after that, across the whole bed (a failure only where
    # the learnt look already had one scored at the threshold, paused or not by the training)
    grown_view = synth.normal_frame(0, 10, 20, TINY_SEED)
    grown_view[:, :55] = anomalous_frames[0][:, :55]
    grown = held(grown_view, 6)
    later = held(anomalous_frames[-1], 20)
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + grown + later)
    printer = SimulatedPrinter("benchy.gcode")
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    for _ in range(6):
        watcher.step()
    watcher.submit(Command("e3", Verb.SKIP_PRINT, source="mqtt"))
    for _ in range(3):
        watcher.step()
    assert watcher.status()["skipping_print"]
    done = watcher.submit(Command("e3", Verb.ENABLE, source="mqtt"))
    watcher.step()
    assert done.result(5).ok and not watcher.status()["skipping_print"]
    assert watcher.status()["state"] == "calibrating"
    records = [watcher.step() for _ in range(len(grown) - 1)]
    assert not any(r.action for r in records), "the look it grew into paused it again"
    records = [watcher.step() for _ in range(6)]
    assert any(r.action for r in records) and printer.status().state == "paused"
    watcher.camera.close()


def test_a_print_skipped_while_the_watchdog_paused_it_answers_the_alert_and_shows_the_pause(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Skipping the print is the owner's answer to its open alert (Home Assistant's problem
    sensor goes off), and our pause still holding it is what the state says until it is
    resumed."""
    printer = SimulatedPrinter("benchy.gcode")
    watcher, frames, _ = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    assert watcher.status()["failure"]
    done = watcher.submit(Command("e3", Verb.SKIP_PRINT, source="web"))
    watcher.step()
    assert done.result(5).ok
    status = watcher.status()
    assert status["state"] == "paused" and status["skipping_print"] and not status["failure"]
    printer.resume()
    watcher.step()
    assert watcher.status()["state"] == "skipping_print"
    # a reload that takes the printer's API away: no print would ever end the skip
    new = _watcher(tmp_path, tiny_adaptive_bundle, frames, NoPrinter())
    watcher.retire(new)
    assert not new.status()["skipping_print"] and new.status()["state"] != "skipping_print"
    watcher.camera.close()
    new.camera.close()


def test_a_print_is_not_skipped_where_its_end_cannot_be_told(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """Without a printer API the watchdog cannot tell when a print ends (it would never be
    watched again), and with nothing printing there is no print to skip: both refused, said."""
    frames = _folder(tmp_path / "rec", normal_frames[:6])
    no_api = _watcher(tmp_path, tiny_adaptive_bundle, frames, NoPrinter())
    done = no_api.submit(Command("e3", Verb.SKIP_PRINT, source="web"))
    no_api.step()
    assert not done.result(5).ok and "switch Watching off instead" in done.result(5).detail
    assert no_api.status()["state"] != "skipping_print"
    # a Resume says why as its Pause and Cancel do (it said "e3 is printing, not paused")
    done = no_api.submit(Command("e3", Verb.RESUME, source="web"))
    no_api.step()
    assert done.result(5).detail == "e3: no printer API configured: nothing resumed"
    no_api.camera.close()

    printer = SimulatedPrinter("benchy.gcode")
    printer.cancel()
    idle = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    idle.step()
    done = idle.submit(Command("e3", Verb.SKIP_PRINT, source="web"))
    idle.step()
    assert not done.result(5).ok and "not printing" in done.result(5).detail
    printer.start_print("benchy.gcode")
    idle.step()
    assert idle.status()["state"] == "calibrating"
    idle.camera.close()

    # an API that does not answer (a key rejected) says nothing of what prints: it was told
    # "not printing", though it may well print
    away = _Unreachable("benchy.gcode")
    away.offline = True
    unknown = _watcher(tmp_path, tiny_adaptive_bundle, frames, away)
    unknown.step()
    done = unknown.submit(Command("e3", Verb.SKIP_PRINT, source="web"))
    unknown.step()
    said = done.result(5).detail
    assert not done.result(5).ok and "not printing" not in said, said
    assert "printer API does not say what it prints (connection refused)" in said, said
    unknown.camera.close()


def test_a_key_rejected_after_an_outage_is_said_in_the_log(
    tmp_path, tiny_adaptive_bundle, normal_frames, bad_server, caplog
) -> None:
    """The printer's API down (HTTP 500), then up but refusing the key (a key regenerated in
    OctoPrint meanwhile): one log line, the 500's, and the README's "a 403 in the log means
    the key is wrong" found nothing to go by; the page's detail alone said it."""
    import logging

    caplog.set_level(logging.WARNING, "watchdog.watcher")
    frames = _folder(tmp_path / "rec", normal_frames[:4])
    api = api_config("octoprint", bad_server.url, bad_server.api_key, retries=0)
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, make_printer(api, None))
    bad_server.respond(500, "<html><h1>Internal Server Error</h1></html>")
    watcher.step()
    bad_server.respond(403, '{"error": "Invalid API key"}')
    watcher.step()
    said = [r.getMessage() for r in caplog.records if "printer API offline" in r.getMessage()]
    assert len(said) == 2 and "HTTP 500" in said[0] and "API key rejected" in said[1], said
    watcher.step()  # still refused: not said again at every poll
    assert len([r for r in caplog.records if "printer API offline" in r.getMessage()]) == 2
    watcher.camera.close()


def test_a_switch_kept_beside_an_unreadable_switch_file_sets_that_file_aside() -> None:
    """The switches' file left damaged (or unreadable: a manual run as root): switching a
    printer wrote over it, and the other printers switched off in it were watched (and could
    be paused) after the next restart. It is set aside, for the owner to read back."""
    import tempfile

    from watchdog import switches

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        (state / switches.FILE).write_text('["voron", "prusa"')  # cut short
        switches.remember(state, "ender", watching=False)
        assert switches.switched_off(state) == {"ender"}
        [aside] = state.glob(f"{switches.FILE}.unreadable-*")
        assert aside.read_text() == '["voron", "prusa"'


def test_a_switch_file_damaged_while_the_daemon_runs_keeps_the_switches_it_held() -> None:
    """Damaged while the daemon ran (another program, a full disk), the file was rewritten at
    the next switch with that printer alone: every other printer switched off was watched
    after the next restart. The switches known from before are kept and written back; each
    damaged file is set aside under its own name (two in one second shared one); a file far
    larger than a list of names is not read."""
    import tempfile

    from watchdog import switches

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        path = state / switches.FILE
        assert switches.remember(state, "voron", watching=False) is None
        path.write_text("garbage")
        assert switches.switched_off(state) == {"voron"}
        switches.remember(state, "ender", watching=False)
        assert json.loads(path.read_text()) == ["ender", "voron"]
        path.write_text("garbage 2")
        switches.remember(state, "prusa", watching=False)
        asides = sorted(p.read_text() for p in state.glob(f"{switches.FILE}.unreadable-*"))
        assert asides == ["garbage", "garbage 2"]
        path.write_text(json.dumps(["x"] * 300_000))
        assert switches.switched_off(state) == {"ender", "voron", "prusa"}
        afile = state / "a-file"
        afile.write_text("")
        unkept = switches.remember(afile, "voron", watching=True)
        assert unkept and unkept.startswith("not kept for after a restart: cannot write"), unkept
        # damaged again, and its replacement not written once it was set aside (a full disk:
        # made to fail here, a disk cannot be filled in a test): the file is gone, and the
        # printers switched off are still the ones known, at once and at the next switch
        path.write_text("garbage 3")
        disk_full = OSError(28, "No space left on device")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(switches, "replace_file", lambda *a, **k: (_ for _ in ()).throw(disk_full))
            assert "No space left on device" in (switches.remember(state, "x", False) or "")
        assert not path.exists()
        assert switches.switched_off(state) == {"ender", "voron", "prusa"}
        switches.remember(state, "mk4", watching=False)
        assert json.loads(path.read_text()) == ["ender", "mk4", "prusa", "voron"]


def test_an_alert_without_a_printer_api_offers_no_printer_buttons(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """`api.kind: none`: the alert only notifies; Resume and Cancel could only answer
    "skipped", so neither the phone nor the page offers them (replay's and the demo's
    simulated printer does pause: they are offered there)."""

    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 10))
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, NoPrinter(), "pause")
    records = [watcher.step() for _ in range(10)]
    [alert] = [r.alert for r in records if r.alert is not None]
    assert alert.action_result.outcome == "skipped" and alert.answers == ()
    watcher.camera.close()


def test_an_idle_printers_camera_gives_the_page_one_frame_to_draw_on(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """Nothing prints, so the camera is not read, and the page's "Where to look" had no
    picture to draw a region or a mask on until a print ran. Asked, the watcher's own thread
    takes one frame; it scores nothing."""
    printer = SimulatedPrinter("benchy.gcode")
    printer.cancel()  # idle
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, _folder(tmp_path / "cam", normal_frames[:3]), printer
    )
    watcher.step()
    assert watcher.history.latest_frame_jpeg() is None
    done = watcher.submit(Command("e3", Verb.LOOK, source="web"))
    watcher.step()
    assert done.result(5).ok
    jpeg = watcher.history.latest_frame_jpeg()
    assert (
        jpeg is not None
        and cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) is not None
    )
    assert len(watcher.history.timeline) == 0  # nothing scored
    watcher.camera.close()


def test_an_idle_printers_frame_for_the_mask_editor_is_of_now_not_of_the_last_print(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The latest frame of an idle printer was its last print's (spaghetti on the bed, a
    camera moved since): the editor's masks were drawn on a picture hours old. Once the
    latest is a few seconds old, a look takes a new one; requests meanwhile share it."""
    printer = SimulatedPrinter("benchy.gcode")
    camera = _folder(tmp_path / "cam", [anomalous_frames[0], normal_frames[0], normal_frames[1]])
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, camera, printer)
    watcher.step()  # the print's last frame: a failure
    last_print = watcher.history.latest_frame_jpeg()
    printer.cancel()
    watcher.step()  # idle: the camera is not read

    def look() -> bytes | None:
        done = watcher.submit(Command("e3", Verb.LOOK, source="web"))
        watcher.step()
        assert done.result(5).ok, done.result(5)
        return watcher.history.latest_frame_jpeg()

    watcher.history._frame_at -= LOOK_FRESH_S  # the print ended a while ago
    now = look()
    assert now is not None and now != last_print
    assert look() == now, "a second request within seconds shares the frame just taken"
    watcher.camera.close()


def test_the_mask_editor_gets_no_picture_of_before_an_outage_as_one_of_now(
    tmp_path, tiny_adaptive_bundle, camera_server
) -> None:
    """A watched print's camera went offline: the editor asked for a frame of now and got the
    last one from before the outage, without a word (a mask drawn on a camera moved since)."""
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, camera_server.snapshot_url, SimulatedPrinter("a.gcode")
    )
    watcher.step()
    assert watcher.history.latest_frame_jpeg() is not None
    camera_server.set_fault("down")
    for _ in range(5):
        if watcher.camera_online is False:
            break
        watcher.step()
    # /status and the page say why (they said "camera offline" and no more)
    status = watcher.status()
    host = camera_server.url.split("://", 1)[1]
    assert status["camera_online"] is False and host in status["camera_problem"], status
    done = watcher.submit(Command("e3", Verb.LOOK, source="web"))
    watcher.step()
    looked = done.result(5)
    assert not looked.ok and looked.detail.startswith("the camera of e3 is offline: "), looked
    watcher.close()


def test_a_reload_keeps_an_idle_printers_picture_and_score_on_the_page_while_they_hold(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """Every settings save reloads every printer's watcher: an idle printer's page then said
    "no frame yet" and "score -", its heatmap gone, until its next print. They stay while
    they are of what is watched, with the threshold in force."""
    printer = SimulatedPrinter("benchy.gcode")
    camera = _folder(tmp_path / "cam", normal_frames[:3])
    old = _watcher(tmp_path, tiny_adaptive_bundle, camera, printer)
    old.step()
    printer.cancel()
    old.step()
    new = _watcher(tmp_path, tiny_adaptive_bundle, camera, printer)
    old.retire(new)
    assert new.latest_jpeg is not None and new.latest_jpeg == old.latest_jpeg
    assert new.status()["score"] == old.status()["score"] is not None

    def saved(**detection: object) -> Watcher:
        """The watcher a settings save makes of ``new``."""
        cfg = new.cfg.model_copy(
            update={"detection": new.cfg.detection.model_copy(update=detection)}
        )
        return build_watcher(cfg, Bundle.load(tiny_adaptive_bundle), new.alerts, printer=printer)

    # A sensitivity saved while idle: the page showed the threshold of before until the next
    # print. The picture stays (it shows what is still watched).
    louder = saved(sensitivity=2.0)
    new.retire(louder)
    assert louder.status()["threshold"] == pytest.approx(new.status()["threshold"] / 2)
    assert louder.latest_jpeg == new.latest_jpeg and louder.status()["score"] is not None
    # A region drawn while idle: the heatmap and the score were of the region no longer watched.
    elsewhere = saved(region=(0.0, 0.0, 1.0, 0.5))
    louder.retire(elsewhere)
    assert elsewhere.latest_jpeg is None and elsewhere.status()["score"] is None
    assert elsewhere.status()["threshold"] == pytest.approx(louder.status()["threshold"] * 2)
    for watcher in (old, new, louder, elsewhere):
        watcher.camera.close()


def test_closing_a_watcher_never_raises_and_closes_the_printer_when_the_camera_fails(
    tmp_path, tiny_adaptive_bundle, normal_frames, caplog
) -> None:
    """A reload closes the watchers it replaces from the daemon's own thread: a camera that
    fails to close must not stop the reload half-way nor leave the printer client open."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:2]))
    closed: list[str] = []

    class ClosingPrinter(SimulatedPrinter):
        def close(self) -> None:
            closed.append("printer")

    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, ClosingPrinter("a.gcode"))

    def broken_close() -> None:
        raise OSError("device busy")

    watcher.camera.close = broken_close  # type: ignore[method-assign]
    watcher.close()
    assert closed == ["printer"]
    assert "e3: closing" in caplog.text and "device busy" in caplog.text


def test_an_alert_answered_by_a_resume_no_longer_cancels_its_print(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Resumed from the page (no alert named), the alert is answered: its Cancel, pressed
    later on a phone or in an email copy, does not cancel the print, also after a restart.
    Paused again from the page (after the restart too), its Resume acts again."""
    from watchdog.control import Command, Verb

    printer = SimulatedPrinter("benchy_A.gcode")
    watcher, frames, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )

    def press(verb: Verb, on: Watcher, alert: str | None = incident) -> tuple[bool, str]:
        done = on.submit(Command("e3", verb, alert, source="phone" if alert else "web"))
        on.step()
        result = done.result(timeout=5)
        return result.ok, result.detail

    assert press(Verb.RESUME, watcher, None)[0] and printer.status().state == "printing"
    ok, detail = press(Verb.CANCEL, watcher)
    assert not ok and "answered already: the print was resumed" in detail, detail
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    ok, detail = press(Verb.CANCEL, restarted)
    assert not ok and "answered already" in detail and printer.status().state == "printing"
    assert press(Verb.PAUSE, restarted, None)[0] and printer.status().state == "paused"
    assert press(Verb.RESUME, restarted)[0] and printer.status().state == "printing"
    watcher.camera.close()
    restarted.camera.close()


def _press(watcher: Watcher, verb: Verb, incident: str | None) -> tuple[bool, str]:
    done = watcher.submit(Command("e3", verb, incident, source="phone" if incident else "web"))
    watcher.step()
    result = done.result(timeout=5)
    return result.ok, result.detail


def test_a_button_of_an_alert_that_is_not_there_says_so(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """A mistyped alert id (or one removed with the oldest alerts) was refused as "e3 has had
    a newer alert since this one", or as another job's, when there was no such alert."""
    printer = SimulatedPrinter("benchy_A.gcode")
    quiet = _watcher(
        tmp_path / "quiet", tiny_adaptive_bundle, _folder(tmp_path / "q", normal_frames), printer
    )
    quiet.step()
    ok, detail = _press(quiet, Verb.PAUSE, "nosuchincident")
    assert not ok and detail.startswith("no alert nosuchincident of e3"), detail
    quiet.close()
    watcher, _, incident = _told(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    before = printer.status().state
    ok, detail = _press(watcher, Verb.CANCEL, "nosuchincident")
    assert not ok and detail.startswith("no alert nosuchincident of e3"), detail
    assert printer.status().state == before
    watcher.close()


def test_a_resume_of_an_alert_that_only_told_says_so(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """A notify-only alert's Resume (the README's phone automation offers it on every alert),
    pressed after the owner paused at the printer, was refused as "its pause did not happen":
    no pause was ever tried."""
    printer = SimulatedPrinter("benchy_A.gcode")
    watcher, _, incident = _told(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    printer.pause()  # the owner, at the printer
    ok, detail = _press(watcher, Verb.RESUME, incident)
    assert not ok and detail.startswith("this alert only told you of the failure"), detail
    assert "did not happen" not in detail and printer.status().state == "paused"
    watcher.close()


@pytest.mark.parametrize("cancelled", [True, False])
def test_a_resume_of_a_cancelling_alert_says_what_its_cancel_did(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, cancelled: bool
) -> None:
    """A Resume of an alert whose action was a cancel (an automation offers Resume on every
    alert): "it only told you" was wrong, and "it cancelled the print" is wrong too where its
    cancel failed and the print may still run."""

    class CancelRefused(SimulatedPrinter):
        def cancel(self) -> ActionResult:
            return ActionResult(Action.CANCEL, Outcome.FAILED, "refused: 409", 1)

    printer = (SimulatedPrinter if cancelled else CancelRefused)("benchy_A.gcode")
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 10))
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer, "cancel")
    while watcher.status()["last_alert"] is None:
        watcher.step()
    incident = watcher.status()["last_alert"]["incident"]
    ok, detail = _press(watcher, Verb.RESUME, incident)
    said = (
        "this alert cancelled the print"
        if cancelled
        else "this alert's action was a cancel, not a pause"
    )
    assert not ok and detail.startswith(said), detail
    watcher.close()


def test_a_print_resumed_at_the_printer_answers_its_alert(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Resumed on the printer's own screen (or in Mainsail, OctoPrint), the alert is answered as
    by the phone's Resume: its Cancel, pressed later in an email copy, leaves the print running,
    also after a restart."""
    printer = SimulatedPrinter("benchy_A.gcode")
    watcher, frames, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    watcher.step()  # the watcher sees the print paused
    printer.resume()  # minutes later, at the printer: the watchdog is not asked
    watcher.step()
    ok, detail = _press(watcher, Verb.CANCEL, incident)
    assert not ok and "answered already: the print was resumed" in detail, detail
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    ok, detail = _press(restarted, Verb.CANCEL, incident)
    assert not ok and "answered already" in detail, detail
    assert printer.status().state == "printing" and printer.actions == ["pause", "resume"]
    # paused again from the page (the alert acts again), resumed at the printer: answered again
    assert _press(restarted, Verb.PAUSE, None)[0] and printer.status().state == "paused"
    printer.resume()
    restarted.step()
    ok, detail = _press(restarted, Verb.CANCEL, incident)
    assert not ok and "answered already" in detail, detail
    assert printer.status().state == "printing"
    watcher.camera.close()
    restarted.camera.close()


def test_a_print_resumed_while_the_watchdog_was_stopped_answers_its_alert(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The watchdog paused the print and was stopped (an update, a power cut); meanwhile the
    owner resumed at the printer. Started again, it sees the print running, so the alert is
    answered: its Cancel, pressed later in an email copy, leaves the print running."""
    printer = SimulatedPrinter("benchy_A.gcode")
    watcher, frames, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    watcher.close()
    printer.resume()  # at the printer, while no watchdog runs
    # started again after the time the pause had to show (within it, a print that prints is
    # one whose pause is still expected: test_a_restart_before_the_pause_had_to_show_...)
    time.sleep(5.1)
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer, confirm_s=5)
    restarted.step()
    [saved] = list_incidents(tmp_path / "state", ["e3"])
    assert closing_answer(saved.alert) == "resumed"
    # as a resume seen live: the cooldown, and the view accepted (no start guard): what
    # paused it is still in view, and it paused again half a minute after the resume
    assert restarted.state.cooling and not restarted.state.armed
    assert restarted.detector.guard == 0.0
    ok, detail = _press(restarted, Verb.CANCEL, incident)
    assert not ok and "answered already: the print was resumed" in detail, detail
    assert printer.status().state == "printing" and printer.actions == ["pause", "resume"]
    restarted.close()


@pytest.mark.parametrize(
    "kind",
    [
        "simulated",
        pytest.param("octoprint", marks=pytest.mark.servers),
        pytest.param("moonraker", marks=pytest.mark.servers),
    ],
)
def test_a_print_cancelled_at_the_printer_answers_its_alert(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, kind, request
) -> None:
    """Paused by the watchdog, then cancelled on the printer's own screen (with the real
    OctoPrint and Moonraker through their API, as Mainsail or OctoPrint's page does): the
    alert is answered, so its card says what became of the print and its Resume says why it
    does nothing instead of asking a printer that has nothing to resume."""
    printer: PrinterClient
    if kind == "simulated":
        printer = simulated = SimulatedPrinter("benchy_A.gcode")
        cancel_at_the_printer = simulated.cancel
    else:
        server = request.getfixturevalue(f"{kind}_server")
        server.start_print()
        printer = make_printer(api_config(kind, server.url, getattr(server, "api_key", None)))
        cancel_at_the_printer = server.cancel
    watcher, _, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    watcher.step()  # the watcher sees the print paused
    cancel_at_the_printer()
    wait_until(f"{kind} idle", lambda: printer.status().state == "idle", 30)
    watcher.step()
    [saved] = list_incidents(tmp_path / "state", ["e3"])
    assert closing_answer(saved.alert) == "cancelled"
    ok, detail = _press(watcher, Verb.RESUME, incident)
    assert not ok and "answered already: the print was cancelled" in detail, detail
    watcher.close()


def test_a_print_cancelled_after_a_restart_answers_the_alert_that_still_stood(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Restarted while its pause waits (the alert stands), then the print is cancelled at
    the printer: the standing alert is answered."""
    printer = SimulatedPrinter("benchy_A.gcode")
    watcher, frames, _ = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    watcher.close()
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    restarted.step()
    assert restarted.status()["failure"], "the alert no longer stands after the restart"
    printer.cancel()
    restarted.step()
    [saved] = list_incidents(tmp_path / "state", ["e3"])
    assert closing_answer(saved.alert) == "cancelled"
    restarted.close()


class _Unreachable(SimulatedPrinter):
    """A printer whose API a test takes away (``offline``) and gives back."""

    offline = False

    def status(self) -> PrinterStatus:
        if self.offline:
            return PrinterStatus(PrinterState.OFFLINE, None, "connection refused")
        return super().status()

    def resume(self) -> ActionResult:
        if self.offline:
            self.actions.append(Action.RESUME)
            return ActionResult(Action.RESUME, Outcome.FAILED, "connection refused", 1)
        return super().resume()


class _PausedOnlySaid(SimulatedPrinter):
    """A printer whose API answers a pause (``outcome``) that the printer does not make."""

    def __init__(self, job: str, outcome: Outcome) -> None:
        super().__init__(job)
        self.outcome = outcome

    def pause(self) -> ActionResult:
        return ActionResult(Action.PAUSE, self.outcome, "no answer within 10 s", 3)


def test_a_restart_before_the_pause_had_to_show_still_checks_it(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The API took the pause, the printer never paused (a PAUSE macro that does not), and the
    watchdog restarted within ``api.confirm_s``: the printer printing was taken for a resume
    while it was stopped, the alert answered "resumed", and the failure went on unsaid."""

    printer = _PausedOnlySaid("benchy_A.gcode", Outcome.DONE)
    watcher, frames = _alerted(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    incident = watcher.status()["last_alert"]["incident"]
    watcher.close()
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    restarted.step()
    [saved] = list_incidents(tmp_path / "state", ["e3"])
    assert not closing_answer(saved.alert), "taken for a resume"
    assert restarted.status()["failure"]
    for _ in range(12):  # 10 s a step: past the 90 s the pause had
        restarted.step()
    [saved] = [i for i in list_incidents(tmp_path / "state", ["e3"]) if i.id == incident]
    assert saved.alert["action_result"]["outcome"] == "failed", saved.alert
    assert "still printing" in saved.alert["action_result"]["detail"]
    restarted.close()


def _restarted_with_the_api_away(
    tmp_path, bundle, normal_frames, anomalous_frames
) -> tuple[_Unreachable, Path, str, Watcher]:
    """A print paused by an alert, then the watchdog restarted while the printer's API is
    away: the printer, the frames, the alert's incident and the new watcher, stepped once."""
    printer = _Unreachable("benchy_A.gcode")
    watcher, frames, incident = _paused(tmp_path, bundle, normal_frames, anomalous_frames, printer)
    watcher.close()
    printer.offline = True
    restarted = _watcher(tmp_path, bundle, frames, printer)
    restarted.step()
    return printer, frames, incident, restarted


def test_an_alerts_button_after_a_restart_with_the_api_away_says_so_and_acts_once_back(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Restarted while the printer's API was away, an alert's Resume said "ender3 reports no
    job": the API had told nothing at all."""

    printer, frames, incident, restarted = _restarted_with_the_api_away(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
    )
    ok, detail = _press(restarted, Verb.RESUME, incident)
    assert not ok and "API does not answer (connection refused)" in detail, detail
    printer.offline = False
    ok, detail = _press(restarted, Verb.RESUME, incident)
    assert ok and printer.status().state == "printing", detail
    restarted.close()


def test_an_alert_still_stands_after_a_restart_while_the_printer_cannot_be_reached(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Restarted while the printer's API was away (a power blip, OctoPrint hung): the page
    and Home Assistant's problem sensor showed no failure and no alert, the print paused on
    with nobody told, until the API answered again. The unanswered alert is shown standing
    meanwhile; once the printer tells, what became of its print decides, as before."""
    printer, frames, incident, restarted = _restarted_with_the_api_away(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
    )
    status = restarted.status()
    assert status["printer_state"] == "offline", status
    assert status["failure"] and status["last_alert"]["incident"] == incident, status
    printer.offline = False
    restarted.step()
    status = restarted.status()
    assert status["failure"] and status["last_alert"]["incident"] == incident, status
    # cancelled at the printer while the watchdog could not see it: the alert is closed then
    printer.offline = True
    restarted.close()
    printer.cancel()
    again = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    again.step()
    assert again.status()["failure"], "not known yet: the alert still stands"
    printer.offline = False
    again.step()
    status = again.status()
    assert not status["failure"] and status["last_alert"] is None, status
    again.close()


def test_an_alert_judged_before_a_restart_with_the_api_away_does_not_stand_again(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """A verdict ends an alert's failure: shown standing again after a restart while the
    printer could not be reached, it went off once the printer answered, the print paused."""
    printer = _Unreachable("benchy_A.gcode")
    watcher, frames, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    watcher.close()
    assert record_verdict(tmp_path / "state", "e3", incident, "failure").is_file()
    printer.offline = True
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    restarted.step()
    assert not restarted.status()["failure"], restarted.status()
    restarted.close()


def test_an_alerts_cancel_after_its_print_ended_in_a_printer_error_says_it_ended(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Paused, then Klipper shut down (an emergency stop) and restarted: the printer idle,
    its print time back at 0 under the same job name, the alert's Cancel said "it is another
    print" where nothing printed."""

    class Restarted(SimulatedPrinter):
        printed = 600.0

        def status(self) -> PrinterStatus:
            return dataclasses.replace(super().status(), printed_s=self.printed)

    printer = Restarted("benchy_A.gcode")
    watcher, _, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    printer.cancel()  # the firmware restart ends it: Klipper's print time is 0 again
    printer.printed = 0.0
    ok, detail = _press(watcher, Verb.CANCEL, incident)
    assert not ok and "this alert's print has ended" in detail, detail
    watcher.close()


def test_not_a_failure_on_a_paused_print_says_it_stays_paused(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """ "Not a failure" answers the alert; it does not resume the print. The page said
    "learning the print's look again" and the owner waited for a print that stayed paused."""
    printer = SimulatedPrinter("benchy_A.gcode")
    watcher, _, incident = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    watcher.step()  # the pause seen (the owner answers seconds later at the soonest)
    ok, detail = _press(watcher, Verb.NOT_A_FAILURE, incident)
    assert ok and detail.endswith("the print stays paused: Resume it when ready"), detail
    assert printer.status().state == "paused"
    watcher.close()


def test_a_cancel_never_answered_nor_done_leaves_the_prints_end_told(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """The owner's Cancel, sent and not answered, never happened: the print was marked
    cancelled by the watchdog for good, and its finish later was told to nobody."""

    class Unanswered(SimulatedPrinter):
        def cancel(self) -> ActionResult:
            return ActionResult(Action.CANCEL, Outcome.UNKNOWN, "no answer within 10 s", 3)

    printer = Unanswered("J.gcode")
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, _folder(tmp_path / "rec", normal_frames), printer
    )
    told: list[str | None] = []
    watcher.alerts.print_done = lambda name, job, error=None, **_: told.append(job)
    watcher.step()
    ok, detail = _press(watcher, Verb.CANCEL, None)  # the page's Cancel
    assert not ok, detail
    watcher.step()
    SimulatedPrinter.cancel(printer)  # the print ends as any print does
    watcher.step()
    assert told == ["J.gcode"]
    watcher.close()


def test_a_pause_answered_too_late_is_told_done_once_the_printer_shows_it(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Moonraker answers a PAUSE once Klipper has run it: behind a heat-up, after the API's
    timeout. That was "the pause did NOT happen", sent twice more, and never put right when
    the printer showed paused; now its end is unknown, then told done when it shows."""

    printer = _PausedOnlySaid("benchy_A.gcode", Outcome.UNKNOWN)
    watcher, _ = _alerted(tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer)
    assert watcher.status()["last_alert"]["action_result"]["outcome"] == "unknown"
    SimulatedPrinter.pause(printer)  # the PAUSE runs, its heat-up done
    watcher.step()
    [saved] = list_incidents(tmp_path / "state", ["e3"])
    assert saved.alert["action_result"]["outcome"] == "done", saved.alert
    assert "shows it paused" in saved.alert["action_result"]["detail"]
    assert saved.alert["answers"] == ["resume", "cancel"]
    watcher.close()


def test_a_cancel_answers_only_what_the_watcher_saw_and_never_twice(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Paused, the printer's API unreachable for a while, then idle: resumed and finished
    meanwhile would look the same, so the alert is not answered "cancelled", only "its print
    has ended" (its buttons never act on a later print). Answered by a resume, then paused
    and cancelled at the printer (a filament change given up): the answer stays the first."""

    printer = _Unreachable("benchy_A.gcode")
    watcher, frames, _ = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    watcher.step()
    printer.offline = True
    watcher.step()
    printer.cancel()  # (or resumed and finished: the watchdog cannot tell)
    printer.offline = False
    watcher.step()
    [saved] = list_incidents(tmp_path / "state", ["e3"])
    assert closing_answer(saved.alert) == "ended"
    watcher.close()

    printer = _Unreachable("benchy_B.gcode")
    watcher, _, incident = _paused(
        tmp_path / "b", tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    assert _press(watcher, Verb.RESUME, None)[0]  # the page's Resume answers the alert
    printer.pause()  # then a pause of the owner's own at the printer, and a cancel
    watcher.step()
    printer.cancel()
    watcher.step()
    [saved] = list_incidents(tmp_path / "b" / "state", ["e3"])
    assert saved.id == incident and closing_answer(saved.alert) == "resumed"
    watcher.close()


def _told_only(
    tmp_path: Path,
    bundle: Path,
    normal_frames,
    anomalous_frames,
    failing: int = 10,
    printer: SimulatedPrinter | None = None,
) -> tuple[Watcher, SimulatedPrinter]:
    """A watcher set to notify (``action: notify``) stepped until its first alert, the print
    failing for ``failing`` frames in all: it, and its simulated printer, still printing."""
    printer = printer or SimulatedPrinter("benchy_A.gcode")
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], failing))
    watcher = _watcher(tmp_path, bundle, frames, printer, action="notify")
    while watcher.last_alert is None:
        watcher.step()
    return watcher, printer


def test_an_alert_that_only_told_the_owner_keeps_its_cancel_after_a_pause_of_their_own(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """An alert that did not pause (``action: notify``): the owner pauses from the page to look
    and resumes; the print was not resumed from the alert's pause, so the alert's Cancel,
    pressed on the phone after a second look, still cancels the print."""
    watcher, printer = _told_only(tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames)
    incident = watcher.last_alert.incident
    assert printer.status().state == "printing"
    assert _press(watcher, Verb.PAUSE, None)[0] and printer.status().state == "paused"
    assert _press(watcher, Verb.RESUME, None)[0] and printer.status().state == "printing"
    ok, detail = _press(watcher, Verb.CANCEL, incident)
    assert ok and printer.status().state != "printing", detail
    watcher.camera.close()


def _told_twice(
    tmp_path: Path, bundle: Path, normal_frames, anomalous_frames
) -> tuple[Watcher, SimulatedPrinter, str, str]:
    """A print failing on, told (``action: notify``) and told again after the cooldown: the
    watcher, its printer, the first alert and the latest."""
    watcher, printer = _told_only(tmp_path, bundle, normal_frames, anomalous_frames, failing=40)
    first = watcher.last_alert.incident
    while watcher.last_alert.incident == first:
        watcher.step()
    return watcher, printer, first, watcher.last_alert.incident


def test_an_earlier_alert_of_a_print_left_failing_still_cancels_it(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """A printer set to notify alerts again each cooldown while its print fails on; the phone
    shows the alert it got, the next one not sent yet (coalesced). Its Cancel was refused,
    "this button belongs to an older alert", and the failing print went on. It cancels that
    print now; its Resume (not offered by such an alert) would still be refused."""
    watcher, printer, first, latest = _told_twice(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
    )
    assert printer.status().state == "printing"
    ok, detail = _press(watcher, Verb.RESUME, first)
    assert not ok and "newer alert" in detail, detail
    ok, detail = _press(watcher, Verb.CANCEL, first)
    assert ok and printer.status().state != "printing", detail
    # answered as the latest alert (its notification, Home Assistant): "cancelled", not "ended"
    answers = {i.id: closing_answer(i.alert) for i in list_incidents(tmp_path / "state", ["e3"])}
    assert answers[latest] == "cancelled", answers
    watcher.camera.close()


def test_not_a_failure_on_an_earlier_alert_of_the_print_says_which_to_answer(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Told again each cooldown, the phone shows the alert it got: its "Not a failure" was
    answered "not the current print's latest alert", nothing learnt, and the alerts went on
    as if it had worked. It says which alert to answer; that one learns the look."""
    watcher, _, first, latest = _told_twice(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
    )
    ok, detail = _press(watcher, Verb.NOT_A_FAILURE, first)
    assert ok and detail.startswith("nothing learnt yet: a later alert of this print came at ")
    assert raised_at(latest) in detail and not watcher.detector.calibrating, detail
    ok, detail = _press(watcher, Verb.NOT_A_FAILURE, latest)
    assert ok and "learning the print's look again" in detail, detail
    watcher.camera.close()


def test_an_earlier_alert_never_acts_where_the_latest_was_answered_or_the_api_was_away(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Its Cancel answers the print as the latest alert would: refused once the latest was
    answered (its print resumed from the phone); and refused where the printer's API was away
    between the two alerts (the same file may have been printed again meanwhile: OctoPrint
    tells no start time, and a longer print time tells nothing)."""
    watcher, printer = _told_only(
        tmp_path,
        tiny_adaptive_bundle,
        normal_frames,
        anomalous_frames,
        failing=60,
        printer=_Reprinting("benchy_A.gcode"),
    )
    first = watcher.last_alert.incident
    while watcher.last_alert.incident == first:
        watcher.step()
    latest = watcher.last_alert.incident
    record_answer(tmp_path / "state", "e3", latest, "resumed")  # its Resume pressed
    ok, detail = _press(watcher, Verb.CANCEL, first)
    assert not ok and "answered already" in detail, detail
    assert printer.status().state == "printing"
    printer.away = True
    watcher.step()
    printer.away, printer.printed = False, 5000.0  # back, printing longer than before
    while watcher.last_alert.incident == latest:
        watcher.step()
    ok, detail = _press(watcher, Verb.CANCEL, latest)
    assert not ok and "newer alert" in detail, detail
    assert printer.status().state == "printing"
    watcher.camera.close()


def test_a_reload_keeps_what_the_camera_and_the_api_were(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """A reload (every settings save) started each printer's camera as "not known yet": a
    camera down before it was told offline again at each save, and one the save fixed was
    never told back online; a cancel seen at the next poll was not taken for one."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]))
    printer = SimulatedPrinter("benchy_A.gcode")
    old = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    old.step()
    old.camera_online = False  # as after its camera went down
    new = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    old.retire(new)
    assert new.camera_online is False and new.api_state == old.api_state == "printing"
    record = new.step()  # the camera gives frames again: told back online, once
    assert [e.event for e in record.events] == ["camera_online"]
    old.close()
    new.close()


def test_a_cameras_first_frame_after_a_start_is_offered_to_the_phone_as_back_online(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """A camera the phone was told offline before a restart was never told back online: the
    watcher's first frame after the start raised no news. It is handed to the notifier as
    "back online" (which only a target that told it offline sends, as the notify tests show),
    with no event of its own: the log and Home Assistant do not call it back."""
    told: list[bool] = []

    class Phone(Notifier):
        def camera_changed(self, printer: str, online: bool, why: str = "") -> None:
            told.append(online)

    frames = _folder(tmp_path / "rec", list(normal_frames[:6]))
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, frames, SimulatedPrinter("b.gcode"), "pause", Phone
    )
    record = watcher.step()
    assert told == [True] and not [e for e in record.events if "camera" in e.event]
    watcher.step()
    assert told == [True]  # once
    watcher.close()


def test_a_reload_to_another_camera_does_not_call_it_online_before_it_gave_a_frame(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """A settings save that points an idle printer at another camera (a typo in its URL) kept
    the old camera's "online" on the page and in Home Assistant, though the new one was never
    read: an automation on the camera going offline stayed quiet until the next print."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]))
    printer = SimulatedPrinter("benchy_A.gcode")
    old = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    old.step()
    assert old.camera_online is True
    moved = _folder(tmp_path / "other", list(normal_frames[:6]))
    new = _watcher(tmp_path, tiny_adaptive_bundle, moved, printer)
    old.retire(new)
    assert new.camera_online is None and new.status()["camera_online"] is None
    record = new.step()  # the new camera's first frame: online, nothing to tell back
    assert new.camera_online is True and not [e for e in record.events if "camera" in e.event]
    old.close()
    new.close()


def test_the_same_file_printed_again_while_the_api_was_away_is_learnt_afresh(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The owner cancels and starts the same file again while the printer's API does not
    answer (or between two polls): the watcher never saw the printer idle. The new print's
    start, judged against the last print's learnt look, paused a good print; its print time,
    gone back, says it is another print, learnt afresh."""
    printer = _Reprinting("J.gcode")
    # the new print's start looks nothing like the last print's (what a failure looks like)
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + list(anomalous_frames[:12]))
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    for _ in range(6):
        watcher.step()
    assert not watcher.status()["calibrating"]
    printer.away = True
    watcher.step()
    printer.start_print("J.gcode")  # cancelled and started again at the printer
    printer.printed, printer.away = 20.0, False
    records = [watcher.step() for _ in range(11)]
    assert not any(r.action for r in records), [(r.score, r.state) for r in records]
    assert printer.actions == [] and printer.status().state == "printing"
    watcher.camera.close()


def test_a_slow_poll_of_a_klipper_print_is_no_new_print(
    tmp_path, tiny_adaptive_bundle, normal_frames, monkeypatch, caplog
) -> None:
    """Klipper says how long its job has run; a job whose start moved later is the same file
    printed again. The step's time is taken before its commands and the printer's answer
    (a pause retried against a slow API takes minutes): the job's time is counted back to
    it, or a slow poll followed by a quick one passed for a reprint, and the print's learnt
    look was thrown away. The margin is shortened here to what a test can wait."""
    import time

    monkeypatch.setattr("watchdog.detection.decide.STARTED_AGAIN_S", 1.0)

    class Klipper(SimulatedPrinter):
        started, slow = time.monotonic(), 0.0

        def status(self) -> PrinterStatus:
            time.sleep(self.slow)
            elapsed = time.monotonic() - self.started
            return dataclasses.replace(super().status(), printed_s=elapsed, elapsed_s=elapsed)

    printer = Klipper("J.gcode")
    frames = _folder(tmp_path / "rec", list(normal_frames[:10]))
    notifier = Notifier(MqttConfig(), StorageConfig(dir=tmp_path / "state"), ["e3"])
    cfg = PrinterConfig(name="e3", camera=CameraConfig(source=str(frames), interval_s=0))
    watcher = build_watcher(
        cfg, Bundle.load(tiny_adaptive_bundle), notifier, printer=printer, clock=time.monotonic
    )
    for _ in range(CALIBRATION + 2):
        watcher.step()
    assert not watcher.status()["calibrating"]
    printer.slow = 1.5
    watcher.step()
    printer.slow = 0.0
    watcher.step()
    assert not watcher.status()["calibrating"] and "another print" not in caplog.text
    # a reprint is told, and learnt afresh
    printer.started = time.monotonic()
    with caplog.at_level("INFO", logger="watchdog.watcher"):
        watcher.step()
    assert watcher.status()["calibrating"] and "another print of J.gcode" in caplog.text
    watcher.camera.close()


def test_a_print_that_ends_with_its_camera_offline_withdraws_the_waiting_offline_notice(
    tmp_path, tiny_adaptive_bundle, normal_frames, monkeypatch
) -> None:
    """The camera's "offline" waits a minute before it is sent (a hiccup is not worth one):
    when the print ends first, or watching is switched off, it is withdrawn, and the camera
    is judged afresh at the next print (still offline: told then)."""
    from watchdog.control import Command, Verb

    printer = SimulatedPrinter("J.gcode")
    frames = _folder(tmp_path / "rec", list(normal_frames[:4]))
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    unwatched: list[str] = []

    def withdrawn(name: str) -> bool:  # one was still waiting: the owner was told nothing
        unwatched.append(name)
        return True

    monkeypatch.setattr(watcher.alerts, "camera_unwatched", withdrawn)
    watcher.step()
    watcher.camera_online = False  # as a camera that stopped answering leaves it
    printer.pause()  # a pause is no end: its outage is still told
    watcher.step()
    assert unwatched == []
    printer.cancel()
    watcher.step()
    # judged afresh at the next print: told then if it is still offline
    assert unwatched == ["e3"] and watcher.camera_online is None
    printer.start_print("K.gcode")
    watcher.step()
    watcher.camera_online = False
    done = watcher.submit(Command("e3", Verb.DISABLE, source="page"))
    watcher.step()
    assert done.result(timeout=5).ok and unwatched == ["e3", "e3"]
    watcher.camera.close()


def test_a_print_that_ends_while_its_api_is_away_is_told_as_maybe_lost(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """OctoPrint updated (or Klipper restarted) mid-print: the print is gone, and once the API
    was back the printer was idle, told as a quiet "finished, or cancelled at the printer"."""
    printer = _Unreachable("benchy.gcode")
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, _folder(tmp_path / "rec", normal_frames), printer
    )
    told = []
    watcher.alerts.print_done = lambda name, job, error=None, unseen=False, **_: told.append(
        (job, unseen)
    )
    for _ in range(3):
        watcher.step()
    printer.offline = True
    watcher.step()
    printer.cancel()  # gone with the restart
    printer.offline = False
    watcher.step()
    assert told == [("benchy.gcode", True)]
    printer.start_print("next.gcode")
    watcher.step()
    printer.cancel()  # seen: an end the printer told
    watcher.step()
    assert told[-1] == ("next.gcode", False)
    watcher.camera.close()


@pytest.mark.parametrize(("action", "told"), [("notify", 1), ("cancel", 0)])
def test_a_print_that_ends_soon_after_an_alert_is_told_unless_the_watchdog_cancelled_it(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, action: str, told: int
) -> None:
    """After an alert that only told the owner, a print that finished (or was stopped at the
    printer) within the cooldown was never told "print ended": the watcher was disarmed. One
    the watchdog cancelled is told by its alert, not again."""
    printer = SimulatedPrinter("J.gcode")
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 10))
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer, action=action)
    ended: list[str | None] = []
    watcher.alerts.print_done = lambda name, job, error=None, **_: ended.append(job)
    while watcher.status()["last_alert"] is None:
        watcher.step()
    if printer.status().state == "printing":
        printer.cancel()  # at the printer, 10 s after the alert
    watcher.step()
    assert ended == ["J.gcode"] * told
    watcher.camera.close()


def test_with_one_incident_kept_the_alert_is_listed_and_answered(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """``storage.keep_incidents: 1`` with MQTT on: the draft saved before the pause (pending)
    made the final alert one too many, and it was deleted as it was saved; the page listed
    nothing, and every answer to the alert was refused as an older alert's. (The broker is
    never connected here: the alert waits in the outbox.)"""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 10))
    printer = SimulatedPrinter("benchy.gcode")
    mqtt = MqttConfig(host="127.0.0.1", port=1)
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer, mqtt=mqtt, keep_incidents=1)
    while printer.status().state != "paused":
        watcher.step()
    alert = watcher.status()["last_alert"]
    [saved] = list_incidents(tmp_path / "state", ["e3"])
    assert saved.id == alert["incident"] and saved.alert["action_result"]["outcome"] == "done"
    # the phone's Resume and Cancel buttons are this alert's, not an older one's
    assert latest_incident(tmp_path / "state", "e3") == saved.id
    assert record_verdict(tmp_path / "state", "e3", saved.id, "failure").is_file()


class _FullDiskNotifier(Notifier):
    """The final alert comes back unsaved, as ``IncidentStore.save`` returns it on a disk
    error (a full disk cannot be made here); the draft before it was saved."""

    def save_alert(self, printer, alert, frame_jpeg, heatmap_jpeg):
        return Incident(printer, new_incident_id(), dict(alert), None)


def test_an_alert_that_cannot_be_saved_is_written_into_its_draft(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The disk filled between the draft saved before the pause and the final alert: the
    draft was thrown away all the same, so the alert was on no page, and its answers were
    refused. The draft, whose frames are on disk, becomes the alert, with the pause's end."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + held(anomalous_frames[0], 10))
    printer = SimulatedPrinter("benchy.gcode")
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer, "pause", _FullDiskNotifier)
    while printer.status().state != "paused":
        watcher.step()
    [saved] = list_incidents(tmp_path / "state", ["e3"])
    assert saved.id == watcher.status()["last_alert"]["incident"]
    assert saved.alert["action_result"]["outcome"] == "done", saved.alert
    assert saved.delivered  # nothing left to send after a restart
    assert not (tmp_path / "state" / "incidents" / "e3" / saved.id / "draft").exists()
    # the phone's Resume and Cancel buttons are this alert's, not an older one's
    assert latest_incident(tmp_path / "state", "e3") == saved.id
    assert record_verdict(tmp_path / "state", "e3", saved.id, "failure").is_file()


class _PrintingFor(SimulatedPrinter):
    """The simulated printer, its API saying how long the job has printed (a real printer's
    print time; an hour of it cannot be waited for here)."""

    def __init__(self, printed_s: float, step_s: float = 0.0) -> None:
        super().__init__("benchy.gcode")
        self.printed_s, self.step_s = printed_s, step_s

    def status(self) -> PrinterStatus:
        status = dataclasses.replace(super().status(), printed_s=self.printed_s)
        self.printed_s += self.step_s  # each poll later in the print
        return status


@pytest.mark.parametrize(("printed_s", "paused"), [(3600.0, False), (20.0, True)])
def test_a_print_first_seen_an_hour_in_is_not_judged_by_the_start_guard(
    tmp_path, tiny_guarded_bundle, anomalous_frames, printed_s: float, paused: bool
) -> None:
    """The daemon restarted (or the API, the camera or watching came back) an hour into a
    print: its look, a part half printed, was learnt as a start and judged by the start guard
    set on prints' first minutes, which such a part scores above: a good print paused as
    "abnormal from its start" after every restart. A print seen from its start still is
    (here frames of spaghetti, which the guard pauses from the first frame)."""
    frames = _folder(tmp_path / "rec", list(anomalous_frames[:6]))
    printer = _PrintingFor(printed_s)
    watcher = _watcher(tmp_path, tiny_guarded_bundle, frames, printer)
    records = [watcher.step() for _ in range(6)]
    assert ("pause" in printer.actions) is paused, [(r.score, r.state) for r in records]


def test_a_failure_confirmed_during_its_start_is_not_learnt_as_the_prints_look(
    tmp_path, tiny_guarded_bundle, anomalous_frames
) -> None:
    """A print failing from its first layer, told (``action: notify``) and confirmed a
    failure from the phone: the answer let its start be learnt, the failure became the print's
    normal, and no alert came again however long it went on. A confirmed start stays judged
    by the guard, told again after each cooldown as an unanswered one is."""
    watcher, _, _, incident = _told_at_its_start(tmp_path, tiny_guarded_bundle, anomalous_frames)
    confirmed = watcher.submit(Command("e3", Verb.CONFIRM_FAILURE, incident, source="phone"))
    records = [watcher.step() for _ in range(50)]
    assert confirmed.result(0).ok
    told = [r.frame for r in records if r.action == "notify"]
    assert told, [(r.score, r.state) for r in records]
    assert watcher.detector.calibrating  # nothing of the failure learnt
    watcher.camera.close()


def test_a_settings_save_during_a_start_keeps_it_judged_by_the_start_guard(
    tmp_path, tiny_guarded_bundle, anomalous_frames
) -> None:
    """A mask drawn and saved on the page while a print starts (a reload: the look is learnt
    again under the new mask) turned the start guard off for the rest of that start, as if
    the owner had accepted the view: a print failing from its first layer went unjudged.
    A settings save accepts nothing, nor does the start it learns again count as a print
    first seen past its start."""
    frames = _folder(tmp_path / "rec", list(anomalous_frames[:6]))
    printer = _PrintingFor(20.0, step_s=400.0)  # a start that outlasts five minutes of it
    first = _watcher(tmp_path, tiny_guarded_bundle, frames, printer)
    first.step()  # the print's first frame, its start learnt from here
    mask = [[[0.0, 0.0], [0.1, 0.0], [0.1, 0.1]]]  # a small corner left out
    cfg = first.cfg.model_copy(
        update={"detection": first.cfg.detection.model_copy(update={"mask": mask})}
    )
    clock = iter(range(100, 100_000, 10))
    second = build_watcher(
        cfg,
        Bundle.load(tiny_guarded_bundle),
        first.alerts,
        camera=first.camera,
        printer=printer,
        clock=lambda: float(next(clock)),
    )
    first.retire(second)
    records = [second.step() for _ in range(5)]
    assert "pause" in printer.actions, [(r.score, r.state) for r in records]


def test_not_a_failure_says_so_where_the_model_learns_no_look_of_the_print(
    tmp_path, tiny_bundle, normal_frames, anomalous_frames
) -> None:
    """A bundle without a per-print baseline: "not a failure" answered "learning the print's
    look again", nothing was learnt, and the same view alerted again after the cooldown."""
    frames = _folder(tmp_path / "rec", list(normal_frames[:2]) + held(anomalous_frames[0], 8))
    watcher = _watcher(tmp_path, tiny_bundle, frames, SimulatedPrinter("benchy.gcode"), "notify")
    while watcher.status()["last_alert"] is None:
        watcher.step()
    incident = watcher.status()["last_alert"]["incident"]
    answer = watcher.submit(Command("e3", Verb.NOT_A_FAILURE, incident))
    watcher.step()
    detail = answer.result(0).detail
    assert "learning the print's look again" not in detail and "alerts again" in detail, detail


def test_a_start_watched_from_its_beginning_keeps_its_guard_however_long_it_takes(
    tmp_path, tiny_guarded_bundle, anomalous_frames
) -> None:
    """A print seen from its first seconds whose start outlasts five minutes of print time
    (a bed heating, frames skipped: here each poll three minutes later): its guard was
    dropped part-way, and a print failing from its first layer went unjudged."""
    frames = _folder(tmp_path / "rec", list(anomalous_frames[:6]))
    printer = _PrintingFor(20.0, step_s=180.0)
    watcher = _watcher(tmp_path, tiny_guarded_bundle, frames, printer)
    records = [watcher.step() for _ in range(6)]
    assert "pause" in printer.actions, [(r.score, r.state) for r in records]


def test_a_recording_read_to_its_end_is_said_once(
    tmp_path, tiny_adaptive_bundle, normal_frames, caplog
) -> None:
    """``run`` on a folder camera (a recording, to try a config) went silent at its last
    frame, its state left as it was: nothing said the recording had ended. Said once by the
    daemon's loop (replay and the demo say it in their summary)."""
    import time

    caplog.set_level(logging.INFO)
    frames = _folder(tmp_path / "rec", list(normal_frames[:2]))
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, SimulatedPrinter())
    watcher.clock = time.monotonic  # the helper's counted clock runs out in a loop this fast
    stop = threading.Event()
    loop = threading.Thread(target=watcher.run, args=(stop,))
    loop.start()
    try:
        deadline = time.monotonic() + 60
        while not watcher.camera.exhausted and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # more steps after the end: still said once
    finally:
        stop.set()
        loop.join(30)
    said = [r for r in caplog.records if "read to its end" in r.getMessage()]
    assert len(said) == 1 and said[0].getMessage().startswith("e3: "), caplog.text


def test_a_resume_while_the_pause_never_showed_is_refused_and_answers_nothing(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """A PAUSE macro that does not pause, then Home Assistant's Resume: the printer's "was
    already printing" was taken for a resume that answered the alert, so its "the pause did
    NOT happen" never reached the phones, and their Cancel was refused as answered."""
    printer = _PausedOnlySaid("benchy_A.gcode", Outcome.DONE)
    watcher, _ = _alerted(tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer)
    done = watcher.submit(Command("e3", Verb.RESUME, None, source="mqtt"))
    watcher.step()
    result = done.result(timeout=5)
    assert not result.ok and "printing, not paused" in result.detail, result
    [saved] = list_incidents(tmp_path / "state", ["e3"])
    assert closing_answer(saved.alert) == "", saved.alert
    assert Action.RESUME not in printer.actions, printer.actions
    watcher.close()


def test_the_owners_cancel_answers_the_failure_at_once(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """Our pause, then Cancel from Home Assistant: the failure sensor stayed on with the printer
    idle, and went off only at the next restart."""
    printer = SimulatedPrinter("benchy_A.gcode")
    watcher, _, _ = _paused(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    assert watcher.status()["failure"]
    done = watcher.submit(Command("e3", Verb.CANCEL, None, source="mqtt"))
    watcher.step()
    assert done.result(timeout=5).ok and printer.status().state == "idle"
    assert not watcher.status()["failure"]
    watcher.step()
    assert not watcher.status()["failure"]
    watcher.close()


def test_a_printer_api_away_during_a_print_is_the_state_shown(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """Moonraker unreachable mid-print: the state said "watching", so an automation on
    ``printer_offline`` never fired while a pause could not reach the printer. Its frames are
    still judged (``watched``)."""
    printer = _Unreachable("benchy_A.gcode")
    frames = _folder(tmp_path / "rec", list(normal_frames[:8]))
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    watcher.step()
    assert watcher.status()["state"] in ("calibrating", "watching")
    printer.offline = True
    watcher.step()
    status = watcher.status()
    assert status["state"] == "printer_offline" and status["watched"], status
    watcher.close()


def test_a_resume_while_the_printer_api_is_away_says_so_not_printing(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """The API unreachable (the owner may have paused at the printer's own screen meanwhile):
    a Resume was refused as "is printing, not paused", from the last poll that answered, while
    the state beside it said printer_offline. The printer's own answer is told."""
    printer = _Unreachable("benchy_A.gcode")
    frames = _folder(tmp_path / "rec", list(normal_frames[:8]))
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    watcher.step()
    printer.offline = True
    watcher.step()
    done = watcher.submit(Command("e3", Verb.RESUME, None, source="mqtt"))
    watcher.step()
    result = done.result(timeout=5)
    assert not result.ok and "connection refused" in result.detail, result
    assert "is printing" not in result.detail and Action.RESUME not in printer.actions, result
    watcher.close()


def _owner_pauses(
    tmp_path: Path, bundle: Bundle, frames: list, printer: SimulatedPrinter
) -> tuple[Watcher, CommandResult]:
    """A print watched for a step, then Home Assistant's Pause print: the answer."""
    watcher = _watcher(tmp_path, bundle, _folder(tmp_path / "rec", list(frames)), printer)
    watcher.step()
    done = watcher.submit(Command("e3", Verb.PAUSE, None, source="mqtt"))
    watcher.step()
    return watcher, done.result(timeout=5)


def test_the_owners_pause_the_api_took_and_the_printer_never_showed_is_told_not_done(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """Home Assistant's Pause print, a PAUSE macro that does not pause: the API's "accepted"
    was the answer, ok, never put right, while the print went on. It is under way now, and
    not done once the printer still prints ``api.confirm_s`` later."""
    printer = _PausedOnlySaid("benchy_A.gcode", Outcome.DONE)
    watcher, first = _owner_pauses(tmp_path, tiny_adaptive_bundle, normal_frames[:12], printer)
    assert first.under_way and not first.ok and first.later is not None, first
    assert "not shown by the printer yet" in first.detail, first
    for _ in range(10):  # ten steps of the camera's interval: past api.confirm_s
        watcher.step()
        if first.later.done():
            break
    final = first.later.result(timeout=0)
    assert not final.ok and "still printing" in final.detail and "did NOT pause" in final.detail
    watcher.close()


class _CancelOnlySaid(SimulatedPrinter):
    """A printer whose API answers a cancel done that the printer does not make."""

    def cancel(self) -> ActionResult:
        return ActionResult(Action.CANCEL, Outcome.DONE, "accepted cancel", 1)


class _CancelsCounted(SimulatedPrinter):
    """A printer that counts the cancels sent to it; ``make``: False, its API answers them
    done and the printer does not make them."""

    def __init__(self, job: str, make: bool) -> None:
        super().__init__(job)
        self.make, self.sent = make, 0

    def cancel(self) -> ActionResult:
        self.sent += 1
        if self.make:
            return super().cancel()
        return ActionResult(Action.CANCEL, Outcome.DONE, "accepted cancel", 1)


def _until_decided(watcher: Watcher, answer: CommandResult) -> CommandResult:
    """The watcher stepped (its camera's interval each) until an under-way answer ends."""
    assert answer.under_way and answer.later is not None, answer
    for _ in range(12):  # past api.confirm_s
        watcher.step()
        if answer.later.done():
            break
    return answer.later.result(timeout=0)


class _StopsOnlySaid(SimulatedPrinter):
    """A printer whose API answers a pause and a cancel done that it does not make (yet)."""

    def pause(self) -> ActionResult:
        return ActionResult(Action.PAUSE, Outcome.DONE, "accepted pause", 1)

    def cancel(self) -> ActionResult:
        return ActionResult(Action.CANCEL, Outcome.DONE, "accepted cancel", 1)


def test_the_owners_cancel_shown_after_the_watchdogs_own_pause_failed_is_no_print_ended(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The watchdog's pause did not happen while the owner's Cancel was on its way: that
    "did NOT pause" took the Cancel for not done too, so when the printer did cancel, the
    owner, told "e3 is no longer printing", also heard "print ended" as if it had finished."""
    printer = _StopsOnlySaid("benchy_A.gcode")
    watcher, _ = _alerted(tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer)
    ended: list[str | None] = []
    watcher.alerts.print_done = lambda name, job, error=None, **_: ended.append(job)
    answer = watcher.submit(Command("e3", Verb.CANCEL, None, source="phone"))
    watcher.step()
    cancel = answer.result(timeout=5)
    assert cancel.under_way and cancel.later is not None, cancel
    for _ in range(12):
        if watcher.state.late_until is not None:  # the watchdog's own pause: did NOT pause
            break
        watcher.step()
    assert watcher.state.late_until is not None and not cancel.later.done()
    SimulatedPrinter.cancel(printer)  # the owner's cancel happens
    watcher.step()
    shown = cancel.later.result(timeout=0)
    assert shown.ok and "no longer printing" in shown.detail, shown
    assert ended == []
    watcher.close()


class _FirstPauseIgnored(SimulatedPrinter):
    """A printer that ignores the first pause its API takes (a PAUSE macro gone wrong) and
    makes the later ones."""

    paused_once = False

    def pause(self) -> ActionResult:
        if not self.paused_once:
            self.paused_once = True
            return ActionResult(Action.PAUSE, Outcome.DONE, "accepted pause", 1)
        return SimulatedPrinter.pause(self)


def test_the_owners_own_pause_after_the_watchdogs_did_not_happen_is_not_told_as_its_alert(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """The watchdog's pause did not happen ("did NOT pause"); the owner, who had said Not a
    failure, paused the print from the page minutes later (to look at it, to change the
    filament). That pause was taken for the watchdog's, shown late: the alert said "paused
    after all" and its phones heard "print failure, paused" of a print the owner had passed."""
    printer = _FirstPauseIgnored("benchy_A.gcode")
    watcher, _ = _alerted(tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer)
    incident = watcher.status()["last_alert"]["incident"]
    for _ in range(12):
        if watcher.state.late_until is not None:  # the watchdog's own pause: did NOT pause
            break
        watcher.step()
    assert watcher.state.late_until is not None
    answer = watcher.submit(Command("e3", Verb.PAUSE, None, source="web"))
    watcher.step()
    end = answer.result(timeout=5)
    assert end.ok and printer.status().state == "paused", end
    watcher.step()
    [saved] = [i for i in list_incidents(tmp_path / "state", ["e3"]) if i.id == incident]
    assert saved.alert["action_result"]["outcome"] == "failed", saved.alert["action_result"]
    watcher.close()


def _cancel_not_shown(
    tmp_path: Path, bundle_dir: Path, normal_frames, anomalous_frames
) -> tuple[Watcher, _CancelOnlySaid, str, CommandResult]:
    """A phone's Cancel of an alert that the API took and the printer did not make: the
    watcher, its printer, the alert, the Cancel's end ("did NOT cancel")."""
    printer = _CancelOnlySaid("benchy_A.gcode")
    watcher, _, incident = _told(tmp_path, bundle_dir, normal_frames, anomalous_frames, printer)
    done = watcher.submit(Command("e3", Verb.CANCEL, incident, source="phone"))
    watcher.step()
    final = _until_decided(watcher, done.result(timeout=5))
    assert not final.ok and "did NOT cancel" in final.detail, final
    return watcher, printer, incident, final


def test_the_owners_cancel_not_shown_leaves_its_alert_open_and_its_cancel_working(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """A phone's Cancel the API took and the printer never made: the alert was marked
    cancelled at once, so the Cancel pressed again was refused as answered, Home Assistant's
    failure went off with the print running, and the print's end was never told."""
    watcher, _, incident, _ = _cancel_not_shown(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
    )
    assert watcher.status()["failure"] and not watcher.state.cancelled
    again = watcher.submit(Command("e3", Verb.CANCEL, incident, source="phone"))
    watcher.step()
    assert "answered already" not in again.result(timeout=5).detail
    watcher.close()


def test_the_owners_cancel_told_not_done_that_the_printer_makes_later_is_put_right(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """A cancel macro slower than ``api.confirm_s``: the owner was told "did NOT cancel" and
    never heard that it stopped after all. A print that finished looks the same, so its alert
    is answered by the print's end ("ended"), and the end is told as the print's."""
    watcher, printer, _, final = _cancel_not_shown(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
    )
    assert final.correction is not None, final
    SimulatedPrinter.cancel(printer)  # the macro's cancel comes through at last
    record = watcher.step()
    right = final.correction.result(timeout=0)
    assert right.ok and "cancelled late, or its print finished" in right.detail, right
    latest = watcher.status()["last_alert"]["incident"]  # of the print (re-armed since)
    assert saved_alert(tmp_path / "state", "e3", latest)["answer"] == "ended"
    assert not watcher.status()["failure"] and record.state is Label.IDLE
    watcher.close()


def test_a_cancel_pressed_again_before_the_printer_shows_the_first_is_not_sent_twice(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """Cancel pressed twice (the page, then Home Assistant) while the printer has not shown
    the first yet: the second was sent too, and a printer busy cancelling may refuse it
    (OctoPrint answers 409 once its job is neither printing nor paused), read as the cancel
    failing. It is answered with the first's end."""

    printer = _CancelsCounted("benchy_A.gcode", make=False)
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, _folder(tmp_path / "rec", list(normal_frames)), printer
    )
    watcher.step()
    first = watcher.submit(Command("e3", Verb.CANCEL, None, source="web"))
    watcher.step()
    second = watcher.submit(Command("e3", Verb.CANCEL, None, source="mqtt"))
    watcher.step()
    again = second.result(timeout=5)
    assert again.under_way and "not sent again" in again.detail, again
    assert printer.sent == 1
    final = _until_decided(watcher, first.result(timeout=5))
    assert not final.ok and "did NOT cancel" in final.detail, final
    assert again.later is not None and again.later.result(timeout=0) == final
    watcher.close()


def test_a_cancel_pressed_again_once_the_first_showed_is_not_a_failure(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """The second of two Cancels pressed in a row reached a printer already cancelling:
    OctoPrint answers 409 "not printing", and "Cancel print: not printing" in red replaced the
    first's "no longer printing" on the page and in Home Assistant."""

    printer = _CancelsCounted("benchy_A.gcode", make=True)
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, _folder(tmp_path / "rec", list(normal_frames)), printer
    )
    watcher.step()
    ok, first = _press(watcher, Verb.CANCEL, None)
    assert ok and "no longer printing" in first, first
    ok, second = _press(watcher, Verb.CANCEL, None)
    assert ok and second.startswith("e3 is not printing: the cancel before this one was done")
    assert printer.sent == 1
    watcher.close()


def test_a_cancel_pressed_again_minutes_later_still_says_the_first_was_done(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """Cancel pressed again long after the first showed (Home Assistant's button, the page
    left open), nothing printed since: OctoPrint's 409 "not printing" read as the cancel
    failing. Once another print started and ended, a Cancel is the printer's to answer."""

    printer = _CancelsCounted("benchy_A.gcode", make=True)
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, _folder(tmp_path / "rec", list(normal_frames)), printer
    )
    watcher.step()
    assert _press(watcher, Verb.CANCEL, None)[0]
    for _ in range(30):  # five minutes of its 10 s steps, well past api.confirm_s
        watcher.step()
    ok, later = _press(watcher, Verb.CANCEL, None)
    said = r"e3 is not printing: the cancel before this one was done \d min ago"
    assert ok and re.fullmatch(said, later), later
    assert printer.sent == 1
    printer.start_print("benchy_B.gcode")
    watcher.step()
    printer.cancel()  # at the printer
    watcher.step()
    ok, other = _press(watcher, Verb.CANCEL, None)
    assert not ok and "not printing" in other and "before this one" not in other, other
    assert printer.sent == 3
    watcher.close()


def test_a_cancel_pressed_again_while_the_api_is_away_is_sent_not_answered_done(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """The owner's first Cancel showed; then the API went away (OctoPrint lost its serial
    link) and a print may have started at the printer: the idle the watcher kept is the API's
    last word, not what the printer does. A Cancel then was answered "done" unasked."""
    printer = _Unreachable("benchy_A.gcode")
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, _folder(tmp_path / "rec", list(normal_frames)), printer
    )
    watcher.step()
    assert _press(watcher, Verb.CANCEL, None)[0]
    printer.offline = True
    printer.start_print("benchy_B.gcode")
    for _ in range(3):
        watcher.step()
    ok, said = _press(watcher, Verb.CANCEL, None)  # sent: the printer's API is asked
    assert not ok and "before this one" not in said, said
    assert printer.actions.count(Action.CANCEL) == 2
    watcher.close()


def test_a_cancel_of_an_idle_printer_nobody_cancelled_says_why(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """Idle for a reason of its own (OctoPrint without its printer, between two prints): a
    Cancel is no "done", whatever printer answers; the printer's client says why."""
    printer = SimulatedPrinter("benchy_A.gcode")
    printer.cancel()  # ended before the watchdog started
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, _folder(tmp_path / "rec", list(normal_frames)), printer
    )
    watcher.step()
    ok, detail = _press(watcher, Verb.CANCEL, None)
    assert not ok and "not printing" in detail, detail
    watcher.close()


def test_the_owners_cancel_of_a_paused_print_that_stays_paused_is_not_done(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """A paused print is no cancelled one: "accepted cancel; e3 is paused" was answered done."""
    printer = _CancelOnlySaid("benchy_A.gcode")
    printer.pause()
    watcher = _watcher(
        tmp_path, tiny_adaptive_bundle, _folder(tmp_path / "rec", list(normal_frames)), printer
    )
    watcher.step()
    done = watcher.submit(Command("e3", Verb.CANCEL, None, source="mqtt"))
    watcher.step()
    final = _until_decided(watcher, done.result(timeout=5))
    assert not final.ok and "still paused" in final.detail, final
    watcher.close()


def test_a_pause_late_to_its_watcher_and_not_shown_yet_is_told_its_end(
    tmp_path, tiny_adaptive_bundle, normal_frames, monkeypatch
) -> None:
    """A pause whose API answered after the sender's wait (under way), the printer not
    showing it yet (under way again): Home Assistant's Last command and the phone took the
    second "under way" for the end, the phone was told the pause failed, and its real end was
    never told."""
    from watchdog.daemon import Daemon

    class SlowToAnswer(_PausedOnlySaid):
        def pause(self) -> ActionResult:
            time.sleep(0.6)
            return super().pause()

    frames = _folder(tmp_path / "rec", list(normal_frames[:30]))
    daemon, watcher = _daemon_of_one_watcher(tmp_path, tiny_adaptive_bundle, frames, "pause")
    watcher.printer = SlowToAnswer("benchy.gcode", Outcome.DONE)
    monkeypatch.setattr(Daemon, "answer_within", staticmethod(lambda w: 0.2))
    watcher.step()
    answer: list[CommandResult] = []
    sender = threading.Thread(
        target=lambda: answer.append(daemon.dispatch(Command("e3", Verb.PAUSE, None, "mqtt")))
    )
    sender.start()
    while sender.is_alive():
        watcher.step()
        sender.join(0.05)
    later = time.time() + 1000  # past api.confirm_s
    watcher.clock = lambda: later
    final = _until_decided(watcher, answer[0])
    assert not final.under_way and "did NOT pause" in final.detail, final
    watcher.close()


class _PausesLate(SimulatedPrinter):
    """A printer that takes a pause and shows it only when the test says (``show``)."""

    def pause(self) -> ActionResult:
        return ActionResult(Action.PAUSE, Outcome.DONE, "accepted pause", 1)

    def show(self) -> None:
        super().pause()


def test_a_pause_followed_across_a_reload_is_told_when_the_new_watcher_sees_it(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """Every settings save reloads the watchers: a Pause pressed just before was answered
    "may have happened" by the watcher that went, and never told when the printer showed
    it."""
    printer = _PausesLate("benchy_A.gcode")
    old, first = _owner_pauses(tmp_path, tiny_adaptive_bundle, normal_frames[:12], printer)
    assert first.under_way and first.later is not None, first
    new = _watcher(tmp_path, tiny_adaptive_bundle, tmp_path / "rec", printer)
    old.close()  # its loop ended
    old.retire(new)
    printer.show()
    new.step()
    end = first.later.result(timeout=0)
    assert end.ok and end.detail == "e3 is paused", end
    new.close()


def test_a_pause_followed_across_a_reload_to_another_printer_api_is_of_unknown_end(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """A settings save that points the printer at another API: what the old one took tells
    nothing of the new one (a Pause pressed again would have been taken for the old one's,
    and never sent to the new printer)."""
    printer = _PausesLate("benchy_A.gcode")
    old, first = _owner_pauses(tmp_path, tiny_adaptive_bundle, normal_frames[:12], printer)
    assert first.under_way and first.later is not None, first
    new = _watcher(tmp_path, tiny_adaptive_bundle, tmp_path / "rec", printer)
    new.cfg = PrinterConfig(
        name="e3",
        camera=new.cfg.camera,
        action=new.cfg.action,
        api=ApiConfig(confirm_s=90.0, url="http://192.0.2.7"),
    )
    old.close()
    old.retire(new)
    end = first.later.result(timeout=0)
    assert end.unknown and "e3's printer API changed in the settings" in end.detail, end
    assert new.owner_stops.waiting_for(Action.PAUSE, None) is None
    new.close()


def test_a_pause_sent_without_an_answer_is_told_done_once_the_printer_shows_it(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """Moonraker answers a PAUSE only when the macro has run: the API's timeout passed
    ("may not have happened"), then the printer showed it paused, and Home Assistant's Last
    command kept saying it may not have happened."""

    class NoAnswer(SimulatedPrinter):
        def pause(self) -> ActionResult:
            super().pause()
            return ActionResult(Action.PAUSE, Outcome.UNKNOWN, "no answer (timed out)", 3)

    watcher, result = _owner_pauses(
        tmp_path, tiny_adaptive_bundle, normal_frames[:4], NoAnswer("benchy_A.gcode")
    )
    assert result.ok and not result.unknown, result
    assert result.detail == "no answer (timed out); e3 is paused", result
    watcher.close()


def test_the_owners_pause_the_printer_shows_at_once_is_done_at_once(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """Moonraker answers a pause once the macro has run: the printer shows it paused at the
    poll that follows, and the owner is answered done there and then."""
    printer = SimulatedPrinter("benchy_A.gcode")
    watcher, result = _owner_pauses(tmp_path, tiny_adaptive_bundle, normal_frames[:4], printer)
    assert result.ok and not result.under_way and result.detail.endswith("e3 is paused"), result
    watcher.close()


def test_a_failure_told_and_unanswered_still_stands_after_a_restart_mid_print(
    tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames
) -> None:
    """A notify-only alert (or a pause that failed), nobody answering, the print running on:
    a restart of the watchdog turned Home Assistant's failure sensor off."""
    printer = SimulatedPrinter("benchy_A.gcode")
    watcher, frames, incident = _told(
        tmp_path, tiny_adaptive_bundle, normal_frames, anomalous_frames, printer
    )
    assert watcher.status()["failure"]
    watcher.close()
    restarted = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer, "notify")
    restarted.step()
    status = restarted.status()
    assert status["failure"] and status["last_alert"]["incident"] == incident, status
    restarted.close()


class _PollsCounted(SimulatedPrinter):
    """The simulated printer, idle, counting how often its API is asked."""

    def __init__(self) -> None:
        super().__init__()
        self.cancel()
        self.polls = 0

    def status(self) -> PrinterStatus:
        self.polls += 1
        return super().status()


def test_an_idle_printer_is_not_asked_without_a_pause_at_interval_0(
    tmp_path, tiny_adaptive_bundle, normal_frames
) -> None:
    """At ``interval_s: 0`` (a recording read as fast as it can be) each step of an idle
    printer, reading no frame, asked its API again at once: about 1,250 requests a second to
    a real OctoPrint. A step that reads no camera waits ``IDLE_STEP_S``."""
    from watchdog.watcher import IDLE_STEP_S

    printer = _PollsCounted()
    frames = _folder(tmp_path / "rec", list(normal_frames[:4]))
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    stop = threading.Event()
    loop = threading.Thread(target=watcher.run, args=(stop,))
    loop.start()
    time.sleep(2.0)
    stop.set()
    loop.join(10)
    assert not loop.is_alive()
    assert 1 <= printer.polls <= 2.0 / IDLE_STEP_S + 2, printer.polls


def test_a_printer_without_api_is_not_said_to_be_printing(
    tmp_path, tiny_adaptive_bundle, normal_frames, caplog
) -> None:
    """With api.kind none the log said "printer printing at the watchdog's start (no job)",
    though no printer was asked: it says that none is, and that it is watched all the time."""

    caplog.set_level(logging.INFO, "watchdog.watcher")
    frames = _folder(tmp_path / "rec", list(normal_frames[:4]))
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, NoPrinter())
    watcher.step()
    assert "e3: no printer API (api.kind none): watched all the time" in caplog.text
    assert "printing at the watchdog's start" not in caplog.text


def test_a_print_under_way_at_the_start_is_not_logged_as_one_just_started(
    tmp_path, tiny_adaptive_bundle, normal_frames, caplog
) -> None:
    """Restarted mid-print, the daemon logged "printer idle → printing": the printer had been
    printing all along, the daemon only did not know it. A print that starts later is a
    change, logged so."""
    caplog.set_level(logging.INFO, "watchdog.watcher")
    printer = SimulatedPrinter("benchy.gcode")
    frames = _folder(tmp_path / "rec", list(normal_frames[:4]))
    watcher = _watcher(tmp_path, tiny_adaptive_bundle, frames, printer)
    watcher.step()
    assert "e3: printer printing at the watchdog's start (benchy.gcode)" in caplog.text
    assert "→ printing" not in caplog.text
    printer.cancel()
    watcher.step()
    printer.start_print("second.gcode")
    watcher.step()
    assert "e3: printer idle → printing (second.gcode)" in caplog.text
    watcher.camera.close()
