"""Cache keys: the one home of every function that names what produced a cached artefact.

A store key (:meth:`dar_lib.store.ArtefactStore.key`) is :func:`hash_parts` of everything that
determines an entry: the models by the *content* of their weights where they are local
(:func:`weights_digest`, never a file or folder name), the settings, the data by its content
(:func:`file_stamp` of each corpus image, the resolved image root) and the code
(:func:`code_fingerprint`). A retrain into the same folder, images replaced under the same names,
another image root or another file under the same name therefore reach new keys and are
recomputed, never replayed.

One invalidation policy: an artefact's key holds :func:`code_version` of its kind, the
:func:`code_fingerprint` of the modules whose code produced it, declared once in :data:`PRODUCERS`.
Nothing is bumped by hand: an edit to one of those modules makes every older entry of that kind
unreachable, and nothing else does. Every store key of the library is made by a function of this
module (:func:`image_key`, :func:`image_emb_key`, :func:`text_emb_key`, :func:`corpus_chunk_key`, :func:`llm_key`,
:func:`table_key`, :func:`toy_world_key`, :func:`rehearsal_key`, :func:`chapter_stamp`), so a
local run, a shard and a Ray worker compute the same key for the same artefact.

Examples:
    >>> hash_parts(kind="llm", model="toy:rules") == hash_parts(model="toy:rules", kind="llm")
    True
    >>> code_version("images") == code_fingerprint(*PRODUCERS["images"])
    True
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any, Iterable, Sequence

from dar_lib.errors import DataError


def hash_parts(**parts: Any) -> str:
    """sha256 (64 hex digits) of the canonical JSON of ``parts`` (sorted keys, no whitespace)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


#: The modules whose code produces each kind of artefact: the one declaration of what invalidates it.
#: A kind's keys hold :func:`code_fingerprint` of its modules (:func:`code_version`), so editing any
#: of them recomputes that kind and only that kind. A package name counts all its ``.py`` files.
#: Name a module here when its code changes the artefact's content (a sampler, a parser, a
#: template), not when it only moves it (the store, the settings, error messages).
_ENCODING = ("dar_lib.benchmarks.images", "dar_lib.models.encoders", "dar_lib.models.beit3",
             "dar_lib.models.blip_import")  # image loading, preprocessing, encoders and their importers
_GENERATION = ("dar_lib.models.generators", "dar_lib.toymodels.diffusion")  # pipelines, toy sampler
PRODUCERS: dict[str, tuple[str, ...]] = {
    # Generated images: the generator adapters and the toy world's sampler.
    "images": _GENERATION,
    # Corpus embedding chunks: the corpus stage (chunks, checks, dtype) and the encoders.
    "corpus_emb": ("dar_lib.corpus", *_ENCODING),
    # Embeddings of generated images: the encoders, the images they read and the batching runner.
    "image_emb": ("dar_lib.evaluate", *_ENCODING, *_GENERATION),
    # Embeddings of query texts (raw dialogues and R1 queries): the encoders, the pipeline stage that calls them
    # and the batching runner.
    "text_emb": ("dar_lib.evaluate", "dar_lib.pipeline", *_ENCODING),
    # LLM outputs (R1 queries, R2 prompts): the prompt templates and the reply parsing and protocol.
    "llm": ("dar_lib.models.prompts", "dar_lib.models.reformulate.chat_protocol",
            "dar_lib.models.reformulate.reply_parsing"),
    # The toy world's rule-based R1/R2 (its outputs are cached like an LLM's).
    "toy_rules": ("dar_lib.benchmarks.toyworld.reformulate", "dar_lib.benchmarks.toyworld.facts",
                  "dar_lib.benchmarks.toyworld.text", "dar_lib.benchmarks.toyworld.scenes"),
    # The toy world's files (scenes, their texts, simulated dialogues) and hence its corpus.
    "toyworld": ("dar_lib.benchmarks.toyworld.build", "dar_lib.benchmarks.toyworld.dialogues",
                 "dar_lib.benchmarks.toyworld.scenes", "dar_lib.benchmarks.toyworld.render",
                 "dar_lib.benchmarks.toyworld.text", "dar_lib.benchmarks.toyworld.facts",
                 "dar_lib.benchmarks.dialogue"),
    # A toy model training run (dar train-toy's run id: a checkpoint of other training code is never resumed).
    "toy_training": ("dar_lib.toymodels",),
    # The paper rehearsal's stand-in models and corpus.
    "rehearsal": ("dar_lib.rehearsal", "dar_lib.testing"),
    # Finished result tables: everything in the library can change a rank.
    "table": ("dar_lib",),
}


