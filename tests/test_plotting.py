"""The book's plotting helper: Figure 3's conventions and the controls figure (the numbers come from dar_lib.stats)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from dar_lib import plotting, stats


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
    return pd.DataFrame(rows, columns=list(stats.REQUIRED_COLUMNS))


def test_figure3_follows_the_conventions():
    df = _ranks()
    fig = plotting.figure3(df, n_boot=30)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4
    assert [ax.get_title() for ax in axes] == ["VisDial", "ChatGPT_BLIP2 (toy)", "HUMAN_BLIP2 (toy)",
                                               "FLAN_BLIP2 (toy)"]
    lines = axes[0].get_lines()
    assert len(lines) == 6  # 3 encoders x (baseline, DAR); controls are not in Figure 3
    for line in lines:
        enc = next(e for e, lab in plotting.ENCODER_LABELS.items() if line.get_label().startswith(lab + ","))
        assert matplotlib.colors.to_hex(line.get_color()) == plotting.ENCODER_COLOURS[enc].lower()
        assert line.get_linestyle() == ("-" if line.get_label().endswith("DAR") else "--")
        assert list(line.get_xdata()) == list(range(11))
    assert len(axes[0].collections) == 6  # one confidence band per line
    matplotlib.pyplot.close(fig)


def test_figure3_draws_the_reference_curves_distinctly():
    df = _ranks()
    ref = pd.DataFrame([{"benchmark": b, "curve": c, "round_idx": r, "hits": 40.0 + 5 * r}
                        for b in ("visdial", "flan") for c in plotting.REFERENCE_STYLES for r in range(11)])
    fig = plotting.figure3(df, n_boot=30, references=ref)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    for ax, n_ref in zip(axes, (2, 0, 0, 2)):
        refs = [ln for ln in ax.get_lines() if ln.get_label() in plotting.REFERENCE_STYLES]
        assert len(refs) == n_ref and len(ax.get_lines()) == 6 + n_ref
        for ln in refs:
            assert matplotlib.colors.to_hex(ln.get_color()) == plotting.REFERENCE_COLOUR.lower()
            assert ln.get_linestyle() == plotting.REFERENCE_STYLES[ln.get_label()]
            assert ln.get_color() not in plotting.ENCODER_COLOURS.values() and ln.get_linewidth() > 2
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert set(plotting.REFERENCE_STYLES) <= set(labels)
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
