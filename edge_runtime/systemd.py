"""A tiny ``sd_notify`` for ``Type=notify`` services, standard library only.

systemd passes ``NOTIFY_SOCKET`` (a unix datagram socket path, or ``@name`` for the abstract
namespace) and, with ``WatchdogSec=``, ``WATCHDOG_USEC``. Outside systemd every call is a no-op
that returns False, so the same code runs in a terminal and in tests::

    notifier = Notifier()          # reads the environment once
    notifier.ready("processing")   # READY=1
    if notifier.watchdog_due(): notifier.watchdog()   # WATCHDOG=1, at half the interval
    notifier.stopping()            # STOPPING=1
"""

from __future__ import annotations

import logging
import os
import socket
import time

__all__ = ["Notifier", "notify"]

log = logging.getLogger(__name__)


def notify(state: str, *, socket_path: str | None = None) -> bool:
    """Send ``state`` (e.g. ``"READY=1\\nSTATUS=up"``) to systemd; False when not under systemd."""
    path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET", "")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(path)
            s.sendall(state.encode())
    except OSError as e:  # systemd gone or socket not writable: a lost notification, not a crash
        log.warning("sd_notify %r to %s failed: %s", state.split("\n")[0], path, e)
        return False
    return True


class Notifier:
    """Notifications for one service; the watchdog interval comes from ``WATCHDOG_USEC``."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.socket_path = env.get("NOTIFY_SOCKET", "")
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_s: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._last_ping = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.socket_path)

    def _send(self, state: str) -> bool:
        return notify(state, socket_path=self.socket_path) if self.socket_path else False

    def ready(self, status: str = "") -> bool:
        return self._send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def status(self, status: str) -> bool:
        return self._send(f"STATUS={status}")

    def stopping(self) -> bool:
        return self._send("STOPPING=1")

    def watchdog_due(self, now: float | None = None) -> bool:
        """True when half the watchdog interval has passed since the last ping (systemd's advice)."""
        if self.watchdog_s is None:
            return False
        now = time.monotonic() if now is None else now
        return now - self._last_ping >= self.watchdog_s / 2

    def watchdog(self) -> bool:
        self._last_ping = time.monotonic()
        return self._send("WATCHDOG=1")
