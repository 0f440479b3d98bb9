"""Export a trained network as a bundle (see :mod:`edge_runtime.bundle` for the format).

Graphs, all with the dynamo exporter (``torch.onnx.export(..., dynamo=True)``):

* ``front.onnx``: ``image -> features, fused_attention``. The fused attention map is computed in
  the graph: for each front layer, mean |activation| over channels, resized to ``map_size``,
  scaled to a per-image maximum of 1, then combined with the stated ``FUSION_WEIGHTS``.
* ``back.onnx``: ``features -> logits, att_logits, abn_map`` (ABN) or ``features -> logits``.
* ``attention.onnx`` (ABN): ``features -> abn_map, att_logits``.
* ``back_map.onnx`` (ABN): ``features, abn_map -> logits``: recognition with a corrected map.
* ``grad_<variant>.onnx``: ``image, reference -> influence, logits``: the gradient of an error
  at the logits back-propagated to the input pixels; ``influence`` is max |gradient| over colour
  channels (N x 1 x H x W). ``reference`` (N x K) is a one-hot target (class weights for
  ``extsel``); an all-zero row means *use the network's own top prediction* (computed in the
  graph, so the edge needs no extra forward pass). Error vectors at the logits z, p = softmax(z):

  - ``plain``:     p - ref                       (cross-entropy error of every class)
  - ``guided``:    p - ref, and ReLUs pass only positive gradients backwards
  - ``selective``: (p - ref) * ref               (only the target class's error)
  - ``extsel``:    ref as class weights, i.e. the gradient of sum_k ref_k z_k; the default
    (all-zero row) is top-1 minus top-2, the margin between the two best classes.

  ``torch.autograd.grad`` does not export directly; the function is traced with ``make_fx`` and a
  decomposition table in which ``aten.convolution_backward`` becomes a transposed convolution and
  ``aten.threshold_backward`` (ReLU) a mask, then exported.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_runtime.atomic import replace_dir
from edge_runtime.bundle import GRAD_VARIANTS, write_manifest
from edge_runtime.models.attention import FUSION_WEIGHTS, fuse, map_size_for
from edge_runtime.models.networks import fuse_batchnorm

__all__ = ["export_bundle", "export_progress", "FUSION_WEIGHTS", "influence_fn", "FrontGraph"]

log = logging.getLogger(__name__)
aten = torch.ops.aten

OPSET = 18


class FrontGraph(nn.Module):
    """image -> (split tensor, fused attention): :func:`models.attention.fuse` of the front layers."""

    def __init__(self, model: nn.Module, weights=FUSION_WEIGHTS, map_size: tuple[int, int] = (32, 32)):
        super().__init__()
        self.model = model
        self.weights = tuple(float(w) for w in weights)
        self.map_size = map_size

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f, layers = self.model.features(image)
        return f, fuse(layers, self.weights, self.map_size)


class _Back(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features):
        out = self.model.back(features)
        if len(out) == 3:
            att_logits, logits, m = out
            return logits, att_logits, m
        return out[0]


class _Attention(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features):
        att_logits, m = self.model.attention(features)
        return m, att_logits


class _BackMap(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features, abn_map):
        return self.model.back_with_map(features, abn_map)


def _conv_backward(
    grad_output,
    input,
    weight,
    bias_sizes,
    stride,
    padding,
    dilation,
    transposed,
    output_padding,
    groups,
    output_mask,
):
    """Input gradient of a convolution as a transposed convolution (weights are constants); of a
    transposed convolution (outside models' ConvTranspose) as a plain convolution."""
    if transposed:
        if groups != 1:
            raise NotImplementedError("gradient export of grouped transposed convolutions is not supported")
        # conv_transpose's weight is (C_in, C_out, k...): as a convolution's weight it maps C_out -> C_in
        grad_input = aten.convolution(
            grad_output, weight, None, stride, padding, dilation, False, [0], groups
        )
        return grad_input, None, None
    k = weight.shape[2:]
    out_pad = [
        input.shape[2 + i]
        - ((grad_output.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k[i] - 1) + 1)
        for i in range(len(k))
    ]
    grad_input = aten.convolution(grad_output, weight, None, stride, padding, dilation, True, out_pad, groups)
    return grad_input, None, None


def _avg_pool_backward(grad, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor=None):
    """Input gradient of a 2-D average pool: the gradient divided by each window's divisor, spread
    back over the window by a transposed convolution with a ones kernel (outside models)."""
    n, c, h, w = input.shape
    k = list(kernel_size)
    s = list(stride) if stride else k
    p = list(padding) if len(padding) == 2 else [padding[0]] * 2
    ho, wo = grad.shape[2:]
    full = [(ho - 1) * s[0] + k[0], (wo - 1) * s[1] + k[1]]
    extra = [max(0, full[0] - (h + 2 * p[0])), max(0, full[1] - (w + 2 * p[1]))]
    # constants built in NumPy: made with torch inside the trace they become ops on full-size
    # zeros that the exporter's constant folder mangles (an ORT load error, tests/models/test_byo.py)
    if divisor:
        div = np.full((1, 1, ho, wo), float(divisor), np.float32)
    else:
        # which positions of the padded (and ceil-mode extended) input a window counts
        valid = np.zeros((h + 2 * p[0] + extra[0], w + 2 * p[1] + extra[1]), np.float32)
        if count_include_pad:
            valid[: h + 2 * p[0], : w + 2 * p[1]] = 1.0
        else:
            valid[p[0] : p[0] + h, p[1] : p[1] + w] = 1.0
        win = np.lib.stride_tricks.sliding_window_view(valid, k)[:: s[0], :: s[1]]
        div = win.sum(axis=(2, 3))[None, None, :ho, :wo].astype(np.float32)
    ones = torch.from_numpy(np.ones((c, 1, *k), np.float32))
    div = torch.from_numpy(np.ascontiguousarray(div))
    spread = aten.convolution(grad / div, ones, None, s, [0, 0], [1, 1], True, [0, 0], c)
    pad_h = max(0, p[0] + h - spread.shape[2])
    pad_w = max(0, p[1] + w - spread.shape[3])
    if pad_h or pad_w:
        spread = F.pad(spread, [0, pad_w, 0, pad_h])
    return spread[:, :, p[0] : p[0] + h, p[1] : p[1] + w]


def _max_pool_backward(grad, input, kernel_size, stride, padding, dilation, ceil_mode, indices):
    """Input gradient of a 2-D max pool: each output's gradient added at its argmax."""
    n, c, h, w = input.shape
    flat = torch.from_numpy(np.zeros((n, c, h * w), np.float32))
    return flat.scatter_add(2, indices.flatten(2), grad.flatten(2)).view(n, c, h, w)


# A scalar 0.0, not zeros_like(grad): the exporter would fold a full-size zero tensor into the graph.
def _relu_backward(grad, result, threshold):
    return torch.where(result > threshold, grad, 0.0)


def _guided_relu_backward(grad, result, threshold):
    return torch.where((result > threshold) & (grad > 0), grad, 0.0)


def _decompositions(guided: bool) -> dict:
    from torch._decomp import core_aten_decompositions

    table = dict(core_aten_decompositions())
    table[aten.convolution_backward.default] = _conv_backward
    table[aten.avg_pool2d_backward.default] = _avg_pool_backward
    table[aten.max_pool2d_with_indices_backward.default] = _max_pool_backward
    table[aten.threshold_backward.default] = _guided_relu_backward if guided else _relu_backward
    return table


def _top_onehot(z: torch.Tensor) -> torch.Tensor:
    return (z == z.amax(dim=1, keepdim=True)).to(z.dtype)


def _error_vector(z: torch.Tensor, ref: torch.Tensor, variant: str) -> torch.Tensor:
    auto = ref.abs().sum(dim=1, keepdim=True) == 0
    top1 = _top_onehot(z)
    if variant == "extsel":
        second = _top_onehot(z - top1 * 1e9)
        return torch.where(auto, top1 - second, ref)
    ref = torch.where(auto, top1, ref)
    err = torch.softmax(z, dim=1) - ref
    if variant == "selective":
        return err * ref
    return err


def influence_fn(model: nn.Module, variant: str):
    """The PyTorch function that the ``grad_<variant>`` graph computes: (image, reference) ->
    (influence, logits). ``model`` must be BN-fused and in eval mode; use it with the same
    decomposition table (guided ReLU) to get the reference values."""
    if variant not in GRAD_VARIANTS:
        raise ValueError(f"variant must be one of {GRAD_VARIANTS}, got {variant!r}")

    def influence(image: torch.Tensor, reference: torch.Tensor):
        image = image.detach().requires_grad_(True)
        out = model(image)
        z = out[1] if len(out) == 3 else out[0]
        v = _error_vector(z.detach(), reference, variant)
        (g,) = torch.autograd.grad(z, image, grad_outputs=v)
        return g.abs().amax(dim=1, keepdim=True), z.detach()

    return influence


def trace_influence(model: nn.Module, variant: str, size: tuple[int, int]):
    """``make_fx`` trace of :func:`influence_fn` at batch 1: a GraphModule of plain aten ops."""
    from torch.fx.experimental.proxy_tensor import make_fx

    x = torch.zeros(1, 3, *size)
    ref = torch.zeros(1, model.num_classes)
    return make_fx(influence_fn(model, variant), decomposition_table=_decompositions(variant == "guided"))(
        x, ref
    )


_progress: contextvars.ContextVar = contextvars.ContextVar("export_progress", default=None)


@contextlib.contextmanager
def export_progress(bar):
    """Within the ``with``, every exported graph advances ``bar`` (e.g. a ``tqdm``) by one."""
    token = _progress.set(bar)
    try:
        yield bar
    finally:
        _progress.reset(token)


def _export(module, args, path: Path, input_names, output_names, dynamic_batch: bool) -> None:
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=1024)
        dynamic_shapes = tuple({0: batch} for _ in args)
    module.eval()
    torch.onnx.export(
        module,
        args,
        str(path),
        dynamo=True,
        external_data=False,
        opset_version=OPSET,
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_shapes=dynamic_shapes,
        verbose=False,
    )
    bar = _progress.get()
    if bar is not None:
        bar.set_postfix_str(path.name)
        bar.update(1)


