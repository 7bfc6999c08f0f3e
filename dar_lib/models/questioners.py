"""Questioners (Algorithm 1, line 3): ask the next question about the target image.

- ``toy``: the toy world's questioner: asks about an attribute the dialogue has not settled yet,
  preferring the one that best splits the current top candidates.
- ``hf-llm:<id>`` / ``openai:<model>@<url>``: an LLM writes the next question from the dialogue so
  far, as ChatIR's questioner bots do.

Every questioner has ``ask(turns, last=None) -> str`` where ``last`` is the previous
:class:`~dar_lib.pipeline.TurnResult` (its top-ranked corpus ids), or ``None``.
"""

from __future__ import annotations

from typing import Sequence

from dar_lib.benchmarks import toyworld as tw
from dar_lib.models.prompts import format_dialogue

QUESTION_SYSTEM = (
    "You are helping a user find one specific image in a large collection. You cannot see the "
    "image; the user can."
)

QUESTION_TEMPLATE = """Here is the conversation so far. The first line is the user's description of the \
image; each later line is a question you asked and the user's answer.

{dialogue}

Ask ONE new short question about the image whose answer would best narrow down the search. Do not \
repeat a question that was already asked or whose answer is already known. Reply with the question \
only."""


def question_messages(turns: Sequence[str]) -> list[dict[str, str]]:
    """Chat messages asking an LLM for the next question."""

    return [{"role": "system", "content": QUESTION_SYSTEM},
            {"role": "user", "content": QUESTION_TEMPLATE.format(dialogue=format_dialogue(turns))}]


def clean_question(text: str) -> str:
    """First non-empty line of the reply, without quotes or a 'Question:' label, ending in '?'."""
    for line in text.strip().splitlines():
        line = line.strip().strip('"').strip()
        for label in ("question:", "q:"):
            if line.lower().startswith(label):
                line = line[len(label):].strip()
        if line:
            return line if line.endswith("?") else line.rstrip(".") + "?"
    return "what else can you tell me about the image?"


class LLMQuestioner:
    """Ask the next question with any chat backend of :mod:`dar_lib.models.reformulate`.

    Args:
        chat: an LLM reformulator (``hf-llm`` or ``openai`` backend): its chat call is reused.
    """

    def __init__(self, chat):
        if not hasattr(chat, "chat"):
            raise TypeError(f"{type(chat).__name__} has no chat backend; use an hf-llm or openai id")
        self.chat = chat
        self.id = f"questioner:{chat.id}"

    def ask(self, turns: Sequence[str], last=None) -> str:
        """The next question: one chat call on :func:`question_messages`, cleaned by :func:`clean_question`.

        Args:
            turns: the dialogue so far (caption first, then "question? answer" turns).
            last: ignored (the LLM sees the text only).

        Returns:
            One question ending in ``"?"``; a generic question when the reply is empty.

        Raises:
            RuntimeError: the ``openai`` endpoint failed (raised by the backend's ``chat``; the
                reply itself is never validated or retried).
            ValueError: the ``hf-llm`` tokenizer has no chat template.
        """
        return clean_question(self.chat.chat(question_messages(list(turns))))


class ToyQuestioner:
    """The toy world's questioner over a corpus of scenes (the candidates are the last top-k)."""

    def __init__(self, scenes):
        self._q = tw.ToyQuestioner()
        self.scenes = scenes
        self.id = "questioner:toy"

    def ask(self, turns: Sequence[str], last=None) -> str:
        """The next question from :class:`~dar_lib.benchmarks.toyworld.ToyQuestioner`.

        Args:
            turns: the dialogue so far (caption first, then "question? answer" turns).
            last: the previous ``TurnResult``; the scenes of its ``top_ids`` are the candidates the
                question should split. ``None`` or empty ``top_ids``: the fixed question order.

        Returns:
            A question ending in ``"?"``, in the toy world's vocabulary.
        """
        candidates = None
        if last is not None and len(last.top_ids):
            candidates = [self.scenes[int(i)] for i in last.top_ids]
        return self._q.ask(list(turns), candidates)
