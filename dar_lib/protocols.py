"""Evaluation protocols: ours (the default) and the DAR authors' released ``eval.py`` as written.

- ``default``: round r's text for ``reformulated`` and ``dar`` is R1's query S_r alone; K images,
  the chosen schedule and image reduction (:mod:`dar_lib.fuse`).
- ``released``: longkukuhi/Diffusion-Agumented-Retrieval @ 48498d4, ``eval.py``: round r's text is
  ``", ".join(dialog[:r + 1])`` of the rewrites file, i.e. the caption and *every* rewrite up to
  round r (``Queries.__getitem__``), encoded with the text limit cut from the right (256 tokens for
  its BLIP); ONE generated image per round (``{dialog_idx}_{round}.jpg``); score-level fusion
  ``0.8 * text + 0.2 * image`` for rounds 0-1 and ``0.5 / 0.5`` from round 2 (``dl < 2``), which
  ranks like fusing the unit embeddings (:mod:`dar_lib.fuse`); a full argsort over the corpus.
  The ``baseline`` method (raw dialogue) is the same under both.

Every result row names its protocol (column ``protocol``) and says whether the text it ranked
with was cut by the encoder's limit (``text_cut``) and whether that cut lost the newest part of
the text entirely (``newest_text_lost``); :func:`truncation_table` counts them per round.

Examples:
    >>> query_parts("released", ["caption", "rewrite 1", "rewrite 2"], 1)
    ['caption', 'rewrite 1']
    >>> query_parts("default", ["caption", "rewrite 1", "rewrite 2"], 1)
    ['rewrite 1']
"""

from __future__ import annotations

from typing import Sequence

from dar_lib.evalsettings import PROTOCOLS  # noqa: F401  (declared once, with the setting; imported from here too)

#: The settings the released evaluation fixes (``EvalConfig`` fields).
RELEASED_SETTINGS = {"k_images": 1, "schedule": "released", "image_reduce": "mean"}
#: The separator every released evaluation joins a dialogue's texts with.
SEP = ", "


def check(protocol: str, *, k_images: int, schedule: str, image_reduce: str, uses_images: bool = True) -> None:
    """Refuse a protocol name or a setting the protocol does not allow.

    Raises:
        ValueError: an unknown protocol, or under ``released`` a K, schedule or image reduction
            other than :data:`RELEASED_SETTINGS` (the message names the field and its value).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol = {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if protocol == "released":
        given = {"k_images": k_images, "schedule": schedule, "image_reduce": image_reduce}
        if not uses_images:
            given.pop("k_images")
        for name, value in given.items():
            if value != RELEASED_SETTINGS[name]:
                raise ValueError(f"{name} = {value!r}: the released protocol fixes {name} = "
                                 f"{RELEASED_SETTINGS[name]!r} (its eval.py); drop it or use --protocol default")


def query_parts(protocol: str, queries: Sequence[str], round_idx: int) -> list[str]:
    """The parts of round ``round_idx``'s query text, oldest first; the text is ``SEP.join`` of them.

    Args:
        protocol: ``"default"`` or ``"released"``.
        queries: R1's query of every round of one dialogue (round 0 first).
        round_idx: the round.

    Returns:
        ``[queries[round_idx]]`` (default) or ``queries[:round_idx + 1]`` (released).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol = {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if not 0 <= round_idx < len(queries):
        raise IndexError(f"round_idx {round_idx} outside 0..{len(queries) - 1}")
    return [str(q) for q in queries[: round_idx + 1]] if protocol == "released" else [str(queries[round_idx])]


def truncation_table(table):
    """Per method and round: the share (%) of queries the encoder's limit cut and of those that lost their newest text.

    Args:
        table: ranks from :func:`dar_lib.evaluate.evaluate` (columns ``method``, ``round_idx``,
            ``text_cut``, ``newest_text_lost`` and the provenance columns).

    Returns:
        A DataFrame with columns ``benchmark, encoder, protocol, method, round_idx, n, pct_cut,
        pct_newest_lost`` (rows of the text-using methods only). An encoder without a tokenizer and
        ``max_length`` counts as cutting nothing; its rows have no ``text_limit``.
    """
    keys = [c for c in ("benchmark", "encoder", "protocol", "method") if c in table.columns]
    rows = table[table["method"] != "images-only"]
    out = (rows.groupby(keys + ["round_idx"], sort=False)
           .agg(n=("text_cut", "size"), pct_cut=("text_cut", "mean"), pct_newest_lost=("newest_text_lost", "mean"))
           .reset_index())
    out["pct_cut"] *= 100
    out["pct_newest_lost"] *= 100
    return out
