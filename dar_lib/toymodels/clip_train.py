"""Contrastive training of the toy dual encoders' text towers against a locked image tower.

The model is a transformers dual encoder with CLIP's attribute names (``text_model``,
``text_projection``, ``vision_model``, ``visual_projection``, ``logit_scale``): the v3
``VisionTextDualEncoderModel`` of :mod:`dar_lib.toymodels.cnn_tower`, or a ``CLIPModel``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from dar_lib.toymodels.loop import Resumable, RunningMax, report_loss, warmup_cosine
from dar_lib.toymodels.loop import step as optim_step
from dar_lib.toymodels.tokenizer import BOS_ID, EOS_ID, PAD_ID

log = logging.getLogger(__name__)

#: OpenAI CLIP's normalisation, saved with each model in ``preprocessor_config.json``.
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SIZE = 32

#: A text for training scene ``idx``, drawn with ``rng`` (e.g. a caption, alt-text or dialogue).
TextFn = Callable[[int, random.Random], str]


def clip_config(vocab_size: int, max_length: int = 192, width: int = 128, layers: int = 4,
                image_size: int = IMAGE_SIZE):
    """A small ``CLIPConfig``: ViT with 4 px patches and a narrow text transformer.

    Args:
        vocab_size: tokenizer vocabulary size.
        max_length: text positions (dialogue text is long; longer text is truncated).
        width: hidden size of both towers (and the projection dimension).
        layers: transformer layers per tower.
        image_size: input resolution in pixels.
    """
    from transformers import CLIPConfig

    text = dict(
        vocab_size=vocab_size, hidden_size=width, intermediate_size=4 * width, num_hidden_layers=layers,
        num_attention_heads=max(1, width // 32), max_position_embeddings=max_length,
        pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID, projection_dim=width,
    )
    vision = dict(
        image_size=image_size, patch_size=4, hidden_size=width, intermediate_size=4 * width,
        num_hidden_layers=layers, num_attention_heads=max(1, width // 32), projection_dim=width,
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=width)


def images_to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> normalised float ``(N, 3, H, W)``, exactly as the saved processor does."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def length_buckets(lengths: Sequence[int], first: int = 32) -> list[np.ndarray]:
    """Indices grouped by token length into buckets ``<= first``, ``<= 2 first``, ``<= 4 first``, ...

    Padding each bucket to its own longest text costs at most twice the real tokens, where padding a
    batch with a few long texts to the longest one costs up to ``max / mean`` times as much.
    """
    lengths = np.asarray(lengths)
    level = np.maximum(0, np.ceil(np.log2(np.maximum(lengths, 1) / first))).astype(int)
    return [np.flatnonzero(level == b) for b in np.unique(level)]


def embed_text(model, tokenizer, texts: Sequence[str], max_length: int | None = None,
               lengths: list[int] | None = None) -> torch.Tensor:
    """Unit-norm projected text embeddings ``(n, dim)`` (with gradients when the model trains).

    Texts are embedded in length buckets (:func:`length_buckets`), each padded to its own longest
    text; right padding under the attention mask leaves each text's embedding as it is, so the
    result equals one padded batch's up to float rounding.

    Args:
        lengths: when a list, receives each text's token count (with ``[BOS]``/``[EOS]``, after truncation).
    """
    max_length = max_length or model.config.text_config.max_position_embeddings
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    if lengths is not None:
        lengths.extend(len(i) for i in ids)
    buckets = length_buckets([len(i) for i in ids])
    pooled = []
    for bucket in buckets:
        batch = tokenizer.pad({"input_ids": [ids[i] for i in bucket]}, return_tensors="pt")
        out = model.text_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        pooled.append(out.pooler_output)
    back = torch.from_numpy(np.argsort(np.concatenate(buckets)))  # bucket order -> the texts' order
    return F.normalize(model.text_projection(torch.cat(pooled)[back]), dim=-1)


def embed_pixels(model, pixels: torch.Tensor) -> torch.Tensor:
    """Unit-norm projected image embeddings of normalised pixels."""
    out = model.vision_model(pixel_values=pixels)
    return F.normalize(model.visual_projection(out.pooler_output), dim=-1)


@torch.no_grad()
def embed_images_array(model, images: np.ndarray, batch_size: int = 512) -> torch.Tensor:
    """Embed a uint8 image array in batches (no gradients)."""
    model.eval()
    chunks = [embed_pixels(model, images_to_pixels(images[i : i + batch_size]))
              for i in range(0, len(images), batch_size)]
    return torch.cat(chunks)


def new_clip(tokenizer, seed: int, **config_kw):
    """A freshly initialised ``CLIPModel`` sized for the toy world (seeded)."""
    from transformers import CLIPModel

    torch.manual_seed(seed)
    return CLIPModel(clip_config(len(tokenizer), **config_kw))


def reinit_text_tower(model, seed: int) -> None:
    """Re-initialise the text transformer and text projection (locked-image tuning starts here).

    Args:
        model: a dual encoder (``VisionTextDualEncoderModel`` or ``CLIPModel``): a fresh model of its
            class and config, seeded, gives the new text weights; the image side is kept.
    """
    torch.manual_seed(seed)
    fresh = type(model)(model.config)
    model.text_model.load_state_dict(fresh.text_model.state_dict())
    model.text_projection.load_state_dict(fresh.text_projection.state_dict())
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1 / 0.07))


#: ``positives(texts, idx) -> bool (n_texts, n_images)``: which images of the batch each text describes
#: truly (the diagonal always), so look-alikes are not pushed apart as negatives.
PositivesFn = Callable[[Sequence[str], np.ndarray], np.ndarray]


def soft_contrastive_loss(logits: torch.Tensor, positives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE with several positives: each row's target spreads evenly over its positives.

    Args:
        logits: ``(n, n)`` scaled text-image similarities (text rows, image columns).
        positives: ``(n, n)`` bool; ``None`` is the identity (plain InfoNCE).
    """
    n = logits.shape[0]
    pos = torch.eye(n, dtype=torch.bool) if positives is None else positives | torch.eye(n, dtype=torch.bool)
    pos = pos.float()
    t2i = -(pos / pos.sum(1, keepdim=True) * F.log_softmax(logits, dim=1)).sum(1).mean()
    i2t = -(pos.T / pos.T.sum(1, keepdim=True) * F.log_softmax(logits.T, dim=1)).sum(1).mean()
    return 0.5 * (t2i + i2t)


