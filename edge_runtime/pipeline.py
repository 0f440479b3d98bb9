"""The edge pipeline: source -> importance -> reduce -> front half -> quantize -> encode -> send.

:class:`EdgePipeline` turns one captured frame into one wire message (pure computation, timed per
stage). :class:`EdgeLoop` drives it: takes the newest frame from a
:class:`~edge_runtime.sources.FrameFeed`, sends through a :class:`~edge_runtime.sender.Sender`,
keeps the metrics, the status log line and the systemd watchdog, and accounts for every frame::

    captured = sent + dropped[stale] + dropped[backpressure] + dropped[error] + dropped[shutdown]

(``stale``: overwritten in the grabber by a newer frame; ``backpressure``: the sender could not
queue it; ``error``: processing raised; ``shutdown``: still waiting when the loop stopped).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as _Tally
from dataclasses import dataclass, field

import numpy as np

import kernels
from edge_runtime.bundle import Bundle
from edge_runtime.codec import Encoder, Frame, Tensor
from edge_runtime.config import Config
from edge_runtime.framing import fit
from edge_runtime.importance import Provider, make_provider
from edge_runtime.metrics import Registry
from edge_runtime.ratecontrol import RateController
from edge_runtime.reduce import Reducer
from edge_runtime.sender import Sender
from edge_runtime.sources import Captured, FrameFeed
from edge_runtime.systemd import Notifier

__all__ = ["STAGES", "FrameOutcome", "EdgePipeline", "EdgeLoop", "EdgeMetrics", "LoopStats"]

log = logging.getLogger(__name__)

#: Stages timed per frame, in pipeline order ("importance" is the provider's own work, ONNX included).
STAGES = ("preprocess", "importance", "motion", "mask", "reduce", "front", "quantize", "encode", "send")
#: Give up after this many frames in a row fail to process (a persistent bug, not a bad frame).
MAX_CONSECUTIVE_ERRORS = 25


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


class EdgePipeline:
    """Frame -> message for one bundle and config. Not thread-safe (one per loop)."""

    def __init__(self, bundle: Bundle, cfg: Config, *, provider: Provider | None = None) -> None:
        self.bundle = bundle
        self.cfg = cfg
        self.provider = provider or make_provider(bundle, cfg.importance)
        self.input_hw = tuple(bundle.input.size)
        self.reducer = Reducer(cfg.reduce, image_hw=self.input_hw, feature_hw=tuple(bundle.split_shape[1:]))
        kw = {"level": cfg.codec.level} if cfg.codec.coder == "zstd" else {}
        self.encoder = Encoder(
            bundle.model_id_bytes, coder=cfg.codec.coder, keyframe_interval=cfg.codec.keyframe_interval, **kw
        )
        self.rate: RateController | None = None
        if cfg.rate.enabled:
            self.rate = RateController(cfg.rate, keep=cfg.reduce.value, bits=cfg.quantize.bits)
        self.stream_id = cfg.runtime.stream_id
        self.resize = cfg.source.resize
        q = cfg.quantize
        self._clip = q.clip_percentile or None

    def _to_input(self, image: np.ndarray) -> np.ndarray:
        # The same geometry as training and the benchmarks (edge_runtime.framing, source.resize).
        return np.ascontiguousarray(fit(image, self.input_hw, self.resize))

    def process(self, frame: Captured, seq: int) -> FrameOutcome:
        """Run every stage on ``frame``; the message carries ``seq`` and the capture time."""
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
        keep = self.reducer.keep_mask(imp.map, keep_ratio)
        t3 = time.perf_counter()
        st["mask"] = t3 - t2
        kept = 1.0 if keep is None else float(np.count_nonzero(keep)) / keep.size

        tensor = None
        if keep is None or kept > 0:
            if self.reducer.domain == "image" and keep is not None:
                r0 = time.perf_counter()
                x2 = b.preprocess(self.reducer.reduce_image(img, keep))
                r1 = time.perf_counter()
                feats = b.front(x2)[b.split_name][0]
                st["reduce"] = r1 - r0
                front_s[0] += time.perf_counter() - r1
                wire_keep = None
            else:
                feats = front()[b.split_name][0]
                r0 = time.perf_counter()
                feats = self.reducer.reduce_features(feats, keep)
                st["reduce"] = time.perf_counter() - r0
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
            tensor = Tensor(q, scale, offset, bits, wire_keep)
            st["quantize"] = time.perf_counter() - q0
        st["front"] = front_s[0]
        onnx += front_s[0]
        e0 = time.perf_counter()
        msg = self.encoder.encode(Frame(self.stream_id, seq, frame.time_ns, tensor))
        st["encode"] = time.perf_counter() - e0
        if self.rate is not None:
            self.rate.update(len(msg))
        return FrameOutcome(msg, tensor is None, kept, bits, imp.reused, st, onnx, logits)


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
        self.kept = r.gauge("edge_kept_fraction", "Fraction of positions kept in the last frame")
        self.bits = r.gauge("edge_bits", "Quantization bits of the last frame")
        self.rate_error = r.gauge("edge_rate_error", "Last frame's (bytes - target) / target")
        self.rate_target = r.gauge("edge_rate_target_bytes", "Rate control target, bytes per frame")
        self.reopens = r.counter("edge_source_reopens_total", "Times the source was reopened")


@dataclass
class LoopStats:
    """What a run did; ``accounted()`` checks captured = sent + dropped."""

    captured: int = 0
    sent: int = 0
    sent_empty: int = 0
    bytes: int = 0
    dropped: _Tally = field(default_factory=_Tally)
    seconds: float = 0.0
    stage_s: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    onnx_s: float = 0.0
    processed: int = 0
    kept_sum: float = 0.0

    def accounted(self) -> bool:
        return self.captured == self.sent + sum(self.dropped.values())

    def as_dict(self) -> dict:
        n = max(self.processed, 1)
        busy = sum(self.stage_s.values())
        return {
            "captured": self.captured,
            "sent": self.sent,
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
    """Drive :class:`EdgePipeline` from a feed to a sender until ``max_frames`` or ``stop``."""

    def __init__(
        self,
        pipeline: EdgePipeline,
        feed: FrameFeed,
        sender: Sender,
        *,
        metrics: EdgeMetrics | None = None,
        notifier: Notifier | None = None,
        status_interval_s: float = 10.0,
    ) -> None:
        self.pipeline = pipeline
        self.feed = feed
        self.sender = sender
        self.metrics = metrics or EdgeMetrics()
        self.notifier = notifier or Notifier(env={})
        self.status_interval_s = status_interval_s
        self.stats = LoopStats()
        self._seen = {"stale": 0, "reopens": 0, "captured": 0}

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

    def _drop(self, reason: str) -> None:
        self.stats.dropped[reason] += 1
        self.metrics.frames.labels(outcome="dropped", reason=reason).inc()

    def _status(self, since: float, frames_then: int, bytes_then: int) -> None:
        s, now = self.stats, time.monotonic()
        n = s.processed - frames_then
        fps = n / (now - since) if now > since else 0.0
        per = (s.bytes - bytes_then) / n if n else 0.0
        p = self.pipeline
        rate = ""
        if p.rate is not None:
            rate = f" | target {p.rate.target_bytes:.0f} B err {100 * p.rate.error['of_mean']:+.1f}%"
        drops = " ".join(
            f"{k}={v}" for k, v in sorted((s.dropped + _Tally(stale=self.feed.stale)).items()) if v
        )
        line = (
            f"frames {self.feed.captured} sent {s.sent} (empty {s.sent_empty}) dropped [{drops or 'none'}] | "
            f"{fps:.1f} fps | {per:.0f} B/frame | kept {self.metrics.kept.value:.2f} bits {int(self.metrics.bits.value)}"
            + rate
        )
        log.info("%s", line)
        self.notifier.status(line)

    def run(self, max_frames: int | None = None, stop: threading.Event | None = None) -> LoopStats:
        """Process frames until ``max_frames`` were taken or ``stop`` is set; closes the feed."""
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
                now = time.monotonic()
                if self.status_interval_s and now - last_status >= self.status_interval_s:
                    self._status(last_status, status_frames, status_bytes)
                    last_status, status_frames, status_bytes = now, s.processed, s.bytes
                frame = self.feed.get(timeout=0.25)
                if frame is None:
                    continue
                s.processed += 1
                if p.rate is not None and last_frame_t is not None:
                    p.rate.observe_interval(now - last_frame_t)
                last_frame_t = now
                try:
                    out = p.process(frame, seq)
                except Exception:
                    errors_in_row += 1
                    log.exception("frame %d failed (%d in a row); dropped", seq, errors_in_row)
                    self._drop("error")
                    if errors_in_row >= MAX_CONSECUTIVE_ERRORS:
                        raise
                    continue
                errors_in_row = 0
                seq += 1
                t0 = time.perf_counter()
                reason = self.sender.send(out.message)
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
                if reason is not None:
                    self._drop(reason)
                    continue
                s.sent += 1
                s.bytes += len(out.message)
                m.bytes.inc(len(out.message))
                kind = "empty" if out.empty else "tensor"
                s.sent_empty += out.empty
                m.frames.labels(outcome="sent", reason=kind).inc()
        finally:
            s.seconds = time.monotonic() - t_start
            self.feed.close()
            self._sync_feed()
            s.captured = self.feed.captured
            s.dropped["stale"] += self.feed.stale
            if self.feed.discarded:
                s.dropped["shutdown"] += self.feed.discarded
                m.frames.labels(outcome="dropped", reason="shutdown").inc(self.feed.discarded)
        if not s.accounted():
            log.error("frame accounting is off: %s", s.as_dict())
        return s
