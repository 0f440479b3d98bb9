"""Fault scenarios, shared by tests/faults (short runs) and benchmarks/soak.py (long, repeated).

Each ``run_*`` function starts real processes, causes one fault, and returns a dict with what was
measured and ``violations``: the promises broken (empty when the path held). Frame accounting,
with acknowledged delivery (``delivery.policy = reliable``, the default)::

    edge:      captured = delivered + dropped[stale, error, window_overflow, window_expired, shutdown]
    receiver:  received = results + rejected[duplicate, ...]      (its own summary at SIGTERM)
    transit:   unaccounted = delivered - frames with a result     (JSONL lines of every receiver)

A frame counts as delivered only once a receiver acknowledged it, and a receiver acknowledges only
what its sinks hold, so ``unaccounted`` must be 0 whatever the fault; resends after a fault show
as ``duplicate`` rejects, never as a second result (``duplicate_results`` = 0). Frames the edge
gave up (``window_*``) are ``lost_in_window``: 0 for faults shorter than the window.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

from benchmarks.harness.faults import (
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
    unique_results,
)

WINDOW_REASONS = ("window_overflow", "window_expired")


def _edge_part(report: dict, results: list[dict]) -> dict:
    s = report["stats"]
    got = unique_results(results, s["stream_id"], s["epoch"])
    return {
        "captured": s["captured"],
        "sent": s["sent"],
        "delivered": s["delivered"],
        "resent": s["resent"],
        "dropped": s["dropped"],
        "results": got,
        "unaccounted": abs(s["accounting_error"]) + max(0, s["delivered"] - got),
        "lost_in_window": sum(s["dropped"].get(k, 0) for k in WINDOW_REASONS),
        "answered_but_dropped": max(0, got - s["delivered"]),
    }


def _finish(
    name: str, reports: list[dict], results: list[dict], extra: dict, *, may_give_up: bool = False
) -> dict:
    v: list[str] = []
    parts = [_edge_part(r, results) for r in reports]
    for r, part in zip(reports, parts, strict=True):
        v += [f"{r['stream']}: {x}" for x in edge_violations(r)]
        if part["unaccounted"]:
            v.append(f"{r['stream']}: {part['unaccounted']} frames unaccounted ({part})")
        if part["lost_in_window"] and not may_give_up:
            v.append(f"{r['stream']}: {part['lost_in_window']} frames given up in the window")
    dup = seq_duplicates(results)
    if dup:
        v.append(f"{dup} results delivered twice")
    tot = {k: sum(p[k] for p in parts) for k in ("captured", "sent", "delivered", "resent", "results",
                                                 "unaccounted", "lost_in_window", "answered_but_dropped")}  # fmt: skip
    dropped: dict = {}
    for p in parts:
        for k, n in p["dropped"].items():
            dropped[k] = dropped.get(k, 0) + n
    return {
        "scenario": name,
        **tot,
        "dropped": dropped,
        "duplicate_results": dup,
        "edge_accounting_error": sum(r["stats"]["accounting_error"] for r in reports),
        "lost_in_transit": tot["unaccounted"],
        "max_send_s": max(r["max_send_s"] for r in reports),
        "max_loop_gap_s": max(r["max_loop_gap_s"] for r in reports),
        **extra,
        "violations": v,
    }


def _rx_check(summary: dict, v: list[str], allowed: tuple[str, ...] = ("duplicate",)) -> None:
    if summary["received"] != summary["results"] + summary["rejected"]:
        v.append(f"receiver: received {summary['received']} != results + rejected {summary}")
    bad = {k: n for k, n in summary["reasons"].items() if k not in allowed}
    if bad:
        v.append(f"receiver rejected {bad} from a clean edge stream")


def _check_reconnect(out: dict, report: dict) -> None:
    r = out["reconnect_s"]
    if r is None:
        out["violations"].append("the edge never delivered again after the fault")
    elif r > reconnect_bound_s(report):
        out["violations"].append(f"reconnected after {r:.2f} s > {reconnect_bound_s(report):.2f} s")


def run_receiver_kill(
    workdir: Path, *, seconds: float = 9.0, kill_at: float = 3.0, down_s: float = 1.5
) -> dict:
    """SIGKILL the receiver mid-stream, start a new one on the same port and the same JSONL file
    (as systemd would): what the first one answered gets no second result."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    rx1 = RxProc(ep, workdir, "kill-rx1", jsonl="kill-rx")
    rx1.wait_ready()
    edge = EdgeProc([ep], workdir, "kill-cam", seconds=seconds)
    rx2 = None
    try:
        t0 = edge.wait_ready()
        time.sleep(max(0.0, t0 + kill_at - time.time()))
        rx1.kill()
        killed = len(rx1.results())
        time.sleep(down_s)
        rx2 = RxProc(ep, workdir, "kill-rx2", jsonl="kill-rx")
        t_ready = rx2.wait_ready()
        report = edge.wait()
        summary = rx2.stop()
    finally:
        for p in (edge, rx1, rx2):
            if p is not None:
                p.kill()
    first = first_ok_send_after(report, t_ready)
    out = _finish(
        "receiver_sigkill", [report], rx2.results(),
        {"reconnect_s": None if first is None else first - t_ready, "killed_rx_results": killed,
         "rx_duplicates_refused": summary["duplicates"]},
    )  # fmt: skip
    _rx_check(summary, out["violations"])
    _check_reconnect(out, report)
    return out


