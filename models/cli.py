"""Offline subcommands of ``edge-runtime`` (need the ``train`` extra): train, export, split, finetune,
correct, retrain.

``edge_runtime.cli`` registers their arguments and calls these functions lazily, so the edge box
(without torch) still gets ``--help`` and a clear message instead of an ImportError.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

__all__ = [
    "add_train_args",
    "add_export_args",
    "add_split_args",
    "add_finetune_args",
    "add_correct_args",
    "add_retrain_args",
    "cmd_train",
    "cmd_export",
    "cmd_split",
    "cmd_finetune",
    "cmd_correct",
    "cmd_retrain",
]

log = logging.getLogger(__name__)

# The choices of `retrain`, defined here (models.retrain imports them) so that building the parser
# imports no torch.
SELECT_BY = ("per", "att", "both", "either")
PARTS = ("features", "attention", "perception")
LOSSES = ("att", "per", "map", "rrr")
#: The method's loss, L_att + L_per + gamma * ||M' - M||^2; "rrr" (models/rrr.py, the peer
#: method: an input-gradient penalty outside the teacher map) is an option beside it.
DEFAULT_LOSSES = ("att", "per", "map")
#: scenes the classifier's masking- and quantization-aware fine-tuning trains on (a detector's:
#: models.detect_finetune.DetectFinetuneConfig.images; not imported here: the CLI loads no torch)
FINETUNE_IMAGES = 12000


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", default="runs/abn", help="run folder for checkpoint.pt and metrics (default: %(default)s)"
    )
    p.add_argument(
        "--arch", default="abn-s", help="registered model name: abn-s, plain-s (default: %(default)s)"
    )
    _add_data_args(p, num_train=100000)
    p.add_argument("--size", type=int, default=128, help="input size in pixels")
    p.add_argument("--epochs", type=int, default=8, help="passes over the training set")
    p.add_argument("--batch-size", type=int, default=64, help="images per step")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument("--bottleneck", type=int, default=8, help="channels of the split tensor")
    p.add_argument(
        "--widths",
        type=_widths,
        default=(24, 48, 64),
        help="channels of the three feature-extractor stages, as A,B,C (default: 24,48,64)",
    )
    p.add_argument("--synthesis", choices=["mul", "residual"], default="mul", help="ABN: M*f or (1+M)*f")
    _add_map_weight(p, "ABN: weight of L_map, the attention map against the built-in scenes' item masks "
                    "(0: the labels alone; ImageFolder data has no masks)")  # fmt: skip
    p.add_argument(
        "--label-smoothing",
        type=float,
        default=0.1,
        help="label smoothing of both losses (default: %(default)s)",
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="shift and recolour the scenes each epoch besides mirroring them; --no-augment only mirrors "
        "(default: augment; with L_map it won on validation, in domain and on a harsher camera)",
    )
    p.add_argument(
        "--camera-augment",
        type=_share,
        nargs="?",
        const=1.0,
        default=0.33,
        metavar="SHARE",
        help="with --augment: the training camera's blur, noise, gamma and JPEG once more on this share of "
        "the images (alone: all of them; 0: off; default: %(default)s)",
    )
    p.add_argument(
        "--ema",
        type=_decay,
        default=0.0,
        metavar="DECAY",
        help="keep an exponential moving average of the weights with this decay (e.g. 0.999) and save "
        "it instead of the last weights (default: 0, off)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="training arithmetic; auto: bfloat16 autocast where the CPU has bf16 units (default: auto)",
    )
    p.add_argument(
        "--compile",
        choices=["auto", "on", "off"],
        default="auto",
        help="the training step through torch.compile; auto: where a C++ compiler is found (default: auto)",
    )
    p.add_argument("--decoy", choices=["label", "random"], help="add the decoy cue to the training scenes")
    p.add_argument("--export", metavar="DIR", help="export a bundle to DIR when training ends")


def _number(text: str, ok, expected: str) -> float:
    """An option's float, or an argparse error naming what was expected."""
    try:
        v = float(text)
    except ValueError:
        v = None
    if v is None or not ok(v):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return v


def _share(text: str) -> float:
    return _number(text, lambda v: 0.0 <= v <= 1.0, "a share between 0 and 1")


def _decay(text: str) -> float:
    return _number(text, lambda v: v == 0.0 or 0.0 < v < 1.0, "a decay between 0 and 1 (0: off)")


