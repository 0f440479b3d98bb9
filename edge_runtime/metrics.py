"""Prometheus metrics through ``prometheus_client``: Counter, Gauge, Histogram, Registry.

Shared by the edge loop and the receiver. This module keeps the small API the rest of the code
calls (it was 287 hand-written lines before) and hands the counting, the text exposition and the
HTTP server to ``prometheus_client``. A metric has a name, a help line and optional label names;
``metric.labels(reason="stale").inc()`` picks one labelled child. ``Registry.render()`` returns
the text exposition format (version 0.0.4); ``Registry.serve(host, port)`` serves it at
``/metrics`` from a daemon thread and returns a :class:`MetricsServer` (a context manager;
``port`` 0 picks a free port, see ``server.port``)::

    reg = Registry()
    frames = reg.counter("edge_frames_total", "Frames by outcome", ["outcome", "reason"])
    frames.labels(outcome="dropped", reason="stale").inc()
    with reg.serve("127.0.0.1", 9100) as srv: ...

Worker processes: with ``PROMETHEUS_MULTIPROC_DIR`` set in every process (before
``prometheus_client`` is imported), each process's metrics live in files there, and a
``Registry(multiprocess_dir=...)`` in the serving process adds them up (prometheus_client's
multiprocess mode; gauges take ``multiprocess_mode``, e.g. ``"livesum"``).

Metric names are checked by prometheus_client; a counter's name ends in ``_total``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from wsgiref.simple_server import make_server

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, _SilentHandler
from prometheus_client.parser import text_string_to_metric_families

from edge_runtime.errors import ConfigError

__all__ = ["Counter", "Gauge", "Histogram", "Registry", "MetricsServer", "DEFAULT_BUCKETS"]

log = logging.getLogger(__name__)

# One series per counter, as before (no ``_created`` twin of every counter and histogram).
prometheus_client.disable_created_metrics()

#: Seconds: from 0.1 ms (a kernel) to 2.5 s (a stalled stage).
DEFAULT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class _Metric:
    """A prometheus_client metric (or one labelled child of it) behind the project's API."""

    kind = ""
    _client: type = object

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (), *, _impl=None, **kwargs) -> None:
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._kwargs = kwargs
        for ln in self.labelnames:
            if not _LABEL.match(ln) or ln == "le":
                raise ValueError(f"label name {ln!r} of metric {name!r} is not allowed")
        if _impl is not None:
            self._impl, self._is_child = _impl, True
            return
        self._is_child = False
        try:
            self._impl = self._client(name, help, self.labelnames, registry=None, **kwargs)
        except ValueError as e:
            raise ValueError(f"metric name {name!r}: {e}") from e

    def labels(self, **values: str):
        """The child for these label values (created on first use)."""
        if set(values) != set(self.labelnames):
            raise ValueError(f"metric {self.name} takes labels {list(self.labelnames)}, got {sorted(values)}")
        child = type(self)(self.name, self.help, (), _impl=self._impl.labels(**values))
        child.labelnames = self.labelnames
        return child

    def _target(self):
        if self.labelnames and not self._is_child:
            raise ValueError(f"metric {self.name} has labels {list(self.labelnames)}; use .labels(...)")
        return self._impl


class _Scalar(_Metric):
    """One float per label set: what a counter and a gauge share."""

    @property
    def value(self) -> float:
        return float(self._target()._value.get())


class Counter(_Scalar):
    """A value that only goes up."""

    kind = "counter"
    _client = prometheus_client.Counter

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = (), **kw) -> None:
        if not name.endswith("_total") and "_impl" not in kw:
            raise ValueError(f"metric name {name!r}: a counter's name ends in _total")
        super().__init__(name, help, labelnames, **kw)

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"counter {self.name} can only increase, got inc({amount})")
        self._target().inc(amount)


