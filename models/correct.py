"""Correcting ABN attention maps: edits, recognition with a corrected map, and teacher-map storage.

The map M of an ABN lives at the split resolution (16 x 16 for a 128 x 128 input); edits are given
in *image* pixel coordinates and resized to the map's grid here, in one place:

* coordinates are continuous, pixel ``(row i, column j)`` covers ``[j, j+1) x [i, i+1)``, so its
  centre is ``(j + 0.5, i + 0.5)`` (what a browser's ``offsetX * W / clientWidth`` gives);
* a brush stroke is rasterised at image resolution (a pixel is covered when its centre is within
  ``radius`` of the stroke's polyline), then area-averaged onto the map grid, so a map cell's
  *coverage* is the fraction of its pixels the brush touched;
* ``erase`` scales a cell towards 0 by ``strength * coverage``, ``add`` moves it towards 1 by
  ``strength * coverage``; a mask image is area-averaged the same way;
* a map is shown over the image with :func:`map_to_image` (bilinear, half-pixel centres).

Recognition with a corrected map runs the synthesis and perception branch, in PyTorch
(:func:`recognize_torch`) or through the bundle's ``back_map.onnx`` (:class:`BundleRecognizer`,
no torch). This module imports torch only inside the PyTorch functions, so the editor's server
needs onnxruntime alone.

Teacher maps are stored in a data set folder by :class:`TeacherStore`: ``teacher_maps/<name>.npy``
plus ``teacher_maps/index.json``, every file written to a temporary file and moved into place with
``os.replace``, so a reader never sees a half-written map or index.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.atomic import write_bytes

__all__ = [
    "Stroke",
    "stroke_coverage",
    "apply_strokes",
    "map_from_mask",
    "new_map",
    "map_to_image",
    "attention_map",
    "recognize_torch",
    "BundleRecognizer",
    "TeacherStore",
    "TEACHER_DIR",
    "list_image_folder",
]

TEACHER_DIR = "teacher_maps"
INDEX_NAME = "index.json"
INDEX_VERSION = 1
MODES = ("erase", "add")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass(frozen=True)
class Stroke:
    """A brush stroke: a polyline of ``points`` ``(x, y)`` in image pixels, a ``radius`` in image
    pixels, ``mode`` ``"erase"`` or ``"add"``, and ``strength`` in ``(0, 1]``."""

    points: tuple[tuple[float, float], ...]
    radius: float
    mode: str = "erase"
    strength: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"stroke mode must be one of {MODES}, got {self.mode!r}")
        if not (self.radius > 0 and np.isfinite(self.radius)):
            raise ValueError(f"stroke radius must be a positive number of pixels, got {self.radius!r}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"stroke strength must be in (0, 1], got {self.strength!r}")
        pts = tuple((float(x), float(y)) for x, y in self.points)
        if not pts or not all(np.isfinite(v) for p in pts for v in p):
            raise ValueError(f"a stroke needs at least one finite (x, y) point, got {self.points!r}")
        object.__setattr__(self, "points", pts)

    @classmethod
    def from_dict(cls, d: dict) -> Stroke:
        """From the JSON form ``{"points": [[x, y], ...], "radius": r, "mode": ..., "strength": s}``."""
        try:
            return cls(
                tuple(tuple(p) for p in d["points"]),
                float(d["radius"]),
                str(d.get("mode", "erase")),
                float(d.get("strength", 1.0)),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"bad stroke {d!r}: {e}") from None

    def to_dict(self) -> dict:
        return {
            "points": [list(p) for p in self.points],
            "radius": self.radius,
            "mode": self.mode,
            "strength": self.strength,
        }


def _check_map(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float32)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"a map must be a non-empty 2-D array (h, w), got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError("a map must hold finite values")
    return m


def _pixel_coverage(stroke: Stroke, image_size: tuple[int, int]) -> np.ndarray:
    """1.0 where a pixel centre lies within ``radius`` of the stroke's polyline (H x W float32)."""
    h, w = image_size
    pts = np.asarray(stroke.points, np.float64)
    r = stroke.radius
    # Only the bounding box of the stroke (plus radius) can be covered.
    x0 = max(0, int(np.floor(pts[:, 0].min() - r)))
    x1 = min(w, int(np.ceil(pts[:, 0].max() + r)) + 1)
    y0 = max(0, int(np.floor(pts[:, 1].min() - r)))
    y1 = min(h, int(np.ceil(pts[:, 1].max() + r)) + 1)
    out = np.zeros((h, w), np.float32)
    if x0 >= x1 or y0 >= y1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    best = np.full(xx.shape, np.inf)
    segs = zip(pts, pts[1:], strict=False) if len(pts) > 1 else [(pts[0], pts[0])]
    for a, b in segs:
        d = b - a
        dd = float(d @ d)
        if dd == 0.0:
            t = np.zeros_like(xx)
        else:
            t = np.clip(((xx - a[0]) * d[0] + (yy - a[1]) * d[1]) / dd, 0.0, 1.0)
        dist2 = (xx - a[0] - t * d[0]) ** 2 + (yy - a[1] - t * d[1]) ** 2
        np.minimum(best, dist2, out=best)
    out[y0:y1, x0:x1] = best <= r * r
    return out


