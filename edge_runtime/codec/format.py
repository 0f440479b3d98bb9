"""The wire format's vocabulary: constants, field codes, varints and the data classes.

The byte layout of both versions is written down in ``docs/wire.md``; the constants here are the
single source of truth for it. Encoding lives in :mod:`.encoder`, checking and decoding in
:mod:`.decoder`, the per-stream inter-frame state of both in :mod:`.state`. Errors raised while
decoding all derive from :class:`~edge_runtime.errors.DecodeError`::

    DecodeError
    ├── HeaderError            bad magic, version, flag, field value or declared size
    ├── ChecksumError          CRC-32 mismatch
    ├── ModelMismatchError     model id this decoder does not serve
    └── PayloadError           payload does not decode into the declared tensor
        └── MissingKeyFrameError  inter-frame delta whose key frame this decoder does not hold
"""

from __future__ import annotations

import dataclasses
import functools
import struct
import zlib
from pathlib import Path

import numpy as np

from edge_runtime.errors import HeaderError, PayloadError

__all__ = [
    "MAGIC",
    "VERSION",
    "VERSIONS",
    "V4P_PREFIX",
    "identity_crc",
    "stream_tag",
    "CODERS",
    "QPARAM_REL_ERROR",
    "Tensor",
    "Frame",
    "Limits",
    "MissingKeyFrameError",
    "REF_WINDOW",
    "RefFrame",
    "predict_symbols",
    "serialize_values",
    "put_varint",
    "get_varint",
]

MAGIC = b"ERW"
VERSION = 2  # what encoders write by default (6 with temporal coding on)
VERSIONS = (1, 2, 3, 4, 5, 6)  # what decoders read

# flags (byte 4), both versions
F_TENSOR = 0x01
F_KEYFRAME = 0x02
F_DELTA = 0x04
F_MASK = 0x08
# version 2 only
F_SOURCE_TIME = 0x10  # the source's own timestamp (video position) follows the source index
F_QPARAM_F32 = 0x20  # scale / offset as float32 (a value outside float16's normal range)
# version 3 only
F_PREDICTED = 0x40  # the tensor is coded against a reference frame the receiver decoded (temporal)
F_KNOWN = {1: F_TENSOR | F_KEYFRAME | F_DELTA | F_MASK, 2: 0x3F, 3: 0x7F, 4: 0x7F, 5: 0x7F, 6: 0x7F}

# dtype codes
DT_U8 = 1
DT_F16 = 2
DT_F32 = 3
DTYPES = {DT_U8: np.dtype(np.uint8), DT_F16: np.dtype("<f2"), DT_F32: np.dtype("<f4")}
DTYPE_CODES = {np.dtype(np.uint8): DT_U8, np.dtype(np.float16): DT_F16, np.dtype(np.float32): DT_F32}

# coder codes
CODERS = {"raw": 0, "zstd": 1, "arith": 2}
CODER_NAMES = {v: k for k, v in CODERS.items()}

# version 1: fixed-width fields
V1_COMMON = struct.Struct("<3sBBB8sQq")  # magic, version, flags, sid_len, model_id, seq, capture_ns
V1_TENSOR = struct.Struct("<BBBHHHIIQHHI")  # dtype bits coder C H W n_kept dict_id key_seq n_s n_o plen
# version 2: fixed prefix, then varints (docs/wire.md)
V2_PREFIX = struct.Struct("<3sBB8sQq")  # magic, version, flags, model_id, epoch, capture_ns
# version 3, predicted frames: model id and capture time come from the reference (docs/wire.md)
V3P_PREFIX = struct.Struct("<3sBBQ")  # magic, version, flags, epoch
# version 4, predicted frames: no stream id and epoch either, only their tag; the CRC covers them
V4P_PREFIX = struct.Struct("<3sBBH")  # magic, version, flags, stream tag (epoch & 0xFFFF)
CRC = struct.Struct("<I")
MIN_MESSAGE = {
    1: V1_COMMON.size + CRC.size,
    2: V2_PREFIX.size + 4 + CRC.size,
    3: V3P_PREFIX.size + 4 + CRC.size,  # a predicted frame; others need the version-2 minimum
    4: V4P_PREFIX.size + 4 + CRC.size,  # likewise
    5: V4P_PREFIX.size + 4 + CRC.size,  # likewise (version 5 has version 4's prefixes)
    6: V4P_PREFIX.size + 4 + CRC.size,  # likewise
}
MIN_ANY = min(MIN_MESSAGE.values())

