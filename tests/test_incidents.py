"""The incident store / outbox on disk, false-alarm feedback, and the `feedback` command."""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from watchdog.__main__ import main as cli
from watchdog.incidents import (
    IncidentError,
    IncidentStore,
    ThrottledLog,
    false_alarms_dir,
    list_incidents,
    mark_not_failure,
    new_incident_id,
)


def jpeg(seed: int = 0) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def alert(score: float = 0.9) -> dict:
    return {
        "printer": "ender3",
        "score": np.float32(score),
        "threshold": 0.5,
        "consecutive": 3,
        "action": "pause",
        "action_result": {"outcome": "done"},
    }


def test_saved_incident_has_frames_json_and_pending_marker(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path)
    frame, heat = jpeg(1), jpeg(2)
    inc = store.save("ender3", alert(0.75), frame, heat)
    assert inc.path == tmp_path / "incidents" / "ender3" / inc.id
    assert (inc.path / "frame.jpg").read_bytes() == frame
    assert (inc.path / "heatmap.jpg").read_bytes() == heat
    saved = json.loads((inc.path / "alert.json").read_text())
    assert saved["incident"] == inc.id and saved["printer"] == "ender3"
    assert saved["score"] == pytest.approx(0.75) and "time" in saved
    assert json.loads(inc.payload) == saved
    assert (inc.path / "pending").exists()
    assert [i.id for i in store.pending()] == [inc.id]

    store.delivered(inc)
    assert not (inc.path / "pending").exists()
    assert store.pending() == []


