"""ZeroMQ plumbing shared by the edge sender and the receiver: CURVE keys and socket options.

Keys are ZeroMQ certificate files (``zmq.auth``): ``NAME.key`` (public) and ``NAME.key_secret``
(public + secret). A receiver holds a server key pair and an *allow folder* of client public keys;
an edge box holds its own client key pair and the server's public key. ``edge-runtime keys``
generates and lists them; enrolling an edge box is copying its ``.key`` into the allow folder.

Every timeout is a named value here (milliseconds), set on purpose on every socket we create,
never left to a ZeroMQ default that blocks forever.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

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
    "add_arguments",
    "run",
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


def load_keypair(secret_file: str | Path) -> tuple[bytes, bytes]:
    """``(public, secret)`` from a ``.key_secret`` file."""
    path = Path(secret_file)
    if not path.is_file():
        raise TransportError(
            f"secret key file {path} does not exist; create one with `edge-runtime keys new`"
        )
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as e:
        raise TransportError(f"cannot read key file {path}: {e}") from e
    if not secret:
        raise TransportError(
            f"{path} holds no secret key (a public .key file was given where a .key_secret is needed)"
        )
    return public, secret


def load_public_key(public_file: str | Path) -> bytes:
    path = Path(public_file)
    if not path.is_file():
        raise TransportError(f"public key file {path} does not exist")
    try:
        public, _ = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as e:
        raise TransportError(f"cannot read key file {path}: {e}") from e
    return public


def configure_client_curve(sock: zmq.Socket, client_secret_file, server_public_file) -> None:
    """Make ``sock`` a CURVE client: own key pair + the server's public key (before connect)."""
    sock.curve_publickey, sock.curve_secretkey = load_keypair(client_secret_file)
    sock.curve_serverkey = load_public_key(server_public_file)


def configure_server_curve(sock: zmq.Socket, server_secret_file) -> None:
    """Make ``sock`` a CURVE server (before bind); pair with :func:`start_authenticator`."""
    sock.curve_publickey, sock.curve_secretkey = load_keypair(server_secret_file)
    sock.curve_server = True


def start_authenticator(ctx: zmq.Context, allow_dir: str | Path) -> ThreadAuthenticator:
    """ZAP handler that admits only clients whose public key is in ``allow_dir`` (``*.key``).

    Call ``.configure_curve(domain="*", location=...)`` again (or restart) after enrolling a key.
    """
    allow = Path(allow_dir)
    if not allow.is_dir():
        raise TransportError(
            f"allow folder {allow} does not exist; put enrolled edge boxes' .key files there"
        )
    if not any(allow.glob("*.key")):
        log.warning("allow folder %s holds no client keys: every edge box will be refused", allow)
    auth = ThreadAuthenticator(ctx, log=logging.getLogger("edge_runtime.auth"))
    auth.start()
    auth.configure_curve(domain="*", location=str(allow))
    return auth


# ---- `edge-runtime keys` -------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="keys_command", required=True)
    new = sub.add_parser("new", help="generate a CURVE key pair NAME.key / NAME.key_secret")
    new.add_argument("name", help="e.g. receiver, or the edge box's host name")
    new.add_argument("--dir", default="keys", help="folder to write to (default: %(default)s)")
    ls = sub.add_parser("list", help="list key files with their public keys")
    ls.add_argument("--dir", default="keys", help="folder to list")


def run(args) -> int:
    folder = Path(args.dir)
    if args.keys_command == "new":
        pub, sec = generate_keypair(folder, args.name)
        print(f"public key: {pub}  (give this to the other side; receivers: copy into the allow folder)")  # noqa: T201
        print(f"secret key: {sec}  (keep on this machine, mode 0600)")  # noqa: T201
        return 0
    if not folder.is_dir():
        raise TransportError(f"key folder {folder} does not exist")
    for path in sorted(folder.glob("*.key")) + sorted(folder.glob("*.key_secret")):
        public, secret = zmq.auth.load_certificate(str(path))
        kind = "secret" if secret else "public"
        print(f"{path.name:<32} {kind:<7} {public.decode()}")  # noqa: T201
    return 0