# version 2 tensor "kind" byte: dtype (bits 0-1) | coder (bits 2-3) | bits - 1 (bits 4-6)
# version 2 "qlayout" byte (quantized tensors only)
Q_SCALE_PER_CHANNEL = 0x01
Q_OFFSET_PER_CHANNEL = 0x02
Q_OFFSET_ZERO = 0x04  # no offset values: every offset is 0 (ReLU features)
Q_KNOWN = 0x07
Q_SAME_AS_REF = 0x08  # version 3, predicted frames: no values follow, the reference's scale / offset
Q_KNOWN_V3 = 0x0F
Q_CARRY = 0x10  # version 5, predicted frames: no symbol prediction, only the reference's coder state
Q_SCALE_CODED = 0x20  # version 5: scales as coarse float16 codes in varints (coded_scales)
Q_KNOWN_V5 = 0x3F
Q_INIT = 0x40  # version 6, frames coded alone: the coder starts from init_state(bits)
Q_KNOWN_V6 = 0x7F

#: A version-3 decoder keeps at least this many decoded frames per stream (the highest seqs) as
#: references; an encoder predicts only from a frame at most this many seqs back.
REF_WINDOW = 8
#: Relative error of a scale / offset sent as float16 (round to nearest, 11 significant bits); the
#: encoder falls back to float32 for values outside float16's normal range. A dequantized value
#: ``offset + q * scale`` therefore differs from the float32 parameters' by at most
#: ``QPARAM_REL_ERROR * (|offset| + (2**bits - 1) * |scale|)`` (tests/codec/test_codec_v2.py).
QPARAM_REL_ERROR = 2.0**-11
F16_MIN_NORMAL = 2.0**-14
F16_MAX_BITS = 0x7BFF  # float16's largest finite value (65504)
F16_MAX = 65504.0

U64_MAX = (1 << 64) - 1


def stream_tag(epoch: int) -> int:
    """The 16-bit tag a version-4 predicted frame carries instead of its stream id and epoch."""
    return epoch & 0xFFFF


def identity_crc(stream_id: bytes, epoch: int) -> int:
    """CRC-32 state after the implied identity of a version-4 predicted frame (stream id length,
    stream id, epoch as u64): the frame's CRC-32 continues from it over the message bytes, so a
    frame resolved to the wrong stream (two streams with one tag) fails its check."""
    return zlib.crc32(bytes([len(stream_id)]) + stream_id + epoch.to_bytes(8, "little"))


I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


class MissingKeyFrameError(PayloadError):
    """A delta frame refers to a key frame this decoder did not decode (lost or corrupt).
    ``frame``: (stream id, epoch, seq) of the message that could not be decoded."""

    reason = "keyframe"

    def __init__(self, message: str, frame: tuple[str, int, int] | None = None) -> None:
        super().__init__(message)
        self.frame = frame


# ---------------------------------------------------------------- varints


def zz64(v: int) -> int:
    """Signed -> unsigned varint value (zigzag)."""
    return 2 * v if v >= 0 else -2 * v - 1


def unzz64(u: int) -> int:
    return u >> 1 if not u & 1 else -((u + 1) >> 1)


