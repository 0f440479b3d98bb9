from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from edge_runtime.metrics import Registry
from edge_runtime.systemd import Notifier, notify

ROOT = Path(__file__).resolve().parents[2]


def test_render_exposition_format():
    reg = Registry()
    c = reg.counter("edge_frames_total", "Frames", ["outcome", "reason"])
    c.labels(outcome="dropped", reason='st"ale').inc(3)
    g = reg.gauge("edge_kept_fraction", "Kept")
    g.set(0.25)
    h = reg.histogram("edge_stage_seconds", "Stage", ["stage"], buckets=(0.01, 0.1))
    h.labels(stage="front").observe(0.005)
    h.labels(stage="front").observe(0.05)
    h.labels(stage="front").observe(5)
    text = reg.render()
    assert "# TYPE edge_frames_total counter" in text
    assert 'edge_frames_total{outcome="dropped",reason="st\\"ale"} 3' in text
    assert "edge_kept_fraction 0.25" in text
    assert 'edge_stage_seconds_bucket{le="0.01",stage="front"} 1.0' in text
    assert 'edge_stage_seconds_bucket{le="0.1",stage="front"} 2.0' in text
    assert 'edge_stage_seconds_bucket{le="+Inf",stage="front"} 3.0' in text
    assert 'edge_stage_seconds_count{stage="front"} 3.0' in text
    assert g.value == 0.25 and h.labels(stage="front").count == 3
    assert "_created" not in text  # one series per counter, as before
    with pytest.raises(ValueError, match="takes labels"):
        c.labels(outcome="sent")
    with pytest.raises(ValueError, match="use .labels"):
        c.inc()
    with pytest.raises(ValueError, match="only increase"):
        c.labels(outcome="a", reason="b").inc(-1)
    with pytest.raises(ValueError, match="already registered"):
        reg.gauge("edge_kept_fraction", "again")
    with pytest.raises(ValueError, match="ends in _total"):
        reg.counter("edge_frames", "a counter without _total would be renamed")


_WORKER = """
import sys
from edge_runtime.metrics import Registry
reg = Registry()
c = reg.counter("rx_messages_total", "Messages", ["worker"])
c.labels(worker="all").inc(int(sys.argv[1]))
g = reg.gauge("rx_busy", "Busy workers", multiprocess_mode="livesum")
g.set(1)
"""


def test_multiprocess_mode_adds_up_worker_processes(tmp_path):
    mp_dir = tmp_path / "prom"
    mp_dir.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir), "PYTHONPATH": str(ROOT)}
    for n in (3, 4):  # two real worker processes, each with its own counter
        subprocess.run([sys.executable, "-c", _WORKER, str(n)], env=env, check=True, timeout=60)
    text = Registry(multiprocess_dir=str(mp_dir)).render()
    assert 'rx_messages_total{worker="all"} 7.0' in text, text


def test_serve_over_http():
    reg = Registry()
    reg.counter("x_total", "X").inc()
    with reg.serve("127.0.0.1", 0) as srv:
        body = urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/metrics", timeout=5).read().decode()
        assert "x_total 1.0" in body
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/other", timeout=5)


def test_sd_notify_over_a_real_socket(tmp_path):
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(2)
        n = Notifier(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
        assert n.enabled and n.watchdog_s == 2.0
        assert n.ready("up")
        assert s.recv(100) == b"READY=1\nSTATUS=up"
        assert n.watchdog_due()
        assert n.watchdog()
        assert s.recv(100) == b"WATCHDOG=1"
        assert not n.watchdog_due()  # just pinged: next one at half the interval
        assert n.stopping() and s.recv(100) == b"STOPPING=1"


def test_sd_notify_outside_systemd_is_a_no_op():
    assert notify("READY=1", socket_path="") is False
    n = Notifier(env={})
    assert not n.enabled and not n.ready() and not n.watchdog_due()
