from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edge_runtime.config import SourceConfig
from edge_runtime.errors import SourceError
from edge_runtime.photos import PhotoStream
from edge_runtime.sources import FolderSource, FrameFeed, OpenCVSource, SceneSource, open_source


def _write_video(path, n=6, size=(64, 48)):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert w.isOpened()
    for i in range(n):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[:, :, 2] = 40 * i  # red in BGR: grows frame by frame
        w.write(img)
    w.release()


def test_video_file_reads_rgb_and_loops(tmp_path):
    path = tmp_path / "clip.avi"
    _write_video(path)
    cfg = SourceConfig(kind="file", uri=str(path), mode="sequential", loop=True)
    with FrameFeed.from_config(cfg) as feed:
        frames = [feed.get() for _ in range(9)]
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    reds = [int(f.image[..., 0].mean()) for f in frames]  # RGB: red first
    assert abs(reds[1] - 40) <= 6 and reds[0] < 6
    assert reds[6] < 6  # the 7th frame is the first again: the file looped
    assert feed.reopens == 1 and feed.captured == 9
    assert [f.index for f in frames] == list(range(9))


def test_image_folder(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((20, 30, 3), (0, 0, 50 * i), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    src = FolderSource(tmp_path, loop=False)
    with src:
        got = [src.read() for _ in range(4)]
    assert got[3] is None
    assert [int(g.image[0, 0, 0]) for g in got[:3]] == [0, 50, 100]
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        FolderSource(tmp_path / "empty").open()
    with pytest.raises(SourceError, match="does not exist"):
        FolderSource(tmp_path / "missing").open()


def test_builtin_stream_matches_scenes():
    src = open_source(SourceConfig(seed=3))
    assert isinstance(src, SceneSource)
    ref = PhotoStream(seed=3)
    for t in range(3):
        c = src.read()
        assert c.index == t and c.label == ref.frame(t).label
        assert np.array_equal(c.image, ref.frame(t).image)


def test_missing_camera_is_a_clear_error_and_is_retried():
    with pytest.raises(SourceError, match="camera '97' cannot be opened"):
        OpenCVSource("camera", "97").open()
    feed = FrameFeed(OpenCVSource("camera", "97"), mode="latest", retry_initial_s=0.02, retry_max_s=0.05)
    with feed:
        t0 = time.monotonic()
        assert feed.get(timeout=0.5) is None  # returns on time, never hangs
        assert time.monotonic() - t0 < 2.0
    assert feed.open_failures >= 2 and feed.captured == 0


def test_latest_mode_keeps_only_the_newest_frame():
    feed = FrameFeed(SceneSource(size=64), mode="latest", fps=200)
    with feed:
        first = feed.get(timeout=2)
        time.sleep(0.2)  # the consumer is slow: frames pile up in the grabber
        newest = feed.get(timeout=2)
    assert newest.index - first.index > 5
    assert feed.stale >= newest.index - first.index - 1
    assert feed.captured == 2 + feed.stale + feed.discarded
