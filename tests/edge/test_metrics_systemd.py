from __future__ import annotations

import socket
import urllib.request

import pytest

from edge_runtime.metrics import Registry
from edge_runtime.systemd import Notifier, notify


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
    assert 'edge_stage_seconds_bucket{stage="front",le="0.01"} 1' in text
    assert 'edge_stage_seconds_bucket{stage="front",le="0.1"} 2' in text
    assert 'edge_stage_seconds_bucket{stage="front",le="+Inf"} 3' in text
    assert 'edge_stage_seconds_count{stage="front"} 3' in text
    with pytest.raises(ValueError, match="takes labels"):
        c.labels(outcome="sent")
    with pytest.raises(ValueError, match="use .labels"):
        c.inc()
    with pytest.raises(ValueError, match="only increase"):
        c.labels(outcome="a", reason="b").inc(-1)
    with pytest.raises(ValueError, match="already registered"):
        reg.gauge("edge_kept_fraction", "again")


def test_serve_over_http():
    reg = Registry()
    reg.counter("x_total", "X").inc()
    with reg.serve("127.0.0.1", 0) as srv:
        body = urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/metrics", timeout=5).read().decode()
        assert "x_total 1" in body
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
