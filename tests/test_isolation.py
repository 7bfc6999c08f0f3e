"""The test session never writes to the user's dar cache: a private HOME and DAR_CACHE_DIR hold from the
first import on (the checkout's top-level conftest.py), and the session fails if anything reached the
default cache ``~/.cache/dar`` anyway."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dar_lib import settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def seen_by_a_module_fixture() -> dict:
    """What a module-scoped fixture sees: it is set up before any function-scoped fixture."""
    return {"env": os.environ.get(settings.CACHE_ENV), "cache": settings.cache_dir(), "home": Path.home()}


def test_module_scoped_fixtures_write_to_the_session_cache_not_the_default(seen_by_a_module_fixture):
    seen = seen_by_a_module_fixture
    assert seen["env"], "DAR_CACHE_DIR was not set when module-scoped fixtures ran"
    assert seen["cache"] == Path(seen["env"]) and seen["cache"] != seen["home"] / ".cache" / "dar"
    assert Path(os.environ[settings.CACHE_ENV]) != seen["cache"]  # and each test has a folder of its own


INNER_TESTS = '''
import os
from pathlib import Path

import pytest

from dar_lib import settings


@pytest.fixture(scope="module")
def early():
    return settings.cache_dir()


def test_a_module_fixture_sees_the_session_cache(early):
    assert early == Path(os.environ["DAR_CACHE_DIR"]) != Path.home() / ".cache" / "dar"


def test_code_that_ignores_dar_cache_dir(monkeypatch):
    if os.environ.get("LEAK") == "1":
        monkeypatch.delenv("DAR_CACHE_DIR")
    (settings.cache_dir() / "store").mkdir(parents=True, exist_ok=True)
    (settings.cache_dir() / "store" / "x.json").write_text("{}")
'''


def _inner_session(tmp_path: Path, leak: bool) -> subprocess.CompletedProcess:
    """A pytest session under this checkout's top-level conftest.py, with one test that may write to the default
    cache."""
    shutil.copy(REPO / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER_TESTS)
    env = {**os.environ, "LEAK": "1" if leak else "0"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("leak", [False, True], ids=["private", "leak"])
def test_a_session_that_writes_to_the_default_cache_fails(tmp_path, leak):
    proc = _inner_session(tmp_path, leak)
    assert "2 passed" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    if leak:
        assert proc.returncode == 1, proc.stdout[-2000:]
        assert "1 file(s) written to the default dar cache ~/.cache/dar" in proc.stdout
        assert ".cache/dar/store/x.json" in proc.stdout
    else:
        assert proc.returncode == 0, proc.stdout[-2000:]
        assert "default dar cache" not in proc.stdout
