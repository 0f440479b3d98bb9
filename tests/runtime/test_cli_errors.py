"""Every subcommand fails with one ``error:`` line and exit status 2, never a traceback: missing
extras, missing or wrong paths, bad values. Help shows every option's default; third-party INFO
logs stay quiet unless --verbose."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.cli import QUIET_LOGGERS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
_HAS_TORCH = __import__("importlib").util.find_spec("torch") is not None
offline = pytest.mark.skipif(not _HAS_TORCH, reason="needs the offline extra: pip install '.[train]'")


def _cases(m: Path, f: Path) -> list:
    """(argv, text the error must contain); ``m`` does not exist, ``f`` is a file of the wrong kind."""
    runtime = [
        (["info", str(m)], str(m)),
        (["info", str(f)], str(f)),
        (["run", "--config", str(m)], str(m)),
        (["run", "--config", str(f)], str(f)),
        (["receive", "--config", str(m)], str(m)),
        (["receive", "--bundle", str(m), "--bind", "tcp://127.0.0.1:0"], str(m)),
        (
            ["receive", "--keys-secret", str(f), "--allow-dir", str(f.parent), "--bind", "tcp://127.0.0.1:0"],
            str(f),
        ),
        (["keys", "list", "--dir", str(m)], str(m)),
        (["train-dict", str(m), "-o", str(m.parent / "d.zdict")], str(m)),
        (["demo", "--bundle", str(m)], str(m)),
        (["demo", "--config", str(m)], str(m)),
        (["demo", "--set", "nosuch.key=1"], "nosuch"),
        (["warmup", "--config", str(m)], str(m)),
    ]
    offline_ = [
        (["train", "--data", str(m)], str(m)),
        (["export", str(m), "--out", str(m.parent / "b")], str(m)),
        (["export", str(f), "--out", str(m.parent / "b")], "not a checkpoint"),
        (["split", str(m), "--at", "x", "--out", str(m.parent / "b")], str(m)),
        (["split", str(f), "--at", "x", "--out", str(m.parent / "b")], "not an ONNX model"),
        (["finetune", str(m)], str(m)),
        (["finetune", str(f)], "not a checkpoint"),
        (["correct", "--data", str(m)], str(m)),
        (["retrain", "--data", str(m), "--checkpoint", str(m)], str(m)),
    ]
    return [pytest.param(a, t, id=" ".join(a[:2])) for a, t in runtime] + [
        pytest.param(a, t, id=" ".join(a[:2]), marks=offline) for a, t in offline_
    ]


@pytest.fixture
def paths(tmp_path):
    wrong = tmp_path / "notes.txt"
    wrong.write_text("not a bundle, a checkpoint, a config or a key\n = [\n")
    return tmp_path / "missing", wrong


@pytest.mark.parametrize(("argv", "needle"), _cases(Path("/MISSING/missing"), Path("/WRONG/notes.txt")))
def test_every_command_fails_cleanly(argv, needle, paths, capsys):
    missing, wrong = paths

    def fix(a: str) -> str:
        return a.replace("/MISSING", str(missing.parent)).replace("/WRONG", str(wrong.parent))

    argv, needle = [fix(a) for a in argv], fix(needle)
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and lines[0].startswith(f"edge-runtime {argv[0]}: error: "), err
    assert needle in lines[0], err
    assert "Traceback" not in err


def test_a_missing_runtime_requirement_is_named(tmp_path):
    fake = tmp_path / "no-numba" / "numba"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'numba'\", name='numba')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT)])}
    r = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "warmup"],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert (
        "edge-runtime warmup: error: edge-runtime is not completely installed (numba is missing)" in r.stderr
    )
    assert "Traceback" not in r.stderr


def test_offline_commands_without_torch_say_what_to_install(tmp_path):
    # a `torch` that cannot be imported, first on the path: what an edge box without .[train] sees
    fake = tmp_path / "no-torch" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), str(ROOT)])}
    for argv in (
        ["train", "--num-train", "8", "--out", str(tmp_path / "run")],
        ["export", "x.pt", "--out", "b"],
    ):
        r = subprocess.run(
            [sys.executable, "-m", "edge_runtime.cli", *argv],
            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
        )  # fmt: skip
        assert r.returncode == 2, r.stderr
        assert f"edge-runtime {argv[0]}: error: " in r.stderr
        assert 'torch is not installed): pip install ".[train]"' in r.stderr
        assert "Traceback" not in r.stderr


def _subparsers(parser: argparse.ArgumentParser, prefix: str = ""):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                yield f"{prefix}{name}", sp
                yield from _subparsers(sp, f"{prefix}{name} ")


def test_every_option_help_shows_its_default():
    missing = []
    for name, sp in _subparsers(build_parser()):
        formatter = sp._get_formatter()
        for action in sp._actions:
            if not action.option_strings or action.default in (None, False, [], argparse.SUPPRESS):
                continue
            text = formatter._expand_help(action) if action.help else ""
            if "default" not in text:
                missing.append(f"{name} {action.option_strings[-1]}")
    assert not missing, f"options whose help shows no default: {missing}"


def test_third_party_info_logs_are_quiet_unless_verbose(capsys):
    root = logging.getLogger()
    saved = {n: logging.getLogger(n).level for n in QUIET_LOGGERS}
    try:
        assert main(["keys", "list", "--dir", str(ROOT / "deploy")]) == 0
        assert not logging.getLogger("onnxscript._internal").isEnabledFor(logging.INFO)
        assert not logging.getLogger("torch.onnx").isEnabledFor(logging.INFO)
        root_level = root.level
        root.setLevel(logging.INFO)
        try:
            assert main(["-v", "keys", "list", "--dir", str(ROOT / "deploy")]) == 0
            assert logging.getLogger("onnx_ir.passes").isEnabledFor(logging.INFO)
        finally:
            root.setLevel(root_level)
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)
    capsys.readouterr()
