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
import functools
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
        "--task",
        choices=["classify", "detect"],
        help="classify: the shipped classifier on the one-object stream; detect: the shipped detector on "
        "the stream of several tracks, mAP against its boxes (default: the --bundle's task, else classify)",
    )
    p.add_argument(
        "--record",
        metavar="FILE.mp4",
        help="write the demo's frames to this video with the receiver's results drawn (boxes, or the "
        "class), and the true boxes in thin white",
    )
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
    if args.record and Path(args.record).suffix.lower() not in (".mp4", ".avi"):
        raise ConfigError(f"--record: write an .mp4 (or .avi) file, got {args.record!r}")
    args.bundle = _bundle_for_task(args)
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


def _bundle_for_task(args) -> str | None:
    """The bundle folder for ``--task`` (the shipped one of that task when no --bundle); an error
    when --bundle and --task disagree."""
    import json

    from edge_runtime.bundle import DETECT_BUNDLE

    if args.bundle is None:
        if args.task == "detect":
            return str(DETECT_BUNDLE)
        return None
    if args.task is not None:
        try:
            task = json.loads((Path(args.bundle) / "manifest.json").read_text()).get("task", "classify")
        except (OSError, ValueError):
            return args.bundle  # load_bundle says what is wrong with it
        if task != args.task:
            raise ConfigError(f"--task {args.task}, but bundle {args.bundle} is a {task} bundle")
    return args.bundle


