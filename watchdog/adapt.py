"""Per-print adaptation: judge each frame against the print's own first frames.

Why: on a print the model has never seen, absolute scores shift (another part, the camera
framing moved a little), so one fixed threshold either pauses good prints or misses failures
(docs/benchmarks.md). The first frames of a print are normal far more often than not, so the
adapter learns the per-pixel mean and spread of their error maps and scores every later frame
by what changed against that baseline. Numpy only: it runs in the daemon, in ``replay`` and in
the benchmark through this same class.

The daemon loop, per frame of a print (``reset()`` when a new print starts, and when the user
accepts what the camera shows: a resume after our pause, or "not a failure" on the alert)::

    result = scorer.analyze(frame)                      # absolute score and error map
    score, calibrating = adapter.observe(result.score, result.error_map)
    anomalous = not calibrating and score > scorer.threshold / sensitivity

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
from pathlib import Path

import numpy as np

from watchdog.bundle import Adaptation, Bundle, BundleError, BundleMeta, Scoring

logger = logging.getLogger(__name__)


class PrintAdapter:
    """Per-print baseline of error maps; adapted scores on the bundle's threshold scale."""

    def __init__(
        self,
        spec: Adaptation,
        scoring: Scoring,
        threshold: float,
        mask: np.ndarray | None = None,
    ) -> None:
        if spec.enabled and spec.threshold <= 0:
            raise ValueError("adaptation is on but not calibrated (adaptation.threshold is 0)")
        self.spec = spec
        self.scoring = scoring
        self.mask = mask
        # adapted score * gain is compared with the bundle threshold: same decision as
        # comparing the adapted score with spec.threshold, but one scale for the UI and MQTT
        self.gain = threshold / spec.threshold if spec.enabled else 1.0
        self.last_map: np.ndarray | None = None  # adapted map of the last frame (for a heatmap)
        self.reset()

    @classmethod
    def for_bundle(cls, meta: BundleMeta, mask: np.ndarray | None = None) -> PrintAdapter:
        """The adapter a bundle asks for (a pass-through when its adaptation is off)."""
        return cls(meta.adaptation, meta.scoring, meta.threshold, mask)

    @property
    def enabled(self) -> bool:
        return self.spec.enabled

    @property
    def calibrating(self) -> bool:
        return self.enabled and self._n < self.spec.frames

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
        self.last_map = None

    def observe(self, score: float, error_map: np.ndarray) -> tuple[float, bool]:
        """One frame's absolute score and error map → (score to threshold, still calibrating)."""
        self._seen += 1
        if not self.enabled:
            return float(score), False
        emap = np.asarray(error_map, dtype=np.float64)
        if self.calibrating:
            if self._sum is None:
                self._sum = np.zeros_like(emap)
                self._sumsq = np.zeros_like(emap)
            elif emap.shape != self._sum.shape:
                raise ValueError(f"error map shape {emap.shape} changed during calibration ({self._sum.shape})")
            self._sum += emap
            self._sumsq += emap * emap
            self._n += 1
            if self._n == self.spec.frames:
                self._finish()
            return float(score), True
        return self.adapted(emap) * self.gain, False

    def adapted(self, error_map: np.ndarray) -> float:
        """The adapted score of one error map against the finished baseline (unscaled)."""
        if self._mean is None or self._denom is None:
            raise RuntimeError("adapter baseline not calibrated yet")
        z = np.maximum((np.asarray(error_map, dtype=np.float64) - self._mean) / self._denom, 0.0)
        self.last_map = z.astype(np.float32)
        return self.scoring.score(self.last_map, self.mask)

    def _finish(self) -> None:
        assert self._sum is not None and self._sumsq is not None
        mean = self._sum / self._n
        std = np.sqrt(np.maximum(self._sumsq / self._n - mean * mean, 0.0))
        self._mean = mean
        self._denom = std + float(np.quantile(std, self.spec.std_floor)) + 1e-6
        logger.debug("print baseline ready after %d frames", self._n)


def simulate(
    spec: Adaptation, scoring: Scoring, error_maps: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Unscaled adapted scores of one print's frames after its calibration frames (time order).

    Exactly what the daemon computes; the trainer and the benchmark choose
    ``Adaptation.threshold`` from these scores on normal prints the model did not fit.
    """
    if not spec.enabled:
        raise ValueError("adaptation is off (frames = 0): nothing to simulate")
    if len(error_maps) <= spec.frames:
        raise ValueError(f"need more than {spec.frames} frames to simulate adaptation, got {len(error_maps)}")
    unit = Adaptation(frames=spec.frames, std_floor=spec.std_floor, threshold=1.0)
    adapter = PrintAdapter(unit, scoring, 1.0, mask)
    out = [adapter.observe(0.0, e) for e in error_maps]
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
) -> Adaptation:
    """``spec`` with its threshold set from normal prints (error maps of each, in time order).

    Every print is calibrated on its own first ``spec.frames`` frames, exactly as the daemon
    does, and the threshold leaves ``target_fpr`` of the later frames above it. ``held_out``
    (one boolean array per print) restricts the threshold to frames the model did not fit,
    the trainer's rule for every threshold; without any such frame, all later frames count.
    """
    unit = Adaptation(spec.frames, spec.std_floor, 1.0)
    scores: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    for i, maps in enumerate(prints):
        if len(maps) <= spec.frames:
            continue
        s = simulate(unit, scoring, maps, mask)
        scores.append(s)
        if held_out is not None:
            kept.append(s[np.asarray(held_out[i], dtype=bool)[spec.frames :]])
    if not scores:
        raise ValueError(f"no normal print longer than {spec.frames} frames to calibrate adaptation on")
    chosen = np.concatenate(kept) if kept and sum(len(k) for k in kept) else np.concatenate(scores)
    return Adaptation(spec.frames, spec.std_floor, threshold_for_fpr(chosen, target_fpr))


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


def _error_maps(scorer: object, paths: list[Path]) -> np.ndarray:
    import cv2

    maps = []
    for path in paths:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            logger.warning("skipping unreadable image %s", path)
            continue
        maps.append(scorer.analyze(img).error_map)  # type: ignore[attr-defined]
    return np.stack(maps) if maps else np.zeros((0, 1, 1), np.float32)


def main(argv: list[str] | None = None) -> int:
    from watchdog.score import FrameScorer

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
    try:
        bundle = Bundle.load(args.bundle)
        old = bundle.meta.adaptation
        spec = Adaptation(
            frames=args.frames if args.frames is not None else (old.frames or 20),
            std_floor=args.std_floor if args.std_floor is not None else old.std_floor,
            threshold=1.0,
        )
        prints = group_prints(args.normal)
        scorer = FrameScorer(dataclasses.replace(bundle, meta=dataclasses.replace(bundle.meta, adaptation=Adaptation())))
        maps = [_error_maps(scorer, paths) for paths in prints.values()]
        new = calibrate(spec, bundle.meta.scoring, maps, args.target_fpr)
    except (BundleError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bundle.meta.adaptation = new
    bundle.save_meta()
    print(f"{args.bundle}: adaptation frames={new.frames} std_floor={new.std_floor} "
          f"threshold={new.threshold:.6g} from {sum(len(m) > new.frames for m in maps)} prints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
