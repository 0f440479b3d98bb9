"""Does the default model hold up on backgrounds and cameras it never saw?

The float model (front then back half of the bundle, no reduction) on the photographic task's
test split, in domain and in three shifted variants (``edge_runtime.datasets.VARIANTS``):
background photographs that no training scene used, camera knobs past the training ranges, and
4:3 frames brought to the square input by each ``source.resize`` mode. Accuracy carries a
bootstrap 95% interval over frames; the domain gap of each variant an interval from independent
resamples of both sets (they are different frames); the resize modes are compared on the *same*
4:3 frames with a paired bootstrap, which also shows how narrow a paired interval is at this n.

    python benchmarks/generalisation.py            # 5000 frames per variant, about 4 minutes
    python benchmarks/generalisation.py --quick    # 800 frames
    python benchmarks/generalisation.py --split validation --bundle B --out F  # to choose a recipe

The test split scores the shipped default once; recipes are compared on ``--split validation``,
which has no unseen-backgrounds variant (those photographs are kept for the test split alone).

Summary: float_top1_in_domain, float_top1_unseen_backgrounds, float_top1_camera_variation,
float_top1_4x3_frames (at the default resize mode), domain_gap_pt (the worst of the last three
below in domain; goal <= 3), train_minutes (the default recipe's measured wall time, read from
benchmarks/results/training.json where the training run recorded it; null for a bundle that run
did not make).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, before benchmarks/
from benchmarks import rate_select  # noqa: E402
from benchmarks._common import RESULTS, write_result  # noqa: E402
from edge_runtime import datasets  # noqa: E402
from edge_runtime.bundle import load_bundle  # noqa: E402
from edge_runtime.config import SourceConfig  # noqa: E402


def correct(bundle, images: np.ndarray, batch: int = 250) -> np.ndarray:
    """Per-frame correctness (bool) of the float model: back(front(x))."""
    out = []
    for i in range(0, len(images), batch):
        x = bundle.preprocess(images[i : i + batch])
        out.append(bundle.back(bundle.front(x)[bundle.split_name]).argmax(1))
    return np.concatenate(out)


def _pt(interval) -> list[float]:
    return [round(v * 100, 2) for v in interval]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", help="bundle folder (default: the shipped default bundle)")
    ap.add_argument("--task", default=datasets.DEFAULT_TASK, choices=datasets.TASKS[:2])
    ap.add_argument("-n", type=int, default=5000, help="test frames per variant (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="800 frames per variant")
    ap.add_argument(
        "--split",
        default="test",
        choices=("validation", "test"),
        help="frames to score: validation to choose between recipes, test once (default: %(default)s)",
    )
    ap.add_argument("--out", help="result JSON (default: benchmarks/results/generalisation.json)")
    args = ap.parse_args(argv)
    n = 800 if args.quick else args.n
    if args.split != "test" and args.out is None:
        print(
            "error: --split validation needs --out (the default file holds the test figures)", file=sys.stderr
        )
        return 2
    try:
        bundle = load_bundle(args.bundle)
    except Exception as e:  # noqa: BLE001 - any bundle problem ends the run with its message
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = bundle.input.size[0]
    default_resize = SourceConfig().resize
    c, results = {}, {}
    variants = [v for v in datasets.VARIANTS if args.split == "test" or v != "unseen_backgrounds"]
    for variant in variants:
        modes = ("letterbox", "crop", "stretch") if variant == "4x3" else (default_resize,)
        for mode in modes:
            try:
                f = datasets.load(
                    args.task, args.split, n, size=size, variant=variant, resize=mode, progress=True
                )
            except FileNotFoundError as e:
                print(f"error: {e}", file=sys.stderr)
                return 2
            key = variant if variant != "4x3" else f"4x3/{mode}"
            c[key] = correct(bundle, f.images) == f.labels
            results[key] = {
                "top1": round(float(c[key].mean()) * 100, 2),
                "ci95": _pt(rate_select.mean_interval(c[key])),
                "n": n,
            }
            print(f"{key:28s} top-1 {results[key]['top1']:6.2f}%  95% {results[key]['ci95']}")
    four3 = f"4x3/{default_resize}"
    shifted = {
        "unseen_backgrounds": "unseen_backgrounds",
        "camera_variation": "camera_variation",
        "4x3": four3,
    }
    shifted = {name: key for name, key in shifted.items() if key in c}
    gaps = {}
    for name, key in shifted.items():
        gaps[name] = {
            "gap_pt": round((c["in_domain"].mean() - c[key].mean()) * 100, 2),
            "ci95": _pt(rate_select.independent_diff_interval(c["in_domain"], c[key])),
        }
    for mode in ("crop", "stretch"):
        results[f"4x3/{default_resize}_minus_{mode}"] = {
            "diff_pt": round((c[four3].mean() - c[f"4x3/{mode}"].mean()) * 100, 2),
            "ci95_paired": _pt(rate_select.diff_interval(c[four3], c[f"4x3/{mode}"])),
        }
    record = RESULTS / "training.json"
    train_minutes = None
    if record.exists():  # the recorded run's wall time, if it made the bundle scored here
        rec = json.loads(record.read_text()).get("summary", {})
        if rec.get("selection_on_validation", {}).get("new_default_bundle") == bundle.model_id[:12]:
            train_minutes = rec.get("default_recipe_wall_minutes")
    summary = {
        "float_top1_in_domain": results["in_domain"]["top1"],
        "float_top1_unseen_backgrounds": results.get("unseen_backgrounds", {}).get("top1"),
        "float_top1_camera_variation": results["camera_variation"]["top1"],
        "float_top1_4x3_frames": results[four3]["top1"],
        "domain_gap_pt": max(g["gap_pt"] for g in gaps.values()),
        "train_minutes": train_minutes,
        "resize_default": default_resize,
        "n_per_variant": n,
    }
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    params = {
        "bundle": bundle.model_name,
        "model_id": bundle.model_id[:12],
        "task": args.task,
        "split": args.split,
        "bootstrap": f"scipy.stats.bootstrap, percentile, {rate_select.N_RESAMPLES} resamples",
        "git_commit": commit,
    }
    path = write_result("generalisation", summary, params, {"variants": results, "gaps": gaps}, args.out)
    print(json.dumps(summary, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
