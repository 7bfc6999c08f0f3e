"""Settings read from the environment: cache folder, offline data mirror, device."""

from __future__ import annotations

import os
from pathlib import Path

#: Folder for downloaded files and the artefact store (default: ``~/.cache/dar``).
CACHE_ENV = "DAR_CACHE_DIR"
#: Folder laid out like the project's data mirror (``chatir/``, ``plugir/``); when set, files
#: are copied from it (sha256-verified) instead of downloaded.
MIRROR_ENV = "DAR_DATA_MIRROR"
#: Default torch device for models (``cpu`` unless set).
DEVICE_ENV = "DAR_DEVICE"


def cache_dir() -> Path:
    """Return the cache root, creating it if needed."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dar").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def data_mirror() -> Path | None:
    """Return the offline data mirror folder if one is configured."""
    value = os.environ.get(MIRROR_ENV)
    return Path(value).expanduser() if value else None


def default_device() -> str:
    """Return the default torch device: ``DAR_DEVICE`` or ``cpu``."""
    return os.environ.get(DEVICE_ENV, "cpu")
