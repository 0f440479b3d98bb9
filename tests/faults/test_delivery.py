"""Acknowledged delivery: the edge's resend window, the receiver's cumulative acks, duplicates and
losses, in one process and behind worker processes, over real ZeroMQ sockets."""

from __future__ import annotations

import dataclasses
import time

import pytest
import zmq

from benchmarks.harness.receiver import Sender, make_messages
from edge_runtime.codec import Decoder, Encoder, Frame
from edge_runtime.codec.format import REF_WINDOW
from edge_runtime.config import config_from_dict
from edge_runtime.delivery import DeliveryPolicy, ResendWindow, decode_ack, encode_ack
from edge_runtime.pipeline import EdgeLoop, EdgePipeline
from edge_runtime.receiver import Receiver
from edge_runtime.receiver.ledger import Ledger
from edge_runtime.sender import Sender as EdgeSender
from edge_runtime.sources import FrameFeed


@pytest.fixture(scope="module")
def bundle():
    from edge_runtime.bundle import load_bundle

    return load_bundle(threads=1)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_window_gives_up_only_with_a_reason():
    sent, clock = [], FakeClock()
    refuse = [False]

    def send(m):
        if refuse[0]:
            return "backpressure"
        sent.append(m)
        return None

    w = ResendWindow(DeliveryPolicy(window_frames=4, window_s=10), send, stream_id="s", epoch=7, clock=clock)
    for i in range(3):
        w.submit(i, b"m%d" % i, keyframe=i == 0)
    assert len(sent) == 3 and w.base(3) == 0
    assert w.on_ack("s", 7, 2) == 2 and w.stats.delivered == 2 and w.base(3) == 2
    assert w.on_ack("s", 8, 3) == 0 and w.on_ack("t", 7, 3) == 0  # another epoch / stream
    refuse[0] = True
    for i in range(3, 7):  # the socket refuses: they wait; the window holds 4
        w.submit(i, b"m%d" % i, keyframe=False)
    assert w.stats.dropped == {"window_overflow": 1} and len(w) == 4
    refuse[0] = False
    w.on_reconnect()
    w.service()
    assert sent[-4:] == [b"m3", b"m4", b"m5", b"m6"] and w.stats.resent == 0
    w.on_reconnect()  # the connection dropped: resend what is not acknowledged
    w.service()
    assert w.stats.resent == 4
    clock.t = 11.0
    w.service()
    assert w.stats.dropped["window_expired"] == 4 and len(w) == 0
    assert w.stats.submitted == w.stats.delivered + sum(w.stats.dropped.values()) + len(w)


def test_reconnect_resends_predicted_frames_coded_alone():
    sent, made = [], []

    def alone(seq):
        made.append(seq)
        return b"alone%d" % seq

    w = ResendWindow(DeliveryPolicy(window_frames=8), lambda m: sent.append(m), stream_id="s", epoch=1)
    w.submit(0, b"intra0", keyframe=False)
    w.submit(1, b"pred1", keyframe=False, alone=lambda: alone(1))
    assert sent == [b"intra0", b"pred1"] and made == []
    w.on_reconnect()
    w.service()
    assert sent[2:] == [b"intra0", b"alone1"] and made == [1]
    w.on_reconnect()  # coded alone once; later resends send that
    w.service()
    assert sent[4:] == [b"intra0", b"alone1"] and made == [1]


def test_live_policy_drops_at_the_socket_and_flags_a_lost_keyframe():
    w = ResendWindow(DeliveryPolicy(policy="live"), lambda m: "backpressure", stream_id="s", epoch=1)
    assert not w.submit(0, b"x", keyframe=True)
    assert w.stats.dropped == {"backpressure": 1} and w.lost_keyframe and len(w) == 0


def test_ack_message_roundtrip_and_garbage():
    assert decode_ack(encode_ack("cam-ü", 2**64 - 1, 12345)) == ("cam-ü", 2**64 - 1, 12345)
    for bad in (b"", b"ERA", encode_ack("a", 1, 1)[:-1], b"XYZ" + encode_ack("a", 1, 1)[3:]):
        assert decode_ack(bad) is None