def _widths(text: str) -> tuple[int, int, int]:
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError:
        widths = ()
    if len(widths) != 3 or min(widths) < 1:
        raise argparse.ArgumentTypeError(
            f"expected three positive channel counts like 24,48,64, got {text!r}"
        )
    return widths  # type: ignore[return-value]


def _add_map_weight(p: argparse.ArgumentParser, text: str) -> None:
    p.add_argument("--map-weight", type=float, default=1.0, help=f"{text} (default: %(default)s)")


def _add_data_args(p: argparse.ArgumentParser, *, num_train: int | None) -> None:
    """Data, seed and threads: shared by ``train`` and ``finetune`` (both read them in ``_data``)."""
    from edge_runtime.datasets import DEFAULT_TASK, TASKS

    p.add_argument("--data", help="ImageFolder tree (root/<class>/<image>) instead of the built-in scenes")
    from edge_runtime.datasets import DETECT_TASKS

    p.add_argument(
        "--task",
        choices=TASKS + DETECT_TASKS + ("detect",),
        default=DEFAULT_TASK,
        help="built-in task; a detection task (detect = fashion-detect) trains the detector, train only "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--num-train",
        type=int,
        default=num_train,
        help="built-in scenes to train on (default: %(default)s)"
        if num_train is not None
        else f"built-in scenes to train on (default: {FINETUNE_IMAGES}; a detector: 4000 frames it never "
        "trained on)",
    )
    p.add_argument(
        "--num-val",
        "--num-test",
        dest="num_val",
        type=int,
        default=2000,
        help="built-in validation scenes to evaluate on; never the test split (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the scenes, the split and the weights")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint.pt written by `edge-runtime train`")
    p.add_argument("--out", required=True, help="bundle folder to write (replaced atomically)")
    p.add_argument("--name", help="model name in the manifest (default: the architecture)")
    p.add_argument(
        "--variants",
        nargs="*",
        default=None,
        help="gradient graphs to export: plain guided selective extsel (default: all)",
    )


def add_split_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="an ONNX classifier: one N x 3 x H x W image input, logits output")
    p.add_argument("--at", required=True, help="name of the tensor to split at (the split tensor)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--classes", help="comma-separated class names, or a file with one name per line")
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="if the model's is dynamic")
    p.add_argument("--mean", type=float, nargs=3, default=[0.485, 0.456, 0.406], help="input mean (RGB)")
    p.add_argument("--std", type=float, nargs=3, default=[0.229, 0.224, 0.225], help="input std (RGB)")
    p.add_argument("--name", help="model name in the manifest")
    _add_byo_args(p)


def _add_byo_args(p: argparse.ArgumentParser) -> None:
    """Fused attention and gradient graphs of an outside model: shared by ``split`` and
    ``finetune --onnx``."""
    p.add_argument(
        "--attention-from",
        metavar="T1,T2,...",
        help="tensors whose outputs the fused attention map combines (default: the last tensor at "
        "each resolution before the split, and the split tensor)",
    )
    p.add_argument(
        "--attention-weights",
        metavar="W1,W2,...",
        help="one weight per --attention-from tensor (default: a ramp 1..n, normalised)",
    )
    p.add_argument(
        "--variants",
        nargs="*",
        default=None,
        help="gradient graphs to make: plain guided selective extsel (default: all; none: no names)",
    )


def _byo_options(args) -> dict:
    from edge_runtime.bundle import GRAD_VARIANTS

    layers = [t.strip() for t in args.attention_from.split(",")] if args.attention_from else None
    weights = None
    if args.attention_weights:
        try:
            weights = [float(w) for w in args.attention_weights.split(",")]
        except ValueError:
            raise ValueError(
                f"--attention-weights must be comma-separated numbers, got {args.attention_weights!r}"
            ) from None
    return {
        "attention_from": layers,
        "attention_weights": weights,
        "variants": GRAD_VARIANTS if args.variants is None else tuple(args.variants),
    }


def _classes_of(arg):
    if not arg:
        return None
    p = Path(arg)
    return p.read_text().split() if p.is_file() else [c.strip() for c in arg.split(",")]