def run_receiver_absent(workdir: Path, *, seconds: float = 7.0, absent_s: float = 2.5) -> dict:
    """The edge starts with no receiver; one comes up later: the frames waited in the window."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    # a receiver that starts late on a busy machine may answer only during the edge's drain: give
    # the drain time (soak.json 14:35: both runs answered every frame, acked after a 5 s drain)
    edge = EdgeProc([ep], workdir, "absent-cam", seconds=seconds, sets=("delivery.drain_s=30",))
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
        "receiver_absent_at_start", [report], rx.results(),
        {"reconnect_s": None if first is None else first - t_ready},
    )  # fmt: skip
    _rx_check(summary, out["violations"])
    _check_reconnect(out, report)
    if not out["delivered"]:
        out["violations"].append("nothing was delivered once the receiver came up")
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
        summary = rx.stop()
    finally:
        for p in (edge, rx, relay):
            if p is not None:
                p.kill()
        if ns is not None:
            ns.close()
    first = first_ok_send_after(report, t_restored)
    out = _finish(
        f"network_cut_{method}", [report], rx.results(),
        {"reconnect_s": None if first is None else first - t_restored, "cut_s": cut_s},
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
        summary = rx.stop()
    finally:
        for p in (edge, rx):
            if p is not None:
                p.kill()
    back = t0 + outage[1]
    after = [g for g in report["frame_gaps"] if g[1] >= back]
    resumed = after[0][1] - back if after else None
    out = _finish(
        "source_outage", [report], rx.results(),
        {"source_resumed_s": resumed, "frame_gaps": len(report["frame_gaps"])},
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
    """A receiver whose back half takes ``delay_ms`` longer per batch than the edge's frame period:
    the window holds the backlog, the drain at stop waits for it (no frame given up)."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    rx = RxProc(ep, workdir, "slow-rx", slow_ms=delay_ms, extra=("--max-batch", "2"))
    edge = None
    try:
        rx.wait_ready()
        edge = EdgeProc([ep], workdir, "slow-cam", seconds=seconds, fps=fps,
                        sets=("delivery.drain_s=60", "delivery.window_frames=1024"))  # fmt: skip
        edge.wait_ready()
        report = edge.wait(timeout=seconds + 120)
        summary = rx.stop()
    finally:
        for p in (edge, rx):
            if p is not None:
                p.kill()
    out = _finish("slow_receiver", [report], rx.results(), {"delay_ms": delay_ms})
    _rx_check(summary, out["violations"])
    left = report["stats"]["window"]["dropped"].get("shutdown", 0)
    if left:
        out["violations"].append(f"{left} frames unacknowledged after the drain")
    return out


def run_edge_restart(workdir: Path, *, first_s: float = 4.0, second_s: float = 4.0) -> dict:
    """Stop the edge (SIGTERM: it drains its window) and start it again with the same stream id:
    a new epoch, seq from 0 again, and both runs' frames accounted for on both sides."""
    ep = f"tcp://127.0.0.1:{free_port()}"
    rx = RxProc(ep, workdir, "restart-rx")
    e1 = e2 = None
    try:
        rx.wait_ready()
        e1 = EdgeProc([ep], workdir, "restart-cam", seconds=600)
        e1.wait_ready()
        time.sleep(first_s)
        e1.signal(signal.SIGTERM)
        r1 = e1.wait()
        shutil.move(str(e1.out), str(Path(workdir) / "restart-cam-1.json"))
        e2 = EdgeProc([ep], workdir, "restart-cam", seconds=second_s)
        e2.wait_ready()
        r2 = e2.wait()
        summary = rx.stop()
    finally:
        for p in (e1, e2, rx):
            if p is not None:
                p.kill()
    out = _finish(
        "edge_restart", [r1, r2], rx.results(), {"epochs": [r1["stats"]["epoch"], r2["stats"]["epoch"]]}
    )
    _rx_check(summary, out["violations"])
    if r1["stats"]["epoch"] == r2["stats"]["epoch"]:
        out["violations"].append("the restarted edge kept its boot epoch")
    if summary["gaps"] or summary["lost"]:
        out["violations"].append(
            f"receiver counted gaps {summary['gaps']} / lost {summary['lost']} across the restart"
        )
    return out


