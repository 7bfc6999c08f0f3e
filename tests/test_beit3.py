"""The BEiT-3 encoder on a tiny random model saved in unilm's checkpoint layout (CPU, offline)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dar_lib.models import beit3 as b3
from dar_lib.models import blip_import as bi
from dar_lib.models.beit3 import modeling as b3_modeling
from dar_lib.testing import (
    BEIT3_TINY_HEAD_SIZE,
    TEXTS,
    beit3_original_state,
    random_images,
    save_unilm,
    tiny_beit3_config,
    tiny_spm,
)

HEAD_SIZE = BEIT3_TINY_HEAD_SIZE  # the tiny model: 32 wide, 2 heads (released models: heads of 64)


@pytest.fixture(scope="module")
def spm_path(tmp_path_factory):
    """A tiny unigram sentencepiece model trained here (stands in for unilm's beit3.spm)."""
    return tiny_spm(tmp_path_factory.mktemp("spm") / "tiny.spm")


def unilm_keys(layers: int) -> set[str]:
    """The state dict keys of unilm's BEiT3ForRetrieval (torchscale 0.2.0, base config), written out by hand."""
    keys = {"beit3.text_embed.weight", "beit3.vision_embed.proj.weight", "beit3.vision_embed.proj.bias",
            "beit3.vision_embed.cls_token", "beit3.vision_embed.mask_token", "beit3.encoder.embed_positions.A.weight",
            "beit3.encoder.embed_positions.B.weight", "language_head.weight", "vision_head.weight", "logit_scale"}
    keys |= {f"beit3.encoder.layer_norm.{w}.{p}" for w in "AB" for p in ("weight", "bias")}
    for i in range(layers):
        pre = f"beit3.encoder.layers.{i}."
        for w in "AB":
            for p in ("weight", "bias"):
                keys |= {f"{pre}self_attn.{n}_proj.{w}.{p}" for n in ("q", "k", "v", "out")}
                keys |= {f"{pre}self_attn.inner_attn_ln.{w}.{p}", f"{pre}self_attn_layer_norm.{w}.{p}",
                         f"{pre}final_layer_norm.{w}.{p}", f"{pre}ffn.{w}.fc1.{p}", f"{pre}ffn.{w}.fc2.{p}",
                         f"{pre}ffn.{w}.ffn_layernorm.{p}"}
    return keys


@pytest.fixture
def saved(tmp_path, spm_path):
    cfg = tiny_beit3_config(spm_path)
    sd = beit3_original_state(cfg)
    ckpt = save_unilm(tmp_path / "beit3_tiny_patch16_32_retrieval.pth", sd, epoch=3,
                      optimizer={"param_groups": [{"lr": 2e-4, "params": [0]}]})
    return ckpt, sd, cfg


@pytest.fixture
def encoder(saved, spm_path):
    from dar_lib.models import load_encoder

    ckpt, _, _ = saved
    return load_encoder(f"beit3:{ckpt}+{spm_path}", device="cpu", head_size=HEAD_SIZE, batch_size=2)


# -- a reference forward pass written from the layout, with plain torch ops ---------------------------------
def reference_features(sd, cfg, *, pixels=None, ids=None, pad=None) -> torch.Tensor:
    """unilm's retrieval features computed straight from the state dict (torchscale's math, no modules)."""
    w = "A" if pixels is not None else "B"

    def ln(x, p):
        return F.layer_norm(x, (x.shape[-1],), sd[f"{p}.weight"], sd[f"{p}.bias"], eps=1e-5)

    def lin(x, p):
        return F.linear(x, sd[f"{p}.weight"], sd.get(f"{p}.bias"))

    if pixels is not None:
        x = F.conv2d(pixels, sd["beit3.vision_embed.proj.weight"], sd["beit3.vision_embed.proj.bias"],
                     stride=cfg.patch_size).flatten(2).transpose(1, 2)
        x = torch.cat([sd["beit3.vision_embed.cls_token"].expand(len(x), -1, -1), x], dim=1)
    else:
        x = sd["beit3.text_embed.weight"][ids]
    n, length, d = x.shape
    x = x + sd[f"beit3.encoder.embed_positions.{w}.weight"][2:length + 2]  # fairseq positions start at 2
    if pad is not None:
        x = x * (~pad.bool())[..., None]
    hd = d // cfg.heads
    for i in range(cfg.layers):
        p = f"beit3.encoder.layers.{i}."
        h = ln(x, f"{p}self_attn_layer_norm.{w}")
        q, k, v = (lin(h, f"{p}self_attn.{m}_proj.{w}").view(n, length, cfg.heads, hd).transpose(1, 2)
                   for m in "qkv")
        scores = (q * hd ** -0.5) @ k.transpose(-1, -2)
        if pad is not None:
            scores = scores.masked_fill(pad.bool()[:, None, None, :], float("-inf"))
        o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, d)
        x = x + lin(ln(o, f"{p}self_attn.inner_attn_ln.{w}"), f"{p}self_attn.out_proj.{w}")
        h = F.gelu(lin(ln(x, f"{p}final_layer_norm.{w}"), f"{p}ffn.{w}.fc1"))
        x = x + lin(ln(h, f"{p}ffn.{w}.ffn_layernorm"), f"{p}ffn.{w}.fc2")
    x = ln(x, f"beit3.encoder.layer_norm.{w}")
    head = sd["vision_head.weight" if pixels is not None else "language_head.weight"]
    return F.normalize(x[:, 0] @ head.T, dim=-1)


