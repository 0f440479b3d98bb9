"""Public names, the JIT-flag contract, warm-up coverage, the Numba cache and NUMBA_DISABLE_JIT."""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from edge_runtime import kernels
from edge_runtime.kernels import _jit

ROOT = pathlib.Path(__file__).resolve().parents[2]
PKG = ROOT / "kernels"
JIT_ENABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") in ("", "0")


def test_public_names():
    assert sorted(kernels.__all__) == sorted(
        [
            "threshold_value",
            "threshold_keep_ratio",
            "threshold_percentile",
            "dilate_mask",
            "reduce_image",
            "reduce_features",
            "resize_bilinear",
            "warp_flow",
            "shift_map",
            "quantize",
            "dequantize",
            "mask_quantize",
            "requantize",
            "weighted_sum",
            "warmup",
        ]
    )
    for name in kernels.__all__:
        assert callable(getattr(kernels, name))


def _sources():
    return [(p, p.read_text()) for p in sorted(PKG.glob("*.py"))]


def test_only_jit_module_calls_numba():
    offenders = []
    for path, text in _sources():
        if path.name == "_jit.py":
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                mod = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                if mod and mod.split(".")[0] == "numba":
                    offenders.append(f"{path.name}:{node.lineno}")
        if "njit" in text or "numba.jit" in text or "fastmath" in text.replace("fastmath=False", ""):
            offenders.append(path.name)
    assert offenders == [], f"JIT flags must live in kernels/_jit.py only: {offenders}"


def test_jit_flags_are_safe():
    assert _jit.JIT_FLAGS["cache"] is True
    assert _jit.JIT_FLAGS["fastmath"] is False
    assert _jit.JIT_FLAGS["nogil"] is True


def test_kernels_import_only_numpy_and_numba():
    allowed = {"numpy", "numba", "__future__", "math", "numbers", "time", "collections", "typing"}
    for path, text in _sources():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module]
            else:
                continue
            for m in mods:
                assert m.split(".")[0] in allowed, f"{path.name} imports {m}"


def test_no_assert_for_input_checks():
    for path, text in _sources():
        assert not any(isinstance(n, ast.Assert) for n in ast.walk(ast.parse(text))), path.name


def _entry_kernels() -> set[str]:
    """Jitted functions called from plain Python (helpers called only from jitted code are compiled
    when a caller is, and LLVM inlines them there)."""
    short = {name.rsplit(".", 1)[1]: name for name in _jit.KERNELS}
    called = set()
    for path, text in _sources():
        if path.name == "reference.py":  # plain NumPy; its helpers share names with kernels
            continue
        for fn in ast.walk(ast.parse(text)):
            if not isinstance(fn, ast.FunctionDef):
                continue
            decorators = [d.func if isinstance(d, ast.Call) else d for d in fn.decorator_list]
            if any(isinstance(d, ast.Name) and d.id == "jit" for d in decorators):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in short:
                    called.add(short[node.func.id])
    return called


