"""Thresholding of an importance map (2-D float32, H x W) into a keep-mask, and its dilation.

Ties in :func:`threshold_keep_ratio`: exactly ``k`` pixels are kept; among pixels equal to the
``k``-th largest value, the first ones in raster order (row by row, left to right) are kept.
"""

from __future__ import annotations

import math

import numpy as np

from ._checks import as_array, check_finite, check_int, check_real
from ._jit import jit
from ._select import _minmax_finite, _percentile_values, _value_select

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
def _keep_top(imp, k, out):
    """Keep the ``k`` largest values (0 < k < n), ties by raster order; returns the non-finite count."""
    n = imp.size
    lo, hi, bad = _minmax_finite(imp)
    if bad:
        return bad
    tv, n_less, n_eq, _ = _value_select(imp, n - k, lo, hi, False)
    need = k - (n - n_less - n_eq)  # how many of the values equal to the cut are kept
    if need == n_eq:  # every tie is kept (always so for continuous maps): one vectorised pass
        for i in range(n):
            out[i] = imp[i] >= tv
        return 0
    for i in range(n):
        out[i] = imp[i] > tv
    for i in range(n):  # the first `need` ties in raster order
        if need == 0:
            break
        if imp[i] == tv:
            out[i] = True
            need -= 1
    return 0


@jit
def _threshold_percentile(imp, pct, out):
    lo, hi, bad = _minmax_finite(imp)
    if bad:
        return bad
    t = _percentile_values(imp, pct, lo, hi)
    for i in range(imp.size):
        out[i] = imp[i] > t
    return 0


@jit
def _count_nonfinite(a):
    bad = 0
    for i in range(a.size):
        v = a[i]
        bad += (v - v) != 0.0
    return bad


@jit
def _or_doubling(a, b, r, axis):
    """OR over windows of ``span`` elements along ``axis`` (0: rows, 1: columns), by doubling.

    ``a`` is zero-padded by ``r`` on both ends along ``axis``. Afterwards the returned buffer at
    ``i`` holds the OR of ``[i, i + span)``, ``span`` the largest power of two <= 2r + 1; returns
    ``(buffer, span)``. Offset indices are unsigned: with a signed ``x + span`` Numba checks for a
    negative index element by element, which stops vectorisation (measured 15x slower).
    """
    h, w = a.shape
    span = 1
    while span * 2 <= 2 * r + 1:
        us = np.uint64(span)
        if axis == 0:
            for i in range(h):
                if i + span < h:
                    j = np.uint64(i) + us
                    for x in range(w):
                        b[i, x] = a[i, x] | a[j, x]
                else:
                    for x in range(w):
                        b[i, x] = a[i, x]
        else:
            for i in range(h):
                for x in range(w - span):
                    b[i, x] = a[i, x] | a[i, np.uint64(x) + us]
                for x in range(w - span, w):
                    b[i, x] = a[i, x]
        a, b = b, a
        span *= 2
    return a, span


@jit
def _dilate(m8, r, out8):
    """Square (2r+1) x (2r+1) dilation of a 0/1 uint8 mask: separable, each axis by OR-doubling.

    log2(2r+1) + 1 vectorised OR passes per axis instead of 2r + 1 (``benchmarks/bench_kernels.py``,
    dilate_mask: a running-count loop was 3x slower than NumPy's shifted ORs at r = 3).
    """
    h, w = m8.shape
    ur = np.uint64(r)
    pad = np.zeros((h, w + 2 * r), np.uint8)
    for y in range(h):
        for x in range(w):
            pad[y, np.uint64(x) + ur] = m8[y, x]
    buf, span = _or_doubling(pad, np.empty_like(pad), r, 1)
    uoff = np.uint64(2 * r + 1 - span)
    tmp = np.zeros((h + 2 * r, w), np.uint8)
    for y in range(h):
        yy = np.uint64(y) + ur
        for x in range(w):
            tmp[yy, x] = buf[y, x] | buf[y, np.uint64(x) + uoff]
    buf, span = _or_doubling(tmp, np.empty_like(tmp), r, 0)
    uoff = np.uint64(2 * r + 1 - span)
    for y in range(h):
        yy = np.uint64(y) + uoff
        for x in range(w):
            out8[y, x] = buf[y, x] | buf[yy, x]


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
    flat = imp.reshape(-1)
    n = flat.size
    k = keep_count(ratio, n)
    if k == 0 or k == n:
        check_finite("imp", _count_nonfinite(flat))
        return np.full(imp.shape, k == n, np.bool_)
    out = np.empty(imp.shape, np.bool_)
    check_finite("imp", _keep_top(flat, k, out.reshape(-1)))
    return out


def threshold_percentile(imp: np.ndarray, pct: float) -> np.ndarray:
    """Keep-mask ``imp > t`` where ``t`` is the ``pct``-th percentile (0..100) of the map.

    ``t`` uses linear interpolation between order statistics, computed in float64 (NumPy's default
    ``np.percentile`` method); ``pct=100`` keeps nothing, ``pct=0`` keeps all but the minimum value(s).
    """
    imp = _check_map(imp)
    pct = check_real("pct", pct, 0.0, 100.0)
    flat = imp.reshape(-1)
    out = np.empty(imp.shape, np.bool_)
    check_finite("imp", _threshold_percentile(flat, pct, out.reshape(-1)))
    return out


def dilate_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a keep-mask by ``radius`` pixels with a square (2r+1) x (2r+1) window (Chebyshev distance).

    Border pixels see only the part of the window inside the map. ``radius=0`` returns a copy.
    """
    mask = as_array("mask", mask, (np.bool_,), 2, "H x W bool keep-mask")
    radius = check_int("radius", radius, 0)
    out = np.empty_like(mask)
    _dilate(mask.view(np.uint8), radius, out.view(np.uint8))
    return out
