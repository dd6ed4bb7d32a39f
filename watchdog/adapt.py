"""Per-print adaptation: judge each frame against the print's own first frames.

Why: on a print the model has never seen, absolute scores shift (another part, the camera
framing moved a little), so one fixed threshold either pauses good prints or misses failures
(docs/benchmarks.md). The first frames of a print are normal far more often than not, so the
adapter learns the per-pixel mean and spread of their error maps and scores every later frame
by what changed against that baseline. Numpy only: it runs in the daemon, in ``replay`` and in
the benchmark through this same class.

The daemon loop, per frame of a print (``reset()`` when a new print starts, and when the user
accepts what the camera shows: a resume after our pause, or "not a failure" on the alert)::

    result = scorer.analyze(frame, reference=adapter.reference)  # score, error map, input
    score, calibrating = adapter.observe(result.score, result.error_map, result.input)
    anomalous = not calibrating and score > scorer.threshold / sensitivity

With ``Adaptation.match_light`` the adapter also keeps the print's calibration inputs: their
mean becomes ``adapter.reference``, the look every later input is matched to in brightness
and contrast (``match_light``) before the model sees it; the calibration frames themselves are
matched to it and scored again once it is known, so baseline and later frames are treated alike.

While calibrating, ``observe`` returns the absolute score and ``True``: those frames must
never count as anomalous (the absolute threshold does not transfer to a new print).

``python -m trainer`` sets a bundle's adaptation threshold (``calibrate``, on validation
frames). To re-calibrate it on one's own recorded normal prints, scored through the daemon's
TFLite path (no TensorFlow)::

    python -m watchdog.adapt BUNDLE_DIR --normal FRAMES_DIR [--frames N] [--target-fpr 0.01]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from watchdog.bundle import Adaptation, Bundle, BundleError, BundleMeta, Scoring

if TYPE_CHECKING:
    from watchdog.score import FrameScorer

logger = logging.getLogger(__name__)


class PrintAdapter:
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
            raise ValueError("adaptation.match_light needs the model's error map to rescore calibration frames")
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
    ) -> PrintAdapter:
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
        self._reference: LightReference | None = None
        self._inputs: list[np.ndarray] = []
        self._cal_maps: list[np.ndarray] = []  # nearest: each calibration frame's map and input
        self._cal_x: list[np.ndarray] = []
        self._cal_stack = np.zeros((0, 0), np.float32)
        self._cal_sq = np.zeros(0, np.float32)
        self.last_map = None

    def observe(self, score: float, error_map: np.ndarray, x: np.ndarray | None = None) -> tuple[float, bool]:
        """One frame's absolute score, error map and model input as scored → (score to
        threshold, still calibrating). With light matching, ``error_map`` and ``x`` must be
        those of the input matched to ``reference`` once there is one."""
        self._seen += 1
        if not self.enabled:
            return float(score), False
        if (self.spec.match_light or self.spec.nearest) and x is None:
            raise ValueError("adaptation.match_light and adaptation.nearest need each frame's model input")
        if self.calibrating:
            if self.spec.match_light:
                # inputs are on the 1/255 grid (Preprocess.apply): kept as uint8, a quarter the memory
                self._inputs.append(np.round(np.asarray(x, dtype=np.float32) * 255.0).astype(np.uint8))
                if len(self._inputs) == self.spec.frames:
                    self._reference = light_reference(np.stack(self._inputs))
                    assert self._error_map is not None
                    for xi in self._inputs:
                        matched = match_light(xi.astype(np.float32) / 255.0, self._reference)
                        self._add(self._error_map(matched), matched)
                    self._inputs = []
            else:
                self._add(error_map, x)
            return float(score), True
        return self.adapted(np.asarray(error_map, dtype=np.float64), x) * self.gain, False

    def _add(self, error_map: np.ndarray, x: np.ndarray | None) -> None:
        emap = np.asarray(error_map, dtype=np.float64)
        if self._sum is None:
            self._sum = np.zeros_like(emap)
            self._sumsq = np.zeros_like(emap)
        elif emap.shape != self._sum.shape:
            raise ValueError(f"error map shape {emap.shape} changed during calibration ({self._sum.shape})")
        self._sum += emap
        self._sumsq += emap * emap
        if self.spec.nearest:
            self._cal_maps.append(emap.astype(np.float32))
            self._cal_x.append(_flat(x))
        self._n += 1
        if self._n == self.spec.frames:
            self._finish()

    def adapted(self, error_map: np.ndarray, x: np.ndarray | None = None) -> float:
        """The adapted score of one error map (and its model input, for ``nearest``) against
        the finished baseline (unscaled)."""
        if self._mean is None or self._denom is None:
            raise RuntimeError("adapter baseline not calibrated yet")
        mean = self._mean
        if self.spec.nearest:
            # squared distances up to the frame's own constant |x|^2: no temporary of 30 inputs
            distance = self._cal_sq - 2.0 * (self._cal_stack @ _flat(x))
            order = np.argsort(distance, kind="stable")[: self.spec.nearest]
            mean = np.mean([self._cal_maps[i] for i in order], axis=0, dtype=np.float64)
        z = np.maximum((np.asarray(error_map, dtype=np.float64) - mean) / self._denom, 0.0)
        self.last_map = z.astype(np.float32)
        return self.scoring.score(self.last_map, self.mask)

    def _finish(self) -> None:
        assert self._sum is not None and self._sumsq is not None
        mean = self._sum / self._n
        std = np.sqrt(np.maximum(self._sumsq / self._n - mean * mean, 0.0))
        self._mean = mean
        self._denom = std + float(np.quantile(std, self.spec.std_floor)) + 1e-6
        if self.spec.nearest:
            self._cal_stack = np.stack(self._cal_x)
            self._cal_sq = np.einsum("ij,ij->i", self._cal_stack, self._cal_stack)
            self._cal_x = []
        logger.debug("print baseline ready after %d frames", self._n)


def _flat(x: np.ndarray | None) -> np.ndarray:
    """A model input as a flat float32 vector in [0, 1] (uint8 frames of the trainer or floats)."""
    a = np.asarray(x)
    return (a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else 1.0)).ravel()


# --------------------------------------------------------------------------- light matching

_GAIN = (0.5, 2.0)  # a light switched on or off; a covered lens or a dark room stays visible
_OFFSET = 0.25
_STILL = 0.5  # the fit looks at the half of the pixels that moved least during calibration
_KEEP = 0.8  # and refits on those it fits best: a moving part or a failure cannot pull it


@dataclass(frozen=True)
class LightReference:
    """The print's look that its later inputs are matched to.

    ``mean``: the mean calibration input (H, W, C) in [0, 1]; ``still``: the pixels (H, W) that
    moved least over the calibration frames. Only those steer the fit: the bed, the toolhead
    and the part move during a print, the frame of the printer and the wall do not.
    """

    mean: np.ndarray
    still: np.ndarray


def light_reference(inputs: np.ndarray) -> LightReference:
    """The reference of a print's calibration inputs (N, H, W, C), floats in [0, 1] or uint8."""
    x = np.asarray(inputs)
    scale = np.float32(255.0 if x.dtype == np.uint8 else 1.0)
    mean = x.mean(axis=0, dtype=np.float32) / scale
    motion = x.std(axis=0, dtype=np.float32).mean(axis=-1) / scale
    return LightReference(mean, motion <= np.quantile(motion, _STILL))


