"""DARPipeline: one turn of Algorithm 1, its stage timings, seeds, caching, indexing checks and an interactive
session."""

import numpy as np
import pytest
import torch

from dar_lib.benchmarks import TOY_SIZES, load_benchmark
from dar_lib.errors import EmbeddingError
from dar_lib.fuse import fuse
from dar_lib.models import load_encoder, load_generator, load_questioner, load_reformulator
from dar_lib.pipeline import STAGES, DARPipeline, image_seed
from dar_lib.store import ArtefactStore


@pytest.fixture(scope="module")
def parts():
    return load_reformulator("toy:rules"), load_generator("toy:sd"), load_encoder("toy:clip-zs")


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("toy-chatgpt", 4, toy_size="smoke")


def test_one_turn(parts, bench, tmp_path):
    pipe = DARPipeline(*parts, k_images=3, store=ArtefactStore(tmp_path))
    pipe.index(bench.corpus_images(range(len(bench.corpus_paths))))
    d = bench.dialogues[0]
    out = pipe(list(d.dialog[:3]))
    assert out.round_idx == 2 and len(out.prompts) == 3 and len(out.images) == 3
    assert out.images[0].size == (32, 32)
    assert out.query == parts[0].rewrite(list(d.dialog[:3]))
    assert out.prompts == parts[0].prompts(out.query, 3)
    # eq. 4 with the pipeline's defaults (paper schedule, mean of the K images), unit norm
    assert pipe.image_reduce == "mean" and out.alpha == 0.5
    torch.testing.assert_close(out.fused_emb, fuse(out.text_emb, out.image_emb, 2, "paper", "mean"))
    assert float(out.fused_emb.norm()) == pytest.approx(1.0, abs=1e-5)
    # the top-10 are the ten best cosine scores, computed here independently
    scores = pipe.corpus_emb @ out.fused_emb
    np.testing.assert_array_equal(np.sort(out.top_ids), np.sort(torch.topk(scores, 10).indices.numpy()))
    np.testing.assert_allclose(out.top_scores, scores[out.top_ids].numpy(), atol=1e-6)
    # every stage of Algorithm 1 was timed by the call itself
    assert set(out.timings) == set(STAGES) | {"total"} and out.timings["generation"] > 0
    assert out.timings["total"] == pytest.approx(sum(out.timings[s] for s in STAGES))


def test_cached_images_are_the_generated_ones(parts, bench, tmp_path):
    """The store returns what generation gives (to one 8-bit level: kernels round per batch shape)."""
    d = bench.dialogues[1]
    cached = DARPipeline(*parts, k_images=2, store=ArtefactStore(tmp_path))
    first = cached(list(d.dialog[:2]), top_k=0)
    again = cached(list(d.dialog[:2]), top_k=0)
    fresh = DARPipeline(*parts, k_images=2)(list(d.dialog[:2]), top_k=0)
    assert cached.generator.hits == 2 and cached.generator.misses == 2
    for a, b, c in zip(first.images, again.images, fresh.images):
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert np.abs(np.asarray(a, dtype=int) - np.asarray(c, dtype=int)).max() <= 1


def test_image_seeds_are_pinned_and_include_the_round():
    # Pinned values: a change to the seed function would silently orphan every cached image.
    assert image_seed(0, "a red circle", 1) == image_seed(0, "a red circle", 1, None)
    assert [image_seed(0, "a red circle", 1), image_seed(0, "a red circle", 1, 3)] == [
        _sha_seed("0\x001\x00a red circle"), _sha_seed("0\x001\x00a red circle\x00r3")]
    seeds = {image_seed(0, "a", 0), image_seed(0, "a", 1), image_seed(1, "a", 0), image_seed(0, "b", 0),
             image_seed(0, "a", 0, 0), image_seed(0, "a", 0, 1)}
    assert len(seeds) == 6


def _sha_seed(text: str) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def test_seed_policy_per_round(parts):
    fresh = DARPipeline(*parts, k_images=2, seed_per_round=True)
    fixed = DARPipeline(*parts, k_images=2)  # the default: the seed comes from the prompt
    turns = ["a red circle", "is the picture in color? yes"]  # round 1 adds no fact: the same prompts
    p0, p1 = fresh.reformulate(turns[:1]), fresh.reformulate(turns)
    assert p0.prompts == p1.prompts and p0.seeds != p1.seeds
    q0, q1 = fixed.reformulate(turns[:1]), fixed.reformulate(turns)
    assert q0.seeds == q1.seeds


