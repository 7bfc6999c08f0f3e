"""Retrieval metrics over per-round target ranks: cumulative Hits@K (ChatIR), Recall@K and BRI (PlugIR).

Ranks are 0-based (rank 0 = the target scored highest) in an array of shape
``(n_dialogues, n_rounds)``; round 0 is the caption alone. A rank may end in ``.5``: the expected
rank of a target tied with other items (:func:`dar_lib.retrieve.target_ranks`).

Examples:
    >>> import numpy as np
    >>> ranks = np.array([[12, 3, 40], [50, 60, 9]])
    >>> cumulative_hits(ranks, k=10).tolist()
    [0.0, 50.0, 100.0]
"""

from __future__ import annotations

import numpy as np


def _check(ranks) -> np.ndarray:
    r = np.asarray(ranks)
    if r.ndim != 2:
        raise ValueError(f"ranks must have shape (n_dialogues, n_rounds), got {r.shape}")
    if r.size == 0:
        raise ValueError("ranks is empty")
    if not np.issubdtype(r.dtype, np.integer):
        if not np.all(np.isfinite(r)) or not np.all(2 * r == np.round(2 * r)):
            raise ValueError("ranks must be whole numbers (or halves, for ties)")
        r = r.astype(np.float64)
    if (r < 0).any():
        raise ValueError("ranks are 0-based and must be >= 0")
    return r


def hits_matrix(ranks, k: int = 10) -> np.ndarray:
    """Per dialogue and round: is the target a cumulative hit (rank < k at some round <= r)?

    Args:
        ranks: 0-based target ranks, shape ``(n_dialogues, n_rounds)``.
        k: the cut-off.

    Returns:
        bool array of the same shape (the per-dialogue values behind :func:`cumulative_hits`).
    """
    return np.logical_or.accumulate(_check(ranks) < k, axis=1)


def cumulative_hits(ranks, k: int = 10) -> np.ndarray:
    """ChatIR's Hits@K per round: a dialogue is a hit at round r if its target ranked < k at any round <= r.

    Args:
        ranks: 0-based target ranks, shape ``(n_dialogues, n_rounds)``.
        k: the cut-off.

    Returns:
        float64 array of ``n_rounds`` percentages (0-100).
    """
    return 100.0 * hits_matrix(ranks, k).mean(axis=0)


def recall_at_k(ranks, k: int = 10) -> np.ndarray:
    """PlugIR's Recall@K per round (not cumulative): ``100 * mean(rank_r < k)``."""
    r = _check(ranks)
    return 100.0 * (r < k).mean(axis=0)


def bri(ranks) -> float:
    """PlugIR's Best log Rank Integral (lower is better).

    Per dialogue: the trapezoid integral over rounds 0..T of ``log(best rank so far + 1)`` (0-based
    ranks) divided by T; averaged over dialogues. With a single round, the value at round 0.
    """
    r = _check(ranks)
    best = np.minimum.accumulate(r, axis=1)
    y = np.log(best + 1.0)
    t = r.shape[1] - 1
    if t == 0:
        return float(y[:, 0].mean())
    integral = (y[:, 1:] + y[:, :-1]).sum(axis=1) / 2.0
    return float((integral / t).mean())


def mean_rank(ranks) -> np.ndarray:
    """Mean 1-based rank per round."""
    return _check(ranks).mean(axis=0) + 1.0


def median_rank(ranks) -> np.ndarray:
    """Median 1-based rank per round."""
    return np.median(_check(ranks), axis=0) + 1.0


def summary(ranks, k: int = 10) -> dict[str, list[float] | float]:
    """All metrics of one method at once (lists are per round)."""
    return {
        f"hits@{k}": cumulative_hits(ranks, k).tolist(),
        f"recall@{k}": recall_at_k(ranks, k).tolist(),
        "bri": bri(ranks),
        "mean_rank": mean_rank(ranks).tolist(),
        "median_rank": median_rank(ranks).tolist(),
    }
