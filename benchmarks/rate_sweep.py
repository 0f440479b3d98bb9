"""The settings of the rate-accuracy benchmark and how one setting is measured on a set of frames.

A :class:`Setting` is one point of the sweep; :func:`measure` runs it on frames of one split and
returns a :class:`Measured`: bytes and correctness *per frame* (so that intervals can be paired
over frames), mean edge milliseconds, and the split it was measured on. Selection and statistics
live in :mod:`benchmarks.rate_select`; the frame codecs and their fine-tuned models in
:mod:`benchmarks.rate_baselines`.

Families (``Setting.family``):

* ``quant``: the unreduced split tensor quantized at 8 bits and at each of the masked settings' bit
  depths, each coder (no map: the control that isolates quantization);
* ``masked``: importance provider x reduction x keep ratio x bits, through :class:`EdgePipeline`;
* ``random``: feature zeroing by a random map at the same keep ratios (the control that isolates
  what the importance map buys);
* ``rate``: the pipeline's rate controller at several byte targets;
* ``float16``: the unreduced split tensor as float16 (zstd);
* ``jpeg`` / ``webp`` / ``avif`` / ``png`` (and ``*_fair``): the frame codecs, measured in
  :mod:`benchmarks.rate_baselines`.

Bytes are whole messages (header, scale / offset, keep-mask, payload, CRC) as the edge sends them.
Accuracy: the receiver's path (``Decoder`` -> dequantize -> ``back.onnx``). Edge time: the stages
of :meth:`EdgePipeline.process`; the importance map and the front half on the unreduced frame are
computed once per frame and provider and their measured time is added to each setting using them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edge_runtime.bundle import Bundle
from edge_runtime.codec import Decoder, Encoder, Frame, Tensor
from edge_runtime.config import config_from_dict
from edge_runtime.importance import ImportanceResult, Provider, make_provider
from edge_runtime.pipeline import EdgePipeline
from edge_runtime.sources import Captured

__all__ = ["Setting", "Measured", "Frames", "FrameCache", "build_grid", "measure", "has_provider"]

PROVIDERS = ("grad_plain", "grad_guided", "grad_selective", "grad_extsel", "fused", "abn")
RANDOM_SEED = 20261202  # the random map's seed (fixed, so reruns send the same masks)


@dataclass
class Setting:
    """One point of the sweep: ``family`` groups kinds; ``mode`` is a curve (the unit selection
    picks one setting of); ``config``: the EdgePipeline sections of a pipeline setting."""

    family: str
    mode: str
    params: dict
    config: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.mode + "".join(f" {k}={v}" for k, v in self.params.items())


@dataclass
class Measured:
    """A setting measured on ``n`` frames of ``split``: bytes (n,) and correct (n,) per frame."""

    setting: Setting
    split: str
    bytes: np.ndarray
    correct: np.ndarray
    edge_ms: float = float("nan")
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.setting.name

    @property
    def mean_bytes(self) -> float:
        return float(np.mean(self.bytes))

    @property
    def top1(self) -> float:
        return float(np.mean(self.correct))

    def row(self) -> dict:
        """The JSON row (means only; per-frame arrays stay in memory)."""
        s = self.setting
        return {
            "family": s.family,
            "mode": s.mode,
            "params": s.params,
            "split": self.split,
            "n": int(len(self.correct)),
            "bytes": self.mean_bytes,
            "bytes_p90": float(np.percentile(self.bytes, 90)),
            "top1": self.top1,
            "edge_ms": None if np.isnan(self.edge_ms) else float(self.edge_ms),
            **self.extra,
        }


@dataclass(frozen=True)
class Frames:
    """Frames at the model's input size, their labels, and the split they come from."""

    images: np.ndarray
    labels: np.ndarray
    split: str


def has_provider(bundle: Bundle, name: str) -> bool:
    if name.startswith("grad_"):
        return bundle.has_graph(name)
    if name == "abn":
        return bundle.has_graph("attention")
    return name in bundle.importance


def _pipeline(provider: str, keep: float, bits: int, coder: str, domain="feature", mode="zero") -> dict:
    return {
        "importance": {"provider": provider},
        "reduce": {"domain": domain, "mode": mode, "value": keep},
        "quantize": {"bits": bits},
        "codec": {"coder": coder},
    }


