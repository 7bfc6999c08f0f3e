"""Each evaluation setting declared once: meaning, allowed values, default, CLI flag and provenance column."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable

from dar_lib.argtypes import float_in, int_in, int_span
from dar_lib.fusion_weights import IMAGE_REDUCES, weights


# -- value checks, also used by dar_lib.profiles for its own parameters (each raises ValueError("must be ..."))
def int_rule(lo: int, hi: int | None = None, none_ok: bool = False) -> Callable[[Any], None]:
    """A check accepting integers in ``lo..hi`` (``hi=None``: no bound; ``none_ok``: also ``None``)."""
    def rule(v):
        if v is None and none_ok:
            return
        import numbers

        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo or (hi is not None and v > hi):
            raise ValueError(f"must be an integer {int_span(lo, hi)}" + (" or None" if none_ok else ""))
    return rule


def float_rule(lo: float, hi: float | None = None, none_ok: bool = False) -> Callable[[Any], None]:
    """A check accepting finite numbers in ``[lo, hi]`` (``hi=None``: no bound; ``none_ok``: also ``None``)."""
    def rule(v):
        if v is None and none_ok:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < lo or (hi is not None and v > hi):
            span = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise ValueError(f"must be a number in {span}" + (" or None" if none_ok else ""))
    return rule


def choice_rule(*options: str) -> Callable[[Any], None]:
    """A check accepting exactly one of ``options``."""
    def rule(v):
        if v not in options:
            raise ValueError(f"must be one of {', '.join(map(repr, options))}")
    return rule


def bool_rule(v) -> None:
    """Accept ``True`` or ``False`` only (not 0/1)."""
    if not isinstance(v, bool):
        raise ValueError("must be True or False")


def _size(v) -> None:
    if v is None:
        return
    int_rule(8, 4096)(v)
    if v % 8:
        raise ValueError("must be a multiple of 8 pixels (or None)")


def _schedule(v) -> None:
    if not isinstance(v, str):
        raise ValueError("must be 'paper', 'released' or 'const:<alpha>'")
    weights(0, v)


@dataclass(frozen=True)
class Setting:
    """One evaluation setting.

    Attributes:
        name: the EvalConfig field, chapter parameter and provenance column (``--name-with-dashes`` on the CLI).
        doc: one line for the parameters table and ``--help``.
        rule: ``value -> None`` raising ``ValueError("must be ...")``.
        default: the toy profile's value (and the CLI's, unless ``cli_default`` differs by design).
        cli_type: the argparse ``type`` (None: a string or ``choices``), ``choices`` the allowed strings.
        provenance: whether the setting is a column of every results table.
        chapter: whether a chapter parameter of the same name sets it (:data:`dar_lib.profiles.SCHEMA`).
        annotation: the type of the :class:`~dar_lib.evaluate.EvalConfig` field (:func:`as_fields`).
        in_key: whether the setting is part of a results table's key (the config's ``repr``); False for
            settings that change no answer, only when one is given up (the LLM's time limits).
    """

    name: str
    doc: str
    rule: Callable[[Any], None]
    default: Any
    cli_type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    provenance: bool = True
    chapter: bool = True
    annotation: str = "str"
    in_key: bool = True

    @property
    def flag(self) -> str:
        """The ``dar eval`` option: ``--`` and the name with dashes (``--k-images``)."""
        return "--" + self.name.replace("_", "-")


def ints(lo: int, hi: int | None = None, none_ok: bool = False) -> dict[str, Any]:
    """The check and the ``argparse`` type of an integer setting in ``lo..hi``, from one declaration."""
    return {"rule": int_rule(lo, hi, none_ok), "cli_type": int_in(lo, hi), "annotation": _maybe("int", none_ok)}


def floats(lo: float, hi: float | None = None, none_ok: bool = False) -> dict[str, Any]:
    """The check and the ``argparse`` type of a number setting in ``[lo, hi]``, from one declaration."""
    return {"rule": float_rule(lo, hi, none_ok), "cli_type": float_in(lo, hi), "annotation": _maybe("float", none_ok)}


def one_of(*options: str) -> dict[str, Any]:
    """The check and the ``argparse`` choices of a setting that takes one of ``options``."""
    return {"rule": choice_rule(*options), "choices": options, "annotation": "str"}


def _maybe(kind: str, none_ok: bool) -> str:
    return f"{kind} | None" if none_ok else kind


#: The evaluation protocols (:mod:`dar_lib.protocols` implements them).
PROTOCOLS: tuple[str, ...] = ("default", "released")

_SETTINGS = (
    Setting("k_images", "K, images generated per turn", default=3, **ints(1, 10)),
    Setting("schedule", "fusion weights: 'paper', 'released' or 'const:<alpha>'", _schedule, "paper", annotation="str"),
    Setting("image_reduce", "combine the K image embeddings: 'mean' or 'sum' (eq. 4 as written)", default="mean",
            **one_of(*IMAGE_REDUCES)),
    Setting("world_seed", "seed of the toy world and the dialogue targets", default=0, **ints(0)),
    Setting("gen_seed", "base seed of the generated images", default=0, **ints(0)),
    # The image seed comes from the prompt and gen_seed (pipeline.image_seed): the same prompt gives the same image,
    # as a deterministic system would; fresh seeds every round gave DAR extra draws under cumulative Hits@10
    # (+6.7 pp on the FLAN twin, issue 16). True keeps that policy for comparison (chapter 04).
    Setting("seed_per_round", "fresh generator seeds every round (False: the same prompt gives the same image "
            "in every round)", bool_rule, False, annotation="bool"),
    Setting("steps", "sampling steps of the generator (None: its default)", default=None, **ints(1, 1000, True)),
    Setting("guidance", "guidance scale of the generator (None: its default)", default=None, **floats(0, 50, True)),
    Setting("size", "side in pixels of the generated images (None: the generator's default, 1024 for SD3)",
            _size, None, int_in(8, 4096), annotation="int | None"),
    Setting("toy_size", "toy world size", default="default", **one_of("default", "smoke")),
    Setting("protocol", "evaluation protocol: 'default' (R1's query per round) or 'released' (the DAR release's "
            "eval.py: every rewrite so far joined, K=1, fusion 0.8/0.2 then 0.5/0.5)", default="default",
            **one_of(*PROTOCOLS)),
    Setting("n_dialogues", "dialogues evaluated per benchmark (None: all)", default=None, provenance=False,
            **ints(1, none_ok=True)),
    Setting("batch_size", "images per generator/encoder batch", default=64, provenance=False, chapter=False,
            **ints(1, 4096)),
    Setting("llm_timeout", "seconds an LLM endpoint (openai:) may take to connect and between bytes of a reply "
            "(None: the backend's 60)", default=None, provenance=False, in_key=False, **floats(0.01, 3600, True)),
    Setting("llm_deadline", "seconds one LLM call may take in all, retries and a trickling reply included "
            "(None: twice llm_timeout)", default=None, provenance=False, in_key=False, **floats(0.01, 86400, True)),
)

#: name -> Setting, in declaration order.
SETTINGS: dict[str, Setting] = {s.name: s for s in _SETTINGS}


def as_fields(cls: type) -> type:
    """Give ``cls`` every setting as an annotated field with its declared default, after its own fields; apply
    before ``@dataclass`` (so :class:`~dar_lib.evaluate.EvalConfig`'s settings are declared here only). A setting
    outside the results' key (``in_key=False``) is left out of the ``repr`` the key is made from."""
    for s in _SETTINGS:
        if s.name in cls.__dict__.get("__annotations__", {}):
            raise TypeError(f"{cls.__name__}.{s.name} is an evaluation setting: declare it in dar_lib.evalsettings")
        cls.__annotations__[s.name] = s.annotation
        setattr(cls, s.name, s.default if s.in_key else field(default=s.default, repr=False))
    return cls


def attributes_doc(indent: str = "        ") -> str:
    """The settings as docstring ``Attributes`` lines: ``name: doc (default ...)``."""
    return "".join(f"{indent}{s.name}: {s.doc} (default {s.default!r}).\n" for s in _SETTINGS)


def check(name: str, value: Any) -> None:
    """Raise ``ValueError("<name> = <value>: must be ...")`` when ``value`` is not allowed for setting ``name``.

    Examples:
        >>> check("k_images", 11)
        Traceback (most recent call last):
        ...
        ValueError: k_images = 11: must be an integer in 1..10
    """
    try:
        SETTINGS[name].rule(value)
    except ValueError as exc:
        raise ValueError(f"{name} = {value!r}: {exc}") from None


#: The settings that are columns of every results table, in their column order.
PROVENANCE: tuple[str, ...] = tuple(s.name for s in _SETTINGS if s.provenance)

#: The settings a chapter parameter of the same name sets (``chapters.EVAL_KEYS`` adds the model ids).
NAMES: tuple[str, ...] = tuple(s.name for s in _SETTINGS if s.chapter)


def provenance_columns(cfg: Any) -> dict[str, Any]:
    """``{name: value}`` of every provenance setting of ``cfg`` (an :class:`~dar_lib.evaluate.EvalConfig`)."""
    return {name: getattr(cfg, name) for name in PROVENANCE}


#: Settings whose ``dar eval`` option ``cli.py`` spells itself (unset means "the protocol's"; two seed flags).
_CLI_OWN = ("k_images", "schedule", "image_reduce", "protocol", "seed_per_round")


def add_cli_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--name-with-dashes`` for every setting with a plain option (type, choices, default as declared)."""
    for s in _SETTINGS:
        if s.name in _CLI_OWN:
            continue
        extra = {"choices": s.choices} if s.choices else {"type": s.cli_type}
        shown = "all" if s.name == "n_dialogues" and s.default is None else s.default
        parser.add_argument(s.flag, dest=s.name, default=s.default, help=f"{s.doc} (default: {shown})", **extra)


def config_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``{name: value}`` of every setting on a parsed ``dar eval`` namespace, for ``EvalConfig(**...)``."""
    return {name: getattr(args, name) for name in SETTINGS}


def rule(name: str) -> Callable[[Any], None]:
    """The check of setting ``name`` (raises ``ValueError("must be ...")``), for parameters of the same kind."""
    return SETTINGS[name].rule


def default(name: str) -> Any:
    """The declared default of setting ``name``."""
    return SETTINGS[name].default
