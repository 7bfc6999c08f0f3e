"""``dar train-toy``: retrain every toy model from scratch with fixed seeds."""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: Where the shipped weights live (``dar_lib/assets/toy/<name>``).
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "toy"
#: Training scenes come from their own seed, so no benchmark corpus scene is a training scene.
TRAIN_SEED = 7919
N_TRAIN = 20_000
#: Training order: each variant needs the one before it (zs copies full's image tower).
STAGES = ("probe", "clip-full", "clip-zs", "clip-cocoft", "clip-chatir", "sd")


@dataclass(frozen=True)
class Stage:
    """Steps, batch size, learning rate and seed of one training stage at ``--steps-scale 1``."""

    steps: int
    batch_size: int
    lr: float
    seed: int


#: Sized for about 45 minutes on 2 CPU cores in all (see the README for measured times).
PLAN: dict[str, Stage] = {
    "probe": Stage(steps=1600, batch_size=128, lr=3e-3, seed=11),
    "clip-full": Stage(steps=700, batch_size=128, lr=1e-3, seed=12),
    "clip-zs": Stage(steps=700, batch_size=256, lr=1e-3, seed=13),
    "clip-cocoft": Stage(steps=200, batch_size=256, lr=3e-4, seed=14),
    "clip-chatir": Stage(steps=200, batch_size=96, lr=3e-4, seed=15),
    "sd": Stage(steps=800, batch_size=64, lr=1e-3, seed=16),
}


def _text_fns():
    """Training text per stage: ``fn(scene, rng) -> str``."""
    from dar_lib.benchmarks import toyworld as tw

    def full(scene, rng):
        # complete captions and COCO-style ones: the full encoder reads every fact in any wording
        return tw.full_caption(scene) if rng.random() < 0.5 else tw.corpus_caption(scene, rng)

    def sd(scene, rng):
        # mostly detailed captions, some COCO-style ones so shorter prompts still condition well
        return tw.full_caption(scene) if rng.random() < 0.7 else tw.corpus_caption(scene, rng)

    return {
        "clip-full": full,
        "clip-zs": lambda s, rng: tw.alt_text(s, rng),
        "clip-cocoft": lambda s, rng: tw.corpus_caption(s, rng),
        "clip-chatir": lambda s, rng: tw.dialogue_text(s, rng, style="visdial"),
        "sd": sd,
    }


def train_all(
    out: Path = ASSETS,
    steps_scale: float = 1.0,
    only: tuple[str, ...] | None = None,
    n_train: int = N_TRAIN,
    batch_size: int | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Train the toy models in order and save each under ``out/<name>``.

    Args:
        out: output folder (default: the package's shipped assets).
        steps_scale: multiplies every stage's steps (at least 1 step each); 1.0 is the shipped run.
        only: train just these stages; the variants load ``clip-full`` / ``clip-zs`` from ``out``.
        n_train: number of training scenes.
        batch_size: overrides every stage's batch size (for quick runs).
        progress: show progress bars.

    Returns:
        Per stage: steps, first and last losses, wall seconds.
    """
    import numpy as np
    import torch

    from dar_lib.benchmarks import toyworld as tw
    from dar_lib.toymodels import clip_train, diffusion_train, probe as probe_mod
    from dar_lib.toymodels.tokenizer import world_tokenizer

    out = Path(out)
    todo = [s for s in STAGES if not only or s in only]
    unknown = set(only or ()) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; choose from {list(STAGES)}")
    t0 = time.time()
    scenes = tw.make_scenes(n_train, seed=TRAIN_SEED)
    images = tw.render_batch(scenes, size=32)
    log.info("rendered %d training scenes in %.1f s", len(scenes), time.time() - t0)
    texts = _text_fns()
    report: dict[str, dict] = {}

    def steps_of(plan: Stage) -> int:
        return max(1, int(round(plan.steps * steps_scale)))

    def record(name: str, plan: Stage, losses: list[float], started: float) -> dict:
        k = max(1, min(50, len(losses) // 5))
        rec = {
            "stage": name, "steps": len(losses), "batch_size": batch_size or plan.batch_size, "lr": plan.lr,
            "seed": plan.seed, "n_train": n_train, "train_seed": TRAIN_SEED,
            "loss_first": float(np.mean(losses[:k])), "loss_last": float(np.mean(losses[-k:])),
            "wall_s": round(time.time() - started, 1), "torch": torch.__version__,
        }
        report[name] = rec
        log.info("%s: %s", name, rec)
        return rec

    for name in todo:
        plan = PLAN[name]
        bs = batch_size or plan.batch_size
        started = time.time()
        if name == "probe":
            probe = probe_mod.AttributeProbe(tw.ATTRIBUTES)
            labels = [tw.attributes(s) for s in scenes]
            losses = probe_mod.train_probe(probe, images, labels, steps_of(plan), bs, plan.lr, plan.seed, progress=progress)
            probe.save(out / name, extra=record(name, plan, losses, started))
            continue
        fn = texts[name]
        # one private text stream per stage keeps each stage reproducible on its own
        text_fn = lambda i, rng, fn=fn: fn(scenes[i], rng)  # noqa: E731
        if name == "sd":
            tok = world_tokenizer(max_length=64)
            pipe = diffusion_train.new_pipeline(tok, seed=plan.seed)
            losses = diffusion_train.train_diffusion(pipe, images, text_fn, steps_of(plan), bs, plan.lr, plan.seed, progress=progress)
            diffusion_train.save_pipeline(pipe, out / name, extra=record(name, plan, losses, started))
            continue
        from transformers import CLIPModel

        if name == "clip-full":
            tok = world_tokenizer(max_length=256)
            model = clip_train.new_clip(tok, seed=plan.seed, max_length=256)
            train_vision = True
        else:
            base = "clip-full" if name == "clip-zs" else "clip-zs"
            from transformers import AutoTokenizer

            model = CLIPModel.from_pretrained(str(out / base), dtype=torch.float32)
            tok = AutoTokenizer.from_pretrained(str(out / base))
            if name == "clip-zs":
                clip_train.reinit_text_tower(model, seed=plan.seed)
            train_vision = False  # locked-image tuning: every variant sees the same visual facts
        losses = clip_train.train_clip(model, tok, images, text_fn, steps_of(plan), bs, plan.lr, plan.seed,
                                       train_vision=train_vision, progress=progress)
        clip_train.save_clip(model, tok, out / name, extra=record(name, plan, losses, started))
    report["total_wall_s"] = {"wall_s": round(time.time() - t0, 1)}
    return report


def register(subparsers) -> None:
    """Add ``dar train-toy``."""
    p = subparsers.add_parser("train-toy", help="retrain the toy encoders, generator and probe from scratch")
    p.add_argument("--out", type=Path, default=ASSETS, help="output folder (default: the shipped assets)")
    p.add_argument("--steps-scale", type=float, default=1.0, help="multiply every stage's steps (0.01: a quick check)")
    p.add_argument("--only", nargs="+", choices=STAGES, help="train only these stages")
    p.add_argument("--n-train", type=int, default=N_TRAIN, help="number of training scenes")
    p.add_argument("--batch-size", type=int, default=None, help="override every stage's batch size")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 16)))
    report = train_all(args.out, args.steps_scale, tuple(args.only) if args.only else None, args.n_train, args.batch_size)
    print(json.dumps(report, indent=1))
    return 0
