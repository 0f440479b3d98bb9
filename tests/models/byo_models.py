"""Models the project did not write, for the bring-your-own-model tests.

``helper_model`` is built with ``onnx.helper`` alone: tensor names with slashes and dots, a
dynamic batch, every supported operator. ``unsupported_model`` holds an LRN node.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

K = 5  # classes
SIZE = 32


def _w(rng, *shape, scale=0.3):
    return (rng.normal(size=shape) * scale).astype(np.float32)


def helper_model(opset: int = 13, seed: int = 0) -> onnx.ModelProto:
    """3 x 32 x 32 -> 5 logits; the split tensor is ``stage2/block.1/out`` (16 x 8 x 8)."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(op, ins, outs, **kw):
        nodes.append(helper.make_node(op, ins, outs, name=f"{outs[0]}::{op}", **kw))
        return outs[0]

    x = "input.image/0"
    # stem: Conv + BN + Relu, 3 -> 8, stride 2 -> 16 x 16
    t = node(
        "Conv",
        [x, init("stem/conv.w", _w(rng, 8, 3, 3, 3)), init("stem/conv.b", _w(rng, 8))],
        ["stem/conv.out"],
        pads=[1, 1, 1, 1],
        strides=[2, 2],
    )
    t = node(
        "BatchNormalization",
        [
            t,
            init("stem/bn.g", (1 + _w(rng, 8, scale=0.1))),
            init("stem/bn.b", _w(rng, 8, scale=0.1)),
            init("stem/bn.m", _w(rng, 8, scale=0.1)),
            init("stem/bn.v", (1 + np.abs(_w(rng, 8, scale=0.2)))),
        ],
        ["stem/bn.out"],
        epsilon=1e-5,
    )
    t = node("Relu", [t], ["stem/relu.out"])
    # stage1: two branches concatenated (LeakyRelu, HardSwish), Clip, 16 x 16
    a = node("Conv", [t, init("stage1/a.w", _w(rng, 4, 8, 3, 3))], ["stage1/a.out"], pads=[1, 1, 1, 1])
    a = node("LeakyRelu", [a], ["stage1/a.act"], alpha=0.1)
    b = node("Conv", [t, init("stage1/b.w", _w(rng, 4, 8, 1, 1))], ["stage1/b.out"])
    if opset >= 14:
        b = node("HardSwish", [b], ["stage1/b.act"])
    else:  # HardSwish is opset 14: the same function from HardSigmoid
        hs = node("HardSigmoid", [b], ["stage1/b.hsig"], alpha=1 / 6, beta=0.5)
        b = node("Mul", [b, hs], ["stage1/b.act"])
    c = node("Concat", [a, b], ["stage1/cat"], axis=1)
    c = node(
        "Clip",
        [
            c,
            init("stage1/clip.lo", np.array(-1.0, np.float32)),
            init("stage1/clip.hi", np.array(3.0, np.float32)),
        ],
        ["stage1/out"],
    )
    # stage2: MaxPool -> 8 x 8, conv, residual Add, gate Mul by HardSigmoid and Sigmoid
    p = node("MaxPool", [c], ["stage2/pool"], kernel_shape=[2, 2], strides=[2, 2])
    d = node(
        "Conv",
        [p, init("stage2/block.0/w", _w(rng, 16, 8, 3, 3)), init("stage2/block.0/b", _w(rng, 16))],
        ["stage2/block.0/out"],
        pads=[1, 1, 1, 1],
    )
    d = node("Relu", [d], ["stage2/block.0/act"])
    s = node("Conv", [p, init("stage2/skip.w", _w(rng, 16, 8, 1, 1))], ["stage2/skip.out"])
    r = node("Add", [d, s], ["stage2/add"])
    gsig = node("HardSigmoid", [r], ["stage2/hsig"], alpha=0.2, beta=0.5)
    r = node("Mul", [r, gsig], ["stage2/gated"])
    split = node("Sigmoid", [r], ["stage2/block.1/out"])
    # back: ConvTranspose up to 16 x 16, AveragePool back to 8, GlobalAveragePool, Flatten,
    # Gemm, MatMul, Reshape, Softmax? no: logits are the output (Softmax on a side branch)
    u = node(
        "ConvTranspose",
        [split, init("head/up.w", _w(rng, 16, 8, 2, 2)), init("head/up.b", _w(rng, 8))],
        ["head/up.out"],
        strides=[2, 2],
    )
    u = node("Relu", [u], ["head/up.act"])
    u = node("AveragePool", [u], ["head/avg"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    gap = node("GlobalAveragePool", [u], ["head/gap"])
    f = node("Flatten", [gap], ["head/flat"], axis=1)
    h = node(
        "Gemm",
        [f, init("head/fc1.w", _w(rng, 12, 8)), init("head/fc1.b", _w(rng, 12))],
        ["head/fc1.out"],
        transB=1,
    )
    h = node("Relu", [h], ["head/fc1.act"])
    sm = node("Softmax", [h], ["head/attn"], axis=1)
    h = node("Mul", [h, sm], ["head/attended"])
    h = node("Reshape", [h, init("head/shape", np.array([-1, 12], np.int64))], ["head/reshaped"])
    node("MatMul", [h, init("head/fc2.w", _w(rng, 12, K))], ["logits.final/0"])
    graph = helper.make_graph(
        nodes,
        "outside-helper",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits.final/0", TensorProto.FLOAT, ["batch", K])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


SPLIT_AT = "stage2/block.1/out"


def unsupported_model() -> onnx.ModelProto:
    """A Conv, an LRN (not supported) and a classifier head."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(_w(rng, 4, 3, 3, 3), "c.w"),
        numpy_helper.from_array(_w(rng, 4, K), "fc.w"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "c.w"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("LRN", ["c"], ["n"], name="the_lrn_node", size=3),
        helper.make_node("GlobalAveragePool", ["n"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc.w"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "outside-unsupported",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, K])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model
