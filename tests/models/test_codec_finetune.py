"""Fair-baseline fine-tuning: the bundle's network rebuilt in PyTorch, whole-model codec fine-tuning."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_runtime import datasets  # noqa: E402
from edge_runtime.models.codec_finetune import (  # noqa: E402
    CodecFinetuneConfig,
    finetune_on_codec,
    model_from_bundle,
    predict,
    split_path_budget,
)

TASK = datasets.DEFAULT_TASK  # the task the default bundle was trained on


def test_model_from_bundle_matches_onnx_runtime(default_bundle):
    b = default_bundle
    model, spec = model_from_bundle(b.path)
    frames = datasets.load(TASK, "validation", 16).images
    onnx_logits = b.back(b.front(b.preprocess(frames))[b.split_name])
    np.testing.assert_allclose(predict(model, frames, spec), onnx_logits, atol=1e-3, rtol=1e-3)


def test_split_path_budget_reads_the_manifest(default_bundle):
    epochs, images = split_path_budget(default_bundle.path)
    assert epochs == default_bundle.manifest["training"]["finetune"]["epochs"]
    assert images >= 1


def test_finetune_on_codec_trains_every_weight_on_the_codec_output(default_bundle):
    torch.set_num_threads(1)
    model, spec = model_from_bundle(default_bundle.path)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train = datasets.load(TASK, "train", 16)
    seen = []

    def compress(frames, rng):  # a codec that blanks the lower half
        out = frames.copy()
        out[:, frames.shape[1] // 2 :] = 0
        seen.append(len(frames))
        return out, np.full(len(frames), 10.0)

    cfg = CodecFinetuneConfig(epochs=2, images=16, batch_size=8, lr=1e-3)
    rec = finetune_on_codec(model, spec, train.images, train.labels, compress, cfg)
    assert seen == [16, 16]  # the codec runs once per epoch over the epoch's images
    assert len(rec["loss"]) == 2 and rec["train_bytes_mean"] == [10.0, 10.0]
    after = model.state_dict()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("features.stage1") for k in moved)  # the front moves too
    assert any(k.startswith("perception") for k in moved)
    with pytest.raises(ValueError, match="labels"):
        finetune_on_codec(model, spec, train.images, train.labels[:3], compress, cfg)
