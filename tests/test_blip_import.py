"""Importing original-layout BLIP checkpoints into transformers' BlipForImageTextRetrieval."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from dar_lib.models import blip_import as bi
from dar_lib.models.encoders import BlipEncoder

from test_encoders import TEXTS, images, make_tokenizer, tiny_blip

BLIP_KEYS = Path(__file__).resolve().parents[2] / "shared/data/blip"


def to_original(model, image_size_of_ckpt: int | None = None, retrieval_extras: bool = False) -> dict:
    """Export a transformers BLIP as an original-layout state dict (the inverse mapping)."""
    sd = {bi.hf_to_original_key(k): v.clone() for k, v in model.state_dict().items()}
    n_pos = model.config.text_config.max_position_embeddings
    sd[bi.POSITION_IDS] = torch.arange(n_pos).unsqueeze(0)
    if retrieval_extras:
        sd.update(temp=torch.tensor(0.07), image_queue=torch.randn(16, 8), text_queue=torch.randn(16, 8),
                  idx_queue=torch.zeros(1, 8, dtype=torch.long), ptr_queue=torch.zeros(1, dtype=torch.long))
        sd["visual_encoder_m.cls_token"] = torch.zeros(1, 1, 32)
        sd["text_proj_m.weight"] = torch.zeros(16, 32)
    return sd


def save(tmp_path, sd, name="ckpt.pth") -> Path:
    p = tmp_path / name
    torch.save({"model": sd, "epoch": 3}, p)
    return p


def test_key_mapping_round_trip_on_every_model_key():
    model = tiny_blip()
    for k in model.state_dict():
        assert bi.original_to_hf_key(bi.hf_to_original_key(k)) == k
    assert bi.original_to_hf_key("visual_encoder.blocks.3.attn.qkv.weight") == "vision_model.encoder.layers.3.self_attn.qkv.weight"
    assert bi.original_to_hf_key("visual_encoder.norm.bias") == "vision_model.post_layernorm.bias"
    assert bi.original_to_hf_key("text_encoder_m.encoder.layer.0.output.dense.weight") is None
    with pytest.raises(KeyError):
        bi.original_to_hf_key("decoder.cls.predictions.bias")




def test_load_into_round_trip(tmp_path):
    model, tok = tiny_blip(), make_tokenizer()
    path = save(tmp_path, to_original(model, retrieval_extras=True))
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
    assert torch.equal(a.encode_images(images()), b.encode_images(images()))


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
    path = save(tmp_path, to_original(other))
    loaded, tok2 = bi.load_original_blip(path, base=str(base))
    assert loaded.config.vision_config.image_size == 32
    assert tok2 is not None
    a = BlipEncoder(other, tok, device="cpu", max_length=20)
    b = BlipEncoder(loaded, tok2, device="cpu", max_length=20)
    torch.testing.assert_close(a.encode_text(TEXTS), b.encode_text(TEXTS), atol=0, rtol=0)
    torch.testing.assert_close(a.encode_images(images()), b.encode_images(images()), atol=0, rtol=0)


def test_factory_blip_original(tmp_path):
    from dar_lib.models import load_encoder

    model, tok = tiny_blip(), make_tokenizer()
    base = tmp_path / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    path = save(tmp_path, to_original(model), name="chatir_weights.ckpt")
    enc = load_encoder(f"blip-original:{path}+{base}", device="cpu", max_length=20)
    ref = BlipEncoder(model, tok, device="cpu", max_length=20)
    torch.testing.assert_close(enc.encode_images(images()), ref.encode_images(images()), atol=0, rtol=0)
    assert "chatir_weights.ckpt" in enc.fingerprint()


def test_pos_embed_resized_bicubically(tmp_path):
    """A 384-style checkpoint (larger grid) loads into a smaller model with a resized pos_embed."""
    big = tiny_blip(image_size=64)  # 8x8 patches
    sd = to_original(big)
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
    sd = to_original(model)
    del sd["visual_encoder.blocks.1.mlp.fc2.bias"]
    sd["text_encoder.encoder.layer.0.attention.self.query.weight"] = torch.zeros(5, 5)
    with pytest.raises(bi.BlipImportError) as err:
        bi.load_into(tiny_blip(), sd, source="bad.pth")
    msg = str(err.value)
    assert "bad.pth" in msg
    assert "missing 1: vision_model.encoder.layers.1.mlp.fc2.bias" in msg
    assert "text_encoder.encoder.layer.0.attention.self.query.weight (5, 5) != (32, 32)" in msg

    sd = to_original(model)
    sd["decoder.bert.embeddings.word_embeddings.weight"] = torch.zeros(3)
    sd["visual_encoder.blocks.0.attn.extra.weight"] = torch.zeros(3)
    with pytest.raises(bi.BlipImportError, match=r"2 keys have no mapping.*decoder\.bert.*attn\.extra"):
        bi.load_into(tiny_blip(), sd, source="bad.pth")

    sd = to_original(model)
    sd["text_encoder.encoder.layer.9.output.dense.bias"] = torch.zeros(32)  # a layer the model lacks
    with pytest.raises(bi.BlipImportError, match=r"unexpected 1: text_encoder\.encoder\.layer\.9"):
        bi.load_into(tiny_blip(), sd)


def test_bad_position_ids_and_unsafe_files(tmp_path):
    sd = to_original(tiny_blip())
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


@pytest.mark.parametrize("name", ["blip_itm_base_224_keys.tsv", "extra_blip_retrieval_base_384_keys.tsv"])
def test_published_key_lists_map_completely(name):
    path = BLIP_KEYS / name
    if not path.is_file():
        pytest.skip(f"{path} not present (the original BLIP key lists live beside the checkpoint)")
    keys = _read_tsv(path)
    assert len(keys) == {"blip_itm_base_224_keys.tsv": 473, "extra_blip_retrieval_base_384_keys.tsv": 949}[name]
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
    expected_dropped = 1 if "itm" in name else 1 + 5 + 471
    assert len(dropped) == expected_dropped
