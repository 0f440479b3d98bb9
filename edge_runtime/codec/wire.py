"""The wire format: one message per frame, and a decoder that trusts nothing.

The byte layout is documented field by field in ``docs/wire.md``; the constants below are the
single source of truth for it. Errors raised while decoding all derive from
:class:`~edge_runtime.errors.DecodeError`::

    DecodeError
    ├── HeaderError            bad magic, version, flag, field value or declared size
    ├── ChecksumError          CRC-32 mismatch
    ├── ModelMismatchError     model id this decoder does not serve
    └── PayloadError           payload does not decode into the declared tensor
        └── MissingKeyFrameError  inter-frame delta whose key frame this decoder does not hold
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import struct
import zlib
from collections.abc import Iterable, Mapping

import numpy as np
import zstandard

from edge_runtime.errors import ChecksumError, HeaderError, ModelMismatchError, PayloadError

__all__ = [
    "MAGIC",
    "VERSION",
    "CODERS",
    "Tensor",
    "Frame",
    "Limits",
    "Encoder",
    "Decoder",
    "MissingKeyFrameError",
    "serialize_values",
]

log = logging.getLogger(__name__)

MAGIC = b"ERW"
VERSION = 1

# flags (byte 4)
F_TENSOR = 0x01
F_KEYFRAME = 0x02
F_DELTA = 0x04
F_MASK = 0x08
_F_KNOWN = F_TENSOR | F_KEYFRAME | F_DELTA | F_MASK

# dtype codes
DT_U8 = 1
DT_F16 = 2
DT_F32 = 3
_DTYPES = {DT_U8: np.dtype(np.uint8), DT_F16: np.dtype("<f2"), DT_F32: np.dtype("<f4")}
_DTYPE_CODES = {np.dtype(np.uint8): DT_U8, np.dtype(np.float16): DT_F16, np.dtype(np.float32): DT_F32}

# coder codes
CODERS = {"raw": 0, "zstd": 1, "arith": 2}
_CODER_NAMES = {v: k for k, v in CODERS.items()}

_COMMON = struct.Struct("<3sBBB8sQq")  # magic, version, flags, sid_len, model_id, seq, capture_ns
_TENSOR = struct.Struct("<BBBHHHIIQHHI")  # dtype bits coder C H W n_kept dict_id key_seq n_s n_o plen
_CRC = struct.Struct("<I")
MIN_MESSAGE = _COMMON.size + _CRC.size  # an empty frame with an empty stream id

_U64_MAX = (1 << 64) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


class MissingKeyFrameError(PayloadError):
    """A delta frame refers to a key frame this decoder did not decode (lost or corrupt)."""

    reason = "keyframe"


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
    """

    stream_id: str
    seq: int
    capture_time_ns: int
    tensor: Tensor | None = None
    model_id: bytes = b""
    keyframe: bool = False
    delta: bool = False
    key_seq: int = 0


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


# ---------------------------------------------------------------- shared helpers


def _zigzag(d: np.ndarray, bits: int) -> np.ndarray:
    """int16 differences -> symbols in [0, 2**bits): wrap mod 2**bits to signed, then zigzag."""
    m = (1 << bits) - 1
    d = d & m
    d = np.where(d >= (1 << (bits - 1)), d - (1 << bits), d)
    return np.where(d >= 0, 2 * d, -2 * d - 1).astype(np.uint8)


def _unzigzag(z: np.ndarray, ref: np.ndarray, bits: int) -> np.ndarray:
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


def _coder_module():
    # Imported on first use: Numba's import and JIT cost is paid only by users of ``arith``.
    from kernels import coder

    return coder


# ---------------------------------------------------------------- encoder


