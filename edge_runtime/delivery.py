"""Acknowledged delivery on the edge: a bounded resend window over a :class:`~edge_runtime.sender.Sender`.

The receiver acknowledges decoded frames cumulatively per (stream, epoch): an ack says "every seq
below ``next`` is resolved here" (delivered, or given up by the edge). The edge keeps every frame
it has not seen acknowledged in a window bounded by frames and by seconds, resends what is not
acknowledged after a connection dropped or was re-established (over TCP nothing is lost while a
connection stands; what was queued on a dead one is gone), and gives up on a frame only with a
reason. Every frame the pipeline encodes ends in exactly one of::

    delivered            acknowledged by a receiver
    window_overflow      evicted, oldest first, to make room (window_frames)
    window_expired       older than window_s without an acknowledgement
    shutdown             still unacknowledged when the drain at stop ran out (drain_s)
    backpressure         policy "live" only: the socket could not queue it (no window)

``live`` (window 0) sends once and forgets (freshness first; the receiver counts what it never got
as lost); ``reliable`` (default) is the above. A frame queued in a socket is not delivered: only an
acknowledgement says so. The ack message (receiver -> edge, on the DEALER / ROUTER connection)::

    "ERA" | u8 version=1 | u64 epoch | u64 next | u8 L | stream id (L bytes)      little-endian
    "ERA" | u8 version=2 | u64 epoch | u64 next | u8 L | stream id | u64 decoded + 1

Version 2 adds the highest seq the receiver has decoded and answered (0: none yet). Cumulative
``next`` cannot tell a delivered frame from one the edge gave up or one lost in transit under
``live``; ``decoded`` can, and temporal coding predicts only from such a frame
(:meth:`edge_runtime.codec.Encoder.acknowledge`). :func:`decode_ack` reads both versions.
"""

from __future__ import annotations

import collections
import logging
import os
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_runtime.errors import ConfigError

__all__ = [
    "ACK_MAGIC",
    "Ack",
    "encode_ack",
    "decode_ack",
    "new_epoch",
    "DeliveryPolicy",
    "ResendWindow",
    "POLICIES",
]

log = logging.getLogger(__name__)

ACK_MAGIC = b"ERA"
_ACK = struct.Struct("<3sBQQB")
_DECODED = struct.Struct("<Q")
POLICIES = ("reliable", "live")


def new_epoch() -> int:
    """A random 64-bit boot epoch (never 0, which version-1 messages decode to)."""
    while True:
        e = int.from_bytes(os.urandom(8), "little")
        if e:
            return e


class Ack(tuple):
    """``(stream_id, epoch, next)``, plus ``decoded``: the highest seq the receiver decoded and
    answered (None: a version-1 ack, or nothing decoded yet)."""

    decoded: int | None

    def __new__(cls, stream_id: str, epoch: int, next_seq: int, decoded: int | None = None):
        t = super().__new__(cls, (stream_id, epoch, next_seq))
        t.decoded = decoded
        return t


def encode_ack(stream_id: str, epoch: int, next_seq: int, decoded: int | None = None) -> bytes:
    """A version-1 ack, or version 2 when ``decoded`` (the highest seq decoded) is given."""
    sid = stream_id.encode("utf-8")[:255]
    if decoded is None:
        return _ACK.pack(ACK_MAGIC, 1, epoch, next_seq, len(sid)) + sid
    return _ACK.pack(ACK_MAGIC, 2, epoch, next_seq, len(sid)) + sid + _DECODED.pack(decoded + 1)


def decode_ack(buf: bytes) -> Ack | None:
    """``Ack(stream_id, epoch, next)`` (with ``.decoded``) or None for anything that is not a
    well-formed ack of version 1 or 2."""
    if len(buf) < _ACK.size:
        return None
    magic, version, epoch, nxt, n = _ACK.unpack_from(buf, 0)
    tail = {1: 0, 2: _DECODED.size}.get(version)
    if magic != ACK_MAGIC or tail is None or len(buf) != _ACK.size + n + tail:
        return None
    try:
        sid = bytes(buf[_ACK.size : _ACK.size + n]).decode("utf-8")
    except UnicodeDecodeError:
        return None
    decoded = None
    if tail:
        (d,) = _DECODED.unpack_from(buf, _ACK.size + n)
        decoded = d - 1 if d else None
    return Ack(sid, epoch, nxt, decoded)


@dataclass(frozen=True)
class DeliveryPolicy:
    """What the edge does with frames not yet acknowledged (``[delivery]`` in the edge config)."""

    policy: str = "reliable"
    window_frames: int = 256
    window_s: float = 30.0
    drain_s: float = 5.0
    no_ack_warn_s: float = 10.0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"delivery.policy must be one of {POLICIES}, got {self.policy!r}")

    @property
    def reliable(self) -> bool:
        return self.policy == "reliable" and self.window_frames > 0


@dataclass
class _Entry:
    seq: int
    message: bytes
    keyframe: bool
    t_first: float
    t_sent: float | None = None  # None: (re)send as soon as the socket takes it
    sends: int = 0
    # temporal: the message without its reference, for a receiver that may not hold it (reconnect)
    alone: Callable[[], bytes] | None = None


