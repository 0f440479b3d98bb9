"""Cold start: compile only the kernels the loaded configuration uses, say so at once, and serve
frames while it runs.

A first start on a fresh machine compiles the Numba kernels (about 25 s for the default
configuration on a 2-core box); later starts load them from Numba's cache (``NUMBA_CACHE_DIR``, or
``__pycache__`` beside the modules). :func:`steps_for` picks the warm-up steps
(:data:`kernels.warmup.STEPS`) that a configuration needs.

- :func:`warm` compiles them here and now: one line before anything is imported or compiled, one
  per step that compiled (how far it is), then the total. ``edge-runtime warmup [--config FILE]``
  fills the cache this way ahead of time (the systemd units run it as ``ExecStartPre``).
- :class:`BackgroundWarmup` (the demo and the edge service) compiles them in a child process
  (``edge-runtime warmup --steps ...``, on the other core, not under this process's GIL) while this
  one serves frames: until the child is done and the compiled code is loaded from its cache,
  :data:`kernels` hands out the NumPy twins (``kernels.reference``, equal bit for bit) and the
  edge pipeline codes with zstd instead of the Numba range coder. The first result of a cold
  ``edge-runtime demo`` came 24 s after start when it waited for the compilation, and comes in
  about 3 s this way (``benchmarks/startup.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from edge_runtime import atomic
from edge_runtime.config import Config, load_config, temporal_enabled

__all__ = ["steps_for", "graphs_for", "warm", "kernels", "BackgroundWarmup", "add_arguments", "run"]

log = logging.getLogger("edge_runtime.warmup")

#: A step that takes longer than this compiled (loading cached code takes milliseconds).
_COMPILED_S = 0.3


def steps_for(cfg: Config, *, receiver: bool = False) -> list[str]:
    """Names of the kernel warm-up steps the edge pipeline runs with ``cfg`` (``receiver``: also
    the arith decoder, for a receiver in the same process). A receiver dequantizes in NumPy."""
    imp, red = cfg.importance, cfg.reduce
    steps = [f"threshold.{red.threshold}"]  # maps are resized and warped by OpenCV (framing.py)
    if getattr(red, "dilate", 0):
        steps.append("dilate")
    has_map = imp.provider != "none"
    masks_wire = red.domain == "feature" and red.mode == "zero"
    if has_map and red.domain == "image":
        steps.append(f"reduce_image.{red.mode}.uint8")
    if has_map and red.domain == "feature" and red.mode != "zero":
        steps.append(f"reduce_features.{red.mode}")
    if has_map and imp.reuse_interval > 1 and imp.motion == "phase":
        steps.append("shift")
    steps.append("quantize.masked" if has_map and masks_wire else "quantize.dense")
    if cfg.codec.coder == "arith" or receiver:
        steps.append("coder")  # the edge encodes with it; a receiver decodes what edges send
    if temporal_enabled(cfg) or receiver:
        steps.append("tcoder")  # format version 3 (inter-frame coding)
    return list(dict.fromkeys(steps))


def graphs_for(cfg: Config, bundle) -> set[str]:
    """The bundle's graphs the pipeline runs with ``cfg``: front, back and the provider's."""
    graphs = {"front", "back"}
    from edge_runtime.importance import resolve_provider

    spec = bundle.importance.get(resolve_provider(bundle, cfg.importance.provider))
    if spec is not None:
        graphs.add(spec["graph"])
    return graphs


def _cache_dir() -> str:
    return os.environ.get("NUMBA_CACHE_DIR") or "__pycache__ beside the kernels"


def _kernel_sources() -> Path:
    """The kernels' folder (inside the installed package, or beside it in a checkout)."""
    import importlib.util

    return Path(importlib.util.find_spec("edge_runtime.kernels").origin).parent


def _marker() -> Path:
    """Where a finished warm-up notes which steps Numba's cache holds: beside Numba's files."""
    base = os.environ.get("NUMBA_CACHE_DIR")
    return (Path(base) if base else _kernel_sources() / "__pycache__") / "edge-runtime-warm.json"


