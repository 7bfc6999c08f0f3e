"""Loading unilm's original BEiT-3 retrieval checkpoints strictly (unknown, missing and mis-shaped keys all
listed), resizing the vision positions to another image size as unilm does."""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from dar_lib.models.beit3.modeling import (
    BEIT3_HEAD_SIZE,
    POSITION_OFFSET,
    WHERE_TO_GET,
    Beit3Config,
    Beit3ForRetrieval,
    Beit3ImportError,
)
from dar_lib.models.blip_import import describe_mismatch, read_state_dict

log = logging.getLogger(__name__)

#: Checkpoint keys dropped by name: the contrastive temperature of training.
IGNORED_KEYS = frozenset({"logit_scale"})


def resize_vision_positions(table: torch.Tensor, num_patches: int) -> torch.Tensor:
    """Bicubically resize the vision position table (3 + n, C) to ``num_patches`` patches.

    Same procedure as unilm's ``load_model_and_may_interpolate``: the two fairseq rows and the
    class token's row are kept, the patch grid is resized as a (C, side, side) image.

    Raises:
        Beit3ImportError: a grid that is not square.
    """
    extra = 1 + POSITION_OFFSET
    old = table.shape[0] - extra
    if old == num_patches:
        return table
    old_side, new_side = math.isqrt(old), math.isqrt(num_patches)
    if old_side * old_side != old or new_side * new_side != num_patches:
        raise Beit3ImportError(f"vision positions of {old} patches cannot be resized to {num_patches}")
    grid = table[extra:].reshape(1, old_side, old_side, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(new_side, new_side), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(new_side * new_side, -1).to(table.dtype)
    log.info("resized BEiT-3 vision positions from %dx%d to %dx%d patches", old_side, old_side, new_side, new_side)
    return torch.cat([table[:extra], grid], dim=0)


def load_beit3(path: str | Path, *, image_size: int | None = None,
               head_size: int = BEIT3_HEAD_SIZE) -> Beit3ForRetrieval:
    """Build a :class:`Beit3ForRetrieval` holding an original unilm checkpoint's weights, strictly.

    Args:
        path: ``.pth`` as unilm saves it (state dict under ``model`` or ``module``, keys
            ``beit3.*``, ``language_head.weight``, ``vision_head.weight``, ``logit_scale``), read
            weights-only; or a ``.safetensors`` conversion
            (:func:`dar_lib.models.blip_import.convert_to_safetensors`).
        image_size: image side in pixels; default: the checkpoint's own (384 for the released
            retrieval models); another size resizes the vision positions bicubically.
        head_size: attention head size (:data:`BEIT3_HEAD_SIZE`); heads = ``embed_dim // head_size``.

    Returns:
        The model in eval mode, on the CPU, in float32 (``load_state_dict`` copies a half-precision
        checkpoint's tensors into the float32 parameters).

    Raises:
        FileNotFoundError: no such file (the message says where to get it).
        Beit3ImportError: an unreadable file, or keys that are unknown, missing or mis-shaped
            (all listed, with the file named).
    """

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BEiT-3 checkpoint not found: {path}; {WHERE_TO_GET}")
    state = read_state_dict(path, what="BEiT-3 checkpoint", error=Beit3ImportError)
    state = {k: v for k, v in state.items() if k not in IGNORED_KEYS}
    cfg = Beit3Config.from_state_dict(state, head_size=head_size, source=str(path))
    if image_size is not None and int(image_size) != cfg.img_size:
        if int(image_size) % cfg.patch_size:
            raise Beit3ImportError(f"{path}: image_size {image_size} is not a multiple of the patch size "
                                   f"{cfg.patch_size}")
        cfg = dataclasses.replace(cfg, img_size=int(image_size))
        key = "beit3.encoder.embed_positions.A.weight"
        state[key] = resize_vision_positions(state[key], cfg.num_patches)

    model = Beit3ForRetrieval(cfg)
    problems = describe_mismatch(state, model.state_dict())
    if problems:
        raise Beit3ImportError(f"{path} does not match BEiT3ForRetrieval ({cfg.layers} layers, {cfg.embed_dim} wide); "
                               + problems)
    model.load_state_dict(state, strict=True)
    return model.eval()
