"""ZeroMQ plumbing shared by the edge sender and the receiver: CURVE keys and socket options.

Keys are ZeroMQ certificate files (``zmq.auth``): ``NAME.key`` (public) and ``NAME.key_secret``
(public + secret). A receiver holds a server key pair and an *allow folder* of client public keys;
an edge box holds its own client key pair and the server's public key. ``edge-runtime keys``
(:mod:`edge_runtime.keys`) generates and lists them; enrolling an edge box is copying its ``.key``
into the allow folder, revoking it is removing the file: :class:`AllowList` re-reads the folder
while the receiver runs. A file that does not parse is refused alone (logged, counted in
``AllowList.bad``), never taking the other keys with it. An optional ``streams.toml`` in the
folder binds stream ids to key names (``"cam-lobby" = "box1"``); streams it does not name are
bound to the first key that uses them (:mod:`edge_runtime.receiver.identity`).

Every timeout is a named value here (milliseconds), set on purpose on every socket we create,
never left to a ZeroMQ default that blocks forever.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from edge_runtime.errors import TransportError

__all__ = [
    "SocketTimeouts",
    "generate_keypair",
    "load_keypair",
    "load_public_key",
    "configure_client_curve",
    "configure_server_curve",
    "start_authenticator",
    "apply_timeouts",
    "check_z85_key",
    "AllowList",
    "STREAMS_FILE",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SocketTimeouts:
    """Socket timing, all in milliseconds; see ZeroMQ's zmq_setsockopt for each option."""

    send_timeout_ms: int = 100  # a send that cannot queue within this is dropped, never blocks
    recv_timeout_ms: int = 500  # a receive loop wakes up at least this often
    linger_ms: int = 500  # at close, unsent messages are kept at most this long
    reconnect_ivl_ms: int = 200  # first reconnect attempt after a drop
    reconnect_ivl_max_ms: int = 5000  # back-off cap for reconnect attempts
    heartbeat_ivl_ms: int = 1000  # ZMTP heartbeats detect a dead peer (e.g. a cut network)
    heartbeat_timeout_ms: int = 3000
    handshake_ivl_ms: int = 5000  # a peer that does not finish the (CURVE) handshake is dropped
    sndhwm: int = 64  # messages queued per peer before sends fail (edge) / block (never used)
    rcvhwm: int = 1024


def apply_timeouts(sock: zmq.Socket, t: SocketTimeouts) -> None:
    sock.setsockopt(zmq.SNDTIMEO, t.send_timeout_ms)
    sock.setsockopt(zmq.RCVTIMEO, t.recv_timeout_ms)
    sock.setsockopt(zmq.LINGER, t.linger_ms)
    sock.setsockopt(zmq.RECONNECT_IVL, t.reconnect_ivl_ms)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, t.reconnect_ivl_max_ms)
    sock.setsockopt(zmq.HEARTBEAT_IVL, t.heartbeat_ivl_ms)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, t.heartbeat_timeout_ms)
    sock.setsockopt(zmq.HANDSHAKE_IVL, t.handshake_ivl_ms)
    sock.setsockopt(zmq.SNDHWM, t.sndhwm)
    sock.setsockopt(zmq.RCVHWM, t.rcvhwm)


def apply_server_options(sock: zmq.Socket, t: SocketTimeouts) -> None:
    """The receiver's public socket: :func:`apply_timeouts` without ZMTP heartbeats of its own.

    libzmq 4.3.5 (pyzmq 27's bundled library) aborts the whole process with ``Assertion failed:
    !_io_error (src/stream_engine_base.cpp:310)`` when a heartbeat timer fires on a connection whose
    input was stopped at the receive high-water mark and whose peer has gone (zeromq/libzmq#4364,
    #4841; not fixed upstream): ``benchmarks/soak.py --fuzz 10000`` hit it within 5 s every run.
    So the receiver sends no PINGs; it still answers the edge's PINGs, and TCP keepalive catches an
    edge that vanished without a word. (An edge-side ``HEARTBEAT_TTL`` was tried and dropped: a
    receiver whose input sits at the high-water mark for longer than the TTL cut the edge off, and
    the fuzz run lost 9 of 10 messages.)
    """
    apply_timeouts(sock, t)
    sock.setsockopt(zmq.HEARTBEAT_IVL, 0)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, 30)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, 5)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, 3)


