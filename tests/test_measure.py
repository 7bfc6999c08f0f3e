"""The measurement scripts stay runnable: each parses its options and imports what it uses.

They are run by hand (their figures are printed, never asserted), so a refactor that moves a name
they import would otherwise go unnoticed until someone measures (measure/book_build.py once read
``book.PROFILES`` after the parameter table moved to ``dar_lib.profiles``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "measure").glob("*.py"))


def test_there_are_measurement_scripts():
    assert len(SCRIPTS) >= 5


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_parses_its_options(script):
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
