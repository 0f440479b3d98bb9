"""Helpers shared by several test suites (and benchmarks/soak.py); see tests/conftest.py."""
