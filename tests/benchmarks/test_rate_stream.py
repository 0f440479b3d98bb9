"""The stream benchmark's parts: ffmpeg round trip and packet sizes, segments, selection on validation."""

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import rate_select  # noqa: E402
from benchmarks import rate_stream as rs  # noqa: E402
from edge_runtime import datasets  # noqa: E402

TASK = datasets.DEFAULT_TASK  # the task the default bundle was trained on

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason="needs ffmpeg (deploy/system-packages.sh)"
)


@pytest.fixture(scope="module")
def stream():
    return rs.Stream(TASK, "validation", 2 * rs.SEGMENT, 128)


@pytest.mark.parametrize("codec", sorted(rs.VIDEO))
def test_video_round_trip_has_one_packet_per_frame_and_rate_follows_crf(stream, codec):
    hi = rs.video_roundtrip(stream.images, codec, 20)
    lo = rs.video_roundtrip(stream.images, codec, 46)
    assert hi["decoded"].shape == stream.images.shape and len(hi["bytes"]) == len(stream.images)
    assert lo["bytes"].sum() < hi["bytes"].sum()
    err = np.abs(hi["decoded"].astype(int) - stream.images.astype(int)).mean()
    assert err < 12  # a good CRF decodes close to the frames
    assert hi["bytes"][0] > np.median(hi["bytes"])  # the key frame (and parameter sets) cost most


def test_segments_average_and_selection_uses_validation(default_bundle, stream):
    b = default_bundle
    test = rs.Stream(TASK, "test", rs.SEGMENT, 128)
    assert not np.array_equal(test.images[0], stream.images[0])
    edge = rs.edge_settings((0.3,), (4,))
    res = rs.evaluate(b, stream, test, edge, {"h264": (30,)}, {})
    for mode, m in res["selected"].items():
        if m is not None:
            assert m.split == "validation" and res["test"][mode].split == "test"
    seg = res["validation_by_segment"][0]
    frames = res["validation"][0]
    assert len(seg.correct) == 2 and seg.mean_bytes == pytest.approx(frames.mean_bytes)
    s = rs.summarize(b, res)
    assert s["selected_on"] == "validation" and 0 <= s["float_accuracy"] <= 1
    assert "best_bytes_vs_fair_h264_at_iso_accuracy" in s and "temporal_vs_intra_bytes" in s
    with pytest.raises(ValueError, match="validation"):
        rate_select.select(list(res["test"].values()), res["reference_test"])


def test_decode_share_only_updates_the_stream_file_and_keeps_the_old_figures(default_bundle, tmp_path):
    b = default_bundle
    path = tmp_path / "stream.json"
    doc = {
        "summary": {
            "decode_share_of_back": 9.0,
            "temporal_setting_measured": {"setting": {"keep": 0.3, "bits": 3, "skip": 2}},
            "per_mode": {"edge_intra": {"selected_on_validation": {"setting": {"keep": 0.3, "bits": 4}}}},
        },
        "parameters": {
            "bundle": str(b.path),
            "model_id": b.model_id,
            "task": TASK,
            "test": {"frames": rs.SEGMENT},
        },
    }
    path.write_text(rs.json.dumps(doc))
    assert rs.main(["--decode-share-only", "--out", str(path)]) == 0
    new = rs.json.loads(path.read_text())
    s = new["summary"]
    assert 0 < s["decode_share_of_back"] < 9 and 0 < s["decode_share_of_back_intra"] < 9
    (run,) = new["parameters"]["decode_share_remeasured"]
    assert run["before"] == {"decode_share_of_back": 9.0, "decode_share_of_back_intra": None}
    doc["parameters"]["model_id"] = "0" * 64  # measured on another model: refused, file untouched
    path.write_text(rs.json.dumps(doc))
    assert rs.main(["--decode-share-only", "--out", str(path)]) == 2
    assert rs.json.loads(path.read_text()) == doc
