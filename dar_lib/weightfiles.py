"""Local model files checked, not trusted: damaged weights or configs refused in one line naming the file.

A ``model.safetensors`` cut short by a full disk, an empty file left by a killed copy or a flipped
byte in a header make transformers, diffusers and safetensors fail with a long traceback that does
not say which file is bad (``SafetensorError: Error while deserializing header:
MetadataIncompleteBuffer``). Every loader of a local folder (the toy models, hub-format folders,
the attribute probe) calls :func:`check_model_files` first: it reads each safetensors header
(which also checks that the file holds every byte the header promises) and parses each JSON file,
without reading the weights. :func:`file_record` and :func:`record_mismatch` go further for a
finished training stage: size and sha256 of every file, recorded at save and compared
before ``dar train-toy --resume`` skips the stage.

Examples:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "config.json").write_text('{"model_type": "clip"')
    21
    >>> check_model_files(d, "encoder 'toy:x'")
    Traceback (most recent call last):
    ...
    dar_lib.errors.DataError: encoder 'toy:x': .../config.json is damaged (not valid JSON: ...); ...
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from dar_lib.errors import DataError

#: The record itself, which :func:`file_record` leaves out.
RECORD = "training.json"


def _files(root: Path) -> list[Path]:
    """``root`` itself, or every non-hidden file under it (hidden ones are temporary or checkpoints)."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def problem(path: Path) -> str | None:
    """What is wrong with one safetensors or JSON file (``None``: readable; other kinds are not checked)."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        if path.stat().st_size == 0:
            return "an empty file"
        try:
            with safe_open(str(path), framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError, ValueError) as exc:
            reason = " ".join(str(exc).split())[:160]
            return f"not a whole safetensors file: {reason}"
    elif path.suffix == ".json":
        try:
            json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            return f"not valid JSON: {' '.join(str(exc).split())[:120]}"
    return None


def check_model_files(root: str | os.PathLike, what: str) -> None:
    """Refuse a local model whose safetensors or JSON files are damaged, naming the first bad file.

    Args:
        root: a model folder or file (a path that does not exist is left to the loader).
        what: the model, for the message (``"encoder 'toy:/tmp/m'"``).

    Raises:
        DataError: ``<what>: <file> is damaged (<reason>); restore it or retrain the model``.
    """
    root = Path(root).expanduser()
    if not root.exists():
        return
    for path in _files(root):
        reason = problem(path)
        if reason:
            raise DataError(f"{what}: {path} is damaged ({reason}); restore or re-download the file, or retrain "
                            f"the model")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _recorded(folder: Path) -> list[Path]:
    return [p for p in _files(folder) if p.relative_to(folder).as_posix() != RECORD] if folder.is_dir() else []


def file_record(folder: str | os.PathLike) -> dict[str, dict]:
    """``{relative path: {"bytes": size, "sha256": hex}}`` of every file under ``folder`` (weights, configs,
    tokenizer) but the record ``training.json`` itself and hidden files."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in _recorded(folder)}


def record_mismatch(folder: str | os.PathLike, record: dict | None) -> str | None:
    """Why the files under ``folder`` are not the ones ``record`` (:func:`file_record`) describes.

    Returns:
        ``None`` when every recorded file is there with its size and digest (and no file was added),
        else a one-line reason naming the file; a missing record is a reason too.
    """
    folder = Path(folder)
    if not isinstance(record, dict) or not record:
        return "no record of its files"
    now = {p.relative_to(folder).as_posix() for p in _recorded(folder)}
    for name, want in sorted(record.items()):
        path = folder / name
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != want.get("bytes"):
            return f"{path} has {size} bytes, {want.get('bytes')} were saved"
        if _sha256(path) != want.get("sha256"):
            return f"{path} has other bytes than were saved (sha256 differs)"
    extra = sorted(now - set(record))
    return f"{folder / extra[0]} was not saved with it" if extra else None
