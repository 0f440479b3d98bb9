"""The edge pipeline: source -> importance -> reduce -> front half -> quantize -> encode -> send.

:class:`EdgePipeline` turns one captured frame into one wire message (pure computation, timed per
stage). :class:`EdgeLoop` drives it: takes the newest frame from a
:class:`~edge_runtime.sources.FrameFeed`, sends through a :class:`~edge_runtime.sender.Sender`,
keeps the metrics, the status log line and the systemd watchdog, and accounts for every frame::

    captured = delivered + dropped[stale, error, window_overflow, window_expired, shutdown]   (reliable)
    captured = sent + dropped[stale, error, backpressure, shutdown]                          (live)

(``stale``: overwritten in the grabber by a newer frame; ``error``: processing raised;
``backpressure``: under ``live``, the sender could not queue it; ``window_*``: under ``reliable``,
given up unacknowledged (:mod:`edge_runtime.delivery`); ``shutdown``: still waiting, in the
grabber or unacknowledged in the window, when the loop stopped and the drain ran out).
Delivered means acknowledged by a receiver, not queued in a socket.
"""

from __future__ import annotations

import functools
import logging
import socket
import threading
import time
from collections import Counter as _Tally
from dataclasses import dataclass, field

import numpy as np

from edge_runtime.bundle import Bundle
from edge_runtime.codec import Encoder, Frame, Tensor
from edge_runtime.config import Config, temporal_enabled, video_tools
from edge_runtime.delivery import DeliveryPolicy, ResendWindow, new_epoch
from edge_runtime.errors import ConfigError
from edge_runtime.framing import fit
from edge_runtime.importance import Provider, make_provider
from edge_runtime.metrics import Registry
from edge_runtime.ratecontrol import RateController
from edge_runtime.reduce import Reducer
from edge_runtime.sender import Sender
from edge_runtime.sources import Captured, FrameFeed
from edge_runtime.systemd import Notifier
from edge_runtime.warmup import kernels  # the compiled kernels, or their twins while they compile

__all__ = [
    "STAGES", "FrameOutcome", "EdgePipeline", "EdgeLoop", "EdgeMetrics", "LoopStats", "default_stream_id",
]  # fmt: skip

log = logging.getLogger(__name__)

#: Stages timed per frame, in pipeline order ("importance" is the provider's own work, ONNX included).
STAGES = ("preprocess", "importance", "motion", "mask", "reduce", "front", "quantize", "encode", "send")
#: Give up after this many frames in a row fail to process (a persistent bug, not a bad frame).
MAX_CONSECUTIVE_ERRORS = 25


def default_stream_id() -> str:
    """This box's host name (at most 64 UTF-8 bytes): unique per box, unlike a fixed "cam0"."""
    name = socket.gethostname() or "edge"
    while len(name.encode("utf-8")) > 64:
        name = name[:-1]
    return name


@dataclass
class FrameOutcome:
    """One processed frame: the ``message`` to send and what it took."""

    message: bytes
    empty: bool
    kept: float  # fraction of the domain's positions kept (1.0 without a map)
    bits: int
    reused: bool
    stages: dict[str, float]
    onnx_s: float  # of the stage times, the seconds inside ONNX Runtime sessions
    logits: np.ndarray | None = None  # the network's own logits where a stage computed them
    keyframe: bool = False  # the message is an inter-frame key frame (its loss forces a new one)
    predicted: bool = False  # temporal: coded against the last acknowledged frame
    cut: bool = False  # temporal: a reference was there but the frame was cheaper alone (scene cut)
    frame: Frame | None = None  # temporal: the coded frame of a predicted message


