"""ChatIR/PlugIR registry, verified fetch and loaders, on the offline mirror and on bad files."""

from __future__ import annotations

import hashlib
import http.server
import itertools
import json
import os
import re
import shutil
import socket
import threading
from pathlib import Path

import pytest

from dar_lib import settings
from dar_lib.benchmarks import chatir
from dar_lib.benchmarks.dialogue import check_relative_path
from dar_lib.errors import DataError

N_DIALOGUES = 2064


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sets():
    """All four dialogue sets (read from the mirror directly: loading is what's tested here)."""
    root = os.environ.get(settings.MIRROR_ENV)
    if not root or not Path(root).is_dir():
        pytest.skip("no offline data mirror")
    return {name: chatir.load(name, root=root) for name in chatir.DIALOGUE_SETS}


# -- registry and fetch -------------------------------------------------------------------
def test_registry_matches_mirror(mirror):
    for relpath, entry in chatir.REGISTRY.items():
        assert _sha(mirror / relpath) == entry.sha256, relpath
    assert chatir.REGISTRY["chatir/Human_BLIP2.json"].url == (
        "https://raw.githubusercontent.com/levymsn/ChatIR/c62600c90a2260c8cca44c5fb6b37bc3df53c43f/"
        "dialogues/Human_BLIP2.json"
    )


def test_fetch_from_mirror_into_cache(mirror):
    path = chatir.fetch("chatir/VisDial_v1.0_queries_val.json")
    assert path == settings.cache_dir() / "data" / "chatir" / "VisDial_v1.0_queries_val.json"
    assert _sha(path) == chatir.REGISTRY["chatir/VisDial_v1.0_queries_val.json"].sha256
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left
    assert chatir.fetch("chatir/VisDial_v1.0_queries_val.json") == path  # cached


def test_fetch_unknown_file():
    with pytest.raises(KeyError, match="not a registered"):
        chatir.fetch("chatir/nope.json")


def test_tampered_mirror_is_refused(mirror, tmp_path, monkeypatch):
    bad = tmp_path / "mirror"
    shutil.copytree(mirror, bad)
    target = bad / "chatir" / "Human_BLIP2.json"
    target.chmod(0o644)
    blob = bytearray(target.read_bytes())
    blob[100] ^= 0x01
    target.write_bytes(bytes(blob))
    monkeypatch.setenv(settings.MIRROR_ENV, str(bad))
    with pytest.raises(DataError) as err:
        chatir.fetch("chatir/Human_BLIP2.json")
    msg = str(err.value)
    assert "chatir/Human_BLIP2.json" in msg and "checksum mismatch" in msg
    assert chatir.REGISTRY["chatir/Human_BLIP2.json"].sha256 in msg and _sha(target) in msg
    cache = settings.cache_dir() / "data" / "chatir"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_missing_mirror_file_names_file_and_setting(tmp_path, monkeypatch):
    (tmp_path / "chatir").mkdir()
    monkeypatch.setenv(settings.MIRROR_ENV, str(tmp_path))
    with pytest.raises(DataError, match=r"chatir/ChatGPT_BLIP2.json: not found in the data mirror .*DAR_DATA_MIRROR"):
        chatir.fetch("chatir/ChatGPT_BLIP2.json")


def test_corrupt_cache_is_refetched(mirror):
    relpath = "plugir/Search_Space_coco.json"
    path = chatir.fetch(relpath)
    path.write_bytes(path.read_bytes()[:-5])
    assert _sha(path) != chatir.REGISTRY[relpath].sha256
    assert chatir.fetch(relpath) == path
    assert _sha(path) == chatir.REGISTRY[relpath].sha256


