"""Helpers the benchmarks and the tests share: synthetic tensors and codec messages, a receiver
driver, the fault harness (processes, relay, network namespace) and its scenarios.

Both import them as ``benchmarks.harness.*`` (tests/conftest.py puts the repository root on the
path); test-only helpers stay in ``tests/helpers``.
"""
