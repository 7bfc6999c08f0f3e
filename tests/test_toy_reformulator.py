"""Toy R1/R2 (canonical captions, artefacts, free text, prompts) and the toy questioner/answerer."""

from __future__ import annotations

import random

from dar_lib.benchmarks import toyworld as tw
from dar_lib.cachekeys import code_version
from dar_lib.models.base import Reformulator

CANON = "a large red circle in the top left and a small green square in the center on a blue background"
Obj = tw.Obj


def test_same_facts_same_caption_whatever_the_order_or_wording():
    r = tw.ToyReformulator()
    a = ["a large red circle in the top left", "what color is the background? blue",
         "what else is there? a small green square in the center"]
    b = ["a red circle", "where is the red circle? top left", "anything else? a green square",
         "how big is the circle? large", "what size is the green square? small",
         "where is the green square? in the middle", "what is the background color? it is blue"]
    assert r.rewrite(a) == r.rewrite(b) == CANON
    scene = tw.Scene("blue", (Obj("circle", "red", "large", "top left"), Obj("square", "green", "small", "center")))
    assert r.rewrite(a) == tw.full_caption(scene)
    assert isinstance(r, Reformulator) and r.fingerprint() == f"toy:rules:code-{code_version('toy_rules')}"


def test_artefacts_uninformative_and_unsure_turns_are_ignored():
    r = tw.ToyReformulator()
    noisy = ["a large red circle in the top left",
             "is the picture in color? yes",
             "what color is the background? Answer: blue a large red circle in the top left",
             "what is the color of the sky? white",
             "where is the green square? not sure",
             "what color is the background? Answer: blue Question: What a large red circle in the top left",
             "what else is there? a small green square in the center",
             "how many shapes do you see? i don't know"]
    assert r.rewrite(noisy) == CANON
    # The newest answer wins when two disagree.
    assert r.rewrite(["a red circle", "what color is the background? white", "what color is the background? blue"]) \
        == "a red circle on a blue background"


def test_free_text_and_joined_query_text():
    r = tw.ToyReformulator()
    assert r.rewrite("big red circle at the top left with a little green square in the centre, "
                     "blue background") == CANON
    assert r.rewrite("blue background, top left: a red circle") == "a red circle in the top left on a blue background"
    bench = tw.build(n_corpus=300, n_dialogues=10, seed=1)
    complete = 0
    for d in bench.dialogues("chatgpt"):
        # The ", "-joined query text reads like the turn list.
        assert r.rewrite(d.query_text(10)) == r.rewrite(list(d.dialog))
        facts = r.facts(list(d.dialog))
        scene = bench.scenes[d.target_id]
        if facts.background and facts.count == len(facts.objects) == len(scene.objects) and \
                all(len(o) == 4 for o in facts.objects):
            # a dialogue that stated every fact reads back as the full caption
            assert r.rewrite(list(d.dialog)) == tw.full_caption(scene)
            complete += 1
    assert complete >= 3
    assert r.rewrite(["a single small orange triangle"]) == "a single small orange triangle"
    assert r.rewrite(["a picture", "how many objects are there? two"]) == "two objects"


def test_prompts_are_varied_deterministic_and_keep_the_facts():
    r = tw.ToyReformulator()
    prompts = r.prompts(CANON, 5)
    assert prompts == r.prompts(CANON, 5) and len(set(prompts)) == 5 and prompts[0] == CANON
    assert any(p.endswith("style: simple flat drawing.") for p in prompts)
    vocab = set(tw.VOCAB)
    for p in prompts:
        assert set(tw.tokenize(p)) <= vocab
        assert r.rewrite(p) == CANON  # the same facts survive every wording
    assert len(r.prompts("a red circle", 7)) == 7


def test_questioner_asks_an_unsettled_splitting_attribute():
    q = tw.ToyQuestioner()
    turns = ["a large red circle in the top left"]
    same_but_bg = [tw.Scene(bg, (Obj("circle", "red", "large", "top left"),))
                   for bg in ("blue", "white", "green", "black")]
    assert q.ask(turns, same_but_bg) == "what color is the background?"
    varied_others = [
        tw.Scene("blue", (Obj("circle", "red", "large", "top left"),)),
        tw.Scene("blue", (Obj("circle", "red", "large", "top left"), Obj("square", "green", "small", "center"))),
        tw.Scene("blue", (Obj("circle", "red", "large", "top left"), Obj("cross", "white", "small", "center"))),
        tw.Scene("blue", (Obj("circle", "red", "large", "top left"), Obj("cross", "white", "small", "center"),
                          Obj("square", "yellow", "small", "bottom left"))),
    ]
    assert q.ask(turns + ["what color is the background? blue"], varied_others) == "what other objects are there?"
    # Without candidates: a fixed order, never a settled fact.
    assert q.ask(turns) == "what color is the background?"
    asked = q.ask(turns + ["what color is the background? blue", "anything else? no"])
    assert "background" not in asked and "other" not in asked


def test_self_play_pins_down_the_target():
    scenes = tw.make_scenes(2000, seed=2)
    table = tw.scene_table(scenes)
    q, rng = tw.ToyQuestioner(), random.Random(0)
    for target in (3, 17, 99):
        answerer = tw.ToyAnswerer(scenes[target])
        turns = [tw.first_caption(scenes[target], rng)]
        for _ in range(10):
            mask = tw.parse_dialogue(turns).consistent(table)
            candidates = [scenes[i] for i in np.flatnonzero(mask)[:10]]
            question = q.ask(turns, candidates)
            turns.append(f"{question} {answerer.answer(question)}")
        mask = tw.parse_dialogue(turns).consistent(table)
        # the target, and only scenes no fact can tell from it (look-alikes of its family)
        assert mask[target]
        assert {tw.full_caption(scenes[i]) for i in np.flatnonzero(mask)} == {tw.full_caption(scenes[target])}
    a = tw.ToyAnswerer(tw.Scene("blue", (Obj("circle", "red", "large", "top left"),
                                         Obj("square", "green", "small", "center"))))
    assert a.answer("where is the green square?") == "center"
    assert a.answer("what size is it?") == "large"
    assert a.answer("how many objects are there?") == "two"
    assert a.answer("is it outdoors?") == "not sure"


import numpy as np  # noqa: E402
