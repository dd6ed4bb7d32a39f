"""The frames contract (watchdog/frames.py): how collect, the incident store, the trainer and
calibration agree on which frames make a print and in what order they were taken."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests import synth
from trainer.crossfit import prints_by_set
from trainer.data import DataError, Split, find_frames, load_frames, split_frames
from watchdog import frames
from watchdog.detection.bundle import Preprocess
from watchdog.incidents import false_alarms_dir


def _write(folder: Path, names: list[str], seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        cv2.imwrite(str(folder / name), synth.normal_frame(seed, i, 16))


def test_frames_sort_by_their_number_not_as_text(tmp_path: Path) -> None:
    _write(tmp_path / "rec", [f"benchy_{n}.jpg" for n in (1, 2, 10, 11)])
    prints, loose = frames.group_prints([tmp_path / "rec"])
    assert loose == []
    [paths] = prints.values()
    assert [p.name for p in paths] == [
        "benchy_1.jpg",
        "benchy_2.jpg",
        "benchy_10.jpg",
        "benchy_11.jpg",
    ]


def test_a_recording_linked_into_a_data_folder_is_read_and_a_link_loop_ends(tmp_path: Path) -> None:
    """An owner who links a recording into their data folder means it to count: it was left
    out without a word, the trainer and ``calibrate`` fitting one print fewer."""
    _write(tmp_path / "elsewhere" / "benchy", [f"benchy_{n}.jpg" for n in range(3)])
    _write(tmp_path / "data" / "own", [f"own_{n}.jpg" for n in range(2)], seed=1)
    (tmp_path / "data" / "benchy").symlink_to(tmp_path / "elsewhere" / "benchy")
    (tmp_path / "data" / "own" / "up").symlink_to(tmp_path / "data")  # a loop
    prints, loose = frames.group_prints([tmp_path / "data"])
    assert loose == []
    assert sorted(len(paths) for paths in prints.values()) == [2, 3]
    found = find_frames(normal=[tmp_path / "data"])
    assert sorted({f.session for f in found}) == ["benchy", "own"]
    # a folder both there and linked in elsewhere under the same folder is read by its own
    # path, whatever order the file system lists them in: here a link under failures/ (which
    # sorts first) would have made a good recording a failure
    # (eight such folders: the order a file system lists names in is its own)
    for x in "abcdefgh":
        data = tmp_path / f"data-{x}"
        _write(data / f"rec{x}", [f"rec{x}_{n}.jpg" for n in range(2)], seed=2)
        (data / "failures").mkdir()
        (data / "failures" / "spaghetti").symlink_to(data / f"rec{x}")
        prints, _ = frames.group_prints([data])
        assert [len(paths) for paths in prints.values()] == [2], x


def test_a_folder_that_cannot_be_read_is_named_not_left_out(tmp_path: Path) -> None:
    """A sub-folder its owner cannot read, or a recording linked in from a disk not mounted
    now: the trainer trained without its prints and said nothing, or named the folder above
    as having no frames. The unreadable folder is read by a process without root's power to
    read anything (the tests run as root), as ``setpriv`` makes one."""
    from trainer.data import DataError

    _write(tmp_path / "data" / "own", [f"own_{n}.jpg" for n in range(2)])
    _write(tmp_path / "data" / "secret", [f"secret_{n}.jpg" for n in range(2)])
    (tmp_path / "data" / "secret").chmod(0)
    no_root = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    no_root += ["--inh-caps=-dac_override,-dac_read_search", sys.executable, "-c"]
    code = "from trainer.data import find_frames; find_frames(normal=[sys.argv[1]])"
    proc = subprocess.run(
        [*no_root, f"import sys; {code}", str(tmp_path / "data")], capture_output=True, text=True
    )
    secret = tmp_path / "data" / "secret"
    assert (
        f"DataError: --normal folder {tmp_path / 'data'}: cannot read {secret}: Permission "
        "denied" in proc.stderr
    ), proc.stderr[-2000:]
    (tmp_path / "data" / "secret").chmod(0o755)
    gone = tmp_path / "data" / "usb"
    gone.symlink_to(tmp_path / "unmounted" / "rec")
    with pytest.raises(DataError, match=f"cannot read {gone}: it links to .*which is not there"):
        find_frames(normal=[tmp_path / "data"])
    with pytest.raises(frames.UnreadableFolder, match=f"cannot read {gone}"):
        frames.group_prints([tmp_path / "data"])
    # a link that is no frame's nor folder's is no recording left out
    gone.unlink()
    (tmp_path / "data" / "notes.txt").symlink_to(tmp_path / "unmounted" / "notes.txt")
    assert len(find_frames(normal=[tmp_path / "data"])) == 4


def test_calibrate_knows_a_print_trained_on_whose_first_file_does_not_decode(
    tmp_path: Path,
) -> None:
    """The trainer named a print by its first frame it could decode, ``calibrate`` by its first
    file: a print whose first frame was cut short was not recognised, and the model's own
    print set its thresholds too low without a word."""
    from trainer.pipeline import _first_frame_fingerprints
    from watchdog.commands.calibrate import trained_on

    _write(tmp_path / "rec", [f"benchy_{n}.jpg" for n in range(1, 5)])
    first = tmp_path / "rec" / "benchy_1.jpg"
    first.write_bytes(first.read_bytes()[:200])  # cut short: the trainer skips it
    found = find_frames(normal=[tmp_path / "rec"])
    loaded = load_frames(found, Preprocess(width=16, height=16))
    assert [f.number for f in loaded.frames] == [2, 3, 4]
    split = Split("session", fit=found, val=[], test_normal=[], test_anomalous=[])
    digests = _first_frame_fingerprints(loaded.frames, split)
    prints, _ = frames.group_prints([tmp_path / "rec"])
    assert trained_on({"fit_fingerprints": digests}, prints) == list(prints)


def test_another_session_pattern_keeps_time_order_for_per_print_calibration(tmp_path: Path) -> None:
    """With --session-pattern the trainer's per-print calibration used the text order of the
    file names (1, 10, 11, 2): the "first" frames it calibrated on were not the print's first."""
    data = tmp_path / "mine"
    names = [f"cam-benchy-f{n}.jpg" for n in (1, 2, 10, 11, 3)]
    _write(data, names)
    found = find_frames(normal=[data], session_pattern=r"^cam-(?P<session>[a-z]+)-f\d+$")
    assert {f.session for f in found} == {"benchy"}
    assert sorted(f.number for f in found) == [1, 2, 3, 10, 11]
    loaded = load_frames(found, Preprocess(width=16, height=16))
    [(x, _)] = prints_by_set([loaded]).values()
    by_number = {f.number: xi for f, xi in zip(loaded.frames, loaded.x, strict=True)}
    np.testing.assert_array_equal(x, np.stack([by_number[n] for n in (1, 2, 3, 10, 11)]))