def add_correct_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="ImageFolder tree (root/<class>/<image>); teacher maps go to root/teacher_maps/",
    )
    p.add_argument("--bundle", help="ABN bundle folder (default: the bundle shipped with the package)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port; default: %(default)s)")
    p.add_argument("--threads", type=int, default=0, help="onnxruntime threads (0: its default)")


def add_retrain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="ImageFolder tree with teacher maps (edge-runtime correct)")
    p.add_argument("--checkpoint", required=True, help="checkpoint.pt of the model to retrain")
    p.add_argument("--out", default="runs/retrain", help="run folder for the new checkpoint and report")
    p.add_argument("--eval-data", help="ImageFolder tree to report before / after on (default: --data)")
    p.add_argument(
        "--select",
        choices=SELECT_BY,
        default="per",
        help="misrecognized by which branch: per(ception), att(ention), both, either",
    )
    p.add_argument(
        "--include-correct",
        type=float,
        default=0.0,
        help="share (0..1) of correctly recognized images added to the fine-tuning set",
    )
    p.add_argument(
        "--train",
        nargs="+",
        choices=PARTS,
        default=["attention", "perception"],
        help="parts to train (default: %(default)s; the feature extractor stays frozen)",
    )
    p.add_argument(
        "--losses",
        nargs="+",
        choices=LOSSES,
        default=list(DEFAULT_LOSSES),
        help="loss terms: L_att, L_per, gamma * ||M' - M||^2 (map), and rrr, the input-gradient "
        "penalty outside the teacher map of Right for the Right Reasons (default: att per map)",
    )
    p.add_argument("--gamma", type=float, default=1.0, help="weight of the teacher-map loss")
    p.add_argument("--rrr-weight", type=float, default=1.0, help="weight of the rrr loss term")
    p.add_argument("--epochs", type=int, default=3, help="passes over the fine-tuning set")
    p.add_argument(
        "--steps", type=int, help="optimiser steps in all, instead of --epochs passes over the set"
    )
    p.add_argument("--batch-size", type=int, default=32, help="images per step")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument(
        "--teacher-repeat", type=int, default=1, help="times each teacher-mapped image is seen per epoch"
    )
    p.add_argument(
        "--perception-map",
        choices=["own", "teacher"],
        default="own",
        help="map the perception branch sees while fine-tuning",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling and the weights")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--export", metavar="DIR", help="export the retrained model as a bundle to DIR")
    p.add_argument("--name", help="model name in the new bundle (default: <arch>-retrained)")
    p.add_argument(
        "--variants",
        nargs="*",
        default=None,
        help="gradient graphs to export: plain guided selective extsel (default: all)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _data(args):
    """(train, validation) data sets: an ImageFolder cut 90 / 10, or the built-in task's splits."""
    from edge_runtime.models.data import image_folder, task_dataset

    if args.data:
        import numpy as np

        data = image_folder(args.data, args.size)
        order = np.random.default_rng(args.seed).permutation(len(data))
        n_val = max(1, len(data) // 10)
        return data.subset(order[n_val:]), data.subset(order[:n_val])
    progress = not getattr(args, "no_progress", False)
    if args.decoy:  # the decoy experiment stays on the synthetic shapes
        train = _scenes(args.num_train, args.seed * 1000 + 1, args.size, args.decoy, "train scenes", progress)
        return train, _scenes(
            args.num_val, args.seed * 1000 + 2, args.size, None, "validation scenes", progress
        )
    workers = max(1, args.threads)  # scene generation runs before torch does: use the same cores
    train = task_dataset(
        args.task, "train", args.num_train, size=args.size, progress=progress, workers=workers
    )
    return train, task_dataset(
        args.task, "validation", args.num_val, size=args.size, progress=progress, workers=workers
    )


def _scenes(count: int, seed: int, size: int, decoy, desc: str, progress: bool):
    """``scene_dataset(count, seed=seed, ...)`` with a progress bar: 26 000 scenes take about a
    minute, which printed nothing before. Scenes are made in chunks; scene ``i`` depends only on
    ``(seed, i)``, so the result is the same array."""
    import numpy as np
    from tqdm import tqdm

    from edge_runtime.models.data import ArrayDataset, scene_dataset

    chunk = 500
    if count <= chunk or not progress:
        return scene_dataset(count, seed=seed, size=size, decoy=decoy)
    from edge_runtime.scenes import SceneGenerator

    gen = SceneGenerator(size, 10, seed, decoy=decoy, decoy_prob=1.0)
    parts = []
    with tqdm(total=count, desc=desc, unit="scene", leave=False) as bar:
        for start in range(0, count, chunk):
            parts.append(gen.batch(start, min(chunk, count - start)))
            bar.update(len(parts[-1][1]))
    images, labels, masks = (np.concatenate(p) for p in zip(*parts, strict=True))
    return ArrayDataset(images, labels, gen.class_names, masks)


def cmd_train(args) -> int:
    from edge_runtime.models.detect_cli import cmd_train_detect, detect_task_of

    if detect_task_of(args.task) is not None:  # the detector (models/detect*.py)
        return cmd_train_detect(args)
    from edge_runtime.models.train import TrainConfig, train

    cfg = TrainConfig(
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        bottleneck=args.bottleneck,
        synthesis=args.synthesis,
        threads=args.threads,
        widths=tuple(args.widths),
        map_weight=args.map_weight,
        label_smoothing=args.label_smoothing,
        augment=args.augment,
        camera_augment=args.camera_augment,
        ema=args.ema,
        precision=args.precision,
        compile=args.compile,
    )
    t0 = time.perf_counter()
    train_data, test_data = _data(args)
    print(f"training {args.arch} on {len(train_data)} images, validating on {len(test_data)}")
    path = train(
        cfg,
        train_data,
        test_data,
        args.out,
        progress=not args.no_progress,
        data_seconds=time.perf_counter() - t0,
    )
    print(f"checkpoint: {path}")
    if args.export:
        return _export(path, args.export, None, None, progress=not args.no_progress)
    return 0


def _export(checkpoint, out, name, variants, progress: bool = True) -> int:
    from edge_runtime.models.detect_cli import export_detector, is_detector_checkpoint

    if is_detector_checkpoint(checkpoint):
        return export_detector(checkpoint, out, name, variants)
    from tqdm import tqdm

    from edge_runtime.bundle import GRAD_VARIANTS
    from edge_runtime.models.export import export_bundle, export_progress

    model, ckpt = _load_checkpoint(checkpoint)
    final = ckpt["history"][-1] if ckpt.get("history") else {}
    metrics = {k: final[k] for k in ("top1", "top1_attention_branch", "n") if k in final}
    variants = GRAD_VARIANTS if variants is None else variants
    graphs = (4 if hasattr(model, "attention") else 2) + len(variants)
    with (
        tqdm(total=graphs, desc=f"export {out}", unit="graph", leave=False, disable=not progress) as bar,
        export_progress(bar),
    ):
        manifest = export_bundle(
            model,
            out,
            classes=ckpt["classes"],
            input_spec=ckpt["input"],
            model_name=name or ckpt["arch"],
            variants=variants,
            metrics=metrics,
            extra={"training": ckpt.get("train", {})},
        )
    print(f"bundle {out}: model id {manifest['model_id'][:16]}, graphs {sorted(manifest['graphs'])}")
    return 0


def _load_checkpoint(path):
    """``models.train.load_checkpoint``, with a clear error for a file that is not a checkpoint."""
    import pickle

    from edge_runtime.models.train import load_checkpoint

    p = Path(path)
    if p.is_dir():
        raise IsADirectoryError(21, "is a folder", str(p))
    if not p.is_file():
        raise FileNotFoundError(2, "does not exist", str(p))
    try:
        return load_checkpoint(p)
    except (pickle.UnpicklingError, EOFError, KeyError, RuntimeError) as e:
        raise ValueError(f"{p} is not a checkpoint written by `edge-runtime train`") from e


def cmd_export(args) -> int:
    return _export(args.checkpoint, args.out, args.name, args.variants)


def cmd_split(args) -> int:
    import onnx
    from google.protobuf.message import DecodeError

    from edge_runtime.errors import EdgeRuntimeError
    from edge_runtime.models.split import split_model

    path = Path(args.model)
    if not path.is_file():
        raise FileNotFoundError(2, "does not exist", str(path))
    try:
        onnx.load(str(path), load_external_data=False)
    except DecodeError as e:
        raise ValueError(f"{path} is not an ONNX model (it does not parse as onnx.ModelProto)") from e

    try:
        manifest = split_model(
            args.model,
            args.at,
            args.out,
            classes=_classes_of(args.classes),
            size=tuple(args.input_size) if args.input_size else None,
            mean=args.mean,
            std=args.std,
            model_name=args.name,
            **_byo_options(args),
        )
    except ValueError as e:  # bad model, tensor name or option; UnsupportedOperator is one
        raise EdgeRuntimeError(str(e)) from e
    _print_bundle(args.out, manifest)
    return 0


def _print_bundle(out, manifest) -> None:
    providers = sorted(manifest["importance"]) + ["none"]
    print(
        json.dumps(
            {
                "bundle": str(out),
                "model_id": manifest["model_id"][:16],
                "split": manifest["split"],
                "providers": providers,
                "attention_layers": manifest["importance"].get("fused", {}).get("layers"),
                "note": "no 'abn' provider: it needs an Attention Branch Network's attention branch",
            },
            indent=2,
        )
    )


def add_finetune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        nargs="?",
        help="checkpoint.pt written by `edge-runtime train`: an ABN, or a detector (--task detect); or use --onnx",
    )
    p.add_argument("--onnx", metavar="MODEL", help="fine-tune an outside ONNX classifier's back half instead")
    p.add_argument("--at", help="--onnx: the tensor to split at")
    p.add_argument("--classes", help="--onnx: class names (default: the --data folder names)")
    p.add_argument("--mean", type=float, nargs=3, default=[0.485, 0.456, 0.406], help="--onnx: input mean")
    p.add_argument("--std", type=float, nargs=3, default=[0.229, 0.224, 0.225], help="--onnx: input std")
    p.add_argument("--p-fused", type=float, default=0.6, help="--onnx: share of masks from the fused map")
    _add_byo_args(p)
    p.add_argument("--out", default="runs/finetune", help="run folder for the new checkpoint.pt")
    p.add_argument("--export", metavar="DIR", help="export a bundle to DIR when fine-tuning ends")
    # budget and ranges: None is the model's own default (the classifier's, or a detector's:
    # models.detect_finetune.DetectFinetuneConfig, the detection benchmark's fair-baseline budget)
    _add_data_args(p, num_train=None)
    p.add_argument("--epochs", type=int, help="passes over the training set (default: 3; a detector: 1)")
    p.add_argument("--batch-size", type=int, help="images per step (default: 64; a detector: 32)")
    p.add_argument("--lr", type=float, help="learning rate (default: 1e-3; a detector: 5e-4)")
    p.add_argument(
        "--keep-min", type=float, help="smallest keep ratio drawn (default: 0.05; a detector: 0.1)"
    )
    p.add_argument(
        "--keep-max", type=float, help="largest keep ratio drawn besides 1.0 (default: 0.7; a detector: 0.95)"
    )
    p.add_argument("--p-full", type=float, default=0.2, help="probability of no mask")
    p.add_argument("--bits", type=int, nargs="+", help="bit depths drawn (default: 2 3 4 6 8)")
    p.add_argument("--p-float", type=float, default=0.1, help="probability of no quantization")
    p.add_argument("--train-bottleneck", action="store_true", help="also train the split's 1x1 bottleneck")
    p.add_argument("--distill", type=float, default=1.0, help="weight of KL to the original model")
    _add_map_weight(
        p,
        "ABN checkpoints (not --onnx): weight of L_map on the attention branch, against the built-in scenes' item masks",
    )
    p.add_argument("--name", help="model name in the manifest (default: the architecture)")


def _masked_quant_options(args, distill: bool = True) -> dict:
    """The options the fine-tuning paths share (``models.finetune.MaskedQuantConfig``), those
    given: the config's own defaults stand for the rest."""
    opts = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "keep_min": args.keep_min,
        "keep_max": args.keep_max,
        "p_full": args.p_full,
        "bits": None if args.bits is None else tuple(args.bits),
        "p_float": args.p_float,
        "threads": args.threads,
    }
    if distill:
        opts["distill"] = args.distill
    return {k: v for k, v in opts.items() if v is not None}