def _area_resize(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area average of ``a`` (H x W) onto an ``h x w`` grid (exact block means when H = k h)."""
    h, w = shape
    if a.shape == (h, w):
        return a.astype(np.float32)
    return cv2.resize(a.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA)


def stroke_coverage(stroke: Stroke, image_size: Sequence[int], map_shape: Sequence[int]) -> np.ndarray:
    """Fraction of each map cell's pixels that ``stroke`` covers (``map_shape`` float32 in [0, 1])."""
    image_size = (int(image_size[0]), int(image_size[1]))
    map_shape = (int(map_shape[0]), int(map_shape[1]))
    if min(image_size) < 1 or min(map_shape) < 1:
        raise ValueError(f"image size {image_size} and map shape {map_shape} must be positive")
    return np.clip(_area_resize(_pixel_coverage(stroke, image_size), map_shape), 0.0, 1.0)


def apply_strokes(m: np.ndarray, strokes: Iterable[Stroke | dict], image_size: Sequence[int]) -> np.ndarray:
    """Apply brush ``strokes`` (image pixel coordinates, ``image_size`` = (H, W)) to map ``m``
    (h x w) in order; returns a new float32 map in [0, 1]. ``m`` is not modified."""
    out = np.clip(_check_map(m), 0.0, 1.0).copy()
    for s in strokes:
        s = s if isinstance(s, Stroke) else Stroke.from_dict(s)
        c = s.strength * stroke_coverage(s, image_size, out.shape)
        if s.mode == "erase":
            out *= 1.0 - c
        else:
            out += c * (1.0 - out)
    return out


def map_from_mask(mask: np.ndarray, map_shape: Sequence[int]) -> np.ndarray:
    """A map from a mask image (H x W, or H x W x C averaged over channels): bool, uint8 (0..255)
    or float (0..1); area-averaged onto ``map_shape``. Returns float32 in [0, 1]."""
    src = np.asarray(mask)
    if src.ndim not in (2, 3) or src.size == 0:
        raise ValueError(f"a mask must be an H x W (or H x W x C) image, got shape {src.shape}")
    if src.dtype == np.bool_:
        a = src.astype(np.float32)
    elif np.issubdtype(src.dtype, np.integer):
        a = src.astype(np.float32) / 255.0
    else:
        a = src.astype(np.float32)
    if a.ndim == 3:
        a = a.mean(axis=2)
    if not np.all(np.isfinite(a)):
        raise ValueError("a mask must hold finite values")
    return np.clip(_area_resize(np.clip(a, 0.0, 1.0), (int(map_shape[0]), int(map_shape[1]))), 0.0, 1.0)


def new_map(map_shape: Sequence[int], value: float = 0.0) -> np.ndarray:
    """A map from scratch: every cell ``value`` (0: draw what matters with "add"; 1: erase)."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a map value must be in [0, 1], got {value}")
    return np.full((int(map_shape[0]), int(map_shape[1])), value, np.float32)


def map_to_image(m: np.ndarray, image_size: Sequence[int]) -> np.ndarray:
    """Resize a map to the image (H x W) for display: bilinear with half-pixel centres."""
    m = _check_map(m)
    h, w = int(image_size[0]), int(image_size[1])
    return cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)


# --------------------------------------------------------------------------- recognition


def _to_tensor(images: np.ndarray, mean, std):
    from edge_runtime.models.data import to_tensor

    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 RGB, got dtype {images.dtype}")
    return to_tensor(images[None] if images.ndim == 3 else images, mean, std)


def attention_map(model, images: np.ndarray, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)) -> dict:
    """Run an ABN (PyTorch, eval mode) on uint8 RGB ``images`` (N,H,W,3 or H,W,3).

    Returns float32 arrays: ``map`` (N,h,w), ``logits`` (perception), ``att_logits`` and
    ``features`` (N,C,h,w, to re-run recognition with a corrected map).
    """
    import torch

    x = _to_tensor(images, mean, std)
    model.eval()
    with torch.no_grad():
        f, _ = model.features(x)
        att, m = model.attention(f)
        logits = model.back_with_map(f, m)
    return {
        "map": m[:, 0].numpy(),
        "logits": logits.numpy(),
        "att_logits": att.numpy(),
        "features": f.numpy(),
    }


def recognize_torch(model, features: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """Perception logits (N,K) for split tensors ``features`` (N,C,h,w) and maps (N,h,w) or (h,w)."""
    import torch

    f = torch.from_numpy(np.ascontiguousarray(features, np.float32))
    m = _maps_nchw(maps, f.shape)
    model.eval()
    with torch.no_grad():
        return model.back_with_map(f, torch.from_numpy(m)).numpy()


def _maps_nchw(maps: np.ndarray, fshape) -> np.ndarray:
    m = np.asarray(maps, np.float32)
    if m.ndim == 2:
        m = np.broadcast_to(m, (fshape[0], *m.shape))
    if m.ndim == 3:
        m = m[:, None]
    if m.shape != (fshape[0], 1, fshape[2], fshape[3]):
        raise ValueError(
            f"maps of shape {np.asarray(maps).shape} do not fit features of shape {tuple(fshape)}; "
            f"a map must be {fshape[2]} x {fshape[3]} (the split resolution)"
        )
    return np.ascontiguousarray(m)


class BundleRecognizer:
    """Attention maps and recognition with corrected maps through an ABN bundle (onnxruntime only).

    Uses ``front.onnx`` (image -> features), ``attention.onnx`` (features -> M, attention logits)
    and ``back_map.onnx`` (features, M -> logits).
    """

    def __init__(self, bundle) -> None:
        from edge_runtime.errors import BundleError

        missing = [g for g in ("front", "attention", "back_map") if not bundle.has_graph(g)]
        if missing:
            raise BundleError(
                f"bundle {bundle.path} lacks graphs {missing}; correcting maps needs an ABN bundle "
                "(export one with `edge-runtime export`)"
            )
        self.bundle = bundle
        self.map_shape = tuple(bundle.split_shape[1:])
        self.image_size = tuple(bundle.input.size)

    def analyse(self, images: np.ndarray, batch_size: int = 64) -> dict:
        """Features, map, attention logits and perception logits for uint8 RGB images."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        parts: dict[str, list] = {"features": [], "map": [], "att_logits": [], "logits": []}
        for i in range(0, len(images), batch_size):
            x = self.bundle.preprocess(images[i : i + batch_size])
            f = self.bundle.front(x)[self.bundle.split_name]
            att = self.bundle.run("attention", {"features": f})
            parts["features"].append(f)
            parts["map"].append(att["abn_map"][:, 0])
            parts["att_logits"].append(att["att_logits"])
            parts["logits"].append(self.recognize(f, att["abn_map"][:, 0]))
        return {k: np.concatenate(v) for k, v in parts.items()}

    def recognize(self, features: np.ndarray, maps: np.ndarray) -> np.ndarray:
        """Logits (N,K) for split tensors (N,C,h,w) and maps (N,h,w) or (h,w), via back_map.onnx."""
        f = np.ascontiguousarray(features, np.float32)
        return self.bundle.run("back_map", {"features": f, "abn_map": _maps_nchw(maps, f.shape)})["logits"]


# --------------------------------------------------------------------------- teacher maps


def list_image_folder(root: str | Path) -> tuple[tuple[str, ...], list[tuple[str, int]]]:
    """Classes and ``(relative path, label)`` of an ImageFolder tree, in the order that
    :func:`models.data.image_folder` loads it (sorted classes, sorted files)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != TEACHER_DIR))
    items = []
    for k, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                items.append((f"{name}/{path.name}", k))
    return classes, items


def _file_name(key: str) -> str:
    """A safe, unique file name for an image key (e.g. ``"star/0003.png"`` -> ``star_0003.png-<hash>.npy``)."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[-80:]
    return f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:10]}.npy"


