"""Prometheus metrics with the standard library only: Counter, Gauge, Histogram, Registry.

Shared by the edge loop and the receiver. A metric has a name, a help line and optional label
names; ``metric.labels(reason="stale").inc()`` picks one labelled child. ``Registry.render()``
returns the text exposition format (version 0.0.4); ``Registry.serve(host, port)`` serves it at
``/metrics`` from a ``http.server`` thread and returns a :class:`MetricsServer` (a context manager;
``port`` 0 picks a free port, see ``server.port``)::

    reg = Registry()
    frames = reg.counter("edge_frames_total", "Frames by outcome", ["outcome", "reason"])
    frames.labels(outcome="dropped", reason="stale").inc()
    with reg.serve("127.0.0.1", 9100) as srv: ...

Updates take a lock per metric, so the loop and the HTTP thread may race freely.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from edge_runtime.errors import ConfigError

__all__ = ["Counter", "Gauge", "Histogram", "Registry", "MetricsServer", "DEFAULT_BUCKETS"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
#: Seconds: from 0.1 ms (a kernel) to 2.5 s (a stalled stage).
DEFAULT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        if not _NAME.match(name):
            raise ValueError(f"metric name {name!r} is not a valid Prometheus name")
        for ln in labelnames:
            if not _LABEL.match(ln) or ln == "le":
                raise ValueError(f"label name {ln!r} of metric {name!r} is not allowed")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], _Metric] = {}
        self._labelvalues: tuple[str, ...] = ()

    def labels(self, **values: str):
        """The child for these label values (created on first use)."""
        if set(values) != set(self.labelnames):
            raise ValueError(f"metric {self.name} takes labels {list(self.labelnames)}, got {sorted(values)}")
        key = tuple(str(values[n]) for n in self.labelnames)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._new_child()
                child._labelvalues = key
                self._children[key] = child
            return child

    def _child_kwargs(self) -> dict:
        return {}

    def _new_child(self) -> _Metric:
        child = type(self)(self.name, self.help, (), **self._child_kwargs())
        child.labelnames = self.labelnames
        return child

    def _check_unlabelled(self) -> None:
        if self.labelnames and not self._labelvalues:
            raise ValueError(f"metric {self.name} has labels {list(self.labelnames)}; use .labels(...)")

    def _label_str(self, extra: tuple[tuple[str, str], ...] = ()) -> str:
        pairs = list(zip(self.labelnames, self._labelvalues, strict=False)) + list(extra)
        if not pairs:
            return ""
        return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"

    def _series(self) -> list[_Metric]:
        if not self.labelnames:
            return [self]
        with self._lock:
            return [self._children[k] for k in sorted(self._children)]

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {_escape(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for s in self._series():
            lines.extend(s._samples())
        return lines

    def _samples(self) -> list[str]:
        raise NotImplementedError


class _Scalar(_Metric):
    """One float per label set: what a counter and a gauge share."""

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help, labelnames)
        self._value = 0.0

    def _add(self, amount: float) -> None:
        self._check_unlabelled()
        with self._lock:
            self._value += amount

    @property
    def value(self) -> float:
        return self._value

    def _samples(self) -> list[str]:
        return [f"{self.name}{self._label_str()} {_fmt(self._value)}"]


class Counter(_Scalar):
    """A value that only goes up."""

    kind = "counter"

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} can only increase, got inc({amount})")
        self._add(amount)


class Gauge(_Scalar):
    """A value that goes up and down."""

    kind = "gauge"

    def set(self, value: float) -> None:
        self._check_unlabelled()
        with self._lock:
            self._value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self._add(amount)


class Histogram(_Metric):
    """Observations counted into cumulative buckets (upper bounds, seconds by default)."""

    kind = "histogram"

    def __init__(
        self, name: str, help: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        super().__init__(name, help, labelnames)
        b = [float(x) for x in buckets]
        if not b or b != sorted(b) or len(set(b)) != len(b):
            raise ValueError(f"histogram {name} buckets must be strictly increasing, got {list(buckets)}")
        self.buckets = tuple(b)
        self._counts = [0] * (len(b) + 1)
        self._sum = 0.0

    def _child_kwargs(self) -> dict:
        return {"buckets": self.buckets}

    def observe(self, value: float) -> None:
        self._check_unlabelled()
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    @property
    def count(self) -> int:
        return sum(self._counts)

    @property
    def sum(self) -> float:
        return self._sum

    def _samples(self) -> list[str]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        out, acc = [], 0
        for ub, c in zip((*self.buckets, math.inf), counts, strict=True):
            acc += c
            out.append(f"{self.name}_bucket{self._label_str((('le', _fmt(ub)),))} {acc}")
        out.append(f"{self.name}_sum{self._label_str()} {_fmt(total)}")
        out.append(f"{self.name}_count{self._label_str()} {acc}")
        return out


class Registry:
    """A named set of metrics; ``render()`` gives the exposition text."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}
        self._lock = threading.Lock()

    def register(self, metric: _Metric) -> _Metric:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name} is already registered")
            self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self.register(Counter(name, help, labelnames))

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        return self.register(Gauge(name, help, labelnames))

    def histogram(
        self, name: str, help: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self.register(Histogram(name, help, labelnames, buckets))

    def get(self, name: str) -> _Metric:
        return self._metrics[name]

    def render(self) -> str:
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for m in metrics:
            lines.extend(m.render())
        return "\n".join(lines) + "\n"

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread; returns the running server."""
        return MetricsServer(self.render, host, port)


class MetricsServer:
    """``GET /metrics`` from ``render()`` (e.g. ``Registry.render``) on a daemon thread;
    ``close()`` (or leaving the ``with``) stops it. A port that cannot be bound is a ConfigError."""

    def __init__(self, render: Callable[[], str], host: str, port: int) -> None:

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404, "only /metrics is served")
                    return
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:
                log.debug("metrics http: " + format, *args)

        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {e}") from e
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()
        log.info("metrics at http://%s:%d/metrics", self.host, self.port)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
