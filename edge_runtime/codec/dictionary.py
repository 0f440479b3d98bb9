"""zstd dictionaries trained on a model's own feature maps (``edge-runtime train-dict``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import zstandard

from edge_runtime import atomic
from edge_runtime.codec.wire import Tensor, serialize_values

__all__ = ["train_dictionary", "main"]


def _sample_bytes(s) -> bytes:
    if isinstance(s, (bytes, bytearray, memoryview)):
        return bytes(s)
    if isinstance(s, Tensor):
        return serialize_values(s.data, s.keep)
    if isinstance(s, np.ndarray):
        return serialize_values(s, None)
    raise TypeError(f"samples must be bytes, Tensor or ndarray, got {type(s).__name__}")


def train_dictionary(samples: Iterable, size: int) -> bytes:
    """Train a zstd dictionary of at most ``size`` bytes.

    ``samples``: Tensors (their kept values, serialised exactly as the ``zstd`` coder sees them),
    (C, H, W) arrays (no mask), or the bytes themselves. Raises ``ValueError`` when zstd cannot
    train from them (typically too few or too uniform samples).
    """
    if not isinstance(size, int) or size < 256:
        raise ValueError(f"dictionary size must be an int >= 256 bytes, got {size!r}")
    data = [_sample_bytes(s) for s in samples]
    if len(data) < 8:
        raise ValueError(f"need at least 8 samples to train a dictionary, got {len(data)}")
    try:
        d = zstandard.train_dictionary(size, data)
    except zstandard.ZstdError as e:
        raise ValueError(
            f"zstd could not train a {size}-byte dictionary from {len(data)} samples: {e}"
        ) from None
    return d.as_bytes()


def _load_samples(paths: list[Path]) -> list:
    out = []
    for p in paths:
        files = sorted(p.glob("*.np[yz]")) if p.is_dir() else [p]
        for f in files:
            if f.suffix == ".npz":
                with np.load(f) as z:
                    keep = z["keep"].astype(bool) if "keep" in z else None
                    out.append(Tensor(data=z["q"], keep=keep))
            else:
                out.append(np.load(f))
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Arguments of ``edge-runtime train-dict``."""
    ap.add_argument("inputs", nargs="*", type=Path, help=".npy / .npz files or folders of them")
    ap.add_argument("--size", type=int, default=16384, help="dictionary size in bytes (default 16384)")
    ap.add_argument("-o", "--output", type=Path, required=True, help="where to write the dictionary")


def main(argv: list[str] | None = None) -> int:
    """``edge-runtime train-dict``: train a zstd dictionary from quantized feature maps.

    Inputs are ``.npy`` files of uint8 (C, H, W) arrays or ``.npz`` files with ``q`` and an
    optional ``keep`` (for example the features an edge saved from its own stream).
    """
    ap = argparse.ArgumentParser(prog="edge-runtime train-dict", description=main.__doc__.splitlines()[0])
    add_arguments(ap)
    return run(ap.parse_args(argv))


def run(args) -> int:
    """Run ``train-dict`` with parsed arguments."""
    samples = _load_samples(args.inputs)
    try:
        d = train_dictionary(samples, args.size)
    except (ValueError, TypeError) as e:
        print(f"train-dict: {e}", file=sys.stderr)  # noqa: T201 (CLI)
        return 2
    atomic.write_bytes(args.output, d)  # a crash mid-write keeps the previous dictionary
    did = zstandard.ZstdCompressionDict(d).dict_id()
    print(f"wrote {len(d)}-byte dictionary (dict id {did}) from {len(samples)} samples to {args.output}")  # noqa: T201
    return 0
