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

:func:`claims_table` judges a family of claims with Bonferroni-corrected intervals (family-wise 95%)
and reports how many false verdicts the uncorrected 95% intervals would be expected to give.

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
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    boots = values[idx].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(boots, [tail, 1 - tail], axis=0)
    return values.mean(axis=0), low, high


def bootstrap_statistic(values: Mapping[str, np.ndarray], statistic: Callable[[Mapping[str, np.ndarray]], float],
                        n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Any statistic of several paired per-dialogue vectors, with a bootstrap interval.

    Args:
        values: name -> ``(n_dialogues,)`` per-dialogue values, all over the same dialogues in the same order.
        statistic: ``{name: vector} -> float`` (e.g. a difference of means, or a ratio of gains).
        n_boot: resamples; every vector is resampled with the same dialogue indices.
        level: interval coverage.
        seed: resampling seed.

    Returns:
        ``{"diff": point estimate, "low", "high"}``.

    Raises:
        ValueError: vectors of different lengths.
    """
    arrays = {k: np.asarray(v, dtype=float) for k, v in values.items()}
    lengths = {len(v) for v in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"paired vectors differ in length: { {k: len(v) for k, v in arrays.items()} }")
    n = lengths.pop()
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    boots = np.array([statistic({k: v[i] for k, v in arrays.items()}) for i in idx])
    boots = boots[np.isfinite(boots)]
    tail = (1 - level) / 2
    point = float(statistic(arrays))
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
    rng = np.random.default_rng(seed)
    for (bench, enc, method), g in df.groupby(GROUP, sort=False):
        ranks = rank_matrix(g)[0]
        rec = (ranks[:, round_idx] < k) * 100.0
        _, r_low, r_high = bootstrap_ci(rec, n_boot, seed=seed)
        idx = rng.integers(0, len(ranks), size=(n_boot, len(ranks)))
        boots = np.array([bri(ranks[i]) for i in idx])
        rows.append({"benchmark": bench, "encoder": enc, "method": method,
                     f"recall@{k} r{round_idx}": float(recall_at_k(ranks, k)[round_idx]),
                     "recall_low": float(r_low[0]), "recall_high": float(r_high[0]),
                     "bri": bri(ranks), "bri_low": float(np.quantile(boots, 0.025)),
                     "bri_high": float(np.quantile(boots, 0.975))})
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
    d = bootstrap_statistic({"a": ha, "b": hb}, lambda v: v["a"].mean() - v["b"].mean(), n_boot, level, seed)
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


def claims_table(df: pd.DataFrame, claims: Sequence[Mapping], n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> pd.DataFrame:
    """Judge a family of the paper's claims on a run, with paired bootstrap intervals.

    Each claim gets its interval at ``level`` (shown) and a verdict from the Bonferroni-corrected
    interval at ``1 - (1 - level) / n_claims`` (family-wise ``level``). The table's ``attrs`` hold
    ``n_comparisons`` and ``expected_false`` (how many of the uncorrected verdicts would be wrong by
    chance if no claim held: ``(1 - level) / 2`` per claim, one side).

    Args:
        df: the rank table.
        claims: dicts with ``claim`` (text), ``a`` and ``b`` (selectors, see :func:`paired_difference`),
            ``round`` (default 10), ``expected`` (``"positive"``, ``"negative"`` or ``"non-inferior"``),
            ``margin`` (non-inferiority, default :data:`NONINFERIORITY_MARGIN`) and ``paper`` (text).
        n_boot: resamples per claim.
        seed: resampling seed.
        level: coverage of the shown intervals and the family-wise level of the verdicts.

    Returns:
        One row per claim: claim, paper, test, ours (``+x.x pp [lo, hi]``), diff, low, high,
        verdict (Bonferroni), verdict_uncorrected.
    """
    n = max(1, len(claims))
    family_level = 1 - (1 - level) / n
    rows = []
    for c in claims:
        expected = c.get("expected", "positive")
        margin = float(c.get("margin", NONINFERIORITY_MARGIN))
        d = paired_difference(df, c["a"], c["b"], round_idx=c.get("round", 10), n_boot=n_boot, seed=seed, level=level)
        dc = paired_difference(df, c["a"], c["b"], round_idx=c.get("round", 10), n_boot=n_boot, seed=seed,
                               level=family_level)
        test = {"positive": "a > b", "negative": "a < b", "non-inferior": f"a >= b - {margin:g} pp"}[expected]
        rows.append({"claim": c["claim"], "paper": c.get("paper", ""), "test": test, "ours": fmt_diff(d),
                     "diff": d["diff"], "low": d["low"], "high": d["high"],
                     "verdict": verdict(dc, expected, margin), "verdict_uncorrected": verdict(d, expected, margin)})
    table = pd.DataFrame(rows)
    table.attrs["n_comparisons"] = len(claims)
    table.attrs["expected_false"] = len(claims) * (1 - level) / 2
    table.attrs["family_level"] = family_level
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
    vals = {}
    for name, sel in groups.items():
        v = hits_per_dialogue(df, sel, k)[:, round_idx]
        if baselines:
            v = v - hits_per_dialogue(df, baselines[name], k)[:, round_idx]
        vals[name] = v
    others = [n for n in groups if n != claimed]

    def stat(v):
        rest = [v[o].mean() for o in others]
        return v[claimed].mean() - (min(rest) if lowest else max(rest))

    d = bootstrap_statistic(vals, stat, n_boot, level, seed)
    means = {n: float(v.mean()) for n, v in vals.items()}
    d["point_extreme"] = (min if lowest else max)(means, key=means.get)
    d["verdict"] = verdict(d, "negative" if lowest else "positive")
    return d


def ratio_claim(values: Mapping[str, np.ndarray], numerator: str, denominator: str, n_boot: int = 1000,
                seed: int = 0, level: float = 0.95) -> dict:
    """mean(numerator) / mean(denominator) of paired per-dialogue values, with a bootstrap interval.

    Returns:
        ``{"diff": ratio, "low", "high"}`` (resamples with a zero denominator are dropped).
    """
    def stat(v):
        den = v[denominator].mean()
        return v[numerator].mean() / den if den != 0 else float("nan")

    return bootstrap_statistic(values, stat, n_boot, level, seed)


def advantage_by_round(df: pd.DataFrame, a: Mapping[str, str], b: Mapping[str, str], k: int = 10,
                       n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Hits@k(a) - Hits@k(b) at every round with paired bootstrap 95% intervals."""
    d = hits_per_dialogue(df, a, k) - hits_per_dialogue(df, b, k)
    mean, low, high = bootstrap_ci(d, n_boot, seed=seed)
    return pd.DataFrame({"round": np.arange(d.shape[1]), "diff": mean, "low": low, "high": high})


def late_gain_table(df: pd.DataFrame, start: int = 5, stop: int = 10, k: int = 10, n_boot: int = 1000,
                    seed: int = 0) -> pd.DataFrame:
    """Per (benchmark, encoder): Hits@k gained by DAR from round ``start`` to ``stop`` minus the baseline's gain.

    A positive, interval-excluding-zero value supports "the baseline plateaus while DAR keeps improving".
    """
    rows = []
    for (bench, enc), _ in df.groupby(["benchmark", "encoder"], sort=False):
        h_dar = hits_per_dialogue(df, {"benchmark": bench, "encoder": enc, "method": "dar"}, k)
        h_base = hits_per_dialogue(df, {"benchmark": bench, "encoder": enc, "method": "baseline"}, k)
        d = (h_dar[:, stop] - h_dar[:, start]) - (h_base[:, stop] - h_base[:, start])
        mean, low, high = bootstrap_ci(d, n_boot, seed=seed)
        res = {"diff": float(mean[0]), "low": float(low[0]), "high": float(high[0])}
        rows.append({"benchmark": bench, "encoder": enc,
                     "dar_gain": float(h_dar[:, stop].mean() - h_dar[:, start].mean()),
                     "baseline_gain": float(h_base[:, stop].mean() - h_base[:, start].mean()),
                     **res, "verdict": verdict(res)})
    return pd.DataFrame(rows)


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
