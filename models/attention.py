"""The fused attention map: the one formula, in PyTorch and as ONNX nodes.

For each chosen layer output ``a_l`` (N x C x H x W) and weight ``w_l``::

    m_l   = resize(mean_c |a_l|, map_size)           bilinear, half-pixel centres (align_corners=False)
    fused = sum_l w_l * m_l / (max_hw m_l + EPS)  /  sum_l w_l

so each layer contributes a map with a per-image maximum of (nearly) 1 and ``fused`` lies in
[0, 1]. The map size is the input size divided by :data:`MAP_STRIDE`.

Three users share it: :class:`models.export.FrontGraph` (the project's own networks, exported
with the dynamo exporter), :func:`models.finetune._front_cache` (the map the fine-tuning draws
masks from) and :func:`add_fused_attention`, which appends the same arithmetic as ONNX nodes to
any front graph (``edge-runtime split``). Before, export and fine-tuning held two copies, the
fine-tuning one at a hard-coded stride of 8.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "FUSION_WEIGHTS",
    "FUSED_OUTPUT",
    "EPS",
    "MAP_STRIDE",
    "map_size_for",
    "fuse",
    "add_fused_attention",
    "default_attention_layers",
    "default_weights",
]

# Weights of (stage1, stage2, stage3, bottleneck) of the project's networks: deeper layers are
# more object-specific; stage 1 mostly responds to edges of the clutter.
FUSION_WEIGHTS = (0.1, 0.2, 0.3, 0.4)
FUSED_OUTPUT = "fused_attention"
EPS = 1e-6
MAP_STRIDE = 4


def map_size_for(size: Sequence[int]) -> tuple[int, int]:
    """The fused map's (height, width) for an input of ``size`` (height, width)."""
    return (max(1, int(size[0]) // MAP_STRIDE), max(1, int(size[1]) // MAP_STRIDE))


def default_weights(n: int) -> tuple[float, ...]:
    """A linear ramp 1..n normalised to sum 1 (deeper layers weigh more); n = 4 gives
    :data:`FUSION_WEIGHTS`."""
    total = n * (n + 1) / 2
    return tuple(round((i + 1) / total, 6) for i in range(n))


def fuse(layers, weights: Sequence[float], map_size: tuple[int, int]):
    """The fused map (N x 1 x h x w) of torch layer outputs."""
    import torch.nn.functional as F

    fused = None
    for w, layer in zip(weights, layers, strict=True):
        a = layer.abs().mean(dim=1, keepdim=True)
        a = F.interpolate(a, size=tuple(map_size), mode="bilinear", align_corners=False)
        term = float(w) * a / (a.amax(dim=(2, 3), keepdim=True) + EPS)
        fused = term if fused is None else fused + term
    return fused / float(sum(weights))


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    raise ValueError("the model imports no default-domain ONNX opset")


def add_fused_attention(
    model: onnx.ModelProto,
    layers: Sequence[str],
    weights: Sequence[float],
    map_size: tuple[int, int],
    output: str = FUSED_OUTPUT,
) -> onnx.ModelProto:
    """Append :func:`fuse` as ONNX nodes reading tensors ``layers`` and add graph output
    ``output`` (N x 1 x h x w float32). Modifies and returns ``model``; works at opsets 13 to 21
    (axes as attributes before opset 18, as inputs from 18)."""
    if len(layers) != len(weights) or not layers:
        raise ValueError(f"one weight per layer: {len(layers)} layers, {len(weights)} weights")
    opset = _opset(model)
    if opset < 13:
        raise ValueError(f"the model's opset is {opset}; fused attention needs opset 13 or later")
    g = model.graph
    produced = {o for n in g.node for o in n.output} | {i.name for i in g.input}
    missing = [t for t in layers if t not in produced]
    if missing:
        raise ValueError(f"attention layers {missing} are not tensors of the front graph")
    if output in produced:
        raise ValueError(f"the front graph already has a tensor named {output!r}")
    p = f"{output}/"  # every new name lives under this prefix
    inits = []

    def const(name, array):
        inits.append(numpy_helper.from_array(array, p + name))
        return p + name

    import numpy as np

    nodes = []
    if opset >= 18:
        ax1, ax23 = const("axes_c", np.array([1], np.int64)), const("axes_hw", np.array([2, 3], np.int64))

    def reduce(op, x, axes_name, axes, out):
        if opset >= 18:
            nodes.append(helper.make_node(op, [x, axes_name], [out], keepdims=1))
        else:
            nodes.append(helper.make_node(op, [x], [out], axes=list(axes), keepdims=1))

    total = float(sum(weights))
    eps = const("eps", np.array(EPS, np.float32))
    # Resize takes the size of every axis: (N, 1, h, w) with N read from the first layer
    n_of = p + "n"
    nodes.append(helper.make_node("Shape", [layers[0]], [p + "shape"]))
    start, end = const("start", np.array([0], np.int64)), const("end", np.array([1], np.int64))
    nodes.append(helper.make_node("Slice", [p + "shape", start, end], [n_of]))
    chw = const("chw", np.array([1, *map_size], np.int64))
    nodes.append(helper.make_node("Concat", [n_of, chw], [p + "sizes"], axis=0))
    terms = []
    for i, (t, w) in enumerate(zip(layers, weights, strict=True)):
        q = f"{p}{i}/"
        nodes.append(helper.make_node("Abs", [t], [q + "abs"]))
        reduce("ReduceMean", q + "abs", ax1 if opset >= 18 else None, [1], q + "mean")
        nodes.append(
            helper.make_node(
                "Resize",
                [q + "mean", "", "", p + "sizes"],
                [q + "resized"],
                mode="linear",
                coordinate_transformation_mode="half_pixel",
            )
        )
        reduce("ReduceMax", q + "resized", ax23 if opset >= 18 else None, [2, 3], q + "max")
        nodes.append(helper.make_node("Add", [q + "max", eps], [q + "den"]))
        nodes.append(helper.make_node("Div", [q + "resized", q + "den"], [q + "norm"]))
        wn = const(f"{i}/w", np.array(float(w) / total, np.float32))
        nodes.append(helper.make_node("Mul", [q + "norm", wn], [q + "term"]))
        terms.append(q + "term")
    nodes.append(helper.make_node("Sum", terms, [output]))
    g.node.extend(nodes)
    g.initializer.extend(inits)
    g.output.append(
        helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", 1, int(map_size[0]), int(map_size[1])])
    )
    return model


def _shape(vi) -> list:
    return [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]


def default_attention_layers(model: onnx.ModelProto, at: str) -> list[str]:
    """The main stages before the split: of the 4-D float tensors that ``at`` depends on, the
    last one (in graph order) at each spatial resolution below the input's, ending with ``at``.

    ``model`` must carry inferred shapes (``onnx.shape_inference.infer_shapes``)."""
    g = model.graph
    shapes = {vi.name: vi for vi in list(g.value_info) + list(g.input) + list(g.output)}
    producer = {o: n for n in g.node for o in n.output}
    needed, stack = set(), [at]
    while stack:
        t = stack.pop()
        if t in needed or t not in producer:
            continue
        needed.add(t)
        stack.extend(i for i in producer[t].input if i)
    inits = {i.name for i in g.initializer}
    image = next(i for i in g.input if i.name not in inits)
    in_hw = tuple(_shape(image)[2:])
    last_at: dict[tuple, str] = {}
    for n in g.node:
        for o in n.output:
            vi = shapes.get(o)
            if o not in needed or vi is None or vi.type.tensor_type.elem_type != TensorProto.FLOAT:
                continue
            dims = _shape(vi)
            if len(dims) != 4 or None in dims[1:] or tuple(dims[2:]) == in_hw:
                continue
            last_at[tuple(dims[2:])] = o
    layers = [t for t in last_at.values() if t != at] + [at]
    # graph order = order of first appearance of each resolution's last tensor
    order = {o: i for i, n in enumerate(g.node) for o in n.output}
    return sorted(layers, key=order.__getitem__)
