"""File sources: ``latest`` paced at the file's own frame rate, ``sequential`` takes every frame,
``loop = false`` ends the run (exit 0) once the resend window drained, and every result carries
the frame's index in the file and its timestamp."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import cv2
import numpy as np

from benchmarks.harness.faults import REPO, RxProc, _env, free_port
from edge_runtime.config import SourceConfig
from edge_runtime.sources import FrameFeed


def _write_video(path, n=20, fps=10.0, size=(64, 48)):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert w.isOpened()
    for i in range(n):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[:, :, 2] = (8 * i) % 256
        w.write(img)
    w.release()
    return path


def _drain(feed: FrameFeed) -> list:
    out = []
    while True:
        f = feed.get(timeout=2.0)
        if f is None:
            assert feed.ended
            return out
        out.append(f)


def test_latest_mode_is_paced_at_the_files_frame_rate(tmp_path):
    # 5 fps: the consumer has 200 ms per frame
    path = _write_video(tmp_path / "clip.avi", n=10, fps=5.0)
    feed = FrameFeed.from_config(SourceConfig(kind="file", uri=str(path), mode="latest", loop=False))
    t0 = time.monotonic()
    with feed:
        frames = _drain(feed)
    took = time.monotonic() - t0
    assert feed.period == 0.2
    assert took >= 1.6  # 10 frames at 5 fps, not as fast as the decoder goes
    assert feed.stale == 0 and len(frames) == 10  # a consumer faster than the file loses nothing
    # paced from the first frame on: the first two once came back to back, and under load the
    # consumer lost the first one as stale
    gaps_ms = np.diff([f.time_ns for f in frames]) / 1e6
    assert gaps_ms.min() >= 150, gaps_ms


def test_sequential_mode_takes_every_frame_with_index_and_timestamp(tmp_path):
    path = _write_video(tmp_path / "clip.avi", n=12, fps=25.0)
    feed = FrameFeed.from_config(SourceConfig(kind="file", uri=str(path), mode="sequential", loop=False))
    t0 = time.monotonic()
    with feed:
        frames = _drain(feed)
    assert time.monotonic() - t0 < 5 and feed.period == 0  # unpaced
    assert [f.index for f in frames] == list(range(12)) and feed.stale == 0
    ts = [f.source_time_us for f in frames]
    assert ts[0] == 0 and all(abs(b - a - 40_000) <= 1000 for a, b in zip(ts, ts[1:], strict=False))


def test_file_run_ends_at_end_of_file_with_every_frame_delivered(tmp_path):
    path = _write_video(tmp_path / "clip.avi", n=30, fps=30.0)
    ep = f"tcp://127.0.0.1:{free_port()}"
    rx = RxProc(ep, tmp_path, "file-rx")
    try:
        rx.wait_ready()
        cmd = [sys.executable, "-m", "edge_runtime.cli", "run", "--no-metrics", "--endpoint", ep,
               "--source", "file", "--uri", str(path), "--set", "source.loop=false",
               "--set", "source.mode=sequential", "--set", "runtime.stream_id=clip"]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO, env=_env())
        assert r.returncode == 0, r.stderr[-3000:]
        assert "ended (loop = false)" in r.stderr
        summary = rx.stop()
    finally:
        rx.kill()
    results = sorted((x for x in rx.results() if x["stream"] == "clip"), key=lambda x: x["index"])
    assert [x["index"] for x in results] == list(range(30))
    assert summary["results"] == 30 and summary["duplicates"] == 0
    assert abs(results[10]["source_time_us"] - 10 / 30 * 1e6) < 2000
    line = [ln for ln in r.stderr.splitlines() if "stopped: captured" in ln][-1]
    assert "captured 30" in line and "delivered 30" in line, line
    json.dumps(results[0])
