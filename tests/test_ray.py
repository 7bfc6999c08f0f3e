"""Ray backend: the tables of a single-process and a sharded run, a killed worker's batch retried, reruns cached."""

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dar_lib import distributed
from dar_lib.benchmarks import load_benchmark
from dar_lib.distributed import cluster
from dar_lib.errors import MissingDependencyError
from dar_lib.evaluate import EvalConfig, build_pipeline, evaluate, plan
from dar_lib.store import ArtefactStore

RANK_COLS = ["method", "dialog_idx", "round_idx", "target_id", "rank"]
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason='ray is not installed (optional extra: pip install -e ".[ray]")')
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy_models():
    """Trained toy models: the shipped ones, or a ``dar train-toy --out`` folder named by DAR_TEST_TOY_MODELS.

    Freshly initialised models would be faster to build, but they embed every generated image
    almost alike, so the ranks would hinge on float rounding instead of on the backend.
    """
    from dar_lib.toymodels import ASSETS

    if (ASSETS / "sd" / "model_index.json").exists() and (ASSETS / "clip-zs" / "config.json").exists():
        return {"encoder": "toy:clip-zs", "generator": "toy:sd"}
    folder = os.environ.get("DAR_TEST_TOY_MODELS")
    if folder and Path(folder, "sd").is_dir() and Path(folder, "clip-zs").is_dir():
        return {"encoder": f"toy:{Path(folder, 'clip-zs')}", "generator": f"toy:{Path(folder, 'sd')}"}
    pytest.skip("needs trained toy models: run `dar train-toy`, or set DAR_TEST_TOY_MODELS to a folder "
                "written by `dar train-toy --out DIR --only image-tower clip-full clip-zs sd --steps-scale 0.01`")


