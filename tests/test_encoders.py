"""BLIP and CLIP encoders on tiny randomly initialised models built from configs (CPU, offline)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dar_lib.models.encoders import BlipEncoder, ClipEncoder, ImagePreprocessor
from dar_lib.testing import (
    TEXTS,
    make_tokenizer,
    random_images,
    tiny_beit3_encoder,
    tiny_blip,
    tiny_clip,
    word_tokenizer,
)


@pytest.fixture(params=["blip", "clip", "beit3", "toy"])
def encoder(request, tmp_path):
    """Every encoder backend, for the contract tests below (written once, run for each): tiny BLIP and CLIP
    built from configs, a tiny BEiT-3 loaded from unilm-layout files, and the shipped toy encoder."""
    if request.param == "blip":
        return BlipEncoder(tiny_blip(), make_tokenizer(), id="tiny-blip", device="cpu", batch_size=2, max_length=20)
    if request.param == "clip":
        return ClipEncoder(tiny_clip(), make_tokenizer(), id="tiny-clip", device="cpu", batch_size=2)
    if request.param == "beit3":
        return tiny_beit3_encoder(tmp_path, max_length=20)
    from dar_lib.models import load_encoder

    return load_encoder("toy:clip-zs?max_length=20", device="cpu", batch_size=2)


def test_shapes_norm_dtype(encoder):
    t = encoder.encode_text(TEXTS)
    i = encoder.encode_images(random_images())
    dim = encoder.dim
    assert dim > 0 and t.shape == (5, dim) and i.shape == (5, dim)
    assert t.dtype == torch.float32 and i.dtype == torch.float32 and t.device.type == "cpu"
    torch.testing.assert_close(t.norm(dim=1), torch.ones(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(i.norm(dim=1), torch.ones(5), atol=1e-5, rtol=0)
    # Different inputs give different embeddings (not a constant output).
    assert torch.cdist(t, t)[0, 1:].min() > 1e-3
    assert torch.cdist(i, i)[0, 1:].min() > 1e-3
    assert encoder.encode_text([]).shape == (0, dim)


def test_deterministic_and_batched_equals_single(encoder):
    t1, t2 = encoder.encode_text(TEXTS), encoder.encode_text(TEXTS)
    assert torch.equal(t1, t2)
    single = torch.cat([encoder.encode_text([x]) for x in TEXTS])
    torch.testing.assert_close(t1, single, atol=1e-5, rtol=0)
    ims = random_images()
    i1 = encoder.encode_images(ims)
    single_i = torch.cat([encoder.encode_images([x]) for x in ims])
    torch.testing.assert_close(i1, single_i, atol=1e-5, rtol=0)


def test_blip_features_match_reference_path():
    """Text CLS -> text_proj and image CLS -> vision_proj, normalised, as BLIP's evaluation computes."""
    model, tok = tiny_blip(), make_tokenizer()
    enc = BlipEncoder(model, tok, device="cpu", max_length=20)
    ids = tok(["a red cat"], return_tensors="pt")
    with torch.no_grad():
        h = model.text_encoder(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).last_hidden_state
        ref = torch.nn.functional.normalize(model.text_proj(h[:, 0]), dim=-1)
        # Through the model's own retrieval head (use_itm_head=False), the cosine of text and image.
        img = random_images(1)
        px = enc.preprocess(img)
        cos = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], pixel_values=px,
                     use_itm_head=False).itm_score
    torch.testing.assert_close(enc.encode_text(["a red cat"]), ref, atol=1e-6, rtol=0)
    got = enc.encode_text(["a red cat"]) @ enc.encode_images(img).T
    torch.testing.assert_close(got, cos.reshape(1, 1), atol=1e-5, rtol=0)


