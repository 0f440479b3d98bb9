"""CURVE: only enrolled edge boxes deliver; without keys the receiver warns loudly."""

from __future__ import annotations

import logging
import shutil
import time

import pytest
import zmq

from benchmarks.harness.receiver import Sender
from edge_runtime.errors import ConfigError
from edge_runtime.receiver import Receiver
from edge_runtime.transport import generate_keypair


@pytest.fixture
def keys(tmp_path):
    srv_pub, srv_sec = generate_keypair(tmp_path / "server", "receiver")
    _, ok_sec = generate_keypair(tmp_path / "edge-ok", "edge-ok")
    _, bad_sec = generate_keypair(tmp_path / "edge-bad", "edge-bad")
    allow = tmp_path / "allow"
    allow.mkdir()
    shutil.copy(tmp_path / "edge-ok" / "edge-ok.key", allow)  # enrolment: copy the public key
    return {"srv_pub": srv_pub, "srv_sec": srv_sec, "ok": ok_sec, "bad": bad_sec, "allow": allow}


def test_only_an_enrolled_client_delivers(bundle, traffic, keys):
    msgs, _, _ = traffic
    with Receiver([bundle], server_secret=keys["srv_sec"], allow_dir=keys["allow"]) as rx:
        bad = Sender(rx.endpoint, client_secret=keys["bad"], server_public=keys["srv_pub"])
        bad.sock.setsockopt(zmq.LINGER, 0)
        bad.send(msgs[:4])
        time.sleep(1.0)  # several handshake attempts' worth
        assert rx.stats.totals()["received"] == 0
        bad.close()
        with Sender(rx.endpoint, client_secret=keys["ok"], server_public=keys["srv_pub"]) as ok:
            ok.send(msgs[:4])
            totals = rx.wait(frames=4, duration=20)
    assert totals["received"] == 4 and totals["results"] == 4


def test_a_client_without_curve_delivers_nothing(bundle, traffic, keys):
    msgs, _, _ = traffic
    with Receiver([bundle], server_secret=keys["srv_sec"], allow_dir=keys["allow"]) as rx:
        plain = Sender(rx.endpoint)
        plain.sock.setsockopt(zmq.LINGER, 0)
        plain.send(msgs[:2])
        time.sleep(0.5)
        assert rx.stats.totals()["received"] == 0
        plain.close()


def test_half_configured_curve_is_refused(bundle, keys):
    with pytest.raises(ConfigError, match="allow"):
        Receiver([bundle], server_secret=keys["srv_sec"])


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_unauthenticated_receiver_says_so(bundle):
    h = _Collect()
    logger = logging.getLogger("edge_runtime.receiver")
    logger.addHandler(h)
    try:
        with Receiver([bundle]):
            pass
    finally:
        logger.removeHandler(h)
    assert any("UNAUTHENTICATED" in r.getMessage() and r.levelno == logging.WARNING for r in h.records)
