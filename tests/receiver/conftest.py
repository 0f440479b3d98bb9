from __future__ import annotations

import json
import shutil

import pytest


@pytest.fixture(scope="session")
def bundle():
    from edge_runtime.bundle import load_bundle

    return load_bundle(threads=1)


@pytest.fixture(scope="session")
def second_bundle(tmp_path_factory, bundle):
    """The default bundle under another model name: same graphs, a different model id."""
    from edge_runtime.bundle import compute_model_id, load_bundle

    dst = tmp_path_factory.mktemp("b2") / "bundle"
    shutil.copytree(bundle.path, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m["model_name"] = m["model_name"] + "-twin"
    m["model_id"] = compute_model_id(m)
    (dst / "manifest.json").write_text(json.dumps(m))
    return load_bundle(dst, threads=1)


@pytest.fixture(scope="session")
def traffic(bundle):
    """24 real messages over 3 streams, every 8th an empty frame."""
    from benchmarks.harness.receiver import make_messages

    return make_messages(bundle, 24, streams=("cam0", "cam1", "cam2"), empty_every=8)
