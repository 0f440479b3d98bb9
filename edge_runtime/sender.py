"""The ZeroMQ sender: PUSH (or DEALER) connected to one or more receivers, never blocking capture.

Socket options are set on purpose (see :class:`~edge_runtime.config.SenderConfig`):

- ``IMMEDIATE=1``: messages queue only to receivers whose connection is complete, so with no
  receiver a send fails at once instead of filling a queue for a peer that may never come;
- ``SNDHWM``: at most that many messages wait per receiver; beyond it a send fails;
- sends are ``NOBLOCK`` (``send_timeout_ms`` = 0) or wait at most ``send_timeout_ms``;
- heartbeats detect a dead receiver, reconnects back off to ``reconnect_ivl_max_ms``;
- ``LINGER`` bounds how long unsent messages delay shutdown.

Drop policy: a message that cannot be queued is refused (``send`` returns ``backpressure``);
under delivery policy ``live`` it is dropped, under ``reliable`` it waits in the resend window
(:mod:`edge_runtime.delivery`). PUSH and DEALER spread messages round-robin over the connected
receivers. With DEALER (the default) the receiver's acknowledgements come back on the same socket
(:meth:`Sender.poll`); a monitor socket reports connections, handshakes and their failures, from
which :meth:`Sender.diagnosis` says why nothing is acknowledged.
"""

from __future__ import annotations

import logging
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from edge_runtime.config import SenderConfig
from edge_runtime.delivery import decode_ack
from edge_runtime.errors import TransportError
from edge_runtime.transport import SocketTimeouts, apply_timeouts, configure_client_curve

__all__ = ["Sender", "DROP_BACKPRESSURE"]

log = logging.getLogger(__name__)

DROP_BACKPRESSURE = "backpressure"

_EVENTS = (
    zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)  # fmt: skip


