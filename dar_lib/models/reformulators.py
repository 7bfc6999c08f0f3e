"""Reformulators: R1 (dialogue -> one caption-style query) and R2 (query -> K generator prompts).

Backends: a local transformers chat model, an OpenAI-compatible HTTP endpoint, a replay of
recorded per-round queries (PlugIR's), the identity (raw dialogue text), and an optional
llama.cpp model. :class:`CachedReformulator` stores every LLM output in the artefact store.

Examples:
    >>> ref = IdentityReformulator()
    >>> ref.rewrite(["a dog on a beach", "is it sunny? yes"])
    'a dog on a beach, is it sunny? yes'
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from . import prompts as P

log = logging.getLogger(__name__)

_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]+|\(?\d+[.):]|\(?[a-zA-Z][.)]|prompt\s*\d+\s*[:.)-])\s*", re.IGNORECASE)


def clean_query(text: str) -> str:
    """First non-empty line of an LLM reply, without quotes or a leading "Query:" label."""
    for line in text.strip().splitlines():
        line = line.strip()
        if line:
            line = re.sub(r"^(?:new\s+)?(?:query|caption)\s*:\s*", "", line, flags=re.IGNORECASE)
            return line.strip().strip('"\u201c\u201d\'').strip()
    return ""


def parse_prompts(text: str, k: int, fallback: str) -> list[str]:
    """Parse K prompts from an LLM reply: one per line, numbering and bullets removed.

    Lines that are empty, duplicates, or preambles ending in ":" are skipped. Too few prompts are
    padded by cycling the parsed ones (or ``fallback`` when none parsed); too many are trimmed.

    Args:
        text: the LLM reply.
        k: number of prompts wanted.
        fallback: prompt used when the reply has none.

    Returns:
        Exactly ``k`` prompts.
    """
    found: list[str] = []
    for line in text.splitlines():
        line = _LIST_MARK.sub("", line.strip()).strip().strip('"\u201c\u201d').strip()
        if not line or line.endswith(":") or line in found:
            continue
        found.append(line)
    if not found:
        found = [fallback]
    while len(found) < k:
        found.append(found[len(found) % max(1, len(found))])
    return found[:k]


class _ChatReformulator:
    """R1/R2 over any ``chat(messages) -> str`` function (shared by the LLM backends)."""

    id: str

    def _chat(self, messages: list[dict[str, str]]) -> str:
        raise NotImplementedError

    def settings(self) -> dict:
        """Sampling settings that determine the output (part of cache keys and fingerprints)."""
        return {}

    def rewrite(self, turns: Sequence[str], *, ref: tuple[str, int] | None = None) -> str:
        """R1: one caption-style query for the dialogue ``turns`` (``ref`` is ignored)."""
        turns = [str(t) for t in turns]
        query = clean_query(self._chat(P.r1_messages(turns)))
        # An empty reply must not become an empty query: fall back to the raw dialogue.
        return query or ", ".join(turns)

    def prompts(self, query: str, k: int) -> list[str]:
        """R2: ``k`` generator prompts for ``query``."""
        return parse_prompts(self._chat(P.r2_messages(query, k)), k, P.template_prompt(query))

    def fingerprint(self) -> str:
        return f"{self.id}|{P.TEMPLATE_VERSION}|{json.dumps(self.settings(), sort_keys=True)}"


class HFChatReformulator(_ChatReformulator):
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
    """

    def __init__(self, model, tokenizer, *, id: str = "hf-llm", revision: str | None = None,
                 device: str | None = None, max_new_tokens: int = 128, do_sample: bool = False,
                 temperature: float = 0.7, seed: int = 0):
        from .. import settings

        self.device = device or settings.default_device()
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.id = f"hf-llm:{id}@{revision or 'unpinned'}"
        self.max_new_tokens = int(max_new_tokens)
        self.do_sample = bool(do_sample)
        self.temperature = float(temperature)
        self.seed = int(seed)

    def settings(self) -> dict:
        s = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            s.update(temperature=self.temperature, seed=self.seed)
        return s

    def _chat(self, messages):
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
        return cls(model, tok, id=str(path_or_id), revision=revision, device=device, **kwargs)


