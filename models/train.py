"""Training of the ABN (``L = L_att + L_per``) and of the plain baseline.

Seeded, with a progress bar and a checkpoint per epoch. A checkpoint is a dict with the model's
``arch``, ``config``, ``state_dict``, ``classes``, the input spec (size, mean, std) and metrics,
which is everything :mod:`models.export` needs.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.optim import swa_utils
from tqdm import tqdm

from edge_runtime.kernels._jit import jit
from edge_runtime.models.data import MEAN, STD, ArrayDataset, to_tensor
from edge_runtime.models.networks import build_model
from edge_runtime.photos import CAMERAS

__all__ = ["TrainConfig", "train", "evaluate", "load_checkpoint", "logits_of", "map_loss", "recipe"]

log = logging.getLogger(__name__)
_TYPICAL = CAMERAS["typical"]


@dataclass
class TrainConfig:
    arch: str = "abn-s"
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    bottleneck: int = 8
    synthesis: str = "mul"
    threads: int = 0  # 0: leave torch's default
    widths: tuple[int, int, int] = (24, 48, 64)
    label_smoothing: float = 0.1
    augment: bool = True  # shifts and colour (gain, contrast, channel order) besides the flips
    # the share of images given a second pass of the camera model's knobs on top of the scenes' own
    # (blur, sensor noise, gamma, JPEG; each within the training camera's ranges, so their compound
    # reaches past them); 0: off. On every image (1.0) it lowered in-domain and camera-variation
    # top-1 alike in 30 000-scene x 4-epoch runs (68.4 / 68.3% against 74.8 / 71.2%). On a third
    # (the default), full recipe, 5000 validation frames per variant: in domain 86.00% against 85.98%
    # without, the camera-variation test's harsher camera 83.30% against 82.18% (domain gap 2.7
    # against 3.8 points); it costs about 4 of the recipe's 28 minutes
    camera_augment: float = 0.33
    # Weight of L_map, the ABN map M against the share of each map cell the item covers (the
    # built-in scenes' masks; ImageFolder data has none and trains without it). On validation
    # (3000 fashion scenes, the same 8-minute budget): 83.5% with weight 1 against 71.8% without;
    # the network learns where the item is long before it learns from the labels alone.
    map_weight: float = 1.0
    precision: str = "auto"  # bf16 | fp32 | auto (bf16 where the CPU has native bf16 matrix units)
    # decay of an exponential moving average of the weights (and BatchNorm statistics) kept beside
    # the trained ones (torch.optim.swa_utils); the average is what is evaluated and saved. 0: off
    ema: float = 0.0
    # the training step's forward and backward through torch.compile (inductor: fuses each
    # BatchNorm and ReLU into its neighbours, which in eager mode are about 60% of a step: memory-
    # bound passes over activations that the convolutions on the bf16 units leave behind). abn-s,
    # batch 64, 2 threads: 128 ms a step against 163 eager. off | on | auto (on where a C++
    # compiler is found; inductor needs one). Costs 20-40 s of compiling at the start.
    compile: str = "off"


def recipe(cfg) -> dict:
    """A training config (a flat dataclass) as JSON holds it: tuples as lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(cfg).items()}


def _use_compile(mode: str) -> bool:
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"compile must be auto, on or off, got {mode!r}")
    if mode == "off":
        return False
    compiler = shutil.which(os.environ.get("CXX", "c++")) or shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        if mode == "on":
            raise ValueError(
                "compile 'on' needs a C++ compiler (inductor builds its kernels); none found on PATH: "
                "install g++ or use --compile auto / off"
            )
        log.info("training in eager mode: no C++ compiler on PATH for torch.compile")
    return compiler is not None


