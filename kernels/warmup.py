"""Compile kernels once, on tiny inputs, so the first frame does not pay for compilation.

The work is a list of named **steps** (:data:`STEPS`), each calling one kernel in one variant
(dtype, mode, option). :func:`warmup` runs the steps it is given (all by default) and reports each
one to an optional ``progress(done, total, name, seconds)`` callback, so a caller can say how far
a cold compilation is. The edge runtime picks the steps its configuration uses
(``edge_runtime.warmup.steps_for``): a cold start then compiles a third of the kernels instead
of all of them (``benchmarks/startup.py``).

With a populated Numba cache a step only loads machine code from disk.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

from .fuse import weighted_sum
from .geometry import resize_bilinear, shift_map, warp_flow
from .quantize import dequantize, mask_quantize, quantize, requantize
from .reduce import FEATURE_MODES, IMAGE_MODES, reduce_features, reduce_image
from .threshold import dilate_mask, threshold_keep_ratio, threshold_percentile, threshold_value

__all__ = ["STEPS", "warmup"]

_RNG = np.random.default_rng(0)
_IMP = _RNG.random((4, 5), dtype=np.float32)
_KEEP = _IMP > 0.5
_FEAT = _RNG.standard_normal((2, 4, 5), dtype=np.float32)
_IMG = {
    "uint8": (_RNG.random((4, 5, 3)) * 255).astype(np.uint8),
    "float32": _RNG.random((4, 5, 3)).astype(np.float32),
}


def _quantize_all(masked: bool) -> None:
    for per_channel in (True, False):
        for clip in (None, 99.0):
            if masked:
                q, s, o = quantize(_FEAT, 8, per_channel=per_channel, clip_percentile=clip, mask=_KEEP)
                mask_quantize(_FEAT, _KEEP, 8, per_channel=per_channel, clip_percentile=clip)
            else:
                q, s, o = quantize(_FEAT, 4, per_channel=per_channel, clip_percentile=clip)


def _dequantize() -> None:
    q, s, o = quantize(_FEAT, 8)
    dequantize(q, s, o)
    dequantize(q, s, o, _KEEP)
    requantize(q, s, o, s * 2, o, 3)


def _coder() -> None:
    from . import coder  # the arith coder; the wire codec imports it only when it is used

    sym = (np.arange(2 * 4 * 5, dtype=np.uint8) % 16).reshape(2, 4, 5)
    sym[:, ~_KEEP] = 0
    for keep in (_KEEP, None):
        buf = coder.encode_map(sym, keep, 4)
        coder.decode_map(buf, sym.shape, 4, keep is not None)


def _tcoder() -> None:
    from . import tcoder  # the temporal coder (format version 3); imported only when it is used

    sym = (np.arange(2 * 4 * 5, dtype=np.uint8) % 4).reshape(2, 4, 5)
    sym[:, ~_KEEP] = 0
    buf, state = tcoder.encode_predicted(sym, _KEEP, 2, None, None)
    tcoder.decode_predicted(buf, sym.shape, 2, True, None, None)
    buf, _ = tcoder.encode_predicted(sym, _KEEP, 2, sym, _KEEP, state=state)
    tcoder.decode_predicted(buf, sym.shape, 2, True, sym, _KEEP, state=state)


#: Every warm-up step by name: one kernel in one variant.
STEPS: dict[str, Callable[[], object]] = {
    "threshold.value": lambda: threshold_value(_IMP, 0.5),
    "threshold.keep_ratio": lambda: threshold_keep_ratio(_IMP, 0.3),
    "threshold.percentile": lambda: threshold_percentile(_IMP, 70.0),
    "dilate": lambda: dilate_mask(_KEEP, 1),
    **{
        f"reduce_image.{mode}.{dt}": (lambda mode=mode, dt=dt: reduce_image(_IMG[dt], _KEEP, mode))
        for dt in ("uint8", "float32")
        for mode in IMAGE_MODES
    },
    **{f"reduce_features.{m}": (lambda m=m: reduce_features(_FEAT, _KEEP, m)) for m in FEATURE_MODES},
    "resize": lambda: resize_bilinear(_IMP, 3, 7),
    "warp": lambda: warp_flow(_IMP, np.zeros((4, 5, 2), np.float32)),
    "shift": lambda: shift_map(_IMP, 1, -0.5),
    "quantize.masked": lambda: _quantize_all(True),
    "quantize.dense": lambda: _quantize_all(False),
    "dequantize": _dequantize,
    "fuse": lambda: weighted_sum([_IMP, _FEAT], [0.5, 0.5], (6, 6)),
    "coder": _coder,
    "tcoder": _tcoder,
}

#: What a step that is not given to warmup() defaults to: all but the arith coders, which used to be
#: compiled on the first frame (the wire codec imports them lazily); callers that use them name them.
_DEFAULT = tuple(s for s in STEPS if s not in ("coder", "tcoder"))


def warmup(
    steps: Iterable[str] | None = None,
    progress: Callable[[int, int, str, float], None] | None = None,
) -> float:
    """Run the warm-up ``steps`` (names from :data:`STEPS`; default: every kernel but the arith
    coders) and return the seconds it took. ``progress(done, total, name, seconds)`` is called
    after each step."""
    names = list(_DEFAULT if steps is None else steps)
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ValueError(f"unknown warm-up steps {unknown}; known: {', '.join(STEPS)}")
    t0 = time.perf_counter()
    for i, name in enumerate(names, 1):
        s0 = time.perf_counter()
        STEPS[name]()
        if progress is not None:
            progress(i, len(names), name, time.perf_counter() - s0)
    return time.perf_counter() - t0
