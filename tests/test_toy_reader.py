"""The toy reader and questioner on a person's phrasings from the live session (issue 17)."""

from __future__ import annotations

from dar_lib.benchmarks.toyworld.facts import parse_dialogue
from dar_lib.benchmarks.toyworld.questioner import ToyQuestioner

CAPTION = "a black square in the bottom left on an orange background"
OTHERS = "what other objects are there?"


def test_no_other_objects_only_the_named_one_adds_no_phantom_object():
    facts = parse_dialogue([CAPTION, f"{OTHERS} no other objects, only the black square"])
    assert facts.objects == [{"color": "black", "shape": "square", "position": "bottom left"}]
    assert facts.count == 1
    assert facts.caption() == "a single black square in the bottom left on an orange background"


def test_one_object_in_total_sets_the_count():
    for question in (OTHERS, "how many objects are there?"):
        facts = parse_dialogue([CAPTION, f"{question} there is one object in total"])
        assert facts.count == 1, question
        assert len(facts.objects) == 1


def test_other_objects_named_are_still_new_objects():
    facts = parse_dialogue([CAPTION, f"{OTHERS} a red circle in the top right"])
    assert len(facts.objects) == 2 and facts.objects[1]["color"] == "red"


def test_questioner_does_not_ask_about_what_an_answer_stated():
    q = ToyQuestioner()
    for answer in ("no other objects, only the black square", "there is one object in total"):
        open_slots = {slot for slot, _ in q.open_questions(parse_dialogue([CAPTION, f"{OTHERS} {answer}"]))}
        assert not open_slots & {"others", "count"}, (answer, open_slots)


def test_questioner_never_repeats_a_question_even_when_the_answer_was_unreadable():
    q = ToyQuestioner()
    turns = [CAPTION]
    asked = []
    for _ in range(4):
        question = q.ask(turns)
        asked.append(question)
        turns.append(f"{question} hmm")
    assert len(set(asked)) == len(asked), asked