def cmd_finetune_onnx(args) -> int:
    """``finetune --onnx``: fine-tune an outside model's back half, export a complete bundle."""
    import onnx

    from edge_runtime.errors import EdgeRuntimeError
    from edge_runtime.models.byo import OnnxFinetuneConfig, finetune_onnx, save_report
    from edge_runtime.models.split import split_model

    if not args.at:
        raise EdgeRuntimeError("--onnx needs --at TENSOR, the tensor to split at")
    path = Path(args.onnx)
    try:
        if not path.is_file():
            raise ValueError(f"ONNX model {path} does not exist")
        model = onnx.load(str(path))
        dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
        args.size = dims[2] if len(dims) == 4 and dims[2] > 0 else 128
        if len(dims) == 4 and dims[2] != dims[3]:
            raise ValueError(f"fine-tuning needs a square input; the model's is {dims[2]} x {dims[3]}")
        args.decoy = None
        train_data, val_data = _data(args)
        cfg = OnnxFinetuneConfig(**_masked_quant_options(args), p_fused=args.p_fused)
        opts = _byo_options(args)
        print(
            f"fine-tuning {path} after {args.at!r} on {len(train_data)} images, validating on {len(val_data)}"
        )
        tuned, report = finetune_onnx(
            model,
            args.at,
            cfg,
            train_data,
            val_data,
            mean=args.mean,
            std=args.std,
            attention_from=opts["attention_from"],
            attention_weights=opts["attention_weights"],
        )
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        onnx.save(tuned, str(out / "model-finetuned.onnx"))
        save_report(report, out / "finetune.json")
        bundle = args.export or str(out / "bundle")
        manifest = split_model(
            tuned,
            args.at,
            bundle,
            classes=_classes_of(args.classes) or list(train_data.classes),
            size=(args.size, args.size),
            mean=args.mean,
            std=args.std,
            model_name=args.name or path.stem + "-finetuned",
            extra={"finetune": {k: report[k] for k in ("before", "after", "n_train", "n_validation")}},
            **opts,
        )
    except (ValueError, OSError) as e:  # bad model / tensor / option, missing or unreadable --data
        raise EdgeRuntimeError(str(e)) from e
    for k in report["before"]:
        print(f"{k:<28} before {report['before'][k]:.4f}  after {report['after'][k]:.4f}")
    print(f"fine-tuned model: {out / 'model-finetuned.onnx'}")
    _print_bundle(bundle, manifest)
    return 0


