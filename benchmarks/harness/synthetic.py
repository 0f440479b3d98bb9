"""Synthetic feature maps for codec development, tests and benchmarks.

Stand-ins for a front half's split tensor until real ones are at hand: ReLU-like, spatially smooth
activations per channel, and a blob-shaped keep-mask. Deterministic by seed; numpy only.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.kernels.reference import quantize

__all__ = ["smooth_features", "blob_mask", "quantize", "synthetic_tensor"]


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], passes: int) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    for _ in range(passes):  # separable [1 2 1] / 4 blur, wrap-around: cheap and smooth enough
        x = 0.25 * np.roll(x, 1, -1) + 0.5 * x + 0.25 * np.roll(x, -1, -1)
        x = 0.25 * np.roll(x, 1, -2) + 0.5 * x + 0.25 * np.roll(x, -1, -2)
    return x / (x.std(axis=(-2, -1), keepdims=True) + 1e-6)


def smooth_features(channels: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """ReLU-like activations (C, H, W) float32: smooth fields, per-channel gain and bias, then ReLU."""
    rng = np.random.default_rng(seed)
    x = _smooth(rng, (channels, height, width), passes=max(1, min(height, width) // 4))
    gain = rng.uniform(0.5, 3.0, (channels, 1, 1)).astype(np.float32)
    bias = rng.uniform(-1.0, 0.5, (channels, 1, 1)).astype(np.float32)
    return np.maximum(x * gain + bias, 0.0).astype(np.float32)


def blob_mask(height: int, width: int, keep_ratio: float, seed: int = 0) -> np.ndarray:
    """Bool (H, W) mask of one or a few blobs covering about ``keep_ratio`` of the positions."""
    if not 0.0 <= keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in [0, 1], got {keep_ratio}")
    rng = np.random.default_rng(seed + 7919)
    field = _smooth(rng, (height, width), passes=max(2, min(height, width) // 3))
    if keep_ratio >= 1.0:
        return np.ones((height, width), bool)
    if keep_ratio <= 0.0:
        return np.zeros((height, width), bool)
    k = max(1, round(keep_ratio * height * width))
    thr = np.partition(field.ravel(), -k)[-k]
    return field >= thr


def synthetic_tensor(
    channels: int = 16,
    height: int = 16,
    width: int = 16,
    *,
    bits: int = 8,
    keep_ratio: float = 0.25,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Quantized, masked synthetic map: (q, scale, offset, keep); q is zero where keep is False."""
    x = smooth_features(channels, height, width, seed)
    keep = blob_mask(height, width, keep_ratio, seed)
    q, scale, offset = quantize(x, bits)  # the kernels' NumPy twin: the project's one quantizer reference
    q[:, ~keep] = 0
    return q, scale, offset, keep