def reference_pixels(imgs, size: int) -> torch.Tensor:
    """unilm's eval transform: Resize((size, size), bicubic), ToTensor, Normalize(0.5, 0.5)."""
    arr = np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC), np.float32) / 255 for im in imgs])
    return (torch.from_numpy(arr).permute(0, 3, 1, 2) - 0.5) / 0.5


def unilm_segment(tok: b3.Beit3Tokenizer, text: str, max_len: int) -> tuple[list[int], list[int]]:
    """unilm's ``BaseDataset._get_text_segment``: <s> + pieces[:max_len - 2] + </s>, padded to max_len."""
    ids = tok.convert_tokens_to_ids(tok.tokenize(text))[:max_len - 2]
    ids = [0] + ids + [2]
    return ids + [1] * (max_len - len(ids)), [0] * len(ids) + [1] * (max_len - len(ids))


# -- tests ---------------------------------------------------------------------------------------------------
def test_layout_is_unilms(saved):
    _, sd, cfg = saved
    assert set(sd) == unilm_keys(cfg.layers)
    assert sd["beit3.encoder.embed_positions.A.weight"].shape == (3 + 4, 32)  # 2 fairseq rows + CLS + 2x2 patches
    assert b3_modeling.Beit3Config.from_state_dict(sd, head_size=HEAD_SIZE) == cfg


def test_factory_loads_the_saved_weights(encoder, saved):
    from dar_lib.models import ENCODER_BACKENDS, EXAMPLE_IDS

    _, sd, cfg = saved
    assert isinstance(encoder, b3.Beit3Encoder) and "beit3" in ENCODER_BACKENDS
    assert any(k.startswith("beit3:") for k in EXAMPLE_IDS["encoder"])
    params = encoder.model.state_dict()
    assert set(params) == set(sd) - {"logit_scale"}  # the training temperature is dropped by name
    for k, v in params.items():
        assert torch.equal(v, sd[k]), k
    assert encoder.model.config == cfg
    assert encoder.dim == 32 and encoder.max_length == b3.DEFAULT_MAX_LENGTH == 64


