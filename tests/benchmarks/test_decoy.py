"""The decoy benchmark's rules: who is corrected first, where settings are chosen, the intervals."""

import argparse

import numpy as np
import pytest

from benchmarks import decoy


def test_the_person_corrects_misrecognized_images_first_then_maps_that_miss_the_item():
    n = 6
    maps = np.zeros((n, 4, 4), np.float32)
    masks = np.zeros((n, 16, 16), bool)
    masks[:, 8:, 8:] = True  # the item: bottom right
    maps[:, 3, 3] = 1.0  # maps point at it ...
    maps[[1, 4], 3, 3], maps[[1, 4], 0, 0] = 0.0, 1.0  # ... except images 1 and 4
    rec = {"maps": maps, "per_correct": np.array([1, 1, 0, 1, 1, 0], bool)}
    groups = decoy.correction_groups(rec, masks)
    assert groups.tolist() == [2, 1, 0, 2, 1, 0]
    for seed in range(3):
        order = decoy.correction_order(groups, seed)
        assert (
            sorted(order[:2]) == [2, 5] and sorted(order[2:4]) == [1, 4] and sorted(order) == list(range(n))
        )
    assert not all(
        np.array_equal(decoy.correction_order(groups, 0), decoy.correction_order(groups, s))
        for s in (1, 2, 3)
    )


def test_strength_is_chosen_on_validation_never_on_test():
    class Frames:
        split = "test"

    args = argparse.Namespace(short_train=10, short_epochs=1, threads=1, candidates=[0.9])
    with pytest.raises(ValueError, match="validation"):
        decoy.choose_strength(args, None, Frames(), None)


def test_grids_are_scale_free_and_ours_also_chooses_what_the_perception_branch_sees():
    g = decoy.grids({"term_scales": {"map": 20.0, "rrr": 4.0}})
    assert sorted(s["gamma"] for s in g["ours"]) == [0.05] * 4 + [0.5] * 4
    assert sorted(s["rrr_weight"] for s in g["rrr"]) == [0.25, 0.25, 2.5, 2.5]
    seen = {(s["parts"], s["gamma"], s.get("perception_map", "own")) for s in g["ours"]}
    assert len(seen) == 8 and {v for *_, v in seen} == {"own", "teacher"}
    for s in g["ours"]:
        cfg = decoy._retrain_config("ours", s, seed=1, steps=5)
        assert cfg.perception_map == s.get("perception_map", "own") and cfg.gamma == s["gamma"]
        assert cfg.train == decoy.PARTS[s["parts"]] and cfg.losses == ("att", "per", "map")
    assert all("perception_map" not in s for s in g["rrr"])


def test_a_run_trained_before_a_new_recipe_option_existed_is_reused_while_that_option_is_off():
    from dataclasses import asdict

    from edge_runtime.models.train import TrainConfig, recipe

    def params(cfg):
        return {"p": 0.85, "config": recipe(cfg)}

    cfg = decoy.base_config(argparse.Namespace(augment=False, threads=2), 8)
    old = params(cfg)
    del old["config"]["ema"]  # params.json written before the option existed
    assert decoy._same_params(old, params(cfg))
    assert not decoy._same_params(old, params(TrainConfig(**asdict(cfg) | {"ema": 0.999})))
    assert not decoy._same_params(old | {"p": 0.75}, params(cfg))
    assert not decoy._same_params(old, params(TrainConfig(**asdict(cfg) | {"epochs": 2})))


def test_gap_recovered_and_its_interval():
    n = 400
    c_dec = np.zeros(n, bool)
    c_ref = np.ones(n, bool)
    retrained = np.zeros((3, n), bool)
    retrained[:, : n // 2] = True  # half the gap on every seed
    out = decoy.gap_interval(retrained, c_dec, c_ref)
    assert out["mean"] == 0.5 and out["ci95"][0] < 0.5 < out["ci95"][1] and out["seeds"] == 3
    retrained[0] = False  # seeds that disagree widen the interval
    wider = decoy.gap_interval(retrained, c_dec, c_ref)
    assert wider["mean"] == pytest.approx(1 / 3, abs=1e-3)
    assert wider["ci95"][1] - wider["ci95"][0] > out["ci95"][1] - out["ci95"][0]


def test_corrections_own_part_is_the_headline_minus_the_control_with_a_paired_interval():
    n = 400
    rng = np.random.default_rng(3)
    c_dec, c_ref = np.zeros(n, bool), np.ones(n, bool)
    control = rng.random((3, n)) < 0.3  # retraining alone: about 0.3 of the gap
    same = decoy.gap_interval(control, c_dec, c_ref, minus=control)
    assert abs(same["mean"]) < 1e-9 and same["ci95"][0] < 0 < same["ci95"][1]
    better = control | (rng.random((3, n)) < 0.5)  # corrections add about 0.35
    out = decoy.gap_interval(better, c_dec, c_ref, minus=control)
    assert 0.25 < out["mean"] < 0.45 and 0 < out["ci95"][0] < out["mean"] < out["ci95"][1]
    assert decoy.gap_interval(better, c_ref, c_ref, minus=control)["mean"] is None  # no gap


def test_curve_figure_has_both_methods_with_bands(tmp_path):
    curve = {f"{s:g}": {"mean": s, "ci95": [s - 0.05, s + 0.05]} for s in decoy.SHARES}
    fig = decoy.curve_figure(
        {"ours": curve, "rrr": {k: v | {"mean": v["mean"] / 2} for k, v in curve.items()}}
    )
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert "ABN map loss (ours)" in labels and "RRR input gradients" in labels
    assert len(ax.collections) == 2  # one interval band per method
    fig.savefig(tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
    with_control = decoy.curve_figure({"ours": curve}, control={"mean": 0.12, "ci95": [0.05, 0.19]}).axes[0]
    assert "ours' retraining, no corrected map" in [line.get_label() for line in with_control.get_lines()]
    assert len(with_control.patches) == 1  # the control's band


def test_curve_figure_draws_a_curve_with_no_gap_to_recover(tmp_path):
    # every point missing (the decoy model no worse than its reference): the log axis once failed
    curve = {"0.02": {"mean": None, "ci95": [None, None]}, "0.25": {"mean": None, "ci95": [None, None]}}
    fig = decoy.curve_figure({"ours": curve, "rrr": curve})
    fig.savefig(tmp_path / "c.png")
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["2%", "25%"]


def test_quick_run_takes_small_sizes_keeps_given_options_and_never_writes_the_results_file():
    args = decoy.parse_args(["--quick"])
    assert (args.num_train, args.threads, args.seeds) == (decoy.QUICK["num_train"], 1, 1)
    assert args.out == str(decoy.Path(decoy.QUICK["work"]) / "decoy.json")
    assert decoy.parse_args(["--quick", "--num-train", "900", "--out", "x.json"]).num_train == 900
    full = decoy.parse_args([])
    assert full.out is None and full.num_train == 100000 and full.shares == list(decoy.SHARES)
    assert not full.augment and decoy.parse_args(["--augment"]).augment


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--quick", "--shares", "0", "0.5"], "--shares"),
        (["--quick", "--candidates", "1.5"], "--candidates"),
        (["--quick", "--short-train", "5000"], "--short-train"),
        (["--quick", "--steps", "0"], "--steps"),
    ],
)
def test_bad_options_end_with_an_error_line(argv, words, capsys):
    assert decoy.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and "Traceback" not in err
