"""``make test`` relies on pytest-xdist's ``--dist loadgroup`` to build the smoke book and each module-scoped
fixture once: if grouping silently stops (pytest 9.2 with xdist 3.8 did, pytest-xdist issue #1386), each worker
builds the smoke book, minutes of CPU on a 2-core machine."""

from __future__ import annotations

import subprocess
import sys

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
                          env={**__import__("os").environ, "GROUP_OUT": str(out)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "test_grouped[0]@shared" in proc.stdout  # the group reached the test id the scheduler reads
    workers = {p.read_text() for p in out.glob("grouped-*")}
    assert len(list(out.glob("grouped-*"))) == 4 and len(workers) == 1, workers
