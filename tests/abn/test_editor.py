"""The attention-map editor: its JSON API (Flask test client) and the page in headless Chromium."""

from __future__ import annotations

import base64
import contextlib

import cv2
import numpy as np
import pytest

pytest.importorskip("flask", reason="the editor needs flask (the train extra)")

from helpers.system import require, require_executable  # noqa: E402

from edge_runtime.models.correct import TeacherStore  # noqa: E402
from edge_runtime.models.editor import EditorServer, EditorState, create_app  # noqa: E402

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def scenes_erase_changes(default_bundle):
    """Scenes for which erasing the whole map changes the default bundle's prediction."""
    from edge_runtime.datasets import DEFAULT_TASK
    from edge_runtime.models.correct import BundleRecognizer
    from edge_runtime.models.data import task_dataset

    data = task_dataset(DEFAULT_TASK, "validation", 24)
    rec = BundleRecognizer(default_bundle)
    a = rec.analyse(data.images)
    erased = rec.recognize(a["features"], np.zeros((len(data), 16, 16), np.float32)).argmax(1)
    keep = np.flatnonzero(erased != a["logits"].argmax(1))[:4]
    if len(keep) < 2:
        pytest.fail("fewer than 2 scenes whose prediction changes when the map is erased")
    return data.subset(keep)


@pytest.fixture
def data_dir(tmp_path, scenes_erase_changes, to_image_folder):
    to_image_folder(tmp_path / "data", scenes_erase_changes)
    return tmp_path / "data"


@pytest.fixture
def state(data_dir, default_bundle):
    return EditorState(data_dir, default_bundle)


def test_state_queues_misrecognized_first(state):
    wrong = state.pred[state.order] != state.labels[state.order]
    assert list(wrong) == sorted(wrong, reverse=True)
    assert state.maps.shape == (len(state.keys), 16, 16)


def test_api_predict_save_and_errors(state, data_dir):
    client = create_app(state).test_client()
    items = client.get("/api/items").get_json()
    assert items["map_shape"] == [16, 16] and items["image_size"] == [128, 128]
    i = items["items"][0]["item"]
    item = client.get(f"/api/item/{i}").get_json()
    assert np.allclose(item["map"], state.maps[i], atol=1e-6) and item["teacher"] is None
    png = client.get(f"/api/image/{i}")
    assert png.mimetype == "image/png" and cv2.imdecode(np.frombuffer(png.data, np.uint8), 1).shape == (
        128,
        128,
        3,
    )

    # No edit: the prediction is the model's own; erase everything: it changes.
    same = client.post("/api/predict", json={"item": i, "base": "model", "strokes": []}).get_json()
    assert same["after"]["pred"] == item["before"]["pred"]
    stroke = {"points": [[0, 64], [128, 64]], "radius": 80, "mode": "erase"}
    r = client.post("/api/predict", json={"item": i, "strokes": [stroke]}).get_json()
    assert np.max(r["map"]) == 0 and r["after"]["pred"] != item["before"]["pred"]

    saved = client.post("/api/save", json={"item": i, "strokes": [stroke]}).get_json()
    assert saved["count"] == 1
    key = state.keys[i]
    entry = TeacherStore(data_dir).index()["entries"][key]
    assert entry["model_id"] == state.bundle.model_id and entry["strokes"][0]["mode"] == "erase"
    assert (data_dir / saved["saved"]).is_file() and TeacherStore(data_dir).load(key).max() == 0
    assert client.get(f"/api/item/{i}").get_json()["teacher"] is not None

    # A mask image becomes a map (block averages).
    mask = np.zeros((128, 128), np.uint8)
    mask[:64] = 255
    b64 = base64.b64encode(cv2.imencode(".png", mask)[1].tobytes()).decode()
    m = np.array(client.post("/api/mask", json={"item": i, "png": b64}).get_json()["map"])
    assert m[:8].min() == 1 and m[8:].max() == 0

    for bad in (
        {"item": 999},
        {"item": i, "base": "paint"},
        {"item": i, "base": [[0.5]]},
        {"item": i, "strokes": [{"points": [], "radius": 3}]},
        {"item": i, "strokes": "x"},
    ):
        resp = client.post("/api/predict", json=bad)
        assert resp.status_code == 400 and resp.get_json()["error"], bad
    assert client.post("/api/mask", json={"item": i, "png": "not base64!"}).status_code == 400


