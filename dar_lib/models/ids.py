"""Model ids: ``"<backend>:<model id or local folder>[@revision][?name=value&...]"`` parsed and checked, the
backends and options each kind accepts, documented examples, and the local files an id names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import dar_lib.models.toy as toy
from dar_lib.cachekeys import weights_digest

ENCODER_BACKENDS = ("blip", "clip", "blip-original", "beit3", "toy")
GENERATOR_BACKENDS = ("sd3", "sd", "turbo", "diffusers", "toy")
REFORMULATOR_BACKENDS = ("hf-llm", "openai", "replay", "identity", "gguf", "toy")

#: Options each backend accepts after ``?`` in its id (``name=value`` pairs joined by ``&``). A
#: backend missing here takes none and keeps ``?`` as part of its model string: ``openai``, whose
#: base URL may carry a query (``...?api-version=...``).
MODEL_OPTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "encoder": {
        "blip": ("max_length", "truncation"),
        "clip": ("max_length", "truncation"),
        "blip-original": ("max_length", "image_size", "truncation"),
        "beit3": ("max_length", "image_size", "truncation"),
        "toy": ("max_length", "truncation"),
    },
    # scheduler=dpm-multistep: SD 2.1's model-card scheduler (dar_lib.models.generators.SCHEDULERS)
    "generator": {**{b: () for b in GENERATOR_BACKENDS}, "sd": ("scheduler",), "diffusers": ("scheduler",)},
    # fallback=true: an unusable LLM reply after one retry gives a recorded fallback instead of an error
    "reformulator": {**{b: () for b in REFORMULATOR_BACKENDS if b != "openai"}, "hf-llm": ("fallback",),
                     "gguf": ("fallback",)},
}

#: Documented example ids (for the README and the book).
EXAMPLE_IDS: dict[str, dict[str, str]] = {
    "encoder": {
        "blip:Salesforce/blip-itm-base-coco": "BLIP-base ITM, COCO fine-tuned (the paper's encoder, 384 px in HF)",
        "clip:openai/clip-vit-base-patch16": "CLIP ViT-B/16 (ChatIR's CLIP baseline, 77 tokens)",
        "blip-original:chatir_weights.ckpt+Salesforce/blip-itm-base-coco?max_length=200":
            "ChatIR's dialogue-fine-tuned BLIP, original layout, imported (224 px; ChatIR's 200-token "
            "text limit, where DAR's release uses the default 256)",
        "beit3:beit3_base_patch16_384_coco_retrieval.pth+beit3.spm":
            "BEiT-3 base, COCO retrieval fine-tuned (Section 5.2), unilm checkpoint + sentencepiece model "
            "(384 px, 64 tokens)",
        "toy:clip-zs": "the toy world's zero-shot dual encoder",
    },
    "generator": {
        "sd3:stabilityai/stable-diffusion-3-medium-diffusers": "Stable Diffusion 3 medium (the paper's generator)",
        "sd:stabilityai/stable-diffusion-2-1?scheduler=dpm-multistep":
            "Stable Diffusion 2.1 (Section 5.2), its model card's scheduler",
        "turbo:stabilityai/sd-turbo": "SD-Turbo, 1-4 steps, no guidance (fast option)",
        "diffusers:<any text-to-image pipeline id>": "any diffusers pipeline",
        "toy:<name>": "the toy world's pixel-space diffusion model",
    },
    "reformulator": {
        "hf-llm:Qwen/Qwen2.5-1.5B-Instruct": "any transformers chat model",
        "openai:gpt-4o-mini@https://api.openai.com/v1": "any OpenAI-compatible endpoint",
        "replay:plugir": "PlugIR's recorded per-round LLM queries",
        "replay:dar-released": "the DAR authors' released R1 rewrites of ChatIR's VisDial (rounds 1-10)",
        "replay:<path to ChatIR-format json>": "your own recorded per-round queries",
        "identity": "no rewriting: the raw dialogue text",
        "gguf:<path to .gguf>": "llama.cpp model (needs llama-cpp-python)",
        "toy:<name>": "the toy world's rule-based reformulator",
    },
}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model id: backend, model (hub id, folder or path), optional revision and options.

    ``options`` holds the ``name=value`` settings given after ``?`` (values as strings; the loader
    converts and checks them).
    """

    backend: str
    model: str
    revision: str | None = None
    options: dict[str, str] = field(default_factory=dict, hash=False)


