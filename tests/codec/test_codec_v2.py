"""Format version 2: the new fields, compact parameters within their stated error bound, varint
checks, and version 1 still decoded by the same decoder."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from benchmarks.harness.codec import MID, formula_tensor, frame, reseal
from edge_runtime.codec import Decoder, Encoder, Tensor
from edge_runtime.codec.format import QPARAM_REL_ERROR, get_varint, put_varint
from edge_runtime.errors import HeaderError


def test_v2_carries_epoch_window_source_fields():
    fr = dataclasses.replace(
        frame(formula_tensor(3, 4, 4, 4, True), seq=1000), epoch=2**64 - 1, base=990,
        source_index=123456, source_time_us=41_708_333,
    )  # fmt: skip
    got = Decoder(model_ids=[MID]).decode(Encoder(MID, coder="arith").encode(fr))
    assert (got.epoch, got.seq, got.base, got.source_index, got.source_time_us, got.version) == (
        2**64 - 1, 1000, 990, 123456, 41_708_333, 2,
    )  # fmt: skip
    with pytest.raises(ValueError, match="base"):
        Encoder(MID).encode(dataclasses.replace(fr, base=1001))


def test_same_seq_in_two_epochs_are_two_streams_of_key_frames():
    enc_a, enc_b = Encoder(MID, keyframe_interval=4), Encoder(MID, keyframe_interval=4)
    dec = Decoder(model_ids=[MID])
    t = formula_tensor(2, 4, 4, 4, False)
    a0 = dec.decode(enc_a.encode(dataclasses.replace(frame(t, seq=0), epoch=1)))
    b0 = dec.decode(enc_b.encode(dataclasses.replace(frame(t, seq=0), epoch=2)))
    a1 = dec.decode(enc_a.encode(dataclasses.replace(frame(t, seq=1), epoch=1)))
    assert a0.keyframe and b0.keyframe and a1.delta and a1.key_seq == 0


def test_qparams_float16_within_stated_bound_and_float32_fallback():
    rng = np.random.default_rng(0)
    C, bits = 16, 8
    q = rng.integers(0, 2**bits, (C, 5, 5), dtype=np.uint8)
    scale = rng.uniform(1e-3, 3.0, C).astype(np.float32)
    offset = rng.uniform(-40, 40, C).astype(np.float32)
    t = Tensor(q, scale, offset, bits)
    dec = Decoder(model_ids=[MID])
    m2, m1 = Encoder(MID).encode(frame(t)), Encoder(MID, version=1).encode(frame(t))
    assert len(m1) - len(m2) >= 2 * 2 * C  # 2 bytes saved per parameter
    x1, x2 = dec.decode(m1).tensor.dequantize(), dec.decode(m2).tensor.dequantize()
    bound = QPARAM_REL_ERROR * (np.abs(offset) + (2**bits - 1) * np.abs(scale))
    err = np.abs(x2 - x1).max(axis=(1, 2))
    assert (err <= bound * 1.001 + 1e-6).all() and err.max() > 0
    # a scale below float16's normal range goes as float32, exactly
    tiny = Tensor(q, np.full(C, 1e-7, np.float32), offset, bits)
    got = dec.decode(Encoder(MID).encode(frame(tiny))).tensor
    np.testing.assert_array_equal(got.scale, np.full(1, 1e-7, np.float32))


def test_zero_offsets_cost_nothing():
    t = formula_tensor(8, 6, 6, 4, True)  # offset 0 (ReLU), one scale per channel
    msg = Encoder(MID, coder="arith").encode(frame(t))
    v1 = Encoder(MID, coder="arith", version=1).encode(frame(t))
    assert len(v1) - len(msg) >= 8 * 2 + 4 + 20  # f16 scales, no offset, varint header fields


def test_varints_are_checked():
    buf = bytearray()
    for v in (0, 1, 127, 128, 2**64 - 1):
        put_varint(buf, v)
    pos, out = 0, []
    while pos < len(buf):
        v, pos = get_varint(buf, pos, len(buf), "x")
        out.append(v)
    assert out == [0, 1, 127, 128, 2**64 - 1]
    with pytest.raises(HeaderError, match="minimally"):
        get_varint(b"\x80\x00", 0, 2, "x")
    with pytest.raises(HeaderError, match="past the end"):
        get_varint(b"\x80", 0, 1, "x")
    with pytest.raises(HeaderError, match="over the limit"):
        get_varint(b"\x05", 0, 1, "x", limit=4)
    good = Encoder(MID).encode(frame(None, seq=5))
    with pytest.raises(HeaderError, match="window"):  # window (seq - base) larger than seq
        Decoder(model_ids=[MID]).decode(reseal(good[:30] + b"\x06" + good[31:]))


def test_v1_and_v2_decode_side_by_side():
    t = formula_tensor(4, 6, 6, 5, True)
    dec = Decoder(model_ids=[MID])
    for version in (1, 2, 1):
        f = dec.decode(Encoder(MID, coder="zstd", version=version).encode(frame(t)))
        assert f.version == version and np.array_equal(f.tensor.data, t.data)


def test_message_layout_adds_up():
    from edge_runtime.codec.decoder import message_layout

    t = formula_tensor(8, 6, 6, 4, True)
    for version in (1, 2):
        msg = Encoder(MID, coder="arith", version=version).encode(frame(t))
        parts = message_layout(msg)
        assert sum(parts.values()) == len(msg) and parts["payload"] > 0
        assert parts["params"] == (8 * 2 if version == 2 else 8 * 4 + 4)
