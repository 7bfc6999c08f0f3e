"""How long the toy texts are in tokens: the longest round-10 dialogue a text tower must read."""

from __future__ import annotations

import functools
from typing import Iterable

from dar_lib.benchmarks import toyworld as tw
from dar_lib.toymodels.tokenizer import world_tokenizer


def n_tokens(tokenizer, texts: Iterable[str]) -> list[int]:
    """Token counts (with ``[BOS]`` and ``[EOS]``, untruncated) of ``texts``."""
    return [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]


@functools.lru_cache(maxsize=8)
def longest_dialogue_tokens(n_scenes: int = 2000, seed: int = 0, styles: Iterable[str] | None = None) -> int:
    """The longest round-10 raw dialogue, in tokens, over ``n_scenes`` scenes in every style.

    A raw-dialogue baseline reads ``", ".join(dialog[:11])`` (ChatIR's query text, its ``eval.py``);
    a text tower whose training never reached that many positions has untrained position
    embeddings there.

    Args:
        n_scenes: scenes simulated per style (the world's own dialogue simulator).
        seed: seeds the scenes and dialogues.
        styles: dialogue styles (default: all four; a tuple, as the result is cached per argument).
    """
    import random

    tok = world_tokenizer(max_length=4096)
    scenes = tw.make_scenes(n_scenes, seed=seed)
    longest = 0
    for style in styles or tw.STYLES:
        rng = random.Random(f"longest-{seed}-{style}")
        longest = max(longest,
                      max(n_tokens(tok, (tw.dialogue_text(s, rng, style=style, round_idx=10) for s in scenes))))
    return longest
