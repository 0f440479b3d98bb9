from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edge_runtime import kernels
from edge_runtime.kernels import reference as ref

from .conftest import masks, rng, small_side

_values = st.one_of(
    st.floats(-1e3, 1e3, width=32),
    st.sampled_from([0.0, 1.0, -2.5]),  # constant channels and ties
)


@st.composite
def features(draw):
    c, h, w = draw(st.integers(1, 5)), draw(small_side), draw(small_side)
    x = draw(hnp.arrays(np.float32, (c, h, w), elements=_values))
    if draw(st.booleans()):
        x[0] = x[0, 0, 0]  # a constant channel
    return x


options = st.fixed_dictionaries(
    {
        "bits": st.integers(1, 8),
        "per_channel": st.booleans(),
        "clip_percentile": st.one_of(st.none(), st.floats(50.5, 100)),
    }
)


def _equal(a, b):
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


@given(st.data(), options)
def test_quantize_matches_reference(data, opts):
    x = data.draw(features())
    mask = data.draw(st.one_of(st.none(), masks(x.shape[1:])))
    bits = opts.pop("bits")
    got = kernels.quantize(x, bits, mask=mask, **opts)
    _equal(got, ref.quantize(x, bits, mask=mask, **opts))
    q, scale, offset = got
    assert q.max() <= 2**bits - 1
    assert scale.shape == offset.shape == ((x.shape[0],) if opts["per_channel"] else (1,))
    assert (scale > 0).all() and np.isfinite(scale).all()
    if mask is not None:
        assert (q[:, ~mask] == 0).all()
    deq = kernels.dequantize(q, scale, offset, mask)
    np.testing.assert_array_equal(deq, ref.dequantize(q, scale, offset, mask))
    if opts["clip_percentile"] is None:  # no clipping: error at most half a step (+ rounding)
        s = np.broadcast_to(scale, (x.shape[0],))[:, None, None]
        k = np.ones(x.shape[1:], bool) if mask is None else mask
        err = np.abs(deq - x)[:, k]
        assert (err <= (0.5 * np.broadcast_to(s, x.shape)[:, k]) * (1 + 1e-5) + 1e-4).all()


@given(st.data(), options)
def test_mask_quantize_is_zero_then_quantize(data, opts):
    x = data.draw(features())
    keep = data.draw(masks(x.shape[1:]))
    bits = opts.pop("bits")
    got = kernels.mask_quantize(x, keep, bits, **opts)
    _equal(got, ref.mask_quantize(x, keep, bits, **opts))
    _equal(got, kernels.quantize(kernels.reduce_features(x, keep, "zero"), bits, **opts))


def test_constant_channel_does_not_divide_by_zero():
    x = np.full((2, 3, 3), 7.0, np.float32)
    q, scale, offset = kernels.quantize(x, 8)
    assert (q == 0).all() and (scale == 1.0).all() and (offset == 7.0).all()
    np.testing.assert_array_equal(kernels.dequantize(q, scale, offset), x)


def test_nothing_kept():
    x = rng().standard_normal((3, 4, 4), dtype=np.float32)
    none = np.zeros((4, 4), bool)
    q, scale, offset = kernels.quantize(x, 8, mask=none)
    assert (q == 0).all() and (offset == 0).all() and (scale == 1).all()
    assert (kernels.dequantize(q, scale, offset, none) == 0).all()


def test_masked_nan_is_not_read():
    x = rng().standard_normal((2, 4, 4), dtype=np.float32)
    keep = np.ones((4, 4), bool)
    keep[1, 2] = False
    x[:, 1, 2] = np.nan
    q, _, _ = kernels.quantize(x, 8, mask=keep)
    assert q[:, 1, 2].tolist() == [0, 0]
    kernels.mask_quantize(x, keep, 8)
    with pytest.raises(ValueError, match="NaN"):
        kernels.quantize(x, 8)


def test_per_tensor_broadcasts_one_scale():
    x = rng().standard_normal((4, 8, 8), dtype=np.float32)
    q, scale, offset = kernels.quantize(x, 8, per_channel=False)
    assert scale.shape == (1,) and offset[0] == x.min()
    assert q.max() == 255 and q.min() == 0


def test_clip_percentile_clips_outliers():
    x = rng().standard_normal((1, 32, 32), dtype=np.float32)
    x[0, 0, 0] = 1000.0
    _, s_full, _ = kernels.quantize(x, 8)
    _, s_clip, _ = kernels.quantize(x, 8, clip_percentile=99.0)
    assert s_clip[0] < s_full[0] / 50


@given(st.data(), st.integers(1, 8), st.integers(1, 8))
def test_requantize_matches_reference_and_quantize(data, bits_from, bits):
    x = data.draw(features())
    c = x.shape[0]
    q, scale, offset = kernels.quantize(x, bits_from, per_channel=data.draw(st.booleans()))
    # new parameters per channel or one, as a sender's next frame would choose them
    n = data.draw(st.sampled_from([1, c]))
    positive = st.floats(0.0625, 1e3, width=32)
    new_scale = data.draw(hnp.arrays(np.float32, (n,), elements=positive))
    new_offset = data.draw(hnp.arrays(np.float32, (n,), elements=st.floats(-1e3, 1e3, width=32)))
    got = kernels.requantize(q, scale, offset, new_scale, new_offset, bits)
    np.testing.assert_array_equal(got, ref.requantize(q, scale, offset, new_scale, new_offset, bits))
    assert got.dtype == np.uint8 and got.shape == q.shape and got.max() <= 2**bits - 1
    # the same parameters back: the codes unchanged (dequantize, quantize again is exact)
    np.testing.assert_array_equal(kernels.requantize(q, scale, offset, scale, offset, bits_from), q)


def test_requantize_rejects_mismatched_parameters():
    q = np.zeros((3, 2, 2), np.uint8)
    one = np.ones(1, np.float32)
    with pytest.raises(ValueError, match="new_scale must have shape"):
        kernels.requantize(q, one, one, np.ones(2, np.float32), one, 4)
    with pytest.raises(ValueError, match="bits"):
        kernels.requantize(q, one, one, one, one, 9)
