"""How format version 6's initial coder states (``edge_runtime/codec/tcoder_init.npy``) were made.

A frame coded alone used to start its range coder with every probability at 1/2 and paid for
learning its statistics inside a message of a few hundred decisions per context set. Version 6
starts it, where that is shorter (layout bit INIT, ``docs/wire.md``), from a state learned offline,
as a video codec's context initialisation tables do. Per bit depth 1..8: the training split's
frames through the edge pipeline of the default bundle (ABN and fused maps at the rate benchmark's
keep ratios, and quantization alone, twice as often), coded one after the other in a seeded random
order with the state carried over; the table is the mean of the states after each frame past the
first 30 (so it is not the last frame's statistics).

The table is part of the wire format: messages coded from it decode only with it. Running this
again (another bundle, other frames, another ONNX Runtime) makes another table, which needs a new
format version. ``python -m edge_runtime.codec.init_table --out edge_runtime/codec/tcoder_init.npy``
(needs Fashion-MNIST: ``sh deploy/system-packages.sh``).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

KEEPS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7)
PROVIDERS = ("abn", "fused")
WARMUP = 30


def _symbols(bundle, images, provider: str, keep: float, bits: int) -> list:
    """The (symbols, keep-mask) the default pipeline sends for each image, read back from its
    messages (the coding is lossless)."""
    from edge_runtime.codec import Decoder
    from edge_runtime.config import config_from_dict
    from edge_runtime.pipeline import EdgePipeline
    from edge_runtime.sources import Captured

    cfg = {"quantize": {"bits": bits}, "codec": {"coder": "arith"}}
    if provider == "none":
        cfg["importance"] = {"provider": "none"}
    else:
        cfg |= {
            "importance": {"provider": provider},
            "reduce": {"domain": "feature", "mode": "zero", "value": keep},
        }
    pipe = EdgePipeline(bundle, config_from_dict(cfg, env={}))
    dec = Decoder(model_ids=[bundle.model_id_bytes])
    out = []
    for i, im in enumerate(images):
        t = dec.decode(pipe.process(Captured(im, i, 0), i).message).tensor
        out.append((t.data, t.keep))
    return out


def build(bundle, images, seed: int = 0) -> np.ndarray:
    """The (8, 2, N_STATE) uint16 table from ``images`` (uint8 frames of the bundle's input size)."""
    from edge_runtime.kernels import tcoder

    rng = np.random.default_rng(seed)
    table = np.zeros((8, 2, tcoder.N_STATE), np.uint16)
    for bits in range(1, 9):
        frames = []
        for p in PROVIDERS:
            for k in KEEPS:
                frames += _symbols(bundle, images, p, k, bits)
        frames += 2 * _symbols(bundle, images, "none", 1.0, bits)
        state, total, n = None, np.zeros((2, tcoder.N_STATE)), 0
        for j, i in enumerate(rng.permutation(len(frames))):
            sym, keep = frames[i]
            _, state = tcoder.encode_predicted(sym, keep, bits, None, None, tcoder.V5, state=state)
            if j >= WARMUP:
                total += state
                n += 1
        table[bits - 1] = np.round(total / n).astype(np.uint16)
        print(f"bits {bits}: {len(frames)} frames", flush=True)  # noqa: T201 (progress)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m edge_runtime.codec.init_table", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--out", type=Path, required=True, help="where to write the table (.npy)")
    ap.add_argument("--frames", type=int, default=200, help="training-split frames (default 200)")
    args = ap.parse_args(argv)
    from edge_runtime import atomic, datasets
    from edge_runtime.bundle import load_bundle

    try:
        bundle = load_bundle()
        images = datasets.load(datasets.DEFAULT_TASK, "train", args.frames, size=bundle.input.size[0]).images
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)  # noqa: T201 (CLI)
        return 2
    table = build(bundle, images)
    buf = io.BytesIO()
    np.save(buf, table, allow_pickle=False)
    atomic.write_bytes(args.out, buf.getvalue())
    print(f"wrote {args.out}: {table.shape} from {len(images)} frames of bundle {bundle.model_id[:12]}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
