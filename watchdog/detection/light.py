"""Light matching: a light switched on is not a new scene.

Each model input of a print is matched in brightness and contrast to the print's look (the
mean of its calibration inputs) before the model sees it: one gain and one offset per colour
channel, fitted on the pixels that held still. Why a fit and not per-frame standardisation:
docs/decisions/light-matching.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from watchdog.detection.bundle import Adaptation
from watchdog.detection.quantile import quantile

_GAIN = (0.5, 2.0)  # a light switched on or off; a covered lens or a dark room stays visible
# A picture about 3x brighter than the print's look with almost no pure white in it: the look
# was taken in a dim room and the light came on (a real over-exposure drives a large share of
# the picture to white, whose detail no gain brings back: the usual bound holds for it)
_DIM_LOOK_GAIN = 0.25
_FEW_WHITE = 0.05  # share of still pixels: good frames 0-2.5%, daylight (x1.4) ~18%, glare ~50%
_OFFSET = 0.25
_STILL = 0.5  # the fit looks at the half of the pixels that moved least during calibration
_KEEP = 0.8  # and refits on those it fits best: a moving part or a failure cannot pull it
# ``clipped``: a channel at 255 (on the uint8 grid) says nothing of the light's gain. Black
# (0) stays in the fit: left out, a darkened picture's fit got worse (measured)
_CLIP_HI = 254.5 / 255.0
_MOSTLY_WHITE = 0.5  # a picture whose still pixels are mostly pure white stays as it is
_EXPECTED_WHITE = 0.9  # the print's look in the new light at least this bright: white is light


@dataclass(frozen=True)
class LightReference:
    """The print's look that its later inputs are matched to.

    ``still``: the pixels (H, W) that moved least over the calibration frames; ``still_mean``:
    the mean calibration input (in [0, 1]) at those pixels, (pixels, C), the only part of the
    mean the fit reads (half the memory of the whole mean, kept per printer). Only those pixels
    steer the fit: the bed, the toolhead and the part move during a print, the frame of the
    printer and the wall do not.
    """

    still: np.ndarray
    still_mean: np.ndarray
    clipped: bool = False  # ``Adaptation.clipped_light``: see ``match_light``


def light_reference(inputs: np.ndarray, clipped: bool = False) -> LightReference:
    """The reference of a print's calibration inputs (N, H, W, C), floats in [0, 1] or uint8;
    ``clipped``: the bundle's ``adaptation.clipped_light``."""
    x = np.asarray(inputs)
    scale = np.float32(255.0 if x.dtype == np.uint8 else 1.0)
    total = x.mean(axis=0, dtype=np.float32)
    mean = total / scale
    motion = _std(x, total).mean(axis=-1) / scale
    still = motion <= quantile(motion, _STILL)
    return LightReference(still, np.ascontiguousarray(mean[still]), clipped)


