"""The DAR authors' released R1 rewrites: pinned fetch, matching to ChatIR's VisDial, replay:dar-released."""

from __future__ import annotations

import json
import shutil

import pytest

from dar_lib.benchmarks import chatir, released
from dar_lib.errors import DataError
from dar_lib.models import load_reformulator

FIRST = "unlabeled2017/000000185565.jpg"


def test_registry_pins_the_release():
    entry = chatir.REGISTRY[released.RELEASED_QUERIES_FILE]
    assert entry.url.endswith("/longkukuhi/Diffusion-Agumented-Retrieval/48498d43d480cd78fef9e5b4e51152560153c308/"
                              "dialogues/VisDial_v1_0_queries_val.json")
    assert entry.sha256 == "831a1dbe007623b0cac550bc7a129ef01a5ff49dde0a64835bb37ae4d4899b13"


def test_released_table_and_replay(mirror):
    table = released.released_table()
    assert len(table) == 2064 * 11
    assert table[(FIRST, 0)] == "a bedroom is filled with lots of posters and a busy computer desk"
    assert table[(FIRST, 1)].startswith("a vibrant bedroom filled with colorful posters")
    ref = load_reformulator("replay:dar-released")
    assert ref.id == "replay:dar-released"
    assert ref.rewrite(["ignored"], ref=(FIRST, 10)).startswith(
        "a bedroom with a busy computer desk, filled with posters")


def _root(tmp_path, mirror, records=None):
    """A mirror-like folder holding ChatIR's real files and (a changed copy of) the release."""
    shutil.copytree(mirror / "chatir", tmp_path / "chatir")
    (tmp_path / "dar").mkdir()
    dest = tmp_path / released.RELEASED_QUERIES_FILE
    if records is None:
        shutil.copy(mirror / released.RELEASED_QUERIES_FILE, dest)
    else:
        dest.write_text(json.dumps(records))
    return tmp_path


@pytest.fixture
def records(mirror):
    return json.loads((mirror / released.RELEASED_QUERIES_FILE).read_text())


def test_right_file_matches(tmp_path, mirror):
    assert released.released_table(_root(tmp_path, mirror)) == released.released_table()


def test_wrong_order_is_refused(tmp_path, mirror, records):
    swapped = [records[1], records[0]] + records[2:]
    with pytest.raises(DataError, match=r"record 0 is target .*000000284024.* dialogue 0 is .*000000185565.*"
                                        r"the same targets in another order"):
        released.released_table(_root(tmp_path, mirror, swapped))


def test_wrong_file_is_refused(tmp_path, mirror, records):
    with pytest.raises(DataError, match=r"2063 records for 2064 ChatIR visdial dialogues"):
        released.released_table(_root(tmp_path, mirror, records[:-1]))
    other = [dict(records[0], dialog=["another caption"] + records[0]["dialog"][1:])] + records[1:]
    with pytest.raises(DataError, match=r"record 0 .*round 0 'another caption' is not ChatIR's caption"):
        released.released_table(_root(tmp_path / "b", mirror, other))


def test_missing_round_is_refused(tmp_path, mirror, records):
    short = records[:5] + [dict(records[5], dialog=records[5]["dialog"][:10])] + records[6:]
    with pytest.raises(DataError, match=r"record 5: expected 11 dialogue rounds .* got 10"):
        released.released_table(_root(tmp_path, mirror, short))


def test_the_pipeline_replays_the_released_rewrites(mirror):
    from dar_lib.benchmarks import chatir
    from dar_lib.models import load_encoder
    from dar_lib.pipeline import DARPipeline

    dialogue = chatir.load("visdial")[0]
    pipe = DARPipeline(load_reformulator("replay:dar-released"), None, load_encoder("toy:clip-zs"), k_images=1)
    plan = pipe.reformulate(dialogue.dialog[:4], 3, ref=(dialogue.image, 3))
    assert plan.query == released.released_table()[(dialogue.image, 3)]
    assert plan.query.startswith("a bedroom with a cluttered computer desk, filled with posters, in a dimly lit")
