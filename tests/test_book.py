"""Tests for `dar book`: chapters run with papermill, unchanged ones are skipped, failures are
collected, and the book compiles offline with warnings as errors."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from dar_lib import book, cachekeys
from dar_lib.book import cli as book_cli
from dar_lib.book import run as book_run
from dar_lib.book import site as book_site

REPO = Path(__file__).resolve().parents[1]
#: Pages the smoke build must produce (relative to the HTML root).
PAGES = ("intro.html", "paper_scale.html", "notebooks/01_data.html", "notebooks/99_status.html")


# --- fast unit tests ------------------------------------------------------------------------------
def test_toc_lists_chapters_in_run_order(tmp_path):
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: A\n    chapters:\n"
        "      - file: notebooks/99_status\n      - file: notebooks/02_b\n      - file: page.md\n"
        "      - file: notebooks/missing\n")
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for stem in ("99_status", "02_b"):
        nbformat.write(new_notebook(), nbs / f"{stem}.ipynb")
    assert book_run.toc_docnames(tmp_path / "_toc.yml") == ["intro", "notebooks/99_status", "notebooks/02_b", "page",
                                                        "notebooks/missing"]
    assert [c.name for c in book_run.find_chapters(tmp_path, nbs)] == ["02_b", "99_status"]
    (tmp_path / "_toc.yml").write_text("chapters: []\n")
    with pytest.raises(ValueError, match=r"_toc.yml: a jupyter-book toc needs a 'root' entry"):
        book_run.toc_docnames(tmp_path / "_toc.yml")


def test_stamp_changes_with_notebook_parameters_and_library(tmp_path):
    nb = tmp_path / "a.ipynb"
    nb.write_text("{}")
    base = cachekeys.chapter_stamp(nb, {"n": 1}, "lib1")
    assert cachekeys.chapter_stamp(nb, {"n": 1}, "lib1") == base
    assert cachekeys.chapter_stamp(nb, {"n": 2}, "lib1") != base
    assert cachekeys.chapter_stamp(nb, {"n": 1}, "lib2") != base
    nb.write_text("{ }")
    assert cachekeys.chapter_stamp(nb, {"n": 1}, "lib1") != base
    lib = tmp_path / "lib"
    (lib / "__pycache__").mkdir(parents=True)
    (lib / "m.py").write_text("x = 1\n")
    fp = cachekeys.library_fingerprint(lib)
    (lib / "__pycache__" / "m.pyc").write_bytes(b"junk")  # bytecode does not count
    assert cachekeys.library_fingerprint(lib) == fp
    (lib / "m.py").write_text("x = 2\n")
    assert cachekeys.library_fingerprint(lib) != fp


def test_kernelspec_points_at_this_interpreter(tmp_path):
    folder = book_run.write_kernelspec(tmp_path / "jupyter")
    spec = json.loads((folder / "kernels" / book_run.KERNEL_NAME / "kernel.json").read_text())
    assert spec["argv"][:3] == [sys.executable, "-m", "ipykernel_launcher"]


def test_a_bad_book_parameter_is_refused_before_any_chapter_runs(tmp_path):
    from dar_lib.profiles import ParameterError

    with pytest.raises(ParameterError, match="'k_images' = 0"):
        book.build_book(tmp_path / "out", parameters={"k_images": 0}, compile_book=False, log=lambda s: None)
    assert not (tmp_path / "out" / "executed").exists()


def test_executed_notebooks_hide_both_parameter_cells():
    nb = new_notebook(cells=[new_code_cell("a = None"), new_code_cell("a = 3"), new_code_cell("print(a)")])
    nb.cells[0].metadata["tags"] = ["parameters"]
    nb.cells[1].metadata["tags"] = ["injected-parameters"]
    out = json.loads(book_site.hide_parameter_cells(nbformat.writes(nb).encode()))
    tags = [c["metadata"].get("tags", []) for c in out["cells"]]
    assert "remove-cell" in tags[0] and "remove-cell" in tags[1] and "remove-cell" not in tags[2]


def test_the_book_notebooks_carry_no_credential():
    """The injected parameters and a log line on stderr name the id without its key."""
    from nbformat.v4 import new_output

    key = "s3cr3t-K3y-123"
    ref = f"openai:m@https://u:{key}@h/v1?api-key={key}"
    nb = new_notebook(cells=[new_code_cell(f"reformulator = {ref!r}"), new_code_cell("run()")])
    nb.cells[0].metadata["tags"] = ["injected-parameters"]
    nb.cells[1].outputs = [new_output("stream", name="stderr", text=f"WARNING calling {ref}\n"),
                           new_output("execute_result", data={"text/plain": repr(ref)}, execution_count=1)]
    out = book_site.hide_parameter_cells(nbformat.writes(nb).encode()).decode()
    assert key not in out and "api-key=***" in out and "u:***@" in out


def test_cli_registers_book_command():
    from dar_lib.cli import build_parser

    args = build_parser().parse_args(["book", "--smoke", "--only", "01_data", "--force", "--out", "/tmp/x"])
    assert args.smoke and args.force and args.only == ["01_data"] and args.out == Path("/tmp/x")
    assert args.func is book_cli.handler


# --- a tiny synthetic book: skipping, failures, warnings as errors ---------------------------------
def _tiny_book(root: Path, bad_code: str = "raise RuntimeError('boom: the bad chapter broke')") -> tuple[Path, Path]:
    bookdir, nbs = root / "book", root / "notebooks"
    bookdir.mkdir(parents=True)
    nbs.mkdir()
    (bookdir / "intro.md").write_text("# Tiny\n\nA test book.\n")
    (bookdir / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: notebooks/good\n  - file: notebooks/bad\n")
    params = new_code_cell("n_dialogues = 1")
    params.metadata["tags"] = ["parameters"]
    good = new_notebook(cells=[
        new_markdown_cell("# Good\n\nThe answer is {glue:text}`answer`."), params,
        new_code_cell("from myst_nb import glue\nglue('answer', n_dialogues * 21, display=False)")])
    bad = new_notebook(cells=[new_markdown_cell("# Bad"), new_code_cell(bad_code)])
    for name, nb in (("good", good), ("bad", bad)):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, nbs / f"{name}.ipynb")
    return bookdir, nbs


@pytest.mark.slow
def test_failing_chapter_is_reported_and_the_rest_still_builds(tmp_path, frozen_lib):
    bookdir, nbs = _tiny_book(tmp_path)
    kw = dict(book_dir=bookdir, notebooks_dir=nbs, config=REPO / "_config.yml", js_dir=REPO / "book" / "js",
              parameters={"n_dialogues": 2}, progress=False, lib_dir=frozen_lib(tmp_path))
    lines: list[str] = []
    result = book.build_book(tmp_path / "out", log=lines.append, **kw)
    assert result.executed == ["good"]
    assert list(result.failed) == ["bad"] and "boom: the bad chapter broke" in result.failed["bad"]
    assert result.book_ok is True and not result.ok
    assert book.report(result, log=lines.append) == 1
    assert any("FAILED bad: RuntimeError: boom" in line for line in lines)
    html = result.html_dir
    good_html = (html / "notebooks" / "good.html").read_text()
    assert re.search(r"The answer is\s*(<[^>]+>)?42", good_html)  # n_dialogues=2 was injected, glue rendered
    # the parameters are shown once, by the chapter: the defaults cell and papermill's cell are hidden
    assert "n_dialogues = 1" not in good_html and "n_dialogues = 2" not in good_html
    assert "boom: the bad chapter broke" in (html / "notebooks" / "bad.html").read_text()
    record = json.loads((tmp_path / "out" / "records" / "bad.json").read_text())
    assert record["status"] == "failed" and "boom" in record["error"]

    # Second run: the good chapter is skipped (stamp unchanged); the failed one is retried.
    again = book.build_book(tmp_path / "out", log=lines.append, compile_book=False, **kw)
    assert again.skipped == ["good"] and list(again.failed) == ["bad"]
    # A changed parameter re-runs the chapter.
    third = book.build_book(tmp_path / "out", log=lines.append, compile_book=False,
                            **{**kw, "parameters": {"n_dialogues": 3}})
    assert third.executed == ["good"]


@pytest.mark.slow
def test_warnings_are_errors(tmp_path):
    bookdir, nbs = _tiny_book(tmp_path, bad_code="1 + 1")
    (bookdir / "intro.md").write_text("# Tiny\n\nSee [a missing page](nowhere.md).\n")
    result = book.build_book(tmp_path / "out", book_dir=bookdir, notebooks_dir=nbs, config=REPO / "_config.yml",
                             js_dir=REPO / "book" / "js", progress=False, log=lambda s: None)
    assert not result.failed
    assert result.book_ok is False and "nowhere" in result.book_error
    assert book.report(result, log=lambda s: None) == 1


@pytest.mark.slow
def test_a_failed_rebuild_keeps_the_last_good_notebook_and_site(tmp_path, frozen_lib):
    """dar book's outputs are whole or absent (issue 32): a chapter that fails on a rebuild leaves its last
    good executed notebook byte-identical (the half-run one is ``<name>.failed.ipynb``, for reading), and
    a site build that fails leaves the last good site as it was, with no temporary folder behind."""
    bookdir, nbs = _tiny_book(tmp_path, bad_code="print('fine this time')")
    kw = dict(book_dir=bookdir, notebooks_dir=nbs, config=REPO / "_config.yml", js_dir=REPO / "book" / "js",
              progress=False, log=lambda s: None, lib_dir=frozen_lib(tmp_path))
    out = tmp_path / "out"
    first = book.build_book(out, **kw)
    assert first.ok, (first.failed, first.book_error)
    good_nb = (out / "executed" / "bad.ipynb").read_bytes()
    site_before = {p.relative_to(out): p.read_bytes() for p in (out / "site").rglob("*.html")}

    # the chapter now fails: its good copy stays, the failed run is beside it; the book shows a placeholder
    nb = nbformat.read(nbs / "bad.ipynb", as_version=4)
    nb.cells[1].source = "raise RuntimeError('boom: broken on the rebuild')"
    nbformat.write(nb, nbs / "bad.ipynb")
    second = book.build_book(out, **kw)
    assert list(second.failed) == ["bad"]
    assert (out / "executed" / "bad.ipynb").read_bytes() == good_nb
    assert "boom: broken on the rebuild" in (out / "executed" / "bad.failed.ipynb").read_text()
    record = json.loads((out / "records" / "bad.json").read_text())
    assert record["status"] == "failed" and record["notebook"].endswith("bad.failed.ipynb")
    assert "boom: broken on the rebuild" in (second.html_dir / "notebooks" / "bad.html").read_text()
    site_placeholder = {p.relative_to(out): p.read_bytes() for p in (out / "site").rglob("*.html")}

    # the site build now fails (a broken link is an error): the site is the one before, whole
    (bookdir / "intro.md").write_text("# Tiny\n\nSee [a missing page](nowhere.md).\n")
    third = book.build_book(out, **kw)
    assert third.book_ok is False and "nowhere" in third.book_error and "last good site" in third.book_error
    assert {p.relative_to(out): p.read_bytes() for p in (out / "site").rglob("*.html")} == site_placeholder
    assert site_placeholder != site_before  # the second build did replace the first site
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary sibling left
    assert "nowhere" in (out / "site.failed" / "_build" / "html" / "intro.html").read_text()  # kept to read

    # and a success removes the failed copy
    nbformat.write(nbformat.read(nbs / "good.ipynb", as_version=4), nbs / "bad.ipynb")
    (bookdir / "intro.md").write_text("# Tiny\n\nA test book.\n")
    fourth = book.build_book(out, **kw)
    assert fourth.ok and not (out / "executed" / "bad.failed.ipynb").exists() and not (out / "site.failed").exists()


# --- the real book, smoke profile ------------------------------------------------------------------
@pytest.mark.slow
def test_smoke_book_builds_every_page(smoke_book):
    root, result, lines = smoke_book
    assert result.failed == {}, result.failed
    assert result.book_ok, result.book_error
    chapters = [c.name for c in book_run.find_chapters(REPO / "book", REPO / "notebooks")]
    assert result.executed == chapters and chapters[-1] == "99_status"
    for page in PAGES:
        assert (result.html_dir / page).is_file(), page
    assert any(line.startswith("[1/") and "running" in line for line in lines)  # progress shown
    record = json.loads((root / "out" / "records" / "01_data.json").read_text())
    assert record["status"] == "ok" and record["parameters"]["smoke"] is True
    assert record["duration_s"] > 0 and "torch" in record["packages"] and record["machine"]["cpu_count"]
    status_html = (result.html_dir / "notebooks" / "99_status.html").read_text()
    assert "01_data" in status_html


@pytest.mark.slow
def test_smoke_book_loads_no_script_from_a_cdn(smoke_book):
    _, result, _ = smoke_book
    html_files = list(result.html_dir.rglob("*.html"))
    assert len(html_files) >= len(PAGES)
    for path in html_files:
        text = path.read_text()
        for src in re.findall(r"<script[^>]*\bsrc=\"([^\"]+)\"", text):
            assert "://" not in src and "cdn" not in src.lower(), (path.name, src)
        for href in re.findall(r"<link[^>]*\bhref=\"([^\"]+)\"", text):
            assert not href.startswith(("http://", "https://", "//")) or "rel=\"canonical\"" in text, (path.name, href)
        assert "THEBE_JS_URL" not in text
    vendor = result.html_dir / "_static" / "vendor"
    for rel in ("require.js", "html-manager/embed-amd.js", "mathjax/es5/tex-mml-chtml.js"):
        assert (vendor / rel).is_file(), rel
    assert list((vendor / "html-manager").glob("*.woff2")), "widget icon fonts must sit beside embed-amd.js"


@pytest.mark.slow
def test_unchanged_rebuild_runs_no_chapter(smoke_book, frozen_lib):
    root, first, _ = smoke_book
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAR_CACHE_DIR", str(root / "cache"))
        again = book.build_book(root / "out", profile="toy", smoke=True, progress=False, log=lambda s: None,
                                lib_dir=frozen_lib(root))
    assert again.executed == [] and again.failed == {}
    assert again.skipped == first.executed
    assert again.book_ok, again.book_error


def test_status_records_roundtrip_and_bad_record_is_named(tmp_path):
    from dar_lib import status
    from dar_lib.errors import DataError

    rec = status.make_record("02_x", "x.ipynb", {"encoders": {"zs": "toy:clip-zs"}, "generator": "toy:sd", "n": 3},
                             1.234, "ok")
    assert rec["model_ids"] == ["toy:clip-zs", "toy:sd"] and rec["duration_s"] == 1.23
    status.write_record(tmp_path, rec)
    status.write_record(tmp_path, status.make_record("99_status", "s.ipynb", {}, 1, "ok"))
    records = status.read_records(tmp_path, exclude=("99_status",))
    assert [r["name"] for r in records] == ["02_x"]
    table = status.records_table(records)
    assert table.loc["02_x", "models"] == "toy:clip-zs, toy:sd" and "n=3" in table.loc["02_x", "parameters"]
    assert status.read_records(tmp_path / "none") == []
    (tmp_path / "03_bad.json").write_text('{"name": "03_bad"}')
    with pytest.raises(DataError, match=r"03_bad.json: status record lacks status, parameters"):
        status.read_records(tmp_path)
    (tmp_path / "03_bad.json").write_text("{nope")
    with pytest.raises(DataError, match=r"03_bad.json: not a valid status record"):
        status.read_records(tmp_path)


def test_status_summary_counts_failed_chapters(tmp_path):
    """The status page's counts (the smoke build checks them with every chapter ok)."""
    from dar_lib import status

    status.write_record(tmp_path, status.make_record("01_data", "x.ipynb", {"encoder": "toy:clip-zs"}, 1.5, "ok"))
    status.write_record(tmp_path, status.make_record("05_results", "y.ipynb", {}, 118.5, "failed", "boom"))
    status.write_record(tmp_path, status.make_record("99_status", "s.ipynb", {}, 9.0, "ok"))
    records = status.read_records(tmp_path, exclude=("99_status",))
    assert status.summary(records) == {"n_chapters": 2, "n_ok": 1, "n_failed": 1, "total_minutes": "2.0"}
    assert status.summary([]) == {"n_chapters": 0, "n_ok": 0, "n_failed": 0, "total_minutes": "0.0"}