def test_truncation_counted_and_warned(encoder, caplog):
    long = " ".join(["dog"] * 100)
    with caplog.at_level(logging.WARNING):
        out = encoder.encode_text([long, "a cat", long])
    assert out.shape[0] == 3
    assert encoder.truncated_texts == 2
    assert any("truncated" in r.message and str(encoder.max_length) in r.message for r in caplog.records)
    encoder.encode_text(["a cat"])
    assert encoder.truncated_texts == 2
    # A text cut at max_length embeds exactly like its first max_length tokens.
    n_words = encoder.max_length - 2
    torch.testing.assert_close(out[0], encoder.encode_text([" ".join(["dog"] * n_words)])[0], atol=1e-5, rtol=0)


def test_clip_max_length_capped_at_77():
    enc = ClipEncoder(tiny_clip(), make_tokenizer(200), device="cpu", max_length=300)
    assert enc.max_length == 77


def test_image_modes_equivalent():
    enc = ClipEncoder(tiny_clip(), make_tokenizer(), device="cpu")
    rgb = Image.fromarray(np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    rgba = rgb.convert("RGBA")
    grey = rgb.convert("L")
    pal = rgb.convert("P")
    e = enc.encode_images([rgb, rgba, grey, grey.convert("RGB"), pal, pal.convert("RGB")])
    torch.testing.assert_close(e[0], e[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(e[2], e[3], atol=1e-6, rtol=0)
    torch.testing.assert_close(e[4], e[5], atol=1e-6, rtol=0)
    with pytest.raises(TypeError, match="PIL image"):
        enc.encode_images([np.zeros((4, 4, 3))])


def test_preprocessor_square_and_crop():
    img = Image.new("RGB", (60, 30), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 15, 30))  # blue strip on the left quarter
    sq = ImagePreprocessor(16, mean=(0, 0, 0), std=(1, 1, 1), mode="square")(img)
    cr = ImagePreprocessor(16, mean=(0, 0, 0), std=(1, 1, 1), mode="shortest_crop")(img)
    assert sq.shape == cr.shape == (1, 3, 16, 16)
    assert sq[0, 2, 8, 0] > 0.9  # square resize keeps the blue strip
    assert cr[0, 2, 8, 0] < 0.1 and cr[0, 0, 8, 0] > 0.9  # the centre crop cuts it away
    with pytest.raises(ValueError, match="mode"):
        ImagePreprocessor(16, mode="stretch")


def test_fingerprint_names_settings():
    enc = BlipEncoder(tiny_blip(), make_tokenizer(), id="tiny-blip", revision="abc", device="cpu", max_length=20)
    fp = enc.fingerprint()
    for part in ("tiny-blip", "abc", "square32", "max_length=20", "float32"):
        assert part in fp
    enc2 = BlipEncoder(tiny_blip(), make_tokenizer(), id="tiny-blip", revision="abc", device="cpu", max_length=30)
    assert enc2.fingerprint() != fp


@pytest.mark.parametrize("make, cls", [(tiny_clip, ClipEncoder), (tiny_blip, BlipEncoder)], ids=["clip", "blip"])
def test_image_fingerprint_names_the_image_tower_alone(make, cls):
    """Encoders with one image tower share image embeddings (and so the cached corpus); any change to
    that tower's weights, or a text-only change, is told apart correctly."""
    from dar_lib.models.base import image_fingerprint

    a = cls(make(), make_tokenizer(), id="a", device="cpu", max_length=20)
    text_tuned = make()
    with torch.no_grad():
        next(p for n, p in text_tuned.named_parameters() if n.startswith("text_")).add_(1.0)
    b = cls(text_tuned, make_tokenizer(), id="b", device="cpu", max_length=20)
    assert a.fingerprint() != b.fingerprint()
    assert image_fingerprint(a) == image_fingerprint(b)
    torch.testing.assert_close(a.encode_images(random_images(2)), b.encode_images(random_images(2)))
    image_tuned = make()
    with torch.no_grad():
        image_tuned.vision_model.embeddings.patch_embedding.weight.add_(1e-3)
    c = cls(image_tuned, make_tokenizer(), id="a", device="cpu", max_length=20)
    assert image_fingerprint(c) != image_fingerprint(a)


@pytest.mark.parametrize("make, cls", [(tiny_clip, ClipEncoder), (tiny_blip, BlipEncoder)], ids=["clip", "blip"])
def test_text_fingerprint_names_the_weights_under_the_same_id(make, cls):
    """Cached query-text embeddings are keyed by it: weights retrained into the same folder (same id, an
    unpinned revision) must not reuse the old ones, and equal weights and settings share them."""
    from dar_lib.models.base import text_fingerprint

    a = cls(make(), make_tokenizer(), id="folder", device="cpu", max_length=20)
    assert text_fingerprint(a) == text_fingerprint(cls(make(), make_tokenizer(), id="folder", device="cpu",
                                                       max_length=20))
    retrained = make()
    with torch.no_grad():
        next(p for n, p in retrained.named_parameters() if n.startswith("text_")).add_(1e-3)
    b = cls(retrained, make_tokenizer(), id="folder", device="cpu", max_length=20)
    assert a.fingerprint() == b.fingerprint() and text_fingerprint(a) != text_fingerprint(b)
    assert text_fingerprint(cls(make(), make_tokenizer(), id="folder", device="cpu", max_length=30)) != \
        text_fingerprint(a)
    # The same words lowercased first (a changed tokenizer file in the folder) are other ids.
    lowered = word_tokenizer(64, specials=("[PAD]", "[UNK]", "[CLS]", "[SEP]"), lowercase=True)
    assert text_fingerprint(cls(make(), lowered, id="folder", device="cpu", max_length=20)) != text_fingerprint(a)


def test_clip_from_pretrained_local_folder(tmp_path):
    """A toy-style folder: CLIPModel.save_pretrained + PreTrainedTokenizerFast (+ optional image processor)."""
    from transformers import CLIPImageProcessor

    model, tok = tiny_clip(), make_tokenizer()
    model.save_pretrained(tmp_path / "a")
    tok.save_pretrained(tmp_path / "a")
    enc = ClipEncoder.from_pretrained(str(tmp_path / "a"), device="cpu")
    assert enc.preprocess.size == 32 and enc.preprocess.mode == "shortest_crop"
    ref = ClipEncoder(model, tok, device="cpu")
    torch.testing.assert_close(enc.encode_text(TEXTS), ref.encode_text(TEXTS), atol=1e-6, rtol=0)
    imgs = random_images()
    torch.testing.assert_close(enc.encode_images(imgs), ref.encode_images(imgs), atol=1e-6, rtol=0)

    model.save_pretrained(tmp_path / "b")
    tok.save_pretrained(tmp_path / "b")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                       image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]).save_pretrained(tmp_path / "b")
    enc_b = ClipEncoder.from_pretrained(str(tmp_path / "b"), device="cpu")
    assert enc_b.preprocess.mean == (0.5, 0.5, 0.5) and enc_b.preprocess.size == 32
    assert "mean[0.5, 0.5, 0.5]" in enc_b.fingerprint()


