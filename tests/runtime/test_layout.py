"""The layout without traps: kernels/ and models/ are imported under the project's one name, never
as top-level packages, in a checkout and when installed; benchmark data is not in the runtime."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ["edge_runtime", "kernels", "models", "benchmarks", "tests", "deploy", "setup.py"]


def _python_files():
    for name in SOURCES:
        p = ROOT / name
        yield from ([p] if p.is_file() else sorted(p.rglob("*.py")))


def test_no_source_imports_kernels_or_models_as_top_level_packages():
    bad = []
    for f in _python_files():
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            bad += [
                f"{f.relative_to(ROOT)}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] in ("kernels", "models")
            ]
    assert not bad, "import these as edge_runtime.kernels / edge_runtime.models:\n" + "\n".join(bad)


def test_a_checkout_imports_them_under_the_package_from_their_folders():
    code = (
        "import edge_runtime.kernels as k, edge_runtime.models.cli as m, sys;"
        "print(k.__file__); print(m.__file__); print('kernels' in sys.modules, 'models' in sys.modules)"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NUMBA_DISABLE_JIT": "1"}
    r = subprocess.run(
        [sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    kfile, mfile, loaded = r.stdout.split("\n")[:3]
    assert Path(kfile) == ROOT / "kernels" / "__init__.py" and Path(mfile) == ROOT / "models" / "cli.py"
    assert loaded == "False False"  # no second, top-level copy of either


def test_the_installed_distribution_has_no_top_level_kernels_or_models():
    try:
        files = importlib.metadata.distribution("edge-runtime").files or []
    except importlib.metadata.PackageNotFoundError:
        if os.environ.get("CI"):
            raise
        pytest.skip("edge-runtime is not installed here (CI installs it)")
    tops = {f.parts[0] for f in files if f.suffix == ".py"}
    assert "kernels" not in tops and "models" not in tops, sorted(tops)
    paths = {f.as_posix() for f in files}
    assert {"edge_runtime/kernels/__init__.py", "edge_runtime/models/cli.py"} <= paths
    assert any(p.startswith("edge_runtime/models/editor/static/") for p in paths)  # package data too


def test_benchmark_data_and_test_helpers_stay_out_of_the_runtime():
    assert not (ROOT / "edge_runtime" / "codec" / "synthetic.py").exists()
    offenders = [
        str(f.relative_to(ROOT))
        for f in (ROOT / "benchmarks").rglob("*.py")
        for node in ast.walk(ast.parse(f.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("helpers", "tests")
    ]
    offenders += [
        str(f.relative_to(ROOT)) for f in (ROOT / "benchmarks").rglob("*.py") if '/ "tests"' in f.read_text()
    ]
    assert not offenders, offenders
