"""The book's experiments: the shared results grid, metric tables with intervals, claim verdicts.

Chapters call these with their parameters cell; the heavy lifting (generation, encoding) is in
:mod:`dar_lib.evaluate` and cached in the artefact store, so chapters that share a grid replay it.

Examples:
    >>> df = grid(["toy-flan"], {"zero-shot": "toy:clip-zs"}, n_dialogues=20, toy_size="smoke")  # doctest: +SKIP
    >>> hits_table(df, rounds=(0, 5, 10))                                                        # doctest: +SKIP
"""

from __future__ import annotations

import io
import time
from contextlib import contextmanager
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from dar_lib.metrics import bri, cumulative_hits, recall_at_k

#: Paper profile's encoder roles mirror the toy ones; Figure 3 colours are keyed by role.
ROLES = ("zero-shot", "coco-ft", "dialogue-ft")


def _store(store):
    from dar_lib import settings
    from dar_lib.store import ArtefactStore

    return store or ArtefactStore(settings.cache_dir() / "store")


def grid(
    benchmarks: Sequence[str],
    encoders: Mapping[str, str],
    *,
    methods: Sequence[str] = ("baseline", "reformulated", "dar", "images-only"),
    store=None,
    progress: bool = True,
    **config,
) -> pd.DataFrame:
    """Evaluate every benchmark with every encoder; one tidy table of ranks.

    Args:
        benchmarks: benchmark names.
        encoders: role (e.g. ``"zero-shot"``) -> encoder id. The table's ``encoder`` column holds the
            role (Figure 3 colours by role) and ``encoder_id`` the id.
        methods: methods to rank.
        store: artefact store (default ``<cache>/store``); the finished table is cached there too.
        progress: progress bars.
        **config: further :class:`~dar_lib.evaluate.EvalConfig` fields (``n_dialogues``, ``k_images``, ...).

    Returns:
        Ranks with provenance, one row per (benchmark, encoder, method, dialogue, round).
    """
    from dar_lib.evaluate import EvalConfig, evaluate

    store = _store(store)
    frames = []
    for bench in benchmarks:
        for role, enc in encoders.items():
            cfg = EvalConfig(benchmark=bench, encoder=enc, methods=tuple(methods), **config)
            key = store.key("table", config=repr(cfg), version=_version())
            cached = store.get_bytes("table", key)
            if cached is not None:
                t = pd.read_csv(io.BytesIO(cached))
            else:
                t = evaluate(cfg, store, progress=progress)
                buf = io.StringIO()
                t.to_csv(buf, index=False)
                store.put_bytes("table", key, buf.getvalue().encode())
                t = pd.read_csv(io.StringIO(buf.getvalue()))  # same dtypes as a cached read
            t = t.rename(columns={"encoder": "encoder_id"})
            t.insert(1, "encoder", role)
            frames.append(t)
    return pd.concat(frames, ignore_index=True)


def _version() -> str:
    import dar_lib

    return dar_lib.__version__


def _ranks(g: pd.DataFrame) -> np.ndarray:
    return g.pivot(index="dialog_idx", columns="round_idx", values="rank").sort_index().to_numpy()


def _boot(values: np.ndarray, n_boot: int, seed: int, level: float = 0.95):
    from dar_lib.plotting import bootstrap_ci

    return bootstrap_ci(values, n_boot=n_boot, level=level, seed=seed)


