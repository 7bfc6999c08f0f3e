"""Time per generated image of SD3-medium- and SD-Turbo-shaped randomly initialised pipelines.

The denoiser and VAE have the real models' shapes (SD3-medium: 2B-parameter MMDiT, 16-channel
VAE; SD-Turbo: the SD 2.1 UNet, 4-channel VAE). Text encoders are real-sized only with
``--full-text-encoders`` (SD3's T5-XXL alone is 4.7B parameters): otherwise they are one-layer
models with the real output widths, so the figure is denoising + decoding, which dominates.
Nothing is downloaded. On CPU use ``--size 128 --steps 2`` so it ends in a few minutes.
The last printed line is a JSON object of the figures.

Usage: ``python measure/generators.py --device cpu --size 128 --steps 2``
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch


def word_tokenizer(max_len: int = 77):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(1000)])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", model_max_length=max_len)


def clip_text(hidden: int, layers: int, heads: int, ff: int, proj: int | None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         intermediate_size=ff, projection_dim=proj or hidden, bos_token_id=2, eos_token_id=3,
                         pad_token_id=0, hidden_act="gelu")
    return CLIPTextModelWithProjection(cfg) if proj else CLIPTextModel(cfg)


def sd3_medium(full_text: bool):
    from diffusers import (
        AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline,
    )
    from transformers import T5Config, T5EncoderModel

    layers = (lambda n: n) if full_text else (lambda n: 1)
    transformer = SD3Transformer2DModel(sample_size=128, patch_size=2, in_channels=16, num_layers=24,
                                        attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                                        caption_projection_dim=1536, pooled_projection_dim=2048, out_channels=16,
                                        pos_embed_max_size=192)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=2, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609,
                        scaling_factor=1.5305)
    te1 = clip_text(768, layers(12), 12, 3072, 768)      # CLIP-L/14
    te2 = clip_text(1280, layers(32), 20, 5120, 1280)    # OpenCLIP bigG/14
    t5 = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=layers(24),
                                 num_heads=64, feed_forward_proj="gated-gelu"))
    return StableDiffusion3Pipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    vae=vae, text_encoder=te1, tokenizer=word_tokenizer(), text_encoder_2=te2,
                                    tokenizer_2=word_tokenizer(), text_encoder_3=t5, tokenizer_3=word_tokenizer(256))


def sd_turbo(full_text: bool):
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20),
                                use_linear_projection=True)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=2)
    te = clip_text(1024, 23 if full_text else 1, 16, 4096, None)  # OpenCLIP ViT-H text tower
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   timestep_spacing="trailing", prediction_type="epsilon", steps_offset=1)
    return StableDiffusionPipeline(unet=unet, scheduler=sched, vae=vae, text_encoder=te, tokenizer=word_tokenizer(),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _run(gen, prompts: list[str], seeds: list[int], steps: int, guidance: float, size: int):
    """One timed call of ``gen``'s pipeline on ``prompts``, one seeded generator per prompt.

    The pipeline is called directly, not through gen.generate: random weights may decode to an
    all-black image, which generate() rightly refuses; only the time matters here.
    """
    return gen.pipe(prompt=prompts, generator=[torch.Generator().manual_seed(x) for x in seeds],
                    num_inference_steps=steps, guidance_scale=guidance, height=size, width=size,
                    output_type="pil").images


def main() -> None:
    from dar_lib.models.generators import DiffusersGenerator

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=None, help="image side (default 1024 for SD3, 512 for turbo)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default 28 for SD3, 1 for turbo)")
    ap.add_argument("--images", type=int, default=2, help="images timed per model (after one warm-up image)")
    ap.add_argument("--full-text-encoders", action="store_true")
    ap.add_argument("--models", default="sd3-medium,sd-turbo")
    args = ap.parse_args()
    result = {"device": args.device, "full_text_encoders": args.full_text_encoders,
              "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    if args.device.startswith("cuda"):
        result["card"] = torch.cuda.get_device_name(0)
    print("device:", result.get("card", args.device), flush=True)
    specs = {"sd3-medium": (sd3_medium, 28, 7.0, 1024), "sd-turbo": (sd_turbo, 1, 0.0, 512)}
    for name in args.models.split(","):
        build, steps, guidance, size = specs[name]
        torch.manual_seed(0)
        t = time.perf_counter()
        pipe = build(args.full_text_encoders)
        gen = DiffusersGenerator(pipe, f"bench-{name}", steps, guidance, size, device=args.device, batch_size=1)
        build_s = time.perf_counter() - t
        steps, size = args.steps or steps, args.size or size
        _run(gen, ["w1 w2 w3"], [0], steps, guidance, size)  # warm-up
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(args.images):
            _run(gen, [f"w{i} w{i + 1} w{i + 2} w{i + 3}"], [i], steps, guidance, size)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        per_image = (time.perf_counter() - t) / args.images
        result[name] = {"s_per_image": round(per_image, 3), "steps": steps, "guidance": guidance, "size": size,
                        "dtype": str(gen.dtype).replace("torch.", ""), "build_s": round(build_s, 1),
                        "params_denoiser_M": round(sum(p.numel() for p in (getattr(pipe, "transformer", None)
                                                   or pipe.unet).parameters()) / 1e6, 1)}
        print(name, result[name], flush=True)
        del pipe, gen
    print(json.dumps(result))


if __name__ == "__main__":
    main()
