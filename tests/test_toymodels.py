"""Toy models: tokenizer, CLIP and diffusion training loops, pipeline call contract, factory round trips, shipped assets."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from dar_lib.toymodels import clip_train, diffusion_train
from dar_lib.toymodels.pipeline import ToyDiffusionPipeline
from dar_lib.toymodels.probe import AttributeProbe, accuracy, train_probe
from dar_lib.toymodels.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, build_tokenizer, world_tokenizer

WORDS = "a an red blue green white circle square triangle small large in the top bottom left right on background , . ?".split()


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(WORDS, max_length=32)


@pytest.fixture(scope="module")
def world():
    tw = pytest.importorskip("dar_lib.benchmarks.toyworld")
    scenes = tw.make_scenes(48, seed=3)
    return tw, scenes, tw.render_batch(scenes, size=32)


def tiny_pipeline(tokenizer, seed=0):
    return diffusion_train.new_pipeline(tokenizer, seed=seed, width=16, text_width=32, text_layers=1, text_length=16)


# -- tokenizer ---------------------------------------------------------------------------------
def test_tokenizer_lowercases_splits_punctuation_and_maps_unknown_words(tok):
    ids = tok("A RED circle, on a purple background.")["input_ids"]
    vocab = tok.get_vocab()
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert ids[1:-1] == [vocab["a"], vocab["red"], vocab["circle"], vocab[","], vocab["on"], vocab["a"], UNK_ID,
                         vocab["background"], vocab["."]]
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)


def test_tokenizer_reloads_offline_with_autotokenizer(tok, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(str(tmp_path))
    again = AutoTokenizer.from_pretrained(str(tmp_path))
    texts = ["a small red circle in the top left", "a blue square, what? zebra"]
    a = tok(texts, padding="max_length", max_length=16, truncation=True)
    b = again(texts, padding="max_length", max_length=16, truncation=True)
    assert a["input_ids"] == b["input_ids"] and a["attention_mask"] == b["attention_mask"]
    # truncation keeps [EOS] last (CLIP pools there)
    long = again(" ".join(["red"] * 40), truncation=True, max_length=8)["input_ids"]
    assert len(long) == 8 and long[-1] == EOS_ID


def test_world_tokenizer_knows_every_word_of_the_world(world):
    tw, scenes, _ = world
    t = world_tokenizer()
    rng = random.Random(5)
    texts = [tw.full_caption(s) for s in scenes] + [tw.alt_text(s, rng) for s in scenes]
    texts += [tw.dialogue_text(s, rng, style=st, round_idx=10) for s in scenes[:10] for st in tw.STYLES]
    ids = t(texts)["input_ids"]
    assert all(UNK_ID not in row for row in ids)


# -- CLIP ----------------------------------------------------------------------------------------
def test_clip_training_steps_lower_the_loss_and_lock_the_image_tower(tok, world):
    tw, scenes, images = world
    model = clip_train.new_clip(tok, seed=0, width=32, layers=1, max_length=32)
    text_fn = lambda i, rng: tw.full_caption(scenes[i])  # noqa: E731
    losses = clip_train.train_clip(model, tok, images, text_fn, steps=6, batch_size=16, lr=3e-3, seed=0,
                                   warmup=1, progress=False)
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    vision = {k: v.clone() for k, v in model.vision_model.state_dict().items()}
    text = {k: v.clone() for k, v in model.text_model.state_dict().items()}
    clip_train.train_clip(model, tok, images, text_fn, steps=2, batch_size=16, seed=1, train_vision=False, progress=False)
    assert all(torch.equal(vision[k], v) for k, v in model.vision_model.state_dict().items())
    assert any(not torch.equal(text[k], v) for k, v in model.text_model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())  # unlocked again afterwards


def test_clip_training_is_deterministic(tok, world):
    tw, scenes, images = world
    outs = []
    for _ in range(2):
        model = clip_train.new_clip(tok, seed=4, width=32, layers=1, max_length=32)
        outs.append(clip_train.train_clip(model, tok, images, lambda i, rng: tw.alt_text(scenes[i], rng), steps=2,
                                          batch_size=8, seed=4, progress=False))
    assert outs[0] == outs[1]


def test_saved_clip_loads_through_the_factory_with_identical_embeddings(tok, world, tmp_path):
    from PIL import Image

    from dar_lib.models import load_encoder

    tw, scenes, images = world
    model = clip_train.new_clip(tok, seed=0, width=32, layers=1, max_length=32)
    clip_train.save_clip(model, tok, tmp_path / "enc")
    model = model.half().float()  # weights are shipped in half precision, computed in float32
    enc = load_encoder(f"toy:{tmp_path / 'enc'}")
    texts = ["a red circle", "a small blue square in the top left on a white background"]
    with torch.no_grad():
        want_t = clip_train.embed_text(model.eval(), tok, texts)
        want_i = clip_train.embed_images_array(model, images[:5])
    got_t = enc.encode_text(texts)
    got_i = enc.encode_images([Image.fromarray(a) for a in images[:5]])
    assert got_t.shape == (2, 32) and got_i.shape == (5, 32)
    # the adapter's own preprocessing must match what training saw
    torch.testing.assert_close(got_t, want_t, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got_i, want_i, atol=1e-5, rtol=1e-4)


# -- diffusion -----------------------------------------------------------------------------------
def test_sample_prediction_lands_on_the_predicted_image(tok):
    pipe = tiny_pipeline(tok)
    pipe.scheduler.set_timesteps(4)
    latents, x0 = torch.randn(2, 48, 8, 8), torch.rand(2, 48, 8, 8) * 2 - 1
    t = pipe.scheduler.timesteps[-1]
    # the last Euler step (to sigma 0) along the derived velocity ends exactly at the prediction
    step = pipe.scheduler.step(pipe.velocity(x0, latents, t), t, latents).prev_sample
    torch.testing.assert_close(step, x0, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="prediction_type"):
        ToyDiffusionPipeline(pipe.unet, pipe.scheduler, pipe.text_encoder, pipe.tokenizer, prediction_type="eps")


def test_pipeline_honours_the_generator_wrapper_call(tok):
    pipe = tiny_pipeline(tok)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    out = pipe(prompt=["a red circle", "a blue square", "a red circle"], num_inference_steps=2, guidance_scale=2.0,
               generator=gens, height=32, width=32, output_type="pil")
    assert len(out.images) == 3 and all(im.size == (32, 32) and im.mode == "RGB" for im in out.images)
    # one generator per image: image 0 is the same alone or in a batch
    alone = pipe(prompt=["a red circle"], num_inference_steps=2, guidance_scale=2.0,
                 generator=[torch.Generator().manual_seed(1)], height=32, width=32, output_type="np").images
    np.testing.assert_allclose(np.asarray(out.images[0]) / 255.0, alone[0], atol=1 / 255 + 1e-6)
    assert not np.array_equal(np.asarray(out.images[0]), np.asarray(out.images[2]))  # seeds differ
    bigger = pipe(prompt=["a red circle"], num_inference_steps=1, guidance_scale=1.0, height=64, width=48,
                  output_type="pt").images
    assert bigger.shape == (1, 3, 64, 48)
    with pytest.raises(ValueError, match="one per prompt"):
        pipe(prompt=["a", "b"], generator=[torch.Generator()], num_inference_steps=1)
    with pytest.raises(ValueError, match="multiples of"):
        pipe(prompt=["a"], height=30, width=30, num_inference_steps=1)


def test_diffusion_training_steps_change_weights_and_lower_the_loss(tok, world):
    tw, scenes, images = world
    pipe = tiny_pipeline(tok)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    losses = diffusion_train.train_diffusion(pipe, images, lambda i, rng: tw.full_caption(scenes[i]), steps=8,
                                             batch_size=16, lr=3e-3, seed=0, warmup=1, progress=False)
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert any(not torch.equal(before[k], v) for k, v in pipe.unet.state_dict().items())


def test_saved_pipeline_loads_through_the_factory_with_identical_images(tok, tmp_path):
    from dar_lib.models import load_generator

    pipe = tiny_pipeline(tok, seed=5)
    diffusion_train.save_pipeline(pipe, tmp_path / "sd")
    pipe.unet.half().float(), pipe.text_encoder.half().float()  # as stored: half precision
    gen = load_generator(f"toy:{tmp_path / 'sd'}", default_steps=2, default_guidance=2.0)
    assert gen.pipe.config.prediction_type == "sample" and gen.id == f"toy:{tmp_path / 'sd'}"
    got = gen.generate(["a red circle", "a blue square"], seeds=[7, 8])
    want = pipe(prompt=["a red circle", "a blue square"], num_inference_steps=2, guidance_scale=2.0,
                generator=[torch.Generator().manual_seed(s) for s in (7, 8)], height=32, width=32).images
    assert [np.asarray(g).tolist() for g in got] == [np.asarray(w).tolist() for w in want]
    again = gen.generate(["a red circle"], seeds=[7])
    assert np.array_equal(np.asarray(again[0]), np.asarray(got[0]))


# -- probe ---------------------------------------------------------------------------------------
def test_probe_trains_saves_and_reloads(world, tmp_path):
    tw, scenes, images = world
    labels = [tw.attributes(s) for s in scenes]
    probe = AttributeProbe(tw.ATTRIBUTES, width=8)
    losses = train_probe(probe, images, labels, steps=8, batch_size=32, lr=3e-3, seed=0, progress=False)
    assert all(np.isfinite(losses)) and np.mean(losses[-2:]) < np.mean(losses[:2])
    probe.save(tmp_path / "probe")
    again = AttributeProbe.load(tmp_path / "probe")
    assert again.predict(images) == probe.predict(images)
    acc = accuracy(again, images, labels)
    assert set(acc) == set(tw.ATTRIBUTES) and all(0 <= v <= 100 for v in acc.values())


# -- dar train-toy -------------------------------------------------------------------------------
def test_train_toy_cli_trains_every_stage_and_the_factory_loads_them(tmp_path):
    pytest.importorskip("dar_lib.benchmarks.toyworld")
    import json

    from dar_lib.cli import main
    from dar_lib.models import load_encoder, load_generator

    rc = main(["train-toy", "--out", str(tmp_path), "--steps-scale", "0.002", "--n-train", "64", "--batch-size", "8"])
    assert rc == 0
    for name in ("probe", "clip-full", "clip-zs", "clip-cocoft", "clip-chatir", "sd"):
        rec = json.loads((tmp_path / name / ("config.json" if name == "probe" else "training.json")).read_text())
        rec = rec.get("training", rec)
        assert rec["steps"] >= 1 and np.isfinite(rec["loss_last"])
    full = load_encoder(f"toy:{tmp_path / 'clip-full'}")
    zs = load_encoder(f"toy:{tmp_path / 'clip-zs'}")
    from PIL import Image

    img = [Image.new("RGB", (32, 32), (200, 30, 30))]
    # zs copies full's image tower and keeps it locked; its text tower differs
    torch.testing.assert_close(zs.encode_images(img), full.encode_images(img))
    assert not torch.allclose(zs.encode_text(["a red circle"]), full.encode_text(["a red circle"]))
    images = load_generator(f"toy:{tmp_path / 'sd'}", default_steps=1).generate(["a red circle"], seeds=[0])
    assert images[0].size == (32, 32)


def test_unknown_toy_model_names_the_choices():
    from dar_lib.models.toy import load_encoder

    with pytest.raises(ValueError, match="clip-zs"):
        load_encoder("clip-nope")


# -- shipped assets ------------------------------------------------------------------------------
def test_shipped_assets_are_small_and_load_offline():
    from dar_lib.models import load_encoder, load_generator
    from dar_lib.models.toy import ASSETS

    needed = ("clip-full", "clip-zs", "clip-cocoft", "clip-chatir", "sd", "probe")
    missing = [n for n in needed if not (ASSETS / n).is_dir()]
    assert not missing, f"missing shipped toy models {missing}; run `dar train-toy`"
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total < 30 * 2**20, f"shipped toy assets are {total / 2**20:.1f} MB (limit 30 MB)"
    assert not list(ASSETS.rglob("*.bin")) and not list(ASSETS.rglob("*.pt"))  # safetensors only
    enc = load_encoder("toy:clip-zs")
    assert enc.id == "toy:clip-zs"
    emb = enc.encode_text(["a red circle", "a red circle"])
    assert emb.shape[0] == 2 and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    gen = load_generator("toy:sd")
    a = gen.generate(["a small red circle in the center on a blue background"], seeds=[3])
    b = gen.generate(["a small red circle in the center on a blue background"], seeds=[3])
    assert a[0].size == (32, 32) and np.array_equal(np.asarray(a[0]), np.asarray(b[0]))
    assert AttributeProbe.load(ASSETS / "probe").attributes.keys() >= {"background", "color", "shape", "position", "size"}