def hits_table(df: pd.DataFrame, rounds: Iterable[int] = (0, 1, 2, 5, 10), k: int = 10,
               n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Cumulative Hits@k per (benchmark, encoder, method) at chosen rounds, with bootstrap 95% intervals.

    Returns:
        One row per (benchmark, encoder, method, round): ``hits``, ``low``, ``high``.
    """
    rows = []
    for (bench, enc, method), g in df.groupby(["benchmark", "encoder", "method"], sort=False):
        hit = np.logical_or.accumulate(_ranks(g) < k, axis=1) * 100.0
        mean, low, high = _boot(hit, n_boot, seed)
        for r in rounds:
            rows.append({"benchmark": bench, "encoder": enc, "method": method, "round": r,
                         "hits": mean[r], "low": low[r], "high": high[r]})
    return pd.DataFrame(rows)


def recall_bri_table(df: pd.DataFrame, k: int = 10, round_idx: int = 10, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Recall@k at one round and BRI over all rounds, each with a bootstrap 95% interval over dialogues."""
    rows = []
    rng = np.random.default_rng(seed)
    for (bench, enc, method), g in df.groupby(["benchmark", "encoder", "method"], sort=False):
        ranks = _ranks(g)
        rec = (ranks[:, round_idx] < k) * 100.0
        r_mean, r_low, r_high = _boot(rec[:, None], n_boot, seed)
        idx = rng.integers(0, len(ranks), size=(n_boot, len(ranks)))
        boots = np.array([bri(ranks[i]) for i in idx])
        rows.append({"benchmark": bench, "encoder": enc, "method": method,
                     f"recall@{k} r{round_idx}": float(recall_at_k(ranks, k)[round_idx]),
                     "recall_low": float(r_low[0]), "recall_high": float(r_high[0]),
                     "bri": bri(ranks), "bri_low": float(np.quantile(boots, 0.025)),
                     "bri_high": float(np.quantile(boots, 0.975))})
    return pd.DataFrame(rows)


def paired_difference(df: pd.DataFrame, a: Mapping[str, str], b: Mapping[str, str], round_idx: int = 10,
                      k: int = 10, n_boot: int = 1000, seed: int = 0) -> dict:
    """Hits@k(a) - Hits@k(b) at a round, with a paired bootstrap 95% interval (same dialogues resampled).

    Args:
        df: the grid.
        a, b: column filters selecting one (benchmark, encoder, method) group each, e.g.
            ``{"benchmark": "toy-flan", "encoder": "zero-shot", "method": "dar"}``.

    Returns:
        ``{"diff", "low", "high", "a", "b"}`` in percentage points.
    """
    ha = _hits_per_dialogue(df, a, k)[:, round_idx]
    hb = _hits_per_dialogue(df, b, k)[:, round_idx]
    if len(ha) != len(hb):
        raise ValueError("the two groups cover different dialogues")
    mean, low, high = _boot((ha - hb)[:, None], n_boot, seed)
    return {"diff": float(mean[0]), "low": float(low[0]), "high": float(high[0]),
            "a": float(ha.mean()), "b": float(hb.mean())}


def verdict(diff: Mapping[str, float], expected: str = "positive") -> str:
    """Judge a claim against its interval, not its point estimate.

    Args:
        diff: a :func:`paired_difference` result.
        expected: ``"positive"`` (a > b claimed) or ``"negative"`` (a < b claimed).

    Returns:
        ``"supported"`` (interval excludes 0 in the claimed direction), ``"contradicted"``
        (excludes 0 in the other direction) or ``"inconclusive"``.
    """
    lo, hi = diff["low"], diff["high"]
    if (expected == "positive" and lo > 0) or (expected == "negative" and hi < 0):
        return "supported"
    if (expected == "positive" and hi < 0) or (expected == "negative" and lo > 0):
        return "contradicted"
    return "inconclusive"


def fmt_diff(d: Mapping[str, float]) -> str:
    """``+3.1 pp [0.4, 5.9]``."""
    return f"{d['diff']:+.1f} pp [{d['low']:+.1f}, {d['high']:+.1f}]"


def wide_hits(df: pd.DataFrame, rounds: Iterable[int] = (0, 5, 10), k: int = 10) -> pd.DataFrame:
    """Hits@k point estimates as a wide table: rows (benchmark, encoder, method), columns rounds."""
    rows = []
    for (bench, enc, method), g in df.groupby(["benchmark", "encoder", "method"], sort=False):
        h = cumulative_hits(_ranks(g), k)
        rows.append({"benchmark": bench, "encoder": enc, "method": method,
                     **{f"r{r}": round(float(h[r]), 1) for r in rounds}})
    return pd.DataFrame(rows)


# -- overhead (Section 5.4) --------------------------------------------------------------------
class StageTimer:
    """Accumulates wall time per named stage."""

    def __init__(self):
        self.times: dict[str, list[float]] = {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times.setdefault(stage, []).append(time.perf_counter() - start)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"stage": s, "calls": len(v), "median_s": float(np.median(v)), "mean_s": float(np.mean(v))}
                             for s, v in self.times.items()])


