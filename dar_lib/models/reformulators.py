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

import dar_lib.models.prompts as P
from dar_lib.errors import EndpointError, MissingDependencyError

log = logging.getLogger(__name__)

#: Version of the reply parser and of the validate-retry protocol below. It is part of every chat
#: reformulator's fingerprint, so outputs cached by an older parser are never replayed.
PARSER_VERSION = "parse-v2"


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
        super().__init__(f"{model_id}: unusable {stage} reply after 1 retry ({problem}): {_truncate(reply)!r}")


def _truncate(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n] + f"... [{len(text) - n} more characters]"


_LIST_MARK = re.compile(r"^\s*(?:[-*+\u2022\u2023\u25cf\u25aa]+\s*|\(?\d{1,2}\s*[.):](?!\d)\s*|\(?[a-zA-Z][.)]\s+"
                        r"|(?:prompt|option|variant)\s*#?\s*\d*\s*[:.)\u2013\u2014-]\s*)", re.IGNORECASE)
_REASONING = r"(?:think|thinking|thought|reasoning)"
_THINK_BLOCK = re.compile(rf"<({_REASONING})\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_THINK_CLOSE = re.compile(rf"</{_REASONING}\s*>", re.IGNORECASE)
_THINK_OPEN = re.compile(rf"<{_REASONING}\b[^>]*>", re.IGNORECASE)
_FENCE = re.compile(r"^\s*(?:```|~~~)[\w+-]*\s*$")
_CHATTER = (r"(?:sure(?:\s+thing)?|certainly|of\s+course|okay|ok|absolutely|alright|all\s+right|great|got\s+it"
            r"|no\s+problem|understood|yes|done)")
_CHATTER_ONLY = re.compile(rf"^{_CHATTER}[\s!.,]*$", re.IGNORECASE)
_CHATTER_LEAD = re.compile(rf"^{_CHATTER}\s*[!.,]+\s*", re.IGNORECASE)
_NOUN = r"(?:quer(?:y|ies)|prompts?|captions?|rewrites?|search\s+terms?)"
#: "Here is the query:", "Query:", "New query:", "Final query:", "Here are 3 prompts:", "Prompts:"...
_PREAMBLE_LABEL = re.compile(
    rf"^(?:{_CHATTER}\s*[!.,]*\s*)?(?:(?:here(?:'s|\u2019s|\s+is|\s+are)|below\s+(?:is|are)|the\s+following)\b[^:]{{0,80}}"
    r"|(?:(?:the|my|your)\s+)?(?:(?:final|new|rewritten|refined|improved|resulting|concise|single|search|retrieval)\s+)*"
    rf"{_NOUN}(?:\s*\([^)]*\))?)\s*[:\u2013\u2014]\s*", re.IGNORECASE)
#: A whole line announcing what follows without a colon: "Here are three prompts."
_HERE_LINE = re.compile(rf"^(?:{_CHATTER}\s*[!.,]*\s*)?(?:here(?:'s|\u2019s|\s+is|\s+are)|below\s+(?:is|are)"
                        rf"|the\s+following)\s+(?:[\w-]+\s+){{0,3}}{_NOUN}\b[^.]*[.!:]?$", re.IGNORECASE)
_POSTAMBLE = re.compile(r"^(?:i\s+hope|hope\s+this|let\s+me\s+know|feel\s+free|note\b|explanation\b|reasoning\b"
                        r"|(?:this|these|the\s+above|each\s+of\s+these)\s+(?:new\s+|final\s+)?"
                        r"(?:query|queries|prompts?|captions?)\b)", re.IGNORECASE)
#: Echoed R1 steps 1 and 2 ("1. Summary: ...", "Separation: ...").
_STEP_LABEL = re.compile(r"^(?:(?:step\s*)?[12]\s*[.):]\s*)?(?:summary|summari[sz](?:e|ation)|separation|separate"
                         r"|initial(?:\s+description)?|(?:added|new|extra|confirmed|additional)?\s*details?"
                         r"|confirmed|denied|unknown|analysis|dialogue)\b[^:]{0,40}:", re.IGNORECASE)
_STEP3 = re.compile(r"^(?:step\s*)?3\s*[.):]\s*", re.IGNORECASE)
_QUERY_WORD = re.compile(r"\b(?:query|caption)\b", re.IGNORECASE)
#: "new query:" / "final query:" inside a line (steps echoed on one line).
_MIDLINE_LABEL = re.compile(r"(?:^|[\s.;,])(?:final|new|rewritten|refined)\s+(?:search\s+)?(?:query|caption)"
                            r"\s*:\s*(?=\S)", re.IGNORECASE)
_QUOTES = {'"': '"', "\u201c": "\u201d", "\u201e": "\u201c", "\u00ab": "\u00bb", "'": "'", "\u2018": "\u2019",
           "`": "`"}


def strip_reasoning(text: str) -> str:
    """Remove reasoning blocks from an LLM reply.

    ``<think>...</think>`` blocks (also ``thinking``, ``thought``, ``reasoning``) are removed; after
    that, everything up to a lone closing tag is reasoning (the server swallowed the opening tag),
    and everything from a lone opening tag on is unfinished reasoning.

    Args:
        text: the raw reply.

    Returns:
        The reply without reasoning (possibly empty).
    """
    text = _THINK_BLOCK.sub("\n", text or "")
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    opened = _THINK_OPEN.search(text)
    if opened:
        text = text[:opened.start()]
    return text.strip()


def _split_inline_list(line: str) -> list[str]:
    """Split "1. a 2. b 3. c" written on one line into its items (numbers must count up from 1)."""
    if not re.match(r"^\(?1\s*[.)]\s", line):
        return [line]
    cuts, expect = [], 2
    for m in re.finditer(r"(?<=\s)\(?(\d{1,2})\s*[.)]\s", line):
        if int(m.group(1)) == expect:
            cuts.append(m.start())
            expect += 1
    if not cuts:
        return [line]
    bounds = [0, *cuts, len(line)]
    return [line[a:b].strip() for a, b in zip(bounds, bounds[1:]) if line[a:b].strip()]


def _lines(text: str) -> list[str]:
    """Content lines of a reply: reasoning, code fences, markdown emphasis and headings removed."""
    out = []
    for raw in strip_reasoning(text).splitlines():
        if _FENCE.match(raw):
            continue
        line = re.sub(r"^#{1,6}\s+", "", raw.replace("**", "").replace("__", "").strip()).strip()
        out.extend(_split_inline_list(line) if line else [])
    return out


def _unquote(text: str) -> str:
    """Remove surrounding quote pairs (and a lone double quote at one end)."""
    s = text.strip()
    while True:
        m = re.match(r"^(.)(.*)(.)(\.?)$", s, flags=re.DOTALL)
        if len(s) >= 2 and m and _QUOTES.get(m.group(1)) == m.group(3):
            s = m.group(2).strip()
            continue
        break
    for q in ('"', "\u201c", "\u201d"):
        if s.count(q) == 1 and (s.startswith(q) or s.endswith(q)):
            s = s.replace(q, "").strip()
    return s


def _is_preamble(line: str) -> bool:
    """Whether a whole line is a preamble, a bare label or chatter ("Sure! Here is the query:")."""
    s = line.strip()
    return (not s or s.endswith(":") or bool(_CHATTER_ONLY.match(s)) or bool(_HERE_LINE.match(s))
            or bool(_PREAMBLE_LABEL.match(s) and not _PREAMBLE_LABEL.sub("", s, count=1).strip()))


def _clean_value(text: str) -> str:
    """One candidate answer without list marks, preambles, labels, chatter or quotes."""
    s = _LIST_MARK.sub("", text.strip(), count=1).strip()
    for _ in range(3):  # "Sure! Query: "a red dog"" needs several passes
        before = s
        s = _CHATTER_LEAD.sub("", s, count=1).strip()
        s = _PREAMBLE_LABEL.sub("", s, count=1).strip()
        s = _unquote(s)
        if s == before:
            break
    return re.sub(r"\s+", " ", s).strip()


def clean_query(text: str) -> str:
    """Parse the R1 query out of an LLM reply.

    Reasoning blocks, code fences, markdown, preambles ("Sure! Here is the query:"), list marks and
    surrounding quotes are removed. An explicitly labelled query wins: "Query:", "New query:",
    "Final query:", the third echoed template step ("3. ..."), or the line after a label line such
    as "Here is the query:" (the last such label when there are several). Otherwise the answer is
    the last line that is not a preamble, an echoed step ("1. Summary: ...") or a closing remark.

    Args:
        text: the LLM reply.

    Returns:
        The query, or ``""`` when the reply has none (see :func:`check_query`).

    Examples:
        >>> clean_query("1. Summary: a dog.\\n2. Details: red.\\n3. New query: a red dog on grass")
        'a red dog on grass'
    """
    lines = _lines(text)
    labelled: str | None = None
    candidates: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        step3 = _STEP3.match(line)
        body = line[step3.end():] if step3 else _LIST_MARK.sub("", line, count=1).strip()
        body = _CHATTER_LEAD.sub("", body, count=1).strip()
        label = _PREAMBLE_LABEL.match(body)
        if label and not _QUERY_WORD.search(label.group(0)) and not re.match(r"(?i)here|below|the\s+following", body):
            label = None  # "Prompts:" is not a query label
        if label is None:
            mid = list(_MIDLINE_LABEL.finditer(body))
            if mid:
                label = mid[-1]
        if label is not None or step3:
            value = _clean_value(body[label.end():]) if label is not None else _clean_value(body)
            if not value:  # a bare label: the query is on the next content line
                while i < len(lines) and _is_preamble(lines[i]):
                    i += 1
                if i < len(lines):
                    value = _clean_value(lines[i])
                    i += 1
            if value:
                labelled = value
            continue
        if _is_preamble(line) or _STEP_LABEL.match(line) or _POSTAMBLE.match(body):
            continue
        value = _clean_value(line)
        if value and not _is_preamble(value):
            candidates.append(value)
    if labelled:
        return labelled
    return candidates[-1] if candidates else ""


def _key(text: str) -> str:
    """Comparison key: case, spacing and a final full stop do not make two prompts distinct."""
    return re.sub(r"\s+", " ", text).strip().rstrip(".").casefold()


def parse_prompts(text: str) -> list[str]:
    """Parse the R2 prompts out of an LLM reply: one per line, in order, duplicates dropped.

    Reasoning blocks, code fences, markdown, preambles ("Here are 3 prompts:"), label lines
    ("Prompt 1:"), an echoed "Query: ..." line, closing remarks, numbering, bullets and surrounding
    quotes are removed. The result is not padded or trimmed: :func:`check_prompts` decides whether
    it is usable.

    Args:
        text: the LLM reply.

    Returns:
        The distinct prompts found (possibly fewer or more than were asked for).
    """
    found: list[str] = []
    seen: set[str] = set()
    for line in _lines(text):
        body = _LIST_MARK.sub("", line, count=1).strip()
        if (_is_preamble(line) or _is_preamble(body) or _POSTAMBLE.match(body)
                or re.match(r"(?i)^query\s*:", body)):
            continue
        value = _clean_value(body)
        if not value or _is_preamble(value) or _key(value) in seen:
            continue
        seen.add(_key(value))
        found.append(value)
    return found


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _echo(text: str, stage: str) -> str | None:
    """The instruction fragment of ``stage`` that ``text`` repeats (or is a piece of), if any."""
    w = _words(text)
    if not w:
        return None
    for frag in P.instruction_fragments(stage):
        f = _words(frag)
        if f" {f} " in f" {w} " or (len(w.split()) >= 3 and f" {w} " in f" {f} "):
            return frag
    return None


def check_query(query: str) -> str | None:
    """Why an R1 query is unusable, or ``None`` when it is fine.

    Args:
        query: a query parsed by :func:`clean_query`.

    Returns:
        ``None``, or the reason: empty, a preamble, leftover reasoning tags, an echoed template
        step, or an echo of the R1 instructions.
    """
    q = query.strip()
    if not q:
        return "empty query"
    if _THINK_OPEN.search(q) or _THINK_CLOSE.search(q):
        return f"leftover reasoning tags in {_truncate(q, 120)!r}"
    if _is_preamble(q):
        return f"a preamble, not a query: {_truncate(q, 120)!r}"
    if _STEP_LABEL.match(q):
        return f"an echoed template step, not a query: {_truncate(q, 120)!r}"
    echo = _echo(q, "R1")
    if echo:
        return f"echoes the instructions ({echo!r}): {_truncate(q, 120)!r}"
    return None


def check_prompts(prompts: Sequence[str], k: int) -> str | None:
    """Why a list of R2 prompts is unusable, or ``None`` when it is fine.

    Args:
        prompts: prompts parsed by :func:`parse_prompts`.
        k: the number asked for.

    Returns:
        ``None``, or the reason: not exactly ``k`` distinct non-empty prompts, or a prompt that
        is a preamble, keeps reasoning tags, leaves the pattern's ``[slots]`` unfilled, has nothing
        but the style suffix, or echoes the R2 instructions.
    """
    if len({_key(p) for p in prompts}) != len(prompts):
        return f"duplicate prompts in {[_truncate(p, 60) for p in prompts]!r}"
    if len(prompts) != k:
        return f"expected {k} distinct prompts, got {len(prompts)}"
    for i, p in enumerate(prompts):
        if not p.strip():
            return f"prompt {i} is empty"
        if _THINK_OPEN.search(p) or _THINK_CLOSE.search(p):
            return f"prompt {i} has leftover reasoning tags: {_truncate(p, 120)!r}"
        if _is_preamble(p):
            return f"prompt {i} is a preamble: {_truncate(p, 120)!r}"
        slots = [s for s in P.template_placeholders() if s.lower() in p.lower()]
        if slots:
            return f"prompt {i} leaves the pattern's slots {slots} unfilled: {_truncate(p, 120)!r}"
        if not _words(re.sub(r"(?i)style\s*:\s*photorealistic", "", p)):
            return f"prompt {i} has nothing but the style suffix: {p!r}"
        echo = _echo(p, "R2")
        if echo:
            return f"prompt {i} echoes the instructions ({echo!r}): {_truncate(p, 120)!r}"
    return None


class _ChatReformulator:
    """R1/R2 over any ``chat(messages) -> str`` backend (shared by the LLM backends).

    Every reply is parsed structurally (:func:`clean_query`, :func:`parse_prompts`) and validated
    (:func:`check_query`, :func:`check_prompts`). An unusable reply is retried once with the same
    messages plus the reply as an assistant turn and a short corrective user message
    (``prompts.R1_RETRY`` / ``prompts.R2_RETRY``), because a greedy decoder given the very same
    messages would repeat itself. If the retry is unusable too:

    - by default (``fallback=False``) a :class:`ReformulationError` is raised: a substituted output
      would silently turn the measured method into another one (an R1 fallback *is* the identity
      baseline), so an evaluation must opt in to it;
    - with ``fallback=True`` a recorded fallback is returned (R1: the raw dialogue joined with
      ``", "``; R2: ``prompts.template_prompts(query, k)``), ``fallbacks`` is incremented and a
      warning is logged. :class:`CachedReformulator` never stores a fallback or a failure.

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

    def _ask(self, stage: str, messages: list[dict[str, str]], parse: Callable[[str], object],
             check: Callable[[object], str | None], correction: str):
        """Chat, parse and validate, with one corrective retry.

        Returns:
            ``(value, None, None)`` for a usable reply, else ``(None, last reply, problem)``.
        """
        reply = self.chat(messages)
        value = parse(reply)
        problem = check(value)
        if problem is None:
            return value, None, None
        log.warning("%s: unusable %s reply (%s); retrying once: %r", self.id, stage, problem, _truncate(reply, 200))
        shown = strip_reasoning(reply) or _truncate(reply, 2000)
        reply = self.chat(P.retry_messages(messages, _truncate(shown, 2000), correction))
        value = parse(reply)
        problem = check(value)
        if problem is None:
            return value, None, None
        return None, reply, problem

    def _fail(self, stage: str, reply: str, problem: str, fallback):
        if not self.fallback:
            raise ReformulationError(self.id, stage, reply, problem)
        self.fallbacks = self.fallbacks + 1
        log.warning("%s: unusable %s reply after 1 retry (%s): %r; using the recorded fallback %r "
                    "(%d fallbacks so far)", self.id, stage, problem, _truncate(reply, 200), fallback, self.fallbacks)
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
        query, reply, problem = self._ask("R1", P.r1_messages(turns), clean_query, check_query, P.R1_RETRY)
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
        found, reply, problem = self._ask("R2", P.r2_messages(query, k), parse_prompts,
                                          lambda ps: check_prompts(ps, k), P.R2_RETRY.format(k=k))
        if found is None:
            return self._fail("R2", reply, problem, P.template_prompts(query, k))
        return found

    def fingerprint(self) -> str:
        """Model id, template and parser versions, and sampling settings (cache keys use it)."""
        return f"{self.id}|{P.TEMPLATE_VERSION}|{PARSER_VERSION}|{json.dumps(self.settings(), sort_keys=True)}"


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
        fallback: on a reply still unusable after one retry, return a recorded fallback instead of
            raising :class:`ReformulationError` (default ``False``; see :class:`_ChatReformulator`).
    """

    def __init__(self, model, tokenizer, *, id: str = "hf-llm", revision: str | None = None,
                 device: str | None = None, max_new_tokens: int = 128, do_sample: bool = False,
                 temperature: float = 0.7, seed: int = 0, fallback: bool = False):
        from .. import settings

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
        """``max_new_tokens`` and ``do_sample``, plus ``temperature`` and ``seed`` when sampling (part of the fingerprint)."""
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
        from dar_lib.cachekeys import local_revision

        return cls(model, tok, id=str(path_or_id), revision=local_revision(path_or_id) or revision, device=device,
                   **kwargs)


class OpenAIReformulator(_ChatReformulator):
    """An OpenAI-compatible ``/v1/chat/completions`` endpoint (OpenAI, Azure, vLLM, llama.cpp server, ...).

    The key comes from the environment (``$OPENAI_API_KEY``, as OpenAI-compatible clients expect),
    sent as a bearer token. A base URL may carry a query (``?api-version=...``, kept on every
    request) and userinfo (``https://user:KEY@host``, sent as HTTP basic auth, never as part of
    the URL); either way the id, fingerprint, logs and errors show it redacted
    (:func:`dar_lib.redact.redact`), so a CSV, record or status page never holds the key.

    Each request has a connect and a read timeout (``timeout``); timeouts, refused connections and
    HTTP 5xx/429 are retried with exponential backoff up to ``max_retries`` times, and the whole
    call (retries and waits included) ends by ``deadline``. Anything else that is not a usable
    answer (another HTTP 4xx, a body that is not chat-completions JSON, e.g. an HTML page, empty
    or null content) raises :class:`~dar_lib.errors.EndpointError`: one line naming the endpoint.

    Args:
        model: model name sent in the request.
        base_url: server root, e.g. ``https://api.openai.com`` or ``http://localhost:8000/v1``
            (``http`` or ``https``; a query string is kept).
        api_key: bearer token; default ``$OPENAI_API_KEY`` (optional for local servers).
        timeout: seconds to connect, and seconds of silence while reading, per request.
        max_retries: retries after the first attempt.
        backoff: first wait in seconds; doubles each retry.
        deadline: seconds for the whole call, retries and waits included (default
            ``2 * timeout``: a silent endpoint with ``timeout=3`` fails in about 6 s).
        temperature: sampling temperature (0 = greedy where the server honours it).
        max_tokens: generation budget per reply.
        fallback: on a reply still unusable after one retry, return a recorded fallback instead of
            raising :class:`ReformulationError` (default ``False``; see :class:`_ChatReformulator`).

    Raises:
        ValueError: a base URL that is not ``http(s)://host...`` (named, redacted), or a
            non-positive ``timeout`` / ``deadline``.
    """

    def __init__(self, model: str, base_url: str = "https://api.openai.com/v1", *, api_key: str | None = None,
                 timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0, deadline: float | None = None,
                 temperature: float = 0.0, max_tokens: int = 256, fallback: bool = False):
        from urllib.parse import urlsplit, urlunsplit

        from dar_lib.redact import redact

        self.model = model
        parts = urlsplit(str(base_url).strip())
        try:
            port = parts.port  # urllib refuses a non-numeric port without naming the URL
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ValueError(f"openai base URL {redact(str(base_url))!r}: expected http(s)://host[:port][/path][?query]")
        path = parts.path.rstrip("/")
        if not path.endswith("/chat/completions"):
            path += "/chat/completions" if path.endswith("/v1") else "/v1/chat/completions"
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        netloc = host + (f":{port}" if port else "")
        #: The request URL (no userinfo; the query kept); shown only through :func:`redact`.
        self.url = urlunsplit((parts.scheme, netloc, path, parts.query, ""))
        self.auth = (parts.username or "", parts.password or "") if parts.username or parts.password else None
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout = float(timeout)
        self.deadline = float(deadline) if deadline is not None else 2 * self.timeout
        if not (self.timeout > 0 and self.deadline > 0):
            raise ValueError(f"openai reformulator: timeout ({timeout}) and deadline ({deadline}) must be > 0 s")
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.fallback = bool(fallback)
        root = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), parts.query, ""))
        self.id = redact(f"openai:{model}@{root}")
        shown = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
        #: The request URL as every message shows it (userinfo kept, credentials redacted).
        self.endpoint = redact(shown)
        if self.endpoint != shown:
            log.warning("%s: the base URL carries a credential; it is redacted in every output, but prefer "
                        "$OPENAI_API_KEY", self.endpoint)

    def settings(self) -> dict:
        """``temperature`` and ``max_tokens`` as sent in each request (part of the fingerprint)."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens}

    def _error(self, what: str) -> EndpointError:
        from dar_lib.redact import redact

        return EndpointError(f"LLM endpoint {self.endpoint}: {redact(' '.join(what.split()))}")

    def chat(self, messages):
        """POST ``messages`` to the endpoint and return ``choices[0].message.content``.

        Sends ``model``, ``temperature`` and ``max_tokens``, with a bearer token when ``api_key`` is
        set. Timeouts, refused connections, HTTP 5xx and 429 are retried after ``backoff * 2**(n-1)``
        seconds, up to ``max_retries`` times and never past ``deadline`` seconds after the call began.

        Args:
            messages: OpenAI-style ``{"role", "content"}`` messages.

        Returns:
            The reply text, unparsed.

        Raises:
            EndpointError: another HTTP 4xx, a body that is not chat-completions JSON, empty or null
                content, or no answer within ``max_retries + 1`` attempts or ``deadline`` seconds
                (one line naming the endpoint, credentials redacted).
        """
        import requests

        body = {"model": self.model, "messages": messages, "temperature": self.temperature,
                "max_tokens": self.max_tokens}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        end = time.monotonic() + self.deadline
        last, attempts = "", 0
        for attempt in range(self.max_retries + 1):
            if attempt:
                wait = self.backoff * 2 ** (attempt - 1)
                if time.monotonic() + wait >= end:
                    break
                time.sleep(wait)
            left = end - time.monotonic()
            if left <= 0:
                break
            attempts += 1
            per = min(self.timeout, left)
            try:
                resp = requests.post(self.url, json=body, headers=headers, auth=self.auth, timeout=(per, per))
            except (requests.Timeout, requests.ConnectionError) as exc:
                last = f"{type(exc).__name__}: {_first_reason(exc)}"
                log.warning("%s: attempt %d failed (%s)", self.endpoint, attempt + 1, last)
                continue
            if resp.status_code >= 500 or resp.status_code == 429:
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                log.warning("%s: attempt %d failed (%s)", self.endpoint, attempt + 1, " ".join(last.split()))
                continue
            if resp.status_code >= 400:
                raise self._error(f"refused the request: HTTP {resp.status_code}: {resp.text[:300]}")
            try:
                content = resp.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                kind = resp.headers.get("Content-Type", "no content type")
                raise self._error(f"returned a body that is not chat-completions JSON ({kind}; "
                                  f"{type(exc).__name__}): {resp.text[:200]!r}") from None
            if not isinstance(content, str) or not content.strip():
                raise self._error(f"returned {'null' if content is None else 'empty'} content "
                                  f"(choices[0].message.content = {content!r})")
            return content
        raise self._error(f"no answer after {attempts} attempt{'s' if attempts != 1 else ''} "
                          f"(max_retries={self.max_retries}, deadline {self.deadline:g} s); last error: {last or 'none'}")


def _first_reason(exc: BaseException) -> str:
    """The innermost one-line reason of a requests error (e.g. ``[Errno 111] Connection refused``)."""
    text = " ".join(str(exc).split())
    found = re.findall(r"\[Errno -?\d+\][^')\]]*|timed out|Read timed out", text)
    return found[-1].strip() if found else text[:200]


class LlamaCppReformulator(_ChatReformulator):
    """A local GGUF model through ``llama-cpp-python`` (optional dependency).

    Args:
        path: the ``.gguf`` file.
        n_ctx: context window.
        max_tokens: generation budget per reply.
        seed: sampling seed (decoding is greedy: temperature 0).
        fallback: on a reply still unusable after one retry, return a recorded fallback instead of
            raising :class:`ReformulationError` (default ``False``; see :class:`_ChatReformulator`).
    """

    def __init__(self, path: str | Path, *, n_ctx: int = 4096, max_tokens: int = 256, seed: int = 0,
                 fallback: bool = False):
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # a MissingDependencyError: one line from the CLI, exit 2
            raise MissingDependencyError("the gguf: backend needs llama-cpp-python (pip install llama-cpp-python)") from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"GGUF model not found: {self.path}")
        self.llm = Llama(model_path=str(self.path), n_ctx=n_ctx, seed=seed, verbose=False)
        self.max_tokens = int(max_tokens)
        self.fallback = bool(fallback)
        from dar_lib.cachekeys import weights_digest

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
        """``"<id>|n=<entries>|vary=<vary_prompts>"``: the table's size, not a hash of its queries.

        Two tables of the same size under the same ``id`` share a fingerprint, so give each
        recorded set its own ``id`` (``from_json`` uses the file name).
        """
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
        """R1: the turns joined with ``", "`` (each passed through ``str``); ``ref`` is ignored."""
        return ", ".join(str(t) for t in turns)

    def prompts(self, query: str, k: int) -> list[str]:
        """R2: ``k`` copies of ``query`` itself (no template, no style suffix)."""
        return [query] * k

    def fingerprint(self) -> str:
        """The constant ``"identity"``."""
        return "identity"


class CachedReformulator:
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

    def __init__(self, reformulator, store):
        self.reformulator = reformulator
        self.store = store
        self.id = reformulator.id
        self.hits = 0
        self.misses = 0

    @property
    def fallbacks(self) -> int:
        """Fallbacks the wrapped reformulator has returned (0 for backends without fallbacks)."""
        return int(getattr(self.reformulator, "fallbacks", 0))

    def fingerprint(self) -> str:
        """The wrapped reformulator's fingerprint (caching does not change what it outputs)."""
        return self.reformulator.fingerprint()

    def _cached(self, key_parts: dict, fn: Callable[[], object]):
        key = self.store.key(self.KIND, model=self.fingerprint(), **key_parts)
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
        if not isinstance(self.reformulator, (_ChatReformulator, IdentityReformulator)):
            parts["ref"] = None if ref is None else [str(ref[0]), int(ref[1])]
        return self._cached(parts, lambda: self.reformulator.rewrite(turns, ref=ref))

    def prompts(self, query: str, k: int) -> list[str]:
        """R2 through the store, keyed by the fingerprint, ``query`` and ``k``: ``k`` prompts (list of str).

        Raises:
            ReformulationError: from the wrapped reformulator, with nothing stored.
        """
        return self._cached({"stage": "R2", "query": query, "k": int(k)},
                            lambda: list(self.reformulator.prompts(query, k)))