def match_light(x: np.ndarray, reference: LightReference) -> np.ndarray:
    """Model input(s) (H, W, C) or (N, H, W, C) in [0, 1] with each colour channel's brightness
    and contrast matched to the print's ``reference``: the gain and offset of a least-squares
    fit on its still pixels, fitted again on the 80% of those it fits best, bounded to what a
    light change can do. A black or white picture (a covered lens) is left as it is.

    Why a fit and not per-frame standardisation (``Preprocess.normalize``): a large part moving
    in and out of view shifts a frame's own mean and spread, and standardising spreads that
    shift over the whole picture; the fit follows the pixels that still look like the print's
    start. The result stays on the 1/255 grid, so the trainer's uint8 frames match exactly.
    """
    single = np.ndim(x) == 3
    xb = np.asarray(x, dtype=np.float32)[None] if single else np.asarray(x, dtype=np.float32)
    n, h, w, c = xb.shape
    if reference.mean.shape != (h, w, c):
        raise ValueError(f"light reference shape {reference.mean.shape} does not match input {(h, w, c)}")
    still = reference.still.ravel()
    u_all = xb.reshape(n, h * w, c)
    u = u_all[:, still]
    v = np.broadcast_to(reference.mean.reshape(1, h * w, c)[:, still], u.shape)
    kth = max(0, int(_KEEP * u.shape[1]) - 1)
    keep = np.ones(u.shape, dtype=bool)
    for _ in range(2):
        gain, offset = _fit_line(u, v, keep)
        resid = np.abs(gain * u + offset - v)
        keep = resid <= np.partition(resid, kth, axis=1)[:, kth : kth + 1]
    out = np.clip(gain * u_all + offset, 0.0, 1.0).reshape(xb.shape)
    out = (np.round(out * 255.0) / 255.0).astype(np.float32)
    return out[0] if single else out


