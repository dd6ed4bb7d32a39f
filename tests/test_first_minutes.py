"""A print's first minutes and the watched region, through ``python -m watchdog replay`` with a
bundle made by the trainer (``tiny_guarded_bundle``: per-print adaptation on 4 frames, its
start guard cross-fitted by the trainer)."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests import synth
from tests.daemon_helpers import run_cli, write_config
from tests.plugins.models import TINY_FRAMES, TINY_SEED
from watchdog.comms.notify import alert_event
from watchdog.detection.bundle import Bundle
from watchdog.devices.printers import SimulatedPrinter
from watchdog.printing import PrinterStatus

CALIBRATION = 4  # tiny_guarded_bundle's --adapt-frames
UNSEEN = 3  # print3: the tiny trainings' test session, never fitted


def _folder(path: Path, frames: list[np.ndarray]) -> Path:
    path.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(path / f"f_{i}.jpg"), f)
    return path


def _replay(
    tmp_path: Path,
    bundle: Path,
    frames: Path,
    log: list[str] | None = None,
    action: str = "pause",
    out: Path | None = None,
    **detection: object,
) -> list[dict]:
    """``python -m watchdog replay`` of ``frames``: its JSON line per scored frame (its log
    appended to ``log`` when given; its incidents kept in ``out`` when given)."""
    printer: dict[str, object] = {"name": "e3", "action": action}
    if detection:
        printer["detection"] = detection
    config = write_config(
        tmp_path / f"c{len(list(tmp_path.glob('c*.yaml')))}.yaml",
        model=str(bundle),
        printers=[printer],
    )
    kept = ["--out", str(out)] if out is not None else []
    r = run_cli("replay", "--config", str(config), "--frames", str(frames), *kept)
    assert r.returncode == 0, r.stderr
    if log is not None:
        log.append(r.stderr)
    return [json.loads(x) for x in r.stdout.splitlines() if '"frame"' in x and '"event"' not in x]


def _hand(frame: np.ndarray, seed: int) -> np.ndarray:
    """A hand reaching past the lens: a large, skin-coloured, out-of-focus shape over the picture."""
    rng = np.random.default_rng(seed)
    img = frame.copy()
    h, w = img.shape[:2]
    centre = (int(rng.uniform(0.3, 0.7) * w), int(rng.uniform(0.5, 0.9) * h))
    cv2.ellipse(
        img,
        centre,
        (int(0.3 * w), int(0.22 * h)),
        float(rng.uniform(-30, 30)),
        0,
        360,
        (120, 150, 205),
        -1,
    )
    cv2.rectangle(
        img,
        (centre[0] - int(0.1 * w), centre[1]),
        (centre[0] + int(0.1 * w), h),
        (110, 140, 195),
        -1,
    )
    return cv2.GaussianBlur(img, (0, 0), 3)


def test_the_trainer_sets_a_start_guard(tiny_guarded_bundle) -> None:
    meta = Bundle.load(tiny_guarded_bundle).meta
    assert meta.adaptation.guard > 0
    assert "start guard" in meta.extra["adaptation_rule"]


def test_a_print_failing_from_its_first_frame_is_paused_during_calibration(
    tmp_path, tiny_guarded_bundle, anomalous_frames
) -> None:
    """Spaghetti from the first layer: the print's start would be learnt as its normal; the
    start guard pauses it before the calibration ends, and says so."""
    frames = _folder(tmp_path / "rec", list(anomalous_frames[:6]) * 2)
    log: list[str] = []
    lines = _replay(tmp_path, tiny_guarded_bundle, frames, log, out=tmp_path / "out")
    paused = [x for x in lines if x["action"]]
    assert paused, [(x["score"], x["anomalous"]) for x in lines]
    assert paused[0]["frame"] == "f_2.jpg"  # 3 in a row (consecutive: 3), during calibration
    assert all(x["anomalous"] for x in lines[:3])
    assert "this print looks abnormal from its start" in log[0]
    # the alert names the level the start crossed, its guard: the phone said "score 0.4 over
    # 2.6", the guard's score against the later threshold, a failure below its own level
    [saved] = (tmp_path / "out").rglob("alert.json")
    alert = json.loads(saved.read_text())
    guard = Bundle.load(tiny_guarded_bundle).meta.adaptation.guard
    assert alert["threshold"] == guard and alert["score"] > guard, alert
    said = alert_event(alert, None, None).message
    assert f"({alert['score'] / guard:.2f} times the alert level)" in said, said


def test_a_failure_from_the_first_frame_alerts_again_while_its_alert_stands(
    tmp_path, tiny_guarded_bundle, anomalous_frames
) -> None:
    """Spaghetti from the first layer, and the pause does not happen (``action: notify``, or
    the printer's API away): the failing frames went on being learnt as the print's look while
    the alert stood, the start once learnt was the failure, and no alert came again. While an
    alert of the print stands unanswered, its start is judged but not learnt: after the
    cooldown the failure alerts again."""
    frames = _folder(tmp_path / "rec", list(anomalous_frames[:6]) * 2)
    lines = _replay(tmp_path, tiny_guarded_bundle, frames, action="notify", cooldown_s=20)
    alerts = [x["frame"] for x in lines if x["action"]]
    assert len(alerts) >= 2, [(x["frame"], x["score"], x["anomalous"]) for x in lines]
    assert alerts[0] == "f_2.jpg"
    assert all(x["anomalous"] for x in lines), [(x["frame"], x["anomalous"]) for x in lines]


def test_a_normal_print_with_a_hand_passing_the_lens_is_not_paused(
    tmp_path, tiny_guarded_bundle
) -> None:
    """A print the model never fitted; a hand passes the lens for two frames during the
    calibration and for two frames after it: never three in a row, never a pause."""
    frames = [synth.normal_frame(UNSEEN, i, TINY_FRAMES, TINY_SEED) for i in range(TINY_FRAMES)]
    for i in (1, 2, 9, 10):
        frames[i] = _hand(frames[i], i)
    lines = _replay(tmp_path, tiny_guarded_bundle, _folder(tmp_path / "rec", frames))
    assert len(lines) == TINY_FRAMES
    assert not any(x["action"] for x in lines), [
        (x["frame"], x["score"], x["anomalous"]) for x in lines
    ]
    # the detector saw the hand: while the start is learnt (the absolute score, what the start
    # guard judges), the hand's frames score above the same frames without it. (After the
    # start, the hand's later frames are compared with the calibration frames it was in, so
    # they score low: that is the nearest-frames baseline at work, not a blind detector.)
    clean = [synth.normal_frame(UNSEEN, i, TINY_FRAMES, TINY_SEED) for i in range(TINY_FRAMES)]
    clean_lines = _replay(tmp_path, tiny_guarded_bundle, _folder(tmp_path / "clean", clean))
    assert not any(x["action"] for x in clean_lines)
    assert all("calibration" in lines[i] for i in (1, 2))
    hand_scores = [lines[i]["score"] for i in (1, 2)]
    assert min(hand_scores) > 1.5 * max(clean_lines[i]["score"] for i in (1, 2)), (
        hand_scores,
        [clean_lines[i]["score"] for i in (1, 2)],
    )


def test_detection_region_changes_what_is_scored(
    tmp_path, tiny_guarded_bundle, normal_frames
) -> None:
    """A failure on the bed, in the lower part of the picture: watched with the bundle's region
    it pauses the print; with ``detection.region`` set to the top of the picture (where nothing
    changes) it is not seen."""
    rng = np.random.default_rng(7)
    failing = []
    for i in range(8):
        img = synth.normal_frame(0, 8, TINY_FRAMES, TINY_SEED).copy()
        for _ in range(8 + i):
            pts = np.stack([rng.uniform(15, 145, 5), rng.uniform(80, 115, 5)], axis=1).astype(
                np.int32
            )
            cv2.polylines(img, [pts], False, (255, 80, 255), 3, cv2.LINE_AA)
        failing.append(img)
    frames = _folder(tmp_path / "rec", list(normal_frames[:6]) + failing)
    whole = _replay(tmp_path, tiny_guarded_bundle, frames)
    top = _replay(tmp_path, tiny_guarded_bundle, frames, region=[0.0, 0.0, 1.0, 0.35])
    assert [x["action"] for x in whole].count("pause") >= 1
    assert not any(x["action"] for x in top), [(x["frame"], x["score"]) for x in top]
    assert [x["score"] for x in whole] != [x["score"] for x in top]


def _spaghetti(frame: np.ndarray, strands: int, seed: int) -> np.ndarray:
    """Filament strands on the bed, in the lower part of the picture (the watched region)."""
    rng = np.random.default_rng(seed)
    img = frame.copy()
    for _ in range(strands):
        pts = np.stack([rng.uniform(15, 145, 5), rng.uniform(80, 115, 5)], axis=1).astype(np.int32)
        cv2.polylines(img, [pts], False, (255, 80, 255), 3, cv2.LINE_AA)
    return img


def test_a_failure_beginning_during_the_start_is_paused_before_the_start_is_learnt(
    tmp_path, tiny_start_judged_bundle
) -> None:
    """A print the model never fitted starts well; from its 5th frame filament piles up on the
    bed. Its first 3 frames are the yardstick for the rest of its 8-frame start: the print is
    paused before the start is learnt (which would have made the failure its normal), and the
    alert says why. The same print without the failure is not paused."""
    bundle = Bundle.load(tiny_start_judged_bundle).meta
    meta = bundle.adaptation
    assert (meta.frames, meta.early_frames) == (8, 3) and meta.early_threshold > 0
    assert (
        "judged against its first 3 frames (matched to their light)"
        in bundle.extra["adaptation_rule"]
    )
    clean = [synth.normal_frame(UNSEEN, i, TINY_FRAMES, TINY_SEED) for i in range(TINY_FRAMES)]
    failing = clean[:4] + [_spaghetti(f, 6 + i, i) for i, f in enumerate(clean[4:])]
    log: list[str] = []
    lines = _replay(tmp_path, tiny_start_judged_bundle, _folder(tmp_path / "rec", failing), log)
    paused = [i for i, x in enumerate(lines) if x["action"]]
    assert paused and paused[0] < 8, [(x["frame"], x["score"], x["anomalous"]) for x in lines]
    assert not any(x["anomalous"] for x in lines[:4])
    assert "this print changed during its start" in log[0], log[0][-3000:]
    good = _replay(tmp_path, tiny_start_judged_bundle, _folder(tmp_path / "clean", clean))
    assert not any(x["action"] for x in good), [(x["frame"], x["anomalous"]) for x in good]
    # the owner turned the start's judgement off: the failure is learnt as the print's look
    unjudged = _replay(tmp_path, tiny_start_judged_bundle, tmp_path / "rec", judge_start=False)
    assert not any(x["action"] for x in unjudged[:8])


def test_a_start_whose_first_frames_did_not_move_is_not_judged_against_them(
    tmp_path, tiny_start_judged_bundle
) -> None:
    """A snapshot URL stuck on one picture for the start's first frames, then the live print:
    judged against that picture, every live frame looked changed and the print was paused in
    its start. The start is learnt as usual (it moved), only not judged by its first frames."""
    clean = [synth.normal_frame(UNSEEN, i, TINY_FRAMES, TINY_SEED) for i in range(TINY_FRAMES)]
    frozen = [clean[0]] * 3 + clean[3:]  # a feed stuck on its first picture, then live
    lines = _replay(tmp_path, tiny_start_judged_bundle, _folder(tmp_path / "rec", frozen))
    assert not any(x["action"] for x in lines), [(x["frame"], x["score"]) for x in lines]


def _heating(frame: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` frames of a printer heating before it prints: ``frame``, still, as a live camera
    shows it (its sensor noise new in each frame)."""
    rng = np.random.default_rng(7)
    return [
        np.clip(frame + rng.normal(0.0, 2.0, frame.shape), 0, 255).astype(np.uint8)
        for _ in range(n)
    ]


def test_a_failure_just_after_the_printer_heated_is_paused_during_the_start(
    tmp_path, tiny_start_judged_bundle
) -> None:
    """A real print begins with its heaters: OctoPrint and Klipper say "printing" while the
    camera shows a still bed. Those first frames were the yardstick of the rest of the start,
    then not judged against at all, since they did not move: a failure in the print's first
    minutes after it heated was learnt as its look. The start is learnt again after them, so
    the print's first moving frames judge the rest of its start."""
    clean = [synth.normal_frame(UNSEEN, i, TINY_FRAMES, TINY_SEED) for i in range(TINY_FRAMES)]
    heat = _heating(clean[0], 3)
    failing = heat + clean[:4] + [_spaghetti(f, 6 + i, i) for i, f in enumerate(clean[4:])]
    lines = _replay(tmp_path, tiny_start_judged_bundle, _folder(tmp_path / "rec", failing))
    paused = [i for i, x in enumerate(lines) if x["action"]]
    assert paused and paused[0] < 3 + 8, [(x["frame"], x["score"], x["anomalous"]) for x in lines]
    good = _replay(tmp_path, tiny_start_judged_bundle, _folder(tmp_path / "clean", heat + clean))
    assert not any(x["action"] for x in good), [(x["frame"], x["anomalous"]) for x in good]


def _relit(frame: np.ndarray, gain: float, offset: float) -> np.ndarray:
    return np.clip(frame.astype(np.float32) * gain + offset, 0, 255).round().astype(np.uint8)


def test_a_light_switched_on_during_the_start_does_not_pause_it_but_a_failure_does(
    tmp_path, tiny_start_judged_bundle
) -> None:
    """The garage light goes on at the start's 5th frame and stays on, while the rest of the
    start is judged against its first 3 frames: the print goes on (its later frames are
    matched to the first frames' light). Spaghetti under the new light is still paused before
    the start is learnt."""
    assert Bundle.load(tiny_start_judged_bundle).meta.adaptation.match_light
    clean = [synth.normal_frame(UNSEEN, i, TINY_FRAMES, TINY_SEED) for i in range(TINY_FRAMES)]
    for gain, offset in ((1.35, 25.0), (0.6, 0.0)):
        lit = clean[:4] + [_relit(f, gain, offset) for f in clean[4:]]
        lines = _replay(tmp_path, tiny_start_judged_bundle, _folder(tmp_path / f"lit{gain}", lit))
        assert not any(x["action"] for x in lines), [(x["frame"], x["score"]) for x in lines]
    failing = clean[:4] + [
        _relit(_spaghetti(f, 6 + i, i), 1.35, 25) for i, f in enumerate(clean[4:])
    ]
    lines = _replay(tmp_path, tiny_start_judged_bundle, _folder(tmp_path / "litfail", failing))
    paused = [i for i, x in enumerate(lines) if x["action"]]
    assert paused and 4 <= paused[0] < 8, [(x["frame"], x["score"]) for x in lines]


def test_recalibrating_on_ones_own_prints_sets_the_start_threshold_from_their_starts(
    tmp_path, tiny_start_judged_bundle
) -> None:
    """``python -m watchdog calibrate``: the owner's good prints' starts, as their camera gave
    them, set the threshold the start is judged by; a start too short to judge is learnt."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_start_judged_bundle, bundle)
    before = Bundle.load(bundle).meta.adaptation
    mine = _folder(tmp_path / "mine", [])
    for p in (2, 3):
        for i in range(TINY_FRAMES):
            cv2.imwrite(str(mine / f"print{p}_{i}.jpg"), synth.normal_frame(p, i, TINY_FRAMES))
    r = run_cli("calibrate", str(bundle), "--normal", str(mine))
    assert r.returncode == 0, r.stderr
    # the runtime's own start-up line ("INFO: Created TensorFlow Lite XNNPACK delegate") is
    # not the owner's business: nothing but calibrate's own output
    assert "XNNPACK" not in r.stderr + r.stdout, r.stderr
    after = Bundle.load(bundle).meta.adaptation
    assert after.early_frames == 3 and after.early_threshold > 0
    assert after.early_threshold != before.early_threshold
    assert f"early_frames=3 early_threshold={after.early_threshold:.6g}" in r.stdout
    # beside what it was: a threshold that moved a lot (a failed print among the good ones)
    # was nowhere to be seen
    assert f"threshold={after.threshold:.6g} (was {before.threshold:.6g})" in r.stdout
    assert f"(was {before.early_threshold:.6g})" in r.stdout
    moved = after.threshold / before.threshold
    said = "warning: the threshold moved from " in r.stderr
    assert said == (not 0.5 <= moved <= 2.0), (moved, r.stderr)
    # the owner learns that a running watchdog keeps the old threshold until it reloads
    assert "until it reloads (sudo systemctl reload printer-watchdog)" in r.stdout
    shown = Bundle.load(bundle).meta.threshold  # what replay and the dashboard compare with
    assert f"a frame above {shown:.6g} there is above this threshold" in r.stdout
    # two prints of 16 frames, 8 learnt each: 16 later frames cannot set a 1% threshold, and
    # the owner is told so, in the output and in the bundle's note
    judged = 2 * (TINY_FRAMES - after.frames)
    assert f"from 2 prints ({judged} frames after their starts)" in r.stdout, r.stdout
    assert f"warning: only {judged} frames, too few for that rate (it needs 100)" in r.stderr
    rule = Bundle.load(bundle).meta.extra["adaptation_rule"]
    assert f"only {judged} frames, too few for that rate" in rule, rule
    r = run_cli("calibrate", str(bundle), "--normal", str(mine), "--frames", "6")
    assert r.returncode == 0, r.stderr
    assert Bundle.load(bundle).meta.adaptation.early_frames == 3  # still 3 of a start of 6
    r = run_cli("calibrate", str(bundle), "--normal", str(mine), "--frames", "3")
    assert r.returncode == 0, r.stderr
    shortest = Bundle.load(bundle).meta.adaptation
    assert (shortest.early_frames, shortest.early_threshold) == (0, 0.0)  # nothing left to judge


def test_calibrate_counts_a_print_resumed_once_and_a_stub_not_at_all(
    tmp_path, tiny_start_judged_bundle
) -> None:
    """A print's part after a resume (``collect`` names it ``<print>+resumed<k>``) is the same
    print, and a recording that ends within its start is none: "from 4 prints" was said of two
    prints, and the start guard counted them as four (three set one)."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_start_judged_bundle, bundle)
    mine = _folder(tmp_path / "mine", [])
    for name, look, frames in (("a", 2, TINY_FRAMES), ("b", 3, TINY_FRAMES), ("stub", 5, 3)):
        for i in range(frames):
            cv2.imwrite(str(mine / f"{name}_{i}.jpg"), synth.normal_frame(look, i, TINY_FRAMES))
    for i in range(TINY_FRAMES):
        cv2.imwrite(str(mine / f"b+resumed1_{i}.jpg"), synth.normal_frame(4, i, TINY_FRAMES))
    r = run_cli("calibrate", str(bundle), "--normal", str(mine))
    assert r.returncode == 0, r.stderr
    assert " from 2 prints (" in r.stdout.splitlines()[0], r.stdout
    assert "on 2 of the owner's good prints" in Bundle.load(bundle).meta.extra["adaptation_rule"]


def test_calibrate_refuses_the_model_shipped_inside_the_watchdog(tmp_path) -> None:
    """Calibrated in place, the shipped bundle changed a checkout's tracked file and was lost
    at the next update (on a Pi: refused for want of permission, without saying what to do)."""
    from watchdog.detection.bundle import default_bundle_path

    shipped = default_bundle_path()
    before = (shipped / "model.json").read_bytes()
    r = run_cli("calibrate", str(shipped), "--normal", str(tmp_path))
    assert r.returncode == 2 and (shipped / "model.json").read_bytes() == before
    [line] = r.stderr.strip().splitlines()
    assert "the model shipped with the watchdog, which an update replaces" in line, line
    assert f"cp -r {shipped} /var/lib/printer-watchdog/models/mine" in line, line
    # a copy made of links (cp -rs): its model.json is the shipped one, written through
    links = tmp_path / "links"
    links.mkdir()
    for name in ("model.json", "model.tflite"):
        (links / name).symlink_to(shipped / name)
    r = run_cli("calibrate", str(links), "--normal", str(tmp_path))
    assert r.returncode == 2 and (shipped / "model.json").read_bytes() == before
    assert "the model shipped with the watchdog" in r.stderr, r.stderr


def test_calibrate_counts_a_print_given_twice_once(tmp_path, tiny_start_judged_bundle) -> None:
    """``--normal may --normal june`` where june still holds May's print: "from 2 prints"
    was said of one, its warning that one print set the thresholds gone, as the trainer
    would not count it twice."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_start_judged_bundle, bundle)
    may = _folder(tmp_path / "may", [])
    for i in range(TINY_FRAMES):
        cv2.imwrite(str(may / f"a_{i}.jpg"), synth.normal_frame(2, i, TINY_FRAMES))
    shutil.copytree(may, tmp_path / "june")
    (tmp_path / "june" / "a_0.jpg").unlink()  # a copy's first frame deleted since
    r = run_cli("calibrate", str(bundle), "--normal", str(may), "--normal", str(tmp_path / "june"))
    assert r.returncode == 0, r.stderr
    assert " from 1 prints (" in r.stdout.splitlines()[0], r.stdout
    assert f"print a in {tmp_path / 'june'} is a copy of print a in {may}" in r.stderr, r.stderr


def test_calibrating_on_a_folder_without_prints_says_so_in_one_line(
    tmp_path, tiny_start_judged_bundle
) -> None:
    """An empty folder, or one of frames not named as a print's, was "no normal print longer
    than 30 frames whose start moves" after the model was loaded."""
    empty = _folder(tmp_path / "empty", [])
    r = run_cli("calibrate", str(tiny_start_judged_bundle), "--normal", str(empty))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: --normal {empty}: no frame named <print>_<number>.jpg (a print's frames, as "
        "collect records them)"
    ]
    loose = _folder(tmp_path / "loose", [])
    cv2.imwrite(str(loose / "frame.jpg"), synth.normal_frame(2, 0, TINY_FRAMES))
    r = run_cli("calibrate", str(tiny_start_judged_bundle), "--normal", str(loose))
    assert r.returncode == 2 and "1 frame(s), none named <print>_<number>.jpg" in r.stderr


def test_calibrating_on_the_prints_the_model_was_trained_on_is_warned_against(
    tmp_path, tiny_start_judged_bundle, synthetic_dataset
) -> None:
    """Judged on the prints it was fitted on, a model sets its thresholds too low: the owner
    is told, even where the prints were renamed since, and prints it never saw are calibrated
    without a word, even where one is called like a print it was trained on."""
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_start_judged_bundle, bundle)
    r = run_cli("calibrate", str(bundle), "--normal", str(synthetic_dataset / "no_defected"))
    assert r.returncode == 0, r.stderr
    assert (
        "prints trained this model" in r.stderr and "calibrate on prints recorded since" in r.stderr
    )
    # a fitted print (print0) copied under another name, beside a new print named print0
    renamed = _folder(tmp_path / "renamed", [])
    for i in range(TINY_FRAMES):
        shutil.copy(
            synthetic_dataset / "no_defected" / f"print0_{i}.jpg", renamed / f"benchy_{i}.jpg"
        )
    r = run_cli("calibrate", str(bundle), "--normal", str(renamed))
    assert r.returncode == 0, r.stderr
    assert "1 of these 1 prints trained this model" in r.stderr
    mine = _folder(tmp_path / "mine", [])
    for i in range(TINY_FRAMES):
        cv2.imwrite(str(mine / f"print0_{i}.jpg"), synth.normal_frame(7, i, TINY_FRAMES))
    r = run_cli("calibrate", str(bundle), "--normal", str(mine))
    assert r.returncode == 0, r.stderr
    assert "trained this model" not in r.stderr


