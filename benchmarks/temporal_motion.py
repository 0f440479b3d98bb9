"""Would motion compensation pay in temporal coding? The residual a predicted frame codes, with the
reference shifted by the best global motion at the feature resolution, against no shift.

Temporal coding (``docs/wire.md``, version 3) predicts each tensor from the co-located symbols of
the acknowledged reference. This measures, on the moving stream's test frames at one edge setting,
what a motion-compensated prediction would save: for each frame and the frame ``lag`` frames
before it (same object; lag 1 is the shipped case, the ack arriving before the next frame), the
reference's dequantized tensor and keep-mask are shifted by every (dy, dx) on a grid of
``--step`` feature cells within ``--reach`` cells (bilinear for fractional shifts, as block
matching at sub-cell precision would), quantized with the frame's own parameters, and scored by a
proxy of the coder's cost: the sum of absolute symbol residuals at positions both keep, plus
``NEW_SYMBOL_COST`` per symbol at positions only the frame keeps. Summary per lag: the share of
frames whose best shift is not zero, and the summed cost at the best shift over the cost at zero.
Beside it, what the lag costs the shipped temporal coding: bytes and top-1 of the edge with
``codec.temporal = on`` when each acknowledgement reaches the edge ``lag`` frames after its frame,
against the same setting coded alone.

    python benchmarks/temporal_motion.py [--task fashion] [--frames 600] [--keep K --bits B: the shipped ones]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import run_cli, write_result  # noqa: E402
from benchmarks.rate_select import mean_interval, ratio_interval  # noqa: E402
from edge_runtime import datasets  # noqa: E402
from edge_runtime.codec.format import REF_WINDOW  # noqa: E402
from edge_runtime.config import config_from_dict  # noqa: E402

NEW_SYMBOL_COST = 2  # symbols of a position the reference did not keep are coded alone: ~2 units
SHIPPED = config_from_dict({}, env={})  # keep ratio, bits and temporal_skip default to the shipped ones
TEMPORAL_SKIP = SHIPPED.codec.temporal_skip


def _shifted(x: np.ndarray, keep: np.ndarray, dy: float, dx: float):
    import cv2

    c, h, w = x.shape
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    # channels last: one warp for every channel
    xs = cv2.warpAffine(np.ascontiguousarray(x.transpose(1, 2, 0)), m, (w, h), flags=cv2.INTER_LINEAR)
    ks = cv2.warpAffine(keep.astype(np.float32), m, (w, h), flags=cv2.INTER_NEAREST) > 0.5
    return xs.reshape(h, w, c).transpose(2, 0, 1), ks


def _keep(t) -> np.ndarray:
    return t.keep if t.keep is not None else np.ones(t.data.shape[1:], bool)


def _cost(cur, x_ref: np.ndarray, keep_ref: np.ndarray) -> float:
    q = np.clip(
        np.rint((x_ref - cur.offset[:, None, None]) / cur.scale[:, None, None]), 0, (1 << cur.bits) - 1
    )
    keep = _keep(cur)
    d = np.abs(cur.data.astype(np.int16) - q.astype(np.int16)).sum(0)
    return float(d[keep & keep_ref].sum() + NEW_SYMBOL_COST * cur.data.shape[0] * (keep & ~keep_ref).sum())


def measure(tensors, segments, lag: int, shifts) -> dict:
    zero = best = 0.0
    moved = n = 0
    for t in range(lag, len(tensors)):
        cur, ref = tensors[t], tensors[t - lag]
        if segments[t] != segments[t - lag] or cur is None or ref is None:
            continue
        x, keep = ref.dequantize(), _keep(ref)
        costs = [_cost(cur, *_shifted(x, keep, dy, dx)) for dy, dx in shifts]
        c0 = costs[shifts.index((0.0, 0.0))]
        i = int(np.argmin(costs))
        zero, best, n = zero + c0, best + costs[i], n + 1
        moved += costs[i] < c0
    return {
        "lag": lag,
        "frames": n,
        "share_best_shift_not_zero": moved / max(n, 1),
        "cost_best_over_zero": best / zero if zero else None,
    }


def temporal_bytes(bundle, st, keep: float, bits: int, lag: int | None) -> dict:
    """Mean bytes and top-1 of the edge over the stream: temporal coding with acknowledgements
    ``lag`` frames late (None: intra, every frame coded alone)."""
    from benchmarks.rate_stream import _edge_messages, _edge_setting, segment_means
    from benchmarks.rate_sweep import decode_logits

    s = _edge_setting(keep, bits, None if lag is None else TEMPORAL_SKIP)
    msgs, _ = _edge_messages(bundle, st, s, ack_lag=lag or 1)
    correct = decode_logits(bundle, msgs).argmax(1) == st.labels
    sizes = np.array([len(m) for m in msgs], np.float64)
    return {
        "bytes": float(sizes.mean()),
        "top1": float(correct.mean()),
        "top1_ci": mean_interval(segment_means(correct, st.segments)),
        "messages": msgs,
        "segment_bytes": segment_means(sizes, st.segments),
    }


def run(argv=None) -> int:
    from benchmarks.rate_stream import Stream
    from edge_runtime.bundle import load_bundle
    from edge_runtime.codec import Decoder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", help="bundle folder (default: the shipped bundle)")
    p.add_argument("--task", default=datasets.DEFAULT_TASK)
    p.add_argument("--frames", type=int, default=600, help="test frames of the moving stream")
    p.add_argument("--keep", type=float, default=SHIPPED.reduce.value)
    p.add_argument("--bits", type=int, default=SHIPPED.quantize.bits)
    p.add_argument("--lags", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--reach", type=float, default=2.0, help="largest shift, feature cells")
    p.add_argument("--step", type=float, default=0.5, help="shift grid step, feature cells")
    p.add_argument("--out", help="output JSON (default benchmarks/results/temporal_motion.json)")
    args = p.parse_args(argv)
    if args.step <= 0 or args.reach < 0:
        raise ValueError("--step must be > 0 and --reach >= 0")
    if not all(1 <= lag <= REF_WINDOW for lag in args.lags) or args.frames <= max(args.lags):
        raise ValueError(
            f"--lags must lie in 1..{REF_WINDOW} (the encoder's reference window) and below --frames"
        )
    grid = [round(float(v), 6) for v in np.arange(-args.reach, args.reach + 1e-9, args.step)]
    if 0.0 not in grid:
        raise ValueError("--reach must be a multiple of --step, so that the grid holds the zero shift")
    shifts = [(dy, dx) for dy in grid for dx in grid]
    t0 = time.perf_counter()
    b = load_bundle(args.bundle, threads=1)
    st = Stream(args.task, "test", args.frames, b.input.size[0])
    intra = temporal_bytes(b, st, args.keep, args.bits, None)
    dec = Decoder(model_ids=[b.model_id_bytes])
    tensors = [dec.decode(m).tensor for m in intra.pop("messages")]
    intra_segments = intra.pop("segment_bytes")
    rows = []
    for lag in args.lags:
        t = temporal_bytes(b, st, args.keep, args.bits, lag)
        del t["messages"]
        seg = t.pop("segment_bytes")
        rows.append(
            measure(tensors, st.segments, lag, shifts)
            | {f"temporal_{k}": v for k, v in t.items()}
            | {
                "temporal_vs_intra_bytes": t["bytes"] / intra["bytes"],
                "temporal_vs_intra_bytes_ci": ratio_interval(seg, intra_segments),
            }
        )
    _, h, w = b.split_shape
    params = {
        "bundle": args.bundle or "shipped",
        "model_id": b.model_id,
        "task": args.task,
        "frames": args.frames,
        "edge": {
            "keep": args.keep,
            "bits": args.bits,
            "temporal_skip": TEMPORAL_SKIP,
            "provider": "the shipped default",
        },
        "intra": intra,
        "feature_grid": [h, w],
        "input_px_per_cell": b.input.size[0] / h,
        "shifts": {"reach_cells": args.reach, "step_cells": args.step, "count": len(shifts)},
        "intervals": "paired percentile bootstrap 95% over whole objects (scipy.stats.bootstrap)",
        "cost_proxy": f"sum |symbol residual| at positions both keep + {NEW_SYMBOL_COST} per symbol kept only now",
        "seconds": round(time.perf_counter() - t0, 1),
    }
    keys = (
        "share_best_shift_not_zero",
        "cost_best_over_zero",
        "temporal_vs_intra_bytes",
        "temporal_vs_intra_bytes_ci",
        "temporal_top1",
        "temporal_top1_ci",
    )
    summary = {"intra_top1": intra["top1"]} | {f"lag{r['lag']}": {k: r[k] for k in keys} for r in rows}
    print(write_result("temporal_motion", summary, params, rows, args.out))
    for r in rows:
        ratio = "-" if r["cost_best_over_zero"] is None else f"{r['cost_best_over_zero']:.4f}"
        print(
            f"lag {r['lag']}: {r['frames']} frames, best shift not zero in {100 * r['share_best_shift_not_zero']:.1f} %, "
            f"cost at best / at zero {ratio}; temporal coding "
            f"{r['temporal_bytes']:.1f} B ({r['temporal_vs_intra_bytes']:.3f} x intra), top-1 {100 * r['temporal_top1']:.2f} %"
        )
    return 0


def main(argv=None) -> int:
    return run_cli(run, argv)


if __name__ == "__main__":
    sys.exit(main())