def _std(x: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``x.std(axis=0, dtype=np.float32)`` to the last bit, given that mean, one input at a
    time: numpy's own makes a float32 copy of all the inputs (2.9 MB) at the end of every
    print's calibration."""
    acc = np.zeros(mean.shape, np.float32)
    for row in x:  # numpy sums over the first axis in this order too
        d = row - mean
        acc += (d * d).astype(np.float32, copy=False)
    acc /= np.float32(len(x))
    return np.sqrt(acc)


def match_light(x: np.ndarray, reference: LightReference) -> np.ndarray:
    """Model input(s) (H, W, C) or (N, H, W, C) in [0, 1] with each colour channel's brightness
    and contrast matched to the print's ``reference``: the gain and offset of a least-squares
    fit on its still pixels, fitted again on the 80% of those it fits best, bounded to what a
    light change can do. A black or white picture (a covered lens) is left as it is.

    Why a fit and not per-frame standardisation (``Preprocess.normalize``): a large part moving
    in and out of view shifts a frame's own mean and spread, and standardising spreads that
    shift over the whole picture; the fit follows the pixels that still look like the print's
    start. The result stays on the 1/255 grid, so the trainer's uint8 frames match exactly.

    With ``reference.clipped``: channels at 255 (in the frame or in the print's look) are left
    out of the fit (daylight that drives part of the picture to white would pull the gain
    down), and still pixels gone pure white where the fitted light says the print's look would
    be white too are given that look (nothing of the print can be seen in them); a white pixel
    the light does not explain (white filament on the dark bed) stays, and so does a picture
    whose still pixels are mostly white.
    """
    single = np.ndim(x) == 3
    xb = np.asarray(x, dtype=np.float32)[None] if single else np.asarray(x, dtype=np.float32)
    n, h, w, c = xb.shape
    if reference.still.shape != (h, w) or reference.still_mean.shape[1:] != (c,):
        raise ValueError(
            f"light reference of {reference.still.shape} pixels does not match input {(h, w, c)}"
        )
    still = reference.still.ravel()
    u_all = xb.reshape(n, h * w, c)
    u = u_all[:, still]
    v = np.broadcast_to(reference.still_mean[None], u.shape)
    kth = max(0, int(_KEEP * u.shape[1]) - 1)
    in_range = (u < _CLIP_HI) & (v < _CLIP_HI) if reference.clipped else np.ones(u.shape, bool)
    keep = in_range
    lowest = _lowest_gain(u)
    for _ in range(2):
        gain, offset = _fit_line(u, v, keep, lowest)
        resid = np.abs(gain * u + offset - v)
        if reference.clipped:  # the best 80% of the pixels in range
            resid = np.where(in_range, resid, np.inf)
            k = np.maximum(0, (_KEEP * in_range.sum(axis=1, keepdims=True)).astype(int) - 1)
            cut = np.take_along_axis(np.sort(resid, axis=1), k, axis=1)
        else:
            cut = np.partition(resid, kth, axis=1)[:, kth : kth + 1]
        keep = in_range & (resid <= cut)
    out = np.clip(gain * u_all + offset, 0.0, 1.0)
    if reference.clipped:
        _show_look_where_white(out, u, reference, gain, offset)
    out = (np.round(out.reshape(xb.shape) * 255.0) / 255.0).astype(np.float32)
    return out[0] if single else out


def _show_look_where_white(
    out: np.ndarray,
    u: np.ndarray,
    reference: LightReference,
    gain: np.ndarray,
    offset: np.ndarray,
) -> None:
    """In ``out`` (N, pixels, C), each frame's still pixels that are pure white in its input
    ``u`` (N, still pixels, C) become the print's look, where the fitted light says the print's
    look there would be (nearly) white in this light, and unless most still pixels are white.
    Elsewhere a white pixel is something new (white filament on a dark bed) and stays."""
    pure = (u >= _CLIP_HI).all(axis=-1)
    expected = (reference.still_mean[None] - offset) / np.maximum(gain, 1e-6)
    white = pure & (expected >= _EXPECTED_WHITE).all(axis=-1)
    white &= (pure.mean(axis=1) <= _MOSTLY_WHITE)[:, None]
    if not white.any():
        return
    columns = np.flatnonzero(reference.still.ravel())
    for i in np.flatnonzero(white.any(axis=1)):
        out[i, columns[white[i]]] = reference.still_mean[white[i]]


def _lowest_gain(u: np.ndarray) -> np.ndarray:
    """Per frame of still pixels ``u`` (N, pixels, C), the lowest gain a fit may take, (N, 1, 1):
    lower than a light switched on needs only where the picture has almost no pure white."""
    white = (u >= _CLIP_HI).any(axis=-1).mean(axis=1)
    return np.where(white <= _FEW_WHITE, _DIM_LOOK_GAIN, _GAIN[0])[:, None, None]


def _fit_line(
    u: np.ndarray, v: np.ndarray, keep: np.ndarray, lowest: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame and channel, the bounded gain and offset of v ≈ gain * u + offset on ``keep``;
    ``lowest``: each frame's lowest gain (``_lowest_gain``)."""
    w = keep.astype(np.float32)
    count = np.maximum(w.sum(axis=1, keepdims=True), 1.0)
    mu = (w * u).sum(axis=1, keepdims=True) / count
    mv = (w * v).sum(axis=1, keepdims=True) / count
    var = (w * (u - mu) ** 2).sum(axis=1, keepdims=True)
    cov = (w * (u - mu) * (v - mv)).sum(axis=1, keepdims=True)
    flat = var <= 1e-6 * count  # a black, white or covered picture: nothing to fit, left as it is
    gain = np.where(flat, 1.0, np.clip(cov / np.maximum(var, 1e-12), lowest, _GAIN[1]))
    offset = np.where(flat, 0.0, np.clip(mv - gain * mu, -_OFFSET, _OFFSET))
    return gain, offset


def print_reference(frames: np.ndarray, spec: Adaptation) -> LightReference | None:
    """The look a print's later frames are matched to: that of its first ``spec.frames``
    frames (time order), as the bundle matches light; None when it does not."""
    if not (spec.enabled and spec.match_light):
        return None
    return light_reference(frames[: spec.frames], spec.clipped_light)


def light_matched(
    frames: np.ndarray, spec: Adaptation, reference: LightReference | None = None
) -> np.ndarray:
    """A print's uint8 frames (time order) as the daemon feeds them to the model: matched to
    ``reference`` (default: the mean of their own first ``spec.frames``) when the bundle
    matches light, else unchanged. The trainer and the benchmark score prints through this."""
    ref = print_reference(frames, spec) if reference is None else reference
    if ref is None or not (spec.enabled and spec.match_light):
        return frames
    out = np.empty_like(frames)
    for i in range(0, len(frames), 256):  # memory stays flat on long prints
        out[i : i + 256] = np.round(
            match_light(frames[i : i + 256].astype(np.float32) / 255.0, ref) * 255.0
        )
    return out


def start_matched(frames: np.ndarray, spec: Adaptation) -> np.ndarray:
    """A print's first uint8 frames (time order) as the daemon scores its start: the first
    ``spec.early_frames`` as the camera gave them (the print's light is not known yet), every
    later one matched to their light when the bundle says so (``Adaptation.start_light``). A
    light switched on in minute 3 is then not a change of the print; a failure still is. The
    trainer, ``python -m watchdog calibrate`` and the benchmarks score starts through this."""
    early = spec.early_frames
    if not spec.matches_start_light or len(frames) <= early:
        return frames
    out = frames.copy()
    out[early:] = light_matched(
        frames[early:], spec, light_reference(frames[:early], spec.clipped_light)
    )
    return out
