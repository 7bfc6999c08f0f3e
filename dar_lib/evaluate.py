"""The evaluation runner: per-dialogue, per-round target ranks for every method, resumable and shardable.

Methods (all ranked against the same corpus embeddings of one encoder):

- ``baseline``: the raw dialogue text as every released evaluation builds it (``query_text``);
- ``reformulated``: R1's query S_t alone, no images (the control the paper lacks);
- ``dar``: S_t fused with the K generated images (eq. 4, chosen schedule);
- ``images-only``: the K generated images alone.

The runner calls the stage methods of one :class:`~dar_lib.pipeline.DARPipeline`, batched over the
whole benchmark: R1 and R2 for every (dialogue, round), generation of every unique (prompt, seed),
encoding, fusion and ranking. Every expensive artefact (R1/R2 outputs, generated images, corpus and
image embeddings) is content-addressed in an :class:`~dar_lib.store.ArtefactStore`, so a killed run
resumes where it stopped and gives the same table as an uninterrupted one; generated images depend
only on the prompts, seeds and the generator, so every encoder and method reuses them.

Generation and corpus encoding can be handed to a *backend* that fills the store first (the Ray
backend of :mod:`dar_lib.distributed`, chosen by the CLI); the runner then finds everything cached.

Examples:
    >>> cfg = EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs", toy_size="smoke", n_dialogues=2,
    ...                  methods=("baseline", "reformulated"))
    >>> table = evaluate(cfg, progress=False)  # per-dialogue, per-round target ranks, both methods
    >>> len(table), sorted(table["method"].unique()), int(table["round_idx"].max())
    (44, ['baseline', 'reformulated'], 10)
    >>> from dar_lib.stats import summary_table
    >>> list(summary_table(table).columns)
    ['benchmark', 'encoder', 'method', 'hits@10 r0', 'hits@10 r5', 'hits@10 r10']
"""

from __future__ import annotations

import hashlib
import io
import logging
import platform
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

import numpy as np

from dar_lib import cachekeys, evalsettings, models, protocols, settings
from dar_lib.benchmarks import TOY, check_benchmark_name, load_benchmark
from dar_lib.cachekeys import image_emb_key, text_emb_key
from dar_lib.errors import DataError
from dar_lib.models import local_content
from dar_lib.models.truncation import has_text_limit, truncation_flags
from dar_lib.profiles import PROFILES
from dar_lib.redact import redact_all
from dar_lib.store import ArtefactStore

log = logging.getLogger(__name__)

METHODS = ("baseline", "reformulated", "dar", "images-only")
IMAGE_METHODS = ("dar", "images-only")
_TOY = PROFILES["toy"]


#: K of the Hits@K every table reports (the paper's and ChatIR's Hits@10).
HITS_K = 10


