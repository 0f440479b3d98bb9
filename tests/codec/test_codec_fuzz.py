"""Fuzz: mutated and random messages raise DecodeError and nothing else, in bounded memory.

Half of the mutated messages get their CRC-32 recomputed, so mutations reach the header, limit,
zstd and range-decoder checks behind the checksum instead of all stopping at it.
Memory bound: with these limits (64 Ki elements, 1 MiB messages) the decoder may allocate a
few (C, H, W) arrays of at most 64 Ki elements; peak traced memory must stay under 4 MiB.
"""

from __future__ import annotations

import random
import time
import tracemalloc

import numpy as np
import pytest
from helpers import MID, formula_tensor, frame, reseal

from edge_runtime.codec import Decoder, Encoder, Limits, Tensor
from edge_runtime.errors import DecodeError

N_MESSAGES = 100_000
PEAK_BOUND = 4 << 20
LIMITS = Limits(max_elements=1 << 16, max_message_bytes=1 << 20, max_streams=16)


def _seeds() -> list[bytes]:
    seeds = [Encoder(MID).encode(frame(None))]
    for coder in ("raw", "zstd", "arith"):
        for masked in (False, True):
            seeds.append(Encoder(MID, coder=coder).encode(frame(formula_tensor(3, 6, 5, 5, masked))))
    enc = Encoder(MID, coder="arith", keyframe_interval=4)
    seeds += [enc.encode(frame(formula_tensor(2, 4, 4, 3, True), seq=i)) for i in range(2)]
    x = np.arange(24, dtype=np.float16).reshape(2, 3, 4)
    seeds.append(Encoder(MID).encode(frame(Tensor(data=x))))
    return seeds


def _mutate(rng: random.Random, msg: bytes, seeds: list[bytes]) -> bytes:
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


@pytest.mark.slow
def test_fuzz_only_decode_errors_bounded_memory():
    rng = random.Random(20240601)
    seeds = _seeds()
    dec = Decoder(model_ids=[MID], limits=LIMITS)
    for s in seeds:  # warm up (arith JIT, key frames) outside the measurement
        dec.decode(s)
    ok = bad = 0
    reasons: dict[str, int] = {}
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        for i in range(N_MESSAGES):
            if i % 10 == 0:
                msg = bytes(rng.randrange(256) for _ in range(rng.randint(0, 96)))
                if i % 20 == 0 and len(msg) > 8:
                    msg = reseal(b"ERW\x01" + msg[4:])
            else:
                msg = _mutate(rng, rng.choice(seeds), seeds)
            try:
                dec.decode(msg)
                ok += 1
            except DecodeError as e:
                bad += 1
                reasons[e.reason] = reasons.get(e.reason, 0) + 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - t0
    print(f"fuzz: {N_MESSAGES} messages in {elapsed:.1f} s, {ok} decoded, drops {reasons}, peak {peak} B")
    assert ok + bad == N_MESSAGES
    assert peak < PEAK_BOUND, f"peak traced memory {peak} B over {PEAK_BOUND} B"
    # the resealed mutations must reach every check behind the checksum
    for reason in ("header", "checksum", "model", "payload", "keyframe"):
        assert reasons.get(reason, 0) > 0, f"no message reached the {reason!r} check: {reasons}"
