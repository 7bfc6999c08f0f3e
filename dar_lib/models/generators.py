"""Text-to-image generators over diffusers pipelines, and a cache of generated images.

Every image gets its own seeded ``torch.Generator`` (on the CPU, so a seed gives the same initial
noise on any device), so a (prompt, seed) pair yields the same image whatever batch it is part of,
up to kernel rounding: a different batch size or thread count can move a pixel by one 8-bit level.
Callers that need bit-identical images ask in fixed batches (see ``CachedGenerator.generate``'s
``whole_batch``).

An all-black output (what a safety checker or an fp16 overflow produces) raises
:class:`BlackImageError` instead of being regenerated: regenerating would need another seed and
silently break the (prompt, seed) -> image contract that the cache and the paper's figures rely on.

Examples:
    A paper generator loads by hub id (``DiffusersGenerator.from_pretrained("turbo", "stabilityai/sd-turbo")``,
    or ``load_generator("turbo:stabilityai/sd-turbo")``); the shipped toy model is one too, offline:

    >>> from dar_lib.models import load_generator
    >>> gen = load_generator("toy:sd")
    >>> type(gen).__name__, [im.size for im in gen.generate(["a red bus in a street"], seeds=[0])]
    ('DiffusersGenerator', [(32, 32)])
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from dar_lib import evalsettings, settings
from dar_lib.cachekeys import image_key, local_revision
from dar_lib.store import CachedWrapper

log = logging.getLogger(__name__)

#: Per backend: (pipeline class name, default steps, default guidance, default size).
BACKEND_DEFAULTS: dict[str, tuple[str, int, float, int | None]] = {
    "sd3": ("StableDiffusion3Pipeline", 28, 7.0, 1024),
    "sd": ("StableDiffusionPipeline", 50, 7.5, 768),
    # sd-turbo is distilled for 1-4 steps without classifier-free guidance.
    "turbo": ("AutoPipelineForText2Image", 1, 0.0, 512),
    "diffusers": ("DiffusionPipeline", 30, 7.5, None),
}


#: ``?scheduler=`` ids of the diffusers generators: the scheduler class each names (``default``: the one the
#: pipeline's repository ships, e.g. DDIM for SD 2.1). ``dpm-multistep`` is what SD 2.1's model card uses
#: (``pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)``).
SCHEDULERS: dict[str, str | None] = {"default": None, "dpm-multistep": "DPMSolverMultistepScheduler"}


def check_scheduler(scheduler: str, where: str) -> str:
    """Return ``scheduler`` if it is a :data:`SCHEDULERS` id, else raise ``ValueError`` naming it and ``where``."""
    if scheduler not in SCHEDULERS:
        raise ValueError(f"{where}: option scheduler={scheduler!r}: choose one of {', '.join(SCHEDULERS)}")
    return scheduler


def dtype_keyword() -> str:
    """diffusers renamed ``from_pretrained``'s ``torch_dtype`` to ``dtype`` (the old name warns)."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE") else "torch_dtype"


class BlackImageError(RuntimeError):
    """A generated image is entirely black (safety checker, NaN/overflow in half precision)."""


def _dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "")


