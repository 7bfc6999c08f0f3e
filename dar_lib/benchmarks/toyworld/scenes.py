"""Toy scenes: a background colour and one to three flat objects on a 3x3 grid, drawn from a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

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
#: How often a scene has 1, 2 or 3 objects (world v2: more multi-object scenes, so dialogues have more to tell).
N_OBJECTS_WEIGHTS = (0.2, 0.4, 0.4)
#: Sizes of the families of look-alike scenes the corpus is drawn in (see :func:`family`), drawn uniformly.
FAMILY_SIZES = (1, 2, 4, 8, 16, 32)

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
        """The salient object (``objects[0]``, the largest, the one the first caption names)."""
        return self.objects[0]

    def to_json(self) -> dict:
        """A JSON-ready dict: ``background``, ``bg_shade`` and ``objects`` (each with every :class:`Obj` field).

        :meth:`from_json` reads it back to an equal scene.
        """
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
        """The scene of a :meth:`to_json` record (``bg_shade`` defaults to 0; values are not validated).

        Raises:
            KeyError: ``background`` or ``objects`` is missing.
            TypeError: an object record has a missing or unknown field.
        """
        objs = tuple(Obj(**o) for o in rec["objects"])
        return cls(background=rec["background"], objects=objs, bg_shade=int(rec.get("bg_shade", 0)))


def _draw_objects(rng: random.Random, background: str, n_objects: int, given: Sequence[Obj] = ()) -> tuple[Obj, ...]:
    """``n_objects`` objects on ``background`` in distinct cells and looks.

    ``given`` fixes the first objects' looks (a family's shared salient object, and maybe the second
    object's colour and shape); their cells are kept for the salient object and redrawn for the rest.
    """
    palette = [c for c in COLORS if c != background]
    if not given:
        top = rng.choice(SIZES) if n_objects == 1 else rng.choice(("medium", "large"))
    else:
        top = given[0].size
    objects = [given[0]] if given else []
    cells = rng.sample([p for p in POSITIONS if not given or p != given[0].position], n_objects - len(objects))
    smaller = [s for s in SIZES if SIZES.index(s) < SIZES.index(top)]
    for i, cell in enumerate(cells):
        size = top if (not given and i == 0) else rng.choice(smaller)
        look = given[len(objects)] if len(objects) < len(given) else None
        # No two objects share colour and shape, so "the red circle" always names one object.
        while True:
            shape, color = (look.shape, look.color) if look else (rng.choice(SHAPES), rng.choice(palette))
            if all((o.shape, o.color) != (shape, color) for o in objects):
                break
        objects.append(Obj(shape=shape, color=color, size=size, position=cell, dx=round(rng.uniform(-0.035, 0.035), 4),
                           dy=round(rng.uniform(-0.035, 0.035), 4), shade=rng.randint(-18, 18)))
    return tuple(objects)


def random_scene(rng: random.Random) -> Scene:
    """Draw one scene from ``rng`` (1-3 objects, salient object strictly largest, distinct cells and looks)."""
    background = rng.choice(COLORS)
    n_objects = rng.choices((1, 2, 3), weights=N_OBJECTS_WEIGHTS)[0]
    return Scene(background=background, objects=_draw_objects(rng, background, n_objects),
                 bg_shade=rng.randint(-15, 15))


def family(rng: random.Random, size: int) -> list[Scene]:
    """``size`` scenes that share the background and the salient object and differ in everything else.

    A scene whose salient object is small has no look-alikes: the family is then that one scene,
    whatever ``size`` is.

    Real corpora hold many images a caption cannot tell apart ("a man riding a horse on a beach");
    families are the toy world's version: the caption and the first answers narrow the search to a
    family, and only the details of the other objects, asked for later, find the target in it.
    """
    first = random_scene(rng)
    out = [first]
    p = first.primary
    if p.size == "small":
        return out  # a small salient object stands alone: its look-alikes would share every fact
    for _ in range(size - 1):
        n_objects = rng.choices((1, 2, 3), weights=N_OBJECTS_WEIGHTS)[0]
        primary = Obj(p.shape, p.color, p.size, p.position, dx=round(rng.uniform(-0.035, 0.035), 4),
                      dy=round(rng.uniform(-0.035, 0.035), 4), shade=rng.randint(-18, 18))
        # Most look-alikes also share the second object's look: telling them apart then takes its
        # size and position, or the third object.
        given = [primary] + ([first.objects[1]] if len(first.objects) > 1 and n_objects > 1 and rng.random() < 0.7
                             else [])
        out.append(Scene(background=first.background, objects=_draw_objects(rng, first.background, n_objects, given),
                         bg_shade=rng.randint(-15, 15)))
    return out


def make_scenes(n: int, seed: int, family_sizes: Sequence[int] = FAMILY_SIZES) -> list[Scene]:
    """Deterministic list of ``n`` scenes, drawn family by family (:func:`family`) and shuffled.

    Args:
        n: number of scenes.
        seed: the same seed always gives the same scenes, on any machine.
        family_sizes: the family sizes drawn from, uniformly (``(1,)``: independent scenes).

    Returns:
        ``n`` :class:`Scene` objects.

    Examples:
        >>> make_scenes(2, seed=0) == make_scenes(2, seed=0)
        True
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"toyworld-scenes-{seed}")
    scenes: list[Scene] = []
    while len(scenes) < n:
        scenes.extend(family(rng, rng.choice(tuple(family_sizes))))
    scenes = scenes[:n]
    rng.shuffle(scenes)
    return scenes


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
