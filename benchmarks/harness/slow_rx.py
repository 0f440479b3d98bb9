"""``slow_rx.py DELAY_MS receive ...``: the real ``edge-runtime receive`` CLI, with every back-half
batch taking DELAY_MS longer: a receiver slower than its edge boxes (run as a script)."""

from __future__ import annotations

import sys
import time

from edge_runtime import cli
from edge_runtime.receiver.engine import Engine

if __name__ == "__main__":
    delay = float(sys.argv[1]) / 1e3
    run = Engine._run

    def slow_run(self, model_id):
        time.sleep(delay)
        return run(self, model_id)

    Engine._run = slow_run
    sys.exit(cli.main(sys.argv[2:]))