def train_clip(
    model,
    tokenizer,
    images: np.ndarray,
    text_fn: TextFn,
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    train_vision: bool = True,
    warmup: int = 50,
    log_every: int = 50,
    progress: bool = True,
    positives: PositivesFn | None = None,
    checkpoint=None,
    resume: bool = False,
    stop_at: int | None = None,
    stats: dict | None = None,
) -> list[float]:
    """Train with the symmetric InfoNCE loss; with ``train_vision=False`` the image tower is locked.

    Args:
        model: a dual encoder (module docstring); trained in place.
        tokenizer: its tokenizer.
        images: uint8 ``(N, H, W, 3)`` training images.
        text_fn: ``text_fn(idx, rng)`` returns a training text for image ``idx``.
        steps: optimiser steps in all (cosine schedule after a linear warm-up).
        batch_size: pairs per step.
        lr: peak learning rate (AdamW).
        seed: seeds batch sampling, text sampling and dropout.
        train_vision: False locks the vision tower and its projection; their embeddings are
            computed once, so text-only training is much cheaper.
        warmup: warm-up steps.
        log_every: log the mean loss every this many steps.
        progress: show a tqdm bar.
        positives: marks the other true pairs of a batch (:func:`soft_contrastive_loss`); ``None``:
            only the diagonal.
        checkpoint: a :class:`~dar_lib.toymodels.loop.Checkpointer` (``None``: never save).
        resume: continue from the checkpoint when there is one.
        stop_at: stop after this step, writing a checkpoint (raises ``TrainingStopped``).
        stats: when a dict, receives ``max_train_tokens``: the longest training text read (every segment
            of a resumed run), in tokens with ``[BOS]``/``[EOS]``, after truncation: the position
            embeddings up to there are trained.

    Returns:
        The loss of every step.
    """
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = random.Random(seed)
    gen = np.random.default_rng(seed)
    n = len(images)
    frozen_emb = None
    if not train_vision:
        for p in list(model.vision_model.parameters()) + list(model.visual_projection.parameters()):
            p.requires_grad_(False)
        frozen_emb = embed_images_array(model, images)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05 if train_vision else 0.01)
    sched = warmup_cosine(opt, warmup, steps)
    longest = RunningMax()
    run = Resumable(checkpoint, rng, gen, model=model, optimizer=opt, schedule=sched, longest=longest)
    start = run.restore(resume, "clip")
    losses = run.losses
    model.train()
    t0 = time.time()
    bar = tqdm(range(start, steps), desc="clip", disable=not progress, mininterval=5)
    for step in bar:
        idx = gen.choice(n, size=min(batch_size, n), replace=False)
        texts = [text_fn(int(i), rng) for i in idx]
        lengths: list[int] = []
        txt = embed_text(model, tokenizer, texts, lengths=lengths)
        longest.update(max(lengths))
        img = frozen_emb[idx] if frozen_emb is not None else embed_pixels(model, images_to_pixels(images[idx]))
        scale = model.logit_scale.clamp(max=math.log(100)).exp()
        pos = torch.from_numpy(positives(texts, idx)) if positives is not None else None
        loss = soft_contrastive_loss(scale * txt @ img.T, pos)
        losses.append(optim_step(opt, sched, params, loss))
        report_loss(bar, losses, step, steps, log_every, "clip", t0, log)
        run.after_step(step, steps, stop_at, "clip")
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
    if stats is not None:
        stats["max_train_tokens"] = longest.value
    return losses


def save_clip(model, tokenizer, folder: Path, extra: dict | None = None, dtype: torch.dtype = torch.float16) -> None:
    """Save model (safetensors), tokenizer and a ``CLIPImageProcessor`` config into ``folder``.

    Weights are stored in ``dtype`` (half precision by default: the shipped models must fit in
    30 MB); loaders cast back to float32 on the CPU.
    """
    import copy
    import json

    from transformers import CLIPImageProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    copy.deepcopy(model).to(dtype).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    size = model.config.vision_config.image_size
    CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size},
        image_mean=list(IMAGE_MEAN), image_std=list(IMAGE_STD), resample=3,
    ).save_pretrained(str(folder))
    if extra:
        (folder / "training.json").write_text(json.dumps(extra, indent=1, sort_keys=True) + "\n")