def test_class_folders_must_be_bundle_classes(tmp_path, default_bundle):
    (tmp_path / "zebra").mkdir()
    cv2.imwrite(str(tmp_path / "zebra" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="zebra"):
        EditorState(tmp_path, default_bundle)


def _chromium() -> str:
    # skips locally, fails in CI (CI=true): the browser comes from deploy/system-packages.sh
    return require_executable("chromium", "/usr/bin/chromium")


@contextlib.contextmanager
def _editor_page(state):
    """The editor served for ``state`` and open in headless Chromium once its page is ready:
    (page, the page's JavaScript errors so far)."""
    exe = _chromium()
    try:
        from playwright import sync_api
    except ImportError:
        require(False, "playwright (the dev extra) is not installed")
    with EditorServer(state) as server, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url)
            page.wait_for_selector("body[data-ready='1']", timeout=15_000)
            yield page, errors
        finally:
            browser.close()


@pytest.mark.browser
def test_editor_in_headless_chromium(state, data_dir):
    with _editor_page(state) as (page, errors):
        before = page.get_attribute("#pred-after", "data-pred")
        assert before == page.get_attribute("#pred-before", "data-pred")
        first = state.order[0]
        assert before == state.bundle.classes[int(state.pred[first])]

        # A broad erase stroke across the image.
        page.eval_on_selector("#size", "e => { e.value = 64; e.dispatchEvent(new Event('input')); }")
        page.keyboard.press("e")
        box = page.locator("#cursor").bounding_box()
        page.mouse.move(box["x"] + 5, box["y"] + box["height"] / 2)
        page.mouse.down()
        for k in range(1, 11):
            page.mouse.move(box["x"] + 5 + k * (box["width"] - 10) / 10, box["y"] + box["height"] / 2)
        page.mouse.up()
        page.wait_for_function(
            "b => document.querySelector('#pred-after').dataset.pred !== b", arg=before, timeout=10_000
        )
        after = page.get_attribute("#pred-after", "data-pred")
        assert after != before

        page.keyboard.press("s")
        page.wait_for_function(
            "() => document.querySelector('#status').textContent.startsWith('saved')", timeout=10_000
        )
        store = TeacherStore(data_dir)
        key = state.keys[first]
        assert key in store and len(store) == 1
        m = store.load(key)
        assert m.shape == (16, 16) and m[6:10].max() < 1e-6  # the stroke's band is erased

        # Undo brings the model's prediction back.
        page.keyboard.press("Control+z")
        page.wait_for_function(
            "b => document.querySelector('#pred-after').dataset.pred === b", arg=before, timeout=10_000
        )
        assert errors == []


def test_correct_cli_serves_until_interrupted(data_dir, default_bundle, monkeypatch, capsys):
    from edge_runtime.cli import main

    seen = {}

    def fake_serve(self):
        seen["url"] = self.url
        seen["items"] = len(self.state.keys)
        raise KeyboardInterrupt

    monkeypatch.setattr(EditorServer, "serve_forever", fake_serve)
    assert (
        main(["correct", "--data", str(data_dir), "--bundle", str(default_bundle.path), "--port", "0"]) == 0
    )
    out = capsys.readouterr().out
    assert seen["url"].startswith("http://127.0.0.1:") and seen["items"] >= 2
    assert "misrecognized" in out and "stopped" in out


