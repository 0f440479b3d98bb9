"""A test that needs a system package skips locally but fails in CI (CI=true)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("ci", "outcome"), [("true", "1 failed"), ("", "1 skipped")])
def test_missing_system_package_fails_in_ci(tmp_path, ci, outcome):
    probe = tmp_path / "test_probe.py"
    probe.write_text(
        "import sys\n"
        f"sys.path.append({str(TESTS)!r})\n"
        "from helpers.system import require_executable\n"
        "def test_needs_it():\n"
        "    require_executable('no-such-browser-here', '/nonexistent/chromium')\n"
    )
    env = {**os.environ, "CI": ci}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(probe)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert outcome in r.stdout, r.stdout + r.stderr
    if ci:
        assert "deploy/system-packages.sh" in r.stdout
