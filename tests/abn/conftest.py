"""Fixtures of the ABN correction tests: a tiny ABN, its checkpoint and bundle, tiny data sets."""

from __future__ import annotations

import cv2
import pytest

pytest.importorskip("torch", reason="needs the offline extra: pip install '.[train]'")

CLASSES = ("circle", "square", "triangle")
SIZE = 64


def tiny_abn(seed: int = 0):
    import torch

    from edge_runtime.models.networks import build_model

    torch.manual_seed(seed)
    model = build_model("abn-s", num_classes=len(CLASSES), bottleneck=4, widths=(8, 8, 8), head_width=16)
    # Calibrate the BatchNorm statistics on random inputs, so that an untrained model's outputs
    # depend on its inputs (with the initial statistics everything collapses to near-constants).
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 3, SIZE, SIZE))
    return model.eval()


def write_checkpoint(model, path):
    import torch

    from edge_runtime.models.data import MEAN, STD

    torch.save(
        {
            "arch": model.arch,
            "config": model.config,
            "state_dict": model.state_dict(),
            "classes": list(CLASSES),
            "input": {"size": [SIZE, SIZE], "mean": list(MEAN), "std": list(STD)},
            "train": {"note": "tiny test model"},
            "history": [],
        },
        path,
    )
    return path


def write_image_folder(root, data):
    """Write an ArrayDataset as an ImageFolder tree (PNG, lossless); returns the keys in load order."""
    for i, (img, y) in enumerate(zip(data.images, data.labels, strict=True)):
        folder = root / data.classes[y]
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


@pytest.fixture(scope="session")
def tiny_scenes():
    from edge_runtime.models.data import scene_dataset

    return scene_dataset(24, seed=5, size=SIZE, num_classes=len(CLASSES))


@pytest.fixture
def tiny_model():
    """A factory of tiny untrained ABNs (3 classes, 64 x 64 input, 8 x 8 map)."""
    return tiny_abn


@pytest.fixture
def tiny_checkpoint(tmp_path):
    """A factory writing a model's checkpoint in the training format."""
    return write_checkpoint


@pytest.fixture
def to_image_folder():
    return write_image_folder
