"""``ToyDiffusionPipeline``: a small text-to-image flow-matching pipeline in pixel space, built like SD3.

The denoiser is diffusers' ``SD3Transformer2DModel`` (the paper's own generator family): image
patches and text tokens attend to each other in every block (joint attention), the patches carry
2-D position embeddings, and a pooled text embedding modulates every block through adaptive layer
norm. The text encoder is a shallow ``CLIPTextModel`` trained with it. Sampling follows the
rectified-flow ODE with a ``FlowMatchEulerDiscreteScheduler`` and classifier-free guidance.

Why this and not a UNet: a UNet with cross-attention on frozen or jointly learned text states drew
the right colours but put objects anywhere and ignored shape and count words; the same budget
with joint attention binds position, count and colour (measured by ``measure/toy_generators.py``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image


class ToyDiffusionPipeline(DiffusionPipeline):
    """Text-conditional image generation with classifier-free guidance.

    Components: ``transformer`` (``SD3Transformer2DModel`` over RGB pixels in [-1, 1], patch size
    4), ``scheduler`` (``FlowMatchEulerDiscreteScheduler``), ``text_encoder`` (a small
    ``CLIPTextModel``: its token states are the joint-attention context, its pooled output the
    block modulation) and ``tokenizer``. Saved with ``save_pretrained`` and loaded with
    ``ToyDiffusionPipeline.from_pretrained(folder)``.

    The transformer predicts the clean image (``prediction_type="sample"``); the sampler turns that
    into the flow velocity. A flat-colour toy image is far easier to predict than per-pixel noise
    (cf. JiT, "Back to Basics", 2025).

    Examples:
        >>> from dar_lib.toymodels import ASSETS
        >>> pipe = ToyDiffusionPipeline.from_pretrained(str(ASSETS / "sd"))
        >>> pipe(prompt=["a red circle"], num_inference_steps=5, guidance_scale=3.0).images[0].size
        (32, 32)
    """

    model_cpu_offload_seq = "text_encoder->transformer"

    def __init__(self, transformer, scheduler, text_encoder, tokenizer, prediction_type: str = "sample"):
        super().__init__()
        if prediction_type not in ("sample", "velocity"):
            raise ValueError(f"prediction_type must be 'sample' or 'velocity', got {prediction_type!r}")
        self.register_modules(transformer=transformer, scheduler=scheduler, text_encoder=text_encoder,
                              tokenizer=tokenizer)
        self.register_to_config(prediction_type=prediction_type)
        # a per-call bar for a few steps of milliseconds is noise; callers batch and show their own
        self.set_progress_bar_config(disable=True)

    @property
    def image_size(self) -> int:
        """Training resolution in pixels."""
        return int(self.transformer.config.sample_size)

    @property
    def text_length(self) -> int:
        """Text positions: prompts are padded (and cut) to this many tokens, so a batch never changes an image."""
        return int(self.text_encoder.config.max_position_embeddings)

    def velocity(self, out: torch.Tensor, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The flow velocity ``e - x_0`` that the Euler scheduler steps along, from the model's output."""
        if self.config.prediction_type == "velocity":
            return out
        sigma = (t.float() / self.scheduler.config.num_train_timesteps).clamp(min=1e-3)
        # x_s = (1 - s) x_0 + s e  =>  e - x_0 = (x_s - x_0) / s; the clean image lies in [-1, 1]
        return (latents - out.clamp(-1, 1)) / sigma

    def encode_prompt(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token states ``(N, L, D)`` and pooled embeddings ``(N, D)`` of ``prompts``."""
        batch = self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=self.text_length,
                               return_tensors="pt")
        device = self.text_encoder.device
        out = self.text_encoder(input_ids=batch["input_ids"].to(device),
                                attention_mask=batch["attention_mask"].to(device))
        return out.last_hidden_state, out.pooler_output

    def denoise(self, x: torch.Tensor, t: torch.Tensor, states: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """The transformer's output for noisy images ``x`` at timesteps ``t`` (0..1000)."""
        return self.transformer(hidden_states=x, encoder_hidden_states=states, pooled_projections=pooled,
                                timestep=t).sample

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str],
        num_inference_steps: int = 6,
        guidance_scale: float = 3.0,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        height: int | None = None,
        width: int | None = None,
        output_type: str = "pil",
        negative_prompt: str | Sequence[str] | None = None,
        return_dict: bool = True,
    ):
        """Generate one image per prompt.

        Args:
            prompt: a text or a list of texts.
            num_inference_steps: Euler steps of the flow ODE (>= 1).
            guidance_scale: classifier-free guidance weight; <= 1 disables the unconditional pass.
            generator: one ``torch.Generator`` for the batch, or one per image (reproducible per image).
            height, width: must equal the training size (the position embeddings are learned for it).
            output_type: ``"pil"``, ``"np"`` (float in [0, 1], NHWC) or ``"pt"`` (float in [0, 1], NCHW).
            negative_prompt: texts for the unconditional branch (default: the empty text).
            return_dict: return an ``ImagePipelineOutput`` (else a one-tuple).

        Returns:
            ``ImagePipelineOutput`` whose ``images`` holds one image per prompt.

        Raises:
            ValueError: a bad step count, size, output type or number of generators.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        n = len(prompts)
        if isinstance(generator, (list, tuple)) and len(generator) != n:
            raise ValueError(f"got {len(generator)} generators for {n} prompts; pass one per prompt or one in all")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        size = self.image_size
        if (height or size) != size or (width or size) != size:
            raise ValueError(f"this model draws {size}x{size} images only, got {height}x{width}")
        device = self.transformer.device
        dtype = self.transformer.dtype
        states, pooled = self.encode_prompt(prompts)
        do_cfg = guidance_scale > 1.0
        if do_cfg:
            neg = [""] * n if negative_prompt is None else (
                [negative_prompt] * n if isinstance(negative_prompt, str) else list(negative_prompt))
            neg_states, neg_pooled = self.encode_prompt(neg)
            states, pooled = torch.cat([neg_states, states]), torch.cat([neg_pooled, pooled])
        states, pooled = states.to(dtype), pooled.to(dtype)
        shape = (n, self.transformer.config.in_channels, size, size)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        for t in self.progress_bar(self.scheduler.timesteps):
            x = torch.cat([latents, latents]) if do_cfg else latents
            out = self.denoise(x.to(dtype), t.expand(x.shape[0]), states, pooled).float()
            if do_cfg:
                out_uncond, out_cond = out.chunk(2)
                out = out_uncond + guidance_scale * (out_cond - out_uncond)
            latents = self.scheduler.step(self.velocity(out, latents, t), t, latents).prev_sample
        images = ((latents + 1) / 2).clamp(0, 1)
        if output_type == "pt":
            out = images.cpu()
        else:
            arr = images.permute(0, 2, 3, 1).cpu().numpy()
            out = arr if output_type == "np" else [Image.fromarray(np.round(a * 255).astype(np.uint8)) for a in arr]
        if not return_dict:
            return (out,)
        return ImagePipelineOutput(images=out)