def test_blip_from_pretrained_local_folder(tmp_path):
    model, tok = tiny_blip(), make_tokenizer()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    enc = BlipEncoder.from_pretrained(str(tmp_path), device="cpu", max_length=20)
    ref = BlipEncoder(model, tok, device="cpu", max_length=20)
    assert enc.preprocess.mode == "square" and enc.preprocess.size == 32
    imgs = random_images()
    torch.testing.assert_close(enc.encode_images(imgs), ref.encode_images(imgs), atol=1e-6, rtol=0)


# -- the factory ----------------------------------------------------------------------------------
def test_parse_every_id_form(tmp_path):
    from dar_lib.models import ENCODER_BACKENDS, GENERATOR_BACKENDS, REFORMULATOR_BACKENDS, ModelSpec, parse_spec

    enc, gen, ref = ENCODER_BACKENDS, GENERATOR_BACKENDS, REFORMULATOR_BACKENDS
    assert parse_spec("blip:Salesforce/blip-itm-base-coco", enc, "encoder") == ModelSpec(
        "blip", "Salesforce/blip-itm-base-coco")
    assert parse_spec("clip:openai/clip-vit-base-patch16@abc123", enc, "encoder") == ModelSpec(
        "clip", "openai/clip-vit-base-patch16", "abc123")
    assert parse_spec("blip-original:/w/chatir_weights.ckpt+Salesforce/blip-itm-base-coco", enc,
                      "encoder") == ModelSpec("blip-original", "/w/chatir_weights.ckpt+Salesforce/blip-itm-base-coco")
    assert parse_spec("toy:clip-zs", enc, "encoder") == ModelSpec("toy", "clip-zs")
    assert parse_spec("sd3:stabilityai/stable-diffusion-3-medium-diffusers", gen, "generator").backend == "sd3"
    assert parse_spec("sd:stabilityai/stable-diffusion-2-1@main", gen, "generator") == ModelSpec(
        "sd", "stabilityai/stable-diffusion-2-1", "main")
    assert parse_spec("turbo:stabilityai/sd-turbo", gen, "generator") == ModelSpec("turbo", "stabilityai/sd-turbo")
    assert parse_spec("diffusers:some/pipe", gen, "generator") == ModelSpec("diffusers", "some/pipe")
    assert parse_spec("openai:gpt-4o-mini@http://localhost:8000/v1", ref, "reformulator") == ModelSpec(
        "openai", "gpt-4o-mini", "http://localhost:8000/v1")
    assert parse_spec("hf-llm:Qwen/Qwen2.5-0.5B-Instruct@v1", ref, "reformulator") == ModelSpec(
        "hf-llm", "Qwen/Qwen2.5-0.5B-Instruct", "v1")
    assert parse_spec("replay:plugir", ref, "reformulator") == ModelSpec("replay", "plugir")
    assert parse_spec("identity", ref, "reformulator") == ModelSpec("identity", "")
    # A local folder whose name contains '@' is a folder, not a revision.
    odd = tmp_path / "model@v2"
    odd.mkdir()
    assert parse_spec(f"clip:{odd}", enc, "encoder") == ModelSpec("clip", str(odd))
    with pytest.raises(ValueError,
                       match=r"unknown encoder backend 'bert'.*known backends: blip, clip, blip-original, beit3, toy"):
        parse_spec("bert:x", enc, "encoder")
    with pytest.raises(ValueError, match="names no model"):
        parse_spec("clip:", enc, "encoder")


