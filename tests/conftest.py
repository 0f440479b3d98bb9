"""Shared fixtures. Tests import the installed package (``pip install ".[train,dev,cluster]"``).

Helpers shared by several suites live in the ``helpers`` package next to this file
(``helpers.codec``, ``helpers.receiver``, ``helpers.faults``). With ``--import-mode=importlib``
test folders are not on ``sys.path``, so this file appends ``tests/`` (appended, not prepended:
``tests/kernels`` must never shadow the real ``kernels`` package).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.append(_TESTS)


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