def test_kept_false_alarms_are_loose_frames_that_only_fit_the_model(tmp_path: Path) -> None:
    """A false alarm kept from an incident is one frame of some print. It used to count as a
    print of its own: in some seeds the validation set, which sets the threshold, was a single
    false-alarm frame."""
    collected = tmp_path / "collected" / "e3"
    _write(collected, [f"e3-20261130-print_{n}.jpg" for n in range(6)], seed=0)
    _write(collected, [f"e3-20261201-other_{n}.jpg" for n in range(6)], seed=1)
    _write(collected, [f"e3-20261202-third_{n}.jpg" for n in range(6)], seed=2)
    alarms = false_alarms_dir(tmp_path, "e3")
    _write(alarms, ["20261130T101010123Z-abc123.jpg", "20261130T111111123Z-def456_7.jpg"])
    found = find_frames(normal=[collected])
    loose = [f for f in found if f.loose]
    assert {f.path.name for f in loose} == {
        "20261130T101010123Z-abc123.jpg",
        "20261130T111111123Z-def456_7.jpg",
    }
    for seed in range(8):
        split = split_frames(found, "session", seed=seed)
        assert all(f in split.fit for f in loose), seed
        assert not any(f.loose for f in split.val + split.test_normal), seed
        assert len(split.sessions["val"] + split.sessions["test"]) >= 1
        assert not set(split.sessions["val"]) & {f.session for f in loose}


