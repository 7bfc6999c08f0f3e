"""Importing original-layout BLIP checkpoints into transformers' BlipForImageTextRetrieval."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from dar_lib.models import blip_import as bi
from dar_lib.models.encoders import BlipEncoder
from dar_lib.testing import TEXTS, blip_to_original, make_tokenizer, random_images, save_blip_checkpoint, tiny_blip

BLIP_KEYS = Path(__file__).resolve().parents[2] / "shared/data/blip"


def test_key_mapping_round_trip_on_every_model_key():
    model = tiny_blip()
    for k in model.state_dict():
        assert bi.original_to_hf_key(bi.hf_to_original_key(k)) == k
    assert (bi.original_to_hf_key("visual_encoder.blocks.3.attn.qkv.weight")
            == "vision_model.encoder.layers.3.self_attn.qkv.weight")
    assert bi.original_to_hf_key("visual_encoder.norm.bias") == "vision_model.post_layernorm.bias"
    assert bi.original_to_hf_key("text_encoder_m.encoder.layer.0.output.dense.weight") is None
    with pytest.raises(KeyError):
        bi.original_to_hf_key("decoder.cls.predictions.bias")




def test_load_into_round_trip(tmp_path):
    model, tok = tiny_blip(), make_tokenizer()
    path = save_blip_checkpoint(tmp_path / "ckpt.pth", blip_to_original(model, retrieval_extras=True))
    torch.manual_seed(123)
    fresh = tiny_blip()
    # Different random weights before the import...
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(0.5)
    bi.load_into(fresh, bi.read_checkpoint(path), source=str(path))
    a = BlipEncoder(model, tok, device="cpu", max_length=20)
    b = BlipEncoder(fresh, tok, device="cpu", max_length=20)
    assert torch.equal(a.encode_text(TEXTS), b.encode_text(TEXTS))
    assert torch.equal(a.encode_images(random_images()), b.encode_images(random_images()))


def test_load_original_blip_with_local_base(tmp_path):
    model, tok = tiny_blip(), make_tokenizer()
    base = tmp_path / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    torch.manual_seed(7)
    other = tiny_blip()
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(-1.0)
    path = save_blip_checkpoint(tmp_path / "ckpt.pth", blip_to_original(other))
    loaded, tok2 = bi.load_original_blip(path, base=str(base), head_size=8)  # tiny test model: heads of 8
    assert loaded.config.vision_config.image_size == 32
    assert tok2 is not None
    a = BlipEncoder(other, tok, device="cpu", max_length=20)
    b = BlipEncoder(loaded, tok2, device="cpu", max_length=20)
    torch.testing.assert_close(a.encode_text(TEXTS), b.encode_text(TEXTS), atol=0, rtol=0)
    torch.testing.assert_close(a.encode_images(random_images()), b.encode_images(random_images()), atol=0, rtol=0)


def test_factory_blip_original(tmp_path):
    from dar_lib.models import load_encoder

    model, tok = tiny_blip(), make_tokenizer()
    base = tmp_path / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    path = save_blip_checkpoint(tmp_path / "chatir_weights.ckpt", blip_to_original(model))
    enc = load_encoder(f"blip-original:{path}+{base}", device="cpu", max_length=20, head_size=8)
    ref = BlipEncoder(model, tok, device="cpu", max_length=20)
    torch.testing.assert_close(enc.encode_images(random_images()), ref.encode_images(random_images()), atol=0, rtol=0)
    assert "chatir_weights.ckpt" in enc.fingerprint()


def test_pos_embed_resized_bicubically(tmp_path):
    """A 384-style checkpoint (larger grid) loads into a smaller model with a resized pos_embed."""
    big = tiny_blip(image_size=64)  # 8x8 patches
    sd = blip_to_original(big)
    small = tiny_blip(image_size=32)  # 4x4 patches
    bi.load_into(small, sd)
    pe = small.vision_model.embeddings.position_embedding
    assert pe.shape == (1, 17, 32)
    src = sd["visual_encoder.pos_embed"]
    assert torch.equal(pe[:, 0], src[:, 0])  # the class token's embedding is kept
    grid = src[:, 1:].reshape(1, 8, 8, 32).permute(0, 3, 1, 2)
    ref = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False)
    torch.testing.assert_close(pe[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, 16, 32))


def test_missing_extra_and_misshaped_keys_are_listed():
    model = tiny_blip()
    sd = blip_to_original(model)
    del sd["visual_encoder.blocks.1.mlp.fc2.bias"]
    sd["text_encoder.encoder.layer.0.attention.self.query.weight"] = torch.zeros(5, 5)
    with pytest.raises(bi.BlipImportError) as err:
        bi.load_into(tiny_blip(), sd, source="bad.pth")
    msg = str(err.value)
    assert "bad.pth" in msg
    assert "missing 1: vision_model.encoder.layers.1.mlp.fc2.bias" in msg
    assert "text_encoder.encoder.layer.0.attention.self.query.weight (5, 5) != (32, 32)" in msg

    sd = blip_to_original(model)
    sd["decoder.bert.embeddings.word_embeddings.weight"] = torch.zeros(3)
    sd["visual_encoder.blocks.0.attn.extra.weight"] = torch.zeros(3)
    with pytest.raises(bi.BlipImportError, match=r"2 keys have no mapping.*decoder\.bert.*attn\.extra"):
        bi.load_into(tiny_blip(), sd, source="bad.pth")

    sd = blip_to_original(model)
    sd["text_encoder.encoder.layer.9.output.dense.bias"] = torch.zeros(32)  # a layer the model lacks
    with pytest.raises(bi.BlipImportError, match=r"unexpected 1: text_encoder\.encoder\.layer\.9"):
        bi.load_into(tiny_blip(), sd)


def test_bad_position_ids_and_unsafe_files(tmp_path):
    sd = blip_to_original(tiny_blip())
    sd[bi.POSITION_IDS] = torch.zeros(1, 64, dtype=torch.long)
    with pytest.raises(bi.BlipImportError, match="position_ids"):
        bi.load_into(tiny_blip(), sd)
    # A pickle with arbitrary objects is refused by weights_only loading.
    p = tmp_path / "evil.pth"
    torch.save({"model": {"x": object()}}, p)
    with pytest.raises(bi.BlipImportError, match="weights-only"):
        bi.read_checkpoint(p)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        bi.read_checkpoint(tmp_path / "nope.pth")


def _read_tsv(path: Path) -> dict[str, tuple[int, ...]]:
    out = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        key, shape, _dtype = line.split("\t")
        out[key] = tuple(int(x) for x in re.findall(r"\d+", shape))
    return out


@pytest.mark.parametrize("name", ["blip_itm_base_224_keys.tsv", "extra_blip_retrieval_base_384_keys.tsv",
                                  "blip_pretrain_base_224_keys.tsv"])
def test_published_key_lists_map_completely(name):
    path = BLIP_KEYS / name
    if not path.is_file():
        pytest.skip(f"{path} not present (the original BLIP key lists live beside the checkpoint)")
    keys = _read_tsv(path)
    assert len(keys) == {"blip_itm_base_224_keys.tsv": 473, "extra_blip_retrieval_base_384_keys.tsv": 949,
                         "blip_pretrain_base_224_keys.tsv": 1272}[name]
    # Shapes of a base-size transformers model, without allocating its weights.
    from transformers import BlipForImageTextRetrieval

    with torch.device("meta"):
        target = {k: tuple(v.shape) for k, v in BlipForImageTextRetrieval(bi.base_config(224)).state_dict().items()}
    mapped, dropped = {}, []
    for k, shape in keys.items():
        new = bi.original_to_hf_key(k)  # raises KeyError for an unmapped key
        if new is None:
            dropped.append(k)
        else:
            mapped[new] = shape
    assert set(mapped) == set(target), (set(mapped) ^ set(target))
    for k, shape in mapped.items():
        if k == "vision_model.embeddings.position_embedding":
            assert shape[2] == target[k][2]  # resized to 224 px on import
        else:
            assert shape == target[k], k
    # position_ids; + temp, 2 queues, idx/ptr queue and the 471 momentum keys; or (pre-training)
    # + temp, 2 queues, queue_ptr, 471 momentum keys and the 324 text_decoder keys.
    expected_dropped = {"blip_itm_base_224_keys.tsv": 1, "extra_blip_retrieval_base_384_keys.tsv": 1 + 5 + 471,
                        "blip_pretrain_base_224_keys.tsv": 1 + 799}[name]
    assert len(dropped) == expected_dropped


# -- BLIP's pre-training checkpoint (model_base.pth) -----------------------------------------------
PRETRAIN_TSV = BLIP_KEYS / "blip_pretrain_base_224_keys.tsv"
#: Original keys whose values the pre-training test checks after the import: name -> transformers name.
CHECKED = {
    "vision_proj.weight": "vision_proj.weight",
    "vision_proj.bias": "vision_proj.bias",
    "text_proj.weight": "text_proj.weight",
    "text_proj.bias": "text_proj.bias",
    "itm_head.weight": "itm_head.weight",
    "visual_encoder.blocks.5.attn.qkv.weight": "vision_model.encoder.layers.5.self_attn.qkv.weight",
    "visual_encoder.blocks.11.mlp.fc2.bias": "vision_model.encoder.layers.11.mlp.fc2.bias",
    "text_encoder.encoder.layer.7.attention.self.query.weight":
        "text_encoder.encoder.layer.7.attention.self.query.weight",
    "text_encoder.encoder.layer.3.output.dense.weight": "text_encoder.encoder.layer.3.output.dense.weight",
    "visual_encoder.pos_embed": "vision_model.embeddings.position_embedding",
    "visual_encoder.cls_token": "vision_model.embeddings.class_embedding",
}
IGNORED_PREFIXES = ("text_decoder.", "visual_encoder_m.", "text_encoder_m.", "vision_proj_m.", "text_proj_m.")
IGNORED_EXACT = {"temp", "image_queue", "text_queue", "queue_ptr"}


def _read_tsv_typed(path: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    out = {}
    for line in path.read_text().splitlines():
        if line.strip():
            key, shape, dtype = line.split("\t")
            out[key] = (tuple(int(x) for x in re.findall(r"\d+", shape)), getattr(torch, dtype))
    return out


def pretrain_checkpoint(tmp_path) -> tuple[Path, dict[str, torch.Tensor], dict]:
    """A file with EXACTLY the keys, shapes and dtypes of BLIP's ``model_base.pth`` (from the tsv).

    The real layout holds 638M numbers (2.5 GB); to stay fast, every tensor the test does not
    inspect is a zero-stride view (``expand``) of one small random row, which torch.save stores as
    that row. The tensors in :data:`CHECKED` are fully random.
    """
    if not PRETRAIN_TSV.is_file():
        pytest.skip(f"{PRETRAIN_TSV} not present (the BLIP key lists live in shared/data/blip)")
    layout = _read_tsv_typed(PRETRAIN_TSV)
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for key, (shape, dtype) in layout.items():
        if key in (bi.POSITION_IDS, "text_encoder_m.embeddings.position_ids",
                   "text_decoder.bert.embeddings.position_ids"):
            sd[key] = torch.arange(shape[-1], dtype=dtype).reshape(shape)
        elif dtype != torch.float32:
            sd[key] = torch.zeros(shape, dtype=dtype)
        elif key in CHECKED or not shape:
            sd[key] = torch.randn(shape, generator=gen)
        else:
            sd[key] = torch.randn(shape[-1], generator=gen).expand(shape)
    path = tmp_path / "model_base.pth"
    torch.save({"model": sd}, path)
    return path, sd, layout


def test_pretrain_checkpoint_maps_by_name(tmp_path):
    from transformers import BlipForImageTextRetrieval

    path, sd, layout = pretrain_checkpoint(tmp_path)
    assert path.stat().st_size < 50_000_000  # the zero-stride views stay small on disk
    state = bi.read_checkpoint(path)
    assert set(state) == set(layout) and len(state) == 1272
    assert all(tuple(state[k].shape) == layout[k][0] and state[k].dtype == layout[k][1] for k in layout)
    converted = bi.convert_state_dict(state, num_patches=196, source=str(path))
    with torch.device("meta"):
        target = {k: tuple(v.shape) for k, v in BlipForImageTextRetrieval(bi.base_config(224)).state_dict().items()}
    assert set(converted) == set(target)
    assert all(tuple(converted[k].shape) == target[k] for k in target)
    # The retrieval parts land where they must, unchanged.
    for orig, hf in CHECKED.items():
        assert torch.equal(converted[hf], sd[orig]), orig
    # Ignored by name: the decoder, the momentum copies, temperature, queues and queue pointer.
    ignored = {k for k in layout if bi.original_to_hf_key(k) is None}
    assert ignored == {k for k in layout if k.startswith(IGNORED_PREFIXES) or k in IGNORED_EXACT} | {bi.POSITION_IDS}
    assert sum(k.startswith("text_decoder.") for k in ignored) == 324
    # ...by NAME, not by shape: near-miss names are unknown and refused, listed in the error.
    bad = dict(state)
    bad["text_decoderx.cls.bias"] = bad.pop("text_decoder.cls.predictions.bias")
    bad["queue_ptr2"] = bad.pop("queue_ptr")
    bad["visual_encoder_mm.cls_token"] = bad.pop("visual_encoder_m.cls_token")
    with pytest.raises(bi.BlipImportError, match=r"model_base\.pth: 3 keys have no mapping.*queue_ptr2, "
                                                 r"text_decoderx\.cls\.bias, visual_encoder_mm\.cls_token"):
        bi.convert_state_dict(bad, source=str(path))


def test_pretrain_checkpoint_loads_into_full_size_blip(tmp_path):
    """The one full-size import (BLIP-base, ~1 GB of float32 on CPU): the file builds a model."""
    path, sd, _ = pretrain_checkpoint(tmp_path)
    model, tok = bi.load_original_blip(path, base=None)
    assert tok is None and model.config.vision_config.image_size == 224
    params = model.state_dict()
    for orig, hf in CHECKED.items():
        assert torch.equal(params[hf], sd[orig]), orig
    assert model.config.text_config.num_attention_heads == 12
    del model, params


# -- what real checkpoint files carry beside the weights ---------------------------------------------
class TrainerConfig:
    """A trainer's own config class, pickled into its checkpoints (weights-only loading refuses it)."""

    def __init__(self, lr: float = 1e-5, vit: str = "base"):
        self.lr, self.vit = lr, vit


