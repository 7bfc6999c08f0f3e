"""One factory for DAR's models: ``load_encoder``, ``load_generator``, ``load_reformulator`` by string id.

Ids are ``"<backend>:<model id or local folder>[@revision]"``; a local folder loads offline.

Examples:
    >>> enc = load_encoder("blip:Salesforce/blip-itm-base-coco")            # doctest: +SKIP
    >>> gen = load_generator("turbo:stabilityai/sd-turbo", device="cuda")    # doctest: +SKIP
    >>> ref = load_reformulator("identity")
    >>> ref.rewrite(["a cat", "is it black? yes"])
    'a cat, is it black? yes'
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

ENCODER_BACKENDS = ("blip", "clip", "blip-original", "toy")
GENERATOR_BACKENDS = ("sd3", "sd", "turbo", "diffusers", "toy")
REFORMULATOR_BACKENDS = ("hf-llm", "openai", "replay", "identity", "gguf", "toy")

#: Documented example ids (for the README and the book).
EXAMPLE_IDS: dict[str, dict[str, str]] = {
    "encoder": {
        "blip:Salesforce/blip-itm-base-coco": "BLIP-base ITM, COCO fine-tuned (the paper's encoder, 384 px in HF)",
        "clip:openai/clip-vit-base-patch16": "CLIP ViT-B/16 (ChatIR's CLIP baseline, 77 tokens)",
        "blip-original:chatir_weights.ckpt+Salesforce/blip-itm-base-coco":
            "ChatIR's dialogue-fine-tuned BLIP, original layout, imported (224 px)",
        "toy:clip-zs": "the toy world's zero-shot dual encoder",
    },
    "generator": {
        "sd3:stabilityai/stable-diffusion-3-medium-diffusers": "Stable Diffusion 3 medium (the paper's generator)",
        "sd:stabilityai/stable-diffusion-2-1": "Stable Diffusion 2.1 (Section 5.2)",
        "turbo:stabilityai/sd-turbo": "SD-Turbo, 1-4 steps, no guidance (fast option)",
        "diffusers:<any text-to-image pipeline id>": "any diffusers pipeline",
        "toy:<name>": "the toy world's pixel-space diffusion model",
    },
    "reformulator": {
        "hf-llm:Qwen/Qwen2.5-1.5B-Instruct": "any transformers chat model",
        "openai:gpt-4o-mini@https://api.openai.com/v1": "any OpenAI-compatible endpoint",
        "replay:plugir": "PlugIR's recorded per-round LLM queries",
        "replay:<path to ChatIR-format json>": "your own recorded per-round queries",
        "identity": "no rewriting: the raw dialogue text",
        "gguf:<path to .gguf>": "llama.cpp model (needs llama-cpp-python)",
        "toy:<name>": "the toy world's rule-based reformulator",
    },
}


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model id: backend, model (hub id, folder or path) and optional revision."""

    backend: str
    model: str
    revision: str | None = None


def parse_spec(spec: str, backends: tuple[str, ...], kind: str) -> ModelSpec:
    """Split ``"<backend>:<model>[@revision]"``.

    The ``@revision`` suffix is only taken when what follows ``@`` contains no ``/`` or ``:``
    (so ``openai:model@https://host/v1`` keeps its URL, and a path containing ``@`` is left
    alone when it exists on disk).

    Raises:
        ValueError: unknown backend (the message lists the known ones) or missing model.
    """
    spec = str(spec).strip()
    backend, sep, rest = spec.partition(":")
    if backend not in backends:
        raise ValueError(f"unknown {kind} backend {backend!r} in {spec!r}; known backends: {', '.join(backends)}"
                         f" (ids look like '<backend>:<model id or folder>[@revision]')")
    if not sep or not rest:
        if backend == "identity":
            return ModelSpec(backend, "")
        raise ValueError(f"{kind} id {spec!r} names no model; expected '{backend}:<model id or folder>'")
    model, revision = rest, None
    if "@" in rest and not Path(rest).exists():
        head, _, tail = rest.rpartition("@")
        if backend == "openai":
            model, revision = head, tail  # here the part after @ is the base URL
        elif tail and not re.search(r"[/:]", tail):
            model, revision = head, tail
    return ModelSpec(backend, model, revision)


@functools.lru_cache(maxsize=16)
def load_model(kind: str, spec: str, device: str | None = None):
    """Load a model by kind and id once per process (the evaluation runner, the book's chapters and
    the Ray workers share these instances).

    Args:
        kind: ``"encoder"``, ``"generator"`` or ``"reformulator"``.
        spec: the model id.
        device: torch device.

    Raises:
        ValueError: an unknown kind or a bad id.
    """
    loaders = {"encoder": load_encoder, "generator": load_generator, "reformulator": load_reformulator}
    if kind not in loaders:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {', '.join(loaders)}")
    return loaders[kind](spec, device=device)


