"""The detection benchmark's statistics: weighted COCO mAP against pycocotools, and selection rules."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.detect_map import MapTable, map_interval, paired_map_interval
from edge_runtime.detection import mean_average_precision


def _synthetic(n=40, seed=0, noise=3.0, miss=0.2):
    """Truths and noisy detections (shifted boxes, a few misses, a few false positives)."""
    rng = np.random.default_rng(seed)
    truths, dets = [], []
    for _ in range(n):
        k = int(rng.integers(0, 4))
        xy = rng.uniform(0, 90, (k, 2))
        wh = rng.uniform(15, 40, (k, 2))
        tb = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        tc = rng.integers(0, 3, k)
        truths.append((tb, tc))
        keep = rng.random(k) > miss
        db = tb[keep] + rng.normal(0, noise, (int(keep.sum()), 4))
        dc = np.where(rng.random(int(keep.sum())) < 0.15, (tc[keep] + 1) % 3, tc[keep])
        fp = int(rng.integers(0, 2))
        fxy = rng.uniform(0, 90, (fp, 2))
        fb = np.concatenate([fxy, fxy + rng.uniform(10, 40, (fp, 2))], 1)
        dets.append((np.concatenate([db, fb]).astype(np.float32), rng.random(len(db) + fp),
                     np.concatenate([dc, rng.integers(0, 3, fp)])))  # fmt: skip
    return dets, truths


def test_table_score_is_pycocotools():
    dets, truths = _synthetic()
    t = MapTable(dets, truths, 3)
    ref = mean_average_precision(dets, truths, 3)
    assert t.score() == pytest.approx((ref["map"], ref["map50"]), abs=1e-12)
    assert 0.2 < ref["map50"] < 0.95  # a non-trivial case
    # a box of negative area is ignored by COCO (dtIgnore), here too
    dets[0] = (np.array([[50, 50, 40, 40]], np.float32), np.array([0.99]), np.array([0]))
    ref = mean_average_precision(dets, truths, 3)
    assert MapTable(dets, truths, 3).score() == pytest.approx((ref["map"], ref["map50"]), abs=1e-12)


def test_weights_equal_duplicated_images():
    """Weight 2 on an image = the image twice in the data (what a bootstrap resample is)."""
    dets, truths = _synthetic(seed=1)
    w = np.ones(len(truths))
    w[[0, 3, 7]] = 2
    w[[5, 9]] = 0
    idx = [i for i in range(len(truths)) for _ in range(int(w[i]))]
    ref = mean_average_precision([dets[i] for i in idx], [truths[i] for i in idx], 3)
    assert MapTable(dets, truths, 3).score(w) == pytest.approx((ref["map"], ref["map50"]), abs=1e-9)


def test_intervals_cover_the_point_and_pair_the_images():
    dets, truths = _synthetic(seed=2)
    t = MapTable(dets, truths, 3)
    iv = map_interval(t, count=100)
    assert iv["map50_ci"][0] <= iv["map50"] <= iv["map50_ci"][1]
    same = paired_map_interval(t, t, count=50)
    assert same["diff_map50_ci_pt"] == [0.0, 0.0]
    worse, _ = _synthetic(seed=2, noise=9.0)
    d = paired_map_interval(MapTable(worse, truths, 3), t, count=100)
    assert d["diff_map_pt"] < 0 and d["diff_map_ci_pt"][1] < 0  # looser boxes: distinguishably worse mAP
    with pytest.raises(ValueError, match="same images"):
        paired_map_interval(t, MapTable(dets[:10], truths[:10], 3))


def test_selection_refuses_the_test_split():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.rate_detection import Measured, Setting, select

    dets, truths = _synthetic(seed=3)
    t = MapTable(dets, truths, 3)
    ref = Measured(Setting("float", "float", {}), "validation", np.zeros(len(truths)), t)
    cheap = Measured(Setting("quant", "q", {"bits": 2}), "test", np.full(len(truths), 10.0), t)
    with pytest.raises(ValueError, match="validation split only"):
        select([cheap], ref)
    ok = Measured(Setting("quant", "q", {"bits": 4}), "validation", np.full(len(truths), 20.0), t)
    bad = Measured(Setting("quant", "q", {"bits": 1}), "validation", np.full(len(truths), 5.0),
                   MapTable(_synthetic(seed=3, noise=12.0)[0], truths, 3))  # fmt: skip
    chosen, tried = select([bad, ok], ref)
    assert chosen is ok  # the cheaper one is worse by more than a point
