"""Bring your own ONNX model: split, fused attention, gradient graphs and fine-tuning for
classifiers the project did not write (one from ``onnx.helper``, one ResNet-style network exported
by plain ``torch.onnx.export``, one with an unsupported operator)."""

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the offline extra: pip install '.[train]'")
pytestmark = pytest.mark.slow

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from byo_models import SIZE, SPLIT_AT, K, helper_model, unsupported_model  # noqa: E402

GRAD_VARIANTS = ("plain", "guided", "selective", "extsel")
RTOL = 1e-4  # of each output's scale, as in test_export.py


def _rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max()) / max(float(np.abs(b).max()), 1e-30)


# ---------------------------------------------------------------- an outside ResNet-style network


class ChannelNorm(nn.Module):
    """Its own normalisation: per-channel affine over a per-sample, per-channel scale (exported as
    BatchNormalization in eval mode would hide it; this is Mul / Add of its own parameters)."""

    def __init__(self, c):
        super().__init__()
        self.g = nn.Parameter(1 + 0.1 * torch.randn(1, c, 1, 1))
        self.b = nn.Parameter(0.1 * torch.randn(1, c, 1, 1))

    def forward(self, x):
        return x * self.g + self.b


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.n1 = ChannelNorm(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.n2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else nn.Identity()
        )

    def forward(self, x):
        y = torch.relu(self.n1(self.c1(x)))
        return torch.relu(self.n2(self.c2(y)) + self.skip(x))


class TinyResNet(nn.Module):
    def __init__(self, k=K):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.layer1 = Block(8, 8, 1)
        self.layer2 = Block(8, 16, 2)
        self.layer3 = Block(16, 16, 2)
        self.fc = nn.Linear(16, k)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def _split_name(model: onnx.ModelProto, shape) -> str:
    """The last tensor of the given C x H x W shape (graph order)."""
    m = onnx.shape_inference.infer_shapes(model)
    dims_of = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in m.graph.value_info}
    name = None
    for n in m.graph.node:
        for o in n.output:
            if dims_of.get(o, [])[1:] == list(shape):
                name = o
    assert name is not None
    return name


@pytest.fixture(scope="module")
def resnet_onnx(tmp_path_factory):
    torch.manual_seed(3)
    net = TinyResNet().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("resnet") / "resnet.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(2, 3, SIZE, SIZE),),
        str(path),
        input_names=["x"],
        output_names=["y"],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},),
    )
    return path


# ---------------------------------------------------------------- helpers


def _with_outputs(model: onnx.ModelProto, names) -> ort.InferenceSession:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in names:
        m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def _resize_np(a, oh, ow):
    """Bilinear resize with half-pixel centres, edges clamped (NumPy reference)."""
    h, w = a.shape[-2:]

    def table(n_in, n_out):
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        i0 = np.floor(src).astype(int)
        return i0, np.minimum(i0 + 1, n_in - 1), src - i0

    y0, y1, wy = table(h, oh)
    x0, x1, wx = table(w, ow)
    top = a[..., y0, :][..., x0] * (1 - wx) + a[..., y0, :][..., x1] * wx
    bot = a[..., y1, :][..., x0] * (1 - wx) + a[..., y1, :][..., x1] * wx
    return top * (1 - wy[:, None]) + bot * wy[:, None]


def _fused_np(layer_outputs, weights, map_size):
    acc = 0.0
    for a, w in zip(layer_outputs, weights, strict=True):
        m = _resize_np(np.abs(a.astype(np.float64)).mean(axis=1, keepdims=True), *map_size)
        acc = acc + w * m / (m.max(axis=(2, 3), keepdims=True) + 1e-6)
    return acc / sum(weights)


def _split(model_path, at, out, extra=()):
    from edge_runtime.cli import main

    assert main(["split", str(model_path), "--at", at, "--out", str(out), "--mean", "0.5", "0.5", "0.5",
                 "--std", "0.25", "0.25", "0.25", *extra]) == 0  # fmt: skip
    from edge_runtime.bundle import load_bundle

    return load_bundle(out)


