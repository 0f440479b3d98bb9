"""``edge-runtime keys``: generate and list CURVE key pairs (the files :mod:`edge_runtime.transport`
loads). ``keys new NAME`` writes ``NAME.key`` / ``NAME.key_secret``; ``keys list`` shows every key
file of a folder with its public key, and names the files that would be refused."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_runtime.errors import TransportError
from edge_runtime.transport import _read_certificate, generate_keypair

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="keys_command", required=True)
    new = sub.add_parser("new", help="generate a CURVE key pair NAME.key / NAME.key_secret")
    new.add_argument("name", help="e.g. receiver, or the edge box's host name")
    new.add_argument("--dir", default="keys", help="folder to write to (default: %(default)s)")
    ls = sub.add_parser("list", help="list key files with their public keys")
    ls.add_argument("--dir", default="keys", help="folder to list (default: %(default)s)")


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
        try:
            public, secret = _read_certificate(path)
        except TransportError as e:
            print(f"{path.name:<32} BAD     {e}")  # noqa: T201
            continue
        kind = "secret" if secret else "public"
        print(f"{path.name:<32} {kind:<7} {public.decode()}")  # noqa: T201
    return 0
