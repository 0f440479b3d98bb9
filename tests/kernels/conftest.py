"""Shared strategies for the kernel tests; hypothesis budgets are small (2 shared cores)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

settings.register_profile(
    "kernels", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("kernels")

small_side = st.integers(1, 17)

# Few distinct values (ties, constant maps, -0.0) or a wide float32 range.
_tie_values = st.sampled_from([0.0, -0.0, 0.25, 0.5, 1.0, -3.0])
_wide_values = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def maps(draw, h=small_side, w=small_side, elements=None):
    """2-D float32 maps: random shape, tied or wide values, sometimes constant."""
    shape = (draw(h), draw(w))
    kind = draw(st.sampled_from(["ties", "wide", "unit", "constant"]))
    if kind == "constant":
        return np.full(shape, draw(_wide_values), np.float32)
    el = (
        elements
        if elements is not None
        else {
            "ties": _tie_values,
            "wide": _wide_values,
            "unit": st.floats(0, 1, width=32),
        }[kind]
    )
    return draw(hnp.arrays(np.float32, shape, elements=el))


@st.composite
def masks(draw, shape):
    kind = draw(st.sampled_from(["random", "all", "none"]))
    if kind == "all":
        return np.ones(shape, bool)
    if kind == "none":
        return np.zeros(shape, bool)
    return draw(hnp.arrays(np.bool_, shape))


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)
