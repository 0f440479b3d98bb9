from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PUBLIC = {
    "edge_runtime.metrics": {"Counter", "Gauge", "Histogram", "Registry", "MetricsServer", "DEFAULT_BUCKETS"},
    "edge_runtime.systemd": {"Notifier", "notify"},
    "edge_runtime.sender": {"Sender", "DROP_BACKPRESSURE"},
    "edge_runtime.ratecontrol": {"RateController"},
    "edge_runtime.reduce": {"Reducer"},
    "edge_runtime.service": {"add_arguments", "run"},
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names(module):
    mod = importlib.import_module(module)
    assert set(mod.__all__) == PUBLIC[module]
    for name in mod.__all__:
        assert hasattr(mod, name)


@pytest.mark.parametrize(
    "module", ["config", "sources", "importance", "pipeline"], ids=lambda m: f"edge_runtime.{m}"
)
def test_all_names_exist(module):
    mod = importlib.import_module(f"edge_runtime.{module}")
    assert mod.__all__ and all(hasattr(mod, n) for n in mod.__all__)


def test_runtime_never_imports_torch():
    code = (
        "import sys, edge_runtime.service, edge_runtime.pipeline, edge_runtime.sources, "
        "edge_runtime.importance, edge_runtime.cli; edge_runtime.cli.build_parser(); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx'));"
        "sys.exit(str(bad) if bad else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stdout + r.stderr
