"""Quality of the shipped toy models: retrieval per encoder and style, encoder asymmetry, generator fidelity, speed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

#: Encoder variants in the order of the paper's baselines.
VARIANTS = ("clip-full", "clip-zs", "clip-cocoft", "clip-chatir")
ROUNDS = (0, 5, 10)
from dar_lib.metrics import cumulative_hits
from dar_lib.retrieve import target_ranks
from dar_lib.toymodels.quality import GEN_ATTRIBUTES, QUERY_TEMPLATES, asymmetry


def dialogue_hits(enc, corpus_emb: torch.Tensor, dialogues) -> np.ndarray:
    """Hits@10 per round with the raw dialogue text (``Dialogue.query_text``) as the query."""
    n_rounds = dialogues[0].n_rounds
    texts = [d.query_text(r) for d in dialogues for r in range(n_rounds)]
    query_emb = enc.encode_text(texts).view(len(dialogues), n_rounds, -1)
    targets = np.array([d.target_id for d in dialogues])
    ranks = np.stack([target_ranks(query_emb[:, r], corpus_emb, targets) for r in range(n_rounds)], axis=1)
    return cumulative_hits(ranks)


def model_id(name: str, assets: Path | None) -> str:
    """``toy:<name>`` for the shipped models, ``toy:<folder>`` for another trained set."""
    return f"toy:{name}" if assets is None else f"toy:{assets / name}"


def generator_quality(n_gen: int, seed: int, steps: int | None, guidance: float | None, assets: Path | None = None) -> dict:
    """Probe agreement of generated images with their prompts, and generation throughput."""
    from dar_lib.benchmarks import toyworld as tw
    from dar_lib.models import load_generator
    from dar_lib.toymodels import ASSETS
    from dar_lib.toymodels.probe import AttributeProbe, accuracy

    probe = AttributeProbe.load((assets or ASSETS) / "probe")
    scenes = tw.make_scenes(n_gen, seed=seed + 424242)  # fresh scenes, in no training set
    truth = [tw.attributes(s) for s in scenes]
    real = accuracy(probe, tw.render_batch(scenes), truth)
    gen = load_generator(model_id("sd", assets))
    gen.generate(["warm up"] * 8, seeds=list(range(8)), steps=steps, guidance=guidance)
    prompts = [tw.full_caption(s) for s in scenes]
    t0 = time.perf_counter()
    images = gen.generate(prompts, seeds=list(range(n_gen)), steps=steps, guidance=guidance)
    rate = n_gen / (time.perf_counter() - t0)
    fake = accuracy(probe, images, truth)
    steps_used, guidance_used, _ = gen.resolve(steps, guidance, None)
    return {
        "agreement": {a: round(fake[a], 1) for a in GEN_ATTRIBUTES},
        "probe_on_renders": {a: round(real[a], 1) for a in GEN_ATTRIBUTES},
        "images_per_s": round(rate, 1), "steps": steps_used, "guidance": guidance_used, "n": n_gen,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-corpus", type=int, default=10_000)
    parser.add_argument("--n-dialogues", type=int, default=500)
    parser.add_argument("--n-gen", type=int, default=512, help="generated images scored by the probe")
    parser.add_argument("--steps", type=int, default=None, help="generator steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the speed goals are for 2 cores)")
    parser.add_argument("--assets", type=Path, default=None, help="folder of trained toy models (default: shipped)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: runs in seconds")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n_corpus, args.n_dialogues, args.n_gen = 500, 20, 32
    torch.set_num_threads(args.threads)
    import transformers
    transformers.utils.logging.disable_progress_bar()

    from PIL import Image

    from dar_lib.benchmarks import toyworld as tw
    from dar_lib.models import load_encoder

    bench = tw.build(n_corpus=args.n_corpus, n_dialogues=args.n_dialogues, seed=args.seed)
    corpus = [Image.fromarray(a) for a in bench.corpus_images(32)]
    attrs = [tw.attributes(s) for s in bench.scenes]
    dialogues = {style: bench.dialogues(style) for style in tw.STYLES}
    figures: dict = {"n_corpus": args.n_corpus, "n_dialogues": args.n_dialogues, "seed": args.seed,
                     "ceiling": {}, "hits10": {}, "asymmetry": {}, "encode_images_per_s": {}}
    for style, dl in dialogues.items():
        c = tw.ceiling(dl, bench.scenes)
        figures["ceiling"][style] = {f"r{r}": round(float(c[r]), 1) for r in ROUNDS}

    print(f"Hits@10 with raw dialogue text (corpus {args.n_corpus}, {args.n_dialogues} dialogues per style)")
    print(f"{'encoder':<12} {'style':<8} " + " ".join(f"{'r' + str(r):>6}" for r in ROUNDS) + "   ceiling " + " ".join(f"{'r' + str(r):>6}" for r in ROUNDS))
    for variant in VARIANTS:
        enc = load_encoder(model_id(variant, args.assets))
        t0 = time.perf_counter()
        corpus_emb = enc.encode_images(corpus)
        figures["encode_images_per_s"][variant] = round(len(corpus) / (time.perf_counter() - t0), 1)
        figures["hits10"][variant] = {}
        for style, dl in dialogues.items():
            hits = dialogue_hits(enc, corpus_emb, dl)
            figures["hits10"][variant][style] = {f"r{r}": round(float(hits[r]), 1) for r in ROUNDS}
            ceil = figures["ceiling"][style]
            print(f"{variant:<12} {style:<8} " + " ".join(f"{hits[r]:6.1f}" for r in ROUNDS)
                  + "           " + " ".join(f"{ceil[f'r{r}']:6.1f}" for r in ROUNDS))
        figures["asymmetry"][variant] = asymmetry(enc, corpus_emb, attrs)

    print("\nAsymmetry: image side (% of 10 nearest images sharing the attribute) vs text side"
          " (% of top 10 for a one-attribute query having it)")
    print(f"{'encoder':<12} " + " ".join(f"{a:>20}" for a in QUERY_TEMPLATES))
    for variant in VARIANTS:
        row = figures["asymmetry"][variant]
        print(f"{variant:<12} " + " ".join(f"{row[a]['image_nn']:9.1f} / {row[a]['text_top10']:6.1f}   " for a in QUERY_TEMPLATES))

    gq = generator_quality(args.n_gen, args.seed, args.steps, args.guidance, args.assets)
    figures["generator"] = gq
    print(f"\nGenerator (toy:sd, {gq['steps']} steps, guidance {gq['guidance']}): probe agreement with the prompt, %"
          " (probe accuracy on real renders in brackets)")
    for a in GEN_ATTRIBUTES:
        print(f"  {a:<11} {gq['agreement'][a]:6.1f}  ({gq['probe_on_renders'][a]:.1f})")
    print(f"Throughput on {torch.get_num_threads()} threads: generation {gq['images_per_s']} images/s (batched), "
          f"image encoding {min(figures['encode_images_per_s'].values())}-{max(figures['encode_images_per_s'].values())} images/s")

    zs = figures["hits10"]["clip-zs"]
    chatir = figures["hits10"]["clip-chatir"]
    figures["goals"] = {
        "zs_r0_20_70pct_of_ceiling": all(
            0.2 <= zs[s]["r0"] / max(figures["ceiling"][s]["r0"], 1e-9) <= 0.7 for s in tw.STYLES),
        "zs_r10_above_r0": all(zs[s]["r10"] > zs[s]["r0"] for s in tw.STYLES),
        "chatir_best_on_visdial": all(
            chatir["visdial"]["r10"] >= figures["hits10"][v]["visdial"]["r10"] for v in ("clip-zs", "clip-cocoft")),
        "chatir_flan_below_visdial": chatir["flan"]["r10"] < chatir["visdial"]["r10"],
        "gen_colours_80": min(gq["agreement"]["background"], gq["agreement"]["color"]) >= 80,
        "gen_shape_position_60": min(gq["agreement"]["shape"], gq["agreement"]["position"]) >= 60,
        "gen_20_images_per_s": gq["images_per_s"] >= 20,
        "encode_500_images_per_s": min(figures["encode_images_per_s"].values()) >= 500,
    }
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
