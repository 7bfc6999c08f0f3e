"""Target ranks and top-k against a full argsort, chunking, ties and input checks."""

import numpy as np
import pytest
import torch

from dar_lib.retrieve import target_ranks, top_k


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
    assert ranks.dtype == np.int64


def test_rank_counts_strictly_higher_and_ties():
    c = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # items 0 and 1 tie for query 0: both have rank 0; item 3 scores 0.6 -> 2 strictly higher.
    assert target_ranks(q[[0, 0, 0]], c, [0, 1, 3]).tolist() == [0, 0, 2]
    assert target_ranks(q[[1]], c, [2]).tolist() == [0]


def test_accepts_numpy_and_checks_inputs():
    c = np.eye(4, dtype=np.float32)
    assert target_ranks(c, c, [0, 1, 2, 3]).tolist() == [0, 0, 0, 0]
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
