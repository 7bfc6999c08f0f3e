"""Evaluation runner: baseline equals an independent computation, the pipeline's ranks, determinism, caching,
resume after kill, shards, broken encoders, stale tables and range checks."""

import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from dar_lib.benchmarks import load_benchmark
from dar_lib.errors import EmbeddingError
from dar_lib.evaluate import EvalConfig, build_pipeline, evaluate, grid, parse_shard, plan, shard_of
from dar_lib.metrics import cumulative_hits
from dar_lib.models import load_encoder, load_model
from dar_lib.stats import summary_table
from dar_lib.store import ArtefactStore

SMOKE = dict(toy_size="smoke", n_dialogues=8)
RANK_COLS = ["method", "dialog_idx", "round_idx", "target_id", "rank"]


def test_baseline_hits_equal_independent_computation(tmp_path):
    cfg = EvalConfig(benchmark="toy-chatgpt", encoder="toy:clip-zs", methods=("baseline",), **SMOKE)
    table = evaluate(cfg, ArtefactStore(tmp_path), progress=False)

    # Independently: encode everything directly, rank by a full argsort, count hits by hand.
    bench = load_benchmark("toy-chatgpt", 8, toy_size="smoke")
    enc = load_encoder("toy:clip-zs")
    corpus = enc.encode_images(bench.corpus_images(range(len(bench.corpus_paths))))
    ranks = np.zeros((8, 11), dtype=int)
    for d, dlg in enumerate(bench.dialogues):
        q = enc.encode_text([dlg.query_text(r) for r in range(11)])
        order = torch.argsort(q @ corpus.T, dim=1, descending=True)
        ranks[d] = [(order[r] == dlg.target_id).nonzero().item() for r in range(11)]
    expected = [100 * np.mean([any(ranks[d, : r + 1] < 10) for d in range(8)]) for r in range(11)]

    got = table.pivot(index="dialog_idx", columns="round_idx", values="rank").to_numpy()
    # Ranks may differ by a near-tie between two matmul blockings; the metric must agree.
    assert np.abs(got - ranks).max() <= 1
    np.testing.assert_allclose(cumulative_hits(got), expected)
    assert set(table.columns) >= set(RANK_COLS) | {"encoder_fingerprint", "version_torch", "benchmark"}


def test_all_methods_deterministic_and_cached(tmp_path):
    cfg = EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", k_images=2, **SMOKE)
    store = ArtefactStore(tmp_path / "a")
    first = evaluate(cfg, store, progress=False)
    n_images = len(list(store.keys("images")))
    assert n_images > 0
    again = evaluate(cfg, store, progress=False)  # everything from the store
    fresh = evaluate(cfg, ArtefactStore(tmp_path / "b"), progress=False)  # from a clean cache
    assert len(list(store.keys("images"))) == n_images
    pd.testing.assert_frame_equal(first[RANK_COLS], again[RANK_COLS])
    pd.testing.assert_frame_equal(first[RANK_COLS], fresh[RANK_COLS])
    assert set(first["method"]) == {"baseline", "reformulated", "dar", "images-only"}
    assert len(first) == 4 * 8 * 11
    s = summary_table(first)
    assert list(s.columns[:3]) == ["benchmark", "encoder", "method"] and len(s) == 4