def _use_bf16(precision: str) -> bool:
    """bfloat16 autocast for training steps: about 2x faster on CPUs with AMX / AVX-512 BF16,
    much slower on those without, hence ``auto``. Weights, optimiser and evaluation stay float32."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision must be auto, bf16 or fp32, got {precision!r}")
    if precision == "auto":
        # torch's capability string says "AVX512" on CPUs that also have AVX512_BF16 (this
        # 2-core EPYC), which left auto on float32: 391 images/s against 518 with bf16 (abn-s,
        # batch 64, 2 threads); the instruction-set probes below see the bf16 units
        amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
        avx512_bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        return amx or avx512_bf16
    return precision == "bf16"


def augment(
    images: np.ndarray,
    rng: np.random.Generator,
    shift: int = 8,
    masks: np.ndarray | None = None,
    camera: float = 0.0,
) -> tuple[torch.Tensor, np.ndarray | None]:
    """A training batch from uint8 scenes: random flip, shift (reflect-padded) and colour (per-image
    channel gains, contrast, brightness, a random channel order on half the images), normalised
    (channels-last strides); and ``masks`` flipped and shifted the same way.

    Cached scenes are reused across epochs; this keeps them from repeating exactly, and the colour
    changes keep the network from tying classes to the colours of the few training backgrounds.
    On validation (2000 fashion scenes, the default recipe otherwise): 87.4% against 86.3%, and
    84.5% against 82.2% on scenes of the camera-variation test's harsher camera.

    ``camera``: the share of images (drawn per image; 0: none, 1: all) that also go through the
    training camera's knobs once more, each drawn from that camera's range
    (``edge_runtime.photos.CAMERAS["typical"]``): Gaussian blur on half of them, JPEG on a third,
    gamma and sensor noise on all. Applied on top of a scene's own camera they compound to harsher
    values than any single training frame has. With 0 the random stream is the one without it.
    """
    if not 0.0 <= camera <= 1.0:
        raise ValueError(f"camera must be a share in [0, 1], got {camera!r}")
    n, h, w, _ = images.shape
    recap, dy, dx, flip, perm = geometry_draws(rng, n, shift, camera)
    masks_in = np.empty((0, h, w), bool) if masks is None else masks  # none: the kernel skips them
    out, out_masks = np.empty_like(images), np.empty_like(masks_in)
    _shift_flip(images, masks_in, dy, dx, flip, perm, shift, out, out_masks)
    for i in np.flatnonzero(recap):
        _recapture(out[i], rng)
    gain, contrast, bright, sigma, fields = colour_draws(rng, recap)
    x = np.empty(out.shape, np.float32)
    bank = _noise_bank(out.shape[1:]).numpy() if sigma.any() else np.zeros((1, 1, 1, 1), np.float32)
    _colour(out, gain, contrast, bright, sigma, fields, bank, np.float32(MEAN), np.float32(STD), x)
    return torch.from_numpy(x).permute(0, 3, 1, 2), None if masks is None else out_masks


def geometry_draws(rng: np.random.Generator, n: int, shift: int, camera: float):
    """A batch's first random draws: which images get the camera pass, the shift, the flip and
    the channel order (``perm``: the identity on about half the images)."""
    recap = rng.random(n) < camera if camera else np.zeros(n, bool)
    dy, dx = rng.integers(0, 2 * shift + 1, (2, n))
    flip = rng.random(n) < 0.5
    perm = np.where(
        rng.random(n)[:, None] < 0.5, rng.permuted(np.tile(np.arange(3), (n, 1)), axis=1), np.arange(3)
    )
    return recap, dy, dx, flip, perm


def colour_draws(rng: np.random.Generator, recap: np.ndarray):
    """A batch's colour draws, after the camera pass's: per-channel gain, contrast, brightness,
    and the sensor noise's signed sigma (0 where no camera pass) and bank field per image."""
    n = len(recap)
    gain = rng.uniform(0.8, 1.2, (n, 3)).astype(np.float32)
    contrast = rng.uniform(0.7, 1.3, n).astype(np.float32)
    bright = rng.uniform(-0.1, 0.1, n).astype(np.float32)
    sigma, fields = np.zeros(n, np.float32), np.zeros(n, np.int64)
    if recap.any():  # sensor noise: fields of a fixed bank, each at its own sigma and sign
        sign = np.where(recap, np.where(rng.random(n) < 0.5, -1.0, 1.0), 0.0)
        sigma = (sign * rng.uniform(*_TYPICAL.noise, n) / 255.0).astype(np.float32)
        fields = rng.integers(0, _NOISE_FIELDS, n)
    return gain, contrast, bright, sigma, fields


