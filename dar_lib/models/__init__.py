"""One factory for DAR's models: ``load_encoder``, ``load_generator``, ``load_reformulator`` by string id.

Ids are ``"<backend>:<model id or local folder>[@revision][?name=value&...]"``; a local folder loads
offline. Options after ``?`` are settings that change what a model computes (``max_length`` of an
encoder's text side, ``image_size``), so the id a parameter table records names them; each backend
accepts only the names in :data:`MODEL_OPTIONS`.

Examples:
    The paper's models load the same way by hub id or checkpoint (they need the hub, or the files):
    ``load_encoder("blip:Salesforce/blip-itm-base-coco")``,
    ``load_encoder("blip-original:chatir_weights.ckpt+Salesforce/blip-itm-base-coco?max_length=200")``,
    ``load_generator("turbo:stabilityai/sd-turbo", device="cuda")``. Offline:

    >>> load_encoder("toy:clip-zs").encode_text(["a red circle"]).shape
    torch.Size([1, 128])
    >>> ref = load_reformulator("identity")
    >>> ref.rewrite(["a cat", "is it black? yes"])
    'a cat, is it black? yes'
"""

from __future__ import annotations

import functools
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

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


def load_model(kind: str, spec: str, device: str | None = None, **settings):
    """Load a model by kind and id once per process and per content of its local files (the evaluation
    runner, the book's chapters and the Ray workers share these instances; weights retrained into the
    same folder are loaded again, see :func:`local_content`).

    Args:
        kind: ``"encoder"``, ``"generator"`` or ``"reformulator"``.
        spec: the model id.
        device: torch device.
        **settings: passed to the loader where not ``None`` (a reformulator's ``timeout``, ``deadline``);
            part of the instance's key.

    Raises:
        ValueError: an unknown kind or a bad id.
    """
    given = tuple(sorted((k, v) for k, v in settings.items() if v is not None))
    return _load_model(kind, spec, device, tuple(sorted(local_content(kind, spec).items())), given)


@functools.lru_cache(maxsize=16)
def _load_model(kind: str, spec: str, device: str | None, content: tuple, settings: tuple = ()) -> object:
    loaders = {"encoder": load_encoder, "generator": load_generator, "reformulator": load_reformulator}
    return loaders[kind](spec, device=device, **dict(settings))


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
    from dar_lib.cachekeys import weights_digest

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
        toy = _toy()
        paths = [toy.resolve(s.model, kind, toy.ENCODERS if kind == "encoder" else toy.GENERATORS)]
    elif s.backend in ("openai", "identity"):
        paths = []
    else:
        whole = Path(s.model).expanduser()
        paths = [whole] if whole.exists() else [Path(p).expanduser() for p in s.model.split("+") if p]
    return [p for p in paths if p.exists()]


def list_backends() -> dict[str, tuple[str, ...]]:
    """The backends known to each factory."""
    return {"encoder": ENCODER_BACKENDS, "generator": GENERATOR_BACKENDS, "reformulator": REFORMULATOR_BACKENDS}


def _given(**settings) -> dict:
    """The settings the caller actually set, so the toy loaders keep their own defaults for the rest."""
    return {k: v for k, v in settings.items() if v is not None}


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
            from ..redact import redact
            from ..weightfiles import check_model_files

            for root in local_paths(kind, spec):  # damaged weights: one line naming the file, not a traceback
                check_model_files(root, f"{kind} {redact(spec)!r}")
            try:
                return loader(spec, *args, **kwargs)
            except pickle.UnpicklingError as exc:  # transformers / diffusers read a pickled .bin weights-only
                raise _refused_pickle(kind, spec, exc) from exc
            except (OSError, ConnectionError) as exc:
                from ..errors import PAPER_SCALE_PAGE, ModelNotAvailableError

                parsed = str(spec).partition(":")[2].rsplit("?", 1)[0]  # options are no path
                local = [p for p in re.split(r"[+@]", parsed) if p and Path(p).expanduser().exists()]
                if local or "hub" not in f"{type(exc).__module__} {exc}".lower() and not _is_hub_error(exc):
                    raise
                from ..redact import redact

                raise ModelNotAvailableError(
                    f"{kind} {redact(spec)!r}: not a local folder or file, and the model hub could not provide it "
                    f"({type(exc).__name__}: {redact(str(exc).splitlines()[0][:200])}). Download it on a machine with "
                    f"internet and pass its folder instead; see {PAPER_SCALE_PAGE}.") from exc
        return load
    return wrap


