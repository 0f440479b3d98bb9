"""A TCP relay (run as a script): ``relay.py LISTEN_PORT TARGET_HOST:PORT``.

The fault tests put it between an edge and a receiver and cut the "network" by stopping it:
SIGSTOP (packets stop flowing, connections stay open: a cable pulled) and SIGCONT, or SIGKILL
and a new relay (connections reset: a middlebox restarted). Used where network namespaces are
not available (not root); prints ``ready`` once listening.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(port: int, target: str) -> None:
    host, tport = target.rsplit(":", 1)

    async def handle(r1: asyncio.StreamReader, w1: asyncio.StreamWriter) -> None:
        try:
            r2, w2 = await asyncio.open_connection(host, int(tport))
        except OSError:
            w1.close()
            return
        await asyncio.gather(_pipe(r1, w2), _pipe(r2, w1))

    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