@pytest.mark.skipif(not JIT_ENABLED, reason="needs the JIT")
def test_warmup_compiles_every_kernel_and_later_calls_compile_nothing():
    assert kernels.warmup() >= 0.0
    entry = _entry_kernels()
    assert len(entry) >= 15
    uncompiled = [name for name in entry if not _jit.KERNELS[name].signatures]
    assert uncompiled == []
    before = {name: len(_jit.KERNELS[name].signatures) for name in entry}
    r = np.random.default_rng(0)
    imp = r.random((48, 64), dtype=np.float32)
    keep = kernels.threshold_keep_ratio(imp, np.float32(0.2))
    kernels.threshold_value(imp[:, ::2], 1)  # strided input, int threshold
    kernels.threshold_percentile(imp, 50)
    kernels.dilate_mask(keep, np.int64(2))
    img = r.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    img.flags.writeable = False  # read-only input
    for mode in ("zero", "blur", "colour", "grey"):
        kernels.reduce_image(img, keep, mode)
        kernels.reduce_image(img.astype(np.float32) / 255, keep, mode)
    feat = r.standard_normal((16, 48, 64), dtype=np.float32)
    kernels.reduce_features(feat, keep, "blur", radius=1)
    kernels.resize_bilinear(imp, 480, 640)
    kernels.warp_flow(imp, np.ones((48, 64, 2), np.float32), fill=1)
    kernels.shift_map(imp, 3, 4)
    q, s, o = kernels.quantize(feat, np.int32(4), clip_percentile=99.9, mask=keep)
    kernels.dequantize(q, s, o, keep)
    kernels.mask_quantize(feat, keep, 8, per_channel=False)
    kernels.weighted_sum([imp, feat], (1, 2), [128, 128])
    after = {name: len(_jit.KERNELS[name].signatures) for name in entry}
    assert after == before


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=full, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_numba_cache_dir_is_respected(tmp_path):
    code = "import numpy as np, kernels; kernels.threshold_value(np.ones((2, 2), np.float32), 0.5)"
    res = _run(code, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_DISABLE_JIT="0")
    assert res.returncode == 0, res.stderr
    assert list(tmp_path.rglob("*.nbi")), "no Numba index written to NUMBA_CACHE_DIR"


SMOKE = """
import numpy as np, kernels, kernels.reference as ref
r = np.random.default_rng(0)
imp = r.random((6, 7), dtype=np.float32)
keep = kernels.threshold_keep_ratio(imp, 0.4)
assert (keep == ref.threshold_keep_ratio(imp, 0.4)).all()
assert (kernels.threshold_percentile(imp, 30) == ref.threshold_percentile(imp, 30)).all()
assert (kernels.dilate_mask(keep, 1) == ref.dilate_mask(keep, 1)).all()
img = r.integers(0, 255, (6, 7, 3), dtype=np.uint8)
for mode in ("zero", "blur", "colour", "grey"):
    assert (kernels.reduce_image(img, keep, mode) == ref.reduce_image(img, keep, mode)).all(), mode
feat = r.standard_normal((2, 6, 7), dtype=np.float32)
got = kernels.reduce_features(feat, keep, "blur")
assert np.allclose(got, ref.reduce_features(feat, keep, "blur"), atol=1e-6)
assert (kernels.resize_bilinear(imp, 4, 9) == ref.resize_bilinear(imp, 4, 9)).all()
flow = r.normal(0, 2, (6, 7, 2)).astype(np.float32)
assert (kernels.warp_flow(imp, flow) == ref.warp_flow(imp, flow)).all()
for got, want in zip(kernels.quantize(feat, 5, mask=keep, clip_percentile=90),
                     ref.quantize(feat, 5, mask=keep, clip_percentile=90)):
    assert (got == want).all()
for got, want in zip(kernels.mask_quantize(feat, keep, 3), ref.mask_quantize(feat, keep, 3)):
    assert (got == want).all()
got = kernels.weighted_sum([imp, feat], [1, 2], (5, 5))
assert (got == ref.weighted_sum([imp, feat], [1, 2], (5, 5))).all()
print("ok")
"""


@pytest.mark.slow
def test_smoke_with_jit_disabled():
    res = _run(SMOKE, NUMBA_DISABLE_JIT="1")
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def test_results_are_identical_run_to_run():
    r = np.random.default_rng(5)
    imp = r.random((33, 47), dtype=np.float32)
    feat = r.standard_normal((8, 33, 47), dtype=np.float32)
    img = r.integers(0, 255, (33, 47, 3), dtype=np.uint8)

    def once():
        keep = kernels.threshold_keep_ratio(imp, 0.3)
        return [
            keep,
            kernels.reduce_image(img, keep, "blur"),
            kernels.reduce_features(feat, keep, "blur"),
            kernels.warp_flow(imp, np.full((33, 47, 2), 0.3, np.float32)),
            *kernels.mask_quantize(feat, keep, 6, clip_percentile=99.0),
        ]

    for a, b in zip(once(), once(), strict=True):
        assert a.tobytes() == b.tobytes()
