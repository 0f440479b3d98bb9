"""Public names, encoder validation, and one test per decoder check (each must be able to fail)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import zstandard

import edge_runtime.codec as codec
from benchmarks.harness.codec import MID, assert_tensor_equal, formula_tensor, frame, reseal
from edge_runtime.codec import Decoder, Encoder, Frame, Limits, MissingKeyFrameError, Tensor
from edge_runtime.errors import ChecksumError, DecodeError, HeaderError, ModelMismatchError, PayloadError


def test_public_names():
    assert set(codec.__all__) == {
        "CODERS", "MAGIC", "VERSION", "Decoder", "Encoder", "Frame", "Limits", "MissingKeyFrameError",
        "Tensor", "main", "train_dictionary",
    }  # fmt: skip
    for name in codec.__all__:
        assert hasattr(codec, name)
    assert issubclass(MissingKeyFrameError, PayloadError)


def test_empty_frame_is_small_and_keeps_seq():
    # version 2: 29-byte prefix, seq / window / source index varints, L, stream id, CRC
    assert len(Encoder(MID).encode(frame(None, seq=5))) == 37 + len("cam0")
    assert len(Encoder(MID, version=1).encode(frame(None, seq=5))) == 34 + len("cam0")
    for version in (1, 2):
        msg = Encoder(MID, version=version).encode(frame(None, seq=2**64 - 1))
        f = Decoder(model_ids=[MID]).decode(msg)
        assert f.tensor is None and f.seq == 2**64 - 1 and f.model_id == MID and f.version == version


@pytest.mark.parametrize("coder", ["raw", "zstd", "arith"])
@pytest.mark.parametrize("masked", [False, True])
def test_roundtrip_each_coder(coder, masked):
    t = formula_tensor(5, 7, 9, 6, masked)
    f = Decoder(model_ids=[MID]).decode(Encoder(MID, coder=coder).encode(frame(t)))
    assert_tensor_equal(t, f.tensor)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_float_roundtrip(dtype):
    x = np.linspace(-3, 3, 2 * 4 * 5, dtype=dtype).reshape(2, 4, 5)
    keep = np.zeros((4, 5), bool)
    keep[1:3, 1:4] = True
    x[:, ~keep] = 0
    t = Tensor(data=x, keep=keep)
    f = Decoder(model_ids=None).decode(Encoder(MID).encode(frame(t)))
    assert f.tensor.data.dtype == dtype and f.tensor.bits == 0
    np.testing.assert_array_equal(f.tensor.data, x)


def test_dequantize():
    t = formula_tensor(3, 4, 4, 8, True)
    x = t.dequantize()
    assert x.dtype == np.float32
    np.testing.assert_allclose(x[:, t.keep], (t.data * t.scale[:, None, None])[:, t.keep])
    assert not x[:, ~t.keep].any()


QP = {"scale": np.ones(1), "offset": np.zeros(1)}
ZERO = np.zeros(1)


@pytest.mark.parametrize(
    "kwargs, tensor, match",
    [
        ({}, Tensor(data=np.zeros((2, 2), np.uint8), **QP, bits=8), "C, H, W"),
        ({}, Tensor(data=np.zeros((1, 2, 2), np.int32), bits=8), "dtype"),
        ({}, Tensor(data=np.full((1, 2, 2), 4, np.uint8), **QP, bits=2), "fit"),
        ({}, Tensor(data=np.ones((1, 2, 2), np.uint8), scale=np.ones(1), offset=np.zeros(1), bits=2,
                    keep=np.zeros((2, 2), bool)), "zero where keep"),
        ({}, Tensor(data=np.ones((1, 2, 2), np.uint8), bits=2), "scale"),
        ({}, Tensor(data=np.ones((2, 2, 2), np.uint8), scale=np.ones(3), offset=ZERO, bits=2), "shape"),
        ({"coder": "arith"}, Tensor(data=np.ones((1, 2, 2), np.float32)), "arith"),
    ],
)  # fmt: skip
def test_encoder_rejects_bad_tensors(kwargs, tensor, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Encoder(MID, **kwargs).encode(frame(tensor))


def test_encoder_rejects_bad_settings():
    with pytest.raises(ValueError, match="8 bytes"):
        Encoder(b"short")
    with pytest.raises(ValueError, match="unknown coder"):
        Encoder(MID, coder="lz4")
    with pytest.raises(ValueError, match="'zstd' only"):
        Encoder(MID, coder="arith", level=3)
    with pytest.raises(ValueError, match="seq"):
        Encoder(MID).encode(Frame("s", -1, 0))
    with pytest.raises(ValueError, match="model_id"):
        Encoder(MID).encode(Frame("s", 1, 0, model_id=b"x" * 8))


def _msg(coder="zstd", masked=True, **kw):
    return Encoder(MID, coder=coder, **kw).encode(frame(formula_tensor(4, 6, 6, 5, masked)))


def _dec(msg, **kw):
    return Decoder(model_ids=[MID], **kw).decode(msg)


def test_header_checks():
    good = _msg()
    with pytest.raises(HeaderError, match="magic"):
        _dec(b"XXX" + good[3:])
    with pytest.raises(HeaderError, match="version 9"):
        _dec(good[:3] + b"\x09" + good[4:])
    with pytest.raises(HeaderError, match="shorter"):
        _dec(good[:20])
    with pytest.raises(HeaderError, match="over the limit"):
        _dec(good, limits=Limits(max_message_bytes=len(good) - 1))
    with pytest.raises(HeaderError, match="bytes"):
        _dec("not bytes")
    with pytest.raises(HeaderError, match="elements"):
        _dec(good, limits=Limits(max_elements=4 * 6 * 6 - 1))
    with pytest.raises(HeaderError, match="shape"):
        _dec(good, limits=Limits(max_channels=3))
    with pytest.raises(HeaderError, match="stream id"):
        _dec(good, limits=Limits(max_stream_id=3))
    with pytest.raises(HeaderError, match="unknown flag"):
        _dec(reseal(good[:4] + bytes([good[4] | 0x80]) + good[5:]))
    v1 = _msg(version=1)
    with pytest.raises(HeaderError, match="left in message"):
        _dec(reseal(v1[:-4] + b"\x00" + v1[-4:]))  # trailing byte after the payload (v1 has its length)
    with pytest.raises(PayloadError, match="unused data"):
        _dec(reseal(good[:-4] + b"\x00" + good[-4:]))  # v2: the payload runs to the CRC
    with pytest.raises(HeaderError, match="dictionary id"):
        _dec(_msg(dictionary=b"\x00" * 300, dict_id=77))


def test_checksum_and_model_checks():
    good = _msg()
    bad = bytearray(good)
    bad[-10] ^= 0x01
    with pytest.raises(ChecksumError, match="CRC-32"):
        _dec(bytes(bad))
    with pytest.raises(ModelMismatchError, match="not served"):
        Decoder(model_ids=[b"\xff" * 8]).decode(good)


def test_zstd_declared_size_is_checked_before_decompressing():
    t = formula_tensor(4, 6, 6, 5, True)
    good = Encoder(MID, version=1).encode(frame(t))
    # replace the payload by a zstd frame that declares 1 MiB
    bomb = zstandard.ZstdCompressor().compress(b"\x00" * (1 << 20))
    plen_at = 30 + 4 + 29  # common header + "cam0" + offset of payload_len in the tensor header
    n_s, n_o = struct.unpack_from("<HH", good, plen_at - 4)
    head = good[:plen_at] + struct.pack("<I", len(bomb)) + good[plen_at + 4 : plen_at + 4 + 4 * (n_s + n_o)]
    with pytest.raises(PayloadError, match="declares 1048576 bytes"):
        _dec(reseal(head + bomb + b"\0\0\0\0"))


def test_decoder_counts_drops_by_reason():
    d = Decoder(model_ids=[MID])
    good = _msg()
    d.decode(good)
    for bad in (b"junk" * 10, good[:-1] + b"\x00"):
        with pytest.raises(DecodeError):
            d.decode(bad)
    assert d.counts["decoded"] == 1 and d.counts["header"] == 1 and d.counts["checksum"] == 1


def test_interframe_recovers_at_next_keyframe_and_counts():
    enc = Encoder(MID, coder="arith", keyframe_interval=3)
    dec = Decoder(model_ids=[MID])
    base = formula_tensor(4, 8, 8, 6, True)
    frames, msgs = [], []
    for i in range(9):
        q = base.data.copy()
        q[i % 4, base.keep] = (q[i % 4, base.keep] + i) % 64
        t = Tensor(data=q, scale=base.scale, offset=base.offset, bits=6, keep=base.keep)
        frames.append(t)
        msgs.append(enc.encode(frame(t, seq=i)))
    out = []
    for i, m in enumerate(msgs):
        if i == 3:  # lose the second key frame
            continue
        try:
            out.append((i, dec.decode(m)))
        except MissingKeyFrameError:
            out.append((i, None))
    kinds = [(i, f and (f.keyframe, f.delta)) for i, f in out]
    assert kinds == [(0, (True, False)), (1, (False, True)), (2, (False, True)), (4, None), (5, None),
                     (6, (True, False)), (7, (False, True)), (8, (False, True))]  # fmt: skip
    for i, f in out:
        if f is not None:
            assert_tensor_equal(frames[i], f.tensor)
    assert dec.missing_keyframe == 2
    assert len(msgs[1]) < len(msgs[0])


def test_interframe_state_is_bounded():
    dec = Decoder(model_ids=[MID], limits=Limits(max_streams=4))
    enc = Encoder(MID, keyframe_interval=5)
    for s in range(20):
        dec.decode(enc.encode(frame(formula_tensor(2, 3, 3, 4, False), stream=f"s{s}")))
    assert len(dec._streams) == 4


def test_dictionary_roundtrip_and_cli(tmp_path):
    from benchmarks.harness.synthetic import synthetic_tensor

    samples = []
    for i in range(40):
        q, s, o, k = synthetic_tensor(8, 16, 16, bits=4, keep_ratio=0.3, seed=i)
        samples.append(Tensor(data=q, scale=s, offset=o, bits=4, keep=k))
    d = codec.train_dictionary(samples, 2048)
    assert 256 < len(d) <= 2048
    enc = Encoder(MID, dictionary=d)
    dec = Decoder(model_ids=[MID], dictionaries={enc.dict_id: d})
    assert enc.dict_id != 0
    f = dec.decode(enc.encode(frame(samples[0])))
    assert_tensor_equal(samples[0], f.tensor)
    with pytest.raises(HeaderError, match="dictionary"):
        Decoder(model_ids=[MID]).decode(enc.encode(frame(samples[0])))
    inputs = tmp_path / "features"
    inputs.mkdir()
    for i, t in enumerate(samples[:30]):
        np.savez(inputs / f"{i}.npz", q=t.data, keep=t.keep)
    out = tmp_path / "d.bin"
    assert codec.main([str(inputs), "--size", "1024", "-o", str(out)]) == 0
    assert 256 < out.stat().st_size <= 1024
    assert codec.main(["--size", "1024", "-o", str(out)]) == 2  # no samples
