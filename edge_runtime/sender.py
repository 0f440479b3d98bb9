"""The ZeroMQ sender: PUSH (or DEALER) connected to one or more receivers, never blocking capture.

Socket options are set on purpose (see :class:`~edge_runtime.config.SenderConfig`):

- ``IMMEDIATE=1``: messages queue only to receivers whose connection is complete, so with no
  receiver a send fails at once instead of filling a queue for a peer that may never come;
- ``SNDHWM``: at most that many messages wait per receiver; beyond it a send fails;
- sends are ``NOBLOCK`` (``send_timeout_ms`` = 0) or wait at most ``send_timeout_ms``;
- heartbeats detect a dead receiver, reconnects back off to ``reconnect_ivl_max_ms``;
- ``LINGER`` bounds how long unsent messages delay shutdown.

Drop policy: a message that cannot be queued is dropped, newest-first (the frame being sent),
and counted as ``backpressure``; the next frame is fresher anyway. PUSH and DEALER spread
messages round-robin over the connected receivers.
"""

from __future__ import annotations

import logging

import zmq

from edge_runtime.config import SenderConfig
from edge_runtime.errors import TransportError
from edge_runtime.transport import SocketTimeouts, apply_timeouts, configure_client_curve

__all__ = ["Sender", "DROP_BACKPRESSURE"]

log = logging.getLogger(__name__)

DROP_BACKPRESSURE = "backpressure"


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
            if cfg.client_secret_key:
                configure_client_curve(self.sock, cfg.client_secret_key, cfg.server_public_key)
            for ep in cfg.endpoints:
                try:
                    self.sock.connect(ep)
                except zmq.ZMQError as e:
                    raise TransportError(f"sender.endpoints: cannot connect to {ep!r}: {e}") from e
        except Exception:
            self.close()
            raise
        self._flags = zmq.NOBLOCK if cfg.send_timeout_ms == 0 else 0
        self.sent = 0
        self.bytes = 0
        log.info("sender: %s -> %s", cfg.socket.upper(), ", ".join(cfg.endpoints))

    def send(self, message: bytes) -> str | None:
        try:
            self.sock.send(message, self._flags, copy=len(message) < 16384)
        except zmq.Again:
            return DROP_BACKPRESSURE
        self.sent += 1
        self.bytes += len(message)
        return None

    def close(self) -> None:
        if not self.sock.closed:
            self.sock.close(linger=self.cfg.linger_ms)
        if self._own_ctx and not self.ctx.closed:
            self.ctx.term()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