def cmd_finetune(args) -> int:
    from edge_runtime.models.detect_cli import cmd_finetune_detect, is_detector_checkpoint

    if args.checkpoint and not args.onnx and is_detector_checkpoint(args.checkpoint):
        return cmd_finetune_detect(args, _masked_quant_options(args, distill=False))
    if args.num_train is None:
        args.num_train = FINETUNE_IMAGES
    if args.onnx:
        return cmd_finetune_onnx(args)
    if not args.checkpoint:
        from edge_runtime.errors import EdgeRuntimeError

        raise EdgeRuntimeError("give a checkpoint.pt, or --onnx MODEL --at TENSOR for an outside model")
    from edge_runtime.models.finetune import FinetuneConfig, finetune

    model, ckpt = _load_checkpoint(args.checkpoint)
    cfg = FinetuneConfig(
        **_masked_quant_options(args), train_bottleneck=args.train_bottleneck, map_weight=args.map_weight
    )
    size = ckpt["input"]["size"]
    args.size = int(size if isinstance(size, int) else size[0])  # fine-tune at the model's input size
    args.decoy = None
    train_data, test_data = _data(args)
    print(f"fine-tuning {args.checkpoint} on {len(train_data)} images, validating on {len(test_data)}")
    path = finetune(model, ckpt, cfg, train_data, test_data, args.out, progress=not args.no_progress)
    print(f"checkpoint: {path}")
    if args.export:
        return _export(path, args.export, args.name, None, progress=not args.no_progress)
    return 0