@pytest.fixture(scope="module")
def cfg(toy_models):
    # Small batches, so the pool has several batches to spread and a worker dies with work pending.
    return EvalConfig(benchmark="toy-flan", k_images=2, toy_size="smoke", n_dialogues=4, batch_size=8,
                      **toy_models)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module: 2 CPU workers."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip('ray is not installed (optional extra: pip install -e ".[ray]")')
    ray = distributed.connect(None, num_workers=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def runs(cfg, ray_local, tmp_path_factory):
    """The same evaluation in one process, on Ray, and as two shards merged then finished locally."""
    import torch

    # One thread, as in each Ray CPU actor: faster on a busy 2-core machine, and the same float rounding.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield _runs(cfg, tmp_path_factory.mktemp("stores"))
    finally:
        torch.set_num_threads(threads)


def _runs(cfg, root: Path) -> dict:
    local, on_ray = ArtefactStore(root / "local"), ArtefactStore(root / "ray")
    tables = {"local": evaluate(cfg, local, progress=False),
              "ray": evaluate(cfg, on_ray, progress=False, backend=distributed.RayBackend())}
    merged = ArtefactStore(root / "merged")
    for i in range(2):
        shard = ArtefactStore(root / f"shard{i}")
        assert evaluate(cfg, shard, shard=(i, 2), progress=False) is None
        merged.merge_from(shard)
    tables["sharded"] = evaluate(cfg, merged, progress=False)
    return {"tables": tables, "local": local, "ray": on_ray, "sharded": merged}


def _files(store: ArtefactStore, kind: str) -> dict[str, Path]:
    return {p.name: p for p in (store.root / kind).glob("*/*")}


def _pairs(cfg, store):
    bench = load_benchmark(cfg.benchmark, cfg.n_dialogues, toy_size=cfg.toy_size, seed=cfg.world_seed)
    return bench, plan(build_pipeline(cfg, store), bench, cfg.methods, progress=False).pairs


def test_the_evaluator_does_not_import_the_ray_backend():
    """Ray is a backend the CLI injects: importing and running the evaluator never imports dar_lib.distributed."""
    import subprocess

    code = ("import sys, dar_lib.evaluate, dar_lib.pipeline, dar_lib.corpus; "
            "print('dar_lib.distributed' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_without_ray_the_error_says_how_to_install(monkeypatch, tmp_path):
    cfg = EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", toy_size="smoke")
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(MissingDependencyError, match=r'pip install -e "\.\[ray\]"'):
        distributed.generate(cfg, [("a red circle", 0)], ArtefactStore(tmp_path))


@needs_ray
def test_ray_sharded_and_local_give_identical_tables(runs, cfg):
    t = runs["tables"]
    assert len(t["local"]) == len(cfg.methods) * cfg.n_dialogues * 11
    pd.testing.assert_frame_equal(t["local"][RANK_COLS], t["ray"][RANK_COLS])
    pd.testing.assert_frame_equal(t["local"][RANK_COLS], t["sharded"][RANK_COLS])
    assert t["ray"]["generator_fingerprint"].iloc[0] == t["local"]["generator_fingerprint"].iloc[0]


def _assert_same_entries(a: ArtefactStore, b: ArtefactStore, kind: str) -> None:
    """Same keys, and the same content up to float rounding.

    The generator's output moves by one 8-bit level on a rare pixel when torch's thread count or
    the batch an image shares differs (a Ray actor runs one thread); the key, hence the cache, is
    unaffected, and whichever copy is written first is the one every backend reads afterwards.
    """
    fa, fb = _files(a, kind), _files(b, kind)
    assert fa and set(fa) == set(fb)
    for key in fa:
        if kind == "images":
            x, y = (np.asarray(s.get_image(kind, key), dtype=int) for s in (a, b))
            assert np.abs(x - y).max() <= 1, key
        else:
            np.testing.assert_allclose(a.get_array(kind, key), b.get_array(kind, key), rtol=0, atol=1e-5)


@needs_ray
@pytest.mark.parametrize("kind", ["images", "corpus_emb"])
def test_ray_store_has_the_same_entries(runs, kind):
    _assert_same_entries(runs["local"], runs["ray"], kind)


@needs_ray
@pytest.mark.parametrize("kind", ["images", "corpus_emb", "image_emb", "llm"])
def test_local_sharded_and_ray_stores_hold_the_same_keys(runs, kind):
    """One key function per kind, whoever computes: a local run, two shards merged, Ray workers."""
    keys = {name: set(runs[name].keys(kind)) for name in ("local", "sharded", "ray")}
    assert keys["local"] and keys["sharded"] == keys["local"] and keys["ray"] == keys["local"]
    if kind == "llm":  # text: the very same bytes
        assert all(runs[n].get_bytes(kind, k) == runs["local"].get_bytes(kind, k) for n in ("sharded", "ray")
                   for k in keys["local"])


@needs_ray
def test_second_run_generates_nothing(runs, cfg):
    store = runs["ray"]
    bench, pairs = _pairs(cfg, store)
    before = set(_files(store, "images"))
    gen = distributed.generate(cfg, pairs, store, progress=False)
    corpus = distributed.corpus_embeddings(cfg, bench, store, progress=False)
    assert (gen.generated, gen.cached, gen.done, gen.total) == (0, len(pairs), len(pairs), len(pairs))
    assert (corpus.generated, corpus.done, corpus.total) == (0, len(bench.corpus_paths), len(bench.corpus_paths))
    assert gen.workers == 0 and gen.retries == gen.failures == 0
    assert set(_files(store, "images")) == before


@needs_ray
def test_killed_worker_batch_is_retried_with_identical_results(runs, cfg, tmp_path, monkeypatch):
    marker = tmp_path / "crashed"
    monkeypatch.setenv(distributed.CRASH_ENV, str(marker))  # the first batch's worker dies half-way through it
    store = ArtefactStore(tmp_path / "store")
    _, pairs = _pairs(cfg, store)
    assert len(pairs) > 2 * cfg.batch_size  # work is still pending when the worker dies

    summary = distributed.generate(cfg, pairs, store, progress=False, num_workers=2)

    assert marker.exists()  # a worker really died
    assert summary.retries >= 1 and summary.failures == 0
    assert summary.done == summary.total == len(pairs)
    assert summary.generated + summary.cached == len(pairs)
    assert not [p for p in store.root.rglob("*") if p.name.startswith(".") or p.suffix == ".part"]
    _assert_same_entries(runs["local"], store, "images")
    local = _files(runs["local"], "images")
    # The store now resumes a local run: it finds every image and gives the same table.
    monkeypatch.delenv(distributed.CRASH_ENV)
    table = evaluate(cfg, store, progress=False)
    assert set(_files(store, "images")) == set(local)
    pd.testing.assert_frame_equal(table[RANK_COLS], runs["tables"]["local"][RANK_COLS])


@needs_ray
def test_summary_reports_application_errors_as_failures(cfg, ray_local, tmp_path):
    import dataclasses

    bad = dataclasses.replace(cfg, size=40)  # the toy generator draws 32 px only: it raises in every batch
    with pytest.raises(RuntimeError, match=r"0/1 done .* 0 retries, 1 failures") as err:
        distributed.generate(bad, [("a red circle", 0)], ArtefactStore(tmp_path), progress=False, max_retries=1)
    assert "First error: batch 0:" in str(err.value)
    assert not list(tmp_path.rglob("*.png")) and not list((tmp_path / "images").rglob("*"))


@needs_ray
def test_workers_refuse_a_benchmark_they_cannot_rebuild(cfg, ray_local, tmp_path):
    other = load_benchmark(cfg.benchmark, cfg.n_dialogues, toy_size=cfg.toy_size, seed=cfg.world_seed + 1)
    with pytest.raises(RuntimeError, match="rebuilt benchmark 'toy-flan' with corpus"):
        distributed.corpus_embeddings(cfg, other, ArtefactStore(tmp_path), progress=False)
    assert not (tmp_path / "corpus_emb").exists()


# -- found before any work, bounded waits -----------------------------------------------------------
def _closed_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_without_ray_the_backend_fails_before_any_work(monkeypatch, tmp_path, capsys):
    """The missing install is reported when the backend is made, before any LLM request or image."""
    from dar_lib.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MissingDependencyError, match=r'pip install -e "\.\[ray\]"'):
        distributed.RayBackend()
    rc = main(["eval", "--benchmark", "toy-flan", "--encoder", "toy:clip-zs", "--toy-size", "smoke",
               "--n-dialogues", "2", "--methods", "dar", "--backend", "ray", "--store", str(tmp_path / "s"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install" in err and len(err.strip().splitlines()) == 1
    assert not any(p.is_file() for p in (tmp_path / "s").rglob("*"))  # nothing computed


def test_an_unreachable_ray_address_fails_within_its_timeout_in_one_line(capsys):
    if importlib.util.find_spec("ray") is not None:
        import ray

        ray.shutdown()  # an initialised Ray (the local fixture's) would make connecting a no-op
    port = _closed_port()
    with pytest.raises(ConnectionError, match=rf"Ray address '127.0.0.1:{port}': nothing answered within 1 s"):
        cluster.wait_for_address(f"127.0.0.1:{port}", timeout_s=1.0)
    with pytest.raises(ConnectionError, match="--ray-timeout"):
        distributed.RayBackend(f"ray://127.0.0.1:{port}", connect_timeout_s=1.0)
    with pytest.raises(ValueError, match="expected auto, host:port"):
        cluster.wait_for_address("somehost", timeout_s=1.0)
    assert cluster.CONNECT_TIMEOUT_S <= 60
    from dar_lib.cli import main

    rc = main(["eval", "--benchmark", "toy-flan", "--encoder", "toy:clip-zs", "--toy-size", "smoke",
               "--n-dialogues", "2", "--methods", "baseline", "--backend", "ray", "--ray-address",
               f"127.0.0.1:{port}", "--ray-timeout", "1", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and f"127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1


@needs_ray
def test_a_port_that_accepts_but_is_no_ray_cluster_fails_within_its_timeout():
    """A listener that never speaks Ray (a proxy, another service): ray.init alone would retry for minutes."""
    import socket

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    try:
        with pytest.raises(ConnectionError,
                           match=r"127\.0\.0\.1:\d+'?: (no Ray cluster connected within 3 s|cannot connect)"):
            cluster.probe_cluster(f"127.0.0.1:{srv.getsockname()[1]}", timeout_s=3.0)
    finally:
        srv.close()
