"""A toy questioner (asks what best splits the current candidates) and a perfect answerer for self-play."""

from __future__ import annotations

import math
from collections import Counter
from typing import Sequence

from dar_lib.benchmarks.toyworld.facts import Facts, parse_dialogue, question_slot
from dar_lib.benchmarks.toyworld.scenes import COUNTS, Obj, Scene
from dar_lib.benchmarks.toyworld.text import object_phrase

_PRIMARY_ATTRS = ("color", "shape", "size", "position")
#: Each open slot's question, in the words a person would use; later ones are asked only when an
#: earlier one got no usable answer (a question is never asked twice in a dialogue). Every phrasing
#: is read back to its slot by :func:`~dar_lib.benchmarks.toyworld.facts.question_slot`.
PHRASINGS = {
    "background": ("what color is the background?", "can you tell me the background color?",
                   "which color does the background of the image have?"),
    "count": ("how many objects are there?", "how many objects does the picture show?",
              "what is the number of objects in the image?"),
    "others": ("what other objects are there?", "is there anything else in the picture?",
               "are there any other objects?"),
    "position": ("where is {ref}?", "in which part of the picture is {ref}?", "what is the position of {ref}?"),
    "size": ("what size is {ref}?", "how big is {ref}?", "is {ref} small, medium or large in size?"),
    "color": ("what color is {ref}?", "which color does {ref} have?", "can you tell me the color of {ref}?"),
    "shape": ("what shape is {ref}?", "what kind of shape is {ref}?", "which type of shape is {ref}?"),
}
#: Asked once every slot's phrasings are used up, in this order; then numbered, so never twice.
CLOSING_QUESTIONS = ("is there anything else?", "anything else you remember about the image?",
                     "is there any other detail you can add?")


def _ref(obj: dict) -> str:
    words = [obj[k] for k in ("color", "shape") if obj.get(k)]
    return "the " + (" ".join(words) if words else "object")


def _match(obj: dict, scene: Scene, others_only: bool) -> Obj | None:
    """The scene object a partial description most likely means (None if none fits)."""
    best, best_score = None, -1
    for j, o in enumerate(scene.objects):
        if others_only and j == 0:
            continue
        if any(getattr(o, k) != v for k, v in obj.items()):
            continue
        score = len(obj)
        if score > best_score:
            best, best_score = o, score
    return best