class EdgePipeline:
    """Frame -> message for one bundle and config. Not thread-safe (one per loop)."""

    def __init__(self, bundle: Bundle, cfg: Config, *, provider: Provider | None = None) -> None:
        self.bundle = bundle
        self.cfg = cfg
        self.provider = provider or make_provider(bundle, cfg.importance)
        self.input_hw = tuple(bundle.input.size)
        self.reducer = Reducer(cfg.reduce, image_hw=self.input_hw, feature_hw=tuple(bundle.split_shape[1:]))
        kw = {"level": cfg.codec.level} if cfg.codec.coder == "zstd" else {}
        self.temporal = temporal_enabled(cfg)  # coded against acknowledged references
        self.video = video_tools(cfg)  # lossy skip, parameter / mask hold, rates per second
        self.encoder = Encoder(
            bundle.model_id_bytes,
            coder=cfg.codec.coder,
            keyframe_interval=cfg.codec.keyframe_interval,
            temporal=self.temporal,
            skip_l1=cfg.codec.temporal_skip if self.video else 0,
            **kw,
        )
        self._plain: Encoder | None = None  # zstd, while the range coder compiles (see _encoder_now)
        self.plain_frames = 0  # frames coded by it
        self.rate: RateController | None = None
        if cfg.rate.enabled:
            self.rate = RateController(
                cfg.rate, keep=cfg.reduce.value, bits=cfg.quantize.bits, per_second=self.video
            )
        self.stream_id = cfg.runtime.stream_id or default_stream_id()
        self.epoch = new_epoch()  # new at every start: (stream, epoch, seq) names a frame
        self.resize = cfg.source.resize
        q = cfg.quantize
        self._clip = q.clip_percentile or None

    def _to_input(self, image: np.ndarray) -> np.ndarray:
        # The same geometry as training and the benchmarks (edge_runtime.framing, source.resize).
        return np.ascontiguousarray(fit(image, self.input_hw, self.resize))

    def process(self, frame: Captured, seq: int, base: int | None = None) -> FrameOutcome:
        """Run every stage on ``frame``; the message carries ``seq``, the window ``base`` (lowest
        seq still unacknowledged), the capture time and the source's frame index / timestamp."""
        kernels.poll()  # a background warm-up that has filled the cache swaps the compiled kernels in
        st = dict.fromkeys(STAGES, 0.0)
        onnx = 0.0
        b = self.bundle
        t0 = time.perf_counter()
        img = self._to_input(frame.image)
        x = b.preprocess(img)
        t1 = time.perf_counter()
        st["preprocess"] = t1 - t0

        cache: dict[str, dict] = {}
        front_s = [0.0]

        def front() -> dict[str, np.ndarray]:
            if "out" not in cache:
                f0 = time.perf_counter()
                cache["out"] = b.front(x)
                front_s[0] += time.perf_counter() - f0
            return cache["out"]

        imp = self.provider.compute_frame(img, x, front)
        t2 = time.perf_counter()
        st["motion"] = imp.motion_s
        st["importance"] = t2 - t1 - imp.motion_s - front_s[0]
        onnx += imp.onnx_s
        logits = getattr(self.provider, "last_logits", None) if not imp.reused else None

        keep_ratio, bits = None, self.cfg.quantize.bits
        if self.rate is not None:
            keep_ratio, bits = self.rate.keep, self.rate.bits
        had_ref = self.temporal and self.encoder.reference(self.stream_id) is not None
        msg, tensor, kept = self._code(frame, seq, base, img, x, b, imp, keep_ratio, bits, front, front_s, st)
        # a scene cut: coded alone, or with the reference's coder state only (nothing predicted)
        cut = had_ref and tensor is not None and (not self.encoder.last_predicted or self.encoder.last_carry)
        if cut and self.rate is not None and self.reducer.domain == "feature" and kept < 1.0:
            # the first frame after a cut: at most rate.cut_ceiling bytes (lower its keep ratio)
            for _ in range(3):
                if len(msg) <= self.rate.cut_ceiling:
                    break
                kr = max(self.rate.cfg.min_keep, 0.9 * kept * self.rate.cut_ceiling / len(msg))
                msg, tensor, kept = self._code(frame, seq, base, img, x, b, imp, kr, bits, front, front_s, st)
        st["front"] = front_s[0]
        onnx += front_s[0]
        if self.rate is not None:
            self.rate.update(len(msg), intra=cut)
        return FrameOutcome(
            msg, tensor is None, kept, bits, imp.reused, st, onnx, logits, self.encoder.last_keyframe,
            self.encoder.last_predicted, cut, self.encoder.last_frame,
        )  # fmt: skip

    def _code(self, frame, seq, base, img, x, b, imp, keep_ratio, bits, front, front_s, st):
        """mask -> reduce -> quantize -> encode at ``keep_ratio``: (message, tensor, kept fraction)."""
        t2 = time.perf_counter()
        prev, hold = None, 0.0
        if self.video and self.cfg.codec.mask_hold > 0:
            ref = self.encoder.reference(self.stream_id)
            prev, hold = (None if ref is None else ref.keep), self.cfg.codec.mask_hold
        if imp.empty:  # a detection bundle found nothing in the frame: the empty message
            keep = np.zeros(self.reducer.shape, bool)
        else:
            keep = self.reducer.keep_mask(imp.map, keep_ratio, prev=prev, hold=hold)
        t3 = time.perf_counter()
        st["mask"] += t3 - t2
        kept = 1.0 if keep is None else float(np.count_nonzero(keep)) / keep.size

        tensor = None
        if keep is None or kept > 0:
            if self.reducer.domain == "image" and keep is not None:
                r0 = time.perf_counter()
                x2 = b.preprocess(self.reducer.reduce_image(img, keep))
                r1 = time.perf_counter()
                feats = b.front(x2)[b.split_name][0]
                st["reduce"] += r1 - r0
                front_s[0] += time.perf_counter() - r1
                wire_keep = None
            else:
                feats = front()[b.split_name][0]
                r0 = time.perf_counter()
                feats = self.reducer.reduce_features(feats, keep)
                st["reduce"] += time.perf_counter() - r0
                wire_keep = keep if self.reducer.masks_wire else None
            q0 = time.perf_counter()
            feats = np.ascontiguousarray(feats, np.float32)
            q, scale, offset = kernels.quantize(
                feats,
                bits,
                per_channel=self.cfg.quantize.per_channel,
                clip_percentile=self._clip,
                mask=wire_keep,
            )
            if self.video:
                q, scale, offset = self._hold(feats, q, scale, offset, wire_keep, bits)
            tensor = Tensor(q, scale, offset, bits, wire_keep)
            st["quantize"] += time.perf_counter() - q0
        e0 = time.perf_counter()
        msg = self._encoder_now().encode(
            Frame(
                self.stream_id, seq, frame.time_ns, tensor, epoch=self.epoch, base=base,
                source_index=frame.index, source_time_us=getattr(frame, "source_time_us", None),
            )
        )  # fmt: skip
        st["encode"] += time.perf_counter() - e0
        return msg, tensor, kept

    def _encoder_now(self) -> Encoder:
        """The configured encoder; or, while a background warm-up compiles the kernels and the
        configured coder is the Numba range coder, a zstd one (version 2, no inter-frame state:
        the configured encoder's first frame afterwards is coded alone, as on any start)."""
        if kernels.compiled or self.encoder.coder != "arith":
            return self.encoder
        if self._plain is None:
            self._plain = Encoder(self.bundle.model_id_bytes, coder="zstd")
        self.plain_frames += 1
        return self._plain

    def _hold(self, feats, q, scale, offset, keep, bits):
        """Temporal coding: channels whose value range still fits the reference's quantization
        (``codec.param_hold``) are quantized with the reference's scale / offset, so features that
        did not change give the same symbols (and, when every channel holds, no scale / offset is
        sent). Returns (q, scale, offset)."""
        ref = self.encoder.reference(self.stream_id)
        if ref is None or ref.bits != bits or ref.q.shape != q.shape:
            return q, scale, offset
        C, L, h = q.shape[0], (1 << bits) - 1, self.cfg.codec.param_hold
        rs = np.broadcast_to(ref.scale, (C,)).astype(np.float32)
        ro = np.broadcast_to(ref.offset, (C,)).astype(np.float32)
        v = feats.reshape(C, -1) if keep is None else feats[:, keep]
        if v.shape[1] == 0:
            return q, scale, offset
        lo, hi = v.min(axis=1), v.max(axis=1)
        span = hi - lo
        hold = (lo >= ro - 0.5 * rs) & (hi <= ro + L * rs * (1 + h / 4))
        hold &= (span >= (1 - h) * L * rs) | (span == 0)
        if not hold.any():
            return q, scale, offset
        s = np.where(hold, rs, np.broadcast_to(scale, (C,))).astype(np.float32)
        o = np.where(hold, ro, np.broadcast_to(offset, (C,))).astype(np.float32)
        inv = (1.0 / s.astype(np.float64)).astype(np.float32)[:, None, None]
        qq = np.clip(np.floor((feats - o[:, None, None]) * inv + np.float32(0.5)), 0, L).astype(np.uint8)
        if keep is not None:
            qq[:, ~keep] = 0
        return np.where(hold[:, None, None], qq, q).astype(np.uint8), s, o


