"""Diagnose the toy encoders (image-tower linear probe, text towers' trained positions) and compare image-tower
candidates on one wall-clock budget.

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

#: name -> (builder keywords, data seed): each candidate draws its own training scenes. ``patch_size``
#: makes a ViT (:func:`~dar_lib.toymodels.image_tower.new_vit_tower`), else the CNN (v3, shipped).
CANDIDATES = {
    "cnn (v3, shipped recipe)": ({}, 100),
    "vit-p4-l4 (as v2, fact heads)": (dict(patch_size=4, layers=4, width=128), 101),
    "vit-p2-l4 (2-px patches)": (dict(patch_size=2, layers=4, width=128), 102),
    "vit-p4-l6 (deeper)": (dict(patch_size=4, layers=6, width=128), 103),
}


def new_candidate(kw: dict, seed: int):
    from dar_lib.toymodels import image_tower

    return image_tower.new_vit_tower(seed, **kw) if "patch_size" in kw else image_tower.new_image_tower(seed, **kw)


def position_report(folder: Path, longest: int) -> dict:
    """Position-embedding norms of a text tower: trained positions vs the untouched tail."""
    from dar_lib.toymodels.cnn_tower import load_dual_encoder

    model = load_dual_encoder(folder)
    text = getattr(model.text_model, "text_model", model.text_model)
    norms = text.embeddings.position_embedding.weight.norm(dim=1)
    init = 0.02 * model.config.text_config.hidden_size ** 0.5  # std-0.02 init: expected norm
    return {"norm 0-24": round(float(norms[:25].mean()), 3),
            "norm 25-%d" % (longest - 1): round(float(norms[25:longest].mean()), 3),
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
    from dar_lib.toymodels.clip_train import embed_images_array
    from dar_lib.toymodels.cnn_tower import load_dual_encoder

    shipped = load_dual_encoder(assets / "clip-full")
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
    for name, (kw, seed) in CANDIDATES.items():
        scenes = independent_scenes(args.n_train, seed=seed)
        images = tw.render_batch(scenes, size=32)
        labels = image_tower.scene_labels(scenes)
        tower = new_candidate(kw, seed)
        t0 = time.time()
        # the schedule is sized for the steps the budget allows at this candidate's speed
        probe_steps = image_tower.train_image_tower(tower, images, labels, steps=5, batch_size=128, lr=3e-3,
                                                    seed=seed, progress=False)
        per_step = (time.time() - t0) / len(probe_steps)
        steps = max(20, int(args.budget_s / per_step))
        tower = new_candidate(kw, seed)
        t0 = time.time()
        losses = image_tower.train_image_tower(tower, images, labels, steps=steps, batch_size=128, lr=3e-3,
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
