"""Every chapter, as the session's one smoke build executed it (tests/conftest.py's ``smoke_book``),
produced its key outputs; the committed notebooks have no outputs and take their parameters from the table."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from dar_lib import claims, profiles
from dar_lib.benchmarks import TOY_SIZES
from dar_lib.book import run as book_run
from dar_lib.cachekeys import code_version

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def executed(smoke_book, read_executed, stem: str):
    """The chapter as the smoke build executed it (it must have run, and without error)."""
    result = smoke_book.result
    assert stem not in result.failed, f"{stem} failed in the smoke build: {result.failed[stem]}"
    assert stem in result.executed, f"{stem} did not run in the smoke build"
    return read_executed(smoke_book.executed(stem))


def test_every_notebook_is_committed_without_outputs_and_its_parameters_come_from_the_table():
    """One parameter table: a chapter declares names of the schema, all None (the profile's value), except
    profile and smoke, and checks them with chapters.setup before anything else."""
    assert NOTEBOOKS, "no chapter notebooks found"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name} has outputs"
        declared = book_run.notebook_parameters(path)
        assert set(declared) <= set(profiles.SCHEMA), (path.name, set(declared) - set(profiles.SCHEMA))
        ns: dict = {}
        exec(nb.cells[tagged[0]].source, ns)
        values = {k: ns[k] for k in declared}
        assert values.pop("profile") == "toy" and values.pop("smoke") is False, path.name
        assert all(v is None for v in values.values()), (path.name, values)
        first_code = next(c for c in nb.cells[tagged[0] + 1:] if c.cell_type == "code")
        assert "setup(globals())" in first_code.source, f"{path.name}: the first cell must check its parameters"
        # no chapter branches on the profile: only the table differs between profiles
        assert not any("profile ==" in c.source or "profile !=" in c.source
                       for c in nb.cells if c.cell_type == "code"), path.name


@pytest.mark.parametrize("extra, fragment", [
    ({"benchmarks": "['toy-flan']"}, "parameter 'benchmarks'"),
    ({"n_dialogues": "5"}, "parameter 'n_dialogues'"),
])
def test_a_chapter_names_a_bad_injected_parameter(extra, fragment):
    """papermill -p benchmarks "['toy-flan']" or -r n_dialogues 5 fail in the first cell, naming the parameter.

    The cells run in-process as a kernel would run them: the parameters cell, the cell papermill's own
    parameterizer injects, then the chapter's first code cell (which calls ``chapters.setup``).
    """
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    path = REPO / "notebooks" / "02_reformulation.ipynb"
    declared = book_run.notebook_parameters(path)
    params = {k: v for k, v in profiles.parameters("toy", smoke=True).items() if k in declared}
    params.update(extra)
    nb = parameterize_notebook(load_notebook_node(str(path)), params, kernel_name="python3", language="python")
    cells = [c for c in nb.cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in cells]
    assert "parameters" in tags[0] and "injected-parameters" in tags[1], tags[:2]
    assert "setup(globals())" in cells[2].source
    ns: dict = {}
    exec(cells[0].source, ns)
    exec(cells[1].source, ns)
    assert ns[next(iter(extra))] == next(iter(extra.values()))  # injected as the string papermill was given
    with pytest.raises(profiles.ParameterError, match=re.escape(fragment)):
        exec(cells[2].source, ns)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_smoke_parameters(path, smoke_book, read_executed):
    chapter = executed(smoke_book, read_executed, path.stem)
    nb, values = chapter.nb, chapter.values
    # Every value the prose quotes is produced (a missing one would fail the book build).
    assert chapter.referenced, f"{path.name}: the prose quotes no computed value"
    assert not chapter.unglued, f"{path.name}: prose quotes unglued {chapter.unglued}"
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    _key_outputs(path.stem, nb, values)
    if path.stem == "01_data":
        assert values["n_toy_corpus"] == repr(f"{TOY_SIZES['smoke']['n_corpus']:,}")
        assert values["n_toy_dialogues"] == repr(f"{profiles.SMOKE['n_dialogues']:,}")
        assert values["n_browsable"] == str(min(5, profiles.SMOKE["n_dialogues"])) and values["toy_leaks"] == "0"
        assert values["toy_world_code"] == repr(code_version("toyworld"))
        if (REPO.parent / "shared" / "data" / "chatir").is_dir():
            assert values["n_real_corpus"] == "'50,000'" and values["real_same_targets"] == "'yes'"
        html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))
        assert "dar-explorer" in html
    if path.stem == "99_status":
        # The status page counts every other chapter's record of this build (a failed record's count
        # is checked without a build: tests/test_book.py::test_status_summary_counts_failed_chapters).
        others = [c.name for c in book_run.find_chapters(REPO / "book", REPO / "notebooks") if c.name != "99_status"]
        assert values["n_chapters"] == str(len(others)) and values["n_ok"] == str(len(others))
        assert values["n_failed"] == "0"
        assert values["family_size"] == str(claims.family_size(profiles.parameters("toy", smoke=True)))


VERDICTS = {"'supported'", "'contradicted'", "'inconclusive'"}
#: Chapter -> the figures it shows (exactly) and the claim verdicts it glues (exactly).
FIGURES = {"01_data": 2, "02_reformulation": 0, "03_generation": 1, "04_fusion_retrieval": 0,
           "05_results_zero_shot": 2, "06_results_robustness": 1, "07_results_vs_finetuned": 0,
           "08_results_compat": 0, "09_results_single_turn": 1, "10_premise": 1, "11_analysis_models": 0,
           "12_analysis_k": 1, "13_analysis_overhead": 0, "14_explorer": 0, "99_status": 0}
#: (each chapter's share of the book's one family, dar_lib.claims, at the toy profile's four encoder roles)
VERDICT_COUNT = {"05_results_zero_shot": 8, "06_results_robustness": 4, "07_results_vs_finetuned": 4,
                 "08_results_compat": 8, "09_results_single_turn": 5, "10_premise": 8, "11_analysis_models": 5}


def test_every_chapter_has_its_expected_outputs_listed():
    assert set(FIGURES) == {p.stem for p in NOTEBOOKS}


def _key_outputs(stem: str, nb, values: dict) -> None:
    """Chapter-specific outputs beyond 'every quoted value exists'."""
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert pngs == FIGURES[stem], f"{stem}: {pngs} figures, expected {FIGURES[stem]}"
    verdicts = {k: v for k, v in values.items() if k.split("_")[1:2] == ["verdict"]}
    assert len(verdicts) == VERDICT_COUNT.get(stem, 0), (stem, sorted(verdicts))
    # a verdict on the sign, then its direction and size against the paper (dar_lib.stats.size_label)
    assert all(v.strip("'\"").split("; ")[0] in {x.strip("'") for x in VERDICTS} for v in verdicts.values()), verdicts
    html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))
    if stem in VERDICT_COUNT:
        m = claims.family_size(profiles.parameters("toy", smoke=True))
        assert "pp [" in html and f"family-wise 95% CI, m = {m}" in html  # the book-wide correction
        prefix = next(iter(verdicts)).split("_")[0]
        assert f"the book's {m} claims" in values[f"{prefix}_n_supported"]
        assert "mechanism" in values[f"{prefix}_evidence"]
        assert " pp" in values[f"{prefix}_power"] and "headline" in values[f"{prefix}_power"]
    if stem == "14_explorer":
        assert "dar-explorer" in html and "data:image/png;base64," in html
