"""Cold start: the warm-up compiles what the config uses (and nothing the pipeline needs is left
for the first frames), and it says so before anything is compiled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime import kernels
from edge_runtime.config import load_config
from edge_runtime.kernels import _jit
from edge_runtime.kernels.warmup import STEPS
from edge_runtime.warmup import steps_for

ROOT = Path(__file__).resolve().parents[2]


def test_steps_follow_the_config():
    default = steps_for(load_config(None, env={}))
    assert {"threshold.keep_ratio", "quantize.masked", "coder"} <= set(default)
    assert not any(s.startswith(("reduce_image", "reduce_features")) for s in default)
    assert len(default) < len(STEPS) / 3
    image = steps_for(load_config(None, env={}, overrides=["reduce.domain=image", "reduce.mode=blur"]))
    assert "reduce_image.blur.uint8" in image and "quantize.dense" in image
    zstd = steps_for(
        load_config(
            None,
            env={},
            overrides=["codec.coder=zstd", "importance.motion=phase", "importance.reuse_interval=4"],
        )
    )
    assert "coder" not in zstd and "tcoder" not in zstd and "shift" in zstd
    assert "tcoder" in default  # temporal coding is on by default: its coder is warmed too
    assert "coder" in steps_for(load_config(None, env={}, overrides=["codec.coder=zstd"]), receiver=True)
    assert set(default) <= set(STEPS)


def test_unknown_step_is_an_error():
    with pytest.raises(ValueError, match="unknown warm-up steps"):
        kernels.warmup(["nope"])


@pytest.mark.parametrize(
    "overrides",
    [[], ["reduce.domain=image", "reduce.mode=colour"], ["reduce.mode=blur", "reduce.threshold=percentile"]],
    ids=["default", "image-colour", "feature-blur-percentile"],
)
def test_after_the_warmup_the_pipeline_compiles_nothing(overrides):
    from edge_runtime.bundle import load_bundle
    from edge_runtime.pipeline import EdgePipeline
    from edge_runtime.sources import SceneSource
    from edge_runtime.warmup import warm

    cfg = load_config(None, env={}, overrides=["sender.endpoints=['tcp://127.0.0.1:1']", *overrides])
    bundle = load_bundle(threads=1)
    warm(cfg, bundle)
    before = {name: len(d.signatures) for name, d in _jit.KERNELS.items()}
    pipe = EdgePipeline(bundle, cfg)
    src = SceneSource(size=bundle.input.size[0])
    for seq in range(6):  # a map frame and reused-map frames
        pipe.process(src.read(), seq)
    after = {name: len(d.signatures) for name, d in _jit.KERNELS.items()}
    grew = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert grew == {}, f"compiled on a frame, not in the warm-up: {grew}"


def test_warmup_command_says_what_it_does_first(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_DISABLE_JIT": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "warmup"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if "edge_runtime" in line]
    assert "kernels: preparing" in lines[0] and str(tmp_path) in lines[0]
    assert "kernels ready in" in lines[-1]


@pytest.mark.slow
def test_background_warmup_serves_frames_with_the_twins_and_zstd_until_the_kernels_are_compiled(
    tmp_path, monkeypatch
):
    import time

    from edge_runtime.bundle import load_bundle
    from edge_runtime.codec import Decoder
    from edge_runtime.kernels import reference
    from edge_runtime.pipeline import EdgePipeline
    from edge_runtime.sources import SceneSource
    from edge_runtime.warmup import BackgroundWarmup
    from edge_runtime.warmup import kernels as switch

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))  # cold: the child compiles everything
    cfg = load_config(None, env={}, overrides=["sender.endpoints=['tcp://127.0.0.1:1']"])
    bundle = load_bundle(threads=1)
    pipe = EdgePipeline(bundle, cfg)
    src = SceneSource(size=bundle.input.size[0])
    dec = Decoder(model_ids=[bundle.model_id_bytes])
    w = BackgroundWarmup(cfg).start()
    seq, plain = 0, []
    try:
        assert not switch.compiled and switch.quantize is reference.quantize
        deadline = time.monotonic() + 600
        while not w.ready.is_set():  # frames flow meanwhile; one of them swaps the kernels in
            assert time.monotonic() < deadline, "the background compilation never finished"
            out = pipe.process(src.read(), seq)
            plain.append(out.message)
            seq += 1
            time.sleep(0.05)
        assert switch.compiled and switch.quantize is kernels.quantize
        msgs = [pipe.process(src.read(), s).message for s in range(seq, seq + 3)]
        pipe.encoder.acknowledge(pipe.stream_id, decoded=seq + 1)
        msgs.append(pipe.process(src.read(), seq + 3).message)
    finally:
        w.close()
    assert {m[3] for m in plain[:-1]} == {2}  # version 2: zstd, no inter-frame state
    assert {m[3] for m in msgs} == {6}  # the configured coder (arith, version 6) from then on
    for m in plain + msgs:
        assert dec.decode(m).tensor is not None  # one decoder across the switch
    assert pipe.plain_frames >= len(plain) - 1 and w._proc.returncode == 0


def test_background_warmup_stops_its_compiler_when_closed(tmp_path, monkeypatch):
    from edge_runtime.warmup import BackgroundWarmup
    from edge_runtime.warmup import kernels as switch

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))  # empty: the child has minutes of work
    w = BackgroundWarmup(load_config(None, env={})).start()
    assert w._proc.poll() is None and not switch.compiled
    w.close()
    assert w._proc.returncode is not None and w._proc.returncode != 0  # terminated
    assert switch.compiled and not w.ready.is_set()


def test_a_warm_cache_is_loaded_at_once_without_a_compiler_process(tmp_path, monkeypatch):
    from edge_runtime.warmup import BackgroundWarmup, cached_steps, warm
    from edge_runtime.warmup import kernels as switch

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    cfg = load_config(None, env={})
    assert cached_steps() == set()
    warm(cfg, steps=["threshold.keep_ratio"])  # a part of what the config needs
    assert cached_steps() == {"threshold.keep_ratio"}
    w = BackgroundWarmup(cfg).start()  # not everything is cached: compiled in the background
    assert w._proc is not None
    w.close()
    warm(cfg, receiver=True)
    w = BackgroundWarmup(cfg).start()
    assert w._proc is None and w.ready.is_set() and switch.compiled
    w.close()
    (tmp_path / "edge-runtime-warm.json").write_text('{"fingerprint": "other sources", "steps": ["coder"]}')
    assert cached_steps() == set()  # notes about other kernel sources or another Numba do not count
