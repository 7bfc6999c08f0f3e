"""The toy encoders' towers: the image tower's fact heads and linear-probe floor, the text towers'
long training texts and trained positions reaching the longest round-10 dialogue."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from dar_lib.benchmarks import toyworld as tw
from dar_lib.toymodels import ASSETS, image_tower, train
from dar_lib.toymodels.quality import image_tower_probe, independent_scenes, linear_probe

TEXT_TOWERS = ("clip-full", "clip-zs", "clip-cocoft", "clip-chatir")


# -- pieces ------------------------------------------------------------------------------------------
def test_scene_labels_name_the_salient_object_and_every_cell():
    obj = tw.Obj("square", "red", "large", "top left")
    other = tw.Obj("circle", "blue", "small", "bottom right")
    labels = image_tower.scene_labels([tw.Scene("green", (obj, other))])
    assert labels["shape"][0] == tw.SHAPES.index("square") and labels["count"][0] == 1
    assert labels["background"][0] == tw.COLORS.index("green")
    assert labels["cell0/color"][0] == 1 + tw.COLORS.index("red")
    assert labels["cell8/shape"][0] == 1 + tw.SHAPES.index("circle") and labels["cell8/size"][0] == 1
    assert labels["cell4/color"][0] == 0  # an empty cell is class 0
    sizes = image_tower.head_sizes()
    assert all(int(labels[k].max()) < sizes[k] for k in sizes)


def test_linear_probe_reads_a_planted_feature_and_not_noise():
    rng = np.random.default_rng(0)
    labels = [{"color": random.Random(i).choice(tw.COLORS)} for i in range(600)]
    onehot = np.stack([np.eye(8)[tw.COLORS.index(lab["color"])] for lab in labels])
    x = torch.tensor(np.hstack([onehot + 0.1 * rng.normal(size=onehot.shape), rng.normal(size=(600, 8))]),
                     dtype=torch.float32)
    attrs = {"color": list(tw.COLORS)}
    assert linear_probe(x[:400], labels[:400], x[400:], labels[400:], attributes=attrs)["color"] == 100.0
    noise = torch.tensor(rng.normal(size=(600, 16)), dtype=torch.float32)
    assert linear_probe(noise[:400], labels[:400], noise[400:], labels[400:], attributes=attrs)["color"] < 30
    with pytest.raises(ValueError, match="feature rows"):
        linear_probe(x[:10], labels[:9], x[:5], labels[:5], attributes=attrs)


def test_image_tower_training_lowers_the_loss_deterministically():
    scenes = independent_scenes(64, seed=9)
    images, labels = tw.render_batch(scenes), image_tower.scene_labels(scenes)
    runs = []
    for _ in range(2):
        tower = image_tower.new_image_tower(0, width=32, layers=1)
        runs.append(image_tower.train_image_tower(tower, images, labels, steps=12, batch_size=32, lr=3e-3,
                                                  seed=0, warmup=1, progress=False))
    assert runs[0] == runs[1]
    assert np.mean(runs[0][-3:]) < np.mean(runs[0][:3])


def test_long_training_texts_reach_the_target_and_batches_are_one_kind():
    scene = tw.make_scenes(1, seed=4)[0]
    rng = random.Random(0)
    for _ in range(20):
        text = train.concatenation(lambda r: tw.alt_text(scene, r), rng, 120)
        assert train.n_word_tokens(text) <= 120 and "background" not in text
    lengths = [train.n_word_tokens(train.long_texts()["clip-zs"](scene, rng)) for _ in range(200)]
    assert max(lengths) > 200  # zs's positions are trained as far as a round-10 dialogue reaches
    scenes = tw.make_scenes(32, seed=4)
    fn = train.batch_text_fn("clip-zs", scenes, lambda s, r: tw.alt_text(s, r))
    for _ in range(10):
        n = [train.n_word_tokens(t) for t in fn(np.arange(32), rng)]
        assert max(n) <= 30 or min(n) > 10  # all short alt-text, or all concatenations
    assert train.batch_text_fn("clip-cocoft", scenes, None) is None


def test_n_word_tokens_counts_what_the_world_tokenizer_does():
    from dar_lib.toymodels.textlength import n_tokens
    from dar_lib.toymodels.tokenizer import world_tokenizer

    scene = tw.make_scenes(1, seed=2)[0]
    rng = random.Random(1)
    texts = [tw.dialogue_text(scene, rng, style=s, round_idx=10) for s in tw.STYLES]
    assert n_tokens(world_tokenizer(max_length=1024), texts) == [train.n_word_tokens(t) for t in texts]
