"""The OpenCV map resize and warp the pipeline uses keep the kernels' conventions (half-pixel
centres, clamped edges; bilinear sampling with a fill outside), so a map means the same in the
runtime as in the kernels' tests and the benchmarks."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.framing import resize_map, warp_map
from edge_runtime.kernels import reference


@pytest.mark.parametrize("src,dst", [((16, 16), (128, 128)), ((128, 128), (16, 16)), ((12, 20), (7, 33))])
def test_resize_map_matches_the_kernels_to_float32_rounding(src, dst):
    m = np.random.default_rng(0).random(src, dtype=np.float32)
    got = resize_map(m, *dst)
    assert got.shape == dst and got.dtype == np.float32
    np.testing.assert_allclose(got, reference.resize_bilinear(m, *dst), rtol=0, atol=2e-7)


def test_resize_map_takes_strided_and_float64_maps():
    m = np.random.default_rng(1).random((32, 64))[:, ::2]  # float64, not contiguous
    np.testing.assert_allclose(
        resize_map(m, 8, 8), reference.resize_bilinear(m.astype(np.float32), 8, 8), atol=2e-7
    )


def test_warp_map_matches_the_kernels_within_opencv_subpixel_steps():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:40, 0:48].astype(np.float32)
    m = (np.sin(xx / 5) + np.cos(yy / 7)).astype(np.float32)  # smooth: local step <= 0.2
    flow = rng.normal(0, 3, (40, 48, 2)).astype(np.float32)
    got, want = warp_map(m, flow), reference.warp_flow(m, flow)
    inside = (
        (xx + flow[..., 0] > 1)
        & (xx + flow[..., 0] < 46)
        & (yy + flow[..., 1] > 1)
        & (yy + flow[..., 1] < 38)
    )
    assert np.abs(got - want)[inside].max() <= 0.2 / 32  # 1/32-pixel interpolation steps
    far = (xx + flow[..., 0] < -2) | (yy + flow[..., 1] > 41)
    assert far.any() and np.all(warp_map(m, flow, fill=-1.0)[far] == -1.0)
