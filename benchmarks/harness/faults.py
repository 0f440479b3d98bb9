"""Process harness for the fault tests (tests/faults) and benchmarks/soak.py.

Everything runs as real processes, so a SIGKILL is a real one:

- :class:`RxProc`: ``python -m edge_runtime.cli receive ...`` (or ``slow_rx.py``, the same CLI
  with a slower back half), optionally inside a network namespace;
- :class:`EdgeProc`: ``edge_driver.py``, the real edge loop with instrumentation;
- :class:`RelayProc`: a TCP relay to cut the network by stopping it (when there is no netns);
- :class:`Netns`: a network namespace joined to this one by a veth pair; ``cut()`` / ``restore()``
  set the link down / up (needs root and ``ip netns``; :func:`netns_available` says);
- :class:`Sampler`: RSS (``VmRSS`` of /proc/PID/status) and open descriptors (/proc/PID/fd).

Bounds the tests hold the edge to, stated once here (docs/edge.md's promises, with slack for a
shared 2-core CI machine):
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HELPERS = Path(__file__).resolve().parent
REPO = HELPERS.parents[1]

#: ``Sender.send`` is NOBLOCK: it never waits for the network. A blocking send would wait for
#: the peer (seconds, or forever); this bound leaves room for the scheduler of a shared 2-core
#: machine (a 0.14 s NOBLOCK send was seen under load average 5).
SEND_BOUND_S = 0.25
#: Between two turns of the edge loop (0.25 s feed timeout + one frame's work on a busy machine).
LOOP_GAP_BOUND_S = 1.5
#: After the peer is reachable again, the first message is queued within the sender's reconnect
#: back-off cap (``sender.reconnect_ivl_max_ms``) plus this slack (handshake, a busy machine).
RECONNECT_SLACK_S = 2.0
#: After an unplugged source comes back, frames flow within ``source.retry_max_s`` plus this.
SOURCE_SLACK_S = 1.0

_SUMMARY = re.compile(
    r"received (\d+), results (\d+) \((\d+) empty\), rejected (\d+) (\{.*\}), sequence gaps (\d+)"
    r"(?:, lost (\d+), duplicates (\d+))?"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    """The environment for child processes: PYTHONPATH entries made absolute (tests run with
    ``PYTHONPATH=.`` in a checkout, and children run from the repository root)."""
    env = os.environ.copy()
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(
            str(Path(p).resolve()) for p in env["PYTHONPATH"].split(os.pathsep)
        )
    env.setdefault("NUMBA_CACHE_DIR", str(Path.home() / ".cache" / "edge-runtime-numba"))
    return env


class _Proc:
    """A child process whose stdout lines are collected by a thread; stderr goes to ``log``."""

    def __init__(self, cmd: list[str], log: Path) -> None:
        self.cmd = cmd
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in _reap
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=self._log, env=_env(), cwd=REPO, text=True, bufsize=1
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_line(self, pred, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                if pred(line):
                    return line
            if self.proc.poll() is not None:
                self._reader.join(2)
                for line in list(self.lines):
                    if pred(line):
                        return line
                raise RuntimeError(f"{self.cmd[:4]} exited with {self.proc.returncode}: {self.tail()}")
            time.sleep(0.02)
        raise TimeoutError(f"{self.cmd[:4]}: no expected line within {timeout} s: {self.tail()}")

    def tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self._reap(10)

    def _reap(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(10)
        self._reader.join(5)
        if not self._reader.is_alive():
            self.proc.stdout.close()
        self._log.close()
        return rc


class RxProc(_Proc):
    """``edge-runtime receive`` in its own process, results to ``NAME.jsonl``."""

    def __init__(self, bind: str, workdir: Path, name: str, *, slow_ms: float = 0, netns: str | None = None,
                 extra: tuple[str, ...] = (), jsonl: str | None = None) -> None:  # fmt: skip
        # a restarted receiver (systemd) writes to the same file and reads it back at start
        self.jsonl = Path(workdir) / f"{jsonl or name}.jsonl"
        args = ["receive", "--bind", bind, "--jsonl", str(self.jsonl), "--threads", "1", *extra]
        if slow_ms:
            cmd = [sys.executable, str(HELPERS / "slow_rx.py"), str(slow_ms), *args]
        else:
            cmd = [sys.executable, "-m", "edge_runtime.cli", *args]
        if netns:
            cmd = ["ip", "netns", "exec", netns, *cmd]
        super().__init__(cmd, Path(workdir) / f"{name}.log")
        self.ready_at: float | None = None

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Wall time at which the receiver said it was bound and serving."""
        self.wait_line(lambda s: s.startswith("receiving on"), timeout)
        self.ready_at = time.time()
        return self.ready_at

    def stop(self, timeout: float = 60.0) -> dict:
        """SIGTERM, wait, and return the receiver's own accounting from its summary line."""
        self.signal(signal.SIGTERM)
        rc = self._reap(timeout)
        for line in reversed(self.lines):
            m = _SUMMARY.search(line)
            if m:
                rec, res, empty, rej, reasons, gaps, lost, dup = m.groups()
                return {
                    "rc": rc, "received": int(rec), "results": int(res), "empty": int(empty),
                    "rejected": int(rej), "reasons": eval(reasons, {}),  # noqa: S307 - a dict repr we printed
                    "gaps": int(gaps), "lost": int(lost or 0), "duplicates": int(dup or 0),
                }  # fmt: skip
        raise RuntimeError(f"receiver printed no summary (rc {rc}): {self.lines[-3:]} {self.tail()}")

    def results(self) -> list[dict]:
        """Every complete JSON line it wrote (rotated files included)."""
        out = []
        for p in sorted(self.jsonl.parent.glob(self.jsonl.name + "*")):
            if p.name.endswith(".tmp"):
                continue
            for line in p.read_bytes().splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a torn last line of a killed process
        return out


