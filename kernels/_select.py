"""Order statistics of float32 data without a full sort.

:func:`_value_select` (the entry point): after one vectorised min / max pass, rounds of a
histogram with bins spaced linearly between the current min and max keep only the bin holding
the wanted rank, until at most ``_SMALL`` values remain, which are sorted. Linear bins split
importance maps (values crowded in a few binades) far better than the top bits of the float,
which put e.g. a quarter of a uniform [0, 1) map into one bin (``benchmarks/bench_kernels.py``,
threshold_keep_ratio: about 2x faster than the radix select alone). A round that keeps more than
half of its input hands over to the radix select, so no distribution makes it quadratic.

:func:`_kth_key` is the three-round radix select:

A float32 is mapped to an unsigned 32-bit *key* whose integer order is the float order (negative
numbers have all bits flipped, positive ones get the sign bit set; -0.0 is mapped to +0.0 so the two
zeros tie, as they compare equal). Round 1 histograms the top 11 key bits over all values, round 2
gathers the values of the bin holding the wanted rank and histograms the next 11 bits, round 3 the
last 10 bits. Cost: two passes over the data plus passes over one bin; histograms stay in L1.

Keys and indices are uint64 on purpose: Numba checks every signed index for wrap-around (a
negative index counts from the end), unsigned ones it does not.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit

_U = np.uint64
_SIGN = _U(0x80000000)
_ALL = _U(0xFFFFFFFF)
_EXPF = _U(0x7F800000)
_NONE = _U(1 << 40)  # "no key": above every 32-bit key


@jit(inline=True)
def _key(u):
    """Order-preserving key (uint64 in [0, 2**32)) of the float32 with bits ``u``."""
    v = _U(u)
    if v == _SIGN:  # -0.0 ties with +0.0
        v = _U(0)
    if v >= _SIGN:
        return v ^ _ALL
    return v | _SIGN


@jit
def _key_to_float(key):
    """Inverse of :func:`_key`, as a float64."""
    bits = key ^ _SIGN if key >= _SIGN else key ^ _ALL
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
def _histogram_top(bits):
    """Histogram of the top 11 key bits; returns ``(hist, n_nonfinite)``.

    Four sub-histograms, so runs of equal bins (smooth maps) do not chain every increment through
    one memory cell.
    """
    n = bits.size
    sub = np.zeros((4, 2048), np.int64)
    bad = 0
    sh = _U(21)
    n4 = n - n % 4
    for i in range(0, n4, 4):
        u0 = _U(bits[i])
        u1 = _U(bits[i + 1])
        u2 = _U(bits[i + 2])
        u3 = _U(bits[i + 3])
        sub[0, _key(u0) >> sh] += 1
        sub[1, _key(u1) >> sh] += 1
        sub[2, _key(u2) >> sh] += 1
        sub[3, _key(u3) >> sh] += 1
        bad += (
            ((u0 & _EXPF) == _EXPF)
            + ((u1 & _EXPF) == _EXPF)
            + ((u2 & _EXPF) == _EXPF)
            + ((u3 & _EXPF) == _EXPF)
        )
    for i in range(n4, n):
        u = _U(bits[i])
        sub[0, _key(u) >> sh] += 1
        bad += (u & _EXPF) == _EXPF
    hist = sub[0] + sub[1] + sub[2] + sub[3]
    return hist, bad


@jit
def _kth_key(bits, k, hist):
    """Key of the ``k``-th smallest (0-based) of the float32 values with bits ``bits`` (1-D uint32).

    ``hist`` is the top-bits histogram from :func:`_histogram_top`. Returns ``(key, n_less,
    n_equal, next_key)``: the key, how many values are strictly smaller, how many are equal, and
    the smallest key above it if that lies in the same top bin (else ``_NONE``). Values must be
    finite (callers check first).
    """
    n = bits.size
    sh = _U(21)
    b1, before1 = _find_bin(hist, k)
    ub1 = _U(b1)
    m = hist[b1]
    cand = np.empty(m, np.uint64)
    j = 0
    for i in range(n):
        kk = _key(bits[i])
        if (kk >> sh) == ub1:
            cand[j] = kk
            j += 1
    k2 = k - before1
    hist2 = np.zeros(2048, np.int64)
    mid = _U(0x7FF)
    s10 = _U(10)
    for i in range(m):
        hist2[(cand[i] >> s10) & mid] += 1
    b2, before2 = _find_bin(hist2, k2)
    ub2 = _U(b2)
    k3 = k2 - before2
    hist3 = np.zeros(1024, np.int64)
    low = _U(0x3FF)
    for i in range(m):
        c = cand[i]
        if ((c >> s10) & mid) == ub2:
            hist3[c & low] += 1
    b3, before3 = _find_bin(hist3, k3)
    key = (ub1 << sh) | (ub2 << s10) | _U(b3)
    nxt = _NONE
    for i in range(m):
        c = cand[i]
        if c > key and c < nxt:
            nxt = c
    return key, before1 + before2 + before3, hist3[b3], nxt


_I32_MAX = 0x7FFFFFFF
_I32_MIN = -0x80000000
_EXP32 = 0x7F800000
_NBINS = 2048
_SMALL = 64  # candidate sets up to this size are sorted instead of radix-selected


@jit
def _minmax_finite(vals):
    """``(min, max, n_nonfinite)`` of a 1-D float32 array, on int32 keys of the bits (vectorises)."""
    xb = vals.view(np.int32)
    mn = np.int32(_I32_MAX)
    mx = np.int32(_I32_MIN)
    bad = 0
    for i in range(xb.size):
        b = xb[i]
        key = b ^ ((b >> np.int32(31)) & np.int32(_I32_MAX))
        bad += (b & np.int32(_EXP32)) == np.int32(_EXP32)
        mn = key if key < mn else mn
        mx = key if key > mx else mx
    buf = np.empty(2, np.int32)
    buf[0] = mn ^ ((mn >> np.int32(31)) & np.int32(_I32_MAX))
    buf[1] = mx ^ ((mx >> np.int32(31)) & np.int32(_I32_MAX))
    f = buf.view(np.float32)
    return np.float64(f[0]), np.float64(f[1]), bad


@jit(inline=True)
def _bin(v, lo, sc, nb):
    b = np.int64((np.float64(v) - lo) * sc)
    return b if b < nb else nb - 1


@jit
def _small_select(arr, k):
    """``(value, n_less, n_equal, next_value or NaN)`` by sorting a small array."""
    srt = np.sort(arr) + np.float32(0.0)  # -0.0 -> +0.0: the zeros tie
    m = srt.size
    first = k
    while first > 0 and srt[first - 1] == srt[k]:
        first -= 1
    last = k
    while last + 1 < m and srt[last + 1] == srt[k]:
        last += 1
    nxt = np.float64(srt[last + 1]) if last + 1 < m else np.nan
    return np.float64(srt[k]), first, last - first + 1, nxt


@jit
def _narrow(arr, k, lo, hi):
    """One round: bin ``arr`` linearly between ``lo`` and ``hi``; return the bin holding rank ``k``
    as ``(candidates, count below the bin)``."""
    n = arr.size
    # bins: enough to split the data finely, few enough that zeroing them is cheap for small n
    nb = min(_NBINS, max(16, n // 16))
    sc = nb / (hi - lo)
    # Bin numbers first, in a vectorised loop; the scalar counting and gathering loops then only
    # load a uint16.
    bins = np.empty(n, np.uint16)
    for i in range(n):
        bins[i] = _bin(arr[i], lo, sc, nb)
    sub = np.zeros((4, nb), np.int64)
    n4 = n - n % 4
    for i in range(0, n4, 4):
        sub[0, bins[i]] += 1
        sub[1, bins[i + 1]] += 1
        sub[2, bins[i + 2]] += 1
        sub[3, bins[i + 3]] += 1
    for i in range(n4, n):
        sub[0, bins[i]] += 1
    hist = sub[0] + sub[1] + sub[2] + sub[3]
    b, before = _find_bin(hist, k)
    cand = np.empty(hist[b], np.float32)
    j = 0
    ub = np.uint16(b)
    for i in range(n):
        if bins[i] == ub:
            cand[j] = arr[i]
            j += 1
    return cand, before


@jit
def _value_select(vals, k, lo, hi, want_next):
    """``k``-th smallest (0-based) of finite float32 ``vals`` whose min / max are ``lo`` / ``hi``.

    Returns ``(value, n_less, n_equal, next_value)`` as float64; ``next_value`` is the smallest
    value above (``value`` itself if there is none), computed only if ``want_next``.

    Rounds of linear binning between the current min and max shrink the candidates until at most
    ``_SMALL`` are left, which are sorted; a round that keeps more than half (values spread over
    many binades) hands over to the radix select. Equal values always share a bin, so ``n_equal``
    is exact.
    """
    n = vals.size
    if lo == hi:
        return lo, 0, n, lo
    arr = vals
    kk = k
    below = 0
    clo = lo
    chi = hi
    nxt = np.nan
    while True:
        m = arr.size
        if clo == chi:
            value = clo
            n_less = below
            n_eq = m
            break
        if m <= _SMALL:
            value, nl, n_eq, nxt = _small_select(arr, kk)
            n_less = below + nl
            break
        cand, before = _narrow(arr, kk, clo, chi)
        if 2 * cand.size > m:
            cbits = arr.view(np.uint32)
            chist, _ = _histogram_top(cbits)
            key, nl, n_eq, nkey = _kth_key(cbits, kk, chist)
            value = _key_to_float(key)
            n_less = below + nl
            if nkey != _NONE:
                nxt = _key_to_float(nkey)
            break
        below += before
        kk -= before
        arr = cand
        clo, chi, _ = _minmax_finite(arr)
    if not want_next or nxt == nxt:  # nxt == nxt: found (not NaN)
        return value, n_less, n_eq, (nxt if nxt == nxt else value)
    if n_less + n_eq >= n:  # nothing above
        return value, n_less, n_eq, value
    nv = hi  # the smallest value above, by one pass
    for i in range(n):
        v = np.float64(vals[i])
        if v > value and v < nv:
            nv = v
    return value, n_less, n_eq, nv


@jit
def _percentile_values(vals, pct, lo, hi):
    """Linear-interpolation percentile of finite float32 ``vals`` with min / max ``lo`` / ``hi``.

    With ``n`` values sorted ascending into ``v`` (float64): ``pos = pct / 100 * (n - 1)``,
    ``i = floor(pos)``, ``f = pos - i``, result ``v[i] + (v[min(i + 1, n - 1)] - v[i]) * f``.
    This is NumPy's default ("linear") method; ``kernels.reference.percentile`` is its twin.
    """
    n = vals.size
    pos = pct / 100.0 * (n - 1)
    i = np.int64(np.floor(pos))
    if i > n - 1:
        i = n - 1
    f = pos - i
    v, n_less, n_eq, nxt = _value_select(vals, i, lo, hi, f != 0.0 and i + 1 < n)
    if f == 0.0 or i + 1 >= n:
        return v
    w = v if i + 1 < n_less + n_eq else nxt
    return v + (w - v) * f