def test_calibrating_for_a_printer_scores_the_frames_with_its_region_and_mask(
    tmp_path, tiny_start_judged_bundle
) -> None:
    """``calibrate --config FILE --printer NAME``: the thresholds are set on the frames as that
    printer's watcher scores them (its region and mask), not on the bundle's own crop, which
    the daemon would then apply to another view."""
    import shutil

    mine = _folder(tmp_path / "mine", [])
    for p in (2, 3):
        for i in range(TINY_FRAMES):
            cv2.imwrite(str(mine / f"print{p}_{i}.jpg"), synth.normal_frame(p, i, TINY_FRAMES))

    def calibrated(*extra: str) -> tuple[float, float]:
        bundle = tmp_path / f"bundle{len(list(tmp_path.glob('bundle*')))}"
        shutil.copytree(tiny_start_judged_bundle, bundle)
        r = run_cli("calibrate", str(bundle), "--normal", str(mine), *extra)
        assert r.returncode == 0, r.stderr
        a = Bundle.load(bundle).meta.adaptation
        return a.threshold, a.early_threshold

    detection = {"region": [0.0, 0.0, 1.0, 1.0], "mask": [[[0.0, 0.0], [0.5, 0.0], [0.5, 0.4]]]}
    config = write_config(
        tmp_path / "c.yaml",
        model=str(tiny_start_judged_bundle),
        printers=[{"name": "other"}, {"name": "e3", "detection": detection}],
    )
    own = calibrated()
    assert calibrated("--config", str(config), "--printer", "other") == own
    theirs = calibrated("--config", str(config), "--printer", "e3")
    assert theirs[0] != own[0] and theirs[1] != own[1]

    hiding = write_config(
        tmp_path / "hiding.yaml",
        model=str(tiny_start_judged_bundle),
        printers=[{"name": "e3", "detection": {"mask": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}}],
    )
    r = run_cli(
        "calibrate", str(tmp_path / "bundle0"), "--normal", str(mine), "--config", str(hiding)
    )
    assert r.returncode == 2 and "printers.e3.detection.mask" in r.stderr, r.stderr
    r = run_cli("calibrate", str(tmp_path / "bundle0"), "--normal", str(mine), "--printer", "e3")
    assert r.returncode == 2 and "--printer needs --config" in r.stderr
    # a config of several printers: whose view these frames are is not guessed (the first's)
    r = run_cli(
        "calibrate", str(tmp_path / "bundle0"), "--normal", str(mine), "--config", str(config)
    )
    assert r.returncode == 2 and "name the one these frames are from with --printer" in r.stderr
    assert "other, e3" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_calibrating_for_a_printer_in_another_region_keeps_the_start_guard(
    tmp_path, tiny_guarded_bundle
) -> None:
    """The start guard judges starts only in the bundle's own region. Calibrating for a
    printer that watches another region used to turn it off, unsaid, for every printer on the
    bundle; it is kept. The bundle's note on its thresholds then tells calibrate's figures,
    not the trainer's, and a start too short to learn is refused in one line."""
    import shutil

    mine = _folder(tmp_path / "mine", [])
    for p in (2, 3):
        for i in range(TINY_FRAMES):
            cv2.imwrite(str(mine / f"print{p}_{i}.jpg"), synth.normal_frame(p, i, TINY_FRAMES))
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_guarded_bundle, bundle)
    guard = Bundle.load(bundle).meta.adaptation.guard
    config = write_config(
        tmp_path / "c.yaml",
        model=str(bundle),
        printers=[{"name": "e3", "detection": {"region": [0.0, 0.3, 1.0, 1.0]}}],
    )
    assert Bundle.load(bundle).meta.preprocess.roi != (0.0, 0.3, 1.0, 1.0)
    r = run_cli("calibrate", str(bundle), "--normal", str(mine), "--config", str(config))
    assert r.returncode == 0, r.stderr
    meta = Bundle.load(bundle).meta
    assert guard > 0 and meta.adaptation.guard == guard, r.stderr
    assert f"guard={guard:.6g}" in r.stdout
    rule = meta.extra["adaptation_rule"]
    assert rule.startswith("set by `watchdog calibrate` on 2 of the owner's good prints"), rule
    assert f"threshold {meta.adaptation.threshold:.6g}" in rule and f"{guard:.6g}" in rule
    before = (bundle / "model.json").read_text()
    for frames in ("0", "1"):
        r = run_cli("calibrate", str(bundle), "--normal", str(mine), "--frames", frames)
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
            f"error: --frames {frames}: a print's start needs at least 2 frames to learn from"
        ), r.stderr
    r = run_cli("calibrate", str(bundle), "--normal", str(mine), "--std-floor", "nan")
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last == (
        "error: argument --std-floor: 'nan': give a number from 0 to 1 "
        "(see python -m watchdog calibrate --help)"
    ), last
    r = run_cli("calibrate", str(bundle), "--normal", str(mine), "--frames", "5000")
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and last.startswith("error: --frames 5000: adaptation.frames"), last
    assert (bundle / "model.json").read_text() == before


