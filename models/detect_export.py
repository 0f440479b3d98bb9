"""Export a detector (:mod:`models.detect`) as a detection bundle (manifest ``task = "detect"``).

Graphs (dynamo exporter, like :mod:`models.export`):

* ``front.onnx``: ``image -> features, fused_attention, objectness``; the fused attention is the
  classifier's formula (:func:`models.attention.fuse`, same layers and weights); ``objectness``
  (N x 1 x 16 x 16, sigmoid) tells the edge whether the frame holds any object;
* ``back.onnx``: ``features -> logits, boxes``: P candidate boxes per frame, logits N x P x K
  (sigmoid scores), boxes N x P x 4 (``x0, y0, x1, y1`` in input pixels); NMS is the receiver's;
* ``grad_<variant>.onnx``: ``image, reference -> influence, logits, boxes`` (batch 1).

**Importance for detection.** The *kept detections* are the cells whose best class score is above
the manifest's ``score_threshold`` and is a 3 x 3 local maximum of that class's score map
(CenterNet's peak rule: what NMS keeps, computed in the graph). The ``reference`` (1 x M x 6 rows
``valid, class, x0, y0, x1, y1`` in input pixels, M = :data:`MAX_REFERENCE`) is the result to
compare with; all rows invalid (all zeros) means *the network's own kept detections* (computed in
the graph, as the classifier's all-zero row means its own top class). Each kept detection is
matched to the valid reference box it overlaps most (IoU >= 0.5 for its class to count). The
error vectors at the outputs (class logits z, p = sigmoid(z); boxes b), then back-propagated to the
pixels (``influence`` = max |gradient| over colour channels):

- class term, by variant:

  - ``plain``:     p - T at every cell and class, T the reference drawn as a target (1 at each
    kept detection's cell and class for the own result; at each reference box's centre cell and
    class for a given one): the whole output's error;
  - ``guided``:    the same, and ReLUs pass only positive gradients backwards;
  - ``selective``: only the kept detections, only their reference class: p - 1 (matched or own),
    p (a kept detection the reference does not have);
  - ``extsel``:    the score-weighted sum over the kept detections of the margin between the
    reference class (own: the top class) and the strongest other class, i.e. the gradient of
    ``sum_i score_i (z_i,ref - z_i,other)``;

- box term (every variant), at each kept detection: the gradient of ``1 - IoU(b_i, r_i)`` with
  respect to b_i (r_i: the matched reference box; own result: b_i itself) times sqrt(area r_i),
  so that it is scale-free. Where a coordinate of b_i equals r_i's, the IoU has a kink; the
  derivative taken is the one for moving that edge *outwards* (growing the box), so the own-result
  box term is not zero: sqrt(A) * (side / A) per edge.

A frame with no kept detection has an all-zero error and an all-zero influence map: the edge
sends the empty message for it (``GradientProvider`` reads the graph's scores).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.atomic import replace_dir
from edge_runtime.bundle import GRAD_VARIANTS, write_manifest
from edge_runtime.detection import DetectionParams
from edge_runtime.models.attention import FUSION_WEIGHTS, fuse, map_size_for
from edge_runtime.models.detect import OUT_STRIDE
from edge_runtime.models.export import _decompositions, _export, input_entry
from edge_runtime.models.networks import fuse_batchnorm

__all__ = ["export_detection_bundle", "detection_influence_fn", "trace_detection_influence", "MAX_REFERENCE"]

log = logging.getLogger(__name__)

MAX_REFERENCE = 32
BOX_WEIGHT = 1.0
MATCH_IOU = 0.5


class DetectFrontGraph(nn.Module):
    """image -> (split tensor, fused attention, objectness)."""

    def __init__(self, model: nn.Module, weights=FUSION_WEIGHTS, map_size=(32, 32)) -> None:
        super().__init__()
        self.model = model
        self.weights = tuple(float(w) for w in weights)
        self.map_size = tuple(map_size)

    def forward(self, image):
        f, layers = self.model.features(image)
        return f, fuse(layers, self.weights, self.map_size), torch.sigmoid(self.model.objectness_logits(f))


class _Back(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features):
        return self.model.back(features)


def _onehot_max(v: torch.Tensor) -> torch.Tensor:
    return (v == v.amax(dim=-1, keepdim=True)).to(v.dtype)


def _iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU (1, P, M) of boxes a (1, P, 4) and b (1, M, 4)."""
    ix0 = torch.maximum(a[..., :, None, 0], b[..., None, :, 0])
    iy0 = torch.maximum(a[..., :, None, 1], b[..., None, :, 1])
    ix1 = torch.minimum(a[..., :, None, 2], b[..., None, :, 2])
    iy1 = torch.minimum(a[..., :, None, 3], b[..., None, :, 3])
    inter = (ix1 - ix0).clamp(min=0) * (iy1 - iy0).clamp(min=0)
    aa = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    ab = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / (aa[..., :, None] + ab[..., None, :] - inter).clamp(min=1e-6)


