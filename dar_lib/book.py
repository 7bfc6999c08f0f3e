"""``dar book``: run every chapter with papermill (skipping unchanged ones), then compile the book offline.

Phase 1 executes each notebook listed in ``book/_toc.yml`` (and present in ``notebooks/``) with the
profile's parameters into ``<out>/executed/``; a chapter is skipped when a stamp of its notebook
bytes, parameters, ``dar_lib`` version and ``dar_lib`` source tree is unchanged. Failures are
collected, never fatal. Phase 2 stages ``book/`` plus the executed notebooks in ``<out>/staging/``
and runs ``jupyter-book build`` with execution off and warnings as errors; the JavaScript the
pages need (require.js, the widget manager, MathJax) is installed once with ``npm ci`` from
``book/js/`` and copied into the HTML, so the book works with the network off.

Outputs are whole or absent: an executed notebook takes its name only when its chapter succeeds (a
failed run is ``<name>.failed.ipynb`` beside the last good copy), and the site replaces the last good
one only when jupyter-book and the asset copy succeed (:mod:`dar_lib.atomic`).

Examples:
    $ dar book                      # default (toy) profile into _build/
    $ dar book --smoke --out /tmp/b # tiny sizes, as CI runs it
    $ dar book --only 01_data --force
    $ dar book --profile paper --rehearsal   # the paper profile on tiny random stand-ins, into _build/rehearsal/
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from dar_lib import cachekeys, profiles

REPO = Path(__file__).resolve().parents[1]
LIB_DIR = Path(__file__).resolve().parent
#: Name of the kernelspec the build writes into ``<out>/jupyter`` (the current interpreter).
KERNEL_NAME = "dar-book"
#: Chapters whose stem starts with this run after all others (the status page reads their records).
LAST_PREFIX = "99_"

# --- chapters and stamps ------------------------------------------------------------------------
@dataclass
class Chapter:
    """One notebook chapter: its toc entry (``notebooks/01_data``) and source notebook."""

    docname: str
    source: Path

    @property
    def name(self) -> str:
        """The notebook's stem, e.g. ``01_data`` (names executed files, records and ``--only``)."""
        return Path(self.docname).name


