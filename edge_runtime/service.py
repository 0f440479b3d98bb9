"""``edge-runtime run``: the edge service (source -> importance -> reduce -> front -> send).

Loads the TOML config (``--config``; environment overrides ``EDGE_RUNTIME__SECTION__KEY``;
``--set section.key=value``), prints it with ``--print-config``, warms up the kernels and graphs,
starts the metrics endpoint, tells systemd READY=1, and runs until SIGTERM / SIGINT (or
``--frames N``). Pings the systemd watchdog from the loop, so a stuck loop gets the service
restarted. Exit status: 0 on a clean stop, 2 on a configuration / bundle / transport error.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from edge_runtime.config import load_config, to_toml

__all__ = ["add_arguments", "run"]

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config (default: built-in defaults)")
    p.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    p.add_argument("--frames", type=int, default=None, metavar="N", help="stop after N frames")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable), e.g. --set quantize.bits=6",
    )
    p.add_argument("--endpoint", action="append", default=None, help="receiver endpoint (repeatable)")
    p.add_argument("--source", help="source kind: scene, camera, file, url, folder")
    p.add_argument("--uri", help="source uri (camera index / device, file, URL, folder)")
    p.add_argument("--no-metrics", action="store_true", help="do not serve the Prometheus endpoint")


def _overrides(args) -> list[str]:
    out = list(args.set)
    if args.endpoint:
        out.append("sender.endpoints=[" + ", ".join(f'"{e}"' for e in args.endpoint) + "]")
    if args.source:
        out.append(f"source.kind={args.source}")
    if args.uri is not None:
        out.append(f'source.uri="{args.uri}"')
    if args.no_metrics:
        out.append("metrics.enabled=false")
    return out


def run(args) -> int:
    cfg = load_config(args.config, overrides=_overrides(args))
    if args.print_config:
        sys.stdout.write(to_toml(cfg))
        return 0
    if args.frames is not None and args.frames < 1:
        log.error("--frames must be >= 1, got %d", args.frames)
        return 2

    # Imported here so that --print-config and config errors need no ONNX Runtime / Numba start-up.
    from edge_runtime.bundle import load_bundle
    from edge_runtime.metrics import Registry
    from edge_runtime.pipeline import EdgeLoop, EdgeMetrics, EdgePipeline
    from edge_runtime.sender import Sender
    from edge_runtime.sources import FrameFeed
    from edge_runtime.systemd import Notifier
    from edge_runtime.warmup import BackgroundWarmup, graphs_for

    notifier = Notifier()
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    bundle = load_bundle(cfg.runtime.bundle or None, threads=cfg.runtime.threads)
    log.info("bundle %s, split %s %s", bundle.model_name, bundle.split_name, list(bundle.split_shape))
    pipeline = EdgePipeline(bundle, cfg)
    if cfg.runtime.warmup:
        bundle.warmup(graphs_for(cfg, bundle))  # not the gradient graphs a config does not use
    registry = Registry()
    metrics = EdgeMetrics(registry)
    server = registry.serve(cfg.metrics.host, cfg.metrics.port) if cfg.metrics.enabled else None
    feed = FrameFeed.from_config(cfg.source, size=bundle.input.size[0], task=bundle.task)
    # Kernels compile in a child process while frames flow (the NumPy twins and zstd until they are
    # ready): no frame waits, and goes stale, behind a compilation.
    warmup = BackgroundWarmup(cfg).start() if cfg.runtime.warmup else None
    try:
        with Sender(cfg.sender) as sender:
            loop = EdgeLoop(
                pipeline,
                feed,
                sender,
                metrics=metrics,
                notifier=notifier,
                status_interval_s=cfg.runtime.status_interval_s,
            )
            notifier.ready(f"sending {cfg.source.kind} to {', '.join(cfg.sender.endpoints)}")
            stats = loop.run(max_frames=args.frames, stop=stop)
            notifier.stopping()
    finally:
        feed.close()
        if server is not None:
            server.close()
        if warmup is not None:
            warmup.close()
    d = stats.as_dict()
    log.info(
        "stopped: captured %d, sent %d (empty %d), delivered %d (%s), dropped %s, %.1f fps, %d bytes",
        d["captured"],
        d["sent"],
        d["sent_empty"],
        d["delivered"],
        d["policy"],
        d["dropped"],
        d["fps"],
        d["bytes"],
    )
    return 0
