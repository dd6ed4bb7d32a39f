"""The command line as a new user meets it: errors they can act on, commands that end, checks
that catch at check time what would fail at run time. Every test runs the real command."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from tests import synth
from tests.daemon_helpers import (
    free_port,
    run_cli,
    wait_until,
    watchdog_cmd,
    without_apprise,
    write_config,
)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = ROOT / "watchdog" / "models" / "default"


def _errors(r: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in r.stderr, r.stderr
    return [line for line in r.stderr.splitlines() if line.startswith("error:")]


def _trainer(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m trainer ARGS`` as a user runs it (``-S`` when ``env`` replaces the packages)."""
    python = [sys.executable, "-S"] if env is not None else [sys.executable]
    return subprocess.run(
        [*python, "-m", "trainer", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env if env is not None else {**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    )


def _frames(folder: Path, n: int, name: str = "frame_{}.jpg") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / name.format(i)), synth.normal_frame(0, i, n))
    return folder


# --------------------------------------------------------------------------- collect


def test_collect_copies_a_folder_recording_to_its_end_and_stops(tmp_path: Path) -> None:
    rec = _frames(tmp_path / "rec", 7)
    (rec / "frame_7.jpg").write_bytes(b"\xff\xd8 not a picture")  # skipped, and counted
    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {"name": "ender3", "camera": {"source": str(rec), "interval_s": 10}, "action": "notify"}
        ],
    )
    r = run_cli("collect", "--config", str(config), "--out", str(tmp_path / "out"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert "saved 7 frame(s) under" in r.stderr and "(1 unreadable frame(s) skipped)" in r.stderr
    files = sorted((tmp_path / "out" / "ender3").glob("*.jpg"))
    assert (
        len(files) == 7
    )  # every frame, although interval_s is 10 s: a recording is copied, not waited on
    stems = {f.stem.rsplit("_", 1)[0] for f in files}
    assert len(stems) == 1 and stems.pop().endswith("-rec"), "one print, named after the recording"
    # a second recording collected into the same folder is a second print, never mixed with the first
    r = run_cli("collect", "--config", str(config), "--out", str(tmp_path / "out"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert len({f.stem.rsplit("_", 1)[0] for f in (tmp_path / "out" / "ender3").glob("*.jpg")}) == 2


def test_collect_keeps_a_folder_of_several_prints_apart(tmp_path: Path) -> None:
    """A folder holding two prints and a resumed part of the first (what ``collect`` itself
    writes, what ``replay`` replays print by print) was saved as one print: the trainer then
    calibrated and judged two prints as one."""
    rec = tmp_path / "rec"
    _frames(rec, 4, "benchy_{}.jpg")
    _frames(rec, 2, "benchy+resumed1_{}.jpg")
    _frames(rec, 3, "gear_{}.jpg")
    config = write_config(
        tmp_path / "c.yaml",
        printers=[{"name": "ender3", "camera": {"source": str(rec)}, "action": "notify"}],
    )
    r = run_cli("collect", "--config", str(config), "--out", str(tmp_path / "out"), timeout=60)
    assert r.returncode == 0, r.stderr
    sessions: dict[str, int] = {}
    for f in (tmp_path / "out" / "ender3").glob("*.jpg"):
        session = f.stem.rsplit("_", 1)[0]
        sessions[session] = sessions.get(session, 0) + 1
    assert sorted(sessions.values()) == [2, 3, 4], sessions
    parts = [s for s in sessions if s.endswith("+resumed1")]
    assert len(parts) == 1 and sessions[parts[0]] == 2
    # the log names each print as its files are named (it named the first one after the
    # recording's folder, a name no file had)
    said = re.findall(r"collecting (?:session |its part )?(\S+)", r.stderr)
    assert sorted(said) == sorted(sessions), (said, sorted(sessions), r.stderr)  # each once
    first = parts[0].removesuffix("+resumed1")
    # each named after its print: the first was named after the folder
    assert sessions[first] == 4 and first.endswith("-benchy"), sessions
    assert any(s.endswith("-gear") and n == 3 for s, n in sessions.items())


@pytest.mark.parametrize(
    ("min_free", "rc", "expected"),
    [
        ("500", 1, "has 0 MB free, less than --min-free-mb 500: stopped before it fills"),
        ("0", 2, "(the disk is full)"),  # told not to stop: the write fails, and says why
    ],
)
def test_collect_stops_before_the_disk_fills_and_says_so(
    tmp_path: Path, full_storage: Path, min_free: str, rc: int, expected: str
) -> None:
    """A collect left running must not fill the SD card the watchdog keeps its alerts on."""
    config = write_config(
        tmp_path / "c.yaml",
        printers=[{"name": "ender3", "camera": {"source": str(_frames(tmp_path / "rec", 5))}}],
    )
    out = full_storage / "frames"
    r = run_cli("collect", "--config", str(config), "--out", str(out), "--min-free-mb", min_free)
    assert r.returncode == rc and "Traceback" not in r.stderr, r.stderr
    assert expected in r.stderr and str(out) in r.stderr, r.stderr
    assert not list(full_storage.rglob("*.jpg"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["demo", "--interval", "-1"], "--interval: '-1': give a number from 0 to 3600"),
        (
            ["demo", "--mqtt-port", "99999"],
            "--mqtt-port: '99999': give a whole number from 1 to 65535",
        ),
        (
            ["demo", "--out", "/proc/nope"],
            "error: --out: cannot write the demo's camera frames in /proc/nope/camera (No such",
        ),
        (
            ["collect", "--out", "{file}"],
            "error: --out {file}: cannot save frames in {file}/ender3: Not a directory",
        ),
    ],
    ids=["negative-interval", "port-out-of-range", "out-not-creatable", "out-a-file"],
)
def test_bad_command_line_values_are_one_line_not_a_traceback(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("not a folder")
    config = write_config(
        tmp_path / "c.yaml",
        printers=[{"name": "ender3", "camera": {"source": str(_frames(tmp_path / "rec", 2))}}],
    )
    args = [a.format(file=afile) for a in args]
    if args[0] == "collect":
        args[1:1] = ["--config", str(config)]
    r = run_cli(*args, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert expected.format(file=afile) in r.stderr


def test_collect_refuses_an_unusable_out_folder_before_waiting_for_a_print(
    tmp_path: Path,
) -> None:
    """collect waits for the printer to print (here its API never answers: nothing prints);
    an --out it cannot save in was found at the print's first frame, hours later, and that
    print was lost. It is said at once."""
    afile = tmp_path / "a-file"
    afile.write_text("not a folder")
    api = {"kind": "octoprint", "url": "http://127.0.0.1:1", "api_key": "k" * 32, "timeout_s": 1}
    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {"name": "ender3", "camera": {"source": str(_frames(tmp_path / "rec", 2))}, "api": api}
        ],
    )
    r = run_cli("collect", "--config", str(config), "--out", str(afile / "frames"), timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"error: --out {afile}/frames: cannot save frames in {afile}/frames/ender3" in r.stderr


def test_collect_copies_a_video_to_its_end_and_stops(tmp_path: Path, write_video) -> None:
    video = write_video(tmp_path / "print.avi", [synth.normal_frame(0, i, 9) for i in range(9)])
    config = write_config(
        tmp_path / "c.yaml",
        printers=[{"name": "ender3", "camera": {"source": str(video)}, "action": "notify"}],
    )
    r = run_cli("collect", "--config", str(config), "--out", str(tmp_path / "out"), timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "out" / "ender3").glob("*.jpg"))) == 9


def _collect_live(
    tmp_path: Path,
    camera_server,
    out: Path,
    *extra: str,
    interval_s: float = 0.05,
    stderr: Any = subprocess.PIPE,
) -> subprocess.Popen[str]:
    """``collect`` of the test camera's snapshots, every ``interval_s``, in the background."""
    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {
                "name": "ender3",
                "camera": {"source": camera_server.snapshot_url, "interval_s": interval_s},
                "action": "notify",
            }
        ],
    )
    return subprocess.Popen(
        watchdog_cmd("collect", "--config", str(config), "--out", str(out), *extra),
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_collect_from_a_live_camera_stops_on_sigterm_or_ctrl_c_keeping_its_frames(
    tmp_path: Path, camera_server, sig: int
) -> None:
    out = tmp_path / "out"
    proc = _collect_live(tmp_path, camera_server, out)
    try:
        wait_until("frames saved", lambda: len(list(out.rglob("*.jpg"))) >= 5, 60)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    saved = len(list(out.rglob("*.jpg")))
    assert saved >= 5 and f"saved {saved} frame(s)" in err, err


def test_collect_from_a_camera_that_never_answers_exits_1_naming_host_and_cause(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there
    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {
                "name": "ender3",
                "camera": {
                    "source": f"http://127.0.0.1:{port}/snapshot?token=s3cret",
                    "interval_s": 0.2,
                },
                "action": "notify",
            }
        ],
    )
    r = run_cli(
        "collect",
        "--config",
        str(config),
        "--out",
        str(tmp_path / "out"),
        "--wait-s",
        "1",
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    [line] = _errors(r)
    assert (
        f"127.0.0.1:{port}" in line and "connection refused" in line and "saved 0 frame(s)" in line
    )
    assert "s3cret" not in r.stderr
    assert not (tmp_path / "out").exists()


def test_collect_gives_up_on_a_camera_that_dies_mid_print_keeping_its_frames(
    tmp_path: Path, camera_server
) -> None:
    """A camera that answered, then went down: collect left overnight used to run on without a
    frame or a word until the morning; it stops after --wait-s and says so."""
    out = tmp_path / "out"
    proc = _collect_live(tmp_path, camera_server, out, "--wait-s", "2")
    try:
        wait_until("frames saved", lambda: len(list(out.rglob("*.jpg"))) >= 3, 60)
        camera_server.set_fault("down")
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    saved = len(list(out.rglob("*.jpg")))
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert "gave no frame in 2 s after" in line and f"saved {saved} frame(s)" in line, line
    assert saved >= 3
    # the camera's own line names a retry collect makes, not the daemon's minute
    [offline] = [x for x in err.splitlines() if "offline" in x]
    assert offline.endswith("retrying with backoff up to 2 s"), offline


def test_collect_does_not_give_up_on_one_missed_frame_of_a_slow_camera(
    tmp_path: Path, camera_server
) -> None:
    """A camera read every few seconds (minutes, overnight) that misses one frame is tried
    again at its next interval before --wait-s counts: here it is back by then, and collect
    goes on to --max-frames. Counting from the first miss gave up after 1 s."""
    camera_server.set_fault("down")
    out, log = tmp_path / "out", tmp_path / "collect.log"
    with log.open("w") as err:
        proc = _collect_live(
            tmp_path,
            camera_server,
            out,
            "--wait-s",
            "1",
            "--max-frames",
            "2",
            interval_s=3,
            stderr=err,
        )
        try:
            wait_until("the first try missed", lambda: "offline" in log.read_text(), 30)
            time.sleep(1.5)  # past --wait-s after the missed try, before the second one
            camera_server.set_fault(None)
            proc.wait(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 0, log.read_text()
    assert len(list(out.rglob("*.jpg"))) == 2


def test_collect_keeps_collecting_a_live_camera_after_a_recording_beside_it_ended(
    tmp_path: Path, camera_server, write_video
) -> None:
    """A video read to its end gives no more frames (its end is known only when a read finds
    none): that is not a dead camera, and the live printer beside it goes on until
    --max-frames; it was given up after --wait-s with "gave no frame"."""
    video = write_video(tmp_path / "rec.avi", [synth.normal_frame(0, i, 3) for i in range(3)])
    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {"name": "rec", "camera": {"source": str(video)}},
            {
                "name": "live",
                "camera": {"source": camera_server.snapshot_url, "interval_s": 0.1},
                "action": "notify",
            },
        ],
    )
    out = tmp_path / "out"
    r = run_cli(
        "collect", "--config", str(config), "--out", str(out), "--wait-s", "1", "--max-frames", "40"
    )
    assert r.returncode == 0, r.stderr
    assert len(list((out / "rec").glob("*.jpg"))) == 3
    assert len(list((out / "live").glob("*.jpg"))) == 37


