"""The receiver's seam to the shared metrics endpoint and systemd notification.

``edge_runtime.metrics`` (Prometheus registry + HTTP endpoint) and ``edge_runtime.systemd``
(sd_notify) are being written on the edge branch. Until they are merged, this module holds a minimal
private version of the two things the receiver needs; after the merge only this file changes.

    serve_metrics(host, port, render) -> server with .port and .close()
    notify(state) -> bool            e.g. "READY=1", "WATCHDOG=1", "STOPPING=1"
    watchdog_interval_s() -> float | None   half of $WATCHDOG_USEC, None when no watchdog is set
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from edge_runtime.errors import ConfigError

__all__ = ["serve_metrics", "notify", "watchdog_interval_s", "MetricsServer"]

log = logging.getLogger(__name__)

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsServer:
    """``GET /metrics`` in Prometheus text format from ``render()``, on a daemon thread."""

    def __init__(self, host: str, port: int, render: Callable[[], str]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404)
                    return
                body = render().encode()
                self.send_response(200)
                self.send_header("Content-Type", _CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt, *args) -> None:
                log.debug("metrics: " + fmt, *args)

        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {e}") from e
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def serve_metrics(host: str, port: int, render: Callable[[], str]) -> MetricsServer:
    return MetricsServer(host, port, render)


def notify(state: str) -> bool:
    """Send ``state`` to systemd over ``$NOTIFY_SOCKET``; ``False`` when not run by systemd."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]  # abstract socket namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError as e:
        log.warning("sd_notify %r to %s failed: %s", state, addr, e)
        return False
    return True


def watchdog_interval_s() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(0.05, int(usec) / 2e6)
    except ValueError:
        return None
