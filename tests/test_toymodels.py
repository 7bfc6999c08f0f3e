"""Toy models: tokenizer, CLIP and diffusion training loops, resume of a stopped run, pipeline call contract,
factory round trips, shipped assets and the probe's accuracy floor."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from dar_lib.toymodels import clip_train, diffusion_train
from dar_lib.toymodels.diffusion import ToyDiffusionPipeline
from dar_lib.toymodels.probe import AttributeProbe, accuracy, train_probe
from dar_lib.toymodels.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, build_tokenizer, world_tokenizer

WORDS = ("a an red blue green white circle square triangle small large in the top bottom left right on background "
         ", . ?").split()


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer(WORDS, max_length=32)


@pytest.fixture(scope="module")
def world():
    from dar_lib.benchmarks import toyworld as tw

    scenes = tw.make_scenes(48, seed=3)
    return tw, scenes, tw.render_batch(scenes, size=32)


def tiny_pipeline(tokenizer, seed=0):
    return diffusion_train.new_pipeline(tokenizer, seed=seed, width=32, layers=1, head_dim=16, text_width=32,
                                        text_layers=1, text_length=16)


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
    clip_train.train_clip(model, tok, images, text_fn, steps=2, batch_size=16, seed=1, train_vision=False,
                          progress=False)
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
    latents, x0 = torch.randn(2, 3, 32, 32), torch.rand(2, 3, 32, 32) * 2 - 1
    t = pipe.scheduler.timesteps[-1]
    # the last Euler step (to sigma 0) along the derived velocity ends exactly at the prediction
    step = pipe.scheduler.step(pipe.velocity(x0, latents, t), t, latents).prev_sample
    torch.testing.assert_close(step, x0, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="prediction_type"):
        ToyDiffusionPipeline(pipe.transformer, pipe.scheduler, pipe.text_encoder, pipe.tokenizer, prediction_type="eps")


def test_pipeline_honours_the_generator_wrapper_call(tok):
    pipe = tiny_pipeline(tok)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    out = pipe(prompt=["a red circle", "a blue square", "a red circle"], num_inference_steps=2, guidance_scale=2.0,
               generator=gens, height=32, width=32, output_type="pil")
    assert len(out.images) == 3 and all(im.size == (32, 32) and im.mode == "RGB" for im in out.images)
    # one generator per image: image 0 is the same alone or in a batch (to kernel rounding, 1 level)
    alone = pipe(prompt=["a red circle"], num_inference_steps=2, guidance_scale=2.0,
                 generator=[torch.Generator().manual_seed(1)], output_type="np").images
    np.testing.assert_allclose(np.asarray(out.images[0]) / 255.0, alone[0], atol=1 / 255 + 1e-6)
    assert not np.array_equal(np.asarray(out.images[0]), np.asarray(out.images[2]))  # seeds differ
    assert pipe(prompt=["a"], num_inference_steps=1, guidance_scale=1.0,
                output_type="pt").images.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="one per prompt"):
        pipe(prompt=["a", "b"], generator=[torch.Generator()], num_inference_steps=1)
    with pytest.raises(ValueError, match="32x32 images only"):
        pipe(prompt=["a"], height=64, width=64, num_inference_steps=1)
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe(prompt=["a"], num_inference_steps=0)


def test_diffusion_training_steps_change_weights_and_lower_the_loss(tok, world):
    tw, scenes, images = world
    pipe = tiny_pipeline(tok)
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    masks = diffusion_train.object_masks(images,
                                         tw.render_batch([tw.Scene(s.background, (), s.bg_shade) for s in scenes]))
    assert 0.01 < masks.mean() < 0.3  # objects are a small part of a scene
    losses = diffusion_train.train_diffusion(pipe, images, lambda i, rng: tw.full_caption(scenes[i]), steps=8,
                                             batch_size=16, lr=3e-3, seed=0, warmup=1, masks=masks, progress=False)
    assert len(losses) == 8 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert any(not torch.equal(before[k], v) for k, v in pipe.transformer.state_dict().items())


def test_diffusion_training_takes_a_budget_a_pixel_weight_and_a_frozen_text_encoder(tok, world):
    """The knobs the generator candidates are compared with (measure/toy_generator_candidates.py), in the
    one training loop: a wall-clock budget ends training early, the per-pixel weight hook sees the mask
    batch, and train_text_encoder=False leaves the text encoder's weights as they were."""
    tw, scenes, images = world
    pipe = tiny_pipeline(tok)
    text_before = {k: v.clone() for k, v in pipe.text_encoder.state_dict().items()}
    masks = np.zeros(images.shape[:3], dtype=np.float32)
    seen = []

    def weight(m):
        seen.append(tuple(m.shape))
        return 1 + m

    losses = diffusion_train.train_diffusion(pipe, images, lambda i, rng: tw.full_caption(scenes[i]), steps=10**6,
                                             batch_size=4, seed=0, masks=masks, progress=False, minutes=1e-9,
                                             lr_floor=1.0, pixel_weight=weight, train_text_encoder=False)
    assert len(losses) == 1 and seen == [(4, 1, 32, 32)]
    assert all(torch.equal(text_before[k], v) for k, v in pipe.text_encoder.state_dict().items())


