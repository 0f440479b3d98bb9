"""Format version 5's own parts (docs/wire.md): stills coded with the reference's coder state only
(layout CARRY), coded scales and their error bound, the trimmed range-coder stream, and the layout
byte's rules. The golden vectors are in ``test_codec_temporal.py``."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.harness.codec import MID
from edge_runtime.codec import Decoder, Encoder, Frame, Tensor
from edge_runtime.codec.decoder import message_layout, peek_epoch_tag, peek_stream_id
from edge_runtime.codec.format import (
    Q_CARRY,
    Q_SCALE_CODED,
    decoded_scales,
    scale_code_error,
    scale_codes,
)
from edge_runtime.errors import DecodeError, HeaderError
from edge_runtime.kernels import tcoder

C, H, W = 8, 16, 16


def _stills(n: int, bits: int = 2, seed: int = 0):
    """Unrelated quantized maps (nothing to predict from one to the next): per-channel sparsity
    and scales that differ by channel, as ReLU features do."""
    rng = np.random.default_rng(seed)
    zero = np.linspace(0.3, 0.85, C)[:, None, None]
    out = []
    for _ in range(n):
        keep = rng.random((H, W)) < 0.3
        q = rng.integers(1, 1 << bits, (C, H, W)) * (rng.random((C, H, W)) > zero)
        q = (q * keep).astype(np.uint8)
        scale = (np.linspace(0.4, 1.2, C) * np.exp(rng.normal(0, 0.3, C))).astype(np.float32)
        out.append((q, scale, keep))
    return out


def _frame(i, q, s, k, bits=2, stream="edge-box-01"):
    t = Tensor(q, s, np.zeros(1, np.float32), bits, k)
    return Frame(stream, 100 + i, 1_700_000_000_000_000_000 + 33_333_333 * i, t, epoch=0xABCDEF, base=100 + i)


def _layout_byte(m: bytes) -> int:
    lay = message_layout(m, C)
    return m[lay["header"] - 1]


def test_stills_are_coded_with_the_carried_state_and_cost_less_than_alone():
    stills = _stills(40)
    enc, dec = Encoder(MID, coder="arith", temporal=True), Decoder(model_ids=[MID])
    alone = Encoder(MID, coder="arith")  # version 2, each still alone
    sizes, alone_sizes, carried = [], [], 0
    for i, (q, s, k) in enumerate(stills):
        m = enc.encode(_frame(i, q, s, k))
        f = dec.decode(m)
        assert f.version == 6 and (f.tensor.data == q).all() and (f.tensor.keep == k).all()
        if i:
            assert f.ref_seq == 99 + i
            carried += bool(_layout_byte(m) & Q_CARRY)
        enc.acknowledge("edge-box-01", decoded=100 + i)
        sizes.append(len(m))
        alone_sizes.append(len(alone.encode(_frame(i, q, s, k))))
    assert carried >= 30  # nothing to predict: the carried state is what pays
    assert sum(sizes[1:]) < 0.85 * sum(alone_sizes[1:])


def test_every_temporal_message_names_its_epoch_tag_and_older_versions_none():
    """What a receiver with workers pins a temporal stream by: the compact predicted frame (no
    stream id on the wire) and the frame coded alone give the same tag."""
    enc, alone = Encoder(MID, coder="arith", temporal=True), Encoder(MID, coder="arith")
    tags, compact = [], 0
    for i, (q, s, k) in enumerate(_stills(4)):
        m = enc.encode(_frame(i, q, s, k))
        compact += peek_stream_id(m) is None  # no stream id on the wire
        tags.append(peek_epoch_tag(m))
        enc.acknowledge("edge-box-01", decoded=100 + i)
        assert peek_epoch_tag(alone.encode(_frame(i, q, s, k))) is None  # version 2
    assert tags == [0xCDEF] * 4 and compact == 3  # the first frame alone, then compact ones
    assert peek_epoch_tag(b"ERA") is None and peek_epoch_tag(b"XYZ\x05\x00\x00\x00") is None


def test_a_still_after_a_lost_ack_is_coded_alone_and_decodes():
    stills = _stills(4, seed=1)
    enc, dec = Encoder(MID, coder="arith", temporal=True), Decoder(model_ids=[MID])
    for i, (q, s, k) in enumerate(stills):
        f = dec.decode(enc.encode(_frame(i, q, s, k)))
        assert (f.tensor.data == q).all()
        assert f.ref_seq is None  # never acknowledged: no reference, every frame alone


@pytest.mark.parametrize("bits", range(1, 9))
def test_coded_scales_keep_the_stated_error_bound(bits):
    rng = np.random.default_rng(bits)
    s = np.exp(rng.uniform(np.log(1e-4), np.log(6e4), 4000)).astype(np.float32)
    codes = scale_codes(s, bits)
    back = decoded_scales(codes, bits)
    assert np.all(np.abs(back.astype(np.float64) - s) <= scale_code_error(bits) * s)
    assert np.array_equal(scale_codes(back, bits), codes)  # the grid is closed: a code codes itself
    # and the dequantized error of the largest symbol stays under 1/16 of a step below 6 bits
    if bits < 6:
        assert ((1 << bits) - 1) * scale_code_error(bits) < 1 / 16


def test_scales_that_cannot_be_coded_fall_back_to_float16():
    assert scale_codes(np.array([0.0, 1.0], np.float32), 2) is None
    assert scale_codes(np.array([1e-6], np.float32), 2) is None
    assert scale_codes(np.array([7e4], np.float32), 2) is None
    q, s, k = _stills(1)[0]
    s[3] = 0.0  # a channel with nothing kept: scale 0
    enc, dec = Encoder(MID, coder="arith", temporal=True), Decoder(model_ids=[MID])
    m = enc.encode(_frame(0, q * (np.arange(C) != 3)[:, None, None].astype(np.uint8), s, k))
    f = dec.decode(m)
    assert not _layout_byte(m) & Q_SCALE_CODED and f.tensor.scale[3] == 0


def test_the_trimmed_stream_round_trips_and_refuses_extra_bytes():
    rng = np.random.default_rng(5)
    for t in range(200):
        b = int(rng.integers(1, 9))
        c, h, w = (int(x) for x in rng.integers(1, 7, 3))
        q = (rng.integers(0, 1 << b, (c, h, w)) * (rng.random((c, h, w)) < rng.random())).astype(np.uint8)
        keep = rng.random((h, w)) < 0.5 if t % 2 else None
        if keep is not None:
            q[:, ~keep] = 0
        pred = np.clip(q.astype(int) + rng.integers(-1, 2, q.shape), 0, (1 << b) - 1).astype(np.uint8)
        pk = rng.random((h, w)) < 0.5
        for variant in (tcoder.V5, tcoder.CARRY):
            p, st = tcoder.encode_predicted(q, keep, b, pred, pk, variant)
            assert not p.endswith(b"\0")  # trailing zeros are cut: the decoder reads them back
            full, _ = tcoder.encode_predicted(q, keep, b, pred, pk, variant & ~64)
            assert len(p) <= len(full) - 1
            sym, k2, st2 = tcoder.decode_predicted(p, q.shape, b, keep is not None, pred, pk, variant)
            assert (sym == q).all() and (st2 == st).all()
            with pytest.raises(tcoder.CoderError):
                tcoder.decode_predicted(p + b"\0", q.shape, b, keep is not None, pred, pk, variant)


def test_layout_bits_out_of_place_are_refused():
    (q, s, k), (q2, s2, k2) = _stills(2, seed=2)
    enc, dec = Encoder(MID, coder="arith", temporal=True), Decoder(model_ids=[MID])
    first = enc.encode(_frame(0, q, s, k))
    dec.decode(first)
    enc.acknowledge("edge-box-01", decoded=100)
    second = enc.encode(_frame(1, q2, s2, k2))
    assert _layout_byte(second) & Q_CARRY
    pos = message_layout(first, C)["header"] - 1  # the layout byte of a frame coded alone
    for bit in (Q_CARRY, 0x80):  # carry without a reference; a reserved bit
        bad = bytearray(first)
        bad[pos] |= bit
        with pytest.raises(HeaderError, match="layout"):
            Decoder(model_ids=[MID]).decode(_recrc(bad))
    v4 = bytearray(second)
    v4[3] = 4  # the same bytes as version 4: a bit version 4 does not know
    with pytest.raises(DecodeError):
        dec.decode(bytes(v4))
    assert (dec.decode(second).tensor.data == q2).all()  # and nothing was lost on the way


def _recrc(buf: bytearray) -> bytes:
    import zlib

    from edge_runtime.codec.format import CRC

    body = bytes(buf[:-4])
    return body + CRC.pack(zlib.crc32(body))
