from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.config import ImportanceConfig, ReduceConfig
from edge_runtime.errors import BundleError, ConfigError
from edge_runtime.importance import PROVIDERS, MotionEstimator, TemporalReuse, make_provider, resolve_provider
from edge_runtime.photos import PhotoStream
from edge_runtime.reduce import Reducer


def _inputs(bundle, t=0):
    img = PhotoStream(seed=1).frame(t)
    x = bundle.preprocess(img.image)
    cache = {}

    def front():
        cache.setdefault("o", bundle.front(x))
        return cache["o"]

    return img, x, front, cache


@pytest.mark.parametrize(
    "name", ["grad_plain", "grad_guided", "grad_selective", "grad_extsel", "fused", "abn"]
)
def test_each_provider_gives_a_map_that_points_at_the_object(bundle, name):
    import cv2

    on = off = 0.0
    for t in range(0, 600, 60):  # one frame of each of ten segments (ten items, ten backgrounds)
        scene, x, front, cache = _inputs(bundle, t)
        p = make_provider(bundle, ImportanceConfig(provider=name))
        m = p.compute_frame(scene.image, x, front).map
        assert m.dtype == np.float32 and m.ndim == 2 and np.isfinite(m).all()
        assert tuple(m.shape) == tuple(bundle.importance[name]["shape"])  # from the bundle, not hard-coded
        assert ("o" in cache) == p.uses_front  # gradient providers need no front pass
        mask = cv2.resize(scene.mask.astype(np.float32), m.shape[::-1], interpolation=cv2.INTER_AREA) > 0.5
        m = m / (m.max() + 1e-12)
        on, off = on + m[mask].mean(), off + m[~mask].mean()
    # more importance on the object than off it, averaged over the frames
    assert on > off


def test_auto_provider_is_abn_where_the_bundle_has_an_attention_branch_else_fused(bundle, tmp_path):
    import json
    import shutil

    from edge_runtime.bundle import DETECT_BUNDLE, load_bundle, write_manifest

    assert ImportanceConfig().provider == "auto"  # the shipped default
    assert resolve_provider(bundle, "auto") == "abn"
    assert make_provider(bundle, ImportanceConfig()).name == "abn"
    assert resolve_provider(bundle, "fused") == "fused"  # a named provider is itself
    detector = load_bundle(DETECT_BUNDLE)
    assert not detector.has_graph("attention")
    assert resolve_provider(detector, "auto") == "fused"
    # a bundle that offers only gradient graphs: auto cannot choose, and says what the bundle has
    only_grad = tmp_path / "b"
    shutil.copytree(DETECT_BUNDLE, only_grad)
    manifest = json.loads((only_grad / "manifest.json").read_text())
    manifest["importance"].pop("fused")
    write_manifest(only_grad, manifest)
    with pytest.raises(BundleError, match="grad_extsel"):
        resolve_provider(load_bundle(only_grad), "auto")


def test_gradient_target_and_none(bundle):
    scene, x, front, _ = _inputs(bundle)
    own = make_provider(bundle, ImportanceConfig(provider="grad_selective")).compute(x, front).map
    tgt = make_provider(bundle, ImportanceConfig(provider="grad_selective", target=(scene.label + 1) % 10))
    assert tgt.reference.sum() == 1.0
    assert not np.allclose(own, tgt.compute(x, front).map)
    assert make_provider(bundle, ImportanceConfig(provider="none")).compute(x, front).map is None
    with pytest.raises(ConfigError, match="importance.target"):
        make_provider(bundle, ImportanceConfig(provider="grad_plain", target=99))
    assert set(PROVIDERS) == {
        "grad_plain",
        "grad_guided",
        "grad_selective",
        "grad_extsel",
        "fused",
        "abn",
        "none",
    }


