"""Bounded end-to-end runs: real ZeroMQ messages on loopback, decoded and classified by the back half."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from edge_runtime.codec import Decoder
from edge_runtime.config import config_from_dict
from edge_runtime.photos import PhotoStream
from edge_runtime.pipeline import EdgeLoop, EdgeMetrics, EdgePipeline
from edge_runtime.sender import Sender
from edge_runtime.sources import FrameFeed

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "edge-runtime.service"
N = 24


def _run(bundle, cfg, frames, metrics=None):
    feed = FrameFeed.from_config(cfg.source, size=bundle.input.size[0])
    with Sender(cfg.sender) as sender:
        loop = EdgeLoop(EdgePipeline(bundle, cfg), feed, sender, metrics=metrics, status_interval_s=0.2)
        return loop.run(max_frames=frames)


def _collect(pull, n, timeout_s=10.0):
    msgs, deadline = [], time.monotonic() + timeout_s
    while len(msgs) < n and time.monotonic() < deadline:
        if pull.poll(100):
            msgs.append(pull.recv())
    return msgs


@pytest.mark.parametrize(
    "section",
    [
        {"importance": {"provider": "grad_selective"}, "reduce": {"value": 0.5}, "quantize": {"bits": 6}},
        {
            "importance": {"provider": "abn", "reuse_interval": 3},
            "reduce": {"domain": "image", "mode": "blur"},
        },
    ],
    ids=["grad-feature-zero", "abn-reuse-image-blur"],
)
def test_loopback_messages_classify_like_the_model(bundle, free_port, section):
    ep = f"tcp://127.0.0.1:{free_port}"
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(ep)
    try:
        cfg = config_from_dict(
            {**section, "source": {"mode": "sequential", "seed": 4}, "sender": {"endpoints": [ep]}}, env={}
        )
        stats = _run(bundle, cfg, N)
        msgs = _collect(pull, stats.sent)
    finally:
        pull.close()
        ctx.term()
    assert stats.accounted() and stats.captured == N
    # IMMEDIATE: the first frames may go before the TCP connection is up; the rest arrive
    assert stats.sent >= N // 2 and len(msgs) == stats.sent
    dec = Decoder(model_ids=[bundle.model_id_bytes])
    stream = PhotoStream(seed=4)  # the scene source's stream
    agree = correct_edge = correct_model = 0
    for m in msgs:
        f = dec.decode(m)
        assert f.model_id == bundle.model_id_bytes and f.tensor is not None
        feats = f.tensor.dequantize()[None]
        assert feats.shape[1:] == tuple(bundle.split_shape)
        edge_pred = int(bundle.back(feats).argmax())
        scene = stream.frame(f.seq)  # sequential source: seq = frame number
        direct = int(bundle.back(bundle.front(bundle.preprocess(scene.image))[bundle.split_name]).argmax())
        agree += edge_pred == direct
        correct_edge += edge_pred == scene.label
        correct_model += direct == scene.label
    n = len(msgs)
    assert agree / n >= 0.75, f"edge agrees with the full model on {agree}/{n} frames"
    assert correct_edge >= correct_model - max(2, n // 8)


def test_no_receiver_never_blocks_and_accounts_for_every_frame(bundle, free_port):
    cfg = config_from_dict(
        {
            "importance": {"provider": "fused"},
            "source": {"mode": "latest", "fps": 60.0},
            "sender": {"endpoints": [f"tcp://127.0.0.1:{free_port}"], "linger_ms": 0},
        },
        env={},
    )
    metrics = EdgeMetrics()
    t0 = time.monotonic()
    stats = _run(bundle, cfg, 40, metrics)
    took = time.monotonic() - t0
    assert took < 10.0, f"40 frames at 60 fps took {took:.1f} s with no receiver"
    assert stats.sent == 0
    assert stats.dropped["backpressure"] == 40
    assert stats.accounted(), stats.as_dict()
    assert stats.captured == 40 + stats.dropped["stale"] + stats.dropped["shutdown"]
    text = metrics.registry.render()
    assert 'edge_frames_total{outcome="dropped",reason="backpressure"} 40' in text
    assert f"edge_frames_captured_total {stats.captured}" in text
    assert 'edge_stage_seconds_count{stage="front"} 40' in text


def test_slow_receiver_frames_are_dropped_not_queued(free_port):
    """A receiver that never reads: the queues fill, then each send fails at once (no blocking)."""
    from edge_runtime.config import SenderConfig

    ep = f"tcp://127.0.0.1:{free_port}"
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.RCVHWM, 1)
    pull.setsockopt(zmq.LINGER, 0)
    pull.bind(ep)
    msg = bytes(1 << 20)  # 1 MiB: a few fill the kernel's socket buffers
    worst = 0.0
    try:
        with Sender(SenderConfig(endpoints=[ep], sndhwm=2, linger_ms=0)) as sender:
            deadline = time.monotonic() + 5
            while sender.sent == 0 and time.monotonic() < deadline:  # wait for the connection
                sender.send(msg)
                time.sleep(0.01)
            results = []
            for _ in range(200):
                t0 = time.perf_counter()
                results.append(sender.send(msg))
                worst = max(worst, time.perf_counter() - t0)
    finally:
        pull.close()
        ctx.term()
    assert results.count("backpressure") > 100
    assert worst < 0.5, f"a send blocked for {worst:.2f} s"


def test_service_cli_bounded_run(bundle, free_port):
    from edge_runtime.cli import main

    ep = f"tcp://127.0.0.1:{free_port}"
    argv = ["run", "--frames", "5", "--endpoint", ep, "--no-metrics", "--set", "runtime.warmup=false"]
    assert main(argv) == 0
    assert main(["run", "--frames", "0", "--no-metrics"]) == 2


def test_service_notifies_systemd_and_stops_cleanly_on_sigterm(tmp_path, free_port):
    import os
    import signal
    import socket
    import sys

    notify = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(notify))
        s.settimeout(60)
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(notify),
            "WATCHDOG_USEC": "400000",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        }
        cmd = [sys.executable, "-m", "edge_runtime.cli", "run", "--endpoint", f"tcp://127.0.0.1:{free_port}"]
        cmd += ["--set", "metrics.port=0", "--set", "runtime.warmup=false"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            got = []
            while not any(g.startswith("READY=1") for g in got):
                got.append(s.recv(4096).decode())
            while "WATCHDOG=1" not in got:
                got.append(s.recv(4096).decode())
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            while "STOPPING=1" not in got:
                got.append(s.recv(4096).decode())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert "signal SIGTERM: stopping" in err and "stopped: captured" in err


def test_rate_control_meets_a_byte_target(bundle, free_port):
    target = 400.0
    cfg = config_from_dict(
        {
            "importance": {"provider": "fused"},
            "reduce": {"value": 0.9},
            "quantize": {"bits": 8},
            "rate": {"target_bytes": target},
            "source": {"mode": "sequential"},
            "sender": {"endpoints": [f"tcp://127.0.0.1:{free_port}"], "linger_ms": 0},
        },
        env={},
    )
    pipe = EdgePipeline(bundle, cfg)
    feed = FrameFeed.from_config(cfg.source)
    sizes = []
    with feed:
        for seq in range(60):
            out = pipe.process(feed.get(), seq)
            sizes.append(len(out.message))
    settled = np.mean(sizes[20:])
    assert sizes[0] > 1.5 * target  # starts far above: the loop had something to do
    assert abs(settled / target - 1) < 0.15, f"settled at {settled:.0f} B for a {target:.0f} B target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_file_verifies(tmp_path):
    unit = tmp_path / "edge-runtime.service"
    text = UNIT.read_text().replace("/opt/edge-runtime/venv/bin/edge-runtime", shutil.which("true"))
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [
        line
        for line in (r.stdout + r.stderr).splitlines()
        if "edge-runtime.service" in line and "not found" not in line.lower()
    ]
    assert r.returncode == 0 or not problems, r.stdout + r.stderr
    assert "Type=notify" in text and "WatchdogSec=" in text and "ProtectSystem=strict" in text


def test_threads_stopped():
    # no grabber or metrics thread outlives its run
    names = [t.name for t in threading.enumerate()]
    assert "frame-grabber" not in names and "metrics-http" not in names


def test_dealer_spreads_frames_over_two_receivers(bundle):
    ctx = zmq.Context()
    routers = []
    try:
        eps = []
        for _ in range(2):
            r = ctx.socket(zmq.ROUTER)
            r.setsockopt(zmq.LINGER, 0)
            eps.append(f"tcp://127.0.0.1:{r.bind_to_random_port('tcp://127.0.0.1')}")
            routers.append(r)
        cfg = config_from_dict(
            {
                "importance": {"provider": "fused"},
                "source": {"mode": "sequential"},
                "sender": {"endpoints": eps, "socket": "dealer"},
            },
            env={},
        )
        with Sender(cfg.sender) as sender:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # both connections up before the run
                sender.sock.poll(10, zmq.POLLOUT)
                if sender.sock.getsockopt(zmq.EVENTS) & zmq.POLLOUT:
                    time.sleep(0.2)
                    break
            loop = EdgeLoop(
                EdgePipeline(bundle, cfg), FrameFeed.from_config(cfg.source), sender, status_interval_s=0
            )
            stats = loop.run(max_frames=12)
        got = [0, 0]
        dec = Decoder(model_ids=[bundle.model_id_bytes])
        for i, r in enumerate(routers):
            while r.poll(200):
                ident, msg = r.recv_multipart()
                assert ident and dec.decode(msg).stream_id == "cam0"
                got[i] += 1
    finally:
        for r in routers:
            r.close()
        ctx.term()
    assert stats.accounted() and sum(got) == stats.sent >= 6
    assert min(got) >= 1, f"round-robin over both receivers, got {got}"
