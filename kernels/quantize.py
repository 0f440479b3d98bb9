"""Uniform quantization of feature maps (C x H x W float32) to 1..8 bits, and dequantization.

Formula, per channel (``per_channel=True``) or for the whole tensor (scale / offset shaped (1,)):

- statistics ``lo, hi``: min / max of the values used, or with ``clip_percentile=p`` the
  ``(100 - p)``-th and ``p``-th percentiles (linear interpolation, ``kernels._select._percentile``);
- ``L = 2**bits - 1``, ``offset = float32(lo)``, ``scale = float32((hi - offset) / L)`` in float64;
  a channel with ``scale == 0`` (constant, or nothing to measure) gets ``scale = 1.0`` so nothing
  divides by zero; a channel with no values at all gets ``offset = 0``;
- ``q = clip(floor((x - offset) * (1 / scale) + 0.5), 0, L)`` in float64, stored as uint8;
- dequantized ``x' = offset + float32(q) * scale`` in float32.

Masks: in :func:`quantize`, positions where ``mask`` is False are not read, not counted in the
statistics and written as ``q = 0`` (dequantize with the same mask to get 0.0 back). In
:func:`mask_quantize` they are *zeroed*: the result equals ``quantize(reduce_features(feat, keep,
"zero"), bits)`` bit for bit (the zeros take part in the statistics), computed in one pass over
the tensor after the statistics pass.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_array, check_finite, check_int, check_mask, check_real
from ._jit import jit
from ._select import _percentile

__all__ = ["quantize", "dequantize", "mask_quantize"]

_LANES = 16  # independent min/max accumulators, so the statistics loop vectorises (no fast-math)
_NO_MASK = np.ones((1, 1), np.bool_)


@jit
def _minmax(x, keep, use_mask, lo, hi):
    """Per-channel min / max over kept positions; returns the count of kept non-finite values."""
    nc = x.shape[0]
    n = x.shape[1] * x.shape[2]
    bad = 0
    lol = np.empty(_LANES, np.float32)
    hil = np.empty(_LANES, np.float32)
    badl = np.zeros(_LANES, np.int64)
    kf = keep.reshape(-1)
    for c in range(nc):
        xc = x[c].reshape(-1)
        lol[:] = np.inf
        hil[:] = -np.inf
        nb = n - n % _LANES
        for i in range(0, nb, _LANES):
            for j in range(_LANES):
                v = xc[i + j]
                k = kf[i + j] if use_mask else True
                bad_v = (v - v) != 0.0
                badl[j] += k and bad_v
                vl = v if k else np.float32(np.inf)
                vh = v if k else np.float32(-np.inf)
                lol[j] = vl if vl < lol[j] else lol[j]
                hil[j] = vh if vh > hil[j] else hil[j]
        for i in range(nb, n):
            v = xc[i]
            if use_mask and not kf[i]:
                continue
            if (v - v) != 0.0:
                bad += 1
            lol[0] = min(lol[0], v)
            hil[0] = max(hil[0], v)
        lo[c] = np.float64(lol.min())
        hi[c] = np.float64(hil.max())
    return bad + badl.sum()


@jit
def _clip_stats(x, keep, use_mask, zero_masked, per_channel, pct, lo, hi):
    """Percentile statistics of the used values (finite, checked before)."""
    nc = x.shape[0]
    n = x.shape[1] * x.shape[2]
    kf = keep.reshape(-1)
    groups = nc if per_channel else 1
    per = n if per_channel else n * nc
    buf = np.empty(per, np.float32)
    for g in range(groups):
        m = 0
        for c in range(nc):
            if per_channel and c != g:
                continue
            xc = x[c].reshape(-1)
            for i in range(n):
                if not use_mask or kf[i]:
                    buf[m] = xc[i]
                    m += 1
                elif zero_masked:
                    buf[m] = 0.0
                    m += 1
        if m == 0:
            lo[g] = 0.0
            hi[g] = 0.0
        else:
            bits = buf[:m].view(np.uint32)
            lo[g] = _percentile(bits, 100.0 - pct)
            hi[g] = _percentile(bits, pct)


@jit
def _params(lo, hi, has_values, levels, scale, offset, inv):
    for g in range(lo.size):
        off = np.float32(lo[g]) if has_values else np.float32(0.0)
        s = np.float32((hi[g] - np.float64(off)) / levels) if has_values else np.float32(0.0)
        if s == np.inf:  # range wider than float32 / levels: saturate, values beyond clip
            s = np.float32(3.4028234663852886e38)
        if not s > 0.0:
            s = np.float32(1.0)
        offset[g] = off
        scale[g] = s
        inv[g] = 1.0 / np.float64(s)


@jit
def _quant_pass(x, keep, use_mask, zero_masked, offset, inv, levels, q):
    nc = x.shape[0]
    n = x.shape[1] * x.shape[2]
    kf = keep.reshape(-1)
    lv = np.float64(levels)
    for c in range(nc):
        g = c if offset.size > 1 else 0
        off = np.float64(offset[g])
        iv = inv[g]
        qm = np.uint8(0)
        if zero_masked:
            qm = np.uint8(min(max(np.floor((0.0 - off) * iv + 0.5), 0.0), lv))
        xc = x[c].reshape(-1)
        qc = q[c].reshape(-1)
        for i in range(n):
            k = kf[i] if use_mask else True
            v = np.float64(xc[i]) if k else 0.0
            t = min(max(np.floor((v - off) * iv + 0.5), 0.0), lv)
            qc[i] = np.uint8(t) if k else qm


@jit
def _quantize(x, keep, use_mask, zero_masked, per_channel, pct, levels, q, scale, offset):
    """Statistics, parameters and the quantization pass; returns the count of non-finite values."""
    nc = x.shape[0]
    lo = np.empty(nc, np.float64)
    hi = np.empty(nc, np.float64)
    bad = _minmax(x, keep, use_mask, lo, hi)
    if bad:
        return bad
    n_kept = keep.sum() if use_mask else x.shape[1] * x.shape[2]
    n_masked = x.shape[1] * x.shape[2] - n_kept
    has_values = n_kept > 0 or zero_masked
    if pct >= 0.0:
        _clip_stats(x, keep, use_mask, zero_masked, per_channel, pct, lo, hi)
    else:
        if zero_masked and n_masked > 0:
            for c in range(nc):
                lo[c] = min(lo[c], 0.0)
                hi[c] = max(hi[c], 0.0)
        if not per_channel:
            lo[0] = lo.min()
            hi[0] = hi.max()
    g = nc if per_channel else 1
    inv = np.empty(g, np.float64)
    _params(lo[:g], hi[:g], has_values, levels, scale, offset, inv)
    _quant_pass(x, keep, use_mask, zero_masked, offset, inv, levels, q)
    return 0


@jit
def _dequant(q, scale, offset, keep, use_mask, out):
    nc = q.shape[0]
    n = q.shape[1] * q.shape[2]
    kf = keep.reshape(-1)
    for c in range(nc):
        g = c if scale.size > 1 else 0
        s = scale[g]
        o = offset[g]
        qc = q[c].reshape(-1)
        oc = out[c].reshape(-1)
        for i in range(n):
            v = o + np.float32(qc[i]) * s
            oc[i] = v if (not use_mask or kf[i]) else np.float32(0.0)


def _run(x, keep, bits, per_channel, clip_percentile, zero_masked, xname, kname):
    x = as_array(xname, x, (np.float32,), 3, "C x H x W feature map")
    bits = check_int("bits", bits, 1, 8)
    if not isinstance(per_channel, bool | np.bool_):
        raise TypeError(f"per_channel must be a bool, got {per_channel!r}")
    pct = -1.0
    if clip_percentile is not None:
        pct = check_real("clip_percentile", clip_percentile, 50.0, 100.0, lo_open=True)
    use_mask = keep is not None
    keep = check_mask(kname, keep, x.shape[1:], xname) if use_mask else _NO_MASK
    g = x.shape[0] if per_channel else 1
    q = np.empty(x.shape, np.uint8)
    scale = np.empty(g, np.float32)
    offset = np.empty(g, np.float32)
    levels = (1 << bits) - 1
    check_finite(
        xname, _quantize(x, keep, use_mask, zero_masked, bool(per_channel), pct, levels, q, scale, offset)
    )
    return q, scale, offset


def quantize(
    x: np.ndarray,
    bits: int,
    *,
    per_channel: bool = True,
    clip_percentile: float | None = None,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize ``x`` (C x H x W float32) to ``bits`` (1..8) with ``x ~= offset + q * scale``.

    Returns ``(q, scale, offset)``: q uint8 C x H x W in ``[0, 2**bits - 1]``, scale and offset
    float32 of shape (C,) (``per_channel=True``) or (1,). ``clip_percentile`` in (50, 100] takes the
    range from percentiles instead of min / max (values outside are clipped). ``mask`` (bool H x W):
    positions where it is False are skipped and written as q = 0. Only the values used must be
    finite; a NaN or inf among them raises ``ValueError``.
    """
    return _run(x, mask, bits, per_channel, clip_percentile, False, "x", "mask")


