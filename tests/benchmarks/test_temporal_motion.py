"""The motion-compensation probe: it finds a shift that is there, none where there is none, and its
command writes the lag table."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks import temporal_motion as tm  # noqa: E402
from edge_runtime.codec.format import Tensor  # noqa: E402

SHIFTS = [(float(dy), float(dx)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def _tensor(data: np.ndarray, keep: np.ndarray) -> Tensor:
    c = data.shape[0]
    return Tensor(data * keep, np.full(c, 0.5, np.float32), np.zeros(c, np.float32), 3, keep)


def test_a_moved_tensor_is_found_and_a_still_one_is_not():
    rng = np.random.default_rng(0)
    data = rng.integers(0, 8, (4, 12, 12), dtype=np.uint8)
    keep = np.zeros((12, 12), bool)
    keep[3:9, 3:9] = True
    ref = _tensor(data, keep)
    moved = _tensor(np.roll(data, 1, axis=2), np.roll(keep, 1, axis=1))  # one cell to the right
    r = tm.measure([ref, moved], np.zeros(2, int), 1, SHIFTS)
    assert r["frames"] == 1 and r["share_best_shift_not_zero"] == 1.0
    assert r["cost_best_over_zero"] < 0.5
    r = tm.measure([ref, ref], np.zeros(2, int), 1, SHIFTS)
    assert r["share_best_shift_not_zero"] == 0.0 and r["cost_best_over_zero"] is None  # nothing to code
    r = tm.measure([ref, moved], np.array([0, 1]), 1, SHIFTS)  # a new object: no pair
    assert r["frames"] == 0


def test_command_writes_the_lag_table(tmp_path):
    out = tmp_path / "tm.json"
    assert tm.main(["--frames", "60", "--lags", "1", "2", "--reach", "1", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    s = doc["summary"]
    assert set(s) == {"intra_top1", "lag1", "lag2"}
    for lag in ("lag1", "lag2"):
        assert 0 < s[lag]["temporal_vs_intra_bytes"] < 1  # predicted frames cost less than alone
        assert 0 <= s[lag]["share_best_shift_not_zero"] <= 1
    assert doc["parameters"]["shifts"]["count"] == 25


@pytest.mark.parametrize(
    "argv", [["--step", "0"], ["--reach", "1", "--step", "0.3"], ["--lags", "0"], ["--lags", "9"]]
)
def test_bad_grid_is_an_error_line(argv, capsys):
    assert tm.main(argv) == 2
    assert capsys.readouterr().err.startswith("error: ")
