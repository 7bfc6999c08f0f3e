"""Ray backend: generate images and embed the corpus on a cluster, into the shared artefact store.

The two expensive stages of an evaluation run on a pool of Ray actors, each holding one model
replica (one GPU per actor when the cluster has GPUs, one CPU otherwise). Actors write into the
same content-addressed :class:`~dar_lib.store.ArtefactStore` as a local run, under keys made by the
same functions (:func:`dar_lib.cachekeys.image_key` for images, :func:`dar_lib.cachekeys.corpus_chunk_key`
for corpus chunks) from what the workers' own models report, so a Ray run, a sharded run and a
single-process run produce byte-identical artefacts and resume each other.

The evaluation runner does not import this module: the CLI makes a :class:`RayBackend` and hands it
to :func:`dar_lib.evaluate.evaluate`, which lets it fill the store before reading it.

Store writes are atomic (temporary file + rename), so an actor killed mid-batch leaves no partial
file; its batch is resubmitted (at most ``max_retries`` times) and the :class:`RunSummary` counts
the retries.

Ray is an optional extra (``pip install -e ".[ray]"``); it is imported only when a function here runs.

Examples:
    On a running cluster (``ray start --head``; ``tests/test_ray.py`` starts a local one):
    ``evaluate(EvalConfig(benchmark="toy-flan", encoder="toy:clip-zs"), backend=RayBackend(address="auto"))``,
    or the generation stage alone, ``generate(cfg, pairs, store, address="auto").as_dict()["generated"]``.
"""

from __future__ import annotations

import os
import time
from typing import Sequence

from dar_lib import corpus
from dar_lib.cachekeys import corpus_chunk_key, image_key
from dar_lib.distributed.cluster import CONNECT_TIMEOUT_S, actor_resources, connect
from dar_lib.distributed.pool import RunSummary, finish, remote_class, run_pool, start_pool
from dar_lib.distributed.workers import CRASH_ENV, CorpusWorker, GenerateWorker, worker_device
from dar_lib.models.generators import CachedGenerator


def generate(cfg, pairs: Sequence[tuple[str, int]], store, *, address: str | None = None, progress: bool = True,
             num_workers: int | None = None, max_retries: int = 3, raise_on_failure: bool = True) -> RunSummary:
    """Put the image of every (prompt, seed) pair into ``store``, generated on a Ray cluster.

    Pairs already in the store are skipped before dispatch; the rest go out in batches of
    ``cfg.batch_size`` to one generator replica per GPU (or per CPU without GPUs).

    Args:
        cfg: the :class:`~dar_lib.evaluate.EvalConfig` (generator, device, steps, guidance, size, batch_size).
        pairs: unique (prompt, seed) pairs, e.g. ``plan(cfg, bench, store).pairs``.
        store: the :class:`~dar_lib.store.ArtefactStore`; its root must be visible to every node.
        address: Ray address (``"auto"``, ``"ray://host:10001"``); ``None`` starts a local Ray.
        progress: show a progress bar for the whole run (images, images/s, time left).
        num_workers: actors (default: one per GPU of the cluster, else one per CPU).
        max_retries: resubmissions of a batch whose worker died (Ray never restarts an actor; a
            dead one is replaced by a fresh replica).
        raise_on_failure: raise ``RuntimeError`` (after every other batch finished) when a batch failed.

    Returns:
        The :class:`RunSummary`; ``generated == 0`` when everything was already cached.

    Raises:
        RuntimeError: Ray is not installed (says how to install it), or a batch failed.
    """

    t0 = time.perf_counter()
    pairs = [(p, int(s)) for p, s in pairs]
    summary = RunSummary("generate", total=len(pairs))
    if not pairs:
        return summary
    ray = connect(address, num_workers)
    n_actors, options = actor_resources(ray, num_workers)
    device = worker_device(cfg, options)
    crash = os.environ.get(CRASH_ENV)
    Actor = remote_class(ray, GenerateWorker, options)

    def make_actor():
        return Actor.remote(cfg.generator, device, str(store.root), crash)

    # The first replica tells the driver its generator's identity (fingerprint, resolved settings), so
    # the driver skips cached pairs without loading the model, keyed by the function the replicas use.
    probe = make_actor()
    try:
        ident = ray.get(probe.identity.remote(cfg.steps, cfg.guidance, cfg.size))
        todo = [pr for pr in pairs if not store.path(
            CachedGenerator.KIND, image_key(ident["generator"], pr[0], pr[1], *ident["settings"])).exists()]
    except BaseException:
        ray.kill(probe, no_restart=True)
        raise
    summary.fingerprint = ident["generator"]
    summary.cached = summary.done = len(pairs) - len(todo)
    batches = [todo[i:i + cfg.batch_size] for i in range(0, len(todo), cfg.batch_size)]
    if batches:
        run_pool(ray, start_pool(make_actor, min(n_actors, len(batches)), probe), make_actor, batches,
                  lambda actor, batch: actor.run.remote(batch, cfg.steps, cfg.guidance, cfg.size), summary,
                  unit_of=len, max_retries=max_retries, progress=progress, desc=f"imagine {cfg.generator} (ray)",
                  unit="img")
    else:
        ray.kill(probe, no_restart=True)
    return finish(summary, t0, raise_on_failure, f"Ray generation (finished images are in {store.root})")


