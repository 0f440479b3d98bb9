"""Detection on the runtime side: the bundle's detection parameters, NMS, boxes in frame pixels, mAP.

A detection bundle's back half (``back.onnx``) yields, per frame, P candidate boxes: ``logits``
(P x K, a sigmoid score per class) and ``boxes`` (P x 4, ``x0, y0, x1, y1`` in model-input
pixels). The receiver turns them into detections with :func:`postprocess`: scores above the
manifest's ``score_threshold``, the ``pre_nms_top_k`` best, non-maximum suppression per class at
``nms_iou`` (OpenCV's ``cv2.dnn.NMSBoxesBatched``), at most ``max_detections`` kept. Boxes are then
mapped to the camera frame's pixels with :func:`edge_runtime.framing.unfit_boxes` (the letterbox
undone) when the frame's size is known.

mAP is COCO's (``pycocotools``' ``COCOeval``, the reference implementation: 101-point
interpolated precision, IoU 0.50:0.05:0.95, up to 100 detections per image, all areas), through
:func:`mean_average_precision`.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import cv2
import numpy as np

from edge_runtime.errors import BundleError

__all__ = [
    "DetectionParams",
    "Detection",
    "postprocess",
    "nms",
    "box_iou",
    "mean_average_precision",
    "params_of",
    "FrameGeometry",
    "parse_frame_size",
]


@dataclass(frozen=True)
class DetectionParams:
    """From a detection bundle's manifest (``detection``)."""

    score_threshold: float = 0.3
    nms_iou: float = 0.5
    max_detections: int = 50
    pre_nms_top_k: int = 200
    box_format: str = "xyxy"

    def to_dict(self) -> dict:
        return {
            "score_threshold": self.score_threshold,
            "nms_iou": self.nms_iou,
            "max_detections": self.max_detections,
            "pre_nms_top_k": self.pre_nms_top_k,
            "box_format": self.box_format,
            "box_units": "input_pixels",
            "scores": "sigmoid",
        }


def params_of(manifest: dict) -> DetectionParams:
    """The detection parameters of a manifest; :class:`BundleError` naming a bad value."""
    d = manifest.get("detection")
    if not isinstance(d, dict):
        raise BundleError("a detection bundle's manifest needs a 'detection' object (score threshold, NMS)")
    if d.get("box_format", "xyxy") != "xyxy":
        raise BundleError(f"detection.box_format must be 'xyxy', got {d.get('box_format')!r}")
    p = DetectionParams(
        float(d.get("score_threshold", 0.3)),
        float(d.get("nms_iou", 0.5)),
        int(d.get("max_detections", 50)),
        int(d.get("pre_nms_top_k", 200)),
    )
    if not 0.0 <= p.score_threshold < 1.0:
        raise BundleError(f"detection.score_threshold must be in [0, 1), got {p.score_threshold}")
    if not 0.0 < p.nms_iou <= 1.0:
        raise BundleError(f"detection.nms_iou must be in (0, 1], got {p.nms_iou}")
    if p.max_detections < 1 or p.pre_nms_top_k < 1:
        raise BundleError("detection.max_detections and pre_nms_top_k must be >= 1")
    return p


