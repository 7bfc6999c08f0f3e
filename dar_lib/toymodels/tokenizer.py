"""A word-level tokenizer over the toy world's vocabulary, loadable offline with ``AutoTokenizer``."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from dar_lib.benchmarks import toyworld as tw

PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
#: Special tokens first, so their ids are fixed: pad 0, unk 1, bos 2, eos 3. CLIP's text model
#: pools at the first ``eos_token_id``; with eos = 3 it does not use its legacy argmax rule.
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = range(4)


def build_tokenizer(vocab: Iterable[str], max_length: int = 128):
    """Build a lower-casing, punctuation-splitting word-level tokenizer.

    Args:
        vocab: every word (and punctuation token) the texts may contain; others map to ``[UNK]``.
        max_length: ``model_max_length`` stored with the tokenizer (text is truncated to it).

    Returns:
        A ``transformers.PreTrainedTokenizerFast`` that adds ``[BOS]`` ... ``[EOS]`` around each text.

    Examples:
        >>> tok = build_tokenizer(["a", "red", "circle", ","])
        >>> tok("A red circle, blue")["input_ids"]
        [2, 4, 5, 6, 7, 1, 3]
    """
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    words: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in vocab:
        word = word.strip().lower()
        if word and word not in words:
            words[word] = len(words)
    tok = Tokenizer(WordLevel(words, unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B {EOS}", special_tokens=[(BOS, BOS_ID), (EOS, EOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=max_length,
        padding_side="right",
        truncation_side="right",
    )


#: Words a person (or a future world version) may use that the sampled texts might not contain.
EXTRA_WORDS = (
    "little tiny big huge upper lower centre plus ring thing things shaped colored coloured background "
    "dark light bright gray grey brown pink cyan left right top bottom middle center corner side "
    "above below beside behind front between with without only just also maybe probably think "
    "four five several some many few first second third main biggest largest smallest"
).split()


def world_vocab(n_scenes: int = 300, seed: int = 0) -> list[str]:
    """``toyworld.VOCAB`` plus every token seen in a seeded sample of the world's texts (all kinds,
    all dialogue styles), sorted, so a word missing from the declared list still gets an id."""
    import random

    words = {w.lower() for w in tw.VOCAB} | set(EXTRA_WORDS)
    rng = random.Random(seed)
    for scene in tw.make_scenes(n_scenes, seed=seed):
        texts = [tw.full_caption(scene), tw.alt_text(scene, rng), tw.corpus_caption(scene, rng),
                 tw.first_caption(scene, rng)]
        texts += [tw.dialogue_text(scene, rng, style=style, round_idx=10) for style in tw.STYLES]
        for text in texts:
            words.update(tw.tokenize(text.lower()))
    return sorted(words)


def world_tokenizer(max_length: int = 128):
    """The tokenizer over the toy world's vocabulary (the one every toy model ships with)."""
    return build_tokenizer(world_vocab(), max_length=max_length)


def save_tokenizer(tokenizer, folder: Path) -> None:
    """Save so that ``AutoTokenizer.from_pretrained(folder)`` loads it offline."""
    tokenizer.save_pretrained(str(folder))


def count_truncated(tokenizer, texts: Iterable[str], max_length: int) -> int:
    """Return how many texts are longer than ``max_length`` tokens (and would be cut)."""
    lengths = [len(ids) for ids in tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
    return sum(n > max_length for n in lengths)
