"""The daemon's commands as a user runs them: one-line errors with exit 2, replay, collect, demo."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from tests.daemon_helpers import run_cli, watchdog_cmd, write_config

SECRET = "k3y-that-must-never-show"


def _one_line_error(r) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_bad_config_names_the_key_and_exits_2(tmp_path, command) -> None:
    config = write_config(
        tmp_path / "c.yaml", printers=[{"name": "e3", "detection": {"consecutive": "x"}}]
    )
    line = _one_line_error(run_cli(command, "--config", str(config)))
    assert "printers.0.detection.consecutive" in line


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_a_mask_hiding_the_whole_watched_region_is_refused(tmp_path, command) -> None:
    """A mask over all the model watches would score every frame 0: nothing would ever pause."""
    bed = [
        [0.0, 0.4],
        [1.0, 0.4],
        [1.0, 1.0],
        [0.0, 1.0],
    ]  # the shipped model watches the bottom half
    config = write_config(
        tmp_path / "c.yaml",
        storage={"dir": str(tmp_path / "state")},
        printers=[{"name": "e3", "detection": {"mask": [bed]}}],
    )
    line = _one_line_error(run_cli(command, "--config", str(config)))
    assert "printers.e3.detection.mask" in line and "nothing would be judged" in line


def test_unknown_key_is_rejected_with_its_path(tmp_path) -> None:
    config = write_config(tmp_path / "c.yaml", printers=[{"name": "e3", "camera": {"sorce": 0}}])
    line = _one_line_error(run_cli("check-config", "--config", str(config)))
    assert "printers.0.camera.sorce: unknown key" in line


@pytest.mark.parametrize(
    ("printer", "key"),
    [
        (
            {"camera": {"source": "http://admin:hunter2@cam.local:70000/snap"}},
            "printers.0.camera.source",
        ),
        (
            {"api": {"kind": "octoprint", "url": "http://octopi.local:80a"}},
            "printers.0.api",
        ),
        # a password holding '/' or '#' unencoded: the parser reads a piece of it as the port,
        # or the rest as a fragment with the host in it; no piece of it may be shown
        ({"camera": {"source": "http://pi:hunt/er2@cam.local/snap"}}, "printers.0.camera.source"),
        ({"camera": {"source": "http://pi:4821#hunter2@cam.local/"}}, "printers.0.camera.source"),
        ({"api": {"kind": "moonraker", "url": "http://pi:hunt/er2@o.local"}}, "printers.0.api"),
    ],
)
def test_an_address_with_a_bad_port_is_refused_at_load(tmp_path, printer, key) -> None:
    config = write_config(tmp_path / "c.yaml", printers=[{"name": "e3", **printer}])
    line = _one_line_error(run_cli("check-config", "--config", str(config)))
    assert key in line and "not a valid address" in line
    assert "hunter2" not in line and "hunt" not in line and "4821" not in line


@pytest.mark.parametrize(
    ("source", "said"),
    [
        ("192.168.1.50:8080/?action=snapshot", "a camera's address starts with http://"),
        ("{tmp}/frames-not-there", "no such file, folder, device or URL"),
        ("{tmp}/empty", "no .jpg/.jpeg/.png frames in this folder"),  # collect has not run yet
        ("{tmp}/fifo", "not a folder of frames or a video file"),  # was "no such file"
        ("{tmp}/usb", "a link to /media/usb-not-mounted, which is not there"),
    ],
)
def test_a_camera_source_the_daemon_would_refuse_is_refused_by_check_config(
    tmp_path, source, said
) -> None:
    """check-config said "ok" for a source the daemon then refused at start (an address
    without http://, a folder not made yet): the installer's check, then a restart that
    failed. Both say so, naming the key to fix."""
    (tmp_path / "empty").mkdir()
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "usb").symlink_to("/media/usb-not-mounted")
    config = write_config(
        tmp_path / "c.yaml",
        storage={"dir": str(tmp_path / "state")},
        http={"listen": ""},
        mqtt={"host": ""},
        printers=[{"name": "e3", "camera": {"source": source.format(tmp=tmp_path)}}],
    )
    for command in ("check-config", "run"):
        r = run_cli(command, "--config", str(config))
        line = _one_line_error(r)
        assert r.returncode == 2 and f"{config}: printers.0.camera.source: " in line, line
        assert said in line, line


def _shipped_copy(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the shipped bundle, and a config of one printer that uses it."""
    from watchdog.detection.bundle import default_bundle_path

    shipped = tmp_path / "shipped"
    shutil.copytree(default_bundle_path(), shipped)
    config = write_config(
        tmp_path / "c.yaml",
        model=str(shipped),
        storage={"dir": str(tmp_path / "state")},
        printers=[{"name": "e3"}],
    )
    return shipped, config


def test_check_config_warns_of_a_bundle_made_to_evaluate_and_refuses_an_old_one(
    tmp_path,
) -> None:
    """A bundle of `--split session` (the README: do not ship it) loaded without a word, in
    check-config and in the daemon; one of an older trainer was "not a printer-watchdog
    bundle (format=None)"."""
    shipped, config = _shipped_copy(tmp_path)
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 0 and "warning: model" not in r.stderr, r.stderr
    meta = json.loads((shipped / "model.json").read_text())
    meta["data"]["protocol"] = "session (held-out prints: scratch_3)"
    (shipped / "model.json").write_text(json.dumps(meta))
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert f"warning: model {shipped}: trained to evaluate (--split session)" in r.stderr
    del meta["format"]
    (shipped / "model.json").write_text(json.dumps(meta))
    line = _one_line_error(run_cli("check-config", "--config", str(config)))
    assert "a bundle of an older trainer (it names no format): retrain it" in line, line


def test_invalid_yaml_and_missing_file(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("printers: [\n  - name: e3\n    camera: {source: 0\n")
    assert "invalid YAML" in _one_line_error(run_cli("check-config", "--config", str(bad)))
    assert "cannot read config" in _one_line_error(
        run_cli("run", "--config", str(tmp_path / "nope.yaml"))
    )


def test_missing_secret_file_is_named(tmp_path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {
                "name": "e3",
                "api": {
                    "kind": "octoprint",
                    "url": "http://127.0.0.1:1",
                    "api_key_file": "missing.key",
                },
            }
        ],
    )
    line = _one_line_error(run_cli("check-config", "--config", str(config)))
    # the key named, not its value: a secret pasted where the path goes would be shown
    assert "printers.0.api.api_key_file: no such file" in line and "missing.key" not in line


def test_check_config_warns_of_a_page_address_no_network_here_has(tmp_path, tiny_bundle) -> None:
    """The daemon listens on an address of a network not up yet (the Pi before its router,
    after a power cut); a mistyped one is listened on as well, and the page never answers:
    check-config says so. 192.0.2.1 is on no machine (TEST-NET-1)."""
    one = [{"name": "e3"}]
    for listen, said in (("192.0.2.1:8787", True), ("127.0.0.1:8787", False)):
        config = write_config(
            tmp_path / "c.yaml",
            model=str(tiny_bundle),
            http={"listen": listen, "password": "correct-horse-battery"},
            printers=one,
        )
        r = run_cli("check-config", "--config", str(config))
        assert r.returncode == 0, r.stderr
        warned = f"warning: http.listen {listen}: no network of this machine has that address"
        assert (warned in r.stderr) is said, r.stderr


def test_check_config_says_when_the_storage_folder_cannot_be_used(tmp_path, tiny_bundle) -> None:
    """storage.dir naming a file (a typo, a path that is a file on this machine): the config
    checked "ok" and the daemon kept no incident, no queued alert, no saved setting."""
    afile = tmp_path / "state"
    afile.write_text("")
    one = [{"name": "e3"}]
    config = write_config(
        tmp_path / "c.yaml", model=str(tiny_bundle), storage={"dir": str(afile)}, printers=one
    )
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 0, r.stderr  # the print is still watched: a warning, not a refusal
    assert (
        f"warning: storage.dir {afile}: a file, not a folder: incidents, queued alerts and saved "
        "settings would not be kept (the print is still watched and paused)"
    ) in r.stderr.splitlines(), r.stderr
    assert "Errno" not in r.stderr, r.stderr  # the disk's reason in words, the file beside it
    good = write_config(
        tmp_path / "g.yaml", model=str(tiny_bundle), storage={"dir": str(tmp_path / "new")}
    )
    assert "storage.dir" not in run_cli("check-config", "--config", str(good)).stderr


def test_check_config_says_which_printers_are_switched_off(tmp_path, tiny_bundle) -> None:
    """A Watching switch turned off on the page or in Home Assistant is kept across restarts:
    a config that checked "ok" left that printer's prints unwatched, with nothing to say so
    but an info line in the daemon's log."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "switched-off.json").write_text('["voron"]')
    config = write_config(
        tmp_path / "c.yaml",
        model=str(tiny_bundle),
        storage={"dir": str(state)},
        printers=[{"name": "e3"}, {"name": "voron"}],
    )
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert (
        "warning: printers.1 (voron): not watched: its Watching switch was turned off on the "
        f"dashboard or in Home Assistant (kept in {state / 'switched-off.json'}); turn it on "
        "there to have its prints watched"
    ) in r.stderr.splitlines(), r.stderr
    assert "(e3): not watched" not in r.stderr


def test_a_relative_model_storage_folder_and_recording_are_read_from_the_configs_folder(
    tmp_path, tiny_bundle, normal_frames
) -> None:
    """check-config run from the config's folder found `model: my-bundle`; the service, whose
    working folder is /, did not, and failed to start (the *_file keys were already read from
    the config's folder). So did a camera's folder of frames, the last path read from the
    working folder."""
    etc = tmp_path / "etc"
    shutil.copytree(tiny_bundle, etc / "my-bundle")
    _write_frames(etc / "frames", normal_frames[:2])
    config = write_config(
        etc / "config.yaml",
        model="my-bundle",
        storage={"dir": "state"},
        printers=[{"name": "e3", "camera": {"source": "frames"}}],
    )
    proc = subprocess.run(
        watchdog_cmd("check-config", "--config", str(config)),
        capture_output=True,
        text=True,
        timeout=120,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    assert (resolved["model"], resolved["storage"]["dir"]) == (
        str(etc / "my-bundle"),
        str(etc / "state"),
    )
    assert resolved["printers"][0]["camera"]["source"] == str(etc / "frames")


def test_check_config_masks_secrets(tmp_path, tiny_bundle) -> None:
    (tmp_path / "octo.key").write_text(SECRET + "\n")
    (tmp_path / "octo.key").chmod(0o600)
    config = write_config(
        tmp_path / "c.yaml",
        model=str(tiny_bundle),
        mqtt={"host": "127.0.0.1", "username": "watchdog", "password": "${PW_FOR_TEST}"},
        printers=[
            {
                "name": "e3",
                "api": {
                    "kind": "octoprint",
                    "url": "http://127.0.0.1:1",
                    "api_key_file": "octo.key",
                },
            }
        ],
    )
    env_secret = "mqtt-pass-from-env"
    os.environ["PW_FOR_TEST"] = env_secret
    try:
        r = run_cli("check-config", "--config", str(config))
    finally:
        del os.environ["PW_FOR_TEST"]
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr and env_secret not in r.stdout + r.stderr
    assert "**********" in r.stdout
    assert "consecutive: 3" in r.stdout  # defaults are shown resolved


def test_missing_and_corrupt_bundles_fail_at_start(tmp_path, tiny_bundle) -> None:
    config = write_config(
        tmp_path / "c.yaml", model=str(tmp_path / "nowhere"), printers=[{"name": "e3"}]
    )
    assert _one_line_error(run_cli("run", "--config", str(config))) == (
        f"error: {config}: model: {tmp_path / 'nowhere'}: model bundle folder not found"
    )
    zipped = tmp_path / "bundle.zip"  # there, but a file: "not found" sent the owner looking
    zipped.write_bytes(b"PK\x03\x04")
    config = write_config(tmp_path / "c.yaml", model=str(zipped), printers=[{"name": "e3"}])
    assert "a file, not a model bundle folder" in _one_line_error(
        run_cli("run", "--config", str(config))
    )
    # the trainer's run folder instead of its bundle/: "model.tflite: model file missing"
    run = tmp_path / "runs" / "20261206-154105"
    shutil.copytree(tiny_bundle, run / "bundle")
    config = write_config(tmp_path / "c.yaml", model=str(run), printers=[{"name": "e3"}])
    assert _one_line_error(run_cli("run", "--config", str(config))).endswith(
        f"{run}: a training run's folder, not its model bundle: give {run / 'bundle'}"
    )

    broken = tmp_path / "broken"
    shutil.copytree(tiny_bundle, broken)
    data = (broken / "model.tflite").read_bytes()
    (broken / "model.tflite").write_bytes(data[: len(data) // 3])
    config = write_config(tmp_path / "c.yaml", model=str(broken), printers=[{"name": "e3"}])
    assert "model.tflite" in _one_line_error(run_cli("run", "--config", str(config)))

    (broken / "model.tflite").write_bytes(data)
    meta = json.loads((broken / "model.json").read_text())
    meta["format_version"] = 99
    (broken / "model.json").write_text(json.dumps(meta))
    assert "format_version" in _one_line_error(run_cli("run", "--config", str(config)))


def _write_frames(folder: Path, frames) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"frame_{i}.jpg"), f)
    return folder


def test_replay_prints_a_line_per_frame_and_pauses_after_consecutive_anomalies(
    tmp_path, tiny_bundle, normal_frames, anomalous_frames
) -> None:
    frames = _write_frames(tmp_path / "rec", list(normal_frames[:6]) + list(anomalous_frames[:5]))
    config = write_config(
        tmp_path / "c.yaml",
        model=str(tiny_bundle),
        printers=[{"name": "e3", "detection": {"consecutive": 3}}],
    )
    r = run_cli(
        "replay", "--config", str(config), "--frames", str(frames), "--out", str(tmp_path / "out")
    )
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    frame_lines = [x for x in lines if "frame" in x and "event" not in x]
    assert [x["frame"] for x in frame_lines] == [f"frame_{i}.jpg" for i in range(11)]
    assert {"frame", "score", "threshold", "anomalous", "consecutive", "state", "action"} <= set(
        frame_lines[0]
    )
    # No pause during the normal part; the pause comes on the third failure frame.
    acted = [x["frame"] for x in frame_lines if x["action"]]
    assert acted == ["frame_8.jpg"], frame_lines
    alerts = [x for x in lines if x.get("event") == "alert"]
    assert len(alerts) == 1 and alerts[0]["action_result"]["outcome"] == "done"
    assert lines[-1]["event"] == "summary" and lines[-1]["alerts"] == 1
    # the summary names the folder where the incident actually is
    assert len(list(Path(lines[-1]["incidents"]).glob("*/alert.json"))) == 1
    assert "more than one size" not in r.stderr


def test_replay_judges_with_the_settings_saved_on_the_dashboard(
    tmp_path, tiny_bundle, normal_frames, anomalous_frames
) -> None:
    """The owner saves 5 frames in a row on the page and tries it with replay, which read the
    config file alone: paused on the third failure frame, where the daemon waits for the
    fifth, without a word of the saved settings left out."""
    frames = _write_frames(tmp_path / "rec", list(normal_frames[:6]) + list(anomalous_frames[:5]))
    config = write_config(
        tmp_path / "c.yaml",
        model=str(tiny_bundle),
        storage={"dir": str(tmp_path / "state")},
        printers=[{"name": "e3", "detection": {"consecutive": 3}}],
    )
    saved = {"printers": {"e3": {"detection": {"consecutive": 5}}}}
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "overrides.json").write_text(json.dumps(saved))
    r = run_cli("replay", "--config", str(config), "--frames", str(frames))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    acted = [x["frame"] for x in lines if "event" not in x and x.get("action")]
    assert acted == ["frame_10.jpg"], lines
    said = f"with the settings saved on the dashboard ({tmp_path / 'state' / 'overrides.json'})"
    assert f"{said}: consecutive" in r.stderr, r.stderr


def test_replay_says_a_print_recorded_at_two_sizes(tmp_path, tiny_bundle, normal_frames) -> None:
    """Another camera or setting within one recording looks like a change to its print, and
    the alerts it brings say nothing of the model: the trainer said so, replay did not."""
    bigger = [cv2.resize(f, (320, 240)) for f in normal_frames[6:8]]
    frames = _write_frames(tmp_path / "rec", list(normal_frames[:6]) + bigger)
    config = write_config(tmp_path / "c.yaml", model=str(tiny_bundle), printers=[{"name": "e3"}])
    r = run_cli("replay", "--config", str(config), "--frames", str(frames))
    assert r.returncode == 0, r.stderr
    h, w = normal_frames[0].shape[:2]
    assert (
        f"{frames}: print frame: frames of more than one size (6 of {w}x{h}, 2 of 320x240): "
        "another camera or setting within one print looks like a change to it"
    ) in r.stderr, r.stderr


def test_replay_never_writes_into_a_daemons_storage_folder(
    tmp_path, tiny_bundle, normal_frames, anomalous_frames
) -> None:
    """`replay --out` pointed at the daemon's storage folder kept storage.keep_incidents
    incidents there, the replay's newest: the real alerts were deleted to make room."""
    from watchdog.incidents import IncidentStore

    frames = _write_frames(tmp_path / "rec", list(normal_frames[:6]) + list(anomalous_frames[:5]))
    storage = tmp_path / "state"
    real = IncidentStore(storage).save("e3", {"score": 9.0}, b"jpeg", b"jpeg")
    (storage / "daemon.lock").touch()  # the daemon's lock file, as it leaves it
    config = write_config(
        tmp_path / "c.yaml",
        model=str(tiny_bundle),
        storage={"dir": str(storage), "keep_incidents": 1},
        printers=[{"name": "e3", "detection": {"consecutive": 3}}],
    )
    for out in (storage, tmp_path / "copy"):
        if out != storage:  # a copy of it: its incidents are real too
            shutil.copytree(storage, out)
        r = run_cli("replay", "--config", str(config), "--frames", str(frames), "--out", str(out))
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().splitlines()[-1] == (
            f"error: --out {out}: a watchdog's storage folder (its real alerts would be pruned "
            "to make room for the replay's): give an empty folder, or one replay made"
        )
    assert real.path is not None and (real.path / "alert.json").is_file()
    again = tmp_path / "replays"
    (again / "incidents" / "e3").mkdir(parents=True)  # as replays before this check left it
    for _ in range(2):  # a folder replay made takes the next replay
        r = run_cli("replay", "--config", str(config), "--frames", str(frames), "--out", str(again))
        assert r.returncode == 0, r.stderr


def test_replay_stopped_by_ctrl_c_says_so_and_exits_130(
    tmp_path, tiny_bundle, normal_frames
) -> None:
    """Ctrl-C part-way through a long recording exited 0 with a summary that read as a whole
    run: what was replayed is still summed up, marked interrupted, exit 130."""
    import signal

    frames = _write_frames(tmp_path / "rec", list(normal_frames) * 60)  # 600 frames
    config = write_config(tmp_path / "c.yaml", model=str(tiny_bundle), printers=[{"name": "e3"}])
    proc = subprocess.Popen(
        watchdog_cmd("replay", "--config", str(config), "--frames", str(frames)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        replayed = 0
        while replayed < 5:  # a few frames replayed
            line = proc.stdout.readline()
            assert line, "replay ended before a few frames"
            replayed += '"frame"' in line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["event"] == "summary" and summary["interrupted"] is True
    assert 4 <= summary["frames"] < 600  # the frame being replayed at the Ctrl-C may not count
    assert err.strip().splitlines()[-1].startswith("replay interrupted after "), err


def test_replay_reads_a_video_file(tmp_path, tiny_bundle, normal_frames, write_video) -> None:
    video = write_video(tmp_path / "rec.avi", normal_frames[:5])
    config = write_config(tmp_path / "c.yaml", model=str(tiny_bundle), printers=[{"name": "e3"}])
    r = run_cli("replay", "--config", str(config), "--frames", str(video))
    assert r.returncode == 0, r.stderr
    scored = [json.loads(x) for x in r.stdout.splitlines() if '"score"' in x]
    assert len(scored) == 5
    # which frame of the video each line is (it said "frame": null: an alert could not be
    # found in the recording)
    assert [line["frame"] for line in scored] == [f"rec.avi#{i}" for i in range(5)]


def test_replay_missing_frames_is_a_usage_error(tmp_path, tiny_bundle) -> None:
    config = write_config(tmp_path / "c.yaml", model=str(tiny_bundle), printers=[{"name": "e3"}])
    line = _one_line_error(
        run_cli("replay", "--config", str(config), "--frames", str(tmp_path / "none"))
    )
    assert "--frames" in line


def test_replay_of_a_damaged_file_is_an_error_not_an_empty_replay(tmp_path, tiny_bundle) -> None:
    """A JPEG cut to its header: FFmpeg printed its own lines ("[mjpeg @ 0x...] No JPEG data
    found") and replay said "replayed 0 frames", exit 0, as if the print were just quiet."""
    damaged = tmp_path / "frame.jpg"
    damaged.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    config = write_config(tmp_path / "c.yaml", model=str(tiny_bundle), printers=[{"name": "e3"}])
    r = run_cli("replay", "--config", str(config), "--frames", str(damaged))
    line = _one_line_error(r)
    assert f"--frames {damaged}: no frame could be read from it" in line, line
    assert "mjpeg @" not in r.stderr and "[ WARN" not in r.stderr, r.stderr


def test_replay_of_frames_none_of_which_can_be_read_is_an_error_and_a_bad_last_one_is_said(
    tmp_path, tiny_bundle, normal_frames
) -> None:
    """Two empty files: "replayed 1 frames: 0 alert(s)", exit 0, as if the print were quiet
    (only a single bad file was an error). A last file that cannot be read went unsaid: the
    recording ended with the file before it."""
    config = write_config(tmp_path / "c.yaml", model=str(tiny_bundle), printers=[{"name": "e3"}])
    empty = tmp_path / "empty"
    empty.mkdir()
    for name in ("a_1.jpg", "a_2.jpg"):
        (empty / name).write_bytes(b"")
    line = _one_line_error(run_cli("replay", "--config", str(config), "--frames", str(empty)))
    assert f"--frames {empty}: no frame could be read from it" in line, line
    frames = _write_frames(tmp_path / "rec", normal_frames[:2])
    (frames / "zz_last.jpg").write_bytes(b"not a picture")
    r = run_cli("replay", "--config", str(config), "--frames", str(frames))
    assert r.returncode == 0, r.stderr
    said = [json.loads(x) for x in r.stdout.splitlines() if "zz_last.jpg" in x]
    assert said and said[0]["state"] == "frame_skipped", r.stdout


def _replay_on(tmp_path: Path, bundle: Path, frames: list, octoprint: Any) -> argparse.Namespace:
    """``replay --api`` of ``frames`` with the real OctoPrint as the printer, parsed."""
    from watchdog.__main__ import build_parser

    folder = _write_frames(tmp_path / "rec", frames)
    api = {"kind": "octoprint", "url": octoprint.url, "api_key": octoprint.api_key}
    config = write_config(
        tmp_path / "c.yaml",
        model=str(bundle),
        printers=[{"name": "e3", "api": api, "camera": {"interval_s": 0.2}}],
    )
    return build_parser().parse_args(
        ["replay", "--config", str(config), "--frames", str(folder), "--api"]
    )


@pytest.mark.servers
def test_replay_on_a_real_printer_that_never_prints_stops_saying_so(
    tmp_path, tiny_bundle, normal_frames, octoprint_server, monkeypatch, capsys
) -> None:
    """``--api`` with a printer that does not print: replay waits, then stops and says the
    printer did not print; the recording is not blamed (it was called damaged, exit 2)."""
    from watchdog.commands import replay

    monkeypatch.setattr(replay, "WAIT_FOR_PRINT_S", 1)
    args = _replay_on(tmp_path, tiny_bundle, normal_frames[:3], octoprint_server)
    assert args.func(args) == 0
    err = capsys.readouterr().err
    assert "e3 did not print for 0 minutes: replay stopped" in err, err
    assert "replayed 0 frames" in err and "no frame could be read" not in err, err


@pytest.mark.servers
def test_replay_on_a_real_printer_that_prints_ends_with_its_recording(
    tmp_path, tiny_bundle, normal_frames, octoprint_server, capsys
) -> None:
    """At the end of the recording replay stepped once more and, the printer still printing,
    said "waiting for e3 to print ..." and waited before it noticed the end."""
    args = _replay_on(tmp_path, tiny_bundle, normal_frames[:3], octoprint_server)
    octoprint_server.start_print()
    assert args.func(args) == 0
    err = capsys.readouterr().err
    assert "replayed 3 frames" in err and "waiting for" not in err, err
    assert "read to its end" not in err, err


def test_collect_saves_frames_in_the_trainer_layout(tmp_path, camera_server, normal_frames) -> None:
    camera_server.set_frames(normal_frames)
    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {"name": "ender3", "camera": {"source": camera_server.snapshot_url, "interval_s": 0.05}}
        ],
    )
    out = tmp_path / "collected"
    r = run_cli("collect", "--config", str(config), "--out", str(out), "--max-frames", "4")
    assert r.returncode == 0, r.stderr
    files = sorted((out / "ender3").glob("*.jpg"))
    assert len(files) == 4
    # One print = one session for the trainer's split, its frames numbered in time order.
    from watchdog import frames

    names = [frames.parse(f) for f in files]
    assert len({n.print for n in names}) == 1 and sorted(n.number for n in names) == [0, 1, 2, 3]
    assert cv2.imread(str(files[0])) is not None


def test_demo_pauses_the_simulated_print_and_says_where_the_alert_is(tmp_path) -> None:
    """The main job on embedded defaults: bundled model, built-in frames, simulated printer."""
    out = tmp_path / "demo"
    r = run_cli("demo", "--out", str(out), "--interval", "0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "printer state now: paused" in r.stderr
    alerts = list(out.glob("incidents/demo/*/alert.json"))
    assert len(alerts) == 1
    alert = json.loads(alerts[0].read_text())
    assert alert["action_result"]["outcome"] == "done"
    assert str(alerts[0]) in r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    # The built-in sequence is eight normal frames, then the failure: no action on a normal frame.
    assert all(x["action"] is None for x in lines if "normal" in x["frame"])
    # run again (make demo twice): its earlier alert is another print's, not a pause resumed;
    # an earlier, longer sequence's frames (another model's) are not shown among its own
    shown = sorted(p.name for p in (out / "camera").iterdir())
    (out / "camera" / "1200_000_normal.jpg").write_bytes((out / "camera" / shown[-1]).read_bytes())
    again = run_cli("demo", "--out", str(out), "--interval", "0")
    assert sorted(p.name for p in (out / "camera").iterdir()) == shown
    assert again.returncode == 0, again.stdout + again.stderr
    assert "printer state now: paused" in again.stderr
    assert len(list(out.glob("incidents/demo/*/alert.json"))) == 2


def test_replay_and_demo_say_an_alert_they_could_not_save_and_exit_1(
    tmp_path, tiny_bundle, normal_frames, anomalous_frames
) -> None:
    """A full or read-only disk under --out: the replay ended "incidents in <folder>" (an
    empty folder) and the demo named an alert file that was never written, both exit 0."""
    frames = _write_frames(tmp_path / "rec", list(normal_frames[:6]) + list(anomalous_frames[:5]))
    config = write_config(
        tmp_path / "c.yaml",
        model=str(tiny_bundle),
        printers=[{"name": "e3", "detection": {"consecutive": 3}}],
    )
    out = tmp_path / "out"
    (out / "incidents").mkdir(parents=True)
    (out / "incidents" / "e3").write_text("a file where the printer's folder goes")
    r = run_cli("replay", "--config", str(config), "--frames", str(frames), "--out", str(out))
    assert r.returncode == 1, r.stderr
    assert "1 alert(s); 1 of them could not be saved in" in r.stderr, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["not_saved"] == 1
    demo = tmp_path / "demo"
    (demo / "incidents").mkdir(parents=True)
    (demo / "incidents" / "demo").write_text("a file where the printer's folder goes")
    d = run_cli("demo", "--out", str(demo), "--interval", "0")
    assert d.returncode == 1 and "demo: the alert could not be saved in" in d.stderr, d.stderr
    assert "alert.json" not in d.stderr.split("could not be saved")[1]


def test_replay_skips_and_counts_a_corrupt_frame_never_as_an_anomaly(
    tmp_path, tiny_bundle, normal_frames
) -> None:
    frames = _write_frames(tmp_path / "rec", normal_frames[:4])
    (frames / "frame_2.jpg").write_bytes(
        (frames / "frame_2.jpg").read_bytes()[:300]
    )  # truncated JPEG
    config = write_config(tmp_path / "c.yaml", model=str(tiny_bundle), printers=[{"name": "e3"}])
    r = run_cli("replay", "--config", str(config), "--frames", str(frames))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if '"frame"' in x and '"event"' not in x]
    assert [x["frame"] for x in lines] == [f"frame_{i}.jpg" for i in range(4)]
    skipped = [x for x in lines if x["state"] == "frame_skipped"]
    assert [x["frame"] for x in skipped] == ["frame_2.jpg"] and skipped[0]["anomalous"] is None
    # the last line counts it apart: "replayed 4 frames" read as four frames scored
    assert "replayed 4 frames (1 unreadable, skipped): 0 alert(s)" in r.stderr, r.stderr


def test_score_never_writes_a_heatmap_over_the_frames_it_scores(tmp_path) -> None:
    """``score *.jpg --heatmap .`` in the folder of the owner's frames replaced each frame by
    its heatmap, and a folder of photos lost each of the same name. A heatmap is named
    ``<name>.heatmap.jpg``; one that would still land on an image scored is refused before
    anything is scored, and the frames are as they were."""
    import hashlib
    import os
    import shutil

    demo = Path(__file__).resolve().parents[1] / "watchdog" / "demo" / "frames"
    shutil.copy(demo / "000_normal.jpg", tmp_path / "000_normal.jpg")
    shutil.copy(demo / "001_normal.jpg", tmp_path / "000_normal.heatmap.jpg")
    before = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    r = run_cli(
        "score",
        str(tmp_path / "000_normal.jpg"),
        str(tmp_path / "000_normal.heatmap.jpg"),
        "--heatmap",
        str(tmp_path),
    )
    assert r.returncode == 2 and "would be written over the image" in r.stderr, r.stderr
    after = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert after == before
    # nor over another file of the folder given: a photo of the same name
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "000_normal.jpg").write_bytes(b"my holiday photo")
    r = run_cli("score", str(tmp_path / "000_normal.jpg"), "--heatmap", str(photos))
    assert r.returncode == 0, r.stderr
    assert (photos / "000_normal.jpg").read_bytes() == b"my holiday photo"
    assert cv2.imread(str(photos / "000_normal.heatmap.jpg")) is not None
    # a FIFO (or a device) is refused at once rather than read for ever
    os.mkfifo(tmp_path / "pipe.jpg")
    r = run_cli("score", str(tmp_path / "pipe.jpg"), timeout=60)
    assert r.returncode == 1 and f"{tmp_path / 'pipe.jpg'}: not a regular file" in r.stderr
    r = run_cli("score", str(tmp_path / "000_normal.jpg"), "--threads", "100000")
    assert r.returncode == 2 and "give a whole number from 1 to 16" in r.stderr


def test_replay_reads_a_folder_named_like_a_camera_and_refuses_an_out_it_cannot_write(
    tmp_path,
) -> None:
    """A recording in a folder called ``0`` was opened as the first USB camera, and replay
    printed offline lines without end; ``--out`` naming a file ran to the end saying the
    incidents were kept there."""
    import shutil

    demo = Path(__file__).resolve().parents[1] / "watchdog" / "demo" / "frames"
    shutil.copytree(demo, tmp_path / "0")
    config = write_config(tmp_path / "c.yaml", printers=[{"name": "p1"}])
    r = subprocess.run(
        watchdog_cmd("replay", "--config", str(config), "--frames", "0"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout.splitlines()[-1])
    assert summary["frames"] == len(list(demo.glob("*.jpg"))), summary
    (tmp_path / "afile").write_text("x")
    r = run_cli(
        "replay",
        "--config",
        str(config),
        "--frames",
        str(tmp_path / "0"),
        "--out",
        str(tmp_path / "afile"),
    )
    assert r.returncode == 2 and f"--out {tmp_path / 'afile'}: cannot write there" in r.stderr


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--max-frames", "-1"], "--max-frames: '-1': give a whole number of at least 0"),
        (["--min-free-mb", "nan"], "--min-free-mb: 'nan': give a number of at least 0"),
        (["--wait-s", "-5"], "--wait-s: '-5': give a number of at least 1"),
        (["--printer", "p1", "--printer", "ender3"], "--printer ender3: no such printer"),
    ],
)
def test_collect_refuses_flags_that_would_mislead_or_turn_its_guards_off(
    tmp_path, flags: list[str], said: str
) -> None:
    """``--min-free-mb nan`` turned the full-disk guard off without a word; ``--max-frames
    -1`` ended in "never reported printing"; a printer name not in the config was ignored."""
    config = write_config(tmp_path / "c.yaml", printers=[{"name": "p1"}])
    r = run_cli("collect", "--config", str(config), "--out", str(tmp_path / "o"), *flags)
    assert r.returncode == 2 and said in r.stderr, r.stderr
    assert not (tmp_path / "o").exists()


