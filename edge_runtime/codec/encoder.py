"""The encoder: :class:`Frame` -> one message (format version 2 by default, 6 with temporal coding,
1 or 3 to 5 on request)."""

from __future__ import annotations

import zlib

import numpy as np
import zstandard

from edge_runtime.codec.format import (
    CODERS,
    CRC,
    DT_U8,
    DTYPE_CODES,
    F_DELTA,
    F_KEYFRAME,
    F_MASK,
    F_PREDICTED,
    F_QPARAM_F32,
    F_SOURCE_TIME,
    F_TENSOR,
    I64_MAX,
    I64_MIN,
    MAGIC,
    Q_CARRY,
    Q_INIT,
    Q_OFFSET_PER_CHANNEL,
    Q_OFFSET_ZERO,
    Q_SAME_AS_REF,
    Q_SCALE_CODED,
    Q_SCALE_PER_CHANNEL,
    REF_WINDOW,
    U64_MAX,
    V1_COMMON,
    V1_TENSOR,
    V2_PREFIX,
    V3P_PREFIX,
    V4P_PREFIX,
    VERSION,
    Frame,
    RefFrame,
    Tensor,
    coder_module,
    decoded_scales,
    fits_float16,
    identity_crc,
    init_state,
    predict_symbols,
    put_scale_codes,
    put_varint,
    scale_code_base,
    scale_codes,
    serialize_values,
    stream_tag,
    zigzag,
    zz64,
)
from edge_runtime.codec.state import EncoderState

__all__ = ["Encoder"]

# version 6, frames without a reference: the flat start is no longer tried once the learned state
# has been shorter this many times running, except on every FLAT_RECHECK-th such frame
INIT_TRUST, FLAT_RECHECK = 8, 16


