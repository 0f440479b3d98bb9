"""Golden vectors: fixed messages that every decoder must read the same way, one file per format
version (``vectors.json``: version 1, ``vectors_v2.json``: version 2). Both are decoded by today's
decoder; each is re-encoded bit for bit by ``Encoder(version=N)``.

Regenerate with ``EDGE_REGEN_GOLDEN=1`` (only when a format changes on purpose: bump VERSION).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import zstandard

from benchmarks.harness.codec import MID, assert_tensor_equal, formula_tensor, frame
from edge_runtime.codec import Decoder, Encoder, Tensor

EXPECTED = Path(__file__).resolve().parents[1] / "expected" / "codec"
GOLDEN = {1: EXPECTED / "vectors.json", 2: EXPECTED / "vectors_v2.json"}
V2_FIELDS = {"epoch": 0x0123456789ABCDEF, "source_index": 300}


def _cases(version: int):
    f32 = np.array([[[0.5, -1.25], [0.0, 3.0]]], np.float32)
    cases = {
        "empty": ({}, frame(None, seq=42)),
        "raw_u8_4bit_mask": ({"coder": "raw"}, frame(formula_tensor(2, 4, 4, 4, True), seq=1)),
        "zstd_u8_8bit": ({"coder": "zstd", "level": 3}, frame(formula_tensor(3, 5, 4, 8, False), seq=2)),
        "zstd_u8_6bit_mask": ({"coder": "zstd"}, frame(formula_tensor(4, 6, 6, 6, True), seq=3)),
        "arith_u8_4bit_mask": ({"coder": "arith"}, frame(formula_tensor(4, 6, 6, 4, True), seq=4)),
        "arith_u8_8bit": ({"coder": "arith"}, frame(formula_tensor(2, 5, 7, 8, False), seq=5)),
        "raw_f32": ({"coder": "raw"}, frame(Tensor(data=f32), seq=6)),
    }
    if version == 1:
        return cases
    out = {
        k: (kw, dataclasses.replace(fr, **V2_FIELDS, base=max(0, fr.seq - 3)))
        for k, (kw, fr) in cases.items()
    }
    # a file source's timestamp, and a scale outside float16's normal range (sent as float32)
    t = formula_tensor(2, 4, 4, 4, True)
    out["raw_u8_source_time"] = (
        {"coder": "raw"},
        dataclasses.replace(frame(t, seq=7), source_time_us=1_234_567),
    )
    tiny = Tensor(t.data, np.array([1e-6, 2e-6], np.float32), np.array([0.5, -0.25], np.float32), 4, t.keep)
    out["raw_u8_f32_qparams"] = ({"coder": "raw"}, frame(tiny, seq=8))
    return out


def _encode_all(version: int) -> dict:
    return {
        name: {"encoder": kw, "hex": Encoder(MID, version=version, **kw).encode(fr).hex()}
        for name, (kw, fr) in _cases(version).items()
    }


@pytest.mark.parametrize("version", [1, 2])
def test_golden_vectors(version):
    path = GOLDEN[version]
    if os.environ.get("EDGE_REGEN_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"zstd_library": ".".join(map(str, zstandard.ZSTD_VERSION)), "model_id": MID.hex(),
               "version": version, "vectors": _encode_all(version)}  # fmt: skip
        path.write_text(json.dumps(doc, indent=1) + "\n")
    doc = json.loads(path.read_text())
    cases = _cases(version)
    assert set(doc["vectors"]) == set(cases)
    same_zstd = doc["zstd_library"] == ".".join(map(str, zstandard.ZSTD_VERSION))
    dec = Decoder(model_ids=[MID])
    for name, (kw, fr) in cases.items():
        msg = bytes.fromhex(doc["vectors"][name]["hex"])
        assert msg[3] == version
        got = dec.decode(msg)
        assert (got.stream_id, got.seq, got.capture_time_ns) == (fr.stream_id, fr.seq, fr.capture_time_ns)
        assert got.version == version
        if version == 2:
            assert (got.epoch, got.base, got.source_index, got.source_time_us) == (
                fr.epoch,
                fr.window_base,
                fr.source_index,
                fr.source_time_us,
            ), name
        if fr.tensor is None:
            assert got.tensor is None
        else:
            assert_tensor_equal(fr.tensor, got.tensor)
        # zstd's output may change between library versions; its decoding may not.
        if kw.get("coder", "zstd") != "zstd" or same_zstd:
            assert Encoder(MID, version=version, **kw).encode(fr) == msg, name


def test_golden_files_are_checked_in():
    for path in GOLDEN.values():
        if not path.exists():
            pytest.fail(f"{path} missing: run with EDGE_REGEN_GOLDEN=1")
