"""Atomic replacement of files and folders: a crash mid-write leaves the previous version readable.

- :func:`write_bytes` / :func:`write_text`: write a temporary file beside the target, ``fsync`` it,
  ``os.replace`` it over the target, ``fsync`` the folder.
- :func:`replace_dir`: move a folder built beside the target over it. On Linux the two folders are
  swapped in one step (``renameat2(RENAME_EXCHANGE)``) and the old one removed afterwards; where that
  call does not exist, the old folder is renamed aside first and :func:`recover_dir` (called by
  :func:`~edge_runtime.bundle.load_bundle`) puts it back if a crash came between the two renames.

Used for bundles (models/export.py, models/split.py), checkpoints (models/train.py), zstd
dictionaries and benchmark results; tested by killing writers mid-write (tests/faults/test_atomic.py).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["write_bytes", "write_text", "replace_dir", "recover_dir", "aside_name"]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename is atomic all the same
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically (readers see the old or the new file, whole)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_text(path: str | Path, text: str, mode: int = 0o644) -> None:
    write_bytes(path, text.encode(), mode)


def aside_name(target: Path) -> Path:
    """Where :func:`replace_dir` keeps the previous folder while it swaps without RENAME_EXCHANGE."""
    return target.with_name(f".{target.name}.old")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2); False where the call is not available."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (38, 22, 95):  # ENOSYS, EINVAL (file system without exchange), EOPNOTSUPP
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(built: str | Path, target: str | Path) -> None:
    """Move the folder ``built`` (on the same file system, e.g. a temporary folder beside
    ``target``) to ``target``, replacing any previous folder there atomically."""
    built, target = Path(built), Path(target)
    for p in built.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(built)
    if not target.exists():
        os.rename(built, target)
    elif _exchange(built, target):
        shutil.rmtree(built)  # now the previous version
    else:
        old = aside_name(target)
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
        os.rename(built, target)  # a crash between the two renames: recover_dir puts old back
        shutil.rmtree(old)
    _fsync_dir(target.parent)


def recover_dir(target: str | Path) -> bool:
    """After a crash between :func:`replace_dir`'s two renames, put the previous folder back."""
    target = Path(target)
    old = aside_name(target)
    if not target.exists() and old.is_dir():
        os.rename(old, target)
        return True
    return False
