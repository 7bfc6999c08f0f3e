"""The toy encoders' shared image tower, trained first with supervised scene-fact heads, then locked.

The v2 recipe trained a ViT image tower contrastively with ``clip-full``'s text tower; a linear probe
on its frozen embeddings read the salient object's shape at 39% and its position at 18%, so no text
tower could retrieve those facts, and a ViT trained with fact heads still read shape at 32-40%
(4-px patches fragment 6-10 px shapes). v3 trains a small CNN
(:class:`~dar_lib.toymodels.cnn_tower.ToyCnnVisionModelWithProjection`, :func:`new_image_tower`) with
linear heads on its unit-norm projected embedding, one softmax head per fact the world states: the
background, the object count,
the salient object's colour, shape, size and cell, and for each of the nine cells the colour, shape
and size of the object there (or none). Linear heads on the embedding itself make every fact
linearly readable from it, which is what a contrastive text tower needs. The heads are discarded;
the text towers are then trained against the tower's cached embeddings of the training images
(:func:`dar_lib.toymodels.clip_train.train_clip` with ``train_vision=False``).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dar_lib.benchmarks import toyworld as tw
from dar_lib.toymodels.clip_train import images_to_pixels
from dar_lib.toymodels.cnn_tower import MODEL_TYPE, ToyCnnVisionConfig, ToyCnnVisionModelWithProjection
from dar_lib.toymodels.loop import Resumable, report_loss
from dar_lib.toymodels.loop import step as optim_step
from dar_lib.weightfiles import check_model_files

log = logging.getLogger(__name__)


def head_sizes() -> dict[str, int]:
    """Every supervised head: name -> number of classes (per-cell heads have a "none" class)."""

    sizes = {attr: len(values) for attr, values in tw.ATTRIBUTES.items()}
    for cell in range(len(tw.POSITIONS)):
        sizes[f"cell{cell}/color"] = len(tw.COLORS) + 1
        sizes[f"cell{cell}/shape"] = len(tw.SHAPES) + 1
        sizes[f"cell{cell}/size"] = len(tw.SIZES) + 1
    return sizes


def scene_labels(scenes: Sequence) -> dict[str, np.ndarray]:
    """Integer labels of every head (:func:`head_sizes`) for each scene; a cell with no object is class 0.

    Returns:
        head name -> ``(n,)`` int64 array.
    """

    out = {attr: np.array([values.index(tw.attributes(s)[attr]) for s in scenes], dtype=np.int64)
           for attr, values in tw.ATTRIBUTES.items()}
    for cell, position in enumerate(tw.POSITIONS):
        for attr, names in (("color", tw.COLORS), ("shape", tw.SHAPES), ("size", tw.SIZES)):
            col = np.zeros(len(scenes), dtype=np.int64)
            for i, s in enumerate(scenes):
                for o in s.objects:
                    if o.position == position:
                        col[i] = 1 + names.index(getattr(o, attr))
            out[f"cell{cell}/{attr}"] = col
    return out


class FactHeads(torch.nn.Module):
    """One linear softmax head per scene fact, on the image tower's unit-norm embedding.

    Args:
        dim: embedding dimension.
        sizes: head name -> classes (default :func:`head_sizes`).
    """

    def __init__(self, dim: int, sizes: dict[str, int] | None = None):
        super().__init__()
        self.names = list(sizes or head_sizes())
        sizes = sizes or head_sizes()
        self.heads = torch.nn.ModuleList(torch.nn.Linear(dim, sizes[n]) for n in self.names)
        # a unit-norm embedding has small coordinates; a learned temperature lets the logits grow
        self.log_scale = torch.nn.Parameter(torch.tensor(float(np.log(10.0))))

    def forward(self, emb: torch.Tensor) -> dict[str, torch.Tensor]:
        """``emb (n, dim)`` -> head name -> logits ``(n, classes)``."""
        x = emb * self.log_scale.exp()
        return {n: h(x) for n, h in zip(self.names, self.heads)}

    def loss(self, emb: torch.Tensor, labels: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy averaged per kind of fact: each scene-level head (background, count, the salient
        object's colour, shape, size and cell) weighs as much as all per-cell heads (``cell*/...``) together.

        A plain mean over the 33 heads gives the 27 per-cell heads 27/33 of the loss, and the embedding's
        geometry follows: on the toy-visdial corpus an image's 10 nearest neighbours shared its
        background 67% of the time (colour 87, shape 89); weighed per kind, 82% (colour 95, shape 95),
        with the linear probe at 97.6-100% either way. DAR compares generated and corpus images by
        that geometry.
        """
        logits = self(emb)
        ce = {n: F.cross_entropy(logits[n], labels[n]) for n in self.names}
        cells = [v for n, v in ce.items() if n.startswith("cell")]
        kinds = [v for n, v in ce.items() if not n.startswith("cell")] + ([torch.stack(cells).mean()] if cells else [])
        return torch.stack(kinds).mean()


