"""One plotting style for the whole book: Figure 3 (Hits@10 per round, four panels) and its controls.

Plotting only draws: the curves and intervals come from :mod:`dar_lib.stats`.

Conventions that stay identical in every chapter: one colour per encoder (:data:`ENCODER_COLOURS`),
dashed = baseline, solid = DAR (:data:`METHOD_STYLES`), shaded band = bootstrap confidence interval
with dialogues resampled.

Examples:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"benchmark": "visdial", "method": "dar", "encoder": "zero-shot",
    ...                    "dialog_idx": [0, 0, 1, 1], "round_idx": [0, 1, 0, 1], "rank": [12, 3, 0, 40]})
    >>> fig = figure3(df, n_boot=20)
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from dar_lib import stats

#: Encoder -> colour (Figure 3's convention; colour-blind-safe Okabe-Ito hues).
ENCODER_COLOURS: dict[str, str] = {
    "zero-shot": "#0072B2",
    "coco-ft": "#E69F00",
    "dialogue-ft": "#009E73",
    "full": "#CC79A7",
    "clip": "#D55E00",
}
#: Encoder -> label shown in legends.
ENCODER_LABELS: dict[str, str] = {
    "zero-shot": "zero-shot",
    "coco-ft": "COCO-fine-tuned",
    "dialogue-ft": "dialogue-fine-tuned",
    "full": "full (reads every fact)",
    "clip": "CLIP",
}
#: Method -> matplotlib line style (baseline dashed, DAR solid; controls dotted / dash-dot).
METHOD_STYLES: dict[str, str] = {
    "baseline": "--",
    "dar": "-",
    "reformulated": ":",
    "images-only": "-.",
}
METHOD_LABELS: dict[str, str] = {
    "baseline": "baseline (raw dialogue)",
    "dar": "DAR",
    "reformulated": "reformulation only",
    "images-only": "images only",
}
#: Benchmark -> panel title, real sets and their toy twins.
BENCHMARK_TITLES: dict[str, str] = {
    "visdial": "VisDial", "chatgpt_blip2": "ChatGPT_BLIP2", "human_blip2": "HUMAN_BLIP2",
    "flan_blip2": "FLAN_BLIP2", "chatgpt": "ChatGPT_BLIP2 (toy)", "human": "HUMAN_BLIP2 (toy)",
    "flan": "FLAN_BLIP2 (toy)", "toy-visdial": "VisDial (toy)", "toy-chatgpt": "ChatGPT_BLIP2 (toy)",
    "toy-human": "HUMAN_BLIP2 (toy)", "toy-flan": "FLAN_BLIP2 (toy)",
}
_FALLBACK_COLOURS = ("#56B4E9", "#F0E442", "#000000", "#999999")
#: Figure 3's reference curves (``dar_lib.benchmarks.toyworld.information.reference_curves``): thick grey,
#: solid = fact-matching oracle, dotted = upper bound; no encoder uses this grey or width.
REFERENCE_STYLES: dict[str, str] = {"fact-matching oracle": "-", "upper bound (fresh candidates)": ":"}
REFERENCE_COLOUR = "#8C8C8C"


def set_style() -> None:
    """Apply the book's matplotlib style (called by every figure function; safe to call again)."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.labelsize": 9,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.fontsize": 8,
        "legend.frameon": False,
        "lines.linewidth": 1.6,
    })


def encoder_colour(encoder: str) -> str:
    """The colour of ``encoder`` (a stable fallback for names outside :data:`ENCODER_COLOURS`)."""
    if encoder in ENCODER_COLOURS:
        return ENCODER_COLOURS[encoder]
    return _FALLBACK_COLOURS[sum(map(ord, encoder)) % len(_FALLBACK_COLOURS)]


def _panels(df: pd.DataFrame, methods: Sequence[str], benchmarks: Sequence[str] | None, k: int,
            n_boot: int, level: float, seed: int, title: str, ncols: int, references: pd.DataFrame | None = None):
    import matplotlib.pyplot as plt

    set_style()
    curves = stats.hits_curves(df[df["method"].isin(methods)], k, n_boot, level, seed)
    benchmarks = list(benchmarks or dict.fromkeys(df["benchmark"]))
    ncols = min(ncols, len(benchmarks))
    nrows = -(-len(benchmarks) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.8 * nrows), sharey=True, squeeze=False)
    for ax, bench in zip(axes.flat, benchmarks):
        sub = curves[curves["benchmark"] == bench]
        if references is not None and len(references):
            for curve, c in references[references["benchmark"] == bench].groupby("curve", sort=False):
                ax.plot(c["round_idx"], c["hits"], REFERENCE_STYLES.get(curve, "--"), color=REFERENCE_COLOUR,
                        linewidth=2.6, alpha=0.9, label=curve, zorder=1)
        for (method, enc), c in sub.groupby(["method", "encoder"], sort=False):
            colour = encoder_colour(enc)
            ax.plot(c["round_idx"], c["hits"], METHOD_STYLES.get(method, "-"), color=colour,
                    label=f"{ENCODER_LABELS.get(enc, enc)}, {METHOD_LABELS.get(method, method)}")
            ax.fill_between(c["round_idx"], c["low"], c["high"], color=colour, alpha=0.12, linewidth=0)
        ax.set_title(BENCHMARK_TITLES.get(bench, bench))
        ax.set_xlabel("round")
        ax.set_xticks(range(0, 11, 2))
    for ax in axes[:, 0]:
        ax.set_ylabel(f"Hits@{k} (%)")
    for ax in list(axes.flat)[len(benchmarks):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, max(1, len(labels))), bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08 + 0.03 * (len(labels) > 4), 1, 1))
    return fig