def input_entry(size, input_spec: dict) -> dict:
    """The manifest's ``input`` entry (shared by the classifier and detector exporters)."""
    return {
        "name": "image",
        "size": list(size),
        "layout": "NCHW",
        "color": "RGB",
        "mean": list(input_spec["mean"]),
        "std": list(input_spec["std"]),
        "note": "x = (pixel / 255 - mean) / std",
    }


def export_bundle(
    model: nn.Module,
    out_dir: str | Path,
    *,
    classes: list[str],
    input_spec: dict,
    model_name: str,
    variants=GRAD_VARIANTS,
    metrics: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Export ``model`` (an ABN or plain network) as a bundle in ``out_dir``; returns the manifest.

    The bundle is built in a temporary folder beside ``out_dir`` and moved into place at the end,
    so a crash mid-export leaves any previous bundle in ``out_dir`` intact.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    model = fuse_batchnorm(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    size = tuple(input_spec["size"])
    is_abn = hasattr(model, "attention")
    x = torch.zeros(2, 3, *size)
    with torch.no_grad():
        feats = model.features(x)[0]
    split_shape = list(feats.shape[1:])
    map_size = map_size_for(size)

    graphs: dict[str, dict] = {}
    importance: dict[str, dict] = {}
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)
    try:
        t0 = time.perf_counter()
        _export(
            FrontGraph(model, FUSION_WEIGHTS, map_size),
            (x,),
            tmp / "front.onnx",
            ["image"],
            ["features", "fused_attention"],
            True,
        )
        graphs["front"] = {
            "file": "front.onnx",
            "inputs": ["image"],
            "outputs": ["features", "fused_attention"],
        }
        importance["fused"] = {
            "graph": "front",
            "output": "fused_attention",
            "shape": list(map_size),
            "weights": list(FUSION_WEIGHTS),
            "layers": ["stage1", "stage2", "stage3", "bottleneck"],
            "description": "mean |activation| per layer, resized, max-normalised, weighted sum",
        }
        back_out = ["logits", "att_logits", "abn_map"] if is_abn else ["logits"]
        _export(_Back(model), (feats,), tmp / "back.onnx", ["features"], back_out, True)
        graphs["back"] = {"file": "back.onnx", "inputs": ["features"], "outputs": back_out}
        if is_abn:
            _export(
                _Attention(model),
                (feats,),
                tmp / "attention.onnx",
                ["features"],
                ["abn_map", "att_logits"],
                True,
            )
            graphs["attention"] = {
                "file": "attention.onnx",
                "inputs": ["features"],
                "outputs": ["abn_map", "att_logits"],
            }
            importance["abn"] = {
                "graph": "attention",
                "output": "abn_map",
                "shape": split_shape[1:],
                "description": "ABN attention map M (sigmoid), at the split resolution",
            }
            m = torch.ones(2, 1, *split_shape[1:])
            _export(
                _BackMap(model), (feats, m), tmp / "back_map.onnx", ["features", "abn_map"], ["logits"], True
            )
            graphs["back_map"] = {
                "file": "back_map.onnx",
                "inputs": ["features", "abn_map"],
                "outputs": ["logits"],
            }
        for variant in variants:
            gm = trace_influence(model, variant, size)
            name = f"grad_{variant}"
            args = (torch.zeros(1, 3, *size), torch.zeros(1, model.num_classes))
            _export(gm, args, tmp / f"{name}.onnx", ["image", "reference"], ["influence", "logits"], False)
            graphs[name] = {
                "file": f"{name}.onnx",
                "inputs": ["image", "reference"],
                "outputs": ["influence", "logits"],
            }
            importance[name] = {
                "graph": name,
                "output": "influence",
                "shape": list(size),
                "batch": 1,
                "reference": "one-hot target (extsel: class weights); all-zero = own top "
                "prediction (extsel: top-1 minus top-2)",
            }
        log.info("exported %d graphs in %.1f s", len(graphs), time.perf_counter() - t0)
        manifest = write_manifest(
            tmp,
            {
                "model_name": model_name,
                "arch": getattr(model, "arch", model_name),
                "classes": list(classes),
                "input": input_entry(size, input_spec),
                "split": {"name": "features", "shape": split_shape, "dtype": "float32"},
                "graphs": graphs,
                "importance": importance,
                "metrics": metrics or {},
                # the architecture's hyper-parameters, so the network can be rebuilt from the
                # bundle's weights (models.codec_finetune.model_from_bundle)
                **(
                    {"model_config": dict(model.config)}
                    if isinstance(getattr(model, "config", None), dict)
                    else {}
                ),
                **(extra or {}),
            },
        )
        # one atomic swap: a crash at any point leaves the previous bundle loadable
        # (the old code renamed it aside first; a crash between the renames left no bundle)
        replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest
