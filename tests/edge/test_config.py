from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from edge_runtime.config import Config, config_from_dict, load_config, to_toml
from edge_runtime.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "edge.example.toml"


def test_defaults_and_round_trip():
    cfg = load_config(None, env={})
    assert cfg == Config()
    assert config_from_dict(tomllib.loads(to_toml(cfg)), env={}) == cfg


@pytest.mark.parametrize(
    "data, key",
    [
        ({"sender": {"endpionts": ["tcp://x:1"]}}, "sender.endpionts"),
        ({"senders": {}}, "[senders]"),
        ({"quantize": {"bits": "4"}}, "quantize.bits"),
        ({"quantize": {"bits": 9}}, "quantize.bits"),
        ({"quantize": {"bits": True}}, "quantize.bits"),
        ({"runtime": {"warmup": 1}}, "runtime.warmup"),
        ({"sender": {"endpoints": "tcp://x:1"}}, "sender.endpoints"),
        ({"importance": {"provider": "magic"}}, "importance.provider"),
        ({"reduce": {"mode": "colour"}}, "reduce.mode"),  # colour is an image-domain mode
        ({"reduce": {"value": 1.5}}, "reduce.value"),
        ({"source": {"kind": "file", "uri": "/nonexistent/video.avi"}}, "source.uri"),
        ({"source": {"kind": "camera"}}, "source.uri"),
        ({"runtime": {"bundle": "/nonexistent/bundle"}}, "runtime.bundle"),
        ({"sender": {"client_secret_key": "/nonexistent/a.key_secret"}}, "sender.client_secret_key"),
        ({"rate": {"target_bytes": 500.0}, "reduce": {"threshold": "value"}}, "reduce.threshold"),
        ({"rate": {"target_bytes": 5.0, "target_kbps": 5.0}}, "rate.target_bytes"),
    ],
)
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace(".", r"\.")):
        config_from_dict(data)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})
    bad = tmp_path / "bad.toml"
    bad.write_text("[sender\nendpoints = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, env={})


def test_environment_and_cli_overrides(tmp_path):
    f = tmp_path / "edge.toml"
    f.write_text('[quantize]\nbits = 3\n[runtime]\nstream_id = "a"\n')
    env = {
        "EDGE_RUNTIME__SENDER__ENDPOINTS": "tcp://10.0.0.1:5555,tcp://10.0.0.2:5555",
        "EDGE_RUNTIME__QUANTIZE__BITS": "6",
        "EDGE_RUNTIME__RUNTIME__STREAM_ID": "123",
        "UNRELATED": "x",
    }
    cfg = load_config(f, env=env, overrides=["reduce.value=0.5"])
    assert cfg.sender.endpoints == ["tcp://10.0.0.1:5555", "tcp://10.0.0.2:5555"]
    assert cfg.quantize.bits == 6  # environment beats the file
    assert cfg.runtime.stream_id == "123"  # stays a string
    assert cfg.reduce.value == 0.5
    with pytest.raises(ConfigError, match="quantize.bits"):
        load_config(f, env={"EDGE_RUNTIME__QUANTIZE__BITS": "many"})
    with pytest.raises(ConfigError, match="EDGE_RUNTIME__BITS"):
        load_config(f, env={"EDGE_RUNTIME__BITS": "4"})
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(f, env={}, overrides=["bits=4"])


def test_example_config_loads():
    env = {
        "EDGE_RUNTIME__SENDER__CLIENT_SECRET_KEY": '""',
        "EDGE_RUNTIME__SENDER__SERVER_PUBLIC_KEY": '""',
    }
    cfg = load_config(EXAMPLE, env=env)
    assert cfg.source.kind == "camera" and cfg.importance.reuse_interval == 4


def test_print_config_cli(capsys):
    from edge_runtime.cli import main

    assert main(["run", "--print-config", "--set", "quantize.bits=7", "--endpoint", "tcp://h:1"]) == 0
    out = capsys.readouterr().out
    cfg = config_from_dict(tomllib.loads(out), env={})
    assert cfg.quantize.bits == 7 and cfg.sender.endpoints == ["tcp://h:1"]
    assert main(["run", "--set", "quantize.bitz=7"]) == 2
    assert "quantize.bitz" in capsys.readouterr().err


def test_refusals_name_origin_key_value_and_what_is_allowed(tmp_path):
    f = tmp_path / "edge.toml"
    f.write_text('[quantize]\nbits = "four"\n')
    with pytest.raises(ConfigError) as e:
        load_config(f, env={})
    assert str(e.value) == f"{f}: quantize.bits: must be an integer >= 1 and <= 8, got 'four'"
    f.write_text("[quantize]\nbitz = 4\n")
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(str(f))}: unknown key quantize\.bitz; \[quantize\] takes \['bits', "
    ):
        load_config(f, env={})
    with pytest.raises(ConfigError, match=r"^environment: reduce\.value: must be a number >= 0\.0, got -1$"):
        load_config(None, env={"EDGE_RUNTIME__REDUCE__VALUE": "-1"})
    with pytest.raises(
        ConfigError, match=r"^command line: source\.kind: must be one of \[.*'folder'.*\], got 'tape'$"
    ):
        load_config(None, env={}, overrides=["source.kind=tape"])
    with pytest.raises(
        ConfigError, match=r"^<dict>: sender\.endpoints: must be a list of strings, got \['a', 1\]$"
    ):
        config_from_dict({"sender": {"endpoints": ["a", 1]}})
    # every layer is checked on its own: a bad value in the file is refused even where the
    # environment would override it
    f.write_text("[quantize]\nbits = 0\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(f))}: quantize\.bits"):
        load_config(f, env={"EDGE_RUNTIME__QUANTIZE__BITS": "4"})