class Encoder:
    """Encodes :class:`Frame` objects for one model; reuses one zstd context.

    ``coder``: "zstd" (default), "arith" (context-adaptive range coder, uint8 tensors only) or
    "raw". ``level`` / ``dictionary`` apply to zstd only. ``keyframe_interval`` > 0 turns on the
    inter-frame mode for quantized tensors: every that-many tensor frames of a stream is a key frame,
    the others carry the change from the last key frame.
    """

    def __init__(
        self,
        model_id: bytes,
        *,
        coder: str = "zstd",
        level: int | None = None,
        dictionary: bytes | None = None,
        dict_id: int = 0,
        keyframe_interval: int = 0,
    ) -> None:
        if not isinstance(model_id, bytes) or len(model_id) != 8:
            raise ValueError(f"model_id must be 8 bytes (sha256 prefix), got {model_id!r}")
        if coder not in CODERS:
            raise ValueError(f"unknown coder {coder!r}; choose one of {sorted(CODERS)}")
        if coder != "zstd" and (level is not None or dictionary is not None or dict_id):
            raise ValueError(f"level / dictionary / dict_id apply to coder 'zstd' only, not {coder!r}")
        if not isinstance(keyframe_interval, int) or keyframe_interval < 0:
            raise ValueError(f"keyframe_interval must be an int >= 0, got {keyframe_interval!r}")
        self.model_id = model_id
        self.coder = coder
        self.keyframe_interval = keyframe_interval
        self.dict_id = 0
        self._cctx = None
        if coder == "zstd":
            lvl = 3 if level is None else level
            if not isinstance(lvl, int) or not -7 <= lvl <= 22:
                raise ValueError(f"zstd level must be an int in -7..22, got {lvl!r}")
            zdict = None
            if dictionary is not None:
                zdict = zstandard.ZstdCompressionDict(bytes(dictionary))
                dict_id = dict_id or zdict.dict_id()
                if not isinstance(dict_id, int) or not 1 <= dict_id <= 0xFFFFFFFF:
                    raise ValueError(f"dict_id must be in 1..2**32-1 with a dictionary, got {dict_id!r}")
            elif dict_id:
                raise ValueError("dict_id given without a dictionary")
            self.dict_id = dict_id
            self._cctx = zstandard.ZstdCompressor(
                level=lvl, dict_data=zdict, write_checksum=False, write_content_size=True, write_dict_id=False
            )
        # stream_id -> [key_seq, reference q, bits, frames since key]
        self._refs: dict[str, list] = {}

    def force_keyframe(self, stream_id: str) -> None:
        """Make the next tensor frame of ``stream_id`` a key frame (e.g. on a receiver's request)."""
        self._refs.pop(stream_id, None)

    def encode(self, frame: Frame) -> bytes:
        """Serialize ``frame``; raises ``ValueError`` / ``TypeError`` naming a bad field."""
        sid = self._check_frame(frame)
        flags = 0
        parts = []
        t = frame.tensor
        if t is not None:
            flags |= F_TENSOR
            tflags, tbytes = self._encode_tensor(frame.stream_id, frame.seq, t)
            flags |= tflags
            parts.append(tbytes)
        head = _COMMON.pack(MAGIC, VERSION, flags, len(sid), self.model_id, frame.seq, frame.capture_time_ns)
        body = b"".join([head, sid, *parts])
        return body + _CRC.pack(zlib.crc32(body))

    def _check_frame(self, frame: Frame) -> bytes:
        if not isinstance(frame, Frame):
            raise TypeError(f"expected a Frame, got {type(frame).__name__}")
        if frame.model_id and frame.model_id != self.model_id:
            raise ValueError(f"frame.model_id {frame.model_id.hex()} != encoder's {self.model_id.hex()}")
        if not isinstance(frame.stream_id, str):
            raise TypeError(f"stream_id must be str, got {type(frame.stream_id).__name__}")
        sid = frame.stream_id.encode("utf-8")
        if len(sid) > 255:
            raise ValueError(f"stream_id is {len(sid)} UTF-8 bytes; at most 255 fit (decoders default to 64)")
        if not isinstance(frame.seq, int) or not 0 <= frame.seq <= _U64_MAX:
            raise ValueError(f"seq must be an int in 0..2**64-1, got {frame.seq!r}")
        if not isinstance(frame.capture_time_ns, int) or not _I64_MIN <= frame.capture_time_ns <= _I64_MAX:
            raise ValueError(f"capture_time_ns must be an int64, got {frame.capture_time_ns!r}")
        return sid

    def _encode_tensor(self, stream_id: str, seq: int, t: Tensor) -> tuple[int, bytes]:
        data, keep = t.data, t.keep
        if not isinstance(data, np.ndarray) or data.ndim != 3:
            raise ValueError(
                f"tensor data must be a (C, H, W) ndarray, got {getattr(data, 'shape', type(data))}"
            )
        code = _DTYPE_CODES.get(data.dtype.newbyteorder("=")) if data.dtype.kind == "f" else None
        code = DT_U8 if data.dtype == np.uint8 else code
        if code is None:
            raise TypeError(f"tensor dtype must be uint8, float16 or float32, got {data.dtype}")
        C, H, W = data.shape
        if not (1 <= C <= 0xFFFF and 1 <= H <= 0xFFFF and 1 <= W <= 0xFFFF):
            raise ValueError(f"tensor shape {data.shape} out of range 1..65535 per axis")
        flags = 0
        if keep is not None:
            if not isinstance(keep, np.ndarray) or keep.dtype != np.bool_ or keep.shape != (H, W):
                raise ValueError(
                    f"keep must be a bool array of shape {(H, W)}, got {getattr(keep, 'shape', keep)}"
                )
            if data[:, ~keep].any():
                raise ValueError("tensor data must be zero where keep is False")
            flags |= F_MASK
            n_kept = int(np.count_nonzero(keep))
        else:
            n_kept = H * W
        bits = t.bits
        if code == DT_U8:
            if not isinstance(bits, int) or not 1 <= bits <= 8:
                raise ValueError(f"bits must be in 1..8 for uint8 tensors, got {bits!r}")
            if data.size and int(data.max()) >= (1 << bits):
                raise ValueError(f"tensor value {int(data.max())} does not fit in {bits} bits")
            scale = self._qparam("scale", t.scale, C)
            offset = self._qparam("offset", t.offset, C)
        else:
            if bits != 0 or t.scale is not None or t.offset is not None:
                raise ValueError("float tensors take no bits / scale / offset (bits must be 0)")
            if self.coder == "arith":
                raise ValueError(
                    "coder 'arith' codes quantized uint8 tensors; use 'zstd' or 'raw' for floats"
                )
            scale = offset = np.zeros(0, "<f4")

        # inter-frame mode
        key_seq = 0
        syms = data
        if self.keyframe_interval and code == DT_U8:
            ref = self._refs.get(stream_id)
            if (
                ref is not None
                and ref[2] == bits
                and ref[1].shape == data.shape
                and ref[3] < self.keyframe_interval
            ):
                flags |= F_DELTA
                key_seq = ref[0]
                ref[3] += 1
                syms = _zigzag(data.astype(np.int16) - ref[1], bits)
                if keep is not None:
                    syms[:, ~keep] = 0
            else:
                flags |= F_KEYFRAME
                self._refs[stream_id] = [seq, data.copy(), bits, 1]

        if self.coder == "arith":
            payload = _coder_module().encode_map(np.ascontiguousarray(syms), keep, bits)
        else:
            raw = serialize_values(syms, keep)
            payload = raw if self.coder == "raw" else self._cctx.compress(raw)
        th = _TENSOR.pack(
            code, bits, CODERS[self.coder], C, H, W, n_kept, self.dict_id, key_seq,
            scale.size, offset.size, len(payload),
        )  # fmt: skip
        return flags, b"".join([th, scale.tobytes(), offset.tobytes(), payload])

    @staticmethod
    def _qparam(name: str, v: np.ndarray | None, C: int) -> np.ndarray:
        if v is None:
            raise ValueError(f"quantized tensors need {name}")
        a = np.asarray(v, dtype="<f4").reshape(-1)
        if a.size not in (1, C):
            raise ValueError(f"{name} must have shape (1,) or ({C},), got {np.shape(v)}")
        if a.size > 1 and np.all(a == a[0]):
            a = a[:1]  # one value for all channels: send it once (ReLU offsets are all 0)
        return a


