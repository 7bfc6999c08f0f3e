"""Training of the toy text-to-image model: flow matching with classifier-free-guidance dropout."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dar_lib.toymodels.clip_train import TextFn
from dar_lib.toymodels.optim import step as optim_step
from dar_lib.toymodels.optim import warmup_cosine
from dar_lib.toymodels.pipeline import ToyDiffusionPipeline, to_latent

log = logging.getLogger(__name__)

#: Default sampling settings (the README's throughput figure is measured at these).
DEFAULT_STEPS = 8
DEFAULT_GUIDANCE = 3.0
DEFAULT_SIZE = 32


def new_pipeline(tokenizer, seed: int = 0, image_size: int = DEFAULT_SIZE, patch: int = 4, width: int = 48,
                 text_width: int = 128, text_layers: int = 3, text_length: int = 64, shift: float = 2.0):
    """A freshly initialised (seeded) :class:`ToyDiffusionPipeline`.

    Args:
        tokenizer: the toy tokenizer (its vocabulary sizes the text encoder).
        seed: initialisation seed.
        image_size: training resolution in pixels.
        patch: space-to-depth factor (4: a 32 px image is an 8 x 8 x 48 tensor; fast on a CPU).
        width: channels of the UNet's first block (then 2x, 2x).
        text_width: hidden size of the text encoder (= the UNet's cross-attention width).
        text_layers: text encoder layers.
        text_length: text positions (prompts are padded/truncated to it).
        shift: timestep shift of the flow-matching scheduler (>1 spends more steps at high noise).
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from dar_lib.toymodels.tokenizer import BOS_ID, EOS_ID, PAD_ID

    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=text_width, intermediate_size=4 * text_width,
        num_hidden_layers=text_layers, num_attention_heads=max(1, text_width // 32),
        max_position_embeddings=text_length, pad_token_id=PAD_ID, bos_token_id=BOS_ID, eos_token_id=EOS_ID,
    ))
    unet = UNet2DConditionModel(
        sample_size=image_size // patch,
        in_channels=3 * patch * patch,
        out_channels=3 * patch * patch,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(width, 2 * width, 2 * width),
        layers_per_block=1,
        cross_attention_dim=text_width,
        attention_head_dim=4,  # diffusers reads this as the number of heads (legacy name)
        norm_num_groups=16,
    )
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    return ToyDiffusionPipeline(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)


def train_diffusion(
    pipe: ToyDiffusionPipeline,
    images: np.ndarray,
    text_fn: TextFn,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    p_uncond: float = 0.1,
    warmup: int = 100,
    log_every: int = 50,
    progress: bool = True,
) -> list[float]:
    """Train UNet and text encoder jointly on the rectified-flow path.

    ``x_s = (1 - s) x_0 + s e``; the target is the clean image ``x_0`` (the pipeline's default
    ``prediction_type="sample"``) or the velocity ``e - x_0``; timestep ``1000 s`` with ``s`` drawn from a
    logit-normal shifted like the sampler's schedule; the text is replaced by the empty text with
    probability ``p_uncond`` so that classifier-free guidance has an unconditional model.

    Args:
        pipe: the pipeline to train in place.
        images: uint8 ``(N, H, W, 3)`` training images.
        text_fn: ``text_fn(idx, rng)`` returns a (detailed) caption of image ``idx``.
        steps: optimiser steps.
        batch_size: images per step.
        lr: peak learning rate (AdamW, cosine schedule).
        seed: seeds sampling, noise and dropout.
        p_uncond: probability of dropping the text.
        warmup: linear warm-up steps.
        log_every: log the mean loss every this many steps.
        progress: show a tqdm bar.

    Returns:
        The loss of every step.
    """
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = random.Random(seed)
    gen = np.random.default_rng(seed)
    shift = float(pipe.scheduler.config.shift)
    patch = pipe.patch
    params = list(pipe.unet.parameters()) + list(pipe.text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = warmup_cosine(opt, warmup, steps, floor=0.1)
    pipe.unet.train()
    pipe.text_encoder.train()
    losses: list[float] = []
    t0 = time.time()
    bar = tqdm(range(steps), desc="diffusion", disable=not progress, mininterval=5)
    for step in bar:
        idx = gen.choice(len(images), size=batch_size, replace=False)
        texts = ["" if rng.random() < p_uncond else text_fn(int(i), rng) for i in idx]
        x0 = torch.from_numpy(np.ascontiguousarray(images[idx])).permute(0, 3, 1, 2).float() / 127.5 - 1
        x0 = to_latent(x0, patch)
        s = torch.sigmoid(torch.randn(batch_size))
        s = shift * s / (1 + (shift - 1) * s)  # the same shift the sampler applies to its sigmas
        noise = torch.randn_like(x0)
        sv = s.view(-1, 1, 1, 1)
        xt = (1 - sv) * x0 + sv * noise
        cond = pipe.encode_prompt(texts)
        pred = pipe.unet(xt, s * 1000, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred, x0 if pipe.config.prediction_type == "sample" else noise - x0)
        losses.append(optim_step(opt, sched, params, loss))
        if log_every and (step + 1) % log_every == 0:
            recent = float(np.mean(losses[-log_every:]))
            bar.set_postfix(loss=f"{recent:.4f}")
            log.info("diffusion step %d/%d loss %.4f (%.0f s)", step + 1, steps, recent, time.time() - t0)
    pipe.unet.eval()
    pipe.text_encoder.eval()
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
