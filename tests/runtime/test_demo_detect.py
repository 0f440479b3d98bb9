"""`edge-runtime demo --task detect`: mAP, bytes and fps printed, the receiver's boxes recorded."""

from __future__ import annotations

import cv2
import pytest

from edge_runtime.cli import main

pytestmark = pytest.mark.slow


def test_detect_demo_prints_map_and_records_the_boxes(tmp_path, capsys):
    video = tmp_path / "out.mp4"
    assert main(["demo", "--task", "detect", "--frames", "16", "--every", "8", "--record", str(video)]) == 0
    out = capsys.readouterr().out
    assert "mAP@0.5 " in out and "bytes/frame" in out and "fps" in out
    assert "accounted: True" in out and f"recorded 16 frames with the receiver's results to {video}" in out
    cap = cv2.VideoCapture(str(video))
    n, size = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n, size = n + 1, frame.shape
    assert n == 16 and size == (288, 384, 3)  # the 192 x 144 stream at 2x


def test_task_and_bundle_must_agree(tmp_path, capsys):
    from edge_runtime.bundle import DEFAULT_BUNDLE

    assert main(["demo", "--task", "detect", "--bundle", str(DEFAULT_BUNDLE)]) == 2
    assert "--task detect, but bundle" in capsys.readouterr().err
    assert main(["demo", "--task", "detect", "--record", str(tmp_path / "x.gif")]) == 2
    assert "--record: write an .mp4" in capsys.readouterr().err
