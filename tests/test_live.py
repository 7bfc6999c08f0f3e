"""The live explorer's logic and widgets, driven in Python (the browser half is tests/test_live_browser.py)."""

from __future__ import annotations

import html

import pytest

from dar_lib.benchmarks import load_benchmark
from dar_lib.live import LiveSearch, live_app
from dar_lib.models import load_encoder, load_generator, load_reformulator
from dar_lib.pipeline import DARPipeline
from dar_lib.store import ArtefactStore

K = 2


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("toy-chatgpt", 4, toy_size="smoke")


@pytest.fixture(scope="module")
def pipe(bench, tmp_path_factory):
    # with a store, as dar explore builds it: the reformulator is wrapped in the store's cache
    p = DARPipeline(load_reformulator("toy:rules"), load_generator("toy:sd"), load_encoder("toy:clip-zs"), k_images=K,
                    store=ArtefactStore(tmp_path_factory.mktemp("store")))
    p.index(bench.corpus_images(range(len(bench.corpus_paths))))
    return p


def _find(widget, cls):
    """Every widget under ``widget`` carrying the CSS class ``cls``."""
    out = [widget] if cls in getattr(widget, "_dom_classes", ()) else []
    for child in getattr(widget, "children", ()):
        out += _find(child, cls)
    return out


def _one(app, cls):
    (w,) = _find(app, cls)
    return w


def test_person_drives_a_search_with_enter_undo_mark_and_reset(pipe, bench):
    app = live_app(pipe, bench)
    search = app.search
    assert not search.started and _one(app, "dar-answer-btn").disabled
    _one(app, "dar-description").value = "a black square in the bottom left on an orange background"  # Enter
    assert search.started and search.result.round_idx == 0
    assert len(_one(app, "dar-gen").children) == K and len(_one(app, "dar-top").children) == 10
    question = search.session.pending_question
    assert question.endswith("?") and html.escape(question) in _one(app, "dar-question").value  # shown as text
    _one(app, "dar-answer").value = "no other objects, only the black square"  # Enter submits
    assert search.result.round_idx == 1
    assert search.session.turns[-1] == f"{question} no other objects, only the black square"
    assert "single black square" in search.result.query  # no phantom second object
    assert "count=1" in _one(app, "dar-turns-box").value
    assert _one(app, "dar-answer").value == "" and "round 1 done" in _one(app, "dar-status").value
    # a second click on the button after the turn (answer now empty) changes nothing, and says why
    _one(app, "dar-answer-btn").click()
    assert search.result.round_idx == 1 and "round 1 done" in _one(app, "dar-status").value
    assert "type an answer first" in _one(app, "dar-error-box").value
    # "not sure" is an answer (noted, nothing changes); an answer the reader cannot use is flagged
    _one(app, "dar-answer").value = "hmm, hard to say"
    assert search.views[-1].unsure and "noted: you are not sure" in _one(app, "dar-turns-box").value
    _one(app, "dar-undo").click()
    _one(app, "dar-answer").value = "hmm"
    assert search.views[-1].unread and "not understood" in _one(app, "dar-turns-box").value
    _one(app, "dar-undo").click()
    # a fact already known is acknowledged, not flagged
    _one(app, "dar-answer").value = "it is on an orange background, as i said"
    assert search.views[-1].restated == {"background": "orange"} and not search.views[-1].unread
    assert "already known: background=orange" in _one(app, "dar-turns-box").value
    _one(app, "dar-undo").click()
    assert search.result.round_idx == 1 and len(search.views) == 2
    # "this is it" on candidate 3
    marks = _find(app, "dar-mark")
    assert len(marks) == 10
    marks[2].click()
    assert search.found == {"id": int(search.result.top_ids[2]), "round": 1, "turns_to_success": 1, "correct": None}
    assert "found in 1 turn: you marked image" in _one(app, "dar-found-box").value
    assert ["dar-marked" in box._dom_classes for box in _one(app, "dar-top").children] == [j == 2 for j in range(10)]
    assert _one(app, "dar-answer").disabled and _one(app, "dar-answer-btn").disabled  # over until undo or reset
    assert "the image you marked: rank" in _one(app, "dar-turns-box").value  # free search: its rank per round
    search_ranks = search.marked_ranks()
    assert len(search_ranks) == 2 and search_ranks[-1] == 3.0  # it was #3 when marked
    _one(app, "dar-reset").click()
    assert not search.started and _one(app, "dar-top").children == ()
    assert _one(app, "dar-description").value == "" and _one(app, "dar-answer").value == ""