class EdgeProc(_Proc):
    """``edge_driver.py``: the real edge loop for ``seconds``; :meth:`wait` returns its report."""

    def __init__(self, endpoints: list[str], workdir: Path, name: str, *, seconds: float, fps: float = 20.0,
                 outage: str = "", sets: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.out = Path(workdir) / f"{name}.json"
        cmd = [sys.executable, str(HELPERS / "edge_driver.py"), "--out", str(self.out), "--stream", name,
               "--seconds", str(seconds), "--fps", str(fps)]  # fmt: skip
        for ep in endpoints:
            cmd += ["--endpoint", ep]
        if outage:
            cmd += ["--outage", outage]
        for s in sets:
            cmd += ["--set", s]
        super().__init__(cmd, Path(workdir) / f"{name}.log")
        self.started_at: float | None = None

    def wait_ready(self, timeout: float = 90.0) -> float:
        line = self.wait_line(lambda s: s.startswith('{"ready"'), timeout)
        self.started_at = json.loads(line)["ready"]
        return self.started_at

    def wait(self, timeout: float = 120.0) -> dict:
        rc = self._reap(timeout)
        if rc != 0 or not self.out.is_file():
            raise RuntimeError(f"edge driver failed (rc {rc}): {self.tail()}")
        return json.loads(self.out.read_text())


class RelayProc(_Proc):
    def __init__(self, port: int, target: str, workdir: Path, name: str = "relay") -> None:
        super().__init__(
            [sys.executable, str(HELPERS / "relay.py"), str(port), target], Path(workdir) / f"{name}.log"
        )
        self.wait_line(lambda s: s == "ready", 30)


# ---- network namespaces ---------------------------------------------------------------------


def netns_available() -> bool:
    """Root and a working ``ip netns`` (creates and deletes a scratch namespace)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"erft{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ok


class Netns:
    """A namespace at 10.213.N.2 reached from here at 10.213.N.1 over a veth pair."""

    def __init__(self, index: int = 0) -> None:
        n = (os.getpid() + index) % 250 + 1
        self.name = f"erf{os.getpid()}_{index}"
        self.host_if, self.ns_if = f"erfh{n}", f"erfn{n}"
        self.host_ip, self.ns_ip = f"10.213.{n}.1", f"10.213.{n}.2"
        for cmd in (
            f"ip netns add {self.name}",
            f"ip link add {self.host_if} type veth peer name {self.ns_if}",
            f"ip link set {self.ns_if} netns {self.name}",
            f"ip addr add {self.host_ip}/30 dev {self.host_if}",
            f"ip link set {self.host_if} up",
            f"ip -n {self.name} addr add {self.ns_ip}/30 dev {self.ns_if}",
            f"ip -n {self.name} link set {self.ns_if} up",
            f"ip -n {self.name} link set lo up",
        ):
            self._ip(cmd)

    @staticmethod
    def _ip(cmd: str) -> None:
        r = subprocess.run(cmd.split(), capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"{cmd}: {r.stderr.strip()}")

    def cut(self) -> None:
        self._ip(f"ip link set {self.host_if} down")

    def restore(self) -> None:
        self._ip(f"ip link set {self.host_if} up")

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


# ---- resources ------------------------------------------------------------------------------


def proc_usage(pid: int) -> tuple[int, int]:
    """(RSS in KiB from /proc/PID/status, open file descriptors from /proc/PID/fd)."""
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
                break
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class Sampler:
    """Samples :func:`proc_usage` of some processes every ``interval_s`` in a thread."""

    def __init__(self, pids: dict[str, int], interval_s: float = 0.5) -> None:
        self.pids = pids
        self.interval_s = interval_s
        self.samples: dict[str, list[tuple[float, int, int]]] = {k: [] for k in pids}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for k, pid in self.pids.items():
                try:
                    rss, fds = proc_usage(pid)
                except (OSError, ValueError):
                    continue
                self.samples[k].append((now, rss, fds))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Sampler:
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join(5)

    def growth(self, name: str, skip: float = 0.25) -> dict:
        """RSS and fd change from the start to the end of the run, after the first ``skip`` of it
        (warm-up: first batches, ONNX Runtime arenas, ZeroMQ buffers): the mean of the first and of
        the last quarter of the remaining samples."""
        s = self.samples[name]
        s = s[int(len(s) * skip) :]
        if len(s) < 8:
            raise RuntimeError(f"{name}: only {len(s)} samples")
        q = max(1, len(s) // 4)
        head, tail = s[:q], s[-q:]
        rss0 = sum(x[1] for x in head) / q
        rss1 = sum(x[1] for x in tail) / q
        return {
            "rss_kib_start": round(rss0),
            "rss_kib_end": round(rss1),
            "rss_growth": (rss1 - rss0) / rss0,
            "rss_kib_max": max(x[1] for x in s),
            "fds_start": head[0][2],
            "fds_end": tail[-1][2],
            "fds_max": max(x[2] for x in s),
            "samples": len(s),
        }


# ---- reading the reports ----------------------------------------------------------------------


def first_ok_send_after(report: dict, t: float) -> float | None:
    """Wall time of the edge's first queued message at or after ``t`` (None: never)."""
    for t0, t1, ok, _n in report["send_runs"]:
        if ok and t1 >= t:
            return max(t0, t)
    return None


def edge_violations(report: dict) -> list[str]:
    """What the edge broke of its promises: accounting, a blocking send, a stalled loop, errors."""
    s = report["stats"]
    bad = []
    if not s["accounted"] or s["accounting_error"]:
        done = "delivered" if s["policy"] == "reliable" else "sent"
        bad.append(f"captured {s['captured']} != {done} {s[done]} + dropped {s['dropped']}")
    if report["max_send_s"] > SEND_BOUND_S:
        bad.append(f"a send took {report['max_send_s']:.3f} s > {SEND_BOUND_S} s")
    if report["max_loop_gap_s"] > LOOP_GAP_BOUND_S:
        bad.append(f"the loop stalled {report['max_loop_gap_s']:.3f} s > {LOOP_GAP_BOUND_S} s")
    if s["dropped"].get("error"):
        bad.append(f"{s['dropped']['error']} frames failed to process")
    return bad


def reconnect_bound_s(report: dict) -> float:
    return report["config"]["reconnect_ivl_max_ms"] / 1e3 + RECONNECT_SLACK_S


def seq_duplicates(results: list[dict]) -> int:
    """Results given twice for one frame, (stream, epoch, seq)."""
    seen = set()
    dup = 0
    for r in results:
        k = (r["stream"], r.get("epoch", 0), r["seq"])
        dup += k in seen
        seen.add(k)
    return dup


def unique_results(results: list[dict], stream: str, epoch: int) -> int:
    return len({r["seq"] for r in results if r["stream"] == stream and r.get("epoch", 0) == epoch})
