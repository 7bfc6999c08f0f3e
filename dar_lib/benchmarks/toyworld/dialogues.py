"""Ten-turn dialogues about a target scene in ChatIR's four styles: visdial, chatgpt, human, flan.

World v2. A dialogue is simulated turn by turn from what it has said so far: a question can only
name an object the caption or an earlier answer introduced (a real questioner cannot know the
others), and an answer states one fact at a time (the answer to "is there anything else?" introduces
one more object by its colour and shape; its size and position are asked for later), so the
informative styles keep adding facts to round 10 the way the real sets keep gaining.

The *slots* a dialogue can ask about (:func:`open_slots`): the background, the salient object's
size and position, the number of objects, the next not-yet-introduced object, and the size and
position of each introduced object.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence

from dar_lib.benchmarks.toyworld.facts import parse_dialogue
from dar_lib.benchmarks.toyworld.scenes import COLORS, COUNTS, POSITIONS, SIZES, Scene
from dar_lib.benchmarks.toyworld.text import first_caption

STYLES: tuple[str, ...] = ("visdial", "chatgpt", "human", "flan")
#: The styles whose questions keep adding facts (FLAN's circle around two topics by design).
INFORMATIVE_STYLES: tuple[str, ...] = ("visdial", "chatgpt", "human")
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
#: The imperfect answerer of the human style: how often it is unsure, and how often it is wrong.
P_UNSURE, P_WRONG = 0.06, 0.04


@dataclass
class Said:
    """What a dialogue has stated so far about its scene (the simulation's ground truth).

    Attributes:
        objects: scene object index -> the attributes stated for it (introduced objects only).
        background: the background was stated.
        count: the number of objects was stated (or follows from "nothing else").
    """

    objects: dict[int, set] = field(default_factory=dict)
    background: bool = False
    count: bool = False

    @classmethod
    def from_caption(cls, scene: Scene, caption: str) -> "Said":
        """What the caption D0 states (parsed with the world's own parser)."""

        facts = parse_dialogue([caption])
        said = cls(background=facts.background is not None, count=facts.count is not None)
        for j, obj in enumerate(facts.objects):
            said.objects[j] = {k for k in ("color", "shape", "size", "position") if k in obj}
        return said

    def ref(self, scene: Scene, j: int) -> str:
        """How the dialogue names object ``j``: by the facts it has stated ("the green square")."""
        o = scene.objects[j]
        words = [getattr(o, k) for k in ("color", "shape") if k in self.objects[j]]
        return "the " + " ".join(words) if words else "the object"

    def introduced(self) -> list[int]:
        """Scene object indices the dialogue has introduced so far, ascending."""
        return sorted(self.objects)


def open_slots(scene: Scene, said: Said) -> list[tuple[str, int]]:
    """The informative questions a dialogue may still ask, as ``(slot, object index)``.

    Only introduced objects are asked about; ``("others", j)`` asks for the next object, ``j`` being
    the one the answer introduces (the scene's objects in order).
    """
    out: list[tuple[str, int]] = []
    if not said.background:
        out.append(("background", 0))
    for j in said.introduced():
        for attr in ("size", "position"):
            if attr not in said.objects[j]:
                out.append((attr, j))
    nxt = next((j for j in range(len(scene.objects)) if j not in said.objects), None)
    if nxt is not None or not said.count:
        out.append(("others", nxt if nxt is not None else -1))
    if not said.count:
        out.append(("count", 0))
    return out


def _apply(said: Said, scene: Scene, slot: str, j: int) -> None:
    """Record that a correct answer to ``(slot, j)`` was given."""
    if slot == "background":
        said.background = True
    elif slot == "count":
        said.count = True
    elif slot == "others":
        if j < 0:
            said.count = True  # "nothing else": every object is known, so is their number
        else:
            said.objects[j] = {"color", "shape"}
            if len(said.objects) == len(scene.objects) and len(scene.objects) == 1:
                said.count = True
    else:
        said.objects[j].add(slot)


# -- questions and answers -----------------------------------------------------------------------
def _question(slot: str, j: int, scene: Scene, said: Said, style: str, rng: random.Random) -> str:
    if slot == "others":
        known = " and ".join(said.ref(scene, i) for i in said.introduced())
        if style == "chatgpt":
            options = (f"Are there any other objects in the image besides {known}",
                       f"Is there anything else in the image apart from {known}")
        else:
            options = ("what else is there", f"is there anything else besides {known}", "are there other shapes",
                       "anything else")
        return rng.choice(options)
    ref = said.ref(scene, j)
    if style == "chatgpt":
        table = {
            "background": ("What is the color of the background in the image",
                           "Can you describe the background color of the image"),
            "position": (f"Where is {ref} located in the image", f"In which part of the image is {ref}"),
            "size": (f"What is the size of {ref} in the image", f"How big is {ref} compared to the image"),
            "count": ("How many objects are there in the image in total",
                      "What is the total number of objects in the image"),
        }
    else:
        table = {
            "background": ("what color is the background", "what is the background color"),
            "position": (f"where is {ref}", f"what position is {ref} in"),
            "size": (f"how big is {ref}", f"what size is {ref}"),
            "count": ("how many objects are there", "how many shapes do you see"),
        }
    return rng.choice(table[slot])


def _answer(slot: str, j: int, scene: Scene, said: Said, style: str, rng: random.Random,
            value=None) -> str:
    """The answer in the style's register: short (visdial, human, flan) or full sentences (chatgpt).

    ``value`` overrides the true value (the imperfect answerer's mistakes).
    """
    long = style == "chatgpt"
    if slot == "background":
        v = value or scene.background
        return f"the background is {v}" if long else rng.choice((v, v, f"it is {v}"))
    if slot == "count":
        word = COUNTS[(value or len(scene.objects)) - 1]
        return f"there are {word} objects in total" if long else word
    if slot == "others":
        if j < 0:
            return "no, there is nothing else" if long else rng.choice(("no", "nothing else", "no other objects"))
        o = scene.objects[j]
        return f"yes, there is also a {o.color} {o.shape}" if long else rng.choice(
            (f"a {o.color} {o.shape}", f"yes, a {o.color} {o.shape}", f"there is a {o.color} {o.shape}"))
    v = value or getattr(scene.objects[j], slot)
    if slot == "position":
        if long:
            return f"{said.ref(scene, j)} is in the {v} of the image".capitalize()
        return rng.choice((v, v, f"in the {v}", f"{v} corner" if " " in v and "middle" not in v else v))
    if long:
        return f"{said.ref(scene, j)} is {v}".capitalize()
    return rng.choice((v, v, f"{v} sized", f"it is {v}"))


def _corrupt(slot: str, scene: Scene, j: int, rng: random.Random):
    """A plausible wrong value for a background, size, position or count answer (the imperfect answerer)."""
    if slot == "background":
        return rng.choice([c for c in COLORS if c != scene.background])
    if slot == "count":
        return rng.choice([c for c in (1, 2, 3) if c != len(scene.objects)])
    if slot == "position":
        return rng.choice([p for p in POSITIONS if p != scene.objects[j].position])
    if slot == "size":
        return rng.choice([s for s in SIZES if s != scene.objects[j].size])
    return None


# -- the four styles -----------------------------------------------------------------------------
def _informative_turn(scene: Scene, said: Said, style: str, rng: random.Random, order: str) -> tuple | None:
    """Choose and answer one informative question; ``None`` when nothing is left to ask.

    Returns:
        ``(question, slot, j)``; ``said`` is *not* updated (the caller decides what the answer said).
    """
    slots = open_slots(scene, said)
    if not slots:
        return None
    if order == "targeted":
        # ChatGPT works from the scene at large to the details: the background and the salient
        # object first, then how many objects there are, then each other object in turn.
        def rank(slot: str, j: int) -> int:
            if slot == "background" or (j == 0 and slot in ("size", "position")):
                return 0
            return 1 if slot == "count" else 2

        best = min(rank(s, j) for s, j in slots)
        slots = [x for x in slots if rank(*x) == best]
    slot, j = rng.choice(slots)
    return _question(slot, j, scene, said, style, rng), slot, j


def _visdial(scene: Scene, d0: str, rng: random.Random) -> tuple[list[str], list[tuple]]:
    """Human questioner: 2-4 uninformative questions at random turns, informative ones in random order."""
    said = Said.from_caption(scene, d0)
    n_fill = rng.randint(2, 4)
    fill_turns = set(rng.sample(range(N_TURNS), n_fill))
    fillers = iter(rng.sample(UNINFORMATIVE, len(UNINFORMATIVE)))
    turns, asked = [], []
    for t in range(N_TURNS):
        step = None if t in fill_turns else _informative_turn(scene, said, "visdial", rng, "random")
        if step is None:
            q, answers = next(fillers)
            turns.append(f"{q}? {rng.choice(answers)}")
            asked.append(("none", 0, q))
            continue
        q, slot, j = step
        turns.append(f"{q}? {_answer(slot, j, scene, said, 'visdial', rng)}")
        asked.append((slot, j, q))
        _apply(said, scene, slot, j)
    return turns, asked


def _chatgpt(scene: Scene, d0: str, rng: random.Random) -> list[str]:
    """Targeted questions with full-sentence answers; a polite generic question now and then."""
    said = Said.from_caption(scene, d0)
    fill_turns = set(rng.sample(range(1, N_TURNS), rng.randint(1, 3)))
    fillers = iter(rng.sample(_CHATGPT_FILLERS, len(_CHATGPT_FILLERS)))
    ref = said.ref(scene, 0)
    turns = []
    for t in range(N_TURNS):
        step = None if t in fill_turns else _informative_turn(scene, said, "chatgpt", rng, "targeted")
        if step is None:
            q, a = next(fillers)
            turns.append(f"{q.format(ref=ref.removeprefix('the '))}? {a}")
            continue
        q, slot, j = step
        turns.append(f"{q}? {_answer(slot, j, scene, said, 'chatgpt', rng)}")
        _apply(said, scene, slot, j)
    return turns


def _human(scene: Scene, d0: str, asked: Sequence[tuple], rng: random.Random) -> list[str]:
    """VisDial's questions rotated by one (as in HUMAN_BLIP2), answered by an imperfect answerer.

    The rotation moves VisDial's last question to the front; when that question names an object
    the caption did not introduce, a question from the uninformative pool takes its place, so no
    question ever names an unintroduced object.
    """
    said = Said.from_caption(scene, d0)
    rotated = list(asked[-1:]) + list(asked[:-1])
    turns = []
    for t, (slot, j, q) in enumerate(rotated):
        names_object = slot not in ("none", "background", "count", "others")
        if t == 0 and (names_object and j not in said.objects or slot == "others"):
            slot, (q, answers) = "none", rng.choice(UNINFORMATIVE)
            turns.append(f"{q}? {rng.choice(answers)}")
            continue
        if slot == "none":
            fixed = dict(UNINFORMATIVE).get(q, ("no",))
            turns.append(f"{q}? {rng.choice(fixed)}")
            continue
        if names_object and j not in said.objects:
            # the rotation put this question before the answer that introduced its object
            q2, answers = rng.choice(UNINFORMATIVE)
            turns.append(f"{q2}? {rng.choice(answers)}")
            continue
        r = rng.random()
        if r < P_UNSURE:
            turns.append(f"{q}? {rng.choice(_UNSURE)}")
            continue
        wrong = _corrupt(slot, scene, j, rng) if r < P_UNSURE + P_WRONG else None
        turns.append(f"{q}? {_answer(slot, j, scene, said, 'human', rng, value=wrong)}")
        if wrong is None:
            _apply(said, scene, slot, j)
    return turns


def _flan(scene: Scene, d0: str, rng: random.Random) -> list[str]:
    """A small pool of questions asked again and again, "Answer:" artefacts, off-target turns.

    Its questions circle around two topics chosen at the start (among those the caption allows);
    a third of its turns are about things not in the picture.
    """
    said = Said.from_caption(scene, d0)
    pool = rng.sample(open_slots(scene, said), min(2, len(open_slots(scene, said))))
    turns = []
    for _ in range(N_TURNS):
        if rng.random() < 0.35 or not pool:
            q, answers = rng.choice(_FLAN_OFF_TARGET)
            turns.append(f"{q}? {rng.choice(answers)}")
            continue
        slot, j = rng.choice(pool)
        q = _question(slot, j, scene, said, "flan", rng)
        ans = _answer(slot, j, scene, said, "flan", rng)
        if slot != "others" and rng.random() < 0.5:
            ans = rng.choice(("Answer: {a} {d}", "Answer: {a} Question: What {d}", "{a} Answer: {d}",
                              "Answer: {a}")).format(a=ans, d=d0)
        turns.append(f"{q}? {ans}")
    return turns


def make_dialogues(scene: Scene, rng: random.Random) -> dict[str, list[str]]:
    """Caption plus ten "question? answer" turns in each style; all four share the caption D0.

    Args:
        scene: the target scene.
        rng: the only source of randomness (seed it per dialogue).

    Returns:
        style -> ``[D0, "question? answer" x 10]``.
    """
    d0 = first_caption(scene, rng)
    vis, asked = _visdial(scene, d0, rng)
    return {"visdial": [d0] + vis, "chatgpt": [d0] + _chatgpt(scene, d0, rng),
            "human": [d0] + _human(scene, d0, asked, rng), "flan": [d0] + _flan(scene, d0, rng)}


def dialogue_rng(seed: int, dialog_idx: int) -> random.Random:
    """The random stream of one dialogue of a built world."""
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

    Raises:
        ValueError: an unknown style; IndexError: a round outside 0..10.
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    dialog = make_dialogues(scene, rng)[style]
    r = rng.randint(0, N_TURNS) if round_idx is None else round_idx
    if not 0 <= r <= N_TURNS:
        raise IndexError(f"round_idx {r} outside 0..{N_TURNS}")
    return ", ".join(dialog[: r + 1])