def test_a_stopped_diffusion_run_resumes_to_the_same_weights(tok, world, tmp_path):
    """Stop after 3 of 6 steps (checkpoint written), resume: the same losses and weights as 6 steps straight."""
    from dar_lib.toymodels.loop import Checkpointer, TrainingStopped

    tw, scenes, images = world
    text_fn = lambda i, rng: tw.full_caption(scenes[i]) if rng.random() < 0.5 else tw.alt_text(scenes[i], rng)  # noqa: E731
    straight = tiny_pipeline(tok, seed=2)
    want = diffusion_train.train_diffusion(straight, images, text_fn, 6, batch_size=8, seed=3, warmup=2, progress=False)
    ckpt = Checkpointer(tmp_path / "sd.pt", every_s=1e9)
    stopped = tiny_pipeline(tok, seed=2)
    with pytest.raises(TrainingStopped):
        diffusion_train.train_diffusion(stopped, images, text_fn, 6, batch_size=8, seed=3, warmup=2, progress=False,
                                        checkpoint=ckpt, stop_at=3)
    resumed = tiny_pipeline(tok, seed=99)  # fresh weights: everything must come from the checkpoint
    got = diffusion_train.train_diffusion(resumed, images, text_fn, 6, batch_size=8, seed=3, warmup=2, progress=False,
                                          checkpoint=ckpt, resume=True)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    for (k, a), b in zip(straight.transformer.state_dict().items(), resumed.transformer.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_saved_pipeline_loads_through_the_factory_with_the_same_images(tok, tmp_path):
    from dar_lib.models import load_generator

    pipe = tiny_pipeline(tok, seed=5)
    diffusion_train.save_pipeline(pipe, tmp_path / "sd")
    pipe.transformer.half().float(), pipe.text_encoder.half().float()  # as stored: half precision
    gen = load_generator(f"toy:{tmp_path / 'sd'}", default_steps=2, default_guidance=2.0)
    assert gen.pipe.config.prediction_type == "sample" and gen.id == f"toy:{tmp_path / 'sd'}"
    assert "weights-" in gen.fingerprint()  # the weights' digest: retrained weights never reuse cached images
    got = gen.generate(["a red circle", "a blue square"], seeds=[7, 8])
    want = pipe(prompt=["a red circle", "a blue square"], num_inference_steps=2, guidance_scale=2.0,
                generator=[torch.Generator().manual_seed(s) for s in (7, 8)]).images
    # The same computation in another batch shape can round one 8-bit level apart: that is the guarantee.
    for g, w in zip(got, want):
        assert np.abs(np.asarray(g, dtype=int) - np.asarray(w, dtype=int)).max() <= 1
    again = gen.generate(["a red circle"], seeds=[7])
    assert np.abs(np.asarray(again[0], dtype=int) - np.asarray(got[0], dtype=int)).max() <= 1
    with pytest.raises(ValueError, match="steps"):
        gen.generate(["a red circle"], seeds=[7], steps=0)


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
    import json

    from dar_lib.cli import main
    from dar_lib.models import load_encoder, load_generator

    rc = main(["train-toy", "--out", str(tmp_path), "--steps-scale", "0.002", "--n-train", "64", "--batch-size", "8"])
    assert rc == 0
    for name in ("probe", "image-tower", "clip-full", "clip-zs", "clip-cocoft", "clip-chatir", "sd"):
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


def test_train_toy_resume_skips_finished_stages_and_continues_a_stopped_one(tmp_path):
    import json

    from dar_lib.toymodels import train
    from dar_lib.toymodels.loop import TrainingStopped

    kw = dict(steps_scale=0.01, n_train=64, batch_size=8, progress=False,
              only=("probe", "image-tower", "clip-full", "clip-zs"))
    straight = train.train_all(tmp_path / "a", **kw)
    with pytest.raises(TrainingStopped):
        train.train_all(tmp_path / "b", stop_at={"clip-zs": 4}, **kw)
    assert (tmp_path / "b" / ".checkpoints" / "clip-zs.safetensors").is_file()
    assert not (tmp_path / "b" / "clip-zs").exists()
    probe_bytes = (tmp_path / "b" / "probe" / "model.safetensors").read_bytes()
    resumed = train.train_all(tmp_path / "b", resume=True, **kw)
    assert set(resumed) == {"clip-zs", "total_wall_s"}  # the finished stages were skipped
    assert (tmp_path / "b" / "probe" / "model.safetensors").read_bytes() == probe_bytes
    assert not (tmp_path / "b" / ".checkpoints" / "clip-zs.safetensors").exists()
    a = json.loads((tmp_path / "a" / "clip-zs" / "training.json").read_text())
    b = json.loads((tmp_path / "b" / "clip-zs" / "training.json").read_text())
    assert b["loss_last"] == pytest.approx(a["loss_last"], rel=1e-5) and b["steps"] == a["steps"]
    assert b["max_train_tokens"] == a["max_train_tokens"]  # the running maximum is in the checkpoint
    assert straight["clip-zs"]["loss_first"] == pytest.approx(b["loss_first"], rel=1e-5)


def test_a_checkpoint_or_finished_stage_of_another_run_is_never_resumed(tmp_path):
    """A fine-tune's checkpoint and its finished model are tied to the base weights it started from."""
    from safetensors.torch import load_file, save_file

    from dar_lib.toymodels import train
    from dar_lib.toymodels.loop import Checkpointer

    Checkpointer(tmp_path / "x.pt", run="run-a").save({"step": 3})
    assert Checkpointer(tmp_path / "x.pt", run="run-a").load()["step"] == 3
    assert Checkpointer(tmp_path / "x.pt", run="run-b").load() is None

    kw = dict(steps_scale=0.01, n_train=64, batch_size=8, progress=False)
    train.train_all(tmp_path, only=("image-tower", "clip-full", "clip-zs"), **kw)
    assert set(train.train_all(tmp_path, resume=True, only=("clip-zs",), **kw)) == {"total_wall_s"}
    weights = tmp_path / "clip-full" / "model.safetensors"
    tensors = load_file(weights)
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1  # a retrained base
    save_file(tensors, weights, metadata={"format": "pt"})
    again = train.train_all(tmp_path, resume=True, only=("clip-zs",), **kw)
    assert "clip-zs" in again  # the fine-tune of the old base is not kept


def test_a_stage_without_its_base_is_refused_before_any_work(tmp_path):
    from dar_lib.toymodels import train

    with pytest.raises(ValueError, match=r"clip-full starts from image-tower.*--only image-tower clip-full"):
        train.train_all(tmp_path, only=("clip-full",), steps_scale=0.01, n_train=16, batch_size=8, progress=False)
    assert not any(tmp_path.iterdir())
    (tmp_path / "afile").write_text("")
    with pytest.raises(NotADirectoryError, match="exists and is not a folder"):
        train.train_all(tmp_path / "afile", only=("probe",), steps_scale=0.01, n_train=16, batch_size=8, progress=False)


def test_long_text_reaches_its_length_and_stays_within_the_positions():
    import random

    from dar_lib.benchmarks import toyworld as tw
    from dar_lib.toymodels import train

    scene = tw.make_scenes(1, seed=3)[0]
    rng = random.Random(0)
    text = train.long_text(tw.alt_text, scene, rng, 120)
    assert len(tw.tokenize(text)) >= 120 - text.count(", ") - 1 and ", " in text
    capped = train.long_text(tw.alt_text, scene, rng, 10_000, max_words=60)
    assert len(tw.tokenize(capped)) <= 60
    one = train.long_text(lambda s, r: "word " * 80, scene, rng, 200, max_words=10)
    assert one == "word " * 80  # the first part is always kept


def test_unknown_toy_model_names_the_choices():
    from dar_lib.models.toy import load_encoder

    with pytest.raises(ValueError, match="clip-zs"):
        load_encoder("clip-nope")


# -- shipped assets ------------------------------------------------------------------------------
def test_shipped_assets_are_small_and_load_offline():
    from dar_lib.models import load_encoder, load_generator
    from dar_lib.toymodels import ASSETS

    needed = ("image-tower", "clip-full", "clip-zs", "clip-cocoft", "clip-chatir", "sd", "probe")
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
    assert AttributeProbe.load(ASSETS / "probe").attributes.keys() >= {"background", "color", "shape", "position",
                                                                       "size"}


def test_the_shipped_probe_reads_rendered_scenes_at_98_percent_or_better():
    """The probe judges the generator; on rendered scenes it never saw it must be right >= 98% per attribute,
    or the generator's agreement figures would mean nothing."""
    from dar_lib.toymodels.quality import probe_accuracy

    acc = probe_accuracy(n=1000, seed=5)
    assert set(acc) >= {"background", "color", "shape", "position", "size", "count"}
    assert min(acc.values()) >= 98.0, acc


# -- checkpoints hold tensors and plain values; nothing is unpickled -------------------------------
class _WritesMarker:
    """Unpickling this runs ``open(marker, "w")``: the shape of a checkpoint that runs code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_pickle_checkpoint_is_refused_without_running_it(tmp_path):
    """A pickle whose loading would run code is refused by name, and its code never runs."""
    from dar_lib.toymodels.loop import Checkpointer

    marker = tmp_path / "ran"
    for name in ("probe.pt", "probe.safetensors"):
        path = tmp_path / ".checkpoints" / name
        path.parent.mkdir(exist_ok=True)
        torch.save({"run": "r", "step": 1, "payload": _WritesMarker(marker)}, path)
        with pytest.raises(ValueError, match=f"{path.name}: not a training checkpoint"):
            Checkpointer(path, run="r").load()
        with pytest.raises(ValueError, match="not a training checkpoint"):
            Checkpointer(path, run=None).load()
        assert not marker.exists()


def test_train_toy_resume_never_unpickles_a_planted_checkpoint(tmp_path):
    """``dar train-toy --out DIR --resume`` with a crafted ``DIR/.checkpoints/probe.pt``: the code never runs."""
    from dar_lib.toymodels import train

    marker = tmp_path / "ran"
    (tmp_path / ".checkpoints").mkdir()
    torch.save({"payload": _WritesMarker(marker)}, tmp_path / ".checkpoints" / "probe.pt")
    kw = dict(steps_scale=0.001, n_train=16, batch_size=8, progress=False, only=("probe",))
    assert "probe" in train.train_all(tmp_path, resume=True, **kw)  # the old-format file is ignored, unread
    assert not marker.exists()
    torch.save({"payload": _WritesMarker(marker)}, tmp_path / ".checkpoints" / "probe.safetensors")
    (tmp_path / "probe" / "config.json").unlink()  # the stage is not finished: its checkpoint would be read
    with pytest.raises(ValueError, match="probe.safetensors: not a training checkpoint"):
        train.train_all(tmp_path, resume=True, **kw)
    assert not marker.exists()


def test_checkpoint_state_round_trips_exactly(tmp_path):
    """Optimiser states (integer keys, 0-d tensors), RNG states (tuples, 128-bit ints) and NaN survive."""
    import random

    from dar_lib.toymodels.loop import Checkpointer, pack_state, rng_state

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": 7, "losses": [1.5, float("nan")],
             "rng": rng_state(random.Random(1), np.random.default_rng(2)), "flag": True, "none": None}
    ckpt = Checkpointer(tmp_path / "c.safetensors", run="r")
    ckpt.save(state)
    got = ckpt.load()
    assert got["run"] == "r" and got["step"] == 7 and got["flag"] is True and got["none"] is None
    assert got["losses"][0] == 1.5 and np.isnan(got["losses"][1])
    assert got["rng"]["python"] == state["rng"]["python"] and got["rng"]["numpy"] == state["rng"]["numpy"]
    torch.testing.assert_close(got["rng"]["torch"], state["rng"]["torch"])
    assert set(got["opt"]["state"]) == set(state["opt"]["state"])
    assert got["opt"]["param_groups"] == state["opt"]["param_groups"]
    opt.load_state_dict(got["opt"])
    for k, v in state["model"].items():
        torch.testing.assert_close(got["model"][k], v)
    with pytest.raises(TypeError, match="object"):
        pack_state({"x": object()})


# -- dar train-toy never replaces the shipped models by default ------------------------------------
def test_train_toy_refuses_the_shipped_folder_and_names_where_it_writes(tmp_path, monkeypatch, capsys):
    from dar_lib.cli import main
    from dar_lib.toymodels import ASSETS, train

    shipped = {p: p.stat().st_mtime_ns for p in ASSETS.rglob("*") if p.is_file()}
    quick = ["--steps-scale", "0.001", "--n-train", "16", "--batch-size", "8", "--only", "probe"]
    for out in ([], ["--out", str(ASSETS)], ["--out", str(ASSETS / "probe")]):
        monkeypatch.chdir(tmp_path)
        capsys.readouterr()
        rc = main(["train-toy", *out, *quick])
        err = capsys.readouterr().err
        if out:  # the shipped folder, or a stage inside it: refused before any work, in one line
            assert rc == 2 and "shipped toy models' folder" in err and "--overwrite-shipped" in err
            assert len(err.strip().splitlines()) == 1
        else:  # no --out: a new folder in the working directory, named on stderr
            assert rc == 0
            (made,) = tmp_path.glob("toy-models-*")
            assert (made / "probe" / "config.json").is_file() and f"writing the toy models to {made.resolve()}" in err
    assert {p: p.stat().st_mtime_ns for p in ASSETS.rglob("*") if p.is_file()} == shipped
    with pytest.raises(ValueError, match="shipped"):
        train.train_all(ASSETS, steps_scale=0.001, n_train=16, batch_size=8, progress=False, only=("probe",))
    assert main(["train-toy", "--resume", *quick]) == 2
    assert "give its folder with --out" in capsys.readouterr().err
