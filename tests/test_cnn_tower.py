"""The v3 toy dual encoder: a convolutional image tower inside a transformers ``VisionTextDualEncoderModel``,
saved as safetensors and loaded offline through the same ``toy:`` encoder path as the shipped models."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from dar_lib.benchmarks import toyworld as tw
from dar_lib.toymodels import clip_train, image_tower
from dar_lib.toymodels.cnn_tower import ToyCnnVisionConfig, ToyCnnVisionModel, load_dual_encoder, new_dual_encoder
from dar_lib.toymodels.tokenizer import world_tokenizer


def tiny_dual_encoder(seed=0):
    tower = image_tower.new_image_tower(seed, widths=(8, 16), strides=(2, 2), projection_dim=16)
    # a few training steps move batch norm's running statistics away from their initial 0 / 1
    scenes = tw.make_scenes(32, seed=3)
    image_tower.train_image_tower(tower, tw.render_batch(scenes), image_tower.scene_labels(scenes), steps=3,
                                  batch_size=16, progress=False)
    tok = world_tokenizer(max_length=64)
    return new_dual_encoder(tower, len(tok), seed=seed, max_length=64, width=32, layers=1), tok


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model, tok = tiny_dual_encoder()
    folder = tmp_path_factory.mktemp("toy-v3") / "enc"
    clip_train.save_clip(model, tok, folder)
    return folder


def test_config_checks_and_sizes():
    cfg = ToyCnnVisionConfig()
    assert (cfg.map_size, cfg.hidden_size) == (8, 8 * 8 * 128)
    out = ToyCnnVisionModel(cfg)(pixel_values=torch.zeros(2, 3, 32, 32))
    assert out.last_hidden_state.shape == (2, 128, 8, 8) and out.pooler_output.shape == (2, 8192)
    with pytest.raises(ValueError, match="3 widths for 2 strides"):
        ToyCnnVisionConfig(widths=(8, 8, 8), strides=(1, 2))
    with pytest.raises(ValueError, match="do not divide image_size 30"):
        ToyCnnVisionConfig(image_size=30, widths=(8, 8), strides=(2, 2))


def test_saved_folder_is_plain_safetensors_and_reloads_exactly(saved):
    assert (saved / "model.safetensors").is_file() and not list(saved.glob("*.bin"))
    cfg = json.loads((saved / "config.json").read_text())
    assert cfg["model_type"] == "vision-text-dual-encoder" and cfg["vision_config"]["model_type"] == "toy-cnn-vision"
    assert "auto_map" not in cfg  # no remote code
    model = load_dual_encoder(saved)
    assert type(model).__name__ == "VisionTextDualEncoderModel" and not model.training
    assert type(model.vision_model) is ToyCnnVisionModel
    bn = [m for m in model.vision_model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and not torch.allclose(bn[0].running_mean, torch.zeros_like(bn[0].running_mean))


def test_toy_encoder_path_loads_it_and_runs_batch_norm_in_eval_mode(saved):
    """Through ``load_encoder`` (the ``toy:<folder>`` id): unit vectors of the projection size, and an
    image's embedding does not depend on the other images of its batch (batch norm in train mode would
    normalise with the batch's statistics and fail this)."""
    from dar_lib.models import load_encoder

    enc = load_encoder(f"toy:{saved}", batch_size=8)
    assert enc.dim == 16 and not enc.model.training
    images = [Image.fromarray(a) for a in tw.render_batch(tw.make_scenes(5, seed=1))]
    together = enc.encode_images(images)
    alone = torch.cat([enc.encode_images([im]) for im in images])
    assert together.shape == (5, 16)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(together.norm(dim=1), torch.ones(5), atol=1e-5, rtol=0)
    text = enc.encode_text(["a red circle", "a small blue square in the top left"])
    assert text.shape == (2, 16)
    # the encoder's image side equals the training code's, so cached training embeddings are the book's
    direct = clip_train.embed_images_array(load_dual_encoder(saved), np.stack([np.asarray(im) for im in images]))
    torch.testing.assert_close(together, direct, atol=1e-5, rtol=0)


def test_image_fingerprint_names_the_batch_norm_statistics(saved, tmp_path):
    """Two encoders with one image tower share their image fingerprint (the toy variants embed the
    corpus once); a changed running statistic (a 0-d ``num_batches_tracked`` among the buffers) moves it."""
    from dar_lib.models import load_encoder

    a, b = load_encoder(f"toy:{saved}"), load_encoder(f"toy:{saved}")
    assert a.image_fingerprint() == b.image_fingerprint()
    with torch.no_grad():
        b.model.vision_model.layers[1].running_mean += 1e-2
    b._image_fp = None
    assert a.image_fingerprint() != b.image_fingerprint()
    c = load_encoder(f"toy:{saved}")
    c.model.vision_model.layers[1].num_batches_tracked += 1  # the 0-d buffer is hashed too
    assert c.image_fingerprint() != a.image_fingerprint()


def test_length_buckets_give_the_padded_batch_embeddings():
    """Embedding texts in length buckets equals one batch padded to the longest text."""
    model, tok = tiny_dual_encoder()
    rng = random.Random(0)
    scenes = tw.make_scenes(6, seed=2)
    texts = [tw.alt_text(s, rng) for s in scenes] + [tw.dialogue_text(s, rng, style="visdial") for s in scenes[:3]]
    texts = texts[6:7] + texts[:3] + texts[7:] + texts[3:6]  # long and short interleaved: order must be kept
    lengths: list[int] = []
    got = clip_train.embed_text(model, tok, texts, lengths=lengths)
    assert len(clip_train.length_buckets(lengths)) >= 2 and len(lengths) == len(texts)
    batch = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        pooled = model.text_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output
        want = torch.nn.functional.normalize(model.text_projection(pooled), dim=-1)
    torch.testing.assert_close(got.detach(), want, atol=1e-5, rtol=0)
    assert lengths == batch["attention_mask"].sum(1).tolist()


def test_length_buckets_double():
    buckets = clip_train.length_buckets([5, 40, 32, 33, 200, 64, 65])
    assert [b.tolist() for b in buckets] == [[0, 2], [1, 3, 5], [6], [4]]


def test_clear_errors_for_one_string_and_for_an_image_tower_folder(saved, tmp_path):
    """One string is refused (iterating it embedded each character), and a folder holding only the
    image tower is named as such instead of failing in the tokenizer."""
    from dar_lib.models import load_encoder

    enc = load_encoder(f"toy:{saved}")
    with pytest.raises(TypeError, match=r"one string .*pass \[text\]"):
        enc.encode_text("a red circle")
    tower = image_tower.new_image_tower(0, widths=(8, 16), strides=(2, 2), projection_dim=16)
    image_tower.save_image_tower(tower, tmp_path / "image-tower")
    with pytest.raises(ValueError, match="holds only an image tower"):
        load_encoder(f"toy:{tmp_path / 'image-tower'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no dual encoder"):
        load_encoder(f"toy:{tmp_path / 'empty'}")
