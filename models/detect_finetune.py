"""Masking- and quantization-aware fine-tuning of the detector's back half.

The classifier's :mod:`models.finetune` for :class:`models.detect.Detector`: the edge zeroes the
split tensor where its importance map is low and quantizes the rest, and a back half trained on
dense float features loses mAP on that (the shipped detector, 500 validation frames, fused map:
mAP@0.5 0.808 unreduced, 0.682 at keep 0.4 / 3 bits, 0.591 at keep 0.3 / 2 bits). Each training
frame gets what the edge does to it: the top ``r`` of the positions of the front's fused attention
map (the ``fused`` provider, the detector's default) or, with probability ``p_random``, of a smooth
random map (standing in for the gradient providers), ``r`` drawn from ``[keep_min, keep_max]`` or
1 (no mask) with probability ``p_full``; then :func:`models.finetune.fake_quantize` at a bit depth
drawn from ``bits`` (none with probability ``p_float``). The loss is the detector's own (focal loss
of the class heat map + ``box_weight`` x GIoU), against the true boxes.

Only the back half trains (neck, upsampling, class and box heads): the front, the objectness head
that decides an empty frame, and the fused map are the edge box's graph and stay as they are.
BatchNorm keeps its running statistics (eval mode): updated on masked tensors they drifted away
from the unmasked ones, and mAP@0.5 without reduction fell from 0.808 to 0.795; with them kept,
0.804, while keep 0.4 / 3 bits rose to 0.753 and keep 0.3 / 2 bits to 0.692 (one epoch over 4000
frames, 15 s on 2 cores). The default budget is the one ``benchmarks/rate_detection.py`` gives the
frame-codec baselines (1 x 4000 frames the detector never trained on, learning rate 5e-4), so the
edge and the codecs it is compared with get the same fine-tuning.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edge_runtime.detection import DetectionParams
from edge_runtime.models.attention import FUSION_WEIGHTS, fuse, map_size_for
from edge_runtime.models.data import to_tensor
from edge_runtime.models.detect import decode_boxes, focal_loss, giou_loss, targets
from edge_runtime.models.detect_train import evaluate_detector
from edge_runtime.models.finetune import _random_maps, fake_quantize, keep_top

__all__ = ["DetectFinetuneConfig", "finetune_detector", "BACK_MODULES", "TRAIN_START"]

log = logging.getLogger(__name__)

#: the detector's back half: what fine-tuning trains (the rest is the edge's graph)
BACK_MODULES = ("neck", "up", "cls_head", "box_head")
#: training frames start here: frames the detector never trained on (the fair baselines' too)
TRAIN_START = 10**6


@dataclass
class DetectFinetuneConfig:
    epochs: int = 1
    images: int = 4000
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    seed: int = 0
    keep_min: float = 0.1
    keep_max: float = 0.95
    p_full: float = 0.2  # probability of no mask
    bits: tuple[int, ...] = (2, 3, 4, 6, 8)
    p_float: float = 0.1  # probability of no quantization
    p_random: float = 0.2  # share of masks from a smooth random map instead of the fused map
    box_weight: float = 5.0
    threads: int = 0
    eval_keep: float = 0.4
    eval_bits: int = 3

    def __post_init__(self) -> None:
        for name in ("epochs", "images", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if not 0.0 < self.keep_min <= self.keep_max <= 1.0:
            raise ValueError(f"need 0 < keep_min <= keep_max <= 1, got {self.keep_min}, {self.keep_max}")
        for name in ("p_full", "p_float", "p_random"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)!r}")
        if not self.bits or any(not 1 <= b <= 8 for b in self.bits):
            raise ValueError(f"bits must be depths in 1..8, got {self.bits!r}")


def _split_and_map(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The split tensor and the fused attention map at its resolution (the edge's ``fused``)."""
    f, layers = model.features(x)
    m = fuse(layers, FUSION_WEIGHTS, map_size_for(tuple(x.shape[2:])))
    return f, F.interpolate(m, size=f.shape[2:], mode="bilinear", align_corners=False)