class EdgeMetrics:
    """The edge's Prometheus metrics, on one :class:`~edge_runtime.metrics.Registry`."""

    def __init__(self, registry: Registry | None = None) -> None:
        r = self.registry = registry or Registry()
        self.frames = r.counter(
            "edge_frames_total",
            "Frames by outcome (sent / dropped) and kind or drop reason",
            ["outcome", "reason"],
        )
        self.captured = r.counter("edge_frames_captured_total", "Frames read from the source")
        self.stage = r.histogram("edge_stage_seconds", "Time per pipeline stage per frame", ["stage"])
        self.frame_time = r.histogram("edge_frame_seconds", "Processing time per frame, all stages")
        self.bytes = r.counter("edge_bytes_sent_total", "Message bytes queued to the socket")
        self.delivered = r.counter("edge_frames_delivered_total", "Frames acknowledged by a receiver")
        self.resent = r.counter("edge_frames_resent_total", "Messages sent again (not acknowledged in time)")
        self.window = r.gauge("edge_window_frames", "Frames waiting for an acknowledgement")
        self.unacked_s = r.gauge("edge_unacknowledged_seconds", "Seconds without acknowledgement progress")
        self.kept = r.gauge("edge_kept_fraction", "Fraction of positions kept in the last frame")
        self.bits = r.gauge("edge_bits", "Quantization bits of the last frame")
        self.rate_error = r.gauge("edge_rate_error", "Last frame's (bytes - target) / target")
        self.rate_target = r.gauge("edge_rate_target_bytes", "Rate control target, bytes per frame")
        self.reopens = r.counter("edge_source_reopens_total", "Times the source was reopened")


