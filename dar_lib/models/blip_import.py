"""Import original-layout BLIP checkpoints (Salesforce BLIP, ChatIR) into transformers' BLIP.

The original code (github salesforce/BLIP) saves ``{"model": state_dict}`` with a timm-style ViT
(``visual_encoder.*``, one fused ``qkv`` per block) and a BERT text encoder whose names already
match transformers'. Retrieval checkpoints add momentum copies, queues and a temperature, which
the ITM features never use and which are dropped by name. Every other key must map: the import
loads strictly and refuses, listing the keys, when anything is missing, extra or mis-shaped.

Examples:
    >>> model, tokenizer = load_original_blip("chatir_weights.ckpt", base="Salesforce/blip-itm-base-coco")
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

#: Keys of BLIP's retrieval training state that retrieval features never use.
DROPPED_EXACT = frozenset({"temp", "image_queue", "text_queue", "idx_queue", "ptr_queue"})
#: Momentum-encoder prefixes of ``BLIP_Retrieval`` (``visual_encoder_m`` etc.).
DROPPED_PREFIXES = ("visual_encoder_m.", "text_encoder_m.", "vision_proj_m.", "text_proj_m.")
#: A buffer that transformers rebuilds itself (non-persistent); checked, then dropped.
POSITION_IDS = "text_encoder.embeddings.position_ids"

_VIT_TOP = {
    "visual_encoder.cls_token": "vision_model.embeddings.class_embedding",
    "visual_encoder.pos_embed": "vision_model.embeddings.position_embedding",
    "visual_encoder.patch_embed.proj.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual_encoder.patch_embed.proj.bias": "vision_model.embeddings.patch_embedding.bias",
    "visual_encoder.norm.weight": "vision_model.post_layernorm.weight",
    "visual_encoder.norm.bias": "vision_model.post_layernorm.bias",
}
# Inside a ViT block: timm name -> transformers name (the fused qkv has the same row layout,
# [3 x heads x head_dim], in both, so it is copied as is).
_VIT_BLOCK = {
    "norm1": "layer_norm1",
    "norm2": "layer_norm2",
    "attn.qkv": "self_attn.qkv",
    "attn.proj": "self_attn.projection",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_SAME_PREFIXES = ("text_encoder.", "text_proj.", "vision_proj.", "itm_head.")
_BLOCK_RE = re.compile(r"^visual_encoder\.blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)$")
_LAYER_RE = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\.(layer_norm1|layer_norm2|self_attn\.qkv|self_attn\.projection|mlp\.fc1|mlp\.fc2)\.(weight|bias)$")


class BlipImportError(ValueError):
    """An original BLIP checkpoint that does not map completely onto the target model."""


def is_dropped(key: str) -> bool:
    """True for keys of the retrieval training state (momentum encoders, queues, temperature)."""
    return key in DROPPED_EXACT or key.startswith(DROPPED_PREFIXES)


def original_to_hf_key(key: str) -> str | None:
    """The transformers name of an original BLIP key; ``None`` for keys dropped on purpose.

    Raises:
        KeyError: for a key with no known mapping.
    """
    if is_dropped(key) or key == POSITION_IDS:
        return None
    if key in _VIT_TOP:
        return _VIT_TOP[key]
    m = _BLOCK_RE.match(key)
    if m:
        return f"vision_model.encoder.layers.{m.group(1)}.{_VIT_BLOCK[m.group(2)]}.{m.group(3)}"
    if key.startswith(_SAME_PREFIXES):
        return key
    raise KeyError(key)


def hf_to_original_key(key: str) -> str:
    """Inverse of :func:`original_to_hf_key` (used to export test checkpoints)."""
    inv_top = {v: k for k, v in _VIT_TOP.items()}
    if key in inv_top:
        return inv_top[key]
    m = _LAYER_RE.match(key)
    if m:
        inv_block = {v: k for k, v in _VIT_BLOCK.items()}
        return f"visual_encoder.blocks.{m.group(1)}.{inv_block[m.group(2)]}.{m.group(3)}"
    if key.startswith(_SAME_PREFIXES):
        return key
    raise KeyError(key)


def resize_pos_embed(pos_embed: torch.Tensor, num_patches: int) -> torch.Tensor:
    """Bicubically resize a ViT position embedding (1, 1 + n, C) to ``num_patches`` patches.

    Same procedure as BLIP's ``interpolate_pos_embed``: the class token keeps its embedding, the
    patch grid is resized as a (C, side, side) image with ``align_corners=False``.
    """
    extra = 1
    old = pos_embed.shape[1] - extra
    if old == num_patches:
        return pos_embed
    old_side, new_side = int(math.isqrt(old)), int(math.isqrt(num_patches))
    if old_side * old_side != old or new_side * new_side != num_patches:
        raise BlipImportError(f"position embedding of {old} patches cannot be resized to {num_patches}")
    cls_tok, grid = pos_embed[:, :extra], pos_embed[:, extra:]
    dim = grid.shape[-1]
    grid = grid.reshape(1, old_side, old_side, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_side * new_side, dim).to(pos_embed.dtype)
    log.info("resized BLIP pos_embed from %dx%d to %dx%d patches", old_side, old_side, new_side, new_side)
    return torch.cat([cls_tok, grid], dim=1)


def convert_state_dict(state: Mapping[str, torch.Tensor], num_patches: int | None = None,
                       source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map an original-layout BLIP state dict to transformers names.

    Args:
        state: the original state dict (already unwrapped from its ``model`` key).
        num_patches: target number of image patches; the position embedding is resized to it
            when it differs (``None`` keeps the checkpoint's own size).
        source: name of the file, for error messages.

    Returns:
        The transformers-layout state dict (dropped keys removed).

    Raises:
        BlipImportError: listing every key with no known mapping.
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        try:
            new = original_to_hf_key(key)
        except KeyError:
            unknown.append(key)
            continue
        if new is None:
            if key == POSITION_IDS:
                expected = torch.arange(value.shape[-1]).expand_as(value)
                if not torch.equal(value.long(), expected):
                    raise BlipImportError(f"{source}: {POSITION_IDS} is not 0..{value.shape[-1] - 1}")
            continue
        if new == "vision_model.embeddings.position_embedding" and num_patches is not None:
            value = resize_pos_embed(value, num_patches)
        out[new] = value
    if unknown:
        raise BlipImportError(f"{source}: {len(unknown)} keys have no mapping to transformers BLIP: "
                              + ", ".join(sorted(unknown)))
    return out


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an original BLIP ``.pth``/``.ckpt`` safely (``weights_only=True``) and unwrap ``model``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BLIP checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle with code objects, truncated file, not a torch file
        raise BlipImportError(f"{path}: cannot be read as a weights-only torch checkpoint ({exc})") from exc
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    elif isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise BlipImportError(f"{path}: expected a state dict (optionally under 'model'), got {type(obj).__name__}")
    # DataParallel checkpoints prefix every key with 'module.'.
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_into(model, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load an original-layout state dict into a ``BlipForImageTextRetrieval``, strictly.

    The position embedding is resized to the model's image size.

    Raises:
        BlipImportError: listing unmapped, missing, unexpected and mis-shaped keys.
    """
    target = model.state_dict()
    num_patches = target["vision_model.embeddings.position_embedding"].shape[1] - 1
    converted = convert_state_dict(state, num_patches=num_patches, source=source)
    missing = sorted(set(target) - set(converted))
    unexpected = sorted(set(converted) - set(target))
    shapes = sorted(f"{k} {tuple(converted[k].shape)} != {tuple(target[k].shape)}"
                    for k in set(converted) & set(target) if converted[k].shape != target[k].shape)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: " + ", ".join(missing))
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: " + ", ".join(unexpected))
        if shapes:
            parts.append(f"shape mismatch {len(shapes)}: " + ", ".join(shapes))
        raise BlipImportError(f"{source} does not match the target BLIP model; " + "; ".join(parts))
    model.load_state_dict(converted, strict=True)