def figure3(
    df: pd.DataFrame,
    benchmarks: Sequence[str] | None = None,
    k: int = 10,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    title: str = "Figure 3: Hits@10 per round, baseline (dashed) vs DAR (solid)",
    references: pd.DataFrame | None = None,
):
    """Figure 3: one panel per benchmark, Hits@k over rounds, colour = encoder, dashed = baseline, solid = DAR.

    Args:
        df: tidy ranks (``benchmark, method, encoder, dialog_idx, round_idx, rank``); methods
            ``"baseline"`` and ``"dar"`` are drawn, others ignored.
        benchmarks: panel order (default: order of appearance).
        k: Hits cut-off.
        n_boot: bootstrap resamples for the bands.
        level: band coverage.
        seed: bootstrap seed.
        title: figure title.
        references: reference curves drawn behind, thick grey (:data:`REFERENCE_STYLES`): columns
            ``benchmark, curve, round_idx, hits`` (:func:`dar_lib.chapters.reference_curves`).

    Returns:
        The matplotlib Figure.
    """
    stats.check_table(df)
    return _panels(df, ("baseline", "dar"), benchmarks, k, n_boot, level, seed, title, ncols=4, references=references)


def controls_figure(
    df: pd.DataFrame,
    benchmarks: Sequence[str] | None = None,
    k: int = 10,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    title: str = "Controls: reformulation only and images only next to baseline and DAR",
):
    """The controls: ``reformulated`` (dotted) and ``images-only`` (dash-dot) next to baseline and DAR.

    Args: as :func:`figure3`.

    Returns:
        The matplotlib Figure.
    """
    stats.check_table(df)
    return _panels(df, ("baseline", "reformulated", "images-only", "dar"), benchmarks, k, n_boot, level, seed,
                   title, ncols=4)


def figure4(records, max_images: int = 1, title: str = "Figure 4: what DAR imagines as the dialogue grows"):
    """Figure 4: one row per dialogue; per shown round the first generated image(s), then the target.

    Args:
        records: :class:`~dar_lib.explore.DialogueRecord` objects (with generated images per round).
        max_images: generated images shown per round.
        title: figure title.

    Returns:
        The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    set_style()
    records = list(records)
    if not records:
        raise ValueError("figure4 needs at least one dialogue record")
    n_rounds = len(records[0].rounds)
    cols = n_rounds * max_images + 1
    # each row: a square image 1.3 in wide plus a two-line title (round, target rank) above it
    fig, axes = plt.subplots(len(records), cols, figsize=(1.3 * cols, 1.85 * len(records) + 0.4), squeeze=False)
    for row, rec in zip(axes, records):
        for j, rnd in enumerate(rec.rounds):
            for i in range(max_images):
                ax = row[j * max_images + i]
                if i < len(rnd.k_images):
                    ax.imshow(rnd.k_images[i])
                rank = "" if rnd.target_rank is None else f"\ntarget rank {rnd.target_rank + 1:g}"
                ax.set_title(f"round {rnd.round_idx}{rank}" if i == 0 else "", fontsize=7)
        row[-1].imshow(rec.target_image)
        row[-1].set_title("target", fontsize=7)
        for ax in row:
            ax.set_xticks([]), ax.set_yticks([])
            ax.grid(False)
    fig.suptitle(title)
    fig.tight_layout(h_pad=1.2)
    return fig


def reference_curves_figure(curves: pd.DataFrame, k: int = 10):
    """The toy world's two reference curves per style (columns ``benchmark, curve, round_idx, hits``).

    Returns:
        The matplotlib Figure: one panel per style, solid = fact-matching oracle, dotted = upper bound.
    """
    import matplotlib.pyplot as plt

    set_style()
    styles = list(dict.fromkeys(curves["benchmark"]))
    fig, axes = plt.subplots(1, len(styles), figsize=(3.0 * len(styles), 2.6), sharey=True, squeeze=False)
    for ax, style in zip(axes.flat, styles):
        for (curve, c), ls in zip(curves[curves.benchmark == style].groupby("curve", sort=False), ("-", ":")):
            ax.plot(c["round_idx"], c["hits"], ls, color="#000000", label=curve)
        ax.set_title(BENCHMARK_TITLES.get(style, style))
        ax.set_xlabel("round")
        ax.set_xticks(range(0, 11, 2))
    axes[0, 0].set_ylabel(f"Hits@{k} (%)")
    axes[0, 0].legend(loc="lower right")
    fig.suptitle("Reference curves: what the stated facts allow")
    fig.tight_layout()
    return fig


def advantage_figure(adv: pd.DataFrame, title: str):
    """A paired difference per round with its band (columns ``round, diff, low, high``)."""
    import matplotlib.pyplot as plt

    set_style()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(adv["round"], adv["diff"], marker="o", color="#000000")
    ax.fill_between(adv["round"], adv["low"], adv["high"], color="#000000", alpha=0.15, linewidth=0)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("round")
    ax.set_ylabel("Hits@10 difference (pp)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def k_figure(res: pd.DataFrame):
    """DAR's gain over the baseline at round 10 per K (columns ``K, diff, low, high``)."""
    import matplotlib.pyplot as plt

    set_style()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(res["K"], res["diff"], marker="o", color=ENCODER_COLOURS["zero-shot"])
    ax.fill_between(res["K"], res["low"], res["high"], color=ENCODER_COLOURS["zero-shot"], alpha=0.15, linewidth=0)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("K (images per turn)")
    ax.set_ylabel("Hits@10 gain at round 10 (pp)")
    fig.tight_layout()
    return fig
