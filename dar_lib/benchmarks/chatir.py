"""ChatIR and PlugIR benchmark files: pinned registry, verified fetch, loaders and summaries."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from dar_lib import settings
from dar_lib.atomic import atomic_writer
from dar_lib.benchmarks.dialogue import N_ROUNDS, Dialogue, parse_corpus, parse_dialogues, read_json
from dar_lib.errors import DataError

log = logging.getLogger(__name__)

#: Where raw files of public GitHub repositories are served (tests point this at a local server).
RAW_BASE = "https://raw.githubusercontent.com"

_CHATIR = ("levymsn", "ChatIR", "c62600c90a2260c8cca44c5fb6b37bc3df53c43f")
_PLUGIR = ("Saehyung-Lee", "PlugIR", "ce79c9ff834aabc9de698efb706c6cb9427ecf35")
_DAR = ("longkukuhi", "Diffusion-Agumented-Retrieval", "48498d43d480cd78fef9e5b4e51152560153c308")


@dataclass(frozen=True)
class RemoteFile:
    """One pinned upstream file: repository, commit, path inside it and sha256 of its bytes."""

    owner: str
    repo: str
    commit: str
    path: str
    sha256: str

    @property
    def url(self) -> str:
        """The raw download URL, ``<RAW_BASE>/<owner>/<repo>/<commit>/<path>`` (read at call time)."""
        return f"{RAW_BASE}/{self.owner}/{self.repo}/{self.commit}/{self.path}"


def _pin(upstream: tuple[str, str, str], path: str, sha256: str) -> RemoteFile:
    return RemoteFile(*upstream, path=path, sha256=sha256)


#: Every small file the project downloads, keyed by its path in the data mirror / cache.
REGISTRY: dict[str, RemoteFile] = {
    "chatir/VisDial_v1.0_queries_val.json": _pin(
        _CHATIR, "dialogues/VisDial_v1.0_queries_val.json",
        "6db15734e21df441c932b84cf538ba660350e82dcb18e5d3ab8d0f99691cd210"),
    "chatir/Human_BLIP2.json": _pin(
        _CHATIR, "dialogues/Human_BLIP2.json",
        "780aa994c465e4b92a344c3da0a8945a29da3ec96e3d380a0d1585d9c33cc8ae"),
    "chatir/ChatGPT_BLIP2.json": _pin(
        _CHATIR, "dialogues/ChatGPT_BLIP2.json",
        "e3a3e3d08aadd6540264d25eca9ef6894ff9364eaa8002ff746e801c151a3cd8"),
    "chatir/FLAN_ALPACA_XXL_BLIP2.json": _pin(
        _CHATIR, "dialogues/FLAN_ALPACA_XXL_BLIP2.json",
        "aac9bcb3ecbe736885c6a846e7e1433b69795617449e44a6c8e269efd0be32b7"),
    "chatir/Search_Space_val_50k.json": _pin(
        _CHATIR, "ChatIR_Protocol/Search_Space_val_50k.json",
        "8a32638192419131513f2e5a6e5159d191de6789678fb3b1faa18e1ab46b44af"),
    "plugir/Search_Space_coco.json": _pin(
        _PLUGIR, "Protocol/Search_Space_coco.json",
        "e09793795294c05f6a496f6a3b2cd4846cdd41333c38ca277a994e3772bc8e19"),
    "plugir/coco_captions.json": _pin(
        _PLUGIR, "Protocol/coco_captions.json",
        "ba92310bc5b4a9b33eb00525c979bbd9b8bf81493363ea7080d91baa52002b6e"),
    "plugir/PlugIR_VisDial_reconstructed.json": _pin(
        _PLUGIR,
        "dialogues/ours_final_q_n_5_recall_hitting_10_thres_low_500_recon_true_referring_true"
        "_filtering_true_select_true_reconed.json",
        "4352bf4ebe14d568e2cb23cceb4d7d5464640bb5ea717de0be355d649ef2b81a"),
    # The official DAR release: round 0 VisDial's caption, rounds 1-10 the authors' R1 rewrites.
    "dar/VisDial_v1_0_queries_val.json": _pin(
        _DAR, "dialogues/VisDial_v1_0_queries_val.json",
        "831a1dbe007623b0cac550bc7a129ef01a5ff49dde0a64835bb37ae4d4899b13"),
}

#: Dialogue set name -> registry key. Same 2,064 targets in the same order in all four.
DIALOGUE_SETS: dict[str, str] = {
    "visdial": "chatir/VisDial_v1.0_queries_val.json",
    "chatgpt_blip2": "chatir/ChatGPT_BLIP2.json",
    "human_blip2": "chatir/Human_BLIP2.json",
    "flan_blip2": "chatir/FLAN_ALPACA_XXL_BLIP2.json",
}
CORPUS_FILE = "chatir/Search_Space_val_50k.json"
PLUGIR_QUERIES_FILE = "plugir/PlugIR_VisDial_reconstructed.json"
COCO5K_FILE = "plugir/Search_Space_coco.json"
COCO5K_CAPTIONS_FILE = "plugir/coco_captions.json"

_CHUNK = 1 << 20


# -- verified fetch -----------------------------------------------------------------------
def _sha256_file(path: Path) -> str:
    import pooch

    return pooch.file_hash(str(path), alg="sha256")


def _install(dest: Path, chunks: Iterable[bytes], expected: str, relpath: str, origin: str) -> None:
    """Stream ``chunks`` into a temp file beside ``dest``, check sha256, then rename into place.

    The final name only ever holds verified bytes: a failed or interrupted copy leaves nothing.
    """
    with atomic_writer(dest) as fh:
        h = hashlib.sha256()
        for block in chunks:
            h.update(block)
            fh.write(block)
        actual = h.hexdigest()
        if actual != expected:
            raise DataError(
                f"{relpath}: checksum mismatch for the copy from {origin}: "
                f"expected sha256 {expected}, got {actual}"
            )


def _read_chunks(path: Path) -> Iterable[bytes]:
    with open(path, "rb") as fh:
        yield from iter(lambda: fh.read(_CHUNK), b"")


def _download(entry: RemoteFile, dest: Path, relpath: str, timeout: float) -> None:
    """Download ``entry`` to ``dest`` with pooch, which streams into a temporary file beside it, checks the
    sha256 and only then moves it into place (a failed or wrong download leaves nothing)."""
    import pooch
    import requests

    url = entry.url
    try:
        pooch.retrieve(url, known_hash=f"sha256:{entry.sha256}", fname=dest.name, path=dest.parent,
                       downloader=pooch.HTTPDownloader(timeout=timeout, progressbar=False))
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "error"
        raise DataError(f"{relpath}: download from {url} failed: HTTP {status}") from exc
    except requests.RequestException as exc:
        raise DataError(f"{relpath}: download from {url} failed: {exc}") from exc
    except ValueError as exc:  # pooch: the downloaded file's hash is not the pinned one (the file is deleted)
        got = re.search(r"but got ([0-9a-f]{64})", str(exc))
        raise DataError(f"{relpath}: checksum mismatch for the copy from {url}: expected sha256 {entry.sha256}, "
                        f"got {got.group(1) if got else 'another hash'}") from exc


def fetch(relpath: str, timeout: float = 60.0) -> Path:
    """Return a sha256-verified local copy of a registered file.

    Order: a cached copy whose hash matches; else a copy from the data mirror
    (``DAR_DATA_MIRROR``) when one is set; else a download from the pinned upstream commit (by ``pooch``,
    which checks the sha256 before the file takes its name).
    A cached copy with the wrong hash is logged and replaced.

    Args:
        relpath: a key of :data:`REGISTRY`, e.g. ``"chatir/VisDial_v1.0_queries_val.json"``.
        timeout: seconds to wait for the upstream server (download only).

    Returns:
        ``settings.cache_dir() / "data" / relpath``.

    Raises:
        KeyError: ``relpath`` is not registered.
        DataError: the mirror lacks the file, or a copy or download fails or has the wrong sha256
            (nothing is left in the cache then).

    Examples:
        ``fetch("chatir/Search_Space_val_50k.json")`` is the local path of ChatIR's 50k corpus list.
    """
    if relpath not in REGISTRY:
        raise KeyError(f"{relpath!r} is not a registered data file; known: {', '.join(sorted(REGISTRY))}")
    entry = REGISTRY[relpath]
    dest = settings.cache_dir() / "data" / relpath
    if dest.is_file():
        actual = _sha256_file(dest)
        if actual == entry.sha256:
            return dest
        log.warning("cached %s has sha256 %s, expected %s; fetching it again", dest, actual, entry.sha256)
        dest.unlink(missing_ok=True)
    mirror = settings.data_mirror()
    if mirror is not None:
        src = mirror / relpath
        if not src.is_file():
            raise DataError(
                f"{relpath}: not found in the data mirror {mirror} (set by {settings.MIRROR_ENV}); "
                f"copy the file there or unset {settings.MIRROR_ENV} to download it"
            )
        _install(dest, _read_chunks(src), entry.sha256, relpath, origin=str(src))
    else:
        log.info("downloading %s from %s", relpath, entry.url)
        _download(entry, dest, relpath, timeout)
    return dest


def fetch_all(progress: bool = True) -> dict[str, Path]:
    """Fetch and verify every registered file; returns registry key -> local path."""
    from tqdm import tqdm

    return {key: fetch(key) for key in tqdm(sorted(REGISTRY), desc="data files", disable=not progress)}


def _locate(relpath: str, root: str | os.PathLike | None) -> Path:
    """A file from ``root`` when given (read as is, not hash-checked), else the verified copy."""
    if root is None:
        return fetch(relpath)
    return Path(root).expanduser() / relpath


# -- loaders ------------------------------------------------------------------------------
def load_corpus(root: str | os.PathLike | None = None) -> list[str]:
    """The 50k search space of ChatIR: corpus paths, list index == corpus id.

    Args:
        root: a folder laid out like the data mirror (``chatir/Search_Space_val_50k.json``);
            ``None`` uses the pinned, verified file.

    Returns:
        50,000 unique paths such as ``"unlabeled2017/000000000008.jpg"``.
    """
    path = _locate(CORPUS_FILE, root)
    return parse_corpus(read_json(path), source=path)


def _corpus_for(root: str | os.PathLike | None) -> list[str]:
    # Users loading their own dialogues may only have the dialogue file: fall back to the
    # pinned corpus when ``root`` lacks one, so target ids always mean the same 50k list.
    if root is not None and not (Path(root).expanduser() / CORPUS_FILE).is_file():
        return load_corpus(None)
    return load_corpus(root)


def _load_dialogue_file(relpath: str, root: str | os.PathLike | None,
                        corpus: Sequence[str] | None = None) -> list[Dialogue]:
    """The dialogues of ``relpath``, targets resolved against ``corpus`` (``None``: :func:`_corpus_for` ``root``)."""
    index = {p: i for i, p in enumerate(_corpus_for(root) if corpus is None else corpus)}
    path = _locate(relpath, root)
    return parse_dialogues(read_json(path), index, source=path, n_rounds=N_ROUNDS)


def load(name: str, root: str | os.PathLike | None = None, corpus: Sequence[str] | None = None) -> list[Dialogue]:
    """Load one of ChatIR's four dialogue sets.

    Args:
        name: ``"visdial"``, ``"chatgpt_blip2"``, ``"human_blip2"`` or ``"flan_blip2"``.
        root: a folder laid out like the data mirror holding the file (validated, not
            hash-checked, so your own dialogues in ChatIR format load the same way). Its
            ``chatir/Search_Space_val_50k.json`` is used when present, else the pinned one.
        corpus: the 50k list already parsed (:func:`load_corpus` of the same ``root``), so that loading
            several sets parses it once; ``None`` parses it.

    Returns:
        2,064 dialogues (for the released sets), each with 11 rounds and its target's corpus id.

    Raises:
        ValueError: unknown ``name``.
        DataError: a malformed file, naming the file and the record.

    Examples:
        ``load("visdial")[0].query_text(1)`` is ``'a bedroom is filled with lots of posters and a busy
        computer desk, is the photo in color? yes'`` (``tests/test_chatir.py`` reads the files).
    """
    if name not in DIALOGUE_SETS:
        raise ValueError(f"unknown dialogue set {name!r}; valid names: {', '.join(DIALOGUE_SETS)}")
    return _load_dialogue_file(DIALOGUE_SETS[name], root, corpus)


def load_plugir_queries(root: str | os.PathLike | None = None) -> list[Dialogue]:
    """PlugIR's per-round LLM-rewritten captions for the 2,064 VisDial targets.

    ``dialog[round_idx]`` is one self-contained caption written from the dialogue up to that
    round (round 0 is the original caption), so ``dialog[round_idx]`` itself is the query
    to replay; ``query_text`` (which joins all rounds) is not what PlugIR used.

    Args:
        root: a folder laid out like the data mirror, or ``None`` for the pinned file.

    Returns:
        2,064 dialogues of 11 rounds, same targets and order as :func:`load`.
    """
    return _load_dialogue_file(PLUGIR_QUERIES_FILE, root)


def replay_table(root: str | os.PathLike | None = None) -> dict[tuple[str, int], str]:
    """(target image path, round_idx) -> PlugIR's rewritten query, for a replay reformulator.

    Args:
        root: as in :func:`load_plugir_queries`.

    Returns:
        2,064 x 11 entries.

    Raises:
        DataError: the file lists a target twice (its table would be ambiguous).
    """
    table: dict[tuple[str, int], str] = {}
    dialogues = load_plugir_queries(root)
    for dialog_idx, d in enumerate(dialogues):
        if (d.image, 0) in table:
            raise DataError(f"{PLUGIR_QUERIES_FILE}: record {dialog_idx}: target {d.image!r} listed twice")
        for round_idx, text in enumerate(d.dialog):
            table[(d.image, round_idx)] = text
    return table


def load_coco_single_turn(root: str | os.PathLike | None = None) -> tuple[list[str], list[list[str]]]:
    """PlugIR's single-turn COCO protocol: 5k val2017 images and their captions.

    Args:
        root: a folder laid out like the data mirror, or ``None`` for the pinned files.

    Returns:
        ``(paths, captions)``: ``paths[i]`` like ``"val2017/000000000139.jpg"`` (index ==
        corpus id) and ``captions[i]`` its COCO captions (5 for most images, up to 7).

    Raises:
        DataError: malformed files or lists of different lengths.
    """
    paths_file = _locate(COCO5K_FILE, root)
    paths = parse_corpus(read_json(paths_file), source=paths_file)
    cap_file = _locate(COCO5K_CAPTIONS_FILE, root)
    records = read_json(cap_file)
    if not isinstance(records, list):
        raise DataError(f"{cap_file}: expected a JSON list of {{'caption': [...]}} records")
    if len(records) != len(paths):
        raise DataError(f"{cap_file}: {len(records)} caption records for {len(paths)} images in {paths_file}")
    captions: list[list[str]] = []
    for i, rec in enumerate(records):
        caps = rec.get("caption") if isinstance(rec, dict) else None
        if not isinstance(caps, list) or not caps or not all(isinstance(c, str) and c.strip() for c in caps):
            raise DataError(f"{cap_file}: record {i}: 'caption' must be a non-empty list of non-empty strings")
        captions.append(list(caps))
    return paths, captions


# -- summaries for the data chapter -------------------------------------------------------
_ANSWER_TOKEN = re.compile(r"\banswer\s*:", re.IGNORECASE)


def _words(text: str) -> int:
    return len(text.split())


def _summary_row(dialogues: Sequence[Dialogue]) -> dict[str, Any]:
    n_turns = no_sep = repeated = answer_tokens = dialogues_with_repeat = 0
    caption_words: list[int] = []
    turn_words: list[int] = []
    for d in dialogues:
        caption_words.append(_words(d.caption))
        seen: set[str] = set()
        had_repeat = False
        for turn, (question, answer) in zip(d.dialog[1:], d.turns):
            n_turns += 1
            turn_words.append(_words(turn))
            no_sep += answer is None
            answer_tokens += len(_ANSWER_TOKEN.findall(turn))
            key = question.strip().lower()
            if answer is not None and key in seen:
                repeated += 1
                had_repeat = True
            seen.add(key)
        dialogues_with_repeat += had_repeat
    n = len(dialogues)
    rounds = sorted({d.n_rounds for d in dialogues})
    return {
        "dialogues": n,
        "rounds": rounds[0] if len(rounds) == 1 else f"{rounds[0]}-{rounds[-1]}",
        "turns": n_turns,
        "caption_words": sum(caption_words) / max(n, 1),
        "turn_words": sum(turn_words) / max(n_turns, 1),
        "pct_turns_without_sep": 100.0 * no_sep / max(n_turns, 1),
        "repeated_questions": repeated,
        "pct_dialogues_with_repeat": 100.0 * dialogues_with_repeat / max(n, 1),
        "answer_tokens": answer_tokens,
    }


def describe(dialogues: Sequence[Dialogue] | Mapping[str, Sequence[Dialogue]]):
    """A one-row-per-set summary of dialogue sets for the data chapter.

    Columns: ``dialogues``, ``rounds`` (per dialogue), ``turns`` (question/answer turns),
    ``caption_words`` and ``turn_words`` (mean whitespace words), ``pct_turns_without_sep``
    (turns lacking the ``"? "`` question/answer separator), ``repeated_questions`` (turns
    whose question already appeared earlier in the same dialogue, case-insensitive),
    ``pct_dialogues_with_repeat`` and ``answer_tokens`` (stray ``"Answer:"`` tokens, any case).

    Args:
        dialogues: one set, or a mapping of set name -> set (one row each).

    Returns:
        A ``pandas.DataFrame`` indexed by set name (``"dialogues"`` for a single set).
    """
    import pandas as pd

    sets = dict(dialogues) if isinstance(dialogues, Mapping) else {"dialogues": dialogues}
    frame = pd.DataFrame([_summary_row(v) for v in sets.values()], index=list(sets))
    frame.index.name = "set"
    return frame


def words_per_round(dialogues: Sequence[Dialogue] | Mapping[str, Sequence[Dialogue]]):
    """Mean whitespace words of ``dialog[round_idx]`` per round: rows = round_idx, one column per set."""
    import pandas as pd

    sets = dict(dialogues) if isinstance(dialogues, Mapping) else {"dialogues": dialogues}
    columns = {}
    for name, ds in sets.items():
        n_rounds = max((d.n_rounds for d in ds), default=0)
        columns[name] = [
            sum(_words(d.dialog[r]) for d in ds if r < d.n_rounds) / max(sum(r < d.n_rounds for d in ds), 1)
            for r in range(n_rounds)
        ]
    frame = pd.DataFrame(columns)
    frame.index.name = "round_idx"
    return frame


#: ChatIR's four sets in Figure 3's order.
SETS = ("visdial", "chatgpt_blip2", "human_blip2", "flan_blip2")


def load_if_available() -> tuple[dict[str, list[Dialogue]], str | None]:
    """The four sets, or ``({}, reason)`` when neither the network nor a mirror provides them.

    The data chapter describes the real sets when it can and says why when it cannot, instead of
    failing the whole book on a machine without internet.
    """
    try:
        corpus = load_corpus()  # parsed once for the four sets
        return {name: load(name, corpus=corpus) for name in SETS}, None
    except Exception as exc:  # noqa: BLE001 - any reason (offline, no mirror) is reported, not fatal
        return {}, (f"The real ChatIR files could not be fetched, so this section shows no numbers. Set "
                    f"DAR_DATA_MIRROR to a folder laid out like shared/data, or allow network access. "
                    f"Reason: {type(exc).__name__}: {exc}")


def summary_glues(real: Mapping[str, Sequence[Dialogue]], table) -> dict[str, str]:
    """The values the data chapter quotes about the real sets (``"n/a"`` when they are not available)."""
    if not real:
        return {"real_available": "NOT available in this build", "n_real_corpus": "n/a", "n_real_dialogues": "n/a",
                "real_same_targets": "n/a", "flan_answer_tokens": "n/a", "flan_repeats": "n/a",
                "visdial_turn_words": "n/a"}
    first = next(iter(real.values()))
    same = all([d.target_id for d in ds] == [d.target_id for d in first] for ds in real.values())
    return {
        "real_available": "available",
        "n_real_corpus": f"{len(load_corpus()):,}",
        "n_real_dialogues": f"{len(first):,}",
        "real_same_targets": "yes" if same else "NO",
        "flan_answer_tokens": f"{int(table.loc['flan_blip2', 'answer_tokens']):,}",
        "flan_repeats": f"{table.loc['flan_blip2', 'pct_dialogues_with_repeat']:.1f}",
        "visdial_turn_words": f"{table.loc['visdial', 'turn_words']:.1f}",
    }
