"""Keys and identity with real sockets and processes: a bad ``--keys-secret`` is an error at once,
a bad key file is refused alone, the allow folder is re-read while running (enrol and revoke
without a restart), a stream id belongs to the key that first used it, and an edge whose frames
are not acknowledged says why."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
import zmq

from benchmarks.harness.faults import REPO, _env, free_port
from benchmarks.harness.receiver import Sender, make_messages
from edge_runtime.config import config_from_dict
from edge_runtime.receiver import Receiver
from edge_runtime.sender import Sender as EdgeSender
from edge_runtime.transport import AllowList, generate_keypair


@pytest.fixture(scope="module")
def bundle():
    from edge_runtime.bundle import load_bundle

    return load_bundle(threads=1)


@pytest.fixture
def keys(tmp_path):
    out = {"dir": tmp_path / "keys", "allow": tmp_path / "allow"}
    out["allow"].mkdir()
    for name in ("rx", "a", "b"):
        pub, sec = generate_keypair(out["dir"], name)
        out[name], out[name + "_pub"] = sec, pub
    return out


def _receive(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edge_runtime.cli", "receive", "--bind", f"tcp://127.0.0.1:{free_port()}",
           "--threads", "1", "--duration", "30", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=_env())


@pytest.mark.parametrize("kind", ["missing", "garbage", "public"])
def test_bad_keys_secret_is_an_error_not_a_hang(tmp_path, keys, kind):
    path = {"missing": tmp_path / "nope.key_secret", "garbage": tmp_path / "junk.key_secret",
            "public": keys["rx_pub"]}[kind]  # fmt: skip
    if kind == "garbage":
        path.write_text('public-key = "abc"\nsecret-key = "def"\n')
    t0 = time.monotonic()
    r = _receive(["--keys-secret", str(path), "--allow-dir", str(keys["allow"])])
    assert r.returncode == 2, r
    assert "error:" in r.stderr and str(path.name) in r.stderr and "Traceback" not in r.stderr
    assert time.monotonic() - t0 < 30  # it did not wait for --duration


def test_bad_key_file_is_refused_alone(tmp_path, keys, caplog):
    shutil.copy(keys["a_pub"], keys["allow"])
    (keys["allow"] / "typo.key").write_text('public-key = "too short"\n')
    (keys["allow"] / "empty.key").write_text("")
    allow = AllowList(keys["allow"])
    assert set(allow.keys.values()) == {"a"}
    assert set(allow.bad) == {"typo.key", "empty.key"}
    assert "typo.key" in caplog.text and "empty.key" in caplog.text


def test_enrol_and_revoke_while_running_and_streams_bound_to_keys(bundle, keys):
    msgs, _, _ = make_messages(bundle, 12, streams=("cam-a",))
    msgs_b, _, _ = make_messages(bundle, 12, streams=("cam-b",))
    with Receiver([bundle], socket_type="router", server_secret=keys["rx"], allow_dir=keys["allow"]) as rx:
        rx.allow.check_every_s = 0.0
        with Sender(rx.endpoint, client_secret=keys["a"], server_public=keys["rx_pub"], kind=zmq.DEALER) as a:
            a.sock.setsockopt(zmq.LINGER, 0)
            try:
                a.send(msgs[:4])
            except zmq.Again:
                pass  # the refused handshake leaves no peer to queue to
            time.sleep(1.0)  # handshakes are refused: nothing arrives
            assert rx.stats.totals()["received"] == 0
        shutil.copy(keys["a_pub"], keys["allow"])  # enrol, no restart
        with Sender(rx.endpoint, client_secret=keys["a"], server_public=keys["rx_pub"], kind=zmq.DEALER) as a:
            a.send(msgs[4:8])
            t = rx.wait(frames=4, duration=30)
            assert t["results"] >= 4
        shutil.copy(keys["b_pub"], keys["allow"])
        with Sender(rx.endpoint, client_secret=keys["b"], server_public=keys["rx_pub"], kind=zmq.DEALER) as b:
            b.send(msgs[8:10])  # b claims a's stream
            b.send(msgs_b[:2])  # and its own
            t = rx.wait(frames=t["received"] + 4, duration=30)
            assert t["rejected"].get("identity") == 2
            assert rx.stats.snapshot()["cam-b"]["results"] == 2
            (keys["allow"] / "b.key").unlink()  # revoke while b is connected
            b.send(msgs_b[2:4])
            t = rx.wait(frames=t["received"] + 2, duration=30)
            assert t["rejected"].get("revoked") == 2
        assert "edge_receiver_bad_key_files 0" in rx.render_metrics()


def test_streams_toml_binds_a_stream_to_a_key(bundle, keys):
    for n in ("a", "b"):
        shutil.copy(keys[n + "_pub"], keys["allow"])
    (keys["allow"] / "streams.toml").write_text('"cam-a" = "a"\n')
    msgs, _, _ = make_messages(bundle, 2, streams=("cam-a",))
    with Receiver([bundle], socket_type="router", server_secret=keys["rx"], allow_dir=keys["allow"]) as rx:
        with Sender(rx.endpoint, client_secret=keys["b"], server_public=keys["rx_pub"], kind=zmq.DEALER) as b:
            b.send(msgs)  # b is first, but the mapping gives cam-a to a
            t = rx.wait(frames=2, duration=30)
        assert t["rejected"] == {"identity": 2}


def test_a_predicted_frame_without_stream_id_is_checked_against_its_resolved_stream(bundle, keys):
    """Version-4 predicted frames carry no stream id: the receiver resolves it (tag and CRC) before
    decoding, so key b cannot write a copy of a's frame into a's stream."""
    import numpy as np

    from edge_runtime.codec import Encoder, Frame, Tensor

    for n in ("a", "b"):
        shutil.copy(keys[n + "_pub"], keys["allow"])
    enc = Encoder(bundle.model_id_bytes, coder="arith", temporal=True)
    rng = np.random.default_rng(0)
    q = rng.integers(0, 4, bundle.split_shape).astype(np.uint8)

    def msg(seq):
        t = Tensor(q, np.full(q.shape[0], 0.5, np.float32), np.zeros(1, np.float32), 2, None)
        return enc.encode(Frame("cam-a", seq, time.time_ns(), t, epoch=0xABCDEF))

    with Receiver([bundle], socket_type="router", server_secret=keys["rx"], allow_dir=keys["allow"]) as rx:
        with Sender(rx.endpoint, client_secret=keys["a"], server_public=keys["rx_pub"], kind=zmq.DEALER) as a, \
                Sender(rx.endpoint, client_secret=keys["b"], server_public=keys["rx_pub"], kind=zmq.DEALER) as b:  # fmt: skip
            a.send([msg(0)])
            assert rx.wait(frames=1, duration=30)["results"] == 1
            enc.acknowledge("cam-a", decoded=0)
            m1 = msg(1)
            assert enc.last_predicted and b"cam-a" not in m1
            b.send([m1])
            t = rx.wait(frames=2, duration=30)
            assert t["rejected"] == {"identity": 1}
            a.send([m1])
            t = rx.wait(frames=3, duration=30)
            assert t["results"] == 2 and rx.stats.snapshot()["cam-a"]["results"] == 2


def _edge_cfg(endpoint: str, **sender) -> object:
    return config_from_dict({"sender": {"endpoints": [endpoint], **sender}}, env={})


def _diagnose(sender: EdgeSender, seconds: float = 4.0) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sender.send(b"x" * 10)
        sender.poll()
        sender.wait(0.1)
    return sender.diagnosis()


def test_edge_says_why_nothing_is_acknowledged(bundle, keys, caplog):
    # nobody listening
    with EdgeSender(_edge_cfg(f"tcp://127.0.0.1:{free_port()}").sender) as s:
        assert "unreachable" in _diagnose(s, 1.5)
    assert "SENDING UNENCRYPTED" in caplog.text
    with Receiver([bundle], socket_type="router", server_secret=keys["rx"], allow_dir=keys["allow"]) as rx:
        # a key that is not enrolled
        cfg = _edge_cfg(rx.endpoint, client_secret_key=str(keys["a"]), server_public_key=str(keys["rx_pub"]))
        with EdgeSender(cfg.sender) as s:
            assert "not enrolled" in _diagnose(s)
            shutil.copy(keys["a_pub"], keys["allow"])  # enrolled while this edge keeps trying
            _diagnose(s, 4.0)
            assert s.handshakes >= 1  # it dialled again by itself (libzmq gives up after a refusal)
        # the wrong server key (b's public key instead of the receiver's)
        cfg = _edge_cfg(rx.endpoint, client_secret_key=str(keys["a"]), server_public_key=str(keys["b_pub"]))
        with EdgeSender(cfg.sender) as s:
            d = _diagnose(s)
            assert "server_public_key" in d, d
        # no CURVE on the edge against a CURVE receiver
        with EdgeSender(_edge_cfg(rx.endpoint).sender) as s:
            d = _diagnose(s)
            assert "CURVE" in d, d
