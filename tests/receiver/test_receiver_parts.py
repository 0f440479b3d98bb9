"""The pieces on their own: JSONL rotation, accounting, rate-limited log, config, CLI, metrics."""

from __future__ import annotations

import json
import logging
import socket
import urllib.request

import pytest
import zmq

from benchmarks.harness.receiver import Sender
from edge_runtime import cli
from edge_runtime.errors import ConfigError
from edge_runtime.metrics import MetricsServer
from edge_runtime.receiver import JsonlSink, Reject, Result, Stats, load_config
from edge_runtime.receiver import __all__ as public
from edge_runtime.receiver.engine import RateLimitedLog


def _r(seq, stream="s", cls=1):
    return Result(stream, seq, 0, 1.0, "ab" * 8, cls, None if cls is None else "x", None, 1)


def test_public_names():
    assert set(public) == {
        "CallbackSink", "Engine", "JsonlSink", "PubSink", "Receiver", "Reject", "Result", "Sink", "Stats",
        "StreamStats", "add_arguments", "load_config", "run",
    }  # fmt: skip


def test_jsonl_rotates_by_size_and_keeps_every_line(tmp_path):
    path = tmp_path / "results.jsonl"
    with JsonlSink(path, max_bytes=2048, backups=10) as sink:
        for i in range(100):
            sink.write(_r(i))
        sink.flush()
        assert sink.rotations >= 2
    files = sorted(tmp_path.iterdir())
    assert all(f.stat().st_size <= 2048 for f in files)
    seqs = sorted(json.loads(line)["seq"] for f in files for line in f.read_text().splitlines())
    assert seqs == list(range(100))


def test_jsonl_drops_the_oldest_beyond_backups(tmp_path):
    path = tmp_path / "r.jsonl"
    with JsonlSink(path, max_bytes=1024, backups=2) as sink:
        for i in range(200):
            sink.write(_r(i))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]


def test_gaps_do_not_depend_on_arrival_order():
    st = Stats()
    for seq in (5, 1, 3, 0, 7):  # 2, 4 and 6 missing; order as two workers might deliver
        st.add(_r(seq))
    st.add(Reject("s", "checksum"))
    st.add(_r(8, cls=None))
    d = st.snapshot()["s"]
    assert d == {
        "received": 7,
        "decoded": 6,
        "results": 6,
        "empty": 1,
        "rejected": {"checksum": 1},
        "gaps": 3,
    }


def test_stream_table_is_bounded():
    st = Stats(max_streams=3)
    for i in range(10):
        st.add(Reject(f"evil{i}", "header"))
    assert len(st.streams) <= 4 and st.totals()["received"] == 10


def test_rate_limited_log_holds_back_and_says_how_many():
    lines = []

    class H(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger = logging.getLogger("test.ratelimit")
    logger.propagate = False
    logger.addHandler(H())
    rl = RateLimitedLog(logger, interval_s=3600)
    for _ in range(1000):
        rl.log(logging.WARNING, "header", "bad %s", "x")
    rl.log(logging.WARNING, "model", "other reason")
    assert lines == ["bad x", "other reason"]
    rl._last["header"][0] -= 7200  # the interval has passed
    rl.log(logging.WARNING, "header", "bad %s", "y")
    assert lines[-1].startswith("bad y (999 similar messages held back")


def test_config_unknown_key_is_named(tmp_path):
    p = tmp_path / "r.toml"
    p.write_text('bind = "tcp://*:1"\nmax_bacth = 4\n')
    with pytest.raises(ConfigError, match="max_bacth"):
        load_config(p)
    p.write_text('[receiver]\nmax_batch = "4"\n')
    with pytest.raises(ConfigError, match="max_batch"):
        load_config(p)


def test_example_config_loads():
    from pathlib import Path

    conf = load_config(Path(__file__).parents[2] / "deploy" / "receiver.example.toml")
    assert conf["max_batch"] >= 1


def test_cli_receive_bounded_run(tmp_path, traffic, capsys, monkeypatch):
    msgs, _, _ = traffic
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "r.toml"
    cfg.write_text(f'bind = "tcp://127.0.0.1:{port}"\nmax_batch = 4\n')
    out = tmp_path / "out.jsonl"
    import threading

    def send():
        with Sender(f"tcp://127.0.0.1:{port}", kind=zmq.DEALER) as snd:  # the CLI's default: router
            snd.send(msgs[:5])

    t = threading.Thread(target=send)
    t.start()
    rc = cli.main(["receive", "--config", str(cfg), "--jsonl", str(out), "--frames", "5", "--duration", "30"])
    t.join()
    assert rc == 0
    assert "received 5, results 5" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 5


def test_metrics_endpoint_serves_prometheus_text():
    st = Stats()
    st.add(_r(0, stream='cam"1'))
    srv = MetricsServer(st.render_prometheus, "127.0.0.1", 0)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/metrics", timeout=5).read().decode()
    finally:
        srv.close()
    assert 'edge_receiver_results_total{stream="cam\\"1"} 1' in body
    assert "# TYPE edge_receiver_received_total counter" in body