def _serve(args, cfg, overrides: list[str], t_start: float) -> int:
    from edge_runtime.bundle import load_bundle
    from edge_runtime.importance import resolve_provider
    from edge_runtime.pipeline import EdgeLoop, EdgePipeline
    from edge_runtime.receiver import Receiver
    from edge_runtime.sender import Sender
    from edge_runtime.sources import FrameFeed
    from edge_runtime.transport import generate_keypair
    from edge_runtime.warmup import graphs_for

    bundle = load_bundle(args.bundle)
    bundle.warmup(graphs_for(cfg, bundle))
    detect = bundle.task == "detect"
    results: dict[int, object] = {}
    lock = threading.Lock()
    first: list[float] = []

    def on_result(r) -> None:
        with lock:
            results[r.seq] = r if detect or args.record else r.cls
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
        feed = FrameFeed.from_config(cfg.source, size=bundle.input.size[0], task=bundle.task)
        geometry = None
        if detect and hasattr(feed.source, "stream"):  # the scene stream's frame size is known
            from edge_runtime.detection import FrameGeometry

            geometry = FrameGeometry({"*": feed.source.stream.frame_hw}, cfg.source.resize)
        with Receiver(
            [bundle],
            bind="tcp://127.0.0.1:0",
            socket_type="router",  # the edge's DEALER gets acknowledgements back
            server_secret=server_secret,
            allow_dir=keys / "allow",
            callback=on_result,
            geometry=geometry,
        ) as rx:
            overrides.append(f'sender.endpoints=["{rx.endpoint}"]')
            cfg = load_config(args.config, overrides=overrides, env={})
            pipeline = EdgePipeline(bundle, cfg)
            labels: dict[int, object] = {}
            frames: dict[int, object] = {}
            process = pipeline.process

            def process_and_remember(frame, seq, base=None):
                labels[seq] = frame.truth if detect else frame.label
                if args.record:
                    frames[seq] = frame.image
                return process(frame, seq, base)

            pipeline.process = process_and_remember
            report = functools.partial(_report_detect, bundle) if detect else _report
            print(
                f"demo: {bundle.model_name} ({bundle.model_id[:12]}) | importance {resolve_provider(bundle, cfg.importance.provider)}, "
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
                # Started inside the try: an interrupt that lands while start() returns (the first
                # result can come before it does) still stops and awaits the edge before the
                # sender closes (a CI failure: "Socket operation on non-socket" in demo-edge).
                edge = threading.Thread(target=run_edge, name="demo-edge", daemon=True)
                t0 = time.perf_counter()
                try:
                    edge.start()
                    next_report = args.every
                    while not edge_done.is_set():
                        edge_done.wait(timeout=0.2)
                        with lock:
                            done = len(results)
                        if done >= next_report:
                            report(loop.stats, results, labels, lock, time.perf_counter() - t0)
                            next_report += args.every
                finally:
                    stop.set()
                    if edge.ident is not None:  # it started
                        edge_done.wait(timeout=10)
                rx.wait(frames=loop.stats.sent, duration=10)  # the last results in flight
                report(loop.stats, results, labels, lock, time.perf_counter() - t0)
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
    if args.record:
        n = _record(args.record, frames, results, labels, bundle)
        print(f"recorded {n} frames with the receiver's results to {args.record}")
    return 0


def _report(stats, results, labels, lock, seconds: float) -> None:
    with lock:
        pairs = [(results[s], labels.get(s)) for s in results if labels.get(s) is not None]
    n = len(pairs)
    correct = sum(getattr(c, "cls", c) == y for c, y in pairs)
    sent = max(stats.sent, 1)
    print(
        f"results {n:5d}  accuracy {correct / max(n, 1):.3f}  bytes/frame {stats.bytes / sent:7.1f}  "
        f"fps {stats.processed / seconds:6.1f}"
    )


def _report_detect(bundle, stats, results, labels, lock, seconds: float) -> None:
    """mAP of the receiver's boxes (frame pixels) against the stream's true boxes."""
    from edge_runtime.detection import mean_average_precision

    with lock:
        seqs = [s for s in sorted(results) if labels.get(s) is not None]
        dets = [_as_tuple(results[s]) for s in seqs]
        truths = [labels[s] for s in seqs]
    n = len(seqs)
    sent = max(stats.sent, 1)
    if any(len(t[0]) for t in truths):
        m = mean_average_precision(dets, truths, bundle.num_classes)
        acc = f"mAP@0.5 {m['map50']:.3f}  mAP@0.5:0.95 {m['map']:.3f}"
    else:
        acc = "mAP -- (no object yet)"
    print(
        f"results {n:5d}  {acc}  bytes/frame {stats.bytes / sent:7.1f}  fps {stats.processed / seconds:6.1f}"
    )


def _as_tuple(result):
    """A detection Result's boxes as (boxes, scores, classes) arrays (empty for an empty frame)."""
    import numpy as np

    dets = result.detections or ()
    return (
        np.array([d["box"] for d in dets], np.float32).reshape(-1, 4),
        np.array([d["score"] for d in dets], np.float32),
        np.array([d["class"] for d in dets], np.int64),
    )


def _record(path: str, frames: dict, results: dict, labels: dict, bundle, fps: float = 15.0) -> int:
    """Write the frames in seq order with the receiver's results drawn, at 2x size; returns the
    number of frames written."""
    import cv2
    import numpy as np

    seqs = sorted(frames)
    if not seqs:
        return 0
    h, w = frames[seqs[0]].shape[:2]
    scale = 2
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w * scale, h * scale))
    if not writer.isOpened():
        raise ConfigError(f"--record: OpenCV cannot write {path}")
    palette = [tuple(int(c) for c in cv2.cvtColor(np.uint8([[[k * 18, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0])
               for k in range(max(bundle.num_classes, 1))]  # fmt: skip
    try:
        for s in seqs:
            img = cv2.resize(frames[s][:, :, ::-1], (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
            img = np.ascontiguousarray(img)
            truth, r = labels.get(s), results.get(s)
            if bundle.task == "detect":
                if truth is not None:
                    for b in truth[0]:
                        x0, y0, x1, y1 = (int(round(v * scale)) for v in b)
                        cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), (255, 255, 255), 1)
                for d in getattr(r, "detections", None) or ():
                    x0, y0, x1, y1 = (int(round(v * scale)) for v in d["box"])
                    colour = palette[d["class"] % len(palette)]
                    cv2.rectangle(img, (x0, y0), (x1 - 1, y1 - 1), colour, 2)
                    cv2.putText(img, f"{d['label']} {d['score']:.2f}", (x0 + 2, max(y0 - 4, 10)),
                                cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)  # fmt: skip
                if r is not None and r.detections is None:
                    cv2.putText(
                        img, "empty message", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (200, 200, 200), 1
                    )
            else:
                text = "no result" if r is None else ("empty" if r.cls is None else r.label)
                cv2.putText(
                    img, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
                )
            writer.write(img)
    finally:
        writer.release()
    return len(seqs)
