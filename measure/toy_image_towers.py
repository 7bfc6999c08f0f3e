"""Diagnose the toy encoders (image-tower linear probe, text towers' trained positions) and compare image-tower candidates on one wall-clock budget.

Usage:
    python measure/toy_image_towers.py [--assets DIR] [--budget-s 180] [--n-train 20000] [--skip-candidates]

Part 1 (diagnosis): a linear probe (:func:`dar_lib.toymodels.quality.image_tower_probe`, 5,000
independent scenes to fit, 2,000 held out) on the frozen embeddings of the shipped image tower, and
each text tower's position-embedding norms against the longest tokenised round-10 dialogue.
Part 2: each image-tower candidate trains with the supervised fact heads
(:mod:`dar_lib.toymodels.image_tower`) on its own data seed for the same wall-clock budget, and is
probed the same way. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: name -> (patch size, layers, width, data seed): each candidate draws its own training scenes.
CANDIDATES = {
    "vit-p4-l4 (as v2, fact heads)": (4, 4, 128, 101),
    "vit-p2-l4 (2-px patches)": (2, 4, 128, 102),
    "vit-p4-l6 (deeper)": (4, 6, 128, 103),
}


def position_report(folder: Path, longest: int) -> dict:
    """Position-embedding norms of a text tower: trained positions vs the untouched tail."""
    import torch
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(str(folder), dtype=torch.float32)
    norms = model.text_model.embeddings.position_embedding.weight.norm(dim=1)
    init = 0.02 * model.config.text_config.hidden_size ** 0.5  # std-0.02 init: expected norm
    return {"norm 0-24": round(float(norms[:25].mean()), 3), "norm 25-%d" % (longest - 1): round(float(norms[25:longest].mean()), 3),
            "norm past longest": round(float(norms[longest:].mean()), 3) if longest < len(norms) else None,
            "init norm": round(init, 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--assets", type=Path, default=None, help="a `dar train-toy --out` folder (default: shipped)")
    p.add_argument("--budget-s", type=float, default=180.0, help="training seconds per candidate")
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--skip-candidates", action="store_true")
    args = p.parse_args(argv)

    import torch

    from dar_lib.benchmarks import toyworld as tw
    from dar_lib.toymodels import ASSETS, image_tower
    from dar_lib.toymodels.quality import image_tower_probe, independent_scenes
    from dar_lib.toymodels.textlength import longest_dialogue_tokens

    assets = args.assets or ASSETS
    report: dict = {"threads": torch.get_num_threads()}
    from transformers import CLIPModel

    from dar_lib.toymodels.clip_train import embed_images_array

    shipped = CLIPModel.from_pretrained(str(assets / "clip-full"), dtype=torch.float32)
    t0 = time.time()
    old = image_tower_probe(lambda imgs: embed_images_array(shipped, imgs))
    report["shipped image tower probe (%)"] = old
    print(f"shipped image tower, linear probe held out: {old} ({time.time() - t0:.0f} s)", flush=True)
    longest = longest_dialogue_tokens()
    report["longest round-10 dialogue (tokens)"] = longest
    for name in ("clip-full", "clip-zs", "clip-cocoft", "clip-chatir"):
        rep = position_report(assets / name, longest)
        report[f"{name} positions"] = rep
        print(f"{name}: position-embedding norms {rep} (longest dialogue {longest} tokens)", flush=True)
    if args.skip_candidates:
        print(json.dumps(report))
        return 0
    for name, (patch, layers, width, seed) in CANDIDATES.items():
        scenes = independent_scenes(args.n_train, seed=seed)
        images = tw.render_batch(scenes, size=32)
        labels = image_tower.scene_labels(scenes)
        tower = image_tower.new_image_tower(seed, width=width, layers=layers, patch_size=patch)
        t0 = time.time()
        # the schedule is sized for the steps the budget allows at this candidate's speed
        probe_steps = image_tower.train_image_tower(tower, images, labels, steps=5, batch_size=128, lr=1e-3,
                                                    seed=seed, warmup=1, progress=False)
        per_step = (time.time() - t0) / len(probe_steps)
        steps = max(20, int(args.budget_s / per_step))
        tower = image_tower.new_image_tower(seed, width=width, layers=layers, patch_size=patch)
        t0 = time.time()
        losses = image_tower.train_image_tower(tower, images, labels, steps=steps, batch_size=128, lr=1e-3,
                                               seed=seed, progress=False, max_seconds=args.budget_s)
        wall = time.time() - t0
        acc = image_tower_probe(lambda imgs: image_tower.embed_array(tower, imgs))
        report[name] = {"steps": len(losses), "wall_s": round(wall, 1), "s_per_step": round(wall / len(losses), 3),
                        "loss_last": round(sum(losses[-20:]) / len(losses[-20:]), 4), "probe (%)": acc,
                        "params": sum(p.numel() for p in tower.parameters())}
        print(f"{name}: {len(losses)} steps in {wall:.0f} s, probe held out {acc}", flush=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