def run_key_revocation(workdir: Path, *, seconds: float = 8.0, revoke_at: float = 3.0) -> dict:
    """CURVE with two enrolled edges and a malformed key file in the allow folder (refused alone);
    one edge's key is removed while both run: its frames are refused (``revoked``) from then on and
    given up at the edge with a reason, the other edge is untouched."""
    from edge_runtime.transport import generate_keypair

    keys, allow = Path(workdir) / "keys", Path(workdir) / "allow"
    allow.mkdir(parents=True)
    generate_keypair(keys, "rx")
    for name in ("good", "gone"):
        generate_keypair(keys, name)
        shutil.copy(keys / f"{name}.key", allow / f"{name}.key")
    (allow / "broken.key").write_text('public-key = "not a key"\n')
    ep = f"tcp://127.0.0.1:{free_port()}"
    rx = RxProc(ep, workdir, "revoke-rx",
                extra=("--keys-secret", str(keys / "rx.key_secret"), "--allow-dir", str(allow)))  # fmt: skip
    edges = []
    try:
        rx.wait_ready()
        sets = {n: (f"sender.client_secret_key={keys / f'{n}.key_secret'}",
                    f"sender.server_public_key={keys / 'rx.key'}", "delivery.drain_s=2") for n in ("good", "gone")}  # fmt: skip
        edges = [
            EdgeProc([ep], workdir, f"revoke-{n}", seconds=seconds, sets=sets[n]) for n in ("good", "gone")
        ]
        t0 = min(e.wait_ready() for e in edges)
        time.sleep(max(0.0, t0 + revoke_at - time.time()))
        (allow / "gone.key").unlink()
        reports = [e.wait(timeout=seconds + 60) for e in edges]
        summary = rx.stop()
    finally:
        for p in (*edges, rx):
            p.kill()
    results = rx.results()
    out = _finish("key_revocation", reports, results, {"rx_reasons": summary["reasons"]}, may_give_up=True)
    _rx_check(summary, out["violations"], allowed=("duplicate", "revoked"))
    good, gone = reports
    if good["stats"]["dropped"].get("window_overflow") or good["stats"]["dropped"].get("shutdown"):
        out["violations"].append(f"the enrolled edge lost frames: {good['stats']['dropped']}")
    if not summary["reasons"].get("revoked"):
        out["violations"].append("no frame of the revoked key was refused")
    if unique_results(results, "revoke-gone", gone["stats"]["epoch"]) >= gone["stats"]["sent"]:
        out["violations"].append("every frame of the revoked key got a result")
    if "broken.key" not in rx.tail(100000):
        out["violations"].append("the malformed key file is not named in the receiver's log")
    return out


def run_load(workdir: Path, *, streams: int = 3, seconds: float = 20.0, fps: float = 30.0) -> dict:
    """``streams`` edges at full rate into one receiver for ``seconds``; RSS and open descriptors
    of every process sampled from /proc (:class:`~benchmarks.harness.faults.Sampler`)."""
    from benchmarks.harness.faults import Sampler

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
        summary = rx.stop()
    finally:
        for p in (*edges, rx):
            p.kill()
    out = _finish("load", reports, rx.results(), {"streams": streams, "seconds": seconds,
                  "fps_per_stream": [round(r["stats"]["fps"], 1) for r in reports]})  # fmt: skip
    _rx_check(summary, out["violations"])
    out["resources"] = {k: sampler.growth(k) for k in sampler.samples}
    return out


def run_fuzz(workdir: Path, *, messages: int = 5000, seed: int = 0) -> dict:
    """The codec's fuzz corpus from a raw ZeroMQ client into a receiver process; every message is
    accounted for (received = results + rejected) and the receiver survives."""
    import random

    import zmq

    from benchmarks.harness.codec import fuzz_message, fuzz_seeds
    from benchmarks.harness.receiver import Sender
    from edge_runtime.bundle import load_bundle

    mid = load_bundle(verify=False).model_id_bytes
    ep = f"tcp://127.0.0.1:{free_port()}"
    rx = RxProc(ep, workdir, "fuzz-rx", extra=("--frames", str(messages)))
    try:
        rx.wait_ready()
        rng = random.Random(seed)
        seeds = fuzz_seeds(mid)
        with Sender(ep, kind=zmq.DEALER, heartbeat=False) as s:
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
