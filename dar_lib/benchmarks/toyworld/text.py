"""Texts about toy scenes: the canonical caption, COCO-like captions, alt-text and the first caption D0."""

from __future__ import annotations

import random
import re
from typing import Mapping, Sequence

from dar_lib.benchmarks.toyworld.scenes import COUNTS, POSITIONS, Obj, Scene

#: How every text of the world splits into tokens (lower-cased first): words, then punctuation.
TOKEN_PATTERN = re.compile(r"[a-z]+|[^\sa-z]")

#: One partially known object: keys among color, shape, size, position.
ObjFacts = Mapping[str, str]


def tokenize(text: str) -> list[str]:
    """Split text the way :data:`VOCAB` counts words: lower-case words and single punctuation marks."""
    return TOKEN_PATTERN.findall(text.lower())


def article(word: str) -> str:
    """``"an"`` if ``word`` starts with a lower-case vowel letter, else ``"a"`` (``word`` must be non-empty)."""
    return "an" if word[0] in "aeiou" else "a"


def position_phrase(position: str) -> str:
    """``"in the <position>"``, e.g. ``"in the top left"`` for a grid position name."""
    return f"in the {position}"


def object_phrase(obj: ObjFacts, with_article: bool = True, with_position: bool = True) -> str:
    """``"a large red circle in the top left"`` from whatever of the four facts is known."""
    words = [obj[k] for k in ("size", "color") if obj.get(k)]
    words.append(obj.get("shape") or "object")
    text = " ".join(words)
    if with_article:
        text = f"{article(text)} {text}"
    if with_position and obj.get("position"):
        text += " " + position_phrase(obj["position"])
    return text


def _other_key(obj: ObjFacts) -> tuple:
    # A fixed order for the non-salient objects, so the same facts always read the same.
    pos = POSITIONS.index(obj["position"]) if obj.get("position") else len(POSITIONS)
    return (pos, obj.get("color") or "~", obj.get("shape") or "~", obj.get("size") or "~")


def describe(background: str | None, objects: Sequence[ObjFacts], count: int | None = None) -> str:
    """The canonical caption of a set of facts: the generator's and the ``full`` encoder's style.

    Facts always come in the same order (salient object, other objects by grid position, background),
    so the same facts give the same string whatever order they were said in.

    Args:
        background: background colour or ``None`` if unknown.
        objects: partially known objects, the salient one first (may be empty).
        count: number of objects in the scene if known.

    Returns:
        e.g. ``"a large red circle in the top left and a small green square in the center on a blue background"``.
    """
    objects = [o for o in objects if any(o.get(k) for k in ("color", "shape", "size", "position"))]
    parts: list[str] = []
    if objects:
        first = object_phrase(objects[0])
        if count == 1:
            first = "a single " + object_phrase(objects[0], with_article=False)
        parts.append(first)
        parts.extend(object_phrase(o) for o in sorted(objects[1:], key=_other_key))
    if count and not objects:
        parts.append("a single object" if count == 1 else f"{COUNTS[count - 1]} objects")
    elif count and count > len(objects):
        missing = count - len(objects)
        parts.append(f"{COUNTS[missing - 1]} other {'object' if missing == 1 else 'objects'}")
    if len(parts) > 2:
        text = ", ".join(parts[:-1]) + " and " + parts[-1]
    else:
        text = " and ".join(parts)
    if background:
        text = (f"{text} on {article(background)} {background} background" if text
                else f"{article(background)} {background} background")
    return text or "a picture"


def obj_facts(obj: Obj) -> dict[str, str]:
    """All four facts of a scene object as an :data:`ObjFacts` dict: color, shape, size, position."""
    return {"color": obj.color, "shape": obj.shape, "size": obj.size, "position": obj.position}


def full_caption(scene: Scene) -> str:
    """The caption stating every fact of the scene (background, and each object's size, colour, shape, position)."""
    return describe(scene.background, [obj_facts(o) for o in scene.objects], len(scene.objects))


# -- alt-text: short, noisy; never the background colour or sizes ------------------------------
_ALT_PREFIX = ("", "", "", "", "image of ", "picture of ", "clip art of ", "icon of ", "drawing of ", "vector ")
_ALT_SUFFIX = ("", "", "", "", " icon", " image", " clip art", " graphic", " stock picture", " logo", " design")


