"""Import original-layout BLIP checkpoints (Salesforce BLIP, ChatIR) into transformers' BLIP.

The original code (github salesforce/BLIP) saves ``{"model": state_dict}`` with a timm-style ViT
(``visual_encoder.*``, one fused ``qkv`` per block) and a BERT text encoder whose names already
match transformers'. Retrieval checkpoints add momentum copies, queues and a temperature; the
pre-training checkpoint (``model_base.pth``) adds the captioning decoder ``text_decoder.*`` as
well. Retrieval features never use those, and they are dropped BY NAME (:data:`DROPPED_EXACT`,
:data:`DROPPED_PREFIXES`). Every other key must map: the import loads strictly and refuses,
listing the keys, when anything is unknown, missing, extra or mis-shaped.

Files are read with ``torch.load(weights_only=True)`` (or as ``.safetensors``); a file that
pickles its own classes is refused with the class named, and :func:`convert_to_safetensors`
converts a trusted one once.

Head layout rule: every tower of the original BLIP (ViT-B/16, ViT-L/16, BERT-base) uses attention
heads of :data:`BLIP_HEAD_SIZE` = 64, so a tower ``hidden_size`` wide has ``hidden_size // 64``
heads. The checkpoint's tensor shapes do not record the head count, so a base config with another
count (transformers' ``BlipTextConfig`` defaults to 8) would load without error and compute wrong
features; :func:`check_head_layout` refuses it.

Examples:
    With the original files on disk (``tests/test_blip_import.py`` builds tiny ones):
    ``model, tok = load_original_blip("chatir_weights.ckpt", base="Salesforce/blip-itm-base-coco")``, and
    ``convert_to_safetensors("trusted.pth", "trusted.safetensors", trust_pickle=True)`` for a pickle you trust.
"""

from __future__ import annotations

import logging
import math
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from dar_lib.atomic import atomic_path

log = logging.getLogger(__name__)

#: Keys of BLIP's training state that retrieval features never use: the contrastive temperature
#: and queues of ``BLIP_Retrieval`` (``idx_queue``, ``ptr_queue``) and ``BLIP_Pretrain``
#: (``queue_ptr``).
DROPPED_EXACT = frozenset({"temp", "image_queue", "text_queue", "idx_queue", "ptr_queue", "queue_ptr"})
#: Momentum-encoder prefixes (``visual_encoder_m`` etc.) and ``BLIP_Pretrain``'s captioning
#: decoder (``text_decoder``, a ``BertLMHeadModel``).
DROPPED_PREFIXES = ("visual_encoder_m.", "text_encoder_m.", "vision_proj_m.", "text_proj_m.", "text_decoder.")
#: Attention head size of every original BLIP tower (ViT-B/16, ViT-L/16 and the BERT-base text
#: encoder all use 64); a tower ``hidden_size`` wide has ``hidden_size // BLIP_HEAD_SIZE`` heads.
BLIP_HEAD_SIZE = 64
#: Where a checkpoint file keeps its state dict (BLIP: ``model``; Lightning: ``state_dict``;
#: unilm's BEiT-3: ``model`` or ``module``). Other entries (optimizer, epoch, config) are ignored.
STATE_DICT_KEYS = ("model", "state_dict", "module")
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
_BLOCK_RE = re.compile(r"^visual_encoder\.blocks\.(\d+)\."
                       r"(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)$")
_LAYER_RE = re.compile(r"^vision_model\.encoder\.layers\.(\d+)\."
                       r"(layer_norm1|layer_norm2|self_attn\.qkv|self_attn\.projection|mlp\.fc1|mlp\.fc2)\.(weight|bias)$")


class BlipImportError(ValueError):
    """An original BLIP checkpoint that does not map completely onto the target model."""


def is_dropped(key: str) -> bool:
    """True for keys dropped by name: momentum encoders, queues, temperature, captioning decoder."""
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


