"""The :class:`Receiver`: bind, authenticate, decode, batch, run the back half, publish results.

One process (``workers <= 1``)::

    edge boxes --CURVE--> PULL/ROUTER (bind) -> Engine (decode, batch, back half) -> sinks

Several worker processes (``workers = N``), scaled out with ZeroMQ's own proxy, not a scheduler::

    edge boxes --CURVE--> PULL/ROUTER (bind, public) =zmq.proxy=> PUSH ipc://.../in
        -> N worker processes: PULL, Engine -> PUSH ipc://.../out
        -> PULL in the parent -> accounting + sinks (one JSONL writer, one PUB socket)

Delivery (``router`` socket, edge DEALER): every result is written to the sinks first and then
acknowledged to its edge, cumulatively per (stream, epoch) (:mod:`.ledger`); a frame seen before
(a resend) gets no second result, only a fresh ack; a JSONL sink is read back at start, so a
restarted receiver recognises the frames its previous run answered. With CURVE, each message's
authenticated key must own the stream id it claims (:mod:`.identity`); the allow folder is
re-read while running. In worker mode the parent keeps the ledger and the identity checks (its
own proxy loop forwards messages, and carries acks back).

Cluster mode (``cluster``, ``--ray ADDRESS``): one ingest process as above (sockets, CURVE,
decoding with its inter-frame references, ledger, acks, sinks), whose batches of decoded tensors
go to a Ray Serve deployment of the back half (:mod:`.cluster`)::

    edge boxes --CURVE--> PULL/ROUTER (bind) -> Engine (decode, batch) --request--> Ray Serve
        replicas (@serve.batch, back half) --logits--> Engine (in order per stream) -> sinks -> acks

Authentication happens once, at the public socket. PUSH hands messages to the workers round-robin
(skipping a worker whose queue is full), so one stream's frames are spread over all workers; the
per-stream accounting is done in the parent from the workers' events, and its gap count does not
depend on arrival order. Inter-frame (delta) mode needs the key frame in the same process: with
workers, run edge senders with ``keyframe_interval = 0`` (see docs/receiver.md).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import zmq

from edge_runtime.bundle import Bundle, load_bundle
from edge_runtime.codec.decoder import peek_epoch_tag
from edge_runtime.detection import FrameGeometry
from edge_runtime.errors import ConfigError
from edge_runtime.metrics import MetricsServer
from edge_runtime.receiver.cluster import ClusterConfig
from edge_runtime.receiver.engine import Engine, Reject, Result, limits_for, peek_stream_id
from edge_runtime.receiver.identity import Identity
from edge_runtime.receiver.ledger import Ledger
from edge_runtime.receiver.results import CallbackSink, JsonlSink, PubSink, Sink, Stats
from edge_runtime.transport import (
    AllowList,
    SocketTimeouts,
    apply_server_options,
    load_keypair,
    start_authenticator,
)

__all__ = ["Receiver", "SOCKET_TYPES"]

log = logging.getLogger(__name__)

SOCKET_TYPES = {"pull": zmq.PULL, "router": zmq.ROUTER}
_READY_TIMEOUT_S = 120.0  # a worker loads its bundles and ONNX Runtime; slow on a busy machine
_STOP_TIMEOUT_S = 10.0  # a thread that takes longer is reported (it is a daemon thread)


def _bundle_paths(bundles: Iterable[Bundle | str | Path] | None) -> list[Bundle | Path]:
    items = list(bundles) if bundles is not None else [None]
    return [b if isinstance(b, Bundle) else Path(b) if b is not None else None for b in items]


class Receiver:
    """The receiver, as a context manager; results go to ``callback`` and any ``sinks``.

    >>> with Receiver(["bundles/default"], bind="tcp://127.0.0.1:0", callback=print) as rx:
    ...     rx.wait(frames=100, duration=60)

    Parameters
    ----------
    bundles:
        Bundle folders (or loaded :class:`Bundle` objects) by model id; ``None``: the shipped one.
    bind:
        Public endpoint; port 0 picks a free port (see :attr:`endpoint`).
    socket_type:
        ``"pull"`` (edge PUSH) or ``"router"`` (edge DEALER).
    server_secret, allow_dir:
        CURVE server key pair file and the folder of enrolled clients' ``.key`` files. Both or
        neither; with neither the receiver is unauthenticated and says so in a warning.
    max_batch, max_wait_ms:
        Dynamic batching across streams: a batch runs when full or when its oldest frame waited this long.
    workers:
        0 or 1: one process; N >= 2: N worker processes behind a ZeroMQ proxy.
    threads:
        ONNX Runtime intra-op threads per process (0: cores / workers).
    cluster:
        Cluster mode: the back half on the Ray Serve deployment this names (:mod:`.cluster`);
        ``None``: in this process. Needs ``workers <= 1`` (this process is the ingest).
    """

    def __init__(
        self,
        bundles: Iterable[Bundle | str | Path] | None = None,
        *,
        bind: str = "tcp://127.0.0.1:0",
        socket_type: str = "pull",
        server_secret: str | Path | None = None,
        allow_dir: str | Path | None = None,
        max_batch: int = 16,
        max_wait_ms: float = 0.0,
        workers: int = 0,
        threads: int = 0,
        callback: Callable[[Result], None] | None = None,
        sinks: Iterable[Sink] = (),
        jsonl: str | Path | None = None,
        jsonl_max_bytes: int = 64 << 20,
        jsonl_backups: int = 5,
        pub: str | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        timeouts: SocketTimeouts | None = None,
        max_streams: int = 1024,
        cluster: ClusterConfig | None = None,
        geometry: FrameGeometry | None = None,
    ) -> None:
        if socket_type not in SOCKET_TYPES:
            raise ConfigError(f"socket type must be one of {sorted(SOCKET_TYPES)}, got {socket_type!r}")
        if (server_secret is None) != (allow_dir is None):
            raise ConfigError(
                "CURVE needs both the server's secret key file (--keys-secret) and the allow folder of "
                "client keys (--allow-dir); give both, or neither for an unauthenticated receiver"
            )
        if not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"workers must be an int >= 0, got {workers!r}")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch must be an int >= 1, got {max_batch!r}")
        if cluster is not None and workers > 1:
            raise ConfigError(
                f"cluster mode (--ray) runs one ingest per receiver process, not --workers {workers}: "
                "the back half scales on Ray; for more ingest, run more receivers (docs/receiver.md)"
            )
        if cluster is not None and max_batch > cluster.max_batch_size:
            raise ConfigError(
                f"max_batch ({max_batch}) is larger than the cluster's max_batch_size "
                f"({cluster.max_batch_size}): one request must fit in one batch of the deployment"
            )
        if not max_wait_ms >= 0:
            raise ConfigError(f"max_wait_ms must be >= 0, got {max_wait_ms!r}")
        self.bind = bind
        self.socket_type = socket_type
        self.server_secret = server_secret
        self.allow_dir = allow_dir
        self.max_batch = max_batch
        self.max_wait_ms = float(max_wait_ms)
        self.workers = workers
        self.threads = threads or max(1, (os.cpu_count() or 1) // max(1, workers))
        self.timeouts = timeouts or SocketTimeouts()
        self.max_streams = max_streams
        self.cluster = cluster
        self.geometry = geometry or FrameGeometry()
        self._backend = None
        self.stats = Stats(max_streams)
        self.endpoint: str | None = None
        self.max_message_bytes: int | None = None  # set at start from the bundles served
        self._bundle_specs = _bundle_paths(bundles)
        self._sinks: list[Sink] = list(sinks)
        if callback is not None:
            self._sinks.append(CallbackSink(callback))
        self._jsonl = (jsonl, jsonl_max_bytes, jsonl_backups)
        self._pub = pub
        self._metrics = (metrics_host, metrics_port)
        self.metrics_port: int | None = None
        self.pub_endpoint: str | None = None
        self._owned_sinks: list[Sink] = []
        self._ctx: zmq.Context | None = None
        self._auth = None
        self._threads: list[threading.Thread] = []
        self._procs: list = []
        self._stop = threading.Event()
        self._heartbeat = time.monotonic()
        self._engine: Engine | None = None
        self._ipc_dir: str | None = None
        self._metrics_server = None
        self._lock = threading.Lock()
        self.started = False
        # ~2048 recent seqs each: 8x the default window. With workers a temporal stream is pinned to
        # one worker (_proxy), so the frame an ack names as decoded is held where the next one decodes
        self.ledger = Ledger(max_keys=max_streams)
        self.allow: AllowList | None = None
        self.identity = Identity(None, max_streams=max_streams)
        self._server_keys: tuple[bytes, bytes] | None = None
        self._routes: dict[str, bytes] = {}  # worker mode: stream -> ROUTER identity, for acks
        self.acks_sent = 0
        self._next_worker = -1  # worker mode: where the last spread message went

    # -- lifecycle -----------------------------------------------------

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> Receiver:
        if self.started:
            raise ConfigError("receiver already started")
        self.started = True
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        if self.server_secret is not None:
            # keys first, before any socket exists: a bad file is an error at once, never a hang in
            # ctx.term() on a half-built socket (tests/faults/test_keys.py)
            self._server_keys = load_keypair(self.server_secret)
            self.allow = AllowList(self.allow_dir)
            self.identity = Identity(self.allow, max_streams=self.max_streams)
        self._ctx = zmq.Context()
        if self.server_secret is not None:
            self._auth = start_authenticator(self._ctx, self.allow)
        else:
            log.warning(
                "RECEIVER IS UNAUTHENTICATED: no CURVE keys configured, anyone who can reach %s can send "
                "features, and nothing is encrypted; set --keys-secret and --allow-dir (docs/receiver.md)",
                self.bind,
            )
        jsonl, max_bytes, backups = self._jsonl
        if jsonl is not None:
            self._owned_sinks.append(JsonlSink(jsonl, max_bytes=max_bytes, backups=backups))
            self.ledger.preload(jsonl, backups)
        if self._pub is not None:
            pub = PubSink(self._pub, self._ctx, self.timeouts)
            self.pub_endpoint = pub.endpoint
            self._owned_sinks.append(pub)
        if self.cluster is not None:  # decoding only here: the replicas load the graphs they run
            bundles = [b if isinstance(b, Bundle) else load_bundle(b) for b in self._bundle_specs]
        elif self.workers <= 1:
            bundles = [
                b if isinstance(b, Bundle) else load_bundle(b, threads=self.threads)
                for b in self._bundle_specs
            ]
        else:  # the workers load their own; the parent reads the manifests for the size limit
            bundles = [
                b if isinstance(b, Bundle) else load_bundle(b, verify=False) for b in self._bundle_specs
            ]
        self.max_message_bytes = limits_for(bundles, self.max_streams).max_message_bytes
        if self.cluster is not None:
            self._start_cluster(bundles)
        front = self._public_socket()
        if self._backend is not None:
            self._engine = Engine(
                bundles, self._on_event, max_batch=self.max_batch, max_wait_s=self.max_wait_ms / 1e3,
                parts=1 if self.socket_type == "pull" else 2, max_streams=self.max_streams,
                ledger=self.ledger, identity=self.identity, backend=self._backend, geometry=self.geometry,
            )  # fmt: skip
            self._spawn(self._cluster_loop, front)
        elif self.workers <= 1:
            self._engine = Engine(
                bundles, self._on_event, max_batch=self.max_batch, max_wait_s=self.max_wait_ms / 1e3,
                parts=1 if self.socket_type == "pull" else 2, max_streams=self.max_streams,
                ledger=self.ledger, identity=self.identity, geometry=self.geometry,
            )  # fmt: skip
            for b in bundles:
                b.session("back")  # load now: the first frame pays no start-up cost
                log.info("serving model %s (%s) from %s", b.model_name, b.model_id[:16], b.path)
            self._spawn(self._single_loop, front)
        else:
            self._start_workers(front)
        host, port = self._metrics
        if port is not None:
            self._metrics_server = MetricsServer(self.render_metrics, host, port)
            self.metrics_port = self._metrics_server.port
        log.info(  # the CLI prints the one "receiving on" line
            "bound %s (%s, %s), max batch %d, max wait %.1f ms, %s",
            self.endpoint, self.socket_type, "CURVE" if self._auth else "UNAUTHENTICATED",
            self.max_batch, self.max_wait_ms,
            f"back half on Ray Serve deployment {self.cluster.deployment!r} at {self.cluster.address}"
            if self.cluster is not None
            else f"{self.workers} workers" if self.workers > 1 else f"one process, {self.threads} ORT threads",
        )  # fmt: skip

    def _public_socket(self) -> zmq.Socket:
        sock = self._ctx.socket(SOCKET_TYPES[self.socket_type])
        apply_server_options(sock, self.timeouts)
        # ZeroMQ reads a message's length before it allocates it: a peer that announces more than
        # the largest valid message is disconnected there, so a hostile 2 GB frame costs nothing
        # (without this it was allocated whole and only then rejected by the decoder:
        # tests/faults/test_bad_input.py).
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        if self._server_keys is not None:
            sock.curve_publickey, sock.curve_secretkey = self._server_keys
            sock.curve_server = True
        try:
            sock.bind(self.bind)
        except zmq.ZMQError as e:
            sock.close(0)
            raise ConfigError(f"cannot bind the receiver to {self.bind!r}: {e}") from e
        except BaseException:
            sock.close(0)  # e.g. a bad key file: an open socket would block ctx.term() forever
            raise
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return sock

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, name=f"receiver-{target.__name__}", daemon=True)
        self._threads.append(t)
        t.start()

    def close(self) -> None:
        """Stop receiving, finish pending batches, close sinks and sockets. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._procs:
            self._stop_workers()
        # cluster mode: the loop waits for the requests at the deployment before it stops
        stop_s = _STOP_TIMEOUT_S + (self.cluster.retry_timeout_s if self.cluster is not None else 0.0)
        for t in self._threads:
            t.join(timeout=stop_s)
            if t.is_alive():
                log.error("receiver thread %s did not stop within %.0f s", t.name, stop_s)
        if self._backend is not None:
            self._backend.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
        for s in self._owned_sinks + self._sinks:
            s.close()
        if self._auth is not None:
            self._auth.stop()
        if self._ctx is not None:
            self._ctx.term()
        if self._ipc_dir:
            shutil.rmtree(self._ipc_dir, ignore_errors=True)

    # -- events --------------------------------------------------------

    def _on_event(self, ev: Result | Reject) -> None:
        if isinstance(ev, Result) and self._procs:
            # worker mode: the parent's ledger decides (a resend may have run in two workers)
            if not self.ledger.claim(ev.stream_id, ev.epoch, ev.seq, ev.base, self._routes.get(ev.stream_id)):
                ev = Reject(ev.stream_id, "duplicate", f"seq {ev.seq} of epoch {ev.epoch:016x} again")
        self.stats.add(ev)
        if isinstance(ev, Result):
            for s in self._owned_sinks:
                s.write(ev)
            for s in self._sinks:
                s.write(ev)
            self.ledger.done(ev.stream_id, ev.epoch, ev.seq)

    def _send_acks(self, sock: zmq.Socket) -> None:
        """After the sinks were flushed: acknowledge what they hold (ROUTER only)."""
        if self.socket_type != "router":
            self.ledger.acks()  # clear: PULL cannot answer
            return
        for route, ack in self.ledger.acks():
            try:
                sock.send_multipart([route, ack], zmq.NOBLOCK)
                self.acks_sent += 1
            except zmq.ZMQError:
                pass  # peer gone or its queue full: the next ack covers this one (cumulative)

    def _flush_sinks(self) -> None:
        for s in self._owned_sinks + self._sinks:
            s.flush()

    # -- one process ---------------------------------------------------

    def _single_loop(self, sock: zmq.Socket) -> None:
        eng = self._engine
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        idle_ms = self.timeouts.recv_timeout_ms
        drain = 4 * self.max_batch
        try:
            while not self._stop.is_set():
                self._heartbeat = time.monotonic()
                due = eng.time_to_due()
                timeout = idle_ms if due is None else min(idle_ms, due * 1e3)
                n = self._drain(sock, eng, drain) if poller.poll(timeout) else 0
                if eng.flush() or n:
                    self._flush_sinks()
                    self._send_acks(sock)
                if self.allow is not None:
                    self.allow.refresh()
            eng.flush(force=True)
            self._flush_sinks()
            self._send_acks(sock)
        except Exception:
            log.exception("receiver loop failed; the watchdog will see it stop")
            raise
        finally:
            sock.close(linger=0)  # nothing of ours waits in it: acks are best effort, cumulative

    def _drain(self, sock: zmq.Socket, eng, limit: int) -> int:
        """Feed ``eng`` up to ``limit`` waiting messages; returns how many were read."""
        n = 0
        while n < limit:
            try:
                parts, peer = self._recv(sock)
            except zmq.Again:
                break
            eng.feed(parts, peer)
            n += 1
        return n

    def _recv(self, sock: zmq.Socket) -> tuple[list[bytes], str | None]:
        """One message's frames and, with CURVE, the client's authenticated key (ZAP User-Id)."""
        frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        peer = None
        if self._auth is not None:
            try:
                peer = frames[-1].get("User-Id")
            except zmq.ZMQError:
                peer = None
        return [f.bytes for f in frames], peer

    # -- cluster mode --------------------------------------------------

    def _start_cluster(self, bundles: list[Bundle]) -> None:
        from edge_runtime.receiver.cluster import RayBackend

        self._backend = RayBackend(
            self.cluster, [str(b.path.resolve()) for b in bundles], [b.model_id for b in bundles]
        )
        self._backend.start()

    def _cluster_loop(self, sock: zmq.Socket) -> None:
        """As :meth:`_single_loop`, with the back half remote: batches go out as requests, finished
        requests wake the loop through the backend's pipe. While ``max_inflight`` requests are out,
        the socket is not read (ZeroMQ's queues and the edges' windows hold the rest)."""
        eng, be = self._engine, self._backend
        poller = zmq.Poller()
        poller.register(be.wakeup_fd, zmq.POLLIN)
        reading = False
        idle_ms = self.timeouts.recv_timeout_ms
        drain = 4 * self.max_batch
        try:
            while not self._stop.is_set():
                self._heartbeat = time.monotonic()
                if reading and be.full():
                    poller.unregister(sock)
                    reading = False
                elif not reading and not be.full():
                    poller.register(sock, zmq.POLLIN)
                    reading = True
                due = eng.time_to_due()
                timeout = idle_ms if due is None else min(idle_ms, due * 1e3)
                ready = dict(poller.poll(timeout))
                n = self._drain(sock, eng, drain) if sock in ready else 0
                c = eng.collect() if be.wakeup_fd in ready else 0
                if eng.flush() or n or c:
                    self._flush_sinks()
                    self._send_acks(sock)
                if self.allow is not None:
                    self.allow.refresh()
            if reading:
                poller.unregister(sock)
            eng.flush(force=True)
            deadline = time.monotonic() + self.cluster.retry_timeout_s
            while eng.waiting() and time.monotonic() < deadline:
                self._heartbeat = time.monotonic()
                if poller.poll(idle_ms):
                    eng.collect()
                    self._flush_sinks()
                    self._send_acks(sock)
            if eng.waiting():
                log.error("receiver stopped with %d frames still at the Ray deployment", eng.waiting())
            self._flush_sinks()
            self._send_acks(sock)
        except Exception:
            log.exception("receiver loop failed; the watchdog will see it stop")
            raise
        finally:
            sock.close(linger=0)

    # -- worker processes ----------------------------------------------

    def _start_workers(self, front: zmq.Socket) -> None:
        self._ipc_dir = tempfile.mkdtemp(prefix="edge-rx-")
        os.chmod(self._ipc_dir, 0o700)  # only this user can talk to the workers
        ep_out = f"ipc://{self._ipc_dir}/out"
        back = []  # one input per worker, so the proxy chooses which worker decodes a message
        for i in range(self.workers):
            b = self._ctx.socket(zmq.PUSH)
            b.setsockopt(zmq.LINGER, 0)
            b.setsockopt(zmq.SNDHWM, 2 * self.max_batch)  # a busy worker's queue fills, the proxy skips it
            b.bind(f"ipc://{self._ipc_dir}/in-{i + 1}")
            back.append(b)
        results = self._ctx.socket(zmq.PULL)
        results.setsockopt(zmq.LINGER, 0)
        results.bind(ep_out)
        ctrl_ep = f"inproc://proxy-ctrl-{id(self)}"
        self._ack_ep = f"inproc://proxy-acks-{id(self)}"
        self._ctrl = self._ctx.socket(zmq.PAIR)
        self._ctrl.bind(ctrl_ep)
        ctrl_peer = self._ctx.socket(zmq.PAIR)
        ctrl_peer.connect(ctrl_ep)
        spec = {
            "bundles": [
                str(b.path if isinstance(b, Bundle) else b) if b is not None else None
                for b in self._bundle_specs
            ],
            "threads": self.threads,
            "max_batch": self.max_batch,
            "max_wait_s": self.max_wait_ms / 1e3,
            "parts": 1 if self.socket_type == "pull" else 2,
            "in": f"ipc://{self._ipc_dir}/in-{{index}}",
            "out": ep_out,
            "max_streams": self.max_streams,
            "recv_timeout_ms": self.timeouts.recv_timeout_ms,
            "geometry": self.geometry.to_spec(),
        }
        mpctx = mp.get_context("spawn")  # no fork: ZeroMQ contexts and ORT threads do not survive it
        self._worker_stop = mpctx.Event()
        for i in range(self.workers):
            p = mpctx.Process(
                target=_worker_main, args=(spec, i + 1, self._worker_stop), name=f"rx-worker-{i + 1}"
            )
            p.start()
            self._procs.append(p)
        # wait until every worker is connected, so PUSH spreads the first frames over all of them
        ready: set[int] = set()
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while len(ready) < self.workers:
            if time.monotonic() > deadline or not all(p.is_alive() for p in self._procs):
                for p in self._procs:
                    p.kill()
                raise ConfigError(
                    f"only {len(ready)} of {self.workers} receiver workers started within {_READY_TIMEOUT_S:.0f} s; "
                    "see their log lines above"
                )
            if results.poll(200):
                msg = json.loads(results.recv())
                if "ready" in msg:
                    ready.add(msg["ready"])
                    log.info("worker %d ready (pid %d)", msg["ready"], msg["pid"])
        self._spawn(self._proxy, front, back, ctrl_peer)
        self._spawn(self._collect, results)

    def _proxy(self, front: zmq.Socket, back: list[zmq.Socket], ctrl: zmq.Socket) -> None:
        """Forward public messages to the workers (identity checked here, where the key is known),
        and acknowledgements from the collector back out of the public socket.

        A message of wire version 3 or later (a temporal edge: it may be predicted from an earlier
        frame of its stream) goes to the worker its epoch's 16-bit tag picks (tag mod workers), so
        that worker holds every reference of the stream; older versions are spread over the workers, a busy one skipped."""
        acks = self._ctx.socket(zmq.PULL)
        acks.bind(self._ack_ep)
        poller = zmq.Poller()
        for s_ in (front, acks, ctrl):
            poller.register(s_, zmq.POLLIN)
        limit = self.timeouts.recv_timeout_ms
        try:
            while True:
                ready = dict(poller.poll(limit))
                if ctrl in ready:
                    break
                if acks in ready:
                    while True:
                        try:
                            front.send_multipart(acks.recv_multipart(zmq.NOBLOCK), zmq.NOBLOCK)
                            self.acks_sent += 1
                        except zmq.Again:
                            break
                        except zmq.ZMQError:
                            continue
                if front in ready:
                    for _ in range(256):
                        try:
                            parts, peer = self._recv(front)
                        except zmq.Again:
                            break
                        sid = peek_stream_id(parts[-1])
                        refused = self.identity.check(sid, peer) if self.allow is not None else None
                        if refused is not None:
                            self._on_event(Reject(sid, *refused))
                            continue
                        if self.socket_type == "router" and len(parts) == 2:
                            if len(self._routes) > 4 * self.max_streams:
                                self._routes.clear()
                            self._routes[sid] = parts[0]
                        self._forward(back, parts)
                if self.allow is not None:
                    self.allow.refresh()
        except zmq.ZMQError as e:
            if e.errno != zmq.ETERM:
                log.exception("receiver proxy failed")
        finally:
            front.close(0)
            for b in back:
                b.close(0)
            ctrl.close(0)
            acks.close(0)

    def _forward(self, back: list[zmq.Socket], parts: list[bytes]) -> None:
        tag = peek_epoch_tag(parts[-1])
        if tag is not None:  # temporal: pinned by its epoch (a compact predicted frame names no stream)
            back[tag % len(back)].send_multipart(parts)
            return
        self._next_worker = (self._next_worker + 1) % len(back)
        for k in range(len(back)):
            try:
                back[(self._next_worker + k) % len(back)].send_multipart(parts, zmq.NOBLOCK)
                return
            except zmq.Again:
                continue
        back[self._next_worker].send_multipart(parts)  # every worker busy: wait for this one

    def _collect(self, results: zmq.Socket) -> None:
        ack_push = self._ctx.socket(zmq.PUSH)
        ack_push.setsockopt(zmq.LINGER, 0)
        ack_push.connect(self._ack_ep)
        try:
            while True:
                self._heartbeat = time.monotonic()
                if not results.poll(self.timeouts.recv_timeout_ms):
                    if self._stop.is_set() and not any(p.is_alive() for p in self._procs):
                        break
                    continue
                n = 0
                while n < 256:
                    try:
                        raw = results.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    n += 1
                    msg = json.loads(raw)
                    if "r" in msg:
                        self._on_event(Result.from_dict(msg["r"]))
                    elif "x" in msg:
                        self._on_event(Reject(*msg["x"]))
                self._flush_sinks()
                self._send_acks(ack_push)
        finally:
            results.close(0)
            ack_push.close(0)

    def _stop_workers(self) -> None:
        try:
            self._ctrl.send(b"TERMINATE")
            # Close the control socket only once the proxy has read TERMINATE: closed at once with
            # linger 0 it sometimes dropped the message, and an idle `--workers 2` receiver then
            # took 30 s to stop (tests/receiver/test_receiver_shutdown.py).
            for t in self._threads:
                if t.name == "receiver-_proxy":
                    t.join(timeout=_STOP_TIMEOUT_S)
        finally:
            self._ctrl.close(0)
        self._worker_stop.set()
        for p in self._procs:
            p.join(timeout=30)
            if p.is_alive():
                log.error("worker %s did not stop within 30 s; killing it", p.name)
                p.kill()
                p.join(timeout=5)

    # -- queries -------------------------------------------------------

    def alive(self, max_age_s: float = 10.0) -> bool:
        """The loop ran within ``max_age_s`` and every worker is alive (for the systemd watchdog)."""
        if not self.started or self._stop.is_set():
            return False
        if time.monotonic() - self._heartbeat > max_age_s:
            return False
        return all(p.is_alive() for p in self._procs)

    def wait(self, frames: int | None = None, duration: float | None = None, poll_s: float = 0.02) -> dict:
        """Block until ``frames`` messages have been accounted for (results + rejects) or ``duration``
        seconds passed (at least one must be given); returns :meth:`Stats.totals`."""
        if frames is None and duration is None:
            raise ConfigError("wait() needs frames or duration")
        end = None if duration is None else time.monotonic() + duration
        while True:
            t = self.stats.totals()
            if frames is not None and t["received"] >= frames:
                return t
            if end is not None and time.monotonic() >= end:
                return t
            if not self.alive(max_age_s=60):
                return t
            time.sleep(poll_s)

    def render_metrics(self) -> str:
        text = self.stats.render_prometheus()
        t = self.stats.totals()
        lat = sorted(self.stats.latencies)
        extra = [
            "# HELP edge_receiver_workers_alive worker processes alive (1 in one-process mode)",
            "# TYPE edge_receiver_workers_alive gauge",
            f"edge_receiver_workers_alive {sum(p.is_alive() for p in self._procs) if self._procs else int(self.alive())}",
            "# HELP edge_receiver_latency_p50_ms median capture-to-result latency of the last results",
            "# TYPE edge_receiver_latency_p50_ms gauge",
            f"edge_receiver_latency_p50_ms {lat[len(lat) // 2] if lat else 0.0}",
            "# HELP edge_receiver_lost_total frames the edges gave up that never arrived here",
            "# TYPE edge_receiver_lost_total counter",
            f"edge_receiver_lost_total {self.ledger.totals()['lost']}",
            "# HELP edge_receiver_duplicates_total resent frames answered before (no second result)",
            "# TYPE edge_receiver_duplicates_total counter",
            f"edge_receiver_duplicates_total {self.ledger.totals()['duplicates']}",
            "# HELP edge_receiver_acks_sent_total acknowledgements sent to edges",
            "# TYPE edge_receiver_acks_sent_total counter",
            f"edge_receiver_acks_sent_total {self.acks_sent}",
            "# HELP edge_receiver_bad_key_files key files in the allow folder refused (each named in the log)",
            "# TYPE edge_receiver_bad_key_files gauge",
            f"edge_receiver_bad_key_files {len(self.allow.bad) if self.allow else 0}",
            "# HELP edge_receiver_enrolled_keys client keys enrolled in the allow folder",
            "# TYPE edge_receiver_enrolled_keys gauge",
            f"edge_receiver_enrolled_keys {len(self.allow.keys) if self.allow else 0}",
            "# HELP edge_receiver_results_all_total results over all streams",
            "# TYPE edge_receiver_results_all_total counter",
            f"edge_receiver_results_all_total {t['results']}",
        ]
        if self._backend is not None:
            be = self._backend
            extra += [
                "# HELP edge_receiver_cluster_requests_total back-half requests sent to the Ray deployment",
                "# TYPE edge_receiver_cluster_requests_total counter",
                f"edge_receiver_cluster_requests_total {be.requests}",
                "# HELP edge_receiver_cluster_retries_total requests sent again (a replica died or timed out)",
                "# TYPE edge_receiver_cluster_retries_total counter",
                f"edge_receiver_cluster_retries_total {be.retries}",
                "# HELP edge_receiver_cluster_failed_total requests that failed for good (frames rejected)",
                "# TYPE edge_receiver_cluster_failed_total counter",
                f"edge_receiver_cluster_failed_total {be.failed}",
                "# HELP edge_receiver_cluster_inflight requests at the Ray deployment now",
                "# TYPE edge_receiver_cluster_inflight gauge",
                f"edge_receiver_cluster_inflight {be.inflight}",
            ]
        return text + "\n".join(extra) + "\n"


