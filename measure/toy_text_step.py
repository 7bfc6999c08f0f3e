"""Where a toy text-tower training step spends its time: text sampling, tokenisation, the world's parse
for the batch's positives, and the forward/backward pass, with and without length buckets.

Usage:
    python measure/toy_text_step.py [--steps 10] [--batch-size 256] [--stage clip-full]

A text tower trains against the locked image tower's cached embeddings, so a step is the text side
alone. With long texts in the mix (``dar_lib.toymodels.train.long_text``, about 15% of the batch),
one batch padded to its longest text costs several times the real tokens;
:func:`dar_lib.toymodels.clip_train.embed_text` pads each length bucket on its own. Prints one line
per part, then one JSON object (seconds per step, tokens per step).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--stage", default="clip-full", choices=("clip-full", "clip-zs", "clip-cocoft", "clip-chatir"))
    args = p.parse_args(argv)

    import numpy as np
    import torch
    import torch.nn.functional as F

    from dar_lib.benchmarks import toyworld as tw
    from dar_lib.toymodels import clip_train, image_tower, train
    from dar_lib.toymodels.cnn_tower import new_dual_encoder
    from dar_lib.toymodels.tokenizer import world_tokenizer

    scenes = tw.make_scenes(4000, seed=train.TRAIN_SEED)
    tok = world_tokenizer(max_length=train.TEXT_POSITIONS)
    model = new_dual_encoder(image_tower.new_image_tower(0), len(tok), seed=0, max_length=train.TEXT_POSITIONS)
    model.train()
    fn, positives = train.text_fns()[args.stage], train.world_positives(scenes)
    rng, gen = random.Random(0), np.random.default_rng(0)
    image_emb = F.normalize(torch.randn(len(scenes), model.config.projection_dim), dim=-1)
    parts = {"sample texts": 0.0, "tokenise": 0.0, "positives (world parse)": 0.0, "forward+backward, buckets": 0.0,
             "forward+backward, one padded batch": 0.0}
    tokens = {"real": 0, "padded, buckets": 0, "padded, one batch": 0}

    def loss_of(txt, idx, pos):
        return clip_train.soft_contrastive_loss(model.logit_scale.exp() * txt @ image_emb[idx].T, pos)

    for _ in range(args.steps):
        idx = gen.choice(len(scenes), size=args.batch_size, replace=False)
        t = time.perf_counter()
        texts = [fn(scenes[int(i)], rng) for i in idx]
        parts["sample texts"] += time.perf_counter() - t
        t = time.perf_counter()
        lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=train.TEXT_POSITIONS)["input_ids"]]
        parts["tokenise"] += time.perf_counter() - t
        t = time.perf_counter()
        pos = torch.from_numpy(positives(texts, idx))
        parts["positives (world parse)"] += time.perf_counter() - t
        t = time.perf_counter()
        loss_of(clip_train.embed_text(model, tok, texts), idx, pos).backward()
        parts["forward+backward, buckets"] += time.perf_counter() - t
        t = time.perf_counter()
        batch = tok(texts, padding=True, truncation=True, max_length=train.TEXT_POSITIONS, return_tensors="pt")
        pooled = model.text_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).pooler_output
        loss_of(F.normalize(model.text_projection(pooled), dim=-1), idx, pos).backward()
        parts["forward+backward, one padded batch"] += time.perf_counter() - t
        model.zero_grad(set_to_none=True)
        tokens["real"] += sum(lengths)
        buckets = clip_train.length_buckets(lengths)
        tokens["padded, buckets"] += sum(len(b) * max(lengths[i] for i in b) for b in buckets)
        tokens["padded, one batch"] += len(lengths) * max(lengths)
    report = {"stage": args.stage, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
              "s_per_step": {k: round(v / args.steps, 4) for k, v in parts.items()},
              "tokens_per_step": {k: v // args.steps for k, v in tokens.items()}}
    for k, v in report["s_per_step"].items():
        print(f"{k}: {v:.3f} s/step", flush=True)
    for k, v in report["tokens_per_step"].items():
        print(f"tokens per step, {k}: {v}", flush=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
