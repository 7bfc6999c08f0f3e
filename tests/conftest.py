"""Test settings: offline data mirror beside the checkout, a private cache per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MIRROR = REPO.parent / "shared" / "data"

if not os.environ.get("DAR_DATA_MIRROR") and DEFAULT_MIRROR.is_dir():
    os.environ["DAR_DATA_MIRROR"] = str(DEFAULT_MIRROR)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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
