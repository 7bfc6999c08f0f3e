"""Benchmarks by name: ChatIR's four dialogue sets over the 50k COCO corpus, and their toy twins.

Examples:
    >>> bench = load_benchmark("toy-chatgpt", n_dialogues=5, toy_size="smoke")
    >>> len(bench.dialogues), len(bench.corpus_paths), len(bench.dialogues[0].dialog)
    (5, 500, 11)
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image

from dar_lib import settings
from dar_lib.benchmarks import chatir, images
from dar_lib.benchmarks import toyworld as tw
from dar_lib.benchmarks.dialogue import Dialogue, parse_corpus, parse_dialogues, read_json
from dar_lib.cachekeys import corpus_key, file_stamp, toy_world_key
from dar_lib.errors import DataError

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
        """RGB images of the corpus ids ``ids`` (decoded on demand; call it per batch).

        Raises:
            DataError: a missing or undecodable image file (names it).
        """
        return self.load_images(list(ids))


def check_benchmark_name(name: str) -> None:
    """Refuse a benchmark name that is neither a toy set, a ChatIR set nor a dialogue file (``*.json``).

    Raises:
        ValueError: naming the value and the choices.
    """
    if name not in TOY + CHATIR and not str(name).endswith(".json"):
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(TOY + CHATIR)}, "
                         "or give a ChatIR-format dialogue file (*.json) with corpus_file and image_root")


def load_benchmark(
    name: str,
    n_dialogues: int | None = None,
    *,
    image_root: str | os.PathLike | None = None,
    toy_size: str = "default",
    seed: int = 0,
    corpus_file: str | os.PathLike | None = None,
) -> Benchmark:
    """Load a benchmark by name, or your own data in ChatIR's format.

    Args:
        name: one of :data:`TOY` or :data:`CHATIR`, or the path of a dialogue file in ChatIR's
            format (``*.json``: a list of ``{"img": corpus path, "dialog": [caption, "question?
            answer", ...]}``; every dialogue as long as the first).
        n_dialogues: evaluate only the first N dialogues (default: all; at least 1).
        image_root: folder holding the images (ChatIR sets: the COCO folder, see ``dar fetch-data
            coco``; your own data: the folder the corpus paths are relative to).
        toy_size: ``"default"`` or ``"smoke"`` (toy sets only).
        seed: the toy world's seed.
        corpus_file: a corpus list (a JSON list of image paths relative to ``image_root``; list
            index = corpus id). Needed with a dialogue file. With a ChatIR set it restricts the
            search space to a subset of the 50k list: every path must be in that list, and the
            dialogues whose target is not in the subset are dropped before ``n_dialogues`` applies
            (a small rehearsal corpus, or only the images you could download).

    Returns:
        The :class:`Benchmark`.

    Raises:
        ValueError: an unknown name, a missing ``image_root`` or ``corpus_file``, or ``n_dialogues < 1``.
        DataError: a malformed, empty or inconsistent dialogue or corpus file (names the file and record),
            a ChatIR subset with a path outside the 50k list, or one that holds no dialogue's target.

    Examples:
        Your own data: ``load_benchmark("my_dialogues.json", image_root="photos", corpus_file="corpus.json")``.
    """
    if n_dialogues is not None and (isinstance(n_dialogues, bool) or n_dialogues < 1):
        raise ValueError(f"n_dialogues = {n_dialogues!r}: must be an integer >= 1 (or None for all)")
    if name in TOY:
        if toy_size not in TOY_SIZES:
            raise ValueError(f"unknown toy size {toy_size!r}; choose one of {', '.join(TOY_SIZES)}")
        size = TOY_SIZES[toy_size]
        world = tw.build(seed=seed, **size)
        style = name.removeprefix("toy-")
        dialogues = world.dialogues(style)
        scenes = world.scenes

        def load_images(ids):
            return [tw.render(scenes[i]) for i in ids]

        # The world's parameters and code name the corpus: a changed world never reuses embeddings.
        fp = toy_world_key(seed=seed, **size)
        bench = Benchmark(name, dialogues, list(world.corpus_paths), fp, load_images,
                          meta={"toy_size": toy_size, "seed": seed, "scenes": scenes, **size})
    elif name in CHATIR:
        if image_root is None:
            raise ValueError(f"benchmark {name!r} needs image_root: the folder holding the COCO images "
                             "(download them with `dar fetch-data coco --corpus chatir50k --image-root DIR`)")
        dialogues, paths = _chatir_set(name)
        meta = {"image_root": str(image_root)}
        if corpus_file is not None:
            paths, dialogues = _chatir_subset(name, paths, dialogues, corpus_file)
            meta["corpus_file"] = str(corpus_file)

        def load_images(ids):
            return [images.load_image(images.resolve(image_root, paths[i])) for i in ids]

        # The resolved root names which folder's images were embedded: another --image-root recomputes.
        fp = corpus_key(paths, image_root)
        bench = Benchmark(name, dialogues, paths, fp, load_images, meta=meta)
    elif str(name).endswith(".json"):
        bench = _own_data(str(name), image_root, corpus_file)
    else:
        check_benchmark_name(name)
    if n_dialogues is not None:
        bench.dialogues = bench.dialogues[:n_dialogues]
    return bench


def _chatir_set(name: str) -> tuple[list[Dialogue], list[str]]:
    """A ChatIR set and the 50k list, read and validated once per process for each cache and mirror.

    The files are pinned by sha256 and never change under a given cache folder, while parsing them
    takes seconds; every chapter loads the four sets once per encoder and method, so they are read once.
    """

    where = (str(settings.cache_dir()), str(settings.data_mirror()))
    return list(_chatir_dialogues(name, *where)), list(_chatir_corpus(*where))


@functools.lru_cache(maxsize=2)
def _chatir_corpus(cache_dir: str, mirror: str) -> tuple[str, ...]:
    return tuple(chatir.load_corpus())


@functools.lru_cache(maxsize=8)
def _chatir_dialogues(name: str, cache_dir: str, mirror: str) -> tuple[Dialogue, ...]:
    """``chatir.load(name)``, resolving targets against the cached 50k list instead of parsing it again."""

    corpus = _chatir_corpus(cache_dir, mirror) if name in chatir.DIALOGUE_SETS else None  # else: load names the sets
    return tuple(chatir.load(name, corpus=corpus))


def _chatir_subset(name: str, paths: list[str], dialogues: list[Dialogue],
                   corpus_file) -> tuple[list[str], list[Dialogue]]:
    """Restrict a ChatIR set to a subset of its 50k search space.

    Returns:
        ``(subset, dialogues)``: the subset's paths in the file's order (index = corpus id) and the
        dialogues whose target is in it, in their original order, with target ids into the subset.

    Raises:
        DataError: a malformed list (see ``parse_corpus``), a path outside the 50k list, or no
            dialogue left (each names the file).
    """

    subset = parse_corpus(read_json(Path(corpus_file)), corpus_file)
    full = set(paths)
    for i, p in enumerate(subset):
        if p not in full:
            raise DataError(f"{corpus_file}: record {i}: {p!r} is not in ChatIR's {len(paths):,}-image search space "
                            "(a corpus file given with a ChatIR set must list a subset of it)")
    index = {p: i for i, p in enumerate(subset)}
    kept = [Dialogue(target_id=index[d.image], image=d.image, dialog=d.dialog) for d in dialogues if d.image in index]
    if not kept:
        raise DataError(f"{corpus_file}: none of the {len(dialogues):,} {name} dialogues has its target among the "
                        f"{len(subset):,} images of this corpus subset; include their targets "
                        "(the 'img' of each record)")
    return subset, kept


def _own_data(path: str, image_root, corpus_file) -> Benchmark:
    """A researcher's own dialogues, corpus list and image folder, checked like the built-in sets."""

    if corpus_file is None or image_root is None:
        raise ValueError(f"benchmark {path!r} is a dialogue file: give corpus_file (a JSON list of image paths) "
                         "and image_root (the folder they are relative to)")
    if not Path(image_root).expanduser().is_dir():
        raise DataError(f"{image_root}: image root is not a folder")
    paths = parse_corpus(read_json(Path(corpus_file)), corpus_file)
    records = read_json(Path(path))
    first = records[0].get("dialog") if isinstance(records, list) and records and isinstance(records[0], dict) else None
    n_rounds = len(first) if isinstance(first, list) and first else None
    dialogues = parse_dialogues(records, {p: i for i, p in enumerate(paths)}, path, n_rounds=n_rounds)

    # Each image's content stamp (size, mtime, inode) names the corpus content, and every read checks
    # it: images replaced under the same names reach new keys and are embedded again, never replayed.
    files = [images.resolve(image_root, p) for p in paths]
    stamps = [file_stamp(f, f"{corpus_file}: record {i}: {paths[i]!r} ({f})") for i, f in enumerate(files)]
    first: dict[tuple[int, int], int] = {}
    for i, f in enumerate(files):  # a link or a hard link listing one image twice
        j = first.setdefault((os.stat(f).st_dev, stamps[i][2]), i)
        if j != i:
            raise DataError(f"{corpus_file}: record {i}: {paths[i]!r} is the same file as record {j} ({paths[j]!r}); "
                            "list each image once")

    def load_images(ids):
        return [images.load_image(files[i], stamps[i]) for i in ids]

    fp = corpus_key(paths, image_root, stamps)
    return Benchmark(path, dialogues, paths, fp, load_images, meta={"image_root": str(image_root),
                                                                  "corpus_file": str(corpus_file)})
