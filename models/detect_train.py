"""Training of the detector (:mod:`models.detect`) on the built-in detection scenes.

Seeded, with progress bars and a checkpoint per epoch (the classifier's checkpoint layout plus
``task = "detect"`` and the detection parameters), evaluated on the validation split by COCO mAP
(:func:`edge_runtime.detection.mean_average_precision`) after every epoch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_runtime.detection import DetectionParams, mean_average_precision, postprocess
from edge_runtime.models.data import MEAN, STD, to_tensor
from edge_runtime.models.detect import build_detector, detection_loss, targets
from edge_runtime.models.train import _use_bf16, _use_compile, recipe

__all__ = ["DetectTrainConfig", "train_detector", "evaluate_detector", "detect_batch", "load_detector"]

log = logging.getLogger(__name__)


@dataclass
class DetectTrainConfig:
    arch: str = "centernet-s"
    epochs: int = 6
    batch_size: int = 32
    lr: float = 4e-3
    weight_decay: float = 1e-4
    seed: int = 0
    bottleneck: int = 8
    widths: tuple[int, int, int] = (24, 48, 64)
    threads: int = 0
    box_weight: float = 5.0
    score_threshold: float = 0.3
    nms_iou: float = 0.5
    precision: str = "auto"  # as the classifier's: bf16 autocast for the network where the CPU has bf16 units
    compile: str = "off"  # as the classifier's: the loss step through torch.compile


def _step_loss(model, x, tgt, box_weight: float, bf16: bool) -> dict:
    """The training step's forward and losses: the network in bfloat16 where asked (the losses
    cast what they read to float32), compiled as one graph where asked."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return detection_loss(model, x, tgt, box_weight)


def _flip(images: np.ndarray, boxes: list, flip: np.ndarray) -> tuple[np.ndarray, list]:
    w = images.shape[2]
    out_boxes = []
    for i, b in enumerate(boxes):
        if flip[i]:
            b = b.copy()
            b[:, [0, 2]] = w - b[:, [2, 0]]
        out_boxes.append(b)
    images = images.copy()
    images[flip] = images[flip, :, ::-1]
    return images, out_boxes


@torch.no_grad()
def detect_batch(model, images: np.ndarray, params: DetectionParams, batch_size: int = 128) -> list:
    """Detections (lists of :class:`edge_runtime.detection.Detection`) of uint8 images, in
    model-input pixels, by the PyTorch model (the same post-processing as the receiver)."""
    model.eval()
    out = []
    for i in range(0, len(images), batch_size):
        logits, boxes = model(to_tensor(images[i : i + batch_size]))
        for lo, bo in zip(logits.numpy(), boxes.numpy(), strict=True):
            out.append(postprocess(lo, bo, params))
    return out


def evaluate_detector(model, images, boxes, labels, params: DetectionParams, num_classes: int) -> dict:
    """COCO mAP of ``model`` on the frames; ``map``, ``map50``, ``map75``, ``n``, ``objects``."""
    dets = detect_batch(model, images, params)
    return mean_average_precision(dets, list(zip(boxes, labels, strict=True)), num_classes)


def train_detector(
    cfg: DetectTrainConfig,
    train_data,
    val_data,
    out_dir: str | Path,
    *,
    progress: bool = True,
) -> Path:
    """Train ``cfg.arch`` on ``train_data`` (a :class:`edge_runtime.datasets.BoxFrames`), evaluate
    on ``val_data`` after each epoch; writes ``out_dir/checkpoint.pt``; returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    k = len(train_data.classes)
    size = int(train_data.images.shape[1])
    model = build_detector(cfg.arch, num_classes=k, bottleneck=cfg.bottleneck, widths=tuple(cfg.widths))
    model = model.to(memory_format=torch.channels_last)
    bf16 = _use_bf16(cfg.precision)
    step_loss = torch.compile(_step_loss) if _use_compile(cfg.compile) else _step_loss
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, len(train_data) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps, pct_start=0.15
    )
    params = DetectionParams(cfg.score_threshold, cfg.nms_iou)
    path = out_dir / "checkpoint.pt"
    start = time.perf_counter()
    history = []
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(train_data))
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress)
        running = {}
        for step in bar:
            idx = np.sort(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
            flip = rng.random(len(idx)) < 0.5
            images, boxes = _flip(train_data.images[idx], [train_data.boxes[i] for i in idx], flip)
            labels = [train_data.labels[i] for i in idx]
            x = to_tensor(images).contiguous(memory_format=torch.channels_last)
            tgt = targets(boxes, labels, k, size)
            parts = step_loss(model, x, tgt, cfg.box_weight, bf16)
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            opt.step()
            sched.step()
            for name, v in parts.items():
                running[name] = 0.9 * running.get(name, v.item()) + 0.1 * v.item()
            bar.set_postfix({n: f"{v:.3f}" for n, v in running.items()})
        metrics = evaluate_detector(model, val_data.images, val_data.boxes, val_data.labels, params, k)
        metrics.update(epoch=epoch + 1, seconds=round(time.perf_counter() - start, 1))
        history.append(metrics)
        log.info("epoch %d: %s", epoch + 1, metrics)
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}: validation mAP@0.5 {metrics['map50']:.4f}, "
                f"mAP@0.5:0.95 {metrics['map']:.4f} ({metrics['seconds']:.0f} s)"
            )
        _save(path, model, cfg, train_data, size, history)
    return path


def _save(path: Path, model, cfg: DetectTrainConfig, data, size: int, history: list) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "task": "detect",
            "arch": cfg.arch,
            "config": model.config,
            "state_dict": model.state_dict(),
            "classes": list(data.classes),
            "input": {"size": [size, size], "mean": list(MEAN), "std": list(STD)},
            "detection": DetectionParams(cfg.score_threshold, cfg.nms_iou).to_dict(),
            "train": recipe(cfg) | {"num_train": len(data), "data_task": data.task},
            "history": history,
        },
        tmp,
    )
    tmp.replace(path)


def load_detector(path: str | Path):
    """Rebuild the detector of a checkpoint in eval mode; returns ``(model, checkpoint)``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("task") != "detect":
        raise ValueError(f"{path} is not a detector checkpoint (task {ckpt.get('task', 'classify')!r})")
    model = build_detector(ckpt["arch"], **ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt
