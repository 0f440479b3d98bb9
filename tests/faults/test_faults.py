"""Faults on the edge -> receiver path, with real processes on loopback (and a network namespace
where ``ip netns`` works as root). After each fault: the edge's capture loop never blocked
(``SEND_BOUND_S``, ``LOOP_GAP_BOUND_S``), it delivered again within its reconnect bound, and every
frame is accounted for (captured = sent + dropped by reason; received = results + rejected; sent =
received, except messages in flight at the fault, bounded). Scenarios: tests/helpers/scenarios.py.
"""

from __future__ import annotations

import pytest
from helpers import scenarios
from helpers.faults import netns_available

pytestmark = pytest.mark.slow

_NETNS = netns_available()


def _check(out: dict) -> dict:
    assert out["violations"] == [], out
    assert out["edge_accounting_error"] == 0
    return out


def test_receiver_sigkill_mid_stream_and_restart(tmp_path):
    out = _check(scenarios.run_receiver_kill(tmp_path))
    assert out["killed_rx_results"] > 0 and out["received"] > out["killed_rx_results"]


def test_receiver_absent_at_edge_start(tmp_path):
    out = _check(scenarios.run_receiver_absent(tmp_path))
    assert out["lost_in_transit"] == 0 and out["received"] > 0


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
    # frames after the restore arrive: the edge did not give up on the endpoint
    assert out["received"] > 0 and out["reconnect_s"] is not None


def test_source_unplugged_and_back(tmp_path):
    out = _check(scenarios.run_source_outage(tmp_path))
    assert out["lost_in_transit"] == 0


def test_receiver_slower_than_edge(tmp_path):
    out = _check(scenarios.run_slow_receiver(tmp_path))
    assert out["lost_in_transit"] == 0 and out["received"] == out["sent"]
