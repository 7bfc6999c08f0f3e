"""Diffusion Augmented Retrieval (DAR): the library behind the DAR book."""

__version__ = "0.1.0"
