"""Time one DAR turn of the paper profile, stage by stage, on real-shaped models with random weights.

The models have the paper profile's shapes, built from configs in half precision directly on the device
(no download, no hub), one turn per generator (``--generators``): Stable Diffusion 3 medium (``sd3``:
MMDiT 2B, two CLIP text encoders, T5-XXL, 16-channel VAE) generating K = 3 images at 1024 px in 28 steps
with guidance 7.0; Stable Diffusion 2.1 (``sd21``: UNet 865M, OpenCLIP-H text encoder, v-prediction)
at 768 px, 50 steps, guidance 7.5 with its model card's ``DPMSolverMultistepScheduler``; and the
few-step SD-Turbo (``turbo``: SD 2.1-base's UNet at 512 px, 1 step, no guidance); BLIP-base (ViT-B/16 at
224 px, BERT-base, 256-d projections); a chat LLM of Qwen2.5-1.5B-Instruct's shape. A turn runs through the
library's own :class:`~dar_lib.pipeline.DARPipeline` (R1, R2, generation, encoding, fusion + ranking
against a random 50,000 x 256 corpus), which times each stage itself. One warm-up turn, then
``--turns`` timed turns; the last line printed is one JSON object.

What random weights change: the LLM's replies are junk, so each reply is held to a fixed length
(``--r1-tokens``, ``--r2-tokens``: about what a real reply to the R1 and R2 templates takes); a junk
reply the parser cannot use is replaced by the library's recorded fallback (no retry is timed), and a
real model may stop earlier or later. The tokenizers are word-level stand-ins (about as many tokens per
prompt as the real BPEs; the counts are printed).
Everything else (image size, steps, batch, sequence lengths, kernels) is what a real turn computes.

Not yet run on a GPU (no device was lent to the sessions that wrote it).

Examples:
    $ python measure/gpu_turn.py                      # CUDA, fp16, the paper's shapes, all three generators
    $ python measure/gpu_turn.py --generators sd3     # SD3-medium only
    $ python measure/gpu_turn.py --tiny --device cpu  # the same code on tiny shapes (seconds; CI)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

#: One ChatIR-style dialogue (caption and "question? answer" turns); a turn at round 3 uses four of them.
DIALOGUE = [
    "a man riding a brown horse on a dirt road next to a wooden fence",
    "is the photo in color? yes",
    "is it daytime? yes, it is sunny",
    "what is the man wearing? a cowboy hat and a blue shirt",
    "are there other people? no",
    "are there trees? yes, a few in the background",
]

#: The paper profile's shapes (``--tiny`` replaces them with small ones of the same classes).
FULL = {
    "sd3": dict(transformer=dict(sample_size=128, patch_size=2, in_channels=16, out_channels=16, num_layers=24,
                                 attention_head_dim=64, num_attention_heads=24, joint_attention_dim=4096,
                                 caption_projection_dim=1536, pooled_projection_dim=2048, pos_embed_max_size=192),
                clip_l=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12,
                            projection_dim=768, hidden_act="quick_gelu"),
                clip_g=dict(hidden_size=1280, intermediate_size=5120, num_attention_heads=20, num_hidden_layers=32,
                            projection_dim=1280, hidden_act="gelu"),
                t5=dict(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                        feed_forward_proj="gated-gelu"),
                vae=dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32)),
    "blip": dict(text_width=768, text_layers=12, vision_width=768, vision_layers=12, heads=12, mlp=3072,
                 image_size=224, proj=256, vocab_size=30524),
    "llm": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1e6,
                rms_norm_eps=1e-6, tie_word_embeddings=True),
    # SD 2.1 (768 px, v-prediction) and SD-Turbo (SD 2.1-base, 512 px): the same UNet and OpenCLIP-H text tower.
    "unet": dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=1024,
                 attention_head_dim=(5, 10, 20, 20), use_linear_projection=True, norm_num_groups=32),
    "openclip": dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
                     projection_dim=512, hidden_act="gelu"),
    "sd_vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
    "sd21": {"size": 768, "steps": 50, "guidance": 7.5},
    "turbo": {"size": 512, "steps": 1, "guidance": 0.0},
    "size": 1024, "steps": 28, "guidance": 7.0, "k_images": 3,
}
TINY = {
    "sd3": dict(transformer=dict(sample_size=16, patch_size=2, in_channels=16, out_channels=16, num_layers=1,
                                 attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                 caption_projection_dim=16, pooled_projection_dim=32, pos_embed_max_size=16),
                clip_l=dict(hidden_size=16, intermediate_size=32, num_attention_heads=1, num_hidden_layers=1,
                            projection_dim=16, hidden_act="quick_gelu"),
                clip_g=dict(hidden_size=16, intermediate_size=32, num_attention_heads=1, num_hidden_layers=1,
                            projection_dim=16, hidden_act="gelu"),
                t5=dict(vocab_size=512, d_model=32, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                        feed_forward_proj="gated-gelu"),
                vae=dict(block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4)),
    "blip": dict(text_width=64, text_layers=1, vision_width=64, vision_layers=1, heads=1, mlp=64, image_size=32,
                 proj=256, vocab_size=512),
    "llm": dict(vocab_size=512, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                num_key_value_heads=1, max_position_embeddings=4096, rope_theta=1e6, rms_norm_eps=1e-6,
                tie_word_embeddings=True),
    "unet": dict(block_out_channels=(8, 16), layers_per_block=1, cross_attention_dim=16, attention_head_dim=2,
                 use_linear_projection=True, norm_num_groups=4),
    "openclip": dict(hidden_size=16, intermediate_size=32, num_attention_heads=1, num_hidden_layers=1,
                     projection_dim=16, hidden_act="gelu"),
    "sd_vae": dict(block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4),
    "sd21": {"size": 32, "steps": 2, "guidance": 7.5},
    "turbo": {"size": 32, "steps": 1, "guidance": 0.0},
    "size": 32, "steps": 2, "guidance": 7.0, "k_images": 3,
}
#: The generators a run can time (``--generators``).
GENERATORS = ("sd3", "sd21", "turbo")
#: Corpus the turn ranks against (the ChatIR search space's size; BLIP's 256-d projections).
N_CORPUS, CORPUS_DIM = 50_000, 256


@contextlib.contextmanager
def built_on(device: str):
    """Create parameters directly on ``device`` (no CPU copy of a multi-GB model); the library's wrappers
    then cast them to ``dtype``. Built in float32 first: every init routine supports it (about 30 GB of
    GPU memory for the full shapes, for a moment)."""
    with torch.device(device):
        yield


def word_tokenizer(vocab_size: int, words: list[str], specials: list[str], cls_name: str = "PreTrainedTokenizerFast",
                   **kw):
    """A word-level tokenizer with ``vocab_size`` entries: about as many tokens per text as a real BPE
    (which sets the sequence lengths the models compute on), and every id a random model emits decodes."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    import transformers

    vocab = {t: i for i, t in enumerate(dict.fromkeys([*specials, *words]))}
    vocab.update({f"w{i}": i for i in range(len(vocab), vocab_size)})
    tk = Tokenizer(models.WordLevel(vocab, unk_token=specials[1]))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return getattr(transformers, cls_name)(tokenizer_object=tk, **kw)


