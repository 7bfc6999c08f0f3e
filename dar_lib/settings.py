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
    """Return the default torch device: ``DAR_DEVICE`` or ``cpu`` (checked by :func:`check_device`)."""
    value = os.environ.get(DEVICE_ENV)
    return check_device(value, what=DEVICE_ENV) if value else "cpu"


def check_device(device: str, what: str = "device") -> str:
    """Return ``device`` if torch can use it on this machine.

    Raises:
        ValueError: naming ``what`` and the value, for a string torch does not parse (``"bogus"``) or a
            device this machine lacks (``"cuda"`` on a CPU-only build or without a GPU, ``"mps"`` off a Mac).
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{what} = {device!r}: not a torch device ({exc})") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what} = {device!r}: CUDA is not available on this machine "
                             f"(torch {torch.__version__}; CUDA build: {torch.version.cuda is not None})")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{what} = {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"{what} = {device!r}: MPS is not available on this machine")
    return device
