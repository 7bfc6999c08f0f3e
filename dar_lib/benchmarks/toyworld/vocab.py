"""Every token any toy-world text can contain (split by ``tokenize``); the toy tokenizers are built from it."""

from __future__ import annotations

from dar_lib.benchmarks.toyworld.scenes import COLORS, COUNTS, POSITIONS, SHAPES, SIZES

#: Punctuation tokens the texts use (``tokenize`` splits "don't" into "don", "'", "t").
PUNCTUATION = ("'", ",", ".", ":", "?")

_WORDS = """
a along also an and animals answer any anything apart appears are area art at background besides big border
can centre clear clip cloudy color colors colored coloured colour compared contain corner
describe design do does doing don drawing each edges else filled flat floor from graphic grass how i
icon image in is it know largest left like little located location logo look lower many middle
more near next nice no not nothing none number object objects of on only or other outdoors overlap overlapping
painting part pattern people person photo photograph picture plain plus position question right
see setting shadow shape shapes sharp simple single sits size sized sky solid sort standing stands
stock style sunny sure t tell text texture the there thing things tiny to top total under upper
vector very weather what where which with writing yes you
""".split()


def _build() -> list[str]:
    words = set(_WORDS) | set(COLORS) | set(SHAPES) | set(SIZES) | set(COUNTS)
    words |= {s + ("es" if s.endswith("s") else "s") for s in SHAPES}
    for p in POSITIONS:
        words.update(p.split())
    return sorted(words) + list(PUNCTUATION)


#: Lower-case words, sorted, then punctuation tokens.
VOCAB: list[str] = _build()
