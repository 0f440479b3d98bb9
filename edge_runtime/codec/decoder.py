"""The decoder: checks every field of a message (versions 1 and 2) before it allocates anything."""

from __future__ import annotations

import collections
import logging
import zlib
from collections.abc import Iterable, Mapping

import numpy as np
import zstandard

from edge_runtime.codec.format import (
    CODER_NAMES,
    CODERS,
    CRC,
    DT_U8,
    DTYPES,
    F_DELTA,
    F_KEYFRAME,
    F_KNOWN,
    F_MASK,
    F_PREDICTED,
    F_QPARAM_F32,
    F_SOURCE_TIME,
    F_TENSOR,
    MAGIC,
    MIN_ANY,
    MIN_MESSAGE,
    Q_CARRY,
    Q_INIT,
    Q_KNOWN,
    Q_KNOWN_V3,
    Q_KNOWN_V5,
    Q_KNOWN_V6,
    Q_OFFSET_PER_CHANNEL,
    Q_OFFSET_ZERO,
    Q_SAME_AS_REF,
    Q_SCALE_CODED,
    Q_SCALE_PER_CHANNEL,
    V1_COMMON,
    V1_TENSOR,
    V2_PREFIX,
    V3P_PREFIX,
    V4P_PREFIX,
    VERSIONS,
    Frame,
    Limits,
    MissingKeyFrameError,
    RefFrame,
    Tensor,
    coder_module,
    decoded_scales,
    get_scale_codes,
    get_varint,
    identity_crc,
    init_state,
    predict_symbols,
    scale_code_base,
    unzigzag,
    unzz64,
)
from edge_runtime.codec.state import DecoderState
from edge_runtime.errors import ChecksumError, HeaderError, ModelMismatchError, PayloadError

__all__ = ["Decoder"]

