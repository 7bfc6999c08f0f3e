"""The caching wrapper of every reformulator: each usable R1/R2 output stored in the artefact store."""

from __future__ import annotations

from typing import Callable, Sequence

from dar_lib.cachekeys import llm_key
from dar_lib.models.reformulate.chat_protocol import ChatReformulator
from dar_lib.models.reformulate.replay import IdentityReformulator
from dar_lib.store import CachedWrapper


class CachedReformulator(CachedWrapper):
    """Store every R1/R2 output in an ``ArtefactStore`` keyed by the reformulator's fingerprint
    (model id, template version, parser version for the LLM backends, sampling settings) and the
    full input.

    Only usable outputs are stored: a :class:`ReformulationError` propagates with nothing written,
    and a recorded fallback (the wrapped reformulator's ``fallbacks`` went up during the call) is
    returned but not stored, so a later run asks the LLM again.

    Args:
        reformulator: the wrapped reformulator.
        store: the artefact store.
    """

    KIND = "llm"

    @property
    def reformulator(self):
        """The wrapped reformulator."""
        return self.wrapped

    @property
    def fallbacks(self) -> int:
        """Fallbacks the wrapped reformulator has returned (0 for backends without fallbacks)."""
        return int(getattr(self.reformulator, "fallbacks", 0))

    @property
    def facts(self) -> Callable | None:
        """The wrapped reformulator's fact reader (the toy rules' ``facts(turns)``, what R1 read from the
        dialogue), or ``None`` for a backend that cannot say (an LLM): callers never look through the cache."""
        return getattr(self.reformulator, "facts", None)

    @property
    def read_turn(self) -> Callable | None:
        """The wrapped reformulator's turn reader (the toy rules' ``read_turn(turns)``: new facts, restated
        ones, "not sure" or nothing), or ``None`` for a backend that cannot say."""
        return getattr(self.reformulator, "read_turn", None)

    def _cached(self, key_parts: dict, fn: Callable[[], object]):
        key = llm_key(self.fingerprint(), **key_parts)
        value = self.store.get_json(self.KIND, key)
        if value is not None:
            self.hits += 1
            return value["output"]
        self.misses += 1
        before = self.fallbacks
        output = fn()
        if self.fallbacks == before:
            self.store.put_json(self.KIND, key, {"output": output})
        return output

    def rewrite(self, turns: Sequence[str], *, ref: tuple[str, int] | None = None) -> str:
        """R1 through the store: the stored query, or the wrapped ``rewrite`` (stored unless a fallback).

        The key holds the fingerprint and the turns; ``ref`` is part of it too except for the LLM
        backends and :class:`IdentityReformulator`, whose output depends on the text only.

        Args:
            turns: the dialogue so far (caption first, then "question? answer" turns).
            ref: (target image path, round_idx), passed on to the wrapped reformulator.

        Returns:
            The query.

        Raises:
            ReformulationError: from the wrapped reformulator, with nothing stored.
        """
        parts = {"stage": "R1", "turns": [str(t) for t in turns]}
        # LLM outputs depend on the text only; other adapters (replay, toy) may read ``ref``.
        if not isinstance(self.reformulator, (ChatReformulator, IdentityReformulator)):
            parts["ref"] = None if ref is None else [str(ref[0]), int(ref[1])]
        return self._cached(parts, lambda: self.reformulator.rewrite(turns, ref=ref))

    def prompts(self, query: str, k: int) -> list[str]:
        """R2 through the store, keyed by the fingerprint, ``query`` and ``k``: ``k`` prompts (list of str).

        Raises:
            ReformulationError: from the wrapped reformulator, with nothing stored.
        """
        return self._cached({"stage": "R2", "query": query, "k": int(k)},
                            lambda: list(self.reformulator.prompts(query, k)))