def test_the_trainers_report_says_how_the_start_is_judged(tiny_start_judged_run) -> None:
    """The report replays the held-out prints' starts as the daemon judges them, and each known
    failure beginning right after their first frames: what the owner should expect of the
    start, beside the rest of the print."""
    report = json.loads((tiny_start_judged_run / "report.json").read_text())
    start = report["daemon"]["start"]
    meta = Bundle.load(tiny_start_judged_run / "bundle").meta.adaptation
    assert (start["first_frames"], start["threshold"]) == (3, meta.early_threshold)
    good = [r for r in start["replays"] if not r["failure"]]
    failed = [r for r in start["replays"] if r["failure"]]
    assert good and failed and all(r["judged_frames"] == 8 - 3 for r in good)
    assert start["good_starts"] == len(good) and start["failures_replayed"] == len(failed)
    # the synthetic failures are spaghetti over the bed: judged against a good start, caught
    assert start["failures_paused"] >= 1
    text = (tiny_start_judged_run / "report.md").read_text()
    assert "### The start of a print" in text and "starts paused by mistake" in text
    assert report["test_normal_from"] == "held-out prints"  # it kept prints out of the fit
    # a handful of frames set the 1% threshold: the report says how many, and what it means
    assert "frames, too few for that rate (it needs 100)" in report["daemon"]["threshold_rule"]
    # the thresholds as the page and replay show them: the bundle's, not the per-print one
    bundle = Bundle.load(tiny_start_judged_run / "bundle").meta
    assert (
        f"changed {bundle.adaptation.threshold:.4g} from its print's start, the per-print "
        f"threshold above, shows as {bundle.threshold:.4g}; so does a start frame that reaches "
        f"the start's threshold ({bundle.adaptation.early_threshold:.4g}"
    ) in " ".join(text.split()), text