class _RawFiles(http.server.BaseHTTPRequestHandler):
    """Serves ``files[url path]``; anything else is a 404. Counts requests."""

    files: dict[str, bytes] = {}
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).hits.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def raw_server(monkeypatch):
    handler = type("Handler", (_RawFiles,), {"files": {}, "hits": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setattr(chatir, "RAW_BASE", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv(settings.MIRROR_ENV, raising=False)
    yield handler
    server.shutdown()
    server.server_close()


def test_download_without_mirror_verifies_sha256(mirror, raw_server):
    relpath = "plugir/Search_Space_coco.json"
    entry = chatir.REGISTRY[relpath]
    url_path = f"/{entry.owner}/{entry.repo}/{entry.commit}/{entry.path}"
    raw_server.files[url_path] = (mirror / relpath).read_bytes()
    path = chatir.fetch(relpath, timeout=5)
    assert _sha(path) == entry.sha256 and raw_server.hits == [url_path]


def test_download_with_wrong_bytes_leaves_nothing(mirror, raw_server):
    relpath = "plugir/Search_Space_coco.json"
    entry = chatir.REGISTRY[relpath]
    raw_server.files[f"/{entry.owner}/{entry.repo}/{entry.commit}/{entry.path}"] = b'["val2017/x.jpg"]'
    with pytest.raises(DataError, match=r"plugir/Search_Space_coco.json: checksum mismatch .*" + entry.sha256):
        chatir.fetch(relpath, timeout=5)
    folder = settings.cache_dir() / "data" / "plugir"
    assert list(folder.iterdir()) == []


def test_download_http_error_names_file(raw_server):
    with pytest.raises(DataError, match=r"chatir/Human_BLIP2.json: download from http://127.0.0.1:\d+/.* HTTP 404"):
        chatir.fetch("chatir/Human_BLIP2.json", timeout=5)
    assert list((settings.cache_dir() / "data" / "chatir").iterdir()) == []


def test_download_unreachable_server_names_file(monkeypatch):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(chatir, "RAW_BASE", f"http://127.0.0.1:{port}")
    monkeypatch.delenv(settings.MIRROR_ENV, raising=False)
    with pytest.raises(DataError, match=rf"chatir/Human_BLIP2.json: download from http://127.0.0.1:{port}/.* failed"):
        chatir.fetch("chatir/Human_BLIP2.json", timeout=5)
    assert not (settings.cache_dir() / "data" / "chatir" / "Human_BLIP2.json").exists()


# -- loaders on the real files ------------------------------------------------------------
def test_four_sets_share_targets(sets):
    corpus = chatir.load_corpus()
    assert len(corpus) == 50_000 == len(set(corpus))
    visdial = sets["visdial"]
    assert len(visdial) == N_DIALOGUES
    for name, dialogues in sets.items():
        assert len(dialogues) == N_DIALOGUES, name
        assert [d.image for d in dialogues] == [d.image for d in visdial], name
        assert all(d.n_rounds == 11 for d in dialogues), name
        assert all(corpus[d.target_id] == d.image for d in dialogues), name
    assert visdial[0].image == "unlabeled2017/000000185565.jpg"
    assert visdial[0].target_id == corpus.index("unlabeled2017/000000185565.jpg")
    assert len({d.target_id for d in visdial}) == N_DIALOGUES


def test_query_text_is_comma_join(sets):
    for dialogues in sets.values():
        for d in dialogues[:50]:
            for r in range(11):
                assert d.query_text(r) == ", ".join(d.dialog[: r + 1])
    d = sets["visdial"][0]
    assert d.query_text(1) == ("a bedroom is filled with lots of posters and a busy computer desk, "
                               "is the photo in color? yes")


def test_turn_splitting(sets):
    d = sets["visdial"][0]
    assert d.caption == "a bedroom is filled with lots of posters and a busy computer desk"
    assert d.turns[0] == ("is the photo in color?", "yes")
    assert d.turns[3] == ("is it daytime?", "i don't see windows")
    # ChatGPT_BLIP2 record 19, round 5 puts a newline after the "?": no "? " separator.
    turn = sets["chatgpt_blip2"][19].dialog[5]
    assert turn == "Is the water calm or choppy?\nAnswer: choppy a man surfing a wave"
    assert sets["chatgpt_blip2"][19].turns[4] == (turn, None)


def test_human_questions_are_visdial_rotated_by_one(sets):
    def questions(d):
        return [q for q, _ in d.turns]

    for v, h in zip(sets["visdial"], sets["human_blip2"]):
        assert h.caption == v.caption
        qv, qh = questions(v), questions(h)
        # The data shows a right rotation: VisDial's last question is asked first.
        assert qh == [qv[-1]] + qv[:-1]
    # The answers are BLIP-2's, not VisDial's human answers.
    assert sets["human_blip2"][0].turns[3] == ("is it well lit?", "yes")
    assert sets["visdial"][0].turns[2] == ("is it well lit?", "no")


def test_describe_counts_quirks(sets):
    frame = chatir.describe(sets)
    assert list(frame.index) == list(chatir.DIALOGUE_SETS)
    assert (frame["dialogues"] == N_DIALOGUES).all() and (frame["turns"] == N_DIALOGUES * 10).all()
    assert frame.loc["visdial", "pct_turns_without_sep"] == 0
    assert frame.loc["chatgpt_blip2", "pct_turns_without_sep"] == pytest.approx(100 * 98 / 20640)
    assert frame.loc["flan_blip2", "pct_turns_without_sep"] == pytest.approx(100 * 55 / 20640)
    assert frame.loc["visdial", "answer_tokens"] == 0
    assert frame.loc["flan_blip2", "answer_tokens"] > 10_000
    assert frame.loc["flan_blip2", "pct_dialogues_with_repeat"] > 90
    assert frame.loc["visdial", "caption_words"] == pytest.approx(
        sum(len(d.caption.split()) for d in sets["visdial"]) / N_DIALOGUES
    )
    per_round = chatir.words_per_round(sets)
    assert per_round.shape == (11, 4)
    assert per_round.loc[0, "visdial"] == frame.loc["visdial", "caption_words"]


def test_describe_on_handmade_dialogues():
    from dar_lib.benchmarks.dialogue import Dialogue

    d = Dialogue(0, "a.jpg", ("a cat", "is it red? yes", "is it red? Answer: no", "no separator here"))
    row = chatir.describe([d]).loc["dialogues"]
    assert row["turns"] == 3 and row["repeated_questions"] == 1 and row["answer_tokens"] == 1
    assert row["pct_turns_without_sep"] == pytest.approx(100 / 3)
    assert row["turn_words"] == pytest.approx((4 + 5 + 3) / 3)


def test_plugir_queries_and_replay_table(mirror, sets):
    queries = chatir.load_plugir_queries()
    assert len(queries) == N_DIALOGUES and all(q.n_rounds == 11 for q in queries)
    assert [q.image for q in queries] == [d.image for d in sets["visdial"]]
    assert [q.caption for q in queries] == [d.caption for d in sets["visdial"]]
    table = chatir.replay_table()
    assert len(table) == N_DIALOGUES * 11
    first = queries[0]
    assert table[(first.image, 1)] == first.dialog[1]
    assert table[(first.image, 1)].startswith("A bedroom filled with lots of posters features a busy computer desk")


def test_coco_single_turn(mirror):
    paths, captions = chatir.load_coco_single_turn()
    assert len(paths) == len(captions) == 5000 == len(set(paths))
    assert paths[0] == "val2017/000000000139.jpg"
    assert captions[0][0] == "A woman stands in the dining area at the table."
    assert all(5 <= len(c) <= 7 for c in captions)


def test_unknown_set_lists_valid_names():
    with pytest.raises(ValueError, match="visdial, chatgpt_blip2, human_blip2, flan_blip2"):
        chatir.load("coco")


# -- bad input: one file each, the error names the file and the record --------------------
@pytest.fixture
def user_root(tmp_path):
    """A root with a small corpus and a valid 11-round dialogue file, for the bad-input tests."""
    corpus = [f"unlabeled2017/{i:012d}.jpg" for i in range(5)]
    (tmp_path / "chatir").mkdir()
    (tmp_path / "chatir" / "Search_Space_val_50k.json").write_text(json.dumps(corpus))
    return tmp_path


def _write_dialogues(root: Path, payload) -> Path:
    path = root / "chatir" / "VisDial_v1.0_queries_val.json"
    path.write_bytes(payload if isinstance(payload, bytes) else json.dumps(payload).encode())
    return path


def _record(img="unlabeled2017/000000000001.jpg", n=11):
    return {"img": img, "dialog": ["a caption"] + [f"question {i}? answer" for i in range(1, n)]}


def test_user_root_loads_valid_file(user_root):
    _write_dialogues(user_root, [_record(), _record("unlabeled2017/000000000003.jpg")])
    dialogues = chatir.load("visdial", root=user_root)
    assert [d.target_id for d in dialogues] == [1, 3]


def test_malformed_json(user_root):
    path = _write_dialogues(user_root, b'[{"img": "x", "dialog": [}')
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: malformed JSON: .* line 1 column \d+"):
        chatir.load("visdial", root=user_root)


def test_wrong_schema(user_root):
    path = _write_dialogues(user_root, [_record(), {"image": "unlabeled2017/000000000002.jpg", "dialog": []}])
    with pytest.raises(DataError,
                       match=rf"{re.escape(str(path))}: record 1: expected an object with keys 'img' and 'dialog'"):
        chatir.load("visdial", root=user_root)


def test_wrong_number_of_turns(user_root):
    path = _write_dialogues(user_root, [_record(), _record(n=7)])
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: record 1: expected 11 dialogue rounds .* got 7"):
        chatir.load("visdial", root=user_root)


def test_empty_text(user_root):
    rec = _record()
    rec["dialog"][4] = "   "
    path = _write_dialogues(user_root, [rec])
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: record 0: round 4 is empty text"):
        chatir.load("visdial", root=user_root)


def test_non_utf8_file(user_root):
    path = _write_dialogues(user_root, json.dumps([_record()]).encode().replace(b"a caption", b"caf\xe9"))
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: not UTF-8 text"):
        chatir.load("visdial", root=user_root)


def test_target_not_in_corpus(user_root):
    path = _write_dialogues(user_root, [_record(), _record("unlabeled2017/999.jpg")])
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: record 1: target image 'unlabeled2017/999.jpg' "
                                        r"is not in the corpus"):
        chatir.load("visdial", root=user_root)


def test_duplicate_corpus_path(user_root):
    path = user_root / "chatir" / "Search_Space_val_50k.json"
    path.write_text(json.dumps(["a.jpg", "b.jpg", "a.jpg"]))
    with pytest.raises(DataError,
                       match=rf"{re.escape(str(path))}: record 2: duplicate corpus path 'a.jpg' \(first at 0\)"):
        chatir.load_corpus(root=user_root)


def test_empty_dialogue_list_is_refused_when_read(user_root):
    path = _write_dialogues(user_root, [])
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: the dialogue list is empty"):
        chatir.load("visdial", root=user_root)


@pytest.mark.parametrize("paths, fragment", [
    ([], "the corpus list is empty"),
    (["a.jpg", "../etc/passwd"], r"record 1: corpus path '../etc/passwd' contains '\.\.'"),
    (["/abs/a.jpg"], "record 0: corpus path '/abs/a.jpg' is absolute"),
    (["a\\b.jpg"], "record 0: corpus path .* contains a backslash"),
])
def test_corpus_list_is_checked_when_read_not_when_an_image_is_resolved(user_root, paths, fragment):
    path = user_root / "chatir" / "Search_Space_val_50k.json"
    path.write_text(json.dumps(paths))
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: {fragment}"):
        chatir.load_corpus(root=user_root)


def _pathlib_rule(path: str) -> str | None:
    """What the corpus path check refused before it used string tests: pathlib's reading of the path, with any
    character before ':' a Windows drive (Python 3.12's pathlib; 3.10-3.11 took letters only)."""
    from pathlib import PurePosixPath, PureWindowsPath

    if "\\" in path or "\x00" in path:
        return "backslash"
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).drive or path[1:2] == ":":
        return "absolute"
    return "'..'" if ".." in PurePosixPath(path).parts else None


def test_corpus_path_check_refuses_what_pathlib_reads_as_leaving_the_root():
    pieces = ["a", ".", "..", "...", "/", "//", ":", "C:", "z:", "1:", "é:", " ", "\\", "\x00", "~"]
    paths = ["".join(p) for n in range(1, 4) for p in itertools.product(pieces, repeat=n)]
    for path in paths:
        expected = _pathlib_rule(path)
        try:
            check_relative_path(path, "here")
            got = None
        except DataError as exc:
            got = next(word for word in ("backslash", "absolute", "'..'") if word in str(exc))
        assert got == expected, path


def test_the_four_sets_parse_the_50k_list_once(mirror, monkeypatch):
    calls = []
    parse = chatir.parse_corpus
    monkeypatch.setattr(chatir, "parse_corpus", lambda *a, **k: calls.append(1) or parse(*a, **k))
    real, error = chatir.load_if_available()
    assert error is None and set(real) == set(chatir.SETS) and len(calls) == 1


def test_coco_captions_length_mismatch(tmp_path):
    (tmp_path / "plugir").mkdir()
    (tmp_path / "plugir" / "Search_Space_coco.json").write_text(json.dumps(["val2017/1.jpg", "val2017/2.jpg"]))
    cap = tmp_path / "plugir" / "coco_captions.json"
    cap.write_text(json.dumps([{"caption": ["x"]}, {"caption": []}]))
    with pytest.raises(DataError, match=rf"{re.escape(str(cap))}: record 1: 'caption' must be a non-empty list"):
        chatir.load_coco_single_turn(root=tmp_path)
    cap.write_text(json.dumps([{"caption": ["x"]}]))
    with pytest.raises(DataError, match=rf"{re.escape(str(cap))}: 1 caption records for 2 images"):
        chatir.load_coco_single_turn(root=tmp_path)


def test_user_root_without_corpus_uses_pinned_corpus(mirror, tmp_path):
    (tmp_path / "chatir").mkdir()
    records = json.loads((mirror / "chatir" / "ChatGPT_BLIP2.json").read_text())[:3]
    (tmp_path / "chatir" / "ChatGPT_BLIP2.json").write_text(json.dumps(records))
    dialogues = chatir.load("chatgpt_blip2", root=tmp_path)
    corpus = chatir.load_corpus()
    assert [corpus[d.target_id] for d in dialogues] == [r["img"] for r in records]
