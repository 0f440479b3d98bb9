"""Data loading and a short end-to-end train -> export -> load through the CLI."""

import json

import cv2
import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the offline extra: pip install '.[train]'")


def _image_folder(root, classes=("cat", "dog"), per_class=6):
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = np.full((40, 50, 3), 60 + 120 * k, np.uint8) + rng.integers(
                0, 20, (40, 50, 3), dtype=np.uint8
            )
            cv2.imwrite(str(root / name / f"{i}.png"), img)
    (root / "dog" / "notes.txt").write_text("not an image")


def test_image_folder_loads_resizes_and_labels(tmp_path):
    from edge_runtime.models.data import image_folder

    _image_folder(tmp_path)
    data = image_folder(tmp_path, size=64)
    assert data.classes == ("cat", "dog")
    assert data.images.shape == (12, 64, 64, 3) and data.images.dtype == np.uint8
    assert data.labels.tolist() == [0] * 6 + [1] * 6


def test_image_folder_errors(tmp_path):
    from edge_runtime.models.data import image_folder

    with pytest.raises(FileNotFoundError, match="does not exist"):
        image_folder(tmp_path / "nope")
    with pytest.raises(ValueError, match="no class folders"):
        image_folder(tmp_path)
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="no images"):
        image_folder(tmp_path)


def test_scenes_made_in_processes_equal_one_process():
    from edge_runtime.models.data import task_dataset

    one = task_dataset("shapes", "validation", 520, size=64)
    two = task_dataset("shapes", "validation", 520, size=64, workers=2)
    np.testing.assert_array_equal(one.images, two.images)
    np.testing.assert_array_equal(one.labels, two.labels)
    np.testing.assert_array_equal(one.masks, two.masks)
    assert one.classes == two.classes


def test_augment_keeps_shape_and_range():
    from edge_runtime.models.data import MEAN, STD
    from edge_runtime.models.train import augment

    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    x, no_masks = augment(images, np.random.default_rng(1), shift=4)
    assert tuple(x.shape) == (5, 3, 32, 32) and no_masks is None
    lo, hi = (0 - MEAN[0]) / STD[0], (1 - MEAN[0]) / STD[0]
    assert float(x.min()) >= lo - 1e-6 and float(x.max()) <= hi + 1e-6
    y, _ = augment(images, np.random.default_rng(1), shift=4)
    assert bool((x == y).all())  # seeded


def test_camera_augment_degrades_within_range_and_is_seeded():
    from edge_runtime.models.data import MEAN, STD
    from edge_runtime.models.train import augment

    # a sharp edge: blur, noise and JPEG must soften or perturb it, the range must hold, and the
    # same seed must give the same batch
    images = np.zeros((16, 32, 32, 3), np.uint8)
    images[:, :, 16:] = 200
    plain, _ = augment(images, np.random.default_rng(5), shift=0)
    cam, _ = augment(images, np.random.default_rng(5), shift=0, camera=True)
    again, _ = augment(images, np.random.default_rng(5), shift=0, camera=True)
    assert bool((cam == again).all())
    lo, hi = (0 - MEAN[0]) / STD[0], (1 - MEAN[0]) / STD[0]
    assert float(cam.min()) >= lo - 1e-6 and float(cam.max()) <= hi + 1e-6
    # inside the flat regions the plain batch has one value per image and channel; the camera's
    # noise spreads it
    flat = (slice(None), slice(None), slice(2, 30), slice(2, 12))
    assert float(plain[flat].std(dim=(2, 3)).max()) < 1e-5
    assert float(cam[flat].std(dim=(2, 3)).mean()) > 1e-3


def test_camera_augment_share_picks_images_and_zero_keeps_the_random_stream():
    import pytest

    from edge_runtime.models.train import augment

    images = np.zeros((64, 32, 32, 3), np.uint8)
    images[:, :, 16:] = 200
    plain, _ = augment(images, np.random.default_rng(7), shift=0)
    off, _ = augment(images, np.random.default_rng(7), shift=0, camera=0.0)
    assert bool((plain == off).all())  # share 0 draws nothing more: the default recipe is unchanged
    half, _ = augment(images, np.random.default_rng(7), shift=0, camera=0.5)
    flat = (slice(None), slice(None), slice(2, 30), slice(2, 12))
    noisy = half[flat].std(dim=(1, 2, 3)) > 1e-3  # the camera's noise spreads a flat region
    assert 16 <= int(noisy.sum()) <= 48, int(noisy.sum())
    with pytest.raises(ValueError, match="share"):
        augment(images, np.random.default_rng(7), camera=1.5)


