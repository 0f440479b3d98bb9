"""The receiver (``edge-runtime receive``): authenticated ZeroMQ ingest, the back half with dynamic
batching across streams, result sinks, and scale-out worker processes. See ``docs/receiver.md``.

Modules::

    engine    decode -> check -> batch across streams -> back half; Result / Reject events
    results   sinks (JSONL, ZeroMQ PUB, callback) and per-stream accounting (Stats)
    service   Receiver: sockets, CURVE, one process or N workers behind zmq.proxy
    cluster   cluster mode: the back half on a Ray Serve deployment (ClusterConfig, RayBackend)
    serve_app the deployment itself (imported only where Ray is installed)
    cli       add_arguments / run for the CLI table, TOML config

Embedding::

    with Receiver(["path/to/bundle"], bind="tcp://*:5555", callback=on_result) as rx:
        rx.wait(duration=60)
"""

from edge_runtime.receiver.cli import add_arguments, load_config, run
from edge_runtime.receiver.engine import Engine, Reject, Result
from edge_runtime.receiver.results import CallbackSink, JsonlSink, PubSink, Sink, Stats, StreamStats
from edge_runtime.receiver.service import Receiver

__all__ = [
    "CallbackSink",
    "Engine",
    "JsonlSink",
    "PubSink",
    "Receiver",
    "Reject",
    "Result",
    "Sink",
    "Stats",
    "StreamStats",
    "add_arguments",
    "load_config",
    "run",
]