def text_words() -> list[str]:
    from dar_lib.models import prompts as P

    text = " ".join([P.R1_SYSTEM, P.R1_TEMPLATE, P.R2_SYSTEM, P.R2_TEMPLATE, *DIALOGUE]).lower()
    return sorted(set(re.findall(r"\w+|[^\w\s]", text)))


# -- the three models -------------------------------------------------------------------------------
def build_sd3(shape: dict, device: str, dtype: torch.dtype):
    from diffusers import (
        AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    # CLIP's own tokenizer class with one token per byte: prompts are padded to 77 tokens anyway.
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({f"{c}</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    clip_tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    t5_tok = word_tokenizer(shape["t5"]["vocab_size"], text_words(), ["<pad>", "<unk>", "</s>"], pad_token="<pad>",
                            unk_token="<unk>", eos_token="</s>", model_max_length=512)

    def clip(cfg):
        return CLIPTextModelWithProjection(CLIPTextConfig(vocab_size=len(vocab), max_position_embeddings=77,
                                                          bos_token_id=clip_tok.bos_token_id,
                                                          eos_token_id=clip_tok.eos_token_id,
                                                          pad_token_id=clip_tok.pad_token_id, **cfg))

    v = shape["vae"]
    n_blocks = len(v["block_out_channels"])
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)  # keeps its tables on the CPU, as loaded
    with built_on(device):
        pipe = StableDiffusion3Pipeline(
            transformer=SD3Transformer2DModel(**shape["transformer"]),
            scheduler=scheduler,
            vae=AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16,
                              down_block_types=("DownEncoderBlock2D",) * n_blocks,
                              up_block_types=("UpDecoderBlock2D",) * n_blocks, shift_factor=0.0609,
                              scaling_factor=1.5305, use_quant_conv=False, use_post_quant_conv=False, **v),
            text_encoder=clip(shape["clip_l"]), tokenizer=clip_tok,
            text_encoder_2=clip(shape["clip_g"]), tokenizer_2=clip_tok,
            text_encoder_3=T5EncoderModel(T5Config(pad_token_id=0, eos_token_id=2, decoder_start_token_id=0,
                                                   **shape["t5"])),
            tokenizer_3=t5_tok)
    return pipe


