"""Retraining from teacher maps: selection, fine-tuning on a tiny run, and the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edge_runtime.models.retrain import (
    RetrainConfig,
    evaluate_maps,
    finetune,
    pointing_game,
    record,
    select_samples,
)


def _rec(per, att):
    per, att = np.array(per, bool), np.array(att, bool)
    return {"per_correct": per, "att_correct": att}


@pytest.mark.parametrize(
    "by, expected",
    [("per", [1, 3]), ("att", [2, 3]), ("both", [3]), ("either", [1, 2, 3])],
)
def test_select_misrecognized_by_branch(by, expected):
    rec = _rec([1, 0, 1, 0, 1], [1, 1, 0, 0, 1])
    index, why = select_samples(rec, RetrainConfig(select=by))
    assert index.tolist() == expected and why["misrecognized"] == len(expected) and why["correct_added"] == 0


def test_select_adds_correct_share_and_teacher_images():
    rec = _rec([1] * 10 + [0] * 2, [1] * 12)
    index, why = select_samples(rec, RetrainConfig(include_correct=0.5), teacher_index=np.array([0, 11]))
    assert why["correct_added"] == 5 and {10, 11, 0} <= set(index.tolist())
    assert why["teacher_maps_added"] == (0 if 0 in index[:0] else why["teacher_maps_added"])
    assert len(index) == why["total"] and 6 <= why["total"] <= 8


@pytest.mark.parametrize(
    "kwargs", [{"select": "any"}, {"train": ("head",)}, {"losses": ()}, {"gamma": -1}, {"include_correct": 2}]
)
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        RetrainConfig(**kwargs)


def test_cli_choices_equal_the_module_constants():
    import edge_runtime.models.cli as mc
    import edge_runtime.models.retrain as mr

    assert (mc.SELECT_BY, mc.PARTS, mc.LOSSES) == (mr.SELECT_BY, mr.PARTS, mr.LOSSES)


def test_pointing_game():
    maps = np.zeros((2, 4, 4), np.float32)
    maps[0, 0, 0] = maps[1, 3, 3] = 1
    masks = np.zeros((2, 16, 16), bool)
    masks[:, :4, :4] = True
    assert pointing_game(maps, masks) == 0.5


def test_finetune_moves_maps_to_teachers_and_keeps_features_frozen(tiny_model, tiny_scenes):
    from edge_runtime.models.correct import map_from_mask

    model = tiny_model()
    data = tiny_scenes
    teachers = {i: map_from_mask(data.masks[i], (8, 8)) for i in range(0, 24, 2)}
    before_feat = {k: v.clone() for k, v in model.features.state_dict().items()}
    rec0 = record(model, data)
    err0 = np.mean([((rec0["maps"][i] - m) ** 2).mean() for i, m in teachers.items()])
    cfg = RetrainConfig(epochs=4, batch_size=8, lr=3e-3, gamma=0.2, teacher_repeat=2, flip=False)
    new, log = finetune(model, data, teachers, cfg, progress=False)
    rec1 = record(new, data)
    err1 = np.mean([((rec1["maps"][i] - m) ** 2).mean() for i, m in teachers.items()])
    assert err1 < 0.5 * err0, (err0, err1)
    assert log["teacher_maps"] == 12 and len(log["history"]) == 4
    for k, v in new.features.state_dict().items():  # weights and BatchNorm statistics unchanged
        assert torch.equal(v, before_feat[k]), k
    assert not torch.equal(new.attention.map[0].weight, model.attention.map[0].weight)
    # The original model is not modified.
    np.testing.assert_array_equal(record(model, data)["maps"], rec0["maps"])
    assert set(evaluate_maps(new, data)) >= {"top1", "top1_attention_branch", "pointing_game"}


def test_finetune_can_train_features_and_drop_the_map_loss(tiny_model, tiny_scenes):
    model = tiny_model()
    cfg = RetrainConfig(epochs=1, batch_size=8, train=("features",), losses=("per",))
    new, log = finetune(model, tiny_scenes, {}, cfg, progress=False)
    assert not torch.equal(new.features.stage1[0][0].weight, model.features.stage1[0][0].weight)
    assert torch.equal(new.perception.fc.weight, model.perception.fc.weight)
    with pytest.raises(ValueError, match="shape"):
        finetune(model, tiny_scenes, {0: np.zeros((4, 4))}, cfg, progress=False)


@pytest.mark.slow
def test_retrain_cli_end_to_end(tmp_path, tiny_model, tiny_checkpoint, tiny_scenes, to_image_folder):
    from edge_runtime.bundle import load_bundle
    from edge_runtime.cli import main
    from edge_runtime.models.correct import TeacherStore, list_image_folder, map_from_mask

    data_dir = tmp_path / "data"
    to_image_folder(data_dir, tiny_scenes)
    ckpt = tiny_checkpoint(tiny_model(), tmp_path / "checkpoint.pt")
    _, items = list_image_folder(data_dir)
    store = TeacherStore(data_dir)
    for key, _ in items[:4]:
        i = int(key.split("/")[1][:4])
        store.save(key, map_from_mask(tiny_scenes.masks[i], (8, 8)))
    out, bundle = tmp_path / "run", tmp_path / "bundle"
    argv = ["retrain", "--data", str(data_dir), "--checkpoint", str(ckpt), "--out", str(out)]
    argv += ["--epochs", "1", "--batch-size", "8", "--include-correct", "0.5", "--no-progress"]
    assert main(argv + ["--export", str(bundle), "--variants"]) == 0
    report = json.loads((out / "retrain.json").read_text())
    assert report["teacher_maps"] == 4 and report["selection"]["total"] >= 4
    assert "top1" in report["before"] and "top1" in report["after"]
    assert "pointing_game" not in report["before"]  # an ImageFolder tree has no object masks
    b = load_bundle(bundle)
    assert b.model_name == "abn-s-retrained" and b.has_graph("back_map")
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert saved["retrain"]["selection"] == report["selection"]


@pytest.mark.parametrize("command", ["correct", "retrain"])
def test_offline_correction_commands_have_help(command, capsys):

    from edge_runtime.cli import main

    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "usage: edge-runtime " + command in out and "--data" in out
    assert command != "retrain" or "--gamma" in out


def test_retrain_cli_refuses_teacher_maps_of_another_size(
    tmp_path, tiny_model, tiny_checkpoint, tiny_scenes, to_image_folder, capsys
):
    from edge_runtime.cli import main
    from edge_runtime.models.correct import TeacherStore, list_image_folder

    data_dir = tmp_path / "data"
    to_image_folder(data_dir, tiny_scenes.subset(np.arange(6)))
    ckpt = tiny_checkpoint(tiny_model(), tmp_path / "checkpoint.pt")
    key = list_image_folder(data_dir)[1][0][0]
    TeacherStore(data_dir).save(key, np.zeros((16, 16)))  # the tiny model's map is 8 x 8
    # main() turns the command's refusal into one error line and exit status 2
    assert (
        main(["retrain", "--data", str(data_dir), "--checkpoint", str(ckpt), "--out", str(tmp_path / "r")])
        == 2
    )
    assert "not 8 x 8" in capsys.readouterr().err
