"""An outside ONNX classifier as a PyTorch module, for its gradient graphs and its fine-tuning.

:func:`convert` turns an ONNX graph built of the operators that CNN classifiers use
(:data:`SUPPORTED_OPS`) into an ``nn.Module`` that runs the same computation node by node with
``torch.nn.functional``. Float initializers become parameters named after the ONNX initializer
(so fine-tuned values can be written back into the graph: :func:`write_back`), everything else
buffers. The module then goes through the project's own trace-and-export path
(:func:`models.export.trace_influence`, ``make_fx`` + dynamo exporter).

Why not ``onnx2torch`` or ONNX Runtime's gradient builder (measured 2026-12-02, this machine):

* ``onnx2torch`` 1.5.15 imports ``torchvision`` at import time (its NMS / RoIAlign converters);
  the only ``torchvision`` wheel that fits ``torch==2.13.0+cpu`` here (0.28.0 from PyPI) is a CUDA
  build and fails on import (``RuntimeError: operator torchvision::nms does not exist``), and
  ``pip install onnx2torch`` would replace the pinned CPU torch with torch 2.14 and 18 CUDA
  packages. Unusable without breaking the ``train`` extra's pin.
* ONNX Runtime's gradient builder ships only in ``onnxruntime-training`` (last release 1.19.2),
  which installs the same ``onnxruntime`` package as the runtime's ``onnxruntime`` 1.32 and cannot
  sit beside it.

So the converter is ours: about 200 lines for exactly the operators listed, each checked by
``tests/models/test_byo.py`` against ONNX Runtime on the original graph and against autograd.
An unsupported operator is an :class:`UnsupportedOperator` naming the operator and its node.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import nn

__all__ = ["SUPPORTED_OPS", "UnsupportedOperator", "OnnxModule", "convert", "check_supported", "write_back"]

# The operators of the issue, plus the few that exporters emit around them (constants, shape
# arithmetic for Reshape, ReduceMean for a mean over H and W, Sub / Div for input normalisation).
SUPPORTED_OPS = (
    "Conv",
    "ConvTranspose",
    "BatchNormalization",
    "Relu",
    "LeakyRelu",
    "Clip",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "Add",
    "Mul",
    "Concat",
    "Flatten",
    "Reshape",
    "Gemm",
    "MatMul",
    "Softmax",
    # emitted around them by exporters
    "Sub",
    "Div",
    "ReduceMean",
    "Identity",
    "Dropout",
    "Constant",
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
)


class UnsupportedOperator(ValueError):
    """The graph holds an operator (or an attribute value) the converter does not implement."""


def check_supported(model: onnx.ModelProto) -> None:
    """Raise :class:`UnsupportedOperator` for the first node the converter cannot run."""
    for i, n in enumerate(model.graph.node):
        if n.domain not in ("", "ai.onnx"):
            raise UnsupportedOperator(
                f"operator {n.domain}.{n.op_type} (node {n.name or i!r}) is not supported; "
                f"supported: {', '.join(SUPPORTED_OPS)}"
            )
        if n.op_type not in SUPPORTED_OPS:
            raise UnsupportedOperator(
                f"operator {n.op_type} (node {n.name or i!r}, output {n.output[0]!r}) is not supported "
                f"for gradient graphs and fine-tuning; supported: {', '.join(SUPPORTED_OPS)}"
            )


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads(a: dict, nd: int, node) -> tuple[list[int], list[int]]:
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto not in ("NOTSET", "VALID"):
        raise UnsupportedOperator(f"{node.op_type} node {node.name!r}: auto_pad={auto} is not supported")
    pads = list(a.get("pads", [0] * (2 * nd)))
    return pads[:nd], pads[nd:]


def _sym_or_pad(x, begin, end, value=0.0):
    """Symmetric padding as a list for the torch op, else pad explicitly (returns x, [0, ...])."""
    if begin == end:
        return x, list(begin)
    pad = []
    for b, e in zip(reversed(begin), reversed(end), strict=True):
        pad += [b, e]
    return F.pad(x, pad, value=value), [0] * len(begin)


class _GuidedRelu(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients (guided back-propagation)."""

    @staticmethod
    def forward(ctx, x):
        y = x.clamp(min=0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return torch.where((y > 0) & (g > 0), g, 0.0)


class OnnxModule(nn.Module):
    """Runs an ONNX graph with torch ops. ``forward(image) -> (logits,)`` (a tuple, like the
    project's networks); ``outputs`` selects other tensors (e.g. layer outputs)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        check_supported(model)
        g = model.graph
        self.nodes = list(g.node)
        self.attrs = [_attrs(n) for n in self.nodes]
        inits = {i.name for i in g.initializer}
        self.input_names = [i.name for i in g.input if i.name not in inits]
        self.output_names = [o.name for o in g.output]
        self.params = nn.ParameterDict()
        self.consts: dict[str, torch.Tensor] = {}
        self._keys: dict[str, str] = {}  # ONNX initializer name -> ParameterDict key
        for init in g.initializer:
            arr = numpy_helper.to_array(init)
            if arr.dtype.kind == "f":
                key = f"p{len(self._keys)}"
                self._keys[init.name] = key
                self.params[key] = nn.Parameter(torch.from_numpy(arr.astype(np.float32).copy()))
            else:
                self.consts[init.name] = torch.from_numpy(arr.copy())
        for n in self.nodes:
            if n.op_type == "Constant":
                a = _attrs(n)
                if "value" not in a:
                    raise UnsupportedOperator(
                        f"Constant node {n.name!r}: only the 'value' attribute is supported"
                    )
                arr = numpy_helper.to_array(a["value"])
                t = torch.from_numpy(arr.astype(np.float32) if arr.dtype.kind == "f" else arr.copy())
                self.consts[n.output[0]] = t
        dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
        self.num_classes = int(dims[-1]) if dims and dims[-1] > 0 else None
        self.guided = False

    def param_of(self, init_name: str) -> nn.Parameter:
        return self.params[self._keys[init_name]]

    def initializer_names(self) -> list[str]:
        return list(self._keys)

    def forward(self, image: torch.Tensor, outputs: list[str] | None = None):
        env: dict[str, torch.Tensor] = {self.input_names[0]: image}
        for name, key in self._keys.items():
            env[name] = self.params[key]
        env.update(self.consts)
        for node, a in zip(self.nodes, self.attrs, strict=True):
            if node.op_type == "Constant":
                continue
            ins = [env[i] if i else None for i in node.input]
            res = self._run(node, a, ins)
            for o, r in zip(node.output, res if isinstance(res, tuple) else (res,), strict=False):
                env[o] = r
        names = outputs or self.output_names[:1]
        return tuple(env[n] for n in names)

    def _run(self, node, a, ins):  # noqa: C901 (one branch per operator, read top to bottom)
        op = node.op_type
        x = ins[0]
        if op in ("Identity", "Dropout"):
            return x
        if op == "Relu":
            return _GuidedRelu.apply(x) if self.guided else F.relu(x)
        if op == "LeakyRelu":
            return F.leaky_relu(x, a.get("alpha", 0.01))
        if op == "Sigmoid":
            return torch.sigmoid(x)
        if op == "HardSigmoid":
            return torch.clamp(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0.0, 1.0)
        if op == "HardSwish":
            return F.hardswish(x)
        if op == "Clip":
            lo = ins[1] if len(ins) > 1 and ins[1] is not None else a.get("min")
            hi = ins[2] if len(ins) > 2 and ins[2] is not None else a.get("max")
            lo = float(lo) if lo is not None else None
            hi = float(hi) if hi is not None else None
            return torch.clamp(x, lo, hi)
        if op == "Add":
            return x + ins[1]
        if op == "Sub":
            return x - ins[1]
        if op == "Mul":
            return x * ins[1]
        if op == "Div":
            return x / ins[1]
        if op == "Concat":
            return torch.cat(ins, dim=a["axis"])
        if op == "Softmax":
            return torch.softmax(x, dim=a.get("axis", -1))
        if op == "MatMul":
            return torch.matmul(x, ins[1])
        if op == "Gemm":
            A = x.t() if a.get("transA", 0) else x
            B = ins[1].t() if a.get("transB", 0) else ins[1]
            y = a.get("alpha", 1.0) * (A @ B)
            if len(ins) > 2 and ins[2] is not None:
                y = y + a.get("beta", 1.0) * ins[2]
            return y
        if op == "Flatten":
            axis = a.get("axis", 1) % x.dim()
            return x.reshape(math.prod(x.shape[:axis]), -1)
        if op == "Reshape":
            shape = [int(s) for s in ins[1].tolist()]
            if not a.get("allowzero", 0):
                shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
            return x.reshape(shape)
        if op == "Shape":
            return torch.tensor(list(x.shape), dtype=torch.int64)
        if op == "Gather":
            return torch.index_select(x, a.get("axis", 0), ins[1].reshape(-1)).reshape(
                *x.shape[: a.get("axis", 0)], *ins[1].shape, *x.shape[a.get("axis", 0) + 1 :]
            )
        if op in ("Unsqueeze", "Squeeze"):
            axes = (
                a.get("axes")
                if "axes" in a
                else (ins[1].tolist() if len(ins) > 1 and ins[1] is not None else None)
            )
            if op == "Squeeze":
                return x.squeeze() if axes is None else x.squeeze(tuple(int(i) for i in axes))
            for ax in sorted(int(i) % (x.dim() + len(axes)) for i in axes):
                x = x.unsqueeze(ax)
            return x
        if op == "ReduceMean":
            axes = (
                a.get("axes")
                if "axes" in a
                else (ins[1].tolist() if len(ins) > 1 and ins[1] is not None else None)
            )
            keep = bool(a.get("keepdims", 1))
            if axes is None:
                return x.mean(dim=tuple(range(x.dim())), keepdim=keep)
            return x.mean(dim=tuple(int(i) for i in axes), keepdim=keep)
        if op == "GlobalAveragePool":
            return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
        if op == "BatchNormalization":
            if a.get("training_mode", 0):
                raise UnsupportedOperator(f"BatchNormalization node {node.name!r}: training_mode=1")
            return F.batch_norm(x, ins[3], ins[4], ins[1], ins[2], False, 0.0, a.get("epsilon", 1e-5))
        nd = x.dim() - 2
        if op in ("Conv", "ConvTranspose"):
            if nd != 2:
                raise UnsupportedOperator(f"{op} node {node.name!r}: only 2-D convolutions are supported")
            begin, end = _pads(a, nd, node)
            strides = a.get("strides", [1] * nd)
            dil = a.get("dilations", [1] * nd)
            group = a.get("group", 1)
            b = ins[2] if len(ins) > 2 else None
            if op == "Conv":
                x, pad = _sym_or_pad(x, begin, end)
                return F.conv2d(x, ins[1], b, strides, pad, dil, group)
            if "output_shape" in a:
                raise UnsupportedOperator(f"ConvTranspose node {node.name!r}: output_shape is not supported")
            if begin != end:
                raise UnsupportedOperator(f"ConvTranspose node {node.name!r}: asymmetric pads {begin + end}")
            if group != 1:
                raise UnsupportedOperator(f"ConvTranspose node {node.name!r}: group={group} (only 1)")
            out_pad = a.get("output_padding", [0] * nd)
            return F.conv_transpose2d(x, ins[1], b, strides, begin, out_pad, group, dil)
        if op in ("MaxPool", "AveragePool"):
            if nd != 2:
                raise UnsupportedOperator(f"{op} node {node.name!r}: only 2-D pooling is supported")
            if len(node.output) > 1 and node.output[1]:
                raise UnsupportedOperator(f"MaxPool node {node.name!r}: the Indices output is not supported")
            k = a["kernel_shape"]
            begin, end = _pads(a, nd, node)
            strides = a.get("strides", [1] * nd)
            ceil = bool(a.get("ceil_mode", 0))
            if op == "MaxPool":
                x, pad = _sym_or_pad(x, begin, end, value=-math.inf)
                return F.max_pool2d(x, k, strides, pad, a.get("dilations", [1] * nd), ceil)
            if begin != end:
                raise UnsupportedOperator(f"AveragePool node {node.name!r}: asymmetric pads {begin + end}")
            return F.avg_pool2d(x, k, strides, begin, ceil, bool(a.get("count_include_pad", 0)))
        raise UnsupportedOperator(f"operator {op} (node {node.name!r}) is not supported")


def convert(model: onnx.ModelProto) -> OnnxModule:
    """``model`` as an :class:`OnnxModule` in eval mode (raises :class:`UnsupportedOperator`)."""
    return OnnxModule(model).eval()


def write_back(module: OnnxModule, model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose float initializers hold ``module``'s current parameter values."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        if init.name in module._keys:
            arr = module.param_of(init.name).detach().cpu().numpy()
            dtype = numpy_helper.to_array(init).dtype
            init.CopyFrom(numpy_helper.from_array(arr.astype(dtype), init.name))
    return out
