"""The rate-accuracy benchmark's core on a handful of frames: structure and sanity, no figures."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import rate_accuracy as ra  # noqa: E402


@pytest.fixture(scope="module")
def run(default_bundle):
    b = default_bundle
    images, labels = ra.load_frames(b, None, 6)
    grid = [s for s in ra.build_grid(b, quick=True) if s.family != "masked" or s.params["keep"] == 0.3]
    rows = ra.evaluate(b, images, labels, grid, progress=False)
    return b, grid, rows


def test_rows_have_the_promised_fields(run):
    _, grid, rows = run
    assert len(rows) == len(grid)
    for r in rows:
        assert r["bytes"] > 0 and 0.0 <= r["top1"] <= 1.0 and r["edge_ms"] >= 0.0
    families = {r["family"] for r in rows}
    assert {"jpeg", "webp", "png", "float16", "quant", "masked", "rate"} <= families


def test_bytes_are_sane(run):
    _, _, rows = run
    jpeg = sorted((r["params"]["q"], r["bytes"]) for r in rows if r["family"] == "jpeg")
    assert [b for _, b in jpeg] == sorted(b for _, b in jpeg)  # JPEG bytes grow with quality
    png = next(r for r in rows if r["family"] == "png")
    assert png["bytes"] > jpeg[-1][1]  # lossless is bigger than the best lossy
    for coder in ("zstd", "arith"):
        q = sorted((r["params"]["bits"], r["bytes"]) for r in rows if r["mode"] == f"quant/{coder}")
        assert [b for _, b in q] == sorted(b for _, b in q)  # more bits, more bytes
    f16 = next(r for r in rows if r["family"] == "float16")
    assert f16["bytes"] > max(b for _, b in q)
    # a feature-zeroed setting at keep 0.3 costs less than the same coder and bits unmasked
    m = next(r for r in rows if r["mode"] == "abn/feature/zero" and r["params"]["bits"] == 4)
    u = next(r for r in rows if r["mode"] == "quant/arith" and r["params"]["bits"] == 4)
    assert m["bytes"] < u["bytes"]
    # PNG is lossless: its accuracy is the float model's on these frames
    s = ra.summarize(rows)
    assert s["float_accuracy"] == png["top1"]


def test_summary_and_outputs(run, tmp_path):
    b, _, rows = run
    s = ra.summarize(rows)
    for key in ("best_bytes_vs_jpeg_at_iso_accuracy", "masked_bytes_vs_unmasked", "float_accuracy"):
        assert key in s
    assert s["per_mode"]["png"]["bytes_within_0_5pt"] is not None
    ra.plot(rows, s, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
    md = ra.markdown(rows, s, {"count": 6, "data": "test", "model_id": b.model_id, "split_shape": "x"})
    assert "| jpeg |" in md
    json.dumps(s)  # JSON-serialisable


def test_bytes_at_accuracy_interpolates_in_log_bytes():
    curve = (np.array([100.0, 400.0]), np.array([0.5, 0.9]))
    r = ra.bytes_at_accuracy(curve, 0.7)
    assert r["reached"] and r["bytes"] == pytest.approx(200.0)
    assert ra.bytes_at_accuracy(curve, 0.4) == {"bytes": 100.0, "reached": True}
    assert ra.bytes_at_accuracy(curve, 0.95) == {"bytes": 400.0, "reached": False}


def test_readme_update_replaces_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{ra.MARK_BEGIN}\nold\n{ra.MARK_END}\nb\n")
    ra.update_readme("TABLE\n", "python x", readme)
    text = readme.read_text()
    assert "TABLE" in text and "old" not in text and text.startswith("a\n") and text.endswith("b\n")


def test_rerender_rebuilds_the_outputs_from_a_json(run, tmp_path):
    from benchmarks._common import write_result

    b, _, rows = run
    params = {"count": 6, "data": "test", "model_id": b.model_id, "split_shape": "x", "quick": True}
    src = write_result("rate_accuracy", ra.summarize(rows), params, rows, tmp_path / "src.json")
    out = tmp_path / "out" / "rate_accuracy.json"
    assert ra.main(["--rerender", str(src), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["float_accuracy"] == ra.summarize(rows)["float_accuracy"]
    assert doc["parameters"]["rendered_from"]["file"] == str(src)
    assert out.with_suffix(".png").is_file() and "| png |" in out.with_suffix(".md").read_text()


def test_image_folder_frames_are_resized_and_labelled(default_bundle, tmp_path):
    pytest.importorskip("torch", reason="the ImageFolder loader lives in models.data (offline extra)")
    import cv2

    from edge_runtime.scenes import SceneGenerator

    b = default_bundle
    gen = SceneGenerator(96, b.num_classes, 7)
    for k, name in enumerate(b.classes):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "a.png"), gen.sample(k, label=k).image[..., ::-1])
    images, labels = ra.load_frames(b, str(tmp_path), 5)
    assert images.shape == (5, *b.input.size, 3) and images.dtype == np.uint8
    assert len(set(labels.tolist())) == 5
    for im, y in zip(images, labels, strict=True):  # labels follow the bundle's class order
        want = cv2.resize(
            gen.sample(int(y), label=int(y)).image, b.input.size[::-1], interpolation=cv2.INTER_AREA
        )
        assert np.abs(im.astype(int) - want.astype(int)).mean() < 8
    (tmp_path / "zebra").mkdir()
    cv2.imwrite(str(tmp_path / "zebra" / "z.png"), images[0])
    with pytest.raises(ValueError, match="zebra"):
        ra.load_frames(b, str(tmp_path), 5)