def time_turns(pipe, dialogues, n_turns: int = 20, round_idx: int = 3) -> pd.DataFrame:
    """Median wall time of each stage of one DAR turn (R1, R2, generation, encoding, ranking), uncached.

    Args:
        pipe: a :class:`~dar_lib.pipeline.DARPipeline` built without a store (so nothing is cached)
            and indexed.
        dialogues: dialogues to take turns from.
        n_turns: how many turns to time.
        round_idx: which round of each dialogue.
    """
    import torch

    from dar_lib.fuse import fuse
    from dar_lib.retrieve import top_k

    timer = StageTimer()
    for d in list(dialogues)[:n_turns]:
        turns = list(d.dialog[: round_idx + 1])
        with timer("total"):
            with timer("R1 reformulation"):
                query = pipe.reformulator.rewrite(turns, ref=(d.image, round_idx))
            with timer("R2 prompts"):
                prompts = pipe.reformulator.prompts(query, pipe.k_images)
            with timer("generation"):
                images, _ = pipe.imagine(prompts)
            with timer("encoding"):
                t = pipe.encoder.encode_text([query])[0]
                im = pipe.encoder.encode_images(images)
            with timer("fusion + ranking"):
                f = fuse(t, im, round_idx, pipe.schedule, pipe.image_reduce)
                top_k(f[None], pipe.corpus_emb, 10)
    return timer.table()


# -- chapter helpers ---------------------------------------------------------------------------
#: Parameter names a chapter passes on to :class:`~dar_lib.evaluate.EvalConfig`.
EVAL_KEYS = ("n_dialogues", "k_images", "schedule", "image_reduce", "seed", "device", "generator",
             "reformulator", "toy_size", "image_root")


def eval_kwargs(namespace: Mapping, **overrides) -> dict:
    """The evaluation settings among a chapter's parameters (``eval_kwargs(globals())``)."""
    kw = {k: namespace[k] for k in EVAL_KEYS if k in namespace}
    kw.update(overrides)
    return kw