class Gauge(_Scalar):
    """A value that goes up and down."""

    kind = "gauge"
    _client = prometheus_client.Gauge

    def set(self, value: float) -> None:
        self._target().set(float(value))

    def inc(self, amount: float = 1.0) -> None:
        self._target().inc(amount)


class Histogram(_Metric):
    """Observations counted into cumulative buckets (upper bounds, seconds by default)."""

    kind = "histogram"
    _client = prometheus_client.Histogram

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
        **kw,
    ) -> None:
        b = [float(x) for x in buckets]
        if not b or b != sorted(b) or len(set(b)) != len(b):
            raise ValueError(f"histogram {name} buckets must be strictly increasing, got {list(buckets)}")
        self.buckets = tuple(b)
        if "_impl" in kw:
            super().__init__(name, help, labelnames, **kw)
        else:
            super().__init__(name, help, labelnames, buckets=self.buckets, **kw)

    def labels(self, **values: str):
        child = super().labels(**values)
        child.buckets = self.buckets
        return child

    def observe(self, value: float) -> None:
        self._target().observe(value)

    @property
    def count(self) -> int:
        return int(sum(b.get() for b in self._target()._buckets))

    @property
    def sum(self) -> float:
        return float(self._target()._sum.get())


class Registry:
    """A named set of metrics (a ``prometheus_client.CollectorRegistry``); ``render()`` gives the
    exposition text. ``multiprocess_dir``: also add up the metrics that other processes wrote
    there (prometheus_client's multiprocess mode)."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self._registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, _Metric] = {}
        if multiprocess_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(self._registry, path=str(multiprocess_dir))

    @property
    def collector_registry(self) -> CollectorRegistry:
        """The prometheus_client registry underneath (for its own tools, e.g. push gateways)."""
        return self._registry

    def register(self, metric: _Metric) -> _Metric:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name} is already registered")
        try:
            self._registry.register(metric._impl)
        except ValueError as e:
            raise ValueError(f"metric {metric.name} is already registered ({e})") from e
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        return self.register(Counter(name, help, labelnames))

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = (), **kwargs) -> Gauge:
        return self.register(Gauge(name, help, labelnames, **kwargs))

    def histogram(
        self, name: str, help: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self.register(Histogram(name, help, labelnames, buckets))

    def get(self, name: str) -> _Metric:
        return self._metrics[name]

    def render(self) -> str:
        return generate_latest(self._registry).decode()

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread; returns the running server."""
        return MetricsServer(self._registry, host, port)


class _TextCollector:
    """A collector over a function that renders exposition text (the receiver's per-stream
    accounting), so that prometheus_client serves it like any registry."""

    def __init__(self, render: Callable[[], str]) -> None:
        self._render = render

    def collect(self):
        yield from text_string_to_metric_families(self._render())


class MetricsServer:
    """``GET /metrics`` on a daemon thread (prometheus_client's WSGI exposition); ``close()`` (or
    leaving the ``with``) stops it. ``source`` is a :class:`Registry`, a prometheus_client
    registry, or a function returning exposition text. A port that cannot be bound is a
    ConfigError."""

    def __init__(self, source, host: str, port: int) -> None:
        import threading

        if isinstance(source, Registry):
            registry = source.collector_registry
        elif isinstance(source, CollectorRegistry):
            registry = source
        elif callable(source):
            registry = CollectorRegistry(auto_describe=False)
            registry.register(_TextCollector(source))
        else:
            raise TypeError(
                f"MetricsServer needs a Registry or a render function, got {type(source).__name__}"
            )
        metrics_app = make_wsgi_app(registry)

        def app(environ, start_response):
            if environ.get("PATH_INFO", "/") not in ("/metrics", "/"):
                start_response("404 Not Found", [("Content-Type", "text/plain")])
                return [b"only /metrics is served\n"]
            return metrics_app(environ, start_response)

        try:
            self._httpd = make_server(host, port, app, ThreadingWSGIServer, handler_class=_SilentHandler)
        except OSError as e:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {e}") from e
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
