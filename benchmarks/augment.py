"""What augmenting a training batch costs, against the implementation it replaced and against a
training step of the default recipe.

    python benchmarks/augment.py [--task fashion] [--batches 60] [--threads 2] [--steps 30]

Side by side in one process, alternating batch by batch on the same images with the same random
draws: ``models.train.augment`` (Numba kernels for the shift, flip and channel order and for the
colour) and the path before it (an OpenCV warp per image and per mask, then whole-batch PyTorch
passes for the colour, ``models.train.colour_reference``), with the default recipe's camera share
and masks; their outputs are compared. Then training steps of the default recipe (abn-s, batch 64,
``--precision auto``, ``--compile auto``, fed by the new augmentation) so that the saving reads as a
share of a step and as minutes over the default recipe's steps. Writes
``benchmarks/results/augment.json``; times are ratios of one run, the machine being shared.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import run_cli, write_result  # noqa: E402
from benchmarks.rate_select import mean_interval, ratio_interval  # noqa: E402

BATCH = 64


def augment_before(images, rng, masks, camera: float, shift: int = 8):
    """The augmentation as it was before its kernels (same random draws, same outputs)."""
    import cv2

    from edge_runtime.models import train as t

    n, h, w, _ = images.shape
    recap, dy, dx, flip, perm = t.geometry_draws(rng, n, shift, camera)
    out, out_masks = np.empty_like(images), np.empty_like(masks)
    for i in range(n):
        tx, ty = shift - dx[i], shift - dy[i]
        m = np.float32([[-1, 0, w - 1 - tx], [0, 1, ty]] if flip[i] else [[1, 0, tx], [0, 1, ty]])
        img = images[i] if (perm[i] == (0, 1, 2)).all() else np.ascontiguousarray(images[i][..., perm[i]])
        out[i] = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
        m8 = cv2.warpAffine(masks[i].view(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_REFLECT_101)  # fmt: skip
        out_masks[i] = m8.view(bool)
    for i in np.flatnonzero(recap):
        t._recapture(out[i], rng)
    gain, contrast, bright, sigma, fields = t.colour_draws(rng, recap)
    x = t.colour_reference(out, gain, contrast, bright, sigma, fields)
    return x.permute(0, 3, 1, 2), out_masks


def step_ms(data, threads: int, steps: int) -> dict:
    """Milliseconds of a default-recipe training step (forward, backward, AdamW) at batch 64."""
    import torch

    from edge_runtime.models import train as t
    from edge_runtime.models.networks import build_model

    cfg = t.TrainConfig()
    model = build_model(cfg.arch, num_classes=len(data.classes), bottleneck=cfg.bottleneck,
                        widths=cfg.widths, synthesis=cfg.synthesis)  # fmt: skip
    model = model.to(memory_format=torch.channels_last).train()
    compiled = t._use_compile("auto")
    step_model = torch.compile(model) if compiled else model
    bf16 = t._use_bf16(cfg.precision)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = np.random.default_rng(1)
    times = []
    for k in range(steps + 3):  # the first steps compile
        idx = np.sort(rng.permutation(len(data))[:BATCH])
        x, masks = t.augment(data.images[idx], rng, masks=data.masks[idx], camera=cfg.camera_augment)
        x = x.contiguous(memory_format=torch.channels_last)
        y = torch.from_numpy(data.labels[idx])
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            outputs = step_model(x)
            loss = t._loss(outputs, y, cfg.label_smoothing)
        loss = loss + cfg.map_weight * t.map_loss(outputs[2], torch.from_numpy(np.ascontiguousarray(masks)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if k >= 3:
            times.append(1000 * (time.perf_counter() - t0))
    return {"ms": float(np.median(times)), "compiled": compiled, "bf16": bf16, "steps": steps}


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="fashion")
    p.add_argument("--batches", type=int, default=60, help="batches timed on each side")
    p.add_argument("--threads", type=int, default=2, help="torch threads, as the recipe's --threads")
    p.add_argument("--steps", type=int, default=30, help="training steps timed (0: none)")
    p.add_argument("--out", help="output JSON (default benchmarks/results/augment.json)")
    args = p.parse_args(argv)
    if args.batches < 2 or args.steps < 0 or args.threads < 1:
        raise ValueError("--batches must be >= 2, --steps >= 0 and --threads >= 1")
    import torch

    from edge_runtime.models.data import task_dataset
    from edge_runtime.models.train import TrainConfig, augment

    torch.set_num_threads(args.threads)
    camera = TrainConfig().camera_augment
    data = task_dataset(args.task, "validation", 10 * BATCH, progress=False, workers=args.threads)
    pick = np.random.default_rng(0)
    before, after, worst = [], [], 0.0
    for b in range(args.batches + 2):  # the first batch of each side compiles or warms caches
        idx = np.sort(pick.permutation(len(data))[:BATCH])
        images, masks = data.images[idx], data.masks[idx]
        t0 = time.perf_counter()
        old, old_masks = augment_before(images, np.random.default_rng(b), masks, camera)
        t1 = time.perf_counter()
        new, new_masks = augment(images, np.random.default_rng(b), masks=masks, camera=camera)
        t2 = time.perf_counter()
        if not np.array_equal(old_masks, new_masks):
            raise RuntimeError(f"batch {b}: the masks differ from the path before")
        worst = max(worst, float((old - new).abs().max()))
        if b >= 2:
            before.append(1000 * (t1 - t0))
            after.append(1000 * (t2 - t1))
    before, after = np.array(before), np.array(after)
    ratio = float(after.mean() / before.mean())
    summary = {
        "augment_ms_before": round(float(before.mean()), 2),
        "augment_ms_before_ci": [round(v, 2) for v in mean_interval(before)],
        "augment_ms": round(float(after.mean()), 2),
        "augment_ms_ci": [round(v, 2) for v in mean_interval(after)],
        "augment_vs_before": round(ratio, 3),
        "augment_vs_before_ci": [round(v, 3) for v in ratio_interval(after, before)],
        "max_abs_difference": worst,
    }
    cfg = TrainConfig()
    recipe_steps = cfg.epochs * (100_000 // cfg.batch_size)
    if args.steps:
        step = step_ms(data, args.threads, args.steps)
        summary |= {
            "step_ms": round(step["ms"], 1),
            "augment_share_of_step_before": round(before.mean() / (before.mean() + step["ms"]), 3),
            "augment_share_of_step": round(after.mean() / (after.mean() + step["ms"]), 3),
            "recipe_minutes_saved": round((before.mean() - after.mean()) * recipe_steps / 60_000, 2),
        }
    params = {
        "task": args.task,
        "batch": BATCH,
        "batches": args.batches,
        "threads": args.threads,
        "camera_augment": camera,
        "recipe_steps": recipe_steps,
        "step": None if not args.steps else {k: v for k, v in step.items() if k != "ms"},
    }
    results = {"before_ms": before.round(3).tolist(), "after_ms": after.round(3).tolist()}
    path = write_result("augment", summary, params, results, args.out)
    for k, v in summary.items():
        print(f"{k}: {v}")
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    """Run the benchmark; a bad option or input ends with an ``error:`` line and exit status 2."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