def _unwrap_state_dict(obj: Any, path: Path, error: type[Exception]) -> dict[str, torch.Tensor]:
    """The tensor state dict inside a loaded checkpoint object (see :data:`STATE_DICT_KEYS`)."""
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise error(f"{path}: expected a state dict (optionally under one of {', '.join(STATE_DICT_KEYS)}), "
                    f"got {type(obj).__name__}")
    bad = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise error(f"{path}: expected a state dict of tensors (optionally under one of "
                    f"{', '.join(STATE_DICT_KEYS)}); these entries are not tensors: {', '.join(bad[:20])}"
                    + (f" and {len(bad) - 20} more" if len(bad) > 20 else ""))
    return dict(obj)


def _conversion_hint(path: Path) -> str:
    # In a model folder, transformers reads model.safetensors (diffusers keeps the stem).
    dst = path.with_name("model.safetensors") if path.name == "pytorch_model.bin" else path.with_suffix(".safetensors")
    return (f"Only if you trust this file, convert it once with "
            f"dar_lib.models.blip_import.convert_to_safetensors('{path}', '{dst}', trust_pickle=True) "
            f"and pass the .safetensors file instead")


def refused_pickle_message(path: str | Path, exc: BaseException) -> str:
    """One line for a torch file that ``torch.load(weights_only=True)`` refused: the file, the refused class, the
    opt-in.

    Used wherever the project (or transformers / diffusers for a model folder) reads a pickled
    ``.bin``/``.pt``/``.pth`` weights-only; torch's own message runs to a dozen lines and names no file.

    Args:
        path: the refused file.
        exc: torch's ``pickle.UnpicklingError``.
    """
    path = Path(path)
    # torch names the refused class in its message ("Unsupported global: GLOBAL mod.Class").
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    what_failed = (f"it pickles a Python object that is not a tensor or a plain container "
                   f"(Unsupported global: GLOBAL {found.group(1)})" if found
                   else f"the unpickler refused it ({(str(exc).strip().splitlines() or [''])[0][:300]})")
    return f"{path}: cannot be read as a weights-only torch checkpoint: {what_failed}. {_conversion_hint(path)}."


def read_state_dict(path: str | Path, *, what: str = "checkpoint",
                    error: type[Exception] = ValueError) -> dict[str, torch.Tensor]:
    """Read a state dict safely from a torch ``.pth``/``.ckpt`` or a ``.safetensors`` file.

    Torch files are loaded with ``weights_only=True``: tensors and plain containers (dicts, lists,
    numbers, strings) load, while pickled classes (a trainer's config object, ``argparse.Namespace``)
    are refused, because unpickling them can run arbitrary code. The state dict is taken from the
    first of :data:`STATE_DICT_KEYS` present; other entries (optimizer state, epoch, config) are
    ignored. A ``module.`` prefix (DataParallel) is removed from every key.

    Args:
        path: the checkpoint file; ``*.safetensors`` is read with safetensors, anything else
            with ``torch.load``.
        what: what the file should be, for messages (e.g. ``"BLIP checkpoint"``).
        error: exception class raised for a file that cannot be used.

    Returns:
        ``{key: tensor}`` on the CPU.

    Raises:
        FileNotFoundError: the file does not exist.
        error: the file is not readable as weights only (the message names the refused global
            and says how to convert a trusted file with :func:`convert_to_safetensors`), or holds
            no state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj = load_file(str(path), device="cpu")
        except Exception as exc:  # header or data corrupt, truncated file, not safetensors
            raise error(f"{path}: cannot be read as a safetensors file ({type(exc).__name__}: {exc})") from exc
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise error(refused_pickle_message(path, exc)) from exc
        except Exception as exc:  # truncated file, not a torch file
            raise error(f"{path}: cannot be read as a weights-only torch checkpoint "
                        f"({type(exc).__name__}: {exc})") from exc
    state = _unwrap_state_dict(obj, path, error)
    # DataParallel checkpoints prefix every key with 'module.'.
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an original BLIP checkpoint (``.pth``/``.ckpt`` weights-only, or ``.safetensors``).

    Args:
        path: the file; its state dict may sit under ``model`` (BLIP) or ``state_dict``, beside
            optimizer state, epoch and config entries, which are ignored.

    Returns:
        The original-layout state dict, ``module.`` prefixes removed.

    Raises:
        FileNotFoundError: no such file.
        BlipImportError: naming the file and, for a pickled class, the class and the conversion
            (:func:`convert_to_safetensors`).
    """
    return read_state_dict(path, what="BLIP checkpoint", error=BlipImportError)


