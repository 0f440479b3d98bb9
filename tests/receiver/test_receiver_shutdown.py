"""Receiver shutdown is bounded, with worker processes too, and the CLI says what it does once.

An idle ``--workers 2`` receiver once took over 30 s to stop (the proxy missed TERMINATE when its
control socket was closed at once).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from edge_runtime.receiver import Receiver

STOP_BOUND_S = 8.0


@pytest.mark.slow
def test_idle_worker_receiver_stops_quickly_every_time():
    for _ in range(3):
        rx = Receiver(None, bind="tcp://127.0.0.1:0", workers=2, threads=1).start()
        t0 = time.monotonic()
        rx.close()
        took = time.monotonic() - t0
        assert took < STOP_BOUND_S, f"an idle --workers 2 receiver took {took:.1f} s to stop"
        assert not any(p.is_alive() for p in rx._procs)


def _lines(proc) -> queue.Queue:
    q: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            q.put(line.rstrip("\n"))
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _wait_for(q: queue.Queue, seen: list[str], predicate, timeout: float) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            line = q.get(timeout=max(0.01, end - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if predicate(line):
            return line
    raise AssertionError("expected line never came; output:\n" + "\n".join(seen))


@pytest.mark.slow
def test_receive_cli_with_workers_one_ready_line_status_lines_and_a_bounded_sigterm():
    cmd = [sys.executable, "-m", "edge_runtime.cli", "receive", "--bind", "tcp://127.0.0.1:0"]
    cmd += ["--workers", "2", "--threads", "1", "--status-interval-s", "0.5"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    seen: list[str] = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        _talk_and_stop(proc, seen)
    out = "\n".join(seen)
    rc, took = proc.returncode, proc.took
    assert rc == 0, out
    assert took < STOP_BOUND_S, f"stopped {took:.1f} s after SIGTERM:\n{out}"
    assert sum("receiving on" in line for line in seen) == 1, out
    assert "did not stop" not in out and "Traceback" not in out


def _talk_and_stop(proc, seen: list[str]) -> None:
    try:
        q = _lines(proc)
        _wait_for(q, seen, lambda s: s.startswith("receiving on tcp://127.0.0.1:"), 120)
        status = _wait_for(q, seen, lambda s: "received 0 results 0" in s, 30)
        assert "msg/s" in status and "rejected [none]" in status
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        proc.took = time.monotonic() - t0
        while (line := q.get(timeout=5)) is not None:
            seen.append(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