def _degrade(f, fused, cfg: DetectFinetuneConfig, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = f.shape
    maps = torch.where((torch.rand(n, generator=gen) < cfg.p_random).view(-1, 1, 1, 1),
                       _random_maps(n, h, w, gen), fused)  # fmt: skip
    ratio = cfg.keep_min + (cfg.keep_max - cfg.keep_min) * torch.rand(n, generator=gen)
    ratio = torch.where(torch.rand(n, generator=gen) < cfg.p_full, torch.ones(n), ratio)
    bits = torch.tensor(cfg.bits)[torch.randint(len(cfg.bits), (n,), generator=gen)]
    bits = torch.where(torch.rand(n, generator=gen) < cfg.p_float, torch.zeros_like(bits), bits)
    return fake_quantize(f, keep_top(maps, ratio), bits)


class _Reduced(torch.nn.Module):
    """The detector as the receiver sees it: the split tensor reduced at ``keep`` / ``bits`` by
    the fused map before the back half (for :func:`evaluate_detector`)."""

    def __init__(self, model, keep: float, bits: int) -> None:
        super().__init__()
        self.model, self.keep, self.bits = model, keep, bits

    def forward(self, x):
        f, m = _split_and_map(self.model, x)
        n = f.shape[0]
        return self.model.back(
            fake_quantize(f, keep_top(m, torch.full((n,), self.keep)), torch.full((n,), self.bits))
        )


def _scores(model, val, params: DetectionParams, k: int, cfg: DetectFinetuneConfig) -> dict:
    """COCO mAP of the float model on ``val`` (the manifest's metrics) and mAP@0.5 reduced at
    ``eval_keep`` / ``eval_bits`` by the fused map."""
    out = evaluate_detector(model, val.images, val.boxes, val.labels, params, k)
    out = {key: (round(v, 4) if isinstance(v, float) else v) for key, v in out.items()}
    reduced = _Reduced(model, cfg.eval_keep, cfg.eval_bits)
    out[f"map50_fused_keep{cfg.eval_keep:g}_{cfg.eval_bits}bit"] = round(
        evaluate_detector(reduced, val.images, val.boxes, val.labels, params, k)["map50"], 4
    )
    return out


def finetune_detector(
    model, ckpt: dict, cfg: DetectFinetuneConfig, train, val, out_dir: str | Path, *, progress: bool = True
) -> Path:
    """Fine-tune the back half of ``model`` (a detector, ``ckpt`` its checkpoint) on reduced split
    tensors of ``train`` (:class:`edge_runtime.datasets.BoxFrames`); scores ``val`` before and
    after; writes ``out_dir/checkpoint.pt`` (the detector checkpoint layout, plus ``finetune``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    params = DetectionParams(ckpt["detection"]["score_threshold"], ckpt["detection"]["nms_iou"])
    k = len(ckpt["classes"])
    before = _scores(model, val, params, k, cfg)
    log.info("before fine-tuning: %s", before)
    if progress:
        tqdm.write(f"before: {before}")
    back = [p for name, p in model.named_parameters() if name.split(".")[0] in BACK_MODULES]
    for name, p in model.named_parameters():
        p.requires_grad_(name.split(".")[0] in BACK_MODULES)
    opt = torch.optim.AdamW(back, lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.eval()  # BatchNorm keeps its statistics; the back half's weights still train
    start = time.perf_counter()
    steps = len(train) // cfg.batch_size
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(train))
        bar = tqdm(range(steps), desc=f"fine-tune {epoch + 1}/{cfg.epochs}", disable=not progress)
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            with torch.no_grad():
                f, fused = _split_and_map(model, to_tensor(train.images[idx]))
            tgt = targets(
                [train.boxes[i] for i in idx], [train.labels[i] for i in idx], k, train.images.shape[1]
            )
            logits, dist = model.back_maps(_degrade(f, fused, cfg, gen))
            w = tgt["weight"]
            giou = giou_loss(decode_boxes(dist).permute(0, 2, 3, 1), tgt["box"].permute(0, 2, 3, 1))
            loss = focal_loss(logits, tgt["heat"]) + cfg.box_weight * (giou * w).sum() / w.sum().clamp(
                min=1e-6
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.perf_counter() - start
    for p in model.parameters():
        p.requires_grad_(True)
    after = _scores(model, val, params, k, cfg)
    log.info("after fine-tuning: %s (%.1f s)", after, seconds)
    if progress:
        tqdm.write(f"after: {after}")
    record = asdict(cfg) | {"before": before, "after": after, "seconds": round(seconds, 1),
                            "n_train": len(train), "n_validation": len(val)}  # fmt: skip
    path = out_dir / "checkpoint.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({**ckpt, "state_dict": model.state_dict(), "finetune": record}, tmp)
    tmp.replace(path)
    return path
