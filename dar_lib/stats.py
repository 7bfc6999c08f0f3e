"""Statistics over rank tables: bootstrap intervals, paired differences, claim verdicts, summary tables.

Everything here reads a tidy rank table (columns ``benchmark, encoder, method, dialog_idx,
round_idx, rank``, as :func:`dar_lib.evaluate.evaluate` writes it) and builds on
:mod:`dar_lib.metrics`. Intervals are percentile bootstrap intervals with *dialogues* resampled;
two groups are compared *paired* (the same resampled dialogues on both sides), which is valid
because ChatIR's four sets, and their toy twins, share targets in the same order.

Verdicts. A claim is judged against an interval, never a point estimate:

- ``"positive"`` / ``"negative"``: a > b (a < b) is *supported* when the interval excludes 0 on the
  claimed side, *contradicted* when it excludes 0 on the other side, else *inconclusive*;
- ``"non-inferior"`` (the paper's "competitive", "trails by only 3.01%"): a >= b - margin is
  supported when the interval's lower end is above ``-margin``, contradicted when its upper end is
  below it.

:func:`claims_table` judges claims with Bonferroni-corrected intervals over a stated family (the book's
is every claim it judges, :mod:`dar_lib.claims`), and beside each sign verdict says whether the interval
contains the paper's number and whether the effect is reversed, larger, smaller or of the paper's size
(:func:`size_label`), and the smallest effect the run could detect (:func:`minimum_detectable_effect`).

Examples:
    >>> import pandas as pd
    >>> df = pd.DataFrame({"benchmark": "b", "encoder": "e", "method": ["dar"] * 4 + ["baseline"] * 4,
    ...                    "dialog_idx": [0, 0, 1, 1] * 2, "round_idx": [0, 1] * 4,
    ...                    "rank": [12, 3, 0, 40, 50, 60, 0, 70]})
    >>> summary_table(df, rounds=(0, 1))
      benchmark encoder    method  hits@10 r0  hits@10 r1
    0         b       e       dar        50.0       100.0
    1         b       e  baseline        50.0        50.0
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from dar_lib.metrics import bri, hits_matrix, recall_at_k

REQUIRED_COLUMNS = ("benchmark", "method", "encoder", "dialog_idx", "round_idx", "rank")
GROUP = ["benchmark", "encoder", "method"]
#: The margin (Hits@10 percentage points) of the non-inferiority claims (the paper's "competitive",
#: "trails ... by only 3.01%"): a method is non-inferior when it is at most this much worse.
NONINFERIORITY_MARGIN = 5.0
#: What a verdict on the toy world is evidence of (shown beside every claims table of that profile).
TOY_EVIDENCE = ("toy-world verdicts illustrate the mechanism in a world built to have the paper's premise; "
                "they are not evidence about the real benchmarks")


def check_table(df: pd.DataFrame) -> None:
    """Raise ``ValueError`` naming the columns a rank table lacks."""
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"rank table lacks columns {missing}; needs {list(REQUIRED_COLUMNS)}")


def rank_matrix(group: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """One group's ranks as ``(n_dialogues, n_rounds)``, dialogues sorted, and the round indices.

    Raises:
        ValueError: a dialogue lacks a round (the table is incomplete) or a (dialogue, round) repeats.
    """
    if group.duplicated(["dialog_idx", "round_idx"]).any():
        raise ValueError("the rank table repeats a (dialog_idx, round_idx) pair within one group; "
                         "select one benchmark, encoder and method first")
    wide = group.pivot(index="dialog_idx", columns="round_idx", values="rank").sort_index()
    if wide.isna().any().any():
        raise ValueError("every dialogue needs a rank at every round (missing (dialog_idx, round_idx) pairs)")
    return wide.to_numpy(), wide.columns.to_numpy()


def select(df: pd.DataFrame, sel: Mapping[str, str]) -> pd.DataFrame:
    """The rows matching every ``column: value`` of ``sel``.

    Raises:
        ValueError: no row matches (the message shows the selector).
    """
    g = df
    for col, val in sel.items():
        g = g[g[col] == val]
    if g.empty:
        raise ValueError(f"no rows match {dict(sel)}")
    return g


def hits_per_dialogue(df: pd.DataFrame, sel: Mapping[str, str], k: int = 10) -> np.ndarray:
    """100 x cumulative hit per dialogue and round for the group ``sel`` selects: ``(n_dialogues, n_rounds)``."""
    return 100.0 * hits_matrix(rank_matrix(select(df, sel))[0], k)


def resample_counts(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """Bootstrap resamples of ``n`` dialogues as counts: ``(n_boot, n)``, row ``b`` says how often resample
    ``b`` drew each dialogue (so ``counts @ values / n`` is every resample's mean).

    The draws are ``default_rng(seed).integers(0, n, (n_boot, n))``: one matrix product replaces a Python
    loop over resamples, so 10,000 resamples of a few hundred dialogues take milliseconds.
    """
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    counts = np.bincount((idx + n * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * n)
    return counts.reshape(n_boot, n).astype(float)


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and percentile bootstrap interval over rows (dialogues), per column (round).

    Args:
        values: ``(n_dialogues, n_cols)`` per-dialogue values (e.g. 100 x hits); 1-D is one column.
        n_boot: bootstrap resamples.
        level: interval coverage in (0, 1).
        seed: seed of the resampling generator (same seed, same interval).

    Returns:
        ``(mean, low, high)``, each of shape ``(n_cols,)``.

    Raises:
        ValueError: no rows.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    n = values.shape[0]
    if n == 0:
        raise ValueError("bootstrap_ci needs at least one dialogue")
    boots = resample_counts(n, n_boot, seed) @ values / n
    tail = (1 - level) / 2
    low, high = np.quantile(boots, [tail, 1 - tail], axis=0)
    return values.mean(axis=0), low, high


def bootstrap_statistic(values: Mapping[str, np.ndarray], statistic: Callable[[Mapping[str, np.ndarray]], np.ndarray],
                        n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """A statistic of the *means* of several paired per-dialogue vectors, with a bootstrap interval.

    Every statistic the book judges (a difference of means, an extreme of means, a ratio of mean gains)
    is a function of the vectors' means, so the resamples are computed at once (:func:`resample_counts`).

    Args:
        values: name -> ``(n_dialogues,)`` per-dialogue values, all over the same dialogues in the same order.
        statistic: ``{name: means} -> statistic``, elementwise: it is called once with scalar means (the
            point estimate) and once with ``(n_boot,)`` arrays of resampled means (write it with numpy
            operations, e.g. ``np.maximum``, not Python's ``max``).
        n_boot: resamples; every vector is resampled with the same dialogue indices.
        level: interval coverage.
        seed: resampling seed.

    Returns:
        ``{"diff": point estimate, "low", "high"}`` (non-finite resamples, e.g. a zero denominator, dropped).

    Raises:
        ValueError: vectors of different lengths.
    """
    arrays = {k: np.asarray(v, dtype=float) for k, v in values.items()}
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"paired vectors differ in length: { {k: len(v) for k, v in arrays.items()} }")
    n = lengths.pop()
    counts = resample_counts(n, n_boot, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        boots = np.asarray(statistic({k: counts @ v / n for k, v in arrays.items()}), dtype=float)
        point = float(statistic({k: float(v.mean()) for k, v in arrays.items()}))
    boots = boots[np.isfinite(boots)]
    tail = (1 - level) / 2
    if not len(boots):
        return {"diff": point, "low": float("nan"), "high": float("nan")}
    low, high = np.quantile(boots, [tail, 1 - tail])
    return {"diff": point, "low": float(low), "high": float(high)}


def hits_curves(df: pd.DataFrame, k: int = 10, n_boot: int = 1000, level: float = 0.95,
                seed: int = 0) -> pd.DataFrame:
    """Hits@k per (benchmark, method, encoder, round) with bootstrap intervals (Figure 3's lines and bands).

    Returns:
        Columns ``benchmark, method, encoder, round_idx, hits, low, high, n``.
    """
    check_table(df)
    rows = []
    for (bench, method, enc), group in df.groupby(["benchmark", "method", "encoder"], sort=False):
        ranks, rounds = rank_matrix(group)
        mean, low, high = bootstrap_ci(100.0 * hits_matrix(ranks, k), n_boot, level, seed)
        for j, r in enumerate(rounds):
            rows.append((bench, method, enc, int(r), mean[j], low[j], high[j], ranks.shape[0]))
    return pd.DataFrame(rows, columns=["benchmark", "method", "encoder", "round_idx", "hits", "low", "high", "n"])


def hits_table(df: pd.DataFrame, rounds: Iterable[int] = (0, 1, 2, 5, 10), k: int = 10,
               n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Cumulative Hits@k per (benchmark, encoder, method) at chosen rounds, with bootstrap 95% intervals.

    Returns:
        One row per (benchmark, encoder, method, round): ``hits``, ``low``, ``high``.
    """
    check_table(df)
    rows = []
    for (bench, enc, method), g in df.groupby(GROUP, sort=False):
        mean, low, high = bootstrap_ci(100.0 * hits_matrix(rank_matrix(g)[0], k), n_boot, seed=seed)
        for r in rounds:
            rows.append({"benchmark": bench, "encoder": enc, "method": method, "round": r,
                         "hits": mean[r], "low": low[r], "high": high[r]})
    return pd.DataFrame(rows)


def summary_table(df: pd.DataFrame, rounds: Sequence[int] = (0, 5, 10), k: int = 10) -> pd.DataFrame:
    """Hits@k point estimates, one row per (benchmark, encoder, method), one column per round."""
    check_table(df)
    rows = []
    for (bench, enc, method), g in df.groupby(GROUP, sort=False):
        h = 100.0 * hits_matrix(rank_matrix(g)[0], k).mean(axis=0)
        rows.append({"benchmark": bench, "encoder": enc, "method": method,
                     **{f"hits@{k} r{r}": round(float(h[r]), 2) for r in rounds if r < len(h)}})
    return pd.DataFrame(rows)


def recall_bri_table(df: pd.DataFrame, k: int = 10, round_idx: int = 10, n_boot: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """Recall@k at one round and BRI (log form, PlugIR's paper) over all rounds, with bootstrap 95% intervals."""
    check_table(df)
    rows = []
    for (bench, enc, method), g in df.groupby(GROUP, sort=False):
        ranks = rank_matrix(g)[0]
        rec = (ranks[:, round_idx] < k) * 100.0
        _, r_low, r_high = bootstrap_ci(rec, n_boot, seed=seed)
        # BRI is the mean over dialogues of a per-dialogue integral, so it resamples like any mean
        per_dialogue = np.array([bri(ranks[i: i + 1]) for i in range(len(ranks))])
        _, b_low, b_high = bootstrap_ci(per_dialogue, n_boot, seed=seed)
        rows.append({"benchmark": bench, "encoder": enc, "method": method,
                     f"recall@{k} r{round_idx}": float(recall_at_k(ranks, k)[round_idx]),
                     "recall_low": float(r_low[0]), "recall_high": float(r_high[0]),
                     "bri": bri(ranks), "bri_low": float(b_low[0]), "bri_high": float(b_high[0])})
    return pd.DataFrame(rows)


def paired_difference(df: pd.DataFrame, a: Mapping[str, str], b: Mapping[str, str], round_idx: int = 10,
                      k: int = 10, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Hits@k(a) - Hits@k(b) at a round, with a paired bootstrap interval (same dialogues resampled).

    Args:
        df: the rank table.
        a, b: selectors of one (benchmark, encoder, method) group each, e.g.
            ``{"benchmark": "toy-flan", "encoder": "zero-shot", "method": "dar"}``.
        round_idx: the round compared.
        k: the Hits cut-off.
        n_boot: resamples.
        seed: resampling seed.
        level: interval coverage.

    Returns:
        ``{"diff", "low", "high", "a", "b"}`` in percentage points.

    Raises:
        ValueError: a selector matches nothing, or the groups cover different numbers of dialogues.
    """
    ha = hits_per_dialogue(df, a, k)[:, round_idx]
    hb = hits_per_dialogue(df, b, k)[:, round_idx]
    if len(ha) != len(hb):
        raise ValueError(f"the two groups cover different dialogues ({len(ha)} vs {len(hb)})")
    d = bootstrap_statistic({"a": ha, "b": hb}, lambda m: m["a"] - m["b"], n_boot, level, seed)
    return {**d, "a": float(ha.mean()), "b": float(hb.mean())}


def verdict(diff: Mapping[str, float], expected: str = "positive", margin: float = NONINFERIORITY_MARGIN) -> str:
    """Judge a claim against its interval (see the module docstring).

    Args:
        diff: ``{"low", "high"}`` (a :func:`paired_difference` result).
        expected: ``"positive"``, ``"negative"`` or ``"non-inferior"``.
        margin: the non-inferiority margin in percentage points.

    Returns:
        ``"supported"``, ``"contradicted"`` or ``"inconclusive"``.

    Raises:
        ValueError: an unknown ``expected``.
    """
    lo, hi = diff["low"], diff["high"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "inconclusive"
    if expected == "positive":
        return "supported" if lo > 0 else "contradicted" if hi < 0 else "inconclusive"
    if expected == "negative":
        return "supported" if hi < 0 else "contradicted" if lo > 0 else "inconclusive"
    if expected == "non-inferior":
        return "supported" if lo > -margin else "contradicted" if hi < -margin else "inconclusive"
    raise ValueError(f"expected must be 'positive', 'negative' or 'non-inferior', got {expected!r}")


def fmt_diff(d: Mapping[str, float]) -> str:
    """``+3.1 pp [+0.4, +5.9]``."""
    return f"{d['diff']:+.1f} pp [{d['low']:+.1f}, {d['high']:+.1f}]"


#: Labels of an estimate's sign and size against the paper's number (:func:`size_label`).
SIZE_LABELS = ("direction reversed", "larger than the paper", "smaller than the paper",
               "consistent with the paper's size", "direction as claimed")


def size_label(diff: Mapping[str, float], paper_value: float | None = None, expected: str = "positive") -> str:
    """Judge an estimate's direction and size against the paper's, beside the sign-only verdict.

    With the paper's number ``p`` (percentage points, signed): ``"direction reversed"`` when the point
    estimate's sign is opposite to ``p``'s; else, comparing magnitudes on ``p``'s side,
    ``"larger than the paper"`` when the whole interval lies beyond ``p``, ``"smaller than the paper"``
    when it lies short of it, ``"consistent with the paper's size"`` when it contains ``p``. Without a
    number (the paper says only "> 0", or nothing), the direction is the claimed one (``positive``: +,
    ``negative``: -) and the label is ``"direction reversed"`` or ``"direction as claimed"``; a
    non-inferiority claim without a number has no direction, so it gets ``""``.

    Args:
        diff: ``{"diff", "low", "high"}``: the point estimate and the interval judged.
        paper_value: the paper's number, or ``None``.
        expected: the claim's test (``"positive"``, ``"negative"``, ``"non-inferior"``).

    Returns:
        One of :data:`SIZE_LABELS`, or ``""``.
    """
    point, lo, hi = diff["diff"], diff["low"], diff["high"]
    if paper_value is None:
        sign = {"positive": 1.0, "negative": -1.0}.get(expected, 0.0)
        if sign == 0.0:
            return ""
        return "direction reversed" if point * sign < 0 else "direction as claimed"
    sign = 1.0 if paper_value >= 0 else -1.0
    if point * sign < 0 and paper_value != 0:
        return "direction reversed"
    lo_s, hi_s = sorted((lo * sign, hi * sign))
    target = abs(paper_value)
    if lo_s > target:
        return "larger than the paper"
    if hi_s < target:
        return "smaller than the paper"
    return "consistent with the paper's size"


def contains_paper(diff: Mapping[str, float], paper_value: float | None) -> str:
    """``"yes"`` / ``"no"`` whether the interval ``[low, high]`` contains the paper's number; ``"-"`` without one."""
    if paper_value is None:
        return "-"
    return "yes" if diff["low"] <= paper_value <= diff["high"] else "no"


def minimum_detectable_effect(differences: np.ndarray, alpha: float = 0.05, n_comparisons: int = 1,
                              power: float = 0.8) -> float:
    """The smallest mean paired difference a two-sided test at ``alpha / n_comparisons`` detects with ``power``.

    ``MDE = (z_{1 - alpha / (2 m)} + z_{power}) * sd(d) / sqrt(n)`` for ``n`` per-dialogue paired differences
    ``d`` (normal approximation of the paired mean; for independent Bernoulli hits with rates ``p_a``,
    ``p_b`` the ``sd`` is ``100 sqrt(p_a (1 - p_a) + p_b (1 - p_b))`` pp). Units are those of ``d``.

    Args:
        differences: ``(n_dialogues,)`` per-dialogue paired differences (e.g. 100 x hit_a - 100 x hit_b).
        alpha: family-wise error rate.
        n_comparisons: the family size ``m`` (Bonferroni).
        power: the probability of detecting an effect of that size.

    Returns:
        The effect in the units of ``differences``; ``nan`` with fewer than two dialogues or when every
        difference is the same (a sample without spread says nothing about the variance, and 0 would read
        as "any effect is detectable").
    """
    from statistics import NormalDist

    d = np.asarray(differences, dtype=float)
    if len(d) < 2 or not d.std() > 0:
        return float("nan")
    z = NormalDist().inv_cdf(1 - alpha / (2 * max(1, n_comparisons))) + NormalDist().inv_cdf(power)
    return float(z * d.std(ddof=1) / np.sqrt(len(d)))


def claim_values(df: pd.DataFrame, claim: Mapping, k: int = 10):
    """The paired per-dialogue vectors a claim is judged on, and its statistic of their means.

    Kinds (``claim["kind"]``, default ``"paired"``):

    - ``"paired"``: Hits@k(a) - Hits@k(b) at ``round``;
    - ``"late-gain"``: a's gain from round ``start`` to ``round`` minus b's gain (the baseline plateaus
      while DAR keeps improving, Section 4.3);
    - ``"extreme"``: ``groups[claimed]`` minus the highest (``expected="positive"``) or lowest
      (``"negative"``) other group, each optionally minus ``baselines[name]`` (a "largest gain" claim).

    Returns:
        ``(values, statistic, differences)``: name -> ``(n_dialogues,)`` vectors, the elementwise statistic
        of their means (:func:`bootstrap_statistic`), and the per-dialogue paired differences the power
        figure reads (``None`` for an extreme claim, whose statistic is not a mean difference).

    Raises:
        ValueError: an unknown kind, a selector that matches nothing, or groups of different dialogues.
    """
    kind = claim.get("kind", "paired")
    r = int(claim.get("round", 10))
    if kind in ("paired", "late-gain"):
        ha, hb = hits_per_dialogue(df, claim["a"], k), hits_per_dialogue(df, claim["b"], k)
        if len(ha) != len(hb):
            raise ValueError(f"the two groups of {claim['claim']!r} cover different dialogues ({len(ha)} vs {len(hb)})")
        if kind == "paired":
            va, vb = ha[:, r], hb[:, r]
        else:
            s = int(claim.get("start", 5))
            va, vb = ha[:, r] - ha[:, s], hb[:, r] - hb[:, s]
        return {"a": va, "b": vb}, (lambda m: m["a"] - m["b"]), va - vb
    if kind == "extreme":
        vals = {}
        for name, sel in claim["groups"].items():
            v = hits_per_dialogue(df, sel, k)[:, r]
            if claim.get("baselines"):
                v = v - hits_per_dialogue(df, claim["baselines"][name], k)[:, r]
            vals[name] = v
        claimed, lowest = claim["claimed"], claim.get("expected") == "negative"
        others = [n for n in vals if n != claimed]

        def stat(m):
            rest = np.stack([np.asarray(m[o], dtype=float) for o in others])
            return m[claimed] - (rest.min(axis=0) if lowest else rest.max(axis=0))

        return vals, stat, None
    raise ValueError(f"claim kind must be 'paired', 'late-gain' or 'extreme', got {kind!r}")


def claims_table(df: pd.DataFrame, claims: Sequence[Mapping], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95, family_size: int | None = None, power: float = 0.8) -> pd.DataFrame:
    """Judge claims of the paper on a run: sign (verdict), direction and size (against the paper's number).

    Each claim gets its interval at ``level`` (shown) and one at the Bonferroni level
    ``1 - (1 - level) / family_size`` (family-wise ``level`` over the whole family, e.g. every claim the
    book judges, :mod:`dar_lib.claims`), on which the verdict, the paper comparison and the size label are
    read. Both intervals come from the same resamples.

    Args:
        df: the rank table.
        claims: dicts with ``claim`` (text), ``kind`` (see :func:`claim_values`), its selectors (``a``, ``b``
            or ``groups``, ``claimed``, ``baselines``), ``round`` (default 10), ``expected``
            (``"positive"``, ``"negative"`` or ``"non-inferior"``), ``margin`` (non-inferiority, default
            :data:`NONINFERIORITY_MARGIN`), ``paper`` (text) and ``paper_value`` (the paper's number in pp, or
            ``None``).
        n_boot: resamples per claim.
        seed: resampling seed.
        level: coverage of the shown intervals and the family-wise level of the verdicts.
        family_size: the number of comparisons corrected for (default: ``len(claims)``); refused when
            smaller than ``len(claims)``.
        power: the power of the detectable-effect column (:func:`minimum_detectable_effect`).

    Returns:
        One row per claim: claim, paper, test, ours (``+x.x pp [lo, hi]`` at ``level``), diff, low, high,
        corrected (the family-wise interval), low_corrected, high_corrected, verdict (on the corrected
        interval), verdict_uncorrected, contains_paper, size, detectable (pp), point_extreme (extreme claims).
        ``attrs``: ``n_comparisons`` (this table's), ``family_size``, ``family_level``, ``expected_false``.

    Raises:
        ValueError: ``family_size`` below the number of claims.
    """
    m = len(claims) if family_size is None else int(family_size)
    if m < len(claims):
        raise ValueError(f"family_size {m} is smaller than the {len(claims)} claims judged")
    m = max(1, m)
    family_level = 1 - (1 - level) / m
    rows = []
    for c in claims:
        expected = c.get("expected", "positive")
        margin = float(c.get("margin", NONINFERIORITY_MARGIN))
        values, stat, diffs = claim_values(df, c)
        d = bootstrap_statistic(values, stat, n_boot, level, seed)
        dc = bootstrap_statistic(values, stat, n_boot, family_level, seed)
        paper_value = c.get("paper_value")
        test = {"positive": "a > b", "negative": "a < b", "non-inferior": f"a >= b - {margin:g} pp"}[expected]
        if c.get("kind") == "extreme":
            means = {n: float(v.mean()) for n, v in values.items()}
            extreme = (min if expected == "negative" else max)(means, key=means.get)
            test = f"{c['claimed']} {'lowest' if expected == 'negative' else 'highest'}"
        else:
            extreme = None
        rows.append({"claim": c["claim"], "paper": c.get("paper", ""), "test": test, "ours": fmt_diff(d),
                     "diff": d["diff"], "low": d["low"], "high": d["high"], "corrected": fmt_diff(dc),
                     "low_corrected": dc["low"], "high_corrected": dc["high"],
                     "verdict": verdict(dc, expected, margin), "verdict_uncorrected": verdict(d, expected, margin),
                     "contains_paper": contains_paper(dc, paper_value), "size": size_label(dc, paper_value, expected),
                     "detectable": (minimum_detectable_effect(diffs, 1 - level, m, power)
                                    if diffs is not None else float("nan")),
                     "point_extreme": extreme})
    table = pd.DataFrame(rows)
    table.attrs["n_comparisons"] = len(claims)
    table.attrs["family_size"] = m
    table.attrs["family_level"] = family_level
    table.attrs["expected_false"] = m * (1 - level) / 2
    return table


def extreme_claim(df: pd.DataFrame, groups: Mapping[str, Mapping[str, str]], claimed: str, *, lowest: bool,
                  baselines: Mapping[str, Mapping[str, str]] | None = None, round_idx: int = 10, k: int = 10,
                  n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Is ``claimed`` the lowest (or highest) of several paired groups? With an interval.

    The statistic is ``value(claimed) - min(others)`` (lowest) or ``value(claimed) - max(others)``
    (highest), where a group's value is its mean Hits@k at ``round_idx``, or its gain over its
    baseline when ``baselines`` are given. Supported when the interval lies below (above) 0.

    Args:
        df: the rank table.
        groups: name -> selector.
        claimed: the name claimed to be the extreme.
        lowest: claim "lowest" (True) or "highest" (False).
        baselines: name -> selector of the group to subtract (for "largest gain" claims).
        round_idx, k, n_boot, seed, level: as :func:`paired_difference`.

    Returns:
        ``{"diff", "low", "high", "verdict", "point_extreme"}``; ``point_extreme`` is the group that is
        the extreme by point estimate.
    """
    claim = {"claim": f"{claimed} is the {'lowest' if lowest else 'highest'}", "kind": "extreme", "groups": groups,
             "claimed": claimed, "baselines": baselines, "round": round_idx,
             "expected": "negative" if lowest else "positive"}
    vals, stat, _ = claim_values(df, claim, k)
    d = bootstrap_statistic(vals, stat, n_boot, level, seed)
    means = {n: float(v.mean()) for n, v in vals.items()}
    d["point_extreme"] = (min if lowest else max)(means, key=means.get)
    d["verdict"] = verdict(d, claim["expected"])
    return d


def ratio_claim(values: Mapping[str, np.ndarray], numerator: str, denominator: str, n_boot: int = 1000,
                seed: int = 0, level: float = 0.95) -> dict:
    """mean(numerator) / mean(denominator) of paired per-dialogue values, with a bootstrap interval.

    Returns:
        ``{"diff": ratio, "low", "high"}`` (resamples with a zero denominator are dropped).
    """
    def stat(m):
        den = np.asarray(m[denominator], dtype=float)
        return np.where(den != 0, m[numerator] / np.where(den != 0, den, 1.0), np.nan)

    return bootstrap_statistic(values, stat, n_boot, level, seed)


def advantage_by_round(df: pd.DataFrame, a: Mapping[str, str], b: Mapping[str, str], k: int = 10,
                       n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Hits@k(a) - Hits@k(b) at every round with paired bootstrap 95% intervals."""
    d = hits_per_dialogue(df, a, k) - hits_per_dialogue(df, b, k)
    mean, low, high = bootstrap_ci(d, n_boot, seed=seed)
    return pd.DataFrame({"round": np.arange(d.shape[1]), "diff": mean, "low": low, "high": high})


def seed_spread(tables: Sequence[pd.DataFrame], sel: Mapping[str, str], round_idx: int = 10,
                k: int = 10) -> dict:
    """Hits@k at a round across repeated generations (one rank table per generation seed).

    Returns:
        ``{"mean", "sd", "min", "max", "n_seeds"}``: the variance that generation itself adds, to set
        beside the bootstrap interval (which resamples dialogues, not images).
    """
    vals = np.array([hits_per_dialogue(t, sel, k)[:, round_idx].mean() for t in tables])
    return {"mean": float(vals.mean()), "sd": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
            "min": float(vals.min()), "max": float(vals.max()), "n_seeds": len(vals)}
