"""Test-only helpers (pytest skips and requirements); shared ones are in benchmarks/harness."""
