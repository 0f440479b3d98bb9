"""Pointing game and IoU of every importance map of a bundle against ground-truth object masks.

    python benchmarks/maps.py [--bundle DIR] [--count 500]

Maps: the four gradient graphs (influence), the fused attention of the front's layers, the ABN
attention map, and a centre prior (a Gaussian at the image centre) as the chance baseline. Each map
is resized to the image (bilinear) before scoring:

* pointing game: the map's maximum falls on the object (mask dilated by ``--tolerance`` pixels);
* IoU: the map's top-k pixels, k = the object's area, against the object mask (a threshold-free
  IoU: every map keeps exactly as many pixels as the object has).

Gradient maps are scored raw and after a 9 x 9 box blur (``+blur``), since pixel-level gradients
are speckled. Every figure comes with a 95% bootstrap interval over frames (``*_ci95``), and each
map's difference to the centre prior with a paired one. Runs with the runtime only (no torch).
Writes ``benchmarks/results/maps.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, before benchmarks/
from benchmarks._common import write_result  # noqa: E402
from benchmarks.rate_select import diff_interval, mean_interval  # noqa: E402
from edge_runtime import datasets  # noqa: E402
from edge_runtime.bundle import GRAD_VARIANTS, load_bundle  # noqa: E402


def _score(maps: np.ndarray, masks: np.ndarray, tolerance: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: pointing-game hit (0 / 1) and top-k IoU."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance + 1, 2 * tolerance + 1))
    hits, ious = [], []
    for m, gt in zip(maps, masks, strict=True):
        near = cv2.dilate(gt.astype(np.uint8), kernel).astype(bool) if tolerance else gt
        hits.append(bool(near.flat[int(np.argmax(m))]))
        k = int(gt.sum())
        top = np.zeros(m.size, bool)
        top[np.argsort(-m.ravel(), kind="stable")[:k]] = True
        top = top.reshape(m.shape)
        ious.append((top & gt).sum() / max(1, (top | gt).sum()))
    return np.asarray(hits, float), np.asarray(ious, float)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", help="bundle folder (default: the shipped bundle)")
    p.add_argument("--count", type=int, default=2000, help="test scenes to score (default: %(default)s)")
    p.add_argument("--tolerance", type=int, default=2, help="pointing-game tolerance in pixels")
    p.add_argument("--out", help="output JSON (default: benchmarks/results/maps.json)")
    args = p.parse_args(argv)

    b = load_bundle(args.bundle)
    h, w = b.input.size
    f = datasets.load(datasets.DEFAULT_TASK, "test", args.count, size=h)
    images, masks = f.images, f.masks
    x = b.preprocess(images)
    maps: dict[str, np.ndarray] = {}
    timing: dict[str, float] = {}

    def up(a: np.ndarray) -> np.ndarray:
        return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in a])

    t = time.perf_counter()
    front = b.front(x)
    timing["front"] = (time.perf_counter() - t) / args.count
    if "fused" in b.importance:
        maps["fused"] = up(front["fused_attention"][:, 0])
    if "abn" in b.importance:
        t = time.perf_counter()
        abn = b.run("attention", {b.split_name: front[b.split_name]}, ["abn_map"])["abn_map"]
        timing["abn"] = (time.perf_counter() - t) / args.count
        maps["abn"] = up(abn[:, 0])
    zero_ref = np.zeros((1, b.num_classes), np.float32)
    for v in GRAD_VARIANTS:
        name = f"grad_{v}"
        if name not in b.graphs:
            continue
        t = time.perf_counter()
        infl = np.concatenate(
            [
                b.run(name, {"image": x[i : i + 1], "reference": zero_ref}, ["influence"])["influence"]
                for i in range(args.count)
            ]
        )[:, 0]
        timing[name] = (time.perf_counter() - t) / args.count
        maps[name] = infl
        maps[f"{name}+blur"] = np.stack([cv2.blur(m, (9, 9)) for m in infl])
    yy, xx = np.mgrid[0:h, 0:w]
    centre = np.exp(-(((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 4)) ** 2))
    maps["centre_prior"] = np.broadcast_to(centre, (args.count, h, w)).astype(np.float32)

    per_frame = {k: _score(m, masks, args.tolerance) for k, m in maps.items()}
    base_hits, base_ious = per_frame["centre_prior"]
    results = {}
    for k, (hits, ious) in per_frame.items():
        r = results[k] = {"pointing_game": float(hits.mean()), "iou": float(ious.mean()), "n": len(hits)}
        r["pointing_game_ci95"] = list(mean_interval(hits))
        r["iou_ci95"] = list(mean_interval(ious))
        if k != "centre_prior":
            r["pointing_game_minus_centre_prior_ci95"] = list(diff_interval(hits, base_hits))
            r["iou_minus_centre_prior_ci95"] = list(diff_interval(ious, base_ious))
        r["seconds_per_image"] = timing.get("front" if k == "fused" else k.replace("+blur", ""))
        lo, hi = r["pointing_game_ci95"]
        print(f"{k:<22} pointing {r['pointing_game']:.3f} [{lo:.3f}, {hi:.3f}]  IoU {r['iou']:.3f}")
    summary = {
        "pointing_game": {k: r["pointing_game"] for k, r in results.items()},
        "pointing_game_ci95": {k: r["pointing_game_ci95"] for k, r in results.items()},
        "iou": {k: r["iou"] for k, r in results.items()},
        "iou_ci95": {k: r["iou_ci95"] for k, r in results.items()},
        "n_frames": args.count,
        "split": "test",
    }
    params = {
        "bundle": str(b.path),
        "model_id": b.model_id,
        "count": args.count,
        "frames": f"datasets.load({datasets.DEFAULT_TASK!r}, 'test', {args.count})",
        "tolerance_px": args.tolerance,
        "reference": "own top prediction (all-zero reference row)",
        "iou_threshold": "top-k pixels, k = object area",
        "intervals": "percentile bootstrap 95% over frames (scipy.stats.bootstrap via benchmarks.rate_select); "
        "differences to the centre prior paired over the same frames",
    }
    print(write_result("maps", summary, params, results, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
