"""Reducers: turn an importance map into a keep-mask and reduce what is not kept.

Two domains (``ReduceConfig.domain``):

- ``image``: before the front half, at the model's input resolution; modes ``zero``, ``blur``
  (low-pass), ``colour`` (few levels per channel) and ``grey``. The whole feature map is sent.
- ``feature``: after the front half, at the split tensor's resolution; modes ``zero`` (masked
  positions are not sent at all: the wire's keep-mask) and ``blur`` (low-pass, sent densely).

Thresholds (``ReduceConfig.threshold``): ``keep_ratio`` (the top fraction ``value`` of positions,
exactly), ``value`` (map > ``value``), ``percentile`` (map > its ``value``-th percentile). With
``normalize`` the map is divided by its maximum first, so ``value`` is a fraction of the frame's
peak; without it, a frame whose map is nowhere above ``value`` keeps nothing and is sent as the
small empty message. ``dilate`` grows the mask by that many cells.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.config import ReduceConfig
from edge_runtime.framing import resize_map
from edge_runtime.warmup import kernels  # the compiled kernels, or their twins while they compile

__all__ = ["Reducer"]


class Reducer:
    """Keep-masks and reduction for one domain; ``shape``: (H, W) of that domain."""

    def __init__(self, cfg: ReduceConfig, *, image_hw: tuple[int, int], feature_hw: tuple[int, int]) -> None:
        self.cfg = cfg
        self.domain = cfg.domain
        self.shape = tuple(image_hw) if cfg.domain == "image" else tuple(feature_hw)

    def keep_mask(
        self,
        imp: np.ndarray | None,
        ratio: float | None = None,
        *,
        prev: np.ndarray | None = None,
        hold: float = 0.0,
    ) -> np.ndarray | None:
        """Bool mask at the domain's resolution; None when there is no map (keep everything).

        ``ratio`` overrides the configured keep ratio (rate control). ``prev`` (the mask of the
        temporal reference) and ``hold`` > 0: positions ``prev`` kept get ``hold`` x the map's range
        added before thresholding (hysteresis: a mask that flickers costs bits to code)."""
        if imp is None:
            return None
        cfg = self.cfg
        h, w = self.shape
        m = imp if imp.shape == (h, w) else resize_map(imp, h, w)
        if hold > 0 and prev is not None and prev.shape == (h, w):
            m = (m + np.float32(hold * float(m.max() - m.min())) * prev).astype(np.float32)
        if cfg.threshold == "keep_ratio":
            keep = kernels.threshold_keep_ratio(m, cfg.value if ratio is None else ratio)
        elif cfg.threshold == "percentile":
            keep = kernels.threshold_percentile(m, cfg.value)
        else:
            if cfg.normalize:
                peak = float(m.max())
                m = m * np.float32(1.0 / peak) if peak > 0 else m
            keep = kernels.threshold_value(m, cfg.value)
        if cfg.dilate:
            keep = kernels.dilate_mask(keep, cfg.dilate)
        return keep

    def reduce_image(self, img: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
        """uint8 H x W x 3 with the not-kept pixels reduced (unchanged without a mask)."""
        if keep is None:
            return img
        mode = self.cfg.mode
        return kernels.reduce_image(
            img,
            keep,
            mode,
            radius=self.cfg.radius if mode == "blur" else None,
            levels=self.cfg.levels if mode == "colour" else None,
        )

    def reduce_features(self, feat: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
        """Low-pass the not-kept positions of a C x H x W map (``blur`` mode; ``zero`` is done by
        the masked quantizer, which skips those positions entirely)."""
        if keep is None or self.cfg.mode != "blur":
            return feat
        return kernels.reduce_features(feat, keep, "blur", radius=self.cfg.radius)

    @property
    def masks_wire(self) -> bool:
        """True when the keep-mask travels on the wire (feature domain, zero mode)."""
        return self.domain == "feature" and self.cfg.mode == "zero"