class Sender:
    """``send(message) -> None`` when queued, else the drop reason. A context manager."""

    def __init__(self, cfg: SenderConfig, *, context: zmq.Context | None = None) -> None:
        self.cfg = cfg
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        kind = {"push": zmq.PUSH, "dealer": zmq.DEALER}[cfg.socket]
        self.sock = self.ctx.socket(kind)
        try:
            apply_timeouts(
                self.sock,
                SocketTimeouts(
                    send_timeout_ms=cfg.send_timeout_ms,
                    linger_ms=cfg.linger_ms,
                    reconnect_ivl_ms=cfg.reconnect_ivl_ms,
                    reconnect_ivl_max_ms=cfg.reconnect_ivl_max_ms,
                    heartbeat_ivl_ms=cfg.heartbeat_ivl_ms,
                    heartbeat_timeout_ms=cfg.heartbeat_timeout_ms,
                    handshake_ivl_ms=cfg.handshake_ivl_ms,
                    sndhwm=cfg.sndhwm,
                ),
            )
            self.sock.setsockopt(zmq.IMMEDIATE, 1)
            self.curve = bool(cfg.client_secret_key)
            if cfg.client_secret_key:
                if not cfg.server_public_key:
                    raise TransportError(
                        "sender.client_secret_key is set but sender.server_public_key is not: "
                        "CURVE needs the receiver's public .key too"
                    )
                configure_client_curve(self.sock, cfg.client_secret_key, cfg.server_public_key)
            else:
                log.warning(
                    "SENDING UNENCRYPTED: no sender.client_secret_key, so features go in clear and any "
                    "receiver (or anyone on the path) can read them; set sender.client_secret_key and "
                    "sender.server_public_key (docs/edge.md)"
                )
            self._monitor = self.sock.get_monitor_socket(_EVENTS)
            for ep in cfg.endpoints:
                try:
                    self.sock.connect(ep)
                except zmq.ZMQError as e:
                    raise TransportError(f"sender.endpoints: cannot connect to {ep!r}: {e}") from e
        except Exception:
            self.close()
            raise
        self._flags = zmq.NOBLOCK if cfg.send_timeout_ms == 0 else 0
        self.acks_enabled = cfg.socket == "dealer"
        self.sent = 0
        self.bytes = 0
        self.handshakes = 0
        self.connected = 0  # completed handshakes currently up
        self.events: dict[str, float] = {}  # last time each event kind was seen
        # libzmq does not reconnect after a refused handshake (measured, libzmq 4.3.5): we dial
        # again ourselves, with back-off, so a box enrolled later gets through without a restart
        self._redial: dict[str, float] = {}
        self._redial_delay: dict[str, float] = {}
        self.bad_acks = 0
        log.info("sender: %s -> %s", cfg.socket.upper(), ", ".join(cfg.endpoints))

    def send(self, message: bytes) -> str | None:
        try:
            self.sock.send(message, self._flags, copy=len(message) < 16384)
        except zmq.Again:
            return DROP_BACKPRESSURE
        self.sent += 1
        self.bytes += len(message)
        return None

    def poll(self) -> tuple[list[tuple[str, int, int]], int]:
        """Non-blocking: the acknowledgements that arrived, and how many connections dropped or
        were re-established since the last call (each one means: resend what is not acknowledged)."""
        acks = []
        if self.acks_enabled:
            while True:
                try:
                    buf = self.sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                a = decode_ack(buf)
                if a is None:
                    self.bad_acks += 1
                else:
                    acks.append(a)
        reconnects = 0
        while True:
            try:
                ev = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError:
                break
            kind = ev["event"]
            self.events[zmq.Event(kind).name] = time.monotonic()
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.handshakes += 1
                self.connected += 1
                # IMMEDIATE: nothing was queued before the first connection, so only a later one
                # means messages may have died with an old connection
                reconnects += self.handshakes > 1
            elif kind in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                          zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):  # fmt: skip
                ep = ev.get("endpoint", b"")
                ep = ep.decode() if isinstance(ep, bytes) else str(ep)
                if ep in self.cfg.endpoints:
                    d = min(self.cfg.reconnect_ivl_max_ms / 1e3, 2 * self._redial_delay.get(ep, 0.25))
                    self._redial_delay[ep] = max(d, self.cfg.reconnect_ivl_ms / 1e3)
                    self._redial[ep] = time.monotonic() + self._redial_delay[ep]
            elif kind == zmq.EVENT_DISCONNECTED:
                self.connected = max(0, self.connected - 1)
                reconnects += 1  # what was queued on it is gone: resend over the others / later
        now = time.monotonic()
        for ep, due in list(self._redial.items()):
            if now >= due:
                del self._redial[ep]
                try:
                    self.sock.disconnect(ep)
                except zmq.ZMQError:
                    pass
                self.sock.connect(ep)
        if reconnects and self.connected:
            self._redial_delay.clear()
        return acks, reconnects

    def wait(self, timeout_s: float) -> None:
        """Block up to ``timeout_s`` until an acknowledgement or a connection event arrives."""
        poller = zmq.Poller()
        if self.acks_enabled:
            poller.register(self.sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        poller.poll(max(0, int(timeout_s * 1000)))

    def diagnosis(self) -> str:
        """Best guess, from the connection events seen, at why frames are not acknowledged."""
        ev = self.events
        eps = ", ".join(self.cfg.endpoints)

        def recent(name: str, s: float = 30.0) -> bool:
            return name in ev and time.monotonic() - ev[name] < s

        if recent("HANDSHAKE_FAILED_AUTH"):
            return (f"the receiver at {eps} refused this box's CURVE key: it is not enrolled (or was revoked) "
                    "in the receiver's allow folder; copy this box's .key there")  # fmt: skip
        if recent("HANDSHAKE_FAILED_PROTOCOL") or recent("HANDSHAKE_FAILED_NO_DETAIL"):
            if not self.curve:
                return (f"the handshake with {eps} fails: the receiver wants CURVE and this box sends "
                        "without keys; set sender.client_secret_key and sender.server_public_key")  # fmt: skip
            return (f"the CURVE handshake with {eps} fails: sender.server_public_key is probably not the "
                    "receiver's key, or the receiver runs without CURVE")  # fmt: skip
        if self.connected:
            return (f"connected to {eps} but nothing is acknowledged: the receiver refuses these frames "
                    "(another box's stream id, a revoked key, a model it does not serve, or a receiver "
                    "that does not acknowledge: socket 'pull' / an old version); see its log")  # fmt: skip
        if recent("CONNECTED") and not recent("HANDSHAKE_SUCCEEDED", 1e9):
            return (f"TCP connects to {eps} but the handshake never completes: a wrong "
                    "sender.server_public_key, or CURVE on one side only")  # fmt: skip
        if recent("CONNECT_RETRIED") or not ev:
            return f"the receiver at {eps} is unreachable (connection refused, no route, or not running)"
        return f"the connection to {eps} dropped and has not come back"

    def close(self) -> None:
        mon = getattr(self, "_monitor", None)
        if mon is not None and not self.sock.closed:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            mon.close(0)
        if not self.sock.closed:
            self.sock.close(linger=self.cfg.linger_ms)
        if self._own_ctx and not self.ctx.closed:
            self.ctx.term()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
