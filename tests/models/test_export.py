"""Export parity: every ONNX graph of a bundle against the PyTorch model it came from."""

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the offline extra: pip install '.[train]'")
pytestmark = pytest.mark.slow

GRAD_VARIANTS = ("plain", "guided", "selective", "extsel")
# float32 graphs, conv kernels ordered differently in ORT and torch: relative tolerance on the scale
# of each output.
RTOL = 1e-4


def _close(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    scale = max(float(np.abs(b).max()), 1e-30)
    err = float(np.abs(a - b).max()) / scale
    assert err <= RTOL, f"{what}: max error {err:.2e} of its scale (tolerance {RTOL})"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import torch

    from edge_runtime.bundle import load_bundle
    from edge_runtime.models.export import export_bundle
    from edge_runtime.models.networks import build_model

    torch.manual_seed(0)
    model = build_model("abn-s", num_classes=10)
    # Non-trivial BatchNorm statistics so that BN folding is exercised.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    model.eval()
    out = tmp_path_factory.mktemp("export") / "bundle"
    export_bundle(
        model,
        out,
        classes=[f"c{k}" for k in range(10)],
        input_spec={"size": [128, 128], "mean": [0.5] * 3, "std": [0.25] * 3},
        model_name="t",
    )
    return model, load_bundle(out)


@pytest.fixture(scope="module")
def images():
    from edge_runtime.scenes import SceneGenerator

    imgs, labels, _ = SceneGenerator(seed=5).batch(0, 3)
    return imgs


def test_front_back_attention_graphs_match_pytorch(exported, images):
    import torch

    from edge_runtime.models.export import FUSION_WEIGHTS, FrontGraph

    model, b = exported
    x = b.preprocess(images)  # batch of 3: the batch dimension is dynamic
    with torch.no_grad():
        f_t, fused_t = FrontGraph(model, FUSION_WEIGHTS, (32, 32))(torch.from_numpy(x))
        att_t, per_t, m_t = model.back(f_t)
    front = b.front(x)
    _close(front["features"], f_t, "features")
    _close(front["fused_attention"], fused_t, "fused attention")
    assert 0.0 <= front["fused_attention"].min() and front["fused_attention"].max() <= 1.0 + 1e-6
    back = b.run("back", {"features": front["features"]})
    _close(back["logits"], per_t, "perception logits")
    _close(back["att_logits"], att_t, "attention-branch logits")
    _close(back["abn_map"], m_t, "ABN map")
    att = b.run("attention", {"features": front["features"]})
    _close(att["abn_map"], m_t, "attention graph map")
    m_edit = np.clip(back["abn_map"] * 0.5 + 0.25, 0, 1).astype(np.float32)
    with torch.no_grad():
        want = model.back_with_map(f_t, torch.from_numpy(m_edit))
    _close(b.run("back_map", {"features": front["features"], "abn_map": m_edit})["logits"], want, "back_map")


def _eager_influence(model, x, ref, variant):
    """Reference gradients by eager autograd; guided ReLUs via backward hooks."""
    import torch

    from edge_runtime.models.export import influence_fn

    hooks = []
    if variant == "guided":
        for m in model.modules():
            if isinstance(m, torch.nn.ReLU):
                hooks.append(m.register_full_backward_hook(lambda mod, gi, go: (gi[0].clamp(min=0),)))
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        return influence_fn(model, variant)(torch.from_numpy(x), torch.from_numpy(ref))
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("variant", GRAD_VARIANTS)
def test_gradient_graphs_match_autograd(exported, images, variant):
    model, b = exported
    x = b.preprocess(images[:1])
    k = b.num_classes
    refs = [np.zeros((1, k), np.float32), np.eye(k, dtype=np.float32)[[3]]]
    if variant == "extsel":
        w = np.zeros((1, k), np.float32)
        w[0, 2], w[0, 7] = 1.0, -1.0
        refs.append(w)
    for ref in refs:
        got = b.run(f"grad_{variant}", {"image": x, "reference": ref})
        infl, logits = _eager_influence(model, x, ref, variant)
        _close(got["logits"], logits.detach(), f"{variant} logits")
        _close(got["influence"], infl.detach(), f"{variant} influence (ref {ref.argmax()})")
        assert float(got["influence"].max()) > 0


def test_guided_differs_from_plain(exported, images):
    _, b = exported
    x = b.preprocess(images[:1])
    ref = np.zeros((1, b.num_classes), np.float32)
    plain = b.run("grad_plain", {"image": x, "reference": ref})["influence"]
    guided = b.run("grad_guided", {"image": x, "reference": ref})["influence"]
    assert not np.allclose(plain, guided)


def test_export_replaces_a_bundle_atomically(exported, tmp_path):
    """A second export into the same folder swaps the whole folder; no temp folders are left."""
    import json

    from edge_runtime.models.export import export_bundle

    model, b = exported
    out = tmp_path / "b"
    spec = {"size": [128, 128], "mean": [0.5] * 3, "std": [0.25] * 3}
    m1 = export_bundle(model, out, classes=list(b.classes), input_spec=spec, model_name="one", variants=())
    m2 = export_bundle(model, out, classes=list(b.classes), input_spec=spec, model_name="two", variants=())
    assert m1["model_id"] != m2["model_id"]
    assert json.loads((out / "manifest.json").read_text())["model_name"] == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
