"""Fault scenarios, shared by tests/faults (short runs) and benchmarks/soak.py (long, repeated).

Each ``run_*`` function starts real processes, causes one fault, and returns a dict with what was
measured and ``violations``: the promises broken (empty when the path held). Frame accounting::

    edge:      captured = sent + dropped[stale, backpressure, error, shutdown]
    receiver:  received = results + rejected           (its own summary at SIGTERM)
    transit:   lost = edge sent - received by all receivers (JSONL lines of a SIGKILLed one)

``lost`` is what nobody accounted for: PUSH has no acknowledgements, so the messages queued in a
receiver that is SIGKILLed (or on a link that is cut) are gone without a count on either side.
Scenarios without such a fault must lose none; with one, the loss is reported (the soak's
``frames_unaccounted``) and held under ``inflight_bound``.
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

from helpers.faults import (
    SOURCE_SLACK_S,
    EdgeProc,
    Netns,
    RelayProc,
    RxProc,
    edge_violations,
    first_ok_send_after,
    free_port,
    reconnect_bound_s,
    seq_duplicates,
)


def inflight_bound(report: dict, max_batch: int = 16) -> int:
    """Messages that can be lost in flight when a peer dies or the link is cut: the edge's queue
    (``sndhwm``), one receiver batch, and every frame sent until the ZMTP heartbeat declares the
    link dead (``heartbeat_timeout_ms``): until then the kernel's TCP send buffer takes them and
    ``send`` succeeds (measured: 70 of 80 frames of a 4 s cut at 20 fps, tests/faults)."""
    c = report["config"]
    return c["sndhwm"] + max_batch + math.ceil(c["fps"] * c["heartbeat_timeout_ms"] / 1e3)


def _finish(name: str, report: dict, received: int, results: list[dict], extra: dict, fault: bool) -> dict:
    v = edge_violations(report)
    s = report["stats"]
    lost = s["sent"] - received
    if lost < 0:
        v.append(f"receivers got {received} messages, the edge sent only {s['sent']}")
    elif lost and not fault:
        v.append(f"{lost} messages sent without a fault never reached the receiver")
    elif lost > inflight_bound(report):
        v.append(f"{lost} messages lost in transit > in-flight bound {inflight_bound(report)}")
    dup = seq_duplicates(results)
    if dup:
        v.append(f"{dup} results delivered twice")
    return {
        "scenario": name,
        "captured": s["captured"],
        "sent": s["sent"],
        "dropped": s["dropped"],
        "received": received,
        "lost_in_transit": max(0, lost),
        "edge_accounting_error": s["captured"] - s["sent"] - sum(s["dropped"].values()),
        "max_send_s": report["max_send_s"],
        "max_loop_gap_s": report["max_loop_gap_s"],
        **extra,
        "violations": v,
    }


def _rx_check(summary: dict, v: list[str]) -> None:
    if summary["received"] != summary["results"] + summary["rejected"]:
        v.append(f"receiver: received {summary['received']} != results + rejected {summary}")
    if summary["rejected"]:
        v.append(f"receiver rejected {summary['reasons']} from a clean edge stream")


def run_receiver_kill(
    workdir: Path, *, seconds: float = 9.0, kill_at: float = 3.0, down_s: float = 1.5
) -> dict:
    """SIGKILL the receiver mid-stream, start a new one on the same port."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    rx1 = RxProc(ep, workdir, "kill-rx1")
    rx1.wait_ready()
    edge = EdgeProc([ep], workdir, "kill-cam", seconds=seconds)
    rx2 = None
    try:
        t0 = edge.wait_ready()
        time.sleep(max(0.0, t0 + kill_at - time.time()))
        rx1.kill()
        time.sleep(down_s)
        rx2 = RxProc(ep, workdir, "kill-rx2")
        t_ready = rx2.wait_ready()
        report = edge.wait()
        summary = rx2.stop()
    finally:
        for p in (edge, rx1, rx2):
            if p is not None:
                p.kill()
    first = first_ok_send_after(report, t_ready)
    res1, res2 = rx1.results(), rx2.results()
    out = _finish(
        "receiver_sigkill", report, len(res1) + summary["received"], res1 + res2,
        {"reconnect_s": None if first is None else first - t_ready, "killed_rx_results": len(res1)},
        fault=True,
    )  # fmt: skip
    _rx_check(summary, out["violations"])
    _check_reconnect(out, report)
    return out


def _check_reconnect(out: dict, report: dict) -> None:
    r = out["reconnect_s"]
    if r is None:
        out["violations"].append("the edge never delivered again after the fault")
    elif r > reconnect_bound_s(report):
        out["violations"].append(f"reconnected after {r:.2f} s > {reconnect_bound_s(report):.2f} s")


