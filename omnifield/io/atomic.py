"""Atomic file writes: write a temp file next to the target, fsync, rename.

A write that the file system refuses (disk full, quota, read-only or unwritable folder) is an
:class:`~omnifield.errors.OmnifieldError` naming the folder; the previous file stays as it was.
"""

from __future__ import annotations

import errno
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from omnifield.errors import OmnifieldError

# errors that say "this folder cannot take the file", not "the program is wrong"
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG, errno.EIO}


def storage_error(target: Path, exc: OSError) -> OmnifieldError:
    """The one-line error for a refused write of ``target``: names the folder and the reason."""
    reason = os.strerror(exc.errno).lower() if exc.errno else str(exc)
    kept = " (the previous file is intact)" if target.exists() else ""
    return OmnifieldError(f"{target.parent}: cannot write {target.name}: {reason}{kept}")


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``target`` atomically.

    On error the temporary file is removed and ``target`` is left untouched; a storage error (disk full,
    unwritable folder, ...) becomes an :class:`OmnifieldError` naming the folder.
    """
    target = Path(target)
    tmp_path: Path | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; outputs get ordinary permissions
        os.replace(tmp_path, target)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        raise storage_error(target, exc) from None
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def write_bytes_atomic(target: str | Path, *chunks: bytes | memoryview) -> None:
    """Write the concatenated ``chunks`` to ``target`` atomically."""
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)


def write_text_atomic(target: str | Path, text: str) -> None:
    """Write ``text`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def remove_stale_temporaries(target: str | Path) -> int:
    """Delete temporary files that an interrupted :func:`atomic_path` write of ``target`` left behind.

    Returns how many were removed. Only call it while no other process writes ``target``.
    """
    target = Path(target)
    removed = 0
    for stale in target.parent.glob(f".{target.name}.*.tmp*"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed
