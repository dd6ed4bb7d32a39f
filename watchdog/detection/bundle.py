"""The model bundle: the one contract between the trainer and the daemon.

Everything here is numpy + OpenCV only, so the daemon on a Pi and the trainer on a desktop
preprocess and score frames through exactly the same code (train/serve skew is a bug).

A bundle is a folder with ``model.tflite`` and ``model.json``; ``model.json`` carries every
parameter the daemon needs: preprocessing, score function, threshold, normal-score statistics.
"""

from __future__ import annotations

import json
import math
import re
import stat
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from watchdog.durable import replace_file
from watchdog.frames import print_of

FORMAT = "printer-watchdog-bundle"
FORMAT_VERSION = 1
MODEL_FILE = "model.tflite"
META_FILE = "model.json"
MAX_META_BYTES = 1_000_000

_INTERPOLATIONS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR}


class BundleError(Exception):
    """A bundle that cannot be used; the message names the file and what is wrong."""


def _json_kind(value: object) -> str:
    """What a JSON value is, in JSON's words (null, not Python's NoneType)."""
    kinds = {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


# Keys an earlier trainer wrote and this watchdog no longer has: at the value that changed
# nothing they are left out, any other is refused with why (not "a bundle of a newer
# trainer", which told an owner who had just updated to update)
RETIRED: dict[str, tuple[Any, str]] = {
    "adaptation.follow": (
        0,
        "following the print's recent frames was removed: it let flagged frames into its baseline",
    ),
}


def _without_retired(data: dict[str, Any], where: str, key: str) -> dict[str, Any]:
    """``data`` without the retired keys that were off; BundleError for one that was on."""
    kept = dict(data)
    for name in list(kept):
        retired = RETIRED.get(key + name)
        if retired is None:
            continue
        off, why = retired
        if kept[name] != off:
            raise BundleError(
                f"{where}: {key}{name} {kept[name]!r} is a setting this watchdog no longer has "
                f"({why}); train the bundle again with this version's trainer"
            )
        del kept[name]
    return kept


def _from_dict(cls: type, data: dict[str, Any], where: str, section: str = "") -> Any:
    """Build a dataclass from a dict, refusing unknown keys so a newer bundle fails loudly."""
    key = f"{section}." if section else ""
    if not isinstance(data, dict):
        raise BundleError(
            f"{where}: {section or 'model.json'} must hold its settings as {{...}}, got "
            f"{_json_kind(data)}"
        )
    data = _without_retired(data, where, key)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        # repr: a key holding a line break must not write a second line into the log
        names = ", ".join(repr(key + u) if not u.isprintable() else key + u for u in unknown)
        raise BundleError(
            f"{where}: unknown key(s) {names} (a bundle of a newer trainer? update this "
            "watchdog, or train with the trainer of its version)"
        )
    kwargs = {}
    for f in fields(cls):
        if f.name in data:
            value = data[f.name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, OverflowError) as exc:
        raise BundleError(f"{where}: {key}{exc}") from None


MAX_INPUT_SIDE = 2048  # model input pixels per side; a larger one is no model for a Pi
MAX_SIGMA = (
    32.0  # Gaussian sigmas in input pixels; more blurs the map into one value and costs seconds
)
MAX_ADAPTATION_FRAMES = (
    10_000  # per-print baseline frames (kept in memory): hours at the usual interval
)
# What one printer's learnt start may keep in memory (its frames' model inputs and error
# maps): the daemon's whole budget is 150 MB, and the shipped bundle keeps about 1.2 MB.
MAX_BASELINE_BYTES = 64 * 2**20
MAX_MODEL_BYTES = 64 * 2**20  # model.tflite is read whole; the shipped one is 0.3 MB
# the tensors a model declares, counted whole (the runtime reuses some: it needs less): a 41 KB
# file of wide 1024x1024 layers took 1 GB at a reload (the service's MemoryMax is 300 MB); the
# shipped model's are 1.7 MB, the trainer's seed preset's 51 MB, its default at 640x480 85 MB
MAX_MODEL_MEMORY_BYTES = 128 * 2**20


def check_number(
    name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False, integer: bool = False
) -> None:
    """ValueError naming ``name`` unless ``value`` is a finite number (an integer if asked) in range."""
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type:
        raise ValueError(f"{name} must be {kind}, got {str(value)[:40]!r}")
    left = "(" if lo_open else "["
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer of hundreds of digits
        finite = False
    if not finite or value < lo or value > hi or (lo_open and value == lo):
        raise ValueError(f"{name} must be {kind} in {left}{lo:g}, {hi:g}], got {str(value)[:40]}")


def check_threshold(name: str, value: Any, most: float) -> None:
    """A threshold: 0 (not set) or a number a score can be divided by, below ``most``: a
    threshold no frame can reach (a model.json edited by hand, ``1e29``) would have switched
    every alert off without a word."""
    check_number(name, value, 0.0, MAX_THRESHOLD)
    if 0 < value < MIN_THRESHOLD:
        raise ValueError(f"{name} must be 0 (not set) or at least {MIN_THRESHOLD:g}, got {value!r}")
    if value >= most:
        raise ValueError(
            f"{name} {value:g} is above any score a frame can reach ({most:g}): no print would "
            "ever alert; retrain or calibrate the model (to make it alert less, set "
            "detection.sensitivity below 1)"
        )


MIN_THRESHOLD, MAX_THRESHOLD = 1e-9, 1e30  # a set threshold outside these is no calibration
# The highest score a frame can have: the model's output is a sigmoid, its input in [0, 1], so
# every error map (l1, l2, SSIM's) is at most 1, and so is any reduction of it.
MAX_SCORE = 1.0
# A per-print (adapted) threshold: each pixel's change divided by its spread over the print's
# start. The trainer's are 2-5; this is a frame whose highest tenth changed ten thousand times
# its own spread: no calibration ends there.
MAX_ADAPTED_THRESHOLD = 1e4
MIN_ROI_AREA = 0.01  # the watched region's least share of the frame (as the config's region)

# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Preprocess:
    """How a camera frame becomes a model input.

    Frames arrive as OpenCV gives them (BGR, grey or BGRA uint8, any size). The region of
    interest is cropped first, in 0..1 coordinates of the full frame, so that the bundle
    stays valid when the camera resolution changes.

    ``normalize`` (``python -m trainer --normalize``; off in the presets): each channel of the
    cropped, resized frame is standardised (its own mean and spread become 0.5 and 0.2). A
    light switched on, daylight or the camera's auto-exposure change the whole picture at once;
    a failure changes a part of it, so a brighter room no longer looks like a new scene to the
    per-print adaptation. The cost: a large part moving in and out of view shifts the frame's
    statistics too (docs/decisions/light-matching.md). The result is kept on the 1/255 grid, so
    the trainer's uint8 copy of a frame is exactly what the daemon scores.
    """

    width: int = 128
    height: int = 96
    channels: int = 3  # 3: RGB, 1: grey
    roi: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # x0, y0, x1, y1
    interpolation: str = "area"
    normalize: bool = False

    def __post_init__(self) -> None:
        if self.channels not in (1, 3) or isinstance(self.channels, bool):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        check_number("width", self.width, 8, MAX_INPUT_SIDE, integer=True)
        check_number("height", self.height, 8, MAX_INPUT_SIDE, integer=True)
        if not isinstance(self.roi, tuple) or len(self.roi) != 4:
            shown = list(self.roi) if isinstance(self.roi, tuple) else self.roi
            raise ValueError(
                f"roi must be [x0, y0, x1, y1] between 0 and 1, got {json.dumps(shown)[:60]}"
            )
        for i, v in enumerate(self.roi):
            check_number(f"roi[{i}]", v, 0.0, 1.0)
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize must be true or false, got {self.normalize!r}")
        x0, y0, x1, y1 = self.roi
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise ValueError(f"roi {self.roi} must satisfy 0 <= x0 < x1 <= 1, 0 <= y0 < y1 <= 1")
        if (x1 - x0) * (y1 - y0) < MIN_ROI_AREA:
            raise ValueError(f"roi {self.roi} is smaller than 1% of the frame")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    def roi_pixels(self, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """The ROI as pixel bounds (x0, y0, x1, y1) of a frame of this shape: at least one
        pixel inside the frame, however small the frame (a camera sending 1-pixel frames)."""
        h, w = frame_shape[:2]
        x0, y0, x1, y1 = self.roi
        px0, py0 = min(int(round(x0 * w)), w - 1), min(int(round(y0 * h)), h - 1)
        px1 = min(w, max(px0 + 1, int(round(x1 * w))))
        py1 = min(h, max(py0 + 1, int(round(y1 * h))))
        return px0, py0, px1, py1

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """Frame (uint8, HxW, HxWx1, HxWx3 BGR or HxWx4 BGRA) → float32 (H, W, C) in [0, 1]."""
        img = to_bgr(frame)
        x0, y0, x1, y1 = self.roi_pixels(img.shape)
        img = img[y0:y1, x0:x1]
        img = cv2.resize(
            img, (self.width, self.height), interpolation=_INTERPOLATIONS[self.interpolation]
        )
        if self.channels == 1:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[..., None]
        else:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        x = img.astype(np.float32) / 255.0
        if self.normalize:
            x = normalize_channels(x)
        return x


_NORM_MEAN, _NORM_STD, _NORM_EPS = 0.5, 0.2, 0.02  # EPS: a flat (black) frame stays flat


def normalize_channels(x: np.ndarray) -> np.ndarray:
    """(H, W, C) float in [0, 1] → each channel at mean 0.5 and spread 0.2, on the 1/255 grid."""
    mean = x.mean(axis=(0, 1), keepdims=True)
    std = x.std(axis=(0, 1), keepdims=True)
    y = np.clip((x - mean) / (std + _NORM_EPS) * _NORM_STD + _NORM_MEAN, 0.0, 1.0)
    return (np.round(y * 255.0) / 255.0).astype(np.float32)


def to_bgr(frame: np.ndarray) -> np.ndarray:
    """Normalise grey, single-channel and BGRA frames to 3-channel BGR uint8."""
    if frame is None or not isinstance(frame, np.ndarray) or frame.size == 0:
        raise ValueError("empty frame")
    if frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.integer) and frame.dtype.itemsize == 2:
            frame = (frame // 257).astype(np.uint8)  # 16-bit PNG
        else:
            raise ValueError(f"unsupported frame dtype {frame.dtype}")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim != 3:
        raise ValueError(f"unsupported frame shape {frame.shape}")
    channels = frame.shape[2]
    if channels == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return frame
    if channels == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"unsupported channel count {channels}")


# --------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Scoring:
    """How a frame and its reconstruction become one anomaly score.

    ``error`` is the per-pixel error (the heatmap): ``l2`` squared difference, ``l1``
    absolute difference, ``ssim`` (1 - local SSIM) / 2; averaged over channels. The map is
    optionally smoothed (``blur_sigma`` in input pixels) and reduced to one number by
    ``mean`` (the seed's rule) or ``topk`` (mean of the ``topk`` fraction of highest
    pixels: a small local failure is not diluted by a large normal image). With ``window``
    (pixels, odd) each pixel is first the mean of the ``window`` x ``window`` square around
    it, so a compact patch of error counts more than the same error scattered.
    """

    error: str = "l2"
    reduce: str = "mean"
    blur_sigma: float = 0.0
    topk: float = 0.01
    ssim_sigma: float = 1.5
    window: int = 0

    def __post_init__(self) -> None:
        if self.error not in ("l2", "l1", "ssim"):
            raise ValueError(f"error must be l2, l1 or ssim, got {self.error!r}")
        if self.reduce not in ("mean", "topk"):
            raise ValueError(f"reduce must be mean or topk, got {self.reduce!r}")
        check_number("topk", self.topk, 0.0, 1.0, lo_open=True)
        check_number("blur_sigma", self.blur_sigma, 0.0, MAX_SIGMA)
        check_number("ssim_sigma", self.ssim_sigma, 0.0, MAX_SIGMA, lo_open=True)
        check_number("window", self.window, 0, 63, integer=True)

    def error_map(self, x: np.ndarray, recon: np.ndarray) -> np.ndarray:
        """Per-pixel error of one frame (H, W, C) or a batch (N, H, W, C) → (H, W) or (N, H, W)."""
        x = np.asarray(x, dtype=np.float32)
        recon = np.asarray(recon, dtype=np.float32).reshape(x.shape)
        if x.ndim == 4:
            return np.stack([self.error_map(a, b) for a, b in zip(x, recon, strict=True)])
        if self.error == "l2":
            emap = np.mean((x - recon) ** 2, axis=-1)
        elif self.error == "l1":
            emap = np.mean(np.abs(x - recon), axis=-1)
        else:
            emap = (1.0 - _ssim_map(x, recon, self.ssim_sigma)) / 2.0
        if self.blur_sigma > 0:
            emap = cv2.GaussianBlur(emap, (0, 0), self.blur_sigma)
        return emap.astype(np.float32)

    def score(self, emap: np.ndarray, mask: np.ndarray | None = None) -> float:
        """One number per frame; ``mask`` (1 watched, 0 ignored) zeroes ignored pixels first."""
        if self.window > 1:
            emap = cv2.blur(np.asarray(emap, np.float32), (self.window, self.window))
        values = emap if mask is None else emap[mask > 0]
        if values.size == 0:
            return 0.0
        values = values.ravel()
        if self.reduce == "mean":
            return float(values.mean())
        k = max(1, int(math.ceil(self.topk * values.size)))
        return float(np.partition(values, values.size - k)[-k:].mean())

    def scores(self, emaps: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Scores of a batch of error maps (N, H, W)."""
        return np.array([self.score(e, mask) for e in emaps], dtype=np.float64)


def _ssim_map(x: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    """Local SSIM (Wang et al. 2004, Gaussian window), averaged over channels; inputs in [0, 1]."""
    c1, c2 = 0.01**2, 0.03**2

    def blur(a: np.ndarray) -> np.ndarray:
        out = cv2.GaussianBlur(a, (0, 0), sigma)
        return out if out.ndim == a.ndim else out[..., None]

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x**2
    syy = blur(y * y) - mu_y**2
    sxy = blur(x * y) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return np.clip(ssim.mean(axis=-1), -1.0, 1.0)


# --------------------------------------------------------------------------- masks and heatmaps


Polygon = list[tuple[float, float]]


def polygon_mask(polygons: list[Polygon], pre: Preprocess) -> np.ndarray | None:
    """Rasterise ignore-polygons (0..1 coordinates of the full frame) at model-input size.

    Returns a float32 (H, W) mask with 1 where the score looks and 0 where it ignores, or
    None when there is nothing to ignore.
    """
    if not polygons:
        return None
    x0, y0, x1, y1 = pre.roi
    mask = np.ones((pre.height, pre.width), dtype=np.uint8)
    for poly in polygons:
        pts = np.array(
            [
                [(px - x0) / (x1 - x0) * pre.width, (py - y0) / (y1 - y0) * pre.height]
                for px, py in poly
            ],
            dtype=np.float64,
        )
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 0)
    return mask.astype(np.float32)


def heatmap_overlay(
    frame: np.ndarray,
    emap: np.ndarray,
    pre: Preprocess,
    scale: float,
    mask: np.ndarray | None = None,
    alpha: float = 0.5,
    *,
    in_place: bool = False,
) -> np.ndarray:
    """The frame (BGR, full size) with the error map blended over the ROI.

    The colour scale is fixed by the bundle (``scale``: an error that maps to full red), not
    by the frame's own maximum, so a calm frame looks calm and frames compare at a glance.
    ``in_place``: draw on a BGR ``frame`` itself, for a caller done with it (the daemon: a
    frame-sized copy less at its peak, 2.8 MB at 1280x720).
    """
    img = to_bgr(frame)
    if img is frame and not in_place:
        img = img.copy()
    x0, y0, x1, y1 = pre.roi_pixels(img.shape)
    e = emap if mask is None else emap * mask
    norm = np.clip(e / max(scale, 1e-12), 0.0, 1.0)
    heat = cv2.applyColorMap((norm * 255).astype(np.uint8), cv2.COLORMAP_JET)
    heat = cv2.resize(heat, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    # blended into the colour map's own buffer: no third region-sized array at the peak
    img[y0:y1, x0:x1] = cv2.addWeighted(img[y0:y1, x0:x1], 1.0 - alpha, heat, alpha, 0, dst=heat)
    if (x0, y0, x1, y1) != (0, 0, img.shape[1], img.shape[0]):
        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), 1)
    return img


def encode_jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


# --------------------------------------------------------------------------- the bundle


@dataclass
class NormalStats:
    """Score statistics of held-out normal frames, kept for normalising and for the UI."""

    n: int = 0
    mean: float = 0.0
    std: float = 0.0
    quantiles: dict[str, float] = field(default_factory=dict)  # "0.5", "0.99", ...
    heatmap_scale: float = 0.0  # a high quantile of normal per-pixel errors: full red above

    def __post_init__(self) -> None:
        check_number("n", self.n, 0, 1e12, integer=True)
        check_number("mean", self.mean, -1e30, 1e30)
        check_number("std", self.std, 0.0, 1e30)
        check_number("heatmap_scale", self.heatmap_scale, 0.0, 1e30)
        if not isinstance(self.quantiles, dict):
            raise ValueError(f"quantiles must be an object, got {self.quantiles!r}")
        for q, v in self.quantiles.items():
            check_number(f"quantiles.{q}", v, -1e30, 1e30)


@dataclass(frozen=True)
class Adaptation:
    """Per-print adaptation (runtime in ``watchdog.detection.baseline``): score against the print's own start.

    The first ``frames`` error maps of every print give a per-pixel mean and spread; each later
    map becomes ``max(0, (map - mean) / (std + floor))`` (``floor``: the ``std_floor`` quantile
    of the per-pixel std) and is reduced by ``Scoring.score``. ``threshold`` is the threshold
    on that adapted score (set by calibration on normal prints; 0 in a preset means "not
    calibrated yet"); the adapter rescales it so the bundle's ``threshold`` applies.
    ``frames = 0`` (the default, and every bundle without this key) means absolute scores.

    ``match_light`` (``python -m trainer --match-light``): every model input of a print is first
    matched in brightness and contrast to the mean of the print's calibration inputs (a gain and
    offset per colour channel, ``watchdog.detection.light.match_light``), so a light switched on or
    daylight does not look like a new scene while a failure, which changes only part of the
    picture, still does. Off in bundles without the key.

    ``nearest`` (``python -m trainer --adapt-nearest N``): the baseline mean a frame is compared
    with is that of the ``nearest`` calibration frames whose model inputs look most like it,
    not of all of them: the bed, the toolhead and the part move, so a frame is compared with
    the calibration frames where they stood where they stand now. The spread stays that of
    all calibration frames. 0 (bundles without the key): the mean of all.

    ``guard``: while a print's start is being learnt, a frame whose *absolute* score (the
    model's, comparable across prints) is above ``guard`` counts as anomalous, so a print that
    looks wrong from its first frame is caught instead of being learnt as its own normal. The
    trainer sets it from the absolute scores of normal prints scored by models that never saw
    them (``trainer.crossfit``), with a margin: it is meant to be far above any normal print.
    0 (bundles without the key): the start of a print is never judged.

    ``pixel_spread`` (default, and bundles without the key): the change is divided per pixel by
    the calibration frames' spread there (with its floor). Off: ``max(0, map - mean)``, the
    change as the model's error measures it.

    ``print_scale`` (needs ``nearest``): the adapted score is divided by this print's own
    typical one, the mean over its calibration frames of each judged against the others. The
    threshold then reads "this many times the print's own frame-to-frame change", the same on
    a print whose error maps are calm as on a busy one. Off in bundles without the key.

    ``early_frames``: once a print's first ``early_frames`` frames are in, each further frame
    of its start is judged against them the same way (``start_spec``), with its own threshold
    ``early_threshold`` (set by calibration on the starts of normal prints): a failure that
    begins during the start is caught instead of being learnt as the print's normal. 0
    (bundles without the keys): the start is learnt, not judged, apart from the ``guard``.

    ``start_light`` (needs ``match_light``): those later start frames are matched to the light
    of the first ``early_frames`` before they are judged (``light.start_matched``), so a light
    switched on during the start is not a change of the print. Off in bundles without the key,
    whose ``early_threshold`` was set on the frames as the camera gave them.

    ``clipped_light`` (needs ``match_light``): pixels a light change drove to the top of the
    camera's range (a channel at 255) are left out of the light fit, and still pixels gone pure
    white where the fitted light says the print's look would be white too are shown to the
    model as that look: daylight that saturates part of the picture is not a change of the
    print. White the light does not explain (white filament on the dark bed) stays, and so
    does a picture whose still pixels are mostly white. Off in bundles without the key, whose
    thresholds were set without it.
    """

    frames: int = 0
    std_floor: float = 0.5
    threshold: float = 0.0
    match_light: bool = False
    nearest: int = 0
    guard: float = 0.0
    pixel_spread: bool = True
    print_scale: bool = False
    early_frames: int = 0
    early_threshold: float = 0.0
    start_light: bool = False
    clipped_light: bool = False

    def __post_init__(self) -> None:
        check_number("frames", self.frames, 0, MAX_ADAPTATION_FRAMES, integer=True)
        check_number("std_floor", self.std_floor, 0.0, 1.0)
        check_threshold("threshold", self.threshold, MAX_ADAPTED_THRESHOLD)
        check_number("nearest", self.nearest, 0, MAX_ADAPTATION_FRAMES, integer=True)
        if not isinstance(self.match_light, bool):
            raise ValueError(f"match_light must be true or false, got {self.match_light!r}")
        if not 0 <= self.nearest <= self.frames:
            raise ValueError(f"nearest must be in [0, frames={self.frames}], got {self.nearest}")
        check_threshold("guard", self.guard, MAX_SCORE)  # on the absolute score
        for name in ("pixel_spread", "print_scale", "start_light", "clipped_light"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.print_scale and self.frames and not 2 <= self.nearest < self.frames:
            raise ValueError(
                f"print_scale needs nearest in [2, frames={self.frames}), got {self.nearest}: "
                "each calibration frame is judged against its nearest others"
            )
        check_number("early_frames", self.early_frames, 0, MAX_ADAPTATION_FRAMES, integer=True)
        check_threshold("early_threshold", self.early_threshold, MAX_ADAPTED_THRESHOLD)
        if self.early_frames and not 2 <= self.early_frames < self.frames:
            raise ValueError(
                f"early_frames must be 0 or in [2, frames={self.frames}), got {self.early_frames}: "
                "the rest of the start is judged against a print's first early_frames frames"
            )
        if self.start_light and not self.match_light:
            raise ValueError(
                "start_light is on but adaptation.match_light is off: a start's frames are "
                "matched to its first frames' light only where later frames are matched to "
                "the whole start's"
            )
        if self.clipped_light and not self.match_light:
            raise ValueError(
                "clipped_light is on but adaptation.match_light is off: pixels out of the "
                "camera's range are handled by the light matching"
            )

    @property
    def enabled(self) -> bool:
        return self.frames > 0

    @property
    def judges_start(self) -> bool:
        """The rest of a print's start is judged against its first ``early_frames`` frames."""
        return self.enabled and self.early_frames > 0 and self.early_threshold > 0

    @property
    def still_first_frames(self) -> int:
        """A start whose first this many frames did not move (a printer heating) is learnt
        again from the next frame, and one whose first frames stood still and then moved is
        learnt from the frame that moved (``detector.still_start_spans``), by the daemon and
        offline alike (0: only a whole start that did not move). Where the start may be judged
        against them (``early_frames``), whether or not it is (an owner's ``judge_start:
        false``, a trainer yet to set ``early_threshold``): a start learnt from moving frames is
        the print's, not its heaters'."""
        return self.early_frames if self.enabled else 0

    @property
    def matches_start_light(self) -> bool:
        """A start's frames after its first ``early_frames`` are matched to their light before
        they are scored (``light.start_matched``): for the start's judgement and its guard,
        whether or not the owner uses the judgement."""
        return self.enabled and self.start_light and self.early_frames > 0

    def without_light_matching(self) -> Adaptation:
        """This adaptation with every light-matching key off: for maps already light-matched
        elsewhere (calibration, offline replay), so nothing is matched twice."""
        return replace(self, match_light=False, start_light=False, clipped_light=False)

    def start_spec(self) -> Adaptation:
        """The adaptation that judges a print's start: its first ``early_frames`` frames are the
        baseline as the camera gave them (with ``start_light`` the later frames are matched to
        their light: ``light.start_matched``), with the same spread floor and per-pixel spread
        as later frames, and the same nearest frames when they are fewer than all of them (the
        mean of all of them is the same comparison without keeping each frame);
        ``early_threshold`` on that score."""
        return Adaptation(
            frames=self.early_frames,
            std_floor=self.std_floor,
            threshold=self.early_threshold,
            nearest=self.nearest if self.nearest < self.early_frames else 0,
            pixel_spread=self.pixel_spread,
        )


@dataclass
class BundleMeta:
    """Everything in model.json."""

    preprocess: Preprocess
    scoring: Scoring
    threshold: float
    normal_stats: NormalStats
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    trainer_version: str = ""
    created: str = ""
    quantization: str = "float32"
    data: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # free-form, ignored by the daemon
    adaptation: Adaptation = field(default_factory=Adaptation)  # absent in older bundles: off
    # the SHA-256 of the model.tflite this model.json was written for ("": not said, older
    # bundles): the two files copied one at a time must not pair a model with another's
    # thresholds and statistics unsaid (``model.shared_interpreter`` checks it)
    model_sha256: str = ""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def cautions(self) -> list[str]:
        """Why this bundle is not one to watch prints with, though it loads (none: it is):
        a bundle made to evaluate, or one that judges every frame on its own. The daemon
        runs it all the same (the owner may be trying it); it says so at start and reload,
        and check-config warns."""
        out = []
        protocol = str(self.data.get("protocol", ""))
        if protocol.startswith(("session", "random")):
            out.append(
                f"trained to evaluate (--split {protocol.split()[0]}): prints were held out of "
                "its fit; retrain with the default --split all before relying on it"
            )
        if self.extra.get("preset") == "tiny":
            out.append("the test suite's tiny preset: a toy model, not one to watch prints with")
        if not self.adaptation.enabled:
            out.append(
                "no per-print adaptation: every frame is judged on its own, which misses most "
                "failures on a print the model never saw; retrain on prints longer than its "
                "calibration frames"
            )
        sessions = self.data.get("sessions")
        fitted = sessions.get("fit") if isinstance(sessions, dict) else None
        # a print's parts after a resume are one print
        if isinstance(fitted, list) and len({print_of(str(f)) for f in fitted}) == 1:
            out.append(
                "fitted on one print: its thresholds were set on that print's own frames, and "
                "how often a new print's good frames cross them is unknown; retrain with two "
                "good prints or more"
            )
        elif self.adaptation.enabled and self.adaptation.guard <= 0:
            out.append(
                "no start guard (the trainer sets one from three good prints or more, whose "
                "starts it can bound: its report says why there is none): a print that fails "
                "from its first frame is learnt as its normal"
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["preprocess"]["roi"] = list(self.preprocess.roi)
        d["input_shape"] = list(self.input_shape)
        d["output_shape"] = list(self.output_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = META_FILE) -> BundleMeta:
        if not isinstance(d, dict):
            raise BundleError(f"{where}: expected a JSON object")
        if "format" not in d and {"preprocess", "threshold"} <= set(d):
            raise BundleError(
                f"{where}: a bundle of an older trainer (it names no format): retrain it with "
                "this version"
            )
        if d.get("format") != FORMAT:
            raise BundleError(
                f"{where}: not a printer-watchdog bundle (format={d.get('format')!r})"
            )
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"{where}: bundle format_version {version!r} is not supported by this daemon "
                f"(expects {FORMAT_VERSION}); retrain or upgrade"
            )
        d = dict(d)
        try:
            d["preprocess"] = _from_dict(Preprocess, d["preprocess"], where, "preprocess")
            d["scoring"] = _from_dict(Scoring, d["scoring"], where, "scoring")
            d["normal_stats"] = _from_dict(
                NormalStats, d.get("normal_stats", {}), where, "normal_stats"
            )
            d["adaptation"] = _from_dict(Adaptation, d.get("adaptation", {}), where, "adaptation")
            # with a per-print adaptation it is the scale adapted scores are shown on, which any
            # number can be; alone it judges the absolute score, which cannot pass MAX_SCORE
            absolute = not d["adaptation"].enabled
            check_threshold("threshold", d["threshold"], MAX_SCORE if absolute else MAX_THRESHOLD)
            d["threshold"] = float(d["threshold"])
            d["input_shape"] = _shape("input_shape", d["input_shape"])
            d["output_shape"] = _shape("output_shape", d["output_shape"])
        except KeyError as exc:
            raise BundleError(f"{where}: missing key {exc.args[0]!r}") from exc
        except (TypeError, ValueError, OverflowError) as exc:
            raise BundleError(f"{where}: {exc}") from exc
        meta = _from_dict(cls, d, where)
        if not math.isfinite(meta.threshold) or meta.threshold <= 0:
            raise BundleError(f"{where}: threshold must be a positive number, got {meta.threshold}")
        if meta.adaptation.enabled and meta.adaptation.threshold <= 0:
            raise BundleError(
                f"{where}: adaptation.threshold must be positive when adaptation.frames > 0"
            )
        if tuple(meta.input_shape[-3:]) != meta.preprocess.shape:
            raise BundleError(
                f"{where}: input_shape {list(meta.input_shape)} does not match preprocess "
                f"{meta.preprocess.height}x{meta.preprocess.width}x{meta.preprocess.channels}"
            )
        too_much = baseline_memory_refusal(meta.preprocess, meta.adaptation)
        if too_much:
            raise BundleError(f"{where}: {too_much}")
        for name in ("data", "extra"):
            if not isinstance(getattr(meta, name), dict):
                raise BundleError(f"{where}: {name} must be an object")
        if not isinstance(meta.model_sha256, str) or (
            meta.model_sha256 and not re.fullmatch(r"[0-9a-f]{64}", meta.model_sha256)
        ):
            raise BundleError(f"{where}: model_sha256 must be the model file's SHA-256 in hex")
        return meta


def _shape(name: str, value: Any) -> tuple[int, ...]:
    """A tensor shape as model.json keeps it: a list of whole numbers, [1, 64, 128, 3]."""
    if (
        not isinstance(value, list)
        or not 1 <= len(value) <= 8
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        shown = json.dumps(value)[:60] if isinstance(value, list | int | str | float) else "?"
        raise ValueError(
            f"{name} must be a list of whole numbers above 0, such as [1, 64, 128, 3]; got {shown}"
        )
    return tuple(value)


def baseline_memory_refusal(pre: Preprocess, ad: Adaptation) -> str | None:
    """Why each printer's learnt start would not fit ``MAX_BASELINE_BYTES`` (its frames'
    model inputs, bytes, and error maps, float16, at the model's input size), or None. The
    trainer asks before it trains; a bundle is refused at load."""
    per_frame = pre.height * pre.width * (pre.channels + 2)
    kept = (ad.frames + ad.early_frames) * per_frame
    if kept <= MAX_BASELINE_BYTES:
        return None
    return (
        f"adaptation.frames {ad.frames} (and early_frames {ad.early_frames}) would keep "
        f"{kept / 2**20:.0f} MB per printer at a {pre.width}x{pre.height} input; at most "
        f"{MAX_BASELINE_BYTES // per_frame} frames in all fit"
    )


@dataclass
class Bundle:
    """A loaded bundle: its folder and its metadata (the model itself is loaded by the runtime)."""

    path: Path
    meta: BundleMeta

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        path = Path(path)
        meta_path = path / META_FILE
        try:
            if path.exists() and not path.is_dir():  # a zip or the .tflite alone
                raise BundleError(
                    f"{path}: a file, not a model bundle folder (the folder holding "
                    f"{MODEL_FILE} and {META_FILE}; unpack a zipped one)"
                )
            if not path.is_dir():
                raise BundleError(f"{path}: model bundle folder not found")
            model = path / MODEL_FILE
            if not model.exists() and (path / "bundle" / MODEL_FILE).is_file():
                raise BundleError(
                    f"{path}: a training run's folder, not its model bundle: give {path / 'bundle'}"
                )
            if not model.exists() and model.is_symlink():
                raise BundleError(f"{model}: a link to no file (a loop, or a file moved)")
            if not model.exists():
                raise BundleError(f"{model}: model file missing")
            if not model.is_file():  # a FIFO would block its reader; a device never ends
                raise BundleError(f"{model}: not a regular file (a model is one file)")
            if model.stat().st_size == 0:
                raise BundleError(f"{model}: empty file (a copy that did not finish?)")
        except PermissionError:  # Python 3.11's is_dir: not False, an error
            raise BundleError(
                f"{path}: not readable by this user (under /home the service needs "
                "ProtectHome=read-only: docs/deploy.md)"
            ) from None
        try:
            st = meta_path.stat()
        except FileNotFoundError as exc:
            raise BundleError(f"{meta_path}: metadata file missing") from exc
        except OSError as exc:
            raise BundleError(f"{meta_path}: unreadable ({exc.strerror or exc})") from exc
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the reader forever
            raise BundleError(f"{meta_path}: not a regular file")
        if st.st_size > MAX_META_BYTES:
            raise BundleError(
                f"{meta_path}: {st.st_size} bytes, more than the {MAX_META_BYTES} a model.json needs"
            )
        try:
            raw = json.loads(meta_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"{meta_path}: unreadable ({exc})") from exc
        except ValueError:  # Python's limit on the digits of an integer
            raise BundleError(
                f"{meta_path}: unreadable (a number of thousands of digits: no setting's value)"
            ) from None
        except RecursionError:
            raise BundleError(f"{meta_path}: nested too deeply to be a model.json") from None
        return cls(path=path, meta=BundleMeta.from_dict(raw, str(meta_path)))

    def save_meta(self) -> None:
        """Rewrite model.json in place of the old one, never half: written beside it, read
        back, then renamed over it. BundleError (the old file untouched) when it cannot be.
        A model.json that is a link (to the owner's copy elsewhere) is rewritten where it
        points: renamed over, the link would become a file and the copy stay as it was."""
        target = self.path / META_FILE
        if target.is_symlink():
            target = target.resolve()
        text = json.dumps(self.meta.to_dict(), indent=2) + "\n"
        try:
            replace_file(
                target,
                text.encode(),
                mode=0o644,
                check=lambda tmp: BundleMeta.from_dict(json.loads(tmp.read_text()), str(target)),
            )
        except OSError as exc:
            raise BundleError(
                f"{target}: cannot save ({exc.strerror or exc}); the bundle is as it was"
            ) from None


def default_bundle_path() -> Path:
    """The bundle shipped inside the package, so the daemon works before any training."""
    return Path(__file__).resolve().parent.parent / "models" / "default"
