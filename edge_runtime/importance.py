"""Importance providers: which pixels matter, one 2-D float32 map per frame.

Registered by name in :data:`PROVIDERS` (``@register_provider``), built by :func:`make_provider`:

=================  =================================================================  ===========
name               map                                                                costs
=================  =================================================================  ===========
``grad_plain``     influence map from ``grad_plain.onnx`` (image, reference)          one graph
``grad_guided``    guided back-propagation                                            one graph
``grad_selective`` only the error of the reference / top class                       one graph
``grad_extsel``    several classes combined (top-1 minus top-2 by default)            one graph
``fused``          ``front.onnx``'s ``fused_attention`` output                        free
``abn``            ``attention.onnx``: features -> ``abn_map``                        tiny graph
``none``           no map: everything is kept                                         nothing
=================  =================================================================  ===========

A gradient graph's ``reference`` is a 1 x K row: all zeros means "the network's own top
prediction", computed inside the graph (no extra pass); a configured ``target`` class becomes a
one-hot row.

A provider's :meth:`Provider.compute` gets the preprocessed image ``x`` (1 x 3 x H x W) and
``front``, a callable that runs the front half once on ``x`` and caches it, so a provider that
reads front outputs costs nothing extra when the front half runs on the same image anyway.

:class:`TemporalReuse` wraps a provider: it computes a map every ``interval`` frames (sooner when
the scene moves more than ``motion_limit_px``) and carries it to the frames between, moved to
follow the scene by dense optical flow (OpenCV DIS or Farneback) or a global shift (phase
correlation) estimated at low resolution, always from the key frame to the current one (no drift
from chaining).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from edge_runtime.bundle import Bundle
from edge_runtime.config import ImportanceConfig
from edge_runtime.errors import BundleError, ConfigError
from edge_runtime.framing import resize_map, warp_map
from edge_runtime.warmup import kernels  # the compiled kernels, or their twins while they compile

__all__ = [
    "PROVIDERS",
    "register_provider",
    "make_provider",
    "Provider",
    "GradientProvider",
    "FusedProvider",
    "AbnProvider",
    "NoProvider",
    "TemporalReuse",
    "ImportanceResult",
    "MotionEstimator",
]

log = logging.getLogger(__name__)

FrontFn = Callable[[], dict[str, np.ndarray]]


@dataclass
class ImportanceResult:
    """``map``: 2-D float32 (None: keep everything); ``reused``: carried from an earlier frame;
    ``onnx_s``: seconds spent in ONNX sessions for it; ``motion_px``: estimated scene motion
    since the key frame (input pixels, 0 when fresh); ``empty``: a detection bundle found nothing
    in the frame (the edge sends the empty message)."""

    map: np.ndarray | None
    reused: bool = False
    onnx_s: float = 0.0
    motion_s: float = 0.0
    motion_px: float = 0.0
    empty: bool = False


class Provider:
    """Base: ``compute(x, front) -> ImportanceResult``; ``uses_front`` says it reads front outputs."""

    name = "provider"
    uses_front = False

    def compute(self, x: np.ndarray, front: FrontFn) -> ImportanceResult:
        raise NotImplementedError

    def compute_frame(self, rgb: np.ndarray, x: np.ndarray, front: FrontFn) -> ImportanceResult:
        """The map for frame ``rgb`` (model input size, RGB uint8); plain providers ignore ``rgb``."""
        return self.compute(x, front)


PROVIDERS: dict[str, Callable[[Bundle, ImportanceConfig], Provider]] = {}


def register_provider(*names: str):
    """Class decorator: register a provider factory ``cls(bundle, cfg, name)`` under ``names``."""

    def deco(cls):
        for n in names:
            if n in PROVIDERS:
                raise ValueError(f"provider {n!r} registered twice")
            PROVIDERS[n] = lambda bundle, cfg, _n=n, _cls=cls: _cls(bundle, cfg, _n)
        return cls

    return deco


def _check_graph(bundle: Bundle, graph: str, output: str, provider: str) -> None:
    if not bundle.has_graph(graph):
        raise BundleError(
            f"importance provider {provider!r} needs graph {graph!r}, which bundle {bundle.path} lacks; "
            f"it offers {sorted(bundle.importance)}"
        )
    if output not in bundle.graphs[graph]["outputs"]:
        raise BundleError(f"graph {graph!r} of bundle {bundle.path} has no output {output!r}")


@register_provider("grad_plain", "grad_guided", "grad_selective", "grad_extsel")
class GradientProvider(Provider):
    """Influence map from a gradient graph: (image, reference) -> influence (1 x 1 x H x W)."""

    def __init__(self, bundle: Bundle, cfg: ImportanceConfig, name: str) -> None:
        self.name = name
        self.bundle = bundle
        spec = bundle.importance.get(name, {"graph": name, "output": "influence"})
        self.graph, self.output = spec["graph"], spec["output"]
        _check_graph(bundle, self.graph, self.output, name)
        k = bundle.num_classes
        if cfg.target >= k:
            raise ConfigError(
                f"importance.target: class {cfg.target} does not exist; the model has {k} classes"
            )
        self.detect = bundle.task == "detect"
        if self.detect and cfg.target >= 0:
            raise ConfigError(
                f"importance.target = {cfg.target}: a detection bundle's gradient graphs take a list of "
                "reference boxes, not a class; leave importance.target at -1 (the own detections)"
            )
        self.reference = np.zeros(bundle.reference_shape(name), np.float32)
        if cfg.target >= 0:
            self.reference[0, cfg.target] = 1.0
        self.last_logits: np.ndarray | None = None
        self.last_boxes: np.ndarray | None = None

    def compute(self, x: np.ndarray, front: FrontFn) -> ImportanceResult:
        t0 = time.perf_counter()
        outs = self.bundle.run(self.graph, {self.bundle.input.name: x, "reference": self.reference})
        dt = time.perf_counter() - t0
        self.last_logits = outs.get("logits")
        empty = False
        if self.detect:  # nothing above the score threshold: nothing detected, the empty message
            self.last_boxes = outs.get("boxes")
            z = float(self.last_logits.max())
            empty = 1.0 / (1.0 + np.exp(-z)) <= self.bundle.detection.score_threshold
        return ImportanceResult(
            np.ascontiguousarray(outs[self.output][0, 0], np.float32), onnx_s=dt, empty=empty
        )


@register_provider("fused")
class FusedProvider(Provider):
    """The front graph's fused attention output: free when the front half runs on this image."""

    uses_front = True

    def __init__(self, bundle: Bundle, cfg: ImportanceConfig, name: str) -> None:
        self.name = name
        spec = bundle.importance.get("fused", {"graph": "front", "output": "fused_attention"})
        self.output = spec["output"]
        _check_graph(bundle, "front", self.output, name)
        # a detection bundle's front graph also says whether the frame holds any object
        self.presence = spec.get("presence")
        self.presence_threshold = 0.0
        if self.presence is not None:
            _check_graph(bundle, "front", self.presence, name)
            self.presence_threshold = bundle.detection.score_threshold
            obj = (bundle.manifest.get("detection") or {}).get("objectness") or {}
            self.presence_threshold = float(obj.get("threshold", self.presence_threshold))

    def compute(self, x: np.ndarray, front: FrontFn) -> ImportanceResult:
        out = front()
        empty = self.presence is not None and float(out[self.presence].max()) <= self.presence_threshold
        return ImportanceResult(np.ascontiguousarray(out[self.output][0, 0], np.float32), empty=empty)


