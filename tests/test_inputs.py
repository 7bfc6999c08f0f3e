"""Inputs that must be refused in one line naming the file and the record (issue 18, item 5): a corpus
listing one image twice under two spellings, a FIFO named like an image, an image beyond the pixel or
side-ratio bound, and dialogue text that is not valid Unicode (a lone UTF-16 surrogate)."""

from __future__ import annotations

import json
import os
import re
import threading

import pytest
from PIL import Image

from dar_lib.benchmarks.images import MAX_ASPECT, load_image
from dar_lib.errors import DataError
from dar_lib.testing import own_dataset


def _args(data, *extra):
    return ["--benchmark", str(data["dialogues"]), "--corpus-file", str(data["corpus"]),
            "--image-root", str(data["images"]), "--encoder", "toy:clip-zs", *extra]


def _one_line_error(dar_eval, *args) -> str:
    code, out, err = dar_eval(*args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("dar: error: "), err
    return lines[0]


def _corpus(data) -> list[str]:
    return json.loads(data["corpus"].read_text())


def test_a_corpus_listing_one_image_under_two_spellings_is_refused(tmp_path, dar_eval):
    data = own_dataset(tmp_path)
    paths = _corpus(data)
    data["corpus"].write_text(json.dumps(paths + ["./" + paths[3]]))
    line = _one_line_error(dar_eval, *_args(data, "--methods", "baseline"))
    assert re.search(r"corpus\.json: record 12: duplicate corpus path '\./set/img_03\.png' \(first at 3, the same "
                     r"file as 'set/img_03\.png'\)", line), line


def test_a_corpus_listing_one_file_through_a_link_is_refused(tmp_path, dar_eval):
    data = own_dataset(tmp_path)
    (data["images"] / "alias.png").symlink_to(data["images"] / "set" / "img_03.png")
    data["corpus"].write_text(json.dumps(_corpus(data) + ["alias.png"]))
    line = _one_line_error(dar_eval, *_args(data, "--methods", "baseline"))
    assert re.search(r"corpus\.json: record 12: 'alias\.png' is the same file as record 3", line), line


def test_a_fifo_named_like_an_image_is_refused_without_blocking(tmp_path, dar_eval):
    data = own_dataset(tmp_path)
    fifo = data["images"] / "set" / "img_05.png"
    fifo.unlink()
    os.mkfifo(fifo)
    result = {}

    def load():
        try:
            load_image(fifo)
        except DataError as exc:
            result["error"] = str(exc)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(30)  # opening a FIFO for reading would wait for a writer forever
    assert not t.is_alive(), "load_image blocked on a FIFO"
    assert re.search(r"img_05\.png: not a regular file \(a FIFO\)", result["error"])
    line = _one_line_error(dar_eval, *_args(data, "--methods", "baseline"))
    assert re.search(r"corpus\.json: record 5: 'set/img_05\.png' .*not a regular file \(a FIFO\)", line), line


def test_an_image_beyond_the_side_ratio_bound_is_a_one_line_error(tmp_path, dar_eval):
    data = own_dataset(tmp_path)
    strip = data["images"] / "set" / "img_07.png"
    Image.new("RGB", (1_000_000, 1), "white").save(strip)
    with pytest.raises(DataError, match=rf"img_07\.png: image of 1000000 x 1 px has a side ratio of 1,000,000:1, "
                                        rf"above the bound of {MAX_ASPECT}:1"):
        load_image(strip)
    line = _one_line_error(dar_eval, *_args(data, "--methods", "baseline"))
    assert "img_07.png: image of 1000000 x 1 px" in line, line


@pytest.mark.parametrize("methods", ["baseline", "reformulated"])
def test_a_lone_surrogate_in_a_dialogue_names_the_file_and_record(tmp_path, dar_eval, methods):
    data = own_dataset(tmp_path)
    records = json.loads(data["dialogues"].read_text())
    records[1]["dialog"][2] = "is there a circle? yes \ud800"
    data["dialogues"].write_text(json.dumps(records))  # ensure_ascii: the file holds the escape "\ud800"
    line = _one_line_error(dar_eval, *_args(data, "--methods", methods, "--reformulator", "identity"))
    assert re.search(r"my_dialogues\.json: record 1: round 2: not valid Unicode text: lone surrogate", line), line
