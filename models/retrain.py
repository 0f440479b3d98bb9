"""Retraining an ABN from teacher maps (corrected attention maps).

The steps of ``edge-runtime retrain``:

1. :func:`record` runs the data set and keeps each image's map M and both branches' predictions;
2. :func:`select_samples` picks the misrecognized images (by the perception branch, the attention
   branch, both or either), optionally adds a share of the correctly recognized ones, and always
   keeps the images that have a teacher map;
3. :func:`finetune` trains with ``L = L_att + L_per + gamma * ||M' - M||^2`` (the map term on the
   samples that have a teacher map M'; the squared norm is the sum over the map's cells, averaged
   over those samples: a mean over cells would weigh a small wrong spot, e.g. a decoy of 4 cells
   in 256, next to nothing; see ``benchmarks/decoy.py``), the feature extractor frozen by
   default (its BatchNorm statistics too). Which parts train and which loss terms are used are
   options (:class:`RetrainConfig`), among them ``"rrr"``, the peer method's input-gradient
   penalty outside the teacher map (:mod:`models.rrr`), from the same teacher maps;
4. :func:`evaluate_maps` reports accuracy of both branches and the pointing game before and after.

The caller exports the result as a new bundle (a new model id, since the weights change).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edge_runtime.models.cli import DEFAULT_LOSSES, LOSSES, PARTS, SELECT_BY
from edge_runtime.models.data import MEAN, STD, ArrayDataset, to_tensor

__all__ = [
    "RetrainConfig",
    "record",
    "select_samples",
    "finetune",
    "evaluate_maps",
    "pointing_game",
    "SELECT_BY",
    "PARTS",
    "LOSSES",
    "DEFAULT_LOSSES",
]

log = logging.getLogger(__name__)


@dataclass
class RetrainConfig:
    """Options of :func:`finetune` and :func:`select_samples`.

    ``select``: which misrecognitions pick a sample: ``per`` (perception branch), ``att``
    (attention branch), ``both`` (both wrong) or ``either``. ``include_correct``: share (0..1) of
    the correctly recognized samples added. ``teacher_repeat``: how many times each teacher-mapped
    sample appears per epoch (teacher maps are few). ``perception_map``: the map the perception
    branch sees while training, the network's ``own`` M (default) or the ``teacher`` map where
    there is one. ``losses``: terms among :data:`LOSSES` (default the method's, ``att per map``;
    ``rrr`` weighs ``rrr_weight``, on at most ``rrr_max`` of a batch's samples with a teacher map,
    drawn at random: its double backward pass costs about five plain steps). ``steps``: optimiser steps in all (default: ``epochs`` passes
    over the selected set), so that runs over sets of different sizes get the same budget.
    ``bn_stats``: let BatchNorm layers of the trained parts update their statistics
    (off by default: with few, small batches the statistics drift from what the weights learn,
    and the fine-tuned map then differs between training and evaluation; see
    ``tests/abn/test_retrain.py::test_finetune_moves_maps_to_teachers_and_keeps_features_frozen``).
    """

    select: str = "per"
    include_correct: float = 0.0
    train: tuple[str, ...] = ("attention", "perception")
    losses: tuple[str, ...] = DEFAULT_LOSSES
    gamma: float = 1.0
    rrr_weight: float = 1.0
    rrr_max: int | None = None
    epochs: int = 3
    steps: int | None = None
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    teacher_repeat: int = 1
    perception_map: str = "own"
    flip: bool = True
    bn_stats: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        self.train = tuple(self.train)
        self.losses = tuple(self.losses)
        if self.select not in SELECT_BY:
            raise ValueError(f"select must be one of {SELECT_BY}, got {self.select!r}")
        if not 0.0 <= self.include_correct <= 1.0:
            raise ValueError(f"include_correct must be a share in [0, 1], got {self.include_correct}")
        bad = [p for p in self.train if p not in PARTS]
        if bad or not self.train:
            raise ValueError(f"train must name parts among {PARTS}, got {self.train}")
        bad = [x for x in self.losses if x not in LOSSES]
        if bad or not self.losses:
            raise ValueError(f"losses must be among {LOSSES}, got {self.losses}")
        if self.gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {self.gamma}")
        if self.rrr_weight < 0:
            raise ValueError(f"rrr_weight must be >= 0, got {self.rrr_weight}")
        if self.rrr_max is not None and self.rrr_max < 1:
            raise ValueError(
                f"rrr_max must be >= 1 (or None: every sample with a teacher map), got {self.rrr_max}"
            )
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1 (or None: epochs passes), got {self.steps}")
        if self.epochs < 1 or self.batch_size < 1 or self.teacher_repeat < 1:
            raise ValueError("epochs, batch_size and teacher_repeat must be >= 1")
        if self.perception_map not in ("own", "teacher"):
            raise ValueError(f"perception_map must be 'own' or 'teacher', got {self.perception_map!r}")


@torch.no_grad()
def record(model, data: ArrayDataset, batch_size: int = 128, mean=MEAN, std=STD) -> dict:
    """Maps (N,h,w) and both branches' predictions and correctness on ``data``."""
    model.eval()
    maps, per, att = [], [], []
    for i in range(0, len(data), batch_size):
        att_logits, per_logits, m = model(to_tensor(data.images[i : i + batch_size], mean, std))
        maps.append(m[:, 0].numpy())
        per.append(per_logits.argmax(1).numpy())
        att.append(att_logits.argmax(1).numpy())
    per_pred, att_pred = np.concatenate(per), np.concatenate(att)
    return {
        "maps": np.concatenate(maps),
        "per_pred": per_pred,
        "att_pred": att_pred,
        "per_correct": per_pred == data.labels,
        "att_correct": att_pred == data.labels,
    }


