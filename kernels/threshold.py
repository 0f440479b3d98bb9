"""Thresholding of an importance map (2-D float32, H x W) into a keep-mask, and its dilation.

Ties in :func:`threshold_keep_ratio`: exactly ``k`` pixels are kept; among pixels equal to the
``k``-th largest value, the first ones in raster order (row by row, left to right) are kept.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import as_array, check_finite, check_int, check_real
from ._jit import jit
from ._select import _key, _kth_key, _percentile

__all__ = ["threshold_value", "threshold_keep_ratio", "threshold_percentile", "dilate_mask"]


@jit
def _greater(imp, thr, out):
    """out = imp > thr; returns the count of non-finite values in imp."""
    bad = 0
    for i in range(imp.size):
        v = imp[i]
        bad += (v - v) != 0.0
        out[i] = v > thr
    return bad


@jit
def _keep_top(bits, k, out):
    """Keep the ``k`` largest values (0 < k < n), ties by raster order."""
    n = bits.size
    t, n_less, n_eq = _kth_key(bits, n - k)
    need = k - (n - n_less - n_eq)  # how many of the values equal to t are kept
    taken = 0
    for i in range(n):
        kk = _key(bits[i])
        if kk > t:
            out[i] = True
        elif kk == t and taken < need:
            out[i] = True
            taken += 1
        else:
            out[i] = False


@jit
def _count_nonfinite(a):
    bad = 0
    for i in range(a.size):
        v = a[i]
        bad += (v - v) != 0.0
    return bad


@jit
def _dilate(mask, r, tmp, out):
    """Square (2r+1) x (2r+1) dilation, separable, with running counts (cost independent of r)."""
    h, w = mask.shape
    for y in range(h):
        cnt = 0
        for x in range(min(r, w - 1) + 1):
            cnt += mask[y, x]
        for x in range(w):
            tmp[y, x] = cnt > 0
            if x + r + 1 < w:
                cnt += mask[y, x + r + 1]
            if x - r >= 0:
                cnt -= mask[y, x - r]
    col = np.zeros(w, np.int32)
    for y in range(min(r, h - 1) + 1):
        for x in range(w):
            col[x] += tmp[y, x]
    for y in range(h):
        for x in range(w):
            out[y, x] = col[x] > 0
        if y + r + 1 < h:
            for x in range(w):
                col[x] += tmp[y + r + 1, x]
        if y - r >= 0:
            for x in range(w):
                col[x] -= tmp[y - r, x]


def _check_map(imp: object) -> np.ndarray:
    return as_array("imp", imp, (np.float32,), 2, "H x W float32 importance map")


def threshold_value(imp: np.ndarray, thr: float) -> np.ndarray:
    """Keep-mask ``imp > thr`` (bool, H x W). Pixels *at* the threshold are not kept.

    The comparison is exact (float64), so a ``thr`` that float32 cannot hold is not rounded first.
    """
    imp = _check_map(imp)
    thr = check_real("thr", thr)
    out = np.empty(imp.shape, np.bool_)
    check_finite("imp", _greater(imp.reshape(-1), thr, out.reshape(-1)))
    return out


def keep_count(ratio: float, n: int) -> int:
    """Number of pixels kept for ``ratio`` of ``n``: ``floor(ratio * n + 0.5)`` (round half up)."""
    return min(n, max(0, math.floor(ratio * n + 0.5)))


def threshold_keep_ratio(imp: np.ndarray, ratio: float) -> np.ndarray:
    """Keep the top ``ratio`` fraction of pixels: exactly ``floor(ratio * H * W + 0.5)`` of them.

    Selection is a radix select (no sort). Ties at the cut are broken by raster order: the earliest
    pixels equal to the cut value are kept, so the result is deterministic and has exactly ``k``
    True pixels.
    """
    imp = _check_map(imp)
    ratio = check_real("ratio", ratio, 0.0, 1.0)
    bits = imp.reshape(-1).view(np.uint32)
    n = bits.size
    k = keep_count(ratio, n)
    check_finite("imp", _count_nonfinite(imp.reshape(-1)))
    if k == 0:
        return np.zeros(imp.shape, np.bool_)
    if k == n:
        return np.ones(imp.shape, np.bool_)
    out = np.empty(imp.shape, np.bool_)
    _keep_top(bits, k, out.reshape(-1))
    return out


def threshold_percentile(imp: np.ndarray, pct: float) -> np.ndarray:
    """Keep-mask ``imp > t`` where ``t`` is the ``pct``-th percentile (0..100) of the map.

    ``t`` uses linear interpolation between order statistics, computed in float64 (NumPy's default
    ``np.percentile`` method); ``pct=100`` keeps nothing, ``pct=0`` keeps all but the minimum value(s).
    """
    imp = _check_map(imp)
    pct = check_real("pct", pct, 0.0, 100.0)
    flat = imp.reshape(-1)
    check_finite("imp", _count_nonfinite(flat))
    t = _percentile(flat.view(np.uint32), pct)
    out = np.empty(imp.shape, np.bool_)
    _greater(flat, t, out.reshape(-1))
    return out


def dilate_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a keep-mask by ``radius`` pixels with a square (2r+1) x (2r+1) window (Chebyshev distance).

    Border pixels see only the part of the window inside the map. ``radius=0`` returns a copy.
    """
    mask = as_array("mask", mask, (np.bool_,), 2, "H x W bool keep-mask")
    radius = check_int("radius", radius, 0)
    out = np.empty_like(mask)
    _dilate(mask, radius, np.empty_like(mask), out)
    return out