def _check_bundle(model: onnx.ModelProto, b, images):
    """back(front(x)) = the whole model; fused = NumPy from the layer outputs; every gradient
    graph = autograd on the converted model; every provider but abn starts."""
    from edge_runtime.config import config_from_dict
    from edge_runtime.errors import BundleError
    from edge_runtime.importance import make_provider
    from edge_runtime.models.gradients import reference_influence

    x = b.preprocess(images)
    spec = b.importance["fused"]
    whole = _with_outputs(model, spec["layers"])
    outs = whole.run(None, {b.input.name: x})
    want_logits, layer_outs = outs[0], outs[1:]
    front = b.front(x)
    assert _rel_err(b.back(front[b.split_name]), want_logits) <= 1e-5
    want_fused = _fused_np(layer_outs, spec["weights"], spec["shape"])
    assert _rel_err(front["fused_attention"], want_fused) <= 1e-5
    assert front["fused_attention"].shape == (len(images), 1, *spec["shape"])
    worst = 0.0
    for v in GRAD_VARIANTS:
        refs = [np.zeros((1, K), np.float32), np.eye(K, dtype=np.float32)[[2]]]
        if v == "extsel":
            refs.append(np.array([[1, 0, -1, 0, 0]], np.float32))
        for ref in refs:
            got = b.run(f"grad_{v}", {b.input.name: x[:1], "reference": ref})
            infl, logits = reference_influence(model, v, x[:1], ref)
            worst = max(
                worst, _rel_err(got["influence"], infl.numpy()), _rel_err(got["logits"], logits.numpy())
            )
            assert float(got["influence"].max()) > 0
    assert worst <= RTOL, f"gradient graphs vs autograd: {worst:.2e}"
    for name in ("fused", "none", *(f"grad_{v}" for v in GRAD_VARIANTS)):
        prov = make_provider(b, config_from_dict({"importance": {"provider": name}}, env={}).importance)
        res = prov.compute(x[:1], lambda: b.front(x[:1]))
        assert (res.map is None) == (name == "none")
    with pytest.raises(BundleError, match="abn"):
        make_provider(b, config_from_dict({"importance": {"provider": "abn"}}, env={}).importance)


@pytest.fixture(scope="module")
def images():
    import cv2

    from edge_runtime.datasets import load

    frames = load("shapes", "validation", 3)
    return np.stack([cv2.resize(im, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for im in frames.images])


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("opset", [13, 17])
def test_converter_matches_onnxruntime(opset):
    from edge_runtime.models.onnx_torch import convert

    model = helper_model(opset)
    x = np.random.default_rng(opset).normal(size=(3, 3, SIZE, SIZE)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"input.image/0": x}
    )[0]
    with torch.no_grad():
        got = convert(model)(torch.from_numpy(x))[0].numpy()
    assert _rel_err(got, want) <= 1e-5


@pytest.mark.parametrize("opset", [13, 17])
def test_helper_model_becomes_a_complete_bundle(opset, tmp_path, images):
    model = helper_model(opset)
    path = tmp_path / "outside.onnx"
    onnx.save(model, str(path))
    b = _split(path, SPLIT_AT, tmp_path / "b")
    assert b.importance["fused"]["layers"] == ["stage1/out", SPLIT_AT]  # the main stages by default
    assert sorted(b.graphs) == ["back", "front", *sorted(f"grad_{v}" for v in GRAD_VARIANTS)]
    _check_bundle(model, b, images)


def test_attention_from_picks_the_layers(tmp_path, images):
    model = helper_model(17)
    path = tmp_path / "outside.onnx"
    onnx.save(model, str(path))
    layers = ["stem/relu.out", "stage2/add", SPLIT_AT]
    b = _split(path, SPLIT_AT, tmp_path / "b", ["--attention-from", ",".join(layers),
                                                "--attention-weights", "1,1,2", "--variants"])  # fmt: skip
    spec = b.importance["fused"]
    assert spec["layers"] == layers and spec["weights"] == [1.0, 1.0, 2.0]
    assert "grad_plain" not in b.graphs
    x = b.preprocess(images)
    outs = _with_outputs(model, layers).run(None, {b.input.name: x})[1:]
    assert _rel_err(b.front(x)["fused_attention"], _fused_np(outs, [1, 1, 2], spec["shape"])) <= 1e-5


