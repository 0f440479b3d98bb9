"""The default recipe's record: its wall time, its validation curve, the masking-aware fine-tuning,
and the new bundle against the previous default on the same validation scenes.

    edge-runtime train --out runs/abn --threads 2
    edge-runtime finetune runs/abn/checkpoint.pt --out runs/abn-ft --threads 2 --export NEW_BUNDLE
    python benchmarks/training.py --run runs/abn/checkpoint.pt --finetuned runs/abn-ft/checkpoint.pt \\
        --bundle NEW_BUNDLE --previous PREVIOUS_BUNDLE

Everything here is measured on the validation split (the choice of the default bundle is a
selection); test frames are for ``benchmarks/generalisation.py``. The two bundles are scored on
the same frames, so their difference carries a paired bootstrap interval.

Summary: ``abn_val_top1`` (the trained checkpoint's last epoch), ``default_recipe_wall_minutes`` /
``train_minutes`` (scene generation included, from the checkpoint's own record),
``finetune_val`` and ``selection_on_validation`` (previous and new bundle, difference, interval).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, before benchmarks/
from benchmarks import rate_select  # noqa: E402
from benchmarks._common import run_cli, write_result  # noqa: E402
from benchmarks.generalisation import correct  # noqa: E402
from edge_runtime import datasets  # noqa: E402
from edge_runtime.bundle import load_bundle  # noqa: E402


def _checkpoint(path: str) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _paired(ok_new, ok_prev) -> dict:
    """Top-1 of both bundles on the same frames, their difference (points) and its paired interval."""
    return {
        "previous_default_bundle_top1": round(float(ok_prev.mean()), 4),
        "new_default_bundle_top1": round(float(ok_new.mean()), 4),
        "diff_pt": round(float(ok_new.mean() - ok_prev.mean()) * 100, 2),
        "diff_ci95_pt": [round(v * 100, 2) for v in rate_select.diff_interval(ok_new, ok_prev)],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="checkpoint.pt of `edge-runtime train`")
    ap.add_argument("--finetuned", required=True, help="checkpoint.pt of `edge-runtime finetune`")
    ap.add_argument("--bundle", required=True, help="the bundle exported from --finetuned")
    ap.add_argument("--previous", required=True, help="the previous default bundle, to compare with")
    ap.add_argument("-n", type=int, default=2000, help="validation scenes (default: %(default)s)")
    ap.add_argument("--command", default="edge-runtime train --out runs/abn --threads 2",
                    help="the training command, recorded with the result")  # fmt: skip
    ap.add_argument("--note", default="", help="what ran beside the training, the machine's load")
    ap.add_argument("--out", help="result JSON (default: benchmarks/results/training.json)")
    args = ap.parse_args(argv)

    run, ft = _checkpoint(args.run), _checkpoint(args.finetuned)
    new, previous = load_bundle(args.bundle), load_bundle(args.previous)
    last = run["history"][-1]
    if "wall_seconds" not in last:
        raise ValueError(f"{args.run} records no wall time (trained before `wall_seconds` existed)")
    # the scenes the recipe is chosen on, and a camera past the training ranges
    ok = {}
    for variant in ("in_domain", "camera_variation"):
        frames = datasets.load(
            datasets.DEFAULT_TASK,
            "validation",
            args.n,
            size=new.input.size[0],
            variant=variant,
            progress=True,
        )
        ok[variant] = [correct(b, frames.images) == frames.labels for b in (new, previous)]
    ft_last = ft["history"][-1]
    ft_record = ft["train"]["finetune"]
    minutes = round(last["wall_seconds"] / 60, 1)
    summary = {
        "task": datasets.DEFAULT_TASK,
        "abn_val_top1": last["top1"],
        "abn_val_top1_attention_branch": last.get("top1_attention_branch"),
        "default_recipe_wall_minutes": minutes,
        "train_minutes": minutes,
        "scene_generation_minutes": round((last["wall_seconds"] - last["seconds"]) / 60, 1),
        "finetune_val": {k: v for k, v in ft_last.items() if k.startswith("top1")}
        | {"seconds": ft_record.get("seconds")},
        "selection_on_validation": {
            "n": args.n,
            "previous_default_bundle": previous.model_id[:12],
            "new_default_bundle": new.model_id[:12],
            **_paired(*ok["in_domain"]),
            "camera_variation": _paired(*ok["camera_variation"]),
            "method": "float model (front then back) of each exported bundle on the same validation "
            "scenes (in domain, and the camera-variation test's harsher camera); paired bootstrap over frames",
        },
        "note": args.note,
    }
    params = {"command": args.command, "config": run["train"], "finetune": ft_record}
    results = {"train_history": run["history"], "finetune_history": ft["history"][len(run["history"]) :]}
    path = write_result("training", summary, params, results, args.out)
    for k, v in summary.items():
        print(f"{k}: {v}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
