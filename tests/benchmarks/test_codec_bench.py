"""The codec benchmark on a few frames: the default cell and the stream are what it measured."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import codec  # noqa: E402


def test_default_cell_and_stream_figures_come_from_the_rows(tmp_path):
    out = tmp_path / "c.json"
    assert codec.main(["--quick", "--count", "6", "--stream-frames", "12", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    s = doc["summary"]
    d = s["default_configuration"]
    row = next(
        r for r in doc["results"]
        if (r["map"], r["keep_ratio"], r["bits"], r["coder"]) == (d["map"], d["keep_ratio"], d["bits"], d["coder"])
    )  # fmt: skip
    assert s["maps"] == 6 and s["message_bytes_mean"] == row["message_bytes_mean"]
    assert (
        s["coded_alone_whole_message_bits_vs_order0"] > s["payload_bits_vs_order0"] > 0
    )  # headers cost bits
    assert s["stream_frames"] == 12 and s["stream_configuration"]["temporal_on"]
    lo, hi = s["stream_whole_message_bits_vs_order0_ci95"]
    assert lo - 1e-9 <= s["stream_whole_message_bits_vs_order0"] <= hi + 1e-9  # one segment: lo == hi
    # after the first frame (coded alone) every frame can be predicted from an acknowledged one
    assert 0 < s["stream_predicted_fraction"] < 1
    # stills of a folder: the shipped pipeline with acks; after the first, coded with the reference's state
    assert s["stills_maps"] == 6 and s["stills_configuration"]["wire_version"] == 6
    assert not s["stills_configuration"]["video_tools"]
    assert 0 < s["stills_carry_fraction"] < 1
    lo, hi = s["stills_whole_message_bits_vs_order0_ci95"]
    assert lo <= s["stills_whole_message_bits_vs_order0"] <= hi
    assert s["goal_met"] == (hi <= 1.0 and s["stream_whole_message_bits_vs_order0_ci95"][1] <= 1.0)
    # the headline key is the shipped default's (temporal coding on): the worse of stills and stream
    worse = s["whole_message_bits_vs_order0_source"]
    assert s["whole_message_bits_vs_order0"] == s[f"{worse}_whole_message_bits_vs_order0"]
    assert s["whole_message_bits_vs_order0"] == max(
        s["stills_whole_message_bits_vs_order0"], s["stream_whole_message_bits_vs_order0"]
    )
