"""Shared builders for the codec tests (deterministic, no RNG streams that could change)."""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np

from edge_runtime.codec import Encoder, Frame, Tensor
from edge_runtime.codec.wire import QPARAM_REL_ERROR

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
        # version 2 sends scale / offset as float16 within QPARAM_REL_ERROR (exact in version 1)
        for x, y in ((a.scale, b.scale), (a.offset, b.offset)):
            x, y = np.broadcast_to(x, (C,)), np.broadcast_to(y, (C,))
            np.testing.assert_allclose(y, x, rtol=QPARAM_REL_ERROR, atol=0)


# ---- the fuzz corpus (tests/codec/test_codec_fuzz.py, tests/faults, benchmarks/soak.py)


def fuzz_seeds(mid: bytes = MID) -> list[bytes]:
    """Valid messages of every kind (empty, raw / zstd / arith, masked, inter-frame, float16,
    temporal)."""
    seeds = [Encoder(mid).encode(frame(None))]
    for coder in ("raw", "zstd", "arith"):
        for masked in (False, True):
            seeds.append(Encoder(mid, coder=coder).encode(frame(formula_tensor(3, 6, 5, 5, masked))))
    enc = Encoder(mid, coder="arith", keyframe_interval=4)
    seeds += [enc.encode(frame(formula_tensor(2, 4, 4, 3, True), seq=i)) for i in range(2)]
    x = np.arange(24, dtype=np.float16).reshape(2, 3, 4)
    seeds.append(Encoder(mid).encode(frame(Tensor(data=x))))
    seeds += [
        Encoder(mid, version=1, coder=c).encode(frame(formula_tensor(3, 6, 5, 5, True)))
        for c in ("raw", "arith")
    ]
    # temporal coding (version 6): a frame coded alone, then one predicted from it (compact layout)
    enc = Encoder(mid, coder="arith", temporal=True)
    for i in range(2):
        seeds.append(enc.encode(frame(formula_tensor(3, 6, 5, 3, True), seq=i)))
        enc.acknowledge("cam0", decoded=i)
    return seeds


def mutate(rng: random.Random, msg: bytes, seeds: list[bytes]) -> bytes:
    """One random mutation of ``msg``; half of the results get a valid CRC again (see :func:`reseal`)."""
    b = bytearray(msg)
    op = rng.randrange(7)
    if op == 0:  # flip bits
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # overwrite bytes with extreme values
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
    elif op == 2:  # truncate
        b = b[: rng.randrange(len(b))]
    elif op == 3:  # extend
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif op == 4:  # splice two messages
        o = rng.choice(seeds)
        b = b[: rng.randrange(len(b))] + o[rng.randrange(len(o)) :]
    elif op == 5:  # a 16- or 32-bit field set to a big value
        i = rng.randrange(max(1, len(b) - 4))
        b[i : i + 4] = rng.choice((b"\xff\xff\xff\xff", b"\xff\xff\x00\x00", b"\x00\x00\x01\x00"))
    else:  # random bytes behind a valid prefix
        k = rng.randrange(len(b))
        b = b[:k] + bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
    if len(b) >= 4 and rng.random() < 0.5:
        b = bytearray(reseal(b))
    return bytes(b)


def fuzz_message(rng: random.Random, i: int, seeds: list[bytes]) -> bytes:
    """Message ``i`` of the fuzz corpus: every 10th random bytes (every 20th behind a valid magic and
    version, resealed), the rest a mutation of a seed."""
    if i % 10 == 0:
        msg = bytes(rng.randrange(256) for _ in range(rng.randint(0, 96)))
        if i % 20 == 0 and len(msg) > 8:
            msg = reseal((b"ERW\x01" if i % 40 == 0 else b"ERW\x02") + msg[4:])
        return msg
    return mutate(rng, rng.choice(seeds), seeds)