@dataclass(frozen=True)
class Detection:
    """One detection: class index, score and box ``[x0, y0, x1, y1]`` (pixels)."""

    cls: int
    score: float
    box: tuple[float, float, float, float]

    def to_dict(self, classes=None) -> dict:
        d = {"class": self.cls, "score": round(self.score, 5), "box": [round(v, 2) for v in self.box]}
        if classes is not None:
            d["label"] = classes[self.cls]
        return d


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of ``x0, y0, x1, y1`` boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix0 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy0 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix1 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    ab = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = aa[:, None] + ab[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, top_k: int = 0) -> np.ndarray:
    """Indices kept by per-class non-maximum suppression, best score first (OpenCV's
    ``NMSBoxesBatched``: a box is dropped when it overlaps a better box of its class by more than
    ``iou``)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    xywh = np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1).astype(np.float32)
    keep = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(), np.asarray(scores, np.float32).tolist(), np.asarray(classes, np.int32).tolist(),
        0.0, float(iou), top_k=int(top_k),
    )  # fmt: skip
    keep = np.asarray(keep, np.int64).reshape(-1)
    return keep[np.argsort(-np.asarray(scores)[keep], kind="stable")]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def postprocess(logits: np.ndarray, boxes: np.ndarray, params: DetectionParams) -> list[Detection]:
    """One frame's back-half outputs (P x K logits, P x 4 boxes, input pixels) -> detections, best
    first: threshold, top-k, per-class NMS, at most ``max_detections``."""
    logits = np.asarray(logits)
    boxes = np.asarray(boxes, np.float32)
    if logits.ndim != 2 or boxes.shape != (logits.shape[0], 4):
        raise ValueError(f"expected logits (P, K) and boxes (P, 4), got {logits.shape} and {boxes.shape}")
    scores = _sigmoid(logits.astype(np.float64))
    cell, cls = np.nonzero(scores > params.score_threshold)
    if cell.size == 0:
        return []
    s = scores[cell, cls]
    order = np.argsort(-s, kind="stable")[: params.pre_nms_top_k]
    cell, cls, s = cell[order], cls[order], s[order]
    b = boxes[cell]
    keep = nms(b, s, cls, params.nms_iou)[: params.max_detections]
    return [Detection(int(cls[i]), float(s[i]), tuple(float(v) for v in b[i])) for i in keep]


def coco_inputs(detections: list, truths: list, num_classes: int):
    """``pycocotools``' ground truth (a ``COCO`` with its index built) and detection list for
    ``detections`` against ``truths`` (as in :func:`mean_average_precision`); image ``i`` has id
    ``i + 1``, class ``c`` category ``c + 1``. Shared by :func:`mean_average_precision` and the
    benchmarks' bootstrap (``benchmarks/detect_map.py``)."""
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} detection lists for {len(truths)} images")
    from pycocotools.coco import COCO

    images, anns, dets = [], [], []
    aid = 1
    for i, ((tb, tc), d) in enumerate(zip(truths, detections, strict=True)):
        images.append({"id": i + 1})
        for b, c in zip(np.asarray(tb, np.float64).reshape(-1, 4), np.asarray(tc).reshape(-1), strict=True):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            anns.append({"id": aid, "image_id": i + 1, "category_id": int(c) + 1, "bbox": [float(b[0]), float(b[1]), w, h],
                         "area": w * h, "iscrowd": 0})  # fmt: skip
            aid += 1
        if isinstance(d, tuple):
            db, ds, dc = d
            rows = zip(
                np.asarray(db).reshape(-1, 4),
                np.asarray(ds).reshape(-1),
                np.asarray(dc).reshape(-1),
                strict=True,
            )
        else:
            rows = ((np.asarray(x.box), x.score, x.cls) for x in d)
        for b, s, c in rows:
            dets.append({"image_id": i + 1, "category_id": int(c) + 1, "score": float(s),
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})  # fmt: skip
    if not anns:
        raise ValueError("mAP needs at least one ground-truth object")
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": k + 1} for k in range(num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints progress lines
        gt.createIndex()
    return gt, dets