def test_factory_loads_local_folders(tmp_path):
    from dar_lib.models import EXAMPLE_IDS, list_backends, load_encoder

    model, tok = tiny_clip(), make_tokenizer()
    model.save_pretrained(tmp_path / "clip")
    tok.save_pretrained(tmp_path / "clip")
    enc = load_encoder(f"clip:{tmp_path / 'clip'}", device="cpu", batch_size=3)
    assert isinstance(enc, ClipEncoder) and enc.batch_size == 3 and enc.device == "cpu"
    ref = ClipEncoder(model, tok, device="cpu")
    torch.testing.assert_close(enc.encode_text(TEXTS), ref.encode_text(TEXTS), atol=1e-6, rtol=0)

    blip = tiny_blip()
    blip.save_pretrained(tmp_path / "blip")
    tok.save_pretrained(tmp_path / "blip")
    benc = load_encoder(f"blip:{tmp_path / 'blip'}", device="cpu", max_length=20)
    assert isinstance(benc, BlipEncoder) and benc.max_length == 20
    assert set(list_backends()) == {"encoder", "generator", "reformulator"}
    assert "blip:Salesforce/blip-itm-base-coco" in EXAMPLE_IDS["encoder"]
    with pytest.raises(ValueError, match="unknown encoder backend"):
        load_encoder("nope:x")


