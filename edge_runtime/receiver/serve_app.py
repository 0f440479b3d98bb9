"""The back half as a Ray Serve deployment (cluster mode; imported only where Ray is installed).

Each replica loads the bundles from their paths (the same path on every node of the cluster) and
runs ``back.onnx`` with ONNX Runtime. A request is one micro-batch from an ingest process:
``(model id, float32 array (n, C, H, W))`` -> logits ``(n, classes)``, or for a detection bundle
``(logits (n, P, K), boxes (n, P, 4))`` (NMS stays with the ingest, as in-process). ``@serve.batch`` merges
the requests of all ingest processes that arrive together into one ONNX run per model, up to
``max_batch_size`` frames (counted in frames, not requests) or ``batch_wait_timeout_s``.

The replica holds no per-stream state: decoding, with its inter-frame references, stays in the
ingest, so any replica can answer any request and a retried request gives the same logits.
"""

from __future__ import annotations

import logging

import numpy as np
from ray import serve

from edge_runtime.bundle import load_bundle

__all__ = ["BackHalf", "frames_in"]

log = logging.getLogger(__name__)


def frames_in(items: list) -> int:
    """``batch_size_fn`` of ``@serve.batch``: a batch is as large as the frames it holds."""
    return sum(int(x.shape[0]) for _, x in items)


class BackHalf:
    """One replica: the back halves of ``bundle_paths`` (by 8-byte model id)."""

    def __init__(
        self, bundle_paths: list[str], threads: int, max_batch_size: int, batch_wait_timeout_s: float
    ) -> None:
        self.bundles = {}
        for p in bundle_paths:
            b = load_bundle(p, threads=threads)
            b.session("back")  # load now: the first request pays no start-up cost
            self.bundles[b.model_id_bytes] = b
        self._batched.set_max_batch_size(max_batch_size)
        self._batched.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.batches = 0

    def models(self) -> list[str]:
        """The model ids served (hex), for an ingest to check that it attached to the right one."""
        return sorted(b.model_id for b in self.bundles.values())

    def stats(self) -> dict:
        return {"batches": self.batches}

    async def __call__(self, model_id: bytes, x: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        if model_id not in self.bundles:
            raise ValueError(f"model {model_id.hex()} is not served by this deployment")
        return await self._batched((model_id, x))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002, batch_size_fn=frames_in)
    async def _batched(self, items: list[tuple[bytes, np.ndarray]]) -> list:
        out: list = [None] * len(items)
        for mid in {m for m, _ in items}:
            idx = [i for i, (m, _) in enumerate(items) if m == mid]
            xs = [items[i][1] for i in idx]
            b = self.bundles[mid]
            x = xs[0] if len(xs) == 1 else np.concatenate(xs)
            detect = b.task == "detect"
            outputs = b.detect(x) if detect else b.back(x)
            self.batches += 1
            start = 0
            for i, xi in zip(idx, xs, strict=True):
                part = slice(start, start + len(xi))
                out[i] = tuple(o[part] for o in outputs) if detect else outputs[part]
                start += len(xi)
        return out
