"""``edge-runtime receive``: arguments, the optional TOML config file, and the service loop.

Every option can come from the command line or from ``--config FILE`` (TOML, keys named like the
long options with ``_`` for ``-``; see ``deploy/receiver.example.toml``); the command line wins.
An unknown key in the file is a :class:`~edge_runtime.errors.ConfigError` that names it.
A ``[cluster]`` table (:class:`~edge_runtime.receiver.cluster.ClusterConfig`) puts the back half on
a Ray Serve deployment; ``--ray ADDRESS`` does too, and overrides its ``address``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
import tomllib
from pathlib import Path

from edge_runtime.detection import FrameGeometry
from edge_runtime.errors import ConfigError
from edge_runtime.receiver.cluster import ClusterConfig
from edge_runtime.receiver.service import SOCKET_TYPES, Receiver
from edge_runtime.systemd import Notifier

__all__ = ["add_arguments", "run", "DEFAULTS", "load_config"]

log = logging.getLogger(__name__)

DEFAULTS: dict[str, object] = {
    "bind": "tcp://*:5555",
    "socket": "router",
    "bundle": [],
    "keys_secret": None,
    "allow_dir": None,
    "workers": 0,
    "threads": 0,
    "max_batch": 16,
    "max_wait_ms": 0.0,  # greedy: p99 2.6 x the model stages against 3.9 x at 2 ms (docs/receiver.md)
    "jsonl": None,
    "jsonl_max_mb": 64.0,
    "jsonl_backups": 5,
    "pub": None,
    "metrics_host": "127.0.0.1",
    "metrics_port": None,
    "duration": None,
    "frames": None,
    "status_interval_s": 10.0,
    "ray": None,
    "cluster": None,  # the [cluster] table, checked by ClusterConfig
    "frame_size": [],  # detection bundles: [STREAM=]WxH, the camera frame size (boxes in frame pixels)
    "resize": "letterbox",  # how the edges fit frames to the model input (their source.resize)
}
_TYPES = {
    "bind": str, "socket": str, "bundle": list, "keys_secret": str, "allow_dir": str, "workers": int,
    "threads": int, "max_batch": int, "max_wait_ms": (int, float), "jsonl": str, "jsonl_max_mb": (int, float),
    "jsonl_backups": int, "pub": str, "metrics_host": str, "metrics_port": int, "duration": (int, float),
    "frames": int, "status_interval_s": (int, float), "frame_size": list, "resize": str,
}  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    # defaults are None here so that a value given in --config is not overridden by a default
    a = p.add_argument
    a("--config", help="TOML file with any of the options below (command line wins)")
    a("--bind", help=f"public endpoint to bind (default: {DEFAULTS['bind']})")
    a(
        "--socket",
        choices=sorted(SOCKET_TYPES),
        help="router (edge DEALER, acknowledged; default) or pull (edge PUSH, policy live)",
    )
    a("--bundle", action="append", help="bundle folder; repeat to serve several models (default: shipped)")
    a("--keys-secret", help="the receiver's CURVE .key_secret file (with --allow-dir)")
    a("--allow-dir", help="folder of enrolled edge boxes' public .key files (with --keys-secret)")
    a("--workers", type=int, help="worker processes behind a ZeroMQ proxy (default 0: one process)")
    a(
        "--ray",
        metavar="ADDRESS",
        help="cluster mode: the back half on a Ray Serve deployment of the Ray cluster at ADDRESS "
        '("auto", HOST:PORT, ray://HOST:PORT); needs pip install ".[cluster]"; see [cluster] in the config',
    )
    a("--threads", type=int, help="ONNX Runtime intra-op threads per process (default: cores / workers)")
    a("--max-batch", type=int, help=f"largest back-half batch (default {DEFAULTS['max_batch']})")
    a(
        "--max-wait-ms",
        type=float,
        help=f"longest a frame waits for its batch (default {DEFAULTS['max_wait_ms']})",
    )
    a("--jsonl", help="write results as JSON lines to this file (rotated by size)")
    a(
        "--jsonl-max-mb",
        type=float,
        help=f"rotate the JSONL file at this size (default {DEFAULTS['jsonl_max_mb']})",
    )
    a("--jsonl-backups", type=int, help=f"rotated files kept (default {DEFAULTS['jsonl_backups']})")
    a("--pub", help="publish results on a ZeroMQ PUB socket bound here (topic = stream id)")
    a("--metrics-host", help=f"metrics endpoint address (default {DEFAULTS['metrics_host']})")
    a("--metrics-port", type=int, help="serve Prometheus metrics on this port (0: any free port)")
    a(
        "--frame-size",
        action="append",
        metavar="[STREAM=]WxH",
        help="detection bundles: the camera frame size of STREAM (without STREAM=: of every stream), so "
        "that boxes are in frame pixels with the letterbox undone; repeat per stream (default: boxes in "
        "model-input pixels)",
    )
    a(
        "--resize",
        choices=["letterbox", "crop", "stretch"],
        help="how the edges fit frames to the model input, their source.resize (default letterbox)",
    )
    a("--duration", type=float, help="stop after this many seconds (default: run until SIGTERM)")
    a("--frames", type=int, help="stop after this many messages were accounted for")
    a(
        "--status-interval-s",
        type=float,
        help=f"one status line every this many seconds, 0: none (default {DEFAULTS['status_interval_s']})",
    )


def status_line(totals: dict, received_then: int, seconds: float) -> str:
    """The periodic status line (like the edge's): counts so far and the rate since the last one."""
    rate = (totals["received"] - received_then) / seconds if seconds > 0 else 0.0
    rejected = " ".join(f"{k}={v}" for k, v in sorted(totals["rejected"].items()) if v)
    return (
        f"received {totals['received']} results {totals['results']} (empty {totals['empty']}) "
        f"rejected [{rejected or 'none'}] gaps {totals['gaps']} | {rate:.1f} msg/s"
    )


def load_config(path: str | Path) -> dict:
    """Read a TOML config; unknown keys and wrong types raise ConfigError naming the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    # keys at the top level, or all inside one [receiver] table; and an optional [cluster] table
    cluster = data.pop("cluster", None)
    section = data["receiver"] if list(data) == ["receiver"] and isinstance(data["receiver"], dict) else data
    if cluster is None and isinstance(section.get("cluster"), dict):
        cluster = section.pop("cluster")  # [receiver.cluster]
    out = {}
    if cluster is not None:
        if not isinstance(cluster, dict):
            raise ConfigError(f"{path}: 'cluster' must be a table ([cluster]), got {cluster!r}")
        for key in ("address", "deployment"):
            if key in cluster and not isinstance(cluster[key], str):
                raise ConfigError(f"{path}: [cluster] {key} must be a string, got {cluster[key]!r}")
        out["cluster"] = {k.replace("-", "_"): v for k, v in cluster.items()}
        ClusterConfig.from_dict({"address": "auto"} | out["cluster"], f"{path}: [cluster]")  # check now
    for key, value in section.items():
        k = key.replace("-", "_")
        if k not in _TYPES:
            raise ConfigError(f"{path}: unknown key {key!r}; known keys: {', '.join(sorted(_TYPES))}")
        if not isinstance(value, _TYPES[k]) or isinstance(value, bool):
            raise ConfigError(f"{path}: key {key!r} has the wrong type ({type(value).__name__}: {value!r})")
        out[k] = value
    return out


def _resolve(args) -> dict:
    conf = dict(DEFAULTS)
    if getattr(args, "config", None):
        conf.update(load_config(args.config))
    for k in DEFAULTS:
        v = getattr(args, k, None)
        if v is not None:
            conf[k] = v
    return conf


def cluster_config(conf: dict) -> ClusterConfig | None:
    """The cluster section with ``--ray`` applied; ``None``: the back half runs in-process."""
    table = dict(conf.get("cluster") or {})
    if conf.get("ray") is not None:
        table["address"] = conf["ray"]
    if not table:
        return None
    return ClusterConfig.from_dict(table)


def build_receiver(conf: dict) -> Receiver:
    return Receiver(
        conf["bundle"] or None,
        bind=conf["bind"],
        socket_type=conf["socket"],
        server_secret=conf["keys_secret"],
        allow_dir=conf["allow_dir"],
        max_batch=conf["max_batch"],
        max_wait_ms=conf["max_wait_ms"],
        workers=conf["workers"],
        threads=conf["threads"],
        jsonl=conf["jsonl"],
        jsonl_max_bytes=int(conf["jsonl_max_mb"] * (1 << 20)),
        jsonl_backups=conf["jsonl_backups"],
        pub=conf["pub"],
        metrics_host=conf["metrics_host"],
        metrics_port=conf["metrics_port"],
        cluster=cluster_config(conf),
        geometry=FrameGeometry.parse(conf["frame_size"], conf["resize"]),
    )


def run(args) -> int:
    conf = _resolve(args)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    frames, duration = conf["frames"], conf["duration"]
    end = None if duration is None else time.monotonic() + duration
    notifier = Notifier()
    interval = conf["status_interval_s"]
    with build_receiver(conf) as rx:
        last_status, received_then = time.monotonic(), 0
        print(  # noqa: T201 - CLI output
            f"receiving on {rx.endpoint}"
            + (f", metrics on port {rx.metrics_port}" if rx.metrics_port else "")
        )
        notifier.ready(f"receiving on {rx.endpoint}")
        while not stop.is_set():
            now = time.monotonic()
            if end is not None and now >= end:
                break
            t = rx.stats.totals()
            if frames is not None and t["received"] >= frames:
                break
            if notifier.watchdog_due(now) and rx.alive():
                notifier.watchdog()  # only while the loop and every worker are alive
            if not rx.alive(max_age_s=60):
                log.error("receiver loop or a worker stopped; exiting so that systemd restarts us")
                return 1
            if interval and now - last_status >= interval:
                line = status_line(t, received_then, now - last_status)
                log.info("%s", line)
                notifier.status(line)
                last_status, received_then = now, t["received"]
            stop.wait(0.05)
        notifier.stopping()
    t = rx.stats.totals()
    led = rx.ledger.totals()
    print(  # noqa: T201 - CLI output
        f"received {t['received']}, results {t['results']} ({t['empty']} empty), "
        f"rejected {sum(t['rejected'].values())} {t['rejected']}, sequence gaps {t['gaps']}, "
        f"lost {led['lost']}, duplicates {led['duplicates']}, acks sent {rx.acks_sent}"
    )
    return 0