def test_torch_exported_resnet_becomes_a_complete_bundle(resnet_onnx, tmp_path, images):
    model = onnx.load(str(resnet_onnx))
    at = _split_name(model, [16, 8, 8])  # the output of layer2 (strided residual block)
    b = _split(resnet_onnx, at, tmp_path / "b")
    assert len(b.importance["fused"]["layers"]) >= 2
    _check_bundle(model, b, images)


def test_unsupported_operator_is_a_clear_error(tmp_path, capsys):
    from edge_runtime.cli import main

    path = tmp_path / "lrn.onnx"
    onnx.save(unsupported_model(), str(path))
    rc = main(["split", str(path), "--at", "c", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and "error: operator LRN (node 'the_lrn_node'" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()
    # without gradient graphs the model still splits (fused attention needs no conversion)
    assert main(["split", str(path), "--at", "c", "--out", str(tmp_path / "b"), "--variants"]) == 0
    # the model is fixed at batch 1; the bundle takes any batch (the receiver batches the back half)
    from edge_runtime.bundle import load_bundle

    b = load_bundle(tmp_path / "b")
    x = np.zeros((3, 3, 16, 16), np.float32)
    assert b.back(b.front(x)["c"]).shape == (3, K)


def test_finetune_onnx_trains_the_back_half_and_exports_a_complete_bundle(tmp_path):
    import cv2

    from edge_runtime.bundle import load_bundle
    from edge_runtime.cli import main
    from edge_runtime.datasets import load

    frames = load("shapes", "train", 40)
    root = tmp_path / "images"
    for i, (im, y) in enumerate(zip(frames.images, frames.labels, strict=True)):
        d = root / f"c{int(y) % K}"
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"{i}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    model = helper_model(17)
    path = tmp_path / "outside.onnx"
    onnx.save(model, str(path))
    rc = main(["finetune", "--onnx", str(path), "--at", SPLIT_AT, "--data", str(root), "--epochs", "1",
               "--batch-size", "8", "--threads", "1", "--out", str(tmp_path / "run")])  # fmt: skip
    assert rc == 0
    tuned = onnx.load(str(tmp_path / "run" / "model-finetuned.onnx"))
    before = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    after = {i.name: onnx.numpy_helper.to_array(i) for i in tuned.graph.initializer}
    assert np.array_equal(after["stem/conv.w"], before["stem/conv.w"])  # front frozen
    assert not np.array_equal(after["head/fc2.w"], before["head/fc2.w"])  # back trained
    b = load_bundle(tmp_path / "run" / "bundle")
    assert {"fused", *(f"grad_{v}" for v in GRAD_VARIANTS)} == set(b.importance)
    assert b.classes == tuple(f"c{k}" for k in range(K))
    assert "after" in b.manifest["finetune"]


def test_finetune_without_model_is_a_clear_error(capsys):
    from edge_runtime.cli import main

    assert main(["finetune", "--onnx", "/nonexistent.onnx", "--at", "x"]) == 2
    assert "error: ONNX model /nonexistent.onnx does not exist" in capsys.readouterr().err


def test_export_and_finetune_share_the_fused_attention_formula():
    """The project's own front graph and the fine-tuning's mask maps are one function."""
    from edge_runtime.models.attention import FUSION_WEIGHTS, map_size_for
    from edge_runtime.models.data import scene_dataset, to_tensor
    from edge_runtime.models.export import FrontGraph
    from edge_runtime.models.finetune import _front_cache
    from edge_runtime.models.networks import build_model

    torch.manual_seed(0)
    model = build_model("abn-s", num_classes=10).eval()
    data = scene_dataset(3, seed=9, size=64)
    _, cached = _front_cache(model, data, False)
    with torch.no_grad():
        _, graph = FrontGraph(model, FUSION_WEIGHTS, map_size_for((64, 64)))(to_tensor(data.images))
    assert cached.shape == (3, 1, 16, 16)
    torch.testing.assert_close(cached, graph)
