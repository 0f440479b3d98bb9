"""Golden vectors: fixed messages that every decoder of format version 1 must read the same way.

Regenerate with ``EDGE_REGEN_GOLDEN=1`` (only when the format changes on purpose: bump VERSION).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import zstandard
from helpers.codec import MID, assert_tensor_equal, formula_tensor, frame

from edge_runtime.codec import Decoder, Encoder, Tensor

GOLDEN = Path(__file__).resolve().parents[1] / "expected" / "codec" / "vectors.json"


def _cases():
    f32 = np.array([[[0.5, -1.25], [0.0, 3.0]]], np.float32)
    return {
        "empty": ({}, frame(None, seq=42)),
        "raw_u8_4bit_mask": ({"coder": "raw"}, frame(formula_tensor(2, 4, 4, 4, True), seq=1)),
        "zstd_u8_8bit": ({"coder": "zstd", "level": 3}, frame(formula_tensor(3, 5, 4, 8, False), seq=2)),
        "zstd_u8_6bit_mask": ({"coder": "zstd"}, frame(formula_tensor(4, 6, 6, 6, True), seq=3)),
        "arith_u8_4bit_mask": ({"coder": "arith"}, frame(formula_tensor(4, 6, 6, 4, True), seq=4)),
        "arith_u8_8bit": ({"coder": "arith"}, frame(formula_tensor(2, 5, 7, 8, False), seq=5)),
        "raw_f32": ({"coder": "raw"}, frame(Tensor(data=f32), seq=6)),
    }


def _encode_all() -> dict:
    out = {}
    for name, (kw, fr) in _cases().items():
        out[name] = {"encoder": kw, "hex": Encoder(MID, **kw).encode(fr).hex()}
    return out


def test_golden_vectors():
    if os.environ.get("EDGE_REGEN_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        doc = {"zstd_library": ".".join(map(str, zstandard.ZSTD_VERSION)), "model_id": MID.hex(),
               "vectors": _encode_all()}  # fmt: skip
        GOLDEN.write_text(json.dumps(doc, indent=1) + "\n")
    doc = json.loads(GOLDEN.read_text())
    cases = _cases()
    assert set(doc["vectors"]) == set(cases)
    same_zstd = doc["zstd_library"] == ".".join(map(str, zstandard.ZSTD_VERSION))
    dec = Decoder(model_ids=[MID])
    for name, (kw, fr) in cases.items():
        msg = bytes.fromhex(doc["vectors"][name]["hex"])
        got = dec.decode(msg)
        assert (got.stream_id, got.seq, got.capture_time_ns) == (fr.stream_id, fr.seq, fr.capture_time_ns)
        if fr.tensor is None:
            assert got.tensor is None
        else:
            assert_tensor_equal(fr.tensor, got.tensor)
        # zstd's output may change between library versions; its decoding may not.
        if kw.get("coder", "zstd") != "zstd" or same_zstd:
            assert Encoder(MID, **kw).encode(fr) == msg, name


def test_golden_file_is_checked_in():
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN} missing: run with EDGE_REGEN_GOLDEN=1")