def _worker_main(spec: dict, index: int, stop) -> None:
    """One worker process: PULL raw messages from the proxy, emit events to the parent."""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s worker{index} %(name)s: %(message)s"
    )
    bundles = [load_bundle(p, threads=spec["threads"]) for p in spec["bundles"]]
    ctx = zmq.Context()
    inp = ctx.socket(zmq.PULL)
    inp.setsockopt(zmq.RCVHWM, 2 * spec["max_batch"])
    inp.setsockopt(zmq.LINGER, 0)
    out = ctx.socket(zmq.PUSH)
    out.setsockopt(zmq.LINGER, 5000)
    out.connect(spec["out"])

    def emit(ev: Result | Reject) -> None:
        if isinstance(ev, Result):
            out.send(json.dumps({"r": ev.to_dict() | {"base": ev.base}}).encode())
        else:
            out.send(json.dumps({"x": [ev.stream_id, ev.reason, ev.detail[:500]]}).encode())

    eng = Engine(
        bundles, emit, max_batch=spec["max_batch"], max_wait_s=spec["max_wait_s"], parts=spec["parts"],
        max_streams=spec["max_streams"], worker=index, geometry=FrameGeometry.from_spec(spec.get("geometry")),
    )  # fmt: skip
    for b in bundles:
        b.session("back")
    inp.connect(spec["in"].format(index=index))
    out.send(json.dumps({"ready": index, "pid": os.getpid()}).encode())
    poller = zmq.Poller()
    poller.register(inp, zmq.POLLIN)
    drain = 4 * spec["max_batch"]
    try:
        while not stop.is_set():
            due = eng.time_to_due()
            timeout = spec["recv_timeout_ms"] if due is None else min(spec["recv_timeout_ms"], due * 1e3)
            if poller.poll(timeout):
                for _ in range(drain):
                    try:
                        parts = inp.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    eng.feed(parts)
            eng.flush()
        # take what is already queued, then finish the last batches
        while True:
            try:
                eng.feed(inp.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
        eng.flush(force=True)
    finally:
        inp.close(0)
        out.close()
        ctx.term()