class Encoder:
    """Encodes :class:`Frame` objects for one model; reuses one zstd context.

    ``coder``: "zstd" (default), "arith" (context-adaptive range coder, uint8 tensors only) or
    "raw". ``level`` / ``dictionary`` apply to zstd only. ``keyframe_interval`` > 0 turns on the
    inter-frame mode for quantized tensors: every that-many tensor frames of a stream is a key frame,
    the others carry the change from the last key frame. ``version``: the format written (2, or 1
    for a receiver that reads only version 1; 6 with ``temporal``, or 5 / 4 / 3 for a receiver that
    reads only up to that version).

    ``temporal=True`` (format version 3 to 6, coder "arith"): each quantized tensor is coded against the
    stream's **reference**, the newest frame the receiver acknowledged (:meth:`acknowledge`; frames
    the edge gave up are :meth:`discard`-ed first), at most ``REF_WINDOW`` seqs back, when that is
    smaller than coding it alone (so a scene cut costs no more than an intra frame). Without an
    acknowledged reference a frame is coded alone (intra). A frame whose scale / offset equal the
    reference's sends none. ``skip_l1`` > 0 makes the skip lossy (conditional replenishment): a
    position both frames keep whose symbols differ from the prediction by at most that much in
    sum over channels keeps the prediction; the reference is what the receiver decodes, so the
    error stays bounded by ``skip_l1`` per position and never accumulates.
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
        version: int | None = None,
        temporal: bool = False,
        skip_l1: int = 0,
    ) -> None:
        if version is None:
            version = 6 if temporal else VERSION
        if not isinstance(model_id, bytes) or len(model_id) != 8:
            raise ValueError(f"model_id must be 8 bytes (sha256 prefix), got {model_id!r}")
        if coder not in CODERS:
            raise ValueError(f"unknown coder {coder!r}; choose one of {sorted(CODERS)}")
        if coder != "zstd" and (level is not None or dictionary is not None or dict_id):
            raise ValueError(f"level / dictionary / dict_id apply to coder 'zstd' only, not {coder!r}")
        if not isinstance(keyframe_interval, int) or keyframe_interval < 0:
            raise ValueError(f"keyframe_interval must be an int >= 0, got {keyframe_interval!r}")
        if version not in (1, 2, 3, 4, 5, 6):
            raise ValueError(f"version must be an int in 1..6, got {version!r}")
        if temporal and (version < 3 or coder != "arith" or keyframe_interval):
            raise ValueError(
                "temporal coding needs format version 3 to 6 and coder 'arith', and replaces "
                f"keyframe_interval (got version {version}, coder {coder!r}, interval {keyframe_interval})"
            )
        if not isinstance(skip_l1, int) or not 0 <= skip_l1 <= 255 or (skip_l1 and not temporal):
            raise ValueError(f"skip_l1 must be an int in 0..255, with temporal coding only; got {skip_l1!r}")
        self.temporal = bool(temporal)
        self.skip_l1 = skip_l1
        # measuring which contexts pay (benchmarks/rate_stream.py): bytes only, such messages are
        # not decodable; the wire is always kernels.tcoder.FULL with the state carried over
        self._variant: int | None = None
        self._carry = True
        self.model_id = model_id
        self.coder = coder
        self.version = version
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
        self.state = EncoderState()
        self.last_keyframe = False  # whether the last encoded message was a key frame
        self.last_predicted = False  # whether it was coded against a reference (temporal)
        self.last_carry = False  # ... with the reference's coder state only (version 5 CARRY)
        self.last_init = False  # coded alone from the version-6 initial state (layout INIT)
        self.last_ref_seq: int | None = None
        self.last_frame: Frame | None = None  # the last frame coded against a reference (temporal)
        self._alone = False  # encode_alone in progress: no reference, nothing noted as sent
        self._capture_ns = self._ref_capture = 0
        self._alone_n = self._init_streak = 0  # version 6: frames without a reference; INIT's wins

    def force_keyframe(self, stream_id: str) -> None:
        """Make the next tensor frame of ``stream_id`` a key frame: call it when a key frame did not
        go out (dropped, or given up unacknowledged), or the receiver may have lost its reference."""
        self.state.forget(stream_id)

    def acknowledge(
        self, stream_id: str, next_seq: int | None = None, decoded: int | None = None
    ) -> RefFrame | None:
        """An acknowledgement (temporal mode): ``decoded`` is a seq the receiver decoded (a
        version-2 ack's), else every seq below ``next_seq`` is resolved and the newest one not
        :meth:`discard`-ed is taken as delivered. Returns the reference in force."""
        return self.state.acknowledge(stream_id, next_seq, decoded)

    def discard(self, stream_id: str, seq: int) -> None:
        """Frame ``seq`` was given up (never delivered): it will not become a reference."""
        self.state.discard(stream_id, seq)

    def reference(self, stream_id: str) -> RefFrame | None:
        """The reference the next frame of ``stream_id`` would be predicted from (or None)."""
        return self.state.reference(stream_id)

    def encode_alone(self, frame: Frame) -> bytes:
        """``frame`` coded without a reference (temporal mode), to resend a predicted frame to a
        receiver that may no longer hold its reference (a reconnect). It is not noted as sent, so it
        never becomes a reference, and the ``last_*`` attributes of the last :meth:`encode` stay."""
        names = ("last_keyframe", "last_predicted", "last_carry", "last_ref_seq", "last_frame", "_capture_ns")
        saved = [getattr(self, n) for n in names]
        self._alone = True
        try:
            return self.encode(frame)
        finally:
            self._alone = False
            for n, v in zip(names, saved, strict=True):
                setattr(self, n, v)

    def encode(self, frame: Frame) -> bytes:
        """Serialize ``frame``; raises ``ValueError`` / ``TypeError`` naming a bad field."""
        sid = self._check_frame(frame)
        flags = 0
        tbytes = b""
        self.last_keyframe = self.last_predicted = self.last_carry = self.last_init = False
        self.last_ref_seq = self.last_frame = None
        t = frame.tensor
        self._capture_ns = frame.capture_time_ns
        if t is not None:
            flags |= F_TENSOR
            tflags, tbytes = self._encode_tensor(frame.stream_id, frame.seq, t)
            flags |= tflags
            self.last_keyframe = bool(tflags & F_KEYFRAME)
            if tflags & F_PREDICTED:
                self.last_frame = frame
        if self.version == 1:
            head = V1_COMMON.pack(MAGIC, 1, flags, len(sid), self.model_id, frame.seq, frame.capture_time_ns)
            body = b"".join([head, sid, tbytes])
        else:
            if frame.source_time_us is not None:
                flags |= F_SOURCE_TIME
            if flags & F_TENSOR and tbytes[0] == F_QPARAM_F32:  # marker from _encode_tensor
                flags |= F_QPARAM_F32
                tbytes = tbytes[1:]
            elif flags & F_TENSOR:
                tbytes = tbytes[1:]
            compact = bool(flags & F_PREDICTED) and self.version >= 4
            if compact:  # stream id and epoch implied by the reference's stream (and in the CRC)
                head = bytearray(V4P_PREFIX.pack(MAGIC, self.version, flags, stream_tag(frame.epoch)))
            elif flags & F_PREDICTED:  # model id and capture time relative to the reference
                head = bytearray(V3P_PREFIX.pack(MAGIC, 3, flags, frame.epoch))
            else:
                head = bytearray(
                    V2_PREFIX.pack(
                        MAGIC, self.version, flags, self.model_id, frame.epoch, frame.capture_time_ns
                    )
                )
            put_varint(head, frame.seq)
            put_varint(head, frame.seq - frame.window_base)
            put_varint(head, frame.source_index)
            if frame.source_time_us is not None:
                put_varint(head, frame.source_time_us)
            if compact:
                body = b"".join([head, tbytes])
                return body + CRC.pack(zlib.crc32(body, identity_crc(sid, frame.epoch)))
            head.append(len(sid))
            body = b"".join([head, sid, tbytes])
        return body + CRC.pack(zlib.crc32(body))

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
        if not isinstance(frame.seq, int) or not 0 <= frame.seq <= U64_MAX:
            raise ValueError(f"seq must be an int in 0..2**64-1, got {frame.seq!r}")
        if not isinstance(frame.capture_time_ns, int) or not I64_MIN <= frame.capture_time_ns <= I64_MAX:
            raise ValueError(f"capture_time_ns must be an int64, got {frame.capture_time_ns!r}")
        if not isinstance(frame.epoch, int) or not 0 <= frame.epoch <= U64_MAX:
            raise ValueError(f"epoch must be an int in 0..2**64-1, got {frame.epoch!r}")
        if not isinstance(frame.window_base, int) or not 0 <= frame.window_base <= frame.seq:
            raise ValueError(f"base must be an int in 0..seq ({frame.seq}), got {frame.base!r}")
        if not isinstance(frame.source_index, int) or not 0 <= frame.source_index <= U64_MAX:
            raise ValueError(f"source_index must be an int >= 0, got {frame.source_index!r}")
        st = frame.source_time_us
        if st is not None and (not isinstance(st, int) or not 0 <= st <= U64_MAX):
            raise ValueError(f"source_time_us must be None or an int >= 0, got {st!r}")
        return sid

    def _encode_tensor(self, stream_id: str, seq: int, t: Tensor) -> tuple[int, bytes]:
        data, keep = t.data, t.keep
        if not isinstance(data, np.ndarray) or data.ndim != 3:
            raise ValueError(
                f"tensor data must be a (C, H, W) ndarray, got {getattr(data, 'shape', type(data))}"
            )
        code = DTYPE_CODES.get(data.dtype.newbyteorder("=")) if data.dtype.kind == "f" else None
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
            ref = self.state.get(stream_id)
            if (
                ref is not None
                and ref.bits == bits
                and ref.q.shape == data.shape
                and ref.since < self.keyframe_interval
                and ref.seq <= seq
            ):
                flags |= F_DELTA
                key_seq = ref.seq
                ref.since += 1
                syms = zigzag(data.astype(np.int16) - ref.q, bits)
                if keep is not None:
                    syms[:, ~keep] = 0
            else:
                flags |= F_KEYFRAME
                self.state.set_key(stream_id, seq, data, bits)

        ref_d, same_q, carry = 0, False, False
        self._codes = None
        if self.coder == "arith" and self.version >= 3 and code == DT_U8:
            payload, ref_d, same_q, carry = self._temporal(stream_id, seq, data, keep, bits, scale, offset)
            if ref_d:
                flags |= F_PREDICTED
        elif self.coder == "arith":
            payload = coder_module().encode_map(np.ascontiguousarray(syms), keep, bits)
        else:
            raw = serialize_values(syms, keep)
            payload = raw if self.coder == "raw" else self._cctx.compress(raw)
        if self.version == 1:
            th = V1_TENSOR.pack(
                code, bits, CODERS[self.coder], C, H, W, n_kept, self.dict_id, key_seq,
                scale.size, offset.size, len(payload),
            )  # fmt: skip
            return flags, b"".join([th, scale.tobytes(), offset.tobytes(), payload])
        return flags, self._v2_tensor(
            code, bits, (C, H, W), flags, n_kept, seq, key_seq, scale, offset, payload, ref_d, same_q, carry
        )

    def _wire_params(self, scale, offset, bits, ref):
        """(scale, offset as a decoder reads them back, version-5 scale codes or None): float16-rounded
        when they fit, or in version 5 coded (``format.scale_codes``) where that is shorter."""
        zero = not offset.any()
        codes = scale_codes(scale, bits) if self.version >= 5 and zero else None
        if codes is not None:
            probe = bytearray()
            put_scale_codes(probe, codes, scale_code_base(ref, scale.size, bits))
            if len(probe) < 2 * codes.size:
                return decoded_scales(codes, bits), np.zeros(1, np.float32), codes
        params = scale if zero else np.concatenate([scale, offset])
        dt = "<f2" if fits_float16(params) else "<f4"
        s = scale.astype(dt).astype(np.float32)
        o = np.zeros(1, np.float32) if zero else offset.astype(dt).astype(np.float32)
        return s, o, None

    def _usable(self, ref, seq, data, bits):
        return (
            ref is not None
            and ref.bits == bits
            and ref.q.shape == data.shape
            and 0 < seq - ref.seq <= REF_WINDOW
        )

    def _temporal(self, sid, seq, data, keep, bits, scale, offset):
        """Versions 3 to 6: (payload, reference distance or 0, scale / offset same as the
        reference's, carry layout, scale codes or None)."""
        from edge_runtime.kernels import tcoder

        ref = self.state.reference(sid) if self.temporal and not self._alone else None
        ref = ref if self._usable(ref, seq, data, bits) else None
        v5, v6 = self.version >= 5, self.version >= 6
        ws, wo, codes = self._wire_params(scale, offset, bits, ref)
        alone = tcoder.V5 if v5 else tcoder.FULL
        x = np.ascontiguousarray(data)
        intra = pstate = None
        # the flat start: what a frame with a reference is compared with (below); without one, in
        # version 6, only until the learned state has won INIT_TRUST times running, then on every
        # FLAT_RECHECK-th such frame (each coding costs ~70 us; edge_loop.json, no acks: 367 frames/s
        # with version 5, 278 coding both on every frame, 345 with this rule)
        self._alone_n += ref is None
        if ref is not None or not v6 or self._init_streak < INIT_TRUST or self._alone_n % FLAT_RECHECK == 0:
            intra, pstate = tcoder.encode_predicted(x, keep, bits, None, None, alone)
        payload, ref_d, same, carry, init = intra, 0, False, False, False
        if ref is not None:
            same = ref.same_params(ws, wo)
            pred = predict_symbols(ref, ws, wo, bits)
            sent = data
            if self.skip_l1:
                both = ref.keep if keep is None else keep if ref.keep is None else keep & ref.keep
                d = np.abs(data.astype(np.int16) - pred).sum(axis=0)
                near = (d <= self.skip_l1) if both is None else (d <= self.skip_l1) & both
                sent = np.where(near[None], pred, data).astype(np.uint8)
            state = ref.state if self._carry else None  # the coder works on a copy
            variant = (tcoder.V5 if v5 else tcoder.FULL) if self._variant is None else self._variant
            p, st = tcoder.encode_predicted(
                np.ascontiguousarray(sent), keep, bits, pred, ref.keep, variant, state=state
            )
            if v5:  # the carried state alone (a still after a still: nothing to predict from)
                c, cst = tcoder.encode_predicted(
                    np.ascontiguousarray(data), keep, bits, pred, ref.keep, tcoder.CARRY, state=state
                )
                if len(c) < len(p):
                    p, st, sent, carry = c, cst, data, True
            saved = 2 * (ws.size + (wo.size if offset.any() else 0)) if same else 0
            # a version-4 / 5 predicted frame has a compact header: no stream id, model id or shape
            saved += (len(sid) + 8) if self.version >= 4 else 0
            # against the frame alone from the flat start, also in version 6: a frame alone ends the
            # carried state the stream has learned, and deciding against the shorter INIT coding
            # chose that more often, which cost more later (1200 validation frames of the camera
            # stream at keep 0.3 / 3 bits / skip 2: 76.3 B a frame against 75.2 with version 5;
            # deciding on the flat size, then coding the frame alone with INIT: 75.1)
            if len(p) - saved < len(intra):  # else a scene cut: the frame alone is cheaper
                payload, ref_d, data, pstate = p, seq - ref.seq, sent, st
                self.last_ref_seq = ref.seq
                self._ref_capture = ref.capture_ns
            else:
                same = carry = False
        if v6 and not ref_d:  # coded alone: from the learned initial state where that is shorter
            i, ist = tcoder.encode_predicted(x, keep, bits, None, None, alone, state=init_state(bits))
            if intra is None or len(i) < len(intra):
                payload, pstate, init = i, ist, True
            if intra is not None:
                self._init_streak = self._init_streak + 1 if init else 0
        self.last_predicted, self.last_carry, self.last_init = bool(ref_d), carry, init
        if self.temporal and not self._alone:
            k = None if keep is None else keep.copy()
            self.state.note_sent(sid, RefFrame(seq, data.copy(), k, bits, ws, wo, pstate, self._capture_ns))
        self._codes = codes
        self._code_base = scale_code_base(ref, scale.size, bits) if ref_d and codes is not None else None
        return payload, ref_d, same, carry

    def _v2_tensor(
        self, code, bits, shape, flags, n_kept, seq, key_seq, scale, offset, payload, ref_d, same_q, carry
    ) -> bytes:
        """Version-2 tensor section, prefixed by one marker byte for :meth:`encode` (F_QPARAM_F32 or 0)."""
        h = bytearray()
        if flags & F_PREDICTED:  # version 3: kind, shape and bits are the reference's
            put_varint(h, ref_d)
            put_varint(h, zz64(self._capture_ns - self._ref_capture))
        else:
            h.append(code | CODERS[self.coder] << 2 | ((bits - 1) if code == DT_U8 else 0) << 4)
            for v in shape:
                put_varint(h, v)
        if flags & F_MASK:
            put_varint(h, n_kept)
        if self.coder == "zstd":
            put_varint(h, self.dict_id)
        if flags & F_DELTA:
            put_varint(h, seq - key_seq)
        marker = 0
        if code == DT_U8:
            zero_offset = not offset.any()
            layout = (Q_SCALE_PER_CHANNEL if scale.size > 1 else 0) | (
                Q_OFFSET_ZERO if zero_offset else Q_OFFSET_PER_CHANNEL if offset.size > 1 else 0
            )
            params = scale if zero_offset else np.concatenate([scale, offset])
            if same_q:
                h.append(Q_SAME_AS_REF | (Q_CARRY if carry else 0))
                return bytes([0]) + bytes(h) + payload
            h.append(
                layout
                | (Q_CARRY if carry else 0)
                | (Q_SCALE_CODED if self._codes is not None else 0)
                | (Q_INIT if self.last_init else 0)
            )
            if self._codes is not None:
                put_scale_codes(h, self._codes, self._code_base)
            elif fits_float16(params):
                h += params.astype("<f2").tobytes()
            else:
                marker = F_QPARAM_F32
                h += params.astype("<f4").tobytes()
        return bytes([marker]) + bytes(h) + payload

    @staticmethod
    def _qparam(name: str, v: np.ndarray | None, C: int) -> np.ndarray:
        if v is None:
            raise ValueError(f"quantized tensors need {name}")
        a = np.asarray(v, dtype="<f4").reshape(-1)
        if a.size not in (1, C):
            raise ValueError(f"{name} must have shape (1,) or ({C},), got {np.shape(v)}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite, got {a}")
        if a.size > 1 and np.all(a == a[0]):
            a = a[:1]  # one value for all channels: send it once (ReLU offsets are all 0)
        return a