def build_grid(
    bundle: Bundle,
    *,
    providers: tuple[str, ...] = PROVIDERS,
    keeps: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7),
    bits: tuple[int, ...] = (2, 3, 4, 6),
    random_keeps: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 1.0),
    image_keeps: tuple[float, ...] = (0.2, 0.5),
    rate_targets: tuple[int, ...] = (150, 250, 400),
    coder: str = "arith",
) -> list[Setting]:
    """Every pipeline setting the bundle supports (the frame codecs come from rate_baselines)."""
    grid = [Setting("float16", "float16", {})]
    # quantization alone at every bit depth the masked settings use (and 8): with 3 missing, the
    # control passed only at 4 bits and the map's saving looked larger than it is
    for c in ("zstd", "arith"):
        for b in sorted({8, *bits}, reverse=True):
            cfg = {"importance": {"provider": "none"}, "quantize": {"bits": b}, "codec": {"coder": c}}
            grid.append(Setting("quant", f"quant/{c}", {"bits": b}, cfg))
    have = [p for p in providers if has_provider(bundle, p)]
    for p in have:
        for b in bits:
            for k in keeps:
                grid.append(
                    Setting("masked", f"{p}/feature/zero", {"keep": k, "bits": b}, _pipeline(p, k, b, coder))
                )
        for domain, red in (("feature", "blur"), ("image", "blur"), ("image", "grey")):
            for k in image_keeps:
                grid.append(
                    Setting(
                        "masked",
                        f"{p}/{domain}/{red}",
                        {"keep": k, "bits": 4},
                        _pipeline(p, k, 4, coder, domain, red),
                    )
                )
    # the other coder with the last provider, so that each coder is compared masked and unmasked
    other = "zstd" if coder == "arith" else "arith"
    for p in have[-1:]:
        for b in bits:
            for k in keeps:
                grid.append(
                    Setting(
                        "masked",
                        f"{p}/feature/zero/{other}",
                        {"keep": k, "bits": b},
                        _pipeline(p, k, b, other),
                    )
                )
    for b in bits:
        for k in random_keeps:
            grid.append(
                Setting(
                    "random", "random/feature/zero", {"keep": k, "bits": b}, _pipeline("random", k, b, coder)
                )
            )
    rate_provider = "fused" if "fused" in have else (have[0] if have else None)
    if rate_provider:
        for t in rate_targets:
            cfg = _pipeline(rate_provider, 0.3, 2, coder)
            # start at 2 bits: the controller moves the keep ratio first, the bit depth at its bounds
            cfg["rate"] = {"target_bytes": float(t)}
            grid.append(Setting("rate", f"rate/{rate_provider}/feature/zero", {"target": t}, cfg))
    return grid


# ---------------------------------------------------------------- per-frame caches


class FrameCache:
    """Front outputs on the unreduced frames, each importance map, and their measured times."""

    def __init__(self, bundle: Bundle, frames: Frames) -> None:
        self.bundle, self.frames = bundle, frames
        self.images = frames.images
        self.x = [bundle.preprocess(im) for im in self.images]
        self.front: list[dict] = []
        self.front_s = np.zeros(len(self.images))
        for i, x in enumerate(self.x):
            t0 = time.perf_counter()
            self.front.append(bundle.front(x))
            self.front_s[i] = time.perf_counter() - t0
        self.maps: dict[str, tuple[list, np.ndarray]] = {}

    def importance(self, name: str) -> tuple[list, np.ndarray]:
        """Maps of provider ``name`` for every frame and the provider's own seconds per frame;
        ``random``: i.i.d. uniform maps at the split resolution, seeded by frame index."""
        if name not in self.maps:
            n = len(self.images)
            if name == "random":
                h, w = self.bundle.split_shape[1:]
                maps = [np.random.default_rng([RANDOM_SEED, i]).random((h, w), np.float32) for i in range(n)]
                self.maps[name] = (maps, np.zeros(n))
                return self.maps[name]
            prov = make_provider(
                self.bundle, config_from_dict({"importance": {"provider": name}}, env={}).importance
            )
            maps, secs = [], np.zeros(n)
            for i, (im, x) in enumerate(zip(self.images, self.x, strict=True)):
                t0 = time.perf_counter()
                r = prov.compute_frame(im, x, lambda i=i: self.front[i])
                secs[i] = time.perf_counter() - t0
                maps.append(r.map)
            self.maps[name] = (maps, secs)
        return self.maps[name]


