"""Edge runtime for importance-guided split inference. Never imports torch.

The Numba kernels and the offline tools live in the checkout's ``kernels/`` and ``models/`` folders
and are imported as ``edge_runtime.kernels`` and ``edge_runtime.models``: an install puts them inside
this package (``package_dir`` in setup.py); in a source checkout they sit beside it, so the
checkout's root joins this package's search path for them.
"""

from pathlib import Path as _Path

__version__ = "0.1.0"

_here = _Path(__file__).resolve().parent
if not (_here / "kernels").exists() and (_here.parent / "setup.py").is_file():
    __path__.append(str(_here.parent))  # a source checkout: kernels/ and models/ are siblings
del _Path, _here
