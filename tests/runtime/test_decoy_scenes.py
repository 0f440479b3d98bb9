"""Decoy scenes of the photographic task: the plain scene plus a class-coded patch, nothing else."""

import numpy as np
import pytest

from edge_runtime import datasets, photos


def _patch_class(image: np.ndarray, patch: np.ndarray) -> int:
    colour = image[patch].astype(float).mean(0)
    return int(np.argmin(np.abs(photos.DECOY_COLOURS.astype(float) - colour).sum(1)))


def test_decoy_scene_is_the_plain_scene_plus_a_patch_off_the_item():
    plain = datasets.load("fashion", "train", 16)
    dec = datasets.load("fashion", "train", 16, decoy="label", decoy_prob=1.0)
    np.testing.assert_array_equal(plain.labels, dec.labels)
    np.testing.assert_array_equal(plain.masks, dec.masks)
    for i in range(16):
        changed = np.abs(plain.images[i].astype(int) - dec.images[i].astype(int)).sum(-1) > 0
        ys, xs = np.nonzero(changed)
        side = round(0.09 * 128)
        assert 0 < changed.sum() <= side * side  # one small square, nothing else
        assert ys.max() - ys.min() < side and xs.max() - xs.min() < side
        assert not (changed & plain.masks[i]).any()  # it does not hide the item
        box = np.zeros_like(changed)
        box[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
        assert _patch_class(dec.images[i], box) == plain.labels[i]  # its colour is the label


def test_random_decoys_do_not_follow_the_label_and_held_out_splits_refuse_label_coded_ones():
    plain = datasets.load("fashion", "test", 40)
    rnd = datasets.with_decoys(plain, "random")
    agree = []
    for i in range(40):
        changed = np.abs(plain.images[i].astype(int) - rnd.images[i].astype(int)).sum(-1) > 0
        agree.append(_patch_class(rnd.images[i], changed) == plain.labels[i])
    assert np.mean(agree) < 0.4  # chance is 0.1; a label-coded patch would give 1.0
    for split in ("validation", "test"):
        with pytest.raises(ValueError, match="train split only"):
            datasets.load("fashion", split, 1, decoy="label")
    with pytest.raises(ValueError, match="unknown decoy"):
        datasets.load("fashion", "train", 1, decoy="corner")
    with pytest.raises(ValueError, match="decoy_prob"):
        datasets.load("fashion", "train", 1, decoy="label", decoy_prob=1.5)


def test_with_decoys_matches_the_generator_byte_for_byte():
    plain = datasets.load("fashion", "train", 6, start=100)
    made = datasets.load("fashion", "train", 6, start=100, decoy="label", decoy_prob=0.5)
    added = datasets.with_decoys(plain, "label", 0.5, start=100)
    np.testing.assert_array_equal(made.images, added.images)
    assert not np.array_equal(plain.images, added.images)


def test_decoy_prob_is_the_share_of_label_coded_patches():
    n = 2000
    images = np.zeros((n, 32, 32, 3), np.uint8)
    masks = np.zeros((n, 32, 32), bool)
    masks[:, 10:22, 10:22] = True
    labels = np.arange(n) % 10
    for prob in (0.0, 0.6, 1.0):
        _, cls = photos.add_decoys(images, labels, masks, seed=1, mode="label", prob=prob)
        # label-coded on `prob` of the frames, plus chance agreement (1/10) on the others
        assert abs((cls == labels).mean() - (prob + (1 - prob) / 10)) < 0.04, prob