log = logging.getLogger("edge_runtime.codec.wire")


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
        # (stream_id, epoch) -> last seq, key frame; LRU-bounded
        self._streams = DecoderState(self.limits.max_streams, self.limits.max_ref_bytes)

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
        if n < MIN_ANY:
            raise HeaderError(f"message is {n} bytes, shorter than the minimum {MIN_ANY}")
        if n > lim.max_message_bytes:
            raise HeaderError(f"message is {n} bytes, over the limit of {lim.max_message_bytes}")
        if bytes(mv[:3]) != MAGIC:
            raise HeaderError(f"bad magic {bytes(mv[:3])!r}, expected {MAGIC!r}")
        version = mv[3]
        if version not in VERSIONS:
            raise HeaderError(
                f"unsupported format version {version}; this decoder reads versions {', '.join(map(str, VERSIONS))}"
            )
        if n < MIN_MESSAGE[version]:
            raise HeaderError(f"message is {n} bytes, shorter than the minimum {MIN_MESSAGE[version]}")
        (crc,) = CRC.unpack_from(mv, n - 4)
        flags = mv[4]
        compact = version >= 4 and flags & F_PREDICTED
        if compact:  # stream id and epoch: the held stream whose identity completes the CRC
            ident = self._resolve(mv, n, crc)
        elif zlib.crc32(mv[: n - 4]) != crc:
            raise ChecksumError(
                f"CRC-32 mismatch: message says {crc:#010x}, content gives {zlib.crc32(mv[: n - 4]):#010x}"
            )
        if flags & ~F_KNOWN[version]:
            raise HeaderError(f"unknown flag bits {flags & ~F_KNOWN[version]:#04x}")
        tensor_flags = flags & (F_KEYFRAME | F_DELTA | F_MASK | F_QPARAM_F32 | F_PREDICTED)
        if not flags & F_TENSOR and tensor_flags:
            raise HeaderError(f"flags {flags:#04x} set on an empty frame")
        if (flags & F_KEYFRAME) and (flags & F_DELTA):
            raise HeaderError("a frame cannot be both key frame and delta")
        if flags & F_PREDICTED and flags & (F_KEYFRAME | F_DELTA):
            raise HeaderError("a predicted frame cannot be a key frame or delta as well")
        end = n - CRC.size
        fields: dict = {"version": version}
        if version == 1:
            _, _, _, sid_len, model_id, seq, t_ns = V1_COMMON.unpack_from(mv, 0)
            pos = V1_COMMON.size
        else:
            if version >= 3 and flags & F_PREDICTED:  # compact: model id, capture time from the reference
                if not flags & F_TENSOR:
                    raise HeaderError("a predicted frame must carry a tensor")
                if compact:
                    epoch, pos = ident[1], V4P_PREFIX.size
                else:
                    _, _, _, epoch = V3P_PREFIX.unpack_from(mv, 0)
                    pos = V3P_PREFIX.size
                model_id, t_ns = None, None
            else:
                if n < MIN_MESSAGE[2]:
                    raise HeaderError(f"message is {n} bytes, shorter than the minimum {MIN_MESSAGE[2]}")
                _, _, _, model_id, epoch, t_ns = V2_PREFIX.unpack_from(mv, 0)
                pos = V2_PREFIX.size
            seq, pos = get_varint(mv, pos, end, "seq")
            held, pos = get_varint(mv, pos, end, "window", seq)
            index, pos = get_varint(mv, pos, end, "source index")
            src_t = None
            if flags & F_SOURCE_TIME:
                src_t, pos = get_varint(mv, pos, end, "source time")
            fields.update(epoch=epoch, base=seq - held, source_index=index, source_time_us=src_t)
            if compact:
                sid_len = 0
            elif pos >= end:
                raise HeaderError("stream id length runs past the end of the header")
            else:
                sid_len = mv[pos]
                pos += 1
        if sid_len > lim.max_stream_id:
            raise HeaderError(f"stream id is {sid_len} bytes, over the limit of {lim.max_stream_id}")
        if pos + sid_len > end:
            raise HeaderError(f"stream id of {sid_len} bytes runs past the end of a {n}-byte message")
        try:
            stream_id = bytes(mv[pos : pos + sid_len]).decode("utf-8")
        except UnicodeDecodeError as e:
            raise HeaderError(f"stream id is not valid UTF-8: {e}") from None
        pos += sid_len
        if compact:
            stream_id = ident[0]
        if model_id is not None:
            self._check_model(model_id)
        key = (stream_id, fields.get("epoch", 0))
        tensor = None
        key_seq = 0
        self._frame_model, self._frame_t = model_id, t_ns
        if flags & F_TENSOR:
            tensor, key_seq = self._decode_tensor(mv, pos, end, flags, key, seq, version)
            model_id, t_ns = self._frame_model, self._frame_t
            if flags & F_PREDICTED:
                fields["ref_seq"] = key_seq
                key_seq = 0
        elif pos != end:
            raise HeaderError(f"empty frame has {end - pos} trailing bytes")
        self.counts["seq_gap"] += self._streams.note_seq(key, seq)
        return Frame(
            stream_id=stream_id, seq=seq, capture_time_ns=t_ns, tensor=tensor, model_id=bytes(model_id),
            keyframe=bool(flags & F_KEYFRAME), delta=bool(flags & F_DELTA), key_seq=key_seq, **fields,
        )  # fmt: skip

    def _resolve(self, mv, n: int, crc: int) -> tuple[str, int]:
        """The (stream id, epoch) of a version-4 predicted frame: among the streams held with its
        tag, the one whose identity makes the CRC-32 check."""
        tag = V4P_PREFIX.unpack_from(mv, 0)[3]
        keys = self._streams.with_tag(tag)
        if not keys:
            raise MissingKeyFrameError(
                f"predicted frame with stream tag {tag:#06x}: this decoder holds no stream with that "
                "tag (it decoded no frame of that edge start, or no longer holds it)"
            )
        body = mv[: n - 4]
        for key in keys:
            if zlib.crc32(body, identity_crc(key[0].encode("utf-8"), key[1])) == crc:
                return key
        raise ChecksumError(
            f"CRC-32 mismatch: the predicted frame with stream tag {tag:#06x} checks against none of "
            f"the {len(keys)} stream(s) held with that tag"
        )

    def stream_id_of(self, buf) -> str | None:
        """The stream id a message names (:func:`peek_stream_id`), or for a version-4 predicted
        frame the held stream it resolves to; ``None`` when neither can be told."""
        try:
            mv = memoryview(buf)
            if (
                mv.nbytes >= MIN_MESSAGE[4]
                and bytes(mv[:3]) == MAGIC
                and mv[3] in VERSIONS[3:]
                and mv[4] & F_PREDICTED
            ):
                (crc,) = CRC.unpack_from(mv, mv.nbytes - 4)
                return self._resolve(mv, mv.nbytes, crc)[0]
        except (ChecksumError, MissingKeyFrameError, TypeError, ValueError):
            return None
        return peek_stream_id(buf, self.limits.max_stream_id)

    def _check_model(self, model_id: bytes) -> None:
        if self.model_ids is not None and model_id not in self.model_ids:
            raise ModelMismatchError(
                f"model id {bytes(model_id).hex()} is not served here "
                f"(serving {sorted(m.hex() for m in self.model_ids)})"
            )

    def _tensor_header_v3p(self, mv, pos, end, flags, seq, key):
        """A compact predicted tensor header: reference distance, capture-time difference, kept
        count, layout; kind, shape and bits are the reference's, which must be held here."""
        back, pos = get_varint(mv, pos, end, "reference distance", seq)
        if back == 0:
            raise HeaderError("reference distance 0: a frame cannot be predicted from itself")
        ref = self._streams.get_ref(key, seq - back)
        if ref is None:
            raise MissingKeyFrameError(
                f"predicted frame {seq} of stream {key[0]!r} refers to frame {seq - back}, "
                "which this decoder has not decoded (or no longer holds)",
                frame=(*key, seq),
            )
        self._check_model(ref.model_id)
        dt_ns, pos = get_varint(mv, pos, end, "capture time difference")
        self._frame_model, self._frame_t = ref.model_id, ref.capture_ns + unzz64(dt_ns)
        C, H, W = ref.q.shape
        kind = DT_U8 | CODERS["arith"] << 2 | (ref.bits - 1) << 4
        return self._tensor_tail(mv, pos, end, flags, kind, (C, H, W), seq, seq - back)

    def _tensor_header_v1(self, mv, pos, end, flags):
        if end - pos < V1_TENSOR.size:
            raise HeaderError(f"tensor header needs {V1_TENSOR.size} bytes, {end - pos} left")
        dt, bits, coder, C, H, W, n_kept, dict_id, key_seq, n_s, n_o, plen = V1_TENSOR.unpack_from(mv, pos)
        pos += V1_TENSOR.size
        return dict(dt=dt, bits=bits, coder=coder, shape=(C, H, W), n_kept=n_kept, dict_id=dict_id,
                    key_seq=key_seq, n_s=n_s, n_o=n_o, plen=plen, qsize=4, zero_offset=False), pos  # fmt: skip

    def _tensor_header_v2(self, mv, pos, end, flags, seq):
        lim = self.limits
        if pos >= end:
            raise HeaderError("tensor header runs past the end of the message")
        kind = mv[pos]
        pos += 1
        if kind & 0x80:
            raise HeaderError(f"tensor kind byte {kind:#04x} has its reserved bit set")
        C, pos = get_varint(mv, pos, end, "shape C", lim.max_channels)
        H, pos = get_varint(mv, pos, end, "shape H", lim.max_height)
        W, pos = get_varint(mv, pos, end, "shape W", lim.max_width)
        return self._tensor_tail(mv, pos, end, flags, kind, (C, H, W), seq, None)

    def _tensor_tail(self, mv, pos, end, flags, kind, shape, seq, ref_seq):
        dt, coder = kind & 0x03, (kind >> 2) & 0x03
        C, H, W = shape
        n_kept = H * W
        if flags & F_MASK:
            n_kept, pos = get_varint(mv, pos, end, "n_kept", 0xFFFFFFFF)
        dict_id = 0
        if coder == CODERS["zstd"]:
            dict_id, pos = get_varint(mv, pos, end, "dict_id", 0xFFFFFFFF)
        key_seq = 0
        if flags & F_DELTA:
            back, pos = get_varint(mv, pos, end, "key frame distance", seq)
            key_seq = seq - back
        bits, n_s, n_o, zero_offset, same_ref = 0, 0, 0, False, False
        if dt == DT_U8:
            bits = ((kind >> 4) & 0x07) + 1
            if pos >= end:
                raise HeaderError("quantization layout byte runs past the end of the message")
            layout = mv[pos]
            pos += 1
            known = (Q_KNOWN, Q_KNOWN, Q_KNOWN_V3, Q_KNOWN_V3, Q_KNOWN_V5, Q_KNOWN_V6)[mv[3] - 1]
            if layout & ~known or (layout & Q_OFFSET_ZERO and layout & Q_OFFSET_PER_CHANNEL):
                raise HeaderError(f"bad quantization layout byte {layout:#04x}")
            carry, init = bool(layout & Q_CARRY), bool(layout & Q_INIT)
            if carry and ref_seq is None:
                raise HeaderError(f"layout byte {layout:#04x}: 'carry' only on a predicted frame")
            if init and (ref_seq is not None or coder != CODERS["arith"]):
                raise HeaderError(
                    f"layout byte {layout:#04x}: 'init' only on a frame coded alone with 'arith'"
                )
            coded = bool(layout & Q_SCALE_CODED)
            if coded and (not layout & Q_OFFSET_ZERO or flags & F_QPARAM_F32):
                raise HeaderError(
                    f"layout byte {layout:#04x}: coded scales only with zero offsets, not float32"
                )
            if layout & Q_SAME_AS_REF:
                if layout & ~Q_CARRY != Q_SAME_AS_REF or ref_seq is None or flags & F_QPARAM_F32:
                    raise HeaderError(
                        f"layout byte {layout:#04x}: 'same as the reference' only alone (or with "
                        "'carry'), on a predicted frame"
                    )
                same_ref = True
            else:
                n_s = C if layout & Q_SCALE_PER_CHANNEL else 1
                zero_offset = bool(layout & Q_OFFSET_ZERO)
                n_o = 0 if zero_offset else C if layout & Q_OFFSET_PER_CHANNEL else 1
        elif kind >> 4:
            raise HeaderError(f"float tensor with bits field {kind >> 4} (must be 0)")
        elif flags & F_QPARAM_F32:
            raise HeaderError("float32 scale / offset flag on a float tensor")
        else:
            carry = coded = init = False
        qsize = 0 if coded else 4 if flags & F_QPARAM_F32 else 2
        plen = end - pos - qsize * (n_s + n_o)
        if plen < 0:
            raise HeaderError(f"scale / offset ({qsize * (n_s + n_o)} B) run past the end of the message")
        return dict(dt=dt, bits=bits, coder=coder, shape=(C, H, W), n_kept=n_kept, dict_id=dict_id,
                    key_seq=key_seq, n_s=n_s, n_o=n_o, plen=plen, qsize=qsize, zero_offset=zero_offset,
                    ref_seq=ref_seq, same_ref=same_ref, carry=carry, coded=coded, init=init), pos  # fmt: skip

    def _decode_tensor(self, mv, pos, end, flags, key, seq, version):
        lim = self.limits
        if version == 1:
            h, pos = self._tensor_header_v1(mv, pos, end, flags)
        elif flags & F_PREDICTED:
            h, pos = self._tensor_header_v3p(mv, pos, end, flags, seq, key)
        else:
            h, pos = self._tensor_header_v2(mv, pos, end, flags, seq)
        dt, bits, coder, dict_id, key_seq = h["dt"], h["bits"], h["coder"], h["dict_id"], h["key_seq"]
        C, H, W = h["shape"]
        n_kept, n_s, n_o = h["n_kept"], h["n_s"], h["n_o"]
        if dt not in DTYPES:
            raise HeaderError(f"unknown dtype code {dt}")
        if coder not in CODER_NAMES:
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
        ref = None
        if h.get("ref_seq") is not None:
            if dt != DT_U8 or coder != CODERS["arith"]:
                raise HeaderError("a predicted tensor must be quantized and coded with 'arith'")
            ref = self._streams.get_ref(key, h["ref_seq"])
            if ref is None:
                raise MissingKeyFrameError(
                    f"predicted frame {seq} of stream {key[0]!r} refers to frame {h['ref_seq']}, "
                    "which this decoder has not decoded (or no longer holds)",
                    frame=(*key, seq),
                )
            if ref.q.shape != (C, H, W) or ref.bits != bits:
                raise PayloadError(
                    f"predicted frame shape {(C, H, W)} / {bits} bits differ from its reference's "
                    f"{ref.q.shape} / {ref.bits} bits"
                )
        if dt == DT_U8:
            if not 1 <= bits <= 8:
                raise HeaderError(f"bits {bits} outside 1..8 for a quantized tensor")
            if h.get("same_ref"):
                pass
            elif n_s not in (1, C) or n_o not in ((0, 1, C) if h["zero_offset"] else (1, C)):
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
            raise HeaderError(f"dictionary id {dict_id} with coder {CODER_NAMES[coder]!r}")
        if dict_id not in self._dctx:
            raise HeaderError(f"unknown zstd dictionary id {dict_id}; known: {sorted(self._dctx)}")
        if key_seq and not flags & F_DELTA:
            raise HeaderError(f"key_seq {key_seq} set on a frame that is not a delta")
        qs = h["qsize"]
        qbytes = qs * (n_s + n_o)
        plen = h["plen"]
        if end - pos != qbytes + plen:
            raise HeaderError(
                f"declared scale/offset ({qbytes} B) + payload ({plen} B) "
                f"!= {end - pos} bytes left in message"
            )
        qdt = "<f4" if qs == 4 else "<f2"
        finite = True  # of what arrives as float bits (coded scales are finite normals by construction)
        if h.get("coded"):  # version 5: varint scale codes, against the reference's where predicted
            codes, after = get_scale_codes(mv, pos, end, n_s, scale_code_base(ref, n_s, bits), bits)
            scale, qbytes = decoded_scales(codes, bits), after - pos
        else:
            scale = np.frombuffer(mv, qdt, n_s, pos).astype(np.float32)
            finite = np.isfinite(scale).all()
        if h.get("same_ref"):
            scale, offset = ref.scale, ref.offset
        elif h["zero_offset"]:
            offset = np.zeros(1, np.float32)
        else:
            offset = np.frombuffer(mv, qdt, n_o, pos + qs * n_s).astype(np.float32)
            finite = finite and np.isfinite(offset).all()
        if not finite:
            raise HeaderError("scale / offset must be finite")
        payload = mv[pos + qbytes : end]
        dtype = DTYPES[dt]
        pstate = None
        if version >= 3 and dt == DT_U8 and coder == CODERS["arith"]:
            syms, keep, pstate = self._decode_predicted(
                payload, ref, (C, H, W), bits, has_mask, n_kept, scale, offset, version, h.get("carry"),
                h.get("init"),
            )  # fmt: skip
            key_seq = 0 if ref is None else ref.seq
        else:
            syms, keep = self._decode_payload(
                payload, coder, dict_id, dtype, (C, H, W), bits, has_mask, n_kept
            )
        data = syms
        if flags & F_DELTA:
            data = self._apply_delta(key, key_seq, syms, keep, bits)
        if flags & F_KEYFRAME:
            self._streams.set_key(key, seq, data, bits)
        if version >= 3 and dt == DT_U8 and coder == CODERS["arith"]:
            ref_frame = RefFrame(
                seq, data, keep, bits, scale, offset, pstate, self._frame_t, bytes(self._frame_model)
            )
            self._streams.add_ref(key, ref_frame)
        if dt == DT_U8:
            return Tensor(data=data, scale=scale, offset=offset, bits=bits, keep=keep), key_seq
        return Tensor(data=data.astype(dtype.newbyteorder("="), copy=False), keep=keep), key_seq

    def _decode_predicted(
        self, payload, ref, shape, bits, has_mask, n_kept, scale, offset, version, carry, init
    ):
        from edge_runtime.kernels import tcoder

        variant = tcoder.CARRY if carry else tcoder.V5 if version >= 5 else tcoder.FULL
        if len(payload) > tcoder.max_predicted_size(shape, bits):
            raise PayloadError(f"arith payload of {len(payload)} bytes is longer than any coding of {shape}")
        pred = None if ref is None else predict_symbols(ref, scale, offset, bits)
        if init:
            state = init_state(bits)
        else:
            state = None if ref is None else ref.state  # the coder works on a copy
        try:
            syms, keep, state = tcoder.decode_predicted(
                payload, shape, bits, has_mask, pred, None if ref is None else ref.keep, variant, state=state
            )
        except tcoder.CoderError as e:
            raise PayloadError(str(e)) from None
        if has_mask and int(np.count_nonzero(keep)) != n_kept:
            raise PayloadError(f"mask keeps {int(np.count_nonzero(keep))} positions, header says {n_kept}")
        return syms, keep, state

    def _decode_payload(self, payload, coder, dict_id, dtype, shape, bits, has_mask, n_kept):
        C, H, W = shape
        if coder == CODERS["arith"]:
            cm = coder_module()
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

    def _apply_delta(self, key, key_seq, syms, keep, bits):
        st = self._streams.peek(key)
        if st is None or st.key_seq != key_seq:
            have = "none" if st is None or st.key_seq is None else st.key_seq
            raise MissingKeyFrameError(
                f"delta frame of stream {key[0]!r} refers to key frame {key_seq}; this decoder holds {have}"
            )
        ref = st.ref
        if ref.shape != syms.shape or st.bits != bits:
            raise PayloadError(
                f"delta frame shape {syms.shape} / {bits} bits differ "
                f"from key frame {ref.shape} / {st.bits} bits"
            )
        data = unzigzag(syms, ref, bits)
        if keep is not None:
            data[:, ~keep] = 0
        return data


