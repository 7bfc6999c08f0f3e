"""The whole test session, tests and doctests alike, runs with a private HOME and a private dar cache.

This file sits at the top of the checkout so that it applies to ``tests/`` and to the doctests of
``dar_lib/`` (``--doctest-modules dar_lib`` in pyproject's pytest options) before anything is
imported or any fixture runs, module- and session-scoped ones included:

- ``DAR_CACHE_DIR`` points at a fresh session folder (``tests/conftest.py`` gives every test its
  own folder on top of that);
- ``HOME`` points at a fresh *sentinel* folder, so code that ignored ``DAR_CACHE_DIR`` and fell back
  to the default ``~/.cache/dar`` (``dar_lib.settings.cache_dir``) writes into the sentinel instead
  of the user's cache, and the session fails naming what it wrote (:func:`pytest_sessionfinish`).

Both folders are removed when the session ends.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent
DEFAULT_MIRROR = REPO.parent / "shared" / "data"
#: The dar cache below the sentinel HOME: nothing may appear here during a session.
SENTINEL_CACHE = Path(".cache") / "dar"

_REAL_HOME = Path.home()
SESSION_ROOT = Path(tempfile.mkdtemp(prefix="dar-tests-"))
SENTINEL_HOME = SESSION_ROOT / "home"
SESSION_CACHE = SESSION_ROOT / "cache"
SENTINEL_HOME.mkdir()
SESSION_CACHE.mkdir()

if not os.environ.get("DAR_DATA_MIRROR") and DEFAULT_MIRROR.is_dir():
    os.environ["DAR_DATA_MIRROR"] = str(DEFAULT_MIRROR)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# npm's download cache is no dar cache: keep the user's, so the book's `npm ci` needs no new downloads.
os.environ.setdefault("npm_config_cache", str(_REAL_HOME / ".npm"))
os.environ["HOME"] = str(SENTINEL_HOME)
os.environ["DAR_CACHE_DIR"] = str(SESSION_CACHE)


def leaked_files(home: Path = SENTINEL_HOME) -> list[Path]:
    """Files below ``<home>/.cache/dar``: what code that ignored ``DAR_CACHE_DIR`` wrote."""
    return sorted(p for p in (home / SENTINEL_CACHE).rglob("*") if not p.is_dir())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the session when anything was written to the default dar cache (``~/.cache/dar``)."""
    leaked = leaked_files()
    if leaked:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        names = ", ".join(str(p.relative_to(SENTINEL_HOME)) for p in leaked[:10])
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (f"FAILED: {len(leaked)} file(s) written to the default dar cache ~/.cache/dar instead of "
                   f"the test's DAR_CACHE_DIR: {names}")
        if reporter is not None:
            reporter.write_line(message, red=True, bold=True)
        else:
            print(message)


# Removed at exit, not at pytest_unconfigure: an in-process IPython shell (registered later, so its
# atexit hook runs first) still writes its history into the sentinel HOME then.
atexit.register(shutil.rmtree, SESSION_ROOT, True)
