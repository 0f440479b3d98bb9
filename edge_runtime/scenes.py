"""Procedural scenes: the built-in data set and video stream (no downloads possible).

Objects of ``num_classes`` shape classes, with random pose, scale, colour and position, on
cluttered, textured backgrounds with irregular distractors. Every sample comes with its label and
the ground-truth object mask. Deterministic by seed: sample ``i`` of a generator with seed ``s``
is always the same image.

An optional *decoy* cue (a small coloured patch whose corner and colour encode a class) can be
correlated with the label, for the ABN correction experiments: with ``decoy="label"`` the patch
encodes the true label (training scenes where the cue predicts the label), with ``decoy="random"``
it encodes a random class (test scenes where it does not).

This module lives in ``edge_runtime`` rather than ``models`` because the edge's default frame
source is the built-in moving-object stream, and the runtime may not import ``models`` (torch).
It needs only numpy and OpenCV.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["CLASS_NAMES", "Scene", "SceneGenerator", "MovingObjectStream"]

CLASS_NAMES = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "hexagon",
    "diamond",
    "crescent",
    "arrow",
)

# Decoy palette: one clearly distinct colour per class (RGB).
_DECOY_COLOURS = np.array(
    [
        [255, 0, 0],
        [0, 255, 0],
        [0, 0, 255],
        [255, 255, 0],
        [255, 0, 255],
        [0, 255, 255],
        [255, 128, 0],
        [128, 0, 255],
        [255, 255, 255],
        [0, 0, 0],
    ],
    dtype=np.uint8,
)


@dataclass(frozen=True)
class Scene:
    """One labelled image: ``image`` is H x W x 3 uint8 RGB, ``mask`` H x W bool (the object)."""

    image: np.ndarray
    label: int
    mask: np.ndarray


def _polygon(cls: int, n: int = 48) -> list[np.ndarray]:
    """Unit-size outline(s) of class ``cls`` centred at 0; several arrays = filled with XOR."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    circle = np.stack([np.cos(t), np.sin(t)], 1)

    def regular(k: int, phase: float = 0.0) -> np.ndarray:
        a = np.arange(k) * 2 * np.pi / k + phase
        return np.stack([np.cos(a), np.sin(a)], 1)

    if cls == 0:
        return [circle]
    if cls == 1:
        return [regular(4, np.pi / 4) * 0.95]
    if cls == 2:
        return [regular(3, -np.pi / 2)]
    if cls == 3:
        a = np.arange(10) * np.pi / 5 - np.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return [np.stack([r * np.cos(a), r * np.sin(a)], 1)]
    if cls == 4:
        w = 0.32
        return [
            np.array(
                [
                    [-w, -1],
                    [w, -1],
                    [w, -w],
                    [1, -w],
                    [1, w],
                    [w, w],
                    [w, 1],
                    [-w, 1],
                    [-w, w],
                    [-1, w],
                    [-1, -w],
                    [-w, -w],
                ],
                dtype=np.float64,
            )
        ]
    if cls == 5:
        return [circle, circle * 0.55]
    if cls == 6:
        return [regular(6)]
    if cls == 7:
        return [np.array([[0, -1], [0.5, 0], [0, 1], [-0.5, 0]], dtype=np.float64)]
    if cls == 8:
        return [circle, circle * 0.85 + np.array([0.45, -0.1])]
    if cls == 9:
        return [
            np.array(
                [[-1, -0.25], [0.1, -0.25], [0.1, -0.65], [1, 0], [0.1, 0.65], [0.1, 0.25], [-1, 0.25]],
                dtype=np.float64,
            )
        ]
    raise ValueError(f"class {cls} has no shape; classes are 0..{len(CLASS_NAMES) - 1}")


