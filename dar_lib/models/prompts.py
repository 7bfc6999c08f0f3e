"""The R1 and R2 prompt templates of DAR's reformulators, written for this project from the paper."""

from __future__ import annotations

from typing import Sequence

#: Version tag of the templates; part of every reformulator fingerprint so a changed template
#: never reuses cached LLM outputs.
TEMPLATE_VERSION = "dar-prompts-v1"

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