def test_training_state_beside_the_weights_is_ignored(tmp_path):
    model = tiny_blip()
    sd = blip_to_original(model)
    path = tmp_path / "checkpoint_04.pth"
    torch.save({"model": sd, "epoch": 4, "config": {"vit": "base", "image_size": 32, "queue_size": 57600},
                "optimizer": {"state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(3)}},
                              "param_groups": [{"lr": 1e-5, "weight_decay": 0.05, "params": [0]}]},
                "scheduler": "cosine"}, path)
    state = bi.read_checkpoint(path)
    assert set(state) == set(sd) and all(torch.equal(state[k], sd[k]) for k in sd)
    fresh = tiny_blip()
    with torch.no_grad():
        for p in fresh.parameters():
            p.mul_(-1.0)
    bi.load_into(fresh, state, source=str(path))
    a = BlipEncoder(model, make_tokenizer(), device="cpu", max_length=20)
    b = BlipEncoder(fresh, make_tokenizer(), device="cpu", max_length=20)
    assert torch.equal(a.encode_text(TEXTS), b.encode_text(TEXTS))


def test_pickled_class_is_refused_by_name_then_converted(tmp_path):
    from dar_lib.models import load_encoder

    model, tok = tiny_blip(), make_tokenizer()
    sd = blip_to_original(model)
    # A tied weight, as in BLIP's pre-training checkpoint (safetensors stores no shared tensors).
    sd["text_decoder.bert.embeddings.word_embeddings.weight"] = sd["text_encoder.embeddings.word_embeddings.weight"]
    path = tmp_path / "trainer.pth"
    torch.save({"model": sd, "config": TrainerConfig(), "epoch": 2}, path)
    with pytest.raises(bi.BlipImportError) as err:
        bi.read_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and "weights-only" in msg
    assert f"Unsupported global: GLOBAL {TrainerConfig.__module__}.TrainerConfig" in msg
    assert "convert_to_safetensors(" in msg and "trust_pickle=True" in msg

    dst = tmp_path / "trainer.safetensors"
    with pytest.raises(ValueError, match="trust_pickle=True"):
        bi.convert_to_safetensors(path, dst)
    assert not dst.exists()
    assert bi.convert_to_safetensors(path, dst, trust_pickle=True) == dst
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    state = bi.read_checkpoint(dst)
    assert set(state) == set(sd) and all(torch.equal(state[k], sd[k]) for k in sd)

    base = tmp_path / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    enc = load_encoder(f"blip-original:{dst}+{base}", device="cpu", max_length=20, head_size=8)
    ref = BlipEncoder(model, tok, device="cpu", max_length=20)
    torch.testing.assert_close(enc.encode_text(TEXTS), ref.encode_text(TEXTS), atol=0, rtol=0)
    torch.testing.assert_close(enc.encode_images(random_images()), ref.encode_images(random_images()), atol=0, rtol=0)
    assert "trainer.safetensors" in enc.fingerprint()