def convert_to_safetensors(src: str | Path, dst: str | Path, *, trust_pickle: bool = False) -> Path:
    """Convert a TRUSTED pickled checkpoint once into a ``.safetensors`` file of its state dict.

    This is the explicit way to use a checkpoint that weights-only loading refuses because it
    pickles its own classes (a config object, ``argparse.Namespace``): the file is unpickled with
    ``weights_only=False``, which can run arbitrary code, so it is done only when the caller says
    the file is trusted. The state dict under ``model``/``state_dict``/``module`` (or the whole
    object, when it is one) is written as contiguous, untied tensors (safetensors stores no shared
    storage); everything else (optimizer, epoch, config) is left out.

    Args:
        src: the pickled checkpoint (``.pth``/``.ckpt``).
        dst: the ``.safetensors`` file to write (written atomically: a failure leaves no file).
        trust_pickle: must be ``True``; a guard against unpickling files by accident.

    Returns:
        ``dst`` as a ``Path``.

    Raises:
        ValueError: ``trust_pickle`` is not ``True``, or the file holds no state dict of tensors
            (the message names the file).
        FileNotFoundError: ``src`` does not exist.
    """
    src, dst = Path(src), Path(dst)
    if trust_pickle is not True:
        raise ValueError(f"{src}: convert_to_safetensors unpickles the file with weights_only=False, which can "
                         f"run arbitrary code; call it with trust_pickle=True only for a file you trust")
    if dst.suffix != ".safetensors":
        raise ValueError(f"{dst}: the converted file must end in .safetensors (that is how readers pick the format)")
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint not found: {src}")
    from safetensors.torch import save_file

    obj = torch.load(src, map_location="cpu", weights_only=False)
    state = _unwrap_state_dict(obj, src, ValueError)
    # clone(): tied weights share storage, which safetensors refuses; contiguous(): views/expands.
    tensors = {str(k): v.detach().cpu().contiguous().clone() for k, v in state.items()}

    with atomic_path(dst) as tmp:
        save_file(tensors, str(tmp), metadata={"source": src.name,
                                               "converted_by": "dar_lib.models.blip_import.convert_to_safetensors"})
    log.info("converted %s (%d tensors) to %s", src, len(tensors), dst)
    return dst


def check_head_layout(config, source: str = "base config", head_size: int = BLIP_HEAD_SIZE) -> None:
    """Refuse a BLIP config whose head count differs from the original layout's.

    The rule (see the module docstring): for the text and the vision tower,
    ``num_attention_heads == hidden_size // head_size`` with ``hidden_size % head_size == 0``.

    Args:
        config: a transformers ``BlipConfig``.
        source: names the config and the checkpoint in the message.
        head_size: the original attention head size (:data:`BLIP_HEAD_SIZE`; other values only
            for test models built with another head size).

    Raises:
        BlipImportError: naming each offending ``*_config.num_attention_heads`` and
            ``hidden_size``, and the head count the original layout implies.
    """
    problems = []
    for name in ("text_config", "vision_config"):
        sub = getattr(config, name)
        hidden, heads = int(sub.hidden_size), int(sub.num_attention_heads)
        if hidden % head_size or heads != hidden // head_size:
            n = hidden // head_size
            need = (f"so it needs {n} head{'s' if n != 1 else ''}" if hidden % head_size == 0
                    else f"and {hidden} is not a multiple of {head_size}")
            problems.append(f"{name}.num_attention_heads={heads} with {name}.hidden_size={hidden} (head size "
                            f"{hidden / heads:g}); the original BLIP layout has heads of {head_size}, {need}")
    if problems:
        raise BlipImportError(f"{source}: " + "; ".join(problems) + ". The tensor shapes would load, but the "
                              "features would be wrong; fix num_attention_heads in the base config "
                              "(transformers' BlipTextConfig defaults to 8 heads).")


