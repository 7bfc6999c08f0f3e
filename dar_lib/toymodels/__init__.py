"""Toy models trained on the toy world: a CLIP-style dual encoder, a text-to-image diffusion model, a probe."""

from pathlib import Path

#: Where the shipped weights live (``dar_lib/assets/toy/<name>``).
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "toy"
