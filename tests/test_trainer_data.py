"""Finding, reading and splitting training frames; the trainer CLI's one-line errors."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests import synth
from trainer.data import (
    ANOMALOUS,
    NORMAL,
    DataError,
    Frame,
    Loaded,
    Split,
    find_frames,
    load_frames,
    mixed_sizes,
    split_frames,
)
from watchdog.detection.bundle import Preprocess
from watchdog.frames import print_of

ROOT = Path(__file__).resolve().parents[1]
PRE = Preprocess(width=32, height=24)


def _write(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


@pytest.fixture()
def kaggle(tmp_path: Path) -> Path:
    return synth.write_kaggle_layout(
        tmp_path / "data", sessions=3, frames_per_session=5, anomalous=4
    )


def test_kaggle_layout_sessions_and_labels(kaggle: Path) -> None:
    frames = find_frames(kaggle)
    assert len(frames) == 19
    assert {f.session for f in frames if f.label == NORMAL} == {"print0", "print1", "print2"}
    assert {f.session for f in frames if f.label == ANOMALOUS} == {"spaghetti"}


def test_a_kaggle_folder_given_as_normal_says_its_defected_frames_are_failures(
    kaggle: Path, caplog
) -> None:
    """The dataset's top folder given with --normal: its defected/ frames are failures, never
    fitted, and the log said they were "in a failures/ folder", which the owner has none of."""
    caplog.set_level(logging.WARNING, "trainer.data")
    frames = find_frames(normal=[kaggle])
    assert sum(f.label == ANOMALOUS for f in frames) == 4
    assert "4 frame(s) under the normal folders are failures" in caplog.text
    assert "the Kaggle layout's defected/ beside its no_defected/" in caplog.text


def test_kaggle_names_split_at_the_final_number(tmp_path: Path) -> None:
    names = ("scratch_3.jpg", "scratch_2_17.jpg", "scratch_3_4.jpg", "nested/scratch_3_5.png")
    for i, name in enumerate(names):  # each its own picture, as two prints' frames are
        _write(tmp_path / "no_defected" / name, synth.normal_frame(0, i))
    sessions = sorted({f.session for f in find_frames(tmp_path)})
    # the one in a folder of its own is another print of that name: the two are kept apart
    top, nested = tmp_path / "no_defected", tmp_path / "no_defected" / "nested"
    assert sessions == sorted(["scratch", "scratch_2", f"{top}/scratch_3", f"{nested}/scratch_3"])


def test_session_pattern_is_configurable(tmp_path: Path) -> None:
    for i, name in enumerate(("2026-11-01T10-00-00-cam1.jpg", "2026-11-02T10-00-00-cam1.jpg")):
        _write(tmp_path / "mine" / name, synth.normal_frame(0, i))
    frames = find_frames(
        normal=[tmp_path / "mine"], session_pattern=r"^(?P<session>\d{4}-\d\d-\d\d)T"
    )
    assert sorted(f.session for f in frames) == ["2026-11-01", "2026-11-02"]


def test_explicit_normal_and_anomalous_dirs_are_searched_recursively(tmp_path: Path) -> None:
    _write(tmp_path / "good" / "a" / "b" / "p_1.jpg", synth.normal_frame())
    _write(tmp_path / "good" / "p_2.PNG", synth.normal_frame())
    _write(tmp_path / "bad" / "x" / "s_1.jpeg", synth.anomalous_frame())
    (tmp_path / "good" / "notes.txt").write_text("not an image")
    frames = find_frames(normal=[tmp_path / "good"], anomalous=[tmp_path / "bad"])
    assert sorted((f.path.name, f.label) for f in frames) == [
        ("p_1.jpg", NORMAL),
        ("p_2.PNG", NORMAL),
        ("s_1.jpeg", ANOMALOUS),
    ]


def test_confirmed_failures_under_a_normal_folder_are_never_fitted(tmp_path: Path) -> None:
    """``--normal <storage>/collected`` (what the README and ``feedback`` say to retrain on)
    holds the owner's confirmed failures beside the recordings and kept false alarms: they are
    failures, also when the failures folder is given with --anomalous too."""
    from watchdog.incidents import IncidentStore, mark_failure, mark_not_failure

    collected = tmp_path / "collected" / "ender3"
    for n in range(3):
        _write(collected / f"ender3-20261201T100000_{n}.jpg", synth.normal_frame())
    # two alerts, two pictures (a false alarm whose very frame is a failure is a failure)
    jpegs = [cv2.imencode(".jpg", synth.anomalous_frame(i))[1].tobytes() for i in range(2)]
    store = IncidentStore(tmp_path)
    failed, kept = (store.save("ender3", {"score": 9.0}, jpeg, jpeg) for jpeg in jpegs)
    mark_failure(tmp_path, "ender3", failed.id)
    mark_not_failure(tmp_path, "ender3", kept.id)
    # failures the owner sorted into a sub-folder of their own
    _write(collected / "failures" / "spaghetti" / "mine_1.jpg", synth.anomalous_frame())
    for anomalous in ([], [collected / "failures"]):
        frames = find_frames(normal=[tmp_path / "collected"], anomalous=anomalous)
        labels = {f.path.relative_to(collected).as_posix(): f.label for f in frames}
        assert labels == {
            **{f"ender3-20261201T100000_{n}.jpg": NORMAL for n in range(3)},
            f"false_alarms/{kept.id}.jpg": NORMAL,
            f"failures/{failed.id}.jpg": ANOMALOUS,
            "failures/spaghetti/mine_1.jpg": ANOMALOUS,
        }


def test_each_confirmed_failure_is_one_failed_print_in_the_order_it_was_seen(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The copies a confirmed failure leaves in ``failures/`` (its lead-up, then the alert's
    frame) are one failed print per incident: the report counts failures, not one pooled
    sequence, and the trainer does not ask the owner to rename files the watchdog wrote."""
    from watchdog.history import LeadUpFrame
    from watchdog.incidents import IncidentStore, mark_failure

    collected = tmp_path / "collected" / "ender3"
    for n in range(3):
        _write(collected / f"ender3-20261201T100000_{n}.jpg", synth.normal_frame())
    jpegs = [cv2.imencode(".jpg", synth.anomalous_frame(i))[1].tobytes() for i in range(2)]
    store = IncidentStore(tmp_path)
    incidents = [store.save("ender3", {"score": 9.0}, jpeg, jpeg) for jpeg in jpegs]
    for inc, jpeg in zip(incidents, jpegs, strict=True):
        lead_up = [LeadUpFrame(float(t), 5.0, jpeg, jpeg) for t in range(3)]
        store.add_lead_up("ender3", inc.id, lead_up)
        mark_failure(tmp_path, "ender3", inc.id)
    with caplog.at_level(logging.WARNING):
        frames = find_frames(normal=[tmp_path / "collected"])
    failed = [f for f in frames if f.label == ANOMALOUS]
    assert not any(f.loose for f in failed)
    by_print: dict[str, list[str]] = {}
    for f in sorted(failed, key=lambda f: (f.session, f.number)):
        by_print.setdefault(f.session, []).append(f.path.name)
    assert by_print == {
        inc.id: [f"{inc.id}-00.jpg", f"{inc.id}-01.jpg", f"{inc.id}-02.jpg", f"{inc.id}.jpg"]
        for inc in incidents
    }
    assert "rename them" not in caplog.text