@dataclass(frozen=True)
@evalsettings.as_fields
class EvalConfig:
    """One evaluation: a benchmark, the three models and the DAR settings.

    Every numeric field is range-checked when the config is made, before any work starts; the
    message names the field (the CLI option of the same name with dashes). The settings after
    ``device`` are declared once, in :mod:`dar_lib.evalsettings` (their fields, defaults and checks).

    Attributes:
        benchmark: a name from :mod:`dar_lib.benchmarks` (``toy-visdial`` ... or ``visdial`` ...), or a
            ChatIR-format dialogue file (``*.json``, with ``corpus_file`` and ``image_root``).
        encoder, generator, reformulator: model ids for :mod:`dar_lib.models`.
        methods: which of :data:`METHODS` to rank.
        image_root: the corpus image folder (ChatIR benchmarks, your own data).
        corpus_file: your own corpus list (JSON list of image paths) for a ``*.json`` benchmark.
        device: torch device (default ``DAR_DEVICE`` or cpu).
{settings}
    Raises:
        ValueError: a field outside its range or an unknown name (the message names the field).
    """

    benchmark: str
    encoder: str
    generator: str = _TOY["generator"]
    reformulator: str = _TOY["reformulator"]
    methods: tuple[str, ...] = METHODS
    image_root: str | None = None
    corpus_file: str | None = None
    device: str | None = None

    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods = {list(self.methods)}: choose one or more of {', '.join(METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods = {list(self.methods)}: each method at most once")
        check_benchmark_name(self.benchmark)
        if self.benchmark in TOY and (self.image_root is not None or self.corpus_file is not None):
            raise ValueError(f"benchmark {self.benchmark!r} renders its own corpus: image_root and corpus_file "
                             "apply to the ChatIR sets and to your own *.json dialogue files only")
        if self.device is not None:
            settings.check_device(self.device)
        needs_images = any(m in IMAGE_METHODS for m in self.methods)
        for name in evalsettings.SETTINGS:
            # K = 0 is allowed when no method generates images (the text baselines alone).
            if not (name == "k_images" and self.k_images == 0 and not needs_images):
                evalsettings.check(name, getattr(self, name))

        protocols.check(self.protocol, k_images=self.k_images, schedule=self.schedule, image_reduce=self.image_reduce,
                        uses_images=needs_images)

    def benchmark_spec(self) -> dict:
        """The keyword arguments that rebuild this benchmark anywhere (:func:`~dar_lib.benchmarks.load_benchmark`)."""
        return {"name": self.benchmark, "n_dialogues": self.n_dialogues, "image_root": self.image_root,
                "toy_size": self.toy_size, "seed": self.world_seed, "corpus_file": self.corpus_file}


EvalConfig.__doc__ = EvalConfig.__doc__.replace("{settings}\n", evalsettings.attributes_doc() + "\n")


class Backend(Protocol):
    """Something that fills the store before the runner reads it (e.g. :class:`dar_lib.distributed.RayBackend`)."""

    def generate(self, cfg: EvalConfig, pairs: Sequence[tuple[str, int]], store, *, progress: bool = True):
        """Put the image of every (prompt, seed) pair into ``store`` before the runner reads it.

        Entries must sit under the keys the runner's own
        :class:`~dar_lib.models.generators.CachedGenerator` computes (same generator fingerprint,
        hence same device precision, and the resolved steps, guidance and size of ``cfg``); the
        runner generates whatever is still missing itself. Any return value is ignored.

        Args:
            cfg: the evaluation (``generator``, ``device``, ``steps``, ``guidance``, ``size``, ``batch_size``).
            pairs: the unique (prompt, seed) pairs to provide (a shard run passes only its share).
            store: the :class:`~dar_lib.store.ArtefactStore` the runner reads.
            progress: show progress.
        """
        ...

    def embed_corpus(self, cfg: EvalConfig, bench, store, *, progress: bool = True):
        """Put every corpus-embedding chunk of ``cfg.encoder`` for ``bench`` into ``store``.

        Entries must be those of :func:`dar_lib.corpus.corpus_embeddings` (same chunks, keys and
        float32 unit-norm rows); the runner computes any chunk still missing itself. Any return
        value is ignored.

        Args:
            cfg: the evaluation (``encoder``, ``device`` and the benchmark spec).
            bench: the runner's benchmark; its corpus size and fingerprint decide chunks and keys.
            store: the :class:`~dar_lib.store.ArtefactStore` the runner reads.
            progress: show progress.
        """
        ...


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


def check_shard(cfg: EvalConfig, shard: tuple[int, int] | None) -> None:
    """Refuse, before any work, a shard run that would compute nothing useful.

    A shard run only generates its share of the images (:func:`shard_of`) and writes no table, so
    with methods that need no generated images it would rank everything and discard it.

    Raises:
        ValueError: ``shard`` is given and none of ``cfg.methods`` is in :data:`IMAGE_METHODS`.
    """
    if shard is not None and not any(m in IMAGE_METHODS for m in cfg.methods):
        raise ValueError(f"--shard {shard[0]}/{shard[1]} with methods {','.join(cfg.methods)}: a shard run only "
                         f"generates its share of the images ({' and '.join(IMAGE_METHODS)} need them) and writes "
                         "no table, so it would compute nothing useful; run without --shard")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """Parse ``"i/n"`` (0 <= i < n).

    Raises:
        ValueError: anything else (the message shows the expected form).
    """
    if not text:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like i/n, e.g. 0/4; got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


# -- the stages, batched over a benchmark ------------------------------------------------------
def build_pipeline(cfg: EvalConfig, store, *, generator: bool = True):
    """The :class:`~dar_lib.pipeline.DARPipeline` of a config (models loaded once per process)."""
    from dar_lib.pipeline import DARPipeline

    gen = models.load_model("generator", cfg.generator, cfg.device) if generator else None
    llm = {"timeout": cfg.llm_timeout, "deadline": cfg.llm_deadline}
    return DARPipeline(models.load_model("reformulator", cfg.reformulator, cfg.device, **llm), gen,
                       models.load_model("encoder", cfg.encoder, cfg.device), k_images=cfg.k_images,
                       schedule=cfg.schedule, image_reduce=cfg.image_reduce, seed=cfg.gen_seed,
                       seed_per_round=cfg.seed_per_round, steps=cfg.steps, guidance=cfg.guidance, size=cfg.size,
                       store=store)


@dataclass
class Plan:
    """What a run needs: per (dialogue, round) raw texts and turn plans, and the unique (prompt, seed) pairs."""

    texts: list[list[str]]
    turns: list[list] | None = None  # TurnPlan per (dialogue, round)
    pairs: list[tuple[str, int]] = field(default_factory=list)


def plan(pipe, bench, methods: Sequence[str], *, progress: bool = True) -> Plan:
    """R1 and R2 for every dialogue and round (cached by the pipeline's store), and the unique (prompt, seed) pairs."""
    p = Plan(texts=[[d.query_text(r) for r in range(d.n_rounds)] for d in bench.dialogues])
    if all(m == "baseline" for m in methods):
        return p
    p.turns = [[pipe.reformulate(d.dialog[: r + 1], r, ref=(d.image, r)) for r in range(d.n_rounds)]
               for d in _progress(bench.dialogues, progress, desc=f"reformulate {bench.name}", unit="dialogue")]
    if any(m in IMAGE_METHODS for m in methods):
        p.pairs = sorted({(pr, s) for row in p.turns for t in row for pr, s in zip(t.prompts, t.seeds)})
    return p


def generate(pipe, pairs: Sequence[tuple[str, int]], batch_size: int, *, progress: bool = True) -> None:
    """Generate every (prompt, seed) pair missing from the pipeline's store, in fixed batches.

    Fixed batches, regenerated whole when any image is missing: a resumed run gets the very same
    pixels as an uninterrupted one (kernels round differently for other batch sizes).
    """
    for batch in _progress(list(_batches(list(pairs), batch_size)), progress,
                           desc=f"imagine {pipe.generator.id}", unit="batch"):
        pipe.imagine([p for p, _ in batch], [s for _, s in batch], whole_batch=True)


def image_embeddings(pipe, pairs: Sequence[tuple[str, int]], batch_size: int, store, *,
                     progress: bool = True) -> dict[tuple[str, int], np.ndarray]:
    """Embed every generated image, cached per fixed batch (bit-identical on resume)."""
    from dar_lib.models.base import image_fingerprint

    ident = pipe.generator.identity(pipe.steps, pipe.guidance, pipe.size)  # the store's CachedGenerator
    encoder = image_fingerprint(pipe.encoder)
    return _cached_batches(
        store, "image_emb", list(pairs), batch_size,
        key=lambda batch: image_emb_key(encoder, ident["generator"], batch, ident["settings"]),
        compute=lambda batch: pipe.encode_images(pipe.imagine([p for p, _ in batch], [s for _, s in batch])).numpy(),
        progress=progress, desc=f"encode images {pipe.encoder.id}")


def _cached_batches(store, kind: str, items: list, batch_size: int, key, compute, *, progress: bool,
                    desc: str) -> dict:
    """item -> row of ``compute(batch)``, over fixed batches of ``items``, each stored under ``(kind, key(batch))``
    and read back instead of computed when present."""
    out = {}
    for batch in _progress(list(_batches(items, batch_size)), progress, desc=desc, unit="batch"):
        for item, row in zip(batch, store.get_or_compute_array(kind, key(batch), lambda: compute(batch))):
            out[item] = row
    return out


def provenance(cfg: EvalConfig, loaded: Mapping[str, object]) -> dict:
    """Columns naming everything that produced a row (config, model fingerprints, versions)."""
    import importlib.metadata as md

    def version(pkg):
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    row = {
        "benchmark": cfg.benchmark, "encoder": cfg.encoder, "generator": cfg.generator,
        "reformulator": cfg.reformulator, **evalsettings.provenance_columns(cfg),
    }
    encoder = loaded.get("encoder")
    row["text_limit"] = getattr(encoder, "max_length", None)
    row["truncation"] = getattr(encoder, "truncation", None)
    for kind, m in loaded.items():
        row[f"{kind}_fingerprint"] = m.fingerprint() if m is not None else None
    for pkg in ("dar_lib", "torch", "transformers", "diffusers"):
        row[f"version_{pkg}"] = version(pkg)
    row["python"] = platform.python_version()

    return redact_all(row)  # an id may carry a credential (openai:<model>@https://user:KEY@host)


def load_bench(cfg: EvalConfig):
    """The config's :class:`~dar_lib.benchmarks.Benchmark`."""

    return load_benchmark(**cfg.benchmark_spec())


def evaluate(cfg: EvalConfig, store=None, *, shard: tuple[int, int] | None = None, progress: bool = True,
             bench=None, backend: Backend | None = None):
    """Run one evaluation and return a tidy table of target ranks (one row per method, dialogue, round).

    Args:
        cfg: the evaluation.
        store: artefact store (default: ``<cache>/store``).
        shard: ``(i, n)``: only generate this machine's share of the images and return ``None``;
            merge the stores afterwards (``dar merge-stores``) and run without ``shard``.
        progress: show progress bars.
        bench: a preloaded :class:`~dar_lib.benchmarks.Benchmark` (default: built from ``cfg``).
        backend: fills the store with images and corpus embeddings first (e.g. a Ray cluster);
            ``None`` computes everything in this process. Results are identical either way.

    Returns:
        A pandas DataFrame with columns ``method, dialog_idx, round_idx, target_id, rank`` (0-based
        expected rank, see :mod:`dar_lib.retrieve`), ``text_cut`` and ``newest_text_lost`` (the text
        this row ranked with was cut by the encoder's limit; the cut dropped its newest turn or
        rewrite entirely: :func:`dar_lib.models.truncation.truncation_flags`), the provenance columns
        of :func:`provenance` (with ``protocol``, ``text_limit``, ``truncation``) and
        ``truncated_queries`` (distinct texts the limit cut in this run); ``None`` for a shard run.

    Raises:
        EmbeddingError: the encoder produced non-finite or zero-norm embeddings.
        DataError: a benchmark file is malformed, or its corpus has at most ``HITS_K`` images.
    """
    import pandas as pd
    import torch

    from dar_lib import corpus

    check_shard(cfg, shard)
    store = store or ArtefactStore(settings.cache_dir() / "store")
    bench = bench or load_bench(cfg)
    if len(bench.corpus_paths) <= HITS_K:
        raise DataError(f"benchmark {bench.name!r}: a corpus of {len(bench.corpus_paths)} images puts every target "
                        f"in the top {HITS_K}, so Hits@{HITS_K} is 100 by construction; use more than {HITS_K} images")
    needs_images = any(m in IMAGE_METHODS for m in cfg.methods)
    pipe = build_pipeline(cfg, store, generator=needs_images)
    p = plan(pipe, bench, cfg.methods, progress=progress)
    if p.pairs:
        pairs = p.pairs if shard is None else [x for x in p.pairs if shard_of(x[0], x[1], shard[1]) == shard[0]]
        if backend is not None:
            backend.generate(cfg, pairs, store, progress=progress)
        generate(pipe, pairs, cfg.batch_size, progress=progress)  # with a backend: all cached already
        if shard is not None:
            log.info("shard %d/%d: %d of %d images are in the store %s", shard[0], shard[1], len(pairs),
                     len(p.pairs), store.root)
            return None
    if backend is not None:
        backend.embed_corpus(cfg, bench, store, progress=progress)
    pipe.index(corpus_emb=corpus.corpus_embeddings(bench, pipe.encoder, store, progress=progress))
    n_d, n_r = len(bench.dialogues), bench.dialogues[0].n_rounds
    targets = np.repeat([d.target_id for d in bench.dialogues], n_r)
    rounds = np.tile(np.arange(n_r), n_d)
    # The text parts of every (dialogue, round): the raw turns (baseline) and the protocol's R1 queries.
    base_parts = [d.dialog[: r + 1] for d in bench.dialogues for r in range(d.n_rounds)]
    query_parts = [protocols.query_parts(cfg.protocol, [t.query for t in row], r)
                   for row in (p.turns or []) for r in range(len(row))]
    queries = [protocols.SEP.join(x) for x in query_parts]
    text_emb = text_embeddings(pipe, [t for row in p.texts for t in row] + queries, cfg.batch_size, store,
                               progress=progress)
    img_emb = image_embeddings(pipe, p.pairs, cfg.batch_size, store, progress=progress) if p.pairs else {}

    frames = []
    flags: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # text_cut, newest_text_lost per kind of text
    base = provenance(cfg, {"encoder": pipe.encoder, "generator": pipe.generator if needs_images else None,
                            "reformulator": pipe.reformulator if p.turns else None})
    for method in cfg.methods:
        if method == "baseline":
            q = torch.from_numpy(np.stack([text_emb[t] for row in p.texts for t in row]))
        else:
            texts = torch.from_numpy(np.stack([text_emb[q] for q in queries]))
            if method == "reformulated":
                q = texts
            else:
                imgs = torch.from_numpy(np.stack([np.stack([img_emb[pair] for pair in zip(t.prompts, t.seeds)])
                                                  for row in p.turns for t in row]))
                if method == "images-only":
                    q = torch.nn.functional.normalize(imgs.mean(dim=1), dim=-1)
                else:
                    q = pipe.fuse(texts, imgs, rounds)
        ranks = pipe.target_ranks(q, targets)
        frame = pd.DataFrame({"method": method, "dialog_idx": np.repeat(np.arange(n_d), n_r),
                              "round_idx": rounds, "target_id": targets, "rank": ranks})
        kind = "images" if method == "images-only" else "raw" if method == "baseline" else "query"
        if kind not in flags:
            flags[kind] = (truncation_flags(pipe.encoder, base_parts if kind == "raw" else query_parts,
                                            sep=protocols.SEP)
                           if kind != "images" and has_text_limit(pipe.encoder) else
                           (np.zeros(len(frame), bool), np.zeros(len(frame), bool)))
        frame["text_cut"], frame["newest_text_lost"] = flags[kind]
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    for k, v in base.items():
        table[k] = v
    # Distinct query texts the encoder's limit cut in this run (the run's provenance).
    flat_texts = [t for row in p.texts for t in row]
    cut_texts = {(flat_texts if f["method"].iat[0] == "baseline" else queries)[i]
                 for f in frames if f["method"].iat[0] != "images-only" for i in np.flatnonzero(f["text_cut"])}
    table["truncated_queries"] = len(cut_texts)
    return table


def text_embeddings(pipe, texts: Sequence[str], batch_size: int, store, *,
                    progress: bool = True) -> dict[str, np.ndarray]:
    """Embed every distinct text, cached per fixed batch of the sorted distinct texts (bit-identical on reuse).

    A grid that changes only the fusion (the chapters' weight sweeps) or K embeds the same texts in the same
    batches, and reads them from the store instead of running the text tower again.

    Args:
        pipe: the pipeline whose encoder embeds the texts.
        texts: the texts (repeats allowed).
        batch_size: texts per batch.
        store: the :class:`~dar_lib.store.ArtefactStore`; an entry's key is
            :func:`dar_lib.cachekeys.text_emb_key` of the encoder's text fingerprint and the batch.

    Returns:
        text -> ``(dim,)`` float32 embedding.
    """
    from dar_lib.models.base import text_fingerprint

    unique = sorted(set(texts))
    encoder = text_fingerprint(pipe.encoder)
    return _cached_batches(store, "text_emb", unique, batch_size, key=lambda batch: text_emb_key(encoder, batch),
                           compute=lambda batch: pipe.encode_queries(batch).numpy(),
                           progress=progress and len(unique) > 2000, desc="encode texts")


# -- the results grid shared by the book's chapters ---------------------------------------------
def table_key(cfg: EvalConfig, bench) -> str:
    """The store key of a finished rank table: the config, the content of every local model it names
    (weights digests, :func:`dar_lib.models.local_content`: a retrain into the same folder recomputes),
    the benchmark's content (data version) and the library's code, so a fix anywhere in ``dar_lib``
    recomputes the table instead of reloading it."""

    content = {kind: local_content(kind, getattr(cfg, kind)) for kind in ("encoder", "generator", "reformulator")}
    return cachekeys.table_key(repr(cfg), content, bench.fingerprint)


def grid(
    benchmarks: Sequence[str],
    encoders: Mapping[str, str],
    *,
    methods: Sequence[str] = METHODS,
    store=None,
    progress: bool = True,
    backend: Backend | None = None,
    **config,
):
    """Evaluate every benchmark with every encoder; one tidy table of ranks, each part cached.

    Args:
        benchmarks: benchmark names.
        encoders: role (e.g. ``"zero-shot"``) -> encoder id. The table's ``encoder`` column holds the
            role (Figure 3 colours by role) and ``encoder_id`` the id.
        methods: methods to rank.
        store: artefact store (default ``<cache>/store``); finished tables are cached there too.
        progress: progress bars.
        backend: passed to :func:`evaluate`.
        **config: further :class:`EvalConfig` fields (``n_dialogues``, ``k_images``, ...).

    Returns:
        Ranks with provenance, one row per (benchmark, encoder, method, dialogue, round).
    """
    import pandas as pd

    store = store or ArtefactStore(settings.cache_dir() / "store")
    frames = []
    for name in benchmarks:
        for role, enc in encoders.items():
            cfg = EvalConfig(benchmark=name, encoder=enc, methods=tuple(methods), **config)
            bench = load_bench(cfg)
            key = table_key(cfg, bench)
            cached = store.get_bytes("table", key)
            if cached is not None:
                t = pd.read_csv(io.BytesIO(cached))
            else:
                t = evaluate(cfg, store, progress=progress, bench=bench, backend=backend)
                buf = io.StringIO()
                t.to_csv(buf, index=False)
                store.put_bytes("table", key, buf.getvalue().encode())
                t = pd.read_csv(io.StringIO(buf.getvalue()))  # same dtypes as a cached read
            t = t.rename(columns={"encoder": "encoder_id"})
            t.insert(1, "encoder", role)
            frames.append(t)
    return pd.concat(frames, ignore_index=True)