def test_shift_flip_kernel_gives_the_pixels_of_the_opencv_warps_it_replaced():
    import cv2

    from edge_runtime.models.train import _shift_flip

    r = np.random.default_rng(4)
    n, h, w, shift = 16, 20, 26, 8
    images = r.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    masks = r.random((n, h, w)) < 0.3
    dy, dx = r.integers(0, 2 * shift + 1, (2, n))
    flip = r.random(n) < 0.5
    perm = np.stack([r.permutation(3) for _ in range(n)])
    out, out_masks = np.empty_like(images), np.empty_like(masks)
    _shift_flip(images, masks, dy, dx, flip, perm, shift, out, out_masks)
    for i in range(n):
        tx, ty = shift - dx[i], shift - dy[i]
        t = np.float32([[-1, 0, w - 1 - tx], [0, 1, ty]] if flip[i] else [[1, 0, tx], [0, 1, ty]])
        for a, b in (
            (np.ascontiguousarray(images[i][..., perm[i]]), out[i]),
            (masks[i].view(np.uint8), out_masks[i]),
        ):
            warped = cv2.warpAffine(a, t, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)
            np.testing.assert_array_equal(b.view(np.uint8), warped)


def test_colour_kernel_matches_the_pytorch_passes_it_replaced():
    from edge_runtime.models.data import MEAN, STD
    from edge_runtime.models.train import _NOISE_FIELDS, _colour, _noise_bank, colour_reference

    r = np.random.default_rng(11)
    n = 12
    images = r.integers(0, 256, (n, 24, 20, 3), dtype=np.uint8)
    images[0] = 255  # saturates: the clamp must hold
    gain = r.uniform(0.8, 1.2, (n, 3)).astype(np.float32)
    contrast, bright = r.uniform(0.7, 1.3, n).astype(np.float32), r.uniform(-0.1, 0.1, n).astype(np.float32)
    fields = r.integers(0, _NOISE_FIELDS, n)
    for sigma in (np.zeros(n, np.float32), np.where(r.random(n) < 0.5, 0.0, r.uniform(-0.05, 0.05, n))):
        sigma = sigma.astype(np.float32)
        out = np.full(images.shape, np.nan, np.float32)
        bank = _noise_bank(images.shape[1:]).numpy()
        _colour(images, gain, contrast, bright, sigma, fields, bank, np.float32(MEAN), np.float32(STD), out)
        ref = colour_reference(images, gain, contrast, bright, sigma, fields).numpy()
        # the same float32 operations; only the image mean is summed in another order
        np.testing.assert_allclose(out, ref, rtol=0, atol=2e-6)
        assert not np.array_equal(out[1], out[2])  # per-image parameters, not one image's


def test_augment_moves_the_masks_with_the_images():
    from edge_runtime.models.train import augment

    # one bright square per image, its mask exactly there: after the flip and shift the mask must
    # still cover the bright pixels (the colour change scales them, it never moves them)
    images = np.zeros((6, 32, 32, 3), np.uint8)
    masks = np.zeros((6, 32, 32), bool)
    for i in range(6):
        images[i, 4 + i : 12 + i, 2 + 2 * i : 9 + 2 * i] = 255
        masks[i, 4 + i : 12 + i, 2 + 2 * i : 9 + 2 * i] = True
    x, m = augment(images, np.random.default_rng(3), shift=4, masks=masks)
    assert m.shape == masks.shape and m.sum() > 0
    brightest = x.numpy().mean(axis=1) > x.numpy().mean(axis=1).mean(axis=(1, 2), keepdims=True)
    assert np.array_equal(brightest, m)


def test_map_loss_is_lowest_where_the_map_matches_the_mask():
    import torch

    from edge_runtime.models.train import map_loss

    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, 8:24, 8:24] = True
    right = torch.zeros(2, 1, 4, 4)
    right[:, :, 1:3, 1:3] = 1.0
    wrong = 1.0 - right
    assert float(map_loss(right, masks)) < 1e-4 < float(map_loss(wrong, masks))


