"""Order statistics of float32 data without a full sort: a three-round radix select.

A float32 is mapped to an unsigned 32-bit *key* whose integer order is the float order (negative
numbers have all bits flipped, positive ones get the sign bit set; -0.0 is mapped to +0.0 so the two
zeros tie, as they compare equal). Round 1 histograms the top 11 key bits over all values, round 2
gathers the values of the bin holding the wanted rank and histograms the next 11 bits, round 3 the
last 10 bits. Cost: two passes over the data plus passes over one bin; histograms stay in L1.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

_SIGN = 0x80000000
_ALL = 0xFFFFFFFF
_EXP = 0x7F800000


@jit
def _key(u):
    """Order-preserving key (int64 in [0, 2**32)) of the float32 with bits ``u``."""
    v = np.int64(u)
    if v == _SIGN:  # -0.0 ties with +0.0
        return np.int64(_SIGN)
    if v >= _SIGN:
        return v ^ _ALL
    return v | _SIGN


@jit
def _key_to_float(key):
    """Inverse of :func:`_key`, as a float64."""
    if key >= _SIGN:
        bits = key ^ _SIGN
    else:
        bits = key ^ _ALL
    buf = np.empty(1, np.uint32)
    buf[0] = np.uint32(bits)
    return np.float64(buf.view(np.float32)[0])


@jit
def _find_bin(hist, k):
    """Bin holding rank ``k`` (0-based) and the count of values in lower bins."""
    before = 0
    for b in range(hist.size):
        h = hist[b]
        if before + h > k:
            return b, before
        before += h
    return hist.size - 1, before  # unreachable for 0 <= k < total


@jit
def _count_nonfinite_bits(bits):
    bad = 0
    for i in range(bits.size):
        bad += (np.int64(bits[i]) & _EXP) == _EXP
    return bad


@jit
def _kth_key(bits, k):
    """Key of the ``k``-th smallest (0-based) of the float32 values with bits ``bits`` (1-D uint32).

    Returns ``(key, n_less, n_equal)``: the key, how many values are strictly smaller and how many
    are equal to it. Values must be finite (callers check first).
    """
    n = bits.size
    hist = np.zeros(2048, np.int64)
    for i in range(n):
        hist[_key(bits[i]) >> 21] += 1
    b1, before1 = _find_bin(hist, k)
    m = hist[b1]
    cand = np.empty(m, np.int64)
    j = 0
    for i in range(n):
        kk = _key(bits[i])
        if (kk >> 21) == b1:
            cand[j] = kk
            j += 1
    k2 = k - before1
    hist2 = np.zeros(2048, np.int64)
    for i in range(m):
        hist2[(cand[i] >> 10) & 0x7FF] += 1
    b2, before2 = _find_bin(hist2, k2)
    k3 = k2 - before2
    hist3 = np.zeros(1024, np.int64)
    for i in range(m):
        c = cand[i]
        if ((c >> 10) & 0x7FF) == b2:
            hist3[c & 0x3FF] += 1
    b3, before3 = _find_bin(hist3, k3)
    key = (np.int64(b1) << 21) | (np.int64(b2) << 10) | np.int64(b3)
    return key, before1 + before2 + before3, hist3[b3]


@jit
def _min_key_above(bits, key):
    """Smallest key strictly above ``key`` (``key`` itself if there is none)."""
    best = np.int64(_ALL) + 1
    for i in range(bits.size):
        kk = _key(bits[i])
        if kk > key and kk < best:
            best = kk
    if best > _ALL:
        return key
    return best


@jit
def _percentile(bits, pct):
    """Linear-interpolation percentile of finite float32 values (bits, 1-D uint32), as float64.

    With ``n`` values sorted ascending into ``v`` (float64): ``pos = pct / 100 * (n - 1)``,
    ``i = floor(pos)``, ``f = pos - i``, result ``v[i] + (v[min(i + 1, n - 1)] - v[i]) * f``.
    This is NumPy's default ("linear") method; ``kernels.reference.percentile`` is its twin.
    """
    n = bits.size
    pos = pct / 100.0 * (n - 1)
    i = np.int64(np.floor(pos))
    if i > n - 1:
        i = n - 1
    f = pos - i
    key, n_less, n_eq = _kth_key(bits, i)
    lo = _key_to_float(key)
    if f == 0.0 or i + 1 >= n:
        return lo
    if i + 1 < n_less + n_eq:
        hi = lo
    else:
        hi = _key_to_float(_min_key_above(bits, key))
    return lo + (hi - lo) * f
