"""Uniform quantization of feature maps (C x H x W float32) to 1..8 bits, and dequantization.

Formula, per channel (``per_channel=True``) or for the whole tensor (scale / offset shaped (1,)):

- statistics ``lo, hi``: min / max of the values used, or with ``clip_percentile=p`` the
  ``(100 - p)``-th and ``p``-th percentiles (linear interpolation,
  ``kernels._select._percentile_values``);
- ``L = 2**bits - 1``, ``offset = float32(lo)``, ``scale = float32((hi - offset) / L)`` in float64;
  a channel with ``scale == 0`` (constant, or nothing to measure) gets ``scale = 1.0`` so nothing
  divides by zero; a channel with no values at all gets ``offset = 0``;
- ``inv = float32(1 / scale)`` (float64 division), then in float32 arithmetic
  ``q = clip(floor((x - offset) * inv + 0.5), 0, L)``, stored as uint8 (float32 because it
  vectorises twice as wide as float64: ``benchmarks/bench_kernels.py``, fused mask + quantize);
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
from ._select import _minmax_finite, _percentile_values

__all__ = ["quantize", "dequantize", "mask_quantize"]

_NO_MASK = np.ones((1, 1), np.bool_)
_I32_MAX = 0x7FFFFFFF
_I32_MIN = -0x80000000
_EXP = 0x7F800000


@jit
def _minmax(x, keep, use_mask, c0, c1, lo, hi):
    """Per-channel min / max over kept positions; returns the count of kept non-finite values.

    Works on the float32 bits as int32 *keys* (``b ^ ((b >> 31) & 0x7FFFFFFF)``), whose integer
    order is the float order for finite values: integer min / max vectorise without fast-math,
    float ones do not (LLVM must respect NaN). Every operation is cast back to int32 because Numba
    widens int32 arithmetic to int64, which halves the vector width (measured 2x). The mask is
    applied as ``0 / -1`` int32 bit masks, and a non-finite value shows as the sign bit of
    ``(b & EXP) + 0x00800000``; only if one is seen are they counted, for the error message.
    """
    n = x.shape[1] * x.shape[2]
    kf = keep.reshape(-1)
    m32 = np.empty(n, np.int32)
    for i in range(n):
        m32[i] = -np.int32(kf[i]) if use_mask else np.int32(-1)
    i32 = np.int32
    flag = i32(0)
    for c in range(c0, c1):
        xc = x[c].reshape(-1).view(np.int32)
        mn = i32(_I32_MAX)
        mx = i32(_I32_MIN)
        for i in range(n):
            b = xc[i]
            m = m32[i]
            key = i32(b ^ i32(i32(b >> i32(31)) & i32(_I32_MAX)))
            flag = i32(flag | i32(i32(i32(b & i32(_EXP)) + i32(0x00800000)) & m))
            kmin = i32(i32(key & m) | i32(i32(_I32_MAX) & i32(~m)))
            kmax = i32(i32(key & m) | i32(i32(_I32_MIN) & i32(~m)))
            mn = kmin if kmin < mn else mn
            mx = kmax if kmax > mx else mx
        if mn > mx:  # nothing kept in this channel
            lo[c] = np.inf
            hi[c] = -np.inf
        else:
            lo[c] = _key_value(mn)
            hi[c] = _key_value(mx)
    if flag >= 0:
        return 0
    bad = 0
    for c in range(c0, c1):
        xc = x[c].reshape(-1).view(np.int32)
        for i in range(n):
            bad += (m32[i] != 0) and (xc[i] & _EXP) == _EXP
    return bad


@jit
def _key_value(key):
    """Float value (float64) of an int32 key (the key map is its own inverse)."""
    b = np.int64(key) ^ ((np.int64(key) >> 31) & _I32_MAX)
    buf = np.empty(1, np.int32)
    buf[0] = np.int32(b)
    return np.float64(buf.view(np.float32)[0])


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
            vals = buf[:m]
            vlo, vhi, _ = _minmax_finite(vals)
            lo[g] = _percentile_values(vals, 100.0 - pct, vlo, vhi)
            hi[g] = _percentile_values(vals, pct, vlo, vhi)


@jit
def _params(lo, hi, has_values, levels, scale, offset, inv):
    for g in range(lo.size):
        # + 0 turns -0.0 into +0.0: which zero a min returns is not defined
        off = np.float32(lo[g]) + np.float32(0.0) if has_values else np.float32(0.0)
        s = np.float32((hi[g] - np.float64(off)) / levels) if has_values else np.float32(0.0)
        if s == np.inf:  # range wider than float32 / levels: saturate, values beyond clip
            s = np.float32(3.4028234663852886e38)
        if not s > 0.0:
            s = np.float32(1.0)
        offset[g] = off
        scale[g] = s
        inv[g] = np.float32(1.0 / np.float64(s))


@jit
def _quant_pass(x, keep, use_mask, zero_masked, offset, inv, levels, c0, c1, q):
    """q = trunc(clip((x - offset) * inv + 0.5, 0, L)) in float32 (= clip(floor(..), 0, L))."""
    n = x.shape[1] * x.shape[2]
    kf = keep.reshape(-1).view(np.uint8)
    lv = np.float32(levels)
    zero = np.float32(0.0)
    half = np.float32(0.5)
    for c in range(c0, c1):
        g = c if offset.size > 1 else 0
        off = offset[g]
        iv = inv[g]
        xc = x[c].reshape(-1)
        qc = q[c].reshape(-1)
        if use_mask:
            # Branch-free: the code of the raw value and the masked-out code, blended with integer
            # masks (a conditional load is a branch in Numba, mispredicted on ragged masks). A raw
            # masked-out value may be NaN / inf (it is never used): the clamps send NaN to 0.
            i32 = np.int32
            qm = i32(0)
            if zero_masked:
                t0 = (zero - off) * iv + half
                t0 = t0 if t0 > zero else zero
                t0 = t0 if t0 < lv else lv
                qm = i32(t0)
            for i in range(n):
                m = i32(-i32(kf[i]))
                t = (xc[i] - off) * iv + half
                t = t if t > zero else zero
                t = t if t < lv else lv
                qc[i] = i32(i32(i32(t) & m) | i32(qm & i32(~m)))
        else:
            for i in range(n):
                t = (xc[i] - off) * iv + half
                t = zero if t < zero else t
                t = lv if t > lv else t
                qc[i] = np.uint8(t)


@jit
def _quantize(x, keep, use_mask, zero_masked, per_channel, pct, levels, q, scale, offset):
    """Statistics, parameters and the quantization pass; returns the count of non-finite values.

    (Measuring and quantizing channel by channel while it sits in L1 was tried: slower, the
    per-channel call overhead costs more than the second trip through L2 on 64x32x32.)
    """
    nc = x.shape[0]
    lo = np.empty(nc, np.float64)
    hi = np.empty(nc, np.float64)
    n = x.shape[1] * x.shape[2]
    n_kept = keep.sum() if use_mask else n
    has_values = n_kept > 0 or zero_masked
    pad_zero = zero_masked and n_kept < n  # zeroed positions take part in the statistics
    g = nc if per_channel else 1
    inv = np.empty(g, np.float32)
    bad = _minmax(x, keep, use_mask, 0, nc, lo, hi)
    if bad:
        return bad
    if pct >= 0.0:
        _clip_stats(x, keep, use_mask, zero_masked, per_channel, pct, lo, hi)
    else:
        if pad_zero:
            for c in range(nc):
                lo[c] = min(lo[c], 0.0)
                hi[c] = max(hi[c], 0.0)
        if not per_channel:
            lo[0] = lo.min()
            hi[0] = hi.max()
    _params(lo[:g], hi[:g], has_values, levels, scale, offset, inv)
    _quant_pass(x, keep, use_mask, zero_masked, offset, inv, levels, 0, nc, q)
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


@jit
def _requant(q, scale, offset, new_scale, new_offset, levels, out):
    # _dequant then _quant_pass's formula in one pass, each of the four parameter arrays indexed on
    # its own ((1,) or (C,), as the codec holds them): composing the two kernels needed a float
    # buffer and the parameters broadcast to (C,) in Python, more than this kernel's 1.4 us a frame
    nc = q.shape[0]
    n = q.shape[1] * q.shape[2]
    for c in range(nc):
        s = scale[c if scale.size > 1 else 0]
        o = offset[c if offset.size > 1 else 0]
        no = new_offset[c if new_offset.size > 1 else 0]
        inv = np.float32(1.0 / np.float64(new_scale[c if new_scale.size > 1 else 0]))
        qc = q[c].reshape(-1)
        oc = out[c].reshape(-1)
        for i in range(n):
            v = np.floor((o + np.float32(qc[i]) * s - no) * inv + np.float32(0.5))
            if v >= 0 and v <= levels:
                oc[i] = np.uint8(v)
            else:  # NaN counts as below
                oc[i] = levels if v > levels else 0


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


def requantize(
    q: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    new_scale: np.ndarray,
    new_offset: np.ndarray,
    bits: int,
) -> np.ndarray:
    """Codes ``q`` (C x H x W uint8) of ``offset + q * scale`` quantized again with ``new_scale`` /
    ``new_offset`` at ``bits``: ``floor((offset + q * scale - new_offset) / new_scale + 0.5)`` in
    float32 as :func:`quantize` computes it, clipped to ``0 .. 2**bits - 1``. Each of the four
    parameter arrays is (C,) or (1,) float32; a zero or non-finite one gives what float32 gives
    (NaN counts as 0), unchecked: this runs on every predicted frame. What a predicted frame of
    the wire codec is coded against when the quantization changed since its reference (NumPy: 23 us
    a default-bundle frame, 8 x 16 x 16; this kernel 1.4 us, about 5 with its checks)."""
    q = as_array("q", q, (np.uint8,), 3, "C x H x W uint8 codes")
    bits = check_int("bits", bits, 1, 8)
    nc = q.shape[0]
    params = []
    for name, a in (
        ("scale", scale),
        ("offset", offset),
        ("new_scale", new_scale),
        ("new_offset", new_offset),
    ):
        a = as_array(name, a, (np.float32,), 1, "(C,) or (1,) float32")
        if a.shape[0] not in (1, nc):
            raise ValueError(
                f"{name} must have shape (1,) or ({nc},) to match q's {nc} channels, got {a.shape}"
            )
        params.append(a)
    out = np.empty(q.shape, np.uint8)
    _requant(q, *params, (1 << bits) - 1, out)
    return out