def test_camera_host_that_does_not_resolve_is_said_so(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {
                "name": "ender3",
                "camera": {"source": "http://no-such-camera.invalid/snapshot", "interval_s": 0.2},
                "action": "notify",
            }
        ],
    )
    r = run_cli(
        "collect",
        "--config",
        str(config),
        "--out",
        str(tmp_path / "out"),
        "--wait-s",
        "1",
        timeout=60,
    )
    assert r.returncode == 1
    [line] = _errors(r)
    assert "no-such-camera.invalid" in line and "host name not found" in line


# --------------------------------------------------------------------------- check-config


# a camera that check-config does not try (without --probe): its other warnings stand alone
CAMERA = {"source": "http://127.0.0.1:9/snapshot"}


def test_check_config_warns_that_pause_needs_a_printer_api(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        mqtt={"host": "127.0.0.1"},
        printers=[{"name": "e3", "action": "pause", "camera": CAMERA}],
    )
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert (
        len(warnings) == 1 and "printers.0 (e3): action: pause needs a printer API" in warnings[0]
    )


def test_check_config_says_a_printer_api_with_action_notify_never_pauses(tmp_path: Path) -> None:
    """Following the setup steps (camera, API, MQTT) left the example's action: notify, and
    check-config said "ok": a watchdog that never pauses, found out on the first failure."""
    config = write_config(
        tmp_path / "c.yaml",
        mqtt={"host": "127.0.0.1"},
        printers=[
            {
                "name": "e3",
                "action": "notify",
                "camera": CAMERA,
                "api": {"kind": "octoprint", "url": "http://127.0.0.1:5000"},
            }
        ],
    )
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 0, r.stderr
    [warning] = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert "printers.0 (e3): action: notify" in warning and "set action: pause" in warning