class DiffusersGenerator:
    """Wrap a diffusers text-to-image pipeline behind ``generate(prompts, seeds)``.

    Args:
        pipe: a pipeline whose ``__call__`` takes ``prompt`` (list), ``num_inference_steps``,
            ``guidance_scale``, ``generator`` (list), ``height``, ``width``, ``output_type="pil"``
            and returns an object with ``.images``.
        id: model id (for fingerprints), e.g. ``"sd3:stabilityai/stable-diffusion-3-medium-diffusers"``.
        default_steps: denoising steps when ``generate`` gets none.
        default_guidance: classifier-free guidance scale when ``generate`` gets none.
        default_size: image side in pixels; ``None`` lets the pipeline choose.
        device: torch device (default ``settings.default_device()``).
        dtype: torch dtype; default fp16 on CUDA, fp32 elsewhere.
        batch_size: images per pipeline call.
        revision: model revision (for fingerprints).
    """

    def __init__(self, pipe, id: str, default_steps: int = 30, default_guidance: float = 7.5,
                 default_size: int | None = None, device: str | None = None, dtype=None,
                 batch_size: int = 4, revision: str | None = None):
        self.device = device or settings.default_device()
        if dtype is None:
            dtype = torch.float16 if str(self.device).startswith("cuda") else torch.float32
        self.dtype = dtype
        self.pipe = pipe
        if hasattr(pipe, "to"):
            pipe.to(self.device)
            if _accepts_dtype(pipe) and getattr(pipe, "dtype", dtype) != dtype:
                pipe.to(dtype)
        # Pipelines assembled from fresh modules are in training mode (dropout on): not reproducible.
        for module in getattr(pipe, "components", {}).values():
            if isinstance(module, torch.nn.Module):
                module.eval()
        # The safety checker blacks out images; DAR's retrieval needs every generated image.
        if getattr(pipe, "safety_checker", None) is not None:
            pipe.safety_checker = None
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        self.id = id
        self.revision = revision
        self.default_steps = int(default_steps)
        self.default_guidance = float(default_guidance)
        self.default_size = default_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"{id}: batch_size = {batch_size!r}: must be an integer >= 1")
        self.batch_size = int(batch_size)
        #: Images generated by this object (a cache test counts them).
        self.images_generated = 0
        #: The :data:`SCHEDULERS` id the pipeline samples with (set by :meth:`from_pretrained`).
        self.scheduler = "default"

    def fingerprint(self) -> str:
        """``"diffusers:<id>@<revision or 'unpinned'>|pipe=<pipeline class>|dtype=<dtype>"`` (image cache keys use it).

        Steps, guidance and size are not in it: :class:`CachedGenerator` keys each image by them.
        """
        return (f"diffusers:{self.id}@{self.revision or 'unpinned'}|pipe={type(self.pipe).__name__}"
                f"|dtype={_dtype_name(self.dtype)}"
                + ("" if self.scheduler == "default" else f"|scheduler={self.scheduler}"))

    def resolve(self, steps: int | None, guidance: float | None, size: int | None) -> tuple[int, float, int | None]:
        """The (steps, guidance, size) actually used for the given overrides, checked.

        Raises:
            ValueError: steps outside 1..1000, guidance outside [0, 50] or not finite, or a size that
                is not a positive multiple of 8 pixels (the message names the setting).
        """
        steps = steps if steps is not None else self.default_steps
        guidance = guidance if guidance is not None else self.default_guidance
        size = size if size is not None else self.default_size
        try:
            for name, value in (("steps", steps), ("guidance", guidance), ("size", size)):
                evalsettings.check(name, value)
        except ValueError as exc:
            raise ValueError(f"{self.id}: {exc}") from None
        return int(steps), float(guidance), (int(size) if size is not None else None)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], seeds: Sequence[int], steps: int | None = None,
                 guidance: float | None = None, size: int | None = None) -> list[Image.Image]:
        """Generate one image per (prompt, seed).

        Args:
            prompts: text prompts.
            seeds: one integer seed per prompt.
            steps: denoising steps (default: the backend's).
            guidance: guidance scale (default: the backend's).
            size: square image side in pixels (default: the backend's).

        Returns:
            RGB PIL images, in the order of ``prompts``.

        Raises:
            BlackImageError: when an output is entirely black (names the prompt and seed).
            ValueError: ``prompts`` and ``seeds`` differ in length, a prompt is empty, or a setting
                is out of range (see :meth:`resolve`).
        """
        prompts, seeds = list(prompts), [int(s) for s in seeds]
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        if any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError(f"{self.id}: every prompt must be a non-empty string")
        steps, guidance, size = self.resolve(steps, guidance, size)
        kwargs = dict(num_inference_steps=steps, guidance_scale=guidance, output_type="pil")
        if size is not None:
            kwargs.update(height=int(size), width=int(size))
        starts = range(0, len(prompts), self.batch_size)
        if len(prompts) > self.batch_size:
            from tqdm import tqdm

            starts = tqdm(starts, desc=f"generate ({self.id})", unit="batch")
        out: list[Image.Image] = []
        for i in starts:
            p, s = prompts[i:i + self.batch_size], seeds[i:i + self.batch_size]
            gens = [torch.Generator("cpu").manual_seed(x) for x in s]
            images = self.pipe(prompt=p, generator=gens, **kwargs).images
            for prompt, seed, img in zip(p, s, images):
                img = img.convert("RGB")
                if int(np.asarray(img).max()) == 0:
                    raise BlackImageError(
                        f"{self.id}: all-black image for prompt {prompt!r}, seed {seed} (safety checker or "
                        f"numerical overflow in {_dtype_name(self.dtype)}; try dtype=float32 or bfloat16)")
                out.append(img)
            self.images_generated += len(images)
        return out

    @classmethod
    def from_pretrained(cls, backend: str, path_or_id: str, revision: str | None = None, *,
                        device: str | None = None, dtype=None, batch_size: int = 4,
                        trust_remote_code: bool = False, scheduler: str = "default") -> "DiffusersGenerator":
        """Load a pipeline for ``backend`` (``sd3``, ``sd``, ``turbo``, ``diffusers``) by hub id or folder.

        Half precision on CUDA, fp32 on CPU unless ``dtype`` says otherwise; safety checker off.
        ``scheduler`` (a :data:`SCHEDULERS` id) replaces the repository's scheduler by that class built
        from the repository's scheduler config, as SD 2.1's model card does; it is in the fingerprint.
        """
        import diffusers

        if backend not in BACKEND_DEFAULTS:
            raise ValueError(f"unknown generator backend {backend!r}; known: {', '.join(BACKEND_DEFAULTS)}")
        cls_name, steps, guidance, size = BACKEND_DEFAULTS[backend]
        device = device or settings.default_device()
        if dtype is None:
            dtype = torch.float16 if str(device).startswith("cuda") else torch.float32
        pipe_cls = getattr(diffusers, cls_name)
        kwargs = {"revision": revision, dtype_keyword(): dtype}
        if trust_remote_code:
            kwargs["trust_remote_code"] = True
        if backend in ("sd", "turbo"):
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        check_scheduler(scheduler, f"{backend}:{path_or_id}")
        pipe = pipe_cls.from_pretrained(str(path_or_id), **kwargs)
        if SCHEDULERS[scheduler] is not None:
            pipe.scheduler = getattr(diffusers, SCHEDULERS[scheduler]).from_config(pipe.scheduler.config)

        # A local folder is named by its content: changed weights never replay the old images.
        gen = cls(pipe, f"{backend}:{path_or_id}", steps, guidance, size, device=device, dtype=dtype,
                  batch_size=batch_size, revision=local_revision(path_or_id) or revision)
        gen.scheduler = scheduler
        return gen


