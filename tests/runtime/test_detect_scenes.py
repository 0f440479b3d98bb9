"""Scenes with boxes (edge_runtime.detect_scenes via edge_runtime.datasets) and the box geometry."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime import datasets
from edge_runtime.detect_scenes import DetectionStream, box_of
from edge_runtime.framing import fit, fit_boxes, fit_geometry, unfit_boxes
from edge_runtime.photos import FASHION_DIR

needs_fashion = pytest.mark.skipif(
    not FASHION_DIR.exists(), reason="needs Debian's dataset-fashion-mnist (deploy/system-packages.sh)"
)


def test_box_of_is_tight_with_exclusive_ends():
    m = np.zeros((10, 12), bool)
    assert box_of(m) is None
    m[3, 4] = True
    assert box_of(m).tolist() == [4, 3, 5, 4]
    m[7, 9] = True
    assert box_of(m).tolist() == [4, 3, 10, 8]


@pytest.mark.parametrize("mode", ["letterbox", "crop", "stretch"])
def test_fit_boxes_follow_fit_and_unfit_inverts(mode):
    """A box drawn on a 4:3 frame lands where fit() puts the drawn pixels, and unfit undoes it."""
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[30:70, 50:110] = 255  # a white box x 50..110, y 30..70
    out = fit(frame, 64, mode)
    got = box_of(out[..., 0] > 200)  # the letterbox pads with grey 128
    want = fit_boxes(np.array([[50, 30, 110, 70]], np.float32), (120, 160), 64, mode)[0]
    assert np.abs(got - want).max() <= 1.0, (mode, got, want)
    back = unfit_boxes(want[None], (120, 160), 64, mode)[0]
    assert np.allclose(back, [50, 30, 110, 70], atol=1e-3)


def test_fit_geometry_of_a_letterbox():
    sx, sy, ox, oy = fit_geometry((144, 192), 128, "letterbox")
    assert (sx, sy) == (128 / 192, 96 / 144) and (ox, oy) == (0.0, 16.0)
    # a box on the grey bar is cut to the picture when mapped back
    assert unfit_boxes(np.array([[0, 0, 128, 10]], np.float32), (144, 192), 128)[0].tolist() == [0, 0, 192, 0]
    with pytest.raises(ValueError, match="resize mode"):
        fit_geometry((10, 10), 8, "squash")


@pytest.mark.slow  # decodes the background photographs (~20 s on a shared core)
@needs_fashion
def test_detection_frames_have_boxes_on_their_objects():
    f = datasets.load_boxes("fashion-detect", "validation", 40)
    assert f.images.shape == (40, 128, 128, 3) and len(f.boxes) == len(f.labels) == 40
    counts = [len(b) for b in f.boxes]
    assert min(counts) == 0 and max(counts) >= 3  # empty frames and frames with several objects
    for b, lab in zip(f.boxes, f.labels, strict=True):
        assert b.dtype == np.float32 and b.shape == (len(lab), 4)
        assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
        assert b.min(initial=0) >= 0 and b.max(initial=0) <= 128
        assert np.all((lab >= 0) & (lab < 10))
    # deterministic by split seed and index, and the splits differ
    again = datasets.load_boxes("fashion-detect", "validation", 3, start=2)
    assert np.array_equal(again.images[0], f.images[2]) and np.array_equal(again.boxes[1], f.boxes[3])
    test = datasets.load_boxes("fashion-detect", "test", 3, start=2)
    assert not np.array_equal(test.images[0], f.images[2])


def test_later_objects_hide_earlier_ones_and_boxes_are_visible_parts():
    from edge_runtime.detect_scenes import _compose

    sprite = np.zeros((28, 28), np.uint8)
    sprite[4:24, 4:24] = 255  # a 20 x 20 square item
    img = np.zeros((64, 64, 3), np.uint8)
    tint = np.ones(3, np.float32)
    placed = [(sprite, 1, (20.0, 20.0), 28.0, 0.0, tint), (sprite, 2, (34.0, 20.0), 28.0, 0.0, tint)]
    masks, labels, areas = _compose(img, placed)
    assert labels == [1, 2]
    assert not np.any(masks[0] & masks[1])  # the second covers part of the first
    assert masks[0].sum() < areas[0] and masks[1].sum() == areas[1]
    b0, b1 = box_of(masks[0]), box_of(masks[1])
    assert b0[2] <= b1[0] + 1  # the first's visible box ends where the second begins
    assert np.all(img[masks[1]] > 0) and np.all(img[~(masks[0] | masks[1])].max(axis=-1) < 200)


def test_unknown_detection_task_and_split_are_named():
    with pytest.raises(ValueError, match="unknown detection task 'cars'"):
        datasets.load_boxes("cars", "test", 1)
    with pytest.raises(ValueError, match="unknown split"):
        datasets.load_boxes("fashion-detect", "dev", 1)
    with pytest.raises(ValueError, match="test set only"):
        datasets.detection_generator("fashion-detect", "train", variant="unseen_backgrounds")


def test_stream_from_the_shipped_assets_has_tracks_that_move():
    s = datasets.detection_stream("fashion-detect", "test")  # shipped assets only: no apt
    assert s.frame_hw == (144, 192)
    frames = [s.frame(t) for t in range(0, 40, 4)]
    assert all(f.image.shape == (144, 192, 3) for f in frames)
    assert max(len(f.boxes) for f in frames) >= 1
    for f in frames:
        assert np.all(f.boxes[:, 2] <= 192) and np.all(f.boxes[:, 3] <= 144)
    # objects move from frame to frame within a segment
    a, b = s.frame(0), s.frame(10)
    if len(a.boxes) and len(b.boxes):
        assert not np.allclose(a.boxes[0], b.boxes[0])
    # the validation stream uses the other half of the shipped items
    v = datasets.detection_stream("fashion-detect", "validation")
    assert not np.array_equal(v.frame(0).image, s.frame(0).image)
    with pytest.raises(ValueError, match="segment"):
        DetectionStream(segment=0)


def test_stream_has_several_tracks_over_a_segment():
    s = DetectionStream((144, 192), seed=1, segment=30, max_tracks=3)
    n = [len(s.frame(t).boxes) for t in range(0, 300, 3)]
    assert max(n) >= 2