def test_check_config_warns_when_an_alert_would_reach_nobody(tmp_path: Path) -> None:
    """No MQTT broker and no notification target: a pause still happens where a printer API
    is set, but the owner hears of nothing. check-config said "ok" without a word."""
    config = write_config(
        tmp_path / "c.yaml", printers=[{"name": "e3", "action": "notify", "camera": CAMERA}]
    )
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 0, r.stderr
    [warning] = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert "an alert reaches nobody" in warning and "mqtt.host" in warning


def test_check_config_warns_of_an_mqtt_password_without_a_user_name(tmp_path: Path) -> None:
    """The daemon warns that such a password is not sent; check-config said "ok"."""
    config = write_config(
        tmp_path / "c.yaml",
        mqtt={"host": "127.0.0.1", "password": "hunter2-secret"},
        printers=[{"name": "e3", "action": "notify", "camera": CAMERA}],
    )
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 0, r.stderr
    [warning] = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert "mqtt.password is set without mqtt.username: it is not sent" in warning, warning
    assert "hunter2-secret" not in r.stderr + r.stdout


def test_check_config_warns_of_a_printer_whose_camera_was_left_out(tmp_path: Path) -> None:
    """A printer block without its camera line watches the first USB camera: check-config
    said "ok" on a Pi with none, and the daemon then said "camera offline" all night."""
    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {"name": "e3", "action": "notify"},
            {"name": "mk4", "action": "notify", "camera": CAMERA},
        ],
        mqtt={"host": "127.0.0.1"},
    )
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: printers.0 (e3): camera.source not set: the first USB camera (/dev/video0) "
        "is watched; give its URL, device or folder there"
    ], r.stderr


