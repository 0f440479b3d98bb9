"""Tests that need something outside pip (a Debian package, a system tool).

Locally a missing one skips the test with a reason; in CI (``CI=true``, which ``.ci/run`` runs
under, after ``deploy/system-packages.sh`` installed everything) it fails the test, so a broken
install step cannot hide behind a quiet skip.
"""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["in_ci", "require", "require_executable"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def require(ok: bool, reason: str) -> None:
    """Skip (locally) or fail (in CI) unless ``ok``."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"CI=true and {reason} (deploy/system-packages.sh installs it)", pytrace=False)
    pytest.skip(reason)


def require_executable(*candidates: str) -> str:
    """The first of ``candidates`` (names on PATH or absolute paths) that is executable."""
    for c in candidates:
        exe = shutil.which(c) or (c if os.path.isabs(c) and os.access(c, os.X_OK) else None)
        if exe:
            return exe
    require(False, f"none of {', '.join(candidates)} is installed")
    raise AssertionError("unreachable")