def _refused_pickle(kind: str, spec: str, exc: BaseException):
    """A :class:`~dar_lib.errors.DataError` naming the pickled weight file(s) of a local model that torch refused."""
    from ..errors import DataError
    from ..redact import redact
    from .blip_import import refused_pickle_message

    parsed = str(spec).partition(":")[2].rsplit("?", 1)[0]
    roots = [Path(p).expanduser() for p in re.split(r"[+@]", parsed) if p and Path(p).expanduser().exists()]
    files = sorted(f for r in roots for f in ([r] if r.is_file() else r.rglob("*"))
                   if f.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if len(files) == 1:
        return DataError(f"{kind} {redact(spec)!r}: " + refused_pickle_message(files[0], exc))
    where = ", ".join(map(str, files)) if files else redact(spec)
    return DataError(f"{kind} {redact(spec)!r}: a pickled weight file ({where}) cannot be read weights-only: "
                     + refused_pickle_message(files[0] if files else Path(parsed), exc).partition(": ")[2])


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


def _int_setting(spec: str, name: str, given: int | None, options: dict[str, str]) -> int | None:
    """A positive integer setting from the id's options or the keyword argument (they must agree)."""
    from_id = None
    if name in options:
        raw = options[name]
        try:
            from_id = int(raw)
        except ValueError:
            raise ValueError(f"encoder id {spec!r}: option {name}={raw!r} is not an integer") from None
        if from_id <= 0:
            raise ValueError(f"encoder id {spec!r}: option {name}={raw!r} must be positive")
    if given is not None and from_id is not None and int(given) != from_id:
        raise ValueError(f"encoder id {spec!r} sets {name}={from_id} but the call passes {name}={given}; "
                         f"give it in one place")
    return from_id if from_id is not None else given


def _truncation_setting(spec: str, options: dict[str, str]) -> str:
    """The id's ``?truncation=`` (default ``right``), checked before any weights load."""
    from .encoders import TRUNCATION_SIDES

    side = options.get("truncation", "right")
    if side not in TRUNCATION_SIDES:
        raise ValueError(f"encoder id {spec!r}: option truncation={side!r}: "
                         f"choose one of {', '.join(TRUNCATION_SIDES)}")
    return side


def _with_truncation(encoder, spec: str, options: dict[str, str]):
    if "truncation" in options:  # encoders cut from the right unless the id says otherwise
        encoder.truncation = _truncation_setting(spec, options)
    return encoder


@_hub_errors("encoder")
def load_encoder(spec: str, *, revision: str | None = None, device: str | None = None, dtype=None,
                 batch_size: int | None = None, max_length: int | None = None, trust_remote_code: bool = False,
                 **kwargs):
    """Load a dual encoder by id.

    Args:
        spec: ``blip:<id|folder>``, ``clip:<id|folder>``,
            ``blip-original:<.pth/.ckpt/.safetensors>[+<hf base id or folder>]``,
            ``beit3:<checkpoint .pth>+<sentencepiece .spm>`` or ``toy:<name>``, each with an
            optional ``@revision`` and options after ``?`` (:data:`MODEL_OPTIONS`), e.g.
            ``blip-original:chatir_weights.ckpt+Salesforce/blip-itm-base-coco?max_length=200``;
            ``?truncation=left`` keeps the newest text of a too-long query (default ``right``, the
            released evaluations' cut, which keeps the start); it is part of the fingerprint.
        revision: model revision (overrides the one in ``spec``).
        device: torch device (default ``settings.default_device()``).
        dtype: torch dtype (default float32).
        batch_size: items per forward pass (default 32 for BLIP and BEiT-3, 64 for CLIP, the toy's own).
        max_length: text token limit (BLIP default 256, DAR's; ChatIR used 200; CLIP capped at 77;
            BEiT-3 default 64, its retrieval fine-tuning's); the id's ``?max_length=`` sets the
            same, and the two must agree when both are given.
        trust_remote_code: allow hub code (never on by default).
        **kwargs: ``image_size`` (pixels, ``blip-original`` and ``beit3``; also an id option) and
            ``head_size`` (attention head size the checkpoint's layout implies, default 64; only
            for test models) for the imported layouts; passed on for ``toy``.

    Returns:
        An :class:`~dar_lib.models.base.Encoder`.

    Raises:
        ValueError: a bad id or option (named in the message).
    """
    from .. import settings

    _quiet_loading()
    s = parse_spec(spec, ENCODER_BACKENDS, "encoder")
    revision = revision or s.revision
    device = settings.check_device(device) if device else settings.default_device()
    max_length = _int_setting(spec, "max_length", max_length, s.options)
    _truncation_setting(spec, s.options)
    if s.backend == "toy":
        enc = _toy().load_encoder(s.model, device=device, **_given(dtype=dtype, batch_size=batch_size,
                                                                   max_length=max_length), **kwargs)
        return _with_truncation(enc, spec, s.options)
    from .encoders import BlipEncoder, ClipEncoder

    common = dict(device=device, dtype=dtype, batch_size=batch_size or (64 if s.backend == "clip" else 32),
                  max_length=max_length)
    if s.backend == "blip":
        return _with_truncation(BlipEncoder.from_pretrained(s.model, revision, trust_remote_code=trust_remote_code,
                                                            **common), spec, s.options)
    if s.backend == "clip":
        return _with_truncation(ClipEncoder.from_pretrained(s.model, revision, trust_remote_code=trust_remote_code,
                                                            **common), spec, s.options)
    image_size = _int_setting(spec, "image_size", kwargs.pop("image_size", None), s.options)
    head = {"head_size": kwargs.pop("head_size")} if "head_size" in kwargs else {}
    if s.backend == "beit3":
        from .beit3 import Beit3Encoder

        ckpt, _, spm = s.model.partition("+")
        return _with_truncation(Beit3Encoder.from_checkpoint(ckpt, spm, image_size=image_size, **head, **common),
                                spec, s.options)
    # blip-original: checkpoint path, optionally "+<base>" for config and tokenizer.
    ckpt, _, base = s.model.partition("+")
    base = base or "Salesforce/blip-itm-base-coco"
    return _with_truncation(BlipEncoder.from_original(ckpt, base, revision=revision, image_size=image_size, **head,
                                                      **common), spec, s.options)


@_hub_errors("generator")
def load_generator(spec: str, *, revision: str | None = None, device: str | None = None, dtype=None,
                   batch_size: int | None = None, trust_remote_code: bool = False, **kwargs):
    """Load a text-to-image generator by id.

    Args:
        spec: ``sd3:<id>``, ``sd:<id>``, ``turbo:<id>``, ``diffusers:<id>`` (hub id or folder,
            optional ``@revision``) or ``toy:<name>``; ``sd:`` and ``diffusers:`` take
            ``?scheduler=dpm-multistep`` (SD 2.1's model-card scheduler; part of the fingerprint).
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
    device = settings.check_device(device) if device else settings.default_device()
    if s.backend == "toy":
        return _toy().load_generator(s.model, device=device, **_given(dtype=dtype, batch_size=batch_size), **kwargs)
    from .generators import DiffusersGenerator, check_scheduler

    scheduler = check_scheduler(s.options.get("scheduler", "default"), f"generator id {spec!r}")
    return DiffusersGenerator.from_pretrained(s.backend, s.model, revision or s.revision, device=device,
                                              dtype=dtype, batch_size=batch_size or 4,
                                              trust_remote_code=trust_remote_code, scheduler=scheduler)


@_hub_errors("reformulator")
def load_reformulator(spec: str, *, revision: str | None = None, device: str | None = None, dtype=None,
                      trust_remote_code: bool = False, timeout: float | None = None, deadline: float | None = None,
                      **kwargs):
    """Load a reformulator (R1 + R2) by id.

    Args:
        spec: ``hf-llm:<chat model id|folder>``, ``openai:<model>@<base url>``,
            ``replay:plugir``, ``replay:dar-released``, ``replay:<ChatIR-format json>``, ``identity``,
            ``gguf:<path>`` or ``toy:<name>``.
        revision: model revision for ``hf-llm`` (overrides the one in ``spec``).
        device: torch device for ``hf-llm`` (default ``settings.default_device()``).
        dtype: torch dtype for ``hf-llm``.
        trust_remote_code: allow hub code (never on by default).
        timeout, deadline: seconds an ``openai:`` endpoint may be silent, and may take for one call in all
            (``dar eval --llm-timeout/--llm-deadline``; default: the backend's); other backends take no
            network time and ignore them.
        **kwargs: backend settings (``max_new_tokens``, ``timeout``, ``max_retries``, ...).

    Returns:
        A :class:`~dar_lib.models.base.Reformulator`.
    """
    from .. import settings
    from . import reformulate as R

    s = parse_spec(spec, REFORMULATOR_BACKENDS, "reformulator")
    if "fallback" in s.options:
        flag = s.options["fallback"].lower()
        if flag not in ("true", "false", "1", "0"):
            raise ValueError(f"reformulator id {spec!r}: fallback must be true or false, got {flag!r}")
        kwargs.setdefault("fallback", flag in ("true", "1"))
    if s.backend == "identity":
        return R.IdentityReformulator()
    if s.backend == "toy":
        return _toy().load_reformulator(s.model, **kwargs)
    if s.backend == "hf-llm":
        return R.HFChatReformulator.from_pretrained(s.model, revision or s.revision,
                                                    device=device or settings.default_device(), dtype=dtype,
                                                    trust_remote_code=trust_remote_code, **kwargs)
    if s.backend == "openai":
        return R.OpenAIReformulator(s.model, s.revision or "https://api.openai.com/v1",
                                    **_given(timeout=timeout, deadline=deadline), **kwargs)
    if s.backend == "gguf":
        return R.LlamaCppReformulator(s.model, **kwargs)
    # replay
    if s.model == "plugir":
        from ..benchmarks.chatir import replay_table

        return R.ReplayReformulator(replay_table(), id="replay:plugir", **kwargs)
    if s.model == "dar-released":
        from ..benchmarks.released import released_table

        return R.ReplayReformulator(released_table(), id="replay:dar-released", **kwargs)
    return R.ReplayReformulator.from_json(s.model, **kwargs)


def load_questioner(spec: str, *, scenes=None, **kwargs):
    """Load a questioner: ``toy`` (needs the toy corpus ``scenes``), ``hf-llm:<id>``, ``openai:<model>@<url>``
    or ``gguf:<path>`` (an LLM through :func:`load_reformulator`'s backends).

    Raises:
        ValueError: an unknown spec, or ``toy`` without ``scenes``.
    """
    from .questioners import LLMQuestioner, ToyQuestioner

    if spec in ("toy", "toy:rules"):
        if scenes is None:
            raise ValueError("the toy questioner needs the corpus scenes: load_questioner('toy', scenes=world.scenes)")
        return ToyQuestioner(scenes)
    if spec.split(":", 1)[0] in ("hf-llm", "openai", "gguf"):
        return LLMQuestioner(load_reformulator(spec, **kwargs))
    raise ValueError(f"unknown questioner {spec!r}; use toy, hf-llm:<id> or openai:<model>@<url>")
