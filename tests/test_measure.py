"""The measurement scripts stay runnable: each parses its options and imports what it uses.

They are run by hand (their figures are printed, never asserted), so a refactor that moves a name
they import would otherwise go unnoticed until someone measures (measure/book_build.py once read
``book.PROFILES`` after the parameter table moved to ``dar_lib.profiles``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[1] / "measure").glob("*.py"))

#: Runs ``SCRIPT --help`` for every script named in argv as ``python SCRIPT --help`` would (``__main__``, its own
#: argv), one after another in this one interpreter, and prints script -> [exit status, stdout, stderr] as JSON.
#: One interpreter for all: each script on its own paid 1.5-2.7 s of importing torch again.
HELP_ALL = r"""
import contextlib, io, json, runpy, sys, traceback
results = {}
for script in sys.argv[1:]:
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [script, "--help"]
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    results[script] = [code, out.getvalue(), err.getvalue()]
sys.stdout.write(json.dumps(results))
"""


@pytest.fixture(scope="module")
def helps() -> dict[str, list]:
    done = subprocess.run([sys.executable, "-c", HELP_ALL, *map(str, SCRIPTS)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_there_are_measurement_scripts():
    assert len(SCRIPTS) >= 5


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_script_parses_its_options(script, helps):
    code, out, err = helps[str(script)]
    assert code == 0, err[-2000:]
    assert "usage:" in out
