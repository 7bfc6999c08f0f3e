"""Statistics over rank tables: cumulative hits per dialogue, bootstrap intervals, paired claims and their verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dar_lib import metrics, stats


def table(ranks_a, ranks_b, bench="b", enc="e"):
    """A tidy table of two methods, ``dar`` (ranks_a) and ``baseline`` (ranks_b), over the same dialogues."""
    rows = []
    for method, ranks in (("dar", ranks_a), ("baseline", ranks_b)):
        for d, row in enumerate(np.asarray(ranks)):
            for r, rank in enumerate(row):
                rows.append((bench, enc, method, d, r, float(rank)))
    return pd.DataFrame(rows, columns=["benchmark", "encoder", "method", "dialog_idx", "round_idx", "rank"])


def test_hits_matrix_is_cumulative_and_matches_naive_reference():
    ranks = np.array([[12, 3, 50, 50], [0, 99, 99, 99], [10, 10, 9, 11]])
    expected = np.array([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(metrics.hits_matrix(ranks, k=10), expected)
    big = np.random.default_rng(1).integers(0, 30, size=(40, 11))
    naive = np.array([[any(big[d, : r + 1] < 10) for r in range(11)] for d in range(40)])
    np.testing.assert_array_equal(metrics.hits_matrix(big), naive)
    # a tied target's expected rank may end in .5; 9.5 is still inside the top 10
    assert metrics.hits_matrix(np.array([[9.5, 10.5]])).tolist() == [[True, True]]


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(2).random((50, 3)) * 100
    mean, low, high = stats.bootstrap_ci(values, n_boot=300, seed=7)
    _, low2, high2 = stats.bootstrap_ci(values, n_boot=300, seed=7)
    np.testing.assert_allclose(mean, values.mean(axis=0))
    np.testing.assert_array_equal(low, low2)
    np.testing.assert_array_equal(high, high2)
    assert np.all(low <= mean) and np.all(mean <= high) and np.all(high - low > 0)
    _, lo, hi = stats.bootstrap_ci(np.full((10, 1), 42.0), n_boot=50)
    assert lo[0] == hi[0] == 42.0
    with pytest.raises(ValueError, match="at least one dialogue"):
        stats.bootstrap_ci(np.empty((0, 2)))


def test_hits_curves_and_summary_on_a_hand_made_case():
    df = pd.DataFrame({"benchmark": "visdial", "method": "dar", "encoder": "zero-shot",
                       "dialog_idx": [0, 0, 1, 1], "round_idx": [0, 1, 0, 1], "rank": [12, 3, 0, 40]})
    curves = stats.hits_curves(df, n_boot=20)
    assert curves["hits"].tolist() == [50.0, 100.0] and curves["n"].tolist() == [2, 2]
    s = stats.summary_table(df, rounds=(0, 1))
    assert s[["hits@10 r0", "hits@10 r1"]].values.tolist() == [[50.0, 100.0]]


def test_paired_difference_resamples_dialogues_jointly():
    # DAR hits every dialogue at round 1, the baseline half of them: +50 pp, and every resample agrees
    # on the sign because the same dialogues are drawn on both sides.
    a = [[50, 0]] * 20
    b = [[50, 0]] * 10 + [[50, 50]] * 10
    d = stats.paired_difference(table(a, b), {"method": "dar"}, {"method": "baseline"}, round_idx=1, n_boot=200)
    assert d["diff"] == pytest.approx(50.0) and d["a"] == 100.0 and d["b"] == 50.0
    assert 0 < d["low"] <= 50 <= d["high"] <= 100
    assert stats.verdict(d) == "supported" and stats.verdict(d, "negative") == "contradicted"
    with pytest.raises(ValueError, match="no rows match"):
        stats.paired_difference(table(a, b), {"method": "nope"}, {"method": "baseline"})


@pytest.mark.parametrize("low, high, expected, verdict", [
    (1.0, 3.0, "positive", "supported"), (-3.0, -1.0, "positive", "contradicted"), (-1.0, 1.0, "positive", "inconclusive"),
    (-3.0, -1.0, "negative", "supported"),
    # non-inferiority with a 5 pp margin: "at most 5 worse"
    (-4.0, 1.0, "non-inferior", "supported"), (-9.0, -6.0, "non-inferior", "contradicted"),
    (-7.0, 1.0, "non-inferior", "inconclusive"),
])
def test_verdicts_read_the_interval_not_the_point(low, high, expected, verdict):
    assert stats.verdict({"low": low, "high": high}, expected, margin=5.0) == verdict


def test_claims_table_uses_bonferroni_and_counts_comparisons():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 25, size=(60, 11))
    b = rng.integers(0, 25, size=(60, 11))
    df = table(a, b)
    claims = [{"claim": f"c{i}", "a": {"method": "dar"}, "b": {"method": "baseline"}, "round": r}
              for i, r in enumerate((2, 5, 10))]
    t = stats.claims_table(df, claims, n_boot=300)
    assert t.attrs["n_comparisons"] == 3 and t.attrs["expected_false"] == pytest.approx(0.075)
    assert t.attrs["family_level"] == pytest.approx(1 - 0.05 / 3)
    single = stats.paired_difference(df, {"method": "dar"}, {"method": "baseline"}, round_idx=10, n_boot=300)
    assert t.loc[2, "low"] == pytest.approx(single["low"])  # the shown interval is the plain 95% one
    assert set(t.columns) >= {"verdict", "verdict_uncorrected", "test", "ours"}


def test_extreme_and_ratio_claims_have_intervals():
    rng = np.random.default_rng(3)
    groups = {}
    rows = []
    for bench, scale in (("easy", 5), ("mid", 15), ("hard", 60)):
        ranks = rng.integers(0, scale, size=(80, 11))
        for d, row in enumerate(ranks):
            for r, rank in enumerate(row):
                rows.append((bench, "e", "dar", d, r, float(rank)))
        groups[bench] = {"benchmark": bench, "method": "dar"}
    df = pd.DataFrame(rows, columns=["benchmark", "encoder", "method", "dialog_idx", "round_idx", "rank"])
    hard = stats.extreme_claim(df, groups, "hard", lowest=True, n_boot=200)
    assert hard["point_extreme"] == "hard" and hard["high"] < 0 and hard["verdict"] == "supported"
    easy = stats.extreme_claim(df, groups, "easy", lowest=True, n_boot=200)
    assert easy["verdict"] == "contradicted"
    ratio = stats.ratio_claim({"k1": np.full(40, 30.0), "k3": np.full(40, 40.0)}, "k1", "k3", n_boot=50)
    assert ratio["diff"] == pytest.approx(0.75) and ratio["low"] == ratio["high"] == pytest.approx(0.75)


def test_seed_spread_reports_the_variance_generation_adds():
    base = table([[0, 0]] * 4, [[50, 50]] * 4)
    other = table([[50, 0]] * 2 + [[50, 50]] * 2, [[50, 50]] * 4)
    spread = stats.seed_spread([base, other], {"method": "dar"}, round_idx=1)
    assert (spread["mean"], spread["min"], spread["max"], spread["n_seeds"]) == (75.0, 50.0, 100.0, 2)
    assert stats.seed_spread([base, other], {"method": "baseline"}, round_idx=1)["sd"] == 0.0