def test_factory_toy_delegates_lazily(monkeypatch, tmp_path):
    import sys
    import types

    import dar_lib.models as models

    calls = []
    fake = types.ModuleType("dar_lib.models.toy")
    fake.load_encoder = lambda name, **kw: calls.append(("enc", name, kw)) or "E"
    fake.load_generator = lambda name, **kw: calls.append(("gen", name, kw)) or "G"
    fake.load_reformulator = lambda name, **kw: calls.append(("ref", name, kw)) or "R"
    fake.ENCODERS, fake.GENERATORS = ("clip-zs",), ("diffusion",)
    fake.resolve = lambda name, kind, known: tmp_path / name  # no such folder: nothing local to check
    monkeypatch.setitem(sys.modules, "dar_lib.models.toy", fake)
    monkeypatch.setattr(models, "toy", fake, raising=False)
    monkeypatch.setattr(models.ids, "toy", fake)  # local paths are resolved there
    assert models.load_encoder("toy:clip-zs", device="cpu") == "E"
    assert models.load_encoder("toy:clip-zs", device="cpu", batch_size=7) == "E"
    assert models.load_generator("toy:diffusion") == "G"
    assert models.load_reformulator("toy:rules") == "R"
    assert models.load_encoder("toy:clip-zs?max_length=12", device="cpu") == "E"
    # Only settings the caller gave are passed on, so the toy loaders keep their own defaults.
    assert calls[0] == ("enc", "clip-zs", {"device": "cpu"})
    assert calls[1] == ("enc", "clip-zs", {"device": "cpu", "batch_size": 7})
    assert calls[2][:2] == ("gen", "diffusion") and calls[2][2] == {"device": "cpu"}  # settings default
    assert calls[3] == ("ref", "rules", {})
    assert calls[4] == ("enc", "clip-zs", {"device": "cpu", "max_length": 12})  # the id's option


# -- options after '?' in ids ------------------------------------------------------------------------
def test_parse_options():
    from dar_lib.models import (
        ENCODER_BACKENDS,
        GENERATOR_BACKENDS,
        MODEL_OPTIONS,
        REFORMULATOR_BACKENDS,
        ModelSpec,
        parse_spec,
    )

    enc = ENCODER_BACKENDS
    chatir = "blip-original:chatir_weights.ckpt+Salesforce/blip-itm-base-coco?max_length=200"
    assert parse_spec(chatir, enc, "encoder") == ModelSpec(
        "blip-original", "chatir_weights.ckpt+Salesforce/blip-itm-base-coco", None, {"max_length": "200"})
    assert parse_spec("clip:openai/clip-vit-base-patch16@abc123?max_length=50", enc, "encoder") == ModelSpec(
        "clip", "openai/clip-vit-base-patch16", "abc123", {"max_length": "50"})
    assert parse_spec("beit3:/w/b.pth+/w/beit3.spm?max_length=64&image_size=384", enc, "encoder").options == {
        "max_length": "64", "image_size": "384"}
    assert parse_spec("blip:Salesforce/blip-itm-base-coco", enc, "encoder").options == {}
    for backend in enc:  # every encoder has a text limit and a truncation policy
        assert {"max_length", "truncation"} <= set(MODEL_OPTIONS["encoder"][backend])
    with pytest.raises(ValueError, match=r"unknown option max_len; backend 'blip' accepts: max_length, truncation$"):
        parse_spec("blip:Salesforce/blip-itm-base-coco?max_len=200", enc, "encoder")
    with pytest.raises(ValueError, match=r"unknown options dtype, size; backend 'blip-original' accepts: "
                                         r"max_length, image_size, truncation"):
        parse_spec("blip-original:x.ckpt?size=3&dtype=fp16", enc, "encoder")
    with pytest.raises(ValueError, match=r"option 'max_length' is not 'name=value'"):
        parse_spec("clip:openai/clip-vit-base-patch16?max_length", enc, "encoder")
    with pytest.raises(ValueError, match=r"option 'max_length' is given twice"):
        parse_spec("clip:x?max_length=3&max_length=4", enc, "encoder")
    with pytest.raises(ValueError, match="names no model"):
        parse_spec("clip:?max_length=3", enc, "encoder")
    with pytest.raises(ValueError, match=r"unknown option steps; backend 'sd3' accepts: no options"):
        parse_spec("sd3:stabilityai/stable-diffusion-3-medium-diffusers?steps=4", GENERATOR_BACKENDS, "generator")
    # An OpenAI-compatible base URL keeps its query string.
    assert parse_spec("openai:gpt-4o@https://host/v1?api-version=2024-06-01", REFORMULATOR_BACKENDS,
                      "reformulator") == ModelSpec("openai", "gpt-4o", "https://host/v1?api-version=2024-06-01")


