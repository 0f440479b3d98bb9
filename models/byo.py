"""Masking- and quantization-aware fine-tuning of an outside ONNX classifier's back half.

``edge-runtime finetune --onnx model.onnx --at TENSOR --data DIR`` does for a model the project
did not train what :mod:`models.finetune` does for its own: each training sample's split tensor
gets what the edge will do to it (the top ``r`` of an importance map kept, the rest zeroed, the
kept values quantized per channel with a straight-through gradient: :func:`models.finetune.degrade`'s
arithmetic, :func:`~models.finetune.keep_top` and :func:`~models.finetune.fake_quantize`), and
the back half learns to classify that, with KL to the original model's logits on the unreduced
tensor. The map is the fused attention map of the front layers (:func:`models.attention.fuse`,
the ``fused`` provider) or a smooth random map (standing in for the gradient providers, whose maps
change as the back half trains). The front half stays frozen, so its outputs are computed once.

The model runs in PyTorch through :mod:`models.onnx_torch`; the trained values are written back
into the ONNX graph's initializers (:func:`models.onnx_torch.write_back`): the fine-tuned model
keeps the user's own graph, which :func:`models.split.split_model` then turns into a complete
bundle (front with fused attention, back, four gradient graphs).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from onnx import shape_inference
from onnx.utils import Extractor
from tqdm import tqdm

from edge_runtime.models.attention import default_attention_layers, default_weights, fuse, map_size_for
from edge_runtime.models.data import ArrayDataset, to_tensor
from edge_runtime.models.finetune import MaskedQuantConfig, _random_maps, fake_quantize, keep_top
from edge_runtime.models.onnx_torch import check_supported, convert, write_back

__all__ = ["OnnxFinetuneConfig", "finetune_onnx", "evaluate_onnx", "save_report"]

log = logging.getLogger(__name__)


@dataclass
class OnnxFinetuneConfig(MaskedQuantConfig):
    p_fused: float = 0.6  # share of fused-attention masks; else a smooth random map


class _Parts:
    """The whole model, its back half in torch, the attention layers and the trainable names."""

    def __init__(self, model: onnx.ModelProto, at: str, attention_from=None, attention_weights=None):
        check_supported(model)
        self.model = model
        inferred = shape_inference.infer_shapes(model)
        g = model.graph
        inits = {i.name for i in g.initializer}
        self.input = next(i.name for i in g.input if i.name not in inits)
        self.outputs = [o.name for o in g.output]
        if at not in {o for n in g.node for o in n.output}:
            raise ValueError(f"the model has no tensor {at!r}")
        self.at = at
        self.layers = list(attention_from) if attention_from else default_attention_layers(inferred, at)
        self.weights = (
            list(attention_weights) if attention_weights else list(default_weights(len(self.layers)))
        )
        ex = Extractor(inferred)
        self.back_proto = ex.extract_model([at], self.outputs)
        front_proto = ex.extract_model([self.input], [at])
        front_inits = {i for n in front_proto.graph.node for i in n.input}
        self.whole = convert(model)
        self.back = convert(self.back_proto)
        # an initializer the front half also reads stays frozen: the edge's graph must not change
        self.trainable = [n for n in self.back.initializer_names() if n not in front_inits]
        self.shared = sorted(set(self.back.initializer_names()) - set(self.trainable))

    @torch.no_grad()
    def front_cache(self, data: ArrayDataset, mean, std, batch: int = 128):
        """Split tensors (float16) and fused maps of ``data``."""
        feats, fused = [], []
        map_size = map_size_for(data.images.shape[1:3])
        for i in range(0, len(data), batch):
            outs = self.whole(to_tensor(data.images[i : i + batch], mean, std), [self.at, *self.layers])
            feats.append(outs[0].half())
            fused.append(fuse(outs[1:], self.weights, map_size))
        return torch.cat(feats), torch.cat(fused)


def _degrade(f, fused, cfg: OnnxFinetuneConfig, gen: torch.Generator):
    n, _, h, w = f.shape
    with torch.no_grad():
        maps = F.interpolate(fused, size=(h, w), mode="bilinear", align_corners=False)
        use_random = torch.rand(n, generator=gen) >= cfg.p_fused
        maps = torch.where(use_random.view(-1, 1, 1, 1), _random_maps(n, h, w, gen), maps)
        ratio = cfg.keep_min + (cfg.keep_max - cfg.keep_min) * torch.rand(n, generator=gen)
        ratio = torch.where(torch.rand(n, generator=gen) < cfg.p_full, torch.ones(n), ratio)
        keep = keep_top(maps, ratio)
        choices = torch.tensor(cfg.bits, dtype=torch.long)
        bits = choices[torch.randint(len(cfg.bits), (n,), generator=gen)]
        bits = torch.where(torch.rand(n, generator=gen) < cfg.p_float, torch.zeros_like(bits), bits)
    return fake_quantize(f, keep, bits)


@torch.no_grad()
def evaluate_onnx(back, feats, fused, labels, keep: float | None, bits: int, batch: int = 256) -> float:
    """Top-1 of ``back`` on cached split tensors: unreduced (``keep`` None) or with the fused map's
    top ``keep`` positions kept at ``bits`` bits (the edge's ``fused`` provider, feature zeroing)."""
    back.eval()
    correct = 0
    for i in range(0, len(labels), batch):
        f = feats[i : i + batch].float()
        if keep is not None:
            n, _, h, w = f.shape
            m = F.interpolate(fused[i : i + batch], size=(h, w), mode="bilinear", align_corners=False)
            f = fake_quantize(f, keep_top(m, torch.full((n,), keep)), torch.full((n,), bits))
        correct += int((back(f)[0].argmax(1) == labels[i : i + batch]).sum())
    return correct / max(1, len(labels))


def finetune_onnx(
    model: onnx.ModelProto,
    at: str,
    cfg: OnnxFinetuneConfig,
    train_data: ArrayDataset,
    val_data: ArrayDataset,
    *,
    mean,
    std,
    attention_from=None,
    attention_weights=None,
    progress: bool = True,
) -> tuple[onnx.ModelProto, dict]:
    """Fine-tune the back half of ``model`` (split at ``at``); returns the fine-tuned whole model
    (same graph, new initializer values) and a report with top-1 before and after on
    ``val_data``."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    parts = _Parts(model, at, attention_from, attention_weights)
    k = parts.whole.num_classes
    if k is not None and len(train_data.classes) != k:
        raise ValueError(f"the data has {len(train_data.classes)} classes, the model {k} outputs")
    start = time.perf_counter()
    feats, fused = parts.front_cache(train_data, mean, std)
    vfeats, vfused = parts.front_cache(val_data, mean, std)
    labels = torch.from_numpy(train_data.labels)
    vlabels = torch.from_numpy(val_data.labels)
    back = parts.back
    degraded_key = f"top1_fused_keep{cfg.eval_keep}_{cfg.eval_bits}bit"

    def metrics():
        return {
            "top1": evaluate_onnx(back, vfeats, vfused, vlabels, None, 0),
            degraded_key: evaluate_onnx(back, vfeats, vfused, vlabels, cfg.eval_keep, cfg.eval_bits),
        }

    before = metrics()
    if progress:
        tqdm.write(f"before: {before}")
    with torch.no_grad():
        teacher = torch.cat([back(feats[i : i + 256].float())[0] for i in range(0, len(feats), 256)])
    for p in back.parameters():
        p.requires_grad_(False)
    params = [back.param_of(n) for n in parts.trainable]
    for p in params:
        p.requires_grad_(True)
    if not params:
        raise ValueError(f"the back half after {at!r} has no weights of its own to fine-tune")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, len(train_data) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * steps))
    history = []
    for epoch in range(cfg.epochs):
        back.eval()  # BatchNormalization keeps its statistics (as in models.finetune)
        order = torch.randperm(len(train_data), generator=gen)
        bar = tqdm(range(steps), desc=f"finetune {epoch + 1}/{cfg.epochs}", disable=not progress)
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            g = _degrade(feats[idx].float(), fused[idx], cfg, gen)
            logits = back(g)[0]
            loss = F.cross_entropy(logits, labels[idx])
            if cfg.distill:
                loss = loss + cfg.distill * F.kl_div(
                    F.log_softmax(logits, 1),
                    F.log_softmax(teacher[idx], 1),
                    log_target=True,
                    reduction="batchmean",
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        m = metrics() | {"epoch": epoch + 1, "seconds": round(time.perf_counter() - start, 1)}
        history.append(m)
        if progress:
            tqdm.write(f"finetune epoch {epoch + 1}: {m}")
    for p in back.parameters():
        p.requires_grad_(False)
    report = {
        "config": asdict(cfg),
        "split_at": at,
        "attention_layers": parts.layers,
        "attention_weights": parts.weights,
        "trained_initializers": len(parts.trainable),
        "frozen_shared_initializers": parts.shared,
        "n_train": len(train_data),
        "n_validation": len(val_data),
        "before": before,
        "after": history[-1] if history else before,
        "history": history,
        "seconds": round(time.perf_counter() - start, 1),
    }
    log.info("fine-tuned %s: %s", at, json.dumps(report["after"]))
    return write_back(back, model), report


def save_report(report: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
