"""Time one DAR turn of the paper profile, stage by stage, on real-shaped models with random weights.

The models have the paper profile's shapes (:data:`dar_lib.testing.SHAPES` ``["paper"]``), built from configs
by :mod:`dar_lib.testing`'s builders directly on the device (no download, no hub), one turn per generator
(``--generators``): Stable Diffusion 3 medium (``sd3``:
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
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from dar_lib import testing  # noqa: E402

#: One ChatIR-style dialogue (caption and "question? answer" turns); a turn at round 3 uses four of them.
DIALOGUE = [
    "a man riding a brown horse on a dirt road next to a wooden fence",
    "is the photo in color? yes",
    "is it daytime? yes, it is sunny",
    "what is the man wearing? a cowboy hat and a blue shirt",
    "are there other people? no",
    "are there trees? yes, a few in the background",
]

#: What each generator computes per turn, at the paper's settings (``--tiny``: the same classes at
#: :data:`dar_lib.testing.SHAPES` ``["tiny"]`` and a few steps of 32 px).
RUNS = {
    "paper": {"sd3": {"size": 1024, "steps": 28, "guidance": 7.0}, "sd21": {"size": 768, "steps": 50, "guidance": 7.5},
              "turbo": {"size": 512, "steps": 1, "guidance": 0.0}},
    "tiny": {"sd3": {"size": 32, "steps": 2, "guidance": 7.0}, "sd21": {"size": 32, "steps": 2, "guidance": 7.5},
             "turbo": {"size": 32, "steps": 1, "guidance": 0.0}},
}
#: Images per turn (the paper's K).
K_IMAGES = 3
#: The generators a run can time (``--generators``).
GENERATORS = ("sd3", "sd21", "turbo")
#: Corpus the turn ranks against (the ChatIR search space's size), in the encoder's projection width.
N_CORPUS = 50_000


@contextlib.contextmanager
def built_on(device: str):
    """Create parameters directly on ``device`` (no CPU copy of a multi-GB model); the library's wrappers
    then cast them to ``dtype``. Built in float32 first: every init routine supports it (about 30 GB of
    GPU memory for the full shapes, for a moment)."""
    with torch.device(device):
        yield


def text_words() -> list[str]:
    """What the word-level tokenizers know by name: the R1/R2 templates and :data:`DIALOGUE`."""
    return testing.prompt_words(*DIALOGUE)


# -- the three models: dar_lib.testing's builders at the chosen shapes --------------------------------
def build_generator(name: str, shapes: dict, device: str):
    """The pipeline of one of :data:`GENERATORS`: SD3 (CLIP's tokenizer class; a word-level T5 tokenizer of
    T5's size), SD 2.1 with its model card's DPM-Solver scheduler, or SD-Turbo."""
    if name == "sd3":
        t5_tok = testing.t5_word_tokenizer(words=text_words(), vocab_size=shapes["sd3"]["t5"]["vocab_size"],
                                           lowercase=True)
        with built_on(device):
            pipe = testing.sd3_pipeline(shapes["sd3"], testing.clip_tokenizer(), t5_tok)
        keep_fp32(pipe.text_encoder_3)
        return pipe
    with built_on(device):
        return testing.sd2_pipeline(shapes["sd2"], testing.clip_tokenizer(),
                                    "sd21-dpm" if name == "sd21" else "turbo")


def build_blip(shape: dict, device: str):
    tok = testing.word_tokenizer(512, words=text_words(), vocab_size=shape["vocab_size"], lowercase=True,
                                 cls_token="[CLS]", sep_token="[SEP]")
    with built_on(device):
        model = testing.blip_model(shape, len(tok), bos_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id)
    return model, tok


def build_llm(shape: dict, device: str):
    tok = testing.word_tokenizer(32768, words=text_words(), vocab_size=shape["vocab_size"], lowercase=True,
                                 specials=testing.CHAT_SPECIALS[:1] + ("<unk>",) + testing.CHAT_SPECIALS[1:],
                                 wrap=False, eos_token="<|im_end|>", additional_special_tokens=["<|im_start|>"])
    tok.chat_template = testing.CHAT_TEMPLATE
    with built_on(device):
        model = testing.chat_lm(shape, tok)
    return model, tok


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
    size = "tiny" if args.tiny else "paper"
    shapes, run_settings = testing.SHAPES[size], RUNS[size]
    if not 0 <= args.round < len(DIALOGUE):
        ap.error(f"--round must be in 0..{len(DIALOGUE) - 1}")

    import numpy as np

    from dar_lib.models.encoders import BlipEncoder
    from dar_lib.models.generators import DiffusersGenerator
    from dar_lib.pipeline import STAGES, DARPipeline

    torch.manual_seed(0)
    build_s = {}
    t0 = time.perf_counter()
    blip, blip_tok = build_blip(shapes["blip"], args.device)
    encoder = BlipEncoder(blip, blip_tok, id="blip-base-shaped-random", device=args.device, dtype=dtype,
                          max_length=256)
    build_s["encoder"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    llm, llm_tok = build_llm(shapes["llm"], args.device)
    llm = llm.to(args.device, dtype)
    reformulator = fixed_length_reformulator(llm, llm_tok, args.device, args.r1_tokens, args.r2_tokens)
    build_s["reformulator"] = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    corpus_dim = shapes["blip"]["proj"]  # BLIP-base's 256-d projections
    corpus = rng.standard_normal((N_CORPUS, corpus_dim), dtype=np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    turns = DIALOGUE[: args.round + 1]
    cuda = str(args.device).startswith("cuda")

    results = {}
    for name in names:
        t0 = time.perf_counter()
        gen_pipe, settings = build_generator(name, shapes, args.device), run_settings[name]
        generator = DiffusersGenerator(gen_pipe, f"{name}-shaped-random", default_steps=settings["steps"],
                                       default_guidance=settings["guidance"], default_size=settings["size"],
                                       device=args.device, dtype=dtype, batch_size=K_IMAGES)
        sync(args.device)
        build_s[name] = time.perf_counter() - t0
        pipe = DARPipeline(reformulator, generator, encoder, k_images=K_IMAGES, schedule="paper")
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
            "seconds_per_image": round(stages["generation"]["median_s"] / K_IMAGES, 4),
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
        "tiny": bool(args.tiny), "round_idx": args.round, "k_images": K_IMAGES,
        "n_corpus": N_CORPUS, "corpus_dim": corpus_dim, "timed_turns": args.turns, "generators": results,
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