@jit
def _shift_flip(images, masks, dy, dx, flip, perm, shift, out, out_masks):
    """``out[i]``: the window at ``(dy[i], dx[i])`` of image ``i`` reflect-padded by ``shift``
    (OpenCV's BORDER_REFLECT_101, NumPy's "reflect"), mirrored left-right where ``flip[i]``, its
    channels in the order ``perm[i]``; ``out_masks[i]`` the same window of ``masks[i]`` (none when
    ``masks`` is empty): the pixels of the two integer ``cv2.warpAffine`` calls an image (and a
    channel-permuted copy) it replaced (``benchmarks/augment.py`` times both paths)."""
    n, h, w, c = images.shape
    cols = np.empty(w, np.int64)
    for i in range(n):
        for x in range(w):
            sx = (w - 1 - x if flip[i] else x) + dx[i] - shift
            cols[x] = -sx if sx < 0 else (2 * w - 2 - sx if sx >= w else sx)
        p0, p1, p2 = perm[i, 0], perm[i, 1], perm[i, 2]
        for y in range(h):
            sy = y + dy[i] - shift
            sy = -sy if sy < 0 else (2 * h - 2 - sy if sy >= h else sy)
            src, dst = images[i, sy], out[i, y]
            for x in range(w):
                px = src[cols[x]]
                dst[x, 0], dst[x, 1], dst[x, 2] = px[p0], px[p1], px[p2]
            if masks.shape[0]:
                for x in range(w):
                    out_masks[i, y, x] = masks[i, sy, cols[x]]


@jit
def _colour(images, gain, contrast, bright, sigma, fields, bank, mean, std, out):
    """``out`` = the batch's colour augmentation, normalised, channels last: per image
    ``v = clamp((x * gain - m) * contrast + m + bright)`` with ``x`` the pixel over 255 and ``m``
    the image's mean ``x``; where ``sigma`` is not 0, ``clamp(v + sigma * bank[field])`` (sensor
    noise); then ``(v - mean) / std``. The same float32 operations in the same order as the seven
    whole-batch PyTorch passes it replaced (only the image mean is summed in another order), made
    once per image, channel and pixel value (a table of 3 x 256) and looked up per pixel. With
    :func:`_shift_flip`, a batch of 64 in 0.46 x the time of the path before (11.5 against 25.2 ms,
    two threads; ``benchmarks/augment.py``, 2026-12-08); the passes were half of that path."""
    n, h, w, c = images.shape
    scale = np.float32(255.0)
    zero, one = np.float32(0.0), np.float32(1.0)
    lut = np.empty((c, 256), np.float32)
    for i in range(n):
        total = 0
        for y in range(h):
            for x in range(w):
                for ch in range(c):
                    total += images[i, y, x, ch]
        m = np.float32(total / 255.0 / (h * w * c))
        k, s = fields[i], sigma[i]
        for ch in range(c):
            for u in range(256):
                v = (np.float32(u) / scale * gain[i, ch] - m) * contrast[i] + m + bright[i]
                v = min(max(v, zero), one)
                lut[ch, u] = v if s != zero else (v - mean[ch]) / std[ch]
        for y in range(h):
            for x in range(w):
                for ch in range(c):
                    v = lut[ch, images[i, y, x, ch]]
                    if s != zero:
                        v = (min(max(v + bank[k, y, x, ch] * s, zero), one) - mean[ch]) / std[ch]
                    out[i, y, x, ch] = v


def colour_reference(images, gain, contrast, bright, sigma, fields) -> torch.Tensor:
    """What :func:`_colour` computes, as the whole-batch PyTorch passes it replaced (channels
    last); for its test and ``benchmarks/augment.py``."""
    n = len(images)
    x = torch.from_numpy(images).float().div_(255.0)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x.mul_(torch.from_numpy(gain).view(n, 1, 1, 3)).sub_(mean).mul_(
        torch.from_numpy(contrast).view(n, 1, 1, 1)
    )
    x.add_(mean).add_(torch.from_numpy(bright).view(n, 1, 1, 1)).clamp_(0.0, 1.0)
    if sigma.any():
        noise = _noise_bank(tuple(x.shape[1:]))[torch.from_numpy(fields)]
        x.add_(noise.mul_(torch.from_numpy(sigma).view(n, 1, 1, 1))).clamp_(0.0, 1.0)
    return x.sub_(torch.tensor(MEAN, dtype=torch.float32)).div_(torch.tensor(STD, dtype=torch.float32))


