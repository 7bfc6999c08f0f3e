"""The one parameter table: profiles (toy, paper), smoke sizes, model ids, and the schema that checks them.

The CLI's defaults, ``dar book``'s parameters and every chapter's parameters come from here, so a
model id or a size changes in one place. :func:`chapter_parameters` is the first thing each chapter
runs: it fills the parameters papermill left at ``None`` from the profile and checks every value
against :data:`SCHEMA`, so ``papermill -p n_dialogues five`` fails at once with a message naming
``n_dialogues`` instead of deep inside a computation.

Examples:
    >>> p = parameters("toy", smoke=True)
    >>> p["n_dialogues"], p["encoders"]["zero-shot"]
    (4, 'toy:clip-zs')
    >>> validate({"k_images": 0})
    Traceback (most recent call last):
    ...
    dar_lib.profiles.ParameterError: parameter 'k_images' = 0: must be an integer in 1..10
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from dar_lib import evalsettings, models
from dar_lib.benchmarks import CHATIR, TOY
from dar_lib.evalsettings import bool_rule, choice_rule, float_rule, int_rule
from dar_lib.redact import redact

#: Encoder roles every results chapter needs (Figure 3's colours are keyed by role).
ROLES = ("zero-shot", "coco-ft", "dialogue-ft")


class ParameterError(ValueError):
    """A chapter or CLI parameter outside its allowed values; the message names the parameter."""


@dataclass(frozen=True)
class Param:
    """One parameter: its meaning and what values it allows.

    Attributes:
        doc: one line for the rendered parameters table and ``--help``.
        check: ``value -> None``, raising ``ValueError`` with the allowed range in its message.
    """

    doc: str
    check: Callable[[Any], None]


# -- value checks (each raises ValueError saying what is allowed) -----------------------------------
def _str(none_ok: bool = False):
    def check(v):
        if v is None and none_ok:
            return
        if not isinstance(v, str) or not v.strip():
            raise ValueError("must be a non-empty string" + (" or None" if none_ok else ""))
    return check


def _device():
    def check(v):
        import torch

        if not isinstance(v, str) or not v.strip():
            raise ValueError("must be a torch device string such as 'cpu', 'cuda' or 'cuda:1'")
        try:
            torch.device(v)
        except (RuntimeError, TypeError):
            raise ValueError("must be a torch device string such as 'cpu', 'cuda' or 'cuda:1' "
                             "(torch does not parse it)") from None
    return check


def _model_id(kind: str, none_ok: bool = False):
    def check(v):
        if v is None and none_ok:
            return
        if not isinstance(v, str):
            raise ValueError(f"must be a {kind} id string like '<backend>:<model>'")

        backends = models.list_backends()[kind]
        models.parse_spec(v, backends, kind)
    return check


def _benchmarks(v):
    if not isinstance(v, (list, tuple)) or len(v) != 4:
        raise ValueError("must be a list of 4 benchmarks in Figure 3's order (VisDial, ChatGPT_BLIP2, "
                         f"HUMAN_BLIP2, FLAN_BLIP2 or their twins), e.g. {list(TOY)}; got {v!r}")
    for name in v:
        if not isinstance(name, str) or not (name in TOY or name in CHATIR or name.endswith(".json")):
            raise ValueError(f"{name!r} is neither a benchmark name ({', '.join(TOY + CHATIR)}) nor a "
                             "ChatIR-format dialogue file (*.json)")
    if len(set(v)) != len(v):
        raise ValueError(f"must name 4 different benchmarks (the chapters compare them with each other); got {v!r}")


def _encoders(v):
    if not isinstance(v, Mapping) or not v:
        raise ValueError(f"must be a mapping role -> encoder id with at least the roles {list(ROLES)}")
    missing = [r for r in ROLES if r not in v]
    if missing:
        raise ValueError(f"lacks the role(s) {missing}; needs at least {list(ROLES)}")
    for role, spec in v.items():
        try:
            _model_id("encoder")(spec)
        except ValueError as exc:
            raise ValueError(f"role {role!r}: {exc}") from None


def _k_values(v):
    if not isinstance(v, (list, tuple)) or not v:
        raise ValueError("must be a non-empty list of integers in 1..10")
    for k in v:
        int_rule(1, 10)(k)


#: Every parameter a chapter or ``dar book`` may set, with its allowed values.
SCHEMA: dict[str, Param] = {
    "profile": Param("parameter table: 'toy' (embedded world) or 'paper' (ChatIR + real checkpoints)",
                     choice_rule("toy", "paper")),
    "smoke": Param("tiny sizes that run every chapter in seconds (CI)", bool_rule),
    "rehearsal": Param("the paper profile on tiny random stand-in models (numbers mean nothing)", bool_rule),
    "benchmarks": Param("the four benchmarks of Figure 3, in its order", _benchmarks),
    "k_values": Param("the values of K compared in Section 5.3", _k_values),
    "n_gen_seeds": Param("repeat generation with this many seeds to measure its variance", int_rule(1, 10)),
    "boot_seed": Param("seed of the bootstrap resampling", int_rule(0)),
    "n_boot": Param("bootstrap resamples per interval", int_rule(10)),
    "device": Param("torch device ('cpu', 'cuda', 'cuda:1', ...)", _device()),
    "encoders": Param("encoder role -> id", _encoders),
    "generator": Param("generator id", _model_id("generator")),
    "weak_generator": Param("the weaker generator of Section 5.2", _model_id("generator")),
    "weak_steps": Param("sampling steps of the weaker generator (None: its default)", int_rule(1, 1000, none_ok=True)),
    "weak_guidance": Param("guidance scale of the weaker generator (None: its default)",
                           float_rule(0.0, 50.0, none_ok=True)),
    "weak_size": Param("side in pixels of the weaker generator's images (None: its default)",
                       evalsettings.rule("size")),
    "reformulator": Param("reformulator id (R1 + R2)", _model_id("reformulator")),
    "released_encoder": Param("encoder of the released-protocol section (the release: ChatIR's BLIP, 256 tokens)",
                              _model_id("encoder")),
    "released_reformulator": Param("reformulator of the released-protocol section (paper: the authors' released "
                                   "rewrites, replay:dar-released)", _model_id("reformulator")),
    "image_root": Param("folder holding the corpus images (ChatIR sets or your own data)", _str(none_ok=True)),
    "corpus_file": Param("a corpus list (JSON list of image paths): your own for *.json benchmarks, or a subset of "
                         "ChatIR's 50k list for the ChatIR sets", _str(none_ok=True)),
    "records_dir": Param("where chapter run records are written (status page)", _str(none_ok=True)),
    # the evaluation settings, declared once in dar_lib.evalsettings
    **{s.name: Param(s.doc, s.rule) for s in evalsettings.SETTINGS.values() if s.chapter},
}

#: The protocol both profiles share: DAR's settings, the seeds and the statistics. The evaluation settings
#: (K, schedule, image reduction, protocol, seeds, sampler, LLM timeouts, ...) take their declared defaults
#: (:mod:`dar_lib.evalsettings`, where each is explained: e.g. ``seed_per_round`` False, because fresh seeds
#: every round gave DAR extra draws under cumulative Hits@10, +6.7 pp on the FLAN twin, issue 16); a profile
#: sets ``n_dialogues`` itself.
PROTOCOL: dict[str, Any] = {
    **{s.name: s.default for s in evalsettings.SETTINGS.values() if s.chapter},
    "smoke": False,
    "rehearsal": False,
    "k_values": [1, 2, 3, 5],
    # chapter 05 repeats the FLAN twin's DAR run with 3 generation seeds to show generation variance
    "n_gen_seeds": 3,
    "boot_seed": 0,
    # 10,000 paired resamples: with the book's ~40 claims in one Bonferroni family the corrected tails sit at
    # about the 0.06% quantile, ~6 resamples deep (at 1,000 it was below the first); dar_lib.stats resamples
    # with one matrix product, so this costs seconds per chapter.
    "n_boot": 10000,
    "weak_size": None,
    "image_root": None,
    "corpus_file": None,
    "records_dir": None,
}

#: The profiles: the protocol plus what differs (data, sizes, device, models). A chapter receives only
#: the names its parameters cell declares.
PROFILES: dict[str, dict[str, Any]] = {
    "toy": {
        **PROTOCOL,
        "profile": "toy",
        "benchmarks": ["toy-visdial", "toy-chatgpt", "toy-human", "toy-flan"],
        # 150 x 11 rounds x K=3 fresh images per style at ~22 images/s (2 cores): a clean book build took
        # 34 minutes (README); `dar book --set n_dialogues=500` evaluates every toy dialogue. Power (issue 16,
        # measurements in the README's quick start): on the FLAN twin DAR minus baseline has a per-dialogue sd
        # of 39.6 pp, so at 150 dialogues the book's 42-claim family detects 13.2 pp (80% power) and 7.61 pp
        # needs ~450. Prompt-derived seeds generate 43% of the images fresh seeds did (39% at 500): an
        # estimated ~23 minutes at 150 (not re-timed), about an hour at 450, over the 30-minute budget; so
        # the default stays 150 and each chapter states the effect it can detect.
        "n_dialogues": 150,
        "device": "cpu",
        "encoders": {
            "zero-shot": "toy:clip-zs",
            "coco-ft": "toy:clip-cocoft",
            "dialogue-ft": "toy:clip-chatir",
            "full": "toy:clip-full",
        },
        "generator": "toy:sd",
        # The weaker generator: the same model sampled with fewer steps and no guidance.
        "weak_generator": "toy:sd",
        "weak_steps": 2,
        "weak_guidance": 1.0,
        "reformulator": "toy:rules",
        "released_encoder": "toy:clip-chatir",
        "released_reformulator": "toy:rules",
    },
    "paper": {
        **PROTOCOL,
        "profile": "paper",
        "benchmarks": ["visdial", "chatgpt_blip2", "human_blip2", "flan_blip2"],
        "n_dialogues": None,  # all 2,064
        "device": "cuda",
        "encoders": {
            # BLIP's pre-training checkpoint (no retrieval fine-tuning), original layout, BLIP-base 224 px.
            "zero-shot": "blip-original:model_base.pth+Salesforce/blip-itm-base-coco",
            # The paper's BLIP-base, fine-tuned on COCO retrieval (transformers layout on the hub).
            "coco-ft": "blip:Salesforce/blip-itm-base-coco",
            # ChatIR's dialogue-fine-tuned BLIP-base; ChatIR cut its texts at 200 tokens.
            "dialogue-ft": "blip-original:chatir_weights.ckpt+Salesforce/blip-itm-base-coco?max_length=200",
            "clip": "clip:openai/clip-vit-base-patch16",
            "beit3": "beit3:beit3_base_patch16_384_coco_retrieval.pth+beit3.spm",
        },
        "generator": "sd3:stabilityai/stable-diffusion-3-medium-diffusers",
        # SD 2.1 sampled as its model card shows (DPMSolverMultistepScheduler; the repository ships DDIM).
        "weak_generator": "sd:stabilityai/stable-diffusion-2-1?scheduler=dpm-multistep",
        "weak_steps": None,
        "weak_guidance": None,
        "reformulator": "hf-llm:Qwen/Qwen2.5-1.5B-Instruct",
        # The release's eval.py: ChatIR's fine-tuned BLIP cut at 256 tokens, the authors' own rewrites.
        "released_encoder": "blip-original:chatir_weights.ckpt+Salesforce/blip-itm-base-coco?max_length=256",
        "released_reformulator": "replay:dar-released",
    },
}

#: Overrides ``--smoke`` applies on top of a profile: sizes that run every chapter in seconds.
SMOKE: dict[str, Any] = {
    "smoke": True,
    "toy_size": "smoke",
    "n_dialogues": 4,
    "k_images": 2,
    "k_values": [1, 2],
    "n_boot": 50,
}


def validate(params: Mapping[str, Any]) -> dict[str, Any]:
    """Check every known parameter in ``params`` against :data:`SCHEMA`.

    Args:
        params: name -> value (names outside the schema are refused).

    Returns:
        A copy of ``params``.

    Raises:
        ParameterError: naming the first bad parameter, its value and what is allowed.
    """
    for name, value in params.items():
        if name not in SCHEMA:
            raise ParameterError(f"unknown parameter {name!r}; known: {', '.join(sorted(SCHEMA))}")
        try:
            SCHEMA[name].check(value)
        except ValueError as exc:
            raise ParameterError(f"parameter {name!r} = {value!r}: {exc}") from None
    return dict(params)


def parameters(profile: str = "toy", smoke: bool = False, **overrides: Any) -> dict[str, Any]:
    """The full, checked parameter table of a profile.

    Args:
        profile: ``"toy"`` or ``"paper"``.
        smoke: apply :data:`SMOKE`'s tiny sizes.
        **overrides: values that replace the table's.

    Returns:
        A fresh dict (safe to mutate).

    Raises:
        ParameterError: unknown profile or a bad override (the message names it).
    """
    if profile not in PROFILES:
        raise ParameterError(f"parameter 'profile' = {profile!r}: must be one of {', '.join(map(repr, PROFILES))}")
    params = copy.deepcopy(PROFILES[profile])
    if smoke:
        params.update(copy.deepcopy(SMOKE))
    params.update(overrides)
    return validate(params)


def chapter_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """A chapter's parameters: the names its parameters cell declares, ``None`` filled from the profile.

    Call it first in every chapter with ``globals()``; papermill has injected the build's values by then.

    Args:
        namespace: the notebook's globals (its parameters cell declares ``profile``, ``smoke`` and the
            names it uses, most set to ``None``).

    Returns:
        name -> checked value, for the schema names the namespace holds.

    Raises:
        ParameterError: naming the bad parameter.
    """
    declared = {k: v for k, v in namespace.items() if k in SCHEMA}
    profile = declared.get("profile", "toy")
    smoke = declared.get("smoke", False)
    validate({"profile": profile, "smoke": smoke})
    table = parameters(profile, smoke)
    return validate({k: table[k] if v is None else v for k, v in declared.items()})


def parameters_table(params: Mapping[str, Any]):
    """The parameters a chapter ran with, as a two-column DataFrame (name, value) for display."""
    import pandas as pd

    return pd.DataFrame([{"parameter": k, "value": redact(repr(v)), "meaning": SCHEMA[k].doc}
                         for k, v in params.items() if k in SCHEMA]).set_index("parameter")
