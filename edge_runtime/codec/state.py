"""Inter-frame state: what an encoder and a decoder remember per stream between messages.

The encoder keeps, per stream, the last key frame it coded (its seq, its symbols, its bits and how
many frames were coded against it); :meth:`EncoderState.forget` drops it, so the next tensor frame
is a key frame (the edge calls it when a key frame did not go out). The decoder keeps, per stream,
the last seq seen and the last key frame it decoded, for at most ``max_streams`` streams (LRU, so a
hostile sender inventing stream ids cannot grow it).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

__all__ = ["EncoderState", "DecoderState", "KeyRef", "StreamState"]


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

    def get(self, stream_id: str) -> KeyRef | None:
        return self._refs.get(stream_id)

    def set_key(self, stream_id: str, seq: int, q: np.ndarray, bits: int) -> None:
        self._refs[stream_id] = KeyRef(seq, q.copy(), bits)

    def forget(self, stream_id: str) -> None:
        self._refs.pop(stream_id, None)

    def __len__(self) -> int:
        return len(self._refs)


@dataclass
class StreamState:
    last_seq: int | None = None
    key_seq: int | None = None
    ref: np.ndarray | None = None
    bits: int = 0


class DecoderState:
    """Per-stream sequence and key frame state of a decoder, LRU-bounded to ``max_streams``."""

    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self._streams: collections.OrderedDict[str, StreamState] = collections.OrderedDict()

    def stream(self, stream_id: str) -> StreamState:
        st = self._streams.get(stream_id)
        if st is None:
            st = self._streams[stream_id] = StreamState()
            if len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(stream_id)
        return st

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

    def __len__(self) -> int:
        return len(self._streams)
