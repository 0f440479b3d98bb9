"""Edge configuration: one TOML file, one dataclass per section, checked on load.

Precedence, lowest first: the dataclass defaults, the TOML file, environment variables
``EDGE_RUNTIME__<SECTION>__<KEY>`` (values parsed as TOML literals where they parse, e.g.
``EDGE_RUNTIME__SENDER__ENDPOINTS='["tcp://10.0.0.2:5555"]'`` or ``EDGE_RUNTIME__QUANTIZE__BITS=6``;
a bare word is a string; a comma-separated value for a list key is split), then command-line
overrides ``section.key=value``. Unknown sections or keys, wrong types, out-of-range values and
missing files raise :class:`~edge_runtime.errors.ConfigError` naming the key, e.g.
``sender.sndhwm: must be an int >= 1, got 'x'``. :func:`to_toml` prints the effective config.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_runtime.errors import ConfigError

__all__ = [
    "Config",
    "RuntimeConfig",
    "SourceConfig",
    "ImportanceConfig",
    "ReduceConfig",
    "QuantizeConfig",
    "CodecConfig",
    "RateConfig",
    "SenderConfig",
    "DeliveryConfig",
    "MetricsConfig",
    "load_config",
    "config_from_dict",
    "temporal_enabled",
    "to_toml",
    "ENV_PREFIX",
]

ENV_PREFIX = "EDGE_RUNTIME__"


def _choice(*options: str) -> dict:
    return {"choices": options}


def _range(lo: float | None = None, hi: float | None = None) -> dict:
    return {"lo": lo, "hi": hi}


@dataclass
class RuntimeConfig:
    bundle: str = ""  # bundle folder; "" = the bundle shipped with the package
    stream_id: str = ""  # "" = this box's host name, so two boxes never share a stream by default
    threads: int = field(default=1, metadata=_range(0, 64))  # ONNX Runtime intra-op threads (0 = default)
    status_interval_s: float = field(default=10.0, metadata=_range(0.0))  # one-line status log; 0 = off
    warmup: bool = True  # compile kernels and run every graph once before READY


@dataclass
class SourceConfig:
    kind: str = field(default="scene", metadata=_choice("scene", "camera", "file", "url", "folder"))
    uri: str = ""  # camera index or /dev/videoN, file path, rtsp:// or http(s):// URL, image folder
    mode: str = field(default="latest", metadata=_choice("latest", "sequential"))
    loop: bool = True  # files and folders start again at the end
    fps: float = field(default=0.0, metadata=_range(0.0))  # pace reads (0 = as fast as the source gives)
    width: int = field(default=0, metadata=_range(0))  # camera capture size request (0 = driver default)
    height: int = field(default=0, metadata=_range(0))
    retry_initial_s: float = field(default=0.5, metadata=_range(0.0))
    retry_max_s: float = field(default=10.0, metadata=_range(0.0))
    # A frame whose aspect differs from the model input: letterbox (pad), crop (centre) or stretch
    # (distorts objects); the same in training, benchmarks and the edge (edge_runtime.framing).
    resize: str = field(default="letterbox", metadata=_choice("letterbox", "crop", "stretch"))
    seed: int = 0  # scene stream
    segment: int = field(default=60, metadata=_range(1))  # scene stream: frames per object


@dataclass
class ImportanceConfig:
    # Provider, keep ratio (reduce.value), bits and coder were chosen on the validation split
    # (benchmarks/rate_accuracy.py, summary "edge_defaults_selected_on_validation"): the cheapest
    # feature-zeroing setting whose accuracy interval stays within 0.5 pt of the float model, among
    # the providers without a gradient graph (those cost ~3 x the edge time per frame).
    provider: str = field(
        default="fused",
        metadata=_choice(
            "grad_plain", "grad_guided", "grad_selective", "grad_extsel", "fused", "abn", "none"
        ),
    )
    target: int = field(default=-1, metadata=_range(-1))  # gradient target class; -1 = own top prediction
    reuse_interval: int = field(default=1, metadata=_range(1, 1000))  # compute a map every N frames
    adaptive: bool = True  # recompute sooner when the scene moves more than motion_limit_px
    motion: str = field(default="dis", metadata=_choice("dis", "farneback", "phase", "none"))
    motion_size: int = field(default=32, metadata=_range(8, 1024))  # side of the motion estimate's grid
    motion_limit_px: float = field(default=12.0, metadata=_range(0.0))  # at input resolution


@dataclass
class ReduceConfig:
    domain: str = field(default="feature", metadata=_choice("feature", "image"))
    mode: str = field(default="zero", metadata=_choice("zero", "blur", "colour", "grey"))
    threshold: str = field(default="keep_ratio", metadata=_choice("keep_ratio", "value", "percentile"))
    # ratio (0..1), map value, or percentile; 0.3: chosen on validation (see ImportanceConfig)
    value: float = field(default=0.3, metadata=_range(0.0))
    normalize: bool = True  # divide the map by its maximum first; false: absolute map values
    dilate: int = field(default=0, metadata=_range(0, 64))  # grow the keep-mask by this many cells
    radius: int = field(default=2, metadata=_range(1, 64))  # blur radius
    levels: int = field(default=4, metadata=_range(2, 256))  # colour reduction levels


@dataclass
class QuantizeConfig:
    bits: int = field(default=2, metadata=_range(1, 8))  # chosen on validation (see ImportanceConfig)
    per_channel: bool = True
    clip_percentile: float = field(default=0.0, metadata=_range(0.0, 100.0))  # 0 = min/max range


@dataclass
class CodecConfig:
    # arith: chosen on validation; zstd costs ~40% more at the same setting (rate_accuracy.json)
    coder: str = field(default="arith", metadata=_choice("zstd", "arith", "raw"))
    level: int = field(default=3, metadata=_range(-7, 22))
    keyframe_interval: int = field(default=0, metadata=_range(0))
    # Temporal coding (wire format 3): each tensor predicted from the newest one the receiver
    # acknowledged. auto = on for video sources (scene, camera, file, url), off for an image folder
    # (independent stills gain nothing and pay the reference bookkeeping): README, rate_stream.json.
    temporal: str = field(default="auto", metadata=_choice("auto", "on", "off"))
    # Temporal: a channel keeps the reference's quantization step while its own step is within
    # [1 - param_hold, 1 + param_hold / 4] of it (unchanged features give unchanged symbols).
    param_hold: float = field(default=0.5, metadata=_range(0.0, 0.9))
    # Temporal: a kept position whose symbols differ from the prediction by at most this much (sum
    # over channels) keeps the prediction (lossy skip, bounded error; 0 = lossless).
    temporal_skip: int = field(default=2, metadata=_range(0, 255))
    # Temporal: positions the reference kept get this fraction of the map's range added before the
    # keep threshold (mask hysteresis; 0 = off).
    mask_hold: float = field(default=0.2, metadata=_range(0.0, 1.0))


@dataclass
class RateConfig:
    target_bytes: float = field(default=0.0, metadata=_range(0.0))  # per frame; 0 = off
    target_kbps: float = field(default=0.0, metadata=_range(0.0))  # kbit/s at the measured frame rate
    min_keep: float = field(default=0.02, metadata=_range(0.0, 1.0))
    max_keep: float = field(default=1.0, metadata=_range(0.0, 1.0))
    min_bits: int = field(default=2, metadata=_range(1, 8))
    max_bits: int = field(default=8, metadata=_range(1, 8))
    gain: float = field(default=0.7, metadata=_range(0.01, 2.0))
    # Temporal coding: the first frame after a scene cut (coded alone) is cut down to at most this
    # many bytes (0: 3 x the per-frame target); the budget is kept per second, not per frame.
    cut_max_bytes: float = field(default=0.0, metadata=_range(0.0))

    @property
    def enabled(self) -> bool:
        return self.target_bytes > 0 or self.target_kbps > 0


@dataclass
class SenderConfig:
    endpoints: list[str] = field(default_factory=lambda: ["tcp://127.0.0.1:5555"])
    # dealer: the receiver's acknowledgements come back on it (delivery.policy = reliable needs it)
    socket: str = field(default="dealer", metadata=_choice("push", "dealer"))
    client_secret_key: str = ""  # CURVE: this box's .key_secret; "" = no CURVE (trusted network only)
    server_public_key: str = ""  # CURVE: the receiver's .key
    sndhwm: int = field(default=8, metadata=_range(1))  # messages queued per receiver before dropping
    send_timeout_ms: int = field(default=0, metadata=_range(0))  # 0: never wait (NOBLOCK)
    linger_ms: int = field(default=500, metadata=_range(0))
    reconnect_ivl_ms: int = field(default=200, metadata=_range(1))
    reconnect_ivl_max_ms: int = field(default=5000, metadata=_range(0))
    heartbeat_ivl_ms: int = field(default=1000, metadata=_range(0))
    heartbeat_timeout_ms: int = field(default=3000, metadata=_range(0))
    handshake_ivl_ms: int = field(default=5000, metadata=_range(0))


@dataclass
class DeliveryConfig:
    # reliable: frames wait in a resend window until acknowledged; live: send once, freshest first
    policy: str = field(default="reliable", metadata=_choice("reliable", "live"))
    window_frames: int = field(default=256, metadata=_range(1, 1 << 20))  # unacknowledged frames kept
    window_s: float = field(default=30.0, metadata=_range(0.1))  # ... and for at most this long
    # at stop, wait this long for acks (keep it under the unit's TimeoutStopSec and WatchdogSec)
    drain_s: float = field(default=5.0, metadata=_range(0.0, 60.0))
    no_ack_warn_s: float = field(default=10.0, metadata=_range(0.5))  # then say why nothing gets through


@dataclass
class MetricsConfig:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = field(default=9108, metadata=_range(0, 65535))


@dataclass
class Config:
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    importance: ImportanceConfig = field(default_factory=ImportanceConfig)
    reduce: ReduceConfig = field(default_factory=ReduceConfig)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    rate: RateConfig = field(default_factory=RateConfig)
    sender: SenderConfig = field(default_factory=SenderConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


_SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)
}
_HINTS = {name: typing.get_type_hints(cls) for name, cls in _SECTIONS.items()}


def _check_value(key: str, hint: Any, value: Any, meta: Mapping) -> Any:
    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false, got {value!r}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be an integer, got {value!r}")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: must be a number, got {value!r}")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: must be a string, got {value!r}")
    elif origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list) or not all(isinstance(v, item) for v in value):
            raise ConfigError(f"{key}: must be a list of {item.__name__}, got {value!r}")
        value = list(value)
    else:  # pragma: no cover - a new field type without a check
        raise ConfigError(f"{key}: no type check for {hint!r}")
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{key}: must be one of {list(meta['choices'])}, got {value!r}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and value < lo:
        raise ConfigError(f"{key}: must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: must be <= {hi}, got {value!r}")
    return value


def _merge(cfg: Config, data: Mapping[str, Any], origin: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: the configuration must be a table of sections")
    for sec, values in data.items():
        if sec not in _SECTIONS:
            raise ConfigError(f"{origin}: unknown section [{sec}]; sections are {sorted(_SECTIONS)}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: [{sec}] must be a table, got {values!r}")
        obj = getattr(cfg, sec)
        fields = {f.name: f for f in dataclasses.fields(obj)}
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(f"{origin}: unknown key {sec}.{key}; [{sec}] takes {sorted(fields)}")
            setattr(obj, key, _check_value(f"{sec}.{key}", _HINTS[sec][key], value, fields[key].metadata))


def _parse_literal(hint: Any, text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if typing.get_origin(hint) is list:
            return [s.strip() for s in text.split(",") if s.strip()]
        return text


def _env_overrides(env: Mapping[str, str]) -> dict:
    out: dict[str, dict] = {}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2:
            raise ConfigError(f"environment {name}: use {ENV_PREFIX}<SECTION>__<KEY>")
        sec, key = parts
        hint = _HINTS.get(sec, {}).get(key, str)
        value = _parse_literal(hint, text)
        if hint is str and not isinstance(value, str):
            value = text  # e.g. stream_id=123 stays a string
        out.setdefault(sec, {})[key] = value
    return out


def _cli_overrides(items: list[str]) -> dict:
    out: dict[str, dict] = {}
    for item in items:
        name, sep, text = item.partition("=")
        sec, dot, key = name.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"override {item!r}: use section.key=value, e.g. quantize.bits=6")
        hint = _HINTS.get(sec, {}).get(key, str)
        value = _parse_literal(hint, text)
        if hint is str and not isinstance(value, str):
            value = text
        out.setdefault(sec, {})[key] = value
    return out


VIDEO_SOURCES = ("scene", "camera", "file", "url")


def temporal_enabled(cfg: Config) -> bool:
    """Whether the edge codes tensors temporally: ``codec.temporal`` on, or auto for a video source
    (not an image folder) with the arith coder and no key-frame interval."""
    c = cfg.codec
    if c.temporal == "auto":
        return cfg.source.kind in VIDEO_SOURCES and c.coder == "arith" and not c.keyframe_interval
    return c.temporal == "on"


def _check_whole(cfg: Config) -> None:
    r, q = cfg.rate, cfg.quantize
    if r.target_bytes > 0 and r.target_kbps > 0:
        raise ConfigError("rate.target_bytes and rate.target_kbps: set one of them, not both")
    if r.min_keep > r.max_keep:
        raise ConfigError(f"rate.min_keep ({r.min_keep}) must be <= rate.max_keep ({r.max_keep})")
    if r.min_bits > r.max_bits:
        raise ConfigError(f"rate.min_bits ({r.min_bits}) must be <= rate.max_bits ({r.max_bits})")
    if r.enabled and cfg.reduce.threshold != "keep_ratio":
        raise ConfigError(
            f"reduce.threshold: rate control adjusts the keep ratio, so it needs 'keep_ratio', got "
            f"{cfg.reduce.threshold!r}"
        )
    if r.enabled and cfg.importance.provider == "none":
        raise ConfigError("importance.provider: rate control needs an importance map, got 'none'")
    red = cfg.reduce
    if red.threshold == "keep_ratio" and red.value > 1.0:
        raise ConfigError(f"reduce.value: a keep ratio must be in 0..1, got {red.value}")
    if red.threshold == "percentile" and red.value > 100.0:
        raise ConfigError(f"reduce.value: a percentile must be in 0..100, got {red.value}")
    if red.domain == "feature" and red.mode not in ("zero", "blur"):
        raise ConfigError(f"reduce.mode: feature maps take 'zero' or 'blur', got {red.mode!r}")
    if q.clip_percentile and q.clip_percentile <= 50:
        raise ConfigError(
            f"quantize.clip_percentile: must be 0 (off) or in (50, 100], got {q.clip_percentile}"
        )
    c = cfg.codec
    if c.temporal == "on" and (c.coder != "arith" or c.keyframe_interval):
        raise ConfigError(
            "codec.temporal = 'on' needs codec.coder = 'arith' and codec.keyframe_interval = 0 (it "
            f"replaces key-frame deltas), got coder {c.coder!r}, keyframe_interval {c.keyframe_interval}"
        )
    if not cfg.sender.endpoints:
        raise ConfigError("sender.endpoints: at least one receiver endpoint is needed")
    s = cfg.sender
    if bool(s.client_secret_key) != bool(s.server_public_key):
        raise ConfigError(
            "sender.client_secret_key and sender.server_public_key: CURVE needs both (or neither)"
        )
    for key in ("client_secret_key", "server_public_key"):
        path = getattr(s, key)
        if path and not Path(path).is_file():
            raise ConfigError(f"sender.{key}: file {path} does not exist")
    if cfg.runtime.bundle and not Path(cfg.runtime.bundle).is_dir():
        raise ConfigError(f"runtime.bundle: folder {cfg.runtime.bundle} does not exist")
    src = cfg.source
    if src.kind in ("file", "folder") and not Path(src.uri).exists():
        raise ConfigError(f"source.uri: {src.kind} {src.uri!r} does not exist")
    if src.kind in ("camera", "url") and not src.uri:
        raise ConfigError(f"source.uri: a {src.kind} source needs a uri")
    if src.retry_initial_s > src.retry_max_s:
        raise ConfigError("source.retry_initial_s must be <= source.retry_max_s")
    if cfg.delivery.policy == "reliable" and s.socket != "dealer":
        raise ConfigError(
            "delivery.policy = 'reliable' needs sender.socket = 'dealer' (acknowledgements come back on "
            f"it), got {s.socket!r}; use delivery.policy = 'live' with 'push'"
        )


def config_from_dict(
    data: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: list[str] | None = None,
    origin: str = "<dict>",
) -> Config:
    """Defaults, then ``data``, then ``env`` overrides, then ``overrides``; checked as a whole."""
    cfg = Config()
    if data:
        _merge(cfg, data, origin)
    if env:
        _merge(cfg, _env_overrides(env), "environment")
    if overrides:
        _merge(cfg, _cli_overrides(overrides), "command line")
    _check_whole(cfg)
    return cfg


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: list[str] | None = None,
) -> Config:
    """Load ``path`` (None: defaults only) with ``env`` (default: ``os.environ``) and CLI overrides."""
    data: dict = {}
    origin = "<defaults>"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = tomllib.loads(p.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from e
        origin = str(p)
    return config_from_dict(data, env=os.environ if env is None else env, overrides=overrides, origin=origin)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def to_toml(cfg: Config) -> str:
    """The effective configuration as TOML (loads back into an equal :class:`Config`)."""
    lines: list[str] = []
    for sec in _SECTIONS:
        lines.append(f"[{sec}]")
        obj = getattr(cfg, sec)
        for f in dataclasses.fields(obj):
            lines.append(f"{f.name} = {_toml_value(getattr(obj, f.name))}")
        lines.append("")
    return "\n".join(lines)
