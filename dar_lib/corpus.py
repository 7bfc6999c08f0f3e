"""The corpus stage: embed every corpus image once per encoder, in cached chunks.

One home for corpus encoding: :class:`~dar_lib.pipeline.DARPipeline.index`, the evaluation runner
and the Ray backend all call :func:`embed_chunk` with the same chunks and
:func:`dar_lib.cachekeys.corpus_chunk_key` with the same keys, so a chunk embedded anywhere is found
everywhere, and a killed run keeps its finished chunks. Every chunk is checked
(:func:`~dar_lib.retrieve.check_embeddings`) before it is stored: a broken encoder fails here, naming
itself, instead of ranking NaNs.

Examples:
    >>> import tempfile
    >>> from dar_lib.benchmarks import load_benchmark
    >>> from dar_lib.models import load_encoder
    >>> from dar_lib.store import ArtefactStore
    >>> bench = load_benchmark("toy-flan", 8, toy_size="smoke")
    >>> store = ArtefactStore(tempfile.mkdtemp())
    >>> emb = corpus_embeddings(bench, load_encoder("toy:clip-zs"), store)
    >>> emb.shape
    (500, 128)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dar_lib.cachekeys import corpus_chunk_key
from dar_lib.models.base import image_fingerprint
from dar_lib.retrieve import check_embeddings

#: Corpus images per cached chunk (every backend uses the same chunks, hence the same keys).
CHUNK = 1024
#: The store kind of corpus embedding chunks.
KIND = "corpus_emb"


def chunks(n_corpus: int, chunk: int = CHUNK) -> list[tuple[int, int]]:
    """The ``(start, stop)`` corpus id ranges embedded and cached as one unit.

    Args:
        n_corpus: corpus size (>= 1).
        chunk: images per chunk.

    Raises:
        ValueError: an empty corpus (nothing can be ranked).
    """
    if n_corpus < 1:
        raise ValueError("the corpus is empty: nothing to rank")
    return [(s, min(n_corpus, s + chunk)) for s in range(0, n_corpus, chunk)]


def embed_chunk(bench, encoder, start: int, stop: int) -> np.ndarray:
    """Embed corpus ids ``start..stop-1`` of ``bench`` with ``encoder``.

    Returns:
        float32 ``(stop - start, dim)``, unit-norm rows.

    Raises:
        EmbeddingError: non-finite or zero-norm embeddings (names the encoder and how many).
    """
    emb = encoder.encode_images(bench.corpus_images(range(start, stop))).numpy()
    check_embeddings(emb, f"{encoder.id} corpus embeddings of ids {start}..{stop - 1}")
    return emb.astype(np.float32, copy=False)


def corpus_embeddings(bench, encoder, store, *, progress: bool = True,
                      ranges: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """The whole corpus embedded by ``encoder``, read from or written to ``store`` chunk by chunk.

    Args:
        bench: a :class:`~dar_lib.benchmarks.Benchmark` (its ``fingerprint`` names the corpus content).
        encoder: an :class:`~dar_lib.models.base.Encoder`.
        store: the :class:`~dar_lib.store.ArtefactStore`.
        progress: show a progress bar over chunks.
        ranges: the chunks (default :func:`chunks` of the corpus).

    Returns:
        float32 ``(n_corpus, dim)``.
    """
    ranges = list(ranges or chunks(len(bench.corpus_paths)))
    it = ranges
    if progress:
        from tqdm import tqdm

        it = tqdm(ranges, desc=f"corpus {encoder.id}", unit="chunk")
    parts = []
    for start, stop in it:
        key = corpus_chunk_key(image_fingerprint(encoder), bench.fingerprint, start, stop)
        emb = store.get_array(KIND, key)
        if emb is None:
            emb = embed_chunk(bench, encoder, start, stop)
            store.put_array(KIND, key, emb)
        else:
            check_embeddings(emb, f"{encoder.id} corpus embeddings read from {store.path(KIND, key)}")
        parts.append(emb)
    return np.concatenate(parts).astype(np.float32, copy=False)
