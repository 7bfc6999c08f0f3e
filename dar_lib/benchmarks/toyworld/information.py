"""How much a toy dialogue tells, round by round: facts added, leaks, and the reference curves per style."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from dar_lib.benchmarks.dialogue import Dialogue
from dar_lib.benchmarks.toyworld.facts import iter_dialogue, parse_dialogue, question_slot
from dar_lib.benchmarks.toyworld.oracle import fact_oracle, upper_bound
from dar_lib.benchmarks.toyworld.reformulate import ToyReformulator


def rounds_adding_facts(dialog: Sequence[str]) -> list[int]:
    """The rounds (1..n) whose turn adds a fact to what the dialogue said before (the world's parser reads it)."""
    out, prev = [], None
    for j, facts in enumerate(iter_dialogue(dialog)):
        now = repr(facts.known())
        if j > 0 and now != prev:
            out.append(j)
        prev = now
    return out


def unintroduced_mentions(dialog: Sequence[str]) -> list[tuple[int, str]]:
    """Questions that name an object the dialogue had not introduced before them: ``(round, question)``.

    A question "mentions" an object when it names its colour or shape ("where is the green
    square?"); the object is introduced when an earlier turn (or the caption) stated an object with
    all those facts. A real questioner cannot know any other object, so the list must be empty.
    """
    out = []
    for j in range(1, len(dialog)):
        q, sep, _ = dialog[j].partition("? ")
        if not sep:
            continue
        _, mention, _ = question_slot(q + "?")
        if not mention:
            continue
        known = parse_dialogue(list(dialog[:j])).objects
        if not any(all(o.get(k) == v for k, v in mention.items()) for o in known):
            out.append((j, q + "?"))
    return out


def information_table(dialogues: Mapping[str, Sequence[Dialogue]], scenes, reformulator=None, k: int = 10):
    """Per style: rounds that add a fact, R1 changes after round 5, leaks, and both reference curves.

    Args:
        dialogues: style -> dialogues (targets index ``scenes``).
        scenes: the corpus scenes.
        reformulator: the R1 whose query is compared at rounds 5 and 10 (default: the toy rules).
        k: the Hits cut-off of the curves.

    Returns:
        A DataFrame indexed by style: ``rounds adding a fact`` (mean), ``R1 query changes r5->r10 (%)``,
        ``questions naming unintroduced objects``, and ``oracle r{0,5,10}`` / ``bound r{0,5,10}`` (percent).
    """
    import pandas as pd

    r1 = reformulator or ToyReformulator()
    rows = []
    for style, ds in dialogues.items():
        oracle, bound = fact_oracle(ds, scenes, k), upper_bound(ds, scenes, k)
        last = ds[0].n_rounds - 1
        rows.append({
            "style": style,
            "rounds adding a fact": float(np.mean([len(rounds_adding_facts(d.dialog)) for d in ds])),
            "R1 query changes r5->r10 (%)": 100.0 * float(np.mean(
                [r1.rewrite(list(d.dialog[:6])) != r1.rewrite(list(d.dialog[: last + 1])) for d in ds])),
            "questions naming unintroduced objects": sum(len(unintroduced_mentions(d.dialog)) for d in ds),
            **{f"oracle r{r}": float(oracle[r]) for r in (0, 5, last)},
            **{f"bound r{r}": float(bound[r]) for r in (0, 5, last)},
        })
    return pd.DataFrame(rows).set_index("style")


def reference_curves(dialogues: Mapping[str, Sequence[Dialogue]], scenes, k: int = 10):
    """Both reference curves per style and round, tidy: columns ``benchmark, curve, round_idx, hits``."""
    import pandas as pd

    rows = []
    for style, ds in dialogues.items():
        for name, fn in (("fact-matching oracle", fact_oracle), ("upper bound (fresh candidates)", upper_bound)):
            for r, h in enumerate(fn(ds, scenes, k)):
                rows.append({"benchmark": style, "curve": name, "round_idx": r, "hits": float(h)})
    return pd.DataFrame(rows)