def cmd_correct(args) -> int:
    from edge_runtime.bundle import load_bundle
    from edge_runtime.models.editor import EditorServer, EditorState

    bundle = load_bundle(args.bundle, threads=args.threads)
    print(f"analysing the images in {args.data} with {bundle.model_name} ({bundle.model_id[:16]}) ...")
    state = EditorState(args.data, bundle)
    wrong = int((state.pred != state.labels).sum())
    server = EditorServer(state, args.host, args.port)
    print(f"{len(state.keys)} images, {wrong} misrecognized; teacher maps go to {state.store.folder}")
    print(f"editor at {server.url} (Ctrl+C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.close()
    return 0


def _folder_data(root, ckpt):
    """An ImageFolder tree with labels in the checkpoint's class order, and its image keys."""
    import numpy as np

    from edge_runtime.models.correct import list_image_folder
    from edge_runtime.models.data import ArrayDataset, image_folder

    folder_classes, items = list_image_folder(root)
    unknown = sorted(set(folder_classes) - set(ckpt["classes"]))
    if unknown:
        raise SystemExit(f"class folders {unknown} in {root} are not classes of the model {ckpt['classes']}")
    data = image_folder(root, ckpt["input"]["size"][0])
    labels = np.array([ckpt["classes"].index(data.classes[k]) for k in data.labels], np.int64)
    return ArrayDataset(data.images, labels, tuple(ckpt["classes"])), [k for k, _ in items]


def _probe(data):
    from edge_runtime.models.data import to_tensor

    return to_tensor(data.images[:1])


def cmd_retrain(args) -> int:
    import time

    import numpy as np
    import torch

    from edge_runtime.models.correct import TeacherStore
    from edge_runtime.models.retrain import RetrainConfig, evaluate_maps, finetune, record, select_samples

    if args.threads:
        torch.set_num_threads(args.threads)
    model, ckpt = _load_checkpoint(args.checkpoint)
    if not hasattr(model, "attention"):
        raise SystemExit(
            f"{args.checkpoint} is a {ckpt['arch']} model; retraining with teacher maps needs an ABN"
        )
    data, keys = _folder_data(args.data, ckpt)
    eval_data = _folder_data(args.eval_data, ckpt)[0] if args.eval_data else data
    maps = TeacherStore(args.data).load_all()
    where = {k: i for i, k in enumerate(keys)}
    stale = sorted(set(maps) - set(where))
    if stale:
        print(f"warning: {len(stale)} teacher maps have no image any more (e.g. {stale[0]}); ignored")
    teachers = {where[k]: m for k, m in maps.items() if k in where}
    with torch.no_grad():
        map_shape = tuple(model.features(_probe(data))[0].shape[2:])
    wrong_shape = sorted(k for k, m in maps.items() if k in where and m.shape != map_shape)
    if wrong_shape:
        raise SystemExit(
            f"{len(wrong_shape)} teacher maps (e.g. {wrong_shape[0]}) are not {map_shape[0]} x {map_shape[1]}, "
            "the map size of this model; they were drawn for another model"
        )
    cfg = RetrainConfig(
        select=args.select,
        include_correct=args.include_correct,
        train=tuple(args.train),
        losses=tuple(args.losses),
        gamma=args.gamma,
        rrr_weight=args.rrr_weight,
        epochs=args.epochs,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        teacher_repeat=args.teacher_repeat,
        perception_map=args.perception_map,
        seed=args.seed,
    )
    rec = record(model, data)
    index, why = select_samples(rec, cfg, np.array(sorted(teachers), np.int64))
    print(
        f"{len(data)} images: {why['misrecognized']} misrecognized ({args.select}), {why['correct_added']} "
        f"correct added, {len(teachers)} teacher maps ({why['teacher_maps_added']} on other images): "
        f"fine-tuning on {why['total']}"
    )
    if not len(index):
        print("nothing to fine-tune on: no misrecognized images, no teacher maps, --include-correct 0")
        return 1
    before = evaluate_maps(model, eval_data)
    t0 = time.perf_counter()
    new, log_ = finetune(model, data, teachers, cfg, index=index, progress=not args.no_progress)
    after = evaluate_maps(new, eval_data)
    report = {
        "selection": why,
        "before": before,
        "after": after,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    report |= log_
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "checkpoint.pt"
    tmp = path.with_suffix(".tmp")
    torch.save(
        ckpt
        | {
            "state_dict": new.state_dict(),
            "history": [after],
            "retrain": report,
            "parent": str(args.checkpoint),
        },
        tmp,
    )
    tmp.replace(path)
    (out / "retrain.json").write_text(json.dumps(report, indent=2) + "\n")
    for name in ("top1", "top1_attention_branch"):
        print(f"{name:<24} before {before[name]:.4f}  after {after[name]:.4f}")
    print(f"checkpoint: {path}")
    if args.export:
        return _export(path, args.export, args.name or f"{ckpt['arch']}-retrained", args.variants)
    return 0