def test_collect_never_writes_a_frame_over_one_there(tmp_path) -> None:
    """Two collects into one folder took the same print name (checked, then written): the
    second one's frames replaced the first one's. A frame is now written only where none is."""
    import threading

    from watchdog.commands.collect import Collector
    from watchdog.config import load_config

    demo = Path(__file__).resolve().parents[1] / "watchdog" / "demo" / "frames"
    config = write_config(
        tmp_path / "c.yaml", printers=[{"name": "p1", "camera": {"source": str(demo)}}]
    )
    collector = Collector(load_config(config).printers[0], tmp_path / "o", threading.Event())
    (tmp_path / "o").mkdir()
    theirs = tmp_path / "o" / "p1-print_0.jpg"
    theirs.write_bytes(b"the other collect's frame")
    frame = cv2.imread(str(demo / "000_normal.jpg"))
    assert not collector._saved_as(theirs, frame)
    assert theirs.read_bytes() == b"the other collect's frame"
    mine = tmp_path / "o" / "p1-print_1.jpg"
    assert collector._saved_as(mine, frame) and cv2.imread(str(mine)).shape == frame.shape


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--std-floor", "5"], "--std-floor: '5': give a number from 0 to 1"),
        (["--target-fpr", "2"], "--target-fpr: '2': give a number from 0 to 0.5"),
        (["--target-fpr", "abc"], "--target-fpr: 'abc': give a number from 0 to 0.5"),
    ],
)
def test_calibrate_refuses_numbers_out_of_range_before_scoring_a_frame(
    tmp_path, flags: list[str], said: str
) -> None:
    """``--target-fpr 2`` was refused only after every frame was scored, in interval notation
    ("must be in [0, 1), got 2.0"); now before anything is read, in the other commands' words."""
    bundle = tmp_path / "bundle"
    r = run_cli("calibrate", str(bundle), "--normal", str(tmp_path), *flags)
    assert r.returncode == 2 and said in r.stderr, r.stderr
    assert not bundle.exists()


