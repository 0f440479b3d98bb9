"""The runtime side of the bundle contract: loading, verification, clear errors, no torch."""

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edge_runtime import datasets
from edge_runtime.bundle import DEFAULT_BUNDLE, compute_model_id, load_bundle
from edge_runtime.errors import BundleError


@pytest.fixture
def bundle_copy(tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, dst)
    return dst


def _edit_manifest(folder, fn, rehash=True):
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    fn(m)
    if rehash:
        m["model_id"] = compute_model_id(m)
    path.write_text(json.dumps(m))


def test_default_bundle_manifest_is_consistent(default_bundle):
    b = default_bundle
    assert b.model_id == compute_model_id(b.manifest) and len(b.model_id_bytes) == 8
    assert {"front", "back", "attention", "back_map"} <= set(b.graphs)
    assert {f"grad_{v}" for v in ("plain", "guided", "selective", "extsel")} <= set(b.graphs)
    assert {"fused", "abn"} <= set(b.importance)
    assert b.input.size[0] >= 128  # DESIGN: the default model's input is 128 x 128 or larger


def test_default_bundle_classifies_held_out_scenes(default_bundle):
    b = default_bundle
    f = datasets.load(datasets.DEFAULT_TASK, "validation", 300, start=3000)  # not what training saw
    images, labels = f.images, f.labels
    x = b.preprocess(images)
    feats = b.front(x)[b.split_name]
    assert feats.shape == (300, *b.split_shape)
    acc = float((b.back(feats).argmax(1) == labels).mean())
    # 84.5% on 2000 validation scenes when it was exported (benchmarks/results/training.json); 300
    # scenes: a 95% interval of about +-4 points, so 0.75 flags a broken bundle, not noise
    assert acc >= 0.75, f"default bundle top-1 on fresh scenes is {acc:.3f} (chance 0.1)"


def test_missing_graph_file_is_named(bundle_copy):
    (bundle_copy / "back.onnx").unlink()
    with pytest.raises(BundleError, match="back.onnx is missing"):
        load_bundle(bundle_copy)


def test_wrong_hash_is_named(bundle_copy):
    with open(bundle_copy / "front.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match="front.onnx has sha256"):
        load_bundle(bundle_copy)


def test_hand_edited_manifest_is_caught(bundle_copy):
    _edit_manifest(bundle_copy, lambda m: m["classes"].reverse(), rehash=False)
    with pytest.raises(BundleError, match="does not match its content"):
        load_bundle(bundle_copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["split"].update(shape=[16, 16]), "split shape"),
        (lambda m: m["split"].update(shape=[16, -1, 16]), "split shape"),
        (lambda m: m["split"].update(dtype="int64"), "split dtype"),
        (lambda m: m["input"].update(size=[128]), "input size"),
        (lambda m: m.update(format_version=99), "format version 99"),
        (lambda m: m["graphs"].pop("back"), "no 'back' graph"),
        (lambda m: m.pop("classes"), "lacks required keys"),
    ],
)
def test_bad_manifest_fields_are_named(bundle_copy, edit, message):
    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle_copy)


def test_graph_io_mismatch_is_caught_on_first_use(bundle_copy):
    _edit_manifest(bundle_copy, lambda m: m["graphs"]["back"].update(outputs=["scores"]))
    b = load_bundle(bundle_copy)
    with pytest.raises(BundleError, match="re-export the bundle"):
        b.back(np.zeros((1, *b.split_shape), np.float32))


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)


def test_preprocess_checks_its_input(default_bundle):
    with pytest.raises(TypeError, match="uint8"):
        default_bundle.preprocess(np.zeros((128, 128, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        default_bundle.preprocess(np.zeros((100, 128, 3), np.uint8))


def test_runtime_runs_every_graph_where_torch_cannot_be_imported():
    code = textwrap.dedent(
        """
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        import numpy as np
        from edge_runtime.bundle import load_bundle
        from edge_runtime.scenes import SceneGenerator
        b = load_bundle()
        s = SceneGenerator(seed=9).sample(0)
        x = b.preprocess(s.image)
        out = b.front(x)
        f = out[b.split_name]
        assert np.isfinite(out["fused_attention"]).all()
        m = b.run("attention", {"features": f})["abn_map"]
        assert m.shape == (1, 1, *b.split_shape[1:])
        logits = b.back(f)
        assert np.allclose(b.run("back_map", {"features": f, "abn_map": m})["logits"], logits, atol=1e-4)
        for v in ("plain", "guided", "selective", "extsel"):
            r = b.run("grad_" + v, {"image": x, "reference": np.zeros((1, b.num_classes), np.float32)})
            assert r["influence"].shape == (1, 1, *b.input.size) and (r["influence"] >= 0).all()
            assert r["influence"].max() > 0
        assert "torch" not in sys.modules
        print("OK", int(logits.argmax()), s.label)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OK")
