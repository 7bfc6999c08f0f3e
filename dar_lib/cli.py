"""The ``dar`` command line: the top of the house.

``dar eval`` and ``dar merge-stores`` live here because they compose the evaluation runner with a
backend the user chooses (the Ray backend is injected into :func:`dar_lib.evaluate.evaluate`, never
imported by it). The other subcommands are defined next to the code they run (``fetch-data`` in
:mod:`dar_lib.benchmarks.coco`, ``train-toy`` in :mod:`dar_lib.toymodels.train`, ``book`` in
:mod:`dar_lib.book`).

A user's mistake (a bad option value, a malformed file, a model that needs the hub) is reported as
one line, ``dar: error: ...``, with exit status 2, as argparse does; ``-v`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dar_lib import evalsettings
from dar_lib import evaluate as E  # E.evaluate looked up at call time: tests stand one in
from dar_lib.argtypes import float_in
from dar_lib.atomic import atomic_writer, check_output
from dar_lib.errors import DataError, EmbeddingError, EndpointError, MissingDependencyError, ModelNotAvailableError
from dar_lib.models import local_content
from dar_lib.profiles import PROFILES
from dar_lib.protocols import PROTOCOLS, RELEASED_SETTINGS, truncation_table
from dar_lib.redact import RedactingFormatter, redact
from dar_lib.store import ArtefactStore

#: Modules that each define ``register(subparsers)``; imported lazily-cheaply (no torch at import).
COMMAND_MODULES = (
    "dar_lib.benchmarks.coco",          # dar fetch-data
    "dar_lib.toymodels.train",          # dar train-toy
    "dar_lib.book.cli",                 # dar book
    "dar_lib.live_server",              # dar explore
)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that describe the user's input, not a bug: reported in one line."""

    # OSError: a path the user gave that is a folder, a file, unwritable or missing
    return (ValueError, DataError, EmbeddingError, ModelNotAvailableError, MissingDependencyError, OSError, KeyError,
            EndpointError)  # an LLM endpoint that refused or failed: its URL, redacted, in one line