def _parse_options(query: str, spec: str, kind: str, backend: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """``"a=1&b=2"`` -> ``{"a": "1", "b": "2"}``, refusing malformed, repeated and unknown names."""
    options: dict[str, str] = {}
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or not name or not value:
            raise ValueError(f"{kind} id {spec!r}: option {part!r} is not 'name=value' "
                             f"(options look like '?max_length=200&image_size=384')")
        if name in options:
            raise ValueError(f"{kind} id {spec!r}: option {name!r} is given twice")
        options[name] = value
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        accepted = ", ".join(allowed) if allowed else "no options"
        raise ValueError(f"{kind} id {spec!r}: unknown option{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(unknown)}; backend {backend!r} accepts: {accepted}")
    return options


def parse_spec(spec: str, backends: tuple[str, ...], kind: str) -> ModelSpec:
    """Split ``"<backend>:<model>[@revision][?name=value&...]"``.

    The ``@revision`` suffix is only taken when what follows ``@`` contains no ``/`` or ``:``
    (so ``openai:model@https://host/v1`` keeps its URL, and a path containing ``@`` is left
    alone when it exists on disk). Options after the last ``?`` are parsed for the backends of
    :data:`MODEL_OPTIONS` (a path containing ``?`` that exists on disk is left alone).

    Args:
        spec: the id, e.g. ``"blip-original:chatir_weights.ckpt+Salesforce/blip-itm-base-coco?max_length=200"``.
        backends: the backends known to this kind of model.
        kind: ``"encoder"``, ``"generator"`` or ``"reformulator"`` (for messages and options).

    Returns:
        The parsed :class:`ModelSpec`.

    Raises:
        ValueError: unknown backend (the message lists the known ones), missing model, or a
            malformed or unknown option (the message names it and the options the backend accepts).
    """
    spec = str(spec).strip()
    backend, sep, rest = spec.partition(":")
    if backend not in backends:
        raise ValueError(f"unknown {kind} backend {backend!r} in {spec!r}; known backends: {', '.join(backends)}"
                         f" (ids look like '<backend>:<model id or folder>[@revision][?option=value]')")
    options: dict[str, str] = {}
    allowed = MODEL_OPTIONS.get(kind, {}).get(backend)
    if allowed is not None and "?" in rest and not Path(rest).exists():
        rest, _, query = rest.rpartition("?")
        options = _parse_options(query, spec, kind, backend, allowed)
    if not sep or not rest:
        if backend == "identity":
            return ModelSpec(backend, "", options=options)
        raise ValueError(f"{kind} id {spec!r} names no model; expected '{backend}:<model id or folder>'")
    model, revision = rest, None
    if backend == "openai" and "@" in rest:
        # model names hold no '@', the base URL may (user:key@host): split at the first one
        model, _, revision = rest.partition("@")  # here the part after @ is the base URL
    elif "@" in rest and not Path(rest).exists():
        head, _, tail = rest.rpartition("@")
        if tail and not re.search(r"[/:]", tail):
            model, revision = head, tail
    return ModelSpec(backend, model, revision, options)


def list_backends() -> dict[str, tuple[str, ...]]:
    """The backends known to each factory."""
    return {"encoder": ENCODER_BACKENDS, "generator": GENERATOR_BACKENDS, "reformulator": REFORMULATOR_BACKENDS}


def local_content(kind: str, spec: str) -> dict[str, str]:
    """The weights digest of every local file or folder a model id names: ``{path: digest}``.

    A toy name resolves to its shipped folder; ``+``-joined parts (``beit3:<ckpt>+<spm>``,
    ``blip-original:<ckpt>+<base>``) are each looked up; hub ids and endpoints name no local file
    (``{}``: their id and revision name them). Result tables are keyed by it
    (:func:`dar_lib.evaluate.table_key`), so a retrain into the same folder recomputes them.

    Args:
        kind: ``"encoder"``, ``"generator"`` or ``"reformulator"``.
        spec: the model id.

    Raises:
        ValueError: an unknown kind or a bad id (as the loader would say).
    """

    return {str(p): weights_digest(p) for p in local_paths(kind, spec)}


def local_paths(kind: str, spec: str) -> list[Path]:
    """The existing local files and folders a model id names (:func:`local_content` without the digests).

    Raises:
        ValueError: an unknown kind or a bad id (as the loader would say).
    """
    backends = {"encoder": ENCODER_BACKENDS, "generator": GENERATOR_BACKENDS, "reformulator": REFORMULATOR_BACKENDS}
    if kind not in backends:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(backends)}")
    s = parse_spec(spec, backends[kind], kind)
    if s.backend == "toy":
        if kind == "reformulator":
            return {}
        paths = [toy.resolve(s.model, kind, toy.ENCODERS if kind == "encoder" else toy.GENERATORS)]
    elif s.backend in ("openai", "identity"):
        paths = []
    else:
        whole = Path(s.model).expanduser()
        paths = [whole] if whole.exists() else [Path(p).expanduser() for p in s.model.split("+") if p]
    return [p for p in paths if p.exists()]


