"""The receiver's core, one per process: decode -> check -> batch across streams -> back half.

:class:`Engine` owns a hardened :class:`~edge_runtime.codec.Decoder` for every model it serves
(a registry by 8-byte model id) and one pending batch per model. Messages from all streams go
into the same batch, which runs when it holds ``max_batch`` frames or its oldest frame has waited
``max_wait_s``. While a batch runs, new messages queue in ZeroMQ, so the next batch is larger on
its own: that is the dynamic part.

Every message fed in comes out as exactly one event through ``emit``: a :class:`Result` (also
for empty frames: class ``None``, "nothing important") or a :class:`Reject` with a reason
(``DecodeError.reason``, ``"shape"`` or ``"framing"``, or ``"inference"``). Accounting is built
on that one-to-one rule (see :mod:`edge_runtime.receiver.results`).
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from edge_runtime.bundle import Bundle
from edge_runtime.codec import Decoder, Frame, Limits
from edge_runtime.codec.decoder import peek_stream_id as _peek
from edge_runtime.detection import FrameGeometry, postprocess
from edge_runtime.errors import ConfigError, DecodeError
from edge_runtime.receiver.identity import Identity
from edge_runtime.receiver.ledger import Ledger

__all__ = ["Engine", "Result", "Reject", "RateLimitedLog", "limits_for", "softmax"]

log = logging.getLogger(__name__)

UNKNOWN_STREAM = "<unknown>"


@dataclass(frozen=True)
class Result:
    """What the receiver concluded about one frame; ``cls`` is ``None`` for an empty frame."""

    stream_id: str
    seq: int
    capture_time_ns: int
    latency_ms: float  # result time minus capture time (wall clocks of edge and receiver)
    model_id: str  # hex, 16 characters
    cls: int | None
    label: str | None
    scores: list[float] | None  # softmax of the logits
    batch: int = 0  # size of the batch this frame ran in (0: empty frame, no back half)
    worker: int = 0
    epoch: int = 0  # the edge's boot epoch: (stream, epoch, seq) names the frame
    index: int = 0  # the frame's index in its source (video frame number)
    source_time_us: int | None = None  # the source's timestamp (video position), if known
    base: int = 0  # the edge's window base when it sent the frame (for the ledger of a parent)
    # detection bundles: ``detections`` = dicts {class, label, score, box [x0, y0, x1, y1]} (None:
    # an empty message, nothing sent), boxes in frame pixels when the stream's frame size is known
    # (``coords`` "frame", the letterbox undone), else in model-input pixels ("input")
    task: str = "classify"
    detections: tuple | None = None
    coords: str | None = None
    frame_size: tuple[int, int] | None = None  # (height, width) the boxes refer to

    @property
    def empty(self) -> bool:
        """The frame was an empty message (no tensor: nothing important / nothing detected)."""
        return self.cls is None and self.detections is None

    def to_dict(self) -> dict:
        if self.task == "detect":
            return self._base_dict() | {
                "detections": None if self.detections is None else list(self.detections),
                "coords": self.coords,
                "frame_size": None if self.frame_size is None else list(self.frame_size),
            }
        return self._base_dict()

    def _base_dict(self) -> dict:
        return {
            "stream": self.stream_id,
            "epoch": self.epoch,
            "seq": self.seq,
            "index": self.index,
            "source_time_us": self.source_time_us,
            "capture_ns": self.capture_time_ns,
            "latency_ms": round(self.latency_ms, 3),
            "model": self.model_id,
            "class": self.cls,
            "label": self.label,
            "scores": self.scores,
            "batch": self.batch,
            "worker": self.worker,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        return cls(
            d["stream"], d["seq"], d["capture_ns"], d["latency_ms"], d["model"], d["class"],
            d["label"], d["scores"], d.get("batch", 0), d.get("worker", 0), d.get("epoch", 0),
            d.get("index", 0), d.get("source_time_us"), d.get("base", 0),
            "detect" if "detections" in d else "classify",
            None if d.get("detections") is None else tuple(d["detections"]), d.get("coords"),
            None if d.get("frame_size") is None else tuple(d["frame_size"]),
        )  # fmt: skip


@dataclass(frozen=True)
class Reject:
    """A message that was dropped. ``stream_id`` is read from the header when it parses."""

    stream_id: str
    reason: str
    detail: str = ""


class RateLimitedLog:
    """At most one log line per key every ``interval_s``; the next line says how many were held back,
    so hostile traffic cannot flood the log but nothing goes unmentioned."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0, max_keys: int = 256) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[str, list] = {}  # key -> [last time, suppressed count]

    def log(self, level: int, key: str, msg: str, *args) -> bool:
        now = time.monotonic()
        st = self._last.get(key)
        if st is None:
            if len(self._last) >= self.max_keys:
                key = "<other>"  # keys come from the wire; keep the table bounded
                st = self._last.get(key)
            if st is None:
                st = self._last[key] = [-float("inf"), 0]
        if now - st[0] < self.interval_s:
            st[1] += 1
            return False
        held = st[1]
        st[0], st[1] = now, 0
        if held:
            msg += " (%d similar messages held back in the last %.0f s)"
            args = (*args, held, self.interval_s)
        self.logger.log(level, msg, *args)
        return True


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def limits_for(bundles: Iterable[Bundle], max_streams: int = 1024) -> Limits:
    """Decoder limits no larger than the largest split tensor served: nothing bigger is ever allocated."""
    shapes = [b.split_shape for b in bundles]
    c = max(s[0] for s in shapes)
    h = max(s[1] for s in shapes)
    w = max(s[2] for s in shapes)
    elements = max(int(np.prod(s)) for s in shapes)
    # float32 raw payload + per-channel scale/offset + headers; anything longer is not ours
    return Limits(
        max_message_bytes=4 * elements + 8 * c + 4096,
        max_elements=elements,
        max_channels=c,
        max_height=h,
        max_width=w,
        max_streams=max_streams,
    )


