"""The embedded toy world: seeded scenes, renderer, captions, dialogues in ChatIR's four styles, reference curves,
R1/R2."""

from dar_lib.benchmarks.toyworld.build import ToyBenchmark, build, corpus_path, load, target_ids
from dar_lib.benchmarks.toyworld.dialogues import INFORMATIVE_STYLES, STYLES, dialogue_text, make_dialogues
from dar_lib.benchmarks.toyworld.facts import Facts, parse_dialogue, parse_text
from dar_lib.benchmarks.toyworld.oracle import bound_hits, fact_oracle, n_consistent, oracle_hits, upper_bound
from dar_lib.benchmarks.toyworld.questioner import ToyAnswerer, ToyQuestioner
from dar_lib.benchmarks.toyworld.reformulate import ToyReformulator
from dar_lib.benchmarks.toyworld.render import render, render_batch
from dar_lib.benchmarks.toyworld.scenes import (
    ATTRIBUTES,
    COLORS,
    POSITIONS,
    SHAPES,
    SIZES,
    Obj,
    Scene,
    attributes,
    make_scenes,
    scene_table,
)
from dar_lib.benchmarks.toyworld.text import (
    TOKEN_PATTERN,
    alt_text,
    corpus_caption,
    first_caption,
    full_caption,
    tokenize,
)
from dar_lib.benchmarks.toyworld.vocab import VOCAB

__all__ = [
    "ATTRIBUTES", "COLORS", "INFORMATIVE_STYLES", "POSITIONS", "SHAPES", "SIZES", "STYLES", "TOKEN_PATTERN", "VOCAB",
    "Facts", "Obj", "Scene", "ToyAnswerer", "ToyBenchmark", "ToyQuestioner", "ToyReformulator",
    "alt_text", "attributes", "bound_hits", "build", "fact_oracle", "oracle_hits", "upper_bound", "corpus_caption",
    "corpus_path", "dialogue_text",
    "first_caption", "full_caption", "load", "make_dialogues", "make_scenes", "n_consistent",
    "parse_dialogue", "parse_text", "render", "render_batch", "scene_table", "target_ids", "tokenize",
]
