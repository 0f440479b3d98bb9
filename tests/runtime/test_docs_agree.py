"""Docs, example configs and systemd units agree with each other and with the CLI.

- each example config in ``deploy/`` loads, with its absolute paths moved under a temporary
  prefix, after the README's own key commands made the keys it names;
- every ``edge-runtime ...`` command in the README and in ``docs/`` parses with the CLI's options;
- ``systemd-analyze verify`` accepts both units (fails in CI where it is missing), and both cache
  Numba's kernels and warm them up before starting.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.system import require_executable

from edge_runtime.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_PREFIXES = ("/etc/edge-runtime", "/var/lib/edge-runtime", "/opt/edge-runtime")


def _move(text: str, prefix: Path) -> str:
    for p in _PREFIXES:
        text = text.replace(p, f"{prefix}{p}")
    return text


def _commands(text: str) -> list[str]:
    """``edge-runtime ...`` commands in code blocks and in inline code."""
    out = []
    for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("edge-runtime "):
                out.append(line)
    for code in re.findall(r"`(edge-runtime [^`]+)`", text):
        out.append(code)
    return out


def _argv(command: str) -> list[str]:
    cmd = command.replace('"$(hostname)"', "box").replace("$(hostname)", "box")
    cmd = re.sub(r"\[[^\]]*\]", "", cmd)  # optional parts: [BUNDLE], [--bundle B]
    cmd = cmd.split("|")[0].split("&&")[0]
    return shlex.split(cmd)[1:]


def _readme_keys(prefix: Path, capsys) -> None:
    """Run the README's key commands under ``prefix``, then do what its comments say."""
    for command in _commands((ROOT / "README.md").read_text()):
        argv = _argv(_move(command, prefix))
        if argv[:2] == ["keys", "new"] and "--dir" in argv:
            assert main(argv) == 0, command
    keys = prefix / "etc/edge-runtime/keys"
    allow = prefix / "etc/edge-runtime/allow"
    allow.mkdir(parents=True, exist_ok=True)
    shutil.copy(keys / "edge.key", allow / "box.key")
    capsys.readouterr()


def test_example_configs_load_with_the_readme_keys(tmp_path, capsys):
    from edge_runtime.bundle import load_bundle
    from edge_runtime.config import load_config
    from edge_runtime.receiver.cli import DEFAULTS, build_receiver
    from edge_runtime.receiver.cli import load_config as load_receiver_config

    _readme_keys(tmp_path, capsys)
    edge = tmp_path / "edge.toml"
    edge.write_text(_move((DEPLOY / "edge.example.toml").read_text(), tmp_path))
    cfg = load_config(edge, env={})  # key files must exist: the README made them
    assert Path(cfg.sender.client_secret_key).is_file() and Path(cfg.sender.server_public_key).is_file()
    if cfg.runtime.bundle:
        load_bundle(cfg.runtime.bundle)

    rx_toml = tmp_path / "receiver.toml"
    rx_toml.write_text(_move((DEPLOY / "receiver.example.toml").read_text(), tmp_path))
    conf = {**DEFAULTS, **load_receiver_config(rx_toml)}
    assert Path(conf["keys_secret"]).is_file() and Path(conf["allow_dir"]).is_dir()
    for b in conf["bundle"]:  # install.sh creates no bundle folder: the example may name none
        load_bundle(b)
    (tmp_path / "var/lib/edge-runtime").mkdir(parents=True)
    conf |= {"bind": "tcp://127.0.0.1:0", "pub": "tcp://127.0.0.1:0", "metrics_port": 0}
    with build_receiver(conf) as rx:  # the example, with its paths, really starts
        assert rx.endpoint.startswith("tcp://127.0.0.1:")


def _parse(argv: list[str]) -> None:
    try:
        build_parser().parse_args(argv)
    except SystemExit as e:
        if e.code not in (0, None):
            raise AssertionError(f"the CLI rejects: edge-runtime {' '.join(argv)}") from None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_documented_commands_match_the_cli(doc, capsys):
    commands = _commands(doc.read_text())
    if doc.name == "README.md":
        assert any(c.startswith("edge-runtime demo") for c in commands)
        assert len(commands) >= 10
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for command in commands:
        argv = _argv(command)
        if len(argv) == 1:  # a mention in prose: the subcommand must exist
            assert argv[0] in sub.choices, f"{doc.name}: no subcommand {argv[0]!r}"
            continue
        _parse(argv)
    capsys.readouterr()


def test_the_command_table_lists_every_subcommand():
    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    listed = set(re.findall(r"^\| `edge-runtime ([a-z-]+)", readme, flags=re.M))
    assert set(sub.choices) - listed == set(), "subcommands missing from the README's table"


def _unit(name: str, tmp_path: Path) -> Path:
    text = (DEPLOY / name).read_text()
    text = text.replace("/opt/edge-runtime/venv/bin/edge-runtime", shutil.which("true") or "/bin/true")
    unit = tmp_path / name
    unit.write_text(text)
    return unit


@pytest.mark.parametrize("name", ["edge-runtime.service", "edge-receiver.service"])
def test_units_verify_cache_kernels_and_warm_up(name, tmp_path):
    text = (DEPLOY / name).read_text()
    assert (
        "Environment=NUMBA_CACHE_DIR=%C/edge-runtime/numba" in text and "CacheDirectory=edge-runtime" in text
    )
    assert re.search(r"^ExecStartPre=\S+ warmup", text, flags=re.M), "no warm-up before the start"
    configs = re.findall(r"--config (/etc/edge-runtime/\S+)", text)
    assert configs, "the unit names no config"
    install = (DEPLOY / "install.sh").read_text()
    if name == "edge-runtime.service":
        assert all(c in install for c in configs), "install.sh does not install the unit's config"
    exe = require_executable("systemd-analyze")
    unit = _unit(name, tmp_path)
    r = subprocess.run([exe, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [
        line
        for line in (r.stdout + r.stderr).splitlines()
        if name in line and "not found" not in line.lower() and "user" not in line.lower()
    ]
    assert r.returncode == 0 or not problems, r.stdout + r.stderr