def test_failure_frames_not_named_as_a_print_are_not_said_to_teach_the_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``--anomalous`` frames named otherwise (the demo's ``008_failure.jpg``) were said to
    "only teach the model", as if the failures were fitted as good frames; they never are."""
    for n in range(3):
        _write(tmp_path / "good" / f"p1_{n}.jpg", synth.normal_frame(0, n, 3))
        _write(tmp_path / "bad" / f"{n:03d}_failure.jpg", synth.normal_frame(1, n, 3))
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        frames = find_frames(normal=[tmp_path / "good"], anomalous=[tmp_path / "bad"])
    assert len(frames) == 6
    assert "teach the model" not in caplog.text, caplog.text


def test_prints_of_the_same_name_in_two_folders_stay_two_prints(tmp_path: Path) -> None:
    """Two recordings whose frames are both ``print_<n>.jpg``: two prints, as the daemon's
    ``calibrate`` groups them, never one print of interleaved frames."""
    for session, folder in enumerate(("a", "b")):
        for n in range(3):
            _write(tmp_path / folder / f"print_{n}.jpg", synth.normal_frame(session, n, 3))
    frames = find_frames(normal=[tmp_path / "a", tmp_path / "b"])
    assert {f.session: f.path.parent.name for f in frames} == {
        f"{tmp_path / 'a'}/print": "a",
        f"{tmp_path / 'b'}/print": "b",
    }
    # b's print resumed after a filament change: its part goes on b's print, not a third
    for n in range(3):
        _write(tmp_path / "b" / f"print+resumed1_{n}.jpg", synth.normal_frame(2, n, 3))
    frames = find_frames(normal=[tmp_path / "a", tmp_path / "b"])
    assert {print_of(f.session) for f in frames} == {
        f"{tmp_path / 'a'}/print",
        f"{tmp_path / 'b'}/print",
    }


def test_a_copy_of_a_print_given_twice_is_one_print(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The collected folder copied in May and again in June (June's still holding May's
    prints), both given: May's print was two prints, one fitted and its twin "held out", the
    report's held-out figures flattered and the cross-fitted threshold too low. A copy (the
    same first frame) is used once; a print of the same name with other frames stays a print."""
    import shutil

    for n in range(3):
        _write(tmp_path / "may" / f"p-0501_{n}.jpg", synth.normal_frame(0, n, 3))
        _write(tmp_path / "other" / f"p-0501_{n}.jpg", synth.normal_frame(2, n, 3))
    shutil.copytree(tmp_path / "may", tmp_path / "june")
    for n in range(3):
        _write(tmp_path / "june" / f"p-0601_{n}.jpg", synth.normal_frame(1, n, 3))
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        frames = find_frames(normal=[tmp_path / d for d in ("may", "june", "other")])
    prints = {(f.path.parent.name, f.path.name.split("_")[0]) for f in frames}
    assert prints == {("may", "p-0501"), ("june", "p-0601"), ("other", "p-0501")}, prints
    assert len(frames) == 9
    assert any("is a copy of print p-0501 in" in r.getMessage() for r in caplog.records)


def test_one_recording_collected_twice_under_two_names_is_one_print(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``collect`` run twice over the same recording names its print twice (by the time it
    ran): the same frames under two names were two prints, the second "held out" from a model
    that fitted its twin, and a start guard was set "from 3 prints" where two prints were
    recorded (two are too few for one)."""
    for n in range(3):
        frame = synth.normal_frame(0, n, 3)
        _write(tmp_path / "p1" / f"p1-20261205T073531-rec_{n}.jpg", frame)
        _write(tmp_path / "p1" / f"p1-20261205T073532-rec_{n}.jpg", frame)
        _write(tmp_path / "p1" / f"p1-20261205T090000-other_{n}.jpg", synth.normal_frame(1, n, 3))
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        frames = find_frames(normal=[tmp_path / "p1"])
    assert len({f.session for f in frames}) == 2 and len(frames) == 6
    [said] = [r.getMessage() for r in caplog.records if "is a copy of" in r.getMessage()]
    assert "p1-20261205T073532-rec" in said and "p1-20261205T073531-rec" in said, said


def test_a_copy_whose_first_frames_were_deleted_is_still_a_copy(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A copy was told by its first frame: with June's first frames deleted (disk space), it
    was one more "held out" print, scored by a model that fitted its twin."""
    import shutil

    for n in range(4):
        _write(tmp_path / "may" / f"p-0501_{n}.jpg", synth.normal_frame(0, n, 4))
    shutil.copytree(tmp_path / "may", tmp_path / "june")
    for n in range(2):
        (tmp_path / "june" / f"p-0501_{n}.jpg").unlink()
    with caplog.at_level(logging.WARNING, logger="watchdog.frames"):
        frames = find_frames(normal=[tmp_path / "may", tmp_path / "june"])
    assert {f.path.parent.name for f in frames} == {"may"} and len(frames) == 4
    assert any("is a copy of print p-0501 in" in r.getMessage() for r in caplog.records)
    # copied while collect wrote its last frame: that one is cut short, the rest the same
    for n in range(6):
        _write(tmp_path / "july" / f"p-0701_{n}.jpg", synth.normal_frame(2, n, 6))
    shutil.copytree(tmp_path / "july", tmp_path / "aug")
    last = tmp_path / "july" / "p-0701_5.jpg"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    frames = find_frames(normal=[tmp_path / "july", tmp_path / "aug"])
    assert len({f.path.parent.name for f in frames}) == 1, {f.path for f in frames}


def test_a_copy_of_a_copy_is_the_same_print(tmp_path: Path) -> None:
    """May's print copied into june/, where ``collect`` also saved it under a second name:
    june's first copy was found May's and its second june's first, and with the one between
    them left out the second stayed, a twin "held out" from a model that fitted May's."""
    import shutil

    for n in range(3):
        _write(tmp_path / "may" / f"p-0501_{n}.jpg", synth.normal_frame(0, n, 3))
        _write(tmp_path / "may" / f"p-0502_{n}.jpg", synth.normal_frame(1, n, 3))
    shutil.copytree(tmp_path / "may", tmp_path / "june")
    for n in range(3):
        shutil.copy(tmp_path / "june" / f"p-0501_{n}.jpg", tmp_path / "june" / f"p-0601_{n}.jpg")
    frames = find_frames(normal=[tmp_path / "may", tmp_path / "june"])
    kept = sorted({(f.path.parent.name, f.path.name.split("_")[0]) for f in frames})
    assert kept == [("may", "p-0501"), ("may", "p-0502")] and len(frames) == 6, kept


def test_copies_chained_through_four_folders_are_one_print(tmp_path: Path) -> None:
    """One print copied into four folders, under other names too: each copy is joined to the
    next by its name or its folder, a chain several deep, and every one of them is the print
    kept first (a set cut in two kept a twin "held out" from a model that fitted it)."""
    names = {"f1": ["p-0709"], "f2": ["p-0702", "p-0709"], "f3": ["p-0703", "p-0709"]}
    names["f4"] = ["p-0709"]
    for folder, prints in names.items():
        for name in prints:
            for n in range(3):
                _write(tmp_path / folder / f"{name}_{n}.jpg", synth.normal_frame(0, n, 3))
    frames = find_frames(normal=[tmp_path / f for f in names])
    kept = sorted({(f.path.parent.name, f.path.name.split("_")[0]) for f in frames})
    assert kept == [("f1", "p-0709")] and len(frames) == 3, kept


def test_the_copy_kept_is_the_one_marked_a_failure_else_the_longest(tmp_path: Path) -> None:
    """June's copy has the print moved into ``failures/`` (the owner marked it failed since):
    that copy is kept, never fitted as a good print. A copy made while the print was still
    recorded is shorter: the whole print is kept."""
    for n in range(4):
        _write(tmp_path / "may" / f"p1_{n}.jpg", synth.normal_frame(0, n, 4))
        _write(tmp_path / "june" / "failures" / f"p1_{n}.jpg", synth.normal_frame(0, n, 4))
        _write(tmp_path / "june" / f"p2_{n}.jpg", synth.normal_frame(1, n, 4))
    for n in range(2):  # copied mid-print
        _write(tmp_path / "may" / f"p2_{n}.jpg", synth.normal_frame(1, n, 4))
    frames = find_frames(normal=[tmp_path / "may", tmp_path / "june"])
    p1 = [f for f in frames if f.path.name.startswith("p1_")]
    p2 = [f for f in frames if f.path.name.startswith("p2_")]
    assert len(p1) == 4 and all(f.label == ANOMALOUS and "failures" in str(f.path) for f in p1)
    assert len(p2) == 4 and all(f.path.parent.name == "june" for f in p2)


def test_missing_and_empty_folders_are_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        find_frames(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no JPEG or PNG"):
        find_frames(normal=[tmp_path / "empty"])
    with pytest.raises(DataError, match="no_defected"):
        find_frames(tmp_path / "empty")


def test_corrupt_and_truncated_files_are_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = _write(tmp_path / "n" / "p_1.jpg", synth.normal_frame())
    truncated = tmp_path / "n" / "p_2.jpg"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "n" / "p_3.jpg").write_bytes(b"this is not a jpeg")
    (tmp_path / "n" / "p_4.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        loaded = load_frames(find_frames(normal=[tmp_path / "n"]), PRE)
    assert [f.path.name for f in loaded.frames] == ["p_1.jpg"]
    assert sorted(Path(p).name for p in loaded.skipped) == ["p_2.jpg", "p_3.jpg", "p_4.png"]
    warned = sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert len(warned) == 3 and all("skipping" in w for w in warned)
    # each line says why, so the owner knows whether to re-record or ignore it
    assert "p_2.jpg: truncated JPEG" in warned[0]
    assert "p_3.jpg: " in warned[1] and "p_4.png: empty file" in warned[2]


def test_a_print_whose_frames_change_size_is_said_and_still_loaded(tmp_path: Path) -> None:
    """A second camera's frames, or a resolution changed mid-print, went into a print without
    a word, though the print is judged against its own start."""
    bgr = synth.normal_frame()
    d = tmp_path / "n"
    for n in range(1, 4):
        _write(d / f"benchy_{n}.jpg", bgr)
    _write(d / "benchy_4.jpg", cv2.resize(bgr, (640, 480)))
    for n in range(1, 3):
        _write(d / f"other_{n}.jpg", bgr)
    loaded = load_frames(find_frames(normal=[d]), PRE)
    assert len(loaded.frames) == 6
    h, w = bgr.shape[:2]
    assert mixed_sizes([loaded]) == [
        f"print benchy: frames of more than one size (3 of {w}x{h}, 1 of 640x480): another "
        "camera or setting within one print looks like a change to it"
    ]
    # a print split between the fit and the validation frames is still one print
    first = [i for i, f in enumerate(loaded.frames) if f.number < 4]
    part = Loaded(
        [loaded.frames[i] for i in first], loaded.x[first], [], [loaded.sizes[i] for i in first]
    )
    rest = [i for i in range(6) if i not in first]
    other = Loaded(
        [loaded.frames[i] for i in rest], loaded.x[rest], [], [loaded.sizes[i] for i in rest]
    )
    assert mixed_sizes([part]) == [] and len(mixed_sizes([part, other])) == 1


def test_frame_files_opencv_would_crash_on_are_skipped_and_odd_names_load(
    tmp_path: Path,
) -> None:
    """A PNG whose header declares 50000x50000 pixels is skipped with a line (OpenCV raised,
    ending the run); a frame whose file name is not UTF-8 is read like any other (opening it
    by name crashed OpenCV, and the report could not be written)."""
    import os

    from tests.plugins.camera import bomb_png
    from watchdog.commands.calibrate import model_inputs
    from watchdog.detection.bundle import Bundle, default_bundle_path
    from watchdog.detection.model import FrameScorer

    folder = tmp_path / "n"
    good = _write(folder / "p_1.jpg", synth.normal_frame())
    (folder / "p_2.png").write_bytes(bomb_png(50_000, 50_000))
    odd = Path(os.fsdecode(bytes(folder) + b"/caf\xe9_3.jpg"))
    odd.write_bytes(cv2.imencode(".jpg", synth.normal_frame(0, 1))[1].tobytes())
    loaded = load_frames(find_frames(normal=[folder]), PRE)
    assert sorted(f.path.name for f in loaded.frames) == sorted(["p_1.jpg", odd.name])
    assert [Path(p).name for p in loaded.skipped] == ["p_2.png"]
    scorer = FrameScorer(Bundle.load(default_bundle_path()))  # what calibrate reads them with
    assert len(model_inputs(scorer.pre, [good, folder / "p_2.png", odd])) == 2


def test_alpha_grey_and_mixed_sizes_load_alike_and_16bit_is_left_out(tmp_path: Path) -> None:
    bgr = synth.normal_frame()
    d = tmp_path / "n"
    _write(d / "rgb_1.jpg", bgr)
    _write(d / "alpha_1.png", cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA))
    _write(d / "grey_1.png", cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    _write(d / "deep_1.png", bgr.astype(np.uint16) * 257)
    _write(d / "big_1.jpg", cv2.resize(bgr, (640, 480)))
    loaded = load_frames(find_frames(normal=[d]), PRE)
    # a 16-bit picture is none the daemon's cameras decode: left out, as they refuse it
    assert [Path(p).name for p in loaded.skipped] == ["deep_1.png"]
    assert loaded.x.shape == (4, 24, 32, 3) and loaded.x.dtype == np.uint8
    by_name = {f.path.stem: x for f, x in zip(loaded.frames, loaded.x, strict=True)}
    # the same picture looks the same to the model whatever its encoding
    for name in ("alpha_1", "big_1"):
        assert np.abs(by_name[name].astype(int) - by_name["rgb_1"].astype(int)).mean() < 6, name
    grey = by_name["grey_1"]
    assert np.array_equal(grey[..., 0], grey[..., 1])  # grey stays grey in RGB


def test_loaded_frames_equal_the_daemons_preprocessing(kaggle: Path) -> None:
    frames = find_frames(kaggle)[:3]
    loaded = load_frames(frames, PRE)
    for fr, x in zip(loaded.frames, loaded.x, strict=True):
        expect = PRE.apply(cv2.imread(str(fr.path)))
        assert np.array_equal(x.astype(np.float32) / 255.0, expect)


def test_session_split_never_shares_a_session(kaggle: Path) -> None:
    split = split_frames(find_frames(kaggle), seed=3)
    fit_s = {f.session for f in split.fit}
    val_s = {f.session for f in split.val}
    test_s = {f.session for f in split.test_normal}
    assert len(fit_s) == len(val_s) == len(test_s) == 1
    assert fit_s.isdisjoint(val_s) and fit_s.isdisjoint(test_s) and val_s.isdisjoint(test_s)
    assert split.protocol == "session"
    assert split.sessions["fit"] == sorted(fit_s) and split.sessions["test"] == sorted(test_s)
    assert all(f.label == NORMAL for f in split.fit)
    assert len(split.test_anomalous) == 4


def test_a_prints_part_after_a_resume_stays_on_its_prints_side(tmp_path: Path) -> None:
    """``collect`` writes a print paused and resumed as two parts (``<print>+resumed1``),
    each replayed from its own first frames as the daemon learns the print again at a resume;
    a split or a cross-fit that put them apart would test a part on its near-copy."""
    from trainer.crossfit import leave_out_groups

    for k, name in enumerate(("a", "a+resumed1", "a+resumed2", "b", "c", "c+resumed1")):
        for i in range(5):  # each part its own frames, as a camera's are
            _write(tmp_path / "n" / f"{name}_{i}.jpg", synth.normal_frame(0, i, seed=k))
    frames = find_frames(normal=[tmp_path / "n"])
    assert {f.session for f in frames} == {"a", "a+resumed1", "a+resumed2", "b", "c", "c+resumed1"}
    for seed in range(6):
        split = split_frames(frames, split="session", seed=seed)
        sides = [{s.split("+")[0] for s in split.sessions[k]} for k in ("fit", "val", "test")]
        assert sum(len(side) for side in sides) == 3, (seed, split.sessions)
    named = split_frames(frames, split="session", test_sessions=["c"], val_sessions=["b"])
    assert named.sessions["test"] == ["c", "c+resumed1"] and named.sessions["fit"] == [
        "a",
        "a+resumed1",
        "a+resumed2",
    ]
    assert leave_out_groups(["a", "a+resumed1", "b", "c+resumed1", "c"], 2) == [
        ["a", "a+resumed1", "c", "c+resumed1"],
        ["b"],
    ]
    with pytest.raises(ValueError, match="two normal prints"):
        leave_out_groups(["a", "a+resumed1"], 4)
    with pytest.raises(DataError, match="both name print 'a'"):
        split_frames(frames, split="session", val_sessions=["a"], test_sessions=["a+resumed1"])


def test_named_sessions_and_unknown_session(kaggle: Path) -> None:
    frames = find_frames(kaggle)
    split = split_frames(frames, val_sessions=["print0"], test_sessions=["print2"])
    assert split.sessions["fit"] == ["print1"]
    with pytest.raises(DataError, match="printX"):
        split_frames(frames, test_sessions=["printX"])


def test_random_split_is_labelled_optimistic(kaggle: Path) -> None:
    split = split_frames(find_frames(kaggle), split="random")
    assert split.protocol.startswith("random") and "optimistic" in split.protocol


def test_split_all_fits_every_session_and_says_so(kaggle: Path) -> None:
    split = split_frames(find_frames(kaggle), split="all")
    assert split.sessions["fit"] == ["print0", "print1", "print2"]
    assert split.test_normal == [] and split.val
    assert not {f.path for f in split.val} & {f.path for f in split.fit}
    assert split.protocol.startswith("all") and "optimistic" in split.protocol and split.notes


def test_split_all_validates_on_the_last_frames_of_each_print(kaggle: Path) -> None:
    """The model to ship stops and sets its threshold on the frames the benchmark's models do:
    each print's last 15%, not random frames next to fitted ones."""
    split = split_frames(find_frames(kaggle), split="all")
    for session in split.sessions["fit"]:
        fit = sorted(f.number for f in split.fit if f.session == session)
        val = sorted(f.number for f in split.val if f.session == session)
        assert val and min(val) > max(fit), session
        assert len(val) == round(0.15 * (len(fit) + len(val))), session


def test_split_all_of_unnumbered_frames_validates_on_a_fraction_of_them(tmp_path: Path) -> None:
    """Frames named without a print and number (a folder of snapshots) are no time order: the
    model to ship still keeps 15% of them out of fitting to stop training and set its threshold,
    not a single frame."""
    for i in range(20):
        _write(tmp_path / "n" / f"snapshot{chr(97 + i)}.jpg", synth.normal_frame(0, i))
    split = split_frames(find_frames(normal=[tmp_path / "n"]), split="all")
    assert len(split.val) == 3 and len(split.fit) == 17
    assert not {f.path for f in split.val} & {f.path for f in split.fit}


def test_one_session_falls_back_to_random_and_says_so(tmp_path: Path) -> None:
    for i in range(6):
        _write(tmp_path / "n" / f"only_{i}.jpg", synth.normal_frame(0, i))
    split = split_frames(find_frames(normal=[tmp_path / "n"]))
    assert "optimistic" in split.protocol and split.notes


def test_frames_named_as_no_print_are_not_held_out_one_frame_a_print(tmp_path: Path) -> None:
    """A folder of snapshots (no ``<print>_<n>`` names) split by session made each frame a
    print of its own: one frame held out as "a print", its neighbours fitted, and the report
    called that a held-out print. It is a random split, labelled optimistic."""
    for i in range(12):
        _write(tmp_path / "n" / f"frame{chr(97 + i)}.jpg", synth.normal_frame(0, i))
    split = split_frames(find_frames(normal=[tmp_path / "n"]), split="session")
    assert "optimistic" in split.protocol and any("named as a print" in n for n in split.notes)
    # and nothing but failures is one line, whatever the split
    for i in range(3):
        _write(tmp_path / "c" / "failures" / f"bad_{i}.jpg", synth.anomalous_frame())
    with pytest.raises(DataError, match="every frame given is a failure"):
        split_frames(find_frames(normal=[tmp_path / "c"]), split="session")


def test_contamination_is_seeded_and_counted(kaggle: Path) -> None:
    frames = find_frames(kaggle)
    a = split_frames(frames, split="random", contamination=0.3, seed=7)
    b = split_frames(frames, split="random", contamination=0.3, seed=7)
    assert [f.path for f in a.contamination] == [f.path for f in b.contamination]
    assert len(a.contamination) == int(len(a.fit) * 0.3)
    assert all(f.label == ANOMALOUS for f in a.contamination)
    assert not {f.path for f in a.contamination} & {f.path for f in a.test_anomalous}


def test_contamination_without_failure_frames_says_it_does_nothing() -> None:
    """``--contamination 0.5`` with no failure frames to put in the fit trained on good frames
    only and said nothing: the robustness experiment looked run."""
    frames = [Frame(Path(f"p{s}_{i}.jpg"), NORMAL, f"p{s}", i) for s in range(3) for i in range(9)]
    split = split_frames(frames, split="session", contamination=0.5)
    assert split.contamination == []
    said = "--contamination 0.5 puts no failure frame in the fit (there are none"
    assert any(said in n for n in split.notes), split.notes
    # nor where the share of the fit is less than one frame
    failed = [Frame(Path(f"f_{i}.jpg"), ANOMALOUS, "f", i) for i in range(5)]
    split = split_frames(frames + failed, split="session", contamination=0.01)
    said = "--contamination 0.01 puts no failure frame in the fit (0.01 of its 9 frames is less"
    assert any(said in n for n in split.notes), split.notes


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--data", "/nonexistent/frames"], "/nonexistent/frames"),
        (["--normal", "EMPTY"], "no JPEG or PNG"),
        ([], "--data"),
        (["--data", "DATA", "--contamination", "1.5"], "--contamination"),
        (["--data", "DATA", "--input-size", "100x75"], "divisible"),
        (["--data", "DATA", "--input-size", "big"], "WIDTHxHEIGHT"),
        (["--data", "DATA", "--preset", "huge"], "huge"),
        (["--data", "DATA", "--test-sessions", "printX"], "printX"),
        (["--data", "DATA", "--split", "random", "--test-sessions", "print1"], "--split session"),
        # found before the frames are loaded and an hour of training, not after
        (["--data", "DATA", "--out", "FILE"], ": a file, not a folder"),
        (["--normal", "DATA/no_defected", "--use-f1-threshold"], "--use-f1-threshold"),
    ],
)
def test_cli_errors_are_one_line_exit_2(
    tmp_path: Path, kaggle: Path, args: list[str], needle: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("not a folder")
    named = {"EMPTY": tmp_path / "empty", "FILE": tmp_path / "file"}
    args = [str(named[a]) if a in named else a.replace("DATA", str(kaggle)) for a in args]
    proc = _cli("--out", str(tmp_path / "runs"), *args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small disk: needs root")
def test_an_out_on_a_disk_too_full_for_a_run_is_refused_before_the_fit(
    tmp_path: Path, kaggle: Path
) -> None:
    """A disk that filled during the fit ended in the HDF5 library's tracebacks and a crash
    (exit 139), its run folder left with a cut checkpoint. Refused in one line first."""

    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"no tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        proc = _cli("--data", str(kaggle), "--out", str(small / "runs"))
        assert proc.returncode == 2, proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert line.startswith(f"error: --out {small / 'runs'}: ") and "MB free" in line, line
        assert not (small / "runs").exists()
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_a_false_alarm_kept_from_a_held_out_print_is_not_fitted(tmp_path: Path) -> None:
    """The owner answered "not a failure" during print 3, and that frame was kept for
    retraining. ``--split session --test-sessions p-3``: the frame was fitted all the same,
    and print 3 "held out" was judged by a model that had seen its hardest moment. A kept
    false alarm nearest to a held-out print's frames is left out of the fit; one of a fitted
    print, or of the validation print, stays."""
    from trainer.data import without_loose_of_held_out

    for p in range(4):
        for n in range(8):
            _write(tmp_path / f"p-{p}_{n}.jpg", synth.normal_frame(p, n, 8))
    alarms = tmp_path / "false_alarms"
    # the daemon's frames, taken between two of collect's: another moment of the same print
    _write(alarms / "20261204T101500000Z-aa.jpg", synth.normal_frame(3, 11, 16))
    _write(alarms / "20261204T081500000Z-bb.jpg", synth.normal_frame(0, 9, 16))
    _write(alarms / "20261204T091500000Z-cc.jpg", synth.normal_frame(2, 9, 16))  # validation's
    split = split_frames(find_frames(normal=[tmp_path]), "session", ["p-2"], ["p-3"], seed=0)
    pre = Preprocess(width=64, height=32)
    fit, held = load_frames(split.fit, pre), load_frames(split.test_normal, pre)
    val = load_frames(split.val, pre)
    assert sum(f.loose for f in fit.frames) == 3
    kept, went = without_loose_of_held_out(fit, held, val)
    assert went == {"p-3": 1}
    assert sorted(f.path.name for f in kept.frames if f.loose) == [
        "20261204T081500000Z-bb.jpg",
        "20261204T091500000Z-cc.jpg",
    ]
    assert len(kept.x) == len(kept.frames) == len(fit.frames) - 1
    assert without_loose_of_held_out(fit, load_frames([], pre))[1] == {}  # nothing held out


def test_a_false_alarm_confirmed_a_failure_since_is_not_fitted_as_a_good_frame(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``--normal may --normal june``: May's copy kept the incident's frame as a false alarm,
    June's holds it as a confirmed failure (the verdict changed). It was fitted as a good frame
    and replayed as the failure: the model learnt what it is asked to catch."""
    incident = "20261205T101010000Z-abc123"
    failure = cv2.imencode(".jpg", synth.anomalous_frame(0))[1].tobytes()
    for month in ("may", "june"):
        for n in range(3):
            frame = synth.normal_frame(0 if month == "may" else 1, n, 3)
            _write(tmp_path / month / "p1" / f"p1-2026{month}-print_{n}.jpg", frame)
    (tmp_path / "may" / "p1" / "false_alarms").mkdir()
    (tmp_path / "may" / "p1" / "false_alarms" / f"{incident}.jpg").write_bytes(failure)
    (tmp_path / "june" / "p1" / "failures").mkdir()
    (tmp_path / "june" / "p1" / "failures" / f"{incident}.jpg").write_bytes(failure)
    with caplog.at_level(logging.WARNING, logger="trainer.data"):
        frames = find_frames(normal=[tmp_path / "may", tmp_path / "june"])
    labels = {f.path.parent.name: f.label for f in frames if f.path.name == f"{incident}.jpg"}
    assert labels == {"failures": ANOMALOUS}, labels
    assert any("is also a confirmed failure" in r.getMessage() for r in caplog.records)


def test_prints_that_start_on_the_same_black_frame_are_not_copies(tmp_path: Path) -> None:
    """A camera that sees a black bed until the start G-code turns the light on gives every
    print the same first frame (``collect`` re-encodes it to the same bytes): only a print
    whose every frame is the same is a copy, not prints that only start alike."""
    black = np.zeros_like(synth.normal_frame())
    for k, name in enumerate(("p1-20261201T100000-a", "p1-20261202T100000-b", "p1-20261203-c")):
        _write(tmp_path / "p1" / f"{name}_0.jpg", black)
        for n in range(1, 3 + k):
            _write(tmp_path / "p1" / f"{name}_{n}.jpg", synth.normal_frame(k, n, 6))
    frames = find_frames(normal=[tmp_path / "p1"])
    assert len({f.session for f in frames}) == 3


def test_too_few_frames_to_fit_says_how_many_were_found(tmp_path: Path) -> None:
    """One frame given (a folder of text files named .jpg but one): "no normal frames left to
    fit the model on" said nothing of why; it says how many were found and where they went."""
    _write(tmp_path / "frames" / "print1_0.jpg", synth.normal_frame())
    frames = find_frames(normal=[tmp_path / "frames"])
    with pytest.raises(DataError) as err:
        split_frames(frames, "all")
    said = str(err.value)
    assert "of the 1 normal frame(s) found, 1 validate and 0 test" in said, said
    assert "give more frames" in said


def test_the_absolute_thresholds_rule_calls_held_out_only_frames_of_prints_never_fitted() -> None:
    """Two prints split by session: one tests, the other fits and gives a random share of its
    own frames to set the threshold. The report called them "held-out normal frames", beside a
    validation false-alarm rate of 0 and 0.78 on the print really held out. And a threshold
    set on a handful of frames says that its rate means nothing, as the per-print one does."""
    from trainer.pipeline import Options, _choose_threshold, _threshold_frames

    def frames(session: str, n: int, start: int = 0) -> list[Frame]:
        return [Frame(Path(f"{session}_{i}.jpg"), NORMAL, session, i) for i in range(start, n)]

    session = Options(split="session")
    same = Split("session", frames("a", 8), frames("a", 10, 8), [], [])
    other = Split("session", frames("a", 8), frames("b", 2), [], [])
    assert "left out of the fitted prints (optimistic" in _threshold_frames(session, same)
    assert _threshold_frames(session, other) == "held-out normal frames"
    assert "fitted prints (optimistic)" in _threshold_frames(Options(split="all"), other)
    # frames that name no print, split at random: each its own "session", none of them fitted
    loose = [Frame(Path(f"IMG_{i}.jpg"), NORMAL, f"IMG_{i}", 0, loose=True) for i in range(9)]
    randomly = Split("random (optimistic)", loose[:6], loose[6:], [], [])
    assert "optimistic" in _threshold_frames(session, randomly)
    scores = np.linspace(0.1, 0.2, 12)
    _, rule = _choose_threshold(session, scores, None, _threshold_frames(session, other))
    assert "only 12 frames, too few for that rate (it needs 100)" in rule, rule
    _, rule = _choose_threshold(session, np.linspace(0.1, 0.2, 100), None, "held-out frames")
    assert rule == "target false-alarm rate 0.01 on held-out frames", rule


def test_kept_false_alarms_alone_are_refused_as_the_normal_frames(tmp_path: Path) -> None:
    """An owner who answered alerts but never ran ``collect``: ``--normal collected/`` held
    only false_alarms/ and failures/. The trainer fitted a bundle on those five frames, set
    its threshold on one, named the alarms as prints in its report and exited 0; replayed on
    good prints it flagged most of their frames."""
    own = tmp_path / "collected" / "ender3"
    for n in range(5):
        _write(
            own / "false_alarms" / f"20261204T10{n}500000Z-a{n}.jpg", synth.normal_frame(0, n, 5)
        )
    _write(own / "failures" / "20261204T110000000Z-ff.jpg", synth.anomalous_frame(0))
    with pytest.raises(DataError, match="no recorded print, only 5 kept false alarm"):
        find_frames(normal=[tmp_path / "collected"])
    # with a recorded print beside them they teach the model, as before
    for n in range(4):
        _write(own / f"ender3-20261204-cam_{n}.jpg", synth.normal_frame(1, n, 4))
    frames = find_frames(normal=[tmp_path / "collected"])
    assert sum(f.loose for f in frames) == 5 and sum(not f.loose for f in frames) == 5
