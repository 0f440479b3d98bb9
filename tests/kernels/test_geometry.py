from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_runtime import kernels
from edge_runtime.kernels import reference as ref

from .conftest import maps, rng

unit_maps = maps(elements=st.floats(0, 1, width=32))


@given(unit_maps, st.integers(1, 40), st.integers(1, 40))
def test_resize_matches_reference(m, oh, ow):
    np.testing.assert_array_equal(kernels.resize_bilinear(m, oh, ow), ref.resize_bilinear(m, oh, ow))


@pytest.mark.parametrize(
    ("shape", "out"),
    [
        ((128, 128), (480, 640)),
        ((480, 640), (128, 128)),
        ((16, 16), (128, 128)),
        ((37, 53), (20, 71)),
        ((1, 1), (5, 3)),
    ],
)
def test_resize_matches_cv2_inter_linear(shape, out):
    m = rng(1).random(shape, dtype=np.float32)
    want = cv2.resize(m, (out[1], out[0]), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(kernels.resize_bilinear(m, *out), want, rtol=0, atol=1e-6)


@given(st.data())
def test_warp_matches_reference(data):
    m = data.draw(unit_maps)
    flow = data.draw(hnp.arrays(np.float32, (*m.shape, 2), elements=st.floats(-20, 20, width=32)))
    fill = data.draw(st.sampled_from([0.0, 1.0, -0.5]))
    np.testing.assert_array_equal(kernels.warp_flow(m, flow, fill=fill), ref.warp_flow(m, flow, fill=fill))


def test_warp_matches_cv2_remap_on_the_1_32_grid():
    h, w = 24, 31
    m = rng(2).random((h, w), dtype=np.float32)
    flow = (np.round(rng(3).normal(0, 4, (h, w, 2)) * 32) / 32).astype(np.float32)  # cv2 rounds to 1/32
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    want = cv2.remap(
        m,
        xx + flow[..., 0],
        yy + flow[..., 1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.25,
    )
    np.testing.assert_allclose(kernels.warp_flow(m, flow, fill=0.25), want, atol=1e-5)


def test_zero_flow_is_identity_and_huge_flow_is_fill():
    m = rng().random((6, 9), dtype=np.float32)
    np.testing.assert_array_equal(kernels.warp_flow(m, np.zeros((6, 9, 2), np.float32)), m)
    huge = np.full((6, 9, 2), 3e38, np.float32)
    np.testing.assert_array_equal(kernels.warp_flow(m, huge, fill=0.5), np.full((6, 9), 0.5, np.float32))


@given(unit_maps, st.floats(-20, 20), st.floats(-20, 20))
def test_shift_matches_reference_and_warp(m, dy, dx):
    got = kernels.shift_map(m, dy, dx, fill=0.5)
    np.testing.assert_array_equal(got, ref.shift_map(m, dy, dx, fill=0.5))
    flow = np.empty((*m.shape, 2), np.float32)
    flow[..., 0], flow[..., 1] = -dx, -dy
    if float(np.float32(dx)) == dx and float(np.float32(dy)) == dy:  # flow is float32
        np.testing.assert_array_equal(got, kernels.warp_flow(m, flow, fill=0.5))


def test_integer_shift_moves_content():
    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    got = kernels.shift_map(m, 1, -1, fill=-1.0)
    want = np.full((3, 4), -1.0, np.float32)
    want[1:, :3] = m[:2, 1:]
    np.testing.assert_array_equal(got, want)