def build_sd2(shape: dict, device: str, dtype: torch.dtype, kind: str):
    """SD 2.1 (``kind="sd21"``: v-prediction, the model card's DPMSolverMultistepScheduler) or SD-Turbo
    (``"turbo"``: epsilon prediction, Euler with trailing timesteps as its scheduler config), random weights."""
    from diffusers import (AutoencoderKL, DPMSolverMultistepScheduler, EulerDiscreteScheduler, StableDiffusionPipeline,
                           UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({f"{c}</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    betas = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 steps_offset=1)
    if kind == "sd21":
        scheduler = DPMSolverMultistepScheduler(**betas, prediction_type="v_prediction")
    else:
        scheduler = EulerDiscreteScheduler(**betas, prediction_type="epsilon", timestep_spacing="trailing")
    u, v = shape["unet"], shape["sd_vae"]
    n_up, n_vae = len(u["block_out_channels"]), len(v["block_out_channels"])
    with built_on(device):
        pipe = StableDiffusionPipeline(
            unet=UNet2DConditionModel(in_channels=4, out_channels=4,
                                      down_block_types=("CrossAttnDownBlock2D",) * (n_up - 1) + ("DownBlock2D",),
                                      up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (n_up - 1), **u),
            scheduler=scheduler,
            vae=AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, scaling_factor=0.18215,
                              down_block_types=("DownEncoderBlock2D",) * n_vae,
                              up_block_types=("UpDecoderBlock2D",) * n_vae, **v),
            text_encoder=CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), max_position_embeddings=77,
                                                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                                      pad_token_id=tok.pad_token_id, **shape["openclip"])),
            tokenizer=tok, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return pipe


def build_generator(name: str, shape: dict, device: str, dtype: torch.dtype):
    """``(pipeline, settings)`` of one of :data:`GENERATORS` (settings: size, steps, guidance)."""
    if name == "sd3":
        pipe = build_sd3(shape["sd3"], device, dtype)
        keep_fp32(pipe.text_encoder_3)
        return pipe, {"size": shape["size"], "steps": shape["steps"], "guidance": shape["guidance"]}
    return build_sd2(shape, device, dtype, name), dict(shape[name])


def build_blip(shape: dict, device: str, dtype: torch.dtype):
    from transformers import BlipConfig, BlipForImageTextRetrieval

    tok = word_tokenizer(shape["vocab_size"], text_words(), ["[PAD]", "[UNK]", "[CLS]", "[SEP]"],
                         pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                         model_max_length=512)
    cfg = BlipConfig(
        text_config=dict(vocab_size=shape["vocab_size"], hidden_size=shape["text_width"],
                         num_hidden_layers=shape["text_layers"], num_attention_heads=shape["heads"],
                         intermediate_size=shape["mlp"], max_position_embeddings=512, pad_token_id=0,
                         bos_token_id=2, sep_token_id=3),
        vision_config=dict(hidden_size=shape["vision_width"], num_hidden_layers=shape["vision_layers"],
                           num_attention_heads=shape["heads"], intermediate_size=shape["mlp"],
                           image_size=shape["image_size"], patch_size=16, layer_norm_eps=1e-6,
                           initializer_range=0.02),  # the default, 1e-10, underflows to zero features in fp16
        image_text_hidden_size=shape["proj"])
    with built_on(device):
        model = BlipForImageTextRetrieval(cfg)
    return model, tok