@dataclass
class WindowStats:
    submitted: int = 0
    delivered: int = 0
    sent: int = 0  # messages handed to the socket, resends included
    resent: int = 0
    acks: int = 0
    dropped: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {"submitted": self.submitted, "delivered": self.delivered, "sent": self.sent,
                "resent": self.resent, "acks": self.acks, "dropped": dict(self.dropped)}  # fmt: skip


class ResendWindow:
    """The frames of one stream and epoch that no receiver has acknowledged yet.

    ``send(message) -> None | reason`` is the socket's non-blocking send. Not thread-safe: the edge
    loop calls :meth:`submit`, :meth:`on_ack`, :meth:`on_reconnect` and :meth:`service`.
    ``lost_keyframe`` is set when a key frame was given up (the encoder must send a new one).
    """

    def __init__(
        self,
        policy: DeliveryPolicy,
        send,
        *,
        stream_id: str,
        epoch: int,
        clock=time.monotonic,
        on_give_up=None,
    ):
        self.policy = policy
        self.on_give_up = on_give_up  # called with the seq of every frame given up (never delivered)
        self._send = send
        self.stream_id = stream_id
        self.epoch = epoch
        self.clock = clock
        self.entries: collections.deque[_Entry] = collections.deque()
        self.stats = WindowStats()
        self.lost_keyframe = False
        self.last_ack_t: float | None = None
        self.last_progress_t = clock()

    def __len__(self) -> int:
        return len(self.entries)

    def base(self, next_seq: int) -> int:
        """The lowest seq still held (the message being built has ``next_seq``)."""
        return self.entries[0].seq if self.entries else next_seq

    # -- the edge loop's calls --------------------------------------------------------------

    def submit(
        self, seq: int, message: bytes, keyframe: bool, alone: Callable[[], bytes] | None = None
    ) -> bool:
        """Take a new frame; False only under ``live`` when the socket refused it (dropped as
        backpressure, its seq may be reused). ``alone``: for a predicted frame (temporal), makes
        the message coded without its reference, resent instead after a reconnect."""
        now = self.clock()
        if not self.policy.reliable:
            reason = self._send(message)
            if reason is not None:
                self.stats.dropped[reason] += 1
                if keyframe:
                    self.lost_keyframe = True
                if self.on_give_up is not None:
                    self.on_give_up(seq)
                return False
            self.stats.submitted += 1
            self.stats.sent += 1
            return True
        self.stats.submitted += 1
        while len(self.entries) >= self.policy.window_frames:
            self._give_up(self.entries.popleft(), "window_overflow")
        self.entries.append(_Entry(seq, message, keyframe, now, alone=alone))
        self.service(now)
        return True

    def on_ack(self, stream_id: str, epoch: int, next_seq: int) -> int:
        """An acknowledgement: everything below ``next_seq`` is resolved. Returns frames delivered."""
        if epoch != self.epoch or stream_id != self.stream_id:
            return 0
        self.stats.acks += 1
        now = self.clock()
        self.last_ack_t = now
        n = 0
        while self.entries and self.entries[0].seq < next_seq:
            self.entries.popleft()
            n += 1
        if n:
            self.last_progress_t = now
            if self.policy.reliable:
                self.stats.delivered += n
        return n

    def on_reconnect(self) -> None:
        """A (re)established connection: whatever was queued on the old one is gone; resend all.
        Predicted frames go coded alone: a restarted receiver holds no reference, and one that
        decoded newer frames meanwhile may have let theirs go (fault suite: keyframe rejections)."""
        for e in self.entries:
            e.t_sent = None
            if e.alone is not None:
                e.message, e.alone = e.alone(), None

    def service(self, now: float | None = None) -> None:
        """Expire old frames, then (re)send what is due while the socket takes it."""
        now = self.clock() if now is None else now
        p = self.policy
        while self.entries and now - self.entries[0].t_first > p.window_s:
            self._give_up(self.entries.popleft(), "window_expired")
        for e in self.entries:
            if e.t_sent is not None:
                continue
            if self._send(e.message) is not None:
                break  # the socket is full (or no peer): try again on the next turn
            if e.sends:
                self.stats.resent += 1
            e.sends += 1
            e.t_sent = now
            self.stats.sent += 1

    def drop_all(self, reason: str = "shutdown") -> int:
        n = len(self.entries)
        while self.entries:
            self._give_up(self.entries.popleft(), reason)
        return n

    def _give_up(self, e: _Entry, reason: str) -> None:
        self.stats.dropped[reason] += 1
        if e.keyframe:
            self.lost_keyframe = True
        if self.on_give_up is not None:
            self.on_give_up(e.seq)
        if reason != "shutdown":
            log.debug("gave up frame %d of %s: %s", e.seq, self.stream_id, reason)

    def unacked_for(self, now: float | None = None) -> float:
        """Seconds since the last acknowledgement progress while frames wait (0 when none wait)."""
        if not self.entries:
            return 0.0
        now = self.clock() if now is None else now
        return now - max(self.last_progress_t, self.entries[0].t_first)
