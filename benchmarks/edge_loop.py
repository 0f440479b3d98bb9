"""Edge loop benchmark: frames per second, per-stage time and the share outside ONNX, per mode;
temporal reuse against a map every frame; rate control's error against its target.

Every mode runs the real loop (sequential built-in stream -> pipeline -> ZeroMQ PUSH -> a PULL
socket drained by a thread on loopback). Modes run interleaved, ``--reps`` times each, so that a
noisy shared machine hits them alike; accuracy is measured afterwards by decoding the received
messages and running the back half, against the scene's ground-truth label.

``outside_onnx_share`` (and the goal on it) is the shipped default configuration (mode
``default``: ``edge_runtime/config.py`` unchanged); the other modes sit beside it in
``outside_onnx_share_by_mode``. The reuse figures compare grad_selective with and without reuse
(reuse saves nothing for the default fused map, which comes with the front half). Frames: the
test split's moving stream (``edge_runtime.datasets``).

    python benchmarks/edge_loop.py [--frames 120] [--reps 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

import msgspec
import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import write_result  # noqa: E402
from edge_runtime import datasets  # noqa: E402
from edge_runtime.bundle import load_bundle  # noqa: E402
from edge_runtime.codec import Decoder  # noqa: E402
from edge_runtime.config import Config, config_from_dict  # noqa: E402
from edge_runtime.importance import resolve_provider  # noqa: E402
from edge_runtime.pipeline import STAGES, EdgeLoop, EdgePipeline  # noqa: E402
from edge_runtime.sender import Sender  # noqa: E402
from edge_runtime.sources import FrameFeed, SceneSource  # noqa: E402

SEED = datasets.STREAM_SEEDS["test"]  # the scene source at the test split's stream seed
SEGMENT = 15  # a new object every 15 frames: many objects in a short run
# The working point every mode shares (a mode's own sections override it): the shipped defaults
# (edge_runtime/config.py), so that "default" below is exactly what runs out of the box.
BASE: dict[str, dict] = {}
DEFAULT_MODE = "default"

MODES: dict[str, dict] = {
    DEFAULT_MODE: {},  # the shipped configuration: the summary's outside_onnx_share
    "grad": {"importance": {"provider": "grad_selective"}},
    "grad_reuse4": {"importance": {"provider": "grad_selective", "reuse_interval": 4}},
    "grad_reuse8": {"importance": {"provider": "grad_selective", "reuse_interval": 8}},
    "grad_reuse8_phase": {
        "importance": {"provider": "grad_selective", "reuse_interval": 8, "motion": "phase"}
    },
    "grad_image_blur": {
        "importance": {"provider": "grad_selective"},
        "reduce": {"domain": "image", "mode": "blur"},
    },
    "fused": {"importance": {"provider": "fused"}},
    "abn": {"importance": {"provider": "abn"}},
    "none": {"importance": {"provider": "none"}},
}
REUSE_MODE = "grad_reuse8"


class Sink:
    """A PULL socket on loopback drained by a thread; keeps every message."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.sock = ctx.socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.messages: list[bytes] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            if self.sock.poll(50):
                self.messages.append(self.sock.recv())

    def take(self, n: int, timeout: float = 5.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        out, self.messages = self.messages, []
        return out

    def close(self) -> None:
        self._stop.set()
        self._t.join()
        self.sock.close()


def run_mode(bundle, ctx, sink, section: dict, frames: int, extra: dict | None = None) -> dict:
    merged = {k: dict(v) for k, v in BASE.items()}
    for k, v in section.items():
        merged[k] = {**merged.get(k, {}), **v}
    data = {
        **merged,
        "source": {"mode": "sequential", "seed": SEED, "segment": SEGMENT},
        # a PULL sink never acknowledges: PUSH with delivery policy live (docs/wire.md)
        "sender": {"endpoints": [sink.endpoint], "sndhwm": 1000, "socket": "push"},
        "delivery": {"policy": "live"},
        **(extra or {}),
    }
    cfg = config_from_dict(data, env={})
    pipe = EdgePipeline(bundle, cfg)
    feed = FrameFeed.from_config(cfg.source, size=bundle.input.size[0])
    with Sender(cfg.sender, context=ctx) as sender:
        # connect first (IMMEDIATE drops frames until the connection is up)
        deadline = time.monotonic() + 5
        while not sender.sock.poll(10, zmq.POLLOUT) and time.monotonic() < deadline:
            pass
        c0 = time.process_time()
        stats = EdgeLoop(pipe, feed, sender, status_interval_s=0).run(max_frames=frames)
        cpu_s = time.process_time() - c0
    msgs = sink.take(stats.sent)
    d = stats.as_dict()
    d["messages"] = msgs
    # CPU seconds of this process per frame: less sensitive than wall time to other jobs on the machine
    d["cpu_fps"] = frames / cpu_s if cpu_s > 0 else float("nan")
    d["reuse"] = {
        "fresh": getattr(pipe.provider, "fresh", None),
        "reused": getattr(pipe.provider, "reused", None),
    }
    if pipe.rate is not None:
        d["rate"] = {**pipe.rate.error, "target_bytes": pipe.rate.target_bytes, "final_keep": pipe.rate.keep}
    return d


def _stream(bundle):
    """The very stream the loop's scene source reads (labels must match the frames it sent)."""
    return SceneSource(bundle.input.size[0], seed=SEED, segment=SEGMENT).stream


def accuracy(bundle, msgs: list[bytes]) -> tuple[float, int]:
    dec = Decoder(model_ids=[bundle.model_id_bytes])
    stream = _stream(bundle)
    hits = n = 0
    for m in msgs:
        f = dec.decode(m)
        label = stream.frame(f.seq).label
        if f.tensor is None:
            continue
        hits += int(bundle.back(f.tensor.dequantize()[None]).argmax()) == label
        n += 1
    return (hits / n if n else float("nan")), n


def model_accuracy(bundle, frames: int) -> float:
    stream = _stream(bundle)
    hits = 0
    for t in range(frames):
        s = stream.frame(t)
        hits += (
            int(bundle.back(bundle.front(bundle.preprocess(s.image))[bundle.split_name]).argmax()) == s.label
        )
    return hits / frames


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per session")
    ap.add_argument("--rate-bytes", type=float, default=500.0, help="rate control target, bytes per frame")
    ap.add_argument("--out", help="output JSON (default benchmarks/results/edge_loop.json)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from edge_runtime import kernels

    kernels.warmup()
    bundle = load_bundle(threads=args.threads)
    bundle.warmup()
    ctx = zmq.Context()
    sink = Sink(ctx)
    runs: dict[str, list[dict]] = {m: [] for m in MODES}
    try:
        for rep in range(args.reps):
            for name, section in MODES.items():
                d = run_mode(bundle, ctx, sink, section, args.frames)
                runs[name].append(d)
                print(
                    f"rep {rep} {name:<18} {d['fps']:6.1f} fps  {d['bytes'] / max(d['sent'], 1):7.0f} B/frame"
                )
        rate_runs = []
        for target_kind, extra in (
            ("bytes", {"rate": {"target_bytes": args.rate_bytes}}),
            ("kbps", {"rate": {"target_kbps": args.rate_bytes * 8 * 30 / 1000}, "source": None}),
        ):
            ex = dict(extra)
            src = (
                {"mode": "latest", "fps": 30.0, "seed": SEED, "segment": SEGMENT} if "source" in ex else None
            )
            ex.pop("source", None)
            if src:
                ex["source"] = src
            d = run_mode(
                bundle,
                ctx,
                sink,
                {"importance": {"provider": "grad_selective", "reuse_interval": 4}},
                args.frames * 2,
                ex,
            )
            d["target_kind"] = target_kind
            rate_runs.append(d)
    finally:
        sink.close()
        ctx.term()

    results = {}
    for name, ds in runs.items():
        msgs = [m for d in ds for m in d["messages"]]
        acc, n = accuracy(bundle, msgs)
        fps = [d["fps"] for d in ds]
        results[name] = {
            "fps_median": float(np.median(fps)),
            "fps_runs": fps,
            "cpu_fps_median": float(np.median([d["cpu_fps"] for d in ds])),
            "bytes_per_frame": sum(d["bytes"] for d in ds) / max(sum(d["sent"] for d in ds), 1),
            "accuracy": acc,
            "decoded": n,
            "stage_ms": {k: float(np.mean([d["stage_ms"][k] for d in ds])) for k in STAGES},
            "outside_onnx_share": float(np.mean([d["outside_onnx_share"] for d in ds])),
            "kept_mean": float(np.mean([d["kept_mean"] for d in ds])),
            "dropped": [d["dropped"] for d in ds],
            "accounted": all(d["accounted"] for d in ds),
            "reuse": ds[0]["reuse"],
        }
    full_model = model_accuracy(bundle, args.frames)
    g, r = results["grad"], results[REUSE_MODE]
    dflt = results[DEFAULT_MODE]
    shipped = Config()
    rate = []
    for d in rate_runs:
        rate.append(
            {
                "target_kind": d["target_kind"],
                **d["rate"],
                "bytes_per_frame": d["bytes"] / max(d["sent"], 1),
                "fps": d["fps"],
            }
        )
    summary = {
        # the shipped default configuration; every other mode beside it, labelled
        "outside_onnx_share": dflt["outside_onnx_share"],
        "default_mode": {
            "provider": resolve_provider(bundle, shipped.importance.provider),
            "keep": shipped.reduce.value,
            "bits": shipped.quantize.bits,
            "coder": shipped.codec.coder,
            "fps_median": dflt["fps_median"],
            "bytes_per_frame": dflt["bytes_per_frame"],
            "accuracy": dflt["accuracy"],
        },
        "outside_onnx_share_by_mode": {k: v["outside_onnx_share"] for k, v in results.items()},
        # map reuse only saves work for the gradient providers (the fused map comes with the front
        # half), so the reuse figures compare grad_selective every frame with every 8th frame
        "reuse_provider": "grad_selective",
        "reuse_mode": REUSE_MODE,
        "reuse_fps_ratio": r["fps_median"] / g["fps_median"],
        "reuse_cpu_fps_ratio": r["cpu_fps_median"] / g["cpu_fps_median"],
        "reuse_accuracy_drop_pt": 100 * (g["accuracy"] - r["accuracy"]),
        "reuse_bytes_increase": r["bytes_per_frame"] / g["bytes_per_frame"] - 1,
        "rate_control_error": abs(rate[0]["of_mean"]),
        "rate_control_error_per_frame": rate[0]["mean_abs"],
        "rate_control_error_kbps": abs(rate[1]["of_mean"]),
        "full_model_accuracy": full_model,
        "goals": {
            "outside_onnx_share<=0.15": dflt["outside_onnx_share"] <= 0.15,
            "reuse_fps_ratio>=3": r["fps_median"] / g["fps_median"] >= 3,
            "reuse_accuracy_drop_pt<=1": 100 * (g["accuracy"] - r["accuracy"]) <= 1,
            "reuse_bytes_increase<=0.10": r["bytes_per_frame"] / g["bytes_per_frame"] - 1 <= 0.10,
        },
    }
    params = {
        "frames": args.frames,
        "reps": args.reps,
        "threads": args.threads,
        "seed": SEED,
        "segment": SEGMENT,
        "modes": MODES,
        "rate_target_bytes": args.rate_bytes,
        "base": BASE,
        "defaults": {
            k: msgspec.structs.asdict(getattr(shipped, k))
            for k in ("importance", "reduce", "quantize", "codec")
        },
        "bundle": bundle.model_name,
        "split_shape": list(bundle.split_shape),
    }
    path = write_result("edge_loop", summary, params, {"modes": results, "rate_control": rate}, args.out)
    print(f"wrote {path}")
    for k in (
        "outside_onnx_share",
        "reuse_fps_ratio",
        "reuse_accuracy_drop_pt",
        "reuse_bytes_increase",
        "rate_control_error",
    ):
        print(f"{k:<24} {summary[k]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
