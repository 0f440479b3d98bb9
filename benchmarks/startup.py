"""Time to the first result of ``edge-runtime demo``: on an empty Numba cache and on a filled one.

Each run is a fresh process, ``python -m edge_runtime.cli demo --frames N``; its output lines are
time-stamped as they arrive, from the moment the process was spawned:

- ``progress_line_s``: the first line saying that kernels are being prepared (goal: within 1 s),
- ``first_result_s``: the demo's ``first result`` line (the receiver's first result),
- ``compiled_in_use_s``: when the compiled kernels were in use (loaded before the first frame on a
  warm cache; on a cold one when they replaced the NumPy twins and zstd, None when the demo ended
  first: the compilation then goes on in a detached process, whose end is ``background_done_s``,
  and the next run waits for it so that "warm" means a filled cache),
- ``total_s``: the process's whole run.

Cold: ``NUMBA_CACHE_DIR`` points at a new, empty folder. Warm: the same folder again, filled by
the cold run. ``--compare-all`` also times compiling every kernel in every variant (what a start
compiled before the warm-up followed the config) into another empty cache.

    python benchmarks/startup.py [--frames 20] [--warm-runs 2] [--compare-all]

Summary keys: ``cold_first_result_s`` (goal <= 10), ``warm_first_result_s``,
``progress_line_within_1s``, ``cold_background_compile_s`` (until the cache is filled),
``warm_compiled_in_use_s`` (a 300-frame demo on the filled cache: when the compiled kernels take over). The machine's load average is recorded next to them: on a shared
machine compilation is slower by about the load.
"""

from __future__ import annotations

import argparse
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import write_result  # noqa: E402


def _git_commit() -> str:
    r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def run_demo(cache: Path, frames: int, timeout: float = 900.0) -> dict:
    """One demo process; seconds from spawn to its progress line, first result and exit."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "edge_runtime.cli", "demo", "--frames", str(frames), "--every", str(frames)]
    lines: queue.Queue = queue.Queue()
    t0 = time.perf_counter()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as p:

        def pump() -> None:
            for line in p.stdout:
                lines.put((time.perf_counter() - t0, line.rstrip("\n")))

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            rc = p.wait()
        total = time.perf_counter() - t0
        reader.join(timeout=5)
    out = []
    while not lines.empty():
        out.append(lines.get())
    starts = ("kernels: preparing", "kernels: compiling", "kernels: loading")
    progress = next((t for t, s in out if any(w in s for w in starts)), None)
    in_use = next((t for t, s in out if "kernels ready in" in s), None)
    detached = next((s for t, s in out if "compilation goes on in process" in s), None)
    done = None
    if detached is not None:  # wait for the detached compiler to fill the cache
        pid = int(detached.split("in process ")[1].split()[0])
        while Path(f"/proc/{pid}").exists() and time.perf_counter() - t0 < timeout:
            time.sleep(0.2)
        done = time.perf_counter() - t0
    first = next((t for t, s in out if s.startswith("first result")), None)
    compiled = next((s.split("(")[-1].rstrip(")") for t, s in out if "kernels ready in" in s), None)
    if compiled is None and detached is not None:
        compiled = "still compiling when the demo ended"
    if rc != 0:
        raise SystemExit(f"demo failed ({rc}):\n" + "\n".join(s for _, s in out[-30:]))
    return {
        "progress_line_s": None if progress is None else round(progress, 3),
        "first_result_s": None if first is None else round(first, 3),
        "compiled_in_use_s": None if in_use is None else round(in_use, 3),
        "background_done_s": None if done is None else round(done, 3),
        "total_s": round(total, 3),
        "kernels": compiled,
        "returncode": rc,
    }


def compile_all(cache: Path) -> float:
    code = "import time; t = time.perf_counter(); from edge_runtime import kernels; from edge_runtime.kernels.warmup import STEPS; "
    code += "kernels.warmup(list(STEPS)); print(time.perf_counter() - t)"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(r.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20, help="frames per demo run (default: %(default)s)")
    ap.add_argument(
        "--warm-runs", type=int, default=2, help="runs on the filled cache (default: %(default)s)"
    )
    ap.add_argument("--compare-all", action="store_true", help="also compile every kernel variant, cold")
    ap.add_argument("--out", help="result file (default: benchmarks/results/startup.json)")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="startup-numba-") as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        cold = run_demo(cache, args.frames)
        print(f"cold: {cold}", flush=True)
        warm = [run_demo(cache, args.frames) for _ in range(args.warm_runs)]
        for w in warm:
            print(f"warm: {w}", flush=True)
        # the README's demo length, warm: when the compiled kernels take over from the twins
        default = run_demo(cache, 300)
        print(f"warm, 300 frames: {default}", flush=True)
        all_s = None
        if args.compare_all:
            other = Path(tmp) / "all"
            other.mkdir()
            all_s = round(compile_all(other), 2)
            print(f"every kernel variant, cold: {all_s} s", flush=True)
    warm_first = sorted(w["first_result_s"] for w in warm)[len(warm) // 2] if warm else None
    runs = [cold, *warm]
    summary = {
        "cold_first_result_s": cold["first_result_s"],
        "warm_first_result_s": warm_first,
        "progress_line_within_1s": all(
            r["progress_line_s"] is not None and r["progress_line_s"] <= 1.0 for r in runs
        ),
        "cold_progress_line_s": cold["progress_line_s"],
        "cold_background_compile_s": cold["background_done_s"],
        "warm_compiled_in_use_s": default["compiled_in_use_s"],
        "goal_cold_first_result_s": 10.0,
        "load_average_1min": round(load_before[0], 2),
    }
    parameters = {
        "command": f"python -m edge_runtime.cli demo --frames {args.frames} --every {args.frames}",
        "frames": args.frames,
        "warm_runs": args.warm_runs,
        "git_commit": _git_commit(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    results = {"cold": cold, "warm": warm, "warm_300_frames": default, "compile_every_variant_cold_s": all_s}
    path = write_result("startup", summary, parameters, results, args.out)
    print(f"{path}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
