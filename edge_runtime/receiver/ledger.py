"""Per (stream, epoch) delivery state of the receiver: duplicates, acknowledgements, frames lost.

For every (stream id, boot epoch) the :class:`Ledger` keeps ``next``: every seq below it is
resolved (a result was given, or the edge gave it up: the message's ``base`` says the edge holds
nothing older), the seqs above ``next`` already done, and those in progress (decoded, waiting for
their batch). A message whose seq is resolved, done or in progress is a **duplicate**: refused,
counted, and acknowledged again (the edge evidently missed the ack), never a second result.

Frames the edge gave up (below its ``base``) that this receiver never got are counted **lost**.
A receiver that starts mid-stream takes the first message's ``base`` as its starting point, and
:meth:`Ledger.preload` reads back the results a previous run of this receiver wrote (its JSONL
file), so a restart does not give a second result for a frame resent after the crash.

State is bounded: at most ``max_keys`` (stream, epoch) pairs (least recently used dropped), the
last ``2 * max_ahead`` done seqs per pair, and a hole more than ``max_ahead`` behind the newest
result is counted lost.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from edge_runtime.delivery import encode_ack

__all__ = ["Ledger", "StreamLedger"]

log = logging.getLogger(__name__)


@dataclass
class StreamLedger:
    next: int | None = None  # None: nothing live seen yet (only preloaded results)
    done: set[int] = field(default_factory=set)  # recent seqs with a result (below next too)
    order: collections.deque = field(default_factory=collections.deque)  # done, oldest first
    inflight: set[int] = field(default_factory=set)
    high: int = -1  # highest seq done
    lost: int = 0
    duplicates: int = 0
    results: int = 0
    route: bytes | None = None
    dirty: bool = False


class Ledger:
    """Thread-safe; ``claim`` before decoding work is queued, ``done`` once the result is written.

    Arrival order does not matter (worker processes hand results back out of order): a frame
    counted lost when the edge's base passed it, that arrives after all, is taken off ``lost``.
    """

    def __init__(self, *, max_keys: int = 1024, max_ahead: int = 1024) -> None:
        self.max_keys = max_keys
        self.max_ahead = max_ahead
        self._st: collections.OrderedDict[tuple[str, int], StreamLedger] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.preloaded = 0

    def _decoded(self, st: StreamLedger) -> int | None:
        """The highest seq answered (version-2 acks): an edge coding temporally predicts from it (the
        process that decodes the stream decoded it and holds it as a reference)."""
        return st.high if st.high >= 0 else None

    def _get(self, key: tuple[str, int]) -> StreamLedger:
        st = self._st.get(key)
        if st is None:
            st = self._st[key] = StreamLedger()
            if len(self._st) > self.max_keys:
                self._st.popitem(last=False)
        else:
            self._st.move_to_end(key)
        return st

    def _mark_done(self, st: StreamLedger, seq: int) -> None:
        if seq in st.done:
            return
        st.done.add(seq)
        st.order.append(seq)
        st.high = max(st.high, seq)
        while len(st.order) > 2 * self.max_ahead:
            st.done.discard(st.order.popleft())

    def _advance(self, st: StreamLedger) -> None:
        while st.next in st.done:
            st.next += 1
        if st.high - st.next > self.max_ahead:  # a hole that never fills: count it lost
            first = min(x for x in st.done if x >= st.next)
            st.lost += first - st.next
            st.next = first
            while st.next in st.done:
                st.next += 1

    def _move_base(self, st: StreamLedger, base: int) -> None:
        if st.next is None:
            st.next = base
        elif base > st.next:
            # the edge holds nothing below base: what we never got there is lost (for now)
            have = sum(1 for x in st.done if st.next <= x < base) + sum(
                1 for x in st.inflight if st.next <= x < base
            )
            st.lost += (base - st.next) - have
            st.next = base
            st.dirty = True
        self._advance(st)

    def claim(self, stream: str, epoch: int, seq: int, base: int, route: bytes | None = None) -> bool:
        """Register a decoded message; False if it is a duplicate (refuse it, ack again)."""
        with self._lock:
            st = self._get((stream, epoch))
            if route is not None:
                st.route = route
            self._move_base(st, min(base, seq))
            if self._seen(st, seq):
                st.duplicates += 1
                st.dirty = True
                return False
            if seq < st.next and st.lost:
                st.lost -= 1  # counted lost when the base passed it; late, not lost
            st.inflight.add(seq)
            return True

    def duplicate(self, stream: str, epoch: int, seq: int) -> bool:
        """For a message that could not be decoded: True (counted, acknowledged again) if its
        seq is done or in progress, as :meth:`claim` would have refused it."""
        with self._lock:
            st = self._st.get((stream, epoch))
            if st is None or not self._seen(st, seq):
                return False
            st.duplicates += 1
            st.dirty = True
            return True

    def _seen(self, st: StreamLedger, seq: int) -> bool:
        return (
            seq in st.done or seq in st.inflight or (st.next is not None and st.next - seq > self.max_ahead)
        )

    def release(self, stream: str, epoch: int, seq: int) -> None:
        """A claimed frame that got no result (the back half failed): a resend may try again."""
        with self._lock:
            st = self._st.get((stream, epoch))
            if st is not None:
                st.inflight.discard(seq)

    def done(self, stream: str, epoch: int, seq: int) -> None:
        """The result of this frame was written: it may be acknowledged."""
        with self._lock:
            st = self._get((stream, epoch))
            st.inflight.discard(seq)
            st.results += 1
            self._mark_done(st, seq)
            if st.next is not None:
                self._advance(st)
            st.dirty = True

    def acks(self) -> list[tuple[bytes, bytes]]:
        """``(route, ack message)`` for every stream whose acknowledged point moved (or that sent
        a duplicate) since the last call."""
        out = []
        with self._lock:
            for (sid, epoch), st in self._st.items():
                if st.dirty and st.route is not None and st.next is not None:
                    out.append((st.route, encode_ack(sid, epoch, st.next, self._decoded(st))))
                st.dirty = False
        return out

    def ack_for(self, stream: str, epoch: int) -> bytes | None:
        with self._lock:
            st = self._st.get((stream, epoch))
            if st is None or st.next is None:
                return None
            return encode_ack(stream, epoch, st.next, self._decoded(st))

    def totals(self) -> dict:
        with self._lock:
            return {
                "lost": sum(s.lost for s in self._st.values()),
                "duplicates": sum(s.duplicates for s in self._st.values()),
                "epochs": len(self._st),
            }

    def per_stream(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        with self._lock:
            for (sid, _), st in self._st.items():
                d = out.setdefault(sid, {"lost": 0, "duplicates": 0, "epochs": 0})
                d["lost"] += st.lost
                d["duplicates"] += st.duplicates
                d["epochs"] += 1
        return out

    def preload(self, path: str | Path, backups: int = 5, tail_bytes: int = 8 << 20) -> int:
        """Mark the results a previous run wrote to the JSONL file ``path`` (and its newest rotated
        copy) as done, reading at most the last ``tail_bytes`` of each; returns results read."""
        path = Path(path)
        n = 0
        for p in [path] + [path.with_name(f"{path.name}.{i}") for i in range(1, min(backups, 1) + 1)]:
            try:
                with open(p, "rb") as f:
                    size = f.seek(0, 2)
                    f.seek(max(0, size - tail_bytes))
                    data = f.read()
            except OSError:
                continue
            lines = data.split(b"\n")
            if size > tail_bytes:
                lines = lines[1:]  # the first one is cut
            for line in lines:
                try:
                    r = json.loads(line)
                    key, seq = (str(r["stream"]), int(r["epoch"])), int(r["seq"])
                except (ValueError, KeyError, TypeError):
                    continue
                with self._lock:
                    self._mark_done(self._get(key), seq)
                n += 1
        self.preloaded += n
        if n:
            log.info(
                "read back %d results from %s: frames resent after a restart get no second result", n, path
            )
        return n