@pytest.mark.slow
def test_train_export_load_roundtrip(tmp_path):
    from edge_runtime.bundle import load_bundle
    from edge_runtime.cli import main

    run = tmp_path / "run"
    rc = main(
        [
            "train",
            "--out",
            str(run),
            "--num-train",
            "128",
            "--num-test",
            "64",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--size",
            "64",
            "--threads",
            "1",
        ]
    )
    assert rc == 0
    ckpt_history = __import__("torch").load(run / "checkpoint.pt", weights_only=True)["history"]
    assert len(ckpt_history) == 1 and 0.0 <= ckpt_history[0]["top1"] <= 1.0
    out = tmp_path / "bundle"
    assert main(["export", str(run / "checkpoint.pt"), "--out", str(out), "--variants", "guided"]) == 0
    b = load_bundle(out)
    assert b.input.size == (64, 64) and set(b.graphs) >= {"front", "back", "attention", "grad_guided"}
    assert "grad_plain" not in b.graphs
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["metrics"]["n"] == 64


def test_seeded_training_data_is_reproducible():
    from edge_runtime.models.data import scene_dataset

    a, b = scene_dataset(8, seed=11, size=64), scene_dataset(8, seed=11, size=64)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)


def test_ema_saves_the_average_of_the_weights_not_the_last_ones(tmp_path):
    from edge_runtime.models.data import scene_dataset
    from edge_runtime.models.train import TrainConfig, load_checkpoint, train

    data, val = scene_dataset(96, seed=3, size=64), scene_dataset(32, seed=4, size=64)
    common = dict(epochs=1, batch_size=32, threads=1, augment=False, seed=5)
    last, plain = load_checkpoint(train(TrainConfig(**common), data, val, tmp_path / "a", progress=False))
    avg, ckpt = load_checkpoint(
        train(TrainConfig(ema=0.5, **common), data, val, tmp_path / "b", progress=False)
    )
    # the same seeded steps: the saved weights differ only by the averaging
    diff = [(p - q).abs().max().item() for p, q in zip(last.parameters(), avg.parameters(), strict=True)]
    assert max(diff) > 0
    h = ckpt["history"][0]
    assert h["top1_without_ema"] == plain["history"][0]["top1"] and ckpt["train"]["ema"] == 0.5
    with pytest.raises(ValueError, match="ema"):
        train(TrainConfig(ema=1.5, **common), data, val, tmp_path / "c", progress=False)


@pytest.mark.slow
def test_compiled_step_trains_the_saved_model_as_eager_does(tmp_path):
    import torch

    from edge_runtime.models.data import scene_dataset
    from edge_runtime.models.networks import build_model
    from edge_runtime.models.train import TrainConfig, load_checkpoint, train

    data, val = scene_dataset(96, seed=3, size=64), scene_dataset(32, seed=4, size=64)
    common = dict(epochs=1, batch_size=32, threads=1, augment=False, seed=5)
    eager, _ = load_checkpoint(train(TrainConfig(**common), data, val, tmp_path / "a", progress=False))
    compiled, ckpt = load_checkpoint(
        train(TrainConfig(compile="on", **common), data, val, tmp_path / "b", progress=False)
    )
    torch.manual_seed(5)  # the seeded initial weights of both runs
    init = build_model("abn-s", num_classes=10, bottleneck=8)

    def update(model):
        return torch.cat(
            [(p - q).flatten() for p, q in zip(model.parameters(), init.parameters(), strict=True)]
        )

    # the compiled step updates the parameters that are saved (not a copy), and takes the steps the
    # eager one takes up to rounding in the fused kernels (Adam's first steps are about sign(grad) x
    # lr, so a tiny gradient whose sign the rounding flips moves its weight the other way)
    du, de = update(compiled), update(eager)
    assert du.abs().max() > 1e-3 and torch.nn.functional.cosine_similarity(du, de, dim=0) > 0.8
    assert ckpt["train"]["compile"] == "on"


def test_compile_needs_a_cxx_compiler_only_when_asked_for(monkeypatch):
    from edge_runtime.models.train import _use_compile

    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    assert _use_compile("auto") is False and _use_compile("off") is False
    with pytest.raises(ValueError, match="C\\+\\+ compiler"):
        _use_compile("on")
    with pytest.raises(ValueError, match="compile"):
        _use_compile("fast")
