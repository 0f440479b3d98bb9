"""Input validation shared by the public wrappers (plain Python, never jitted).

Each check raises ``TypeError`` (wrong kind or dtype) or ``ValueError`` (wrong rank, shape, range or
non-finite values) with a message naming the argument, the bad value and the fix.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "as_array",
    "check_finite",
    "check_int",
    "check_real",
    "check_mask",
    "check_choice",
]


def as_array(name: str, a: object, dtypes: tuple[type, ...], ndim: int, layout: str) -> np.ndarray:
    """Return ``a`` as a C-contiguous, writable array after checking type, dtype, rank and size.

    C-contiguous and writable so that one compiled specialisation (the one ``warmup`` built) serves
    every call: Numba compiles a new one for strided or read-only arrays. A read-only or strided
    input is copied once; a contiguous writable one is passed through untouched.
    """
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray ({layout}), got {type(a).__name__}")
    dt = a.dtype
    if (
        dt.type in dtypes
        and dt.isnative
        and a.ndim == ndim
        and a.size
        and a.flags.c_contiguous
        and a.flags.writeable
    ):
        return a  # the common case, checked cheaply (this runs once per frame per kernel)
    if dt.type not in dtypes or not dt.isnative:
        allowed = " or ".join(np.dtype(d).name for d in dtypes)
        fix = f"{name}.astype(np.{np.dtype(dtypes[0]).name})"
        raise TypeError(f"{name} must have dtype {allowed}, got {a.dtype}; convert with {fix}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D ({layout}), got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    if not a.flags.c_contiguous or not a.flags.writeable:
        a = np.array(a, order="C", copy=True)
    return a


def check_finite(name: str, bad: int) -> None:
    """Raise if a kernel reported ``bad`` non-finite values in ``name``."""
    if bad:
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); clean it with np.nan_to_num first")


def check_int(name: str, v: object, lo: int, hi: int | None = None) -> int:
    """Return ``v`` as a Python int in ``[lo, hi]`` (``hi=None``: no upper bound); bools are refused."""
    if type(v) is not int:
        if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {v!r} ({type(v).__name__})")
        v = int(v)
    if v < lo or (hi is not None and v > hi):
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be in {rng}, got {v}")
    return v


def check_real(
    name: str, v: object, lo: float | None = None, hi: float | None = None, lo_open: bool = False
) -> float:
    """Return ``v`` as a finite Python float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {v!r} ({type(v).__name__})")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {f}")
    if lo is not None and (f < lo or (lo_open and f == lo)):
        raise ValueError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {f}")
    if hi is not None and f > hi:
        raise ValueError(f"{name} must be <= {hi}, got {f}")
    return f


def check_mask(name: str, mask: object, hw: tuple[int, int], against: str) -> np.ndarray:
    """Return a bool (H, W) mask whose shape equals ``hw`` (the resolution of ``against``)."""
    m = as_array(name, mask, (np.bool_,), 2, "H x W bool")
    if m.shape != tuple(hw):
        raise ValueError(
            f"{name} must have shape {tuple(hw)} (the H x W of {against}), got {m.shape}; "
            f"resize the map to the array's resolution first"
        )
    return m


def check_choice(name: str, v: object, choices: tuple[str, ...]) -> str:
    """Return ``v`` if it is one of ``choices``."""
    if not isinstance(v, str) or v not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {v!r}")
    return v