def claims_table(df: pd.DataFrame, claims: Sequence[Mapping], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Judge each claim of the paper on our run, against paired bootstrap intervals.

    Args:
        df: the grid.
        claims: dicts with ``claim`` (text), ``a`` and ``b`` (row selectors, see
            :func:`paired_difference`), ``round`` (default 10), ``expected`` (``"positive"`` or
            ``"negative"``) and ``paper`` (the paper's figure, as text).

    Returns:
        One row per claim: claim, paper, ours (``+x.x pp [lo, hi]``), diff, low, high, verdict.
    """
    rows = []
    for c in claims:
        d = paired_difference(df, c["a"], c["b"], round_idx=c.get("round", 10), n_boot=n_boot, seed=seed)
        rows.append({"claim": c["claim"], "paper": c.get("paper", ""), "ours": fmt_diff(d),
                     "diff": d["diff"], "low": d["low"], "high": d["high"],
                     "verdict": verdict(d, c.get("expected", "positive"))})
    return pd.DataFrame(rows)


def _hits_per_dialogue(df: pd.DataFrame, sel: Mapping[str, str], k: int = 10) -> np.ndarray:
    g = df
    for col, val in sel.items():
        g = g[g[col] == val]
    if g.empty:
        raise ValueError(f"no rows match {dict(sel)}")
    return np.logical_or.accumulate(_ranks(g) < k, axis=1) * 100.0


def advantage_by_round(df: pd.DataFrame, a: Mapping[str, str], b: Mapping[str, str], k: int = 10,
                       n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Hits@k(a) - Hits@k(b) at every round with paired bootstrap 95% intervals."""
    d = _hits_per_dialogue(df, a, k) - _hits_per_dialogue(df, b, k)
    mean, low, high = _boot(d, n_boot, seed)
    return pd.DataFrame({"round": np.arange(d.shape[1]), "diff": mean, "low": low, "high": high})


def late_gain_table(df: pd.DataFrame, start: int = 5, stop: int = 10, k: int = 10, n_boot: int = 1000,
                    seed: int = 0) -> pd.DataFrame:
    """Per (benchmark, encoder): Hits@k gained by DAR from round ``start`` to ``stop`` minus the baseline's gain.

    A positive, interval-excluding-zero value supports "the baseline plateaus while DAR keeps improving".
    """
    rows = []
    for (bench, enc), _ in df.groupby(["benchmark", "encoder"], sort=False):
        h_dar = _hits_per_dialogue(df, {"benchmark": bench, "encoder": enc, "method": "dar"}, k)
        h_base = _hits_per_dialogue(df, {"benchmark": bench, "encoder": enc, "method": "baseline"}, k)
        d = (h_dar[:, stop] - h_dar[:, start]) - (h_base[:, stop] - h_base[:, start])
        mean, low, high = _boot(d[:, None], n_boot, seed)
        res = {"diff": float(mean[0]), "low": float(low[0]), "high": float(high[0])}
        rows.append({"benchmark": bench, "encoder": enc,
                     "dar_gain": float(h_dar[:, stop].mean() - h_dar[:, start].mean()),
                     "baseline_gain": float(h_base[:, stop].mean() - h_base[:, start].mean()),
                     **res, "verdict": verdict(res)})
    return pd.DataFrame(rows)


def build_pipeline(encoder: str, generator: str, reformulator: str, *, k_images: int = 3, schedule: str = "paper",
                   image_reduce: str = "mean", seed: int = 0, device: str | None = None, store=None,
                   cached: bool = True, **gen_settings):
    """A :class:`~dar_lib.pipeline.DARPipeline` from model ids (models shared with the evaluation runner)."""
    from dar_lib.evaluate import _model
    from dar_lib.pipeline import DARPipeline

    return DARPipeline(_model("reformulator", reformulator, device), _model("generator", generator, device),
                       _model("encoder", encoder, device), k_images=k_images, schedule=schedule,
                       image_reduce=image_reduce, seed=seed, store=_store(store) if cached else None,
                       **gen_settings)


def index_corpus(pipe, bench, store=None, progress: bool = True) -> None:
    """Give the pipeline the benchmark's corpus embeddings (cached per encoder)."""
    from dar_lib.evaluate import corpus_embeddings

    pipe.index(corpus_emb=corpus_embeddings(bench, pipe.encoder, _store(store), progress=progress))


def dialogue_records(pipe, bench, dialog_ids: Sequence[int], rounds: Sequence[int] | None = None, top_k: int = 10):
    """Run DAR turn by turn on some dialogues and collect what the explorer and Figure 4 show."""
    from dar_lib.explore import DialogueRecord, RoundRecord
    from dar_lib.retrieve import target_ranks

    out = []
    for dialog_idx in dialog_ids:
        d = bench.dialogues[dialog_idx]
        recs = []
        for r in (rounds if rounds is not None else range(d.n_rounds)):
            res = pipe(list(d.dialog[: r + 1]), ref=(d.image, r), top_k=top_k)
            rank = int(target_ranks(res.fused_emb[None], pipe.corpus_emb, [d.target_id])[0])
            recs.append(RoundRecord(round_idx=r, query=res.query, prompts=list(res.prompts),
                                    k_images=list(res.images), top_ids=[int(i) for i in res.top_ids],
                                    top_images=bench.corpus_images([int(i) for i in res.top_ids]),
                                    target_rank=rank))
        out.append(DialogueRecord(dialog_idx=dialog_idx, target_id=d.target_id, dialog=list(d.dialog), rounds=recs,
                                  target_image=bench.corpus_images([d.target_id])[0], benchmark=bench.name))
    return out


# -- reformulation and fusion chapters ---------------------------------------------------------
def reformulation_table(reformulator, dialogue, k_images: int = 3) -> pd.DataFrame:
    """Per round of one dialogue: the new turn, the query S_t and the first prompt P_t,1."""
    rows = []
    for r in range(dialogue.n_rounds):
        q = reformulator.rewrite(list(dialogue.dialog[: r + 1]), ref=(dialogue.image, r))
        rows.append({"round": r, "turn": dialogue.dialog[r], "query S_t": q,
                     "prompts P_t,k": " | ".join(reformulator.prompts(q, k_images))})
    return pd.DataFrame(rows)


def query_lengths(reformulator, benches) -> pd.DataFrame:
    """Mean words per round: raw dialogue text (what the baseline encodes) vs reformulated query."""
    rows = []
    for bench in benches:
        for r in range(bench.dialogues[0].n_rounds):
            raw = [len(d.query_text(r).split()) for d in bench.dialogues]
            qry = [len(reformulator.rewrite(list(d.dialog[: r + 1]), ref=(d.image, r)).split()) for d in bench.dialogues]
            rows.append({"benchmark": bench.name, "round_idx": r, "raw_words": float(np.mean(raw)),
                         "query_words": float(np.mean(qry))})
    return pd.DataFrame(rows)


def alpha_sweep(benchmark: str, encoder: str, alphas: Sequence[float] = (0.0, 0.3, 0.5, 0.7, 1.0),
                schedules: Sequence[str] = ("paper", "released"), reductions: Sequence[str] = ("mean", "sum"),
                store=None, **config) -> pd.DataFrame:
    """DAR's Hits@10 at rounds 2 and 10 under constant weights, the named schedules, and both image reductions.

    alpha = 1 is the reformulated query alone; alpha = 0 the images alone.
    """
    rows = []
    config = {k: v for k, v in config.items() if k not in ("schedule", "image_reduce")}
    combos = [(f"const:{a}", "mean") for a in alphas] + [(s, red) for s in schedules for red in reductions]
    for schedule, red in combos:
        df = grid([benchmark], {"zero-shot": encoder}, methods=("dar",), store=store, progress=False,
                  schedule=schedule, image_reduce=red, **config)
        h = cumulative_hits(_ranks(df), 10)
        rows.append({"schedule": schedule, "image_reduce": red, "hits r2": float(h[2]), "hits r10": float(h[10])})
    return pd.DataFrame(rows)


def fusion_equivalence_check(n_corpus: int = 2000, dim: int = 64, seed: int = 0) -> bool:
    """True if ranking by the fused embedding equals ranking by the official code's fused scores."""
    import torch

    from dar_lib.fuse import fuse, fused_scores

    g = torch.Generator().manual_seed(seed)
    norm = lambda x: torch.nn.functional.normalize(x, dim=-1)  # noqa: E731
    corpus = norm(torch.randn(n_corpus, dim, generator=g))
    for r in range(4):
        for red in ("sum", "mean"):
            t, imgs = norm(torch.randn(dim, generator=g)), norm(torch.randn(3, dim, generator=g))
            a = torch.argsort(corpus @ fuse(t, imgs, r, "paper", red), descending=True)[:100]
            b = torch.argsort(fused_scores(t, imgs, corpus, r, "paper", red), descending=True)[:100]
            if not torch.equal(a, b):
                return False
    return True


# -- toy-world diagnostics -----------------------------------------------------------------------
def generator_agreement(pipe, bench, n: int = 200) -> pd.DataFrame:
    """Toy profile: how often generated images show each fact of their prompt, read by the shipped probe."""
    from dar_lib.toymodels.quality import generator_agreement as agree

    return agree(pipe.generator, bench, n=n, seed=pipe.seed, steps=pipe.steps, guidance=pipe.guidance)


def asymmetry_table(encoders: Mapping[str, str], store=None, **config) -> pd.DataFrame:
    """Toy profile: per encoder and attribute, image-side neighbour agreement next to text-side Hits@10."""
    from dar_lib.evaluate import _model
    from dar_lib.toymodels.quality import asymmetry_table as table

    return table({role: _model("encoder", enc, config.get("device")) for role, enc in encoders.items()},
                 toy_size=config.get("toy_size", "default"), seed=config.get("seed", 0))
