"""Eq. 4 fusion: schedules, sum vs mean, and score-level == embedding-level ranking."""

import numpy as np
import pytest
import torch

from dar_lib.fuse import fuse, fused_scores
from dar_lib.fusion_weights import weights
from dar_lib.retrieve import target_ranks


def test_schedules():
    assert [weights(r, "paper") for r in (0, 1, 2, 10)] == [(0.7, 0.3), (0.7, 0.3), (0.5, 0.5), (0.5, 0.5)]
    assert [weights(r, "released") for r in (0, 1, 2)] == [(0.8, 0.2), (0.8, 0.2), (0.5, 0.5)]
    # the other reading of "the first two turns": rounds 0-2
    assert [weights(r, "paper-rounds-0-2") for r in (0, 2, 3)] == [(0.7, 0.3), (0.7, 0.3), (0.5, 0.5)]
    assert weights(4, "const:0.25") == (0.25, 0.75)
    for bad in ("nope", "const:x", "const:1.5"):
        with pytest.raises(ValueError):
            weights(0, bad)


def test_sum_vs_mean_and_no_images():
    t = torch.tensor([1.0, 0.0])
    imgs = torch.tensor([[0.0, 1.0]] * 3)
    s = fuse(t, imgs, 0, "paper", "sum", normalize=False)
    m = fuse(t, imgs, 0, "paper", "mean", normalize=False)
    assert torch.allclose(s, torch.tensor([0.7, 0.9]))  # 3 x 0.3: the images weigh 3x beta
    assert torch.allclose(m, torch.tensor([0.7, 0.3]))
    assert torch.equal(fuse(t, None, 0), t)
    assert torch.allclose(fuse(t, imgs, 5).norm(), torch.tensor(1.0))


@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize("schedule", ["paper", "released", "const:0.3"])
def test_score_level_equals_embedding_level(reduce, schedule):
    g = torch.Generator().manual_seed(0)
    n = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    corpus = n(torch.randn(400, 24, generator=g))
    for round_idx in range(4):
        text = n(torch.randn(24, generator=g))
        imgs = n(torch.randn(3, 24, generator=g))
        emb = fuse(text, imgs, round_idx, schedule, reduce)
        by_emb = np.argsort(-(corpus @ emb).numpy(), kind="stable")
        by_score = np.argsort(-fused_scores(text, imgs, corpus, round_idx, schedule, reduce).numpy(), kind="stable")
        # Same order up to float rounding: compare target ranks of every item.
        r1 = target_ranks(emb[None].repeat(400, 1), corpus, list(range(400)))
        s = fused_scores(text, imgs, corpus, round_idx, schedule, reduce)
        r2 = (s[None, :] > s[:, None]).sum(1).numpy()
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_array_equal(by_emb[:50], by_score[:50])


def test_batched_fusion():
    text = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    imgs = torch.nn.functional.normalize(torch.randn(5, 3, 8), dim=-1)
    batched = fuse(text, imgs, 2)
    one = torch.stack([fuse(text[i], imgs[i], 2) for i in range(5)])
    assert torch.allclose(batched, one, atol=1e-6)
