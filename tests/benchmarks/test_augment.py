"""benchmarks/augment.py: the kernels against the path they replaced, side by side."""

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="needs the offline extra: pip install '.[train]'")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import augment  # noqa: E402


def test_writes_both_times_and_the_outputs_agree(tmp_path):
    out = tmp_path / "augment.json"
    argv = [
        "--task",
        "shapes-synthetic",
        "--batches",
        "2",
        "--steps",
        "0",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    assert augment.main(argv) == 0
    doc = json.loads(out.read_text())
    s = doc["summary"]
    assert s["augment_ms"] > 0 and s["augment_ms_before"] > 0
    assert s["max_abs_difference"] < 1e-5  # the same float32 operations, the mean summed apart
    assert len(doc["results"]["before_ms"]) == 2 and "step_ms" not in s


def test_bad_option_is_an_error_line(capsys):
    assert augment.main(["--batches", "1"]) == 2
    assert capsys.readouterr().err.startswith("error:")
