"""Cluster mode: the back half on a Ray Serve deployment, ingest in the receiver process.

::

    edge boxes --CURVE--> receiver process (ingest): ZeroMQ, CURVE, decode (inter-frame state),
        ledger, acks, sinks --micro-batches of decoded tensors--> Ray Serve deployment
        "edge-back": N replicas, @serve.batch, ONNX Runtime --logits--> back to the ingest,
        results in order per stream -> sinks -> acks

:class:`ClusterConfig` is the ``[cluster]`` config section. :class:`RayBackend` is the ingest's
side: it connects to the cluster (``ray.init(address)``), attaches to the deployment or deploys
it, and runs each micro-batch as one request from a small pool of threads, so the receiver loop
never blocks on Ray. A request that fails because its replica died (or could not be reached, or
timed out) is sent again until ``retry_timeout_s``; Ray Serve starts a replacement replica. The
back half is a pure function, so a retried request gives the same logits, and the result is
written by the ingest once only: no frame is lost to a replica's death or answered twice.

Ray is imported here only when cluster mode is used; it comes with ``pip install ".[cluster]"``.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.errors import ConfigError

__all__ = ["ClusterConfig", "RayBackend", "require_ray", "RAY_MISSING"]

log = logging.getLogger(__name__)

RAY_MISSING = (
    'cluster mode (--ray) needs Ray Serve, which is not installed: pip install ".[cluster]" '
    '(or pip install "ray[serve]")'
)


def require_ray():
    """The ``ray`` module, or a :class:`ConfigError` that says how to install it."""
    try:
        import ray
        from ray import serve  # noqa: F401 - the extra is ray[serve]
    except ImportError as e:
        raise ConfigError(f"{RAY_MISSING} ({e})") from None
    return ray


@dataclass(frozen=True)
class ClusterConfig:
    """The ``[cluster]`` section: where the back half runs and how it scales and batches.

    ``address`` is what ``ray.init`` takes: ``"auto"`` (the cluster this machine belongs to),
    ``"HOST:PORT"`` of a head node's GCS, or ``"ray://HOST:10001"`` (Ray Client).
    ``min_replicas == max_replicas`` is a fixed number of replicas; otherwise Ray Serve scales
    between them on ongoing requests (``target_ongoing_requests`` per replica).
    ``max_batch_size`` and ``batch_wait_timeout_s`` are ``@serve.batch``'s, counted in frames
    over the micro-batches of every ingest attached. Each replica reserves ``replica_cpus`` CPUs
    and runs ONNX Runtime with as many threads.
    """

    address: str
    deployment: str = "edge-back"
    min_replicas: int = 1
    max_replicas: int = 1
    max_batch_size: int = 32
    batch_wait_timeout_s: float = 0.002
    replica_cpus: int = 1
    target_ongoing_requests: int = 2
    max_inflight: int = 8  # micro-batches this ingest has at the deployment at once
    request_timeout_s: float = 30.0  # one try
    retry_timeout_s: float = 120.0  # all tries of one request (a replica restart fits in it)

    def __post_init__(self) -> None:
        if not isinstance(self.address, str) or not self.address:
            raise ConfigError(
                f"cluster address must be a non-empty string (e.g. 'auto'), got {self.address!r}"
            )
        if not isinstance(self.deployment, str) or not self.deployment:
            raise ConfigError(f"cluster deployment name must be a non-empty string, got {self.deployment!r}")
        for name in ("min_replicas", "max_replicas", "max_batch_size", "replica_cpus",
                     "target_ongoing_requests", "max_inflight"):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"cluster {name} must be an int >= 1, got {v!r}")
        if self.max_replicas < self.min_replicas:
            raise ConfigError(
                f"cluster max_replicas ({self.max_replicas}) is below min_replicas ({self.min_replicas})"
            )
        for name in ("batch_wait_timeout_s", "request_timeout_s", "retry_timeout_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not v >= 0:
                raise ConfigError(f"cluster {name} must be a number >= 0, got {v!r}")
        if self.request_timeout_s <= 0:
            raise ConfigError(f"cluster request_timeout_s must be > 0, got {self.request_timeout_s!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "[cluster]") -> ClusterConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(
                f"{origin}: unknown key {sorted(unknown)[0]!r}; known keys: {', '.join(sorted(known))}"
            )
        if "address" not in d:
            raise ConfigError(
                f"{origin}: 'address' is missing (e.g. address = \"auto\"), or give --ray ADDRESS"
            )
        return cls(**d)


@dataclass
class Done:
    """A finished request: its token, and its outputs (logits; for a detection bundle
    ``(logits, boxes)``) or the error that ended its tries."""

    token: Any
    logits: np.ndarray | tuple[np.ndarray, np.ndarray] | None
    error: str | None
    tries: int


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) address that nothing listens on is an error at once:
    ``ray.init`` would retry for minutes before it gives up."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and the like: Ray resolves those itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address!r}: {e}; is its head node running "
            "(ray start --head) and is the address its GCS (port 6379) or Ray Client (10001) port?"
        ) from None


def _retriable(e: BaseException) -> bool:
    """A replica died, was not reachable, or the try timed out: the request may go again.
    An error raised by the back half itself (RayTaskError) is not retried."""
    from ray import exceptions as rex
    from ray.serve import exceptions as sex

    if isinstance(e, rex.RayTaskError):
        return isinstance(getattr(e, "cause", None), rex.RayActorError | rex.ActorUnavailableError)
    kinds = (rex.RayActorError, rex.ActorUnavailableError, rex.GetTimeoutError, TimeoutError,
             sex.BackPressureError, sex.DeploymentUnavailableError, sex.RequestCancelledError)  # fmt: skip
    return isinstance(e, kinds)


class RayBackend:
    """The ingest's side of cluster mode; a context manager.

    :meth:`submit` queues one micro-batch (returns at once); finished requests come out of
    :meth:`completed`, and :attr:`wakeup_fd` becomes readable when there are some (the receiver
    loop polls it beside its ZeroMQ socket).
    """

    def __init__(self, config: ClusterConfig, bundle_paths: list[str], model_ids: list[str]) -> None:
        self.config = config
        self.bundle_paths = bundle_paths
        self.model_ids = sorted(model_ids)
        self.ray = require_ray()
        self._owns_ray = False
        self._handle = None
        self._pool: ThreadPoolExecutor | None = None
        self._done: queue.SimpleQueue[Done] = queue.SimpleQueue()
        self._rfd, self._wfd = os.pipe()
        os.set_blocking(self._rfd, False)
        self.wakeup_fd = self._rfd
        self._inflight = 0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.requests = 0
        self.retries = 0
        self.failed = 0

    # -- lifecycle -----------------------------------------------------

    def __enter__(self) -> RayBackend:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        ray, cfg = self.ray, self.config
        if ray.is_initialized():
            current = ray.get_runtime_context().gcs_address
            if cfg.address not in ("auto", current):
                raise ConfigError(
                    f"this process is connected to the Ray cluster at {current} already, not {cfg.address!r}"
                )
        else:
            _check_reachable(cfg.address)
            try:
                ray.init(address=cfg.address, logging_level=logging.WARNING, log_to_driver=False)
            except (ConnectionError, ValueError, RuntimeError) as e:
                raise ConfigError(f"cannot connect to the Ray cluster at {cfg.address!r}: {e}") from None
            self._owns_ray = True
        self._handle = self._attach_or_deploy()
        self._pool = ThreadPoolExecutor(cfg.max_inflight, thread_name_prefix="ray-request")

    def _attach_or_deploy(self):
        from ray import serve

        cfg = self.config
        serve.start(proxy_location="Disabled")  # handles only: no HTTP proxy (a no-op when running)
        apps = serve.status().applications
        if cfg.deployment in apps and apps[cfg.deployment].status in ("RUNNING", "DEPLOYING"):
            handle = serve.get_app_handle(cfg.deployment)
            log.info("attached to the running Ray Serve deployment %r", cfg.deployment)
        else:
            from edge_runtime.receiver.serve_app import BackHalf

            opts: dict[str, Any] = {
                "name": cfg.deployment,
                "ray_actor_options": {"num_cpus": cfg.replica_cpus},
                # room for @serve.batch to fill a batch from several requests
                "max_ongoing_requests": max(2 * cfg.max_batch_size, 4),
            }
            if cfg.min_replicas == cfg.max_replicas:
                opts["num_replicas"] = cfg.min_replicas
            else:
                opts["autoscaling_config"] = {
                    "min_replicas": cfg.min_replicas,
                    "max_replicas": cfg.max_replicas,
                    "target_ongoing_requests": cfg.target_ongoing_requests,
                }
            app = (
                serve.deployment(BackHalf)
                .options(**opts)
                .bind(self.bundle_paths, cfg.replica_cpus, cfg.max_batch_size, cfg.batch_wait_timeout_s)
            )
            log.info("deploying the back half on Ray Serve as %r (%s)", cfg.deployment, opts)
            handle = serve.run(app, name=cfg.deployment, route_prefix=None)
        served = handle.models.remote().result(timeout_s=max(60.0, cfg.request_timeout_s))
        missing = [m[:16] for m in self.model_ids if m not in served]
        if missing:
            raise ConfigError(
                f"the Ray Serve deployment {cfg.deployment!r} serves models {[m[:16] for m in served]}, "
                f"not {missing}; name another deployment ([cluster] deployment) or delete it "
                f"(serve.delete({cfg.deployment!r}))"
            )
        return handle

    def close(self, timeout_s: float | None = None) -> None:
        """Wait for the requests in flight (up to ``timeout_s``), then disconnect. The deployment
        keeps running: other ingest processes may share it."""
        self._closing.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)
            self._pool = None
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
            self._owns_ray = False
        for fd in (self._rfd, self._wfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._rfd = self._wfd = -1

    # -- requests ------------------------------------------------------

    @property
    def inflight(self) -> int:
        return self._inflight

    def full(self) -> bool:
        return self._inflight >= self.config.max_inflight

    def submit(self, token: Any, model_id: bytes, x: np.ndarray) -> None:
        with self._lock:
            self._inflight += 1
            self.requests += 1
        self._pool.submit(self._call, token, model_id, x)

    def _call(self, token: Any, model_id: bytes, x: np.ndarray) -> None:
        cfg = self.config
        deadline = time.monotonic() + cfg.retry_timeout_s
        tries = 0
        logits = err = None
        while True:
            tries += 1
            try:
                logits = self._handle.remote(model_id, x).result(timeout_s=cfg.request_timeout_s)
                break
            except Exception as e:  # Ray's and Serve's own types; sorted by _retriable
                if not _retriable(e) or time.monotonic() >= deadline:
                    err = f"{type(e).__name__}: {e}"
                    break
                with self._lock:
                    self.retries += 1
                log.warning(
                    "back-half request of %d frames failed (%s), try %d; sending it again",
                    len(x), type(e).__name__, tries,
                )  # fmt: skip
                time.sleep(min(0.1 * tries, 1.0))
        if err is not None:
            with self._lock:
                self.failed += 1
        self._done.put(Done(token, logits, err, tries))
        with self._lock:
            self._inflight -= 1
        try:
            os.write(self._wfd, b"x")
        except OSError:
            pass  # closing

    def completed(self) -> list[Done]:
        """Finished requests since the last call (and clears the wake-up pipe)."""
        try:
            while os.read(self._rfd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out