def test_refusals_are_one_line_messages_not_errors(pipe, bench):
    app = live_app(pipe, bench, dialog_idx=0)
    assert "toy:clip-zs" in _find(app, "dar-live")[0].children[1].value  # the reader is named on the first screen
    _one(app, "dar-undo").click()  # undo at round 0
    box = _one(app, "dar-error-box").value
    assert "nothing to undo" in box and "dar-refusal" in box and "Error" not in box
    app.search.mark(0)
    app.render()
    _one(app, "dar-answer").value = "red"  # an answer after the end
    box = _one(app, "dar-error-box").value
    assert "this search is over" in box and "Error" not in box and app.search.result.round_idx == 0
    _one(app, "dar-undo").click()  # takes the mark back
    assert app.search.found is None and not _one(app, "dar-answer").disabled


def test_benchmark_dialogue_shows_its_target_and_rank_plot(pipe, bench):
    app = live_app(pipe, bench, dialog_idx=1)
    target = bench.dialogues[1].target_id
    assert app.search.target_id == target
    assert len(_find(app, "dar-target-mark")) >= 1  # the target beside the dialogue (and in the top-10 if there)
    _one(app, "dar-answer").value = "blue"
    ranks = app.search.rank_history()
    assert len(ranks) == 2 and all(1 <= r <= len(bench.corpus_paths) for r in ranks)
    assert _one(app, "dar-rank-plot").value[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"target rank {ranks[-1]:,.0f} of {len(bench.corpus_paths):,}" in _one(app, "dar-turns-box").value
    app.search.mark(0)
    assert app.search.found["correct"] == (int(app.search.result.top_ids[0]) == target)


def test_errors_in_a_turn_are_shown_in_the_app(pipe, bench, monkeypatch):
    app = live_app(pipe, bench, dialog_idx=0)

    def broken(*a, **k):
        raise RuntimeError("generator fell over")
    monkeypatch.setattr(app.search.session, "answer", broken)
    _one(app, "dar-answer").value = "red"
    assert "generator fell over" in _one(app, "dar-error-box").value
    assert not _one(app, "dar-answer-btn").disabled  # the controls come back after the error


def test_two_apps_share_no_widget(pipe, bench):
    a, b = live_app(pipe, bench, dialog_idx=0), live_app(pipe, bench, dialog_idx=0)
    ids_a = {w.model_id for w in _find(a, "dar-top") + _find(a, "dar-gen")}
    ids_b = {w.model_id for w in _find(b, "dar-top") + _find(b, "dar-gen")}
    assert ids_a and not ids_a & ids_b


def test_search_checks_its_inputs(pipe, bench):
    s = LiveSearch(pipe, bench)
    with pytest.raises(RuntimeError, match="start"):
        s.answer("red")
    with pytest.raises(ValueError, match="description"):
        s.start("  ")
    with pytest.raises(ValueError, match="not in the corpus"):
        s.start("a red circle", target_id=10**9)
    with pytest.raises(IndexError, match="dialogue 99"):
        s.start_dialogue(99)


def test_dar_explore_serves_on_localhost_and_names_its_extra(monkeypatch, tmp_path, capsys):
    import importlib.util
    import json

    from dar_lib import cli, live_server

    nb = json.loads(live_server.notebook_text("toy-flan", smoke=True))
    assert nb["cells"][0]["source"] == ("from dar_lib.live_server import toy_app\n"
                                       "toy_app('toy-flan', smoke=True, encoder='full')\n")
    cmd = live_server.voila_command(tmp_path / "x.ipynb", 9999, open_browser=False)
    assert "--Voila.ip=127.0.0.1" in cmd and "--port=9999" in cmd and "--no-browser" in cmd
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "voila" else real(name, *a))
    assert cli.main(["explore", "--no-browser"]) == 2
    assert 'pip install -e ".[live]"' in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a toy benchmark"):
        live_server.toy_app("visdial")


def test_live_app_runs_turns_on_one_torch_thread(pipe, bench):
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        live_app(pipe, bench)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
