"""Training of the toy text-to-image model: flow matching, clean-image prediction, object-weighted loss, EMA."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from dar_lib.toymodels.clip_train import TextFn
from dar_lib.toymodels.diffusion import ToyDiffusionPipeline
from dar_lib.toymodels.loop import Checkpointer, Resumable, TensorList, report_loss, warmup_cosine
from dar_lib.toymodels.loop import step as optim_step
from dar_lib.toymodels.tokenizer import BOS_ID, EOS_ID, PAD_ID

log = logging.getLogger(__name__)

#: Default sampling settings (the README's throughput figure is measured at these). Chosen on the shipped
#: v2 model by probe agreement on 256 full captions (1 thread, shared machine): steps/guidance 4/3.0:
#: colour 90%, count 95%, 10 img/s; 5/3.0: colour 96%, count 95%, 9 img/s; 6/3.0: colour 94%, 7 img/s;
#: guidance 4.5-6 lowers colour and count. Shape stayed at 53-62% at every setting: the 4,000-step model was
#: undertrained, and the 7,500-step one draws the asked shape 88% of the time at 5/3.0
#: (``measure/toy_generator_sampler.py``, ``measure/toy_generator_candidates.py``).
DEFAULT_STEPS = 5
DEFAULT_GUIDANCE = 3.0
DEFAULT_SIZE = 32


def new_pipeline(tokenizer, seed: int = 0, image_size: int = DEFAULT_SIZE, patch: int = 4, width: int = 128,
                 layers: int = 4, head_dim: int = 32, text_width: int = 128, text_layers: int = 1,
                 text_length: int = 40, shift: float = 2.0) -> ToyDiffusionPipeline:
    """A freshly initialised (seeded) :class:`ToyDiffusionPipeline`.

    Args:
        tokenizer: the toy tokenizer (its vocabulary sizes the text encoder).
        seed: initialisation seed.
        image_size: image side in pixels.
        patch: patch side in pixels (4: a 32 px image is 64 tokens).
        width: the transformer's hidden size (a multiple of ``head_dim``).
        layers: joint-attention blocks.
        head_dim: attention head size.
        text_width: hidden size of the text encoder.
        text_layers: text encoder layers (the joint blocks do most of the reading).
        text_length: text positions (prompts are padded and cut to it).
        shift: timestep shift of the flow-matching scheduler (>1 spends more steps at high noise).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if width % head_dim:
        raise ValueError(f"width {width} must be a multiple of head_dim {head_dim}")
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=text_width, intermediate_size=4 * text_width,
        num_hidden_layers=text_layers, num_attention_heads=max(1, text_width // 32),
        max_position_embeddings=text_length, pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
    ))
    transformer = SD3Transformer2DModel(
        sample_size=image_size, patch_size=patch, in_channels=3, out_channels=3, num_layers=layers,
        attention_head_dim=head_dim, num_attention_heads=width // head_dim, joint_attention_dim=text_width,
        caption_projection_dim=width, pooled_projection_dim=text_width, pos_embed_max_size=image_size // patch,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    return ToyDiffusionPipeline(transformer=transformer, scheduler=scheduler, text_encoder=text_encoder,
                                tokenizer=tokenizer)


def object_masks(images: np.ndarray, backgrounds: np.ndarray, threshold: int = 30) -> np.ndarray:
    """Per pixel: 1 where an object is drawn (it differs from the scene's bare background), else 0.

    Args:
        images: uint8 ``(N, H, W, 3)`` scenes; backgrounds: the same scenes without objects.

    Returns:
        float32 ``(N, H, W)``.
    """
    diff = np.abs(images.astype(np.int16) - backgrounds.astype(np.int16)).sum(-1)
    return (diff > threshold).astype(np.float32)


