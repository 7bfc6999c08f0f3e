"""DARPipeline: Algorithm 1 of the paper, one call per dialogue turn.

The pipeline is composed from named parts (diffusers-style): a reformulator (R1 + R2), a
generator (the *imagine* step), an encoder, and a fusion schedule; optionally a questioner that
asks the next question (Algorithm 1, line 3). Each call takes the dialogue so far and returns
everything the turn produced: the query S_t, the K prompts P_t,k, the K generated images, the
embeddings, the fused embedding and the ranked top-k of the indexed corpus.

Examples:
    >>> from dar_lib.models import load_encoder, load_generator, load_reformulator
    >>> pipe = DARPipeline(load_reformulator("toy:rules"), load_generator("toy:sd"),
    ...                    load_encoder("toy:clip-zs"), k_images=3)
    >>> pipe.index(corpus_images)                                   # doctest: +SKIP
    >>> out = pipe(["a large red circle", "is the background blue? yes"])  # doctest: +SKIP
    >>> out.query, out.top_ids[:3]                                  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from dar_lib.fuse import fuse, weights
from dar_lib.models.base import Encoder, Generator, Reformulator
from dar_lib.retrieve import top_k as rank_top_k
from dar_lib.store import ArtefactStore


def image_seed(base_seed: int, prompt: str, k: int) -> int:
    """The seed of the k-th generated image for a prompt.

    A function of (base seed, prompt, k) alone: the same dialogue, round and k always give the
    same image, and identical prompts anywhere in a run (an uninformative turn leaves the query
    unchanged) give identical images, so they are generated once.
    """
    h = hashlib.sha256(f"{base_seed}\x00{k}\x00{prompt}".encode("utf-8")).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


@dataclass
class TurnResult:
    """Everything one turn of Algorithm 1 produced."""

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


class DARPipeline:
    """Diffusion Augmented Retrieval, turn by turn.

    Args:
        reformulator: R1 (dialogue -> query S_t) and R2 (S_t -> K prompts).
        generator: text-to-image model; ``None`` runs without imagination (text only).
        encoder: the multimodal encoder shared by query text, generated and corpus images.
        k_images: K, images generated per turn.
        schedule: fusion weights, ``"paper"``, ``"released"`` or ``"const:<alpha>"``.
        image_reduce: ``"sum"`` (eq. 4 as written) or ``"mean"`` of the K image embeddings.
        seed: base seed of every generated image.
        steps, guidance, size: generator settings (``None``: the generator's defaults).
        store: artefact store caching generated images and LLM outputs (``None``: no cache).
        questioner: asks the next question in interactive use.
    """

    def __init__(
        self,
        reformulator: Reformulator,
        generator: Generator | None,
        encoder: Encoder,
        *,
        k_images: int = 3,
        schedule: str = "paper",
        image_reduce: str = "sum",
        seed: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        size: int | None = None,
        store: ArtefactStore | None = None,
        questioner=None,
    ):
        if k_images < 0:
            raise ValueError("k_images must be >= 0")
        self.encoder = encoder
        self.k_images = k_images
        self.schedule = schedule
        self.image_reduce = image_reduce
        self.seed = seed
        self.steps, self.guidance, self.size = steps, guidance, size
        self.store = store
        self.questioner = questioner
        self.reformulator = reformulator
        self.generator = generator
        if store is not None:
            from dar_lib.models.generators import CachedGenerator
            from dar_lib.models.reformulators import CachedReformulator

            if getattr(reformulator, "cacheable", True):
                self.reformulator = CachedReformulator(reformulator, store)
            if generator is not None:
                self.generator = CachedGenerator(generator, store)
        self.corpus_emb: torch.Tensor | None = None

    # -- corpus ---------------------------------------------------------------------------
    def index(self, corpus_images: Sequence[Image.Image] | None = None, *, corpus_emb=None, batch_size: int = 256) -> None:
        """Embed (or take precomputed embeddings of) the corpus to rank against."""
        if corpus_emb is not None:
            self.corpus_emb = torch.as_tensor(np.asarray(corpus_emb), dtype=torch.float32)
            return
        if corpus_images is None:
            raise ValueError("give corpus_images or corpus_emb")
        chunks = [self.encoder.encode_images(list(corpus_images[i : i + batch_size]))
                  for i in range(0, len(corpus_images), batch_size)]
        self.corpus_emb = torch.cat(chunks)

    # -- one turn -------------------------------------------------------------------------
    def reformulate(self, turns: Sequence[str], ref: tuple[str, int] | None = None) -> tuple[str, list[str]]:
        """R1 and R2: the query S_t and its K prompts."""
        query = self.reformulator.rewrite(list(turns), ref=ref)
        prompts = self.reformulator.prompts(query, self.k_images) if self.k_images else []
        if len(prompts) != self.k_images:
            raise RuntimeError(f"reformulator {self.reformulator.id} gave {len(prompts)} prompts, expected {self.k_images}")
        return query, prompts

    def imagine(self, prompts: Sequence[str]) -> tuple[list[Image.Image], list[int]]:
        """Generate one image per prompt with its deterministic seed."""
        seeds = [image_seed(self.seed, p, k) for k, p in enumerate(prompts)]
        if not prompts or self.generator is None:
            return [], seeds
        images = self.generator.generate(list(prompts), seeds, steps=self.steps, guidance=self.guidance, size=self.size)
        return images, seeds

    def __call__(self, turns: Sequence[str], *, round_idx: int | None = None, ref: tuple[str, int] | None = None,
                 top_k: int = 10) -> TurnResult:
        """Run one turn of Algorithm 1 on the dialogue so far.

        Args:
            turns: the dialogue context C_t: caption first, then "question? answer" turns.
            round_idx: t (default: ``len(turns) - 1``); chooses the fusion weights.
            ref: (target image path, round_idx) for replayed reformulators.
            top_k: how many corpus items to return (needs :meth:`index` first; 0 skips ranking).
        """
        if not turns:
            raise ValueError("the dialogue is empty: give at least the caption")
        t = len(turns) - 1 if round_idx is None else round_idx
        query, prompts = self.reformulate(turns, ref)
        images, seeds = self.imagine(prompts)
        text_emb = self.encoder.encode_text([query])[0]
        image_emb = self.encoder.encode_images(images) if images else torch.empty(0, text_emb.shape[-1])
        fused = fuse(text_emb, image_emb if len(images) else None, t, self.schedule, self.image_reduce)
        alpha = weights(t, self.schedule)[0] if images else 1.0
        result = TurnResult(t, list(turns), query, prompts, seeds, images, text_emb, image_emb, fused, alpha)
        if top_k and self.corpus_emb is not None:
            ids, scores = rank_top_k(fused[None], self.corpus_emb, top_k)
            result.top_ids, result.top_scores = ids[0], scores[0]
        return result

    # -- interactive use --------------------------------------------------------------------
    def session(self, caption: str) -> "Session":
        """Start an interactive retrieval session from an initial description."""
        return Session(self, caption)


class Session:
    """An interactive dialogue: the system asks, a person (or an answerer) answers, DAR re-ranks.

    Examples:
        >>> s = pipe.session("a large red circle")     # doctest: +SKIP
        >>> s.results[-1].top_ids                       # doctest: +SKIP
        >>> q = s.ask(); s.answer("yes")                # doctest: +SKIP
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
        """The questioner's next question (Algorithm 1, line 3)."""
        if self.pipeline.questioner is None:
            raise RuntimeError("this pipeline has no questioner; answer with answer(text, question=...)")
        self.pending_question = self.pipeline.questioner.ask(self.turns, self.results[-1])
        return self.pending_question

    def answer(self, answer: str, question: str | None = None) -> TurnResult:
        """Add a question/answer turn and re-rank."""
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