def run_receiver_absent(workdir: Path, *, seconds: float = 7.0, absent_s: float = 2.5) -> dict:
    """The edge starts with no receiver; one comes up later."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    edge = EdgeProc([ep], workdir, "absent-cam", seconds=seconds)
    rx = None
    try:
        t0 = edge.wait_ready()
        time.sleep(max(0.0, t0 + absent_s - time.time()))
        rx = RxProc(ep, workdir, "absent-rx")
        t_ready = rx.wait_ready()
        report = edge.wait()
        summary = rx.stop()
    finally:
        for p in (edge, rx):
            if p is not None:
                p.kill()
    first = first_ok_send_after(report, t_ready)
    out = _finish(
        "receiver_absent_at_start", report, summary["received"], rx.results(),
        {"reconnect_s": None if first is None else first - t_ready,
         "dropped_while_absent": report["stats"]["dropped"].get("backpressure", 0)},
        fault=False,
    )  # fmt: skip
    _rx_check(summary, out["violations"])
    _check_reconnect(out, report)
    if not out["dropped_while_absent"]:
        out["violations"].append("no frame was dropped as backpressure while no receiver was there")
    return out


def run_network_cut(workdir: Path, *, method: str = "relay", seconds: float = 11.0, cut_at: float = 2.5,
                    cut_s: float = 4.0) -> dict:  # fmt: skip
    """Cut the network between edge and receiver for ``cut_s`` (longer than the heartbeat timeout),
    then restore it. ``method``: ``netns`` (receiver in a network namespace, veth link down / up) or
    ``relay`` (a TCP relay stopped with SIGSTOP / SIGCONT: bytes stop flowing, connections stay)."""
    ns = relay = rx = edge = None
    try:
        if method == "netns":
            ns = Netns()
            port = 5555
            rx = RxProc(f"tcp://{ns.ns_ip}:{port}", workdir, "cut-rx", netns=ns.name)
            ep = f"tcp://{ns.ns_ip}:{port}"
        else:
            rport, port = free_port(), free_port()
            rx = RxProc(f"tcp://127.0.0.1:{rport}", workdir, "cut-rx")
            relay = RelayProc(port, f"127.0.0.1:{rport}", workdir)
            ep = f"tcp://127.0.0.1:{port}"
        rx.wait_ready()
        edge = EdgeProc([ep], workdir, f"cut-{method}-cam", seconds=seconds)
        t0 = edge.wait_ready()
        time.sleep(max(0.0, t0 + cut_at - time.time()))
        ns.cut() if ns else relay.signal(signal.SIGSTOP)
        time.sleep(cut_s)
        ns.restore() if ns else relay.signal(signal.SIGCONT)
        t_restored = time.time()
        report = edge.wait()
        time.sleep(0.5)  # the last messages through the relay
        summary = rx.stop()
    finally:
        for p in (edge, rx, relay):
            if p is not None:
                p.kill()
        if ns is not None:
            ns.close()
    # the first send after the restore that did not fail; during the cut sends fail once the
    # heartbeat timed out and the queue (sndhwm) filled
    first = first_ok_send_after(report, t_restored)
    out = _finish(
        f"network_cut_{method}", report, summary["received"], rx.results(),
        {"reconnect_s": None if first is None else first - t_restored, "cut_s": cut_s},
        fault=True,
    )  # fmt: skip
    _rx_check(summary, out["violations"])
    _check_reconnect(out, report)
    return out


def run_source_outage(
    workdir: Path, *, seconds: float = 7.0, outage: tuple[float, float] = (2.0, 4.0)
) -> dict:
    """The camera is unplugged from ``outage[0]`` to ``outage[1]`` seconds and comes back."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    rx = RxProc(ep, workdir, "src-rx")
    edge = None
    try:
        rx.wait_ready()
        edge = EdgeProc([ep], workdir, "src-cam", seconds=seconds, outage=f"{outage[0]}:{outage[1]}")
        t0 = edge.wait_ready()
        report = edge.wait()
        time.sleep(0.3)
        summary = rx.stop()
    finally:
        for p in (edge, rx):
            if p is not None:
                p.kill()
    back = t0 + outage[1]
    after = [g for g in report["frame_gaps"] if g[1] >= back]
    resumed = after[0][1] - back if after else None
    out = _finish(
        "source_outage", report, summary["received"], rx.results(),
        {"source_resumed_s": resumed, "frame_gaps": len(report["frame_gaps"])}, fault=False,
    )  # fmt: skip
    _rx_check(summary, out["violations"])
    bound = report["config"]["retry_max_s"] + SOURCE_SLACK_S
    if resumed is None:
        out["violations"].append("no frame gap spans the outage: the source never stopped or never came back")
    elif resumed > bound:
        out["violations"].append(f"frames came back {resumed:.2f} s after the source did > {bound:.2f} s")
    return out


