"""Temporal rate control and the temporal defaults: a per-second budget, a frame coded alone after
a scene cut kept under its ceiling, key frames (frames coded alone) on a cut, auto on / off."""

from __future__ import annotations

import numpy as np

from edge_runtime import datasets
from edge_runtime.config import RateConfig, config_from_dict, temporal_enabled, video_tools
from edge_runtime.pipeline import EdgePipeline
from edge_runtime.ratecontrol import RateController
from edge_runtime.sources import Captured


def test_auto_is_on_for_every_source_and_the_video_tools_only_for_video(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    for kind, uri, video in (("scene", "", True), ("camera", "0", True), ("folder", str(tmp_path), False)):
        cfg = config_from_dict({"source": {"kind": kind, "uri": uri}}, env={})
        assert temporal_enabled(cfg), kind
        assert video_tools(cfg) is video, kind
    on = config_from_dict(
        {"source": {"kind": "folder", "uri": str(tmp_path)}, "codec": {"temporal": "on"}}, env={}
    )
    assert video_tools(on)  # asked for: every tool, stills or not
    assert not temporal_enabled(config_from_dict({"codec": {"coder": "zstd"}}, env={}))
    assert not temporal_enabled(config_from_dict({"codec": {"temporal": "off"}}, env={}))


def test_per_second_budget_ignores_cut_frames_and_tracks_the_mean():
    rc = RateController(RateConfig(target_bytes=100.0), keep=0.3, bits=2, per_second=True)
    rc.update(400, intra=True)  # a cut: the keep ratio stays, the bucket holds the excess
    assert rc.keep == 0.3 and rc.bucket == 300
    keeps = []
    for _ in range(60):
        rc.update(int(400 * rc.keep))  # bytes proportional to the keep ratio
        keeps.append(rc.keep)
    assert keeps[-1] < 0.3
    assert abs(400 * keeps[-1] - 100) < 15  # settles near the per-frame target
    assert abs(rc.bucket) <= 30 * 100  # never more than a second's budget


def test_scene_cut_codes_alone_and_stays_under_the_ceiling(bundle):
    cfg = config_from_dict(
        {"codec": {"temporal": "on"}, "rate": {"target_bytes": 60.0, "cut_max_bytes": 120.0},
         "reduce": {"value": 0.3}},
        env={},
    )  # fmt: skip
    pipe = EdgePipeline(bundle, cfg)
    s = datasets.stream("fashion", "validation", size=128, segment=30)
    outs = []
    for i in range(8):
        outs.append(pipe.process(Captured(s.frame(i).image, i, 0), i))
        pipe.encoder.acknowledge(pipe.stream_id, decoded=i)
    assert any(o.predicted for o in outs[1:])
    # a new scene unlike the stream: vertical stripes. (Random noise and other photographs of the
    # task were still cheaper predicted than alone with the current bundle: no cut to test.)
    cut = np.tile(((np.arange(128) % 16) < 8).astype(np.uint8)[None, :, None] * 255, (128, 1, 3))
    o = pipe.process(Captured(cut, 8, 0), 8)
    assert o.cut  # coded alone was cheaper than predicted at first: a cut (then cut down to the ceiling)
    assert len(o.message) <= 120