@dataclass
class BuildResult:
    """What a build did: chapters executed, skipped and failed (name -> reason), and phase 2's outcome."""

    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    book_ok: bool | None = None
    book_error: str | None = None
    html_dir: Path | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no chapter failed and the book build (if it ran) succeeded."""
        return not self.failed and self.book_ok is not False


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

    from dar_lib.atomic import atomic_path

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
                if tmp.stat().st_size:
                    os.replace(tmp, failed_copy)  # for reading; never under the chapter's own name
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


# --- JavaScript assets --------------------------------------------------------------------------
#: (path inside node_modules, path under the HTML ``_static/vendor``); a folder is copied whole.
JS_ASSETS = (
    ("requirejs/require.js", "require.js"),
    ("@jupyter-widgets/html-manager/dist", "html-manager"),
    ("mathjax/es5", "mathjax/es5"),
)
_HTML_MANAGER_SKIP = (".map", ".LICENSE.txt")
_FONT_SUFFIXES = (".woff2", ".woff", ".ttf", ".eot", ".svg")


def ensure_js(js_dir: Path, log: Callable[[str], None] = print) -> Path:
    """Install the book's JavaScript with ``npm ci`` into ``<js_dir>/node_modules`` once.

    Returns:
        The ``node_modules`` folder.

    Raises:
        RuntimeError: npm is missing or fails (the message says how to fix it).
    """
    node_modules = Path(js_dir) / "node_modules"
    if all((node_modules / src).exists() for src, _ in JS_ASSETS):
        return node_modules
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm not found: the book serves require.js, the widget manager and MathJax from its own "
            f"files, installed with `npm ci` in {js_dir}. Install Node.js 18+ (with npm) and rebuild."
        )
    cmd = [npm, "ci" if (Path(js_dir) / "package-lock.json").is_file() else "install",
           "--ignore-scripts", "--no-audit", "--no-fund"]
    log(f"installing the book's JavaScript: {' '.join(cmd[1:])} (in {js_dir})")
    proc = subprocess.run(cmd, cwd=js_dir, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`npm ci` failed in {js_dir} (exit {proc.returncode}); the pages cannot work offline "
            f"without these files. npm said:\n{proc.stderr.strip()[-2000:]}"
        )
    return node_modules


def _copy_if_changed(src: Path, dst: Path) -> int:
    """Copy a file unless ``dst`` already has the same size and mtime; return 1 if copied."""
    try:
        s, d = src.stat(), dst.stat()
        if s.st_size == d.st_size and int(s.st_mtime) == int(d.st_mtime):
            return 0
    except FileNotFoundError:
        pass
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    return 1


def install_js_into_html(node_modules: Path, html_dir: Path) -> int:
    """Copy the vendored JavaScript into ``<html_dir>/_static/vendor``; return how many files changed."""
    vendor = Path(html_dir) / "_static" / "vendor"
    copied = 0
    for src_rel, dst_rel in JS_ASSETS:
        src = Path(node_modules) / src_rel
        if src.is_file():
            copied += _copy_if_changed(src, vendor / dst_rel)
            continue
        for path in src.rglob("*"):
            if path.is_file() and not path.name.endswith(_HTML_MANAGER_SKIP):
                copied += _copy_if_changed(path, vendor / dst_rel / path.relative_to(src))
    # embed-amd.js asks for its icon fonts relative to the *page* (require.js resolves
    # "@jupyter-widgets/..." against the page's folder), so every folder holding pages gets a copy.
    fonts = [p for p in (Path(node_modules) / "@jupyter-widgets/html-manager/dist").glob("*")
             if p.suffix in _FONT_SUFFIXES]
    page_dirs = {p.parent for p in Path(html_dir).rglob("*.html") if "_static" not in p.parts}
    for page_dir in sorted(page_dirs):
        for font in fonts:
            for sub in ("@jupyter-widgets/html-manager/dist", "@jupyter-widgets"):
                copied += _copy_if_changed(font, page_dir / sub / font.name)
    return copied


# --- staging and the jupyter-book build ---------------------------------------------------------
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
    from dar_lib.redact import redact_all

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
    interrupted build leaves the last good site as it was, and the log says what failed.

    Returns:
        (success, the warning/error lines or the last lines of output; see :func:`run_jupyter_book`).
    """
    from dar_lib.atomic import atomic_path

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
                raise _SiteFailed
    except _SiteFailed:
        kept = f"; the last good site is kept in {site_dir}" if site_dir.is_dir() else ""
        return False, f"{outcome[1]}\n(full log: {log_path}{kept})".strip()
    return outcome


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# --- the whole build ----------------------------------------------------------------------------
def build_book(
    out_dir: Path = REPO / "_build",
    profile: str = "toy",
    smoke: bool = False,
    only: Sequence[str] | None = None,
    force: bool = False,
    book_dir: Path = REPO / "book",
    notebooks_dir: Path = REPO / "notebooks",
    config: Path = REPO / "_config.yml",
    js_dir: Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    compile_book: bool = True,
    lib_dir: Path = LIB_DIR,
    timeout: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> BuildResult:
    """Run every chapter (phase 1) and compile the book (phase 2).

    Args:
        out_dir: build folder: ``executed/``, ``records/``, ``staging/``, ``site/_build/html``.
        profile: ``"toy"`` or ``"paper"`` (see :data:`dar_lib.profiles.PROFILES`).
        smoke: tiny sizes (see :data:`dar_lib.profiles.SMOKE`).
        only: chapter names to run (others keep their last executed copy).
        force: run chapters even when their stamp is unchanged.
        book_dir: the book's pages and ``_toc.yml``.
        notebooks_dir: the chapter notebooks (committed without outputs).
        config: the book's ``_config.yml``.
        js_dir: folder with the ``package.json`` of the vendored JavaScript (default ``book_dir/js``).
        parameters: overrides on top of the profile's table.
        compile_book: run phase 2.
        lib_dir: the library tree whose fingerprint is part of every chapter's stamp.
        timeout: per-cell timeout for papermill.
        progress: show per-cell progress bars.
        log: where progress lines go.

    Returns:
        A :class:`BuildResult`; ``result.ok`` is False when any chapter or the book build failed.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir).resolve()
    executed_dir, records_dir = out_dir / "executed", out_dir / "records"
    stamps_dir = executed_dir / ".stamps"
    # Every parameter is checked before anything is written or run.
    params_all = profiles.parameters(profile, smoke, **dict(parameters or {}), records_dir=str(records_dir))
    jupyter_dir = write_kernelspec(out_dir / "jupyter")
    result = BuildResult()

    chapters = find_chapters(book_dir, notebooks_dir)
    names = [c.name for c in chapters]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"--only names no chapter: {', '.join(unknown)}; chapters are {', '.join(names)}")
    lib_fp = cachekeys.library_fingerprint(lib_dir)
    log(f"phase 1: {len(chapters)} chapters, profile {profile}{' (smoke)' if smoke else ''}, into {executed_dir}")
    for i, chapter in enumerate(chapters, 1):
        if only and chapter.name not in only:
            continue
        declared = notebook_parameters(chapter.source)
        params = {k: params_all[k] for k in declared if k in params_all}
        extra = ""
        if chapter.name.startswith(LAST_PREFIX):
            # The status page shows the other chapters' records: re-run it when any of them changed.
            extra = cachekeys.files_digest(p for p in sorted(records_dir.glob("*.json")) if p.stem != chapter.name)
        stamp = cachekeys.chapter_stamp(chapter.source, params, lib_fp, extra, outputs=OUTPUT_PARAMETERS)
        stamp_path = stamps_dir / f"{chapter.name}.stamp"
        executed = executed_dir / f"{chapter.name}.ipynb"
        prefix = f"[{i}/{len(chapters)}] {chapter.name}"
        if not force and executed.is_file() and stamp_path.is_file() and stamp_path.read_text() == stamp:
            log(f"{prefix}: unchanged, skipped")
            result.skipped.append(chapter.name)
            continue
        log(f"{prefix}: running ({time.perf_counter() - t0:.0f} s elapsed)")
        stamp_path.unlink(missing_ok=True)
        path, seconds, error = execute_chapter(chapter, params, executed_dir, jupyter_dir, timeout, progress)
        from dar_lib.status import make_record, write_record

        write_record(records_dir, make_record(chapter.name, str(path), params, seconds,
                                              "failed" if error else "ok", error))
        if error:
            log(f"{prefix}: FAILED after {seconds:.1f} s: {error}")
            result.failed[chapter.name] = error
        else:
            log(f"{prefix}: done in {seconds:.1f} s")
            result.executed.append(chapter.name)
            stamps_dir.mkdir(parents=True, exist_ok=True)
            stamp_path.write_text(stamp)

    if compile_book:
        log(f"phase 2: jupyter-book build ({time.perf_counter() - t0:.0f} s elapsed)")
        staging = out_dir / "staging"
        # Failed chapters from earlier runs (no stamp) are placeholders too, not half-run pages.
        failed_now = dict(result.failed)
        for chapter in chapters:
            if chapter.name not in failed_now and not (stamps_dir / f"{chapter.name}.stamp").is_file():
                failed_now[chapter.name] = "failed or not executed in an earlier build"
        stage_book(book_dir, staging, chapters, executed_dir, failed_now)
        site = out_dir / "site"
        ok, detail = compile_site(staging, Path(config).resolve(), site, out_dir / "jupyter-book.log",
                                  Path(js_dir) if js_dir else Path(book_dir) / "js", log)
        result.html_dir = site / "_build" / "html"
        result.book_ok = ok
        result.book_error = None if ok else detail
    result.seconds = time.perf_counter() - t0
    return result


def report(result: BuildResult, log: Callable[[str], None] = print) -> int:
    """Print the build summary; return the process exit code (1 if anything failed)."""
    log(f"executed {len(result.executed)}, skipped {len(result.skipped)}, failed {len(result.failed)} "
        f"chapters in {result.seconds:.1f} s")
    from dar_lib.redact import redact

    for name, reason in result.failed.items():
        log(f"  FAILED {name}: {redact(reason)}")
    if result.book_ok is False:
        log(f"  the book build failed (log: see jupyter-book.log in the build folder):\n{result.book_error}")
    elif result.html_dir is not None:
        log(f"book: {result.html_dir / 'index.html'}")
    return 0 if result.ok else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``dar book`` to the ``dar`` command."""
    p = subparsers.add_parser("book", help="run every chapter with papermill and build the book",
                              description=__doc__.split("\n\n")[0])
    add_arguments(p)
    p.set_defaults(func=handler)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``dar book``'s options (profile, smoke, only, out, force, no-book) to a parser."""
    p.add_argument("--profile", choices=sorted(profiles.PROFILES), default=None,
                   help="parameter table (default: toy; paper with --rehearsal)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, as the tests run the chapters")
    p.add_argument("--rehearsal", action="store_true",
                   help="rehearse the paper profile: every model replaced by a tiny random stand-in of the same "
                        "class and layout, ChatIR's dialogues over a small corpus of fake images, smoke sizes "
                        "(stand-ins built once into $DAR_CACHE_DIR/rehearsal-*); the numbers mean nothing")
    p.add_argument("--params", type=Path, action="append", default=[], metavar="FILE",
                   help="YAML or JSON file of parameter overrides, e.g. image_root, corpus_file, benchmarks, "
                        "encoders (checked against the parameter table); repeatable, later files win, --set last")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="override one parameter (VALUE is YAML: 200, null, [a, b], {k: v}); repeatable, "
                        "e.g. --set image_root=/data/coco --set n_dialogues=200")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these chapters (e.g. 01_data)")
    p.add_argument("--out", type=Path, default=None,
                   help="build folder (default: _build; _build/rehearsal with --rehearsal)")
    p.add_argument("--force", action="store_true", help="re-run chapters even when unchanged")
    p.add_argument("--no-book", action="store_true", help="run the chapters only (skip phase 2)")