def run_slow_receiver(
    workdir: Path, *, seconds: float = 6.0, fps: float = 30.0, delay_ms: float = 150.0
) -> dict:
    """A receiver whose back half takes ``delay_ms`` longer per batch than the edge's frame period."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    rx = RxProc(ep, workdir, "slow-rx", slow_ms=delay_ms, extra=("--max-batch", "2"))
    edge = None
    try:
        rx.wait_ready()
        edge = EdgeProc([ep], workdir, "slow-cam", seconds=seconds, fps=fps)
        edge.wait_ready()
        report = edge.wait()
        # let it work off what is queued: every sent message must come out as a result
        deadline = time.time() + 60
        while time.time() < deadline and len(rx.results()) < report["stats"]["sent"]:
            time.sleep(0.2)
        summary = rx.stop()
    finally:
        for p in (edge, rx):
            if p is not None:
                p.kill()
    out = _finish(
        "slow_receiver", report, summary["received"], rx.results(), {"delay_ms": delay_ms}, fault=False
    )
    _rx_check(summary, out["violations"])
    return out


def run_load(workdir: Path, *, streams: int = 3, seconds: float = 20.0, fps: float = 30.0) -> dict:
    """``streams`` edges at full rate into one receiver for ``seconds``; RSS and open descriptors
    of every process sampled from /proc (:class:`~helpers.faults.Sampler`)."""
    from helpers.faults import Sampler

    ep = f"tcp://127.0.0.1:{free_port()}"
    rx = RxProc(ep, workdir, "load-rx")
    edges: list[EdgeProc] = []
    try:
        rx.wait_ready()
        edges = [EdgeProc([ep], workdir, f"load-cam{i}", seconds=seconds, fps=fps, sets=(f"source.seed={i}",))
                 for i in range(streams)]  # fmt: skip
        for e in edges:
            e.wait_ready()
        with Sampler({"receiver": rx.pid, **{f"edge{i}": e.pid for i, e in enumerate(edges)}}) as sampler:
            # sample while every edge is in its loop, not while they close (descriptors drop then)
            time.sleep(max(0.0, min(e.started_at for e in edges) + seconds - 1.0 - time.time()))
        reports = [e.wait(timeout=seconds + 120) for e in edges]
        time.sleep(0.5)
        summary = rx.stop()
    finally:
        for p in (*edges, rx):
            p.kill()
    results = rx.results()
    sent = sum(r["stats"]["sent"] for r in reports)
    v: list[str] = []
    for r in reports:
        v += [f"{r['stream']}: {x}" for x in edge_violations(r)]
    _rx_check(summary, v)
    if sent != summary["received"]:
        v.append(f"edges sent {sent}, the receiver got {summary['received']}")
    growth = {k: sampler.growth(k) for k in sampler.samples}
    return {
        "scenario": "load",
        "streams": streams,
        "seconds": seconds,
        "captured": sum(r["stats"]["captured"] for r in reports),
        "sent": sent,
        "received": summary["received"],
        "results": len(results),
        "lost_in_transit": max(0, sent - summary["received"]),
        "edge_accounting_error": sum(
            r["stats"]["captured"] - r["stats"]["sent"] - sum(r["stats"]["dropped"].values()) for r in reports
        ),
        "fps_per_stream": [round(r["stats"]["fps"], 1) for r in reports],
        "resources": growth,
        "violations": v,
    }


def run_fuzz(workdir: Path, *, messages: int = 5000, seed: int = 0) -> dict:
    """The codec's fuzz corpus from a raw ZeroMQ client into a receiver process; every message is
    accounted for (received = results + rejected) and the receiver survives."""
    import random

    import zmq
    from helpers.codec import fuzz_message, fuzz_seeds
    from helpers.receiver import Sender

    from edge_runtime.bundle import load_bundle

    mid = load_bundle(verify=False).model_id_bytes
    ep = f"tcp://127.0.0.1:{free_port()}"
    rx = RxProc(ep, workdir, "fuzz-rx", extra=("--frames", str(messages)))
    try:
        rx.wait_ready()
        rng = random.Random(seed)
        seeds = fuzz_seeds(mid)
        with Sender(ep) as s:
            s.sock.setsockopt(zmq.LINGER, 5000)
            for i in range(messages):
                s.sock.send(fuzz_message(rng, i, seeds))
        rx.wait_line(lambda x: x.startswith("received "), 300)  # --frames: it stops by itself
        summary = rx.stop()
    finally:
        rx.kill()
    v: list[str] = []
    if summary["received"] != messages:
        v.append(f"sent {messages} fuzz messages, the receiver accounted for {summary['received']}")
    if summary["received"] != summary["results"] + summary["rejected"]:
        v.append(f"receiver: received != results + rejected: {summary}")
    return {"scenario": "fuzz", "messages": messages, **summary, "violations": v}
