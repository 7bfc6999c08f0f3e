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

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Sequence

from dar_lib.cachekeys import corpus_chunk_key, image_key
from dar_lib.errors import MissingDependencyError
from dar_lib.models.base import image_fingerprint

log = logging.getLogger(__name__)

INSTALL_HINT = 'the Ray backend needs the optional extra: pip install -e ".[ray]" (or pip install "ray[default]>=2.30")'
#: Test hook: a file path; the first actor to create it exits mid-batch (simulates a killed worker).
CRASH_ENV = "DAR_RAY_CRASH_ONCE"
#: Batches queued on each actor at once, so an actor never waits for the driver between batches.
IN_FLIGHT_PER_ACTOR = 2


def _ray():
    """Import ray, or fail with a message that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(INSTALL_HINT) from exc
    return ray


@dataclass
class RunSummary:
    """What one distributed stage did.

    Attributes:
        stage: ``"generate"`` or ``"corpus"``.
        total: images the stage had to provide (generated images or corpus images).
        done: items in the store at the end.
        generated: items computed by the workers in this run.
        cached: items found in the store (before dispatch or by a worker).
        retries: batches resubmitted after their worker, node or result object was lost.
        failures: batches given up on: lost more than ``max_retries`` times, or failed with an
            error raised in the worker's own code (never retried).
        seconds: wall time of the stage.
        workers: actors used.
        errors: the first few error messages.
        fingerprint: the workers' model fingerprint (the driver's must match to find their entries).
    """

    stage: str
    total: int
    done: int = 0
    generated: int = 0
    cached: int = 0
    retries: int = 0
    failures: int = 0
    seconds: float = 0.0
    workers: int = 0
    errors: list[str] = field(default_factory=list)
    fingerprint: str | None = None

    @property
    def per_second(self) -> float:
        """Items computed per second of wall time (0 when nothing was computed)."""
        return self.generated / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        """Every field plus ``per_second`` (rounded to 3 decimals), as a JSON-ready dict."""
        return {**dataclasses.asdict(self), "per_second": round(self.per_second, 3)}

    def __str__(self) -> str:
        return (f"{self.stage}: {self.done}/{self.total} done ({self.generated} computed, {self.cached} cached) "
                f"by {self.workers} workers in {self.seconds:.1f} s, {self.retries} retries, {self.failures} failures")


# -- connecting --------------------------------------------------------------------------------
#: Seconds to wait for a Ray address to answer before giving up (``dar eval --ray-timeout``).
CONNECT_TIMEOUT_S = 60.0


def wait_for_address(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Wait until something accepts TCP connections at a Ray address, or fail in one line after ``timeout_s``.

    Ray's own client retries an unreachable address for minutes; this check bounds the wait.
    ``None``, ``"auto"`` and ``"local"`` (found on this machine by Ray itself) are not checked.

    Args:
        address: ``"ray://host[:port]"`` (port 10001 by default) or ``"host:port"`` (the GCS).
        timeout_s: seconds to keep trying (a cluster that is still starting gets this long).

    Raises:
        ConnectionError: nothing answered in time; the message names the address and the wait.
        ValueError: an address that names no port (``host:port`` form) or a non-positive timeout.
    """
    import socket
    import time

    if timeout_s <= 0:
        raise ValueError(f"Ray connect timeout must be > 0 s, got {timeout_s}")
    if address is None or address in ("auto", "local"):
        return
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = rest.rpartition(":")
    if not sep:
        host, port = (rest, "10001") if address.startswith("ray://") else (rest, "")
    if not port.isdigit() or not host:
        raise ValueError(f"Ray address {address!r}: expected auto, host:port or ray://host[:port]")
    end, last = time.monotonic() + timeout_s, "no attempt"
    while True:
        left = end - time.monotonic()
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=max(0.05, min(5.0, left))).close()
            return
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() + 0.5 >= end:
            raise ConnectionError(f"Ray address {address!r}: nothing answered within {timeout_s:g} s ({last}); "
                                  f"start the cluster (ray start --head) or fix --ray-address "
                                  f"(--ray-timeout sets the wait)")
        time.sleep(0.5)


_PROBE = """
import sys
import ray
print("imported", flush=True)
ray.init(address=sys.argv[1], logging_level=40, log_to_driver=False, include_dashboard=False)
ray.shutdown()
"""