@pytest.mark.parametrize(
    "args",
    [("score", "--threads", "0", "x.jpg"), ("bogus",), ("replay", "--config")],
)
def test_a_wrong_flag_is_one_line_naming_the_help(args: tuple[str, ...]) -> None:
    """argparse printed its whole usage block (4 to 6 lines) before the error."""
    r = run_cli(*args)
    assert r.returncode == 2 and r.stdout == "", r
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: ") and "--help)" in r.stderr, r.stderr


def test_replay_of_an_empty_folder_names_the_frames_flag(tmp_path, tiny_bundle) -> None:
    """It named a "camera source": the recording is what --frames gave."""
    empty = tmp_path / "empty"
    empty.mkdir()
    config = write_config(tmp_path / "c.yaml", model=str(tiny_bundle), printers=[{"name": "e3"}])
    r = run_cli("replay", "--config", str(config), "--frames", str(empty))
    assert (
        _one_line_error(r) == f"error: --frames {empty}: no .jpg/.jpeg/.png frames in this folder"
    )


def test_replay_of_collects_folder_names_the_printers_folder_inside_it(
    tmp_path, tiny_bundle
) -> None:
    """``collect --out DIR`` keeps each printer's frames in ``DIR/<printer>/``; given ``DIR``,
    replay said only that it held no frames."""
    import cv2

    from tests import synth

    out = tmp_path / "collected"
    (out / "ender3").mkdir(parents=True)
    cv2.imwrite(str(out / "ender3" / "p-1_0.jpg"), synth.normal_frame(0, 0, 4, 0))
    config = write_config(tmp_path / "c.yaml", model=str(tiny_bundle), printers=[{"name": "e3"}])
    r = run_cli("replay", "--config", str(config), "--frames", str(out))
    assert _one_line_error(r) == (
        f"error: --frames {out}: no .jpg/.jpeg/.png frames in this folder; frames are in ender3/ "
        "inside it (collect keeps each printer's apart): give that folder"
    )


