"""Temporal coding (format versions 3 to 6): round trips, references only from acknowledged frames,
loss and resync, lossy skip bounds, the temporal range coder, acks v2, version 4's implied stream
identity, and the golden vectors of each version (version 5's and 6's own parts:
``test_codec_v5.py``, ``test_codec_v6.py``).

Regenerate ``tests/expected/codec/vectors_v3.json`` ... ``vectors_v6.json`` with
``EDGE_REGEN_GOLDEN=1`` (only when the format changes on purpose).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks.harness.codec import MID
from edge_runtime.codec import Decoder, Encoder, Frame, MissingKeyFrameError, Tensor
from edge_runtime.codec.decoder import message_layout
from edge_runtime.codec.format import REF_WINDOW, scale_code_error
from edge_runtime.delivery import decode_ack, encode_ack
from edge_runtime.errors import ChecksumError
from edge_runtime.kernels import tcoder

GOLDEN = Path(__file__).resolve().parents[1] / "expected" / "codec"
C, H, W = 8, 16, 16


def _sequence(n: int, bits: int = 2, seed: int = 0, change: float = 0.03):
    """A slowly changing quantized stream: (q, scale, keep) per frame, q zero outside keep."""
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 1 << bits, (C, H, W)).astype(np.uint8)
    keep = rng.random((H, W)) < 0.3
    out = []
    for i in range(n):
        flip = rng.random((C, H, W)) < change
        q = np.where(flip, rng.integers(0, 1 << bits, (C, H, W)), q).astype(np.uint8)
        if i % 5 == 4:
            keep = keep ^ (rng.random((H, W)) < 0.04)
        scale = np.full(C, 0.25, np.float32) if i % 7 else (0.2 + 0.01 * np.arange(C)).astype(np.float32)
        qq = q.copy()
        qq[:, ~keep] = 0
        out.append((qq, scale, keep.copy()))
    return out


def _msg(enc, seq, q, scale, keep, bits=2, stream="cam", epoch=7):
    t = Tensor(q, scale, np.zeros(1, np.float32), bits, keep)
    return enc.encode(Frame(stream, seq, 1_000 + seq, t, epoch=epoch))


def test_temporal_round_trip_is_lossless_and_smaller():
    seq_ = _sequence(30)
    intra_enc = Encoder(MID, coder="arith")
    enc, dec = Encoder(MID, coder="arith", temporal=True), Decoder(model_ids=[MID])
    sizes, intra, predicted = [], [], 0
    for i, (q, s, k) in enumerate(seq_):
        m = _msg(enc, i, q, s, k)
        f = dec.decode(m)
        assert f.version == 6
        np.testing.assert_array_equal(f.tensor.data, q)
        np.testing.assert_array_equal(f.tensor.keep, k)
        np.testing.assert_allclose(f.tensor.scale * np.ones(C), s, rtol=scale_code_error(2))
        predicted += f.ref_seq is not None
        if f.ref_seq is not None:
            assert f.ref_seq == i - 1  # the newest acknowledged frame
        enc.acknowledge("cam", decoded=i)
        sizes.append(len(m))
        intra.append(len(_msg(intra_enc, i, q, s, k)))
    assert predicted == 29
    assert np.mean(sizes[1:]) < 0.7 * np.mean(intra[1:])


def test_no_acknowledgement_means_frames_coded_alone():
    enc, dec = Encoder(MID, coder="arith", temporal=True), Decoder(model_ids=[MID])
    for i, (q, s, k) in enumerate(_sequence(5)):
        f = dec.decode(_msg(enc, i, q, s, k))
        assert f.ref_seq is None and not enc.last_predicted


def test_lost_frame_never_desynchronises_and_resync_is_immediate():
    """Frames lost in transit (not decoded, not acknowledged; the edge is not told): every frame that
    arrives decodes, because references are only frames the receiver said it decoded."""
    enc, dec = Encoder(MID, coder="arith", temporal=True), Decoder(model_ids=[MID])
    lost = {5, 6, 11}
    for i, (q, s, k) in enumerate(_sequence(20)):
        m = _msg(enc, i, q, s, k)
        if i in lost:
            continue
        f = dec.decode(m)
        np.testing.assert_array_equal(f.tensor.data, q)
        assert f.ref_seq is None or f.ref_seq not in lost
        enc.acknowledge("cam", decoded=i)
    assert dec.counts["decoded"] == 20 - len(lost)


def test_discarded_frame_is_never_a_reference_and_old_ones_expire():
    enc = Encoder(MID, coder="arith", temporal=True)
    seq_ = _sequence(3 + REF_WINDOW)
    _msg(enc, 0, *seq_[0])
    enc.acknowledge("cam", decoded=0)
    _msg(enc, 1, *seq_[1])
    enc.discard("cam", 1)
    assert enc.acknowledge("cam", decoded=1).seq == 0  # given up: the reference stays frame 0
    _msg(enc, 2, *seq_[2])
    assert enc.last_ref_seq == 0
    _msg(enc, 1 + REF_WINDOW, *seq_[2])  # frame 0 is more than REF_WINDOW back: coded alone
    assert not enc.last_predicted
    enc.force_keyframe("cam")
    assert enc.reference("cam") is None


def test_missing_reference_is_a_clean_decode_error():
    enc = Encoder(MID, coder="arith", temporal=True)
    seq_ = _sequence(3)
    first = _msg(enc, 0, *seq_[0])
    enc.acknowledge("cam", decoded=0)
    second = _msg(enc, 1, *seq_[1])
    assert enc.last_predicted
    dec = Decoder(model_ids=[MID])
    with pytest.raises(MissingKeyFrameError):
        dec.decode(second)  # a receiver that never saw frame 0 (restarted)
    assert dec.counts["keyframe"] == 1
    dec.decode(first)
    assert dec.decode(second).ref_seq == 0


def test_encode_alone_decodes_without_the_reference_and_never_becomes_one():
    """What a reconnect resends in place of a predicted frame: the same tensor coded alone, for a
    receiver that no longer holds the reference; the encoder's references do not change."""
    enc = Encoder(MID, coder="arith", temporal=True)
    seq_ = _sequence(3)
    _msg(enc, 0, *seq_[0])
    enc.acknowledge("cam", decoded=0)
    predicted = _msg(enc, 1, *seq_[1])
    assert enc.last_predicted and enc.last_frame is not None and enc.last_frame.seq == 1
    alone = enc.encode_alone(enc.last_frame)
    assert enc.last_predicted and enc.last_ref_seq == 0  # the last encode's outcome stays
    dec = Decoder(model_ids=[MID])  # a restarted receiver
    with pytest.raises(MissingKeyFrameError) as e:
        dec.decode(predicted)
    assert e.value.frame is None  # version 4: a stream this decoder never held has no name here
    f = dec.decode(alone)
    assert f.ref_seq is None
    np.testing.assert_array_equal(f.tensor.data, seq_[1][0])
    assert enc.reference("cam").seq == 0
    _msg(enc, 2, *seq_[2])
    assert enc.last_ref_seq == 0


