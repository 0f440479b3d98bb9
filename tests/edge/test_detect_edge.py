"""The edge with a detection bundle: which frames are empty, and what each provider needs."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.bundle import DETECT_BUNDLE, load_bundle
from edge_runtime.config import config_from_dict
from edge_runtime.errors import ConfigError
from edge_runtime.importance import make_provider
from edge_runtime.pipeline import EdgePipeline
from edge_runtime.sources import Captured, DetectionSceneSource


@pytest.fixture(scope="module")
def bundle():
    return load_bundle(DETECT_BUNDLE, threads=1)


@pytest.fixture(scope="module")
def busy_frame():
    src = DetectionSceneSource(seed=11)  # three tracks from the first frame on
    return src.read()


def _pipe(bundle, provider, **extra):
    cfg = config_from_dict(
        {
            "importance": {"provider": provider, **extra},
            "codec": {"temporal": "off"},
            "runtime": {"stream_id": "cam0"},
        },
        env={},
    )
    return EdgePipeline(bundle, cfg)


@pytest.mark.parametrize("provider", ["fused", "grad_plain", "grad_guided", "grad_selective", "grad_extsel"])
def test_nothing_detected_sends_the_empty_message(bundle, busy_frame, provider):
    pipe = _pipe(bundle, provider)
    blank = Captured(np.full((144, 192, 3), 128, np.uint8), 0, 0)
    out = pipe.process(blank, 0)
    assert out.empty and out.kept == 0.0 and len(out.message) == 37 + len("cam0")  # docs/wire.md
    busy = pipe.process(busy_frame, 1)
    assert not busy.empty and busy.kept > 0 and len(busy.message) > len(out.message)


def test_reuse_carries_the_key_frames_empty_flag(bundle, busy_frame):
    pipe = _pipe(bundle, "fused", reuse_interval=3, adaptive=False)
    blank = Captured(np.full((144, 192, 3), 128, np.uint8), 0, 0)
    assert pipe.process(blank, 0).empty
    out = pipe.process(busy_frame, 1)  # reused from the empty key frame: still empty
    assert out.reused and out.empty
    assert pipe.process(busy_frame, 2).reused  # the third frame of the interval
    fresh = pipe.process(busy_frame, 3)
    assert not fresh.reused and not fresh.empty  # a fresh map: the objects are found


def test_a_class_target_is_refused_for_detection(bundle):
    cfg = config_from_dict({"importance": {"provider": "grad_selective", "target": 2}}, env={})
    with pytest.raises(ConfigError, match="list of reference boxes"):
        make_provider(bundle, cfg.importance)


def test_detect_bundle_yields_no_logits_from_back_and_classify_no_boxes(bundle):
    from edge_runtime.bundle import load_bundle as lb
    from edge_runtime.errors import BundleError

    with pytest.raises(BundleError, match="yields no boxes"):
        lb().detect(np.zeros((1, 8, 16, 16), np.float32))
    logits, boxes = bundle.detect(np.zeros((2, *bundle.split_shape), np.float32))
    assert logits.shape == (2, 1024, 10) and boxes.shape == (2, 1024, 4)
