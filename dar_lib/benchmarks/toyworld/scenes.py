"""Toy scenes: a background colour and one to three flat objects on a 3x3 grid, drawn from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

#: Colours, far apart in RGB so a 32 px image and a small generator keep them apart.
COLORS: tuple[str, ...] = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (250, 145, 20),
    "yellow": (240, 225, 40),
    "green": (35, 165, 60),
    "blue": (35, 75, 215),
    "purple": (140, 50, 175),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
}
#: Shapes that stay distinguishable at 32 px.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
#: Size levels; the salient (first) object is always strictly the largest in its scene.
SIZES: tuple[str, ...] = ("small", "medium", "large")
#: A 3x3 grid, row-major; names are also the words the texts use ("in the top left").
POSITIONS: tuple[str, ...] = (
    "top left", "top middle", "top right",
    "middle left", "center", "middle right",
    "bottom left", "bottom middle", "bottom right",
)
#: Number words for object counts.
COUNTS: tuple[str, ...] = ("one", "two", "three")
MAX_OBJECTS = 3

#: The attributes of a scene's background and salient object (see :func:`attributes`).
ATTRIBUTES: dict[str, list[str]] = {
    "background": list(COLORS),
    "color": list(COLORS),
    "shape": list(SHAPES),
    "size": list(SIZES),
    "position": list(POSITIONS),
    "count": list(COUNTS),
}


@dataclass(frozen=True)
class Obj:
    """One flat object.

    Attributes:
        shape, color, size, position: names from :data:`SHAPES`, :data:`COLORS`, :data:`SIZES`, :data:`POSITIONS`.
        dx, dy: jitter of the centre inside its grid cell, as a fraction of the image side.
        shade: brightness jitter added to every RGB channel (rendering only; not a fact).
    """

    shape: str
    color: str
    size: str
    position: str
    dx: float = 0.0
    dy: float = 0.0
    shade: int = 0


@dataclass(frozen=True)
class Scene:
    """A toy scene: background colour and objects, the salient (largest) object first.

    Attributes:
        background: background colour name.
        objects: 1 to 3 objects in distinct grid cells; ``objects[0]`` is the salient one, the one
            the first caption names; the others are strictly smaller.
        bg_shade: brightness jitter of the background (rendering only).
    """

    background: str
    objects: tuple[Obj, ...]
    bg_shade: int = 0

    @property
    def primary(self) -> Obj:
        return self.objects[0]

    def to_json(self) -> dict:
        return {
            "background": self.background,
            "bg_shade": self.bg_shade,
            "objects": [
                {"shape": o.shape, "color": o.color, "size": o.size, "position": o.position,
                 "dx": o.dx, "dy": o.dy, "shade": o.shade}
                for o in self.objects
            ],
        }

    @classmethod
    def from_json(cls, rec: dict) -> "Scene":
        objs = tuple(Obj(**o) for o in rec["objects"])
        return cls(background=rec["background"], objects=objs, bg_shade=int(rec.get("bg_shade", 0)))


def random_scene(rng: random.Random) -> Scene:
    """Draw one scene from ``rng`` (1-3 objects, salient object strictly largest, distinct cells and looks)."""
    background = rng.choice(COLORS)
    n_objects = rng.choices((1, 2, 3), weights=(0.3, 0.4, 0.3))[0]
    palette = [c for c in COLORS if c != background]
    cells = rng.sample(POSITIONS, n_objects)
    if n_objects == 1:
        sizes = [rng.choice(SIZES)]
    else:
        top = rng.choice(("medium", "large"))
        smaller = [s for s in SIZES if SIZES.index(s) < SIZES.index(top)]
        sizes = [top] + [rng.choice(smaller) for _ in range(n_objects - 1)]
    objects = []
    for cell, size in zip(cells, sizes):
        # No two objects share colour and shape, so "the red circle" always names one object.
        while True:
            shape, color = rng.choice(SHAPES), rng.choice(palette)
            if all((o.shape, o.color) != (shape, color) for o in objects):
                break
        objects.append(Obj(
            shape=shape,
            color=color,
            size=size,
            position=cell,
            dx=round(rng.uniform(-0.035, 0.035), 4),
            dy=round(rng.uniform(-0.035, 0.035), 4),
            shade=rng.randint(-18, 18),
        ))
    return Scene(background=background, objects=tuple(objects), bg_shade=rng.randint(-15, 15))


def make_scenes(n: int, seed: int) -> list[Scene]:
    """Deterministic list of ``n`` scenes.

    Args:
        n: number of scenes.
        seed: the same seed always gives the same scenes, on any machine.

    Returns:
        ``n`` :class:`Scene` objects.

    Examples:
        >>> make_scenes(2, seed=0) == make_scenes(2, seed=0)
        True
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"toyworld-scenes-{seed}")
    return [random_scene(rng) for _ in range(n)]


def attributes(scene: Scene) -> dict[str, str]:
    """The background and the salient object's facts (keys of :data:`ATTRIBUTES`)."""
    p = scene.primary
    return {
        "background": scene.background,
        "color": p.color,
        "shape": p.shape,
        "size": p.size,
        "position": p.position,
        "count": COUNTS[len(scene.objects) - 1],
    }


def scene_table(scenes: list[Scene]) -> dict[str, np.ndarray]:
    """Integer codes of every fact, for vectorised matching (-1 where a scene has no such object).

    Returns:
        ``background`` and ``count`` of shape (N,); ``color``, ``shape``, ``size``, ``position``
        of shape (N, MAX_OBJECTS).
    """
    n = len(scenes)
    table = {
        "background": np.array([COLORS.index(s.background) for s in scenes], dtype=np.int8).reshape(n),
        "count": np.array([len(s.objects) for s in scenes], dtype=np.int8).reshape(n),
    }
    vocab = {"color": COLORS, "shape": SHAPES, "size": SIZES, "position": POSITIONS}
    for attr, names in vocab.items():
        arr = np.full((n, MAX_OBJECTS), -1, dtype=np.int8)
        for i, s in enumerate(scenes):
            for j, o in enumerate(s.objects):
                arr[i, j] = names.index(getattr(o, attr))
        table[attr] = arr
    return table