def test_ledger_duplicates_losses_and_out_of_order():
    led = Ledger()
    assert led.claim("s", 1, 0, 0, b"r")
    led.done("s", 1, 0)
    assert not led.claim("s", 1, 0, 0)  # a resend of an answered frame
    assert led.claim("s", 1, 2, 0) and led.claim("s", 1, 1, 0)  # out of order is fine
    assert not led.claim("s", 1, 2, 0)  # in progress: a duplicate too
    led.done("s", 1, 2)
    led.done("s", 1, 1)
    assert decode_ack(led.acks()[0][1]) == ("s", 1, 3)
    assert led.claim("s", 1, 9, 6)  # the edge gave up 3..5: lost
    assert led.totals()["lost"] == 3
    assert led.claim("s", 1, 4, 4)  # ... one arrives late after all (worker mode): not lost
    assert led.totals()["lost"] == 2 and led.totals()["duplicates"] == 2
    # an undecodable late copy (its reference is gone) of a frame answered: a duplicate
    assert led.duplicate("s", 1, 1) and not led.duplicate("s", 1, 20) and not led.duplicate("t", 1, 1)
    assert led.totals()["duplicates"] == 3


def test_replay_gets_no_second_result_and_is_acknowledged_again(bundle):
    msgs, _, _ = make_messages(bundle, 6, streams=("cam-r",))
    got = []
    with Receiver([bundle], socket_type="router", callback=got.append) as rx:
        with Sender(rx.endpoint, kind=zmq.DEALER) as s:
            s.send(msgs)
            s.send(msgs[:3])  # replayed byte for byte
            t = rx.wait(frames=9, duration=30)
            acks = []
            end = time.monotonic() + 10
            while time.monotonic() < end and (not acks or acks[-1][2] < 6):
                if s.sock.poll(100):
                    acks.append(decode_ack(s.sock.recv()))
    assert len(got) == 6 and t["rejected"] == {"duplicate": 3}
    assert acks[-1] == ("cam-r", 0, 6)  # version-1-like epoch 0 from the test encoder's frames


def test_late_copy_of_a_predicted_frame_is_a_duplicate_not_a_decode_error(bundle):
    """After a reconnect an old connection's kernel buffer can still deliver a predicted frame the
    edge meanwhile resent coded alone; by then its reference is gone (fault suite, network cut)."""
    _, tensors, _ = make_messages(bundle, 1, streams=("cam-l",))
    enc = Encoder(bundle.model_id_bytes, coder="arith", temporal=True)
    msgs = []
    for i in range(REF_WINDOW + 3):
        msgs.append(enc.encode(Frame("cam-l", i, time.time_ns(), tensors[0], epoch=5)))
        enc.acknowledge("cam-l", decoded=i)
    assert enc.last_predicted
    with Receiver([bundle], socket_type="router") as rx:
        with Sender(rx.endpoint, kind=zmq.DEALER) as s:
            s.send(msgs)
            rx.wait(frames=len(msgs), duration=30)
            s.send(msgs[1:2])  # predicted from frame 0, which the receiver no longer holds
            t = rx.wait(frames=len(msgs) + 1, duration=30)
    assert t["rejected"] == {"duplicate": 1}


def test_acks_through_worker_processes_and_no_second_result(bundle):
    msgs, tensors, _ = make_messages(bundle, 10, streams=("cam-w",))
    enc = Encoder(bundle.model_id_bytes)
    dec = Decoder(model_ids=None)
    v2 = []
    for m, t in zip(msgs, tensors, strict=True):
        f = dec.decode(m)
        v2.append(enc.encode(dataclasses.replace(f, tensor=t, epoch=99, base=0, model_id=b"")))
    got = []
    with Receiver([bundle.path], socket_type="router", workers=2, threads=1, callback=got.append) as rx:
        with Sender(rx.endpoint, kind=zmq.DEALER) as s:
            s.send(v2)
            s.send(v2[:4])
            rx.wait(frames=14, duration=60)
            last = None
            end = time.monotonic() + 20
            while time.monotonic() < end and (last is None or last[2] < 10):
                if s.sock.poll(100):
                    last = decode_ack(s.sock.recv())
    assert sorted(r.seq for r in got) == list(range(10))
    assert last == ("cam-w", 99, 10)
    assert rx.stats.totals()["rejected"] == {"duplicate": 4}


def test_reliable_edge_with_no_receiver_accounts_every_frame_as_given_up(bundle):
    port = zmq.Context.instance().socket(zmq.ROUTER)
    ep = f"tcp://127.0.0.1:{port.bind_to_random_port('tcp://127.0.0.1')}"
    port.close(0)  # nobody listens there now
    cfg = config_from_dict(
        {"source": {"mode": "sequential"}, "sender": {"endpoints": [ep], "linger_ms": 0},
         "delivery": {"window_frames": 8, "drain_s": 0.5}, "metrics": {"enabled": False}},
        env={},
    )  # fmt: skip
    with EdgeSender(cfg.sender) as sender:
        loop = EdgeLoop(
            EdgePipeline(bundle, cfg), FrameFeed.from_config(cfg.source), sender, status_interval_s=0
        )
        t0 = time.monotonic()
        stats = loop.run(max_frames=20)
    assert time.monotonic() - t0 < 20
    assert stats.accounted() and stats.delivered == 0
    assert stats.dropped == {"window_overflow": 12, "shutdown": 8}, stats.dropped


def test_reliable_edge_to_receiver_delivers_every_frame(bundle):
    with Receiver([bundle], socket_type="router") as rx:
        cfg = config_from_dict(
            {"source": {"mode": "sequential"}, "sender": {"endpoints": [rx.endpoint]},
             "runtime": {"stream_id": "rel"}, "metrics": {"enabled": False}},
            env={},
        )  # fmt: skip
        with EdgeSender(cfg.sender) as sender:
            loop = EdgeLoop(
                EdgePipeline(bundle, cfg), FrameFeed.from_config(cfg.source), sender, status_interval_s=0
            )
            stats = loop.run(max_frames=15)
        t = rx.wait(frames=15, duration=30)
    assert stats.delivered == 15 and stats.dropped == {} and stats.accounted()
    assert t["results"] == 15


def test_default_stream_id_is_the_host_name(bundle):
    import socket

    cfg = config_from_dict({"metrics": {"enabled": False}}, env={})
    assert EdgePipeline(bundle, cfg).stream_id == socket.gethostname()[:64]
    assert EdgePipeline(bundle, cfg).epoch != EdgePipeline(bundle, cfg).epoch  # new at every start


def test_a_key_frame_that_did_not_go_out_forces_the_next_one(bundle):
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    ep = f"tcp://127.0.0.1:{pull.bind_to_random_port('tcp://127.0.0.1')}"
    cfg = config_from_dict(
        {"source": {"mode": "sequential"}, "sender": {"endpoints": [ep], "socket": "push"},
         "delivery": {"policy": "live"}, "codec": {"keyframe_interval": 4}, "metrics": {"enabled": False}},
        env={},
    )  # fmt: skip
    try:
        with EdgeSender(cfg.sender) as sender:
            real_send, refused = sender.send, []

            def send(m):  # the socket refuses the first key frame (a full queue)
                if not refused:
                    refused.append(m)
                    return "backpressure"
                return real_send(m)

            sender.send = send
            end = time.monotonic() + 5
            while not sender.connected and time.monotonic() < end:
                sender.poll()
                sender.wait(0.05)
            loop = EdgeLoop(
                EdgePipeline(bundle, cfg), FrameFeed.from_config(cfg.source), sender, status_interval_s=0
            )
            stats = loop.run(max_frames=6)
        msgs = []
        while pull.poll(500):
            msgs.append(pull.recv())
    finally:
        pull.close(0)
        ctx.term()
    dec = Decoder(model_ids=None)
    assert dec.decode(refused[0]).keyframe
    frames = [dec.decode(m) for m in msgs]
    assert stats.dropped == {"backpressure": 1} and len(frames) == 5
    assert frames[0].keyframe and frames[0].seq == 0  # seq reused, and a key frame again
    assert [f.delta for f in frames[1:4]] == [True, True, True] and dec.missing_keyframe == 0
