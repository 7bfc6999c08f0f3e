"""Phase 1 of ``dar book``: the chapters the table of contents lists, their parameters and stamps'
inputs, the ``dar-book`` kernelspec, and one chapter run with papermill (written whole or not at all)."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from dar_lib.atomic import atomic_path, atomic_write_bytes

#: Name of the kernelspec the build writes into ``<out>/jupyter`` (the current interpreter).
KERNEL_NAME = "dar-book"
#: Chapters whose stem starts with this run after all others (the status page reads their records).
LAST_PREFIX = "99_"


@dataclass
class Chapter:
    """One notebook chapter: its toc entry (``notebooks/01_data``) and source notebook."""

    docname: str
    source: Path

    @property
    def name(self) -> str:
        """The notebook's stem, e.g. ``01_data`` (names executed files, records and ``--only``)."""
        return Path(self.docname).name


def toc_docnames(toc_path: Path) -> list[str]:
    """Every ``file:`` entry of a jupyter-book ``_toc.yml``, in reading order (root first).

    Raises:
        ValueError: the toc is not valid YAML or has no ``root`` (the message names the file).
    """
    import yaml

    try:
        toc = yaml.safe_load(Path(toc_path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{toc_path}: cannot read the table of contents: {exc}") from exc
    if not isinstance(toc, dict) or "root" not in toc:
        raise ValueError(f"{toc_path}: a jupyter-book toc needs a 'root' entry")
    out = [str(toc["root"])]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                out.append(str(node["file"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [str(Path(d).with_suffix("")) if d.endswith((".md", ".ipynb")) else d for d in out]


def find_chapters(book_dir: Path, notebooks_dir: Path) -> list[Chapter]:
    """Notebook chapters listed in the toc, in run order (``99_*`` chapters last).

    A toc entry ``notebooks/<stem>`` is a chapter when ``<notebooks_dir>/<stem>.ipynb`` exists;
    other entries are pages copied from ``book_dir``.
    """
    chapters = []
    for docname in toc_docnames(Path(book_dir) / "_toc.yml"):
        parts = Path(docname).parts
        if len(parts) == 2 and parts[0] == "notebooks":
            source = Path(notebooks_dir) / f"{parts[1]}.ipynb"
            if source.is_file():
                chapters.append(Chapter(docname, source))
    return sorted(chapters, key=lambda c: c.name.startswith(LAST_PREFIX))


#: Parameters naming where a chapter writes (its files change every run, so they are no input).
OUTPUT_PARAMETERS = ("records_dir",)


def notebook_parameters(source: Path) -> list[str]:
    """Names declared in a notebook's ``parameters`` cell (papermill's own parser)."""
    import papermill

    return list(papermill.inspect_notebook(str(source)).keys())


def write_kernelspec(jupyter_dir: Path, python: str = sys.executable) -> Path:
    """Write a kernelspec for ``python`` under ``<jupyter_dir>/kernels/dar-book`` (no global Jupyter needed).

    Returns:
        The folder to prepend to ``JUPYTER_PATH``.
    """
    spec_dir = Path(jupyter_dir) / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (dar book)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    text = json.dumps(spec, indent=1)
    path = spec_dir / "kernel.json"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return Path(jupyter_dir)


def _error_summary(exc: BaseException) -> str:
    """A short reason: papermill's cell error name/value, or the exception's last line."""
    ename = getattr(exc, "ename", None)
    if ename:
        cell = getattr(exc, "exec_count", None)
        where = f" in cell {cell}" if cell is not None else ""
        return f"{ename}: {getattr(exc, 'evalue', '')}{where}".strip()
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def execute_chapter(
    chapter: Chapter,
    parameters: Mapping[str, Any],
    executed_dir: Path,
    jupyter_dir: Path,
    timeout: float | None = None,
    progress: bool = True,
) -> tuple[Path, float, str | None]:
    """Run one chapter with papermill.

    Args:
        chapter: the notebook to run.
        parameters: injected after its ``parameters`` cell.
        executed_dir: where ``<name>.ipynb`` is written, whole and only on success (papermill
            writes a temporary sibling as it goes; :func:`dar_lib.atomic.atomic_path`), so a failed
            or interrupted run keeps the last good copy. On failure the notebook up to the failing
            cell is ``<name>.failed.ipynb`` beside it (replaced by each failure, removed by a success).
        jupyter_dir: folder holding the ``dar-book`` kernelspec (see :func:`write_kernelspec`).
        timeout: per-cell timeout in seconds (None: none).
        progress: show papermill's per-cell progress bar.

    Returns:
        (the executed notebook's path, ``<name>.failed.ipynb`` on failure; seconds; error summary or None).
    """
    import warnings

    import papermill

    out = Path(executed_dir) / f"{chapter.name}.ipynb"
    failed_copy = out.with_name(f"{chapter.name}.failed.ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    failed_copy.unlink(missing_ok=True)  # an earlier failure's copy would be read as this run's
    env_before = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(jupyter_dir), env_before) if p)
    start = time.perf_counter()
    error = None
    try:
        with atomic_path(out) as tmp:
            try:
                with warnings.catch_warnings():  # the temporary name does not end in .ipynb
                    warnings.filterwarnings("ignore", message=r"The specified file .* does not end in")
                    papermill.execute_notebook(
                        str(chapter.source),
                        str(tmp),
                        parameters=dict(parameters),
                        kernel_name=KERNEL_NAME,
                        cwd=str(chapter.source.parent),
                        progress_bar=progress,
                        execution_timeout=timeout,
                    )
            except Exception as exc:  # noqa: BLE001 - any chapter failure is collected, never fatal
                error = _error_summary(exc)
                if tmp.stat().st_size:  # for reading; never under the chapter's own name
                    atomic_write_bytes(failed_copy, tmp.read_bytes())
                raise _ChapterFailed from exc
    except _ChapterFailed:
        return (failed_copy if failed_copy.is_file() else out), time.perf_counter() - start, error
    finally:
        if env_before is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = env_before
    failed_copy.unlink(missing_ok=True)
    return out, time.perf_counter() - start, error


class _ChapterFailed(Exception):
    """A chapter's run failed (its summary is already taken): the atomic write is abandoned."""