# ---------------------------------------------------------------- decoder


class Decoder:
    """Decodes messages; raises only :class:`~edge_runtime.errors.DecodeError` subclasses.

    ``model_ids``: the 8-byte model ids this receiver serves (``None`` accepts any, for tools).
    ``dictionaries``: zstd dictionaries by the dict id messages carry. Counts decoded and dropped
    messages in ``counts`` (drops by the error's ``reason``), sequence gaps in ``counts["seq_gap"]``,
    and delta frames it could not decode for want of their key frame in ``missing_keyframe``.
    """

    def __init__(
        self,
        *,
        model_ids: Iterable[bytes] | None,
        dictionaries: Mapping[int, bytes] | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.limits = limits or Limits()
        if model_ids is None:
            self.model_ids = None
        else:
            self.model_ids = frozenset(model_ids)
            bad = [m for m in self.model_ids if not isinstance(m, bytes) or len(m) != 8]
            if bad:
                raise ValueError(f"model ids must be 8 bytes, got {bad!r}")
        self._dctx = {0: zstandard.ZstdDecompressor()}
        for k, v in (dictionaries or {}).items():
            if not isinstance(k, int) or not 1 <= k <= 0xFFFFFFFF:
                raise ValueError(f"dictionary ids must be in 1..2**32-1, got {k!r}")
            self._dctx[k] = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(bytes(v)))
        self.counts: collections.Counter[str] = collections.Counter()
        # stream_id -> [last seq, key_seq or None, reference q or None, bits]; LRU-bounded
        self._streams: collections.OrderedDict[str, list] = collections.OrderedDict()

    @property
    def missing_keyframe(self) -> int:
        """Delta frames dropped because their key frame was lost or corrupt."""
        return self.counts["keyframe"]

    def decode(self, buf: bytes | bytearray | memoryview) -> Frame:
        """Parse and check ``buf``; return the frame or raise a ``DecodeError`` subclass."""
        try:
            frame = self._decode(buf)
        except (HeaderError, ChecksumError, ModelMismatchError, PayloadError) as e:
            self.counts[e.reason] += 1
            log.debug("dropped message: %s", e)
            raise
        self.counts["decoded"] += 1
        return frame

    # -- parsing -------------------------------------------------------

    def _decode(self, buf) -> Frame:
        lim = self.limits
        if not isinstance(buf, (bytes, bytearray, memoryview)):
            raise HeaderError(f"message must be bytes, got {type(buf).__name__}")
        mv = memoryview(buf)
        if mv.ndim != 1 or mv.itemsize != 1:
            raise HeaderError("message must be a flat byte buffer")
        n = mv.nbytes
        if n < MIN_MESSAGE:
            raise HeaderError(f"message is {n} bytes, shorter than the minimum {MIN_MESSAGE}")
        if n > lim.max_message_bytes:
            raise HeaderError(f"message is {n} bytes, over the limit of {lim.max_message_bytes}")
        magic, version, flags, sid_len, model_id, seq, t_ns = _COMMON.unpack_from(mv, 0)
        if magic != MAGIC:
            raise HeaderError(f"bad magic {bytes(magic)!r}, expected {MAGIC!r}")
        if version != VERSION:
            raise HeaderError(f"unsupported format version {version}; this decoder reads version {VERSION}")
        (crc,) = _CRC.unpack_from(mv, n - 4)
        if zlib.crc32(mv[: n - 4]) != crc:
            raise ChecksumError(
                f"CRC-32 mismatch: message says {crc:#010x}, content gives {zlib.crc32(mv[: n - 4]):#010x}"
            )
        if flags & ~_F_KNOWN:
            raise HeaderError(f"unknown flag bits {flags & ~_F_KNOWN:#04x}")
        if not flags & F_TENSOR and flags:
            raise HeaderError(f"flags {flags:#04x} set on an empty frame")
        if (flags & F_KEYFRAME) and (flags & F_DELTA):
            raise HeaderError("a frame cannot be both key frame and delta")
        if sid_len > lim.max_stream_id:
            raise HeaderError(f"stream id is {sid_len} bytes, over the limit of {lim.max_stream_id}")
        pos = _COMMON.size + sid_len
        if pos + _CRC.size > n:
            raise HeaderError(f"stream id of {sid_len} bytes runs past the end of a {n}-byte message")
        try:
            stream_id = bytes(mv[_COMMON.size : pos]).decode("utf-8")
        except UnicodeDecodeError as e:
            raise HeaderError(f"stream id is not valid UTF-8: {e}") from None
        if self.model_ids is not None and model_id not in self.model_ids:
            raise ModelMismatchError(
                f"model id {model_id.hex()} is not served here "
                f"(serving {sorted(m.hex() for m in self.model_ids)})"
            )
        tensor = None
        key_seq = 0
        if flags & F_TENSOR:
            tensor, key_seq = self._decode_tensor(mv, pos, n - _CRC.size, flags, stream_id, seq)
        elif pos != n - _CRC.size:
            raise HeaderError(f"empty frame has {n - _CRC.size - pos} trailing bytes")
        self._note_seq(stream_id, seq)
        return Frame(
            stream_id=stream_id, seq=seq, capture_time_ns=t_ns, tensor=tensor, model_id=bytes(model_id),
            keyframe=bool(flags & F_KEYFRAME), delta=bool(flags & F_DELTA), key_seq=key_seq,
        )  # fmt: skip

    def _stream(self, stream_id: str) -> list:
        st = self._streams.get(stream_id)
        if st is None:
            st = self._streams[stream_id] = [None, None, None, 0]
            if len(self._streams) > self.limits.max_streams:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(stream_id)
        return st

    def _note_seq(self, stream_id: str, seq: int) -> None:
        st = self._stream(stream_id)
        if st[0] is not None and seq > st[0] + 1:
            self.counts["seq_gap"] += seq - st[0] - 1
        if st[0] is None or seq > st[0]:
            st[0] = seq

    def _decode_tensor(self, mv, pos, end, flags, stream_id, seq):
        lim = self.limits
        if end - pos < _TENSOR.size:
            raise HeaderError(f"tensor header needs {_TENSOR.size} bytes, {end - pos} left")
        dt, bits, coder, C, H, W, n_kept, dict_id, key_seq, n_s, n_o, plen = _TENSOR.unpack_from(mv, pos)
        pos += _TENSOR.size
        if dt not in _DTYPES:
            raise HeaderError(f"unknown dtype code {dt}")
        if coder not in _CODER_NAMES:
            raise HeaderError(f"unknown coder code {coder}")
        if not (1 <= C <= lim.max_channels and 1 <= H <= lim.max_height and 1 <= W <= lim.max_width):
            raise HeaderError(
                f"shape ({C}, {H}, {W}) outside limits "
                f"1..({lim.max_channels}, {lim.max_height}, {lim.max_width})"
            )
        if C * H * W > lim.max_elements:
            raise HeaderError(f"{C * H * W} elements over the limit of {lim.max_elements}")
        has_mask = bool(flags & F_MASK)
        if n_kept > H * W or (not has_mask and n_kept != H * W):
            raise HeaderError(f"kept count {n_kept} invalid for {H}x{W} (mask: {has_mask})")
        if dt == DT_U8:
            if not 1 <= bits <= 8:
                raise HeaderError(f"bits {bits} outside 1..8 for a quantized tensor")
            if n_s not in (1, C) or n_o not in (1, C):
                raise HeaderError(f"scale / offset counts ({n_s}, {n_o}) must each be 1 or C={C}")
        else:
            if bits != 0 or n_s or n_o:
                raise HeaderError(
                    f"float tensor with bits={bits}, {n_s} scales, {n_o} offsets (all must be 0)"
                )
            if coder == CODERS["arith"] or flags & (F_DELTA | F_KEYFRAME):
                raise HeaderError(
                    "float tensors are coded with 'raw' or 'zstd' and never as key / delta frames"
                )
        if dict_id and coder != CODERS["zstd"]:
            raise HeaderError(f"dictionary id {dict_id} with coder {_CODER_NAMES[coder]!r}")
        if dict_id not in self._dctx:
            raise HeaderError(f"unknown zstd dictionary id {dict_id}; known: {sorted(self._dctx)}")
        if key_seq and not flags & F_DELTA:
            raise HeaderError(f"key_seq {key_seq} set on a frame that is not a delta")
        qbytes = 4 * (n_s + n_o)
        if end - pos != qbytes + plen:
            raise HeaderError(
                f"declared scale/offset ({qbytes} B) + payload ({plen} B) "
                f"!= {end - pos} bytes left in message"
            )
        scale = np.frombuffer(mv, "<f4", n_s, pos).astype(np.float32)
        offset = np.frombuffer(mv, "<f4", n_o, pos + 4 * n_s).astype(np.float32)
        if not (np.isfinite(scale).all() and np.isfinite(offset).all()):
            raise HeaderError("scale / offset must be finite")
        payload = mv[pos + qbytes : end]
        dtype = _DTYPES[dt]
        syms, keep = self._decode_payload(payload, coder, dict_id, dtype, (C, H, W), bits, has_mask, n_kept)
        data = syms
        if flags & F_DELTA:
            data = self._apply_delta(stream_id, key_seq, syms, keep, bits)
        if flags & F_KEYFRAME:
            st = self._stream(stream_id)
            st[1], st[2], st[3] = seq, data.copy(), bits
        if dt == DT_U8:
            return Tensor(data=data, scale=scale, offset=offset, bits=bits, keep=keep), key_seq
        return Tensor(data=data.astype(dtype.newbyteorder("="), copy=False), keep=keep), key_seq

    def _decode_payload(self, payload, coder, dict_id, dtype, shape, bits, has_mask, n_kept):
        C, H, W = shape
        if coder == CODERS["arith"]:
            cm = _coder_module()
            if len(payload) > cm.max_encoded_size(shape, bits):
                raise PayloadError(
                    f"arith payload of {len(payload)} bytes is longer than any coding of {shape}"
                )
            try:
                syms, keep = cm.decode_map(payload, shape, bits, has_mask)
            except cm.CoderError as e:
                raise PayloadError(str(e)) from None
            if has_mask and int(np.count_nonzero(keep)) != n_kept:
                raise PayloadError(
                    f"mask keeps {int(np.count_nonzero(keep))} positions, header says {n_kept}"
                )
            return syms, keep
        mask_bytes = (H * W + 7) // 8 if has_mask else 0
        expected = mask_bytes + C * n_kept * dtype.itemsize
        if coder == CODERS["raw"]:
            if len(payload) != expected:
                raise PayloadError(f"raw payload is {len(payload)} bytes, shape and mask need {expected}")
            raw = payload
        else:
            try:
                size = zstandard.frame_content_size(payload)
            except zstandard.ZstdError as e:
                raise PayloadError(f"zstd frame header unreadable: {e}") from None
            if size != expected:
                raise PayloadError(
                    f"zstd frame declares {size} bytes of content, shape and mask need {expected}"
                )
            try:
                raw = self._dctx[dict_id].decompress(
                    payload, max_output_size=expected, allow_extra_data=False
                )
            except zstandard.ZstdError as e:
                raise PayloadError(f"zstd payload corrupt: {e}") from None
            if len(raw) != expected:
                raise PayloadError(f"zstd payload decompressed to {len(raw)} bytes, expected {expected}")
        keep = None
        if has_mask:
            packed = np.frombuffer(raw, np.uint8, mask_bytes)
            bitsarr = np.unpackbits(packed, bitorder="little")
            if bitsarr[H * W :].any():
                raise PayloadError("keep-mask padding bits are not zero")
            keep = bitsarr[: H * W].reshape(H, W).astype(bool)
            if int(np.count_nonzero(keep)) != n_kept:
                raise PayloadError(
                    f"mask keeps {int(np.count_nonzero(keep))} positions, header says {n_kept}"
                )
        vals = np.frombuffer(raw, dtype, C * n_kept, mask_bytes).reshape(C, n_kept)
        out = np.zeros((C, H, W), dtype)
        if keep is None:
            out[:] = vals.reshape(C, H, W)
        else:
            out[:, keep] = vals
        if dtype == np.uint8 and n_kept and int(vals.max()) >= (1 << bits):
            raise PayloadError(f"value {int(vals.max())} does not fit in {bits} bits")
        return out, keep

    def _apply_delta(self, stream_id, key_seq, syms, keep, bits):
        st = self._streams.get(stream_id)
        if st is None or st[1] != key_seq:
            have = "none" if st is None or st[1] is None else st[1]
            raise MissingKeyFrameError(
                f"delta frame of stream {stream_id!r} refers to key frame {key_seq}; "
                f"this decoder holds {have}"
            )
        ref = st[2]
        if ref.shape != syms.shape or st[3] != bits:
            raise PayloadError(
                f"delta frame shape {syms.shape} / {bits} bits differ "
                f"from key frame {ref.shape} / {st[3]} bits"
            )
        data = _unzigzag(syms, ref, bits)
        if keep is not None:
            data[:, ~keep] = 0
        return data
