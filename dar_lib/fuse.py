"""Fusion of the query text embedding with the generated images' embeddings (eq. 4 of the paper).

``F_t = alpha_t * E(S_t) + beta_t * SUM_k E(I_t,k)`` with ``alpha_t + beta_t = 1``; the weights
follow a per-round schedule (:mod:`dar_lib.fusion_weights`: ``paper``, ``paper-rounds-0-2``,
``released``, ``const:A``).

With K images the sum weighs the images K times beta; ``image_reduce="mean"`` averages them
instead. Ranking by the cosine of the fused embedding equals ranking by the fused scores
``alpha * q.c + beta * sum_k g_k.c`` (the fused vector's norm is one positive number per query),
so embedding-level and score-level fusion give identical ranks.

Examples:
    >>> fuse(torch.tensor([[1.0, 0.0]]), torch.tensor([[[0.0, 1.0]]]), round_idx=0).round(decimals=3)
    tensor([[0.9190, 0.3940]])"""

from __future__ import annotations

import torch

from dar_lib.fusion_weights import IMAGE_REDUCES, weights


def _check_reduce(image_reduce: str) -> None:
    if image_reduce not in IMAGE_REDUCES:
        raise ValueError(f"image_reduce = {image_reduce!r}: must be one of {', '.join(map(repr, IMAGE_REDUCES))}")


def fuse(
    text_emb: torch.Tensor,
    image_emb: torch.Tensor | None,
    round_idx: int,
    schedule: str = "paper",
    image_reduce: str = "mean",
    normalize: bool = True,
) -> torch.Tensor:
    """Fuse text and image embeddings (eq. 4).

    Args:
        text_emb: ``(dim,)`` or ``(n, dim)`` normalised text embeddings E(S_t).
        image_emb: ``(K, dim)`` or ``(n, K, dim)`` normalised embeddings of the K generated images;
            ``None`` (or K = 0) returns the text embedding alone.
        round_idx: the dialogue round t (chooses the weights).
        schedule: ``"paper"``, ``"released"`` or ``"const:<alpha>"``.
        image_reduce: ``"mean"`` (default, as every results table) or ``"sum"`` (eq. 4 as written).
        normalize: L2-normalise the result (ranking by cosine is unchanged either way).

    Returns:
        The fused embedding with ``text_emb``'s shape.
    """
    if image_emb is None or image_emb.shape[-2] == 0:
        out = text_emb.clone()
    else:
        alpha, beta = weights(round_idx, schedule)
        _check_reduce(image_reduce)
        img = image_emb.sum(dim=-2) if image_reduce == "sum" else image_emb.mean(dim=-2)
        if img.shape != text_emb.shape:
            raise ValueError(f"text {tuple(text_emb.shape)} and images {tuple(image_emb.shape)} do not match")
        out = alpha * text_emb + beta * img
    return torch.nn.functional.normalize(out, dim=-1) if normalize else out


def fused_scores(
    text_emb: torch.Tensor,
    image_emb: torch.Tensor,
    corpus_emb: torch.Tensor,
    round_idx: int,
    schedule: str = "paper",
    image_reduce: str = "mean",
) -> torch.Tensor:
    """Score-level fusion as the official code does it: ``alpha * s_text + beta * reduce_k s_img``.

    Args:
        text_emb: ``(dim,)``; image_emb: ``(K, dim)``; corpus_emb: ``(n_corpus, dim)``.

    Returns:
        ``(n_corpus,)`` scores.
    """
    _check_reduce(image_reduce)
    alpha, beta = weights(round_idx, schedule)
    s_text = corpus_emb @ text_emb
    s_img = corpus_emb @ image_emb.T  # (n_corpus, K)
    s_img = s_img.sum(dim=1) if image_reduce == "sum" else s_img.mean(dim=1)
    return alpha * s_text + beta * s_img
