"""The command line, called as main(argv)."""

import subprocess
import sys

import pytest

from edge_runtime.cli import main


def test_info_verifies_and_runs_every_graph(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "model id" in out and "all graphs load and run: OK" in out


def test_info_json_is_the_manifest(capsys):
    import json

    assert main(["info", "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert {"model_id", "graphs", "split", "classes"} <= set(manifest)


def test_bad_bundle_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_keys_new_and_list(tmp_path, capsys):
    assert main(["keys", "new", "edge-01", "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "edge-01.key").is_file() and (
        tmp_path / "edge-01.key_secret"
    ).stat().st_mode & 0o077 == 0
    assert main(["keys", "list", "--dir", str(tmp_path)]) == 0
    assert "edge-01.key" in capsys.readouterr().out
    assert main(["keys", "new", "edge-01", "--dir", str(tmp_path)]) == 2  # refuses to overwrite


def test_console_script_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.startswith("edge-runtime ")


@pytest.mark.parametrize("command", ["train", "export", "split"])
def test_offline_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: edge-runtime " + command in capsys.readouterr().out


@pytest.mark.slow
def test_demo_runs_receiver_and_edge_on_loopback(capsys):
    assert main(["demo", "--frames", "30", "--every", "10"]) == 0
    out = capsys.readouterr().out
    assert "results    30" in out  # every frame reached the receiver and came back as a result
    assert "accounted: True" in out
