"""The toy encoders' towers: the image tower's fact heads and linear-probe floor, the text towers'
long training texts and trained positions reaching the longest round-10 dialogue."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from dar_lib.benchmarks import toyworld as tw
from dar_lib.toymodels import ASSETS, image_tower
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


def test_longest_dialogue_tokens_is_the_longest_round_10_dialogue():
    from dar_lib.toymodels.textlength import longest_dialogue_tokens, n_tokens
    from dar_lib.toymodels.tokenizer import world_tokenizer

    scenes = tw.make_scenes(5, seed=0)
    tok = world_tokenizer(max_length=4096)
    lengths = []
    for style in tw.STYLES:
        rng = random.Random(f"longest-0-{style}")
        lengths += n_tokens(tok, [tw.dialogue_text(s, rng, style=style, round_idx=10) for s in scenes])
    assert longest_dialogue_tokens(n_scenes=5) == max(lengths) > 25
    assert n_tokens(tok, ["a red circle"]) == [5]  # [BOS] a red circle [EOS]


# -- the shipped towers ----------------------------------------------------------------------------------


def _shipped_embed(name="clip-full"):
    from transformers import CLIPModel

    from dar_lib.toymodels.clip_train import embed_images_array

    model = CLIPModel.from_pretrained(str(ASSETS / name), dtype=torch.float32)
    return lambda images: embed_images_array(model, images)


@pytest.mark.xfail(strict=True, reason="issue 21 open: the shipped v2 image tower's linear probe reads shape at "
                   "41% and position at 20% (measure/toy_image_towers.py); strict, so meeting the floor fails this "
                   "marker and it must be removed")
def test_the_shipped_image_tower_encodes_every_fact_linearly():
    """A linear probe on the locked image tower's frozen embeddings of independent scenes (1,500 to fit,
    500 held out) reads the background, count and the salient object's colour, shape, size and cell:
    a text tower cannot retrieve a fact the image tower does not encode (v2's read shape at 41%)."""
    acc = image_tower_probe(_shipped_embed(), n_fit=1500, n_test=500, seed=17)
    assert set(acc) == set(tw.ATTRIBUTES)
    assert min(acc.values()) >= 95.0, acc


def test_every_variant_shares_the_shipped_image_tower():
    from safetensors.torch import load_file

    ref = load_file(ASSETS / "clip-full" / "model.safetensors")
    for name in TEXT_TOWERS[1:]:
        other = load_file(ASSETS / name / "model.safetensors")
        for key in (k for k in ref if k.startswith(("vision_model.", "visual_projection."))):
            assert torch.equal(ref[key], other[key]), (name, key)


def adjacent_cosine(weight: torch.Tensor, lo: int, hi: int) -> float:
    """Mean cosine between neighbouring position embeddings lo..hi: trained positions vary smoothly,
    untouched ones keep their independent random initialisation (cosine near 0)."""
    w = torch.nn.functional.normalize(weight.float(), dim=1)
    return float((w[lo:hi - 1] * w[lo + 1:hi]).sum(1).mean())


@pytest.mark.xfail(strict=True, reason="issue 21 open: the shipped v2 text towers trained on at most 25 tokens "
                   "(clip-zs) or short captions (clip-full); their positions past 25 keep their initialisation")
@pytest.mark.parametrize("name", ("clip-full", "clip-zs"))
def test_text_towers_positions_are_trained_to_the_longest_dialogue(name):
    """A text tower trained from scratch has trained position embeddings as far as the longest round-10
    dialogue of the data reaches (recomputed here from the world's simulator), not random ones; the
    fine-tunes (cocoft, chatir) start from clip-zs's. Where training.json records the longest training
    text, it reaches that length too."""
    from safetensors.torch import load_file

    from dar_lib.toymodels.textlength import longest_dialogue_tokens

    longest = longest_dialogue_tokens(n_scenes=300)
    pos = load_file(ASSETS / name / "model.safetensors")["text_model.embeddings.position_embedding.weight"]
    assert adjacent_cosine(pos, 0, 25) > 0.15  # trained positions (v2 too): neighbours alike
    assert adjacent_cosine(pos, 25, longest) > 0.1, (name, longest)  # v2: 0.04 (full), -0.01 (zs)
    rec = json.loads((ASSETS / name / "training.json").read_text())
    assert rec.get("max_train_tokens", longest) >= longest, rec