def test_same_quantization_as_the_reference_sends_no_parameters():
    enc, dec = Encoder(MID, coder="arith", temporal=True), Decoder(model_ids=[MID])
    seq_ = _sequence(3)
    scale = (0.1 + 0.01 * np.arange(C)).astype(np.float32)
    dec.decode(_msg(enc, 0, seq_[0][0], scale, seq_[0][2]))
    enc.acknowledge("cam", decoded=0)
    m = _msg(enc, 1, seq_[1][0], scale, seq_[1][2])
    assert message_layout(m, channels=C)["params"] == 0
    f = dec.decode(m)
    np.testing.assert_allclose(f.tensor.scale, scale, rtol=scale_code_error(2))


@pytest.mark.parametrize("skip", [1, 2, 4])
def test_lossy_skip_error_is_bounded_per_position(skip):
    enc = Encoder(MID, coder="arith", temporal=True, skip_l1=skip)
    dec = Decoder(model_ids=[MID])
    for i, (q, s, k) in enumerate(_sequence(15, bits=3, change=0.05)):
        f = dec.decode(_msg(enc, i, q, s, k, bits=3))
        err = np.abs(f.tensor.data.astype(int) - q).sum(axis=0)
        assert err.max() <= skip
        np.testing.assert_array_equal(f.tensor.keep, k)
        enc.acknowledge("cam", decoded=i)