def build_llm(shape: dict, device: str, dtype: torch.dtype):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from dar_lib.rehearsal import CHAT_TEMPLATE

    specials = ["<|endoftext|>", "<unk>", "<|im_start|>", "<|im_end|>"]
    tok = word_tokenizer(shape["vocab_size"], text_words(), specials, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", unk_token="<unk>", model_max_length=32768)
    tok.chat_template = CHAT_TEMPLATE
    with built_on(device):
        model = Qwen2ForCausalLM(Qwen2Config(eos_token_id=3, pad_token_id=0, bos_token_id=None, **shape))
    return model.eval(), tok


def fixed_length_reformulator(model, tok, device: str, r1_tokens: int, r2_tokens: int):
    """The library's chat reformulator asking once per stage, each reply exactly N tokens long.

    A random model's reply never parses, so the recorded fallback gives the query and prompts; the
    library's corrective retry is skipped (a real model mostly answers usably the first time).
    """
    from dar_lib.models.reformulate import HFChatReformulator

    class OneReply(HFChatReformulator):
        def _ask(self, stage, messages, read, correction):
            n = r1_tokens if stage == "R1" else r2_tokens
            self.max_new_tokens = self.model.generation_config.min_new_tokens = n  # exactly n tokens
            reply = self.chat(messages)
            self.replies.append((stage, n, self.prompt_tokens(messages)))
            value, problem = read(reply)
            return (value, None, None) if problem is None else (None, reply, problem)

        def prompt_tokens(self, messages) -> int:
            return int(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                          return_dict=True)["input_ids"].shape[1])

    ref = OneReply(model, tok, id="qwen2.5-1.5b-shaped-random", device=device, fallback=True)
    ref.replies = []
    return ref


def keep_fp32(model) -> None:
    """Put back in float32 the modules a half-precision ``from_pretrained`` keeps there (T5's ``wo``, which
    overflows in fp16): a run loading the real weights does the same."""
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, module in model.named_modules():
        if any(name == k or name.endswith("." + k) for k in keep):
            module.float()


