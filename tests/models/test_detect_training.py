"""The detector trains: targets, losses, an overfit on a few frames, and `edge-runtime train --task detect`."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the offline extra: pip install '.[train]'")

from edge_runtime.photos import FASHION_DIR  # noqa: E402

needs_fashion = pytest.mark.skipif(
    not FASHION_DIR.exists(), reason="needs Debian's dataset-fashion-mnist (deploy/system-packages.sh)"
)


def test_targets_put_a_peak_at_each_centre_and_boxes_around_it():
    from edge_runtime.models.detect import targets

    boxes = [np.array([[8, 8, 40, 24], [60, 60, 100, 120]], np.float32), np.zeros((0, 4), np.float32)]
    labels = [np.array([1, 3]), np.array([], np.int64)]
    t = targets(boxes, labels, 5, 128)
    heat = t["heat"]
    assert heat.shape == (2, 5, 32, 32) and float(heat[1].max()) == 0.0
    assert heat[0, 1, 16 // 4, 24 // 4] == 1.0 and heat[0, 3, 90 // 4, 80 // 4] == 1.0
    assert int((heat[0] == 1).sum()) == 2  # one positive per object
    w = t["weight"][0]
    assert float(w[16 // 4, 24 // 4]) == 1.0 and float(t["weight"][1].sum()) == 0.0
    assert t["box"][0, :, 16 // 4, 24 // 4].tolist() == [8, 8, 40, 24]
    assert t["obj"].shape == (2, 1, 16, 16) and float(t["obj"][0].max()) == 1.0


def test_decoded_boxes_are_around_their_cells():
    from edge_runtime.models.detect import BOX_SCALE, decode_boxes

    d = torch.zeros(1, 4, 2, 3)
    b = decode_boxes(d, stride=4)
    half = float(torch.nn.functional.softplus(torch.tensor(0.0))) * BOX_SCALE
    assert torch.allclose(b[0, :, 1, 2], torch.tensor([10 - half, 6 - half, 10 + half, 6 + half]))


@pytest.mark.slow
@needs_fashion
def test_detector_learns_a_few_frames():
    """An overfit: the loss falls and the frames it saw are found again (mAP@0.5 well above 0)."""
    from edge_runtime.datasets import load_boxes
    from edge_runtime.detection import DetectionParams
    from edge_runtime.models.data import to_tensor
    from edge_runtime.models.detect import build_detector, detection_loss, targets
    from edge_runtime.models.detect_train import evaluate_detector

    torch.manual_seed(0)
    torch.set_num_threads(1)
    f = load_boxes("fashion-detect", "validation", 12, size=64)
    keep = [i for i in range(12) if len(f.boxes[i])][:6]
    images, boxes, labels = f.images[keep], [f.boxes[i] for i in keep], [f.labels[i] for i in keep]
    model = build_detector("centernet-s", num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    x, tgt = to_tensor(images), targets(boxes, labels, 10, 64)
    losses = []
    for _ in range(150):
        model.train()
        parts = detection_loss(model, x, tgt)
        opt.zero_grad()
        parts["total"].backward()
        opt.step()
        losses.append(parts["total"].item())
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10])
    m = evaluate_detector(model, images, boxes, labels, DetectionParams(0.2, 0.5), 10)
    assert m["map50"] > 0.5, m


@pytest.mark.slow
@needs_fashion
def test_train_command_writes_a_detector_checkpoint(tmp_path, capsys):
    from edge_runtime.cli import main
    from edge_runtime.models.detect_cli import is_detector_checkpoint
    from edge_runtime.models.detect_train import load_detector

    out = tmp_path / "run"
    argv = ["train", "--task", "detect", "--num-train", "32", "--num-val", "8", "--size", "64",
            "--epochs", "1", "--batch-size", "16", "--threads", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "training centernet-s on 32 frames" in capsys.readouterr().out
    ckpt = out / "checkpoint.pt"
    assert is_detector_checkpoint(ckpt)
    model, meta = load_detector(ckpt)
    assert meta["classes"][0] == "t-shirt" and meta["input"]["size"] == [64, 64]
    assert {"map", "map50", "epoch"} <= set(meta["history"][-1])
    logits, boxes = model(torch.zeros(1, 3, 64, 64))
    assert logits.shape == (1, 256, 10) and boxes.shape == (1, 256, 4)

    # masking-aware fine-tuning of its back half: `finetune` knows a detector checkpoint
    from edge_runtime.models.detect_finetune import BACK_MODULES

    ft = tmp_path / "ft"
    argv = ["finetune", str(ckpt), "--num-train", "32", "--num-val", "8", "--batch-size", "16",
            "--threads", "1", "--out", str(ft), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "fine-tuning" in capsys.readouterr().out
    tuned, meta = load_detector(ft / "checkpoint.pt")
    rec = meta["finetune"]
    assert rec["images"] == 32 and rec["epochs"] == 1 and rec["lr"] == 5e-4  # the detector's defaults
    assert {"map50", "map50_fused_keep0.4_3bit"} <= set(rec["before"]) & set(rec["after"])
    old, new = model.state_dict(), tuned.state_dict()
    back = [k for k in old if k.split(".")[0] in BACK_MODULES]
    # the edge's graph (front, objectness) and every BatchNorm statistic stay; the back half trains
    assert all(torch.equal(old[k], new[k]) for k in old if k not in back or "running" in k)
    assert any(not torch.equal(old[k], new[k]) for k in back)
    code = main(["finetune", str(ckpt), "--train-bottleneck", "--out", str(tmp_path / "x"), "--no-progress"])
    assert code == 2 and "error: --train-bottleneck is for the classifier" in capsys.readouterr().err


def test_train_command_errors_name_the_problem(tmp_path, capsys):
    from edge_runtime.cli import main

    code = main(["train", "--task", "detect", "--arch", "plain-s", "--out", str(tmp_path / "r")])
    assert code == 2
    assert "error: --arch 'plain-s' is not a detector" in capsys.readouterr().err
    code = main(["train", "--task", "detect", "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert code == 2 and "has no boxes" in capsys.readouterr().err
