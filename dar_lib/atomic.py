"""Where the product writes: outputs checked before any work, never over an input, and written atomically.

The one implementation every module that writes a file or folder in place uses (the artefact
store, the data and image downloads, checkpoint conversion, the rehearsal's stand-ins, the toy
models, every output path of the ``dar`` command line). A write that fails or is killed part way
leaves the old file (or no file) under the final name, and no temporary file behind it (a killed
process can leave one hidden ``.<name>.*.part`` sibling, which no reader opens); an error says
which file it was writing. What is written gets the permissions the umask gives a new file, as
its neighbours do, whatever the library that filled it chose (safetensors writes owner-only).
:func:`check_output` refuses, before a command starts its work, an output that is one of the
command's inputs or that cannot be created and written.

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
import stat
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


def _umask_modes(tmp: Path) -> None:
    """Give every file (and folder) under ``tmp`` the mode a new one gets from the umask.

    ``tmp`` was created by :func:`_new_sibling` with the umask's mode, so its own mode says what the
    umask allows; files written into it by name may have been made owner-only by their writer.
    """
    mode = stat.S_IMODE(tmp.stat().st_mode)
    if not tmp.is_dir():
        return
    file_mode, dir_mode = mode & 0o666, mode
    for p in tmp.rglob("*"):
        if not p.is_symlink():
            os.chmod(p, dir_mode if p.is_dir() else file_mode)


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, *, directory: bool = False, replace: bool = False) -> Iterator[Path]:
    """A temporary path beside ``dest`` to write; renamed onto ``dest`` when the block ends without error.

    On success the temporary file (or every file of the temporary folder) is fsynced, renamed onto
    ``dest`` with ``os.replace`` (atomic on one file system; hence a sibling, never the system temp
    folder) and the rename is fsynced in the parent folder. On any exception, ``KeyboardInterrupt``
    included, the temporary path is removed and ``dest`` is left as it was.

    Args:
        dest: the final file or folder (its parent folders are created).
        directory: yield an empty temporary *folder* (the block fills it). A folder cannot replace
            a non-empty folder, so when ``dest`` already exists at the end (another process
            finished the same build first) the new one is discarded and ``dest`` kept, unless
            ``replace``.
        replace: with ``directory``, an existing ``dest`` is replaced by the new folder (a retrained
            model): it is renamed aside, the new folder renamed in, then the old one removed (if the
            second rename fails, the old folder is put back).

    Yields:
        The temporary path: an empty file (write it by name, e.g. ``save_file(t, tmp)``) or folder.

    Raises:
        OSError: a write or rename failed; the message names ``dest`` (``[Errno 27] File too large: 'r.csv'``).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_sibling(dest, directory)
    try:
        yield tmp
        _fsync_path(tmp)
        _umask_modes(tmp)
        if directory and dest.exists():
            if not replace:
                return  # another process built it first; the finally clause drops ours
            old = dest.with_name(f".{dest.name}.{os.getpid()}.{secrets.token_hex(4)}.old")
            os.replace(dest, old)
            try:
                os.replace(tmp, dest)
            except BaseException:
                os.replace(old, dest)
                raise
            _remove(old)
        else:
            os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except OSError as exc:
        if exc.errno is None or str(dest) in str(exc):
            raise
        raise OSError(exc.errno, exc.strerror, str(dest)) from exc  # the same subclass, naming the file
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


def _same(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name the same file or folder (after links; either may not exist yet)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.expanduser().resolve() == b.expanduser().resolve()


def check_output(path: str | os.PathLike, flag: str, inputs: dict[str, list] | None = None, *,
                 folder: bool = False) -> Path:
    """Refuse, before any work, an output that is one of the command's inputs or cannot be written.

    The parent folders (or, with ``folder``, the folder itself) are created, and a hidden scratch
    file is created and removed there: a real write, so a read-only mount, a path under a file or
    a missing permission fail now, in one line, and not when the result is saved hours later.

    Args:
        path: the output file (or folder, with ``folder``).
        flag: the option that named it (``--out``), for messages.
        inputs: ``{option: [paths]}`` the command reads; ``path`` may be none of them (same file
            after resolving links). Paths that do not exist are ignored.
        folder: ``path`` is a folder the command writes into (created here).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: ``path`` is one of ``inputs``.
        IsADirectoryError: a file output names a folder.
        NotADirectoryError: a folder output names a file.
        OSError: the folder cannot be created or written (the message names it).

    Examples:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> (d / "dialogues.json").write_text("[]")
        2
        >>> check_output(d / "dialogues.json", "--out", {"--benchmark": [d / "dialogues.json"]})
        Traceback (most recent call last):
        ...
        ValueError: --out ...dialogues.json: is one of this command's inputs (--benchmark); write the output elsewhere
    """
    path = Path(path).expanduser()
    for option, paths in (inputs or {}).items():
        for given in paths:
            if given is not None and Path(given).expanduser().exists() and _same(path, Path(given)):
                raise ValueError(f"{flag} {path}: is one of this command's inputs ({option}); "
                                 f"write the output elsewhere")
    if folder:
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{flag} {path}: exists and is not a folder; name a new or existing folder")
        where = path
    else:
        if path.is_dir():
            raise IsADirectoryError(f"{flag} {path}: is a folder; give a file name such as {path / 'ranks.csv'}")
        where = path.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
        _remove(_new_sibling(where / "write-check", directory=False))
    except OSError as exc:
        raise type(exc)(f"{flag} {path}: cannot create or write {where} ({exc.strerror or exc})") from None
    return path
