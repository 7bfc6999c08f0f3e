"""Phase 2 of ``dar book``: the book source staged (``book/`` plus each executed chapter, parameter cells
hidden, a placeholder for a failed one) and compiled by ``jupyter-book`` into a site that replaces the
last good one only when the whole build succeeds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

from dar_lib.atomic import atomic_path
from dar_lib.book.assets import ensure_js, install_js_into_html
from dar_lib.book.run import Chapter
from dar_lib.redact import redact_all


def _write_if_changed(path: Path, data: bytes) -> None:
    """Keep a file's mtime when its bytes are unchanged, so Sphinx's incremental build skips it."""
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _placeholder(name: str, reason: str) -> bytes:
    import html

    body = (
        f"# {name}: not available\n\n"
        "This chapter did not execute in this build, so it is shown as a placeholder.\n\n"
        "```text\n" + reason.replace("```", "'''") + "\n```\n\n"
        f"Re-run it with `dar book --only {html.escape(name)}` and read the message above.\n"
    )
    return body.encode("utf-8")


#: Cells the rendered book hides: a chapter shows the values it ran with once, as the table its
#: first cell displays (``dar_lib.chapters.setup``), not its defaults and then papermill's overrides.
HIDDEN_TAGS = ("parameters", "injected-parameters")


def hide_parameter_cells(notebook: bytes) -> bytes:
    """Tag a notebook's ``parameters`` and ``injected-parameters`` cells ``remove-cell`` (jupyter-book drops them).

    Every cell's source and text outputs (streams such as log lines on stderr, errors, plain text)
    pass through :func:`dar_lib.redact.redact` too: a hidden cell is still in the page's
    downloadable notebook, and an id may carry a credential.
    """

    nb = json.loads(notebook)
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if any(t in tags for t in HIDDEN_TAGS) and "remove-cell" not in tags:
            tags.append("remove-cell")
        cell["source"] = redact_all(cell.get("source", ""))
        for output in cell.get("outputs", []):
            for key in ("text", "traceback", "evalue"):
                if key in output:
                    output[key] = redact_all(output[key])
            data = output.get("data", {})
            for mime in ("text/plain", "text/html", "text/markdown"):
                if mime in data:
                    data[mime] = redact_all(data[mime])
    return json.dumps(nb, indent=1, ensure_ascii=False).encode("utf-8")


def stage_book(
    book_dir: Path,
    staging_dir: Path,
    chapters: Sequence[Chapter],
    executed_dir: Path,
    failed: Mapping[str, str],
) -> None:
    """Assemble the book source: ``book/*`` (minus ``js/``) plus each executed chapter.

    A chapter that failed or never ran becomes a short markdown page saying why, so the rest of
    the book still builds and links resolve.
    """
    staging_dir = Path(staging_dir)
    wanted: set[Path] = set()
    for path in sorted(Path(book_dir).rglob("*")):
        rel = path.relative_to(book_dir)
        if rel.parts[0] in ("js", "_build", "node_modules") or not path.is_file():
            continue
        _write_if_changed(staging_dir / rel, path.read_bytes())
        wanted.add(staging_dir / rel)
    for chapter in chapters:
        executed = Path(executed_dir) / f"{chapter.name}.ipynb"
        target_nb = staging_dir / f"{chapter.docname}.ipynb"
        target_md = staging_dir / f"{chapter.docname}.md"
        if chapter.name in failed or not executed.is_file():
            reason = failed.get(chapter.name, "not executed yet (run `dar book` without --only)")
            _write_if_changed(target_md, _placeholder(chapter.name, reason))
            wanted.add(target_md)
        else:
            _write_if_changed(target_nb, hide_parameter_cells(executed.read_bytes()))
            wanted.add(target_nb)
    # Drop stale files (a chapter page that switched between notebook and placeholder).
    for path in list(staging_dir.rglob("*")):
        if path.is_file() and path not in wanted:
            path.unlink()


def run_jupyter_book(
    staging_dir: Path,
    config: Path,
    site_dir: Path,
    log_path: Path,
    log: Callable[[str], None] = print,
) -> tuple[bool, str]:
    """Run ``jupyter-book build`` (execution off via the config, ``-W -n --keep-going``).

    Returns:
        (success, the warning/error lines or the last lines of output).
    """
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe) if exe.exists() else (shutil.which("jupyter-book") or "jupyter-book"),
           "build", str(staging_dir), "--config", str(config), "--path-output", str(site_dir),
           "-W", "-n", "--keep-going"]
    problems: list[str] = []
    tail: list[str] = []
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=staging_dir)
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            plain = _strip_ansi(line.rstrip())
            tail = (tail + [plain])[-30:]
            if "WARNING" in plain or "ERROR" in plain or "Exception" in plain:
                problems.append(plain)
                log(f"  {plain}")
            elif plain.startswith(("reading sources", "writing output", "build succeeded", "build finished")):
                log(f"  {plain[:160]}")
        rc = proc.wait()
    detail = "\n".join(problems) if problems else "\n".join(tail)
    return rc == 0 and not problems, detail


class _SiteFailed(Exception):
    """The site did not build (its detail is already taken): the atomic swap is abandoned."""


def compile_site(staging_dir: Path, config: Path, site_dir: Path, log_path: Path, js_dir: Path,
                 log: Callable[[str], None] = print) -> tuple[bool, str]:
    """Build the HTML site into ``site_dir`` whole or not at all.

    jupyter-book runs in a temporary sibling of ``site_dir`` (a copy of the last site, so Sphinx can
    rebuild only what changed), the JavaScript assets are copied in, and the new site replaces the
    old one only when all of that succeeded (:func:`dar_lib.atomic.atomic_path`): a failed or
    interrupted build leaves the last good site as it was. A failed build is kept for reading in
    ``<site_dir>.failed`` (removed by the next success), and the log says what failed.

    Returns:
        (success, the warning/error lines or the last lines of output; see :func:`run_jupyter_book`).
    """

    failed_dir = site_dir.with_name(site_dir.name + ".failed")
    outcome: tuple[bool, str] = (False, "")
    try:
        with atomic_path(site_dir, directory=True, replace=True) as new_site:
            if site_dir.is_dir():
                shutil.copytree(site_dir, new_site, symlinks=True, dirs_exist_ok=True)
            ok, detail = run_jupyter_book(staging_dir, config, new_site, log_path, log)
            try:
                install_js_into_html(ensure_js(js_dir, log), new_site / "_build" / "html")
            except RuntimeError as exc:
                ok, detail = False, f"{detail}\n{exc}".strip()
            outcome = (ok, detail)
            if not ok:
                with atomic_path(failed_dir, directory=True, replace=True) as keep:
                    shutil.copytree(new_site, keep, symlinks=True, dirs_exist_ok=True)
                raise _SiteFailed
    except _SiteFailed:
        kept = f"; the last good site is kept in {site_dir}" if site_dir.is_dir() else ""
        return False, f"{outcome[1]}\n(full log: {log_path}; the failed build: {failed_dir}{kept})".strip()
    shutil.rmtree(failed_dir, ignore_errors=True)
    return outcome


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