def peek_stream_id(buf: bytes, max_len: int = 64) -> str:
    """The stream id named in a message's header, best effort, for accounting a rejected message."""
    sid = _peek(buf, max_len)
    return UNKNOWN_STREAM if sid is None else sid


@dataclass
class _Pending:
    frames: list[Frame] = field(default_factory=list)
    inputs: list[np.ndarray] = field(default_factory=list)
    first_ns: int = 0  # monotonic arrival of the oldest frame


@dataclass
class _Slot:
    """Remote back half: one frame's place in its stream's order, filled when its request ends."""

    frame: Frame
    bundle: Bundle
    ready: bool = False
    scores: np.ndarray | None = None
    batch: int = 0
    error: str | None = None
    detections: list | None = None  # detection bundles: after NMS


class Engine:
    """Decode, batch and run the back half for the bundles in ``bundles``.

    Parameters
    ----------
    bundles:
        The models served; their 8-byte model ids must differ.
    emit:
        Called with every :class:`Result` and :class:`Reject`, in the engine's thread.
    max_batch, max_wait_s:
        A batch runs when it holds ``max_batch`` frames or its oldest frame has waited ``max_wait_s``.
    parts:
        Frames per ZeroMQ message: 1 from a PULL socket, 2 from a ROUTER socket (identity, payload).
    ledger, identity:
        Duplicate / acknowledgement state (:mod:`.ledger`) and the stream-to-key binding
        (:mod:`.identity`); ``None`` in worker processes, where the parent keeps them.
    backend:
        ``None``: the back half runs here. A :class:`~edge_runtime.receiver.cluster.RayBackend`
        (cluster mode): each batch is one request to it, and :meth:`collect` emits the results of
        finished requests in arrival order per stream (a frame waits for its stream's older ones).
    geometry:
        Detection bundles: the camera frame size per stream (:class:`FrameGeometry`), so that
        boxes are given in frame pixels with the letterbox undone.
    """

    def __init__(
        self,
        bundles: Iterable[Bundle],
        emit: Callable[[Result | Reject], None],
        *,
        max_batch: int = 16,
        max_wait_s: float = 0.005,
        parts: int = 1,
        max_streams: int = 1024,
        worker: int = 0,
        ledger: Ledger | None = None,
        identity: Identity | None = None,
        backend=None,
        geometry: FrameGeometry | None = None,
    ) -> None:
        self.ledger = ledger
        self.geometry = geometry or FrameGeometry()
        self.backend = backend
        self._order: dict[str, collections.deque[_Slot]] = {}  # remote back half: per stream
        self.identity = identity
        self.bundles: dict[bytes, Bundle] = {}
        for b in bundles:
            if b.model_id_bytes in self.bundles:
                raise ConfigError(
                    f"bundles {self.bundles[b.model_id_bytes].path} and {b.path} have the same model id "
                    f"{b.model_id[:16]}; give each model once"
                )
            self.bundles[b.model_id_bytes] = b
        if not self.bundles:
            raise ConfigError("the receiver needs at least one bundle (--bundle)")
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch must be an int >= 1, got {max_batch!r}")
        if not max_wait_s >= 0:
            raise ConfigError(f"max_wait must be >= 0 s, got {max_wait_s!r}")
        if parts not in (1, 2):
            raise ConfigError(f"parts must be 1 (PULL) or 2 (ROUTER), got {parts!r}")
        self.emit = emit
        self.max_batch = max_batch
        self.max_wait_ns = int(max_wait_s * 1e9)
        self.parts = parts
        self.worker = worker
        self.limits = limits_for(self.bundles.values(), max_streams)
        self.decoder = Decoder(model_ids=list(self.bundles), limits=self.limits)
        self._pending: dict[bytes, _Pending] = {m: _Pending() for m in self.bundles}
        self._rlog = RateLimitedLog(log)
        # time spent, for benchmarks and metrics: decode+dequantize vs back half
        self.decode_s = 0.0
        self.back_s = 0.0
        self.batches = 0

    # -- input ---------------------------------------------------------

    def feed(self, parts: list[bytes], peer: str | None = None) -> None:
        """One ZeroMQ message (its frames) and its authenticated key (``User-Id``); emits a Reject
        or queues the frame (empty: emits a Result)."""
        t0 = time.perf_counter()
        if len(parts) != self.parts:
            self._reject(UNKNOWN_STREAM, "framing", f"{len(parts)} message parts, expected {self.parts}")
            return
        buf = parts[-1]
        checked = self.identity is not None and self.identity.allow is not None
        sid = None
        if checked:  # before decoding, so that a refused message changes no stream's state
            sid = self.decoder.stream_id_of(buf)  # None: the message cannot decode either
            refused = None if sid is None else self.identity.check(sid, peer)
            if refused is not None:
                self._reject(sid, *refused)
                return
        try:
            frame = self.decoder.decode(buf)
        except DecodeError as e:
            f = getattr(e, "frame", None)
            if f is not None and self.ledger is not None and self.ledger.duplicate(*f):
                # a late copy of a frame answered already (an old connection's kernel buffer
                # delivered after a reconnect): its reference is gone, but it is a duplicate
                self.emit(Reject(f[0], "duplicate", f"seq {f[2]} of epoch {f[1]:016x} again"))
                return
            sid = self.decoder.stream_id_of(buf)
            self._reject(UNKNOWN_STREAM if sid is None else sid, e.reason, str(e))
            return
        if checked and sid is None:
            refused = self.identity.check(frame.stream_id, peer)
            if refused is not None:
                self._reject(frame.stream_id, *refused)
                return
        route = parts[0] if self.parts == 2 else None
        if self.ledger is not None and not self.ledger.claim(
            frame.stream_id, frame.epoch, frame.seq, frame.window_base, route
        ):
            self.emit(
                Reject(frame.stream_id, "duplicate", f"seq {frame.seq} of epoch {frame.epoch:016x} again")
            )
            return
        bundle = self.bundles[frame.model_id]
        if frame.tensor is None:
            if self.backend is None:
                self._emit_result(frame, bundle, None, 0)
            else:  # after the stream's frames still at the back half
                self._queue_slot(frame, bundle).ready = True
                self._drain(frame.stream_id)
            return
        if frame.tensor.data.shape != bundle.split_shape:
            if self.ledger is not None:
                self.ledger.release(frame.stream_id, frame.epoch, frame.seq)
            self._reject(
                frame.stream_id,
                "shape",
                f"tensor shape {frame.tensor.data.shape} is not the split shape {bundle.split_shape} "
                f"of model {bundle.model_name} ({bundle.model_id[:16]})",
            )
            return
        x = frame.tensor.dequantize()
        pend = self._pending[frame.model_id]
        if not pend.frames:
            pend.first_ns = time.monotonic_ns()
        pend.frames.append(frame if self.backend is None else self._queue_slot(frame, bundle))
        pend.inputs.append(x)
        self.decode_s += time.perf_counter() - t0
        if len(pend.frames) >= self.max_batch:
            self._run(frame.model_id)

    def _reject(self, stream_id: str, reason: str, detail: str) -> None:
        self._rlog.log(
            logging.WARNING, reason, "rejected a message from stream %r: %s: %s", stream_id, reason, detail
        )
        self.emit(Reject(stream_id, reason, detail))

    # -- batches -------------------------------------------------------

    def pending(self) -> int:
        return sum(len(p.frames) for p in self._pending.values())

    def time_to_due(self) -> float | None:
        """Seconds until the oldest pending batch is due (0: now); ``None`` when nothing waits."""
        firsts = [p.first_ns for p in self._pending.values() if p.frames]
        if not firsts:
            return None
        return max(0.0, (min(firsts) + self.max_wait_ns - time.monotonic_ns()) / 1e9)

    def flush(self, force: bool = False) -> int:
        """Run every batch that is due (all of them with ``force``); returns the frames run."""
        now = time.monotonic_ns()
        n = 0
        for m, p in self._pending.items():
            if p.frames and (force or now - p.first_ns >= self.max_wait_ns):
                n += len(p.frames)
                self._run(m)
        return n

    def _run(self, model_id: bytes) -> None:
        pend = self._pending[model_id]
        frames, inputs = pend.frames, pend.inputs
        self._pending[model_id] = _Pending()
        bundle = self.bundles[model_id]
        if self.backend is not None:
            self.backend.submit(frames, model_id, np.stack(inputs))
            self.batches += 1
            return
        t0 = time.perf_counter()
        try:
            if bundle.task == "detect":
                logits, boxes = bundle.detect(np.stack(inputs))
            else:
                logits = bundle.back(np.stack(inputs))
        except Exception as e:  # onnxruntime raises its own types; account every frame, keep serving
            self._rlog.log(logging.ERROR, "inference", "back half of %s failed on a batch of %d: %s",
                           bundle.model_name, len(frames), e)  # fmt: skip
            for f in frames:
                if self.ledger is not None:
                    self.ledger.release(f.stream_id, f.epoch, f.seq)
                self.emit(Reject(f.stream_id, "inference", str(e)))
            return
        self.back_s += time.perf_counter() - t0
        self.batches += 1
        if bundle.task == "detect":  # NMS here, at the receiver, per frame
            for f, lo, bo in zip(frames, logits, boxes, strict=True):
                self._emit_result(f, bundle, None, len(frames), postprocess(lo, bo, bundle.detection))
            return
        scores = softmax(logits.astype(np.float64))
        for f, s in zip(frames, scores, strict=True):
            self._emit_result(f, bundle, s, len(frames))

    # -- remote back half (cluster mode) -------------------------------

    def _queue_slot(self, frame: Frame, bundle: Bundle) -> _Slot:
        slot = _Slot(frame, bundle)
        q = self._order.get(frame.stream_id)
        if q is None:
            q = self._order[frame.stream_id] = collections.deque()
        q.append(slot)
        return slot

    def _drain(self, stream_id: str) -> None:
        q = self._order.get(stream_id)
        while q and q[0].ready:
            s = q.popleft()
            if s.error is None:
                self._emit_result(s.frame, s.bundle, s.scores, s.batch, s.detections)
            else:
                if self.ledger is not None:
                    self.ledger.release(s.frame.stream_id, s.frame.epoch, s.frame.seq)
                self.emit(Reject(s.frame.stream_id, "inference", s.error))
        if q is not None and not q:
            del self._order[stream_id]

    def waiting(self) -> int:
        """Frames handed to the remote back half (or behind one) whose result is not out yet."""
        return sum(len(q) for q in self._order.values())

    def collect(self) -> int:
        """Fill in the frames of the backend's finished requests and emit what is now in order;
        returns the requests collected."""
        done = self.backend.completed()
        streams: set[str] = set()
        for d in done:
            slots: list[_Slot] = d.token
            if d.error is not None:
                self._rlog.log(logging.ERROR, "inference", "back half on the cluster failed on a batch of %d "
                               "after %d tries: %s", len(slots), d.tries, d.error)  # fmt: skip
                scores = [None] * len(slots)
            elif slots[0].bundle.task == "detect":  # one request, one model; NMS here, as in-process
                logits, boxes = d.logits
                for s, lo, bo in zip(slots, logits, boxes, strict=True):
                    s.detections = postprocess(lo, bo, s.bundle.detection)
                scores = [None] * len(slots)
            else:
                scores = softmax(d.logits.astype(np.float64))
            for s, sc in zip(slots, scores, strict=True):
                s.ready, s.scores, s.batch, s.error = True, sc, len(slots), d.error
                streams.add(s.frame.stream_id)
        for sid in streams:
            self._drain(sid)
        return len(done)

    def _emit_result(
        self, frame: Frame, bundle: Bundle, scores: np.ndarray | None, batch: int, detections=None
    ) -> None:
        latency_ms = (time.time_ns() - frame.capture_time_ns) / 1e6
        if bundle.task == "detect":
            self._emit_detections(frame, bundle, detections, batch, latency_ms)
            return
        if scores is None:
            cls = label = sc = None
        else:
            cls = int(scores.argmax())
            label = bundle.classes[cls]
            sc = [round(float(v), 6) for v in scores]
        self.emit(
            Result(frame.stream_id, frame.seq, frame.capture_time_ns, latency_ms, bundle.model_id[:16],
                   cls, label, sc, batch, self.worker, frame.epoch, frame.source_index,
                   frame.source_time_us, frame.window_base)
        )  # fmt: skip

    def _emit_detections(self, frame: Frame, bundle: Bundle, dets, batch: int, latency_ms: float) -> None:
        """A detection result: boxes mapped to the stream's frame pixels where its size is known."""
        hw = self.geometry.frame_hw(frame.stream_id)
        coords, size = ("frame", hw) if hw is not None else ("input", tuple(bundle.input.size))
        out = None
        if dets is not None:
            out = tuple(
                self.geometry.to_frame(dets, frame.stream_id, tuple(bundle.input.size), bundle.classes)
            )
        self.emit(
            Result(frame.stream_id, frame.seq, frame.capture_time_ns, latency_ms, bundle.model_id[:16],
                   None, None, None, batch, self.worker, frame.epoch, frame.source_index,
                   frame.source_time_us, frame.window_base, "detect", out, coords, size)
        )  # fmt: skip
