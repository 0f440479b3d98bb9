"""Temporal context-adaptive range coder: a quantized map coded against a predicted one (Numba).

The wire codec's predicted frames (format version 3, ``docs/wire.md``). Inputs as for
:mod:`kernels.coder` (``sym`` uint8 (C, H, W) below ``2**bits``, an optional keep-mask (H, W)) plus
the **prediction**: the symbols ``pred`` (C, H, W) of the reference frame mapped to this frame's
quantization, and the reference's keep-mask ``prev_keep`` (H, W). One range-coder stream, the
primitives of :mod:`kernels.coder` (16-bit two-speed probabilities, LZMA-style carries):

1. the keep-mask, raster order: context = the four causal neighbours (16) x the reference's mask at
   the position (2) x whether the reference kept the position below or to the right (2): 64;
2. for each position both frames keep (a *predicted* position), raster order: **unchanged**
   (every channel's symbol equals the prediction), context = the left and upper neighbours'
   state (not predicted / unchanged / changed: 3 x 3);
3. per channel, per kept position in raster order:

   - at an unchanged position: nothing (the prediction);
   - at a changed predicted position: a **skip** decision
     ``x == pred``, context = skip state of the left and upper neighbours (not predicted / skipped
     / changed: 3 x 3) x ``min(pred, 2)``: 27 contexts. A changed symbol is then coded as
     ``v = zigzag(x - pred) - 1`` (never negative: ``x != pred``), Exp-Golomb binarised as in
     :mod:`kernels.coder` with contexts (``min(pred, 3)``, j) and (``min(pred, 3)``, k, bit);
   - where it did not (a position that became important): the intra coding of :mod:`kernels.coder`
     (spatial prediction, zero flag, Exp-Golomb), with its own context set.

``variant`` turns parts off, for measuring which contexts pay (``benchmarks/rate_stream.py``):
bit 0 symbol prediction (off: every position intra-coded), bit 1 the reference mask in the mask
contexts, bit 2 the neighbours' skip state in the skip contexts, bit 3 the predicted value in the
skip contexts, bit 4 the per-position unchanged decisions. The wire always uses :data:`FULL`. Encoder and decoder are one function, so they
cannot drift apart; the decoder reads exactly the bytes the encoder wrote and its work is bounded
by the declared shape.

The probability state **carries over** between frames, the way a video codec adapts its entropy
coder across frames: a predicted frame starts from the state its reference ended in (both sides
hold it: the reference is a frame the receiver decoded), so a frame of a few hundred decisions does
not pay to learn its statistics from scratch. A frame coded alone starts from :func:`new_state`.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .coder import (
    _N_CTX,
    _N_ZCTX,
    _PROB_ONE,
    CoderError,
    _bit,
    _bit_length,
    _mask_ctx,
    _predict,
    _shift_low,
    _unzigzag,
    _zigzag,
)

__all__ = ["FULL", "N_STATE", "new_state", "encode_predicted", "decode_predicted", "max_predicted_size"]

FULL = 31
_V_PRED, _V_PMASK, _V_NBSKIP, _V_PVAL, _V_POS = 1, 2, 4, 8, 16
_V_CHAN, _V_TRIM = 32, 64
V5 = FULL | _V_CHAN | _V_TRIM  # format version 5: per-channel intra contexts, trimmed stream
CARRY = V5 & ~_V_PRED  # version 5, layout CARRY: no symbol prediction, only the carried state
_ALL = 127
_GROUPS = 8  # channel groups of the per-channel contexts: channel c uses group min(c, 7)


# context sets, in the order they sit in a probability state (2 x N_STATE: fast, slow estimates)
_SIZES = (64, 9, 27, 4 * 8, 4 * 9 * 8, _N_ZCTX, _N_CTX * 8, _N_CTX * 9 * 8,
          _GROUPS * _N_ZCTX * 3, _GROUPS * _N_CTX * 8)  # fmt: skip
_OFF = tuple(int(sum(_SIZES[:i])) for i in range(len(_SIZES) + 1))
N_STATE = _OFF[-1]


def new_state() -> np.ndarray:
    """The probability state a frame coded alone starts from (every estimate at 1/2).

    uint16 (2, N_STATE): the estimates stay within 15..65521. It used to be int64, which each
    receiver kept as uint16 per reference and widened again per frame: with the copy the coder
    makes, three passes over 39 KB a message: with this stop's other decoder trims, the receiver's
    default message went from 83 to 79 us (benchmarks/receiver.py's messages, back to back)."""
    return np.full((2, N_STATE), _PROB_ONE // 2, np.uint16)


@jit
def _code(enc, buf, sym, keep, pred, prev_keep, code_mask, bits, variant, P):
    """Encode (``enc``: returns the byte count) or decode into ``sym`` / ``keep`` (returns 0 on
    success, -1 bad start, -2 invariant broken, -3 length mismatch)."""
    C, H, W = sym.shape
    n = buf.shape[0]
    G = _N_ZCTX if variant & _V_CHAN else 0
    trim = (variant & _V_TRIM) != 0
    # the coder state (see _bit): lo, rg, ca, cs, op
    lo, rg, ca, cs, op = np.int64(0), np.int64(0xFFFFFFFF), np.int64(0), np.int64(0), np.int64(0)
    if enc:
        cs = np.int64(1)
    elif trim:  # no leading zero byte; bytes past the end read as zeros (the encoder cut them)
        for i in range(4):
            lo = (lo << 8) | (np.int64(buf[i]) if i < n else 0)
        ca = np.int64(4)
    else:
        if n < 5 or buf[0] != 0:
            return -1
        for i in range(1, 5):
            lo = (lo << 8) | np.int64(buf[i])
        ca = np.int64(5)
    o = _OFF  # where each context set starts in P
    mo, po, so, tko, tno, zo, ko, no = o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]
    if variant & _V_CHAN:  # the intra zero flag and Exp-Golomb prefix, per channel group
        zo, ko = o[8], o[9]
    use_pred = (variant & _V_PRED) != 0
    if code_mask:
        for h in range(H):
            for w in range(W):
                ctx = _mask_ctx(keep, h, w, W)
                if variant & _V_PMASK:
                    if prev_keep[h, w]:
                        ctx += 16
                    if (h + 1 < H and prev_keep[h + 1, w]) or (w + 1 < W and prev_keep[h, w + 1]):
                        ctx += 32
                b, lo, rg, ca, cs, op = _bit(
                    enc, lo, rg, ca, cs, op, buf, P, mo + ctx, 1 if keep[h, w] else 0
                )
                if not enc:
                    keep[h, w] = b == 1
            if not enc and (lo >= rg or (ca > n and not trim)):
                return -2
    pos = np.zeros((H, W), np.int64)  # 0: not predicted, 1: unchanged, 2: changed
    if use_pred and variant & _V_POS:
        for h in range(H):
            for w in range(W):
                if not (keep[h, w] and prev_keep[h, w]):
                    continue
                same = 1
                if enc:
                    for c in range(C):
                        if sym[c, h, w] != pred[c, h, w]:
                            same = 0
                            break
                ctx = (pos[h, w - 1] if w > 0 else 0) * 3 + (pos[h - 1, w] if h > 0 else 0)
                b, lo, rg, ca, cs, op = _bit(enc, lo, rg, ca, cs, op, buf, P, po + ctx, same)
                pos[h, w] = 1 if b == 1 else 2
            if not enc and (lo >= rg or (ca > n and not trim)):
                return -2
    state = np.zeros((H, W), np.int64)  # 0: not predicted, 1: skipped, 2: changed (this channel)
    for c in range(C):
        last = 0
        state[:] = 0
        for h in range(H):
            for w in range(W):
                if not keep[h, w]:
                    continue
                x = np.int64(sym[c, h, w]) if enc else np.int64(0)
                if pos[h, w] == 1:
                    x = np.int64(pred[c, h, w])
                    state[h, w] = 1
                elif use_pred and prev_keep[h, w]:
                    p = np.int64(pred[c, h, w])
                    sctx = 0
                    if variant & _V_NBSKIP:
                        sa = state[h, w - 1] if w > 0 else 0
                        sb = state[h - 1, w] if h > 0 else 0
                        sctx = sa * 3 + sb
                    if variant & _V_PVAL:
                        sctx = sctx * 3 + min(p, 2)
                    same, lo, rg, ca, cs, op = _bit(
                        enc, lo, rg, ca, cs, op, buf, P, so + sctx, 1 if x == p else 0
                    )
                    if same:
                        x = p
                        state[h, w] = 1
                    else:
                        state[h, w] = 2
                        v = _zigzag(x - p, bits) - 1 if enc else 0
                        pc = min(p, 3)
                        k = _bit_length(v) if enc else 0
                        kk = 0
                        for j in range(bits):
                            b, lo, rg, ca, cs, op = _bit(
                                enc, lo, rg, ca, cs, op, buf, P, tko + pc * 8 + j, 1 if k > j else 0
                            )
                            if b == 0:
                                break
                            kk += 1
                        if not enc:
                            v = 1 if kk >= 1 else 0
                        mbase = (pc * 9 + kk) * 8
                        for i in range(kk - 1):
                            b, lo, rg, ca, cs, op = _bit(
                                enc, lo, rg, ca, cs, op, buf, P, tno + mbase + i, (v >> (kk - 2 - i)) & 1
                            )
                            if not enc:
                                v = (v << 1) | b
                        if not enc:
                            if v + 1 >= (1 << bits):
                                return -2
                            x = _unzigzag(v + 1, p, bits)
                            if x == p:
                                return -2
                else:
                    pr, zctx, act = _predict(sym, keep, c, h, w, last)
                    g = min(c, _GROUPS - 1) if G else 0
                    if G:
                        zctx = zctx * 3 + (0 if c == 0 else 1 if sym[c - 1, h, w] == 0 else 2)
                    z, lo, rg, ca, cs, op = _bit(
                        enc, lo, rg, ca, cs, op, buf, P, zo + g * _N_ZCTX * 3 + zctx, 1 if x == 0 else 0
                    )
                    if z == 0:
                        ctx = g * _N_CTX + act * 2 + (0 if pr <= 1 else 1)
                        if enc:
                            v = x - 1 if pr <= 1 else _zigzag(x - pr, bits)
                        else:
                            v = 0
                        k = _bit_length(v) if enc else 0
                        kk = 0
                        for j in range(bits):
                            b, lo, rg, ca, cs, op = _bit(
                                enc, lo, rg, ca, cs, op, buf, P, ko + ctx * 8 + j, 1 if k > j else 0
                            )
                            if b == 0:
                                break
                            kk += 1
                        if not enc:
                            v = 1 if kk >= 1 else 0
                        mbase = ((ctx - g * _N_CTX) * 9 + kk) * 8
                        for i in range(kk - 1):
                            b, lo, rg, ca, cs, op = _bit(
                                enc, lo, rg, ca, cs, op, buf, P, no + mbase + i, (v >> (kk - 2 - i)) & 1
                            )
                            if not enc:
                                v = (v << 1) | b
                        if not enc:
                            if pr <= 1:
                                x = v + 1
                                if x >= (1 << bits):
                                    return -2
                            else:
                                x = _unzigzag(v, pr, bits)
                    else:
                        x = 0
                if not enc:
                    sym[c, h, w] = x
                last = x
            if not enc and (lo >= rg or (ca > n and not trim)):
                return -2
    if enc:
        if trim:  # end on the value of [low, low + range) with the most trailing zero bits
            for k in range(32, -1, -1):
                v = (lo + (np.int64(1) << k) - 1) & ~((np.int64(1) << k) - 1)
                if v < lo + rg:
                    lo = v
                    break
        for _ in range(5):
            lo, ca, cs, op = _shift_low(lo, ca, cs, op, buf)
        return op
    if trim:  # every byte read, and the last one not a zero the encoder would have cut
        if n > ca or (n > 0 and buf[n - 1] == 0):
            return -3
        return 0
    if ca != n:
        return -3
    return 0


def max_predicted_size(shape: tuple[int, int, int], bits: int) -> int:
    """Upper bound on the coded size in bytes of a predicted map of ``shape`` at ``bits`` bits."""
    C, H, W = shape
    decisions = H * W + C * H * W * (2 * bits + 2)
    return 2 * decisions + 16  # one decision costs < 10 bits (see kernels.coder.max_encoded_size)


def _check(sym, keep, pred, prev_keep, bits, variant, no_ref=False):
    if not isinstance(sym, np.ndarray) or sym.dtype != np.uint8 or sym.ndim != 3:
        raise TypeError(f"sym must be a uint8 array of rank 3, got {getattr(sym, 'dtype', type(sym))}")
    if not (isinstance(bits, int) and 1 <= bits <= 8):
        raise ValueError(f"bits must be an int in 1..8, got {bits!r}")
    if not (isinstance(variant, int) and 0 <= variant <= _ALL):
        raise ValueError(f"variant must be an int in 0..{_ALL}, got {variant!r}")
    C, H, W = sym.shape
    if not no_ref:  # else _no_ref_arrays: all zero, nothing to check
        if not isinstance(pred, np.ndarray) or pred.dtype != np.uint8 or pred.shape != sym.shape:
            raise ValueError(f"pred must be uint8 of shape {sym.shape}, got {getattr(pred, 'shape', pred)}")
        if pred.size and int(pred.max()) >= (1 << bits):
            raise ValueError(f"predicted symbol {int(pred.max())} does not fit in {bits} bits")
    for name, m in (("keep", keep), ("prev_keep", prev_keep)):
        if m is not None and (not isinstance(m, np.ndarray) or m.dtype != np.bool_ or m.shape != (H, W)):
            raise ValueError(f"{name} must be a bool array of shape {(H, W)}, got {getattr(m, 'shape', m)}")


def _state(state):
    if state is None:
        return new_state()
    if not isinstance(state, np.ndarray) or state.dtype != np.uint16 or state.shape != (2, N_STATE):
        raise ValueError(
            f"state must be a uint16 array of shape (2, {N_STATE}), got {getattr(state, 'shape', state)}"
        )
    return state.copy()


def encode_predicted(
    sym: np.ndarray,
    keep: np.ndarray | None,
    bits: int,
    pred: np.ndarray | None,
    prev_keep: np.ndarray | None,
    variant: int = FULL,
    state: np.ndarray | None = None,
) -> tuple[bytes, np.ndarray]:
    """Code ``sym`` against ``pred`` (``prev_keep``: the positions the reference kept; None: all).
    ``pred=None``: no reference (every position coded alone). ``keep=None`` keeps everything and
    codes no mask; masked positions of ``sym`` must be zero. ``state``: the probability state to
    start from (the reference's, or None: :func:`new_state`). Returns the bytes and the state the
    coder ended in (the next frame predicted from this one starts there)."""
    sym, pred, prev_keep, no_ref = _no_ref(sym, pred, prev_keep)
    _check(sym, keep, pred, prev_keep, bits, variant, no_ref)
    C, H, W = sym.shape
    if sym.size and int(sym.max()) >= (1 << bits):
        raise ValueError(f"symbol {int(sym.max())} does not fit in {bits} bits")
    code_mask = keep is not None
    keep = np.ones((H, W), np.bool_) if keep is None else np.ascontiguousarray(keep)
    prev_keep = np.ones((H, W), np.bool_) if prev_keep is None else np.ascontiguousarray(prev_keep)
    out = np.empty(max_predicted_size(sym.shape, bits), np.uint8)
    P = _state(state)
    n = _code(True, out, np.ascontiguousarray(sym), keep, np.ascontiguousarray(pred), prev_keep,
              code_mask, bits, variant, P)  # fmt: skip
    if variant & _V_TRIM:  # the range coder's first byte is always 0; trailing zeros read back as 0
        return out[1:n].tobytes().rstrip(b"\0"), P
    return out[:n].tobytes(), P


def _no_ref(sym, pred, prev_keep):
    """``(sym, pred, prev_keep, coded alone)``: without ``pred``, the shared zero pair."""
    if pred is None and isinstance(sym, np.ndarray) and sym.ndim == 3:
        return (sym, *_no_ref_arrays(sym.shape), True)
    return sym, pred, prev_keep, False


_NO_REF: dict = {}


def _no_ref_arrays(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """What a frame coded alone is predicted from: zero symbols, nothing kept. One pair per shape
    (a few shapes kept), made once: the coder only reads them. Allocating and range-checking them
    per message took 2.3 us of the receiver's 66-80 (benchmarks/receiver.py's default messages,
    both ways alternated in one process, paired median; sequential runs are too noisy to show it)."""
    pair = _NO_REF.get(shape)
    if pair is None:
        if len(_NO_REF) >= 16:  # shapes come from messages: bounded whatever they declare
            _NO_REF.clear()
        pair = _NO_REF[shape] = (np.zeros(shape, np.uint8), np.zeros(shape[1:], np.bool_))
    return pair


def decode_predicted(
    buf: bytes,
    shape: tuple[int, int, int],
    bits: int,
    has_mask: bool,
    pred: np.ndarray | None,
    prev_keep: np.ndarray | None,
    variant: int = FULL,
    state: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Decode a stream written by :func:`encode_predicted` with the same ``pred`` / ``prev_keep`` /
    ``state``: (symbols, keep-mask, end state); raises :class:`~kernels.coder.CoderError` when the
    stream is corrupt."""
    C, H, W = shape
    sym = np.zeros((C, H, W), np.uint8)
    sym, pred, prev_keep, no_ref = _no_ref(sym, pred, prev_keep)
    _check(sym, None, pred, prev_keep, bits, variant, no_ref)
    keep = np.zeros((H, W), np.bool_) if has_mask else np.ones((H, W), np.bool_)
    prev_keep = np.ones((H, W), np.bool_) if prev_keep is None else np.ascontiguousarray(prev_keep)
    arr = np.frombuffer(buf, np.uint8).copy()  # one typed signature for both directions (writable)
    P = _state(state)
    err = _code(False, arr, sym, keep, np.ascontiguousarray(pred), prev_keep, has_mask, bits, variant, P)
    if err == -1:
        raise CoderError("arith stream does not start with a zero byte or is shorter than 5 bytes")
    if err == -2:
        raise CoderError("arith stream is corrupt (range-coder invariant broken or stream too short)")
    if err == -3:
        raise CoderError("arith stream length does not match the coded data (bytes left over)")
    return sym, (keep if has_mask else None), P
