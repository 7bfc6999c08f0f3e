"""DARPipeline: one turn of Algorithm 1, seeds, caching, and an interactive session."""

import numpy as np
import pytest
import torch

from dar_lib.benchmarks import load_benchmark
from dar_lib.fuse import fuse
from dar_lib.models import load_encoder, load_generator, load_reformulator
from dar_lib.models.questioners import load_questioner
from dar_lib.pipeline import DARPipeline, image_seed
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
    assert out.seeds == [image_seed(0, p, k) for k, p in enumerate(out.prompts)]
    assert torch.allclose(out.fused_emb, fuse(out.text_emb, out.image_emb, 2, "paper", "sum"), atol=1e-6)
    assert out.top_ids.shape == (10,) and np.all(np.diff(out.top_scores) <= 0)
    # The same turn again gives the same images (from the store) and ranking.
    again = pipe(list(d.dialog[:3]))
    assert [np.asarray(a).tobytes() for a in again.images] == [np.asarray(b).tobytes() for b in out.images]
    np.testing.assert_array_equal(again.top_ids, out.top_ids)


def test_seed_depends_on_prompt_and_k_only():
    assert image_seed(0, "a red circle", 1) == image_seed(0, "a red circle", 1)
    assert len({image_seed(0, "a", 0), image_seed(0, "a", 1), image_seed(1, "a", 0), image_seed(0, "b", 0)}) == 4


def test_interactive_session(parts, bench):
    pipe = DARPipeline(*parts, k_images=1, questioner=load_questioner("toy", scenes=load_scenes()))
    pipe.index(bench.corpus_images(range(len(bench.corpus_paths))))
    from dar_lib.benchmarks.toyworld import ToyAnswerer

    target = load_scenes()[bench.dialogues[1].target_id]
    s = pipe.session(bench.dialogues[1].caption)
    answerer = ToyAnswerer(target)
    for _ in range(3):
        q = s.ask()
        assert q.endswith("?")
        s.answer(answerer.answer(q))
    assert len(s.turns) == 4 and len(s.results) == 4
    assert s.results[-1].round_idx == 3
    with pytest.raises(ValueError):
        s.answer("  ")
    with pytest.raises(ValueError):
        pipe.session("")


def load_scenes():
    from dar_lib.benchmarks import toyworld as tw
    from dar_lib.benchmarks import TOY_SIZES

    return tw.build(seed=0, **TOY_SIZES["smoke"]).scenes