def code_version(artefact: str) -> str:
    """The code part of every key of ``artefact``: :func:`code_fingerprint` of its :data:`PRODUCERS`.

    Args:
        artefact: a kind of :data:`PRODUCERS` (``"images"``, ``"corpus_emb"``, ``"llm"``, ...).

    Returns:
        16 hex digits; the same in every process on the same source files.

    Raises:
        KeyError: an artefact kind :data:`PRODUCERS` does not declare.
    """
    if artefact not in PRODUCERS:
        raise KeyError(f"code_version: no artefact kind {artefact!r}; PRODUCERS declares {', '.join(PRODUCERS)}")
    return code_fingerprint(*PRODUCERS[artefact])


def image_key(generator: str, prompt: str, seed: int, steps, guidance, size) -> str:
    """The store key of one generated image (kind ``"images"``).

    Args:
        generator: the generator's ``fingerprint()`` (model, revision, pipeline, dtype, scheduler).
        prompt: the text prompt.
        seed: the image's seed.
        steps, guidance, size: the settings the generator resolved them to (never ``None`` for a default).
    """
    return hash_parts(kind="images", generator=generator, prompt=prompt, seed=int(seed), steps=steps,
                      guidance=guidance, size=size, code=code_version("images"))


def image_emb_key(encoder: str, generator: str, pairs: Sequence[tuple[str, int]], settings: Sequence) -> str:
    """The store key of one fixed batch of generated-image embeddings (kind ``"image_emb"``).

    Args:
        encoder: the encoder's image fingerprint (:func:`dar_lib.models.base.image_fingerprint`).
        generator: the generator's ``fingerprint()``.
        pairs: the batch's (prompt, seed) pairs, in order.
        settings: the resolved (steps, guidance, size) of the images.
    """
    return hash_parts(kind="image_emb", encoder=encoder, generator=generator, pairs=[list(p) for p in pairs],
                      settings=list(settings), code=code_version("image_emb"))


def text_emb_key(encoder: str, texts: Sequence[str]) -> str:
    """The store key of one fixed batch of query-text embeddings (kind ``"text_emb"``).

    Args:
        encoder: the encoder's text fingerprint (:func:`dar_lib.models.base.text_fingerprint`: its settings and
            the content of its weights).
        texts: the batch's texts, in order (a text is embedded in the batch it was padded with).
    """
    return hash_parts(kind="text_emb", encoder=encoder, texts=list(texts), code=code_version("text_emb"))


def corpus_chunk_key(encoder: str, corpus: str, start: int, stop: int) -> str:
    """The store key of corpus ids ``start..stop-1`` embedded by one encoder (kind ``"corpus_emb"``).

    Args:
        encoder: the encoder's image fingerprint.
        corpus: the benchmark's corpus fingerprint (``Benchmark.fingerprint``).
        start, stop: the chunk's corpus id range.
    """
    return hash_parts(kind="corpus_emb", encoder=encoder, corpus=corpus, start=int(start), stop=int(stop),
                      code=code_version("corpus_emb"))


def llm_key(model: str, **parts: Any) -> str:
    """The store key of one R1 or R2 output (kind ``"llm"``): the reformulator's fingerprint and its input.

    Args:
        model: the reformulator's ``fingerprint()`` (id, revision, sampling settings).
        parts: the input (``turns`` and ``ref`` for R1, ``query`` and ``k`` for R2, and the stage).
    """
    return hash_parts(kind="llm", model=model, code=code_version("llm"), **parts)


def table_key(config: str, models: Any, data: str) -> str:
    """The store key of a finished rank table (kind ``"table"``).

    Args:
        config: the evaluation config's ``repr``.
        models: the content of every local model it names (weights digests).
        data: the benchmark's fingerprint.
    """
    return hash_parts(kind="table", config=config, models=models, data=data, code=code_version("table"))


