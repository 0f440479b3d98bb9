"""Fair baselines: the whole model fine-tuned on frames that a codec compressed at random qualities.

The split path's back half is fine-tuned on masked, quantized features (:mod:`models.finetune`); a
frame codec's model that never saw that codec's artefacts is an easy bar. Here the *whole* model
(front and back) is fine-tuned on frames compressed by the baseline's codec, each frame at a quality
drawn at random from the codec's sweep, with the same budget (epochs x images) as the split path's
fine-tuning (:func:`split_path_budget` reads it from the bundle's manifest). The loss mirrors
:func:`models.finetune.finetune`: ``L_att + L_per`` plus, with weight ``distill``, KL to the
starting model's logits on the clean frame.

The starting model is rebuilt from the bundle itself (:func:`model_from_bundle`): the exported
graphs carry the weights with every BatchNorm folded into the convolution before it, so the network
is built with :func:`models.networks.fuse_batchnorm` applied and the ONNX initializers are loaded
into it (checked against ONNX Runtime in ``tests/models/test_codec_finetune.py``). With no
BatchNorm left there are no batch statistics to drift during fine-tuning.

Codecs are plain callables ``compress(frames, rng) -> (decoded frames, bytes per frame)``; the
benchmarks build them (``benchmarks/rate_baselines.py`` for the still codecs, ``benchmarks/
rate_stream.py`` for H.264 / HEVC). No CLI: the benchmarks call :func:`finetune_on_codec`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edge_runtime.models.data import to_tensor
from edge_runtime.models.networks import build_model, fuse_batchnorm
from edge_runtime.models.train import logits_of

__all__ = [
    "CodecFinetuneConfig",
    "Compress",
    "model_from_bundle",
    "split_path_budget",
    "finetune_on_codec",
    "predict",
]

log = logging.getLogger(__name__)

#: ``compress(frames (N,H,W,3) uint8, rng) -> (decoded frames (N,H,W,3) uint8, bytes (N,))``: one
#: pass of the codec over a batch of training frames, at qualities it draws from ``rng``.
Compress = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass
class CodecFinetuneConfig:
    """Options of :func:`finetune_on_codec`; ``epochs`` x ``images`` is the budget."""

    epochs: int = 4
    images: int = 12000
    batch_size: int = 64
    lr: float = 3e-4  # the whole network moves, so a third of the back-half fine-tuning's 1e-3
    weight_decay: float = 1e-4
    distill: float = 1.0
    seed: int = 0
    threads: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.images < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs, images and batch_size must be >= 1, got {self.epochs}, {self.images}, {self.batch_size}"
            )


def _manifest(bundle_dir: str | Path) -> dict:
    return json.loads((Path(bundle_dir) / "manifest.json").read_text())


def split_path_budget(bundle_dir: str | Path) -> tuple[int, int]:
    """(epochs, images) of the split path's fine-tuning recorded in the bundle's manifest."""
    tr = _manifest(bundle_dir).get("training", {})
    ft = tr.get("finetune")
    if not ft:
        raise ValueError(f"{bundle_dir}: the manifest records no split-path fine-tuning (training.finetune)")
    images = int(ft.get("num_train", tr.get("num_train", 0)))
    if images < 1:
        raise ValueError(f"{bundle_dir}: the manifest records no training set size (training.num_train)")
    return int(ft["epochs"]), images


def model_from_bundle(bundle_dir: str | Path) -> tuple[torch.nn.Module, dict]:
    """The bundle's network in PyTorch (BatchNorm folded, weights from ``front.onnx`` and
    ``back.onnx``) and its input spec ``{"mean", "std", "size"}``."""
    import onnx
    from onnx import numpy_helper

    bundle_dir = Path(bundle_dir)
    man = _manifest(bundle_dir)
    tr = man.get("training", {})
    kwargs = dict(man.get("model_config", {}))  # bundles exported before it existed: what training recorded
    kwargs["num_classes"] = len(man["classes"])
    for k in ("bottleneck", "synthesis"):
        if k in tr and k not in kwargs:
            kwargs[k] = tr[k]
    model = fuse_batchnorm(build_model(man["arch"], **kwargs))
    state = {}
    for graph in ("front", "back"):
        g = onnx.load(str(bundle_dir / man["graphs"][graph]["file"]), load_external_data=False).graph
        for init in g.initializer:
            if init.name.startswith("model."):
                state[init.name.removeprefix("model.")] = torch.from_numpy(numpy_helper.to_array(init).copy())
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{bundle_dir}: the ONNX weights do not fit {man['arch']}: missing {missing}, unexpected {unexpected}"
        )
    model.eval()
    spec = {
        "mean": tuple(man["input"]["mean"]),
        "std": tuple(man["input"]["std"]),
        "size": man["input"]["size"],
    }
    return model, spec


@torch.no_grad()
def predict(model: torch.nn.Module, frames: np.ndarray, spec: dict, batch: int = 256) -> np.ndarray:
    """The product's logits (N, K) of ``model`` on uint8 RGB ``frames``."""
    model.eval()
    out = [
        logits_of(model(to_tensor(frames[i : i + batch], spec["mean"], spec["std"]))).numpy()
        for i in range(0, len(frames), batch)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def _loss(outputs, y: torch.Tensor, teacher: torch.Tensor | None, distill: float) -> torch.Tensor:
    heads = outputs[:2] if len(outputs) == 3 else outputs[:1]  # ABN: L_att + L_per
    loss = sum(F.cross_entropy(h, y) for h in heads)
    if teacher is not None and distill:
        loss = loss + distill * F.kl_div(
            F.log_softmax(logits_of(outputs), 1),
            F.log_softmax(teacher, 1),
            log_target=True,
            reduction="batchmean",
        )
    return loss


def finetune_on_codec(
    model: torch.nn.Module,
    spec: dict,
    frames: np.ndarray,
    labels: np.ndarray,
    compress: Compress,
    cfg: CodecFinetuneConfig,
    *,
    progress: bool = False,
) -> dict:
    """Fine-tune every weight of ``model`` (in place) on ``frames`` passed through ``compress``.

    Each epoch takes ``cfg.images`` frames (cycling through ``frames`` if there are fewer), runs
    them through the codec once in their own order (a video codec sees the stream as it was; fresh
    random qualities every epoch) and trains on the decoded frames in shuffled order. Returns a record of the run (config, seconds, mean training bytes, loss by epoch)."""
    if len(frames) == 0 or len(frames) != len(labels):
        raise ValueError(
            f"need as many labels as frames (> 0), got {len(frames)} frames, {len(labels)} labels"
        )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    start = time.perf_counter()
    teacher = predict(model, frames, spec) if cfg.distill else None
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = max(1, cfg.images // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps)
    y_all = torch.from_numpy(np.asarray(labels, np.int64))
    t_all = None if teacher is None else torch.from_numpy(teacher)
    record = {"config": asdict(cfg), "loss": [], "train_bytes_mean": []}
    for epoch in range(cfg.epochs):
        # in the frames' own order (a video codec needs the stream as it was), trained shuffled
        idx = np.resize(np.arange(len(frames)), steps * cfg.batch_size)
        seen, sizes = compress(frames[idx], rng)
        order = rng.permutation(len(idx))
        idx, seen = idx[order], seen[order]
        running = 0.0
        bar = tqdm(range(steps), desc=f"codec finetune {epoch + 1}/{cfg.epochs}", disable=not progress)
        model.eval()  # no BatchNorm or dropout left: train and eval behave alike
        for step in bar:
            sl = slice(step * cfg.batch_size, (step + 1) * cfg.batch_size)
            b = torch.from_numpy(idx[sl])
            out = model(to_tensor(seen[sl], spec["mean"], spec["std"]))
            loss = _loss(out, y_all[b], None if t_all is None else t_all[b], cfg.distill)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
            bar.set_postfix(loss=f"{running:.3f}")
        record["loss"].append(round(running, 4))
        record["train_bytes_mean"].append(float(np.mean(sizes)))
        log.info("codec fine-tuning epoch %d: loss %.4f", epoch + 1, running)
    for p in params:
        p.requires_grad_(False)
    model.eval()
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record
