"""Inter-frame state: what an encoder and a decoder remember per stream between messages.

The encoder keeps, per stream, the last key frame it coded (its seq, its symbols, its bits and how
many frames were coded against it); :meth:`EncoderState.forget` drops it, so the next tensor frame
is a key frame (the edge calls it when a key frame did not go out). The decoder keeps, per stream,
the last seq seen and the last key frame it decoded, for at most ``max_streams`` streams (LRU, so a
hostile sender inventing stream ids cannot grow it).

Temporal coding (format version 3): the encoder keeps the frames it sent that are not yet resolved
(:meth:`EncoderState.note_sent`), drops the ones the edge gave up (:meth:`~EncoderState.discard`),
and on an acknowledgement (:meth:`~EncoderState.acknowledge`, "every seq below ``next`` is
resolved") takes the newest delivered one as the stream's **reference**: a frame the receiver has
decoded, so a lost frame can never leave the two sides predicting from different tensors. The
decoder keeps the last :data:`~.format.REF_WINDOW` decoded frames (highest seqs) per stream.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from dataclasses import field as dataclasses_field

import numpy as np

from edge_runtime.codec.format import REF_WINDOW, RefFrame, stream_tag

__all__ = ["EncoderState", "DecoderState", "KeyRef", "StreamState"]

#: Sent, unresolved frames an encoder remembers per stream (the oldest go first: a receiver that
#: acknowledges nothing for this long gets intra frames until it does).
MAX_PENDING = 64


@dataclass
class KeyRef:
    seq: int
    q: np.ndarray
    bits: int
    since: int = 1  # frames coded against this key frame, itself included


class EncoderState:
    """Per-stream key frame references of an encoder."""

    def __init__(self) -> None:
        self._refs: dict[str, KeyRef] = {}
        self._pending: dict[str, collections.OrderedDict[int, RefFrame]] = {}
        self._confirmed: dict[str, RefFrame] = {}

    def get(self, stream_id: str) -> KeyRef | None:
        return self._refs.get(stream_id)

    def set_key(self, stream_id: str, seq: int, q: np.ndarray, bits: int) -> None:
        self._refs[stream_id] = KeyRef(seq, q.copy(), bits)

    def forget(self, stream_id: str) -> None:
        self._refs.pop(stream_id, None)
        self._pending.pop(stream_id, None)
        self._confirmed.pop(stream_id, None)

    # -- temporal references -----------------------------------------------------------------

    def reference(self, stream_id: str) -> RefFrame | None:
        """The newest frame of ``stream_id`` known to be decoded by the receiver (acknowledged)."""
        return self._confirmed.get(stream_id)

    def note_sent(self, stream_id: str, ref: RefFrame) -> None:
        p = self._pending.setdefault(stream_id, collections.OrderedDict())
        p[ref.seq] = ref
        while len(p) > MAX_PENDING:
            p.popitem(last=False)

    def discard(self, stream_id: str, seq: int) -> None:
        """The edge gave frame ``seq`` up (never delivered): it must not become a reference."""
        p = self._pending.get(stream_id)
        if p is not None:
            p.pop(seq, None)

    def acknowledge(
        self, stream_id: str, next_seq: int | None = None, decoded: int | None = None
    ) -> RefFrame | None:
        """An acknowledgement. ``decoded``: a seq the receiver decoded (the ack's highest answered
        seq): that frame becomes the reference if it is still held. Without it, ``next_seq`` ("every
        seq below it is resolved"): the newest held frame below it, which is right only when every
        frame given up was :meth:`discard`-ed (policy ``reliable``). Returns the reference in force."""
        p = self._pending.get(stream_id)
        if p:
            newest = None
            if decoded is not None:
                newest = p.get(decoded)
                limit = decoded + 1
            else:
                limit = -1 if next_seq is None else next_seq
            while p:
                seq = next(iter(p))
                if seq >= limit:
                    break
                r = p.pop(seq)
                if decoded is None:
                    newest = r
            cur = self._confirmed.get(stream_id)
            if newest is not None and (cur is None or newest.seq > cur.seq):
                self._confirmed[stream_id] = newest
        return self._confirmed.get(stream_id)

    def __len__(self) -> int:
        return len(self._refs)


@dataclass
class StreamState:
    last_seq: int | None = None
    key_seq: int | None = None
    ref: np.ndarray | None = None
    bits: int = 0
    refs: dict = dataclasses_field(default_factory=dict)  # seq -> RefFrame (version 3)


def _ref_bytes(r: RefFrame) -> int:
    return r.q.nbytes + (0 if r.keep is None else r.keep.nbytes) + (0 if r.state is None else r.state.nbytes)


class DecoderState:
    """Per-stream sequence and key frame state of a decoder, LRU-bounded to ``max_streams``;
    temporal references bounded to ``max_ref_bytes`` in all (least recently used streams, then
    the oldest frames, go first)."""

    def __init__(self, max_streams: int, max_ref_bytes: int = 64 << 20) -> None:
        self.max_streams = max_streams
        self.max_ref_bytes = max_ref_bytes
        self.ref_bytes = 0
        self._streams: collections.OrderedDict[str, StreamState] = collections.OrderedDict()
        # version 4: stream tag -> the (stream id, epoch) keys held with that tag
        self._tags: dict[int, set] = collections.defaultdict(set)

    def stream(self, stream_id: str) -> StreamState:
        st = self._streams.get(stream_id)
        if st is None:
            st = self._streams[stream_id] = StreamState()
            self._tag(stream_id).add(stream_id)
            if len(self._streams) > self.max_streams:
                key, old = self._streams.popitem(last=False)
                self.ref_bytes -= sum(_ref_bytes(r) for r in old.refs.values())
                tagged = self._tag(key)
                tagged.discard(key)
                if not tagged:
                    del self._tags[stream_tag(key[1])]
        else:
            self._streams.move_to_end(stream_id)
        return st

    def _tag(self, key) -> set:
        return self._tags[stream_tag(key[1])]

    def with_tag(self, tag: int) -> list:
        """The (stream id, epoch) keys held whose epoch has stream tag ``tag`` (version 4)."""
        keys = self._tags.get(tag)
        return [] if not keys else list(keys)

    def peek(self, stream_id: str) -> StreamState | None:
        return self._streams.get(stream_id)

    def note_seq(self, stream_id: str, seq: int) -> int:
        """Record ``seq``; returns how many seqs it skipped past the last one seen (a gap)."""
        st = self.stream(stream_id)
        gap = 0
        if st.last_seq is not None and seq > st.last_seq + 1:
            gap = seq - st.last_seq - 1
        if st.last_seq is None or seq > st.last_seq:
            st.last_seq = seq
        return gap

    def set_key(self, stream_id: str, seq: int, q: np.ndarray, bits: int) -> None:
        st = self.stream(stream_id)
        st.key_seq, st.ref, st.bits = seq, q.copy(), bits

    def add_ref(self, stream_id, ref: RefFrame) -> None:
        """Keep ``ref``; past REF_WINDOW frames, the lowest seq goes."""
        refs = self.stream(stream_id).refs
        old = refs.pop(ref.seq, None)
        if old is not None:
            self.ref_bytes -= _ref_bytes(old)
        refs[ref.seq] = ref
        self.ref_bytes += _ref_bytes(ref)
        while len(refs) > REF_WINDOW:
            self.ref_bytes -= _ref_bytes(refs.pop(min(refs)))
        if self.ref_bytes <= self.max_ref_bytes:
            return
        for st in list(self._streams.values()):  # least recently used first; this stream is last
            while self.ref_bytes > self.max_ref_bytes and st.refs and (st.refs is not refs or len(refs) > 1):
                self.ref_bytes -= _ref_bytes(st.refs.pop(min(st.refs)))
            if self.ref_bytes <= self.max_ref_bytes:
                break

    def get_ref(self, stream_id, seq: int) -> RefFrame | None:
        st = self.peek(stream_id)
        return None if st is None else st.refs.get(seq)

    def __len__(self) -> int:
        return len(self._streams)
