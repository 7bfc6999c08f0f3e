"""Benchmarks by name: ChatIR's four dialogue sets over the 50k COCO corpus, and their toy twins.

Examples:
    >>> bench = load_benchmark("toy-chatgpt", n_dialogues=20, toy_size="smoke")   # doctest: +SKIP
    >>> bench.dialogues[0].query_text(0), len(bench.corpus_paths)                  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

from PIL import Image

from dar_lib.benchmarks.dialogue import Dialogue
from dar_lib.store import hash_parts

#: ChatIR set names (see :mod:`dar_lib.benchmarks.chatir`).
CHATIR = ("visdial", "chatgpt_blip2", "human_blip2", "flan_blip2")
#: Toy twins, in the same order as :data:`CHATIR`.
TOY = ("toy-visdial", "toy-chatgpt", "toy-human", "toy-flan")
#: Toy world sizes: ``default`` for the book, ``smoke`` for CI (seconds).
TOY_SIZES = {"default": dict(n_corpus=10_000, n_dialogues=500), "smoke": dict(n_corpus=500, n_dialogues=20)}


@dataclass
class Benchmark:
    """Dialogues, a corpus, and a way to load corpus images.

    Attributes:
        name: e.g. ``"toy-flan"`` or ``"visdial"``.
        dialogues: the dialogues evaluated (target ids index ``corpus_paths``).
        corpus_paths: corpus image paths; index = corpus id.
        fingerprint: names the corpus content (keys cached corpus embeddings).
        load_images: corpus ids -> RGB images.
    """

    name: str
    dialogues: list[Dialogue]
    corpus_paths: list[str]
    fingerprint: str
    load_images: Callable[[Sequence[int]], list[Image.Image]] = field(repr=False)
    meta: dict = field(default_factory=dict)

    def corpus_images(self, ids: Sequence[int]) -> list[Image.Image]:
        return self.load_images(list(ids))


def load_benchmark(
    name: str,
    n_dialogues: int | None = None,
    *,
    image_root: str | os.PathLike | None = None,
    toy_size: str = "default",
    seed: int = 0,
) -> Benchmark:
    """Load a benchmark by name.

    Args:
        name: one of :data:`TOY` or :data:`CHATIR`.
        n_dialogues: evaluate only the first N dialogues (default: all).
        image_root: folder holding the COCO images (ChatIR sets only; see ``dar fetch-data coco``).
        toy_size: ``"default"`` or ``"smoke"`` (toy sets only).
        seed: the toy world's seed.
    """
    if name in TOY:
        from dar_lib.benchmarks import toyworld as tw

        if toy_size not in TOY_SIZES:
            raise ValueError(f"unknown toy size {toy_size!r}; choose one of {', '.join(TOY_SIZES)}")
        size = TOY_SIZES[toy_size]
        world = tw.build(seed=seed, **size)
        style = name.removeprefix("toy-")
        dialogues = world.dialogues(style)
        scenes = world.scenes

        def load_images(ids):
            return [tw.render(scenes[i]) for i in ids]

        fp = hash_parts(world="toy", seed=seed, version=getattr(tw, "VERSION", 1), **size)
        bench = Benchmark(name, dialogues, list(world.corpus_paths), fp, load_images,
                          meta={"toy_size": toy_size, "seed": seed, "scenes": scenes, **size})
    elif name in CHATIR:
        from dar_lib.benchmarks import chatir, images

        if image_root is None:
            raise ValueError(f"benchmark {name!r} needs image_root: the folder holding the COCO images "
                             "(download them with `dar fetch-data coco --corpus chatir50k --image-root DIR`)")
        dialogues = chatir.load(name)
        paths = chatir.load_corpus()

        def load_images(ids):
            return [images.load_image(images.resolve(image_root, paths[i])) for i in ids]

        bench = Benchmark(name, dialogues, paths, hash_parts(corpus=paths), load_images,
                          meta={"image_root": str(image_root)})
    else:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(TOY + CHATIR)}")
    if n_dialogues is not None:
        if n_dialogues < 1:
            raise ValueError("n_dialogues must be >= 1")
        bench.dialogues = bench.dialogues[:n_dialogues]
    return bench
