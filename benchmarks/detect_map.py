"""COCO mAP with per-image weights, for paired bootstrap intervals of detection benchmarks.

mAP is not a mean over frames, so a bootstrap interval needs mAP recomputed on every resample of
the images. :class:`MapTable` runs ``pycocotools``' matching (``COCOeval.evaluate``) once, keeps
each detection's match flags per IoU threshold, and recomputes COCO's accumulation for any image
weights (a resample = how often each image was drawn): cumulative true / false positives weighted
by their image's count, the ground truth counted likewise, then COCO's precision envelope sampled
at its 101 recall thresholds. With all weights 1 it is ``COCOeval.summarize``'s value
(tests/benchmarks/test_rate_detection.py checks that); duplicating an image's detections in the
sorted list or weighting them gives the same envelope (a run of equal detections moves precision
monotonically, so the envelope's value at each recall is the same).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

__all__ = ["MapTable", "paired_map_interval", "map_interval"]

N_RESAMPLES = 300
CONFIDENCE = 0.95
SEED = 0


class MapTable:
    """Matches of ``detections`` against ``truths`` (the arguments of
    :func:`edge_runtime.detection.mean_average_precision`), ready to score any image weights."""

    def __init__(self, detections: list, truths: list, num_classes: int) -> None:
        from pycocotools.cocoeval import COCOeval

        from edge_runtime.detection import coco_inputs

        gt, dets = coco_inputs(detections, truths, num_classes)
        self.n = len(truths)
        self.categories = []  # per category: (image of each det, true / false positive T x D, gt per image)
        with contextlib.redirect_stdout(io.StringIO()):
            self.reference = None
            if not dets:
                self.categories = None
                return
            ev = COCOeval(gt, gt.loadRes(dets), "bbox")
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            self.reference = (float(ev.stats[0]), float(ev.stats[1]))
        self.iou_thrs = ev.params.iouThrs
        self.rec_thrs = ev.params.recThrs
        n_img, n_area = len(ev.params.imgIds), len(ev.params.areaRng)
        max_det = ev.params.maxDets[-1]
        for k in range(len(ev.params.catIds)):
            img_idx, scores, matches, ignored, ngt = [], [], [], [], np.zeros(self.n)
            for i in range(n_img):
                e = ev.evalImgs[k * n_area * n_img + i]  # area range 0: "all"
                if e is None:
                    continue
                ngt[i] = np.count_nonzero(np.asarray(e["gtIgnore"]) == 0)
                s = np.asarray(e["dtScores"][:max_det], np.float64)
                img_idx.append(np.full(len(s), i))
                scores.append(s)
                matches.append(np.asarray(e["dtMatches"])[:, :max_det] > 0)
                ignored.append(np.asarray(e["dtIgnore"], bool)[:, :max_det])
            if not img_idx:
                self.categories.append(None)
                continue
            s = np.concatenate(scores)
            order = np.argsort(-s, kind="mergesort")
            m = np.concatenate(matches, axis=1)[:, order]
            ig = np.concatenate(ignored, axis=1)[:, order]  # e.g. a box of negative area
            self.categories.append((np.concatenate(img_idx)[order], m & ~ig, ~m & ~ig, ngt))

    def score(self, weights: np.ndarray | None = None) -> tuple[float, float]:
        """(mAP@0.5:0.95, mAP@0.5) for image ``weights`` (None: every image once)."""
        if self.categories is None:
            return 0.0, 0.0
        w = np.ones(self.n) if weights is None else np.asarray(weights, np.float64)
        aps = []  # (T,) per category present
        for cat in self.categories:
            if cat is None:
                continue
            img, tps, fps, ngt = cat
            npig = float(np.dot(w, ngt))
            if npig == 0:
                continue
            wd = w[img]
            tp = np.cumsum(tps * wd, axis=1)
            fp = np.cumsum(fps * wd, axis=1)
            rc = tp / npig
            pr = tp / (tp + fp + np.spacing(1))
            if pr.shape[1] == 0:
                aps.append(np.zeros(len(self.iou_thrs)))
                continue
            env = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
            ap = np.empty(len(self.iou_thrs))
            for t in range(len(self.iou_thrs)):
                idx = np.searchsorted(rc[t], self.rec_thrs, side="left")
                q = np.where(idx < env.shape[1], env[t, np.minimum(idx, env.shape[1] - 1)], 0.0)
                ap[t] = q.mean()
            aps.append(ap)
        if not aps:
            return 0.0, 0.0
        a = np.array(aps)
        return float(a.mean()), float(a[:, 0].mean())


def _resamples(n: int, count: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(count)]).astype(
        np.float64
    )


def map_interval(table: MapTable, count: int = N_RESAMPLES) -> dict:
    """Point and 95% percentile-bootstrap intervals (images resampled) of mAP and mAP@0.5."""
    point = table.score()
    draws = np.array([table.score(w) for w in _resamples(table.n, count)])
    lo, hi = np.percentile(draws, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2], axis=0)
    return {"map": point[0], "map_ci": [float(lo[0]), float(hi[0])], "map50": point[1],
            "map50_ci": [float(lo[1]), float(hi[1])]}  # fmt: skip


def paired_map_interval(a: MapTable, b: MapTable, count: int = N_RESAMPLES) -> dict:
    """mAP@0.5 and mAP of ``a`` minus ``b`` on the same images (paired: one resample for both),
    in points, with 95% percentile-bootstrap intervals."""
    if a.n != b.n:
        raise ValueError(f"paired intervals need the same images: {a.n} and {b.n}")
    pa, pb = a.score(), b.score()
    d = []
    for w in _resamples(a.n, count):
        sa, sb = a.score(w), b.score(w)
        d.append((sa[0] - sb[0], sa[1] - sb[1]))
    d = 100 * np.array(d)
    lo, hi = np.percentile(d, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2], axis=0)
    return {
        "diff_map50_pt": 100 * (pa[1] - pb[1]),
        "diff_map50_ci_pt": [float(lo[1]), float(hi[1])],
        "diff_map_pt": 100 * (pa[0] - pb[0]),
        "diff_map_ci_pt": [float(lo[0]), float(hi[0])],
    }