class OpenAIReformulator(_ChatReformulator):
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, vLLM, llama.cpp server, ...).

    Timeouts, connection errors and HTTP 5xx/429 are retried with exponential backoff, up to
    ``max_retries`` times; other 4xx answers, malformed JSON and exhausted retries raise a
    ``RuntimeError`` naming the endpoint.

    Args:
        model: model name sent in the request.
        base_url: server root, e.g. ``https://api.openai.com`` or ``http://localhost:8000/v1``.
        api_key: bearer token; default ``$OPENAI_API_KEY`` (optional for local servers).
        timeout: seconds per request.
        max_retries: retries after the first attempt.
        backoff: first wait in seconds; doubles each retry.
        temperature: sampling temperature (0 = greedy where the server honours it).
        max_tokens: generation budget per reply.
    """

    def __init__(self, model: str, base_url: str = "https://api.openai.com/v1", *, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0, temperature: float = 0.0,
                 max_tokens: int = 256):
        self.model = model
        root = base_url.rstrip("/")
        self.url = root if root.endswith("/chat/completions") else (
            root + "/chat/completions" if root.endswith("/v1") else root + "/v1/chat/completions")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.id = f"openai:{model}@{root}"

    def settings(self) -> dict:
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}

    def _chat(self, messages):
        import requests

        body = {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                resp = requests.post(self.url, json=body, headers=headers, timeout=self.timeout)
            except (requests.Timeout, requests.ConnectionError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                log.warning("%s: attempt %d failed (%s)", self.url, attempt + 1, last)
                continue
            if resp.status_code >= 500 or resp.status_code == 429:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                log.warning("%s: attempt %d failed (%s)", self.url, attempt + 1, last)
                continue
            if resp.status_code >= 400:
                raise RuntimeError(f"{self.url} refused the request: HTTP {resp.status_code}: {resp.text[:500]}")
            try:
                return resp.json()["choices"][0]["message"]["content"] or ""
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                raise RuntimeError(f"{self.url} returned malformed JSON ({type(exc).__name__}: {exc}): "
                                   f"{resp.text[:300]!r}") from exc
        raise RuntimeError(f"{self.url}: no answer after {self.max_retries + 1} attempts; last error: {last}")


class LlamaCppReformulator(_ChatReformulator):
    """A local GGUF model through ``llama-cpp-python`` (optional dependency).

    Args:
        path: the ``.gguf`` file.
        n_ctx: context window.
        max_tokens: generation budget per reply.
        seed: sampling seed (decoding is greedy: temperature 0).
    """

    def __init__(self, path: str | Path, *, n_ctx: int = 4096, max_tokens: int = 256, seed: int = 0):
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ImportError("the gguf: backend needs llama-cpp-python (pip install llama-cpp-python)") from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GGUF model not found: {self.path}")
        self.llm = Llama(model_path=str(self.path), n_ctx=n_ctx, seed=seed, verbose=False)
        self.max_tokens = int(max_tokens)
        self.id = f"gguf:{self.path.name}"

    def settings(self) -> dict:
        return {"max_tokens": self.max_tokens, "temperature": 0.0}

    def _chat(self, messages):
        out = self.llm.create_chat_completion(messages=messages, max_tokens=self.max_tokens, temperature=0.0)
        return out["choices"][0]["message"]["content"] or ""


class ReplayReformulator:
    """Replay recorded per-round queries (e.g. PlugIR's LLM captions) instead of calling an LLM.

    Args:
        table: (target image path, round_idx) -> query.
        id: name for fingerprints (e.g. ``"replay:plugir"``).
        vary_prompts: R2 returns simple template variations instead of K identical copies.
    """

    _VARIANTS = ("{q}. Style: photorealistic.", "A photo of {q}. Style: photorealistic.",
                 "{q}, detailed, natural light. Style: photorealistic.",
                 "A realistic picture showing {q}. Style: photorealistic.")

    #: Lookups are free: the evaluation runner need not cache them.
    cacheable = False

    def __init__(self, table: Mapping[tuple[str, int], str], *, id: str = "replay", vary_prompts: bool = False):
        self.table = dict(table)
        self.id = id
        self.vary_prompts = bool(vary_prompts)

    def rewrite(self, turns: Sequence[str], *, ref: tuple[str, int] | None = None) -> str:
        """The recorded query of ``ref`` = (target image path, round_idx)."""
        if ref is None:
            raise ValueError(f"{self.id}: replay needs ref=(target image path, round_idx) to find the "
                             "recorded query")
        key = (str(ref[0]), int(ref[1]))
        if key not in self.table:
            raise KeyError(f"{self.id}: no recorded query for image {key[0]!r} at round {key[1]} "
                           f"({len(self.table)} recorded)")
        return self.table[key]

    def prompts(self, query: str, k: int) -> list[str]:
        """K copies of the query in the R2 template, or K template variations."""
        q = query.strip().rstrip(".")
        if not self.vary_prompts:
            return [P.template_prompt(q)] * k
        return [self._VARIANTS[i % len(self._VARIANTS)].format(q=q) for i in range(k)]

    def fingerprint(self) -> str:
        return f"{self.id}|n={len(self.table)}|vary={self.vary_prompts}"

    @classmethod
    def from_json(cls, path: str | Path, **kwargs) -> "ReplayReformulator":
        """Read a ChatIR-format JSON list ``[{"img": path, "dialog": [query_r0, query_r1, ...]}]``.

        Each record's ``dialog`` holds the per-round queries; round ``r``'s query is entry ``r``.
        """
        from ..errors import DataError

        path = Path(path)
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read replay queries ({exc})") from exc
        if not isinstance(records, list):
            raise DataError(f"{path}: expected a JSON list of {{'img', 'dialog'}} records")
        table = {}
        for i, rec in enumerate(records):
            if not isinstance(rec, dict) or not isinstance(rec.get("img"), str) or not isinstance(rec.get("dialog"), list):
                raise DataError(f"{path}: record {i} is not {{'img': str, 'dialog': [str, ...]}}")
            for round_idx, q in enumerate(rec["dialog"]):
                table[(rec["img"], round_idx)] = str(q)
        kwargs.setdefault("id", f"replay:{path.name}")
        return cls(table, **kwargs)


class IdentityReformulator:
    """No LLM: the query is the raw dialogue ``", ".join(turns)``; R2 returns K copies of it."""

    id = "identity"
    cacheable = False

    def rewrite(self, turns: Sequence[str], *, ref: tuple[str, int] | None = None) -> str:
        return ", ".join(str(t) for t in turns)

    def prompts(self, query: str, k: int) -> list[str]:
        return [query] * k

    def fingerprint(self) -> str:
        return "identity"


class CachedReformulator:
    """Store every R1/R2 output in an ``ArtefactStore`` keyed by the reformulator's fingerprint
    (model id, template version, sampling settings) and the full input.

    Args:
        reformulator: the wrapped reformulator.
        store: the artefact store.
    """

    KIND = "llm"

    def __init__(self, reformulator, store):
        self.reformulator = reformulator
        self.store = store
        self.id = reformulator.id
        self.hits = 0
        self.misses = 0

    def fingerprint(self) -> str:
        return self.reformulator.fingerprint()

    def _cached(self, key_parts: dict, fn: Callable[[], object]):
        key = self.store.key(self.KIND, model=self.fingerprint(), **key_parts)
        value = self.store.get_json(self.KIND, key)
        if value is None:
            self.misses += 1
            value = {"output": fn()}
            self.store.put_json(self.KIND, key, value)
        else:
            self.hits += 1
        return value["output"]

    def rewrite(self, turns: Sequence[str], *, ref: tuple[str, int] | None = None) -> str:
        parts = {"stage": "R1", "turns": [str(t) for t in turns]}
        # LLM outputs depend on the text only; other adapters (replay, toy) may read ``ref``.
        if not isinstance(self.reformulator, (_ChatReformulator, IdentityReformulator)):
            parts["ref"] = None if ref is None else [str(ref[0]), int(ref[1])]
        return self._cached(parts, lambda: self.reformulator.rewrite(turns, ref=ref))

    def prompts(self, query: str, k: int) -> list[str]:
        return self._cached({"stage": "R2", "query": query, "k": int(k)},
                            lambda: list(self.reformulator.prompts(query, k)))