def _fit_line(u: np.ndarray, v: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame and channel, the bounded gain and offset of v ≈ gain * u + offset on ``keep``."""
    w = keep.astype(np.float32)
    count = np.maximum(w.sum(axis=1, keepdims=True), 1.0)
    mu = (w * u).sum(axis=1, keepdims=True) / count
    mv = (w * v).sum(axis=1, keepdims=True) / count
    var = (w * (u - mu) ** 2).sum(axis=1, keepdims=True)
    cov = (w * (u - mu) * (v - mv)).sum(axis=1, keepdims=True)
    flat = var <= 1e-6 * count  # a black, white or covered picture: nothing to fit, left as it is
    gain = np.where(flat, 1.0, np.clip(cov / np.maximum(var, 1e-12), *_GAIN))
    offset = np.where(flat, 0.0, np.clip(mv - gain * mu, -_OFFSET, _OFFSET))
    return gain, offset


def light_matched(frames: np.ndarray, spec: Adaptation, reference: LightReference | None = None) -> np.ndarray:
    """A print's uint8 frames (time order) as the daemon feeds them to the model: matched to
    ``reference`` (default: the mean of their own first ``spec.frames``) when the bundle
    matches light, else unchanged. The trainer and the benchmark score prints through this."""
    if not (spec.enabled and spec.match_light):
        return frames
    ref = light_reference(frames[: spec.frames]) if reference is None else reference
    out = np.empty_like(frames)
    for i in range(0, len(frames), 256):  # memory stays flat on long prints
        out[i : i + 256] = np.round(match_light(frames[i : i + 256].astype(np.float32) / 255.0, ref) * 255.0)
    return out


def simulate(
    spec: Adaptation,
    scoring: Scoring,
    error_maps: np.ndarray,
    mask: np.ndarray | None = None,
    inputs: np.ndarray | None = None,
) -> np.ndarray:
    """Unscaled adapted scores of one print's frames after its calibration frames (time order).

    Exactly what the daemon computes; the trainer and the benchmark choose
    ``Adaptation.threshold`` from these scores on normal prints the model did not fit. With
    ``spec.match_light`` the maps must be those of the ``light_matched`` frames; with
    ``spec.nearest``, ``inputs`` are those frames (the model inputs, uint8 or floats).
    """
    if not spec.enabled:
        raise ValueError("adaptation is off (frames = 0): nothing to simulate")
    if len(error_maps) <= spec.frames:
        raise ValueError(f"need more than {spec.frames} frames to simulate adaptation, got {len(error_maps)}")
    if spec.nearest and (inputs is None or len(inputs) != len(error_maps)):
        raise ValueError("adaptation.nearest needs the model input of every error map")
    # the maps are already light-matched: the adapter only keeps the baseline
    unit = Adaptation(frames=spec.frames, std_floor=spec.std_floor, threshold=1.0, nearest=spec.nearest)
    adapter = PrintAdapter(unit, scoring, 1.0, mask)
    xs = inputs if spec.nearest else [None] * len(error_maps)
    out = [adapter.observe(0.0, e, x) for e, x in zip(error_maps, xs, strict=True)]
    return np.array([s for s, calibrating in out if not calibrating], dtype=np.float64)



def threshold_for_fpr(scores: np.ndarray, target_fpr: float = 0.01) -> float:
    """The smallest threshold with at most ``target_fpr`` of these normal scores above it.

    A frame is anomalous when ``score > threshold`` (the daemon's rule). One rule for the
    trainer's absolute threshold and the adaptation threshold.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if s.size == 0:
        raise ValueError("no normal scores to calibrate on")
    if not 0.0 <= target_fpr < 1.0:
        raise ValueError(f"target false-alarm rate must be in [0, 1), got {target_fpr}")
    allowed = int(np.floor(target_fpr * s.size))  # frames allowed above the threshold
    return max(float(s[s.size - 1 - allowed]), 1e-9)


def calibrate(
    spec: Adaptation,
    scoring: Scoring,
    prints: list[np.ndarray],
    target_fpr: float = 0.01,
    mask: np.ndarray | None = None,
    held_out: list[np.ndarray] | None = None,
    inputs: list[np.ndarray] | None = None,
) -> Adaptation:
    """``spec`` with its threshold set from normal prints (error maps of each, in time order;
    of the ``light_matched`` frames when ``spec.match_light``).

    Every print is calibrated on its own first ``spec.frames`` frames, exactly as the daemon
    does, and the threshold leaves ``target_fpr`` of the later frames above it. ``held_out``
    (one boolean array per print) restricts the threshold to frames the model did not fit,
    the trainer's rule for every threshold; without any such frame, all later frames count.
    ``inputs``: each print's model inputs (needed with ``spec.nearest``).
    """
    unit = Adaptation(spec.frames, spec.std_floor, 1.0, nearest=spec.nearest)
    scores: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    for i, maps in enumerate(prints):
        if len(maps) <= spec.frames:
            continue
        s = simulate(unit, scoring, maps, mask, None if inputs is None else inputs[i])
        scores.append(s)
        if held_out is not None:
            kept.append(s[np.asarray(held_out[i], dtype=bool)[spec.frames :]])
    if not scores:
        raise ValueError(f"no normal print longer than {spec.frames} frames to calibrate adaptation on")
    chosen = np.concatenate(kept) if kept and sum(len(k) for k in kept) else np.concatenate(scores)
    return dataclasses.replace(spec, threshold=threshold_for_fpr(chosen, target_fpr))


# --------------------------------------------------------------------------- calibration CLI

_SESSION = re.compile(r"^(?P<session>.+)_(?P<n>\d+)$")
_SUFFIXES = (".jpg", ".jpeg", ".png")


def frame_number(path: Path) -> int:
    """The frame's number within its print (the final _<number> of the name; 0 without one)."""
    m = _SESSION.match(Path(path).stem)
    return int(m.group("n")) if m else 0


def group_prints(folders: list[Path]) -> dict[str, list[Path]]:
    """Image files grouped by print (file-name prefix before the final _<number>), in number order."""
    prints: dict[str, list[tuple[int, Path]]] = {}
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: frames folder not found")
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() not in _SUFFIXES or not path.is_file():
                continue
            m = _SESSION.match(path.stem)
            key = m.group("session") if m else path.stem
            prints.setdefault(f"{path.parent}/{key}", []).append((frame_number(path), path))
    return {k: [p for _, p in sorted(v)] for k, v in prints.items()}


def _error_maps(scorer: FrameScorer, paths: list[Path], spec: Adaptation) -> tuple[np.ndarray, np.ndarray]:
    """One print's error maps and model inputs through the daemon's TFLite path, light-matched
    as the daemon would."""
    import cv2

    inputs = []
    for path in paths:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            logger.warning("skipping unreadable image %s", path)
            continue
        inputs.append(scorer.pre.apply(img))
    if not inputs:
        return np.zeros((0, 1, 1), np.float32), np.zeros((0, 1, 1, 1), np.uint8)
    # the inputs are on the 1/255 grid: as uint8 they take the trainer's path exactly
    x = light_matched(np.round(np.stack(inputs) * 255.0).astype(np.uint8), spec)
    return np.stack([scorer.error_map(xi.astype(np.float32) / 255.0) for xi in x]), x


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m watchdog.adapt",
        description="Set a bundle's per-print adaptation threshold from frames of normal prints.",
    )
    p.add_argument("bundle", type=Path, help="bundle folder (model.json is rewritten)")
    p.add_argument("--normal", type=Path, action="append", required=True, metavar="DIR",
                   help="frames of good prints, named <print>_<number>.jpg (repeatable)")
    p.add_argument("--frames", type=int, default=None, help="calibration frames per print (default: the bundle's, else 20)")
    p.add_argument("--std-floor", type=float, default=None, help="noise floor quantile (default: the bundle's)")
    p.add_argument("--target-fpr", type=float, default=0.01, help="per-frame false-alarm rate (default 0.01)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from watchdog.score import FrameScorer

    try:
        bundle = Bundle.load(args.bundle)
        old = bundle.meta.adaptation
        spec = Adaptation(
            frames=args.frames if args.frames is not None else (old.frames or 20),
            std_floor=args.std_floor if args.std_floor is not None else old.std_floor,
            threshold=1.0,
            match_light=old.match_light,
            nearest=min(old.nearest, args.frames if args.frames is not None else (old.frames or 20)),
        )
        prints = group_prints(args.normal)
        scorer = FrameScorer(dataclasses.replace(bundle, meta=dataclasses.replace(bundle.meta, adaptation=Adaptation())))
        scored = [_error_maps(scorer, paths, spec) for paths in prints.values()]
        maps = [m for m, _ in scored]
        new = calibrate(spec, bundle.meta.scoring, maps, args.target_fpr, inputs=[x for _, x in scored])
    except (BundleError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bundle.meta.adaptation = new
    bundle.save_meta()
    print(f"{args.bundle}: adaptation frames={new.frames} std_floor={new.std_floor} match_light={new.match_light} nearest={new.nearest} "
          f"threshold={new.threshold:.6g} from {sum(len(m) > new.frames for m in maps)} prints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
