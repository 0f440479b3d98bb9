"""Compile every kernel once, on tiny inputs, so the first frame does not pay for compilation."""

from __future__ import annotations

import time

import numpy as np

from .fuse import weighted_sum
from .geometry import resize_bilinear, shift_map, warp_flow
from .quantize import dequantize, mask_quantize, quantize
from .reduce import FEATURE_MODES, IMAGE_MODES, reduce_features, reduce_image
from .threshold import dilate_mask, threshold_keep_ratio, threshold_percentile, threshold_value

__all__ = ["warmup"]


def warmup() -> float:
    """Call every public kernel on tiny inputs (every dtype and mode); return the seconds it took.

    With a populated Numba cache this only loads machine code from disk.
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    imp = rng.random((4, 5), dtype=np.float32)
    keep = threshold_value(imp, 0.5)
    threshold_keep_ratio(imp, 0.3)
    threshold_percentile(imp, 70.0)
    dilate_mask(keep, 1)
    for dtype in (np.uint8, np.float32):
        img = (rng.random((4, 5, 3)) * (255 if dtype == np.uint8 else 1)).astype(dtype)
        for mode in IMAGE_MODES:
            reduce_image(img, keep, mode)
    feat = rng.standard_normal((2, 4, 5), dtype=np.float32)
    for mode in FEATURE_MODES:
        reduce_features(feat, keep, mode)
    resize_bilinear(imp, 3, 7)
    warp_flow(imp, np.zeros((4, 5, 2), np.float32))
    shift_map(imp, 1, -0.5)
    for per_channel in (True, False):
        for clip in (None, 99.0):
            q, s, o = quantize(feat, 8, per_channel=per_channel, clip_percentile=clip, mask=keep)
            quantize(feat, 4, per_channel=per_channel, clip_percentile=clip)
            mask_quantize(feat, keep, 8, per_channel=per_channel, clip_percentile=clip)
            dequantize(q, s, o)
            dequantize(q, s, o, keep)
    weighted_sum([imp, feat], [0.5, 0.5], (6, 6))
    return time.perf_counter() - t0