@register_provider("abn")
class AbnProvider(Provider):
    """The ABN attention map M from ``attention.onnx`` (features -> abn_map)."""

    uses_front = True

    def __init__(self, bundle: Bundle, cfg: ImportanceConfig, name: str) -> None:
        self.name = name
        self.bundle = bundle
        spec = bundle.importance.get("abn", {"graph": "attention", "output": "abn_map"})
        self.graph, self.output = spec["graph"], spec["output"]
        _check_graph(bundle, self.graph, self.output, name)
        self.input = bundle.graphs[self.graph]["inputs"][0]

    def compute(self, x: np.ndarray, front: FrontFn) -> ImportanceResult:
        feats = front()[self.bundle.split_name]
        t0 = time.perf_counter()
        outs = self.bundle.run(self.graph, {self.input: feats}, [self.output])
        dt = time.perf_counter() - t0
        return ImportanceResult(np.ascontiguousarray(outs[self.output][0, 0], np.float32), onnx_s=dt)


@register_provider("none")
class NoProvider(Provider):
    """No importance map: every position is kept."""

    def __init__(self, bundle: Bundle, cfg: ImportanceConfig, name: str) -> None:
        self.name = name

    def compute(self, x: np.ndarray, front: FrontFn) -> ImportanceResult:
        return ImportanceResult(None)


