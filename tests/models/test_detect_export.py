"""Export parity of a detection bundle: every graph against the PyTorch detector it came from."""

import numpy as np
import pytest

pytest.importorskip("torch", reason="needs the offline extra: pip install '.[train]'")
pytestmark = pytest.mark.slow

GRAD_VARIANTS = ("plain", "guided", "selective", "extsel")
RTOL = 1e-4
THRESHOLD = 0.02  # low: an untrained detector's scores sit near its 0.01 prior


def _close(a, b, what, rtol=RTOL):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    scale = max(float(np.abs(b).max()), 1e-30)
    err = float(np.abs(a - b).max()) / scale
    assert err <= rtol, f"{what}: max error {err:.2e} of its scale (tolerance {rtol})"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    import torch

    from edge_runtime.bundle import load_bundle
    from edge_runtime.detection import DetectionParams
    from edge_runtime.models.detect import build_detector
    from edge_runtime.models.detect_export import export_detection_bundle

    torch.manual_seed(0)
    model = build_detector("centernet-s", num_classes=4)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics: BN folding is exercised
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    with torch.no_grad():  # spread the class scores so that some cells pass the threshold
        model.cls_head[-1].bias.fill_(-3.0)
    model.eval()
    out = tmp_path_factory.mktemp("export") / "detect"
    manifest = export_detection_bundle(
        model,
        out,
        classes=["a", "b", "c", "d"],
        input_spec={"size": [64, 64], "mean": [0.5] * 3, "std": [0.25] * 3},
        model_name="t",
        params=DetectionParams(score_threshold=THRESHOLD, nms_iou=0.5),
    )
    return model, load_bundle(out), manifest


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    img[:, 16:40, 20:44] = [250, 40, 40]  # something object-like
    return img


def test_manifest_says_detect_with_box_format_threshold_and_nms(exported):
    _, b, m = exported
    assert m["task"] == "detect" and b.task == "detect"
    d = m["detection"]
    assert d["box_format"] == "xyxy" and d["box_units"] == "input_pixels"
    assert d["score_threshold"] == THRESHOLD and d["nms_iou"] == 0.5 and d["candidates"] == 16 * 16
    assert b.detection.score_threshold == THRESHOLD
    assert set(b.importance) == {"fused"} | {f"grad_{v}" for v in GRAD_VARIANTS}
    assert b.split_shape == (8, 8, 8)  # 8 channels at stride 8, as the classifier's split
    b.warmup()


def test_front_and_back_match_pytorch(exported, images):
    import torch

    from edge_runtime.models.detect_export import DetectFrontGraph

    model, b, _ = exported
    x = b.preprocess(images)  # batch of 3: dynamic batch
    with torch.no_grad():
        f_t, fused_t, obj_t = DetectFrontGraph(model, map_size=(16, 16))(torch.from_numpy(x))
        logits_t, boxes_t = model.back(f_t)
    front = b.front(x)
    _close(front["features"], f_t, "features")
    _close(front["fused_attention"], fused_t, "fused attention")
    _close(front["objectness"], obj_t, "objectness")
    logits, boxes = b.detect(front["features"])
    _close(logits, logits_t, "logits")
    _close(boxes, boxes_t, "boxes")


def _eager(model, x, ref, variant):
    import torch

    from edge_runtime.models.detect_export import detection_influence_fn

    hooks = []
    if variant == "guided":
        for m in model.modules():
            if isinstance(m, torch.nn.ReLU):
                hooks.append(m.register_full_backward_hook(lambda mod, gi, go: (gi[0].clamp(min=0),)))
    try:
        return detection_influence_fn(model, variant, THRESHOLD, (16, 16))(
            torch.from_numpy(x), torch.from_numpy(ref)
        )
    finally:
        for h in hooks:
            h.remove()


def _references(b):
    own = np.zeros(b.reference_shape("grad_plain"), np.float32)
    given = own.copy()
    given[0, 0] = [1, 2, 18, 14, 46, 42]  # valid, class 2, a box on the red square
    given[0, 1] = [1, 0, 0, 0, 10, 12]
    return {"own": own, "given": given}


@pytest.mark.parametrize("variant", GRAD_VARIANTS)
def test_gradient_graphs_match_autograd(exported, images, variant):
    model, b, _ = exported
    x = b.preprocess(images[:1])
    for name, ref in _references(b).items():
        got = b.run(f"grad_{variant}", {"image": x, "reference": ref})
        infl, logits, boxes = _eager(model, x, ref, variant)
        _close(got["logits"], logits, f"{variant} logits")
        _close(got["boxes"], boxes, f"{variant} boxes")
        _close(got["influence"], infl, f"{variant} influence ({name} reference)")
        assert float(got["influence"].max()) > 0, (variant, name)


def test_variants_and_references_differ(exported, images):
    _, b, _ = exported
    x = b.preprocess(images[:1])
    refs = _references(b)
    maps = {v: b.run(f"grad_{v}", {"image": x, "reference": refs["own"]})["influence"] for v in GRAD_VARIANTS}
    for i, v in enumerate(GRAD_VARIANTS):
        for w in GRAD_VARIANTS[i + 1 :]:
            assert not np.allclose(maps[v], maps[w]), (v, w)
    given = b.run("grad_plain", {"image": x, "reference": refs["given"]})["influence"]
    assert not np.allclose(given, maps["plain"])


def test_box_term_of_the_own_result_is_not_zero():
    """The IoU kink at b = r: the outward derivative, sqrt(A) * side / A per edge."""
    import torch

    from edge_runtime.models.detect_export import _iou_error

    b = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # 20 wide, 40 high
    g = _iou_error(b, b.clone())[0]
    assert torch.allclose(g, torch.tensor([-40.0, -20.0, 40.0, 20.0]) / 800.0)
    # a box larger than its reference: shrinking it raises the IoU, so the error grows outwards
    r = torch.tensor([[12.0, 20.0, 30.0, 60.0]])
    g2 = _iou_error(b, r)[0]
    assert g2[0] < 0 and g2[2] > 0


def test_nothing_detected_gives_a_zero_map(exported, images):
    """No score above the threshold: every error term is zero, and so is the influence."""
    import torch

    from edge_runtime.models.detect_export import detection_influence_fn

    model, b, _ = exported
    x = torch.from_numpy(b.preprocess(images[:1]))
    ref = torch.zeros(b.reference_shape("grad_selective"))
    infl, _, _ = detection_influence_fn(model, "selective", 0.999, (16, 16))(x, ref)
    assert float(infl.abs().max()) == 0.0
