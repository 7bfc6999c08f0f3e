"""Status-page data: one JSON record per executed chapter (parameters, duration, models, versions, machine)."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from dar_lib.atomic import atomic_write_bytes
from dar_lib.errors import DataError
from dar_lib.redact import redact_all

#: Distributions whose versions the status page lists (looked up without importing them).
PACKAGES = (
    "dar_lib", "torch", "transformers", "diffusers", "numpy", "pandas", "pillow",
    "matplotlib", "papermill", "jupyter-book", "myst-nb", "ipykernel", "ipywidgets",
)
#: Parameter names (or suffixes) that hold model ids; their values are listed as the chapter's models.
MODEL_KEYS = ("encoder", "encoders", "generator", "generators", "reformulator", "llm", "model", "models")
#: Keys every record carries; ``read_records`` rejects a record without them.
RECORD_KEYS = ("name", "status", "parameters", "duration_s", "finished")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (``"not installed"`` for a missing one).

    Args:
        names: distribution names as pip knows them.

    Returns:
        name -> version string.
    """
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine_info() -> dict[str, Any]:
    """Describe the machine cheaply (no torch import): OS, CPU, cores, Python, device setting."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "dar_device": os.environ.get("DAR_DEVICE", "cpu"),
    }


def model_ids(parameters: Mapping[str, Any]) -> list[str]:
    """The model ids named in a chapter's parameters (any key ending in a :data:`MODEL_KEYS` word).

    Args:
        parameters: the papermill parameters of a chapter.

    Returns:
        Sorted unique model id strings.
    """
    found: set[str] = set()

    def collect(value: Any) -> None:
        if isinstance(value, str) and value:
            found.add(value)
        elif isinstance(value, Mapping):
            for v in value.values():
                collect(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                collect(v)

    for key, value in parameters.items():
        if any(key == k or key.endswith("_" + k) for k in MODEL_KEYS):
            collect(value)
    return sorted(found)


def make_record(
    name: str,
    notebook: str,
    parameters: Mapping[str, Any],
    duration_s: float,
    status: str,
    error: str | None = None,
) -> dict[str, Any]:
    """Build the status record of one chapter run.

    Args:
        name: chapter name (the notebook's stem).
        notebook: path of the executed notebook.
        parameters: the parameters papermill injected.
        duration_s: wall-clock execution time.
        status: ``"ok"`` or ``"failed"``.
        error: one-paragraph reason when failed.

    Returns:
        A JSON-serialisable dict.
    """
    return {
        "name": name,
        "notebook": notebook,
        "status": status,
        "error": error,
        "parameters": dict(parameters),
        "model_ids": model_ids(parameters),
        "duration_s": round(float(duration_s), 2),
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "packages": package_versions(),
        "machine": machine_info(),
    }


def write_record(records_dir: Path, record: Mapping[str, Any]) -> Path:
    """Write ``record`` atomically as ``<records_dir>/<name>.json`` and return its path (credentials redacted)."""

    record = redact_all(dict(record))
    path = Path(records_dir) / f"{record['name']}.json"
    atomic_write_bytes(path, json.dumps(record, indent=2, sort_keys=True, default=str).encode("utf-8"))
    return path


def read_records(records_dir: Path, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Read every chapter record in ``records_dir``, sorted by chapter name.

    Args:
        records_dir: folder the build writes records into.
        exclude: chapter names to leave out (the status page leaves itself out).

    Returns:
        The records; an empty list when the folder does not exist.

    Raises:
        DataError: a record is not valid JSON or lacks a required key (the message names the file).
    """
    records_dir = Path(records_dir)
    if not records_dir.is_dir():
        return []
    out = []
    for path in sorted(records_dir.glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a valid status record: {exc}") from exc
        missing = [k for k in RECORD_KEYS if not isinstance(record, dict) or k not in record]
        if missing:
            raise DataError(f"{path}: status record lacks {', '.join(missing)}")
        if record["name"] not in exclude:
            out.append(record)
    return out


def records_table(records: list[Mapping[str, Any]]):
    """One row per chapter: status, duration, models and parameters, for the status page.

    Args:
        records: as returned by :func:`read_records`.

    Returns:
        A pandas DataFrame indexed by chapter name.
    """
    import pandas as pd

    rows = []
    for r in records:
        rows.append({
            "chapter": r["name"],
            "status": r["status"],
            "duration (s)": r["duration_s"],
            "finished (UTC)": r["finished"],
            "models": ", ".join(r.get("model_ids") or []),
            "parameters": ", ".join(f"{k}={v!r}" for k, v in sorted(r["parameters"].items())),
        })
    columns = ["chapter", "status", "duration (s)", "finished (UTC)", "models", "parameters"]
    return pd.DataFrame(rows, columns=columns).set_index("chapter")


def summary(records: list[Mapping[str, Any]]) -> dict[str, Any]:
    """What the status page's prose says about the records: how many chapters, ok and failed, and minutes.

    Args:
        records: as returned by :func:`read_records`.

    Returns:
        ``{"n_chapters", "n_ok", "n_failed"}`` (ints; a record whose status is not ``"ok"`` counts as
        failed) and ``"total_minutes"`` (the chapters' summed duration, as text with one decimal).
    """
    n_ok = sum(r["status"] == "ok" for r in records)
    minutes = sum(float(r["duration_s"]) for r in records) / 60
    return {"n_chapters": len(records), "n_ok": n_ok, "n_failed": len(records) - n_ok,
            "total_minutes": f"{minutes:.1f}"}


def run_kind(parameters: Mapping[str, Any]) -> str:
    """What kind of run produced the book: the toy profile, a paper-profile run, or a rehearsal."""
    if parameters.get("rehearsal"):
        return "a REHEARSAL of the paper profile on tiny random stand-in models: its numbers mean nothing"
    profile = parameters.get("profile", "toy")
    smoke = " at smoke sizes (numbers from tiny samples)" if parameters.get("smoke") else ""
    if profile == "toy":
        return f"the toy profile (the embedded world and its models){smoke}"
    return f"the {profile} profile{smoke}"


def run_banner(parameters: Mapping[str, Any]) -> str:
    """A markdown banner for the status page; loud for a rehearsal, so nobody mistakes its numbers for results."""
    kind = run_kind(parameters)
    if parameters.get("rehearsal"):
        return ("> **REHEARSAL, NOT RESULTS.** Every hub model of the paper profile was replaced by a tiny randomly "
                "initialised model of the same class and layout, and the corpus images are random pictures, so the "
                "book below exercises the real code path end to end; none of its numbers says anything about DAR. "
                "The stand-in LLM's replies are junk, so every R1 query and R2 prompt is the reformulator's "
                "recorded fallback (the raw dialogue, template prompts), not an LLM rewrite.")
    return f"> This build ran {kind}."