def test_a_fusion_only_change_reads_every_text_embedding_from_the_store(tmp_path, monkeypatch):
    """The chapters' weight sweeps change only the fusion: the query texts' embeddings (kind ``text_emb``) come
    from the store, and the table is the one a clean cache computes."""
    from dar_lib.pipeline import DARPipeline

    base = dict(benchmark="toy-flan", encoder="toy:clip-zs", k_images=2, **SMOKE)
    store = ArtefactStore(tmp_path / "a")
    evaluate(EvalConfig(**base), store, progress=False)
    n_entries = len(list(store.keys("text_emb")))
    assert n_entries > 0
    encoded = []
    encode = DARPipeline.encode_queries
    monkeypatch.setattr(DARPipeline, "encode_queries", lambda self, texts: encoded.append(len(texts)) or
                        encode(self, texts))
    cfg = EvalConfig(**base, schedule="const:0.3")
    again = evaluate(cfg, store, progress=False)
    assert encoded == [] and len(list(store.keys("text_emb"))) == n_entries
    fresh = evaluate(cfg, ArtefactStore(tmp_path / "b"), progress=False)
    assert encoded  # a clean cache runs the text tower
    pd.testing.assert_frame_equal(again[RANK_COLS], fresh[RANK_COLS])
    # Other weights in the same folder embed the texts afresh (a retrain into the folder).
    import shutil

    from safetensors.torch import load_file, save_file

    from dar_lib.toymodels import ASSETS

    folder = tmp_path / "zs-copy"
    shutil.copytree(ASSETS / "clip-zs", folder)
    copy = EvalConfig(**{**base, "encoder": f"toy:{folder}"})
    evaluate(copy, store, progress=False)
    n_copy = len(list(store.keys("text_emb")))
    weights = load_file(str(folder / "model.safetensors"))
    weights["text_projection.weight"] = weights["text_projection.weight"] * 1.5
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    evaluate(copy, store, progress=False)
    assert n_copy > n_entries and len(list(store.keys("text_emb"))) == 2 * n_copy - n_entries


@pytest.mark.parametrize("per_round", [False, True])
def test_images_are_generated_once_per_prompt_seed_pair(tmp_path, per_round):
    cfg = EvalConfig(benchmark="toy-visdial", encoder="toy:clip-zs", k_images=3, seed_per_round=per_round, **SMOKE)
    bench = load_benchmark("toy-visdial", 8, toy_size="smoke")
    p = plan(build_pipeline(cfg, ArtefactStore(tmp_path)), bench, cfg.methods, progress=False)
    all_pairs = [(pr, s) for row in p.turns for t in row for pr, s in zip(t.prompts, t.seeds)]
    assert len(p.pairs) == len(set(all_pairs))
    if per_round:
        # a fresh draw every round: a prompt repeated in another round gets another seed
        rounds_of = {}
        for row in p.turns:
            for t in row:
                for pr, s in zip(t.prompts, t.seeds):
                    rounds_of.setdefault(pr, set()).add((t.round_idx, s))
        assert all(len({s for _, s in v}) == len({r for r, _ in v}) for v in rounds_of.values())
    else:
        assert len(p.pairs) < len(all_pairs)  # uninformative turns repeat the query, so the images


def test_pipeline_and_evaluator_give_identical_ranks(tmp_path):
    """One Algorithm 1: a DARPipeline called turn by turn ranks every target as the batched runner does.

    The runner embeds texts and images in batches, the turn-by-turn call one turn at a time; matrix
    kernels round differently for other batch shapes (last bits of float32), so a corpus item whose
    score is within 1e-5 of the target's may swap sides. Ranks must agree exactly apart from those.
    """
    store = ArtefactStore(tmp_path)
    cfg = EvalConfig(benchmark="toy-chatgpt", encoder="toy:clip-zs", k_images=2, n_dialogues=4, toy_size="smoke")
    table = evaluate(cfg, store, progress=False)
    bench = load_benchmark("toy-chatgpt", 4, toy_size="smoke")
    pipe = build_pipeline(cfg, store)  # the same store: the same images
    from dar_lib import corpus

    pipe.index(corpus_emb=corpus.corpus_embeddings(bench, pipe.encoder, store, progress=False))
    dar = table[table.method == "dar"].set_index(["dialog_idx", "round_idx"])["rank"]
    exact = 0
    for i, d in enumerate(bench.dialogues):
        for r in range(d.n_rounds):
            out = pipe(list(d.dialog[: r + 1]), ref=(d.image, r), top_k=10)
            scores = pipe.corpus_emb @ out.fused_emb
            near = int((torch.abs(scores - scores[d.target_id]) < 1e-5).sum()) - 1
            got = pipe.target_ranks(out.fused_emb[None], [d.target_id])[0]
            assert abs(got - dar[i, r]) <= near / 2, (i, r, got, dar[i, r], near)
            exact += got == dar[i, r]
    assert exact >= 0.9 * len(bench.dialogues) * bench.dialogues[0].n_rounds