def toy_world_key(n_corpus: int, n_dialogues: int, seed: int) -> str:
    """Names one build of the toy world (its folder and its corpus fingerprint): parameters and code.

    Args:
        n_corpus: corpus size.
        n_dialogues: dialogues per style.
        seed: master seed.
    """
    return hash_parts(kind="toyworld", n_corpus=int(n_corpus), n_dialogues=int(n_dialogues), seed=int(seed),
                      code=code_version("toyworld"))


def corpus_key(paths: Sequence[str], image_root: str | os.PathLike, stamps: Sequence | None = None) -> str:
    """Names a corpus of image files (a benchmark's ``fingerprint``, which keys its cached embeddings).

    Args:
        paths: the corpus list as given (relative to ``image_root``).
        image_root: the folder they are read from; resolved, so another root recomputes.
        stamps: per file :func:`file_stamp` (size, mtime, inode) for a researcher's own corpus, whose
            files may change; ``None`` for the pinned public sets.
    """
    parts: dict[str, Any] = {"corpus": list(paths), "image_root": str(Path(image_root).expanduser().resolve())}
    if stamps is not None:
        parts["stamps"] = stamps
    return hash_parts(**parts)


def training_run_key(**parts: Any) -> str:
    """Names one training run of a toy stage (16 hex digits): its recipe, training data, code and base
    weights, as :func:`dar_lib.toymodels.train.run_id` gathers them (JSON values)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def module_weights_digest(modules: Sequence[tuple[str, Any]]) -> str:
    """sha256 (16 hex digits) of every tensor of the named ``torch.nn.Module`` s as loaded: name, dtype,
    shape and bytes of each parameter and buffer (a 0-d buffer too), in sorted order."""
    import torch

    h = hashlib.sha256()
    for name, module in modules:
        for key, t in sorted(module.state_dict().items()):
            h.update(f"{name}.{key}:{t.dtype}:{tuple(t.shape)}".encode())
            # reshape: a 0-d buffer (batch norm's num_batches_tracked) has no byte view of its own
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def tokenizer_digest(tokenizer) -> str:
    """sha256 (16 hex digits) of what decides a tokenizer's ids: a transformers fast tokenizer's whole spec
    (vocabulary, normaliser, pre-tokeniser, post-processor), a sentencepiece model's bytes, else the vocabulary;
    and its class and scalar settings (``do_lower_case``, ``model_max_length``; file paths left out)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    sp = getattr(tokenizer, "sp", None) or getattr(tokenizer, "sp_model", None)
    scalars = {k: v for k, v in sorted(getattr(tokenizer, "init_kwargs", {}).items())
               if isinstance(v, (bool, int, float, str)) and not (k.endswith("_file") or k == "name_or_path")}
    return hash_parts(kind=type(tokenizer).__qualname__, settings=scalars,
                      spec=backend.to_str() if backend is not None else None,
                      sentencepiece=sp.serialized_model_proto().hex() if sp is not None else None,
                      vocab=sorted(tokenizer.get_vocab().items()) if backend is None and sp is None
                      and hasattr(tokenizer, "get_vocab") else None)[:16]


def files_digest(paths: Iterable[str | os.PathLike]) -> str:
    """sha256 (64 hex digits) of the files' bytes, concatenated in the order given (the status page's
    stamp over the other chapters' records)."""
    return hashlib.sha256(b"".join(Path(p).read_bytes() for p in paths)).hexdigest()


def rehearsal_key() -> str:
    """Names one build of the paper rehearsal's stand-ins (16 hex digits, part of their folder's name)."""
    return hash_parts(kind="rehearsal", code=code_version("rehearsal"))[:16]


def library_fingerprint(lib_dir: str | os.PathLike | None = None) -> str:
    """sha256 (64 hex digits) of a library tree, code and shipped files (relative paths and bytes;
    bytecode left out): part of every book chapter's stamp, so any change to ``dar_lib`` re-runs them.

    Args:
        lib_dir: the tree (default: the installed ``dar_lib``).
    """
    root = Path(lib_dir) if lib_dir is not None else Path(__file__).resolve().parent
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.relative_to(root).parts
             and p.suffix not in (".pyc", ".pyo")]
    return _hash_files(hashlib.sha256(), root, files, "").hexdigest()