def _accepts_dtype(pipe) -> bool:
    """diffusers pipelines take ``.to(device, dtype)``; plain stubs may take only a device."""
    try:
        import diffusers

        return isinstance(pipe, diffusers.DiffusionPipeline)
    except ImportError:  # pragma: no cover
        return False


class CachedGenerator(CachedWrapper):
    """Cache each generated image in an ``ArtefactStore``; generate only the misses, in batches.

    The key names the generator's fingerprint, the prompt, the seed and the resolved steps,
    guidance and size, so a changed setting never returns a stale image.

    Args:
        generator: any object with ``generate``, ``fingerprint`` and ``id`` (and optionally
            ``resolve`` to turn ``None`` settings into the defaults it uses).
        store: the artefact store.
    """

    KIND = "images"

    @property
    def generator(self):
        """The wrapped generator."""
        return self.wrapped

    def resolve(self, steps: int | None, guidance: float | None, size: int | None) -> tuple:
        """The (steps, guidance, size) the wrapped generator uses for these overrides (``None`` = its
        default), checked by it; unchanged for a generator that has no ``resolve``.

        Raises:
            ValueError: a setting out of range (see :meth:`DiffusersGenerator.resolve`).
        """
        resolve = getattr(self.generator, "resolve", None)
        return tuple(resolve(steps, guidance, size)) if resolve else (steps, guidance, size)

    def identity(self, steps: int | None = None, guidance: float | None = None, size: int | None = None) -> dict:
        """What names this generator's images besides (prompt, seed): ``{"generator": fingerprint,
        "settings": [steps, guidance, size] resolved}``; :func:`dar_lib.cachekeys.image_key` of it and a
        (prompt, seed) is the image's key. JSON-ready, so a Ray worker can send it to the driver."""
        return {"generator": self.fingerprint(), "settings": list(self.resolve(steps, guidance, size))}

    def key(self, prompt: str, seed: int, steps, guidance, size) -> str:
        """The store key of one image (:func:`dar_lib.cachekeys.image_key`) for resolved settings."""
        return image_key(self.fingerprint(), prompt, seed, steps, guidance, size)

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], steps: int | None = None,
                 guidance: float | None = None, size: int | None = None, *,
                 whole_batch: bool = False) -> list[Image.Image]:
        """As ``generator.generate``, reading and filling the store.

        Args:
            whole_batch: when any image of the call is missing, generate the whole call as one batch
                and store only the missing ones. Convolution and matmul kernels round differently for
                different batch sizes, so an image can differ by one 8-bit level between batches; a
                caller that always asks in the same fixed batches (the evaluation runner) thus gets
                bit-identical images whether a run was interrupted or not.
        """
        prompts, seeds = list(prompts), [int(s) for s in seeds]
        if len(prompts) != len(seeds):
            raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        r_steps, r_guid, r_size = self.resolve(steps, guidance, size)
        keys = [self.key(p, s, r_steps, r_guid, r_size) for p, s in zip(prompts, seeds)]
        out: list[Image.Image | None] = [self.store.get_image(self.KIND, k) for k in keys]
        todo = [i for i, img in enumerate(out) if img is None]
        self.hits += len(prompts) - len(todo)
        self.misses += len(todo)
        if todo:
            run = list(range(len(prompts))) if whole_batch else todo
            images = self.generator.generate([prompts[i] for i in run], [seeds[i] for i in run],
                                             steps=steps, guidance=guidance, size=size)
            for i, img in zip(run, images):
                if out[i] is None:
                    self.store.put_image(self.KIND, keys[i], img)
                    out[i] = img
        return [img.convert("RGB") for img in out]
