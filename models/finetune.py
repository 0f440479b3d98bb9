"""Masking- and quantization-aware fine-tuning of the back half (and optionally the bottleneck).

The back half is trained on dense float features, but the edge zeroes the unimportant positions
of the split tensor and quantizes the rest; a back half that never saw such inputs loses accuracy
(the default ABN after 3 epochs: 99.9% unreduced, 16.7% with the ABN map's top 20% of positions
kept at 2 bits, while 2-bit quantization alone costs nothing; ``benchmarks/results/
rate_accuracy_before_finetune.md``). Here each training sample gets what the edge will do to it:

* a keep-mask: the top ``r`` fraction of positions of an importance map, ``r`` drawn per sample
  from ``[keep_min, keep_max]`` (or 1.0, no mask, with probability ``p_full``); the map is the
  ABN attention map M of the model itself (what the ``abn`` provider sends), the front layers'
  fused attention (the ``fused`` provider), or a smooth random map (standing in for the gradient
  providers and keeping the back half from trusting one map's shape);
* quantization as :func:`kernels.quantize` does it (per channel, min / max over the kept
  positions, ``bits`` drawn per sample from ``bits``, or none), applied with a straight-through
  estimator so that the bottleneck gets gradients too; positions outside the mask are 0 after
  dequantization, as on the receiver.

The front stages stay frozen (the edge box's graph and its importance maps do not change), so
their outputs are computed once and cached; ``train_bottleneck`` also trains the 1 x 1 channel
bottleneck at the split (BottleFit / Entropic Student style), else the split tensor itself is
cached and only the back half (attention and perception branches) trains. The loss is the ABN's
``L_att + L_per`` (plus ``map_weight * L_map`` where the data has item masks, as in training)
plus, with weight ``distill``, KL to the original model's logits on the unmasked float features
(keeps the unreduced accuracy).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from edge_runtime.models.data import ArrayDataset, to_tensor
from edge_runtime.models.train import _save, evaluate, logits_of, map_loss

__all__ = [
    "MaskedQuantConfig",
    "FinetuneConfig",
    "finetune",
    "fake_quantize",
    "keep_top",
    "degrade",
    "evaluate_degraded",
]

log = logging.getLogger(__name__)


@dataclass
class MaskedQuantConfig:
    """What every masking- and quantization-aware fine-tuning draws and evaluates: the project's
    own ABN (:class:`FinetuneConfig`) and an outside ONNX model (``models.byo``)."""

    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    keep_min: float = 0.05
    keep_max: float = 0.7
    p_full: float = 0.2  # probability of no mask (the unreduced tensor)
    bits: tuple[int, ...] = (2, 3, 4, 6, 8)
    p_float: float = 0.1  # probability of no quantization
    distill: float = 1.0
    threads: int = 0
    eval_keep: float = 0.2
    eval_bits: int = 2


@dataclass
class FinetuneConfig(MaskedQuantConfig):
    map_mix: tuple[float, float, float] = (0.6, 0.2, 0.2)  # abn, fused, random
    train_bottleneck: bool = False
    # L_map on the attention branch, as in training (models.train.TrainConfig.map_weight), so that
    # M keeps pointing at the item while the branch learns masked, quantized inputs
    map_weight: float = 1.0
    extra: dict = field(default_factory=dict)


def fake_quantize(f: torch.Tensor, keep: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-channel min / max quantization over the kept positions with a
    straight-through gradient; ``bits`` (N,) with 0 = no quantization. Masked positions are 0.

    f: (N, C, H, W); keep: (N, 1, H, W) float 0 / 1."""
    big = torch.finfo(f.dtype).max
    kb = keep.bool().expand_as(f)
    lo = torch.where(kb, f, big).amin(dim=(2, 3), keepdim=True)
    hi = torch.where(kb, f, -big).amax(dim=(2, 3), keepdim=True)
    any_kept = keep.flatten(1).amax(1).view(-1, 1, 1, 1) > 0
    lo = torch.where(any_kept, lo, torch.zeros_like(lo))
    hi = torch.where(any_kept, hi, torch.zeros_like(hi))
    levels = (2.0 ** bits.to(f.dtype) - 1).clamp(min=1).view(-1, 1, 1, 1)
    scale = ((hi - lo) / levels).clamp(min=1e-12)
    q = torch.round((f - lo) / scale).clamp(min=0) * scale + lo
    q = torch.minimum(q, hi)
    quant = (bits > 0).view(-1, 1, 1, 1)
    out = torch.where(quant, f + (q - f).detach(), f)
    return out * keep


