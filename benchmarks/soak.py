"""Soak: the fault scenarios of tests/faults, repeated, plus fuzzing and a long load run.

    python benchmarks/soak.py --rounds 2 --load-seconds 120 --fuzz 10000

Writes ``benchmarks/results/soak.json``. Every edge runs the shipped delivery default
(``delivery.policy = reliable``: a resend window, frames delivered only when acknowledged).
Summary:

- ``frames_unaccounted``: frames no counter accounts for, summed over every run: edge accounting
  errors (captured - delivered - dropped by reason), frames the edge counted delivered that no
  receiver wrote a result for, receiver ones (received - results - rejected) and fuzz messages
  not accounted for (goal 0);
- ``frames_lost_in_window``: frames the edge gave up (window overflow / expiry) in faults shorter
  than the window (goal 0); the key revocation run, where giving up is the right outcome, is
  reported beside it (``given_up_after_revocation``);
- ``duplicate_results``: results given twice for one (stream, epoch, seq) (goal 0);
- ``faults_survived`` / ``faults_total``: fault runs after which every promise held, counted only
  when no frame went unaccounted;
- ``max_reconnect_s``: the longest time from the peer being back to the edge delivering again;
- ``messages_fuzzed``: hostile messages fed to a receiver process that were all accounted for;
- ``memory_growth``: the largest RSS growth of any process over the load run (goal < 0.05).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, before benchmarks/

from benchmarks._common import write_result  # noqa: E402
from benchmarks.harness import scenarios  # noqa: E402
from benchmarks.harness.faults import netns_available  # noqa: E402


def _sum_dropped(runs: list[dict]) -> dict:
    out: dict[str, int] = {}
    for r in runs:
        for k, n in r.get("dropped", {}).items():
            out[k] = out.get(k, 0) + n
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2, help="times each fault scenario runs")
    ap.add_argument("--load-seconds", type=float, default=120.0)
    ap.add_argument("--load-streams", type=int, default=3)
    ap.add_argument("--fuzz", type=int, default=10000, help="fuzz messages into a receiver process")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    netns = netns_available()
    faults = [
        ("receiver_sigkill", scenarios.run_receiver_kill, {}),
        ("receiver_absent", scenarios.run_receiver_absent, {}),
        ("network_cut_relay", scenarios.run_network_cut, {"method": "relay"}),
        ("source_outage", scenarios.run_source_outage, {}),
        ("slow_receiver", scenarios.run_slow_receiver, {}),
        ("edge_restart", scenarios.run_edge_restart, {}),
        ("key_revocation", scenarios.run_key_revocation, {}),
    ]
    if netns:
        faults.insert(3, ("network_cut_netns", scenarios.run_network_cut, {"method": "netns"}))
    runs: list[dict] = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        for r in range(args.rounds):
            for name, fn, kw in faults:
                d = work / f"{name}-{r}"
                d.mkdir()
                try:
                    out = fn(d, **kw)
                except Exception as e:  # a scenario that could not run is a failed fault, reported
                    out = {"scenario": name, "violations": [f"scenario failed: {e!r}"]}
                out["round"], out["name"] = r, name
                runs.append(out)
                print(f"{name} round {r}: {out.get('violations') or 'ok'}", flush=True)
        d = work / "fuzz"
        d.mkdir()
        try:
            fuzz = scenarios.run_fuzz(d, messages=args.fuzz)
        except Exception as e:  # the receiver process died: a failed run, reported, not a crash here
            fuzz = {"scenario": "fuzz", "messages": args.fuzz, "received": 0, "results": 0, "rejected": 0,
                    "violations": [f"fuzz run failed: {str(e)[:600]}"]}  # fmt: skip
        print(f"fuzz: {fuzz['violations'] or 'ok'}", flush=True)
        d = work / "load"
        d.mkdir()
        load = scenarios.run_load(d, streams=args.load_streams, seconds=args.load_seconds)
        print(f"load: {load['violations'] or 'ok'}", flush=True)

    everything = runs + [load]
    fuzz_unaccounted = abs(fuzz["received"] - fuzz["results"] - fuzz["rejected"]) + (
        args.fuzz - fuzz["received"]
    )
    unaccounted = sum(r.get("unaccounted", 0) for r in everything) + fuzz_unaccounted
    in_window = [r for r in everything if r.get("name") != "key_revocation"]
    reconnects = [r["reconnect_s"] for r in runs if r.get("reconnect_s") is not None]
    growth = {k: g["rss_growth"] for k, g in load["resources"].items()}
    survived = sum(not r["violations"] and r.get("unaccounted", 0) == 0 and "unaccounted" in r for r in runs)
    summary = {
        "frames_unaccounted": unaccounted,
        "frames_lost_in_window": sum(r.get("lost_in_window", 0) for r in in_window),
        "duplicate_results": sum(r.get("duplicate_results", 0) for r in everything),
        "faults_survived": survived,
        "faults_total": len(runs),
        "max_reconnect_s": round(max(reconnects), 3) if reconnects else None,
        "messages_fuzzed": fuzz["received"] if not fuzz["violations"] else 0,
        "memory_growth": round(max(growth.values()), 4),
        "fd_growth": max(g["fds_end"] - g["fds_start"] for g in load["resources"].values()),
        "policy": "reliable (the default): window 256 frames / 30 s, drain 5 s",
        "frames_captured": sum(r.get("captured", 0) for r in everything),
        "frames_delivered": sum(r.get("delivered", 0) for r in everything),
        "frames_resent": sum(r.get("resent", 0) for r in everything),
        "given_up_after_revocation": sum(
            r.get("lost_in_window", 0) + r.get("dropped", {}).get("shutdown", 0)
            for r in runs
            if r.get("name") == "key_revocation"
        ),  # fmt: skip
        "unaccounted_by_scenario": {
            name: sum(r.get("unaccounted", 0) for r in runs if r.get("name") == name) for name, _, _ in faults
        },
        "dropped_by_reason": _sum_dropped(everything),
        "violations": [f"{r['scenario']}: {v}" for r in everything + [fuzz] for v in r["violations"]],
        "seconds": round(time.time() - t0, 1),
    }
    params = vars(args) | {"netns": netns}
    path = write_result("soak", summary, params, {"faults": runs, "fuzz": fuzz, "load": load}, out=args.out)
    print(f"wrote {path}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
