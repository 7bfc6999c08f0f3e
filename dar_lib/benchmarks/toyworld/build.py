"""Write the toy benchmark to disk in ChatIR's format (corpus list, one dialogue file per style) and load it."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dar_lib import settings
from dar_lib.atomic import atomic_write_bytes
from dar_lib.benchmarks.dialogue import Dialogue, parse_corpus, parse_dialogues, read_json
from dar_lib.benchmarks.toyworld.dialogues import STYLES, dialogue_rng, make_dialogues
from dar_lib.benchmarks.toyworld.render import render_batch
from dar_lib.benchmarks.toyworld.scenes import Scene, make_scenes
from dar_lib.cachekeys import toy_world_key
from dar_lib.errors import DataError

CORPUS_FILE = "Search_Space.json"
SCENES_FILE = "scenes.json"


def corpus_path(corpus_id: int) -> str:
    """The corpus path of a toy image, ``"toy/<corpus_id, 8 digits zero-padded>.png"`` (no file is written)."""
    return f"toy/{corpus_id:08d}.png"


def build_root(n_corpus: int, n_dialogues: int, seed: int) -> Path:
    """The default folder of a build: ``settings.cache_dir()/"toyworld"/<16 hex digits>``.

    The name is :func:`dar_lib.cachekeys.toy_world_key` of the parameters and of the world's code
    (scenes, texts, dialogues, rendering), so a changed world never reuses an old build, nor anything
    keyed by its corpus fingerprint. The folder itself is not created.

    Args:
        n_corpus: corpus size.
        n_dialogues: dialogues per style.
        seed: master seed.

    Returns:
        The folder path.
    """
    return settings.cache_dir() / "toyworld" / toy_world_key(n_corpus, n_dialogues, seed)[:16]


def target_ids(n_corpus: int, n_dialogues: int, seed: int) -> list[int]:
    """Corpus ids of the dialogue targets: a seeded sample of the corpus, in dialogue order."""
    if n_dialogues > n_corpus:
        raise ValueError(f"n_dialogues ({n_dialogues}) must not exceed n_corpus ({n_corpus})")
    return random.Random(f"toyworld-targets-{seed}").sample(range(n_corpus), n_dialogues)


@dataclass
class ToyBenchmark:
    """A built toy benchmark: corpus paths and scenes, and ChatIR-format dialogue files per style.

    Attributes:
        root: the folder holding ``Search_Space.json``, ``scenes.json`` and ``{style}.json``.
        corpus_paths: corpus list; index = corpus id.
        scenes: one scene per corpus id.
    """

    root: Path
    corpus_paths: list[str]
    scenes: list[Scene]
    seed: int = 0

    def corpus_images(self, size: int = 32) -> np.ndarray:
        """All corpus images, rendered on demand: uint8 (N, size, size, 3)."""
        return render_batch(self.scenes, size)

    def dialogues(self, style: str) -> list[Dialogue]:
        """The style's dialogues, read through ChatIR's loader path."""
        if style not in STYLES:
            raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
        path = self.root / f"{style}.json"
        index = {p: i for i, p in enumerate(self.corpus_paths)}
        return parse_dialogues(read_json(path), index, path)


def build(n_corpus: int = 10_000, n_dialogues: int = 500, seed: int = 0,
          root: str | Path | None = None) -> ToyBenchmark:
    """Generate (or load, if already built) the toy benchmark.

    Args:
        n_corpus: corpus size (targets included).
        n_dialogues: dialogues per style (the same targets, in the same order, for every style).
        seed: master seed; the same parameters always give byte-identical files.
        root: output folder; default ``settings.cache_dir()/"toyworld"/<hash of the parameters>``.

    Returns:
        The :class:`ToyBenchmark`.

    Examples:
        >>> bench = build(n_corpus=500, n_dialogues=20)
        >>> len(bench.dialogues("flan"))
        20
    """
    root = Path(root) if root is not None else build_root(n_corpus, n_dialogues, seed)
    done = root / "DONE"
    params = {"world": toy_world_key(n_corpus, n_dialogues, seed), "n_corpus": n_corpus, "n_dialogues": n_dialogues,
              "seed": seed}
    if done.is_file() and json.loads(done.read_text()) == params:
        return _load_root(root, seed)
    scenes = make_scenes(n_corpus, seed)
    paths = [corpus_path(i) for i in range(n_corpus)]
    per_style: dict[str, list] = {s: [] for s in STYLES}
    ids = target_ids(n_corpus, n_dialogues, seed)
    for dialog_idx, cid in enumerate(tqdm(ids, desc="toy dialogues", disable=len(ids) < 2000)):
        dialogs = make_dialogues(scenes[cid], dialogue_rng(seed, dialog_idx))
        for style in STYLES:
            per_style[style].append({"img": paths[cid], "dialog": dialogs[style]})
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / CORPUS_FILE, json.dumps(paths).encode())
    atomic_write_bytes(root / SCENES_FILE, json.dumps([s.to_json() for s in scenes], separators=(",", ":")).encode())
    for style in STYLES:
        atomic_write_bytes(root / f"{style}.json", json.dumps(per_style[style], ensure_ascii=False, indent=0).encode())
    # Written last: a build killed half-way is redone, never half-used.
    atomic_write_bytes(done, json.dumps(params).encode())
    return ToyBenchmark(root=root, corpus_paths=paths, scenes=scenes, seed=seed)


def _load_root(root: Path, seed: int) -> ToyBenchmark:
    paths = parse_corpus(read_json(root / CORPUS_FILE), root / CORPUS_FILE)
    raw = read_json(root / SCENES_FILE)
    try:
        scenes = [Scene.from_json(rec) for rec in raw]
    except (KeyError, TypeError) as exc:
        raise DataError(f"{root / SCENES_FILE}: malformed scene record ({exc})") from exc
    if len(scenes) != len(paths):
        raise DataError(f"{root / SCENES_FILE}: {len(scenes)} scenes for {len(paths)} corpus paths")
    return ToyBenchmark(root=root, corpus_paths=paths, scenes=scenes, seed=seed)


def load(style: str, n_corpus: int = 10_000, n_dialogues: int = 500, seed: int = 0) -> list[Dialogue]:
    """The dialogues of one style (building the benchmark first if needed), via ChatIR's loader."""
    return build(n_corpus=n_corpus, n_dialogues=n_dialogues, seed=seed).dialogues(style)
