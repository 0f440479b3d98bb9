"""The simulated person of the decoy experiment (``benchmarks/decoy.py``): what they draw, as data.

A person corrects a map in the editor (``edge-runtime correct``) with brush strokes or by
importing a mask image, and saves a *teacher map*: float32, h x w (the split resolution), values in
[0, 1], stored by :class:`models.correct.TeacherStore` and read by ``edge-runtime retrain``. The
experiment simulates a careful person who draws the item's ground-truth mask:

* :func:`teacher_map` is that map as the editor makes it from a mask image (its mask import,
  :func:`models.correct.map_from_mask`: the share of each map cell the item covers);
* :func:`mask_strokes` are brush strokes (``add``, from an empty map) that paint the same mask,
  scan line by scan line; ``tests/abn/test_editor.py`` draws them with a mouse in Chromium and
  checks that the saved teacher map is this one, so the editor and the experiment share one format.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_runtime.models.correct import Stroke, map_from_mask

__all__ = ["teacher_map", "mask_strokes"]


def teacher_map(mask: np.ndarray, map_shape: Sequence[int]) -> np.ndarray:
    """The simulated person's teacher map for an item ``mask`` (H x W bool): float32 ``map_shape``."""
    return map_from_mask(np.asarray(mask, bool), map_shape)


def mask_strokes(mask: np.ndarray, radius: float = 3.0, mode: str = "add") -> list[Stroke]:
    """Strokes of radius ``radius`` (image pixels) that paint ``mask``: one per run of item pixels
    on scan lines ``2 * radius`` apart (every item pixel lies within ``radius`` of one)."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be H x W, got shape {mask.shape}")
    if not radius >= 0.5:
        raise ValueError(f"radius must be >= 0.5 pixels, got {radius}")
    strokes = []
    step = max(1, int(2 * radius))
    h = mask.shape[0]
    lines = list(range(int(radius) // 2, h, step))
    if lines[-1] + radius < h - 1:  # the last rows too
        lines.append(h - 1 - int(radius) // 2)
    for y in lines:
        row = np.concatenate([[False], mask[y], [False]])
        edges = np.flatnonzero(row[1:] != row[:-1])
        for x0, x1 in zip(edges[::2], edges[1::2], strict=True):  # run [x0, x1)
            pts = ((x0 + 0.5, y + 0.5), (x1 - 0.5, y + 0.5))
            strokes.append(Stroke(pts, radius, mode))
    return strokes
