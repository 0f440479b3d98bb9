"""Edge configuration: one TOML file, one ``msgspec.Struct`` per section, checked on load.

Precedence, lowest first: the struct defaults, the TOML file, environment variables
``EDGE_RUNTIME__<SECTION>__<KEY>`` (values parsed as TOML literals where they parse, e.g.
``EDGE_RUNTIME__SENDER__ENDPOINTS='["tcp://10.0.0.2:5555"]'`` or ``EDGE_RUNTIME__QUANTIZE__BITS=6``;
a bare word is a string; a comma-separated value for a list key is split), then command-line
overrides ``section.key=value``. Types, ranges (``msgspec.Meta``) and choices (``Literal``) are
checked by ``msgspec.convert``; unknown sections or keys, wrong types, out-of-range values and
missing files raise :class:`~edge_runtime.errors.ConfigError` naming where the value came from, the
key, the value and what is allowed, e.g.
``command line: sender.sndhwm: must be an integer >= 1, got 'x'``. Checks that involve more than one
key are plain code in :func:`_check_whole`. :func:`to_toml` prints the effective config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect as mi
from msgspec import Meta

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
    "video_tools",
    "to_toml",
    "ENV_PREFIX",
]

ENV_PREFIX = "EDGE_RUNTIME__"


class RuntimeConfig(msgspec.Struct, forbid_unknown_fields=True):
    bundle: str = ""  # bundle folder; "" = the bundle shipped with the package
    stream_id: str = ""  # "" = this box's host name, so two boxes never share a stream by default
    threads: Annotated[int, Meta(ge=0, le=64)] = 1  # ONNX Runtime intra-op threads (0 = default)
    status_interval_s: Annotated[float, Meta(ge=0.0)] = 10.0  # one-line status log; 0 = off
    warmup: bool = True  # run each graph once; kernels compile in the background


class SourceConfig(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["scene", "camera", "file", "url", "folder"] = "scene"
    uri: str = ""  # camera index or /dev/videoN, file path, rtsp:// or http(s):// URL, image folder
    mode: Literal["latest", "sequential"] = "latest"
    loop: bool = True  # files and folders start again at the end
    fps: Annotated[float, Meta(ge=0.0)] = 0.0  # pace reads (0 = as fast as the source gives)
    width: Annotated[int, Meta(ge=0)] = 0  # camera capture size request (0 = driver default)
    height: Annotated[int, Meta(ge=0)] = 0
    retry_initial_s: Annotated[float, Meta(ge=0.0)] = 0.5
    retry_max_s: Annotated[float, Meta(ge=0.0)] = 10.0
    # A frame whose aspect differs from the model input: letterbox (pad), crop (centre) or stretch
    # (distorts objects); the same in training, benchmarks and the edge (edge_runtime.framing).
    resize: Literal["letterbox", "crop", "stretch"] = "letterbox"
    seed: int = 0  # scene stream
    segment: Annotated[int, Meta(ge=1)] = 60  # scene stream: frames per object


class ImportanceConfig(msgspec.Struct, forbid_unknown_fields=True):
    # Provider, keep ratio (reduce.value), bits and coder were chosen on the validation split
    # (benchmarks/rate_accuracy.py, summary "edge_defaults_selected_on_validation"): the cheapest
    # feature-zeroing setting whose accuracy interval stays within 0.5 pt of the float model, among
    # the providers without a gradient graph (those cost ~3 x the edge time per frame): the ABN map
    # at keep 0.3, 3 bits on the default bundle f19429081268 (5000 validation frames; 4 bits on
    # the previous bundle). auto = abn where the bundle has an attention branch, else the fused
    # layer attention (importance.resolve_provider).
    provider: Literal[
        "auto", "grad_plain", "grad_guided", "grad_selective", "grad_extsel", "fused", "abn", "none"
    ] = "auto"
    target: Annotated[int, Meta(ge=-1)] = -1  # gradient target class; -1 = own top prediction
    reuse_interval: Annotated[int, Meta(ge=1, le=1000)] = 1  # compute a map every N frames
    adaptive: bool = True  # recompute sooner when the scene moves more than motion_limit_px
    motion: Literal["dis", "farneback", "phase", "none"] = "dis"
    motion_size: Annotated[int, Meta(ge=8, le=1024)] = 32  # side of the motion estimate's grid
    motion_limit_px: Annotated[float, Meta(ge=0.0)] = 12.0  # at input resolution


class ReduceConfig(msgspec.Struct, forbid_unknown_fields=True):
    domain: Literal["feature", "image"] = "feature"
    mode: Literal["zero", "blur", "colour", "grey"] = "zero"
    threshold: Literal["keep_ratio", "value", "percentile"] = "keep_ratio"
    # ratio (0..1), map value, or percentile; 0.3: chosen on validation (see ImportanceConfig)
    value: Annotated[float, Meta(ge=0.0)] = 0.3
    normalize: bool = True  # divide the map by its maximum first; false: absolute map values
    dilate: Annotated[int, Meta(ge=0, le=64)] = 0  # grow the keep-mask by this many cells
    radius: Annotated[int, Meta(ge=1, le=64)] = 2  # blur radius
    levels: Annotated[int, Meta(ge=2, le=256)] = 4  # colour reduction levels


class QuantizeConfig(msgspec.Struct, forbid_unknown_fields=True):
    bits: Annotated[int, Meta(ge=1, le=8)] = 3  # chosen on validation (see ImportanceConfig)
    per_channel: bool = True
    clip_percentile: Annotated[float, Meta(ge=0.0, le=100.0)] = 0.0  # 0 = min/max range


class CodecConfig(msgspec.Struct, forbid_unknown_fields=True):
    # arith: chosen on validation; zstd costs ~40% more at the same setting (rate_accuracy.json)
    coder: Literal["zstd", "arith", "raw"] = "arith"
    level: Annotated[int, Meta(ge=-7, le=22)] = 3
    keyframe_interval: Annotated[int, Meta(ge=0)] = 0
    # Temporal coding (wire format 6): each tensor coded against the newest one the receiver
    # acknowledged. auto = on with the arith coder: predicted from it for video sources (scene,
    # camera, file, url; README, rate_stream.json), and for an image folder's stills only its range
    # coder state and a compact header (lossless, no skip or hold: codec.json).
    temporal: Literal["auto", "on", "off"] = "auto"
    # Temporal: a channel keeps the reference's quantization step while its own step is within
    # [1 - param_hold, 1 + param_hold / 4] of it (unchanged features give unchanged symbols).
    param_hold: Annotated[float, Meta(ge=0.0, le=0.9)] = 0.5
    # Temporal: a kept position whose symbols differ from the prediction by at most this much (sum
    # over channels) keeps the prediction (lossy skip, bounded error; 0 = lossless).
    temporal_skip: Annotated[int, Meta(ge=0, le=255)] = 2
    # Temporal: positions the reference kept get this fraction of the map's range added before the
    # keep threshold (mask hysteresis; 0 = off).
    mask_hold: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.2


class RateConfig(msgspec.Struct, forbid_unknown_fields=True):
    target_bytes: Annotated[float, Meta(ge=0.0)] = 0.0  # per frame; 0 = off
    target_kbps: Annotated[float, Meta(ge=0.0)] = 0.0  # kbit/s at the measured frame rate
    min_keep: Annotated[float, Meta(ge=0.0, le=1.0)] = 0.02
    max_keep: Annotated[float, Meta(ge=0.0, le=1.0)] = 1.0
    min_bits: Annotated[int, Meta(ge=1, le=8)] = 2
    max_bits: Annotated[int, Meta(ge=1, le=8)] = 8
    gain: Annotated[float, Meta(ge=0.01, le=2.0)] = 0.7
    # Temporal coding: the first frame after a scene cut (coded alone) is cut down to at most this
    # many bytes (0: 3 x the per-frame target); the budget is kept per second, not per frame.
    cut_max_bytes: Annotated[float, Meta(ge=0.0)] = 0.0

    @property
    def enabled(self) -> bool:
        return self.target_bytes > 0 or self.target_kbps > 0


class SenderConfig(msgspec.Struct, forbid_unknown_fields=True):
    endpoints: list[str] = msgspec.field(default_factory=lambda: ["tcp://127.0.0.1:5555"])
    # dealer: the receiver's acknowledgements come back on it (delivery.policy = reliable needs it)
    socket: Literal["push", "dealer"] = "dealer"
    client_secret_key: str = ""  # CURVE: this box's .key_secret; "" = no CURVE (trusted network only)
    server_public_key: str = ""  # CURVE: the receiver's .key
    sndhwm: Annotated[int, Meta(ge=1)] = 8  # messages queued per receiver before dropping
    send_timeout_ms: Annotated[int, Meta(ge=0)] = 0  # 0: never wait (NOBLOCK)
    linger_ms: Annotated[int, Meta(ge=0)] = 500
    reconnect_ivl_ms: Annotated[int, Meta(ge=1)] = 200
    reconnect_ivl_max_ms: Annotated[int, Meta(ge=0)] = 5000
    heartbeat_ivl_ms: Annotated[int, Meta(ge=0)] = 1000
    heartbeat_timeout_ms: Annotated[int, Meta(ge=0)] = 3000
    handshake_ivl_ms: Annotated[int, Meta(ge=0)] = 5000


class DeliveryConfig(msgspec.Struct, forbid_unknown_fields=True):
    # reliable: frames wait in a resend window until acknowledged; live: send once, freshest first
    policy: Literal["reliable", "live"] = "reliable"
    window_frames: Annotated[int, Meta(ge=1, le=1 << 20)] = 256  # unacknowledged frames kept
    window_s: Annotated[float, Meta(ge=0.1)] = 30.0  # ... and for at most this long
    # at stop, wait this long for acks (keep it under the unit's TimeoutStopSec and WatchdogSec)
    drain_s: Annotated[float, Meta(ge=0.0, le=60.0)] = 5.0
    no_ack_warn_s: Annotated[float, Meta(ge=0.5)] = 10.0  # then say why nothing gets through


class MetricsConfig(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 9108


class Config(msgspec.Struct, forbid_unknown_fields=True):
    runtime: RuntimeConfig = msgspec.field(default_factory=RuntimeConfig)
    source: SourceConfig = msgspec.field(default_factory=SourceConfig)
    importance: ImportanceConfig = msgspec.field(default_factory=ImportanceConfig)
    reduce: ReduceConfig = msgspec.field(default_factory=ReduceConfig)
    quantize: QuantizeConfig = msgspec.field(default_factory=QuantizeConfig)
    codec: CodecConfig = msgspec.field(default_factory=CodecConfig)
    rate: RateConfig = msgspec.field(default_factory=RateConfig)
    sender: SenderConfig = msgspec.field(default_factory=SenderConfig)
    delivery: DeliveryConfig = msgspec.field(default_factory=DeliveryConfig)
    metrics: MetricsConfig = msgspec.field(default_factory=MetricsConfig)


# Field types as msgspec sees them, per section: they drive the error wording and how an
# environment or --set value is read (a string key keeps its text, a list key splits on commas).
_SECTIONS: dict[str, dict[str, mi.Type]] = {
    f.name: {g.name: g.type for g in f.type.fields} for f in mi.type_info(Config).fields
}


def _describe(t: mi.Type) -> str:
    """What a field accepts, in words, from its msgspec type (so the text cannot drift from the check)."""
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, mi.LiteralType):
        return f"one of {list(t.values)}"
    if isinstance(t, mi.StrType):
        return "a string"
    if isinstance(t, mi.ListType) and isinstance(t.item_type, mi.StrType):
        return "a list of strings"
    if isinstance(t, mi.IntType | mi.FloatType):
        bounds = [
            f"{op} {v}" for op, v in ((">=", t.ge), (">", t.gt), ("<=", t.le), ("<", t.lt)) if v is not None
        ]
        return ("an integer" if isinstance(t, mi.IntType) else "a number") + (
            " " + " and ".join(bounds) if bounds else ""
        )
    raise TypeError(f"no description for {t!r}")  # a new field type: say here what it accepts


_ALLOWED = {sec: {key: _describe(t) for key, t in keys.items()} for sec, keys in _SECTIONS.items()}
_UNKNOWN = re.compile(r"Object contains unknown field `(.*)`")


def _config_error(err: msgspec.ValidationError, data: Any, origin: str) -> ConfigError:
    """msgspec's ``Expected `int` <= 8 - at `$.quantize.bits``` as ``origin: quantize.bits: must be an
    integer >= 1 and <= 8, got 9``. Hand-written because msgspec names the JSON path and the expected
    type but neither the value nor the whole allowed range, and knows no TOML words (table, true)."""
    text = str(err)
    what, _, where = text.partition(" - at `")
    path = re.findall(r"\.([^.\[`]+)", where.removeprefix("key` in `"))
    unknown = _UNKNOWN.fullmatch(what)
    try:
        if not path:
            if unknown:
                return ConfigError(
                    f"{origin}: unknown section [{unknown[1]}]; sections are {sorted(_SECTIONS)}"
                )
            return ConfigError(f"{origin}: the configuration must be a table of sections")
        sec = path[0]
        if len(path) == 1:
            if unknown:
                return ConfigError(
                    f"{origin}: unknown key {sec}.{unknown[1]}; [{sec}] takes {sorted(_SECTIONS[sec])}"
                )
            return ConfigError(f"{origin}: [{sec}] must be a table, got {data[sec]!r}")
        key = path[1]
        return ConfigError(f"{origin}: {sec}.{key}: must be {_ALLOWED[sec][key]}, got {data[sec][key]!r}")
    except (KeyError, TypeError):  # a path this code does not expect: msgspec's own words
        return ConfigError(f"{origin}: {text}")


def _checked(data: Any, origin: str) -> None:
    try:
        msgspec.convert(data, Config)
    except msgspec.ValidationError as e:
        raise _config_error(e, data, origin) from e


# Hand-written: msgspec reads documents, not environment variables or key=value arguments; these
# turn both into one more layer of tables that msgspec then checks like the file.
def _parse_literal(t: mi.Type | None, text: str) -> Any:
    try:
        value = msgspec.toml.decode(f"v = {text}".encode())["v"]
    except msgspec.DecodeError:
        if isinstance(t, mi.ListType):
            return [s.strip() for s in text.split(",") if s.strip()]
        return text
    textual = t is None or isinstance(t, mi.StrType | mi.LiteralType)  # None: unknown, refused by name
    return text if textual and not isinstance(value, str) else value  # e.g. stream_id=123 stays a string


def _env_overrides(env: Mapping[str, str]) -> dict:
    out: dict[str, dict] = {}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) != 2:
            raise ConfigError(f"environment {name}: use {ENV_PREFIX}<SECTION>__<KEY>")
        sec, key = parts
        out.setdefault(sec, {})[key] = _parse_literal(_SECTIONS.get(sec, {}).get(key), text)
    return out


def _cli_overrides(items: list[str]) -> dict:
    out: dict[str, dict] = {}
    for item in items:
        name, sep, text = item.partition("=")
        sec, dot, key = name.strip().partition(".")
        if not sep or not dot:
            raise ConfigError(f"override {item!r}: use section.key=value, e.g. quantize.bits=6")
        out.setdefault(sec, {})[key] = _parse_literal(_SECTIONS.get(sec, {}).get(key), text)
    return out


VIDEO_SOURCES = ("scene", "camera", "file", "url")


def temporal_enabled(cfg: Config) -> bool:
    """Whether the edge codes tensors against acknowledged references: ``codec.temporal`` on, or
    auto with the arith coder and no key-frame interval (every source: an image folder's stills
    are coded with the reference's coder state, wire format 6, ``docs/wire.md``)."""
    c = cfg.codec
    if c.temporal == "auto":
        return c.coder == "arith" and not c.keyframe_interval
    return c.temporal == "on"


def video_tools(cfg: Config) -> bool:
    """Whether the temporal tools made for video run (lossy skip, parameter and mask hold, rates
    per second): temporal coding of a video source, or ``codec.temporal = on``. Stills from an
    image folder are coded losslessly against the reference, each with its own quantization."""
    if not temporal_enabled(cfg):
        return False
    return cfg.codec.temporal == "on" or cfg.source.kind in VIDEO_SOURCES


# Hand-written: msgspec's constraints are per field; these span keys and sections and look at files
# on disk. Kept as one function run on the loaded whole (issue 18) rather than a Config.__post_init__,
# which msgspec would also run for every Config() built in code.
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
    layers = [(data or {}, origin)]
    if env:
        layers.append((_env_overrides(env), "environment"))
    if overrides:
        layers.append((_cli_overrides(overrides), "command line"))
    # Each layer is checked on its own, so that an error names where the value came from (and a bad
    # value in the file is refused even where the environment overrides it); then the layers are
    # merged key by key, later wins, and converted once more into the Config that is returned.
    merged: dict[str, dict] = {}
    for layer, where in layers:
        _checked(layer, where)
        for sec, values in layer.items():
            merged.setdefault(sec, {}).update(values)
    cfg = msgspec.convert(merged, Config)
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
            # untyped: the raw tables are one layer of several (see config_from_dict)
            data = msgspec.toml.decode(p.read_bytes())
        except msgspec.DecodeError as e:
            raise ConfigError(f"{p}: not valid TOML: {e}") from e
        origin = str(p)
    return config_from_dict(data, env=os.environ if env is None else env, overrides=overrides, origin=origin)


# Hand-written: msgspec.toml.encode needs the tomli-w package, a runtime dependency for these lines.
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
        for key, value in msgspec.structs.asdict(getattr(cfg, sec)).items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