def mask_quantize(
    feat: np.ndarray,
    keep: np.ndarray,
    bits: int,
    *,
    per_channel: bool = True,
    clip_percentile: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fused zero + quantize: ``quantize(reduce_features(feat, keep, "zero"), bits, ...)`` in one pass.

    Positions where ``keep`` is False count as 0.0 (they are never read, so they need not be finite)
    and get the code of 0.0, so plain :func:`dequantize` returns about 0 there.
    """
    return _run(feat, keep, bits, per_channel, clip_percentile, True, "feat", "keep")


def dequantize(
    q: np.ndarray, scale: np.ndarray, offset: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Float32 ``offset + q * scale`` per channel; positions where ``mask`` is False become 0.0."""
    q = as_array("q", q, (np.uint8,), 3, "C x H x W uint8 codes")
    scale = as_array("scale", scale, (np.float32,), 1, "(C,) or (1,) float32")
    offset = as_array("offset", offset, (np.float32,), 1, "(C,) or (1,) float32")
    nc = q.shape[0]
    for name, a in (("scale", scale), ("offset", offset)):
        if a.shape[0] not in (1, nc):
            raise ValueError(
                f"{name} must have shape (1,) or ({nc},) to match q's {nc} channels, got {a.shape}"
            )
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinite values: {a}")
    if scale.shape != offset.shape:
        raise ValueError(f"scale and offset must have the same shape, got {scale.shape} and {offset.shape}")
    use_mask = mask is not None
    keep = check_mask("mask", mask, q.shape[1:], "q") if use_mask else _NO_MASK
    out = np.empty(q.shape, np.float32)
    _dequant(q, scale, offset, keep, use_mask, out)
    return out