def _iou_error(b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """d(1 - IoU(b, r))/db (..., 4), edges moved outwards at ties (module docstring)."""
    x0, y0, x1, y1 = b.unbind(-1)
    rx0, ry0, rx1, ry1 = r.unbind(-1)
    iw = torch.minimum(x1, rx1) - torch.maximum(x0, rx0)
    ih = torch.minimum(y1, ry1) - torch.maximum(y0, ry0)
    overlap = ((iw > 0) & (ih > 0)).to(b.dtype)
    iw, ih = iw.clamp(min=0), ih.clamp(min=0)
    inter = iw * ih
    bw, bh = x1 - x0, y1 - y0
    union = (bw * bh + (rx1 - rx0) * (ry1 - ry0) - inter).clamp(min=1e-6)
    # derivatives of the intersection: an edge inside r moves the intersection, one at or outside
    # r's edge (ties included: outwards) does not
    d_inter = torch.stack(
        [-ih * (x0 > rx0).to(b.dtype), -iw * (y0 > ry0).to(b.dtype), ih * (x1 < rx1).to(b.dtype), iw * (y1 < ry1).to(b.dtype)],
        dim=-1,
    ) * overlap[..., None]  # fmt: skip
    d_area = torch.stack([-bh, -bw, bh, bw], dim=-1)
    d_iou = (d_inter * union[..., None] - inter[..., None] * (d_area - d_inter)) / (union**2)[..., None]
    return -d_iou


def _error_vectors(z, b, reference, variant: str, threshold: float, grid: tuple[int, int]):
    """The error vectors (v_z (1,P,K), v_b (1,P,4)) of the module docstring."""
    h, w = grid
    n, p_count, k = z.shape
    p = torch.sigmoid(z)
    maps = p.transpose(1, 2).reshape(n, k, h, w)
    peak = (maps == F.max_pool2d(maps, 3, 1, 1)).to(z.dtype).reshape(n, k, h * w).transpose(1, 2)
    top = _onehot_max(p)  # (1,P,K): the cell's best class
    score = (p * top).sum(-1)  # (1,P)
    kept = (score > threshold).to(z.dtype) * (peak * top).sum(-1).clamp(max=1.0)  # (1,P)

    valid = (reference[..., 0] > 0).to(z.dtype)  # (1,M)
    auto = (valid.sum(-1, keepdim=True) == 0).to(z.dtype)  # (1,1): own result
    rcls = reference[..., 1]
    rbox = reference[..., 2:6]
    ref_onehot = (rcls[..., None] == torch.arange(k, dtype=z.dtype)).to(z.dtype) * valid[..., None]  # (1,M,K)
    iou = _iou_matrix(b, rbox) * valid[:, None, :] - (1.0 - valid[:, None, :])  # invalid: -1
    best = _onehot_max(iou)  # (1,P,M)
    best = best / best.sum(-1, keepdim=True).clamp(min=1.0)
    best_iou = (iou * best).sum(-1)  # (1,P)
    matched = (best_iou >= MATCH_IOU).to(z.dtype)
    m_box = best @ rbox  # (1,P,4)
    m_cls = (best @ ref_onehot) * matched[..., None]  # (1,P,K): matched reference class, else 0
    # box reference: the matched (best-overlapping) reference box; own result: the box itself
    r_box = auto[..., None] * b + (1.0 - auto[..., None]) * torch.where((best_iou > 0)[..., None], m_box, b)
    # class targets at the kept detections
    t_kept = auto[..., None] * top + (1.0 - auto[..., None]) * m_cls  # (1,P,K)

    if variant in ("plain", "guided"):
        # the reference drawn as a target: own kept detections, or each reference box's centre cell
        cx = ((rbox[..., 0] + rbox[..., 2]) * 0.5 / OUT_STRIDE).floor().clamp(0, w - 1)
        cy = ((rbox[..., 1] + rbox[..., 3]) * 0.5 / OUT_STRIDE).floor().clamp(0, h - 1)
        cell = cy * w + cx  # (1,M)
        at = (torch.arange(p_count, dtype=z.dtype)[None, :, None] == cell[:, None, :]).to(z.dtype)  # (1,P,M)
        drawn = (at @ ref_onehot).clamp(max=1.0)
        target = auto[..., None] * top * kept[..., None] + (1.0 - auto[..., None]) * drawn
        v_z = p - target
    elif variant == "selective":
        # one class per kept detection: the reference class (own: top), else the own class at 0
        cls = torch.where(t_kept.sum(-1, keepdim=True) > 0, t_kept, top)
        y = (t_kept.sum(-1, keepdim=True) > 0).to(z.dtype)
        v_z = cls * (p - y) * kept[..., None]
    else:  # extsel
        primary = torch.where(t_kept.sum(-1, keepdim=True) > 0, t_kept, top)
        other = _onehot_max(z - primary * 1e9)
        v_z = (primary - other) * (score * kept)[..., None]
    area = ((r_box[..., 2] - r_box[..., 0]) * (r_box[..., 3] - r_box[..., 1])).clamp(min=1.0)
    v_b = _iou_error(b, r_box) * (BOX_WEIGHT * area.sqrt() * kept)[..., None]
    return v_z, v_b


def detection_influence_fn(model: nn.Module, variant: str, threshold: float, grid: tuple[int, int]):
    """The PyTorch function the ``grad_<variant>`` graph of a detector computes:
    (image, reference) -> (influence, logits, boxes). ``model`` BN-fused, in eval mode."""
    if variant not in GRAD_VARIANTS:
        raise ValueError(f"variant must be one of {GRAD_VARIANTS}, got {variant!r}")

    def influence(image: torch.Tensor, reference: torch.Tensor):
        image = image.detach().requires_grad_(True)
        z, b = model(image)
        v_z, v_b = _error_vectors(z.detach(), b.detach(), reference, variant, threshold, grid)
        (g,) = torch.autograd.grad((z, b), image, grad_outputs=(v_z, v_b))
        return g.abs().amax(dim=1, keepdim=True), z.detach(), b.detach()

    return influence


def trace_detection_influence(model: nn.Module, variant: str, size, threshold: float):
    from torch.fx.experimental.proxy_tensor import make_fx

    grid = (size[0] // OUT_STRIDE, size[1] // OUT_STRIDE)
    fn = detection_influence_fn(model, variant, threshold, grid)
    return make_fx(fn, decomposition_table=_decompositions(variant == "guided"))(
        torch.zeros(1, 3, *size), torch.zeros(1, MAX_REFERENCE, 6)
    )


def export_detection_bundle(
    model: nn.Module,
    out_dir: str | Path,
    *,
    classes: list[str],
    input_spec: dict,
    model_name: str,
    params: DetectionParams,
    variants=GRAD_VARIANTS,
    metrics: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Export detector ``model`` as a detection bundle in ``out_dir`` (built beside it, swapped in
    atomically); returns the manifest."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    model = fuse_batchnorm(model).eval()
    for prm in model.parameters():
        prm.requires_grad_(False)
    size = tuple(input_spec["size"])
    x = torch.zeros(2, 3, *size)
    with torch.no_grad():
        feats = model.features(x)[0]
        logits, _ = model.back(feats)
    split_shape = list(feats.shape[1:])
    map_size = map_size_for(size)
    graphs: dict[str, dict] = {}
    importance: dict[str, dict] = {}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        t0 = time.perf_counter()
        front_out = ["features", "fused_attention", "objectness"]
        _export(
            DetectFrontGraph(model, FUSION_WEIGHTS, map_size),
            (x,),
            tmp / "front.onnx",
            ["image"],
            front_out,
            True,
        )
        graphs["front"] = {"file": "front.onnx", "inputs": ["image"], "outputs": front_out}
        importance["fused"] = {
            "graph": "front",
            "output": "fused_attention",
            "shape": list(map_size),
            "weights": list(FUSION_WEIGHTS),
            "layers": ["stage1", "stage2", "stage3", "bottleneck"],
            "description": "mean |activation| per layer, resized, max-normalised, weighted sum",
            "presence": "objectness",
        }
        _export(_Back(model), (feats,), tmp / "back.onnx", ["features"], ["logits", "boxes"], True)
        graphs["back"] = {"file": "back.onnx", "inputs": ["features"], "outputs": ["logits", "boxes"]}
        for variant in variants:
            gm = trace_detection_influence(model, variant, size, params.score_threshold)
            name = f"grad_{variant}"
            args = (torch.zeros(1, 3, *size), torch.zeros(1, MAX_REFERENCE, 6))
            outs = ["influence", "logits", "boxes"]
            _export(gm, args, tmp / f"{name}.onnx", ["image", "reference"], outs, False)
            graphs[name] = {"file": f"{name}.onnx", "inputs": ["image", "reference"], "outputs": outs}
            importance[name] = {
                "graph": name,
                "output": "influence",
                "shape": list(size),
                "batch": 1,
                "reference_shape": [MAX_REFERENCE, 6],
                "reference": "rows valid, class, x0, y0, x1, y1 (input pixels); all zero = the "
                "network's own kept detections",
            }
        log.info("exported %d graphs in %.1f s", len(graphs), time.perf_counter() - t0)
        detection = params.to_dict() | {
            "candidates": int(logits.shape[1]),
            "output_stride": OUT_STRIDE,
            "objectness": {"graph": "front", "output": "objectness", "threshold": params.score_threshold},
            "nms": "per class (cv2.dnn.NMSBoxesBatched) at the receiver",
        }
        manifest = write_manifest(
            tmp,
            {
                "task": "detect",
                "model_name": model_name,
                "arch": getattr(model, "arch", model_name),
                "classes": list(classes),
                "input": input_entry(size, input_spec),
                "split": {"name": "features", "shape": split_shape, "dtype": "float32"},
                "graphs": graphs,
                "importance": importance,
                "detection": detection,
                "metrics": metrics or {},
                **(extra or {}),
            },
        )
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
