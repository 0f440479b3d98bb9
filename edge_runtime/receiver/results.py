"""Result sinks and per-stream accounting.

Sinks (each a context manager, each called with one :class:`~edge_runtime.receiver.engine.Result`)::

    JsonlSink     one JSON object per line; rotated by size with atomic renames (path -> path.1 ...)
    PubSink       ZeroMQ PUB, topic = stream id, body = the JSON object
    CallbackSink  a Python callable, for embedding (``Receiver(..., callback=fn)``)

:class:`Stats` counts per stream: received, decoded, results, empty frames, rejected by reason and
gaps in sequence numbers. Gaps are ``(highest seq - lowest seq + 1) - frames seen`` per boot epoch
of the edge (seq starts again at every edge start), which does not depend on arrival order, so it
stays right when a stream's frames are spread over worker processes. Duplicates (resends of a
frame already answered) are rejects with reason ``duplicate``.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from edge_runtime.errors import ConfigError
from edge_runtime.receiver.engine import Reject, Result
from edge_runtime.transport import SocketTimeouts, apply_timeouts

__all__ = ["Sink", "JsonlSink", "PubSink", "CallbackSink", "Stats", "StreamStats"]

log = logging.getLogger(__name__)

OVERFLOW_STREAM = "<overflow>"


class Sink:
    """Base: ``write(result)``; ``flush()`` after each batch; ``close()``."""

    def write(self, result: Result) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class JsonlSink(Sink):
    """JSON lines in ``path``; when the file would pass ``max_bytes`` it is renamed to ``path.1``
    (``path.1`` to ``path.2`` ..., at most ``backups`` kept) with ``os.replace``, which is atomic, so a
    reader sees every line exactly once, in a whole file."""

    def __init__(self, path: str | Path, *, max_bytes: int = 64 << 20, backups: int = 5) -> None:
        if max_bytes < 1024:
            raise ConfigError(f"jsonl max_bytes must be >= 1024, got {max_bytes}")
        if backups < 0:
            raise ConfigError(f"jsonl backups must be >= 0, got {backups}")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.torn_bytes = _cut_torn_line(self.path)
        self._f = open(self.path, "ab")  # noqa: SIM115 - owned until close()
        self._size = self._f.tell()
        self.rotations = 0

    def write(self, result: Result) -> None:
        line = (json.dumps(result.to_dict(), separators=(",", ":")) + "\n").encode()
        if self._size and self._size + len(line) > self.max_bytes:
            self._rotate()
        self._f.write(line)
        self._size += len(line)

    def _rotate(self) -> None:
        self._f.close()
        if self.backups == 0:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))  # keep one, always
        else:
            for i in range(self.backups - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    os.replace(src, self.path.with_name(f"{self.path.name}.{i + 1}"))
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._f = open(self.path, "ab")  # noqa: SIM115
        self._size = 0
        self.rotations += 1
        log.info("rotated %s (rotation %d)", self.path, self.rotations)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def _cut_torn_line(path: Path) -> int:
    """A process killed mid-write leaves a partial last line; appending to it would merge it with
    the next result into one line that parses as neither (tests/faults/test_atomic.py). Cut it off
    (it is logged) and return how many bytes were cut."""
    try:
        with open(path, "r+b") as f:
            end = f.seek(0, os.SEEK_END)
            if end == 0:
                return 0
            f.seek(end - 1)
            if f.read(1) == b"\n":
                return 0
            pos = end
            while pos > 0:
                step = min(65536, pos)
                f.seek(pos - step)
                chunk = f.read(step)
                i = chunk.rfind(b"\n")
                if i >= 0:
                    pos = pos - step + i + 1
                    break
                pos -= step
            f.truncate(pos)
    except FileNotFoundError:
        return 0
    log.warning("%s ended in a partial line (a crash mid-write): cut %d bytes", path, end - pos)
    return end - pos


class PubSink(Sink):
    """ZeroMQ PUB bound to ``endpoint``; two-part messages ``[stream id, JSON]`` so subscribers can
    filter by stream with ``SUBSCRIBE``. A slow subscriber loses messages (PUB's policy), never
    blocks the receiver."""

    def __init__(self, endpoint: str, ctx: zmq.Context | None = None, timeouts: SocketTimeouts | None = None):
        self._ctx = ctx or zmq.Context.instance()
        self.sock = self._ctx.socket(zmq.PUB)
        apply_timeouts(self.sock, timeouts or SocketTimeouts())
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError as e:
            self.sock.close(0)
            raise ConfigError(f"cannot bind the result PUB socket to {endpoint!r}: {e}") from e
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def write(self, result: Result) -> None:
        body = json.dumps(result.to_dict(), separators=(",", ":")).encode()
        try:
            self.sock.send_multipart([result.stream_id.encode(), body], zmq.NOBLOCK)
        except zmq.Again:
            pass  # PUB drops at its high-water mark by design; counted by no one, like ZeroMQ itself

    def close(self) -> None:
        self.sock.close()


class CallbackSink(Sink):
    """Calls ``fn(result)``. An exception in ``fn`` is logged with its traceback and counted in
    ``errors``; the receiver keeps serving."""

    def __init__(self, fn: Callable[[Result], None]) -> None:
        if not callable(fn):
            raise ConfigError(f"callback must be callable, got {fn!r}")
        self.fn = fn
        self.errors = 0

    def write(self, result: Result) -> None:
        try:
            self.fn(result)
        except Exception:
            self.errors += 1
            if self.errors <= 10 or self.errors % 1000 == 0:
                log.exception("result callback %r failed (%d failures so far)", self.fn, self.errors)


@dataclass
class StreamStats:
    received: int = 0
    decoded: int = 0
    results: int = 0
    empty: int = 0
    rejected: collections.Counter = field(default_factory=collections.Counter)
    # epoch -> [lowest seq, highest seq, results]; the last few epochs only
    epochs: collections.OrderedDict = field(default_factory=collections.OrderedDict)
    last_latency_ms: float = 0.0
    old_gaps: int = 0  # gaps of epochs no longer tracked

    @property
    def gaps(self) -> int:
        return self.old_gaps + sum(max(0, hi - lo + 1 - n) for lo, hi, n in self.epochs.values())

    def note(self, epoch: int, seq: int, max_epochs: int = 16) -> None:
        e = self.epochs.get(epoch)
        if e is None:
            e = self.epochs[epoch] = [seq, seq, 0]
            if len(self.epochs) > max_epochs:
                lo, hi, n = self.epochs.popitem(last=False)[1]
                self.old_gaps += max(0, hi - lo + 1 - n)
        e[0], e[1], e[2] = min(e[0], seq), max(e[1], seq), e[2] + 1

    def to_dict(self) -> dict:
        return {
            "received": self.received,
            "decoded": self.decoded,
            "results": self.results,
            "empty": self.empty,
            "rejected": dict(self.rejected),
            "gaps": self.gaps,
        }


class Stats:
    """Per-stream accounting, fed with every event; thread-safe; at most ``max_streams`` streams
    are tracked by name, the rest (a hostile sender can invent names) under ``<overflow>``."""

    def __init__(self, max_streams: int = 1024) -> None:
        self.max_streams = max_streams
        self.streams: dict[str, StreamStats] = {}
        self.latencies: collections.deque[float] = collections.deque(maxlen=4096)
        self._lock = threading.Lock()

    def _get(self, sid: str) -> StreamStats:
        st = self.streams.get(sid)
        if st is None:
            if len(self.streams) >= self.max_streams:
                sid = OVERFLOW_STREAM
                st = self.streams.get(sid)
            if st is None:
                st = self.streams[sid] = StreamStats()
        return st

    def add(self, ev: Result | Reject) -> None:
        with self._lock:
            st = self._get(ev.stream_id)
            st.received += 1
            if isinstance(ev, Reject):
                st.rejected[ev.reason] += 1
                return
            st.decoded += 1
            st.results += 1
            if ev.empty:
                st.empty += 1
            st.note(ev.epoch, ev.seq)
            st.last_latency_ms = ev.latency_ms
            self.latencies.append(ev.latency_ms)

    def totals(self) -> dict:
        with self._lock:
            t = {"received": 0, "decoded": 0, "results": 0, "empty": 0, "gaps": 0}
            rej: collections.Counter = collections.Counter()
            for st in self.streams.values():
                for k in ("received", "decoded", "results", "empty", "gaps"):
                    t[k] += getattr(st, k)
                rej.update(st.rejected)
            t["rejected"] = dict(rej)
            return t

    def snapshot(self) -> dict:
        with self._lock:
            return {sid: st.to_dict() for sid, st in self.streams.items()}

    def render_prometheus(self, prefix: str = "edge_receiver") -> str:
        """Prometheus text exposition format (version 0.0.4) of the per-stream counters."""
        snap = self.snapshot()
        out = []
        for name, help_ in (
            ("received", "messages received"),
            ("decoded", "messages decoded"),
            ("results", "results published"),
            ("empty", "empty frames (nothing important)"),
            ("gaps", "sequence numbers never seen"),
        ):
            out.append(f"# HELP {prefix}_{name}_total {help_}, per stream")
            out.append(f"# TYPE {prefix}_{name}_total counter")
            for sid, d in sorted(snap.items()):
                out.append(f'{prefix}_{name}_total{{stream="{_esc(sid)}"}} {d[name]}')
        out.append(f"# HELP {prefix}_rejected_total messages dropped, per stream and reason")
        out.append(f"# TYPE {prefix}_rejected_total counter")
        for sid, d in sorted(snap.items()):
            for reason, n in sorted(d["rejected"].items()):
                out.append(f'{prefix}_rejected_total{{stream="{_esc(sid)}",reason="{_esc(reason)}"}} {n}')
        return "\n".join(out) + "\n"


def _esc(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
