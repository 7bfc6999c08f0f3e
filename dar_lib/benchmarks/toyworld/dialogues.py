"""Ten-turn dialogues about a target scene in ChatIR's four styles: visdial, chatgpt, human, flan."""

from __future__ import annotations

import random
from typing import Sequence

from dar_lib.benchmarks.toyworld.facts import parse_dialogue
from dar_lib.benchmarks.toyworld.scenes import COLORS, COUNTS, POSITIONS, SIZES, Obj, Scene
from dar_lib.benchmarks.toyworld.text import article, first_caption, object_phrase

STYLES: tuple[str, ...] = ("visdial", "chatgpt", "human", "flan")
N_TURNS = 10

#: Questions the world cannot answer informatively (VisDial has many), with their answers.
UNINFORMATIVE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("is the picture in color", ("yes", "yes it is")),
    ("is it a photo", ("no, a drawing", "no")),
    ("are there any people", ("no", "no people")),
    ("is there any text", ("no", "no text")),
    ("is it outdoors", ("i can't tell", "not sure")),
    ("does it look like a painting", ("sort of", "no")),
    ("is the image clear", ("yes", "very clear")),
    ("is there a border", ("no",)),
    ("do you like it", ("yes", "it is nice")),
)
_CHATGPT_FILLERS: tuple[tuple[str, str], ...] = (
    ("Is the {ref} the largest object in the image", "yes"),
    ("Do any of the shapes overlap", "no"),
    ("Is the image a drawing or a photograph", "a drawing"),
    ("Are the edges of the {ref} sharp", "yes"),
    ("Is there any texture or pattern in the image", "no, the colors are flat"),
    ("Is there any text or writing in the image", "no"),
    ("Does the image contain any people or animals", "no"),
    ("Is the image in color", "yes"),
    ("Is the {ref} filled with a single solid color", "yes"),
    ("Is there any shadow under the {ref}", "no"),
)
_FLAN_OFF_TARGET: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("what is the color of the sky", COLORS),
    ("what is the color of the grass", COLORS),
    ("what is the person doing", ("standing", "nothing")),
    ("what is the color of the floor", COLORS),
    ("what is the weather like", ("sunny", "cloudy")),
)
_UNSURE = ("not sure", "i don't know", "i can't tell")


def _ref(obj: Obj) -> str:
    return f"{obj.color} {obj.shape}"


def _others_phrase(objs: Sequence[Obj], detail: bool) -> str:
    keys = ("size", "color", "shape", "position") if detail else ("color", "shape")
    return " and ".join(object_phrase({k: getattr(o, k) for k in keys}) for o in objs)


def _plan(scene: Scene, d0: str, rng: random.Random) -> list[tuple]:
    """The informative questions for a scene, as (kind, object index) in a default order."""
    said = parse_dialogue([d0])
    primary = said.objects[0] if said.objects else {}
    plan: list[tuple] = []
    if said.background is None:
        plan.append(("background", 0))
    plan.append(("others", 0))
    if "position" not in primary:
        plan.append(("position", 0))
    if "size" not in primary:
        plan.append(("size", 0))
    for j in range(1, len(scene.objects)):
        plan.append(("position", j))
        plan.append(("size", j))
    if len(scene.objects) > 1:
        plan.append(("count", 0))
    return plan


# -- answers -----------------------------------------------------------------------------------
def _value(scene: Scene, kind: str, j: int):
    if kind == "background":
        return scene.background
    if kind == "count":
        return len(scene.objects)
    if kind == "others":
        return scene.objects[1:]
    return getattr(scene.objects[j], kind)


