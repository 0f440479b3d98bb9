"""Format version 6 (docs/wire.md): a frame coded alone may start its range coder from the learned
initial state of its bit depth (layout bit INIT), the table is pinned, and the bit is refused where
it does not belong. The golden vectors are in ``test_codec_temporal.py``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks.harness.codec import MID
from edge_runtime.codec import Decoder, Encoder, Frame, Tensor
from edge_runtime.codec.decoder import message_layout
from edge_runtime.codec.format import INIT_TABLE, Q_CARRY, Q_INIT, init_state
from edge_runtime.errors import DecodeError, HeaderError
from edge_runtime.kernels import tcoder

GOLDEN = Path(__file__).resolve().parents[1] / "expected" / "codec" / "vectors_v6_init.json"
# the table is part of the format: a new one needs a new version (and golden vectors)
INIT_TABLE_SHA256 = "287a4e275b71fdb3a5646e6201be13cc044cec839e535fcb5ff040b8f6c13962"


def test_init_table_is_the_one_version_6_was_published_with():
    assert hashlib.sha256(INIT_TABLE.read_bytes()).hexdigest() == INIT_TABLE_SHA256
    for bits in range(1, 9):
        s = init_state(bits)
        assert s.shape == (2, tcoder.N_STATE) and s.dtype == np.uint16
        assert 0 < s.min() and s.max() < 1 << 16
    assert not (init_state(3) == tcoder.new_state()).all()  # learned, not the flat start
    with pytest.raises(ValueError, match="bits"):
        init_state(9)


@pytest.fixture(scope="module")
def features():
    """Quantized split tensors of the default bundle on frames of the shipped test stream, as the
    edge's defaults make them (ABN map, keep 0.3, 3 bits)."""
    from edge_runtime import datasets
    from edge_runtime.bundle import load_bundle
    from edge_runtime.config import Config
    from edge_runtime.pipeline import EdgePipeline
    from edge_runtime.sources import Captured

    bundle = load_bundle(threads=1)
    pipe = EdgePipeline(bundle, Config())
    stream = datasets.stream("fashion", "test", size=bundle.input.size[0])
    dec = Decoder(model_ids=[bundle.model_id_bytes])
    out = []
    for t in range(0, 240, 30):  # one frame per segment half: different items and cameras
        f = dec.decode(pipe.process(Captured(stream.frame(t).image, t, 0), t).message)
        out.append(f.tensor)
    return bundle.model_id_bytes, out


def _alone(t: Tensor, seq: int, version: int, mid: bytes) -> bytes:
    return Encoder(mid, coder="arith", temporal=True, version=version).encode(Frame("cam", seq, 0, t))


def test_real_features_coded_alone_start_from_the_table_and_cost_less(features):
    mid, tensors = features
    v5 = v6 = 0
    for i, t in enumerate(tensors):
        m5, m6 = _alone(t, i, 5, mid), _alone(t, i, 6, mid)
        got = Decoder(model_ids=[mid]).decode(m6)
        assert got.version == 6 and (got.tensor.data == t.data).all() and (got.tensor.keep == t.keep).all()
        lay = message_layout(m6, t.data.shape[0])
        assert m6[lay["header"] - 1] & Q_INIT
        v5, v6 = v5 + len(m5), v6 + len(m6)
    assert v6 < 0.95 * v5  # what the table is for (about 10% of a default message)


def test_the_encoder_keeps_the_flat_start_where_that_is_shorter():
    """Every symbol at its maximum (6 bits) looks nothing like the features the table learned
    from: 36 bytes from the flat start against 47 from the table."""
    q = np.full((4, 8, 8), 63, np.uint8)
    t = Tensor(q, np.full(4, 0.1, np.float32), np.zeros(1, np.float32), 6)
    enc = Encoder(MID, coder="arith", temporal=True)
    m = enc.encode(Frame("cam", 0, 0, t))
    assert not enc.last_init
    assert m[message_layout(m, 4)["header"] - 1] & Q_INIT == 0
    assert (Decoder(model_ids=[MID]).decode(m).tensor.data == t.data).all()


def test_the_frame_after_an_init_frame_predicts_from_its_end_state(features):
    """The receiver's reference state is where the INIT frame's decoding ended: the next frames
    (carried or predicted) decode, and a decoder that ignored INIT could not."""
    mid, tensors = features
    enc, dec = Encoder(mid, coder="arith", temporal=True), Decoder(model_ids=[mid])
    for i, t in enumerate(tensors[:4]):
        m = enc.encode(Frame("cam", i, i, t, epoch=5))
        assert enc.last_init == (i == 0) and enc.last_predicted == (i > 0)
        got = dec.decode(m)
        assert (got.tensor.data == t.data).all()
        enc.acknowledge("cam", decoded=i)


