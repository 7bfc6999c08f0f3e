"""Draw toy scenes as small RGB images (numpy masks, 2x supersampled, deterministic)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from dar_lib.benchmarks.toyworld.scenes import POSITIONS, RGB, Scene

#: Half-extent of each size level as a fraction of the image side (about 6, 8 and 10 px across at 32 px).
RADIUS = {"small": 0.095, "medium": 0.13, "large": 0.16}
_SUPERSAMPLE = 2


def _cell_centre(position: str) -> tuple[float, float]:
    idx = POSITIONS.index(position)
    row, col = divmod(idx, 3)
    return (col + 0.5) / 3.0, (row + 0.5) / 3.0


def _shape_mask(shape: str, x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    ax, ay = np.abs(x), np.abs(y)
    if shape == "circle":
        return x * x + y * y <= r * r
    if shape == "square":
        return np.maximum(ax, ay) <= r * 0.82
    if shape == "triangle":
        # Apex up; the base is as wide as the triangle is tall.
        top, bottom = -r, r * 0.85
        frac = (y - top) / (bottom - top)
        return (y >= top) & (y <= bottom) & (ax <= frac * r)
    if shape == "cross":
        arm = r * 0.34
        return ((ax <= arm) & (ay <= r)) | ((ay <= arm) & (ax <= r))
    raise ValueError(f"unknown shape {shape!r}")


def _clip_rgb(rgb: tuple[int, int, int], shade: int) -> np.ndarray:
    return np.clip(np.array(rgb, dtype=np.int16) + shade, 0, 255).astype(np.float32)


def render_array(scene: Scene, size: int = 32) -> np.ndarray:
    """One scene as a uint8 array of shape (size, size, 3)."""
    if size < 8:
        raise ValueError(f"size must be >= 8 px, got {size}")
    n = size * _SUPERSAMPLE
    coords = (np.arange(n, dtype=np.float32) + 0.5) / n
    gx, gy = np.meshgrid(coords, coords)
    canvas = np.empty((n, n, 3), dtype=np.float32)
    canvas[:] = _clip_rgb(RGB[scene.background], scene.bg_shade)
    # Draw the smaller objects first so the salient object is always on top.
    for obj in reversed(scene.objects):
        cx, cy = _cell_centre(obj.position)
        r = RADIUS[obj.size]
        # World v2: an object never leaves the picture (a clipped shape cannot be told from another).
        cx, cy = min(max(cx + obj.dx, r), 1 - r), min(max(cy + obj.dy, r), 1 - r)
        mask = _shape_mask(obj.shape, gx - cx, gy - cy, r)
        canvas[mask] = _clip_rgb(RGB[obj.color], obj.shade)
    canvas = canvas.reshape(size, _SUPERSAMPLE, size, _SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.round(canvas).astype(np.uint8)


def render(scene: Scene, size: int = 32) -> Image.Image:
    """Render one scene.

    Args:
        scene: the scene.
        size: image side in pixels.

    Returns:
        An RGB ``PIL.Image`` of ``size`` x ``size`` pixels.
    """
    return Image.fromarray(render_array(scene, size), mode="RGB")


def render_batch(scenes: Sequence[Scene], size: int = 32) -> np.ndarray:
    """Render many scenes into a uint8 array of shape (N, size, size, 3)."""
    out = np.empty((len(scenes), size, size, 3), dtype=np.uint8)
    for i, scene in enumerate(scenes):
        out[i] = render_array(scene, size)
    return out