def keep_top(maps: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) 0 / 1 masks keeping the top ``ratio[n]`` fraction (rounded) of each map."""
    n = maps.shape[0]
    flat = maps.reshape(n, -1)
    hw = flat.shape[1]
    k = torch.clamp(torch.floor(ratio * hw + 0.5), 0, hw).long()
    order = flat.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(hw).expand(n, hw))
    return (ranks < k.view(-1, 1)).to(maps.dtype).view_as(maps)


def _random_maps(n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    coarse = torch.rand(n, 1, max(2, h // 4), max(2, w // 4), generator=gen)
    return F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


def degrade(
    model, f: torch.Tensor, fused: torch.Tensor | None, cfg: FinetuneConfig, gen: torch.Generator
) -> torch.Tensor:
    """What the edge does to a batch of split tensors: mask by a drawn map and ratio, quantize."""
    n, _, h, w = f.shape
    with torch.no_grad():
        was_training = model.attention.training
        model.attention.eval()  # the edge computes M with the exported (eval) graph
        _, m_abn = model.attention(f)
        model.attention.train(was_training)
        choice = torch.multinomial(torch.tensor(cfg.map_mix, dtype=torch.float32), n, True, generator=gen)
        maps = m_abn.clone()
        if fused is not None:
            fz = F.interpolate(fused, size=(h, w), mode="bilinear", align_corners=False)
            maps = torch.where((choice == 1).view(-1, 1, 1, 1), fz, maps)
        maps = torch.where((choice == 2).view(-1, 1, 1, 1), _random_maps(n, h, w, gen), maps)
        ratio = cfg.keep_min + (cfg.keep_max - cfg.keep_min) * torch.rand(n, generator=gen)
        ratio = torch.where(torch.rand(n, generator=gen) < cfg.p_full, torch.ones(n), ratio)
        keep = keep_top(maps, ratio)
        bits_choices = torch.tensor(cfg.bits, dtype=torch.long)
        bits = bits_choices[torch.randint(len(cfg.bits), (n,), generator=gen)]
        bits = torch.where(torch.rand(n, generator=gen) < cfg.p_float, torch.zeros_like(bits), bits)
    return fake_quantize(f, keep, bits)


@torch.no_grad()
def _front_cache(model, data: ArrayDataset, train_bottleneck: bool, batch: int = 256, progress: bool = True):
    """Frozen front outputs: the split tensor (or stage 3's output) and the fused attention map."""
    from edge_runtime.models.attention import FUSION_WEIGHTS, fuse, map_size_for

    model.eval()
    feats, fused = [], []
    map_size = map_size_for(data.images.shape[1:3])  # the map the front graph outputs
    for i in tqdm(range(0, len(data), batch), desc="front cache", leave=False, disable=not progress):
        f, layers = model.features(to_tensor(data.images[i : i + batch]))
        feats.append((layers[2] if train_bottleneck else f).half())
        fused.append(fuse(layers, FUSION_WEIGHTS, map_size))
    return torch.cat(feats), torch.cat(fused)


@torch.no_grad()
def evaluate_degraded(model, data: ArrayDataset, keep: float, bits: int, batch: int = 256) -> float:
    """Top-1 with the ABN map's top ``keep`` positions kept and ``bits``-bit quantization (the
    edge's ``abn`` provider, feature zeroing), in PyTorch."""
    model.eval()
    correct = 0
    for i in range(0, len(data), batch):
        f, _ = model.features(to_tensor(data.images[i : i + batch]))
        _, m = model.attention(f)
        n = f.shape[0]
        k = keep_top(m, torch.full((n,), keep))
        g = fake_quantize(f, k, torch.full((n,), bits))
        correct += (logits_of(model.back(g)).argmax(1).numpy() == data.labels[i : i + batch]).sum()
    return float(correct) / len(data)


def finetune(
    model,
    ckpt: dict,
    cfg: FinetuneConfig,
    train_data: ArrayDataset,
    test_data: ArrayDataset,
    out_dir: str | Path,
    *,
    progress: bool = True,
) -> Path:
    """Fine-tune ``model`` (an ABN or plain network from ``ckpt``) and write ``out_dir/checkpoint.pt``."""
    if not hasattr(model, "attention"):
        raise ValueError("masking-aware fine-tuning draws masks from the ABN map: needs an ABN model")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    start = time.perf_counter()
    before = {
        "top1": evaluate(model, test_data)["top1"],
        f"top1_abn_keep{cfg.eval_keep}_{cfg.eval_bits}bit": evaluate_degraded(
            model, test_data, cfg.eval_keep, cfg.eval_bits
        ),
    }
    log.info("before fine-tuning: %s", before)
    if progress:
        tqdm.write(f"before: {before}")
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    cached, fused = _front_cache(model, train_data, cfg.train_bottleneck, progress=progress)
    labels = torch.from_numpy(train_data.labels)
    masks = torch.from_numpy(train_data.masks) if cfg.map_weight and train_data.masks is not None else None

    for p in model.parameters():
        p.requires_grad_(False)
    trained = [model.attention, model.perception] + (
        [model.features.bottleneck] if cfg.train_bottleneck else []
    )
    params = [p for mod in trained for p in mod.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = len(train_data) // cfg.batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * steps))
    history = list(ckpt.get("history", []))
    path = out_dir / "checkpoint.pt"
    for epoch in range(cfg.epochs):
        model.eval()  # frozen BatchNorms keep their statistics
        for mod in trained:
            mod.train()
        order = torch.randperm(len(train_data), generator=gen)
        bar = tqdm(range(steps), desc=f"finetune {epoch + 1}/{cfg.epochs}", disable=not progress)
        running = 0.0
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x = cached[idx].float()
            y = labels[idx]
            f = model.features.bottleneck(x) if cfg.train_bottleneck else x
            with torch.no_grad():
                f_teacher = teacher.features.bottleneck(x) if cfg.train_bottleneck else x
                t_logits = logits_of(teacher.back(f_teacher))
            g = degrade(model, f, fused[idx], cfg, gen)
            att_logits, logits, m = model.back(g)
            loss = F.cross_entropy(att_logits, y) + F.cross_entropy(logits, y)
            if masks is not None:
                loss = loss + cfg.map_weight * map_loss(m, masks[idx])
            if cfg.distill:
                loss = loss + cfg.distill * F.kl_div(
                    F.log_softmax(logits, 1),
                    F.log_softmax(t_logits, 1),
                    log_target=True,
                    reduction="batchmean",
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
            bar.set_postfix(loss=f"{running:.3f}")
        model.eval()
        metrics = evaluate(model, test_data)
        metrics[f"top1_abn_keep{cfg.eval_keep}_{cfg.eval_bits}bit"] = evaluate_degraded(
            model, test_data, cfg.eval_keep, cfg.eval_bits
        )
        metrics.update(finetune_epoch=epoch + 1, seconds=round(time.perf_counter() - start, 1))
        history.append(metrics)
        log.info("finetune epoch %d: %s", epoch + 1, metrics)
        if progress:
            tqdm.write(f"finetune epoch {epoch + 1}: {metrics}")
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()

    class _Cfg:  # _save records vars(cfg) under "train"
        pass

    rec = _Cfg()
    rec.__dict__.update(ckpt.get("train", {}))
    rec.arch = ckpt["arch"]
    rec.__dict__["finetune"] = asdict(cfg) | {
        "before": before,
        "seconds": round(time.perf_counter() - start, 1),
    }
    _save(path, model, rec, train_data, history)
    return path
