"""Read toy-world facts back from text: captions, "question? answer" turns, or free text a person types.

One parser serves the reformulator, the reference curves and the answerer, so whatever the text says
(a wrong answer included) is exactly what they all know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from dar_lib.benchmarks.toyworld.scenes import COLORS, MAX_OBJECTS, POSITIONS, SHAPES, SIZES
from dar_lib.benchmarks.toyworld.text import describe, tokenize

SIZE_WORDS = {"small": "small", "little": "small", "tiny": "small", "medium": "medium",
              "large": "large", "big": "large"}
SHAPE_WORDS = {s: s for s in SHAPES} | {s + ("es" if s.endswith("s") else "s"): s for s in SHAPES}
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "1": 1, "2": 2, "3": 3}
#: "only the red circle", "just one", "the circle is alone": nothing beyond what is named.
_ONLY = {"only", "just", "alone", "solely"}
_NO = {"no", "nothing", "none", "nope", "nah"}
_UNSURE_AFTER_NEGATION = {"sure", "know", "tell", "remember", "recall", "certain"}
#: Words that end what a "not" negates ("not small, it is big", "isn't small but big").
_CONTRACTED_NOT = {"isn", "aren", "wasn", "weren", "doesn", "don", "didn"}
_NEGATION_ENDS = {",", ".", ";", "!", "?", "but", "it", "its", "is", "and"}
#: Words that make "only"/"just" about something new ("just another circle").
_NOT_ONLY = {"another", "also", "more"}
#: Tokens as :func:`~dar_lib.benchmarks.toyworld.text.tokenize` makes them, but a number whole ("10", not 1, 0).
_ANSWER_TOKEN = re.compile(r"\d+|[a-z]+|[^\sa-z\d]")
_ROWS = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}
_COLS = {"left": "left", "right": "right"}
_MIDS = {"middle", "center", "centre"}
_FILLER = {"in", "at", "on", "the", "of", "is", "it", "s", "'", "sits", "located", "placed", "near", "to", "toward",
           "towards"}
_GENERIC = {"object", "objects", "shape", "shapes", "one", "thing", "things"}
_PRONOUNS = {"it", "main", "biggest", "largest", "salient", "big"}
_SKIP = {"answer", "question", ":"}
ATTRS = ("color", "shape", "size", "position")
#: Items of :func:`analyse` that state something about the image.
_FACT_ITEMS = {"obj", "bg", "pos", "color", "size", "count", "count_other", "number", "no", "yes"}


def parse_position(tokens: Sequence[str], i: int) -> tuple[str | None, int]:
    """A grid position starting at ``tokens[i]``: (name, tokens used) or (None, 0)."""
    t = tokens[i]
    nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
    if t in _ROWS:
        if nxt in _COLS:
            return f"{_ROWS[t]} {_COLS[nxt]}", 2
        return f"{_ROWS[t]} middle", 2 if nxt in _MIDS else 1
    if t in _MIDS:
        if nxt in _COLS:
            return f"middle {_COLS[nxt]}", 2
        if nxt in _ROWS:
            return f"{_ROWS[nxt]} middle", 2
        return "center", 1
    if t in _COLS:
        if nxt in _ROWS:  # "left top"
            return f"{_ROWS[nxt]} {_COLS[t]}", 2
        return f"middle {_COLS[t]}", 1
    return None, 0


def analyse(text: str) -> list[tuple]:
    """Tag the facts a piece of text states, in order.

    Returns:
        Items ``("obj", {attr: value})``, ``("bg", colour)``, ``("pos", name)``, ``("color", c)``,
        ``("size", s)``, ``("count", n)``, ``("count_other", n)``, ``("number", n)``, ``("no",)``,
        ``("only",)``, ``("yes",)``, ``("unsure",)``. Numbers are words or whole digits (1-3; "10"
        is no number of this world); "that's all" and "that's it" are a ``no``; "not sure", "don't
        know", "can't tell/remember", "no idea", "dunno", "hard to say" are ``unsure``. What a "not"
        or "isn't" negates, up to a comma, "but" or "it", is left out ("not blue, green" states green).
    """
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")  # a phone's apostrophes
    toks = [t for t in _ANSWER_TOKEN.findall(text) if t not in _SKIP]
    items: list[tuple] = []
    pending: dict[str, str] = {}
    last_obj: dict | None = None
    since_obj = 99

    def flush():
        for k, v in pending.items():
            items.append((k, v))
        pending.clear()

    i = 0
    n = len(toks)
    negated = False  # inside what a "not" negates: values there are what the image is not
    while i < n:
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < n else ""
        if negated:
            if t in _NEGATION_ENDS:
                negated = False
            elif t in COLORS or t in SIZE_WORDS or t in _ONLY or t in NUMBER_WORDS or t == "background":
                i += 2 if nxt == "background" else 1
                continue
            elif t in SHAPE_WORDS or t in _GENERIC:
                pending.clear()
                negated = False
                i += 1
                continue
            else:
                pos, used = parse_position(toks, i)
                if pos:
                    negated = False
                    i += used
                    continue
        if t == "not" or (t == "t" and i >= 2 and toks[i - 1] == "'" and toks[i - 2] in _CONTRACTED_NOT
                          and nxt not in _UNSURE_AFTER_NEGATION):
            flush()
            negated = nxt not in _UNSURE_AFTER_NEGATION
            i += 1
            continue
        if t in COLORS:
            if nxt == "background" or (nxt in ("colored", "coloured") and i + 2 < n and toks[i + 2] == "background"):
                flush()
                items.append(("bg", t))
                i += 2 if nxt == "background" else 3
                continue
            if "color" in pending:
                flush()
            pending["color"] = t
            i += 1
            continue
        if t in SIZE_WORDS:
            if "size" in pending:
                flush()
            pending["size"] = SIZE_WORDS[t]
            i += 1
            continue
        if t in SHAPE_WORDS or (t in _GENERIC and pending and t != "one"):
            obj = dict(pending)
            if t in SHAPE_WORDS:
                obj["shape"] = SHAPE_WORDS[t]
            pending.clear()
            items.append(("obj", obj))
            last_obj, since_obj = obj, 0
            i += 1
            continue
        if t == "background":
            # "the background is blue"
            for j in range(i + 1, min(n, i + 4)):
                if toks[j] in COLORS:
                    flush()
                    items.append(("bg", toks[j]))
                    i = j + 1
                    break
            else:
                i += 1
            continue
        pos, used = parse_position(toks, i)
        if pos:
            flush()
            if last_obj is not None and since_obj <= 4 and "position" not in last_obj:
                last_obj["position"] = pos
            else:
                items.append(("pos", pos))
            i += used
            since_obj = 99
            continue
        flush()
        if t in NUMBER_WORDS:
            rest = toks[i + 1:i + 3]
            if "other" in rest or "more" in rest:
                items.append(("count_other", NUMBER_WORDS[t]))
            elif nxt in _GENERIC and nxt != "one":
                items.append(("count", NUMBER_WORDS[t]))
            else:
                items.append(("number", NUMBER_WORDS[t]))
        elif t == "single":
            items.append(("count", 1))
        elif t in ("unsure", "dunno") or (t in ("idea", "clue") and i > 0 and toks[i - 1] == "no") \
                or (t in _UNSURE_AFTER_NEGATION and i > 0 and toks[i - 1] in ("t", "not", "cannot")) \
                or (t == "hard" and nxt == "to"):
            items.append(("unsure",))
        elif t in _NO and nxt not in ("idea", "clue"):
            items.append(("no",))
        elif t == "that" and toks[i + 1:i + 4] in (["'", "s", "all"], ["'", "s", "it"]) \
                or t == "that" and toks[i + 1:i + 3] in (["is", "all"], ["is", "it"]):
            items.append(("no",))  # "that's all", "that's it"
            i += 4 if nxt == "'" else 3
            continue
        elif t in _ONLY and not _NOT_ONLY & set(toks):
            items.append(("only",))
        elif t == "yes":
            items.append(("yes",))
        if t not in _FILLER:
            since_obj += 1
        i += 1
    flush()
    return items


def question_slot(question: str) -> tuple[str | None, dict | None, bool]:
    """What a question asks: (slot, mentioned object or None, refers to the salient object by pronoun).

    Slots: ``background``, ``count``, ``position``, ``color``, ``size``, ``others``, ``shape`` or ``None``
    (a question the world has no answer for: "is the picture in color?").
    """
    toks = tokenize(question)
    s = set(toks)
    mention = next((it[1] for it in analyse(question) if it[0] == "obj"), None)
    pronoun = bool(s & _PRONOUNS) or ("object" in s and mention is None) or ("shape" in s and mention is None)
    if "picture" in s and "color" in s:
        return None, None, False  # VisDial's classic "is the picture in color?"
    if "background" in s:
        slot = "background"
    elif ("how" in s and "many" in s) or ("number" in s and "of" in s):
        slot = "count"
    elif s & {"where", "position", "located", "location", "part"}:
        slot = "position"
    elif s & {"color", "colour"}:
        slot = "color"
    elif s & {"size", "big", "large", "small"} and not s & {"other", "else", "another"}:
        slot = "size"
    elif s & {"other", "else", "another", "more"}:
        slot = "others"
    elif s & {"shape", "kind", "type"}:
        slot = "shape"
    else:
        return None, None, False
    if slot in ("position", "color", "size", "shape") and mention is None and not pronoun:
        return None, None, False  # off-target: "what color is the sky?"
    return slot, mention, pronoun


@dataclass
class Facts:
    """What a text says about a scene: background, object count and partially known objects.

    ``objects[0]`` is the salient object (the first one a caption names); the others are unordered.
    """

    background: str | None = None
    count: int | None = None
    objects: list[dict] = field(default_factory=list)

    # -- building --------------------------------------------------------------------------
    def resolve(self, mention: dict, others_only: bool = False) -> int:
        """Index of the known object a mention refers to (most shared facts, none conflicting), or a new one.

        No scene holds two objects of one look, so a mention with a known object's colour and shape is
        that object, even where a new one is expected (``others_only``: "anything else? the red circle
        is big" tells the red circle's size)."""
        if "color" in mention and "shape" in mention:
            for idx, obj in enumerate(self.objects):
                if obj.get("color") == mention["color"] and obj.get("shape") == mention["shape"] \
                        and not any(k in obj and obj[k] != v for k, v in mention.items()):
                    obj.update(mention)
                    return idx
        if others_only and not self.objects:
            self.objects.append({})  # the salient object exists even if nothing is known of it
        best, best_score = None, 0
        for idx in range(1 if others_only else 0, len(self.objects)):
            obj = self.objects[idx]
            if any(k in obj and obj[k] != v for k, v in mention.items()):
                continue
            score = sum(1 for k, v in mention.items() if obj.get(k) == v)
            if score > best_score:
                best, best_score = idx, score
        if best is None:
            self.objects.append(dict(mention))
            return len(self.objects) - 1
        self.objects[best].update({k: v for k, v in mention.items() if k not in self.objects[best]})
        return best

    def add_statement(self, text: str) -> None:
        """A caption or free text: the first object named is the salient one."""
        loose_pos = None  # "top left: a red circle" - a position said before its object
        for item in analyse(text):
            kind = item[0]
            if kind == "obj":
                mention = dict(item[1])
                if loose_pos and "position" not in mention:
                    mention["position"], loose_pos = loose_pos, None
                if not self.objects:
                    self.objects.append(mention)
                else:
                    self.resolve(mention)
            elif kind == "bg":
                self.background = item[1]
            elif kind == "count":
                self.count = item[1]
            elif kind == "count_other":
                # "a red circle, a blue square and one other object": beyond the objects named so far
                self.count = max(1, len(self.objects)) + item[1]
            elif kind == "pos":
                if self.objects and "position" not in self.objects[-1]:
                    self.objects[-1]["position"] = item[1]
                else:
                    loose_pos = item[1]

    def add_turn(self, question: str, answer: str) -> None:
        """One "question? answer" turn; uninformative, off-target and "not sure" turns add nothing."""
        items = analyse(answer)
        if any(it[0] == "unsure" for it in items):
            items = [it for it in items if it[0] != "unsure"]
            if not any(it[0] in _FACT_ITEMS for it in items):
                return  # "not sure", "no idea": nothing else said
            # "a green square, not sure where": what is said still counts
        slot, mention, pronoun = question_slot(question)
        if slot is None:
            return
        first = {}
        for it in items:
            first.setdefault(it[0], it)
        objs = [it[1] for it in items if it[0] == "obj"]
        if slot == "background":
            c = (first.get("bg") or first.get("color")
                 or (("color", objs[0]["color"]) if objs and "color" in objs[0] else None))
            if c:
                self.background = c[1]
        elif slot == "count":
            if "count_other" in first:
                self.count = first["count_other"][1] + 1
            else:
                num = first.get("number") or first.get("count")
                if num:
                    self.count = num[1]
                elif "no" in first:
                    self.count = 1
        elif slot == "others":
            # "the red circle is big": a fact said after an object is that object's
            current = None
            for it in items:
                if it[0] == "obj":
                    current = it[1]
                elif it[0] in ("size", "color") and current is not None and it[0] not in current:
                    current[it[0]] = it[1]
            denied = "no" in first and (not objs or items.index(first["no"]) < items.index(("obj", objs[0])))
            if "count_other" in first and objs:
                # "just one more, a blue square": new objects beyond the known ones
                for o in objs:
                    self.resolve(o, others_only=True)
                self.count = max(first["count_other"][1] + 1, len(self.objects))
            elif denied or "only" in first or ("count" in first and objs):
                # "no other objects, only the black square", "there is only one object, the red circle",
                # "just the circle": the objects named are the known ones restated (a new one only if
                # it fits none), and they are all there is (or as many as the count says).
                for o in objs:
                    self.resolve(o)
                self.count = first["count"][1] if "count" in first else max(1, len(self.objects))
            elif objs:
                for o in objs:
                    self.resolve(o, others_only=True)
                if "no" in first:  # "a green square, nothing else": the named ones are all there is
                    self.count = max(1, len(self.objects))
                elif "count_other" in first:
                    self.count = first["count_other"][1] + 1
                elif "count" in first:
                    self.count = first["count"][1]
            elif "count" in first:
                self.count = first["count"][1]  # "there is one object in total"
            elif "no" in first:
                self.count = max(1, len(self.objects))  # "nothing else": the objects known are all there is
            elif "count_other" in first:
                self.count = first["count_other"][1] + 1
            elif "number" in first and "yes" in first:
                self.count = first["number"][1] + 1
        else:
            value = None
            if slot == "position":
                value = (first["pos"][1] if "pos" in first
                         else next((o["position"] for o in objs if "position" in o), None))
            elif slot in ("color", "size"):
                value = first[slot][1] if slot in first else next((o[slot] for o in objs if slot in o), None)
            elif slot == "shape":
                value = next((o["shape"] for o in objs if "shape" in o), None)
            if value is None:
                return
            idx = self.resolve(mention) if mention else (0 if self.objects else self.resolve({}))
            self.objects[idx][slot] = value  # a later answer overrides: the newest word counts
        # Echoed captions (FLAN's artefacts) can only confirm facts of objects already known.
        for it in items:
            if it[0] == "bg" and slot != "background":
                self.background = it[1]

    # -- reading -----------------------------------------------------------------------------
    def caption(self) -> str:
        """The canonical caption of these facts (see :func:`describe`)."""
        return describe(self.background, self.objects, self.count)

    def known(self) -> dict:
        """A copy of the facts as a plain dict: ``{"background", "count", "objects"}`` (objects: list of attr dicts)."""
        return {"background": self.background, "count": self.count, "objects": [dict(o) for o in self.objects]}

    def consistent(self, table: dict[str, np.ndarray]) -> np.ndarray:
        """Boolean mask of the scenes (coded by :func:`scene_table`) that fit every fact."""
        n = len(table["count"])
        mask = np.ones(n, dtype=bool)
        codes = {"color": COLORS, "shape": SHAPES, "size": SIZES, "position": POSITIONS}
        if self.background:
            mask &= table["background"] == COLORS.index(self.background)
        if self.count:
            mask &= table["count"] == self.count
        objects = [o for o in self.objects if o]
        if not self.objects or not self.objects[0]:
            objects = [{}] + objects  # no salient object known: nothing constrains slot 0

        def obj_mask(obj: dict, slot: int) -> np.ndarray:
            m = np.ones(n, dtype=bool)
            for k, v in obj.items():
                m &= table[k][:, slot] == codes[k].index(v)
            return m

        mask &= obj_mask(objects[0], 0)
        others = objects[1:]
        if len(others) > MAX_OBJECTS - 1:
            return np.zeros(n, dtype=bool)
        if len(others) == 1:
            mask &= obj_mask(others[0], 1) | obj_mask(others[0], 2)
        elif len(others) == 2:
            a1, a2, b1, b2 = (obj_mask(others[0], 1), obj_mask(others[0], 2),
                              obj_mask(others[1], 1), obj_mask(others[1], 2))
            mask &= (a1 & b2) | (a2 & b1)
        return mask


def parse_dialogue(turns: Sequence[str]) -> Facts:
    """Facts from a dialogue: caption first, then ``"question? answer"`` turns (or free-text turns).

    Args:
        turns: the raw strings of ``dialog[:round_idx + 1]``; a turn without ``"? "`` is read as a statement.

    Returns:
        The :class:`Facts` the text states (a wrong answer included: the parser cannot know).
    """
    facts = Facts()
    for facts in iter_dialogue(turns):
        pass
    return facts


def iter_dialogue(turns: Sequence[str]):
    """The facts after each turn, parsed incrementally (one :class:`Facts`, updated in place)."""
    facts = Facts()
    for j, turn in enumerate(turns):
        q, sep, a = turn.partition("? ")
        if j == 0 or not sep:
            facts.add_statement(turn)
        else:
            facts.add_turn(q + "?", a)
        yield facts


@dataclass(frozen=True)
class TurnReading:
    """How the reader took one turn (see :func:`read_turn`).

    Attributes:
        kind: ``"new"`` (it changed what is known), ``"restated"`` (it states facts, all already
            known), ``"unused"`` (it states something new, but not as an answer to the question
            asked, so the dialogue reader does not take it), ``"unsure"`` (the person says they do
            not know) or ``"unread"`` (nothing in it the reader can use).
        facts: for ``new`` the entries of :meth:`Facts.known` that changed; for ``restated`` and
            ``unused`` the entries the turn states on its own; empty otherwise.
    """

    kind: str
    facts: dict


_NOTHING_KNOWN = {"background": None, "count": None, "objects": []}


def read_turn(turns: Sequence[str]) -> TurnReading:
    """How the reader took the last of ``turns`` (caption first, then ``"question? answer"`` turns).

    The live session shows it under each answer, so a person sees whether an answer was used, was
    already known ("the background is blue" twice), said "not sure", or could not be read.

    Args:
        turns: the dialogue up to and including the turn to read (at least one).

    Raises:
        ValueError: no turns.
    """
    if not turns:
        raise ValueError("read_turn needs at least one turn")
    turns = list(turns)
    before = parse_dialogue(turns[:-1]).known() if len(turns) > 1 else dict(_NOTHING_KNOWN)
    changed = {k: v for k, v in parse_dialogue(turns).known().items() if v != before[k]}
    if changed:
        return TurnReading("new", changed)
    q, sep, a = turns[-1].partition("? ")
    is_answer = bool(sep) and len(turns) > 1
    if any(item[0] == "unsure" for item in analyse(a if is_answer else turns[-1])):
        return TurnReading("unsure", {})
    # What the turn states on its own: read in its slot, or else (an answer about another fact than
    # the one asked, "it is on an orange background") as a statement that must agree with what is known.
    alone = Facts()
    if is_answer:
        alone.add_turn(q + "?", a)
    stated = {k: v for k, v in alone.known().items() if v != _NOTHING_KNOWN[k]}
    if not stated:
        alone = Facts()
        alone.add_statement(a if is_answer else turns[-1])
        stated = {k: v for k, v in alone.known().items() if v != _NOTHING_KNOWN[k]}
        if stated and not _agrees(stated, before):
            return TurnReading("unused", stated)  # "what size is it? it is on a green background"
    return TurnReading("restated", stated) if stated else TurnReading("unread", {})


def _agrees(stated: dict, known: dict) -> bool:
    """Every stated fact is already known: the same background and count, each stated object's facts
    those of some known object."""
    if any(stated.get(k) is not None and stated[k] != known[k] for k in ("background", "count")):
        return False
    return all(any(all(obj.get(a) == v for a, v in o.items()) for obj in known["objects"])
               for o in stated.get("objects", []))


def parse_text(text: str) -> Facts:
    """Facts from free text (a query a person types, or a ``", "``-joined dialogue)."""
    facts = Facts()
    # A joined dialogue: split back into turns at question marks so answers keep their slots.
    chunks = [c.strip() for c in text.split(", ")] if "? " in text else [text]
    parse = parse_dialogue(chunks) if len(chunks) > 1 else None
    if parse is not None:
        return parse
    facts.add_statement(text)
    return facts