def mean_average_precision(
    detections: list, truths: list, num_classes: int, *, per_class: bool = False
) -> dict:
    """COCO mAP of ``detections`` against ``truths``, one entry per image.

    ``detections[i]``: a list of :class:`Detection` (or ``(boxes (n,4), scores (n,), classes
    (n,))``); ``truths[i]``: ``(boxes (m,4), classes (m,))``. Boxes ``x0, y0, x1, y1`` in one
    coordinate system per image. Returns ``map`` (IoU 0.50:0.95), ``map50``, ``map75``, ``n``
    (images), ``objects`` and with ``per_class`` the AP@0.5 of each class (NaN: no object of it).
    """
    from pycocotools.cocoeval import COCOeval

    gt, dets = coco_inputs(detections, truths, num_classes)
    out = {"n": len(truths), "objects": len(gt.dataset["annotations"])}
    if not dets:
        out.update(map=0.0, map50=0.0, map75=0.0)
        return out
    with contextlib.redirect_stdout(io.StringIO()):  # COCO prints progress lines
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = ev.stats
    out.update(
        map=max(0.0, float(stats[0])), map50=max(0.0, float(stats[1])), map75=max(0.0, float(stats[2]))
    )
    if per_class:
        # precision: [T, R, K, A, M]; T index 0 = IoU 0.5, A index 0 = all areas, M last = 100 dets
        prec = ev.eval["precision"][0, :, :, 0, -1]
        out["ap50_per_class"] = [
            float(np.mean(p[p > -1])) if (p > -1).any() else float("nan") for p in prec.T
        ]
    return out


def parse_frame_size(text: str) -> tuple[str, tuple[int, int]]:
    """``[STREAM=]WIDTHxHEIGHT`` -> (stream id or "*", (height, width)); ValueError naming the text."""
    stream, _, size = text.rpartition("=")
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ValueError(
            f"frame size must be [STREAM=]WIDTHxHEIGHT like 1280x720 or cam0=640x480, got {text!r}"
        ) from None
    if w < 1 or h < 1 or w > 16384 or h > 16384:
        raise ValueError(f"frame size must be 1..16384 pixels per side, got {text!r}")
    return (stream or "*"), (h, w)


class FrameGeometry:
    """The camera frame size of each stream, so that the receiver gives boxes in frame pixels.

    The wire carries no frame size: the edge letterboxes (``source.resize``) each camera frame to
    the model's input, and the receiver undoes it with :func:`edge_runtime.framing.unfit_boxes`
    for the size configured here (``--frame-size [STREAM=]WxH``; ``*``: every other stream). A
    stream with no size configured gets boxes in model-input pixels (``coords = "input"``).
    """

    def __init__(self, sizes: dict[str, tuple[int, int]] | None = None, resize: str = "letterbox") -> None:
        from edge_runtime.framing import RESIZE_MODES

        if resize not in RESIZE_MODES:
            raise ValueError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        self.sizes = dict(sizes or {})
        self.resize = resize

    @classmethod
    def parse(cls, specs, resize: str = "letterbox") -> FrameGeometry:
        return cls(dict(parse_frame_size(t) for t in specs or ()), resize)

    def to_spec(self) -> dict:
        return {"sizes": {k: list(v) for k, v in self.sizes.items()}, "resize": self.resize}

    @classmethod
    def from_spec(cls, spec: dict | None) -> FrameGeometry:
        spec = spec or {}
        return cls({k: tuple(v) for k, v in spec.get("sizes", {}).items()}, spec.get("resize", "letterbox"))

    def frame_hw(self, stream_id: str) -> tuple[int, int] | None:
        return self.sizes.get(stream_id, self.sizes.get("*"))

    def to_frame(self, dets: list, stream_id: str, input_hw: tuple[int, int], classes) -> list[dict]:
        """Detections (input pixels) -> JSON-ready dicts in frame pixels (input pixels when the
        stream's frame size is not configured)."""
        from edge_runtime.framing import unfit_boxes

        if not dets:
            return []
        hw = self.frame_hw(stream_id)
        boxes = np.array([d.box for d in dets], np.float32)
        if hw is not None:
            boxes = unfit_boxes(boxes, hw, input_hw, self.resize)
        return [
            Detection(d.cls, d.score, tuple(float(v) for v in b)).to_dict(classes)
            for d, b in zip(dets, boxes, strict=True)
        ]
