"""An instrumented edge process for the fault tests and benchmarks/soak.py (run as a script).

Runs the real :class:`~edge_runtime.pipeline.EdgeLoop` (real source, pipeline, :class:`Sender`)
for ``--seconds`` and writes what it saw to ``--out`` (JSON):

- ``stats``: :meth:`LoopStats.as_dict` (captured, sent, dropped by reason, accounted);
- ``max_send_s``: the longest ``Sender.send`` call (the loop's only call into the network);
- ``max_loop_gap_s``: the longest time between two turns of the loop (it pings the watchdog
  every turn; a blocked loop shows here);
- ``send_runs``: ``[t_first, t_last, ok, n]`` runs of send outcomes (wall clock, seconds), from
  which the tests read when the edge could deliver again after a fault;
- ``frame_gaps``: ``[t_before, t_after]`` where no frame came for more than 0.5 s (source outages).

``--outage A:B`` makes the source fail from A to B seconds after the loop started: reads return
nothing and reopening raises :class:`SourceError`, like an unplugged camera.
One JSON line ``{"ready": wall_time}`` on stdout when the loop starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time

from edge_runtime.bundle import load_bundle
from edge_runtime.config import config_from_dict
from edge_runtime.errors import SourceError
from edge_runtime.pipeline import EdgeLoop, EdgePipeline
from edge_runtime.sender import Sender
from edge_runtime.sources import FrameFeed, SceneSource
from edge_runtime.systemd import Notifier

FRAME_GAP_S = 0.5


class FlakySource(SceneSource):
    """The scene stream, unplugged from ``start`` to ``end`` (wall clock)."""

    def __init__(self, size: int, seed: int, start: float, end: float) -> None:
        super().__init__(size=size, seed=seed)
        self.start, self.end = start, end

    def _out(self) -> bool:
        return self.start <= time.time() < self.end

    def open(self) -> None:
        if self._out():
            raise SourceError("camera 'flaky' cannot be opened: unplugged (test outage)")

    def read(self):
        return None if self._out() else super().read()


class TimedSender(Sender):
    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.max_send_s = 0.0
        self.runs: list[list] = []

    def send(self, message: bytes):
        t0 = time.perf_counter()
        reason = super().send(message)
        self.max_send_s = max(self.max_send_s, time.perf_counter() - t0)
        now, ok = time.time(), reason is None
        if self.runs and self.runs[-1][2] == ok:
            self.runs[-1][1] = now
            self.runs[-1][3] += 1
        else:
            self.runs.append([now, now, ok, 1])
        return reason


class GapNotifier(Notifier):
    """Records the longest time between two turns of the loop (it asks ``watchdog_due`` every turn)."""

    def __init__(self) -> None:
        super().__init__(env={})
        self.last = None
        self.max_gap_s = 0.0

    def watchdog_due(self, now: float | None = None) -> bool:
        t = time.monotonic()
        if self.last is not None:
            self.max_gap_s = max(self.max_gap_s, t - self.last)
        self.last = t
        return super().watchdog_due(now)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", action="append", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--stream", default="cam0")
    ap.add_argument("--fps", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--outage", default="", help="A:B seconds after start: the source is unplugged")
    ap.add_argument("--set", action="append", default=[], help="config override section.key=value")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s edge %(name)s: %(message)s")

    cfg = config_from_dict(
        {
            "runtime": {"stream_id": args.stream, "status_interval_s": 0.0, "threads": 1},
            "source": {"fps": args.fps, "seed": args.seed, "retry_initial_s": 0.1, "retry_max_s": 0.5},
            "importance": {"provider": "fused"},
            "sender": {"endpoints": args.endpoint, "reconnect_ivl_max_ms": 1000},
            "metrics": {"enabled": False},
        },
        env={},
        overrides=args.set,
    )
    bundle = load_bundle(cfg.runtime.bundle or None, threads=cfg.runtime.threads)
    pipeline = EdgePipeline(bundle, cfg)
    bundle.warmup()
    pipeline.process(SceneSource(size=bundle.input.size[0]).read(), 0)  # compile kernels, warm graphs

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    t_start = time.time()
    feed = FrameFeed.from_config(cfg.source, size=bundle.input.size[0])
    if args.outage:
        a, b = (float(x) for x in args.outage.split(":"))
        feed.source = FlakySource(bundle.input.size[0], args.seed, t_start + a, t_start + b)
    gaps: list[list[float]] = []
    last = [None]
    process = pipeline.process

    def timed_process(frame, seq, base=None):
        now = time.time()
        if last[0] is not None and now - last[0] > FRAME_GAP_S:
            gaps.append([last[0], now])
        last[0] = now
        return process(frame, seq, base)

    pipeline.process = timed_process
    notifier = GapNotifier()
    timer = threading.Timer(args.seconds, stop.set)
    timer.daemon = True
    timer.start()
    with TimedSender(cfg.sender) as sender:
        loop = EdgeLoop(pipeline, feed, sender, notifier=notifier, status_interval_s=0)
        sys.stdout.write(json.dumps({"ready": t_start}) + "\n")
        sys.stdout.flush()
        stats = loop.run(stop=stop)
    doc = {
        "stream": args.stream,
        "stats": stats.as_dict(),
        "max_send_s": sender.max_send_s,
        "max_loop_gap_s": notifier.max_gap_s,
        "send_runs": sender.runs,
        "frame_gaps": gaps,
        "t_start": t_start,
        "t_end": time.time(),
        "config": {
            "sndhwm": cfg.sender.sndhwm,
            "reconnect_ivl_max_ms": cfg.sender.reconnect_ivl_max_ms,
            "heartbeat_timeout_ms": cfg.sender.heartbeat_timeout_ms,
            "retry_max_s": cfg.source.retry_max_s,
            "fps": cfg.source.fps,
        },  # fmt: skip
    }
    with open(args.out + ".tmp", "w") as f:
        json.dump(doc, f)
    os.replace(args.out + ".tmp", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
