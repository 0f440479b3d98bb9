"""Gradient graphs (``grad_<variant>.onnx``) for an outside ONNX classifier.

The classifier is converted to PyTorch (:mod:`models.onnx_torch`) and goes through the same
trace-and-export path as the project's own networks (:func:`models.export.trace_influence`:
``make_fx`` with the project's decomposition table, then the dynamo exporter), so the graphs
follow the same reference conventions (:mod:`models.export`'s docstring): inputs ``image`` and
``reference``, outputs ``influence`` and ``logits``, batch 1.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch

from edge_runtime.bundle import GRAD_VARIANTS
from edge_runtime.models.export import _export, influence_fn, trace_influence
from edge_runtime.models.onnx_torch import OnnxModule, convert

__all__ = ["export_gradient_graphs", "reference_influence", "grad_entries"]


def _frozen(model: onnx.ModelProto | OnnxModule) -> OnnxModule:
    module = model if isinstance(model, OnnxModule) else convert(model)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    if module.num_classes is None:
        raise ValueError("the model's output has no static class count; cannot build gradient graphs")
    return module


def grad_entries(variant: str, size, input_name: str = "image") -> tuple[dict, dict]:
    """The manifest's ``graphs`` and ``importance`` entries of ``grad_<variant>``."""
    name = f"grad_{variant}"
    graph = {"file": f"{name}.onnx", "inputs": [input_name, "reference"], "outputs": ["influence", "logits"]}
    imp = {
        "graph": name,
        "output": "influence",
        "shape": list(size),
        "batch": 1,
        "reference": "one-hot target (extsel: class weights); all-zero = own top "
        "prediction (extsel: top-1 minus top-2)",
    }
    return graph, imp


def export_gradient_graphs(
    model: onnx.ModelProto | OnnxModule,
    folder: str | Path,
    size: tuple[int, int],
    variants=GRAD_VARIANTS,
    input_name: str = "image",
) -> tuple[dict, dict]:
    """Write ``grad_<variant>.onnx`` for each variant into ``folder``; returns the manifest's
    ``graphs`` and ``importance`` entries for them. The image input is named ``input_name`` (the
    front graph's, so that the runtime feeds both the same way)."""
    module = _frozen(model)
    folder = Path(folder)
    graphs, importance = {}, {}
    for variant in variants:
        if variant not in GRAD_VARIANTS:
            raise ValueError(f"gradient variant must be one of {GRAD_VARIANTS}, got {variant!r}")
        gm = trace_influence(module, variant, tuple(size))
        args = (torch.zeros(1, 3, *size), torch.zeros(1, module.num_classes))
        name = f"grad_{variant}"
        _export(gm, args, folder / f"{name}.onnx", [input_name, "reference"], ["influence", "logits"], False)
        graphs[name], importance[name] = grad_entries(variant, size, input_name)
    return graphs, importance


def reference_influence(model: onnx.ModelProto | OnnxModule, variant: str, image, reference):
    """What ``grad_<variant>`` computes, by eager PyTorch autograd on the converted model (guided
    ReLUs by a custom autograd function): (influence, logits) as tensors."""
    module = _frozen(model)
    module.guided = variant == "guided"
    try:
        with torch.enable_grad():
            return influence_fn(module, variant)(torch.as_tensor(image), torch.as_tensor(reference))
    finally:
        module.guided = False
