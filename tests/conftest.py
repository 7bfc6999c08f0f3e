"""Test fixtures: a private cache per test, the offline data mirror, and the smoke book built once.

The session-wide settings (offline data mirror, a private HOME and dar cache, the check that
nothing was written to the default cache) live in the checkout's top-level ``conftest.py``, so
that they hold for the doctests of ``dar_lib`` and for module- and session-scoped fixtures too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_itemcollected(item):
    """Under pytest-xdist (``make test`` runs two workers, ``--dist loadgroup``), a shared fixture is built once:
    every test that needs the smoke book runs on one worker, and the tests of a module that defines a module- or
    session-scoped fixture (a Ray cluster and its runs, a trained model) run on one worker together.

    Marked as each test is collected, before any ``pytest_collection_modifyitems`` (xdist's worker reads the
    groups into the test ids in its own). ``tests/test_xdist_groups.py`` checks that xdist honours the groups.
    """
    if "smoke_book" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.xdist_group("smoke_book"))
        return
    module = item.nodeid.split("::")[0]
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    if any(d.scope in ("module", "session") and d.baseid == module for ds in defs.values() for d in ds):
        item.add_marker(pytest.mark.xdist_group(module))


def pytest_collection_modifyitems(items):
    """Slow tests that use no module-scoped fixture are collected first.

    pytest-xdist hands out groups first (largest first) and single tests in collection order, so a slow single
    test collected late runs alone at the end while the other worker waits for it: with the slow ones first, the
    fast ones fill the gaps at the end. A test that uses a module-scoped fixture stays where it is, so that the
    fixture is still built once per module by a plain ``pytest`` run.
    """
    def moves_first(item) -> bool:
        if item.get_closest_marker("slow") is None or item.get_closest_marker("xdist_group") is not None:
            return False
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        return not any(d.scope == "module" for ds in defs.values() for d in ds)

    items.sort(key=lambda item: not moves_first(item))  # stable: the order is kept within each part


@pytest.fixture
def dar_eval(capsys):
    """``dar_eval(*args)`` runs ``dar eval --quiet ARGS`` in this process and returns (exit status, stdout,
    stderr) as ``capsys`` captured them."""
    from dar_lib import cli

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main(["eval", "--quiet", *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty cache folder, so no test depends on another's downloads."""
    monkeypatch.setenv("DAR_CACHE_DIR", str(tmp_path_factory.mktemp("dar-cache")))


@pytest.fixture
def mirror() -> Path:
    """The offline data mirror; tests that need the real ChatIR/PlugIR files skip without it."""
    value = os.environ.get("DAR_DATA_MIRROR")
    if not value or not Path(value).is_dir():
        pytest.skip("no offline data mirror (set DAR_DATA_MIRROR to a folder laid out like shared/data)")
    return Path(value)


def frozen_lib(root: Path) -> Path:
    """A library tree nobody edits during the test (the stamp's library fingerprint reads it)."""
    lib = Path(root) / "frozen_lib"
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "mod.py").write_text("x = 1\n")
    return lib


@pytest.fixture(name="frozen_lib")
def frozen_lib_fixture():
    """:func:`frozen_lib`, for tests that build a book of their own."""
    return frozen_lib


@dataclass(frozen=True)
class SmokeBook:
    """The real book built once per session on the toy profile's smoke sizes (``dar book --smoke``).

    Attributes:
        root: the build's folder: ``out/`` (executed chapters, records, the site) and ``cache/``.
        result: what :func:`dar_lib.book.build_book` returned.
        lines: the build's log lines.
    """

    root: Path
    result: Any
    lines: list

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def executed(self, name: str) -> Path:
        """The executed notebook of chapter ``name`` (e.g. ``01_data``), as papermill wrote it."""
        return self.out / "executed" / f"{name}.ipynb"

    def __iter__(self):  # root, result, lines = smoke_book
        return iter((self.root, self.result, self.lines))


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory) -> SmokeBook:
    """Run every chapter once, then compile the book: the one execution of the chapters in a test run.

    The book-build tests, the chapter checks (``tests/test_notebooks.py``) and the browser tests all
    read this build; nothing else executes the toy chapters.
    """
    from dar_lib import book

    root = tmp_path_factory.mktemp("smoke-book")
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAR_CACHE_DIR", str(root / "cache"))
        result = book.build_book(root / "out", profile="toy", smoke=True, progress=False, log=lines.append,
                                 lib_dir=frozen_lib(root))
    return SmokeBook(root, result, lines)


#: A myst-nb glue reference in a chapter's prose: {glue}`name` or {glue:text}`name`.
GLUE_REF = re.compile(r"\{glue(?::\w+)?\}`([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class ExecutedChapter:
    """An executed chapter notebook and what it shows.

    Attributes:
        nb: the notebook (nbformat v4).
        values: name -> text/plain of every myst-nb glue output.
        referenced: the glue names its markdown cells quote.
    """

    nb: Any
    values: dict
    referenced: set

    @property
    def unglued(self) -> list[str]:
        """Names the prose quotes that no cell glued (each would be a warning, so an error, in the book build)."""
        return sorted(self.referenced - set(self.values))

    def outputs_text(self, mime: str | None = None) -> str:
        """Every code cell's outputs as one string (only the ``mime`` data when given, e.g. ``text/html``)."""
        import json

        outputs = [o for c in self.nb.cells for o in c.get("outputs", [])]
        if mime:
            return "".join(o.get("data", {}).get(mime, "") for o in outputs)
        return json.dumps(outputs)


def read_executed(path: Path) -> ExecutedChapter:
    """Read an executed chapter: its glued values and the names its prose quotes."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    values = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            if meta:
                data = o.get("data", {})
                values[meta["name"]] = data.get(meta.get("mime_prefix", "") + "text/plain", data)
    referenced = {m for c in nb.cells if c.cell_type == "markdown" for m in GLUE_REF.findall(c.source)}
    return ExecutedChapter(nb, values, referenced)


@pytest.fixture(name="read_executed")
def read_executed_fixture():
    """:func:`read_executed`, for tests that check executed chapters."""
    return read_executed


# -- headless Chromium, for the book (test_browser) and the live session (test_live_browser) ----------
@pytest.fixture(name="chromium", scope="session")
def chromium_fixture() -> tuple[str, str]:
    """(browser, chromedriver) on PATH, or the test skips saying how to install them."""
    from dar_lib.testing import CHROMIUM_HINT, chromium_paths

    paths = chromium_paths()
    if paths is None:
        pytest.skip(CHROMIUM_HINT)
    return paths


@pytest.fixture(scope="module")
def driver(tmp_path_factory, chromium):
    """Headless Chromium (:func:`dar_lib.testing.headless_chromium`): every host but 127.0.0.1 unresolvable,
    the console and the network logged."""
    pytest.importorskip("selenium")
    from dar_lib.testing import headless_chromium

    drv = headless_chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield drv
    drv.quit()


@pytest.fixture(name="requests_elsewhere")
def requests_elsewhere_fixture():
    """:func:`dar_lib.testing.requests_elsewhere`, for a test to call on its driver."""
    from dar_lib.testing import requests_elsewhere

    return requests_elsewhere
