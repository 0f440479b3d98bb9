"""Turn any ONNX classifier into a bundle by splitting it at a named tensor.

``edge-runtime split model.onnx --at TENSOR --out DIR`` writes ``front.onnx`` (graph input ->
TENSOR) and ``back.onnx`` (TENSOR -> graph outputs) with ``onnx.utils.Extractor`` and a manifest.
Such a bundle has no gradient or attention graphs; the runtime can still use it with the "none"
importance provider, or with maps it computes itself.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import onnx
from onnx import shape_inference
from onnx.utils import Extractor

from edge_runtime.atomic import replace_dir
from edge_runtime.bundle import write_manifest

__all__ = ["split_model"]

_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}


def _shape_of(model: onnx.ModelProto, name: str) -> tuple[list, int]:
    for vi in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        if vi.name == name:
            t = vi.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            return dims, t.elem_type
    raise ValueError(f"tensor {name!r} has no inferred shape")


def split_model(
    model_path: str | Path,
    at: str,
    out_dir: str | Path,
    *,
    classes: list[str] | None = None,
    size: tuple[int, int] | None = None,
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    model_name: str | None = None,
) -> dict:
    """Split ``model_path`` at tensor ``at`` into a bundle in ``out_dir``; returns the manifest."""
    model_path = Path(model_path)
    model = shape_inference.infer_shapes(onnx.load(str(model_path)))
    names = {o for n in model.graph.node for o in n.output}
    if at not in names:
        sample = sorted(names)[:20]
        raise ValueError(f"{model_path} has no tensor {at!r}; some tensor names: {sample}")
    inits = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ValueError(f"expected a classifier with one image input, {model_path} has inputs {inputs}")
    outputs = [o.name for o in model.graph.output]
    in_dims, _ = _shape_of(model, inputs[0])
    if len(in_dims) != 4 or in_dims[1] != 3:
        raise ValueError(f"input {inputs[0]!r} must be N x 3 x H x W, got {in_dims}")
    if size is None:
        if in_dims[2] is None or in_dims[3] is None:
            raise ValueError("the model's input size is dynamic; pass --input-size H W")
        size = (in_dims[2], in_dims[3])
    split_dims, split_type = _shape_of(model, at)
    if split_type not in _ONNX_DTYPES:
        raise ValueError(f"tensor {at!r} has ONNX element type {split_type}; only float32 / float16 split")
    if len(split_dims) != 4 or any(d is None for d in split_dims[1:]):
        raise ValueError(f"tensor {at!r} must be N x C x H x W with static C, H, W; got {split_dims}")
    logits_dims, _ = _shape_of(model, outputs[0])
    num_classes = logits_dims[-1]
    if classes is None:
        if num_classes is None:
            raise ValueError("cannot infer the number of classes; pass --classes")
        classes = [f"class_{k}" for k in range(num_classes)]
    elif num_classes is not None and len(classes) != num_classes:
        raise ValueError(f"{len(classes)} class names given, the model has {num_classes} outputs")

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        ex = Extractor(model)
        onnx.save(ex.extract_model(inputs, [at]), str(tmp / "front.onnx"))
        onnx.save(ex.extract_model([at], outputs), str(tmp / "back.onnx"))
        manifest = write_manifest(
            tmp,
            {
                "model_name": model_name or model_path.stem,
                "arch": "onnx-split",
                "classes": list(classes),
                "input": {
                    "name": inputs[0],
                    "size": list(size),
                    "layout": "NCHW",
                    "color": "RGB",
                    "mean": list(mean),
                    "std": list(std),
                    "note": "x = (pixel / 255 - mean) / std",
                },
                "split": {"name": at, "shape": split_dims[1:], "dtype": _ONNX_DTYPES[split_type]},
                "graphs": {
                    "front": {"file": "front.onnx", "inputs": inputs, "outputs": [at]},
                    "back": {"file": "back.onnx", "inputs": [at], "outputs": outputs},
                },
                "importance": {},
                "source": {"file": model_path.name, "split_at": at},
            },
        )
        replace_dir(tmp, out_dir)  # atomic: the old code deleted the previous bundle first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
