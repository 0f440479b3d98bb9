"""Built-in data sets by split: the one place that hands out frames for training and benchmarks.

Every built-in task has three disjoint splits, ``train`` / ``validation`` / ``test``. Training and
fine-tuning evaluate on ``validation``; benchmarks choose settings on ``validation`` and score the
chosen settings once on ``test``. Nothing else in the project picks seeds for held-out frames.

Tasks:

- ``fashion`` (the default bundle's task): Fashion-MNIST product photographs in camera-like
  scenes over real background photographs (:mod:`edge_runtime.photos`). Splits are disjoint by
  item (Fashion-MNIST's own train / test split; validation items are cut from its train file)
  and by background (training scenes use one region of each seen photograph, validation and test
  the other); ``variant`` gives the generalisation tests: ``unseen_backgrounds`` (photographs no
  training scene used), ``camera_variation`` (camera knobs past the training ranges), ``4x3``
  (4:3 camera frames brought to the square input by ``resize``); ``decoy`` gives the decoy
  scenes of the ABN correction experiment (``"label"``: a patch whose colour encodes the label on a
  share ``decoy_prob`` of the training scenes, a random class on the others; ``"random"``: a patch
  of a random class, the only decoy a validation or test split may carry), each the plain scene of
  the same index plus the patch;
- ``shapes``: the ten procedural shapes over the same real backgrounds and camera model;
- ``shapes-synthetic``: the original procedural scenes on drawn backgrounds (kept for the decoy
  experiment and older results).

Detection tasks (:mod:`edge_runtime.detect_scenes`: zero to several objects per frame, each
with its class and box), with the same item and background splits as the classification tasks:

- ``fashion-detect``: Fashion-MNIST items; ``shapes-detect``: the procedural shapes;
  :func:`load_boxes` hands out frames with boxes, :func:`detection_stream` the moving stream of
  several tracks (validation and test made of the shipped assets, like the classification stream).

Scene seeds differ by split too (``SPLIT_SEEDS``). For the synthetic shapes the old "held-out"
frames (seed 2), on which earlier defaults were selected, are the validation split, and the test
split is a seed nothing was ever tuned on.

Like :mod:`edge_runtime.scenes`, this module needs only numpy and OpenCV (the edge's built-in
stream comes from here), never torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_runtime.scenes import MovingObjectStream, SceneGenerator

__all__ = [
    "DECOYS", "DEFAULT_TASK", "SPLITS", "SPLIT_SEEDS", "TASKS", "VARIANTS", "Frames", "load", "stream",
    "with_decoys", "DETECT_TASKS", "DEFAULT_DETECT_TASK", "BoxFrames", "load_boxes", "detection_generator",
    "detection_stream",
]  # fmt: skip

SPLITS = ("train", "validation", "test")
TASKS = ("fashion", "shapes", "shapes-synthetic")
DEFAULT_TASK = "fashion"
VARIANTS = ("in_domain", "unseen_backgrounds", "camera_variation", "4x3")
#: Share of 4:3 frames (letterboxed) among the in-domain scenes, so the default holds up on them.
ASPECT_MIX = 0.25
#: Share of the training scenes drawn over the training-only textures (``photos.TEXTURES``). Off:
#: at 0.3 the default network reached 25.7% validation top-1 after 3 epochs of 12 000 scenes
#: against 35.6% without (the textures make the task harder to learn within the 30-minute budget).
TEXTURE_MIX = 0.0

#: Decoy patches of the ABN correction experiment (``edge_runtime.photos.DECOYS``).
DECOYS = ("label", "random")

DETECT_TASKS = ("fashion-detect", "shapes-detect")
DEFAULT_DETECT_TASK = "fashion-detect"
#: Scene seeds of the detection tasks by split, and of their moving streams.
DETECT_SEEDS = {"train": 21, "validation": 22, "test": 24}
DETECT_STREAM_SEEDS = {"train": 31, "validation": 32, "test": 34}

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


def _check_decoy(task: str, split: str, decoy: str | None, decoy_prob: float) -> None:
    if decoy is None:
        return
    if task == "shapes-synthetic":
        raise ValueError("decoy scenes are made for the photographic tasks (fashion, shapes)")
    if decoy not in DECOYS:
        raise ValueError(f"unknown decoy {decoy!r}; decoys are {', '.join(DECOYS)}")
    if decoy == "label" and split != "train" and decoy_prob > 0:
        raise ValueError(
            f"a label-coded decoy is for the train split only; the {split} split carries decoy='random'"
        )
    if not 0.0 <= decoy_prob <= 1.0:
        raise ValueError(f"decoy_prob must be in [0, 1], got {decoy_prob}")


def generator(
    task: str,
    split: str,
    *,
    size: int = 128,
    variant: str = "in_domain",
    resize: str = "letterbox",
    decoy: str | None = None,
    decoy_prob: float = 1.0,
):
    """The scene generator behind :func:`load` (``sample(i)``, ``batch(start, count)``)."""
    _check(task, split)
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; variants are {', '.join(VARIANTS)}")
    _check_decoy(task, split, decoy, decoy_prob)
    seed = SPLIT_SEEDS[split]
    if task == "shapes-synthetic":
        if variant != "in_domain":
            raise ValueError("the synthetic shapes have only the in_domain variant")
        return SceneGenerator(size, seed=seed)
    from edge_runtime.photos import PhotoScenes

    if variant == "unseen_backgrounds" and split != "test":
        raise ValueError("unseen backgrounds are a test set only (no training scene may see them)")
    objects = "fashion" if task == "fashion" else "shapes"
    return PhotoScenes(
        objects,
        split,
        "unseen" if variant == "unseen_backgrounds" else split,
        size=size,
        seed=seed,
        camera="strong" if variant == "camera_variation" else "typical",
        aspect=4 / 3 if variant == "4x3" else 1.0,
        aspect_mix=ASPECT_MIX if variant in ("in_domain", "unseen_backgrounds") else 0.0,
        resize=resize,
        texture_mix=TEXTURE_MIX if split == "train" else 0.0,
        decoy=decoy,
        decoy_prob=decoy_prob,
    )


def load(
    task: str,
    split: str,
    count: int,
    *,
    size: int = 128,
    start: int = 0,
    variant: str = "in_domain",
    resize: str = "letterbox",
    progress: bool = False,
    decoy: str | None = None,
    decoy_prob: float = 1.0,
) -> Frames:
    """Frames ``start .. start+count-1`` of ``task``'s ``split`` (deterministic); ``decoy``: see
    the module's docstring.

    Raises :class:`edge_runtime.photos.DataMissingError` (a ``FileNotFoundError``) naming the
    Debian package to install when the photographic task's data are missing.
    """
    if count < 0 or start < 0:
        raise ValueError(f"count and start must be >= 0, got count={count}, start={start}")
    gen = generator(
        task, split, size=size, variant=variant, resize=resize, decoy=decoy, decoy_prob=decoy_prob
    )
    if isinstance(gen, SceneGenerator):
        images, labels, masks = gen.batch(start, count)
    else:
        images, labels, masks = gen.batch(start, count, progress=progress)
    return Frames(images, labels, masks, tuple(gen.class_names), task, split)


def with_decoys(frames: Frames, decoy: str, decoy_prob: float = 1.0, *, start: int = 0) -> Frames:
    """``frames`` (frames ``start ..`` of their split, in-domain) with the decoy patches that
    :func:`load` with ``decoy`` / ``decoy_prob`` draws: the same arrays, made without making the
    scenes again (a cache of the plain scenes serves both the decoy model and its reference)."""
    from edge_runtime.photos import add_decoys

    _check(frames.task, frames.split)
    _check_decoy(frames.task, frames.split, decoy, decoy_prob)
    seed = SPLIT_SEEDS[frames.split]
    images, _ = add_decoys(
        frames.images, frames.labels, frames.masks, seed, decoy, decoy_prob, start, len(frames.classes)
    )
    return Frames(images, frames.labels, frames.masks, frames.classes, frames.task, frames.split)


def stream(task: str, split: str, *, size: int = 128, segment: int = 60):
    """The moving stream of ``task`` for ``split`` (deterministic; disjoint seeds by split).

    The fashion validation and test streams are made of what ships in ``edge_runtime/assets`` (no
    apt needed): disjoint halves of the shipped test items over four background photographs. The
    train stream uses training items over training backgrounds (the Debian packages), so that
    nothing fine-tuned on it has seen a test item.
    """
    _check(task, split)
    if task == "fashion":
        from edge_runtime.photos import PhotoStream

        if split == "train":  # training items over training backgrounds (needs the Debian packages)
            return PhotoStream(
                size, seed=STREAM_SEEDS[split], segment=segment, item_split="train", background="train"
            )
        half = (0.0, 0.5) if split == "validation" else (0.5, 1.0)
        return PhotoStream(size, seed=STREAM_SEEDS[split], segment=segment, item_range=half)
    return MovingObjectStream(size, seed=STREAM_SEEDS[split], segment=segment)


# --- detection ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoxFrames:
    """Images (N,H,W,3) uint8 RGB; per image a (n_i,4) float32 array of boxes ``x0, y0, x1, y1``
    in image pixels and a (n_i,) int64 array of classes; class names."""

    images: np.ndarray
    boxes: list
    labels: list
    classes: tuple[str, ...]
    task: str
    split: str

    def __len__(self) -> int:
        return len(self.images)

    @property
    def objects(self) -> int:
        return int(sum(len(b) for b in self.boxes))


def _check_detect(task: str, split: str) -> None:
    if task not in DETECT_TASKS:
        raise ValueError(
            f"unknown detection task {task!r}; built-in detection tasks are {', '.join(DETECT_TASKS)}"
        )
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits are {', '.join(SPLITS)}")


def detection_generator(
    task: str, split: str, *, size: int = 128, variant: str = "in_domain", resize: str = "letterbox"
):
    """The scene generator behind :func:`load_boxes` (``sample(i)``, ``batch(start, count)``).

    ``variant``: ``in_domain``, ``unseen_backgrounds`` (test only), ``camera_variation`` or ``4x3``
    (every frame 4:3, letterboxed), as for the classification tasks."""
    _check_detect(task, split)
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; variants are {', '.join(VARIANTS)}")
    if variant == "unseen_backgrounds" and split != "test":
        raise ValueError("unseen backgrounds are a test set only (no training scene may see them)")
    from edge_runtime.detect_scenes import DetectionScenes

    return DetectionScenes(
        "fashion" if task == "fashion-detect" else "shapes",
        split,
        "unseen" if variant == "unseen_backgrounds" else split,
        size=size,
        seed=DETECT_SEEDS[split],
        camera="strong" if variant == "camera_variation" else "typical",
        aspect_mix=1.0 if variant == "4x3" else ASPECT_MIX,
        resize=resize,
    )


def load_boxes(
    task: str,
    split: str,
    count: int,
    *,
    size: int = 128,
    start: int = 0,
    variant: str = "in_domain",
    resize: str = "letterbox",
    progress: bool = False,
) -> BoxFrames:
    """Frames ``start .. start+count-1`` of detection task ``task``'s ``split``, with boxes
    (deterministic). Raises :class:`edge_runtime.photos.DataMissingError` naming the Debian package
    to install when the data are missing."""
    if count < 0 or start < 0:
        raise ValueError(f"count and start must be >= 0, got count={count}, start={start}")
    gen = detection_generator(task, split, size=size, variant=variant, resize=resize)
    images, boxes, labels = gen.batch(start, count, progress=progress)
    return BoxFrames(images, boxes, labels, tuple(gen.class_names), task, split)


def detection_stream(
    task: str = DEFAULT_DETECT_TASK,
    split: str = "test",
    *,
    frame_hw: tuple[int, int] = (144, 192),
    segment: int = 90,
    seed: int | None = None,
):
    """The moving stream of several tracks of ``task`` for ``split`` (deterministic; disjoint
    seeds by split). Validation and test are made of what ships in ``edge_runtime/assets`` (no apt
    needed: disjoint halves of the shipped test items over the shipped photographs); the train
    stream uses training items over training backgrounds (the Debian packages). ``seed`` replaces
    the split's seed (the demo's ``source.seed``)."""
    _check_detect(task, split)
    from edge_runtime.detect_scenes import DetectionStream

    objects = "fashion" if task == "fashion-detect" else "shapes"
    seed = DETECT_STREAM_SEEDS[split] if seed is None else seed
    if split == "train":
        return DetectionStream(
            frame_hw, seed, segment=segment, objects=objects, item_split="train", background="train"
        )
    half = (0.0, 0.5) if split == "validation" else (0.5, 1.0)
    return DetectionStream(frame_hw, seed, segment=segment, objects=objects, item_range=half)
