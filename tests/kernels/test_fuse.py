from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_runtime import kernels
from edge_runtime.kernels import reference as ref

from .conftest import small_side

_el = st.floats(-10, 10, width=32)


@st.composite
def layer(draw):
    h, w = draw(small_side), draw(small_side)
    if draw(st.booleans()):
        return draw(hnp.arrays(np.float32, (draw(st.integers(1, 4)), h, w), elements=_el))
    return draw(hnp.arrays(np.float32, (h, w), elements=_el))


@given(st.lists(layer(), min_size=1, max_size=3), st.data(), small_side, small_side)
def test_weighted_sum_matches_reference(layers, data, oh, ow):
    weights = data.draw(st.lists(st.floats(-2, 2), min_size=len(layers), max_size=len(layers)))
    got = kernels.weighted_sum(layers, weights, (oh, ow))
    np.testing.assert_array_equal(got, ref.weighted_sum(layers, weights, (oh, ow)))
    assert got.dtype == np.float32 and got.shape == (oh, ow)
    assert got.min() >= 0.0 and got.max() <= 1.0


def test_weighted_sum_is_normalised_and_reduces_channels_by_mean_abs():
    a = np.zeros((3, 4, 4), np.float32)
    a[0, 0, 0] = -6.0
    a[1, 0, 0] = 3.0
    got = kernels.weighted_sum([a], [1.0], (4, 4))
    assert got[0, 0] == 1.0 and got.sum() == 1.0
    const = kernels.weighted_sum([np.ones((2, 2), np.float32)], [1.0], (3, 3))
    assert (const == 0).all()
