"""Toy models trained on the toy world: a CLIP-style dual encoder, a text-to-image diffusion model, a probe."""