def peek_epoch_tag(buf) -> int | None:
    """The 16-bit tag of the epoch (``epoch & 0xFFFF``) a version-3+ message names: every temporal
    message carries it, the compact predicted frames of version 4+ as their stream's only name;
    ``None`` for older versions or an unreadable header. No check beyond bounds."""
    mv = memoryview(buf)
    if mv.nbytes < 5 or bytes(mv[:3]) != MAGIC or mv[3] not in VERSIONS or mv[3] < 3:
        return None
    prefix, field = (V4P_PREFIX if mv[3] >= 4 else V3P_PREFIX, 3) if mv[4] & F_PREDICTED else (V2_PREFIX, 4)
    if mv.nbytes < prefix.size:
        return None
    return prefix.unpack_from(mv, 0)[field] & 0xFFFF


def peek_stream_id(buf, max_len: int = 64) -> str | None:
    """The stream id named in a message's header (either version), best effort and without any
    check beyond bounds, for accounting a message that did not decode; ``None`` when unreadable."""
    try:
        mv = memoryview(buf)
        n = mv.nbytes
        if n < MIN_ANY or bytes(mv[:3]) != MAGIC:
            return None
        if mv[3] == 1:
            pos = V1_COMMON.size
            sid_len = mv[5]
        elif mv[3] in VERSIONS[1:]:
            if mv[3] >= 4 and mv[4] & F_PREDICTED:
                return None  # no stream id on the wire: Decoder.stream_id_of resolves it
            end = n - CRC.size
            pos = V3P_PREFIX.size if mv[3] == 3 and mv[4] & F_PREDICTED else V2_PREFIX.size
            for name in ("seq", "window", "source index"):
                _, pos = get_varint(mv, pos, end, name)
            if mv[4] & F_SOURCE_TIME:
                _, pos = get_varint(mv, pos, end, "source time")
            sid_len = mv[pos]
            pos += 1
        else:
            return None
        if sid_len > max_len or pos + sid_len > n:
            return None
        return bytes(mv[pos : pos + sid_len]).decode("utf-8")
    except (HeaderError, IndexError, TypeError, ValueError, UnicodeDecodeError):
        return None