def test_a_command_whose_standard_output_is_closed_says_so(tmp_path) -> None:
    """`check-config ... >&-` exited 0 and every result was dropped without a word."""
    proc = subprocess.run(
        watchdog_cmd("check-config", "--config", "config.example.yaml"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
        preexec_fn=lambda: os.close(1),
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: standard output is closed: nothing could be written"
    )


def test_check_config_refuses_mqtt_certificates_the_daemon_could_not_load(
    tmp_path, tiny_bundle
) -> None:
    """A client certificate that is no certificate: check-config said "ok", and the daemon
    exited 2 at its start, restarted by systemd again and again (the installer's check said
    nothing either). Said in the user's words, not OpenSSL's ("[SSL] PEM lib")."""
    garbage = tmp_path / "client.pem"
    garbage.write_text("not a certificate")
    tls = {"cert_file": str(garbage), "key_file": str(garbage)}
    config = write_config(
        tmp_path / "c.yaml",
        model=str(tiny_bundle),
        mqtt={"host": "127.0.0.1", "tls": tls},
        printers=[{"name": "e3"}],
    )
    r = run_cli("check-config", "--config", str(config))
    assert _one_line_error(r) == (
        f"error: {config}: mqtt.tls: cannot load the certificates ({garbage}, {garbage}): a "
        "file that is not a PEM certificate or key"
    )
    fifo = tmp_path / "ca.fifo"  # hung check-config and the start without a word
    os.mkfifo(fifo)
    config = write_config(
        tmp_path / "c.yaml",
        model=str(tiny_bundle),
        mqtt={"host": "127.0.0.1", "tls": {"ca_file": str(fifo)}},
        printers=[{"name": "e3"}],
    )
    r = run_cli("check-config", "--config", str(config), timeout=60)
    assert "mqtt.tls.ca_file" in _one_line_error(r) and f"{fifo}: not a regular file" in r.stderr


def test_a_bundle_whose_thresholds_no_frame_can_reach_is_refused_and_check_config_names_them(
    tmp_path,
) -> None:
    """model.json edited by hand: ``adaptation.threshold: 1e29`` loaded as any bundle, and
    check-config's "# ok" showed the unchanged display threshold: every alert was off without a
    word. A threshold no frame can reach is refused; the ones that decide are shown."""
    shipped, config = _shipped_copy(tmp_path)
    meta = json.loads((shipped / "model.json").read_text())
    r = run_cli("check-config", "--config", str(config))
    shown = meta["adaptation"]
    assert f"adaptation.threshold {shown['threshold']:.4g}" in r.stderr, r.stderr
    assert f"adaptation.guard {shown['guard']:.4g}" in r.stderr, r.stderr
    for key, value in [
        ("threshold", 1e29),
        ("early_threshold", 1e29),
        ("guard", 2.0),
    ]:
        edited = json.loads(json.dumps(meta))
        edited["adaptation"][key] = value
        (shipped / "model.json").write_text(json.dumps(edited))
        line = _one_line_error(run_cli("check-config", "--config", str(config)))
        assert f"adaptation.{key} {value:g} is above any score a frame can reach" in line, line
        assert "model.json" in line, line
    edited = json.loads(json.dumps(meta))
    edited["threshold"], edited["adaptation"] = 1e29, {}  # the absolute score alone judges
    (shipped / "model.json").write_text(json.dumps(edited))
    line = _one_line_error(run_cli("check-config", "--config", str(config)))
    assert "threshold 1e+29 is above any score a frame can reach (1)" in line, line
    # a bundle without a start guard (fewer than three prints) says what that leaves unwatched
    edited = json.loads(json.dumps(meta))
    edited["adaptation"]["guard"] = 0.0
    (shipped / "model.json").write_text(json.dumps(edited))
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 0 and "no start guard" in r.stderr, r.stderr
    assert "a print that fails from its first frame is learnt as its normal" in r.stderr


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_a_model_file_copied_without_its_model_json_is_refused(
    tmp_path, tiny_bundle, command
) -> None:
    """A new bundle copied one file at a time (the model first, the daemon reloaded before
    model.json came): a model of the same shapes was judged with the other model's thresholds
    and statistics, unsaid. The model.json the trainer writes names its model's SHA-256."""
    from watchdog.detection.bundle import default_bundle_path

    mixed = tmp_path / "bundle"
    shutil.copytree(default_bundle_path(), mixed)
    (mixed / "model.tflite").write_bytes((tiny_bundle / "model.tflite").read_bytes())
    config = write_config(tmp_path / "c.yaml", model=str(mixed), printers=[{"name": "e3"}])
    line = _one_line_error(run_cli(command, "--config", str(config)))
    assert line.endswith(
        f"{mixed / 'model.tflite'}: not the model its {mixed / 'model.json'} was written for "
        "(copy a bundle's two files together, or the whole folder)"
    ), line
    assert json.loads((tiny_bundle / "model.json").read_text())["model_sha256"]  # the trainer's


def test_check_config_and_replay_say_a_printers_region_leaves_its_start_unguarded(
    tmp_path,
) -> None:
    """A printer watching a region of its own (a retrain without ``--region``, a region drawn
    on the page) has no start guard, and one with ``judge_start: false`` no judged start:
    check-config's "# ok" described the model's own start guard and judged start for it, and
    neither it nor the daemon's log said otherwise."""
    shipped, _ = _shipped_copy(tmp_path)
    roi = json.loads((shipped / "model.json").read_text())["preprocess"]["roi"]
    assert roi != [0.0, 0.3, 1.0, 1.0]
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"f_{i}.jpg"), np.full((120, 160, 3), 90 + i, np.uint8))
    config = write_config(
        tmp_path / "c.yaml",
        model=str(shipped),
        storage={"dir": str(tmp_path / "state")},
        printers=[
            {"name": "own", "detection": {"region": [0.0, 0.3, 1.0, 1.0]}},
            {"name": "plain", "detection": {"judge_start": False}},
            {"name": "as_model", "detection": {"region": roi}},
        ],
    )
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 0, r.stderr
    assert "own: its detection.region [0, 0.3, 1, 1] is not the model's" in r.stderr, r.stderr
    assert "retrain with --region 0,0.3,1,1 to guard it" in r.stderr, r.stderr
    assert "plain: detection.judge_start is off" in r.stderr, r.stderr
    assert "as_model:" not in r.stderr, r.stderr  # the model's own view: guarded
    r = run_cli("replay", "--config", str(config), "--printer", "own", "--frames", str(frames))
    assert "own: its detection.region [0, 0.3, 1, 1] is not the model's" in r.stderr, r.stderr
    assert "plain:" not in r.stderr, r.stderr  # the printer replayed only
    r = run_cli("replay", "--config", str(config), "--printer", "plain", "--frames", str(frames))
    assert "plain: detection.judge_start is off" in r.stderr and "own:" not in r.stderr, r.stderr
