"""``edge-runtime demo``: a receiver and an edge on loopback, with the defaults.

The receiver (:class:`edge_runtime.receiver.Receiver`) binds a free loopback port; the edge
pipeline (:class:`edge_runtime.pipeline.EdgeLoop`, the same code as ``edge-runtime run``) sends
the built-in moving-object stream to it over ZeroMQ. Every ``--every`` frames the demo prints the
accuracy of the receiver's results against the stream's ground truth, bytes per frame on the wire
and frames per second.

Nothing is left behind: the temporary CURVE keys are removed on every exit path (an error, Ctrl-C,
SIGTERM), and ``--set`` values are checked before the receiver starts.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import tempfile
import threading
import time
from pathlib import Path

from edge_runtime.config import load_config
from edge_runtime.errors import BundleError, ConfigError

__all__ = ["add_arguments", "run_demo"]

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", help="bundle folder (default: the shipped bundle)")
    p.add_argument("--frames", type=int, default=300, help="frames to send (default: %(default)s)")
    p.add_argument(
        "--every", type=int, default=50, help="print a status line every N frames (default: %(default)s)"
    )
    p.add_argument("--config", metavar="FILE", help="edge TOML config (default: built-in defaults)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override an edge config value, e.g. --set importance.provider=abn",
    )


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM unwinds like Ctrl-C, so the ``with`` blocks below clean up (the temporary keys)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _wait_for_handshake(sock, timeout_s: float = 2.0) -> None:
    """Wait (bounded) until the CURVE handshake with the receiver is done: the demo's edge is fast
    enough to fill the send queue (sndhwm) during the handshake, and its first frames were then
    dropped as backpressure (tests/runtime/test_cli.py)."""
    import zmq
    from zmq.utils.monitor import recv_monitor_message

    mon = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        if mon.poll(int(timeout_s * 1000)):
            recv_monitor_message(mon)
    finally:
        sock.disable_monitor()
        mon.close(0)


def run_demo(args) -> int:
    t_start = time.perf_counter()
    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    if args.every < 1:
        raise ConfigError(f"--every must be >= 1, got {args.every}")
    if args.bundle and not Path(args.bundle).is_dir():
        raise BundleError(f"bundle folder {args.bundle} does not exist")
    overrides = ["source.mode=sequential", "metrics.enabled=false", "runtime.status_interval_s=0", *args.set]
    if args.bundle:
        overrides.append(f'runtime.bundle="{args.bundle}"')
    # Every value is checked before anything starts (the receiver used to start first); the
    # endpoint and keys are the demo's own, set below.
    cfg = load_config(args.config, overrides=[*overrides, 'sender.endpoints=["tcp://127.0.0.1:1"]'], env={})

    from edge_runtime.warmup import BackgroundWarmup

    # Says at once what it does; compiles only what this config uses, in a child process, while
    # the first frames go through the NumPy twins and zstd. Stopped on every exit path.
    with _sigterm_as_interrupt(), BackgroundWarmup(cfg, receiver=True):
        return _serve(args, cfg, overrides, t_start)


def _serve(args, cfg, overrides: list[str], t_start: float) -> int:
    from edge_runtime.bundle import load_bundle
    from edge_runtime.pipeline import EdgeLoop, EdgePipeline
    from edge_runtime.receiver import Receiver
    from edge_runtime.sender import Sender
    from edge_runtime.sources import FrameFeed
    from edge_runtime.transport import generate_keypair
    from edge_runtime.warmup import graphs_for

    bundle = load_bundle(args.bundle)
    bundle.warmup(graphs_for(cfg, bundle))
    results: dict[int, int | None] = {}
    lock = threading.Lock()
    first: list[float] = []

    def on_result(r) -> None:
        with lock:
            results[r.seq] = r.cls
            if not first:
                first.append(time.perf_counter() - t_start)
                print(f"first result {first[0]:.2f} s after start", flush=True)

    stop = threading.Event()
    # CURVE on loopback too: a receiver key pair, an edge key pair enrolled in the allow folder.
    # The folder goes on every exit path: an error, Ctrl-C, SIGTERM (tests/runtime/test_demo.py).
    with tempfile.TemporaryDirectory(prefix="edge-demo-keys-") as key_dir:
        keys = Path(key_dir)
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
                f"receiver {rx.endpoint}",
                flush=True,
            )
            with Sender(cfg.sender) as sender:
                _wait_for_handshake(sender.sock)
                loop = EdgeLoop(pipeline, feed, sender, status_interval_s=0)
                edge_done = threading.Event()

                def run_edge() -> None:
                    try:
                        loop.run(max_frames=args.frames, stop=stop)
                    finally:
                        edge_done.set()

                # Waits on an Event, not Thread.join: a Ctrl-C inside join() marks the thread as
                # stopped while it still runs (CPython 3.11), and the sender was then closed
                # under it (tests/runtime/test_demo.py, SIGTERM).
                edge = threading.Thread(target=run_edge, name="demo-edge", daemon=True)
                t0 = time.perf_counter()
                edge.start()
                try:
                    next_report = args.every
                    while not edge_done.is_set():
                        edge_done.wait(timeout=0.2)
                        with lock:
                            done = len(results)
                        if done >= next_report:
                            _report(loop.stats, results, labels, lock, time.perf_counter() - t0)
                            next_report += args.every
                finally:
                    stop.set()
                    edge_done.wait(timeout=10)
                rx.wait(frames=loop.stats.sent, duration=10)  # the last results in flight
                _report(loop.stats, results, labels, lock, time.perf_counter() - t0)
            d = loop.stats.as_dict()
    plain = (
        f", {pipeline.plain_frames} coded with zstd while the kernels compiled"
        if pipeline.plain_frames
        else ""
    )
    print(
        f"edge: captured {d['captured']}, sent {d['sent']} (empty {d['sent_empty']}), dropped {d['dropped']}, "
        f"accounted: {d['accounted']}{plain}"
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
