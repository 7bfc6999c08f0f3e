"""Ranking the corpus by cosine similarity: target ranks and top-k, in bounded-memory chunks.

All embeddings are expected L2-normalised, so the dot product is the cosine similarity. Both
functions check their inputs (:func:`check_embeddings`): non-finite or zero-norm rows raise
:class:`~dar_lib.errors.EmbeddingError` instead of producing a rank.

Ties. ChatIR ranks with a descending ``argsort`` and reads the target's position, so a tie is broken
by whatever order the sort leaves (index order for a stable sort): a target tied with the whole
corpus, as under a collapsed encoder, would come first. Here a target's rank is its *expected*
0-based rank under random tie-breaking: the number of items scoring strictly higher plus half the
number of other items with exactly its score (the "average" rank). It is a whole number without
ties, and an all-tied score vector ranks the target in the middle of the corpus, which is chance.

Examples:
    >>> import torch
    >>> corpus = torch.nn.functional.normalize(torch.randn(1000, 64), dim=-1)
    >>> ranks = target_ranks(corpus[:5], corpus, [0, 1, 2, 3, 4])
    >>> ranks.tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dar_lib.errors import EmbeddingError

#: Default number of similarity scores materialised at once (queries x corpus items): 16 MB of
#: fp32. Small chunks stay in cache for the comparison pass, which is then ~3x faster on CPU than
#: with chunks of hundreds of MB, and memory stays bounded.
DEFAULT_CHUNK_ELEMENTS = 4 * 1024 * 1024


def _as_tensor(x, device) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, dim), got shape {tuple(t.shape)}")
    return t.to(device=device, dtype=torch.float32)


def check_embeddings(emb, what: str = "embeddings", atol: float = 1e-3) -> None:
    """Refuse embeddings that cannot be ranked.

    Args:
        emb: ``(n, dim)`` tensor or array.
        what: what they are, for the message (e.g. ``"toy:clip-zs corpus embeddings"``).
        atol: rows with an L2 norm below this count as zero (a collapsed or empty embedding).

    Raises:
        EmbeddingError: naming ``what`` and how many rows are non-finite or have zero norm.
    """
    t = torch.as_tensor(np.asarray(emb) if not isinstance(emb, torch.Tensor) else emb)
    if t.ndim != 2:
        raise ValueError(f"{what}: embeddings must be 2-D (n, dim), got shape {tuple(t.shape)}")
    t = t.float()
    finite = torch.isfinite(t).all(dim=1)
    n_bad = int((~finite).sum())
    if n_bad:
        raise EmbeddingError(f"{what}: {n_bad} of {t.shape[0]} embeddings contain NaN or inf "
                             "(diverged weights, a bad checkpoint import or a half-precision overflow?)")
    n_zero = int((t.norm(dim=1) < atol).sum())
    if n_zero:
        raise EmbeddingError(f"{what}: {n_zero} of {t.shape[0]} embeddings have zero norm (a collapsed encoder?)")


def _rows_per_chunk(n_corpus: int, chunk_elements: int) -> int:
    return max(1, chunk_elements // max(1, n_corpus))


def target_ranks(
    query_emb,
    corpus_emb,
    target_ids: Sequence[int],
    *,
    device: str | torch.device | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> np.ndarray:
    """0-based expected rank of each query's target under random tie-breaking.

    The number of corpus items scoring strictly higher, plus half the number of *other* items
    scoring exactly as the target does (see the module docstring; without ties this is the plain
    0-based rank). Memory stays bounded by ``chunk_elements`` scores whatever the number of queries.

    Args:
        query_emb: ``(n_queries, dim)`` normalised query embeddings (tensor or array).
        corpus_emb: ``(n_corpus, dim)`` normalised corpus embeddings.
        target_ids: the target's corpus id for each query.
        device: where to compute (default: the corpus tensor's device).
        chunk_elements: the most scores held at once.

    Returns:
        float64 array of shape ``(n_queries,)``: whole numbers, or halves where the target ties.

    Raises:
        EmbeddingError: non-finite or zero-norm query or corpus embeddings.
        ValueError: mismatched shapes or target ids outside the corpus.
    """
    corpus = _as_tensor(corpus_emb, device or getattr(corpus_emb, "device", "cpu"))
    queries = _as_tensor(query_emb, corpus.device)
    check_embeddings(corpus, "corpus embeddings")
    check_embeddings(queries, "query embeddings")
    targets = torch.as_tensor(np.asarray(target_ids, dtype=np.int64), device=corpus.device)
    if queries.shape[0] != targets.shape[0]:
        raise ValueError(f"{queries.shape[0]} queries but {targets.shape[0]} target ids")
    if queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"query dim {queries.shape[1]} != corpus dim {corpus.shape[1]}")
    if targets.numel() and (targets.min() < 0 or targets.max() >= corpus.shape[0]):
        raise ValueError(f"target ids must lie in 0..{corpus.shape[0] - 1}")
    out = torch.empty(queries.shape[0], dtype=torch.float64, device=corpus.device)
    step = _rows_per_chunk(corpus.shape[0], chunk_elements)
    with torch.inference_mode():
        for start in range(0, queries.shape[0], step):
            q = queries[start : start + step]
            t = targets[start : start + step]
            scores = q @ corpus.T
            # The target's score computed the same way (from the same matmul row) avoids
            # rounding differences between a separate dot product and the matrix product.
            target_score = scores.gather(1, t[:, None])
            higher = torch.count_nonzero(scores > target_score, dim=1)
            ties = torch.count_nonzero(scores == target_score, dim=1) - 1  # the target ties with itself
            out[start : start + step] = higher.double() + ties.double() / 2
    return out.cpu().numpy()


def top_k(
    query_emb,
    corpus_emb,
    k: int = 10,
    *,
    device: str | torch.device | None = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best corpus items per query, best first.

    Args:
        query_emb: ``(n_queries, dim)`` normalised query embeddings.
        corpus_emb: ``(n_corpus, dim)`` normalised corpus embeddings.
        k: how many items (at most the corpus size).
        device: where to compute (default: the corpus tensor's device).
        chunk_elements: the most scores held at once.

    Returns:
        ``(ids, scores)``: int64 and float32 arrays of shape ``(n_queries, min(k, n_corpus))``.

    Raises:
        EmbeddingError: non-finite or zero-norm query or corpus embeddings.
    """
    corpus = _as_tensor(corpus_emb, device or getattr(corpus_emb, "device", "cpu"))
    queries = _as_tensor(query_emb, corpus.device)
    check_embeddings(corpus, "corpus embeddings")
    check_embeddings(queries, "query embeddings")
    k = min(k, corpus.shape[0])
    ids = np.empty((queries.shape[0], k), dtype=np.int64)
    vals = np.empty((queries.shape[0], k), dtype=np.float32)
    step = _rows_per_chunk(corpus.shape[0], chunk_elements)
    with torch.inference_mode():
        for start in range(0, queries.shape[0], step):
            s = queries[start : start + step] @ corpus.T
            v, i = torch.topk(s, k, dim=1, largest=True, sorted=True)
            ids[start : start + step] = i.cpu().numpy()
            vals[start : start + step] = v.cpu().numpy()
    return ids, vals
