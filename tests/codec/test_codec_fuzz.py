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

import pytest

from benchmarks.harness.codec import MID, fuzz_message, fuzz_seeds
from edge_runtime.codec import Decoder, Limits
from edge_runtime.errors import DecodeError

N_MESSAGES = 100_000
PEAK_BOUND = 4 << 20
# version-3 references (mutated versions reach them) bounded too: 1 MiB of the 4
LIMITS = Limits(max_elements=1 << 16, max_message_bytes=1 << 20, max_streams=16, max_ref_bytes=1 << 20)


@pytest.mark.slow
def test_fuzz_only_decode_errors_bounded_memory():
    rng = random.Random(20240601)
    seeds = fuzz_seeds()
    dec = Decoder(model_ids=[MID], limits=LIMITS)
    for s in seeds:  # warm up (arith JIT, key frames) outside the measurement
        dec.decode(s)
    ok = bad = 0
    reasons: dict[str, int] = {}
    t0 = time.perf_counter()
    tracemalloc.start()
    try:
        for i in range(N_MESSAGES):
            msg = fuzz_message(rng, i, seeds)
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
