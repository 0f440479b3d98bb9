"""Temporal coding over real sockets: a real edge loop, a real receiver, acknowledgements (v2) as
the references; every frame delivered, and predicted frames make the stream cheaper."""

from __future__ import annotations

from edge_runtime.config import config_from_dict
from edge_runtime.pipeline import EdgeLoop, EdgePipeline
from edge_runtime.receiver import Receiver
from edge_runtime.sender import Sender
from edge_runtime.sources import FrameFeed

N = 30
# 10 frames a second: under a loaded machine an acknowledgement through a receiver worker took
# longer than the 33 ms between frames at 30 fps, so frames went out coded alone (on/off 0.83-0.97)
FPS = 10.0


def _run(bundle, endpoint, temporal, **sections):
    cfg = config_from_dict(
        {"source": {"mode": "sequential", "fps": FPS}, "sender": {"endpoints": [endpoint]},
         "runtime": {"stream_id": f"t-{temporal}"}, "metrics": {"enabled": False},
         "codec": {"temporal": temporal}, **sections},
        env={},
    )  # fmt: skip
    with Sender(cfg.sender) as sender:
        pipe = EdgePipeline(bundle, cfg)
        loop = EdgeLoop(pipe, FrameFeed.from_config(cfg.source), sender, status_interval_s=0)
        return loop.run(max_frames=N), pipe


def test_temporal_edge_to_receiver_every_frame_delivered_and_cheaper(bundle):
    got = []
    with Receiver([bundle], socket_type="router", callback=got.append) as rx:
        on, pipe = _run(bundle, rx.endpoint, "on")
        off, _ = _run(bundle, rx.endpoint, "off")
        rx.wait(frames=2 * N, duration=30)
        rejected = rx.stats.totals()["rejected"]
    assert pipe.temporal
    for s in (on, off):
        assert s.delivered == N and s.dropped == {} and s.accounted(), s.as_dict()
    assert not rejected, rejected
    assert len(got) == 2 * N
    assert pipe.encoder.reference(pipe.stream_id) is not None  # acks named decoded frames
    assert on.bytes < 0.8 * off.bytes, (on.bytes, off.bytes)


def test_temporal_edges_behind_receiver_workers_are_predicted(bundle):
    """--workers: each temporal stream is decoded by one worker, so its acks name decoded frames
    and its frames are predicted from them; a stream coded alone is still spread over the workers."""
    got = []
    with Receiver([bundle.path], socket_type="router", workers=2, threads=1, callback=got.append) as rx:
        on, pipe = _run(bundle, rx.endpoint, "on")
        off, _ = _run(bundle, rx.endpoint, "off")
        rx.wait(frames=2 * N, duration=60)
        rejected = rx.stats.totals()["rejected"]
    for s in (on, off):
        assert s.delivered == N and s.dropped == {} and s.accounted(), s.as_dict()
    assert not rejected, rejected
    assert len({r.worker for r in got if r.stream_id == "t-on"}) == 1
    assert len({r.worker for r in got if r.stream_id == "t-off"}) == 2
    assert pipe.encoder.reference(pipe.stream_id) is not None
    assert on.bytes < 0.8 * off.bytes, (on.bytes, off.bytes)


def test_temporal_edge_without_acknowledgements_codes_alone(bundle, free_port):
    """PUSH / live: no acks, so no reference is ever trusted; every frame decodes on its own."""
    import zmq

    from edge_runtime.codec import Decoder

    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    pull.setsockopt(zmq.LINGER, 0)
    ep = f"tcp://127.0.0.1:{free_port}"
    pull.bind(ep)
    try:
        stats, pipe = _run(bundle, ep, "on", delivery={"policy": "live"},
                           sender={"endpoints": [ep], "socket": "push"})  # fmt: skip
        msgs = []
        while pull.poll(500):
            msgs.append(pull.recv())
    finally:
        pull.close()
        ctx.term()
    assert msgs and len(msgs) == stats.sent
    dec = Decoder(model_ids=[bundle.model_id_bytes])
    frames = [dec.decode(m) for m in msgs]
    assert all(f.version == 6 and f.ref_seq is None for f in frames)
