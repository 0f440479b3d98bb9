"""Map resize (bilinear) and warp (dense flow or shift) of 2-D float32 maps.

Bilinear weights are computed in float64 from float32 samples:
``v = (1 - wy) * ((1 - wx) * a00 + wx * a01) + wy * ((1 - wx) * a10 + wx * a11)``, stored as float32.

- :func:`resize_bilinear` places samples like ``cv2.resize(..., interpolation=cv2.INTER_LINEAR)``:
  half-pixel centres, ``sx = (x + 0.5) * in_w / out_w - 0.5``, clamped at the borders, no
  anti-aliasing when shrinking.
- :func:`warp_flow` is a backward warp, ``out[y, x] = map(x + flow[y, x, 0], y + flow[y, x, 1])``,
  like ``cv2.remap`` of the map at ``x + flow`` with ``BORDER_CONSTANT``: each of the four
  neighbours that falls outside the map reads ``fill`` (default 0.0). cv2.remap rounds coordinates
  to 1/32 pixel; this does not.
- :func:`shift_map` moves the content by ``(dy, dx)`` pixels (down, right):
  ``out[y, x] = map(y - dy, x - dx)``, the same as a constant flow ``(-dx, -dy)``; uncovered pixels
  read ``fill`` (default 0.0). Integer shifts copy values exactly.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_array, check_finite, check_int, check_real
from ._jit import jit
from .threshold import _count_nonfinite

__all__ = ["resize_bilinear", "warp_flow", "shift_map"]

# Coordinates are clamped to this margin outside the map before the float -> int conversion, so a
# huge flow cannot overflow it; any sample that far out reads ``fill`` anyway.
_MARGIN = 2.0


@jit
def _linear_table(n_in, n_out):
    """cv2 INTER_LINEAR source indices and weights along one axis."""
    i0 = np.empty(n_out, np.uint64)  # unsigned: no wrap-around test when used as an index
    i1 = np.empty(n_out, np.uint64)
    wt = np.empty(n_out, np.float64)
    scale = n_in / n_out
    for d in range(n_out):
        f = (d + 0.5) * scale - 0.5
        s = np.int64(np.floor(f))
        f -= s
        if s < 0:
            s = 0
            f = 0.0
        if s >= n_in - 1:
            s = n_in - 1
            f = 0.0
        i0[d] = s
        i1[d] = min(s + 1, n_in - 1)
        wt[d] = f
    return i0, i1, wt


@jit
def _resize(src, out):
    h, w = src.shape
    oh, ow = out.shape
    x0, x1, wx = _linear_table(w, ow)
    y0, y1, wy = _linear_table(h, oh)
    for y in range(oh):
        a, b, fy = y0[y], y1[y], wy[y]
        for x in range(ow):
            fx = wx[x]
            top = (1.0 - fx) * np.float64(src[a, x0[x]]) + fx * np.float64(src[a, x1[x]])
            bot = (1.0 - fx) * np.float64(src[b, x0[x]]) + fx * np.float64(src[b, x1[x]])
            out[y, x] = (1.0 - fy) * top + fy * bot


@jit(inline=True)
def _sample(src, sy, sx, fill):
    """Bilinear sample at (sy, sx) with constant ``fill`` outside the map.

    The common case (all four neighbours inside) is tested on the float coordinates and indexes
    with unsigned ints: Numba tests every signed index for wrap-around, and clamping first cost
    as much again (``benchmarks/bench_kernels.py``, warp_flow: 1.8x).
    """
    h, w = src.shape
    x0f = np.floor(sx)
    y0f = np.floor(sy)
    if x0f >= 0.0 and x0f < w - 1 and y0f >= 0.0 and y0f < h - 1:
        fx = sx - x0f
        fy = sy - y0f
        ux = np.uint64(np.int64(x0f))
        uy = np.uint64(np.int64(y0f))
        one = np.uint64(1)
        a00 = np.float64(src[uy, ux])
        a01 = np.float64(src[uy, ux + one])
        a10 = np.float64(src[uy + one, ux])
        a11 = np.float64(src[uy + one, ux + one])
    else:
        sx = min(max(sx, -_MARGIN), w + _MARGIN)
        sy = min(max(sy, -_MARGIN), h + _MARGIN)
        x0 = np.int64(np.floor(sx))
        y0 = np.int64(np.floor(sy))
        fx = sx - x0
        fy = sy - y0
        a00 = _at(src, y0, x0, fill)
        a01 = _at(src, y0, x0 + 1, fill)
        a10 = _at(src, y0 + 1, x0, fill)
        a11 = _at(src, y0 + 1, x0 + 1, fill)
    top = (1.0 - fx) * a00 + fx * a01
    bot = (1.0 - fx) * a10 + fx * a11
    return (1.0 - fy) * top + fy * bot


@jit(inline=True)
def _at(src, y, x, fill):
    h, w = src.shape
    if 0 <= y < h and 0 <= x < w:
        return np.float64(src[np.uint64(y), np.uint64(x)])
    return fill


@jit
def _warp(src, flow, fill, out):
    """Backward warp; returns the count of non-finite flow values (those pixels get ``fill``)."""
    h, w = src.shape
    bad = 0
    for y in range(h):
        for x in range(w):
            fx = np.float64(flow[y, x, 0])
            fy = np.float64(flow[y, x, 1])
            if (fx - fx) != 0.0 or (fy - fy) != 0.0:
                bad += 1
                out[y, x] = fill
            else:
                out[y, x] = _sample(src, y + fy, x + fx, fill)
    return bad


@jit
def _shift(src, dy, dx, fill, out):
    h, w = src.shape
    for y in range(h):
        for x in range(w):
            out[y, x] = _sample(src, y - dy, x - dx, fill)


def _check_map(name: str, m: object) -> np.ndarray:
    m = as_array(name, m, (np.float32,), 2, "H x W float32 map")
    check_finite(name, _count_nonfinite(m.reshape(-1)))
    return m


def resize_bilinear(map2d: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Resize a 2-D float32 map to ``(out_h, out_w)`` with bilinear interpolation (cv2 INTER_LINEAR)."""
    map2d = _check_map("map2d", map2d)
    out_h = check_int("out_h", out_h, 1)
    out_w = check_int("out_w", out_w, 1)
    out = np.empty((out_h, out_w), np.float32)
    _resize(map2d, out)
    return out


