"""The peer method, RRR's input-gradient penalty outside the teacher map, on a tiny ABN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edge_runtime.models.correct import map_from_mask, map_to_image
from edge_runtime.models.data import to_tensor
from edge_runtime.models.retrain import RetrainConfig, finetune
from edge_runtime.models.rrr import input_gradient_penalty, irrelevant_region


def test_irrelevant_region_is_one_minus_the_map_as_the_editor_shows_it():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 8, 8)).astype(np.float32)
    a = irrelevant_region(torch.from_numpy(maps)[:, None], (64, 64))[:, 0].numpy()
    for k in range(3):
        np.testing.assert_allclose(a[k], 1 - np.clip(map_to_image(maps[k], (64, 64)), 0, 1), atol=1e-5)
    with pytest.raises(ValueError, match="N, 1, h, w"):
        irrelevant_region(torch.zeros(2, 8, 8), (64, 64))


def test_penalty_is_the_squared_input_gradient_outside_and_trains_the_heads(tiny_model, tiny_scenes):
    model = tiny_model()
    x = to_tensor(tiny_scenes.images[:4])
    outside = torch.zeros(4, 1, 64, 64)
    outside[:, :, :32] = 1.0  # the top half is "irrelevant"
    pen = input_gradient_penalty(model, x, outside)
    # the same gradient without the graph, by hand
    xr = x.clone().requires_grad_(True)
    logp = torch.log_softmax(model(xr)[1], dim=1).sum()
    (g,) = torch.autograd.grad(logp, xr)
    expected = (g[:, :, :32] ** 2).sum(dim=(1, 2, 3))
    torch.testing.assert_close(pen.detach(), expected, rtol=1e-4, atol=1e-8)
    assert (pen > 0).all()
    assert input_gradient_penalty(model, x, torch.zeros_like(outside)).abs().max() == 0
    # create_graph: the penalty has a gradient for the perception and attention branches
    pen.sum().backward()
    for part in ("perception", "attention"):
        grads = [p.grad for p in getattr(model, part).parameters() if p.grad is not None]
        assert grads and max(float(gr.abs().max()) for gr in grads) > 0, part


def _outside_gradient(model, data, teachers):
    idx = sorted(teachers)
    x = to_tensor(data.images[idx])
    t = torch.from_numpy(np.stack([teachers[i] for i in idx]))[:, None]
    return float(input_gradient_penalty(model, x, irrelevant_region(t, (64, 64))).mean().detach())


def test_finetune_with_rrr_moves_input_gradients_into_the_teacher_region(tiny_model, tiny_scenes):
    model = tiny_model()
    data = tiny_scenes
    teachers = {i: map_from_mask(data.masks[i], (8, 8)) for i in range(0, 24, 2)}
    before_feat = {k: v.clone() for k, v in model.features.state_dict().items()}
    runs = {}
    for weight in (0.0, 1000.0):  # the same steps without the penalty: the control
        cfg = RetrainConfig(
            losses=("att", "per", "rrr"),
            rrr_weight=weight,
            rrr_max=3,  # of the 4 teacher-mapped samples a batch of 8 holds: the cap is used
            steps=12,
            batch_size=8,
            lr=3e-3,
            flip=False,
        )
        runs[weight] = finetune(model, data, teachers, cfg, progress=False)
    new, log = runs[1000.0]
    pen_control, pen = (_outside_gradient(runs[w][0], data, teachers) for w in (0.0, 1000.0))
    assert pen < 0.5 * pen_control, (pen_control, pen)
    assert log["history"][-1]["steps"] == 12 and log["history"][-1]["loss_rrr"] > 0
    for k, v in new.features.state_dict().items():  # the extractor stays frozen by default
        assert torch.equal(v, before_feat[k]), k


def test_steps_fix_the_budget_whatever_the_set_size(tiny_model, tiny_scenes):
    model = tiny_model()
    for n in (8, 24):
        cfg = RetrainConfig(steps=5, batch_size=4, flip=False)
        _, log = finetune(model, tiny_scenes, {}, cfg, index=np.arange(n), progress=False)
        assert log["history"][-1]["steps"] == 5
    with pytest.raises(ValueError, match="steps"):
        RetrainConfig(steps=0)
    with pytest.raises(ValueError, match="rrr_weight"):
        RetrainConfig(rrr_weight=-1)
    with pytest.raises(ValueError, match="rrr_max"):
        RetrainConfig(rrr_max=0)