def test_check_config_says_notifications_cannot_go_out_without_apprise(tmp_path: Path) -> None:
    """Installed as ``make demo`` installs (the Pi's packages, not the notify extra), with a
    phone target: check-config said "ok", and the daemon then blamed the service and the
    URL's credentials for each notification it could not send."""
    config = write_config(
        tmp_path / "c.yaml",
        printers=[{"name": "e3", "action": "notify", "camera": CAMERA}],
        notify=[{"url": "ntfys://bob:s3cret@ntfy.example/printer-alerts"}],
    )
    env = {**os.environ, "PYTHONPATH": without_apprise(tmp_path / "site")}
    r = run_cli("check-config", "--config", str(config), env=env)
    assert r.returncode == 0, r.stderr
    [warning] = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert "notify lists 1 target(s), but Apprise is not installed" in warning, warning
    assert "pip install 'printer-watchdog[notify]'" in warning and "s3cret" not in r.stderr
    # installed (this venv): no such warning
    r = run_cli("check-config", "--config", str(config))
    assert "Apprise" not in r.stderr, r.stderr


def test_check_config_says_a_notify_url_apprise_does_not_understand(tmp_path: Path) -> None:
    """A mistyped scheme (``ntfyy://``) passed check-config and the daemon's start; the first
    failure alert was then never sent. Named by its place, its secret not shown."""
    config = write_config(
        tmp_path / "c.yaml",
        printers=[{"name": "e3", "action": "notify", "camera": CAMERA}],
        notify=[
            {"url": "ntfys://bob:s3cret@ntfy.example/printer-alerts"},
            {"url": "ntfyy://bob:s3cret@ntfy.example/printer-alerts", "name": "phone"},
        ],
    )
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 0, r.stderr
    [warning] = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert warning == (
        "warning: notify.1.url (phone): the URL is not one Apprise understands (check its "
        "scheme and form): its notifications would never be sent"
    ), r.stderr
    assert "s3cret" not in r.stderr + r.stdout


def test_example_config_is_coherent(tmp_path: Path) -> None:
    r = run_cli("check-config", "--config", str(ROOT / "config.example.yaml"))
    assert r.returncode == 0, r.stderr
    # nothing contradicts itself; the one warning says where to send alerts (left to the owner)
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "an alert reaches nobody" in warnings[0], r.stderr
    assert "loaded and run once" in r.stderr
    # the threshold shown is on the scale the dashboard's scores are, measured against the
    # print's own start (a bare number read as a frame's own score)
    assert (
        "on the scale of the dashboard's scores (each print judged against its own first 30 "
        "frames at adaptation.threshold "
    ) in r.stderr