def test_collect_and_the_trainer_agree_on_names(tmp_path: Path) -> None:
    path = frames.frame_path(tmp_path, "e3-20261130-101010-benchy", 12)
    assert frames.parse(path) == frames.FrameName("e3-20261130-101010-benchy", 12)
    assert frames.parse(tmp_path / "no-number.jpg").loose


def test_calibration_never_takes_a_confirmed_failure_for_a_normal_print(tmp_path: Path) -> None:
    """``calibrate --normal <storage>/collected/<printer>`` reads the recordings beside the
    ``failures/`` folder: the failure's copies (one print per incident to the trainer) are
    not a print to calibrate the normal threshold on."""
    rec = tmp_path / "rec"
    _write(rec, [f"benchy_{n}.jpg" for n in range(3)])
    _write(
        rec / "failures", ["20261202T094320008Z-aabc38-00.jpg", "20261202T094320008Z-aabc38.jpg"]
    )
    # the owner's own sorting of failures into sub-folders: still failures
    _write(rec / "failures" / "spaghetti", ["clog_1.jpg", "clog_2.jpg"])
    prints, loose = frames.group_prints([rec])
    assert loose == []
    assert [[p.name for p in paths] for paths in prints.values()] == [
        ["benchy_0.jpg", "benchy_1.jpg", "benchy_2.jpg"]
    ]
    assert frames.group_prints([rec / "failures"])[0] == {}