def chapter_stamp(source: str | os.PathLike, parameters: dict, lib_fingerprint: str, extra: str = "",
                  outputs: Sequence[str] = ()) -> str:
    """The stamp (64 hex digits) that must match for a book chapter to be skipped.

    Besides the notebook's bytes, its parameters and the library (:func:`library_fingerprint`), it
    holds a stamp of every local file or folder the parameters name (:func:`named_paths`: model
    folders, dialogue and corpus files, the image root), so weights retrained into the same folder or
    replaced images re-run the chapter instead of keeping its old output.

    Args:
        source: the chapter's notebook.
        parameters: its parameters.
        lib_fingerprint: :func:`library_fingerprint` of the library it runs on.
        extra: anything else that must re-run it (the status page: the other chapters' records).
        outputs: parameters naming where the chapter writes; their files are no input.
    """
    notebook = _hash_files(hashlib.sha256(), Path(source).parent, [Path(source)], "").hexdigest()
    files = {str(p): tree_stamp(p) for p in named_paths({k: v for k, v in parameters.items() if k not in outputs})}
    return hash_parts(kind="chapter", notebook=notebook, parameters=parameters, files=files, lib=lib_fingerprint,
                      extra=extra)


def _hash_files(h, base: Path, files: Sequence[Path], label: str):
    """Feed each file's label-prefixed relative path and bytes into ``h``: the one way sources are hashed."""
    for f in files:
        h.update(f"{label}{f.relative_to(base).as_posix()}\0".encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h


@functools.lru_cache(maxsize=None)
def code_fingerprint(*modules: str) -> str:
    """sha256 (first 16 hex digits) of the source of ``modules`` (a package counts all its ``.py`` files).

    Part of the store key of every derived artefact (result tables, corpus embeddings, parsed LLM
    output), so a fix to the code that produced an entry makes the old entry unreachable instead of
    silently reused. Found without importing the modules; cached per process.

    Args:
        modules: dotted names, e.g. ``"dar_lib.corpus"`` or ``"dar_lib"`` (the whole library).

    Raises:
        ModuleNotFoundError: a name that does not exist.
    """
    import importlib.util

    h = hashlib.sha256()
    for name in sorted(set(modules)):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"code_fingerprint: no module {name!r}")
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        _hash_files(h, origin.parent, [f for f in files if "__pycache__" not in f.parts], f"{name}:")
    return h.hexdigest()[:16]


def file_stamp(path: str | os.PathLike, where: str | None = None) -> tuple[int, int, int]:
    """A cheap content stamp of a regular file: ``(size in bytes, mtime_ns, inode)``.

    Rewriting or replacing a file changes its stamp, so a key holding it names the file's content
    without reading it; read the file through :func:`check_stamp` to verify it did not change after
    the key was made. Checked with ``os.stat`` before anything opens the file, so a FIFO or a
    device never blocks a reader.

    Args:
        path: the file (symlinks are followed).
        where: what to name in errors (default: the path), e.g. ``"corpus.json: record 3: 'x.png'"``.

    Raises:
        DataError: the file is missing or is not a regular file (FIFO, socket, device, folder).
    """
    where = where or str(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"{where}: file not found") from None
    except OSError as exc:
        raise DataError(f"{where}: cannot stat: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{where}: not a regular file ({_file_kind(st.st_mode)}); only image files can be read")
    return st.st_size, st.st_mtime_ns, st.st_ino


def check_stamp(path: str | os.PathLike, expected: Sequence[int], fh=None, where: str | None = None) -> None:
    """Refuse a file whose stamp is no longer ``expected`` (it changed after its key was made).

    Args:
        path: the file.
        expected: its :func:`file_stamp` when the key was made.
        fh: an open handle of it (its ``fstat`` is checked, so the bytes read are the stamped ones).
        where: what to name in errors (default: the path).

    Raises:
        DataError: the file changed (or is no longer a regular file); the message says to run again.
    """
    where = where or str(path)
    st = os.fstat(fh.fileno()) if fh is not None else None
    now = (st.st_size, st.st_mtime_ns, st.st_ino) if st is not None and stat.S_ISREG(st.st_mode) \
        else file_stamp(path, where)
    if tuple(now) != tuple(expected):
        raise DataError(f"{where}: the file changed while this run was using it (size, mtime or inode "
                        f"{tuple(expected)} -> {tuple(now)}); run again to key the new content")


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a plain file"


