"""What the book's chapters call: their parameters mapped onto the library, and the tables only a chapter shows.

A chapter's first cell runs :func:`setup` (checked parameters, shown once as a table); the rest
calls :func:`results_grid`, :func:`pipeline`, :func:`benchmark` and the statistics of
:mod:`dar_lib.stats`. Nothing here branches on the profile: the parameters decide.

Examples:
    A chapter runs ``P = setup(globals())`` on its parameters cell's names, then ``results_grid(P)``:

    >>> P = setup({"profile": "toy", "smoke": True, "n_dialogues": None, "k_images": 2}, show=False)
    >>> P["n_dialogues"], eval_kwargs(P)
    (4, {'k_images': 2, 'n_dialogues': 4})
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from dar_lib import claims, corpus, evalsettings, plotting, profiles, settings, stats
from dar_lib.benchmarks import TOY_SIZES, load_benchmark
from dar_lib.benchmarks.dialogue import N_ROUNDS
from dar_lib.benchmarks.toyworld import information
from dar_lib.evaluate import METHODS, EvalConfig, build_pipeline, grid
from dar_lib.explore import DialogueRecord, turn_record
from dar_lib.fusion_weights import weights
from dar_lib.metrics import cumulative_hits
from dar_lib.models import load_model
from dar_lib.pipeline import STAGES
from dar_lib.protocols import RELEASED_SETTINGS
from dar_lib.stats import TOY_EVIDENCE, rank_matrix
from dar_lib.store import ArtefactStore
from dar_lib.toymodels.quality import asymmetry_table

#: Chapter parameters that are :class:`~dar_lib.evaluate.EvalConfig` fields of the same meaning.
EVAL_KEYS = evalsettings.NAMES + ("device", "generator", "reformulator", "image_root", "corpus_file")


def setup(namespace: Mapping[str, Any], show: bool = True) -> dict[str, Any]:
    """A chapter's checked parameters (see :func:`dar_lib.profiles.chapter_parameters`), displayed once.

    Raises:
        ParameterError: naming a bad parameter.
    """
    params = profiles.chapter_parameters(namespace)
    if show:
        from IPython.display import display

        display(profiles.parameters_table(params))

    plotting.set_style()
    return params


def eval_kwargs(params: Mapping[str, Any], **overrides) -> dict:
    """The :class:`~dar_lib.evaluate.EvalConfig` settings among a chapter's parameters.

    Under ``protocol="released"`` K, the schedule and the image reduction are the release's; a call that
    varies one of them (the sweeps of Sections 5.3 and the fusion chapter) runs under the default
    protocol instead, unless it names a protocol itself: every row's ``protocol`` column says which.
    """
    kw = {k: params[k] for k in EVAL_KEYS if k in params}
    if kw.get("protocol") == "released" and "protocol" not in overrides and set(overrides) & set(RELEASED_SETTINGS):
        kw["protocol"] = "default"  # a sweep of a setting the release fixes
    if overrides.get("protocol", kw.get("protocol")) == "released":
        kw.update(RELEASED_SETTINGS)  # the released protocol fixes K, the schedule and the reduction
    kw.update(overrides)
    return kw


def released_comparison(params: Mapping[str, Any], progress: bool = True) -> pd.DataFrame:
    """The released protocol on the first (VisDial) benchmark: its right truncation vs keeping the newest text.

    Runs ``reformulated`` and ``dar`` under ``protocol="released"`` with ``params["released_encoder"]``
    as given (right truncation, the released ``eval.py``'s) and with ``?truncation=left`` added, and
    ``params["released_reformulator"]`` (the paper profile: the authors' released rewrites).

    Returns:
        The rank table (see :func:`dar_lib.evaluate.grid`); its ``encoder`` column is
        ``"released (right)"`` or ``"keep newest (left)"``.
    """
    enc = params["released_encoder"]
    encoders = {"released (right)": enc, "keep newest (left)": enc + ("&" if "?" in enc else "?") + "truncation=left"}
    return grid([params["benchmarks"][0]], encoders, methods=("reformulated", "dar"), progress=progress,
                **eval_kwargs(params, reformulator=params["released_reformulator"], protocol="released"))


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
    encoders = encoders or {r: params["encoders"][r] for r in profiles.ROLES}
    benchmarks = benchmarks or params["benchmarks"]
    _check_rounds(params, benchmarks)
    return grid(benchmarks, encoders, methods=tuple(methods or METHODS), progress=progress,
                **eval_kwargs(params, **overrides))


def _check_rounds(params: Mapping[str, Any], names: Sequence[str]) -> None:
    """Refuse, before any work, a dialogue file (``*.json``) shorter than ChatIR's 11 rounds: the results
    chapters report rounds up to 10."""
    for name in names:
        if str(name).endswith(".json"):
            n = benchmark(params, name).dialogues[0].n_rounds
            if n < N_ROUNDS:
                raise profiles.ParameterError(
                    f"parameter 'benchmarks': {name} has dialogues of {n} rounds; the results chapters report "
                    f"rounds up to {N_ROUNDS - 1}, so they need {N_ROUNDS} (a caption and {N_ROUNDS - 1} turns, as "
                    "ChatIR's). `dar eval` evaluates dialogues of any length.")


def benchmark(params: Mapping[str, Any], name: str):
    """One of the chapter's benchmarks, loaded with its parameters."""
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
    cfg = EvalConfig(benchmark=(bench.name if bench is not None else params["benchmarks"][0]),
                     encoder=params["encoders"][role], **eval_kwargs(params))
    pipe = build_pipeline(cfg, ArtefactStore(settings.cache_dir() / "store") if cached else None)
    if bench is not None:
        store = pipe.store or ArtefactStore(settings.cache_dir() / "store")

        pipe.index(corpus_emb=corpus.corpus_embeddings(bench, pipe.encoder, store, progress=False))
    return pipe


def dialogue_records(pipe, bench, dialog_ids: Sequence[int], rounds: Sequence[int] | None = None, top_k: int = 10):
    """Run DAR turn by turn on some dialogues and collect what the explorer and Figure 4 show."""
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
            qry = [len(reformulator.rewrite(list(d.dialog[: r + 1]), ref=(d.image, r)).split())
                   for d in bench.dialogues]
            rows.append({"benchmark": bench.name, "round_idx": r, "raw_words": float(np.mean(raw)),
                         "query_words": float(np.mean(qry))})
    return pd.DataFrame(rows)


def alpha_sweep(params: Mapping[str, Any], benchmark: str, role: str = "zero-shot",
                alphas: Sequence[float] = (0.0, 0.3, 0.5, 0.7, 1.0),
                schedules: Sequence[str] = ("paper", "released"), reductions: Sequence[str] = ("mean", "sum"),
                seeds_per_round: Sequence[bool] = (True,)) -> pd.DataFrame:
    """DAR's Hits@10 at rounds 2 and 10 under constant weights, the named schedules, both image reductions
    and both seed policies. alpha = 1 is the reformulated query alone; alpha = 0 the images alone."""
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


def seed_policy_difference(params: Mapping[str, Any], benchmark: str, role: str = "zero-shot",
                           round_idx: int = 10) -> dict:
    """DAR's Hits@10 with fresh image seeds every round minus prompt-derived seeds (the default), paired.

    Under cumulative Hits@10 a fresh draw of an unchanged prompt is an extra chance for the target,
    so the difference measures what re-drawing alone adds (issue 16: +6.7 pp on the FLAN twin).

    Returns:
        :func:`dar_lib.stats.paired_difference` of ``fresh`` minus ``prompt`` at ``round_idx`` (pp), with
        ``late_fresh`` and ``late_prompt``: DAR's mean gain from round 5 to ``round_idx`` under each policy.
    """
    enc = {role: params["encoders"][role]}
    runs = {name: results_grid(params, enc, [benchmark], methods=("dar",), progress=False, seed_per_round=spr)
            .assign(method=name) for name, spr in (("fresh", True), ("prompt", False))}
    df = pd.concat(runs.values(), ignore_index=True)
    d = stats.paired_difference(df, {"method": "fresh"}, {"method": "prompt"}, round_idx=round_idx,
                                n_boot=params["n_boot"], seed=params["boot_seed"])
    for name in runs:
        h = stats.hits_per_dialogue(df, {"method": name})
        d[f"late_{name}"] = float(h[:, round_idx].mean() - h[:, 5].mean())
    return d


def reference_curves(params: Mapping[str, Any], names: Sequence[str] | None = None) -> pd.DataFrame:
    """Figure 3's reference curves over the chapter's evaluated dialogues: the fact-matching oracle and the
    upper bound (:func:`dar_lib.benchmarks.toyworld.information.reference_curves`, chapter 01).

    Returns:
        Columns ``benchmark, curve, round_idx, hits`` for the toy benchmarks among ``names`` (default
        ``params["benchmarks"]``); real benchmarks have no known facts and add no rows.
    """
    frames = []
    for name in names or params["benchmarks"]:
        bench = benchmark(params, name)
        if bench.meta.get("scenes") is not None:
            frames.append(information.reference_curves({name: bench.dialogues}, bench.meta["scenes"]))
    return (pd.concat(frames, ignore_index=True) if frames
            else pd.DataFrame(columns=["benchmark", "curve", "round_idx", "hits"]))


def attribution(df: pd.DataFrame, params: Mapping[str, Any], prefix: str, role: str = "zero-shot",
                round_idx: int = 10) -> dict:
    """How much of DAR's gain the rewritten query alone and the generated images alone give, on the FLAN twin.

    Gains over the raw dialogue (baseline) at ``round_idx`` for ``reformulated``, ``images-only`` and
    ``dar``; the shares are ratios of mean gains with bootstrap 95% intervals (:func:`dar_lib.stats.ratio_claim`),
    and DAR's gain is set beside the paper's headline (+7.61 on FLAN_BLIP2, Section 4.2). Glues
    ``{prefix}_attribution`` (one paragraph).

    Returns:
        ``{"gain", "rewrite_share", "images_share", "times_paper", "text"}`` (shares as ``{"diff", "low", "high"}``).
    """
    from myst_nb import glue


    flan = params["benchmarks"][3]
    sel = lambda m: {"benchmark": flan, "encoder": role, "method": m}  # noqa: E731
    h = {m: stats.hits_per_dialogue(df, sel(m))[:, round_idx]
         for m in ("baseline", "reformulated", "images-only", "dar")}
    gains = {m: h[m] - h["baseline"] for m in ("reformulated", "images-only", "dar")}
    kw = {"n_boot": params["n_boot"], "seed": params["boot_seed"]}
    dar = stats.paired_difference(df, sel("dar"), sel("baseline"), round_idx=round_idx, **kw)
    rew = stats.ratio_claim(gains, "reformulated", "dar", **kw)
    img = stats.ratio_claim(gains, "images-only", "dar", **kw)
    share = lambda r: f"{100 * r['diff']:.0f}% [{100 * r['low']:.0f}%, {100 * r['high']:.0f}%]"  # noqa: E731
    times = dar["diff"] / HEADLINE_EFFECT
    text = (f"On {flan} with the {role} encoder at round {round_idx}, DAR gains {stats.fmt_diff(dar)} over the raw "
            f"dialogue; the rewritten query alone gives {share(rew)} of that gain and the generated images alone "
            f"{share(img)} (ratios of mean gains over the same dialogues, bootstrap 95%). The paper's gain there is "
            f"+{HEADLINE_EFFECT}, so the toy's point estimate is {times:.1f} times the paper's; the toy's effect sizes "
            "are not estimates of the paper's")
    glue(f"{prefix}_attribution", text, display=False)
    return {"gain": dar, "rewrite_share": rew, "images_share": img, "times_paper": times, "text": text}


# -- claims and the notes every results chapter shows ---------------------------------------------
def evidence_note(params: Mapping[str, Any]) -> str:
    """What this run's verdicts are evidence of (toy: the mechanism; paper: the real benchmarks)."""
    if params.get("rehearsal"):
        return ("REHEARSAL: every model is a tiny random stand-in of the paper's, so these numbers test the "
                "code path only and say nothing about DAR")
    if params.get("profile") == "toy":
        return TOY_EVIDENCE
    return "verdicts on the real ChatIR benchmarks with the models named in the parameters"


def judge(df: pd.DataFrame, params: Mapping[str, Any], prefix: str) -> pd.DataFrame:
    """Judge a chapter's claims of the book's one family (:mod:`dar_lib.claims`), show them, glue what the prose quotes.

    Every verdict is read on an interval Bonferroni-corrected over the whole book's family
    (:func:`dar_lib.claims.family_size`), not the chapter's claims alone, and each claim is set against
    the paper's number (:func:`dar_lib.stats.size_label`).

    Glues ``{prefix}_ours_{i}`` (95% interval), ``{prefix}_verdict_{i}`` (the corrected verdict with its
    direction and size label, e.g. ``"supported; direction reversed"``), ``{prefix}_extreme_{i}`` (an
    extreme claim's group by point estimate), ``{prefix}_n_supported``, ``{prefix}_power`` (the smallest
    effect the chapter's claims could detect at its number of dialogues), ``{prefix}_vs_paper`` (how its
    sizes compare with the paper's numbers) and ``{prefix}_evidence``.
    """
    from IPython.display import display
    from myst_nb import glue


    m = claims.family_size(params)
    table = stats.claims_table(df, claims.chapter_claims(params, prefix), n_boot=params["n_boot"],
                               seed=params["boot_seed"], family_size=m)
    with pd.option_context("display.max_colwidth", 200):
        display(table[["claim", "paper", "test", "ours", "corrected", "verdict", "contains_paper", "size",
                       "detectable"]].round(1).rename(columns={
                           "ours": "ours [95% CI]", "corrected": f"ours [family-wise 95% CI, m = {m}]",
                           "verdict": "verdict (sign, corrected)", "contains_paper": "interval contains the paper's",
                           "size": "direction and size", "detectable": "detectable effect (pp)"}))
    for i, row in table.iterrows():
        glue(f"{prefix}_ours_{i}", row["ours"], display=False)
        glue(f"{prefix}_verdict_{i}", row["verdict"] + (f"; {row['size']}" if row["size"] else ""), display=False)
        if isinstance(row["point_extreme"], str):  # an extreme claim (pandas holds the others as NaN)
            glue(f"{prefix}_extreme_{i}", row["point_extreme"], display=False)
    n, supported = len(table), int((table.verdict == "supported").sum())
    glue(f"{prefix}_n_supported",
         f"{supported} of {n} (each judged on an interval Bonferroni-corrected over the book's {m} claims, "
         f"family-wise 95%, listed on the status page; judged at 95% one by one, about "
         f"{table.attrs['expected_false']:.2g} of the book's verdicts would be false by chance)", display=False)
    glue(f"{prefix}_power", power_note(table, df, m), display=False)
    glue(f"{prefix}_vs_paper", vs_paper_note(table), display=False)
    glue(f"{prefix}_evidence", evidence_note(params), display=False)
    return table


def vs_paper_note(table: pd.DataFrame) -> str:
    """One sentence: how the chapter's effects compare with the paper's numbers (the ``size`` labels)."""
    numbered = table[table["contains_paper"] != "-"]
    reversed_ = int((table["size"] == "direction reversed").sum())
    if numbered.empty:
        return (f"the paper gives no number for these claims; {reversed_} of the {len(table)} point estimates "
                "point against the claimed direction")
    counts = numbered["size"].value_counts()
    parts = ", ".join(f"{n} {label}" for label, n in counts.items())
    return (f"of the {len(numbered)} claims with a number in the paper: {parts} (read on the family-wise interval); "
            f"{reversed_} of all {len(table)} point estimates point against the paper's or the claimed direction")


#: The paper's headline effect (Hits@10 points, FLAN_BLIP2, round 10; abstract and Section 4.2).
HEADLINE_EFFECT = 7.61


def power_note(table: pd.DataFrame, df: pd.DataFrame, family_size: int) -> str:
    """One sentence: the smallest paired effect the chapter's claims could detect (``detectable`` of
    :func:`dar_lib.stats.claims_table`), at how many dialogues, next to the paper's headline effect."""
    det = table["detectable"].dropna()
    n = int(df.groupby(["benchmark", "encoder", "method"]).dialog_idx.nunique().min())
    if det.empty:
        return (f"not computed ({n} dialogues per benchmark: no paired claim whose per-dialogue differences "
                f"vary), to set beside the paper's headline effect, {HEADLINE_EFFECT} pp")
    med = float(det.median())
    span = f"{med:.1f} pp" if det.min() == det.max() else f"{med:.1f} pp (median; {det.min():.1f}-{det.max():.1f} pp)"
    verdict = ("could" if det.max() <= HEADLINE_EFFECT else "could not" if det.min() > HEADLINE_EFFECT
               else "could not always")
    return (f"{span} over its {len(det)} paired claims: the smallest mean paired difference each detects with 80% "
            f"power at family-wise 5% over the book's {family_size} claims, from its per-dialogue differences at {n} "
            f"dialogues per benchmark; so this chapter {verdict} detect an effect of the paper's headline size, "
            f"{HEADLINE_EFFECT} pp")


def protocol_note(params: Mapping[str, Any]) -> str:
    """The protocol choices behind a results table, each with the parameter that switches it (markdown)."""
    params = {**params, **eval_kwargs(params)}  # the settings the runs used (the released protocol fixes some)
    a0, a2 = weights(0, params["schedule"])[0], weights(2, params["schedule"])[0]
    lines = [
        f"- Protocol **{params.get('protocol', 'default')}** (`protocol=\"released\"`: the DAR release's eval.py, "
        "every rewrite so far joined, K = 1, fusion 0.8/0.2 then 0.5/0.5).",
        f"- Image embeddings combined by **{params['image_reduce']}** of the K = {params['k_images']} images "
        "(eq. 4 as printed *sums* them, which weighs the images K times beta; `image_reduce=\"sum\"`).",
        f"- Fusion schedule **{params['schedule']}**: alpha = {a0:g} at round 0, {a2:g} at round 2 "
        "(the released code keeps 0.7-0.8 for rounds 0-1; the paper's text can also be read as rounds 0-2: "
        "`schedule=\"paper-rounds-0-2\"`, or `\"released\"` for its 0.8/0.2).",
        f"- Generator seeds {'change every round' if params['seed_per_round'] else 'ignore the round'} "
        f"(`seed_per_round={not params['seed_per_round']}` for the other policy); base seed gen_seed = "
        f"{params['gen_seed']}, world seed {params['world_seed']}, bootstrap seed {params['boot_seed']}.",
        "- Encoder text limits: " + ", ".join(f"{role} `{spec}`" for role, spec in params["encoders"].items())
        + " (a `?max_length=N` suffix sets a BLIP encoder's limit; ChatIR cut at 200 tokens, DAR's release at 256).",
    ]
    return "\n".join(lines)


def show_protocol(params: Mapping[str, Any]) -> None:
    """Display :func:`protocol_note` as markdown (every results chapter does, above its numbers)."""
    from IPython.display import Markdown, display

    display(Markdown("**Protocol of these results**\n\n" + protocol_note(params)))


def toy_sizes(params: Mapping[str, Any]) -> dict:
    """The toy world's sizes for the chapter's ``toy_size`` (``n_corpus``, ``n_dialogues`` to build)."""
    return dict(TOY_SIZES[params.get("toy_size", "default")])


def generation_spread(params: Mapping[str, Any], benchmark: str, role: str = "zero-shot") -> pd.DataFrame:
    """DAR's round-10 Hits@10 on one benchmark, repeated with ``n_gen_seeds`` generation seeds.

    Returns:
        One row per method (``dar``, ``baseline``): mean, sd, min, max over the seeds (the baseline
        draws no images, so its sd is 0: a check that only generation varies).
    """
    seeds = [params["gen_seed"] + i for i in range(params.get("n_gen_seeds", 1))]
    tables = [results_grid(params, {role: params["encoders"][role]}, [benchmark], methods=("baseline", "dar"),
                           progress=False, gen_seed=s) for s in seeds]
    return pd.DataFrame([{"method": m, **stats.seed_spread(tables, {"method": m})} for m in ("dar", "baseline")])


def describe_spread(spread: pd.DataFrame) -> str:
    """One line for the prose: the spread of DAR's Hits@10 over generation seeds."""
    row = spread.set_index("method").loc["dar"]
    if row.n_seeds < 2:
        return "not measured (n_gen_seeds = 1; set it above 1 to repeat generation with other seeds)"
    return (f"over {int(row.n_seeds)} generation seeds DAR's round-10 Hits@10 ranges {row['min']:.1f}-{row['max']:.1f} "
            f"(sd {row.sd:.1f}), next to the bootstrap interval over dialogues above")


def asymmetry(params: Mapping[str, Any], roles: Mapping[str, str], name: str) -> pd.DataFrame:
    """What each encoder's image side and text side can read, on a toy benchmark's corpus.

    Returns:
        The table of :func:`dar_lib.toymodels.quality.asymmetry_table`, or an empty table when the
        benchmark has no toy scenes (the facts of real images are not known).
    """
    bench = benchmark(params, name)
    if bench.meta.get("scenes") is None:
        return pd.DataFrame()
    return asymmetry_table({r: load_model("encoder", e, params.get("device")) for r, e in roles.items()}, bench)
