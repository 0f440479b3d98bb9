"""Shared plumbing of the benchmark scripts: machine and version info, JSON output."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

_PACKAGES = ("numpy", "numba", "onnxruntime", "zstandard", "opencv-python-headless", "pyzmq", "torch", "onnx")


def git_commit() -> str | None:
    """HEAD of the checkout the benchmark runs from (``+dirty`` with uncommitted changes)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment() -> dict:
    """The machine and package versions a result was measured with."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "time_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "versions": versions,
    }


def write_result(name: str, summary: dict, parameters: dict, results, out: str | Path | None = None) -> Path:
    """Write ``benchmarks/results/<name>.json`` (or ``out``) with a top-level ``summary``."""
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "summary": summary,
        "parameters": parameters,
        "environment": environment(),
        "results": results,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return path


def run_cli(run: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run a benchmark's ``run(argv)``; a bad option or input ends with an ``error:`` line, exit 2."""
    try:
        return run(argv)
    except (ValueError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)  # noqa: T201
        return 2