def select_samples(
    rec: dict, cfg: RetrainConfig, teacher_index: np.ndarray | None = None
) -> tuple[np.ndarray, dict]:
    """Indices to fine-tune on and a count of why each was chosen."""
    per_wrong, att_wrong = ~rec["per_correct"], ~rec["att_correct"]
    wrong = {
        "per": per_wrong,
        "att": att_wrong,
        "both": per_wrong & att_wrong,
        "either": per_wrong | att_wrong,
    }[cfg.select]
    rng = np.random.default_rng(cfg.seed)
    right = np.flatnonzero(~wrong)
    extra = rng.choice(right, size=int(round(cfg.include_correct * len(right))), replace=False)
    chosen = np.zeros(len(wrong), bool)
    chosen[np.flatnonzero(wrong)] = True
    chosen[extra] = True
    n_teacher_only = 0
    if teacher_index is not None and len(teacher_index):
        n_teacher_only = int((~chosen[teacher_index]).sum())
        chosen[teacher_index] = True
    index = np.flatnonzero(chosen)
    why = {
        "misrecognized": int(wrong.sum()),
        "correct_added": len(extra),
        "teacher_maps_added": n_teacher_only,
        "total": len(index),
    }
    return index, why


def pointing_game(maps: np.ndarray, masks: np.ndarray) -> float:
    """Share of images whose map maximum (the map resized to the image, bilinear) lies on the
    object mask. ``maps`` (N,h,w), ``masks`` (N,H,W) bool."""
    from edge_runtime.models.correct import map_to_image

    hits = 0
    for m, mask in zip(maps, masks, strict=True):
        up = map_to_image(m, mask.shape)
        hits += bool(mask.flat[int(np.argmax(up))])
    return hits / max(1, len(maps))


def evaluate_maps(model, data: ArrayDataset, batch_size: int = 128) -> dict:
    """Top-1 of both branches, and the pointing game of M on the objects where masks exist."""
    rec = record(model, data, batch_size)
    out = {
        "top1": float(rec["per_correct"].mean()),
        "top1_attention_branch": float(rec["att_correct"].mean()),
        "n": len(data),
    }
    if data.masks is not None:
        out["pointing_game"] = pointing_game(rec["maps"], data.masks)
    return out


def _set_trainable(model, cfg: RetrainConfig) -> list[torch.nn.Parameter]:
    params = []
    for part in PARTS:
        on = part in cfg.train
        for p in getattr(model, part).parameters():
            p.requires_grad_(on)
            if on:
                params.append(p)
    return params


def _rrr_term(
    model, x: torch.Tensor, t: torch.Tensor, hm: torch.Tensor, limit: int | None, rng: np.random.Generator
) -> torch.Tensor:
    """The RRR penalty (:mod:`models.rrr`) averaged over the samples with a teacher map (only they
    have an annotation; the double backward pass runs on them alone, at most ``limit`` of them)."""
    from edge_runtime.models.rrr import input_gradient_penalty, irrelevant_region

    if not hm.any():
        return x.new_zeros(())
    sub = torch.nonzero(hm)[:, 0]
    if limit is not None and len(sub) > limit:
        sub = sub[torch.from_numpy(np.sort(rng.choice(len(sub), limit, replace=False)))]
    outside = irrelevant_region(t[sub], tuple(x.shape[-2:]))
    return input_gradient_penalty(model, x[sub], outside).mean()


