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

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from dar_lib import cachekeys, profiles
from dar_lib.book.run import (
    LAST_PREFIX,
    OUTPUT_PARAMETERS,
    execute_chapter,
    find_chapters,
    notebook_parameters,
    write_kernelspec,
)
from dar_lib.book.site import compile_site, stage_book
from dar_lib.redact import redact
from dar_lib.status import make_record, write_record

REPO = Path(__file__).resolve().parents[2]
LIB_DIR = Path(__file__).resolve().parents[1]


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

    for name, reason in result.failed.items():
        log(f"  FAILED {name}: {redact(reason)}")
    if result.book_ok is False:
        log(f"  the book build failed (log: see jupyter-book.log in the build folder):\n{result.book_error}")
    elif result.html_dir is not None:
        log(f"book: {result.html_dir / 'index.html'}")
    return 0 if result.ok else 1
