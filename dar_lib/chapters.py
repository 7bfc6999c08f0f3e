"""What the book's chapters call: their parameters mapped onto the library, and the tables only a chapter shows.

A chapter's first cell runs :func:`setup` (checked parameters, shown once as a table); the rest
calls :func:`results_grid`, :func:`pipeline`, :func:`benchmark` and the statistics of
:mod:`dar_lib.stats`. Nothing here branches on the profile: the parameters decide.

Examples:
    >>> P = setup(globals())                                                   # doctest: +SKIP
    >>> df = results_grid(P)                                                    # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from dar_lib import profiles

#: Chapter parameters that are :class:`~dar_lib.evaluate.EvalConfig` fields of the same meaning.
EVAL_KEYS = ("n_dialogues", "k_images", "schedule", "image_reduce", "seed_per_round", "world_seed", "gen_seed",
             "device", "generator", "reformulator", "toy_size", "image_root", "corpus_file", "steps", "guidance")


def setup(namespace: Mapping[str, Any], show: bool = True) -> dict[str, Any]:
    """A chapter's checked parameters (see :func:`dar_lib.profiles.chapter_parameters`), displayed once.

    Raises:
        ParameterError: naming a bad parameter.
    """
    params = profiles.chapter_parameters(namespace)
    if show:
        from IPython.display import display

        display(profiles.parameters_table(params))
    from dar_lib import plotting

    plotting.set_style()
    return params


def eval_kwargs(params: Mapping[str, Any], **overrides) -> dict:
    """The :class:`~dar_lib.evaluate.EvalConfig` settings among a chapter's parameters."""
    kw = {k: params[k] for k in EVAL_KEYS if k in params}
    kw.update(overrides)
    return kw


def results_grid(params: Mapping[str, Any], encoders: Mapping[str, str] | None = None,
                 benchmarks: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                 progress: bool = True, **overrides) -> pd.DataFrame:
    """The cached rank table of the chapter's benchmarks x encoders (see :func:`dar_lib.evaluate.grid`).

    Args:
        params: the chapter's parameters.
        encoders: role -> id (default: the Figure 3 roles of ``params["encoders"]``).
        benchmarks: default ``params["benchmarks"]``.
        methods: default all four.
        progress: progress bars.
        **overrides: EvalConfig fields that replace the parameters' (e.g. ``k_images=1``).
    """
    from dar_lib.evaluate import METHODS, grid

    encoders = encoders or {r: params["encoders"][r] for r in profiles.ROLES}
    return grid(benchmarks or params["benchmarks"], encoders, methods=tuple(methods or METHODS), progress=progress,
                **eval_kwargs(params, **overrides))


def benchmark(params: Mapping[str, Any], name: str):
    """One of the chapter's benchmarks, loaded with its parameters."""
    from dar_lib.benchmarks import load_benchmark

    return load_benchmark(name, params.get("n_dialogues"), image_root=params.get("image_root"),
                          toy_size=params.get("toy_size", "default"), seed=params.get("world_seed", 0),
                          corpus_file=params.get("corpus_file"))


def pipeline(params: Mapping[str, Any], role: str = "zero-shot", cached: bool = True, bench=None):
    """A :class:`~dar_lib.pipeline.DARPipeline` with the chapter's models and settings.

    Args:
        params: the chapter's parameters.
        role: which of ``params["encoders"]``.
        cached: share the artefact store (``False`` computes everything, e.g. for timing).
        bench: index this benchmark's corpus (cached per encoder).
    """
    from dar_lib import settings
    from dar_lib.evaluate import EvalConfig, build_pipeline
    from dar_lib.store import ArtefactStore

    cfg = EvalConfig(benchmark=(bench.name if bench is not None else params["benchmarks"][0]),
                     encoder=params["encoders"][role], **eval_kwargs(params))
    pipe = build_pipeline(cfg, ArtefactStore(settings.cache_dir() / "store") if cached else None)
    if bench is not None:
        store = pipe.store or ArtefactStore(settings.cache_dir() / "store")
        from dar_lib import corpus

        pipe.index(corpus_emb=corpus.corpus_embeddings(bench, pipe.encoder, store, progress=False))
    return pipe


def dialogue_records(pipe, bench, dialog_ids: Sequence[int], rounds: Sequence[int] | None = None, top_k: int = 10):
    """Run DAR turn by turn on some dialogues and collect what the explorer and Figure 4 show."""
    from dar_lib.explore import DialogueRecord, turn_record

    out = []
    for dialog_idx in dialog_ids:
        d = bench.dialogues[dialog_idx]
        recs = [turn_record(pipe(list(d.dialog[: r + 1]), ref=(d.image, r), top_k=top_k), pipe, bench, d.target_id)
                for r in (rounds if rounds is not None else range(d.n_rounds))]
        out.append(DialogueRecord(dialog_idx=dialog_idx, target_id=d.target_id, dialog=list(d.dialog), rounds=recs,
                                  target_image=bench.corpus_images([d.target_id])[0], benchmark=bench.name))
    return out


def stage_timings(pipe, dialogues, n_turns: int = 20, round_idx: int = 3) -> pd.DataFrame:
    """Median and mean wall time of each stage of one DAR turn, from the pipeline's own per-stage timings.

    Args:
        pipe: an indexed :class:`~dar_lib.pipeline.DARPipeline` (without a store, to time real work).
        dialogues: dialogues to take turns from.
        n_turns: how many turns to time.
        round_idx: which round of each dialogue.
    """
    from dar_lib.pipeline import STAGES

    runs = [pipe(list(d.dialog[: round_idx + 1]), ref=(d.image, round_idx)).timings for d in list(dialogues)[:n_turns]]
    return pd.DataFrame([{"stage": s, "calls": len(runs), "median_s": float(np.median([t[s] for t in runs])),
                          "mean_s": float(np.mean([t[s] for t in runs]))} for s in (*STAGES, "total")])


def reformulation_table(reformulator, dialogue, k_images: int = 3) -> pd.DataFrame:
    """Per round of one dialogue: the new turn, the query S_t and the prompts P_t,k."""
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


def alpha_sweep(params: Mapping[str, Any], benchmark: str, role: str = "zero-shot",
                alphas: Sequence[float] = (0.0, 0.3, 0.5, 0.7, 1.0),
                schedules: Sequence[str] = ("paper", "released"), reductions: Sequence[str] = ("mean", "sum"),
                seeds_per_round: Sequence[bool] = (True,)) -> pd.DataFrame:
    """DAR's Hits@10 at rounds 2 and 10 under constant weights, the named schedules, both image reductions
    and both seed policies. alpha = 1 is the reformulated query alone; alpha = 0 the images alone."""
    from dar_lib.metrics import cumulative_hits
    from dar_lib.stats import rank_matrix

    rows = []
    combos = [(f"const:{a}", "mean", params["seed_per_round"]) for a in alphas]
    combos += [(s, red, spr) for s in schedules for red in reductions for spr in seeds_per_round]
    for schedule, red, spr in combos:
        df = results_grid(params, {role: params["encoders"][role]}, [benchmark], methods=("dar",), progress=False,
                          schedule=schedule, image_reduce=red, seed_per_round=spr)
        h = cumulative_hits(rank_matrix(df)[0], 10)
        rows.append({"schedule": schedule, "image_reduce": red, "fresh seeds each round": spr,
                     "hits r2": float(h[2]), "hits r10": float(h[10])})
    return pd.DataFrame(rows)