def list_backends() -> dict[str, tuple[str, ...]]:
    """The backends known to each factory."""
    return {"encoder": ENCODER_BACKENDS, "generator": GENERATOR_BACKENDS, "reformulator": REFORMULATOR_BACKENDS}


def _given(**settings) -> dict:
    """The settings the caller actually set, so the toy loaders keep their own defaults for the rest."""
    return {k: v for k, v in settings.items() if v is not None}


def _file_tag(path: str) -> str:
    """Size + sha256 of the first MiB: names a checkpoint file in fingerprints without hashing GBs."""
    import hashlib

    p = Path(path)
    with p.open("rb") as fh:
        head = hashlib.sha256(fh.read(1 << 20)).hexdigest()[:12]
    return f"{p.stat().st_size}-{head}"


def _quiet_loading() -> None:
    """Turn off the per-file "Loading weights" bars of transformers and diffusers.

    They carry no information for a local load, and in a notebook they become widgets that end up
    frozen in the rendered book. Downloads still log through the hub's own logger.
    """
    import diffusers
    import transformers

    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.disable_progress_bar()


def _hub_errors(kind: str):
    """Turn "cannot reach the hub" failures of a loader into :class:`~dar_lib.errors.ModelNotAvailableError`.

    A model id that names no local folder or file must come from the model hub; offline (or with a
    typo in the id) the hub client fails with a connection or "not found" error that does not say
    what to do. The new message names the id and the Paper scale page.
    """
    def wrap(loader):
        @functools.wraps(loader)
        def load(spec, *args, **kwargs):
            try:
                return loader(spec, *args, **kwargs)
            except (OSError, ConnectionError) as exc:
                from ..errors import PAPER_SCALE_PAGE, ModelNotAvailableError

                parsed = str(spec).partition(":")[2]
                local = [p for p in re.split(r"[+@]", parsed) if p and Path(p).expanduser().exists()]
                if local or "hub" not in f"{type(exc).__module__} {exc}".lower() and not _is_hub_error(exc):
                    raise
                raise ModelNotAvailableError(
                    f"{kind} {spec!r}: not a local folder or file, and the model hub could not provide it "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). Download it on a machine with "
                    f"internet and pass its folder instead; see {PAPER_SCALE_PAGE}.") from exc
        return load
    return wrap


def _is_hub_error(exc: BaseException) -> bool:
    """True for the hub client's and requests' connection / not-found errors."""
    names = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    return bool(names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "RepositoryNotFoundError",
                         "HFValidationError", "ConnectionError", "ConnectTimeout", "MaxRetryError",
                         "GatedRepoError", "RevisionNotFoundError", "EntryNotFoundError"})


def _toy():
    # Written by another module owner; imported lazily so the real backends never need it.
    from . import toy

    return toy


@_hub_errors("encoder")
def load_encoder(spec: str, *, revision: str | None = None, device: str | None = None, dtype=None,
                 batch_size: int | None = None, max_length: int | None = None, trust_remote_code: bool = False,
                 **kwargs):
    """Load a dual encoder by id.

    Args:
        spec: ``blip:<id|folder>``, ``clip:<id|folder>``,
            ``blip-original:<.pth/.ckpt>[+<hf base id or folder>]`` or ``toy:<name>``, each with an
            optional ``@revision``.
        revision: model revision (overrides the one in ``spec``).
        device: torch device (default ``settings.default_device()``).
        dtype: torch dtype (default float32).
        batch_size: items per forward pass (default 32 for BLIP, 64 for CLIP, the toy's own).
        max_length: text token limit (BLIP default 256; CLIP capped at 77).
        trust_remote_code: allow hub code (never on by default).
        **kwargs: passed on (e.g. ``image_size`` for ``blip-original``).

    Returns:
        An :class:`~dar_lib.models.base.Encoder`.
    """
    from .. import settings

    _quiet_loading()
    s = parse_spec(spec, ENCODER_BACKENDS, "encoder")
    revision = revision or s.revision
    device = device or settings.default_device()
    if s.backend == "toy":
        return _toy().load_encoder(s.model, device=device, **_given(dtype=dtype, batch_size=batch_size,
                                                                   max_length=max_length), **kwargs)
    from .encoders import BlipEncoder, ClipEncoder

    common = dict(device=device, dtype=dtype, batch_size=batch_size or (64 if s.backend == "clip" else 32),
                  max_length=max_length)
    if s.backend == "blip":
        return BlipEncoder.from_pretrained(s.model, revision, trust_remote_code=trust_remote_code, **common)
    if s.backend == "clip":
        return ClipEncoder.from_pretrained(s.model, revision, trust_remote_code=trust_remote_code, **common)
    # blip-original: checkpoint path, optionally "+<base>" for config and tokenizer.
    from .blip_import import load_original_blip
    from .encoders import ImagePreprocessor

    ckpt, _, base = s.model.partition("+")
    base = base or "Salesforce/blip-itm-base-coco"
    model, tok = load_original_blip(ckpt, base, image_size=kwargs.pop("image_size", None), revision=revision)
    pre = ImagePreprocessor(model.config.vision_config.image_size, mode="square")
    return BlipEncoder(model, tok, pre, id=f"blip-original:{Path(ckpt).name}#{_file_tag(ckpt)}+{base}", revision=revision,
                       dtype=dtype, device=device, batch_size=batch_size or 32, max_length=max_length or 256)


