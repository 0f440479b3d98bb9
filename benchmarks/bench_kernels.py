"""Throughput of the Numba kernels next to their NumPy references and a single-thread copy.

For each case, the kernel, its NumPy twin (``kernels.reference``) and ``np.copyto`` of the same
number of input bytes are timed in interleaved rounds within one run (machines are shared and
noisy, so only ratios within a run are compared). Start-up is measured in subprocesses: ``import
kernels; kernels.warmup()`` with a fresh ``NUMBA_CACHE_DIR`` (cold compile) and again with the
populated one (cached start).

    python benchmarks/bench_kernels.py [--quick] [--out benchmarks/results/kernels.json]

(Named ``bench_kernels.py``, not ``kernels.py``: run as a file, its folder comes first on
``sys.path`` and a ``kernels.py`` there would shadow the ``kernels`` package.)

Summary keys: ``fused_mask_quantize_vs_copy``: bandwidth of what the pipeline calls at the shipped
defaults, ``quantize(feats, bits, per_channel=True, mask=keep)`` on the default bundle's split
shape with the default bits and keep ratio (``edge_runtime/config.py``), as a fraction of the
copy's (target >= 0.5); the other shapes and ``mask_quantize`` sit beside it, labelled.
``min_speedup_vs_numpy`` (smallest reference/kernel time
ratio over the cases where NumPy needs more than one pass; target >= 3), ``cold_compile_s``,
``cached_start_s``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_runtime import kernels  # noqa: E402
from edge_runtime.kernels import reference as ref  # noqa: E402

DEFAULT_MANIFEST = ROOT / "edge_runtime" / "bundles" / "default" / "manifest.json"


def shipped_defaults() -> dict:
    """Split shape of the shipped bundle and the default bits / keep ratio (what the pipeline runs)."""
    from edge_runtime.config import Config

    c = Config()
    shape = json.loads(DEFAULT_MANIFEST.read_text())["split"]["shape"]
    return {"shape": tuple(int(v) for v in shape), "bits": c.quantize.bits, "keep": c.reduce.value}


def _per_call(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n


def _calibrate(fn: Callable[[], object], target_s: float) -> int:
    fn()
    n = 1
    while True:
        t = _per_call(fn, n) * n
        if t >= target_s / 4 or n >= 1 << 20:
            return max(1, int(n * target_s / max(t, 1e-9)))
        n *= 4


def measure(fns: dict[str, Callable[[], object]], rounds: int, target_s: float) -> dict[str, float]:
    """Median seconds per call of each function, interleaved round by round."""
    iters = {k: _calibrate(f, target_s) for k, f in fns.items()}
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            samples[k].append(_per_call(f, iters[k]))
    return {k: statistics.median(v) for k, v in samples.items()}


BLOBS = 6
NOISE = 0.05
KEEP = 0.3


def importance_map(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth map like a real importance map: Gaussian blobs plus a little noise, in [0, 1]."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    m = np.zeros((h, w))
    for _ in range(BLOBS):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        sy, sx = rng.uniform(0.03, 0.15) * h, rng.uniform(0.03, 0.15) * w
        m += rng.uniform(0.3, 1.0) * np.exp(-(((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2) / 2)
    m += NOISE * rng.random((h, w))
    return (m / m.max()).astype(np.float32)


DEFAULT_CASE = "quantize(mask) shipped default:"


def cases(rng: np.random.Generator) -> list[dict]:
    """(name, kernel call, reference call, input bytes, numpy already single pass?)."""
    imp_s = importance_map(rng, 128, 128)
    imp_l = importance_map(rng, 480, 640)
    imp_16 = importance_map(rng, 16, 16)
    keep_s = kernels.threshold_keep_ratio(imp_s, KEEP)
    keep_l = kernels.threshold_keep_ratio(imp_l, KEEP)
    img = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    imgf = img.astype(np.float32) / 255
    f_s = rng.standard_normal((16, 16, 16), dtype=np.float32)
    f_l = rng.standard_normal((64, 32, 32), dtype=np.float32)
    k16 = kernels.threshold_keep_ratio(kernels.resize_bilinear(imp_l, 16, 16), KEEP)
    k32 = kernels.threshold_keep_ratio(kernels.resize_bilinear(imp_l, 32, 32), KEEP)
    flow_s = rng.normal(0, 2, (128, 128, 2)).astype(np.float32)
    flow_l = rng.normal(0, 2, (480, 640, 2)).astype(np.float32)
    q_l, s_l, o_l = kernels.quantize(f_l, 8)
    d = shipped_defaults()
    f_d = rng.standard_normal(d["shape"], dtype=np.float32)
    k_d = kernels.threshold_keep_ratio(kernels.resize_bilinear(imp_l, *d["shape"][1:]), d["keep"])
    k32_d = kernels.threshold_keep_ratio(kernels.resize_bilinear(imp_l, 32, 32), d["keep"])
    shape_d = "x".join(map(str, d["shape"]))
    layers = [rng.standard_normal(s, dtype=np.float32) for s in ((16, 32, 32), (32, 16, 16), (64, 8, 8))]
    lw = [0.2, 0.3, 0.5]

    table = [
        # name, function, args, kwargs, input bytes, NumPy already a single pass
        ("threshold_value 128x128", "threshold_value", (imp_s, 0.5), {}, imp_s.nbytes, True),
        ("threshold_value 480x640", "threshold_value", (imp_l, 0.5), {}, imp_l.nbytes, True),
        ("threshold_keep_ratio 128x128", "threshold_keep_ratio", (imp_s, 0.2), {}, imp_s.nbytes, False),
        ("threshold_keep_ratio 480x640", "threshold_keep_ratio", (imp_l, 0.2), {}, imp_l.nbytes, False),
        ("threshold_percentile 128x128", "threshold_percentile", (imp_s, 80), {}, imp_s.nbytes, False),
        ("threshold_percentile 480x640", "threshold_percentile", (imp_l, 80), {}, imp_l.nbytes, False),
        ("dilate_mask r=3 128x128", "dilate_mask", (keep_s, 3), {}, keep_s.nbytes, False),
        ("dilate_mask r=3 480x640", "dilate_mask", (keep_l, 3), {}, keep_l.nbytes, False),
        ("reduce_image zero 480x640x3 u8", "reduce_image", (img, keep_l, "zero"), {}, img.nbytes, True),
        ("reduce_image blur r=2 480x640x3 u8", "reduce_image", (img, keep_l, "blur"), {}, img.nbytes, False),
        ("reduce_image blur r=2 480x640x3 f32", "reduce_image", (imgf, keep_l, "blur"), {},
         imgf.nbytes, False),
        ("reduce_image colour 480x640x3 u8", "reduce_image", (img, keep_l, "colour"), {}, img.nbytes, False),
        ("reduce_image grey 480x640x3 u8", "reduce_image", (img, keep_l, "grey"), {}, img.nbytes, False),
        ("reduce_features zero 64x32x32", "reduce_features", (f_l, k32, "zero"), {}, f_l.nbytes, True),
        ("reduce_features blur r=1 16x16x16", "reduce_features", (f_s, k16, "blur"), {"radius": 1},
         f_s.nbytes, False),
        ("reduce_features blur r=1 64x32x32", "reduce_features", (f_l, k32, "blur"), {"radius": 1},
         f_l.nbytes, False),
        ("resize_bilinear 128x128->480x640", "resize_bilinear", (imp_s, 480, 640), {}, 480 * 640 * 4, False),
        ("resize_bilinear 480x640->128x128", "resize_bilinear", (imp_l, 128, 128), {}, imp_l.nbytes, False),
        ("resize_bilinear 480x640->32x32", "resize_bilinear", (imp_l, 32, 32), {}, 32 * 32 * 4, False),
        ("resize_bilinear 128x128->16x16", "resize_bilinear", (imp_s, 16, 16), {}, imp_s.nbytes, False),
        ("resize_bilinear 16x16->128x128", "resize_bilinear", (imp_16, 128, 128), {}, 128 * 128 * 4, False),
        ("warp_flow 128x128", "warp_flow", (imp_s, flow_s), {}, imp_s.nbytes + flow_s.nbytes, False),
        ("warp_flow 480x640", "warp_flow", (imp_l, flow_l), {}, imp_l.nbytes + flow_l.nbytes, False),
        ("shift_map 480x640", "shift_map", (imp_l, 3.5, -2.25), {}, imp_l.nbytes, False),
        ("quantize 8b 16x16x16", "quantize", (f_s, 8), {}, f_s.nbytes, False),
        ("quantize 8b 64x32x32", "quantize", (f_l, 8), {}, f_l.nbytes, False),
        ("quantize 4b per-tensor masked 64x32x32", "quantize", (f_l, 4), {"per_channel": False, "mask": k32},
         f_l.nbytes, False),
        ("quantize 8b clip 99.9 64x32x32", "quantize", (f_l, 8), {"clip_percentile": 99.9},
         f_l.nbytes, False),
        (f"{DEFAULT_CASE} {d['bits']}b {shape_d} keep {d['keep']}", "quantize", (f_d, d["bits"]),
         {"per_channel": True, "mask": k_d}, f_d.nbytes, False),
        (f"quantize(mask) {d['bits']}b 64x32x32 keep {d['keep']}", "quantize", (f_l, d["bits"]),
         {"per_channel": True, "mask": k32_d}, f_l.nbytes, False),
        ("mask_quantize 8b 16x16x16", "mask_quantize", (f_s, k16, 8), {}, f_s.nbytes, False),
        ("mask_quantize 8b 64x32x32", "mask_quantize", (f_l, k32, 8), {}, f_l.nbytes, False),
        ("dequantize 64x32x32", "dequantize", (q_l, s_l, o_l), {}, q_l.nbytes, False),
        ("weighted_sum 3 layers->128x128", "weighted_sum", (layers, lw, (128, 128)), {},
         sum(a.nbytes for a in layers), False),
    ]  # fmt: skip
    out = []
    for name, fn, args, kw, nbytes, single in table:
        k, r = getattr(kernels, fn), getattr(ref, fn)
        out.append(
            {
                "name": name,
                "kernel": lambda k=k, a=args, kw=kw: k(*a, **kw),
                "reference": lambda r=r, a=args, kw=kw: r(*a, **kw),
                "opencv": _opencv_twin(fn, args),
                "bytes": int(nbytes),
                "numpy_single_pass": single,
            }
        )
    return out


def _opencv_twin(fn: str, args: tuple) -> Callable[[], object] | None:
    """OpenCV's call for the same work where it has one (resize, remap), to decide which to use
    (issue: use OpenCV wherever it beats the Numba version). The remap gets its absolute maps
    built per call, as the pipeline would have to."""
    import cv2

    if fn == "resize_bilinear":
        m, h, w = args
        return lambda: cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
    if fn == "warp_flow":
        m, flow = args
        gy, gx = np.mgrid[0 : m.shape[0], 0 : m.shape[1]].astype(np.float32)

        def remap():
            return cv2.remap(m, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderValue=0.0)

        return remap
    return None


def startup(repeats: int) -> dict[str, float]:
    """Cold compile vs cached start, each in a fresh interpreter."""
    code = (
        "import json, time; t = time.perf_counter(); from edge_runtime import kernels; w = kernels.warmup(); "
        "print(json.dumps({'total_s': time.perf_counter() - t, 'warmup_s': w}))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_DISABLE_JIT": "0"}

    def run(cache: str) -> dict[str, float]:
        out = subprocess.run(
            [sys.executable, "-c", code], env={**env, "NUMBA_CACHE_DIR": cache}, cwd=ROOT,
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        cold = run(cache)
        cached = [run(cache) for _ in range(repeats)]
    best = min(cached, key=lambda r: r["total_s"])
    return {
        "cold_total_s": cold["total_s"],
        "cold_warmup_s": cold["warmup_s"],
        "cached_total_s": best["total_s"],
        "cached_warmup_s": best["warmup_s"],
    }


def machine() -> dict[str, object]:
    import cv2
    import numba

    info: dict[str, object] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "opencv": cv2.__version__,
        "numba_threading_layer_used": False,
        "loadavg_at_start": os.getloadavg(),
    }
    try:
        info["cpu_affinity"] = len(os.sched_getaffinity(0))
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        info["cpu_model"] = names[0] if names else None
    except (AttributeError, OSError):
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results" / "kernels.json")
    ap.add_argument("--quick", action="store_true", help="fewer, shorter rounds (a smoke run)")
    ap.add_argument("--only", default="", help="time only the cases whose name contains this (no summary)")
    args = ap.parse_args(argv)
    rounds, target = (3, 0.01) if args.quick else (9, 0.05)
    start_repeats = 1 if args.quick else 3

    t_start = time.time()
    warm = kernels.warmup()
    rng = np.random.default_rng(0)
    results = []
    for case in cases(rng):
        if args.only not in case["name"]:
            continue
        src = np.ones(case["bytes"], np.uint8)
        dst = np.empty_like(src)
        fns = {
            "kernel": case["kernel"],
            "reference": case["reference"],
            "copy": lambda s=src, d=dst: np.copyto(d, s),
        }
        if case["opencv"] is not None:
            fns["opencv"] = case["opencv"]
        t = measure(fns, rounds, target)
        row = {
            "name": case["name"],
            "input_bytes": case["bytes"],
            "numpy_single_pass": case["numpy_single_pass"],
            "kernel_us": t["kernel"] * 1e6,
            "reference_us": t["reference"] * 1e6,
            "copy_us": t["copy"] * 1e6,
            "kernel_mb_s": case["bytes"] / t["kernel"] / 1e6,
            "reference_mb_s": case["bytes"] / t["reference"] / 1e6,
            "copy_mb_s": case["bytes"] / t["copy"] / 1e6,
            "speedup_vs_numpy": t["reference"] / t["kernel"],
            "bandwidth_vs_copy": t["copy"] / t["kernel"],
        }
        if "opencv" in t:
            row["opencv_us"] = t["opencv"] * 1e6
            row["opencv_speedup_vs_kernel"] = t["kernel"] / t["opencv"]
        results.append(row)
        print(
            f"{row['name']:<42} kernel {row['kernel_us']:9.1f} us  numpy {row['reference_us']:9.1f} us  "
            f"x{row['speedup_vs_numpy']:6.2f}  vs copy {row['bandwidth_vs_copy']:5.2f}"
            + (f"  opencv {row['opencv_us']:9.1f} us" if "opencv_us" in row else "")
        )
    if args.only:
        return 0
    multi = [r for r in results if not r["numpy_single_pass"]]
    worst = min(multi, key=lambda r: r["speedup_vs_numpy"])
    fused = next(r for r in results if r["name"].startswith(DEFAULT_CASE))
    fused_l = next(r for r in results if r["name"].startswith("quantize(mask)") and "64x32x32" in r["name"])
    old = next(r for r in results if r["name"] == "mask_quantize 8b 64x32x32")
    st = startup(start_repeats)
    print(f"start-up: cold {st['cold_total_s']:.2f} s, cached {st['cached_total_s']:.2f} s")
    summary = {
        "fused_mask_quantize_vs_copy": fused["bandwidth_vs_copy"],
        "fused_mask_quantize_case": fused["name"],
        "fused_mask_quantize_vs_copy_64x32x32": fused_l["bandwidth_vs_copy"],
        "mask_quantize_8b_64x32x32_vs_copy": old["bandwidth_vs_copy"],
        "min_speedup_vs_numpy": worst["speedup_vs_numpy"],
        "min_speedup_case": worst["name"],
        "cold_compile_s": st["cold_total_s"],
        # > 1: OpenCV is faster than the Numba kernel on that case (the runtime then uses OpenCV)
        "opencv_speedup_vs_kernel": {
            r["name"]: round(r["opencv_speedup_vs_kernel"], 2) for r in results if "opencv_us" in r
        },
        "cached_start_s": st["cached_total_s"],
        "targets": {
            "fused_mask_quantize_vs_copy": 0.5,
            "min_speedup_vs_numpy": 3.0,
            "fused_met": fused["bandwidth_vs_copy"] >= 0.5,
            "speedup_met": worst["speedup_vs_numpy"] >= 3.0,
            "cases_below_3x": [r["name"] for r in multi if r["speedup_vs_numpy"] < 3.0],
        },
    }
    doc = {
        "benchmark": "kernels",
        "summary": summary,
        "machine": machine(),
        "parameters": {
            "quick": args.quick,
            "rounds": rounds,
            "target_batch_s": target,
            "startup_repeats": start_repeats,
            "timing": "median over interleaved rounds of per-call wall time; copy = np.copyto of input_bytes",
            "importance_maps": f"{BLOBS} Gaussian blobs + {NOISE} uniform noise, normalised to [0, 1]",
            "keep_masks": f"threshold_keep_ratio(map, {KEEP}) at each array's resolution",
            "warmup_in_process_s": warm,
        },
        "startup": st,
        "cases": results,
        "duration_s": time.time() - t_start,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
