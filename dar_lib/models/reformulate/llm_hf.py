"""The ``hf-llm:`` reformulator backend: a local transformers chat model."""

from __future__ import annotations

from dar_lib import settings
from dar_lib.cachekeys import local_revision
from dar_lib.models.reformulate.chat_protocol import ChatReformulator


class HFChatReformulator(ChatReformulator):
    """A transformers causal LM with a chat template.

    Args:
        model: a loaded causal LM.
        tokenizer: its tokenizer, with a chat template.
        id: model id (for fingerprints).
        revision: model revision.
        device: torch device (default ``settings.default_device()``).
        max_new_tokens: generation budget per reply.
        do_sample: sample instead of greedy decoding (default greedy, reproducible).
        temperature: sampling temperature (only when sampling).
        seed: torch seed set before each sampled generation.
        fallback: on a reply still unusable after one retry, return a recorded fallback instead of
            raising :class:`ReformulationError` (default ``False``; see :class:`~.chat_protocol.ChatReformulator`).
    """

    def __init__(self, model, tokenizer, *, id: str = "hf-llm", revision: str | None = None,
                 device: str | None = None, max_new_tokens: int = 128, do_sample: bool = False,
                 temperature: float = 0.7, seed: int = 0, fallback: bool = False):
        self.device = device or settings.default_device()
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.id = f"hf-llm:{id}@{revision or 'unpinned'}"
        self.max_new_tokens = int(max_new_tokens)
        self.do_sample = bool(do_sample)
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.fallback = bool(fallback)

    def settings(self) -> dict:
        """``max_new_tokens`` and ``do_sample``, plus ``temperature`` and ``seed`` when sampling (part of the
        fingerprint)."""
        s = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            s.update(temperature=self.temperature, seed=self.seed)
        return s

    def chat(self, messages):
        """One local chat completion: the decoded new tokens of the model's reply to ``messages``.

        The tokenizer's chat template is applied with a generation prompt; decoding is greedy, or
        sampled at ``temperature`` after ``torch.manual_seed(seed)`` when ``do_sample`` is set.

        Args:
            messages: OpenAI-style ``{"role", "content"}`` messages.

        Returns:
            The reply text, special tokens skipped, otherwise unparsed (it may hold reasoning blocks).

        Raises:
            ValueError: the tokenizer has no chat template.
        """
        import torch

        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{self.id}: the tokenizer has no chat template; use an instruct/chat model")
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        ids = {k: v.to(self.device) for k, v in ids.items()}
        gen_kwargs = dict(max_new_tokens=self.max_new_tokens, do_sample=self.do_sample)
        if self.do_sample:
            torch.manual_seed(self.seed)
            gen_kwargs["temperature"] = self.temperature
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(**ids, pad_token_id=pad, **gen_kwargs)
        new = out[0, ids["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True)

    @classmethod
    def from_pretrained(cls, path_or_id: str, revision: str | None = None, *, device: str | None = None,
                        dtype=None, trust_remote_code: bool = False, **kwargs) -> "HFChatReformulator":
        """Load a chat model and its tokenizer (hub id or local folder)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path_or_id), revision=revision, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(str(path_or_id), revision=revision, dtype=dtype or "auto",
                                                     trust_remote_code=trust_remote_code)

        return cls(model, tok, id=str(path_or_id), revision=local_revision(path_or_id) or revision, device=device,
                   **kwargs)