@_hub_errors("generator")
def load_generator(spec: str, *, revision: str | None = None, device: str | None = None, dtype=None,
                   batch_size: int | None = None, trust_remote_code: bool = False, **kwargs):
    """Load a text-to-image generator by id.

    Args:
        spec: ``sd3:<id>``, ``sd:<id>``, ``turbo:<id>``, ``diffusers:<id>`` (hub id or folder,
            optional ``@revision``) or ``toy:<name>``.
        revision: model revision (overrides the one in ``spec``).
        device: torch device (default ``settings.default_device()``).
        dtype: torch dtype (default fp16 on CUDA, fp32 on CPU).
        batch_size: images per pipeline call (default 4; the toy's own for ``toy``).
        trust_remote_code: allow hub code (never on by default).
        **kwargs: passed to the toy loader (``default_steps``, ...).

    Returns:
        A :class:`~dar_lib.models.generators.DiffusersGenerator` (or the toy generator).
    """
    from .. import settings

    _quiet_loading()
    s = parse_spec(spec, GENERATOR_BACKENDS, "generator")
    device = device or settings.default_device()
    if s.backend == "toy":
        return _toy().load_generator(s.model, device=device, **_given(dtype=dtype, batch_size=batch_size), **kwargs)
    from .generators import DiffusersGenerator

    return DiffusersGenerator.from_pretrained(s.backend, s.model, revision or s.revision, device=device,
                                              dtype=dtype, batch_size=batch_size or 4,
                                              trust_remote_code=trust_remote_code)


@_hub_errors("reformulator")
def load_reformulator(spec: str, *, revision: str | None = None, device: str | None = None, dtype=None,
                      trust_remote_code: bool = False, **kwargs):
    """Load a reformulator (R1 + R2) by id.

    Args:
        spec: ``hf-llm:<chat model id|folder>``, ``openai:<model>@<base url>``,
            ``replay:plugir``, ``replay:<ChatIR-format json>``, ``identity``, ``gguf:<path>`` or
            ``toy:<name>``.
        revision: model revision for ``hf-llm`` (overrides the one in ``spec``).
        device: torch device for ``hf-llm`` (default ``settings.default_device()``).
        dtype: torch dtype for ``hf-llm``.
        trust_remote_code: allow hub code (never on by default).
        **kwargs: backend settings (``max_new_tokens``, ``timeout``, ``max_retries``, ...).

    Returns:
        A :class:`~dar_lib.models.base.Reformulator`.
    """
    from .. import settings
    from . import reformulators as R

    s = parse_spec(spec, REFORMULATOR_BACKENDS, "reformulator")
    if s.backend == "identity":
        return R.IdentityReformulator()
    if s.backend == "toy":
        return _toy().load_reformulator(s.model, **kwargs)
    if s.backend == "hf-llm":
        return R.HFChatReformulator.from_pretrained(s.model, revision or s.revision,
                                                    device=device or settings.default_device(), dtype=dtype,
                                                    trust_remote_code=trust_remote_code, **kwargs)
    if s.backend == "openai":
        return R.OpenAIReformulator(s.model, s.revision or "https://api.openai.com/v1", **kwargs)
    if s.backend == "gguf":
        return R.LlamaCppReformulator(s.model, **kwargs)
    # replay
    if s.model == "plugir":
        from ..benchmarks.chatir import replay_table

        return R.ReplayReformulator(replay_table(), id="replay:plugir", **kwargs)
    return R.ReplayReformulator.from_json(s.model, **kwargs)