def alt_text(scene: Scene, rng: random.Random) -> str:
    """A short, noisy, alt-text-like description: object colours and shapes, often a position.

    It never states the background colour or any size: the zero-shot encoder's text tower, learned
    from these, cannot read those facts, though every image shows them.
    """
    objs = list(scene.objects)
    pieces = []
    n_named = 1 if len(objs) == 1 or rng.random() < 0.55 else rng.randint(2, len(objs))
    for o in objs[:n_named]:
        r = rng.random()
        if r < 0.1:
            words = o.shape  # colour dropped, as real alt-text often does
        elif r < 0.17:
            words = f"{o.color} shape"
        else:
            words = f"{o.color} {o.shape}"
        if rng.random() < 0.5:  # v2: alt-text often says where (v1: 20%, too rarely to learn)
            words += rng.choice((f" {o.position}", f" in the {o.position}"))
        pieces.append(words)
    body = " and ".join(pieces)
    if rng.random() < 0.3:
        body = f"{article(body)} {body}"
    return f"{rng.choice(_ALT_PREFIX)}{body}{rng.choice(_ALT_SUFFIX)}".strip()


#: The facts the zero-shot encoder's text side can read (alt-text states nothing else).
ALT_TEXT_FACTS = ("color", "shape", "position")


def partial_caption(scene: Scene, rng: random.Random) -> str:
    """The canonical caption of a random part of the scene's facts: what R1 writes after some rounds.

    The salient object's colour and shape are always stated (every first caption names them); each
    other fact is stated with one probability drawn per call, so the texts range from round-0-like
    ("a red circle") to complete captions.
    """
    p = rng.random()
    objs = list(scene.objects)
    primary = {"color": objs[0].color, "shape": objs[0].shape}
    for k in ("size", "position"):
        if rng.random() < p:
            primary[k] = getattr(objs[0], k)
    others = []
    for o in objs[1:]:
        if rng.random() < p:
            others.append({"color": o.color, "shape": o.shape,
                           **{k: getattr(o, k) for k in ("size", "position") if rng.random() < p}})
    count = len(objs) if rng.random() < 0.6 * p else None
    background = scene.background if rng.random() < p else None
    return describe(background, [primary] + others, count)


# -- COCO-like corpus captions: one sentence, most facts, varied wording -----------------------
_VERBS = ("sits", "is", "appears", "stands")
_WHERE = ("in the {p}", "at the {p}", "in the {p} corner", "in the {p} area")


def _coco_obj(o: Obj, rng: random.Random, full: bool) -> str:
    words = []
    if rng.random() < (0.85 if full else 0.5):
        words.append(o.size)
    if rng.random() < 0.95:
        words.append(o.color)
    words.append(o.shape)
    text = " ".join(words)
    text = f"{article(text)} {text}"
    if rng.random() < (0.9 if full else 0.5):
        text += " " + rng.choice(_WHERE).format(p=o.position)
    return text


def corpus_caption(scene: Scene, rng: random.Random) -> str:
    """A COCO-style one-sentence caption: most facts of the scene, varied wording and order."""
    main = _coco_obj(scene.primary, rng, full=True)
    others = [_coco_obj(o, rng, full=False) for o in scene.objects[1:]]
    bg = scene.background if rng.random() < 0.85 else None
    form = rng.randrange(4)
    if form == 0 or not bg:
        text = main if not others else main + rng.choice((" next to ", " with ", " and ")) + " and ".join(others)
        if bg:
            text += f" on {article(bg)} {bg} background"
    elif form == 1:
        text = f"{article(bg)} {bg} background with {main}" + ("" if not others else " and " + " and ".join(others))
    elif form == 2:
        text = (f"there is {main} on {article(bg)} {bg} background"
                + ("" if not others else ", along with " + " and ".join(others)))
    else:
        text = (f"{main} {rng.choice(_VERBS)} on {article(bg)} {bg} background"
                + ("" if not others else " near " + " and ".join(others)))
    return text[0].upper() + text[1:] + "."


# -- the first caption D0: names the salient object, as VisDial captions do ----------------------
def first_caption(scene: Scene, rng: random.Random) -> str:
    """The dialogue's round-0 caption: the salient object's colour and shape, plus a few more facts."""
    p = scene.primary
    r = rng.random()
    if r < 0.45:
        facts = {"size": p.size, "color": p.color, "shape": p.shape, "position": p.position}
    elif r < 0.7:
        facts = {"color": p.color, "shape": p.shape, "position": p.position}
        return object_phrase(facts) + f" on {article(scene.background)} {scene.background} background" \
            if rng.random() < 0.5 else object_phrase({**facts, "size": p.size})
    elif r < 0.85 and len(scene.objects) > 1:
        o = scene.objects[1]
        return object_phrase({"size": p.size, "color": p.color, "shape": p.shape}) + " and " + \
            object_phrase({"color": o.color, "shape": o.shape})
    else:
        facts = {"size": p.size, "color": p.color, "shape": p.shape}
    return object_phrase(facts)
