"""Two reference curves for cumulative Hits@k on the toy world, computed from the facts a dialogue states.

- :func:`fact_oracle` (the v1 "ceiling", renamed for what it is): a retriever that knows exactly
  which corpus scenes fit the facts said so far and ranks them first, in one random order fixed
  for the dialogue. It is what a perfect *reader* of the dialogue scores when it re-ranks the same
  candidates every round.
- :func:`upper_bound` : the best possible use of the facts said so far under cumulative Hits@k. A
  retriever that also remembers what it already showed shows ``k`` fresh consistent candidates
  every round; no retriever that only knows the stated facts can do better.

Both read facts with the reformulator's parser, so an imperfect answerer's mistakes and "not sure"
answers count, and uninformative turns add nothing.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dar_lib.benchmarks.dialogue import Dialogue
from dar_lib.benchmarks.toyworld.facts import Facts, iter_dialogue
from dar_lib.benchmarks.toyworld.scenes import Scene, scene_table


def readable_part(facts: Facts, readable: Sequence[str] | None) -> Facts:
    """The facts a reader limited to some attributes can use (``None``: all of them).

    Args:
        facts: what the text states.
        readable: attribute names among ``background``, ``count``, ``color``, ``shape``, ``size``,
            ``position`` (e.g. :data:`~dar_lib.benchmarks.toyworld.text.ALT_TEXT_FACTS` for the zero-shot
            encoder, whose text tower never learned backgrounds or sizes).
    """
    if readable is None:
        return facts
    keep = set(readable)
    return Facts(background=facts.background if "background" in keep else None,
                 count=facts.count if "count" in keep else None,
                 objects=[{k: v for k, v in o.items() if k in keep} for o in facts.objects])


def n_consistent(dialogue: Dialogue, scenes: Sequence[Scene] | dict,
                 readable: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per round: how many corpus scenes fit the facts said so far, and whether the target is one.

    Args:
        dialogue: the dialogue (its ``target_id`` indexes ``scenes``).
        scenes: the corpus scenes, or their :func:`scene_table`.
        readable: use only these attributes (see :func:`readable_part`).

    Returns:
        (counts int64 (n_rounds,), target_fits bool (n_rounds,)).
    """
    table = scenes if isinstance(scenes, dict) else scene_table(list(scenes))
    counts, fits = [], []
    for facts in iter_dialogue(dialogue.dialog):
        mask = readable_part(facts, readable).consistent(table)
        counts.append(int(mask.sum()))
        fits.append(bool(mask[dialogue.target_id]))
    return np.array(counts, dtype=np.int64), np.array(fits, dtype=bool)


def _outside(counts: np.ndarray, n_corpus: int, k: int) -> np.ndarray:
    """Hit probability when a wrong answer excluded the target: the slots left after the consistent scenes."""
    return np.minimum(1.0, np.maximum(0.0, k - counts) / np.maximum(1.0, n_corpus - counts))


def oracle_hits(counts: np.ndarray, fits: np.ndarray, n_corpus: int, k: int = 10) -> np.ndarray:
    """Per-round cumulative hit probability of the fact-matching oracle for one dialogue.

    With the target among ``n`` consistent scenes (in one random order fixed for the dialogue) it is
    in the top k with probability ``min(1, k / n)``; if a wrong answer excluded it, with
    ``(k - n) / (N - n)``. Facts only accumulate, so with one fixed order the best round so far
    decides the cumulative hit: the running maximum.

    Args:
        counts: consistent scenes per round (:func:`n_consistent`).
        fits: whether the target is consistent per round.
        n_corpus: corpus size N.
        k: the Hits cut-off.

    Returns:
        float64 ``(n_rounds,)`` probabilities.
    """
    counts = counts.astype(np.float64)
    inside = np.minimum(1.0, k / np.maximum(counts, 1.0))
    return np.maximum.accumulate(np.where(fits, inside, _outside(counts, n_corpus, k)))


def bound_hits(counts: np.ndarray, fits: np.ndarray, n_corpus: int, k: int = 10) -> np.ndarray:
    """Per-round cumulative hit probability of the best retriever that knows the facts and shows fresh candidates.

    At round ``j`` at most ``k j`` of the target's consistent scenes can already have been shown and
    ruled out, so the target is among at least ``n_j - k j`` unshown candidates and the round hits
    with probability at most ``min(1, k / (n_j - k j))``; the cumulative hit is one minus the product
    of the misses. A round whose facts exclude the target contributes the :func:`oracle_hits` term.

    Returns:
        float64 ``(n_rounds,)`` probabilities, never below :func:`oracle_hits`.
    """
    counts = counts.astype(np.float64)
    shown = k * np.arange(len(counts), dtype=np.float64)
    inside = np.minimum(1.0, k / np.maximum(counts - shown, 1.0))
    per_round = np.where(fits, inside, _outside(counts, n_corpus, k))
    return 1.0 - np.cumprod(1.0 - per_round)


def _mean_curve(dialogues: Sequence[Dialogue], scenes: Sequence[Scene], k: int, fn,
                readable: Sequence[str] | None = None) -> np.ndarray:
    if not dialogues:
        raise ValueError("a reference curve needs at least one dialogue")
    table = scene_table(list(scenes))
    n_rounds = max(d.n_rounds for d in dialogues)
    total = np.zeros(n_rounds)
    for d in dialogues:
        hits = fn(*n_consistent(d, table, readable), len(scenes), k)
        # A shorter dialogue keeps its last value for the remaining rounds.
        total += np.concatenate([hits, np.full(n_rounds - len(hits), hits[-1])])
    return 100.0 * total / len(dialogues)


def fact_oracle(dialogues: Sequence[Dialogue], scenes: Sequence[Scene], k: int = 10,
                readable: Sequence[str] | None = None) -> np.ndarray:
    """Cumulative Hits@k per round of the fact-matching oracle (see :func:`oracle_hits`), in percent.

    Args:
        dialogues: dialogues whose ``target_id`` indexes ``scenes``.
        scenes: the corpus scenes.
        k: the cut-off of Hits@k.
        readable: the oracle reads only these attributes (``None``: all; see :func:`readable_part`).

    Returns:
        float64 array of shape (n_rounds,).

    Raises:
        ValueError: no dialogues.

    Examples:
        >>> from dar_lib.benchmarks import toyworld as tw
        >>> bench = tw.build(n_corpus=500, n_dialogues=20)
        >>> tw.fact_oracle(bench.dialogues("chatgpt"), bench.scenes).shape
        (11,)
    """
    return _mean_curve(dialogues, scenes, k, oracle_hits, readable)


def upper_bound(dialogues: Sequence[Dialogue], scenes: Sequence[Scene], k: int = 10,
                readable: Sequence[str] | None = None) -> np.ndarray:
    """Cumulative Hits@k per round of the fresh-candidates bound (see :func:`bound_hits`), in percent.

    Args and Returns: as :func:`fact_oracle`.
    """
    return _mean_curve(dialogues, scenes, k, bound_hits, readable)