def put_varint(out: bytearray, v: int) -> None:
    """Unsigned LEB128: 7 bits per byte, low first, high bit = more follows."""
    if v < 0:
        raise ValueError(f"varint fields are unsigned, got {v}")
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def get_varint(mv, pos: int, end: int, name: str, limit: int = U64_MAX) -> tuple[int, int]:
    """Read one varint of at most 10 bytes from ``mv[pos:end]``; minimal encodings only."""
    if pos < end and mv[pos] < 0x80:  # one byte, most fields: no loop (a default message reads 15)
        v = mv[pos]
        if v > limit:
            raise HeaderError(f"{name} {v} over the limit of {limit}")
        return v, pos + 1
    v = shift = 0
    start = pos
    while True:
        if pos >= end:
            raise HeaderError(f"{name}: varint runs past the end of the header")
        b = mv[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift >= 70:
            raise HeaderError(f"{name}: varint longer than 10 bytes")
    if pos - start > 1 and b == 0:
        raise HeaderError(f"{name}: varint is not minimally encoded")
    if v > limit:
        raise HeaderError(f"{name} {v} over the limit of {limit}")
    return v, pos


# ---------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True, eq=False)
class Tensor:
    """The tensor part of a frame.

    Quantized: ``data`` uint8 (C, H, W) with values < 2**bits, ``scale`` / ``offset`` float32 of
    shape (C,) or (1,) (x ≈ offset + data * scale), ``bits`` in 1..8. Float: ``data`` float16 /
    float32, ``bits`` 0, no scale / offset. ``keep``: optional bool (H, W); where it is False,
    ``data`` is zero and costs (nearly) nothing on the wire.
    """

    data: np.ndarray
    scale: np.ndarray | None = None
    offset: np.ndarray | None = None
    bits: int = 0
    keep: np.ndarray | None = None

    @property
    def quantized(self) -> bool:
        return self.data.dtype == np.uint8

    def dequantize(self) -> np.ndarray:
        """Float32 (C, H, W): ``offset + data * scale``; positions outside ``keep`` are 0."""
        if not self.quantized:
            x = self.data.astype(np.float32)
        elif not self.offset.any():  # ReLU features: masked symbols are 0, so 0 * scale needs no mask
            x = self.data.astype(np.float32)
            x *= self.scale.astype(np.float32, copy=False)[:, None, None]
            return x
        else:
            x = self.offset[:, None, None] + self.data.astype(np.float32) * self.scale[:, None, None]
        if self.keep is not None:
            x = np.where(self.keep[None], x, np.float32(0))
        return x.astype(np.float32, copy=False)


@dataclasses.dataclass(frozen=True, eq=False)
class Frame:
    """One message. ``tensor=None`` is an empty frame ("nothing important in it").

    ``model_id``: 8 bytes; left empty when encoding, the encoder's id is used. ``keyframe`` /
    ``delta`` are set by the encoder in inter-frame mode and reported by the decoder.
    Version 2 fields (a version-1 message decodes with their defaults):

    - ``epoch``: random 64-bit id of the sender's boot; ``(stream_id, epoch, seq)`` names a frame;
    - ``base``: the lowest seq the sender still holds unacknowledged (``None``: ``seq``); every seq
      below it is delivered or given up by the sender (the receiver counts the ones it never got);
    - ``source_index``: the frame's index in its source (video frame number);
    - ``source_time_us``: the source's own timestamp of the frame (video position), if known.

    Version 3: ``ref_seq`` is set (by the decoder) on a tensor coded against an earlier frame.
    """

    stream_id: str
    seq: int
    capture_time_ns: int
    tensor: Tensor | None = None
    model_id: bytes = b""
    keyframe: bool = False
    delta: bool = False
    key_seq: int = 0
    epoch: int = 0
    base: int | None = None
    source_index: int = 0
    source_time_us: int | None = None
    version: int = VERSION
    ref_seq: int | None = None  # version 3: the reference a predicted tensor was coded against

    @property
    def window_base(self) -> int:
        return self.seq if self.base is None else self.base


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a decoder accepts; checked before anything is allocated."""

    max_message_bytes: int = 64 << 20
    max_elements: int = 16 << 20
    max_channels: int = 8192
    max_height: int = 8192
    max_width: int = 8192
    max_stream_id: int = 64
    max_streams: int = 1024  # inter-frame / sequence state kept for at most this many streams
    # temporal references (version 3: up to REF_WINDOW decoded frames per stream), over all streams
    max_ref_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"Limits.{f.name} must be a positive int, got {v!r}")
        if self.max_stream_id > 255:
            raise ValueError(
                f"Limits.max_stream_id must be <= 255 (one length byte), got {self.max_stream_id}"
            )
        if max(self.max_channels, self.max_height, self.max_width) > 0xFFFF:
            raise ValueError("Limits.max_channels / max_height / max_width must be <= 65535 (u16 fields)")


@dataclasses.dataclass(frozen=True, eq=False)
class RefFrame:
    """A decoded quantized tensor kept as a temporal reference: symbols, keep-mask (None: all kept),
    bits, scale / offset as the wire carries them (float16-rounded where they were sent so), and
    the coder's probability state at the end of the frame (where the next predicted frame starts)."""

    seq: int
    q: np.ndarray
    keep: np.ndarray | None
    bits: int
    scale: np.ndarray
    offset: np.ndarray
    state: np.ndarray | None = None  # the range coder's probability state after this frame
    capture_ns: int = 0  # a predicted frame sends its capture time as the difference to this
    model_id: bytes = b""  # and inherits this model id

    def same_params(self, scale: np.ndarray, offset: np.ndarray) -> bool:
        C = self.q.shape[0]
        for a, b in ((scale, self.scale), (offset, self.offset)):
            a = np.asarray(a, np.float32)
            if a.shape == b.shape and b.dtype == np.float32:  # bytes: a few times cheaper per frame
                if a.tobytes() != b.tobytes():
                    return False
            elif not np.array_equal(np.broadcast_to(a, (C,)), np.broadcast_to(b, (C,))):
                return False
        return True


def predict_symbols(ref: RefFrame, scale: np.ndarray, offset: np.ndarray, bits: int) -> np.ndarray:
    """The reference's symbols mapped to this frame's quantization (what a predicted frame is coded
    against): unchanged when the parameters are the same, else the reference dequantized and
    quantized again with ``scale`` / ``offset`` (float32, the formula of :mod:`kernels.quantize`).
    Encoder and decoder call this one function on the parameters the wire carries."""
    if ref.same_params(scale, offset):
        return ref.q
    from edge_runtime.kernels import requantize  # imported with the arith coder, on first use

    def flat(a):  # no copy when already float32 (the usual case, once per predicted frame)
        return np.asarray(a, np.float32).reshape(-1)

    return requantize(ref.q, flat(ref.scale), flat(ref.offset), flat(scale), flat(offset), bits)


# ---------------------------------------------------------------- shared helpers


def zigzag(d: np.ndarray, bits: int) -> np.ndarray:
    """int16 differences -> symbols in [0, 2**bits): wrap mod 2**bits to signed, then zigzag."""
    m = (1 << bits) - 1
    d = d & m
    d = np.where(d >= (1 << (bits - 1)), d - (1 << bits), d)
    return np.where(d >= 0, 2 * d, -2 * d - 1).astype(np.uint8)


def unzigzag(z: np.ndarray, ref: np.ndarray, bits: int) -> np.ndarray:
    z = z.astype(np.int16)
    d = np.where(z & 1, -((z + 1) >> 1), z >> 1)
    return ((ref.astype(np.int16) + d) & ((1 << bits) - 1)).astype(np.uint8)


def serialize_values(data: np.ndarray, keep: np.ndarray | None) -> bytes:
    """The byte string the ``raw`` and ``zstd`` coders carry: the keep-mask bit-packed (LSB first,
    only when there is a mask), then the kept values channel by channel, little-endian."""
    C = data.shape[0]
    dt = data.dtype.newbyteorder("<") if data.dtype.itemsize > 1 else data.dtype
    vals = data.reshape(C, -1) if keep is None else data[:, keep]
    head = b"" if keep is None else np.packbits(keep, bitorder="little").tobytes()
    return head + np.ascontiguousarray(vals, dtype=dt).tobytes()


def fits_float16(a: np.ndarray) -> bool:
    """Every value is 0 or inside float16's normal range, where rounding keeps QPARAM_REL_ERROR."""
    m = np.abs(a.astype(np.float64))
    return bool(np.all((m == 0) | ((m >= F16_MIN_NORMAL) & (m <= F16_MAX))))


def scale_mantissa_bits(bits: int) -> int:
    """Significant mantissa bits a version-5 coded scale keeps at ``bits``-bit quantization."""
    return min(10, bits + 4)


def scale_code_error(bits: int) -> float:
    """Bound on the relative error of a coded scale against the float32 one (docs/wire.md)."""
    m = scale_mantissa_bits(bits)
    return QPARAM_REL_ERROR + (2.0 ** -(m + 1) if m < 10 else 0.0)


def scale_codes(scale: np.ndarray, bits: int) -> np.ndarray | None:
    """Version 5's coded scales (``Q_SCALE_CODED``): each scale's float16 bit pattern (round to
    nearest) rounded to ``scale_mantissa_bits(bits)`` mantissa bits, as an int64 code; the bit
    pattern is monotonic in the value, so this is a logarithmic quantizer computed with integer
    operations only (bit-exact on every machine). None when a scale is not a positive float16
    normal, or a rounded one would not be finite."""
    a = np.asarray(scale, np.float32)
    if not (np.all(a >= F16_MIN_NORMAL) and np.all(a <= F16_MAX)):
        return None
    shift = 10 - scale_mantissa_bits(bits)
    b = a.astype("<f2").view("<u2").astype(np.int64)
    codes = (b + ((1 << shift) >> 1)) >> shift
    if np.any(codes << shift > F16_MAX_BITS):
        return None
    return codes


def decoded_scales(codes: np.ndarray, bits: int) -> np.ndarray:
    """The float32 scales :func:`scale_codes` codes stand for (exact: a float16 bit pattern)."""
    shift = 10 - scale_mantissa_bits(bits)
    return (np.asarray(codes, np.int64) << shift).astype("<u2").view("<f2").astype(np.float32)


def scale_code_base(ref: RefFrame | None, C: int, bits: int) -> np.ndarray | None:
    """What a frame's ``C`` (1 or the channel count) scale codes are sent relative to: the first
    ``C`` of the reference's scales per channel, as codes (a predicted frame), or None (a frame alone: the first code as is, each next one against the one before)."""
    if ref is None:
        return None
    r = np.broadcast_to(ref.scale.astype(np.float32), (ref.q.shape[0],))[:C]
    b = r.astype("<f2").view("<u2").astype(np.int64)
    shift = 10 - scale_mantissa_bits(bits)
    return (b + ((1 << shift) >> 1)) >> shift


def put_scale_codes(buf: bytearray, codes: np.ndarray, base: np.ndarray | None) -> None:
    prev = None
    for i, c in enumerate(codes.tolist()):
        if base is not None:
            put_varint(buf, zz64(c - int(base[i])))
        elif prev is None:
            put_varint(buf, c)
        else:
            put_varint(buf, zz64(c - prev))
        prev = c


def get_scale_codes(
    mv, pos: int, end: int, n: int, base: np.ndarray | None, bits: int
) -> tuple[np.ndarray, int]:
    """Read ``n`` scale codes written by :func:`put_scale_codes`; each must stand for a positive
    finite float16 normal."""
    shift = 10 - scale_mantissa_bits(bits)
    base = None if base is None else base.tolist()
    out: list[int] = []
    v = 0
    for i in range(n):
        u, pos = get_varint(mv, pos, end, "scale code", 1 << 20)
        if base is not None:
            v = base[i] + unzz64(u)
        else:
            v = v + unzz64(u) if i else u
        if not 0x0400 <= v << shift <= F16_MAX_BITS or v < 0:
            raise HeaderError(f"scale code {v} does not stand for a positive finite float16")
        out.append(v)
    return np.array(out, np.int64), pos


#: Format version 6's initial coder states (layout bit INIT, ``docs/wire.md``): one per bit depth
#: 1..8, uint16 (8, 2, ``kernels.tcoder.N_STATE``). Part of the wire format: a message coded from
#: it decodes only with the same table, so it never changes without a new format version
#: (``tests/codec/test_codec_v6.py`` pins its sha256; :mod:`.init_table` says how it was made).
INIT_TABLE = Path(__file__).with_name("tcoder_init.npy")


@functools.cache
def _init_table() -> np.ndarray:
    from edge_runtime.kernels.tcoder import N_STATE

    t = np.load(INIT_TABLE, allow_pickle=False)
    if t.dtype != np.uint16 or t.shape != (8, 2, N_STATE) or not (t > 0).all():
        raise ValueError(f"{INIT_TABLE}: not a table of initial coder states of shape (8, 2, {N_STATE})")
    t.setflags(write=False)  # the coder's state type as it is: the coder copies what it gets
    return t


def init_state(bits: int) -> np.ndarray:
    """Version 6's initial probability state (uint16, read-only) for a frame coded alone at ``bits``."""
    if not (isinstance(bits, int) and 1 <= bits <= 8):
        raise ValueError(f"bits must be an int in 1..8, got {bits!r}")
    return _init_table()[bits - 1]


def coder_module():
    # Imported on first use: Numba's import and JIT cost is paid only by users of ``arith``.
    from edge_runtime.kernels import coder

    return coder