@pytest.mark.parametrize("motion", ["dis", "farneback", "phase"])
def test_reuse_follows_a_shift(motion):
    est = MotionEstimator(motion, 32)
    rng = np.random.default_rng(0)
    base = (rng.random((40, 40, 3)) * 255).astype(np.uint8)
    import cv2

    base = cv2.GaussianBlur(cv2.resize(base, (160, 160)), (9, 9), 3)
    key, cur = base[16:144, 16:144], base[8:136, 16:144]  # content moves 8 px down in cur
    flow = est.flow(est.small(np.ascontiguousarray(cur)), est.small(np.ascontiguousarray(key)))
    dy = float(np.median(flow[..., 1])) * 128 / 32
    assert dy == pytest.approx(-8, abs=2.5)


def test_temporal_reuse_computes_every_n_frames(bundle):
    inner = make_provider(bundle, ImportanceConfig(provider="grad_plain"))
    reuse = TemporalReuse(inner, interval=4, adaptive=False, input_size=128)
    s = PhotoStream(seed=2)
    flags = []
    for t in range(8):
        img = s.frame(t).image
        r = reuse.compute_frame(img, bundle.preprocess(img), lambda: {})
        flags.append(r.reused)
        assert r.map.shape == (128, 128)
    assert flags == [False, True, True, True, False, True, True, True]
    # adaptive: a scene cut (new segment) forces a fresh map at once
    ad = TemporalReuse(inner, interval=50, adaptive=True, motion_limit_px=4.0, input_size=128)
    a, b = s.frame(0).image, s.frame(200).image
    ad.compute_frame(a, bundle.preprocess(a), lambda: {})
    r = ad.compute_frame(b, bundle.preprocess(b), lambda: {})
    assert not r.reused or r.motion_px <= 4.0


def _map():
    yy, xx = np.mgrid[0:16, 0:16]
    return np.exp(-((yy - 5.0) ** 2 + (xx - 9.0) ** 2) / 8).astype(np.float32)


@pytest.mark.parametrize(
    "threshold, value, expect",
    [("keep_ratio", 0.25, (64, 64)), ("percentile", 75.0, (56, 64)), ("value", 0.5, None)],
)
def test_thresholds(threshold, value, expect):
    r = Reducer(ReduceConfig(threshold=threshold, value=value), image_hw=(128, 128), feature_hw=(16, 16))
    keep = r.keep_mask(_map())
    assert keep.shape == (16, 16) and keep.dtype == bool
    if expect is not None:
        assert expect[0] <= int(keep.sum()) <= expect[1]  # percentile: ties at the cut are dropped
    else:
        assert np.array_equal(keep, _map() / _map().max() > 0.5)
    assert keep[5, 9] and not keep[15, 0]


def test_value_threshold_without_normalising_can_keep_nothing():
    r = Reducer(
        ReduceConfig(threshold="value", value=2.0, normalize=False), image_hw=(8, 8), feature_hw=(16, 16)
    )
    assert not r.keep_mask(_map()).any()
    assert r.keep_mask(None) is None


@pytest.mark.parametrize("mode", ["zero", "blur", "colour", "grey"])
def test_image_reducers_change_only_the_dropped_pixels(mode):
    rng = np.random.default_rng(0)
    img = (rng.random((128, 128, 3)) * 255).astype(np.uint8)
    r = Reducer(ReduceConfig(domain="image", mode=mode, value=0.25), image_hw=(128, 128), feature_hw=(16, 16))
    keep = r.keep_mask(_map())
    assert keep.shape == (128, 128)
    out = r.reduce_image(img, keep)
    assert np.array_equal(out[keep], img[keep])
    assert not np.array_equal(out[~keep], img[~keep])
    if mode == "zero":
        assert not out[~keep].any()


@pytest.mark.parametrize("mode", ["zero", "blur"])
def test_feature_reducers(mode):
    rng = np.random.default_rng(1)
    feat = rng.random((8, 16, 16), dtype=np.float32)
    r = Reducer(
        ReduceConfig(domain="feature", mode=mode, value=0.3), image_hw=(128, 128), feature_hw=(16, 16)
    )
    keep = r.keep_mask(_map())
    out = r.reduce_features(feat, keep)
    assert r.masks_wire == (mode == "zero")
    if mode == "zero":
        assert out is feat  # zeroing happens in the masked quantizer, the values are never sent
    else:
        assert np.array_equal(out[:, keep], feat[:, keep])
        assert out[:, ~keep].std() < feat[:, ~keep].std()