@pytest.mark.browser
def test_scripted_person_in_chromium_saves_the_experiments_teacher_maps(
    tmp_path, default_bundle, to_image_folder
):
    """A scripted person corrects two decoy scenes in the real page. On the first they clear the
    map and paint the item with the add brush; on the second they import the item's mask (the
    decoy experiment's simulated person, `models.person.teacher_map`) and refine it with an erase
    and an add stroke. Both are saved, in the format `edge-runtime retrain` reads, and are the
    experiment's teacher maps: exactly (import + strokes) or up to the brush's edges (painted)."""
    from edge_runtime import datasets
    from edge_runtime.models.correct import Stroke, apply_strokes
    from edge_runtime.models.data import ArrayDataset
    from edge_runtime.models.person import mask_strokes, teacher_map

    scenes = datasets.load("fashion", "validation", 2, decoy="random")
    data_dir = tmp_path / "data"
    to_image_folder(data_dir, ArrayDataset(scenes.images, scenes.labels, scenes.classes, scenes.masks))
    state = EditorState(data_dir, default_bundle)
    frame_of = {key: int(key.split("/")[1].split(".")[0]) for key in state.keys}  # "<class>/0001.png"
    first, second = (frame_of[state.keys[state.order[pos]]] for pos in range(2))
    ys, xs = np.nonzero(scenes.masks[second])
    refine = [  # erase a band across the item, add part of it back
        Stroke(((xs.min() + 0.5, ys.mean()), (xs.max() + 0.5, ys.mean())), 4, "erase"),
        Stroke(((xs.mean(), ys.mean()),), 6, "add"),
    ]
    mask_png = tmp_path / "mask.png"
    cv2.imwrite(str(mask_png), scenes.masks[second].astype(np.uint8) * 255)
    with _editor_page(state) as (page, errors):
        box = page.locator("#cursor").bounding_box()
        k = box["width"] / 128

        def draw(stroke):
            page.eval_on_selector(
                "#size", f"e => {{ e.value = {stroke.radius}; e.dispatchEvent(new Event('input')); }}"
            )
            page.keyboard.press(stroke.mode[0])  # "e" erase, "a" add
            (x0, y0), (x1, y1) = stroke.points[0], stroke.points[-1]
            page.mouse.move(box["x"] + x0 * k, box["y"] + y0 * k)
            page.mouse.down()
            if (x1, y1) != (x0, y0):
                page.mouse.move(box["x"] + x1 * k, box["y"] + y1 * k, steps=3)
            page.mouse.up()

        def save(count):
            page.keyboard.press("s")
            page.wait_for_function(
                f"() => document.querySelector('#status').textContent.includes('({count} teacher maps)')",
                timeout=20_000,
            )

        painted = mask_strokes(scenes.masks[first], radius=3)
        page.keyboard.press("0")  # first image: clear the map, paint the item
        for s in painted:
            draw(s)
        save(1)
        page.keyboard.press("n")  # second image: import the item's mask, refine, save
        page.wait_for_function(
            "k => !document.querySelector('#item-info').textContent.startsWith(k)",
            arg=state.keys[state.order[0]],
            timeout=10_000,
        )
        page.set_input_files("#mask", str(mask_png))
        page.wait_for_function("() => Array.isArray(S.base)", timeout=10_000)
        for s in refine:
            draw(s)
        save(2)
        assert errors == []

    store = TeacherStore(data_dir)
    entries = store.index()["entries"]
    assert set(entries) == {state.keys[state.order[0]], state.keys[state.order[1]]}
    maps = store.load_all()  # what `edge-runtime retrain` loads
    a, b = (maps[state.keys[state.order[pos]]] for pos in range(2))
    ea, eb = (entries[state.keys[state.order[pos]]] for pos in range(2))
    target_a, target_b = (
        teacher_map(scenes.masks[first], (16, 16)),
        teacher_map(scenes.masks[second], (16, 16)),
    )
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == target_a.shape
    # first: the strokes the mouse drew are the strokes meant, and paint the experiment's map
    assert ea["base"] == "zeros" and len(ea["strokes"]) == len(painted)
    zeros = np.zeros((16, 16), np.float32)
    np.testing.assert_allclose(a, apply_strokes(zeros, painted, (128, 128)), atol=0.02)
    assert np.abs(a - target_a).mean() < 0.06 and np.corrcoef(a.ravel(), target_a.ravel())[0, 1] > 0.9
    # second: the imported mask is the experiment's map exactly; the refinement is the editor's arithmetic
    assert eb["base"] == "map" and [s["mode"] for s in eb["strokes"]] == ["erase", "add"]
    np.testing.assert_allclose(b, apply_strokes(target_b, refine, (128, 128)), atol=0.02)
    assert b.sum() < target_b.sum() - 1  # the band was erased, only part added back
