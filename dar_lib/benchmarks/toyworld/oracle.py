"""The best possible Hits@k per round: a retriever that knows exactly which scenes fit what was said."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dar_lib.benchmarks.dialogue import Dialogue
from dar_lib.benchmarks.toyworld.facts import iter_dialogue
from dar_lib.benchmarks.toyworld.scenes import Scene, scene_table


def n_consistent(dialogue: Dialogue, scenes: Sequence[Scene] | dict) -> tuple[np.ndarray, np.ndarray]:
    """Per round: how many corpus scenes fit the facts said so far, and whether the target is one.

    Args:
        dialogue: the dialogue (its ``target_id`` indexes ``scenes``).
        scenes: the corpus scenes, or their :func:`scene_table`.

    Returns:
        (counts int64 (n_rounds,), target_fits bool (n_rounds,)).
    """
    table = scenes if isinstance(scenes, dict) else scene_table(list(scenes))
    counts, fits = [], []
    for facts in iter_dialogue(dialogue.dialog):
        mask = facts.consistent(table)
        counts.append(int(mask.sum()))
        fits.append(bool(mask[dialogue.target_id]))
    return np.array(counts, dtype=np.int64), np.array(fits, dtype=bool)


def expected_hits(counts: np.ndarray, fits: np.ndarray, n_corpus: int, k: int = 10) -> np.ndarray:
    """Per-round cumulative hit probability of the ideal retriever for one dialogue.

    The retriever ranks the consistent scenes first, in one random order fixed for the dialogue,
    then the rest. With the target among ``n`` consistent scenes it is in the top k with
    probability ``min(1, k / n)``; if a wrong answer excluded it, with ``(k - n) / (N - n)``.
    Facts only accumulate, so with one fixed order the best round so far decides the cumulative hit:
    the running maximum.
    """
    counts = counts.astype(np.float64)
    inside = np.minimum(1.0, k / np.maximum(counts, 1.0))
    rest = np.maximum(0.0, k - counts) / np.maximum(1.0, n_corpus - counts)
    per_round = np.where(fits, inside, np.minimum(1.0, rest))
    return np.maximum.accumulate(per_round)


def ceiling(dialogues: Sequence[Dialogue], scenes: Sequence[Scene], k: int = 10) -> np.ndarray:
    """Best possible cumulative Hits@k per round, in percent.

    Facts are parsed from the dialogue TEXT with the reformulator's parser, so an imperfect
    answerer's mistakes and "not sure" answers count, and uninformative turns add nothing.

    Args:
        dialogues: dialogues whose ``target_id`` indexes ``scenes``.
        scenes: the corpus scenes.
        k: the cut-off of Hits@k.

    Returns:
        float64 array of shape (n_rounds,): 100 * mean expected cumulative hit.

    Examples:
        >>> from dar_lib.benchmarks import toyworld as tw
        >>> bench = tw.build(n_corpus=500, n_dialogues=20)
        >>> tw.ceiling(bench.dialogues("chatgpt"), bench.scenes).shape
        (11,)
    """
    if not dialogues:
        raise ValueError("ceiling needs at least one dialogue")
    table = scene_table(list(scenes))
    n_rounds = max(d.n_rounds for d in dialogues)
    total = np.zeros(n_rounds)
    for d in dialogues:
        counts, fits = n_consistent(d, table)
        hits = expected_hits(counts, fits, len(scenes), k)
        # A shorter dialogue keeps its last value for the remaining rounds.
        total += np.concatenate([hits, np.full(n_rounds - len(hits), hits[-1])])
    return 100.0 * total / len(dialogues)
