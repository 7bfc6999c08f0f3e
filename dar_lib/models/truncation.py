"""What an encoder's text limit cuts from a query built of parts (caption, turns or rewrites), counted with its
tokenizer."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def has_text_limit(encoder) -> bool:
    """Whether ``encoder`` exposes a tokenizer and a ``max_length`` to count truncation with."""
    return getattr(encoder, "tokenizer", None) is not None and getattr(encoder, "max_length", None) is not None


def truncation_flags(encoder, parts: Sequence[Sequence[str]], sep: str = ", ") -> tuple[np.ndarray, np.ndarray]:
    """For each query ``sep.join(parts[i])``: is it cut, and is its newest part lost entirely?

    Counted with the encoder's own tokenizer and ``max_length`` (special tokens included, as the
    encoder's tokenizer call counts them) under its truncation policy (``encoder.truncation``:
    ``right`` keeps the first ``max_length`` tokens, as ChatIR's and DAR's released evaluations do;
    ``left`` keeps the last ones). The newest part ``parts[i][-1]`` is *lost* when the kept window
    holds none of its tokens: under right truncation, when the older parts and separators alone fill
    the window (DAR's released ``eval.py`` at late rounds); under left truncation never.

    Args:
        encoder: an encoder with ``tokenizer`` and ``max_length`` (see :func:`has_text_limit`).
        parts: per query, its parts, oldest first (non-empty lists of str).
        sep: the separator the query text joins them with (``", "``, every released evaluation's).

    Returns:
        ``(cut, newest_lost)``: two boolean arrays of ``len(parts)``.

    Raises:
        ValueError: an empty part list, or an encoder without a text limit.
    """
    if not has_text_limit(encoder):
        raise ValueError(f"{getattr(encoder, 'id', encoder)!r} has no tokenizer and max_length "
                         "to count truncation with")
    if any(len(p) == 0 for p in parts):
        raise ValueError("every query needs at least one part")
    if not parts:
        return np.zeros(0, bool), np.zeros(0, bool)
    tok, limit = encoder.tokenizer, int(encoder.max_length)
    side = getattr(encoder, "truncation", "right")

    def lengths(texts: list[str]) -> np.ndarray:
        return np.array([len(x) for x in tok(texts, truncation=False, add_special_tokens=True)["input_ids"]])

    n_special = int(lengths([""])[0])
    budget = limit - n_special  # content tokens the window keeps
    full = lengths([sep.join(str(x) for x in p) for p in parts]) - n_special
    newest = lengths([str(p[-1]) for p in parts]) - n_special
    cut = full > budget
    if side == "right":
        newest_lost = (full - newest) >= budget
    elif side == "left":
        newest_lost = np.zeros(len(parts), bool)
    else:
        raise ValueError(f"{getattr(encoder, 'id', encoder)!r}: truncation = {side!r}; choose right or left")
    return cut, newest_lost & (newest > 0)