def test_recalibrating_onto_a_full_disk_leaves_the_bundle_as_it_was(
    tmp_path, tiny_start_judged_bundle
) -> None:
    """The new model.json cannot be written (the disk is full): one line says so, exit 2, and
    the bundle still loads as it was (not a half-written model.json)."""
    import shutil
    import subprocess
    import sys

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_start_judged_bundle, bundle)
    before = (bundle / "model.json").read_bytes()
    mine = _folder(tmp_path / "mine", [])
    for p in (2, 3):
        for i in range(TINY_FRAMES):
            cv2.imwrite(str(mine / f"print{p}_{i}.jpg"), synth.normal_frame(p, i, TINY_FRAMES))
    cmd = f"ulimit -f 1; exec {sys.executable} -m watchdog calibrate {bundle} --normal {mine}"
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    [line] = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert "model.json: cannot save" in line and "Traceback" not in r.stderr
    assert (bundle / "model.json").read_bytes() == before
    assert Bundle.load(bundle).meta.adaptation is not None


class _HeatsFirst(SimulatedPrinter):
    """The simulated printer, its API saying it heats for its first ``polls`` polls. A real
    heat-up cannot be timed to a folder camera's frames here; OctoPrint's and Klipper's own
    heaters are read in test_act_octoprint.py and test_act_moonraker.py."""

    def __init__(self, polls: int) -> None:
        super().__init__("benchy.gcode")
        self.polls = polls

    def status(self) -> PrinterStatus:
        status = dataclasses.replace(super().status(), heating=self.polls > 0)
        self.polls -= 1
        return status


