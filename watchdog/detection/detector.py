"""One printer's detector: frame in, verdict out.

The detector owns everything between a camera frame and "is this frame anomalous?": the
bundle's preprocessing, the model, the print's own baseline (per-print adaptation and light
matching), the region and masks the owner set, and the sensitivity. Its whole interface is
``observe(frame) -> Verdict`` and ``relearn()``; what to *do* about verdicts is
``decide``'s business, and the watcher only routes between them.

Offline code (the trainer's calibration, the benchmarks) has its error maps already, computed
in batches by Keras or TFLite; it replays them through ``judge`` (``replay`` for a whole print),
the very step ``observe`` ends with, so the daemon and the figures in docs/quality.md cannot
drift apart.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from watchdog.detection.baseline import PrintBaseline, on_grid
from watchdog.detection.bundle import (
    Bundle,
    BundleMeta,
    Polygon,
    Preprocess,
    heatmap_overlay,
    polygon_mask,
)
from watchdog.detection.light import LightReference, match_light

Region = tuple[float, float, float, float]  # x0, y0, x1, y1 in 0..1 of the full frame
ErrorMap = Callable[[np.ndarray], np.ndarray]  # model input (H, W, C) in [0, 1] → error map (H, W)


@dataclass(frozen=True)
class Verdict:
    """What the detector says about one frame. Immutable: safe to hand to other threads.

    ``score`` is what the decision uses, on the bundle threshold's scale: the per-print adapted
    score once the print's baseline is learnt, ``early_score`` while the rest of its start is
    judged against its first frames, the model's absolute score before (and always, for
    bundles without adaptation). ``absolute_score`` is comparable across prints (a start's
    frames after its first ``early_frames`` are matched to their light first, ``start_light``).

    While the print's start is learnt (``calibrating``) a frame is anomalous only when its
    absolute score is above ``guard`` (the bundle's ``adaptation.guard``; 0: none): the print
    looks abnormal from its start (``abnormal_start``); or, once the start's first
    ``adaptation.early_frames`` are in, when ``early_score`` (the frame against them, on the
    threshold's scale) is above ``threshold``: the print changed during its start
    (``changed_in_start``).
    """

    score: float
    absolute_score: float
    threshold: float
    anomalous: bool
    calibrating: bool  # a frame of the print's start, learnt (anomalous only as said above)
    calibrated: int  # frames of this print's start learnt so far
    calibration_frames: int  # frames the start needs (0: none)
    error_map: np.ndarray  # what the decision used: the adapted map once calibrated
    heatmap_scale: float  # the error drawn as full red
    inference_s: float = 0.0
    guard: float = 0.0  # absolute score above which a calibration frame is anomalous (0: none)
    # a start frame against the start's first frames, on the threshold's scale (None: not judged)
    early_score: float | None = None

    @property
    def abnormal_start(self) -> bool:
        """A frame of the print's start already far from every normal print the model knows."""
        return self.calibrating and 0.0 < self.guard < self.absolute_score

    @property
    def changed_in_start(self) -> bool:
        """A frame of the print's start that changed from the start's first frames."""
        return (
            self.calibrating and self.early_score is not None and self.early_score > self.threshold
        )

    @property
    def progress(self) -> str:
        """Calibration progress for people: "12/30"."""
        return f"{min(self.calibrated, self.calibration_frames)}/{self.calibration_frames}"


def did_not_move(span: np.ndarray, mask: np.ndarray | None = None) -> bool:
    """Whether a start whose pixels each moved by ``span`` grey levels (its greatest value less
    its least; (H, W) or (H, W, C)) did not move: fewer than ``STILL_SHARE`` of the watched,
    unmasked pixels moved by more than ``STILL_LEVELS`` and ``STILL_NOISE`` times the median
    pixel, each with its neighbours (``MOVED_TOGETHER``), and the median pixel moved no more
    than ``STILL_NOISE_MAX``."""
    share, noise = _moved(span, mask)
    return share < STILL_SHARE and noise <= STILL_NOISE_MAX


def clearly_moved(span: np.ndarray, mask: np.ndarray | None = None) -> bool:
    """Whether pixels moved by ``span`` show a print moving beyond doubt: ``MOVE_SHARE`` of the
    watched pixels or more moved as ``did_not_move`` counts them (a toolhead that comes into
    view, a first layer laid), or the median pixel moved more than ``STILL_NOISE_MAX``. A
    camera's JPEG noise moves a few tenths of a percent of them so, at most."""
    share, noise = _moved(span, mask)
    return share >= MOVE_SHARE or noise > STILL_NOISE_MAX


def _moved(span: np.ndarray, mask: np.ndarray | None) -> tuple[float, float]:
    """The share of watched pixels that moved with their neighbours (1.0 where none is
    watched), and the median pixel's move."""
    if span.ndim == 3:
        span = span.max(axis=-1)  # a pixel moved as much as its most moved channel
    watched = mask > 0 if mask is not None and mask.shape == span.shape else True
    counted = np.broadcast_to(watched, span.shape)
    if not counted.any():
        return 1.0, 0.0
    noise = float(np.median(span[counted]))
    past = (span > max(STILL_LEVELS, STILL_NOISE * noise)).astype(np.uint8)
    # a pixel moved where its neighbours moved too: a camera's JPEG noise moves specks here and
    # there, a toolhead or a line laid moves a patch (MOVED_TOGETHER)
    moved = cv2.erode(past, MOVED_TOGETHER) > 0
    return int(np.count_nonzero(moved & counted)) / int(np.count_nonzero(counted)), noise


def still_start_spans(
    inputs: np.ndarray, frames: int, mask: np.ndarray | None = None, early: int = 0
) -> list[tuple[int, int]]:
    """The starts of a print the daemon learns again because they did not move
    (``did_not_move``: a printer heating, a frozen or dark picture), as (first, end) frames in
    time order: a start's first ``early`` frames (``Adaptation.still_first_frames``), else or
    then its whole ``frames``; and once a print, the still frames of a start's first ``early``
    before one that moves (``Detector._moves_after_still``). ``inputs``: the print's model
    inputs as the camera gave them (uint8 or floats in [0, 1]), in time order."""
    starts: list[tuple[int, int]] = []
    start, cut = 0, False
    while frames:
        moved_at = 0 if cut or not early else _moves_at(inputs[start : start + early], mask)
        if moved_at:  # the first frames still, then one that moves: the start begins there
            starts.append((start, start + moved_at))
            start, cut = start + moved_at, True
            continue
        for n in (early, frames):
            if n and start + n <= len(inputs) and _did_not_move(inputs[start : start + n], mask):
                starts.append((start, start + n))
                start += n
                break
        else:
            return starts
    return starts


def _moves_at(inputs: np.ndarray, mask: np.ndarray | None) -> int:
    """The first frame of a start's first frames (``inputs``) that moves where the
    ``STILL_RUN`` or more before it did not (``Detector._moves_after_still``); 0: none."""
    for j in range(STILL_RUN, len(inputs)):
        if _did_not_move(inputs[:j], mask) and clearly_moved(_span(inputs[: j + 1]), mask):
            return j
    return 0


def _did_not_move(inputs: np.ndarray, mask: np.ndarray | None) -> bool:
    return did_not_move(_span(inputs), mask)


def _span(inputs: np.ndarray) -> np.ndarray:
    block = np.stack([on_grid(x).reshape(np.shape(x)) for x in inputs])
    return block.max(axis=0).astype(np.int16) - block.min(axis=0)


def learnt_from(
    inputs: np.ndarray, frames: int, mask: np.ndarray | None = None, early: int = 0
) -> int:
    """The first frame of the start the daemon judges a print against: 0, or the end of the
    print's first starts that did not move (``still_start_spans``), each learnt again from the
    frame after it. Offline calibration starts each print there, so that its light and its
    start are the daemon's."""
    starts = still_start_spans(inputs, frames, mask, early)
    return starts[-1][1] if starts else 0


def _learnt_alike(meta: BundleMeta) -> BundleMeta:
    """``meta`` without what a print's learnt look does not depend on: the thresholds it is
    judged by (``python -m watchdog calibrate`` moves them) and the free-form notes."""
    spec = dataclasses.replace(meta.adaptation, threshold=0.0, early_threshold=0.0, guard=0.0)
    return dataclasses.replace(meta, threshold=0.0, adaptation=spec, extra={})


# A region drawn on the page within this share of the frame of the model's own on every side
# is the model's own view (a drag rounded to 0.999 turned the start guard off, unsaid).
SAME_REGION = 0.01


def same_region(region: Sequence[float], roi: Sequence[float]) -> bool:
    """Whether ``region`` is the bundle's own ``roi``, as far as a hand can draw it."""
    return all(abs(a - b) <= SAME_REGION for a, b in zip(region, roi, strict=True))


def start_cautions(
    meta: BundleMeta, printer: str, region: Sequence[float] | None, judge_start: bool
) -> list[str]:
    """How a printer's own settings leave its print's start less watched than the model
    says (check-config's summary and the bundle's report speak of the model's own view): said
    at start, at reload and by check-config. Nothing said for a model that judges no start."""
    adaptation = meta.adaptation
    out = []
    if (
        adaptation.enabled
        and adaptation.guard > 0
        and region is not None
        and not same_region(region, meta.preprocess.roi)
    ):
        theirs, model = ([f"{v:g}" for v in r] for r in (region, meta.preprocess.roi))
        out.append(
            f"{printer}: its detection.region [{', '.join(theirs)}] is not the model's "
            f"[{', '.join(model)}], so its first frames have no start guard (the guard was set "
            "on the model's region): a print failing from its first frame is learnt as its "
            f"normal; retrain with --region {','.join(theirs)} to guard it"
        )
    if adaptation.enabled and adaptation.judges_start and not judge_start:
        out.append(
            f"{printer}: detection.judge_start is off: its print's start is learnt without "
            f"its frames {adaptation.early_frames + 1}-{adaptation.frames} being judged "
            f"against its first {adaptation.early_frames}"
        )
    return out


def calibration_start(
    inputs: np.ndarray, frames: int, mask: np.ndarray | None = None, early: int = 0
) -> int:
    """Where offline calibration starts a print: ``learnt_from``, or 0 where no start of the
    print moves before its end (replayed whole, it is then left out, saying so:
    ``calibration.calibrate``), so that no print is cut to nothing."""
    start = learnt_from(inputs, frames, mask, early)
    return start if start + frames < len(inputs) else 0


MIN_UNMASKED = 0.01  # the least share of the watched region a mask may leave
# A start in which almost no pixel of the model input moved by more than STILL_LEVELS grey
# levels (0-255), nor by more than STILL_NOISE times what the median pixel moved, did not
# move: a frozen feed repeats its picture exactly, a black one is all zero, and a live camera
# on a printer that is still heating shows its own noise only, which moves every pixel a
# little and the median pixel as much as nearly any other. "Almost": fewer than STILL_SHARE
# of the watched, unmasked pixels, so that a camera's clock overlay or a blinking LED in a
# dark picture does not count as a print moving (a toolhead in view moves far more pixels:
# a fifth to a third of them by more than 3 times the median on the Kaggle prints' starts).
# 6 levels, not 2: a clean camera's JPEG at low quality shifts whole blocks by a few levels
STILL_LEVELS = 6
STILL_NOISE = 3.0
STILL_SHARE = 0.005
# ... a pixel counted as moved where each of its neighbours in this square moved so too. A
# camera's JPEG noise moves pixels past the bar in specks of a few (up to 9% of them with noise
# of 1-4 grey levels through JPEG at quality 50-90, starts of 10 and 30 frames), a print moves
# patches: counted so, the noise moves 0.35% at most (noise of 0.5-4 levels, quality 30-90,
# the watched region the bundle's), the Kaggle prints' every 10 frames 0.8-25%
MOVED_TOGETHER = np.ones((3, 3), np.uint8)
# A start whose first STILL_RUN frames or more did not move, then one that does, is learnt from
# that one (the printer heated; once a print, where the start is judged against its first frames)
STILL_RUN = 3
# ... and where this share of the watched pixels moved with that frame, or more (counted with
# their neighbours): a toolhead coming into view or a first layer laid, mostly 5-20%, a camera's
# JPEG noise a few tenths of a percent at most
MOVE_SHARE = 0.02
# A printer heating before this many frames of a start are learnt holds its learning (where
# the bundle does not judge the start against its first frames, whose count is used otherwise)
HEATING_WITHIN_FRAMES = 10
# A median pixel that moved by more than this is a picture moving, not a camera's noise (at the
# model's input size, noise of 8 grey levels in a 640x480 camera's own pixels moves it by about
# 8), whatever moved more (a bed sliding under a fixed camera moves most of the picture).
STILL_NOISE_MAX = 12


class MaskError(ValueError):
    """A mask that leaves (almost) nothing of the watched region to judge."""


def checked_mask(polygons: Sequence[Polygon], pre: Preprocess) -> np.ndarray | None:
    """The ignore-polygons rasterised for ``pre`` (``polygon_mask``); MaskError when they hide
    nearly all of the watched region: every score would be 0 and nothing would ever pause,
    with no sign of it."""
    mask = polygon_mask(list(polygons), pre)
    if mask is not None and float(mask.mean()) < MIN_UNMASKED:
        raise MaskError(
            f"hides {1 - float(mask.mean()):.1%} of the watched region, so nothing would be "
            "judged: leave at least 1% of it unmasked"
        )
    return mask


def effective_preprocess(meta: BundleMeta, region: Region | None) -> Preprocess:
    """The bundle's preprocessing, watching ``region`` instead of the bundle's own when given."""
    return meta.preprocess if region is None else dataclasses.replace(meta.preprocess, roi=region)


class Detector:
    """Bundle + model + per-print baseline + region and masks, for one printer.

    Not thread-safe: one thread (the printer's watcher) calls ``observe`` and ``relearn``;
    ``observe`` may do its work in the model's thread, with the watcher waiting for it.
    """

    def __init__(
        self,
        meta: BundleMeta,
        error_map: ErrorMap,
        *,
        region: Region | None = None,
        mask: Sequence[Polygon] = (),
        sensitivity: float = 1.0,
        warmup_frames: int = 0,
        judge_start: bool = True,
        run: Callable[..., Any] | None = None,
        model_key: object | None = None,
    ) -> None:
        """``run(fn, *args)``: where ``observe`` does its work (the model's thread, see
        ``SharedInterpreter``); default: the caller's thread. ``judge_start=False``: the
        bundle's judgement of a print's start against its first frames is not used (the owner's
        ``detection.judge_start``). ``model_key``: what identifies the loaded model (the same
        object for the same model file), for ``same_setup``."""
        if not sensitivity > 0:
            raise ValueError(f"sensitivity must be > 0, got {sensitivity}")
        self.meta = meta
        self.pre = effective_preprocess(meta, region)
        self.mask = checked_mask(mask, self.pre)
        self.threshold = meta.threshold / sensitivity
        self._error_map = error_map
        self.baseline = PrintBaseline.for_bundle(meta, self.mask, error_map)
        # One warm-up: the print's baseline, or for bundles without one, the configured frames.
        self.calibration_frames = meta.adaptation.frames if self.baseline.enabled else warmup_frames
        # The start of a print is judged on the absolute score, against a conservative guard
        # learnt on the bundle's own region: another region is a view whose absolute scores the
        # bundle does not know (a normal start scores far above the guard), so it is not judged.
        own_region = region is None or same_region(region, meta.preprocess.roi)
        self.start_guard = (
            meta.adaptation.guard / sensitivity if self.baseline.enabled and own_region else 0.0
        )
        self.guard = self.start_guard
        # The rest of the start judged against its first frames (``Adaptation.early_frames``).
        self.start_baseline = (
            PrintBaseline(meta.adaptation.start_spec(), meta.scoring, meta.threshold, self.mask)
            if meta.adaptation.judges_start and judge_start
            else None
        )
        # The start's later frames are matched to the light of its first ones (the bundle's
        # ``start_light``): a light switched on during the start is not a change of the print.
        self._start_light: LightReference | None = None
        self._seen = 0
        self._run = run or _here
        # The last start learnt did not move and is being learnt again (see ``judge``).
        self.still_start = False
        self._cut_at_motion = False  # the start cut where it first moved (``_from_here``)
        self._low: np.ndarray | None = None  # the start's least and greatest input values
        self._high: np.ndarray | None = None
        # Set by the watcher while an alert of this print stands unanswered: the frames the
        # alert was about go on being judged (by the start guard, where there is one) but are
        # not learnt as the print's look, else a failure from the first minutes is normal once
        # the start is in.
        self.start_held = False
        # Set by the watcher while the printer's API says it heats (``PrinterStatus.heating``):
        # a print's start heats for minutes under a "printing" state (see ``_heating``).
        self.heating = False
        self.model_key = model_key

    @classmethod
    def for_bundle(
        cls,
        bundle: Bundle,
        *,
        region: Region | None = None,
        mask: Sequence[Polygon] = (),
        sensitivity: float = 1.0,
        warmup_frames: int = 0,
        judge_start: bool = True,
        num_threads: int = 1,
    ) -> Detector:
        """The daemon's detector: the bundle's TFLite model, loaded once."""
        from watchdog.detection.model import FrameScorer

        model = FrameScorer(bundle, num_threads=num_threads)
        return cls(
            bundle.meta,
            model.error_map,
            region=region,
            mask=mask,
            sensitivity=sensitivity,
            warmup_frames=warmup_frames,
            judge_start=judge_start,
            run=model.call,
            model_key=model.model_key,
        )

    def same_setup(self, other: Detector) -> bool:
        """Whether ``other`` learns and scores frames exactly as this one would (the same
        model file and bundle, region, mask and start; the sensitivity and a recalibration only
        move the thresholds): then what it has learnt of the print holds for this one too (a
        reload that changed nothing of how this printer's frames are learnt)."""
        return (
            self.model_key is not None
            and self.model_key is other.model_key
            and _learnt_alike(self.meta) == _learnt_alike(other.meta)
            and self.pre == other.pre
            and _same_mask(self.mask, other.mask)
            and self.calibration_frames == other.calibration_frames
            and (self.start_baseline is None) == (other.start_baseline is None)
        )

    def carry_on(self, learnt: Detector) -> Detector:
        """``learnt`` (of the ``same_setup``), judging from now on with this one's thresholds
        (a sensitivity saved on the page mid-print, or a bundle recalibrated, must not throw
        the learnt print away)."""
        learnt.meta = self.meta
        learnt.threshold, learnt.start_guard = self.threshold, self.start_guard
        learnt.guard = self.start_guard if learnt.guard else 0.0
        learnt.baseline.spec, learnt.baseline.gain = self.baseline.spec, self.baseline.gain
        if learnt.start_baseline is not None and self.start_baseline is not None:
            learnt.start_baseline.spec = self.start_baseline.spec
            learnt.start_baseline.gain = self.start_baseline.gain
        return learnt

    # ----------------------------------------------------------------- the daemon's path

    def observe(self, frame: np.ndarray) -> Verdict:
        """Score one camera frame (any size; BGR, grey or BGRA) of the current print.

        ValueError for a frame the preprocessing refuses (it is not counted)."""
        return typing.cast(Verdict, self._run(self._observe, frame))

    def _observe(self, frame: np.ndarray) -> Verdict:
        t0 = time.perf_counter()
        x = self.pre.apply(frame)
        if self.baseline.reference is not None:
            self._start_light = None  # the start is learnt: its first frames' light is done
            x = match_light(x, self.baseline.reference)
            verdict = self.judge(x, self._error_map(x))
        elif (light := self._start_reference()) is not None:
            # The print's own start keeps the input as the camera gave it (its look is learnt
            # from those); the start's judgement and guard see it matched to the first frames.
            xs = match_light(x, light)
            map_s = self._error_map(xs)
            verdict = self.judge(x, map_s, start=(map_s, xs))
        else:
            verdict = self.judge(x, self._error_map(x))
        return dataclasses.replace(verdict, inference_s=time.perf_counter() - t0)

    def _start_reference(self) -> LightReference | None:
        """The light of the start's first ``early_frames`` frames, once they are in, while the
        rest of the start is learnt (None: the bundle's ``start_light`` is off). Used whether or
        not the owner judges the start: the guard was set on the start's frames so matched."""
        if not self.meta.adaptation.matches_start_light or not self.calibrating:
            self._start_light = None
            return None
        if self._start_light is None:
            self._start_light = self.baseline.first_reference(self.meta.adaptation.early_frames)
        return self._start_light

    def relearn(self, accepted: bool = False) -> None:
        """Forget this print's look and learn it again from the next frames: a new print, or
        (``accepted``) the owner accepting what the camera shows (a resume after our pause, "not
        a failure"). An accepted look is not judged by the guard while it is learnt: the owner
        has seen it, and pausing it again after the cooldown is what users complain about. Its
        start is still judged against its own first frames (``Adaptation.early_frames``), as
        its later frames are against the whole start: what changes after the owner looked is
        new."""
        self.baseline.reset()
        if self.start_baseline is not None:
            self.start_baseline.reset()
        self._start_light = None
        self._seen = 0
        self.guard = 0.0 if accepted else self.start_guard
        self.heating = False  # until the watcher says otherwise, at the next frame
        self.still_start = False
        self._low = self._high = None
        self._cut_at_motion = False  # the start cut where it first moved (``_from_here``)

    def past_the_start(self) -> None:
        """The print is known to be past its start (its job's print time): its look is learnt
        without the guard, set on the empty beds of prints' starts, which a part printed for
        an hour scores above. Still judged against its own first frames, as any start is."""
        self.guard = 0.0

    @property
    def calibrating(self) -> bool:
        """The next frame still goes into learning the print's start."""
        return self._seen < self.calibration_frames

    @property
    def heeds_heating(self) -> bool:
        """A heating now holds the start's learning (``_heating``): the start is being learnt
        and fewer of its frames are in than its first frames (``Adaptation.still_first_frames``,
        else ``HEATING_WITHIN_FRAMES``). Later, the yardstick is the print's own, and a heater
        short of its target is a temperature raised while printing (a slicer's hotter second
        layer, set without a wait): the printer goes on printing, and its start is not forgotten."""
        first = self.meta.adaptation.still_first_frames or HEATING_WITHIN_FRAMES
        return self.calibrating and self._seen < first

    @property
    def guarding_start(self) -> bool:
        """The print's start is being learnt and judged by the start guard."""
        return self.calibrating and self.guard > 0

    @property
    def progress(self) -> str:
        """How much of the print's start is learnt, for people: "12/30"."""
        learnt = f"{min(self._seen, self.calibration_frames)}/{self.calibration_frames}"
        if self.heating and self.heeds_heating:
            return f"{learnt}, from when the printer is hot (it is heating)"
        if self.still_start:
            return (
                f"{learnt}, again: the picture did not move (the printer heating, or a frozen "
                "or dark camera?)"
            )
        return learnt

    def heatmap(self, frame: np.ndarray, verdict: Verdict, *, in_place: bool = False) -> np.ndarray:
        """The frame with the verdict's error map over the watched region (``in_place``: drawn
        on the frame itself, for a caller done with it)."""
        return heatmap_overlay(
            frame,
            verdict.error_map,
            self.pre,
            verdict.heatmap_scale,
            self.mask,
            in_place=in_place,
        )

    # ----------------------------------------------------------------- shared with offline code

    def judge(
        self,
        x: np.ndarray | None,
        error_map: np.ndarray,
        start: tuple[np.ndarray, np.ndarray | None] | None = None,
    ) -> Verdict:
        """The verdict on one model input and its error map (light-matched when the bundle
        matches light): the step every path ends with. ``start``: the frame's error map and
        model input as the start is judged (``light.start_matched``: the first frames as the
        camera gave them, the rest matched to their light), when ``x`` and ``error_map`` are
        others: the daemon learns a print's look from its frames as the camera gave them, and
        light-matched offline replays score the start apart."""
        raw_map, raw_x = start if start is not None else (error_map, x)
        absolute = self.meta.scoring.score(raw_map, self.mask)
        if self.heating and self.heeds_heating:
            return self._heating(absolute, raw_map)
        if self.start_held and self.calibrating and self.guard > 0:
            # (no guard, as for a look the owner accepted: nothing would judge the frames
            # held, and the print would go unwatched to its end; learnt, as before)
            return self._judged_unlearnt(absolute, raw_map)
        if self._moves_after_still(x):
            self._from_here()
        self._seen += 1
        warming = self._seen <= self.calibration_frames
        score, calibrating, early, early_map = self._observed(
            absolute, (error_map, x), (raw_map, raw_x), warming
        )
        if warming and self._start_did_not_move(x):
            calibrating, early, early_map = self._still()
        emap, scale = self._heatmap_map(calibrating, early_map, error_map)
        guard = self.guard if warming else 0.0
        if warming:
            anomalous = 0.0 < guard < absolute or (early is not None and early > self.threshold)
        else:
            anomalous = score > self.threshold
        return Verdict(
            score=score if early is None else early,
            absolute_score=absolute,
            threshold=self.threshold,
            anomalous=anomalous,
            calibrating=warming,
            calibrated=min(self._seen, self.calibration_frames),
            calibration_frames=self.calibration_frames,
            error_map=emap,
            heatmap_scale=scale,
            guard=guard,
            early_score=early,
        )

    def _heating(self, absolute: float, error_map: np.ndarray) -> Verdict:
        """A frame of the print's start while the printer heats: its picture is a still bed,
        not the print, and against it every printed frame would look changed (a camera's JPEG
        noise hides from the picture alone that it did not move). Judged by the start guard
        alone, and the start is learnt from the first frame after the heating: what moved
        before it (homing, probing the bed) is not the print either."""
        if self._seen or self._low is not None:
            self._learn_start_again()
        return self._judged_unlearnt(absolute, error_map)

    def _judged_unlearnt(self, absolute: float, error_map: np.ndarray) -> Verdict:
        """A start frame while ``start_held`` or ``heating``: judged by the start guard alone, counted
        nowhere, learnt into no baseline."""
        emap, scale = self._heatmap_map(True, None, error_map)
        return Verdict(
            score=absolute,
            absolute_score=absolute,
            threshold=self.threshold,
            anomalous=0.0 < self.guard < absolute,
            calibrating=True,
            calibrated=self._seen,
            calibration_frames=self.calibration_frames,
            error_map=emap,
            heatmap_scale=scale,
            guard=self.guard,
            early_score=None,
        )

    def _observed(
        self,
        absolute: float,
        scored: tuple[np.ndarray, np.ndarray | None],
        start: tuple[np.ndarray, np.ndarray | None],
        warming: bool,
    ) -> tuple[float, bool, float | None, np.ndarray | None]:
        """The frame through the print's baseline (``scored``: its error map and input) and,
        while the start is learnt, through the start's own (``start``): (score, still
        calibrating, the start's judgement of it or None, that judgement's map or None)."""
        early, early_map = None, None
        try:
            score, calibrating = self.baseline.observe(absolute, *scored)
            if warming and self.start_baseline is not None:
                judged, learning = self.start_baseline.observe(absolute, *start)
                if not learning:
                    early, early_map = judged, self.start_baseline.last_map
        except BaseException:
            # A baseline that failed half-way (the model failing while the start is rescored)
            # is none: the print's start is learnt again, counted from zero like the baseline,
            # so no later frame is judged against a start that is not there.
            guard = self.guard
            self.relearn()
            self.guard = guard
            raise
        return score, calibrating, early, early_map

    def _still(self) -> tuple[bool, None, None]:
        """The start's first frames, or the whole start, just ended without moving:
        (calibrating, no judgement of the start, no map) for this frame.

        They say nothing of the print (a printer heating, a frozen feed, a black picture), and
        any later picture would look changed beyond measure against them: the start is learnt
        again from the next frame until the camera shows a moving print. The first frames
        alone are enough to learn it again where the rest of the start is judged against them:
        a print whose heating outlasts them is judged from its first moving frames, instead of
        learnt blind to the end of a start that began with its heaters."""
        self._learn_start_again()
        self.still_start = True
        return True, None, None

    def _heatmap_map(
        self, calibrating: bool, early_map: np.ndarray | None, error_map: np.ndarray
    ) -> tuple[np.ndarray, float]:
        """The map a heatmap draws for this frame, read-only, and its full-red value."""
        if self.baseline.enabled and not calibrating:
            assert self.baseline.last_map is not None
            # Adapted maps are in the adapted score's units: full red at twice its threshold.
            emap, scale = self.baseline.last_map, 2 * self.meta.adaptation.threshold
        elif early_map is not None:
            emap, scale = early_map, 2 * self.meta.adaptation.early_threshold
        else:
            emap = error_map
            scale = self.meta.normal_stats.heatmap_scale or float(np.max(error_map) or 1.0)
        emap = np.asarray(emap)
        emap.setflags(write=False)
        return emap, scale

    def _moves_after_still(self, x: np.ndarray | None) -> bool:
        """Whether this frame (``x``, its model input) moves where the start's frames before
        it, ``STILL_RUN`` or more of its first ``early_frames``, did not: the printer heated
        and prints from here (``Adaptation.still_first_frames``). The start's first frames
        would be a still bed, against which every printed frame looks changed: without the cut,
        a heating start of 7 frames (or 17, past a start learnt again) paused good prints. Once a
        print (``_from_here``), so that a picture that moves now and then still gets a start."""
        early = self.meta.adaptation.still_first_frames
        if (
            x is None
            or self._cut_at_motion
            or self._low is None
            or self._high is None
            or not STILL_RUN <= self._seen < early
        ):
            return False
        shape = np.shape(x)
        if not did_not_move((self._high.astype(np.int16) - self._low).reshape(shape), self.mask):
            return False
        xq = on_grid(x)
        span = np.maximum(self._high, xq).astype(np.int16) - np.minimum(self._low, xq)
        return clearly_moved(span.reshape(shape), self.mask)

    def _from_here(self) -> None:
        """The print's start is learnt from this frame on (``_moves_after_still``): the still
        frames before it judged by the guard alone, as a still start's."""
        self._learn_start_again()
        self._cut_at_motion = True

    def _learn_start_again(self) -> None:
        """The same print's start learnt again (it stood still, or the printer heated): its
        guard, whether it was cut where it moved and whether the printer heats are the
        print's, kept."""
        guard, cut, heating = self.guard, self._cut_at_motion, self.heating
        self.relearn()
        self.guard, self._cut_at_motion, self.heating = guard, cut, heating

    def _start_did_not_move(self, x: np.ndarray | None) -> bool:
        """Whether this frame (``x``, its model input) ends the start's first frames, or the
        whole start, and fewer than ``STILL_SHARE`` of the watched, unmasked pixels moved in it
        by more than ``STILL_LEVELS`` grey levels and ``STILL_NOISE`` times the median pixel's
        move, each with its neighbours (each pixel's least and greatest value are kept while the
        start is learnt: two small arrays). A frozen feed or a black picture, its clock overlay
        aside, moves no pixel; a live camera watching a printer heat moves every pixel by its
        noise, the median one as much as the others, and its JPEG specks of a few pixels; a
        print moves patches of the picture far more than the rest.
        Without model inputs (offline replays of error maps alone) nothing is told."""
        if x is None or not self.baseline.enabled:
            return False
        xq = on_grid(x)
        if self._low is None or self._high is None:  # the start's first frame
            self._low, self._high = xq.copy(), xq.copy()
        else:
            np.minimum(self._low, xq, out=self._low)
            np.maximum(self._high, xq, out=self._high)
        early = self.meta.adaptation.still_first_frames
        if self._seen not in (early, self.calibration_frames):
            return False  # told where a baseline is finished: the first frames', the start's
        span = (self._high.astype(np.int16) - self._low).reshape(np.shape(x))
        if self._seen == self.calibration_frames:
            self._low = self._high = None
        return did_not_move(span, self.mask)

    def replay(
        self,
        error_maps: Sequence[np.ndarray],
        inputs: Sequence[np.ndarray] | None = None,
        start_maps: Sequence[np.ndarray] | None = None,
        start_inputs: Sequence[np.ndarray] | None = None,
    ) -> list[Verdict]:
        """Verdicts on one whole print from its first frame, in time order, from error maps
        computed elsewhere (of the ``light.light_matched`` frames when the bundle matches light;
        ``inputs``: those frames, needed for ``Adaptation.nearest``). The daemon's scores.

        ``start_maps`` (and ``start_inputs``): the error maps (and model inputs) of the print's
        first frames as ``light.start_matched`` gives them, what the daemon judges the
        start by (``Adaptation.guard``, ``Adaptation.early_frames``); without them the start is
        judged on the maps given."""
        self.relearn()
        xs: Sequence[np.ndarray | None] = inputs if inputs is not None else [None] * len(error_maps)
        raw = list(start_maps or [])
        raw_x: list[np.ndarray | None] = (
            list(start_inputs) if start_inputs is not None else [None] * len(raw)
        )
        return [
            self.judge(x, e, (raw[i], raw_x[i]) if i < len(raw) else None)
            for i, (x, e) in enumerate(zip(xs, error_maps, strict=True))
        ]


def offline_detector(meta: BundleMeta, mask: np.ndarray | None = None) -> Detector:
    """A detector for error maps computed elsewhere and already light-matched (``replay``).

    Light matching happened before the maps were computed, so the baseline only keeps the
    baseline (no model is called). ``mask``: a raster mask at model-input size.
    """
    offline = dataclasses.replace(meta, adaptation=meta.adaptation.without_light_matching())
    detector = Detector(offline, _no_model)
    if mask is not None:
        detector.mask = mask
        detector.baseline.mask = mask
        if detector.start_baseline is not None:
            detector.start_baseline.mask = mask
    return detector


def _here(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def _no_model(x: np.ndarray) -> np.ndarray:
    raise RuntimeError("an offline detector replays error maps; it has no model to run")


def _same_mask(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is b if a is None or b is None else bool(np.array_equal(a, b))
