"""Edge-like senders for the receiver tests: the real front half, per-channel 8-bit quantization,
the real encoder, a real ZeroMQ PUSH socket."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import zmq

from edge_runtime.codec import Encoder, Frame, Tensor
from edge_runtime.kernels import reference
from edge_runtime.scenes import SceneGenerator


def quantize(f: np.ndarray, bits: int = 8) -> Tensor:
    """Per-channel uniform quantization of a (C, H, W) float map (the kernels' NumPy twin)."""
    q, scale, offset = reference.quantize(np.ascontiguousarray(f, np.float32), bits)
    return Tensor(q, scale=scale, offset=offset, bits=bits)


def scenes(bundle, n: int, seed: int = 7):
    gen = SceneGenerator(size=bundle.input.size[0], num_classes=bundle.num_classes, seed=seed)
    return [gen.sample(i) for i in range(n)]


def features(bundle, images: np.ndarray) -> np.ndarray:
    """Front half on a batch of uint8 images -> (N, C, H, W) split tensors."""
    return bundle.front(bundle.preprocess(images))[bundle.split_name]


def make_messages(bundle, n: int, streams=("cam0",), seed: int = 7, empty_every: int = 0):
    """n encoded messages spread round-robin over ``streams``; returns (messages, tensors, scenes)
    where tensors[i] is the quantized Tensor of message i (None for an empty frame)."""
    sc = scenes(bundle, n, seed)
    feats = features(bundle, np.stack([s.image for s in sc]))
    enc = Encoder(bundle.model_id_bytes)
    msgs, tensors = [], []
    seqs = dict.fromkeys(streams, 0)
    for i in range(n):
        sid = streams[i % len(streams)]
        t = None if empty_every and i % empty_every == empty_every - 1 else quantize(feats[i])
        msgs.append(enc.encode(Frame(sid, seqs[sid], time.time_ns(), t)))
        tensors.append(t)
        seqs[sid] += 1
    return msgs, tensors, sc


def restamp(msg: bytes, bundle, tensor, stream: str, seq: int) -> bytes:
    """Re-encode with a fresh capture time (for latency checks)."""
    return Encoder(bundle.model_id_bytes).encode(Frame(stream, seq, time.time_ns(), tensor))


class Sender:
    """A PUSH socket connected to ``endpoint``, optionally as a CURVE client. ``heartbeat=False``
    for a flood: a receiver that falls seconds behind reads the PINGs late, and the heartbeat
    timeout would drop the connection with the messages in its buffers (nothing resends them)."""

    def __init__(
        self, endpoint: str, *, client_secret=None, server_public=None, kind=zmq.PUSH, heartbeat: bool = True
    ):
        from edge_runtime.transport import SocketTimeouts, apply_timeouts, configure_client_curve

        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(kind)
        t = SocketTimeouts(send_timeout_ms=2000, sndhwm=10000, linger_ms=2000)
        if not heartbeat:
            t = dataclasses.replace(t, heartbeat_ivl_ms=0)
        apply_timeouts(self.sock, t)
        if client_secret is not None:
            configure_client_curve(self.sock, client_secret, server_public)
        self.sock.connect(endpoint)

    def send(self, msgs) -> None:
        for m in msgs:
            self.sock.send(m)

    def close(self) -> None:
        self.sock.close()
        self.ctx.term()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
