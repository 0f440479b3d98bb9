"""``edge-runtime demo``: a receiver and an edge on loopback, with the defaults.

The receiver (:class:`edge_runtime.receiver.Receiver`) binds a free loopback port; the edge
pipeline (:class:`edge_runtime.pipeline.EdgeLoop`, the same code as ``edge-runtime run``) sends
the built-in moving-object stream to it over ZeroMQ. Every ``--every`` frames the demo prints the
accuracy of the receiver's results against the stream's ground truth, bytes per frame on the wire
and frames per second.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time
from pathlib import Path

from edge_runtime.config import load_config

__all__ = ["add_arguments", "run_demo"]

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", help="bundle folder (default: the shipped bundle)")
    p.add_argument("--frames", type=int, default=300, help="frames to send (default: %(default)s)")
    p.add_argument("--every", type=int, default=50, help="print a status line every N frames")
    p.add_argument("--config", metavar="FILE", help="edge TOML config (default: built-in defaults)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override an edge config value, e.g. --set importance.provider=abn",
    )


def run_demo(args) -> int:
    import kernels
    from edge_runtime.bundle import load_bundle
    from edge_runtime.pipeline import EdgeLoop, EdgePipeline
    from edge_runtime.receiver import Receiver
    from edge_runtime.sender import Sender
    from edge_runtime.sources import FrameFeed
    from edge_runtime.transport import generate_keypair

    if args.frames < 1:
        raise SystemExit(f"--frames must be >= 1, got {args.frames}")
    overrides = ["source.mode=sequential", "metrics.enabled=false", "runtime.status_interval_s=0", *args.set]
    if args.bundle:
        overrides.append(f'runtime.bundle="{args.bundle}"')
    bundle = load_bundle(args.bundle)
    kernels.warmup()
    bundle.warmup()
    results: dict[int, int | None] = {}
    lock = threading.Lock()

    def on_result(r) -> None:
        with lock:
            results[r.seq] = r.cls

    # CURVE on loopback too: a receiver key pair, an edge key pair enrolled in the allow folder.
    keys = Path(tempfile.mkdtemp(prefix="edge-demo-keys-"))
    (keys / "allow").mkdir()
    _, server_secret = generate_keypair(keys, "receiver")
    edge_public, edge_secret = generate_keypair(keys, "edge")
    edge_public.rename(keys / "allow" / edge_public.name)
    overrides += [
        f'sender.client_secret_key="{edge_secret}"',
        f'sender.server_public_key="{keys / "receiver.key"}"',
    ]
    with Receiver(
        [bundle],
        bind="tcp://127.0.0.1:0",
        socket_type="router",  # the edge's DEALER gets acknowledgements back
        server_secret=server_secret,
        allow_dir=keys / "allow",
        callback=on_result,
    ) as rx:
        overrides.append(f'sender.endpoints=["{rx.endpoint}"]')
        cfg = load_config(args.config, overrides=overrides, env={})
        pipeline = EdgePipeline(bundle, cfg)
        labels: dict[int, int | None] = {}
        process = pipeline.process

        def process_and_remember(frame, seq, base=None):
            labels[seq] = frame.label
            return process(frame, seq, base)

        pipeline.process = process_and_remember
        feed = FrameFeed.from_config(cfg.source, size=bundle.input.size[0])
        print(
            f"demo: {bundle.model_name} ({bundle.model_id[:12]}) | importance {cfg.importance.provider}, "
            f"{cfg.reduce.domain} {cfg.reduce.mode}, {cfg.quantize.bits} bits, coder {cfg.codec.coder} | "
            f"receiver {rx.endpoint}"
        )
        with Sender(cfg.sender) as sender:
            loop = EdgeLoop(pipeline, feed, sender, status_interval_s=0)
            edge = threading.Thread(target=loop.run, kwargs={"max_frames": args.frames}, daemon=True)
            t0 = time.perf_counter()
            edge.start()
            next_report = args.every
            while edge.is_alive():
                edge.join(timeout=0.2)
                with lock:
                    done = len(results)
                if done >= next_report:
                    _report(loop.stats, results, labels, lock, time.perf_counter() - t0)
                    next_report += args.every
            rx.wait(frames=loop.stats.sent, duration=10)  # the last results in flight
            _report(loop.stats, results, labels, lock, time.perf_counter() - t0)
        d = loop.stats.as_dict()
    print(
        f"edge: captured {d['captured']}, sent {d['sent']} (empty {d['sent_empty']}), dropped {d['dropped']}, "
        f"accounted: {d['accounted']}"
    )
    return 0


def _report(stats, results, labels, lock, seconds: float) -> None:
    with lock:
        pairs = [(results[s], labels.get(s)) for s in results if labels.get(s) is not None]
    n = len(pairs)
    correct = sum(c == y for c, y in pairs)
    sent = max(stats.sent, 1)
    print(
        f"results {n:5d}  accuracy {correct / max(n, 1):.3f}  bytes/frame {stats.bytes / sent:7.1f}  "
        f"fps {stats.processed / seconds:6.1f}"
    )
