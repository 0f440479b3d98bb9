"""The demo leaves nothing behind and checks its values before it starts anything."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from edge_runtime.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _key_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("edge-demo-keys-*"))


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """A TMPDIR of our own, so that other processes' folders in /tmp cannot confuse the count."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setenv("TMPDIR", str(d))
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


@pytest.mark.parametrize(
    "bad",
    ["quantize.bits=99", "nosuch.key=1", "importance.provider=nope", "reduce.value=abc"],
)
def test_bad_set_values_fail_before_anything_starts(bad, private_tmp, caplog, capsys):
    caplog.set_level(logging.INFO)
    assert main(["demo", "--set", bad]) == 2
    err = capsys.readouterr().err
    assert "demo: error: " in err and "Traceback" not in err
    started = [
        r.getMessage() for r in caplog.records if r.name.startswith(("edge_runtime.receiver", "kernels"))
    ]
    assert started == [], f"something started before the check: {started}"
    assert not any("kernels: preparing" in r.getMessage() for r in caplog.records)
    assert _key_dirs(private_tmp) == []


@pytest.mark.slow
def test_demo_removes_its_keys_after_a_normal_run(private_tmp, capsys):
    assert main(["demo", "--frames", "5", "--every", "5"]) == 0
    out = capsys.readouterr().out
    assert "first result" in out and "accounted: True" in out
    assert _key_dirs(private_tmp) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_demo_removes_its_keys_when_interrupted(sig, private_tmp):
    env = {**os.environ, "TMPDIR": str(private_tmp), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "edge_runtime.cli", "demo", "--frames", "100000", "--every", "100000"]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        seen = []
        for line in p.stdout:  # the keys exist once the receiver is up; then interrupt mid-run
            seen.append(line)
            if line.startswith("first result"):
                break
        assert _key_dirs(private_tmp), "".join(seen)
        t0 = time.monotonic()
        p.send_signal(sig)
        rest = p.stdout.read()
        rc = p.wait(timeout=60)
    out = "".join(seen) + rest
    assert time.monotonic() - t0 < 30
    assert rc == 130, out
    assert "Traceback" not in out
    assert _key_dirs(private_tmp) == [], out


@pytest.mark.slow
def test_a_cold_demo_answers_before_the_kernels_compile_and_leaves_the_compiler_to_finish(tmp_path):
    """An empty Numba cache: the first results come from the NumPy twins and zstd at once, and a
    short demo leaves the compilation running to fill the cache for the next start."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "edge_runtime.cli", "demo", "--frames", "30", "--every", "30"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    detached = [line for line in out.splitlines() if "compilation goes on in process" in line]
    pids = [int(line.split("in process ")[1].split()[0]) for line in detached]
    try:
        assert r.returncode == 0, out
        assert "first result" in out and "accounted: True" in out
        assert "30 coded with zstd while the kernels compiled" in out, out
        assert len(pids) == 1 and Path(f"/proc/{pids[0]}").exists(), out  # still compiling
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


@pytest.mark.slow
def test_an_interrupted_cold_demo_stops_its_compiler(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "edge_runtime.cli", "demo", "--frames", "100000", "--every", "100000"]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as p:
        seen = []
        for line in p.stdout:
            seen.append(line)
            if line.startswith("first result"):
                break
        started = next(line for line in seen if "in a background process (" in line)
        pid = int(started.split("in a background process (")[1].split(")")[0])
        assert Path(f"/proc/{pid}").exists()
        p.send_signal(signal.SIGINT)
        rest = p.stdout.read()
        assert p.wait(timeout=60) == 130, "".join(seen) + rest
    assert "stopping the background compilation" in rest
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)  # reaped by the demo before it exits; /proc may lag a moment
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
