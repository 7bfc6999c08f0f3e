"""The one atomic write: a failure mid-write leaves the old file intact and nothing beside it; every writer uses it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from dar_lib import atomic
from dar_lib.atomic import atomic_path, atomic_write_bytes, atomic_writer

REPO = Path(__file__).resolve().parents[1]


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failure_mid_write_leaves_the_old_file_intact(tmp_path, exc):
    dest = tmp_path / "table.csv"
    atomic_write_bytes(dest, b"old,complete\n")
    with pytest.raises(type(exc)):
        with atomic_writer(dest) as fh:
            fh.write(b"new,half")
            fh.flush()
            raise exc
    assert dest.read_bytes() == b"old,complete\n"
    assert _siblings(tmp_path) == ["table.csv"]  # no temporary file left behind


def test_a_failure_before_the_first_write_leaves_no_file(tmp_path):
    dest = tmp_path / "sub" / "new.bin"
    with pytest.raises(ValueError):
        with atomic_path(dest):
            raise ValueError("builder failed")
    assert not dest.exists() and _siblings(dest.parent) == []


def test_success_fsyncs_then_replaces_with_the_umask_permissions(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a" / "b.json", b"{}")
    finally:
        os.umask(old)
    path = tmp_path / "a" / "b.json"
    assert path.read_bytes() == b"{}" and _siblings(path.parent) == ["b.json"]
    assert len(synced) >= 2  # the file's bytes and the rename in its folder
    assert path.stat().st_mode & 0o777 == 0o644  # not tempfile's owner-only 0600: a shared cache stays readable
    with atomic_writer(path, "w", encoding="utf-8") as fh:
        fh.write("[]")
    assert path.read_text() == "[]"
    with pytest.raises(ValueError, match="mode must be 'wb' or 'w', got 'ab'"):
        with atomic_writer(path, "ab"):
            pass


def test_a_folder_is_built_aside_and_one_finished_first_is_kept(tmp_path):
    dest = tmp_path / "model"
    with atomic_path(dest, directory=True) as tmp:
        assert tmp.is_dir() and tmp.parent == tmp_path and tmp.name.startswith(".model.")
        (tmp / "config.json").write_text("{}")
    assert (dest / "config.json").read_text() == "{}"
    with atomic_path(dest, directory=True) as tmp:  # another process finished the same build first
        (tmp / "config.json").write_text('{"second": true}')
    assert (dest / "config.json").read_text() == "{}" and _siblings(tmp_path) == ["model"]
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "other", directory=True) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("killed")
    assert _siblings(tmp_path) == ["model"]


def test_blip_conversion_failing_mid_write_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    import safetensors.torch
    import torch

    from dar_lib.models import blip_import

    src, dst = tmp_path / "model.pth", tmp_path / "model.safetensors"
    torch.save({"model": {"w": torch.zeros(2)}}, src)
    dst.write_bytes(b"the old converted checkpoint")

    def half_then_fail(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", half_then_fail)
    with pytest.raises(OSError, match="No space left"):
        blip_import.convert_to_safetensors(src, dst, trust_pickle=True)
    assert dst.read_bytes() == b"the old converted checkpoint"
    assert _siblings(tmp_path) == ["model.pth", "model.safetensors"]


def test_no_module_writes_its_own_temp_then_rename():
    """One way to write atomically: ``os.replace``/``os.rename``/``mkstemp`` appear only in dar_lib/atomic.py."""
    pattern = re.compile(r"\bos\.(?:replace|rename)\(|\bmkstemp\(|\bNamedTemporaryFile\(")
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in sorted((REPO / "dar_lib").rglob("*.py")) if p.name != "atomic.py"
                 for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []
