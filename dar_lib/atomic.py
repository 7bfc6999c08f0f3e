"""Atomic writes: a temporary sibling, fsync, then ``os.replace``, so a name only ever holds a complete file.

The one implementation every module that writes a file or folder in place uses (the artefact
store, the data and image downloads, checkpoint conversion, the rehearsal's stand-ins). A write
that fails or is killed part way leaves the old file (or no file) under the final name, and no
temporary file behind it (a killed process can leave one hidden ``.<name>.*.part`` sibling, which
no reader opens).

Examples:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> atomic_write_bytes(p, b"old")
    >>> try:
    ...     with atomic_writer(p) as fh:
    ...         _ = fh.write(b"half of the new")
    ...         raise OSError("disk full")
    ... except OSError:
    ...     pass
    >>> p.read_bytes()
    b'old'
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import IO, Iterator


def _fsync_path(path: Path) -> None:
    """Flush a file, or every file of a folder, to disk (best effort for folders on odd file systems)."""
    files = [path] if path.is_file() else [p for p in sorted(path.rglob("*")) if p.is_file()]
    for f in files:
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (not possible everywhere, e.g. on Windows: skipped there)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _new_sibling(dest: Path, directory: bool) -> Path:
    """Create a fresh hidden sibling ``.<name>.<pid>.<random>.part`` with the umask's usual permissions
    (``tempfile.mkstemp`` would make it owner-only, and the final file would keep that)."""
    for _ in range(100):
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
        try:
            if directory:
                os.mkdir(tmp)
            else:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"atomic write of {dest}: no free temporary name beside it")


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """A temporary path beside ``dest`` to write; renamed onto ``dest`` when the block ends without error.

    On success the temporary file (or every file of the temporary folder) is fsynced, renamed onto
    ``dest`` with ``os.replace`` (atomic on one file system; hence a sibling, never the system temp
    folder) and the rename is fsynced in the parent folder. On any exception, ``KeyboardInterrupt``
    included, the temporary path is removed and ``dest`` is left as it was.

    Args:
        dest: the final file or folder (its parent folders are created).
        directory: yield an empty temporary *folder* (the block fills it). A folder cannot replace
            a non-empty folder, so when ``dest`` already exists at the end (another process
            finished the same build first) the new one is discarded and ``dest`` kept.

    Yields:
        The temporary path: an empty file (write it by name, e.g. ``save_file(t, tmp)``) or folder.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_sibling(dest, directory)
    try:
        yield tmp
        _fsync_path(tmp)
        if directory and dest.exists():
            return  # another process built it first; the finally clause drops ours
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


@contextlib.contextmanager
def atomic_writer(dest: str | os.PathLike, mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """An open handle on a temporary sibling of ``dest``; ``dest`` gets the bytes only if the block ends without error.

    Args:
        dest: the final file.
        mode: ``"wb"`` (default) or ``"w"`` (text; pass ``encoding=``).
        **open_kwargs: passed to :func:`open`.

    Yields:
        The open file; it is flushed, fsynced and renamed onto ``dest`` after the block (see :func:`atomic_path`).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_writer: mode must be 'wb' or 'w', got {mode!r}")
    with atomic_path(dest) as tmp:
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (:func:`atomic_writer`); the parent folders are created."""
    with atomic_writer(path) as fh:
        fh.write(data)