def test_shards_partition_and_merge(tmp_path):
    cfg = EvalConfig(benchmark="toy-human", encoder="toy:clip-zs", k_images=2, **SMOKE)
    stores = [ArtefactStore(tmp_path / f"s{i}") for i in range(2)]
    for i, st in enumerate(stores):
        assert evaluate(cfg, st, shard=(i, 2), progress=False) is None
    keys = [set(st.keys("images")) for st in stores]
    assert keys[0] and keys[1] and not keys[0] & keys[1]
    merged = ArtefactStore(tmp_path / "merged")
    for st in stores:
        merged.merge_from(st)
    table = evaluate(cfg, merged, progress=False)
    assert set(merged.keys("images")) == keys[0] | keys[1]  # nothing generated after the merge
    ref = evaluate(cfg, ArtefactStore(tmp_path / "ref"), progress=False)
    pd.testing.assert_frame_equal(table[RANK_COLS], ref[RANK_COLS])
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None
    with pytest.raises(ValueError):
        parse_shard("4/4")
    assert {shard_of(f"p{i}", 0, 3) for i in range(50)} == {0, 1, 2}


def test_bad_config():
    with pytest.raises(ValueError, match="methods"):
        EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", methods=("magic",))
    with pytest.raises(ValueError, match="schedule"):
        EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", schedule="sometimes")
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("imagenet")
    with pytest.raises(ValueError, match="image_root"):
        load_benchmark("visdial")


def _eval_args(store, out) -> list[str]:
    return ["--benchmark", "toy-visdial", "--encoder", "toy:clip-zs", "--toy-size", "smoke", "--n-dialogues", "6",
            "-k", "2", "--batch-size", "4", "--store", str(store), "--out", str(out)]


