"""One quantile of a map, as numpy computes it, for the daemon's per-print statistics."""

from __future__ import annotations

import numpy as np


def quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)`` (its default, linear method) to the last bit, without the
    1.2 MB of ``numpy.ma`` that ``np.quantile`` imports (through ``np.unique``) in the daemon."""
    a = np.sort(np.asarray(values), axis=None)
    if a.size == 0:
        raise ValueError("quantile of no values")
    if np.isnan(a[-1]):  # sorted last
        return float("nan")
    index = (a.size - 1) * float(q)
    lo = int(np.floor(index))
    hi = min(lo + 1, a.size - 1)
    t = index - lo
    below, above = a[lo], a[hi]
    diff = above - below
    return float(above - diff * (1 - t) if t >= 0.5 else below + diff * t)
