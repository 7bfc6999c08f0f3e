"""DARPipeline: Algorithm 1 of the paper, written once as stage methods and composed per turn.

The pipeline is composed from named parts (diffusers-style): a reformulator (R1 + R2), a
generator (the *imagine* step), an encoder, and a fusion schedule; optionally a questioner that
asks the next question (Algorithm 1, line 3). Each stage is a method that works on one item or a
batch (:meth:`~DARPipeline.reformulate`, :meth:`~DARPipeline.imagine`,
:meth:`~DARPipeline.encode_queries`, :meth:`~DARPipeline.encode_images`, :meth:`~DARPipeline.fuse`,
:meth:`~DARPipeline.target_ranks`, :meth:`~DARPipeline.top_k`); ``__call__`` runs them for one turn
and times each, the evaluation runner (:mod:`dar_lib.evaluate`) runs the same methods batched over
a whole benchmark, and the interactive :class:`Session` calls ``__call__`` turn by turn.

Examples:
    >>> from dar_lib.benchmarks import load_benchmark
    >>> from dar_lib.models import load_encoder, load_generator, load_reformulator
    >>> pipe = DARPipeline(load_reformulator("toy:rules"), load_generator("toy:sd"),
    ...                    load_encoder("toy:clip-zs"), k_images=3)
    >>> corpus = load_benchmark("toy-visdial", toy_size="smoke")  # 500 rendered scenes and their dialogues
    >>> pipe.index(corpus.corpus_images(range(len(corpus.corpus_paths))))  # PIL images; or corpus_emb=, bench=
    >>> out = pipe(["a large red circle", "what color is the background? blue"])
    >>> out.query, len(out.prompts), len(out.images), len(out.top_ids), "generation" in out.timings
    ('a large red circle on a blue background', 3, 3, 10, True)
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from dar_lib import corpus, evalsettings, settings
from dar_lib.fuse import fuse
from dar_lib.fusion_weights import weights
from dar_lib.models.base import Encoder, Generator, Reformulator
from dar_lib.models.generators import CachedGenerator
from dar_lib.models.reformulate import CachedReformulator
from dar_lib.retrieve import check_embeddings
from dar_lib.retrieve import target_ranks as _target_ranks
from dar_lib.retrieve import top_k as _top_k
from dar_lib.store import ArtefactStore

#: The default fusion settings (declared in :mod:`dar_lib.evalsettings`, as the runner's and the book's).
DEFAULT_SCHEDULE = evalsettings.default("schedule")
DEFAULT_IMAGE_REDUCE = evalsettings.default("image_reduce")
#: Stage names of :attr:`TurnResult.timings`, in Algorithm 1's order.
STAGES = ("R1 reformulation", "R2 prompts", "generation", "encoding", "fusion + ranking")


def image_seed(base_seed: int, prompt: str, k: int, round_idx: int | None = None) -> int:
    """The seed of the k-th generated image for a prompt.

    Args:
        base_seed: the run's generation seed.
        prompt: the generator prompt.
        k: the image's index among the K of its turn.
        round_idx: the dialogue round; ``None`` leaves the round out, so an unchanged prompt gives
            the same image in every round (the behaviour before toy world v2).

    Returns:
        A seed in ``0..2**31 - 1``, a function of its arguments alone: the same dialogue, round and
        k always give the same image on any machine, and identical (prompt, k, round) triples
        anywhere in a run are generated once.
    """
    rnd = "" if round_idx is None else f"\x00r{int(round_idx)}"
    h = hashlib.sha256(f"{base_seed}\x00{k}\x00{prompt}{rnd}".encode("utf-8")).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


@dataclass
class TurnPlan:
    """What R1 and R2 produced for one turn, and the seeds its images will get.

    Attributes:
        round_idx: t.
        query: S_t, the caption-style query.
        prompts: the K generator prompts P_t,k.
        seeds: one seed per prompt (:func:`image_seed`).
    """

    round_idx: int
    query: str
    prompts: list[str]
    seeds: list[int]


@dataclass
class TurnResult:
    """Everything one turn of Algorithm 1 produced.

    Attributes:
        round_idx: t.
        turns: the dialogue context C_t.
        query, prompts, seeds: see :class:`TurnPlan`.
        images: the K generated images (PIL, RGB).
        text_emb: ``(dim,)`` E(S_t); image_emb: ``(K, dim)``; fused_emb: ``(dim,)`` F_t (unit norm).
        alpha: the text weight used (1.0 without images).
        top_ids, top_scores: the best corpus ids and their cosine scores, best first (empty without an index).
        timings: seconds per stage (:data:`STAGES`) for this call.
    """

    round_idx: int
    turns: list[str]
    query: str
    prompts: list[str]
    seeds: list[int]
    images: list[Image.Image]
    text_emb: torch.Tensor
    image_emb: torch.Tensor
    fused_emb: torch.Tensor
    alpha: float
    top_ids: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    top_scores: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float32))
    timings: dict[str, float] = field(default_factory=dict)


class _Timer:
    """Adds the wall time of ``with timer(stage):`` blocks into a dict (or does nothing without one)."""

    def __init__(self, into: dict | None):
        self.into = into

    def __call__(self, stage: str):
        return _Lap(self.into, stage)


class _Lap:
    def __init__(self, into, stage):
        self.into, self.stage = into, stage

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        if self.into is not None:
            self.into[self.stage] = self.into.get(self.stage, 0.0) + time.perf_counter() - self.start


class DARPipeline:
    """Diffusion Augmented Retrieval: the stages of Algorithm 1.

    Args:
        reformulator: R1 (dialogue -> query S_t) and R2 (S_t -> K prompts).
        generator: text-to-image model; ``None`` runs without imagination (text only).
        encoder: the multimodal encoder shared by query text, generated and corpus images.
        k_images: K, images generated per turn (0..10).
        schedule: fusion weights, ``"paper"``, ``"released"`` or ``"const:<alpha>"``.
        image_reduce: ``"mean"`` (default, as every results table) or ``"sum"`` (eq. 4 as written)
            of the K image embeddings.
        seed: base seed of every generated image.
        seed_per_round: put the round into every image seed (a fresh draw every round); ``False``
            (the default) gives an unchanged prompt the same image in every round, the seed coming
            from the prompt and ``seed`` alone (:func:`image_seed`).
        steps, guidance, size: generator settings (``None``: the generator's defaults).
        store: artefact store caching generated images and LLM outputs (``None``: no cache).
        questioner: asks the next question in interactive use.

    Raises:
        ValueError: a setting outside its range (the message names it).
    """

    def __init__(
        self,
        reformulator: Reformulator,
        generator: Generator | None,
        encoder: Encoder,
        *,
        k_images: int = 3,
        schedule: str = DEFAULT_SCHEDULE,
        image_reduce: str = DEFAULT_IMAGE_REDUCE,
        seed: int = 0,
        seed_per_round: bool = False,
        steps: int | None = None,
        guidance: float | None = None,
        size: int | None = None,
        store: ArtefactStore | None = None,
        questioner=None,
    ):
        if k_images != 0:  # K = 0: the text-only pipeline (no generator needed)
            evalsettings.check("k_images", k_images)
        evalsettings.check("image_reduce", image_reduce)
        evalsettings.check("schedule", schedule)
        if generator is not None and hasattr(generator, "resolve"):
            generator.resolve(steps, guidance, size)  # validates the generator settings
        self.encoder = encoder
        self.k_images = k_images
        self.schedule = schedule
        self.image_reduce = image_reduce
        self.seed = int(seed)
        self.seed_per_round = bool(seed_per_round)
        self.steps, self.guidance, self.size = steps, guidance, size
        self.store = store
        self.questioner = questioner
        self.reformulator = reformulator
        self.generator = generator
        if store is not None:
            if getattr(reformulator, "cacheable", True):
                self.reformulator = CachedReformulator(reformulator, store)
            if generator is not None:
                self.generator = CachedGenerator(generator, store)
        self.corpus_emb: torch.Tensor | None = None

    # -- corpus ---------------------------------------------------------------------------
    def index(self, corpus_images: Sequence[Image.Image] | None = None, *, corpus_emb=None, bench=None,
              batch_size: int = 256, progress: bool = False) -> None:
        """Give the pipeline the corpus to rank against.

        Exactly one of: ``corpus_images`` (PIL images, embedded here in batches), ``corpus_emb``
        (precomputed ``(n_corpus, dim)`` embeddings of this encoder) or ``bench`` (a
        :class:`~dar_lib.benchmarks.Benchmark`, embedded by the corpus stage, cached in ``store``).

        Raises:
            ValueError: none or several sources, or a dimension that does not match the encoder.
            EmbeddingError: non-finite or zero-norm embeddings.
        """

        if sum(x is not None for x in (corpus_images, corpus_emb, bench)) != 1:
            raise ValueError("give exactly one of corpus_images, corpus_emb or bench")
        if bench is not None:
            store = self.store or ArtefactStore(_scratch_store())
            emb = torch.from_numpy(corpus.corpus_embeddings(bench, self.encoder, store, progress=progress))
        elif corpus_emb is not None:
            emb = torch.as_tensor(np.asarray(corpus_emb), dtype=torch.float32)
        else:
            images = list(corpus_images)
            if not images:
                raise ValueError("corpus_images is empty: nothing to rank")
            emb = torch.cat([self.encode_images(images[i:i + batch_size])
                             for i in range(0, len(images), batch_size)])
        check_embeddings(emb, f"{self.encoder.id} corpus embeddings")
        dim = getattr(self.encoder, "dim", emb.shape[1])
        if emb.shape[1] != dim:
            raise ValueError(f"corpus embeddings have dim {emb.shape[1]}, but encoder {self.encoder.id} makes {dim}")
        self.corpus_emb = emb

    # -- the stages ---------------------------------------------------------------------------
    def seeds_for(self, prompts: Sequence[str], round_idx: int) -> list[int]:
        """The seeds of a turn's images (:func:`image_seed`, with the round when ``seed_per_round``)."""
        rnd = round_idx if self.seed_per_round else None
        return [image_seed(self.seed, p, k, rnd) for k, p in enumerate(prompts)]

    def reformulate(self, turns: Sequence[str], round_idx: int | None = None, ref: tuple[str, int] | None = None,
                    timings: dict | None = None) -> TurnPlan:
        """R1 and R2 for one turn: the query S_t, its K prompts and their seeds.

        Args:
            turns: the dialogue context C_t (caption first, then "question? answer" turns).
            round_idx: t (default ``len(turns) - 1``).
            ref: (target image path, round_idx), for reformulators that replay recorded queries.
            timings: a dict that receives the seconds of R1 and R2.

        Raises:
            TypeError: ``turns`` is a string or holds something other than strings.
            ValueError: an empty dialogue, or ``round_idx`` not an integer >= 0.
            RuntimeError: the reformulator gave a number of prompts other than K.
        """
        if isinstance(turns, (str, bytes)) or not all(isinstance(x, str) for x in turns):
            raise TypeError(f"turns must be a list of strings (the caption, then 'question? answer' turns), got "
                            f"{turns!r:.80}")
        if not turns:
            raise ValueError("the dialogue is empty: give at least the caption")
        if round_idx is not None and (isinstance(round_idx, bool) or not isinstance(round_idx, int) or round_idx < 0):
            raise ValueError(f"round_idx = {round_idx!r}: must be an integer >= 0 (or None for len(turns) - 1)")
        t = len(turns) - 1 if round_idx is None else round_idx
        timer = _Timer(timings)
        with timer("R1 reformulation"):
            query = self.reformulator.rewrite(list(turns), ref=ref)
        with timer("R2 prompts"):
            prompts = self.reformulator.prompts(query, self.k_images) if self.k_images else []
        if len(prompts) != self.k_images:
            raise RuntimeError(f"reformulator {self.reformulator.id} gave {len(prompts)} prompts, "
                               f"expected {self.k_images}")
        return TurnPlan(t, query, list(prompts), self.seeds_for(prompts, t))

    def imagine(self, prompts: Sequence[str], seeds: Sequence[int], *, whole_batch: bool = False) -> list[Image.Image]:
        """Generate one image per (prompt, seed), through the store when the pipeline has one.

        Args:
            prompts, seeds: equally long.
            whole_batch: regenerate the whole call as one batch when any image is missing (callers
                that always ask in the same fixed batches then get bit-identical images, see
                :class:`~dar_lib.models.generators.CachedGenerator`).

        Returns:
            RGB images in the order of ``prompts`` (empty without a generator).
        """
        if not prompts or self.generator is None:
            return []
        kw = {"whole_batch": True} if whole_batch and self.store is not None else {}  # only the cache batches
        return self.generator.generate(list(prompts), list(seeds), steps=self.steps, guidance=self.guidance,
                                       size=self.size, **kw)

    def encode_queries(self, texts: Sequence[str]) -> torch.Tensor:
        """E(S): ``(n, dim)`` unit-norm text embeddings, checked (raises ``EmbeddingError``)."""
        emb = self.encoder.encode_text(list(texts))
        check_embeddings(emb, f"{self.encoder.id} text embeddings")
        return emb

    def encode_images(self, images: Sequence) -> torch.Tensor:
        """E(I): ``(n, dim)`` unit-norm image embeddings, checked (raises ``EmbeddingError``)."""
        images = list(images)
        if not images:
            return torch.empty(0, getattr(self.encoder, "dim", 0))
        emb = self.encoder.encode_images(images)
        check_embeddings(emb, f"{self.encoder.id} image embeddings")
        return emb

    def fuse(self, text_emb: torch.Tensor, image_emb: torch.Tensor | None, round_idx) -> torch.Tensor:
        """Eq. 4 with the pipeline's schedule and reduction.

        Args:
            text_emb: ``(dim,)`` or ``(n, dim)``.
            image_emb: ``(K, dim)`` or ``(n, K, dim)``, or ``None`` (the text alone).
            round_idx: one round for all rows, or a sequence of ``n`` rounds (weights per row).

        Returns:
            Unit-norm fused embeddings with ``text_emb``'s shape.
        """
        if np.ndim(round_idx) == 0:
            return fuse(text_emb, image_emb, int(round_idx), self.schedule, self.image_reduce)
        rounds = np.asarray(round_idx)
        out = torch.empty_like(text_emb)
        for r in np.unique(rounds):  # the weights depend on the round
            m = torch.from_numpy(rounds == r)
            out[m] = fuse(text_emb[m], None if image_emb is None else image_emb[m], int(r), self.schedule,
                          self.image_reduce)
        return out

    def target_ranks(self, fused: torch.Tensor, target_ids: Sequence[int]) -> np.ndarray:
        """0-based expected ranks of the targets among the indexed corpus (see :mod:`dar_lib.retrieve`)."""
        return _target_ranks(fused, self._corpus(), target_ids)

    def top_k(self, fused: torch.Tensor, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best corpus ids and scores per fused query, best first: ``(n, k)`` each."""
        return _top_k(fused, self._corpus(), k)

    def _corpus(self) -> torch.Tensor:
        if self.corpus_emb is None:
            raise RuntimeError("no corpus to rank: call index() first")
        return self.corpus_emb

    # -- one turn -------------------------------------------------------------------------
    def __call__(self, turns: Sequence[str], *, round_idx: int | None = None, ref: tuple[str, int] | None = None,
                 top_k: int = 10) -> TurnResult:
        """Run one turn of Algorithm 1 on the dialogue so far.

        Args:
            turns: the dialogue context C_t: caption first, then "question? answer" turns.
            round_idx: t (default: ``len(turns) - 1``); chooses the fusion weights and the seeds.
            ref: (target image path, round_idx) for replayed reformulators.
            top_k: how many corpus items to return (ranking needs :meth:`index` first; 0 skips it).

        Returns:
            A :class:`TurnResult` with the query, prompts, images, embeddings, top-k and stage timings.

        Raises:
            TypeError: ``turns`` is a string or holds something other than strings.
            ValueError: an empty dialogue, a bad ``round_idx`` or ``top_k``, or ``top_k > 0`` before :meth:`index`.
            EmbeddingError: the encoder produced non-finite or zero-norm embeddings.
            RuntimeError: the reformulator gave the wrong number of prompts.
        """
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
            raise ValueError(f"top_k = {top_k!r}: must be an integer >= 0 (0 skips ranking)")
        if top_k and self.corpus_emb is None:
            raise ValueError("no corpus to rank: call index() first, or pass top_k=0 to skip ranking")
        timings: dict[str, float] = {}
        timer = _Timer(timings)
        plan = self.reformulate(turns, round_idx, ref, timings=timings)
        with timer("generation"):
            images = self.imagine(plan.prompts, plan.seeds)
        with timer("encoding"):
            text_emb = self.encode_queries([plan.query])[0]
            image_emb = self.encode_images(images)
        with timer("fusion + ranking"):
            fused = self.fuse(text_emb, image_emb if len(images) else None, plan.round_idx)
            alpha = weights(plan.round_idx, self.schedule)[0] if images else 1.0
            result = TurnResult(plan.round_idx, list(turns), plan.query, plan.prompts, plan.seeds, images, text_emb,
                                image_emb, fused, alpha)
            if top_k:
                ids, scores = self.top_k(fused[None], top_k)
                result.top_ids, result.top_scores = ids[0], scores[0]
        result.timings = {s: timings.get(s, 0.0) for s in STAGES}
        result.timings["total"] = sum(result.timings.values())
        return result

    # -- interactive use --------------------------------------------------------------------
    def session(self, caption: str, top_k: int = 10) -> "Session":
        """Start an interactive retrieval session from an initial description."""
        return Session(self, caption, top_k)


def _scratch_store():
    return settings.cache_dir() / "store"


class Session:
    """An interactive dialogue: the system asks, a person (or an answerer) answers, DAR re-ranks.

    Examples:
        >>> from dar_lib.benchmarks import load_benchmark
        >>> from dar_lib.models import load_encoder, load_generator, load_reformulator
        >>> pipe = DARPipeline(load_reformulator("toy:rules"), load_generator("toy:sd"), load_encoder("toy:clip-zs"))
        >>> pipe.index(bench=load_benchmark("toy-visdial", toy_size="smoke"))
        >>> s = pipe.session("a large red circle")
        >>> turn = s.answer("blue", question="what color is the background?")  # with a questioner: s.ask() first
        >>> len(s.results), turn.query, len(turn.top_ids)
        (2, 'a large red circle on a blue background', 10)
    """

    def __init__(self, pipeline: DARPipeline, caption: str, top_k: int = 10):
        if not caption.strip():
            raise ValueError("the caption is empty")
        self.pipeline = pipeline
        self.top_k = top_k
        self.turns: list[str] = [caption.strip()]
        self.pending_question: str | None = None
        self.results: list[TurnResult] = [pipeline(self.turns, top_k=top_k)]

    def ask(self) -> str:
        """The questioner's next question (Algorithm 1, line 3).

        Raises:
            RuntimeError: the pipeline has no questioner.
        """
        if self.pipeline.questioner is None:
            raise RuntimeError("this pipeline has no questioner; answer with answer(text, question=...)")
        self.pending_question = self.pipeline.questioner.ask(self.turns, self.results[-1])
        return self.pending_question

    def answer(self, answer: str, question: str | None = None) -> TurnResult:
        """Add a question/answer turn and re-rank.

        Raises:
            ValueError: no question (none pending and none given) or an empty answer.
        """
        question = (question or self.pending_question or "").strip()
        if not question:
            raise ValueError("no question to answer: call ask() first or pass question=")
        if not answer.strip():
            raise ValueError("the answer is empty")
        q = question if question.endswith("?") else question + "?"
        self.turns.append(f"{q} {answer.strip()}")
        self.pending_question = None
        self.results.append(self.pipeline(self.turns, top_k=self.top_k))
        return self.results[-1]
