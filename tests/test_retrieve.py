"""Target ranks and top-k against a full argsort, chunking, ties (expected rank, never a free win) and input checks."""

import numpy as np
import pytest
import torch

from dar_lib.errors import EmbeddingError
from dar_lib.retrieve import check_embeddings, target_ranks, top_k


def _norm(x):
    return torch.nn.functional.normalize(x, dim=-1)


def argsort_ranks(q, c, targets):
    """The published evaluations' way: sort all scores, find the target's position."""
    scores = (q @ c.T).numpy()
    order = np.argsort(-scores, axis=1, kind="stable")
    return np.array([int(np.where(order[i] == t)[0][0]) for i, t in enumerate(targets)])


@pytest.mark.parametrize("chunk", [1, 7 * 500, 10**9])
def test_matches_argsort(chunk):
    g = torch.Generator().manual_seed(0)
    c = _norm(torch.randn(500, 32, generator=g))
    q = _norm(torch.randn(41, 32, generator=g))
    targets = torch.randint(0, 500, (41,), generator=g).tolist()
    ranks = target_ranks(q, c, targets, chunk_elements=chunk)
    np.testing.assert_array_equal(ranks, argsort_ranks(q, c, targets))
    assert ranks.dtype == np.float64 and np.all(ranks == np.round(ranks))  # no ties: whole numbers


def test_a_tie_gives_the_expected_rank_under_random_tie_breaking():
    c = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # items 0 and 1 tie for query 0: each is first or second with equal chance -> 0.5;
    # item 3 scores 0.6 -> 2 strictly higher, no tie.
    assert target_ranks(q[[0, 0, 0]], c, [0, 1, 3]).tolist() == [0.5, 0.5, 2.0]
    assert target_ranks(q[[1]], c, [2]).tolist() == [0.0]


def test_an_all_tied_corpus_ranks_the_target_in_the_middle_not_first():
    """A collapsed encoder (every embedding the same) must score at chance, never find every target."""
    n = 1001
    same = torch.nn.functional.normalize(torch.ones(n, 8), dim=-1)
    ranks = target_ranks(same[:5], same, [0, 10, 500, 999, 1000])
    assert ranks.tolist() == [500.0] * 5  # (n - 1) / 2: the mean position under random tie-breaking


@pytest.mark.parametrize("bad, match", [(float("nan"), "NaN"), (float("inf"), "NaN or inf"), (0.0, "zero norm")])
def test_unrankable_embeddings_are_refused_with_a_count(bad, match):
    c = _norm(torch.randn(20, 4, generator=torch.Generator().manual_seed(0)))
    broken = c.clone()
    broken[[3, 7]] = bad
    with pytest.raises(EmbeddingError, match=f"corpus embeddings: 2 of 20 .*{match}"):
        target_ranks(c[:2], broken, [0, 1])
    with pytest.raises(EmbeddingError, match="query embeddings: 2 of 20"):
        top_k(broken, c, 3)
    with pytest.raises(EmbeddingError, match="my encoder"):
        check_embeddings(broken, "my encoder")


def test_accepts_numpy_and_checks_inputs():
    c = np.eye(4, dtype=np.float32)
    assert target_ranks(c, c, [0, 1, 2, 3]).tolist() == [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="target ids"):
        target_ranks(c, c, [0, 1, 2, 4])
    with pytest.raises(ValueError, match="queries but"):
        target_ranks(c, c, [0])
    with pytest.raises(ValueError, match="dim"):
        target_ranks(np.ones((1, 3), np.float32), c, [0])


@pytest.mark.parametrize("chunk", [1, 10**9])
def test_top_k(chunk):
    g = torch.Generator().manual_seed(1)
    c = _norm(torch.randn(300, 16, generator=g))
    q = _norm(torch.randn(9, 16, generator=g))
    ids, vals = top_k(q, c, k=10, chunk_elements=chunk)
    ref = np.argsort(-(q @ c.T).numpy(), axis=1)[:, :10]
    np.testing.assert_array_equal(ids, ref)
    assert (np.diff(vals, axis=1) <= 0).all()
    # The target's rank is its position in the top-k list when it is there.
    ranks = target_ranks(q, c, ids[:, 3])
    assert ranks.tolist() == [3] * 9