def test_discarded_draft_leaves_the_listing_before_its_files_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dashboard (or a pending scan) reading the folder mid-delete sees the final
    incident only, never a draft with half its files gone."""
    store = IncidentStore(tmp_path)
    draft = store.save("ender3", alert(0.8), jpeg(1), jpeg(2))
    final = store.save("ender3", alert(0.9), jpeg(3), jpeg(4))
    seen: list[list[str]] = []
    real_rmtree = shutil.rmtree

    def rmtree_watched(path: Path, *args: object, **kwargs: object) -> None:
        seen.append([v.id for v in list_incidents(tmp_path, ["ender3"])])
        seen.append([i.id for i in store.pending()])
        real_rmtree(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(shutil, "rmtree", rmtree_watched)
    store.discard(draft)
    assert seen == [[final.id], [final.id]]
    assert [v.id for v in list_incidents(tmp_path, ["ender3"])] == [final.id]
    assert sorted(p.name for p in (tmp_path / "incidents" / "ender3").iterdir()) == [final.id]


def test_pending_survive_a_new_store_oldest_first(tmp_path: Path) -> None:
    first = IncidentStore(tmp_path)
    ids = [first.save("ender3", alert(), jpeg(), jpeg()).id for _ in range(3)]
    other = first.save("prusa", alert(), jpeg(), jpeg())
    first.delivered(other)
    again = IncidentStore(tmp_path).pending()
    assert [i.id for i in again] == sorted(ids) == ids
    assert all(i.alert["incident"] == i.id for i in again)


def test_incidents_made_in_the_same_millisecond_keep_their_order() -> None:
    # Oldest first must not depend on a random suffix when alerts come in a burst.
    ids = [new_incident_id() for _ in range(200)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_prune_keeps_newest_and_never_pending(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path, keep=2)
    oldest_pending = store.save("ender3", alert(), jpeg(), jpeg())
    delivered = []
    for _ in range(4):
        inc = store.save("ender3", alert(), jpeg(), jpeg())
        store.delivered(inc)
        delivered.append(inc)
    store.prune("ender3")
    left = sorted(p.name for p in (tmp_path / "incidents" / "ender3").iterdir())
    assert left == [oldest_pending.id, delivered[-1].id]


def test_not_failure_copies_frame_for_retraining_and_records_verdict(tmp_path: Path) -> None:
    store = IncidentStore(tmp_path)
    frame = jpeg(7)
    inc = store.save("ender3", alert(), frame, jpeg(8))
    copy = mark_not_failure(tmp_path, "ender3", inc.id)
    assert (
        copy.parent
        == false_alarms_dir(tmp_path, "ender3")
        == tmp_path / "collected" / "ender3" / "false_alarms"
    )
    assert copy.read_bytes() == frame
    assert cv2.imdecode(np.frombuffer(copy.read_bytes(), np.uint8), cv2.IMREAD_COLOR).shape == (
        48,
        64,
        3,
    )
    assert json.loads((inc.path / "alert.json").read_text())["verdict"] == "not_failure"


def test_a_frame_that_is_a_link_or_empty_is_not_copied_into_the_training_set(
    tmp_path: Path,
) -> None:
    """``frame.jpg`` replaced by a link to a private file elsewhere (something else able to
    write in the storage folder): "not a failure" copied that file into the normal set, readable
    by all; an empty one was copied too. The verdict is kept; the copy is refused, said."""
    from watchdog.incidents import FramesNotKept

    secret = tmp_path / "elsewhere" / "private.key"
    secret.parent.mkdir()
    secret.write_bytes(b"not a picture")
    secret.chmod(0o600)
    store = IncidentStore(tmp_path / "state")
    for name, make in (
        ("link", lambda frame: frame.symlink_to(secret)),
        ("empty", lambda frame: frame.write_bytes(b"")),
    ):
        inc = store.save("ender3", alert(), jpeg(7), jpeg(8))
        assert inc.path is not None
        (inc.path / "frame.jpg").unlink()
        make(inc.path / "frame.jpg")
        with pytest.raises(FramesNotKept, match="not a picture it saved"):
            mark_not_failure(tmp_path / "state", "ender3", inc.id)
        assert json.loads((inc.path / "alert.json").read_text())["verdict"] == "not_failure", name
    folder = false_alarms_dir(tmp_path / "state", "ender3")
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_changed_verdict_takes_its_frames_out_of_the_other_training_folder(
    tmp_path: Path,
) -> None:
    """ "Not a failure", then "Confirm failure" (a misclick put right), and back: the frame is
    only ever where the last answer put it, never both a normal frame and a failure."""
    from watchdog.incidents import failures_dir, mark_failure

    inc = IncidentStore(tmp_path).save("ender3", alert(), jpeg(7), jpeg(8))
    normal, failed = false_alarms_dir(tmp_path, "ender3"), failures_dir(tmp_path, "ender3")
    mark_not_failure(tmp_path, "ender3", inc.id)
    mark_failure(tmp_path, "ender3", inc.id)
    assert list(normal.iterdir()) == [] and [p.name for p in failed.iterdir()] == [f"{inc.id}.jpg"]
    mark_not_failure(tmp_path, "ender3", inc.id)
    assert [p.name for p in normal.iterdir()] == [f"{inc.id}.jpg"] and list(failed.iterdir()) == []


def test_feedback_that_cannot_take_back_the_verdict_befores_frame_leaves_the_verdict_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ "Not a failure", then "failure" where the frame kept by the first cannot be removed
    (here a folder stands at its name: the tests run as root, whom a read-only folder does
    not stop). The failure verdict was recorded and the frame left among the normal frames:
    the next training fitted a confirmed failure as normal, and the owner read "cannot record
    the verdict". Now the verdict is as it was, and the one line says why."""
    cfg = write_config(tmp_path)
    inc = IncidentStore(tmp_path / "state").save("ender3", alert(), jpeg(), jpeg())
    argv = ["feedback", "--config", str(cfg), "--printer", "ender3", "--incident", inc.id]
    assert cli([*argv, "--verdict", "not_failure"]) == 0
    copy = false_alarms_dir(tmp_path / "state", "ender3") / f"{inc.id}.jpg"
    copy.unlink()
    (copy / "stuck").mkdir(parents=True)
    capsys.readouterr()
    assert cli([*argv, "--verdict", "failure"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "verdict not changed: cannot remove" in err, err
    assert str(copy) in err, err
    assert json.loads((inc.path / "alert.json").read_text())["verdict"] == "not_failure"
    assert not (tmp_path / "state" / "collected" / "ender3" / "failures").exists()


def test_two_verdicts_at_once_leave_one_readable_answer_and_its_frame_in_its_folder(
    tmp_path: Path,
) -> None:
    """The phone's "Not a failure" and Home Assistant's "Confirm failure" landing together (or
    a double click): alert.json stays readable and says one of them, and the frame is in that
    one's folder only."""
    import threading

    from watchdog.incidents import failures_dir, mark_failure

    store = IncidentStore(tmp_path)
    normal, failed = false_alarms_dir(tmp_path, "ender3"), failures_dir(tmp_path, "ender3")
    for round_ in range(40):
        inc = store.save("ender3", alert(), jpeg(round_), jpeg(round_ + 1))
        errors: list[BaseException] = []
        start = threading.Barrier(2)

        def judge(mark, inc_id=inc.id, errors=errors, start=start) -> None:
            start.wait()
            try:
                mark(tmp_path, "ender3", inc_id)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        both = [threading.Thread(target=judge, args=(m,)) for m in (mark_failure, mark_not_failure)]
        for t in both:
            t.start()
        for t in both:
            t.join(10)
        assert errors == []
        verdict = json.loads((inc.path / "alert.json").read_text())["verdict"]
        kept, other = (failed, normal) if verdict == "failure" else (normal, failed)
        assert (kept / f"{inc.id}.jpg").is_file() and not (other / f"{inc.id}.jpg").exists()


def test_two_processes_giving_verdicts_at_once_leave_one_answer_and_its_frame_in_its_folder(
    tmp_path: Path,
) -> None:
    """``feedback`` on the command line while the daemon takes the phone's answer: two
    processes, where a lock in one process cannot see the other. Each incident ends with one
    readable verdict and its frame in that verdict's folder only."""
    import subprocess
    import sys

    from watchdog.incidents import failures_dir

    store = IncidentStore(tmp_path)
    incidents = [store.save("ender3", alert(), jpeg(n), jpeg(n + 1)) for n in range(40)]
    script = (
        "import sys; from pathlib import Path; from watchdog import incidents as i\n"
        "mark = i.mark_failure if sys.argv[2] == 'failure' else i.mark_not_failure\n"
        "for inc in sys.argv[3:]:\n"
        "    for _ in range(4): mark(Path(sys.argv[1]), 'ender3', inc)\n"
    )
    ids = [inc.id for inc in incidents]
    both = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), verdict, *ids])
        for verdict in ("failure", "not_failure")
    ]
    assert [p.wait(120) for p in both] == [0, 0]
    normal, failed = false_alarms_dir(tmp_path, "ender3"), failures_dir(tmp_path, "ender3")
    for inc in incidents:
        verdict = json.loads((inc.path / "alert.json").read_text())["verdict"]
        kept, other = (failed, normal) if verdict == "failure" else (normal, failed)
        assert (kept / f"{inc.id}.jpg").is_file() and not (other / f"{inc.id}.jpg").exists()