def _corrupt(scene: Scene, kind: str, j: int, value, rng: random.Random):
    """A plausible wrong value: the imperfect answerer's mistake."""
    if kind == "background":
        return rng.choice([c for c in COLORS if c != value])
    if kind == "count":
        return rng.choice([c for c in (1, 2, 3) if c != value])
    if kind == "position":
        return rng.choice([p for p in POSITIONS if p != value])
    if kind == "size":
        return rng.choice([s for s in SIZES if s != value])
    if kind == "others" and value:
        o = value[0]
        wrong = Obj(o.shape, rng.choice([c for c in COLORS if c not in (o.color, scene.background)]), o.size, o.position)
        return (wrong,) + tuple(value[1:])
    return value


def _say(kind: str, value, style: str, rng: random.Random, scene: Scene, j: int) -> str:
    """An answer in the style's register: short (visdial, human, flan) or full sentences (chatgpt)."""
    long = style == "chatgpt"
    if kind == "background":
        return f"the background is {value}" if long else rng.choice((value, value, f"it is {value}"))
    if kind == "count":
        word = COUNTS[value - 1]
        return f"there are {word} objects in total" if long else word
    if kind == "others":
        if not value:
            return "no, there are no other objects" if long else rng.choice(("no", "nothing else", "no other objects"))
        if long:
            return f"yes, {COUNTS[len(value) - 1]} other {'object' if len(value) == 1 else 'objects'}: " + _others_phrase(value, True)
        return _others_phrase(value, detail=rng.random() < 0.3)
    if kind == "position":
        if long:
            return f"the {_ref(scene.objects[j])} is in the {value} of the image"
        return rng.choice((value, value, f"in the {value}", f"{value} corner" if " " in value and "middle" not in value else value))
    if kind == "size":
        if long:
            return f"the {_ref(scene.objects[j])} is {value}"
        return rng.choice((value, value, f"{value} sized", f"it is {value}"))
    raise ValueError(kind)


def _question(kind: str, j: int, scene: Scene, style: str, rng: random.Random) -> str:
    ref = _ref(scene.objects[j])
    if style == "chatgpt":
        table = {
            "background": ("What is the color of the background in the image", "Can you describe the background color of the image"),
            "others": (f"Are there any other objects in the image besides the {ref}", "Can you describe the other objects in the image"),
            "position": (f"Where is the {ref} located in the image", f"In which part of the image is the {ref}"),
            "size": (f"What is the size of the {ref} in the image", f"How big is the {ref} compared to the image"),
            "count": ("How many objects are there in the image in total", "What is the total number of objects in the image"),
        }
    else:
        table = {
            "background": ("what color is the background", "what is the background color", "what color is the background"),
            "others": ("what else is there", "are there other shapes", "anything else"),
            "position": (f"where is the {ref}", f"where is the {ref}", f"what position is the {ref} in"),
            "size": (f"how big is the {ref}", f"what size is the {ref}"),
            "count": ("how many objects are there", "how many shapes do you see"),
        }
    return rng.choice(table[kind])


