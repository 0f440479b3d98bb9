"""Stream ids bound to CURVE keys: one enrolled box cannot write into another box's stream.

With CURVE, ZeroMQ hands every message the authenticated client's public key (the ZAP
``User-Id``, :func:`edge_runtime.transport.start_authenticator`). :class:`Identity` decides, per
message, whether that key may use the stream id the message claims:

- the key must still be enrolled (a key removed from the allow folder is refused at once,
  reason ``revoked``, even on a connection that was admitted before);
- a stream named in the allow folder's ``streams.toml`` belongs to that key name only;
- any other stream belongs to the first key that used it (bindings kept for ``max_streams``).

A refused message is a :class:`~edge_runtime.receiver.engine.Reject` with reason ``identity``
(or ``revoked``), counted per stream like every other reject. Without CURVE there is no
identity to check and every message passes (the receiver warns at start that it is open).
"""

from __future__ import annotations

import collections
import logging
import threading

from edge_runtime.transport import AllowList

__all__ = ["Identity"]

log = logging.getLogger(__name__)


class Identity:
    def __init__(self, allow: AllowList | None, *, max_streams: int = 4096) -> None:
        self.allow = allow
        self.max_streams = max_streams
        self.bindings: collections.OrderedDict[str, str] = collections.OrderedDict()  # stream -> z85 key
        self._lock = threading.Lock()

    def check(self, stream_id: str, peer: str | None) -> tuple[str, str] | None:
        """``None`` if ``peer`` (Z85 public key) may send ``stream_id``, else ``(reason, detail)``."""
        if self.allow is None:
            return None
        self.allow.refresh()
        if not peer:
            return "identity", "message without an authenticated key on a CURVE socket"
        name = self.allow.name_of(peer)
        if name is None:
            return "revoked", f"key {peer[:8]}... is no longer enrolled in {self.allow.folder}"
        owner = self.allow.streams.get(stream_id)
        if owner is not None:
            if owner != name:
                return (
                    "identity",
                    f"stream {stream_id!r} belongs to key {owner!r} (streams.toml), not {name!r}",
                )
            return None
        with self._lock:
            bound = self.bindings.get(stream_id)
            if bound is None:
                self.bindings[stream_id] = peer
                if len(self.bindings) > self.max_streams:
                    self.bindings.popitem(last=False)
                log.info("stream %r bound to key %r", stream_id, name)
                return None
            self.bindings.move_to_end(stream_id)
        if bound != peer and self.allow.name_of(bound) is None:
            with self._lock:  # the key it was bound to was revoked: the stream may move on
                self.bindings[stream_id] = peer
            log.info("stream %r re-bound to key %r (its old key was revoked)", stream_id, name)
            return None
        if bound != peer:
            other = self.allow.name_of(bound) or f"{bound[:8]}... (revoked)"
            return "identity", f"stream {stream_id!r} is bound to key {other!r}; key {name!r} may not use it"
        return None