def _draw_shape(canvas: np.ndarray, cls: int, centre, radius: float, angle: float, colour) -> np.ndarray:
    """Draw class ``cls`` on ``canvas`` in place and return its bool mask."""
    h, w = canvas.shape[:2]
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    mask = np.zeros((h, w), np.uint8)
    for k, poly in enumerate(_polygon(cls)):
        pts = (poly @ rot.T) * radius + np.asarray(centre)
        pts = np.round(pts * 16).astype(np.int32)  # 4 bits of sub-pixel precision
        cv2.fillPoly(mask, [pts], 1 if k == 0 else 0, lineType=cv2.LINE_8, shift=4)
    keep = mask.astype(bool)
    canvas[keep] = colour
    return keep


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-frequency coloured noise plus stripes: a cluttered, textured background."""
    coarse = rng.integers(40, 215, size=(rng.integers(3, 7), rng.integers(3, 7), 3)).astype(np.float32)
    bg = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    freq = rng.uniform(0.15, 0.6)
    stripes = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * freq)
    bg += stripes[..., None] * rng.uniform(5, 25)
    bg += rng.normal(0, rng.uniform(3, 12), size=bg.shape).astype(np.float32)
    return np.clip(bg, 0, 255).astype(np.uint8)


def _distractors(rng: np.random.Generator, img: np.ndarray, count: int, max_r: float) -> None:
    """Irregular blobs and line segments, smaller than the objects and of no class shape."""
    size = img.shape[0]
    for _ in range(count):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            k = int(rng.integers(5, 9))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = rng.uniform(0.3, 1.0, k) * rng.uniform(3, max_r)
            c = rng.uniform(0, size, 2)
            pts = np.stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)], 1).astype(np.int32)
            cv2.fillPoly(img, [pts], colour)
        else:
            p = rng.uniform(0, size, 4).astype(np.int32)
            cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), colour, int(rng.integers(1, 4)))


def _object_colour(rng: np.random.Generator, bg_mean: np.ndarray) -> np.ndarray:
    """A random colour that stands out from the local background by a margin."""
    for _ in range(20):
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - bg_mean).sum() > 150:
            return colour.astype(np.uint8)
    return (255 - bg_mean).astype(np.uint8)


def _decoy(img: np.ndarray, cls: int, size: int) -> None:
    """Class-coded patch: colour from the palette, corner by class parity."""
    p = max(4, size // 10)
    corner = cls % 4
    y0 = 2 if corner in (0, 1) else size - p - 2
    x0 = 2 if corner in (0, 2) else size - p - 2
    img[y0 : y0 + p, x0 : x0 + p] = _DECOY_COLOURS[cls]


class SceneGenerator:
    """Labelled scenes, deterministic by ``seed`` and index.

    Parameters
    ----------
    size:
        Image side in pixels (square images).
    num_classes:
        Number of shape classes, 2..10.
    seed:
        Seed; ``sample(i)`` depends only on ``(seed, i)`` and the other parameters.
    decoy:
        ``None``, ``"label"`` (patch encodes the true label) or ``"random"`` (a random class).
    decoy_prob:
        Probability that a scene carries the decoy patch.
    distractors:
        Maximum number of distractors per scene.
    """

    def __init__(
        self,
        size: int = 128,
        num_classes: int = 10,
        seed: int = 0,
        *,
        decoy: str | None = None,
        decoy_prob: float = 1.0,
        distractors: int = 6,
    ) -> None:
        if not 32 <= size <= 4096:
            raise ValueError(f"size must be in 32..4096 pixels, got {size}")
        if not 2 <= num_classes <= len(CLASS_NAMES):
            raise ValueError(f"num_classes must be in 2..{len(CLASS_NAMES)}, got {num_classes}")
        if decoy not in (None, "label", "random"):
            raise ValueError(f"decoy must be None, 'label' or 'random', got {decoy!r}")
        if not 0.0 <= decoy_prob <= 1.0:
            raise ValueError(f"decoy_prob must be in [0, 1], got {decoy_prob}")
        self.size = size
        self.num_classes = num_classes
        self.seed = seed
        self.decoy = decoy
        self.decoy_prob = decoy_prob
        self.distractors = distractors
        self.class_names = CLASS_NAMES[:num_classes]

    def sample(self, index: int, label: int | None = None) -> Scene:
        """Scene number ``index``; ``label`` forces the class (else drawn from the index's stream)."""
        rng = np.random.default_rng([self.seed, index])
        size = self.size
        cls = int(rng.integers(self.num_classes)) if label is None else int(label)
        img = _background(rng, size)
        _distractors(rng, img, int(rng.integers(0, self.distractors + 1)), max_r=size * 0.09)
        radius = rng.uniform(0.16, 0.3) * size
        margin = radius * 0.9
        centre = rng.uniform(margin, size - margin, 2)
        y, x = int(np.clip(centre[1], 0, size - 1)), int(np.clip(centre[0], 0, size - 1))
        local = img[max(0, y - 8) : y + 8, max(0, x - 8) : x + 8].reshape(-1, 3).mean(0)
        colour = _object_colour(rng, local)
        mask = _draw_shape(img, cls, centre, radius, rng.uniform(0, 2 * np.pi), colour)
        # A little shading noise on the object so that colour alone is not a flat fill.
        noise = rng.normal(0, 6, size=(int(mask.sum()), 3))
        img[mask] = np.clip(img[mask].astype(np.float32) + noise, 0, 255).astype(np.uint8)
        if self.decoy is not None and rng.random() < self.decoy_prob:
            dcls = cls if self.decoy == "label" else int(rng.integers(self.num_classes))
            _decoy(img, dcls, size)
        return Scene(img, cls, mask)

    def batch(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scenes ``start .. start+count-1`` stacked: images (N,H,W,3), labels (N,), masks (N,H,W)."""
        scenes = [self.sample(i) for i in range(start, start + count)]
        return (
            np.stack([s.image for s in scenes]),
            np.array([s.label for s in scenes], np.int64),
            np.stack([s.mask for s in scenes]),
        )


class MovingObjectStream:
    """An endless video: one object at a time moves across a slowly drifting background.

    Each frame is a :class:`Scene`. The object changes class every ``segment`` frames. Iterating
    yields frames forever; ``frame(t)`` gives frame ``t`` directly (deterministic by seed).
    """

    def __init__(
        self, size: int = 128, num_classes: int = 10, seed: int = 0, *, segment: int = 60, speed: float = 1.5
    ) -> None:
        if segment < 1:
            raise ValueError(f"segment must be >= 1 frame, got {segment}")
        self.size = size
        self.num_classes = num_classes
        self.seed = seed
        self.segment = segment
        self.speed = speed
        self._cache: tuple[int, dict] | None = None

    def _segment(self, k: int) -> dict:
        if self._cache is not None and self._cache[0] == k:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, 7919, k])
        big = _background(rng, self.size * 2)
        _distractors(rng, big, int(rng.integers(4, 12)), max_r=self.size * 0.09)
        cls = int(rng.integers(self.num_classes))
        radius = rng.uniform(0.18, 0.28) * self.size
        seg = {
            "bg": big,
            "cls": cls,
            "radius": radius,
            "start": rng.uniform(radius, self.size - radius, 2),
            "vel": rng.normal(0, 1, 2) / np.sqrt(2) * self.speed,
            "pan": rng.normal(0, 0.3, 2),
            "angle": rng.uniform(0, 2 * np.pi),
            "spin": rng.normal(0, 0.01),
            "colour": rng.integers(0, 256, 3).astype(np.uint8),
        }
        self._cache = (k, seg)
        return seg

    def frame(self, t: int) -> Scene:
        """Frame number ``t`` (0-based)."""
        k, i = divmod(t, self.segment)
        seg = self._segment(k)
        size, r = self.size, seg["radius"]
        # Bounce the centre inside the frame.
        span = size - 2 * r
        pos = seg["start"] - r + seg["vel"] * i
        pos = np.abs((pos + 2 * span) % (2 * span) - span) if span > 0 else np.zeros(2)
        centre = pos + r
        off = np.clip(size / 2 + seg["pan"] * i, 0, size).astype(int)
        img = np.ascontiguousarray(seg["bg"][off[1] : off[1] + size, off[0] : off[0] + size])
        local = img[int(centre[1]) - 6 : int(centre[1]) + 6, int(centre[0]) - 6 : int(centre[0]) + 6]
        colour = seg["colour"]
        if np.abs(colour.astype(int) - local.reshape(-1, 3).mean(0)).sum() < 150:
            colour = (255 - local.reshape(-1, 3).mean(0)).astype(np.uint8)
        mask = _draw_shape(img, seg["cls"], centre, r, seg["angle"] + seg["spin"] * i, colour)
        return Scene(img, seg["cls"], mask)

    def __iter__(self) -> Iterator[Scene]:
        t = 0
        while True:
            yield self.frame(t)
            t += 1
