"""Decoy experiment: does correcting ABN attention maps undo a shortcut the network learned?

Training scenes carry a class-coded decoy patch that predicts the label (``decoy="label"``,
``decoy_prob`` of them; 1.0 by default, the strongest shortcut); test scenes carry a patch of a
random class (``decoy="random"``), so a network that looks at the patch is wrong on them.

1. Train an ABN on the decoy scenes and one on the same scenes without the decoy (the reference).
2. Measure both on the test scenes: top-1 and the pointing game of M on the object.
3. No retraining: replace M of each misrecognized test image by a corrected map and count how many
   the perception branch then gets right.
4. The simulated person corrects the maps of at most ``--budget`` (5 %) of the training images:
   they draw the ground-truth object mask, which is area-downsampled to the map resolution
   (misrecognized images first, then those whose map maximum misses the object, then the rest).
5. Fine-tune with ``L_att + L_per + gamma * ||M' - M||^2`` (feature extractor frozen), measure
   again, and report the share of the accuracy gap to the decoy-free model that is recovered.

Writes ``benchmarks/results/decoy.json`` and ``benchmarks/results/decoy.png`` (image, map before,
map after). Trained checkpoints are kept in ``--work`` and reused when their parameters match.

    PYTHONPATH=. python benchmarks/decoy.py            # 6000 scenes, 3 epochs
    PYTHONPATH=. python benchmarks/decoy.py --quick    # a small smoke run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import RESULTS, write_result  # noqa: E402
from edge_runtime.models.correct import map_from_mask, recognize_torch  # noqa: E402
from edge_runtime.models.data import scene_dataset, to_tensor  # noqa: E402
from edge_runtime.models.retrain import RetrainConfig, evaluate_maps, finetune, pointing_game, record  # noqa: E402
from edge_runtime.models.train import TrainConfig, load_checkpoint, train  # noqa: E402

# Trained parts per retraining setting: "frozen" is retrain's default (feature extractor frozen).
SETTINGS = {
    "frozen": ("attention", "perception"),
    "all": ("features", "attention", "perception"),
}


def _model(work: Path, name: str, cfg: TrainConfig, train_data, test_data, params: dict):
    """Train, or reuse ``work/name/checkpoint.pt`` when it was trained with the same parameters."""
    run = work / name
    meta = run / "params.json"
    ckpt = run / "checkpoint.pt"
    if ckpt.is_file() and meta.is_file() and json.loads(meta.read_text()) == params:
        print(f"{name}: reusing {ckpt}")
    else:
        t0 = time.perf_counter()
        train(cfg, train_data, test_data, run)
        meta.write_text(json.dumps(params))
        print(f"{name}: trained in {time.perf_counter() - t0:.0f} s")
    model, info = load_checkpoint(ckpt)
    return model, info


def _features(model, images, batch=256):
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(model.features(to_tensor(images[i : i + batch]))[0].numpy())
    return np.concatenate(out)


def _teacher_order(rec: dict, masks: np.ndarray) -> np.ndarray:
    """Which training images the simulated person corrects first: misrecognized, then maps whose
    maximum misses the object, then the rest by the share of map mass off the object."""
    from edge_runtime.models.correct import map_to_image

    misses = np.zeros(len(masks), bool)
    off_mass = np.zeros(len(masks))
    for i, (m, mask) in enumerate(zip(rec["maps"], masks, strict=True)):
        up = map_to_image(m, mask.shape)
        misses[i] = not mask.flat[int(np.argmax(up))]
        off_mass[i] = up[~mask].sum() / max(1e-6, up.sum())
    key = np.lexsort((-off_mass, ~misses, rec["per_correct"]))
    return key


def decoy_figure(
    images, masks, before, corrected, after, labels, pred_before, pred_fixed, pred_after, classes
):
    """The figure: per test scene the image (object outline, true class) and three maps over it,
    each titled with the class the model predicted from it; one colour bar for the map values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge_runtime.models.correct import map_to_image

    n = len(images)
    fig, axes = plt.subplots(n, 4, figsize=(11, 2.6 * n), squeeze=False)
    shown = None
    for r in range(n):
        size = images[r].shape[:2]
        axes[r, 0].imshow(images[r])
        axes[r, 0].contour(masks[r], levels=[0.5], colors="white", linewidths=0.8)
        axes[r, 0].set_title(f"image, true class: {classes[labels[r]]}", fontsize=8)
        for c, (m, p, title) in enumerate(
            [
                (before[r], pred_before[r], "map before"),
                (corrected[r], pred_fixed[r], "corrected map, no retraining"),
                (after[r], pred_after[r], "map after retraining"),
            ],
            1,
        ):
            axes[r, c].imshow(images[r])
            shown = axes[r, c].imshow(map_to_image(m, size), cmap="jet", alpha=0.5, vmin=0, vmax=1)
            mark = "right" if p == labels[r] else "wrong"
            axes[r, c].set_title(f"{title}\npredicted: {classes[p]} ({mark})", fontsize=8)
        for a in axes[r]:
            a.axis("off")
    fig.suptitle("Decoy experiment: test scenes (decoy patch of a random class)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 0.92, 1))
    cax = fig.add_axes((0.93, 0.1, 0.015, 0.8))
    fig.colorbar(shown, cax=cax, label="attention (0 = ignored, 1 = most important)")
    return fig


def _figure(path: Path, *args) -> None:
    import matplotlib.pyplot as plt

    fig = decoy_figure(*args)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small smoke run (minutes)")
    p.add_argument("--num-train", type=int, default=6000)
    p.add_argument("--num-test", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--decoy-prob", type=float, default=1.0, help="share of training scenes with the decoy")
    p.add_argument("--budget", type=float, default=0.05, help="share of training images corrected")
    p.add_argument("--retrain-epochs", type=int, default=3)
    p.add_argument("--gamma", type=float, default=1.0)
    p.add_argument("--teacher-repeat", type=int, default=4)
    p.add_argument(
        "--settings",
        nargs="+",
        choices=sorted(SETTINGS),
        default=["all", "frozen"],
        help="which parts fine-tune, one run each; the first is the headline (default: %(default)s)",
    )
    p.add_argument("--lr", type=float, default=3e-3, help="fine-tuning learning rate (the training peak)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default="runs/decoy", help="folder for the trained checkpoints")
    p.add_argument("--out", help="JSON path (default benchmarks/results/decoy.json)")
    args = p.parse_args(argv)
    if args.quick:
        args.num_train, args.num_test, args.epochs, args.retrain_epochs = 1200, 300, 2, 2
        args.work = f"{args.work}-quick"
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    t_start = time.perf_counter()

    train_decoy = scene_dataset(args.num_train, seed=1, decoy="label", decoy_prob=args.decoy_prob)
    train_clean = scene_dataset(args.num_train, seed=1)
    test = scene_dataset(args.num_test, seed=3, decoy="random")
    print(
        f"data: {len(train_decoy)} training scenes, {len(test)} test scenes ({time.perf_counter() - t_start:.0f} s)"
    )

    # map_weight 0: the networks learn from the labels alone; the item masks reach the decoy model
    # only as the simulated person's corrections (L_map of the default recipe would be all of them)
    cfg = TrainConfig(epochs=args.epochs, threads=args.threads, bottleneck=8, map_weight=0.0)
    params = {"num_train": args.num_train, "epochs": args.epochs, "seed": 1, "bottleneck": 8}
    decoy_model, decoy_ckpt = _model(
        work, "decoy", cfg, train_decoy, test, params | {"decoy": "label", "decoy_prob": args.decoy_prob}
    )
    clean_model, clean_ckpt = _model(work, "clean", cfg, train_clean, test, params | {"decoy": None})

    before = evaluate_maps(decoy_model, test)
    clean = evaluate_maps(clean_model, test)
    print(f"test top-1: decoy model {before['top1']:.3f}, decoy-free model {clean['top1']:.3f}")
    print(
        f"pointing game: decoy model {before['pointing_game']:.3f}, decoy-free {clean['pointing_game']:.3f}"
    )

    # 3. corrected maps with no retraining (the person's map = the object mask at map resolution).
    rec_test = record(decoy_model, test)
    h, w = rec_test["maps"].shape[1:]
    gt_maps = np.stack([map_from_mask(m, (h, w)) for m in test.masks])
    feats = _features(decoy_model, test.images)
    corrected_pred = recognize_torch(decoy_model, feats, gt_maps).argmax(1)
    wrong = ~rec_test["per_correct"]
    fixed = int((corrected_pred[wrong] == test.labels[wrong]).sum())
    broken = int((corrected_pred[~wrong] != test.labels[~wrong]).sum())
    print(f"no retraining: corrected maps fix {fixed} of {int(wrong.sum())} misrecognized test images")

    # 4. the simulated person corrects at most `budget` of the training maps.
    rec_train = record(decoy_model, train_decoy)
    n_teach = int(np.floor(args.budget * len(train_decoy)))
    order = _teacher_order(rec_train, train_decoy.masks)[:n_teach]
    teachers = {int(i): map_from_mask(train_decoy.masks[i], (h, w)) for i in order}

    # 5. retrain on all training images, teacher maps on the corrected ones; one run per setting
    # of the trained parts (the first is the headline, the others are reported beside it).
    gap = clean["top1"] - before["top1"]
    runs = {}
    for setting in args.settings:
        rcfg = RetrainConfig(
            select="per",
            include_correct=1.0,
            train=SETTINGS[setting],
            gamma=args.gamma,
            epochs=args.retrain_epochs,
            lr=args.lr,
            batch_size=64,
            teacher_repeat=args.teacher_repeat,
        )
        t0 = time.perf_counter()
        model, rlog = finetune(decoy_model, train_decoy, teachers, rcfg)
        seconds = time.perf_counter() - t0
        ev = evaluate_maps(model, test)
        # None (JSON null) when the decoy model is not worse: then there is no gap to recover.
        rec = round((ev["top1"] - before["top1"]) / gap, 4) if gap > 0 else None
        runs[setting] = {"model": model, "eval": ev, "gap_recovered": rec, "log": rlog, "seconds": seconds}
        print(
            f"after retraining ({setting}: {', '.join(SETTINGS[setting])}): top-1 {ev['top1']:.3f} "
            f"(gap recovered {rec}), pointing game {ev['pointing_game']:.3f}"
        )
    primary = args.settings[0]
    retrained, after, recovered = (
        runs[primary]["model"],
        runs[primary]["eval"],
        runs[primary]["gap_recovered"],
    )

    # Figure: test images the decoy model got wrong.
    rec_after = record(retrained, test)
    pick = np.flatnonzero(wrong)[:4] if wrong.any() else np.arange(4)
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig_path = Path(args.out).with_suffix(".png") if args.out else RESULTS / "decoy.png"
    _figure(
        fig_path,
        test.images[pick],
        test.masks[pick],
        rec_test["maps"][pick],
        gt_maps[pick],
        rec_after["maps"][pick],
        test.labels[pick],
        rec_test["per_pred"][pick],
        corrected_pred[pick],
        rec_after["per_pred"][pick],
        test.classes,
    )

    summary = {
        "gap_recovered": recovered,
        "fixed_without_retraining": fixed,
        "pointing_before": round(before["pointing_game"], 4),
        "pointing_after": round(after["pointing_game"], 4),
        "misrecognized_before": int(wrong.sum()),
        "top1_decoy_model": before["top1"],
        "top1_retrained": after["top1"],
        "top1_decoy_free_model": clean["top1"],
        "goal_gap_recovered_0_9_met": recovered is not None and recovered >= 0.9,
        "retrained_parts": list(SETTINGS[primary]),
        **{f"gap_recovered_{k}": r["gap_recovered"] for k, r in runs.items() if k != primary},
        **{
            f"pointing_after_{k}": round(r["eval"]["pointing_game"], 4)
            for k, r in runs.items()
            if k != primary
        },
        "teacher_maps": len(teachers),
        "teacher_share": len(teachers) / len(train_decoy),
    }
    results = {
        "decoy_model": before,
        "decoy_free_model": clean | {"pointing_game": clean["pointing_game"]},
        "retrained": {
            k: {"parts": list(SETTINGS[k]), "gap_recovered": r["gap_recovered"], **r["eval"]}
            for k, r in runs.items()
        },
        "without_retraining": {
            "misrecognized": int(wrong.sum()),
            "fixed_by_corrected_map": fixed,
            "correct_broken_by_corrected_map": broken,
            "top1_with_corrected_maps_all_images": float((corrected_pred == test.labels).mean()),
        },
        "teacher_selection": {
            "misrecognized_training_images": int((~rec_train["per_correct"]).sum()),
            "training_pointing_game_before": pointing_game(rec_train["maps"], train_decoy.masks),
            "corrected": len(teachers),
        },
        "retrain": {k: r["log"] | {"seconds": round(r["seconds"], 1)} for k, r in runs.items()},
        "training_seconds": {
            "decoy": decoy_ckpt["history"][-1]["seconds"],
            "clean": clean_ckpt["history"][-1]["seconds"],
        },
        "figure": fig_path.name,
        "wall_seconds": round(time.perf_counter() - t_start, 1),
    }
    parameters = vars(args) | {
        "train_scenes": "SceneGenerator(seed=1, decoy='label')",
        "test_scenes": "SceneGenerator(seed=3, decoy='random')",
        "teacher_maps": "simulated person: the ground-truth object mask, area-downsampled to the "
        f"{h} x {w} map resolution; corrected {len(teachers)} of {len(train_decoy)} training images",
        "corrected_map_without_retraining": "the same simulated correction (object mask) on the test image",
    }
    path = write_result("decoy", summary, parameters, results, out=args.out)
    print(json.dumps(summary, indent=2))
    print(f"wrote {path} and {fig_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
