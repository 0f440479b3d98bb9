import numpy as np
import pytest

from edge_runtime.scenes import CLASS_NAMES, MovingObjectStream, SceneGenerator


def test_scenes_are_deterministic_by_seed_and_index():
    a, b = SceneGenerator(seed=3), SceneGenerator(seed=3)
    for i in (0, 5, 17):
        sa, sb = a.sample(i), b.sample(i)
        assert np.array_equal(sa.image, sb.image) and sa.label == sb.label
        assert np.array_equal(sa.mask, sb.mask)
    assert not np.array_equal(a.sample(0).image, SceneGenerator(seed=4).sample(0).image)


def test_scene_shapes_labels_and_masks():
    gen = SceneGenerator(size=96, num_classes=10, seed=0)
    images, labels, masks = gen.batch(0, 60)
    assert images.shape == (60, 96, 96, 3) and images.dtype == np.uint8
    assert masks.shape == (60, 96, 96) and masks.dtype == bool
    assert set(labels.tolist()) <= set(range(10)) and len(set(labels.tolist())) >= 8
    area = masks.mean(axis=(1, 2))
    assert (area > 0.02).all() and (area < 0.5).all()  # an object is present, not the whole frame


def test_every_class_draws_a_distinct_shape():
    gen = SceneGenerator(seed=0)
    masks = [gen.sample(0, label=k).mask for k in range(len(CLASS_NAMES))]
    # Same pose and position for every class (same random stream), so the masks must differ.
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            assert (masks[i] ^ masks[j]).sum() > 20, (CLASS_NAMES[i], CLASS_NAMES[j])


def test_decoy_patch_encodes_the_label_only_when_asked():
    plain = SceneGenerator(seed=1)
    dec = SceneGenerator(seed=1, decoy="label")
    s0, s1 = plain.sample(2), dec.sample(2)
    assert s0.label == s1.label
    diff = np.abs(s0.image.astype(int) - s1.image.astype(int)).sum(-1) > 0
    assert 0 < diff.sum() < 0.05 * diff.size  # a small patch, nothing else changed
    rnd = SceneGenerator(seed=1, decoy="random")
    assert rnd.sample(2).label == s0.label


@pytest.mark.parametrize("kwargs", [{"size": 8}, {"num_classes": 11}, {"decoy": "yes"}, {"decoy_prob": 2.0}])
def test_bad_generator_arguments_are_named(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SceneGenerator(**kwargs)


def test_stream_moves_and_changes_class_per_segment():
    s = MovingObjectStream(seed=0, segment=10)
    f0, f1, f10 = s.frame(0), s.frame(1), s.frame(10)
    assert f0.label == f1.label
    assert not np.array_equal(f0.mask, f1.mask) or not np.array_equal(f0.image, f1.image)
    centre = [np.argwhere(f.mask).mean(0) for f in (f0, s.frame(5))]
    assert np.linalg.norm(centre[0] - centre[1]) > 1.0  # the object moves
    frames = [next(iter(s)) for _ in range(2)]
    assert np.array_equal(frames[0].image, f0.image)
    assert f10.image.shape == f0.image.shape
