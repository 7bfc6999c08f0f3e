"""Reformulators without an LLM: the replay of recorded per-round queries and the identity (raw dialogue text)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import dar_lib.models.prompts as P
from dar_lib.errors import DataError


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

        path = Path(path)
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read replay queries ({exc})") from exc
        if not isinstance(records, list):
            raise DataError(f"{path}: expected a JSON list of {{'img', 'dialog'}} records")
        table = {}
        for i, rec in enumerate(records):
            if (not isinstance(rec, dict) or not isinstance(rec.get("img"), str)
                    or not isinstance(rec.get("dialog"), list)):
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
