"""The book's one family of claims: declared once, judged chapter by chapter, corrected over all of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dar_lib import claims, profiles, stats

REPO = Path(__file__).resolve().parents[1]


def full_table(P, n=30, seed=0):
    """A rank table with every (benchmark, encoder role, method) a claim can select, random ranks."""
    rng = np.random.default_rng(seed)
    roles = dict.fromkeys([*P["encoders"], "full"])
    methods = ("baseline", "dar", "reformulated", "images", "dar-weak")
    rows = [(b, e, m, d, r, float(rng.integers(0, 40)))
            for b in P["benchmarks"] for e in roles for m in methods for d in range(n) for r in range(11)]
    return pd.DataFrame(rows, columns=["benchmark", "encoder", "method", "dialog_idx", "round_idx", "rank"])


@pytest.mark.parametrize("profile", ["toy", "paper"])
def test_family_size_equals_the_number_of_claims_the_chapters_judge(profile):
    P = profiles.parameters(profile)
    df = full_table(P)
    m = claims.family_size(P)
    judged = [stats.claims_table(df, claims.chapter_claims(P, prefix), n_boot=20, family_size=m)
              for prefix in claims.CHAPTERS]
    assert sum(len(t) for t in judged) == m == len(claims.family_table(P))
    assert all(t.attrs["family_size"] == m and t.attrs["family_level"] == pytest.approx(1 - 0.05 / m) for t in judged)
    kinds = {c.get("kind", "paired") for c in claims.book_claims(P)}
    assert kinds == {"paired", "extreme", "late-gain"}  # extremes and late gains are in the family too
    with pytest.raises(ValueError, match="no chapter judges claims under prefix 'xx'"):
        claims.chapter_claims(P, "xx")


def test_every_chapter_judges_its_claims_through_the_family_and_no_verdict_escapes_it():
    """Each prefix of the family is judged by its notebook, once; no notebook reaches a verdict on its own."""
    judged = {}
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.load(open(path))["cells"] if c["cell_type"] == "code")
        for prefix in re.findall(r'C\.judge\([^)]*"(\w+)"\)', code):
            judged.setdefault(prefix, []).append(path.stem)
        for call in ("stats.verdict(", "stats.claims_table(", "stats.extreme_claim(", "CLAIMS"):
            assert call not in code, f"{path.name} judges outside the book's family ({call})"
    assert judged == {p: [nb] for p, (nb, _) in claims.CHAPTERS.items()}


def test_chapter_eleven_compares_encoders_on_the_visdial_twin_and_generators_on_flan():
    P = profiles.parameters("paper")
    m = claims.chapter_claims(P, "m")
    enc = [c for c in m if c["b"]["method"] == "baseline"]
    assert {c["a"]["benchmark"] for c in enc} == {"visdial"}
    assert {c["a"]["encoder"]: c["paper_value"] for c in enc if c["paper_value"]} == {"clip": 5.31, "beit3": 6.28}
    assert m[-1]["a"]["benchmark"] == "flan_blip2" and m[-1]["paper_value"] == pytest.approx(-1.24)
