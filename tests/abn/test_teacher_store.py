"""Teacher maps on disk: map files plus an index, written atomically."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest

from edge_runtime.models.correct import TEACHER_DIR, TeacherStore, list_image_folder


def test_save_writes_map_and_index(tmp_path):
    store = TeacherStore(tmp_path)
    m = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    path = store.save("star/0001.png", m, label=3, model_id="abc")
    assert path.parent == tmp_path / TEACHER_DIR and path.suffix == ".npy"
    np.testing.assert_array_equal(np.load(path), m)
    doc = json.loads((tmp_path / TEACHER_DIR / "index.json").read_text())
    entry = doc["entries"]["star/0001.png"]
    assert doc["version"] == 1 and entry["file"] == path.name and entry["shape"] == [16, 16]
    assert entry["label"] == 3 and entry["model_id"] == "abc"
    assert "star/0001.png" in store and len(store) == 1
    np.testing.assert_array_equal(store.load("star/0001.png"), m)
    # Saving again replaces the map, the index keeps one entry.
    store.save("star/0001.png", np.zeros((16, 16)))
    assert len(store) == 1 and store.load("star/0001.png").max() == 0
    # Keys that look alike get different files.
    store.save("star_0001.png", m)
    assert len({e["file"] for e in store.index()["entries"].values()}) == 2


def test_no_temporary_files_are_left(tmp_path):
    store = TeacherStore(tmp_path)
    for i in range(3):
        store.save(f"a/{i}.png", np.full((4, 4), i / 3))
    names = sorted(os.listdir(tmp_path / TEACHER_DIR))
    assert len(names) == 4 and not [n for n in names if n.endswith(".tmp")]


def test_a_failed_write_leaves_the_previous_index(tmp_path, monkeypatch):
    store = TeacherStore(tmp_path)
    store.save("a/0.png", np.ones((4, 4)))
    before = store.index_path.read_bytes()
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if str(dst).endswith("index.json"):
            raise OSError("disk full (simulated)")
        return real_replace(src, dst)

    real_replace = os.replace
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        store.save("a/1.png", np.zeros((4, 4)))
    monkeypatch.undo()
    assert store.index_path.read_bytes() == before  # readers still see the complete old index
    assert [n for n in os.listdir(store.folder) if n.endswith(".tmp")] == []
    assert any(str(c).endswith("index.json") for c in calls)


def test_concurrent_saves_lose_nothing(tmp_path):
    store = TeacherStore(tmp_path)
    threads = [
        threading.Thread(target=store.save, args=(f"c/{i}.png", np.full((4, 4), 0.1))) for i in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(TeacherStore(tmp_path)) == 16


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside.png", "a/../../b.png"])
def test_keys_must_stay_inside_the_data_set(tmp_path, key):
    with pytest.raises(ValueError, match="relative path"):
        TeacherStore(tmp_path).save(key, np.zeros((4, 4)))


def test_bad_maps_are_refused(tmp_path):
    with pytest.raises(ValueError, match="2-D"):
        TeacherStore(tmp_path).save("a.png", np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="finite"):
        TeacherStore(tmp_path).save("a.png", np.full((4, 4), np.nan))
    with pytest.raises(KeyError, match="no teacher map"):
        TeacherStore(tmp_path).load("a.png")


def test_list_image_folder_skips_the_teacher_folder(tmp_path):
    for name in ("b", "a", TEACHER_DIR):
        (tmp_path / name).mkdir()
    (tmp_path / "a" / "2.png").write_bytes(b"")
    (tmp_path / "a" / "1.png").write_bytes(b"")
    (tmp_path / "b" / "x.txt").write_bytes(b"")
    classes, items = list_image_folder(tmp_path)
    assert classes == ("a", "b") and items == [("a/1.png", 0), ("a/2.png", 0)]
