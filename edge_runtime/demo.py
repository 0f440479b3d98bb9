"""``edge-runtime demo``: the default bundle on the built-in moving-object stream.

Per frame: front half -> ABN attention map -> keep the top ``--keep`` fraction of feature
positions -> quantize -> zstd -> decode -> back half, printing accuracy, bytes per frame and FPS.
"""

from __future__ import annotations

import time

import numpy as np
import zstandard

from edge_runtime.bundle import load_bundle
from edge_runtime.scenes import MovingObjectStream

__all__ = ["run_demo"]


def _quantize(f: np.ndarray, keep: np.ndarray, bits: int):
    lo = f.min(axis=(1, 2), keepdims=True)
    hi = f.max(axis=(1, 2), keepdims=True)
    scale = np.where(hi > lo, (hi - lo) / (2**bits - 1), 1.0).astype(np.float32)
    q = np.clip(np.rint((f - lo) / scale), 0, 2**bits - 1).astype(np.uint8)
    q[:, ~keep] = 0
    return q, scale, lo


def run_demo(args) -> int:
    if not 1 <= args.bits <= 8:
        raise SystemExit(f"--bits must be in 1..8, got {args.bits}")
    if not 0.0 < args.keep <= 1.0:
        raise SystemExit(f"--keep must be in (0, 1], got {args.keep}")
    bundle = load_bundle(args.bundle)
    bundle.warmup()
    stream = MovingObjectStream(size=bundle.input.size[0], num_classes=bundle.num_classes, seed=0)
    cctx, dctx = zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor()
    has_abn = bundle.has_graph("attention")
    correct = total_bytes = 0
    t0 = time.perf_counter()
    print(f"demo: {bundle.model_name} ({bundle.model_id[:12]}), keep {args.keep:.0%}, {args.bits} bits")
    for t in range(args.frames):
        scene = stream.frame(t)
        x = bundle.preprocess(scene.image)
        f = bundle.front(x)[bundle.split_name]
        if has_abn:
            imp = bundle.run("attention", {bundle.split_name: f}, ["abn_map"])["abn_map"][0, 0]
        else:
            imp = np.abs(f[0]).mean(0)
        k = max(1, int(round(args.keep * imp.size)))
        keep = np.zeros(imp.size, bool)
        keep[np.argsort(-imp.ravel(), kind="stable")[:k]] = True
        keep = keep.reshape(imp.shape)
        q, scale, lo = _quantize(f[0], keep, args.bits)
        payload = cctx.compress(np.packbits(keep).tobytes() + q[:, keep].tobytes())
        total_bytes += len(payload) + scale.nbytes + lo.nbytes + 16  # + scales, offsets, small header
        raw = np.frombuffer(dctx.decompress(payload), np.uint8)
        nbits = keep.size
        keep2 = np.unpackbits(raw[: (nbits + 7) // 8])[:nbits].astype(bool).reshape(keep.shape)
        q2 = np.zeros_like(q)
        q2[:, keep2] = raw[(nbits + 7) // 8 :].reshape(q.shape[0], -1)
        f2 = np.where(keep2, lo + q2 * scale, 0).astype(np.float32)[None]
        pred = int(bundle.back(f2).argmax())
        correct += pred == scene.label
        if (t + 1) % args.every == 0 or t + 1 == args.frames:
            dt = time.perf_counter() - t0
            print(
                f"frame {t + 1:5d}  accuracy {correct / (t + 1):.3f}  bytes/frame {total_bytes / (t + 1):7.1f}"
                f"  fps {(t + 1) / dt:6.1f}"
            )
    return 0
