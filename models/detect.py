"""The detector: an anchor-free, CenterNet / TTFNet-style network split like the classifier.

::

    image (3 x 128 x 128)
      └ FeatureExtractor (the classifier's: three stride-2 stages, 1 x 1 bottleneck)
          └ f: the split tensor, C_b x 16 x 16 (8 channels at stride 8, as the classifier's)
              ├ objectness (front, tiny): 1 x 16 x 16, "an object centre is here" (sigmoid)
              └ back half: two 3 x 3 convs at stride 8, a 2 x 2 transposed conv to stride 4,
                then two heads at 32 x 32:
                  class logits  K x 32 x 32   (a centre heat map per class, sigmoid)
                  box distances 4 x 32 x 32   (left, top, right, bottom from the cell centre)

The back half's outputs are flattened to P = 32 x 32 candidate boxes per image: ``logits``
(N x P x K) and ``boxes`` (N x P x 4, ``x0, y0, x1, y1`` in input pixels); the receiver thresholds
the sigmoid scores and runs NMS (``edge_runtime.detection``). Training (TTFNet's recipe, Liu et
al. 2020, chosen because it trains fast): a Gaussian centre heat map per class (sigma = 0.54 x
the box side / 6) with CenterNet's focal loss, and a GIoU loss on the boxes of every cell in each
object's Gaussian, weighted by it. The objectness head learns the heat map's maximum over classes
at stride 8; the edge uses it to send the empty message when a frame has no object (fused
attention, which cannot see detections).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.models.networks import ConvBNReLU, FeatureExtractor

__all__ = [
    "DETECTOR_REGISTRY",
    "Detector",
    "build_detector",
    "decode_boxes",
    "targets",
    "detection_loss",
    "OUT_STRIDE",
    "SPLIT_STRIDE",
]

OUT_STRIDE = 4
SPLIT_STRIDE = 8
#: Box distances are ``softplus(t) * BOX_SCALE`` pixels: a raw output of 0 is a 22-pixel object.
BOX_SCALE = 16.0
GAUSS_ALPHA = 0.54  # TTFNet's alpha (heat map) and beta (regression area)

DETECTOR_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def _register(name: str):
    def deco(factory):
        if name in DETECTOR_REGISTRY:
            raise ValueError(f"detector {name!r} is registered twice")
        DETECTOR_REGISTRY[name] = factory
        return factory

    return deco


def build_detector(name: str, **kwargs) -> nn.Module:
    """Build a registered detector; the error lists the names that exist."""
    try:
        factory = DETECTOR_REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r}; known: {sorted(DETECTOR_REGISTRY)}") from None
    model = factory(**kwargs)
    model.arch = name
    return model


def decode_boxes(dist: torch.Tensor, stride: int = OUT_STRIDE) -> torch.Tensor:
    """Raw distances (N, 4, H, W) -> boxes (N, 4, H, W) ``x0, y0, x1, y1`` in input pixels."""
    n, _, h, w = dist.shape
    d = F.softplus(dist) * BOX_SCALE
    # the cell centres as constants: built from shapes only, so they fold in the exported graph
    ys = (torch.arange(h, dtype=dist.dtype) + 0.5) * stride
    xs = (torch.arange(w, dtype=dist.dtype) + 0.5) * stride
    cx = xs.view(1, 1, w).expand(1, h, w)
    cy = ys.view(1, h, 1).expand(1, h, w)
    return torch.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], dim=1)


class Detector(nn.Module):
    """Front: :class:`FeatureExtractor` + objectness; back: :meth:`back` -> (logits, boxes)."""

    def __init__(
        self, num_classes: int = 10, bottleneck: int = 8, widths=(24, 48, 64), head_width: int = 64
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.task = "detect"
        self.features = FeatureExtractor(tuple(widths), bottleneck)
        self.objectness = nn.Sequential(ConvBNReLU(bottleneck, 16), nn.Conv2d(16, 1, 1))
        hw = head_width
        self.neck = nn.Sequential(ConvBNReLU(bottleneck, hw), ConvBNReLU(hw, hw))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(hw, hw // 2, 2, stride=2, bias=False), nn.BatchNorm2d(hw // 2), nn.ReLU()
        )
        self.cls_head = nn.Sequential(ConvBNReLU(hw // 2, hw // 2), nn.Conv2d(hw // 2, num_classes, 1))
        self.box_head = nn.Sequential(ConvBNReLU(hw // 2, hw // 2), nn.Conv2d(hw // 2, 4, 1))
        # focal-loss prior: every cell starts at score 0.01 (CenterNet / RetinaNet)
        nn.init.constant_(self.cls_head[-1].bias, -4.6)
        nn.init.constant_(self.objectness[-1].bias, -4.6)
        self.config = {
            "num_classes": num_classes,
            "bottleneck": bottleneck,
            "widths": list(widths),
            "head_width": head_width,
        }

    def objectness_logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.objectness(f)

    def back_maps(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split tensor -> (class logits N x K x H x W, raw box distances N x 4 x H x W)."""
        u = self.up(self.neck(f))
        return self.cls_head(u), self.box_head(u)

    def back(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split tensor -> (logits N x P x K, boxes N x P x 4 in input pixels)."""
        logits, dist = self.back_maps(f)
        boxes = decode_boxes(dist)
        n, k = logits.shape[:2]
        return logits.flatten(2).transpose(1, 2), boxes.flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f, _ = self.features(x)
        return self.back(f)


@_register("centernet-s")
def _centernet_s(num_classes=10, bottleneck=8, widths=(24, 48, 64), head_width=64) -> Detector:
    return Detector(num_classes, bottleneck, widths, head_width)


# --- training targets and losses --------------------------------------------------------------------


def _gaussian(h: int, w: int, box, stride: int, alpha: float) -> torch.Tensor:
    """An (h, w) Gaussian at the box centre (output cells), sigma = alpha * side / 6 per axis."""
    x0, y0, x1, y1 = (float(v) / stride for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    sx, sy = max(alpha * (x1 - x0) / 6, 0.25), max(alpha * (y1 - y0) / 6, 0.25)
    ys = torch.arange(h, dtype=torch.float32) + 0.5
    xs = torch.arange(w, dtype=torch.float32) + 0.5
    g = torch.exp(-((xs[None] - cx) ** 2) / (2 * sx**2) - ((ys[:, None] - cy) ** 2) / (2 * sy**2))
    # the centre cell is exactly 1 (the focal loss's positives)
    iy, ix = min(int(cy), h - 1), min(int(cx), w - 1)
    g[iy, ix] = 1.0
    return g


def targets(boxes: list, labels: list, num_classes: int, size: int, stride: int = OUT_STRIDE) -> dict:
    """Training targets of a batch: ``heat`` (N,K,H,W), ``box`` (N,4,H,W) target boxes,
    ``weight`` (N,H,W) regression weights, ``obj`` (N,1,H/2,W/2) objectness at the split stride."""
    n = len(boxes)
    h = w = size // stride
    heat = torch.zeros(n, num_classes, h, w)
    box = torch.zeros(n, 4, h, w)
    weight = torch.zeros(n, h, w)
    area_best = torch.full((n, h, w), float("inf"))
    for i, (bs, ls) in enumerate(zip(boxes, labels, strict=True)):
        for b, c in zip(bs, ls, strict=True):
            g = _gaussian(h, w, b, stride, GAUSS_ALPHA)
            heat[i, int(c)] = torch.maximum(heat[i, int(c)], g)
            # regression cells: inside the Gaussian (> 0.05) and inside the box; a cell two
            # objects claim regresses the smaller one (FCOS's rule)
            ys = (torch.arange(h, dtype=torch.float32) + 0.5) * stride
            xs = (torch.arange(w, dtype=torch.float32) + 0.5) * stride
            inside = (xs[None] >= b[0]) & (xs[None] <= b[2]) & (ys[:, None] >= b[1]) & (ys[:, None] <= b[3])
            area = float((b[2] - b[0]) * (b[3] - b[1]))
            cells = (g > 0.05) & inside & (area < area_best[i])
            cells[
                min(int((b[1] + b[3]) / 2 / stride), h - 1), min(int((b[0] + b[2]) / 2 / stride), w - 1)
            ] = True
            area_best[i][cells] = area
            weight[i][cells] = g[cells]
            box[i, :, cells] = torch.as_tensor(b, dtype=torch.float32)[:, None]
    obj = F.max_pool2d(heat.amax(dim=1, keepdim=True), 2)
    return {"heat": heat, "box": box, "weight": weight, "obj": obj}


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), normalised by the positives."""
    p = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1.0 - pos
    pos_loss = -(torch.log(p) * (1 - p) ** 2 * pos).sum()
    neg_loss = -(torch.log(1 - p) * p**2 * (1 - target) ** 4 * neg).sum()
    return (pos_loss + neg_loss) / pos.sum().clamp(min=1.0)


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - GIoU per box, boxes (..., 4) ``x0, y0, x1, y1``."""
    ix0, iy0 = torch.maximum(pred[..., 0], target[..., 0]), torch.maximum(pred[..., 1], target[..., 1])
    ix1, iy1 = torch.minimum(pred[..., 2], target[..., 2]), torch.minimum(pred[..., 3], target[..., 3])
    inter = (ix1 - ix0).clamp(min=0) * (iy1 - iy0).clamp(min=0)
    ap = (pred[..., 2] - pred[..., 0]) * (pred[..., 3] - pred[..., 1])
    at = (target[..., 2] - target[..., 0]) * (target[..., 3] - target[..., 1])
    union = ap + at - inter
    iou = inter / union.clamp(min=1e-6)
    cx0, cy0 = torch.minimum(pred[..., 0], target[..., 0]), torch.minimum(pred[..., 1], target[..., 1])
    cx1, cy1 = torch.maximum(pred[..., 2], target[..., 2]), torch.maximum(pred[..., 3], target[..., 3])
    hull = ((cx1 - cx0) * (cy1 - cy0)).clamp(min=1e-6)
    return 1.0 - (iou - (hull - union) / hull)


def detection_loss(model: Detector, x: torch.Tensor, tgt: dict, box_weight: float = 5.0) -> dict:
    """Focal loss of the class heat map + ``box_weight`` x weighted GIoU loss + the objectness
    focal loss; returns the parts and ``total``."""
    f, _ = model.features(x)
    logits, dist = model.back_maps(f)
    boxes = decode_boxes(dist.float())
    w = tgt["weight"]
    giou = giou_loss(boxes.permute(0, 2, 3, 1), tgt["box"].permute(0, 2, 3, 1))
    box = (giou * w).sum() / w.sum().clamp(min=1e-6)
    heat = focal_loss(logits, tgt["heat"])
    obj = focal_loss(model.objectness_logits(f), tgt["obj"])
    total = heat + box_weight * box + 0.5 * obj
    return {"total": total, "heat": heat, "box": box, "obj": obj}
