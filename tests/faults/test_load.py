"""Load: several edge processes at full rate into one receiver process for a bounded time; RSS
(/proc/PID/status) and open descriptors (/proc/PID/fd) of every process stay flat."""

from __future__ import annotations

import pytest

from benchmarks.harness import scenarios

pytestmark = pytest.mark.slow

#: RSS may grow by at most this fraction from the first to the last quarter of the run (after a
#: warm-up quarter); the soak's goal is the same figure over a long run.
RSS_GROWTH_BOUND = 0.05


@pytest.mark.parametrize(
    "seconds", [pytest.param(20.0, id="20s"), pytest.param(600.0, id="10min", marks=pytest.mark.soak)]
)
def test_streams_into_one_receiver_stay_flat(tmp_path, seconds):
    out = scenarios.run_load(tmp_path, streams=3, seconds=seconds)
    assert out["violations"] == [], out
    assert out["lost_in_transit"] == 0 and out["edge_accounting_error"] == 0
    for name, g in out["resources"].items():
        assert g["rss_growth"] < RSS_GROWTH_BOUND, (name, g)
        assert g["fds_end"] <= g["fds_start"] + 2, (name, g)
