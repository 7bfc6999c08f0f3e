"""Every chapter notebook runs under papermill with smoke parameters and produces its key outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from dar_lib import book, status

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


def run(path: Path, tmp_path: Path, **extra):
    params = book.profile_parameters("toy", smoke=True)
    params.update(extra)
    declared = book.notebook_parameters(path)
    params = {k: v for k, v in params.items() if k in declared}
    jupyter = book.write_kernelspec(tmp_path / "jupyter")
    out, seconds, error = book.execute_chapter(book.Chapter(f"notebooks/{path.stem}", path), params,
                                               tmp_path / "executed", jupyter, progress=False)
    assert error is None, f"{path.name} failed: {error}"
    return nbformat.read(out, as_version=4)


def test_every_notebook_is_committed_without_outputs_and_has_a_parameters_cell():
    assert NOTEBOOKS, "no chapter notebooks found"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), f"{path.name} has outputs"


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
        assert values["n_toy_corpus"] == "'300'" and values["n_toy_dialogues"] == "'8'"
        assert values["n_toy_styles"] == "4" and values["n_browsable"] == "5"
        if (REPO.parent / "shared" / "data" / "chatir").is_dir():
            assert values["n_real_corpus"] == "'50,000'" and values["real_same_targets"] == "'yes'"
        html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))
        assert "dar-explorer" in html
    if path.stem == "99_status":
        assert values["n_chapters"] == "2" and values["n_ok"] == "1" and values["n_failed"] == "1"



VERDICTS = {"'supported'", "'contradicted'", "'inconclusive'"}
#: Chapter -> figures it must show at least.
FIGURES = {"03_generation": 1, "05_results_zero_shot": 2, "06_results_robustness": 1, "09_results_single_turn": 1,
           "10_premise": 1, "12_analysis_k": 1}


def _key_outputs(stem: str, nb, values: dict) -> None:
    """Chapter-specific outputs beyond 'every quoted value exists'."""
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert pngs >= FIGURES.get(stem, 0), f"{stem}: {pngs} figures, expected {FIGURES.get(stem, 0)}"
    verdicts = {k: v for k, v in values.items() if "verdict" in k}
    assert all(v in VERDICTS for v in verdicts.values()), verdicts
    html = "".join(o.get("data", {}).get("text/html", "") for c in nb.cells for o in c.get("outputs", []))
    if stem == "05_results_zero_shot":
        assert len(verdicts) == 7  # four benchmarks, round 2, and the two controls
        assert "pp [" in html and "verdict" in html  # claims with paired intervals
    if stem == "14_explorer":
        assert "dar-explorer" in html and "data:image/png;base64," in html
