"""The generalisation benchmark end to end on a few frames: its summary is what it measured."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import generalisation as gen  # noqa: E402


def test_summary_is_derived_from_the_measured_variants(tmp_path):
    out = tmp_path / "g.json"
    assert gen.main(["-n", "40", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    s, v = doc["summary"], doc["results"]["variants"]
    assert s["float_top1_in_domain"] == v["in_domain"]["top1"]
    assert s["float_top1_4x3_frames"] == v[f"4x3/{s['resize_default']}"]["top1"]
    worst = max(
        s["float_top1_in_domain"] - s[k]
        for k in ("float_top1_unseen_backgrounds", "float_top1_camera_variation", "float_top1_4x3_frames")
    )
    assert abs(s["domain_gap_pt"] - worst) < 0.02
    lo, hi = v["in_domain"]["ci95"]
    assert lo <= v["in_domain"]["top1"] <= hi and doc["parameters"]["split"] == "test"
    record = json.loads((gen.RESULTS / "training.json").read_text())["summary"]  # the shipped bundle's run
    assert s["train_minutes"] == record["default_recipe_wall_minutes"]


def test_train_minutes_only_for_the_bundle_the_recorded_run_made(tmp_path, monkeypatch):
    record = {
        "summary": {
            "default_recipe_wall_minutes": 12.3,
            "selection_on_validation": {"new_default_bundle": "0" * 12},
        }
    }
    (tmp_path / "training.json").write_text(json.dumps(record))
    monkeypatch.setattr(gen, "RESULTS", tmp_path)
    out = tmp_path / "g.json"
    assert gen.main(["-n", "8", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["summary"]["train_minutes"] is None  # another run's bundle


def test_missing_bundle_is_an_error_line(tmp_path, capsys):
    assert gen.main(["--bundle", str(tmp_path / "nope"), "-n", "1"]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_validation_split_skips_the_test_only_backgrounds(tmp_path, capsys):
    assert gen.main(["--split", "validation", "-n", "1"]) == 2  # the default file holds test figures
    assert capsys.readouterr().err.startswith("error:")
    out = tmp_path / "v.json"
    assert gen.main(["--split", "validation", "-n", "40", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["parameters"]["split"] == "validation"
    assert "unseen_backgrounds" not in doc["results"]["variants"]
    assert doc["summary"]["float_top1_unseen_backgrounds"] is None
    assert set(doc["results"]["gaps"]) == {"camera_variation", "4x3"}
