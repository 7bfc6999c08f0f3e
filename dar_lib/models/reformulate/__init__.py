"""Reformulators: R1 (dialogue -> one caption-style query) and R2 (query -> K generator prompts).

One module per job, their public names here: reply parsing (``reply_parsing``, pure functions), the
retry/fallback chat protocol (``chat_protocol``), the LLM backends (``llm_hf``: a local transformers
chat model; ``llm_openai``: an OpenAI-compatible HTTP endpoint; ``llm_gguf``: an optional llama.cpp
model), the replay of recorded per-round queries (PlugIR's) and the identity (raw dialogue text)
(``replay``), and :class:`CachedReformulator`, which stores every LLM output in the artefact store
(``cached``). Import them from ``dar_lib.models.reformulate``.

Examples:
    >>> ref = IdentityReformulator()
    >>> ref.rewrite(["a dog on a beach", "is it sunny? yes"])
    'a dog on a beach, is it sunny? yes'
"""

from __future__ import annotations

from dar_lib.models.reformulate.cached import CachedReformulator
from dar_lib.models.reformulate.chat_protocol import REWRITE_MODULES, ChatReformulator, ReformulationError
from dar_lib.models.reformulate.llm_gguf import LlamaCppReformulator
from dar_lib.models.reformulate.llm_hf import HFChatReformulator
from dar_lib.models.reformulate.llm_openai import OpenAIReformulator
from dar_lib.models.reformulate.replay import IdentityReformulator, ReplayReformulator
from dar_lib.models.reformulate.reply_parsing import (
                                                      check_prompts,
                                                      check_query,
                                                      clean_query,
                                                      parse_prompts,
                                                      read_prompts,
                                                      read_query,
                                                      strip_reasoning,
)

__all__ = ["CachedReformulator", "ChatReformulator", "HFChatReformulator", "IdentityReformulator",
           "LlamaCppReformulator", "OpenAIReformulator", "REWRITE_MODULES", "ReformulationError",
           "ReplayReformulator", "check_prompts", "check_query", "clean_query", "parse_prompts", "read_prompts",
           "read_query", "strip_reasoning"]
