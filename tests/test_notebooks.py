"""Every chapter notebook runs under papermill with smoke parameters and produces its key outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from dar_lib import book, claims, profiles, status
from dar_lib.cachekeys import code_version

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
GLUE_REF = re.compile(r"\{glue(?::\w+)?\}`([A-Za-z_][A-Za-z0-9_]*)")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def _shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("notebook-cache")


@pytest.fixture(autouse=True)
def _private_cache(_shared_cache, monkeypatch):
    """The chapters share one cache, as in a real build: later chapters replay the images earlier ones made."""
    monkeypatch.setenv("DAR_CACHE_DIR", str(_shared_cache))


def glued(nb) -> dict[str, str]:
    """name -> text/plain of every myst-nb glue output in an executed notebook."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            if meta:
                data = o.get("data", {})
                out[meta["name"]] = data.get(meta.get("mime_prefix", "") + "text/plain", data)
    return out


def execute(path: Path, tmp_path: Path, **extra):
    params = profiles.parameters("toy", smoke=True, **extra)
    declared = book.notebook_parameters(path)
    params = {k: v for k, v in params.items() if k in declared}
    jupyter = book.write_kernelspec(tmp_path / "jupyter")
    return book.execute_chapter(book.Chapter(f"notebooks/{path.stem}", path), params, tmp_path / "executed", jupyter,
                                progress=False)


def run(path: Path, tmp_path: Path, **extra):
    out, seconds, error = execute(path, tmp_path, **extra)
    assert error is None, f"{path.name} failed: {error}"
    return nbformat.read(out, as_version=4)


def test_every_notebook_is_committed_without_outputs_and_its_parameters_come_from_the_table():
    """One parameter table: a chapter declares names of the schema, all None (the profile's value), except
    profile and smoke, and checks them with chapters.setup before anything else."""
    assert NOTEBOOKS, "no chapter notebooks found"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name} has outputs"
        declared = book.notebook_parameters(path)
        assert set(declared) <= set(profiles.SCHEMA), (path.name, set(declared) - set(profiles.SCHEMA))
        ns: dict = {}
        exec(nb.cells[tagged[0]].source, ns)
        values = {k: ns[k] for k in declared}
        assert values.pop("profile") == "toy" and values.pop("smoke") is False, path.name
        assert all(v is None for v in values.values()), (path.name, values)
        first_code = next(c for c in nb.cells[tagged[0] + 1:] if c.cell_type == "code")
        assert "setup(globals())" in first_code.source, f"{path.name}: the first cell must check its parameters"
        # no chapter branches on the profile: only the table differs between profiles
        assert not any("profile ==" in c.source or "profile !=" in c.source for c in nb.cells if c.cell_type == "code"), \
            path.name


@pytest.mark.parametrize("extra, fragment", [
    ({"benchmarks": "['toy-flan']"}, "parameter 'benchmarks'"),
    ({"n_dialogues": "5"}, "parameter 'n_dialogues'"),
])
def test_a_chapter_names_a_bad_injected_parameter(tmp_path, extra, fragment):
    """papermill -p benchmarks "['toy-flan']" or -r n_dialogues 5 fail in the first cell, naming the parameter."""
    path = REPO / "notebooks" / "02_reformulation.ipynb"
    declared = book.notebook_parameters(path)
    params = {k: v for k, v in profiles.parameters("toy", smoke=True).items() if k in declared}
    params.update(extra)
    jupyter = book.write_kernelspec(tmp_path / "jupyter")
    _, _, error = book.execute_chapter(book.Chapter("notebooks/02_reformulation", path), params,
                                       tmp_path / "executed", jupyter, progress=False)
    assert error is not None and "ParameterError" in error and fragment in error, error


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_smoke_parameters(path, tmp_path):
    extra = {}
    if "records_dir" in book.notebook_parameters(path):
        records = tmp_path / "records"
        status.write_record(records, status.make_record("01_data", "x.ipynb", {"encoder": "toy:clip-zs"}, 1.5, "ok"))
        status.write_record(records, status.make_record("05_results", "y.ipynb", {}, 2.0, "failed", "boom"))
        extra["records_dir"] = str(records)
    nb = run(path, tmp_path, **extra)
    values = glued(nb)
    # Every value the prose quotes is produced (a missing one would fail the book build).
    referenced = {m for c in nb.cells if c.cell_type == "markdown" for m in GLUE_REF.findall(c.source)}
    assert referenced, f"{path.name}: the prose quotes no computed value"
    assert referenced <= set(values), f"{path.name}: prose quotes unglued {sorted(referenced - set(values))}"
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    _key_outputs(path.stem, nb, values)
    if path.stem == "01_data":
        assert values["n_toy_corpus"] == "'500'" and values["n_toy_dialogues"] == "'8'"
        assert values["n_browsable"] == "5" and values["toy_leaks"] == "0"
        assert values["toy_world_code"] == repr(code_version("toyworld"))
        if (REPO.parent / "shared" / "data" / "chatir").is_dir():
            assert values["n_real_corpus"] == "'50,000'" and values["real_same_targets"] == "'yes'"
        html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))
        assert "dar-explorer" in html
    if path.stem == "99_status":
        assert values["n_chapters"] == "2" and values["n_ok"] == "1" and values["n_failed"] == "1"
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
        assert f"the book's {m} claims" in values[f"{prefix}_n_supported"] and "mechanism" in values[f"{prefix}_evidence"]
        assert " pp" in values[f"{prefix}_power"] and "headline" in values[f"{prefix}_power"]
    if stem == "14_explorer":
        assert "dar-explorer" in html and "data:image/png;base64," in html
