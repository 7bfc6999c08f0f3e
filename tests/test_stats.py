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
    (1.0, 3.0, "positive", "supported"), (-3.0, -1.0, "positive", "contradicted"),
    (-1.0, 1.0, "positive", "inconclusive"), (-3.0, -1.0, "negative", "supported"),
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


@pytest.mark.parametrize("diff, low, high, paper, expected, label", [
    # the case: non-inferiority "trails by only 3.01" measured as a +10.0 lead
    (10.0, 1.3, 18.0, -3.01, "non-inferior", "direction reversed"),
    (14.0, 6.0, 22.0, 2.42, "positive", "larger than the paper"),
    (1.0, 0.2, 1.8, 7.61, "positive", "smaller than the paper"),
    (6.0, 2.0, 10.0, 7.61, "positive", "consistent with the paper's size"),
    # a negative paper number compares magnitudes on its own side
    (-9.0, -12.0, -6.0, -3.01, "non-inferior", "larger than the paper"),
    (-1.0, -2.0, -0.5, -3.01, "non-inferior", "smaller than the paper"),
    (-2.0, -4.0, 0.5, -3.01, "non-inferior", "consistent with the paper's size"),
    # no number: the claimed direction decides; a non-inferiority claim without one has no direction
    (-2.0, -5.0, 1.0, None, "positive", "direction reversed"),
    (2.0, -1.0, 5.0, None, "positive", "direction as claimed"),
    (2.0, -1.0, 5.0, None, "negative", "direction reversed"),
    (2.0, -1.0, 5.0, None, "non-inferior", ""),
])
def test_size_label_reads_direction_and_size_against_the_paper(diff, low, high, paper, expected, label):
    assert stats.size_label({"diff": diff, "low": low, "high": high}, paper, expected) == label
    assert label == "" or label in stats.SIZE_LABELS


def test_contains_paper_on_hand_made_intervals():
    assert stats.contains_paper({"low": 1.0, "high": 9.0}, 7.61) == "yes"
    assert stats.contains_paper({"low": 1.3, "high": 18.0}, -3.01) == "no"
    assert stats.contains_paper({"low": 1.0, "high": 9.0}, None) == "-"


def test_minimum_detectable_effect_matches_the_closed_form_for_bernoulli_pairs():
    from statistics import NormalDist

    rng = np.random.default_rng(5)
    n, pa, pb, m = 40_000, 0.6, 0.3, 40
    d = 100.0 * (rng.random(n) < pa) - 100.0 * (rng.random(n) < pb)  # independent Bernoulli hits, in pp
    z = NormalDist().inv_cdf(1 - 0.05 / (2 * m)) + NormalDist().inv_cdf(0.8)
    closed = z * 100.0 * np.sqrt(pa * (1 - pa) + pb * (1 - pb)) / np.sqrt(n)
    assert stats.minimum_detectable_effect(d, 0.05, m, 0.8) == pytest.approx(closed, rel=0.01)
    # exact on a hand-made case: sd (ddof 1) of [+100, -100] x 50 is 100 * sqrt(100 / 99)
    exact = np.array([100.0, -100.0] * 50)
    z1 = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    assert stats.minimum_detectable_effect(exact) == pytest.approx(z1 * 100 * np.sqrt(100 / 99) / 10)
    assert np.isnan(stats.minimum_detectable_effect(np.array([1.0])))
    assert np.isnan(stats.minimum_detectable_effect(np.zeros(30)))  # no spread: not 'anything is detectable'


def test_vectorised_bootstrap_equals_the_resample_loop():
    rng = np.random.default_rng(8)
    a, b = rng.random(70) * 100, rng.random(70) * 100
    d = stats.bootstrap_statistic({"a": a, "b": b}, lambda m: m["a"] - m["b"], n_boot=500, level=0.9, seed=4)
    idx = np.random.default_rng(4).integers(0, 70, size=(500, 70))
    naive = np.array([a[i].mean() - b[i].mean() for i in idx])
    assert d["low"] == pytest.approx(np.quantile(naive, 0.05)) and d["high"] == pytest.approx(np.quantile(naive, 0.95))
    assert d["diff"] == pytest.approx(a.mean() - b.mean())


def test_claims_table_corrects_over_the_stated_family_and_labels_each_claim():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 14, size=(120, 11))
    b = rng.integers(5, 30, size=(120, 11))
    df = table(a, b)
    claim = [{"claim": "dar > baseline", "a": {"method": "dar"}, "b": {"method": "baseline"}, "paper_value": 1.0}]
    alone = stats.claims_table(df, claim, n_boot=2000)
    book = stats.claims_table(df, claim, n_boot=2000, family_size=40)
    assert book.attrs["family_size"] == 40 and book.attrs["family_level"] == pytest.approx(1 - 0.05 / 40)
    assert book.loc[0, "low_corrected"] < alone.loc[0, "low_corrected"]  # a wider family, a wider interval
    assert book.loc[0, "low"] == alone.loc[0, "low"]  # the shown 95% interval does not change
    assert book.loc[0, "size"] == "larger than the paper" and book.loc[0, "contains_paper"] == "no"
    assert book.loc[0, "detectable"] > 0
    with pytest.raises(ValueError, match="family_size 0 is smaller than the 1 claims"):
        stats.claims_table(df, claim, family_size=0)
    late = stats.claims_table(df, [{"claim": "late", "kind": "late-gain", "a": {"method": "dar"},
                                    "b": {"method": "baseline"}, "start": 5}], n_boot=200)
    ha, hb = 100.0 * metrics.hits_matrix(a), 100.0 * metrics.hits_matrix(b)
    assert late.loc[0, "diff"] == pytest.approx((ha[:, 10] - ha[:, 5]).mean() - (hb[:, 10] - hb[:, 5]).mean())
    with pytest.raises(ValueError, match="claim kind must be"):
        stats.claims_table(df, [{"claim": "x", "kind": "nope"}])
