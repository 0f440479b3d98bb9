"""Shared builders for the codec tests (deterministic, no RNG streams that could change)."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from edge_runtime.codec import Frame, Tensor

MID = b"\x01\x23\x45\x67\x89\xab\xcd\xef"


def formula_tensor(C: int, H: int, W: int, bits: int, masked: bool) -> Tensor:
    """A small quantized tensor from a closed formula (golden vectors must not depend on an RNG)."""
    c, h, w = np.meshgrid(np.arange(C), np.arange(H), np.arange(W), indexing="ij")
    q = ((c * 7 + h * h + 3 * w) % (1 << bits)).astype(np.uint8)
    q[(h + w + c) % 3 == 0] = 0  # ReLU-like zeros
    keep = None
    if masked:
        hh, ww = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
        keep = (hh - H / 2) ** 2 + (ww - W / 2) ** 2 <= (min(H, W) / 3) ** 2
        q[:, ~keep] = 0
    scale = (0.01 * (np.arange(C) + 1)).astype(np.float32)
    offset = np.zeros(1, np.float32)
    return Tensor(data=q, scale=scale, offset=offset, bits=bits, keep=keep)


def frame(tensor: Tensor | None, seq: int = 1, stream: str = "cam0") -> Frame:
    return Frame(
        stream_id=stream, seq=seq, capture_time_ns=1_700_000_000_000_000_000 + seq % 1000, tensor=tensor
    )


def reseal(msg: bytes | bytearray) -> bytes:
    """Recompute the CRC-32 trailer so a mutation reaches the checks behind the checksum."""
    body = bytes(msg[:-4])
    return body + struct.pack("<I", zlib.crc32(body))


def assert_tensor_equal(a: Tensor, b: Tensor) -> None:
    assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape
    np.testing.assert_array_equal(a.data, b.data)
    assert a.bits == b.bits
    if a.keep is None:
        assert b.keep is None
    else:
        np.testing.assert_array_equal(a.keep, b.keep)
    if a.scale is not None:
        C = a.data.shape[0]
        np.testing.assert_array_equal(np.broadcast_to(a.scale, (C,)), np.broadcast_to(b.scale, (C,)))
        np.testing.assert_array_equal(np.broadcast_to(a.offset, (C,)), np.broadcast_to(b.offset, (C,)))
