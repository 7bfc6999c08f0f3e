"""The R1 and R2 prompt templates of DAR's reformulators, written for this project from the paper."""

from __future__ import annotations

import functools
import re
from typing import Sequence

R1_SYSTEM = (
    "You help a user find one specific image in a large collection of photographs. "
    "You turn a conversation about the image into a single search query."
)

R1_TEMPLATE = """Below is a dialogue describing a target image. The first line is the user's initial \
description; each later line is a question about the image followed by its answer.

Dialogue:
{dialogue}

Do three things:
1. Summarise what the dialogue says about the image.
2. Separate the initial description from the details that the later questions and answers add \
(keep details that were confirmed, drop those that were denied or unknown).
3. Write ONE new query: a concise, caption-style description in a form suited to retrieve the \
target image from a pool of candidate images.

Reply with the final query only, on one line, without quotes or explanations."""

R2_SYSTEM = (
    "You write prompts for a text-to-image diffusion model so that it draws the image a search "
    "query describes."
)

R2_TEMPLATE = """Query: {query}

Write {k} distinct prompts for a text-to-image model that depict this query. Each prompt follows \
the pattern:
[Adjective] [Primary Subject] in [Setting], [Key Details]. Style: photorealistic.

Vary the wording and the amount of detail between prompts, but never add facts the query does not \
state. Reply with exactly {k} lines, one prompt per line, nothing else."""


def format_dialogue(turns: Sequence[str]) -> str:
    """Render the dialogue turns (caption first, then "question? answer") one per line."""
    return "\n".join(f"- {t.strip()}" for t in turns)


def r1_messages(turns: Sequence[str]) -> list[dict[str, str]]:
    """Chat messages asking for the R1 rewrite of ``turns``."""
    return [
        {"role": "system", "content": R1_SYSTEM},
        {"role": "user", "content": R1_TEMPLATE.format(dialogue=format_dialogue(turns))},
    ]


def r2_messages(query: str, k: int) -> list[dict[str, str]]:
    """Chat messages asking for ``k`` R2 generator prompts for ``query``."""
    return [
        {"role": "system", "content": R2_SYSTEM},
        {"role": "user", "content": R2_TEMPLATE.format(query=query.strip(), k=k)},
    ]


def template_prompt(query: str) -> str:
    """The R2 pattern filled in mechanically (for adapters without an LLM)."""
    q = query.strip().rstrip(".")
    return f"{q}. Style: photorealistic."


#: Corrective user messages of the single retry after an unusable reply (see
#: ``reformulate.ChatReformulator``): a greedy decoder given the same messages would repeat itself.
R1_RETRY = ("That reply is not a usable query. Reply with the final query only: one line describing the "
            "image, without steps, labels, quotes or explanations.")

R2_RETRY = ("That reply is not usable. Reply with exactly {k} distinct prompts, one per line, without "
            "numbering, headings or explanations.")


def retry_messages(messages: Sequence[dict[str, str]], reply: str, correction: str) -> list[dict[str, str]]:
    """The messages of a retry: the original ones, the unusable reply, then a correction.

    The reply is kept as an assistant turn so that user and assistant turns still alternate
    (some chat templates refuse two user turns in a row).

    Args:
        messages: the messages of the first call.
        reply: the unusable reply (reasoning already stripped).
        correction: the corrective user message (``R1_RETRY`` or ``R2_RETRY`` filled in).

    Returns:
        A new list of chat messages; ``messages`` is not modified.
    """
    return [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": correction}]


_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


@functools.lru_cache(maxsize=None)
def instruction_fragments(stage: str) -> tuple[str, ...]:
    """The instruction sentences of a stage's system prompt and template, for echo detection.

    The text is split at sentence ends, colons, semicolons, commas, brackets and placeholders;
    fragments of fewer than four words are dropped (too common to mean an echo).

    Args:
        stage: ``"R1"`` or ``"R2"``.

    Returns:
        The fragments, in template order.

    Raises:
        ValueError: ``stage`` is neither ``"R1"`` nor ``"R2"``.
    """
    texts = {"R1": (R1_SYSTEM, R1_TEMPLATE, R1_RETRY), "R2": (R2_SYSTEM, R2_TEMPLATE, R2_RETRY)}
    if stage not in texts:
        raise ValueError(f"unknown stage {stage!r}; use 'R1' or 'R2'")
    out: list[str] = []
    for text in texts[stage]:
        for piece in re.split(r"(?<=[.!?])\s+|[:;,()\n]|\{[a-z_]+\}|^\s*\d+\.\s", text, flags=re.MULTILINE):
            piece = (piece or "").strip().strip(".").strip()
            if len(re.findall(r"[A-Za-z0-9]+", piece)) >= 4 and piece not in out:
                out.append(piece)
    return tuple(out)


def template_placeholders() -> tuple[str, ...]:
    """The bracketed slots of the R2 pattern (``[Adjective]``, ...): a prompt must fill them in."""
    return tuple(dict.fromkeys(re.findall(r"\[[^\]\n]+\]", R2_TEMPLATE)))


_VARIANTS = ("A photo of {q}.", "A realistic picture showing {q}.", "A photograph of {q}, in sharp focus.",
             "{q}, high detail.", "An image of {q}, natural colours.")


def template_prompts(query: str, k: int) -> list[str]:
    """``k`` distinct prompts made from the R2 pattern without an LLM (the recorded R2 fallback).

    The first is :func:`template_prompt`; the next ones reword it, never adding facts.

    Args:
        query: the R1 query.
        k: number of prompts.

    Returns:
        ``k`` distinct prompts, each ending in "Style: photorealistic."
    """
    q = query.strip().rstrip(".")
    out = [template_prompt(q)]
    for i in range(1, k):
        if i <= len(_VARIANTS):
            body = _VARIANTS[i - 1].format(q=q).rstrip(".")
        else:
            body = f"{q}, variation {i + 1}"
        out.append(f"{body}. Style: photorealistic.")
    return out[:max(0, k)]
