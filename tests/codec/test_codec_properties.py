"""Round-trip properties (hypothesis): every coder, bit depth, mask and inter-frame sequence."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.harness.codec import MID, assert_tensor_equal
from edge_runtime.codec import Decoder, Encoder, Frame, Tensor

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tensors(draw, bits=None, shape=None):
    C, H, W = shape or (draw(st.integers(1, 5)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    bits = bits or draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 1 << bits, (C, H, W), dtype=np.uint8)
    q[rng.random((C, H, W)) < draw(st.floats(0, 1))] = 0
    keep = None
    if draw(st.booleans()):
        keep = rng.random((H, W)) < draw(st.floats(0, 1))
        q[:, ~keep] = 0
    n = draw(st.sampled_from([1, C]))
    scale = rng.random(n).astype(np.float32)
    offset = rng.standard_normal(draw(st.sampled_from([1, C]))).astype(np.float32)
    return Tensor(data=q, scale=scale, offset=offset, bits=bits, keep=keep)


@SETTINGS
@given(t=tensors(), coder=st.sampled_from(["raw", "zstd", "arith"]), seq=st.integers(0, 2**64 - 1),
       ts=st.integers(-(2**63), 2**63 - 1), sid=st.text(max_size=16))  # fmt: skip
def test_quantized_roundtrip(t, coder, seq, ts, sid):
    msg = Encoder(MID, coder=coder).encode(Frame(sid, seq, ts, t))
    f = Decoder(model_ids=[MID]).decode(msg)
    assert (f.stream_id, f.seq, f.capture_time_ns, f.model_id) == (sid, seq, ts, MID)
    assert_tensor_equal(t, f.tensor)


@SETTINGS
@given(shape=st.tuples(st.integers(1, 4), st.integers(1, 8), st.integers(1, 8)),
       dtype=st.sampled_from([np.float16, np.float32]), masked=st.booleans(),
       seed=st.integers(0, 999))  # fmt: skip
def test_float_roundtrip(shape, dtype, masked, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    keep = rng.random(shape[1:]) < 0.5 if masked else None
    if keep is not None:
        x[:, ~keep] = 0
    f = Decoder(model_ids=[MID]).decode(Encoder(MID).encode(Frame("f", 1, 0, Tensor(data=x, keep=keep))))
    np.testing.assert_array_equal(f.tensor.data, x)


@SETTINGS
@given(data=st.data(), coder=st.sampled_from(["zstd", "arith"]), interval=st.integers(1, 4),
       bits=st.integers(1, 8))  # fmt: skip
def test_interframe_sequence_roundtrip(data, coder, interval, bits):
    shape = (2, 5, 6)
    enc = Encoder(MID, coder=coder, keyframe_interval=interval)
    dec = Decoder(model_ids=[MID])
    for seq in range(data.draw(st.integers(1, 7))):
        t = data.draw(tensors(bits=bits, shape=shape))
        f = dec.decode(enc.encode(Frame("s", seq, 0, t)))
        assert f.keyframe == (seq % interval == 0) and f.delta == (seq % interval != 0)
        assert_tensor_equal(t, f.tensor)