class ToyQuestioner:
    """Asks about a fact the dialogue has not settled, preferring the one that splits the candidates most evenly.

    As in Algorithm 1 line 3 (and PlugIR's questioner): it reads the dialogue with the shared parser,
    lists the open questions (background, count, other objects, missing facts of known objects),
    and, given the current top candidates, picks the question whose answers over the candidates have
    the highest entropy. Without candidates it asks in a fixed order. A question already asked in the
    dialogue is never asked again.
    """

    id = "toy:questioner"

    def open_questions(self, facts: Facts) -> list[tuple[str, int]]:
        """(slot, object index) pairs not yet settled, in the fixed fallback order."""
        out: list[tuple[str, int]] = []
        if facts.background is None:
            out.append(("background", 0))
        primary = facts.objects[0] if facts.objects else {}
        for attr in _PRIMARY_ATTRS:
            if attr not in primary:
                out.append((attr, 0))
        if facts.count is None or len(facts.objects) < facts.count:
            out.append(("others", 0))
        if facts.count is None:
            out.append(("count", 0))
        for j, obj in enumerate(facts.objects[1:], start=1):
            for attr in ("position", "size"):
                if attr not in obj:
                    out.append((attr, j))
        return out

    def _answer_key(self, facts: Facts, slot: str, j: int, scene: Scene):
        if slot == "background":
            return scene.background
        if slot == "count":
            return len(scene.objects)
        if slot == "others":
            return tuple(sorted((o.color, o.shape) for o in scene.objects[1:]))
        obj = scene.primary if j == 0 else _match(facts.objects[j], scene, others_only=True)
        return None if obj is None else getattr(obj, slot)

    def ask(self, turns: Sequence[str], candidates: Sequence[Scene] | None = None) -> str:
        """The next question.

        Args:
            turns: the dialogue so far (caption first, then "question? answer" turns).
            candidates: the retriever's current top scenes; ``None`` asks in the fixed order.

        Returns:
            A question ending in ``"?"``, in the world's vocabulary.
        """
        facts = parse_dialogue(list(turns))
        # Never the same question twice: an answer the reader could not use would be asked for again
        # and again ("what other objects are there?" three turns in a row). Ask about another open
        # slot; when every open slot was asked, ask again in other words; then close.
        asked = {t.partition("? ")[0].strip().lower() + "?" for t in list(turns)[1:] if "? " in t}
        open_slots = self.open_questions(facts)
        options: list[tuple[str, int, int]] = []
        for variant in range(max(map(len, PHRASINGS.values()))):
            options = [(slot, j, variant) for slot, j in open_slots if variant < self.n_variants(slot)
                       and self.phrase(facts, slot, j, variant).lower() not in asked]
            if options:
                break
        if not options:
            closing = [q for q in CLOSING_QUESTIONS if q not in asked]
            n = len(asked) + 1
            return closing[0] if closing else f"is there anything else (question {n})?"
        best = options[0]
        if candidates:
            best_h = -1.0
            for slot, j, variant in options:
                counts = Counter(self._answer_key(facts, slot, j, s) for s in candidates)
                total = sum(counts.values())
                h = -sum(c / total * math.log(c / total) for c in counts.values())
                if h > best_h + 1e-9:
                    best, best_h = (slot, j, variant), h
        return self.phrase(facts, *best)

    @staticmethod
    def n_variants(slot: str) -> int:
        """How many phrasings :meth:`phrase` has for ``slot`` (see :data:`PHRASINGS`)."""
        return len(PHRASINGS[slot])

    def phrase(self, facts: Facts, slot: str, j: int, variant: int = 0) -> str:
        """The question text for one open slot, e.g. ``"where is the red circle?"``.

        Args:
            facts: what the dialogue has said so far; object ``j`` is named by its known colour and
                shape (``"the object"`` when only its size or position is known).
            slot: ``"background"``, ``"count"``, ``"others"``, ``"position"``, ``"size"``, ``"color"``
                or ``"shape"``.
            j: index into ``facts.objects`` of the object asked about; an object with no known facts
                (or beyond the list) is called ``"the main object"``.
            variant: which of the slot's :data:`PHRASINGS` (0: the plainest).

        Returns:
            A question ending in ``"?"``.

        Raises:
            KeyError: an unknown ``slot``.
            IndexError: no such ``variant``.
        """
        ref = _ref(facts.objects[j]) if j < len(facts.objects) and facts.objects[j] else "the main object"
        return PHRASINGS[slot][variant].format(ref=ref)


class ToyAnswerer:
    """A perfect answerer for one target scene (the user simulator of a self-play loop)."""

    def __init__(self, scene: Scene):
        self.scene = scene

    def answer(self, question: str) -> str:
        """Answer a question about the scene truthfully; questions the world cannot answer get "not sure"."""
        slot, mention, _ = question_slot(question)
        scene = self.scene
        if slot is None:
            return "not sure"
        if slot == "background":
            return scene.background
        if slot == "count":
            return COUNTS[len(scene.objects) - 1]
        if slot == "others":
            if len(scene.objects) == 1:
                return "no other objects"
            return " and ".join(object_phrase({"size": o.size, "color": o.color, "shape": o.shape,
                                               "position": o.position})
                                for o in scene.objects[1:])
        obj = _match(mention, scene, others_only=False) if mention else scene.primary
        if obj is None:
            return "not sure"
        return getattr(obj, slot)
