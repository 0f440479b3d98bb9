"""The frame-codec baselines: JPEG, WebP, AVIF and PNG of the frame, each with the untuned model and
(``*_fair``) with the whole model fine-tuned on that codec's output.

The frame is resized to the model's input size and compressed; the server decodes it and runs the
whole model. ``jpeg`` / ``webp`` / ``png`` use OpenCV, ``avif`` uses Pillow's AVIF plugin
(libavif; ``AVIF_SPEED`` trades encode time for bytes). The fair models come from
:func:`models.codec_finetune.finetune_on_codec` (each training frame at a quality drawn uniformly
from the codec's sweep, the split path's budget unless told otherwise) and are cached under
``runs/fair_baselines/`` by bundle, codec, sweep and budget, so that a rerun does not retrain.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.rate_sweep import Frames, Measured, Setting
from edge_runtime import datasets
from edge_runtime.bundle import Bundle

__all__ = [
    "CODECS",
    "QUALITIES",
    "encode",
    "decode",
    "random_quality",
    "fair_model",
    "measure_codecs",
    "whole_model_logits",
]

CODECS = ("jpeg", "webp", "avif")
QUALITIES = {
    "jpeg": (5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90, 95),
    "webp": (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100),  # 100: the top lossy quality (above: lossless)
    "avif": (5, 10, 20, 30, 40, 50, 60, 70, 80, 90),
}
AVIF_SPEED = 6  # libavif 0 (slowest, smallest) .. 10; 6: about 10 ms per 128 x 128 frame here
CACHE = Path(__file__).resolve().parents[1] / "runs" / "fair_baselines"


def encode(codec: str, rgb: np.ndarray, q: int | None) -> bytes:
    """``rgb`` (H,W,3) uint8 compressed by ``codec`` at quality ``q`` (PNG: lossless)."""
    if codec == "avif":
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "AVIF", quality=int(q), speed=AVIF_SPEED)
        return buf.getvalue()
    ext, params = {
        "jpeg": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, q]),
        "webp": (".webp", [cv2.IMWRITE_WEBP_QUALITY, q]),
        "png": (".png", []),
    }[codec]
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [int(p) for p in params])
    if not ok:
        raise RuntimeError(f"OpenCV cannot encode {ext}")
    return buf.tobytes()


def decode(codec: str, data: bytes) -> np.ndarray:
    if codec == "avif":
        from PIL import Image

        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _roundtrip(codec: str, frames: np.ndarray, qualities) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out, sizes, secs = np.empty_like(frames), np.zeros(len(frames)), np.zeros(len(frames))
    for i, (im, q) in enumerate(zip(frames, qualities, strict=True)):
        t0 = time.perf_counter()
        data = encode(codec, im, q)
        secs[i] = time.perf_counter() - t0
        sizes[i] = len(data)
        out[i] = decode(codec, data)
    return out, sizes, secs


def random_quality(codec: str):
    """A :data:`models.codec_finetune.Compress` for ``codec``: each frame at a quality drawn
    uniformly from the codec's sweep."""
    qs = np.array(QUALITIES[codec])

    def compress(frames: np.ndarray, rng: np.random.Generator):
        out, sizes, _ = _roundtrip(codec, frames, rng.choice(qs, len(frames)))
        return out, sizes

    return compress


def fair_model(
    bundle: Bundle,
    task: str,
    name: str,
    compress,
    sweep,
    budget: tuple[int, int],
    train=None,
    *,
    progress=False,
):
    """The bundle's whole model fine-tuned on ``compress``'s output (cached): (model, spec, record).

    ``compress`` is a :data:`models.codec_finetune.Compress` drawing its settings from ``sweep``;
    ``budget`` (epochs, images) of train frames, ``train(images)`` or by default
    ``datasets.load(task, "train", images)``. The cache file is named by bundle, task, ``name``,
    sweep and budget: a changed sweep trains a new model instead of reusing one trained on another."""
    import hashlib
    import json

    import torch

    from edge_runtime.models.codec_finetune import CodecFinetuneConfig, finetune_on_codec, model_from_bundle

    epochs, images = budget
    model, spec = model_from_bundle(bundle.path)
    tag = hashlib.sha1(repr(tuple(sweep)).encode()).hexdigest()[:6]
    path = CACHE / f"{bundle.model_id[:12]}-{task}-{name}-s{tag}-{epochs}x{images}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        model.load_state_dict(saved["state"])
        model.eval()
        return model, spec, saved["record"] | {"cached": str(path)}
    frames = train(images) if train else datasets.load(task, "train", images, size=bundle.input.size[0])
    cfg = CodecFinetuneConfig(epochs=epochs, images=images, threads=torch.get_num_threads())
    record = finetune_on_codec(model, spec, frames.images, frames.labels, compress, cfg, progress=progress)
    record["train_split"] = {"task": task, "split": "train", "count": images}
    record["codec"], record["sweep"] = name, list(sweep)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state": model.state_dict(), "record": json.loads(json.dumps(record))}, path)
    return model, spec, record


def whole_model_logits(bundle: Bundle, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """The untuned bundle (front then back, ONNX Runtime) on decoded frames."""
    out = [
        bundle.back(bundle.front(bundle.preprocess(images[i : i + batch]))[bundle.split_name])
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(out)


def measure_codecs(
    bundle: Bundle, frames: Frames, codecs: dict[str, tuple], fair: dict[str, tuple]
) -> list[Measured]:
    """Every codec x quality on ``frames``, scored with the untuned bundle (family ``codec``) and,
    where ``fair`` has the codec's (model, spec), with its fine-tuned model (``codec_fair``).
    ``codecs``: codec -> qualities (``png``: ``(None,)``). Both models see the same decoded frames."""
    from edge_runtime.models.codec_finetune import predict

    out = []
    for codec, qualities in codecs.items():
        for q in qualities:
            decoded, sizes, secs = _roundtrip(codec, frames.images, [q] * len(frames.images))
            params = {} if q is None else {"q": q}
            ms = 1000 * float(np.mean(secs))
            correct = whole_model_logits(bundle, decoded).argmax(1) == frames.labels
            out.append(Measured(Setting(codec, codec, params), frames.split, sizes, correct, ms))
            if codec in fair:
                model, spec = fair[codec]
                correct = predict(model, decoded, spec).argmax(1) == frames.labels
                out.append(
                    Measured(
                        Setting(f"{codec}_fair", f"{codec}_fair", params), frames.split, sizes, correct, ms
                    )
                )
    return out
