"""Cluster mode without a cluster: the [cluster] config section, --ray on the command line, the
message when Ray is not installed, and Ray never imported when cluster mode is not asked for."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.errors import ConfigError
from edge_runtime.receiver import Receiver
from edge_runtime.receiver.cli import add_arguments, cluster_config, load_config
from edge_runtime.receiver.cluster import ClusterConfig

ROOT = Path(__file__).resolve().parents[2]


def _conf(argv: list[str]) -> dict:
    from edge_runtime.receiver.cli import _resolve

    p = argparse.ArgumentParser()
    add_arguments(p)
    return _resolve(p.parse_args(argv))


def test_cluster_table_and_ray_option(tmp_path):
    toml = tmp_path / "rx.toml"
    toml.write_text(
        '[receiver]\nbind = "tcp://127.0.0.1:0"\n\n[cluster]\naddress = "10.0.0.1:6379"\n'
        'deployment = "back-a"\nmin_replicas = 1\nmax_replicas = 4\nmax_batch_size = 64\n'
        "batch_wait_timeout_s = 0.005\n"
    )
    c = cluster_config(_conf(["--config", str(toml)]))
    assert c == ClusterConfig(
        address="10.0.0.1:6379", deployment="back-a", min_replicas=1, max_replicas=4, max_batch_size=64,
        batch_wait_timeout_s=0.005,
    )  # fmt: skip
    # the command line wins over the file's address, and alone is enough
    assert cluster_config(_conf(["--config", str(toml), "--ray", "auto"])).address == "auto"
    assert cluster_config(_conf(["--ray", "auto"])) == ClusterConfig(address="auto")
    assert cluster_config(_conf([])) is None  # no --ray, no [cluster]: the back half in-process


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('[cluster]\naddress = "auto"\nreplicas = 2\n', "unknown key 'replicas'"),
        ('[cluster]\naddress = "auto"\nmin_replicas = 3\nmax_replicas = 2\n', "below min_replicas"),
        ('[cluster]\naddress = "auto"\nmax_batch_size = 0\n', "max_batch_size must be an int >= 1"),
        ("[cluster]\naddress = 5\n", "address must be a string"),
        ('cluster = "auto"\n', "must be a table"),
    ],
)
def test_bad_cluster_table_names_the_key(tmp_path, table, words):
    toml = tmp_path / "rx.toml"
    toml.write_text(table)
    with pytest.raises(ConfigError, match=words):
        load_config(toml)


def test_cluster_mode_refuses_workers_and_oversized_batches():
    with pytest.raises(ConfigError, match="one ingest per receiver process"):
        Receiver(workers=2, cluster=ClusterConfig(address="auto"))
    with pytest.raises(ConfigError, match="larger than the cluster's max_batch_size"):
        Receiver(max_batch=64, cluster=ClusterConfig(address="auto", max_batch_size=32))


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_without_ray_the_cli_says_what_to_install():
    # Ray made unimportable, as on a machine installed without the extra
    r = _python(
        "import sys; sys.modules['ray'] = None; from edge_runtime.cli import main; "
        "sys.exit(main(['receive', '--ray', 'auto', '--bind', 'tcp://127.0.0.1:0', '--duration', '1']))"
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    line = [x for x in r.stderr.splitlines() if "error:" in x]
    assert line and 'pip install ".[cluster]"' in line[0], r.stderr


def test_receiver_does_not_import_ray_without_cluster_mode():
    r = _python(
        "import sys, edge_runtime.cli, edge_runtime.receiver; edge_runtime.cli.build_parser(); "
        "from edge_runtime.receiver import Receiver; "
        "rx = Receiver(bind='tcp://127.0.0.1:0').start(); rx.close(); "
        "sys.exit('ray imported' if 'ray' in sys.modules else 0)"
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_unreachable_cluster_is_an_error_line_at_once(capsys):
    import importlib.util

    from helpers.system import require

    from edge_runtime.cli import main

    require(importlib.util.find_spec("ray") is not None, 'Ray is not installed (pip install ".[cluster]")')
    # nothing listens on port 1: ray.init alone would retry for minutes
    argv = ["receive", "--ray", "127.0.0.1:1", "--bind", "tcp://127.0.0.1:0", "--duration", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error: cannot reach the Ray cluster at '127.0.0.1:1'" in err and "Traceback" not in err
