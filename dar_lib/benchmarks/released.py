"""The official DAR release's R1 rewrites of ChatIR's VisDial dialogues, matched to ChatIR's file.

The authors' repository (longkukuhi/Diffusion-Agumented-Retrieval @ 48498d4,
``dialogues/VisDial_v1_0_queries_val.json``) holds 2,064 records in ChatIR's format whose
``dialog[0]`` is VisDial's caption and ``dialog[1..10]`` the LLM-rewritten cumulative captions,
i.e. R1's output S_t for rounds 1-10. Its ``eval.py`` reads them by position, so the file must
list ChatIR's VisDial targets in ChatIR's order; :func:`released_table` checks that instead of
assuming it.
"""

from __future__ import annotations

import os

from dar_lib.benchmarks import chatir
from dar_lib.benchmarks.dialogue import N_ROUNDS, Dialogue, parse_dialogues, read_json
from dar_lib.errors import DataError

#: Registry key (and data-mirror path) of the released rewrites.
RELEASED_QUERIES_FILE = "dar/VisDial_v1_0_queries_val.json"
#: The ChatIR set the release rewrites.
RELEASED_SET = "visdial"


def load_released_queries(root: str | os.PathLike | None = None) -> list[Dialogue]:
    """The released rewrites as dialogues: ``dialog[round_idx]`` is the authors' query for that round.

    Args:
        root: a folder laid out like the data mirror (``dar/VisDial_v1_0_queries_val.json``, read
            as is); ``None`` uses the pinned, sha256-verified file (downloaded, or copied from
            ``DAR_DATA_MIRROR``).

    Returns:
        2,064 dialogues of 11 rounds each, in file order.

    Raises:
        DataError: the file is malformed, a record lacks a round, or a target is not in the corpus.
    """
    path = chatir._locate(RELEASED_QUERIES_FILE, root)
    corpus = chatir._corpus_for(root)
    index = {p: i for i, p in enumerate(corpus)}
    return parse_dialogues(read_json(path), index, source=path, n_rounds=N_ROUNDS)


def match_released(released: list[Dialogue], dialogues: list[Dialogue], source: str = RELEASED_QUERIES_FILE
                   ) -> dict[tuple[str, int], str]:
    """Match released rewrites to ChatIR's dialogues by target and order; the replay table.

    Record ``i`` of the release must have the target of ChatIR's dialogue ``i``, as many rounds, and
    round 0 must be that dialogue's caption (the release keeps VisDial's caption as round 0).

    Args:
        released: the rewrites (:func:`load_released_queries`).
        dialogues: ChatIR's dialogues they rewrite (``chatir.load("visdial")``).
        source: the rewrites' file, named in errors.

    Returns:
        (target image path, round_idx) -> released query: ``len(dialogues) x 11`` entries.

    Raises:
        DataError: a different number of records (wrong file), a target at another position
            (wrong order: the message says where the first mismatch is and whether the same
            targets appear elsewhere), a different number of rounds, or another caption.
    """
    if len(released) != len(dialogues):
        raise DataError(f"{source}: {len(released)} records for {len(dialogues)} ChatIR {RELEASED_SET} dialogues: "
                        "not the release of this dialogue set")
    for i, (r, d) in enumerate(zip(released, dialogues)):
        if r.image != d.image:
            same_set = sorted(x.image for x in released) == sorted(x.image for x in dialogues)
            why = ("the same targets in another order" if same_set else "targets ChatIR's set does not list here")
            raise DataError(f"{source}: record {i} is target {r.image!r} where ChatIR's {RELEASED_SET} dialogue {i} "
                            f"is {d.image!r} ({why}); the rewrites are matched by position, as the released "
                            "eval.py reads them")
        if r.n_rounds != d.n_rounds:
            raise DataError(f"{source}: record {i} ({r.image}) has {r.n_rounds} rounds, ChatIR's dialogue "
                            f"{d.n_rounds}")
        if r.caption.strip() != d.caption.strip():
            raise DataError(f"{source}: record {i} ({r.image}): round 0 {r.caption!r} is not ChatIR's caption "
                            f"{d.caption!r}")
    return {(r.image, round_idx): text for r in released for round_idx, text in enumerate(r.dialog)}


def released_table(root: str | os.PathLike | None = None) -> dict[tuple[str, int], str]:
    """(target image path, round_idx) -> the authors' released R1 query, checked against ChatIR's VisDial.

    Args:
        root: as in :func:`load_released_queries` (ChatIR's file is read from the same place).

    Returns:
        2,064 x 11 entries; round 0 is VisDial's caption.

    Raises:
        DataError: see :func:`match_released`.

    Examples:
        ``released_table()[("unlabeled2017/000000185565.jpg", 0)]`` is ``'a bedroom is filled with lots
        of posters and a busy computer desk'`` (``tests/test_released.py`` reads the files).
    """
    return match_released(load_released_queries(root), chatir.load(RELEASED_SET, root),
                          source=str(chatir._locate(RELEASED_QUERIES_FILE, root)))