def test_by_default_the_same_prompt_gives_the_same_image_and_another_prompt_another_seed(parts):
    """A deterministic system given the same prompt returns the same image: new images need new information."""
    pipe = DARPipeline(*parts, k_images=2)
    assert pipe.seed_per_round is False
    same = ["a red circle", "is the picture in color? yes"]  # round 1 adds no fact
    r0, r1 = pipe(same[:1], top_k=0), pipe(same, top_k=0)
    assert r0.prompts == r1.prompts and r0.seeds == r1.seeds
    for a, b in zip(r0.images, r1.images):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    other = pipe.reformulate(["a blue square"])
    assert other.prompts != r0.prompts and set(other.seeds).isdisjoint(r0.seeds)
    assert pipe.seeds_for(r0.prompts, 7) == r0.seeds  # the round never enters the seed
    assert DARPipeline(*parts, k_images=2, seed=1).seeds_for(r0.prompts, 0) != r0.seeds  # gen_seed does


def test_index_checks_what_it_is_given(parts, bench):
    pipe = DARPipeline(*parts, k_images=1)
    with pytest.raises(ValueError, match="exactly one"):
        pipe.index()
    with pytest.raises(ValueError, match="dim"):
        pipe.index(corpus_emb=np.eye(4, dtype=np.float32))
    bad = torch.nn.functional.normalize(torch.randn(5, 128), dim=-1)
    bad[2] = float("nan")
    with pytest.raises(EmbeddingError, match="1 of 5"):
        pipe.index(corpus_emb=bad)
    with pytest.raises(RuntimeError, match="index"):
        pipe.top_k(bad[:1], 3)
    with pytest.raises(ValueError, match="k_images"):
        DARPipeline(*parts, k_images=11)
    with pytest.raises(ValueError, match="steps"):
        DARPipeline(*parts, steps=0)


def test_a_turn_checks_its_dialogue_and_ranking_options(parts):
    pipe = DARPipeline(*parts, k_images=1)
    with pytest.raises(TypeError, match="list of strings"):
        pipe("a large red circle", top_k=0)  # a bare string would be read as one turn per character
    with pytest.raises(TypeError, match="list of strings"):
        pipe([1, 2], top_k=0)
    with pytest.raises(ValueError, match="round_idx = -1"):
        pipe(["a large red circle"], round_idx=-1, top_k=0)
    with pytest.raises(ValueError, match="top_k = -1"):
        pipe(["a large red circle"], top_k=-1)
    with pytest.raises(ValueError, match="index"):
        pipe(["a large red circle"])  # top_k=10 with no corpus: an error, not an empty ranking


def test_interactive_session(parts, bench):
    scenes = load_scenes()
    pipe = DARPipeline(*parts, k_images=1, questioner=load_questioner("toy", scenes=scenes))
    pipe.index(bench.corpus_images(range(len(bench.corpus_paths))))
    from dar_lib.benchmarks.toyworld import ToyAnswerer

    answerer = ToyAnswerer(scenes[bench.dialogues[1].target_id])
    s = pipe.session(bench.dialogues[1].caption)
    for _ in range(3):
        q = s.ask()
        assert q.endswith("?")
        s.answer(answerer.answer(q))
    assert len(s.turns) == 4 and len(s.results) == 4
    assert s.results[-1].round_idx == 3
    # each answer was read: the query after three answers states more than the caption's
    assert len(s.results[-1].query) > len(s.results[0].query)
    with pytest.raises(ValueError):
        s.answer("  ")
    with pytest.raises(ValueError):
        pipe.session("")


def load_scenes():
    from dar_lib.benchmarks import toyworld as tw

    return tw.build(seed=0, **TOY_SIZES["smoke"]).scenes


def test_the_readme_pipeline_example_runs_as_written(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "DARPipeline(" in b]
    assert blocks, "the README has no DARPipeline example"
    monkeypatch.setenv("DAR_CACHE_DIR", str(tmp_path))
    scope: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), scope)  # noqa: S102 - our own documentation
    turn = scope["turn"]
    assert len(turn.images) == 3 and len(turn.top_ids) == 10