def _fingerprint() -> str:
    """What Numba keys its cache on, as far as it changes here: Numba's and Python's versions and
    the kernels' source files (Numba's index holds each file's time stamp and size)."""
    from importlib.metadata import version

    files = sorted(_kernel_sources().glob("*.py"))
    return json.dumps(
        [version("numba"), sys.version, [(f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files]]
    )


def cached_steps() -> set[str]:
    """The warm-up steps a finished warm-up left in Numba's cache for these sources (or none)."""
    try:
        note = json.loads(_marker().read_text())
        return set(note["steps"]) if note.get("fingerprint") == _fingerprint() else set()
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _note_cached(steps: list[str]) -> None:
    try:
        done = sorted(cached_steps() | set(steps))
        atomic.write_text(_marker(), json.dumps({"fingerprint": _fingerprint(), "steps": done}))
    except OSError:  # a read-only cache: every start then compiles in the background
        pass


def _compile(steps: list[str], t0: float) -> list[str]:
    """Run the warm-up ``steps``, logging each one that compiled; returns the names of those."""
    from edge_runtime import kernels as jitted

    compiled: list[str] = []

    def progress(done: int, total: int, name: str, seconds: float) -> None:
        if seconds >= _COMPILED_S:
            compiled.append(name)
            log.info(
                "kernels: compiled %d/%d (%s, %.1f s; %.0f s so far)",
                done, total, name, seconds, time.perf_counter() - t0,
            )  # fmt: skip

    jitted.warmup(steps, progress)
    return compiled


def _ready_line(took: float, steps: list[str], compiled: list[str], extra: str = "") -> None:
    what = f"{len(compiled)} compiled" if compiled else "all from the cache"
    log.info("kernels ready in %.2f s (%d steps, %s%s)", took, len(steps), what, extra)


def warm(cfg: Config, bundle=None, *, receiver: bool = False, steps: list[str] | None = None) -> float:
    """Warm the kernels ``cfg`` uses (or the named ``steps``), and run every graph of ``bundle``
    once; returns seconds."""
    steps = steps_for(cfg, receiver=receiver) if steps is None else steps
    t0 = time.perf_counter()
    # Said before Numba is even imported: on a cold cache nothing else is printed for a while.
    log.info(
        "kernels: preparing %d for this configuration (compiled once on a first start, "
        "then loaded from Numba's cache: %s)",
        len(steps),
        _cache_dir(),
    )
    compiled = _compile(steps, t0)
    _note_cached(steps)
    if bundle is not None:
        bundle.warmup(graphs_for(cfg, bundle))  # not the gradient graphs a config does not use
    took = time.perf_counter() - t0
    _ready_line(took, steps, compiled)
    return took


class _Kernels:
    """The kernels the edge pipeline calls (``from edge_runtime.warmup import kernels``): the Numba
    ones, or their NumPy twins while a :class:`BackgroundWarmup` runs. The twins take the same
    arguments and give the same results bit for bit (``tests/kernels``), but do not validate their
    input: only code that passes checked arrays (the pipeline) calls through here."""

    def __init__(self) -> None:
        self.twins = False  # True while a background compilation runs
        self.pending: Callable[[], None] | None = None  # loads the compiled kernels, then sets twins False

    @property
    def compiled(self) -> bool:
        """Whether calls go to the compiled kernels (and the range coders may be used)."""
        return not self.twins

    def poll(self) -> None:
        """Between two frames: if a background compilation has filled the cache, load the compiled
        kernels now, in the caller's thread. A loader thread would fight the frame loop for the GIL
        (measured: 3.2 s instead of 0.5 s for the first kernel, every frame meanwhile on zstd)."""
        load, self.pending = self.pending, None
        if load is not None:
            load()

    def __getattr__(self, name: str):
        # called for every kernel call of every frame: the two modules are looked up once
        if "_jitted" not in self.__dict__:
            from edge_runtime import kernels as jitted
            from edge_runtime.kernels import reference

            self._jitted, self._reference = jitted, reference
        return getattr(self._reference if self.twins else self._jitted, name)


#: The switch the pipeline, the reducer and the importance providers call kernels through.
kernels = _Kernels()


class BackgroundWarmup:
    """Compile the kernels ``cfg`` uses in a child process while this one serves frames.

    :meth:`start` says so at once, turns :data:`kernels` to the NumPy twins and starts the child
    (``edge-runtime warmup --steps ...``, whose progress lines this process logs). When the
    child has filled Numba's cache, a thread here loads the compiled code from it (milliseconds per
    kernel; it compiles here instead if the child failed) and turns :data:`kernels` back.
    :meth:`close` stops a child still compiling (what it finished stays in the cache for the next
    start) or leaves it to finish. ``ready`` is set when the compiled kernels are in use."""

    def __init__(self, cfg: Config, *, receiver: bool = False) -> None:
        self.steps = steps_for(cfg, receiver=receiver)
        self.ready = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def start(self) -> BackgroundWarmup:
        self._t0 = time.perf_counter()
        if set(self.steps) <= cached_steps():  # a warm cache: loading takes well under a second
            log.info(
                "kernels: loading %d for this configuration from Numba's cache (%s)",
                len(self.steps),
                _cache_dir(),
            )
            compiled = _compile(self.steps, self._t0)
            self.ready.set()
            _ready_line(time.perf_counter() - self._t0, self.steps, compiled)
            return self
        kernels.twins = True
        cmd = [sys.executable, "-m", "edge_runtime.cli", "warmup", "--steps", ",".join(self.steps)]
        where = "here (no compiler process)"
        try:
            # its own session: a Ctrl-C meant for this process does not kill it mid-line; close() stops it
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            where = f"in a background process ({self._proc.pid})"
        except OSError as e:  # no child process possible: compile in the thread instead
            log.warning("kernels: could not start the compiler process (%s)", e)
        log.info(
            "kernels: compiling %d for this configuration %s (once on a first start, then loaded from "
            "Numba's cache: %s); until they are ready, frames use the NumPy twins and the zstd coder",
            len(self.steps),
            where,
            _cache_dir(),
        )
        self._thread = threading.Thread(target=self._finish, name="kernel-warmup", daemon=True)
        self._thread.start()
        return self

    def _relay(self) -> None:
        """Pass the child's progress lines on as this process's (until close()); its own
        start and end lines are left out: this process says those."""
        with self._proc.stderr as lines:
            for line in lines:
                if self._closing.is_set():
                    continue  # keep the pipe open (and the child writing into it) while we live
                msg = line.rstrip("\n").split("edge_runtime.warmup: ", 1)[-1]
                if msg and not msg.startswith(("kernels: preparing", "kernels ready in")):
                    log.info("%s", msg)

    def _finish(self) -> None:
        if self._proc is not None:
            self._relay()
        rc = 0 if self._proc is None else self._proc.wait()
        if self._closing.is_set():
            return
        if rc == 0:
            kernels.pending = self._load  # the frame loop loads them between two frames (poll)
            return
        log.warning("kernels: the compiler process exited with %d; compiling in this process", rc)
        self._load()

    def _load(self) -> None:
        if self._closing.is_set():
            return
        compiled = _compile(self.steps, self._t0)  # after the child: from its cache
        kernels.twins = False
        self.ready.set()
        _ready_line(time.perf_counter() - self._t0, self.steps, compiled, ", compiled in the background")

    def close(self, timeout: float = 5.0, *, detach: bool = False) -> None:
        """Stop waiting for the child; idempotent. A child still compiling is stopped (what it
        finished stays cached), or with ``detach`` left to finish filling the cache for the next
        start: a short first demo would otherwise stop it every time before a kernel is done."""
        self._closing.set()
        running = self._proc is not None and self._proc.poll() is None
        if running:
            if detach:
                log.info(
                    "kernels: the compilation goes on in process %d and fills the cache for the next "
                    "start (`edge-runtime warmup` does it ahead of time)",
                    self._proc.pid,
                )
            else:
                log.info("kernels: stopping the background compilation (what it finished stays cached)")
                self._proc.terminate()
                try:
                    self._proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        if self._thread is not None and not (running and detach):  # a detached child's relay lives on
            self._thread.join(timeout)
        if not self.ready.is_set():
            kernels.pending = None
            kernels.twins = False  # a later user of this process gets the kernels, compiled on call

    def __enter__(self) -> BackgroundWarmup:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        # a normal end leaves a running compilation to finish; Ctrl-C, SIGTERM or an error stops it
        self.close(detach=exc_type is None)


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
    p.add_argument(
        "--steps",
        metavar="NAMES",
        help="comma-separated warm-up steps instead of the config's (default: what the config uses)",
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
    steps = None
    if args.steps:
        steps = [n for n in args.steps.split(",") if n]
        from edge_runtime.kernels.warmup import STEPS

        unknown = [n for n in steps if n not in STEPS]
        if unknown:
            raise ValueError(f"--steps: unknown warm-up steps {unknown}; known: {', '.join(STEPS)}")
    warm(cfg, receiver=True, steps=steps)
    return 0
