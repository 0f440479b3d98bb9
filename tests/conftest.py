"""Shared fixtures. Tests import the installed package (``pip install ".[train,dev]"``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def default_bundle():
    from edge_runtime.bundle import load_bundle

    return load_bundle()
