"""Turn any ONNX classifier into a complete bundle by splitting it at a named tensor.

``edge-runtime split model.onnx --at TENSOR --out DIR`` writes

* ``front.onnx`` (graph input -> TENSOR, ``fused_attention``): cut with ``onnx.utils.Extractor``,
  with the fused attention map (:mod:`models.attention`, the project's one formula) appended by
  graph surgery over the layers named by ``--attention-from`` (default: the main stages before
  the split, :func:`models.attention.default_attention_layers`);
* ``back.onnx`` (TENSOR -> graph outputs);
* ``grad_<variant>.onnx`` for the four gradient variants (:mod:`models.gradients`), when every
  operator of the model is one :mod:`models.onnx_torch` converts (else a clear error naming the
  operator and node; ``--variants`` with no names skips them);
* ``manifest.json`` with the attention layers and weights.

Importance providers such a bundle offers: ``fused``, ``grad_plain``, ``grad_guided``,
``grad_selective``, ``grad_extsel`` and ``none`` (six). ``abn`` needs an Attention Branch
Network's attention branch, which an outside classifier does not have: it is not offered.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import onnx
from onnx import shape_inference
from onnx.utils import Extractor

from edge_runtime.atomic import replace_dir
from edge_runtime.bundle import GRAD_VARIANTS, write_manifest
from edge_runtime.models.attention import (
    FUSED_OUTPUT,
    add_fused_attention,
    default_attention_layers,
    default_weights,
    map_size_for,
)

__all__ = ["split_model"]

log = logging.getLogger(__name__)

_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}


def _shape_of(model: onnx.ModelProto, name: str) -> tuple[list, int]:
    for vi in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        if vi.name == name:
            t = vi.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            return dims, t.elem_type
    raise ValueError(f"tensor {name!r} has no inferred shape")


def _dynamic_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a batch-1 model with a symbolic batch, if the graph runs at batch 2 (the receiver
    batches the back half across cameras); else the model as it is, with a warning."""
    inits = {i.name for i in model.graph.initializer}
    ins = [i for i in model.graph.input if i.name not in inits]
    dims = ins[0].type.tensor_type.shape.dim if len(ins) == 1 else []
    if not dims or not dims[0].HasField("dim_value") or dims[0].dim_value != 1:
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in [i for i in m.graph.input if i.name not in inits] + list(m.graph.output):
        d = vi.type.tensor_type.shape.dim
        if d and d[0].HasField("dim_value") and d[0].dim_value == 1:
            d[0].dim_param = "N"
    del m.graph.value_info[:]
    try:
        import numpy as np
        import onnxruntime as ort

        shape = [2] + [d.dim_value or 1 for d in dims[1:]]
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        sess.run(None, {ins[0].name: np.zeros(shape, np.float32)})
    except Exception as e:  # onnxruntime's own exception types: a batch size fixed inside the graph
        log.warning(
            "the model is fixed at batch 1 and does not run at batch 2 (%s); the bundle stays batch 1: "
            "run the receiver with --max-batch 1",
            str(e).splitlines()[0][:200],
        )
        return model
    return m


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
    attention_from: list[str] | None = None,
    attention_weights: list[float] | None = None,
    variants=GRAD_VARIANTS,
    extra: dict | None = None,
) -> dict:
    """Split ``model_path`` (a path or a loaded ``ModelProto``) at tensor ``at`` into a bundle in
    ``out_dir``; returns the manifest."""
    if isinstance(model_path, onnx.ModelProto):
        loaded, model_path = model_path, Path(model_name or "model.onnx")
    else:
        model_path = Path(model_path)
        if not model_path.is_file():
            raise ValueError(f"ONNX model {model_path} does not exist")
        try:
            loaded = onnx.load(str(model_path))
        except Exception as e:  # onnx raises DecodeError and others on a bad file
            raise ValueError(f"{model_path} is not a readable ONNX model: {e}") from e
    loaded = _dynamic_batch(loaded)
    model = shape_inference.infer_shapes(loaded)
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

    layers = list(attention_from) if attention_from else default_attention_layers(model, at)
    for t in layers:
        if t not in names:
            raise ValueError(f"--attention-from: {model_path} has no tensor {t!r}")
        dims, et = _shape_of(model, t)
        if len(dims) != 4 or et != onnx.TensorProto.FLOAT:
            raise ValueError(
                f"--attention-from: tensor {t!r} must be a float32 N x C x H x W tensor, got {dims}"
            )
    weights = list(attention_weights) if attention_weights else list(default_weights(len(layers)))
    if len(weights) != len(layers) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(
            f"attention weights must be {len(layers)} non-negative numbers with a positive sum, got {weights}"
        )
    variants = tuple(variants)
    if variants:
        from edge_runtime.models.onnx_torch import check_supported  # needs torch: only when graphs are made

        check_supported(model)
    map_size = map_size_for(size)

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        ex = Extractor(model)
        front = ex.extract_model(inputs, [at, *[t for t in layers if t != at]])
        del front.graph.output[1:]  # the layer outputs feed the fused map; they are not outputs
        add_fused_attention(front, layers, weights, map_size)
        onnx.checker.check_model(front)
        onnx.save(front, str(tmp / "front.onnx"))
        onnx.save(ex.extract_model([at], outputs), str(tmp / "back.onnx"))
        graphs = {
            "front": {"file": "front.onnx", "inputs": inputs, "outputs": [at, FUSED_OUTPUT]},
            "back": {"file": "back.onnx", "inputs": [at], "outputs": outputs},
        }
        importance = {
            "fused": {
                "graph": "front",
                "output": FUSED_OUTPUT,
                "shape": list(map_size),
                "weights": weights,
                "layers": layers,
                "description": "mean |activation| per layer, resized, max-normalised, weighted sum",
            }
        }
        if variants:
            from edge_runtime.models.gradients import export_gradient_graphs

            g, imp = export_gradient_graphs(loaded, tmp, tuple(size), variants, inputs[0])
            graphs |= g
            importance |= imp
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
                "graphs": graphs,
                "importance": importance,
                "source": {"file": model_path.name, "split_at": at},
                **(extra or {}),
            },
        )
        replace_dir(tmp, out_dir)  # atomic: the old code deleted the previous bundle first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
