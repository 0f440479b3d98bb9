"""`edge-runtime split`: any ONNX classifier becomes a bundle."""

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the offline extra: pip install '.[train]'")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def whole_model(tmp_path_factory):
    import torch

    from edge_runtime.models.networks import build_model

    torch.manual_seed(1)
    model = build_model("plain-s", num_classes=5, bottleneck=8).eval()

    class Whole(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, image):
            return self.m(image)[0]

    path = tmp_path_factory.mktemp("split") / "whole.onnx"
    torch.onnx.export(
        Whole(model).eval(),
        (torch.zeros(1, 3, 128, 128),),
        str(path),
        dynamo=True,
        external_data=False,
        input_names=["image"],
        output_names=["logits"],
    )
    return path


def _split_tensor(path):
    import onnx

    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    for vi in m.graph.value_info:  # topological order: the last 8x16x16 tensor is the bottleneck's
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if dims[1:] == [8, 16, 16]:
            name = vi.name
    return name


def test_split_bundle_reproduces_the_whole_model(whole_model, tmp_path):
    import onnxruntime as ort

    from edge_runtime.bundle import load_bundle
    from edge_runtime.cli import main
    from edge_runtime.scenes import SceneGenerator

    at = _split_tensor(whole_model)
    out = tmp_path / "bundle"
    rc = main(
        [
            "split",
            str(whole_model),
            "--at",
            at,
            "--out",
            str(out),
            "--classes",
            "a,b,c,d,e",
            "--mean",
            "0.5",
            "0.5",
            "0.5",
            "--std",
            "0.25",
            "0.25",
            "0.25",
        ]
    )
    assert rc == 0
    b = load_bundle(out)
    assert b.split_shape == (8, 16, 16) and b.classes == ("a", "b", "c", "d", "e")
    x = b.preprocess(SceneGenerator(seed=2).sample(0).image)
    whole = ort.InferenceSession(str(whole_model), providers=["CPUExecutionProvider"])
    want = whole.run(None, {"image": x})[0]
    got = b.back(b.front(x)[b.split_name])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_split_errors_name_the_problem(whole_model, tmp_path):
    from edge_runtime.models.split import split_model

    with pytest.raises(ValueError, match="no tensor 'nope'"):
        split_model(whole_model, "nope", tmp_path / "x")
    with pytest.raises(ValueError, match="3 class names given"):
        split_model(whole_model, _split_tensor(whole_model), tmp_path / "x", classes=["a", "b", "c"])
    assert not (tmp_path / "x").exists()
