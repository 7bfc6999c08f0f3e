"""The evaluation runner: per-dialogue, per-round target ranks for every method, resumable and shardable.

Methods (all ranked against the same corpus embeddings of one encoder):

- ``baseline``: the raw dialogue text as every released evaluation builds it (``query_text``);
- ``reformulated``: R1's query S_t alone, no images (the control the paper lacks);
- ``dar``: S_t fused with the K generated images (eq. 4, chosen schedule);
- ``images-only``: the K generated images alone.

Every expensive artefact (R1/R2 outputs, generated images, corpus and image embeddings) is
content-addressed in an :class:`~dar_lib.store.ArtefactStore`, so a killed run resumes where it
stopped and gives the same table as an uninterrupted one; generated images depend only on the
prompts and the generator, so every encoder and method reuses them.

Examples:
    >>> cfg = EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", n_dialogues=50)  # doctest: +SKIP
    >>> table = evaluate(cfg)                                                           # doctest: +SKIP
    >>> summarise(table)                                                                # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import logging
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

METHODS = ("baseline", "reformulated", "dar", "images-only")
IMAGE_METHODS = ("dar", "images-only")


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation: a benchmark, the three models and the DAR settings.

    Attributes:
        benchmark: a name from :mod:`dar_lib.benchmarks` (``toy-visdial`` ... or ``visdial`` ...).
        encoder, generator, reformulator: model ids for :mod:`dar_lib.models`.
        methods: which of :data:`METHODS` to rank.
        k_images: K, images generated per turn.
        schedule: fusion weights: ``paper``, ``released`` or ``const:<alpha>``.
        image_reduce: ``mean`` (default; with K = 1 this is the official code's fusion) or ``sum``
            (eq. 4 as written, which weighs the images K times beta).
        n_dialogues: evaluate the first N dialogues (default: all).
        seed: base seed of every generated image (and of the toy world).
        steps, guidance, size: generator settings (default: the generator's).
        toy_size: ``default`` or ``smoke`` (toy benchmarks).
        image_root: COCO image folder (ChatIR benchmarks).
        device: torch device (default ``DAR_DEVICE`` or cpu).
        batch_size: images per encoder or generator batch.
    """

    benchmark: str
    encoder: str
    generator: str = "toy:sd"
    reformulator: str = "toy:rules"
    methods: tuple[str, ...] = METHODS
    k_images: int = 3
    schedule: str = "paper"
    image_reduce: str = "mean"
    n_dialogues: int | None = None
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    size: int | None = None
    toy_size: str = "default"
    image_root: str | None = None
    device: str | None = None
    batch_size: int = 64

    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise ValueError(f"unknown method(s) {bad}; choose from {', '.join(METHODS)}")
        if self.k_images < 1 and any(m in IMAGE_METHODS for m in self.methods):
            raise ValueError("k_images must be >= 1 for the dar and images-only methods")
        from dar_lib.fuse import weights

        weights(0, self.schedule)  # validates the schedule name early
        if self.image_reduce not in ("sum", "mean"):
            raise ValueError("image_reduce must be 'sum' or 'mean'")


# -- model loading, shared across calls in one process ---------------------------------------
@functools.lru_cache(maxsize=16)
def _model(kind: str, spec: str, device: str | None):
    from dar_lib import models

    loader = {"encoder": models.load_encoder, "generator": models.load_generator,
              "reformulator": models.load_reformulator}[kind]
    return loader(spec, device=device)


def _progress(iterable, progress: bool, **kw):
    if not progress:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, **kw)


