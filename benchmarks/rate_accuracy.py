"""Bytes per frame against top-1 accuracy: the edge's modes against frame codecs given the same training.

    python benchmarks/rate_accuracy.py [--bundle DIR] [--task shapes] [--val 5000] [--test 5000]
                                       [--ft-epochs E --ft-images N] [--quick] [--update-readme]

Method (the parts, in reading order):

* :mod:`benchmarks.rate_sweep`: the settings (quantization alone, importance-map feature zeroing and
  the other reductions, a random map at the same keep ratios, rate control, float16) and how one is
  measured per frame;
* :mod:`benchmarks.rate_baselines`: JPEG, WebP and AVIF of the frame, with the untuned model and with
  the whole model fine-tuned on that codec at random qualities (``models/codec_finetune.py``; the
  split path's budget of epochs x images from the bundle's manifest unless ``--ft-*`` say less);
* :mod:`benchmarks.rate_select`: every setting measured on the **validation** split, each mode's
  cheapest setting whose paired 95% interval stays within 0.5 points of the float model chosen
  there, the chosen settings measured **once on test** with paired bootstrap intervals;
* :mod:`benchmarks.rate_report`: summary, table, plot, README section.

Frames come from ``edge_runtime.datasets`` (``load(task, "validation" | "test", n)``); the fair
models train on ``load(task, "train", images)``. Writes ``benchmarks/results/rate_accuracy.{json,
png,md}``; ``--update-readme`` fills the README between ``<!-- results:rate -->`` and
``<!-- /results:rate -->``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import rate_baselines, rate_report, rate_select, rate_sweep  # noqa: E402
from benchmarks._common import RESULTS, run_cli, write_result  # noqa: E402
from edge_runtime import datasets  # noqa: E402
from edge_runtime.bundle import Bundle, load_bundle  # noqa: E402

RUNS = Path(__file__).resolve().parents[1] / "runs"
GUIDED = ("masked", "rate")  # importance-guided families: the headline is the cheapest of these

QUICK_GRID = {
    "providers": ("fused", "abn"),
    "keeps": (0.1, 0.2, 0.3, 0.5),
    "bits": (2, 4),
    "random_keeps": (0.3, 0.7),
    "image_keeps": (0.3,),
    "rate_targets": (250,),
}
QUICK_QUALITIES = {"jpeg": (10, 30, 50, 70, 90), "webp": (10, 50, 90), "avif": (10, 50, 90)}


def frames(bundle: Bundle, task: str, split: str, count: int) -> rate_sweep.Frames:
    h, w = bundle.input.size
    if h != w:
        raise ValueError(f"built-in frames are square; the bundle's input is {h} x {w}")
    f = datasets.load(task, split, count, size=h)
    if tuple(f.classes) != tuple(bundle.classes):
        raise ValueError(f"task {task!r} has classes {f.classes}, the bundle {bundle.classes}")
    return rate_sweep.Frames(f.images, f.labels, split)


def measure_all(
    bundle: Bundle,
    fr: rate_sweep.Frames,
    settings: list[rate_sweep.Setting],
    codecs: dict[str, tuple],
    fair: dict[str, tuple],
    *,
    progress: bool = False,
) -> list[rate_sweep.Measured]:
    """The pipeline ``settings`` and the frame ``codecs`` (untuned and fair) on ``fr``."""
    from tqdm import tqdm

    out = []
    if settings:
        cache = rate_sweep.FrameCache(bundle, fr)
        for s in tqdm(settings, desc=f"{fr.split} settings", disable=not progress):
            out.append(rate_sweep.measure(bundle, cache, s))
    out += rate_baselines.measure_codecs(bundle, fr, codecs, fair)
    return out


def evaluate(
    bundle: Bundle,
    val: rate_sweep.Frames,
    test: rate_sweep.Frames,
    grid: list[rate_sweep.Setting],
    qualities: dict[str, tuple],
    fair: dict[str, tuple],
    *,
    progress: bool = False,
) -> dict:
    """Validation sweep, selection on validation, the selected settings once on test.

    Returns ``{"validation": [...], "reference_validation", "selected": {mode: Measured | None},
    "test": {mode: Measured}, "reference_test"}`` (the reference: PNG with the untuned model)."""
    codecs = {**qualities, "png": (None,)}
    val_m = measure_all(bundle, val, grid, codecs, fair, progress=progress)
    ref_v = next(m for m in val_m if m.setting.family == "png")
    selected = rate_select.select_per_mode([m for m in val_m if m is not ref_v], ref_v)

    chosen = [m.setting for m in selected.values() if m is not None]
    pipe = [s for s in chosen if s.family not in (*qualities, *(f"{c}_fair" for c in qualities))]
    test_codecs: dict[str, list] = {"png": [None]}
    for s in chosen:
        c = s.family.removesuffix("_fair")
        if c in qualities:
            test_codecs.setdefault(c, [])
            if s.params["q"] not in test_codecs[c]:
                test_codecs[c].append(s.params["q"])
    test_m = measure_all(bundle, test, pipe, test_codecs, fair, progress=progress)
    ref_t = next(m for m in test_m if m.setting.family == "png")
    by_name = {m.name: m for m in test_m}
    tested = {mode: by_name[m.name] for mode, m in selected.items() if m is not None}
    return {
        "validation": val_m,
        "reference_validation": ref_v,
        "selected": selected,
        "test": tested,
        "reference_test": ref_t,
    }


def fair_models(bundle: Bundle, task: str, codecs, budget, *, progress=False) -> tuple[dict, dict]:
    models, records = {}, {}
    for c in codecs:
        model, spec, rec = rate_baselines.fair_model(
            bundle,
            task,
            c,
            rate_baselines.random_quality(c),
            rate_baselines.QUALITIES[c],
            budget,
            progress=progress,
        )
        models[c], records[c] = (model, spec), rec
    return models, records


def main(argv=None) -> int:
    """Run the benchmark; a bad option or input ends with an ``error:`` line and exit status 2."""
    return run_cli(_main, argv)


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", help="bundle folder (default: the shipped bundle)")
    p.add_argument("--task", default=datasets.DEFAULT_TASK, help="built-in task (edge_runtime.datasets)")
    p.add_argument(
        "--val",
        type=int,
        help="validation frames (default 5000: paired intervals under 1 point; --quick 200)",
    )
    p.add_argument("--test", type=int, help="test frames (default 5000; --quick 200)")
    p.add_argument(
        "--ft-epochs", type=int, help="fair baselines' fine-tuning epochs (default: the split path's)"
    )
    p.add_argument(
        "--ft-images", type=int, help="fair baselines' images per epoch (default: the split path's)"
    )
    p.add_argument("--codecs", nargs="+", default=list(rate_baselines.CODECS), choices=rate_baselines.CODECS)
    p.add_argument(
        "--providers",
        nargs="+",
        choices=rate_sweep.PROVIDERS,
        help="importance providers swept (default: all)",
    )
    p.add_argument(
        "--quick", action="store_true", help="200 + 200 frames, a coarse sweep, 1 x 512 fine-tuning"
    )
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime and torch threads")
    p.add_argument("--out", help="output JSON (default: benchmarks/results/rate_accuracy.json)")
    p.add_argument("--update-readme", action="store_true", help="fill the README's rate section")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    b = load_bundle(args.bundle, threads=args.threads)
    n_val = args.val or (200 if args.quick else 5000)
    n_test = args.test or (200 if args.quick else 5000)
    budget = rate_baselines_budget(b, args)
    grid_args = dict(QUICK_GRID if args.quick else {})
    if args.providers:
        grid_args["providers"] = tuple(args.providers)
    grid = rate_sweep.build_grid(b, **grid_args)
    qualities = {c: (QUICK_QUALITIES if args.quick else rate_baselines.QUALITIES)[c] for c in args.codecs}
    progress = not args.no_progress
    val, test = frames(b, args.task, "validation", n_val), frames(b, args.task, "test", n_test)
    fair, fair_records = fair_models(b, args.task, args.codecs, budget, progress=progress)
    res = evaluate(b, val, test, grid, qualities, fair, progress=progress)
    _keep(res, args.out)
    split_budget = _split_budget(b)
    params = {
        "bundle": str(b.path),
        "model_id": b.model_id,
        "split_shape": "x".join(map(str, b.split_shape)),
        "task": args.task,
        "validation": {"split": "validation", "n": n_val},
        "test": {"split": "test", "n": n_test},
        "quick": args.quick,
        "threads": args.threads,
        "settings": len(grid) + sum(len(q) for q in qualities.values()) * 2 + 1,
        "qualities": qualities,
        "providers": [
            p for p in grid_args.get("providers", rate_sweep.PROVIDERS) if rate_sweep.has_provider(b, p)
        ],
        "avif_speed": rate_baselines.AVIF_SPEED,
        "fair_budget": {"epochs": budget[0], "images": budget[1]},
        "split_path_budget": None
        if split_budget is None
        else {"epochs": split_budget[0], "images": split_budget[1]},
        "fair_finetuning": fair_records,
        "bootstrap": {
            "method": "percentile, paired over frames (scipy.stats.bootstrap)",
            "confidence": rate_select.CONFIDENCE,
            "resamples": rate_select.N_RESAMPLES,
            "seed": rate_select.SEED,
        },
        "edge_time": "mean ms per frame on this shared machine: pipeline stages, plus the importance "
        "map and the unreduced front half measured once per frame where a setting uses them",
    }
    summary = rate_report.summarize(res, GUIDED)
    params["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out) if args.out else RESULTS / "rate_accuracy.json"
    rows = rate_report.rows(res)
    path = write_result("rate_accuracy", summary, params, rows, out)
    rate_report.plot(res, summary, out.with_suffix(".png"))
    md = rate_report.markdown(res, summary, params)
    out.with_suffix(".md").write_text(md)
    print(md)
    print(path)
    if args.update_readme:
        cmd = "python benchmarks/rate_accuracy.py --update-readme" + (" --quick" if args.quick else "")
        for flag, v in (("--val", args.val), ("--test", args.test), ("--ft-epochs", args.ft_epochs)):
            if v:
                cmd += f" {flag} {v}"
        if args.providers:
            cmd += " --providers " + " ".join(args.providers)
        if args.ft_images:
            cmd += f" --ft-images {args.ft_images}"
        rate_report.update_readme(md, cmd)
    return 0


def _keep(res: dict, out: str | None) -> None:
    """The per-frame measurements, pickled under runs/ (ignored by git), so that the report can be
    redrawn from them (``--rerender``) without measuring again."""
    import pickle

    path = RUNS / (Path(out).stem if out else "rate_accuracy")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".pkl").write_bytes(pickle.dumps(res))


def _split_budget(b: Bundle) -> tuple[int, int] | None:
    from edge_runtime.models.codec_finetune import split_path_budget

    try:
        return split_path_budget(b.path)
    except ValueError:
        return None


def rate_baselines_budget(b: Bundle, args) -> tuple[int, int]:
    """(epochs, images) for the fair baselines: the split path's unless ``--ft-*`` / ``--quick``."""
    base = _split_budget(b) or (4, 12000)
    if args.quick:
        base = (1, 512)
    epochs = args.ft_epochs or base[0]
    images = args.ft_images or base[1]
    if epochs < 1 or images < 1:
        raise ValueError("--ft-epochs and --ft-images must be >= 1")
    return epochs, images


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
