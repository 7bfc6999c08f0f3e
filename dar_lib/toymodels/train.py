"""``dar train-toy``: retrain every toy model from scratch with fixed seeds, resumably.

Stages run in order (:data:`STAGES`); each writes its model under ``<out>/<stage>`` with a
``training.json`` (steps, losses, wall time) when it finishes. A long stage saves its whole state
every few minutes to ``<out>/.checkpoints/<stage>.safetensors`` (tensors and plain JSON, never a
pickle: :class:`~dar_lib.toymodels.loop.Checkpointer`); ``dar train-toy --resume`` skips finished
stages and continues a stopped one from its checkpoint, taking the same batches it would have.

The recipe (encoders v3, world v2): the image tower is a small CNN trained alone with one
supervised head per scene fact (:mod:`dar_lib.toymodels.image_tower`), then locked; every text
tower is trained against its cached embeddings. ``clip-full`` learns from partial descriptions as
well as complete ones (the queries it will read at round 0 are partial); ``clip-full`` and ``clip-zs``
(whose positions the fine-tunes inherit) also read long texts that reach the longest round-10
dialogue (:func:`long_text`), so every position a raw dialogue reaches is trained;
contrastive batches count every true pair as a positive (look-alike scenes are not pushed apart);
the generator is an SD3-style joint-attention
transformer trained with clean-image prediction and an object-weighted loss (see
:mod:`dar_lib.toymodels.diffusion`).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dar_lib.argtypes import float_in, int_in
from dar_lib.atomic import atomic_path, check_output
from dar_lib.benchmarks import toyworld as tw
from dar_lib.benchmarks.toyworld.text import partial_caption
from dar_lib.cachekeys import code_version, training_run_key, weights_digest
from dar_lib.toymodels import ASSETS
from dar_lib.toymodels.textlength import longest_dialogue_tokens
from dar_lib.toymodels.tokenizer import world_tokenizer
from dar_lib.weightfiles import file_record, record_mismatch

log = logging.getLogger(__name__)

#: Training scenes come from their own seed, so no benchmark corpus scene is a training scene.
TRAIN_SEED = 7919
N_TRAIN = 20_000
#: Training order: a stage comes after its base (:data:`BASES`).
STAGES = ("probe", "image-tower", "clip-full", "clip-zs", "clip-cocoft", "clip-chatir", "sd")
#: The stage each one starts from, read from ``out/<base>`` (its weights are part of the run's id):
#: ``clip-full`` wraps the image tower, ``clip-zs`` copies ``clip-full``'s and re-learns the text tower.
BASES = {"clip-full": "image-tower", "clip-zs": "clip-full", "clip-cocoft": "clip-zs", "clip-chatir": "clip-zs"}
#: At most this many scenes for the image tower (one per example it draws, :data:`PLAN`): 250,000 are
#: 0.7 GB of pixels; a longer run (``--steps-scale`` > 1.6) draws some of them twice.
MAX_TOWER_SCENES = 250_000
#: Seconds between checkpoints of a running stage.
CHECKPOINT_EVERY_S = 180.0


@dataclass(frozen=True)
class Stage:
    """Steps, batch size, learning rate and seed of one training stage at ``--steps-scale 1``."""

    steps: int
    batch_size: int
    lr: float
    seed: int


#: The encoder stages (image tower and four text towers) are sized for at most 40 minutes on a quiet 2-core
#: CPU, the generator for at most 60 (stage times: each ``training.json``, the README). The generator was
#: undertrained at 4,000 steps: 930 more steps of the same recipe raised its shape agreement from 50% to 66%
#: (``measure/toy_generator_candidates.py --from-shipped``), while no sampler setting did.
PLAN: dict[str, Stage] = {
    "probe": Stage(steps=3000, batch_size=128, lr=3e-3, seed=11),
    "image-tower": Stage(steps=1200, batch_size=128, lr=3e-3, seed=10),  # on steps x batch_size scenes
    "clip-full": Stage(steps=1000, batch_size=256, lr=1e-3, seed=12),
    "clip-zs": Stage(steps=800, batch_size=256, lr=1e-3, seed=13),
    "clip-cocoft": Stage(steps=200, batch_size=256, lr=3e-4, seed=14),
    "clip-chatir": Stage(steps=300, batch_size=96, lr=3e-4, seed=15),
    "sd": Stage(steps=7500, batch_size=64, lr=1e-3, seed=16),
}


#: Positions of every toy text tower: the longest round-10 dialogue (208 tokens over 2,000 scenes) fits.
TEXT_POSITIONS = 256
#: Share of ``clip-full``'s and ``clip-zs``'s training texts that are long (:func:`long_text`).
LONG_TEXT_SHARE = 0.15


def long_text(fn, scene, rng, n_words: int, max_words: int = TEXT_POSITIONS - 2) -> str:
    """Several texts ``fn(scene, rng)`` about one scene joined with ``", "``, at least ``n_words`` words long.

    A raw-dialogue query is long (ChatIR joins a caption and ten question-answer turns), while
    captions and alt-text are short: a text tower trained on short texts alone keeps random position
    embeddings past them. A long text made of the tower's own kind of descriptions trains every
    position without teaching it any fact its texts do not state (``clip-zs`` stays background-blind).

    Args:
        fn: the stage's text sampler.
        scene: the scene all parts describe.
        rng: draws the parts.
        n_words: minimum length in the world's word tokens (:func:`~dar_lib.benchmarks.toyworld.tokenize`,
            which splits punctuation as the toy tokenizer does; ``[BOS]``/``[EOS]`` not counted).
        max_words: a part that would make the text longer is left out (the text tower reads
            ``TEXT_POSITIONS`` tokens and cuts the rest, while the batch's positives parse all of it);
            the first part is always kept.
    """

    parts, n = [], 0
    while n < n_words:
        part = fn(scene, rng)
        words = len(tw.tokenize(part)) + 1  # and a comma
        if parts and n + words > max_words:
            break
        parts.append(part)
        n += words
    return ", ".join(parts)


def with_long_texts(fn, longest: int, share: float = LONG_TEXT_SHARE):
    """``fn``, except that a ``share`` of its draws are :func:`long_text` of 10 to ``longest + 8`` words."""

    def draw(scene, rng):
        if rng.random() < share:
            return long_text(fn, scene, rng, rng.randint(10, longest + 8))
        return fn(scene, rng)

    return draw


def text_fns(longest: int | None = None):
    """Training text per stage: ``fn(scene, rng) -> str``.

    Args:
        longest: the longest round-10 dialogue in tokens, which ``clip-full``'s and ``clip-zs``'s long
            texts reach (default: :func:`~dar_lib.toymodels.textlength.longest_dialogue_tokens`).
    """

    reformulator = tw.ToyReformulator()
    longest = longest_dialogue_tokens() if longest is None else int(longest)

    def caption(scene, rng):
        # complete, partial (round-0-like) and COCO-style captions: reads every fact in any amount
        r = rng.random()
        return tw.full_caption(scene) if r < 0.35 else partial_caption(scene, rng) if r < 0.75 else \
            tw.corpus_caption(scene, rng)

    def sd(scene, rng):
        # what R2 will ask for: complete and partial captions, sometimes in one of R2's prompt forms
        r = rng.random()
        text = tw.full_caption(scene) if r < 0.5 else partial_caption(scene, rng) if r < 0.8 else \
            tw.corpus_caption(scene, rng)
        if r < 0.8 and rng.random() < 0.4:
            text = rng.choice(reformulator.prompts(text, 5))
        return text

    return {
        "clip-full": with_long_texts(caption, longest),
        "clip-zs": with_long_texts(tw.alt_text, longest),
        "clip-cocoft": lambda s, rng: tw.corpus_caption(s, rng),
        "clip-chatir": lambda s, rng: tw.dialogue_text(s, rng, style="visdial"),
        "sd": sd,
    }


def world_positives(scenes):
    """``positives(texts, idx)``: which scenes of a batch each text truly describes (the world's parser)."""
    import numpy as np

    def positives(texts, idx):
        table = tw.scene_table([scenes[int(i)] for i in idx])
        return np.stack([tw.parse_text(t).consistent(table) for t in texts])

    return positives


def run_id(name: str, plan: Stage, n_train: int, base: Path | None) -> str:
    """Names one training run of a stage: its recipe (plan and the training code), the training data
    (size, seed, the world's code) and, for a fine-tune, the weights it starts from. A checkpoint or a
    finished stage from another run is never resumed or skipped (a fine-tune of an older base is retrained)."""

    return training_run_key(stage=name, **asdict(plan), n_train=n_train, train_seed=TRAIN_SEED,
                            world_code=code_version("toyworld"), recipe_code=code_version("toy_training"),
                            base=weights_digest(base) if base is not None else None)


def _done(folder: Path, run: str) -> bool:
    """A stage is finished (``--resume`` skips it) when its ``training.json`` records the same run
    (:func:`run_id`) and its files are whole: the size and sha256 of each, recorded at save, match
    (:func:`~dar_lib.weightfiles.record_mismatch`); damaged, missing or replaced files are retrained."""

    try:
        rec = json.loads((folder / "training.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(rec, dict) or rec.get("run") != run:
        return False
    why = record_mismatch(folder, rec.get("files"))
    if why:
        log.warning("%s: finished earlier, but %s; training it again", folder.name, why)
    return why is None


def _save_stage(folder: Path, save, rec: dict) -> None:
    """Write a finished stage atomically: ``save(tmp)`` fills a temporary sibling folder, ``training.json``
    records ``rec`` with the size and sha256 of every file (:func:`_done` checks them), then the
    folder replaces ``folder`` (a stopped save leaves the previous one, or none)."""

    with atomic_path(folder, directory=True, replace=True) as tmp:
        save(tmp)
        rec["files"] = file_record(tmp)
        (tmp / "training.json").write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")


def train_all(
    out: Path,
    steps_scale: float = 1.0,
    only: tuple[str, ...] | None = None,
    n_train: int = N_TRAIN,
    batch_size: int | None = None,
    progress: bool = True,
    resume: bool = False,
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
    stop_at: dict[str, int] | None = None,
    overwrite_shipped: bool = False,
) -> dict[str, dict]:
    """Train the toy models in order and save each under ``out/<name>``.

    Args:
        out: output folder; the shipped models' folder (:data:`~dar_lib.toymodels.ASSETS`) only with
            ``overwrite_shipped=True``.
        steps_scale: multiplies every stage's steps (at least 1 step each); 1.0 is the shipped run.
        only: train just these stages; a stage with a base (:data:`BASES`) loads it from ``out``.
        n_train: number of training scenes.
        batch_size: overrides every stage's batch size (for quick runs).
        progress: show progress bars.
        resume: skip stages finished with the same recipe and continue a stopped one from its checkpoint.
        checkpoint_every_s: seconds between checkpoints of a running stage.
        stop_at: stage -> step at which to stop with a checkpoint (tests of ``resume``).
        overwrite_shipped: allow ``out`` to be the shipped models' folder (:func:`check_out`).

    Returns:
        Per stage: steps, first and last losses, wall seconds (a resumed stage counts every segment).

    Raises:
        ValueError: an unknown stage or a non-positive setting, ``out`` is the shipped models' folder and
            ``overwrite_shipped`` is not set, or a stage's base is neither in ``out`` nor trained
            before it (each checked before any work).
    """
    import numpy as np
    import torch

    from dar_lib.toymodels import clip_train, diffusion_train, image_tower
    from dar_lib.toymodels import probe as probe_mod
    from dar_lib.toymodels.cnn_tower import load_dual_encoder, new_dual_encoder
    from dar_lib.toymodels.loop import Checkpointer, seed_everything

    out = Path(out)
    check_out(out, overwrite_shipped)
    unknown = set(only or ()) - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stage(s) {sorted(unknown)}; choose from {list(STAGES)}")
    if steps_scale <= 0 or n_train < 2 or (batch_size is not None and batch_size < 2):
        raise ValueError("steps_scale must be > 0, n_train >= 2 and batch_size >= 2")
    check_output(out, "--out", folder=True)  # created and written once now, not when the first stage saves
    todo = [s for s in STAGES if not only or s in only]
    for name in todo:
        base = BASES.get(name)
        if base and base not in todo and not (out / base / "config.json").is_file():
            raise ValueError(f"stage {name} starts from {base}, which is not in {out}: "
                             f"train it too (--only {base} {name}) or point --out at a folder that holds it")
    t0 = time.time()
    scenes = tw.make_scenes(n_train, seed=TRAIN_SEED)
    images = tw.render_batch(scenes, size=32)
    log.info("rendered %d training scenes in %.1f s", len(scenes), time.time() - t0)
    texts = text_fns()
    positives = world_positives(scenes)
    report: dict[str, dict] = {}

    def steps_of(plan: Stage) -> int:
        return max(1, int(round(plan.steps * steps_scale)))

    for name in todo:
        plan = PLAN[name]
        bs = min(batch_size or plan.batch_size, n_train)
        scaled = Stage(steps_of(plan), bs, plan.lr, plan.seed)
        base = BASES.get(name)
        run = run_id(name, scaled, n_train, out / base if base else None)
        if resume and _done(out / name, run):
            log.info("%s: finished earlier with the same recipe and base; skipped", name)
            continue
        legacy = out / ".checkpoints" / f"{name}.pt"
        if resume and legacy.exists():
            log.warning("%s: a pickled checkpoint of an older version; never unpickled, so %s starts afresh",
                        legacy, name)
        ckpt = Checkpointer(out / ".checkpoints" / f"{name}.safetensors", checkpoint_every_s, run=run)
        previous = (ckpt.load() or {}).get("elapsed_s", 0.0) if resume else 0.0
        started = time.time()
        ckpt.extra = lambda: {"elapsed_s": previous + time.time() - started}
        kw = dict(progress=progress, checkpoint=ckpt, resume=resume, stop_at=(stop_at or {}).get(name))
        seed_everything(plan.seed)  # before the stage builds anything: two runs give the same weights

        def record(losses: list[float], **more) -> dict:
            k = max(1, min(50, len(losses) // 5))
            rec = {"stage": name, "run": run, **asdict(scaled), "n_train": n_train, "train_seed": TRAIN_SEED,
                   "world_code": code_version("toyworld"), "loss_first": float(np.mean(losses[:k])),
                   "loss_last": float(np.mean(losses[-k:])), "wall_s": round(previous + time.time() - started, 1),
                   "torch": torch.__version__, "threads": torch.get_num_threads(), **more}
            report[name] = rec
            log.info("%s: %s", name, rec)
            return rec

        if name == "probe":
            probe = probe_mod.AttributeProbe(tw.ATTRIBUTES)
            labels = [tw.attributes(s) for s in scenes]
            losses = probe_mod.train_probe(probe, images, labels, scaled.steps, bs, plan.lr, plan.seed, **kw)
            rec = record(losses)
            _save_stage(out / name, lambda d: probe.save(d, extra=rec), rec)
            ckpt.clear()
            continue
        if name == "image-tower":
            # as many scenes as the stage draws examples (random batches: most scenes are seen at most
            # once). Trained on the 20,000 shared scenes, each seen 8 times, the tower generalised worse:
            # a linear probe on unseen scenes read colour at 93%, against 98% after 153,600 fresh ones
            n_img = max(n_train, min(scaled.steps * bs, MAX_TOWER_SCENES))
            img_scenes = scenes if n_img == n_train else tw.make_scenes(n_img, seed=TRAIN_SEED)
            img_images = images if n_img == n_train else tw.render_batch(img_scenes, size=32)
            tower = image_tower.new_image_tower(seed=plan.seed)
            losses = image_tower.train_image_tower(tower, img_images, image_tower.scene_labels(img_scenes),
                                                   scaled.steps, bs, plan.lr, plan.seed, **kw)
            del img_images
            rec = record(losses, n_scenes=n_img)
            _save_stage(out / name, lambda d: image_tower.save_image_tower(tower, d), rec)
            ckpt.clear()
            continue
        fn = texts[name]
        text_fn = lambda i, rng, fn=fn: fn(scenes[i], rng)  # noqa: E731
        if name == "sd":
            masks = diffusion_train.object_masks(images, tw.render_batch([tw.Scene(s.background, (), s.bg_shade)
                                                                          for s in scenes]))
            pipe = diffusion_train.new_pipeline(world_tokenizer(max_length=40), seed=plan.seed)
            losses = diffusion_train.train_diffusion(pipe, images, text_fn, scaled.steps, bs, plan.lr, plan.seed,
                                                     masks=masks, **kw)
            rec = record(losses)
            _save_stage(out / name, lambda d: diffusion_train.save_pipeline(pipe, d), rec)
            ckpt.clear()
            continue
        from transformers import AutoTokenizer

        if name == "clip-full":
            tok = world_tokenizer(max_length=TEXT_POSITIONS)
            model = new_dual_encoder(image_tower.load_image_tower(out / base), len(tok), seed=plan.seed,
                                     max_length=TEXT_POSITIONS)
        else:
            model = load_dual_encoder(out / base)
            tok = AutoTokenizer.from_pretrained(str(out / base))
            if name == "clip-zs":
                clip_train.reinit_text_tower(model, seed=plan.seed)
        stats: dict = {}
        # locked-image tuning: every variant reads the same image tower's cached embeddings
        losses = clip_train.train_clip(model, tok, images, text_fn, scaled.steps, bs, plan.lr, plan.seed,
                                       train_vision=False, positives=positives, stats=stats, **kw)
        rec = record(losses, **stats)
        _save_stage(out / name, lambda d: clip_train.save_clip(model, tok, d), rec)
        ckpt.clear()
    report["total_wall_s"] = {"wall_s": round(time.time() - t0, 1)}
    return report


def check_out(out: Path, overwrite_shipped: bool = False) -> None:
    """Refuse to write into the shipped models' folder (every ``toy:`` id loads it) unless told so explicitly.

    Raises:
        ValueError: ``out`` is :data:`~dar_lib.toymodels.ASSETS` or inside it, without ``overwrite_shipped``.
    """
    shipped = ASSETS.resolve()
    target = Path(out).expanduser().resolve()
    if (target == shipped or shipped in target.parents) and not overwrite_shipped:
        raise ValueError(f"--out {out}: is the shipped toy models' folder ({shipped}), which every toy: id loads; "
                         f"write elsewhere, or pass --overwrite-shipped to replace the shipped models")


def default_out() -> Path:
    """A new folder for a run without ``--out``: ``./toy-models-<UTC date-time>`` (never the shipped models)."""
    import datetime

    return Path(f"toy-models-{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}")


def register(subparsers) -> None:
    """Add ``dar train-toy``."""

    p = subparsers.add_parser("train-toy", help="retrain the toy encoders, generator and probe from scratch",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: a new ./toy-models-<UTC date-time>; needed with --resume)")
    p.add_argument("--overwrite-shipped", action="store_true",
                   help=f"allow --out to be the shipped models' folder ({ASSETS}), replacing what every toy: id loads")
    p.add_argument("--steps-scale", type=float_in(0, 100, open_low=True), default=1.0,
                   help="multiply every stage's steps (0.01: a quick check)")
    p.add_argument("--only", nargs="+", choices=STAGES,
                   help="train only these stages; one with a base (clip-full: image-tower, clip-zs: clip-full, "
                        "clip-cocoft and clip-chatir: clip-zs) loads it from --out")
    p.add_argument("--n-train", type=int_in(2), default=N_TRAIN, help="number of training scenes")
    p.add_argument("--batch-size", type=int_in(2, 4096), default=None, help="override every stage's batch size")
    p.add_argument("--resume", action="store_true",
                   help="skip finished stages and continue a stopped one from its last checkpoint")
    p.add_argument("--checkpoint-every", type=float_in(1, 86400), default=CHECKPOINT_EVERY_S,
                   help="seconds between checkpoints (default: %(default)s)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import sys

    if args.out is None and args.resume:
        raise ValueError("--resume continues an earlier run: give its folder with --out")
    out = args.out if args.out is not None else default_out()
    check_out(out, args.overwrite_shipped)
    check_output(out, "--out", folder=True)
    print(f"dar train-toy: writing the toy models to {Path(out).resolve()} (load them as toy:<that folder>/<stage>)",
          file=sys.stderr)
    report = train_all(out, args.steps_scale, tuple(args.only) if args.only else None, args.n_train,
                       args.batch_size, resume=args.resume, checkpoint_every_s=args.checkpoint_every,
                       overwrite_shipped=args.overwrite_shipped)
    print(json.dumps(report, indent=1))
    return 0