def finetune(
    model,
    data: ArrayDataset,
    teachers: dict[int, np.ndarray],
    cfg: RetrainConfig,
    *,
    index: np.ndarray | None = None,
    progress: bool = True,
) -> tuple[torch.nn.Module, dict]:
    """Fine-tune a copy of ABN ``model`` on ``data[index]`` (default: all) with teacher maps
    ``teachers`` (sample index -> map at the split resolution). Returns ``(model, log)``."""
    model = copy.deepcopy(model)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    index = np.arange(len(data)) if index is None else np.asarray(index)
    h, w = model.features(to_tensor(data.images[:1]))[0].shape[2:]
    tmap = np.zeros((len(data), h, w), np.float32)
    has = np.zeros(len(data), bool)
    for i, m in teachers.items():
        if m.shape != (h, w):
            raise ValueError(f"teacher map of sample {i} has shape {m.shape}; the model's map is {h} x {w}")
        tmap[i], has[i] = m, True
    pool = np.concatenate([index] + [index[has[index]]] * (cfg.teacher_repeat - 1))
    params = _set_trainable(model, cfg)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, len(pool) // cfg.batch_size)
    epochs = cfg.epochs
    if cfg.steps is not None:  # a fixed budget: whole passes, the last one cut short
        epochs = -(-cfg.steps // steps)
    total = cfg.steps if cfg.steps is not None else epochs * steps
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    history = []
    t0 = time.perf_counter()
    done = 0
    for epoch in range(epochs):
        model.train()
        for part in PARTS:
            if part not in cfg.train or not cfg.bn_stats:
                for mod in getattr(model, part).modules():
                    if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                        mod.eval()  # statistics stay as they are (frozen parts always)
        order = rng.permutation(pool)
        n_steps = min(steps, total - done)
        bar = tqdm(range(n_steps), desc=f"retrain {epoch + 1}/{epochs}", disable=not progress)
        sums = dict.fromkeys(LOSSES, 0.0)
        for step in bar:
            idx = np.sort(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
            images = data.images[idx]
            t = tmap[idx]
            if cfg.flip:
                flip = rng.random(len(idx)) < 0.5
                images[flip] = images[flip, :, ::-1]
                t = t.copy()
                t[flip] = t[flip, :, ::-1]
            x = to_tensor(images)
            y = torch.from_numpy(data.labels[idx])
            t = torch.from_numpy(np.ascontiguousarray(t))[:, None]
            hm = torch.from_numpy(has[idx])
            with torch.set_grad_enabled("features" in cfg.train):
                f, _ = model.features(x)
            att_logits, m = model.attention(f)
            m_per = torch.where(hm[:, None, None, None], t, m) if cfg.perception_map == "teacher" else m
            per_logits = model.back_with_map(f, m_per)
            terms = {
                "att": F.cross_entropy(att_logits, y),
                "per": F.cross_entropy(per_logits, y),
                "map": ((m - t) ** 2).sum(dim=(1, 2, 3))[hm].sum() / max(1, int(hm.sum()))
                if hm.any()
                else m.sum() * 0.0,
                "rrr": _rrr_term(model, x, t, hm, cfg.rrr_max, rng)
                if "rrr" in cfg.losses
                else m.sum().detach() * 0.0,
            }
            weight = {"map": cfg.gamma, "rrr": cfg.rrr_weight}
            loss = sum(weight.get(k, 1.0) * terms[k] for k in cfg.losses)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            for k in LOSSES:
                sums[k] += float(terms[k].detach())
            bar.set_postfix(loss=f"{loss.item():.3f}", map=f"{terms['map'].item():.4f}")
        done += n_steps
        history.append(
            {"epoch": epoch + 1, "steps": done, **{f"loss_{k}": v / n_steps for k, v in sums.items()}}
            | {"seconds": round(time.perf_counter() - t0, 1)}
        )
        log.info("retrain epoch %d: %s", epoch + 1, history[-1])
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    return model, {
        "config": asdict(cfg),
        "samples": len(index),
        "teacher_maps": int(has[index].sum()),
        "history": history,
    }
