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

from dar_lib import settings
from dar_lib.benchmarks.chatir import replay_table
from dar_lib.benchmarks.released import released_table
from dar_lib.models import reformulate as R
from dar_lib.models import toy
from dar_lib.models.ids import (
    ENCODER_BACKENDS,
    EXAMPLE_IDS,
    GENERATOR_BACKENDS,
    MODEL_OPTIONS,
    REFORMULATOR_BACKENDS,
    ModelSpec,
    list_backends,
    local_content,
    local_paths,
    parse_spec,
)
from dar_lib.models.loading import hub_errors, quiet_loading
from dar_lib.models.questioners import LLMQuestioner, ToyQuestioner

__all__ = ["ENCODER_BACKENDS", "EXAMPLE_IDS", "GENERATOR_BACKENDS", "MODEL_OPTIONS", "REFORMULATOR_BACKENDS",
           "ModelSpec", "list_backends", "load_encoder", "load_generator", "load_model", "load_questioner",
           "load_reformulator", "local_content", "local_paths", "parse_spec"]


def load_model(kind: str, spec: str, device: str | None = None, **options):
    """Load a model by kind and id once per process and per content of its local files (the evaluation
    runner, the book's chapters and the Ray workers share these instances; weights retrained into the
    same folder are loaded again, see :func:`local_content`).

    Args:
        kind: ``"encoder"``, ``"generator"`` or ``"reformulator"``.
        spec: the model id.
        device: torch device.
        **options: passed to the loader where not ``None`` (a reformulator's ``timeout``, ``deadline``);
            part of the instance's key.

    Raises:
        ValueError: an unknown kind or a bad id.
    """
    given = tuple(sorted((k, v) for k, v in options.items() if v is not None))
    return _load_model(kind, spec, device, tuple(sorted(local_content(kind, spec).items())), given)


@functools.lru_cache(maxsize=16)
def _load_model(kind: str, spec: str, device: str | None, content: tuple, options: tuple = ()) -> object:
    loaders = {"encoder": load_encoder, "generator": load_generator, "reformulator": load_reformulator}
    return loaders[kind](spec, device=device, **dict(options))


def _given(**options) -> dict:
    """The options the caller actually set, so the toy loaders keep their own defaults for the rest."""
    return {k: v for k, v in options.items() if v is not None}


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


@hub_errors("encoder")
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

    quiet_loading()
    s = parse_spec(spec, ENCODER_BACKENDS, "encoder")
    revision = revision or s.revision
    device = settings.check_device(device) if device else settings.default_device()
    max_length = _int_setting(spec, "max_length", max_length, s.options)
    _truncation_setting(spec, s.options)
    if s.backend == "toy":
        enc = toy.load_encoder(s.model, device=device, **_given(dtype=dtype, batch_size=batch_size,
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


@hub_errors("generator")
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

    quiet_loading()
    s = parse_spec(spec, GENERATOR_BACKENDS, "generator")
    device = settings.check_device(device) if device else settings.default_device()
    if s.backend == "toy":
        return toy.load_generator(s.model, device=device, **_given(dtype=dtype, batch_size=batch_size), **kwargs)
    from .generators import DiffusersGenerator, check_scheduler

    scheduler = check_scheduler(s.options.get("scheduler", "default"), f"generator id {spec!r}")
    return DiffusersGenerator.from_pretrained(s.backend, s.model, revision or s.revision, device=device,
                                              dtype=dtype, batch_size=batch_size or 4,
                                              trust_remote_code=trust_remote_code, scheduler=scheduler)


@hub_errors("reformulator")
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

    s = parse_spec(spec, REFORMULATOR_BACKENDS, "reformulator")
    if "fallback" in s.options:
        flag = s.options["fallback"].lower()
        if flag not in ("true", "false", "1", "0"):
            raise ValueError(f"reformulator id {spec!r}: fallback must be true or false, got {flag!r}")
        kwargs.setdefault("fallback", flag in ("true", "1"))
    if s.backend == "identity":
        return R.IdentityReformulator()
    if s.backend == "toy":
        return toy.load_reformulator(s.model, **kwargs)
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
        return R.ReplayReformulator(replay_table(), id="replay:plugir", **kwargs)
    if s.model == "dar-released":
        return R.ReplayReformulator(released_table(), id="replay:dar-released", **kwargs)
    return R.ReplayReformulator.from_json(s.model, **kwargs)


def load_questioner(spec: str, *, scenes=None, **kwargs):
    """Load a questioner: ``toy`` (needs the toy corpus ``scenes``), ``hf-llm:<id>``, ``openai:<model>@<url>``
    or ``gguf:<path>`` (an LLM through :func:`load_reformulator`'s backends).

    Raises:
        ValueError: an unknown spec, or ``toy`` without ``scenes``.
    """

    if spec in ("toy", "toy:rules"):
        if scenes is None:
            raise ValueError("the toy questioner needs the corpus scenes: load_questioner('toy', scenes=world.scenes)")
        return ToyQuestioner(scenes)
    if spec.split(":", 1)[0] in ("hf-llm", "openai", "gguf"):
        return LLMQuestioner(load_reformulator(spec, **kwargs))
    raise ValueError(f"unknown questioner {spec!r}; use toy, hf-llm:<id> or openai:<model>@<url>")
