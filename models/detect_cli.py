"""``edge-runtime train --task fashion-detect`` and ``edge-runtime export`` of a detector checkpoint.

Called from :mod:`models.cli` (which keeps the arguments); kept apart so that the classifier's
commands stay as they are. ``--task detect`` is ``fashion-detect``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "cmd_train_detect",
    "cmd_finetune_detect",
    "export_detector",
    "is_detector_checkpoint",
    "detect_task_of",
]

DEFAULT_ARCH = "centernet-s"


def detect_task_of(task: str) -> str | None:
    """The built-in detection task ``task`` names (``detect``: the default one), else None."""
    from edge_runtime.datasets import DEFAULT_DETECT_TASK, DETECT_TASKS

    if task == "detect":
        return DEFAULT_DETECT_TASK
    return task if task in DETECT_TASKS else None


def cmd_train_detect(args) -> int:
    from edge_runtime.datasets import load_boxes
    from edge_runtime.models.detect import DETECTOR_REGISTRY
    from edge_runtime.models.detect_train import DetectTrainConfig, train_detector

    task = detect_task_of(args.task)
    if args.data:
        raise ValueError("--data (an ImageFolder) has no boxes; detection trains on the built-in scenes only")
    if args.decoy:
        raise ValueError("--decoy is for the classification tasks, not --task detect")
    arch = args.arch
    if arch not in DETECTOR_REGISTRY:
        if arch != "abn-s":  # anything but the classifier default named by hand
            raise ValueError(f"--arch {arch!r} is not a detector; detectors: {sorted(DETECTOR_REGISTRY)}")
        arch = DEFAULT_ARCH
    cfg = DetectTrainConfig(
        arch=arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        bottleneck=args.bottleneck,
        widths=tuple(args.widths),
        threads=args.threads,
        precision=args.precision,
        compile=args.compile,
    )
    progress = not args.no_progress
    train = load_boxes(task, "train", args.num_train, size=args.size, progress=progress)
    val = load_boxes(task, "validation", args.num_val, size=args.size, progress=progress)
    print(
        f"training {arch} on {len(train)} frames ({train.objects} objects), "
        f"validating on {len(val)} ({val.objects} objects)"
    )
    path = train_detector(cfg, train, val, args.out, progress=progress)
    print(f"checkpoint: {path}")
    if args.export:
        return export_detector(path, args.export, None, None)
    return 0


def cmd_finetune_detect(args, options: dict) -> int:
    """``edge-runtime finetune`` of a detector checkpoint: its back half on reduced split tensors
    (:mod:`models.detect_finetune`); ``options``: the shared fine-tuning options given."""
    from edge_runtime.datasets import DEFAULT_DETECT_TASK, load_boxes
    from edge_runtime.models.detect_finetune import TRAIN_START, DetectFinetuneConfig, finetune_detector
    from edge_runtime.models.detect_train import load_detector

    if args.data:
        raise ValueError("a detector fine-tunes on the built-in detection scenes (no --data)")
    if args.train_bottleneck:
        raise ValueError("--train-bottleneck is for the classifier; a detector's front stays as it is")
    model, ckpt = load_detector(args.checkpoint)
    task = (ckpt.get("train") or {}).get("data_task") or DEFAULT_DETECT_TASK
    if args.num_train is not None:
        options["images"] = args.num_train
    cfg = DetectFinetuneConfig(**options)
    size = int(ckpt["input"]["size"][0])
    progress = not args.no_progress
    train = load_boxes(task, "train", cfg.images, size=size, start=TRAIN_START, progress=progress)
    val = load_boxes(task, "validation", args.num_val, size=size, progress=progress)
    print(f"fine-tuning {args.checkpoint} ({task}) on {len(train)} frames, validating on {len(val)}")
    path = finetune_detector(model, ckpt, cfg, train, val, args.out, progress=progress)
    print(f"checkpoint: {path}")
    if args.export:
        return export_detector(path, args.export, args.name, None)
    return 0


def is_detector_checkpoint(path) -> bool:
    """True when ``path`` is a checkpoint written by ``train --task detect``."""
    import torch

    p = Path(path)
    if not p.is_file():
        return False
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:  # not a checkpoint at all: the classifier's loader says so
        return False
    return isinstance(ckpt, dict) and ckpt.get("task") == "detect"


def export_detector(checkpoint, out, name, variants) -> int:
    from tqdm import tqdm

    from edge_runtime.bundle import GRAD_VARIANTS
    from edge_runtime.detection import DetectionParams
    from edge_runtime.models.detect_export import export_detection_bundle
    from edge_runtime.models.detect_train import load_detector
    from edge_runtime.models.export import export_progress

    model, ckpt = load_detector(checkpoint)
    final = ckpt["history"][-1] if ckpt.get("history") else {}
    if ckpt.get("finetune"):  # models.detect_finetune: scored after, on validation
        final = ckpt["finetune"]["after"]
    metrics = {k: final[k] for k in ("map", "map50", "map75", "n", "objects") if k in final}
    d = ckpt.get("detection", {})
    params = DetectionParams(float(d.get("score_threshold", 0.3)), float(d.get("nms_iou", 0.5)))
    variants = GRAD_VARIANTS if variants is None else tuple(variants)
    with (
        tqdm(total=2 + len(variants), desc=f"export {out}", unit="graph", leave=False) as bar,
        export_progress(bar),
    ):
        manifest = export_detection_bundle(
            model,
            out,
            classes=ckpt["classes"],
            input_spec=ckpt["input"],
            model_name=name or ckpt["arch"],
            params=params,
            variants=variants,
            metrics=metrics,
            extra={
                "training": ckpt.get("train", {})
                | ({"finetune": ckpt["finetune"]} if ckpt.get("finetune") else {})
            },
        )
    print(
        f"bundle {out}: task detect, model id {manifest['model_id'][:16]}, graphs {sorted(manifest['graphs'])}"
    )
    return 0
