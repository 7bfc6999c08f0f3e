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
    (tmp_path / "test_groups.py").write_text(TESTS)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p",
                           "no:cacheprovider", "-o", "addopts=", str(tmp_path / "test_groups.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "GROUP_OUT": str(out)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "test_grouped[0]@shared" in proc.stdout  # the group reached the test id the scheduler reads
    workers = {p.read_text() for p in out.glob("grouped-*")}
    assert len(list(out.glob("grouped-*"))) == 4 and len(workers) == 1, workers


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
    (tmp_path / "test_module_fixture.py").write_text(MODULE_FIXTURE)
    out = tmp_path / "out"
    out.mkdir()
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])  # tests.conftest importable
    env = {**os.environ, "GROUP_OUT": str(out), "PYTHONPATH": path}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v", "-p",
                           "no:cacheprovider", "-p", "tests.conftest", "-o", "addopts=",
                           str(tmp_path / "test_module_fixture.py")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "test_uses_the_module_fixture[0]@test_module_fixture.py" in proc.stdout, proc.stdout[-3000:]
    workers = {p.read_text() for p in out.glob("uses-*")}
    assert len(list(out.glob("uses-*"))) == 4 and len(workers) == 1, workers


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
    (tmp_path / "test_order.py").write_text(ORDER + """

@pytest.mark.slow
def test_slow_with_a_conftest_module_fixture(from_conftest):
    pass
""")
    (tmp_path / "conftest.py").write_text(CONFTEST_FIXTURE)
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "-p",
                           "tests.conftest", "-o", "addopts=", "-o", "markers=slow", str(tmp_path / "test_order.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": path})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    order = [line.split("::")[1] for line in proc.stdout.splitlines() if "::" in line]
    assert order == ["test_slow_alone", "test_fast", "test_slow_with_the_module_fixture",
                     "test_fast_with_the_module_fixture", "test_slow_with_a_conftest_module_fixture"], order
