"""Data sets for training: the built-in procedural scenes and users' ImageFolder trees.

Images are kept as uint8 N x H x W x 3 RGB arrays in memory (the default 20k-scene set is about
1 GB) and normalised per batch with the model's mean / std, the same arithmetic the runtime's
``Bundle.preprocess`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from edge_runtime.scenes import SceneGenerator

__all__ = ["ArrayDataset", "MEAN", "STD", "scene_dataset", "task_dataset", "image_folder", "to_tensor"]

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class ArrayDataset:
    """Images (N,H,W,3) uint8 RGB, labels (N,), optional masks (N,H,W) bool, and class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray) -> ArrayDataset:
        masks = None if self.masks is None else self.masks[index]
        return ArrayDataset(self.images[index], self.labels[index], self.classes, masks)


def to_tensor(images: np.ndarray, mean=MEAN, std=STD) -> torch.Tensor:
    """uint8 (N,H,W,3) RGB -> normalised float32 (N,3,H,W)."""
    # a read-only batch (a cached scene file, memory-mapped) is copied: torch warns on sharing one
    x = torch.from_numpy(np.require(images, requirements=["C", "W"])).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def scene_dataset(
    count: int,
    *,
    seed: int,
    size: int = 128,
    num_classes: int = 10,
    decoy: str | None = None,
    decoy_prob: float = 1.0,
) -> ArrayDataset:
    """``count`` procedural scenes (deterministic by ``seed``)."""
    gen = SceneGenerator(size, num_classes, seed, decoy=decoy, decoy_prob=decoy_prob)
    images, labels, masks = gen.batch(0, count)
    return ArrayDataset(images, labels, gen.class_names, masks)


def _load_chunk(task: str, split: str, start: int, count: int, size: int):
    from edge_runtime.datasets import load

    f = load(task, split, count, size=size, start=start)
    return f.images, f.labels, f.masks, f.classes


def task_dataset(
    task: str, split: str, count: int, *, size: int = 128, progress: bool = False, workers: int = 1
) -> ArrayDataset:
    """``count`` frames of a built-in task's split (:func:`edge_runtime.datasets.load`).

    ``workers > 1`` makes the scenes in that many processes, in chunks; frame ``i`` depends only
    on the split's seed and ``i``, so the result is the same array as with one worker.
    """
    from edge_runtime.datasets import load

    chunk = 500
    if workers <= 1 or count <= chunk:
        f = load(task, split, count, size=size, progress=progress)
        return ArrayDataset(f.images, f.labels, f.classes, f.masks)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm import tqdm

    images = np.empty((count, size, size, 3), np.uint8)
    labels = np.empty(count, np.int64)
    masks = np.empty((count, size, size), bool)
    starts = range(0, count, chunk)
    classes: tuple[str, ...] = ()
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds torch's threads
    with (
        ProcessPoolExecutor(workers, mp_context=ctx) as pool,
        tqdm(total=count, desc=f"{split} scenes", unit="scene", disable=not progress) as bar,
    ):
        jobs = {pool.submit(_load_chunk, task, split, s, min(chunk, count - s), size): s for s in starts}
        for job in as_completed(jobs):
            s = jobs[job]
            im, lab, mk, classes = job.result()
            images[s : s + len(lab)], labels[s : s + len(lab)], masks[s : s + len(lab)] = im, lab, mk
            bar.update(len(lab))
    return ArrayDataset(images, labels, tuple(classes), masks)


def image_folder(root: str | Path, size: int = 128) -> ArrayDataset:
    """Load an ImageFolder tree (``root/<class>/<image>``), resized to ``size`` x ``size``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if not classes:
        raise ValueError(f"{root} has no class folders; expected {root}/<class>/<image files>")
    images, labels = [], []
    for k, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"cannot read image {path}")
            rgb = cv2.cvtColor(cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            images.append(rgb)
            labels.append(k)
    if not images:
        raise ValueError(f"{root} has class folders but no images with suffixes {IMAGE_SUFFIXES}")
    return ArrayDataset(np.stack(images), np.array(labels, np.int64), classes)
