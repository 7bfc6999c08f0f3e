"""Per-turn latency of the toy DAR pipeline on CPU, and the wall time of the default toy evaluation.

1. Median wall time of one DAR turn (R1 + R2 + K = 3 generations + encoding + ranking against the
   10,000-image toy corpus), uncached, over ``--turns`` turns, with the per-stage medians.
2. Wall time of ``dar eval`` on all four toy styles with the zero-shot encoder, all four methods,
   ``--n-dialogues`` dialogues each, from an empty store (generation included) and again from the
   filled store.

Last line: a JSON object of the figures.

    python measure/turn_latency.py [--turns 30] [--n-dialogues 100]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=30)
    ap.add_argument("--n-dialogues", type=int, default=100)
    ap.add_argument("--encoder", default="toy:clip-zs")
    args = ap.parse_args()

    from dar_lib import corpus
    from dar_lib.benchmarks import TOY, load_benchmark
    from dar_lib.chapters import stage_timings
    from dar_lib.evaluate import EvalConfig, build_pipeline, evaluate
    from dar_lib.store import ArtefactStore

    bench = load_benchmark("toy-chatgpt", args.turns)
    pipe = build_pipeline(EvalConfig(benchmark="toy-chatgpt", encoder=args.encoder), None)  # no store: real work
    with tempfile.TemporaryDirectory() as tmp:
        pipe.index(corpus_emb=corpus.corpus_embeddings(bench, pipe.encoder, ArtefactStore(tmp), progress=False))
    stage_timings(pipe, bench.dialogues, n_turns=3)  # warm-up
    # the pipeline's own per-stage timings (the same calls the evaluator and the session make)
    timing = stage_timings(pipe, bench.dialogues, n_turns=args.turns).set_index("stage")["median_s"]
    print("per-turn medians (s):")
    print(timing.round(4).to_string())

    with tempfile.TemporaryDirectory() as tmp:
        store = ArtefactStore(tmp)
        walls = {}
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            for name in TOY:
                evaluate(EvalConfig(benchmark=name, encoder=args.encoder, n_dialogues=args.n_dialogues), store,
                         progress=False)
            walls[label] = time.perf_counter() - t0
            print(f"toy evaluation, 4 styles x {args.n_dialogues} dialogues, {label} store: {walls[label]:.1f} s")
        n_images = sum(1 for _ in store.keys("images"))
    figures = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cpu, torch threads {torch.get_num_threads()}",
        "turn_median_s": round(float(timing["total"]), 4),
        **{f"stage_{k.split()[0].lower()}_median_s": round(float(v), 4) for k, v in timing.items() if k != "total"},
        "turn_goal_s": 0.5,
        "turn_goal_met": bool(timing["total"] < 0.5),
        "eval_4_styles_cold_s": round(walls["cold"], 1),
        "eval_4_styles_warm_s": round(walls["warm"], 1),
        "eval_n_dialogues": args.n_dialogues,
        "generated_images": n_images,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