def make_dialogues(scene: Scene, rng: random.Random) -> dict[str, list[str]]:
    """Caption plus ten "question? answer" turns in each style; all four share the caption D0.

    Args:
        scene: the target scene.
        rng: the only source of randomness (seed it per dialogue).

    Returns:
        style -> ``[D0, "question? answer" x 10]``.
    """
    d0 = first_caption(scene, rng)
    plan = _plan(scene, d0, rng)
    out: dict[str, list[str]] = {}

    # visdial: human-like, a few uninformative questions, informative ones in random order.
    n_uninf = rng.randint(2, 4)
    vis_plan = list(plan)
    rng.shuffle(vis_plan)
    vis_plan = vis_plan[: N_TURNS - n_uninf]
    # People ask about the other objects only once they have heard of them.
    if ("others", 0) in vis_plan:
        vis_plan.remove(("others", 0))
        first_other = next((i for i, (_, j) in enumerate(vis_plan) if j > 0), len(vis_plan))
        vis_plan.insert(rng.randint(0, first_other), ("others", 0))
    fillers = rng.sample(UNINFORMATIVE, N_TURNS - len(vis_plan))
    slots = sorted(rng.sample(range(N_TURNS), len(fillers)))
    vis_q: list[tuple] = []  # (kind, j, question text, fixed answer or None)
    it_plan, it_fill = iter(vis_plan), iter(fillers)
    for t in range(N_TURNS):
        if t in slots:
            q, answers = next(it_fill)
            vis_q.append(("none", 0, q, rng.choice(answers)))
        else:
            kind, j = next(it_plan)
            vis_q.append((kind, j, _question(kind, j, scene, "visdial", rng), None))
    out["visdial"] = [d0] + [
        f"{q}? {fixed if fixed is not None else _say(kind, _value(scene, kind, j), 'visdial', rng, scene, j)}"
        for kind, j, q, fixed in vis_q
    ]

    # chatgpt: targeted and informative first; polite filler questions once everything is known.
    turns = [f"{_question(k, j, scene, 'chatgpt', rng)}? {_say(k, _value(scene, k, j), 'chatgpt', rng, scene, j)}"
             for k, j in plan[:N_TURNS]]
    for q, a in rng.sample(_CHATGPT_FILLERS, N_TURNS - len(turns)):
        turns.append(f"{q.format(ref=_ref(scene.primary))}? {a}")
    out["chatgpt"] = [d0] + turns

    # human: VisDial's questions rotated by one (as in HUMAN_BLIP2), answered by an imperfect answerer.
    rotated = vis_q[-1:] + vis_q[:-1]
    turns = []
    for kind, j, q, fixed in rotated:
        if kind == "none":
            turns.append(f"{q}? {fixed}")
            continue
        r = rng.random()
        if r < 0.08:
            ans = rng.choice(_UNSURE)
        else:
            value = _value(scene, kind, j)
            if r < 0.14:
                value = _corrupt(scene, kind, j, value, rng)
            ans = _say(kind, value, "human", rng, scene, j)
        turns.append(f"{q}? {ans}")
    out["human"] = [d0] + turns

    # flan: a small pool of questions asked again and again, "Answer:" artefacts, off-target turns.
    # Its questions circle around two topics; a third of its turns are about things not in the picture.
    pool = rng.sample(plan, min(2, len(plan)))
    turns = []
    for t in range(N_TURNS):
        r = rng.random()
        if r < 0.35 or not pool:
            q, answers = rng.choice(_FLAN_OFF_TARGET)
            ans = rng.choice(answers)
        else:
            kind, j = rng.choice(pool)
            q = _question(kind, j, scene, "flan", rng)
            ans = _say(kind, _value(scene, kind, j), "flan", rng, scene, j)
            if kind != "others" and rng.random() < 0.5:
                ans = rng.choice(("Answer: {a} {d}", "Answer: {a} Question: What {d}", "{a} Answer: {d}", "Answer: {a}")).format(a=ans, d=d0)
        turns.append(f"{q}? {ans}")
    out["flan"] = [d0] + turns
    return out


def dialogue_rng(seed: int, dialog_idx: int) -> random.Random:
    return random.Random(f"toyworld-dialogue-{seed}-{dialog_idx}")


def dialogue_text(scene: Scene, rng: random.Random, style: str = "visdial", round_idx: int | None = None) -> str:
    """Raw dialogue query text about ``scene``, exactly as ``Dialogue.query_text(round_idx)`` builds it.

    Args:
        scene: the scene the dialogue is about.
        rng: randomness for the dialogue (and the round, when ``round_idx`` is ``None``).
        style: one of :data:`STYLES`.
        round_idx: 0..10, or ``None`` for a random round.

    Returns:
        ``", ".join(dialog[:round_idx + 1])``.
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    dialog = make_dialogues(scene, rng)[style]
    r = rng.randint(0, N_TURNS) if round_idx is None else round_idx
    if not 0 <= r <= N_TURNS:
        raise IndexError(f"round_idx {r} outside 0..{N_TURNS}")
    return ", ".join(dialog[: r + 1])