_NOISE_FIELDS = 256


@functools.cache
def _noise_bank(shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal fields (channels last) drawn once: drawing a batch's noise afresh took 24 ms
    a batch of 64 (as much as the rest of the augmentation), picking fields from here 3 ms."""
    return torch.randn((_NOISE_FIELDS, *shape), generator=torch.Generator().manual_seed(0))


def _recapture(img: np.ndarray, rng: np.random.Generator) -> None:
    """In place: gamma, blur (half the images) and JPEG (a third) at the training camera's settings.

    Not ``photos.Camera.apply`` with the other knobs neutral: its float32 path (power, then the
    rest) cost 48-56 ms a batch of 64 against 11-19 ms for this uint8 one (a gamma LUT), about
    7 minutes over the default recipe."""
    lut = np.round(255.0 * (np.arange(256) / 255.0) ** rng.uniform(*_TYPICAL.gamma)).astype(np.uint8)
    img[:] = cv2.LUT(img, lut)
    if rng.random() < 0.5:
        img[:] = cv2.GaussianBlur(img, (0, 0), max(0.3, rng.uniform(*_TYPICAL.blur)))
    if rng.random() < 1 / 3:
        q = int(rng.integers(*_TYPICAL.jpeg_quality))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        img[:] = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def logits_of(outputs) -> torch.Tensor:
    """The logits the product uses: the perception branch for ABN, the only head otherwise."""
    return outputs[1] if len(outputs) == 3 else outputs[0]


def map_loss(m: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """L_map: binary cross-entropy of the ABN map M (N, 1, h, w) against the share of each map
    cell that the item's mask (N, H, W) covers."""
    target = F.adaptive_avg_pool2d(masks[:, None].float(), m.shape[-2:])
    return F.binary_cross_entropy(m.float().clamp(1e-6, 1 - 1e-6), target)


def _loss(outputs, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    def ce(logits):
        return F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)

    if len(outputs) == 3:  # ABN: L = L_att + L_per
        return ce(outputs[0]) + ce(outputs[1])
    return ce(outputs[0])


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: ArrayDataset, batch_size: int = 256) -> dict:
    """Top-1 accuracy of each head on ``data`` (``per``: the product's head)."""
    model.eval()
    correct_per = correct_att = 0
    for i in range(0, len(data), batch_size):
        x = to_tensor(data.images[i : i + batch_size])
        y = torch.from_numpy(data.labels[i : i + batch_size])
        out = model(x)
        correct_per += (logits_of(out).argmax(1) == y).sum().item()
        if len(out) == 3:
            correct_att += (out[0].argmax(1) == y).sum().item()
    n = len(data)
    result = {"top1": correct_per / n, "n": n}
    if hasattr(model, "attention"):
        result["top1_attention_branch"] = correct_att / n
    return result