def new_image_tower(seed: int, widths=(32, 64, 64, 128, 128), strides=(1, 2, 1, 2, 1), projection_dim: int = 128,
                    image_size: int = 32):
    """A freshly initialised convolutional image tower with its projection (the v3 recipe; seeded).

    Args: as :class:`~dar_lib.toymodels.cnn_tower.ToyCnnVisionConfig`.
    """

    torch.manual_seed(seed)
    return ToyCnnVisionModelWithProjection(ToyCnnVisionConfig(image_size=image_size, widths=widths, strides=strides,
                                                              projection_dim=projection_dim))


def new_vit_tower(seed: int, width: int = 128, layers: int = 4, patch_size: int = 4, image_size: int = 32):
    """A freshly initialised ``CLIPVisionModelWithProjection`` sized for the toy world (seeded): the v2
    architecture, kept as a candidate for ``measure/toy_image_towers.py``."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(image_size=image_size, patch_size=patch_size, hidden_size=width,
                           intermediate_size=4 * width, num_hidden_layers=layers,
                           num_attention_heads=max(1, width // 32), projection_dim=width)
    return CLIPVisionModelWithProjection(cfg)


def embed(tower, pixels: torch.Tensor) -> torch.Tensor:
    """Unit-norm projected embeddings of normalised pixels (the same vectors a dual encoder with this tower gives)."""
    return F.normalize(tower(pixel_values=pixels).image_embeds, dim=-1)


@torch.no_grad()
def embed_array(tower, images: np.ndarray, batch_size: int = 512) -> torch.Tensor:
    """Embed a uint8 ``(n, H, W, 3)`` array in batches, without gradients."""

    tower.eval()
    return torch.cat([embed(tower, images_to_pixels(images[i:i + batch_size]))
                      for i in range(0, len(images), batch_size)])


def train_image_tower(
    tower,
    images: np.ndarray,
    labels: dict[str, np.ndarray],
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    log_every: int = 50,
    progress: bool = True,
    checkpoint=None,
    resume: bool = False,
    stop_at: int | None = None,
    max_seconds: float | None = None,
    heads: FactHeads | None = None,
) -> list[float]:
    """Train the image tower (in place) with the supervised fact heads; the heads are not kept.

    Args:
        tower: :func:`new_image_tower` (or a ``CLIPVisionModelWithProjection``, :func:`new_vit_tower`);
            batch norm uses batch statistics while it trains and is left in eval mode.
        images: uint8 ``(n, 32, 32, 3)`` training images.
        labels: :func:`scene_labels` of their scenes.
        steps: optimiser steps (torch's ``OneCycleLR`` with its defaults: warm-up over the first 30%
            from ``lr / 25``, then cosine decay; the recipe of issue 29).
        batch_size: images per step.
        lr: peak learning rate (AdamW).
        seed: seeds batch sampling.
        log_every, progress: logging period, tqdm bar.
        checkpoint, resume, stop_at: as in :func:`dar_lib.toymodels.clip_train.train_clip`.
        max_seconds: stop early after this many seconds (comparisons on one wall-clock budget).
        heads: the heads to train (default: fresh :class:`FactHeads`).

    Returns:
        The loss of every step.
    """
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = random.Random(seed)
    gen = np.random.default_rng(seed)
    heads = heads or FactHeads(tower.config.projection_dim)
    params = list(tower.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(2, steps))
    run = Resumable(checkpoint, rng, gen, model=tower, heads=heads, optimizer=opt, schedule=sched)
    start = run.restore(resume, "image tower")
    losses = run.losses
    tower.train()
    t0 = time.time()
    n = len(images)
    bar = tqdm(range(start, steps), desc="image tower", disable=not progress, mininterval=5)
    try:
        for step in bar:
            idx = gen.choice(n, size=min(batch_size, n), replace=False)
            emb = embed(tower, images_to_pixels(images[idx]))
            loss = heads.loss(emb, {k: torch.from_numpy(v[idx]) for k, v in labels.items()})
            losses.append(optim_step(opt, sched, params, loss))
            report_loss(bar, losses, step, steps, log_every, "image tower", t0, log)
            run.after_step(step, steps, stop_at, "image tower")
            if max_seconds is not None and time.time() - t0 >= max_seconds:
                break
    finally:
        tower.eval()  # batch norm's running statistics from here on, also after a stop
    return losses


def save_image_tower(tower, folder, extra: dict | None = None, dtype: torch.dtype = torch.float16) -> None:
    """Save the tower (safetensors, half precision by default) and its ``training.json`` into ``folder``."""
    import copy
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(tower).to(dtype).save_pretrained(str(folder), safe_serialization=True)
    if extra:
        (folder / "training.json").write_text(json.dumps(extra, indent=1, sort_keys=True) + "\n")


def load_image_tower(folder):
    """A saved tower (:func:`save_image_tower`) in float32 and eval mode: the CNN tower, or a ViT candidate."""
    import json
    from pathlib import Path

    from transformers import CLIPVisionModelWithProjection

    check_model_files(folder, f"toy image tower {str(folder)!r}")
    kind = json.loads((Path(folder) / "config.json").read_text()).get("model_type")
    cls = ToyCnnVisionModelWithProjection if kind == MODEL_TYPE else CLIPVisionModelWithProjection
    return cls.from_pretrained(str(folder), dtype=torch.float32).eval()