@dataclass
class LoopStats:
    """What a run did; ``accounted()`` checks captured = sent + dropped."""

    captured: int = 0
    sent: int = 0  # frames given a seq: into the resend window (reliable) / queued once (live)
    delivered: int = 0  # acknowledged by a receiver
    reliable: bool = True
    resent: int = 0
    epoch: int = 0
    stream_id: str = ""
    window: dict = field(default_factory=dict)  # the resend window's own counters
    sent_empty: int = 0
    bytes: int = 0
    dropped: _Tally = field(default_factory=_Tally)
    seconds: float = 0.0
    stage_s: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    onnx_s: float = 0.0
    processed: int = 0
    kept_sum: float = 0.0

    def accounting_error(self) -> int:
        """Frames no outcome accounts for (0 when every frame is delivered / sent or dropped)."""
        done = self.delivered if self.reliable else self.sent
        return self.captured - done - sum(self.dropped.values())

    def accounted(self) -> bool:
        return self.accounting_error() == 0

    def as_dict(self) -> dict:
        n = max(self.processed, 1)
        busy = sum(self.stage_s.values())
        return {
            "captured": self.captured,
            "sent": self.sent,
            "delivered": self.delivered,
            "policy": "reliable" if self.reliable else "live",
            "resent": self.resent,
            "epoch": self.epoch,
            "stream_id": self.stream_id,
            "accounting_error": self.accounting_error(),
            "window": self.window,
            "sent_empty": self.sent_empty,
            "dropped": dict(self.dropped),
            "accounted": self.accounted(),
            "bytes": self.bytes,
            "seconds": self.seconds,
            "fps": self.processed / self.seconds if self.seconds else 0.0,
            "stage_ms": {k: 1000 * v / n for k, v in self.stage_s.items()},
            "outside_onnx_share": 1 - self.onnx_s / busy if busy else 0.0,
            "kept_mean": self.kept_sum / n,
        }


