"""The toy profile's models: shipped toy encoders and generator, and the toy world's reformulator.

Ids name folders under ``dar_lib/assets/toy`` (``clip-full``, ``clip-zs``, ``clip-cocoft``,
``clip-chatir``, ``sd``), or any folder written by ``dar train-toy --out``; everything loads
offline through the same ``from_pretrained`` calls as the real models.

Examples:
    >>> from dar_lib.models import load_encoder, load_generator
    >>> enc = load_encoder("toy:clip-zs")
    >>> enc.encode_text(["a red circle"]).shape
    torch.Size([1, 128])
    >>> gen = load_generator("toy:sd")
    >>> gen.generate(["a red circle on a blue background"], seeds=[0])[0].size
    (32, 32)
"""

from __future__ import annotations

from pathlib import Path

from dar_lib.benchmarks import toyworld as tw
from dar_lib.cachekeys import weights_digest
from dar_lib.toymodels import ASSETS

ENCODERS = ("clip-full", "clip-zs", "clip-cocoft", "clip-chatir")
GENERATORS = ("sd",)


def resolve(name: str, kind: str, known: tuple[str, ...]) -> Path:
    """The folder of a toy model: a shipped name (``clip-zs``) or a path to a trained folder.

    Raises:
        ValueError: neither a shipped name nor an existing folder (the message lists the names).
    """
    name = str(name)
    if name in known:
        folder = ASSETS / name
        if not (folder / "config.json").exists() and not (folder / "model_index.json").exists():
            raise ValueError(f"toy {kind} {name!r}: no weights at {folder}; run `dar train-toy` to create them")
        return folder
    folder = Path(name).expanduser()
    if folder.is_dir():
        return folder
    raise ValueError(f"unknown toy {kind} {name!r}; shipped: {', '.join(known)} "
                     "(or a folder from `dar train-toy --out`)")


def load_encoder(name: str, device: str | None = None, **kw):
    """A toy dual encoder as a :class:`~dar_lib.models.encoders.ClipEncoder`.

    The model is a transformers ``VisionTextDualEncoderModel``: the convolutional image tower of
    :mod:`dar_lib.toymodels.cnn_tower` (batch norm in eval mode) and a CLIP text transformer.

    Args:
        name: ``clip-full``, ``clip-zs``, ``clip-cocoft``, ``clip-chatir`` or a trained folder.
        device: torch device (default ``settings.default_device()``).
        **kw: passed to ``ClipEncoder.from_pretrained`` (``dtype``, ``batch_size``, ``max_length``).

    Returns:
        The encoder; its ``id`` is ``"toy:<name>"``.
    """
    from transformers import AutoModel

    from dar_lib.models.encoders import ClipEncoder
    from dar_lib.toymodels import cnn_tower  # noqa: F401  registers the CNN image tower with AutoModel

    folder = resolve(name, "encoder", ENCODERS)
    _check_dual_encoder(folder, name)
    kw.setdefault("batch_size", 512)
    # AutoModel: a v3 folder holds a VisionTextDualEncoderModel (CNN image tower, CLIP text tower)
    enc = ClipEncoder.from_pretrained(str(folder), device=device, model_class=AutoModel, **kw)
    enc.id = f"toy:{name}" if name in ENCODERS else f"toy:{folder}"
    enc.revision = f"weights-{weights_digest(folder)}"  # retrained weights never reuse cached embeddings
    return enc


def _check_dual_encoder(folder: Path, name: str) -> None:
    """Refuse, by name, a folder that holds no dual encoder (e.g. ``dar train-toy``'s ``image-tower`` stage).

    Raises:
        ValueError: ``config.json`` is missing or names another kind of model.
    """
    import json

    from dar_lib.toymodels.cnn_tower import MODEL_TYPE

    try:
        kind = json.loads((folder / "config.json").read_text()).get("model_type")
    except (OSError, ValueError):
        kind = None
    if kind == MODEL_TYPE:
        raise ValueError(f"toy encoder {name!r}: {folder} holds only an image tower (dar train-toy's "
                         f"image-tower stage), not a dual encoder; load a text tower trained on it, "
                         f"e.g. toy:{folder.parent}/clip-full")
    if kind not in ("vision-text-dual-encoder", "clip"):
        raise ValueError(f"toy encoder {name!r}: {folder} holds no dual encoder (config.json model_type {kind!r}); "
                         f"a folder written by dar train-toy's clip-* stages is one")


def load_generator(name: str = "sd", device: str | None = None, **kw):
    """The toy text-to-image model as a :class:`~dar_lib.models.generators.DiffusersGenerator`.

    Args:
        name: ``sd`` or a folder written by ``ToyDiffusionPipeline.save_pretrained``.
        device: torch device (default ``settings.default_device()``).
        **kw: ``default_steps``, ``default_guidance``, ``default_size``, ``batch_size``, ``dtype``.

    Returns:
        The generator; its ``id`` is ``"toy:<name>"``.
    """
    import torch

    from dar_lib.models.generators import DiffusersGenerator, dtype_keyword
    from dar_lib.toymodels.diffusion import ToyDiffusionPipeline
    from dar_lib.toymodels.diffusion_train import DEFAULT_GUIDANCE, DEFAULT_SIZE, DEFAULT_STEPS

    folder = resolve(name, "generator", GENERATORS)
    # weights are stored in half precision; compute in float32 unless a dtype is asked for
    pipe = ToyDiffusionPipeline.from_pretrained(str(folder), **{dtype_keyword(): kw.get("dtype") or torch.float32})
    kw.setdefault("default_steps", DEFAULT_STEPS)
    kw.setdefault("default_guidance", DEFAULT_GUIDANCE)
    kw.setdefault("default_size", DEFAULT_SIZE)
    kw.setdefault("batch_size", 256)
    gen_id = f"toy:{name}" if name in GENERATORS else f"toy:{folder}"
    # the weights' digest pins the model: retrained weights never reuse cached images
    return DiffusersGenerator(pipe, id=gen_id, device=device, revision=f"weights-{weights_digest(folder)}", **kw)


def load_reformulator(name: str = "rules", **kw):
    """The toy world's rule-based R1/R2 (``toyworld.ToyReformulator``); it stands in for an LLM."""

    if name not in ("", "rules"):
        raise ValueError(f"unknown toy reformulator {name!r}; the toy world has one: 'toy:rules'")
    return tw.ToyReformulator(**kw)
