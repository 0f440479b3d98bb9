"""The one place that holds the Numba JIT flags; every kernel in ``kernels/`` is decorated with :func:`jit`.

Flags and why:

- ``cache=True``: compiled machine code is stored on disk, so a restarted edge service starts in
  well under a second instead of recompiling (``benchmarks/bench_kernels.py`` measures both). Numba reads
  ``NUMBA_CACHE_DIR`` itself; when it is unset the cache lives in ``__pycache__`` next to the
  modules. Nothing here overrides it.
- ``fastmath=False``: results must be bit-identical run to run and across cached / fresh
  compilation; fast-math lets LLVM reassociate sums and assume no NaN, which changes results.
- ``nogil=True``: the edge pipeline may run a kernel in a worker thread next to ONNX Runtime.
- ``parallel=False``: the edge box has two cores shared with ONNX Runtime; per-frame kernels are
  memory-bound and small, and thread start-up costs more than it saves at these sizes.
- ``error_model="numpy"``: a float division by zero gives inf/NaN instead of raising inside the
  loop; wrappers validate inputs first, so the only effect is that loops need no zero-checks.
- ``boundscheck=False``: wrappers check shapes before the loops run.
- tiny per-element helpers (``jit(inline=True)``) are compiled **without the Numba runtime**
  (``_nrt=False``) and marked ``forceinline`` (LLVM's alwaysinline), so LLVM inlines them into
  their callers with no reference counting. Numba's own IR inlining (``inline="always"``, used
  before) copies a helper's array arguments into new variables, and every copy is an atomic
  incref / decref pair that Numba's pruning left inside the loop: the range coder spent about
  40 ns a binary decision on them (a loop of 1660 decisions: 68 us with the IR-inlined helper,
  3.2 us written out by hand or with this pair of flags), and the default-bundle message's
  kernel decode took 65 to 73 us against 25 to 29 us now (``tests/codec`` golden vectors: the
  same bytes). Left to LLVM without ``forceinline``, the bilinear sampler in warp_flow stayed a
  call (1.5x slower, ``benchmarks/bench_kernels.py``). A helper cannot allocate arrays. Numba's
  cache keys on the source file, not on these flags: after changing a flag, clear the cache
  (``find . -name '*.nb[ic]' -delete``). Inlining does not change results.

``tests/kernels/test_jit_flags.py`` greps the package so that no other file calls ``numba.njit``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba

__all__ = ["JIT_FLAGS", "KERNELS", "jit"]

JIT_FLAGS: dict[str, Any] = {
    "cache": True,
    "fastmath": False,
    "nogil": True,
    "parallel": False,
    "error_model": "numpy",
    "boundscheck": False,
}

#: Every function compiled through :func:`jit`, by qualified name (used by tests and warm-up checks).
KERNELS: dict[str, Any] = {}


def jit(fn: Callable | None = None, *, inline: bool = False) -> Any:
    """Compile ``fn`` with the package's JIT flags (no other per-kernel overrides, on purpose).

    ``@jit`` for kernels, ``@jit(inline=True)`` for tiny helpers called per element.
    """

    def wrap(f: Callable) -> Any:
        flags = {**JIT_FLAGS, "_nrt": False, "forceinline": True} if inline else JIT_FLAGS
        dispatcher = numba.njit(**flags)(f)
        KERNELS[f"{f.__module__}.{f.__name__}"] = dispatcher
        return dispatcher

    return wrap if fn is None else wrap(fn)
