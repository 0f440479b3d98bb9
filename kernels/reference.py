"""Plain NumPy twins of every kernel: the test oracles and the benchmark baselines.

Written the way a NumPy user would write them (vectorised, several passes, temporaries), with the
same arithmetic as the kernels so results match bit for bit where the docs say so (float blur
sums differ in the last bits: the kernels use running sums). No validation: call with valid input.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "threshold_value",
    "threshold_keep_ratio",
    "threshold_percentile",
    "percentile",
    "dilate_mask",
    "reduce_image",
    "reduce_features",
    "resize_bilinear",
    "warp_flow",
    "shift_map",
    "quantize",
    "dequantize",
    "mask_quantize",
    "weighted_sum",
]


def threshold_value(imp: np.ndarray, thr: float) -> np.ndarray:
    return imp > np.float64(thr)  # exact comparison; a bare Python float would be rounded to float32


def threshold_keep_ratio(imp: np.ndarray, ratio: float) -> np.ndarray:
    flat = imp.ravel()
    n = flat.size
    k = min(n, max(0, math.floor(ratio * n + 0.5)))
    if k == 0:
        return np.zeros(imp.shape, bool)
    if k == n:
        return np.ones(imp.shape, bool)
    f = flat + np.float32(0.0)  # -0.0 -> +0.0, like the kernel's keys
    t = np.partition(f, n - k)[n - k]
    greater = f > t
    eq = f == t
    need = k - int(greater.sum())
    return (greater | (eq & (np.cumsum(eq) <= need))).reshape(imp.shape)


def percentile(values: np.ndarray, pct: float) -> float:
    """Linear-interpolation percentile, the formula of ``kernels._select._percentile_values``."""
    v = values.ravel()
    n = v.size
    pos = pct / 100.0 * (n - 1)
    i = min(int(math.floor(pos)), n - 1)
    f = pos - i
    part = np.partition(v, [i, min(i + 1, n - 1)])
    lo = float(part[i])
    if f == 0.0 or i + 1 >= n:
        return lo
    hi = float(part[i + 1])
    return lo + (hi - lo) * f


def threshold_percentile(imp: np.ndarray, pct: float) -> np.ndarray:
    return imp > percentile(imp, pct)


def dilate_mask(mask: np.ndarray, radius: int) -> np.ndarray:
    h, w = mask.shape
    p = np.pad(mask, radius)
    rows = np.zeros((h + 2 * radius, w), bool)
    for d in range(2 * radius + 1):
        rows |= p[:, d : d + w]
    out = np.zeros((h, w), bool)
    for d in range(2 * radius + 1):
        out |= rows[d : d + h]
    return out


def _box_sum(a: np.ndarray, r: int) -> np.ndarray:
    """Sum over a (2r+1)^2 window with replicated edges, for H x W x C float64 input."""
    h, w = a.shape[:2]
    p = np.pad(a, ((r, r), (r, r), (0, 0)), mode="edge")
    c = np.cumsum(p, axis=0)
    c = np.concatenate([np.zeros_like(c[:1]), c], axis=0)
    v = c[2 * r + 1 : 2 * r + 1 + h] - c[:h]
    c = np.cumsum(v, axis=1)
    c = np.concatenate([np.zeros_like(c[:, :1]), c], axis=1)
    return c[:, 2 * r + 1 : 2 * r + 1 + w] - c[:, :w]


def _blurred(img: np.ndarray, r: int) -> np.ndarray:
    cnt = (2 * r + 1) ** 2
    if img.dtype == np.uint8:
        s = _box_sum(img.astype(np.int64), r)
        return ((2 * s + cnt) // (2 * cnt)).astype(np.uint8)
    return (_box_sum(img.astype(np.float64), r) / cnt).astype(np.float32)


def _colour(img: np.ndarray, levels: int) -> np.ndarray:
    lm1 = levels - 1
    if img.dtype == np.uint8:
        v = img.astype(np.int64)
        q = (2 * v * lm1 + 255) // 510
        return ((2 * q * 255 + lm1) // (2 * lm1)).astype(np.uint8)
    f = np.clip(img.astype(np.float64), 0.0, 1.0)
    return (np.floor(f * lm1 + 0.5) / lm1).astype(np.float32)


def _grey(img: np.ndarray) -> np.ndarray:
    c = img.shape[2]
    if img.dtype == np.uint8:
        v = img.astype(np.int64)
        if c == 3:
            g = (299 * v[..., 0] + 587 * v[..., 1] + 114 * v[..., 2] + 500) // 1000
        else:
            g = (2 * v.sum(axis=2) + c) // (2 * c)
        g = g.astype(np.uint8)
    else:
        v = img.astype(np.float64)
        if c == 3:
            g = 0.299 * v[..., 0] + 0.587 * v[..., 1] + 0.114 * v[..., 2]
        else:
            g = v[..., 0].copy()
            for i in range(1, c):
                g += v[..., i]
            g = g / c
        g = g.astype(np.float32)
    return np.repeat(g[..., None], c, axis=2)


def reduce_image(
    img: np.ndarray, keep: np.ndarray, mode: str, *, radius: int | None = None, levels: int | None = None
) -> np.ndarray:
    k = keep[..., None]
    if mode == "zero":
        return np.where(k, img, np.zeros((), img.dtype))
    if mode == "blur":
        return np.where(k, img, _blurred(img, 2 if radius is None else radius))
    if mode == "colour":
        return np.where(k, img, _colour(img, 4 if levels is None else levels))
    if mode == "grey":
        return np.where(k, img, _grey(img))
    raise ValueError(mode)


def reduce_features(
    feat: np.ndarray, keep: np.ndarray, mode: str, *, radius: int | None = None
) -> np.ndarray:
    if mode == "zero":
        return np.where(keep, feat, np.float32(0.0))
    if mode == "blur":
        hwc = feat.transpose(1, 2, 0)
        b = _blurred(hwc, 2 if radius is None else radius).transpose(2, 0, 1)
        return np.where(keep, feat, b)
    raise ValueError(mode)


def _table(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    s = np.floor(f)
    w = f - s
    s = s.astype(np.int64)
    w[s < 0] = 0.0
    s[s < 0] = 0
    w[s >= n_in - 1] = 0.0
    s[s >= n_in - 1] = n_in - 1
    return s, np.minimum(s + 1, n_in - 1), w


def _resize64(m: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    x0, x1, wx = _table(m.shape[1], out_w)
    y0, y1, wy = _table(m.shape[0], out_h)
    a = m.astype(np.float64)
    top = (1.0 - wx) * a[y0][:, x0] + wx * a[y0][:, x1]
    bot = (1.0 - wx) * a[y1][:, x0] + wx * a[y1][:, x1]
    return (1.0 - wy)[:, None] * top + wy[:, None] * bot


def resize_bilinear(map2d: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    return _resize64(map2d, out_h, out_w).astype(np.float32)


def _sample(m: np.ndarray, sy: np.ndarray, sx: np.ndarray, fill: float) -> np.ndarray:
    h, w = m.shape
    sx = np.clip(sx, -2.0, w + 2.0)
    sy = np.clip(sy, -2.0, h + 2.0)
    x0 = np.floor(sx).astype(np.int64)
    y0 = np.floor(sy).astype(np.int64)
    fx = sx - x0
    fy = sy - y0
    a = m.astype(np.float64)

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        return np.where(inside, a[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], fill)

    top = (1.0 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)
    bot = (1.0 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)
    return ((1.0 - fy) * top + fy * bot).astype(np.float32)


def warp_flow(map2d: np.ndarray, flow: np.ndarray, *, fill: float = 0.0) -> np.ndarray:
    h, w = map2d.shape
    yy, xx = np.mgrid[0:h, 0:w]
    return _sample(map2d, yy + flow[..., 1].astype(np.float64), xx + flow[..., 0].astype(np.float64), fill)


def shift_map(map2d: np.ndarray, dy: float, dx: float, *, fill: float = 0.0) -> np.ndarray:
    h, w = map2d.shape
    yy, xx = np.mgrid[0:h, 0:w]
    return _sample(map2d, yy - float(dy), xx - float(dx), fill)


def _params(lo: float, hi: float, levels: int, has_values: bool) -> tuple[np.float32, np.float32]:
    off = np.float32(lo) + np.float32(0.0) if has_values else np.float32(0.0)
    s = np.float32((hi - float(off)) / levels) if has_values else np.float32(0.0)
    if s == np.inf:
        s = np.float32(np.finfo(np.float32).max)
    if not s > 0.0:
        s = np.float32(1.0)
    return off, s


def _quantize(x, keep, bits, per_channel, clip_percentile, zero_masked):
    c = x.shape[0]
    levels = (1 << bits) - 1
    k = np.ones(x.shape[1:], bool) if keep is None else keep
    groups = [[i] for i in range(c)] if per_channel else [list(range(c))]
    scale = np.empty(len(groups), np.float32)
    offset = np.empty(len(groups), np.float32)
    for g, chans in enumerate(groups):
        if zero_masked:
            vals = np.concatenate([np.where(k, x[i], np.float32(0.0)).ravel() for i in chans])
        else:
            vals = np.concatenate([x[i][k] for i in chans])
        has = vals.size > 0
        if not has:
            lo = hi = 0.0
        elif clip_percentile is None:
            lo, hi = float(vals.min()), float(vals.max())
        else:
            lo = percentile(vals, 100.0 - clip_percentile)
            hi = percentile(vals, clip_percentile)
        offset[g], scale[g] = _params(lo, hi, levels, has)
    idx = np.arange(c) if per_channel else np.zeros(c, np.int64)
    off = offset[idx][:, None, None]
    inv = (1.0 / scale[idx].astype(np.float64)).astype(np.float32)[:, None, None]
    v = np.where(k, x, np.float32(0.0))
    with np.errstate(over="ignore"):  # a value far past a tiny clipped range: inf, saturates below
        q = np.clip(np.floor((v - off) * inv + np.float32(0.5)), 0, levels).astype(np.uint8)
    if not zero_masked:
        q = np.where(k, q, np.uint8(0))
    return q, scale, offset


def quantize(x, bits, *, per_channel=True, clip_percentile=None, mask=None):
    return _quantize(x, mask, bits, per_channel, clip_percentile, False)


def mask_quantize(feat, keep, bits, *, per_channel=True, clip_percentile=None):
    return _quantize(feat, keep, bits, per_channel, clip_percentile, True)


def dequantize(q, scale, offset, mask=None):
    c = q.shape[0]
    s = np.broadcast_to(scale, (c,))[:, None, None]
    o = np.broadcast_to(offset, (c,))[:, None, None]
    out = o + q.astype(np.float32) * s
    if mask is not None:
        out = np.where(mask, out, np.float32(0.0))
    return out.astype(np.float32)


def requantize(q, scale, offset, new_scale, new_offset, bits):
    c = q.shape[0]
    x = dequantize(q, scale, offset)
    o = np.broadcast_to(new_offset, (c,))[:, None, None]
    inv = (1.0 / np.broadcast_to(new_scale, (c,)).astype(np.float64)).astype(np.float32)[:, None, None]
    with np.errstate(over="ignore"):  # a tiny new scale: inf, saturates below
        v = np.floor((x - o) * inv + np.float32(0.5))
    return np.clip(v, 0, (1 << bits) - 1).astype(np.uint8)


def weighted_sum(layers, weights, out_hw):
    acc = np.zeros(tuple(out_hw), np.float64)
    for layer, w in zip(layers, weights, strict=True):
        m = layer
        if m.ndim == 3:
            a = np.zeros(m.shape[1:], np.float64)
            for i in range(m.shape[0]):
                a += np.abs(m[i].astype(np.float64))
            m = (a / m.shape[0]).astype(np.float32)
        acc += float(w) * resize_bilinear(m, *out_hw).astype(np.float64)
    lo, hi = acc.min(), acc.max()
    if hi - lo > 0:
        return ((acc - lo) / (hi - lo)).astype(np.float32)
    return np.zeros(tuple(out_hw), np.float32)
