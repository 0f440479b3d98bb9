"""Bad input raises TypeError / ValueError naming the argument, never a crash inside Numba."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime import kernels

IMP = np.random.default_rng(0).random((8, 9), dtype=np.float32)
NAN_IMP = IMP.copy()
NAN_IMP[2, 3] = np.nan
INF_IMP = IMP.copy()
INF_IMP[0, 0] = -np.inf
KEEP = IMP > 0.5
IMG = np.zeros((8, 9, 3), np.uint8)
FEAT = np.zeros((4, 8, 9), np.float32)
NAN_FEAT = FEAT.copy()
NAN_FEAT[1, 2, 2] = np.nan

CASES = [
    (lambda: kernels.threshold_value(IMP.astype(np.float64), 0.5), TypeError, "imp must have dtype float32"),
    (lambda: kernels.threshold_value(IMP[None], 0.5), ValueError, "imp must be 2-D"),
    (lambda: kernels.threshold_value([[0.5]], 0.5), TypeError, "imp must be a numpy.ndarray"),
    (lambda: kernels.threshold_value(IMP.astype(">f4"), 0.5), TypeError, "imp must have dtype float32"),
    (lambda: kernels.threshold_value(NAN_IMP, 0.5), ValueError, "imp contains 1 NaN"),
    (lambda: kernels.threshold_value(IMP, float("nan")), ValueError, "thr must be finite"),
    (lambda: kernels.threshold_keep_ratio(INF_IMP, 0.5), ValueError, "imp contains 1 NaN or infinite"),
    (lambda: kernels.threshold_keep_ratio(IMP, 1.5), ValueError, "ratio must be <= 1.0"),
    (
        lambda: kernels.threshold_keep_ratio(np.zeros((0, 3), np.float32), 0.5),
        ValueError,
        "must not be empty",
    ),
    (lambda: kernels.threshold_percentile(NAN_IMP, 50), ValueError, "NaN"),
    (lambda: kernels.threshold_percentile(IMP, -1), ValueError, "pct must be >= 0"),
    (lambda: kernels.dilate_mask(IMP, 1), TypeError, "mask must have dtype bool"),
    (lambda: kernels.dilate_mask(KEEP, -1), ValueError, "radius must be in"),
    (lambda: kernels.dilate_mask(KEEP, 1.5), TypeError, "radius must be an int"),
    (lambda: kernels.dilate_mask(KEEP, True), TypeError, "radius must be an int"),
    (lambda: kernels.reduce_image(IMG, KEEP, "sepia"), ValueError, "mode must be one of"),
    (
        lambda: kernels.reduce_image(IMG.astype(np.int16), KEEP, "zero"),
        TypeError,
        "img must have dtype uint8 or float32",
    ),
    (lambda: kernels.reduce_image(IMG[..., 0], KEEP, "zero"), ValueError, "img must be 3-D"),
    (lambda: kernels.reduce_image(IMG, KEEP[:4], "zero"), ValueError, r"keep must have shape \(8, 9\)"),
    (lambda: kernels.reduce_image(IMG, KEEP, "colour", levels=1), ValueError, "levels must be in"),
    (
        lambda: kernels.reduce_image(np.full((8, 9, 3), np.inf, np.float32), KEEP, "zero"),
        ValueError,
        "img contains",
    ),
    (lambda: kernels.reduce_features(FEAT, KEEP, "grey"), ValueError, "mode must be one of"),
    (lambda: kernels.reduce_features(NAN_FEAT, KEEP, "blur"), ValueError, "feat contains 1 NaN"),
    (lambda: kernels.resize_bilinear(IMP, 0, 4), ValueError, "out_h must be in"),
    (lambda: kernels.resize_bilinear(NAN_IMP, 4, 4), ValueError, "map2d contains"),
    (lambda: kernels.warp_flow(IMP, np.zeros((8, 9, 3), np.float32)), ValueError, "flow must have shape"),
    (lambda: kernels.warp_flow(IMP, np.full((8, 9, 2), np.nan, np.float32)), ValueError, "flow contains 72"),
    (lambda: kernels.shift_map(IMP, 1, float("inf")), ValueError, "dx must be finite"),
    (lambda: kernels.quantize(FEAT, 0), ValueError, r"bits must be in \[1, 8\], got 0"),
    (lambda: kernels.quantize(FEAT, 9), ValueError, r"bits must be in \[1, 8\], got 9"),
    (lambda: kernels.quantize(FEAT, 8.0), TypeError, "bits must be an int"),
    (lambda: kernels.quantize(NAN_FEAT, 8), ValueError, "x contains 1 NaN"),
    (lambda: kernels.quantize(FEAT, 8, clip_percentile=40), ValueError, "clip_percentile must be > 50"),
    (lambda: kernels.quantize(FEAT, 8, per_channel="yes"), TypeError, "per_channel must be a bool"),
    (lambda: kernels.quantize(FEAT, 8, mask=KEEP.T), ValueError, "mask must have shape"),
    (lambda: kernels.quantize(FEAT[0], 8), ValueError, "x must be 3-D"),
    (lambda: kernels.mask_quantize(NAN_FEAT, KEEP | True, 8), ValueError, "feat contains 1 NaN"),
    (
        lambda: kernels.dequantize(FEAT, np.ones(4, np.float32), np.zeros(4, np.float32)),
        TypeError,
        "q must have dtype uint8",
    ),
    (
        lambda: kernels.dequantize(FEAT.astype(np.uint8), np.ones(3, np.float32), np.zeros(3, np.float32)),
        ValueError,
        r"scale must have shape \(1,\) or \(4,\)",
    ),
    (lambda: kernels.weighted_sum(IMP, [1.0], (4, 4)), TypeError, "layers must be a list"),
    (lambda: kernels.weighted_sum([IMP], [1.0, 2.0], (4, 4)), ValueError, "one entry per layer"),
    (lambda: kernels.weighted_sum([NAN_IMP], [1.0], (4, 4)), ValueError, r"layers\[0\] contains"),
    (lambda: kernels.weighted_sum([IMP], [float("nan")], (4, 4)), ValueError, r"weights\[0\] must be finite"),
    (lambda: kernels.weighted_sum([IMP[None, None]], [1.0], (4, 4)), ValueError, r"layers\[0\] must be 2-D"),
]


@pytest.mark.parametrize(("call", "exc", "match"), CASES, ids=[c[2][:40] for c in CASES])
def test_bad_input_raises_clear_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
