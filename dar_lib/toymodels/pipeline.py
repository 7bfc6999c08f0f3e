"""``ToyDiffusionPipeline``: a small text-to-image flow-matching pipeline in a space-to-depth pixel space."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image


def to_latent(pixels: torch.Tensor, patch: int) -> torch.Tensor:
    """Images in [-1, 1], ``(N, 3, H, W)`` -> ``(N, 3 p^2, H/p, W/p)``: lossless, so no VAE to train."""
    return F.pixel_unshuffle(pixels, patch)


def from_latent(latents: torch.Tensor, patch: int) -> torch.Tensor:
    """Inverse of :func:`to_latent`."""
    return F.pixel_shuffle(latents, patch)


class ToyDiffusionPipeline(DiffusionPipeline):
    """Text-conditional image generation with classifier-free guidance.

    Components: ``unet`` (``UNet2DConditionModel`` over space-to-depth pixels), ``scheduler``
    (``FlowMatchEulerDiscreteScheduler``), ``text_encoder`` (a small ``CLIPTextModel`` whose hidden
    states condition the UNet) and ``tokenizer``. Saved with ``save_pretrained`` and loaded with
    ``ToyDiffusionPipeline.from_pretrained(folder)``.

    Examples:
        >>> pipe = ToyDiffusionPipeline.from_pretrained("dar_lib/assets/toy/sd")  # doctest: +SKIP
        >>> pipe(prompt=["a red circle"], num_inference_steps=8, guidance_scale=3.0).images[0].size  # doctest: +SKIP
        (32, 32)
    """

    model_cpu_offload_seq = "text_encoder->unet"

    def __init__(self, unet, scheduler, text_encoder, tokenizer, prediction_type: str = "sample"):
        super().__init__()
        if prediction_type not in ("sample", "velocity"):
            raise ValueError(f"prediction_type must be 'sample' or 'velocity', got {prediction_type!r}")
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer)
        # "sample": the UNet predicts the clean image (x-prediction). With 4 x 4 pixel patches a
        # velocity-predicting UNet must reproduce the noise of every pixel and leaves grain behind;
        # the clean toy image is flat colour, far easier to predict (cf. JiT, "Back to Basics", 2025).
        self.register_to_config(prediction_type=prediction_type)
        # a per-call bar for 8 steps of a few milliseconds is noise; callers batch and show their own
        self.set_progress_bar_config(disable=True)

    @property
    def patch(self) -> int:
        """Space-to-depth factor, read from the UNet's input channels (3 p^2)."""
        return int(round((self.unet.config.in_channels // 3) ** 0.5))

    @property
    def text_length(self) -> int:
        return int(self.text_encoder.config.max_position_embeddings)

    def velocity(self, out: torch.Tensor, latents: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The flow velocity ``e - x_0`` that the Euler scheduler steps along, from the UNet's output."""
        if self.config.prediction_type == "velocity":
            return out
        sigma = (t.float() / self.scheduler.config.num_train_timesteps).clamp(min=1e-3)
        # x_s = (1 - s) x_0 + s e  =>  e - x_0 = (x_s - x_0) / s; the clean image lies in [-1, 1]
        return (latents - out.clamp(-1, 1)) / sigma

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text hidden states ``(N, L, D)``, padded to the encoder's full length so that results do
        not depend on what else is in the batch."""
        batch = self.tokenizer(
            list(prompts), padding="max_length", truncation=True, max_length=self.text_length, return_tensors="pt"
        )
        device = self.text_encoder.device
        out = self.text_encoder(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
        return out.last_hidden_state

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str],
        num_inference_steps: int = 8,
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
            num_inference_steps: Euler steps of the flow ODE.
            guidance_scale: classifier-free guidance weight; <= 1 disables the unconditional pass.
            generator: one ``torch.Generator`` for the batch, or one per image (reproducible per image).
            height: output height in pixels (default: the training size); a multiple of 8 * patch.
            width: output width in pixels (default: the training size).
            output_type: ``"pil"``, ``"np"`` (float in [0, 1], NHWC) or ``"pt"`` (float in [0, 1], NCHW).
            negative_prompt: texts for the unconditional branch (default: the empty text).
            return_dict: return an ``ImagePipelineOutput`` (else a one-tuple).

        Returns:
            ``ImagePipelineOutput`` whose ``images`` holds one image per prompt.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        n = len(prompts)
        if isinstance(generator, (list, tuple)) and len(generator) != n:
            raise ValueError(f"got {len(generator)} generators for {n} prompts; pass one per prompt or one in all")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        p = self.patch
        size = int(self.unet.config.sample_size) * p
        height, width = height or size, width or size
        mult = p * 2 ** (len(self.unet.config.block_out_channels) - 1)
        if height % mult or width % mult:
            raise ValueError(f"height and width must be multiples of {mult}, got {height}x{width}")
        device = self.unet.device
        dtype = self.unet.dtype
        cond = self.encode_prompt(prompts).to(dtype)
        do_cfg = guidance_scale > 1.0
        if do_cfg:
            neg = [""] * n if negative_prompt is None else ([negative_prompt] * n if isinstance(negative_prompt, str) else list(negative_prompt))
            cond = torch.cat([self.encode_prompt(neg).to(dtype), cond])
        shape = (n, self.unet.config.in_channels, height // p, width // p)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        for t in self.progress_bar(self.scheduler.timesteps):
            x = torch.cat([latents, latents]) if do_cfg else latents
            out = self.unet(x.to(dtype), t.expand(x.shape[0]), encoder_hidden_states=cond).sample.float()
            if do_cfg:
                out_uncond, out_cond = out.chunk(2)
                out = out_uncond + guidance_scale * (out_cond - out_uncond)
            v = self.velocity(out, latents, t)
            latents = self.scheduler.step(v, t, latents).prev_sample
        images = ((from_latent(latents, p) + 1) / 2).clamp(0, 1)
        if output_type == "pt":
            out = images.cpu()
        else:
            arr = images.permute(0, 2, 3, 1).cpu().numpy()
            out = arr if output_type == "np" else [Image.fromarray(np.round(a * 255).astype(np.uint8)) for a in arr]
        if not return_dict:
            return (out,)
        return ImagePipelineOutput(images=out)