@dataclass
class TeacherStore:
    """Teacher maps of a data set folder: ``<root>/teacher_maps/*.npy`` and ``index.json``.

    The index maps an image key (its path relative to the data set folder) to its map file, the
    map shape, the label, the model id the map was drawn against, the strokes and a time stamp.
    Writes are atomic and serialised by a lock (the editor's server saves from several threads).
    """

    root: Path
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def folder(self) -> Path:
        return self.root / TEACHER_DIR

    @property
    def index_path(self) -> Path:
        return self.folder / INDEX_NAME

    def index(self) -> dict:
        """The index (``{"version": 1, "entries": {key: entry}}``); empty when nothing is saved."""
        if not self.index_path.is_file():
            return {"version": INDEX_VERSION, "entries": {}}
        doc = json.loads(self.index_path.read_text())
        if doc.get("version") != INDEX_VERSION or not isinstance(doc.get("entries"), dict):
            raise ValueError(f"{self.index_path}: not a teacher-map index of version {INDEX_VERSION}")
        return doc

    def save(self, key: str, m: np.ndarray, **meta) -> Path:
        """Save map ``m`` for image ``key`` (map file first, then the index); returns the map's path."""
        m = _check_map(m)
        if not key or key.startswith("/") or ".." in Path(key).parts:
            raise ValueError(f"image key must be a relative path inside the data set, got {key!r}")
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            name = _file_name(key)
            buf = io.BytesIO()
            np.save(buf, np.clip(m, 0.0, 1.0).astype(np.float32))
            write_bytes(self.folder / name, buf.getvalue())
            doc = self.index()
            doc["entries"][key] = {
                "file": name,
                "shape": list(m.shape),
                "saved_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                **meta,
            }
            write_bytes(self.index_path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())
        return self.folder / name

    def load(self, key: str) -> np.ndarray:
        entry = self.index()["entries"].get(key)
        if entry is None:
            raise KeyError(f"no teacher map for {key!r} in {self.index_path}")
        return np.load(self.folder / entry["file"])

    def load_all(self) -> dict[str, np.ndarray]:
        """Every teacher map by image key."""
        return {k: np.load(self.folder / e["file"]) for k, e in self.index()["entries"].items()}

    def __contains__(self, key: str) -> bool:
        return key in self.index()["entries"]

    def __len__(self) -> int:
        return len(self.index()["entries"])
