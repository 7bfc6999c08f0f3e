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


def test_attribution_shares_the_gain_between_the_rewrite_and_the_images():
    """Hand-made: the baseline never hits, the rewrite alone hits 1 in 4, the images alone 1 in 2, DAR always."""
    from dar_lib import chapters

    P = {**profiles.parameters("toy", smoke=True), "n_boot": 200}
    flan = P["benchmarks"][3]
    hit = {"baseline": 0, "reformulated": 4, "images-only": 2, "dar": 1}  # every n-th dialogue hits at round 10
    rows = [(flan, "zero-shot", m, d, r, 0.0 if (every and r == 10 and d % every == 0) else 50.0)
            for m, every in hit.items() for d in range(40) for r in range(11)]
    df = pd.DataFrame(rows, columns=["benchmark", "encoder", "method", "dialog_idx", "round_idx", "rank"])
    out = chapters.attribution(df, P, "t")
    assert out["gain"]["diff"] == pytest.approx(100.0)
    assert out["rewrite_share"]["diff"] == pytest.approx(0.25) and out["images_share"]["diff"] == pytest.approx(0.5)
    assert out["times_paper"] == pytest.approx(100.0 / chapters.HEADLINE_EFFECT)
    assert "25% [" in out["text"] and "50% [" in out["text"] and "13.1 times the paper's" in out["text"]


def test_vs_paper_note_counts_the_size_labels():
    from dar_lib import chapters

    t = pd.DataFrame({"contains_paper": ["no", "yes", "-"],
                      "size": ["direction reversed", "consistent with the paper's size", "direction as claimed"]})
    note = chapters.vs_paper_note(t)
    assert note.startswith("of the 2 claims with a number in the paper: 1 direction reversed, 1 consistent")
    assert "1 of all 3 point estimates point against" in note


def test_power_note_states_the_detectable_effect_at_the_chapters_size():
    from dar_lib import chapters

    t = pd.DataFrame({"detectable": [5.0, 6.0, 9.0, np.nan]})
    df = pd.DataFrame({"benchmark": "b", "encoder": "e", "method": "dar", "dialog_idx": range(150), "round_idx": 0,
                       "rank": 0.0})
    note = chapters.power_note(t, df, 42)
    assert note.startswith("6.0 pp (median; 5.0-9.0 pp) over its 3 paired claims")
    assert "at 150 dialogues" in note and "book's 42 claims" in note and "could not always detect" in note
    assert "this chapter could detect" in chapters.power_note(t.iloc[:2], df, 42)
    assert chapters.power_note(pd.DataFrame({"detectable": [np.nan]}), df, 42).startswith("not computed (150 dialogues")