def test_temporal_options_are_checked():
    with pytest.raises(ValueError, match="temporal"):
        Encoder(MID, coder="zstd", temporal=True)
    with pytest.raises(ValueError, match="temporal"):
        Encoder(MID, coder="arith", temporal=True, keyframe_interval=30)
    with pytest.raises(ValueError, match="skip_l1"):
        Encoder(MID, coder="arith", skip_l1=2)


@pytest.mark.parametrize("bits", [1, 2, 5, 8])
def test_tcoder_round_trip_every_variant_and_state(bits):
    rng = np.random.default_rng(bits)
    prev_keep = rng.random((6, 7)) < 0.5
    keep = prev_keep ^ (rng.random((6, 7)) < 0.2)
    ref = rng.integers(0, 1 << bits, (3, 6, 7)).astype(np.uint8)
    sym = np.where(rng.random(ref.shape) < 0.2, rng.integers(0, 1 << bits, ref.shape), ref).astype(np.uint8)
    sym[:, ~keep] = 0
    _, state = tcoder.encode_predicted(ref, prev_keep, bits, None, None)
    for variant in range(tcoder.FULL + 1):
        for st in (None, state):
            buf, s1 = tcoder.encode_predicted(sym, keep, bits, ref, prev_keep, variant, st)
            out, k, s2 = tcoder.decode_predicted(buf, sym.shape, bits, True, ref, prev_keep, variant, st)
            np.testing.assert_array_equal(out, sym)
            np.testing.assert_array_equal(k, keep)
            np.testing.assert_array_equal(s1, s2)


def test_tcoder_corrupt_streams_raise_coder_error():
    ref = np.zeros((2, 4, 4), np.uint8)
    buf, _ = tcoder.encode_predicted(ref + 1, None, 2, ref, None)
    for bad in (b"", b"\x01" + buf[1:], buf + b"\x00", buf[:-1]):
        with pytest.raises(tcoder.CoderError):
            tcoder.decode_predicted(bad, ref.shape, 2, False, ref, None)


def test_frames_coded_alone_share_zero_references_that_stay_zero():
    # a frame with no reference is predicted from one zero pair per shape, made once and only
    # read by the coder: after encoding, decoding and a corrupt stream it is still all zero
    rng = np.random.default_rng(7)
    sym = rng.integers(0, 8, (3, 5, 6)).astype(np.uint8)
    keep = rng.random((5, 6)) < 0.6
    sym[:, ~keep] = 0
    buf, _ = tcoder.encode_predicted(sym, keep, 3, None, None, tcoder.V5)
    out, k, _ = tcoder.decode_predicted(buf, sym.shape, 3, True, None, None, tcoder.V5)
    np.testing.assert_array_equal(out, sym)
    np.testing.assert_array_equal(k, keep)
    for _ in range(20):  # garbage: decodes to something or raises CoderError, writes nothing shared
        try:
            tcoder.decode_predicted(bytes(rng.integers(1, 256, 40, np.uint8)), sym.shape, 3, True, None, None)
        except tcoder.CoderError:
            pass
    pred, prev_keep = tcoder._no_ref_arrays(sym.shape)
    assert not pred.any() and not prev_keep.any()
    assert tcoder._no_ref_arrays(sym.shape)[0] is pred  # made once
    for i in range(40):  # shapes come from messages: the cache stays bounded
        tcoder._no_ref_arrays((1, 1, i + 1))
    assert len(tcoder._NO_REF) <= 16


def test_ack_v2_round_trip_and_v1_still_read():
    a = decode_ack(encode_ack("cam-ü", 5, 12, decoded=11))
    assert a == ("cam-ü", 5, 12) and a.decoded == 11
    b = decode_ack(encode_ack("cam", 5, 0, decoded=0))
    assert b.decoded == 0
    v1 = decode_ack(encode_ack("cam", 5, 12))
    assert v1 == ("cam", 5, 12) and v1.decoded is None
    assert decode_ack(encode_ack("cam", 5, 12, decoded=3)[:-1]) is None


