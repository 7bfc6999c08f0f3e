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

from dar_lib import testing


def _text_layers(shape: dict, full_text: bool) -> dict:
    """The text towers of ``shape`` at one layer each unless ``full_text`` (the real output widths either way)."""
    return shape if full_text else {k: {**v, "num_hidden_layers": 1} if k in ("clip_l", "clip_g", "text") else
                                    {**v, "num_layers": 1} if k == "t5" else v for k, v in shape.items()}


#: CLIP's vocabulary size: the stand-in tokenizer is padded to it, so the text towers' embedding tables are real-sized.
CLIP_VOCAB = 49408


def _clip_sized_tokenizer():
    return testing.word_tokenizer(77, words=(), specials=("<pad>", "<unk>", "<s>", "</s>"), vocab_size=CLIP_VOCAB)


def sd3_medium(full_text: bool):
    """SD3-medium's shape (:data:`dar_lib.testing.SHAPES` ``["paper"]["sd3"]``), random weights."""
    shape = _text_layers(testing.SHAPES["paper"]["sd3"], full_text)
    return testing.sd3_pipeline(shape, _clip_sized_tokenizer(),
                                testing.t5_word_tokenizer(256, vocab_size=shape["t5"]["vocab_size"]))


def sd_turbo(full_text: bool):
    """SD-Turbo's shape (SD 2.1-base: :data:`dar_lib.testing.SHAPES` ``["paper"]["sd2"]``), its Euler scheduler."""
    return testing.sd2_pipeline(_text_layers(testing.SHAPES["paper"]["sd2"], full_text), _clip_sized_tokenizer(),
                                "turbo")


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