def load_into(model, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load an original-layout state dict into a ``BlipForImageTextRetrieval``, strictly.

    The position embedding is resized to the model's image size.

    Raises:
        BlipImportError: listing unmapped, missing, unexpected and mis-shaped keys.
    """
    target = model.state_dict()
    num_patches = target["vision_model.embeddings.position_embedding"].shape[1] - 1
    converted = convert_state_dict(state, num_patches=num_patches, source=source)
    problems = describe_mismatch(converted, target, extra="unexpected")
    if problems:
        raise BlipImportError(f"{source} does not match the target BLIP model; " + problems)
    model.load_state_dict(converted, strict=True)


def describe_mismatch(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                      extra: str = "unknown") -> str:
    """Every way ``state`` fails to fit ``target`` key for key: keys it lacks, keys it has in addition
    (called ``extra``) and mis-shaped tensors, each with the list of keys; ``""`` when it fits exactly.

    Shared by the original-layout importers (BLIP here, BEiT-3 in :mod:`dar_lib.models.beit3`), so a
    refused checkpoint always says the same things in the same words.
    """
    missing = sorted(set(target) - set(state))
    additional = sorted(set(state) - set(target))
    shapes = sorted(f"{k} {tuple(state[k].shape)} != {tuple(target[k].shape)}"
                    for k in set(state) & set(target) if state[k].shape != target[k].shape)
    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: " + ", ".join(missing))
    if additional:
        parts.append(f"{extra} {len(additional)}: " + ", ".join(additional))
    if shapes:
        parts.append(f"shape mismatch {len(shapes)}: " + ", ".join(shapes))
    return "; ".join(parts)


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
                       image_size: int | None = None, revision: str | None = None,
                       head_size: int = BLIP_HEAD_SIZE):
    """Build a ``BlipForImageTextRetrieval`` holding the weights of an original BLIP checkpoint.

    Args:
        path: ``.pth``/``.ckpt`` in the original layout (ChatIR's ``chatir_weights.ckpt``, BLIP's
            ``model_base_retrieval_coco.pth`` or pre-training ``model_base.pth``), or a
            ``.safetensors`` conversion of one (:func:`convert_to_safetensors`).
        base: transformers BLIP id or folder giving the config and the tokenizer (its weights are
            not used); ``None`` uses :func:`base_config` and needs no tokenizer download (then the
            tokenizer returned is ``None``).
        image_size: target image size in pixels; default: the checkpoint's own (224 for ChatIR and
            ``model_base.pth``, 384 for BLIP's retrieval checkpoints); another size resizes
            ``pos_embed`` bicubically.
        revision: revision of ``base``.
        head_size: attention head size of the original towers (:data:`BLIP_HEAD_SIZE`); the base
            config must have ``hidden_size // head_size`` heads in each tower.

    Returns:
        ``(model, tokenizer)``.

    Raises:
        FileNotFoundError: no checkpoint file.
        BlipImportError: the file is not weights-only readable, a key is unknown, missing, extra or
            mis-shaped, or the base config's head layout differs from the original's
            (:func:`check_head_layout`).
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
    # Before building the model: a wrong head count loads silently and gives wrong features.
    check_head_layout(config, f"{path} with base config {base if base is not None else 'base_config()'}",
                      head_size=head_size)
    if base is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(base), revision=revision)
    model = BlipForImageTextRetrieval(config)
    load_into(model, state, source=str(path))
    model.eval()
    return model, tokenizer