def test_bad_safetensors_file_is_named(tmp_path):
    p = tmp_path / "broken.safetensors"
    p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(bi.BlipImportError, match=r"broken\.safetensors: cannot be read as a safetensors file"):
        bi.read_checkpoint(p)


# -- the head layout the original checkpoints imply ----------------------------------------------------
def _head_config(text_heads: int | None):
    """Small BLIP config with heads of 64: text 128 wide (2 heads), vision 64 wide (1 head).

    ``text_heads=None`` leaves transformers' BlipTextConfig default (8 heads), the silent-wrong case.
    """
    from transformers import BlipConfig

    text = dict(vocab_size=40, hidden_size=128, num_hidden_layers=1, intermediate_size=64,
                max_position_embeddings=64, bos_token_id=2, sep_token_id=3, pad_token_id=0)
    if text_heads is not None:
        text["num_attention_heads"] = text_heads
    return BlipConfig(text_config=text,
                      vision_config=dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=1,
                                         intermediate_size=64, image_size=32, patch_size=16, layer_norm_eps=1e-6),
                      image_text_hidden_size=16)


def test_base_config_with_wrong_head_count_is_refused(tmp_path):
    from transformers import BlipForImageTextRetrieval

    from dar_lib.models import load_encoder

    torch.manual_seed(0)
    right = BlipForImageTextRetrieval(_head_config(2)).eval()
    tok = make_tokenizer()
    path = save_blip_checkpoint(tmp_path / "ckpt.pth", blip_to_original(right))
    assert _head_config(None).text_config.num_attention_heads == 8  # transformers' default
    for name, cfg in (("wrong", _head_config(None)), ("right", _head_config(2))):
        BlipForImageTextRetrieval(cfg).save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)

    with pytest.raises(bi.BlipImportError) as err:
        bi.load_original_blip(path, base=str(tmp_path / "wrong"))
    msg = str(err.value)
    assert str(path) in msg and str(tmp_path / "wrong") in msg
    assert "text_config.num_attention_heads=8 with text_config.hidden_size=128 (head size 16)" in msg
    assert "heads of 64, so it needs 2 heads" in msg and "vision_config" not in msg
    with pytest.raises(bi.BlipImportError, match="text_config.num_attention_heads=8"):
        load_encoder(f"blip-original:{path}+{tmp_path / 'wrong'}", device="cpu")

    # The same shapes with the right head count load, and compute the original model's features.
    enc = load_encoder(f"blip-original:{path}+{tmp_path / 'right'}", device="cpu", max_length=20)
    ref = BlipEncoder(right, tok, device="cpu", max_length=20)
    torch.testing.assert_close(enc.encode_text(TEXTS), ref.encode_text(TEXTS), atol=0, rtol=0)
    # The rule also covers the vision tower, and a width that is no multiple of the head size.
    cfg = _head_config(2)
    cfg.vision_config.num_attention_heads = 4
    with pytest.raises(bi.BlipImportError, match=r"vision_config.num_attention_heads=4 .* so it needs 1 head\b"):
        bi.check_head_layout(cfg)
    cfg = _head_config(2)
    cfg.text_config.hidden_size = 96
    with pytest.raises(bi.BlipImportError, match="96 is not a multiple of 64"):
        bi.check_head_layout(cfg)
    bi.check_head_layout(bi.base_config())  # BLIP-base: 12 heads of 64 in both towers
