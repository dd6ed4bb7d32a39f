"""Per-print adaptation: a print is judged against its own first frames, old bundles still load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from watchdog.detection.baseline import PrintBaseline
from watchdog.detection.bundle import META_FILE, Adaptation, Bundle, BundleError, Scoring
from watchdog.detection.calibration import calibrate, guarded_maps, simulate, still_starts
from watchdog.detection.detector import Verdict, calibration_start, learnt_from

SCORING = Scoring(error="l2", reduce="topk", topk=0.05)


def _print_maps(n: int, level: float, seed: int) -> np.ndarray:
    """Error maps of a normal print: a fixed per-print pattern plus frame noise."""
    rng = np.random.default_rng(seed)
    pattern = level * rng.random((32, 48))
    return (pattern + 0.01 * rng.random((n, 32, 48))).astype(np.float32)


def test_a_print_that_looks_unusual_from_the_start_is_not_flagged_but_a_new_blob_is() -> None:
    spec = calibrate(
        Adaptation(frames=10), SCORING, [_print_maps(60, 0.05, s) for s in range(3)], 0.01
    )
    adapter = PrintBaseline(spec, SCORING, threshold=0.2)
    unusual = _print_maps(40, 0.5, seed=9)  # absolute errors 10x the prints it was calibrated on
    for emap in unusual[:10]:
        _, calibrating = adapter.observe(float(SCORING.score(emap)), emap)
        assert calibrating
    later = [adapter.observe(0.0, e) for e in unusual[10:]]
    assert all(not cal and score < 0.2 for score, cal in later)
    blob = unusual[-1].copy()
    blob[10:18, 20:28] += 0.5  # something new appears near the bed
    score, calibrating = adapter.observe(0.0, blob)
    assert not calibrating and score > 0.2
    adapter.reset()  # a new print calibrates again
    assert adapter.observe(0.0, blob)[1]


def test_simulate_is_what_the_daemon_computes() -> None:
    maps = _print_maps(30, 0.1, seed=1)
    spec = Adaptation(frames=10, threshold=2.0)
    adapter = PrintBaseline(spec, SCORING, threshold=2.0)  # gain 1: scores are unscaled
    live = [adapter.observe(0.0, e)[0] for e in maps][10:]
    np.testing.assert_allclose(simulate(spec, SCORING, maps), live, rtol=1e-6)


def test_nearest_compares_a_frame_with_the_calibration_frames_that_look_like_it() -> None:
    """The bed moves between two places during calibration, and the error map follows it. A
    later frame with the bed at one place is judged against the calibration frames with the
    bed there (``nearest``): the ordinary view scores lower than against the mean of all, and
    something new still scores high."""
    rng = np.random.default_rng(0)
    place = [np.zeros((8, 8, 3), np.float32), np.ones((8, 8, 3), np.float32)]  # the model input
    pattern = [np.zeros((32, 48)), np.zeros((32, 48))]
    pattern[0][:, :24] = 0.2  # the error follows the bed: left half, then right half
    pattern[1][:, 24:] = 0.2
    maps = np.stack([pattern[i % 2] + 0.01 * rng.random((32, 48)) for i in range(20)]).astype(
        np.float32
    )
    inputs = np.stack([place[i % 2] for i in range(20)])
    mean = Adaptation(frames=10, threshold=1.0)
    near = Adaptation(frames=10, threshold=1.0, nearest=3)
    scores_mean = simulate(mean, SCORING, maps)
    scores_near = simulate(near, SCORING, maps, inputs=inputs)
    assert scores_near.max() < 0.5 * scores_mean.min()
    blob = maps.copy()
    blob[15, 10:18, 20:28] += 0.5
    assert simulate(near, SCORING, blob, inputs=inputs)[5] > 3 * scores_near.max()
    with pytest.raises(ValueError, match="model input"):
        simulate(near, SCORING, maps)


def _moving_print(n: int, level: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Error maps and model inputs of a print whose bed moves between three places: the map's
    pattern follows the bed, scaled by ``level`` (a calm print or a busy one)."""
    rng = np.random.default_rng(seed)
    patterns = rng.random((3, 32, 48))
    place = rng.integers(0, 3, n)
    inputs = np.repeat(place[:, None, None, None], 3, axis=-1) * np.ones((n, 8, 8, 3)) / 2
    maps = level * (patterns[place] + 0.2 * rng.random((n, 32, 48)))
    return maps.astype(np.float32), inputs.astype(np.float32)