class MotionEstimator:
    """Scene motion between two frames at low resolution (``size`` x ``size`` grey).

    ``method``: ``"dis"`` (DIS optical flow, ultra-fast preset), ``"farneback"``, ``"phase"``
    (one global shift by phase correlation) or ``"none"`` (no motion: the map stays put).
    """

    def __init__(self, method: str = "dis", size: int = 32) -> None:
        if method not in ("dis", "farneback", "phase", "none"):
            raise ValueError(f"motion method must be dis, farneback, phase or none, got {method!r}")
        self.method, self.size = method, size
        self._dis = None
        if method == "dis":
            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self._window = cv2.createHanningWindow((size, size), cv2.CV_32F) if method == "phase" else None

    def small(self, rgb: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return cv2.resize(grey, (self.size, self.size), interpolation=cv2.INTER_AREA)

    def flow(self, current: np.ndarray, key: np.ndarray) -> np.ndarray:
        """Backward flow (size x size x 2, grid pixels): ``current[y, x] ~ key[y + f[..., 1], x + f[..., 0]]``."""
        if self.method == "dis":
            return self._dis.calc(current, key, None)
        if self.method == "farneback":
            return cv2.calcOpticalFlowFarneback(current, key, None, 0.5, 2, 9, 2, 5, 1.1, 0)
        f = np.zeros((self.size, self.size, 2), np.float32)
        if self.method == "phase":
            (dx, dy), _ = cv2.phaseCorrelate(current.astype(np.float32), key.astype(np.float32), self._window)
            f[..., 0], f[..., 1] = dx, dy
        return f


class TemporalReuse(Provider):
    """Compute the wrapped provider's map every ``interval`` frames; warp it in between.

    With ``adaptive``, a frame whose median motion since the key frame exceeds ``motion_limit_px``
    (input pixels) gets a fresh map at once. ``input_size``: the model's input side, to scale the
    low-resolution motion to input pixels.
    """

    def __init__(
        self,
        inner: Provider,
        *,
        interval: int,
        adaptive: bool = True,
        motion: str = "dis",
        motion_size: int = 32,
        motion_limit_px: float = 12.0,
        input_size: int = 128,
    ) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        self.inner = inner
        self.name = f"{inner.name}+reuse{interval}"
        self.uses_front = inner.uses_front
        self.interval = interval
        self.adaptive = adaptive
        self.motion = MotionEstimator(motion, motion_size)
        self.limit = motion_limit_px
        self.scale = input_size / motion_size
        self._key_small: np.ndarray | None = None
        self._key_map: np.ndarray | None = None
        self._key_empty = False
        self._age = 0
        self.fresh = 0
        self.reused = 0
        self.early = 0  # fresh maps forced by motion before the interval ran out

    def reset(self) -> None:
        self._key_small = self._key_map = None

    def compute_frame(self, rgb: np.ndarray, x: np.ndarray, front: FrontFn) -> ImportanceResult:
        """Like :meth:`compute`, with the frame ``rgb`` (model input size) for motion estimation."""
        t0 = time.perf_counter()
        small = self.motion.small(rgb) if self.interval > 1 else None
        motion_s = time.perf_counter() - t0
        if self._key_map is not None and self._age < self.interval and small is not None:
            t0 = time.perf_counter()
            flow = self.motion.flow(small, self._key_small)
            mag = float(np.median(np.hypot(flow[..., 0], flow[..., 1]))) * self.scale
            if not (self.adaptive and mag > self.limit):
                warped = self._warp(self._key_map, flow)
                self._age += 1
                self.reused += 1
                return ImportanceResult(
                    warped, reused=True, motion_s=motion_s + time.perf_counter() - t0, motion_px=mag,
                    empty=self._key_empty,
                )  # fmt: skip
            self.early += 1
            motion_s += time.perf_counter() - t0
        res = self.inner.compute(x, front)
        self.fresh += 1
        self._key_small, self._key_map, self._age = small, res.map, 1
        self._key_empty = res.empty
        res.motion_s = motion_s
        return res

    def compute(self, x: np.ndarray, front: FrontFn) -> ImportanceResult:
        raise TypeError(
            "TemporalReuse needs the frame for motion estimation: call compute_frame(rgb, x, front)"
        )

    def _warp(self, m: np.ndarray | None, flow: np.ndarray) -> np.ndarray | None:
        if m is None:
            return None
        if self.motion.method == "none":
            return m
        h, w = m.shape
        g = flow.shape[0]
        if self.motion.method == "phase":
            dx, dy = float(flow[0, 0, 0]), float(flow[0, 0, 1])
            # backward flow (dx, dy) = the content moved by (-dy, -dx): shift_map moves content
            return kernels.shift_map(m, -dy * h / g, -dx * w / g)
        fx = resize_map(flow[..., 0], h, w) * np.float32(w / g)
        fy = resize_map(flow[..., 1], h, w) * np.float32(h / g)
        return warp_map(m, np.stack([fx, fy], -1))


def make_provider(bundle: Bundle, cfg: ImportanceConfig) -> Provider:
    """The provider ``cfg.provider`` names, wrapped in :class:`TemporalReuse` when
    ``cfg.reuse_interval`` > 1."""
    factory = PROVIDERS.get(cfg.provider)
    if factory is None:
        raise ConfigError(
            f"importance.provider: unknown provider {cfg.provider!r}; choose from {sorted(PROVIDERS)}"
        )
    inner = factory(bundle, cfg)
    if cfg.reuse_interval <= 1 or cfg.provider == "none":
        return inner
    return TemporalReuse(
        inner,
        interval=cfg.reuse_interval,
        adaptive=cfg.adaptive,
        motion=cfg.motion,
        motion_size=cfg.motion_size,
        motion_limit_px=cfg.motion_limit_px,
        input_size=bundle.input.size[0],
    )
