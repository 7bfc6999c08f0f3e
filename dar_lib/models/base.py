"""The three model interfaces of DAR: encoder, generator, reformulator (and questioner)."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import torch
from PIL import Image


@runtime_checkable
class Encoder(Protocol):
    """A multimodal dual encoder mapping texts and images into one space.

    Both methods return L2-normalised float32 tensors of shape ``(n, dim)`` on the CPU.
    """

    id: str
    dim: int

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Embed texts into the shared space.

        Every implementation must return row ``i`` for ``texts[i]``, L2-normalised, as a float32
        CPU tensor without autograd history (callers call ``.numpy()`` on it), whatever device
        and dtype the model runs in; texts longer than the model's limit are truncated, not refused.

        Args:
            texts: ``n`` strings (``n`` may be 0).

        Returns:
            float32 CPU tensor ``(n, dim)``, unit-norm rows; ``(0, dim)`` for no texts.
        """
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Embed images into the same space as :meth:`encode_text`.

        Same contract: row ``i`` for ``images[i]``, L2-normalised, float32, on the CPU, no autograd
        history; preprocessing (resize, normalisation) is the encoder's own and is named by
        :meth:`fingerprint`. Implementations may accept more than PIL images (the shipped ones also
        take uint8 ``(H, W, 3)`` arrays and file paths).

        Args:
            images: ``n`` PIL images of any mode (converted to RGB).

        Returns:
            float32 CPU tensor ``(n, dim)``, unit-norm rows; ``(0, dim)`` for no images.
        """
        ...

    def fingerprint(self) -> str:
        """A string naming everything that determines the embeddings (id, revision, preprocessing)."""
        ...


def image_fingerprint(encoder) -> str:
    """A string naming everything that determines the encoder's *image* embeddings.

    Encoders whose image towers are identical (the toy variants share one locked tower; a text-only
    fine-tune keeps its base's) return the same string, so corpus and generated-image embeddings
    cached for one are reused by the others. An encoder without an ``image_fingerprint()`` method is
    named by its whole :meth:`Encoder.fingerprint` (never shared).
    """
    method = getattr(encoder, "image_fingerprint", None)
    return method() if callable(method) else encoder.fingerprint()


def text_fingerprint(encoder) -> str:
    """A string naming everything that determines the encoder's *text* embeddings (it keys cached query-text
    embeddings): the encoder's ``text_fingerprint()`` where it has one (the shipped encoders: their
    :meth:`Encoder.fingerprint`, batch size and a digest of their weights, config and tokenizer as loaded, so
    weights retrained into the same folder are never mistaken for the old ones), else its
    :meth:`Encoder.fingerprint`. Like the image embeddings' keys it names no device or library version: a store
    filled on one machine serves another as it is.
    """
    method = getattr(encoder, "text_fingerprint", None)
    return method() if callable(method) else encoder.fingerprint()


@runtime_checkable
class Generator(Protocol):
    """A text-to-image generator; one seeded generator per image."""

    id: str

    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        steps: int | None = None,
        guidance: float | None = None,
        size: int | None = None,
    ) -> list[Image.Image]:
        """Generate one image per (prompt, seed) pair.

        Every implementation must seed one generator per image from its seed alone, so that a
        (prompt, seed, settings) triple gives the same image whatever batch it is in (up to kernel
        rounding), and must never substitute another seed for a failed image.

        Args:
            prompts: ``n`` non-empty text prompts.
            seeds: ``n`` integer seeds, one per prompt.
            steps: denoising steps; ``None`` uses the generator's default.
            guidance: classifier-free guidance scale; ``None`` uses the default.
            size: square image side in pixels; ``None`` uses the default.

        Returns:
            ``n`` RGB PIL images, in the order of ``prompts``.

        Raises:
            ValueError: ``prompts`` and ``seeds`` differ in length.
        """
        ...

    def fingerprint(self) -> str:
        """A string naming everything besides (prompt, seed, steps, guidance, size) that determines the images.

        E.g. model id, revision, pipeline class and dtype; it is part of every cached image's key.
        """
        ...


@runtime_checkable
class Reformulator(Protocol):
    """R1 (dialogue -> caption-style query) and R2 (query -> K generator prompts)."""

    id: str

    def rewrite(self, turns: Sequence[str], *, ref: tuple[str, int] | None = None) -> str:
        """R1: ``turns`` is the dialogue so far: caption first, then "question? answer" turns.

        ``ref`` = (target image path, round_idx) identifies the dialogue for adapters that replay
        recorded rewrites; every other adapter ignores it.
        """
        ...

    def prompts(self, query: str, k: int) -> list[str]:
        """R2: K diverse generator prompts for the query."""
        ...

    def fingerprint(self) -> str:
        """A string naming everything besides the input that determines R1/R2 outputs.

        E.g. for an LLM backend: model id and revision, prompt template and reply-parser versions,
        sampling settings. :class:`~dar_lib.models.reformulate.CachedReformulator` keys every
        stored output by it.
        """
        ...
