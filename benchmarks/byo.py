"""Bring your own model, all the way: an outside ResNet-style classifier through split, every
importance map, masking-aware fine-tuning and a rate evaluation.

    nice -n 10 python benchmarks/byo.py [--quick] [--out PATH]

1. ``OutsideResNet`` (defined here, not in ``models/``: residual adds, strided convolutions, its
   own normalisation) is trained briefly on the built-in task's ``train`` split and exported with
   plain ``torch.onnx.export``.
2. ``edge-runtime split``'s code path (``models.split.split_model``) makes a complete bundle at the
   output of ``layer2``; each gradient graph is checked against PyTorch autograd on the converted
   model (``gradient_parity_max_rel_err``) and every registered importance provider is started on
   it (``providers_working``; ``abn`` needs an ABN's attention branch and cannot work).
3. ``edge-runtime finetune --onnx``'s code path (``models.byo.finetune_onnx``) fine-tunes the back
   half on the ``train`` split (reports on ``validation``) and exports the bundle again.
4. The rate evaluation through the real edge pipeline and decoder (``EdgePipeline.process`` ->
   message -> ``Decoder`` -> back half): each provider x keep ratio x bit depth, and unmasked
   quantization at each bit depth, on ``validation``; the setting is chosen there and scored once
   on ``test``, with paired bootstrap 95% intervals. ``masked_bytes_vs_unmasked_at_iso_accuracy``:
   the cheapest masked setting of the default provider whose validation top-1 is within 1 pt of
   the unmasked 8-bit tensor's, over the cheapest unmasked setting within the same 1 pt.
   ``finetune_recovered_pt``: test top-1 at keep 0.2 / 2 bits (default provider, feature zeroing),
   fine-tuned minus original, in points.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import write_result  # noqa: E402
from edge_runtime import datasets  # noqa: E402
from edge_runtime.bundle import GRAD_VARIANTS, Bundle, load_bundle  # noqa: E402
from edge_runtime.codec import Decoder  # noqa: E402
from edge_runtime.config import config_from_dict  # noqa: E402
from edge_runtime.errors import BundleError  # noqa: E402
from edge_runtime.importance import PROVIDERS, make_provider, resolve_provider  # noqa: E402
from edge_runtime.pipeline import EdgePipeline  # noqa: E402
from edge_runtime.sources import Captured  # noqa: E402

SIZE = 128
KEEPS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7)
MASK_BITS = (2, 3, 4)
UNMASKED_BITS = (2, 3, 4, 6, 8)
ISO_TOLERANCE = 0.01  # 1 pt of top-1
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def build_net(num_classes: int):
    """The outside model: a small ResNet with its own per-channel normalisation."""
    import torch
    from torch import nn

    class Norm(nn.Module):  # its own normalisation: a learned per-channel affine after a BN-free conv
        def __init__(self, c):
            super().__init__()
            self.g = nn.Parameter(torch.ones(1, c, 1, 1))
            self.b = nn.Parameter(torch.zeros(1, c, 1, 1))

        def forward(self, x):
            return x * self.g + self.b

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.n1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.n2 = Norm(cout)
            self.skip = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = torch.relu(self.n1(self.c1(x)))
            return torch.relu(self.n2(self.c2(y)) + self.skip(x))

    class OutsideResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            self.layer1 = Block(16, 32, 2)  # 32 x 32
            self.layer2 = Block(32, 32, 2)  # 16 x 16: the split
            self.layer3 = Block(32, 64, 2)  # 8 x 8
            self.fc = nn.Linear(64, num_classes)

        def forward(self, x):
            x = self.layer3(self.layer2(self.layer1(self.stem(x))))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    return OutsideResNet()


def train_and_export(frames, val, epochs: int, path: Path, seed: int = 0) -> dict:
    import torch
    import torch.nn.functional as F

    from edge_runtime.models.data import to_tensor

    torch.manual_seed(seed)
    net = build_net(len(frames.classes))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = len(frames) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=max(1, epochs * steps))
    labels = torch.from_numpy(frames.labels)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(epochs):
        net.train()
        order = torch.randperm(len(frames), generator=gen)
        for s in range(steps):
            idx = order[s * 64 : (s + 1) * 64].numpy()
            loss = F.cross_entropy(net(to_tensor(frames.images[idx], MEAN, STD)), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        pred = torch.cat(
            [net(to_tensor(val.images[i : i + 128], MEAN, STD)).argmax(1) for i in range(0, len(val), 128)]
        )
    val_top1 = float((pred.numpy() == val.labels).mean())
    torch.onnx.export(
        net,
        (torch.zeros(2, 3, SIZE, SIZE),),
        str(path),
        input_names=["pixels"],
        output_names=["scores"],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},),
    )
    return {"train_s": round(time.perf_counter() - t0, 1), "val_top1_torch": val_top1, "epochs": epochs}


def split_tensor(model) -> str:
    """The last 32 x 16 x 16 tensor: layer2's output after its residual add and ReLU."""
    import onnx

    m = onnx.shape_inference.infer_shapes(model)
    dims = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in m.graph.value_info}
    name = None
    for n in m.graph.node:
        for o in n.output:
            if dims.get(o, [])[1:] == [32, SIZE // 8, SIZE // 8]:
                name = o
    if name is None:
        raise SystemExit("no 32 x 16 x 16 tensor in the exported model")
    return name


def providers_working(b: Bundle, image: np.ndarray) -> dict:
    x = b.preprocess(image)
    out = {}
    for name in sorted(PROVIDERS):
        try:
            prov = make_provider(b, config_from_dict({"importance": {"provider": name}}, env={}).importance)
            m = prov.compute(x, lambda: b.front(x)).map
            ok = name == "none" or (
                m is not None and np.isfinite(m).all() and float(m.max()) > float(m.min())
            )
            out[name] = "ok" if ok else "constant or non-finite map"
        except BundleError as e:
            out[name] = f"refused: {e}"
    return out


def gradient_parity(model, b: Bundle, images: np.ndarray) -> dict:
    """Max relative error (of each output's scale) of every gradient graph against PyTorch autograd
    on the converted model, in float64 (the exact value) and in float32.

    Why both: with the own-prediction reference the error at the logits is p - onehot(top), and
    for a confident prediction 1 - p_top is ~1e-4 or less, so float32 cancellation alone makes
    two float32 implementations (ONNX Runtime, torch) differ by ~1e-4 of the map's scale; the
    graph itself is then measured against the float64 computation."""
    import torch

    from edge_runtime.models.gradients import reference_influence
    from edge_runtime.models.onnx_torch import convert

    m64 = convert(model).double()
    errs = {}
    for v in GRAD_VARIANTS:
        worst = {"float64": 0.0, "float32": 0.0}
        for im in images:
            x = b.preprocess(im)
            for ref in (
                np.zeros((1, b.num_classes), np.float32),
                np.eye(b.num_classes, dtype=np.float32)[[1]],
            ):
                got = b.run(f"grad_{v}", {b.input.name: x, "reference": ref})
                refs = {
                    "float32": reference_influence(model, v, x, ref),
                    "float64": reference_influence(
                        m64, v, torch.from_numpy(x).double(), torch.from_numpy(ref).double()
                    ),
                }
                for kind, (want, logits) in refs.items():
                    for g, w in ((got["influence"], want.numpy()), (got["logits"], logits.numpy())):
                        err = float(np.abs(g - w).max()) / max(float(np.abs(w).max()), 1e-30)
                        worst[kind] = max(worst[kind], err)
        errs[v] = worst
    return errs


class FrameSet:
    """Frames with their maps per provider (computed once) for the pipeline runs."""

    def __init__(self, b: Bundle, frames) -> None:
        self.b, self.images, self.labels = b, frames.images, frames.labels
        self.maps: dict[str, list] = {}

    def maps_of(self, provider: str) -> list:
        if provider not in self.maps:
            prov = make_provider(
                self.b, config_from_dict({"importance": {"provider": provider}}, env={}).importance
            )
            out = []
            for im in self.images:
                x = self.b.preprocess(im)
                out.append(prov.compute(x, lambda x=x: self.b.front(x)).map)
            self.maps[provider] = out
        return self.maps[provider]


class _Replay:
    uses_front = False

    def __init__(self, maps, name):
        self.maps, self.name, self.i = maps, name, 0

    def compute_frame(self, rgb, x, front):
        from edge_runtime.importance import ImportanceResult

        return ImportanceResult(self.maps[self.i])


def run_setting(fs: FrameSet, provider: str, keep: float | None, bits: int) -> dict:
    """Per-frame bytes and correctness of one setting through the edge pipeline and the decoder."""
    b = fs.b
    cfg = {"importance": {"provider": provider}, "quantize": {"bits": bits}}
    if keep is not None:
        cfg["reduce"] = {"domain": "feature", "mode": "zero", "value": keep}
    conf = config_from_dict(cfg, env={})
    replay = _Replay(fs.maps_of(provider) if provider != "none" else [None] * len(fs.images), provider)
    pipe = EdgePipeline(b, conf, provider=replay)
    dec = Decoder(model_ids=[b.model_id_bytes])
    c, h, w = b.split_shape
    feats = np.zeros((len(fs.images), c, h, w), np.float32)
    nbytes = np.zeros(len(fs.images))
    for i, im in enumerate(fs.images):
        replay.i = i
        msg = pipe.process(Captured(im, i, 0), i).message
        nbytes[i] = len(msg)
        t = dec.decode(msg).tensor
        if t is not None:
            feats[i] = t.dequantize()
    logits = np.concatenate([b.back(feats[i : i + 256]) for i in range(0, len(feats), 256)])
    return {"bytes": nbytes, "correct": (logits.argmax(1) == fs.labels).astype(np.float64)}


def bootstrap(a: np.ndarray, b: np.ndarray | None, stat, n: int = 1000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        i = rng.integers(0, len(a), len(a))
        vals.append(stat(a[i]) if b is None else stat(a[i], b[i]))
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer frames and epochs (a smoke run)")
    ap.add_argument("--out", help="result file (default: benchmarks/results/byo.json)")
    ap.add_argument("--task", default=datasets.DEFAULT_TASK)
    ap.add_argument("--keep", metavar="DIR", help="keep the trained model and both bundles in DIR")
    args = ap.parse_args(argv)

    import onnx
    import torch

    from edge_runtime.models.byo import OnnxFinetuneConfig, finetune_onnx
    from edge_runtime.models.data import ArrayDataset
    from edge_runtime.models.split import split_model

    torch.set_num_threads(1)
    n_train, n_val, n_test, epochs, ft_epochs = (
        (600, 100, 100, 1, 1) if args.quick else (10000, 500, 1000, 6, 3)
    )
    params = {
        "task": args.task,
        "size": SIZE,
        "n_train": n_train,
        "n_validation": n_val,
        "n_test": n_test,
        "train_epochs": epochs,
        "finetune_epochs": ft_epochs,
        "keeps": KEEPS,
        "mask_bits": MASK_BITS,
        "unmasked_bits": UNMASKED_BITS,
        "iso_tolerance": ISO_TOLERANCE,
        "mean": MEAN,
        "std": STD,
        "git_commit": _git_commit(),
        "quick": args.quick,
    }
    t_start = time.process_time()
    train = datasets.load(args.task, "train", n_train, size=SIZE)
    val = datasets.load(args.task, "validation", n_val, size=SIZE)
    test = datasets.load(args.task, "test", n_test, size=SIZE)
    classes = list(train.classes)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="byo-"))
    work.mkdir(parents=True, exist_ok=True)
    model_path = work / "outside.onnx"
    print(f"training the outside ResNet on {n_train} {args.task} frames ...", flush=True)
    training = train_and_export(train, val, epochs, model_path)
    model = onnx.load(str(model_path))
    at = split_tensor(model)
    ops = sorted({n.op_type for n in model.graph.node})
    common = {"classes": classes, "size": (SIZE, SIZE), "mean": MEAN, "std": STD}
    split_model(model_path, at, work / "before", model_name="outside", **common)
    before_b = load_bundle(work / "before")
    print("fine-tuning the back half ...", flush=True)
    cfg = OnnxFinetuneConfig(epochs=ft_epochs, threads=1)
    to_ds = lambda f: ArrayDataset(f.images, f.labels, tuple(f.classes))  # noqa: E731
    tuned, report = finetune_onnx(
        model, at, cfg, to_ds(train), to_ds(val), mean=MEAN, std=STD, progress=False
    )
    split_model(tuned, at, work / "after", model_name="outside-finetuned", **common)
    after_b = load_bundle(work / "after")

    providers = providers_working(after_b, test.images[0])
    onnx.save(tuned, str(work / "outside-finetuned.onnx"))
    parity = gradient_parity(tuned, after_b, test.images[:5])
    print(f"providers: {providers}\ngradient parity: {parity}", flush=True)

    default = config_from_dict({}, env={})
    dprov = resolve_provider(after_b, default.importance.provider)
    fs_val, fs_test = FrameSet(after_b, val), FrameSet(after_b, test)
    grid = [("none", None, bits) for bits in UNMASKED_BITS]
    masked_providers = [
        p for p in ("fused", *(f"grad_{v}" for v in GRAD_VARIANTS)) if providers.get(p) == "ok"
    ]
    grid += [(p, k, bits) for p in masked_providers for k in KEEPS for bits in MASK_BITS]
    print(f"rate sweep: {len(grid)} settings on {n_val} validation frames ...", flush=True)
    rows = []
    for p, k, bits in grid:
        r = run_setting(fs_val, p, k, bits)
        rows.append(
            {
                "provider": p,
                "keep": k,
                "bits": bits,
                "bytes": float(r["bytes"].mean()),
                "top1": float(r["correct"].mean()),
            }
        )
    ref_top1 = next(r["top1"] for r in rows if r["provider"] == "none" and r["bits"] == 8)
    target = ref_top1 - ISO_TOLERANCE

    def cheapest(pred):
        ok = [r for r in rows if pred(r) and r["top1"] >= target]
        return min(ok, key=lambda r: r["bytes"]) if ok else None

    chosen = {"unmasked": cheapest(lambda r: r["provider"] == "none")}
    for p in masked_providers:
        chosen[p] = cheapest(lambda r, p=p: r["provider"] == p)
    scored = {}
    for name, row in chosen.items():
        if row is None:
            scored[name] = None
            continue
        r = run_setting(fs_test, row["provider"], row["keep"], row["bits"])
        scored[name] = {"setting": row, "test": r}
    un = scored["unmasked"]

    def ratio_entry(name):
        s = scored.get(name)
        if s is None or un is None:
            return None
        mb, ub = s["test"]["bytes"], un["test"]["bytes"]
        return {
            "setting": s["setting"],
            "test_bytes": float(mb.mean()),
            "test_top1": float(s["test"]["correct"].mean()),
            "unmasked_setting": un["setting"],
            "unmasked_test_bytes": float(ub.mean()),
            "unmasked_test_top1": float(un["test"]["correct"].mean()),
            "bytes_ratio": float(mb.mean() / ub.mean()),
            "bytes_ratio_ci95": bootstrap(mb, ub, lambda a, b: a.mean() / b.mean()),
            "top1_diff_ci95": bootstrap(
                s["test"]["correct"], un["test"]["correct"], lambda a, b: a.mean() - b.mean()
            ),
        }

    iso = {name: ratio_entry(name) for name in masked_providers}
    # fine-tuning: test top-1 at keep 0.2 / 2 bits with the default provider, before and after
    fs_before = FrameSet(before_b, test)
    rb = run_setting(fs_before, dprov, 0.2, 2)["correct"]
    ra = run_setting(fs_test, dprov, 0.2, 2)["correct"]
    float_before = run_setting(fs_before, "none", None, 8)["correct"]
    recovered = {
        "provider": dprov,
        "test_top1_before": float(rb.mean()),
        "test_top1_after": float(ra.mean()),
        "recovered_pt": 100 * float(ra.mean() - rb.mean()),
        "recovered_pt_ci95": [100 * v for v in bootstrap(ra, rb, lambda a, b: a.mean() - b.mean())],
        "test_top1_unmasked_8bit_before": float(float_before.mean()),
    }
    d = iso.get(dprov)
    summary = {
        "providers_working": sum(v == "ok" for v in providers.values()),
        "providers_registered": len(providers),
        "providers_not_working": {k: v for k, v in providers.items() if v != "ok"},
        "gradient_parity_max_rel_err": max(p["float64"] for p in parity.values()),
        "gradient_parity_max_rel_err_vs_float32_autograd": max(p["float32"] for p in parity.values()),
        "masked_bytes_vs_unmasked_at_iso_accuracy": d["bytes_ratio"] if d else None,
        "masked_bytes_vs_unmasked_at_iso_accuracy_ci95": d["bytes_ratio_ci95"] if d else None,
        "finetune_recovered_pt": recovered["recovered_pt"],
        "finetune_recovered_pt_ci95": recovered["recovered_pt_ci95"],
        "default_provider": dprov,
        "selected_on": "validation",
        "scored_on": "test",
        "task": args.task,
        "cpu_minutes": round((time.process_time() - t_start) / 60, 1),
    }
    results = {
        "training": training,
        "split_at": at,
        "onnx_operators": ops,
        "attention_layers": after_b.importance["fused"]["layers"],
        "attention_weights": after_b.importance["fused"]["weights"],
        "providers": providers,
        "gradient_parity": parity,
        "finetune": {
            k: report[k] for k in ("before", "after", "history", "n_train", "n_validation", "seconds")
        },
        "finetune_recovered": recovered,
        "iso_accuracy": iso,
        "validation_rows": rows,
        "validation_reference_top1_unmasked_8bit": ref_top1,
    }
    path = write_result("byo", summary, params, results, args.out)
    print(f"wrote {path}\n{summary}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
