"""Shared fixtures. Tests import the installed package (``pip install ".[train,dev,cluster]"``).

Helpers the tests share with the benchmarks live in ``benchmarks/harness`` (``benchmarks.harness.codec``,
``.receiver``, ``.faults``, ``.scenarios``); test-only ones in the ``helpers`` package next to this file.
With ``--import-mode=importlib`` neither folder is on ``sys.path``, so this file appends ``tests/``
and the repository root (appended, not prepended: ``tests/kernels`` must never shadow anything, and
the installed ``edge_runtime`` stays the one imported).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_TESTS = Path(__file__).resolve().parent
for _p in (str(_TESTS), str(_TESTS.parent)):
    if _p not in sys.path:
        sys.path.append(_p)


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--soak", action="store_true", default=False, help="run the long soak tests (or set EDGE_SOAK=1)"
    )


def soak_enabled(config) -> bool:
    return bool(config.getoption("--soak")) or os.environ.get("EDGE_SOAK", "") not in ("", "0")


def pytest_collection_modifyitems(config, items) -> None:
    if soak_enabled(config):
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak or EDGE_SOAK=1")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def default_bundle():
    from edge_runtime.bundle import load_bundle

    return load_bundle()