def train(
    cfg: TrainConfig,
    train_data: ArrayDataset,
    test_data: ArrayDataset,
    out_dir: str | Path,
    *,
    progress: bool = True,
    data_seconds: float = 0.0,
) -> Path:
    """Train ``cfg.arch`` and write ``out_dir/checkpoint.pt`` (after every epoch); returns its path.

    ``data_seconds``: how long making the data took before; each epoch's record has ``seconds``
    (training so far) and ``wall_seconds`` (with the data: the recipe's wall time so far).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    num_classes = len(train_data.classes)
    kwargs = {"num_classes": num_classes, "bottleneck": cfg.bottleneck, "widths": tuple(cfg.widths)}
    if cfg.arch.startswith("abn"):
        kwargs["synthesis"] = cfg.synthesis
    model = build_model(cfg.arch, **kwargs)
    bf16 = _use_bf16(cfg.precision)
    model = model.to(memory_format=torch.channels_last)  # oneDNN's fast layout for these convolutions
    # the step's model: compiled or not, it shares its parameters and buffers with ``model``
    step_model = torch.compile(model) if _use_compile(cfg.compile) else model
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(train_data) // cfg.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch, pct_start=0.15
    )
    ema = None
    if cfg.ema:
        if not 0.0 < cfg.ema < 1.0:
            raise ValueError(f"ema must be a decay in (0, 1) or 0 (off), got {cfg.ema!r}")
        ema = swa_utils.AveragedModel(
            model, multi_avg_fn=swa_utils.get_ema_multi_avg_fn(cfg.ema), use_buffers=True
        )
    path = out_dir / "checkpoint.pt"
    map_weight = cfg.map_weight if hasattr(model, "attention") and train_data.masks is not None else 0.0
    if cfg.map_weight and not map_weight:
        log.info(
            "training without L_map: %s",
            "the data has no masks" if hasattr(model, "attention") else "no ABN map",
        )
    start = time.perf_counter()
    history = []
    for epoch in range(cfg.epochs):
        model.train()
        order = rng.permutation(len(train_data))
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress)
        running = 0.0
        for step in bar:
            # the batch is made here, between steps: made in a background thread while the step
            # before trained (the same batches, bit for bit), an epoch took 1.24 x as long on 2
            # cores (6400 scenes, 2 threads, one pair of runs, 2026-12-07): the thread takes CPU
            # from torch's OpenMP team, whose every barrier then waits for a descheduled thread
            idx = np.sort(order[step * cfg.batch_size : (step + 1) * cfg.batch_size])
            images = train_data.images[idx]
            masks = train_data.masks[idx] if map_weight else None
            if cfg.augment:
                x, masks = augment(images, rng, masks=masks, camera=cfg.camera_augment)
            else:
                flip = rng.random(len(idx)) < 0.5
                images[flip] = images[flip, :, ::-1]
                if masks is not None:
                    masks[flip] = masks[flip, :, ::-1]
                x = to_tensor(images)
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.from_numpy(train_data.labels[idx])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                outputs = step_model(x)
                loss = _loss(outputs, y, cfg.label_smoothing)
            if masks is not None:  # ABN: + map_weight * L_map, in float32 (BCE is not autocast-safe)
                loss = loss + map_weight * map_loss(outputs[2], torch.from_numpy(np.ascontiguousarray(masks)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if ema is not None:
                ema.update_parameters(model)
            running = 0.9 * running + 0.1 * loss.item() if step else loss.item()
            bar.set_postfix(loss=f"{running:.3f}")
        kept = model if ema is None else ema.module
        metrics = evaluate(kept, test_data)
        if ema is not None:
            metrics["top1_without_ema"] = evaluate(model, test_data)["top1"]
        seconds = time.perf_counter() - start
        metrics.update(
            epoch=epoch + 1, seconds=round(seconds, 1), wall_seconds=round(data_seconds + seconds, 1)
        )
        history.append(metrics)
        log.info("epoch %d: %s", epoch + 1, metrics)
        if progress:
            tqdm.write(f"epoch {epoch + 1}: validation top-1 {metrics['top1']:.4f}")
        _save(path, kept, cfg, train_data, history)
    return path


def _save(path: Path, model, cfg: TrainConfig, data: ArrayDataset, history: list) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "arch": cfg.arch,
            "config": model.config,
            "state_dict": model.state_dict(),
            "classes": list(data.classes),
            "input": {
                "size": [int(data.images.shape[1]), int(data.images.shape[2])],
                "mean": list(MEAN),
                "std": list(STD),
            },
            "train": recipe(cfg) | {"num_train": len(data)},
            "history": history,
        },
        tmp,
    )
    tmp.replace(path)  # atomic: a crash mid-write leaves the previous checkpoint readable


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model of a checkpoint in eval mode; returns ``(model, checkpoint)``."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(ckpt["arch"], **ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, ckpt
