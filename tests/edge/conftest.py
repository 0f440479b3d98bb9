"""Fixtures of the edge runtime tests: the bundle, warmed kernels, a free loopback port."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture(scope="session")
def bundle():
    from edge_runtime import kernels
    from edge_runtime.bundle import load_bundle

    kernels.warmup()
    return load_bundle(threads=1)


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
