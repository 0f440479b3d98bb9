"""The photographic task: real items over real photographs, split by item and by background."""

import numpy as np
import pytest

from edge_runtime import datasets, photos
from edge_runtime.framing import fit


def test_fashion_items_keep_fashion_mnists_own_split():
    tr, trl = photos.fashion_items("train")
    va, val = photos.fashion_items("validation")
    te, tel = photos.fashion_items("test")
    assert (len(tr), len(va), len(te)) == (55000, 5000, 10000)
    assert tr.shape[1:] == (28, 28) and set(np.unique(tel)) == set(range(10))
    # the shipped demo items are test items, byte for byte
    demo, demo_labels = photos.fashion_items("demo")
    with np.load(photos.ASSETS / "fashion_demo.npz") as z:
        idx = z["t10k_index"]
    np.testing.assert_array_equal(demo, te[idx])
    np.testing.assert_array_equal(demo_labels, tel[idx])


def test_backgrounds_are_split_by_photograph_and_region():
    train, val, unseen = (
        photos.backgrounds("train"),
        photos.backgrounds("validation"),
        photos.backgrounds("unseen"),
    )
    assert len(train) == len(val) == len(photos.SEEN) and len(unseen) == len(photos.UNSEEN)
    assert not set(photos.SEEN) & set(photos.UNSEEN)
    for a, b in zip(train, val, strict=True):  # left 60% / right 40% of one photograph
        assert a.shape[0] == b.shape[0] and abs(a.shape[1] / (a.shape[1] + b.shape[1]) - 0.6) < 0.01


def test_textures_are_training_only():
    assert not set(photos.TEXTURES) & (set(photos.SEEN) | set(photos.UNSEEN))
    assert len(photos.backgrounds("textures")) == len(photos.TEXTURES)
    assert datasets.generator("fashion", "train").texture_mix == datasets.TEXTURE_MIX
    gen = photos.PhotoScenes("fashion", "train", "train", size=64, seed=1, texture_mix=1.0)
    assert gen.textures and gen.sample(0).image.shape == (64, 64, 3)
    for split in ("validation", "test"):
        for variant in datasets.VARIANTS:
            if variant == "unseen_backgrounds" and split != "test":
                continue
            assert datasets.generator("fashion", split, variant=variant).texture_mix == 0


@pytest.mark.parametrize("variant", datasets.VARIANTS)
def test_variants_give_labelled_frames_with_masks(variant):
    f = datasets.load("fashion", "test", 12, variant=variant)
    assert f.images.shape == (12, 128, 128, 3) and f.images.dtype == np.uint8
    assert f.masks.shape == (12, 128, 128) and f.classes == photos.FASHION_NAMES
    assert 0.02 < f.masks.mean() < 0.6  # the item covers part of the frame
    again = datasets.load("fashion", "test", 12, variant=variant)
    np.testing.assert_array_equal(f.images, again.images)


def test_unseen_backgrounds_are_a_test_set_only():
    with pytest.raises(ValueError, match="test set only"):
        datasets.load("fashion", "train", 1, variant="unseen_backgrounds")


def test_splits_differ_and_shapes_task_uses_photographs():
    a = datasets.load("fashion", "validation", 4)
    b = datasets.load("fashion", "test", 4)
    assert not np.array_equal(a.images, b.images)
    s = datasets.load("shapes", "test", 4)
    assert s.classes[0] == "circle" and s.images.std() > 20


def test_missing_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(photos, "FASHION_DIR", tmp_path)
    photos.fashion_items.cache_clear()
    try:
        with pytest.raises(photos.DataMissingError, match="apt-get install dataset-fashion-mnist"):
            photos.fashion_items("train")
    finally:
        photos.fashion_items.cache_clear()


def test_stream_is_made_of_shipped_assets_and_moves():
    s = datasets.stream("fashion", "test")
    f0, f5 = s.frame(0), s.frame(5)
    assert f0.label == f5.label and 0 <= f0.label < 10
    assert not np.array_equal(f0.mask, f5.mask)  # the item moves
    assert s.frame(0).image.tobytes() == datasets.stream("fashion", "test").frame(0).image.tobytes()


@pytest.mark.parametrize("mode", ["letterbox", "crop", "stretch"])
def test_fit_modes(mode):
    img = np.zeros((96, 128, 3), np.uint8)
    img[:, 60:68] = 255  # a vertical bar in the centre
    mask = img[..., 0] > 0
    out, m = fit(img, 64, mode, mask=mask)
    assert out.shape == (64, 64, 3) and m.shape == (64, 64)
    if mode == "letterbox":  # padded top and bottom, the bar keeps its aspect
        assert (out[:8] == 128).all() and (out[-8:] == 128).all()
        assert 3 <= m[32].sum() <= 5
    elif mode == "crop":  # no padding, the centre kept at the short side's scale
        assert not (out == 128).all(axis=2).any() and 4 <= m[32].sum() <= 7
    else:
        assert 3 <= m[32].sum() <= 5 and m[:, 30:34].all()
    with pytest.raises(ValueError, match="resize mode must be one of"):
        fit(img, 64, "squash")


def test_train_stream_never_shows_test_items():
    train = datasets.stream("fashion", "train")
    shipped, _ = photos.fashion_items("demo")
    assert train.items.shape[0] == 55000  # Fashion-MNIST training items, not the shipped test items
    assert not any(
        np.array_equal(train.frame(t * 60).image, datasets.stream("fashion", "test").frame(t * 60).image)
        for t in range(3)
    )
    assert len(shipped) == 400
