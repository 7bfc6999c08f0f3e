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

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor: ...

    def encode_images(self, images: Sequence[Image.Image]) -> torch.Tensor: ...

    def fingerprint(self) -> str:
        """A string naming everything that determines the embeddings (id, revision, preprocessing)."""
        ...


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
    ) -> list[Image.Image]: ...

    def fingerprint(self) -> str: ...


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

    def fingerprint(self) -> str: ...
