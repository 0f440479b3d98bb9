"""Faults on the edge -> receiver path, with real processes on loopback (and a network namespace
where ``ip netns`` works as root). After each fault: the edge's capture loop never blocked
(``SEND_BOUND_S``, ``LOOP_GAP_BOUND_S``), it delivered again within its reconnect bound, every
frame is accounted for (captured = delivered + dropped by reason; every delivered frame has a
result), nothing was given up in the window, and no frame got two results. Scenarios:
benchmarks/harness/scenarios.py.
"""

from __future__ import annotations

import pytest

from benchmarks.harness import scenarios
from benchmarks.harness.faults import netns_available

pytestmark = pytest.mark.slow

_NETNS = netns_available()


def _check(out: dict) -> dict:
    assert out["violations"] == [], out
    assert out["edge_accounting_error"] == 0 and out["unaccounted"] == 0
    assert out["duplicate_results"] == 0
    return out


def test_receiver_sigkill_mid_stream_and_restart(tmp_path):
    out = _check(scenarios.run_receiver_kill(tmp_path))
    # the first receiver answered some frames; resent ones were recognised from its JSONL
    assert out["killed_rx_results"] > 0 and out["results"] > out["killed_rx_results"]
    assert out["lost_in_window"] == 0 and out["resent"] > 0


def test_receiver_absent_at_edge_start(tmp_path):
    out = _check(scenarios.run_receiver_absent(tmp_path))
    # frames captured before the receiver existed waited in the window and were delivered
    assert out["lost_in_window"] == 0 and out["delivered"] > 0
    assert not out["dropped"].get("backpressure")


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(
            "netns",
            marks=pytest.mark.skipif(not _NETNS, reason="needs root and `ip netns`; the relay test runs"),
        ),
        "relay",
    ],
)
def test_network_cut_and_restore(tmp_path, method):
    out = _check(scenarios.run_network_cut(tmp_path, method=method))
    # a 4 s cut, shorter than the window: every frame of it delivered after the restore
    assert out["lost_in_window"] == 0 and out["reconnect_s"] is not None


def test_source_unplugged_and_back(tmp_path):
    out = _check(scenarios.run_source_outage(tmp_path))
    assert out["lost_in_window"] == 0


def test_receiver_slower_than_edge(tmp_path):
    out = _check(scenarios.run_slow_receiver(tmp_path))
    assert out["results"] == out["delivered"] == out["sent"]


def test_edge_restart_new_epoch(tmp_path):
    out = _check(scenarios.run_edge_restart(tmp_path))
    assert len(set(out["epochs"])) == 2


def test_key_revoked_while_running(tmp_path):
    out = _check(scenarios.run_key_revocation(tmp_path))
    assert out["rx_reasons"].get("revoked", 0) > 0
