"""Reduction of the pixels that are not kept, in images (H x W x C) and feature maps (C x H x W).

Every kernel here works on H x W x C arrays: images as they are, feature maps one channel plane at
a time as H x W x 1 (contiguous rows either way).

Modes (kept pixels are always copied unchanged):

- ``"zero"``: set to 0.
- ``"blur"``: box blur of radius ``r`` ((2r+1)^2 window, separable running sums, edges
  replicated): int32 sums rounded half up for uint8 (exact), float64 sums for float32.
- ``"colour"``: ``levels`` evenly spaced levels including black and white (posterise):
  uint8 ``q = round(v * (L-1) / 255)``, ``v' = round(q * 255 / (L-1))`` (half up);
  float32 images are taken as [0, 1]: ``q = floor(clip(v, 0, 1) * (L-1) + 0.5)``, ``v' = q / (L-1)``.
- ``"grey"``: luma, BT.601 weights for 3 channels in **RGB** order (0.299, 0.587, 0.114;
  uint8 in integer arithmetic, ``(299 R + 587 G + 114 B + 500) // 1000``), else the channel mean;
  written to every channel.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_array, check_choice, check_finite, check_int, check_mask
from ._jit import jit
from .threshold import _count_nonfinite

__all__ = ["reduce_image", "reduce_features", "IMAGE_MODES", "FEATURE_MODES"]

IMAGE_MODES = ("zero", "blur", "colour", "grey")
FEATURE_MODES = ("zero", "blur")
DEFAULT_RADIUS = 2
DEFAULT_LEVELS = 4


@jit
def _zero(bits, keep, nc, out):
    """Zero where keep is False, on the integer bits (uint8, or uint32 for float32 data), flat.

    ``x & -k`` instead of ``x if k else 0``: Numba lowers a conditional expression to a branch,
    which a ragged mask mispredicts and which blocks vectorisation (measured 20x slower).
    """
    kf = keep.reshape(-1).view(np.uint8)
    n = kf.size
    if nc == 1:
        for i in range(n):
            out[i] = bits[i] & -np.int64(kf[i])
    elif nc == 3:
        for i in range(n):
            m = -np.int64(kf[i])
            j = 3 * i
            out[j] = bits[j] & m
            out[j + 1] = bits[j + 1] & m
            out[j + 2] = bits[j + 2] & m
    else:
        for i in range(n):
            m = -np.int64(kf[i])
            for c in range(nc):
                out[i * nc + c] = bits[i * nc + c] & m


@jit
def _blur(src, keep, r, integer, hs, col, out):
    """Box blur where keep is False. ``hs`` (H x W x C) and ``col`` (W x C) hold the sums: int32
    for uint8 images (exact; rounded half up via a float64 multiply, exact for any window up to
    4e6 pixels since the window size is odd) or float64 for float32 data (divided at the end).

    Horizontal running sums into ``hs`` once per row, then a vertical running sum over rows of
    ``hs`` (a contiguous, vectorised loop). Offset indices are unsigned: a signed ``x + r`` makes
    Numba test every index for wrap-around.
    """
    h, w, nc = src.shape
    ur = np.uint64(r)
    uw1 = np.uint64(w - 1)
    cf = col.reshape(-1)
    m = cf.size
    for j in range(m):  # zeroed first: the buffer comes from np.empty, and a float one may hold NaN
        cf[j] = 0
    for y in range(h):
        for c in range(nc):
            s = col[0, c]  # zero of the sum's type
            for d in range(r + 1):  # window of x = 0: src[0] r + 1 times, then src[1..r]
                s += src[y, min(np.uint64(d), uw1), c]
            for _ in range(r):
                s += src[y, 0, c]
            for x in range(w):
                hs[y, x, c] = s
                ux = np.uint64(x)
                s += src[y, min(ux + ur + np.uint64(1), uw1), c]
                s -= src[y, ux - ur if ux >= ur else np.uint64(0), c]
    for d in range(-r, r + 1):
        hrow = hs[min(max(d, 0), h - 1)].reshape(-1)
        for j in range(m):
            cf[j] += hrow[j]
    cnt = (2 * r + 1) * (2 * r + 1)
    inv = 1.0 / cnt
    for y in range(h):
        for x in range(w):
            for c in range(nc):
                out[y, x, c] = src[y, x, c]
        for x in range(w):
            if not keep[y, x]:
                for c in range(nc):
                    if integer:
                        out[y, x, c] = np.floor(np.float64(col[x, c]) * inv + 0.5)
                    else:
                        out[y, x, c] = col[x, c] / cnt
        if y + 1 < h:
            enter = hs[min(y + r + 1, h - 1)].reshape(-1)
            leave = hs[max(y - r, 0)].reshape(-1)
            for j in range(m):
                cf[j] += enter[j] - leave[j]


@jit
def _blur_chw(feat, keep, r, hs, col, out):
    """Blur each C x H x W plane as an H x W x 1 image: contiguous rows (a transposed view with
    C innermost was 4x slower on 64x32x32)."""
    nc, h, w = feat.shape
    for c in range(nc):
        _blur(feat[c].reshape((h, w, 1)), keep, r, False, hs, col, out[c].reshape((h, w, 1)))


@jit
def _zero_chw(bits, keep, out):
    nc, h, w = bits.shape
    for c in range(nc):
        _zero(bits[c].reshape(-1), keep, 1, out[c].reshape(-1))


@jit
def _lut(src, keep, lut, out):
    """uint8 colour reduction: ``(v & m) | (lut[v] & ~m)`` with ``m = -keep`` (branch-free)."""
    kf = keep.reshape(-1).view(np.uint8)
    nc = src.shape[2]
    sf = src.reshape(-1)
    of = out.reshape(-1)
    for i in range(kf.size):
        m = -np.int64(kf[i])
        for c in range(nc):
            v = sf[i * nc + c]
            of[i * nc + c] = (v & m) | (lut[v] & ~m)


@jit
def _posterise(src, keep, levels, out):
    h, w, nc = src.shape
    lm1 = np.float64(levels - 1)
    sf = src.reshape(-1)
    of = out.reshape(-1)
    kf = keep.reshape(-1)
    for i in range(sf.size):
        of[i] = sf[i]
    for i in range(kf.size):  # only the reduced pixels are written: masks come in blobs
        if not kf[i]:
            for c in range(nc):
                f = np.float64(sf[i * nc + c])
                f = 0.0 if f < 0.0 else f
                f = 1.0 if f > 1.0 else f
                of[i * nc + c] = np.floor(f * lm1 + 0.5) / lm1


@jit
def _grey(src, keep, integer, out):
    h, w, nc = src.shape
    sf = src.reshape(-1)
    of = out.reshape(-1)
    kf = keep.reshape(-1)
    for i in range(sf.size):
        of[i] = sf[i]
    for i in range(kf.size):  # only the reduced pixels are written: masks come in blobs
        if kf[i]:
            continue
        j = i * nc
        if integer:
            if nc == 3:
                s = 299 * np.int64(sf[j]) + 587 * np.int64(sf[j + 1])
                g = (s + 114 * np.int64(sf[j + 2]) + 500) // 1000
            else:
                s = np.int64(0)
                for c in range(nc):
                    s += np.int64(sf[j + c])
                g = (2 * s + nc) // (2 * nc)
            for c in range(nc):
                of[j + c] = g
        else:
            if nc == 3:
                gf = 0.299 * np.float64(sf[j]) + 0.587 * np.float64(sf[j + 1])
                gf = gf + 0.114 * np.float64(sf[j + 2])
            else:
                gf = 0.0
                for c in range(nc):
                    gf += np.float64(sf[j + c])
                gf = gf / nc
            for c in range(nc):
                of[j + c] = gf


def _blur_buffers(hwc: tuple[int, int, int], integer: bool) -> tuple[np.ndarray, np.ndarray]:
    dt = np.int32 if integer else np.float64
    return np.empty(hwc, dt), np.empty(hwc[1:], dt)


def _colour_lut(levels: int) -> np.ndarray:
    v = np.arange(256, dtype=np.int64)
    lm1 = levels - 1
    q = (2 * v * lm1 + 255) // 510
    return ((2 * q * 255 + lm1) // (2 * lm1)).astype(np.uint8)


_LUTS: dict[int, np.ndarray] = {}


def _options(mode: str, radius: int | None, levels: int | None) -> tuple[int, int]:
    """Resolve radius / levels for ``mode``; refuse one that the mode would ignore."""
    if radius is not None and mode != "blur":
        raise ValueError(f"radius={radius!r} has no effect in mode {mode!r}; pass it only with mode='blur'")
    if levels is not None and mode != "colour":
        raise ValueError(f"levels={levels!r} has no effect in mode {mode!r}; pass it only with mode='colour'")
    r = DEFAULT_RADIUS if radius is None else check_int("radius", radius, 0)
    lv = DEFAULT_LEVELS if levels is None else check_int("levels", levels, 2, 256)
    return r, lv


def reduce_image(
    img: np.ndarray, keep: np.ndarray, mode: str, *, radius: int | None = None, levels: int | None = None
) -> np.ndarray:
    """Reduce the pixels of ``img`` (H x W x C, uint8 or float32) where ``keep`` (bool H x W) is False.

    ``mode``: ``"zero"``, ``"blur"`` (``radius``, default 2), ``"colour"`` (``levels`` in 2..256,
    default 4) or ``"grey"``. Returns a new array of the same dtype and shape; see the module
    docstring for the exact arithmetic.
    """
    img = as_array("img", img, (np.uint8, np.float32), 3, "H x W x C image")
    keep = check_mask("keep", keep, img.shape[:2], "img")
    mode = check_choice("mode", mode, IMAGE_MODES)
    r, lv = _options(mode, radius, levels)
    integer = img.dtype == np.uint8
    if not integer:
        check_finite("img", _count_nonfinite(img.reshape(-1)))
    out = np.empty_like(img)
    if mode == "zero":
        bits = np.uint8 if integer else np.uint32
        _zero(img.reshape(-1).view(bits), keep, img.shape[2], out.reshape(-1).view(bits))
    elif mode == "blur":
        _blur(img, keep, r, integer, *_blur_buffers(img.shape, integer), out)
    elif mode == "colour":
        if integer:
            lut = _LUTS.get(lv)
            if lut is None:
                lut = _LUTS[lv] = _colour_lut(lv)
            _lut(img, keep, lut, out)
        else:
            _posterise(img, keep, lv, out)
    else:
        _grey(img, keep, integer, out)
    return out


def reduce_features(
    feat: np.ndarray, keep: np.ndarray, mode: str, *, radius: int | None = None
) -> np.ndarray:
    """Reduce a feature map (C x H x W float32) where ``keep`` (bool H x W) is False.

    ``mode``: ``"zero"`` or ``"blur"`` (box blur per channel, ``radius`` default 2).
    """
    feat = as_array("feat", feat, (np.float32,), 3, "C x H x W feature map")
    keep = check_mask("keep", keep, feat.shape[1:], "feat")
    mode = check_choice("mode", mode, FEATURE_MODES)
    r, _ = _options(mode, radius, None)
    check_finite("feat", _count_nonfinite(feat.reshape(-1)))
    out = np.empty_like(feat)
    if mode == "zero":
        _zero_chw(feat.view(np.uint32), keep, out.view(np.uint32))
    else:
        _blur_chw(feat, keep, r, *_blur_buffers((feat.shape[1], feat.shape[2], 1), False), out)
    return out
