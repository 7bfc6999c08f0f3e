"""Reply parsing: pure functions from a raw LLM reply to the R1 query or the R2 prompts, or the reason it is unusable.

No model, no I/O: :func:`read_query` and :func:`read_prompts` are what the chat protocol
(:mod:`dar_lib.models.reformulate.chat_protocol`) applies to every reply, and what
``tests/test_reply_parsing.py`` checks from a table of raw replies.

Examples:
    >>> read_query("Sure! Here is the query:\\nA big red dog on the grass")
    ('A big red dog on the grass', None)
    >>> read_prompts("1. a red dog. Style: photorealistic.", 2)
    (['a red dog. Style: photorealistic.'], 'expected 2 distinct prompts, got 1')
"""

from __future__ import annotations

import re
from typing import Sequence

import dar_lib.models.prompts as P


def truncate(text: str, n: int = 300) -> str:
    """``text`` cut after ``n`` characters, saying how many more there were (for errors and logs)."""
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
        return f"leftover reasoning tags in {truncate(q, 120)!r}"
    if _is_preamble(q):
        return f"a preamble, not a query: {truncate(q, 120)!r}"
    if _STEP_LABEL.match(q):
        return f"an echoed template step, not a query: {truncate(q, 120)!r}"
    echo = _echo(q, "R1")
    if echo:
        return f"echoes the instructions ({echo!r}): {truncate(q, 120)!r}"
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
        return f"duplicate prompts in {[truncate(p, 60) for p in prompts]!r}"
    if len(prompts) != k:
        return f"expected {k} distinct prompts, got {len(prompts)}"
    for i, p in enumerate(prompts):
        if not p.strip():
            return f"prompt {i} is empty"
        if _THINK_OPEN.search(p) or _THINK_CLOSE.search(p):
            return f"prompt {i} has leftover reasoning tags: {truncate(p, 120)!r}"
        if _is_preamble(p):
            return f"prompt {i} is a preamble: {truncate(p, 120)!r}"
        slots = [s for s in P.template_placeholders() if s.lower() in p.lower()]
        if slots:
            return f"prompt {i} leaves the pattern's slots {slots} unfilled: {truncate(p, 120)!r}"
        if not _words(re.sub(r"(?i)style\s*:\s*photorealistic", "", p)):
            return f"prompt {i} has nothing but the style suffix: {p!r}"
        echo = _echo(p, "R2")
        if echo:
            return f"prompt {i} echoes the instructions ({echo!r}): {truncate(p, 120)!r}"
    return None


def read_query(reply: str) -> tuple[str, str | None]:
    """R1: the query parsed out of a raw reply (:func:`clean_query`) and why it is unusable (:func:`check_query`).

    Args:
        reply: the raw LLM reply (reasoning blocks, markdown and preambles included).

    Returns:
        ``(query, None)`` for a usable reply, else ``(query, problem)`` (the query may be ``""``).
    """
    query = clean_query(reply)
    return query, check_query(query)


def read_prompts(reply: str, k: int) -> tuple[list[str], str | None]:
    """R2: the prompts parsed out of a raw reply (:func:`parse_prompts`) and why they are unusable
    (:func:`check_prompts`).

    Args:
        reply: the raw LLM reply.
        k: the number of prompts asked for.

    Returns:
        ``(prompts, None)`` when they are exactly ``k`` usable distinct prompts, else ``(prompts, problem)``.
    """
    prompts = parse_prompts(reply)
    return prompts, check_prompts(prompts, int(k))
