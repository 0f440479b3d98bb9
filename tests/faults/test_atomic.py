"""Atomic writes where state is kept: a writer killed (SIGKILL) or failing mid-write leaves the
previous version readable. Bundles (edge_runtime.atomic.replace_dir, models/export.py,
models/split.py), files (atomic.write_bytes: zstd dictionaries, results), checkpoints
(models/train.py) and the receiver's JSONL results with rotation."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from edge_runtime import atomic
from edge_runtime.bundle import load_bundle
from edge_runtime.receiver.engine import Result
from edge_runtime.receiver.results import JsonlSink

pytestmark = pytest.mark.slow

KILLS = 6


def _writer(code: str, tmp_path: Path) -> subprocess.Popen:
    env = os.environ.copy()
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(
            str(Path(p).resolve()) for p in env["PYTHONPATH"].split(os.pathsep)
        )
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip


def _kill_after_start(p: subprocess.Popen, rng: random.Random, lo: float = 0.05, hi: float = 0.6) -> None:
    assert p.stdout.readline().strip() == "go"  # the writer is in its loop
    time.sleep(rng.uniform(lo, hi))
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    p.stdout.close()


def test_bundle_replacement_killed_mid_write_leaves_a_loadable_bundle(tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(load_bundle().path, target)
    rng = random.Random(1)
    versions = set()
    for k in range(KILLS):
        p = _writer(
            f"""
            import json, shutil, tempfile
            from pathlib import Path
            from edge_runtime import atomic
            from edge_runtime.bundle import write_manifest
            target = Path({str(target)!r})
            print("go", flush=True)
            i = 0
            while True:
                tmp = Path(tempfile.mkdtemp(prefix=".bundle.", dir=target.parent))
                for f in target.iterdir():
                    if f.suffix == ".onnx":
                        shutil.copy(f, tmp / f.name)
                m = json.loads((target / "manifest.json").read_text())
                m["model_name"] = "kill{k}-" + str(i)
                write_manifest(tmp, m)
                atomic.replace_dir(tmp, target)
                i += 1
            """,
            tmp_path,
        )
        _kill_after_start(p, rng)
        b = load_bundle(target)  # verifies every graph's sha256 against the manifest
        versions.add(b.model_name)
        for d in tmp_path.glob(".bundle.*"):  # a killed writer's half-built folder; never the bundle
            shutil.rmtree(d)
    assert len(versions) > 1, "the writer never completed a replacement: the test killed it too early"


def test_replace_dir_without_exchange_recovers_a_crash_between_renames(tmp_path, monkeypatch):
    target = tmp_path / "bundle"
    shutil.copytree(load_bundle().path, target)
    new = tmp_path / ".bundle.new"
    shutil.copytree(target, new)
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)  # a system without renameat2
    calls = []
    real_rename = os.rename

    def crash_on_second(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated crash between the two renames")
        real_rename(a, b)

    monkeypatch.setattr(atomic.os, "rename", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        atomic.replace_dir(new, target)
    monkeypatch.undo()
    assert not target.exists()
    assert load_bundle(target).model_id  # load_bundle put the previous version back


def test_atomic_file_write_killed_mid_write_keeps_a_whole_version(tmp_path):
    path = tmp_path / "state.bin"
    atomic.write_bytes(path, b"\x00" * (8 << 20))
    rng = random.Random(2)
    for _ in range(KILLS):
        p = _writer(
            f"""
            from edge_runtime import atomic
            print("go", flush=True)
            i = 0
            while True:
                i = (i + 1) % 250
                atomic.write_bytes({str(path)!r}, bytes([i]) * (8 << 20))
            """,
            tmp_path,
        )
        _kill_after_start(p, rng)
        data = path.read_bytes()
        assert len(data) == 8 << 20 and data.count(data[:1]) == len(data), "a torn file"


def test_jsonl_rotation_killed_mid_write_loses_no_complete_line(tmp_path):
    path = tmp_path / "results.jsonl"
    rng = random.Random(3)
    written_before = 0
    for _ in range(KILLS):
        p = _writer(
            f"""
            from edge_runtime.receiver.engine import Result
            from edge_runtime.receiver.results import JsonlSink
            sink = JsonlSink({str(path)!r}, max_bytes=65536, backups=3)
            print("go", flush=True)
            i = 0
            while True:
                sink.write(Result("cam", i, 0, 1.0, "0" * 16, 1, "c", [0.5] * 40))
                i += 1  # no flush: the file buffer goes out in 8 KiB pieces that end mid-line
            """,
            tmp_path,
        )
        _kill_after_start(p, rng)
        # a restarted receiver appends to what the killed one left: no line may be garbled
        sink = JsonlSink(path, max_bytes=65536, backups=3)
        sink.write(Result("after", written_before, 0, 1.0, "0" * 16, None, None, None))
        sink.close()
        written_before += 1
        files = [path] + [path.with_name(f"{path.name}.{i}") for i in range(1, 4)]
        lines = [x for f in files if f.exists() for x in f.read_bytes().split(b"\n") if x]
        for x in lines:
            json.loads(x)  # every line whole
    assert sum(b'"stream":"after"' in x for x in path.read_bytes().split(b"\n")) >= 1


def test_export_failing_midway_keeps_the_previous_bundle(tmp_path, monkeypatch):
    pytest.importorskip("torch", reason="needs the offline extra")
    from edge_runtime.models import export
    from edge_runtime.models.networks import build_model

    target = tmp_path / "bundle"
    shutil.copytree(load_bundle().path, target)
    before = load_bundle(target).model_id
    calls = []
    real = export._export

    def fail_on_second(*a, **kw):
        calls.append(a[2])
        if len(calls) == 2:
            raise RuntimeError("simulated crash mid-export")
        return real(*a, **kw)

    monkeypatch.setattr(export, "_export", fail_on_second)
    model = build_model("abn-s", num_classes=10)
    with pytest.raises(RuntimeError, match="mid-export"):
        export.export_bundle(model, target, classes=[f"c{k}" for k in range(10)], model_name="x",
                             input_spec={"size": [128, 128], "mean": [0.5] * 3, "std": [0.25] * 3})  # fmt: skip
    assert load_bundle(target).model_id == before
    assert not list(tmp_path.glob(".bundle.*")), "the half-built bundle was left behind"


def test_checkpoint_write_failing_midway_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch", reason="needs the offline extra")
    import numpy as np

    from edge_runtime.models import train
    from edge_runtime.models.networks import build_model

    model = build_model("abn-s", num_classes=3)
    cfg = types.SimpleNamespace(arch="abn-s", epochs=1)

    class Data(types.SimpleNamespace):
        def __len__(self):
            return 2

    data = Data(classes=["a", "b", "c"], images=np.zeros((2, 128, 128, 3), np.uint8))

    path = tmp_path / "ckpt.pt"
    train._save(path, model, cfg, data, [{"epoch": 1}])
    real = torch.save

    def half_then_crash(obj, f, *a, **kw):
        real(obj, f, *a, **kw)
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
        raise OSError("simulated crash mid-write")

    monkeypatch.setattr(train.torch, "save", half_then_crash)
    with pytest.raises(OSError, match="mid-write"):
        train._save(path, model, cfg, data, [{"epoch": 1}, {"epoch": 2}])
    monkeypatch.undo()
    _, ckpt = train.load_checkpoint(path)
    assert ckpt["history"] == [{"epoch": 1}]


def test_jsonl_sink_cuts_a_torn_last_line_before_appending(tmp_path):
    # SIGKILL cannot tear a line (Python's buffered writer hands the kernel whole writes, the test
    # above), but a full disk or a power cut can: the next receiver must not glue its first result
    # onto the fragment, which would garble both.
    path = tmp_path / "results.jsonl"
    whole = json.dumps(Result("cam", 0, 0, 1.0, "0" * 16, 1, "c", [1.0]).to_dict()) + "\n"
    path.write_text(whole + whole[:25])
    sink = JsonlSink(path)
    sink.write(Result("cam", 1, 0, 1.0, "0" * 16, None, None, None))
    sink.close()
    assert sink.torn_bytes == 25
    assert [json.loads(x)["seq"] for x in path.read_text().splitlines()] == [0, 1]
