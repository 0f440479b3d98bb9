"""Bad input at a real receiver process (CURVE on): the codec's fuzz corpus, wrong and missing keys,
oversized messages, a wrong model id, replayed and reordered sequence numbers, all beside good
streams, which keep exactly their results. Every message an enrolled client sends is accounted
for: received = results + rejected."""

from __future__ import annotations

import random
import shutil
import time
import urllib.request

import numpy as np
import pytest
import zmq

from benchmarks.harness.codec import fuzz_message, fuzz_seeds
from benchmarks.harness.faults import RxProc, free_port, proc_usage
from benchmarks.harness.receiver import Sender, make_messages
from edge_runtime.codec import Decoder, Encoder, Frame
from edge_runtime.receiver.engine import softmax
from edge_runtime.transport import generate_keypair

pytestmark = pytest.mark.slow

N_FUZZ = 2000
OVERSIZED = 64 << 20  # bytes; far over the decoder limit of the default bundle


@pytest.fixture(scope="module")
def bundle():
    from edge_runtime.bundle import load_bundle

    return load_bundle(threads=1)


def _received(port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        int(float(x.split()[-1])) for x in text.split("\n") if x.startswith("edge_receiver_received_total{")
    )


def _vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _hostile(bundle) -> list[bytes]:
    """What an enrolled but broken or hostile client sends (all must be accounted, none may crash)."""
    rng = random.Random(9)
    seeds = fuzz_seeds(bundle.model_id_bytes)
    out = [fuzz_message(rng, i, seeds) for i in range(N_FUZZ)]
    good, tensors, _ = make_messages(bundle, 10, streams=("replay",), seed=3)
    out += good + good[:5]  # replayed sequence numbers (byte-identical messages)
    ordered, _, _ = make_messages(bundle, 10, streams=("reorder",), seed=4)
    out += ordered[::-1]  # reordered
    other = Encoder(b"\x99" * 8).encode(Frame("wrongmodel", 0, time.time_ns(), tensors[0]))
    out += [other] * 3  # a model this receiver does not serve
    return out


def test_hostile_clients_beside_good_streams(tmp_path, bundle):
    srv_pub, srv_sec = generate_keypair(tmp_path / "server", "receiver")
    _, good_sec = generate_keypair(tmp_path / "good", "good")
    _, evil_sec = generate_keypair(tmp_path / "evil", "evil")
    _, stranger_sec = generate_keypair(tmp_path / "stranger", "stranger")
    allow = tmp_path / "allow"
    allow.mkdir()
    for name in ("good", "evil"):
        shutil.copy(tmp_path / name / f"{name}.key", allow)

    good, tensors, _ = make_messages(bundle, 24, streams=("good0", "good1"), seed=11)
    hostile = _hostile(bundle)
    port = free_port()
    ep = f"tcp://127.0.0.1:{port}"
    rx = RxProc(ep, tmp_path, "rx", extra=("--keys-secret", str(srv_sec), "--allow-dir", str(allow),
                                           "--metrics-port", "0", "--socket", "pull"))  # fmt: skip
    clients = []
    try:
        rx.wait_ready()
        mport = int(rx.lines[0].rsplit("port", 1)[1])
        kw = {"server_public": srv_pub}
        stranger = Sender(ep, client_secret=stranger_sec, **kw)  # wrong key: never admitted
        nokey = Sender(ep)  # no CURVE at all
        evil = Sender(ep, client_secret=evil_sec, **kw)
        huge = Sender(ep, client_secret=evil_sec, **kw)  # enrolled, sends oversized messages
        ok = Sender(ep, client_secret=good_sec, **kw)
        clients = [stranger, nokey, evil, huge, ok]
        for c in clients:
            c.sock.setsockopt(zmq.LINGER, 0)
        for c in (stranger, nokey):
            for m in good[:4]:
                try:
                    c.sock.send(m, zmq.NOBLOCK)
                except zmq.Again:
                    pass  # IMMEDIATE is not set here; a refused client may still have no room
        half = len(good) // 2

        def wait_for(n: int) -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and _received(mport) < n:
                time.sleep(0.2)

        # good and hostile traffic interleaved
        for i in range(max(half, len(hostile))):
            if i < half:
                ok.sock.send(good[i])
            if i < len(hostile):
                evil.sock.send(hostile[i])
        wait_for(half + len(hostile))
        hwm0 = _vm_hwm_kib(rx.pid)  # warm: batches have run, buffers are at their size
        blob = bytes(OVERSIZED)
        for _ in range(3):
            huge.sock.send(blob, copy=False)
        time.sleep(1.0)
        ok.send(good[half:])  # the good stream goes on after the oversized messages
        expect = len(good) + len(hostile)
        wait_for(expect)
        time.sleep(0.5)  # anything else would arrive now (it must not)
        usage = proc_usage(rx.pid)
        hwm1 = _vm_hwm_kib(rx.pid)
    finally:
        for c in clients:
            c.close()
    summary = rx.stop()
    assert summary["rc"] == 0
    # every message of an enrolled client is accounted for, and nothing else got in
    assert summary["received"] == expect, summary
    assert summary["received"] == summary["results"] + summary["rejected"]
    for reason in ("header", "checksum", "model", "payload", "shape"):
        assert summary["reasons"].get(reason, 0) > 0, summary["reasons"]
    # oversized messages are refused before they are allocated (ZMQ_MAXMSGSIZE on the public socket)
    assert hwm1 - hwm0 < (OVERSIZED >> 10), f"receiver peak RSS grew {hwm1 - hwm0} KiB"
    assert usage[1] < 200, f"receiver holds {usage[1]} descriptors"
    # the good streams keep exactly their results
    res = {(r["stream"], r["seq"]): r for r in rx.results() if r["stream"].startswith("good")}
    assert len(res) == len(good)
    seqs = {"good0": 0, "good1": 0}
    for i in range(len(tensors)):
        sid = ("good0", "good1")[i % 2]
        r = res[(sid, seqs[sid])]
        seqs[sid] += 1
        # what was sent: the scale / offset as the wire carries them (float16 in version 2)
        sent = Decoder(model_ids=None).decode(good[i]).tensor
        ref = softmax(bundle.back(sent.dequantize()[None]).astype(np.float64))[0]
        np.testing.assert_allclose(r["scores"], ref, atol=1e-4)
    # a replayed frame gets one result (the rest are refused as duplicates); reordered frames all do
    others = [r for r in rx.results() if r["stream"] in ("replay", "reorder")]
    assert sum(r["stream"] == "replay" for r in others) == 10
    assert summary["reasons"].get("duplicate", 0) >= 5  # the replays (and valid hostile repeats)
    assert sorted(r["seq"] for r in others if r["stream"] == "reorder") == list(range(10))