def quiet() -> None:
    """Only errors from the libraries: junk prompts trip CLIP's truncation notice and the reformulator's
    fallback warning on every call, which says nothing about speed."""
    import logging

    import diffusers
    import transformers

    transformers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    logging.getLogger("dar_lib").setLevel(logging.ERROR)


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="torch device (default: cuda)")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes of the same classes (seconds on a CPU)")
    ap.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None,
                    help="default: fp16 on CUDA, fp32 elsewhere (bf16 if random fp16 weights overflow into the "
                         "library's all-black image check)")
    ap.add_argument("--turns", type=int, default=3, help="timed turns after the warm-up (default: 3)")
    ap.add_argument("--round", type=int, default=3, help="dialogue round of the turn (default: 3)")
    ap.add_argument("--r1-tokens", type=int, default=48, help="tokens of each R1 reply (default: 48)")
    ap.add_argument("--r2-tokens", type=int, default=160, help="tokens of each R2 reply (default: 160, K=3 prompts)")
    ap.add_argument("--generators", default=",".join(GENERATORS),
                    help=f"comma-separated generators to time, one turn each (default: {','.join(GENERATORS)})")
    args = ap.parse_args(argv)
    names = [g.strip() for g in args.generators.split(",") if g.strip()]
    if not names or any(g not in GENERATORS for g in names):
        ap.error(f"--generators {args.generators!r}: choose from {', '.join(GENERATORS)}")
    quiet()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("CUDA is not available here; use --device cpu (with --tiny for a quick run)")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[
        args.dtype or ("fp16" if args.device.startswith("cuda") else "fp32")]
    shape = TINY if args.tiny else FULL
    if not 0 <= args.round < len(DIALOGUE):
        ap.error(f"--round must be in 0..{len(DIALOGUE) - 1}")

    import numpy as np

    from dar_lib.models.encoders import BlipEncoder
    from dar_lib.models.generators import DiffusersGenerator
    from dar_lib.pipeline import STAGES, DARPipeline

    torch.manual_seed(0)
    build_s = {}
    t0 = time.perf_counter()
    blip, blip_tok = build_blip(shape["blip"], args.device, dtype)
    encoder = BlipEncoder(blip, blip_tok, id="blip-base-shaped-random", device=args.device, dtype=dtype,
                          max_length=256)
    build_s["encoder"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    llm, llm_tok = build_llm(shape["llm"], args.device, dtype)
    llm = llm.to(args.device, dtype)
    reformulator = fixed_length_reformulator(llm, llm_tok, args.device, args.r1_tokens, args.r2_tokens)
    build_s["reformulator"] = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((N_CORPUS, CORPUS_DIM), dtype=np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    turns = DIALOGUE[: args.round + 1]
    cuda = str(args.device).startswith("cuda")

    results = {}
    for name in names:
        t0 = time.perf_counter()
        gen_pipe, settings = build_generator(name, shape, args.device, dtype)
        generator = DiffusersGenerator(gen_pipe, f"{name}-shaped-random", default_steps=settings["steps"],
                                       default_guidance=settings["guidance"], default_size=settings["size"],
                                       device=args.device, dtype=dtype, batch_size=shape["k_images"])
        sync(args.device)
        build_s[name] = time.perf_counter() - t0
        pipe = DARPipeline(reformulator, generator, encoder, k_images=shape["k_images"], schedule="paper")
        pipe.index(corpus_emb=corpus)
        runs = []
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        for i in range(1 + args.turns):  # the first is the warm-up
            result = pipe(turns, round_idx=args.round)
            sync(args.device)
            if i:
                runs.append(result.timings)
        stages = {s: {"median_s": round(statistics.median(r[s] for r in runs), 4),
                      "mean_s": round(statistics.fmean(r[s] for r in runs), 4)} for s in (*STAGES, "total")}
        results[name] = {
            "image_size": settings["size"], "steps": settings["steps"], "guidance": settings["guidance"],
            "scheduler": type(gen_pipe.scheduler).__name__, "stages": stages,
            "seconds_per_image": round(stages["generation"]["median_s"] / shape["k_images"], 4),
            "peak_gpu_memory_gib": round(torch.cuda.max_memory_allocated(args.device) / 2**30, 2) if cuda else None,
            "parameters_m": round(sum(p.numel() for c in gen_pipe.components.values()
                                      if isinstance(c, torch.nn.Module) for p in c.parameters()) / 1e6, 1),
        }
        del pipe, generator, gen_pipe
        if cuda:
            torch.cuda.empty_cache()
    r1 = [x for x in reformulator.replies if x[0] == "R1"][-1]
    r2 = [x for x in reformulator.replies if x[0] == "R2"][-1]
    device_name = torch.cuda.get_device_name(args.device) if cuda else platform.processor() or platform.machine()
    out = {
        "what": "one DAR turn per generator, paper-profile shapes, random weights"
                + (" (TINY shapes: not a measurement of the paper's models)" if args.tiny else ""),
        "device": str(args.device), "device_name": device_name, "dtype": str(dtype).replace("torch.", ""),
        "tiny": bool(args.tiny), "round_idx": args.round, "k_images": shape["k_images"],
        "n_corpus": N_CORPUS, "corpus_dim": CORPUS_DIM, "timed_turns": args.turns, "generators": results,
        "llm_tokens": {"r1_prompt": r1[2], "r1_reply": r1[1], "r2_prompt": r2[2], "r2_reply": r2[1]},
        "build_s": {k: round(v, 2) for k, v in build_s.items()},
        "parameters_m": {"encoder": round(sum(p.numel() for p in blip.parameters()) / 1e6, 1),
                         "llm": round(sum(p.numel() for p in llm.parameters()) / 1e6, 1)},
        "torch": torch.__version__, "python": platform.python_version(),
    }
    for name, r in results.items():
        for s in (*STAGES, "total"):
            print(f"{name:>6} {s:>18}: median {r['stages'][s]['median_s']:.3f} s")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
