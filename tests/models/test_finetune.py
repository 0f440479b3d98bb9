"""Masking- and quantization-aware fine-tuning: the edge's arithmetic in PyTorch, and a short run."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs the offline extra: pip install '.[train]'")

from edge_runtime import kernels  # noqa: E402


def test_fake_quantize_matches_the_edge_quantizer():
    from edge_runtime.models.finetune import fake_quantize

    rng = np.random.default_rng(0)
    f = rng.normal(size=(3, 8, 6, 5)).astype(np.float32)
    keep = rng.random((3, 6, 5)) < 0.5
    bits = [2, 4, 8]
    got = fake_quantize(
        torch.from_numpy(f), torch.from_numpy(keep[:, None].astype(np.float32)), torch.tensor(bits)
    ).numpy()
    for i in range(3):
        q, s, o = kernels.quantize(f[i], bits[i], per_channel=True, mask=keep[i])
        want = kernels.dequantize(q, s, o, keep[i])
        np.testing.assert_allclose(got[i], want, atol=1e-5)


def test_fake_quantize_passes_gradients_and_zero_bits_is_float():
    from edge_runtime.models.finetune import fake_quantize

    f = torch.randn(2, 4, 5, 5, requires_grad=True)
    keep = torch.ones(2, 1, 5, 5)
    keep[0, 0, :2] = 0
    out = fake_quantize(f, keep, torch.tensor([3, 0]))
    out.sum().backward()
    assert torch.equal(f.grad[0, :, :2], torch.zeros(4, 2, 5))  # masked: no gradient
    assert torch.equal(f.grad[1], torch.ones(4, 5, 5))  # straight through
    assert torch.equal(out[1], f[1])  # 0 bits: unquantized


def test_keep_top_matches_the_edge_threshold():
    from edge_runtime.models.finetune import keep_top

    rng = np.random.default_rng(1)
    maps = rng.random((4, 1, 16, 16)).astype(np.float32)
    ratios = [0.0, 0.1, 0.33, 1.0]
    got = keep_top(torch.from_numpy(maps), torch.tensor(ratios)).numpy().astype(bool)
    for i, r in enumerate(ratios):
        np.testing.assert_array_equal(got[i, 0], kernels.threshold_keep_ratio(maps[i, 0], r))


def test_short_finetune_writes_a_loadable_checkpoint(tmp_path):
    from edge_runtime.models.data import scene_dataset
    from edge_runtime.models.finetune import FinetuneConfig, finetune
    from edge_runtime.models.networks import build_model
    from edge_runtime.models.train import load_checkpoint

    model = build_model("abn-s", num_classes=10).eval()
    ckpt = {"arch": "abn-s", "train": {"epochs": 0}, "history": []}
    data = scene_dataset(64, seed=5, size=64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = FinetuneConfig(epochs=1, batch_size=32, threads=1)
    path = finetune(model, ckpt, cfg, data, data.subset(np.arange(16)), tmp_path, progress=False)
    m2, c2 = load_checkpoint(path)
    assert c2["train"]["finetune"]["epochs"] == 1
    assert c2["history"][-1]["finetune_epoch"] == 1
    sd = m2.state_dict()
    assert torch.equal(sd["features.stage1.0.0.weight"], before["features.stage1.0.0.weight"])  # frozen
    assert not torch.equal(sd["perception.fc.weight"], before["perception.fc.weight"])  # trained


def test_finetune_is_an_offline_subcommand(tmp_path):
    from edge_runtime import cli

    args = cli.build_parser().parse_args(["finetune", "ckpt.pt", "--export", "b", "--bits", "2", "4"])
    assert args.command == "finetune" and args.command in cli._OFFLINE
    assert args.bits == [2, 4] and args.export == "b" and not args.train_bottleneck
    assert cli.main(["finetune", str(tmp_path / "missing.pt")]) == 2  # an error line, not a traceback
