from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_runtime import kernels
from edge_runtime.kernels import reference as ref

from .conftest import maps, masks, rng


@given(maps(), st.floats(-2, 2))
def test_threshold_value_matches_reference(imp, thr):
    np.testing.assert_array_equal(kernels.threshold_value(imp, thr), ref.threshold_value(imp, thr))


def _stable_oracle(imp: np.ndarray, k: int) -> np.ndarray:
    """Full stable sort: the k largest, ties by raster order (what the docs promise)."""
    flat = imp.ravel() + np.float32(0.0)
    keep = np.zeros(flat.size, bool)
    keep[np.argsort(-flat, kind="stable")[:k]] = True
    return keep.reshape(imp.shape)


@given(maps(), st.floats(0, 1))
def test_keep_ratio_exact_count_and_ties(imp, ratio):
    got = kernels.threshold_keep_ratio(imp, ratio)
    k = min(imp.size, int(np.floor(ratio * imp.size + 0.5)))
    assert got.sum() == k
    np.testing.assert_array_equal(got, ref.threshold_keep_ratio(imp, ratio))
    np.testing.assert_array_equal(got, _stable_oracle(imp, k))


def test_keep_ratio_ties_keep_first_in_raster_order():
    imp = np.zeros((2, 3), np.float32)
    imp[1, 2] = 1.0
    got = kernels.threshold_keep_ratio(imp, 0.5)  # k = 3: the 1.0 and the first two zeros
    np.testing.assert_array_equal(got, [[True, True, False], [False, False, True]])


def test_keep_ratio_negative_zero_ties_with_zero():
    imp = np.array([[0.0, -0.0, 0.0, -0.0]], np.float32)
    np.testing.assert_array_equal(kernels.threshold_keep_ratio(imp, 0.5), [[True, True, False, False]])


def test_keep_ratio_large_map_matches_reference():
    imp = rng(3).random((480, 640), dtype=np.float32)
    imp[100:200, 100:300] = 0.75  # a block of ties at many ranks
    for ratio in (0.01, 0.1, 0.33, 0.9):
        np.testing.assert_array_equal(
            kernels.threshold_keep_ratio(imp, ratio), ref.threshold_keep_ratio(imp, ratio)
        )


@given(maps(), st.floats(0, 100))
def test_percentile_matches_reference(imp, pct):
    np.testing.assert_array_equal(kernels.threshold_percentile(imp, pct), ref.threshold_percentile(imp, pct))


@given(maps(elements=st.floats(-1e6, 1e6, width=32, allow_subnormal=False)), st.floats(0, 100))
def test_reference_percentile_is_numpy_linear(imp, pct):
    want = np.percentile(imp.astype(np.float64), pct)
    assert ref.percentile(imp, pct) == pytest.approx(want, rel=1e-12, abs=1e-9)


def test_percentile_extremes():
    imp = rng().random((5, 7), dtype=np.float32)
    assert not kernels.threshold_percentile(imp, 100).any()
    assert kernels.threshold_percentile(imp, 0).sum() == imp.size - 1


@given(st.data(), st.integers(0, 6))
def test_dilate_matches_reference(data, radius):
    imp = data.draw(maps())
    mask = data.draw(masks(imp.shape))
    got = kernels.dilate_mask(mask, radius)
    np.testing.assert_array_equal(got, ref.dilate_mask(mask, radius))
    assert (got >= mask).all()


def test_dilate_square_window():
    m = np.zeros((7, 7), bool)
    m[3, 3] = True
    got = kernels.dilate_mask(m, 2)
    assert got.sum() == 25 and got[1:6, 1:6].all()
