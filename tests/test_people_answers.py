"""Answers as people write them (issue 31 item 3): how the toy reader takes each reply a person types
in the live session, and a questioner that never asks the same question twice.

Every row starts from the description "a red circle on a blue background" (background blue, one known
object: a red circle, count unknown), asks one question and types one answer. ``kind`` is how the
reader took the answer (:func:`dar_lib.benchmarks.toyworld.facts.read_turn`): ``new`` facts (the
changes listed), a ``restated`` fact (already known: acknowledged, nothing changes), ``unused`` (a new
fact, but not an answer to the question asked: shown as not used), ``unsure`` (the person does not
know: nothing changes) or ``unread`` (nothing in it the reader can use).
"""

from __future__ import annotations

import pytest

from dar_lib.benchmarks import toyworld as tw
from dar_lib.benchmarks.toyworld.facts import parse_dialogue, question_slot, read_turn

DESCRIPTION = "a red circle on a blue background"
RED_CIRCLE = {"color": "red", "shape": "circle"}
OTHERS = "what other objects are there?"
COUNT = "how many objects are there?"
WHERE = "where is the red circle?"
BACKGROUND = "what color is the background?"
SIZE = "what size is the red circle?"
COLOUR = "what color is the circle?"
CLOSING = "is there any other detail you can add?"  # asked once every slot's phrasings are used up

ONLY_ONE = {"count": 1}  # the objects stay [red circle]: a count, never a second circle


def with_objects(*others):
    return {"objects": [RED_CIRCLE, *others]}


TABLE = [
    # negations: nothing else
    (OTHERS, "no", "new", ONLY_ONE),
    (OTHERS, "none", "new", ONLY_ONE),
    (OTHERS, "nope", "new", ONLY_ONE),
    (OTHERS, "nothing", "new", ONLY_ONE),
    (OTHERS, "nothing else", "new", ONLY_ONE),
    (OTHERS, "no, there is nothing else", "new", ONLY_ONE),
    (OTHERS, "no other objects", "new", ONLY_ONE),
    (OTHERS, "there are no other objects", "new", ONLY_ONE),
    (OTHERS, "there's nothing else in the picture", "new", ONLY_ONE),
    (OTHERS, "that's all", "new", ONLY_ONE),
    (OTHERS, "that's it", "new", ONLY_ONE),
    # "only one object, the X": a count and a restated object, not a new one
    (OTHERS, "there is only one object, the red circle", "new", ONLY_ONE),
    (OTHERS, "only the red circle", "new", ONLY_ONE),
    (OTHERS, "just the circle", "new", ONLY_ONE),
    (OTHERS, "only one object", "new", ONLY_ONE),
    (OTHERS, "no, just the red circle", "new", ONLY_ONE),
    (OTHERS, "the circle is alone", "new", ONLY_ONE),
    # other objects named
    (OTHERS, "a blue square", "new", with_objects({"color": "blue", "shape": "square"})),
    (OTHERS, "yes, a yellow triangle", "new", with_objects({"color": "yellow", "shape": "triangle"})),
    (OTHERS, "there is also a small green square in the top right", "new",
     with_objects({"size": "small", "color": "green", "shape": "square", "position": "top right"})),
    (OTHERS, "two more: a green square and a yellow cross", "new",
     {"count": 3, **with_objects({"color": "green", "shape": "square"}, {"color": "yellow", "shape": "cross"})}),
    (OTHERS, "just one more, a purple square", "new",
     {"count": 2, **with_objects({"color": "purple", "shape": "square"})}),
    # counts, in words and digits
    (COUNT, "one", "new", ONLY_ONE),
    (COUNT, "just one", "new", ONLY_ONE),
    (COUNT, "just the one", "new", ONLY_ONE),
    (COUNT, "only one object, the red circle", "new", ONLY_ONE),
    (COUNT, "1", "new", ONLY_ONE),
    (COUNT, "2", "new", {"count": 2}),
    (COUNT, "there are two", "new", {"count": 2}),
    (COUNT, "three objects", "new", {"count": 3}),
    (COUNT, "3 objects", "new", {"count": 3}),
    # positions
    (WHERE, "top left", "new", {"objects": [{**RED_CIRCLE, "position": "top left"}]}),
    (WHERE, "in the top left corner", "new", {"objects": [{**RED_CIRCLE, "position": "top left"}]}),
    (WHERE, "it's in the upper left", "new", {"objects": [{**RED_CIRCLE, "position": "top left"}]}),
    (WHERE, "the red circle is in the top left", "new", {"objects": [{**RED_CIRCLE, "position": "top left"}]}),
    (WHERE, "centre", "new", {"objects": [{**RED_CIRCLE, "position": "center"}]}),
    # sizes
    (SIZE, "big", "new", {"objects": [{**RED_CIRCLE, "size": "large"}]}),
    (SIZE, "tiny", "new", {"objects": [{**RED_CIRCLE, "size": "small"}]}),
    (SIZE, "medium-sized", "new", {"objects": [{**RED_CIRCLE, "size": "medium"}]}),
    # a new background, and restated facts: acknowledged, nothing changes
    (BACKGROUND, "green", "new", {"background": "green"}),
    (BACKGROUND, "blue", "restated", {}),
    (BACKGROUND, "it's blue", "restated", {}),
    (BACKGROUND, "the background is blue, as i said", "restated", {}),
    (COLOUR, "red", "restated", {}),
    (COLOUR, "the circle is red", "restated", {}),
    (COLOUR, "red, as i said", "restated", {}),
    (SIZE, "it is on a blue background", "restated", {}),  # another fact than the one asked, already known
    # not knowing is an answer, and never a "no"
    (BACKGROUND, "i don't know", "unsure", {}),
    (BACKGROUND, "not sure", "unsure", {}),
    (BACKGROUND, "no idea", "unsure", {}),
    (OTHERS, "no idea", "unsure", {}),
    (OTHERS, "dunno", "unsure", {}),
    (OTHERS, "i can't remember", "unsure", {}),
    (WHERE, "hard to say", "unsure", {}),
    # corrections: a value after "not" is what the image is not
    (BACKGROUND, "not blue, green", "new", {"background": "green"}),
    (SIZE, "not big, small", "new", {"objects": [{**RED_CIRCLE, "size": "small"}]}),
    (SIZE, "it is not small, it is big", "new", {"objects": [{**RED_CIRCLE, "size": "large"}]}),
    (SIZE, "it isn't small, it's big", "new", {"objects": [{**RED_CIRCLE, "size": "large"}]}),
    (WHERE, "not in the center, top left", "new", {"objects": [{**RED_CIRCLE, "position": "top left"}]}),
    (COUNT, "not one, three", "new", {"count": 3}),
    (BACKGROUND, "not the red one", "unread", {}),  # only what it is not: nothing to search with
    (WHERE, "not in the center", "unread", {}),
    # more than one thing in an answer
    (OTHERS, "just another circle", "new", with_objects({"shape": "circle"})),
    (OTHERS, "a green square, not sure where", "new", with_objects({"color": "green", "shape": "square"})),
    (OTHERS, "a green square, i don't remember its size", "new", with_objects({"color": "green", "shape": "square"})),
    (OTHERS, "a green square, nothing else", "new",
     {"count": 2, **with_objects({"color": "green", "shape": "square"})}),
    (OTHERS, "that\u2019s all", "new", ONLY_ONE),  # a phone's apostrophe
    (CLOSING, "the red circle is big", "new", {"objects": [{**RED_CIRCLE, "size": "large"}]}),  # no second circle
    (CLOSING, "no", "new", ONLY_ONE),
    (CLOSING, "a blue square in the top right", "new",
     with_objects({"color": "blue", "shape": "square", "position": "top right"})),
    # nothing the reader can use
    (WHERE, "hmm", "unread", {}),
    (BACKGROUND, "the weather was nice", "unread", {}),
    (COUNT, "10", "unread", {}),  # no scene has ten objects: not "1"
    (COUNT, "12", "unread", {}),
    (SIZE, "it is on a green background", "unused", {}),  # new, but not what was asked: shown as not used
]


