"""The linter runs in the fast tier: ``ruff check`` (configured in pyproject.toml) is clean on the whole tree."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    if importlib.util.find_spec("ruff") is None:
        # Our own tool missing is a broken environment, not a reason to skip.
        pytest.fail("ruff is not installed in this environment: install the test extra "
                    "(pip install -e '.[test]'; `make test-fast` does it)")
    # --no-cache: the check leaves nothing behind in the checkout.
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (f"`ruff check .` failed (exit {proc.returncode}); fix the lines below "
                                  f"(`ruff check --fix .` does the mechanical ones):\n{proc.stdout}{proc.stderr}")