def test_check_config_runs_the_model_and_refuses_one_that_disagrees_with_model_json(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, broken)
    meta = json.loads((broken / "model.json").read_text())
    meta["preprocess"]["width"] //= (
        2  # model.json agrees with itself; the .tflite takes the original size
    )
    for key in ("input_shape", "output_shape"):
        meta[key][2] //= 2
    (broken / "model.json").write_text(json.dumps(meta))
    config = write_config(
        tmp_path / "c.yaml", model=str(broken), printers=[{"name": "e3", "action": "notify"}]
    )
    r = run_cli("check-config", "--config", str(config))
    assert r.returncode == 2
    [line] = _errors(r)
    assert "model input" in line and "does not match" in line and "model.tflite" in line


def test_check_config_probe_names_what_failed(
    tmp_path: Path, camera_server, octoprint_server
) -> None:
    dead = free_port()
    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {"name": "good", "camera": {"source": camera_server.snapshot_url}, "action": "notify"},
            {
                "name": "bad",
                "camera": {"source": f"http://127.0.0.1:{dead}/snapshot", "timeout_s": 2},
                "api": {"kind": "octoprint", "url": octoprint_server.url, "api_key": "not-the-key"},
                "action": "pause",
            },
        ],
    )
    r = run_cli("check-config", "--config", str(config), "--probe", timeout=60)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    assert any("printer good: camera" in x and ": ok: 160x120 frame" in x for x in lines), r.stderr
    assert any(
        f"printer bad: camera http://127.0.0.1:{dead}/snapshot: FAILED" in x
        and "connection refused" in x
        for x in lines
    ), r.stderr
    assert any("printer bad: octoprint API" in x and "FAILED" in x and "403" in x for x in lines), (
        r.stderr
    )
    [summary] = _errors(r)
    assert summary.startswith("error: 2 probe(s) failed")
    assert "retrying" not in r.stderr, r.stderr  # one try, told once


def test_check_config_probe_passes_on_a_real_camera_and_moonraker(
    tmp_path: Path, camera_server, moonraker_server
) -> None:
    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {
                "name": "k1",
                "camera": {"source": camera_server.snapshot_url},
                "api": {
                    "kind": "moonraker",
                    "url": moonraker_server.url,
                    "api_key": moonraker_server.api_key,
                },
                "action": "pause",
            }
        ],
    )
    r = run_cli("check-config", "--config", str(config), "--probe", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "printer k1: moonraker API" in r.stderr and "ok: moonraker says idle" in r.stderr
    assert moonraker_server.api_key not in r.stderr + r.stdout


def test_check_config_probe_says_a_server_that_is_not_the_printers_api(
    tmp_path: Path, camera_server
) -> None:
    """An api.url pointed at another web server (the camera's, a wrong port) was "offline",
    as a printer switched off is: it answers, but not as OctoPrint."""
    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {
                "name": "e3",
                "camera": {"source": camera_server.snapshot_url},
                "api": {"kind": "octoprint", "url": camera_server.url, "api_key": "k" * 32},
            }
        ],
    )
    r = run_cli("check-config", "--config", str(config), "--probe", timeout=60)
    assert r.returncode == 1
    assert "FAILED: the server answers, but not as octoprint does: " in r.stderr, r.stderr
    assert "HTTP 404" in r.stderr and "check api.kind and api.url" in r.stderr


def test_check_config_probe_connects_to_the_mqtt_broker(
    tmp_path: Path, camera_server, mosquitto_factory
) -> None:
    """``--probe`` said "ok" with a broker nobody could reach: the alerts for Home Assistant
    would go nowhere. It connects as the daemon would (its user name, password and TLS),
    under a client id of its own, and names what failed: a wrong password, a broker not
    there. The password is never shown."""
    broker = mosquitto_factory(auth=True)
    printers = [
        {"name": "e3", "camera": {"source": camera_server.snapshot_url}, "action": "notify"}
    ]

    def probed(**mqtt: object) -> subprocess.CompletedProcess[str]:
        config = write_config(
            tmp_path / f"c{len(list(tmp_path.glob('c*.yaml')))}.yaml",
            mqtt=broker.mqtt_settings(**mqtt),
            printers=printers,
        )
        return run_cli("check-config", "--config", str(config), "--probe", timeout=60)

    ok = probed()
    assert ok.returncode == 0, ok.stderr
    assert f"# MQTT broker 127.0.0.1:{broker.port}: ok: connected" in ok.stderr
    wrong = probed(password="not-the-password")
    assert wrong.returncode == 1
    assert "FAILED: refused the connection" in wrong.stderr, wrong.stderr
    assert "check mqtt.username and mqtt.password" in wrong.stderr
    assert "not-the-password" not in wrong.stderr + wrong.stdout
    gone = probed(port=free_port())
    assert gone.returncode == 1, gone.stderr
    assert (
        "FAILED: cannot connect: connection refused (nothing listens on that port)" in gone.stderr
    )
    assert broker.password not in ok.stderr + ok.stdout + gone.stderr + gone.stdout
    # an id the owner set is the one the broker may allow the user under (dynamic security)
    assert re.search(r"as printer-watchdog-\S+-check\b", broker.log()), broker.log()[-2000:]
    assert probed(client_id="garage-pi").returncode == 0
    assert re.search(r"as garage-pi\b", broker.log()), broker.log()[-2000:]


