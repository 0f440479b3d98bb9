"""Weighted sum of layer outputs into one importance map (for graphs that do not fuse it).

Each layer is a 2-D map (H x W) or a C x H x W tensor reduced to ``mean over c of |x[c]|``
(accumulated in float64, stored as float32). Each map is resized bilinearly
(:func:`kernels.resize_bilinear`, float32 result) to ``out_hw`` and added with its weight into a
float64 sum, layer by layer in the given order. The sum is normalised to [0, 1] by its min and max
(``(s - min) / (max - min)``); a constant sum gives all zeros. Negative weights are allowed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._checks import as_array, check_finite, check_int, check_real
from ._jit import jit
from .geometry import _linear_table
from .threshold import _count_nonfinite

__all__ = ["weighted_sum"]


@jit
def _mean_abs(x, out):
    nc, h, w = x.shape
    acc = np.zeros((h, w), np.float64)
    for c in range(nc):
        for y in range(h):
            for xx in range(w):
                acc[y, xx] += abs(np.float64(x[c, y, xx]))
    for y in range(h):
        for xx in range(w):
            out[y, xx] = acc[y, xx] / nc


@jit
def _add_resized(src, wgt, acc):
    """acc += wgt * float32(bilinear resize of src to acc's shape)."""
    h, w = src.shape
    oh, ow = acc.shape
    x0, x1, wx = _linear_table(w, ow)
    y0, y1, wy = _linear_table(h, oh)
    for y in range(oh):
        a, b, fy = y0[y], y1[y], wy[y]
        for x in range(ow):
            fx = wx[x]
            top = (1.0 - fx) * np.float64(src[a, x0[x]]) + fx * np.float64(src[a, x1[x]])
            bot = (1.0 - fx) * np.float64(src[b, x0[x]]) + fx * np.float64(src[b, x1[x]])
            acc[y, x] += wgt * np.float64(np.float32((1.0 - fy) * top + fy * bot))


@jit
def _normalise(acc, out):
    lo = acc.min()
    hi = acc.max()
    span = hi - lo
    h, w = acc.shape
    for y in range(h):
        for x in range(w):
            out[y, x] = (acc[y, x] - lo) / span if span > 0.0 else 0.0


def weighted_sum(
    layers: Sequence[np.ndarray], weights: Sequence[float], out_hw: tuple[int, int]
) -> np.ndarray:
    """Combine layer outputs into one float32 map of shape ``out_hw``, normalised to [0, 1].

    ``layers``: 2-D (H x W) or 3-D (C x H x W) float32 arrays, any resolutions; ``weights``: one
    finite real per layer.
    """
    if isinstance(layers, np.ndarray) or not isinstance(layers, Sequence):
        raise TypeError(f"layers must be a list of arrays, got {type(layers).__name__}")
    if isinstance(weights, str | bytes) or not isinstance(weights, Sequence | np.ndarray):
        raise TypeError(f"weights must be a sequence of numbers, got {type(weights).__name__}")
    if len(layers) == 0:
        raise ValueError("layers must not be empty")
    if len(weights) != len(layers):
        raise ValueError(
            f"weights must have one entry per layer: {len(layers)} layers, {len(weights)} weights"
        )
    if not isinstance(out_hw, Sequence) or len(out_hw) != 2:
        raise TypeError(f"out_hw must be a pair (out_h, out_w), got {out_hw!r}")
    oh = check_int("out_hw[0]", out_hw[0], 1)
    ow = check_int("out_hw[1]", out_hw[1], 1)
    ws = [check_real(f"weights[{i}]", w) for i, w in enumerate(weights)]
    maps = []
    for i, layer in enumerate(layers):
        name = f"layers[{i}]"
        nd = layer.ndim if isinstance(layer, np.ndarray) else 0
        a = as_array(name, layer, (np.float32,), 3 if nd == 3 else 2, "H x W or C x H x W float32")
        check_finite(name, _count_nonfinite(a.reshape(-1)))
        if a.ndim == 3:
            m = np.empty(a.shape[1:], np.float32)
            _mean_abs(a, m)
            a = m
        maps.append(a)
    acc = np.zeros((oh, ow), np.float64)
    for a, w in zip(maps, ws, strict=True):
        _add_resized(a, w, acc)
    out = np.empty((oh, ow), np.float32)
    _normalise(acc, out)
    return out