def generate_keypair(folder: str | Path, name: str) -> tuple[Path, Path]:
    """Create ``folder/NAME.key`` and ``folder/NAME.key_secret`` (mode 0600); refuses to overwrite."""
    if not name or "/" in name or name.startswith("."):
        raise TransportError(f"key name must be a plain file name, got {name!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = folder / f"{name}.key", folder / f"{name}.key_secret"
    if public.exists() or secret.exists():
        raise TransportError(f"key pair {name!r} already exists in {folder}; remove it first to replace it")
    pub, sec = zmq.auth.create_certificates(str(folder), name)
    os.chmod(sec, 0o600)
    return Path(pub), Path(sec)


def check_z85_key(key: bytes | None, what: str, path: Path) -> bytes:
    """A CURVE key as ZeroMQ wants it: 40 characters of Z85 that decode to 32 bytes."""
    if not key or len(key) != 40:
        raise TransportError(
            f"{path}: {what} must be 40 Z85 characters, got {len(key or b'')}; "
            "is this a key file made by `edge-runtime keys new`?"
        )
    try:
        z85.decode(key)
    except (ValueError, KeyError, TypeError, IndexError):
        raise TransportError(f"{path}: {what} is not valid Z85") from None
    return key


def _read_certificate(path: Path) -> tuple[bytes, bytes | None]:
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise TransportError(f"cannot read key file {path}: {e}") from None
    return check_z85_key(public, "the public key", path), secret


def load_keypair(secret_file: str | Path) -> tuple[bytes, bytes]:
    """``(public, secret)`` from a ``.key_secret`` file."""
    path = Path(secret_file)
    if not path.is_file():
        raise TransportError(
            f"secret key file {path} does not exist; create one with `edge-runtime keys new`"
        )
    public, secret = _read_certificate(path)
    if not secret:
        raise TransportError(
            f"{path} holds no secret key (a public .key file was given where a .key_secret is needed)"
        )
    return public, check_z85_key(secret, "the secret key", path)


def load_public_key(public_file: str | Path) -> bytes:
    path = Path(public_file)
    if not path.is_file():
        raise TransportError(f"public key file {path} does not exist")
    return _read_certificate(path)[0]


def configure_client_curve(sock: zmq.Socket, client_secret_file, server_public_file) -> None:
    """Make ``sock`` a CURVE client: own key pair + the server's public key (before connect)."""
    sock.curve_publickey, sock.curve_secretkey = load_keypair(client_secret_file)
    sock.curve_serverkey = load_public_key(server_public_file)


def configure_server_curve(sock: zmq.Socket, server_secret_file) -> None:
    """Make ``sock`` a CURVE server (before bind); pair with :func:`start_authenticator`."""
    sock.curve_publickey, sock.curve_secretkey = load_keypair(server_secret_file)
    sock.curve_server = True


STREAMS_FILE = "streams.toml"


class AllowList:
    """The enrolled client keys of an allow folder, re-read while running.

    ``keys``: Z85 public key -> key name (file stem). ``bad``: file name -> why it was refused.
    ``streams``: stream id -> key name from ``streams.toml`` (optional). :meth:`refresh` re-reads
    the folder when a file was added, removed or changed (cheap to call often); ZAP asks
    :meth:`callback` for every handshake, and the receiver asks :meth:`name_of` for every message,
    so a revoked key is refused on the next message, not only on the next connection.
    """

    def __init__(self, folder: str | Path, *, check_every_s: float = 1.0) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise TransportError(
                f"allow folder {self.folder} does not exist; put enrolled edge boxes' .key files there"
            )
        self.check_every_s = check_every_s
        self.keys: dict[bytes, str] = {}
        self.bad: dict[str, str] = {}
        self.streams: dict[str, str] = {}
        self.reloads = 0
        self._sig: tuple | None = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.refresh(force=True)

    def _signature(self) -> tuple:
        out = []
        try:
            for e in os.scandir(self.folder):
                if e.name.endswith(".key") or e.name == STREAMS_FILE:
                    try:
                        st = e.stat()
                    except OSError:
                        continue
                    out.append((e.name, st.st_mtime_ns, st.st_size))
        except OSError as e:
            log.error("allow folder %s cannot be read: %s", self.folder, e)
        return tuple(sorted(out))

    def refresh(self, force: bool = False) -> bool:
        """Re-read the folder if it changed (at most every ``check_every_s``); True if it did."""
        now = time.monotonic()
        if not force and now - self._checked < self.check_every_s:
            return False
        with self._lock:
            self._checked = now
            sig = self._signature()
            if sig == self._sig and not force:
                return False
            self._sig = sig
            keys, bad = {}, {}
            for path in sorted(self.folder.glob("*.key")):
                try:
                    public, _ = _read_certificate(path)
                except TransportError as e:
                    bad[path.name] = str(e)
                    continue
                keys[public] = path.stem
            streams = self._read_streams(set(keys.values()), bad)
            for name, why in bad.items():
                if self.bad.get(name) != why:
                    log.error("allow folder: refusing %s alone (the other keys stay enrolled): %s", name, why)
            added = set(keys.values()) - set(self.keys.values())
            removed = set(self.keys.values()) - set(keys.values())
            if self.reloads and (added or removed):
                log.warning("allow folder re-read: enrolled %s, revoked %s",
                            sorted(added) or "none", sorted(removed) or "none")  # fmt: skip
            self.keys, self.bad, self.streams = keys, bad, streams
            self.reloads += 1
            if not keys:
                log.warning(
                    "allow folder %s holds no usable client keys: every edge box is refused", self.folder
                )
            return True

    def _read_streams(self, names: set[str], bad: dict[str, str]) -> dict[str, str]:
        path = self.folder / STREAMS_FILE
        if not path.is_file():
            return {}
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            bad[STREAMS_FILE] = f"cannot read {path}: {e}"
            return {}
        table = data.get("streams", data)
        out = {}
        for sid, name in table.items():
            if not isinstance(name, str):
                bad[STREAMS_FILE] = f"{path}: stream {sid!r} must map to a key name, got {name!r}"
                continue
            if name not in names:
                log.warning("%s: stream %r is bound to key %r, which is not enrolled", path, sid, name)
            out[str(sid)] = name
        return out

    def name_of(self, z85_key: bytes | str) -> str | None:
        """The key name of an enrolled public key, or None (not enrolled / revoked)."""
        if isinstance(z85_key, str):
            z85_key = z85_key.encode("ascii", "replace")
        return self.keys.get(z85_key)

    def callback(self, domain: str, z85_key: bytes) -> bool:
        """pyzmq's CURVE credentials-provider hook: admit enrolled keys only."""
        self.refresh()
        ok = z85_key in self.keys
        if not ok:
            log.warning(
                "refused a CURVE handshake from a key that is not enrolled: %s",
                z85_key.decode("ascii", "replace"),
            )
        return ok


def start_authenticator(ctx: zmq.Context, allow: str | Path | AllowList) -> ThreadAuthenticator:
    """ZAP handler that admits only clients whose public key is in the allow folder (``*.key``),
    re-read while running (:class:`AllowList`). Messages then carry the client's Z85 public key as
    their ``User-Id`` property."""
    allow = allow if isinstance(allow, AllowList) else AllowList(allow)
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("edge_runtime.auth"))
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=allow)
    return auth