def probe_cluster(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Connect to ``address`` once in a child process, killed after ``timeout_s`` seconds: a bound on ``ray.init``.

    A port that accepts connections is not yet a Ray cluster (a proxy or another service may
    answer), and ``ray.init`` itself retries for minutes; a child process is the one wait that can
    be cut short. The clock starts once the child has imported Ray.

    Raises:
        ConnectionError: no connection within ``timeout_s``, or the child failed (its last line, redacted).
    """
    import subprocess
    import sys

    from dar_lib.redact import redact

    child = subprocess.Popen([sys.executable, "-c", _PROBE, address], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        child.stdout.readline()  # "imported": importing Ray is not the cluster's time
        child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise ConnectionError(f"Ray address {redact(address)!r}: no Ray cluster connected within {timeout_s:.3g} s; "
                              f"start the cluster (ray start --head) or fix --ray-address "
                              f"(--ray-timeout sets the wait)") from None
    if child.returncode != 0:
        lines = [ln for ln in child.stderr.read().splitlines() if ln.strip()]
        raise ConnectionError(f"Ray address {redact(address)!r}: cannot connect "
                              f"({redact(lines[-1].strip()) if lines else f'exit status {child.returncode}'})")


def connect(address: str | None = None, num_workers: int | None = None, timeout_s: float = CONNECT_TIMEOUT_S):
    """Connect to a Ray cluster, or start a local one; returns the ``ray`` module.

    Args:
        address: ``"auto"``, ``"ray://host:10001"`` or ``host:port``; ``None`` starts a local Ray
            with ``num_workers`` CPUs (default: every core). A no-op when Ray is already initialised.
        num_workers: CPUs of a locally started Ray.
        timeout_s: seconds an address may take to answer (:func:`wait_for_address`).

    Raises:
        MissingDependencyError: Ray is not installed (the message says how to install it).
        ConnectionError: the address did not answer within ``timeout_s``.
    """
    import time

    ray = _ray()
    if ray.is_initialized():
        return ray
    t0 = time.monotonic()
    wait_for_address(address, timeout_s)
    if address:
        probe_cluster(address, max(1.0, timeout_s - (time.monotonic() - t0)))
    kw = dict(logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
    if address:
        ray.init(address=address, **kw)
    else:
        # Workers only exchange small batch descriptions (images go through the store), so a
        # small object store is enough and does not claim half of /dev/shm.
        ray.init(num_cpus=num_workers or os.cpu_count() or 1, object_store_memory=200 * 1024**2, **kw)
    return ray


def _actor_resources(ray, num_workers: int | None) -> tuple[int, dict]:
    """(number of actors, actor options): one GPU per actor when the cluster has GPUs, else one CPU."""
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), int(res.get("CPU", 1))
    if gpus >= 1:
        return (num_workers or gpus), {"num_gpus": 1, "num_cpus": 1}
    return (num_workers or max(1, cpus)), {"num_cpus": 1}


def _worker_device(cfg, options: dict) -> str | None:
    """The torch device of an actor: the config's, else CUDA on a GPU actor (Ray sets CUDA_VISIBLE_DEVICES)."""
    if cfg.device:
        return cfg.device
    if options.get("num_gpus"):
        # Keys name the precision (fp16 on CUDA): a driver on another device would miss these entries.
        log.warning("Ray workers run on CUDA but the config names no device; pass device='cuda' (--device cuda) "
                    "so this process finds the images and embeddings they store")
        return "cuda"
    return "cpu"


# -- actors -------------------------------------------------------------------------------------
class _Worker:
    """Base of both actors: the test hook that kills a worker once, mid-batch."""

    def __init__(self, crash_marker: str | None):
        self.crash_marker = crash_marker

    def _maybe_crash(self) -> bool:
        """True exactly once per marker file, cluster-wide (O_EXCL creation is atomic)."""
        if not self.crash_marker:
            return False
        try:
            fd = os.open(self.crash_marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True


class GenerateWorker(_Worker):
    """One generator replica writing (prompt, seed) images into the store (a Ray actor class)."""

    def __init__(self, generator: str, device: str | None, store_root: str, crash_marker: str | None = None):
        super().__init__(crash_marker)
        from dar_lib.models import load_model
        from dar_lib.models.generators import CachedGenerator
        from dar_lib.store import ArtefactStore

        self.gen = CachedGenerator(load_model("generator", generator, device), ArtefactStore(store_root))

    def identity(self, steps, guidance, size) -> dict:
        """The replica's :meth:`~dar_lib.models.generators.CachedGenerator.identity` for these overrides:
        ``{"generator": fingerprint, "settings": resolved [steps, guidance, size]}``, from which the
        driver makes each image's key with :func:`dar_lib.cachekeys.image_key`, as this replica does.

        Raises:
            ValueError: a setting out of range (see ``DiffusersGenerator.resolve``).
        """
        return self.gen.identity(steps, guidance, size)

    def run(self, pairs: list, steps, guidance, size) -> tuple[int, int]:
        """Generate the batch's missing images; returns (generated, cached)."""
        prompts, seeds = [p for p, _ in pairs], [s for _, s in pairs]
        hits, misses = self.gen.hits, self.gen.misses
        if self._maybe_crash():
            # Die like a preempted node: half the batch written, the process gone without cleanup.
            half = max(1, len(pairs) // 2)
            self.gen.generate(prompts[:half], seeds[:half], steps=steps, guidance=guidance, size=size)
            os._exit(1)
        self.gen.generate(prompts, seeds, steps=steps, guidance=guidance, size=size)
        return self.gen.misses - misses, self.gen.hits - hits


class CorpusWorker(_Worker):
    """One encoder replica embedding corpus chunks into the store (a Ray actor class).

    The benchmark is rebuilt from the config in the actor (not pickled from the driver).
    """

    def __init__(self, bench_spec: dict, encoder: str, device: str | None, store_root: str,
                 crash_marker: str | None = None):
        super().__init__(crash_marker)
        from dar_lib.benchmarks import load_benchmark
        from dar_lib.models import load_model
        from dar_lib.store import ArtefactStore

        self.bench = load_benchmark(**bench_spec)
        self.encoder = load_model("encoder", encoder, device)
        self.store = ArtefactStore(store_root)

    def describe(self) -> dict:
        """``{"fingerprint", "corpus", "n_corpus"}``: the encoder's image fingerprint, the rebuilt benchmark's
        corpus fingerprint and size.

        The driver compares the last two with its own benchmark and builds chunk keys from the first.
        """
        return {"fingerprint": image_fingerprint(self.encoder), "corpus": self.bench.fingerprint,
                "n_corpus": len(self.bench.corpus_paths)}

    def run(self, chunks: list) -> tuple[int, int]:
        """Embed the missing chunks of the batch; returns (images computed, images cached)."""
        from dar_lib import corpus

        if self._maybe_crash():
            os._exit(1)
        computed = cached = 0
        for start, stop in chunks:
            key = corpus_chunk_key(image_fingerprint(self.encoder), self.bench.fingerprint, start, stop)
            if self.store.has(corpus.KIND, key):
                cached += stop - start
                continue
            self.store.put_array(corpus.KIND, key, corpus.embed_chunk(self.bench, self.encoder, start, stop))
            computed += stop - start
        return computed, cached


# -- the scheduler ------------------------------------------------------------------------------
def _is_system_failure(ray, exc: BaseException) -> bool:
    """A dead worker, node or object (retry elsewhere) rather than an error in our code (fail fast)."""
    ex = ray.exceptions
    kinds = tuple(getattr(ex, n) for n in ("RayActorError", "WorkerCrashedError", "NodeDiedError",
                                           "ObjectLostError", "OwnerDiedError", "ActorUnavailableError")
                  if hasattr(ex, n))
    return isinstance(exc, kinds)


def _run_pool(ray, actors: list, make_actor, batches: list, call, summary: RunSummary, *, unit_of,
              max_retries: int, progress: bool, desc: str, unit: str) -> None:
    """Dispatch ``batches`` over a pool of actors with bounded resubmission; fills ``summary``.

    A batch whose actor died goes back to the queue (at most ``max_retries`` times) and the dead
    actor is replaced by a fresh replica, so the pool keeps its size; an error raised by our own
    code in the actor is not retried (it would fail again) and counts as a failure.

    Args:
        actors: the started actors (replaced in place when one dies).
        make_actor: () -> a new actor handle.
        call: (actor, batch) -> an ObjectRef of (computed, cached) item counts.
        unit_of: batch -> the number of items it holds (for progress).
    """
    from tqdm import tqdm

    n_actors = len(actors)
    summary.workers = n_actors
    load = [0] * n_actors
    incarnation = [0] * n_actors  # bumped when a slot's actor is replaced
    queue = list(range(len(batches)))[::-1]  # pop() from the end: batches go out in order
    attempts = [0] * len(batches)
    pending: dict = {}  # ref -> (batch index, actor slot, incarnation)
    bar = tqdm(total=summary.total, initial=summary.done, disable=not progress, desc=desc, unit=unit,
               dynamic_ncols=True)
    try:
        while queue or pending:
            for a in range(n_actors):
                while queue and load[a] < IN_FLIGHT_PER_ACTOR:
                    b = queue.pop()
                    pending[call(actors[a], batches[b])] = (b, a, incarnation[a])
                    load[a] += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                b, a, inc = pending.pop(ref)
                if inc == incarnation[a]:
                    load[a] -= 1
                try:
                    computed, cached = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - classified below
                    if _is_system_failure(ray, exc) and attempts[b] < max_retries:
                        attempts[b] += 1
                        summary.retries += 1
                        queue.append(b)
                        log.warning("%s: batch %d lost with its worker (%s); resubmitting (%d/%d)", desc, b,
                                    type(exc).__name__, attempts[b], max_retries)
                        if inc == incarnation[a] and isinstance(exc, ray.exceptions.RayActorError):
                            # Its other in-flight batches fail too; they must not count against the new one.
                            ray.kill(actors[a], no_restart=True)
                            actors[a], incarnation[a], load[a] = make_actor(), inc + 1, 0
                    else:
                        summary.failures += 1
                        if len(summary.errors) < 5:
                            summary.errors.append(f"batch {b}: {type(exc).__name__}: {str(exc)[-500:]}")
                    bar.set_postfix(retries=summary.retries, failures=summary.failures, refresh=False)
                    continue
                summary.generated += computed
                summary.cached += cached
                summary.done += computed + cached
                bar.update(unit_of(batches[b]))
    finally:
        bar.close()
        for actor in actors:
            ray.kill(actor, no_restart=True)


def _remote_class(ray, cls, options: dict):
    # No automatic task retries: a task on a dying actor fails back to the driver, which
    # resubmits it to a fresh replica and counts the retry for the summary.
    return ray.remote(cls).options(max_restarts=0, max_task_retries=0, **options)


def _start_pool(make_actor, n_actors: int, first) -> list:
    """The probe actor plus ``n_actors - 1`` new ones (the probe already loaded its model)."""
    return [first] + [make_actor() for _ in range(max(0, n_actors - 1))]


# -- the two stages -----------------------------------------------------------------------------
def _finish(summary: "RunSummary", t0: float, raise_on_failure: bool, what: str) -> "RunSummary":
    """Stamp the wall time, log the summary, and raise if batches failed for good."""
    summary.seconds = time.perf_counter() - t0
    log.info("%s", summary)
    if summary.failures and raise_on_failure:
        raise RuntimeError(f"{what}: {summary}; rerun to resume. "
                           f"First error: {summary.errors[0] if summary.errors else '?'}")
    return summary


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
    from dar_lib.models.generators import CachedGenerator

    t0 = time.perf_counter()
    pairs = [(p, int(s)) for p, s in pairs]
    summary = RunSummary("generate", total=len(pairs))
    if not pairs:
        return summary
    ray = connect(address, num_workers)
    n_actors, options = _actor_resources(ray, num_workers)
    device = _worker_device(cfg, options)
    crash = os.environ.get(CRASH_ENV)
    Actor = _remote_class(ray, GenerateWorker, options)

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
        _run_pool(ray, _start_pool(make_actor, min(n_actors, len(batches)), probe), make_actor, batches,
                  lambda actor, batch: actor.run.remote(batch, cfg.steps, cfg.guidance, cfg.size), summary,
                  unit_of=len, max_retries=max_retries, progress=progress, desc=f"imagine {cfg.generator} (ray)",
                  unit="img")
    else:
        ray.kill(probe, no_restart=True)
    return _finish(summary, t0, raise_on_failure, f"Ray generation (finished images are in {store.root})")


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
    from dar_lib import corpus

    t0 = time.perf_counter()
    chunks = corpus.chunks(len(bench.corpus_paths))
    summary = RunSummary("corpus", total=len(bench.corpus_paths))
    ray = connect(address, num_workers)
    n_actors, options = _actor_resources(ray, num_workers)
    crash = os.environ.get(CRASH_ENV)
    spec = cfg.benchmark_spec()
    Actor = _remote_class(ray, CorpusWorker, options)

    def make_actor():
        return Actor.remote(spec, cfg.encoder, _worker_device(cfg, options), str(store.root), crash)

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
        _run_pool(ray, _start_pool(make_actor, min(n_actors, len(batches)), probe), make_actor, batches,
                  lambda actor, batch: actor.run.remote(batch), summary,
                  unit_of=lambda batch: sum(stop - start for start, stop in batch), max_retries=max_retries,
                  progress=progress, desc=f"corpus {cfg.encoder} (ray)", unit="img")
    else:
        ray.kill(probe, no_restart=True)
    return _finish(summary, t0, raise_on_failure, "Ray corpus encoding")


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
