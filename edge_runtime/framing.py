"""Frame geometry: bring a camera frame to the model's square input, the same everywhere.

``letterbox`` (the default) scales the whole frame to fit and pads the rest with mid grey;
``crop`` scales the short side to fit and cuts the centre; ``stretch`` squashes the frame
(distorts objects; measured in ``benchmarks/generalisation.py``). Training data, benchmarks and
the edge's preprocessing all call :func:`fit`.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["RESIZE_MODES", "fit", "fit_geometry", "fit_boxes", "unfit_boxes"]

RESIZE_MODES = ("letterbox", "crop", "stretch")
_PAD = 128  # mid grey: the value the network's normalisation maps to 0


def fit(
    image: np.ndarray, size: int | tuple[int, int], mode: str = "letterbox", *, mask: np.ndarray | None = None
):
    """``image`` (H,W,3) uint8 -> (h,w,3) by ``mode``; with ``mask`` also returns the mask moved alike."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    h, w = (size, size) if isinstance(size, int) else size
    ih, iw = image.shape[:2]
    if (ih, iw) == (h, w):
        return image if mask is None else (image, mask)
    interp = cv2.INTER_AREA if ih * iw > h * w else cv2.INTER_LINEAR
    if mode == "stretch":
        out = cv2.resize(image, (w, h), interpolation=interp)
        m = (
            None
            if mask is None
            else cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        )
    elif mode == "crop":
        s = max(h / ih, w / iw)
        sh, sw = max(h, round(ih * s)), max(w, round(iw * s))
        y, x = (sh - h) // 2, (sw - w) // 2
        out = cv2.resize(image, (sw, sh), interpolation=interp)[y : y + h, x : x + w]
        m = None
        if mask is not None:
            m = cv2.resize(mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST)[
                y : y + h, x : x + w
            ]
    else:
        s = min(h / ih, w / iw)
        sh, sw = min(h, round(ih * s)), min(w, round(iw * s))
        y, x = (h - sh) // 2, (w - sw) // 2
        out = np.full((h, w, 3), _PAD, np.uint8)
        out[y : y + sh, x : x + sw] = cv2.resize(image, (sw, sh), interpolation=interp)
        m = None
        if mask is not None:
            m = np.zeros((h, w), np.uint8)
            m[y : y + sh, x : x + sw] = cv2.resize(
                mask.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST
            )
    out = np.ascontiguousarray(out)
    return out if mask is None else (out, np.ascontiguousarray(m.astype(bool)))


def fit_geometry(frame_hw: tuple[int, int], size: int | tuple[int, int], mode: str = "letterbox"):
    """How :func:`fit` maps a frame of ``frame_hw`` (height, width) to ``size``: per-axis scales and
    offsets ``(sx, sy, ox, oy)`` with ``x_input = x_frame * sx + ox`` (pixel edges, not centres),
    exactly the arithmetic of :func:`fit` (its rounding of the scaled size included)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    h, w = (size, size) if isinstance(size, int) else size
    ih, iw = (int(v) for v in frame_hw)
    if ih < 1 or iw < 1:
        raise ValueError(f"frame size must be positive, got {frame_hw}")
    if (ih, iw) == (h, w) or mode == "stretch":
        return w / iw, h / ih, 0.0, 0.0
    if mode == "crop":
        s = max(h / ih, w / iw)
        sh, sw = max(h, round(ih * s)), max(w, round(iw * s))
        return sw / iw, sh / ih, -float((sw - w) // 2), -float((sh - h) // 2)
    s = min(h / ih, w / iw)
    sh, sw = min(h, round(ih * s)), min(w, round(iw * s))
    return sw / iw, sh / ih, float((w - sw) // 2), float((h - sh) // 2)


def fit_boxes(boxes: np.ndarray, frame_hw, size, mode: str = "letterbox") -> np.ndarray:
    """Boxes ``(n, 4)`` ``x0, y0, x1, y1`` in frame pixels -> in the input :func:`fit` makes, clipped
    to it (a box cut off by ``crop`` shrinks; one wholly outside becomes empty: x1 <= x0)."""
    h, w = (size, size) if isinstance(size, int) else size
    sx, sy, ox, oy = fit_geometry(frame_hw, size, mode)
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    out = b * np.float32([sx, sy, sx, sy]) + np.float32([ox, oy, ox, oy])
    return np.clip(out, 0, np.float32([w, h, w, h])).astype(np.float32)


def unfit_boxes(boxes: np.ndarray, frame_hw, size, mode: str = "letterbox") -> np.ndarray:
    """The inverse of :func:`fit_boxes`: boxes in model-input pixels -> frame pixels, clipped to
    the frame (a box on a letterbox's grey bar is cut to the picture)."""
    sx, sy, ox, oy = fit_geometry(frame_hw, size, mode)
    ih, iw = (int(v) for v in frame_hw)
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    out = (b - np.float32([ox, oy, ox, oy])) / np.float32([sx, sy, sx, sy])
    return np.clip(out, 0, np.float32([iw, ih, iw, ih])).astype(np.float32)


# OpenCV, not kernels.resize_bilinear / warp_flow: benchmarks/bench_kernels.py timed both at every
# size the pipeline uses and OpenCV was faster on each (resize 1.7x at 128x128 -> 16x16, 4.7x at
# 16x16 -> 128x128; remap 3.1x at 128x128, including building its absolute maps).


def resize_map(m: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a float32 map to ``h`` x ``w`` (half-pixel centres, edges clamped): the
    convention of ``kernels.resize_bilinear``, whose results it matches to float32 rounding."""
    return cv2.resize(np.ascontiguousarray(m, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)


def warp_map(m: np.ndarray, flow: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """``m`` sampled at (x + flow[..., 0], y + flow[..., 1]), bilinear, ``fill`` outside: the
    convention of ``kernels.warp_flow``. OpenCV interpolates at 1/32-pixel steps, so results differ
    from it by at most 1/64 of the map's local step (tests/edge/test_framing.py)."""
    h, w = m.shape
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(
        np.ascontiguousarray(m, np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT, borderValue=float(fill),
    )  # fmt: skip
