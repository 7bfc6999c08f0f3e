"""Tests for the book's plotting helper: cumulative Hits@10, bootstrap intervals, Figure 3's conventions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from dar_lib import plotting


def _ranks(seed: int = 0, n: int = 30, rounds: int = 11) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for bench in ("visdial", "chatgpt", "human", "flan"):
        for method, scale in (("baseline", 40), ("dar", 15), ("reformulated", 30), ("images-only", 25)):
            for enc in ("zero-shot", "coco-ft", "dialogue-ft"):
                ranks = rng.integers(0, scale, size=(n, rounds))
                for d in range(n):
                    for r in range(rounds):
                        rows.append((bench, method, enc, d, r, int(ranks[d, r])))
    return pd.DataFrame(rows, columns=list(plotting.REQUIRED_COLUMNS))


def test_hits_matrix_is_cumulative_and_matches_naive_reference():
    ranks = np.array([[12, 3, 50, 50], [0, 99, 99, 99], [10, 10, 9, 11]])
    expected = np.array([[0, 1, 1, 1], [1, 1, 1, 1], [0, 0, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(plotting.hits_matrix(ranks, k=10), expected)
    rng = np.random.default_rng(1)
    big = rng.integers(0, 30, size=(40, 11))
    naive = np.array([[any(big[d, : r + 1] < 10) for r in range(11)] for d in range(40)])
    np.testing.assert_array_equal(plotting.hits_matrix(big), naive)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(2).random((50, 3)) * 100
    mean, low, high = plotting.bootstrap_ci(values, n_boot=300, seed=7)
    mean2, low2, high2 = plotting.bootstrap_ci(values, n_boot=300, seed=7)
    np.testing.assert_allclose(mean, values.mean(axis=0))
    np.testing.assert_array_equal(low, low2)
    np.testing.assert_array_equal(high, high2)
    assert np.all(low <= mean) and np.all(mean <= high) and np.all(high - low > 0)
    # a constant column has a zero-width interval
    _, lo, hi = plotting.bootstrap_ci(np.full((10, 1), 42.0), n_boot=50)
    assert lo[0] == hi[0] == 42.0
    with pytest.raises(ValueError, match="at least one dialogue"):
        plotting.bootstrap_ci(np.empty((0, 2)))


def test_hits_curves_values_on_a_hand_made_case():
    df = pd.DataFrame({
        "benchmark": "visdial", "method": "dar", "encoder": "zero-shot",
        "dialog_idx": [0, 0, 1, 1], "round_idx": [0, 1, 0, 1], "rank": [12, 3, 0, 40],
    })
    curves = plotting.hits_curves(df, n_boot=20)
    assert curves["hits"].tolist() == [50.0, 100.0]
    assert curves["n"].tolist() == [2, 2]


def test_figure3_follows_the_conventions():
    df = _ranks()
    fig = plotting.figure3(df, n_boot=30)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4
    assert [ax.get_title() for ax in axes] == ["VisDial", "ChatGPT_BLIP2 (toy)", "HUMAN_BLIP2 (toy)", "FLAN_BLIP2 (toy)"]
    lines = axes[0].get_lines()
    assert len(lines) == 6  # 3 encoders x (baseline, DAR); controls are not in Figure 3
    for line in lines:
        enc = next(e for e, lab in plotting.ENCODER_LABELS.items() if line.get_label().startswith(lab + ","))
        assert matplotlib.colors.to_hex(line.get_color()) == plotting.ENCODER_COLOURS[enc].lower()
        assert line.get_linestyle() == ("-" if line.get_label().endswith("DAR") else "--")
        assert list(line.get_xdata()) == list(range(11))
    assert len(axes[0].collections) == 6  # one confidence band per line
    matplotlib.pyplot.close(fig)


def test_controls_figure_has_all_four_methods():
    fig = plotting.controls_figure(_ranks(n=10), benchmarks=["visdial", "flan"], n_boot=20)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    styles = {line.get_linestyle() for line in axes[0].get_lines()}
    assert styles == {"--", "-", ":", "-."}
    matplotlib.pyplot.close(fig)


def test_figure3_rejects_incomplete_tables():
    with pytest.raises(ValueError, match="lacks columns"):
        plotting.figure3(pd.DataFrame({"benchmark": ["x"], "rank": [1]}))
    df = _ranks(n=3).iloc[1:]  # one (dialogue, round) missing
    with pytest.raises(ValueError, match="every dialogue needs a rank at every round"):
        plotting.figure3(df[df["method"].isin(["baseline", "dar"])], n_boot=5)
