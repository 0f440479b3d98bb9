"""Numba kernels for the edge box: pure functions on NumPy arrays, no I/O, no state.

- thresholding an importance map into a keep-mask (:mod:`kernels.threshold`),
- reducing what is not kept in images and feature maps (:mod:`kernels.reduce`),
- map resize and warp (:mod:`kernels.geometry`), weighted layer fusion (:mod:`kernels.fuse`),
- quantization, dequantization and requantization (:mod:`kernels.quantize`),
- :func:`warmup`, called once at service start.

Every kernel has a plain NumPy twin in :mod:`kernels.reference`. JIT flags live in
:mod:`kernels._jit` only. Bad input raises ``TypeError`` / ``ValueError`` naming the argument.
See ``docs/kernels.md``.
"""

from .fuse import weighted_sum
from .geometry import resize_bilinear, shift_map, warp_flow
from .quantize import dequantize, mask_quantize, quantize, requantize
from .reduce import reduce_features, reduce_image
from .threshold import dilate_mask, threshold_keep_ratio, threshold_percentile, threshold_value
from .warmup import warmup

__all__ = [
    "threshold_value",
    "threshold_keep_ratio",
    "threshold_percentile",
    "dilate_mask",
    "reduce_image",
    "reduce_features",
    "resize_bilinear",
    "warp_flow",
    "shift_map",
    "quantize",
    "dequantize",
    "mask_quantize",
    "requantize",
    "weighted_sum",
    "warmup",
]