class _Replay(Provider):
    """Hands the pipeline the cached map of the frame being processed."""

    def __init__(self, maps: list, name: str) -> None:
        self.maps, self.name, self.index = maps, name, 0

    def compute(self, x, front) -> ImportanceResult:
        return ImportanceResult(self.maps[self.index])


class _CachedFront:
    """A bundle whose ``front`` returns the cached outputs for the current unreduced frame (the
    pipeline's own call on a reduced image still runs); ``hits`` counts cached calls."""

    def __init__(self, bundle: Bundle, cache: FrameCache) -> None:
        self._b, self._c = bundle, cache
        self.index, self.hits = 0, 0

    def __getattr__(self, name):
        return getattr(self._b, name)

    def preprocess(self, images):
        if images is self._c.images[self.index]:
            return self._c.x[self.index]
        return self._b.preprocess(images)

    def front(self, x):
        if x is self._c.x[self.index]:
            self.hits += 1
            return self._c.front[self.index]
        return self._b.front(x)


# ---------------------------------------------------------------- measuring one setting


def decode_logits(bundle: Bundle, messages: list[bytes]) -> np.ndarray:
    """The receiver's path: decode, dequantize, back half (an empty frame: all-zero features)."""
    dec = Decoder(model_ids=[bundle.model_id_bytes])
    c, h, w = bundle.split_shape
    feats = np.zeros((len(messages), c, h, w), np.float32)
    for i, m in enumerate(messages):
        t = dec.decode(m).tensor
        if t is not None:
            feats[i] = t.dequantize()
    return np.concatenate([bundle.back(feats[i : i + 256]) for i in range(0, len(feats), 256)])


def _float16(bundle: Bundle, cache: FrameCache) -> tuple[list[bytes], np.ndarray, dict]:
    enc = Encoder(bundle.model_id_bytes, coder="zstd")
    msgs, secs = [], np.zeros(len(cache.front))
    for i, out in enumerate(cache.front):
        t0 = time.perf_counter()
        f = out[bundle.split_name][0].astype(np.float16)
        msgs.append(enc.encode(Frame("cam0", i, 0, Tensor(f))))
        secs[i] = time.perf_counter() - t0 + cache.front_s[i]
    return msgs, secs, {}


def _pipeline_run(bundle: Bundle, cache: FrameCache, s: Setting) -> tuple[list[bytes], np.ndarray, dict]:
    cfg_dict = s.config
    pname = cfg_dict["importance"]["provider"]
    if pname == "random":  # a pipeline needs a real provider name; the replay hands it the maps
        cfg_dict = {**cfg_dict, "importance": {"provider": "fused"}}
    cfg = config_from_dict(cfg_dict, env={})
    maps, prov_s = cache.importance(pname) if pname != "none" else ([None] * len(cache.images), None)
    proxy, replay = _CachedFront(bundle, cache), _Replay(maps, pname)
    pipe = EdgePipeline(proxy, cfg, provider=replay)
    msgs, secs, kept, bits = [], np.zeros(len(cache.images)), [], []
    for i, im in enumerate(cache.images):
        proxy.index = replay.index = i
        hits = proxy.hits
        t0 = time.perf_counter()
        out = pipe.process(Captured(im, i, 0), i)
        dt = time.perf_counter() - t0
        if proxy.hits > hits:  # the front half on the unreduced frame ran from the cache
            dt += cache.front_s[i]
        if prov_s is not None:
            dt += prov_s[i]
        msgs.append(out.message)
        secs[i] = dt
        kept.append(out.kept)
        bits.append(out.bits)
    return msgs, secs, {"kept_mean": float(np.mean(kept)), "bits_mean": float(np.mean(bits))}


def measure(bundle: Bundle, cache: FrameCache, s: Setting) -> Measured:
    """Run the pipeline setting ``s`` on every frame of ``cache``."""
    if s.family == "float16":
        msgs, secs, extra = _float16(bundle, cache)
    else:
        msgs, secs, extra = _pipeline_run(bundle, cache, s)
    logits = decode_logits(bundle, msgs)
    extra["coder"] = s.config.get("codec", {}).get("coder", "zstd")
    return Measured(
        s,
        cache.frames.split,
        np.array([len(m) for m in msgs], np.float64),
        logits.argmax(1) == cache.frames.labels,
        1000 * float(np.mean(secs)),
        extra,
    )