@pytest.mark.parametrize("damage", ['{"score": 0.9, "job"', "[" * 100_000], ids=["cut", "nested"])
def test_a_verdict_on_an_unreadable_alert_is_refused_before_any_frame_is_kept(
    tmp_path: Path, damage: str
) -> None:
    inc = IncidentStore(tmp_path).save("ender3", alert(), jpeg(7), jpeg(8))
    (inc.path / "alert.json").write_text(damage)
    with pytest.raises(IncidentError, match="alert.json: cannot read"):
        mark_not_failure(tmp_path, "ender3", inc.id)
    assert not false_alarms_dir(tmp_path, "ender3").exists()


@pytest.mark.parametrize("incident", ["nope", "../../etc", "a/b", "", "x" * 65])
def test_not_failure_refuses_unknown_or_unsafe_ids(tmp_path: Path, incident: str) -> None:
    IncidentStore(tmp_path).save("ender3", alert(), jpeg(), jpeg())
    with pytest.raises(IncidentError, match="incident"):
        mark_not_failure(tmp_path, "ender3", incident)
    assert not (tmp_path / "collected").exists()


def test_throttled_log_counts_what_it_holds_back(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.throttle")
    caplog.set_level(logging.INFO, "test.throttle")
    once_a_minute = ThrottledLog(60)
    assert [once_a_minute(log, logging.ERROR, "k", "disk full") for _ in range(5)] == [True] + [
        False
    ] * 4
    assert once_a_minute(log, logging.ERROR, "other", "other key") is True
    once_a_minute.reset("k")  # the failure ended: the next one is news
    assert once_a_minute(log, logging.ERROR, "k", "disk full") is True
    always = ThrottledLog(0)
    always(log, logging.ERROR, "k", "again")
    always(log, logging.ERROR, "k", "again")
    assert [r.getMessage() for r in caplog.records] == [
        "disk full",
        "other key",
        "disk full",
        "again",
        "again",
    ]


def test_a_failure_that_goes_on_all_night_is_reminded_less_and_less_often(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broker down all night, retried every 30 s: one line a minute, 480 by morning. The
    reminders come after 1, 5, 15, then every 60 minutes, each saying when the next comes;
    once over (quiet a while), the next failure is said at once."""
    import time as clock

    now = [1000.0]
    monkeypatch.setattr(clock, "monotonic", lambda: now[0])
    log = logging.getLogger("test.throttle")
    caplog.set_level(logging.INFO, "test.throttle")
    throttle = ThrottledLog(60)
    for _ in range(8 * 120):  # eight hours, every 30 s
        throttle(log, logging.ERROR, "broker", "cannot connect")
        now[0] += 30
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 11, said  # at 0, 1, 6, 21 min, then once an hour
    assert said[1] == (
        "cannot connect (1 more like this since the last report; said again in 5 min if it goes on)"
    )
    assert said[-1].endswith("said again in 1 h if it goes on)"), said[-1]
    now[0] += 3 * 3600  # fixed, and quiet since
    caplog.clear()
    assert throttle(log, logging.ERROR, "broker", "cannot connect")
    assert [r.getMessage() for r in caplog.records] == ["cannot connect"]


@pytest.mark.parametrize("fixture", ["readonly_storage", "full_storage"])
def test_unwritable_storage_returns_unsaved_and_logs_once(
    request: pytest.FixtureRequest, fixture: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = request.getfixturevalue(fixture)
    caplog.set_level(logging.ERROR, "watchdog.incidents")
    store = IncidentStore(storage)
    incidents = [store.save("ender3", alert(), jpeg(i), jpeg(i)) for i in range(5)]
    assert all(i.path is None for i in incidents)
    assert len({i.id for i in incidents}) == 5
    assert all(i.alert["incident"] == i.id for i in incidents)
    errors = [r for r in caplog.records if "cannot save incident" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in caplog.records]
    store.delivered(incidents[0])  # nothing to clear, no error


@pytest.mark.parametrize("fixture", ["readonly_storage", "full_storage"])
def test_a_settings_save_the_disk_refuses_names_the_settings_file(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    """A save from the page on a full or read-only disk answered "cannot save the settings
    in the storage folder: No space left on device" (no file named), or named the hidden
    temporary file beside it."""
    from watchdog.config import DetectionConfig
    from watchdog.overrides import overrides_path, save

    storage = request.getfixturevalue(fixture)
    with pytest.raises(OSError) as err:
        save(storage, DetectionConfig(), "ender3", {"sensitivity": 1.5})
    assert err.value.filename == str(overrides_path(storage)), err.value
    assert err.value.strerror in ("No space left on device", "Read-only file system"), err.value


# --------------------------------------------------------------------------- CLI


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"storage: {{dir: {tmp_path / 'state'}}}\nprinters:\n  - name: ender3\n")
    return cfg


def test_feedback_says_its_verdict_on_a_terminal_that_lacks_a_names_characters(
    tmp_path: Path,
) -> None:
    """A storage folder named in characters the output's encoding lacks (a terminal set to
    ASCII): the verdict was recorded, then said by a traceback, as if it had failed."""
    import subprocess
    import sys

    home = tmp_path / "印"
    home.mkdir()
    cfg = write_config(home)
    inc = IncidentStore(home / "state").save("ender3", alert(), jpeg(3), jpeg(4))
    argv = ["--config", str(cfg), "--printer", "ender3", "--incident", inc.id]
    proc = subprocess.run(
        [sys.executable, "-m", "watchdog", "feedback", *argv, "--verdict", "not_failure"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONIOENCODING": "ascii"},
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "\\u5370" in proc.stdout, proc.stdout


def test_feedback_cli_not_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path)
    frame = jpeg(3)
    inc = IncidentStore(tmp_path / "state").save("ender3", alert(), frame, jpeg(4))
    rc = cli(
        [
            "feedback",
            "--config",
            str(cfg),
            "--printer",
            "ender3",
            "--incident",
            inc.id,
            "--verdict",
            "not_failure",
        ]
    )
    assert rc == 0
    copy = tmp_path / "state" / "collected" / "ender3" / "false_alarms" / f"{inc.id}.jpg"
    assert copy.read_bytes() == frame
    assert str(copy) in capsys.readouterr().out


def test_feedback_cli_names_a_folder_with_spaces_as_a_shell_takes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The "retrain with" line is pasted into a shell: a storage folder with a space in its
    name ran the trainer on half the path."""
    cfg = tmp_path / "config.yaml"
    state = tmp_path / "my state"
    cfg.write_text(f"storage: {{dir: '{state}'}}\nprinters:\n  - name: ender3\n")
    inc = IncidentStore(state).save("ender3", alert(), jpeg(), jpeg())
    argv = ["feedback", "--config", str(cfg), "--printer", "ender3", "--incident", inc.id]
    assert cli([*argv, "--verdict", "not_failure"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert shlex.split(line)[:5] == ["retrain", "with:", "python", "-m", "trainer"], line
    assert shlex.split(line)[6] == str(state / "collected"), line


def test_feedback_cli_failure_verdict(tmp_path: Path) -> None:
    cfg = write_config(tmp_path)
    inc = IncidentStore(tmp_path / "state").save("ender3", alert(), jpeg(), jpeg())
    rc = cli(
        [
            "feedback",
            "--config",
            str(cfg),
            "--printer",
            "ender3",
            "--incident",
            inc.id,
            "--verdict",
            "failure",
        ]
    )
    assert rc == 0
    assert json.loads((inc.path / "alert.json").read_text())["verdict"] == "failure"
    # The frame joins the labelled failures (the trainer's --anomalous), never the normal set.
    assert [
        p.name for p in (tmp_path / "state" / "collected" / "ender3" / "failures").iterdir()
    ] == [f"{inc.id}.jpg"]
    assert not (tmp_path / "state" / "collected" / "ender3" / "false_alarms").exists()


@pytest.mark.parametrize(
    ("printer", "incident", "says"),
    [
        ("ender3", "20200101T000000000Z-abcdef", "no incident"),
        ("prusa", "x", "--printer"),
        ("ender3", "../escape", "not valid"),
    ],
)
def test_feedback_cli_bad_input_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], printer: str, incident: str, says: str
) -> None:
    cfg = write_config(tmp_path)
    rc = cli(
        [
            "feedback",
            "--config",
            str(cfg),
            "--printer",
            printer,
            "--incident",
            incident,
            "--verdict",
            "not_failure",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and says in err and "Traceback" not in err


def test_an_alert_made_with_the_clock_behind_is_still_the_latest(tmp_path: Path) -> None:
    """A Pi started with its clock behind the incidents it saved before (no real-time clock,
    its time not set yet): the new alert's id sorted oldest, so its phone buttons were refused
    as "an older alert", the dashboard listed it last and pruning deleted it first."""
    from watchdog.comms.actions import latest_incident

    store = IncidentStore(tmp_path, keep=3)
    ahead = tmp_path / "incidents" / "ender3" / "20991231T235959000Z-abcdef"
    ahead.mkdir(parents=True)
    (ahead.parent / "backup").mkdir()  # a folder of another name (sorts after every id)
    (ahead / "alert.json").write_text(json.dumps({"printer": "ender3", "score": 1.0}))
    new = store.save("ender3", {"score": 9.0}, jpeg(), jpeg(), pending=False)
    assert new.id > ahead.name
    assert latest_incident(tmp_path, "ender3") == new.id
    assert [i.id for i in list_incidents(tmp_path, ["ender3"], limit=1)] == [new.id]


def test_an_alert_after_a_folder_named_for_the_end_of_time_is_still_saved(tmp_path: Path) -> None:
    """A folder named for the last millisecond of the year 9999 (put there by something
    else): the next id, one millisecond after it, could not be made, and every alert of the
    printer failed its step: none saved, sent or shown. It is made by the clock."""
    store = IncidentStore(tmp_path)
    end = tmp_path / "incidents" / "ender3" / "99991231T235959999Z-abcdef"
    end.mkdir(parents=True)
    (end / "alert.json").write_text(json.dumps({"printer": "ender3", "score": 1.0}))
    first = store.save("ender3", {"score": 9.0}, jpeg(), jpeg(), pending=False)
    second = store.save("ender3", {"score": 9.5}, jpeg(), jpeg(), pending=False)
    assert first.path is not None and second.path is not None
    assert first.id < second.id < end.name
    # and it is no alert of ours: the newest is the real one (its phone buttons were refused
    # as "an older alert's"), and the page does not list it
    from watchdog.comms.actions import latest_incident

    assert latest_incident(tmp_path, "ender3") == second.id
    assert [i.id for i in list_incidents(tmp_path, ["ender3"], limit=5)] == [second.id, first.id]


def test_a_draft_under_way_hides_behind_the_alert_before_it_until_settled(tmp_path: Path) -> None:
    """While a pause runs, its draft is no incident yet: "the latest alert" (a verdict from
    Home Assistant) is the one before it, not "no alert"; once a watchdog that stopped during
    the pause starts again, the draft is an incident, whatever printer it belongs to."""
    store = IncidentStore(tmp_path)
    before = store.save("ender3", {"score": 5.0}, jpeg(), jpeg(), pending=False)
    draft = store.save("ender3", {"score": 9.0}, jpeg(), jpeg(), pending=True, draft=True)
    other = store.save("gone", {"score": 9.0}, jpeg(), jpeg(), pending=True, draft=True)
    assert [i.id for i in list_incidents(tmp_path, ["ender3"], limit=1)] == [before.id]
    assert store.pending() == []
    store.settle_drafts()
    assert [i.id for i in list_incidents(tmp_path, ["ender3"], limit=1)] == [draft.id]
    assert [i.id for i in store.pending()] == [draft.id, other.id]


def test_an_outbox_entry_made_with_the_clock_behind_is_sent_after_those_saved_before(
    tmp_path: Path,
) -> None:
    """Phone notifications wait in the outbox in the order of their ids: one written after
    the clock was set back (a Pi before its time is set) went out before an older one still
    waiting (a "resumed" before its "failure")."""
    from watchdog.comms.outbox import Outbox

    outbox = Outbox(tmp_path)
    first = outbox.put(
        "notify-phone", "ender3", {"title": "failure"}, entry_id="20991231T235959000Z-abcdef"
    )
    second = outbox.put("notify-phone", "ender3", {"title": "resumed"})
    assert second.id > first.id
    assert [e.body["title"] for e in outbox.pending("notify-phone")] == ["failure", "resumed"]


def test_a_delivered_notification_cut_off_mid_delete_is_never_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power cut while a delivered notification's folder was being deleted left its
    entry.json without its picture: after the restart it was sent again, picture-less (or its
    picture alone, a "damaged entry" at every start). It leaves the listing in one step first."""
    from watchdog.comms import outbox as outbox_module
    from watchdog.comms.outbox import Outbox

    outbox = Outbox(tmp_path)
    sent = outbox.put("notify-phone", "ender3", {"title": "failure"}, jpeg(1))
    kept = outbox.put("notify-phone", "ender3", {"title": "resumed"}, jpeg(2))

    def cut_off(path: Path, *args: object, **kw: object) -> None:
        for child in sorted(Path(path).iterdir()):  # the picture goes, then the power
            child.unlink()
            raise OSError(5, "power cut")

    monkeypatch.setattr(outbox_module.shutil, "rmtree", cut_off)
    outbox.done(sent)
    monkeypatch.undo()
    assert [e.body["title"] for e in Outbox(tmp_path).pending("notify-phone")] == ["resumed"]
    assert kept.path is not None and kept.path.is_dir()


def test_an_answer_given_twice_keeps_the_first_answers_time(tmp_path: Path) -> None:
    """The phone's Resume, then the poll that sees the print running, answer the same alert
    twice: the alert keeps the time of the first (when the owner answered), and its file is
    not written again for nothing; another answer (paused again through it) is written."""
    from watchdog.incidents import closing_answer, record_answer

    inc = IncidentStore(tmp_path).save("ender3", alert(), jpeg(1), jpeg(2))
    record_answer(tmp_path, "ender3", inc.id, "resumed")
    first = (
        (inc.path / "alert.json").stat().st_ino,
        json.loads((inc.path / "alert.json").read_text()),
    )
    record_answer(tmp_path, "ender3", inc.id, "resumed")
    assert (
        (inc.path / "alert.json").stat().st_ino,
        json.loads((inc.path / "alert.json").read_text()),
    ) == first
    record_answer(tmp_path, "ender3", inc.id, "paused")
    again = json.loads((inc.path / "alert.json").read_text())
    assert again["answer"] == "paused" and closing_answer(again) == ""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_feedback_whose_output_cannot_be_written_does_not_blame_the_storage(tmp_path: Path) -> None:
    """`feedback ... > /dev/full`: the verdict was recorded, and the error said the storage
    folder could not record it; then it named no file at all. It names the output now."""
    import subprocess

    from tests.daemon_helpers import watchdog_cmd

    cfg = write_config(tmp_path)
    inc = IncidentStore(tmp_path / "state").save("ender3", alert(), jpeg(), jpeg())
    args = ["--config", str(cfg), "--printer", "ender3", "--incident", inc.id]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a shell's
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            watchdog_cmd("feedback", *args, "--verdict", "failure"),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=env,
        )
    assert proc.returncode != 0
    assert "cannot record the verdict" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: cannot use the standard output: No space left on device"
    ], proc.stderr
    assert json.loads((inc.path / "alert.json").read_text())["verdict"] == "failure"


@pytest.mark.parametrize("verdict", ["not_failure", "failure"])
def test_feedback_cli_whose_frames_cannot_be_kept_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], verdict: str
) -> None:
    """The retraining folder cannot take the frame (here a file stands where its folder goes):
    the verdict is recorded, and the owner is told in one line that the frames are not kept
    (it was a traceback)."""
    cfg = write_config(tmp_path)
    inc = IncidentStore(tmp_path / "state").save("ender3", alert(), jpeg(), jpeg())
    collected = tmp_path / "state" / "collected" / "ender3"
    collected.mkdir(parents=True)
    (collected / ("false_alarms" if verdict == "not_failure" else "failures")).write_text("")
    rc = cli(
        ["feedback", "--config", str(cfg), "--printer", "ender3", "--incident", inc.id]
        + ["--verdict", verdict]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert err.count("\n") == 1 and "verdict recorded, but" in err, err
    assert "could not be kept" in err, err
    assert json.loads((inc.path / "alert.json").read_text())["verdict"] == verdict


def test_a_folder_that_cannot_be_synced_does_not_make_a_saved_alert_look_unsaved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing SD card refuses to sync a folder after the rename put the entry in place
    (mocked: such a card cannot be made here). The entry was treated as unsaved: sent from
    memory, never marked done, so sent again at every start; the incident was off the page
    and its answers refused."""
    from watchdog import incidents as incidents_module
    from watchdog.comms import outbox as outbox_module
    from watchdog.comms.outbox import Outbox

    def failing_card(path: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(outbox_module, "fsync_dir", failing_card)
    monkeypatch.setattr(incidents_module, "fsync_dir", failing_card)
    outbox = Outbox(tmp_path)
    entry = outbox.put("mqtt", "ender3", {"title": "failure"})
    assert entry.path is not None
    outbox.done(entry)
    assert outbox.pending("mqtt") == []  # not sent again after a restart
    incident = IncidentStore(tmp_path).save("ender3", alert(), jpeg(), jpeg(), pending=False)
    assert incident.path is not None
    assert [i.id for i in list_incidents(tmp_path, ["ender3"])] == [incident.id]


def test_an_alert_that_fits_neither_its_own_folder_nor_its_draft_is_not_sent_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk is full: the final alert is not saved, nor can it be written into its draft
    (``replace_file`` made to fail, as a full disk cannot be made here). It is sent from
    memory; the draft left pending was sent again after the next start, as "the watchdog
    stopped before the pause finished"."""
    import errno

    from watchdog import incidents as incidents_module

    store = IncidentStore(tmp_path)
    draft = store.save("ender3", alert(), jpeg(), jpeg(), pending=True, draft=True)

    def full(*args: object, **kw: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(incidents_module, "replace_file", full)
    settled = store.settle(draft, {**alert(), "message": "Pause done"})
    monkeypatch.undo()
    assert settled.path is None and settled.alert["message"] == "Pause done"
    after_restart = IncidentStore(tmp_path)
    after_restart.settle_drafts()
    assert after_restart.pending() == []


def test_throttled_log_remembers_a_bounded_number_of_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Keys made of what arrives (a topic, a name) must not grow a daemon's memory without
    end; the failures seen most recently are still held back, the oldest told again."""
    log = logging.getLogger("test.throttle")
    caplog.set_level(logging.INFO, "test.throttle")
    throttle = ThrottledLog(60, max_keys=100)
    assert throttle(log, logging.ERROR, "disk", "disk full")
    for i in range(10_000):
        throttle(log, logging.ERROR, f"topic-{i}", "too large")
        if i % 50 == 0:  # a failure that keeps coming stays held back among them
            assert not throttle(log, logging.ERROR, "disk", "disk full")
    assert len(throttle._last) <= 100
    assert not throttle(log, logging.ERROR, "topic-9999", "too large")
    assert throttle(log, logging.ERROR, "topic-0", "too large")  # forgotten: told again
    told = [r.getMessage() for r in caplog.records].count("disk full")
    assert told == 1, told


def test_an_outbox_folder_left_without_its_record_is_said_once_and_kept_aside(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A queued notification's folder holding its picture alone (left by an earlier
    version's delete cut short): it was skipped without a word at every look, and stayed on
    the card for good."""
    from watchdog.comms.outbox import Outbox

    left = tmp_path / "outbox" / "notify-phone" / "20261201T000000000Z-abcdef"
    left.mkdir(parents=True)
    (left / "attachment.jpg").write_bytes(jpeg(1))
    with caplog.at_level(logging.ERROR, logger="watchdog.comms.outbox"):
        for _ in range(3):
            assert Outbox(tmp_path).pending("notify-phone") == []
    [said] = [r.getMessage() for r in caplog.records]
    assert "cannot be read (no entry.json in it): not sent; kept as" in said, said
    [kept] = left.parent.glob(f"{left.name}.unreadable-*")
    assert (kept / "attachment.jpg").exists() and not left.exists()


@pytest.fixture
def machine_zone(monkeypatch: pytest.MonkeyPatch):
    """Sets the machine's time zone (TZ) for the test, the C library told (``tzset``)."""
    import time

    def set_zone(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


def test_a_time_told_to_the_owner_names_its_zone_and_an_hour_told_twice_is_told_apart(
    machine_zone,
) -> None:
    """ "the alert of 04:10" from a Pi left on UTC read as 04:10 on a phone in Berlin (05:10
    there); and as clocks went back, two alerts an hour apart were both "the alert of 02:30",
    the words a Home Assistant answer and a phone notification name an alert by."""
    from watchdog.incidents import raised_at

    machine_zone("Europe/Berlin")
    first, second = "20241027T003000000Z-aaaaaa", "20241027T013000000Z-bbbbbb"
    assert raised_at(first) == "2024-10-27 02:30 CEST"
    assert raised_at(second) == "2024-10-27 02:30 CET"
    machine_zone("UTC")
    assert raised_at(first) == "2024-10-27 00:30 UTC"


_ZONE_CHANGED = """
import subprocess, sys
from watchdog.incidents import raised_at
before = raised_at(sys.argv[1])
subprocess.run(["mount", "--bind", sys.argv[2], "/etc/localtime"], check=True)
print(before, "|", raised_at(sys.argv[1]))
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("mount") is None,
    reason="needs root, unshare and mount (a private /etc/localtime)",
)
def test_a_time_zone_set_while_the_watchdog_runs_is_the_one_its_times_are_told_in() -> None:
    """The owner sets the Pi's zone after the install (``timedatectl set-timezone``): the C
    library had read /etc/localtime once, and every time told stayed in the old zone until a
    restart. Here a new /etc/localtime is bind-mounted in a private mount namespace."""
    import subprocess
    import sys

    berlin = Path("/usr/share/zoneinfo/Europe/Berlin")
    if not berlin.is_file() or not Path("/etc/localtime").exists():
        pytest.skip("no zoneinfo here")
    env = {k: v for k, v in os.environ.items() if k != "TZ"}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    run = subprocess.run(
        [
            "unshare",
            "-m",
            sys.executable,
            "-c",
            _ZONE_CHANGED,
            "20241027T013000000Z-aaaaaa",
            str(berlin),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if run.returncode != 0 and "unshare" in run.stderr:
        pytest.skip(f"no private mount namespace here: {run.stderr.strip()[:200]}")
    assert run.returncode == 0, run.stderr
    before, after = run.stdout.strip().split(" | ")
    assert after == "2024-10-27 02:30 CET", (before, after)


def test_feedback_says_to_retrain_on_the_collected_folder_as_the_readme_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A confirmed failure said "retrain with: python -m trainer --anomalous
    .../collected/ender3/failures", a false alarm "--normal .../collected/ender3": two recipes
    beside the README's one, ``--normal <storage>/collected``, which reads both folders."""
    cfg = write_config(tmp_path)
    collected = tmp_path / "state" / "collected"
    for verdict in ("not_failure", "failure"):
        inc = IncidentStore(tmp_path / "state").save("ender3", alert(), jpeg(), jpeg())
        argv = ["feedback", "--config", str(cfg), "--printer", "ender3", "--incident", inc.id]
        capsys.readouterr()
        assert cli([*argv, "--verdict", verdict]) == 0
        out = capsys.readouterr().out
        assert f"retrain with: python -m trainer --normal {collected} ..." in out, out