def test_max_length_option_reaches_the_encoder_and_its_fingerprint(tmp_path):
    from dar_lib.models import load_encoder

    blip, tok = tiny_blip(), make_tokenizer()
    blip.save_pretrained(tmp_path / "blip")
    tok.save_pretrained(tmp_path / "blip")
    e30 = load_encoder(f"blip:{tmp_path / 'blip'}?max_length=30", device="cpu")
    e20 = load_encoder(f"blip:{tmp_path / 'blip'}?max_length=20", device="cpu")
    assert e30.max_length == 30 and e20.max_length == 20
    assert "max_length=30" in e30.fingerprint() and e30.fingerprint() != e20.fingerprint()
    same = load_encoder(f"blip:{tmp_path / 'blip'}?max_length=20", device="cpu", max_length=20)
    assert same.fingerprint() == e20.fingerprint()
    long = " ".join(["dog"] * 40)  # 42 tokens: cut at 20 and at 30 differently
    assert not torch.allclose(e30.encode_text([long]), e20.encode_text([long]))
    with pytest.raises(ValueError, match=r"sets max_length=20 but the call passes max_length=30"):
        load_encoder(f"blip:{tmp_path / 'blip'}?max_length=20", device="cpu", max_length=30)
    with pytest.raises(ValueError, match=r"option max_length='long' is not an integer"):
        load_encoder(f"blip:{tmp_path / 'blip'}?max_length=long", device="cpu")
    with pytest.raises(ValueError, match=r"option max_length='0' must be positive"):
        load_encoder(f"blip:{tmp_path / 'blip'}?max_length=0", device="cpu")

    clip = tiny_clip()
    clip.save_pretrained(tmp_path / "clip")
    tok.save_pretrained(tmp_path / "clip")
    assert load_encoder(f"clip:{tmp_path / 'clip'}?max_length=12", device="cpu").max_length == 12

    # blip-original, as the parameter table writes ChatIR's setting (the tiny model has 64 positions).
    from dar_lib.testing import blip_to_original, save_blip_checkpoint

    ckpt = save_blip_checkpoint(tmp_path / "chatir_weights.ckpt", blip_to_original(blip))
    enc = load_encoder(f"blip-original:{ckpt}+{tmp_path / 'blip'}?max_length=40", device="cpu", head_size=8)
    assert enc.max_length == 40 and "max_length=40" in enc.fingerprint()
    assert load_encoder(f"blip-original:{ckpt}+{tmp_path / 'blip'}", device="cpu", head_size=8).max_length == 64


