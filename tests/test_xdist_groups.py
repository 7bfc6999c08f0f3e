"""``make test`` relies on pytest-xdist's ``--dist loadgroup`` to build the smoke book and each module-scoped
fixture once: if grouping silently stops (pytest 9.2 with xdist 3.8 did, pytest-xdist issue #1386), each worker
builds the smoke book, minutes of CPU on a 2-core machine. Our conftest also collects the slow single tests first,
so that xdist does not hand one out last."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pytest(tmp_path: Path, tests: str, *args: str, our_conftest: bool = False) -> str:
    """Run pytest in a subprocess on ``tests`` (a module's source, written as ``test_session.py``) with ``args``;
    with our ``tests/conftest.py`` loaded when asked. Returns its stdout; fails the test when the session fails."""
    (tmp_path / "test_session.py").write_text(tests)
    env = {**os.environ, "GROUP_OUT": str(tmp_path / "out")}
    if our_conftest:  # tests.conftest importable
        args = ("-p", "tests.conftest", *args)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", *args,
                           str(tmp_path / "test_session.py")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _workers(tmp_path: Path, prefix: str) -> list[str]:
    """The xdist worker of each test that wrote ``out/<prefix>-*`` (one file per test)."""
    return [p.read_text() for p in (tmp_path / "out").glob(f"{prefix}-*")]

TESTS = """
import os
from pathlib import Path

import pytest


@pytest.mark.xdist_group("shared")
@pytest.mark.parametrize("i", range(4))
def test_grouped(i, tmp_path_factory):
    out = Path(os.environ["GROUP_OUT"])
    (out / f"grouped-{i}").write_text(os.environ["PYTEST_XDIST_WORKER"])


@pytest.mark.parametrize("i", range(4))
def test_free(i):
    pass
"""


def test_loadgroup_runs_a_group_on_one_worker(tmp_path):
    (tmp_path / "out").mkdir()
    stdout = _pytest(tmp_path, TESTS, "-n", "2", "--dist", "loadgroup", "-v")
    assert "test_grouped[0]@shared" in stdout  # the group reached the test id the scheduler reads
    workers = _workers(tmp_path, "grouped")
    assert len(workers) == 4 and len(set(workers)) == 1, workers


MODULE_FIXTURE = """
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def shared():
    return object()


@pytest.mark.parametrize("i", range(4))
def test_uses_the_module_fixture(i, shared):
    (Path(os.environ["GROUP_OUT"]) / f"uses-{i}").write_text(os.environ["PYTEST_XDIST_WORKER"])
"""


def test_our_conftest_groups_the_tests_of_a_module_with_a_module_fixture(tmp_path):
    """tests/conftest.py marks the groups as tests are collected (it reads pytest's fixture records): the tests
    of a module that defines a module-scoped fixture run on one worker, so the fixture is built once."""
    (tmp_path / "out").mkdir()
    stdout = _pytest(tmp_path, MODULE_FIXTURE, "-n", "2", "--dist", "loadgroup", "-v", our_conftest=True)
    assert "test_uses_the_module_fixture[0]@test_session.py" in stdout, stdout[-3000:]
    workers = _workers(tmp_path, "uses")
    assert len(workers) == 4 and len(set(workers)) == 1, workers


ORDER = """
import pytest


@pytest.fixture(scope="module")
def shared():
    return object()


def test_fast():
    pass


@pytest.mark.slow
def test_slow_with_the_module_fixture(shared):
    pass


@pytest.mark.slow
def test_slow_alone():
    pass


def test_fast_with_the_module_fixture(shared):
    pass
"""


CONFTEST_FIXTURE = """
import pytest


@pytest.fixture(scope="module")
def from_conftest():
    return object()
"""


def test_our_conftest_collects_slow_tests_that_share_no_module_fixture_first(tmp_path):
    """xdist hands out single tests in collection order: a slow one collected last would run alone at the end.
    A test that uses a module-scoped fixture, its module's own or a conftest's, keeps its place."""
    (tmp_path / "conftest.py").write_text(CONFTEST_FIXTURE)
    stdout = _pytest(tmp_path, ORDER + """

@pytest.mark.slow
def test_slow_with_a_conftest_module_fixture(from_conftest):
    pass
""", "--collect-only", "-q", "-o", "markers=slow", our_conftest=True)
    order = [line.split("::")[1] for line in stdout.splitlines() if "::" in line]
    assert order == ["test_slow_alone", "test_fast", "test_slow_with_the_module_fixture",
                     "test_fast_with_the_module_fixture", "test_slow_with_a_conftest_module_fixture"], order