def _batches(items: Sequence, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def shard_of(prompt: str, seed: int, n: int) -> int:
    """The shard (0..n-1) that generates a (prompt, seed) pair: deterministic on every machine."""
    h = hashlib.sha256(f"{seed}\x00{prompt}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "little") % n


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """Parse ``"i/n"`` (0 <= i < n)."""
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n, e.g. 0/4; got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


# -- the stages ------------------------------------------------------------------------------
#: Corpus images per cached embedding chunk (every backend uses the same chunks, so the same keys).
CORPUS_CHUNK = 1024


def corpus_chunks(n_corpus: int, chunk: int = CORPUS_CHUNK) -> list[tuple[int, int]]:
    """The (start, stop) corpus id ranges embedded and cached as one unit."""
    return [(s, min(n_corpus, s + chunk)) for s in range(0, n_corpus, chunk)]


def corpus_chunk_key(store, encoder_fingerprint: str, corpus_fingerprint: str, start: int, stop: int) -> str:
    """The store key of one chunk of corpus embeddings."""
    return store.key("corpus_emb", encoder=encoder_fingerprint, corpus=corpus_fingerprint, start=start, stop=stop)


def corpus_embeddings(bench, encoder, store, *, progress: bool = True) -> np.ndarray:
    """Embed the corpus once per encoder, cached in chunks (a killed run keeps finished chunks)."""
    parts = []
    for start, stop in _progress(corpus_chunks(len(bench.corpus_paths)), progress, desc=f"corpus {encoder.id}",
                                 unit="chunk"):
        key = corpus_chunk_key(store, encoder.fingerprint(), bench.fingerprint, start, stop)
        parts.append(store.get_or_compute_array(
            "corpus_emb", key, lambda: encoder.encode_images(bench.corpus_images(range(start, stop))).numpy()))
    return np.concatenate(parts).astype(np.float32, copy=False)


def _encode_texts(encoder, texts: Sequence[str], batch_size: int, progress: bool) -> dict[str, np.ndarray]:
    unique = sorted(set(texts))
    out: dict[str, np.ndarray] = {}
    for batch in _progress(list(_batches(unique, batch_size)), progress and len(unique) > 2000,
                           desc="encode texts", unit="batch"):
        for t, e in zip(batch, encoder.encode_text(batch).numpy()):
            out[t] = e
    return out


@dataclass
class Plan:
    """What a run needs: per (dialogue, round) texts, queries, prompts and seeds."""

    texts: list[list[str]]
    queries: list[list[str]] | None = None
    prompts: list[list[list[str]]] | None = None
    seeds: list[list[list[int]]] | None = None
    pairs: list[tuple[str, int]] = field(default_factory=list)


def plan(cfg: EvalConfig, bench, store, *, progress: bool = True) -> Plan:
    """R1 and R2 for every dialogue and round (cached), and the unique (prompt, seed) pairs."""
    from dar_lib.pipeline import image_seed

    p = Plan(texts=[[d.query_text(r) for r in range(d.n_rounds)] for d in bench.dialogues])
    if all(m == "baseline" for m in cfg.methods):
        return p
    from dar_lib.models.reformulators import CachedReformulator

    reformulator = _model("reformulator", cfg.reformulator, cfg.device)
    if getattr(reformulator, "cacheable", True):
        reformulator = CachedReformulator(reformulator, store)
    p.queries, p.prompts, p.seeds = [], [], []
    need_images = any(m in IMAGE_METHODS for m in cfg.methods)
    for d in _progress(bench.dialogues, progress, desc=f"reformulate {cfg.benchmark}", unit="dialogue"):
        qs = [reformulator.rewrite(list(d.dialog[: r + 1]), ref=(d.image, r)) for r in range(d.n_rounds)]
        p.queries.append(qs)
        if need_images:
            ps = [reformulator.prompts(q, cfg.k_images) for q in qs]
            p.prompts.append(ps)
            p.seeds.append([[image_seed(cfg.seed, pr, k) for k, pr in enumerate(row)] for row in ps])
    if need_images:
        p.pairs = sorted({(pr, s) for ps, ss in zip(p.prompts, p.seeds)
                          for row_p, row_s in zip(ps, ss) for pr, s in zip(row_p, row_s)})
    return p


def generate(cfg: EvalConfig, pairs: Sequence[tuple[str, int]], store, *, progress: bool = True):
    """Generate every (prompt, seed) pair missing from the store, in batches; returns the cached generator."""
    from dar_lib.models.generators import CachedGenerator

    gen = CachedGenerator(_model("generator", cfg.generator, cfg.device), store)
    for batch in _progress(list(_batches(list(pairs), cfg.batch_size)), progress,
                           desc=f"imagine {cfg.generator}", unit="batch"):
        # Fixed batches, regenerated whole when any image is missing: a resumed run gets the very
        # same pixels as an uninterrupted one (kernels round differently for other batch sizes).
        gen.generate([p for p, _ in batch], [s for _, s in batch], steps=cfg.steps, guidance=cfg.guidance,
                     size=cfg.size, whole_batch=True)
    return gen


def image_embeddings(cfg: EvalConfig, pairs: Sequence[tuple[str, int]], gen, encoder, store, *,
                     progress: bool = True) -> dict[tuple[str, int], np.ndarray]:
    """Embed every generated image, cached per batch (fixed batches keep results bit-identical)."""
    out = {}
    for batch in _progress(list(_batches(list(pairs), cfg.batch_size)), progress,
                           desc=f"encode images {encoder.id}", unit="batch"):
        key = store.key("image_emb", encoder=encoder.fingerprint(), generator=gen.fingerprint(), pairs=batch,
                        steps=cfg.steps, guidance=cfg.guidance, size=cfg.size)

        def compute(batch=batch):
            imgs = gen.generate([p for p, _ in batch], [s for _, s in batch], steps=cfg.steps,
                                guidance=cfg.guidance, size=cfg.size)
            return encoder.encode_images(imgs).numpy()

        for pair, e in zip(batch, store.get_or_compute_array("image_emb", key, compute)):
            out[pair] = e
    return out


def provenance(cfg: EvalConfig, models: dict) -> dict:
    """Columns naming everything that produced a row."""
    import importlib.metadata as md

    def version(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    row = {
        "benchmark": cfg.benchmark, "encoder": cfg.encoder, "generator": cfg.generator,
        "reformulator": cfg.reformulator, "k_images": cfg.k_images, "schedule": cfg.schedule,
        "image_reduce": cfg.image_reduce, "seed": cfg.seed, "steps": cfg.steps, "guidance": cfg.guidance,
        "size": cfg.size, "toy_size": cfg.toy_size,
    }
    for kind, m in models.items():
        row[f"{kind}_fingerprint"] = m.fingerprint() if m is not None else None
    for pkg in ("dar_lib", "torch", "transformers", "diffusers"):
        row[f"version_{pkg}"] = version(pkg)
    row["python"] = platform.python_version()
    return row


def evaluate(cfg: EvalConfig, store=None, *, shard: tuple[int, int] | None = None, progress: bool = True,
             bench=None, backend: str = "local", ray_address: str | None = None):
    """Run one evaluation and return a tidy table of target ranks (one row per method, dialogue, round).

    Args:
        cfg: the evaluation.
        store: artefact store (default: ``<cache>/store``).
        shard: ``(i, n)``: only generate this machine's share of the images and return ``None``;
            merge the stores afterwards (``dar merge-stores``) and run without ``shard``.
        progress: show progress bars.
        bench: a preloaded :class:`~dar_lib.benchmarks.Benchmark` (default: load ``cfg.benchmark``).
        backend: ``"local"`` (this process) or ``"ray"`` (generation and corpus encoding on a Ray
            cluster, see :mod:`dar_lib.distributed`; results are identical, the store is shared).
        ray_address: Ray cluster address (``"auto"``, ``"ray://host:10001"``; default: start a local one).

    Returns:
        A pandas DataFrame with columns ``method, dialog_idx, round_idx, target_id, rank`` and the
        provenance columns of :func:`provenance`; ``None`` for a shard run.
    """
    import pandas as pd
    import torch

    from dar_lib import settings
    from dar_lib.benchmarks import load_benchmark
    from dar_lib.fuse import fuse
    from dar_lib.retrieve import target_ranks
    from dar_lib.store import ArtefactStore

    store = store or ArtefactStore(settings.cache_dir() / "store")
    bench = bench or load_benchmark(cfg.benchmark, cfg.n_dialogues, image_root=cfg.image_root,
                                    toy_size=cfg.toy_size, seed=cfg.seed)
    p = plan(cfg, bench, store, progress=progress)
    gen = None
    if p.pairs:
        pairs = p.pairs if shard is None else [x for x in p.pairs if shard_of(x[0], x[1], shard[1]) == shard[0]]
        if backend == "ray":
            from dar_lib import distributed

            distributed.generate(cfg, pairs, store, address=ray_address, progress=progress)
        gen = generate(cfg, pairs, store, progress=progress)  # with the ray backend: all cached already
        if shard is not None:
            log.info("shard %d/%d: %d of %d images are in the store %s", shard[0], shard[1], len(pairs), len(p.pairs), store.root)
            return None
    encoder = _model("encoder", cfg.encoder, cfg.device)
    if backend == "ray":
        from dar_lib import distributed

        distributed.corpus_embeddings(cfg, bench, store, address=ray_address, progress=progress)
    corpus = corpus_embeddings(bench, encoder, store, progress=progress)  # with ray: all cached already
    n_d, n_r = len(bench.dialogues), bench.dialogues[0].n_rounds
    targets = np.repeat([d.target_id for d in bench.dialogues], n_r)
    text_emb = _encode_texts(encoder, [t for row in p.texts for t in row] +
                             ([q for row in p.queries for q in row] if p.queries else []), cfg.batch_size, progress)
    img_emb = image_embeddings(cfg, p.pairs, gen, encoder, store, progress=progress) if p.pairs else {}
    rounds = np.tile(np.arange(n_r), n_d)

    def stack_images(d, r):
        return np.stack([img_emb[(pr, s)] for pr, s in zip(p.prompts[d][r], p.seeds[d][r])])

    frames = []
    base = provenance(cfg, {"encoder": encoder, "generator": gen and gen.generator,
                            "reformulator": _model("reformulator", cfg.reformulator, cfg.device) if p.queries else None})
    for method in cfg.methods:
        if method == "baseline":
            q = np.stack([text_emb[t] for row in p.texts for t in row])
        elif method == "reformulated":
            q = np.stack([text_emb[t] for row in p.queries for t in row])
        else:
            imgs = torch.from_numpy(np.stack([stack_images(d, r) for d in range(n_d) for r in range(n_r)]))
            if method == "images-only":
                q = torch.nn.functional.normalize(imgs.mean(dim=1), dim=-1).numpy()
            else:
                texts = torch.from_numpy(np.stack([text_emb[t] for row in p.queries for t in row]))
                q = np.empty(texts.shape, dtype=np.float32)
                for r in range(n_r):  # the fusion weights depend on the round
                    m = rounds == r
                    q[m] = fuse(texts[m], imgs[m], r, cfg.schedule, cfg.image_reduce).numpy()
        ranks = target_ranks(q, corpus, targets)
        frames.append(pd.DataFrame({"method": method, "dialog_idx": np.repeat(np.arange(n_d), n_r),
                                    "round_idx": rounds, "target_id": targets, "rank": ranks}))
    table = pd.concat(frames, ignore_index=True)
    for k, v in base.items():
        table[k] = v
    return table


def summarise(table, rounds: Sequence[int] = (0, 5, 10), k: int = 10):
    """Hits@k at the given rounds per (benchmark, encoder, method): a small wide table."""
    import pandas as pd

    from dar_lib.metrics import cumulative_hits

    rows = []
    for (bench, enc, method), g in table.groupby(["benchmark", "encoder", "method"], sort=False):
        ranks = g.pivot(index="dialog_idx", columns="round_idx", values="rank").to_numpy()
        hits = cumulative_hits(ranks, k)
        rows.append({"benchmark": bench, "encoder": enc, "method": method,
                     **{f"hits@{k} r{r}": round(float(hits[r]), 2) for r in rounds if r < len(hits)}})
    return pd.DataFrame(rows)


# -- command line ------------------------------------------------------------------------------
def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate methods on a benchmark (per-round target ranks + Hits@10)",
        description="Run DAR and its baselines on a benchmark and write a tidy table of per-dialogue, "
                    "per-round target ranks (CSV) with provenance; prints Hits@10 at rounds 0, 5, 10.")
    p.add_argument("--benchmark", required=True, action="append",
                   help="benchmark name (repeatable): toy-visdial, toy-chatgpt, toy-human, toy-flan, "
                        "visdial, chatgpt_blip2, human_blip2, flan_blip2")
    p.add_argument("--encoder", required=True, action="append", help="encoder id (repeatable), e.g. toy:clip-zs")
    p.add_argument("--generator", default="toy:sd", help="generator id (default: %(default)s)")
    p.add_argument("--reformulator", default="toy:rules", help="reformulator id (default: %(default)s)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods (default: all four)")
    p.add_argument("-k", "--k-images", type=int, default=3, help="images generated per turn (default: 3)")
    p.add_argument("--schedule", default="paper", help="fusion weights: paper, released or const:<alpha>")
    p.add_argument("--image-reduce", default="mean", choices=("mean", "sum"),
                   help="combine the K image embeddings by mean (default) or sum (eq. 4 as written)")
    p.add_argument("--n-dialogues", type=int, default=None, help="evaluate the first N dialogues (default: all)")
    p.add_argument("--toy-size", default="default", choices=("default", "smoke"), help="toy world size")
    p.add_argument("--seed", type=int, default=0, help="base seed of generated images and the toy world")
    p.add_argument("--steps", type=int, default=None, help="generator steps (default: the generator's)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the generator's)")
    p.add_argument("--size", type=int, default=None, help="generated image side in pixels (default: the generator's)")
    p.add_argument("--image-root", default=None, help="COCO image folder (ChatIR benchmarks)")
    p.add_argument("--device", default=None, help="torch device (default: $DAR_DEVICE or cpu)")
    p.add_argument("--batch-size", type=int, default=64, help="images per generator/encoder batch")
    p.add_argument("--store", default=None, help="artefact store folder (default: $DAR_CACHE_DIR/store)")
    p.add_argument("--shard", default=None, help="i/n: only generate this machine's share of the images, then stop")
    p.add_argument("--backend", default="local", choices=("local", "ray"),
                   help="where generation and corpus encoding run: this process (default) or a Ray cluster "
                        "(needs the extra: pip install -e '.[ray]')")
    p.add_argument("--ray-address", default=None, help="Ray cluster address, e.g. auto (default: start a local Ray)")
    p.add_argument("--out", default=None, help="write the table of ranks to this CSV file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_eval_cli)

    m = subparsers.add_parser("merge-stores", help="merge artefact stores of shard runs into one",
                              description="Copy every valid entry of the SOURCE stores missing from --into.")
    m.add_argument("sources", nargs="+", help="store folders written by shard runs")
    m.add_argument("--into", required=True, help="the store to merge into")
    m.set_defaults(func=_merge_cli)


def _eval_cli(args: argparse.Namespace) -> int:
    import pandas as pd

    from dar_lib.store import ArtefactStore

    store = ArtefactStore(args.store) if args.store else None
    shard = parse_shard(args.shard)
    tables = []
    for bench in args.benchmark:
        for enc in args.encoder:
            cfg = EvalConfig(benchmark=bench, encoder=enc, generator=args.generator, reformulator=args.reformulator,
                             methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
                             k_images=args.k_images, schedule=args.schedule, image_reduce=args.image_reduce,
                             n_dialogues=args.n_dialogues, seed=args.seed, steps=args.steps,
                             guidance=args.guidance, size=args.size, toy_size=args.toy_size,
                             image_root=args.image_root, device=args.device, batch_size=args.batch_size)
            table = evaluate(cfg, store, shard=shard, progress=not args.quiet, backend=args.backend,
                             ray_address=args.ray_address)
            if shard is not None:
                break
            tables.append(table)
    if shard is not None:
        print(f"shard {args.shard} done; merge the stores with `dar merge-stores`, then run without --shard")
        return 0
    table = pd.concat(tables, ignore_index=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.out, index=False)
        print(f"wrote {len(table)} rows to {args.out}")
    print(summarise(table).to_string(index=False))
    return 0


def _merge_cli(args: argparse.Namespace) -> int:
    from dar_lib.store import ArtefactStore

    into = ArtefactStore(args.into)
    for src in args.sources:
        if not Path(src).is_dir():
            print(f"error: {src} is not a folder", file=sys.stderr)
            return 2
        print(f"{src}: copied {into.merge_from(src)} entries")
    return 0