def corpus_embeddings(cfg, bench, store, *, address: str | None = None, progress: bool = True,
                      num_workers: int | None = None, max_retries: int = 3, chunks_per_batch: int = 1,
                      raise_on_failure: bool = True) -> RunSummary:
    """Fill the store's corpus-embedding chunks of ``cfg.encoder`` on a Ray cluster.

    Same chunks and keys as :func:`dar_lib.corpus.corpus_embeddings`; each actor rebuilds the
    benchmark from ``cfg.benchmark_spec()``, and the driver checks that the first actor's corpus
    fingerprint and size match its own ``bench`` before dispatching.

    Args:
        cfg: the :class:`~dar_lib.evaluate.EvalConfig` (benchmark spec, encoder, device).
        bench: the driver's benchmark (its corpus size and fingerprint decide the chunks and keys).
        store: the shared :class:`~dar_lib.store.ArtefactStore`.
        address: Ray address; ``None`` starts a local Ray.
        progress: show a progress bar (corpus images, images/s, time left).
        num_workers: actors (default: one per GPU, else one per CPU).
        max_retries: resubmissions of a batch whose worker died (Ray never restarts an actor; a
            dead one is replaced by a fresh replica).
        chunks_per_batch: corpus chunks (of :data:`dar_lib.corpus.CHUNK` images) per task.
        raise_on_failure: raise ``RuntimeError`` when a batch failed.

    Returns:
        The :class:`RunSummary`, counting corpus images.

    Raises:
        RuntimeError: Ray is missing, the workers' benchmark differs from ``bench``, or a batch failed.
    """

    t0 = time.perf_counter()
    chunks = corpus.chunks(len(bench.corpus_paths))
    summary = RunSummary("corpus", total=len(bench.corpus_paths))
    ray = connect(address, num_workers)
    n_actors, options = actor_resources(ray, num_workers)
    crash = os.environ.get(CRASH_ENV)
    spec = cfg.benchmark_spec()
    Actor = remote_class(ray, CorpusWorker, options)

    def make_actor():
        return Actor.remote(spec, cfg.encoder, worker_device(cfg, options), str(store.root), crash)

    probe = make_actor()
    try:
        info = ray.get(probe.describe.remote())
        if info["corpus"] != bench.fingerprint or info["n_corpus"] != len(bench.corpus_paths):
            raise RuntimeError(
                f"Ray workers rebuilt benchmark {cfg.benchmark!r} with corpus {info['corpus']} "
                f"({info['n_corpus']} images), but the driver's has {bench.fingerprint} "
                f"({len(bench.corpus_paths)}); describe the benchmark through EvalConfig (image_root, toy_size, "
                f"world_seed, corpus_file) so every node builds the same one")
    except BaseException:
        ray.kill(probe, no_restart=True)
        raise
    todo = [c for c in chunks if not store.path(
        corpus.KIND, corpus_chunk_key(info["fingerprint"], bench.fingerprint, *c)).exists()]
    summary.fingerprint = info["fingerprint"]
    summary.cached = summary.done = summary.total - sum(stop - start for start, stop in todo)
    batches = [todo[i:i + chunks_per_batch] for i in range(0, len(todo), chunks_per_batch)]
    if batches:
        run_pool(ray, start_pool(make_actor, min(n_actors, len(batches)), probe), make_actor, batches,
                  lambda actor, batch: actor.run.remote(batch), summary,
                  unit_of=lambda batch: sum(stop - start for start, stop in batch), max_retries=max_retries,
                  progress=progress, desc=f"corpus {cfg.encoder} (ray)", unit="img")
    else:
        ray.kill(probe, no_restart=True)
    return finish(summary, t0, raise_on_failure, "Ray corpus encoding")


class RayBackend:
    """The Ray cluster as an evaluation backend (see :class:`dar_lib.evaluate.Backend`).

    Made before any work: it connects (:func:`connect`), so a missing Ray install is reported at
    once, not after the LLM requests of the first stage, and an address that does not answer as a
    Ray cluster within ``connect_timeout_s`` fails in one line.

    Args:
        address: Ray address (``"auto"``, ``"ray://host:10001"``); ``None`` starts a local Ray.
        num_workers: actors per stage (default: one per GPU, else one per CPU).
        max_retries: resubmissions of a batch whose worker died.
        connect_timeout_s: seconds the address may take to answer (default :data:`CONNECT_TIMEOUT_S`).

    Raises:
        MissingDependencyError: Ray is not installed.
        ConnectionError: ``address`` did not answer within ``connect_timeout_s`` (one line, naming it).

    Examples:
        ``evaluate(cfg, backend=RayBackend("auto"))`` runs an evaluation's generation and corpus stages on it.
    """

    def __init__(self, address: str | None = None, num_workers: int | None = None, max_retries: int = 3,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S):
        connect(address, num_workers, connect_timeout_s)
        self.address = address
        self.num_workers = num_workers
        self.max_retries = max_retries
        #: The :class:`RunSummary` of every stage run so far.
        self.summaries: list[RunSummary] = []

    def generate(self, cfg, pairs, store, *, progress: bool = True) -> RunSummary:
        """Put every (prompt, seed) image into ``store`` (see :func:`generate`)."""
        summary = generate(cfg, pairs, store, address=self.address, progress=progress,
                           num_workers=self.num_workers, max_retries=self.max_retries)
        self.summaries.append(summary)
        return summary

    def embed_corpus(self, cfg, bench, store, *, progress: bool = True) -> RunSummary:
        """Put every corpus chunk of ``cfg.encoder`` into ``store`` (see :func:`corpus_embeddings`)."""
        summary = corpus_embeddings(cfg, bench, store, address=self.address, progress=progress,
                                    num_workers=self.num_workers, max_retries=self.max_retries)
        self.summaries.append(summary)
        return summary