def train_diffusion(
    pipe: ToyDiffusionPipeline,
    images: np.ndarray,
    text_fn: TextFn,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    masks: np.ndarray | None = None,
    object_weight: float = 5.0,
    p_uncond: float = 0.1,
    ema_decay: float = 0.999,
    warmup: int = 200,
    log_every: int = 50,
    progress: bool = True,
    checkpoint: Checkpointer | None = None,
    resume: bool = False,
    stop_at: int | None = None,
    minutes: float | None = None,
    lr_floor: float = 0.1,
    pixel_weight: Callable[[torch.Tensor], torch.Tensor] | None = None,
    train_text_encoder: bool = True,
) -> list[float]:
    """Train transformer and text encoder jointly on the rectified-flow path; keep an EMA of the weights.

    ``x_s = (1 - s) x_0 + s e``; the target is the clean image ``x_0``; timestep ``1000 s`` with ``s``
    drawn from a logit-normal shifted like the sampler's schedule. Object pixels weigh
    ``object_weight`` times the background's in the loss (objects cover 3-12% of a scene, so an
    unweighted loss is mostly background). The text is dropped with probability ``p_uncond`` so
    that classifier-free guidance has an unconditional model. At the end the pipeline holds the EMA
    weights (what is saved and shipped).

    Args:
        pipe: the pipeline to train in place.
        images: uint8 ``(N, H, W, 3)`` training images.
        text_fn: ``text_fn(idx, rng)`` returns a prompt for image ``idx``.
        steps: optimiser steps in all (a resumed run continues to the same total).
        batch_size: images per step.
        lr: peak learning rate (AdamW, warm-up then cosine to 10%).
        seed: seeds sampling, noise and dropout.
        masks: float ``(N, H, W)`` object masks (:func:`object_masks`); ``None`` weighs pixels equally.
        object_weight: loss weight of object pixels.
        p_uncond: probability of dropping the text.
        ema_decay: decay of the weight average (warmed up over the first steps).
        warmup: linear warm-up steps.
        log_every: log the mean loss every this many steps.
        progress: show a tqdm bar.
        checkpoint: saves the whole state every few minutes (``None``: never).
        resume: continue from ``checkpoint``'s saved state when there is one.
        stop_at: stop after this step, writing a checkpoint first (raises :class:`TrainingStopped`).
        minutes: a wall-clock budget: training ends after the step that exceeds it (or at ``steps``),
            so candidates are compared on one budget (``measure/toy_generator_candidates.py``).
        lr_floor: where the cosine ends, as a share of the peak rate (1.0: constant after warm-up).
        pixel_weight: maps a ``(B, 1, H, W)`` batch of object masks to per-pixel loss weights
            (default ``1 + (object_weight - 1) * mask``); needs ``masks``.
        train_text_encoder: False keeps the text encoder as it is (only the transformer learns).

    Returns:
        The loss of every step (the resumed run's include those before the stop).
    """
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = random.Random(seed)
    gen = np.random.default_rng(seed)
    shift = float(pipe.scheduler.config.shift)
    modules = [pipe.transformer, pipe.text_encoder] if train_text_encoder else [pipe.transformer]
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = warmup_cosine(opt, warmup, steps, floor=lr_floor)
    if pixel_weight is None:
        def pixel_weight(m: torch.Tensor) -> torch.Tensor:
            return 1 + (object_weight - 1) * m
    ema = [p.detach().clone() for p in params]
    run = Resumable(checkpoint, rng, gen, transformer=pipe.transformer, text_encoder=pipe.text_encoder,
                    optimizer=opt, schedule=sched, ema=TensorList(ema))
    start = run.restore(resume, "diffusion")
    losses = run.losses
    for m in modules:
        m.train()
    t0 = time.time()
    bar = tqdm(range(start, steps), desc="diffusion", disable=not progress, mininterval=5)
    for step in bar:
        idx = gen.choice(len(images), size=batch_size, replace=False)
        texts = ["" if rng.random() < p_uncond else text_fn(int(i), rng) for i in idx]
        x0 = torch.from_numpy(np.ascontiguousarray(images[idx])).permute(0, 3, 1, 2).float() / 127.5 - 1
        weight = 1.0 if masks is None else pixel_weight(torch.from_numpy(masks[idx])[:, None])
        s = torch.sigmoid(torch.randn(batch_size))
        s = shift * s / (1 + (shift - 1) * s)  # the same shift the sampler applies to its sigmas
        noise = torch.randn_like(x0)
        sv = s.view(-1, 1, 1, 1)
        xt = (1 - sv) * x0 + sv * noise
        states, pooled = pipe.encode_prompt(texts)
        pred = pipe.denoise(xt, s * 1000, states, pooled)
        target = x0 if pipe.config.prediction_type == "sample" else noise - x0
        loss = (weight * (pred - target) ** 2).mean()
        losses.append(optim_step(opt, sched, params, loss))
        with torch.no_grad():
            d = min(ema_decay, (1 + step) / (10 + step))
            for e, p in zip(ema, params):
                e.mul_(d).add_(p.detach(), alpha=1 - d)
        report_loss(bar, losses, step, steps, log_every, "diffusion", t0, log, digits=4)
        run.after_step(step, steps, stop_at, "diffusion")
        if minutes is not None and time.time() - t0 >= 60 * minutes:
            log.info("diffusion: the %.1f-minute budget ends training after step %d", minutes, step + 1)
            break
    with torch.no_grad():
        for e, p in zip(ema, params):
            p.copy_(e)
    for m in modules:
        m.eval()
    return losses


def save_pipeline(pipe: ToyDiffusionPipeline, folder: Path, extra: dict | None = None,
                  dtype: torch.dtype = torch.float16) -> None:
    """``save_pretrained`` (safetensors, half precision by default) plus an optional ``training.json``."""
    import json

    folder = Path(folder)
    pipe.to(dtype=dtype)
    try:
        pipe.save_pretrained(str(folder), safe_serialization=True)
    finally:
        pipe.to(dtype=torch.float32)
    if extra:
        (folder / "training.json").write_text(json.dumps(extra, indent=1, sort_keys=True) + "\n")