#: Parameters ``--set`` and ``--params`` may not change: the command's own options choose them.
RESERVED = ("profile", "smoke", "rehearsal", "records_dir")


def parse_overrides(params_files: Sequence[Path] = (), items: Sequence[str] = ()) -> dict[str, Any]:
    """Parameter overrides from YAML/JSON files, then ``NAME=VALUE`` items (values parsed as YAML); later wins.

    They are checked later, with the profile, by :func:`dar_lib.profiles.parameters`.

    Raises:
        ValueError: an unreadable file, a file that is not a mapping, an item without ``=``, a value
            that is not YAML, or a name the command's own options set (the message names it).
    """
    import yaml

    out: dict[str, Any] = {}
    for params_file in params_files:
        try:
            data = yaml.safe_load(Path(params_file).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ValueError(f"{params_file}: cannot read parameter overrides: {exc}") from None
        if data is not None and not isinstance(data, dict):
            raise ValueError(f"{params_file}: expected a mapping of parameter names to values, "
                             f"got {type(data).__name__}")
        out.update(data or {})
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"--set {item!r}: expected NAME=VALUE, e.g. --set n_dialogues=200")
        try:
            out[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {item!r}: the value is not valid YAML ({exc})") from None
    reserved = sorted(set(out) & set(RESERVED))
    if reserved:
        raise ValueError(f"parameter(s) {', '.join(reserved)} are set by dar book's own options "
                         "(--profile, --smoke, --rehearsal, --out), not by --set or --params")
    return out


def handler(args: argparse.Namespace) -> int:
    """Run ``dar book``; a bad option or parameter is a one-line error with exit status 2."""
    log = lambda s: print(s, flush=True)  # noqa: E731
    try:
        profile, smoke, out = args.profile or "toy", args.smoke, args.out
        overrides = parse_overrides(getattr(args, "params", ()), getattr(args, "overrides", ()))
        if args.rehearsal:
            if args.profile not in (None, "paper"):
                raise ValueError(f"--rehearsal rehearses the paper profile; it cannot run --profile {args.profile}")
            from dar_lib import rehearsal

            profile, smoke, out = "paper", True, out or REPO / "_build" / "rehearsal"
            overrides = {**rehearsal.prepare(log=log), **overrides}
        result = build_book(out or REPO / "_build", profile, smoke, args.only, args.force, parameters=overrides,
                            compile_book=not args.no_book, log=log)
    except ValueError as exc:
        from dar_lib.redact import redact

        print(f"dar: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    return report(result)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dar_lib.book``: the same as ``dar book``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m dar_lib.book", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return handler(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