def changes(before: dict, after: dict) -> dict:
    return {k: v for k, v in after.items() if v != before.get(k)}


@pytest.mark.parametrize("question, answer, kind, expected", TABLE, ids=[f"{q[:14]}|{a}" for q, a, _, _ in TABLE])
def test_a_persons_answer_is_read_as_they_meant_it(question, answer, kind, expected):
    turns = [DESCRIPTION, f"{question} {answer}"]
    before = parse_dialogue(turns[:1]).known()
    assert before == {"background": "blue", "count": None, "objects": [RED_CIRCLE]}
    assert changes(before, parse_dialogue(turns).known()) == expected
    reading = read_turn(turns)
    assert reading.kind == kind
    if kind == "new":
        assert reading.facts == expected
    elif kind in ("restated", "unused"):
        assert reading.facts  # what the answer said, shown as "already known" or "not used"
    else:
        assert reading.facts == {}


def test_the_table_holds_at_least_30_phrasings():
    assert len(TABLE) >= 30 and len({(q, a) for q, a, _, _ in TABLE}) == len(TABLE)


def test_restated_facts_name_what_was_said():
    assert read_turn([DESCRIPTION, f"{BACKGROUND} blue"]).facts == {"background": "blue"}
    assert read_turn([DESCRIPTION, f"{COLOUR} the circle is red"]).facts == {"objects": [RED_CIRCLE]}


def test_the_questioner_never_asks_the_same_question_twice():
    """A person who answers nothing usable for 20 rounds is asked 20 different questions, each of which
    the reader maps back to the slot it asks about (so a later answer is read in its place)."""
    questioner = tw.ToyQuestioner()
    for description in (DESCRIPTION, "a picture", "a small green cross in the top right and a red circle"):
        turns, asked = [description], []
        for _ in range(20):
            question = questioner.ask(turns)
            assert question.endswith("?")
            asked.append(question)
            assert question_slot(question)[0] is not None or question in tw.questioner.CLOSING_QUESTIONS, question
            turns.append(f"{question} hmm")
        assert len(set(asked)) == len(asked), asked


def test_every_phrasing_of_a_question_is_read_back_to_its_slot():
    facts = parse_dialogue(["a red circle and a small blue square on a green background"])
    questioner = tw.ToyQuestioner()
    for slot, j in [("background", 0), ("count", 0), ("others", 0), ("position", 0), ("size", 0), ("color", 0),
                    ("shape", 0), ("position", 1), ("size", 1)]:
        for variant in range(questioner.n_variants(slot)):
            question = questioner.phrase(facts, slot, j, variant=variant)
            got_slot, mention, pronoun = question_slot(question)
            assert got_slot == slot, question
            if slot in ("position", "size", "color", "shape"):
                assert mention == {k: facts.objects[j][k] for k in ("color", "shape")}, question