def test_a_large_frame_is_trained_on_as_the_daemon_decodes_it(tmp_path: Path) -> None:
    """A 1080p camera's JPEG is decoded by the daemon at half its size (what the model needs
    is a fraction of it); the trainer, ``calibrate`` and ``score`` read it whole. The model was
    fitted and its thresholds set on other pixels than it judges (up to 9 grey levels apart).
    One frames contract: each reads it as the daemon's camera does."""
    from watchdog.commands.calibrate import model_inputs
    from watchdog.commands.score import read_image
    from watchdog.devices.capture import decode_image, frame_size_needed

    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 255, (270, 480, 3), np.uint8), (1920, 1080))
    img = cv2.GaussianBlur(img, (0, 0), 1.5)  # fine detail, as a camera's
    path = tmp_path / "rec" / "benchy_1.jpg"
    path.parent.mkdir()
    path.write_bytes(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    pre = Preprocess(width=128, height=64, roi=(0.0, 0.5, 1.0, 1.0))
    need = frame_size_needed(pre)
    served = decode_image(path.read_bytes(), 10_000_000, need)
    assert served.shape[:2] == (540, 960)  # the daemon's camera: decoded at half
    daemons = np.round(pre.apply(served) * 255.0).astype(np.uint8)
    [trainers] = load_frames(find_frames(normal=[path.parent]), pre).x
    whole = np.round(pre.apply(cv2.imread(str(path))) * 255.0).astype(np.uint8)
    assert np.abs(whole.astype(int) - daemons).max() > 2  # the difference is real
    np.testing.assert_array_equal(trainers, daemons)
    np.testing.assert_array_equal(model_inputs(pre, [path])[0], daemons)
    assert read_image(path, need).shape == served.shape


def test_a_recording_the_daemon_cannot_score_is_not_trained_on_either(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A 3 MP PNG, a 3 MP progressive JPEG and a 16-bit PNG: the daemon's cameras (and so
    ``replay`` of that folder) refuse each, to bound what a frame costs on the Pi. The
    trainer fitted them, and ``calibrate`` set thresholds on them: a model judged on frames
    it will never be given. Each is left out with the daemon's own reason."""
    from watchdog.commands.calibrate import model_inputs
    from watchdog.config import CameraConfig
    from watchdog.devices.capture import open_camera

    rng = np.random.default_rng(1)
    big = cv2.GaussianBlur(
        cv2.resize(rng.integers(0, 255, (150, 200, 3), np.uint8), (2000, 1500)), (0, 0), 1.0
    )
    folder = tmp_path / "rec"
    folder.mkdir()
    pre = Preprocess(width=128, height=64, roi=(0.0, 0.5, 1.0, 1.0))
    progressive = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    files = {
        "benchy_1.png": cv2.imencode(".png", big)[1],
        "benchy_2.jpg": cv2.imencode(".jpg", big, progressive)[1],
        "benchy_3.png": cv2.imencode(".png", big[:48, :64].astype(np.uint16) * 257)[1],
    }
    for name, data in files.items():
        one = tmp_path / name.split(".")[0]
        one.mkdir()
        (one / name).write_bytes(data.tobytes())
        cam = open_camera(CameraConfig(source=str(one)), model_input=pre)
        assert cam.read() is None
        reason = cam.last_error
        assert "decoded whole" in reason or "16-bit" in reason, reason
        caplog.clear()
        with caplog.at_level("WARNING"):
            loaded = load_frames(find_frames(normal=[one]), pre)
        assert len(loaded.x) == 0 and loaded.skipped == [str(one / name)]
        assert reason.split(": ")[-1] in caplog.text, (reason, caplog.text)
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert len(model_inputs(pre, [one / name])) == 0  # calibrate
        assert reason.split(": ")[-1] in caplog.text
        cam.close()


def test_a_state_folder_a_run_or_the_kaggle_layout_given_as_good_prints_fits_none_of_their_failures(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``--normal`` given the Pi's whole state folder fitted its alerts' frames and heatmaps as
    good prints; given the Kaggle layout, its failed prints; given a folder that holds the
    trainer's own ``--out``, the last run's plots."""
    state = tmp_path / "state"
    _write(state / "collected" / "e3", [f"e3-20261206-1500_{n}.jpg" for n in range(1, 4)])
    _write(state / "incidents" / "e3" / "20261206T150000000Z-ab12", ["frame.jpg", "heatmap.jpg"])
    run = state / "collected" / "runs" / "20261206-154201"
    _write(run, ["anomalies.png", "replay.png"])
    (run / "report.md").write_text("# report\n")
    (run / "bundle").mkdir()
    kaggle = tmp_path / "kag"
    _write(kaggle / "no_defected", [f"scratch_{n}.jpg" for n in range(1, 4)])
    _write(kaggle / "defected", [f"no_support_{n}.jpg" for n in range(1, 4)])
    with caplog.at_level("WARNING"):
        found = find_frames(normal=[state, kaggle])
    fitted = sorted(f.path.name for f in found if f.label == "normal")
    assert fitted == [f"e3-20261206-1500_{n}.jpg" for n in range(1, 4)] + [
        f"scratch_{n}.jpg" for n in range(1, 4)
    ]
    assert sorted(f.path.name for f in found if f.label != "normal") == [
        f"no_support_{n}.jpg" for n in range(1, 4)
    ]
    assert "the watchdog's alerts" in caplog.text and "a training run's" in caplog.text
    # given itself: said, not fitted
    with pytest.raises(DataError, match="a training run's report, plots and model"):
        find_frames(normal=[run])
    # a folder merely named defected, with no Kaggle layout around it, is the owner's own
    _write(tmp_path / "mine" / "defected", [f"benchy_{n}.jpg" for n in range(1, 4)])
    assert {f.label for f in find_frames(normal=[tmp_path / "mine"])} == {"normal"}