def test_print_scale_judges_a_busy_print_and_a_calm_one_on_one_scale() -> None:
    """The same print with every error 3x larger (a busier view, another model): with
    ``print_scale`` its adapted scores are the same, so one threshold fits both; without
    it (and without the per-pixel spread) they triple."""
    calm, inputs = _moving_print(60, 0.05, seed=2)
    busy = 3 * calm
    unit = dict(frames=20, nearest=5, threshold=1.0, pixel_spread=False)
    scaled = Adaptation(**unit, print_scale=True)
    np.testing.assert_allclose(
        simulate(scaled, SCORING, busy, inputs=inputs),
        simulate(scaled, SCORING, calm, inputs=inputs),
        rtol=1e-3,
    )
    plain = Adaptation(**unit)
    np.testing.assert_allclose(
        simulate(plain, SCORING, busy, inputs=inputs),
        3 * simulate(plain, SCORING, calm, inputs=inputs),
        rtol=1e-3,
    )
    # the print's own frames score about 1 (their own typical change); new material far above
    normal = simulate(scaled, SCORING, calm, inputs=inputs)
    assert 0.5 < np.median(normal) < 2.0
    blob = calm.copy()
    blob[40:, 10:18, 20:28] += 0.2
    assert np.min(simulate(scaled, SCORING, blob, inputs=inputs)[20:]) > 3 * np.max(normal)


def test_print_scale_judges_each_calibration_frame_against_the_others_only() -> None:
    """Three calibration frames, the third with 0.3 more error everywhere; each is compared with
    its 2 nearest *other* frames: changes 0, 0 and 0.3, so the print's scale is 0.1. A later
    frame 0.2 above the first two (its nearest) scores 2.0, and its map, what the heatmap
    draws, is in the same units as its score."""
    mean = Scoring(error="l2", reduce="mean")
    maps = np.zeros((4, 4, 4), np.float32)
    maps[2] += 0.3
    maps[3] += 0.2
    inputs = np.zeros((4, 2, 2, 3), np.float32)
    inputs[1] += 0.1
    inputs[2] += 1.0
    spec = Adaptation(frames=3, nearest=2, threshold=1.0, pixel_spread=False, print_scale=True)
    adapter = PrintBaseline(spec, mean, threshold=1.0)
    scores = [adapter.observe(0.0, m, x)[0] for m, x in zip(maps, inputs, strict=True)]
    assert adapter.scale == pytest.approx(0.1, rel=1e-3)
    assert scores[-1] == pytest.approx(2.0, rel=1e-3)
    assert adapter.last_map is not None
    assert mean.score(adapter.last_map) == pytest.approx(scores[-1], rel=1e-6)


def test_a_still_start_does_not_make_every_later_frame_look_enormous() -> None:
    """Calibration error maps all alike (a start where the print hardly moves: a live camera's
    noise and a toolhead passing): the print's own change is nil, so its scale is floored by the calibration
    maps' own level; a later frame like them stays far below any threshold."""
    maps = np.full((11, 8, 8), 0.2, np.float32)
    noise = np.random.default_rng(0).integers(0, 6, (11, 4, 4, 3))
    noise[::2, :2, :2] += 60  # a toolhead passing a corner: the start moves (noise alone does not)
    inputs = (0.5 + noise / 255.0).astype(np.float32)
    spec = Adaptation(frames=10, nearest=3, threshold=1.0, pixel_spread=False, print_scale=True)
    assert simulate(spec, SCORING, maps, inputs=inputs)[0] < 0.01