def test_shapes_norms_and_determinism(encoder):
    t, i = encoder.encode_text(TEXTS), encoder.encode_images(random_images())
    assert t.shape == (5, 32) and i.shape == (5, 32)
    assert t.dtype == torch.float32 and t.device.type == "cpu"
    torch.testing.assert_close(t.norm(dim=1), torch.ones(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(i.norm(dim=1), torch.ones(5), atol=1e-5, rtol=0)
    assert torch.cdist(t, t)[0, 1:].min() > 1e-3 and torch.cdist(i, i)[0, 1:].min() > 1e-3
    assert torch.equal(t, encoder.encode_text(TEXTS)) and torch.equal(i, encoder.encode_images(random_images()))
    single = torch.cat([encoder.encode_text([x]) for x in TEXTS])
    torch.testing.assert_close(t, single, atol=1e-6, rtol=0)
    assert encoder.encode_text([]).shape == (0, 32) and encoder.encode_images([]).shape == (0, 32)


def test_matches_a_reference_forward_pass(encoder, saved, spm_path):
    _, sd, cfg = saved
    imgs = random_images()
    ref_i = reference_features(sd, cfg, pixels=reference_pixels(imgs, 32))
    torch.testing.assert_close(encoder.encode_images(imgs), ref_i, atol=1e-5, rtol=0)
    # Text exactly as unilm feeds it: fixed-length padding with a padding mask.
    tok = b3.Beit3Tokenizer(spm_path)
    rows = [unilm_segment(tok, t, encoder.max_length) for t in TEXTS]
    ids = torch.tensor([r[0] for r in rows])
    pad = torch.tensor([r[1] for r in rows])
    ref_t = reference_features(sd, cfg, ids=ids, pad=pad)
    got = encoder.encode_text(TEXTS)
    torch.testing.assert_close(got, ref_t, atol=1e-5, rtol=0)
    # The module path the encoder uses, for a slice of raw (unnormalised) outputs.
    with torch.no_grad():
        raw = encoder.model.text_features(ids, padding_mask=pad.bool())
    torch.testing.assert_close(F.normalize(raw, dim=-1)[:, :4], ref_t[:, :4], atol=1e-5, rtol=0)


def test_padding_does_not_change_a_text(encoder):
    short, long = "a dog", "a big green photo of a man with a dog in the grass"
    alone = encoder.encode_text([short])
    padded = encoder.encode_text([short, long])[:1]  # padded to the long text's length in one batch
    torch.testing.assert_close(padded, alone, atol=1e-6, rtol=0)
    enc = encoder.tokenizer([short], return_tensors="pt")
    ids = torch.cat([enc["input_ids"], torch.ones(1, 9, dtype=torch.long)], dim=1)
    pad = torch.cat([enc["attention_mask"] == 0, torch.ones(1, 9, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        a = encoder.model.text_features(enc["input_ids"], padding_mask=enc["attention_mask"] == 0)
        b = encoder.model.text_features(ids, padding_mask=pad)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_tokenizer_is_unilms_xlmr_mapping(spm_path):
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(spm_path))
    tok = b3.Beit3Tokenizer(spm_path)
    pieces = sp.encode("a red cat, zebra!", out_type=str)
    expect = [sp.piece_to_id(p) + 1 if sp.piece_to_id(p) else 3 for p in pieces]  # fairseq offset 1; unk -> 3
    assert 3 in expect  # 'z' is not in the tiny vocabulary
    assert tok.encode("a red cat, zebra!") == [0] + expect + [2]
    assert tok.encode("a red cat, zebra!", max_length=5) == [0] + expect[:3] + [2]
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == len(sp) + 1 and tok.vocab_size == len(sp) + 2
    batch = tok(["a dog", "a red cat on the table"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0, -1] == 1 and batch["attention_mask"][0, -1] == 0
    assert batch["attention_mask"][1].all()
    assert tok(["a dog"])["input_ids"] == [tok.encode("a dog")]


def test_truncation_and_max_length_option(tmp_path, saved, spm_path):
    from dar_lib.models import load_encoder

    ckpt, _, _ = saved
    enc = load_encoder(f"beit3:{ckpt}+{spm_path}?max_length=6", device="cpu", head_size=HEAD_SIZE)
    assert enc.max_length == 6 and "max_length=6" in enc.fingerprint()
    long = "a big green photo of a man with a dog"
    cut = enc.encode_text([long])
    assert enc.truncated_texts == 1
    ids = enc.tokenizer.encode(long, max_length=6)
    assert len(ids) == 6 and ids[0] == 0 and ids[-1] == 2
    with torch.no_grad():
        ref = F.normalize(enc.model.text_features(torch.tensor([ids])), dim=-1)
    torch.testing.assert_close(cut, ref, atol=1e-6, rtol=0)
    # max_length is capped by the text position table (80 rows, positions start at 2).
    assert load_encoder(f"beit3:{ckpt}+{spm_path}", device="cpu", head_size=HEAD_SIZE, max_length=500).max_length == 78


def test_fingerprint_names_files_and_settings(encoder, saved, spm_path, tmp_path):
    from dar_lib.models import load_encoder

    fp = encoder.fingerprint()
    for part in ("beit3:", "beit3_tiny_patch16_32_retrieval.pth#", "tiny.spm#", "square32", "mean[0.5, 0.5, 0.5]",
                 "std[0.5, 0.5, 0.5]", "max_length=64", "float32"):
        assert part in fp, part
    # Other weights in a file of the same name: another fingerprint.
    ckpt, _, cfg = saved
    other = tmp_path / "other" / ckpt.name
    other.parent.mkdir()
    save_unilm(other, beit3_original_state(cfg, seed=1))
    enc2 = load_encoder(f"beit3:{other}+{spm_path}", device="cpu", head_size=HEAD_SIZE)
    assert enc2.fingerprint() != fp
    assert not torch.allclose(enc2.encode_text(["a dog"]), encoder.encode_text(["a dog"]))


def test_image_size_option_resizes_positions_like_unilm(saved, spm_path):
    from dar_lib.models import load_encoder

    ckpt, sd, _ = saved
    enc = load_encoder(f"beit3:{ckpt}+{spm_path}?image_size=48", device="cpu", head_size=HEAD_SIZE)
    assert enc.preprocess.size == 48 and "square48" in enc.fingerprint()
    table = enc.model.beit3.encoder.embed_positions.A.weight.detach()
    src = sd["beit3.encoder.embed_positions.A.weight"]
    assert table.shape == (3 + 9, 32) and torch.equal(table[:3], src[:3])
    grid = src[3:].reshape(1, 2, 2, 32).permute(0, 3, 1, 2)
    ref = F.interpolate(grid, size=(3, 3), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(9, 32)
    torch.testing.assert_close(table[3:], ref)
    assert enc.encode_images(random_images(2)).shape == (2, 32)


def test_image_inputs_share_the_corpus_conversion(encoder, tmp_path):
    from dar_lib.benchmarks.images import load_image

    rng = np.random.default_rng(0)
    alpha = np.where(np.eye(30) > 0, 0, 255).astype(np.uint8)  # a transparent diagonal
    rgba = np.dstack([rng.integers(0, 256, (30, 30, 3), dtype=np.uint8), alpha])
    f = tmp_path / "rgba.png"
    Image.fromarray(rgba).save(f)
    ref = encoder.encode_images([load_image(f)])
    with Image.open(f) as raw:
        torch.testing.assert_close(encoder.encode_images([raw]), ref, atol=0, rtol=0)
    torch.testing.assert_close(encoder.encode_images([f]), ref, atol=0, rtol=0)


def test_bad_ids_files_and_layouts(tmp_path, saved, spm_path):
    from dar_lib.models import load_encoder

    ckpt, sd, _ = saved
    with pytest.raises(ValueError, match=r"needs both files.*'beit3:<checkpoint \.pth>\+<sentencepiece \.spm>'"
                                         r".*github\.com/microsoft/unilm"):
        load_encoder(f"beit3:{ckpt}", device="cpu")
    with pytest.raises(FileNotFoundError, match=r"nope\.pth.*beit3\.spm"):
        load_encoder(f"beit3:{tmp_path / 'nope.pth'}+{spm_path}", device="cpu")
    with pytest.raises(FileNotFoundError, match=r"sentencepiece model not found: .*nope\.spm"):
        load_encoder(f"beit3:{ckpt}+{tmp_path / 'nope.spm'}", device="cpu")
    junk = tmp_path / "junk.spm"
    junk.write_bytes(b"not a model")
    with pytest.raises(b3.Beit3ImportError, match=r"junk\.spm: not a sentencepiece model"):
        load_encoder(f"beit3:{ckpt}+{junk}", device="cpu")
    with pytest.raises(ValueError, match=r"unknown option head_size; backend 'beit3' accepts: max_length, image_size"):
        load_encoder(f"beit3:{ckpt}+{spm_path}?head_size=16", device="cpu")

    bad = dict(sd)
    bad["beit3.encoder.layers.0.self_attn.rel_pos.weight"] = torch.zeros(2)
    del bad["vision_head.weight"]
    bad["language_head.weight"] = torch.zeros(16, 32)
    p = save_unilm(tmp_path / "bad.pth", bad)
    with pytest.raises(b3.Beit3ImportError) as err:
        b3.load_beit3(p, head_size=HEAD_SIZE)
    msg = str(err.value)
    assert "bad.pth" in msg and "unknown 1: beit3.encoder.layers.0.self_attn.rel_pos.weight" in msg
    assert "missing 1: vision_head.weight" in msg and "language_head.weight (16, 32) != (32, 32)" in msg
    p = save_unilm(tmp_path / "notbeit.pth", {"visual_encoder.cls_token": torch.zeros(1, 1, 8)})
    with pytest.raises(b3.Beit3ImportError, match=r"not a BEiT-3 checkpoint in unilm's layout"):
        b3.load_beit3(p)
    # The default head rule (64) on a 32-wide model: refused, not silently mis-split.
    with pytest.raises(b3.Beit3ImportError, match="embed_dim 32 is not a multiple of the head size 64"):
        load_encoder(f"beit3:{ckpt}+{spm_path}", device="cpu")
    # A sentencepiece model with more ids than the checkpoint's text embedding has rows.
    small = dict(sd)
    small["beit3.text_embed.weight"] = sd["beit3.text_embed.weight"][:5]
    p = save_unilm(tmp_path / "small_vocab.pth", small)
    with pytest.raises(b3.Beit3ImportError, match=r"do not fit the checkpoint's 5-row text embedding"):
        load_encoder(f"beit3:{p}+{spm_path}", device="cpu", head_size=HEAD_SIZE)


def test_training_checkpoint_with_args_namespace(tmp_path, saved, spm_path):
    """unilm's save_model pickles argparse.Namespace under 'args': refused, then converted once."""
    from dar_lib.models import load_encoder

    _, sd, _ = saved
    p = save_unilm(tmp_path / "checkpoint-14.pth", sd, args=argparse.Namespace(lr=2e-4, task="coco_retrieval"),
                   epoch=14)
    with pytest.raises(b3.Beit3ImportError, match=r"checkpoint-14\.pth.*GLOBAL argparse\.Namespace.*"
                                                  r"convert_to_safetensors\(.*trust_pickle=True"):
        b3.load_beit3(p, head_size=HEAD_SIZE)
    st = bi.convert_to_safetensors(p, tmp_path / "checkpoint-14.safetensors", trust_pickle=True)
    enc = load_encoder(f"beit3:{st}+{spm_path}", device="cpu", head_size=HEAD_SIZE)
    for k, v in enc.model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_importable_without_torchvision_timm_or_torchscale():
    code = ("import sys\n"
            "for name in ('torchvision', 'timm', 'torchscale', 'fairscale'):\n"
            "    sys.modules[name] = None  # any import of them now fails\n"
            "import dar_lib.models.beit3 as b3\n"
            "import dar_lib.models.beit3.modeling as b3_modeling\n"
            "from dar_lib.models import load_encoder\n"
            "m = b3.Beit3ForRetrieval(b3_modeling.Beit3Config(embed_dim=32, layers=1, heads=2, ffn_dim=64, img_size=32,"
            " vocab_size=50, max_source_positions=20))\n"
            "print(sum(p.numel() for p in m.parameters()))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
