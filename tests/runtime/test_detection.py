"""Detection post-processing at the receiver (NMS, thresholds, frame geometry) and COCO mAP."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.detection import (
    Detection,
    DetectionParams,
    FrameGeometry,
    box_iou,
    mean_average_precision,
    nms,
    params_of,
    parse_frame_size,
    postprocess,
)
from edge_runtime.errors import BundleError


def _logit(p):
    return float(np.log(p / (1 - p)))


def test_box_iou_by_hand():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    assert np.allclose(box_iou(a, b), [[50 / 150, 0.0, 1.0]])


def test_nms_is_per_class_and_best_first():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.6, 0.9, 0.8, 0.3], np.float32)
    classes = np.array([0, 0, 1, 0])
    keep = nms(boxes, scores, classes, 0.5)
    # box 0 overlaps the better box 1 of its class (IoU 0.82): dropped; box 2 is another class
    assert keep.tolist() == [1, 2, 3]
    assert nms(boxes[:0], scores[:0], classes[:0], 0.5).size == 0


def test_postprocess_thresholds_ranks_and_caps():
    p, k = 6, 3
    logits = np.full((p, k), _logit(0.01), np.float32)
    boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), (p, 1))
    boxes[3:] += 40  # cells 3.. see another object
    logits[0, 2], logits[1, 2], logits[3, 0], logits[4, 1] = (
        _logit(0.9),
        _logit(0.7),
        _logit(0.5),
        _logit(0.2),
    )
    dets = postprocess(logits, boxes, DetectionParams(score_threshold=0.3, nms_iou=0.5))
    assert [(d.cls, round(d.score, 3)) for d in dets] == [(2, 0.9), (0, 0.5)]  # 0.7 suppressed, 0.2 below
    assert dets[1].box == (40.0, 40.0, 50.0, 50.0)
    assert len(postprocess(logits, boxes, DetectionParams(0.3, 0.5, max_detections=1))) == 1
    assert postprocess(np.full((p, k), -9.0, np.float32), boxes, DetectionParams()) == []
    with pytest.raises(ValueError, match="expected logits"):
        postprocess(logits, boxes[:2], DetectionParams())


def test_params_of_names_bad_values():
    assert params_of({"detection": {"score_threshold": 0.25, "nms_iou": 0.6}}).nms_iou == 0.6
    with pytest.raises(BundleError, match="'detection' object"):
        params_of({})
    with pytest.raises(BundleError, match="score_threshold"):
        params_of({"detection": {"score_threshold": 1.5}})
    with pytest.raises(BundleError, match="box_format"):
        params_of({"detection": {"box_format": "cxcywh"}})


def test_frame_geometry_undoes_the_letterbox():
    g = FrameGeometry.parse(["192x144", "cam9=128x128"])
    assert g.frame_hw("cam0") == (144, 192) and g.frame_hw("cam9") == (128, 128)
    det = [Detection(3, 0.8, (0.0, 16.0, 64.0, 112.0))]  # input pixels of a 128 x 128 model
    out = g.to_frame(det, "cam0", (128, 128), [f"c{i}" for i in range(10)])
    assert out == [{"class": 3, "score": 0.8, "box": [0.0, 0.0, 96.0, 144.0], "label": "c3"}]
    assert g.to_frame(det, "cam9", (128, 128), None)[0]["box"] == [0.0, 16.0, 64.0, 112.0]
    assert FrameGeometry.from_spec(g.to_spec()).sizes == g.sizes
    assert FrameGeometry().frame_hw("x") is None
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        parse_frame_size("cam0=wide")
    with pytest.raises(ValueError, match="resize mode"):
        FrameGeometry({}, "squash")


# mAP: COCO's reference implementation (pycocotools); these check our conversion to its format
# against values computed by hand.


def _truth(*boxes, cls=0):
    return (np.array(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), cls))


def test_map_perfect_detection_is_one():
    dets = [[Detection(0, 0.9, (0.0, 0.0, 10.0, 10.0))]]
    m = mean_average_precision(dets, [_truth([0, 0, 10, 10])], 2)
    assert m["map"] == pytest.approx(1.0) and m["map50"] == pytest.approx(1.0)


def test_map_false_positive_ranked_first_halves_precision():
    # the better-scored box is wrong: precision 1/2 at recall 1 -> AP = 0.5 at every IoU
    dets = [[Detection(0, 0.9, (50.0, 50.0, 60.0, 60.0)), Detection(0, 0.8, (0.0, 0.0, 10.0, 10.0))]]
    m = mean_average_precision(dets, [_truth([0, 0, 10, 10])], 1)
    assert m["map50"] == pytest.approx(0.5, abs=1e-6) and m["map"] == pytest.approx(0.5, abs=1e-6)


def test_map_loose_box_counts_at_low_iou_thresholds_only():
    # IoU 0.62: a match at 0.50, 0.55, 0.60 of the ten thresholds 0.50 .. 0.95 -> mAP 0.3
    dets = [[Detection(0, 0.9, (0.0, 0.0, 10.0, 6.2))]]
    m = mean_average_precision(dets, [_truth([0, 0, 10, 10])], 1)
    assert m["map50"] == pytest.approx(1.0) and m["map"] == pytest.approx(0.3, abs=1e-6)


def test_map_wrong_class_and_missed_object():
    truths = [_truth([0, 0, 10, 10], cls=0), _truth([0, 0, 10, 10], cls=1)]
    # image 1: right; image 2: the class-1 object is reported as class 0 (a miss and a false positive)
    dets = [[Detection(0, 0.9, (0.0, 0.0, 10.0, 10.0))], [Detection(0, 0.8, (0.0, 0.0, 10.0, 10.0))]]
    m = mean_average_precision(dets, truths, 2, per_class=True)
    # class 0: TP (0.9) then FP (0.8): AP 1.0; class 1: no detection: AP 0 -> mean 0.5
    assert m["map50"] == pytest.approx(0.5, abs=1e-6)
    assert m["ap50_per_class"] == pytest.approx([1.0, 0.0])
    # arrays work too, and an image without objects is allowed
    arrays = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0)), (np.zeros((0, 4)), np.zeros(0), np.zeros(0))]
    assert mean_average_precision(arrays, truths, 2)["map"] == 0.0
    with pytest.raises(ValueError, match="2 detection lists for 1 images"):
        mean_average_precision(dets, truths[:1], 2)
