"""Detection end to end on loopback: the shipped detection bundle, the edge pipeline, real ZeroMQ
sockets, the Receiver with NMS, boxes in frame pixels in the callback, JSONL and PUB sinks."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import zmq

from benchmarks.harness.receiver import Sender
from edge_runtime.bundle import DETECT_BUNDLE, load_bundle
from edge_runtime.codec import Decoder
from edge_runtime.config import config_from_dict
from edge_runtime.detection import FrameGeometry, mean_average_precision, postprocess
from edge_runtime.pipeline import EdgePipeline
from edge_runtime.receiver import Receiver, Result
from edge_runtime.sources import Captured, DetectionSceneSource

FRAME_HW = (144, 192)


@pytest.fixture(scope="module")
def detect_bundle():
    return load_bundle(DETECT_BUNDLE, threads=1)


@pytest.fixture(scope="module")
def frames():
    src = DetectionSceneSource(seed=7, frame_hw=FRAME_HW)  # 2-3 tracks over these frames
    out = [src.read() for _ in range(80)][::5]
    blank = Captured(np.full((*FRAME_HW, 3), 96, np.uint8), 80, time.time_ns(), truth=(np.zeros((0, 4)), []))
    return [*out, blank]  # the last frame holds nothing: the empty message


def _messages(bundle, frames, provider="grad_selective"):
    cfg = config_from_dict(
        {"importance": {"provider": provider}, "reduce": {"value": 0.5}, "quantize": {"bits": 6},
         "codec": {"temporal": "off"}, "runtime": {"stream_id": "cam0"}},
        env={},
    )  # fmt: skip
    pipe = EdgePipeline(bundle, cfg)
    return [pipe.process(f, i) for i, f in enumerate(frames)]


def test_detections_over_real_sockets_in_frame_pixels(detect_bundle, frames, tmp_path):
    b = detect_bundle
    outs = _messages(b, frames)
    msgs = [o.message for o in outs]
    assert outs[-1].empty and len(msgs[-1]) < 50  # nothing detected: the empty message
    assert not any(o.empty for o in outs[:-1])  # every frame of the stream holds 2-3 objects
    geometry = FrameGeometry({"cam0": FRAME_HW})
    got: list[Result] = []
    probe_cfg = config_from_dict({"runtime": {"stream_id": "probe"}, "codec": {"temporal": "off"}}, env={})
    probe_pipe = EdgePipeline(b, probe_cfg)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"cam0")
    sub.setsockopt(zmq.SUBSCRIBE, b"probe")
    published = []
    try:
        with Receiver([b], socket_type="pull", jsonl=tmp_path / "r.jsonl", pub="tcp://127.0.0.1:0",
                      geometry=geometry, callback=got.append) as rx:  # fmt: skip
            sub.connect(rx.pub_endpoint)
            with Sender(rx.endpoint) as s:
                # PUB drops until the subscription arrives: probe (another stream) until it does
                for i in range(100):
                    s.send([probe_pipe.process(frames[-1], i).message])
                    if sub.poll(100) and sub.recv_multipart()[0] == b"probe":
                        break
                else:
                    raise AssertionError("no probe result reached the subscriber in 100 tries")
                s.send(msgs)
                deadline = time.monotonic() + 30
                while len(published) < len(msgs) and time.monotonic() < deadline:
                    if sub.poll(100):
                        part = sub.recv_multipart()
                        if part[0] == b"cam0":
                            published.append(part)
                rx.wait(frames=len(msgs) + i + 1, duration=30)  # every probe and frame accounted for
            totals = rx.stats.snapshot()["cam0"]
    finally:
        sub.close(0)
        ctx.term()
    got = [r for r in got if r.stream_id == "cam0"]
    assert totals["results"] == len(msgs) and totals["empty"] == sum(o.empty for o in outs)
    by_seq = {r.seq: r for r in got}
    dec = Decoder(model_ids=[b.model_id_bytes])
    n_boxes = 0
    for seq, m in enumerate(msgs):
        r, fr = by_seq[seq], dec.decode(m)
        assert r.task == "detect" and r.index == frames[seq].index and r.coords == "frame"
        if fr.tensor is None:
            assert r.detections is None and r.empty
            continue
        # the receiver's result is the back half + NMS on the decoded tensor, letterbox undone
        logits, boxes = b.detect(fr.tensor.dequantize()[None])
        want = geometry.to_frame(postprocess(logits[0], boxes[0], b.detection), "cam0", (128, 128), b.classes)
        assert list(r.detections) == want
        for d in r.detections:
            x0, y0, x1, y1 = d["box"]
            assert 0 <= x0 <= x1 <= 192 and 0 <= y0 <= y1 <= 144 and d["score"] > b.detection.score_threshold
            n_boxes += 1
        back = Result.from_dict(r.to_dict() | {"base": r.base})  # worker processes send dicts
        assert back.detections == r.detections and back.to_dict() == r.to_dict()
    assert n_boxes > 0
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    lines = [ln for ln in lines if ln["stream"] == "cam0"]
    assert len(lines) == len(msgs)
    assert {"stream", "seq", "index", "detections", "coords", "frame_size"} <= set(lines[0])
    assert [ln for ln in lines if ln["detections"] is None][0]["seq"] == len(msgs) - 1
    assert lines[0]["frame_size"] == list(FRAME_HW)
    assert len(published) == len(msgs)
    topic, body = published[0]
    assert topic == b"cam0" and "detections" in json.loads(body)


def test_receiver_boxes_find_the_objects(detect_bundle, frames):
    """The shipped detector, through masking, quantization and the wire, finds the stream's objects."""
    b = detect_bundle
    outs = _messages(b, frames, provider="fused")
    dec = Decoder(model_ids=[b.model_id_bytes])
    geometry = FrameGeometry({"*": FRAME_HW})
    dets, truths = [], []
    for o, f in zip(outs, frames, strict=True):
        fr = dec.decode(o.message)
        found = []
        if fr.tensor is not None:
            logits, boxes = b.detect(fr.tensor.dequantize()[None])
            found = geometry.to_frame(postprocess(logits[0], boxes[0], b.detection), "x", (128, 128), None)
        dets.append((np.array([d["box"] for d in found]).reshape(-1, 4), np.array([d["score"] for d in found]),
                     np.array([d["class"] for d in found])))  # fmt: skip
        truths.append(f.truth)
    m = mean_average_precision(dets, truths, b.num_classes)
    assert m["map50"] > 0.5, m


def test_frame_size_option_errors_name_the_value(capsys):
    from edge_runtime.cli import main

    assert main(["receive", "--frame-size", "cam0=wide", "--duration", "0.1"]) == 2
    assert "frame size must be [STREAM=]WIDTHxHEIGHT" in capsys.readouterr().err
