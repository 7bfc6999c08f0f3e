"""The two Ray actors, each holding one model replica: image generation and corpus embedding, writing
into the shared artefact store under the same keys as a local run."""

from __future__ import annotations

import logging
import os

from dar_lib import corpus
from dar_lib.benchmarks import load_benchmark
from dar_lib.cachekeys import corpus_chunk_key
from dar_lib.models import load_model
from dar_lib.models.base import image_fingerprint
from dar_lib.models.generators import CachedGenerator
from dar_lib.store import ArtefactStore

log = logging.getLogger(__name__)

#: Test hook: a file path; the first actor to create it exits mid-batch (simulates a killed worker).
CRASH_ENV = "DAR_RAY_CRASH_ONCE"


def worker_device(cfg, options: dict) -> str | None:
    """The torch device of an actor: the config's, else CUDA on a GPU actor (Ray sets CUDA_VISIBLE_DEVICES)."""
    if cfg.device:
        return cfg.device
    if options.get("num_gpus"):
        # Keys name the precision (fp16 on CUDA): a driver on another device would miss these entries.
        log.warning("Ray workers run on CUDA but the config names no device; pass device='cuda' (--device cuda) "
                    "so this process finds the images and embeddings they store")
        return "cuda"
    return "cpu"


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