@pytest.mark.slow
def test_killed_run_resumes_to_identical_results(tmp_path, dar_eval):
    code, _, err = dar_eval(*_eval_args(tmp_path / "ref", tmp_path / "ref.csv"))  # the reference, in this process
    assert code == 0, err

    store = tmp_path / "killed"  # a separate process, killed part-way
    proc = subprocess.Popen([sys.executable, "-m", "dar_lib.cli", "eval", "--quiet",
                             *_eval_args(store, tmp_path / "killed.csv")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((store / "images").glob("*/*"))) < 10:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed.csv").exists(), "the run finished before it could be killed"
    n_before = len(list((store / "images").glob("*/*")))
    code, out, err = dar_eval(*_eval_args(store, tmp_path / "killed.csv"))  # resumed from what the kill left
    assert code == 0, err
    a = pd.read_csv(tmp_path / "ref.csv")[RANK_COLS]
    b = pd.read_csv(tmp_path / "killed.csv")[RANK_COLS]
    pd.testing.assert_frame_equal(a, b)
    assert n_before > 0
    assert "hits@10 r0" in out


@pytest.mark.parametrize("field, value", [("steps", 0), ("k_images", 0), ("k_images", 11), ("batch_size", 0),
                                          ("n_dialogues", 0), ("guidance", -1.0), ("size", 12), ("gen_seed", -1),
                                          ("guidance", float("nan"))])
def test_every_numeric_setting_is_range_checked_before_work(field, value):
    with pytest.raises(ValueError, match=field):
        EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", **{field: value})


def _broken_copy(tmp_path, how: str) -> str:
    """A copy of toy:clip-zs whose projection weights are NaN or zero (a diverged or badly imported model)."""
    import shutil

    from safetensors.torch import load_file, save_file

    from dar_lib.toymodels import ASSETS

    folder = tmp_path / f"zs-{how}"
    shutil.copytree(ASSETS / "clip-zs", folder)
    weights = load_file(str(folder / "model.safetensors"))
    for key in ("visual_projection.weight", "text_projection.weight"):
        weights[key] = torch.full_like(weights[key], float("nan") if how == "nan" else 0.0)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return f"toy:{folder}"


@pytest.mark.parametrize("how", ["nan", "zero"])
def test_a_broken_encoder_is_an_error_not_a_perfect_score(tmp_path, how):
    cfg = EvalConfig(benchmark="toy-flan", encoder=_broken_copy(tmp_path, how), methods=("baseline",), **SMOKE)
    with pytest.raises(EmbeddingError, match=r"zs-" + how + r".*(NaN|zero norm)"):
        evaluate(cfg, ArtefactStore(tmp_path / "store"), progress=False)


def test_a_collapsed_encoder_scores_at_chance_never_better(tmp_path, monkeypatch):
    """Every embedding the same unit vector: all scores tie, and a tie is not a hit."""
    enc = load_model("encoder", "toy:clip-zs", None)
    same = torch.nn.functional.normalize(torch.ones(enc.dim), dim=0)
    monkeypatch.setattr(enc, "encode_text", lambda texts: same.repeat(len(list(texts)), 1))
    monkeypatch.setattr(enc, "encode_images", lambda images: same.repeat(len(list(images)), 1))
    monkeypatch.setattr(enc, "fingerprint", lambda: "collapsed-test-encoder")
    cfg = EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", methods=("baseline",), **SMOKE)
    table = evaluate(cfg, ArtefactStore(tmp_path), progress=False)
    n_corpus = len(load_benchmark("toy-flan", 8, toy_size="smoke").corpus_paths)
    assert (table["rank"] == (n_corpus - 1) / 2).all()  # the expected rank under random tie-breaking
    hits = cumulative_hits(table.pivot(index="dialog_idx", columns="round_idx", values="rank").to_numpy())
    assert hits.max() <= 100 * 10 / n_corpus


def test_result_tables_are_recomputed_when_the_code_changes(tmp_path, monkeypatch):
    import dar_lib.evaluate as E

    store = ArtefactStore(tmp_path)
    calls = []
    real = E.evaluate
    monkeypatch.setattr(E, "evaluate", lambda *a, **k: calls.append(1) or real(*a, **k))
    kw = dict(methods=("baseline",), progress=False, store=store, **SMOKE)
    grid(["toy-flan"], {"zero-shot": "toy:clip-zs"}, **kw)
    grid(["toy-flan"], {"zero-shot": "toy:clip-zs"}, **kw)
    assert len(calls) == 1  # the second run reads the cached table
    monkeypatch.setattr("dar_lib.cachekeys.code_fingerprint", lambda *m: "another-version-of-the-code")
    grid(["toy-flan"], {"zero-shot": "toy:clip-zs"}, **kw)
    assert len(calls) == 2  # a code change makes the old table unreachable


def test_eval_config_takes_its_settings_from_evalsettings_and_keys_only_what_changes_answers():
    """EvalConfig's setting fields, defaults and checks are evalsettings' (#33 item 2: declared once); the
    LLM's time limits change no answer, so a results table made with another timeout is found again."""
    import dataclasses
    from types import SimpleNamespace

    from dar_lib import evalsettings
    from dar_lib.evaluate import EvalConfig, table_key

    fields = {f.name: f for f in dataclasses.fields(EvalConfig)}
    for name, setting in evalsettings.SETTINGS.items():
        assert fields[name].default == setting.default and fields[name].type == setting.annotation, name
        assert f"{name}: {setting.doc}" in EvalConfig.__doc__
    bench = SimpleNamespace(fingerprint="f")
    base = EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs")
    assert table_key(base, bench) == table_key(dataclasses.replace(base, llm_timeout=5.0, llm_deadline=9.0), bench)
    assert table_key(base, bench) != table_key(dataclasses.replace(base, k_images=2), bench)
    with pytest.raises(ValueError, match="llm_deadline = 0: must be a number in"):
        EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", llm_deadline=0)