def _weight_files(path: Path) -> list[Path]:
    """The regular files a model folder holds (hidden files and folders, e.g. ``.checkpoints``, left out)."""
    if path.is_file():
        return [path]
    out = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        out.append(p)
    return out


@functools.lru_cache(maxsize=256)
def _digest(path: str, signature: tuple) -> str:
    root = Path(path)
    h = hashlib.sha256()
    for f in _weight_files(root):
        h.update((f.relative_to(root).as_posix() if root.is_dir() else "").encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:12]


def weights_digest(path: str | os.PathLike) -> str:
    """sha256 (first 12 hex digits) of a local model: a file's bytes, or every file of a folder
    (relative paths and bytes: weights, configs, tokenizer, scheduler; hidden entries left out).

    It names a local model in fingerprints and keys, so retrained weights in the same folder, a
    changed ``sd:<folder>`` or another GGUF file of the same name never reuse what was cached for
    the old content. Hashed once per process for each state of the files (size, mtime, inode).

    Args:
        path: a model folder or file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise FileNotFoundError(f"weights_digest: no model file or folder at {p}")
    signature = tuple((f.as_posix(), *_stat_sig(f)) for f in _weight_files(p))
    return _digest(str(p), signature)


def _stat_sig(f: Path) -> tuple[int, int, int]:
    st = f.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def local_revision(path_or_id: str | os.PathLike) -> str | None:
    """``"weights-<digest>"`` when ``path_or_id`` is a local model folder or file, else ``None`` (a hub id).

    The revision that fingerprints carry for a local model (a hub model is named by its id and revision).
    """
    p = Path(str(path_or_id)).expanduser()
    return f"weights-{weights_digest(p)}" if p.exists() else None


def tree_stamp(path: str | os.PathLike) -> str:
    """sha256 (first 16 hex digits) of the :func:`file_stamp`-style stamp of a file, or of every
    non-hidden file of a folder (relative path, size, mtime_ns, inode): changes when anything in it
    is rewritten, without reading the bytes (an image root of 50k files costs 50k ``stat`` calls).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise FileNotFoundError(f"tree_stamp: nothing at {p}")
    h = hashlib.sha256()
    for f in _weight_files(p):
        h.update(f"{f.relative_to(p).as_posix() if p.is_dir() else ''}\0{_stat_sig(f)}\0".encode())
    return h.hexdigest()[:16]


def named_paths(value: Any) -> list[Path]:
    """The existing local files and folders that a parameter value names, found in every string of it
    (lists and mappings are searched): a path itself, or the model part of an id such as
    ``toy:<folder>``, ``sd:<folder>``, ``gguf:<file>`` or ``beit3:<ckpt>+<spm>`` (``@revision`` and
    ``?options`` dropped). Hub ids and URLs name none.
    """
    found: dict[str, Path] = {}

    def add(text: str) -> None:
        if not text or "://" in text or len(text) > 4096:
            return
        try:
            p = Path(text).expanduser()
            if p.exists():
                found.setdefault(str(p.resolve()), p.resolve())
        except (OSError, ValueError):
            pass

    def visit(v) -> None:
        if isinstance(v, str):
            model = v.partition(":")[2]
            for cand in (v, model, *model.split("+")):
                for c in (cand, cand.split("?")[0], cand.rpartition("@")[0]):
                    add(c)
        elif isinstance(v, dict):
            for x in v.values():
                visit(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                visit(x)

    visit(value)
    return [found[k] for k in sorted(found)]


def file_tag(path: str) -> str:
    """Size + sha256 of the first MiB: names a checkpoint file in ids without hashing GBs
    (a model's cache keys name its whole content through :func:`weights_digest`)."""
    p = Path(path)
    with p.open("rb") as fh:
        head = hashlib.sha256(fh.read(1 << 20)).hexdigest()[:12]
    return f"{p.stat().st_size}-{head}"
