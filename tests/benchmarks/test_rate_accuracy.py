"""The rate-accuracy method: selection on validation only, intervals that decide "passes", outputs.

The end-to-end run uses a handful of frames and a tiny grid: it checks the method's structure,
not figures (those come from ``benchmarks/rate_accuracy.py`` itself).
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import rate_accuracy as ra  # noqa: E402
from benchmarks import rate_baselines, rate_report, rate_select, rate_sweep  # noqa: E402
from edge_runtime import datasets  # noqa: E402

TASK = datasets.DEFAULT_TASK  # the task the default bundle was trained on


def _m(name: str, split: str, correct, nbytes: float, family: str = "masked") -> rate_sweep.Measured:
    correct = np.asarray(correct, bool)
    cfg = {"importance": {"provider": "fused"}, "codec": {"coder": "arith"}}
    s = rate_sweep.Setting(family, name.split(" ")[0], {"keep": 0.2, "bits": 2, "k": name}, cfg)
    return rate_sweep.Measured(s, split, np.full(len(correct), float(nbytes)), correct)


def _errors(n: int, wrong: int) -> np.ndarray:
    c = np.ones(n, bool)
    c[np.linspace(0, n - 1, wrong).astype(int) if wrong else []] = False
    return c


# ---------------------------------------------------------------- selection and intervals


def test_selection_refuses_frames_of_the_test_split():
    ref = _m("png", "validation", _errors(200, 0), 9000, "png")
    with pytest.raises(ValueError, match="validation"):
        rate_select.select([_m("a", "test", _errors(200, 0), 100)], ref)
    with pytest.raises(ValueError, match="validation"):
        rate_select.select(
            [_m("a", "validation", _errors(200, 0), 100)], _m("png", "test", _errors(200, 0), 1)
        )


def test_a_setting_whose_interval_misses_the_bar_does_not_pass():
    n = 1000
    ref = _m("png", "validation", _errors(n, 0), 9000, "png")
    close = _m("close", "validation", _errors(n, 4), 100)  # -0.4 pt: inside the bar, its interval is not
    c = rate_select.compare(close, ref)
    assert -0.5 < c["diff_pt"] < 0 and c["diff_ci_pt"][0] < -0.5
    assert not c["passes"]
    safe = _m("safe", "validation", _errors(n, 1), 150)  # -0.1 pt, interval [-0.3, 0]
    assert rate_select.compare(safe, ref)["passes"]
    # the cheaper setting fails its interval, so the dearer one that passes is chosen
    assert rate_select.select([close, safe], ref) is safe
    assert rate_select.select([close], ref) is None


def test_the_fair_baseline_is_the_codec_treatment_validation_prefers():
    n = 1000
    ref = _m("png", "validation", _errors(n, 0), 9000, "png")
    tuned = [_m("jpeg_fair q90", "validation", _errors(n, 30), 4000, "jpeg_fair")]  # -3 pt: fails
    untuned = [_m("jpeg q90", "validation", _errors(n, 0), 4200, "jpeg")]
    sel = rate_select.select_per_mode(tuned + untuned, ref)
    assert sel["jpeg_fair"] is None and rate_select.fair_treatment(sel, "jpeg") == "jpeg"
    cheap_tuned = [_m("jpeg_fair q50", "validation", _errors(n, 0), 2000, "jpeg_fair")]
    sel = rate_select.select_per_mode(tuned + cheap_tuned + untuned, ref)
    assert rate_select.fair_treatment(sel, "jpeg") == "jpeg_fair"  # the cheaper passing treatment
    sel = rate_select.select_per_mode(tuned, ref)
    assert rate_select.fair_treatment(sel, "jpeg") is None  # neither passes: no ratio


def test_difference_distinguishable_from_zero_only_when_the_interval_excludes_it():
    n = 1000
    ref = _m("png", "validation", _errors(n, 0), 9000, "png")
    assert not rate_select.compare(_m("a", "validation", _errors(n, 1), 1), ref)["distinguishable"]
    assert rate_select.compare(_m("b", "validation", _errors(n, 30), 1), ref)["distinguishable"]
    lo, hi = rate_select.mean_interval(_errors(n, 30).astype(float))
    assert lo < 0.97 < hi
    assert rate_select.mean_interval(np.ones(50)) == (1.0, 1.0)
    a, b = np.arange(1.0, 101.0), 2 * np.arange(1.0, 101.0)
    assert rate_select.ratio_interval(a, b) == pytest.approx((0.5, 0.5))


# ---------------------------------------------------------------- end to end, tiny


@pytest.fixture(scope="module")
def run(default_bundle):
    b = default_bundle
    grid = rate_sweep.build_grid(
        b,
        providers=("fused",),
        keeps=(0.2, 0.5),
        bits=(2, 4),
        random_keeps=(0.5,),
        image_keeps=(),
        rate_targets=(250,),
    )
    grid = [s for s in grid if "/zstd" not in s.mode]
    val = ra.frames(b, TASK, "validation", 8)
    test = ra.frames(b, TASK, "test", 8)
    res = ra.evaluate(b, val, test, grid, {"jpeg": (20, 60, 90)}, {})
    return b, grid, val, test, res


def test_every_setting_is_chosen_on_validation_and_scored_on_test(run):
    _, grid, val, test, res = run
    assert not set(map(bytes, val.images)) & set(map(bytes, test.images))  # disjoint frames
    assert {m.split for m in res["validation"]} == {"validation"}
    assert len(res["validation"]) == len(grid) + 3 + 1  # the sweep, the JPEG qualities, PNG
    by_mode: dict[str, list] = {}
    for m in res["validation"]:
        if m is not res["reference_validation"]:
            by_mode.setdefault(m.setting.mode, []).append(m)
    for mode, chosen in res["selected"].items():
        assert chosen is rate_select.select(by_mode[mode], res["reference_validation"])
        if chosen is not None:
            assert chosen.split == "validation"
            t = res["test"][mode]
            assert t.split == "test" and t.setting.name == chosen.name
    # only chosen settings (and the reference) are measured on test
    assert set(res["test"]) == {k for k, v in res["selected"].items() if v is not None}
    assert res["reference_test"].split == "test"


def test_rows_and_bytes_are_sane(run):
    _, _, _, _, res = run
    val = {m.name: m for m in res["validation"]}
    jpeg = [val[f"jpeg q={q}"].mean_bytes for q in (20, 60, 90)]
    assert jpeg == sorted(jpeg)
    assert val["png"].mean_bytes > jpeg[-1]
    # the quantization-alone control runs at every bit depth the masked settings use, and 8
    quant_bits = {m.setting.params["bits"] for m in res["validation"] if m.setting.mode == "quant/arith"}
    assert quant_bits == {2, 4, 8}
    q = [val[f"quant/arith bits={b}"].mean_bytes for b in (2, 4, 8)]
    assert q == sorted(q) and val["float16"].mean_bytes > q[-1]
    assert val["fused/feature/zero keep=0.2 bits=4"].mean_bytes < val["quant/arith bits=4"].mean_bytes
    for m in res["validation"]:
        assert m.mean_bytes > 0 and len(m.correct) == 8


def test_summary_plot_and_table(run, tmp_path):
    b, _, _, _, res = run
    s = rate_report.summarize(res)
    assert s["selected_on"] == "validation" and s["scored_on"] == "test"
    assert s["float_accuracy"] == res["reference_test"].top1
    lo, hi = s["float_accuracy_ci"]
    assert lo <= s["float_accuracy"] <= hi
    for key in rate_report.GOALS:
        assert key in s and key + "_ci" in s
    for e in s["per_mode"].values():  # "passes" on test is the interval's verdict
        if e["test"]:
            assert e["test"]["passes"] == (e["test"]["diff_ci_pt"][0] >= -rate_select.ISO_POINTS - 1e-9)
    rate_report.plot(res, s, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 5000
    params = {"task": TASK, "model_id": b.model_id, "fair_budget": {"epochs": 1, "images": 1}}
    md = rate_report.markdown(res, s, params)
    assert "| png (the float model: reference) |" in md
    assert "chosen on validation" in md
    json.dumps(s)
    json.dumps(rate_report.rows(res))


def test_headline_that_misses_the_bar_on_test_is_reported_as_missing():
    n = 400
    ref_v, ref_t = (_m("png", sp, _errors(n, 0), 9000, "png") for sp in ("validation", "test"))
    v = _m("fused/feature/zero", "validation", _errors(n, 0), 100)
    t = _m("fused/feature/zero", "test", _errors(n, 6), 100)  # -1.5 pt on test
    res = {
        "validation": [v, ref_v],
        "reference_validation": ref_v,
        "selected": {"fused/feature/zero": v},
        "test": {"fused/feature/zero": t},
        "reference_test": ref_t,
    }
    s = rate_report.summarize(res)
    assert s["headline"]["mode"] == "fused/feature/zero" and s["headline"]["passes"] is False
    md = rate_report.markdown(
        res, s, {"task": "x", "model_id": "0" * 12, "fair_budget": {"epochs": 1, "images": 1}}
    )
    assert "misses the bar on test" in md
    assert s["best_bytes_vs_fair_jpeg_at_iso_accuracy"] is None  # no fair JPEG measured: no ratio


def test_readme_update_replaces_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{rate_report.MARK_BEGIN}\nold\n{rate_report.MARK_END}\nb\n")
    rate_report.update_readme("TABLE\n", "python x", readme)
    text = readme.read_text()
    assert "TABLE" in text and "old" not in text and text.startswith("a\n") and text.endswith("b\n")


def test_frame_codecs_round_trip(default_bundle):
    from edge_runtime import datasets

    im = datasets.load(TASK, "validation", 1).images[0]
    for codec in (*rate_baselines.CODECS, "png"):
        qs = (None,) if codec == "png" else rate_baselines.QUALITIES[codec][::4]
        sizes = []
        for q in qs:
            data = rate_baselines.encode(codec, im, q)
            out = rate_baselines.decode(codec, data)
            assert out.shape == im.shape and out.dtype == np.uint8
            assert np.abs(out.astype(int) - im.astype(int)).mean() < (0.5 if codec == "png" else 40)
            sizes.append(len(data))
        assert sizes == sorted(sizes)  # more quality, more bytes


def test_bad_options_end_with_an_error_line(capsys):
    assert ra.main(["--quick", "--ft-epochs", "-1", "--codecs", "jpeg"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert (
        ra.main(
            [
                "--task",
                "nonsense",
                "--quick",
                "--val",
                "2",
                "--test",
                "2",
                "--codecs",
                "jpeg",
                "--ft-images",
                "8",
            ]
        )
        == 2
    )
    assert "unknown task" in capsys.readouterr().err
