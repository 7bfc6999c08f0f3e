"""The dialogue record shared by the real (ChatIR) and toy benchmarks, and its JSON schema."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from dar_lib.atomic import atomic_write_bytes
from dar_lib.errors import DataError

#: Rounds per dialogue in ChatIR's sets: the caption (round 0) and 10 question/answer turns.
N_ROUNDS = 11


@dataclass(frozen=True)
class Dialogue:
    """One target image and the dialogue about it, as ChatIR stores it.

    Attributes:
        target_id: corpus id of the target image (its index in the corpus list).
        image: the target's corpus path, e.g. ``"unlabeled2017/000000185565.jpg"``.
        dialog: the raw strings: caption first, then ``"question? answer"`` turns.
    """

    target_id: int
    image: str
    dialog: tuple[str, ...]

    @property
    def caption(self) -> str:
        """The initial caption, ``dialog[0]`` (round 0)."""
        return self.dialog[0]

    @property
    def turns(self) -> list[tuple[str, str | None]]:
        """(question, answer) pairs; a turn without ``"? "`` stays whole as ``(turn, None)``."""
        out: list[tuple[str, str | None]] = []
        for turn in self.dialog[1:]:
            q, sep, a = turn.partition("? ")
            out.append((q + "?", a) if sep else (turn, None))
        return out

    @property
    def n_rounds(self) -> int:
        """Rounds including the caption, ``len(dialog)`` (11 in ChatIR's sets, see :data:`N_ROUNDS`)."""
        return len(self.dialog)

    def query_text(self, round_idx: int) -> str:
        """The query every released evaluation builds: ``", ".join(dialog[:round_idx + 1])``."""
        if not 0 <= round_idx < len(self.dialog):
            raise IndexError(f"round_idx {round_idx} outside 0..{len(self.dialog) - 1}")
        return ", ".join(self.dialog[: round_idx + 1])


def read_json(path: Path) -> Any:
    """Read a JSON file, turning decoding problems into a :class:`DataError` naming the file."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc


def parse_dialogues(
    records: Any,
    corpus_index: Mapping[str, int],
    source: str | Path,
    n_rounds: int | None = N_ROUNDS,
) -> list[Dialogue]:
    """Validate ChatIR-format records and resolve each target to its corpus id.

    Args:
        records: the decoded JSON: a list of ``{"img": str, "dialog": [str, ...]}``.
        corpus_index: corpus path -> corpus id.
        source: the file the records came from (named in errors).
        n_rounds: required dialogue length (caption + turns); ``None`` accepts any length >= 1.

    Returns:
        One :class:`Dialogue` per record, in file order.

    Raises:
        DataError: naming the file and the record for any schema violation.
    """
    if not isinstance(records, list):
        raise DataError(f"{source}: expected a JSON list of dialogue records, got {type(records).__name__}")
    if not records:
        raise DataError(f"{source}: the dialogue list is empty")
    out = []
    for i, rec in enumerate(records):
        where = f"{source}: record {i}"
        if not isinstance(rec, dict) or "img" not in rec or "dialog" not in rec:
            raise DataError(f"{where}: expected an object with keys 'img' and 'dialog'")
        img, dialog = rec["img"], rec["dialog"]
        if not isinstance(img, str) or not img:
            raise DataError(f"{where}: 'img' must be a non-empty string")
        if not isinstance(dialog, list) or not all(isinstance(t, str) for t in dialog):
            raise DataError(f"{where}: 'dialog' must be a list of strings")
        if n_rounds is not None and len(dialog) != n_rounds:
            raise DataError(f"{where}: expected {n_rounds} dialogue rounds (caption + turns), got {len(dialog)}")
        if not dialog:
            raise DataError(f"{where}: empty dialogue")
        check_text(img, f"{where}: 'img'")
        for j, turn in enumerate(dialog):
            if not turn.strip():
                raise DataError(f"{where}: round {j} is empty text")
            check_text(turn, f"{where}: round {j}")
        if img not in corpus_index:
            raise DataError(f"{where}: target image {img!r} is not in the corpus")
        out.append(Dialogue(target_id=corpus_index[img], image=img, dialog=tuple(dialog)))
    return out


def check_text(text: str, where: str) -> None:
    """Refuse a string that is not valid Unicode text (a lone UTF-16 surrogate, which JSON's ``\\ud800``
    escapes can carry): no tokenizer, prompt or file name could use it.

    Raises:
        DataError: naming ``where`` and the position of the bad character.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(f"{where}: not valid Unicode text: lone surrogate {text[exc.start]!r} at character "
                        f"{exc.start} (the JSON holds a half of a UTF-16 pair)") from None


def normalise_path(path: str) -> str:
    """A relative corpus path in one spelling: ``./x.png``, ``a//x.png`` and ``a/./x.png`` become
    ``x.png``, ``a/x.png`` and ``a/x.png`` (so a corpus cannot list one image twice under two spellings)."""
    import posixpath

    return posixpath.normpath(path)


def check_relative_path(path: str, where: str) -> None:
    """Refuse a corpus path that could leave the image root: absolute, ``..``, backslash or NUL.

    Raises:
        DataError: naming ``where`` and the path.
    """
    # String tests, not pathlib (ChatIR's 50k paths in 0.1 s instead of 1 s): a POSIX root is a leading '/', a
    # Windows drive is any character and ':' (pathlib's rule from Python 3.12; 3.10-3.11 took letters only), and
    # the parts are what lies between the '/'s.
    if "\\" in path or "\x00" in path:
        raise DataError(f"{where}: corpus path {path!r} contains a backslash or NUL; use '/'-separated relative paths")
    if path.startswith("/") or path[1:2] == ":":
        raise DataError(f"{where}: corpus path {path!r} is absolute; corpus paths are relative to the image root")
    if ".." in path.split("/"):
        raise DataError(f"{where}: corpus path {path!r} contains '..', which would escape the image root")


def parse_corpus(paths: Any, source: str | Path) -> list[str]:
    """Validate a corpus list (JSON list of unique relative image paths; index = corpus id).

    Raises:
        DataError: not a list of strings, an empty list, a duplicate (also after normalisation:
            ``x.png`` and ``./x.png``), text that is not valid Unicode, or a path that could leave the
            image root (names the file and the record).
    """
    if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
        raise DataError(f"{source}: expected a JSON list of non-empty image paths")
    if not paths:
        raise DataError(f"{source}: the corpus list is empty")
    seen: dict[str, int] = {}
    for i, p in enumerate(paths):
        check_text(p, f"{source}: record {i}")
        check_relative_path(p, f"{source}: record {i}")
        norm = normalise_path(p)
        if norm in seen:
            first = paths[seen[norm]]
            same = f", the same file as {first!r}" if first != p else ""
            raise DataError(f"{source}: record {i}: duplicate corpus path {p!r} (first at {seen[norm]}{same}); "
                            "list each image once")
        seen[norm] = i
    return list(paths)


def write_dialogues(dialogues: Sequence[Dialogue], path: Path) -> None:
    """Write dialogues in ChatIR's JSON format (``[{"img", "dialog"}]``), atomically."""

    payload = [{"img": d.image, "dialog": list(d.dialog)} for d in dialogues]
    atomic_write_bytes(Path(path), json.dumps(payload, ensure_ascii=False).encode("utf-8"))
