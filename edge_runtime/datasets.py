"""Built-in data sets by split: the one place that hands out frames for training and benchmarks.

Every built-in task has three disjoint splits, ``train`` / ``validation`` / ``test``. Training and
fine-tuning evaluate on ``validation``; benchmarks choose settings on ``validation`` and score the
chosen settings once on ``test``. Nothing else in the project picks seeds for held-out frames.

For the procedural shapes the splits are disjoint by seed (``SPLIT_SEEDS``). The seeds were
chosen so that the old "held-out" frames (seed 2), on which earlier defaults were selected,
became the validation split, and the test split is a seed nothing was ever tuned on.

Like :mod:`edge_runtime.scenes`, this module needs only numpy and OpenCV (the edge's built-in
stream comes from here), never torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.scenes import MovingObjectStream, SceneGenerator

__all__ = ["DEFAULT_TASK", "SPLITS", "SPLIT_SEEDS", "TASKS", "Frames", "load", "stream"]

SPLITS = ("train", "validation", "test")
TASKS = ("shapes",)
DEFAULT_TASK = "shapes"

#: Scene seeds of the procedural shapes by split (disjoint by construction).
SPLIT_SEEDS = {"train": 1, "validation": 2, "test": 4}
#: Seeds of the moving-object stream by split.
STREAM_SEEDS = {"train": 11, "validation": 12, "test": 14}


@dataclass(frozen=True)
class Frames:
    """Images (N,H,W,3) uint8 RGB, labels (N,) int64, masks (N,H,W) bool, class names."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    classes: tuple[str, ...]
    task: str
    split: str

    def __len__(self) -> int:
        return len(self.labels)


def _check(task: str, split: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; built-in tasks are {', '.join(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")


def load(task: str, split: str, count: int, *, size: int = 128, start: int = 0) -> Frames:
    """Frames ``start .. start+count-1`` of ``task``'s ``split`` (deterministic)."""
    _check(task, split)
    if count < 0 or start < 0:
        raise ValueError(f"count and start must be >= 0, got count={count}, start={start}")
    gen = SceneGenerator(size, seed=SPLIT_SEEDS[split])
    images, labels, masks = gen.batch(start, count)
    return Frames(images, labels, masks, gen.class_names, task, split)


def stream(task: str, split: str, *, size: int = 128, segment: int = 60) -> MovingObjectStream:
    """The moving stream of ``task`` for ``split`` (deterministic; disjoint seeds by split)."""
    _check(task, split)
    return MovingObjectStream(size, seed=STREAM_SEEDS[split], segment=segment)
