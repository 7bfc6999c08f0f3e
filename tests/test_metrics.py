"""Metrics against naive reference implementations and hand-made cases."""

import math

import numpy as np
import pytest

from dar_lib import metrics


def naive_hits(ranks, k):
    n, t = len(ranks), len(ranks[0])
    out = []
    for r in range(t):
        hits = sum(1 for d in range(n) if any(ranks[d][j] < k for j in range(r + 1)))
        out.append(100.0 * hits / n)
    return out


def naive_recall(ranks, k):
    n, t = len(ranks), len(ranks[0])
    return [100.0 * sum(ranks[d][r] < k for d in range(n)) / n for r in range(t)]


def naive_bri(ranks):
    total = 0.0
    for row in ranks:
        best, ys = math.inf, []
        for v in row:
            best = min(best, v)
            ys.append(math.log(best + 1))
        t = len(row) - 1
        area = sum((ys[i] + ys[i + 1]) / 2 for i in range(t))
        total += area / t
    return total / len(ranks)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_naive_on_random_ranks(seed):
    rng = np.random.default_rng(seed)
    ranks = rng.integers(0, 60, size=(37, 11))
    lists = ranks.tolist()
    for k in (1, 10, 25):
        np.testing.assert_allclose(metrics.cumulative_hits(ranks, k), naive_hits(lists, k))
        np.testing.assert_allclose(metrics.recall_at_k(ranks, k), naive_recall(lists, k))
    assert metrics.bri(ranks) == pytest.approx(naive_bri(lists))
    np.testing.assert_allclose(metrics.mean_rank(ranks), ranks.mean(0) + 1)
    np.testing.assert_allclose(metrics.median_rank(ranks), np.median(ranks, 0) + 1)


def test_hand_made_cases():
    ranks = np.array([[12, 3, 40], [50, 60, 9], [0, 100, 100], [10, 10, 10]])
    # Cumulative: dialogue 0 hits from round 1 on and stays a hit although round 2 misses.
    assert metrics.cumulative_hits(ranks, 10).tolist() == [25.0, 50.0, 75.0]
    assert metrics.recall_at_k(ranks, 10).tolist() == [25.0, 25.0, 25.0]
    # Rank 10 (0-based) is the 11th place: not in the top 10.
    assert metrics.cumulative_hits([[10]], 10).tolist() == [0.0]
    assert metrics.cumulative_hits([[9]], 10).tolist() == [100.0]


def test_bri_hand_made():
    # best-so-far 3,1,1 -> logs log4, log2, log2 -> trapezoid (log4+log2)/2 + log2 over T=2
    expected = ((math.log(4) + math.log(2)) / 2 + math.log(2)) / 2
    assert metrics.bri([[3, 1, 5]]) == pytest.approx(expected)
    assert metrics.bri([[0, 0, 0]]) == 0.0
    assert metrics.bri([[7]]) == pytest.approx(math.log(8))


@pytest.mark.parametrize("bad", [[1, 2, 3], [[-1, 2]], [[0.25, 1]], [[float("nan"), 1]], np.zeros((0, 3))])
def test_rejects_bad_ranks(bad):
    with pytest.raises(ValueError):
        metrics.cumulative_hits(bad)


def test_half_ranks_of_ties_are_accepted():
    # a target tied with one other item has expected rank r + 0.5
    assert metrics.cumulative_hits([[9.5, 12.0]]).tolist() == [100.0, 100.0]
    assert metrics.cumulative_hits([[10.5, 12.0]]).tolist() == [0.0, 0.0]


def test_summary_keys():
    s = metrics.summary(np.array([[0, 20], [30, 1]]))
    assert s["hits@10"] == [50.0, 100.0]
    assert s["recall@10"] == [50.0, 50.0]
    assert s["median_rank"] == [16.0, 11.5]