def test_check_config_probe_says_a_broker_port_wants_tls(
    tmp_path: Path, camera_server, mosquitto_factory
) -> None:
    """Port 8883 without ``mqtt.tls``: the broker drops the plain connection, and the probe
    waited out its 10 s to say "no answer", pointing nowhere."""
    broker = mosquitto_factory(tls=True)
    config = write_config(
        tmp_path / "c.yaml",
        mqtt={"host": "127.0.0.1", "port": broker.port},
        printers=[
            {"name": "e3", "camera": {"source": camera_server.snapshot_url}, "action": "notify"}
        ],
    )
    r = run_cli("check-config", "--config", str(config), "--probe", timeout=60)
    assert r.returncode == 1
    assert "the broker closed the connection without answering" in r.stderr, r.stderr
    assert "set mqtt.tls" in r.stderr


# --------------------------------------------------------------------------- config errors in user words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'printers:\n  - name: e3\n    camera: "http://x/snap"\n',
            "printers.0.camera: must be a group of keys indented below it (key: value lines), got text",
        ),
        (
            "printers:\n  - name: e3\n    camera:\n      source: 0\n     interval_s: 3\n",
            "line 5 column 6: invalid YAML: this line is indented differently from the lines before it",
        ),
        (
            "printers:\n  - name: e3\n\tcamera: 0\n",
            "invalid YAML: a tab character: indent with spaces only",
        ),
        (
            "printers:\n  - name: e3\n    camera: {source: 0\n",
            "a bracket or brace opened earlier is not closed",
        ),
        (  # the docs' one-line api mapping with the key from the environment, unquoted
            "printers:\n  - name: e3\n    api: {kind: octoprint, api_key: ${KEY}}\n",
            "line 3 column 38: invalid YAML: a '{' inside a {...} mapping: quote a value that "
            'holds one, as "${NAME}"',
        ),
        ("printers: e3\n", "printers: must be a list"),
        (
            "printers:\n  - name: e3\n    detection: {consecutive: x}\n",
            "printers.0.detection.consecutive: must be a whole number, got text",
        ),
        (
            "printers: 5\n",
            "printers: must be a list (one '- ' item per line, or [a, b]), got a number",
        ),
        (
            "printers:\n  - name: e3\n    camera: {source: true}\n",
            "printers.0.camera.source: must be a whole number or text, got true/false",
        ),
        (
            "printers:\n  - name: e3\n    detection: {region: [0, 0.5, 1]}\n",
            "printers.0.detection.region: must be a list of 4 numbers, not 3",
        ),
        (
            "printers:\n  - name: e3\n    detection: {mask: [[[0, 0], [1, 0], 5]]}\n",
            "printers.0.detection.mask.0.2: must be a list of 2 numbers, got a number",
        ),
        (
            "printers:\n  - name: e3\n    detection: {sensitivity: .nan}\n",
            "printers.0.detection.sensitivity: must be a finite number",
        ),
        (
            "storage: {dir: 5}\nprinters: [{name: e3}]\n",
            "storage.dir: must be a path (text), got a number",
        ),
        ("7: x\nprinters: [{name: e3}]\n", "7: unknown key"),
    ],
)
def test_config_errors_speak_the_users_words(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "c.yaml").write_text(text)
    r = run_cli("check-config", "--config", str(tmp_path / "c.yaml"))
    assert r.returncode == 2
    [line] = _errors(r)
    assert expected in line, line
    jargon_words = ("instance of", "<block", "Input should", "<stream end>", "dictionary")
    jargon_words += ("Tuple should", "Input is not", "Value error", "Keys should", ".int:", ".str:")
    for jargon in jargon_words:
        assert jargon not in line, line