class EdgeLoop:
    """Drive :class:`EdgePipeline` from a feed to a sender until ``max_frames``, ``stop``, or the
    end of a source that does not loop; then drain the resend window (``delivery.drain_s``)."""

    def __init__(
        self,
        pipeline: EdgePipeline,
        feed: FrameFeed,
        sender: Sender,
        *,
        metrics: EdgeMetrics | None = None,
        notifier: Notifier | None = None,
        status_interval_s: float = 10.0,
        policy: DeliveryPolicy | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.feed = feed
        self.sender = sender
        self.metrics = metrics or EdgeMetrics()
        self.notifier = notifier or Notifier(env={})
        self.status_interval_s = status_interval_s
        d = pipeline.cfg.delivery
        self.policy = policy or DeliveryPolicy(
            d.policy, d.window_frames, d.window_s, d.drain_s, d.no_ack_warn_s
        )
        if self.policy.reliable and not getattr(sender, "acks_enabled", False):
            raise ConfigError(
                "delivery.policy = 'reliable' needs a sender that receives acknowledgements "
                "(sender.socket = 'dealer'); use delivery.policy = 'live' with 'push'"
            )
        give_up = None
        if pipeline.temporal:  # a frame given up must never become a temporal reference

            def give_up(seq: int) -> None:
                pipeline.encoder.discard(pipeline.stream_id, seq)

        self.window = ResendWindow(
            self.policy, sender.send, stream_id=pipeline.stream_id, epoch=pipeline.epoch, on_give_up=give_up
        )
        self.stats = LoopStats(
            reliable=self.policy.reliable, epoch=pipeline.epoch, stream_id=pipeline.stream_id
        )
        self._seen = {"stale": 0, "reopens": 0, "captured": 0}
        self._wseen = {"delivered": 0, "resent": 0, "dropped": _Tally()}
        self._last_warn = 0.0
        self._last_ack_seen = time.monotonic()
        self._acks_seen = 0

    def _sync_feed(self) -> None:
        """Copy the grabber's counters into the metrics (it counts in its own thread)."""
        m, f = self.metrics, self.feed
        for name, now in (("captured", f.captured), ("stale", f.stale), ("reopens", f.reopens)):
            d = now - self._seen[name]
            if d:
                self._seen[name] = now
                if name == "captured":
                    m.captured.inc(d)
                elif name == "stale":
                    m.frames.labels(outcome="dropped", reason="stale").inc(d)
                else:
                    m.reopens.inc(d)

    def _sync_window(self) -> None:
        m, w, seen = self.metrics, self.window.stats, self._wseen
        if w.delivered > seen["delivered"]:
            m.delivered.inc(w.delivered - seen["delivered"])
            m.frames.labels(outcome="delivered", reason="acknowledged").inc(w.delivered - seen["delivered"])
            seen["delivered"] = w.delivered
        if w.resent > seen["resent"]:
            m.resent.inc(w.resent - seen["resent"])
            seen["resent"] = w.resent
        for reason, n in w.dropped.items():
            d = n - seen["dropped"][reason]
            if d:
                m.frames.labels(outcome="dropped", reason=reason).inc(d)
                seen["dropped"][reason] = n
        m.window.set(len(self.window))
        m.unacked_s.set(self.window.unacked_for())

    def _drop(self, reason: str) -> None:
        self.stats.dropped[reason] += 1
        self.metrics.frames.labels(outcome="dropped", reason=reason).inc()

    def _pump(self) -> None:
        """Acknowledgements and reconnects in, due (re)sends out; says why when nothing is acked."""
        acks, reconnects = self.sender.poll()
        w, p = self.window, self.pipeline
        for a in acks:
            w.on_ack(*a)
            if p.temporal and a[0] == p.stream_id and a[1] == p.epoch:
                decoded = getattr(a, "decoded", None)
                if decoded is not None:  # a version-2 ack: this seq was decoded there, and is held
                    p.encoder.acknowledge(p.stream_id, decoded=decoded)
                # a version-1 ack (an older receiver, or one with worker processes) names no decoded
                # frame: nothing becomes a reference, frames are coded alone
        now = time.monotonic()
        if acks:
            self._acks_seen += len(acks)
            self._last_ack_seen = now
        if reconnects:
            w.on_reconnect()
            p.encoder.force_keyframe(p.stream_id)  # a new receiver may not hold our key frame
        w.service(now)
        if w.lost_keyframe:
            p.encoder.force_keyframe(p.stream_id)
            w.lost_keyframe = False
        waited = w.unacked_for(now) if self.policy.reliable else 0.0
        if not self.policy.reliable and self.sender.acks_enabled and w.stats.sent:
            waited = now - self._last_ack_seen
        warn = self.policy.no_ack_warn_s
        if waited >= warn and now - self._last_warn >= warn:
            self._last_warn = now
            log.warning(
                "no acknowledgement for %.0f s (%d frames waiting, %d given up so far): %s",
                waited, len(w), sum(w.stats.dropped.values()), self.sender.diagnosis(),
            )  # fmt: skip
        self._sync_window()

    def _status(self, since: float, frames_then: int, bytes_then: int) -> None:
        s, now = self.stats, time.monotonic()
        n = s.processed - frames_then
        fps = n / (now - since) if now > since else 0.0
        per = (s.bytes - bytes_then) / n if n else 0.0
        p = self.pipeline
        rate = ""
        if p.rate is not None:
            rate = f" | target {p.rate.target_bytes:.0f} B err {100 * p.rate.error['of_mean']:+.1f}%"
        dropped = s.dropped + self.window.stats.dropped + _Tally(stale=self.feed.stale)
        drops = " ".join(f"{k}={v}" for k, v in sorted(dropped.items()) if v)
        line = (
            f"frames {self.feed.captured} sent {s.sent} (empty {s.sent_empty}) delivered "
            f"{self.window.stats.delivered} waiting {len(self.window)} dropped [{drops or 'none'}] | "
            f"{fps:.1f} fps | {per:.0f} B/frame | kept {self.metrics.kept.value:.2f} bits {int(self.metrics.bits.value)}"
            + rate
        )
        log.info("%s", line)
        self.notifier.status(line)

    def drain(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` for the window's frames to be acknowledged (resending on
        reconnect); returns the frames still unacknowledged (counted ``shutdown`` afterwards)."""
        end = time.monotonic() + timeout_s
        while len(self.window) and time.monotonic() < end:
            # no watchdog pings here: the drain is bounded (delivery.drain_s, well under the unit's
            # WatchdogSec and TimeoutStopSec), and a notify socket nobody reads must not block us
            self._pump()
            if len(self.window):
                self.sender.wait(min(0.05, max(0.0, end - time.monotonic())))
        return len(self.window)

    def run(self, max_frames: int | None = None, stop: threading.Event | None = None) -> LoopStats:
        """Process frames until ``max_frames`` were taken, ``stop`` is set or the source ended (a
        file with ``loop = false``); then drain the window; closes the feed."""
        stop = stop or threading.Event()
        s, m, p = self.stats, self.metrics, self.pipeline
        seq = 0
        errors_in_row = 0
        t_start = last_status = time.monotonic()
        status_frames = status_bytes = 0
        last_frame_t: float | None = None
        self.feed.start()
        try:
            while not stop.is_set() and (max_frames is None or s.processed < max_frames):
                if self.notifier.watchdog_due():
                    self.notifier.watchdog()
                self._sync_feed()
                self._pump()
                now = time.monotonic()
                if self.status_interval_s and now - last_status >= self.status_interval_s:
                    self._status(last_status, status_frames, status_bytes)
                    last_status, status_frames, status_bytes = now, s.processed, s.bytes
                frame = self.feed.get(timeout=0.25)
                if frame is None:
                    if self.feed.ended:
                        log.info(
                            "source %s ended (loop = false): draining and stopping", self.feed.source.name
                        )
                        break
                    continue
                s.processed += 1
                if p.rate is not None and last_frame_t is not None:
                    p.rate.observe_interval(now - last_frame_t)
                last_frame_t = now
                try:
                    out = p.process(frame, seq, self.window.base(seq))
                except Exception:
                    errors_in_row += 1
                    log.exception("frame %d failed (%d in a row); dropped", seq, errors_in_row)
                    self._drop("error")
                    if errors_in_row >= MAX_CONSECUTIVE_ERRORS:
                        raise
                    continue
                errors_in_row = 0
                t0 = time.perf_counter()
                alone = None
                if out.frame is not None:
                    alone = functools.partial(p.encoder.encode_alone, out.frame)
                taken = self.window.submit(seq, out.message, out.keyframe, alone)
                out.stages["send"] = time.perf_counter() - t0
                for k, v in out.stages.items():
                    s.stage_s[k] += v
                    m.stage.labels(stage=k).observe(v)
                m.frame_time.observe(sum(out.stages.values()))
                s.onnx_s += out.onnx_s
                s.kept_sum += out.kept
                m.kept.set(out.kept)
                m.bits.set(out.bits)
                if p.rate is not None:
                    m.rate_error.set(p.rate.last_error)
                    m.rate_target.set(p.rate.target_bytes)
                if self.window.lost_keyframe:
                    p.encoder.force_keyframe(p.stream_id)
                    self.window.lost_keyframe = False
                if not taken:  # live: refused by the socket, counted by the window; seq reused
                    continue
                seq += 1
                s.sent += 1
                s.bytes += len(out.message)
                m.bytes.inc(len(out.message))
                kind = "empty" if out.empty else "tensor"
                s.sent_empty += out.empty
                m.frames.labels(outcome="sent", reason=kind).inc()
            self.feed.close()  # stop capturing: the drain only waits for acknowledgements
            if self.policy.reliable and len(self.window):
                left = self.drain(self.policy.drain_s)
                if left:
                    log.warning(
                        "%d frames still unacknowledged after the %.1f s drain: counted as dropped "
                        "[shutdown] (%s)", left, self.policy.drain_s, self.sender.diagnosis(),
                    )  # fmt: skip
        finally:
            s.seconds = time.monotonic() - t_start
            self.feed.close()
            self._sync_feed()
            self.window.drop_all("shutdown")
            self._sync_window()
            s.captured = self.feed.captured
            s.dropped["stale"] += self.feed.stale
            s.dropped.update(self.window.stats.dropped)
            s.delivered = self.window.stats.delivered
            s.resent = self.window.stats.resent
            s.window = self.window.stats.as_dict()
            if self.feed.discarded:
                s.dropped["shutdown"] += self.feed.discarded
                m.frames.labels(outcome="dropped", reason="shutdown").inc(self.feed.discarded)
            s.dropped = +s.dropped
        if not s.accounted():
            log.error("frame accounting is off: %s", s.as_dict())
        return s