# -- one RGB conversion for every input ------------------------------------------------------------------
def _mode_files(tmp_path) -> dict[str, Path]:
    """PNG files in modes whose naive ``convert("RGB")`` differs from the corpus loader's ``to_rgb``."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    alpha = np.full((40, 48), 255, np.uint8)
    alpha[:, :24] = 0  # left half transparent: its hidden colours must not reach the encoder
    alpha[30:, 24:] = 128
    files = {}
    files["RGBA"] = np.dstack([rgb, alpha])
    files["LA"] = np.dstack([rgb[..., 0], alpha])
    out = {}
    for mode, arr in files.items():
        out[mode] = tmp_path / f"{mode}.png"
        Image.fromarray(arr).save(out[mode])  # Pillow reads (H, W, 4) as RGBA and (H, W, 2) as LA
    pal = Image.fromarray(rgb).quantize(16)
    pal.info["transparency"] = 0
    out["P"] = tmp_path / "P.png"
    pal.save(out["P"], transparency=0)
    grey16 = (rng.integers(0, 65536, (40, 48))).astype(np.uint16)
    out["I;16"] = tmp_path / "I16.png"
    Image.fromarray(grey16).save(out["I;16"])
    out["L"] = tmp_path / "L.png"
    Image.fromarray(rgb[..., 1]).save(out["L"])
    return out


def test_every_image_input_goes_through_the_corpus_conversion(encoder, tmp_path):
    from dar_lib.benchmarks.images import load_image

    files = _mode_files(tmp_path)
    for mode, f in files.items():
        with Image.open(f) as raw:
            assert raw.mode == mode or (mode == "I;16" and raw.mode in ("I;16", "I")), (mode, raw.mode)
            ref = encoder.encode_images([load_image(f)])
            got = encoder.encode_images([raw])
            naive = encoder.encode_images([raw.convert("RGB")])
        torch.testing.assert_close(got, ref, atol=0, rtol=0, msg=f"PIL {mode}")
        torch.testing.assert_close(encoder.encode_images([f]), ref, atol=0, rtol=0, msg=f"path {mode}")
        torch.testing.assert_close(encoder.encode_images([str(f)]), ref, atol=0, rtol=0, msg=f"str path {mode}")
        torch.testing.assert_close(encoder.encode_images(str(f)), ref, atol=0, rtol=0, msg=f"one path {mode}")
        arr = np.asarray(load_image(f))
        torch.testing.assert_close(encoder.encode_images([arr]), ref, atol=0, rtol=0, msg=f"array {mode}")
        if mode != "L":  # the test has teeth: a plain convert("RGB") embeds these differently
            assert (naive - ref).abs().max() > 1e-3, mode
    # uint8 arrays: (H, W) is greyscale, (H, W, 4) is RGBA composited on white.
    with Image.open(files["L"]) as grey:
        torch.testing.assert_close(encoder.encode_images([np.asarray(grey)]), encoder.encode_images([files["L"]]),
                                   atol=0, rtol=0)
    with Image.open(files["RGBA"]) as rgba:
        torch.testing.assert_close(encoder.encode_images([np.asarray(rgba)]), encoder.encode_images([files["RGBA"]]),
                                   atol=0, rtol=0)
    # A batch mixing every kind of input equals the items one by one.
    mixed = [files["RGBA"], Image.open(files["P"]), np.asarray(load_image(files["LA"])), str(files["I;16"])]
    torch.testing.assert_close(encoder.encode_images(mixed), torch.cat([encoder.encode_images([m]) for m in mixed]),
                               atol=1e-6, rtol=0)
    with pytest.raises(TypeError, match=r"uint8 array.*got a float32 array of shape \(4, 4, 3\)"):
        encoder.encode_images([np.zeros((4, 4, 3), np.float32)])
    with pytest.raises(TypeError, match="got int"):
        encoder.encode_images([3])
    from dar_lib.errors import DataError

    with pytest.raises(DataError, match="missing.png"):
        encoder.encode_images([tmp_path / "missing.png"])


class _WritesMarker:
    """Unpickling this runs ``open(marker, "w")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_bin_in_a_model_folder_is_one_line_naming_the_file(tmp_path, capsys):
    """torch refuses it weights-only (its code never runs); the user sees one line naming the file, not torch's page."""
    from dar_lib.cli import main
    from dar_lib.errors import DataError
    from dar_lib.models import load_encoder

    model, tok = tiny_clip(), make_tokenizer()
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    marker = tmp_path / "ran"
    torch.save({**model.state_dict(), "cfg": _WritesMarker(marker)}, tmp_path / "m" / "pytorch_model.bin")
    with pytest.raises(DataError) as err:
        load_encoder(f"clip:{tmp_path / 'm'}", device="cpu")
    msg = str(err.value)
    assert "\n" not in msg and f"{tmp_path / 'm' / 'pytorch_model.bin'}: cannot be read as a weights-only" in msg
    assert "Unsupported global: GLOBAL" in msg and "trust_pickle=True" in msg
    assert "model.safetensors" in msg  # where a trusted conversion goes
    capsys.readouterr()
    rc = main(["eval", "--benchmark", "toy-flan", "--encoder", f"clip:{tmp_path / 'm'}", "--toy-size", "smoke",
               "--n-dialogues", "2", "--methods", "baseline", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "pytorch_model.bin" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists()
