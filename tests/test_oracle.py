"""The two reference curves (fact-matching oracle, fresh-candidates upper bound), on tiny corpora where the
consistent sets are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dar_lib.benchmarks import toyworld as tw
from dar_lib.benchmarks.dialogue import Dialogue

Obj = tw.Obj
SCENES = [
    tw.Scene("blue", (Obj("circle", "red", "large", "top left"),)),
    tw.Scene("blue", (Obj("circle", "red", "large", "top left"), Obj("square", "green", "small", "center"))),
    tw.Scene("white", (Obj("circle", "red", "large", "top left"),)),
    tw.Scene("blue", (Obj("circle", "red", "medium", "center"),)),
    tw.Scene("white", (Obj("square", "green", "large", "bottom right"),)),
]


def dialogue(*turns: str, target: int = 1) -> Dialogue:
    return Dialogue(target_id=target, image=tw.corpus_path(target), dialog=tuple(turns))


def test_counts_per_round():
    d = dialogue("a large red circle in the top left", "what color is the background? blue",
                 "is the picture in color? yes", "what else is there? a green square")
    counts, fits = tw.n_consistent(d, SCENES)
    assert counts.tolist() == [3, 2, 2, 1] and fits.all()


def test_fact_oracle_hand_made():
    d = dialogue("a large red circle in the top left", "what color is the background? blue",
                 "what else is there? a green square")
    np.testing.assert_allclose(tw.fact_oracle([d], SCENES, k=1), [100 / 3, 50, 100])
    np.testing.assert_allclose(tw.fact_oracle([d], SCENES, k=2), [200 / 3, 100, 100])
    # Averaged over dialogues; "not sure" and off-target turns change nothing.
    e = dialogue("a red circle", "what color is the background? not sure", "what is the color of the sky? blue",
                 target=3)
    # round 0: scenes 0-3 fit (4); then nothing new.
    np.testing.assert_allclose(tw.fact_oracle([d, e], SCENES, k=1),
                               [(1 / 3 + 1 / 4) * 50, (1 / 2 + 1 / 4) * 50, (1 + 1 / 4) * 50])


def test_wrong_answer_excludes_the_target_and_cumulative_keeps_the_best():
    d = dialogue("a large red circle in the top left", "what color is the background? white",
                 "what else is there? a green square")
    counts, fits = tw.n_consistent(d, SCENES)
    assert counts.tolist() == [3, 1, 0] and fits.tolist() == [True, False, False]
    np.testing.assert_allclose(tw.fact_oracle([d], SCENES, k=1), [100 / 3] * 3)
    # k=2 with the target outside the single consistent scene: (2 - 1) / (5 - 1) at round 1.
    np.testing.assert_allclose(tw.oracle_hits(np.array([3, 1]), np.array([True, False]), 5, 2), [2 / 3, 2 / 3])
    np.testing.assert_allclose(tw.oracle_hits(np.array([3, 1]), np.array([False, False]), 5, 2), [0, 0.25])


def test_upper_bound_hand_made():
    # 100 consistent candidates every round: the oracle re-ranks the same ones (10% at every round),
    # the bound shows 10 fresh ones each round: 1 - 0.9 * 80/90 * 70/80 = 0.3 at round 2.
    counts, fits = np.array([100, 100, 100]), np.array([True, True, True])
    np.testing.assert_allclose(tw.oracle_hits(counts, fits, 1000, 10), [0.1, 0.1, 0.1])
    np.testing.assert_allclose(tw.bound_hits(counts, fits, 1000, 10), [0.1, 0.2, 0.3])
    # the facts narrow the set: 100, then 20 (at most 10 of them already shown), then 5
    np.testing.assert_allclose(tw.bound_hits(np.array([100, 20, 5]), fits, 1000, 10), [0.1, 1.0, 1.0])
    # a wrong answer excludes the target: that round adds the oracle's outside term
    np.testing.assert_allclose(tw.bound_hits(np.array([100, 4]), np.array([True, False]), 100, 10),
                               [0.1, 1 - 0.9 * (1 - 6 / 96)])
    # the bound is never below the oracle
    rng = np.random.default_rng(0)
    for _ in range(50):
        c = np.sort(rng.integers(1, 500, size=11))[::-1]
        f = rng.random(11) < 0.9
        assert np.all(tw.bound_hits(c, f, 1000) >= tw.oracle_hits(c, f, 1000) - 1e-12)
    d = dialogue("a large red circle in the top left", "what color is the background? blue",
                 "what else is there? a green square")
    # one dialogue on SCENES, k=1: consistent 3, 2, 1 -> 1/3, then 1 - 2/3 * (1 - 1/(2 - 1)) = 1
    np.testing.assert_allclose(tw.upper_bound([d], SCENES, k=1), [100 / 3, 100, 100])


def test_a_reader_of_fewer_facts_gets_a_lower_oracle():
    d = dialogue("a large red circle in the top left", "what color is the background? blue",
                 "how big is it? large")
    full = tw.fact_oracle([d], SCENES, k=1)
    colour_shape_only = tw.fact_oracle([d], SCENES, k=1, readable=("color", "shape"))
    # colour and shape alone fit scenes 0-3 at every round
    np.testing.assert_allclose(colour_shape_only, [25, 25, 25])
    assert np.all(full >= colour_shape_only)


def test_reference_curves_on_the_default_world_meet_the_v2_bands():
    """World v2's sizing: the oracle is 30-70% at round 0 and at least 95% at round 10 in the informative
    styles, and keeps rising after round 5; the bound is never below the oracle."""
    bench = tw.build(n_corpus=10_000, n_dialogues=150, seed=0)
    for style in tw.INFORMATIVE_STYLES:
        o = tw.fact_oracle(bench.dialogues(style), bench.scenes, k=10)
        b = tw.upper_bound(bench.dialogues(style), bench.scenes, k=10)
        assert o.shape == (11,) and np.all(np.diff(o) >= -1e-9) and np.all(b >= o - 1e-9)
        assert 30 <= o[0] <= 70, (style, o[0])
        assert o[10] >= 95 and o[10] > o[5], (style, o[5], o[10])
    with pytest.raises(ValueError, match="at least one"):
        tw.fact_oracle([], SCENES)