def test_a_start_that_did_not_move_is_learnt_again_and_calibrated_where_the_daemon_judges(
    caplog,
) -> None:
    """A start whose pictures do not move at all (a frozen feed, a black picture, a printer
    heating) says nothing of the print: the daemon learns the start again instead of judging
    later frames against it. Offline calibration starts each print where the daemon's judged
    start begins (``learnt_from``); a recording with no start that moves is left out, saying
    so, instead of setting the threshold from it."""
    rng = np.random.default_rng(1)
    spec = Adaptation(frames=5, nearest=3, threshold=1.0)
    live_maps = rng.uniform(0.1, 0.3, (12, 8, 8)).astype(np.float32)
    live = rng.integers(0, 256, (12, 2, 2, 3)).astype(np.uint8)
    frozen = np.repeat(live[:1], 12, axis=0)
    assert len(simulate(spec, SCORING, live_maps, inputs=live)) == 7
    assert len(simulate(spec, SCORING, live_maps, inputs=frozen)) == 0  # learnt again and again
    late = np.concatenate([frozen[:5], live[5:]])  # the camera comes back after the start
    assert len(simulate(spec, SCORING, live_maps, inputs=late)) == 2  # its start learnt anew
    # where the daemon's judged start begins: the frames offline calibration starts from
    assert (learnt_from(live, 5), learnt_from(late, 5), learnt_from(frozen, 5)) == (0, 5, 10)
    # never cut to nothing: a print with no start that moves is replayed whole, and left out
    assert (calibration_start(late, 5), calibration_start(frozen[:10], 5)) == (5, 0)
    heated = late[learnt_from(late, 5) :]
    assert len(simulate(spec, SCORING, live_maps[5:], inputs=heated)) == 2
    # the start guard judges the still start's frames too: they are set and checked with it
    np.testing.assert_array_equal(still_starts(late, spec, 5), late[:5])
    assert len(still_starts(live, spec, 0)) == 0
    # ...scored before the judged start's maps; a start that moved from the first is its own
    blank = lambda x: np.zeros((len(x), 8, 8), np.float32)  # noqa: E731
    guarded = guarded_maps(blank, still_starts(late, spec, 5), live_maps[5:10])
    assert len(guarded) == 10 and not guarded[:5].any()
    np.testing.assert_array_equal(guarded[5:], live_maps[5:10])
    moved = guarded_maps(blank, still_starts(live, spec, 0), live_maps[:5])
    np.testing.assert_array_equal(moved, live_maps[:5])

    # where the start is judged against its first 2 frames, 2 still ones are enough to learn
    # it again (a printer heating for less than a whole start); 5 still frames then a live one:
    # two starts learnt again, the third moved
    judged = Adaptation(frames=5, early_frames=2, early_threshold=1.0, threshold=1.0)
    heating = np.concatenate([frozen[:5], live[5:]])
    assert judged.still_first_frames == 2
    assert learnt_from(heating, 5, early=2) == calibration_start(heating, 5, early=2) == 4
    np.testing.assert_array_equal(still_starts(heating, judged, 4), heating[:4])

    calibrated = calibrate(spec, SCORING, [live_maps, live_maps], inputs=[live, frozen])
    assert "normal print 2 of 2 left out: its picture did not move" in caplog.text
    alone = calibrate(spec, SCORING, [live_maps], inputs=[live])
    assert calibrated.threshold == alone.threshold
    with pytest.raises(ValueError, match="whose start moves"):
        calibrate(spec, SCORING, [live_maps], inputs=[frozen])


