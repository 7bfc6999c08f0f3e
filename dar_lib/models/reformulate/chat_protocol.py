"""The chat protocol of the LLM reformulators: R1/R2 messages, one corrective retry, then an error or a recorded
fallback."""

from __future__ import annotations

import json
import logging
from typing import Callable, Sequence

import dar_lib.models.prompts as P
from dar_lib.cachekeys import PRODUCERS, code_fingerprint
from dar_lib.models.reformulate.reply_parsing import read_prompts, read_query, strip_reasoning, truncate

log = logging.getLogger(__name__)

#: The modules whose code decides what an LLM reformulator outputs for a given reply: the prompt
#: templates, this protocol and the reply parser, declared once as the ``"llm"`` kind of
#: :data:`dar_lib.cachekeys.PRODUCERS`. Their :func:`~dar_lib.cachekeys.code_fingerprint` is part of
#: every chat reformulator's fingerprint (and so of its cache keys), instead of a hand-bumped parser version.
REWRITE_MODULES = PRODUCERS["llm"]


class ReformulationError(RuntimeError):
    """An LLM reply that stays unusable after one retry.

    Attributes:
        model_id: the reformulator's id.
        stage: ``"R1"`` or ``"R2"``.
        reply: the last unusable reply (full text).
        problem: why it was rejected.
    """

    def __init__(self, model_id: str, stage: str, reply: str, problem: str):
        self.model_id, self.stage, self.reply, self.problem = model_id, stage, reply, problem
        super().__init__(f"{model_id}: unusable {stage} reply after 1 retry ({problem}): {truncate(reply)!r}")


class ChatReformulator:
    """R1/R2 over any ``chat(messages) -> str`` backend (shared by the LLM backends).

    Every reply is parsed and validated by the pure functions of
    :mod:`~dar_lib.models.reformulate.reply_parsing` (:func:`read_query`, :func:`read_prompts`). An
    unusable reply is retried once with the same messages plus the reply as an assistant turn and a
    short corrective user message
    (``prompts.R1_RETRY`` / ``prompts.R2_RETRY``), because a greedy decoder given the very same
    messages would repeat itself. If the retry is unusable too:

    - by default (``fallback=False``) a :class:`ReformulationError` is raised: a substituted output
      would silently turn the measured method into another one (an R1 fallback *is* the identity
      baseline), so an evaluation must opt in to it;
    - with ``fallback=True`` a recorded fallback is returned (R1: the raw dialogue joined with
      ``", "``; R2: ``prompts.template_prompts(query, k)``), ``fallbacks`` is incremented and a
      warning is logged. :class:`~dar_lib.models.reformulate.CachedReformulator` never stores a fallback or a failure.

    Attributes:
        id: model id (for fingerprints and errors).
        fallback: return a recorded fallback instead of raising (default ``False``).
        fallbacks: how many fallbacks this reformulator has returned.
    """

    id: str
    fallback: bool = False
    fallbacks: int = 0

    def chat(self, messages: list[dict[str, str]]) -> str:
        """One chat completion: the raw reply text to ``messages``.

        Args:
            messages: OpenAI-style ``{"role", "content"}`` messages.

        Returns:
            The reply text (unparsed).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement chat(messages)")

    def settings(self) -> dict:
        """Sampling settings that determine the output (part of cache keys and fingerprints)."""
        return {}

    def _ask(self, stage: str, messages: list[dict[str, str]], read: Callable[[str], tuple[object, str | None]],
             correction: str):
        """Chat and read the reply (:func:`~.reply_parsing.read_query` / :func:`~.reply_parsing.read_prompts`),
        with one corrective retry.

        Returns:
            ``(value, None, None)`` for a usable reply, else ``(None, last reply, problem)``.
        """
        reply = self.chat(messages)
        value, problem = read(reply)
        if problem is None:
            return value, None, None
        log.warning("%s: unusable %s reply (%s); retrying once: %r", self.id, stage, problem, truncate(reply, 200))
        shown = strip_reasoning(reply) or truncate(reply, 2000)
        reply = self.chat(P.retry_messages(messages, truncate(shown, 2000), correction))
        value, problem = read(reply)
        if problem is None:
            return value, None, None
        return None, reply, problem

    def _fail(self, stage: str, reply: str, problem: str, fallback):
        if not self.fallback:
            raise ReformulationError(self.id, stage, reply, problem)
        self.fallbacks = self.fallbacks + 1
        log.warning("%s: unusable %s reply after 1 retry (%s): %r; using the recorded fallback %r "
                    "(%d fallbacks so far)", self.id, stage, problem, truncate(reply, 200), fallback, self.fallbacks)
        return fallback

    def rewrite(self, turns: Sequence[str], *, ref: tuple[str, int] | None = None) -> str:
        """R1: one caption-style query for the dialogue ``turns`` (``ref`` is ignored).

        Args:
            turns: the dialogue so far (caption first, then "question? answer" turns).
            ref: ignored (LLM outputs depend on the text only).

        Returns:
            The query.

        Raises:
            ReformulationError: both replies were unusable and ``fallback`` is off.
        """
        turns = [str(t) for t in turns]
        query, reply, problem = self._ask("R1", P.r1_messages(turns), read_query, P.R1_RETRY)
        if query is None:
            return self._fail("R1", reply, problem, ", ".join(turns))
        return query

    def prompts(self, query: str, k: int) -> list[str]:
        """R2: exactly ``k`` distinct generator prompts for ``query``.

        Args:
            query: the R1 query.
            k: number of prompts.

        Returns:
            ``k`` distinct prompts.

        Raises:
            ReformulationError: both replies were unusable and ``fallback`` is off.
        """
        k = int(k)
        found, reply, problem = self._ask("R2", P.r2_messages(query, k), lambda text: read_prompts(text, k),
                                          P.R2_RETRY.format(k=k))
        if found is None:
            return self._fail("R2", reply, problem, P.template_prompts(query, k))
        return found

    def fingerprint(self) -> str:
        """``"<id>|code-<digest>|<settings JSON>"``: the model id, :func:`code_fingerprint` of the modules that
        turn a dialogue into a usable reply (:data:`REWRITE_MODULES`: templates, protocol, parser) and the
        sampling settings. Cache keys use it, so outputs of older templates or parser code are never replayed."""
        return f"{self.id}|code-{code_fingerprint(*REWRITE_MODULES)}|{json.dumps(self.settings(), sort_keys=True)}"