# --------------------------------------------------------------------------- trainer


def _without_train_extra(tmp_path: Path) -> dict[str, str]:
    """An import path like the `make demo` virtualenv: the packages of this one, less the [train] extra."""
    import site

    shadow = tmp_path / "site"
    shadow.mkdir()
    skip = (
        "tensorflow",
        "keras",
        "matplotlib",
        "sklearn",
        "scikit_learn",
        "tf_keras",
        "_pytest",
        "pytest",
    )
    for sp in site.getsitepackages():
        for entry in Path(sp).iterdir():
            if (
                entry.name.lower().startswith(skip)
                or entry.suffix == ".pth"
                or (shadow / entry.name).exists()
            ):
                continue
            (shadow / entry.name).symlink_to(entry)
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{shadow}", "PYTHONNOUSERSITE": "1"}


def test_trainer_without_the_train_extra_says_which_extra_before_creating_anything(
    tmp_path: Path,
) -> None:
    data = _frames(tmp_path / "frames", 4)
    env = _without_train_extra(tmp_path)
    probe = subprocess.run(
        [sys.executable, "-S", "-c", "import numpy, cv2, yaml; import keras"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "No module named 'keras'" in probe.stderr, "the shadow path still has keras"
    out = tmp_path / "runs"
    r = _trainer("--normal", str(data), "--out", str(out), cwd=tmp_path, env=env)
    assert r.returncode == 2, r.stderr
    [line] = _errors(r)
    assert "'train' extra" in line and 'pip install -e ".[train]"' in line and "keras" in line
    assert not out.exists(), "a run folder was created before the check"


@pytest.mark.parametrize(
    ("flag", "said"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--patience", "-1"], "--patience must be 0 (never stop early) or more, got -1"),
        (
            ["--adapt-early-frames", "30"],
            "--adapt-early-frames 30: must be 0 (learn a print's start without judging it) or "
            "from 2 to 29, fewer than the start's 30 frames (--adapt-frames)",
        ),
    ],
)
def test_trainer_refuses_a_training_it_cannot_run_before_creating_anything(
    tmp_path: Path, flag: list[str], said: str
) -> None:
    data = _frames(tmp_path / "frames", 4)
    out = tmp_path / "runs"
    r = _trainer("--normal", str(data), "--out", str(out), *flag)
    assert r.returncode == 2, r.stderr
    [line] = _errors(r)
    assert said in line, line
    assert not out.exists(), "a run folder was created before the check"


def test_trainer_patience_reaches_the_fit() -> None:
    """--patience 0 must turn early stopping off in the preset the fit uses, not be dropped."""
    from trainer.model import get_preset
    from trainer.pipeline import Options, resolve_preset

    assert resolve_preset(Options(patience=0)).train.patience == 0
    assert resolve_preset(Options(patience=15)).train.patience == 15
    assert resolve_preset(Options()).train.patience == get_preset("default").train.patience


def test_a_shorter_start_is_judged_against_as_many_first_frames_or_not_at_all() -> None:
    """Fewer first frames to judge by flag good starts (docs/decisions/start-judgement.md): a
    shorter start keeps the 10, and a start of 10 frames or fewer is learnt, not judged."""
    from trainer.pipeline import Options, resolve_preset

    assert resolve_preset(Options()).adaptation.early_frames == 10  # of 30
    assert resolve_preset(Options(adapt_frames=15)).adaptation.early_frames == 10
    assert resolve_preset(Options(adapt_frames=10)).adaptation.early_frames == 0
    off = resolve_preset(Options(adapt_early_frames=0)).adaptation
    assert off.early_frames == 0 and not off.judges_start


def test_frames_without_a_print_number_get_a_warning_with_the_naming(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    data = _frames(tmp_path / "frames", 6, name="IMG{}.jpg")
    r = _trainer(
        "--normal",
        str(data),
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--no-plots",
        "--out",
        str(tmp_path / "runs"),
        timeout=600,
    )
    warnings = [line for line in r.stderr.splitlines() if "are not named <print>_<n>.jpg" in line]
    assert len(warnings) == 1, r.stderr[-3000:]
    assert (
        "6 frame(s) such as" in warnings[0]
        and "IMG0.jpg" in warnings[0]
        and "print1_7.jpg" in warnings[0]
    )
    assert "--session-pattern" in warnings[0]
    # they are all there is: they set the threshold too (they "only teach the model" said not)
    assert "a random part of them sets the threshold" in warnings[0], warnings[0]


def test_a_bad_session_pattern_names_the_flag_to_fix(tmp_path: Path) -> None:
    """It named a flag that does not exist ("--session pattern ...")."""
    data = _frames(tmp_path / "frames", 2, name="print1_{}.jpg")
    r = _trainer("--normal", str(data), "--session-pattern", "(", "--out", str(tmp_path / "r"))
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: --session-pattern: session pattern '(' is not a valid"), last


# --------------------------------------------------------------------------- help and README


def test_help_has_no_project_history_jargon() -> None:
    texts = [_trainer("--help").stdout]
    from watchdog.__main__ import COMMANDS

    for module in COMMANDS:
        name = module.__name__.rsplit(".", 1)[-1].replace("_", "-")
        texts.append(run_cli(name, "--help").stdout)
    for text in texts:
        assert text.strip()
        for word in ("issue", "seed post", "seed's", "session pattern (issue"):
            assert word not in text.lower(), (word, text[:400])


def test_readme_lists_every_command() -> None:
    from watchdog.__main__ import COMMANDS

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Commands") :]
    for module in COMMANDS:
        name = module.__name__.rsplit(".", 1)[-1].replace("_", "-")
        assert f"| `{name}" in table, name
    assert "twelve built-in frames" not in readme.replace("the twelve built-in frames through", "")


def test_trainer_cli_defaults_to_the_model_to_deploy() -> None:
    from trainer.__main__ import build_parser

    args = build_parser().parse_args(["--normal", "x"])
    assert (
        args.split is None
    )  # resolved to "all" by main; "session" only with --val/--test-sessions
    text = build_parser().format_help()
    assert "'all' (default)" in text and "Evaluation only" in text


def test_score_of_a_readable_image_still_works_next_to_an_unreadable_one(tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), np.full((120, 160, 3), 120, np.uint8))
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    r = run_cli("score", str(tmp_path / "bad.jpg"), str(good))
    assert r.returncode == 1
    assert [json.loads(x)["file"] for x in r.stdout.splitlines()] == [str(good)]


def _run_on_a_terminal(argv: list[str], env: dict[str, str], timeout: float = 600) -> str:
    """Run a command with a pseudo-terminal as its stdout and stderr, as a user's shell does."""
    import pty
    import select
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: becomes the command
        os.execvpe(argv[0], argv, env)
    out, end = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            if select.select([fd], [], [], 1.0)[0]:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    return out.decode(errors="replace")


def test_each_fit_draws_one_progress_line_on_a_terminal(tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("the trainer needs the [train] extra")
    data = synth.write_kaggle_layout(
        tmp_path / "data", sessions=2, frames_per_session=10, anomalous=0
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(ROOT)}
    text = _run_on_a_terminal(
        [
            sys.executable,
            "-m",
            "trainer",
            "--normal",
            str(data / "no_defected"),
            "--preset",
            "tiny",
            "--epochs",
            "3",
            "--adapt-frames",
            "4",
            "--no-plots",
            "--out",
            str(tmp_path / "runs"),
        ],
        env,
    )
    lines = [
        line for line in text.replace("\r\n", "\n").split("\n") if "epoch " in line and "[" in line
    ]
    fits = [line.split("\r")[-1].split(":")[0] for line in lines]
    assert fits == [
        "the model to deploy",
        "cross-fit 1/2 (without print0)",
        "cross-fit 2/2 (without print1)",
    ], text
    assert all(
        "epoch 3/3" in line.split("\r")[-1] for line in lines
    )  # redrawn in place, one line per fit
    assert "Epoch 1/" not in text and "ms/step" not in text, "Keras' own per-epoch display"


@pytest.mark.parametrize("url", ["snapshot_url", "stream_url"])
def test_ctrl_c_during_collect_does_not_wait_out_a_camera_that_does_not_answer(
    tmp_path: Path, camera_server, url: str
) -> None:
    """The camera answers a byte at a time (a hung camera; camera.timeout_s 60): Ctrl-C
    waited the whole timeout before collect ended. It ends at once, and says the camera had
    not given a frame yet, not that it never answers."""
    camera_server.set_fault("slow_headers")
    config = write_config(
        tmp_path / "c.yaml",
        printers=[
            {
                "name": "ender3",
                "camera": {"source": getattr(camera_server, url), "timeout_s": 60},
                "action": "notify",
            }
        ],
    )
    proc = subprocess.Popen(
        watchdog_cmd("collect", "--config", str(config), "--out", str(tmp_path / "out")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until("the camera asked", lambda: camera_server.requests >= 1, 60)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)  # far less than the camera's 60 s
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        f"error: nothing saved: stopped: camera of ender3 ({getattr(camera_server, url)}) "
        "had not given a frame yet"
    ], err
