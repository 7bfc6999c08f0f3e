"""The ``gguf:`` reformulator backend: a local GGUF model through llama-cpp-python (optional dependency)."""

from __future__ import annotations

from pathlib import Path

from dar_lib.cachekeys import weights_digest
from dar_lib.errors import MissingDependencyError
from dar_lib.models.reformulate.chat_protocol import ChatReformulator


class LlamaCppReformulator(ChatReformulator):
    """A local GGUF model through ``llama-cpp-python`` (optional dependency).

    Args:
        path: the ``.gguf`` file.
        n_ctx: context window.
        max_tokens: generation budget per reply.
        seed: sampling seed (decoding is greedy: temperature 0).
        fallback: on a reply still unusable after one retry, return a recorded fallback instead of
            raising :class:`ReformulationError` (default ``False``; see :class:`~.chat_protocol.ChatReformulator`).
    """

    def __init__(self, path: str | Path, *, n_ctx: int = 4096, max_tokens: int = 256, seed: int = 0,
                 fallback: bool = False):
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # a MissingDependencyError: one line from the CLI, exit 2
            raise MissingDependencyError("the gguf: backend needs llama-cpp-python "
                                         "(pip install llama-cpp-python)") from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GGUF model not found: {self.path}")
        self.llm = Llama(model_path=str(self.path), n_ctx=n_ctx, seed=seed, verbose=False)
        self.max_tokens = int(max_tokens)
        self.fallback = bool(fallback)

        # The file's content, not its name, names the model: two files called model.gguf never share outputs.
        self.id = f"gguf:{self.path.name}#{weights_digest(self.path)}"

    def settings(self) -> dict:
        """``max_tokens`` and the fixed ``temperature`` 0.0 (part of the fingerprint)."""
        return {"max_tokens": self.max_tokens, "temperature": 0.0}

    def chat(self, messages):
        """One greedy (temperature 0) ``create_chat_completion`` call on the loaded GGUF model.

        Args:
            messages: OpenAI-style ``{"role", "content"}`` messages.

        Returns:
            The reply text, unparsed (``""`` when the model returns no content).
        """
        out = self.llm.create_chat_completion(messages=messages, max_tokens=self.max_tokens, temperature=0.0)
        return out["choices"][0]["message"]["content"] or ""
