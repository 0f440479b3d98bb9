"""A disk cache of a built-in task's frames, for benchmarks that train on 100 000 scenes.

Frames come from :func:`edge_runtime.datasets.load` (the one place that hands them out), in
chunks made by worker processes and written into ``.npy`` files that are then opened memory-mapped:
the 100 000 training scenes of the default recipe are 4.9 GB of images, which two models trained one
after the other (and the retraining runs) read from the page cache instead of making them again
(about 40 minutes of scene making each time on the 2 shared cores).

    python -m benchmarks.scene_cache --split train --count 100000 --out runs/scenes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_runtime.datasets import Frames, load  # noqa: E402

__all__ = ["cached_frames"]

CHUNK = 500


def _chunk(task: str, split: str, start: int, count: int, size: int):
    f = load(task, split, count, size=size, start=start)
    return start, f.images, f.labels, f.masks, f.classes


def _folder(root: Path, task: str, split: str, count: int, size: int) -> Path:
    return Path(root) / f"{task}-{split}-{count}-{size}"


def cached_frames(
    task: str, split: str, count: int, root: str | Path, *, size: int = 128, workers: int = 1
) -> Frames:
    """Frames ``0 .. count-1`` of ``task``'s ``split``, made once into ``root`` and memory-mapped.

    A cache is complete when its ``meta.json`` exists (written last); an incomplete one is made
    again from the chunks it lacks (``done.json`` lists them), so an interrupted run resumes.
    """
    folder = _folder(Path(root), task, split, count, size)
    meta = folder / "meta.json"
    if not meta.is_file():
        _make(folder, task, split, count, size, workers)
    info = json.loads(meta.read_text())
    return Frames(
        np.load(folder / "images.npy", mmap_mode="r"),
        np.load(folder / "labels.npy"),
        np.load(folder / "masks.npy", mmap_mode="r"),
        tuple(info["classes"]),
        task,
        split,
    )


def _make(folder: Path, task: str, split: str, count: int, size: int, workers: int) -> None:
    from numpy.lib.format import open_memmap

    folder.mkdir(parents=True, exist_ok=True)
    done_path = folder / "done.json"
    done = set(json.loads(done_path.read_text())) if done_path.is_file() else set()
    mode = "r+" if done else "w+"
    images = open_memmap(folder / "images.npy", mode, np.uint8, (count, size, size, 3))
    labels = open_memmap(folder / "labels.npy", mode, np.int64, (count,))
    masks = open_memmap(folder / "masks.npy", mode, np.bool_, (count, size, size))
    todo = [s for s in range(0, count, CHUNK) if s not in done]
    classes: tuple[str, ...] = ()
    t0 = time.perf_counter()

    def store(start, im, lab, mk, cls):
        nonlocal classes
        images[start : start + len(lab)], labels[start : start + len(lab)] = im, lab
        masks[start : start + len(lab)] = mk
        classes = cls
        done.add(start)
        if len(done) % 10 == 0 or len(done) * CHUNK >= count:
            images.flush(), labels.flush(), masks.flush()
            done_path.write_text(json.dumps(sorted(done)))
            print(f"{folder.name}: {min(count, len(done) * CHUNK)} of {count} scenes "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip

    if workers <= 1:
        for s in todo:
            store(*_chunk(task, split, s, min(CHUNK, count - s), size))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            jobs = [pool.submit(_chunk, task, split, s, min(CHUNK, count - s), size) for s in todo]
            for job in as_completed(jobs):
                store(*job.result())
    if not classes:  # everything was done before: read the class names once
        classes = load(task, split, 1, size=size).classes
    images.flush(), labels.flush(), masks.flush()
    done_path.write_text(json.dumps(sorted(done)))
    (folder / "meta.json").write_text(json.dumps({"task": task, "split": split, "count": count,
                                                  "size": size, "classes": list(classes)}))  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="fashion")
    p.add_argument("--split", required=True, choices=["train", "validation", "test"])
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="runs/scenes")
    args = p.parse_args(argv)
    f = cached_frames(args.task, args.split, args.count, args.out, size=args.size, workers=args.workers)
    print(f"{len(f)} frames of {args.task}/{args.split} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
