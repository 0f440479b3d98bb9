"""Scenes with boxes: zero to several objects per frame, each with its class and box.

The objects are those of the photographic task (:mod:`edge_runtime.photos`: Fashion-MNIST product
photographs, or the procedural shapes), pasted with :func:`~edge_runtime.photos._paste` over crops
of real background photographs (:func:`~edge_runtime.photos._crop`) and passed through the same
camera model (:class:`~edge_runtime.photos.Camera`). The splits are the photographic task's (by
item and by background region; :mod:`edge_runtime.datasets` hands them out).

A box is the tight box of the object's *visible* silhouette (alpha > 0.5, minus what objects
pasted later cover), ``x0, y0, x1, y1`` in pixels with ``x1, y1`` exclusive (a one-pixel object
at column 3 is ``[3, y, 4, y + 1]``), in the coordinates of the returned image. Objects are placed
so that their nominal squares overlap little (IoU <= :data:`MAX_PLACE_IOU`); an object of which
less than :data:`MIN_VISIBLE` of its silhouette stays visible is not labelled and, so that no
unlabelled object is left in the frame, the frame is drawn again from the next placement.

- :class:`DetectionScenes`: still frames (training / validation / test), a share of them 4:3
  camera frames letterboxed to the square input (boxes moved alike, :func:`framing.fit_boxes`);
- :class:`DetectionStream`: a moving camera video of several tracks (objects that enter, move,
  turn and leave) over a panning background photograph, at a 4:3 frame size by default, made of
  the assets shipped in ``edge_runtime/assets`` for the validation and test streams (the demo
  needs no apt).

Needs only numpy and OpenCV (never torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.framing import fit, fit_boxes
from edge_runtime.photos import (
    CAMERAS,
    FASHION_NAMES,
    SHAPE_NAMES,
    Camera,
    _crop,
    _paste,
    _shape_sprite,
    _tint,
    backgrounds,
    fashion_items,
)

__all__ = ["BoxScene", "DetectionScenes", "DetectionStream", "MAX_PLACE_IOU", "MIN_VISIBLE", "box_of"]

#: Largest IoU between the nominal squares of two objects of one frame.
MAX_PLACE_IOU = 0.15
#: Share of an object's silhouette that must stay visible for it to be labelled.
MIN_VISIBLE = 0.5


@dataclass(frozen=True)
class BoxScene:
    """``image`` (H,W,3) uint8 RGB; ``boxes`` (n,4) float32 ``x0, y0, x1, y1`` pixels; ``labels``
    (n,) int64; ``frame_hw``: the camera frame's (height, width) before letterboxing (the image's
    own size for a frame that was not resized)."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    frame_hw: tuple[int, int]

    @property
    def label(self) -> int | None:
        """The first object's class (None without objects): what a classification consumer reads."""
        return int(self.labels[0]) if len(self.labels) else None


def box_of(mask: np.ndarray) -> np.ndarray | None:
    """Tight box ``[x0, y0, x1, y1]`` (exclusive ends) of a boolean mask; None when it is empty."""
    ys = np.flatnonzero(mask.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(mask.any(axis=0))
    return np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], np.float32)


