"""Cold start: compile only the kernels the loaded configuration uses, and say so at once.

A first start on a fresh machine compiles the Numba kernels (tens of seconds on a small box);
later starts load them from Numba's cache (``NUMBA_CACHE_DIR``, or ``__pycache__`` beside the
modules). :func:`steps_for` picks the warm-up steps (:data:`kernels.warmup.STEPS`) that a
configuration needs; :func:`warm` logs one line before anything is imported or compiled, then one
per step that compiled (how far it is), then the total. ``edge-runtime warmup [--config FILE]``
fills the cache ahead of time (the systemd unit runs it as ``ExecStartPre``);
``benchmarks/startup.py`` measures a cold and a warm first result.
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from edge_runtime.config import Config, load_config

__all__ = ["steps_for", "graphs_for", "warm", "add_arguments", "run"]

log = logging.getLogger("edge_runtime.warmup")

#: A step that takes longer than this compiled (loading cached code takes milliseconds).
_COMPILED_S = 0.3


def steps_for(cfg: Config, *, receiver: bool = False) -> list[str]:
    """Names of the kernel warm-up steps the edge pipeline runs with ``cfg`` (``receiver``: also
    the arith decoder, for a receiver in the same process). A receiver dequantizes in NumPy."""
    imp, red = cfg.importance, cfg.reduce
    steps = [f"threshold.{red.threshold}", "resize"]
    if getattr(red, "dilate", 0):
        steps.append("dilate")
    has_map = imp.provider != "none"
    masks_wire = red.domain == "feature" and red.mode == "zero"
    if has_map and red.domain == "image":
        steps.append(f"reduce_image.{red.mode}.uint8")
    if has_map and red.domain == "feature" and red.mode != "zero":
        steps.append(f"reduce_features.{red.mode}")
    if has_map and imp.reuse_interval > 1 and imp.motion != "none":
        steps.append("shift" if imp.motion == "phase" else "warp")
    steps.append("quantize.masked" if has_map and masks_wire else "quantize.dense")
    if cfg.codec.coder == "arith" or receiver:
        steps.append("coder")  # the edge encodes with it; a receiver decodes what edges send
    return list(dict.fromkeys(steps))


def graphs_for(cfg: Config, bundle) -> set[str]:
    """The bundle's graphs the pipeline runs with ``cfg``: front, back and the provider's."""
    graphs = {"front", "back"}
    spec = bundle.importance.get(cfg.importance.provider)
    if spec is not None:
        graphs.add(spec["graph"])
    return graphs


def _cache_dir() -> str:
    return os.environ.get("NUMBA_CACHE_DIR") or "__pycache__ beside the kernels"


def warm(cfg: Config, bundle=None, *, receiver: bool = False) -> float:
    """Warm the kernels ``cfg`` uses (and run every graph of ``bundle`` once); returns seconds."""
    steps = steps_for(cfg, receiver=receiver)
    t0 = time.perf_counter()
    # Said before Numba is even imported: on a cold cache nothing else is printed for a while.
    log.info(
        "kernels: preparing %d for this configuration (compiled once on a first start, "
        "then loaded from Numba's cache: %s)",
        len(steps),
        _cache_dir(),
    )
    from edge_runtime import kernels

    compiled: list[str] = []

    def progress(done: int, total: int, name: str, seconds: float) -> None:
        if seconds >= _COMPILED_S:
            compiled.append(name)
            log.info(
                "kernels: compiled %d/%d (%s, %.1f s; %.0f s so far)",
                done, total, name, seconds, time.perf_counter() - t0,
            )  # fmt: skip

    kernels.warmup(steps, progress)
    if bundle is not None:
        bundle.warmup(graphs_for(cfg, bundle))  # not the gradient graphs a config does not use
    took = time.perf_counter() - t0
    what = f"{len(compiled)} compiled" if compiled else "all from the cache"
    log.info("kernels ready in %.2f s (%d steps, %s)", took, len(steps), what)
    return took


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="edge TOML config (default: built-in defaults)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable)",
    )
    p.add_argument(
        "--all", action="store_true", help="every kernel in every variant, not only what the config uses"
    )


def run(args) -> int:
    """``edge-runtime warmup``: fill Numba's cache for this config ahead of the first start."""
    cfg = load_config(args.config, overrides=list(args.set))
    if args.all:
        from edge_runtime import kernels
        from edge_runtime.kernels.warmup import STEPS

        log.info("kernels: preparing all %d steps (%s)", len(STEPS), _cache_dir())
        took = kernels.warmup(list(STEPS))
        log.info("kernels ready in %.2f s", took)
        return 0
    warm(cfg, receiver=True)
    return 0
