"""One invalidation policy: a key names the code that produced its artefact, the same in every process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dar_lib import cachekeys
from dar_lib.store import ArtefactStore

LIB = Path(cachekeys.__file__).resolve().parent

# Keys of one artefact of each kind, through the calls that make them (for the LLM kind, the code part
# every chat reformulator's fingerprint carries). With edits (module paths) as
# arguments, it appends a comment to each in turn and prints the keys again, then restores the file.
_KEYS = r"""
import json, pathlib, sys, tempfile
import dar_lib
from dar_lib import cachekeys, rehearsal
from dar_lib.benchmarks.toyworld import ToyReformulator
from dar_lib.benchmarks.toyworld.build import build_root
from dar_lib.models.generators import CachedGenerator
from dar_lib.store import ArtefactStore

class Stub:
    id = "stub"
    def fingerprint(self):
        return "stub-generator"

def keys():
    cachekeys.code_fingerprint.cache_clear()  # a new process would read the sources afresh
    return {
        "toy_rules": ToyReformulator().fingerprint(),
        "toyworld": build_root(500, 20, 0).name,
        "images": CachedGenerator(Stub(), ArtefactStore(tempfile.mkdtemp())).key("a red circle", 3, 2, 3.0, 32),
        "llm": cachekeys.code_version("llm"),  # the part of every chat reformulator's fingerprint
        "rehearsal": rehearsal.default_root().name,
    }

out = [keys()]
for module in sys.argv[1:]:
    path = pathlib.Path(dar_lib.__file__).parent / module
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    try:
        out.append(keys())
    finally:
        path.write_text(original)
print(json.dumps(out))
"""

#: A module of each kind's producers, and the keys an edit to it must change (every other key stays).
EDITS = {
    "benchmarks/toyworld/reformulate.py": {"toy_rules"},
    "benchmarks/toyworld/scenes.py": {"toy_rules", "toyworld"},
    "models/generators.py": {"images"},
    "models/prompts.py": {"llm"},
    "rehearsal.py": {"rehearsal"},
}


def _keys(tmp_path: Path, hash_seed: str, edits=()) -> list[dict]:
    """The keys in a fresh process on a copy of the library's source (no shipped weights: none needed)."""
    src = tmp_path / "src"
    if not src.exists():
        shutil.copytree(LIB, src / "dar_lib", ignore=shutil.ignore_patterns("__pycache__", "assets"))
    env = {**os.environ, "PYTHONPATH": str(src), "DAR_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _KEYS, *edits], capture_output=True, text=True, env=env, cwd=src)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_same_code_gives_the_same_keys_in_every_process_and_an_edit_changes_only_its_kinds(tmp_path):
    (base,) = _keys(tmp_path, "1")
    again, *edited = _keys(tmp_path, "2", list(EDITS))  # another process, another str hash seed
    assert again == base
    for (module, changed), after in zip(EDITS.items(), edited):
        assert {k for k in base if after[k] != base[k]} == changed, module


def test_every_declared_producer_is_a_module_of_the_library():
    for kind, modules in cachekeys.PRODUCERS.items():
        assert modules and all(m == "dar_lib" or m.startswith("dar_lib.") for m in modules), kind
        assert len(cachekeys.code_version(kind)) == 16  # raises ModuleNotFoundError for a stale name
    with pytest.raises(KeyError, match="no artefact kind 'imgs'"):
        cachekeys.code_version("imgs")


def test_a_producer_edit_changes_its_code_version(tmp_path, monkeypatch):
    pkg = tmp_path / "fakeproducer"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "stage.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cachekeys.PRODUCERS, "images", ("fakeproducer.stage",))
    cachekeys.code_fingerprint.cache_clear()
    before = cachekeys.image_key("g", "a red circle", 0, 2, 3.0, 32)
    (pkg / "stage.py").write_text("X = 2\n")
    cachekeys.code_fingerprint.cache_clear()
    assert cachekeys.image_key("g", "a red circle", 0, 2, 3.0, 32) != before
    monkeypatch.undo()
    cachekeys.code_fingerprint.cache_clear()


def test_the_ray_driver_keys_images_as_the_workers_and_a_local_run_do(tmp_path):
    """The driver keys pairs from the worker's identity with image_key: the keys the replica writes
    and a local run's CachedGenerator reads (no stand-in generator, no look through the cache)."""
    from dar_lib.distributed.workers import GenerateWorker
    from dar_lib.evaluate import EvalConfig
    from dar_lib.models import load_model
    from dar_lib.models.generators import CachedGenerator

    store = ArtefactStore(tmp_path / "store")
    cfg = EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", k_images=2, toy_size="smoke", steps=2)
    worker = GenerateWorker(cfg.generator, "cpu", str(store.root))
    ident = worker.identity(cfg.steps, cfg.guidance, cfg.size)
    assert json.loads(json.dumps(ident)) == ident  # travels from the actor to the driver as is
    pairs = [("a red circle", 1), ("a blue square on a green background", 2)]
    driver = [cachekeys.image_key(ident["generator"], p, s, *ident["settings"]) for p, s in pairs]
    local = CachedGenerator(load_model("generator", cfg.generator, "cpu"), store)  # as a local run wraps it
    assert driver == [local.key(p, s, *local.resolve(cfg.steps, cfg.guidance, cfg.size)) for p, s in pairs]
    assert worker.run(pairs, cfg.steps, cfg.guidance, cfg.size) == (2, 0)
    assert sorted(store.keys("images")) == sorted(driver)
    assert local.generate([p for p, _ in pairs], [s for _, s in pairs], cfg.steps, cfg.guidance, cfg.size)
    assert (local.hits, local.misses) == (2, 0)
