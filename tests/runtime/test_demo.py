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