def _golden_cases(version):
    seq_ = _sequence(4, seed=3)
    if version >= 5:  # and an unrelated still: coded with the carried coder state only (CARRY)
        q, s, k = _sequence(1, seed=11)[0]
        seq_.append((q, (0.3 + 0.05 * np.arange(C)).astype(np.float32), k))
    enc = Encoder(MID, coder="arith", temporal=True, skip_l1=1, version=version)
    out = []
    for i, (q, s, k) in enumerate(seq_):
        out.append(_msg(enc, i, q, s, k).hex())
        enc.acknowledge("cam", decoded=i)
    return out


@pytest.mark.parametrize("version", [3, 4, 5, 6])
def test_golden_vectors(version):
    msgs = _golden_cases(version)
    path = GOLDEN / f"vectors_v{version}.json"
    if os.environ.get("EDGE_REGEN_GOLDEN"):
        path.write_text(json.dumps({"messages": msgs}, indent=1) + "\n")
    golden = json.loads(path.read_text())["messages"]
    assert msgs == golden  # the encoder writes the same bytes
    dec = Decoder(model_ids=[MID])
    refs = [None, 0, 1, 2, 3]
    for i, h in enumerate(golden):
        f = dec.decode(bytes.fromhex(h))
        assert f.version == version and f.seq == i and f.ref_seq == refs[i]
        assert (f.stream_id, f.epoch, f.capture_time_ns) == ("cam", 7, 1_000 + i)


def test_v4_predicted_frames_carry_no_stream_id_and_resolve_by_tag_and_crc():
    """Two streams whose epochs share a tag: each predicted frame resolves to its own stream (the
    CRC covers the implied identity); a frame of a stream this decoder never held is a missing
    reference, not a frame of another stream; flipping a bit is a checksum error."""
    frames = _sequence(6)
    a, b = (Encoder(MID, coder="arith", temporal=True) for _ in range(2))
    dec = Decoder(model_ids=[MID])
    ea, eb = 0x1111_0000_0000_ABCD, 0x2222_0000_0000_ABCD  # same tag 0xabcd
    last = {}
    for i, (q, s, k) in enumerate(frames):
        for enc, sid, ep in ((a, "cam-a", ea), (b, "cam-b", eb)):
            m = _msg(enc, i, q if sid == "cam-a" else q[::-1].copy(), s, k, stream=sid, epoch=ep)
            f = dec.decode(m)
            assert (f.stream_id, f.epoch) == (sid, ep) and dec.stream_id_of(m) == sid
            if i:
                assert f.ref_seq == i - 1 and sid.encode() not in m  # the compact layout
            enc.acknowledge(sid, decoded=i)
            last[sid] = m
    with pytest.raises(MissingKeyFrameError):
        Decoder(model_ids=[MID]).decode(last["cam-a"])
    bad = bytearray(last["cam-b"])
    bad[9] ^= 0x01
    with pytest.raises(ChecksumError):
        dec.decode(bytes(bad))
    assert dec.stream_id_of(bytes(bad)) is None


def test_v4_saves_the_stream_id_and_epoch_on_predicted_frames():
    seq_ = _sequence(12)
    sizes = {}
    for version in (3, 4):
        enc, dec = Encoder(MID, coder="arith", temporal=True, version=version), Decoder(model_ids=[MID])
        sizes[version] = []
        for i, (q, s, k) in enumerate(seq_):
            m = _msg(enc, i, q, s, k, stream="edge-box-01")
            assert dec.decode(m).ref_seq == (i - 1 if i else None)
            enc.acknowledge("edge-box-01", decoded=i)
            sizes[version].append(len(m))
    # identical tensors; v4 drops 1 + 11 bytes of stream id and 8 of epoch for a 2-byte tag
    assert sizes[3][0] == sizes[4][0]
    assert all(s3 - s4 == 18 for s3, s4 in zip(sizes[3][1:], sizes[4][1:], strict=True))