def test_without_pixel_spread_the_change_is_the_error_above_the_baseline() -> None:
    """``pixel_spread`` off: a pixel whose calibration frames varied a lot counts a new error
    as much as a steady pixel does (with it, the busy pixel's change is divided away)."""
    rng = np.random.default_rng(3)
    maps = np.full((11, 16, 16), 0.1, np.float32)
    maps[:10, :, :8] += 0.2 * rng.random((10, 16, 8)).astype(np.float32)  # the left half is busy
    maps[10] = maps[:10].mean(axis=0)
    maps[10, 2, 2] += 0.3  # the same new error on a busy pixel...
    maps[10, 2, 12] += 0.3  # ...and on a steady one
    top1 = Scoring(error="l2", reduce="topk", topk=1 / 256)
    for spread, ratio in ((False, (0.9, 1.1)), (True, (0.0, 0.5))):
        adapter = PrintBaseline(
            Adaptation(frames=10, threshold=1.0, pixel_spread=spread), top1, 1.0
        )
        for emap in maps:
            adapter.observe(0.0, emap)
        assert adapter.last_map is not None
        busy, steady = adapter.last_map[2, 2], adapter.last_map[2, 12]
        assert ratio[0] < busy / steady < ratio[1]


def test_print_scale_without_nearest_frames_is_refused(bundle_copy: Path) -> None:
    meta = json.loads((bundle_copy / META_FILE).read_text())
    meta["adaptation"] = {"frames": 30, "threshold": 1.0, "print_scale": True}
    (bundle_copy / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="print_scale needs nearest"):
        Bundle.load(bundle_copy)
    meta["adaptation"] = {"frames": 30, "threshold": 1.0, "pixel_spread": "no"}
    (bundle_copy / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="pixel_spread must be true or false"):
        Bundle.load(bundle_copy)


def test_adaptation_off_passes_scores_through() -> None:
    adapter = PrintBaseline(Adaptation(), SCORING, threshold=0.3)
    assert adapter.observe(0.7, np.zeros((4, 4))) == (0.7, False)


@pytest.fixture()
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, dest)
    return dest


def test_a_bundle_without_adaptation_loads_with_it_off(bundle_copy: Path) -> None:
    meta = json.loads((bundle_copy / META_FILE).read_text())
    meta.pop("adaptation", None)
    (bundle_copy / META_FILE).write_text(json.dumps(meta))
    assert not Bundle.load(bundle_copy).meta.adaptation.enabled


def test_adaptation_on_without_a_threshold_is_refused(bundle_copy: Path) -> None:
    meta = json.loads((bundle_copy / META_FILE).read_text())
    meta["adaptation"] = {"frames": 30, "std_floor": 0.5, "threshold": 0.0}
    (bundle_copy / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="adaptation.threshold"):
        Bundle.load(bundle_copy)


def test_per_print_quantiles_equal_numpys_to_the_last_bit() -> None:
    """The baseline's noise floor and the light fit's still pixels use our own quantile (numpy's
    imports 1.2 MB of numpy.ma into the daemon); scores must not move by a bit."""
    from watchdog.detection.quantile import quantile

    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        for size in (1, 2, 7, 8192):
            values = (rng.random(size) * 1e-3).astype(dtype)
            for q in (0.0, 0.05, 0.1, 0.5, 0.75, 0.99, 1.0, float(rng.random())):
                assert quantile(values, q) == float(np.quantile(values, q))


