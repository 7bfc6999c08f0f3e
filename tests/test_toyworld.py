"""The toy world: determinism, rendering, texts, ChatIR-format round trip, style quirks, vocabulary."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from dar_lib.benchmarks import toyworld as tw
from dar_lib.benchmarks.dialogue import parse_dialogues, read_json
from dar_lib.errors import DataError


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return tw.build(n_corpus=500, n_dialogues=20, seed=3, root=tmp_path_factory.mktemp("toy"))


def test_scenes_are_deterministic_and_well_formed():
    a, b, c = tw.make_scenes(300, seed=1), tw.make_scenes(300, seed=1), tw.make_scenes(300, seed=2)
    assert a == b and a != c
    for s in a:
        assert 1 <= len(s.objects) <= 3
        assert len({o.position for o in s.objects}) == len(s.objects)
        assert all(o.color != s.background for o in s.objects)
        assert len({(o.color, o.shape) for o in s.objects}) == len(s.objects)
        # The salient object is strictly the largest, so an image shows which one it is.
        sizes = [tw.SIZES.index(o.size) for o in s.objects]
        assert all(sizes[0] > x for x in sizes[1:])
    assert tw.Scene.from_json(json.loads(json.dumps(a[0].to_json()))) == a[0]


def test_render_is_deterministic_and_shows_the_facts():
    scenes = tw.make_scenes(8, seed=0)
    batch = tw.render_batch(scenes, size=32)
    assert batch.shape == (8, 32, 32, 3) and batch.dtype == np.uint8
    assert np.array_equal(batch, tw.render_batch(tw.make_scenes(8, seed=0)))
    img = tw.render(scenes[0])
    assert img.mode == "RGB" and img.size == (32, 32)
    assert np.array_equal(np.asarray(img), batch[0])
    # A corner pixel is background, the cell centre of the salient object has its colour.
    s = tw.Scene(background="blue", objects=(tw.Obj("square", "red", "large", "top left"),))
    arr = np.asarray(tw.render(s, size=32)).astype(int)
    assert np.abs(arr[31, 31] - [35, 75, 215]).max() <= 1
    assert np.abs(arr[5, 5] - [215, 35, 35]).max() <= 1
    assert tw.render(s, size=64).size == (64, 64)


def test_captions_and_alt_text():
    s = tw.Scene(background="white", objects=(
        tw.Obj("circle", "red", "large", "top left"), tw.Obj("cross", "green", "small", "center")))
    assert tw.full_caption(s) == ("a large red circle in the top left and a small green cross in the center "
                                  "on a white background")
    single = tw.Scene(background="black", objects=(tw.Obj("triangle", "orange", "small", "bottom right"),))
    assert tw.full_caption(single) == "a single small orange triangle in the bottom right on a black background"
    assert tw.attributes(s) == {"background": "white", "color": "red", "shape": "circle", "size": "large",
                                "position": "top left", "count": "two"}
    assert set(tw.attributes(s)) <= set(tw.ATTRIBUTES)
    rng = random.Random(0)
    for scene in tw.make_scenes(300, seed=4):
        alt = tw.tokenize(tw.alt_text(scene, rng))
        assert "background" not in alt and not set(alt) & set(tw.SIZES)
        assert set(alt) & (set(tw.SHAPES) | {"shape"})
    captions = {tw.corpus_caption(s, random.Random(i)) for i in range(20)}
    assert len(captions) > 5 and all(c.endswith(".") and "circle" in c for c in captions)


def test_vocab_covers_every_text():
    vocab = set(tw.VOCAB)
    assert all(w == w.lower() for w in tw.VOCAB) and len(vocab) == len(tw.VOCAB)
    rng, r = random.Random(0), tw.ToyReformulator()
    missing = set()
    for s in tw.make_scenes(300, seed=5):
        texts = [tw.alt_text(s, rng), tw.corpus_caption(s, rng), tw.full_caption(s)]
        texts += [tw.dialogue_text(s, rng, style=st) for st in tw.STYLES]
        for dialog in tw.make_dialogues(s, rng).values():
            q = r.rewrite(dialog)
            texts += [q] + r.prompts(q, 5)
        for t in texts:
            missing |= set(tw.tokenize(t)) - vocab
    assert not missing


def test_build_writes_chatir_format_and_is_deterministic(bench, tmp_path):
    root = bench.root
    corpus = read_json(root / "Search_Space.json")
    assert corpus[:2] == ["toy/00000000.png", "toy/00000001.png"] and len(corpus) == 500
    index = {p: i for i, p in enumerate(corpus)}
    for style in tw.STYLES:
        records = read_json(root / f"{style}.json")
        assert len(records) == 20 and set(records[0]) == {"img", "dialog"}
        dialogues = parse_dialogues(records, index, root / f"{style}.json")  # ChatIR's loader path, 11 rounds
        assert all(d.n_rounds == 11 for d in dialogues)
        assert dialogues == bench.dialogues(style)
    # Same targets, same caption D0, in every style, as ChatIR's four sets.
    first = [(d.target_id, d.caption) for d in bench.dialogues("visdial")]
    assert all([(d.target_id, d.caption) for d in bench.dialogues(s)] == first for s in tw.STYLES)
    again = tw.build(n_corpus=500, n_dialogues=20, seed=3, root=tmp_path / "again")
    for name in ["Search_Space.json", "scenes.json"] + [f"{s}.json" for s in tw.STYLES]:
        assert (root / name).read_bytes() == (again.root / name).read_bytes()
    assert np.array_equal(bench.corpus_images()[:5], tw.render_batch(bench.scenes[:5]))
    # The scene behind each target is the one its dialogue was written about.
    d = bench.dialogues("chatgpt")[0]
    assert tw.parse_dialogue(d.dialog).consistent(tw.scene_table(bench.scenes))[d.target_id]


def test_load_uses_the_cache_and_query_text():
    dialogues = tw.load("flan", n_corpus=300, n_dialogues=10, seed=0)
    root = tw.build(n_corpus=300, n_dialogues=10, seed=0).root
    assert str(root).startswith(str(tw.build.__globals__["settings"].cache_dir()))
    mtime = (root / "flan.json").stat().st_mtime_ns
    assert tw.load("flan", n_corpus=300, n_dialogues=10, seed=0) == dialogues
    assert (root / "flan.json").stat().st_mtime_ns == mtime  # loaded, not rewritten
    scenes = tw.make_scenes(300, seed=0)
    text = tw.dialogue_text(scenes[dialogues[0].target_id], random.Random(1), style="visdial", round_idx=4)
    assert text.count("? ") == 4 and text.startswith(tw.first_caption(scenes[dialogues[0].target_id], random.Random(1)))
    with pytest.raises(ValueError, match="unknown style"):
        tw.dialogue_text(scenes[0], random.Random(0), style="chat")


def test_corrupt_build_is_reported(tmp_path):
    bench = tw.build(n_corpus=50, n_dialogues=5, seed=0, root=tmp_path)
    (tmp_path / "human.json").write_text('[{"img": "toy/99999999.png", "dialog": ["x"]}]')
    with pytest.raises(DataError, match="human.json: record 0"):
        bench.dialogues("human")
    with pytest.raises(ValueError, match="must not exceed"):
        tw.build(n_corpus=5, n_dialogues=6, root=tmp_path / "x")


def test_style_quirks():
    bench = tw.build(n_corpus=2000, n_dialogues=60, seed=0)
    vis, gpt, hum, flan = (bench.dialogues(s) for s in tw.STYLES)
    # human = VisDial's questions rotated by one (a question the rotation would put before its object's
    # introduction becomes an uninformative one), answered by an imperfect answerer.
    wrong = unsure = rotated = 0
    for v, h in zip(vis, hum):
        vq, hq = [q for q, _ in v.turns], [q for q, _ in h.turns]
        rotated += hq[1:] == vq[:-1] or sum(a == b for a, b in zip(hq, vq[-1:] + vq[:-1])) >= 8
        unsure += sum(a in ("not sure", "i don't know", "i can't tell") for _, a in h.turns)
    for h in hum:
        target = bench.scenes[h.target_id]
        wrong += not tw.parse_dialogue(h.dialog).consistent(tw.scene_table([target]))[0]
    assert rotated == len(vis) and unsure > 10 and wrong > 2
    # flan: repeated questions and "Answer:" artefacts; visdial: uninformative questions.
    assert sum(len({q for q, _ in d.turns}) < 10 for d in flan) > 50
    assert sum("Answer:" in t for d in flan for t in d.dialog) > 50
    assert all(sum(q.rstrip("?") in dict(tw.dialogues.UNINFORMATIVE) for q, _ in d.turns) >= 2 for d in vis)
    # chatgpt and visdial: perfect answerers, so their facts never contradict the target.
    table = tw.scene_table(bench.scenes)
    assert all(tw.parse_dialogue(d.dialog).consistent(table)[d.target_id] for d in gpt + vis)


def test_no_question_names_an_object_the_dialogue_has_not_introduced():
    """A real questioner cannot know an object nobody mentioned (the v1 FLAN twin leaked such objects)."""
    from dar_lib.benchmarks.toyworld.information import unintroduced_mentions

    bench = tw.build(n_corpus=3000, n_dialogues=200, seed=2)
    for style in tw.STYLES:
        leaks = [(d.target_id, m) for d in bench.dialogues(style) for m in unintroduced_mentions(d.dialog)]
        assert not leaks, (style, leaks[:3])
    # the check itself catches a leak
    assert unintroduced_mentions(["a red circle", "where is the green square? top left"]) == [
        (1, "where is the green square?")]
    assert unintroduced_mentions(["a red circle", "anything else? a green square",
                                  "where is the green square? top"]) == []


def test_informative_styles_keep_informing_after_round_five():
    """World v2: the R1 query still changes between rounds 5 and 10 in at least 60% of the dialogues of every
    informative style, and each answer adds at most one fact (one object introduced at a time)."""
    from dar_lib.benchmarks.toyworld.information import rounds_adding_facts

    bench = tw.build(n_corpus=3000, n_dialogues=200, seed=0)
    r1 = tw.ToyReformulator()
    for style in tw.INFORMATIVE_STYLES:
        ds = bench.dialogues(style)
        changed = np.mean([r1.rewrite(list(d.dialog[:6])) != r1.rewrite(list(d.dialog)) for d in ds])
        assert changed >= 0.6, (style, changed)
        assert np.mean([len(rounds_adding_facts(d.dialog)) for d in ds]) >= 4
    for d in bench.dialogues("chatgpt")[:50]:
        for j in range(1, d.n_rounds):
            before = tw.parse_dialogue(list(d.dialog[:j])).objects
            after = tw.parse_dialogue(list(d.dialog[: j + 1])).objects
            assert len(after) - len(before) <= 1


def test_corpus_families_share_the_salient_object_and_background():
    rng = random.Random(4)
    fam = tw.scenes.family(rng, 16)
    fam = fam if len(fam) > 1 else tw.scenes.family(rng, 16)
    first = fam[0]
    assert all(s.background == first.background for s in fam)
    assert all((s.primary.shape, s.primary.color, s.primary.size, s.primary.position) ==
               (first.primary.shape, first.primary.color, first.primary.size, first.primary.position) for s in fam)
    assert len({tw.full_caption(s) for s in fam}) > 1  # they differ in the other objects
    assert tw.scenes.family(random.Random(0), 1) == tw.scenes.family(random.Random(0), 1)