def build_parser() -> argparse.ArgumentParser:
    """The ``dar`` parser with every subcommand registered (importing no torch)."""
    import importlib

    parser = argparse.ArgumentParser(
        prog="dar",
        description="Diffusion Augmented Retrieval: data, toy models, evaluation and the book.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages and show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    _register_eval(sub)
    return parser


def _register_eval(subparsers) -> None:
    toy = PROFILES["toy"]
    p = subparsers.add_parser(
        "eval", help="evaluate methods on a benchmark (per-round target ranks + Hits@10)",
        description="Run DAR and its baselines on a benchmark and write a tidy table of per-dialogue, "
                    "per-round target ranks (CSV) with provenance; prints Hits@10 at rounds 0, 5, 10. "
                    "Defaults come from the toy profile of dar_lib.profiles.")
    p.add_argument("--benchmark", required=True, action="append",
                   help="benchmark (repeatable): toy-visdial, toy-chatgpt, toy-human, toy-flan, visdial, "
                        "chatgpt_blip2, human_blip2, flan_blip2, or your own ChatIR-format dialogue file "
                        "(*.json, with --corpus-file and --image-root)")
    p.add_argument("--encoder", required=True, action="append", help="encoder id (repeatable), e.g. toy:clip-zs")
    p.add_argument("--generator", default=toy["generator"], help="generator id (default: %(default)s)")
    p.add_argument("--reformulator", default=toy["reformulator"], help="reformulator id (default: %(default)s)")
    p.add_argument("--methods", default=",".join(E.METHODS), help="comma-separated methods (default: all four)")
    # Left unset, these three take the protocol's values (--protocol released fixes them).
    k = evalsettings.SETTINGS["k_images"]
    p.add_argument("-k", k.flag, type=k.cli_type, default=None,
                   help=f"images generated per turn (default: {toy['k_images']}; 1 under --protocol released)")
    p.add_argument("--schedule", default=None,
                   help="fusion weights: paper, paper-rounds-0-2, released or const:<alpha> "
                        f"(default: {toy['schedule']}; released under --protocol released)")
    p.add_argument("--image-reduce", default=None, choices=evalsettings.SETTINGS["image_reduce"].choices,
                   help="combine the K image embeddings by mean (default) or sum (eq. 4 as written)")
    p.add_argument("--protocol", default=evalsettings.default("protocol"), choices=PROTOCOLS,
                   help="default: R1's query per round; released: the DAR authors' eval.py as written (the "
                        "caption and every rewrite so far joined with ', ', K=1, fusion 0.8/0.2 then 0.5/0.5)")
    p.add_argument("--same-seed-every-round", dest="seed_per_round", action="store_false",
                   default=evalsettings.default("seed_per_round"),
                   help="an unchanged prompt gives the same image in every round (the default)")
    p.add_argument("--fresh-seed-every-round", dest="seed_per_round", action="store_true",
                   help="put the round into every image seed: a fresh draw each round, even for an unchanged prompt")
    evalsettings.add_cli_options(p)
    p.add_argument("--image-root", default=None, help="corpus image folder (ChatIR benchmarks, your own data)")
    p.add_argument("--corpus-file", default=None,
                   help="corpus list (JSON list of image paths under --image-root): your own, with a *.json "
                        "benchmark; or a subset of ChatIR's 50k list, with a ChatIR set (dialogues whose target "
                        "is not in it are dropped)")
    p.add_argument("--device", default=None, help="torch device (default: $DAR_DEVICE or cpu)")
    p.add_argument("--store", default=None, help="artefact store folder (default: $DAR_CACHE_DIR/store)")
    p.add_argument("--shard", default=None, help="i/n: only generate this machine's share of the images, then stop")
    p.add_argument("--backend", default="local", choices=("local", "ray"),
                   help="where generation and corpus encoding run: this process (default) or a Ray cluster "
                        "(needs the extra: pip install -e '.[ray]')")
    p.add_argument("--ray-address", default=None, help="Ray cluster address, e.g. auto (default: start a local Ray)")
    p.add_argument("--ray-timeout", type=float_in(1, 3600), default=60.0,
                   help="seconds a --ray-address may take to answer before dar eval gives up (default: %(default)s)")
    p.add_argument("--out", default=None, help="write the table of ranks to this CSV file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_eval)

    m = subparsers.add_parser("merge-stores", help="merge artefact stores of shard runs into one",
                              description="Copy every valid entry of the SOURCE stores missing from --into.")
    m.add_argument("sources", nargs="+", help="store folders written by shard runs")
    m.add_argument("--into", required=True, help="the store to merge into")
    m.set_defaults(func=_merge)


def fusion_settings(args: argparse.Namespace) -> tuple[int, str, str]:
    """``(k_images, schedule, image_reduce)`` of ``dar eval``: each as given, else the protocol's (released) or the
    toy profile's (default)."""

    fixed = RELEASED_SETTINGS if args.protocol == "released" else PROFILES["toy"]
    return (fixed["k_images"] if args.k_images is None else args.k_images,
            fixed["schedule"] if args.schedule is None else args.schedule,
            fixed["image_reduce"] if args.image_reduce is None else args.image_reduce)


def _eval(args: argparse.Namespace) -> int:
    import pandas as pd

    from dar_lib.stats import summary_table  # pandas: not loaded for `dar --help` and the argument checks

    shard = E.parse_shard(args.shard)
    if shard is not None and args.out:
        raise ValueError("--out with --shard: a shard run only fills the store and writes no table; merge the "
                         "stores (`dar merge-stores`), then run without --shard to get the CSV")
    if args.ray_address is not None and args.backend != "ray":
        raise ValueError(f"--ray-address {args.ray_address!r} needs --backend ray")
    if args.out:
        _check_out(args)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())

    k_images, schedule, image_reduce = fusion_settings(args)
    # Every config is built (and so checked) before any work starts.
    settings = {**evalsettings.config_kwargs(args), "k_images": k_images, "schedule": schedule,
                "image_reduce": image_reduce}
    cfgs = [E.EvalConfig(benchmark=bench, encoder=enc, generator=args.generator, reformulator=args.reformulator,
                         methods=methods, image_root=args.image_root, corpus_file=args.corpus_file,
                         device=args.device, **settings)
            for bench in args.benchmark for enc in args.encoder]
    for cfg in cfgs:
        E.check_shard(cfg, shard)
    backend = None
    if args.backend == "ray":
        from dar_lib.distributed import RayBackend

        backend = RayBackend(args.ray_address, connect_timeout_s=args.ray_timeout)
    store = ArtefactStore(args.store) if args.store else None
    if store is not None:
        print(f"dar eval: artefact store {Path(args.store).resolve()}", file=sys.stderr)
    tables = []
    for cfg in cfgs:
        table = E.evaluate(cfg, store, shard=shard, progress=not args.quiet, backend=backend)
        if shard is not None:
            print(f"shard {args.shard} done; merge the stores with `dar merge-stores`, then run without --shard")
            return 0
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    if args.out:
        with atomic_writer(args.out, "w", encoding="utf-8", newline="") as fh:  # a failed write keeps the old file
            table.to_csv(fh, index=False)
        print(f"wrote {len(table)} rows to {args.out}")
    print(summary_table(table).to_string(index=False))
    cuts = truncation_table(table)
    if len(cuts):
        print("text cut by the encoder's limit, % of queries per round (cut / newest text lost entirely):")
        cuts["cell"] = [f"{a:.0f}/{b:.0f}" for a, b in zip(cuts["pct_cut"], cuts["pct_newest_lost"])]
        keys = ["benchmark", "encoder", "protocol", "method"]
        print(cuts.pivot(index=keys, columns="round_idx", values="cell").reset_index().to_string(index=False))
    return 0


def _check_out(args: argparse.Namespace) -> None:
    """Refuse, before any work, an ``--out`` that is a folder, cannot be written, or is one of the run's inputs
    (a dialogue file, the corpus list, a local model file): the results would replace it."""

    models = [p for kind in ("encoder", "generator", "reformulator")
              for spec in (getattr(args, kind) if isinstance(getattr(args, kind), list) else [getattr(args, kind)])
              for p in local_content(kind, spec)]
    check_output(args.out, "--out", {"--benchmark": args.benchmark, "--corpus-file": [args.corpus_file],
                                     "a model id": models})


def _merge(args: argparse.Namespace) -> int:
    for src in args.sources:
        if not Path(src).is_dir():
            raise FileNotFoundError(f"{src} is not a folder")
        if ArtefactStore(src).is_empty():
            raise FileNotFoundError(f"{src} holds no store entries: give the --store folder of a `dar eval` run")
    check_output(args.into, "--into", {"a source store": args.sources}, folder=True)
    into = ArtefactStore(args.into)
    for src in args.sources:
        damaged: list = []
        copied = into.merge_from(src, damaged)
        print(f"{src}: copied {copied} entries into {Path(args.into).resolve()}"
              + (f"; {len(damaged)} damaged entries not copied (left in place; a run recomputes them):"
                 if damaged else ""))
        for path, reason in damaged:
            print(f"  {path}: {reason}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``dar`` with ``argv``; returns the exit status (2 for a user's mistake, with a one-line message)."""
    parser = build_parser()
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # every log line goes out redacted (an id may hold a key)
        if not isinstance(handler.formatter, RedactingFormatter):
            handler.setFormatter(RedactingFormatter(handler.formatter))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        if args.verbose:
            raise
        msg = (str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)).strip()
        print(f"dar: error: {redact(msg) or type(exc).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