def test_a_model_failing_while_the_start_is_rescored_learns_the_start_again() -> None:
    """With light matching the start's frames are rescored by the model at its last frame. If
    the model fails then, the print's start is learnt again from the next frame: no later
    frame is judged against a half-learnt start (before, the detector counted the start as
    learnt while its baseline had started over, and judged frames on the absolute score
    against the adapted threshold)."""
    from watchdog.detection.calibration import unit_meta
    from watchdog.detection.detector import Detector

    frames_n = 4
    calls = {"n": 0, "fail_at": frames_n + 1}  # the first rescoring call

    def error_map(x: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == calls["fail_at"]:
            raise RuntimeError("the model failed")
        return np.abs(x - 0.5).mean(axis=-1).astype(np.float32)

    meta = unit_meta(SCORING, Adaptation(frames=frames_n, threshold=10.0, match_light=True))
    detector = Detector(meta, error_map)
    rng = np.random.default_rng(0)
    scene = rng.integers(40, 200, (48, 64, 3)).astype(np.int16)

    shown = iter(range(1000))

    def frame() -> np.ndarray:
        """The scene with a camera's noise and a toolhead (a bright block) at one of two places
        in turn: a start that moves (one showing the noise alone is learnt again, see above)."""
        x = scene + rng.integers(-2, 3, scene.shape)
        top = 4 if next(shown) % 2 else 30
        x[top : top + 8, 20:28] = 230
        return np.clip(x, 0, 255).astype(np.uint8)

    for _ in range(frames_n - 1):
        assert detector.observe(frame()).calibrating
    with pytest.raises(RuntimeError):
        detector.observe(frame())
    assert detector.calibrating and detector.progress == f"0/{frames_n}"
    verdicts = [detector.observe(frame()) for _ in range(frames_n + 3)]
    assert [v.calibrating for v in verdicts] == [True] * frames_n + [False] * 3
    assert not any(v.anomalous for v in verdicts)


def test_a_scoring_window_counts_a_compact_patch_above_the_same_error_scattered() -> None:
    rng = np.random.default_rng(0)
    patch, scattered = np.zeros((64, 128), np.float32), np.zeros((64, 128), np.float32)
    patch[20:30, 40:50] = 1.0  # a failure: 100 pixels in one place
    scattered.ravel()[rng.choice(64 * 128, 100, replace=False)] = 1.0  # noise: 100 anywhere
    plain = Scoring(error="ssim", reduce="topk", topk=0.02)
    windowed = Scoring(error="ssim", reduce="topk", topk=0.02, window=9)
    assert plain.score(patch) == pytest.approx(plain.score(scattered), rel=0.05)
    assert windowed.score(patch) > 3 * windowed.score(scattered)


@pytest.mark.parametrize("heating", [3, 7, 13, 19, 27])
def test_a_start_that_heats_is_learnt_from_its_first_moving_frame_by_the_daemon_and_offline(
    heating: int,
) -> None:
    """A printer heats for some frames (a still bed), then prints. The start was learnt again
    only at 10-frame boundaries, so the start's first 10 frames, against which the rest of it
    is judged, were mostly still bed after a heating of 7 frames (or 17): every printed frame
    looked changed, and good prints were paused. The start is learnt from the first frame
    that moves, the daemon's ``Detector`` and the trainer's ``learnt_from`` alike (where 3
    still frames or more came before it: one or two of a start's 8 are no harm)."""
    from watchdog.detection.calibration import unit_meta
    from watchdog.detection.detector import offline_detector

    rng = np.random.default_rng(heating)
    bed = rng.integers(40, 200, (32, 48)).astype(np.float32)

    def frame(i: int | None) -> np.ndarray:  # None: heating, else the carriage at step i
        f = bed + rng.normal(0, 2, bed.shape)
        if i is not None:
            f[4:18, (5 * i) % 32 : (5 * i) % 32 + 16] = 250  # a toolhead: 15% of the view
        return np.clip(f, 0, 255).astype(np.uint8)

    x = np.stack([frame(None) for _ in range(heating)] + [frame(i) for i in range(60)])
    spec = Adaptation(frames=20, early_frames=8, early_threshold=1.0, threshold=1.0)
    detector = offline_detector(unit_meta(SCORING, spec))
    maps = rng.uniform(0.1, 0.3, (len(x), 4, 4)).astype(np.float32)
    verdicts = detector.replay(list(maps), [f.astype(np.float32) / 255 for f in x])
    judged = [i for i, v in enumerate(verdicts) if v.early_score is not None]
    assert judged[0] == heating + 8, judged[:3]  # the first 8 moving frames are the yardstick
    assert learnt_from(x, 20, early=spec.still_first_frames) == heating
    assert calibration_start(x, 20, early=spec.still_first_frames) == heating
    np.testing.assert_array_equal(still_starts(x, spec, heating), x[:heating])


def test_a_heating_start_is_not_cut_at_a_frame_of_jpeg_noise() -> None:
    """A camera's JPEG noise moves a few percent of the pixels now and then, each on its own:
    the start was cut there, at a still frame, and the cut (once a print) was spent before the
    print moved. Pixels that move apart from their neighbours are no print moving: the start's
    first frames are still, and it is learnt again after them."""
    rng = np.random.default_rng(0)
    bed = rng.integers(40, 200, (32, 48)).astype(np.float32)
    frames = [bed + rng.normal(0, 1, bed.shape) for _ in range(12)]
    burst = rng.random(bed.shape) < 0.04  # 4% of the pixels off by 30 levels
    frames[5] = frames[5] + 30 * burst
    x = np.clip(np.stack(frames), 0, 255).astype(np.uint8)
    assert learnt_from(x, 20, early=8) == 8


def test_a_clean_cameras_jpeg_blocks_shifting_a_few_levels_are_no_print_moving() -> None:
    """A clean camera at a low JPEG quality: its noise quantised away, whole blocks of the
    picture shift by a few grey levels from frame to frame, patches that pass the neighbours'
    rule. A start of them stood still; a toolhead moving through the same frames does not."""
    rng = np.random.default_rng(0)
    bed = rng.integers(40, 200, (64, 128)).astype(np.int16)
    frames = []
    for _ in range(10):
        frame = bed.copy()
        for _ in range(5):  # blocks 4 pixels wide at the model's input, 4 levels brighter
            y, x = rng.integers(0, 60), rng.integers(0, 124)
            frame[y : y + 4, x : x + 4] += 4
        frames.append(frame)
    still = np.clip(np.stack(frames), 0, 255).astype(np.uint8)
    assert learnt_from(still, 20, early=8) == 8
    moving = still.copy()
    for i in range(10):  # a toolhead, 40 levels darker, crossing the bed
        moving[i, 20:36, 10 * i : 10 * i + 12] -= 40
    assert learnt_from(moving, 20, early=8) == 0


def test_a_start_is_learnt_from_when_the_printer_is_hot_whatever_moved_before() -> None:
    """The printer's API says it heats (``Detector.heating``): the frames meanwhile are no
    part of the print's start, judged by the start guard alone (a part left on the bed is
    still caught), and the start is learnt from the first frame after the heating, also
    where it had begun to be learnt before (the printer homed, then heated its bed). Once the
    start's first frames are in, a heater short of its target (a slicer's hotter second layer,
    set without a wait: the printer goes on printing) changes nothing; it forgot the start."""
    from watchdog.detection.calibration import unit_meta
    from watchdog.detection.detector import offline_detector

    spec = Adaptation(frames=10, early_frames=4, early_threshold=1.0, threshold=1.0, guard=0.5)
    detector = offline_detector(unit_meta(SCORING, spec))
    detector.relearn()
    rng = np.random.default_rng(0)

    def judged(level: float = 0.2) -> Verdict:
        return detector.judge(
            None, rng.uniform(level - 0.05, level + 0.05, (4, 4)).astype(np.float32)
        )

    homing = [judged() for _ in range(3)]
    assert homing[-1].calibrated == 3
    detector.heating = True
    heating = [judged() for _ in range(5)] + [judged(level=0.9)]  # the last: a part left behind
    assert [v.calibrated for v in heating] == [0] * 6
    assert [v.anomalous for v in heating] == [False] * 5 + [True]
    assert detector.progress == "0/10, from when the printer is hot (it is heating)"
    detector.heating = False
    hot = [judged() for _ in range(5)]
    detector.heating = True  # a hotter second layer, set without a wait: the print goes on
    hot += [judged() for _ in range(2)]
    detector.heating = False
    hot += [judged() for _ in range(3)]
    assert [v.calibrated for v in hot] == list(range(1, 11))
    assert [v.early_score is not None for v in hot] == [False] * 4 + [True] * 6
    detector.heating = True
    after = judged()
    assert not after.calibrating and after.early_score is None and after.guard == 0.0
