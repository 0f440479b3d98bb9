"""Numba kernels: pure functions on NumPy arrays (see kernels/README in the module docstrings)."""