def _through_jpeg(
    frame: np.ndarray, seed: int, noise: float = 2.0, quality: int = 70
) -> np.ndarray:
    """``frame`` as a camera sends a still scene: its sensor noise (``noise`` grey levels)
    new in each frame, through JPEG at ``quality``, whose blocks then move specks of a few
    pixels, a few percent of them in all."""
    noisy = np.random.default_rng(seed).normal(0.0, noise, frame.shape) + frame
    ok, data = cv2.imencode(
        ".jpg", np.clip(noisy, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def _watcher(tmp_path: Path, bundle: Path, frames: list[np.ndarray], printer: SimulatedPrinter):
    """The daemon's watcher of ``printer`` on a folder camera of ``frames`` (a frame a step,
    10 s apart)."""
    from watchdog.comms.notifier import Notifier
    from watchdog.config import CameraConfig, MqttConfig, PrinterConfig, StorageConfig
    from watchdog.watcher import build_watcher

    work = tmp_path / f"w{len(list(tmp_path.glob('w*')))}"
    source = _folder(work / "rec", frames)
    cfg = PrinterConfig(name="e3", camera=CameraConfig(source=str(source), interval_s=0))
    notifier = Notifier(MqttConfig(), StorageConfig(dir=work / "state"), ["e3"])
    clock = iter(range(0, 100_000, 10))
    return build_watcher(
        cfg, Bundle.load(bundle), notifier, printer=printer, clock=lambda: float(next(clock))
    )


def _watched(
    tmp_path: Path, bundle: Path, frames: list[np.ndarray], heating_polls: int
) -> list[int]:
    """The frames at which the daemon's watcher, its printer heating for its first
    ``heating_polls`` polls, paused a print of ``frames``."""
    watcher = _watcher(tmp_path, bundle, frames, _HeatsFirst(heating_polls))
    records = [watcher.step() for _ in frames]
    return [i for i, r in enumerate(records) if r.action]


def test_a_start_the_printer_says_it_heats_is_learnt_once_it_is_hot(
    tmp_path, tiny_start_judged_bundle, caplog
) -> None:
    """OctoPrint and Klipper say "printing" while the printer heats, for minutes. A printer
    that homes first, then heats, moved in the start's first frames, so the picture did not
    tell a still start: the heating's still bed became the start's yardstick and a good print
    was paused as it began to print. The printer's API says when its heaters are short of
    their targets: the start is learnt from when it is hot, and a failure in the minutes
    after it is still paused during the start."""
    caplog.set_level(logging.INFO, "watchdog.watcher")
    clean = [synth.normal_frame(UNSEEN, i, TINY_FRAMES, TINY_SEED) for i in range(TINY_FRAMES)]
    homing = [
        synth.normal_frame(UNSEEN, 0, TINY_FRAMES, TINY_SEED, carriage_step=i) for i in range(2)
    ]
    heat = homing + [_through_jpeg(clean[0], i) for i in range(10)]
    assert _watched(tmp_path, tiny_start_judged_bundle, heat + clean, 0), (
        "the picture alone told the heating from the print: this test shows nothing"
    )
    assert not _watched(tmp_path, tiny_start_judged_bundle, heat + clean, 12)
    assert "the printer is heating: the print's start is learnt once it is hot" in caplog.text
    assert "the printer is hot: the print's start is learnt from here" in caplog.text
    failing = heat + clean[:4] + [_spaghetti(f, 6 + i, i) for i, f in enumerate(clean[4:])]
    paused = _watched(tmp_path, tiny_start_judged_bundle, failing, 12)
    assert paused and paused[0] < 12 + 8, paused


@pytest.mark.parametrize("noise, quality", [(2.0, 70), (1.0, 40)])
def test_a_still_heating_through_a_cameras_jpeg_noise_is_told_from_the_picture(
    tmp_path, tiny_start_judged_bundle, caplog, noise: float, quality: int
) -> None:
    """Without the printer's word (``api.kind: none``, or an API that says nothing of its
    heaters), the picture tells the heating: a camera's JPEG noise moves specks of a few
    pixels here and there (and a clean camera's, at a low quality, shifts whole blocks by a
    few grey levels), a print moves patches by more. Counted pixel by pixel, the noise looked
    like a print moving, the still bed became the start's yardstick and the good print was
    paused as it began to print."""
    caplog.set_level(logging.INFO, "watchdog.watcher")
    clean = [synth.normal_frame(UNSEEN, i, TINY_FRAMES, TINY_SEED) for i in range(TINY_FRAMES)]
    heat = [_through_jpeg(clean[0], i, noise, quality) for i in range(12)]
    assert not _watched(tmp_path, tiny_start_judged_bundle, heat + clean, 0)
    assert "did not move during the print's start" in caplog.text


def test_a_heat_up_cancelled_does_not_cut_short_the_next_prints(
    tmp_path, tiny_start_judged_bundle, caplog, monkeypatch
) -> None:
    """A print cancelled while it heated (the wrong file, a dirty bed) left its heating's
    start time behind: the next print's heating, later, was taken at its first frame for one
    that had lasted beyond ``HEATING_AT_MOST_S`` (a warning said so) and its still bed was
    learnt as its start. Each poll of the printer's heaters counts now, watched or not."""
    import time

    from watchdog import watcher as watcher_module

    monkeypatch.setattr(watcher_module, "HEATING_AT_MOST_S", 8.0)
    caplog.set_level(logging.INFO, "watchdog.watcher")
    clean = [synth.normal_frame(UNSEEN, i, TINY_FRAMES, TINY_SEED) for i in range(TINY_FRAMES)]
    heat = [_through_jpeg(clean[0], i) for i in range(12)]
    printer = _HeatsFirst(3)
    watcher = _watcher(tmp_path, tiny_start_judged_bundle, heat[:3] + heat + clean, printer)
    for _ in range(3):
        watcher.step()
    printer.cancel()  # during the heat-up
    for _ in range(2):
        watcher.step()  # idle, its heaters off
    time.sleep(8.5)
    printer.start_print("second.gcode")
    printer.polls = 12
    records = [watcher.step() for _ in range(12 + TINY_FRAMES)]
    assert "has been heating for" not in caplog.text
    assert not any(r.action for r in records), [r.anomalous for r in records]


def test_the_page_says_the_printer_heats_only_while_its_print_is_watched(
    tmp_path, tiny_start_judged_bundle
) -> None:
    """The page shows the start's progress and why it waits; with watching switched off
    during the heating, /status went on saying "from when the printer is hot (it is heating)"
    after the printer was hot."""
    from watchdog.control import Command, Verb

    clean = [synth.normal_frame(UNSEEN, i, TINY_FRAMES, TINY_SEED) for i in range(TINY_FRAMES)]
    watcher = _watcher(tmp_path, tiny_start_judged_bundle, clean, _HeatsFirst(3))
    watcher.step()
    assert "(it is heating)" in watcher.status()["calibration"], watcher.status()
    done = watcher.submit(Command("e3", Verb.DISABLE, source="web"))
    for _ in range(4):  # the printer hot meanwhile
        watcher.step()
    assert done.result(5).ok
    assert "heating" not in str(watcher.status().get("calibration")), watcher.status()