def base_config(image_size: int = 224):
    """BLIP-base ITM config as the original code builds it (ViT-B/16, BERT-base, 256-d projections)."""
    from transformers import BlipConfig

    return BlipConfig(
        text_config=dict(vocab_size=30524, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, max_position_embeddings=512, layer_norm_eps=1e-12,
                         hidden_act="gelu"),
        vision_config=dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                           image_size=image_size, patch_size=16, layer_norm_eps=1e-6, hidden_act="gelu"),
        image_text_hidden_size=256,
    )


def load_original_blip(path: str | Path, base: str | None = "Salesforce/blip-itm-base-coco", *,
                       image_size: int | None = None, revision: str | None = None):
    """Build a ``BlipForImageTextRetrieval`` holding the weights of an original BLIP checkpoint.

    Args:
        path: ``.pth``/``.ckpt`` in the original layout (ChatIR's ``chatir_weights.ckpt``, BLIP's
            ``model_base_retrieval_coco.pth``).
        base: transformers BLIP id or folder giving the config and the tokenizer (its weights are
            not used); ``None`` uses :func:`base_config` and needs no tokenizer download (then the
            tokenizer returned is ``None``).
        image_size: target image size; default: the checkpoint's own (224 for ChatIR, 384 for
            BLIP's retrieval checkpoints); another size resizes ``pos_embed`` bicubically.
        revision: revision of ``base``.

    Returns:
        ``(model, tokenizer)``.
    """
    from transformers import AutoTokenizer, BlipConfig, BlipForImageTextRetrieval

    state = read_checkpoint(path)
    if image_size is None:
        pe = state.get("visual_encoder.pos_embed")
        if pe is None:
            raise BlipImportError(f"{path}: no visual_encoder.pos_embed; not an original BLIP checkpoint?")
        patch = state["visual_encoder.patch_embed.proj.weight"].shape[-1]
        image_size = int(math.isqrt(pe.shape[1] - 1)) * patch
    tokenizer = None
    if base is None:
        config = base_config(image_size)
    else:
        config = BlipConfig.from_pretrained(str(base), revision=revision)
        config.vision_config.image_size = image_size
        # The original ViT uses LayerNorm eps 1e-6 (timm); keep the imported weights' numerics.
        config.vision_config.layer_norm_eps = 1e-6
        tokenizer = AutoTokenizer.from_pretrained(str(base), revision=revision)
    model = BlipForImageTextRetrieval(config)
    load_into(model, state, source=str(path))
    model.eval()
    return model, tokenizer
