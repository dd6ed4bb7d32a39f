"""Per-print baseline: judge each frame against the print's own first frames.

Why: on a print the model has never seen, absolute scores shift (another part, the camera
framing moved a little), so one fixed threshold either pauses good prints or misses failures
(docs/decisions/per-print-adaptation.md). The first frames of a print are normal far more
often than not, so the baseline learns the per-pixel mean and spread of their error maps and
scores every later frame by what changed against it. Numpy only: the daemon, ``replay``, the
trainer's calibration and the benchmarks all reach it through ``watchdog.detection.Detector``
(or ``calibration.simulate``, which drives this same class).

With ``Adaptation.match_light`` the baseline also keeps the print's calibration inputs: their
mean becomes ``reference``, the look every later input is matched to in brightness and
contrast (``light.match_light``) before the model sees it; the calibration frames themselves
are matched to it and scored again once it is known, so baseline and later frames are treated
alike. While calibrating, ``observe`` returns the absolute score and ``True``: this baseline
does not judge those frames (the absolute threshold does not transfer to a new print); the
``Detector`` judges the start by its own rules (the start guard, the start's first frames).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np

from watchdog.detection.bundle import Adaptation, BundleMeta, Scoring
from watchdog.detection.light import LightReference, light_reference, match_light
from watchdog.detection.quantile import quantile

logger = logging.getLogger(__name__)

SCALE_FLOOR = 0.05  # print_scale: the least scale, as a share of the calibration maps' level


class PrintBaseline:
    """Per-print baseline of error maps; adapted scores on the bundle's threshold scale."""

    def __init__(
        self,
        spec: Adaptation,
        scoring: Scoring,
        threshold: float,
        mask: np.ndarray | None = None,
        error_map: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if spec.enabled and spec.threshold <= 0:
            raise ValueError("adaptation is on but not calibrated (adaptation.threshold is 0)")
        if spec.enabled and spec.match_light and error_map is None:
            raise ValueError(
                "adaptation.match_light needs the model's error map to rescore calibration frames"
            )
        self.spec = spec
        self._error_map = error_map  # model input → error map (light matching only)
        self.scoring = scoring
        self.mask = mask
        # adapted score * gain is compared with the bundle threshold: same decision as
        # comparing the adapted score with spec.threshold, but one scale for the UI and MQTT
        self.gain = threshold / spec.threshold if spec.enabled else 1.0
        self.last_map: np.ndarray | None = None  # adapted map of the last frame (for a heatmap)
        self.reset()

    @classmethod
    def for_bundle(
        cls,
        meta: BundleMeta,
        mask: np.ndarray | None = None,
        error_map: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> PrintBaseline:
        """The adapter a bundle asks for (a pass-through when its adaptation is off)."""
        return cls(meta.adaptation, meta.scoring, meta.threshold, mask, error_map)

    @property
    def enabled(self) -> bool:
        return self.spec.enabled

    @property
    def calibrating(self) -> bool:
        return self.enabled and self._n < self.spec.frames

    @property
    def reference(self) -> LightReference | None:
        """The look this print's inputs are matched to before scoring (None: score them as they are)."""
        return self._reference

    def first_reference(self, n: int) -> LightReference | None:
        """The look of this print's first ``n`` start inputs, once they are in and while the
        rest of the start is learnt (None otherwise, or without light matching): what the
        start's later frames are matched to before they are judged against those first ones."""
        if self._inputs is None or self._n_inputs < n:
            return None
        return light_reference(self._inputs[:n], self.spec.clipped_light)

    @property
    def seen(self) -> int:
        """Frames observed since the last reset."""
        return self._seen

    def reset(self) -> None:
        """Forget the baseline: call when a new print starts."""
        self._n = 0
        self._seen = 0
        self._sum: np.ndarray | None = None
        self._sumsq: np.ndarray | None = None
        self._mean: np.ndarray | None = None
        self._denom: np.ndarray | None = None
        self._scale = 1.0  # print_scale: this print's own typical adapted score
        self._reference: LightReference | None = None
        # One block each, filled row by row: a printer's largest state (about 2 MB), allocated
        # once per print rather than as 30 small arrays among each frame's temporaries, which
        # left the heap fragmented by several MB per printer.
        self._inputs: np.ndarray | None = None  # light matching: the start's inputs, uint8
        self._n_inputs = 0
        # nearest: each calibration frame's map, as float16 (half the memory; adapted scores
        # move by less than 2e-5 of their value on the Kaggle prints)…
        self._cal_maps: np.ndarray | None = None
        self._cal_x: np.ndarray | None = None  # …and input on the 1/255 grid as uint8
        self.last_map = None

    def observe(
        self, score: float, error_map: np.ndarray, x: np.ndarray | None = None
    ) -> tuple[float, bool]:
        """One frame's absolute score, error map and model input as scored → (score to
        threshold, still calibrating). With light matching, ``error_map`` and ``x`` must be
        those of the input matched to ``reference`` once there is one."""
        self._seen += 1
        if not self.enabled:
            return float(score), False
        if (self.spec.match_light or self.spec.nearest) and x is None:
            raise ValueError(
                "adaptation.match_light and adaptation.nearest need each frame's model input"
            )
        if self.calibrating:
            if self.spec.match_light:
                # inputs are on the 1/255 grid (Preprocess.apply): kept as uint8, a quarter the memory
                xa = np.asarray(x)
                if self._inputs is None:
                    self._inputs = np.empty((self.spec.frames, *xa.shape), np.uint8)
                self._inputs[self._n_inputs] = on_grid(xa).reshape(xa.shape)
                self._n_inputs += 1
                if self._n_inputs == self.spec.frames:
                    inputs, self._inputs = self._inputs, None
                    self._reference = light_reference(inputs, self.spec.clipped_light)
                    assert self._error_map is not None
                    if self.spec.nearest:
                        # each raw input is read once, just before its matched input is kept
                        # in the same row: one block of 0.74 MB per printer instead of two
                        self._cal_x = inputs.reshape(len(inputs), -1)
                    try:
                        for xi in inputs:
                            matched = match_light(xi.astype(np.float32) / 255.0, self._reference)
                            self._add(self._error_map(matched), matched)
                    except BaseException:
                        self.reset()  # half a baseline is none: learn the start again
                        raise
            else:
                self._add(error_map, x)
            return float(score), True
        return self.adapted(np.asarray(error_map, dtype=np.float64), x) * self.gain, False

    def _add(self, error_map: np.ndarray, x: np.ndarray | None) -> None:
        emap = np.asarray(error_map, dtype=np.float64)
        xq = on_grid(x) if self.spec.nearest else None
        if self._sum is None or self._sumsq is None:
            self._sum = np.zeros_like(emap)
            self._sumsq = np.zeros_like(emap)
        elif emap.shape != self._sum.shape:
            raise ValueError(
                f"error map shape {emap.shape} changed during calibration ({self._sum.shape})"
            )
        if xq is not None:
            if self._cal_maps is None:
                self._cal_maps = np.empty((self.spec.frames, *emap.shape), np.float16)
            if self._cal_x is None:
                self._cal_x = np.empty((self.spec.frames, xq.size), np.uint8)
            if xq.size != self._cal_x.shape[1]:
                raise ValueError(f"model input of {xq.size} values changed during calibration")
            self._cal_maps[self._n] = emap
            self._cal_x[self._n] = xq
        self._sum += emap
        self._sumsq += emap * emap
        self._n += 1
        if self._n == self.spec.frames:
            self._finish()

    def adapted(self, error_map: np.ndarray, x: np.ndarray | None = None) -> float:
        """The adapted score of one error map (and its model input, for ``nearest``) against
        the finished baseline, on the unit scale (before ``gain``); ``last_map`` is the map it
        reduces, in the same units (what the heatmap draws)."""
        if self._denom is None:
            raise RuntimeError("adapter baseline not calibrated yet")
        if self.spec.nearest:
            assert self._cal_maps is not None and self._cal_x is not None
            mean = self._mean_of(self._nearest(on_grid(x), self.spec.nearest))
        else:
            assert self._mean is not None
            mean = self._mean
        z = self._change(np.asarray(error_map, dtype=np.float64), mean)
        self.last_map = (z / self._scale).astype(np.float32)
        return self.scoring.score(self.last_map, self.mask)

    @property
    def scale(self) -> float:
        """``print_scale``: this print's own typical adapted score (1: none)."""
        return self._scale

    def _nearest(self, xq: np.ndarray, n: int, leave_out: int | None = None) -> np.ndarray:
        """Rows of the ``n`` calibration inputs nearest to ``xq`` (exact squared distances on
        the 1/255 grid, one calibration input at a time), ``leave_out`` a row never chosen."""
        assert self._cal_x is not None
        distance = np.array([cv2.norm(c, xq, cv2.NORM_L2SQR) for c in self._cal_x])
        if leave_out is not None:
            distance[leave_out] = np.inf
        return np.argsort(distance, kind="stable")[:n]

    def _mean_of(self, rows: np.ndarray) -> np.ndarray:
        """The mean of these calibration maps (``nearest``), in float64."""
        assert self._cal_maps is not None
        return np.asarray(np.mean(self._cal_maps[rows], axis=0, dtype=np.float64))

    def _change(self, error_map: np.ndarray, mean: np.ndarray) -> np.ndarray:
        """What one float64 error map adds to ``mean``, per pixel, in the baseline's units: the
        one rule for later frames and for the calibration frames ``print_scale`` judges."""
        assert self._denom is not None
        return np.maximum((error_map - mean) / self._denom, 0.0)

    def _own_scale(self) -> float:
        """``print_scale``: the mean adapted score of the calibration frames, each judged
        against its nearest others (a frame is never its own neighbour). Never below
        ``SCALE_FLOOR`` of the calibration maps' own level: still frames (a frozen feed, a
        start without movement) would otherwise make every later frame look enormous."""
        assert self._cal_maps is not None and self._cal_x is not None and self._denom is not None
        scores, levels = [], []
        for i, (cal_map, cal_x) in enumerate(zip(self._cal_maps, self._cal_x, strict=True)):
            own = cal_map.astype(np.float64)
            z = self._change(own, self._mean_of(self._nearest(cal_x, self.spec.nearest, i)))
            scores.append(self.scoring.score(z.astype(np.float32), self.mask))
            levels.append(self.scoring.score((own / self._denom).astype(np.float32), self.mask))
        return max(float(np.mean(scores)), SCALE_FLOOR * float(np.mean(levels)), 1e-9)

    def _finish(self) -> None:
        assert self._sum is not None and self._sumsq is not None
        mean = self._sum / self._n
        std = np.sqrt(np.maximum(self._sumsq / self._n - mean * mean, 0.0))
        # with nearest, every frame is compared with the mean of its nearest calibration maps
        self._mean = None if self.spec.nearest else mean
        self._denom = change_unit(std, self.spec)
        self._sum = self._sumsq = None  # the mean and spread are all that is needed from here
        self._scale = self._own_scale() if self.spec.print_scale else 1.0
        logger.debug("print baseline ready after %d frames", self._n)


def change_unit(std: np.ndarray, spec: Adaptation) -> np.ndarray:
    """What a pixel's change is divided by, given its spread over the frames judged against:
    the spread plus a floor (its ``std_floor`` quantile), or 1 without ``pixel_spread``."""
    if spec.pixel_spread:
        return np.asarray(std + quantile(std, spec.std_floor) + 1e-6)
    return np.ones_like(std)


def on_grid(x: np.ndarray | None) -> np.ndarray:
    """A model input as a flat uint8 vector: inputs are on the 1/255 grid (``Preprocess.apply``,
    ``light.match_light``), so nothing is lost (uint8 frames of the trainer or floats in [0, 1])."""
    a = np.asarray(x)
    if a.dtype == np.uint8:
        return a.ravel()
    return np.clip(np.round(a.astype(np.float32).ravel() * 255.0), 0, 255).astype(np.uint8)
