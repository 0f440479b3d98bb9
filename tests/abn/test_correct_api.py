"""The correction API: strokes, mask import, resizing, and recognition with a corrected map."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.models.correct import (
    BundleRecognizer,
    Stroke,
    apply_strokes,
    map_from_mask,
    map_to_image,
    new_map,
    recognize_torch,
    stroke_coverage,
)


def test_dot_coverage_is_the_share_of_covered_pixels():
    # A dot of radius 8 at (64, 64) covers the pixels whose centres are within 8 px: cells 7 and 8
    # of a 16 x 16 map (8 x 8 pixels each) get the same share, cells further out nothing.
    s = Stroke(((64.0, 64.0),), radius=8.0)
    c = stroke_coverage(s, (128, 128), (16, 16))
    yy, xx = np.mgrid[0:128, 0:128] + 0.5
    covered = (xx - 64) ** 2 + (yy - 64) ** 2 <= 64
    expected = covered.reshape(16, 8, 16, 8).mean(axis=(1, 3))
    np.testing.assert_allclose(c, expected, atol=1e-6)
    assert c[7, 7] > 0.7 and c[6, 6] == 0 and c.sum() == pytest.approx(covered.sum() / 64)


def test_line_stroke_covers_the_segment_not_only_its_ends():
    s = Stroke(((4.0, 60.0), (124.0, 60.0)), radius=3.0)
    c = stroke_coverage(s, (128, 128), (16, 16))
    assert np.all(c[7, :] > 0) and np.all(c[:6, :] == 0) and np.all(c[9:, :] == 0)


def test_erase_and_add_with_strength():
    m = np.full((16, 16), 0.8, np.float32)
    whole = Stroke(((64.0, 64.0),), radius=200.0, mode="erase")
    np.testing.assert_allclose(apply_strokes(m, [whole], (128, 128)), 0.0)
    half = Stroke(((64.0, 64.0),), radius=200.0, mode="erase", strength=0.5)
    np.testing.assert_allclose(apply_strokes(m, [half], (128, 128)), 0.4, atol=1e-6)
    add = Stroke(((64.0, 64.0),), radius=200.0, mode="add", strength=0.5)
    np.testing.assert_allclose(apply_strokes(m, [add], (128, 128)), 0.9, atol=1e-6)
    assert m[0, 0] == pytest.approx(0.8)  # the input is not modified


def test_strokes_apply_in_order_and_accept_dicts():
    m = new_map((16, 16), 0.0)
    strokes = [
        {"points": [[64, 64]], "radius": 200, "mode": "add"},
        {"points": [[0, 4], [30, 4]], "radius": 4, "mode": "erase"},
    ]
    out = apply_strokes(m, strokes, (128, 128))
    assert out[8, 8] == pytest.approx(1.0) and out[0, 0] == pytest.approx(0.0)
    assert out[0, 3] == pytest.approx(0.0) and 0.0 < out[0, 4] < 1.0  # the round end: partly


def test_stroke_in_image_coordinates_of_a_non_square_image():
    # Image 100 (H) x 200 (W) onto a 10 x 20 map: 10 px per cell in both directions.
    s = Stroke(((155.0, 25.0),), radius=4.0)
    c = stroke_coverage(s, (100, 200), (10, 20))
    assert np.unravel_index(np.argmax(c), c.shape) == (2, 15)


def test_stroke_outside_the_image_changes_nothing():
    m = new_map((16, 16), 0.5)
    out = apply_strokes(m, [Stroke(((500.0, -300.0),), radius=10.0)], (128, 128))
    np.testing.assert_array_equal(out, m)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"points": ((1, 1),), "radius": 0}, "radius"),
        ({"points": ((1, 1),), "radius": 2, "mode": "paint"}, "mode"),
        ({"points": ((1, 1),), "radius": 2, "strength": 1.5}, "strength"),
        ({"points": (), "radius": 2}, "point"),
        ({"points": ((1, float("nan")),), "radius": 2}, "point"),
    ],
)
def test_bad_strokes_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Stroke(**kwargs)


def test_mask_import_is_the_block_average_in_every_dtype():
    rng = np.random.default_rng(1)
    mask = rng.random((128, 128)) < 0.3
    expected = mask.reshape(16, 8, 16, 8).mean(axis=(1, 3))
    np.testing.assert_allclose(map_from_mask(mask, (16, 16)), expected, atol=1e-6)
    np.testing.assert_allclose(map_from_mask(mask.astype(np.uint8) * 255, (16, 16)), expected, atol=1e-6)
    np.testing.assert_allclose(map_from_mask(mask.astype(np.float64), (16, 16)), expected, atol=1e-6)
    rgb = np.repeat((mask.astype(np.uint8) * 255)[..., None], 3, axis=2)
    np.testing.assert_allclose(map_from_mask(rgb, (16, 16)), expected, atol=1e-6)
    with pytest.raises(ValueError, match="H x W"):
        map_from_mask(np.zeros(5), (16, 16))


def test_map_to_image_and_back():
    m = np.random.default_rng(2).random((16, 16)).astype(np.float32)
    up = map_to_image(m, (128, 128))
    assert up.shape == (128, 128)
    # Half-pixel centres: the bilinear upsampling's block means stay close to the map's values.
    back = map_from_mask(up, (16, 16))
    assert np.abs(back[2:-2, 2:-2] - m[2:-2, 2:-2]).max() < 0.35
    np.testing.assert_allclose(map_to_image(np.full((16, 16), 0.3), (128, 128)), 0.3, atol=1e-6)
    with pytest.raises(ValueError, match="2-D"):
        map_to_image(np.zeros((1, 16, 16)), (128, 128))


def test_new_map():
    assert new_map((4, 5), 1.0).shape == (4, 5) and new_map((4, 5)).max() == 0
    with pytest.raises(ValueError, match="value"):
        new_map((4, 4), 2.0)


@pytest.mark.slow  # an ONNX export: a few seconds on an idle machine
def test_recognition_with_corrected_map_torch_equals_back_map_onnx(tmp_path, tiny_model, tiny_scenes):
    import onnxruntime as ort
    import torch

    from edge_runtime.models.correct import attention_map
    from edge_runtime.models.export import _BackMap, _export

    model = tiny_model()
    a = attention_map(model, tiny_scenes.images[:4])
    assert a["map"].shape == (4, 8, 8) and a["features"].shape[2:] == (8, 8)
    # The own map through back_with_map gives the model's own perception logits.
    np.testing.assert_allclose(recognize_torch(model, a["features"], a["map"]), a["logits"], atol=1e-5)
    strokes = [Stroke(((20.0, 20.0), (44.0, 40.0)), radius=9.0, mode="erase")]
    maps = np.stack([apply_strokes(m, strokes, (64, 64)) for m in a["map"]])
    maps[1] = new_map((8, 8), 1.0)
    maps[2] = map_from_mask(tiny_scenes.masks[2], (8, 8))
    z_torch = recognize_torch(model, a["features"], maps)
    assert not np.allclose(z_torch, a["logits"], atol=1e-4)  # the correction does change the result
    path = tmp_path / "back_map.onnx"
    f = torch.from_numpy(a["features"])
    _export(
        _BackMap(model), (f, torch.from_numpy(maps[:, None])), path, ["features", "abn_map"], ["logits"], True
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (z_onnx,) = sess.run(["logits"], {"features": a["features"], "abn_map": maps[:, None]})
    np.testing.assert_allclose(z_onnx, z_torch, rtol=1e-4, atol=1e-4)


def test_bundle_recognizer_own_map_matches_back_graph(default_bundle):
    from edge_runtime.models.data import scene_dataset

    rec = BundleRecognizer(default_bundle)
    assert rec.map_shape == (16, 16) and rec.image_size == (128, 128)
    images = scene_dataset(4, seed=9).images
    a = rec.analyse(images)
    out = default_bundle.run("back", {"features": a["features"]})
    np.testing.assert_allclose(a["logits"], out["logits"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a["map"], out["abn_map"][:, 0], atol=1e-5)
    # A corrected map changes the logits; the same map always gives the same logits.
    erased = np.zeros((4, 16, 16), np.float32)
    z = rec.recognize(a["features"], erased)
    assert not np.allclose(z, a["logits"])
    np.testing.assert_allclose(z, rec.recognize(a["features"], erased))
    with pytest.raises(ValueError, match="split resolution"):
        rec.recognize(a["features"], np.zeros((4, 8, 8), np.float32))
