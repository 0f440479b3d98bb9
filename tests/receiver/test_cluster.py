"""Cluster mode on a real one-machine Ray cluster, started here on 127.0.0.1 and stopped at the
end of the module: real edge messages over real ZeroMQ sockets into a receiver whose back half is
a Ray Serve deployment; results equal to the in-process receiver's; a replica killed mid-stream."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from helpers.system import require

from benchmarks.harness.receiver import Sender, make_messages
from edge_runtime.bundle import DETECT_BUNDLE, load_bundle
from edge_runtime.cli import main
from edge_runtime.config import config_from_dict
from edge_runtime.detection import FrameGeometry
from edge_runtime.pipeline import EdgeLoop, EdgePipeline
from edge_runtime.receiver import Receiver, Result
from edge_runtime.receiver.cluster import ClusterConfig
from edge_runtime.sender import Sender as EdgeSender
from edge_runtime.sources import Captured, DetectionSceneSource, FrameFeed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_address():
    try:
        import ray
    except ImportError:
        ray = None
    require(ray is not None, 'Ray is not installed (pip install ".[cluster]")')
    # two CPUs (the machine's), no dashboard; Ray turns 127.0.0.1 into this host's own address
    ray.init(
        num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
        logging_level=logging.WARNING,
    )  # fmt: skip
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def deployment(ray_address):
    """A deployment name for one test, deleted after it (it holds the cluster's CPUs)."""
    from ray import serve

    names = []

    def make(name: str) -> str:
        names.append(name)
        return name

    yield make
    for n in names:
        serve.delete(n)


def _replicas(name: str) -> list[str]:
    import ray

    return [
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(f"SERVE_REPLICA::{name}#")
    ]  # fmt: skip


def _run(bundle, msgs, **kw) -> tuple[Receiver, list[Result], dict]:
    got: list[Result] = []
    with Receiver([bundle], callback=got.append, max_batch=8, max_wait_ms=5, **kw) as rx:
        with Sender(rx.endpoint) as s:
            s.send(msgs)
            totals = rx.wait(frames=len(msgs), duration=120)
    return rx, got, totals


def _in_order_per_stream(got: list[Result]) -> bool:
    last: dict[str, int] = {}
    for r in got:
        if r.seq <= last.get(r.stream_id, -1):
            return False
        last[r.stream_id] = r.seq
    return True


def test_results_equal_the_in_process_receivers(bundle, ray_address, deployment):
    msgs, _, _ = make_messages(bundle, 45, streams=("cam0", "cam1", "cam2"), empty_every=8)
    _, ref, _ = _run(bundle, msgs)
    cfg = ClusterConfig(address=ray_address, deployment=deployment("t-e2e"), min_replicas=2, max_replicas=2)
    _, got, totals = _run(bundle, msgs, cluster=cfg)
    assert totals["received"] == totals["results"] == len(msgs) and totals["rejected"] == {}
    keys = [(r.stream_id, r.seq) for r in got]
    assert len(set(keys)) == len(keys) == len(msgs)  # every frame answered, once
    assert _in_order_per_stream(got)  # empty frames wait for their stream's older ones too
    want = {(r.stream_id, r.seq): r for r in ref}
    for r in got:
        w = want[(r.stream_id, r.seq)]
        assert r.cls == w.cls and r.label == w.label
        if w.scores is None:
            assert r.scores is None
        else:
            np.testing.assert_allclose(r.scores, w.scores, atol=1e-5)
    assert len(_replicas("t-e2e")) == 2


def test_detection_bundle_through_the_cluster_gives_the_in_process_boxes(ray_address, deployment):
    """The back half of a detection bundle on the replicas (logits and boxes back), NMS and the
    frame-pixel boxes at the ingest: the same detections as the in-process receiver's."""
    b = load_bundle(DETECT_BUNDLE, threads=1)
    src = DetectionSceneSource(seed=7, frame_hw=(144, 192))  # 2-3 tracks over these frames
    frames = [src.read() for _ in range(80)][::4]
    blank = Captured(np.full((144, 192, 3), 96, np.uint8), 80, time.time_ns(), truth=(np.zeros((0, 4)), []))
    cfg = config_from_dict(
        {"importance": {"provider": "grad_selective"}, "reduce": {"value": 0.5}, "codec": {"temporal": "off"},
         "runtime": {"stream_id": "cam0"}},
        env={},
    )  # fmt: skip
    pipe = EdgePipeline(b, cfg)
    outs = [pipe.process(f, i) for i, f in enumerate([*frames, blank])]
    assert outs[-1].empty and not all(o.empty for o in outs)
    msgs = [o.message for o in outs]
    geometry = FrameGeometry({"cam0": (144, 192)})
    _, ref, _ = _run(b, msgs, geometry=geometry)
    cluster = ClusterConfig(address=ray_address, deployment=deployment("t-detect"))
    _, got, totals = _run(b, msgs, cluster=cluster, geometry=geometry)
    assert totals["results"] == len(msgs) and totals["rejected"] == {}
    assert [r.seq for r in got] == list(range(len(msgs)))  # in order
    want = {r.seq: r for r in ref}
    assert sum(len(r.detections or ()) for r in got) > 0
    for r in got:
        w = want[r.seq]
        assert r.task == "detect" and r.coords == "frame" and r.frame_size == (144, 192)
        if w.detections is None:
            assert r.detections is None  # the empty message
            continue
        assert [d["class"] for d in r.detections] == [d["class"] for d in w.detections]
        for d, e in zip(r.detections, w.detections, strict=True):
            np.testing.assert_allclose(d["box"], e["box"], atol=1e-2)
            assert abs(d["score"] - e["score"]) < 1e-4


def test_reliable_edge_through_the_cluster_gets_every_frame_acknowledged(bundle, ray_address, deployment):
    """The real edge loop (DEALER, resend window, temporal coding as shipped) to a ROUTER receiver
    in cluster mode: acks come only after the result is written, and every frame is delivered."""
    cfg = ClusterConfig(address=ray_address, deployment=deployment("t-edge"))
    got: list[Result] = []
    with Receiver([bundle], socket_type="router", callback=got.append, cluster=cfg) as rx:
        ecfg = config_from_dict(
            {"source": {"mode": "sequential"}, "sender": {"endpoints": [rx.endpoint]},
             "runtime": {"stream_id": "edge-ray"}, "metrics": {"enabled": False}},
            env={},
        )  # fmt: skip
        with EdgeSender(ecfg.sender) as sender:
            loop = EdgeLoop(
                EdgePipeline(bundle, ecfg), FrameFeed.from_config(ecfg.source), sender, status_interval_s=0
            )
            stats = loop.run(max_frames=20)
        t = rx.wait(frames=20, duration=60)
    assert stats.delivered == 20 and stats.dropped == {} and stats.accounted()
    assert t["results"] == 20 and t["rejected"] == {}
    assert [r.seq for r in got] == list(range(20))
    assert rx.ledger.totals()["duplicates"] == 0 and rx.acks_sent > 0


def test_replica_killed_mid_stream_loses_and_repeats_nothing(bundle, ray_address, deployment):
    import ray

    name = deployment("t-kill")
    # one replica: every request in flight when it dies fails and must be sent again
    cfg = ClusterConfig(address=ray_address, deployment=name, request_timeout_s=20, max_inflight=4)
    msgs, _, _ = make_messages(bundle, 200, streams=("k0", "k1"), empty_every=16)
    got: list[Result] = []
    with Receiver([bundle], callback=got.append, max_batch=2, max_wait_ms=1, cluster=cfg) as rx:
        with Sender(rx.endpoint) as s:
            s.send(msgs)
            deadline = time.monotonic() + 60
            while not (len(got) >= 20 and rx._backend.inflight >= 2) and time.monotonic() < deadline:
                time.sleep(0.001)
            (victim,) = _replicas(name)
            killed_at, inflight_at_kill = len(got), rx._backend.inflight
            ray.kill(ray.get_actor(victim, namespace="serve"))
            totals = rx.wait(frames=len(msgs), duration=120)
    assert killed_at < len(msgs) and inflight_at_kill >= 2  # it died mid-stream, requests out
    assert totals["received"] == totals["results"] == len(msgs) and totals["rejected"] == {}
    keys = [(r.stream_id, r.seq) for r in got]
    assert len(set(keys)) == len(keys) == len(msgs)  # nothing lost, nothing answered twice
    assert _in_order_per_stream(got)
    # Requests that met the dead replica were sent again: by Serve's router when it saw the
    # replica die, or by the ingest when the error reached it (both happen: rx._backend.retries
    # counts the second kind; it is 0 in some runs, 2-3 in others, so it is not asserted).
    assert _replicas(name) and victim not in _replicas(name)  # Ray started a new one


def test_cli_receive_with_ray_and_a_cluster_table(ray_address, deployment, tmp_path, capsys):
    from ray import serve

    name = deployment("t-cli")
    toml = tmp_path / "rx.toml"
    toml.write_text(
        f'[receiver]\nbind = "tcp://127.0.0.1:0"\nsocket = "router"\n\n'
        f'[cluster]\naddress = "not-this-one:1"\ndeployment = "{name}"\nmax_batch_size = 16\n'
    )
    assert main(["receive", "--config", str(toml), "--ray", ray_address, "--duration", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "receiving on tcp://127.0.0.1:" in out
    assert serve.status().applications[name].status == "RUNNING"
    # a second ingest attaches to the running deployment (its replicas stay as they were)
    before = _replicas(name)
    assert main(["receive", "--config", str(toml), "--ray", ray_address, "--duration", "0.2"]) == 0
    assert _replicas(name) == before


def test_requests_inside_a_killed_replica_are_all_answered_once(bundle, ray_address, deployment):
    import ray

    name = deployment("t-inside")
    # @serve.batch holds the requests for a second (the batch never fills), so at the kill they
    # are inside the replica. Who sends them again varies: the ingest (its retry count) in most
    # runs, Serve's router itself in some (a CI run: ingest retries 0); what the user sees must not
    cfg = ClusterConfig(
        address=ray_address, deployment=name, max_batch_size=64, batch_wait_timeout_s=1.0, max_inflight=4
    )
    msgs, _, _ = make_messages(bundle, 8, streams=("i0",))
    got: list[Result] = []
    with Receiver([bundle], callback=got.append, max_batch=2, max_wait_ms=0, cluster=cfg) as rx:
        with Sender(rx.endpoint) as s:
            s.send(msgs)
            deadline = time.monotonic() + 30
            while rx._backend.inflight < 4 and time.monotonic() < deadline:
                time.sleep(0.001)
            assert rx._backend.inflight == 4 and not got
            (victim,) = _replicas(name)
            ray.kill(ray.get_actor(victim, namespace="serve"))
            totals = rx.wait(frames=len(msgs), duration=120)
    assert totals["results"] == len(msgs) and totals["rejected"] == {}
    assert [r.seq for r in got] == list(range(len(msgs)))