def _iou_square(a, b) -> float:
    """IoU of two squares given as (cx, cy, side)."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[2] / 2, a[0] + a[2] / 2, a[1] + a[2] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[2] / 2, b[0] + b[2] / 2, b[1] + b[2] / 2
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    return inter / (a[2] ** 2 + b[2] ** 2 - inter)


class _Objects:
    """Sprites of the photographic task: Fashion-MNIST items of a split, or procedural shapes."""

    def __init__(self, objects: str, item_split: str, item_range=(0.0, 1.0)) -> None:
        if objects not in ("fashion", "shapes"):
            raise ValueError(f"objects must be 'fashion' or 'shapes', got {objects!r}")
        self.kind = objects
        if objects == "fashion":
            items, labels = fashion_items(item_split)
            lo, hi = (int(f * len(items)) for f in item_range)
            self.items, self.labels = items[lo:hi], labels[lo:hi]
            self.class_names = FASHION_NAMES
        else:
            self.items = self.labels = None
            self.class_names = SHAPE_NAMES

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        if self.items is None:
            cls = int(rng.integers(len(SHAPE_NAMES)))
            return _shape_sprite(rng, cls, 56), cls
        k = int(rng.integers(len(self.items)))
        sprite = self.items[k]
        return (sprite[:, ::-1] if rng.random() < 0.5 else sprite), int(self.labels[k])


def _compose(img: np.ndarray, placed: list) -> tuple[list, list, list]:
    """Paste ``placed`` = [(sprite, label, centre, side, angle, tint)] in order into ``img``;
    returns each object's visible mask (what later objects cover removed), its label and the
    pixel count of its whole silhouette."""
    masks, labels, areas = [], [], []
    for sprite, label, centre, side, angle, tint in placed:
        m = _paste(img, sprite, centre, side, angle, tint)
        for prev in masks:
            prev &= ~m
        areas.append(int(m.sum()))
        masks.append(m)
        labels.append(label)
    return masks, labels, areas


class DetectionScenes:
    """Labelled still frames with 0 .. ``max_objects`` objects, deterministic by ``seed`` and index.

    ``objects``: ``"fashion"`` or ``"shapes"``; ``item_split``: the Fashion-MNIST split of the
    items; ``background``: a role of :func:`edge_runtime.photos.backgrounds`; ``camera``: a key of
    :data:`edge_runtime.photos.CAMERAS`; ``aspect_mix``: the share of 4:3 frames (letterboxed to
    the square input, ``resize``); ``empty_share``: the share of frames with no object.
    """

    def __init__(
        self,
        objects: str,
        item_split: str,
        background: str,
        *,
        size: int = 128,
        seed: int = 0,
        camera: str = "typical",
        aspect_mix: float = 0.25,
        resize: str = "letterbox",
        max_objects: int = 4,
        empty_share: float = 0.1,
        side: tuple[float, float] = (0.22, 0.55),
    ) -> None:
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        if not 0.0 <= empty_share <= 1.0:
            raise ValueError(f"empty_share must be in [0, 1], got {empty_share}")
        self.objects = _Objects(objects, item_split)
        self.class_names = self.objects.class_names
        self.size = size
        self.seed = seed
        self.camera = CAMERAS[camera]
        self.aspect_mix = aspect_mix
        self.resize = resize
        self.max_objects = max_objects
        self.empty_share = empty_share
        self.side = side
        self.bgs = backgrounds(background)

    def sample(self, index: int) -> BoxScene:
        rng = np.random.default_rng([self.seed, 104729, index])
        h = self.size
        wide = rng.random() < self.aspect_mix
        w = round(h * 4 / 3) if wide else h
        n = 0 if rng.random() < self.empty_share else int(rng.integers(1, self.max_objects + 1))
        bg = _crop(rng, self.bgs[int(rng.integers(len(self.bgs)))], h, w)
        for _attempt in range(20):
            placed, squares = [], []
            for _ in range(n):
                sprite, label = self.objects.draw(rng)
                side = rng.uniform(*self.side) * h
                for _try in range(30):
                    c = (rng.uniform(side * 0.35, w - side * 0.35), rng.uniform(side * 0.35, h - side * 0.35))
                    sq = (c[0], c[1], side * 0.8)
                    if all(_iou_square(sq, o) <= MAX_PLACE_IOU for o in squares):
                        break
                else:
                    continue  # no room left for this object: the frame has fewer
                squares.append(sq)
                placed.append((sprite, label, c, side, rng.uniform(-20, 20), _tint(rng)))
            img = bg.copy()
            masks, labels, areas = _compose(img, placed)
            if all(m.sum() >= MIN_VISIBLE * max(a, 1) for m, a in zip(masks, areas, strict=True)):
                break
        boxes = [box_of(m) for m in masks]
        keep = [i for i, b in enumerate(boxes) if b is not None]
        boxes = np.array([boxes[i] for i in keep], np.float32).reshape(-1, 4)
        labels = np.array([labels[i] for i in keep], np.int64)
        img = self.camera.apply(img, self.camera.draw(rng), rng)
        frame_hw = (h, w)
        if wide:
            boxes = fit_boxes(boxes, frame_hw, self.size, self.resize)
            img = fit(img, self.size, self.resize)
            ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, labels = boxes[ok], labels[ok]
        return BoxScene(img, boxes, labels, frame_hw)

    def batch(self, start: int, count: int, progress: bool = False):
        """Scenes ``start .. start+count-1``: images (N,H,W,3), a list of (n_i,4) boxes and a list
        of (n_i,) labels."""
        s = self.size
        images = np.empty((count, s, s, 3), np.uint8)
        boxes, labels = [], []
        it = range(count)
        if progress:
            from tqdm import tqdm  # offline side only

            it = tqdm(it, desc="scenes", unit="scene", mininterval=1.0)
        for i in it:
            sc = self.sample(start + i)
            images[i] = sc.image
            boxes.append(sc.boxes)
            labels.append(sc.labels)
        return images, boxes, labels


class DetectionStream:
    """An endless camera video with several tracks over a panning background photograph.

    Every ``segment`` frames a new scene starts (background, camera settings, 1 .. ``max_tracks``
    tracks). A track is one object moving at constant velocity and spin that bounces off the frame
    edges; a track may start after the segment starts or end before it ends (objects appear and
    leave). Frames are ``frame_hw`` (height, width), 4:3 by default: the edge letterboxes them
    to the model's input and the receiver maps boxes back. Boxes are in frame pixels.
    """

    def __init__(
        self,
        frame_hw: tuple[int, int] = (144, 192),
        seed: int = 0,
        *,
        segment: int = 90,
        speed: float = 1.5,
        max_tracks: int = 3,
        objects: str = "fashion",
        item_split: str = "demo",
        item_range: tuple[float, float] = (0.0, 1.0),
        background: str = "demo",
        side: tuple[float, float] = (0.28, 0.5),
    ) -> None:
        if segment < 1:
            raise ValueError(f"segment must be >= 1 frame, got {segment}")
        if max_tracks < 1:
            raise ValueError(f"max_tracks must be >= 1, got {max_tracks}")
        h, w = (int(v) for v in frame_hw)
        if h < 32 or w < 32:
            raise ValueError(f"frame_hw must be at least 32 x 32 pixels, got {frame_hw}")
        self.frame_hw = (h, w)
        self.seed = seed
        self.segment = segment
        self.speed = speed
        self.max_tracks = max_tracks
        self.side = side
        self.objects = _Objects(objects, item_split, item_range)
        self.class_names = self.objects.class_names
        self.num_classes = len(self.class_names)
        self.bgs = backgrounds(background)
        self._cache: tuple[int, dict] | None = None

    def _segment(self, k: int) -> dict:
        if self._cache is not None and self._cache[0] == k:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, 15485863, k])
        h, w = self.frame_hw
        bg = _crop(rng, self.bgs[int(rng.integers(len(self.bgs)))], 2 * h, 2 * w)
        tracks = []
        squares = []
        for _ in range(int(rng.integers(1, self.max_tracks + 1))):
            sprite, label = self.objects.draw(rng)
            side = rng.uniform(*self.side) * h
            for _try in range(30):
                c = (rng.uniform(side * 0.5, w - side * 0.5), rng.uniform(side * 0.5, h - side * 0.5))
                sq = (c[0], c[1], side * 0.8)
                if all(_iou_square(sq, o) <= MAX_PLACE_IOU for o in squares):
                    break
            squares.append(sq)
            span = self.segment
            start = 0 if rng.random() < 0.7 else int(rng.integers(0, max(1, span // 2)))
            end = span if rng.random() < 0.7 else int(rng.integers(start + max(1, span // 3), span + 1))
            tracks.append(
                {
                    "sprite": sprite,
                    "label": label,
                    "side": side,
                    "start_pos": np.array(c),
                    "vel": rng.normal(0, 1, 2) / np.sqrt(2) * self.speed,
                    "angle": rng.uniform(-15, 15),
                    "spin": rng.normal(0, 0.2),
                    "tint": _tint(rng),
                    "frames": (start, end),
                }
            )
        seg = {
            "bg": bg,
            "pan": rng.normal(0, 0.3, 2),
            "tracks": tracks,
            "camera": CAMERAS["typical"].draw(rng) | {"jpeg": 0},
        }
        self._cache = (k, seg)
        return seg

    def frame(self, t: int) -> BoxScene:
        """Frame number ``t`` (0-based); boxes in frame pixels."""
        if t < 0:
            raise ValueError(f"frame number must be >= 0, got {t}")
        k, i = divmod(t, self.segment)
        seg = self._segment(k)
        h, w = self.frame_hw
        off = np.clip(np.array([w / 2, h / 2]) + seg["pan"] * i, 0, [w, h]).astype(int)
        img = np.ascontiguousarray(seg["bg"][off[1] : off[1] + h, off[0] : off[0] + w])
        placed = []
        for tr in seg["tracks"]:
            a, b = tr["frames"]
            if not a <= i < b:
                continue
            half = tr["side"] * 0.4
            lo, hi = np.array([half, half]), np.array([w - half, h - half])
            span = hi - lo
            pos = tr["start_pos"] - lo + tr["vel"] * (i - a)
            pos = np.abs((pos + 2 * span) % (2 * span) - span) + lo  # bounce off the edges
            placed.append(
                (tr["sprite"], tr["label"], pos, tr["side"], tr["angle"] + tr["spin"] * (i - a), tr["tint"])
            )
        masks, labels, _ = _compose(img, placed)
        boxes = [box_of(m) for m in masks]
        keep = [j for j, bx in enumerate(boxes) if bx is not None]
        img = Camera.apply(img, seg["camera"], np.random.default_rng([self.seed, k, i]))
        return BoxScene(
            img,
            np.array([boxes[j] for j in keep], np.float32).reshape(-1, 4),
            np.array([labels[j] for j in keep], np.int64),
            (h, w),
        )

    def __iter__(self):
        t = 0
        while True:
            yield self.frame(t)
            t += 1