def message_layout(buf, channels: int | None = None) -> dict[str, int]:
    """Bytes per part of a message (any version), for benchmarks: ``header`` (prefix, varints,
    stream id, tensor header), ``params`` (scale / offset), ``payload`` (the coded tensor) and
    ``crc``. Parses the headers only (no CRC or payload check); raises HeaderError. A version-3
    predicted frame does not name its channel count: pass ``channels`` for one with per-channel
    scale / offset."""
    dec = Decoder(model_ids=None)
    mv = memoryview(buf)
    n = mv.nbytes
    end = n - CRC.size
    version, flags = mv[3], mv[4]
    compact = version >= 3 and flags & F_PREDICTED
    if version == 1:
        pos = V1_COMMON.size + mv[5]
        seq = 0
    else:
        pos = (V4P_PREFIX.size if version >= 4 else V3P_PREFIX.size) if compact else V2_PREFIX.size
        seq, pos = get_varint(mv, pos, end, "seq")
        for name in ("window", "source index"):
            _, pos = get_varint(mv, pos, end, name)
        if flags & F_SOURCE_TIME:
            _, pos = get_varint(mv, pos, end, "source time")
        if not (compact and version >= 4):
            pos += 1 + mv[pos]
    if not flags & F_TENSOR:
        return {"header": pos, "params": 0, "payload": 0, "crc": CRC.size}
    if compact:
        for name in ("reference distance", "capture time difference"):
            _, pos = get_varint(mv, pos, end, name)
        if flags & F_MASK:
            _, pos = get_varint(mv, pos, end, "n_kept")
        layout = mv[pos]
        pos += 1
        qsize = 4 if flags & F_QPARAM_F32 else 2
        if layout & Q_SAME_AS_REF:
            params = 0
        else:
            per = layout & (Q_SCALE_PER_CHANNEL | Q_OFFSET_PER_CHANNEL)
            if per and channels is None:
                raise HeaderError("a predicted frame with per-channel scale / offset: pass channels=")
            c = channels or 1
            n_s = c if layout & Q_SCALE_PER_CHANNEL else 1
            n_o = 0 if layout & Q_OFFSET_ZERO else c if layout & Q_OFFSET_PER_CHANNEL else 1
            params = _varints_len(mv, pos, end, n_s) if layout & Q_SCALE_CODED else qsize * (n_s + n_o)
        return {"header": pos, "params": params, "payload": end - pos - params, "crc": CRC.size}
    if version == 1:
        h, pos = dec._tensor_header_v1(mv, pos, end, flags)
    else:
        h, pos = dec._tensor_header_v2(mv, pos, end, flags, seq)
    params = _varints_len(mv, pos, end, h["n_s"]) if h.get("coded") else h["qsize"] * (h["n_s"] + h["n_o"])
    return {"header": pos, "params": params, "payload": end - pos - params, "crc": CRC.size}


def _varints_len(mv, pos: int, end: int, n: int) -> int:
    start = pos
    for _ in range(n):
        _, pos = get_varint(mv, pos, end, "scale code")
    return pos - start
