"""Artefact store: keys, round trips, corruption detection, atomicity, merge."""

import numpy as np
import pytest
from PIL import Image

from dar_lib.atomic import atomic_write_bytes
from dar_lib.store import ArtefactStore


def test_keys_depend_on_every_part(tmp_path):
    from dar_lib.cachekeys import hash_parts as k

    assert k(kind="img", model="a", prompt="x", seed=1) == k(seed=1, prompt="x", model="a", kind="img")
    assert len({k(kind="img", model="a", prompt="x", seed=1), k(kind="img", model="a", prompt="x", seed=2),
                k(kind="img", model="b", prompt="x", seed=1), k(kind="emb", model="a", prompt="x", seed=1)}) == 4


def test_round_trips(tmp_path):
    s = ArtefactStore(tmp_path)
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    s.put_array("emb", "k1", arr)
    np.testing.assert_array_equal(s.get_array("emb", "k1"), arr)
    img = Image.new("RGB", (4, 4), (10, 20, 30))
    s.put_image("img", "k2", img)
    assert s.get_image("img", "k2").getpixel((1, 1)) == (10, 20, 30)
    s.put_json("llm", "k3", {"text": "é"})
    assert s.get_json("llm", "k3") == {"text": "é"}
    assert s.get_json("llm", "missing") is None
    assert sorted(s.keys("emb")) == ["k1"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "header"])
def test_corrupt_entry_detected_and_recomputed(tmp_path, damage, caplog):
    s = ArtefactStore(tmp_path)
    s.put_json("llm", "k", {"v": list(range(100))})
    p = s.path("llm", "k")
    blob = p.read_bytes()
    if damage == "truncate":
        p.write_bytes(blob[:-7])
    elif damage == "flip":
        p.write_bytes(blob[:-3] + bytes([blob[-3] ^ 1]) + blob[-2:])
    else:
        p.write_bytes(b"XXXX" + blob[4:])
    calls = []
    value = s.get_or_compute_json("llm", "k", lambda: calls.append(1) or {"v": 1})
    assert value == {"v": 1} and calls == [1]
    assert s.corrupt_found == 1
    assert "corrupt entry" in caplog.text
    assert s.get_json("llm", "k") == {"v": 1}


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "a" / "f.bin"
    atomic_write_bytes(target, b"old")

    # A failing write (here: a non-bytes payload) leaves the old file and no temp file behind.
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def test_merge(tmp_path):
    a, b = ArtefactStore(tmp_path / "a"), ArtefactStore(tmp_path / "b")
    a.put_json("llm", "x", 1)
    b.put_json("llm", "y", 2)
    b.put_json("llm", "x", 1)
    assert a.merge_from(b) == 1
    assert a.get_json("llm", "y") == 2
    assert a.merge_from(b) == 0


def test_code_fingerprint_names_the_source_it_reads(tmp_path, monkeypatch):
    import sys

    from dar_lib.cachekeys import code_fingerprint

    pkg = tmp_path / "fpdemo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("X = 1\n")
    (pkg / "a.py").write_text("Y = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = code_fingerprint("fpdemo")
    assert first == code_fingerprint("fpdemo") and len(first) == 16
    assert code_fingerprint("fpdemo.a") != first  # one module vs the whole package
    (pkg / "a.py").write_text("Y = 2\n")
    code_fingerprint.cache_clear()
    assert code_fingerprint("fpdemo") != first  # an edit anywhere in the package changes it
    sys.modules.pop("fpdemo", None)
    with pytest.raises(ModuleNotFoundError, match="nosuchmodule"):
        code_fingerprint("nosuchmodule")


def _store_with_a_damaged_entry(root):
    src = ArtefactStore(root)
    for i in range(5):
        src.put_json("llm", f"k{i}", {"v": i})
    bad = src.path("llm", "k2")
    bad.write_bytes(bad.read_bytes()[:-3])  # truncated: its checksum no longer matches
    return src, bad


def test_merge_from_a_read_only_source_copies_every_valid_entry_and_touches_nothing(tmp_path, monkeypatch):
    import errno
    import pathlib

    src, bad = _store_with_a_damaged_entry(tmp_path / "src")
    before = {p: p.read_bytes() for p in (tmp_path / "src").rglob("*") if p.is_file()}
    real_unlink = pathlib.Path.unlink

    def unlink(self, missing_ok=False):  # the source is on a read-only medium (root ignores chmod)
        if tmp_path / "src" in self.parents:
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    into, damaged = ArtefactStore(tmp_path / "into"), []
    assert into.merge_from(src.root, damaged) == 4
    assert [path for path, _ in damaged] == [bad] and "length" in damaged[0][1]
    assert sorted(into.keys("llm")) == ["k0", "k1", "k3", "k4"]
    assert {p: p.read_bytes() for p in (tmp_path / "src").rglob("*") if p.is_file()} == before


def test_merge_from_a_writable_source_leaves_its_damaged_entry(tmp_path):
    src, bad = _store_with_a_damaged_entry(tmp_path / "src")
    blob = bad.read_bytes()
    assert ArtefactStore(tmp_path / "into").merge_from(src) == 4
    assert bad.read_bytes() == blob  # reported, not deleted: the source belongs to another run
