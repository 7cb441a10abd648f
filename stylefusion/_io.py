"""One way to write a file: whole or not at all.

Every file StyleFusion writes (checkpoints, reports, manifests, cache entries, crops sidecars)
goes through :func:`atomic_write` or :func:`atomic_writer`: the data goes to a temporary file in the
same folder, is flushed to disk, and replaces the target with ``os.replace``. A reader (or a rerun
after a crash or a full disk) sees the old file or the whole new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

#: Mode of the files we write: checkpoints and reports are meant to be shared (mkstemp makes 0600).
FILE_MODE = 0o644


def fsync_dir(folder: str | Path) -> None:
    """Persist a rename in ``folder`` (best effort: not every platform or filesystem supports it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def describe_os_error(exc: OSError) -> str:
    """A short reason for a failed write: "disk full" for ENOSPC, else the OS's words."""
    return "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: str = "w", *, fsync: bool = True,
                  encoding: str | None = "utf-8", newline: str | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path``.

    On any exception the temporary file is removed, ``path`` is untouched and the exception
    propagates. ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes). The parent folder is created.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_writer mode must be 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        kwargs = {} if mode == "wb" else {"encoding": encoding, "newline": newline}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(path.parent)


def atomic_write(path: str | Path, data: str | bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` whole or not at all; returns ``path``."""
    with atomic_writer(path, "wb" if isinstance(data, bytes) else "w", fsync=fsync) as f:
        f.write(data)
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """A temporary path beside ``path`` for a library that writes files itself (safetensors, PIL).

    The caller writes the file at the yielded path; on a clean exit it is flushed and replaces
    ``path``. On an exception it is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)
