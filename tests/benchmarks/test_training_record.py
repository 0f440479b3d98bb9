"""The training record: a tiny train -> finetune -> export, then benchmarks/training.py on it."""

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the offline extra: pip install '.[train]'")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import training  # noqa: E402


@pytest.mark.slow
def test_record_reads_the_recipes_own_times_and_compares_bundles_on_validation(tmp_path, capsys):
    from edge_runtime.cli import main

    run, ft, bundle = tmp_path / "run", tmp_path / "ft", tmp_path / "bundle"
    common = ["--num-train", "96", "--num-val", "32", "--epochs", "1", "--threads", "1", "--no-progress"]
    assert main(["train", "--out", str(run), "--size", "64", "--batch-size", "32", *common]) == 0
    assert "epoch 1/1" not in capsys.readouterr().err  # --no-progress: no epoch bar either
    assert (
        main(["finetune", str(run / "checkpoint.pt"), "--out", str(ft), "--export", str(bundle), *common])
        == 0
    )
    err = capsys.readouterr().err  # nor the fine-tuning's cache, epoch or export bars
    assert "front cache" not in err and "finetune 1/1" not in err and f"export {bundle}" not in err
    out = tmp_path / "training.json"
    argv = ["--run", str(run / "checkpoint.pt"), "--finetuned", str(ft / "checkpoint.pt"), "--bundle",
            str(bundle), "--previous", str(bundle), "-n", "24", "--out", str(out)]  # fmt: skip
    assert training.main(argv) == 0
    s = json.loads(out.read_text())["summary"]
    # the wall time covers scene generation and training; the same bundle twice differs by nothing
    assert s["default_recipe_wall_minutes"] >= s["scene_generation_minutes"] >= 0
    sel = s["selection_on_validation"]
    assert sel["diff_pt"] == 0 and sel["previous_default_bundle_top1"] == sel["new_default_bundle_top1"]
    assert sel["camera_variation"]["diff_pt"] == 0 and sel["camera_variation"]["diff_ci95_pt"] == [0, 0]
    assert 0 <= s["abn_val_top1"] <= 1 and "top1" in s["finetune_val"]


def test_missing_checkpoint_is_an_error_line(tmp_path, capsys):
    nope = str(tmp_path / "nope.pt")
    argv = ["--run", nope, "--finetuned", nope, "--bundle", nope, "--previous", nope]
    assert training.run_cli(training.main, argv) == 2
    assert capsys.readouterr().err.startswith("error:")
