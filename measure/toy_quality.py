"""Every goal the toy world and its models must meet (issue "Toy world v2"), each with its figure and pass/fail.

Usage:
    python measure/toy_quality.py [--assets DIR] [--n-dialogues 300] [--n-gen 256] [--toy-size default|smoke]
                                  [--with-dar] [--skip-generator]

Prints one line per goal (and INFO lines for figures reported beside them), then a last line with one
JSON object (every figure and verdict). The goals:

- world: fact-matching oracle 30-70% at round 0 and >= 95% at round 10 in the informative styles,
  rising after round 5; the R1 query changes between rounds 5 and 10 in >= 60% of their dialogues;
  no question names an unintroduced object;
- encoders (issue 21): a linear probe on the shared image tower's frozen embeddings of independent
  scenes (5,000 to fit, 2,000 held out) reads background, colour, shape, size, position and count
  each >= 95%; ``full`` round-0 Hits@10 >= 70% of the oracle; ``zs`` round-0 Hits@10 >= 50% of the
  oracle restricted to the facts alt-text states; ``zs``'s text side retrieves the background no
  better than chance (at most 5 points above; the blind reader's null and the image tower's 10-NN
  background share are printed as INFO lines); every
  encoder's raw-dialogue baseline rises >= 10 pp from round 0 to round 10 on the VisDial, ChatGPT
  and HUMAN twins; ``chatir`` the best of zs / cocoft / chatir on the VisDial twin (raw dialogue,
  round 10) and weaker on FLAN;
- generator, read by the independent probe on full captions at default settings: background >= 98,
  colour >= 90, shape >= 80, position >= 80, size >= 75, count >= 90 (percent); >= 20 images/s
  batched; the probe itself >= 98% per attribute on rendered scenes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

GENERATOR_GOALS = {"background": 98.0, "color": 90.0, "shape": 80.0, "position": 80.0, "size": 75.0, "count": 90.0}
ROLES = {"zero-shot": "clip-zs", "coco-ft": "clip-cocoft", "dialogue-ft": "clip-chatir", "full": "clip-full"}


def model_id(name: str, assets: Path | None) -> str:
    """``toy:<name>`` for the shipped models, ``toy:<folder>`` for another trained set."""
    return f"toy:{name}" if assets is None else f"toy:{assets / name}"


def goal(results: list, name: str, value: float, ok: bool, target: str) -> None:
    """Record and print one goal."""
    results.append({"goal": name, "value": round(float(value), 2), "target": target, "pass": bool(ok)})
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {value:.1f} ({target})", flush=True)


def info(name: str, value: float) -> None:
    """Print a figure that is reported beside the goals but is not one."""
    print(f"INFO  {name}: {value:.1f}", flush=True)


def world_goals(results: list, world, n_dialogues: int) -> dict:
    from dar_lib.benchmarks import toyworld as tw
    from dar_lib.benchmarks.toyworld.information import information_table

    dialogues = {s: world.dialogues(s)[:n_dialogues] for s in tw.STYLES}
    info = information_table(dialogues, world.scenes)
    for style in tw.INFORMATIVE_STYLES:
        row = info.loc[style]
        goal(results, f"oracle r0, {style}", row["oracle r0"], 30 <= row["oracle r0"] <= 70, "30-70")
        goal(results, f"oracle r10, {style}", row["oracle r10"], row["oracle r10"] >= 95, ">= 95")
        goal(results, f"oracle rises after r5, {style}", row["oracle r10"] - row["oracle r5"],
             row["oracle r10"] > row["oracle r5"], "r10 - r5 > 0")
        goal(results, f"R1 changes r5->r10 (%), {style}", row["R1 query changes r5->r10 (%)"],
             row["R1 query changes r5->r10 (%)"] >= 60, ">= 60")
    goal(results, "questions naming unintroduced objects", info["questions naming unintroduced objects"].sum(),
         info["questions naming unintroduced objects"].sum() == 0, "0")
    return {style: {k: round(float(v), 2) for k, v in row.items()} for style, row in info.iterrows()}


def encoder_goals(results: list, world, assets: Path | None, n_dialogues: int, store, toy_size: str = "default",
                  with_dar: bool = False) -> dict:
    from dar_lib.benchmarks import toyworld as tw
    from dar_lib.benchmarks.toyworld.text import ALT_TEXT_FACTS
    from dar_lib.evaluate import grid
    from dar_lib.metrics import cumulative_hits
    from dar_lib.models import load_model
    from dar_lib.stats import rank_matrix
    from dar_lib.toymodels.clip_train import embed_images_array
    from dar_lib.toymodels.quality import BLIND_NULL, asymmetry_table, image_tower_probe

    encoders = {role: model_id(name, assets) for role, name in ROLES.items()}
    from dar_lib.toymodels import ASSETS
    from dar_lib.toymodels.cnn_tower import load_dual_encoder

    tower = load_dual_encoder((assets or ASSETS) / "clip-full")
    probe = image_tower_probe(lambda images: embed_images_array(tower, images))
    for attr, acc in probe.items():
        goal(results, f"image tower linear probe (held out), {attr}", acc, acc >= 95, ">= 95")
    methods = ("baseline", "dar") if with_dar else ("baseline",)
    df = grid([f"toy-{s}" for s in tw.STYLES], encoders, methods=methods, store=store, progress=False,
              n_dialogues=n_dialogues, toy_size=toy_size)
    hits, table = {}, {}
    for (bench, role, method), g in df.groupby(["benchmark", "encoder", "method"], sort=False):
        h = cumulative_hits(rank_matrix(g)[0])
        table[f"{bench}/{role}/{method}"] = [round(float(h[i]), 1) for i in (0, 5, 10)]
        if method == "baseline":
            hits[(bench, role)] = h
    out = {k.removesuffix("/baseline"): v for k, v in table.items() if k.endswith("/baseline")}
    for style in tw.STYLES:
        ds = world.dialogues(style)[:n_dialogues]
        oracle = tw.fact_oracle(ds, world.scenes)[0]
        oracle_zs = tw.fact_oracle(ds, world.scenes, readable=ALT_TEXT_FACTS)[0]
        full0, zs0 = hits[(f"toy-{style}", "full")][0], hits[(f"toy-{style}", "zero-shot")][0]
        goal(results, f"full r0 / oracle r0 (%), {style}", 100 * full0 / oracle, full0 >= 0.7 * oracle, ">= 70")
        goal(results, f"zs r0 / zs-readable oracle r0 (%), {style}", 100 * zs0 / oracle_zs, zs0 >= 0.5 * oracle_zs,
             ">= 50")
        if style in tw.INFORMATIVE_STYLES:
            for role in ROLES:
                h = hits[(f"toy-{style}", role)]
                goal(results, f"{role} baseline r10 - r0 (pp), {style}", h[10] - h[0], h[10] - h[0] >= 10, ">= 10")
    r10 = {role: hits[("toy-visdial", role)][10] for role in ("zero-shot", "coco-ft", "dialogue-ft")}
    goal(results, "chatir r10 on visdial minus the best other (pp)",
         r10["dialogue-ft"] - max(r10["zero-shot"], r10["coco-ft"]), r10["dialogue-ft"] >= max(r10.values()), ">= 0")
    flan = hits[("toy-flan", "dialogue-ft")][10]
    goal(results, "chatir r10 on flan minus on visdial (pp)", flan - r10["dialogue-ft"], flan < r10["dialogue-ft"],
         "< 0")
    from dar_lib.benchmarks import load_benchmark

    bench = load_benchmark("toy-visdial", n_dialogues, toy_size=toy_size)
    asym = asymmetry_table({"zero-shot": load_model("encoder", encoders["zero-shot"])}, bench)
    bg = asym[asym.attribute == "background"].iloc[0]
    text_side, chance, image_side = (bg["text side: top-10 for a query naming it (%)"], bg["chance (%)"],
                                     bg["image side: 10-NN share it (%)"])
    # The premise is one-sided: the zero-shot text side cannot retrieve the background above chance.
    # Reading "a red background" as a red object gives 0% by construction (see
    # dar_lib.toymodels.quality.background_null_read_as_colour), so the two-sided "within 5 of chance"
    # this goal was until issue 29's last step failed a reader that cannot read backgrounds. A text
    # tower that read nothing at all would pass this one-sided goal; the zs round-0 goal rules that out.
    goal(results, "zs text side on background minus chance (pp)", text_side - chance, text_side - chance <= 5,
         "<= 5, no better than chance")
    blind_null = asym.attrs[BLIND_NULL]
    info("blind-reader null: background share among images with an object of that colour (%)", blind_null)
    # Issue 29 item 3 replaced issue 21's ">= 95% of 10-NN share the background" with the linear probe
    # (every fact >= 95%, above): reported, no longer a goal.
    info("image tower's 10-NN share the background (%)", image_side)
    return {"image tower probe (%)": probe, "hits r0/r5/r10 (raw dialogue)": out,
            "hits r0/r5/r10 (benchmark/encoder/method)": table, "asymmetry": asym.to_dict(orient="records"),
            "background null read as colour (%)": blind_null}


def generator_goals(results: list, assets: Path | None, n_gen: int, seed: int) -> dict:
    import torch

    from dar_lib.benchmarks import toyworld as tw
    from dar_lib.models import load_generator
    from dar_lib.toymodels import ASSETS
    from dar_lib.toymodels.probe import AttributeProbe, accuracy

    probe = AttributeProbe.load((assets or ASSETS) / "probe")
    real_scenes = tw.make_scenes(1000, seed=seed + 5)
    real = accuracy(probe, tw.render_batch(real_scenes), [tw.attributes(s) for s in real_scenes])
    for attr, acc in real.items():
        goal(results, f"probe on rendered scenes, {attr}", acc, acc >= 98, ">= 98")
    gen = load_generator(model_id("sd", assets))
    scenes = tw.make_scenes(n_gen, seed=seed + 424242)  # fresh scenes, in no training set
    gen.generate(["warm up"] * 8, seeds=list(range(8)))
    t0 = time.perf_counter()
    images = gen.generate([tw.full_caption(s) for s in scenes], seeds=list(range(n_gen)))
    rate = n_gen / (time.perf_counter() - t0)
    agree = accuracy(probe, images, [tw.attributes(s) for s in scenes])
    for attr, target in GENERATOR_GOALS.items():
        goal(results, f"generator agreement, {attr}", agree[attr], agree[attr] >= target, f">= {target:g}")
    goal(results, "generator images/s (batched)", rate, rate >= 20, ">= 20")
    steps, guidance, size = gen.resolve(None, None, None)
    return {"agreement": {k: round(v, 1) for k, v in agree.items()},
            "probe_on_renders": {k: round(v, 1) for k, v in real.items()},
            "images_per_s": round(rate, 1), "steps": steps, "guidance": guidance, "n": n_gen,
            "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    """Measure every goal; exit status 0 whatever passes (a measurement, not a test)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--assets", type=Path, default=None, help="a `dar train-toy --out` folder (default: shipped models)")
    p.add_argument("--n-dialogues", type=int, default=300, help="dialogues per style")
    p.add_argument("--n-gen", type=int, default=256, help="generated images for the generator goals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--toy-size", choices=("default", "smoke"), default="default", help="the toy world's size")
    p.add_argument("--with-dar", action="store_true", help="also rank with DAR (generates images; slower)")
    p.add_argument("--skip-generator", action="store_true", help="leave out the generator goals")
    args = p.parse_args(argv)

    from dar_lib import settings
    from dar_lib.benchmarks import TOY_SIZES
    from dar_lib.benchmarks import toyworld as tw
    from dar_lib.store import ArtefactStore

    world = tw.build(seed=0, **TOY_SIZES[args.toy_size])
    store = ArtefactStore(settings.cache_dir() / "store")
    results: list = []
    from dar_lib.cachekeys import code_version

    report = {"world_code": code_version("toyworld"),
              "world": world_goals(results, world, args.n_dialogues),
              "encoders": encoder_goals(results, world, args.assets, args.n_dialogues, store, args.toy_size,
                                        args.with_dar)}
    if not args.skip_generator:
        report["generator"] = generator_goals(results, args.assets, args.n_gen, args.seed)
    report["goals"] = results
    report["passed"] = sum(r["pass"] for r in results)
    report["failed"] = [r["goal"] for r in results if not r["pass"]]
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