def warp_flow(map2d: np.ndarray, flow: np.ndarray, *, fill: float = 0.0) -> np.ndarray:
    """Backward-warp a 2-D float32 map by a dense flow (H x W x 2 float32, ``[..., 0]`` = dx).

    ``out[y, x]`` samples the map at ``(x + flow[y, x, 0], y + flow[y, x, 1])``; samples outside
    the map read ``fill``.
    """
    map2d = _check_map("map2d", map2d)
    flow = as_array("flow", flow, (np.float32,), 3, "H x W x 2 float32 flow")
    if flow.shape != (*map2d.shape, 2):
        raise ValueError(f"flow must have shape {(*map2d.shape, 2)} (map2d's H x W x 2), got {flow.shape}")
    fill = check_real("fill", fill)
    out = np.empty_like(map2d)
    check_finite("flow", _warp(map2d, flow, fill, out))
    return out


def shift_map(map2d: np.ndarray, dy: float, dx: float, *, fill: float = 0.0) -> np.ndarray:
    """Move the content of a 2-D float32 map by ``dy`` rows down and ``dx`` columns right.

    Fractional shifts interpolate bilinearly; pixels uncovered by the shift read ``fill``.
    """
    map2d = _check_map("map2d", map2d)
    dy = check_real("dy", dy)
    dx = check_real("dx", dx)
    fill = check_real("fill", fill)
    out = np.empty_like(map2d)
    _shift(map2d, dy, dx, fill, out)
    return out