def test_init_is_refused_where_it_does_not_belong(features):
    mid, tensors = features
    t = tensors[0]
    m6 = _alone(t, 0, 6, mid)
    pos = message_layout(m6, t.data.shape[0])["header"] - 1
    v5 = bytearray(m6)
    v5[3] = 5  # version 5 has no INIT bit
    with pytest.raises(HeaderError, match="layout"):
        Decoder(model_ids=[mid]).decode(_recrc(v5))
    flat = bytearray(m6)
    flat[pos] &= ~Q_INIT  # the same payload read from the flat start: not what was coded
    with pytest.raises(DecodeError):
        Decoder(model_ids=[mid]).decode(_recrc(flat))
    # on a predicted frame (it starts from its reference's state)
    enc, dec = Encoder(mid, coder="arith", temporal=True), Decoder(model_ids=[mid])
    dec.decode(enc.encode(Frame("cam", 0, 0, t, epoch=5)))
    enc.acknowledge("cam", decoded=0)
    m = enc.encode(Frame("cam", 1, 1, tensors[1], epoch=5))
    assert enc.last_predicted
    bad = bytearray(m)
    lay = message_layout(m, t.data.shape[0])
    bad[lay["header"] - 1] |= Q_INIT
    with pytest.raises(HeaderError, match="init"):
        dec.decode(_recrc(bad, implied=("cam", 5)))
    assert (dec.decode(m).tensor.data == tensors[1].data).all()  # nothing was lost on the way
    assert Q_INIT & Q_CARRY == 0


def _recrc(buf: bytearray, implied: tuple[str, int] | None = None) -> bytes:
    import zlib

    from edge_runtime.codec.format import CRC, identity_crc

    body = bytes(buf[:-4])
    start = 0 if implied is None else identity_crc(implied[0].encode(), implied[1])
    return body + CRC.pack(zlib.crc32(body, start))


def test_golden_init_frame(features):
    """A real feature map (stored as symbols, so that the vector does not depend on ONNX Runtime's
    arithmetic) coded alone from the table: the encoder writes these bytes, the decoder reads the
    symbols back. The temporal golden vectors (``vectors_v6.json``) have no frame the table wins on."""
    if os.environ.get("EDGE_REGEN_GOLDEN") == "1" and not GOLDEN.exists():
        t = features[1][0]
        doc = {"q": t.data.tobytes().hex(), "shape": list(t.data.shape), "keep": np.packbits(t.keep).tobytes().hex(),
               "scale": t.scale.tolist(), "bits": t.bits}  # fmt: skip
        GOLDEN.write_text(json.dumps(doc, indent=1) + "\n")
    doc = json.loads(GOLDEN.read_text())
    C, H, W = doc["shape"]
    q = np.frombuffer(bytes.fromhex(doc["q"]), np.uint8).reshape(C, H, W).copy()
    keep = (
        np.unpackbits(np.frombuffer(bytes.fromhex(doc["keep"]), np.uint8))[: H * W].reshape(H, W).astype(bool)
    )
    t = Tensor(q, np.array(doc["scale"], np.float32), np.zeros(1, np.float32), doc["bits"], keep)
    m = _alone(t, 3, 6, MID)
    if os.environ.get("EDGE_REGEN_GOLDEN") == "1":
        doc["message"] = m.hex()
        GOLDEN.write_text(json.dumps(doc, indent=1) + "\n")
    assert m.hex() == doc["message"]
    assert m[message_layout(m, C)["header"] - 1] & Q_INIT
    got = Decoder(model_ids=[MID]).decode(m)
    assert (got.tensor.data == q).all() and (got.tensor.keep == keep).all()


def test_the_table_maker_makes_a_table_of_the_shipped_shape():
    """``init_table.build`` on two frames of the shipped stream (the table itself came from 200
    training-split frames): a state per bit depth, every estimate a probability."""
    from edge_runtime import datasets
    from edge_runtime.bundle import load_bundle
    from edge_runtime.codec.init_table import build

    bundle = load_bundle(threads=1)
    stream = datasets.stream("fashion", "validation", size=bundle.input.size[0])
    table = build(bundle, np.stack([stream.frame(t).image for t in (0, 60)]))
    shipped = np.load(INIT_TABLE)
    assert table.shape == shipped.shape and table.dtype == shipped.dtype
    assert 0 < table.min() and not (table == shipped).all()


def test_without_a_reference_the_flat_start_is_tried_until_the_table_has_won_eight_times(features):
    """Each coding costs edge time: after INIT_TRUST wins in a row the flat start is tried only on
    every FLAT_RECHECK-th frame without a reference; a map it would have won then goes from the
    table (decodable, only longer) until the next check finds it and trying both resumes."""
    from edge_runtime.codec.encoder import FLAT_RECHECK, INIT_TRUST

    mid, tensors = features
    C = tensors[0].data.shape[0]
    odd = Tensor(np.full(tensors[0].data.shape, 15, np.uint8), tensors[0].scale, np.zeros(1, np.float32), 4)
    enc, dec = Encoder(mid, coder="arith", temporal=True), Decoder(model_ids=[mid])
    init = []
    for i in range(2 * FLAT_RECHECK):
        t = odd if i >= INIT_TRUST else tensors[i % len(tensors)]
        m = enc.encode(Frame("cam", i, i, t, epoch=5))  # never acknowledged: all coded alone
        assert (dec.decode(m).tensor.data == t.data).all()
        init.append(bool(m[message_layout(m, C)["header"] - 1] & Q_INIT))
    assert all(init[:INIT_TRUST])  # real features: the table wins
    check = FLAT_RECHECK - 1  # the frame whose count is a multiple of FLAT_RECHECK (counted from 1)
    assert all(init[INIT_TRUST:check]) and not init[check]  # the saturated map, found at the check
    assert not any(init[check:])  # the streak is broken: both are tried again, flat wins
