"""Rule-based R1/R2 for the toy world: a deterministic stand-in for the paper's LLM reformulator."""

from __future__ import annotations

from typing import Sequence

from dar_lib.benchmarks.toyworld.facts import Facts, TurnReading, parse_dialogue, parse_text, read_turn
from dar_lib.benchmarks.toyworld.text import article, describe, object_phrase
from dar_lib.cachekeys import code_version


class ToyReformulator:
    """R1 and R2 by rules. It stands in for an LLM: it is not one, and understands only the toy world.

    R1 (:meth:`rewrite`) reads a toy dialogue (caption, then ``"question? answer"`` turns) or free
    text a person types with the same parser the reference curves use, skips uninformative and off-target
    turns, "not sure" answers and FLAN's ``"Answer:"`` artefacts, keeps the newest answer when two
    disagree, and writes ONE caption in the canonical, ``full_caption``-like form (fixed fact order),
    stating only the facts known: the same facts always give the same caption, so generation caches hit.
    R2 (:meth:`prompts`) writes K varied prompts with the same facts, in words of the world's
    vocabulary, one of them in the paper's template.

    Examples:
        >>> r = ToyReformulator()
        >>> r.rewrite(["a red circle in the top left", "what color is the background? Answer: blue"])
        'a red circle in the top left on a blue background'
        >>> r.rewrite(["blue background, top left: a red circle"])
        'a red circle in the top left on a blue background'
    """

    id = "toy:rules"

    def facts(self, turns: Sequence[str] | str) -> Facts:
        """The facts a dialogue (list of rounds) or a free-text string states."""
        if isinstance(turns, str):
            return parse_text(turns)
        return parse_dialogue(list(turns))

    def read_turn(self, turns: Sequence[str]) -> TurnReading:
        """How the last of ``turns`` was read: new facts, restated ones, "not sure" or nothing (see
        :func:`~dar_lib.benchmarks.toyworld.facts.read_turn`)."""
        return read_turn(turns)

    def rewrite(self, turns: Sequence[str] | str, *, ref: tuple[str, int] | None = None) -> str:
        """R1: the dialogue so far -> one canonical caption (``ref`` is ignored: nothing is replayed).

        Args:
            turns: caption first, then ``"question? answer"`` turns; or one free-text string.
            ref: unused; part of the :class:`~dar_lib.models.base.Reformulator` protocol.

        Returns:
            e.g. ``"a large red circle in the top left and a small green square in the center on a blue background"``.
        """
        return self.facts(turns).caption()

    def prompts(self, query: str, k: int) -> list[str]:
        """R2: ``k`` prompts for the generator that state the query's facts in varied wording and order.

        Prompt 0 is the canonical caption itself (the generator's training style); the others
        reorder the facts, or follow the paper's template "[Adjective] [Primary Subject] in [Setting],
        [Key Details]. Style: ...". Deterministic: the same query and k give the same prompts.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        f = parse_text(query)
        canonical = f.caption()
        bg = f.background
        objs = [o for o in f.objects if o]
        main = object_phrase(objs[0], with_article=False, with_position=False) if objs else "object"
        where = f", in the {objs[0]['position']}" if objs and objs[0].get("position") else ""
        others = [object_phrase(o) for o in objs[1:]]
        variants = [canonical]
        setting = f"{article(bg)} {bg} background" if bg else "a plain background"
        rest = f", with {' and '.join(others)}" if others else ""
        # The paper's template: "[Adjective] [Primary Subject] in [Setting], [Key Details]. Style: ..."
        variants.append(f"{main} on {setting}{where}{rest}. style: simple flat drawing.")
        if bg:
            variants.append(f"{article(bg)} {bg} background with " + describe(None, objs, f.count))
        else:
            variants.append("picture of " + canonical)
        variants.append(describe(bg, objs[:1], None) + (f", with {' and '.join(others)}" if others else ""))
        variants.append(f"a simple drawing of {canonical}")
        return [variants[i % len(variants)] for i in range(k)]

    def fingerprint(self) -> str:
        """``"toy:rules:code-<16 hex digits>"``: the code of the rules (:func:`dar_lib.cachekeys.code_version`
        of ``"toy_rules"``), so a change to them never replays outputs cached by the old rules."""
        return f"{self.id}:code-{code_version('toy_rules')}"
